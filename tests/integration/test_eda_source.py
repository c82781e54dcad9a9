# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The EDA source entra_group_changes (extensions/eda/plugins/event_source) polling the HTTPS
Graph emulator through real msal/requests: one event per changed group, kinds created /
updated / renamed / deleted / members, bursts coalesced into one batch, a restart resuming from
the persisted delta link (no full read), Retry-After and a Graph outage waited out, a rejected
delta link turned into a resync event.

Graph behaviour relied on: https://learn.microsoft.com/graph/api/group-delta (members@delta,
@removed), https://learn.microsoft.com/graph/delta-query-overview ($deltatoken=latest; an expired
token answers 410 or syncStateNotFound), https://learn.microsoft.com/graph/throttling (Retry-After).
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import asyncio
import json
import os
import runpy
import threading

import pytest

from writeback_helpers import ROOT, graph_args

SOURCE = os.path.join(ROOT, 'extensions', 'eda', 'plugins', 'event_source', 'entra_group_changes.py')
SRC = runpy.run_path(SOURCE)


@pytest.fixture(autouse=True)
def _no_ambient_ca_bundle(monkeypatch):
    monkeypatch.setenv('REQUESTS_CA_BUNDLE', '/nonexistent/ca-bundle.pem')


class Harness(object):
    """Runs the source's polling loop in a thread with its own event loop; events land in a list."""

    def __init__(self, emu, state_path, **options):
        args = dict((k, v) for k, v in graph_args(emu).items() if v is not None)
        args.update(delta_state_path=str(state_path), poll_interval=0.2, settle=0.3, max_batch_wait=5,
                    outage_backoff_max=2)
        args.update(options)
        self.options = SRC['resolve_options'](args, environ={})
        self.events = []
        self.cond = threading.Condition()
        self.loop = asyncio.new_event_loop()
        self.stop_event = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error = None

    def put(self, event):
        with self.cond:
            self.events.append(event['cloud_sync'])
            self.cond.notify_all()

    def _run(self):
        asyncio.set_event_loop(self.loop)
        harness = self

        class Queue(object):
            async def put(self, event):
                harness.put(event)

        async def go():
            self.stop_event = asyncio.Event()
            await SRC['run'](Queue(), self.options, stop=self.stop_event)
        try:
            self.loop.run_until_complete(go())
        except Exception as exc:  # pylint: disable=broad-except
            self.error = exc

    def start(self):
        self.thread.start()
        return self

    def wait_for(self, predicate, timeout=60):
        with self.cond:
            ok = self.cond.wait_for(lambda: predicate(self.events), timeout)
        assert self.error is None, self.error
        assert ok, 'events so far: %s' % json.dumps(self.events, indent=1)
        return self.events

    def stop(self):
        while self.stop_event is None and self.thread.is_alive():
            self.thread.join(0.05)
        if self.stop_event is not None:
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(30)
        assert not self.thread.is_alive()


def started(emu, state_path, **options):
    harness = Harness(emu, state_path, **options).start()
    # the source is polling once its state file holds a delta link
    for unused in range(600):
        if os.path.exists(str(state_path)):
            break
        harness.thread.join(0.05)
    assert os.path.exists(str(state_path)), harness.error
    return harness


@pytest.fixture
def world(graph_tenant, graph_emulator_factory, tmp_path):
    b = graph_tenant()
    users = [b.synced_user('eda-u%02d' % i) for i in range(6)]
    alpha = b.group('EDA Alpha', members=users[:2])
    beta = b.group('EDA Beta', members=users[2:3])
    emu = graph_emulator_factory(b.build())
    return dict(emu=emu, users=users, alpha=alpha, beta=beta, state=tmp_path / 'eda-delta.json')


def by_group(events):
    return dict((e['group_id'], e) for e in events)


