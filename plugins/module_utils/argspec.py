# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Argument specs shared by every module, and a small builder to combine them.

Every module that talks to AD copies ``AD_CONNECTION_ARGSPEC`` (documented by the
``hybrid_identity.cloud_sync.ad_connection`` doc fragment); every module that talks to Graph
copies ``GRAPH_AUTH_ARGSPEC`` (documented by ``hybrid_identity.cloud_sync.graph_auth``).
Options fall back to environment variables, so a playbook or an AWX credential can set them once.

Azure credentials also answer to the names of the Ansible ecosystem, so that an AWX "Microsoft Azure
Resource Manager" credential works unchanged: AWX injects ``AZURE_CLIENT_ID``, ``AZURE_TENANT``,
``AZURE_SECRET`` and ``AZURE_CLOUD_ENVIRONMENT`` (ansible/awx awx/main/models/credential/injectors.py,
``azure_rm``), the variables azure.azcollection reads for its options ``client_id``, ``tenant``,
``secret`` and ``cloud_environment`` (ansible-collections/azure plugins/module_utils/azure_rm_common.py,
``AZURE_CREDENTIAL_ENV_MAPPING``), which are aliases here. When both spellings of a variable are set,
azure-identity's (``AZURE_TENANT_ID``, ``AZURE_CLIENT_SECRET``) wins: ``env_fallback`` takes the first
one set, and an option given in the task wins over both.

Checks Ansible's argument spec cannot express run in ``ArgumentSpec.create_module`` (``value_checks``):
``dn_list_problem`` catches a DN given as a string to a list option, which Ansible splits at its
commas before the module sees it; ``entra_groups_problem`` names a malformed ``entra_groups`` item;
``pem_file_problem`` tells a CA file that is not PEM.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import copy
import os

from ansible.module_utils.basic import AnsibleModule, env_fallback

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_codecs import parse_dn


AD_CONNECTION_ARGSPEC = dict(
    domain_controllers=dict(
        type='list', elements='str', aliases=['domain_controller', 'server'],
        fallback=(env_fallback, ['CLOUDSYNC_AD_SERVERS']),
    ),
    ad_tls_mode=dict(
        type='str', default='ldaps', choices=['ldaps', 'starttls', 'none'],
        fallback=(env_fallback, ['CLOUDSYNC_AD_TLS_MODE']),
    ),
    ad_allow_plaintext=dict(type='bool', default=False),
    ad_ca_file=dict(type='path', fallback=(env_fallback, ['CLOUDSYNC_AD_CA_FILE'])),
    ad_validate_certs=dict(
        type='bool', default=True, fallback=(env_fallback, ['CLOUDSYNC_AD_VALIDATE_CERTS']),
    ),
    ad_auth=dict(
        type='str', default='simple', choices=['simple', 'ntlm', 'kerberos'],
        fallback=(env_fallback, ['CLOUDSYNC_AD_AUTH']),
    ),
    ad_user=dict(type='str', aliases=['bind_user'], fallback=(env_fallback, ['CLOUDSYNC_AD_USER'])),
    ad_password=dict(
        type='str', no_log=True, aliases=['bind_password'],
        fallback=(env_fallback, ['CLOUDSYNC_AD_PASSWORD']),
    ),
    ad_port=dict(type='int'),
    global_catalog=dict(type='str', fallback=(env_fallback, ['CLOUDSYNC_AD_GLOBAL_CATALOG'])),
    ad_timeout=dict(type='int', default=10),
    ad_page_size=dict(type='int', default=1000),
)

GRAPH_AUTH_ARGSPEC = dict(
    tenant_id=dict(type='str', aliases=['tenant'], fallback=(env_fallback, ['AZURE_TENANT_ID', 'AZURE_TENANT'])),
    client_id=dict(type='str', fallback=(env_fallback, ['AZURE_CLIENT_ID'])),
    client_secret=dict(type='str', no_log=True, aliases=['secret'],
                       fallback=(env_fallback, ['AZURE_CLIENT_SECRET', 'AZURE_SECRET'])),
    client_certificate_path=dict(type='path', fallback=(env_fallback, ['AZURE_CLIENT_CERTIFICATE_PATH'])),
    client_certificate_password=dict(
        type='str', no_log=True, fallback=(env_fallback, ['AZURE_CLIENT_CERTIFICATE_PASSWORD']),
    ),
    auth_method=dict(
        type='str', default='auto',
        choices=['auto', 'client_secret', 'certificate', 'managed_identity'],
    ),
    managed_identity_client_id=dict(type='str', fallback=(env_fallback, ['CLOUDSYNC_MANAGED_IDENTITY_CLIENT_ID'])),
    cloud=dict(
        type='str', default='public', aliases=['cloud_environment'],
        choices=['public', 'usgov', 'usgov_dod', 'china', 'AzureCloud', 'AzureUSGovernment', 'AzureChinaCloud'],
        fallback=(env_fallback, ['CLOUDSYNC_AZURE_CLOUD', 'AZURE_CLOUD_ENVIRONMENT']),
    ),
    authority_host=dict(type='str', fallback=(env_fallback, ['AZURE_AUTHORITY_HOST'])),
    graph_endpoint=dict(type='str', fallback=(env_fallback, ['CLOUDSYNC_GRAPH_ENDPOINT'])),
    graph_ca_bundle=dict(type='path', fallback=(env_fallback, ['CLOUDSYNC_GRAPH_CA_BUNDLE'])),
    graph_validate_certs=dict(type='bool', default=True),
    graph_timeout=dict(type='int', default=60),
    graph_max_retries=dict(type='int'),
    graph_retry_budget=dict(
        type='int', default=300, aliases=['graph_max_retry_wait'],
        fallback=(env_fallback, ['CLOUDSYNC_GRAPH_RETRY_BUDGET']),
    ),
    graph_parallelism=dict(type='int', default=4),
)


