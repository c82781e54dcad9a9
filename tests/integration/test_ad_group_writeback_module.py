"""ad_group_writeback as Ansible runs it (ansible-playbook, the json callback): the module contract.
check -> apply -> apply again reports changed false; diff mode; failures are clean messages
without a traceback; the bind password never appears, even at -vvv."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import uuid

import pytest

from writeback_helpers import Directory, entra_group, entra_user, run_playbook

PLAY = """
- hosts: localhost
  gather_facts: false
  module_defaults:
    group/hybrid_identity.cloud_sync.cloud_sync:
      domain_controllers: ["{ip}"]
      ad_ca_file: "{ca}"
      ad_user: "{user}"
      ad_password: "{password}"
  tasks:
    - name: drift
      hybrid_identity.cloud_sync.ad_group_writeback:
        entra_groups: {groups}
        target_ou: "{ou}"
        search_base: "{ou}"
      check_mode: true
      diff: true
      register: r_drift
    - name: apply
      hybrid_identity.cloud_sync.ad_group_writeback:
        entra_groups: {groups}
        target_ou: "{ou}"
        search_base: "{ou}"
      register: r_apply
    - name: again
      hybrid_identity.cloud_sync.ad_group_writeback:
        entra_groups: {groups}
        target_ou: "{ou}"
        search_base: "{ou}"
      register: r_again
    - name: save
      ansible.builtin.copy:
        content: "{{{{ {{'drift': r_drift, 'apply': r_apply, 'again': r_again}} | to_json }}}}"
        dest: "{{results}}"
        mode: "0600"
"""


@pytest.fixture
def box(corp):
    directory = Directory(corp)
    dn = directory.make_ou('t-mod-%s' % uuid.uuid4().hex[:8])
    yield directory, dn
    directory.remove_tree(dn)
    directory.close()


def test_check_apply_apply_again(corp, box, tmp_path):
    directory, ou = box
    group = entra_group('Module Test', [entra_user(corp.identities[30]), entra_user(corp.identities[31], 'sid')])
    play = PLAY.format(ip=corp.ip, ca=corp.ca_file, user=corp.admin_upn, password=corp.admin_password,
                       groups=json.dumps([group]), ou=ou)
    rc, output, tasks = run_playbook(play, tmp_path)
    assert rc == 0, output[-3000:]
    assert tasks['drift']['changed'] is True
    assert tasks['drift']['plan'][0]['op'] == 'create'
    assert tasks['drift']['diff'], 'diff mode returns before/after'
    assert tasks['apply']['changed'] is True and tasks['apply']['summary']['created'] == 1
    assert tasks['again']['changed'] is False
    assert not any(tasks['again']['ldap_operations'][k] for k in ('adds', 'modifies', 'modify_dns', 'deletes'))
    assert len(directory.by_anchor(group['id'])) == 1


def test_wrong_password_fails_cleanly_and_secrets_stay_out_of_verbose_output(corp, box, tmp_path):
    _directory, ou = box
    secret = 'Wr0ng-%s' % uuid.uuid4().hex
    # The password comes from the environment, as an AWX credential injects it (the env fallback),
    # so the only copy Ansible could print is one our code leaked.
    play = PLAY.format(ip=corp.ip, ca=corp.ca_file, user=corp.admin_upn, password='',
                       groups=json.dumps([entra_group('Never')]), ou=ou).replace('      ad_password: ""\n', '')
    assert 'ad_password' not in play
    rc, output, _saved = run_playbook(play, tmp_path, extra_args=['-vvv'], env={'CLOUDSYNC_AD_PASSWORD': secret})
    assert rc != 0
    assert 'invalidCredentials' in output or 'check ad_user and ad_password' in output
    assert 'Traceback' not in output
    assert secret not in output


def test_unknown_option_values_are_refused_by_the_argument_spec(corp, box, tmp_path):
    _directory, ou = box
    play = PLAY.format(ip=corp.ip, ca=corp.ca_file, user=corp.admin_upn, password=corp.admin_password,
                       groups=json.dumps([entra_group('Never')]), ou=ou).replace('search_base: "%s"' % ou, 'naming: fancy', 1)
    rc, output, _saved = run_playbook(play, tmp_path)
    assert rc != 0
    assert 'value of naming must be one of' in output and 'fancy' in output


DIFF_PLAY = """
- hosts: localhost
  gather_facts: false
  module_defaults:
    group/hybrid_identity.cloud_sync.cloud_sync:
      domain_controllers: ["{ip}"]
      ad_ca_file: "{ca}"
      ad_user: "{user}"
      ad_password: "{password}"
  tasks:
    - name: make
      hybrid_identity.cloud_sync.ad_group_writeback:
        entra_groups: {before}
        target_ou: "{ou}"
        search_base: "{ou}"
    - name: drift
      hybrid_identity.cloud_sync.ad_group_writeback:
        entra_groups: {after}
        target_ou: "{ou}"
        search_base: "{ou}"
      check_mode: true
      diff: true
      register: r_drift
    - name: save
      ansible.builtin.copy:
        content: "{{{{ {{'drift': r_drift}} | to_json }}}}"
        dest: "{{results}}"
        mode: "0600"
