"""Graph's documented limits and availability, held by the HTTPS emulator and respected by the reader.

Sources (every rule tested here traces to one):

* Graph known issues, "Some limitations apply to query parameters"
  (https://learn.microsoft.com/en-us/graph/known-issues#some-limitations-apply-to-query-parameters):
  "When using the in operator, the request is limited to 15 expressions in the filter clause by
  default OR a URL length of 2,048 characters when using advanced query capabilities." and "When
  filtering using the eq operator, the maximum limit of the value to match is 120 characters ...
  When using advanced queries, the limit is applied on the URL length at 2,048 characters instead".
* Beta properties may be missing in another cloud or change on beta
  (https://learn.microsoft.com/en-us/graph/versioning-and-support); the v1.0 user carries
  onPremisesSecurityIdentifier (https://learn.microsoft.com/en-us/graph/api/resources/user).
* Group source of authority: ``onPremisesSyncBehavior`` (beta,
  https://learn.microsoft.com/en-us/graph/api/onpremisessyncbehavior-get?view=graph-rest-beta) and
  "Status of attributes after SOA switch" (isCloudManaged true, dirSyncEnabled null:
  https://learn.microsoft.com/en-us/entra/identity/hybrid/how-to-group-source-of-authority-configure).
* writebackConfiguration is a beta group property
  (https://learn.microsoft.com/en-us/graph/api/resources/groupwritebackconfiguration?view=graph-rest-beta).
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest
import requests

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import entra_reader
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.graph_client import GraphClient

from emulator.fixtures import CLIENT_SECRET, TenantBuilder

TOO_MANY = "Too many child clauses specified in search filter expression containing 'OR' operators: %d. Max allowed: 15."


@pytest.fixture(autouse=True)
def _no_env_ca(monkeypatch):
    monkeypatch.delenv('REQUESTS_CA_BUNDLE', raising=False)


def client_for(emu, **kw):
    p = dict(tenant_id=emu.tenant_id, client_id=emu.client_id, client_secret=emu.client_secret,
             authority_host=emu.authority_url, graph_endpoint=emu.base_url, graph_ca_bundle=emu.ca_file)
    p.update(kw)
    return GraphClient(p)


def raw_session(emu, client_id=None):
    s = requests.Session()
    s.verify = emu.ca_file
    s.trust_env = False
    r = s.post('%s/%s/oauth2/v2.0/token' % (emu.authority_url, emu.tenant_id),
               data={'grant_type': 'client_credentials', 'client_id': client_id or emu.client_id,
                     'client_secret': CLIENT_SECRET, 'scope': 'https://graph.microsoft.com/.default'})
    s.headers['Authorization'] = 'Bearer ' + r.json()['access_token']
    return s


@pytest.fixture
def tenant(graph_emulator_factory):
    b = TenantBuilder()
    users = [b.synced_user('user%02d' % i) for i in range(4)]
    groups = [b.group('Limit Group %02d' % i, members=users[:2]) for i in range(20)]
    long_name = 'A group whose display name is 130 characters long (Entra allows 256): '
    long_name = long_name + 'x' * (130 - len(long_name))
    long_id = b.group(long_name, members=users[2:])
    emu = graph_emulator_factory(b.build(), settings={'throttle_enabled': False})
    return dict(emu=emu, users=users, groups=groups, long_name=long_name, long_id=long_id, builder=b)


def groups_url(emu):
    return emu.graph_url + '/groups'


# -- the emulator holds the limits ---------------------------------------------------------------------

def test_in_filter_counts_every_expression_of_the_clause(tenant):
    emu, ids = tenant['emu'], tenant['groups']
    s = raw_session(emu)
    quoted = ','.join("'%s'" % g for g in ids[:15])
    ok = s.get(groups_url(emu), params={'$filter': 'id in (%s)' % quoted, '$select': 'id'})
    assert ok.status_code == 200 and len(ok.json()['value']) == 15
    # the delta scope check's clause: 15 ids and two comparisons = 17
    r = s.get(groups_url(emu), params={'$filter': 'id in (%s) and securityEnabled eq true and mailEnabled eq false' % quoted})
    assert r.status_code == 400
    assert r.json()['error']['code'] == 'Request_UnsupportedQuery'
    assert r.json()['error']['message'] == TOO_MANY % 17
    # 13 ids and the two comparisons fit
    quoted13 = ','.join("'%s'" % g for g in ids[:13])
    r = s.get(groups_url(emu), params={'$filter': 'id in (%s) and securityEnabled eq true and mailEnabled eq false' % quoted13})
    assert r.status_code == 200 and len(r.json()['value']) == 13
    # 16 or-ed comparisons: the same limit
    ors = ' or '.join("id eq '%s'" % g for g in ids[:16])
    assert s.get(groups_url(emu), params={'$filter': ors}).json()['error']['message'] == TOO_MANY % 16
    # advanced query: the limit is the URL length instead
    adv = s.get(groups_url(emu), params={'$filter': 'id in (%s) and securityEnabled eq true' % quoted, '$count': 'true'},
                headers={'ConsistencyLevel': 'eventual'})
    assert adv.status_code == 200 and adv.json()['@odata.count'] == 15
    many = ','.join("'%s'" % g for g in ids) * 3   # far over 2,048 characters
    r = s.get(groups_url(emu), params={'$filter': 'id in (%s)' % many, '$count': 'true'}, headers={'ConsistencyLevel': 'eventual'})
    assert r.status_code == 400 and '2048' in r.json()['error']['message']


def test_in_limit_holds_inside_batch_too(tenant):
    emu, ids = tenant['emu'], tenant['groups']
    s = raw_session(emu)
    flt = 'id in (%s) and securityEnabled eq true' % ','.join("'%s'" % g for g in ids[:15])
    r = s.post(emu.graph_url + '/$batch', json={'requests': [{'id': '1', 'method': 'GET', 'url': '/groups?$filter=' + flt}]})
    sub = r.json()['responses'][0]
    assert sub['status'] == 400 and sub['body']['error']['message'] == TOO_MANY % 16


def test_eq_value_of_more_than_120_characters_needs_advanced_query(tenant):
    emu, name = tenant['emu'], tenant['long_name']
    s = raw_session(emu)
    assert len(name) == 130
    r = s.get(groups_url(emu), params={'$filter': "displayName eq '%s'" % name})
    assert r.status_code == 400 and r.json()['error']['code'] == 'Request_UnsupportedQuery'
    assert '120' in r.json()['error']['message']
    r = s.get(groups_url(emu), params={'$filter': "displayName in ('%s')" % name})
    assert r.status_code == 400
    r = s.get(groups_url(emu), params={'$filter': "displayName eq '%s'" % name[:120]})
    assert r.status_code == 200 and r.json()['value'] == []
    r = s.get(groups_url(emu), params={'$filter': "displayName eq '%s'" % name, '$count': 'true'},
              headers={'ConsistencyLevel': 'eventual'})
    assert r.status_code == 200 and [g['id'] for g in r.json()['value']] == [tenant['long_id']]


# -- the reader fits them ------------------------------------------------------------------------------

def test_select_a_130_character_name_and_20_names_in_one_read(tenant):
    emu = tenant['emu']
    names = ['Limit Group %02d' % i for i in range(20)] + [tenant['long_name']]
    log_start = len(emu.admin.requests())
    report = entra_reader.read_groups_report(client_for(emu), display_names=names, members='direct')
    assert report['not_found'] == [] and report['ambiguous'] == []
    got = dict((g['display_name'], g) for g in report['groups'])
    assert set(got) == set(names)
    assert len(got[tenant['long_name']]['members']) == 2 and got[tenant['long_name']]['eligible']
    statuses = [e['status'] for e in emu.admin.requests(log_start) if e['kind'] in ('graph', 'batch_item')]
    assert statuses and all(st == 200 for st in statuses), statuses


def test_scope_check_of_twenty_changed_groups_fits(tenant):
    emu, ids = tenant['emu'], tenant['groups']
    client = client_for(emu)
    found = entra_reader._scope_check(client, ids, None)
    assert sorted(found) == sorted(ids)
    found = entra_reader._scope_check(client, ids, "startswith(displayName,'Limit Group 0')")
    assert sorted(found) == sorted(ids[:10])
    # a filter that leaves no room for any id without advanced query goes to advanced query
    wide = ' or '.join("displayName eq 'Limit Group %02d'" % i for i in range(13))
    found = entra_reader._scope_check(client, ids, wide)
    assert sorted(found) == sorted(ids[:13])
    assert not [e for e in emu.admin.requests() if e['kind'] in ('graph', 'batch_item') and e['status'] == 400]


# -- no beta-only dependency -----------------------------------------------------------------------------

@pytest.mark.parametrize('switch', [{'beta_withdrawn': ['onPremisesObjectIdentifier']}, {'beta_available': False}])
def test_members_come_from_v1_when_beta_refuses(tenant, switch):
    emu = tenant['emu']
    emu.admin.update_settings(**switch)
    s = raw_session(emu)
    refused = s.get(emu.beta_url + '/groups/%s/members' % tenant['groups'][0],
                    params={'$select': 'id,onPremisesObjectIdentifier'})
    assert refused.status_code == 400
    for ids in ([tenant['groups'][0]], tenant['groups'][:3]):   # one request, and $batch
        report = entra_reader.read_groups_report(client_for(emu), ids=ids, members='direct')
        assert report['member_source'] == 'v1.0'
        members = [m for g in report['groups'] for m in g['members']]
        assert members and all(m['on_premises_object_identifier'] is None for m in members)
        assert all(m['on_premises_security_identifier'].startswith('S-1-5-21-') and m['supported'] for m in members)
    emu.admin.update_settings(beta_withdrawn=[], beta_available=True)
    report = entra_reader.read_groups_report(client_for(emu), ids=tenant['groups'][:1], members='direct')
    assert report['member_source'] == 'beta'
    assert all(m['on_premises_object_identifier'] for m in report['groups'][0]['members'])


# -- group source of authority ------------------------------------------------------------------------

@pytest.fixture
def soa(graph_emulator_factory):
    b = TenantBuilder()
    alice = b.synced_user('alice')
    synced = b.group('From AD', kind='synced', members=[alice])
    stays = b.group('Still From AD', kind='synced', members=[alice])
    parent = b.group('Cloud Parent', members=[alice, synced])
    emu = graph_emulator_factory(b.build(), settings={'throttle_enabled': False})
    return dict(emu=emu, synced=synced, stays=stays, parent=parent, alice=alice)


def test_emulator_models_the_source_of_authority_switch(soa):
    emu, gid = soa['emu'], soa['synced']
    s = raw_session(emu)
    before = emu.admin.get_object(gid)
    assert before['onPremisesSyncEnabled'] is True
    r = s.get(emu.beta_url + '/groups/%s/onPremisesSyncBehavior' % gid)
    assert r.status_code == 200 and r.json()['isCloudManaged'] is False and r.json()['id'] == gid
    emu.admin.convert_group_to_cloud(gid)
    r = s.get(emu.beta_url + '/groups/%s/onPremisesSyncBehavior' % gid)
    assert r.json()['isCloudManaged'] is True
    g = s.get(emu.graph_url + '/groups/%s' % gid,
              params={'$select': 'onPremisesSyncEnabled,onPremisesSecurityIdentifier,onPremisesSamAccountName'}).json()
    assert g['onPremisesSyncEnabled'] is None                                   # dirSyncEnabled null
    assert g['onPremisesSecurityIdentifier'] == before['onPremisesSecurityIdentifier']   # the SID ties it to AD
    assert g['onPremisesSamAccountName'] == before['onPremisesSamAccountName']
    # beta only, no query options, and only with Group-OnPremisesSyncBehavior.ReadWrite.All
    assert s.get(emu.graph_url + '/groups/%s/onPremisesSyncBehavior' % gid).status_code == 400
    assert s.get(emu.beta_url + '/groups/%s/onPremisesSyncBehavior?$select=isCloudManaged' % gid).status_code == 400
    assert raw_session(emu, emu.limited_client_id).get(emu.beta_url + '/groups/%s/onPremisesSyncBehavior' % gid).status_code == 403
    # the switch is a change delta reports (onPremisesSyncEnabled changed)
    emu.admin.convert_group_to_cloud(gid, cloud_managed=False)
    assert s.get(emu.beta_url + '/groups/%s/onPremisesSyncBehavior' % gid).json()['isCloudManaged'] is False
    assert emu.admin.get_object(gid)['onPremisesSyncEnabled'] is None             # until the sync client takes it over


def test_reader_marks_converted_groups_eligible_with_their_identifiers(soa):
    emu = soa['emu']
    emu.admin.convert_group_to_cloud(soa['synced'])
    report = entra_reader.read_groups_report(client_for(emu), all_groups=True, members='direct')
    by_id = dict((g['id'], g) for g in report['groups'])
    converted, stays, parent = by_id[soa['synced']], by_id[soa['stays']], by_id[soa['parent']]
    assert converted['cloud_managed'] is True and converted['eligible'] is True
    assert converted['on_premises_security_identifier'].startswith('S-1-5-21-')
    assert converted['on_premises_sam_account_name'] == 'From AD' and converted['on_premises_domain_name'] == 'corp.example.test'
    assert converted['on_premises_sync_enabled'] is None
    assert (stays['cloud_managed'], stays['ineligible_reasons']) == (False, ['synced_from_ad'])
    assert parent['cloud_managed'] is False and parent['writeback_enabled'] is None
    # the converted group is a supported nested member of its parent now
    assert [m['supported'] for m in parent['members'] if m['type'] == 'group'] == [True]
    assert report['warnings'] == []
    # an application without the permission cannot tell: not written, and said so
    limited = client_for(emu, client_id=emu.limited_client_id)
    report = entra_reader.read_groups_report(limited, ids=[soa['synced']])
    assert report['groups'][0]['cloud_managed'] is False
    assert report['groups'][0]['ineligible_reasons'] == ['source_of_authority_on_premises']
    assert 'Group-OnPremisesSyncBehavior.ReadWrite.All' in report['warnings'][0]


def test_selected_mode_returns_nested_groups_without_members(soa, graph_emulator_factory):
    b = TenantBuilder()
    alice, bob = b.synced_user('alice'), b.synced_user('bob')
    grandchild = b.group('Grandchild', members=[bob])
    child = b.group('Child', members=[alice, grandchild])
    m365 = b.group('M365', kind='unified', members=[bob])
    parent = b.group('Parent', members=[alice, child, m365])
    emu = graph_emulator_factory(b.build(), settings={'throttle_enabled': False})
    report = entra_reader.read_groups_report(client_for(emu), ids=[parent], members='direct', include_nested=True)
    by_id = dict((g['id'], g) for g in report['groups'])
    assert sorted(by_id) == sorted([parent, child])           # not the M365 group, not the grandchild
    assert by_id[child]['nested_only'] is True and by_id[child]['members'] == [] and by_id[child]['eligible']
    assert 'nested_only' not in by_id[parent]
    reasons = dict((m['id'], m['reason']) for m in by_id[parent]['members'])
    assert reasons[child] is None and reasons[m365] == 'group_not_in_scope'
    # selected itself: written with its members, not nested-only
    report = entra_reader.read_groups_report(client_for(emu), ids=[parent, child], members='direct', include_nested=True)
    by_id = dict((g['id'], g) for g in report['groups'])
    assert 'nested_only' not in by_id[child] and len(by_id[child]['members']) == 2
    assert by_id[grandchild]['nested_only'] is True          # now the grandchild is a direct member of a selected group
    # without include_nested (all reads before this option): only the selection
    plain = entra_reader.read_groups_report(client_for(emu), ids=[parent], members='direct')
    assert [g['id'] for g in plain['groups']] == [parent]


# -- the writeback flag (beta) ---------------------------------------------------------------------------

def test_writeback_enabled_only_and_beta_only_filters(graph_emulator_factory):
    b = TenantBuilder()
    alice = b.synced_user('alice')
    on = b.group('Flag On', members=[alice], writebackConfiguration={'isEnabled': True, 'onPremisesGroupType': None})
    off = b.group('Flag Off', members=[alice], writebackConfiguration={'isEnabled': False, 'onPremisesGroupType': None})
    unset = b.group('Flag Unset', members=[alice])
    emu = graph_emulator_factory(b.build(), settings={'throttle_enabled': False})
    s = raw_session(emu)
    # the property and its filter exist on beta only
    assert s.get(emu.graph_url + '/groups', params={'$select': 'id,writebackConfiguration'}).status_code == 400
    assert s.get(emu.graph_url + '/groups', params={'$filter': 'writebackConfiguration/isEnabled eq true'}).status_code == 400
    r = s.get(emu.beta_url + '/groups', params={'$filter': 'writebackConfiguration/isEnabled eq true', '$select': 'id'})
    assert [g['id'] for g in r.json()['value']] == [on]

    report = entra_reader.read_groups_report(client_for(emu), all_groups=True, members='direct', writeback_enabled_only=True)
    assert [g['id'] for g in report['groups']] == [on] and report['groups'][0]['writeback_enabled'] is True
    assert sorted((x['id'], x['reasons'][0]) for x in report['skipped']) == sorted(
        [(off, 'writeback_not_enabled'), (unset, 'writeback_not_enabled')])
    # a group_filter naming the beta-only property goes to beta (it used to be sent to v1.0 and refused)
    flt = entra_reader.read_groups_report(client_for(emu), all_groups=True, odata_filter='writebackConfiguration/isEnabled eq true')
    assert [g['id'] for g in flt['groups']] == [on]
    # incremental reads keep the flag in scope: switching it on brings the group in
    groups, state = entra_reader.read_groups_incremental(client_for(emu), None, writeback_enabled_only=True)
    assert [g['id'] for g in groups] == [on] and state['writeback_enabled_only'] is True
    emu.admin.update_group(unset, writebackConfiguration={'isEnabled': True, 'onPremisesGroupType': None})
    groups, state = entra_reader.read_groups_incremental(client_for(emu), state, writeback_enabled_only=True)
    assert state['last_run']['mode'] == 'delta'
    assert sorted(g['id'] for g in groups) == sorted([on, unset])


def test_incremental_read_sees_a_conversion(soa):
    """The switch sets onPremisesSyncEnabled to null, a change /groups/delta reports; the scope check
    then reads the flag of the changed group."""
    emu = soa['emu']
    groups, state = entra_reader.read_groups_incremental(client_for(emu), None)
    by_id = dict((g['id'], g) for g in groups)
    assert by_id[soa['synced']]['eligible'] is False and by_id[soa['synced']]['cloud_managed'] is False
    emu.admin.convert_group_to_cloud(soa['synced'])
    groups, state = entra_reader.read_groups_incremental(client_for(emu), state)
    assert state['last_run']['mode'] == 'delta' and state['last_run']['changed_groups'] == 1
    by_id = dict((g['id'], g) for g in groups)
    converted = by_id[soa['synced']]
    assert (converted['cloud_managed'], converted['eligible'], converted['on_premises_sync_enabled']) == (True, True, None)
    assert [m['id'] for m in converted['members']] == [soa['alice']]
    assert by_id[soa['stays']]['eligible'] is False


def test_a_long_group_filter_goes_to_advanced_query(tenant):
    """The eligibility clause (2) and a user's filter of 14 names are 16 expressions: sent as an
    advanced query, where only the URL length counts."""
    emu = tenant['emu']
    names = ['Limit Group %02d' % i for i in range(14)]
    flt = 'displayName in (%s)' % ','.join("'%s'" % n for n in names)
    log_start = len(emu.admin.requests())
    groups = entra_reader.read_groups(client_for(emu), all_groups=True, odata_filter=flt)
    assert sorted(g['display_name'] for g in groups) == names
    assert not graph_errors_since(emu, log_start)


def graph_errors_since(emu, since):
    return [e for e in emu.admin.requests(since) if e['kind'] in ('graph', 'batch_item') and e['status'] >= 400]


def test_only_the_long_names_are_read_with_consistency_level(tenant):
    """Advanced query is eventually consistent: only the requests that need it carry ConsistencyLevel."""
    emu = tenant['emu']
    names = ['Limit Group %02d' % i for i in range(3)] + [tenant['long_name']]
    log_start = len(emu.admin.requests())
    client = client_for(emu)
    sent = []
    original = client._send_batch

    def spy(chunk, version, headers, *rest):
        sent.append((sorted(rel for unused, rel in chunk), dict(headers or {})))
        return original(chunk, version, headers, *rest)
    client._send_batch = spy
    report = entra_reader.read_groups_report(client, display_names=names)
    assert len(report['groups']) == 4 and not graph_errors_since(emu, log_start)
    assert len(sent) == 2
    for rels, headers in sent:
        advanced = any('%24count=true' in r or '$count=true' in r for r in rels)
        assert ('ConsistencyLevel' in headers) == advanced, (rels, headers)


@pytest.mark.parametrize('count', [1, 3])
def test_members_are_converted_while_the_reply_is_decoded(tenant, monkeypatch, count):
    """read_members hands member_converter's object_hook to the replies, on one group's pages and
    through $batch alike: the converter is given member dicts, never Graph's raw objects."""
    real = entra_reader.member_converter
    seen = {'converted': 0, 'raw': 0}

    def spying(shared=None):
        convert = real(shared)

        def hook(obj):
            out = convert.object_hook(obj)
            seen['converted'] += out is not obj
            return out

        def checking(group_id, items):
            seen['raw'] += sum(1 for item in items if '@odata.type' in item)
            return convert(group_id, items)
        checking.object_hook = hook
        return checking
    monkeypatch.setattr(entra_reader, 'member_converter', spying)
    gids = tenant['groups'][:count]
    members = entra_reader.read_members(client_for(tenant['emu']), gids)
    assert all(sorted(m['type'] for m in members[gid]) == ['user', 'user'] for gid in gids)
    assert seen == {'converted': 2 * count, 'raw': 0}
