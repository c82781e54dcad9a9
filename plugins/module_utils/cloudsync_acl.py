# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ACEs of ``Set-AADCloudSyncPermissions`` per permission type, and DACL merge/removal (pure).

Sources: Microsoft Entra docs "Group Managed Service Accounts" (cloud sync, gMSA permission
tables) and "Microsoft Entra Connect: Configure AD DS Connector Account Permissions" (the
ADSyncConfig tables the cloud sync cmdlet says it is identical to), plus the spec of this project
for ``UserGroupCreateDelete``. Each documented row ("Access" / "Applies To") becomes one ACE:

* "... | Descendant <class> objects": inherit-only, container-inherit object ACE whose inherited
  object type is the class (``(OA;CIIO;<rights>;;<class>;<sid>)``);
* "Create/Delete child object" of a class, this object and all descendants:
  ``(OA;CI;CCDC;<class>;;<sid>)``;
* "... | This object only (Domain root)": an ACE without inheritance, written only when the target
  is the domain root (ADSyncConfig sets those only there).

"Generic Write" is stored as AD maps it (SW|WP|RC, what dsacls calls GW on a directory object),
so what we write compares equal to what we read back.

``apply_present`` / ``apply_absent`` only ever add or remove explicit ACEs equal to ours (same
type, trustee, rights, object type, inherited object type and inheritance flags); every other ACE,
and every inherited ACE, is kept byte for byte and in place.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.errors import CloudSyncError
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.security_descriptor import (
    ACCESS_ALLOWED_OBJECT_ACE_TYPE, CONTAINER_INHERIT_ACE, DS_GENERIC_WRITE, INHERIT_ONLY_ACE, RIGHT_DS_CONTROL_ACCESS,
    RIGHT_DS_CREATE_CHILD, RIGHT_DS_DELETE_CHILD, RIGHT_DS_READ_PROPERTY, RIGHT_DS_WRITE_PROPERTY, SE_DACL_PRESENT, Ace,
)
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_codecs import sid_to_bytes

# schemaIDGUID of the classes involved (fixed by the AD schema definitions; checked against the
# lab's schema, publicFolder is Exchange's class and only exists where Exchange extended the schema).
CLASS_GUIDS = {
    'user': 'bf967aba-0de6-11d0-a285-00aa003049e2',
    'group': 'bf967a9c-0de6-11d0-a285-00aa003049e2',
    'computer': 'bf967a86-0de6-11d0-a285-00aa003049e2',
    'contact': '5cb41ed0-0e4c-11d0-a286-00aa003049e2',
    'inetOrgPerson': '4828cc14-1437-45bc-9b07-ad6f015e5f28',
    'foreignSecurityPrincipal': '89e31c12-8530-11d0-afda-00c04fd930c9',
    'device': 'bf967a8e-0de6-11d0-a285-00aa003049e2',
    'publicFolder': 'f0f8ffac-1191-11d0-a060-00aa006c33ed',
}
ATTRIBUTE_GUIDS = {
    'lockoutTime': '28630ebf-41d5-11d1-a9c1-0000f80367c1',
    'pwdLastSet': 'bf967a0a-0de6-11d0-a285-00aa003049e2',
}
EXTENDED_RIGHTS = {
    'DS-Replication-Get-Changes': '1131f6aa-9c07-11d1-f79f-00c04fc2dcd2',
    'DS-Replication-Get-Changes-All': '1131f6ad-9c07-11d1-f79f-00c04fc2dcd2',
    'User-Force-Change-Password': '00299570-246d-11d0-a768-00aa006e0529',
    'Unexpire-Password': 'ccc2dc7d-a6ad-4a7a-8846-c04e3cc53501',
}

PERMISSION_TYPES = (
    'UserGroupCreateDelete', 'BasicRead', 'PasswordHashSync', 'PasswordWriteBack', 'HybridExchangePermissions',
    'ExchangeMailPublicFolderPermissions', 'All',
)

DESCENDANTS = CONTAINER_INHERIT_ACE | INHERIT_ONLY_ACE      # "Descendant <class> objects"
THIS_AND_DESCENDANTS = CONTAINER_INHERIT_ACE                # "This object and all descendant objects"
THIS_OBJECT_ONLY = 0


class CloudSyncPermissionError(CloudSyncError):
    """A permission type cannot be applied (unknown, not implemented, or not for this target)."""


