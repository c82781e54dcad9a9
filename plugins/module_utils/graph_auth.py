# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tokens for Microsoft Graph (msal): client secret, certificate, managed identity; clouds.

``GraphAuth(params)`` takes the options of ``GRAPH_AUTH_ARGSPEC`` (documented by the
``hybrid_identity.cloud_sync.graph_auth`` doc fragment) and gives ``get_token(force_refresh)``.
It owns the one ``requests.Session`` that msal and ``GraphClient`` share, so the login host and
Graph are reached with the same trust settings (``graph_ca_bundle`` / ``graph_validate_certs``).

Choices made here:

* The token audience is the Graph resource of ``cloud`` (``https://graph.microsoft.com`` in the
  public cloud) even when ``graph_endpoint`` is overridden: an override (a proxy, a test
  emulator) changes where requests go, not which resource the token is for.
* Certificates: a PEM file holding the certificate and its private key (optionally encrypted with
  ``client_certificate_password``), or a PKCS#12 file (``.pfx``/``.p12``). The SHA-1 and SHA-256
  thumbprints are computed with ``cryptography``; msal is given the certificate so that it signs
  the client assertion with PS256 and names the certificate by ``x5t#S256`` (SHA-1 is deprecated).
* Tokens are cached for the run (msal's in-memory cache plus a copy here); ``force_refresh`` (used
  once after a 401 ``InvalidAuthenticationToken``) builds a fresh msal application, which is the
  only way to bypass msal's cache for the client-credential and managed-identity flows.
* Secrets never appear in messages: errors name the tenant, client id, method and authority.
* Managed identity is used only when asked for (``auth_method=managed_identity``, or
  ``managed_identity_client_id`` set) or when the environment names an identity endpoint (App
  Service / Functions, Service Fabric, Azure Machine Learning, Azure Arc: the variables msal's
  ``ManagedIdentityClient`` itself reads). An Azure VM has no such variable, so there it must be
  asked for: with nothing configured, ``auto`` fails with a message naming the options and their
  environment variables instead of sending a request to the instance metadata service that, off
  Azure, answers nothing useful (msal then failed with a JSON parse error).
* The names of the Ansible ecosystem are accepted: AWX's "Microsoft Azure Resource Manager"
  credential injects ``AZURE_CLIENT_ID``, ``AZURE_TENANT``, ``AZURE_SECRET`` and
  ``AZURE_CLOUD_ENVIRONMENT`` (ansible/awx ``awx/main/models/credential/injectors.py``, ``azure_rm``),
  azure.azcollection names the options ``tenant``, ``secret``, ``cloud_environment``
  (``plugins/module_utils/azure_rm_common.py``, ``AZURE_CREDENTIAL_ENV_MAPPING``); see ``argspec.py``.
  Its user and password variant (``AZURE_AD_USER``/``AZURE_PASSWORD``) is a user sign-in, which is
  not supported: named as such when it is all there is.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import threading
import time
import traceback

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.argspec import pem_file_problem
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.errors import CloudSyncError

try:
    import requests
    from requests.adapters import HTTPAdapter
    HAS_REQUESTS = True
    REQUESTS_IMPORT_ERROR = None
except ImportError:
    requests = HTTPAdapter = None
    HAS_REQUESTS = False
    REQUESTS_IMPORT_ERROR = traceback.format_exc()

try:
    import msal
    HAS_MSAL = True
    MSAL_IMPORT_ERROR = None
except ImportError:
    msal = None
    HAS_MSAL = False
    MSAL_IMPORT_ERROR = traceback.format_exc()

# cryptography serves certificate credentials only (load_certificate): it is looked for here and
# imported when a certificate is loaded. Importing it cost every run 45 ms of its start, a tenth
# of a no-op run on the benchmark tenant.
try:
    from importlib.util import find_spec
    HAS_CRYPTOGRAPHY = find_spec('cryptography') is not None
except (ImportError, ValueError):
    HAS_CRYPTOGRAPHY = False
CRYPTOGRAPHY_IMPORT_ERROR = None if HAS_CRYPTOGRAPHY else 'No module named cryptography'


