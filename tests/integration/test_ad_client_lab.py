# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ADClient against the lab's real Samba AD DC (forest corp), certificate validation on.

Run: .venv/bin/python -m pytest tests/integration/test_ad_client_lab.py -q
The module creates its own OU (2,500 contacts and a few groups) and tree-deletes it at the end.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import math
import os
import pathlib
import socket
import ssl
import struct
import subprocess
import uuid

import ldap3
import pytest

from listeners import Listener

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import ad_codecs
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_client import (
    ADClient, ADError, OID_PAGED_RESULTS, OID_PERMISSIVE_MODIFY, OID_SD_FLAGS, first, values,
)
from lab import pki

CONTACTS = 2500
RANGE = 100


# -- helpers ----------------------------------------------------------------------------------

def ad_params(forest, **kw):
    p = dict(domain_controllers=[forest.ip], ad_tls_mode='ldaps', ad_allow_plaintext=False, ad_ca_file=str(forest.ca_file),
             ad_validate_certs=True, ad_auth='simple', ad_user=forest.admin_upn, ad_password=forest.admin_password,
             ad_port=None, global_catalog=None, ad_timeout=10, ad_page_size=1000)
    p.update(kw)
    return p


def client(forest, range_size=None, **kw):
    return ADClient(ad_params(forest, **kw), range_size=range_size)


def sam_name(forest):
    return forest.admin_upn.split('@', 1)[0]


def lab_dir_of(forest):
    return pathlib.Path(forest.ca_file).resolve().parents[1]  # <lab_dir>/ca/ca.crt


# -- fixtures ---------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def admin(corp):
    c = client(corp)
    c.connect()
    yield c
    c.close()


@pytest.fixture(scope='module')
def contacts(corp, admin):
    """OU=adclient-contacts with CONTACTS contacts: created once in the lab and reused by later runs.

    (Samba adds about 140 objects a second and needs ~50 s to tree-delete 2,500, so the
    read-only bulk data is kept; the tests never modify it.)
    """
    ou = 'OU=adclient-contacts,%s' % corp.base_dn
    if admin.get(ou, ['ou']) is None:
        admin.add(ou, {'objectClass': ['top', 'organizationalUnit'], 'description': 'bulk read-only data of test_ad_client_lab.py'})
    have = set(e['dn'].lower() for e in admin.search(ou, '(objectClass=contact)', ['cn'], scope='onelevel'))
    dns = []
    for i in range(CONTACTS):
        dn = 'CN=Contact %04d,%s' % (i, ou)
        if dn.lower() not in have:
            admin.add(dn, {'objectClass': ['top', 'person', 'organizationalPerson', 'contact'], 'displayName': 'Contact %04d' % i})
        dns.append(dn)
    assert len(have) <= CONTACTS, 'unexpected objects in %s' % ou
    return {'dn': ou, 'contacts': dns}


@pytest.fixture(scope='module')
def test_ou(corp, admin, contacts):
    """OU=adclient-<random> for the objects a test run writes (tree-deleted at the end)."""
    ou = 'OU=adclient-%s,%s' % (uuid.uuid4().hex[:10], corp.base_dn)
    admin.add(ou, {'objectClass': ['top', 'organizationalUnit']})
    yield {'dn': ou, 'contacts': contacts['contacts'], 'contacts_ou': contacts['dn']}
    cleaner = client(corp, ad_timeout=300)
    cleaner.connect()
    cleaner.delete(ou, tree=True)
    cleaner.close()


@pytest.fixture
def group(admin, test_ou):
    """A fresh global security group in the test OU with the first two contacts as members."""
    name = 'grp-%s' % uuid.uuid4().hex[:8]
    dn = 'CN=%s,%s' % (name, test_ou['dn'])
    admin.add(dn, {'objectClass': ['top', 'group'], 'sAMAccountName': name, 'groupType': -2147483646,
                   'member': test_ou['contacts'][:2]})
    yield dn
    if admin.get(dn, ['cn']) is not None:
        admin.delete(dn)


@pytest.fixture
def kerberos_env(corp, monkeypatch, tmp_path):
    monkeypatch.setenv('KRB5_CONFIG', str(corp.krb5_conf))
    monkeypatch.setenv('KRB5CCNAME', 'FILE:%s' % (tmp_path / 'ccache'))  # empty: tests that need a ticket kinit into it
    return tmp_path / 'ccache'


