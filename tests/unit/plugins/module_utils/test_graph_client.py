"""Pure helpers of graph_client and graph_auth: Retry-After parsing, backoff bounds, delta page
merging, error formatting, URL building, clouds and certificate loading (no network)."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import datetime
import email.utils
import json
import random

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import graph_auth
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.errors import CloudSyncError
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.graph_client import (
    GraphError, DeltaResyncRequired, backoff_delay, format_graph_error, give_up_text, merge_delta_pages, odata_quote,
    parse_retry_after, relative_url, retry_delay,
)


# -- Retry-After -------------------------------------------------------------------------------

@pytest.mark.parametrize('value,expected', [
    ('5', 5.0), ('0', 0.0), ('2.5', 2.5), (' 7 ', 7.0), ('0.25', 0.25), (3, 3.0), ('-4', 0.0),
])
def test_retry_after_seconds(value, expected):
    assert parse_retry_after(value) == expected


@pytest.mark.parametrize('value', [None, '', 'soon', 'nan', 'inf', 'Mon, 99 Foo 2026'])
def test_retry_after_unparsable_is_none(value):
    assert parse_retry_after(value) is None


def test_retry_after_http_date_in_future_and_past():
    now = 1_800_000_000.0
    future = email.utils.formatdate(now + 30, usegmt=True)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after(future, now=now) == pytest.approx(30.0, abs=1.0)
    assert parse_retry_after(past, now=now) == 0.0


def test_retry_after_http_date_rfc850_and_asctime_forms():
    when = datetime.datetime(2026, 11, 23, 22, 0, 10, tzinfo=datetime.timezone.utc)
    now = when.timestamp() - 10
    assert parse_retry_after('Monday, 23-Nov-26 22:00:10 GMT', now=now) == pytest.approx(10.0, abs=1.0)
    assert parse_retry_after('Mon Nov 23 22:00:10 2026', now=now) == pytest.approx(10.0, abs=1.0)


# -- backoff -----------------------------------------------------------------------------------

@given(attempt=st.integers(min_value=0, max_value=40), base=st.floats(min_value=0.01, max_value=5),
       cap=st.floats(min_value=0.1, max_value=120), r=st.floats(min_value=0, max_value=1))
def test_backoff_within_half_and_full_ceiling(attempt, base, cap, r):
    delay = backoff_delay(attempt, base=base, cap=cap, rand=lambda: r)
    ceiling = min(cap, base * 2 ** attempt)
    assert ceiling / 2 - 1e-9 <= delay <= ceiling + 1e-9
    assert delay <= cap + 1e-9


def test_backoff_grows_and_has_jitter():
    rng = random.Random(1)
    firsts = set(round(backoff_delay(0, rand=rng.random), 6) for _attempt in range(20))
    assert len(firsts) > 1, 'no jitter'
    assert backoff_delay(3, rand=lambda: 0.0) == 4.0   # ceiling 8, lower half bound
    assert backoff_delay(3, rand=lambda: 1.0) == 8.0
    assert backoff_delay(30, cap=60, rand=lambda: 1.0) == 60.0


# -- errors ------------------------------------------------------------------------------------

def test_format_graph_error_names_request_code_message_and_ids():
    text = format_graph_error('GET', '/v1.0/groups/x/members', 404, 'Request_ResourceNotFound',
                              "Resource 'x' does not exist.", 'rid-1', 'crid-2', '2026-11-23T22:00:00')
    assert text == ("Graph GET /v1.0/groups/x/members failed: HTTP 404 Request_ResourceNotFound: Resource 'x' does not "
                    "exist. (request-id rid-1, client-request-id crid-2, date 2026-11-23T22:00:00)")


def test_format_graph_error_without_envelope():
    assert format_graph_error('POST', '/v1.0/$batch', 502) == 'Graph POST /v1.0/$batch failed: HTTP 502'


def test_graph_error_is_cloudsync_error_with_fields_and_fail_kwargs():
    err = GraphError('msg', status=403, code='Authorization_RequestDenied', message='Insufficient privileges',
                     request_id='r', client_request_id='c', method='GET', url='/v1.0/groups')
    assert isinstance(err, CloudSyncError)
    assert (err.status, err.code, err.request_id, err.method, err.url) == (403, 'Authorization_RequestDenied', 'r', 'GET', '/v1.0/groups')
    kw = err.to_fail_kwargs()
    assert kw['msg'] == 'msg' and kw['status'] == 403 and kw['request_id'] == 'r'
    json.dumps(kw)
    assert issubclass(DeltaResyncRequired, GraphError)


# -- URLs and OData ----------------------------------------------------------------------------

def test_odata_quote_doubles_single_quotes():
    assert odata_quote("O'Brien's team") == "'O''Brien''s team'"
    assert odata_quote('plain') == "'plain'"


def test_relative_url_keeps_dollar_and_encodes_spaces_and_ampersands():
    url = relative_url('/groups', {'$filter': "displayName eq 'R&D #1 50%'", '$select': 'id,displayName', '$top': 999})
    assert url == "/groups?$filter=displayName%20eq%20'R%26D%20%231%2050%25'&$select=id,displayName&$top=999"
    assert relative_url('/groups/x', None) == '/groups/x'


# -- delta merge -------------------------------------------------------------------------------

def _user(uid, removed=False):
    entry = {'@odata.type': '#microsoft.graph.user', 'id': uid}
    if removed:
        entry['@removed'] = {'reason': 'deleted'}
    return entry


def test_delta_merge_split_group_accumulates_members():
    pages = [
        {'value': [{'id': 'G1', 'displayName': 'Big', 'members@delta': [_user('a'), _user('b')]}]},
        {'value': []},
        {'value': [{'id': 'g1', 'members@delta': [_user('c')]}, {'id': 'g2', 'displayName': 'Small'}]},
    ]
    merged = merge_delta_pages(pages)
    assert set(merged) == {'g1', 'g2'}
    assert merged['g1']['displayName'] == 'Big'
    assert sorted(m['id'] for m in merged['g1']['members@delta']) == ['a', 'b', 'c']
    assert 'members@delta' not in merged['g2']


def test_delta_merge_replays_are_idempotent_and_order_free():
    base = [
        {'value': [{'id': 'g1', 'displayName': 'X', 'members@delta': [_user('a'), _user('b', removed=True)]}]},
        {'value': [{'id': 'g1', 'members@delta': [_user('c')]}]},
    ]
    once = merge_delta_pages(base)
    twice = merge_delta_pages(base + base)
    reversed_ = merge_delta_pages(list(reversed(base)))

    def norm(m):
        return sorted((e['id'], '@removed' in e) for e in m['g1']['members@delta'])
    assert norm(once) == norm(twice) == norm(reversed_) == [('a', False), ('b', True), ('c', False)]


def test_delta_merge_removed_group_and_merge_into_existing():
    merged = merge_delta_pages([{'value': [{'id': 'g9', '@removed': {'reason': 'deleted'}}]}])
    assert merged['g9']['@removed'] == {'reason': 'deleted'}
    more = merge_delta_pages([{'value': [{'id': 'g9', 'members@delta': [_user('z')]}]}], merged)
    assert more is merged and [m['id'] for m in merged['g9']['members@delta']] == ['z']


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(['g1', 'g2', 'g3']), st.sampled_from(['a', 'b', 'c', 'd'])), max_size=30),
       st.randoms())
def test_delta_merge_any_split_equals_single_page(links, rnd):
    """However a round's member additions are spread over pages and replayed, the merge is the same."""
    items = [{'id': g, 'members@delta': [_user(u)]} for g, u in links]
    single = merge_delta_pages([{'value': items}])
    shuffled = list(items) + list(items[: len(items) // 2])
    rnd.shuffle(shuffled)
    pages = [{'value': shuffled[i:i + 3]} for i in range(0, len(shuffled), 3)]
    split = merge_delta_pages(pages)
    assert set(single) == set(split)
    for gid in single:
        assert sorted(m['id'] for m in single[gid]['members@delta']) == sorted(m['id'] for m in split[gid]['members@delta'])


# -- clouds and auth options -------------------------------------------------------------------

@pytest.mark.parametrize('cloud,login,graph', [
    ('public', 'https://login.microsoftonline.com', 'https://graph.microsoft.com'),
    ('usgov', 'https://login.microsoftonline.us', 'https://graph.microsoft.us'),
    ('usgov_dod', 'https://login.microsoftonline.us', 'https://dod-graph.microsoft.us'),
    ('china', 'https://login.partner.microsoftonline.cn', 'https://microsoftgraph.chinacloudapi.cn'),
])
def test_clouds(cloud, login, graph):
    assert graph_auth.endpoints({'cloud': cloud}) == (login, graph, graph)


@pytest.mark.parametrize('name,cloud', [('AzureCloud', 'public'), ('AzureUSGovernment', 'usgov'), ('AzureChinaCloud', 'china')])
def test_azcollection_cloud_environment_names(name, cloud):
    """azure.azcollection / AWX cloud_environment names (msrestazure's cloud names) map onto ours."""
    assert graph_auth.endpoints({'cloud': name}) == graph_auth.endpoints({'cloud': cloud})


@pytest.mark.parametrize('name', ['AzureGermanCloud', 'azurecloud', 'Mars'])
def test_unknown_cloud_names_are_refused_naming_the_choices(name):
    with pytest.raises(graph_auth.GraphAuthError) as exc:
        graph_auth.endpoints({'cloud': name})
    assert name in str(exc.value) and 'AzureUSGovernment' in str(exc.value) and 'usgov_dod' in str(exc.value)


def test_overrides_change_where_not_the_token_resource():
    got = graph_auth.endpoints({'cloud': 'usgov', 'authority_host': 'https://login.example.test/',
                                'graph_endpoint': 'https://graph-proxy.example.test'})
    assert got == ('https://login.example.test', 'https://graph-proxy.example.test', 'https://graph.microsoft.us')


@pytest.mark.parametrize('option,value', [('authority_host', 'http://login.example.test'),
                                          ('graph_endpoint', 'http://graph.example.test'),
                                          ('graph_endpoint', 'graph.microsoft.com'),
                                          ('graph_endpoint', 'https://graph.microsoft.com/v1.0')])
def test_overrides_must_be_https_without_version(option, value):
    with pytest.raises(graph_auth.GraphAuthError) as exc:
        graph_auth.endpoints({option: value})
    assert option in str(exc.value)


@pytest.mark.parametrize('params,environ,method', [
    ({'client_certificate_path': '/x.pem', 'client_secret': 's'}, {}, 'certificate'),
    ({'client_secret': 's'}, {'IDENTITY_ENDPOINT': 'http://x', 'IDENTITY_HEADER': 'h'}, 'client_secret'),
    ({'auth_method': 'client_secret', 'client_certificate_path': '/x'}, {}, 'client_secret'),
    ({'auth_method': 'managed_identity'}, {}, 'managed_identity'),
    ({'managed_identity_client_id': 'c'}, {}, 'managed_identity'),
    ({}, {'IDENTITY_ENDPOINT': 'http://x', 'IDENTITY_HEADER': 'h'}, 'managed_identity'),       # App Service
    ({}, {'MSI_ENDPOINT': 'http://x', 'MSI_SECRET': 's'}, 'managed_identity'),                # Azure ML
    ({}, {'IDENTITY_ENDPOINT': 'http://x', 'IMDS_ENDPOINT': 'http://y'}, 'managed_identity'),  # Azure Arc
])
def test_auto_method(params, environ, method):
    assert graph_auth.choose_method(params, environ) == method


@pytest.mark.parametrize('params,environ,extra', [
    ({}, {}, None),
    ({}, {'AZURE_POD_IDENTITY_AUTHORITY_HOST': 'http://127.0.0.1:1'}, None),   # moves IMDS; not a request for it
    ({}, {'IDENTITY_ENDPOINT': 'http://x'}, None),                            # half a signal
    ({'tenant_id': 't', 'client_id': 'c'}, {}, 'Found tenant_id and client_id but neither client_secret'),
    ({}, {'AZURE_AD_USER': 'u@example.test', 'AZURE_PASSWORD': 'Secret-Pw-1'}, 'AZURE_AD_USER/AZURE_PASSWORD'),
])
def test_auto_without_credentials_names_the_options_instead_of_trying_imds(params, environ, extra):
    with pytest.raises(graph_auth.GraphAuthError) as exc:
        graph_auth.choose_method(params, environ)
    text = str(exc.value)
    for word in ('tenant_id', 'AZURE_TENANT_ID', 'AZURE_TENANT', 'client_id', 'AZURE_CLIENT_ID', 'client_secret',
                 'AZURE_CLIENT_SECRET', 'AZURE_SECRET', 'client_certificate_path', 'auth_method=managed_identity'):
        assert word in text
    if extra:
        assert extra in text
    assert 'Secret-Pw-1' not in text


# -- retries bounded by time -------------------------------------------------------------------------

def test_retry_after_is_honoured_whole_until_it_no_longer_fits_the_budget():
    assert retry_delay(1, 0.0, 2.0, 300) == (2.0, None)
    assert retry_delay(50, 290.0, 2.0, 300) == (2.0, None)          # no count bound by default
    delay, why = retry_delay(3, 4.1, 2.0, 5)
    assert delay is None and 'Retry-After 2s' in why and '0.9 s left' in why and 'graph_retry_budget=5s' in why


def test_backoff_is_clamped_to_what_is_left_and_stops_when_nothing_is():
    assert retry_delay(1, 0.0, None, 300, rand=lambda: 1.0) == (1.0, None)
    assert retry_delay(10, 299.5, None, 300, rand=lambda: 1.0) == (0.5, None)
    assert retry_delay(1, 0.0, 0.0, 300, rand=lambda: 1.0) == (1.0, None)     # Retry-After: 0 is no guidance
    delay, why = retry_delay(10, 300.0, None, 300)
    assert delay is None and 'graph_retry_budget=300s used up' in why


def test_an_explicit_count_still_caps_the_retries():
    assert retry_delay(2, 1.0, 0.1, 300, max_retries=2)[0] == 0.1
    assert retry_delay(3, 1.0, 0.1, 300, max_retries=2) == (None, 'graph_max_retries=2 reached')
    assert retry_delay(1, 0.0, 0.1, 300, max_retries=0) == (None, 'graph_max_retries=0 reached')


@given(st.integers(1, 200), st.floats(0, 1000), st.one_of(st.none(), st.floats(0, 1000)), st.integers(0, 1000))
@settings(max_examples=300, deadline=None)
def test_a_retry_never_waits_past_the_budget(attempts, elapsed, retry_after, budget):
    delay, why = retry_delay(attempts, elapsed, retry_after, budget)
    assert (delay is None) != (why is None)
    if delay is not None:
        assert 0 < delay and elapsed + delay <= budget + 1e-9


def test_give_up_text_states_attempts_time_and_wait():
    assert give_up_text(3, 4.12, 4.0, 'why') == 'gave up after 3 attempts in 4.1 s (waited 4.0 s): why'


def test_secret_method_needs_tenant_and_client_and_never_echoes_the_secret():
    with pytest.raises(graph_auth.GraphAuthError) as exc:
        graph_auth.GraphAuth({'auth_method': 'client_secret', 'client_secret': 'SuperSecret!1', 'client_id': 'c'})
    assert 'tenant_id' in str(exc.value) and 'SuperSecret' not in str(exc.value)


# -- certificates ------------------------------------------------------------------------------

def _make_cert(tmp_path, password=None, pkcs12_file=False):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import pkcs12
    from cryptography.x509.oid import NameOID
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, 'unit-test')])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    enc = serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
    if pkcs12_file:
        path = tmp_path / 'c.pfx'
        path.write_bytes(pkcs12.serialize_key_and_certificates(b'c', key, cert, None, enc))
    else:
        path = tmp_path / 'c.pem'
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
                         + cert.public_bytes(serialization.Encoding.PEM))
    return str(path), cert.fingerprint(hashes.SHA1()).hex().upper(), cert.fingerprint(hashes.SHA256()).hex().upper()


