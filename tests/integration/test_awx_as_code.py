# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""AWX as code (extensions/awx), checked without an AWX server (there is none here).

- configure_awx.yml passes `ansible-playbook --syntax-check` with awx.awx installed (extracted from
  PyPI's `ansible` bundle by tools/windows_collections.py, as tools/setup.sh does).
- Every awx.awx task's arguments, templated with the play's variables (and each loop item) as
  Ansible would, are validated against that module's own argument spec (captured from the module,
  with the controller connection options every awx.awx module adds) by ansible's
  ArgumentSpecValidator: an unknown option, a wrong type or a bad choice fails here, as it would in
  AWX. Workflow nodes are checked against the suboptions workflow_job_template documents.
- The custom credential type: each injected variable is one the collection's modules read
  (their env fallbacks), each input an injector uses is a field, and, rendered as AWX renders
  injectors (missing inputs as empty strings, file templates written to files), the environment
  alone lets ad_group_writeback (check mode) read the Graph emulator and the lab's corp forest,
  with a client secret and with a certificate.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import importlib
import json
import os
import pathlib
import subprocess
import sys
import uuid

import jinja2.meta
import jinja2.sandbox
import pytest
import yaml

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

ROOT = pathlib.Path(__file__).resolve().parents[2]
COLLECTIONS = ROOT / ".build" / "collections"
AWX_DIR = ROOT / "extensions" / "awx"
PLAYBOOK = AWX_DIR / "configure_awx.yml"
CREDENTIAL_TYPE = AWX_DIR / "credential_type.yml"
ANSIBLE_PLAYBOOK = str(ROOT / ".venv" / "bin" / "ansible-playbook")
AWX_MODULES = COLLECTIONS / "ansible_collections" / "awx" / "awx" / "plugins" / "modules"


@pytest.fixture(scope="module")
def awx_collection():
    subprocess.run([sys.executable, str(ROOT / "tools" / "windows_collections.py")], check=True, timeout=900)
    assert (AWX_MODULES / "job_template.py").is_file()


def _trust(value):
    from ansible.template import trust_as_template
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return dict((k, _trust(v)) for k, v in value.items())
    if isinstance(value, list):
        return [_trust(v) for v in value]
    return value


class _Captured(Exception):
    def __init__(self, argument_spec, kwargs):
        Exception.__init__(self, "captured")
        self.argument_spec = argument_spec
        self.kwargs = kwargs


def _module_spec(name):
    """(argument spec with the controller options, AnsibleModule keyword rules) of awx.awx.<name>."""
    mod = importlib.import_module("ansible_collections.awx.awx.plugins.modules." + name)
    from ansible_collections.awx.awx.plugins.module_utils.controller_api import ControllerModule

    class Capture(object):
        def __init__(self, argument_spec=None, **kwargs):
            raise _Captured(argument_spec, kwargs)

    original = mod.ControllerAPIModule
    mod.ControllerAPIModule = Capture
    try:
        mod.main()
    except _Captured as captured:
        spec = dict(ControllerModule.AUTH_ARGSPEC)
        spec.update(captured.argument_spec)
        return spec, captured.kwargs, mod
    finally:
        mod.ControllerAPIModule = original
    raise AssertionError("awx.awx.%s did not build its module" % name)


