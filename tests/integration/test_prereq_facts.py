"""prereq_facts against real things: the agent part over WinRM (pywinrm -> the local WS-Man
endpoint), the AD part against the lab's Samba DCs, the Entra part against the Graph emulator.

Each part runs once through ansible-playbook (the module as Ansible runs it); the other cases call
the module's ``run(params)`` in-process with the same parameters the module would get.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import json
import uuid

import pytest

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import cloudsync_acl, prereq_checks
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import security_descriptor
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_client import ADClient
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.argspec import AD_CONNECTION_ARGSPEC, GRAPH_AUTH_ARGSPEC
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.winrm_client import WINRM_ARGSPEC
from ansible_collections.hybrid_identity.cloud_sync.plugins.modules import prereq_facts
from winrm_endpoint.powershell import HostFacts
from writeback_helpers import ad_params, run_playbook

PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: prerequisites
      hybrid_identity.cloud_sync.prereq_facts: {args}
      register: r
      ignore_errors: true
    - name: save
      check_mode: false
      ansible.builtin.copy:
        content: "{{{{ {{'result': r, 'facts': cloudsync_prereqs | default(None)}} | to_json }}}}"
        dest: "{results}"
"""


def module_params(**given):
    """Module parameters as AnsibleModule would hand them over (defaults filled in)."""
    params = {}
    for spec in (AD_CONNECTION_ARGSPEC, GRAPH_AUTH_ARGSPEC, WINRM_ARGSPEC):
        for name, option in spec.items():
            params[name] = option.get('default')
    params.update(target_ous=None, agent_account=None, admin_principal=None, groups=None, synced_user_sample=100, max_members=50000,
                  min_agent_version=prereq_checks.DEFAULT_MIN_AGENT_VERSION,
                  min_connect_sync_version=prereq_checks.DEFAULT_MIN_CONNECT_SYNC_VERSION)
    params.update(given)
    return params


def by_name(result):
    return dict((c['name'], c) for c in result['checks'])


def play(tmp_path, args, check=False):
    text = PLAY.format(args=json.dumps(args), results='{results}')
    rc, output, saved = run_playbook(text, tmp_path, extra_args=['--check'] if check else [])
    assert saved is not None, output
    return rc, output, saved


# -- agent part (WinRM) -------------------------------------------------------------------------

def winrm_args(endpoint, **extra):
    args = dict(agent_host=endpoint.host, winrm_user=endpoint.user, winrm_password=endpoint.password, winrm_transport='basic',
                winrm_port=endpoint.port, winrm_ca_file=endpoint.ca_file)
    args.update(extra)
    return args


@pytest.mark.parametrize('check', [False, True])
def test_agent_part_through_ansible(winrm_endpoint, tmp_path, check):
    rc, output, saved = play(tmp_path, winrm_args(winrm_endpoint), check=check)
    assert rc == 0, output
    result, facts = saved['result'], saved['facts']
    assert result['changed'] is False and not result.get('failed')
    assert facts == result['ansible_facts']['cloudsync_prereqs']
    checks = by_name(facts)
    assert [checks[n]['ok'] for n in prereq_checks.AGENT_CHECKS] == [True] * 5
    assert '1.1.1370.0' in checks['agent_version']['detail']
    assert 'not applicable' in checks['connect_sync_version']['detail']
    # AD and Entra were not examined: not checked, so not ready
    assert all(checks[n]['ok'] is None for n in prereq_checks.AD_CHECKS + prereq_checks.ENTRA_CHECKS)
    assert facts['ready'] is False
    assert winrm_endpoint.password not in output
    assert winrm_endpoint.scripts and all(s is not None for s in winrm_endpoint.scripts)


