# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure parts of ad_client: server parsing, option validation, value decoding, error text."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import subprocess
import sys
import textwrap

import pytest

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import ad_client
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_client import (
    ADError, ServerSpec, decode_values, first, format_ldap_error, kerberos_principal, normalize_changes,
    parse_range, parse_server, parse_servers, scrub, validate_params, values,
)
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.errors import CloudSyncError


def params(**kw):
    p = dict(domain_controllers=['dc1.corp.example.test'], ad_tls_mode='ldaps', ad_allow_plaintext=False,
             ad_ca_file=None, ad_validate_certs=True, ad_auth='simple', ad_user='admin@corp.example.test',
             ad_password='S3cret!pass', ad_port=None, global_catalog=None, ad_timeout=10, ad_page_size=1000)
    p.update(kw)
    return p


# -- server parsing ---------------------------------------------------------------------------

@pytest.mark.parametrize('entry, mode, port, gc, expected', [
    ('dc1.corp.example.test', 'ldaps', None, False, ('dc1.corp.example.test', 636, 'ldaps')),
    ('dc1', 'starttls', None, False, ('dc1', 389, 'starttls')),
    ('dc1', 'none', None, False, ('dc1', 389, 'none')),
    ('dc1', 'ldaps', None, True, ('dc1', 3269, 'ldaps')),
    ('dc1', 'starttls', None, True, ('dc1', 3268, 'starttls')),
    ('dc1', 'none', None, True, ('dc1', 3268, 'none')),
    ('dc1:1636', 'ldaps', None, False, ('dc1', 1636, 'ldaps')),
    ('dc1', 'ldaps', 10636, False, ('dc1', 10636, 'ldaps')),
    ('dc1:1636', 'ldaps', 10636, False, ('dc1', 1636, 'ldaps')),     # the entry's port wins over ad_port
    ('127.0.0.2', 'ldaps', None, False, ('127.0.0.2', 636, 'ldaps')),
    ('127.0.0.2:3269', 'ldaps', None, False, ('127.0.0.2', 3269, 'ldaps')),
    ('ldaps://dc1.corp.example.test', 'starttls', None, False, ('dc1.corp.example.test', 636, 'ldaps')),
    ('LDAPS://dc1:6360', 'none', None, False, ('dc1', 6360, 'ldaps')),
    ('ldap://dc1', 'ldaps', None, False, ('dc1', 389, 'starttls')),  # ldap:// never silently drops TLS
    ('ldap://dc1', 'starttls', None, False, ('dc1', 389, 'starttls')),
    ('ldap://dc1', 'none', None, False, ('dc1', 389, 'none')),
    ('ldap://dc1:3268/DC=corp,DC=example,DC=test', 'starttls', None, False, ('dc1', 3268, 'starttls')),
    ('[::1]', 'ldaps', None, False, ('::1', 636, 'ldaps')),
    ('[fd00::2]:1636', 'ldaps', None, False, ('fd00::2', 1636, 'ldaps')),
    ('fd00::2', 'ldaps', None, False, ('fd00::2', 636, 'ldaps')),
    ('  dc1  ', 'ldaps', None, False, ('dc1', 636, 'ldaps')),
])
def test_parse_server(entry, mode, port, gc, expected):
    spec = parse_server(entry, tls_mode=mode, port=port, global_catalog=gc)
    assert (spec.host, spec.port, spec.tls_mode) == expected
    assert spec.use_ssl == (expected[2] == 'ldaps')


@pytest.mark.parametrize('entry', ['', '   ', 'dc1:', 'dc1:0', 'dc1:65536', 'dc1:ldap', '[::1', '[::1]x', ':636', 'ldaps://'])
def test_parse_server_rejects(entry):
    with pytest.raises(ValueError):
        parse_server(entry)


def test_server_spec_str_and_equality():
    assert str(ServerSpec('127.0.0.2', 636, 'ldaps')) == '127.0.0.2:636 (ldaps)'
    assert str(ServerSpec('::1', 636, 'ldaps')) == '[::1]:636 (ldaps)'
    assert ServerSpec('a', 1, 'ldaps') == ServerSpec('a', 1, 'ldaps')
    assert ServerSpec('a', 1, 'ldaps') != ServerSpec('a', 1, 'starttls')


def test_parse_servers_keeps_order_splits_commas_and_drops_duplicates():
    specs = parse_servers(['dc2,dc1', 'dc2', 'dc3:1636'])
    assert [(s.host, s.port) for s in specs] == [('dc2', 636), ('dc1', 636), ('dc3', 1636)]
    assert [s.host for s in parse_servers('dc1, dc2')] == ['dc1', 'dc2']


