# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ACEs of ``Set-AADCloudSyncPermissions`` per permission type, and DACL merge/removal (pure).

Sources: Microsoft Entra docs "Group Managed Service Accounts" (cloud sync, gMSA permission
tables, https://learn.microsoft.com/entra/identity/hybrid/cloud-sync/gmsa-cloud-sync) and
"Microsoft Entra Connect: Configure AD DS Connector Account Permissions" (the ADSyncConfig tables
the cloud sync cmdlet says it is identical to). Each documented row ("Access" / "Applies To")
becomes one ACE:

* "... | Descendant <class> objects": inherit-only, container-inherit object ACE whose inherited
  object type is the class (``(OA;CIIO;<rights>;;<class>;<sid>)``);
* "Create/Delete child object" of a class, this object and all descendants:
  ``(OA;CI;CCDC;<class>;;<sid>)``;
* "... | This object only (Domain root)": an ACE without inheritance, written only when the target
  is the domain root (ADSyncConfig sets those only there).

"Generic Write" is stored as AD maps it (SW|WP|RC, what dsacls calls GW on a directory object),
so what we write compares equal to what we read back.

``UserGroupCreateDelete`` is what group provisioning to AD needs. The gMSA page's table lists only
Generic Write and Create/Delete child of groups and users; the group provisioning prerequisites
say more: "you need to assign Read, Write, Create, and Delete all properties for all descendant
Groups and User objects" (https://learn.microsoft.com/entra/identity/hybrid/cloud-sync/tutorial-group-provisioning,
"General requirements"). Without Read, an OU where Authenticated Users cannot read (inheritance
blocked, hardened) hides the account's own groups from it and its next run collides with what it
wrote (tests/integration/test_least_privilege_writeback.py shows it on the lab). So the set is the
documented table plus:

