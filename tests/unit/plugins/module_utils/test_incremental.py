# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which groups an incremental run examines (pure)."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import incremental


def state(groups, objects=None, mode='delta'):
    return {'groups': groups, 'objects': objects or {}, 'last_run': {'mode': mode}}


G1 = {'id': 'g1', 'display_name': 'One', 'security_enabled': True, 'member_ids': ['u1', 'u2']}
G2 = {'id': 'g2', 'display_name': 'Two', 'security_enabled': True, 'member_ids': ['u2']}
G3 = {'id': 'g3', 'display_name': 'Three', 'security_enabled': True, 'member_ids': []}
OBJ = {'u1': {'id': 'u1', 'type': 'user', 'on_premises_security_identifier': 'S-1'},
       'u2': {'id': 'u2', 'type': 'user', 'on_premises_security_identifier': 'S-2'}}


def test_nothing_changed():
    old = state({'g1': G1, 'g2': G2}, OBJ)
    assert incremental.entra_changed_ids(old, state({'g1': dict(G1), 'g2': dict(G2)}, dict(OBJ))) == set()


def test_added_removed_renamed_and_members():
    old = state({'g1': G1, 'g2': G2}, OBJ)
    new = state({'g1': dict(G1, display_name='Uno'), 'g3': G3}, OBJ)
    assert incremental.entra_changed_ids(old, new) == set(['g1', 'g2', 'g3'])
    new = state({'g1': dict(G1, member_ids=['u1']), 'g2': G2}, OBJ)
    assert incremental.entra_changed_ids(old, new) == set(['g1'])


def test_a_members_identifiers_changing_touches_its_groups():
    old = state({'g1': G1, 'g2': G2, 'g3': G3}, OBJ)
    objects = dict(OBJ, u2=dict(OBJ['u2'], on_premises_security_identifier='S-22'))
    assert incremental.entra_changed_ids(old, state({'g1': G1, 'g2': G2, 'g3': G3}, objects)) == set(['g1', 'g2'])


def test_full_read_means_everything():
    old = state({'g1': G1}, OBJ)
    assert incremental.entra_changed_ids(old, state({'g1': G1}, OBJ, mode='full')) is None
    assert incremental.entra_changed_ids(None, state({'g1': G1}, OBJ)) is None


def test_child_group_ids():
    groups = [{'id': 'p', 'members': [{'id': 'c', 'type': 'group'}, {'id': 'u', 'type': 'user'}]},
              {'id': 'c', 'members': [{'id': 'gc', 'type': 'group'}]},
              {'id': 'q', 'members': [{'id': 'x', 'type': 'group'}]}]
    assert incremental.child_group_ids(groups, set(['p'])) == set(['c'])
    assert incremental.child_group_ids(groups, set(['p', 'c'])) == set(['gc'])


def test_examine():
    assert incremental.examine(set(['a']), set(['b']), None) == (set(['a', 'b']), None)
    assert incremental.examine(set(), set(), None) == (set(), None)
    assert incremental.examine(None, set(['b']), None) == (None, 'entra_full_read')
    assert incremental.examine(set(['a']), None, 'dc_restored') == (None, 'dc_restored')
    assert incremental.examine(None, None, 'no_ad_state') == (None, 'no_ad_state')


OBJ3 = dict(OBJ, u3={'id': 'u3', 'type': 'user', 'on_premises_security_identifier': 'S-3'},
            g9={'id': 'g9', 'type': 'group'}, d1={'id': 'd1', 'type': 'device'})


def test_member_deltas_plans_user_changes_of_groups_untouched_in_ad():
    old = state({'g1': G1, 'g2': G2, 'g3': G3}, OBJ3)
    new = state({'g1': dict(G1, member_ids=['u2', 'u3', 'd1']), 'g2': dict(G2, display_name='Zwei'), 'g3': G3}, OBJ3)
    deltas = incremental.member_deltas(old, new, ['g1', 'g2'], set(), 50000)
    # g2 only changed its name: an empty delta, nothing to do for its members
    assert deltas == {'g1': {'added': ['u3', 'd1'], 'removed': ['u1']}, 'g2': {'added': [], 'removed': []}}


def test_member_deltas_leaves_out_what_needs_a_full_comparison():
    old = state({'g1': G1, 'g2': G2, 'g3': G3}, OBJ3)
    changed = dict(OBJ3, u1=dict(OBJ3['u1'], on_premises_security_identifier='S-11'))
    new = state({'g1': dict(G1, member_ids=['u1', 'u3']), 'g2': dict(G2, member_ids=['u2', 'g9']),
                 'g3': dict(G3, member_ids=['x1']), 'g4': {'id': 'g4', 'member_ids': ['u1']}}, OBJ3)
    # changed in AD by someone else: read in full
    assert incremental.member_deltas(old, new, ['g1'], {'g1'}, 50000) == {}
    # a nested group added (its DN comes from its AD copy), an object of unknown type, a group new to the scope
    assert incremental.member_deltas(old, new, ['g2', 'g3', 'g4'], set(), 50000) == {}
    # over max_members in either state
    assert incremental.member_deltas(old, new, ['g1'], set(), 1) == {}
    assert incremental.member_deltas(old, new, ['g1'], set(), 2) == {'g1': {'added': ['u3'], 'removed': ['u2']}}
    # a member that stays listed changed its identifiers: it may resolve to another object now
    new_changed = state(dict(new['groups']), changed)
    assert incremental.member_deltas(old, new_changed, ['g1'], set(), 50000) == {}
    # ... or a removed one did
    changed = dict(OBJ3, u2=dict(OBJ3['u2'], on_premises_security_identifier='S-22'))
    assert incremental.member_deltas(old, state(dict(new['groups']), changed), ['g1'], set(), 50000) == {}
    # not a delta state pair
    assert incremental.member_deltas(None, new, ['g1'], set(), 50000) == {}


