"""The WinRM test endpoint itself: strict enough that a wrong request fails, faithful enough for pywinrm."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64

import pytest
import requests
import winrm
from winrm.exceptions import InvalidCredentialsError, WSManFaultError

from winrm_endpoint.powershell import AGENT_EXE, HostFacts, run_script


def session(endpoint, password=None):
    return winrm.Session(endpoint.url, auth=(endpoint.user, password or endpoint.password), transport='basic',
                         server_cert_validation='validate', ca_trust_path=endpoint.ca_file)


def test_run_ps_round_trip(winrm_endpoint):
    script = "$r = [ordered]@{}\n$r.name = $env:COMPUTERNAME\n$r.v = Get-Item -LiteralPath '%s' -ErrorAction SilentlyContinue | " \
             "ForEach-Object { $_.VersionInfo.FileVersion }\n$r | ConvertTo-Json -Compress" % AGENT_EXE.upper()
    response = session(winrm_endpoint).run_ps(script)
    assert response.status_code == 0
    assert response.std_out == b'{"name":"AGENT1","v":"1.1.1370.0"}\r\n'    # paths are case-insensitive, like Windows
    assert winrm_endpoint.scripts == [script]


def test_unknown_statement_fails_with_clixml_stderr(winrm_endpoint):
    response = session(winrm_endpoint).run_ps("$r = [ordered]@{}\nStop-Service AADConnectProvisioningAgent")
    assert response.status_code == 1
    assert b'Stop-Service' in response.std_err           # pywinrm cleaned the CLIXML record
    assert not response.std_err.startswith(b'#< CLIXML')


def test_not_powershell_is_not_recognized(winrm_endpoint):
    response = session(winrm_endpoint).run_cmd('ipconfig', ['/all'])
    assert response.status_code == 1 and b'not recognized' in response.std_err


def test_wrong_password_and_no_auth(winrm_endpoint):
    with pytest.raises(InvalidCredentialsError):
        session(winrm_endpoint, password='nope').run_ps('x')
    reply = requests.post(winrm_endpoint.url, data=b'<x/>', verify=winrm_endpoint.ca_file,
                          headers={'Content-Type': 'application/soap+xml;charset=UTF-8'})
    assert reply.status_code == 401 and 'Basic' in reply.headers['WWW-Authenticate']
    assert winrm_endpoint.log == []


def test_unknown_shell_is_a_wsman_fault(winrm_endpoint):
    protocol = session(winrm_endpoint).protocol
    with pytest.raises(WSManFaultError) as err:
        protocol.run_command('00000000-0000-0000-0000-000000000000', 'powershell -encodedcommand eAA=')
    assert err.value.wsman_fault_code == 2150858843
    shell = protocol.open_shell()
    with pytest.raises(WSManFaultError):
        protocol.get_command_output_raw(shell, 'no-such-command')
    protocol.close_shell(shell)
    assert winrm_endpoint.shells == {}


def test_bad_encoded_command(winrm_endpoint):
    response = session(winrm_endpoint).run_cmd('powershell -encodedcommand ' + base64.b64encode(b'\xff\xfe\xff').decode())
    assert response.status_code == 1


def test_interpreter_table():
    facts = HostFacts.agent_host(agent_version=None, connect_sync_version='2.2.8.0')
    rc, out, err = run_script("$r = [ordered]@{}\n$r.a = Test-Path -LiteralPath '%s' -PathType Leaf\n"
                              "$r.s = Get-Service -Name 'adsync' -ErrorAction SilentlyContinue | ForEach-Object { $_.Status.ToString() }\n"
                              "$r.k = Test-Path -LiteralPath 'HKLM:\\SOFTWARE\\Nothing'\n"
                              "$r.d = Test-Path -LiteralPath 'C:\\Program Files\\Microsoft Azure AD Sync' -PathType Container\n"
                              "$r | ConvertTo-Json -Compress" % AGENT_EXE, facts)
    assert (rc, out, err) == (0, '{"a":false,"s":"Running","k":false,"d":true}\r\n', '')
    rc, out, err = run_script("$r.a = 'x'", facts)
    assert rc == 1 and '$r is not defined' in err
