"""ad_group_writeback reading Entra through real msal/requests from the HTTPS Graph emulator
(tenant seeded with the lab's own identities, so members resolve in AD): all mode with a filter,
selected mode by id and name, and incremental runs with the delta state file, including a
rejected delta link that falls back to a full read."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import uuid

import pytest

from writeback_helpers import Directory, first, graph_args, identity_dn_keys, run, synced_users

PREFIX = 'GW %s ' % uuid.uuid4().hex[:6]


@pytest.fixture(autouse=True)
def _no_ambient_ca_bundle(monkeypatch):
    # This machine sets REQUESTS_CA_BUNDLE; the product must trust graph_ca_bundle regardless.
    monkeypatch.setenv('REQUESTS_CA_BUNDLE', '/nonexistent/ca-bundle.pem')


@pytest.fixture
def world(corp, graph_tenant, graph_emulator_factory):
    ids = corp.identities
    b = graph_tenant()
    users = synced_users(b, ids[:6])
    cloud = b.user('Cloud Only')
    child = b.group(PREFIX + 'Child', members=[users[2]])
    alpha = b.group(PREFIX + 'Alpha', members=[users[0], users[1], child, cloud, b.device('PC-1')], description='alpha')
    dynamic = b.group(PREFIX + 'Dynamic', kind='dynamic', members=[users[3]])
    mail = b.group(PREFIX + 'Mail', kind='mail_security', members=[users[4]])
    b.group(PREFIX + 'M365', kind='unified', members=[users[4]])
    b.group(PREFIX + 'Synced', kind='synced', members=[users[5]])
    emu = graph_emulator_factory(b.build())
    directory = Directory(corp)
    ou = directory.make_ou('t-graph-%s' % uuid.uuid4().hex[:8])
    try:
        yield dict(emu=emu, ids=ids, users=users, alpha=alpha, child=child, dynamic=dynamic, mail=mail, ou=ou,
                   directory=directory)
    finally:
        directory.remove_tree(ou)
        directory.close()


def wb(corp, w, **kw):
    kw.setdefault('target_ou', w['ou'])
    kw.setdefault('search_base', w['ou'])
    args = graph_args(w['emu'])
    args.update(kw)
    return run(corp, None, **args)


def test_all_groups_with_filter_writes_only_eligible_groups(corp, world):
    w, d = world, world['directory']
    flt = "startswith(displayName,'%s')" % PREFIX
    result = wb(corp, w, all_groups=True, group_filter=flt)
    assert result['graph_requests'] > 0
    assert result['summary']['created'] == 3, result['groups']
    alpha = d.one(w['alpha'])
    assert first(alpha, 'description') == 'alpha'
    expected = identity_dn_keys(w['ids'][:2]) | {d.member_keys({'attributes': {'member': [d.one(w['child'])['dn']]}}).pop()}
    assert d.member_keys(alpha) == expected
    assert d.member_keys(d.one(w['dynamic'])) == identity_dn_keys(w['ids'][3:4])
    assert d.by_anchor(w['mail']) == []
    report = dict((g['id'], g) for g in result['groups'])[w['alpha']]
    assert set(m['reason'] for m in report['skipped_members']) == {'cloud_only_user', 'unsupported_type_device'}

    again = wb(corp, w, all_groups=True, group_filter=flt)
    assert again['changed'] is False
    assert not any(again['ldap_operations'][k] for k in ('adds', 'modifies', 'modify_dns', 'deletes'))


def test_selected_groups_by_id_and_name_report_ineligible_and_missing(corp, world):
    w, d = world, world['directory']
    result = wb(corp, w, groups=[w['alpha'], PREFIX + 'Child', PREFIX + 'Mail', PREFIX + 'Nowhere'])
    by_id = dict((g['id'], g) for g in result['groups'])
    assert by_id[w['alpha']]['action'] == 'created' and by_id[w['child']]['action'] == 'created'
    assert by_id[w['mail']]['action'] == 'skipped' and by_id[w['mail']]['reason'] == 'mail_enabled'
    assert result['not_found'] == [PREFIX + 'Nowhere']
    assert any('Nowhere' in warning for warning in result['warnings'])
    assert d.by_anchor(w['mail']) == []


def test_incremental_runs_read_only_changes_and_survive_a_rejected_delta_link(corp, world, tmp_path):
    w, d = world, world['directory']
    emu = w['emu']
    state = str(tmp_path / 'delta.json')
    flt = "startswith(displayName,'%s')" % PREFIX
    first_run = wb(corp, w, all_groups=True, group_filter=flt, delta_state_path=state)
    assert first_run['summary']['created'] == 3
    saved = json.load(open(state))
    assert saved['delta_link'] and saved['last_run']['mode'] == 'full'

    emu.admin.add_members(w['alpha'], [w['users'][4]])
    emu.admin.remove_members(w['alpha'], [w['users'][0]])
    log_start = len(emu.admin.requests())
    second = wb(corp, w, all_groups=True, group_filter=flt, delta_state_path=state)
    assert json.load(open(state))['last_run']['mode'] == 'delta'
    read = [e['path'] for e in emu.admin.requests(log_start) if e['kind'] in ('graph', 'batch_item')]
    assert any('/groups/delta' in p for p in read)
    unchanged = (w['child'], w['dynamic'])
    assert not [p for p in read if '/members' in p and any(g in p for g in unchanged)], read
    report = dict((g['id'], g) for g in second['groups'])[w['alpha']]
    assert report['members_added'] and report['members_removed']
    alpha = d.one(w['alpha'])
    assert identity_dn_keys([w['ids'][4]]) <= d.member_keys(alpha)
    assert not identity_dn_keys([w['ids'][0]]) & d.member_keys(alpha)

    emu.admin.expire_delta_tokens()
    emu.admin.remove_members(w['alpha'], [w['users'][1]])
    third = wb(corp, w, all_groups=True, group_filter=flt, delta_state_path=state)
    assert json.load(open(state))['last_run']['mode'] == 'full'
    assert 'delta_rejected' in json.load(open(state))['last_run']['reason']
    assert not identity_dn_keys([w['ids'][1]]) & d.member_keys(d.one(w['alpha']))
    assert third['changed'] is True

    check = wb(corp, w, all_groups=True, group_filter=flt, delta_state_path=state, check=True)
    assert check['changed'] is False