def _awx_tasks():
    """[(task name, module name, templated args)] of configure_awx.yml, loops expanded."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.plugins.loader import init_plugin_loader
    from ansible.template import Templar
    if not _awx_tasks.plugins_loaded:
        init_plugin_loader([str(COLLECTIONS)])
        _awx_tasks.plugins_loaded = True
    loader = DataLoader()
    loader.set_basedir(str(AWX_DIR))
    play = _trust(yaml.safe_load(PLAYBOOK.read_text()))[0]
    out = []
    for task in play["tasks"]:
        actions = [k for k in task if k.startswith("awx.awx.")]
        assert len(actions) == 1, task.get("name")
        variables = dict(play["vars"])
        variables.update(task.get("vars") or {})
        items = [None]
        if "loop" in task:
            items = Templar(loader=loader, variables=variables).template(task["loop"])
        for item in items:
            scope = dict(variables)
            if item is not None:
                scope["item"] = item
            args = Templar(loader=loader, variables=scope).template(task[actions[0]])
            out.append((task["name"], actions[0].split(".")[-1], args))
    return out


_awx_tasks.plugins_loaded = False


def test_syntax_check(awx_collection):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="false",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    proc = subprocess.run([ANSIBLE_PLAYBOOK, "--syntax-check", str(PLAYBOOK)], capture_output=True, text=True, env=env,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_awx_task_matches_its_module_argument_spec(awx_collection):
    tasks = _awx_tasks()
    modules = set(task[1] for task in tasks)
    # what the issue asks for, each created by the playbook
    assert {"execution_environment", "project", "inventory", "host", "group", "credential_type", "credential",
            "job_template", "workflow_job_template", "schedule", "notification_template"} <= modules
    for name, module, args in tasks:
        spec, kwargs, dummy = _module_spec(module)
        rules = dict((k, kwargs[k]) for k in ("mutually_exclusive", "required_together", "required_one_of", "required_if",
                                              "required_by") if kwargs.get(k))
        result = ArgumentSpecValidator(spec, **rules).validate(args)
        assert not result.error_messages, "%s (awx.awx.%s): %s" % (name, module, result.error_messages)


def test_bad_arguments_are_caught(awx_collection):
    """The check itself can fail: a misspelt option and a wrong type are reported."""
    spec, dummy, dummy2 = _module_spec("job_template")
    result = ArgumentSpecValidator(spec).validate({"name": "x", "job_slice_count": "many", "playbok": "a.yml"})
    text = " ".join(result.error_messages)
    assert "playbok" in text and "job_slice_count" in text, text


def _documented_node_options():
    dummy, dummy2, mod = _module_spec("workflow_job_template")
    doc = yaml.safe_load(mod.DOCUMENTATION)
    return set(doc["options"]["workflow_nodes"]["suboptions"])


def test_workflow_has_one_node_per_domain_with_its_credential(awx_collection):
    tasks = dict(((m, n), a) for n, m, a in _awx_tasks())
    play = yaml.safe_load(PLAYBOOK.read_text())[0]
    domains = [d["name"] for d in play["vars"]["cloudsync_awx_domains"]]
    wf = [a for (m, n), a in tasks.items() if m == "workflow_job_template"][0]
    nodes = wf["workflow_nodes"]
    assert [n["limit"] for n in nodes] == domains
    documented = _documented_node_options()
    writeback = [a for (m, n), a in tasks.items() if m == "job_template" and a["playbook"] == "playbooks/group_writeback.yml"][0]
    for node, domain in zip(nodes, domains):
        assert set(node) <= documented, set(node) - documented
        assert node["unified_job_template"]["name"] == writeback["name"]
        assert [c["name"] for c in node["related"]["credentials"]] == ["Cloud Sync / %s" % domain]
        # no node waits for another: every domain starts at once
        assert not node["related"].get("success_nodes")
    # nodes of one template run at once only if it allows concurrent jobs; runs of the workflow must not overlap
    assert writeback["allow_simultaneous"] is True and wf["allow_simultaneous"] is False
    assert writeback["ask_limit_on_launch"] and writeback["ask_credential_on_launch"]
    assert writeback["job_slice_count"] == len(domains)
    schedules = [a for (m, n), a in tasks.items() if m == "schedule"]
    assert any(s["unified_job_template"] == wf["name"] and "FREQ=MINUTELY;INTERVAL=20" in s["rrule"] for s in schedules)
    drift = [a for (m, n), a in tasks.items() if m == "job_template" and a["playbook"] == "playbooks/drift_report.yml"]
    grant = [a for (m, n), a in tasks.items() if m == "job_template" and a["playbook"] == "playbooks/grant_permissions.yml"]
    assert drift and grant
    for jt in [writeback] + drift + grant:
        assert jt["survey_enabled"] and jt["survey_spec"]["spec"], jt["name"]
        assert jt["notification_templates_error"]


# ------------------------------------------------------------------------------- credential type

def _credential_type():
    return yaml.safe_load(CREDENTIAL_TYPE.read_text())["credential_types"][0]


def _module_env_names():
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import argspec
    names = set()
    for spec in (argspec.AD_CONNECTION_ARGSPEC, argspec.GRAPH_AUTH_ARGSPEC):
        for option in spec.values():
            fallback = option.get("fallback")
            if fallback:
                names.update(fallback[1])
    return names


def test_credential_type_injects_only_what_the_modules_read():
    ctype = _credential_type()
    fields = dict((f["id"], f) for f in ctype["inputs"]["fields"])
    read = _module_env_names()
    injected = set(ctype["injectors"]["env"])
    assert injected <= read, injected - read
    assert {"AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH",
            "CLOUDSYNC_AD_USER", "CLOUDSYNC_AD_PASSWORD", "CLOUDSYNC_AD_CA_FILE"} <= injected
    env = jinja2.sandbox.ImmutableSandboxedEnvironment()
    used = set()
    for text in list(ctype["injectors"]["env"].values()) + list(ctype["injectors"]["file"].values()):
        used |= jinja2.meta.find_undeclared_variables(env.parse(text))
    assert used - {"tower"} <= set(fields), (used - {"tower"}) - set(fields)
    for fid in ctype["inputs"]["required"]:
        assert fid in fields
    for f in fields.values():
        if f.get("choices"):
            assert f.get("default") in f["choices"], f["id"]
    secrets = {f["id"] for f in fields.values() if f.get("secret")}
    assert {"client_secret", "client_certificate", "ad_password"} <= secrets


def _render_injectors(inputs, files_dir):
    """What AWX does when a job starts: every input absent is '', each file template is written to a
    file whose path is tower.filename.<name>, then the env values are rendered (sandboxed Jinja)."""
    ctype = _credential_type()
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined)
    namespace = dict((f["id"], inputs.get(f["id"], f.get("default", ""))) for f in ctype["inputs"]["fields"])
    filenames = {}
    for key, text in ctype["injectors"]["file"].items():
        name = key.split(".", 1)[1]
        path = files_dir / ("awx-" + name)
        path.write_text(env.from_string(text).render(**namespace))
        filenames[name] = str(path)
    namespace["tower"] = {"filename": filenames}
    return dict((k, env.from_string(v).render(**namespace)) for k, v in ctype["injectors"]["env"].items())


WRITEBACK_PLAY = """
- name: Use only what the credential injects
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  tasks:
    - name: Plan a writeback of every group into the sandbox OU
      hybrid_identity.cloud_sync.ad_group_writeback:
        all_groups: true
        target_ou: %(ou)s
        search_base: %(ou)s
      check_mode: true
      register: result
    - name: Keep it for the test
      ansible.builtin.copy:
        content: "{{ result | to_json }}"
        dest: result.json
        mode: "0600"
