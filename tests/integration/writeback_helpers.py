"""Helpers shared by the writeback integration tests: Entra-shaped group/user dicts built from
the lab's seeded identities, a sandbox OU per test, and direct AD reads to check results
independently of the code under test (plain ldap3 through ADClient's search only)."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import subprocess
import uuid

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_client import ADClient, first, values
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_codecs import dn_key, escape_dn_value, guid_to_bytes
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.writeback import run_writeback

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def new_id():
    return str(uuid.uuid4())


def ad_params(forest, **overrides):
    params = dict(
        domain_controllers=[forest.ip], ad_tls_mode='ldaps', ad_allow_plaintext=False, ad_ca_file=forest.ca_file,
        ad_validate_certs=True, ad_auth='simple', ad_user=forest.admin_upn, ad_password=forest.admin_password,
        ad_port=None, global_catalog=None, ad_timeout=10, ad_page_size=1000,
    )
    params.update(overrides)
    return params


def writeback_params(forest, entra_groups, **overrides):
    params = ad_params(forest)
    params.update(
        groups=None, all_groups=False, group_filter=None, entra_groups=entra_groups, target_ou=None, ou_map=[],
        naming='cloud_sync', sam_account_name_template=None, membership='authoritative', member_match='auto',
        max_members=50000, prune=False, out_of_scope='keep', soa_move=False, prune_empty_scope=False, deletion_threshold=500,
        allow_admin_count=False, adopt_writeback_v2=False, adopt_rename=False, search_base=None, delta_state_path=None,
    )
    params.update(overrides)
    return params


def graph_args(emu):
    """Graph options for the HTTPS emulator ``emu`` (client secret, the lab CA as graph_ca_bundle)."""
    return dict(tenant_id=emu.tenant_id, client_id=emu.client_id, client_secret=emu.client_secret,
                client_certificate_path=None, client_certificate_password=None, auth_method='auto',
                managed_identity_client_id=None, cloud='public', authority_host=emu.authority_url,
                graph_endpoint=emu.base_url, graph_ca_bundle=emu.ca_file, graph_validate_certs=True, graph_timeout=30,
                graph_max_retries=5, graph_max_retry_wait=60, graph_parallelism=4)


def run(forest, entra_groups, check=False, diff=False, **overrides):
    return run_writeback(writeback_params(forest, entra_groups, **overrides), check_mode=check, diff_mode=diff)


def synced_users(builder, identities):
    """Entra users of the emulator's tenant ``builder`` synced from lab ``identities`` (identities.json
    entries): their objectGUID, objectSid, domain, DN and UPN; their ids."""
    return [builder.synced_user(i['sam_account_name'], object_guid=i['object_guid'], object_sid=i['object_sid'],
                                domain=i['domain'], dn=i['dn'], upn=i['user_principal_name']) for i in identities]


def add_consistency_guid_user(directory, dn, sam_prefix):
    """A user added at ``dn`` whose mS-DS-ConsistencyGuid is a new GUID, not its objectGUID (only a
    domain search by that attribute finds it); returns that GUID."""
    consistency = str(uuid.uuid4())
    directory.client.add(dn, {'objectClass': 'user', 'sAMAccountName': '%s-%s' % (sam_prefix, uuid.uuid4().hex[:10]),
                              'mS-DS-ConsistencyGuid': guid_to_bytes(consistency)})
    return consistency


def entra_user(identity, match='object_identifier', user_id=None):
    """An Entra user member synced from ``identity`` (a lab identities.json entry), carrying only
    the identifier named by ``match`` (or all of them with match='all')."""
    user = dict(id=user_id or new_id(), type='user', display_name=identity['sam_account_name'],
                user_principal_name=identity['user_principal_name'], on_premises_sync_enabled=True,
                on_premises_object_identifier=None, on_premises_security_identifier=None,
                on_premises_immutable_id=None, on_premises_domain_name=identity['domain'])
    if match in ('object_identifier', 'all'):
        user['on_premises_object_identifier'] = identity['object_guid']
    if match in ('sid', 'all'):
        user['on_premises_security_identifier'] = identity['object_sid']
    if match in ('immutable_id', 'all'):
        user['on_premises_immutable_id'] = identity['immutable_id']
    return user


def entra_group(name, members=(), group_id=None, description=None, **extra):
    group = dict(id=group_id or new_id(), display_name=name, description=description, security_enabled=True,
                 mail_enabled=False, group_types=[], on_premises_sync_enabled=None, members=list(members))
    group.update(extra)
    return group


def as_member(group):
    return dict(id=group['id'], type='group', display_name=group['display_name'])


class Directory(object):
    """Admin view of one lab forest, for setting up and checking the directory in tests."""

    def __init__(self, forest):
        self.forest = forest
        self.client = ADClient(ad_params(forest)).connect()

    def close(self):
        self.client.close()

    def make_ou(self, name, parent=None):
        dn = 'OU=%s,%s' % (escape_dn_value(name), parent or self.forest.groups_ou)
        self.client.add(dn, {'objectClass': 'organizationalUnit'})
        return dn

    def remove_tree(self, dn):
        if self.client.get(dn, ['distinguishedName']) is not None:
            self.client.delete(dn, tree=True)

    def by_anchor(self, group_id, base=None):
        flt = '(msDS-ExternalDirectoryObjectId=Group_%s)' % group_id
        return list(self.client.search(base or self.forest.base_dn, flt, ['*', 'objectGUID', 'objectSid']))

    def one(self, group_id, base=None):
        found = self.by_anchor(group_id, base)
        assert len(found) == 1, 'expected one AD group anchored to %s, found %d' % (group_id, len(found))
        return found[0]

    def get(self, dn, attrs=None):
        return self.client.get(dn, attrs or ['*', 'objectGUID', 'objectSid'])

    def member_keys(self, entry):
        return set(dn_key(dn) for dn in values(entry, 'member'))

    def add_group(self, dn, **attrs):
        attributes = {'objectClass': 'group'}
        attributes.update(attrs)
        self.client.add(dn, attributes)
        return dn

    def modify(self, dn, changes):
        self.client.modify(dn, changes)

    def children(self, dn):
        return [e['dn'] for e in self.client.search(dn, '(objectClass=group)', ['cn'], scope='onelevel')]


def identity_dn_keys(identities):
    return set(dn_key(i['dn']) for i in identities)


def run_playbook(playbook_text, tmp_path, extra_args=(), env=None):
    """Run a playbook with ansible-playbook (default callback); returns (rc, stdout+stderr, saved).

    ``saved`` is the JSON a play wrote to ``{results}`` (substituted into ``playbook_text``): plays
    register their task results and save them with a last ``ansible.builtin.copy`` task, because
    ansible-core no longer ships a JSON stdout callback.
    """
    results = tmp_path / 'results.json'
    path = tmp_path / 'play.yml'
    path.write_text(playbook_text.replace('{results}', str(results)))
    full_env = dict(os.environ)
    full_env.update({
        'ANSIBLE_HOST_KEY_CHECKING': 'false', 'ANSIBLE_RETRY_FILES_ENABLED': 'false',
        'ANSIBLE_LOCALHOST_WARNING': 'false', 'ANSIBLE_INVENTORY_UNPARSED_WARNING': 'false',
        'ANSIBLE_NOCOLOR': '1',
        # The modules run on the controller: use the interpreter that has their libraries.
        'ANSIBLE_PYTHON_INTERPRETER': os.path.join(ROOT, '.venv', 'bin', 'python'),
    })
    full_env.update(env or {})
    proc = subprocess.run([os.path.join(ROOT, '.venv', 'bin', 'ansible-playbook'), '-i', 'localhost,', '-c', 'local',
                           str(path)] + list(extra_args), capture_output=True, text=True, env=full_env, timeout=600, check=False)
    saved = json.loads(results.read_text()) if results.exists() else None
    return proc.returncode, proc.stdout + proc.stderr, saved


__all__ = ['first', 'values', 'dn_key']
