"""winrm_client against the local WS-Management endpoint, through the real pywinrm (HTTPS, lab CA)."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import socket

import pytest

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import winrm_client
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.errors import CloudSyncError
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.winrm_client import (
    AGENT_FACTS_SCRIPT, WinRMClientError, read_agent_facts, run_powershell,
)
from winrm_endpoint.powershell import HostFacts


def params_for(endpoint, **overrides):
    params = dict(agent_host=endpoint.host, winrm_user=endpoint.user, winrm_password=endpoint.password,
                  winrm_transport='basic', winrm_port=endpoint.port, winrm_scheme='https',
                  winrm_ca_file=endpoint.ca_file, winrm_validate_certs=True)
    params.update(overrides)
    return params


def test_read_agent_facts_basic(winrm_endpoint):
    facts = read_agent_facts(params_for(winrm_endpoint))
    assert facts == {
        'host': '127.0.0.1', 'computer_name': 'AGENT1', 'agent_installed': True, 'agent_version': '1.1.1370.0',
        'service_found': True, 'service_state': 'Running', 'service_display_name': 'Microsoft Entra Provisioning Agent',
        'registry_present': True, 'connect_sync_installed': False, 'connect_sync_version': None,
    }
    # the exact script went over the wire, and the shell was cleaned up like pywinrm does
    assert winrm_endpoint.scripts == [AGENT_FACTS_SCRIPT]
    assert [e['action'] for e in winrm_endpoint.log] == ['Create', 'Command', 'Receive', 'Signal', 'Delete']
    assert winrm_endpoint.shells == {}


def test_read_agent_facts_ntlm(winrm_endpoint_factory):
    endpoint = winrm_endpoint_factory(HostFacts.agent_host(agent_version='1.1.3730.0', connect_sync_version='2.4.18.0'), ntlm=True)
    facts = read_agent_facts(params_for(endpoint, winrm_transport='ntlm', winrm_user='CORP\\' + endpoint.user))
    assert facts['agent_version'] == '1.1.3730.0'
    assert facts['connect_sync_installed'] is True and facts['connect_sync_version'] == '2.4.18.0'
    assert {e['user'] for e in endpoint.log} == {endpoint.user}


def test_ntlm_channel_binding_is_checked(winrm_endpoint_factory):
    endpoint = winrm_endpoint_factory(ntlm=True)
    endpoint.cert_hash = b'\x00' * 32          # the endpoint now expects the binding of another certificate
    with pytest.raises(WinRMClientError) as err:
        read_agent_facts(params_for(endpoint, winrm_transport='ntlm', winrm_user='CORP\\' + endpoint.user))
    assert 'rejected the credentials' in err.value.msg


def test_ntlm_wrong_password(winrm_endpoint_factory):
    endpoint = winrm_endpoint_factory(ntlm=True)
    with pytest.raises(WinRMClientError) as err:
        read_agent_facts(params_for(endpoint, winrm_transport='ntlm', winrm_user='CORP\\' + endpoint.user,
                                    winrm_password='Wrong-Secret-42'))
    assert 'Wrong-Secret-42' not in str(err.value.to_fail_kwargs())


def test_receive_in_chunks(winrm_endpoint_factory):
    endpoint = winrm_endpoint_factory(receive_chunk=16)
    facts = read_agent_facts(params_for(endpoint))
    assert facts['agent_version'] == '1.1.1370.0'
    assert [e['action'] for e in endpoint.log].count('Receive') > 5


def test_wrong_password_names_host_not_password(winrm_endpoint):
    with pytest.raises(WinRMClientError) as err:
        run_powershell(params_for(winrm_endpoint, winrm_password='Very-Secret-99'), 'x')
    assert isinstance(err.value, CloudSyncError)
    text = str(err.value.to_fail_kwargs())
    assert '127.0.0.1' in err.value.msg and 'rejected the credentials' in err.value.msg
    assert 'Very-Secret-99' not in text
    assert err.value.details['failure'] == 'credentials'


def test_unknown_script_fails_with_stderr(winrm_endpoint):
    rc, out, err = run_powershell(params_for(winrm_endpoint), 'Get-Process')
    assert rc == 1 and out == ''
    assert 'Get-Process' in err and 'not recognized' in err
    # read_agent_facts turns a failing script into an error naming the host
    winrm_endpoint.facts = HostFacts.agent_host()
    original = winrm_client.AGENT_FACTS_SCRIPT
    try:
        winrm_client.AGENT_FACTS_SCRIPT = original + '\nRemove-Item C:\\'
        with pytest.raises(WinRMClientError) as exc:
            read_agent_facts(params_for(winrm_endpoint))
    finally:
        winrm_client.AGENT_FACTS_SCRIPT = original
    assert 'exited with code 1' in exc.value.msg and 'Remove-Item' in exc.value.msg


def test_untrusted_certificate_is_refused(winrm_endpoint):
    from lab.pki import default_lab_dir, other_ca
    other = other_ca(default_lab_dir())[0]
    with pytest.raises(WinRMClientError) as err:
        run_powershell(params_for(winrm_endpoint, winrm_ca_file=str(other)), AGENT_FACTS_SCRIPT)
    assert err.value.details['failure'] == 'tls'
    assert winrm_endpoint.scripts == []


def test_connection_refused_names_host():
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(WinRMClientError) as err:
        run_powershell(dict(agent_host='127.0.0.1', winrm_user='u', winrm_password='Pw-Secret-1', winrm_transport='basic',
                            winrm_port=port, winrm_scheme='https', winrm_ca_file=None, winrm_validate_certs=True), 'x')
    assert '127.0.0.1:%d' % port in err.value.msg
    assert err.value.details['failure'] == 'connection'
    assert 'Pw-Secret-1' not in str(err.value.to_fail_kwargs())


def test_basic_over_http_is_refused_before_connecting(winrm_endpoint):
    with pytest.raises(WinRMClientError) as err:
        run_powershell(params_for(winrm_endpoint, winrm_scheme='http'), AGENT_FACTS_SCRIPT)
    assert 'clear' in err.value.msg
    assert winrm_endpoint.log == []


def test_missing_credentials():
    with pytest.raises(WinRMClientError) as err:
        run_powershell(dict(agent_host='agent1', winrm_transport='ntlm'), 'x')
    assert 'winrm_user' in err.value.msg and 'agent1' in err.value.msg
