# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Execute a writeback plan against AD, in order, through ``ADClient``.

Runs of independent writes (member and attribute changes of groups that exist and keep their DN,
naming nothing the plan creates, renames or moves) may go over several connections at once
(``apply_plan``'s ``connections``), each group's writes in order on one of them; everything else
keeps the plan's order on the caller's connection.

In check mode nothing is sent: the plan is the answer. Otherwise each operation is one LDAP
request (the planner already chunked large member changes). What can go wrong and what happens:

- an object-level refusal (insufficient rights, constraint violation, a name taken meanwhile):
  recorded for that group, its remaining operations are skipped, other groups go on;
- a create that finds its DN taken (``entryAlreadyExists``): the object there is read; if it
  carries this group's anchor, another run created it a moment ago: it is adopted, its attributes
  and members are brought in line, and it is reported as what this run did to it (``updated``
  when something had to be written, ``unchanged`` otherwise), never as ``created`` (two
  concurrent runs never make two groups, and their counts add up to what was made); a foreign
  object is an error for that group only;
- a group whose create failed is never written to or linked afterwards in the run: a later
  operation that acts on its DN (by DN) or adds its DN as a member is not sent (an error for that
  group). Another object may hold that DN (a name taken after the run looked it up).
- a lost connection (no LDAP result code: the DC went away): the run stops at once; the error
  carries the ``ApplyResult`` so far (``err.applied``: what was done, the failed operation and
  the operations not run), so the caller can report what was written. Every group already
  created carries its anchor (one add with every attribute), so the next run finds it and
  converges.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import threading
from collections import OrderedDict
from queue import Empty, Queue

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import ad_codecs
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_client import ADError, first, values
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_codecs import ANCHOR_ATTRIBUTE

ENTRY_ALREADY_EXISTS = 68
NO_SUCH_OBJECT = 32


class ApplyResult(object):
    """What happened: per-group errors, operations executed, and whether anything was written."""

    def __init__(self):
        self.executed = []        # ops sent: the plan's own dicts, 'outcome' added (see apply_plan)
        self.errors = {}          # group_id -> message
        self.notes = {}           # group_id -> [text]
        self.adopted = {}         # group_id -> {"changes": {attr: {"before", "after"}}, "members_added": [dn]}
        self.not_run = []         # ops never sent because the run stopped (the plan's, outcome 'not_run')
        self.fatal = None         # the connection-level ADError that stopped the run, if any
        self.changed = False
        self.failed_creates = {}  # dn_key -> DN of every create that failed (see _uses_failed_create)

    def note(self, group_id, text):
        self.notes.setdefault(group_id, []).append(text)


def _fatal(err):
    """A connection-level failure (no LDAP result code) ends the run; an object-level one does not."""
    return getattr(err, 'result', None) is None


def _members_change(add, remove):
    changes = []
    if add:
        changes.append(('add', list(add)))
    if remove:
        changes.append(('delete', list(remove)))
    return {'member': changes}


def _create(client, op, result):
    attributes = dict(op['attributes'])
    if op.get('members'):
        attributes['member'] = list(op['members'])
    try:
        client.add(op['dn'], attributes)
        return 'created'
    except ADError as err:
        if err.result == NO_SUCH_OBJECT:
            raise ADError('%s. The container %s does not exist: check target_ou and ou_map'
                          % (err.msg, ad_codecs.parent_dn(op['dn'])), operation='add', server=err.server, dn=op['dn'],
                          result=err.result, result_name=err.result_name, diagnostic=err.diagnostic)
        if err.result != ENTRY_ALREADY_EXISTS:
            raise
    # Someone holds the DN: a concurrent run of ours (same anchor), or a foreign object.
    wanted_anchor = attributes.get(ANCHOR_ATTRIBUTE)
    compared = sorted(k for k in op['attributes'] if k not in ('objectClass', ANCHOR_ATTRIBUTE))
    existing = client.get(op['dn'], [ANCHOR_ATTRIBUTE, 'member'] + compared)
    if existing is None or first(existing, ANCHOR_ATTRIBUTE) != wanted_anchor:
        raise ADError('Cannot create %r: an object without the anchor %s already holds that name on %s; '
                      'rename or remove it, or map the group to another OU'
                      % (op['dn'], wanted_anchor, client.server),
                      operation='add', server=client.server, dn=op['dn'], result=ENTRY_ALREADY_EXISTS,
                      result_name='entryAlreadyExists')
    changes = {}
    for attr in compared:
        want = op['attributes'][attr]
        have = first(existing, attr)
        if have is None or str(have) != str(want):
            changes[attr] = {'before': have, 'after': want}
    have_members = set(ad_codecs.dn_key(dn) for dn in values(existing, 'member'))
    missing = [dn for dn in op.get('members') or [] if ad_codecs.dn_key(dn) not in have_members]
    modify = dict((attr, ('replace', [change['after']])) for attr, change in changes.items())
    if missing:
        modify['member'] = [('add', list(missing))]
    if modify:
        client.modify(op['dn'], modify)
    result.adopted[op['group_id']] = {'changes': changes, 'members_added': missing, 'wrote': bool(modify)}
    result.note(op['group_id'], 'created by a concurrent run a moment ago: adopted (found by its anchor)%s'
                % ('; attributes and members brought in line' if modify else '; nothing to change'))
    return 'adopted_concurrent'


def _target(op):
    """The object an op acts on: by objectGUID when the plan read it (``<GUID=...>``), so a write
    can never land on another object that took the DN meanwhile; by DN otherwise."""
    guid = op.get('object_guid')
    return '<GUID=%s>' % guid if guid else op['dn']


def _check_still_there(client, op):
    """Raise an (object-level) ADError unless ``op['dn']`` still holds the object ``op['object_guid']``."""
    guid = op.get('object_guid')
    if not guid:
        return
    existing = client.get(op['dn'], ['objectGUID'])
    raw = first(existing, 'objectGUID') if existing is not None else None
    found = ad_codecs.guid_from_bytes(raw) if isinstance(raw, bytes) and len(raw) == 16 else None
    if found != ad_codecs.normalize_guid(guid):
        what = 'no object is there any more' if existing is None else 'another object (objectGUID %s) holds it now' % found
        raise ADError('Not renaming or moving %r on %s: %s, not the group read by this run (objectGUID %s); '
                      'the next run finds the group again by its anchor' % (op['dn'], client.server, what, guid),
                      operation='modify_dn', server=client.server, dn=op['dn'], result=NO_SUCH_OBJECT,
                      result_name='noSuchObject')


def _execute(client, op):
    kind = op['op']
    if kind == 'modify_dn':
        # By DN: Samba (unlike Windows) does not resolve <GUID=...> in a modify DN request. So first
        # make sure the DN still names the object the plan read, never renaming or moving another one.
        _check_still_there(client, op)
        client.modify_dn(op['dn'], op['new_rdn'], op.get('new_superior'))
    elif kind == 'modify':
        changes = {}
        for attr, value in op['changes'].items():
            if value is None or value == []:
                changes[attr] = ('replace', [])
            else:
                changes[attr] = ('replace', value if isinstance(value, list) else [value])
        client.modify(_target(op), changes)
    elif kind == 'members':
        client.modify(_target(op), _members_change(op.get('add'), op.get('remove')))
    elif kind == 'delete':
        try:
            client.delete(_target(op))
        except ADError as err:
            if err.result != NO_SUCH_OBJECT or not op.get('object_guid'):
                raise
            return 'already_gone'
    else:
        raise ValueError('Unknown plan operation %r' % (kind,))
    return 'done'


def _uses_failed_create(op, failed_creates):
    """The DN of a failed create that ``op`` would act on (by DN) or add as a member, or None."""
    if not failed_creates:
        return None
    if op['op'] != 'create' and not op.get('object_guid') and ad_codecs.dn_key(op['dn']) in failed_creates:
        return op['dn']
    for dn in (op.get('members') if op['op'] == 'create' else op.get('add')) or ():
        if ad_codecs.dn_key(dn) in failed_creates:
            return dn
    return None


def _apply_one(client, op, result, failed):
    """Send one operation (or refuse it: its group failed before, or it acts on or links a failed
    create), setting its ``outcome`` and recording what happened in ``result``; the caller appends
    it to ``result.executed``. Raises the ADError of a lost connection (``op`` and its group marked
    in error first)."""
    gid = op.get('group_id')
    if gid in failed:
        op['outcome'] = 'skipped_after_error'
        return
    failed_dn = _uses_failed_create(op, result.failed_creates)
    if failed_dn is not None:
        msg = 'Not written: %s would act on or link %s, whose create failed in this run (another object may hold ' \
              'that name); the next run plans it again' % (op['dn'], failed_dn)
        op.update(outcome='error', error=msg)
        failed.add(gid)
        result.errors[gid] = msg
        return
    try:
        outcome = _create(client, op, result) if op['op'] == 'create' else _execute(client, op)
    except ADError as err:
        msg = err.msg if op['dn'] in err.msg else '%s (group %s)' % (err.msg, op['dn'])
        op.update(outcome='error', error=msg)
        if op['op'] == 'create':
            result.failed_creates[ad_codecs.dn_key(op['dn'])] = op['dn']
        result.errors[gid] = msg
        if _fatal(err):
            raise
        failed.add(gid)
        return
    if outcome != 'adopted_concurrent' or result.adopted[gid]['wrote']:
        result.changed = True
    op['outcome'] = outcome


def _stop(result, err, not_run):
    """The run stops on a lost connection: ``not_run`` are marked and kept, ``err`` carries ``result``."""
    result.fatal = err
    result.not_run = list(not_run)
    for rest in result.not_run:
        rest['outcome'] = 'not_run'
    err.applied = result
    return err


def _linked_dns(ops):
    """dn_keys of every DN ``ops`` create, or rename or move from or to: a write naming one of them
    must wait for that operation."""
    out = set()
    for op in ops:
        if op['op'] == 'create':
            out.add(ad_codecs.dn_key(op['dn']))
        elif op['op'] == 'modify_dn':
            out.add(ad_codecs.dn_key(op['dn']))
            out.add(ad_codecs.dn_key('%s,%s' % (op['new_rdn'], op.get('new_superior') or ad_codecs.parent_dn(op['dn']))))
    return out


def _names(op, linked):
    """Whether ``op`` has a value naming one of ``linked`` (any DN-like string among its member
    changes or attribute values)."""
    values = list(op.get('add') or ()) + list(op.get('remove') or ())
    for value in (op.get('changes') or {}).values():
        values.extend(value if isinstance(value, list) else [value])
    for value in values:
        if isinstance(value, str) and '=' in value:
            try:
                if ad_codecs.dn_key(value) in linked:
                    return True
            except ValueError:
                continue
    return False


def _independent(op, linked):
    """Whether ``op`` can be sent beside the other groups' writes: a member or attribute change of a
    group that exists before the plan runs and keeps its DN through it (or is written by objectGUID),
    naming no DN this plan creates, renames or moves. Creates, renames, moves and deletes, and the
    writes that wait for them, keep the plan's order."""
    if op['op'] not in ('members', 'modify'):
        return False
    if not op.get('object_guid') and ad_codecs.dn_key(op['dn']) in linked:
        return False
    return not _names(op, linked)


PARALLEL_MIN = 8   # fewer independent writes than this are sent in order: a connection costs more


def segments(ops, connections):
    """``ops`` cut into runs that keep the plan's order (``(False, ops)``) and runs of at least
    ``PARALLEL_MIN`` independent writes (``(True, ops)``) that may be spread over ``connections``.
    Pure."""
    if connections < 2:
        return [(False, list(ops))] if ops else []
    linked = _linked_dns(ops)
    out = []
    for op in ops:
        free = _independent(op, linked)
        if out and out[-1][0] == free:
            out[-1][1].append(op)
        else:
            out.append((free, [op]))
    merged = []
    for free, run in out:
        free = free and len(run) >= PARALLEL_MIN
        if merged and merged[-1][0] == free:
            merged[-1][1].extend(run)
        else:
            merged.append((free, run))
    return merged


def _in_order(client, ops, rest, result, failed):
    """``ops`` one after the other on ``client``; ``rest()``: the plan's operations after them
    (``not_run`` when the connection is lost)."""
    for index, op in enumerate(ops):
        try:
            _apply_one(client, op, result, failed)
        except ADError as err:
            result.executed.append(op)
            raise _stop(result, err, ops[index + 1:] + rest())
        result.executed.append(op)


def group_queue(ops):
    """A queue of ``ops``'s writes by group, each group's in the plan's order, the groups in the
    order of their first write: what the connections of a parallel run take from (also floor.py's)."""
    by_group = OrderedDict()
    for op in ops:
        by_group.setdefault(op.get('group_id'), []).append(op)
    queue = Queue()
    for batch in by_group.values():
        queue.put(batch)
    return queue


def _side_by_side(clients, ops, rest, result, failed):
    """``ops`` (independent writes) over ``clients`` at once: each group's writes in order on one
    connection, the groups handed out as the connections free up. On a lost connection every
    connection stops after its current write; what was not sent is ``not_run``."""
    queue = group_queue(ops)
    stop = threading.Event()
    fatal = []

    def work(client):
        while not stop.is_set():
            try:
                batch = queue.get_nowait()
            except Empty:
                return
            for op in batch:
                if stop.is_set():
                    return
                try:
                    _apply_one(client, op, result, failed)
                except ADError as err:
                    fatal.append(err)
                    stop.set()
                    return
                except Exception as exc:  # pylint: disable=broad-except
                    fatal.append(exc)   # a bug, not the DC: raised as it is once the others stopped
                    stop.set()
                    return
    threads = [threading.Thread(target=work, args=(client,), name='cloudsync-write-%d' % i) for i, client in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Reported in the plan's order, whatever order the connections took.
    result.executed.extend(op for op in ops if 'outcome' in op)
    if fatal:
        err = fatal[0]
        if not isinstance(err, ADError):
            raise err
        raise _stop(result, err, [op for op in ops if 'outcome' not in op] + rest())


def apply_plan(client, ops, check_mode=False, result=None, connections=1):
    """Run ``ops`` (a plan's ordered operations). Returns an ApplyResult (``result`` when given, so
    the caller holds it even when this raises); raises ADError when the connection is lost
    (nothing more can be done safely in this run), with the ApplyResult so far as ``err.applied``.
    Each operation gets its ``outcome`` (and ``error``) in place: copies of the 17,000 operations of
    a 20,000-group first run were 6 MB at its end, its peak.

    ``connections`` > 1: runs of independent writes (``segments``: member and attribute changes of
    groups that exist and keep their DN, naming nothing the plan creates or renames) are sent on
    that many connections to the DC at once (``client`` and siblings of it, opened on the first
    such run, closed and counted into ``client`` at the end), everything else in the plan's order
    on ``client``. The lab's DC wrote 600 member changes in 0.84 of the time on two connections
    (``benchmarks/write_concurrency.py``); a sibling that cannot connect leaves the writes on
    ``client``."""
    result = result if result is not None else ApplyResult()
    if check_mode:
        return result
    failed = set()
    parts = segments(ops, connections)
    others = None
    try:
        for index, (free, part) in enumerate(parts):
            def rest(after=index + 1):
                return [op for later in parts[after:] for op in later[1]]
            if free and others is None:
                others = []
                try:
                    for unused in range(connections - 1):
                        others.append(client.sibling())
                except ADError:
                    pass   # fewer connections: the writes go on those there are
            if free and others:
                _side_by_side([client] + others, part, rest, result, failed)
            else:
                _in_order(client, part, rest, result, failed)
    finally:
        for other in others or ():
            client.count_from(other)
            other.close()
    return result