@pytest.mark.parametrize('host_facts,minimum,expect', [
    (HostFacts.agent_host(agent_version='1.1.999.0'), None, {'agent_version': False}),
    (HostFacts.agent_host(agent_version='1.1.1370.0'), None, {'agent_version': True}),
    (HostFacts.agent_host(agent_version='1.1.10000.0'), '1.1.3730.0', {'agent_version': True}),
    (HostFacts.agent_host(agent_version='1.1.2334.0'), '1.1.3730.0', {'agent_version': False}),
    (HostFacts.agent_host(service_status='Stopped'), None, {'agent_service': False, 'agent_version': True}),
    (HostFacts.agent_host(registry=False), None, {'agent_registry': False}),
    (HostFacts.agent_host(connect_sync_version=None), None, {'connect_sync_version': True}),
    (HostFacts.agent_host(connect_sync_version='2.1.20.0'), None, {'connect_sync_version': False}),
    (HostFacts.agent_host(connect_sync_version='2.2.8.0'), None, {'connect_sync_version': True}),
    (HostFacts.agent_host(agent_version=None), None, {'agent_version': False, 'agent_service': False, 'agent_registry': False}),
], ids=['too-old', 'just-right', 'newer-numeric', 'below-raised-minimum', 'service-stopped', 'no-registry',
        'connect-sync-absent', 'connect-sync-too-old', 'connect-sync-ok', 'not-installed'])
def test_agent_cases(winrm_endpoint, host_facts, minimum, expect):
    winrm_endpoint.facts = host_facts
    params = module_params(**winrm_args(winrm_endpoint))
    if minimum:
        params['min_agent_version'] = minimum
    checks = by_name(prereq_facts.run(params))
    assert checks['agent_connection']['ok'] is True
    for name, ok in expect.items():
        assert checks[name]['ok'] is ok, checks[name]
        if ok is False:
            assert checks[name]['remedy']
    agent_ok = [checks[n]['ok'] for n in prereq_checks.AGENT_CHECKS]
    assert (all(agent_ok)) is all(expect.values())


def test_agent_over_ntlm(winrm_endpoint_factory):
    endpoint = winrm_endpoint_factory(HostFacts.agent_host(service_status='Stopped'), ntlm=True)
    params = module_params(**winrm_args(endpoint, winrm_transport='ntlm', winrm_user='CORP\\' + endpoint.user))
    checks = by_name(prereq_facts.run(params))
    assert checks['agent_connection']['ok'] is True
    assert checks['agent_service']['ok'] is False and 'Stopped' in checks['agent_service']['detail']


def test_agent_wrong_password_through_ansible(winrm_endpoint, tmp_path):
    rc, output, saved = play(tmp_path, winrm_args(winrm_endpoint, winrm_password='Not-The-Password-7'))
    assert rc == 0, output                    # a failed check is a fact, not a module failure
    checks = by_name(saved['facts'])
    assert checks['agent_connection']['ok'] is False
    assert '127.0.0.1' in checks['agent_connection']['detail'] and 'rejected' in checks['agent_connection']['detail']
    assert all(checks[n]['ok'] is None for n in prereq_checks.AGENT_CHECKS[1:])
    assert 'Not-The-Password-7' not in output and 'Not-The-Password-7' not in json.dumps(saved)


def test_bad_min_version_fails_cleanly(tmp_path, winrm_endpoint):
    rc, output, saved = play(tmp_path, winrm_args(winrm_endpoint, min_agent_version='latest'))
    assert saved['result']['failed'] is True
    assert 'min_agent_version' in saved['result']['msg']
    assert 'Traceback' not in output


# -- AD part (lab) ------------------------------------------------------------------------------

@contextlib.contextmanager
def sandbox_ou(forest, parent=None):
    client = ADClient(ad_params(forest)).connect()
    dn = 'OU=prereq-%s,%s' % (uuid.uuid4().hex[:10], parent or forest.delegated_ou)
    client.add(dn, {'objectClass': 'organizationalUnit'})
    try:
        yield client, dn
    finally:
        try:
            if client.get(dn, ['ou']) is not None:
                client.delete(dn, tree=True)
        finally:
            client.close()


def grant(client, dn, sid):
    sd = security_descriptor.parse(client.read_security_descriptor(dn))
    new_sd, added = cloudsync_acl.apply_present(sd, cloudsync_acl.desired_aces('UserGroupCreateDelete', sid, domain_root=False))
    assert added
    client.write_security_descriptor(dn, new_sd.to_bytes())


