# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which groups an incremental run examines (pure)."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import incremental


def state(groups, objects=None, mode='delta'):
    return {'groups': groups, 'objects': objects or {}, 'last_run': {'mode': mode}}


G1 = {'id': 'g1', 'display_name': 'One', 'member_ids': ['u1', 'u2']}
G2 = {'id': 'g2', 'display_name': 'Two', 'member_ids': ['u2']}
G3 = {'id': 'g3', 'display_name': 'Three', 'member_ids': []}
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