@pytest.mark.parametrize('password,pfx', [(None, False), ('p@ss', False), ('p@ss', True), (None, True)])
def test_load_certificate_thumbprints(tmp_path, password, pfx):
    path, sha1, sha256 = _make_cert(tmp_path, password, pfx)
    info = graph_auth.load_certificate(path, password)
    assert info['thumbprint_sha1'] == sha1 and info['thumbprint_sha256'] == sha256
    assert info['private_key_pem'].startswith('-----BEGIN PRIVATE KEY-----')
    assert 'BEGIN CERTIFICATE' in info['certificate_pem']


def test_load_certificate_errors(tmp_path):
    path, unused_sha1, unused_sha256 = _make_cert(tmp_path, 'right')
    with pytest.raises(graph_auth.GraphAuthError, match='encrypted'):
        graph_auth.load_certificate(path, None)
    with pytest.raises(graph_auth.GraphAuthError, match='wrong client_certificate_password') as exc:
        graph_auth.load_certificate(path, 'wrong')
    assert 'wrong' not in str(exc.value).replace('wrong client_certificate_password', '')
    only_cert = tmp_path / 'only.pem'
    only_cert.write_text(open(path).read().split('-----END ENCRYPTED PRIVATE KEY-----')[1])
    with pytest.raises(graph_auth.GraphAuthError, match='No private key'):
        graph_auth.load_certificate(str(only_cert))
    with pytest.raises(graph_auth.GraphAuthError, match='Cannot read'):
        graph_auth.load_certificate(str(tmp_path / 'missing.pem'))


