# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cloudsync_acl: the documented ACE sets, and the DACL algebra on descriptors read from the lab."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pathlib

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import cloudsync_acl as acl
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.security_descriptor import Ace, Acl, SecurityDescriptor

FIXTURES = pathlib.Path(__file__).parent / 'fixtures'
CORP_SID = 'S-1-5-21-4053621970-426217385-1478750156'
AGENT = CORP_SID + '-1105'
OTHER = CORP_SID + '-1106'
GROUP = 'bf967a9c-0de6-11d0-a285-00aa003049e2'
USER = 'bf967aba-0de6-11d0-a285-00aa003049e2'
N_UGCD = 5   # ACEs of UserGroupCreateDelete


def load(name):
    return SecurityDescriptor.from_bytes((FIXTURES / name).read_bytes())


def sddl_list(aces):
    return [a.to_sddl(CORP_SID) for a in aces]


# ------------------------------------------------------------------ the ACE sets

def test_user_group_create_delete_aces():
    """Read, Write, Create and Delete on descendant groups and users, as the group provisioning
    prerequisites state (https://learn.microsoft.com/entra/identity/hybrid/cloud-sync/tutorial-group-provisioning),
    plus List contents / Read permissions on the containers (without which nothing below is visible)."""
    assert sddl_list(acl.desired_aces('UserGroupCreateDelete', AGENT)) == [
        '(OA;CIIO;RPWPRCSW;;%s;%s)' % (GROUP, AGENT),
        '(OA;CI;CCDC;%s;;%s)' % (GROUP, AGENT),
        '(OA;CIIO;RPWPRCSW;;%s;%s)' % (USER, AGENT),
        '(OA;CI;CCDC;%s;;%s)' % (USER, AGENT),
        '(A;CI;LCRC;;;%s)' % AGENT,
    ]
    # on an OU it is the same set (nothing of it is domain-root only)
    assert acl.desired_aces('UserGroupCreateDelete', AGENT, domain_root=False) == acl.desired_aces('UserGroupCreateDelete', AGENT)


def test_generic_write_is_stored_mapped():
    ace = acl.desired_aces('UserGroupCreateDelete', AGENT)[0]
    assert ace.mask == 0x00020038  # RIGHT_DS_READ_PROPERTY | RIGHT_DS_WRITE_PROPERTY | RIGHT_DS_SELF | READ_CONTROL


def test_user_group_create_delete_shares_no_ace_with_other_types():
    ours = set(a.key() for a in acl.desired_aces('UserGroupCreateDelete', AGENT))
    for name in acl.PERMISSION_TYPES:
        if name not in ('UserGroupCreateDelete', 'All'):
            assert not ours & set(a.key() for a in acl.desired_aces(name, AGENT)), name


def test_password_hash_sync_only_on_domain_root():
    assert sddl_list(acl.desired_aces('PasswordHashSync', AGENT)) == [
        '(OA;;CR;1131f6aa-9c07-11d1-f79f-00c04fc2dcd2;;%s)' % AGENT,
        '(OA;;CR;1131f6ad-9c07-11d1-f79f-00c04fc2dcd2;;%s)' % AGENT,
    ]
    with pytest.raises(acl.CloudSyncPermissionError, match='only on the domain root'):
        acl.desired_aces('PasswordHashSync', AGENT, domain_root=False)


def test_password_writeback_aces():
    root = sddl_list(acl.desired_aces('PasswordWriteBack', AGENT))
    assert root == [
        '(OA;CIIO;CR;00299570-246d-11d0-a768-00aa006e0529;%s;%s)' % (USER, AGENT),
        '(OA;CIIO;WP;28630ebf-41d5-11d1-a9c1-0000f80367c1;%s;%s)' % (USER, AGENT),
        '(OA;CIIO;WP;bf967a0a-0de6-11d0-a285-00aa003049e2;%s;%s)' % (USER, AGENT),
        '(OA;;CR;ccc2dc7d-a6ad-4a7a-8846-c04e3cc53501;;%s)' % AGENT,
    ]
    assert sddl_list(acl.desired_aces('PasswordWriteBack', AGENT, domain_root=False)) == root[:3]


