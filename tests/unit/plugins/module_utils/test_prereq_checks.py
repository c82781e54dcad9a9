"""Unit tests of the pure prerequisite checks: every check passes, fails and is "not checked"."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import prereq_checks as pc


def by_name(checks):
    out = {}
    for c in checks:
        assert c['name'] not in out, 'duplicate check %s' % c['name']
        out[c['name']] = c
    return out


GOOD_AD = {
    'server': 'dc1.corp.example.test',
    'schema_has_external_directory_object_id': True,
    'schema_object_version': 88,
    'domain_functionality': 7,
    'forest_functionality': 7,
    'nt_mixed_domain': 0,
    'ports': [{'host': '127.0.0.2', 'port': 389, 'ok': True}, {'host': '127.0.0.2', 'port': 3268, 'ok': True}],
    'target_ous': [{'dn': 'OU=Groups,DC=corp,DC=example,DC=test', 'exists': True}],
    'agent_account': {'name': 'provAgentgMSA$', 'found': True, 'dn': 'CN=provAgentgMSA,CN=Managed Service Accounts,DC=x', 'sid': 'S-1-5-21-1-2-3-1111'},
    'permissions': {'checked': True, 'permission_type': 'UserGroupCreateDelete',
                    'targets': [{'dn': 'DC=corp,DC=example,DC=test', 'missing': []}]},
}

GOOD_ENTRA = {
    'tenant_type': 'AAD',
    'service_plans': [{'service_plan_id': pc.AAD_PREMIUM_PLAN_ID, 'service_plan_name': 'AAD_PREMIUM',
                       'provisioning_status': 'Success', 'sku_part_number': 'AAD_PREMIUM'}],
    'principal_id': 'aaaaaaaa-0000-4000-8000-000000000001',
    'app_roles': ['GroupMember.Read.All', 'User.Read.All'],
    'admin': {'name': 'admin@contoso.onmicrosoft.com', 'id': 'bbbbbbbb-0000-4000-8000-000000000001',
              'role_template_ids': [pc.HYBRID_IDENTITY_ADMINISTRATOR]},
    'synced_users': [{'id': 'u1', 'user_principal_name': 'a@corp', 'on_premises_object_identifier': 'c0ffee00-0000-4000-8000-000000000001'}],
    'groups': [{'id': 'g1', 'display_name': 'Finance', 'security_enabled': True, 'mail_enabled': False, 'group_types': []}],
}

GOOD_AGENT = {
    'host': 'agent1', 'agent_installed': True, 'agent_version': '1.1.1370.0', 'service_found': True, 'service_state': 'Running',
    'registry_present': True, 'connect_sync_installed': True, 'connect_sync_version': '2.2.8.0',
}


def test_all_good_is_ready():
    checks = pc.ad_checks(GOOD_AD) + pc.entra_checks(GOOD_ENTRA) + pc.agent_checks(GOOD_AGENT)
    result = pc.summarize(checks)
    assert [c['name'] for c in checks] == list(pc.AD_CHECKS + pc.ENTRA_CHECKS + pc.AGENT_CHECKS)
    assert all(c['ok'] is True for c in checks), [c for c in checks if c['ok'] is not True]
    assert result['ready'] is True
    assert result['summary'].startswith('Ready')
    assert all(c['remedy'] is None for c in checks)


@pytest.mark.parametrize('part_fn,part,names', [
    (pc.ad_checks, 'ad', pc.AD_CHECKS), (pc.entra_checks, 'entra', pc.ENTRA_CHECKS),
    (pc.agent_checks, 'agent', pc.AGENT_CHECKS),
])
def test_part_not_run_is_not_checked_never_passed(part_fn, part, names):
    checks = part_fn(None)
    assert [c['name'] for c in checks] == list(names)
    assert all(c['ok'] is None and c['part'] == part and c['detail'].startswith('Not checked') for c in checks)
    result = pc.summarize(checks)
    assert result['ready'] is False
    assert 'not checked' in result['summary']


def test_missing_part_blocks_ready():
    checks = pc.ad_checks(GOOD_AD) + pc.entra_checks(None) + pc.agent_checks(GOOD_AGENT)
    result = pc.summarize(checks)
    assert result['ready'] is False
    assert set(result['not_checked']) == set(pc.ENTRA_CHECKS) - pc.INFORMATIONAL


def test_empty_is_not_ready():
    assert pc.summarize([])['ready'] is False


def _ad(**changes):
    facts = dict(GOOD_AD)
    facts.update(changes)
    return by_name(pc.ad_checks(facts))


def test_ad_connection_failure():
    checks = by_name(pc.ad_checks({'connect_error': 'LDAP bind on 127.0.0.9:636 failed: refused', 'ports': GOOD_AD['ports']}))
    assert checks['ad_connection']['ok'] is False
    assert 'refused' in checks['ad_connection']['detail']
    assert checks['ad_connection']['remedy']
    assert checks['ad_schema_attribute']['ok'] is None
    # port probes do not need the LDAP bind
    assert checks['ad_ldap_port']['ok'] is True
    assert list(checks) == list(pc.AD_CHECKS)


def test_schema_attribute():
    assert _ad()['ad_schema_attribute']['ok'] is True
    c = _ad(schema_has_external_directory_object_id=False)['ad_schema_attribute']
    assert c['ok'] is False and 'adprep' in c['remedy']
    assert _ad(schema_has_external_directory_object_id=None)['ad_schema_attribute']['ok'] is None


def test_schema_version():
    assert _ad(schema_object_version=87)['ad_schema_version']['ok'] is True
    samba = _ad(schema_object_version=69)['ad_schema_version']
    assert samba['ok'] is True and 'attribute check is what matters' in samba['detail'] and '2012 R2' in samba['detail']
    old = _ad(schema_object_version=69, schema_has_external_directory_object_id=False)['ad_schema_version']
    assert old['ok'] is False
    assert _ad(schema_object_version=None)['ad_schema_version']['ok'] is None


def test_functional_levels_are_recommendations():
    checks = _ad(domain_functionality=4, forest_functionality=3)
    for name in ('ad_domain_functional_level', 'ad_forest_functional_level'):
        assert checks[name]['ok'] is False
        assert checks[name]['required'] is False
        assert 'Recommended, not required' in checks[name]['detail']
    result = pc.summarize(list(checks.values()))
    assert result['ready'] is True
    assert result['advisories'] == ['ad_domain_functional_level', 'ad_forest_functional_level']
    assert _ad(domain_functionality=7)['ad_domain_functional_level']['ok'] is True
    assert _ad(forest_functionality=None)['ad_forest_functional_level']['ok'] is None
    assert pc.summarize(list(_ad(forest_functionality=None).values()))['ready'] is False


def test_universal_group_scope():
    assert _ad(nt_mixed_domain=0)['ad_universal_group_scope']['ok'] is True
    c = _ad(nt_mixed_domain=1, domain_functionality=0)['ad_universal_group_scope']
    assert c['ok'] is False and 'mixed mode' in c['detail']
    assert _ad(nt_mixed_domain=None, domain_functionality=None)['ad_universal_group_scope']['ok'] is None
    # a level of 2003 or later cannot be mixed mode
    assert _ad(nt_mixed_domain=None, domain_functionality=7)['ad_universal_group_scope']['ok'] is True


def test_ports():
    checks = _ad(ports=[{'host': 'a', 'port': 389, 'ok': False, 'error': 'timed out'}, {'host': 'b', 'port': 389, 'ok': True},
                        {'host': 'a', 'port': 3268, 'ok': False, 'error': 'refused'}])
    assert checks['ad_ldap_port']['ok'] is True and 'timed out' in checks['ad_ldap_port']['detail']
    assert checks['ad_global_catalog_port']['ok'] is False and 'refused' in checks['ad_global_catalog_port']['detail']
    assert '3268' in checks['ad_global_catalog_port']['remedy']
    none = _ad(ports=None)
    assert none['ad_ldap_port']['ok'] is None and none['ad_global_catalog_port']['ok'] is None
    only_ldap = _ad(ports=[{'host': 'a', 'port': 389, 'ok': True}])
    assert only_ldap['ad_global_catalog_port']['ok'] is None


def test_target_ous():
    c = _ad(target_ous=[{'dn': 'OU=A,DC=x', 'exists': True}, {'dn': 'OU=Missing,DC=x', 'exists': False},
                        {'dn': 'bogus', 'exists': False, 'error': 'invalidDNSyntax'}])['ad_target_ous']
    assert c['ok'] is False and 'OU=Missing,DC=x' in c['detail'] and 'bogus (invalidDNSyntax)' in c['detail']
    assert _ad(target_ous=None)['ad_target_ous']['ok'] is None
    assert _ad(target_ous=[])['ad_target_ous']['ok'] is None


def test_agent_account_and_permissions():
    checks = _ad(agent_account={'name': 'nobody$', 'found': False}, permissions=None)
    assert checks['ad_agent_account']['ok'] is False
    assert checks['ad_agent_permissions']['ok'] is None
    assert _ad(agent_account=None, permissions=None)['ad_agent_account']['ok'] is None
    assert _ad(agent_account={'name': 'x', 'error': 'boom'})['ad_agent_account']['ok'] is None
    missing = _ad(permissions={'checked': True, 'targets': [{'dn': 'DC=x', 'missing': ['(OA;CI;CCDC;group;;S-1-5-21-1)']}]})
    assert missing['ad_agent_permissions']['ok'] is False
    assert 'CCDC' in missing['ad_agent_permissions']['detail']
    assert 'cloudsync_permissions' in missing['ad_agent_permissions']['remedy']
    pending = _ad(permissions={'checked': False, 'reason': 'cloudsync_acl is not available'})['ad_agent_permissions']
    assert pending['ok'] is None and 'cloudsync_acl' in pending['detail']
    unreadable = _ad(permissions={'checked': True, 'targets': [{'dn': 'DC=x', 'missing': [], 'error': 'no READ_CONTROL'}]})
    assert unreadable['ad_agent_permissions']['ok'] is None


def test_agentless_checks_the_bound_account():
    """14.7: with no agent, the account the module binds as is the one that writes; its effective rights
    are the check, and an unreadable DACL means it lacks Read permissions there."""
    bound = {'name': 'CORP\\svc-writeback', 'found': True, 'dn': 'CN=svc-writeback,CN=Users,DC=x', 'sid': 'S-1-5-21-1-2-3-1102',
             'role': 'bind'}
    checks = _ad(agent_account=bound)
    assert checks['ad_agent_account']['ok'] is True and 'agentless' in checks['ad_agent_account']['detail'].lower()
    assert checks['ad_agent_permissions']['ok'] is True and 'svc-writeback' in checks['ad_agent_permissions']['detail']
    lacking = _ad(agent_account=bound, permissions={'checked': True, 'targets': [
        {'dn': 'OU=G,DC=x', 'missing': ['Create child, Delete child (CC DC) of group objects on this object and all descendants']}]})
    c = lacking['ad_agent_permissions']
    assert c['ok'] is False and 'Create child, Delete child (CC DC) of group objects' in c['detail'] and 'OU=G,DC=x' in c['detail']
    unreadable = _ad(agent_account=bound, permissions={'checked': True, 'targets': [
        {'dn': 'OU=G,DC=x', 'missing': [], 'error': 'no nTSecurityDescriptor returned', 'unreadable': True}]})
    c = unreadable['ad_agent_permissions']
    assert c['ok'] is False and 'Read permissions' in c['detail'] and 'OU=G,DC=x' in c['detail']


def _entra(**changes):
    facts = dict(GOOD_ENTRA)
    facts.update(changes)
    return by_name(pc.entra_checks(facts))


def test_entra_connection_failure():
    checks = by_name(pc.entra_checks({'connect_error': 'AADSTS7000215: Invalid client secret'}))
    assert checks['entra_connection']['ok'] is False
    assert all(checks[n]['ok'] is None for n in pc.ENTRA_CHECKS[1:])


def test_tenant_type():
    assert _entra()['entra_tenant_type']['ok'] is True
    for kind in ('AAD B2C', 'CIAM'):
        c = _entra(tenant_type=kind)['entra_tenant_type']
        assert c['ok'] is False and kind in c['detail']
    c = _entra(tenant_type=None, errors={'tenant_type': '403 Authorization_RequestDenied'})['entra_tenant_type']
    assert c['ok'] is None and 'Authorization_RequestDenied' in c['detail']


def test_licence():
    p2 = [{'service_plan_id': 'eec0eb4f-6444-4f95-aba0-50c24d67f998', 'service_plan_name': 'AAD_PREMIUM_P2', 'provisioning_status': 'Success'}]
    assert _entra(service_plans=p2)['entra_licence']['ok'] is True
    assert _entra(service_plans=[])['entra_licence']['ok'] is False
    other = [{'service_plan_id': '00000000-0000-0000-0000-000000000001', 'service_plan_name': 'EXCHANGE_S_STANDARD',
              'provisioning_status': 'Success'}]
    assert _entra(service_plans=other)['entra_licence']['ok'] is False
    disabled = [{'service_plan_id': pc.AAD_PREMIUM_PLAN_ID.upper(), 'service_plan_name': 'AAD_PREMIUM', 'provisioning_status': 'Disabled'}]
    c = _entra(service_plans=disabled)['entra_licence']
    assert c['ok'] is False and 'Disabled' in c['detail']
    assert _entra(service_plans=None)['entra_licence']['ok'] is None


def test_app_permissions_from_the_token_roles_claim():
    """The app's own check is its Graph application permissions (the token's roles claim), least
    privileged per the pages of the calls: List groups / group delta / List group members accept
    GroupMember.Read.All or a higher one; members' user properties need User.Read.All (or higher)."""
    assert _entra()['entra_app_permissions']['ok'] is True
    assert _entra(app_roles=['Directory.Read.All'])['entra_app_permissions']['ok'] is True
    assert _entra(app_roles=['Group.Read.All', 'User.Read.All'])['entra_app_permissions']['ok'] is True
    c = _entra(app_roles=['User.Read.All', 'Organization.Read.All'])['entra_app_permissions']
    assert c['ok'] is False and 'GroupMember.Read.All' in c['detail'] and 'User.Read.All' not in c['remedy'], c
    c = _entra(app_roles=['GroupMember.Read.All'])['entra_app_permissions']
    assert c['ok'] is False and 'User.Read.All' in c['detail'] and c['required'] is True
    assert 'GroupMember.Read.All' in _entra(app_roles=[])['entra_app_permissions']['detail']
    c = _entra(app_roles=None, errors={'app_roles': 'the access token is not a JWT'})['entra_app_permissions']
    assert c['ok'] is None and 'not a JWT' in c['detail']


