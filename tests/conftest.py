"""Test-wide set-up: make the collection importable under its Galaxy name.

The repository is mapped (by a symlink under .build/, which git ignores) into an
``ansible_collections/hybrid_identity/cloud_sync`` tree, so tests import
``ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils...`` exactly as Ansible
does, and ``ansible-playbook`` run by integration tests finds the collection through
ANSIBLE_COLLECTIONS_PATH. ``tests/`` itself is put on sys.path so fixtures can import the lab
(``lab``) and the Graph emulator (``emulator``), and ``tests/integration`` so integration tests
share helpers (``writeback_helpers``); pytest.ini selects importlib mode, in which test files
are not put on sys.path.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
COLLECTIONS_ROOT = ROOT / ".build" / "collections"
_LINK = COLLECTIONS_ROOT / "ansible_collections" / "hybrid_identity" / "cloud_sync"

if not _LINK.exists():
    _LINK.parent.mkdir(parents=True, exist_ok=True)
    try:
        _LINK.symlink_to(ROOT, target_is_directory=True)
    except FileExistsError:
        pass

for _p in (str(COLLECTIONS_ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "integration")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

os.environ.setdefault("ANSIBLE_COLLECTIONS_PATH", str(COLLECTIONS_ROOT))

# Fixture plug-ins: the AD lab, the Graph emulator and the WinRM endpoint.
pytest_plugins = ["lab.fixtures", "emulator.fixtures", "winrm_endpoint.fixtures"]