* Read all properties on descendant group and user objects, in the same ACE as the documented
  Generic write (``(OA;CIIO;RPWPRCSW;;<class>;<sid>)``; one ACE, so that this set shares no ACE with
  ``BasicRead`` or ``HybridExchangePermissions`` and removing one type never takes another's ACE);
* List contents and Read permissions on the target and every container below it
  (``(A;CI;LCRC;;;<sid>)``): without List contents a search below the target returns none of the
  objects the account may read (measured on the lab); Read permissions lets the account read the
  DACL that grants it, so ``prereq_facts`` can verify an agentless account's rights as that account.

An ACE written by ``Set-AADCloudSyncPermissions`` or by an earlier version of this module (Generic
write alone, ``WPRCSW``) is not one of ours: it is left in place (a subset of what we grant), and
``state=absent`` does not remove it.

``effective_missing(dacl, desired, sids)`` evaluates a DACL the way AD's access check does for a
token holding ``sids`` (first ACE in order that names a right decides it, deny or allow), so rights
granted through a group, on a parent and inherited, or by a broader ACE, count.

``apply_present`` / ``apply_absent`` only ever add or remove explicit ACEs equal to ours (same
type, trustee, rights, object type, inherited object type and inheritance flags); every other ACE,
and every inherited ACE, is kept byte for byte and in place.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.errors import CloudSyncError
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.security_descriptor import (
    ACCESS_ALLOWED_ACE_TYPE, ACCESS_ALLOWED_OBJECT_ACE_TYPE, ALLOW_ACE_TYPES, CONTAINER_INHERIT_ACE, DENY_ACE_TYPES, DS_GENERIC_ALL,
    DS_GENERIC_EXECUTE, DS_GENERIC_READ, DS_GENERIC_WRITE, GENERIC_ALL, GENERIC_EXECUTE, GENERIC_READ, GENERIC_WRITE, INHERIT_ONLY_ACE,
    NO_PROPAGATE_INHERIT_ACE, READ_CONTROL, RIGHT_DS_CONTROL_ACCESS, RIGHT_DS_CREATE_CHILD, RIGHT_DS_DELETE_CHILD, RIGHT_DS_LIST_CONTENTS,
    RIGHT_DS_READ_PROPERTY, RIGHT_DS_WRITE_PROPERTY, SE_DACL_PRESENT, Ace, mask_to_names,
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
            # "Read, Write ... all properties": Read all properties plus the documented Generic write
            out.append((False, DESCENDANTS, RIGHT_DS_READ_PROPERTY | DS_GENERIC_WRITE, None, CLASS_GUIDS[cls]))
            out.append((False, THIS_AND_DESCENDANTS, RIGHT_DS_CREATE_CHILD | RIGHT_DS_DELETE_CHILD, CLASS_GUIDS[cls], None))
        out.append((False, THIS_AND_DESCENDANTS, RIGHT_DS_LIST_CONTENTS | READ_CONTROL, None, None))  # see them at all
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
        # an ACE that names no object type is a plain allowed ACE (what AD and the ACL editors write)
        ace_type = ACCESS_ALLOWED_ACE_TYPE if object_type is None and inherited is None else ACCESS_ALLOWED_OBJECT_ACE_TYPE
        ace = Ace(ace_type, flags, mask, principal_sid, object_type, inherited)
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


# -- effective rights ---------------------------------------------------------------------------

# Well-known SIDs every authenticated domain account's token holds besides its own SID and the
# groups of its tokenGroups attribute (which lists only the account's group memberships):
# Everyone, Authenticated Users, This Organization.
WELL_KNOWN_TOKEN_SIDS = ('S-1-1-0', 'S-1-5-11', 'S-1-5-15')


def _reaches(ace, desired):
    """Whether ``ace`` applies where ``desired`` applies (this object and/or the descendants of a
    class) and to the same properties or class: the scope test of an access check."""
    if desired.flags & INHERIT_ONLY_ACE == 0 and ace.flags & INHERIT_ONLY_ACE:
        return False            # desired on this object; ace only for descendants
    if desired.flags & CONTAINER_INHERIT_ACE:
        if not ace.flags & CONTAINER_INHERIT_ACE or ace.flags & NO_PROPAGATE_INHERIT_ACE:
            return False        # desired for all descendants
        if ace.inherited_object_type is not None and ace.inherited_object_type != desired.inherited_object_type:
            return False        # ace reaches only descendants of another class
    if ace.object_type is not None and ace.object_type != desired.object_type:
        return False            # ace is for one property/class, desired for another (or for all)
    return True


def _mapped(mask):
    """An access mask with its generic bits mapped to directory rights (AD keeps them unmapped in some
    inheritable ACEs)."""
    for generic, specific in ((GENERIC_ALL, DS_GENERIC_ALL), (GENERIC_READ, DS_GENERIC_READ), (GENERIC_WRITE, DS_GENERIC_WRITE),
                              (GENERIC_EXECUTE, DS_GENERIC_EXECUTE)):
        if mask & generic:
            mask = (mask & ~generic) | specific
    return mask


def effective_missing(dacl, desired, sids):
    """The rights of ``desired`` (ACEs, e.g. from ``desired_aces``) that a token holding ``sids`` does
    not get from ``dacl`` (an ``Acl``): a list of ``(ace, missing_mask)``, empty when all are held.

    Evaluated like AD's access check: ACEs in order, explicit and inherited alike; for each right,
    the first ACE of one of ``sids`` that reaches the desired scope (``_reaches``) and names the right
    decides it, deny or allow. A right nobody grants is missing."""
    sids = set(str(s).upper() for s in sids)
    aces = list(dacl.aces) if dacl is not None else []
    out = []
    for want in desired:
        pending = want.mask
        granted = 0
        for ace in aces:
            if not pending:
                break
            if ace.is_opaque or str(ace.sid).upper() not in sids or not _reaches(ace, want):
                continue
            bits = _mapped(ace.mask) & pending
            if not bits:
                continue
            if ace.ace_type in ALLOW_ACE_TYPES:
                granted |= bits
            elif ace.ace_type not in DENY_ACE_TYPES:
                continue
            pending &= ~bits
        missing = want.mask & ~granted
        if missing:
            out.append((want, missing))
    return out


RIGHT_WORDS = {
    'RP': 'Read all properties', 'WP': 'Write all properties', 'RC': 'Read permissions', 'SW': 'All validated writes',
    'CC': 'Create child', 'DC': 'Delete child', 'LC': 'List contents', 'LO': 'List object', 'CR': 'Extended right',
    'SD': 'Delete', 'DT': 'Delete subtree', 'WD': 'Modify permissions', 'WO': 'Modify owner',
}


def describe_right(ace, mask=None, class_names=None):
    """Plain words for (part of, ``mask``) an ACE of ours, e.g. ``Create child, Delete child (CC DC) of group
    objects on this object and all descendants`` or ``Read all properties (RP) on descendant user objects``."""
    names = dict((v, k) for k, v in (class_names or CLASS_GUIDS).items())
    codes = mask_to_names(ace.mask if mask is None else mask)
    rights = '%s (%s)' % (', '.join(RIGHT_WORDS.get(c, c) for c in codes), ' '.join(codes))
    what = ''
    if ace.object_type is not None:
        what = ' of %s objects' % names.get(ace.object_type, ace.object_type)
    if ace.flags & INHERIT_ONLY_ACE:
        where = 'descendant %s objects' % names.get(ace.inherited_object_type, ace.inherited_object_type or 'all')
    elif ace.flags & CONTAINER_INHERIT_ACE:
        where = 'this object and all descendants'
    else:
        where = 'this object'
    return '%s%s on %s' % (rights, what, where)