# -- connecting, TLS, failover ----------------------------------------------------------------

def test_connect_by_ip_with_lab_ca_validates_and_reads_root_dse(corp):
    c = client(corp)
    c.connect()
    assert c.server == '%s:636 (ldaps)' % corp.ip
    assert c.connection.server.tls.validate == ssl.CERT_REQUIRED
    facts = c.root_dse()
    assert facts['default_naming_context'].lower() == corp.base_dn.lower()
    assert facts['configuration_naming_context'].lower() == ('CN=Configuration,' + corp.base_dn).lower()
    assert facts['schema_naming_context'].lower() == ('CN=Schema,CN=Configuration,' + corp.base_dn).lower()
    assert facts['root_domain_naming_context'].lower() == corp.base_dn.lower()
    assert facts['dns_host_name'].lower() == corp.dc_hostname.lower()
    assert c.dns_host_name.lower() == corp.dc_hostname.lower()
    for key in ('domain_functionality', 'forest_functionality', 'domain_controller_functionality'):
        assert isinstance(facts[key], int) and facts[key] >= 2
    for oid in (OID_PAGED_RESULTS, OID_PERMISSIVE_MODIFY, OID_SD_FLAGS):
        assert oid in facts['supported_controls']
    assert len(facts['supported_controls']) == len(set(facts['supported_controls']))
    assert 'GSSAPI' in facts['supported_sasl_mechanisms']
    assert facts['server_name'].startswith('CN=')
    c.close()


def test_failover_skips_a_dead_server_and_stays_on_the_next(corp):
    c = client(corp, domain_controllers=['127.0.0.99', corp.ip])
    c.connect()
    assert c.server == '%s:636 (ldaps)' % corp.ip
    assert [a[0] for a in c.attempts] == ['127.0.0.99:636 (ldaps)']
    assert 'connection refused' in c.attempts[0][1]
    first_socket = c.connection.socket
    list(c.search(corp.base_dn, '(objectClass=domain)', ['dc'], scope='base'))  # later operations use the same connection
    assert c.connection.socket is first_socket and c.server == '%s:636 (ldaps)' % corp.ip
    c.close()


def test_all_servers_down_lists_each_with_its_reason(corp):
    c = client(corp, domain_controllers=['127.0.0.98', 'ldaps://127.0.0.99:1636'])
    with pytest.raises(ADError) as err:
        c.connect()
    msg = err.value.msg
    assert msg.startswith('Could not connect to any domain controller')
    assert '127.0.0.98:636 (ldaps): open failed: connection refused' in msg
    assert '127.0.0.99:1636 (ldaps): open failed: connection refused' in msg
    assert [a['server'] for a in err.value.details['attempts']] == ['127.0.0.98:636 (ldaps)', '127.0.0.99:1636 (ldaps)']


def test_wrong_ca_is_refused(corp):
    other_ca, _key = pki.other_ca(lab_dir_of(corp))
    c = client(corp, ad_ca_file=str(other_ca))
    with pytest.raises(ADError) as err:
        c.connect()
    assert 'TLS certificate could not be validated' in err.value.msg
    assert 'ad_ca_file' in err.value.msg and 'ad_validate_certs' in err.value.msg
    assert corp.admin_password not in err.value.msg


def test_validation_off_accepts_a_certificate_of_another_ca(corp):
    """The contrast to test_wrong_ca_is_refused: the refusal above comes from validation."""
    other_ca, _key = pki.other_ca(lab_dir_of(corp))
    c = client(corp, ad_ca_file=str(other_ca), ad_validate_certs=False)
    c.connect()
    assert c.connection.bound
    c.close()


def test_expired_certificate_is_refused(corp):
    cert, key = pki.issue_expired_cert(lab_dir_of(corp), 'adclient-expired', [], ['127.0.0.97'])
    listener = Listener('127.0.0.97', cert, key)
    try:
        c = client(corp, domain_controllers=[listener.address])
        with pytest.raises(ADError) as err:
            c.connect()
    finally:
        listener.close()
    assert listener.accepted == 1
    assert 'TLS certificate could not be validated (certificate has expired)' in err.value.msg
    assert 'ad_ca_file' in err.value.msg