def test_parse_servers_names_the_bad_entry():
    with pytest.raises(ADError) as err:
        parse_servers(['dc1', 'dc2:notaport'])
    assert "'dc2:notaport'" in err.value.msg


# -- option validation ------------------------------------------------------------------------

def test_validate_params_defaults():
    specs = validate_params(params())
    assert specs == [ServerSpec('dc1.corp.example.test', 636, 'ldaps')]


def test_validate_params_ad_port():
    assert validate_params(params(ad_port=1636))[0].port == 1636
    with pytest.raises(ADError, match='ad_port'):
        validate_params(params(ad_port=70000))


def test_no_domain_controller():
    for dcs in (None, []):
        with pytest.raises(ADError, match='domain_controllers'):
            validate_params(params(domain_controllers=dcs))


@pytest.mark.parametrize('auth', ['simple', 'ntlm'])
def test_plaintext_refused_without_allow(auth):
    with pytest.raises(ADError, match='ad_allow_plaintext'):
        validate_params(params(ad_tls_mode='none', ad_auth=auth, ad_user='CORP\\admin'))


@pytest.mark.parametrize('auth', ['simple', 'ntlm'])
def test_password_bind_never_in_clear_text(auth):
    with pytest.raises(ADError) as err:
        validate_params(params(ad_tls_mode='none', ad_allow_plaintext=True, ad_auth=auth, ad_user='CORP\\admin'))
    assert 'clear text' in err.value.msg
    assert 'S3cret!pass' not in err.value.msg


def test_ldap_url_with_tls_none_is_plain_and_refused_for_simple():
    with pytest.raises(ADError, match='clear text'):
        validate_params(params(domain_controllers=['ldap://dc1'], ad_tls_mode='none', ad_allow_plaintext=True))


def test_kerberos_may_run_without_tls_when_allowed():
    specs = validate_params(params(ad_tls_mode='none', ad_allow_plaintext=True, ad_auth='kerberos'))
    assert specs[0].tls_mode == 'none' and specs[0].port == 389


def test_kerberos_without_credentials_uses_the_cache():
    assert validate_params(params(ad_auth='kerberos', ad_user=None, ad_password=None))


@pytest.mark.parametrize('auth', ['simple', 'ntlm'])
def test_password_auth_needs_credentials(auth):
    with pytest.raises(ADError, match='needs ad_user and ad_password'):
        validate_params(params(ad_auth=auth, ad_user=None, ad_password=None))


def test_user_and_password_together():
    with pytest.raises(ADError, match='together'):
        validate_params(params(ad_password=None))
    with pytest.raises(ADError, match='together'):
        validate_params(params(ad_user=None))


def test_ntlm_user_form():
    validate_params(params(ad_auth='ntlm', ad_user='CORP\\admin'))
    validate_params(params(ad_auth='ntlm', ad_user='admin@corp.example.test'))
    with pytest.raises(ADError, match='DOMAIN'):
        validate_params(params(ad_auth='ntlm', ad_user='CN=admin,CN=Users,DC=corp'))


def test_kerberos_user_form():
    with pytest.raises(ADError, match='principal'):
        validate_params(params(ad_auth='kerberos', ad_user='admin'))


@pytest.mark.parametrize('name', ['ad_timeout', 'ad_page_size'])
def test_positive_numbers(name):
    with pytest.raises(ADError, match=name):
        validate_params(params(**{name: 0}))


def test_missing_ca_file(tmp_path):
    with pytest.raises(ADError, match='ad_ca_file'):
        validate_params(params(ad_ca_file=str(tmp_path / 'nope.pem')))
    ca = tmp_path / 'ca.pem'
    ca.write_text('x')
    with pytest.raises(ADError, match='ad_ca_file .* is not a PEM file'):
        validate_params(params(ad_ca_file=str(ca)))
    ca.write_text('-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n')
    validate_params(params(ad_ca_file=str(ca)))


@pytest.mark.parametrize('key, value', [('ad_tls_mode', 'tls'), ('ad_auth', 'digest')])
def test_unknown_choices(key, value):
    with pytest.raises(ADError, match=key):
        validate_params(params(**{key: value}))


