# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Named prerequisite checks of Entra Cloud Sync group provisioning to AD, from plain facts (pure).

Every check is a dict ``{name, part, ok, detail, remedy, required}``:

* ``ok`` is ``True`` (passed), ``False`` (failed) or ``None`` (not checked: the facts were not
  gathered, and ``detail`` says why). A part that was not run is "not checked", never passed.
* ``required`` is ``False`` for a recommendation (for example functional levels of 2016 or
  later, which Microsoft's prerequisites do not demand) or an informational check (the
  configuring person's directory role): a failed one is reported but does not make the
  environment "not ready" (and an informational one that was not checked does not either).

``summarize(checks)`` gives ``ready``: every required check was checked and passed.

The three parts and the facts they take (all keys optional; a missing fact makes its check
"not checked"):

* ``ad_checks(facts)``: ``server``, ``connect_error``, ``schema_has_external_directory_object_id``,
  ``schema_object_version``, ``domain_functionality``, ``forest_functionality``,
  ``nt_mixed_domain``, ``ports`` (list of ``{host, port, ok, error}``), ``target_ous`` (list of
  ``{dn, exists}``), ``agent_account`` (``{name, found, dn, sid, role}``; ``role`` is ``agent`` for
  the provisioning agent's account, ``bind`` for the account the module binds as when no agent is
  used), ``permissions`` (``{checked, reason, targets: [{dn, missing: [text], error, unreadable}]}``).
* ``entra_checks(facts)``: ``connect_error``, ``tenant_type``, ``service_plans`` (list of
  ``{service_plan_id, service_plan_name, provisioning_status, sku_part_number}``), ``principal_id``,
  ``app_roles`` (the ``roles`` claim of the app's access token: its application permissions),
  ``admin`` (the configuring person, when named: ``{name, id, role_template_ids}`` or ``{name, error}``),
  ``synced_users`` (sample of user dicts of the architecture's member contract), ``groups`` (Entra
  group dicts), ``errors`` (per-fact reasons).
* ``agent_checks(facts, min_agent_version, min_connect_sync_version)``: ``host``,
  ``connect_error``, ``agent_version``, ``agent_installed``, ``service_state``, ``service_found``,
  ``registry_present``, ``connect_sync_installed``, ``connect_sync_version``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.eligibility import group_ineligibility, reason_text

DEFAULT_MIN_AGENT_VERSION = '1.1.1370.0'
DEFAULT_MIN_CONNECT_SYNC_VERSION = '2.2.8.0'

AAD_PREMIUM_PLAN_ID = '41781fb2-bc02-4b7c-bd55-b576c07bb09d'
AAD_PREMIUM_PLAN_NAMES = ('AAD_PREMIUM', 'AAD_PREMIUM_P2')
HYBRID_IDENTITY_ADMINISTRATOR = '8ac3fc64-6eca-42ea-9e69-59f4c7b60eb2'
GLOBAL_ADMINISTRATOR = '62e90394-69f5-4237-9190-012177145e10'
ROLE_NAMES = {
    HYBRID_IDENTITY_ADMINISTRATOR: 'Hybrid Identity Administrator',
    GLOBAL_ADMINISTRATOR: 'Global Administrator',
}

# objectVersion of the schema naming context
SCHEMA_VERSIONS = {
    13: 'Windows 2000 Server', 30: 'Windows Server 2003', 31: 'Windows Server 2003 R2', 44: 'Windows Server 2008',
    47: 'Windows Server 2008 R2', 56: 'Windows Server 2012', 69: 'Windows Server 2012 R2', 87: 'Windows Server 2016',
    88: 'Windows Server 2019/2022', 91: 'Windows Server 2025',
}
SCHEMA_VERSION_2016 = 87

# msDS-Behavior-Version (domainFunctionality / forestFunctionality of the rootDSE)
FUNCTIONAL_LEVELS = {
    0: 'Windows 2000', 1: 'Windows Server 2003 interim', 2: 'Windows Server 2003', 3: 'Windows Server 2008',
    4: 'Windows Server 2008 R2', 5: 'Windows Server 2012', 6: 'Windows Server 2012 R2', 7: 'Windows Server 2016',
    10: 'Windows Server 2025',
}
FUNCTIONAL_LEVEL_2016 = 7

PART_AD = 'ad'
PART_ENTRA = 'entra'
PART_AGENT = 'agent'

AD_CHECKS = (
    'ad_connection', 'ad_schema_attribute', 'ad_schema_version', 'ad_domain_functional_level',
    'ad_forest_functional_level', 'ad_universal_group_scope', 'ad_ldap_port', 'ad_global_catalog_port',
    'ad_target_ous', 'ad_agent_account', 'ad_agent_permissions',
)
ENTRA_CHECKS = (
    'entra_connection', 'entra_tenant_type', 'entra_licence', 'entra_app_permissions', 'entra_admin_role',
    'entra_synced_users_object_identifier', 'entra_groups_in_scope',
)
AGENT_CHECKS = (
    'agent_connection', 'agent_version', 'agent_service', 'agent_registry', 'connect_sync_version',
)
RECOMMENDED = frozenset(['ad_domain_functional_level', 'ad_forest_functional_level', 'entra_admin_role'])
# Checks whose "not checked" does not block readiness either (what they check is not the run's own business).
INFORMATIONAL = frozenset(['entra_admin_role'])

# The Graph application permissions the app needs, one entry per need: (what for, least privileged
# permission, every permission that satisfies it). From the "Permissions" tables of the calls:
# List groups and group delta (https://learn.microsoft.com/graph/api/group-list,
# https://learn.microsoft.com/graph/api/group-delta) and List group members
# (https://learn.microsoft.com/graph/api/group-list-members) take GroupMember.Read.All as least
# privileged, Group.Read.All, Directory.Read.All and the ReadWrite ones as higher. Members' user
# properties (the on-premises identifiers) come back only with a permission to read users; without one
# Graph returns user members with limited information
# (https://learn.microsoft.com/graph/permissions-overview#limited-information-returned-for-inaccessible-member-objects);
# User.Read.All is the least privileged (https://learn.microsoft.com/graph/api/user-list).
GRAPH_PERMISSION_NEEDS = (
    ('read groups and their members (List groups, group delta, List group members)', 'GroupMember.Read.All',
     ('GroupMember.Read.All', 'Group.Read.All', 'Directory.Read.All', 'GroupMember.ReadWrite.All', 'Group.ReadWrite.All',
      'Directory.ReadWrite.All')),
    ("read the members' on-premises identifiers (user properties)", 'User.Read.All',
     ('User.Read.All', 'Directory.Read.All', 'User.ReadWrite.All', 'Directory.ReadWrite.All')),
)


def make_check(name, part, ok, detail, remedy=None):
    """One check dict; ``ok`` is True, False or None (not checked)."""
    if ok not in (True, False, None):
        raise ValueError('ok must be True, False or None, not %r' % (ok,))
    return {
        'name': name,
        'part': part,
        'ok': ok,
        'detail': detail,
        'remedy': None if ok is True else remedy,
        'required': name not in RECOMMENDED,
    }


def not_checked(name, part, reason, remedy=None):
    return make_check(name, part, None, 'Not checked: %s' % reason, remedy)


def part_not_run(part, reason):
    """Every check of a part as "not checked" (the part's options were not given, or it failed early)."""
    names = {PART_AD: AD_CHECKS, PART_ENTRA: ENTRA_CHECKS, PART_AGENT: AGENT_CHECKS}[part]
    return [not_checked(name, part, reason) for name in names]


# -- versions -----------------------------------------------------------------------------------

_VERSION_RE = re.compile(r'^\s*v?(\d+(?:\.\d+)*)\s*$')


def parse_version(text):
    """Dotted version -> tuple of ints (``'1.1.1370.0'`` -> ``(1, 1, 1370, 0)``); None when not a version."""
    if text is None:
        return None
    match = _VERSION_RE.match(str(text))
    if not match:
        return None
    return tuple(int(p) for p in match.group(1).split('.'))


def compare_versions(left, right):
    """-1, 0 or 1, comparing dotted versions numerically part by part (missing parts are 0).
    Raises ValueError when either is not a dotted version."""
    a, b = parse_version(left), parse_version(right)
    if a is None or b is None:
        raise ValueError('not a dotted version: %r' % (left if a is None else right,))
    width = max(len(a), len(b))
    a = a + (0,) * (width - len(a))
    b = b + (0,) * (width - len(b))
    return (a > b) - (a < b)


def _level_name(level, table):
    return '%s (%s)' % (level, table.get(level, 'unknown'))


# -- AD -----------------------------------------------------------------------------------------

def ad_checks(facts):
    """AD checks from the AD facts (see the module docstring); ``facts`` None = part not run."""
    if facts is None:
        return part_not_run(PART_AD, 'no domain_controllers were given, so Active Directory was not examined.')
    part = PART_AD
    server = facts.get('server') or 'the domain controller'
    if facts.get('connect_error'):
        checks = [make_check('ad_connection', part, False, 'Could not read Active Directory: %s' % facts['connect_error'],
                             'Check domain_controllers, the bind account and password, and the TLS settings (ad_tls_mode, ad_ca_file).')]
        reason = 'Active Directory could not be read (see ad_connection).'
        ports = dict((c['name'], c) for c in _port_checks(facts))
        checks.extend(ports[n] if n in ports else not_checked(n, part, reason) for n in AD_CHECKS[1:])
        return checks
    checks = [make_check('ad_connection', part, True, 'Connected to %s and read the rootDSE.' % server)]
    checks.append(_schema_attribute_check(facts))
    checks.append(_schema_version_check(facts))
    checks.append(_functional_level_check('ad_domain_functional_level', 'domain', facts.get('domain_functionality')))
    checks.append(_functional_level_check('ad_forest_functional_level', 'forest', facts.get('forest_functionality')))
    checks.append(_universal_scope_check(facts))
    checks.extend(_port_checks(facts))
    checks.append(_target_ous_check(facts))
    checks.append(_agent_account_check(facts))
    checks.append(_permissions_check(facts))
    return checks


def _schema_attribute_check(facts):
    name, part = 'ad_schema_attribute', PART_AD
    present = facts.get('schema_has_external_directory_object_id')
    if present is None:
        return not_checked(name, part, facts.get('schema_error') or 'the schema naming context was not read.')
    if present:
        return make_check(name, part, True, 'The schema defines msDS-ExternalDirectoryObjectId (the anchor of written-back groups).')
    return make_check(
        name, part, False,
        'The schema has no attributeSchema msDS-ExternalDirectoryObjectId: groups cannot be anchored, so none can be written back.',
        'Extend the schema to Windows Server 2016 or later (adprep /forestprep from Windows Server 2016+ media, '
        'run by a Schema Admin on the schema master).')


def _schema_version_check(facts):
    name, part = 'ad_schema_version', PART_AD
    version = facts.get('schema_object_version')
    attribute = facts.get('schema_has_external_directory_object_id')
    if version is None:
        return not_checked(name, part, facts.get('schema_error') or 'objectVersion of the schema naming context was not read.')
    label = _level_name(version, SCHEMA_VERSIONS)
    if version >= SCHEMA_VERSION_2016:
        return make_check(name, part, True, 'Schema objectVersion %s: Windows Server 2016 schema or later.' % label)
    if attribute:
        return make_check(
            name, part, True,
            'Schema objectVersion %s is below 87 (Windows Server 2016), but the schema defines msDS-ExternalDirectoryObjectId, '
            'which is what group provisioning needs (the attribute check is what matters; Samba AD, for example, reports 69 '
            'with the 2016 attributes added).' % label)
    return make_check(
        name, part, False,
        'Schema objectVersion %s is below 87 (Windows Server 2016) and msDS-ExternalDirectoryObjectId is missing.' % label,
        'Extend the schema to Windows Server 2016 or later (adprep /forestprep).')


def _functional_level_check(name, scope, level):
    part = PART_AD
    if level is None:
        return not_checked(name, part, 'the rootDSE did not report the %s functional level.' % scope)
    label = _level_name(level, FUNCTIONAL_LEVELS)
    if level >= FUNCTIONAL_LEVEL_2016:
        return make_check(name, part, True, 'The %s functional level is %s: Windows Server 2016 or later.' % (scope, label))
    return make_check(
        name, part, False,
        'The %s functional level is %s, below Windows Server 2016 (7). Recommended, not required: Microsoft requires the '
        'Windows Server 2016 schema (msDS-ExternalDirectoryObjectId), not a functional level, so this does not block '
        'readiness.' % (scope, label),
        'Raise the %s functional level to Windows Server 2016 once every domain controller runs 2016 or later.' % scope)


def _universal_scope_check(facts):
    name, part = 'ad_universal_group_scope', PART_AD
    mixed = facts.get('nt_mixed_domain')
    level = facts.get('domain_functionality')
    if mixed is None:
        if level is not None and level >= 2:
            return make_check(name, part, True, 'Domain functional level %s cannot be in mixed mode: universal groups are available.'
                              % _level_name(level, FUNCTIONAL_LEVELS))
        return not_checked(name, part, 'ntMixedDomain of the domain object was not read.')
    if int(mixed) == 0:
        return make_check(name, part, True, 'The domain is in native mode (ntMixedDomain = 0): universal groups are available.')
    return make_check(name, part, False,
                      'The domain is in mixed mode (ntMixedDomain = %s): universal security groups cannot be created, and '
                      'written-back groups are universal.' % mixed,
                      'Raise the domain functional level to at least Windows 2000 native (in practice Windows Server 2016).')


def _port_checks(facts):
    part = PART_AD
    ports = facts.get('ports')
    out = []
    for name, port, what in (('ad_ldap_port', 389, 'LDAP'), ('ad_global_catalog_port', 3268, 'Global Catalog')):
        if ports is None:
            out.append(not_checked(name, part, 'no TCP probe of port %d was made.' % port))
            continue
        probes = [p for p in ports if int(p.get('port')) == port]
        if not probes:
            out.append(not_checked(name, part, 'no domain controller was probed on TCP %d.' % port))
            continue
        good = [p['host'] for p in probes if p.get('ok')]
        bad = ['%s (%s)' % (p['host'], p.get('error') or 'refused') for p in probes if not p.get('ok')]
        where = 'from the host running the module (probe the agent host itself for the agent\'s view)'
        if good:
            detail = '%s (TCP %d) reachable on %s %s.' % (what, port, ', '.join(good), where)
            if bad:
                detail += ' Not reachable: %s.' % ', '.join(bad)
            out.append(make_check(name, part, True, detail))
        else:
            out.append(make_check(name, part, False, '%s (TCP %d) not reachable on any domain controller %s: %s.'
                                  % (what, port, where, ', '.join(bad)),
                                  'Open TCP %d from the provisioning agent to at least one domain controller%s.'
                                  % (port, ' that is a Global Catalog' if port == 3268 else '')))
    return out


def _target_ous_check(facts):
    name, part = 'ad_target_ous', PART_AD
    ous = facts.get('target_ous')
    if ous is None:
        return not_checked(name, part, 'no target_ous were given.')
    if not ous:
        return not_checked(name, part, 'target_ous is empty.')
    missing = ['%s (%s)' % (o['dn'], o['error']) if o.get('error') else o['dn'] for o in ous if not o.get('exists')]
    if missing:
        return make_check(name, part, False, 'Target containers not found: %s.' % '; '.join(missing),
                          'Create the OUs (or correct target_ous / ou_map) before provisioning groups into them.')
    return make_check(name, part, True, 'All %d target containers exist.' % len(ous))


def _agent_account_check(facts):
    name, part = 'ad_agent_account', PART_AD
    account = facts.get('agent_account')
    if account is None:
        return not_checked(name, part, 'no agent_account was given.')
    if account.get('error'):
        return not_checked(name, part, 'the account %s could not be looked up: %s' % (account.get('name'), account['error']))
    if account.get('role') == 'bind':
        if not account.get('found'):
            return not_checked(name, part, 'agentless use (no agent_account, no agent_host), but the account this module binds as '
                               '(%s) could not be found in the domain.' % account.get('name'))
        return make_check(name, part, True, 'Agentless use (no agent_account, no agent_host): the account this module binds as, '
                          '%s (%s, %s), is the one that writes, so its rights are checked (ad_agent_permissions).'
                          % (account.get('name'), account.get('dn'), account.get('sid')))
    if not account.get('found'):
        return make_check(name, part, False, 'The agent account %s was not found in the domain.' % account.get('name'),
                          'Install the provisioning agent (it creates the gMSA provAgentgMSA$) or give the right agent_account; '
                          'for agentless use give neither agent_account nor agent_host.')
    return make_check(name, part, True, 'The agent account %s exists: %s (%s).'
                      % (account.get('name'), account.get('dn'), account.get('sid')))


def _permissions_check(facts):
    name, part = 'ad_agent_permissions', PART_AD
    perms = facts.get('permissions')
    account = facts.get('agent_account')
    bound = (account or {}).get('role') == 'bind'
    if perms is None:
        if account is None:
            return not_checked(name, part, 'no agent_account was given.')
        if not account.get('found'):
            return not_checked(name, part, 'the account was not found, so its permissions cannot be checked.')
        return not_checked(name, part, 'the permissions were not read.')
    if not perms.get('checked'):
        return not_checked(name, part, perms.get('reason') or 'the permissions were not read.')
    targets = perms.get('targets') or []
    if not targets:
        return not_checked(name, part, 'no target to check.')
    who = (account or {}).get('name') or 'the agent account'
    ptype = perms.get('permission_type') or 'UserGroupCreateDelete'
    remedy = ('Grant them with the hybrid_identity.cloud_sync.cloudsync_permissions module (principal: %s, targets: the OUs '
              'named here, permission_type: %s) or Set-AADCloudSyncPermissions -PermissionType %s.' % (who, ptype, ptype))
    unreadable = [t for t in targets if t.get('unreadable') and bound]
    errors = ['%s (%s)' % (t['dn'], t['error']) for t in targets if t.get('error') and not (t.get('unreadable') and bound)]
    if errors:
        return not_checked(name, part, 'could not read the security descriptor of %s.' % '; '.join(errors),
                           'Give the bind account READ_CONTROL on the targets.')
    lacking = [t for t in targets if t.get('missing')]
    if lacking or unreadable:
        parts = ['%s: %d missing (%s)' % (t['dn'], len(t['missing']), '; '.join(str(m) for m in t['missing'][:8])) for t in lacking]
        parts.extend('%s: it cannot read the DACL there, so it lacks at least Read permissions (RC), which %s grants, and '
                     'probably the rest (%s)' % (t['dn'], ptype, t.get('error') or 'no security descriptor returned') for t in unreadable)
        return make_check(name, part, False, '%s lacks %s rights: %s.' % (who, ptype, ' | '.join(parts)), remedy)
    how = ' (effective rights: its own SID, its groups and the well-known SIDs of its token)' if perms.get('effective') else ''
    return make_check(name, part, True, '%s holds the %s rights on %s%s.' % (who, ptype, ', '.join(t['dn'] for t in targets), how))


# -- Entra --------------------------------------------------------------------------------------

def entra_checks(facts):
    """Entra checks from the tenant facts (see the module docstring); ``facts`` None = part not run."""
    if facts is None:
        return part_not_run(PART_ENTRA, 'no tenant_id was given, so the Entra tenant was not examined.')
    part = PART_ENTRA
    errors = facts.get('errors') or {}
    if facts.get('connect_error'):
        out = [make_check('entra_connection', part, False, 'Could not read Microsoft Graph: %s' % facts['connect_error'],
                          'Check tenant_id, client_id and the credential, and that the app may read the directory.')]
        out.extend(not_checked(n, part, 'Microsoft Graph could not be read (see entra_connection).') for n in ENTRA_CHECKS[1:])
        return out
    out = [make_check('entra_connection', part, True, 'Obtained a token and read Microsoft Graph.')]
    out.append(_tenant_type_check(facts, errors))
    out.append(_licence_check(facts, errors))
    out.append(_app_permissions_check(facts, errors))
    out.append(_admin_role_check(facts, errors))
    out.append(_object_identifier_check(facts, errors))
    out.append(_groups_check(facts, errors))
    return out


def _tenant_type_check(facts, errors):
    name, part = 'entra_tenant_type', PART_ENTRA
    tenant_type = facts.get('tenant_type')
    if tenant_type is None:
        return not_checked(name, part, errors.get('tenant_type') or 'GET /organization was not read.',
                           'Grant the app Organization.Read.All (or Directory.Read.All).')
    if tenant_type == 'AAD':
        return make_check(name, part, True, 'The tenant is a regular workforce tenant (tenantType AAD).')
    return make_check(name, part, False,
                      'The tenant type is %r; group provisioning to AD works only in regular (AAD) tenants, not B2C or CIAM.'
                      % tenant_type, 'Use a workforce (AAD) tenant.')


def _licence_check(facts, errors):
    name, part = 'entra_licence', PART_ENTRA
    plans = facts.get('service_plans')
    if plans is None:
        return not_checked(name, part, errors.get('service_plans') or 'GET /subscribedSkus was not read.',
                           'Grant the app Organization.Read.All (or LicenseAssignment.Read.All).')
    matching = [p for p in plans
                if (str(p.get('service_plan_id') or '').lower() == AAD_PREMIUM_PLAN_ID
                    or p.get('service_plan_name') in AAD_PREMIUM_PLAN_NAMES)]
    enabled = [p for p in matching if p.get('provisioning_status') == 'Success']
    if enabled:
        names = sorted(set('%s in %s' % (p.get('service_plan_name') or p.get('service_plan_id'), p.get('sku_part_number') or 'a SKU')
                           for p in enabled))
        return make_check(name, part, True, 'Entra ID P1 is licensed: %s.' % ', '.join(names))
    if matching:
        states = sorted(set('%s: %s' % (p.get('service_plan_name') or p.get('service_plan_id'), p.get('provisioning_status'))
                            for p in matching))
        return make_check(name, part, False, 'The Entra ID P1 service plan is present but not enabled (%s).' % ', '.join(states),
                          'Enable the AAD_PREMIUM service plan (Entra ID P1 or P2 licence).')
    return make_check(name, part, False, 'No subscribed SKU carries the AAD_PREMIUM (Entra ID P1) service plan %s.' % AAD_PREMIUM_PLAN_ID,
                      'Buy Entra ID P1 or P2 (or a suite that includes it, such as Microsoft 365 E3/E5).')


def missing_graph_permissions(app_roles):
    """The needs of GRAPH_PERMISSION_NEEDS that none of ``app_roles`` satisfies: [(what, least privileged)]."""
    held = set(str(r).lower() for r in app_roles or [])
    return [(what, least) for what, least, accepted in GRAPH_PERMISSION_NEEDS
            if not held & set(a.lower() for a in accepted)]


def _app_permissions_check(facts, errors):
    name, part = 'entra_app_permissions', PART_ENTRA
    roles = facts.get('app_roles')
    app = facts.get('principal_id') or 'the app'
    if roles is None:
        return not_checked(name, part, errors.get('app_roles') or 'the roles claim of the access token was not read.',
                           'Use an app-only credential (client secret, certificate or managed identity); its token carries '
                           'the application permissions in its roles claim.')
    missing = missing_graph_permissions(roles)
    held = ', '.join(sorted(roles)) or 'none'
    if missing:
        return make_check(
            name, part, False,
            '%s lacks the Graph application permission %s (to %s); its token grants: %s.'
            % (app, ' and '.join(least for _what, least in missing), '; '.join(what for what, _least in missing), held),
            'Grant the app the application permission(s) %s on Microsoft Graph and give admin consent (no directory role '
            'is needed).' % ', '.join(least for _what, least in missing))
    return make_check(name, part, True, '%s holds the Graph application permissions it needs (roles claim: %s); no directory '
                      'role is needed.' % (app, held))


def _admin_role_check(facts, errors):
    """Hybrid Identity Administrator is the role of the person who configures Cloud Sync, never the app's:
    informational (not required) whatever the outcome."""
    name, part = 'entra_admin_role', PART_ENTRA
    admin = facts.get('admin')
    remedy = 'Assign the Hybrid Identity Administrator role to the person who configures provisioning (not to the app).'
    if not admin:
        return not_checked(name, part, 'informational: the person who configures group provisioning needs at least Hybrid Identity '
                           'Administrator (%s); give admin_principal to check a named person. The app needs no directory '
                           'role.' % HYBRID_IDENTITY_ADMINISTRATOR)
    who = admin.get('name') or admin.get('id') or 'the administrator'
    if admin.get('error'):
        return not_checked(name, part, 'the roles of %s could not be read: %s' % (who, admin['error']),
                           'Grant the app RoleManagement.Read.Directory to check a named person, or check the role in the portal.')
    roles = admin.get('role_template_ids') or []
    held = [ROLE_NAMES[r] for r in (str(x).lower() for x in roles) if r in ROLE_NAMES]
    if held:
        return make_check(name, part, True, '%s holds %s.' % (who, ', '.join(sorted(set(held)))))
    detail = ('%s holds neither Hybrid Identity Administrator (%s) nor Global Administrator (%s); %d other role(s). '
              'Only active assignments made to the person directly are read (not through a group, nor PIM-eligible ones). '
              'Informational: this does not block the run.' % (who, HYBRID_IDENTITY_ADMINISTRATOR, GLOBAL_ADMINISTRATOR, len(roles)))
    return make_check(name, part, False, detail, remedy)


def _object_identifier_check(facts, errors):
    name, part = 'entra_synced_users_object_identifier', PART_ENTRA
    users = facts.get('synced_users')
    if users is None:
        return not_checked(name, part, errors.get('synced_users') or 'synced users were not read.',
                           'Grant the app User.Read.All (or Directory.Read.All).')
    if not users:
        return make_check(name, part, False, 'No synced user was found in the sample: written-back groups could have no members.',
                          'Synchronise users from AD (Connect Sync 2.2.8.0+ or Cloud Sync) before provisioning groups to AD.')
    without = [u for u in users if not u.get('on_premises_object_identifier')]
    if without:
        names = ', '.join((u.get('user_principal_name') or u.get('id') or '?') for u in without[:5])
        return make_check(name, part, False,
                          '%d of %d sampled synced users have no onPremisesObjectIdentifier (e.g. %s); they resolve only by SID or '
                          'immutable id.' % (len(without), len(users), names),
                          'Upgrade Connect Sync to 2.2.8.0 or later (it writes objectGUID to onPremisesObjectIdentifier) and let it '
                          'run a full sync.')
    return make_check(name, part, True, 'All %d sampled synced users carry onPremisesObjectIdentifier.' % len(users))


def _groups_check(facts, errors):
    name, part = 'entra_groups_in_scope', PART_ENTRA
    groups = facts.get('groups')
    if groups is None:
        return not_checked(name, part, errors.get('groups') or 'groups were not read.',
                           'Grant the app Group.Read.All (or GroupMember.Read.All).')
    missing = facts.get('groups_not_found') or []
    max_members = facts.get('max_members')
    skipped, eligible = [], []
    for group in groups:
        kwargs = {} if max_members is None else {'max_members': max_members}
        reasons = group_ineligibility(group, **kwargs)
        if reasons:
            skipped.append((group, reasons))
        else:
            eligible.append(group)
    lines = ['%s (%s): %s' % (g.get('display_name'), g.get('id'), ' '.join(reason_text(r) for r in rs).rstrip('.'))
             for g, rs in skipped[:20]]
    more = ' and %d more' % (len(skipped) - 20) if len(skipped) > 20 else ''
    detail = '%d group(s) examined, %d would be written back, %d would be skipped' % (len(groups), len(eligible), len(skipped))
    if lines:
        detail += ': ' + '; '.join(lines) + more
    detail += '.'
    if missing:
        return make_check(name, part, False, 'Groups not found in the tenant: %s. %s' % (', '.join(missing), detail),
                          'Correct the group ids or display names.')
    if facts.get('groups_selected') and skipped:
        return make_check(name, part, False, detail, 'Only cloud security groups (not mail-enabled, not Microsoft 365, '
                          'not synced from AD, at most 50,000 direct members) can be provisioned to AD.')
    if not eligible:
        return make_check(name, part, False, detail + ' Nothing would be written back.',
                          'Create cloud security groups (security enabled, not mail-enabled) to provision.')
    return make_check(name, part, True, detail)


# -- agent --------------------------------------------------------------------------------------

def agent_checks(facts, min_agent_version=DEFAULT_MIN_AGENT_VERSION, min_connect_sync_version=DEFAULT_MIN_CONNECT_SYNC_VERSION):
    """Agent host checks from the facts the agent's PowerShell returned; ``facts`` None = part not run."""
    if facts is None:
        return part_not_run(PART_AGENT, 'no agent_host was given, so the provisioning agent host was not examined.')
    part = PART_AGENT
    host = facts.get('host') or 'the agent host'
    if facts.get('connect_error'):
        out = [make_check('agent_connection', part, False, 'Could not run PowerShell on %s: %s' % (host, facts['connect_error']),
                          'Check agent_host, the WinRM listener (HTTPS 5986), winrm_transport and the credentials.')]
        out.extend(not_checked(n, part, 'PowerShell could not be run on %s (see agent_connection).' % host) for n in AGENT_CHECKS[1:])
        return out
    out = [make_check('agent_connection', part, True, 'Ran PowerShell on %s over WinRM.' % host)]
    out.append(_agent_version_check(host, facts, min_agent_version))
    out.append(_agent_service_check(host, facts))
    out.append(_agent_registry_check(host, facts))
    out.append(_connect_sync_check(host, facts, min_connect_sync_version))
    return out


def _agent_version_check(host, facts, minimum):
    name, part = 'agent_version', PART_AGENT
    remedy = 'Install or upgrade the Microsoft Entra provisioning agent to %s or later.' % minimum
    if facts.get('agent_installed') is False:
        return make_check(name, part, False, 'The provisioning agent is not installed on %s (no AADConnectProvisioningAgent.exe).' % host,
                          remedy)
    version = facts.get('agent_version')
    if not version:
        return not_checked(name, part, 'the agent file version was not reported by %s.' % host)
    return _minimum_version_check(name, part, 'Provisioning agent', version, host, minimum, remedy)


def _minimum_version_check(name, part, what, version, host, minimum, remedy, why=''):
    """``what`` ``version`` on ``host`` against ``minimum``: passed, failed (``why`` appended) or not checked."""
    try:
        cmp = compare_versions(version, minimum)
    except ValueError as exc:
        return not_checked(name, part, 'cannot compare versions: %s.' % exc)
    if cmp >= 0:
        return make_check(name, part, True, '%s %s on %s (minimum %s).' % (what, version, host, minimum))
    return make_check(name, part, False, '%s %s on %s is older than %s%s.' % (what, version, host, minimum, why), remedy)


def _agent_service_check(host, facts):
    name, part = 'agent_service', PART_AGENT
    if facts.get('service_found') is False:
        return make_check(name, part, False, 'The service AADConnectProvisioningAgent (Microsoft Entra Provisioning Agent) does not '
                          'exist on %s.' % host, 'Install the provisioning agent.')
    state = facts.get('service_state')
    if not state:
        return not_checked(name, part, 'the service state was not reported by %s.' % host)
    if str(state).lower() == 'running':
        return make_check(name, part, True, 'The Microsoft Entra Provisioning Agent service is running on %s.' % host)
    return make_check(name, part, False, 'The Microsoft Entra Provisioning Agent service on %s is %s.' % (host, state),
                      'Start-Service AADConnectProvisioningAgent (and set it to start automatically).')


def _agent_registry_check(host, facts):
    name, part = 'agent_registry', PART_AGENT
    present = facts.get('registry_present')
    key = r'HKLM\SOFTWARE\Microsoft\Azure AD Connect Agents\Azure AD Connect Provisioning Agent'
    if present is None:
        return not_checked(name, part, 'the registry was not reported by %s.' % host)
    if present:
        return make_check(name, part, True, '%s exists on %s.' % (key, host))
    return make_check(name, part, False, '%s is missing on %s: the agent is not (fully) installed.' % (key, host),
                      'Reinstall the provisioning agent.')


def _connect_sync_check(host, facts, minimum):
    name, part = 'connect_sync_version', PART_AGENT
    installed = facts.get('connect_sync_installed')
    version = facts.get('connect_sync_version')
    if installed is None:
        return not_checked(name, part, 'whether Connect Sync is installed was not reported by %s.' % host)
    if not installed:
        return make_check(name, part, True,
                          'Connect Sync (ADSync) is not installed on %s: not applicable there. Where users are synced by Connect Sync '
                          'on another server, it must be %s or later (it writes onPremisesObjectIdentifier).' % (host, minimum))
    if not version:
        return not_checked(name, part, 'Connect Sync is installed on %s but its version was not reported.' % host)
    return _minimum_version_check(name, part, 'Connect Sync', version, host, minimum,
                                  'Upgrade Microsoft Entra Connect Sync to %s or later.' % minimum,
                                  why=': it does not write onPremisesObjectIdentifier')


# -- summary ------------------------------------------------------------------------------------

def summarize(checks):
    """``{ready, checks, summary, failed, not_checked, advisories}`` from a list of checks.

    ready: at least one check, none "not checked" (informational ones aside), every required check
    passed (a failed recommendation or informational check never blocks it)."""
    checks = list(checks)
    failed = [c['name'] for c in checks if c['ok'] is False and c.get('required', True)]
    advisories = [c['name'] for c in checks if c['ok'] is False and not c.get('required', True)]
    unchecked = [c['name'] for c in checks if c['ok'] is None and c['name'] not in INFORMATIONAL]
    ready = bool(checks) and not failed and not unchecked
    passed = sum(1 for c in checks if c['ok'] is True)
    if not checks:
        summary = 'Not ready: nothing was checked.'
    elif ready:
        summary = 'Ready: all %d checks passed' % passed
        summary += ' (recommendations not met: %s).' % ', '.join(advisories) if advisories else '.'
    else:
        bits = []
        if failed:
            bits.append('%d failed (%s)' % (len(failed), ', '.join(failed)))
        if unchecked:
            bits.append('%d not checked (%s)' % (len(unchecked), ', '.join(unchecked)))
        if advisories:
            bits.append('%d recommendation(s) not met (%s)' % (len(advisories), ', '.join(advisories)))
        summary = 'Not ready: %s; %d passed.' % ('; '.join(bits), passed)
    return {'ready': ready, 'checks': checks, 'summary': summary, 'failed': failed, 'not_checked': unchecked,
            'advisories': advisories}