def test_failover_past_a_server_with_a_bad_certificate(corp):
    cert, key = pki.issue_expired_cert(lab_dir_of(corp), 'adclient-expired', [], ['127.0.0.97'])
    listener = Listener('127.0.0.97', cert, key)
    try:
        c = client(corp, domain_controllers=[listener.address, corp.ip])
        c.connect()
    finally:
        listener.close()
    assert c.server == '%s:636 (ldaps)' % corp.ip
    assert c.attempts[0][0] == '127.0.0.97:%d (ldaps)' % listener.port
    assert 'certificate has expired' in c.attempts[0][1]
    c.close()


def test_certificate_for_another_host_is_refused(corp):
    cert, key = pki.issue_cert(lab_dir_of(corp), 'adclient-otherhost', ['elsewhere.example.test'], ['127.0.0.95'])
    listener = Listener('127.0.0.96', cert, key)
    try:
        c = client(corp, domain_controllers=[listener.address])
        with pytest.raises(ADError) as err:
            c.connect()
    finally:
        listener.close()
    assert 'TLS certificate could not be validated' in err.value.msg
    assert 'does not name the host' in err.value.msg


def test_plaintext_simple_bind_is_refused_before_anything_is_sent(corp):
    listener = Listener('127.0.0.94')
    try:
        for auth, user in (('simple', corp.admin_upn), ('ntlm', '%s\\%s' % (corp.netbios, sam_name(corp)))):
            c = client(corp, domain_controllers=[listener.address], ad_tls_mode='none', ad_allow_plaintext=True,
                       ad_auth=auth, ad_user=user)
            with pytest.raises(ADError) as err:
                c.connect()
            assert 'clear text' in err.value.msg
            assert corp.admin_password not in err.value.msg
    finally:
        listener.close()
    assert listener.accepted == 0 and listener.received == b''


def test_the_lab_dc_itself_would_take_a_plaintext_simple_bind(corp):
    """Why the refusal above must be ours: ldap3 alone binds in clear text to this DC."""
    conn = ldap3.Connection(ldap3.Server(corp.ip, port=389, get_info=ldap3.NONE), user=corp.admin_upn,
                            password=corp.admin_password, raise_exceptions=False)
    conn.open()
    accepted = conn.bind()
    conn.unbind()
    if not accepted:
        pytest.skip('this DC refuses plaintext simple binds itself (%s)' % conn.result.get('message'))
    assert accepted


def test_plaintext_kerberos_is_possible_when_allowed(corp, kerberos_env):
    c = client(corp, ad_tls_mode='none', ad_allow_plaintext=True, ad_auth='kerberos')
    c.connect()
    assert c.server == '%s:389 (none)' % corp.ip
    assert list(c.search(corp.base_dn, '(objectClass=domain)', ['dc'], scope='base'))
    c.close()


def test_starttls(corp):
    c = client(corp, ad_tls_mode='starttls')
    c.connect()
    assert c.server == '%s:389 (starttls)' % corp.ip
    assert c.connection.tls_started
    assert isinstance(c.connection.socket, ssl.SSLSocket)
    assert list(c.search(corp.base_dn, '(objectClass=domain)', ['dc'], scope='base'))
    c.close()


@pytest.mark.parametrize('mode', ['ldaps', 'starttls'])
def test_connections_send_without_nagle_delay(corp, mode):
    """ad_client.no_delay: every connection, the Global Catalog's and a sibling's too, has
    TCP_NODELAY before its first request (with Nagle on, that request waited for the DC's delayed
    acknowledgement of the TLS handshake: 45 ms of a 56 ms connect to the lab)."""
    c = client(corp, ad_tls_mode=mode)
    c.connect()
    others = [c.global_catalog(), c.sibling()]
    try:
        for each in [c] + others:
            assert each.connection.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), each.server
    finally:
        others[1].close()
        c.close()


def test_starttls_with_wrong_ca_is_refused(corp):
    other_ca, _key = pki.other_ca(lab_dir_of(corp))
    with pytest.raises(ADError) as err:
        client(corp, ad_tls_mode='starttls', ad_ca_file=str(other_ca)).connect()
    assert 'StartTLS failed' in err.value.msg and 'could not be validated' in err.value.msg


# -- binds ------------------------------------------------------------------------------------

