# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Provision on demand (playbooks/provision_on_demand.yml, role entry point
group_provisioning/on_demand) with ansible-playbook against the HTTPS Graph emulator and the lab's
corp DC: the four steps of Cloud Sync's provision on demand, in order (scope evaluation, matching,
attribute changes, result), for a new group by name, an existing group by id (matched by its
anchor), an out-of-scope group, an unknown name, and in check mode (nothing written).

Cloud Sync's feature: https://learn.microsoft.com/entra/identity/hybrid/cloud-sync/how-to-on-demand-provision
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import uuid

import pytest

from writeback_helpers import ROOT, Directory, first, graph_args, identity_dn_keys, run, run_playbook, synced_users

PLAYBOOK = os.path.join(ROOT, 'playbooks', 'provision_on_demand.yml')
STEPS = ['scope_evaluation', 'matching', 'attribute_changes', 'result']


@pytest.fixture(autouse=True)
def _no_ambient_ca_bundle(monkeypatch):
    monkeypatch.setenv('REQUESTS_CA_BUNDLE', '/nonexistent/ca-bundle.pem')


@pytest.fixture
def world(corp, graph_tenant, graph_emulator_factory, tmp_path):
    ids = corp.identities
    b = graph_tenant()
    users = synced_users(b, ids[:3])
    tag = uuid.uuid4().hex[:6]
    new = b.group('OD New %s' % tag, members=users[:2], description='on demand')
    existing = b.group('OD Existing %s' % tag, members=[users[0]])
    mail = b.group('OD Mail %s' % tag, kind='mail_security', members=[users[1]])
    emu = graph_emulator_factory(b.build())
    directory = Directory(corp)
    ou = directory.make_ou('t-od-%s' % tag)
    inventory = tmp_path / 'inventory.yml'
    inventory.write_text(json.dumps({'cloudsync_domains': {'hosts': {'corp': {
        'ansible_connection': 'local', 'ansible_python_interpreter': os.path.join(ROOT, '.venv', 'bin', 'python'),
        'cloudsync_domain_controllers': [corp.ip], 'cloudsync_ad_user': corp.admin_upn,
        'cloudsync_ad_password': corp.admin_password, 'cloudsync_ad_ca_file': corp.ca_file,
        'cloudsync_target_ou': ou, 'cloudsync_search_base': ou}}},
        'all': {'vars': {'cloudsync_tenant_id': emu.tenant_id, 'cloudsync_client_id': emu.client_id,
                         'cloudsync_client_secret': emu.client_secret, 'cloudsync_graph_endpoint': emu.base_url,
                         'cloudsync_authority_host': emu.authority_url, 'cloudsync_graph_ca_bundle': emu.ca_file}}}))
    try:
        yield dict(emu=emu, ids=ids, users=users, new=new, existing=existing, mail=mail, tag=tag, ou=ou,
                   directory=directory, inventory=inventory, tmp=tmp_path)
    finally:
        directory.remove_tree(ou)
        directory.close()


def on_demand(w, group, *extra):
    """Run the playbook for ``group``; returns (rc, output, the fact group_provisioning_on_demand of corp)."""
    text = """
- name: Provision on demand
  ansible.builtin.import_playbook: %s

- name: Save the steps
  hosts: corp
  gather_facts: false
  tasks:
    - name: Save
      ansible.builtin.copy:
        content: "{{ group_provisioning_on_demand | to_json }}"
        dest: "{results}"
        mode: "0600"
      check_mode: false
""" % PLAYBOOK
    out = w['tmp'] / ('run-%s' % uuid.uuid4().hex[:6])
    out.mkdir()
    rc, output, saved = run_playbook(text, out, ['-i', str(w['inventory']), '-e', json.dumps({'cloudsync_group': group})]
                                     + list(extra))
    return rc, output, saved


def steps_printed_in_order(output):
    positions = [output.find('"step": "%s"' % s) for s in STEPS]
    return all(p >= 0 for p in positions) and positions == sorted(positions)