"""


@pytest.fixture(scope="module")
def sandbox_ou(lab, corp):
    from writeback_helpers import Directory
    d = Directory(corp)
    ou = d.make_ou("AwxCred-%s" % uuid.uuid4().hex[:8], parent=corp.base_dn)
    d.close()
    try:
        yield ou
    finally:
        d = Directory(corp)
        d.remove_tree(ou)
        d.close()


@pytest.mark.parametrize("auth", ["secret", "certificate"])
def test_injected_environment_alone_runs_a_writeback(graph_emulator, corp, sandbox_ou, tmp_path, auth):
    inputs = {"tenant_id": graph_emulator.tenant_id, "client_id": graph_emulator.client_id,
              "ad_user": corp.admin_upn, "ad_password": corp.admin_password, "ad_servers": corp.ip,
              "ad_ca": pathlib.Path(corp.ca_file).read_text(), "graph_ca": pathlib.Path(graph_emulator.ca_file).read_text()}
    if auth == "secret":
        inputs["client_secret"] = graph_emulator.client_secret
    else:
        inputs["client_certificate"] = (pathlib.Path(graph_emulator.client_cert_file).read_text()
                                        + pathlib.Path(graph_emulator.client_key_file).read_text())
    injected = _render_injectors(inputs, tmp_path)
    # empty inputs are injected as empty variables, as AWX does
    assert injected["AZURE_CLIENT_CERTIFICATE_PASSWORD"] == ""
    assert (injected["AZURE_CLIENT_SECRET"] == "") == (auth == "certificate")
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith(("AZURE_", "CLOUDSYNC_AD_", "CLOUDSYNC_GRAPH")))
    env.update(injected)
    # the emulator's endpoints (a real tenant needs neither)
    env.update({"AZURE_AUTHORITY_HOST": graph_emulator.authority_url, "CLOUDSYNC_GRAPH_ENDPOINT": graph_emulator.base_url,
                "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS), "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "false",
                "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false"})
    (tmp_path / "play.yml").write_text(WRITEBACK_PLAY % {"ou": json.dumps(sandbox_ou)})
    proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", "localhost,", "play.yml"], capture_output=True, text=True, env=env,
                          cwd=str(tmp_path), timeout=600, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["domain_controller"].startswith(corp.ip) or corp.ip in result["domain_controller"]
    assert result["graph_requests"] > 0
    assert result["summary"]["created"] > 0
