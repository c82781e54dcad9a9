"""A first run (a full read without a saved state) resolves its users while Graph is read
(writeback._StreamedResolution): against the lab and the HTTPS Graph emulator, the streamed run
resolves users before the Graph read ends, plans exactly what a run resolving after the read
plans, leaves the users no Global Catalog search finds (a consistency-GUID immutable id) to the
run's own resolution, and resolves nothing once managed groups exist (their members' objectGUIDs
spare the searches)."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import threading
import time
import uuid

import pytest

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import ad_codecs, writeback

from writeback_helpers import Directory, add_consistency_guid_user, first, graph_args, identity_dn_keys, run, synced_users

PREFIX = 'GS %s ' % uuid.uuid4().hex[:6]


@pytest.fixture(autouse=True)
def _no_ambient_ca_bundle(monkeypatch):
    monkeypatch.setenv('REQUESTS_CA_BUNDLE', '/nonexistent/ca-bundle.pem')


class Recorded(writeback._StreamedResolution):
    """The real streamed resolution, recording whether it resolved users while Graph was still
    being read: the first page handed to it holds its Graph worker (so the read cannot end) until
    users are resolved, or 30 s."""
    runs = []

    def __init__(self, ad, params):
        self.during_read = None
        Recorded.runs.append(self)
        super(Recorded, self).__init__(ad, params)

    def add(self, members):
        super(Recorded, self).add(members)
        if self.during_read is None:
            self.during_read = False
            deadline = time.monotonic() + 30
            while not self.found and not self.declined and time.monotonic() < deadline:
                time.sleep(0.01)
            self.during_read = bool(self.found)

    def result(self, users):
        answer = super(Recorded, self).result(users)
        self.answered = dict(answer)
        return answer


class NotStreamed(writeback._StreamedResolution):
    """Resolves nothing: the run resolves every user itself, after the read (as before streaming)."""

    def _run(self):
        return None


@pytest.fixture
def world(corp, graph_tenant, graph_emulator_factory):
    ids = corp.identities
    b = graph_tenant()
    users = synced_users(b, ids[:8])
    directory = Directory(corp)
    ou = directory.make_ou('t-stream-%s' % uuid.uuid4().hex[:8])
    # A user whose immutable id is its mS-DS-ConsistencyGuid (not its objectGUID): only the domain
    # search finds it, which the streamed resolution leaves to the run.
    anchored_dn = 'CN=Stream Anchored,%s' % ou
    consistency = add_consistency_guid_user(directory, anchored_dn, 'gs')
    anchored = b.user('Stream Anchored', onPremisesSyncEnabled=True,
                      onPremisesImmutableId=ad_codecs.immutable_id_from_guid(consistency))
    missing = b.synced_user('gs-nowhere')   # synced, but not in this forest
    child = b.group(PREFIX + 'Child', members=[users[6], users[7]])
    groups = [b.group(PREFIX + 'G%d' % n, members=users[n:n + 4] + [missing]) for n in range(5)]
    parent = b.group(PREFIX + 'Parent', members=[child, anchored, users[0], b.user('Cloud Only')])
    emu = graph_emulator_factory(b.build())
    try:
        yield dict(emu=emu, ids=ids, ou=ou, directory=directory, groups=groups, parent=parent, child=child,
                   anchored_dn=anchored_dn, filter="startswith(displayName,'%s')" % PREFIX)
    finally:
        directory.remove_tree(ou)
        directory.close()


def wb(corp, w, check=False, **kw):
    args = graph_args(w['emu'])
    args.update(target_ou=w['ou'], search_base=w['ou'], all_groups=True, group_filter=w['filter'])
    args.update(kw)
    return run(corp, None, check=check, **args)


def comparable(result):
    return dict(summary=result['summary'], groups=result['groups'], plan=[
        dict((k, v) for k, v in op.items() if k != 'outcome') for op in result['plan']])


def test_a_first_run_resolves_while_graph_is_read_and_plans_what_a_run_resolving_after_it_plans(corp, world, monkeypatch):
    w, d = world, world['directory']
    monkeypatch.setattr(writeback, '_StreamedResolution', NotStreamed)
    after_read = wb(corp, w, check=True)

    Recorded.runs[:] = []
    monkeypatch.setattr(writeback, '_StreamedResolution', Recorded)
    monkeypatch.setattr(Recorded, 'BATCH', 2)
    streamed = wb(corp, w, check=True)
    assert comparable(streamed) == comparable(after_read)
    stream = Recorded.runs[-1]
    assert stream.declined is None and stream.during_read is True
    resolved = [uid for uid, answer in stream.answered.items() if isinstance(answer, str)]
    assert len(resolved) == 8   # every lab user of the tenant; not the consistency-GUID one (domain search)

    by_name = dict((g['display_name'], g) for g in streamed['groups'])
    parent = by_name[PREFIX + 'Parent']
    assert ad_codecs.dn_key(w['anchored_dn']) in set(ad_codecs.dn_key(dn) for dn in parent['members_added'])
    assert [m['reason'] for m in by_name[PREFIX + 'G0']['unresolved_members']] == ['not_found_in_forest']

    applied = wb(corp, w)
    assert applied['summary']['created'] == 7 and applied['summary']['errors'] == 0
    g0 = d.one(w['groups'][0])
    assert d.member_keys(g0) == identity_dn_keys(w['ids'][0:4])
    assert first(d.one(w['parent']), 'member') is not None

    # Managed groups exist now: a run without a state resolves nothing beside the read (the
    # members' objectGUIDs, read with the groups, resolve them without a search).
    again = wb(corp, w)
    assert again['changed'] is False
    assert Recorded.runs[-1].declined == 'managed_groups' and Recorded.runs[-1].answered == {}


def test_a_run_with_a_saved_state_or_a_selection_does_not_stream(corp, world, monkeypatch, tmp_path):
    w = world
    state = str(tmp_path / 'state.json')
    Recorded.runs[:] = []
    monkeypatch.setattr(writeback, '_StreamedResolution', Recorded)
    first_run = wb(corp, w, delta_state_path=state)
    assert first_run['summary']['created'] == 7 and len(Recorded.runs) == 1
    assert wb(corp, w, delta_state_path=state)['changed'] is False
    assert len(Recorded.runs) == 1
    # Selected mode (an on-demand run of a few groups) resolves after its read, as before.
    selected = wb(corp, w, check=True, all_groups=False, group_filter=None, groups=[w['groups'][0]])
    assert selected['changed'] is False and len(Recorded.runs) == 1


def test_a_user_seen_with_other_identifiers_is_left_to_the_run():
    """Beta refused part-way is read again from v1.0: a member dict that differs from the one
    resolved is not answered for, nor is a user no search found."""
    beta = dict(id='u1', type='user', on_premises_object_identifier='g')

    def resolved_stream():
        stream = object.__new__(writeback._StreamedResolution)
        stream.seen, stream.differ, stream.lock = {}, set(), threading.Lock()
        batch = []
        stream._take([beta, dict(id='u2', type='user'), dict(id='d1', type='device'), dict(id='u3', type='user')], batch)
        stream._take([dict(id='u3', type='user', on_premises_security_identifier='S-1')], batch)
        assert [m['id'] for m in batch] == ['u1', 'u2', 'u3'] and stream.differ == {'u3'}
        stream.found = {'u1': 'CN=one', 'u2': {'dn': None, 'reason': 'not_found_in_forest'}, 'u3': 'CN=three'}
        stream.pool = stream.search = stream.domain = None
        stream.future = type('Done', (), {'result': lambda self: None})()
        stream.queue = type('Q', (), {'put': lambda self, item: None})()
        return stream

    assert resolved_stream().result([beta, dict(id='u2', type='user'), dict(id='u3', type='user')]) == {'u1': 'CN=one'}
    v1 = dict(id='u1', type='user', on_premises_object_identifier=None)
    assert 'u1' not in resolved_stream().result([v1])   # the ids not listed are left in: nobody asks for them
