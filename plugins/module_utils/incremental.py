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

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.delta_state import MEMBERS_KEY
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.eligibility import USER_ANCHOR_KEYS, group_ineligibility


def entra_changed_ids(old_state, new_state, max_members=None):
    """Entra group ids whose desired state differs between two delta states of
    ``entra_reader.read_groups_incremental``: added, removed (deleted or out of scope), properties
    or member list changed, a member's own identifiers changed, or a member group entered or left
    the scope or became eligible or ineligible (its link is written or removed). None when the new state comes from a full read
    (everything must be examined)."""
    if not isinstance(old_state, dict) or not isinstance(new_state, dict):
        return None
    if (new_state.get('last_run') or {}).get('mode') != 'delta':
        return None
    old_groups = old_state.get('groups') or {}
    new_groups = new_state.get('groups') or {}
    changed = set(old_groups) ^ set(new_groups)
    moved_objects = _changed_objects(old_state, new_state)
    # A group entering or leaving the scope, or becoming eligible or ineligible, is linked into, or
    # out of, the groups listing it.
    entered_or_left = set(changed) | eligibility_changed(old_state, new_state, max_members)
    for gid, entry in new_groups.items():
        if gid in changed:
            continue
        if entry != old_groups.get(gid):
            changed.add(gid)
        elif moved_objects and moved_objects.intersection(_member_ids(entry)):
            changed.add(gid)
        elif entered_or_left and entered_or_left.intersection(_member_ids(entry)):
            changed.add(gid)
    return changed


def _member_ids(entry):
    """A delta state group's member ids. A state whose member lists were not loaded
    (``delta_state.hydrate``) has none to give: asking is an error, never an empty list."""
    if 'member_ids' not in entry and 'member_count' in entry:
        raise ValueError('incremental: the member lists of the delta state are not loaded (delta_state.hydrate)')
    return entry.get('member_ids') or ()


def _objects(state):
    """A delta state's ``objects``. A loaded state whose member lists were not read (it names its
    members file, ``delta_state.MEMBERS_KEY``, and has no ``objects``) has none to give: asking is
    an error, never an empty dict (every member would look unknown)."""
    state = state or {}
    if 'objects' not in state and state.get(MEMBERS_KEY) is not None:
        raise ValueError('incremental: the member lists of the delta state are not loaded (delta_state.hydrate)')
    return state.get('objects') or {}


def _changed_objects(old_state, new_state):
    shared = old_state.get(MEMBERS_KEY)
    if shared is not None and shared is new_state.get(MEMBERS_KEY):
        return set()   # one members file (Entra reported no change): the same objects, read or not
    old_objects = _objects(old_state)
    new_objects = _objects(new_state)
    return set(k for k, v in new_objects.items() if old_objects.get(k, v) != v)


def _ineligible(entry, max_members):
    """Whether a delta state's group entry is not written (see eligibility.group_ineligibility)."""
    return bool(group_ineligibility(dict(entry, member_count=len(_member_ids(entry))), max_members))


def eligibility_changed(old_state, new_state, max_members):
    """Group ids in both states whose entry changed and that became eligible or ineligible (written
    now and not before, or the reverse). Pure."""
    old_groups = (old_state or {}).get('groups') or {}
    new_groups = (new_state or {}).get('groups') or {}
    out = set()
    for gid, entry in new_groups.items():
        old = old_groups.get(gid)
        if isinstance(old, dict) and isinstance(entry, dict) and old != entry and \
                _ineligible(old, max_members) != _ineligible(entry, max_members):
            out.add(gid)
    return out


def parents_of(state, ids):
    """Ids of the groups of a delta state that list any of ``ids`` as a member. Pure."""
    ids = set(ids or ())
    if not ids:
        return set()
    return set(gid for gid, entry in ((state or {}).get('groups') or {}).items()
               if isinstance(entry, dict) and ids.intersection(_member_ids(entry)))


def _identifiers(obj):
    return set(str(obj[k]).lower() for k in USER_ANCHOR_KEYS if isinstance(obj, dict) and obj.get(k))