# A rule: (applies to domain root only, flags, rights, object type, inherited object type)
def _rules(permission_type):
    descendant_read = [(False, DESCENDANTS, RIGHT_DS_READ_PROPERTY, None, CLASS_GUIDS[c])
                       for c in ('device', 'inetOrgPerson', 'computer', 'foreignSecurityPrincipal', 'group', 'user', 'contact')]
    if permission_type == 'UserGroupCreateDelete':
        out = []
        for cls in ('group', 'user'):
            out.append((False, DESCENDANTS, DS_GENERIC_WRITE, None, CLASS_GUIDS[cls]))
            out.append((False, THIS_AND_DESCENDANTS, RIGHT_DS_CREATE_CHILD | RIGHT_DS_DELETE_CHILD, CLASS_GUIDS[cls], None))
        return out
    if permission_type == 'BasicRead':
        return descendant_read + [
            (True, THIS_OBJECT_ONLY, RIGHT_DS_CONTROL_ACCESS, EXTENDED_RIGHTS['DS-Replication-Get-Changes'], None)]
    if permission_type == 'PasswordHashSync':
        return [(True, THIS_OBJECT_ONLY, RIGHT_DS_CONTROL_ACCESS, EXTENDED_RIGHTS[name], None)
                for name in ('DS-Replication-Get-Changes', 'DS-Replication-Get-Changes-All')]
    if permission_type == 'PasswordWriteBack':
        user = CLASS_GUIDS['user']
        return [
            (False, DESCENDANTS, RIGHT_DS_CONTROL_ACCESS, EXTENDED_RIGHTS['User-Force-Change-Password'], user),
            (False, DESCENDANTS, RIGHT_DS_WRITE_PROPERTY, ATTRIBUTE_GUIDS['lockoutTime'], user),
            (False, DESCENDANTS, RIGHT_DS_WRITE_PROPERTY, ATTRIBUTE_GUIDS['pwdLastSet'], user),
            (True, THIS_OBJECT_ONLY, RIGHT_DS_CONTROL_ACCESS, EXTENDED_RIGHTS['Unexpire-Password'], None),
        ]
    if permission_type == 'HybridExchangePermissions':
        return [(False, DESCENDANTS, RIGHT_DS_READ_PROPERTY | RIGHT_DS_WRITE_PROPERTY, None, CLASS_GUIDS[c])
                for c in ('user', 'inetOrgPerson', 'group', 'contact')]
    if permission_type == 'ExchangeMailPublicFolderPermissions':
        return [(False, DESCENDANTS, RIGHT_DS_READ_PROPERTY, None, CLASS_GUIDS['publicFolder'])]
    if permission_type == 'All':
        out = []
        for name in PERMISSION_TYPES:
            if name != 'All':
                out.extend(_rules(name))
        return out
    raise CloudSyncPermissionError('Unknown permission type %r (expected one of %s)' % (permission_type, ', '.join(PERMISSION_TYPES)),
                                   permission_type=permission_type)


def desired_aces(permission_type, principal_sid, domain_root=True):
    """The ACEs ``Set-AADCloudSyncPermissions -PermissionType <permission_type>`` grants to
    ``principal_sid`` on one target. ``domain_root``: the target is the domain's root object
    (ACEs documented as "This object only (Domain root)" are included only then).

    Duplicates (``All`` repeats some rows) appear once. Raises ``CloudSyncPermissionError`` for an unknown
    type, or when nothing of the type applies to a target that is not the domain root.
    """
    sid_to_bytes(principal_sid)  # ValueError for a malformed SID
    out = []
    seen = set()
    skipped_root_only = False
    for root_only, flags, mask, object_type, inherited in _rules(permission_type):
        if root_only and not domain_root:
            skipped_root_only = True
            continue
        ace = Ace(ACCESS_ALLOWED_OBJECT_ACE_TYPE, flags, mask, principal_sid, object_type, inherited)
        if ace.key() in seen:
            continue
        seen.add(ace.key())
        out.append(ace)
    if not out and skipped_root_only:
        raise CloudSyncPermissionError('Permission type %s is granted only on the domain root object, not on an OU or other object'
                                       % permission_type, permission_type=permission_type)
    return out


def _require_dacl(sd):
    """Refuse a descriptor without a DACL. Writing one back would replace whatever DACL the object has
    with only our ACEs (when the DACL was simply not read), or turn a NULL DACL (everyone may do
    everything) into a restrictive one: neither is a change this module may make."""
    if sd.dacl is None:
        if sd.control & SE_DACL_PRESENT:
            raise CloudSyncPermissionError('The security descriptor has a NULL DACL (no access control at all); refusing to change it')
        raise CloudSyncPermissionError('The security descriptor holds no DACL (was it read without the DACL part?); refusing to '
                                       'change it')
    return sd.dacl


def missing_aces(dacl, desired):
    """The ACEs of ``desired`` that no explicit ACE of ``dacl`` (an ``Acl`` or None) equals;
    inherited ACEs never count. Duplicates in ``desired`` are reported once."""
    have = set(a.key() for a in (dacl.aces if dacl is not None else []) if not a.is_inherited)
    out = []
    for ace in desired:
        if ace.key() not in have:
            have.add(ace.key())
            out.append(ace)
    return out


def _insert_position(aces, ace):
    """Where a new explicit ACE goes so that a canonical DACL stays canonical: a deny ACE after the
    explicit deny ACEs, anything else after the explicit ACEs (before the first inherited one)."""
    for i, existing in enumerate(aces):
        if existing.is_inherited:
            return i
        if ace.is_deny and not existing.is_deny:
            return i
    return len(aces)


def apply_present(sd, desired):
    """Add the missing ACEs of ``desired`` to a copy of ``sd``; returns (new_sd, added).

    Other ACEs are not touched; nothing is reordered. When nothing is missing, ``new_sd`` equals
    ``sd`` byte for byte. A descriptor without a DACL raises ``CloudSyncPermissionError``."""
    new_sd = sd.copy()
    dacl = _require_dacl(new_sd)
    added = missing_aces(dacl, desired)
    if not added:
        return new_sd, []
    aces = list(dacl.aces)
    for ace in added:
        aces.insert(_insert_position(aces, ace), ace.copy())
    dacl.aces = aces
    return new_sd, added


def apply_absent(sd, desired):
    """Remove from a copy of ``sd`` every explicit ACE equal to one of ``desired``; returns
    (new_sd, removed). Inherited ACEs and every other ACE stay as they are."""
    new_sd = sd.copy()
    _require_dacl(new_sd)
    keys = set(a.key() for a in desired)
    kept, removed = [], []
    for ace in new_sd.dacl.aces:
        if not ace.is_inherited and ace.key() in keys:
            removed.append(ace)
        else:
            kept.append(ace)
    new_sd.dacl.aces = kept
    return new_sd, removed