def ad_args(forest, **extra):
    args = dict(domain_controllers=[forest.ip], ad_ca_file=forest.ca_file, ad_user=forest.admin_upn, ad_password=forest.admin_password)
    args.update(extra)
    return args


def test_ad_part_through_ansible(corp, tmp_path):
    rc, output, saved = play(tmp_path, ad_args(corp, target_ous=[corp.groups_ou]), check=True)
    assert rc == 0, output
    checks = by_name(saved['facts'])
    assert checks['ad_connection']['ok'] is True
    assert checks['ad_schema_attribute']['ok'] is True
    # Samba reports objectVersion 69 (2012 R2) with the 2016 attributes added: the attribute is what matters
    assert checks['ad_schema_version']['ok'] is True and 'attribute check is what matters' in checks['ad_schema_version']['detail']
    assert checks['ad_universal_group_scope']['ok'] is True
    assert checks['ad_ldap_port']['ok'] is True and checks['ad_global_catalog_port']['ok'] is True
    assert checks['ad_target_ous']['ok'] is True
    # no agent account and no agent host: agentless, the bound account (here the lab's admin) is checked
    assert checks['ad_agent_account']['ok'] is True and 'Agentless' in checks['ad_agent_account']['detail']
    assert checks['ad_agent_permissions']['ok'] is True, checks['ad_agent_permissions']
    for name in ('ad_domain_functional_level', 'ad_forest_functional_level'):
        assert checks[name]['required'] is False and checks[name]['ok'] in (True, False)
    assert saved['facts']['ready'] is False
    assert corp.admin_password not in output


def test_ad_permissions_both_ways(corp):
    with sandbox_ou(corp) as (client, granted_ou):
        account = prereq_facts.find_account(client, corp.base_dn, corp.unprivileged_user)
        assert account['found'] and account['sid'].startswith('S-1-5-21-')
        child = 'OU=child,%s' % granted_ou
        client.add(child, {'objectClass': 'organizationalUnit'})
        grant(client, granted_ou, account['sid'])
        with sandbox_ou(corp) as (_bare_name, bare_ou):
            params = module_params(**ad_args(corp, target_ous=[granted_ou, child], agent_account=corp.unprivileged_user))
            checks = by_name(prereq_facts.run(params))
            assert checks['ad_agent_account']['ok'] is True
            # granted on the OU, and inherited by its child OU
            assert checks['ad_agent_permissions']['ok'] is True, checks['ad_agent_permissions']
            params['target_ous'] = [granted_ou, bare_ou]
            checks = by_name(prereq_facts.run(params))
            perm = checks['ad_agent_permissions']
            assert perm['ok'] is False
            assert bare_ou in perm['detail'] and granted_ou + ':' not in perm['detail']
            assert '5 missing' in perm['detail'] and 'cloudsync_permissions' in perm['remedy'], perm


def test_ad_account_by_sid_dn_and_upn(corp):
    client = ADClient(ad_params(corp)).connect()
    try:
        by_sam = prereq_facts.find_account(client, corp.base_dn, corp.unprivileged_user)
        for name in (by_sam['sid'], by_sam['dn'], corp.unprivileged_upn):
            found = prereq_facts.find_account(client, corp.base_dn, name)
            assert found['found'] and found['sid'] == by_sam['sid'], name
        assert prereq_facts.find_account(client, corp.base_dn, 'no-such-account')['found'] is False
        assert prereq_facts.find_account(client, corp.base_dn, 'CN=nobody,' + corp.base_dn)['found'] is False
    finally:
        client.close()


def test_ad_missing_ou_and_bad_password(corp):
    params = module_params(**ad_args(corp, target_ous=['OU=Does-Not-Exist,' + corp.base_dn, 'not a dn'],
                                     agent_account=corp.unprivileged_user))
    checks = by_name(prereq_facts.run(params))
    assert checks['ad_target_ous']['ok'] is False and 'OU=Does-Not-Exist' in checks['ad_target_ous']['detail']
    assert 'not a dn (' in checks['ad_target_ous']['detail']
    # no existing target: the permissions are not checked (not silently checked elsewhere)
    assert checks['ad_agent_permissions']['ok'] is None and 'none of the target_ous' in checks['ad_agent_permissions']['detail']
    checks = by_name(prereq_facts.run(module_params(**ad_args(corp, ad_password='Wrong-Password-1'))))
    assert checks['ad_connection']['ok'] is False
    assert 'Wrong-Password-1' not in json.dumps(checks)
    assert checks['ad_schema_attribute']['ok'] is None
    assert checks['ad_ldap_port']['ok'] is True     # the TCP probe does not need the bind