def member_deltas(old_state, new_state, ids, ad_changed, max_members, managed_ids=None):
    """``{group id: {"added": [member id], "removed": [member id]}}`` for the groups of ``ids`` whose
    membership can be planned from what changed in Entra alone, without reading the AD copy's
    members: the last run wrote the group (it had an AD copy, the group was eligible, and it is not
    in ``ad_changed``, which holds the groups changed in AD by anyone else and those the last run
    did not write as planned), so the copy's members are the ones the last run derived from the old
    member list. A group whose member list did not change gets an empty delta (nothing to do for its
    members).

    Left out (their members are read and compared in full): a group new to the scope, over
    ``max_members`` or ineligible in the old state, or with no AD copy the last run knew of
    (``managed_ids``: the Entra ids of the managed groups in the saved AD state; None: not checked);
    a group whose added or removed members include a group or an object of unknown type (a nested
    group's DN comes from its own AD copy); a group listing a group that entered or left the scope,
    became eligible or ineligible, or is in ``ad_changed`` (its link may have to be written again);
    a group listing or removing a member whose identifiers changed (it may resolve differently now);
    and a group removing a member that shares an on-premises identifier with another object (the
    same AD account may still be wanted through it). Pure."""
    if not isinstance(old_state, dict) or not isinstance(new_state, dict):
        return {}
    old_groups = old_state.get('groups') or {}
    new_groups = new_state.get('groups') or {}
    old_objects = old_state.get('objects') or {}
    new_objects = new_state.get('objects') or {}
    changed_objects = _changed_objects(old_state, new_state)
    ad_changed = set(ad_changed or ())
    # Member groups whose link into their parents may change although the parents' lists did not.
    unsettled_children = (set(old_groups) ^ set(new_groups)) | ad_changed | eligibility_changed(old_state, new_state, max_members)
    candidates = []   # (gid, added, removed) that passed every check but the shared-identifier one
    for gid in sorted(set(ids or ()) - ad_changed):
        old, new = old_groups.get(gid), new_groups.get(gid)
        if not isinstance(old, dict) or not isinstance(new, dict):
            continue
        if managed_ids is not None and gid not in managed_ids:
            continue
        old_ids, new_ids = _member_ids(old), _member_ids(new)
        if max_members is not None and max(len(old_ids), len(new_ids)) > max_members:
            continue
        if _ineligible(old, max_members):
            continue   # not written while ineligible: its AD copy may lag behind its old member list
        old_set, new_set = set(old_ids), set(new_ids)
        added = [m for m in new_ids if m not in old_set]
        removed = [m for m in old_ids if m not in new_set]
        if unsettled_children.intersection(new_set):
            continue
        if changed_objects and (changed_objects.intersection(new_set) or changed_objects.intersection(removed)):
            continue
        types = [(new_objects.get(m) or {}).get('type') for m in added]
        types += [(old_objects.get(m) or {}).get('type') for m in removed]
        if any(t in (None, 'group', 'unknown') for t in types):
            continue
        candidates.append((gid, added, removed))
    # The identifiers of the removed members, and how many objects of the new state carry each: one
    # pass over the new state's objects (50,000 at the large benchmark), counting only those.
    own = {}   # removed member id -> its identifiers
    for unused, unused_added, removed in candidates:
        for mid in removed:
            if mid not in own:
                own[mid] = _identifiers(old_objects.get(mid))
    wanted = set().union(*own.values()) if own else set()
    holders = _holders(new_objects, wanted) if wanted else {}
    out = {}
    for gid, added, removed in candidates:
        shared = False
        for mid in removed:
            still = 1 if mid in new_objects else 0
            if any(holders.get(key, 0) - still > 0 for key in own[mid]):
                shared = True
                break
        if not shared:
            out[gid] = {'added': added, 'removed': removed}
    return out


def _holders(objects, wanted):
    """``{identifier: number of objects carrying it}`` for the identifiers of ``wanted`` (lower
    case, as ``_identifiers`` gives them), over the dict ``objects``; an object counts once per
    identifier, whichever of its keys holds it."""
    counts = dict.fromkeys(wanted, 0)
    keys = USER_ANCHOR_KEYS
    for obj in objects.values():
        if not isinstance(obj, dict):
            continue
        found = ()   # this object's identifiers counted so far
        for k in keys:
            value = obj.get(k)
            if value:
                key = str(value).lower()
                if key in counts and key not in found:
                    counts[key] += 1
                    found += (key,)
    return counts


def state_members(state, ids):
    """Member dicts of ``ids`` as ``state`` (a delta state) knows them (an id it does not know is
    ``{"id", "type": "unknown"}``)."""
    objects = _objects(state)
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