def test_basic_read_and_exchange_sets():
    basic = sddl_list(acl.desired_aces('BasicRead', AGENT))
    assert len(basic) == 8 and basic[-1] == '(OA;;CR;1131f6aa-9c07-11d1-f79f-00c04fc2dcd2;;%s)' % AGENT
    assert '(OA;CIIO;RP;;%s;%s)' % (GROUP, AGENT) in basic
    hybrid = sddl_list(acl.desired_aces('HybridExchangePermissions', AGENT))
    assert hybrid[0] == '(OA;CIIO;RPWP;;%s;%s)' % (USER, AGENT) and len(hybrid) == 4
    assert sddl_list(acl.desired_aces('ExchangeMailPublicFolderPermissions', AGENT)) == [
        '(OA;CIIO;RP;;f0f8ffac-1191-11d0-a060-00aa006c33ed;%s)' % AGENT]


def test_all_is_the_union_without_duplicates():
    everything = acl.desired_aces('All', AGENT)
    keys = [a.key() for a in everything]
    assert len(keys) == len(set(keys))
    union = set()
    for name in acl.PERMISSION_TYPES:
        if name != 'All':
            union.update(a.key() for a in acl.desired_aces(name, AGENT))
    assert set(keys) == union
    # PHS and BasicRead share "Replicating Directory Changes": counted once
    assert len(everything) == sum(len(acl.desired_aces(n, AGENT)) for n in acl.PERMISSION_TYPES if n != 'All') - 1


def test_unknown_type_and_bad_sid():
    with pytest.raises(acl.CloudSyncPermissionError, match='Unknown permission type'):
        acl.desired_aces('CloudHR2', AGENT)
    with pytest.raises(ValueError):
        acl.desired_aces('UserGroupCreateDelete', 'provAgentgMSA$')


# ------------------------------------------------------------------ algebra on real descriptors

@pytest.mark.parametrize('fixture', ['sd_domain_root_dacl.bin', 'sd_ou_delegated.bin', 'sd_adminsdholder.bin', 'sd_domain_root.bin'])
def test_present_twice_is_one_set_and_absent_restores(fixture):
    sd = load(fixture)
    original = sd.to_bytes()
    desired = acl.desired_aces('UserGroupCreateDelete', AGENT)
    once, added = acl.apply_present(sd, desired)
    assert len(added) == N_UGCD
    assert sd.to_bytes() == original                      # input untouched
    twice, added_again = acl.apply_present(once, desired)
    assert added_again == []
    assert twice.to_bytes() == once.to_bytes()
    assert acl.missing_aces(once.dacl, desired) == []
    # others untouched: removing what we added gives back the original bytes
    back, removed = acl.apply_absent(once, desired)
    assert sorted(sddl_list(removed)) == sorted(sddl_list(added))
    assert back.to_bytes() == original
    # canonical order kept, inherited ACEs unchanged and still last
    assert once.dacl.is_canonical()
    assert once.dacl.inherited() == sd.dacl.inherited()
    # owner, group, SACL and control untouched
    assert (once.owner, once.group, once.sacl, once.control) == (sd.owner, sd.group, sd.sacl, sd.control)


def test_new_aces_go_after_explicit_allows_before_inherited():
    sd = load('sd_ou_delegated.bin')
    new, added = acl.apply_present(sd, acl.desired_aces('UserGroupCreateDelete', AGENT))
    n_explicit = len(sd.dacl.explicit())
    assert new.dacl.aces[:n_explicit] == sd.dacl.aces[:n_explicit]
    assert new.dacl.aces[n_explicit:n_explicit + N_UGCD] == added
    assert new.dacl.aces[n_explicit + N_UGCD:] == sd.dacl.inherited()


def test_deny_goes_after_explicit_denies():
    d_other = Ace(1, 0, 0x10, OTHER)
    a_other = Ace(0, 0, 0x10, OTHER)
    inh = Ace(0, 0x12, 0x10, 'S-1-5-11')
    sd = SecurityDescriptor(dacl=Acl([d_other, a_other, inh]))
    deny = Ace(6, 0, 3, AGENT, GROUP)
    new, _added = acl.apply_present(sd, [deny])
    assert new.dacl.aces == [d_other, deny, a_other, inh]