def test_no_directory_role_is_demanded_of_the_app():
    """Hybrid Identity Administrator is the configuring person's role: without a named person the check
    is informational, with one a missing role is reported but never blocks readiness."""
    no_person = _entra(admin=None)
    assert no_person['entra_admin_role']['ok'] is None and no_person['entra_admin_role']['required'] is False
    assert 'admin_principal' in no_person['entra_admin_role']['detail']
    result = pc.summarize(pc.ad_checks(GOOD_AD) + pc.entra_checks(dict(GOOD_ENTRA, admin=None)) + pc.agent_checks(GOOD_AGENT))
    assert result['ready'] is True and 'entra_admin_role' not in result['not_checked'], result
    person = dict(GOOD_ENTRA['admin'], role_template_ids=['88d8e3e3-8f55-4a1e-953a-9b9898b8876b'])
    c = _entra(admin=person)['entra_admin_role']
    assert c['ok'] is False and c['required'] is False and 'admin@contoso.onmicrosoft.com' in c['detail']
    assert 'Hybrid Identity Administrator' in c['remedy']
    result = pc.summarize(pc.ad_checks(GOOD_AD) + pc.entra_checks(dict(GOOD_ENTRA, admin=person)) + pc.agent_checks(GOOD_AGENT))
    assert result['ready'] is True and result['advisories'] == ['entra_admin_role'], result
    assert _entra(admin=dict(person, role_template_ids=[pc.GLOBAL_ADMINISTRATOR.upper()]))['entra_admin_role']['ok'] is True
    c = _entra(admin={'name': 'nobody@contoso', 'error': '404 Request_ResourceNotFound'})['entra_admin_role']
    assert c['ok'] is None and '404' in c['detail'] and c['required'] is False