def _show(value, limit=120):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + '...'


def count_problem(low, high):
    """A value check (``with_value_checks``) for an int option that must be within ``low..high``."""
    def check(option, value):
        if value is not None and not low <= value <= high:
            return '%s must be from %d to %d, not %s' % (option, low, high, value)
        return None
    return check


def dn_list_problem(option, values):
    """Why the list option ``option`` holding DNs is wrong, or None.

    Ansible turns a string given to a list option into a list at every comma, so
    ``targets: "OU=Groups,DC=corp,DC=example"`` reaches the module as three "DNs". A DN of Active
    Directory ends with ``DC=`` components, so an item that is a single RDN other than ``DC=...``, two
    single-RDN items in a row, or an item that does not parse (a comma that was escaped) is a
    fragment: the message names the option and shows the list to write instead."""
    if values is None:
        return None
    items = list(values)
    parsed = []
    for item in items:
        try:
            parsed.append(parse_dn(item) if isinstance(item, str) else None)
        except ValueError:
            parsed.append(None)
    fragment = []
    for index, rdns in enumerate(parsed):
        single = rdns is not None and len(rdns) == 1
        if rdns is None or (single and rdns[0][0][0].lower() != 'dc'):
            fragment.append(index)
        elif single and index > 0 and parsed[index - 1] is not None and len(parsed[index - 1]) == 1:
            fragment.append(index)
    if not fragment:
        empty = [i for i, rdns in enumerate(parsed) if rdns == []]
        if empty:
            return '%s[%d] is empty: give distinguished names such as OU=Groups,DC=corp,DC=example,DC=com' % (option, empty[0])
        return None
    if len(items) > 1:
        joined = ','.join(str(item) for item in items)
        return ('%s looks like one distinguished name split at its commas (%s): Ansible splits a string given to a list '
                'option at every comma. Give a list instead, e.g. %s: [%s]'
                % (option, ', '.join(_show(item, 60) for item in items), option, _show(joined, 200)))
    return ('%s[0] %s is not a distinguished name of the directory: give the full DN, e.g. OU=Groups,DC=corp,DC=example,DC=com'
            % (option, _show(items[0])))


def entra_groups_problem(option, groups):
    """Why ``entra_groups`` is not a list of groups as ``entra_group_info`` returns them, or None:
    each a dict with a non-empty string ``id``, ``display_name`` text or null, ``group_types`` a
    list or null, ``members`` a list (or null) of dicts each with a string ``id`` and ``type``."""
    if groups is None:
        return None
    hint = 'give the groups entra_group_info returns (with members=direct)'
    for i, group in enumerate(groups):
        where = '%s[%d]' % (option, i)
        if not isinstance(group, dict):
            return '%s must be a group (a dict), not %s: %s' % (where, type(group).__name__, hint)
        gid = group.get('id')
        if not isinstance(gid, str) or not gid.strip():
            return '%s (display_name %s) has no id: %s' % (where, _show(group.get('display_name')), hint)
        where = '%s (id %s)' % (where, gid)
        if group.get('display_name') is not None and not isinstance(group['display_name'], str):
            return '%s display_name must be text, not %s' % (where, type(group['display_name']).__name__)
        if group.get('group_types') is not None and not isinstance(group['group_types'], list):
            return '%s group_types must be a list, not %s' % (where, type(group['group_types']).__name__)
        members = group.get('members')
        if members is None:
            continue
        if not isinstance(members, list):
            return '%s members must be a list of members, not %s: %s' % (where, type(members).__name__, hint)
        for j, member in enumerate(members):
            if not isinstance(member, dict) or not isinstance(member.get('id'), str) or not member.get('id'):
                return '%s members[%d] must be a member with an id and a type, not %s: %s' % (where, j, _show(member, 80), hint)
            if not isinstance(member.get('type'), str):
                return '%s members[%d] (id %s) has no type (user, group, device, ...): %s' % (where, j, member['id'], hint)
    return None


