# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Access to Active Directory over LDAP (ldap3): the only file of the collection that talks LDAP.

``ADClient(params)`` takes the module parameters named by ``argspec.AD_CONNECTION_ARGSPEC``::

    client = ADClient(module.params)
    client.connect()                      # failover over domain_controllers, stays on the first that binds
    for entry in client.search(base, '(objectClass=group)', ['cn', 'member', 'objectGUID']):
        entry['dn'], first(entry, 'cn'), values(entry, 'member')
    gc = client.global_catalog()          # connected ADClient on the Global Catalog port
    client.modify(dn, {'member': ('add', [user_dn])})

Every LDAP failure is raised as ``ADError`` (a ``CloudSyncError``) whose message names the
operation, the server, the DN and the server's own diagnostic; passwords never appear in it.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import socket
import ssl
import traceback

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_codecs import dn_key, split_extended_dn
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.argspec import pem_file_problem
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.errors import CloudSyncError

LDAP3_IMPORT_ERROR = None
try:
    import ldap3
    from ldap3.core import exceptions as ldap3_exceptions
except ImportError:
    LDAP3_IMPORT_ERROR = traceback.format_exc()
    ldap3 = None
    ldap3_exceptions = None
    _VerifyingTls = None
else:
    class _VerifyingTls(ldap3.Tls):
        """ldap3 Tls whose certificate and host name checks are OpenSSL's own, during the handshake.

        ldap3 turns the SSLContext's host name check off and calls ssl.match_hostname() afterwards,
        which Python 3.12 removed (ldap3's fallback cannot match IP addresses). Here the context
        checks the chain and the name or IP address connected to (subjectAltName) itself, for
        LDAPS and StartTLS alike, on every Python version.
        """

        def wrap_socket(self, connection, do_handshake=False):
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_certs_file)
            if self.validate == ssl.CERT_NONE:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            else:
                ctx.verify_mode = ssl.CERT_REQUIRED
                ctx.check_hostname = True
            connection.socket = ctx.wrap_socket(connection.socket, server_side=False, do_handshake_on_connect=do_handshake,
                                                server_hostname=connection.server.host)