def test_each_kind_of_change_is_one_event_per_group(world):
    emu, admin = world['emu'], world['emu'].admin
    h = started(emu, world['state'])
    try:
        admin.add_members(world['alpha'], [world['users'][3]])
        admin.remove_members(world['alpha'], [world['users'][0]])
        admin.update_group(world['beta'], displayName='EDA Beta Renamed')
        new = admin.create_group(displayName='EDA Gamma', securityEnabled=True, mailEnabled=False, groupTypes=[],
                                 mailNickname='edagamma')
        new_id = new['id'] if isinstance(new, dict) else new
        events = h.wait_for(lambda ev: len(ev) >= 3)
        got = by_group(events)
        assert set(got) == {world['alpha'], world['beta'], new_id.lower()}
        assert got[world['alpha']]['change'] == 'members'
        assert got[world['alpha']]['members_added'] == [world['users'][3]]
        assert got[world['alpha']]['members_removed'] == [world['users'][0]]
        assert got[world['beta']]['change'] == 'renamed'
        assert got[world['beta']]['display_name'] == 'EDA Beta Renamed'
        assert got[new_id.lower()]['change'] == 'created'
        # the batch's first event names every group of the batch (one rule run for all of them)
        batches = set(e['batch']['id'] for e in events)
        firsts = [e for e in events if e['batch']['index'] == 0]
        assert len(firsts) == len(batches)
        assert sorted(g for e in firsts for g in e['batch']['group_ids']) == sorted(got)
        assert all(e['batch']['nested_group_ids'] == [] for e in firsts)   # no group nested in these

        n = len(events)
        nested = admin.create_group(displayName='EDA Nested', securityEnabled=True, mailEnabled=False, groupTypes=[],
                                    mailNickname='edanested')
        nested_id = (nested['id'] if isinstance(nested, dict) else nested).lower()
        inner = admin.create_group(displayName='EDA Inner', securityEnabled=True, mailEnabled=False, groupTypes=[],
                                   mailNickname='edainner')
        inner_id = (inner['id'] if isinstance(inner, dict) else inner).lower()
        admin.add_members(nested_id, [inner_id])
        events = h.wait_for(lambda ev: any(e['group_id'] == nested_id and e['members_added'] for e in ev[n:]))
        n = len(events)
        admin.add_members(world['beta'], [nested_id])
        events = h.wait_for(lambda ev: any(e['group_id'] == world['beta'] for e in ev[n:]))
        assert [e['group_id'] for e in events[n:]] == [world['beta']]
        # the groups nested in the batch's groups, transitively (the writeback keeps their links)
        assert events[n]['batch']['nested_group_ids'] == sorted([nested_id, inner_id])

        n = len(events)
        admin.update_group(world['alpha'], description='now with a description')
        events = h.wait_for(lambda ev: len(ev) > n)
        assert events[n]['change'] == 'updated' and events[n]['properties'] == {'description': 'now with a description'}

        n = len(events)
        admin.delete_group(new_id)
        events = h.wait_for(lambda ev: len(ev) > n)
        assert events[n]['change'] == 'deleted' and events[n]['group_id'] == new_id.lower()
        assert events[n]['display_name'] == 'EDA Gamma'   # remembered from the created event
    finally:
        h.stop()


def test_a_burst_of_500_changes_is_one_batch_of_a_few_events(world):
    emu, admin = world['emu'], world['emu'].admin
    extra = [admin.create_user(displayName='Burst %03d' % i, userPrincipalName='burst%03d@example.test' % i)
             for i in range(100)]
    extra = [u['id'] if isinstance(u, dict) else u for u in extra]
    groups = [world['alpha'], world['beta']]
    groups += [g['id'] if isinstance(g, dict) else g for g in
               (admin.create_group(displayName='Burst G%d' % i, securityEnabled=True, mailEnabled=False, groupTypes=[],
                                   mailNickname='burstg%d' % i) for i in range(3))]
    h = started(emu, world['state'], settle=1.0, max_batch_wait=20)
    try:
        changes = 0
        for gid in groups:                      # 5 groups x 100 member adds = 500 changes
            for n in range(0, 100, 10):
                admin.add_members(gid, extra[n:n + 10])
                changes += 10
        assert changes == 500
        events = h.wait_for(lambda ev: sum(len(e['members_added']) for e in ev) >= 500)
        assert len(events) == 5, [(e['group_id'], e['change'], len(e['members_added'])) for e in events]
        assert len(set(e['batch']['id'] for e in events)) <= 2
        assert all(len(e['members_added']) == 100 for e in events if e['group_id'] in groups[:2])
    finally:
        h.stop()


def test_restart_resumes_from_the_saved_delta_link_without_a_full_read(world):
    emu, admin = world['emu'], world['emu'].admin
    h = started(emu, world['state'])
    admin.add_members(world['alpha'], [world['users'][4]])
    h.wait_for(lambda ev: len(ev) >= 1)
    h.stop()
    saved = json.loads(world['state'].read_text())
    assert saved['delta_link'] and saved['names'] == {}

    admin.add_members(world['beta'], [world['users'][5]])      # made while the source is down
    since = max([e['n'] for e in admin.requests()] or [0])
    h2 = started(emu, world['state'])
    try:
        events = h2.wait_for(lambda ev: len(ev) >= 1)
        assert events[0]['group_id'] == world['beta'] and events[0]['members_added'] == [world['users'][5]]
        paths = [e['path'] for e in admin.requests(since=since) if e['kind'] == 'graph' and '/groups/delta' in e['path']]
        assert paths
        # every delta request follows a link (token): none starts a new round that reads every group
        assert all('$deltatoken=' in p or '$skiptoken=' in p or '%24deltatoken=' in p or '%24skiptoken=' in p
                   for p in paths), paths
    finally:
        h2.stop()


def test_a_minute_of_503s_is_waited_out_and_retry_after_honoured(world):
    emu, admin = world['emu'], world['emu'].admin
    # The client's own retries give up quickly here, so the source's loop does the waiting.
    h = started(emu, world['state'], graph_max_retries=1, graph_max_retry_wait=5, outage_backoff_max=10)
    try:
        admin.add_fault(status=503, retry_after=2, match='/groups/delta', duration=60)
        admin.add_members(world['alpha'], [world['users'][5]])
        events = h.wait_for(lambda ev: len(ev) >= 1, timeout=180)
        assert events[0]['members_added'] == [world['users'][5]]
        refused = [d for d in admin.retry_delays() if d['status'] == 503]
        assert len(refused) >= 5, refused
        # every retry came after the Retry-After the emulator sent (2 s), none hammered Graph
        assert all(d['delay'] >= 1.9 for d in refused), refused
        served = [e for e in admin.requests() if e['kind'] == 'graph' and e['status'] == 503]
        assert served[-1]['t'] - served[0]['t'] > 45, 'the outage did not last: %s' % served
    finally:
        h.stop()


