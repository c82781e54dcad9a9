# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Markdown drift report of the group_provisioning role (templates/drift_report.md.j2),
rendered by ansible-playbook from a result of the shape report.yml builds: old and new values of
every changed attribute in each of the shapes ad_group_writeback may return them in (attribute
names with the role's `values` from the module's diff and plan; `changes` with before/after per
attribute, as a list or a mapping), and member adds and removes. No lab, no Graph."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "roles" / "group_provisioning" / "templates" / "drift_report.md.j2"
ANSIBLE_PLAYBOOK = str(ROOT / ".venv" / "bin" / "ansible-playbook")

PLAY = """
- name: Render the drift report
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{{{ ansible_playbook_python }}}}"
  tasks:
    - name: Render
      ansible.builtin.template:
        src: {template}
        dest: {dest}
        mode: "0600"
"""

GID = "6f1c3a55-0d2b-4c8e-9a5e-2d7f1b9c0a11"
DN = "CN=Finance Team_2d7f1b9c0a11,OU=Groups,DC=corp,DC=example,DC=test"
OLD_DN = "CN=Finance_2d7f1b9c0a11,OU=Groups,DC=corp,DC=example,DC=test"
ADDED = "CN=Ann,OU=Staff,DC=corp,DC=example,DC=test"
REMOVED = "CN=Bob,OU=Staff,DC=corp,DC=example,DC=test"


def _result(group, check_mode=True):
    summary = {"created": 0, "updated": 1, "renamed": 1, "moved": 0, "deleted": 0, "unchanged": 0, "skipped": 0,
               "orphaned": 0, "errors": 0, "members_added": 1, "members_removed": 1, "unresolved_members": 0,
               "skipped_members": 0}
    domain = {"name": "corp", "host": "corp", "failed": False, "msg": None, "changed": True, "domain_controller": "dc1",
              "summary": summary, "groups": [group], "unchanged_groups": 0, "plan": [], "warnings": [],
              "ldap_operations": {}, "graph_requests": 1, "delta_state_path": "/var/lib/cloudsync/state/corp.delta.json",
              "entra": {"not_found": [], "ambiguous": [], "skipped": [], "groups_in_scope": 1}}
    return {"changed": True, "check_mode": check_mode, "has_drift": check_mode, "generated_at": "2026-01-01T00:00:00Z",
            "hosts": ["corp"], "entra": {"graph_requests": 1, "not_found": [], "ambiguous": [], "skipped": []},
            "totals": summary, "failed_domains": [], "domains": [domain]}


def _group(**kw):
    g = {"id": GID, "display_name": "Finance Team", "dn": DN, "previous_dn": OLD_DN, "action": "renamed",
         "members_added": [ADDED], "members_removed": [REMOVED], "unresolved_members": [], "skipped_members": []}
    g.update(kw)
    return g


def _render(tmp_path, result):
    dest = tmp_path / "report.md"
    (tmp_path / "play.yml").write_text(PLAY.format(template=json.dumps(str(TEMPLATE)), dest=json.dumps(str(dest))))
    evars = {"group_provisioning_result": result, "group_provisioning_report_max_members": 200}
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", "localhost,", "play.yml", "-e", json.dumps(evars)], capture_output=True,
                          text=True, env=env, cwd=str(tmp_path), timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return dest.read_text()


# The three shapes of the same change: displayName and description changed, the group renamed.
SHAPES = {
    # attribute names, with the values report.yml takes from the module's diff (before and after)
    "names_and_role_values": dict(
        changes=["cn", "description", "displayName", "member"],
        values={"dn": {"before": OLD_DN, "after": DN}, "description": {"before": "old text", "after": "new text"},
                "displayName": {"before": "Finance", "after": "Finance Team"}}),
    # the module's changes as a list of {attribute, before, after}
    "changes_list": dict(
        changes=[{"attribute": "cn", "before": OLD_DN, "after": DN},
                 {"attribute": "description", "before": "old text", "after": "new text"},
                 {"attribute": "displayName", "before": "Finance", "after": "Finance Team"},
                 {"attribute": "member", "before": None, "after": None}]),
    # the module's changes as a mapping attribute -> {before, after}
    "changes_mapping": dict(
        changes={"cn": {"before": OLD_DN, "after": DN}, "description": {"before": "old text", "after": "new text"},
                 "displayName": {"before": "Finance", "after": "Finance Team"}}),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_report_shows_old_and_new_values_and_members(tmp_path, shape):
    md = _render(tmp_path, _result(_group(**SHAPES[shape])))
    assert md.startswith("# Drift report")
    assert "Changed attributes (old -> new):" in md, md
    assert "    - description: `old text` -> `new text`" in md, md
    assert "    - displayName: `Finance` -> `Finance Team`" in md, md
    assert "    - cn: `%s` -> `%s`" % (OLD_DN, DN) in md, md
    assert "member:" not in md   # members are listed as adds and removes, not as an attribute
    assert "  - Members to add (1):\n    - `%s`" % ADDED in md, md
    assert "  - Members to remove (1):\n    - `%s`" % REMOVED in md, md
    assert "Graph requests: 1 (delta state `/var/lib/cloudsync/state/corp.delta.json`)" in md, md


def test_a_cleared_attribute_and_a_new_group(tmp_path):
    cleared = _group(action="updated", previous_dn=None, members_added=[], members_removed=[],
                     changes=["description"], values={"description": {"before": "old text", "after": None}})
    created = _group(id="00000000-0000-0000-0000-0000000000aa", action="created", previous_dn=None, members_removed=[],
                     changes=["description", "displayName"],
                     values={"description": {"before": None, "after": "brand new"}, "displayName": {"before": None, "after": "New"}})
    result = _result(cleared)
    result["domains"][0]["groups"].append(created)
    md = _render(tmp_path, result)
    assert "    - description: `old text` -> (none)" in md, md
    # a group to create lists its values, without an old one
    assert "  - Attributes:\n    - description: `brand new`\n    - displayName: `New`" in md, md


def test_real_run_wording(tmp_path):
    md = _render(tmp_path, _result(_group(**SHAPES["changes_list"]), check_mode=False))
    assert md.startswith("# Writeback report")
    assert "  - Members added (1):" in md and "  - Members removed (1):" in md
    assert "    - description: `old text` -> `new text`" in md


def test_sampled_member_lists_show_their_full_counts(tmp_path):
    """The module returns a sample of each member list with its count (member_details: sample):
    the report states the counts, not the sample's length."""
    group = _group(members_added=[ADDED], members_added_count=250, members_removed=[], members_removed_count=0,
                   skipped_members=[{"id": "c1", "display_name": "Cloud One", "reason": "cloud_only_user"}],
                   skipped_members_count=78, skipped_members_by_reason={"cloud_only_user": 70, "unsupported_type_device": 8})
    md = _render(tmp_path, _result(group))
    assert "Members to add (250)" in md
    assert "and 249 more" in md
    assert "Skipped members (78), by reason: cloud_only_user 70, unsupported_type_device 8" in md