def _bound_as(c, corp, expected_dn):
    """Read our own user by DN: proves the bind's identity (anonymous cannot read it)."""
    entry = c.get(expected_dn, ['sAMAccountName'])
    assert entry is not None and first(entry, 'sAMAccountName')


@pytest.mark.parametrize('form', ['upn', 'domain', 'dn'])
def test_simple_bind_forms(corp, form):
    user = {'upn': corp.admin_upn, 'domain': '%s\\%s' % (corp.netbios, sam_name(corp)), 'dn': corp.admin_dn}[form]
    c = client(corp, ad_user=user)
    c.connect()
    assert c.connection.bound
    _bound_as(c, corp, corp.admin_dn)
    c.close()


def test_wrong_password_is_clear_and_does_not_fail_over(corp):
    c = client(corp, domain_controllers=[corp.ip, corp.ip + ':3269'], ad_password='Wrong-%s' % uuid.uuid4().hex[:6])
    with pytest.raises(ADError) as err:
        c.connect()
    msg = err.value.msg
    assert 'invalidCredentials (49)' in msg and 'check ad_user and ad_password' in msg
    assert 'Wrong-' not in msg and corp.admin_password not in msg
    assert err.value.result == 49 and err.value.result_name == 'invalidCredentials'
    assert len(c.attempts) == 1  # a wrong password is not retried elsewhere (lockout)


@pytest.mark.parametrize('mode', ['ldaps', 'starttls'])
@pytest.mark.parametrize('form', ['domain', 'upn'])
def test_ntlm_bind(corp, mode, form):
    user = '%s\\%s' % (corp.netbios, sam_name(corp)) if form == 'domain' else corp.admin_upn
    c = client(corp, ad_auth='ntlm', ad_user=user, ad_tls_mode=mode)
    c.connect()
    assert c.connection.bound
    _bound_as(c, corp, corp.admin_dn)
    c.close()


def test_ntlm_wrong_password(corp):
    c = client(corp, ad_auth='ntlm', ad_user='%s\\%s' % (corp.netbios, sam_name(corp)), ad_password='nope-nope')
    with pytest.raises(ADError) as err:
        c.connect()
    assert err.value.result == 49 and 'nope-nope' not in err.value.msg


def test_ldap3_own_ntlm_bind_is_dropped_by_samba(corp):
    """Evidence for the GSS-SPNEGO route: ldap3's Sicily NTLM bind ends the session at package discovery.

    A pre-hashed (LM:NT) password is given so that ldap3 needs no MD4: the failure is the bind
    choice, not the hash.
    """
    conn = ldap3.Connection(
        ldap3.Server(corp.ip, port=636, use_ssl=True, get_info=ldap3.NONE,
                     tls=ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(corp.ca_file))),
        user='%s\\%s' % (corp.netbios, sam_name(corp)), password='aad3b435b51404eeaad3b435b51404ee:' + '0' * 32,
        authentication=ldap3.NTLM, raise_exceptions=False)
    conn.open()
    try:
        bound = conn.bind()
    except ldap3.core.exceptions.LDAPSessionTerminatedByServerError:
        bound = None
    if bound is not None:
        pytest.skip('this DC answers Sicily binds: %r' % (conn.result,))


@pytest.mark.parametrize('mode', ['ldaps', 'starttls'])
def test_kerberos_bind_with_password_in_memory(corp, kerberos_env, mode):
    c = client(corp, ad_auth='kerberos', ad_tls_mode=mode)
    c.connect()
    assert c.connection.bound
    assert c.connection.sasl_credentials[0].lower() == corp.dc_hostname.lower()  # ldap/<dc name>, not the IP
    _bound_as(c, corp, corp.admin_dn)
    c.close()
    assert not kerberos_env.exists()  # nothing was written to a credential cache


def test_kerberos_bind_from_the_default_cache(corp, kerberos_env):
    with pytest.raises(ADError) as err:
        client(corp, ad_auth='kerberos', ad_user=None, ad_password=None).connect()
    assert 'no usable ticket' in err.value.msg
    subprocess.run(['kinit', corp.admin_upn.split('@')[0] + '@' + corp.realm], input=corp.admin_password + '\n',
                   text=True, check=True, capture_output=True, env=dict(os.environ))
    c = client(corp, ad_auth='kerberos', ad_user=None, ad_password=None)
    c.connect()
    _bound_as(c, corp, corp.admin_dn)
    c.close()