def svc_args(forest, **extra):
    """Bound as the lab's ordinary account (svc-writeback), as an agentless writeback would be."""
    return ad_args(forest, ad_user=forest.unprivileged_upn, ad_password=forest.unprivileged_password, **extra)


def test_agentless_checks_the_bound_accounts_effective_rights(corp, tmp_path):
    """14.7: no agent_account and no agent_host is the agentless setup the README advertises: no agent
    check fails, and the rights checked are the bound account's (read as that account from the OU's
    DACL, through its own SID, its groups and the well-known SIDs of its token)."""
    with sandbox_ou(corp) as (client, ou):
        rc, output, saved = play(tmp_path, svc_args(corp, target_ous=[ou]), check=True)
        assert rc == 0, output
        checks = by_name(saved['facts'])
        assert checks['ad_agent_account']['ok'] is True and 'Agentless' in checks['ad_agent_account']['detail'], checks['ad_agent_account']
        assert corp.unprivileged_user in checks['ad_agent_account']['detail']
        perm = checks['ad_agent_permissions']
        assert perm['ok'] is False and ou in perm['detail'], perm
        # in an ordinary OU the account may read and list (through Authenticated Users and Pre-Windows 2000
        # Compatible Access, which the lab's token holds); creating and writing is what is missing
        assert 'Create child, Delete child (CC DC) of group objects' in perm['detail']
        assert 'Write all properties' in perm['detail'] and 'Read all properties' not in perm['detail']
        assert 'List contents' not in perm['detail']
        assert [c['name'] for c in checks.values() if c['part'] == 'agent' and c['ok'] is False] == []
        assert corp.unprivileged_password not in output

        account = prereq_facts.find_account(client, corp.base_dn, corp.unprivileged_user)
        grant(client, ou, account['sid'])
        checks = by_name(prereq_facts.run(module_params(**svc_args(corp, target_ous=[ou]))))
        assert checks['ad_agent_permissions']['ok'] is True, checks['ad_agent_permissions']
        assert checks['ad_agent_account']['ok'] is True


def test_agentless_rights_through_a_group_and_in_a_hardened_ou(corp):
    """Granted to a group the bound account is in (tokenGroups), in an OU where Authenticated Users
    cannot read: before the grant the account cannot even read the DACL there (the check fails naming
    Read permissions), after it the check passes."""
    from test_least_privilege_writeback import harden_ou
    with sandbox_ou(corp) as (client, ou):
        harden_ou(corp, ou)
        checks = by_name(prereq_facts.run(module_params(**svc_args(corp, target_ous=[ou]))))
        perm = checks['ad_agent_permissions']
        assert perm['ok'] is False and 'Read permissions' in perm['detail'] and ou in perm['detail'], perm
        # Domain Users holds the rights: the bound account gets them through its group
        domain_users = security_descriptor.domain_sid_of(prereq_facts.find_account(client, corp.base_dn, corp.unprivileged_user)['sid'])
        grant(client, ou, domain_users + '-513')
        checks = by_name(prereq_facts.run(module_params(**svc_args(corp, target_ous=[ou]))))
        assert checks['ad_agent_permissions']['ok'] is True, checks['ad_agent_permissions']


def test_named_agent_account_is_still_checked(corp):
    """With an agent (agent_host) and no agent_account, the gMSA provAgentgMSA$ is what is looked for."""
    checks = by_name(prereq_facts.run(module_params(**ad_args(corp, target_ous=[corp.groups_ou], agent_host='127.0.0.9',
                                                              winrm_port=9))))
    assert checks['ad_agent_account']['ok'] is False and 'provAgentgMSA$' in checks['ad_agent_account']['detail']


