# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection as users get it: `ansible-galaxy collection build` makes an artifact that holds
what users need and none of the project's own machinery (lab, emulator, benchmarks, dotfiles),
installs OFFLINE with its dependencies resolved (no --no-deps: no Galaxy here), and whose
INSTALLED copy runs: entra_group_info against the HTTPS Graph emulator, ad_group_writeback in
check mode against the lab, ansible-doc, and the Windows agent role's early refusal when the
optional Windows collections are missing.

Every ansible command here sees only the clean install path (ANSIBLE_COLLECTIONS_PATH), never the
checkout's .build/collections link nor the Windows collections tools/setup.sh puts there.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import re
import subprocess
import tarfile
import uuid

import pytest
import yaml

from writeback_helpers import Directory, entra_group, entra_user

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, '.venv', 'bin')
MODULES = ('entra_group_info', 'ad_group_writeback', 'cloudsync_permissions', 'prereq_facts')
WINDOWS_COLLECTIONS = ('ansible.windows', 'community.windows', 'microsoft.ad')

# What users must not get (project machinery), matched as path prefixes in the tarball.
MUST_NOT_SHIP = ('benchmarks', 'tests/lab', 'tests/emulator', 'tests/winrm_endpoint', 'tests/output', 'tests/integration',
                 '.build', '.lab', '.venv', '.cache', '.ci', '.ansible-lint', '.yamllint', '.gitignore', '.hypothesis',
                 '.pytest_cache', 'tools')
# What they must get.
MUST_SHIP = ('README.md', 'COPYING', 'CHANGELOG.rst', 'MANIFEST.json', 'FILES.json', 'meta/runtime.yml',
             'meta/execution-environment.yml', 'requirements.txt', 'bindep.txt', 'changelogs/changelog.yaml',
             'roles/cloudsync_agent/requirements.yml', 'roles/cloudsync_agent/README.md',
             'roles/group_provisioning/tasks/main.yml', 'roles/cloudsync_permissions/tasks/main.yml',
             'playbooks/group_writeback.yml', 'plugins/module_utils/writeback.py', 'plugins/doc_fragments/ad_connection.py')


def _galaxy():
    with open(os.path.join(ROOT, 'galaxy.yml')) as fh:
        return yaml.safe_load(fh)


def _env(collections_path, **extra):
    env = dict(os.environ)
    for name in ('ANSIBLE_COLLECTIONS_PATHS', 'ANSIBLE_CONFIG', 'REQUESTS_CA_BUNDLE'):
        env.pop(name, None)
    env.update({'ANSIBLE_COLLECTIONS_PATH': str(collections_path), 'ANSIBLE_NOCOLOR': '1',
                'ANSIBLE_LOCALHOST_WARNING': 'false', 'ANSIBLE_INVENTORY_UNPARSED_WARNING': 'false',
                'ANSIBLE_RETRY_FILES_ENABLED': 'false',
                # The modules run on the controller: the interpreter that has their libraries.
                'ANSIBLE_PYTHON_INTERPRETER': os.path.join(BIN, 'python')})
    env.update(extra)
    return env


def _run(args, **kw):
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600, check=False, **kw)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope='module')
def artifact(tmp_path_factory):
    out = tmp_path_factory.mktemp('build')
    rc, log = _run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'build', ROOT, '--output-path', str(out)])
    assert rc == 0, log
    path = out / ('hybrid_identity-cloud_sync-%s.tar.gz' % _galaxy()['version'])
    assert path.exists(), log
    return path


@pytest.fixture(scope='module')
def installed(artifact, tmp_path_factory):
    """The tarball installed offline into a path that holds nothing else; returns that path."""
    target = tmp_path_factory.mktemp('installed')
    # No --no-deps: the install must resolve the collection's dependencies without Galaxy.
    rc, log = _run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'install', '--offline', str(artifact), '-p', str(target)],
                   env=_env(target), cwd=str(target))
    assert rc == 0, log
    return target


def _names(artifact):
    with tarfile.open(str(artifact)) as tar:
        return tar.getnames()


def test_tarball_holds_what_users_need_and_no_project_machinery(artifact):
    names = _names(artifact)
    shipped_wrongly = sorted(n for n in names for p in MUST_NOT_SHIP if n == p or n.startswith(p + '/'))
    assert not shipped_wrongly, shipped_wrongly
    assert not [n for n in names if '__pycache__' in n or n.endswith(('.pyc', '.tar.gz'))]
    assert not [n for n in names if os.path.basename(n).startswith('.')], 'dotfiles in the tarball'
    missing = [n for n in MUST_SHIP if n not in names]
    assert not missing, missing
    for module in MODULES:
        assert 'plugins/modules/%s.py' % module in names


