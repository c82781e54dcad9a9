# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the Entra reader holds a large membership (issue 12.4), against the HTTPS Graph emulator:
one member dict per directory object however many groups list it, pages turned into member dicts
as they arrive, and a full read with a delta state returning the groups it read instead of a second
per-membership copy rebuilt from the state. Memory itself is measured by
``benchmarks/memory_phases.py`` (VmHWM after each phase), never asserted here."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import sys

import pytest

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.graph_client import GraphClient
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import entra_reader as er
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import delta_state

from emulator.fixtures import build_tenant


@pytest.fixture(autouse=True)
def _no_env_ca(monkeypatch):
    monkeypatch.delenv('REQUESTS_CA_BUNDLE', raising=False)
    monkeypatch.delenv('CURL_CA_BUNDLE', raising=False)


def params(emu, **kw):
    p = dict(tenant_id=emu.tenant_id, client_id=emu.client_id, client_secret=emu.client_secret,
             authority_host=emu.authority_url, graph_endpoint=emu.base_url, graph_ca_bundle=emu.ca_file,
             graph_max_retries=5, graph_max_retry_wait=60, graph_parallelism=4)
    p.update(kw)
    return p


@pytest.fixture(scope='module')
def overlapping(graph_emulator_factory_module):
    """45 groups over 300 users with 2,000 memberships (users in several groups each) and one group of
    1,200 members (two pages)."""
    tenant = build_tenant(groups=45, users=300, memberships=2000, nesting_depth=1, big_group_members=1200, seed=11)
    return tenant, graph_emulator_factory_module(tenant, settings={'throttle_enabled': False})


@pytest.fixture(scope='module')
def graph_emulator_factory_module():
    from emulator.fixtures import start_with_credentials
    started = []

    def factory(tenant, **kw):
        emu = start_with_credentials(tenant, **kw)
        started.append(emu)
        return emu
    try:
        yield factory
    finally:
        for emu in started:
            emu.stop()


def _dicts_by_id(groups):
    seen = {}
    for g in groups:
        for m in g.get('members') or []:
            seen.setdefault(m['id'], set()).add(id(m))
    return seen


def _shared_in_several_groups(groups):
    counts = {}
    for g in groups:
        for m in g.get('members') or []:
            counts[m['id']] = counts.get(m['id'], 0) + 1
    return [mid for mid, n in counts.items() if n > 1]


def test_a_member_of_several_groups_is_one_dict(overlapping):
    tenant, emu = overlapping
    report = er.read_groups_report(GraphClient(params(emu)), all_groups=True, members='direct')
    groups = report['groups']
    several = _shared_in_several_groups(groups)
    assert len(several) > 100          # the tenant really has objects in several groups
    by_id = _dicts_by_id(groups)
    assert all(len(by_id[mid]) == 1 for mid in several), 'a member listed by several groups has several dicts'
    # and the membership itself is the tenant's
    for g in groups:
        assert sorted(m['id'] for m in g['members']) == sorted(x.lower() for x in tenant['memberships'].get(g['id'], []))


def test_full_read_with_state_returns_the_read_groups_shared_and_equal_to_the_state(overlapping):
    """The first read with a delta state: the groups are the ones read (one dict per object), sorted by
    id, and equal to what the state rebuilds (a delta run's groups)."""
    unused_tenant, emu = overlapping
    groups, state = er.read_groups_incremental(GraphClient(params(emu)), None)
    assert state['last_run']['reason'] == 'no_state'
    assert [g['id'] for g in groups] == sorted(g['id'] for g in groups)
    by_id = _dicts_by_id(groups)
    several = _shared_in_several_groups(groups)
    assert several and all(len(by_id[mid]) == 1 for mid in several)
    assert delta_state.is_lazy(state), 'a full read leaves its member lists in the groups it returns'
    rebuilt = er.groups_from_state(json.loads(json.dumps(delta_state.hydrate(state))), er.MAX_MEMBERS)
    assert rebuilt == groups
    # the state saved is unchanged by the evaluation of the shared member dicts
    assert not any('supported' in obj for obj in state['objects'].values())