def pem_file_problem(path, allow_directory=False):
    """Why ``path`` cannot be read as a PEM file of CA certificates (None when it can). With
    ``allow_directory`` a directory passes (an OpenSSL CA directory, for requests)."""
    if allow_directory and os.path.isdir(path):
        return None
    try:
        with open(path, 'rb') as handle:
            data = handle.read(4 * 1024 * 1024)
    except (IOError, OSError) as exc:
        return 'cannot be read: %s' % (exc.strerror or exc)
    if b'-----BEGIN CERTIFICATE-----' in data or b'-----BEGIN TRUSTED CERTIFICATE-----' in data:
        return None
    if data[:1] == b'\x30':
        return ('is not PEM (it looks like a DER certificate): convert it with '
                '"openssl x509 -inform der -in FILE -out FILE.pem" and give the .pem file')
    if b'-----BEGIN' in data:
        return 'holds no certificate (-----BEGIN CERTIFICATE-----): give the PEM file of the CA certificates'
    return 'is not a PEM file of CA certificates (no -----BEGIN CERTIFICATE----- in it)'


class ArgumentSpec(object):
    """Builder for an ``AnsibleModule`` argument spec and its cross-option rules.

    ``ArgumentSpec(own_options).with_ad_connection().with_graph_auth().create_module()``
    """

    def __init__(self, argument_spec=None, mutually_exclusive=None, required_together=None,
                 required_one_of=None, required_if=None, required_by=None, value_checks=None):
        self.argument_spec = copy.deepcopy(argument_spec or {})
        # option -> check(option, value) returning a one-line problem or None (run by create_module)
        self.value_checks = dict(value_checks or {})
        self.mutually_exclusive = list(mutually_exclusive or [])
        self.required_together = list(required_together or [])
        self.required_one_of = list(required_one_of or [])
        self.required_if = list(required_if or [])
        self.required_by = dict(required_by or {})

    def update(self, argument_spec=None, mutually_exclusive=None, required_together=None,
               required_one_of=None, required_if=None, required_by=None):
        for name, spec in (argument_spec or {}).items():
            if name in self.argument_spec:
                raise ValueError('option %s is defined twice' % name)
            self.argument_spec[name] = copy.deepcopy(spec)
        self.mutually_exclusive.extend(mutually_exclusive or [])
        self.required_together.extend(required_together or [])
        self.required_one_of.extend(required_one_of or [])
        self.required_if.extend(required_if or [])
        self.required_by.update(required_by or {})
        return self

    def with_value_checks(self, **checks):
        """``option=check``: ``check(option, value)`` returns a one-line problem or None; create_module
        fails with the first problem (e.g. ``with_value_checks(targets=dn_list_problem)``)."""
        self.value_checks.update(checks)
        return self

    def with_ad_connection(self):
        return self.update(
            argument_spec=AD_CONNECTION_ARGSPEC,
            required_together=[['ad_user', 'ad_password']],
        )

    def with_graph_auth(self):
        return self.update(
            argument_spec=GRAPH_AUTH_ARGSPEC,
            # No mutual exclusion of client_secret and client_certificate_path: both may come from
            # the environment (an AWX credential), and auth_method=auto documents the choice
            # (the certificate wins).
            required_if=[
                ['auth_method', 'client_secret', ['tenant_id', 'client_id', 'client_secret']],
                ['auth_method', 'certificate', ['tenant_id', 'client_id', 'client_certificate_path']],
            ],
        )

    def create_module(self, supports_check_mode=True):
        rules = dict(
            mutually_exclusive=self.mutually_exclusive,
            required_together=self.required_together,
            required_one_of=self.required_one_of,
            required_if=self.required_if,
            required_by=self.required_by,
        )
        # Only the rules that exist: sanity's validate-modules checks each one's type.
        module = AnsibleModule(
            argument_spec=self.argument_spec,
            supports_check_mode=supports_check_mode,
            **dict((name, rule) for name, rule in rules.items() if rule)
        )
        problem = self.check_values(module.params)
        if problem:
            module.fail_json(msg=problem)
        return module

    def check_values(self, params):
        """The first problem ``value_checks`` find in ``params`` (one line naming the option), or None."""
        for option in sorted(self.value_checks):
            if params.get(option) is not None:
                problem = self.value_checks[option](option, params[option])
                if problem:
                    return problem
        return None
