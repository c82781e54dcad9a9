"""graph_auth and graph_client against the HTTPS Graph emulator: real msal and requests, TLS
validated with the lab CA. Request counts and Retry-After gaps come from the emulator's log."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import math
import os

import pytest

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.graph_auth import GraphAuthError
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.graph_client import (
    DeltaResyncRequired, GraphClient, GraphError,
)
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import entra_reader

from emulator.fixtures import build_tenant

FINANCE = 'f0000000-0000-4000-8000-000000000001'


@pytest.fixture(autouse=True)
def _no_env_ca(monkeypatch):
    # The machine sets REQUESTS_CA_BUNDLE; the client must trust exactly graph_ca_bundle.
    monkeypatch.delenv('REQUESTS_CA_BUNDLE', raising=False)
    monkeypatch.delenv('CURL_CA_BUNDLE', raising=False)


def params(emu, **kw):
    p = dict(tenant_id=emu.tenant_id, client_id=emu.client_id, client_secret=emu.client_secret,
             authority_host=emu.authority_url, graph_endpoint=emu.base_url, graph_ca_bundle=emu.ca_file,
             graph_max_retries=5, graph_max_retry_wait=60, graph_parallelism=4)
    p.update(kw)
    return p


def graph_log(emu, since=0):
    return [e for e in emu.admin.requests(since) if e['kind'] in ('graph', 'batch', 'batch_item')]


def combined_pem(emu, tmp_path, password=None):
    from cryptography.hazmat.primitives import serialization
    key = serialization.load_pem_private_key(open(emu.client_key_file, 'rb').read(), password=None)
    enc = serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
    path = tmp_path / 'client.pem'
    path.write_bytes(open(emu.client_cert_file, 'rb').read()
                     + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc))
    return str(path)


# -- authentication --------------------------------------------------------------------------------

def test_client_secret(graph_emulator):
    emu = graph_emulator
    client = GraphClient(params(emu))
    org = client.get('/organization', {'$select': 'id,tenantType'})
    assert org['value'][0]['tenantType'] == 'AAD'
    entries = graph_log(emu)
    assert entries[-1]['app'] == emu.client_id and entries[-1]['priority'] == 'low'
    assert entries[-1]['client_request_id'] and entries[-1]['client_request_id'] != entries[-1]['request_id']
    # the token is cached for the run
    client.get('/organization')
    assert emu.admin.counters()['tokens_issued'] == 1


@pytest.mark.parametrize('password', [None, 'Pa$$word with spaces'])
def test_certificate(graph_emulator, tmp_path, password):
    emu = graph_emulator
    p = params(emu, client_secret=None, client_certificate_path=combined_pem(emu, tmp_path, password),
               client_certificate_password=password)
    client = GraphClient(p)
    assert client.auth.method == 'certificate'
    assert client.auth.certificate['thumbprint_sha1'] == emu.client_cert_thumbprint
    assert client.get('/organization')['value']
    tokens = [e for e in emu.admin.requests() if e['kind'] == 'token']
    assert tokens and tokens[-1]['status'] == 200


@pytest.mark.parametrize('user_assigned', [False, True])
def test_managed_identity_through_imds(graph_emulator, monkeypatch, user_assigned):
    emu = graph_emulator
    monkeypatch.setenv('AZURE_POD_IDENTITY_AUTHORITY_HOST', emu.imds_url)
    mis = emu.tenant.managed_identities
    mi = [m for m in mis if m['type'] == ('user' if user_assigned else 'system')][0]
    p = params(emu, tenant_id=None, client_id=None, client_secret=None, auth_method='managed_identity',
               managed_identity_client_id=mi['client_id'] if user_assigned else None)
    client = GraphClient(p)
    groups = list(client.iter_pages('/groups', {'$select': 'id'}))
    assert groups
    imds = [e for e in emu.admin.requests() if e['kind'] == 'imds']
    assert imds and imds[-1]['status'] == 200
    assert graph_log(emu)[-1]['app'] == mi['client_id']


def test_wrong_secret_names_aadsts_not_the_secret(graph_emulator):
    emu = graph_emulator
    client = GraphClient(params(emu, client_secret='Not-The-Secret-42'))
    with pytest.raises(GraphAuthError) as exc:
        client.get('/organization')
    text = str(exc.value)
    assert 'AADSTS7000215' in text and emu.client_id in text and emu.tenant_id in text
    assert 'Not-The-Secret-42' not in text and 'Not-The-Secret-42' not in repr(exc.value.to_fail_kwargs())


def test_tls_is_validated_and_can_be_turned_off_with_a_warning(graph_emulator):
    emu = graph_emulator
    client = GraphClient(params(emu, graph_ca_bundle=None))
    with pytest.raises(GraphAuthError) as exc:
        client.get('/organization')
    assert 'TLS' in str(exc.value) and 'graph_ca_bundle' in str(exc.value)
    warnings = []
    client = GraphClient(params(emu, graph_ca_bundle=None, graph_validate_certs=False), warn=warnings.append)
    assert client.get('/organization')['value']
    assert warnings and 'not validated' in warnings[0]


def test_ca_bundle_is_not_replaced_by_requests_ca_bundle(graph_emulator, monkeypatch, tmp_path):
    emu = graph_emulator
    empty = tmp_path / 'other-ca.pem'
    empty.write_text(open(os.path.join(os.path.dirname(__import__('certifi').__file__), 'cacert.pem')).read())
    monkeypatch.setenv('REQUESTS_CA_BUNDLE', str(empty))
    assert GraphClient(params(emu)).get('/organization')['value']


# -- paging ----------------------------------------------------------------------------------------

def test_paging_follows_next_links_and_defaults_to_top_999(graph_emulator):
    emu = graph_emulator
    client = GraphClient(params(emu))
    big = list(client.iter_pages('/groups', {'$filter': "displayName eq 'Paging Group'", '$select': 'id'}))[0]
    start = len(emu.admin.requests())
    members = list(client.iter_pages('/groups/%s/members' % big['id'], {'$select': 'id', '$top': '100'}))
    assert len(members) == 260 and len(set(m['id'] for m in members)) == 260
    assert len(graph_log(emu, start)) == 3
    start = len(emu.admin.requests())
    assert len(list(client.iter_pages('/groups/%s/members' % big['id'], {'$select': 'id'}))) == 260
    log = graph_log(emu, start)
    assert len(log) == 1 and ('$top=999' in log[0]['path'] or '%24top=999' in log[0]['path'])


def test_consistency_level_is_resent_on_every_page(graph_emulator):
    emu = graph_emulator
    client = GraphClient(params(emu))
    pages = list(client.pages('/groups', {'$filter': "not(groupTypes/any(c:c eq 'Unified'))", '$select': 'id,groupTypes',
                                          '$top': '4'}))
    assert len(pages) >= 3   # the emulator re-checks the advanced filter on every page: 400 without the header
    assert pages[0]['@odata.count'] == sum(len(p['value']) for p in pages)
    assert all('Unified' not in g['groupTypes'] for p in pages for g in p['value'])


def test_v1_rejects_object_identifier_and_beta_returns_it(graph_emulator):
    emu = graph_emulator
    client = GraphClient(params(emu))
    with pytest.raises(GraphError) as exc:
        client.get('/groups/%s/members' % FINANCE, {'$select': 'id,onPremisesObjectIdentifier'})
    assert exc.value.status == 400 and 'onPremisesObjectIdentifier' in str(exc.value)
    items = list(client.iter_pages('/groups/%s/members' % FINANCE, {'$select': 'id,onPremisesObjectIdentifier'},
                                   version='beta'))
    assert any(i.get('onPremisesObjectIdentifier') for i in items)


# -- errors ----------------------------------------------------------------------------------------

def test_errors_name_request_status_code_and_request_id(graph_emulator):
    emu = graph_emulator
    client = GraphClient(params(emu))
    missing = '0badc0de-0000-4000-8000-000000000000'
    with pytest.raises(GraphError) as exc:
        client.get('/groups/%s' % missing)
    err = exc.value
    logged = graph_log(emu)[-1]
    assert err.status == 404 and err.code == 'Request_ResourceNotFound'
    assert err.request_id == logged['request_id'] and err.request_id in str(err)
    assert 'GET /v1.0/groups/%s' % missing in str(err)
    client = GraphClient(params(emu, client_id=emu.noperm_client_id))
    with pytest.raises(GraphError) as exc:
        client.get('/groups')
    assert exc.value.status == 403 and 'Authorization_RequestDenied' in str(exc.value)
    assert 'Insufficient privileges' in str(exc.value)


def test_token_refreshed_once_after_401(graph_emulator):
    emu = graph_emulator
    client = GraphClient(params(emu))
    client.get('/organization')
    emu.admin.expire_tokens()
    assert client.get('/organization')['value']
    assert client.stats['token_refreshes'] == 1
    assert emu.admin.counters()['tokens_issued'] == 2
    statuses = [e['status'] for e in graph_log(emu)]
    assert statuses[-2:] == [401, 200]


# -- retries -----------------------------------------------------------------------------------------

@pytest.mark.parametrize('retry_after,fmt', [(1, 'seconds'), (0.6, 'seconds'), (2, 'http-date')])
def test_retry_after_is_honoured(graph_emulator, retry_after, fmt):
    emu = graph_emulator
    client = GraphClient(params(emu))
    client.get('/organization')
    emu.admin.add_fault(status=429, count=2, retry_after=retry_after, retry_after_format=fmt, match='/organization')
    assert client.get('/organization')['value']
    delays = [d for d in emu.admin.retry_delays() if d['status'] == 429]
    assert len(delays) == 2
    # An HTTP-date has whole-second resolution: the wait may be up to one second shorter.
    floor = retry_after - (1.0 if fmt == 'http-date' else 0.0)
    assert all(d['delay'] >= floor - 0.05 for d in delays), delays
    assert client.stats['throttled'] == 2 and client.stats['retries'] == 2


def test_503_without_retry_after_backs_off_then_succeeds(graph_emulator):
    emu = graph_emulator
    client = GraphClient(params(emu, graph_backoff_base=0.2))
    client.get('/organization')
    emu.admin.add_fault(status=503, count=2, match='/organization')
    assert client.get('/organization')['value']
    delays = [d['delay'] for d in emu.admin.retry_delays() if d['status'] == 503]
    assert len(delays) == 2 and delays[0] >= 0.1 - 0.05 and delays[1] >= 0.2 - 0.05


def test_retries_are_bounded_by_an_explicit_count_and_by_the_time_budget(graph_emulator):
    emu = graph_emulator
    client = GraphClient(params(emu, graph_max_retries=2))
    client.get('/organization')
    emu.admin.add_fault(status=429, count=None, retry_after=0.1, match='/organization')
    start = len(emu.admin.requests())
    with pytest.raises(GraphError) as exc:
        client.get('/organization')
    assert exc.value.status == 429 and exc.value.request_id and 'gave up after 3 attempts' in str(exc.value)
    assert 'graph_max_retries=2 reached' in str(exc.value) and exc.value.details['attempts'] == 3
    assert len(graph_log(emu, start)) == 3
    emu.admin.clear_faults()
    emu.admin.add_fault(status=429, count=None, retry_after=30, match='/organization')
    for budget in (dict(graph_retry_budget=5), dict(graph_max_retry_wait=5)):   # the former name still works
        client = GraphClient(params(emu, graph_max_retries=None, **budget))
        start = len(emu.admin.requests())
        with pytest.raises(GraphError) as exc:
            client.get('/organization')
        assert 'Retry-After 30s is more than the' in str(exc.value) and 'graph_retry_budget=5s' in str(exc.value)
        assert len(graph_log(emu, start)) == 1   # failed at once instead of waiting 30 s


def test_batch_sub_requests_are_retried_within_the_budget_and_fail_saying_so(graph_emulator):
    """A $batch sub-request throttled for good: retried while its Retry-After fits graph_retry_budget,
    then the failure names the sub-request, the attempts and the wait; the emulator saw exactly those."""
    emu = graph_emulator
    client = GraphClient(params(emu, graph_max_retries=None, graph_retry_budget=3))
    gid = [g['id'] for g in client.iter_pages('/groups', {'$select': 'id'})][0]
    emu.admin.add_fault(status=429, count=None, retry_after=1, match='/groups/%s/members' % gid)
    start = len(emu.admin.requests())
    with pytest.raises(GraphError) as exc:
        client.batch_collect([(gid, '/groups/%s/members?$select=id&$top=999' % gid)])
    text = str(exc.value)
    assert '($batch sub-request)' in text and 'HTTP 429' in text and 'gave up after' in text, text
    items = [e for e in emu.admin.requests(start) if e['kind'] == 'batch_item']
    assert exc.value.details['attempts'] == len(items) >= 2
    assert 'graph_retry_budget=3s' in text


# -- $batch ------------------------------------------------------------------------------------------

def test_batch_request_count_near_the_floor_and_next_links_in_later_batches(graph_emulator_factory):
    tenant = build_tenant(groups=45, users=1500, memberships=2000, nesting_depth=1, big_group_members=1200, seed=3)
    emu = graph_emulator_factory(tenant, settings={'throttle_enabled': False})
    client = GraphClient(params(emu))
    ids = [g['id'] for g in tenant['groups']]
    start = len(emu.admin.requests())
    reqs = [(gid, '/groups/%s/members?$select=id&$top=999' % gid) for gid in ids]
    results, errors = client.batch_collect(reqs)
    assert not errors
    for gid in ids:
        assert sorted(m['id'] for m in results[gid]) == sorted(tenant['memberships'].get(gid, []))
    batches = [e for e in emu.admin.requests(start) if e['kind'] == 'batch']
    # 45 groups: 3 batches, plus one for the second page of the 1,200-member group
    assert len(batches) == math.ceil(len(ids) / 20) + 1
    assert client.stats['batches'] == len(batches) and client.stats['requests'] == len(batches)
    items = [e for e in emu.admin.requests(start) if e['kind'] == 'batch_item']
    assert len(items) == len(ids) + 1 and all(e['priority'] == 'low' for e in items)


def test_batch_retries_only_throttled_sub_requests_after_their_retry_after(graph_emulator):
    emu = graph_emulator
    client = GraphClient(params(emu))
    groups = [g['id'] for g in client.iter_pages('/groups', {'$select': 'id'})]
    emu.admin.add_fault(status=429, count=3, retry_after=1, match='/members')
    start = len(emu.admin.requests())
    results, unused = client.batch_collect([(g, '/groups/%s/members?$select=id&$top=999' % g) for g in groups])
    assert len(results) == len(groups)
    items = [e for e in emu.admin.requests(start) if e['kind'] == 'batch_item']
    assert len(items) == len(groups) + 3                  # only the 3 throttled ones were sent again
    assert len([e for e in emu.admin.requests(start) if e['kind'] == 'batch']) == 2
    delays = [d for d in emu.admin.retry_delays() if d['status'] == 429]
    assert len(delays) == 3 and all(d['delay'] >= 1 - 0.05 for d in delays), delays


def test_token_bucket_throttling_is_ridden_out(graph_emulator_factory):
    tenant = build_tenant(groups=60, users=400, memberships=1500, nesting_depth=1, seed=5)
    emu = graph_emulator_factory(tenant, settings={'throttle_limit': 60, 'throttle_window': 1.0})
    client = GraphClient(params(emu))
    groups = entra_reader.read_groups(client, all_groups=True, members='direct')
    assert len(groups) > 20
    assert client.stats['throttled'] > 0
    delays = [d for d in emu.admin.retry_delays() if d['status'] == 429 and d['retry_after'] is not None]
    assert delays and all(d['delay'] >= float(d['retry_after']) - 0.05 for d in delays)


# -- delta -------------------------------------------------------------------------------------------

def test_delta_round_merges_split_groups_and_then_returns_changes(graph_emulator_factory):
    tenant = build_tenant(groups=10, users=600, memberships=300, nesting_depth=1, big_group_members=450, seed=4)
    emu = graph_emulator_factory(tenant, settings={'delta_page_links': 100, 'delta_page_objects': 3})
    client = GraphClient(params(emu))
    select = ['displayName', 'securityEnabled', 'members']
    changes, link = client.delta_groups(select)
    assert set(changes) == set(g['id'] for g in tenant['groups'])
    big = tenant['groups'][0]['id']
    assert sorted(m['id'] for m in changes[big]['members@delta']) == sorted(tenant['memberships'][big])
    # changes since the link
    gone = tenant['groups'][1]['id']
    victim = tenant['memberships'][big][0]
    newcomer = [u['id'] for u in tenant['users'] if u['id'] not in tenant['memberships'][big]][0]
    emu.admin.remove_members(big, [victim])
    emu.admin.add_members(big, [newcomer])
    emu.admin.delete_group(gone)
    emu.admin.update_group(tenant['groups'][2]['id'], displayName='Renamed')
    changes2, link2 = client.delta_groups(select, delta_link=link)
    assert link2 != link
    assert changes2[gone]['@removed']
    md = dict((m['id'], m) for m in changes2[big]['members@delta'])
    assert '@removed' in md[victim] and '@removed' not in md[newcomer]
    assert changes2[tenant['groups'][2]['id']]['displayName'] == 'Renamed'
    changes3, unused = client.delta_groups(select, delta_link=link2)
    assert changes3 == {}


@pytest.mark.parametrize('how,status', [('expire', 400), ('reset', 410)])
def test_rejected_delta_link_raises_resync(graph_emulator, how, status):
    emu = graph_emulator
    client = GraphClient(params(emu))
    unused, link = client.delta_groups(['displayName', 'members'])
    getattr(emu.admin, 'expire_delta_tokens' if how == 'expire' else 'reset_delta_tokens')()
    with pytest.raises(DeltaResyncRequired) as exc:
        client.delta_groups(['displayName', 'members'], delta_link=link)
    assert exc.value.status == status and exc.value.request_id
    assert client.stats['retries'] == 0


def test_managed_identity_on_app_service(graph_emulator, monkeypatch):
    emu = graph_emulator
    monkeypatch.setenv('IDENTITY_ENDPOINT', emu.identity_endpoint)
    monkeypatch.setenv('IDENTITY_HEADER', emu.settings['identity_header'])
    client = GraphClient(params(emu, tenant_id=None, client_id=None, client_secret=None))   # auto -> managed identity
    assert client.auth.method == 'managed_identity'
    assert client.get('/organization')['value']
    # (the emulator logs the App Service endpoint with kind 'imds', its README says 'identity')
    assert [e for e in emu.admin.requests() if e['path'].startswith('/msi/token')][-1]['status'] == 200


def test_read_timeout_is_retried(graph_emulator):
    emu = graph_emulator
    client = GraphClient(params(emu, graph_timeout=1, graph_backoff_base=0.2))
    client.get('/organization')
    emu.admin.add_fault(status=None, latency=2.5, count=1, match='/organization')
    assert client.get('/organization')['value']
    assert client.stats['retries'] == 1
    client = GraphClient(params(emu, graph_timeout=1, graph_max_retries=0))
    emu.admin.add_fault(status=None, latency=2.5, count=1, match='/organization')
    with pytest.raises(GraphError) as exc:
        client.get('/organization')
    assert 'GET /v1.0/organization' in str(exc.value) and 'Timeout' in str(exc.value)
