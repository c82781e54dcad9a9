"""The collection as users get it: `ansible-galaxy collection build` makes an artifact that
installs, whose modules ansible-doc lists and documents, without lab state or caches inside."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import subprocess
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, '.venv', 'bin')
MODULES = ('entra_group_info', 'ad_group_writeback', 'cloudsync_permissions', 'prereq_facts')


def _run(args, **kw):
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False, **kw)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_build_install_and_document(tmp_path):
    _run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'build', ROOT, '--output-path', str(tmp_path)])
    artifact = tmp_path / 'hybrid_identity-cloud_sync-0.1.0.tar.gz'
    assert artifact.exists()
    with tarfile.open(str(artifact)) as tar:
        names = tar.getnames()
    for module in MODULES:
        assert 'plugins/modules/%s.py' % module in names
    assert not [n for n in names if n.startswith(('.lab', '.venv', '.build', 'tests/output', 'benchmarks/results')) or '__pycache__' in n]

    target = tmp_path / 'collections'
    # Only the fresh install may be visible: the test harness maps the checkout itself as a collection.
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(target))
    # --no-deps: the Windows collections the agent role declares come from Galaxy, which this
    # machine cannot reach (tools/windows_collections.py provides them for lint and tests).
    _run([os.path.join(BIN, 'ansible-galaxy'), 'collection', 'install', '--force', '--no-deps', str(artifact), '-p', str(target)],
         env=env)
    assert (target / 'ansible_collections' / 'hybrid_identity' / 'cloud_sync' / 'MANIFEST.json').exists()
    listing = _run([os.path.join(BIN, 'ansible-doc'), '-t', 'module', '-l', 'hybrid_identity.cloud_sync'], env=env)
    for module in MODULES:
        assert 'hybrid_identity.cloud_sync.%s' % module in listing
    doc = _run([os.path.join(BIN, 'ansible-doc'), 'hybrid_identity.cloud_sync.ad_group_writeback'], env=env)
    assert 'deletion_threshold' in doc and 'domain_controllers' in doc and 'tenant_id' in doc