def test_groups_from_state_share_one_dict_per_object(overlapping):
    """A delta run (and the no-op) rebuilds the groups from the state: one dict per object too."""
    unused_tenant, emu = overlapping
    unused_groups, state = er.read_groups_incremental(GraphClient(params(emu)), None)
    rebuilt = er.groups_from_state(json.loads(json.dumps(delta_state.hydrate(state))), er.MAX_MEMBERS)
    by_id = _dicts_by_id(rebuilt)
    assert all(len(v) == 1 for v in by_id.values())


def test_a_loaded_state_holds_one_string_per_member_id(overlapping, tmp_path):
    """A delta run on a state saved and loaded again (``delta_state``): every member id in
    ``member_ids`` is the string of its ``objects`` key (JSON parsing makes one string per
    occurrence), and the state's content is unchanged."""
    unused_tenant, emu = overlapping
    client = GraphClient(params(emu))
    unused_groups, state = er.read_groups_incremental(client, None)
    path = str(tmp_path / 'state.json')
    delta_state.save(path, state)   # written from the groups read (a full read's state is lazy)
    assert delta_state.is_lazy(state), 'saving did not make the member lists'
    text = json.dumps(delta_state.hydrate(state))
    loaded = delta_state.load(path)
    assert not delta_state.is_hydrated(loaded)
    groups, new = er.read_groups_incremental(client, loaded)
    assert new['last_run']['mode'] == 'delta'
    keys = dict((k, k) for k in new['objects'])
    ids = [mid for entry in new['groups'].values() for mid in entry['member_ids']]
    assert len(ids) > len(keys)
    assert all(keys[mid] is mid for mid in ids), 'member ids are separate strings'
    assert all(obj['id'] is keys[k] for k, obj in new['objects'].items())
    assert json.loads(text)['groups'] == dict((k, dict(v)) for k, v in new['groups'].items())
    assert json.loads(text)['objects'] == new['objects']
    assert groups == er.groups_from_state(json.loads(text), er.MAX_MEMBERS)


def test_batch_collect_transforms_each_page_as_it_arrives(overlapping):
    """``transform`` sees every page once (the 1,200-member group's two pages separately) and the
    results hold what it returned, not the raw Graph items."""
    tenant, emu = overlapping
    client = GraphClient(params(emu))
    ids = [g['id'] for g in tenant['groups']]
    calls = []

    def transform(key, items):
        calls.append((key, len(items)))
        return [('seen', i['id']) for i in items]
    results, errors = client.batch_collect([(gid, '/groups/%s/members?$select=id&$top=999' % gid) for gid in ids],
                                           transform=transform)
    assert not errors
    big = max(ids, key=lambda gid: len(tenant['memberships'].get(gid, [])))
    assert [n for key, n in calls if key == big] == [999, len(tenant['memberships'][big]) - 999]
    assert len(calls) == len(ids) + 1
    for gid in ids:
        assert sorted(results[gid]) == sorted(('seen', m) for m in tenant['memberships'].get(gid, []))


def test_converter_shares_only_members_graph_returned_alike():
    """Two pages listing the same object with different properties (read before and after a change)
    keep both versions; alike ones share a dict."""
    convert = er.member_converter()
    user = {'@odata.type': '#microsoft.graph.user', 'id': 'U1', 'userPrincipalName': 'a@corp', 'displayName': 'A'}
    first = convert('g1', [user])[0]
    same = convert('g2', [dict(user)])[0]
    changed = convert('g3', [dict(user, displayName='A (renamed)')])[0]
    assert same is first
    assert changed is not first and changed['display_name'] == 'A (renamed)'
    with pytest.raises(er.EntraReadError, match='User.Read.All'):
        convert('g4', [{'@odata.type': '#microsoft.graph.user', 'id': 'u2'}])


# -- resolving many users through the Global Catalog ----------------------------------------------

def _lab_members(corp, count):
    """Entra user members for the lab's first ``count`` seeded users: half by objectGUID, half by SID
    only, and one that exists nowhere."""
    import uuid
    out = []
    for n, ident in enumerate(corp.identities[:count]):
        if n % 2:
            out.append({'id': 'e-%d' % n, 'type': 'user', 'on_premises_object_identifier': ident['object_guid']})
        else:
            out.append({'id': 'e-%d' % n, 'type': 'user', 'on_premises_security_identifier': ident['object_sid']})
    out.append({'id': 'ghost', 'type': 'user', 'on_premises_object_identifier': str(uuid.uuid4())})
    return out