@pytest.fixture(scope='module')
def legacy():
    from lab.lab import Lab, LabError
    try:
        return Lab().up(forests=('legacy',), schema_extension=False)['legacy']
    except (LabError, OSError) as exc:
        pytest.fail('the legacy forest could not be brought up: %s' % exc, pytrace=False)


def test_ad_schema_without_extension(legacy):
    checks = by_name(prereq_facts.run(module_params(**ad_args(legacy))))
    assert checks['ad_connection']['ok'] is True
    assert checks['ad_schema_attribute']['ok'] is False and 'adprep' in checks['ad_schema_attribute']['remedy']
    assert checks['ad_schema_version']['ok'] is False
    assert checks['ad_universal_group_scope']['ok'] is True


# -- Entra part (Graph emulator) ----------------------------------------------------------------

def graph_args(emu, client_id=None, **extra):
    args = dict(tenant_id=emu.tenant_id, client_id=client_id or emu.client_id, client_secret=emu.client_secret,
                authority_host=emu.authority_url, graph_endpoint=emu.base_url, graph_ca_bundle=emu.ca_file)
    args.update(extra)
    return args


def test_entra_part_through_ansible(graph_emulator, tmp_path):
    rc, output, saved = play(tmp_path, graph_args(graph_emulator))
    assert rc == 0, output
    checks = by_name(saved['facts'])
    required = [n for n in prereq_checks.ENTRA_CHECKS if n not in prereq_checks.INFORMATIONAL]
    assert [checks[n]['ok'] for n in required] == [True] * 6, [checks[n] for n in prereq_checks.ENTRA_CHECKS]
    assert 'GroupMember.Read.All' in checks['entra_app_permissions']['detail']
    # no person named: the configuring person's role is informational, never demanded of the app
    assert checks['entra_admin_role']['ok'] is None and checks['entra_admin_role']['required'] is False
    assert 'AAD_PREMIUM' in checks['entra_licence']['detail']
    # security groups are examined: the small tenant's group synced from AD would be skipped
    assert 'would be skipped: AD Group' in checks['entra_groups_in_scope']['detail']
    assert 'mastered in AD.' in checks['entra_groups_in_scope']['detail'] and '..' not in checks['entra_groups_in_scope']['detail']
    assert graph_emulator.client_secret not in output


def _tenant(**changes):
    from emulator.fixtures import small_tenant
    tenant = small_tenant()
    tenant.update(changes)
    return tenant


def test_entra_b2c_tenant(graph_emulator_factory):
    emu = graph_emulator_factory(_tenant(tenant_type='AAD B2C'))
    checks = by_name(prereq_facts.run(module_params(**graph_args(emu))))
    assert checks['entra_tenant_type']['ok'] is False and 'AAD B2C' in checks['entra_tenant_type']['detail']
    assert checks['entra_licence']['ok'] is True


def test_entra_without_licence(graph_emulator_factory):
    emu = graph_emulator_factory(_tenant(skus=[{"skuId": "6fd2c87f-b296-42f0-b197-1e91e994b900", "skuPartNumber": "ENTERPRISEPACK",
                                                "servicePlans": [{"servicePlanId": "efb87545-963c-4e0d-99df-69c6916d9eb0",
                                                                  "servicePlanName": "EXCHANGE_S_ENTERPRISE",
                                                                  "provisioningStatus": "Success", "appliesTo": "User"}]}]))
    checks = by_name(prereq_facts.run(module_params(**graph_args(emu))))
    assert checks['entra_licence']['ok'] is False and 'AAD_PREMIUM' in checks['entra_licence']['detail']
    assert checks['entra_tenant_type']['ok'] is True


def _app(client_id, permissions, directory_roles=()):
    from emulator.fixtures import CLIENT_SECRET
    return {"client_id": client_id, "display_name": "app %s" % client_id[:4], "principal_id": "cccccccc-0000-4000-8000-%s" % client_id[-12:],
            "secrets": [CLIENT_SECRET], "certificates": [], "permissions": list(permissions), "directory_roles": list(directory_roles)}


LEAST = "44444444-4444-4444-8444-444444444444"
NO_MEMBERS = "55555555-5555-4555-8555-555555555555"


