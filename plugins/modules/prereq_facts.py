#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: prereq_facts
short_description: Check the prerequisites of Entra Cloud Sync group provisioning to Active Directory
version_added: 0.1.0
description:
  - Reads Active Directory, the Entra tenant (Microsoft Graph) and the provisioning agent host (WinRM) and turns what it
    finds into named checks, each passed, failed or not checked, plus one C(ready) verdict.
  - Each part runs only when its options are given; AD when O(domain_controllers) is set, Entra when O(tenant_id) is set,
    the agent host when O(agent_host) is set. The checks of a part that does not run are reported as not checked, so
    C(ready) is true only when every part ran and every required check passed. A part that is not examined is never
    counted as passed.
  - "AD checks: the schema defines C(msDS-ExternalDirectoryObjectId) (what Windows Server 2016 schema brings; the hard
    requirement), the schema C(objectVersion) (87 = 2016, 88 = 2019/2022; a lower value with the attribute present passes,
    as Samba AD reports 69), domain and forest functional levels of 2016 or later (a recommendation: Microsoft's
    prerequisites ask for the 2016 schema, not a functional level, so a lower level is reported but does not block
    C(ready)), the universal group scope (C(ntMixedDomain=0)), TCP 389 and 3268 reachable on the domain controllers (probed
    from the host running the module), the O(target_ous) exist, and the account that writes exists and effectively holds the
    rights of M(hybrid_identity.cloud_sync.cloudsync_permissions) C(UserGroupCreateDelete) on the target OUs (or the
    domain root): granted to it or to one of its groups (C(tokenGroups)) or to a well-known group of every token, on the OU
    or inherited, and not denied."
  - "The account that writes is the agent's (O(agent_account), or C(provAgentgMSA$) when O(agent_host) is given) or, in the
    agentless setup (neither option given), the account this module binds as: then nothing about an agent is required,
    and the rights are read as that account from the targets' DACLs (a target whose DACL it cannot read is one where it
    lacks Read permissions, which C(UserGroupCreateDelete) grants)."
  - "Entra checks: the tenant is a regular one (C(tenantType=AAD), not B2C or CIAM), an enabled service plan C(AAD_PREMIUM)
    (Entra ID P1, also in P2), the app holds the Graph application permissions the writeback needs (read from the C(roles)
    claim of its own access token: C(GroupMember.Read.All) or higher to read groups and members, C(User.Read.All) or higher
    to read the members' on-premises identifiers), sampled synced users carry C(onPremisesObjectIdentifier), and which
    groups would be skipped and why."
  - "No directory role is asked of the app. Hybrid Identity Administrator is the role of the person who configures Cloud
    Sync: C(entra_admin_role) is informational, checks the person named by O(admin_principal) when given, and never makes
    the environment not ready."
  - The access token's payload is decoded without checking its signature, to read the app's own claims; the token was just
    issued to the module over TLS and nothing is authorised on the strength of what it says.
  - "Agent checks (PowerShell over WinRM; only reads): the file version of C(AADConnectProvisioningAgent.exe) is at least
    O(min_agent_version), the C(AADConnectProvisioningAgent) service (Microsoft Entra Provisioning Agent) is running, its
    registry key exists, and Connect Sync (C(miiserver.exe)), where installed on that host, is at least
    O(min_connect_sync_version)."
author:
  - hybrid_identity.cloud_sync maintainers (@hybrid-identity)
extends_documentation_fragment:
  - hybrid_identity.cloud_sync.ad_connection
  - hybrid_identity.cloud_sync.graph_auth
attributes:
  check_mode:
    support: full
    description: The module only reads; check mode returns the same facts.
  diff_mode:
    support: none
    description: Nothing is changed, so there is no diff.
  platform:
    support: full
    platforms: posix
    description:
      - Runs on the controller or any host with the Python libraries; talks LDAP to the domain controllers, HTTPS to Graph and
        WinRM to the agent host. Nothing is installed on the domain controllers or the agent host.
requirements:
  - ldap3 >= 2.9.1 (for the AD part)
  - gssapi (only for O(ad_auth=kerberos))
  - pyspnego (only for O(ad_auth=ntlm))
  - msal >= 1.28.0 and requests (for the Entra part)
  - pywinrm >= 0.4.3 (for the agent part; requests-ntlm for NTLM, requests-credssp for CredSSP, pykerberos for Kerberos)
notes:
  - O(domain_controllers) is optional here (unlike the other modules); without it the AD part is not checked.
  - The TCP probes of ports 389 and 3268 run from the host that runs the module, which may see the network differently from the
    provisioning agent host.
  - Connect Sync is looked for on the agent host only; where users are synced by Connect Sync on another server, the check says
    so and that server must run 2.2.8.0 or later.
seealso:
  - module: hybrid_identity.cloud_sync.cloudsync_permissions
    description: Grants the AD permissions these checks look for.
  - module: hybrid_identity.cloud_sync.ad_group_writeback
  - name: Prerequisites for Microsoft Entra Cloud Sync
    description: The requirements these checks follow (agent version, schema, accounts).
    link: https://learn.microsoft.com/entra/identity/hybrid/cloud-sync/how-to-prerequisites
options:
  target_ous:
    description:
      - Distinguished names of the containers written-back groups go to. Each must exist, and the account that writes (see
        O(agent_account)) must hold the C(UserGroupCreateDelete) rights there (granted on the OU or inherited from the domain root).
      - Without it the permissions are checked on the domain root and the OU check is not checked.
    type: list
    elements: str
  agent_account:
    description:
      - The provisioning agent's account, as a C(sAMAccountName), UPN, distinguished name or SID.
      - A name that is not found is also looked up with a trailing C($) (group managed service accounts).
      - Defaults to C(provAgentgMSA$) when O(agent_host) is given. When neither is given (agentless use, where
        M(hybrid_identity.cloud_sync.ad_group_writeback) writes as the account it binds as), the account this module binds as
        is checked instead.
    type: str
  admin_principal:
    description:
      - User principal name or object id of the person who configures group provisioning. When given, the informational check
        C(entra_admin_role) reads whether that person holds Hybrid Identity Administrator or Global Administrator (needs
        C(RoleManagement.Read.Directory) or C(Directory.Read.All)).
      - Without it that check is reported as informational and not checked; it never affects RV(ansible_facts.cloudsync_prereqs.ready).
    type: str
  groups:
    description:
      - Entra group object ids or display names that are meant to be provisioned; each must exist and be eligible.
      - Without it, the first page (up to 999) of the tenant's security groups is examined and the check fails only when none of
        them is eligible.
    type: list
    elements: str
  synced_user_sample:
    description:
      - How many users (one Graph page, on the beta endpoint where C(onPremisesObjectIdentifier) exists) are read to find synced
        users and check their C(onPremisesObjectIdentifier).
    type: int
    default: 100
  max_members:
    description:
      - Groups with more direct members are reported as skipped (each child group counts as one).
    type: int
    default: 50000
  agent_host:
    description:
      - Host name or IP address of the provisioning agent server, reached with WinRM. Without it the agent part is not checked.
    type: str
  winrm_user:
    description:
      - Account for WinRM, e.g. C(CORP\\admin) or C(admin@corp.example.com). Not needed with O(winrm_transport=kerberos) and a ticket cache.
      - Falls back to E(CLOUDSYNC_WINRM_USER).
    type: str
  winrm_password:
    description:
      - Password of O(winrm_user).
      - Falls back to E(CLOUDSYNC_WINRM_PASSWORD).
    type: str
  winrm_transport:
    description:
      - WinRM authentication. V(basic) is refused over plain HTTP.
    type: str
    default: ntlm
    choices: [ntlm, kerberos, basic, credssp]
  winrm_port:
    description:
      - WinRM port. Defaults to 5986 with O(winrm_scheme=https) and 5985 with O(winrm_scheme=http).
    type: int
  winrm_scheme:
    description:
      - WinRM over HTTPS (V(https), port 5986) or HTTP (V(http), port 5985, messages encrypted by NTLM, Kerberos or CredSSP).
    type: str
    default: https
    choices: [https, http]
  winrm_ca_file:
    description:
      - PEM file of the certificate authorities that issued the agent host's WinRM certificate. Without it the default trust store is used.
    type: path
  winrm_validate_certs:
    description:
      - Validate the agent host's WinRM certificate (chain and host name).
    type: bool
    default: true
  min_agent_version:
    description:
      - Lowest acceptable provisioning agent version, compared numerically part by part.
      - 1.1.1370.0 is the first with group provisioning to AD; later Microsoft documentation asks for 1.1.3730.0.
    type: str
    default: 1.1.1370.0
  min_connect_sync_version:
    description:
      - Lowest acceptable Connect Sync version where Connect Sync is installed (2.2.8.0 is the first that writes C(onPremisesObjectIdentifier)).
    type: str
    default: 2.2.8.0
'''

EXAMPLES = r'''
- name: Check every prerequisite before provisioning groups to AD
  hybrid_identity.cloud_sync.prereq_facts:
    domain_controllers: [dc1.corp.example.com]
    ad_user: svc-cloudsync@corp.example.com
    ad_password: "{{ vault_ad_password }}"
    target_ous: ["OU=Cloud Groups,DC=corp,DC=example,DC=com"]
    tenant_id: "{{ tenant_id }}"
    client_id: "{{ client_id }}"
    client_secret: "{{ vault_client_secret }}"
    agent_host: agent1.corp.example.com
    winrm_user: CORP\admin
    winrm_password: "{{ vault_winrm_password }}"
    min_agent_version: 1.1.3730.0
    admin_principal: admin@contoso.onmicrosoft.com

- name: Agentless - check the account the writeback binds as (no agent, no gMSA)
  hybrid_identity.cloud_sync.prereq_facts:
    domain_controllers: [dc1.corp.example.com]
    ad_user: svc-writeback@corp.example.com
    ad_password: "{{ vault_writeback_password }}"
    target_ous: ["OU=Cloud Groups,DC=corp,DC=example,DC=com"]

- name: Stop when something is missing
  ansible.builtin.assert:
    that: cloudsync_prereqs.ready
    fail_msg: "{{ cloudsync_prereqs.summary }}: {{ cloudsync_prereqs.checks | rejectattr('ok') | map(attribute='detail') | list }}"

- name: Only the agent host
  hybrid_identity.cloud_sync.prereq_facts:
    agent_host: agent1.corp.example.com
    winrm_transport: kerberos
  register: agent_only
'''

RETURN = r'''
ansible_facts:
  description: Facts set by the module.
  returned: always
  type: dict
  contains:
    cloudsync_prereqs:
      description: The verdict and the checks.
      type: dict
      contains:
        ready:
          description: Every check was made (informational ones aside) and every required check passed.
          type: bool
          sample: false
        summary:
          description: One sentence naming the failed and not checked checks.
          type: str
          sample: "Not ready: 1 failed (agent_version); 6 not checked (entra_connection, ...); 14 passed."
        failed:
          description: Names of the required checks that failed.
          type: list
          elements: str
        not_checked:
          description: Names of the checks that could not be made (part not run, facts unreadable), informational ones aside.
          type: list
          elements: str
        advisories:
          description:
            - Names of failed recommendations and informational checks (C(entra_admin_role)); they do not affect
              RV(ansible_facts.cloudsync_prereqs.ready).
          type: list
          elements: str
        checks:
          description: One entry per check, in a fixed order (AD, Entra, agent).
          type: list
          elements: dict
          contains:
            name:
              description:
                - Stable name of the check, e.g. C(ad_schema_attribute), C(entra_licence), C(entra_app_permissions), C(agent_version).
                - C(entra_caller_role) of version 0.1 is gone; C(entra_app_permissions) (required) and C(entra_admin_role)
                  (informational) replace it.
              type: str
            part:
              description: V(ad), V(entra) or V(agent).
              type: str
            ok:
              description: C(true) passed, C(false) failed, C(null) not checked.
              type: bool
            detail:
              description: What was found (or why it was not checked).
              type: str
            remedy:
              description: What to do when the check did not pass; null when it passed.
              type: str
            required:
              description: C(false) for recommendations (functional levels) and the informational C(entra_admin_role).
              type: bool
          sample:
            - name: agent_version
              part: agent
              ok: false
              detail: Provisioning agent 1.1.999.0 on agent1 is older than 1.1.1370.0.
              remedy: Install or upgrade the Microsoft Entra provisioning agent to 1.1.1370.0 or later.
              required: true
'''

import base64
import json
import socket
import traceback

try:
    from urllib.parse import quote
except ImportError:  # Python 2
    from urllib import quote  # type: ignore

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.argspec import ArgumentSpec, dn_list_problem
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.errors import CloudSyncError
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import prereq_checks
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.winrm_client import (
    HAS_WINRM, WINRM_ARGSPEC, WINRM_IMPORT_ERROR, read_agent_facts,
)

try:
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_client import (
        ADClient, ADError, LDAP3_IMPORT_ERROR, first, parse_server,
    )
    AD_CLIENT_IMPORT_ERROR = None
except ImportError:
    AD_CLIENT_IMPORT_ERROR = traceback.format_exc()
    LDAP3_IMPORT_ERROR = None

try:
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_codecs import (
        dn_key, escape_filter_value, sid_from_bytes, sid_to_filter,
    )
except ImportError:
    pass

try:
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import cloudsync_acl
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import security_descriptor
    ACL_IMPORT_ERROR = None
except ImportError:
    cloudsync_acl = security_descriptor = None
    ACL_IMPORT_ERROR = traceback.format_exc()

try:
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.graph_client import GraphAuthError, GraphClient
    GRAPH_CLIENT_IMPORT_ERROR = None
except ImportError:
    GraphClient = GraphAuthError = None
    GRAPH_CLIENT_IMPORT_ERROR = traceback.format_exc()

PERMISSION_TYPE = 'UserGroupCreateDelete'
DEFAULT_AGENT_ACCOUNT = 'provAgentgMSA$'
SCHEMA_ATTRIBUTE = 'msDS-ExternalDirectoryObjectId'


def argument_spec():
    spec = ArgumentSpec(argument_spec=dict(
        target_ous=dict(type='list', elements='str'),
        agent_account=dict(type='str'),
        admin_principal=dict(type='str'),
        groups=dict(type='list', elements='str'),
        synced_user_sample=dict(type='int', default=100),
        max_members=dict(type='int', default=50000),
        min_agent_version=dict(type='str', default=prereq_checks.DEFAULT_MIN_AGENT_VERSION),
        min_connect_sync_version=dict(type='str', default=prereq_checks.DEFAULT_MIN_CONNECT_SYNC_VERSION),
    ))
    spec.update(argument_spec=WINRM_ARGSPEC)
    return spec.with_ad_connection().with_graph_auth().with_value_checks(target_ous=dn_list_problem)


# -- AD -----------------------------------------------------------------------------------------

def probe_ports(params, ports=(389, 3268)):
    """TCP connect to every domain controller on 389 and 3268: [{host, port, ok, error}]."""
    out = []
    timeout = min(int(params.get('ad_timeout') or 10), 10)
    hosts = []
    for entry in params.get('domain_controllers') or []:
        try:
            host = parse_server(entry, params.get('ad_tls_mode') or 'ldaps').host
        except ValueError:
            continue
        if host not in hosts:
            hosts.append(host)
    for host in hosts:
        for port in ports:
            try:
                sock = socket.create_connection((host, port), timeout=timeout)
                sock.close()
                out.append({'host': host, 'port': port, 'ok': True, 'error': None})
            except (OSError, socket.timeout) as exc:
                out.append({'host': host, 'port': port, 'ok': False, 'error': str(exc) or type(exc).__name__})
    return out


def _one(client, base, ldap_filter, attributes, scope):
    for entry in client.search(base, ldap_filter, attributes, scope=scope):
        return entry
    return None


def find_account(client, base_dn, name):
    """The account named by sAMAccountName, UPN, DN or SID: {name, found, dn, sid} (or error)."""
    attrs = ['objectSid', 'sAMAccountName', 'objectClass']
    candidates = []
    if name.upper().startswith('S-1-'):
        candidates.append((base_dn, '(objectSid=%s)' % sid_to_filter(name), 'subtree'))
    elif '=' in name and ',' in name:
        candidates.append((name, '(objectClass=*)', 'base'))
    elif '@' in name:
        candidates.append((base_dn, '(userPrincipalName=%s)' % escape_filter_value(name), 'subtree'))
    else:
        sam = name.split('\\', 1)[-1]
        candidates.append((base_dn, '(sAMAccountName=%s)' % escape_filter_value(sam), 'subtree'))
        if not sam.endswith('$'):
            candidates.append((base_dn, '(sAMAccountName=%s)' % escape_filter_value(sam + '$'), 'subtree'))
    for base, flt, scope in candidates:
        try:
            entry = _one(client, base, flt, attrs, scope)
        except ADError as exc:
            if exc.result == 32:   # noSuchObject (a DN that does not exist)
                continue
            raise
        if entry is not None:
            raw = first(entry, 'objectSid')
            sid = sid_from_bytes(raw) if isinstance(raw, bytes) else raw
            classes = [str(c).lower() for c in (entry.get('attributes') or {}).get('objectClass') or []]
            kind = 'computer' if 'computer' in classes else 'user' if 'user' in classes else classes[-1] if classes else None
            return {'name': name, 'found': True, 'dn': entry['dn'], 'sid': sid, 'object_class': kind,
                    'sam_account_name': first(entry, 'sAMAccountName')}
    return {'name': name, 'found': False, 'dn': None, 'sid': None}


def _sids(entry, name):
    out = []
    for value in (entry or {}).get('attributes', {}).get(name) or []:
        out.append(sid_from_bytes(value) if isinstance(value, (bytes, bytearray)) else str(value))
    return out


def token_sids(client, account):
    """The SIDs an access check of ``account`` would see: its own, its groups (``tokenGroups``: of the
    rootDSE for the bound account, of the account object otherwise) and the well-known SIDs of every
    authenticated token (Everyone, Authenticated Users, This Organization). Returns (sids, note)."""
    sids = set([account['sid']]) | set(cloudsync_acl.WELL_KNOWN_TOKEN_SIDS)
    where = '' if account.get('role') == 'bind' else account['dn']
    try:
        entry = client.get(where, ['tokenGroups'], binary_attributes=['tokenGroups'])
        groups = _sids(entry, 'tokenGroups')
    except (ADError, ValueError) as exc:
        return sorted(sids), 'tokenGroups could not be read (%s): only the account\'s own and well-known SIDs were used' % exc
    if not groups:
        return sorted(sids), 'tokenGroups returned nothing: only the account\'s own and well-known SIDs were used'
    return sorted(sids | set(groups)), None


def check_permissions(client, account, targets, domain_dn):
    """{checked, effective, permission_type, targets: [{dn, missing, error, unreadable}]}: the rights of
    UserGroupCreateDelete that ``account`` does not effectively hold on each target, read from the
    target's DACL (as the bound account) and evaluated for the account's token SIDs."""
    if cloudsync_acl is None:
        return {'checked': False, 'reason': 'the cloudsync_acl module_utils could not be imported: %s'
                % ACL_IMPORT_ERROR.strip().splitlines()[-1]}
    sids, note = token_sids(client, account)
    out = {'checked': True, 'effective': True, 'permission_type': PERMISSION_TYPE, 'targets': [], 'token_sids': sids}
    if note:
        out['note'] = note
    for dn in targets:
        is_root = dn_key(dn) == dn_key(domain_dn)
        item = {'dn': dn, 'missing': [], 'error': None}
        try:
            desired = cloudsync_acl.desired_aces(PERMISSION_TYPE, account['sid'], domain_root=is_root)
            sd = security_descriptor.parse(client.read_security_descriptor(dn))
        except ADError as exc:
            item['error'] = exc.msg
            # no security descriptor returned, or refused: the bound account lacks READ_CONTROL there
            item['unreadable'] = getattr(exc, 'result_name', None) in (None, 'insufficientAccessRights') and exc.result != 32
            out['targets'].append(item)
            continue
        except (CloudSyncError, ValueError) as exc:
            item['error'] = str(exc)
            out['targets'].append(item)
            continue
        missing = cloudsync_acl.effective_missing(sd.dacl, desired, sids)
        item['missing'] = [cloudsync_acl.describe_right(ace, mask) for ace, mask in missing]
        out['targets'].append(item)
    return out


def bound_account(client, domain_dn, params):
    """The account this module is bound as ({name, found, dn, sid, role: 'bind'}), from the LDAP
    "Who am I?" operation (RFC 4532), else from ad_user."""
    name = None
    try:
        who = client.connection.extend.standard.who_am_i()
    except Exception:  # pylint: disable=broad-except
        who = None
    if who:
        who = who.decode('utf-8') if isinstance(who, bytes) else str(who)
        if who.lower().startswith('dn:'):
            name = who[3:]
        elif who.lower().startswith('u:'):
            name = who[2:]
    name = name or params.get('ad_user')
    account = find_account(client, domain_dn, name) if name else {'found': False}
    if not account.get('found'):
        # e.g. a Kerberos bind without ad_user on a server without "Who am I?" (Samba): the one user or
        # computer object among the SIDs of the bound token (rootDSE tokenGroups) is the bound account
        try:
            sids = _sids(client.get('', ['tokenGroups'], binary_attributes=['tokenGroups']), 'tokenGroups')
        except (ADError, ValueError):
            sids = []
        for sid in sids:
            if sid.startswith('S-1-5-21-'):
                found = find_account(client, domain_dn, sid)
                if found.get('found') and found.get('object_class') in ('user', 'computer'):
                    account = dict(found, name=found.get('sam_account_name') or found['dn'])
                    break
    account.setdefault('name', name or '(the bound account)')
    account['role'] = 'bind'
    return account


def _container(client, dn):
    try:
        return {'dn': dn, 'exists': client.get(dn, ['objectClass']) is not None}
    except ADError as exc:   # e.g. invalidDNSyntax
        return {'dn': dn, 'exists': False, 'error': exc.msg}


def gather_ad(params):
    """AD facts for prereq_checks.ad_checks (connection failures become connect_error)."""
    facts = {'ports': probe_ports(params)}
    if AD_CLIENT_IMPORT_ERROR is not None:
        facts['connect_error'] = 'the ad_client module_utils could not be imported: %s' % AD_CLIENT_IMPORT_ERROR.strip().splitlines()[-1]
        return facts
    client = ADClient(params)
    try:
        client.connect()
        dse = client.root_dse()
    except ADError as exc:
        facts['connect_error'] = exc.msg
        return facts
    try:
        facts['server'] = client.server
        facts['domain_functionality'] = dse.get('domain_functionality')
        facts['forest_functionality'] = dse.get('forest_functionality')
        domain_dn = dse.get('default_naming_context')
        schema_dn = dse.get('schema_naming_context')
        try:
            schema = client.get(schema_dn, ['objectVersion'])
            facts['schema_object_version'] = int(first(schema, 'objectVersion')) if schema and first(schema, 'objectVersion') else None
            attr = _one(client, schema_dn, '(&(objectClass=attributeSchema)(lDAPDisplayName=%s))' % SCHEMA_ATTRIBUTE,
                        ['lDAPDisplayName'], 'onelevel')
            facts['schema_has_external_directory_object_id'] = attr is not None
        except ADError as exc:
            facts['schema_error'] = exc.msg
        domain = client.get(domain_dn, ['ntMixedDomain'])
        mixed = first(domain, 'ntMixedDomain') if domain else None
        facts['nt_mixed_domain'] = int(mixed) if mixed is not None else None
        targets = params.get('target_ous')
        if targets is not None:
            facts['target_ous'] = [_container(client, dn) for dn in targets]
        # the agent's account when an agent is in play, else (agentless) the account this module binds as
        name = params.get('agent_account') or (DEFAULT_AGENT_ACCOUNT if params.get('agent_host') else None)
        try:
            if name:
                facts['agent_account'] = find_account(client, domain_dn, name)
                facts['agent_account']['role'] = 'agent'
            else:
                facts['agent_account'] = bound_account(client, domain_dn, params)
        except (ADError, ValueError) as exc:
            facts['agent_account'] = {'name': name or params.get('ad_user'), 'error': str(exc), 'role': 'agent' if name else 'bind'}
        account = facts['agent_account']
        if account.get('found'):
            if targets:
                perm_targets = [t['dn'] for t in facts['target_ous'] if t['exists']]
            else:
                perm_targets = [domain_dn]
            if perm_targets:
                facts['permissions'] = check_permissions(client, account, perm_targets, domain_dn)
            else:
                facts['permissions'] = {'checked': False, 'reason': 'none of the target_ous exists, so there is nowhere to '
                                                                    'check the permissions.'}
    finally:
        client.close()
    return facts


# -- Entra --------------------------------------------------------------------------------------

def _error_text(exc):
    return getattr(exc, 'msg', None) or str(exc)


def _token_claims(token):
    """Claims of a JWT access token: the payload (middle part, base64url JSON) decoded WITHOUT checking
    its signature. That is enough here: the token is our own, just issued to us by the identity
    platform over TLS, and we only read what it says about us (``oid``, ``roles``); nothing is
    authorised on the strength of it (Graph checks the signature). Raises ValueError when the token is
    not a JWT."""
    try:
        payload = token.split('.')[1]
        payload += '=' * (-len(payload) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload.encode('ascii')).decode('utf-8'))
    except (AttributeError, IndexError, ValueError, TypeError) as exc:
        raise ValueError('the access token is not a JWT whose claims can be read (%s)' % type(exc).__name__)
    if not isinstance(claims, dict):
        raise ValueError('the access token payload is not a JSON object')
    return claims


def _app_identity(graph, params, facts):
    """The app's object id (``oid``) and application permissions (``roles``) from its own access token."""
    auth = getattr(graph, 'auth', None)
    if auth is None or not hasattr(auth, 'get_token'):
        facts['errors']['app_roles'] = 'no access token to read'
        return
    try:
        claims = _token_claims(auth.get_token())
    except ValueError as exc:
        facts['errors']['app_roles'] = str(exc)
        return
    facts['principal_id'] = claims.get('oid') or params.get('client_id')
    roles = claims.get('roles')
    if roles is None and claims.get('scp'):
        facts['errors']['app_roles'] = ('the token is a delegated one (scp: %s), not an app-only token with application '
                                        'permissions' % claims.get('scp'))
    elif roles is None:
        facts['app_roles'] = []      # an app-only token without any application permission carries no roles claim
    else:
        facts['app_roles'] = [str(r) for r in roles] if isinstance(roles, list) else [str(roles)]


def _admin_roles(graph, name):
    """The directory roles (template ids) assigned directly to the person ``name`` (UPN or object id)."""
    user = graph.get('/users/%s' % quote(name, safe='@'), {'$select': 'id,userPrincipalName'})
    items = graph.iter_pages('/roleManagement/directory/roleAssignments', {'$filter': "principalId eq '%s'" % user['id']})
    return {'name': name, 'id': user.get('id'), 'role_template_ids': [str(a.get('roleDefinitionId')).lower() for a in items]}


def _to_group(item):
    return {
        'id': item.get('id'), 'display_name': item.get('displayName'), 'security_enabled': item.get('securityEnabled'),
        'mail_enabled': item.get('mailEnabled'), 'group_types': item.get('groupTypes') or [],
        'on_premises_sync_enabled': item.get('onPremisesSyncEnabled'),
    }


GROUP_SELECT = 'id,displayName,securityEnabled,mailEnabled,groupTypes,onPremisesSyncEnabled'


def _read_groups(graph, params, facts):
    wanted = params.get('groups')
    if not wanted:
        page = graph.get('/groups', {'$filter': 'securityEnabled eq true', '$select': GROUP_SELECT, '$top': '999'})
        facts['groups'] = [_to_group(g) for g in (page or {}).get('value') or []]
        return
    found, missing = [], []
    for ref in wanted:
        ref_l = ref.strip().lower()
        if len(ref_l) == 36 and ref_l.count('-') == 4:
            flt = "id eq '%s'" % ref_l
        else:
            flt = "displayName eq '%s'" % ref.replace("'", "''")
        items = list(graph.iter_pages('/groups', {'$filter': flt, '$select': GROUP_SELECT}))
        if not items:
            missing.append(ref)
        for item in items:
            group = _to_group(item)
            group['member_count'] = sum(1 for unused_member in graph.iter_pages('/groups/%s/members' % item['id'], {'$select': 'id'}))
            found.append(group)
    facts['groups'] = found
    facts['groups_not_found'] = missing
    facts['groups_selected'] = True


def _is_connect_failure(exc):
    """No token, or Graph refused the token itself: nothing of the tenant can be read."""
    status = getattr(exc, 'status', None)
    return GraphAuthError is not None and isinstance(exc, GraphAuthError) or status in (None, 401)


def gather_entra(params):
    """Entra facts for prereq_checks.entra_checks; a fact that cannot be read (e.g. 403) is left
    out with its error, so its check is "not checked"."""
    facts = {'errors': {}, 'max_members': params.get('max_members')}
    if GRAPH_CLIENT_IMPORT_ERROR is not None:
        facts['connect_error'] = 'the graph_client module_utils could not be imported: %s' % GRAPH_CLIENT_IMPORT_ERROR.strip().splitlines()[-1]
        return facts
    try:
        graph = GraphClient(params)
        org = graph.get('/organization', {'$select': 'id,tenantType'})
    except CloudSyncError as exc:
        if 'graph' not in locals() or _is_connect_failure(exc):
            facts['connect_error'] = _error_text(exc)
            return facts
        facts['errors']['tenant_type'] = _error_text(exc)
        org = None
    if org is not None:
        orgs = org.get('value') or []
        facts['tenant_type'] = orgs[0].get('tenantType') if orgs else None
        if not orgs:
            facts['errors']['tenant_type'] = 'GET /organization returned no organization'

    def attempt(key, fn):
        try:
            facts[key] = fn()
        except CloudSyncError as exc:
            facts['errors'][key] = _error_text(exc)

    def plans():
        out = []
        for sku in graph.iter_pages('/subscribedSkus', {}):
            for plan in sku.get('servicePlans') or []:
                out.append({'service_plan_id': plan.get('servicePlanId'), 'service_plan_name': plan.get('servicePlanName'),
                            'provisioning_status': plan.get('provisioningStatus'), 'sku_part_number': sku.get('skuPartNumber')})
        return out

    def synced_users():
        page = graph.get('/users', version='beta', params={
            '$select': 'id,userPrincipalName,onPremisesSyncEnabled,onPremisesObjectIdentifier,onPremisesSecurityIdentifier,'
                       'onPremisesImmutableId',
            '$top': str(max(1, min(int(params.get('synced_user_sample') or 100), 999)))})
        out = []
        for user in (page or {}).get('value') or []:
            if user.get('onPremisesSyncEnabled') or user.get('onPremisesSecurityIdentifier') or user.get('onPremisesImmutableId'):
                out.append({'id': user.get('id'), 'user_principal_name': user.get('userPrincipalName'),
                            'on_premises_object_identifier': user.get('onPremisesObjectIdentifier')})
        return out

    attempt('service_plans', plans)
    _app_identity(graph, params, facts)
    if params.get('admin_principal'):
        try:
            facts['admin'] = _admin_roles(graph, params['admin_principal'])
        except CloudSyncError as exc:
            facts['admin'] = {'name': params['admin_principal'], 'error': _error_text(exc)}
    attempt('synced_users', synced_users)
    try:
        _read_groups(graph, params, facts)
    except CloudSyncError as exc:
        facts.pop('groups', None)
        facts['errors']['groups'] = _error_text(exc)
    finally:
        graph.close()
    return facts


# -- agent --------------------------------------------------------------------------------------

def gather_agent(params):
    try:
        return read_agent_facts(params)
    except CloudSyncError as exc:
        return {'host': params.get('agent_host'), 'connect_error': exc.msg}


def run(params):
    ad = gather_ad(params) if params.get('domain_controllers') else None
    entra = gather_entra(params) if params.get('tenant_id') else None
    agent = gather_agent(params) if params.get('agent_host') else None
    checks = prereq_checks.ad_checks(ad) + prereq_checks.entra_checks(entra) + prereq_checks.agent_checks(
        agent, params['min_agent_version'], params['min_connect_sync_version'])
    return prereq_checks.summarize(checks)


def main():
    module = argument_spec().create_module(supports_check_mode=True)
    params = module.params
    for option in ('min_agent_version', 'min_connect_sync_version'):
        if prereq_checks.parse_version(params[option]) is None:
            module.fail_json(msg='%s must be a dotted version such as 1.1.1370.0, not %r' % (option, params[option]))
    if params.get('domain_controllers') and LDAP3_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib('ldap3'), exception=LDAP3_IMPORT_ERROR)
    if params.get('agent_host') and not HAS_WINRM:
        module.fail_json(msg=missing_required_lib('pywinrm'), exception=WINRM_IMPORT_ERROR)
    try:
        result = run(params)
    except CloudSyncError as err:
        module.fail_json(**err.to_fail_kwargs())
    except Exception as err:  # pylint: disable=broad-except
        module.fail_json(msg='prereq_facts failed unexpectedly: %s: %s' % (type(err).__name__, err), exception=traceback.format_exc())
    module.exit_json(changed=False, ansible_facts={'cloudsync_prereqs': result})


if __name__ == '__main__':
    main()