def test_kerberos_principal():
    assert kerberos_principal('svc@corp.example.test') == 'svc@CORP.EXAMPLE.TEST'
    assert kerberos_principal('CORP\\svc') == 'svc'
    assert kerberos_principal('Svc.Name@Corp.Example.Test') == 'Svc.Name@CORP.EXAMPLE.TEST'


# -- values -----------------------------------------------------------------------------------

def test_parse_range():
    assert parse_range('member;range=0-1499') == ('member', 0, 1499)
    assert parse_range('member;Range=1500-*') == ('member', 1500, None)
    assert parse_range('member') is None
    assert parse_range('member;binary') is None


def test_decode_values_text_binary_and_undecodable():
    guid = b'\xe1\x1a\x0f9\x8005@\x93\x97\xc4\xb4\x01J|\xc3'
    assert decode_values('objectGUID', [guid]) == [guid]
    assert decode_values('OBJECTSID', [b'\x01\x05']) == [b'\x01\x05']
    assert decode_values('mS-DS-ConsistencyGuid', [b'abc']) == [b'abc']
    assert decode_values('cn', [b'Caf\xc3\xa9']) == ['Caf\u00e9']
    assert decode_values('member;range=0-1', [b'CN=a', b'CN=b']) == ['CN=a', 'CN=b']
    assert decode_values('someBlob', [b'\xff\xfe']) == [b'\xff\xfe']
    assert decode_values('customAttr', [b'x'], binary_attributes=frozenset(['customattr'])) == [b'x']
    assert decode_values('member;range=3-*', None) == []


def test_first_and_values_are_case_insensitive():
    entry = {'dn': 'CN=x', 'attributes': {'objectGUID': [b'1'], 'member': ['a', 'b']}}
    assert first(entry, 'objectguid') == b'1'
    assert first(entry, 'OBJECTGUID') == b'1'
    assert values(entry, 'Member') == ['a', 'b']
    assert values(entry, 'missing') == []
    assert first(entry, 'missing') is None
    assert first(entry, 'missing', 'd') == 'd'


def test_normalize_changes():
    assert normalize_changes({'member': ('add', ['a', 'b'])}) == [('member', 'add', ['a', 'b'])]
    assert normalize_changes({'description': ('replace', 'x')}) == [('description', 'replace', ['x'])]
    assert normalize_changes({'description': ('replace', None)}) == [('description', 'replace', [])]
    assert normalize_changes({'member': [('add', ['a']), ('delete', ['b'])]}) == [('member', 'add', ['a']), ('member', 'delete', ['b'])]
    with pytest.raises(ADError, match='Invalid modify operation'):
        normalize_changes({'member': ('remove', ['a'])})
    with pytest.raises(ADError, match='No change'):
        normalize_changes({})
    with pytest.raises(ADError, match='no value'):
        normalize_changes({'member': ('add', [])})


# -- errors -----------------------------------------------------------------------------------

def test_ad_error_is_a_cloudsync_error_with_details():
    err = ADError('boom', operation='modify', server='127.0.0.2:636 (ldaps)', dn='CN=x', result=50,
                  result_name='insufficientAccessRights', diagnostic='00002098: SecErr')
    assert isinstance(err, CloudSyncError)
    kwargs = err.to_fail_kwargs()
    assert kwargs['msg'] == 'boom'
    assert kwargs['result'] == 50 and kwargs['result_name'] == 'insufficientAccessRights'
    assert kwargs['dn'] == 'CN=x' and kwargs['server'] == '127.0.0.2:636 (ldaps)'
    assert err.diagnostic == '00002098: SecErr'


def test_format_ldap_error():
    msg = format_ldap_error('modify', '127.0.0.2:636 (ldaps)', 'CN=G,OU=Groups,DC=corp', result_name='insufficientAccessRights',
                            result=50, diagnostic='00002098: SecErr: DSID-03150F94, problem 4003 (INSUFF_ACCESS_RIGHTS), data 0\n\x00')
    assert msg == ("LDAP modify of 'CN=G,OU=Groups,DC=corp' on 127.0.0.2:636 (ldaps) failed: insufficientAccessRights (50): "
                   "00002098: SecErr: DSID-03150F94, problem 4003 (INSUFF_ACCESS_RIGHTS), data 0")
    assert format_ldap_error('search', None, None) == 'LDAP search failed: unknown error'


def test_scrub():
    assert scrub('bind as x with S3cret!pass failed', ['S3cret!pass']) == 'bind as x with ******** failed'
    assert scrub('nothing', [None, '']) == 'nothing'