def test_kerberos_wrong_password(corp, kerberos_env):
    with pytest.raises(ADError) as err:
        client(corp, ad_auth='kerberos', ad_password='Bad-pass-123').connect()
    assert 'Kerberos: could not obtain a ticket' in err.value.msg and 'Bad-pass-123' not in err.value.msg


# -- reads ------------------------------------------------------------------------------------

def test_paged_search_returns_every_entry_once(corp, test_ou):
    c = client(corp, ad_page_size=7)
    c.connect()
    before = c.stats['searches']
    dns = [e['dn'] for e in c.search(test_ou['contacts_ou'], '(objectClass=contact)', ['displayName'], scope='onelevel')]
    assert len(dns) == CONTACTS > 1000
    assert len(set(d.lower() for d in dns)) == CONTACTS
    assert set(d.lower() for d in dns) == set(d.lower() for d in test_ou['contacts'])
    assert c.stats['searches'] - before >= math.ceil(CONTACTS / 7.0)  # one request per page
    c.close()


def test_abandoned_paged_searches_are_released(corp, test_ou):
    """Stopping early after the first page, many times on one connection, leaves it usable.

    The client then sends the RFC 2696 release (page size 0 with the cookie) because Windows
    allows only 10 open paged result sets per connection. Samba has no such limit and answers
    the release with unavailableCriticalExtension, which the client ignores: in this lab the test
    proves the release never breaks the run, not that Windows frees the result set.
    """
    c = client(corp, ad_page_size=5)
    c.connect()
    for _i in range(15):
        gen = c.search(test_ou['contacts_ou'], '(objectClass=contact)', ['cn'], scope='onelevel')
        assert next(gen)['dn']
        gen.close()
    assert len(list(c.search(test_ou['contacts_ou'], '(displayName=Contact 001*)', ['cn'], scope='onelevel'))) == 10
    c.close()


class _ControlSpy(object):
    """Records whether each search request of an ldap3 connection carried the paged-results control."""

    def __init__(self, conn):
        self.paged = []
        self._search = conn.search
        conn.search = self

    def __call__(self, *args, **kwargs):
        self.paged.append(kwargs.get('paged_size') is not None)
        return self._search(*args, **kwargs)


def test_an_answer_expected_within_a_page_is_one_unpaged_search(corp, test_ou):
    """``expected`` within the page size: one request without the paged-results control (Samba
    answers those faster), and exactly the entries a paged search returns."""
    c = client(corp, ad_page_size=50)
    c.connect()
    spy = _ControlSpy(c.connection)
    unpaged = [e['dn'].lower() for e in c.search(test_ou['contacts_ou'], '(displayName=Contact 001*)', ['cn'],
                                                 scope='onelevel', expected=10)]
    assert spy.paged == [False] and c.stats['searches'] == 1
    assert len(unpaged) == 10
    paged = [e['dn'].lower() for e in c.search(test_ou['contacts_ou'], '(displayName=Contact 001*)', ['cn'], scope='onelevel')]
    assert sorted(paged) == sorted(unpaged) and spy.paged[1:] == [True]
    # Past the page size, ``expected`` is not trusted to fit: paged from the start.
    spy.paged[:] = []
    assert len(list(c.search(test_ou['contacts_ou'], '(displayName=Contact 00*)', ['cn'], scope='onelevel', expected=51))) == 100
    assert len(spy.paged) >= 2 and all(spy.paged)
    c.close()


def test_an_answer_over_the_estimate_comes_whole_and_once(corp, test_ou):
    """A wrong estimate (100 entries where 5 were expected, a page of 30) still gives every entry
    once. A server that honours the request's size limit (Windows) answers sizeLimitExceeded at 30
    and the search is asked again, paged (the unit tests follow that path); Samba 4.17 ignores the
    size limit of a request and answers the whole search at once (measured here: one request)."""
    c = client(corp, ad_page_size=30)
    c.connect()
    spy = _ControlSpy(c.connection)
    dns = [e['dn'].lower() for e in c.search(test_ou['contacts_ou'], '(displayName=Contact 00*)', ['cn'],
                                             scope='onelevel', expected=5)]
    assert len(dns) == len(set(dns)) == 100
    assert all('contact 00' in d for d in dns)
    assert spy.paged[0] is False and all(spy.paged[1:])
    assert spy.paged in ([False], [False, True, True, True, True])   # Samba's answer, or the limit honoured
    c.close()