def test_absent_removes_only_ours_never_foreign_or_inherited():
    desired = acl.desired_aces('UserGroupCreateDelete', AGENT)
    ours = desired[1]
    foreign_same_rights = Ace(ours.ace_type, ours.flags, ours.mask, OTHER, ours.object_type)      # other trustee
    broader = Ace(ours.ace_type, ours.flags, ours.mask | 0x10, AGENT, ours.object_type)           # other rights
    other_flags = Ace(ours.ace_type, 0, ours.mask, AGENT, ours.object_type)                      # other inheritance
    inherited_copy = Ace(ours.ace_type, ours.flags | 0x10, ours.mask, AGENT, ours.object_type)  # inherited
    deny_twin = Ace(6, ours.flags, ours.mask, AGENT, ours.object_type)                           # deny
    sd = SecurityDescriptor(dacl=Acl([deny_twin, foreign_same_rights, ours, broader, other_flags, ours.copy(), inherited_copy]))
    new, removed = acl.apply_absent(sd, desired)
    assert removed == [ours, ours]                       # a duplicate of ours goes too
    assert new.dacl.aces == [deny_twin, foreign_same_rights, broader, other_flags, inherited_copy]


def test_inherited_copy_does_not_count_as_present():
    desired = acl.desired_aces('UserGroupCreateDelete', AGENT)
    inherited = [Ace(a.ace_type, a.flags | 0x10, a.mask, a.sid, a.object_type, a.inherited_object_type) for a in desired]
    sd = SecurityDescriptor(dacl=Acl(inherited))
    assert len(acl.missing_aces(sd.dacl, desired)) == N_UGCD
    new, added = acl.apply_present(sd, desired)
    assert new.dacl.aces[:N_UGCD] == added and new.dacl.aces[N_UGCD:] == inherited


def test_descriptor_without_dacl_or_with_null_dacl_is_refused():
    desired = acl.desired_aces('UserGroupCreateDelete', AGENT)
    no_dacl = SecurityDescriptor(owner='S-1-5-32-544')
    null_dacl = SecurityDescriptor.from_bytes(bytes.fromhex('0100048000000000000000000000000000000000'))
    assert null_dacl.dacl is None and null_dacl.to_sddl() == 'D:NO_ACCESS_CONTROL'
    for sd in (no_dacl, null_dacl):
        with pytest.raises(acl.CloudSyncPermissionError, match='DACL'):
            acl.apply_present(sd, desired)
        with pytest.raises(acl.CloudSyncPermissionError, match='DACL'):
            acl.apply_absent(sd, desired)


def test_empty_dacl_gets_ours():
    sd = SecurityDescriptor(dacl=Acl([], revision=2))
    new, added = acl.apply_present(sd, acl.desired_aces('UserGroupCreateDelete', AGENT))
    assert len(added) == N_UGCD and new.dacl.to_bytes()[0] == 4  # ACL revision raised for object ACEs
    back, removed = acl.apply_absent(new, added)
    assert len(removed) == N_UGCD and back.dacl.aces == []


def test_desired_duplicates_added_once():
    desired = acl.desired_aces('UserGroupCreateDelete', AGENT)
    sd = load('sd_domain_root_dacl.bin')
    new, added = acl.apply_present(sd, desired + [a.copy() for a in desired])
    assert len(added) == N_UGCD and len(new.dacl) == len(sd.dacl) + N_UGCD


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(['UserGroupCreateDelete', 'BasicRead', 'PasswordWriteBack', 'HybridExchangePermissions']),
                min_size=1, max_size=4), st.sampled_from([AGENT, OTHER]))
def test_layered_grants_remove_independently(types, sid):
    """Grant several types in turn, then remove them: the descriptor is the original again, byte for byte
    (the ACE sets of these types do not overlap)."""
    base = load('sd_ou_delegated.bin')
    sd = base
    for name in types:
        sd, _added = acl.apply_present(sd, acl.desired_aces(name, sid))
    for name in types:
        sd, _removed = acl.apply_absent(sd, acl.desired_aces(name, sid))
    assert sd.to_bytes() == base.to_bytes()


# ------------------------------------------------------------------ effective rights

GROUP_SID = CORP_SID + '-2001'


def _inherited(aces):
    return [Ace(a.ace_type, a.flags | 0x10, a.mask, a.sid, a.object_type, a.inherited_object_type) for a in aces]


