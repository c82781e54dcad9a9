# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs PowerShell on a provisioning agent host over WinRM (pywinrm), and reads the agent's facts.

``run_powershell(params, script) -> (rc, stdout, stderr)`` takes the ``WINRM_ARGSPEC`` options
(``agent_host``, ``winrm_user``, ``winrm_password``, ``winrm_transport``, ``winrm_port``,
``winrm_scheme``, ``winrm_ca_file``, ``winrm_validate_certs``). Failures raise ``WinRMClientError``
(a ``CloudSyncError``) naming the host and what failed, never the password.

``read_agent_facts(params)`` sends ``AGENT_FACTS_SCRIPT`` and returns the plain facts that
``prereq_checks.agent_checks`` takes.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import re
import traceback

from ansible.module_utils.basic import env_fallback

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.errors import CloudSyncError

WINRM_IMPORT_ERROR = None
try:
    import winrm
    from winrm.exceptions import InvalidCredentialsError, WinRMError, WinRMTransportError, WSManFaultError
except ImportError:
    HAS_WINRM = False
    WINRM_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_WINRM = True

try:
    import requests
except ImportError:
    requests = None

AGENT_EXE = r'C:\Program Files\Microsoft Azure AD Connect Provisioning Agent\AADConnectProvisioningAgent.exe'
AGENT_SERVICE = 'AADConnectProvisioningAgent'
AGENT_REGISTRY = r'HKLM:\SOFTWARE\Microsoft\Azure AD Connect Agents\Azure AD Connect Provisioning Agent'
CONNECT_SYNC_EXE = r'C:\Program Files\Microsoft Azure AD Sync\Bin\miiserver.exe'

# One statement per line, each a plain read: no change is made on the host. The result is one
# JSON document on stdout. Enums are turned into strings (Windows PowerShell 5.1's ConvertTo-Json
# would write a service status as a number).
AGENT_FACTS_SCRIPT = '\n'.join([
    "$ErrorActionPreference = 'Stop'",
    "$r = [ordered]@{}",
    "$r.computer_name = $env:COMPUTERNAME",
    "$r.agent_installed = Test-Path -LiteralPath '%s' -PathType Leaf" % AGENT_EXE,
    "$r.agent_version = Get-Item -LiteralPath '%s' -ErrorAction SilentlyContinue | ForEach-Object { $_.VersionInfo.FileVersion }" % AGENT_EXE,
    "$r.service_state = Get-Service -Name '%s' -ErrorAction SilentlyContinue | ForEach-Object { $_.Status.ToString() }" % AGENT_SERVICE,
    "$r.service_display_name = Get-Service -Name '%s' -ErrorAction SilentlyContinue | ForEach-Object { $_.DisplayName }" % AGENT_SERVICE,
    "$r.registry_present = Test-Path -LiteralPath '%s'" % AGENT_REGISTRY,
    "$r.connect_sync_installed = Test-Path -LiteralPath '%s' -PathType Leaf" % CONNECT_SYNC_EXE,
    "$r.connect_sync_version = Get-Item -LiteralPath '%s' -ErrorAction SilentlyContinue | ForEach-Object { $_.VersionInfo.FileVersion }"
    % CONNECT_SYNC_EXE,
    "$r | ConvertTo-Json -Compress",
])

WINRM_ARGSPEC = dict(
    agent_host=dict(type='str'),
    winrm_user=dict(type='str', fallback=(env_fallback, ['CLOUDSYNC_WINRM_USER'])),
    winrm_password=dict(type='str', no_log=True, fallback=(env_fallback, ['CLOUDSYNC_WINRM_PASSWORD'])),
    winrm_transport=dict(type='str', default='ntlm', choices=['ntlm', 'kerberos', 'basic', 'credssp']),
    winrm_port=dict(type='int'),
    winrm_scheme=dict(type='str', default='https', choices=['https', 'http']),
    winrm_ca_file=dict(type='path'),
    winrm_validate_certs=dict(type='bool', default=True),
)

_VERSION_PREFIX = re.compile(r'^\s*(\d+(?:\.\d+)*)')


class WinRMClientError(CloudSyncError):
    """Running PowerShell on the agent host failed; ``host`` names it."""

    def __init__(self, msg, host=None, details=None, **kwargs):
        super(WinRMClientError, self).__init__(msg, details=details, **kwargs)
        self.host = host
        if host is not None:
            self.details.setdefault('agent_host', host)


def _scrub(text, secrets):
    text = str(text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, '********')
    return text


def endpoint_url(params):
    host = params.get('agent_host')
    if ':' in host and not host.startswith('['):
        host = '[%s]' % host
    scheme = params.get('winrm_scheme') or 'https'
    port = int(params.get('winrm_port') or (5986 if scheme == 'https' else 5985))
    return '%s://%s:%d/wsman' % (scheme, host, port)


