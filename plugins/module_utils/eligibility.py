# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which Entra groups and which of their members qualify for writeback (pure).

Groups (``group_ineligibility``): only cloud security groups are written back; reason codes:

* ``not_security_enabled``: ``security_enabled`` is not true;
* ``mail_enabled``: mail-enabled groups (distribution lists, mail-enabled security groups);
* ``microsoft_365``: ``'Unified'`` in ``group_types``;
* ``synced_from_ad``: ``on_premises_sync_enabled`` is true (the group is mastered in AD);
* ``source_of_authority_on_premises``: the group came from AD (it carries an on-premises SID,
  ``on_premises_security_identifier``), is not synced now, and its source of authority is not
  (known to be) in the cloud: ``cloud_managed`` is not true. A rolled-back conversion looks like
  this until the sync client takes the group over again, and so does a converted group whose flag
  the application may not read; the AD group is its master, a new copy would duplicate it.
* ``too_many_members``: more direct members than ``max_members`` (default 50,000; a child
  group counts as one).

A group whose source of authority was converted to the cloud (``cloud_managed`` true, from
``onPremisesSyncBehavior/isCloudManaged``) is eligible although it came from AD: Cloud Sync writes
it back onto its original AD group ("Group SOA",
https://learn.microsoft.com/en-us/entra/identity/hybrid/concept-group-source-of-authority-how-it-works).

Members (``classify_member``): synced users (any on-premises anchor) and cloud groups that are
themselves in scope. Reason codes: ``cloud_only_user``, ``group_not_in_scope``,
``unsupported_type_<type>`` (device, service_principal, org_contact, or any other type).

``REASON_TEXT`` maps every reason code (including the planner's per-member codes such as
``unresolved``) to a sentence for reports.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

MAX_MEMBERS = 50000

REASON_TEXT = {
    'not_security_enabled': 'The group is not a security group (securityEnabled is false); only security groups are written back.',
    'mail_enabled': 'The group is mail-enabled; only cloud security groups that are not mail-enabled are written back.',
    'microsoft_365': "The group is a Microsoft 365 group ('Unified' in groupTypes); Microsoft 365 groups are not written back.",
    'synced_from_ad': 'The group is synchronised from on-premises AD (onPremisesSyncEnabled is true); it is mastered in AD.',
    'source_of_authority_on_premises': 'The group came from AD (it has an on-premises SID) and its source of authority is not '
                                       'in the cloud (onPremisesSyncBehavior/isCloudManaged is not true, or could not be read: '
                                       'the application needs Group-OnPremisesSyncBehavior.ReadWrite.All); the AD group is its '
                                       'master.',
    'writeback_not_enabled': 'The group is not enabled for writeback (writebackConfiguration/isEnabled is not true) and only '
                             'groups enabled for writeback were asked for.',
    'too_many_members': 'The group has more direct members than the limit (each child group counts as one); it is not written.',
    'cloud_only_user': 'The user is cloud-only (no on-premises anchor), so it has no AD account to add.',
    'group_not_in_scope': 'The nested group is not in the writeback scope, so it has no written-back AD group to add.',
    'unsupported_type_device': 'Devices are not written back as group members.',
    'unsupported_type_service_principal': 'Service principals are not written back as group members.',
    'unsupported_type_org_contact': 'Organisational contacts are not written back as group members.',
    'unsupported_type': 'Objects of this type are not written back as group members.',
    'unresolved': 'The synced user was not found in the AD forest (Global Catalog) by objectGUID, objectSid or immutable id.',
    'group_not_written': 'The nested group is in scope but its AD group is not written in this run (skipped or in error).',
    'missing_id': 'The object has no id.',
    'removed_member_not_found': 'The member was removed in Entra, but its AD account was not found now (deleted there, or no '
                                'longer matched): if the AD group still lists it, the next full comparison removes it.',
    'self_member': 'The group contains itself; AD does not allow that membership.',
}

USER_ANCHOR_KEYS = ('on_premises_object_identifier', 'on_premises_security_identifier', 'on_premises_immutable_id')


def reason_text(code):
    """Human-readable text for a reason code (unknown ``unsupported_type_*`` codes included)."""
    if code in REASON_TEXT:
        return REASON_TEXT[code]
    if code and code.startswith('unsupported_type_'):
        return 'Objects of type %s are not written back as group members.' % code[len('unsupported_type_'):]
    return code


def group_member_count(group):
    """Direct member count: ``member_count`` when present, else ``len(members)`` (a child group
    is one member); the larger of the two when both are known. None when unknown."""
    counts = []
    if group.get('member_count') is not None:
        counts.append(int(group['member_count']))
    if group.get('members') is not None:
        counts.append(len(group['members']))
    return max(counts) if counts else None


def group_ineligibility(group, max_members=MAX_MEMBERS):
    """Reason codes why ``group`` (Entra group dict) must not be written back; ``[]`` = eligible.
    Codes come in a fixed order (the order of the module docstring)."""
    reasons = []
    if group.get('security_enabled') is not True:
        reasons.append('not_security_enabled')
    if group.get('mail_enabled'):
        reasons.append('mail_enabled')
    if 'unified' in [str(t).lower() for t in (group.get('group_types') or [])]:
        reasons.append('microsoft_365')
    if group.get('cloud_managed') is not True:
        if group.get('on_premises_sync_enabled') is True:
            reasons.append('synced_from_ad')
        elif group.get('on_premises_security_identifier'):
            reasons.append('source_of_authority_on_premises')
    count = group_member_count(group)
    if max_members is not None and count is not None and count > max_members:
        reasons.append('too_many_members')
    return reasons


def is_synced_user(member):
    """True when the user has an on-premises anchor (or says it is synced)."""
    if member.get('on_premises_sync_enabled') is True:
        return True
    return any(member.get(k) for k in USER_ANCHOR_KEYS)


def classify_member(member, groups_in_scope_ids):
    """``(supported, reason)``: ``(True, None)`` for synced users and in-scope groups, else
    ``(False, reason_code)``. ``groups_in_scope_ids`` is a set (or any container) of group ids;
    ids are compared case-insensitively."""
    if not member.get('id'):
        return False, 'missing_id'
    mtype = (member.get('type') or '').lower()
    if mtype == 'user':
        if is_synced_user(member):
            return True, None
        return False, 'cloud_only_user'
    if mtype == 'group':
        mid = str(member['id']).lower()
        if mid in groups_in_scope_ids or member['id'] in groups_in_scope_ids:
            return True, None
        return False, 'group_not_in_scope'
    return False, 'unsupported_type_%s' % (mtype or 'unknown')