def _cryptography():
    """``(x509, hashes, serialization, pkcs12)`` from cryptography, imported on first use."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.serialization import pkcs12
    except ImportError as exc:
        raise GraphAuthError('The Python library cryptography is required for certificate credentials and cannot be '
                             'imported: %s' % exc)
    return x509, hashes, serialization, pkcs12


# cloud -> (login host, Graph endpoint); the token resource is the Graph endpoint.
CLOUDS = {
    'public': ('https://login.microsoftonline.com', 'https://graph.microsoft.com'),
    'usgov': ('https://login.microsoftonline.us', 'https://graph.microsoft.us'),
    'usgov_dod': ('https://login.microsoftonline.us', 'https://dod-graph.microsoft.us'),
    'china': ('https://login.partner.microsoftonline.cn', 'https://microsoftgraph.chinacloudapi.cn'),
}

# azure.azcollection's / AWX's cloud_environment names (msrestazure cloud names) -> our cloud.
# https://learn.microsoft.com/en-us/graph/deployments : US Government L4 (GCC High) uses
# graph.microsoft.us, L5 (DoD) dod-graph.microsoft.us; both are the "AzureUSGovernment" ARM cloud, so
# that name means usgov and a DoD tenant sets cloud=usgov_dod. Microsoft Cloud Germany is closed.
CLOUD_ENVIRONMENTS = {
    'AzureCloud': 'public',
    'AzureUSGovernment': 'usgov',
    'AzureChinaCloud': 'china',
}

AUTH_METHODS = ('client_secret', 'certificate', 'managed_identity')

# Environment variables that name a managed identity endpoint (msal.managed_identity: App Service and
# Functions, Service Fabric, Azure Machine Learning, Azure Arc). AZURE_POD_IDENTITY_AUTHORITY_HOST
# only moves the VM endpoint and says nothing about whether an identity is wanted: not a signal.
MANAGED_IDENTITY_SIGNALS = (
    ('IDENTITY_ENDPOINT', 'IDENTITY_HEADER'),
    ('MSI_ENDPOINT', 'MSI_SECRET'),
    ('IDENTITY_ENDPOINT', 'IMDS_ENDPOINT'),
)

# Renew a cached token this many seconds before it expires.
EXPIRY_MARGIN = 300

USER_AGENT = 'hybrid_identity.cloud_sync (Ansible)'


class GraphAuthError(CloudSyncError):
    """A token could not be obtained (bad options, unreadable certificate, login host refused)."""


def missing_library():
    """(library name, traceback) of the first missing third-party library, or (None, None)."""
    if not HAS_REQUESTS:
        return 'requests', REQUESTS_IMPORT_ERROR
    if not HAS_MSAL:
        return 'msal', MSAL_IMPORT_ERROR
    if not HAS_CRYPTOGRAPHY:
        return 'cryptography', CRYPTOGRAPHY_IMPORT_ERROR
    return None, None


def _https_url(value, option):
    url = str(value).strip().rstrip('/')
    if not url.lower().startswith('https://') or len(url) <= len('https://'):
        raise GraphAuthError('%s must be an https:// URL, not %r' % (option, value))
    return url


def endpoints(params):
    """(authority host, Graph endpoint, token resource) from ``cloud`` and the overrides."""
    cloud = cloud_name(params.get('cloud'))
    login, graph = CLOUDS[cloud]
    authority_host = _https_url(params['authority_host'], 'authority_host') if params.get('authority_host') else login
    endpoint = _https_url(params['graph_endpoint'], 'graph_endpoint') if params.get('graph_endpoint') else graph
    for version in ('/v1.0', '/beta'):
        if endpoint.lower().endswith(version):
            raise GraphAuthError('graph_endpoint must not include the API version (%s): give %s'
                                 % (version, endpoint[:-len(version)]))
    return authority_host, endpoint, graph


def cloud_name(value):
    """Our cloud name from ``cloud`` (or its alias ``cloud_environment``): ours, or an azure.azcollection
    / AWX name (``AzureCloud``, ``AzureUSGovernment``, ``AzureChinaCloud``)."""
    cloud = value or 'public'
    cloud = CLOUD_ENVIRONMENTS.get(cloud, cloud)
    if cloud not in CLOUDS:
        raise GraphAuthError('Unknown cloud %r (cloud, alias cloud_environment, from CLOUDSYNC_AZURE_CLOUD or '
                             'AZURE_CLOUD_ENVIRONMENT): expected one of %s' % (value, ', '.join(sorted(CLOUDS) + sorted(CLOUD_ENVIRONMENTS))))
    return cloud


def managed_identity_signal(environ=None):
    """The environment variables naming a managed identity endpoint, or None."""
    environ = os.environ if environ is None else environ
    for names in MANAGED_IDENTITY_SIGNALS:
        if all(environ.get(name) for name in names):
            return names
    return None


NO_CREDENTIALS = (
    'No credentials for Microsoft Graph: give tenant_id (alias tenant; AZURE_TENANT_ID or AZURE_TENANT), '
    'client_id (AZURE_CLIENT_ID) and either client_secret (alias secret; AZURE_CLIENT_SECRET or AZURE_SECRET) or '
    'client_certificate_path (AZURE_CLIENT_CERTIFICATE_PATH); an AWX "Microsoft Azure Resource Manager" credential '
    'sets these. To use the managed identity of the Azure VM this runs on, set auth_method=managed_identity '
    '(and managed_identity_client_id for a user-assigned one).')


def choose_method(params, environ=None):
    """The auth method ``auto`` resolves to: certificate, else client secret, else managed identity
    when asked for by ``managed_identity_client_id`` or signalled by the environment; else a
    GraphAuthError naming the options (never a silent request to the metadata service)."""
    method = params.get('auth_method') or 'auto'
    if method == 'auto':
        if params.get('client_certificate_path'):
            return 'certificate'
        if params.get('client_secret'):
            return 'client_secret'
        if params.get('managed_identity_client_id') or managed_identity_signal(environ):
            return 'managed_identity'
        raise GraphAuthError(missing_credentials_text(params, environ))
    if method not in AUTH_METHODS:
        raise GraphAuthError('Unknown auth_method %r' % method)
    return method


def missing_credentials_text(params, environ=None):
    """What to say when ``auto`` finds no credential: the options and variables, what was found."""
    environ = os.environ if environ is None else environ
    text = NO_CREDENTIALS
    given = [name for name in ('tenant_id', 'client_id') if (params.get(name) or '').strip()]
    if given:
        text += ' Found %s but neither client_secret nor client_certificate_path.' % ' and '.join(given)
    if environ.get('AZURE_AD_USER') or environ.get('AZURE_PASSWORD'):
        text += (' AZURE_AD_USER/AZURE_PASSWORD (an Azure credential with a user name and password instead of a '
                 'client and tenant) are not supported: a user sign-in cannot run unattended; give the credential '
                 'a client (application) ID, a secret and a tenant.')
    return text


class _Session(requests.Session if HAS_REQUESTS else object):
    """A requests.Session whose ``verify`` is not silently replaced by ``REQUESTS_CA_BUNDLE``.

    requests lets that environment variable override ``session.verify`` for every request that
    does not pass ``verify=`` (msal never does). When a CA bundle was given (or validation was
    turned off) it is passed on each request; with the default trust store the environment still
    applies, as users of requests expect. Proxies from the environment keep working."""

    def request(self, method, url, *args, **kwargs):  # pylint: disable=arguments-differ
        if self.verify is not True and 'verify' not in kwargs:
            kwargs['verify'] = self.verify
        return super(_Session, self).request(method, url, *args, **kwargs)


def make_session(params, pool_size=None, warn=None):
    """The shared session: CA bundle or default trust, TLS validation, connection pool size."""
    if not HAS_REQUESTS:
        raise GraphAuthError('The Python library requests is required to talk to Microsoft Graph')
    session = _Session()
    session.headers['User-Agent'] = USER_AGENT
    if params.get('graph_validate_certs') is False:
        session.verify = False
        if warn is not None:
            warn('graph_validate_certs=false: TLS certificates of the login host and Microsoft Graph are not validated; '
                 'anyone on the network path can read the token and the directory data')
        try:
            import urllib3
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        except (ImportError, AttributeError):
            pass
    elif params.get('graph_ca_bundle'):
        problem = pem_ca_problem(params['graph_ca_bundle'])
        if problem:
            raise GraphAuthError('graph_ca_bundle %s %s' % (params['graph_ca_bundle'], problem))
        session.verify = params['graph_ca_bundle']
    else:
        session.verify = True
    size = max(int(pool_size or params.get('graph_parallelism') or 4), 1) + 2
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=size)
    session.mount('https://', adapter)
    session.mount('http://', HTTPAdapter(pool_connections=2, pool_maxsize=2))
    return session


def pem_ca_problem(path):
    """Why ``path`` cannot serve as a CA bundle (None when it can): missing, unreadable, not PEM, or
    PEM without a certificate. A directory is left to the TLS library (an OpenSSL CA directory)."""
    return pem_file_problem(path, allow_directory=True)


def load_certificate(path, password=None):
    """Read a PEM (certificate + private key) or PKCS#12 file.

    Returns dict(private_key_pem (unencrypted PKCS#8, str), certificate_pem (str),
    thumbprint_sha1, thumbprint_sha256 (upper-case hex), subject, not_after)."""
    if not HAS_CRYPTOGRAPHY:
        raise GraphAuthError('The Python library cryptography is required for certificate credentials')
    x509, hashes, serialization, pkcs12 = _cryptography()
    try:
        with open(path, 'rb') as handle:
            data = handle.read()
    except (IOError, OSError) as exc:
        raise GraphAuthError('Cannot read client_certificate_path %s: %s' % (path, exc.strerror or exc))
    pwd = password.encode('utf-8') if password else None
    key = cert = None
    if b'-----BEGIN' in data:
        blocks = data.split(b'-----END ')
        for block in blocks:
            start = block.find(b'-----BEGIN ')
            if start < 0:
                continue
            label = block[start + len(b'-----BEGIN '):].split(b'-----', 1)[0]
            pem = block[start:] + b'-----END ' + label + b'-----\n'
            if label == b'CERTIFICATE' and cert is None:
                cert = x509.load_pem_x509_certificate(pem)
            elif label.endswith(b'PRIVATE KEY') and key is None:
                try:
                    key = serialization.load_pem_private_key(pem, password=pwd)
                except TypeError as exc:
                    # The key is encrypted and no password was given, or the reverse.
                    if pwd:
                        raise GraphAuthError('The private key in %s is not encrypted: leave client_certificate_password empty' % path)
                    raise GraphAuthError('The private key in %s is encrypted: give client_certificate_password (%s)' % (path, exc))
                except ValueError:
                    raise GraphAuthError('Cannot load the private key in %s: wrong client_certificate_password, '
                                         'or not a supported key' % path)
    else:
        try:
            key, cert, unused_chain = pkcs12.load_key_and_certificates(data, pwd)
        except ValueError:
            raise GraphAuthError('Cannot read %s as PEM or PKCS#12 (wrong client_certificate_password?)' % path)
    if cert is None:
        raise GraphAuthError('No certificate (-----BEGIN CERTIFICATE-----) found in client_certificate_path %s' % path)
    if key is None:
        raise GraphAuthError('No private key found in client_certificate_path %s: the file must hold the certificate '
                             'and its private key' % path)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode('ascii')
    try:
        not_after = cert.not_valid_after_utc.isoformat()
    except AttributeError:  # cryptography < 42
        not_after = cert.not_valid_after.isoformat()
    return dict(
        private_key_pem=key_pem,
        certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode('ascii'),
        thumbprint_sha1=cert.fingerprint(hashes.SHA1()).hex().upper(),  # nosec: a name, not a signature
        thumbprint_sha256=cert.fingerprint(hashes.SHA256()).hex().upper(),
        subject=cert.subject.rfc4514_string(),
        not_after=not_after,
    )


def _msal_error_text(result):
    """'invalid_client: AADSTS7000215: ... (correlation id ..., trace id ...)' from an msal error dict."""
    text = '%s: %s' % (result.get('error'), (result.get('error_description') or '').split('\r\n')[0].strip())
    ids = []
    for key, label in (('correlation_id', 'correlation id'), ('trace_id', 'trace id')):
        if result.get(key):
            ids.append('%s %s' % (label, result[key]))
    if ids:
        text += ' (%s)' % ', '.join(ids)
    return text


class GraphAuth(object):
    """Token provider for one run. ``get_token(force_refresh=False) -> access token (str)``."""

    def __init__(self, params, session=None, warn=None):
        missing, unused_tb = missing_library()
        if missing:
            raise GraphAuthError('The Python library %s is required to talk to Microsoft Graph' % missing)
        self.params = params
        self.method = choose_method(params)
        self.authority_host, self.graph_endpoint, self.resource = endpoints(params)
        self.scope = self.resource + '/.default'
        self.session = session if session is not None else make_session(params, warn=warn)
        self.tenant_id = (params.get('tenant_id') or '').strip() or None
        self.client_id = (params.get('client_id') or '').strip() or None
        self.certificate = None
        self._lock = threading.Lock()
        self._token = None
        self._expires = 0
        self._app = None
        self.tokens_acquired = 0
        if self.method in ('client_secret', 'certificate'):
            missing_opts = [name for name in ('tenant_id', 'client_id') if not (params.get(name) or '').strip()]
            if self.method == 'client_secret' and not params.get('client_secret'):
                missing_opts.append('client_secret')
            if missing_opts:
                raise GraphAuthError('auth_method %s needs %s' % (self.method, ', '.join(missing_opts)))
            if self.method == 'certificate':
                self.certificate = load_certificate(params['client_certificate_path'],
                                                    params.get('client_certificate_password'))
        self.authority = '%s/%s' % (self.authority_host, self.tenant_id) if self.tenant_id else None

    def describe(self):
        """Who we authenticate as, for messages (never a secret)."""
        if self.method == 'managed_identity':
            mi = self.params.get('managed_identity_client_id')
            return ('user-assigned managed identity %s' % mi) if mi else 'system-assigned managed identity'
        text = 'client %s in tenant %s with a %s' % (
            self.client_id, self.tenant_id, 'client secret' if self.method == 'client_secret' else 'certificate')
        if self.certificate:
            text += ' (SHA-1 thumbprint %s)' % self.certificate['thumbprint_sha1']
        return text

    def _build_app(self):
        if self.method == 'managed_identity':
            mi_client_id = self.params.get('managed_identity_client_id')
            identity = (msal.UserAssignedManagedIdentity(client_id=mi_client_id) if mi_client_id
                        else msal.SystemAssignedManagedIdentity())
            return msal.ManagedIdentityClient(identity, http_client=self.session)
        if self.method == 'certificate':
            credential = {'private_key': self.certificate['private_key_pem'],
                          'public_certificate': self.certificate['certificate_pem']}
        else:
            credential = self.params['client_secret']
        return msal.ConfidentialClientApplication(
            self.client_id, client_credential=credential, authority=self.authority,
            http_client=self.session, instance_discovery=self.params.get('authority_host') is None,
            timeout=self.params.get('graph_timeout') or 60)

    def _acquire(self, force_refresh):
        if self._app is None or force_refresh:
            self._app = self._build_app()
        if self.method == 'managed_identity':
            return self._app.acquire_token_for_client(resource=self.resource)
        return self._app.acquire_token_for_client(scopes=[self.scope])

    def get_token(self, force_refresh=False, stale_token=None):
        """A valid access token; ``force_refresh`` gets a new one even when the cached one looks
        valid (after Graph answered 401 InvalidAuthenticationToken). ``stale_token`` is the token
        that was refused: when another thread already replaced it, that newer token is returned."""
        with self._lock:
            if force_refresh and stale_token and self._token and self._token != stale_token:
                return self._token
            if not force_refresh and self._token and time.time() < self._expires - EXPIRY_MARGIN:
                return self._token
            where = self.authority or 'the managed identity endpoint'
            try:
                result = self._acquire(force_refresh)
            except GraphAuthError:
                raise
            except ValueError as exc:
                # msal: bad authority, unreadable key, openid configuration not found
                raise GraphAuthError('Cannot get a Microsoft Graph token for %s from %s: %s' % (self.describe(), where, exc))
            except Exception as exc:  # pylint: disable=broad-except
                if HAS_REQUESTS and isinstance(exc, requests.exceptions.SSLError):
                    raise GraphAuthError('Cannot get a Microsoft Graph token for %s: TLS error talking to %s: %s '
                                         '(set graph_ca_bundle to the CA that issued its certificate)'
                                         % (self.describe(), where, exc))
                if HAS_REQUESTS and isinstance(exc, requests.exceptions.RequestException):
                    raise GraphAuthError('Cannot get a Microsoft Graph token for %s: cannot reach %s: %s'
                                         % (self.describe(), where, exc))
                if self.method == 'managed_identity':
                    raise GraphAuthError('Cannot get a Microsoft Graph token for the %s: %s: %s (is this an Azure VM or '
                                         'App Service with a managed identity?)' % (self.describe(), type(exc).__name__, exc))
                raise GraphAuthError('Cannot get a Microsoft Graph token for %s from %s: %s: %s'
                                     % (self.describe(), where, type(exc).__name__, exc))
            if not isinstance(result, dict) or 'access_token' not in result:
                result = result if isinstance(result, dict) else {}
                raise GraphAuthError(
                    'Cannot get a Microsoft Graph token for %s from %s: %s' % (self.describe(), where, _msal_error_text(result)),
                    details=dict(auth_error=result.get('error'), auth_error_codes=result.get('error_codes'),
                                 correlation_id=result.get('correlation_id')))
            self.tokens_acquired += 1
            self._token = result['access_token']
            try:
                lifetime = int(float(result.get('expires_in') or 3599))
            except (TypeError, ValueError):
                lifetime = 3599
            self._expires = time.time() + lifetime
            return self._token