def test_a_base_search_is_one_unpaged_request(admin, corp, test_ou):
    spy = _ControlSpy(admin.connection)
    try:
        assert [e['dn'].lower() for e in admin.search(test_ou['dn'], '(objectClass=*)', ['ou'], scope='base')] == \
            [test_ou['dn'].lower()]
        assert admin.get(test_ou['contacts_ou'], ['ou']) is not None
    finally:
        admin.connection.search = spy._search
    assert spy.paged and not any(spy.paged)


def test_search_value_types_and_case_insensitive_access(admin, corp):
    entry = admin.get(corp.admin_dn, ['objectGUID', 'objectSid', 'sAMAccountName', 'nTSecurityDescriptor', 'memberOf'])
    guid = first(entry, 'objectguid')
    assert isinstance(guid, bytes) and len(guid) == 16
    assert isinstance(first(entry, 'OBJECTSID'), bytes)
    assert ad_codecs.sid_from_bytes(first(entry, 'objectSid')).startswith('S-1-5-21-')
    assert first(entry, 'samaccountname') == sam_name(corp)
    assert all(isinstance(v, str) for v in values(entry, 'memberof'))
    assert 'sAMAccountName' in entry['attributes']  # the server's case is kept


def test_scopes(admin, test_ou):
    base = list(admin.search(test_ou['dn'], '(objectClass=*)', ['ou'], scope='base'))
    assert [e['dn'].lower() for e in base] == [test_ou['dn'].lower()]
    one = list(admin.search(test_ou['contacts_ou'], '(displayName=Contact 000*)', ['cn'], scope='onelevel'))
    assert len(one) == 10
    with pytest.raises(ADError):
        list(admin.search(test_ou['dn'], '(objectClass=*)', ['cn'], scope='children'))


def test_ranged_read_reassembles_a_large_group_exactly(admin, corp, test_ou):
    dn = 'CN=big-%s,%s' % (uuid.uuid4().hex[:8], test_ou['dn'])
    admin.add(dn, {'objectClass': ['top', 'group'], 'member': test_ou['contacts']})
    expected = sorted(d.lower() for d in test_ou['contacts'])

    ranged = client(corp, range_size=RANGE)
    ranged.connect()
    before = ranged.stats['searches']
    got = ranged.read_all_values(dn, 'member')
    assert sorted(d.lower() for d in got) == expected and len(got) == CONTACTS
    # one request per range of 100: the last comes back as member;range=2400-* (at most one more, empty, on other servers)
    assert CONTACTS // RANGE <= ranged.stats['searches'] - before <= CONTACTS // RANGE + 1
    # the same through search(): the server's member;range=0-99 answer is followed transparently
    before = ranged.stats['searches']
    entries = list(ranged.search(dn, '(objectClass=group)', ['member', 'cn'], scope='base'))
    assert sorted(d.lower() for d in values(entries[0], 'member')) == expected
    assert ranged.stats['searches'] - before >= CONTACTS // RANGE
    assert [k for k in entries[0]['attributes'] if ';' in k] == []
    # and without forced ranges (Samba answers all values at once)
    assert sorted(d.lower() for d in admin.read_all_values(dn, 'member')) == expected
    ranged.close()
    admin.delete(dn)


def test_get_missing_object_is_none_and_search_errors_name_the_base(admin, test_ou):
    missing = 'CN=nope,' + test_ou['dn']
    assert admin.get(missing) is None
    with pytest.raises(ADError) as err:
        list(admin.search(missing, '(objectClass=*)', ['cn']))
    assert err.value.result == 32 and 'noSuchObject' in err.value.msg and repr(missing) in err.value.msg
    assert admin.server in err.value.msg


def test_global_catalog_lookup_by_object_guid(admin, corp):
    entry = admin.get(corp.admin_dn, ['objectGUID'])
    guid = ad_codecs.guid_from_bytes(first(entry, 'objectGUID'))
    gc = admin.global_catalog()
    assert gc.server == '%s:3269 (ldaps)' % corp.ip and gc.is_global_catalog
    assert admin.global_catalog() is gc
    found = list(gc.search(admin.root_dse()['root_domain_naming_context'], '(objectGUID=%s)' % ad_codecs.guid_to_filter(guid),
                           ['objectGUID', 'sAMAccountName']))
    assert [e['dn'].lower() for e in found] == [corp.admin_dn.lower()]
    assert ad_codecs.guid_from_bytes(first(found[0], 'objectGUID')) == guid