def test_resolving_on_several_connections_gives_what_one_connection_gives(lab):
    """``connections=2``: the OR searches of a round (450 users: three searches of up to 200 per
    method) run on two Global Catalog connections; the resolution is the same as on one, every search
    is counted in ``gc.stats``, and each search asks only for the identifier it matches on."""
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import ad_reader
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_client import ADClient
    from writeback_helpers import ad_params, dn_key
    # 450 synced users: seeded here (incremental, a second or two; later runs find them there).
    lab.seed('corp', users=450)
    corp = lab.forest('corp')
    assert len(corp.identities) >= 450
    members = _lab_members(corp, 450)
    ad = ADClient(ad_params(corp)).connect()
    asked = []
    try:
        gc = ad.global_catalog()
        one, unresolved_one = ad_reader.resolve_users(gc, members, 'auto')
        searches_one = gc.stats['searches']
        real_search = ADClient.search

        def recording(self, base, ldap_filter='(objectClass=*)', attributes=None, **kw):
            asked.append((self is gc, tuple(attributes or ())))
            return real_search(self, base, ldap_filter, attributes, **kw)
        ADClient.search = recording
        try:
            two, unresolved_two = ad_reader.resolve_users(gc, members, 'auto', connections=2)
        finally:
            ADClient.search = real_search
        searches_two = gc.stats['searches'] - searches_one
    finally:
        ad.close()
    assert two == one and unresolved_two == unresolved_one == {'ghost': 'not_found_in_forest'}
    by_id = dict((m['id'], m) for m in members)
    expected = dict((ident['object_guid'], ident['dn']) for ident in corp.identities[:450])
    for uid, res in two.items():
        n = int(uid.split('-')[1])
        assert dn_key(res['dn']) == dn_key(corp.identities[n]['dn'])
        assert res['matched_by'] == ('object_identifier' if by_id[uid].get('on_premises_object_identifier') else 'sid')
    assert len(expected) == 450
    # 226 object identifiers (2 searches), then 225 SIDs (2 searches)
    assert searches_one == searches_two == 4
    assert any(not on_gc for on_gc, unused in asked), 'no search ran on a second connection'
    assert set(attrs for unused, attrs in asked) == {('objectGUID',), ('objectSid',)}


def test_without_a_second_connection_the_searches_run_on_the_one_there_is():
    """An extra Global Catalog connection that cannot be opened is no failure: every search runs on
    ``gc``, as with ``connections=1``."""
    import uuid
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import ad_reader

    class OneConnection(object):
        server = 'gc.test'

        def __init__(self, *args, **kwargs):
            if args or kwargs:
                raise OSError('no more connections')
            self.filters = []
            self.stats = {'searches': 0}

        def search(self, base, ldap_filter, attributes=None, **kwargs):
            self.filters.append(ldap_filter)
            self.stats['searches'] += 1
            return iter([])

    gc = OneConnection()
    gc.params, gc.is_global_catalog, gc.range_size = {}, True, None
    users = [{'id': 'u%d' % n, 'type': 'user', 'on_premises_object_identifier': str(uuid.uuid4())} for n in range(450)]
    resolution, unresolved = ad_reader.resolve_users(gc, users, 'object_identifier', connections=2)
    assert resolution == {} and len(unresolved) == 450
    assert len(gc.filters) == 3 and gc.stats['searches'] == 3


def test_the_writeback_reads_members_without_the_flags_it_does_not_use(overlapping):
    """``member_flags=False`` (the writeback engine's read): member dicts keep the contract's nine
    keys, not the two ``evaluate`` adds (``supported``, ``reason``), which take a CPython dict past
    ten keys and double its size; groups are still evaluated (``eligible``)."""
    unused_tenant, emu = overlapping
    groups, state = er.read_groups_incremental(GraphClient(params(emu)), None, member_flags=False)
    members = [m for g in groups for m in g['members']]
    assert members and not any('supported' in m or 'reason' in m for m in members)
    assert all(len(m) <= 10 and sys.getsizeof(m) < sys.getsizeof(dict(m, supported=True, reason=None)) for m in members[:50])
    assert all('eligible' in g for g in groups)
    rebuilt = er.groups_from_state(state, er.MAX_MEMBERS, member_flags=False)
    assert not any('supported' in m for g in rebuilt for m in g['members'])
    flagged, unused_state = er.read_groups_incremental(GraphClient(params(emu)), None)
    assert all('supported' in m for g in flagged for m in g['members'])
