"""Every module documents where it runs (the ``platform`` attribute) and what to read next
(``seealso``), as Ansible's module format asks (issue 14.9)."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import ast
import os

import pytest
import yaml

MODULES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', '..', 'plugins', 'modules')

MODULES = ['ad_group_writeback', 'entra_group_info', 'cloudsync_permissions', 'prereq_facts']


@pytest.mark.parametrize('name', MODULES)
def test_every_module_documents_platform_and_seealso(name):
    # Read DOCUMENTATION from the source, as ansible-doc does: importing the module would go through
    # whatever collection finder an earlier test of the same process installed.
    with open(os.path.join(MODULES_DIR, name + '.py')) as handle:
        tree = ast.parse(handle.read())
    text = [node.value.value for node in tree.body if isinstance(node, ast.Assign)
            and any(getattr(t, 'id', None) == 'DOCUMENTATION' for t in node.targets)][0]
    doc = yaml.safe_load(text)
    platform = doc['attributes']['platform']
    assert platform['support'] == 'full' and platform['platforms'] == 'posix', platform
    seealso = doc['seealso']
    assert seealso, name
    for entry in seealso:
        assert entry.get('module', '').startswith('hybrid_identity.cloud_sync.') or entry.get('link', '').startswith(
            'https://learn.microsoft.com/'), entry
