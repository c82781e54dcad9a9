# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pure decisions of ad_changes: when a saved uSNChanged mark may be trusted, and which groups
need a fresh read."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import ad_changes

BASE = 'OU=Cloud,DC=corp,DC=example,DC=test'
MARK = {'server': 'dc1.corp.example.test', 'invocation_id': '9c71176c-1288-42da-904e-650820a33791', 'usn': 5000}


def saved(**kw):
    state = ad_changes.new_state(MARK, BASE, {'g-guid': 'gid'}, full_read=True, now=1000.0)
    state.update(kw)
    return state


def test_a_fresh_state_is_usable():
    assert ad_changes.unusable_reason(saved(), dict(MARK, usn=5100), BASE, now=1010.0) is None


def test_dn_spelling_does_not_matter():
    assert ad_changes.unusable_reason(saved(), MARK, 'ou=cloud, dc=corp,dc=example,dc=test', now=1010.0) is None


@pytest.mark.parametrize('state, current, base, reason', [
    (None, MARK, BASE, 'no_ad_state'),
    ({}, MARK, BASE, 'no_ad_state'),
    ({'version': 0}, MARK, BASE, 'ad_state_version'),
    ('saved', dict(MARK, invocation_id='00000000-0000-0000-0000-000000000001', server='dc2.corp.example.test'), BASE, 'dc_changed'),
    ('saved', dict(MARK, invocation_id='00000000-0000-0000-0000-000000000001'), BASE, 'dc_restored'),
    ('saved', dict(MARK, usn=4999), BASE, 'usn_went_back'),
    ('saved', MARK, 'OU=Other,DC=corp,DC=example,DC=test', 'search_base_changed'),
    ('saved', None, BASE, 'dc_without_usn'),
])
def test_untrusted_marks(state, current, base, reason):
    state = saved() if state == 'saved' else state
    assert ad_changes.unusable_reason(state, current, base, now=1010.0) == reason


def test_interval_forces_a_full_read():
    assert ad_changes.unusable_reason(saved(), MARK, BASE, now=1000.0 + ad_changes.FULL_READ_INTERVAL + 1) == 'interval'
    assert ad_changes.unusable_reason(saved(), MARK, BASE, now=1000.0 + 10, full_read_interval=None) is None


def test_groups_to_reread():
    changed = [
        {'object_guid': 'a', 'group_id': 'ga', 'usn': 10, 'deleted': False},     # edited by hand
        {'object_guid': 'b', 'group_id': 'gb', 'usn': 11, 'deleted': False},     # our own write
        {'object_guid': 'c', 'group_id': None, 'usn': 12, 'deleted': False},     # anchor removed by hand
        {'object_guid': 'd', 'group_id': None, 'usn': 13, 'deleted': False},     # never ours
        {'object_guid': 'e', 'group_id': 'ge', 'usn': 14, 'deleted': True},      # deleted by hand
        {'object_guid': 'f', 'group_id': 'gf', 'usn': 20, 'deleted': False},     # ours, edited after our write
    ]
    state = {'managed': {'c': 'gc'}, 'own_writes': {'b': 11, 'f': 15}}
    assert ad_changes.groups_to_reread(changed, state) == set(['ga', 'gc', 'ge', 'gf'])
    # with the search base: an anchored copy nobody managed outside it is someone else's; one we
    # managed counts wherever it went (moved out by hand), and so does a new copy inside it
    base = 'OU=Groups,DC=corp,DC=example,DC=test'
    located = [dict(c, dn='CN=%s,OU=Elsewhere,DC=corp,DC=example,DC=test' % c['object_guid']) for c in changed] + [
        {'object_guid': 'g', 'group_id': 'gg', 'usn': 21, 'deleted': False, 'dn': 'CN=g,' + base}]
    state = {'managed': {'c': 'gc', 'a': 'ga'}, 'own_writes': {'b': 11, 'f': 15}}
    assert ad_changes.groups_to_reread(located, state, base) == set(['ga', 'gc', 'gg'])


def test_new_state_keeps_the_last_full_read_time_on_incremental_runs():
    first = ad_changes.new_state(MARK, BASE, {}, full_read=True, now=100.0)
    later = ad_changes.new_state(dict(MARK, usn=6000), BASE, {'x': 'y'}, previous=first, now=200.0)
    assert later['full_read_at'] == 100.0 and later['usn'] == 6000 and later['managed'] == {'x': 'y'}
    again = ad_changes.new_state(MARK, BASE, {}, previous=first, full_read=True, now=300.0)
    assert again['full_read_at'] == 300.0


def test_split_own_writes_keeps_what_others_changed_meanwhile():
    """Read back after a run's writes: the groups it wrote are its own (a deleted one leaves
    ``known``, a created one joins it); a managed group it did not write, or a copy made meanwhile
    inside the search base, changed by someone else during the run: compared in full next time.
    Objects that are not ours, and other jobs' copies outside the base, are not."""
    known = {'guid-a': 'a', 'guid-b': 'b', 'guid-c': 'c'}
    changed = [
        {'object_guid': 'guid-a', 'group_id': 'a', 'usn': 6001, 'deleted': False, 'dn': 'CN=A,' + BASE},      # written
        {'object_guid': 'guid-new', 'group_id': 'n', 'usn': 6002, 'deleted': False, 'dn': 'CN=N,' + BASE},    # created
        {'object_guid': 'guid-c', 'group_id': 'c', 'usn': 6003, 'deleted': True, 'dn': None},                 # deleted
        {'object_guid': 'guid-b', 'group_id': None, 'usn': 6004, 'deleted': False, 'dn': 'CN=B,' + BASE},     # by hand
        {'object_guid': 'guid-x', 'group_id': None, 'usn': 6005, 'deleted': False, 'dn': 'CN=X,' + BASE},     # not ours
        {'object_guid': 'guid-o', 'group_id': 'o', 'usn': 6006, 'deleted': False, 'dn': 'CN=O,OU=Other,DC=corp,DC=example,DC=test'},
        {'object_guid': 'guid-m', 'group_id': 'm', 'usn': 6007, 'deleted': False, 'dn': 'CN=M,' + BASE},      # copy made meanwhile
    ]
    own, others = ad_changes.split_own_writes(changed, {'a', 'n', 'c'}, known, BASE)
    assert own == {'guid-a': 6001, 'guid-new': 6002, 'guid-c': 6003}
    assert others == {'b', 'm'}
    assert known == {'guid-a': 'a', 'guid-b': 'b', 'guid-new': 'n'}