# -- URL handling of GraphClient (no request is sent: msal is only built on the first token) --------

def _client(**kw):
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.graph_client import GraphClient
    p = dict(tenant_id='t', client_id='c', client_secret='s')
    p.update(kw)
    return GraphClient(p)


def test_paths_get_the_version_and_links_are_kept_whole():
    c = _client()
    assert c.url('/groups') == 'https://graph.microsoft.com/v1.0/groups'
    assert c.url('/beta/users', {'$select': 'id'}) == 'https://graph.microsoft.com/beta/users?$select=id'
    assert c.url('/groups/x/members', version='beta') == 'https://graph.microsoft.com/beta/groups/x/members'
    link = 'https://graph.microsoft.com/v1.0/groups?$top=999&$skiptoken=RFNwdAIAAQAAAC%2BA'
    assert c.url(link) == link


def test_links_are_mapped_onto_an_overridden_endpoint_and_foreign_hosts_refused():
    c = _client(graph_endpoint='https://graph-proxy.example.test')
    assert c.url('https://graph.microsoft.com/v1.0/groups?$skiptoken=a') == \
        'https://graph-proxy.example.test/v1.0/groups?$skiptoken=a'
    with pytest.raises(GraphError, match='another host'):
        c.url('https://evil.example.test/v1.0/groups?$skiptoken=a')