def _session(params):
    host = params.get('agent_host')
    transport = params.get('winrm_transport') or 'ntlm'
    scheme = params.get('winrm_scheme') or 'https'
    if not host:
        raise WinRMClientError('agent_host is required to run PowerShell on the provisioning agent host')
    if transport == 'basic' and scheme != 'https':
        raise WinRMClientError('Refusing Basic authentication over plain HTTP to %s: the password would cross the network in clear '
                               'text. Use winrm_scheme=https, or ntlm/kerberos (which encrypt the messages).' % host, host=host)
    if transport != 'kerberos' and (not params.get('winrm_user') or params.get('winrm_password') is None):
        raise WinRMClientError('winrm_user and winrm_password are required for winrm_transport=%s (host %s)' % (transport, host), host=host)
    validate = params.get('winrm_validate_certs', True) is not False
    kwargs = dict(
        transport=transport,
        server_cert_validation='validate' if validate else 'ignore',
        ca_trust_path=(params.get('winrm_ca_file') or None) if validate else None,
        proxy=None,
    )
    try:
        return winrm.Session(endpoint_url(params), auth=(params.get('winrm_user'), params.get('winrm_password')), **kwargs)
    except (WinRMError, ValueError) as exc:
        raise WinRMClientError('Cannot set up WinRM (%s) to %s: %s'
                               % (transport, host, _scrub(exc, [params.get('winrm_password')])), host=host)


def run_powershell(params, script):
    """Run ``script`` with ``powershell -EncodedCommand`` on ``agent_host``: (rc, stdout str, stderr str)."""
    if not HAS_WINRM:
        raise WinRMClientError('The pywinrm Python library is required to reach the agent host', exception=WINRM_IMPORT_ERROR)
    host = params.get('agent_host')
    secrets = [params.get('winrm_password')]
    session = _session(params)
    where = '%s (%s, %s)' % (endpoint_url(params), params.get('winrm_transport') or 'ntlm', params.get('winrm_user') or 'kerberos cache')
    try:
        response = session.run_ps(script)
    except InvalidCredentialsError:
        raise WinRMClientError('WinRM on %s rejected the credentials' % where, host=host, failure='credentials')
    except WSManFaultError as exc:
        raise WinRMClientError('WinRM on %s answered with a fault: %s (WS-Management code %s)'
                               % (where, _scrub(exc.reason, secrets), exc.wsman_fault_code), host=host, failure='fault')
    except WinRMTransportError as exc:
        raise WinRMClientError('WinRM on %s failed: HTTP %s %s' % (where, exc.code, _scrub(exc.message, secrets)),
                               host=host, failure='transport')
    except WinRMError as exc:
        raise WinRMClientError('WinRM on %s failed: %s' % (where, _scrub(exc, secrets)), host=host, failure='winrm')
    except Exception as exc:  # pylint: disable=broad-except  # requests' TLS / connection errors and the like
        failure = 'connection'
        if requests is not None and isinstance(exc, requests.exceptions.SSLError):
            failure = 'tls'
            text = 'the TLS certificate of %s could not be validated (winrm_ca_file, winrm_validate_certs): %s' % (host, exc)
        elif requests is not None and isinstance(exc, requests.exceptions.ConnectionError):
            text = 'could not connect: %s' % exc
        elif requests is not None and isinstance(exc, requests.exceptions.Timeout):
            failure = 'timeout'
            text = 'timed out: %s' % exc
        else:
            text = '%s: %s' % (type(exc).__name__, exc)
        raise WinRMClientError('WinRM on %s failed: %s' % (where, _scrub(text, secrets)), host=host, failure=failure)
    stdout = response.std_out.decode('utf-8', 'replace') if isinstance(response.std_out, bytes) else str(response.std_out)
    stderr = response.std_err.decode('utf-8', 'replace') if isinstance(response.std_err, bytes) else str(response.std_err)
    return response.status_code, stdout, _scrub(stderr, secrets)


def _version(text):
    """Leading dotted number of a FileVersion string (``'1.1.1370.0 (built by...)'`` -> ``'1.1.1370.0'``)."""
    if not text:
        return None
    match = _VERSION_PREFIX.match(str(text))
    return match.group(1) if match else str(text)


def parse_agent_facts(host, stdout):
    """The JSON document of ``AGENT_FACTS_SCRIPT`` -> facts for ``prereq_checks.agent_checks``."""
    text = (stdout or '').strip()
    try:
        data = json.loads(text)
    except ValueError:
        raise WinRMClientError('The agent facts script on %s did not print one JSON document: %r' % (host, text[:300]), host=host,
                               failure='output')
    if not isinstance(data, dict):
        raise WinRMClientError('The agent facts script on %s printed %r, not a JSON object' % (host, text[:300]), host=host,
                               failure='output')
    state = data.get('service_state')
    return {
        'host': host,
        'computer_name': data.get('computer_name'),
        'agent_installed': data.get('agent_installed'),
        'agent_version': _version(data.get('agent_version')),
        'service_found': state is not None if 'service_state' in data else None,
        'service_state': state,
        'service_display_name': data.get('service_display_name'),
        'registry_present': data.get('registry_present'),
        'connect_sync_installed': data.get('connect_sync_installed'),
        'connect_sync_version': _version(data.get('connect_sync_version')),
    }


def read_agent_facts(params):
    """Run ``AGENT_FACTS_SCRIPT`` on ``agent_host`` and parse its output (raises WinRMClientError)."""
    host = params.get('agent_host')
    rc, stdout, stderr = run_powershell(params, AGENT_FACTS_SCRIPT)
    if rc != 0:
        raise WinRMClientError('The agent facts script on %s exited with code %s: %s' % (host, rc, (stderr or '').strip()[:1000]),
                               host=host, failure='script', rc=rc)
    return parse_agent_facts(host, stdout)
