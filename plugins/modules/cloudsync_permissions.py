#!/usr/bin/python
# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
module: cloudsync_permissions
short_description: Grant or revoke the Active Directory permissions of the Entra Cloud Sync agent account
version_added: 0.1.0
description:
  - Does what C(Set-AADCloudSyncPermissions) does, idempotently and from Linux, over LDAP. It adds to the DACL of each
    target object the access control entries (ACEs) that Microsoft documents for a permission type, granted to the agent's
    account (by default the gMSA C(provAgentgMSA$)); with O(state=absent) it removes exactly those ACEs again.
  - Only explicit ACEs equal to the ones of the permission type (same trustee, rights, object type, inherited object type and
    inheritance flags) are added or removed. Every other ACE, inherited ACEs, the owner, the group and the SACL are never
    changed, and new ACEs are placed so that a DACL in canonical order stays in canonical order.
  - Only the DACL is read and written (LDAP SD flags control). After a write the DACL is read back and checked.
  - Cloud Sync sets these permissions at clean install only; after an agent upgrade they must be applied again, which is
    what this module is for. In check mode it reports the ACEs that are missing (drift) and writes nothing.
  - "V(UserGroupCreateDelete) (what group provisioning to AD needs): Read all properties and Generic Write on descendant
    group objects, Create/Delete child group objects on the target and all descendants, the same two for user objects, and
    List contents and Read permissions on the target and every container below it. This is what Microsoft's group
    provisioning prerequisites ask for (Read, Write, Create and Delete all properties for all descendant groups and user
    objects); the table of the C(Set-AADCloudSyncPermissions) cmdlet lists only Generic Write and Create/Delete child, which
    leaves the account blind to its own groups in an OU where Authenticated Users cannot read. List contents is what lets
    a search below the target return the objects at all; Read permissions lets M(hybrid_identity.cloud_sync.prereq_facts)
    verify the grant as the account itself."
  - An ACE that the cmdlet (or version 0.1 of this module) wrote for V(UserGroupCreateDelete), Generic Write alone, is not
    one of this module's ACEs. It is left in place, and O(state=absent) does not remove it.
  - "V(BasicRead): Read all properties on descendant device, inetOrgPerson, computer, foreignSecurityPrincipal, group, user
    and contact objects, and Replicating Directory Changes on the domain root."
  - "V(PasswordHashSync): Replicating Directory Changes and Replicating Directory Changes All, on the domain root only."
  - "V(PasswordWriteBack): Reset Password, Write lockoutTime and Write pwdLastSet on descendant user objects, and Unexpire
    Password on the domain root."
  - "V(HybridExchangePermissions): Read/Write all properties on descendant user, inetOrgPerson, group and contact objects."
  - "V(ExchangeMailPublicFolderPermissions): Read all properties on descendant publicFolder objects."
  - "V(All): all of the above."
  - ACEs documented as applying to the domain root only are written only when the target is the domain root.
author:
  - hybrid_identity.cloud_sync maintainers (@hybrid-identity)
extends_documentation_fragment:
  - hybrid_identity.cloud_sync.ad_connection
attributes:
  check_mode:
    support: full
    description: Reports per target the ACEs that would be added or removed and the DACL before and after, writes nothing.
  diff_mode:
    support: full
    description: Shows the DACL of each changed target in SDDL, one ACE per line, before and after.
  platform:
    support: full
    platforms: posix
    description:
      - Runs on the controller or any host with the Python libraries; talks LDAP to the domain controllers. Nothing is installed on
        the domain controllers.
requirements:
  - ldap3 >= 2.9.1
  - gssapi (only for O(ad_auth=kerberos))
  - pyspnego (only for O(ad_auth=ntlm))
options:
  principal:
    description:
      - The account the permissions are granted to (or revoked from), as C(sAMAccountName) (optionally C(DOMAIN\name); a gMSA
        or computer account is also found without its trailing C($)), user principal name, distinguished name or SID
        (C(S-1-5-21-...)).
      - It is looked up in the domain; a name that matches no object or several objects is an error.
    type: str
    default: provAgentgMSA$
  targets:
    description:
      - Distinguished names of the objects whose DACL is changed (the domain root, OUs, containers).
      - Defaults to the domain root (the default naming context of the domain controller).
    type: list
    elements: str
  permission_type:
    description:
      - Which permission set of C(Set-AADCloudSyncPermissions) to apply.
    type: str
    default: UserGroupCreateDelete
    choices: [UserGroupCreateDelete, BasicRead, PasswordHashSync, PasswordWriteBack, HybridExchangePermissions,
              ExchangeMailPublicFolderPermissions, All]
  state:
    description:
      - V(present) adds the ACEs that are missing; V(absent) removes the ACEs of the permission type that are there.
    type: str
    default: present
    choices: [present, absent]
  include_adminsdholder:
    description:
      - Also apply the same ACEs to C(CN=AdminSDHolder,CN=System,<domain>).
      - Objects protected by AdminSDHolder (C(adminCount=1)) do not inherit ACEs from their parents; the SDProp process copies
        the DACL of AdminSDHolder onto them instead. Granting there extends the agent's rights to privileged accounts and groups,
        so it is a separate, explicit choice. Microsoft does not document a different ACE set for AdminSDHolder; the ACEs written
        are the ones of the permission type, unchanged. Inherit-only ACEs (those for descendant objects) that SDProp copies onto a
        protected object do not apply to that object itself, so they give no rights on protected objects; a warning says so.
    type: bool
    default: false