def test_describe_connect_error():
    text = ad_client.describe_connect_error(Exception(
        'socket ssl wrapping error: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: certificate has expired (_ssl.c:992)'))
    assert text.startswith('the TLS certificate could not be validated (certificate has expired)')
    assert 'ad_ca_file' in text and 'ad_validate_certs' in text
    assert 'connection refused' in ad_client.describe_connect_error(OSError('[Errno 111] Connection refused'))
    text = ad_client.describe_connect_error(Exception(
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: IP address mismatch, certificate is not valid for '127.0.0.96'. (_ssl.c:1006)"))
    assert text.startswith("the TLS certificate could not be validated (it does not name the host connected to: "
                           "IP address mismatch, certificate is not valid for '127.0.0.96')")


def test_client_refuses_plaintext_simple_bind_before_connecting():
    """connect() fails in validation: no socket is opened (the integration test proves it on the wire)."""
    client = ad_client.ADClient(params(ad_tls_mode='none', ad_allow_plaintext=True, domain_controllers=['127.0.0.1:9']))
    with pytest.raises(ADError, match='clear text'):
        client.connect()
    assert client.connection is None and client.attempts == []


def test_module_imports_without_ldap3(tmp_path):
    """The module must import (and report LDAP3_IMPORT_ERROR) where ldap3 is not installed."""
    code = textwrap.dedent('''
        import sys
        class Block(object):
            def find_spec(self, name, path=None, target=None):
                if name == 'ldap3' or name.startswith('ldap3.'):
                    raise ImportError('blocked ' + name)
                return None
        sys.meta_path.insert(0, Block())
        sys.path.insert(0, %r)
        from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import ad_client
        assert ad_client.LDAP3_IMPORT_ERROR and 'blocked' in ad_client.LDAP3_IMPORT_ERROR
        c = ad_client.ADClient(dict(domain_controllers=['dc1'], ad_user='a@b', ad_password='p'))
        try:
            c.connect()
        except ad_client.ADError as exc:
            assert 'ldap3' in exc.msg, exc.msg
        else:
            raise SystemExit('connect without ldap3 did not fail')
        print('ok')
    ''' % str(ad_client.__file__).rsplit('/ansible_collections/', 1)[0])
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == 'ok'


def test_sd_flags_control_encoding():
    assert ad_client.sd_flags_control(4) == ('1.2.840.113556.1.4.801', True, b'\x30\x03\x02\x01\x04')
    assert ad_client.sd_flags_control(0x7, criticality=False)[1:] == (False, b'\x30\x03\x02\x01\x07')
    with pytest.raises(ValueError):
        ad_client.sd_flags_control(16)


@pytest.mark.parametrize('result, changes, expected', [
    (68, [('member', 'add', ['CN=a'])], True),           # Samba: linked value already there
    (20, [('url', 'add', ['x'])], True),                 # attributeOrValueExists
    (53, [('member', 'delete', ['CN=a'])], True),        # Samba: linked value missing
    (16, [('member', 'delete', ['CN=a'])], True),        # noSuchAttribute
    (53, [('member', 'add', ['CN=a'])], False),          # unwillingToPerform on an add: a real refusal
    (68, [('member', 'delete', ['CN=a'])], False),
    (16, [('member', 'delete', [])], False),             # clearing the attribute is never rewritten
    (50, [('member', 'add', ['CN=a'])], False),          # insufficientAccessRights
    (20, [('description', 'replace', ['x'])], False),
])
def test_permissive_retry_applies(result, changes, expected):
    assert ad_client._permissive_retry_applies(ADError('x', result=result), changes) is expected


def test_value_key_compares_dns_loosely_and_other_values_exactly():
    assert ad_client._value_key('CN=A\\,B,DC=x') == ad_client._value_key('cn=a\\2cb, dc=X')
    assert ad_client._value_key('https://a') == 'https://a'
    assert ad_client._value_key(b'\x01') == b'\x01'
    assert ad_client._value_key('not=a=dn,,') == 'not=a=dn,,'


def test_global_catalog_option_gets_the_same_plaintext_rules():
    with pytest.raises(ADError, match='clear text'):
        validate_params(params(ad_tls_mode='none', ad_allow_plaintext=True, global_catalog='gc1'))
    specs = validate_params(params(global_catalog='ldap://gc1'))  # ldap:// with ldaps mode means StartTLS: allowed
    assert specs[0].tls_mode == 'ldaps'


def test_global_catalog_client_refuses_plaintext_password_bind_before_connecting():
    gc = ad_client.ADClient(params(ad_tls_mode='none', ad_allow_plaintext=True, ad_auth='simple',
                                   global_catalog='127.0.0.1:9'), global_catalog=True)
    with pytest.raises(ADError, match='clear text'):
        gc.connect()
    assert gc.connection is None


# -- an answer the server cut short ---------------------------------------------------------------

class _CutShort(object):
    """An ldap3 connection stand-in whose searches end with a non-success result code (which ldap3
    does not raise: sizeLimitExceeded and timeLimitExceeded are in its DO_NOT_RAISE_EXCEPTIONS).
    The lab's Samba DC cannot be made to cut a paged answer short."""

    def __init__(self, code, description):
        self.code, self.description = code, description
        self.requests = []
        self.response = []
        self.result = {}

    def search(self, base, ldap_filter, **kwargs):
        self.requests.append(kwargs)
        self.response = [{'type': 'searchResEntry', 'dn': 'CN=one,DC=corp', 'raw_attributes': {'cn': [b'one']}}]
        self.result = {'result': self.code, 'description': self.description, 'message': '', 'controls': {}}


@pytest.mark.parametrize('expected', [None, 1])
def test_a_search_cut_short_by_time_is_an_error_never_a_partial_list(expected):
    client = ad_client.ADClient(params())
    client.connection = _CutShort(3, 'timeLimitExceeded')
    client.server = 'dc1.corp.example.test:636 (ldaps)'
    with pytest.raises(ADError) as err:
        list(client.search('DC=corp', '(cn=*)', ['cn'], expected=expected))
    assert 'timeLimitExceeded (3)' in str(err.value) and 'part of the search' in str(err.value)
    assert 'dc1.corp.example.test' in str(err.value) and "'DC=corp'" in str(err.value)


def test_a_paged_answer_cut_short_by_size_is_an_error():
    """sizeLimitExceeded ends the unpaged try (asked again, paged); on a paged search it is an error."""
    client = ad_client.ADClient(params())
    client.connection = _CutShort(4, 'sizeLimitExceeded')
    client.server = 'dc1.corp.example.test:636 (ldaps)'
    with pytest.raises(ADError) as err:
        list(client.search('DC=corp', '(cn=*)', ['cn'], expected=1))
    assert 'sizeLimitExceeded (4)' in str(err.value)
    assert [r.get('paged_size') for r in client.connection.requests] == [None, 1000]
    assert client.connection.requests[0]['size_limit'] == 1000


class _LimitHonoured(object):
    """A server that honours the size limit of an unpaged request (as Windows does): sizeLimitExceeded
    with the first ``limit`` entries, then the paged answer in pages."""

    def __init__(self, total):
        self.total = total
        self.requests = []
        self.response = []
        self.result = {}

    def search(self, base, ldap_filter, **kwargs):
        self.requests.append(kwargs)

        def entry(i):
            return {'type': 'searchResEntry', 'dn': 'CN=e%d,DC=corp' % i, 'raw_attributes': {'cn': [b'e%d' % i]}}
        if kwargs.get('paged_size') is None:
            limit = kwargs['size_limit']
            self.response = [entry(i) for i in range(min(limit, self.total))]
            code = 4 if self.total > limit else 0
            self.result = {'result': code, 'description': 'sizeLimitExceeded' if code else 'success', 'controls': {}}
            return
        start = int(kwargs.get('paged_cookie') or b'0')
        end = min(start + kwargs['paged_size'], self.total)
        self.response = [entry(i) for i in range(start, end)]
        cookie = str(end).encode() if end < self.total else b''
        self.result = {'result': 0, 'description': 'success',
                       'controls': {ad_client.OID_PAGED_RESULTS: {'value': {'cookie': cookie}}}}


@pytest.mark.parametrize('total, requests', [(3, [None]), (10, [None]), (25, [None, 10, 10, 10])])
def test_an_estimate_within_a_page_is_one_unpaged_request_and_a_wrong_one_is_asked_again_paged(total, requests):
    client = ad_client.ADClient(params(ad_page_size=10))
    client.connection = _LimitHonoured(total)
    dns = [e['dn'] for e in client.search('DC=corp', '(cn=*)', ['cn'], expected=3)]
    assert dns == ['CN=e%d,DC=corp' % i for i in range(total)]   # each once, none from the cut answer
    assert [r.get('paged_size') for r in client.connection.requests] == requests
    assert client.stats['searches'] == len(requests)
