"""Least privilege, end to end: the permissions cloudsync_permissions grants are exactly enough for
ad_group_writeback. The lab's ordinary account (svc-writeback, no admin rights) gets
UserGroupCreateDelete on one OU; bound as that account, the writeback creates, updates, renames,
re-members and deletes groups there, and a group mapped outside that OU fails with a clear
insufficient-rights message while the others still succeed."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.cloudsync_acl import apply_present
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.security_descriptor import (
    ACCESS_ALLOWED_OBJECT_ACE_TYPE, CONTAINER_INHERIT_ACE, DS_GENERIC_WRITE, INHERIT_ONLY_ACE, INHERITED_ACE, RIGHT_DS_CREATE_CHILD,
    RIGHT_DS_DELETE_CHILD, SE_DACL_PROTECTED, Ace, SecurityDescriptor,
)
from test_cloudsync_permissions import GROUP_CLASS, admin_client, grant_permissions, sandbox_ou, unprivileged_sid
from writeback_helpers import Directory, as_member, entra_group, entra_user, first, identity_dn_keys, run

USER_CLASS = 'bf967aba-0de6-11d0-a285-00aa003049e2'


def as_svc(forest, groups, ou, **kw):
    kw.setdefault('target_ou', ou)
    kw.setdefault('search_base', ou)
    return run(forest, groups, ad_user=forest.unprivileged_upn, ad_password=forest.unprivileged_password, **kw)


def test_writeback_works_with_only_the_granted_rights(corp, tmp_path):
    ids = corp.identities
    directory = Directory(corp)
    try:
        with sandbox_ou(corp, prefix='lp') as ou:
            group = entra_group('Least Privilege', [entra_user(ids[33]), entra_user(ids[34])], description='v1')
            before = as_svc(corp, [group], ou, check=True)
            assert before['changed'] is True  # reading is allowed to any authenticated user

            denied = as_svc(corp, [group], ou, diff=True)
            assert denied['groups'][0]['action'] == 'error'
            assert list(denied['diff']['after'][group['id']]) == ['error'], 'the diff must not show a failed write as done'
            assert 'insufficientAccessRights' in denied['groups'][0]['reason_text']
            assert denied['summary']['errors'] == 1 and denied['summary']['created'] == 0, denied['summary']

            rc, output, _result = grant_permissions(corp, tmp_path / 'grant', targets=[ou],
                                                    principal=corp.unprivileged_user)
            assert rc == 0, output[-2000:]

            created = as_svc(corp, [group], ou)
            assert created['summary']['created'] == 1, created['groups']
            group['display_name'] = 'Least Privilege Renamed'
            group['description'] = 'v2'
            group['members'] = [entra_user(ids[35])]
            updated = as_svc(corp, [group], ou)
            assert updated['summary']['renamed'] == 1 and 'description' in updated['groups'][0]['changes']
            entry = directory.one(group['id'])
            assert first(entry, 'cn').startswith('Least Privilege Renamed_')
            assert directory.member_keys(entry) == identity_dn_keys([ids[35]])
            assert as_svc(corp, [group], ou)['changed'] is False

            outside = entra_group('Outside The Grant')
            mixed = as_svc(corp, [group, outside], ou, ou_map=[{'id': outside['id'], 'ou': corp.groups_ou}])
            by_id = dict((g['id'], g) for g in mixed['groups'])
            assert by_id[outside['id']]['action'] == 'error'
            assert 'insufficientAccessRights' in by_id[outside['id']]['reason_text']
            assert corp.groups_ou.split(',')[0] in by_id[outside['id']]['reason_text']
            assert by_id[group['id']]['action'] == 'unchanged'
            assert directory.by_anchor(outside['id']) == []

            pruned = as_svc(corp, [], ou, prune=True, out_of_scope='delete', prune_empty_scope=True)
            assert pruned['summary']['deleted'] == 1
            assert directory.by_anchor(group['id']) == []
    finally:
        directory.close()


# ------------------------------------------------------------------ a hardened OU (issue 11.7)

def harden_ou(forest, ou):
    """Make ``ou`` a hardened OU: inheritance blocked (protected DACL) and no read for Authenticated
    Users (nor Everyone, Pre-Windows 2000 Compatible Access, Enterprise Domain Controllers): the
    inherited ACEs of administrators are kept as explicit ones, every ACE of those principals is
    dropped."""
    drop = ('S-1-5-11', 'S-1-1-0', 'S-1-5-32-554', 'S-1-5-9')
    client = admin_client(forest)
    try:
        sd = SecurityDescriptor.from_bytes(client.read_security_descriptor(ou))
        kept = []
        for ace in sd.dacl.aces:
            if ace.sid in drop:
                continue
            if ace.is_inherited:
                ace = ace.copy()
                ace.flags &= ~INHERITED_ACE
            kept.append(ace)
        sd.dacl.aces = kept
        sd.control |= SE_DACL_PROTECTED
        client.write_security_descriptor(ou, sd.to_bytes())
        stored = SecurityDescriptor.from_bytes(client.read_security_descriptor(ou))
    finally:
        client.close()
    assert stored.control & SE_DACL_PROTECTED and not stored.dacl.inherited()
    assert not [a for a in stored.dacl.aces if a.sid in drop]


def grant_aces(forest, ou, aces):
    client = admin_client(forest)
    try:
        sd = SecurityDescriptor.from_bytes(client.read_security_descriptor(ou))
        new_sd, _added = apply_present(sd, aces)
        client.write_security_descriptor(ou, new_sd.to_bytes())
    finally:
        client.close()


# What Set-AADCloudSyncPermissions -PermissionType UserGroupCreateDelete is documented to write, and what
# this module granted before 11.7: Generic Write on descendant groups/users and Create/Delete child of both
# (https://learn.microsoft.com/entra/identity/hybrid/cloud-sync/gmsa-cloud-sync, table "UserGroupCreateDelete").
def documented_cmdlet_aces(sid):
    out = []
    for cls in (GROUP_CLASS, USER_CLASS):
        out.append(Ace(ACCESS_ALLOWED_OBJECT_ACE_TYPE, CONTAINER_INHERIT_ACE | INHERIT_ONLY_ACE, DS_GENERIC_WRITE, sid, None, cls))
        out.append(Ace(ACCESS_ALLOWED_OBJECT_ACE_TYPE, CONTAINER_INHERIT_ACE, RIGHT_DS_CREATE_CHILD | RIGHT_DS_DELETE_CHILD, sid, cls, None))
    return out


def _hardened_groups(corp):
    ids = corp.identities
    child = entra_group('Hardened Child', [entra_user(ids[36])])
    parent = entra_group('Hardened Parent', [entra_user(ids[37]), entra_user(ids[38]), as_member(child)])
    return [parent, child], {parent['id']: identity_dn_keys([ids[37], ids[38]]), child['id']: identity_dn_keys([ids[36]])}


def test_old_ace_set_collides_with_its_own_groups_in_a_hardened_ou(corp):
    """The ACEs documented for the cmdlet give no Read and no List contents: in an OU where
    Authenticated Users cannot read, the account creates its groups but cannot see them again, so
    its second run collides with what it wrote (the failure 11.7 fixes)."""
    groups, _members = _hardened_groups(corp)
    with sandbox_ou(corp, prefix='hard-old') as ou:
        harden_ou(corp, ou)
        grant_aces(corp, ou, documented_cmdlet_aces(unprivileged_sid(corp)))
        first_run = as_svc(corp, groups, ou)
        assert first_run['summary']['created'] == 2, first_run['groups']
        second = as_svc(corp, groups, ou)
        assert second['summary']['errors'] == 2, second['summary']
        by_name = dict((g['display_name'], g['reason_text']) for g in second['groups'])
        assert 'already holds that name' in by_name['Hardened Child'], by_name
        # The parent, whose create would link the child's DN (held by an object the run cannot
        # see), is not sent at all (writeback_apply: a failed create is never linked).
        assert 'whose create failed' in by_name['Hardened Parent'], by_name


def test_granted_rights_suffice_in_a_hardened_ou(corp, tmp_path):
    """11.7: an OU with inheritance blocked where Authenticated Users cannot read. After
    cloudsync_permissions grants UserGroupCreateDelete there, the writeback bound as svc-writeback
    creates the groups with their members, and its second run changes nothing and makes no duplicate.
    The rights are the ones Microsoft's group provisioning prerequisites name: "Read, Write, Create,
    and Delete all properties for all descendant Groups and User objects"
    (https://learn.microsoft.com/entra/identity/hybrid/cloud-sync/tutorial-group-provisioning)."""
    groups, members = _hardened_groups(corp)
    directory = Directory(corp)
    try:
        with sandbox_ou(corp, prefix='hard') as ou:
            harden_ou(corp, ou)
            denied = as_svc(corp, groups, ou)
            assert denied['summary']['created'] == 0 and denied['summary']['errors'] == 2, denied['summary']

            rc, output, result = grant_permissions(corp, tmp_path / 'grant', targets=[ou], principal=corp.unprivileged_user)
            assert rc == 0 and result['changed'] is True, output[-2000:]

            created = as_svc(corp, groups, ou)
            assert created['summary']['created'] == 2 and created['summary']['errors'] == 0, created['groups']
            for group in groups:
                found = directory.by_anchor(group['id'])
                assert len(found) == 1, found
                keys = directory.member_keys(found[0])
                assert members[group['id']] <= keys, (group['display_name'], keys)
            again = as_svc(corp, groups, ou)
            assert again['changed'] is False, again['groups']
            assert again['summary']['unchanged'] == 2 and again['summary']['errors'] == 0, again['summary']
            assert len(directory.children(ou)) == 2
            assert all(len(directory.by_anchor(g['id'])) == 1 for g in groups)
    finally:
        directory.close()