def test_manifest_declares_no_hard_dependencies_and_the_licence(artifact):
    with tarfile.open(str(artifact)) as tar:
        manifest = json.load(tar.extractfile('MANIFEST.json'))
        copying = tar.extractfile('COPYING').read().decode()
    info = manifest['collection_info']
    # The Windows collections only the agent role uses are optional (roles/cloudsync_agent/requirements.yml).
    assert info['dependencies'] == {}, info['dependencies']
    assert info['license'] == ['GPL-3.0-or-later'] and not info['license_file']
    assert 'GNU GENERAL PUBLIC LICENSE' in copying and 'Version 3, 29 June 2007' in copying


def test_installs_offline_with_dependencies_resolved(installed):
    base = installed / 'ansible_collections'
    assert (base / 'hybrid_identity' / 'cloud_sync' / 'MANIFEST.json').exists()
    # Nothing else came with it (the Windows collections are not pulled in).
    assert sorted(p.name for p in base.iterdir()) == ['hybrid_identity']


def test_installed_copy_is_the_one_ansible_documents(installed):
    env = _env(installed)
    rc, listing = _run([os.path.join(BIN, 'ansible-doc'), '-t', 'module', '-l', 'hybrid_identity.cloud_sync'], env=env)
    assert rc == 0, listing
    for module in MODULES:
        assert 'hybrid_identity.cloud_sync.%s' % module in listing
    rc, out = _run([os.path.join(BIN, 'ansible-doc'), '--json', 'hybrid_identity.cloud_sync.ad_group_writeback'], env=env)
    assert rc == 0, out
    doc = json.loads(out)['hybrid_identity.cloud_sync.ad_group_writeback']['doc']
    assert doc['filename'].startswith(str(installed) + os.sep), doc['filename']
    assert {'deletion_threshold', 'domain_controllers', 'tenant_id'} <= set(doc['options'])


def _play(tmp_path, installed, text, args=()):
    results = tmp_path / 'results.json'
    (tmp_path / 'play.yml').write_text(text.replace('{results}', str(results)))
    rc, out = _run([os.path.join(BIN, 'ansible-playbook'), '-i', 'localhost,', '-c', 'local', 'play.yml'] + list(args),
                   env=_env(installed), cwd=str(tmp_path))
    return rc, out, (json.loads(results.read_text()) if results.exists() else None)


READ_PLAY = """
- name: Read Entra groups with the installed collection
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Read
      hybrid_identity.cloud_sync.entra_group_info:
        tenant_id: {tenant}
        client_id: {client}
        client_secret: {secret}
        authority_host: {authority}
        graph_endpoint: {endpoint}
        graph_ca_bundle: {ca}
        groups: [Finance Team]
        members: direct
      register: r
    - name: Save
      ansible.builtin.copy:
        content: "{{{{ r | to_json }}}}"
        dest: "{{results}}"
        mode: "0600"
"""


def test_installed_entra_group_info_reads_the_https_emulator(installed, graph_emulator, tmp_path):
    emu = graph_emulator
    play = READ_PLAY.format(tenant=emu.tenant_id, client=emu.client_id, secret=emu.client_secret, authority=emu.authority_url,
                            endpoint=emu.base_url, ca=emu.ca_file)
    rc, out, r = _play(tmp_path, installed, play)
    assert rc == 0, out[-3000:]
    assert [g['display_name'] for g in r['groups']] == ['Finance Team']
    assert len(r['groups'][0]['members']) == 10


WRITEBACK_PLAY = """
- name: Drift report with the installed collection
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Check mode
      hybrid_identity.cloud_sync.ad_group_writeback:
        domain_controllers: ["{ip}"]
        ad_ca_file: "{ca}"
        ad_user: "{user}"
        ad_password: "{password}"
        entra_groups: {groups}
        target_ou: "{ou}"
        search_base: "{ou}"
      check_mode: true
      register: r
    - name: Save
      ansible.builtin.copy:
        content: "{{{{ r | to_json }}}}"
        dest: "{{results}}"
        mode: "0600"
      check_mode: false
"""


def test_installed_ad_group_writeback_plans_in_check_mode_against_the_lab(installed, corp, tmp_path):
    directory = Directory(corp)
    ou = directory.make_ou('t-installed-%s' % uuid.uuid4().hex[:8])
    try:
        group = entra_group('Installed Copy Group', [entra_user(corp.identities[30])])
        play = WRITEBACK_PLAY.format(ip=corp.ip, ca=corp.ca_file, user=corp.admin_upn, password=corp.admin_password,
                                     groups=json.dumps([group]), ou=ou)
        rc, out, r = _play(tmp_path, installed, play)
        assert rc == 0, out[-3000:]
        assert r['changed'] is True and [step['op'] for step in r['plan']] == ['create']
        assert directory.children(ou) == [], 'check mode wrote to AD'
    finally:
        directory.remove_tree(ou)
        directory.close()