def _apps_tenant():
    """The small tenant plus two apps with no directory role: one with exactly the least privileged
    permissions, one without GroupMember.Read.All (nor anything that covers it)."""
    tenant = _tenant()
    tenant['apps'] = tenant['apps'] + [_app(LEAST, ["GroupMember.Read.All", "User.Read.All", "Organization.Read.All"]),
                                       _app(NO_MEMBERS, ["User.Read.All", "Organization.Read.All"])]
    return tenant


def test_entra_app_with_its_permissions_and_no_directory_role_passes(graph_emulator_factory):
    """11.8: the app's check is its Graph application permissions, read from the roles claim of its own
    token; no directory role is asked of it."""
    emu = graph_emulator_factory(_apps_tenant())
    checks = by_name(prereq_facts.run(module_params(**graph_args(emu, client_id=LEAST))))
    assert checks['entra_app_permissions']['ok'] is True, checks['entra_app_permissions']
    assert 'GroupMember.Read.All' in checks['entra_app_permissions']['detail']
    assert [c['name'] for c in checks.values() if c['part'] == 'entra' and c['ok'] is False] == [], checks
    assert 'entra_caller_role' not in checks


def test_entra_app_without_group_member_permission_fails_naming_it(graph_emulator_factory):
    emu = graph_emulator_factory(_apps_tenant())
    result = prereq_facts.run(module_params(**graph_args(emu, client_id=NO_MEMBERS)))
    check = by_name(result)['entra_app_permissions']
    assert check['ok'] is False and check['required'] is True
    assert 'GroupMember.Read.All' in check['detail'] and 'GroupMember.Read.All' in check['remedy']
    assert 'User.Read.All' not in check['remedy']
    assert 'entra_app_permissions' in result['failed']


def test_entra_admin_role_of_a_named_person_is_informational(graph_emulator_factory):
    tenant = _apps_tenant()
    admin, other = tenant['users'][0], tenant['users'][1]
    tenant['role_assignments'] = [{"principalId": admin['id'], "roleDefinitionId": prereq_checks.HYBRID_IDENTITY_ADMINISTRATOR}]
    emu = graph_emulator_factory(tenant)
    checks = by_name(prereq_facts.run(module_params(**graph_args(emu, admin_principal=admin['userPrincipalName']))))
    assert checks['entra_admin_role']['ok'] is True and 'Hybrid Identity Administrator' in checks['entra_admin_role']['detail']
    result = prereq_facts.run(module_params(**graph_args(emu, admin_principal=other['userPrincipalName'])))
    check = by_name(result)['entra_admin_role']
    assert check['ok'] is False and check['required'] is False and other['userPrincipalName'] in check['detail']
    assert 'entra_admin_role' not in result['failed'] and 'entra_admin_role' in result['advisories']


def test_entra_selected_groups(graph_emulator):
    params = module_params(**graph_args(graph_emulator, groups=['Finance Team', 'All Sales (M365)', 'No Such Group']))
    check = by_name(prereq_facts.run(params))['entra_groups_in_scope']
    assert check['ok'] is False
    assert 'No Such Group' in check['detail'] and 'Microsoft 365' in check['detail']
    params['groups'] = ['Finance Team', 'f0000000-0000-4000-8000-000000000002']
    assert by_name(prereq_facts.run(params))['entra_groups_in_scope']['ok'] is True


def test_entra_without_read_permission(graph_emulator):
    checks = by_name(prereq_facts.run(module_params(**graph_args(graph_emulator, client_id=graph_emulator.noperm_client_id))))
    assert checks['entra_connection']['ok'] is True        # a token was obtained
    assert checks['entra_tenant_type']['ok'] is None and 'Authorization_RequestDenied' in checks['entra_tenant_type']['detail']
    assert checks['entra_licence']['ok'] is None


def test_entra_wrong_secret(graph_emulator):
    checks = by_name(prereq_facts.run(module_params(**graph_args(graph_emulator, client_secret='wrong-secret-123'))))
    assert checks['entra_connection']['ok'] is False
    assert all(checks[n]['ok'] is None for n in prereq_checks.ENTRA_CHECKS[1:])
    assert 'wrong-secret-123' not in json.dumps(checks)
