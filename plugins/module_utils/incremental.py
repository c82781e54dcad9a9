# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Which groups a run must examine: the ones that changed on either side since the last run.

Entra says what changed through Graph delta (``entra_reader.read_groups_incremental`` keeps the
state); AD says it through the uSNChanged high-water mark (``ad_changes``). A run that may trust
both examines only the union of the two, so its cost grows with the changes, not with the
directory; a run that cannot trust one of them examines everything and says why. Pure functions:
plain data in, plain data out.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type


def entra_changed_ids(old_state, new_state):
    """Entra group ids whose desired state differs between two delta states of
    ``entra_reader.read_groups_incremental``: added, removed (deleted or out of scope), properties
    or member list changed, or a member's own identifiers changed. None when the new state comes
    from a full read (everything must be examined)."""
    if not isinstance(old_state, dict) or not isinstance(new_state, dict):
        return None
    if (new_state.get('last_run') or {}).get('mode') != 'delta':
        return None
    old_groups = old_state.get('groups') or {}
    new_groups = new_state.get('groups') or {}
    changed = set(old_groups) ^ set(new_groups)
    old_objects = old_state.get('objects') or {}
    new_objects = new_state.get('objects') or {}
    moved_objects = set(k for k, v in new_objects.items() if old_objects.get(k, v) != v)
    for gid, entry in new_groups.items():
        if gid in changed:
            continue
        if entry != old_groups.get(gid):
            changed.add(gid)
        elif moved_objects and moved_objects.intersection(entry.get('member_ids') or ()):
            changed.add(gid)
    return changed


def child_group_ids(groups, ids):
    """Ids of the groups that are direct members of the groups ``ids`` (so their AD copies, whose
    DNs the parents' member lists need, are read too)."""
    out = set()
    for group in groups:
        if group.get('id') not in ids:
            continue
        for member in group.get('members') or ():
            if member.get('type') == 'group' and member.get('id'):
                out.add(member['id'])
    return out - set(ids)


def examine(entra_changed, ad_changed, ad_reason):
    """``(ids, reason)``: the group ids to examine, or ``(None, reason)`` for all of them (the AD
    side's reason first: the Entra side's is in its own state)."""
    if ad_reason:
        return None, ad_reason
    if entra_changed is None:
        return None, 'entra_full_read'
    return set(entra_changed) | set(ad_changed or ()), None