@pytest.mark.parametrize('auth', ['ntlm', 'kerberos'])
def test_global_catalog_with_the_same_credentials(corp, kerberos_env, auth):
    user = '%s\\%s' % (corp.netbios, sam_name(corp)) if auth == 'ntlm' else corp.admin_upn
    c = client(corp, ad_auth=auth, ad_user=user)
    c.connect()
    gc = c.global_catalog()
    assert gc.server == '%s:3269 (ldaps)' % corp.ip and gc.connection.bound
    found = list(gc.search(corp.base_dn, '(sAMAccountName=%s)' % ad_codecs.escape_filter_value(sam_name(corp)), ['cn']))
    assert [e['dn'].lower() for e in found] == [corp.admin_dn.lower()]
    c.close()


def test_global_catalog_option_and_starttls_port(corp):
    c = client(corp, ad_tls_mode='starttls')
    c.connect()
    assert c.global_catalog().server == '%s:3268 (starttls)' % corp.ip
    c.close()
    c = client(corp, global_catalog='ldaps://%s' % corp.ip)
    c.connect()
    assert c.global_catalog().server == '%s:3269 (ldaps)' % corp.ip
    c.close()


# -- writes -----------------------------------------------------------------------------------

def test_permissive_modify_adds_existing_and_removes_missing_without_error(admin, group, test_ou):
    present, absent, new = test_ou['contacts'][0], test_ou['contacts'][5], test_ou['contacts'][6]
    before = dict(admin.stats)
    admin.modify(group, {'member': ('add', [present])})
    admin.modify(group, {'member': ('delete', [absent])})
    assert sorted(d.lower() for d in admin.read_all_values(group, 'member')) == sorted(d.lower() for d in test_ou['contacts'][:2])
    # a mix: the redundant values are dropped, the others applied (DNs compared whatever their case)
    admin.modify(group, {'member': [('add', [present.upper(), new]), ('delete', [absent, test_ou['contacts'][1]])]})
    assert sorted(d.lower() for d in admin.read_all_values(group, 'member')) == sorted(d.lower() for d in (present, new))
    assert admin.stats['modifies'] > before['modifies']
    # without permissive the same changes are errors (Samba answers entryAlreadyExists / unwillingToPerform
    # for the linked attribute member, Windows attributeOrValueExists / noSuchAttribute)
    with pytest.raises(ADError) as err:
        admin.modify(group, {'member': ('add', [present])}, permissive=False)
    assert err.value.result in (20, 68) and 'already exists' in err.value.msg
    with pytest.raises(ADError) as err:
        admin.modify(group, {'member': ('delete', [absent])}, permissive=False)
    assert err.value.result in (16, 53)


def test_permissive_modify_of_a_plain_multi_valued_attribute(admin, group):
    admin.modify(group, {'url': ('add', ['https://a.example.test'])})
    admin.modify(group, {'url': ('add', ['https://a.example.test'])})
    admin.modify(group, {'url': ('delete', ['https://b.example.test'])})
    assert admin.read_all_values(group, 'url') == ['https://a.example.test']
    with pytest.raises(ADError) as err:
        admin.modify(group, {'url': ('add', ['https://a.example.test'])}, permissive=False)
    assert err.value.result_name == 'attributeOrValueExists'


def test_clearing_an_attribute_is_never_rewritten(admin, group):
    admin.modify(group, {'member': ('delete', [])})  # delete with no value: every member goes
    assert admin.read_all_values(group, 'member') == []


def test_stats_count_each_operation(admin, corp, test_ou):
    c = client(corp)
    c.connect()
    assert c.stats == {'searches': 0, 'adds': 0, 'modifies': 0, 'modify_dns': 0, 'deletes': 0}
    dn = 'CN=stats-%s,%s' % (uuid.uuid4().hex[:8], test_ou['dn'])
    c.add(dn, {'objectClass': ['top', 'group']})
    c.modify(dn, {'description': ('replace', ['x']), 'member': ('add', [test_ou['contacts'][0]])})
    c.modify_dn(dn, 'CN=stats-renamed-%s' % dn[9:17])
    new_dn = 'CN=stats-renamed-%s,%s' % (dn[9:17], test_ou['dn'])
    assert first(c.get(new_dn, ['description']), 'description') == 'x'
    c.delete(new_dn)
    assert c.stats == {'searches': 1, 'adds': 1, 'modifies': 1, 'modify_dns': 1, 'deletes': 1}
    assert c.get(new_dn) is None
    c.close()


