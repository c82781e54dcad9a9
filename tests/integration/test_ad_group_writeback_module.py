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