def test_synced_users_object_identifier():
    c = _entra(synced_users=[{'id': 'u1', 'on_premises_object_identifier': 'x'},
                             {'id': 'u2', 'user_principal_name': 'b@corp', 'on_premises_object_identifier': None}])
    c = c['entra_synced_users_object_identifier']
    assert c['ok'] is False and '1 of 2' in c['detail'] and 'b@corp' in c['detail'] and '2.2.8.0' in c['remedy']
    assert _entra(synced_users=[])['entra_synced_users_object_identifier']['ok'] is False
    assert _entra(synced_users=None)['entra_synced_users_object_identifier']['ok'] is None


def test_groups_in_scope():
    groups = [
        {'id': 'g1', 'display_name': 'Finance', 'security_enabled': True, 'mail_enabled': False, 'group_types': []},
        {'id': 'g2', 'display_name': 'Sales M365', 'security_enabled': False, 'mail_enabled': True, 'group_types': ['Unified']},
        {'id': 'g3', 'display_name': 'Synced', 'security_enabled': True, 'mail_enabled': False, 'on_premises_sync_enabled': True},
    ]
    c = _entra(groups=groups)['entra_groups_in_scope']
    assert c['ok'] is True
    assert '1 would be written back, 2 would be skipped' in c['detail']
    assert 'Microsoft 365' in c['detail'] and 'mastered in AD' in c['detail']
    selected = _entra(groups=groups, groups_selected=True)['entra_groups_in_scope']
    assert selected['ok'] is False
    assert _entra(groups=groups[1:])['entra_groups_in_scope']['ok'] is False
    notfound = _entra(groups=groups[:1], groups_not_found=['No Such Group'], groups_selected=True)['entra_groups_in_scope']
    assert notfound['ok'] is False and 'No Such Group' in notfound['detail']
    big = [{'id': 'g4', 'display_name': 'Big', 'security_enabled': True, 'mail_enabled': False, 'member_count': 11}]
    assert _entra(groups=big, max_members=10)['entra_groups_in_scope']['ok'] is False
    assert _entra(groups=None)['entra_groups_in_scope']['ok'] is None