@pytest.mark.parametrize('path,params,top,eventual', [
    ('/groups', {}, True, False),
    ('/groups/x/members', {'$select': 'id'}, True, False),
    ('/groups/x/members/microsoft.graph.user', {}, True, False),
    ('/subscribedSkus', {}, False, False),
    ('/groups/delta', {}, False, False),
    ('/groups', {'$top': '5'}, False, False),
    ('/groups', {'$filter': "not(groupTypes/any(c:c eq 'Unified'))"}, True, True),
    ('/groups', {'$filter': "displayName ne 'x'"}, True, True),
    ('/groups', {'$filter': "endswith(mail,'@x')"}, True, True),
    ('/groups', {'$filter': "securityEnabled eq true", '$orderby': 'displayName'}, True, True),
    ('/groups', {'$count': 'true'}, True, True),
    ('/groups', {'$filter': "displayName eq 'Internet'"}, True, False),
])
def test_collection_params(path, params, top, eventual):
    got, headers = _client().collection_params(path, params)
    assert (got.get('$top') == '999') is top or (not top and got.get('$top') in (None, '5'))
    assert (headers.get('ConsistencyLevel') == 'eventual') is eventual
    if eventual:
        assert got['$count'] == 'true'


def test_a_run_without_a_certificate_does_not_import_cryptography():
    """cryptography serves certificate credentials only: importing the modules that read Graph must
    not load it (45 ms of every run's start and 10.7 MB of its memory), while graph_auth still
    reports whether it is installed."""
    import os
    import subprocess
    import sys
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))   # where conftest found the collection
    code = ('import sys\n'
            'from ansible_collections.hybrid_identity.cloud_sync.plugins.modules import ad_group_writeback, entra_group_info\n'
            'from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import graph_auth, graph_client\n'
            'print(sorted(m for m in sys.modules if m.split(".")[0] == "cryptography"), graph_auth.HAS_CRYPTOGRAPHY)\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip() == '[] True'


def test_a_certificate_credential_imports_cryptography_when_it_is_loaded(tmp_path):
    """load_certificate gets its cryptography names on first use (PKCS#12 parsing reaches them)."""
    path = tmp_path / 'not-a-certificate.pfx'
    path.write_bytes(b'\x00\x01')
    with pytest.raises(graph_auth.GraphAuthError, match='Cannot read .* as PEM or PKCS#12'):
        graph_auth.load_certificate(str(path))
