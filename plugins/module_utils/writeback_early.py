# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A first run's groups written while Graph is still read (``EarlyCreates``).

A first run in all mode (no saved state, no group under ``search_base`` carrying our anchor) only
creates groups, so it need not wait for the whole plan: each group is created as soon as what it
needs is known. That is its whole member list (Graph), the DNs of its synced users (the streamed
resolution, ``writeback._StreamedResolution``), and its child groups planned before it (children
before parents still hold). The groups that are ready together (a wave) are planned by
``plan_writeback`` itself, with their planned children given as the AD objects they become, and
written in that order by one writer thread on a connection of its own, while the read goes on.

What is left waits for the run's own plan of every group (``writeback.run_writeback``), which sees
the groups written here as the objects they became (``written_objects``): it plans the rest, and
would bring the attributes and members of any of these in line if the whole read said otherwise
(a beta read refused part-way and read again from v1.0); none is expected. One difference it
cannot undo: a group the v1.0 read finds ineligible (more members than ``max_members`` where beta
listed fewer) stays written and is reported ``skipped``, as a group that left the scope is.

A group is left to that plan when anything could make the whole plan decide differently: its DN or
sAMAccountName is also another listed group's or already taken in AD, its source of authority
moved to the cloud (its original AD group is adopted), a user of it is one the streamed resolution
does not answer for (the consistency-GUID scan, or a member dict that differs), a child of it is
left, or it is in a cycle. Nothing is written early when a Writeback v2 group exists under
``search_base`` (adoption is decided by the whole plan) or in check mode (the caller does not
make this object then).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import threading
from concurrent.futures import ThreadPoolExecutor
from queue import Empty, Queue

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import ad_reader
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_client import ADError
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_codecs import (
    anchor_for, dn_key, group_id_from_anchor, parent_dn, rdn_value,
)
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.eligibility import (
    group_ineligibility, is_synced_user,
)
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.writeback_apply import apply_plan
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.writeback_plan import (
    group_id, names_by_group, plan_writeback, summarise,
)

_END = object()


def written_object(ops):
    """The managed-group dict (as ``ad_reader.group_from_entry`` reads it) that a group's ``ops``
    (a create and its member ops) make in AD."""
    create = ops[0]
    attrs = create['attributes']
    members = create.get('members') or []   # the plan's own list when the create holds them all (nobody changes it)
    if len(ops) > 1:
        members = list(members)
        for op in ops[1:]:
            members.extend(op.get('add') or [])
    return {
        'dn': create['dn'], 'object_guid': None, 'object_sid': None, 'cn': rdn_value(create['dn']),
        'parent_dn': parent_dn(create['dn']), 'anchor': attrs.get('msDS-ExternalDirectoryObjectId'),
        'admin_description': attrs.get('adminDescription'), 'display_name': attrs.get('displayName'),
        'description': attrs.get('description'), 'group_type': attrs.get('groupType'),
        'sam_account_name': attrs.get('sAMAccountName'), 'admin_count': 0, 'members': members,
    }