def test_effective_rights_exact_grant_inherited_or_through_a_group():
    desired = acl.desired_aces('UserGroupCreateDelete', AGENT, domain_root=False)
    assert acl.effective_missing(Acl([]), desired, [AGENT]) == [(a, a.mask) for a in desired]
    assert acl.effective_missing(Acl(desired), desired, [AGENT]) == []
    # granted on a parent (the domain root) and inherited by the OU
    assert acl.effective_missing(Acl(_inherited(desired)), desired, [AGENT]) == []
    # granted to a group the account is in (tokenGroups)
    to_group = acl.desired_aces('UserGroupCreateDelete', GROUP_SID, domain_root=False)
    assert acl.effective_missing(Acl(to_group), desired, [AGENT]) != []
    assert acl.effective_missing(Acl(to_group), desired, [AGENT, GROUP_SID]) == []


def test_effective_rights_broader_aces_count_narrower_do_not():
    desired = acl.desired_aces('UserGroupCreateDelete', AGENT, domain_root=False)
    full_control = Ace(0, 0x02, 0x000F01FF, AGENT)                     # (A;CI;GA-mapped) on this object and all below
    assert acl.effective_missing(Acl([full_control]), desired, [AGENT]) == []
    this_only = Ace(0, 0, 0x000F01FF, AGENT)                            # no inheritance: nothing for descendants
    missing = acl.effective_missing(Acl([this_only]), desired, [AGENT])
    assert [a.to_sddl(CORP_SID) for a, _m in missing] == sddl_list(a for a in desired if a.flags & 0x02)
    one_property = Ace(5, 0x0a, 0x30, AGENT, 'bf967953-0de6-11d0-a285-00aa003049e2', GROUP)   # RP/WP of one attribute only
    assert acl.effective_missing(Acl([one_property]), desired[:1], [AGENT]) == [(desired[0], desired[0].mask)]
    other_class = Ace(5, 0x0a, 0x20038, AGENT, None, 'bf967a86-0de6-11d0-a285-00aa003049e2')  # descendant computers
    assert acl.effective_missing(Acl([other_class]), desired[:1], [AGENT]) == [(desired[0], desired[0].mask)]
    generic_all = Ace(0, 0x0a, 0x10000000, AGENT)                       # GA kept unmapped in an inheritable ACE
    assert acl.effective_missing(Acl([generic_all]), desired[:1], [AGENT]) == []
    generic_read = Ace(0, 0x0a, 0x80000000, AGENT)                      # GR: reads, does not write
    assert acl.effective_missing(Acl([generic_read]), desired[:1], [AGENT]) == [(desired[0], desired[0].mask & ~0x00020010)]
    no_propagate = Ace(0, 0x06, 0x000F01FF, AGENT)                      # reaches the children only
    assert acl.effective_missing(Acl([no_propagate]), desired[1:2], [AGENT]) == [(desired[1], desired[1].mask)]


def test_effective_rights_deny_first_wins_and_names_the_missing_bits():
    desired = acl.desired_aces('UserGroupCreateDelete', AGENT, domain_root=False)
    read = desired[0]
    deny_read = Ace(6, 0x0a, 0x10, 'S-1-5-11', None, GROUP)            # Authenticated Users: no Read on groups
    missing = acl.effective_missing(Acl([deny_read] + desired), [read], [AGENT, 'S-1-5-11'])
    assert missing == [(read, 0x10)]
    assert acl.describe_right(read, 0x10) == 'Read all properties (RP) on descendant group objects'
    # an allow before the deny (non-canonical) decides first
    assert acl.effective_missing(Acl(desired + [deny_read]), [read], [AGENT, 'S-1-5-11']) == []


def test_effective_rights_on_a_real_ou_descriptor():
    """The lab's delegated OU: Authenticated Users may read and list, nobody but admins create."""
    sd = load('sd_ou_delegated.bin')
    token = [AGENT] + list(acl.WELL_KNOWN_TOKEN_SIDS)
    desired = acl.desired_aces('UserGroupCreateDelete', AGENT, domain_root=False)
    missing = dict((a.key(), m) for a, m in acl.effective_missing(sd.dacl, desired, token))
    assert desired[1].key() in missing and desired[3].key() in missing     # Create/Delete child: not held
    granted, _added = acl.apply_present(sd, desired)
    assert acl.effective_missing(granted.dacl, desired, token) == []