def _agent(minimum=pc.DEFAULT_MIN_AGENT_VERSION, **changes):
    facts = dict(GOOD_AGENT)
    facts.update(changes)
    return by_name(pc.agent_checks(facts, min_agent_version=minimum))


def test_agent_connection_failure():
    checks = by_name(pc.agent_checks({'host': 'agent1', 'connect_error': 'credentials rejected'}))
    assert checks['agent_connection']['ok'] is False and 'agent1' in checks['agent_connection']['detail']
    assert all(checks[n]['ok'] is None for n in pc.AGENT_CHECKS[1:])


def test_agent_version():
    assert _agent(agent_version='1.1.1370.0')['agent_version']['ok'] is True
    assert _agent(agent_version='1.1.10000.0')['agent_version']['ok'] is True   # numeric, not lexical
    old = _agent(agent_version='1.1.999.0')['agent_version']
    assert old['ok'] is False and '1.1.1370.0' in old['remedy']
    assert _agent('1.1.3730.0', agent_version='1.1.2334.0')['agent_version']['ok'] is False
    assert _agent(agent_installed=False, agent_version=None)['agent_version']['ok'] is False
    assert _agent(agent_version=None)['agent_version']['ok'] is None
    assert _agent(agent_version='garbage')['agent_version']['ok'] is None