def test_a_rejected_delta_link_becomes_a_resync_event_and_polling_goes_on(world):
    emu, admin = world['emu'], world['emu'].admin
    h = started(emu, world['state'])
    try:
        admin.expire_delta_tokens()
        events = h.wait_for(lambda ev: any(e['change'] == 'resync' for e in ev))
        assert 'syncStateNotFound' in events[0]['reason']
        n = len(events)
        admin.add_members(world['beta'], [world['users'][0]])
        events = h.wait_for(lambda ev: len(ev) > n)
        assert events[n]['group_id'] == world['beta']
    finally:
        h.stop()


def test_options_follow_the_modules_environment_variables():
    env = {'AZURE_TENANT_ID': 't', 'AZURE_CLIENT_ID': 'c', 'AZURE_CLIENT_SECRET': 's',
           'CLOUDSYNC_GRAPH_ENDPOINT': 'https://graph.example.test', 'CLOUDSYNC_EDA_STATE_PATH': '/tmp/x.json',
           'CLOUDSYNC_EDA_POLL_INTERVAL': '5'}
    opts = SRC['resolve_options']({'client_id': 'given'}, environ=env)
    assert opts['tenant_id'] == 't' and opts['client_id'] == 'given' and opts['client_secret'] == 's'
    assert opts['graph_endpoint'] == 'https://graph.example.test' and opts['poll_interval'] == 5.0
    # the same names, aliases and environment variables as the modules (GRAPH_AUTH_ARGSPEC)
    opts = SRC['resolve_options']({'delta_state_path': '/x', 'secret': 's2', 'graph_max_retry_wait': 7},
                                  environ={'AZURE_TENANT': 'from-awx-variable'})
    assert opts['tenant_id'] == 'from-awx-variable' and opts['client_secret'] == 's2'
    assert opts['graph_retry_budget'] == 7
    with pytest.raises(SRC['SourceError'], match='auth_method must be one of'):
        SRC['resolve_options']({'delta_state_path': '/x', 'auth_method': 'password'}, environ={})
    with pytest.raises(SRC['SourceError'], match='delta_state_path'):
        SRC['resolve_options']({}, environ={})
    with pytest.raises(SRC['SourceError'], match='Unknown option'):
        SRC['resolve_options']({'delta_state_path': '/x', 'pol_interval': 3}, environ={})


def test_merging_and_classifying_a_batch_without_graph():
    merge, build = SRC['merge_pending'], SRC['build_events']
    pending = {}
    # a member added then removed within one batch ends removed; a later rename wins
    merge(pending, {'g1': {'id': 'g1', 'members@delta': [{'id': 'u1', '@odata.type': '#microsoft.graph.user'}]}})
    merge(pending, {'g1': {'id': 'g1', 'displayName': 'New name',
                           'members@delta': [{'id': 'u1', '@removed': {'reason': 'deleted'}}]}})
    merge(pending, {'g2': {'id': 'g2', 'displayName': 'G2', 'securityEnabled': True, 'mailEnabled': False,
                           'groupTypes': []}})
    merge(pending, {'g3': {'id': 'g3', '@removed': {'reason': 'deleted'}}})
    events = [e['cloud_sync'] for e in build(pending, {'g1': 'Old name', 'g3': 'Gone'}, batch_id='b', now=1.0)]
    by_id = dict((e['group_id'], e) for e in events)
    assert by_id['g1']['change'] == 'renamed' and by_id['g1']['changes'] == ['renamed', 'members']
    assert by_id['g1']['previous_display_name'] == 'Old name'
    assert by_id['g1']['members_added'] == [] and by_id['g1']['members_removed'] == ['u1']
    assert by_id['g2']['change'] == 'created'
    assert by_id['g3']['change'] == 'deleted' and by_id['g3']['display_name'] == 'Gone'
    assert [e['batch']['index'] for e in events] == [0, 1, 2]
    assert events[0]['batch']['group_ids'] == ['g1', 'g2', 'g3'] and 'group_ids' not in events[1]['batch']
    # a group already known that changes only a property is "updated", not "created"
    update = build({'g2': {'id': 'g2', 'description': 'x'}}, {'g2': 'G2'})[0]['cloud_sync']
    assert update['change'] == 'updated'
    # waiting after a failed poll: Retry-After when given (capped), else doubling from the poll interval
    wait = SRC['outage_wait']

    class Err(Exception):
        retry_after = None
    err = Err()
    assert [wait(err, n, 5, 60) for n in range(5)] == [5, 10, 20, 40, 60]
    err.retry_after = 7
    assert wait(err, 3, 5, 60) == 7 and wait(err, 0, 5, 3) == 3