def no_delay(sock):
    """Turn Nagle's algorithm off on a DC connection's socket. With it on, the first request after
    the TLS handshake waits until the DC acknowledges the client's last handshake message, and the
    DC's TCP stack delays that acknowledgement (40 ms on the lab's Linux DC): 45 ms of every 56 ms
    connect to the lab, and a run opens several connections. LDAP sends each request whole, so there
    is nothing for Nagle to coalesce. ldap3 leaves the option alone."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass   # not a TCP socket: nothing to turn off


OID_PAGED_RESULTS = '1.2.840.113556.1.4.319'
RESULT_SIZE_LIMIT_EXCEEDED = 4
OID_PERMISSIVE_MODIFY = '1.2.840.113556.1.4.1413'
OID_SD_FLAGS = '1.2.840.113556.1.4.801'
OID_SHOW_DELETED = '1.2.840.113556.1.4.417'
OID_TREE_DELETE = '1.2.840.113556.1.4.805'

SD_FLAGS_OWNER = 0x1
SD_FLAGS_GROUP = 0x2
SD_FLAGS_DACL = 0x4
SD_FLAGS_SACL = 0x8

DEFAULT_PORTS = {
    # (tls_mode is ldaps, global catalog) -> port
    (True, False): 636,
    (False, False): 389,
    (True, True): 3269,
    (False, True): 3268,
}

# Attributes whose values are binary in AD (lower case). Any other value that is not valid
# UTF-8 is returned as bytes too.
BINARY_ATTRIBUTES = frozenset(name.lower() for name in (
    'objectGUID', 'objectSid', 'sIDHistory', 'nTSecurityDescriptor', 'mS-DS-ConsistencyGuid',
    'msDS-ConsistencyGuid', 'tokenGroups', 'tokenGroupsGlobalAndUniversal', 'tokenGroupsNoGCAcceptable',
    'userCertificate', 'userSMIMECertificate', 'cACertificate', 'thumbnailPhoto', 'jpegPhoto',
    'logonHours', 'msExchMailboxGuid', 'msExchMasterAccountSid', 'msDS-GenerationId', 'schemaIDGUID',
    'attributeSecurityGUID', 'replPropertyMetaData', 'replUpToDateVector', 'repsFrom', 'repsTo',
    'msDS-AllowedToActOnBehalfOfOtherIdentity', 'msDS-ManagedPasswordId', 'msDS-KeyCredentialLink',
    'unicodePwd', 'dBCSPwd', 'supplementalCredentials', 'ntPwdHistory', 'lmPwdHistory', 'msDS-Cached-Membership',
    'objectSid', 'securityIdentifier', 'msDS-CloudAnchor_binary', 'invocationId', 'msDS-RetiredReplNCSignatures',
))

# Multi-valued attributes that the test-only ``range_size`` option always requests ranged.
RANGED_ATTRIBUTES = frozenset(('member', 'memberof', 'msds-members', 'nonsecuritymember'))

_RANGE_RE = re.compile(r'^(?P<attr>[^;]+);range=(?P<low>\d+)-(?P<high>\d+|\*)$', re.IGNORECASE)
_MODIFY_OPS = ('add', 'delete', 'replace')
_SCOPES = ('base', 'onelevel', 'subtree')

# LDAP result codes after which trying another domain controller cannot help (and, for a wrong
# password, would only add failed logons that count towards an account lockout).
_NO_FAILOVER_RESULTS = frozenset((49,))  # invalidCredentials

_CERT_HINT = ('check that ad_ca_file names the certificate authority that issued the domain controller\'s certificate, '
              'that the certificate is valid now and names the host you connect to (a host name or IP address of its '
              'subjectAltName); ad_validate_certs=false turns validation off and exposes the bind credentials')


class ADError(CloudSyncError):
    """An LDAP operation failed.

    Attributes (also in ``details``): ``operation``, ``server``, ``dn``, ``result`` (LDAP result
    code, int or None), ``result_name`` (e.g. ``insufficientAccessRights``), ``diagnostic`` (the
    server's diagnostic message, e.g. ``00002098: SecErr: DSID-...``).
    """

    def __init__(self, msg, details=None, operation=None, server=None, dn=None, result=None,
                 result_name=None, diagnostic=None, **kwargs):
        extra = dict(details or {})
        for key, value in (('operation', operation), ('server', server), ('dn', dn), ('result', result),
                           ('result_name', result_name), ('diagnostic', diagnostic)):
            if value is not None:
                extra[key] = value
        extra.update(kwargs)
        super(ADError, self).__init__(msg, details=extra)
        self.operation = operation
        self.server = server
        self.dn = dn
        self.result = result
        self.result_name = result_name
        self.diagnostic = diagnostic


# ---------------------------------------------------------------------------------------------
# Pure helpers (no ldap3 needed)
# ---------------------------------------------------------------------------------------------

class ServerSpec(object):
    """One endpoint to connect to: host, port and transport (``ldaps``, ``starttls`` or ``none``)."""

    __slots__ = ('host', 'port', 'tls_mode')

    def __init__(self, host, port, tls_mode):
        self.host = host
        self.port = port
        self.tls_mode = tls_mode

    @property
    def use_ssl(self):
        return self.tls_mode == 'ldaps'

    def __eq__(self, other):
        return isinstance(other, ServerSpec) and (self.host, self.port, self.tls_mode) == (other.host, other.port, other.tls_mode)

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash((self.host, self.port, self.tls_mode))

    def __repr__(self):
        return 'ServerSpec(%r, %r, %r)' % (self.host, self.port, self.tls_mode)

    def __str__(self):
        host = '[%s]' % self.host if ':' in self.host else self.host
        return '%s:%d (%s)' % (host, self.port, self.tls_mode)


def _split_host_port(text):
    """'host', 'host:port', '[v6]', '[v6]:port', bare IPv6 -> (host, port or None)."""
    if text.startswith('['):
        end = text.find(']')
        if end < 0:
            raise ValueError('unbalanced [ in %r' % text)
        host, rest = text[1:end], text[end + 1:]
        if rest and not rest.startswith(':'):
            raise ValueError('unexpected %r after ]' % rest)
        port = rest[1:] if rest else None
    elif text.count(':') == 1:
        host, port = text.split(':')
    else:
        host, port = text, None  # a name, an IPv4 address or a bare IPv6 address
    if port is not None:
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError('invalid port %r' % port)
        port = int(port)
    if not host:
        raise ValueError('no host name')
    return host, port


def parse_server(entry, tls_mode='ldaps', port=None, global_catalog=False):
    """Turn one ``domain_controllers`` entry into a ServerSpec.

    ``ldaps://`` URLs always use LDAPS; ``ldap://`` URLs use StartTLS, or plain LDAP when
    ``tls_mode`` is ``none`` (an ``ldap://`` URL never turns TLS off by itself). A port in the
    entry wins over ``port`` (``ad_port``), which wins over the default of the transport
    (636/389, Global Catalog 3269/3268).
    """
    if not isinstance(entry, str) or not entry.strip():
        raise ValueError('empty server entry')
    text = entry.strip()
    mode = tls_mode
    match = re.match(r'^(ldaps?)://(.*)$', text, re.IGNORECASE)
    if match:
        scheme, text = match.group(1).lower(), match.group(2)
        text = text.split('/', 1)[0]  # ignore a DN part (ldap://host/dc=... is a valid URL)
        if scheme == 'ldaps':
            mode = 'ldaps'
        elif tls_mode == 'ldaps':
            mode = 'starttls'
    host, entry_port = _split_host_port(text)
    if mode not in ('ldaps', 'starttls', 'none'):
        raise ValueError('unknown TLS mode %r' % mode)
    final_port = entry_port or port or DEFAULT_PORTS[(mode == 'ldaps', bool(global_catalog))]
    return ServerSpec(host, final_port, mode)


def parse_servers(entries, tls_mode='ldaps', port=None, global_catalog=False):
    """Parse the ``domain_controllers`` list (a comma-separated string is split too)."""
    if isinstance(entries, str):
        entries = [entries]
    specs = []
    for entry in entries or []:
        for part in str(entry).split(','):
            if part.strip():
                try:
                    spec = parse_server(part, tls_mode=tls_mode, port=port, global_catalog=global_catalog)
                except ValueError as exc:
                    raise ADError('Invalid domain controller %r: %s' % (part.strip(), exc), operation='configure')
                if spec not in specs:
                    specs.append(spec)
    return specs


def validate_params(params):
    """Check the connection options for contradictions before anything is sent on the network.

    Returns the list of ServerSpec to try. Raises ADError.
    """
    p = params
    tls_mode = p.get('ad_tls_mode') or 'ldaps'
    auth = p.get('ad_auth') or 'simple'
    user, password = p.get('ad_user'), p.get('ad_password')
    if tls_mode not in ('ldaps', 'starttls', 'none'):
        raise ADError('ad_tls_mode must be one of ldaps, starttls, none, not %r' % tls_mode, operation='configure')
    if auth not in ('simple', 'ntlm', 'kerberos'):
        raise ADError('ad_auth must be one of simple, ntlm, kerberos, not %r' % auth, operation='configure')
    if not p.get('domain_controllers'):
        raise ADError('No domain controller given: set domain_controllers (or CLOUDSYNC_AD_SERVERS)', operation='configure')
    port = p.get('ad_port')
    if port is not None and not 0 < int(port) < 65536:
        raise ADError('ad_port must be between 1 and 65535, not %r' % port, operation='configure')
    specs = parse_servers(p['domain_controllers'], tls_mode=tls_mode, port=port)
    if bool(user) != bool(password):
        raise ADError('ad_user and ad_password must be given together', operation='configure')
    if auth in ('simple', 'ntlm') and not (user and password):
        raise ADError('ad_auth=%s needs ad_user and ad_password' % auth, operation='configure')
    if auth == 'ntlm' and '\\' not in user and '@' not in user:
        raise ADError('ad_auth=ntlm needs ad_user as DOMAIN\\user (or user@domain), not %r' % user, operation='configure')
    if auth == 'kerberos' and user and '@' not in user and '\\' not in user:
        raise ADError('ad_auth=kerberos needs ad_user as a user principal name (user@REALM) or DOMAIN\\user, not %r' % user,
                      operation='configure')
    check_plaintext(specs, p)
    if p.get('global_catalog'):
        check_plaintext(parse_servers(p['global_catalog'], tls_mode=tls_mode, global_catalog=True), p)
    for name in ('ad_timeout', 'ad_page_size'):
        value = p.get(name)
        if value is not None and int(value) < 1:
            raise ADError('%s must be at least 1, not %r' % (name, value), operation='configure')
    ca_file = p.get('ad_ca_file')
    if ca_file and not os.path.isfile(ca_file):
        raise ADError('ad_ca_file %s does not exist or is not a file' % ca_file, operation='configure')
    problem = pem_file_problem(ca_file) if ca_file else None
    if problem:
        raise ADError('ad_ca_file %s %s' % (ca_file, problem), operation='configure')
    return specs


def check_plaintext(specs, params):
    """Refuse plain LDAP unless ad_allow_plaintext, and always for a password (simple or NTLM) bind."""
    plain = [spec for spec in specs if spec.tls_mode == 'none']
    if not plain:
        return
    auth = params.get('ad_auth') or 'simple'
    if not params.get('ad_allow_plaintext'):
        raise ADError('ad_tls_mode=none sends everything in clear text; it is refused unless ad_allow_plaintext=true '
                      '(servers: %s)' % ', '.join(str(s) for s in plain), operation='configure')
    if auth != 'kerberos':
        raise ADError('Refusing a %s bind without TLS: the password would cross the network in clear text. '
                      'Use ad_tls_mode=ldaps or starttls, or ad_auth=kerberos (servers: %s)'
                      % ('simple' if auth == 'simple' else 'NTLM', ', '.join(str(s) for s in plain)), operation='configure')


def attribute_base(name):
    """'member;range=0-1499' -> 'member'; 'member' -> 'member'."""
    return name.split(';', 1)[0]


def parse_range(name):
    """'member;range=0-1499' -> ('member', 0, 1499); 'member;range=1500-*' -> ('member', 1500, None).

    Returns None for an attribute name without a range option.
    """
    match = _RANGE_RE.match(name)
    if not match:
        return None
    high = match.group('high')
    return match.group('attr'), int(match.group('low')), None if high == '*' else int(high)


def decode_values(name, raw_values, binary_attributes=None):
    """Raw LDAP values -> str for text attributes, bytes for binary ones (and non-UTF-8 values)."""
    lname = attribute_base(name).lower()
    binary = lname in BINARY_ATTRIBUTES or (binary_attributes is not None and lname in binary_attributes)
    out = []
    for value in raw_values or ():
        if isinstance(value, str):
            out.append(value.encode('utf-8') if binary else value)
        elif binary:
            out.append(bytes(value))
        else:
            try:
                out.append(bytes(value).decode('utf-8'))
            except UnicodeDecodeError:
                out.append(bytes(value))
    return out


def values(entry, name):
    """All values of attribute ``name`` (case-insensitive) of a search result entry; [] if absent."""
    attrs = entry.get('attributes', entry) if isinstance(entry, dict) else {}
    if name in attrs:
        return attrs[name]
    lname = name.lower()
    for key, vals in attrs.items():
        if key.lower() == lname:
            return vals
    return []


def first(entry, name, default=None):
    """The first value of attribute ``name`` (case-insensitive) of a search result entry, or ``default``."""
    vals = values(entry, name)
    return vals[0] if vals else default


def normalize_changes(changes):
    """{attr: (op, [values])} or {attr: [(op, [values]), ...]} -> [(attr, op, [values])], validated."""
    out = []
    for attr, change in (changes or {}).items():
        items = [change] if isinstance(change, tuple) and change and isinstance(change[0], str) else list(change)
        for item in items:
            if not isinstance(item, (tuple, list)) or len(item) != 2:
                raise ADError('Invalid change for %s: expected (operation, values), got %r' % (attr, item), operation='modify')
            op, vals = item
            if op not in _MODIFY_OPS:
                raise ADError('Invalid modify operation %r for %s (expected add, delete or replace)' % (op, attr), operation='modify')
            if vals is None:
                vals = []
            elif isinstance(vals, (str, bytes, int)):
                vals = [vals]
            else:
                vals = list(vals)
            if op == 'add' and not vals:
                raise ADError('Adding no value to %s makes no sense' % attr, operation='modify')
            out.append((attr, op, vals))
    if not out:
        raise ADError('No change given', operation='modify')
    return out


def scrub(text, secrets):
    """Replace every secret in ``text`` by ********."""
    text = str(text)
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, '********')
    return text


def format_ldap_error(operation, server, dn, result_name=None, result=None, diagnostic=None, reason=None):
    """The one message format of ADError: 'LDAP <operation> of <dn> on <server> failed: <result> (<code>): <diagnostic>'."""
    what = 'LDAP %s' % operation
    if dn is not None:
        what += ' of %r' % dn
    if server:
        what += ' on %s' % server
    parts = []
    if result_name:
        parts.append('%s (%s)' % (result_name, result) if result is not None else str(result_name))
    if diagnostic:
        parts.append(str(diagnostic).strip().rstrip('\x00').strip())
    if reason:
        parts.append(str(reason))
    return '%s failed: %s' % (what, ': '.join(parts) if parts else 'unknown error')


def describe_connect_error(exc):
    """Short, credential-free text for a failure to reach or bind to one server."""
    text = str(exc)
    lowered = text.lower()
    if 'certificate_verify_failed' in lowered or 'certificate verify failed' in lowered or \
            "doesn't match any name" in lowered or 'certificate has expired' in lowered:
        reason = 'the TLS certificate could not be validated'
        m = re.search(r'certificate verify failed: ([^(\]\)]+)', text)
        if 'mismatch' in lowered or "doesn't match any name" in lowered:
            reason += ' (it does not name the host connected to%s)' % (': %s' % m.group(1).strip().rstrip('.') if m else '')
        elif m:
            reason += ' (%s)' % m.group(1).strip()
        return '%s: %s' % (reason, _CERT_HINT)
    if 'connection refused' in lowered:
        return 'connection refused (nothing listens on that port)'
    if 'timed out' in lowered or 'timeout' in lowered:
        return 'no answer (timed out)'
    if 'name or service not known' in lowered or 'nodename nor servname' in lowered or 'temporary failure in name resolution' in lowered:
        return 'host name could not be resolved'
    return text


# ---------------------------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------------------------

class ADClient(object):
    """An LDAP connection to one domain controller (or Global Catalog) of an AD forest."""

    def __init__(self, params, global_catalog=False, range_size=None):
        self.params = dict(params)
        self.is_global_catalog = bool(global_catalog)
        self.range_size = int(range_size) if range_size else None
        self.tls_mode = self.params.get('ad_tls_mode') or 'ldaps'
        self.auth = self.params.get('ad_auth') or 'simple'
        self.timeout = int(self.params.get('ad_timeout') or 10)
        self.page_size = int(self.params.get('ad_page_size') or 1000)
        # LDAP requests sent: every page of a paged search and every ranged read is one search
        self.stats = {'searches': 0, 'adds': 0, 'modifies': 0, 'modify_dns': 0, 'deletes': 0}
        self.server = None          # str of the ServerSpec bound to
        self.server_spec = None
        self.dns_host_name = None   # the DC's DNS host name (rootDSE dnsHostName)
        self.connection = None
        self.attempts = []          # [(server str, reason)] of the last connect()
        self._root_dse = None
        self._gc = None
        if self.is_global_catalog:
            gc = self.params.get('global_catalog')
            self.params['domain_controllers'] = [gc] if isinstance(gc, str) else gc
            self.params['ad_port'] = None

    # -- helpers ------------------------------------------------------------------------------

    def _secrets(self):
        return [self.params.get('ad_password')]

    def _fail(self, operation, dn, exc=None, reason=None):
        """Build an ADError from an ldap3 exception (or a reason), never exposing a password."""
        result = result_name = diagnostic = None
        if exc is not None and ldap3_exceptions is not None and isinstance(exc, ldap3_exceptions.LDAPOperationResult):
            result = exc.result
            result_name = exc.description
            diagnostic = (exc.message or '').strip().rstrip('\x00').strip() or None
        elif exc is not None and not reason:
            reason = describe_connect_error(exc) if str(exc) else type(exc).__name__
        msg = format_ldap_error(operation, self.server, dn, result_name=result_name, result=result,
                                diagnostic=diagnostic, reason=reason)
        secrets = self._secrets()
        return ADError(scrub(msg, secrets), operation=operation, server=self.server, dn=dn, result=result,
                       result_name=result_name, diagnostic=scrub(diagnostic, secrets) if diagnostic else None)

    def _require_ldap3(self):
        if LDAP3_IMPORT_ERROR is not None:
            raise ADError('The ldap3 Python library is required to talk to Active Directory',
                          operation='connect', exception=LDAP3_IMPORT_ERROR)

    def _require_connection(self):
        if self.connection is None:
            self.connect()
        return self.connection

    def _tls(self, spec):
        validate = self.params.get('ad_validate_certs')
        validate = True if validate is None else bool(validate)
        kwargs = dict(validate=ssl.CERT_REQUIRED if validate else ssl.CERT_NONE)
        if self.params.get('ad_ca_file'):
            kwargs['ca_certs_file'] = self.params['ad_ca_file']
        return _VerifyingTls(**kwargs)

    # -- connecting ---------------------------------------------------------------------------

    def connect(self):
        """Connect and bind to the first server of domain_controllers that accepts us; stay on it.

        Raises ADError naming every server tried and why each failed.
        """
        if self.connection is not None:
            return self
        specs = validate_params(self.params) if not self.is_global_catalog else self._gc_specs()
        self._require_ldap3()
        self.attempts = []
        for spec in specs:
            try:
                self._connect_one(spec)
            except _StopFailover as exc:
                self.attempts.append((str(spec), exc.reason))
                self._close_quietly()
                raise ADError(scrub('Could not bind to %s: %s' % (spec, exc.reason), self._secrets()), operation='bind',
                              server=str(spec), result=exc.result, result_name=exc.result_name,
                              diagnostic=scrub(exc.diagnostic, self._secrets()) if exc.diagnostic else None,
                              attempts=self._attempt_dicts())
            except _ConnectFailed as exc:
                self.attempts.append((str(spec), exc.reason))
                self._close_quietly()
                continue
            self.server_spec = spec
            self.server = str(spec)
            return self
        what = 'Global Catalog' if self.is_global_catalog else 'domain controller'
        raise ADError(scrub('Could not connect to any %s: %s' % (what, '; '.join('%s: %s' % a for a in self.attempts)),
                            self._secrets()), operation='connect', attempts=self._attempt_dicts())

    def _attempt_dicts(self):
        return [{'server': s, 'error': r} for s, r in self.attempts]

    def _gc_specs(self):
        if not self.params.get('domain_controllers'):
            raise ADError('No Global Catalog given', operation='configure')
        specs = parse_servers(self.params['domain_controllers'], tls_mode=self.tls_mode, port=None, global_catalog=True)
        check_plaintext(specs, self.params)
        return specs

    def _close_quietly(self):
        conn, self.connection = self.connection, None
        if conn is not None:
            try:
                conn.unbind()
            except Exception:  # pylint: disable=broad-except
                pass

    def _connect_one(self, spec):
        server = ldap3.Server(spec.host, port=spec.port, use_ssl=spec.use_ssl, tls=self._tls(spec) if spec.tls_mode != 'none' else None,
                              get_info=ldap3.NONE, connect_timeout=self.timeout)
        user, password = self.params.get('ad_user'), self.params.get('ad_password')
        kwargs = dict(auto_bind=ldap3.AUTO_BIND_NONE, client_strategy=ldap3.SYNC, raise_exceptions=True,
                      auto_referrals=False, auto_range=False, receive_timeout=self.timeout, read_only=False, check_names=False,
                      return_empty_attributes=False)
        if self.auth == 'simple':
            conn = ldap3.Connection(server, user=user, password=password, authentication=ldap3.SIMPLE, **kwargs)
        elif self.auth == 'ntlm':
            conn = ldap3.Connection(server, authentication=ldap3.ANONYMOUS, **kwargs)
        else:
            conn = ldap3.Connection(server, authentication=ldap3.SASL, sasl_mechanism=ldap3.KERBEROS, **kwargs)
        self.connection = conn
        step = 'open'
        try:
            conn.open(read_server_info=False)
            no_delay(conn.socket)   # before the first request is sent
            if spec.tls_mode == 'starttls':
                step = 'StartTLS'
                if not conn.start_tls(read_server_info=False):
                    raise _ConnectFailed('StartTLS was refused: %s' % (conn.result or {}).get('description'))
            step = 'rootDSE read'
            self._root_dse = None
            try:
                root = self._read_root_dse_raw(conn)  # anonymous: AD always answers it, and we need dnsHostName before a Kerberos bind
            except ldap3_exceptions.LDAPOperationResult:
                root = {}  # a DC that refuses the anonymous read: fall back to the certificate's name
            self.dns_host_name = root.get('dns_host_name') or self._name_from_certificate(conn) or spec.host
            step = 'bind'
            if self.auth == 'kerberos':
                conn.sasl_credentials = (self._kerberos_target(spec), None, self._kerberos_credentials())
                conn.bind(read_server_info=False)
            elif self.auth == 'ntlm':
                _ntlm_bind(conn, user, password, self._kerberos_target(spec))
            else:
                conn.bind(read_server_info=False)
            if not conn.bound:
                raise _ConnectFailed('bind failed: %s' % (conn.result or {}).get('description'))
            self._root_dse = self._read_root_dse_raw(conn)  # bound view (some facts hide from anonymous)
        except _ConnectFailed:
            raise
        except _StopFailover:
            raise
        except Exception as exc:  # pylint: disable=broad-except
            raise self._classify(exc, step)

    def _classify(self, exc, step):
        """An exception while connecting -> _StopFailover (retrying elsewhere cannot help) or _ConnectFailed."""
        secrets = self._secrets()
        if ldap3_exceptions is not None and isinstance(exc, ldap3_exceptions.LDAPOperationResult):
            diag = (exc.message or '').strip().rstrip('\x00')
            reason = '%s failed: %s (%s)%s' % (step, exc.description, exc.result, ': ' + diag if diag else '')
            if exc.result in _NO_FAILOVER_RESULTS:
                reason += ' (check ad_user and ad_password)'
                return _StopFailover(scrub(reason, secrets), exc.result, exc.description, diag)
            if exc.result == 8 and self.auth == 'kerberos':  # strongerAuthRequired
                reason += (' (the domain controller wants an LDAP signing/sealing layer, which ldap3 does not implement;'
                           ' bind over ldaps or starttls, or set "ldap server require strong auth = allow_sasl_over_tls")')
            return _ConnectFailed(scrub(reason, secrets))
        if type(exc).__name__ == 'GSSError' or type(exc).__module__.startswith('gssapi'):
            return _StopFailover(scrub('Kerberos: %s' % _gss_message(exc), secrets), None, 'kerberosError', None)
        if isinstance(exc, ADError):
            return _StopFailover(scrub(exc.msg, secrets), exc.result, exc.result_name, exc.diagnostic)
        if isinstance(exc, (ssl.SSLError, socket.error)) or (
                ldap3_exceptions is not None and isinstance(exc, ldap3_exceptions.LDAPException)):
            return _ConnectFailed(scrub('%s failed: %s' % (step, describe_connect_error(exc)), secrets))
        return _ConnectFailed(scrub('%s failed: %s: %s' % (step, type(exc).__name__, exc), secrets))

    def _name_from_certificate(self, conn):
        try:
            cert = conn.socket.getpeercert()
        except Exception:  # pylint: disable=broad-except
            return None
        for kind, name in (cert or {}).get('subjectAltName', ()):
            if kind == 'DNS' and '*' not in name:
                return name
        return None

    def _kerberos_target(self, spec):
        """The DC's DNS host name for the service principal ldap/<host> (never an IP address)."""
        if not _is_ip(spec.host):
            return spec.host
        return self.dns_host_name if self.dns_host_name and not _is_ip(self.dns_host_name) else spec.host

    def _kerberos_credentials(self):
        """gssapi raw credentials acquired in memory from ad_user/ad_password, or None for the default ccache."""
        user, password = self.params.get('ad_user'), self.params.get('ad_password')
        try:
            import gssapi  # pylint: disable=import-outside-toplevel
            import gssapi.raw  # pylint: disable=import-outside-toplevel
        except ImportError:
            raise ADError('ad_auth=kerberos needs the gssapi Python library', operation='bind',
                          exception=traceback.format_exc())
        if not (user and password):
            try:
                creds = gssapi.Credentials(usage='initiate')
                creds.lifetime  # pylint: disable=pointless-statement  # raises when the cache is empty or expired
            except gssapi.exceptions.GSSError as exc:
                raise ADError('Kerberos: no usable ticket in the default credential cache (%s); run kinit or give ad_user and '
                              'ad_password: %s' % (os.environ.get('KRB5CCNAME', 'default'), _gss_message(exc)), operation='bind')
            return creds
        principal = kerberos_principal(user)
        name = gssapi.Name(principal, gssapi.NameType.user)
        try:
            acquired = gssapi.raw.acquire_cred_with_password(name, password.encode('utf-8'), usage='initiate')
        except gssapi.exceptions.GSSError as exc:
            raise ADError(scrub('Kerberos: could not obtain a ticket for %s: %s' % (principal, _gss_message(exc)), [password]),
                          operation='bind')
        return acquired.creds

    # -- rootDSE ------------------------------------------------------------------------------

    _ROOT_ATTRS = ('defaultNamingContext', 'configurationNamingContext', 'schemaNamingContext',
                   'rootDomainNamingContext', 'dnsHostName', 'domainFunctionality', 'forestFunctionality',
                   'domainControllerFunctionality', 'supportedControl', 'supportedSASLMechanisms', 'serverName',
                   'isGlobalCatalogReady', 'ldapServiceName', 'highestCommittedUSN', 'namingContexts')

    def _read_root_dse_raw(self, conn):
        conn.search('', '(objectClass=*)', search_scope=ldap3.BASE, attributes=list(self._ROOT_ATTRS))
        entry = {'dn': '', 'attributes': {}}
        for item in conn.response or []:
            if item.get('type') == 'searchResEntry':
                entry = {'dn': '', 'attributes': dict((k, decode_values(k, v)) for k, v in item['raw_attributes'].items())}
        return _root_dse_facts(entry)

    def root_dse(self):
        """rootDSE facts: naming contexts, dns_host_name, functional levels (int), supported_controls..."""
        self._require_connection()
        if self._root_dse is None:
            try:
                self._root_dse = self._read_root_dse_raw(self.connection)
            except Exception as exc:  # pylint: disable=broad-except
                raise self._fail('search', '', exc)
        return dict(self._root_dse)

    def supports_control(self, oid):
        return oid in (self.root_dse().get('supported_controls') or [])

    # -- Global Catalog -----------------------------------------------------------------------

    def count_from(self, other):
        """Add ``other``'s request counts to this client's: a connection that worked for it beside it
        (a sibling, another Global Catalog connection), so the run reports every request it sent."""
        for key, value in other.stats.items():
            self.stats[key] = self.stats.get(key, 0) + value

    def sibling(self, connect=True):
        """Another connected ADClient on this client's domain controller (same host, port and
        transport), for work that runs beside this client's on another thread: an ldap3 connection
        serves one request at a time. The caller closes it. ``connect`` False: it connects on its
        first request (for work that may never need it)."""
        self._require_connection()
        spec = self.server_spec
        host = '[%s]' % spec.host if ':' in spec.host else spec.host
        params = dict(self.params)
        params['domain_controllers'] = ['%s://%s:%d' % ('ldaps' if spec.tls_mode == 'ldaps' else 'ldap', host, spec.port)]
        params['ad_port'] = None
        other = ADClient(params, range_size=self.range_size)
        return other.connect() if connect else other

    def global_catalog(self):
        """A connected ADClient on the Global Catalog (option global_catalog, else this DC on 3269/3268)."""
        if self.is_global_catalog:
            return self
        if self._gc is None:
            self._require_connection()
            params = dict(self.params)
            if not params.get('global_catalog'):
                host = self.server_spec.host
                params['global_catalog'] = '[%s]' % host if ':' in host else host
            gc = ADClient(params, global_catalog=True, range_size=self.range_size)
            gc.connect()
            self._gc = gc
        return self._gc

    # -- reads --------------------------------------------------------------------------------

    def _controls_list(self, controls):
        out = []
        for control in controls or []:
            if isinstance(control, str):
                out.append((control, False, None))
            elif isinstance(control, (tuple, list)):
                out.append(tuple(control))
            else:
                out.append(control)  # an ldap3/pyasn1 Control
        return out or None

    def _ask_attributes(self, attributes):
        if attributes is None:
            return [ldap3.ALL_ATTRIBUTES]
        if isinstance(attributes, str):
            attributes = [attributes]
        out = []
        for attr in attributes:
            if self.range_size and ';' not in attr and attr.lower() in RANGED_ATTRIBUTES:
                out.append('%s;range=0-%d' % (attr, self.range_size - 1))
            else:
                out.append(attr)
        return out

    def search(self, base, ldap_filter='(objectClass=*)', attributes=None, scope='subtree', controls=None,
               binary_attributes=None, page_size=None, expected=None):
        """Search; yields {'dn': str, 'attributes': {name: [values]}} (ranged values reassembled).

        Paged (the paged-results control, ``page_size`` entries a page), unless the answer is expected
        to fit in one page: a base-scope search, or ``expected`` (the caller's estimate of the entries:
        a filter naming that many objects by a unique key, or the groups a run wrote) within the page
        size. That search is sent once without the control and with a size limit of one page; an
        answer over the limit (sizeLimitExceeded) is asked again, paged, before anything is yielded.
        Samba 4.17 ignores a request's size limit (it answers the whole search): callers give an
        estimate only where the filter bounds the answer. Samba answers a paged search more slowly:
        nine searches of 200 users by objectSid took 0.55-0.78 s paged against 0.29-0.32 s unpaged,
        on the lab's 20,000-user DC and on its Global Catalog (benchmarks/paged_search.py).

        An answer cut short by the server (sizeLimitExceeded on a paged search, timeLimitExceeded, any
        result but success) is an error, never a partial list: a member missing from a partial
        answer would be removed from its group."""
        conn = self._require_connection()
        if scope not in _SCOPES:
            raise ADError('Invalid search scope %r (expected base, onelevel or subtree)' % scope, operation='search', dn=base)
        ldap_scope = {'base': ldap3.BASE, 'onelevel': ldap3.LEVEL, 'subtree': ldap3.SUBTREE}[scope]
        binary = frozenset(a.lower() for a in (binary_attributes or ()))
        ask = self._ask_attributes(attributes)
        size = int(page_size or self.page_size)
        if scope == 'base' or (expected is not None and int(expected) <= size):
            response, result = self._send_search(conn, base, ldap_filter, ldap_scope, ask, controls, size_limit=size)
            if result.get('result') != RESULT_SIZE_LIMIT_EXCEEDED:   # over the limit: asked again, paged
                self._refuse_partial('search', base, result)
                for item in response:
                    if item.get('type') == 'searchResEntry':
                        yield self._entry(item, binary, controls)
                return
        cookie = None
        while True:
            response, result = self._send_search(conn, base, ldap_filter, ldap_scope, ask, controls,
                                                 paged_size=size, paged_cookie=cookie)
            self._refuse_partial('search', base, result)
            try:
                cookie = result['controls'][OID_PAGED_RESULTS]['value']['cookie']
            except (KeyError, TypeError):
                cookie = None
            try:
                for item in response:
                    if item.get('type') != 'searchResEntry':
                        continue
                    yield self._entry(item, binary, controls)
            except GeneratorExit:
                if cookie:
                    self._abandon_paged(base, ldap_filter, ldap_scope, cookie)
                raise
            if not cookie:
                break

    def _send_search(self, conn, base, ldap_filter, ldap_scope, ask, controls, **limits):
        """One search request (``limits``: ldap3's paging or size limit arguments), counted:
        ``(response entries, result)``; a failure or a referral is an ADError."""
        self.stats['searches'] += 1
        try:
            conn.search(base, ldap_filter, search_scope=ldap_scope, attributes=ask, controls=self._controls_list(controls),
                        **limits)
        except Exception as exc:  # pylint: disable=broad-except
            raise self._fail('search', base, exc, reason=None)
        result = conn.result or {}
        self._refuse_referral('search', base, result)
        return list(conn.response or []), result

    def _refuse_partial(self, operation, dn, result):
        """A search answer the server cut short (sizeLimitExceeded, timeLimitExceeded, ...) is an error."""
        code = result.get('result')
        if code in (None, 0):
            return
        diagnostic = (result.get('message') or '').strip() or None
        name = result.get('description') or str(code)
        raise ADError(format_ldap_error(operation, self.server, dn, result_name=name, result=code, diagnostic=diagnostic,
                                        reason='the server answered only part of the search; nothing is planned from a '
                                               'partial answer (raise the server\'s limits, or lower ad_page_size)'),
                      operation=operation, server=self.server, dn=dn, result=code, result_name=name, diagnostic=diagnostic)

    def _abandon_paged(self, base, ldap_filter, ldap_scope, cookie):
        """The caller stopped reading a paged search: release the server's result set (page size 0, RFC 2696).

        Windows keeps at most MaxResultSetsPerConn (10) open result sets per connection.
        """
        try:
            self.connection.search(base, ldap_filter, search_scope=ldap_scope, attributes=['1.1'], paged_size=0, paged_cookie=cookie)
        except Exception:  # pylint: disable=broad-except
            pass  # best effort: the server drops it with the connection anyway

    def _entry(self, item, binary, controls):
        dn = item.get('dn')
        attrs = {}
        ranged = {}
        for key, raw in (item.get('raw_attributes') or {}).items():
            rng = parse_range(key)
            vals = decode_values(key, raw, binary)
            if rng is None:
                attrs.setdefault(key, []).extend(vals)
                continue
            name, _low, high = rng
            attrs.setdefault(name, []).extend(vals)
            if high is not None:
                ranged[name] = high + 1
        for name, start in ranged.items():
            attrs[name].extend(self._read_range(_plain_dn(dn), name, start, binary, controls))
        return {'dn': dn, 'attributes': attrs}

    def _read_range(self, dn, attr, start, binary=frozenset(), controls=None):
        """Read attr;range=start-* (or start-start+range_size-1) repeatedly until the server says '*'."""
        conn = self._require_connection()
        out = []
        guard = 0
        while True:
            guard += 1
            if guard > 100000:
                raise ADError('Ranged read of %s of %r on %s does not end' % (attr, dn, self.server), operation='search', dn=dn)
            ask = '%s;range=%d-%s' % (attr, start, '%d' % (start + self.range_size - 1) if self.range_size else '*')
            self.stats['searches'] += 1
            try:
                conn.search(dn, '(objectClass=*)', search_scope=ldap3.BASE, attributes=[ask], controls=self._controls_list(controls))
            except Exception as exc:  # pylint: disable=broad-except
                raise self._fail('search', dn, exc)
            self._refuse_referral('search', dn, conn.result or {})
            got = None
            for item in conn.response or []:
                if item.get('type') != 'searchResEntry':
                    continue
                for key, raw in (item.get('raw_attributes') or {}).items():
                    rng = parse_range(key)
                    if rng is not None and rng[0].lower() == attr.lower():
                        got = (rng, decode_values(key, raw, binary))
                    elif rng is None and key.lower() == attr.lower():
                        got = ((attr, start, None), decode_values(key, raw, binary))
            if got is None:
                return out  # no value at or after start (the attribute shrank meanwhile)
            (_name, _low, high), vals = got
            out.extend(vals)
            if high is None:
                return out
            start = high + 1

    def read_all_values(self, dn, attribute, binary_attributes=None):
        """Every value of a multi-valued attribute of one object, with ranged retrieval."""
        binary = frozenset(a.lower() for a in (binary_attributes or ()))
        if self.range_size:
            return self._read_range(dn, attribute, 0, binary)
        for entry in self.search(dn, '(objectClass=*)', [attribute], scope='base', binary_attributes=binary_attributes):
            return values(entry, attribute)
        return []

    def get(self, dn, attributes=None, controls=None, binary_attributes=None):
        """One object by DN ({'dn', 'attributes'}), or None when it does not exist."""
        try:
            for entry in self.search(dn, '(objectClass=*)', attributes, scope='base', controls=controls,
                                     binary_attributes=binary_attributes):
                return entry
        except ADError as exc:
            if exc.result == 32:  # noSuchObject
                return None
            raise
        return None

    # -- writes -------------------------------------------------------------------------------

    def _write(self, operation, dn, counter, call):
        conn = self._require_connection()
        self.stats[counter] += 1
        try:
            call(conn)
        except Exception as exc:  # pylint: disable=broad-except
            raise self._fail(operation, dn, exc)
        self._refuse_referral(operation, dn, conn.result or {})
        return conn.result

    def _refuse_referral(self, operation, dn, result):
        """A referral (the DN is in a naming context this server does not hold) is an error, never an empty answer."""
        if result.get('result') != 10:
            return
        refs = ', '.join(result.get('referrals') or []) or 'no URL given'
        raise ADError(format_ldap_error(operation, self.server, dn, result_name='referral', result=10,
                                        diagnostic=(result.get('message') or '').strip() or None,
                                        reason='the DN is not in a naming context of this server (referred to %s); '
                                               'check the DN or connect to a domain controller of its domain' % refs),
                      operation=operation, server=self.server, dn=dn, result=10, result_name='referral',
                      diagnostic=(result.get('message') or '').strip() or None)

    def add(self, dn, attributes):
        """Create an object; attributes include objectClass ({name: value or [values]})."""
        attrs = {}
        for name, vals in (attributes or {}).items():
            if vals is None or vals == []:
                continue
            attrs[name] = vals if isinstance(vals, list) else [vals]
        return self._write('add', dn, 'adds', lambda conn: conn.add(dn, attributes=attrs))

    def modify(self, dn, changes, controls=None, permissive=True):
        """changes: {attr: ('add'|'delete'|'replace', [values])} (or a list of such tuples per attribute).

        With ``permissive`` (default) adding a value that is already there or deleting one that is
        not is not an error: the permissive-modify control is sent when the server supports it.
        Samba 4.17 ignores that control for linked attributes such as ``member`` (it answers
        entryAlreadyExists / unwillingToPerform); the modify is then retried once without the
        values that are already present (adds) or already absent (deletes), read with ranged
        retrieval. A delete of no value (clear the attribute) is never altered.
        """
        normalized = normalize_changes(changes)
        ctrl = self._controls_list(controls) or []
        if permissive and self.supports_control(OID_PERMISSIVE_MODIFY) and not any(
                isinstance(c, tuple) and c[0] == OID_PERMISSIVE_MODIFY for c in ctrl):
            ctrl.append((OID_PERMISSIVE_MODIFY, False, None))
        try:
            return self._send_modify(dn, normalized, ctrl)
        except ADError as exc:
            if not permissive or not _permissive_retry_applies(exc, normalized):
                raise
            reduced = self._without_redundant_values(dn, normalized)
            if reduced == normalized:
                raise
        if not reduced:
            return None
        return self._send_modify(dn, reduced, ctrl)

    def _send_modify(self, dn, normalized, ctrl):
        ops = {'add': ldap3.MODIFY_ADD, 'delete': ldap3.MODIFY_DELETE, 'replace': ldap3.MODIFY_REPLACE}
        ldap_changes = {}
        for attr, op, vals in normalized:
            ldap_changes.setdefault(attr, []).append((ops[op], vals))
        return self._write('modify', dn, 'modifies', lambda conn: conn.modify(dn, ldap_changes, controls=ctrl or None))

    def _without_redundant_values(self, dn, normalized):
        """normalized changes minus the adds of present values and the deletes of absent values."""
        current = {}
        out = []
        for attr, op, vals in normalized:
            if op == 'replace' or (op == 'delete' and not vals):
                out.append((attr, op, vals))
                current[attr.lower()] = None if op == 'delete' else set(_value_key(v) for v in vals)
                continue
            if attr.lower() not in current:
                current[attr.lower()] = set(_value_key(v) for v in self.read_all_values(dn, attr))
            present = current[attr.lower()]
            if present is None:
                present = current[attr.lower()] = set()
            kept = []
            for value in vals:
                key = _value_key(value)
                if op == 'add' and key not in present:
                    kept.append(value)
                    present.add(key)
                elif op == 'delete' and key in present:
                    kept.append(value)
                    present.discard(key)
            if kept:
                out.append((attr, op, kept))
        return out

    def modify_dn(self, dn, new_rdn, new_superior=None):
        """Rename (new_rdn like 'CN=New name', escaped) and/or move (new_superior) an object."""
        return self._write('modify_dn', dn, 'modify_dns',
                           lambda conn: conn.modify_dn(dn, new_rdn, delete_old_dn=True, new_superior=new_superior))

    def delete(self, dn, tree=False):
        """Delete an object (``tree``: with its children, tree-delete control)."""
        ctrl = [(OID_TREE_DELETE, True, None)] if tree else None
        return self._write('delete', dn, 'deletes', lambda conn: conn.delete(dn, controls=ctrl))

    def read_security_descriptor(self, dn, sd_flags=SD_FLAGS_DACL):
        """The binary nTSecurityDescriptor (by default only owner-less DACL part, SD flags control)."""
        ctrl = [sd_flags_control(sd_flags)]
        entry = None
        for item in self.search(dn, '(objectClass=*)', ['nTSecurityDescriptor'], scope='base', controls=ctrl):
            entry = item
        if entry is None:
            raise ADError('LDAP search of %r on %s returned no object' % (dn, self.server), operation='search', server=self.server, dn=dn)
        sd = first(entry, 'nTSecurityDescriptor')
        if sd is None:
            raise ADError('Could not read the security descriptor of %r on %s: the bind account may lack READ_CONTROL'
                          % (dn, self.server), operation='search', server=self.server, dn=dn)
        return sd

    def write_security_descriptor(self, dn, sd_bytes, sd_flags=SD_FLAGS_DACL):
        """Replace the parts of nTSecurityDescriptor selected by sd_flags (DACL by default)."""
        ctrl = [sd_flags_control(sd_flags)]
        return self.modify(dn, {'nTSecurityDescriptor': ('replace', [bytes(sd_bytes)])}, controls=ctrl, permissive=False)

    # -- life cycle ---------------------------------------------------------------------------

    def close(self):
        if self._gc is not None:
            self._gc.close()
            self._gc = None
        self._close_quietly()

    def __enter__(self):
        return self.connect()

    def __exit__(self, *exc_info):
        self.close()
        return False


class _ConnectFailed(Exception):
    def __init__(self, reason):
        super(_ConnectFailed, self).__init__(reason)
        self.reason = reason


class _StopFailover(Exception):
    def __init__(self, reason, result=None, result_name=None, diagnostic=None):
        super(_StopFailover, self).__init__(reason)
        self.reason = reason
        self.result = result
        self.result_name = result_name
        self.diagnostic = diagnostic


def sd_flags_control(flags=SD_FLAGS_DACL, criticality=True):
    """The LDAP_SERVER_SD_FLAGS control (1.2.840.113556.1.4.801): BER SEQUENCE { INTEGER flags }."""
    flags = int(flags)
    if not 0 <= flags <= 0xF:
        raise ValueError('SD flags must be between 0 and 15')
    return (OID_SD_FLAGS, bool(criticality), b'\x30\x03\x02\x01' + bytes(bytearray([flags])))


def _value_key(value):
    """Comparison key of an attribute value: DNs by dn_key, other text as is, bytes as is."""
    if isinstance(value, str) and '=' in value:
        try:
            return dn_key(value)
        except ValueError:
            return value
    return value


def _permissive_retry_applies(exc, normalized):
    ops = set(op for _attr, op, vals in normalized if vals)
    if exc.result in (20, 68) and 'add' in ops:        # attributeOrValueExists, entryAlreadyExists (Samba, linked)
        return True
    if exc.result in (16, 53) and 'delete' in ops:     # noSuchAttribute, unwillingToPerform (Samba, linked)
        return True
    return False


def _plain_dn(dn):
    """The DN of an entry read with the extended-DN control ('<GUID=...>;<SID=...>;CN=...'), usable
    as a search base; a plain DN unchanged."""
    return split_extended_dn(dn)[0] if dn else dn


def _is_ip(host):
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
            return True
        except (OSError, ValueError):
            pass
    return False


def _gss_message(exc):
    try:
        return exc.gen_message()
    except Exception:  # pylint: disable=broad-except
        return str(exc)


def kerberos_principal(user):
    """ad_user -> Kerberos principal: user@suffix -> user@SUFFIX (realm in upper case), DOMAIN\\user -> user (default realm)."""
    if '\\' in user:
        return user.split('\\', 1)[1]
    if '@' in user:
        name, realm = user.rsplit('@', 1)
        return '%s@%s' % (name, realm.upper())
    return user


def _int_or_none(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _unique(items):
    seen, out = set(), []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def _root_dse_facts(entry):
    return {
        'default_naming_context': first(entry, 'defaultNamingContext'),
        'configuration_naming_context': first(entry, 'configurationNamingContext'),
        'schema_naming_context': first(entry, 'schemaNamingContext'),
        'root_domain_naming_context': first(entry, 'rootDomainNamingContext'),
        'naming_contexts': list(values(entry, 'namingContexts')),
        'dns_host_name': first(entry, 'dnsHostName'),
        'domain_functionality': _int_or_none(first(entry, 'domainFunctionality')),
        'forest_functionality': _int_or_none(first(entry, 'forestFunctionality')),
        'domain_controller_functionality': _int_or_none(first(entry, 'domainControllerFunctionality')),
        'supported_controls': _unique(values(entry, 'supportedControl')),
        'supported_sasl_mechanisms': list(values(entry, 'supportedSASLMechanisms')),
        'server_name': first(entry, 'serverName'),
        'is_global_catalog_ready': (first(entry, 'isGlobalCatalogReady') or '').upper() == 'TRUE',
        'ldap_service_name': first(entry, 'ldapServiceName'),
    }


def _tls_channel_bindings(sock):
    """RFC 5929 tls-server-end-point application data of a TLS socket, or None without TLS."""
    try:
        der = sock.getpeercert(True)
    except (AttributeError, ValueError):
        return None
    if not der:
        return None
    from cryptography import x509  # pylint: disable=import-outside-toplevel
    from cryptography.hazmat.primitives import hashes  # pylint: disable=import-outside-toplevel
    cert = x509.load_der_x509_certificate(der)
    try:
        algorithm = cert.signature_hash_algorithm
    except Exception:  # pylint: disable=broad-except
        algorithm = None
    if algorithm is None or algorithm.name in ('md5', 'sha1'):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(der)
    return b'tls-server-end-point:' + digest.finalize()


def _drop_ntlm_key_exchange(ctx):
    """Do not offer NTLMSSP_NEGOTIATE_KEY_EXCH when neither signing nor sealing is wanted.

    Without sign/seal pyspnego (0.12) still offers key exchange and then sends a one-byte
    placeholder EncryptedRandomSessionKey; Windows ignores it, Samba rejects the AUTHENTICATE
    message ("Client-supplied KEY_EXCH session key was of invalid length (1)", bind answered
    with invalidCredentials data 57). Key exchange only protects the sign/seal keys, which are
    not used here (TLS protects the session), so leaving it out is what MS-NLMP allows. pyspnego
    keeps its requested flags in ``_context_req``; if a future version does not, nothing is changed.
    """
    try:
        from spnego._ntlm_raw.messages import NegotiateFlags  # pylint: disable=import-outside-toplevel
    except ImportError:
        return
    if isinstance(getattr(ctx, '_context_req', None), int):
        ctx._context_req &= ~NegotiateFlags.key_exch  # pylint: disable=protected-access


def _ntlm_bind(conn, user, password, target_host):
    """NTLM bind as a SASL GSS-SPNEGO exchange of raw NTLMSSP tokens made by pyspnego.

    ldap3's own NTLM bind uses the "Sicily" bind choices of MS-ADTS, which Samba's LDAP server
    does not decode (it drops the connection with LDAP_PROTOCOL_ERROR at the first, package
    discovery, request), and needs an MD4 that OpenSSL 3 no longer provides. GSS-SPNEGO is what
    Windows clients themselves use; pyspnego brings its own MD4. No signing or sealing is
    negotiated (ldap3 implements no SASL security layer, and both Windows and Samba refuse one
    inside TLS: "Sign or Seal are not allowed if TLS is used"); the TLS channel binding token is
    sent so that DCs enforcing LDAP channel binding accept the bind.
    """
    try:
        import spnego  # pylint: disable=import-outside-toplevel
        from spnego.channel_bindings import GssChannelBindings  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise ADError('ad_auth=ntlm needs the pyspnego Python library', operation='bind', exception=traceback.format_exc())
    from ldap3.operation.bind import bind_operation  # pylint: disable=import-outside-toplevel

    app_data = _tls_channel_bindings(conn.socket)
    bindings = GssChannelBindings(application_data=app_data) if app_data else None
    ctx = spnego.client(user, password, hostname=target_host or 'unspecified', service='ldap', protocol='ntlm',
                        channel_bindings=bindings, context_req=spnego.ContextReq.no_integrity)
    _drop_ntlm_key_exchange(ctx)
    token = ctx.step()
    for _round in range(5):
        request = bind_operation(conn.version, ldap3.SASL, None, None, 'GSS-SPNEGO', token)
        conn.post_send_single_response(conn.send('bindRequest', request, None))
        result = conn.result or {}
        code = result.get('result')
        if code == 0:
            conn.bound = True
            return
        if code != 14:  # saslBindInProgress
            break
        token = ctx.step(result.get('saslCreds'))
        if token is None:
            break
    raise ADError('NTLM bind did not complete: %s' % (conn.result or {}).get('description'), operation='bind',
                  result=(conn.result or {}).get('result'), result_name=(conn.result or {}).get('description'),
                  diagnostic=(conn.result or {}).get('message'))