def test_agent_service():
    assert _agent()['agent_service']['ok'] is True
    stopped = _agent(service_state='Stopped')['agent_service']
    assert stopped['ok'] is False and 'Stopped' in stopped['detail'] and 'Start-Service' in stopped['remedy']
    assert _agent(service_found=False, service_state=None)['agent_service']['ok'] is False
    assert _agent(service_state=None)['agent_service']['ok'] is None


def test_agent_registry():
    assert _agent()['agent_registry']['ok'] is True
    assert _agent(registry_present=False)['agent_registry']['ok'] is False
    assert _agent(registry_present=None)['agent_registry']['ok'] is None


def test_connect_sync():
    assert _agent(connect_sync_version='2.3.20.0')['connect_sync_version']['ok'] is True
    old = _agent(connect_sync_version='2.1.20.0')['connect_sync_version']
    assert old['ok'] is False and 'onPremisesObjectIdentifier' in old['detail']
    absent = _agent(connect_sync_installed=False, connect_sync_version=None)['connect_sync_version']
    assert absent['ok'] is True and 'not applicable' in absent['detail']
    assert _agent(connect_sync_installed=None)['connect_sync_version']['ok'] is None
    assert _agent(connect_sync_version=None)['connect_sync_version']['ok'] is None


@pytest.mark.parametrize('a,b,expected', [
    ('1.1.1370.0', '1.1.1370.0', 0), ('1.1.1370', '1.1.1370.0', 0), ('1.1.10000.0', '1.1.9999.9', 1),
    ('1.1.999.0', '1.1.1370.0', -1), ('2.2.8.0', '2.22.8.0', -1), ('v3.0', '2.9', 1),
])
def test_compare_versions(a, b, expected):
    assert pc.compare_versions(a, b) == expected


def test_compare_versions_rejects_garbage():
    with pytest.raises(ValueError):
        pc.compare_versions('1.x', '1.0')
    assert pc.parse_version(None) is None


def test_make_check_rejects_non_tristate():
    with pytest.raises(ValueError):
        pc.make_check('x', 'ad', 'yes', 'detail')


def test_summary_lists_failures_and_unchecked():
    checks = pc.agent_checks(dict(GOOD_AGENT, service_state='Stopped', registry_present=None))
    result = pc.summarize(checks)
    assert result['ready'] is False
    assert result['failed'] == ['agent_service'] and result['not_checked'] == ['agent_registry']
    assert 'agent_service' in result['summary'] and 'agent_registry' in result['summary']
