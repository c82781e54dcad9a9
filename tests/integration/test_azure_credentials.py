# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Azure credentials as the Ansible ecosystem names them, through ansible-playbook against the
HTTPS Graph emulator, in an environment scrubbed of every credential the test machine may hold.

AWX's built-in "Microsoft Azure Resource Manager" credential injects ``AZURE_CLIENT_ID``,
``AZURE_TENANT``, ``AZURE_SECRET`` and ``AZURE_SUBSCRIPTION_ID`` (or ``AZURE_AD_USER`` /
``AZURE_PASSWORD`` when it has no client and tenant), and ``AZURE_CLOUD_ENVIRONMENT`` when set
(ansible/awx awx/main/models/credential/injectors.py, ``azure_rm``); azure.azcollection reads the
same variables for its options ``client_id``, ``secret``, ``tenant``, ``cloud_environment``
(ansible-collections/azure plugins/module_utils/azure_rm_common.py, ``AZURE_CREDENTIAL_ENV_MAPPING``).
An existing AWX credential must work unchanged, the azcollection option names work as aliases, and
with nothing configured the modules fail with a message naming the options instead of silently
asking the instance metadata service (IMDS) for a managed identity token.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from module_runner import failure_text, run_tasks

FINANCE = 'Finance Team'


def endpoints(emu):
    return dict(authority_host=emu.authority_url, graph_endpoint=emu.base_url, graph_ca_bundle=emu.ca_file)


def info_task(emu, **args):
    task_args = dict(groups=[FINANCE], **endpoints(emu))
    task_args.update(args)
    return {'hybrid_identity.cloud_sync.entra_group_info': task_args}


def awx_env(emu, **extra):
    """What AWX's Azure Resource Manager credential injects for a service principal."""
    env = dict(AZURE_CLIENT_ID=emu.client_id, AZURE_TENANT=emu.tenant_id, AZURE_SECRET=emu.client_secret,
               AZURE_SUBSCRIPTION_ID='00000000-0000-0000-0000-000000000000', AZURE_CLOUD_ENVIRONMENT='AzureCloud')
    env.update(extra)
    return env


def imds_and_token_requests(emu):
    return [e for e in emu.admin.requests() if e['kind'] in ('imds', 'identity', 'token')]


def assert_read_finance(result, out):
    assert not result.get('failed'), (result.get('msg'), out[-3000:])
    assert [g['display_name'] for g in result['groups']] == [FINANCE]


def test_an_awx_azure_credential_works_unchanged(graph_emulator, tmp_path):
    emu = graph_emulator
    rc, out, results = run_tasks(tmp_path, [info_task(emu)], env=awx_env(emu))
    assert_read_finance(results[0], out)
    tokens = [e for e in emu.admin.requests() if e['kind'] == 'token']
    assert tokens and tokens[-1]['status'] == 200 and tokens[-1]['app'] == emu.client_id
    assert [e for e in emu.admin.requests() if e['kind'] == 'imds'] == []
    assert rc == 0


def test_azure_tenant_id_takes_precedence_over_azure_tenant(graph_emulator, tmp_path):
    """Both set (an AWX credential in an execution environment that also exports azure-identity's
    names): AZURE_TENANT_ID wins, as documented; AZURE_CLIENT_SECRET likewise over AZURE_SECRET."""
    emu = graph_emulator
    env = awx_env(emu, AZURE_TENANT='11111111-2222-4333-8444-555555555555', AZURE_TENANT_ID=emu.tenant_id,
                  AZURE_SECRET='not-the-secret', AZURE_CLIENT_SECRET=emu.client_secret)
    unused_rc, out, results = run_tasks(tmp_path, [info_task(emu)], env=env)
    assert_read_finance(results[0], out)


