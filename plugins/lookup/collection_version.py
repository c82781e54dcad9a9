# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
name: collection_version
author:
  - hybrid_identity.cloud_sync contributors (@hybrid-identity)
version_added: 0.2.0
short_description: The version of each named collection the controller would load, or none
description:
  - For each collection name, returns the version of the installed collection that Ansible itself would load
    (from the configured collections paths, the playbook's adjacent C(collections) folder and Python's C(sys.path)),
    or C(None) when it is not installed.
  - The installed version is read from the collection's C(MANIFEST.json) (or C(galaxy.yml) for a collection
    used from a source checkout); a collection found without either returns C(*).
  - The C(cloudsync_agent) role uses it to fail before its first task when the Windows collections it needs are missing.
options:
  _terms:
    description: Collection names, C(namespace.name).
    type: list
    elements: str
    required: true
'''

EXAMPLES = r'''
- name: Fail early when ansible.windows is missing
  ansible.builtin.assert:
    that: lookup('hybrid_identity.cloud_sync.collection_version', 'ansible.windows') is not none
    fail_msg: "Install ansible.windows: ansible-galaxy collection install ansible.windows"
'''

RETURN = r'''
_raw:
  description: One entry per name, in order, the installed version (a string) or C(None).
  type: list
  elements: str
'''

import importlib
import json
import os
import re

from ansible.errors import AnsibleLookupError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.lookup import LookupBase

try:
    import yaml
except ImportError:  # pragma: no cover - ansible-core requires PyYAML
    yaml = None

NAME = re.compile(r'^[a-z0-9_]+\.[a-z0-9_]+$')


def version_in(paths):
    """The version recorded in the first collection root of ``paths`` that has MANIFEST.json or galaxy.yml."""
    for path in paths:
        manifest = os.path.join(path, 'MANIFEST.json')
        if os.path.isfile(manifest):
            with open(manifest, 'rb') as fh:
                return to_native(json.load(fh)['collection_info']['version'])
        galaxy = os.path.join(path, 'galaxy.yml')
        if os.path.isfile(galaxy) and yaml is not None:
            with open(galaxy, 'rb') as fh:
                data = yaml.safe_load(fh) or {}
            if data.get('version'):
                return to_native(data['version'])
    return '*'


def installed_version(name):
    """The version of collection ``name`` as the running controller resolves it, or None."""
    try:
        package = importlib.import_module('ansible_collections.%s' % name)
    except ImportError:
        return None
    return version_in(list(getattr(package, '__path__', None) or []))


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        result = []
        for term in terms:
            name = to_native(term).strip()
            if not NAME.match(name):
                raise AnsibleLookupError('%r is not a collection name (namespace.name)' % name)
            result.append(installed_version(name))
        return result