def test_new_group_by_name_is_created_step_by_step(world):
    w, d = world, world['directory']
    rc, output, saved = on_demand(w, 'OD New %s' % w['tag'])
    assert rc == 0, output
    assert [s['step'] for s in saved['steps']] == STEPS
    assert steps_printed_in_order(output), output
    scope, match, changes, result = saved['steps']
    assert scope['in_scope'] is True and scope['id'] == w['new'] and scope['status'] == 'in_scope'
    assert match['matched'] is False and 'will be created' in match['detail']
    assert changes['action'] == 'created'
    assert changes['attributes']['description'] == {'before': None, 'after': 'on demand'}, changes
    assert len(changes['members_added']) == 2 and [op['op'] for op in changes['operations']] == ['create']
    assert result['status'] == 'success' and result['action'] == 'created' and result['changed'] is True
    ad = d.one(w['new'], w['ou'])
    assert ad['dn'] == result['dn'] and d.member_keys(ad) == identity_dn_keys(w['ids'][:2])


def test_existing_group_by_id_is_matched_by_its_anchor_and_updated(world):
    w, d = world, world['directory']
    run(d.forest, None, groups=[w['existing']], target_ou=w['ou'], search_base=w['ou'], **graph_args(w['emu']))
    before = d.one(w['existing'], w['ou'])
    raw = before['attributes']['objectGUID']
    guid = str(uuid.UUID(bytes_le=raw[0] if isinstance(raw, list) else raw)) if not isinstance(raw, str) else raw.strip('{}')
    w['emu'].admin.add_members(w['existing'], [w['users'][2]])
    w['emu'].admin.update_group(w['existing'], description='changed in Entra')
    rc, output, saved = on_demand(w, w['existing'])
    assert rc == 0, output
    scope, match, changes, result = saved['steps']
    assert scope['in_scope'] is True
    assert match['matched'] is True and match['matched_by'] == 'anchor'
    assert match['anchor'] == 'msDS-ExternalDirectoryObjectId=Group_%s' % w['existing']
    assert match['object_guid'] == guid and match['dn'] == before['dn']
    assert changes['attributes']['description'] == {'before': None, 'after': 'changed in Entra'}, changes
    assert changes['members_added'] == [w['ids'][2]['dn']] and changes['members_removed'] == []
    assert result['status'] == 'success' and result['action'] == 'updated'
    after = d.one(w['existing'], w['ou'])
    assert first(after, 'description') == 'changed in Entra'
    assert d.member_keys(after) == identity_dn_keys([w['ids'][0], w['ids'][2]])

    rc, output, saved = on_demand(w, w['existing'])       # again: nothing left to do
    assert rc == 0, output
    assert saved['steps'][3]['changed'] is False and saved['steps'][3]['action'] == 'unchanged'


def test_out_of_scope_and_unknown_groups_are_reported_not_written(world):
    w, d = world, world['directory']
    rc, output, saved = on_demand(w, 'OD Mail %s' % w['tag'])
    assert rc == 0, output
    scope, match, unused_changes, result = saved['steps']
    assert scope['in_scope'] is False and 'mail_enabled' in scope['reasons']
    assert match['matched'] is False
    assert result['action'] == 'skipped' and result['changed'] is False
    assert d.by_anchor(w['mail'], w['ou']) == []

    rc, output, saved = on_demand(w, 'OD Nowhere %s' % w['tag'])
    assert rc == 0, output
    assert saved['steps'][0]['status'] == 'not_found' and saved['steps'][3]['status'] == 'skipped'


def test_check_mode_reports_the_steps_and_writes_nothing(world):
    w, d = world, world['directory']
    rc, output, saved = on_demand(w, w['new'], '--check')
    assert rc == 0, output
    assert [s['step'] for s in saved['steps']] == STEPS
    assert saved['steps'][2]['action'] == 'created'
    assert saved['steps'][3]['check_mode'] is True and saved['steps'][3]['detail'].startswith('Would be created')
    assert d.by_anchor(w['new'], w['ou']) == []