AGENT_PLAY = """
- name: The agent role without the Windows collections
  hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: hybrid_identity.cloud_sync.cloudsync_agent
"""


def test_agent_role_without_windows_collections_fails_early_naming_them(installed, tmp_path):
    rc, out, results = _play(tmp_path, installed, AGENT_PLAY)
    assert rc != 0 and results is None, out
    assert "couldn't resolve module/action" not in out, out[-3000:]
    for name in WINDOWS_COLLECTIONS:
        assert name in out, out[-3000:]
    assert 'roles/cloudsync_agent/requirements.yml' in out, out[-3000:]


def test_agent_role_requirements_file_names_the_windows_collections():
    with open(os.path.join(ROOT, 'roles', 'cloudsync_agent', 'requirements.yml')) as fh:
        listed = {c['name']: c['version'] for c in yaml.safe_load(fh)['collections']}
    assert listed == {'ansible.windows': '>=2.3.0', 'community.windows': '>=2.0.0', 'microsoft.ad': '>=1.7.0'}
    assert not _galaxy().get('dependencies')


def test_agent_role_names_a_windows_collection_older_than_it_needs(installed, tmp_path):
    old = tmp_path / 'old'
    for name, version in (('ansible.windows', '2.2.0'), ('community.windows', '2.0.0'), ('microsoft.ad', '1.7.0')):
        namespace, collection = name.split('.')
        root = old / 'ansible_collections' / namespace / collection
        (root / 'plugins' / 'modules').mkdir(parents=True)
        (root / 'MANIFEST.json').write_text(json.dumps({'collection_info': {'namespace': namespace, 'name': collection,
                                                                            'version': version}}))
    (tmp_path / 'play.yml').write_text(AGENT_PLAY)
    rc, out = _run([os.path.join(BIN, 'ansible-playbook'), '-i', 'localhost,', 'play.yml'],
                   env=_env('%s:%s' % (installed, old)), cwd=str(tmp_path))
    assert rc != 0, out
    assert 'Missing: ansible.windows >= 2.3.0 (found 2.2.0).' in out, out[-3000:]


def _readme_first_playbook():
    with open(os.path.join(ROOT, 'README.md')) as fh:
        text = fh.read()
    section = text[text.index('## First steps'):]
    start = section.index('```yaml\n') + len('```yaml\n')
    return section[start:section.index('```', start)]


def test_readme_first_playbook_runs_from_the_installed_copy(installed, graph_emulator, corp, tmp_path):
    """The README's first steps, as a user who installed the tarball runs them: its playbook
    unchanged, the connection from the environment variables the README names (plus the
    emulator's and the lab's endpoints and CAs), in check mode."""
    emu = graph_emulator
    directory = Directory(corp)
    ou = directory.make_ou('t-readme-%s' % uuid.uuid4().hex[:8])
    try:
        (tmp_path / 'drift.yml').write_text(_readme_first_playbook())
        env = _env(installed, AZURE_TENANT_ID=emu.tenant_id, AZURE_CLIENT_ID=emu.client_id, AZURE_CLIENT_SECRET=emu.client_secret,
                   AZURE_AUTHORITY_HOST=emu.authority_url, CLOUDSYNC_GRAPH_ENDPOINT=emu.base_url,
                   CLOUDSYNC_GRAPH_CA_BUNDLE=emu.ca_file, CLOUDSYNC_AD_SERVERS=corp.ip, CLOUDSYNC_AD_USER=corp.admin_upn,
                   CLOUDSYNC_AD_PASSWORD=corp.admin_password, CLOUDSYNC_AD_CA_FILE=corp.ca_file)
        rc, out = _run([os.path.join(BIN, 'ansible-playbook'), '-i', 'localhost,', 'drift.yml', '--check',
                        '-e', 'cloudsync_target_ou=%s' % ou], env=env, cwd=str(tmp_path))
        assert rc == 0, out[-3000:]
        created = re.search(r'"created": (\d+)', out)
        assert created and int(created.group(1)) > 0 and 'changed=1' in out, out[-3000:]
        assert directory.children(ou) == [], 'check mode wrote to AD'
    finally:
        directory.remove_tree(ou)
        directory.close()


def test_changelog_has_a_release_and_the_version_is_the_next_one():
    with open(os.path.join(ROOT, 'changelogs', 'changelog.yaml')) as fh:
        releases = yaml.safe_load(fh)['releases']
    assert '0.1.0' in releases and releases['0.1.0']['modules']
    with open(os.path.join(ROOT, 'CHANGELOG.rst')) as fh:
        assert 'v0.1.0' in fh.read()
    version = tuple(int(p) for p in _galaxy()['version'].split('.'))
    assert all(version > tuple(int(p) for p in released.split('.')) for released in releases), 'galaxy.yml version already released'