def test_azcollection_option_names_are_aliases(graph_emulator, tmp_path):
    emu = graph_emulator
    task = info_task(emu, tenant=emu.tenant_id, client_id=emu.client_id, secret=emu.client_secret,
                     cloud_environment='AzureCloud')
    unused_rc, out, results = run_tasks(tmp_path, [task])
    assert_read_finance(results[0], out)


def test_nothing_configured_fails_naming_the_options_without_asking_imds(graph_emulator, tmp_path):
    """The emulator serves IMDS; msal would reach it through AZURE_POD_IDENTITY_AUTHORITY_HOST (where
    msal's ManagedIdentityClient on a 'VM' sends its request). No request may get there: managed
    identity is used only when asked for (auth_method, managed_identity_client_id) or when the
    environment says which identity endpoint to use (App Service, Service Fabric, Azure ML, Arc)."""
    emu = graph_emulator
    env = {'AZURE_POD_IDENTITY_AUTHORITY_HOST': emu.imds_url}
    tasks = [info_task(emu),
             {'hybrid_identity.cloud_sync.entra_group_info': dict(all_groups=True)}]
    rc, out, results = run_tasks(tmp_path, tasks, env=env)
    for result in results:
        assert result.get('failed'), result
        msg = result['msg']
        for word in ('tenant_id', 'client_id', 'client_secret', 'client_certificate_path', 'AZURE_TENANT_ID',
                     'AZURE_TENANT', 'AZURE_CLIENT_ID', 'AZURE_SECRET', 'auth_method=managed_identity'):
            assert word in msg, (word, msg)
        assert 'Traceback' not in failure_text(result) and 'JSON' not in msg, failure_text(result)
    assert imds_and_token_requests(emu) == [], 'a request reached the identity endpoints'
    assert rc == 0  # ignore_errors: the play itself ran to the end


def test_a_user_and_password_credential_is_refused_by_name(graph_emulator, tmp_path):
    """AWX injects AZURE_AD_USER / AZURE_PASSWORD when its Azure credential has no client and tenant:
    a user sign-in, which an unattended module cannot do (and Microsoft is retiring for Graph apps)."""
    emu = graph_emulator
    env = {'AZURE_AD_USER': 'someone@contoso.example', 'AZURE_PASSWORD': 'Pa55-not-shown',
           'AZURE_SUBSCRIPTION_ID': '00000000-0000-0000-0000-000000000000',
           'AZURE_POD_IDENTITY_AUTHORITY_HOST': emu.imds_url}
    unused_rc, unused_out, results = run_tasks(tmp_path, [info_task(emu)], env=env)
    msg = results[0]['msg']
    assert results[0].get('failed')
    assert 'AZURE_AD_USER' in msg and 'not supported' in msg and 'client' in msg, msg
    assert 'Pa55-not-shown' not in msg
    assert imds_and_token_requests(emu) == []


@pytest.mark.parametrize('value,words', [('AzureGermanCloud', ['cloud', 'AzureGermanCloud', 'AzureUSGovernment']),
                                         ('Mars', ['cloud', 'Mars'])])
def test_an_unknown_cloud_environment_is_refused_by_name(graph_emulator, tmp_path, value, words):
    emu = graph_emulator
    unused_rc, unused_out, results = run_tasks(tmp_path, [info_task(emu)], env=awx_env(emu, AZURE_CLOUD_ENVIRONMENT=value))
    assert results[0].get('failed')
    assert all(w in results[0]['msg'] for w in words), results[0]['msg']
    assert imds_and_token_requests(emu) == []


def test_explicit_managed_identity_still_reaches_imds(graph_emulator, tmp_path):
    emu = graph_emulator
    env = {'AZURE_POD_IDENTITY_AUTHORITY_HOST': emu.imds_url}
    unused_rc, out, results = run_tasks(tmp_path, [info_task(emu, auth_method='managed_identity')], env=env)
    assert_read_finance(results[0], out)
    assert [e['status'] for e in emu.admin.requests() if e['kind'] == 'imds'][-1:] == [200]
