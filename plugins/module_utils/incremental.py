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
    or member list changed, a member's own identifiers changed, or a member group entered or left
    the scope (its link is written or removed). None when the new state comes from a full read
    (everything must be examined)."""
    if not isinstance(old_state, dict) or not isinstance(new_state, dict):
        return None
    if (new_state.get('last_run') or {}).get('mode') != 'delta':
        return None
    old_groups = old_state.get('groups') or {}
    new_groups = new_state.get('groups') or {}
    changed = set(old_groups) ^ set(new_groups)
    moved_objects = _changed_objects(old_state, new_state)
    # A group entering or leaving the scope is linked into, or out of, the groups listing it.
    entered_or_left = set(changed)
    for gid, entry in new_groups.items():
        if gid in changed:
            continue
        if entry != old_groups.get(gid):
            changed.add(gid)
        elif moved_objects and moved_objects.intersection(entry.get('member_ids') or ()):
            changed.add(gid)
        elif entered_or_left and entered_or_left.intersection(entry.get('member_ids') or ()):
            changed.add(gid)
    return changed


def _changed_objects(old_state, new_state):
    old_objects = old_state.get('objects') or {}
    new_objects = new_state.get('objects') or {}
    return set(k for k, v in new_objects.items() if old_objects.get(k, v) != v)


def member_deltas(old_state, new_state, ids, ad_changed, max_members):
    """``{group id: {"added": [member id], "removed": [member id]}}`` for the groups of ``ids`` whose
    membership can be planned from what changed in Entra alone, without reading the AD copy's
    members: the AD copy was not changed since the last run by anyone else (not in ``ad_changed``),
    so its members are the ones the last run derived from the old member list, and the old list is
    known (in both states). A group whose member list did not change gets an empty delta (nothing
    to do for its members). Left out (their members are read and compared in full): a group new to
    the scope or over ``max_members`` in either state, a group whose added or removed members
    include a group or an object of unknown type (a nested group's DN comes from its own AD copy),
    a group listing a group that entered or left the scope, and a group listing or removing a
    member whose identifiers changed (it may resolve differently now). Pure."""
    if not isinstance(old_state, dict) or not isinstance(new_state, dict):
        return {}
    old_groups = old_state.get('groups') or {}
    new_groups = new_state.get('groups') or {}
    old_objects = old_state.get('objects') or {}
    new_objects = new_state.get('objects') or {}
    changed_objects = _changed_objects(old_state, new_state)
    entered_or_left = set(old_groups) ^ set(new_groups)
    out = {}
    for gid in sorted(set(ids or ()) - set(ad_changed or ())):
        old, new = old_groups.get(gid), new_groups.get(gid)
        if not isinstance(old, dict) or not isinstance(new, dict):
            continue
        old_ids, new_ids = old.get('member_ids') or [], new.get('member_ids') or []
        if max_members is not None and max(len(old_ids), len(new_ids)) > max_members:
            continue
        old_set, new_set = set(old_ids), set(new_ids)
        added = [m for m in new_ids if m not in old_set]
        removed = [m for m in old_ids if m not in new_set]
        if entered_or_left.intersection(new_set):
            continue   # a member group written now, or no longer: its link is decided in full
        if changed_objects and (changed_objects.intersection(new_set) or changed_objects.intersection(removed)):
            continue
        types = [(new_objects.get(m) or {}).get('type') for m in added]
        types += [(old_objects.get(m) or {}).get('type') for m in removed]
        if any(t in (None, 'group', 'unknown') for t in types):
            continue
        out[gid] = {'added': added, 'removed': removed}
    return out


def state_members(state, ids):
    """Member dicts of ``ids`` as ``state`` (a delta state) knows them (an id it does not know is
    ``{"id", "type": "unknown"}``)."""
    objects = (state or {}).get('objects') or {}
    return [dict(objects.get(mid) or {'type': 'unknown'}, id=mid) for mid in ids]


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


# Reasons a group in scope was not written that may go away without a change to the group in Entra
# or to its AD copy (another object held its DN, a Writeback v2 group was in the way, ...): such a
# group is examined again by every incremental run until it is written.
RETRIED_SKIPS = ('writeback_v2_group_exists', 'admin_count', 'soa_original_not_found', 'soa_not_universal',
                 'deletion_threshold_exceeded')


def unsettled_ids(reports, previous, examined):
    """Entra group ids that a run did not write as planned, for the next run to examine again and
    compare in full: ``error`` reports (a DN or sAMAccountName collision, duplicates, an LDAP
    error) and ``skipped`` ones for a reason of ``RETRIED_SKIPS`` (not ineligibility: that changes
    only with the group in Entra). ``previous``: the last run's (kept for groups not ``examined``
    now; None after a full examination). Pure."""
    out = set(previous or ()) - set(examined or ()) if previous is not None and examined is not None else set()
    for rep in reports:
        if rep.get('id') and (rep.get('action') == 'error' or (rep.get('action') == 'skipped' and rep.get('reason') in RETRIED_SKIPS)):
            out.add(rep['id'])
    return out


def examine(entra_changed, ad_changed, ad_reason):
    """``(ids, reason)``: the group ids to examine, or ``(None, reason)`` for all of them (the AD
    side's reason first: the Entra side's is in its own state)."""
    if ad_reason:
        return None, ad_reason
    if entra_changed is None:
        return None, 'entra_full_read'
    return set(entra_changed) | set(ad_changed or ()), None
