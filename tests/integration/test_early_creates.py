"""A first run writes each group while Graph is still read (writeback_early.EarlyCreates):
against the lab and the HTTPS Graph emulator, a group is written before the read ends, and the
run leaves AD, its report and its operations exactly as a run that writes only after its whole
plan (nested groups children first, an ineligible child, member chunks, a cycle, a user no
search finds, a DN held by a foreign object)."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import time
import uuid

import pytest

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import writeback, writeback_early
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_codecs import dn_key
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_client import values
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.writeback_plan import cn_for

from writeback_helpers import Directory, first, graph_args, run, synced_users

PREFIX = 'GE %s ' % uuid.uuid4().hex[:6]
# Not sAMAccountName: without a template the DC makes one (another for each create).
ATTRS = ('displayName', 'description', 'groupType', 'msDS-ExternalDirectoryObjectId', 'adminDescription')


@pytest.fixture(autouse=True)
def _no_ambient_ca_bundle(monkeypatch):
    monkeypatch.setenv('REQUESTS_CA_BUNDLE', '/nonexistent/ca-bundle.pem')


class Held(writeback_early.EarlyCreates):
    """The real early creates, holding the Graph worker that completes the ``hold`` group (the last
    one listed) until a wave's write is done and the groups in ``expect`` are planned, or 30 s: the
    read cannot end before. (Without ``expect``, which waves were ready when the read ended depended
    on the users' resolution keeping pace with it: a loaded CI machine once ended it after one wave.)"""
    runs = []
    hold = None
    expect = frozenset()

    def __init__(self, *args, **kwargs):
        self.written_during_read = None
        Held.runs.append(self)
        super(Held, self).__init__(*args, **kwargs)

    def complete(self, gid, items):
        super(Held, self).complete(gid, items)
        if gid == Held.hold:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not (any(f.done() for f in self.writes) and Held.expect <= set(self.planned)):
                time.sleep(0.01)
            self.written_during_read = any(f.done() and f.exception() is None for f in self.writes)


@pytest.fixture
def world(corp, graph_tenant, graph_emulator_factory):
    ids = corp.identities
    b = graph_tenant()
    u = synced_users(b, ids[:8])
    missing = b.synced_user('ge-nowhere')   # synced, but not in this forest
    directory = Directory(corp)
    ou = directory.make_ou('t-early-%s' % uuid.uuid4().hex[:8])
    g = {}
    g['child'] = b.group(PREFIX + 'Child', members=[u[6], u[7]])
    g['parent'] = b.group(PREFIX + 'Parent', members=[g['child'], u[0], b.user('GE Cloud Only')])
    g['grand'] = b.group(PREFIX + 'Grand', members=[g['parent'], u[1]])
    g['big'] = b.group(PREFIX + 'Big', members=u[0:6])                 # over max_members=5: not written
    g['has_big'] = b.group(PREFIX + 'Has Big', members=[g['big'], u[4]])
    g['wide'] = b.group(PREFIX + 'Wide', members=u[0:5])               # chunk_size=2: a create and member ops
    g['unresolved'] = b.group(PREFIX + 'Unresolved', members=[u[2], missing])
    g['above'] = b.group(PREFIX + 'Above Unresolved', members=[g['unresolved'], u[3]])
    g['taken'] = b.group(PREFIX + 'Taken', members=[u[5]])
    g['cycle_a'] = b.group(PREFIX + 'Cycle A', members=[u[2]])
    g['cycle_b'] = b.group(PREFIX + 'Cycle B', members=[g['cycle_a'], u[3]])
    b.add_members(g['cycle_a'], [g['cycle_b']])
    g['hold'] = b.group(PREFIX + 'Hold', members=[u[5]])
    # A foreign group holds the DN the Taken group would get.
    taken_dn = 'CN=%s,%s' % (cn_for({'id': g['taken'], 'display_name': PREFIX + 'Taken'}), ou)
    directory.add_group(taken_dn, sAMAccountName='ge-foreign-%s' % uuid.uuid4().hex[:6])
    emu = graph_emulator_factory(b.build())
    try:
        yield dict(emu=emu, ou=ou, directory=directory, g=g, taken_dn=taken_dn,
                   filter="startswith(displayName,'%s')" % PREFIX)
    finally:
        directory.remove_tree(ou)
        directory.close()


def wb(corp, w, check=False, **kw):
    args = graph_args(w['emu'])
    args.update(target_ou=w['ou'], search_base=w['ou'], all_groups=True, group_filter=w['filter'], max_members=5,
                chunk_size=2)
    args.update(kw)
    return run(corp, None, check=check, **args)


def snapshot(w):
    """Every group under the OU: its attributes and member keys, by DN key."""
    out = {}
    for entry in w['directory'].client.search(w['ou'], '(objectClass=group)', list(ATTRS) + ['member']):
        out[dn_key(entry['dn'])] = (tuple(str(first(entry, a)) for a in ATTRS),
                                    sorted(dn_key(m) for m in values(entry, 'member')))
    return out


def remove_written(w):
    for dn in w['directory'].children(w['ou']):
        if dn_key(dn) != dn_key(w['taken_dn']):
            w['directory'].client.delete(dn)


def comparable(result):
    ops = [dict((k, v) for k, v in op.items() if k != 'outcome') for op in result['plan']]
    return dict(summary=result['summary'], groups=sorted(result['groups'], key=lambda r: r['id']),
                plan=sorted(ops, key=lambda op: (op['group_id'], op['op'], repr(op.get('members')), repr(op.get('add')))),
                cycles=result['cycles'], warnings=sorted(result['warnings']))


def test_a_first_run_writes_groups_while_graph_is_read_and_ends_as_a_run_writing_after_its_plan(corp, world, monkeypatch):
    w = world
    monkeypatch.setattr(writeback, 'EarlyCreates', lambda *args, **kwargs: None)
    after_plan = wb(corp, w, diff=True)
    assert after_plan['written_early'] is None
    written_after_plan = snapshot(w)
    remove_written(w)

    Held.runs[:] = []
    Held.hold = w['g']['hold']
    monkeypatch.setattr(Held, 'expect', frozenset(w['g'][k] for k in ('child', 'parent', 'grand', 'has_big', 'wide')))
    monkeypatch.setattr(writeback, 'EarlyCreates', Held)
    monkeypatch.setattr(writeback._StreamedResolution, 'BATCH', 2)
    early = wb(corp, w, diff=True)
    run_ = Held.runs[-1]
    assert run_.written_during_read is True
    assert early['written_early']['groups'] == len(run_.planned) and early['written_early']['waves'] >= 1

    # Planned and written early: the resolvable groups, children before parents, and the group
    # whose ineligible child is reported as not written. Left to the whole plan: the cycle, the
    # group with a user no search finds and its parent, the group whose DN a foreign object holds.
    g = w['g']
    early_ids = set(run_.planned)
    assert set([g['child'], g['parent'], g['grand'], g['has_big'], g['wide']]) <= early_ids
    assert not early_ids & set([g['cycle_a'], g['cycle_b'], g['unresolved'], g['above'], g['taken'], g['big']])

    assert snapshot(w) == written_after_plan
    assert comparable(early) == comparable(after_plan)
    assert early['diff'] == after_plan['diff']
    by_id = dict((r['id'], r) for r in early['groups'])
    assert by_id[g['taken']]['reason'] == 'dn_collision' and by_id[g['big']]['action'] == 'skipped'
    assert [m['reason'] for m in by_id[g['has_big']]['skipped_members']] == ['group_not_written']
    assert early['summary']['created'] == 10 and early['summary']['errors'] == 1

    # The next run finds every group as written: nothing to do.
    again = wb(corp, w)
    assert again['changed'] is False and again['written_early'] is None


def test_check_mode_and_managed_groups_write_nothing_early(corp, world, monkeypatch):
    w = world
    Held.runs[:] = []
    Held.hold = None
    monkeypatch.setattr(writeback, 'EarlyCreates', Held)
    check = wb(corp, w, check=True)
    assert check['written_early'] is None and Held.runs == []
    assert w['directory'].children(w['ou']) == [w['taken_dn']] or \
        set(dn_key(d) for d in w['directory'].children(w['ou'])) == set([dn_key(w['taken_dn'])])

    # One managed group under the search base: the run reads AD and plans as before.
    wb(corp, w, group_filter="displayName eq '%sChild'" % PREFIX)
    before = len(Held.runs)
    second = wb(corp, w)
    assert len(Held.runs) == before + 1 and Held.runs[-1].planned == {}
    assert second['written_early'] is None and second['summary']['created'] == 9


def test_a_read_failing_after_early_writes_says_what_was_written_and_the_next_run_completes(corp, world, monkeypatch):
    w, g = world, world['g']
    Held.runs[:] = []
    Held.hold = g['hold']
    monkeypatch.setattr(writeback, 'EarlyCreates', Held)
    monkeypatch.setattr(writeback._StreamedResolution, 'BATCH', 2)
    # Graph fails one group's member read (a 500 is not retried) while the read is held open
    # until an early write is done: the run fails after writing.
    w['emu'].admin.add_fault(status=500, match='/groups/%s/members' % g['taken'])
    with pytest.raises(writeback.WritebackError) as caught:
        wb(corp, w)
    assert Held.runs[-1].written_during_read is True
    err = caught.value
    assert 'wrote to AD and then failed' in err.msg and 'Nothing was written' not in err.msg
    assert err.details['changed'] is True
    created = set(r['id'] for r in err.details['groups'] if r['action'] == 'created')
    assert created and created == set(Held.runs[-1].planned)
    for gid in created:
        w['directory'].one(gid, w['ou'])
    assert all(op['outcome'] == 'created' or op['outcome'] == 'done' for op in err.details['plan'])

    w['emu'].admin.clear_faults()
    second = wb(corp, w)
    assert second['written_early'] is None   # managed groups exist now
    assert second['summary']['created'] == 10 - len(created) and second['summary']['errors'] == 1
    # all mode lists an unchanged group only with something to report (unchanged_groups: findings)
    listed = [r for r in second['groups'] if r['id'] in created]
    assert all(r['action'] == 'unchanged' for r in listed)
    assert second['summary']['unchanged'] == len(created) == len(listed) + second['unchanged_not_listed']


def test_a_connection_lost_while_writing_early_stops_the_run_and_the_next_run_completes(corp, world, monkeypatch):
    w, g = world, world['g']
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_client import ADClient, ADError
    real_add = ADClient.add
    adds = [0]

    def add(self, dn, attributes):
        if adds[0] >= 2:   # as a DC that stops answering (no LDAP result code): the run must stop
            raise ADError('add of %r: the DC did not answer within ad_timeout' % dn, operation='add', server=self.server,
                          dn=dn)
        adds[0] += 1
        return real_add(self, dn, attributes)
    Held.runs[:] = []
    Held.hold = g['hold']
    monkeypatch.setattr(writeback, 'EarlyCreates', Held)
    monkeypatch.setattr(writeback._StreamedResolution, 'BATCH', 2)
    monkeypatch.setattr(ADClient, 'add', add)
    with pytest.raises(writeback.WritebackError) as caught:
        wb(corp, w)
    err = caught.value
    assert 'stopped after it wrote to AD' in err.msg and err.details['changed'] is True
    actions = dict((r['id'], r['action']) for r in err.details['groups'])
    created = set(gid for gid, action in actions.items() if action == 'created')
    assert len(created) == 2
    assert set(op['outcome'] for op in err.details['plan']) <= set(['created', 'done', 'error', 'not_run'])
    not_run = set(op['group_id'] for op in err.details['plan'] if op['outcome'] in ('not_run', 'error'))
    assert not_run and all(actions[gid] == 'error' for gid in not_run)

    monkeypatch.setattr(ADClient, 'add', real_add)
    second = wb(corp, w)
    assert second['summary']['created'] == 10 - 2 and second['summary']['errors'] == 1
    for gid in created:
        w['directory'].one(gid, w['ou'])


def test_a_name_taken_after_the_look_up_fails_its_group_and_is_never_linked(corp, world, monkeypatch):
    """A foreign group takes the Child's DN after the run looked the names up: the Child's create
    fails, and no parent links that DN (it names the foreign group now); the next run reports the
    collision and writes the rest."""
    w, g, d = world, world['g'], world['directory']
    child_dn = 'CN=%s,%s' % (cn_for({'id': g['child'], 'display_name': PREFIX + 'Child'}), w['ou'])

    class TakenMeanwhile(Held):
        def _names(self, listed, domain_dn):
            super(TakenMeanwhile, self)._names(listed, domain_dn)
            d.add_group(child_dn, sAMAccountName='ge-late-%s' % uuid.uuid4().hex[:6])

    Held.runs[:] = []
    Held.hold = g['hold']   # the read stays open until an early write is done
    monkeypatch.setattr(writeback, 'EarlyCreates', TakenMeanwhile)
    monkeypatch.setattr(writeback._StreamedResolution, 'BATCH', 2)
    result = wb(corp, w)
    by_id = dict((r['id'], r) for r in result['groups'])
    assert by_id[g['child']]['action'] == 'error' and 'already holds that name' in by_id[g['child']]['reason_text']
    assert by_id[g['parent']]['action'] == 'error' and 'whose create failed' in by_id[g['parent']]['reason_text']
    foreign = d.get(child_dn, ['memberOf', 'msDS-ExternalDirectoryObjectId'])
    assert first(foreign, 'msDS-ExternalDirectoryObjectId') is None and not list(values(foreign, 'memberOf'))
    assert result['written_early']['groups'] >= 2   # the others of the first waves, at least

    again = wb(corp, w)
    by_id = dict((r['id'], r) for r in again['groups'])
    assert by_id[g['child']]['reason'] == 'dn_collision'
    assert by_id[g['parent']]['action'] == 'created'
    assert [m['reason'] for m in by_id[g['parent']]['skipped_members'] if m['id'] == g['child']] == ['group_not_written']
    assert not list(values(d.get(child_dn, ['memberOf']), 'memberOf'))