notes:
  - The bind account needs the right to change permissions (C(WRITE_DAC)) on every target, as a Domain Admin has.
  - AD applies inheritable ACEs to existing child objects itself; on Windows this happens in the background and can take a
    while in a large directory.
seealso:
  - module: hybrid_identity.cloud_sync.ad_group_writeback
  - module: hybrid_identity.cloud_sync.prereq_facts
  - name: Cloud Sync gMSA permissions
    description: The permission types and their ACEs.
    link: https://learn.microsoft.com/entra/identity/hybrid/cloud-sync/gmsa-cloud-sync
  - name: Provision groups to Active Directory, prerequisites
    description: The rights group provisioning needs (Read, Write, Create and Delete on descendant groups and users).
    link: https://learn.microsoft.com/entra/identity/hybrid/cloud-sync/tutorial-group-provisioning
'''

EXAMPLES = r'''
- name: Let the Cloud Sync agent create, change and delete groups and users in one OU
  hybrid_identity.cloud_sync.cloudsync_permissions:
    domain_controllers: [dc1.corp.example.com]
    ad_user: admin@corp.example.com
    ad_password: "{{ ad_admin_password }}"
    ad_ca_file: /etc/pki/corp-ca.pem
    principal: provAgentgMSA$
    targets:
      - OU=Cloud Groups,DC=corp,DC=example,DC=com
    permission_type: UserGroupCreateDelete

- name: Drift check after an agent upgrade (changes nothing)
  hybrid_identity.cloud_sync.cloudsync_permissions:
    permission_type: UserGroupCreateDelete
  check_mode: true
  diff: true
  register: perms

- name: Revoke what was granted
  hybrid_identity.cloud_sync.cloudsync_permissions:
    principal: S-1-5-21-1004336348-1177238915-682003330-1105
    targets:
      - OU=Cloud Groups,DC=corp,DC=example,DC=com
    state: absent
'''

RETURN = r'''
targets:
  description: One entry per target object, in the order processed.
  returned: always
  type: list
  elements: dict
  contains:
    dn:
      description: The target's distinguished name.
      type: str
      sample: OU=Cloud Groups,DC=corp,DC=example,DC=com
    changed:
      description: Whether the DACL of this target was (or, in check mode, would be) changed.
      type: bool
      sample: true
    aces_added:
      description: The ACEs added (or that would be added), in SDDL.
      type: list
      elements: str
      sample: ["(OA;CI;CCDC;bf967a9c-0de6-11d0-a285-00aa003049e2;;S-1-5-21-1004336348-1177238915-682003330-1105)"]
    aces_removed:
      description: The ACEs removed (or that would be removed), in SDDL.
      type: list
      elements: str
      sample: []
    sddl_before:
      description: The DACL before, in SDDL.
      type: str
      sample: "D:AI(A;;RPWPCRCCDCLCLORCWOWDSDDTSW;;;SY)..."
    sddl_after:
      description: The DACL after (read back from AD after a write; computed in check mode).
      type: str
      sample: "D:AI(A;;RPWPCRCCDCLCLORCWOWDSDDTSW;;;SY)...(OA;CI;CCDC;bf967a9c-0de6-11d0-a285-00aa003049e2;;S-1-5-21-...-1105)..."
principal:
  description: The principal as resolved in AD.
  returned: always
  type: dict
  sample: {name: provAgentgMSA$, dn: "CN=provAgentgMSA,CN=Managed Service Accounts,DC=corp,DC=example,DC=com", sid: S-1-5-21-...-1105}
permission_type:
  description: The permission type applied.
  returned: always
  type: str
  sample: UserGroupCreateDelete
desired_aces:
  description: The ACEs of the permission type for the principal on the domain root, in SDDL.
  returned: always
  type: list
  elements: str
ldap_operations:
  description: LDAP operations made (counts).
  returned: always
  type: dict
  sample: {searches: 6, adds: 0, modifies: 1, modify_dns: 0, deletes: 0}