def test_modify_dn_moves_and_escapes(admin, group, test_ou):
    sub = 'OU=sub-%s,%s' % (uuid.uuid4().hex[:6], test_ou['dn'])
    admin.add(sub, {'objectClass': ['top', 'organizationalUnit']})
    rdn = 'CN=%s' % ad_codecs.escape_dn_value('Finance, Team #1 + "EU"')
    admin.modify_dn(group, rdn, new_superior=sub)
    moved = '%s,%s' % (rdn, sub)
    entry = admin.get(moved, ['cn', 'member'])
    assert first(entry, 'cn') == 'Finance, Team #1 + "EU"'
    assert len(values(entry, 'member')) == 2
    assert admin.get(group) is None
    admin.delete(sub, tree=True)


def test_insufficient_rights_error_names_operation_server_dn_and_diagnostic(corp, group):
    if not getattr(corp, 'unprivileged_user', None):
        pytest.skip('the lab has no unprivileged user')
    c = client(corp, ad_user=getattr(corp, 'unprivileged_upn', None) or corp.unprivileged_user, ad_password=corp.unprivileged_password)
    c.connect()
    with pytest.raises(ADError) as err:
        c.modify(group, {'description': ('replace', ['not allowed'])})
    e = err.value
    assert e.result == 50 and e.result_name == 'insufficientAccessRights'
    assert e.msg.startswith("LDAP modify of %r on %s failed: insufficientAccessRights (50): " % (group, c.server))
    assert e.diagnostic and e.diagnostic in e.msg
    assert corp.unprivileged_password not in e.msg
    assert e.to_fail_kwargs()['dn'] == group
    c.close()


def test_security_descriptor_dacl_round_trip(admin, group):
    sd = admin.read_security_descriptor(group)
    assert isinstance(sd, bytes) and sd[0] == 1  # revision 1, self-relative
    _rev, _sbz, control, owner, grp, sacl, dacl = struct.unpack('<BBHIIII', sd[:20])
    assert dacl != 0 and control & 0x0004  # SE_DACL_PRESENT
    assert owner == 0 and grp == 0 and sacl == 0  # the SD flags control asked for the DACL only
    full = admin.read_security_descriptor(group, sd_flags=0x7)
    assert struct.unpack('<I', full[4:8])[0] != 0  # with OWNER requested the owner is there
    before = admin.stats['modifies']
    admin.write_security_descriptor(group, sd)
    assert admin.stats['modifies'] == before + 1
    assert admin.read_security_descriptor(group) == sd


def test_add_error_is_an_ad_error(admin, group):
    with pytest.raises(ADError) as err:
        admin.add(group, {'objectClass': ['top', 'group']})
    assert err.value.result_name == 'entryAlreadyExists' and err.value.operation == 'add'
    assert err.value.msg.startswith('LDAP add of %r on %s failed: entryAlreadyExists (68)' % (group, admin.server))


@pytest.mark.parametrize('how', [dict(), dict(ad_tls_mode='starttls'), dict(domain_controllers=['127.0.0.99'], extra=True)])
def test_a_sibling_binds_to_the_same_dc_with_the_same_transport(corp, how):
    """``ADClient.sibling``: a second connection for another thread, on the DC this client bound to
    (not the first of domain_controllers), with its transport and its own request counts."""
    how = dict(how)
    extra = how.pop('extra', False)
    if extra:
        how['domain_controllers'] = how['domain_controllers'] + [corp.ip]   # the first fails over to corp
    c = client(corp, **how)
    c.connect()
    try:
        other = c.sibling()
        try:
            assert other.server == c.server and other.server_spec.tls_mode == c.server_spec.tls_mode
            assert other.connection is not c.connection
            before = dict(c.stats)
            assert other.get(corp.admin_dn, ['objectGUID']) is not None
            assert c.stats == before and other.stats['searches'] == 1
        finally:
            other.close()
    finally:
        c.close()
