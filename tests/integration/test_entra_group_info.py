"""entra_reader and the entra_group_info module against the HTTPS Graph emulator.

The reader is called directly for the data cases (selection, members, eligibility, request counts,
incremental delta reads and their fallback); the module runs through ansible-playbook once per
auth method, in check mode too, and for a failure (clean message, request-id, no traceback)."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import math
import os
import subprocess

import pytest

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import delta_state, entra_reader
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.graph_client import GraphClient

from emulator.fixtures import TenantBuilder, build_tenant

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FINANCE = 'f0000000-0000-4000-8000-000000000001'
AUDITORS = 'f0000000-0000-4000-8000-000000000002'
M365 = 'f0000000-0000-4000-8000-000000000003'
DYNAMIC = 'f0000000-0000-4000-8000-000000000004'


@pytest.fixture(autouse=True)
def _no_env_ca(monkeypatch):
    monkeypatch.delenv('REQUESTS_CA_BUNDLE', raising=False)


def params(emu, **kw):
    p = dict(tenant_id=emu.tenant_id, client_id=emu.client_id, client_secret=emu.client_secret,
             authority_host=emu.authority_url, graph_endpoint=emu.base_url, graph_ca_bundle=emu.ca_file)
    p.update(kw)
    return p


def client_for(emu, **kw):
    return GraphClient(params(emu, **kw))


# -- selection -------------------------------------------------------------------------------------

def test_selected_by_ids_and_names_with_not_found(graph_emulator):
    emu = graph_emulator
    emu.admin.create_group(displayName="O'Brien's Team", securityEnabled=True, mailEnabled=False, groupTypes=[])
    client = client_for(emu)
    report = entra_reader.read_groups_report(
        client, ids=[DYNAMIC, '0badc0de-0000-4000-8000-000000000000', AUDITORS],
        display_names=['Finance Team', "O'Brien's Team", 'No Such Group'])
    names = [g['display_name'] for g in report['groups']]
    assert names == ['Dynamic Engineers', 'Finance Auditors', 'Finance Team', "O'Brien's Team"]
    assert report['not_found'] == ['0badc0de-0000-4000-8000-000000000000', 'No Such Group']
    assert all(g['eligible'] and 'members' not in g for g in report['groups'])
    # ids in one $batch, names in one filtered GET
    assert client.stats['requests'] == 2 and client.stats['batches'] == 1


def test_ambiguous_names_select_all_and_are_reported(graph_emulator):
    emu = graph_emulator
    a = emu.admin.create_group(displayName='Twins', securityEnabled=True, mailEnabled=False, groupTypes=[])
    b = emu.admin.create_group(displayName='Twins', securityEnabled=True, mailEnabled=False, groupTypes=[])
    report = entra_reader.read_groups_report(client_for(emu), display_names=['Twins'])
    assert sorted(g['id'] for g in report['groups']) == sorted([a['id'], b['id']])
    assert report['ambiguous'] == [{'name': 'Twins', 'ids': sorted([a['id'], b['id']])}]


def test_direct_members_contract_and_member_support(graph_emulator):
    emu = graph_emulator
    groups = entra_reader.read_groups(client_for(emu), ids=[FINANCE, AUDITORS], members='direct')
    finance = [g for g in groups if g['id'] == FINANCE][0]
    assert finance['member_count'] == len(finance['members']) == 10
    by_type = {}
    for m in finance['members']:
        by_type.setdefault(m['type'], []).append(m)
    assert set(by_type) == {'user', 'device', 'service_principal', 'org_contact', 'group'}
    synced = [m for m in by_type['user'] if m['on_premises_sync_enabled']]
    assert len(synced) == 5
    for m in synced:   # read from beta: the AD objectGUID is there
        assert m['on_premises_object_identifier'] and m['on_premises_security_identifier'] and m['supported']
    cloud = [m for m in by_type['user'] if not m['on_premises_sync_enabled']][0]
    assert (cloud['supported'], cloud['reason']) == (False, 'cloud_only_user')
    assert by_type['device'][0]['reason'] == 'unsupported_type_device'
    assert by_type['group'][0]['id'] == AUDITORS and by_type['group'][0]['supported'] is True
    # the same read without the nested group in scope
    alone = entra_reader.read_groups(client_for(emu), ids=[FINANCE], members='direct')[0]
    child = [m for m in alone['members'] if m['type'] == 'group'][0]
    assert (child['supported'], child['reason']) == (False, 'group_not_in_scope')
    assert set(alone['members'][0]) >= {'id', 'type', 'display_name', 'user_principal_name', 'on_premises_object_identifier',
                                        'on_premises_security_identifier', 'on_premises_immutable_id',
                                        'on_premises_domain_name', 'on_premises_sync_enabled'}


def test_transitive_members_flatten_nested_groups(graph_emulator):
    emu = graph_emulator
    group = entra_reader.read_groups(client_for(emu), ids=[FINANCE], members='transitive')[0]
    ids = set(m['id'] for m in group['members'])
    auditors = emu.admin.members_of(AUDITORS)
    assert set(a if isinstance(a, str) else a['id'] for a in auditors) <= ids
    assert 'member_count' not in group


def test_all_groups_eligible_only_and_filter(graph_emulator):
    emu = graph_emulator
    client = client_for(emu)
    report = entra_reader.read_groups_report(client, all_groups=True, eligible_only=True, max_members=100, members='direct')
    assert all(g['eligible'] for g in report['groups'])
    skipped = dict((s['display_name'], s['reasons']) for s in report['skipped'])
    assert skipped['Paging Group'] == ['too_many_members']
    assert any(r == ['synced_from_ad'] for r in skipped.values())
    assert M365 not in [g['id'] for g in report['groups']] and 'All Sales (M365)' not in skipped  # not even read
    flt = entra_reader.read_groups(client, all_groups=True, odata_filter="startswith(displayName,'Finance')")
    assert sorted(g['display_name'] for g in flt) == ['Finance Auditors', 'Finance Team']
    every = entra_reader.read_groups_report(client, odata_filter="startswith(displayName,'All Sales')")
    assert every['groups'][0]['ineligible_reasons'] == ['not_security_enabled', 'mail_enabled', 'microsoft_365']


def test_advanced_query_filter_is_sent_with_consistency_level(graph_emulator):
    groups = entra_reader.read_groups(client_for(graph_emulator), all_groups=True,
                                      odata_filter="not(startswith(displayName,'Finance'))")
    assert groups and not any(g['display_name'].startswith('Finance') for g in groups)


def test_many_groups_members_read_in_batches_near_the_floor(graph_emulator_factory):
    tenant = build_tenant(groups=70, users=1500, memberships=3000, nesting_depth=2, big_group_members=1200, seed=11)
    emu = graph_emulator_factory(tenant, settings={'throttle_enabled': False})
    client = client_for(emu)
    groups = entra_reader.read_groups(client, all_groups=True, members='direct')
    n = len(groups)
    assert n >= 50
    for g in groups:
        assert sorted(m['id'] for m in g['members']) == sorted(tenant['memberships'].get(g['id'], []))
    batches = [e for e in emu.admin.requests() if e['kind'] == 'batch']
    # one more for the second page (from /beta, followed inside $batch) of the 1,200-member group
    assert len(batches) == math.ceil(n / 20) + 1
    assert all(e['path'].startswith('/beta/$batch') for e in batches)
    assert client.stats['requests'] == 1 + len(batches)   # one page of groups, then only $batch


def test_limited_permission_fails_instead_of_dropping_synced_users(graph_emulator):
    emu = graph_emulator
    with pytest.raises(entra_reader.EntraReadError) as exc:
        entra_reader.read_groups(client_for(emu, client_id=emu.limited_client_id), ids=[AUDITORS], members='direct')
    assert 'User.Read.All' in str(exc.value) and AUDITORS in str(exc.value)


# -- incremental -------------------------------------------------------------------------------------

def _member_ids(groups, gid):
    return sorted(m['id'] for m in [g for g in groups if g['id'] == gid][0]['members'])


def test_incremental_reads_only_changes_and_matches_a_full_read(graph_emulator_factory):
    b = TenantBuilder()
    users = [b.synced_user('u%02d' % i) for i in range(12)]
    cloud = b.user('Cloud Only')
    g1 = b.group('Sales EU', members=users[:4])
    g2 = b.group('Sales US', members=users[4:8] + [g1])
    g3 = b.group('Sales Doomed', members=users[8:9])
    b.group('Marketing', members=users[9:10])
    emu = graph_emulator_factory(b, settings={'throttle_enabled': False})
    client = client_for(emu)
    flt = "startswith(displayName,'Sales')"
    groups, state = entra_reader.read_groups_incremental(client, None, odata_filter=flt)
    assert state['last_run']['mode'] == 'full' and sorted(g['display_name'] for g in groups) == [
        'Sales Doomed', 'Sales EU', 'Sales US']
    state = json.loads(json.dumps(delta_state.hydrate(state)))   # JSON once its member lists are made (a full read's)

    # nothing changed: one delta request, same groups
    start = client.stats['requests']
    again, state = entra_reader.read_groups_incremental(client, state, odata_filter=flt)
    assert client.stats['requests'] - start == 1 and state['last_run']['mode'] == 'delta'
    assert [(g['id'], len(g['members'])) for g in again] == [(g['id'], len(g['members'])) for g in groups]

    newbie = emu.admin.create_user(displayName='Late Joiner', userPrincipalName='late@corp.example.test',
                                   onPremisesSyncEnabled=True, onPremisesObjectIdentifier='0a0b0c0d-0000-4000-8000-00000000a1a1',
                                   onPremisesSecurityIdentifier='S-1-5-21-1000-2000-3000-9999',
                                   onPremisesDomainName='corp.example.test')['id']
    emu.admin.add_members(g1, [newbie, cloud])
    emu.admin.remove_members(g2, [users[4]])
    emu.admin.delete_group(g3)
    g5 = emu.admin.create_group(displayName='Sales APAC', securityEnabled=True, mailEnabled=False, groupTypes=[],
                                members=users[10:12])['id']
    emu.admin.update_group([g for g in groups if g['display_name'] == 'Sales EU'][0]['id'], description='changed')
    inc, state = entra_reader.read_groups_incremental(client, json.loads(json.dumps(state)), odata_filter=flt)
    assert state['last_run']['mode'] == 'delta' and state['last_run']['new_in_scope'] == 1
    full = entra_reader.read_groups(client, all_groups=True, odata_filter=flt, members='direct')
    assert sorted(g['id'] for g in inc) == sorted(g['id'] for g in full) and g3 not in [g['id'] for g in inc]
    for g in full:
        assert _member_ids(inc, g['id']) == sorted(m['id'] for m in g['members'])
    by_id = dict((g['id'], g) for g in inc)
    assert by_id[g1]['description'] == 'changed'
    new_member = [m for m in by_id[g1]['members'] if m['id'] == newbie][0]
    assert new_member['on_premises_object_identifier'] and new_member['supported']
    assert [m for m in by_id[g1]['members'] if m['id'] == cloud][0]['reason'] == 'cloud_only_user'
    assert g5 in by_id

    # renamed out of the filter: leaves the scope
    emu.admin.update_group(g5, displayName='Former Sales APAC')
    inc, state = entra_reader.read_groups_incremental(client, state, odata_filter=flt)
    assert g5 not in [g['id'] for g in inc]


@pytest.mark.parametrize('how', ['expire_delta_tokens', 'reset_delta_tokens'])
def test_incremental_falls_back_to_a_full_read_when_the_link_is_rejected(graph_emulator, how):
    emu = graph_emulator
    client = client_for(emu)
    groups, state = entra_reader.read_groups_incremental(client, None)
    getattr(emu.admin, how)()
    emu.admin.add_members(AUDITORS, [m['id'] for m in groups[0]['members'][:1] if m['type'] == 'user'])
    again, state2 = entra_reader.read_groups_incremental(client, state)
    assert state2['last_run']['mode'] == 'full'
    assert state2['last_run']['reason'].startswith('delta_rejected: HTTP %s' % (400 if how.startswith('expire') else 410))
    full = entra_reader.read_groups(client, all_groups=True, members='direct')
    assert [(g['id'], _member_ids(again, g['id'])) for g in again] == [
        (g['id'], sorted(m['id'] for m in g['members'])) for g in sorted(full, key=lambda x: x['id'])]
    # and the new link works
    unused, state3 = entra_reader.read_groups_incremental(client, state2)
    assert state3['last_run']['mode'] == 'delta'


def test_a_rename_only_delta_keeps_the_members_file(graph_emulator, tmp_path):
    """A delta that changes only a group's properties saves the head alone: the members file the
    state was loaded from is named again, not written anew (at 20,000 groups it is 180 MB). A member
    change still writes a new one."""
    emu = graph_emulator
    client = client_for(emu)
    path = str(tmp_path / 'state.json')
    unused, state = entra_reader.read_groups_incremental(client, None, build_groups=False)
    delta_state.save(path, state)
    first = sorted(n for n in os.listdir(str(tmp_path)) if '.members-' in n)
    emu.admin.update_group(AUDITORS, displayName='Finance Auditors (renamed)')
    unused, state = entra_reader.read_groups_incremental(client, delta_state.load(path), build_groups=False)
    assert state['last_run']['changed_groups'] == 1 and state['groups'][AUDITORS]['display_name'] == 'Finance Auditors (renamed)'
    delta_state.save(path, state)
    assert sorted(n for n in os.listdir(str(tmp_path)) if '.members-' in n) == first
    loaded = delta_state.hydrate(delta_state.load(path))
    assert loaded['groups'][AUDITORS]['display_name'] == 'Finance Auditors (renamed)'
    assert loaded['groups'][AUDITORS]['member_ids'] == state['groups'][AUDITORS]['member_ids']

    user = [m for m in loaded['objects'] if m not in loaded['groups'][AUDITORS]['member_ids']
            and loaded['objects'][m].get('type') == 'user'][0]
    emu.admin.add_members(AUDITORS, [user])
    unused, state = entra_reader.read_groups_incremental(client, delta_state.load(path), build_groups=False)
    delta_state.save(path, state)
    (second,) = [n for n in os.listdir(str(tmp_path)) if '.members-' in n]
    assert [second] != first
    assert user in delta_state.hydrate(delta_state.load(path))['groups'][AUDITORS]['member_ids']


def test_incremental_full_read_when_filter_changes(graph_emulator):
    client = client_for(graph_emulator)
    unused, state = entra_reader.read_groups_incremental(client, None)
    groups, state = entra_reader.read_groups_incremental(client, state, odata_filter="startswith(displayName,'Finance')")
    assert state['last_run'] == dict(state['last_run'], mode='full', reason='filter_changed')
    assert sorted(g['display_name'] for g in groups) == ['Finance Auditors', 'Finance Team']


# -- the module through ansible-playbook -----------------------------------------------------------

def run_module(tmp_path, args, check=False, env=None, ignore_errors=False):
    results = tmp_path / 'result.json'
    play = [{
        'hosts': 'localhost', 'gather_facts': False,
        'tasks': [
            {'name': 'read', 'hybrid_identity.cloud_sync.entra_group_info': args, 'register': 'r',
             'ignore_errors': ignore_errors},
            {'name': 'save', 'ansible.builtin.copy': {'content': '{{ r | to_json }}', 'dest': str(results)},
             'check_mode': False},
        ],
    }]
    path = tmp_path / 'play.yml'
    path.write_text(json.dumps(play))
    full_env = dict(os.environ)
    full_env.pop('REQUESTS_CA_BUNDLE', None)
    full_env.update({'ANSIBLE_NOCOLOR': '1', 'ANSIBLE_LOCALHOST_WARNING': 'false',
                     'ANSIBLE_INVENTORY_UNPARSED_WARNING': 'false',
                     'ANSIBLE_PYTHON_INTERPRETER': os.path.join(ROOT, '.venv', 'bin', 'python')})
    full_env.update(env or {})
    cmd = [os.path.join(ROOT, '.venv', 'bin', 'ansible-playbook'), '-i', 'localhost,', '-c', 'local', str(path)]
    if check:
        cmd.append('--check')
    proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=300, check=False)
    out = proc.stdout + proc.stderr
    assert results.exists(), out
    return proc.returncode, out, json.loads(results.read_text())


def _module_args(emu, **kw):
    args = dict(authority_host=emu.authority_url, graph_endpoint=emu.base_url, graph_ca_bundle=emu.ca_file)
    args.update(kw)
    return args


@pytest.mark.parametrize('check', [False, True])
def test_module_client_secret(graph_emulator_module, tmp_path, check):
    emu = graph_emulator_module
    args = _module_args(emu, tenant_id=emu.tenant_id, client_id=emu.client_id, client_secret=emu.client_secret,
                        groups=['Finance Team', FINANCE.upper(), 'Nobody Here'], members='direct')
    rc, out, r = run_module(tmp_path, args, check=check)
    assert rc == 0, out
    assert r['changed'] is False and r['not_found'] == ['Nobody Here']
    assert [g['id'] for g in r['groups']] == [FINANCE]
    assert len(r['groups'][0]['members']) == 10 and r['graph_requests'] == 3  # id, names, members
    assert emu.client_secret not in out and emu.client_secret not in json.dumps(r)


def test_module_certificate_from_environment(graph_emulator_module, tmp_path):
    emu = graph_emulator_module
    pem = tmp_path / 'client.pem'
    pem.write_text(open(emu.client_cert_file).read() + open(emu.client_key_file).read())
    env = {'AZURE_TENANT_ID': emu.tenant_id, 'AZURE_CLIENT_ID': emu.client_id, 'AZURE_CLIENT_CERTIFICATE_PATH': str(pem),
           'CLOUDSYNC_GRAPH_CA_BUNDLE': emu.ca_file, 'AZURE_AUTHORITY_HOST': emu.authority_url,
           'CLOUDSYNC_GRAPH_ENDPOINT': emu.base_url}
    rc, out, r = run_module(tmp_path, {'all_groups': True, 'eligible_only': True}, env=env, check=True)
    assert rc == 0, out
    assert r['groups'] and all(g['eligible'] for g in r['groups'])
    assert any('synced_from_ad' in s['reasons'] for s in r['skipped'])


def test_module_managed_identity(graph_emulator_module, tmp_path):
    emu = graph_emulator_module
    args = _module_args(emu, auth_method='managed_identity', groups=[AUDITORS], members='transitive')
    rc, out, r = run_module(tmp_path, args, env={'AZURE_POD_IDENTITY_AUTHORITY_HOST': emu.imds_url})
    assert rc == 0, out
    assert r['groups'][0]['display_name'] == 'Finance Auditors' and len(r['groups'][0]['members']) == 3


def test_module_failure_is_a_clean_message_with_request_id(graph_emulator_module, tmp_path):
    emu = graph_emulator_module
    args = _module_args(emu, tenant_id=emu.tenant_id, client_id=emu.noperm_client_id, client_secret=emu.client_secret,
                        all_groups=True)
    rc, out, r = run_module(tmp_path, args, ignore_errors=True)
    assert r['failed'] is True
    assert 'Authorization_RequestDenied' in r['msg'] and 'request-id' in r['msg'] and r['request_id']
    # ansible-core 2.19's controller marks every failure with exception='(traceback unavailable)'
    assert r['status'] == 403 and r.get('exception') in (None, '(traceback unavailable)'), r.get('exception')
    assert 'Traceback (most recent call last)' not in out, out
    assert emu.client_secret not in out


def test_module_refuses_empty_selection(graph_emulator_module, tmp_path):
    emu = graph_emulator_module
    args = _module_args(emu, tenant_id=emu.tenant_id, client_id=emu.client_id, client_secret=emu.client_secret)
    rc, out, r = run_module(tmp_path, args, ignore_errors=True)
    assert r['failed'] is True and 'Nothing to read' in r['msg']


def test_module_nested_groups_writeback_flag_and_member_source(graph_emulator_factory, tmp_path):
    """The module's new options end to end: include_nested (Cloud Sync writes a selected group's nested
    group "and not it's members":
    https://learn.microsoft.com/en-us/entra/identity/hybrid/cloud-sync/how-to-configure-entra-to-active-directory),
    writeback_enabled_only (writebackConfiguration/isEnabled, beta), member_source (v1.0 when beta refuses)
    and a converted group (Group SOA) with its on-premises identifiers."""
    b = TenantBuilder()
    alice = b.synced_user('alice')
    child = b.group('Nested Child', members=[alice], writebackConfiguration={'isEnabled': True})
    converted = b.group('Converted From AD', kind='synced', members=[alice], writebackConfiguration={'isEnabled': True},
                        onPremisesSyncBehavior={'isCloudManaged': True})
    parent = b.group('Flagged Parent', members=[alice, child, converted], writebackConfiguration={'isEnabled': True})
    off = b.group('Flag Off', members=[alice])
    emu = graph_emulator_factory(b.build(), settings={'beta_withdrawn': ['onPremisesObjectIdentifier']})
    emu.admin.update_group(converted, onPremisesSyncEnabled=None)
    base = _module_args(emu, tenant_id=emu.tenant_id, client_id=emu.client_id, client_secret=emu.client_secret)
    rc, out, r = run_module(tmp_path, dict(base, groups=[parent], members='direct', include_nested=True))
    assert rc == 0, out
    by_id = dict((g['id'], g) for g in r['groups'])
    assert sorted(by_id) == sorted([parent, child, converted])
    assert by_id[child]['nested_only'] is True and by_id[child]['members'] == []
    assert by_id[converted]['nested_only'] is True and by_id[converted]['cloud_managed'] is True
    assert by_id[converted]['on_premises_security_identifier'].startswith('S-1-5-21-')
    assert by_id[converted]['on_premises_sam_account_name'] == 'Converted From AD'
    assert r['member_source'] == 'v1.0'
    assert all(m['on_premises_object_identifier'] is None and m['on_premises_security_identifier']
               for m in by_id[parent]['members'] if m['type'] == 'user')
    rc, out, r = run_module(tmp_path, dict(base, all_groups=True, writeback_enabled_only=True), check=True)
    assert rc == 0, out
    assert sorted(g['id'] for g in r['groups']) == sorted([parent, child, converted])
    assert all(g['writeback_enabled'] is True for g in r['groups'])
    assert [(s['id'], s['reasons']) for s in r['skipped']] == [(off, ['writeback_not_enabled'])]
    assert r['member_source'] is None
