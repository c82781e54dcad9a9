# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The delta state on disk: a small head file, and the member lists in a file of their own.

A delta state (``entra_reader.read_groups_incremental``) is mostly member lists: each group's
``member_ids`` and the ``objects`` they name (1.9 million links and 200,000 objects, ~230 MB of
JSON, for a tenant of 20,000 groups). A run in which nothing changed in Entra needs none of them,
yet loading and saving them cost seconds. So the state is saved as two files:

* the head, at ``delta_state_path``: everything else (delta link, options, the AD part, each
  group's properties with its ``member_count``) and a reference to the members file;
* the members file, ``<delta_state_path>.members-<token>`` in the same folder: ``member_ids`` by
  group and ``objects``, with the same token inside.

``load`` reads only the head; the members file is read by ``hydrate`` when a run needs the member
lists (``entra_reader`` calls it when Graph reported changes, the writeback when a group must be
examined). ``save`` writes a new members file only when the member lists may have changed (a state
whose ``_members`` reference is the loaded one kept them as they were): first the members file
under a new name, then the head (atomically), then the members file the replaced head named is
removed, so a crash at any point leaves a head whose members file exists. Other members files of
the head (left by a run killed before its head, or by two runs at once) are removed once older than
``ORPHAN_AGE``: a younger one may be a concurrent run's whose head is not written yet. ``load``
opens the members file at once and ``hydrate`` reads that open file, so a run whose members file
another run replaced meanwhile still reads the member lists it loaded (and writes them anew).

A head whose members file is missing or does not match is refused with a message that says how to
start again (remove the head: the next run reads everything).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import time
import uuid

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import json_file
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.errors import CloudSyncError

MEMBERS_SUFFIX = '.members-'
MEMBERS_KEY = '_members'   # in memory only: the MembersFile a loaded state's member lists come from
SOURCE_KEY = '_member_groups'   # in memory only: the GroupsRead a full read's member lists are made from
ORPHAN_AGE = 3600          # seconds: a members file no head names, older than this, is removed by the next save
TEMP_PREFIX = '.cloudsync-members-'
ADVICE = 'remove the delta state file to start with a full read'


class DeltaStateError(CloudSyncError):
    """The state file cannot be used as it is."""


class MembersFile(object):
    """The members file of a loaded head, read once on first use (shared by the old state and the
    new one a run derives from it while Entra reported no change)."""

    def __init__(self, path, token, group_ids, handle=None):
        self.path = path
        self.token = token
        self.group_ids = group_ids
        self.data = None
        self.handle = handle   # opened by load: readable even once another run's save removed the file

    def __del__(self):
        if getattr(self, 'handle', None) is not None:
            self.handle.close()

    def read(self):
        if self.data is None:
            handle, self.handle = self.handle, None
            data = json_file.read(self.path, 'the members file', ADVICE, DeltaStateError, handle=handle)
            if data is None:
                raise DeltaStateError('The members file %s of the delta state is missing (remove the delta state file to '
                                      'start with a full read)' % self.path)
            if not isinstance(data, dict) or data.get('token') != self.token or \
                    not isinstance(data.get('member_ids'), dict) or not isinstance(data.get('objects'), dict) or \
                    set(data['member_ids']) != self.group_ids:
                raise DeltaStateError('The members file %s does not belong to its delta state file (remove the delta state '
                                      'file to start with a full read)' % self.path)
            _share_ids(data)
            self.data = data
        return self.data


class GroupsRead(object):
    """The member lists of a state made by a full read, left in the groups that were read: a full
    read's state is ``lazy`` (each group entry has its ``member_count``, the state no ``objects``)
    until ``hydrate`` makes ``member_ids`` and ``objects`` from these groups, or ``write_members``
    writes them straight from them. A writeback after a full read needs them only to save them: at
    20,000 groups the copies (1.9 million member ids, and a dict of 220,000 objects) were 33 MB of
    the run's peak. ``to_object(member)``: a member as the state keeps it."""

    def __init__(self, groups, to_object):
        self.groups = groups
        self.to_object = to_object

    def member_ids(self):
        """``(group id, [member id])`` of every group, made one group at a time."""
        for g in self.groups_held():
            yield g['id'], [m['id'] for m in g.get('members') or []]

    def objects(self):
        """``(id, object)`` of every member, once (the last dict read for an id, as a full read's
        state always kept it)."""
        last = {}
        for g in self.groups_held():
            for m in g.get('members') or []:
                last[m['id']] = m
        for mid, member in last.items():
            yield mid, self.to_object(member)

    def groups_held(self):
        """The groups read, or DeltaStateError once released."""
        if self.groups is None:
            # Never write a members file from groups whose member lists are gone: it would save
            # every group as empty.
            raise DeltaStateError('Internal error: the member lists of the delta state were released before they were saved')
        return self.groups

    def release(self):
        """The groups' member lists are no longer this state's (see ``release_members``)."""
        self.groups = None


def lazy_state(state, groups, to_object):
    """``state`` (its groups' entries with ``member_count``, no ``member_ids`` nor ``objects``)
    with its member lists left in ``groups`` (see GroupsRead)."""
    state[SOURCE_KEY] = GroupsRead(groups, to_object)
    return state


def release_members(state):
    """After ``write_members`` has written a lazy ``state``'s member lists (or when it is not
    saved): the state no longer needs the groups they were read into, whose member lists the
    caller may then drop. Writing its members again raises DeltaStateError. No-op for others."""
    if is_lazy(state):
        state[SOURCE_KEY].release()


def is_lazy(state):
    return isinstance(state, dict) and state.get(SOURCE_KEY) is not None and 'objects' not in state


def _share_ids(data):
    """JSON gives a separate string for every occurrence of a member id (1.9 million at 20,000
    groups): make every ``member_ids`` entry and every object's ``id`` the one string of its
    ``objects`` key. Same content, a fraction of the memory."""
    canonical = {}
    for key, obj in data['objects'].items():
        canonical[key] = key
        if isinstance(obj, dict) and obj.get('id') == key:
            obj['id'] = key
    for gid, ids in data['member_ids'].items():
        if isinstance(ids, list):
            data['member_ids'][gid] = [canonical.get(mid, mid) for mid in ids]


def members_path(path, token):
    return '%s%s%s' % (path, MEMBERS_SUFFIX, token)


def load(path):
    """The head of the state at ``path`` (None when there is none), member lists not read. Raises
    DeltaStateError when the file cannot be read or its members file is missing."""
    state = json_file.read(path, 'the delta state file', 'remove it to start with a full read', DeltaStateError)
    if state is None:
        return None
    ref = state.get('members_file') if isinstance(state, dict) else None
    if not isinstance(ref, dict):
        if isinstance(state, dict) and isinstance(state.get('groups'), dict) and 'objects' not in state:
            # groups without member lists and no members file: nothing to read them from
            raise DeltaStateError('The delta state file %s names no members file (remove it to start with a full read)' % path)
        return state   # an older or foreign state: the reader's version check sends it to a full read
    if not isinstance(state.get('groups'), dict):
        raise DeltaStateError('The delta state file %s names a members file but has no groups (remove it to start with a '
                              'full read)' % path)
    full = os.path.join(os.path.dirname(os.path.abspath(path)), os.path.basename(str(ref.get('file'))))
    if not os.path.exists(full):
        raise DeltaStateError('The members file %s of the delta state file %s is missing (%s)' % (full, path, ADVICE))
    try:
        handle = open(full, 'r')
    except (IOError, OSError) as exc:
        raise DeltaStateError('Cannot read the members file %s: %s (%s)' % (full, exc, ADVICE))
    state[MEMBERS_KEY] = MembersFile(full, ref.get('token'), set(state['groups']), handle)
    return state


def is_hydrated(state):
    """Whether the member lists of ``state`` are in memory (always true of a state read from Graph)."""
    return isinstance(state, dict) and 'objects' in state


def hydrate(state):
    """Put the member lists back into a loaded state (``member_ids`` of each group, ``objects``),
    reading its members file if no other state sharing it did, or into a full read's lazy state,
    from its groups. No-op for a hydrated state."""
    if is_lazy(state):
        state[SOURCE_KEY].groups_held()   # raises before the state is changed
        source = state.pop(SOURCE_KEY)
        for gid, ids in source.member_ids():
            entry = state['groups'][gid]
            entry['member_ids'] = ids
            entry.pop('member_count', None)
        state['objects'] = dict(source.objects())
        return state
    if not isinstance(state, dict) or is_hydrated(state) or state.get(MEMBERS_KEY) is None:
        return state
    data = state[MEMBERS_KEY].read()
    for gid, entry in state['groups'].items():
        if 'member_ids' not in entry:
            entry['member_ids'] = data['member_ids'][gid]
        entry.pop('member_count', None)   # the head's stand-in: a hydrated entry is as Graph's read left it
    state['objects'] = data['objects']
    return state


def share_members(old_state, new_groups):
    """What a state derived from ``old_state`` without a change to any member list carries: the old
    members file (not read, not written again). ``new_groups`` must be ``old_state``'s groups."""
    return old_state.get(MEMBERS_KEY) if isinstance(old_state, dict) and set(new_groups) == set(old_state.get('groups') or ()) else None


def _head(state, ref):
    """The head's data: ``state`` without its member lists (counted instead), its groups made one
    chunk at a time as they are written (a copy of 20,000 group entries was 10 MB at the xlarge
    first run's peak, memory_phases.py --apply)."""
    head = dict((k, v) for k, v in state.items() if k not in ('objects', MEMBERS_KEY) and not k.startswith('_'))
    head['groups'] = json_file.Pairs(_head_groups(state.get('groups') or {}))
    head['members_file'] = ref
    return head


def _head_groups(groups):
    for gid, entry in groups.items():
        e = dict((k, v) for k, v in entry.items() if k != 'member_ids')
        if 'member_ids' in entry:
            e['member_count'] = len(entry['member_ids'])
        yield gid, e


def _named_file(path):
    """The members file the head at ``path`` names now (None: no head, or not one of ours)."""
    try:
        head = json_file.read(path, 'the delta state file', ADVICE, DeltaStateError)
    except DeltaStateError:
        return None
    ref = head.get('members_file') if isinstance(head, dict) else None
    return os.path.basename(str(ref.get('file'))) if isinstance(ref, dict) else None


def _kept_file(kept, directory, path):
    """Whether the loaded members file ``kept`` can be named by the head saved at ``path``."""
    return isinstance(kept, MembersFile) and os.path.dirname(kept.path) == directory and \
        os.path.basename(kept.path).startswith(os.path.basename(path) + MEMBERS_SUFFIX) and os.path.exists(kept.path)


def _remove_old(directory, prefix, current, replaced):
    """Remove the members file the replaced head named, and members files (and temporary ones) no
    head names that are older than ORPHAN_AGE; a younger one may be a concurrent run's, written
    just before its head."""
    now = time.time()
    for name in os.listdir(directory):
        if name == current or not (name.startswith(prefix) or name.startswith(TEMP_PREFIX)):
            continue
        full = os.path.join(directory, name)
        try:
            if name != replaced and now - os.stat(full).st_mtime < ORPHAN_AGE:
                continue
            os.unlink(full)
        except OSError:
            pass   # already gone, or held open (Windows): the next save tries again


def write_members(path, state):
    """The first half of ``save``: when the member lists of ``state`` are not the loaded ones, write
    them to a new members file beside ``path`` and return its reference for ``save(..., written=)``;
    None when the head can keep naming the loaded file. Touches nothing but that new file (a crash
    or an error before the head is written leaves an orphan that a later save removes), so it can
    run while the caller still reads what the head will hold."""
    directory = os.path.dirname(os.path.abspath(path)) or '.'
    if _kept_file(state.get(MEMBERS_KEY), directory, path):
        return None
    token = uuid.uuid4().hex
    target = members_path(os.path.abspath(path), token)
    if is_lazy(state):
        # A full read's: written from the groups read, one chunk at a time (see GroupsRead).
        source = state[SOURCE_KEY]
        data = dict(token=token, member_ids=json_file.Pairs(source.member_ids()), objects=json_file.Pairs(source.objects()))
    else:
        # A members file this head cannot name (the head was renamed, or another run removed it):
        # the member lists come from the file load opened, and are written anew.
        hydrate(state)
        if not is_hydrated(state):
            raise DeltaStateError('Internal error: the member lists of the delta state were not loaded before saving it')
        data = dict(token=token, member_ids=dict((gid, entry['member_ids']) for gid, entry in state['groups'].items()),
                    objects=state['objects'])
    json_file.write_atomically(target, data, prefix=TEMP_PREFIX)
    return dict(file=os.path.basename(target), token=token)


def discard_members(path, written):
    """Remove the members file ``write_members`` wrote (``written``, its reference) when no head
    will name it: the run stopped before saving its state."""
    if written:
        target = os.path.join(os.path.dirname(os.path.abspath(path)) or '.', written['file'])
        try:
            os.unlink(target)
        except OSError:
            pass   # already gone; a later save removes it otherwise (see _remove_old)


def save(path, state, written=None):
    """Write ``state`` at ``path`` (head) and, when its member lists are not the loaded ones, a new
    members file beside it (or name ``written``, what ``write_members`` returned for this state);
    the members file of the head it replaces is removed last."""
    directory = os.path.dirname(os.path.abspath(path)) or '.'
    kept = state.get(MEMBERS_KEY)
    replaced = None
    ref = written or write_members(path, state)
    sharing = ref is None
    if sharing:
        ref = dict(file=os.path.basename(kept.path), token=kept.token)
    else:
        replaced = _named_file(path)
    json_file.write_atomically(path, _head(state, ref), prefix='.cloudsync-delta-')
    if sharing and not os.path.exists(kept.path):
        # Another run removed the kept members file between the check above and this head: write
        # the member lists anew rather than leave a head naming a missing file.
        return save(path, dict((k, v) for k, v in hydrate(state).items() if k != MEMBERS_KEY))
    _remove_old(directory, os.path.basename(path) + MEMBERS_SUFFIX, ref['file'], replaced)
    return ref