"""


def test_diff_is_per_group_with_the_dn_as_header_and_changes_carry_old_and_new_values(corp, box, tmp_path):
    """Issue 14.9: one diff per group, headed by its DN before and after (as cloudsync_permissions
    does per target), and each changed attribute with its old and new value for the reports."""
    _directory, ou = box
    ids = corp.identities
    renamed = entra_group('Old Name', [entra_user(ids[32])], description='first')
    edited = entra_group('Same Name', [entra_user(ids[32])], description='one')
    created = entra_group('Brand New', [entra_user(ids[33])])
    after = [dict(renamed, display_name='New Name', members=[entra_user(ids[32]), entra_user(ids[33])]),
             dict(edited, description='two'), created]
    play = DIFF_PLAY.format(ip=corp.ip, ca=corp.ca_file, user=corp.admin_upn, password=corp.admin_password, ou=ou,
                            before=json.dumps([renamed, edited]), after=json.dumps(after))
    rc, output, saved = run_playbook(play, tmp_path, extra_args=['--diff'])
    assert rc == 0, output[-3000:]
    drift = saved['drift']
    by_id = dict((g['id'], g) for g in drift['groups'])
    old_dn = 'CN=Old Name_%s,%s' % (renamed['id'][-12:], ou)
    new_dn = 'CN=New Name_%s,%s' % (renamed['id'][-12:], ou)
    assert by_id[renamed['id']]['changes']['displayName'] == {'before': 'Old Name', 'after': 'New Name'}
    assert by_id[renamed['id']]['changes']['cn'] == {'before': 'Old Name_' + renamed['id'][-12:],
                                                     'after': 'New Name_' + renamed['id'][-12:]}
    assert by_id[renamed['id']]['changes']['member'] == {'added': 1, 'removed': 0}
    assert by_id[edited['id']]['changes'] == {'description': {'before': 'one', 'after': 'two'}}
    assert by_id[created['id']]['changes']['displayName'] == {'before': None, 'after': 'Brand New'}
    diffs = drift['diff']
    assert isinstance(diffs, list) and len(diffs) == 3, diffs
    headers = dict((d['after_header'], d) for d in diffs)
    assert headers[new_dn]['before_header'] == old_dn
    assert headers[new_dn]['before']['displayName'] == 'Old Name' and headers[new_dn]['after']['displayName'] == 'New Name'
    edited_dn = 'CN=Same Name_%s,%s' % (edited['id'][-12:], ou)
    assert headers[edited_dn]['before_header'] == edited_dn
    assert headers[edited_dn]['before']['description'] == 'one' and headers[edited_dn]['after']['description'] == 'two'
    created_dn = 'CN=Brand New_%s,%s' % (created['id'][-12:], ou)
    assert headers[created_dn]['before_header'] == created_dn + ' (absent)' and headers[created_dn]['before'] == {}
    # What --diff shows: the DN on the ---/+++ lines of each group.
    assert '--- before: %s' % old_dn in output and '+++ after: %s' % new_dn in output, output[-4000:]
