"""The group_provisioning role's prerequisite tasks (roles/group_provisioning/tasks/prereqs.yml) in
the agentless setup the README advertises (issue 14.7): no provisioning agent, no gMSA, the writeback
binds as an ordinary account. The agent-account check must not fail such a run; what is checked
instead is the bound account's effective rights on the target OU."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json

from test_cloudsync_permissions import grant_permissions, sandbox_ou
from writeback_helpers import run_playbook

PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: the role's prerequisite tasks
      ansible.builtin.include_role:
        name: hybrid_identity.cloud_sync.group_provisioning
        tasks_from: prereqs
      vars:
        group_provisioning_domains: {domains}
    - name: save
      ansible.builtin.copy:
        content: "{{{{ _group_provisioning_prereqs | to_json }}}}"
        dest: "{results}"
"""


def run_prereqs(forest, tmp_path, ou):
    domains = [dict(name=forest.name, domain_controllers=[forest.ip], ad_ca_file=forest.ca_file, ad_user=forest.unprivileged_upn,
                    target_ou=ou)]
    text = PLAY.format(domains=json.dumps(domains), results='{results}')
    # the password through the option's environment fallback, never in the playbook text
    return run_playbook(text, tmp_path, env={'CLOUDSYNC_AD_PASSWORD': forest.unprivileged_password})


def test_agentless_prereqs_fail_on_missing_rights_then_pass(corp, tmp_path):
    with sandbox_ou(corp, prefix='prq') as ou:
        (tmp_path / "before").mkdir()
        rc, output, saved = run_prereqs(corp, tmp_path / "before", ou)
        assert rc != 0 and saved is None, output
        assert 'ad_agent_permissions' in output and 'Create child, Delete child (CC DC) of group objects' in output, output[-3000:]
        assert 'ad_agent_account' not in output.split('Prerequisites not met', 1)[-1], output[-3000:]
        assert 'provAgentgMSA' not in output
        assert corp.unprivileged_password not in output

        rc, output, _result = grant_permissions(corp, tmp_path / 'grant', targets=[ou], principal=corp.unprivileged_user)
        assert rc == 0, output[-2000:]

        (tmp_path / "after").mkdir()
        rc, output, saved = run_prereqs(corp, tmp_path / "after", ou)
        assert rc == 0, output[-3000:]
        checks = dict((c['name'], c) for c in saved['results'][0]['ansible_facts']['cloudsync_prereqs']['checks'])
        assert checks['ad_agent_account']['ok'] is True and 'Agentless' in checks['ad_agent_account']['detail']
        assert checks['ad_agent_permissions']['ok'] is True
        # no agent part configured: reported as not checked, nothing about it failed
        assert [c['name'] for c in checks.values() if c['part'] == 'agent' and c['ok'] is not None] == []
