"""Every module documents where it runs (the ``platform`` attribute) and what to read next
(``seealso``), as Ansible's module format asks (issue 14.9)."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import importlib

import pytest
import yaml

MODULES = ['ad_group_writeback', 'entra_group_info', 'cloudsync_permissions', 'prereq_facts']


@pytest.mark.parametrize('name', MODULES)
def test_every_module_documents_platform_and_seealso(name):
    module = importlib.import_module('ansible_collections.hybrid_identity.cloud_sync.plugins.modules.' + name)
    doc = yaml.safe_load(module.DOCUMENTATION)
    platform = doc['attributes']['platform']
    assert platform['support'] == 'full' and platform['platforms'] == 'posix', platform
    seealso = doc['seealso']
    assert seealso, name
    for entry in seealso:
        assert entry.get('module', '').startswith('hybrid_identity.cloud_sync.') or entry.get('link', '').startswith(
            'https://learn.microsoft.com/'), entry