class EarlyCreates(object):
    """See the module docstring. It is the read's listener (``entra_reader.ReadListener``): the
    member pages go on to ``stream``; ``listed`` and ``complete`` feed its planning thread. The
    caller tells it when AD is reached (``reached``) and when Graph is read (``stop``), then takes
    the groups it planned (``written_objects``), waits for their writes and closes it (``close``:
    the connection's requests are then counted in ``ad``'s), and folds its reports into the run's
    (``merge``). Its writes are recorded in ``applied`` (the run's ``ApplyResult``)."""

    # What writing early holds beside the read (each planned group's report, operations and the
    # member DNs it was written with, until the run's own plan plans it again as an existing group;
    # the groups waiting for their users; the planning and writing threads' allocations) is bounded
    # twice. A tenant listing more than GROUPS_MAX groups writes nothing early: at 20,000 groups and
    # 1.9 million memberships the xlarge first run peaked at 477 MB while Graph was read, and at
    # 416-431 MB with the bound below (memory_phases.py --apply; 372 MB in check mode, which writes
    # nothing early), over the 400 MB it is held to. Past MEMBERSHIPS_MAX member DNs written early,
    # the other groups wait for the run's plan, as without this. The large benchmark tenant (2,000
    # groups, 117,812 member DNs written) is under both, at a 120 MB peak.
    GROUPS_MAX = 5000
    MEMBERSHIPS_MAX = 150000

    def __init__(self, ad, params, options, stream, applied):
        self.ad = ad
        self.params = params
        self.options = dict(options)
        self.stream = stream
        self.applied = applied
        self.events = Queue()
        self.reach = threading.Event()
        self.where = None
        self.stopped = False
        self.done = False               # the planning thread has returned: nothing more is queued
        self.left_why = None            # why nothing more is written early (None: it may be)
        self.groups = {}                # listed: id -> group dict (the reader's; never changed here)
        self.left = set()               # ids left to the run's plan
        self.ineligible = {}            # id -> its member count (the planner re-checks eligibility)
        # id -> [group with members, users the stream must have resolved (see ``complete``), child ids]
        self.pending = {}
        self.resolved_users = 0         # how many users the stream has resolved, in the order it took them
        self.planned = {}               # id -> written_object (what its ops make)
        self.reports = {}               # id -> its report, from the wave that planned it
        self.diff = {'before': {}, 'after': {}}
        self.ops = []                   # every op handed to the writer, in order
        self.waves = 0
        self.memberships = 0            # the members of the groups planned here
        self.taken = {}
        self.sam_taken = set()
        self.conn = None
        stream.on_resolved = self.resolved
        self.writer = ThreadPoolExecutor(max_workers=1)
        self.writes = []
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.future = self.pool.submit(self._run)

    # -- the read's listener (Graph's threads) ------------------------------------------------------
    def listed(self, groups):
        self._put(('listed', list(groups)))

    def members(self, items):
        self.stream.members(items)

    def complete(self, gid, items):
        # The group's users were handed to the stream (``members``, on this thread) before this:
        # once it has resolved as many users as it had taken now, they are all answered for. A
        # count, not an index of the users each group waits for: at 1.9 million memberships those
        # sets and dicts took the run from 372 to 477 MB while Graph was read.
        self._put(('complete', gid, items, self.stream.taken_users()))

    def resolved(self, count):
        """The streamed resolution has answered for its first ``count`` users (its thread)."""
        self._put(('resolved', count))

    def _put(self, event):
        # Once the planning thread is done (it declined, or the read is over) nothing would take
        # the events: a run that declines (managed groups exist) must not hold every member list.
        if not self.done:
            self.events.put(event)

    # -- the caller's -----------------------------------------------------------------------------
    def reached(self, domain_dn, search_base):
        self.where = (domain_dn, search_base)
        self.reach.set()

    def stop(self):
        """Graph is read: no more waves. The groups planned so far are final (``written_objects``)."""
        self.stopped = True
        self.events.put(_END)
        self.reach.set()
        error = self.future.exception()   # its thread has emptied ``pending`` and the queue by then
        if error is not None:
            self._leave('error: %s' % (error,))

    def written_objects(self):
        """The AD objects of the groups planned here, as ``ad_state['managed']`` holds them."""
        return list(self.planned.values())

    def written(self):
        """How many groups were created here (their create done; the run's plan may still fail others)."""
        done = set(op['group_id'] for op in self.ops if op['op'] == 'create' and op.get('outcome') in
                   ('created', 'adopted_concurrent'))
        return len(done - set(self.applied.errors))

    def join(self):
        """Wait for every early write. A connection-level error is in ``applied.fatal`` then."""
        for fut in self.writes:
            fut.exception()

    def merge(self, result):
        """Fold the early groups into ``result`` (the run's ``plan.to_dict()``, which saw them as
        existing objects): their reports and diffs are the waves', unless the run's plan changes
        them (then its own, with a note), and the ops run first."""
        for index, rep in enumerate(result['groups']):
            gid = rep.get('id')
            early = self.reports.get(gid)
            if early is None:
                continue
            if rep['action'] not in ('unchanged', 'updated', 'renamed', 'moved'):
                rep.setdefault('notes', []).append('Created earlier in this run while Graph was read')
                continue
            if rep['action'] != 'unchanged':
                # Not expected (see the module docstring): created, then brought in line by the run's plan.
                early['notes'] = list(early.get('notes') or []) + [
                    'Created while Graph was read, then changed by the run\'s plan of the whole read: %s'
                    % ', '.join(rep.get('changes') or [])]
                early['members_added'] = list(early['members_added']) + list(rep['members_added'])
                early['members_removed'] = list(rep['members_removed'])
                early['dn'] = rep['dn']
                if gid in result['diff']['after']:
                    self.diff['after'][gid] = result['diff']['after'][gid]
            result['groups'][index] = early
            for side in ('before', 'after'):
                if gid in self.diff[side]:
                    result['diff'][side][gid] = self.diff[side][gid]
        result['diff'] = dict((side, dict(sorted(result['diff'][side].items()))) for side in ('before', 'after'))
        result['ops'] = self.ops + result['ops']
        result['summary'] = summarise(result['groups'])
        result['changed'] = bool(result['ops'])
        return result

    def early_result(self):
        """The groups written early as a result dict (for a run that fails before its own plan)."""
        groups = [self.reports[gid] for gid in sorted(self.reports)]
        return dict(groups=groups, summary=summarise(groups), cycles=[], diff=self.diff, ops=self.ops, warnings=[])

    def close(self):
        self.stream.on_resolved = None
        if self.pool is not None:
            self.stop()
            self.pool.shutdown()
            self.pool = None
        if self.writer is not None:
            self.join()             # never close a connection a write still uses
            self.writer.shutdown()
            self.writer = None
        if self.conn is not None:
            self.conn.close()
            self.ad.count_from(self.conn)
            self.conn = None

    # -- the planning thread --------------------------------------------------------------------------
    def _leave(self, why):
        if self.left_why is None:
            self.left_why = why

    def _run(self):
        try:
            self._plan_waves()
        finally:
            self.done = True
            while not self.events.empty():
                self.events.get()
            self.pending = {}   # the rest waits for the run's plan

    def _plan_waves(self):
        self.reach.wait()
        while not self.stream.checked.wait(0.05):
            if self.stopped:
                return
        if self.stopped:
            return
        if self.stream.declined is not None:
            self._leave('streamed resolution: %s' % self.stream.declined)
            return
        domain_dn, search_base = self.where
        self.conn = self.ad.sibling()
        if ad_reader.read_writeback_v2_groups(self.conn, search_base):
            self._leave('writeback_v2_groups')
            return
        listed = None
        held = []
        while not self.stopped:
            event = self.events.get()
            batch = [event]
            while True:
                try:
                    batch.append(self.events.get_nowait())
                except Empty:
                    break
            end = any(e is _END for e in batch)
            for event in batch:
                if event is _END:
                    continue
                if event[0] == 'listed':
                    listed = event[1]
                    if len(listed) > self.GROUPS_MAX:
                        self._leave('groups_max')
                        return
                    self._names(listed, domain_dn)
                    batch_held, held = held, []
                    for gid, items in batch_held:
                        self._complete(gid, items)
                elif event[0] == 'complete':
                    if listed is None:
                        held.append(event[1:])
                    else:
                        self._complete(*event[1:])
                elif event[0] == 'resolved':
                    self.resolved_users = max(self.resolved_users, event[1])
            if end or self.left_why is not None:
                return
            self._plan_ready(domain_dn)

    def _names(self, listed, domain_dn):
        """Take the listed groups; leave those whose names another listed group or AD object holds."""
        self.groups = dict((group_id(g), g) for g in listed if group_id(g))
        names = names_by_group(listed, self.options, domain_dn)
        dns, sams = {}, {}
        for gid, (dn, sam) in names.items():
            dns.setdefault(dn_key(dn), []).append(gid)
            if sam:
                sams.setdefault(sam.lower(), []).append(gid)
        self.taken = ad_reader.read_objects_at(self.conn, domain_dn, [dn for dn, unused in names.values()])
        self.sam_taken = ad_reader.read_sam_account_names(self.conn, domain_dn, [s for unused, s in names.values() if s]) \
            if any(s for unused, s in names.values()) else set()
        for gid, (dn, sam) in names.items():
            if len(dns[dn_key(dn)]) > 1 or dn_key(dn) in self.taken or \
                    (sam and (len(sams[sam.lower()]) > 1 or sam.lower() in self.sam_taken)):
                self.left.add(gid)
        for gid, g in self.groups.items():
            if g.get('cloud_managed') is True or group_id_from_anchor(anchor_for(gid)) != gid:
                self.left.add(gid)

    def _complete(self, gid, items, needed):
        """Group ``gid``'s whole member list: pending until the stream has resolved ``needed`` users
        (again with v1.0's list if beta refused part-way: the stream then leaves users whose dict
        changed). Its users' answers are checked when it is planned (``_plan_ready``)."""
        if gid not in self.groups or gid in self.left or gid in self.planned or gid in self.ineligible:
            return
        g = dict(self.groups[gid])
        g['members'] = items
        g['member_count'] = len(items)
        if group_ineligibility(g, self.params.get('max_members')):
            self.ineligible[gid] = len(items)
            self.pending.pop(gid, None)
            return
        children = set(str(m['id']).lower() for m in items
                       if m.get('type') == 'group' and m.get('id') and str(m['id']).lower() in self.groups) - set([gid])
        self.pending[gid] = [g, needed, children]

    def _ready(self):
        """The pending groups that can be planned now, with their children planned before or with them."""
        wave = set()
        candidates = [gid for gid, entry in self.pending.items() if entry[1] <= self.resolved_users]
        grew = True
        while grew:
            grew = False
            for gid in candidates:
                if gid in wave:
                    continue
                children = self.pending[gid][2]
                if all(c in self.planned or c in self.ineligible or c in wave for c in children):
                    wave.add(gid)
                    grew = True
        return wave

    def _plan_ready(self, domain_dn):
        wave = self._ready()
        # An answer given may be withdrawn since (the stream declined, or met the user with another
        # dict): such a group is left to the run, and so is every group of the wave above it.
        resolution = {}
        for gid in sorted(wave):
            for m in self.pending[gid][0]['members']:
                if m.get('type') == 'user' and m.get('id') and m['id'] not in resolution and is_synced_user(m):
                    state, answer = self.stream.answer(m)
                    if state == 'pending':
                        # Not expected (the stream resolves users in the order it takes them): wait on.
                        self.pending[gid][1] = self.stream.taken_users()
                        wave.discard(gid)
                        break
                    if state != 'ok':
                        self.left.add(gid)
                        del self.pending[gid]
                        break
                    resolution[m['id']] = answer
        wave -= self.left
        grew = True
        while grew:
            grew = False
            for gid in sorted(wave):
                children = self.pending[gid][2]
                if any(c in self.left for c in children):
                    self.left.add(gid)
                    del self.pending[gid]
                    wave.discard(gid)
                    grew = True
                elif not all(c in self.planned or c in self.ineligible or c in wave for c in children):
                    wave.discard(gid)   # a child waits on: so does it
                    grew = True
        if not wave:
            return
        # The wave's groups, and their children as the run's plan sees them: a planned one as the
        # AD object it becomes (its members are not the wave's concern), an ineligible one as
        # skipped (its members not given, its size kept), so that the wave plans each group's
        # members as the whole plan would.
        desired, managed = [], []
        around = set()
        for gid in sorted(wave):
            g, unused, children = self.pending.pop(gid)
            desired.append(g)
            around |= children
        for cid in sorted(around - wave):
            if cid in self.planned:
                child = dict(self.groups[cid])
                child.update(nested_only=True, members=[], member_count=0)
                desired.append(child)
                managed.append(self.planned[cid])
            else:
                desired.append(dict(self.groups[cid], members=None, member_count=self.ineligible[cid]))
        ad_state = dict(domain_dn=domain_dn, managed=managed, v2_candidates=[], taken_dns=self.taken,
                        sam_taken=sorted(self.sam_taken), soa_originals=[])
        plan = plan_writeback(desired, ad_state, resolution, self.options)
        by_group = {}
        for op in plan.ops:
            if op.get('group_id') not in wave or op['op'] not in ('create', 'members'):
                self._leave('a wave planned %s of group %s' % (op['op'], op.get('group_id')))
                return
            by_group.setdefault(op['group_id'], []).append(op)
        for rep in plan.groups:
            gid = rep.get('id')
            if gid not in wave:
                continue
            if rep['action'] != 'created' or not by_group.get(gid) or by_group[gid][0]['op'] != 'create':
                self.left.add(gid)
                continue
            self.planned[gid] = written_object(by_group[gid])
            self.memberships += len(self.planned[gid]['members'])
            self.reports[gid] = rep
            for side in ('before', 'after'):
                if gid in plan.diff[side]:
                    self.diff[side][gid] = plan.diff[side][gid]
        # The plan's own order (children first); the ops of groups left are not written.
        ops = [op for op in plan.ops if op['group_id'] in self.planned and op['group_id'] in wave]
        if ops:
            self.waves += 1
            self.ops.extend(ops)
            self.writes.append(self.writer.submit(self._write, ops))
        if self.memberships >= self.MEMBERSHIPS_MAX:
            self._leave('memberships_max')

    def _write(self, ops):
        if self.applied.fatal is not None:
            for op in ops:
                op['outcome'] = 'not_run'
            self.applied.not_run.extend(ops)
            return
        try:
            apply_plan(self.conn, ops, result=self.applied)
        except ADError:
            pass   # a lost connection: in applied.fatal, the rest not_run; the caller raises it
        except Exception as exc:  # pylint: disable=broad-except
            # Not the DC's (a bug, memory): the run stops as for a lost connection, never as a success.
            rest = [op for op in ops if 'outcome' not in op]
            for op in rest:
                op['outcome'] = 'not_run'
            self.applied.not_run.extend(rest)
            self.applied.fatal = exc