domain_controller:
  description: The domain controller used.
  returned: always
  type: str
  sample: ldaps://dc1.corp.example.com:636
'''

import re
import traceback

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_client import LDAP3_IMPORT_ERROR, ADClient
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_codecs import (
    dn_key, escape_filter_value, parse_dn, sid_from_bytes, sid_to_filter,
)
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.argspec import ArgumentSpec, dn_list_problem
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.cloudsync_acl import (
    PERMISSION_TYPES, apply_absent, apply_present, desired_aces, missing_aces,
)
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.errors import CloudSyncError
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.security_descriptor import INHERIT_ONLY_ACE, SecurityDescriptor

_SID_RE = re.compile(r'^S-1-\d+(-\d+)*$', re.IGNORECASE)


class PermissionsError(CloudSyncError):
    pass


def argument_spec():
    spec = ArgumentSpec(argument_spec=dict(
        principal=dict(type='str', default='provAgentgMSA$'),
        targets=dict(type='list', elements='str'),
        permission_type=dict(type='str', default='UserGroupCreateDelete', choices=list(PERMISSION_TYPES)),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        include_adminsdholder=dict(type='bool', default=False),
    ))
    return spec.with_ad_connection().with_value_checks(targets=dn_list_problem)


def _sid_of(entry):
    for key, vals in entry['attributes'].items():
        if key.lower() == 'objectsid' and vals:
            value = vals[0]
            return sid_from_bytes(value) if isinstance(value, (bytes, bytearray)) else str(value)
    return None


def resolve_principal(client, name, domain_dn, config_dn):
    """The principal's {'name', 'dn', 'sid'}; PermissionsError when it matches no object or several."""
    text = (name or '').strip()
    if not text:
        raise PermissionsError('principal is empty')
    bases = [domain_dn]
    if _SID_RE.match(text):
        ldap_filter = '(objectSid=%s)' % sid_to_filter(text.upper())
        bases.append(config_dn)  # well-known principals (CN=WellKnown Security Principals)
        what = 'SID'
    elif '=' in text and _looks_like_dn(text):
        entry = client.get(text, ['objectSid'], binary_attributes=['objectSid'])
        if entry is None:
            raise PermissionsError('principal %s: no such object' % text, principal=text)
        sid = _sid_of(entry)
        if not sid:
            raise PermissionsError('principal %s has no objectSid: it is not an account or group' % text, principal=text)
        return {'name': text, 'dn': entry['dn'], 'sid': sid}
    elif '@' in text:
        ldap_filter = '(userPrincipalName=%s)' % escape_filter_value(text)
        what = 'user principal name'
    else:
        sam = text.split('\\', 1)[1] if '\\' in text else text
        ldap_filter = '(sAMAccountName=%s)' % escape_filter_value(sam)
        what = 'sAMAccountName'
        if not sam.endswith('$'):
            # a gMSA or computer account given without its trailing $: tried only when the name itself matches nothing
            bases = [(domain_dn, ldap_filter), (domain_dn, '(sAMAccountName=%s$)' % escape_filter_value(sam))]
    found = []
    for base in bases:
        base, flt = base if isinstance(base, tuple) else (base, ldap_filter)
        if not base:
            continue
        for entry in client.search(base, flt, ['objectSid'], scope='subtree', binary_attributes=['objectSid']):
            sid = _sid_of(entry)
            if sid:
                found.append({'name': text, 'dn': entry['dn'], 'sid': sid})
        if found:
            break
    if not found:
        raise PermissionsError('principal %s: no account or group with this %s in %s' % (text, what, domain_dn), principal=text)
    if len(found) > 1:
        raise PermissionsError('principal %s is ambiguous: %d objects match (%s); give its DN or SID'
                               % (text, len(found), '; '.join(f['dn'] for f in found)), principal=text,
                               matches=[f['dn'] for f in found])
    return found[0]


def _looks_like_dn(text):
    try:
        return bool(parse_dn(text))
    except ValueError:
        return False


def sddl_lines(sddl):
    """An SDDL string with one ACE per line, for diffs."""
    return sddl.replace('(', '\n(').lstrip('\n') + '\n'


def process_target(client, dn, domain_dn, principal_sid, permission_type, state, check_mode, domain_sid):
    before_bytes = client.read_security_descriptor(dn)
    before = SecurityDescriptor.from_bytes(before_bytes)
    desired = desired_aces(permission_type, principal_sid, domain_root=dn_key(dn) == dn_key(domain_dn))
    if state == 'present':
        after, added = apply_present(before, desired)
        removed = []
    else:
        after, removed = apply_absent(before, desired)
        added = []
    changed = bool(added or removed)
    result = {
        'dn': dn, 'changed': changed,
        'aces_added': [a.to_sddl(domain_sid) for a in added],
        'aces_removed': [a.to_sddl(domain_sid) for a in removed],
        'sddl_before': before.to_sddl(domain_sid),
        'sddl_after': after.to_sddl(domain_sid),
    }
    if changed and not check_mode:
        client.write_security_descriptor(dn, after.to_bytes())
        stored = SecurityDescriptor.from_bytes(client.read_security_descriptor(dn))
        result['sddl_after'] = stored.to_sddl(domain_sid)
        if state == 'present':
            still_missing = missing_aces(stored.dacl, desired)
            if still_missing:
                raise PermissionsError('%s: after writing its DACL, AD does not hold %s' % (
                    dn, ', '.join(a.to_sddl(domain_sid) for a in still_missing)), dn=dn, sddl_after=result['sddl_after'])
        else:
            _unused, left = apply_absent(stored, desired)
            if left:
                raise PermissionsError('%s: after writing its DACL, AD still holds %s' % (
                    dn, ', '.join(a.to_sddl(domain_sid) for a in left)), dn=dn, sddl_after=result['sddl_after'])
    return result


def run(module):
    params = module.params
    client = ADClient(params)
    try:
        client.connect()
        root = client.root_dse()
        domain_dn = root.get('default_naming_context')
        if not domain_dn:
            raise PermissionsError('The domain controller %s did not tell its default naming context' % client.server)
        domain = client.get(domain_dn, ['objectSid'], binary_attributes=['objectSid'])
        domain_sid = _sid_of(domain) if domain else None
        principal = resolve_principal(client, params['principal'], domain_dn, root.get('configuration_naming_context'))
        targets = list(params['targets'] or [domain_dn])
        if params['include_adminsdholder']:
            targets.append('CN=AdminSDHolder,CN=System,%s' % domain_dn)
            inherit_only = [a for a in desired_aces(params['permission_type'], principal['sid'], domain_root=False)
                            if a.flags & INHERIT_ONLY_ACE]
            if inherit_only:
                module.warn('On CN=AdminSDHolder, %d of the ACEs of %s are inherit-only (for descendant objects): SDProp copies '
                            'them onto protected objects, where they do not apply to the protected object itself.'
                            % (len(inherit_only), params['permission_type']))
        seen = set()
        unique = []
        for dn in targets:
            try:
                key = dn_key(dn)
            except ValueError as exc:
                raise PermissionsError('target %r is not a valid DN: %s' % (dn, exc), dn=dn)
            if key not in seen:
                seen.add(key)
                unique.append(dn)
        # Every target must accept the permission type before anything is written anywhere.
        for dn in unique:
            try:
                desired_aces(params['permission_type'], principal['sid'], domain_root=dn_key(dn) == dn_key(domain_dn))
            except CloudSyncError as err:
                raise PermissionsError('%s: %s' % (dn, err.msg), details=err.details, dn=dn)
        results = []
        for dn in unique:
            try:
                results.append(process_target(client, dn, domain_dn, principal['sid'], params['permission_type'], params['state'],
                                              module.check_mode, domain_sid))
            except CloudSyncError as err:
                # say what was already done on the targets before this one
                err.details['targets'] = results
                raise
        out = dict(
            changed=any(r['changed'] for r in results),
            targets=results,
            principal=principal,
            permission_type=params['permission_type'],
            desired_aces=[a.to_sddl(domain_sid) for a in desired_aces(params['permission_type'], principal['sid'])],
            ldap_operations=dict(client.stats),
            domain_controller=client.server,
        )
        if module._diff:
            out['diff'] = [dict(before_header=r['dn'], after_header=r['dn'], before=sddl_lines(r['sddl_before']),
                                after=sddl_lines(r['sddl_after'])) for r in results if r['changed']]
        return out
    finally:
        client.close()


def main():
    module = argument_spec().create_module(supports_check_mode=True)
    if LDAP3_IMPORT_ERROR is not None:
        module.fail_json(msg=missing_required_lib('ldap3'), exception=LDAP3_IMPORT_ERROR)
    try:
        result = run(module)
    except CloudSyncError as err:
        module.fail_json(**err.to_fail_kwargs())
    except ValueError as err:
        module.fail_json(msg=str(err))
    except Exception as err:  # pylint: disable=broad-except
        # Never a bare traceback for the user (the other modules do the same); keep it for -vvv.
        module.fail_json(msg='cloudsync_permissions failed unexpectedly: %s: %s' % (type(err).__name__, err),
                         exception=traceback.format_exc())
    module.exit_json(**result)


if __name__ == '__main__':
    main()