def test_a_group_entering_the_scope_touches_the_groups_listing_it():
    parent = {'id': 'p', 'display_name': 'Parent', 'member_ids': ['u1', 'g3']}
    old = state({'g1': G1, 'p': parent}, dict(OBJ, g3={'id': 'g3', 'type': 'group'}))
    new = state({'g1': G1, 'p': parent, 'g3': G3}, dict(OBJ, g3={'id': 'g3', 'type': 'group'}))
    assert incremental.entra_changed_ids(old, new) == set(['g3', 'p'])
    # and its parent's link to it is decided by a full comparison, not from a (empty) member delta
    assert incremental.member_deltas(old, new, ['g3', 'p'], set(), 50000) == {}


def test_unsettled_ids_are_the_groups_to_try_again():
    reports = [dict(id='g1', action='error', reason='dn_collision'), dict(id='g2', action='skipped', reason='admin_count'),
               dict(id='g3', action='skipped', reason='mail_enabled'), dict(id='g4', action='updated', reason=None)]
    assert incremental.unsettled_ids(reports, None, None) == set(['g1', 'g2'])
    # kept from the last run for the groups not examined now; re-decided for those examined
    assert incremental.unsettled_ids(reports[3:], ['g4', 'g5'], set(['g4'])) == set(['g5'])
    assert incremental.unsettled_ids([], ['g5'], None) == set()


def test_member_deltas_only_for_groups_the_last_run_wrote():
    old = state({'g1': G1, 'g2': G2}, OBJ3)
    new = state({'g1': dict(G1, member_ids=['u1', 'u2', 'u3']), 'g2': dict(G2, member_ids=['u2', 'u3'])}, OBJ3)
    both = {'g1': {'added': ['u3'], 'removed': []}, 'g2': {'added': ['u3'], 'removed': []}}
    assert incremental.member_deltas(old, new, ['g1', 'g2'], set(), 50000) == both
    # no AD copy known to the last run (a converted group, a copy deleted while out of scope)
    assert incremental.member_deltas(old, new, ['g1', 'g2'], set(), 50000, managed_ids={'g2'}) == {'g2': both['g2']}
    # ineligible last time (not written then, so its AD copy lags behind its old member list)
    old_mail = state({'g1': dict(G1, mail_enabled=True), 'g2': G2}, OBJ3)
    assert incremental.member_deltas(old_mail, new, ['g1', 'g2'], set(), 50000) == {'g2': both['g2']}


def test_member_deltas_leave_out_parents_of_children_whose_link_may_change():
    child = {'id': 'g9', 'display_name': 'Child', 'security_enabled': True, 'member_ids': []}
    parent = {'id': 'p', 'display_name': 'Parent', 'security_enabled': True, 'member_ids': ['u1', 'g9']}
    old = state({'p': parent, 'g9': child}, OBJ3)
    new = state({'p': dict(parent, member_ids=['u1', 'g9', 'u3']), 'g9': child}, OBJ3)
    assert incremental.member_deltas(old, new, ['p'], set(), 50000) == {'p': {'added': ['u3'], 'removed': []}}
    # the child changed in AD (or was not written last time): the parent's link to it is decided in full
    assert incremental.member_deltas(old, new, ['p'], {'g9'}, 50000) == {}
    # the child becomes eligible (it is written from now on)
    old_ineligible = state({'p': parent, 'g9': dict(child, security_enabled=False)}, OBJ3)
    assert incremental.eligibility_changed(old_ineligible, new, 50000) == {'g9'}
    assert incremental.member_deltas(old_ineligible, new, ['p'], set(), 50000) == {}
    assert 'p' in incremental.entra_changed_ids(old_ineligible, state({'p': parent, 'g9': child}, OBJ3), 50000)
    assert incremental.parents_of(new, ['g9']) == {'p'} and incremental.parents_of(new, []) == set()


def test_member_deltas_leave_out_a_removal_another_object_may_still_want():
    twin = dict(OBJ3, u4={'id': 'u4', 'type': 'user', 'on_premises_security_identifier': 's-1'})   # u1's SID, other case
    old = state({'g1': dict(G1, member_ids=['u1', 'u4'])}, twin)
    new = state({'g1': dict(G1, member_ids=['u4'])}, twin)
    assert incremental.member_deltas(old, new, ['g1'], set(), 50000) == {}
    alone = dict(OBJ3)
    old = state({'g1': G1}, alone)
    new = state({'g1': dict(G1, member_ids=['u2'])}, dict((k, v) for k, v in alone.items() if k != 'u1'))
    assert incremental.member_deltas(old, new, ['g1'], set(), 50000) == {'g1': {'added': [], 'removed': ['u1']}}


def test_holders_count_each_object_once_per_identifier():
    objects = {
        'a': {'on_premises_security_identifier': 'S-1-5-21-1', 'on_premises_immutable_id': 's-1-5-21-1'},   # twice: once
        'b': {'on_premises_object_identifier': 'S-1-5-21-1'},
        'c': {'on_premises_object_identifier': 'other'},
        'd': 'not a dict',
    }
    assert incremental._holders(objects, {'s-1-5-21-1'}) == {'s-1-5-21-1': 2}
    assert incremental._holders(objects, {'missing'}) == {'missing': 0}
