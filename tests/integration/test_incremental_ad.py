# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Incremental runs on both sides (issue 12.1): with a delta state, a run examines only the groups
that changed in Entra (Graph delta) or in AD (the DC's uSNChanged mark) since the last run.

Checked against the lab's real Samba DC and the HTTPS Graph emulator: a no-op reads no managed
group; a member added by hand, a rename, a move and a delete made by hand in AD are each found
(check mode reports them, the next run repairs them); our own writes are not taken for manual
changes; a state from another DC (invocationId), another search base or no state at all falls back
to a full read and says why.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import uuid

import pytest

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import delta_state
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_codecs import dn_key
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.errors import CloudSyncError
from writeback_helpers import Directory, graph_args, identity_dn_keys, run, synced_users

PREFIX = 'INC %s ' % uuid.uuid4().hex[:6]
WRITES = ('adds', 'modifies', 'modify_dns', 'deletes')


@pytest.fixture(autouse=True)
def _no_ambient_ca_bundle(monkeypatch):
    monkeypatch.setenv('REQUESTS_CA_BUNDLE', '/nonexistent/ca-bundle.pem')


@pytest.fixture
def world(corp, graph_tenant, graph_emulator_factory, tmp_path):
    ids = corp.identities
    b = graph_tenant()
    users = synced_users(b, ids[:6])
    # Random group ids: the emulator's default ids repeat from test to test, and the lab is shared.
    child = b.group(PREFIX + 'Child', members=[users[2]], id=str(uuid.uuid4()))
    groups = dict(child=child)
    groups['alpha'] = b.group(PREFIX + 'Alpha', members=[users[0], users[1], child], id=str(uuid.uuid4()))
    for n in range(4):
        groups['g%d' % n] = b.group(PREFIX + 'G%d' % n, members=[users[3 + n % 3]], id=str(uuid.uuid4()))
    emu = graph_emulator_factory(b.build())
    directory = Directory(corp)
    ou = directory.make_ou('t-inc-%s' % uuid.uuid4().hex[:8])
    try:
        yield dict(emu=emu, ids=ids, users=users, groups=groups, ou=ou, directory=directory,
                   state=str(tmp_path / 'state.json'))
    finally:
        directory.remove_tree(ou)
        directory.close()


def wb(corp, w, **kw):
    args = graph_args(w['emu'])
    args.update(target_ou=w['ou'], search_base=w['ou'], all_groups=True, prune=True,
                group_filter="startswith(displayName,'%s')" % PREFIX, delta_state_path=w['state'])
    args.update(kw)
    return run(corp, None, **args)


def writes(result):
    return dict((k, result['ldap_operations'].get(k, 0)) for k in WRITES)


def test_no_op_reads_no_managed_group_and_finds_each_manual_change(corp, world):
    w, d = world, world['directory']
    first = wb(corp, w)
    assert first['summary']['created'] == 6
    assert first['incremental']['ad'] == 'full' and first['incremental']['ad_reason'] == 'no_ad_state'
    assert json.load(open(w['state']))['ad']['invocation_id']

    # Our own writes are not changes: the next run examines nothing and writes nothing.
    noop = wb(corp, w)
    assert noop['incremental'] == dict(noop['incremental'], entra='delta', ad='usn', ad_reason=None, examined_groups=0)
    assert noop['changed'] is False and not any(writes(noop).values())
    assert noop['summary']['unchanged'] == 6
    assert noop['groups'] == []
    # A no-op's AD reads do not grow with the groups: the schema check, the containers (search_base,
    # target_ou), the rootDSE's USN, the DC's invocationId and one search for changed groups.
    assert noop['ldap_operations']['searches'] <= 6, noop['ldap_operations']

    g = w['groups']
    alpha = d.one(g['alpha'], w['ou'])
    stranger = w['ids'][5]['dn']
    d.modify(alpha['dn'], {'member': [('add', [stranger])]})                       # member added by hand
    d.client.modify_dn(d.one(g['g0'], w['ou'])['dn'], 'CN=renamed by hand')                 # renamed by hand
    elsewhere = d.make_ou('elsewhere', parent=w['ou'])
    d.client.modify_dn(d.one(g['g1'], w['ou'])['dn'], 'CN=moved', new_superior=elsewhere)   # moved by hand
    d.client.delete(d.one(g['g2'], w['ou'])['dn'])                                          # deleted by hand

    check = wb(corp, w, check=True)
    assert check['incremental']['ad'] == 'usn'
    by_id = dict((r['id'], r) for r in check['groups'])
    assert set([g['alpha'], g['g0'], g['g1'], g['g2']]) <= set(by_id), by_id.keys()
    assert g['g3'] not in by_id
    assert by_id[g['alpha']]['action'] == 'updated' and by_id[g['alpha']]['members_removed']
    assert by_id[g['g0']]['action'] == 'renamed'
    assert by_id[g['g1']]['action'] in ('moved', 'renamed')
    assert by_id[g['g2']]['action'] == 'created'
    assert not any(writes(check).values())

    repair = wb(corp, w)
    assert repair['changed'] is True
    assert identity_dn_keys([w['ids'][5]]).isdisjoint(d.member_keys(d.one(g['alpha'], w['ou'])))
    assert d.one(g['g0'], w['ou'])['dn'].startswith('CN=' + PREFIX + 'G0_')
    assert d.one(g['g1'], w['ou'])['dn'].lower().endswith(w['ou'].lower()) and 'elsewhere' not in d.one(g['g1'], w['ou'])['dn'].lower()
    d.one(g['g2'], w['ou'])

    after = wb(corp, w)
    assert after['changed'] is False and after['incremental']['examined_groups'] == 0


def test_entra_changes_are_examined_with_the_groups_nested_in_them(corp, world):
    w, d = world, world['directory']
    emu, g = w['emu'], w['groups']
    wb(corp, w)
    emu.admin.add_members(g['alpha'], [w['users'][4]])
    second = wb(corp, w)
    assert second['incremental']['ad'] == 'usn'
    examined = set(r['id'] for r in second['groups'])
    assert g['alpha'] in examined and g['g3'] not in examined
    # The child's AD copy is read as a reference (its DN stays in alpha's members), not rewritten.
    alpha = d.one(g['alpha'], w['ou'])
    assert d.member_keys({'attributes': {'member': [d.one(g['child'], w['ou'])['dn']]}}) <= d.member_keys(alpha)
    assert identity_dn_keys([w['ids'][4]]) <= d.member_keys(alpha)
    assert wb(corp, w)['changed'] is False


def test_a_group_deleted_in_entra_is_deleted_in_ad_incrementally(corp, world):
    w, d = world, world['directory']
    emu, g = w['emu'], w['groups']
    wb(corp, w)
    emu.admin.delete_group(g['g3'])
    result = wb(corp, w)
    assert result['incremental']['ad'] == 'usn'
    assert result['summary']['deleted'] == 1
    assert d.by_anchor(g['g3'], w['ou']) == []


@pytest.mark.parametrize('tamper, reason', [
    (lambda s: s['ad'].update(invocation_id='00000000-0000-0000-0000-000000000001'), 'dc_restored'),
    (lambda s: s['ad'].update(invocation_id='00000000-0000-0000-0000-000000000001', server='dc2.other.test'), 'dc_changed'),
    (lambda s: s['ad'].update(search_base='OU=Elsewhere,DC=corp,DC=example,DC=test'), 'search_base_changed'),
    (lambda s: s.pop('ad'), 'no_ad_state'),
    (lambda s: s['ad'].update(usn=s['ad']['usn'] + 10 ** 9), 'usn_went_back'),
])
def test_an_untrusted_ad_mark_means_a_full_read_said_so(corp, world, tamper, reason):
    w = world
    wb(corp, w)
    state = json.load(open(w['state']))
    tamper(state)
    with open(w['state'], 'w') as handle:
        json.dump(state, handle)
    result = wb(corp, w, check=True)
    assert result['incremental']['ad'] == 'full' and result['incremental']['ad_reason'] == reason
    assert result['incremental']['examined_groups'] == 6
    assert result['changed'] is False


def test_credentials_for_another_tenant_delete_nothing(corp, world, graph_tenant, graph_emulator_factory):
    """prune is on by default: a full read of another tenant (whose groups match none of ours)
    must not take every managed group for deleted in Entra."""
    w, d = world, world['directory']
    wb(corp, w)
    other = graph_tenant()
    user = other.synced_user(w['ids'][0]['sam_account_name'], object_guid=w['ids'][0]['object_guid'])
    other.group(PREFIX + 'Other tenant', members=[user], id=str(uuid.uuid4()))
    emu2 = graph_emulator_factory(other.build())
    args = graph_args(emu2)
    args.update(target_ou=w['ou'], search_base=w['ou'], all_groups=True, prune=True,
                group_filter="startswith(displayName,'%s')" % PREFIX)
    with pytest.raises(Exception) as err:
        run(corp, None, **args)
    assert 'none of the 6 managed groups' in str(err.value)
    assert len(d.children(w['ou'])) == 6
    # Without the guard (prune_empty_scope) the same run would delete all six: the guard is what stops it.
    args['prune_empty_scope'] = True
    check = run(corp, None, check=True, **args)
    assert check['summary']['deleted'] == 6


def test_member_changes_made_in_entra_only_are_planned_from_the_changes(corp, world):
    """A group whose AD copy nobody changed since the last run is planned from its member changes
    in Entra (``member_scope: changes``: its AD members are not read); a group also changed by hand
    in AD is compared in full, so the hand-added member goes. Check, apply, apply again; a full
    comparison (no state) then agrees that nothing is left to do."""
    w, d = world, world['directory']
    emu, g, users, ids = w['emu'], w['groups'], w['users'], w['ids']
    wb(corp, w)
    emu.admin.add_members(g['alpha'], [users[4]])
    emu.admin.remove_members(g['alpha'], [users[0]])
    emu.admin.add_members(g['g1'], [users[3]])
    d.modify(d.one(g['g1'], w['ou'])['dn'], {'member': [('add', [ids[5]['dn']])]})   # by hand

    def keys(dns):
        return set(dn_key(dn) for dn in dns)

    check = wb(corp, w, check=True)
    by_id = dict((r['id'], r) for r in check['groups'])
    alpha = by_id[g['alpha']]
    assert alpha['member_scope'] == 'changes' and alpha['action'] == 'updated'
    assert keys(alpha['members_added']) == identity_dn_keys([ids[4]])
    assert keys(alpha['members_removed']) == identity_dn_keys([ids[0]])
    assert 'member_scope' not in by_id[g['g1']]
    assert keys(by_id[g['g1']]['members_added']) == identity_dn_keys([ids[3]])
    assert keys(by_id[g['g1']]['members_removed']) == identity_dn_keys([ids[5]])
    assert not any(writes(check).values())

    applied = wb(corp, w)
    assert applied['changed'] is True
    child_dn = d.one(g['child'], w['ou'])['dn']
    assert d.member_keys(d.one(g['alpha'], w['ou'])) == identity_dn_keys([ids[1], ids[4]]) | keys([child_dn])
    assert d.member_keys(d.one(g['g1'], w['ou'])) == identity_dn_keys([ids[3], ids[4]])

    again = wb(corp, w)
    assert again['changed'] is False and again['incremental']['examined_groups'] == 0
    full = wb(corp, w, check=True, delta_state_path=None)
    assert full['changed'] is False and full['summary']['unchanged'] == 6


def test_other_options_mean_a_full_comparison(corp, world):
    """The state remembers the options that decide what is written: a run with another
    ``membership`` (or target_ou, naming...) examines every group, not only the changed ones."""
    w = world
    wb(corp, w)
    result = wb(corp, w, check=True, membership='additive')
    assert result['incremental']['ad'] == 'full' and result['incremental']['ad_reason'] == 'options_changed'
    assert result['incremental']['examined_groups'] == 6
    assert wb(corp, w, check=True)['incremental']['ad_reason'] is None


def test_a_group_not_written_is_tried_again_by_the_next_incremental_run(corp, world):
    """A group the last run could not write (another object held the DN its rename wanted) is
    examined again, in full, by every later incremental run until it is written, although
    nothing changes in Entra or on its AD copy when the other object goes."""
    w, d = world, world['directory']
    emu, g, users, ids = w['emu'], w['groups'], w['users'], w['ids']
    wb(corp, w)
    emu.admin.update_group(g['g3'], displayName=PREFIX + 'G3 new')
    emu.admin.add_members(g['g3'], [users[0]])
    blocker = d.add_group('CN=%sG3 new_%s,%s' % (PREFIX, g['g3'][-12:], w['ou']))
    blocked = wb(corp, w)
    rep = dict((r['id'], r) for r in blocked['groups'])[g['g3']]
    assert rep['action'] == 'error' and rep['reason'] == 'dn_collision'
    assert json.load(open(w['state']))['ad']['unsettled'] == [g['g3']]

    d.client.delete(blocker)
    retried = wb(corp, w)
    rep = dict((r['id'], r) for r in retried['groups'])[g['g3']]
    assert rep['action'] == 'renamed' and 'member_scope' not in rep
    assert d.one(g['g3'], w['ou'])['dn'].startswith('CN=' + PREFIX + 'G3 new_')
    assert identity_dn_keys([ids[0]]) <= d.member_keys(d.one(g['g3'], w['ou']))
    after = wb(corp, w)
    assert after['changed'] is False and after['incremental']['examined_groups'] == 0
    assert json.load(open(w['state']))['ad']['unsettled'] == []


def test_a_copy_outside_the_search_base_is_not_a_change(corp, world):
    """Another job writing the same tenant into another OU (or a copy made for a test) carries our
    anchors outside search_base: it is not this state's business, so the next run still examines
    nothing; a group moved out of search_base by hand still counts (test above)."""
    w, d = world, world['directory']
    g = w['groups']
    wb(corp, w)
    other = d.make_ou('t-inc-other-%s' % uuid.uuid4().hex[:8])
    try:
        d.add_group('CN=copy of g0,' + other, **{'msDS-ExternalDirectoryObjectId': 'Group_' + g['g0']})
        noop = wb(corp, w)
        assert noop['incremental']['ad'] == 'usn' and noop['incremental']['examined_groups'] == 0
        assert noop['changed'] is False
    finally:
        d.remove_tree(other)


def test_no_op_neither_reads_nor_writes_the_member_lists(corp, world):
    """The delta state is a head and a members file (delta_state): a run with no change on either
    side reads only the head and rewrites only the head. Shown by spoiling the members file: the
    no-op does not notice; the next run that needs the member lists (a member added by hand) stops
    with a message that names the file and the way out, before any write; without the state the
    run starts again from a full read."""
    w, d = world, world['directory']
    wb(corp, w)
    folder = os.path.dirname(w['state'])
    (name,) = [n for n in os.listdir(folder) if n.startswith('state.json.members-')]
    members = os.path.join(folder, name)
    with open(members, 'w') as handle:
        handle.write('{"spoiled": true}')
    noop = wb(corp, w)
    assert noop['incremental'] == dict(noop['incremental'], entra='delta', ad='usn', examined_groups=0)
    assert noop['changed'] is False and not any(writes(noop).values())
    assert [n for n in os.listdir(folder) if n.startswith('state.json.members-')] == [name]
    assert open(members).read() == '{"spoiled": true}'
    assert json.load(open(w['state']))['members_file']['file'] == name

    alpha = d.one(w['groups']['alpha'], w['ou'])
    d.modify(alpha['dn'], {'member': [('add', [w['ids'][5]['dn']])]})
    with pytest.raises(CloudSyncError, match='members file .*%s.*remove the delta state file' % name) as err:
        wb(corp, w)
    assert 'Traceback' not in str(err.value)
    assert identity_dn_keys([w['ids'][5]]) <= d.member_keys(d.one(w['groups']['alpha'], w['ou']))   # nothing written

    os.unlink(w['state'])
    # No head names the spoiled file now: a save removes it once older than ORPHAN_AGE (a younger
    # one may be a concurrent run's, written just before its head; see delta_state).
    aged = os.stat(members).st_mtime - delta_state.ORPHAN_AGE - 60
    os.utime(members, (aged, aged))
    again = wb(corp, w)
    assert again['incremental']['entra'] == 'full' and again['incremental']['ad'] == 'full'
    assert identity_dn_keys([w['ids'][5]]).isdisjoint(d.member_keys(d.one(w['groups']['alpha'], w['ou'])))
    assert not os.path.exists(members)   # the spoiled file went with the next save
    assert wb(corp, w)['changed'] is False


def test_a_change_made_by_hand_while_a_run_writes_is_found_by_the_next_run(corp, world, monkeypatch):
    """A run that wrote saves the DC's mark read after its writes, so the next run does not read
    its own writes back as changes (a no-op after 17,000 creates searched 17 pages). A group
    someone else changed between that run's start and that mark is read back at the end of the
    run, kept as unsettled, and compared in full by the next run, which repairs it."""
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import writeback
    w, d = world, world['directory']
    emu, g = w['emu'], w['groups']
    wb(corp, w)
    emu.admin.add_members(g['alpha'], [w['users'][4]])   # the next run writes alpha
    stranger = w['ids'][5]['dn']
    real_apply = writeback.apply_plan

    def apply_then_change_by_hand(ad, ops, check_mode=False, result=None, connections=1):
        real_apply(ad, ops, check_mode=check_mode, result=result, connections=connections)
        d.modify(d.one(g['g3'], w['ou'])['dn'], {'member': [('add', [stranger])]})   # g3: not written by this run
    monkeypatch.setattr(writeback, 'apply_plan', apply_then_change_by_hand)
    during = wb(corp, w)
    monkeypatch.setattr(writeback, 'apply_plan', real_apply)
    assert g['g3'] not in set(r['id'] for r in during['groups'])
    saved = json.load(open(w['state']))['ad']
    assert saved['own_writes'] == {} and g['g3'] in saved['unsettled']

    repair = wb(corp, w)
    assert repair['incremental']['ad'] == 'usn'
    by_id = dict((r['id'], r) for r in repair['groups'])
    assert by_id[g['g3']]['action'] == 'updated' and by_id[g['g3']]['members_removed']
    assert identity_dn_keys([w['ids'][5]]).isdisjoint(d.member_keys(d.one(g['g3'], w['ou'])))
    after = wb(corp, w)
    assert after['changed'] is False and after['incremental']['examined_groups'] == 0
    assert after['ldap_operations']['searches'] <= 6, after['ldap_operations']
