# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The writeback engine: read (Entra and AD), plan (pure), apply (or, in check mode, only plan).

``run_writeback(params, check_mode, diff_mode)`` is everything ``ad_group_writeback`` does; the
module only builds its argument spec and turns the result or a ``CloudSyncError`` into Ansible's
answer. Readers, planner and applier each live in their own file; this one only orders them.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import hashlib
import json
import os
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor, wait as wait_for
from queue import Queue

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import ad_changes, ad_codecs, ad_reader, incremental
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import delta_state, writeback_result
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_client import ADClient, ADError
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_codecs import dn_key
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.beside import beside
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.process_memory import limit_malloc_arenas
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.errors import CloudSyncError
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.writeback_apply import ApplyResult, apply_plan
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.writeback_early import EarlyCreates
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.writeback_plan import (
    describe_groups, group_id, planned_names, plan_writeback, summarise,
)


# LDAP connections a run writes its independent writes on (option ad_write_connections; see writeback_apply).
WRITE_CONNECTIONS = 2

PLAN_OPTIONS = ('target_ou', 'ou_map', 'naming', 'sam_account_name_template', 'membership', 'prune',
                'out_of_scope', 'soa_move', 'deletion_threshold', 'max_members', 'allow_admin_count', 'adopt_writeback_v2',
                'adopt_rename')


class WritebackError(CloudSyncError):
    """The run was refused or failed as a whole (the result so far is in ``details``)."""


class Refused(WritebackError):
    """The run refused its own plan: ``reason`` says why, ``advice`` what to do. The message says
    "Nothing was written" only of a run that wrote nothing: a first run writes groups while Graph is
    still read (writeback_early), before a refusal of its plan could be raised, and
    ``_failed_after_writes`` words the same refusal with ``message(written=True)``."""

    def __init__(self, reason, advice=None, details=None):
        self.reason, self.advice = reason, advice
        super(Refused, self).__init__(self.message(written=False), details=details)

    def message(self, written):
        return ' '.join(part for part in (
            'Refused: %s.' % self.reason, None if written else 'Nothing was written.', self.advice) if part)


def check_schema(client):
    """Refuse to run on AD whose schema lacks the anchor attribute (pre-2016 schema)."""
    schema_nc = client.root_dse().get('schema_naming_context')
    found = list(client.search(schema_nc, '(lDAPDisplayName=%s)' % ad_reader.ANCHOR_ATTRIBUTE, ['lDAPDisplayName'],
                               scope='onelevel'))
    if not found:
        raise WritebackError(
            'The AD schema of %s has no attribute %s, which written-back groups are anchored with: the forest needs the '
            'Windows Server 2016 schema or later (run hybrid_identity.cloud_sync.prereq_facts for the full check)'
            % (schema_nc, ad_reader.ANCHOR_ATTRIBUTE))


def reads_delta(params):
    """Whether the run reads Graph delta with a state file (all groups, ``delta_state_path``)."""
    return params.get('entra_groups') is None and bool(params.get('delta_state_path')) and bool(params.get('all_groups'))


def _desired_from_graph(params, old_state=None, listener=None):
    """Read the desired groups from Graph (see ``_desired``); ``old_state``: the delta state's head
    (``load_state``) when ``reads_delta``; ``listener``: see ``entra_reader.read_groups_report``."""
    # Imported here so that a run fed with entra_groups needs neither msal nor requests.
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.graph_client import GraphClient
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import entra_reader

    client = GraphClient(params)
    if reads_delta(params):
        # A delta run's groups are built once the run knows which ones it examines (see run_writeback).
        groups, new_state = entra_reader.read_groups_incremental(
            client, old_state, odata_filter=params.get('group_filter'),
            max_members=params['max_members'], writeback_enabled_only=bool(params.get('writeback_enabled_only')),
            build_groups=False, member_flags=False, listener=listener)
        return dict(groups=groups, graph=client, new_state=new_state, member_source=new_state.get('member_source'),
                    read_warnings=list(new_state.get('last_run', {}).get('warnings') or []))
    selected_ids, selected_names = entra_reader.split_selection(params.get('groups'))
    report = entra_reader.read_groups_report(
        client, ids=selected_ids or None, display_names=selected_names or None,
        odata_filter=params.get('group_filter'), all_groups=bool(params.get('all_groups')),
        members='direct', eligible_only=False, max_members=params['max_members'],
        include_nested=bool(selected_ids or selected_names),
        writeback_enabled_only=bool(params.get('writeback_enabled_only')), member_flags=False, listener=listener)
    groups = report['groups']
    # Selected groups left out by writeback_enabled_only were found: say why they are not written.
    filtered = report.get('skipped') or []
    read_warnings = list(report.get('warnings') or []) + [
        'Entra group %s (%s) is not enabled for writeback (writebackConfiguration/isEnabled) and writeback_enabled_only '
        'is set: not written' % (f['id'], f['display_name']) for f in filtered if params.get('groups')]
    # A display name matching several groups selects none of them (guessing could write the wrong
    # group); a group also selected by its id stays selected.
    ambiguous = report.get('ambiguous') or []
    guessed = set(i for entry in ambiguous for i in entry['ids']) - set(selected_ids)
    groups = [g for g in groups if g['id'] not in guessed]
    found_ids = set(g['id'] for g in groups) | set(f['id'] for f in filtered)
    found_names = set((g.get('display_name') or '').lower() for g in groups) | set(e['name'].lower() for e in ambiguous) | \
        set((f.get('display_name') or '').lower() for f in filtered)
    gone_ids = [i for i in selected_ids if i not in found_ids]
    not_found = gone_ids + [n for n in selected_names if n.lower() not in found_names]
    return dict(groups=groups, graph=client, not_found=not_found, gone_ids=gone_ids, ambiguous=ambiguous,
                member_source=report.get('member_source'), read_warnings=read_warnings)


# Options naming files the run writes. Each is checked before the first write to AD (in check mode
# too): a run must not write to AD and then find it cannot record what it did.
OUTPUT_PATH_OPTIONS = ('delta_state_path', 'report_path')


def check_output_paths(params):
    """Refuse (before anything is read or written) an output path the run could not write: its
    directory missing or not a directory, the path itself a directory, or no file creatable there
    (the check creates and removes a temporary file, as ``save_state`` will)."""
    problems = []
    for option in OUTPUT_PATH_OPTIONS:
        path = params.get(option)
        if not path:
            continue
        directory = os.path.dirname(os.path.abspath(path)) or '.'
        if os.path.isdir(path):
            problems.append('%s %s is a directory, not a file' % (option, path))
            continue
        if not os.path.isdir(directory):
            problems.append('%s %s cannot be written: its directory %s %s' % (
                option, path, directory, 'is not a directory' if os.path.exists(directory) else 'does not exist'))
            continue
        try:
            fd, probe = tempfile.mkstemp(prefix='.cloudsync-probe-', dir=directory)
            os.close(fd)
            os.unlink(probe)
        except (IOError, OSError) as exc:
            problems.append('%s %s cannot be written: %s' % (option, path, exc))
    if problems:
        raise Refused('; '.join(problems), details=dict(changed=False))


def containers_to_check(params, domain_dn, search_base):
    """[(what, dn)]: search_base, target_ou and every ou_map target (pure)."""
    out = [('search_base', search_base), ('target_ou', params.get('target_ou') or 'CN=Users,%s' % domain_dn)]
    for index, entry in enumerate(params.get('ou_map') or []):
        if isinstance(entry, dict) and entry.get('ou'):
            out.append(('ou_map[%d].ou' % index, entry['ou']))
    return out


def check_containers(client, params, domain_dn, search_base):
    """Refuse, before anything is planned or written (check mode included: it must not report a
    create the real run would refuse), a search_base, target_ou or ou_map target that does not
    exist in AD."""
    missing = []
    seen = {}
    for what, dn in containers_to_check(params, domain_dn, search_base):
        try:
            key = dn_key(dn)
        except ValueError as exc:
            missing.append('%s %r is not a valid distinguished name (%s)' % (what, dn, exc))
            continue
        if key not in seen:
            try:
                seen[key] = client.get(dn, ['objectClass']) is not None
            except ADError as err:
                if err.result is None:
                    raise
                seen[key] = False
        if not seen[key]:
            missing.append('%s %s does not exist on %s' % (what, dn, client.server))
    if missing:
        raise Refused('; '.join(missing), 'Create the container or correct the option.', details=dict(changed=False))


def load_state(path):
    """The delta state's head (``delta_state.load``: member lists read when needed)."""
    try:
        return delta_state.load(path)
    except delta_state.DeltaStateError as exc:
        raise WritebackError(str(exc))


def save_state(path, state, written=None):
    """Written atomically (``delta_state.save``): a crash mid-write never leaves a state that poisons the next run."""
    delta_state.save(path, state, written)


def _desired(params, old_state=None, listener=None):
    """What the run should write: ``dict(groups, graph (client or None), not_found (selections matching no
    group), gone_ids (selected ids matching no group), new_state (delta state to save, or None),
    ambiguous (display names matching several groups))``. ``old_state``: see ``_desired_from_graph``."""
    out = dict(graph=None, not_found=[], gone_ids=[], new_state=None, ambiguous=[], member_source=None, read_warnings=[])
    if params.get('entra_groups') is not None:
        groups = params['entra_groups']
        for g in groups:
            if not isinstance(g, dict) or not g.get('id'):
                raise WritebackError('entra_groups must be groups as returned by entra_group_info (each with an id)')
            if g.get('members') is None:
                raise WritebackError('Entra group %s (%s) in entra_groups was read without members: read it with members=direct'
                                     % (g.get('id'), g.get('display_name')))
        out['groups'] = list(groups)
        return out
    out.update(_desired_from_graph(params, old_state, listener))
    return out


def _share_members(groups):
    """One dict per Entra member instead of one per membership: the reader builds a member dict for
    every (group, member) pair, 196,000 of them for 50,000 objects in the 2,000-group benchmark
    tenant. Only equal dicts are shared, and nothing downstream changes member dicts."""
    seen = {}
    for group in groups:
        members = group.get('members')
        if not members:
            continue
        for index, member in enumerate(members):
            key = member.get('id') if isinstance(member, dict) else None
            if key is None:
                continue
            first_seen = seen.setdefault(key, member)
            if first_seen is not member and first_seen == member:
                members[index] = first_seen


def refuse_unmatched_scope(params, selected_ids, desired, managed, deletions, search_base):
    """All mode, a full read, managed groups under search_base, Entra groups in scope, and not one
    of them is the Entra group of a managed group, while the plan deletes: every group written so
    far would count as deleted in Entra. That is what credentials for the wrong tenant (or a
    search_base holding another tenant's groups) look like, not a real deletion of every group:
    refused unless prune_empty_scope says it is meant. ``selected_ids`` is None only for a full
    all-mode read (incremental and selected runs are bounded by what changed or was selected)."""
    if not deletions or selected_ids is not None or not desired or params.get('prune_empty_scope'):
        return
    anchored = set(ad_codecs.group_id_from_anchor(o.get('anchor')) for o in managed) - set([None])
    if not anchored or anchored & set(group_id(g) for g in desired):
        return
    raise Refused(
        'none of the %d managed groups under %s belongs to one of the %d Entra groups in scope, so prune would delete them '
        'all as deleted in Entra' % (len(anchored), search_base, len(desired)),
        'This is what credentials for another tenant look like: check tenant_id and search_base; set prune_empty_scope=true '
        'if removing them all is intended.', details=dict(changed=False, managed_groups=len(anchored)))


def refuse_empty_scope(params, selected_ids, desired, managed, search_base):
    """All mode with no Entra group in scope and a plan that deletes managed groups (``managed``:
    the ones it would delete): that is far more often a group_filter typo, a wrong tenant or an
    empty entra_groups than an intent. Refused unless prune_empty_scope says it is meant.
    (Selected mode is bounded by its selection.)"""
    if not params.get('prune') or selected_ids is not None or desired or not managed:
        return
    if params.get('prune_empty_scope'):
        return
    raise Refused(
        'no Entra group is in scope, so prune would delete all %d managed groups under %s' % (len(managed), search_base),
        'Check groups, group_filter, entra_groups and the tenant; set prune_empty_scope=true if removing them all is '
        'intended.', details=dict(changed=False, managed_groups=len(managed)))


def deletion_scope(params, ad, graph, search_base, selected_ids, desired, managed):
    """``(managed, existing_group_ids)`` for the planner's deletes.

    The managed groups that are not desired (orphans) are looked up in Graph: a group deleted in
    Entra has its copy deleted under ``prune`` (Cloud Sync does); one that still exists only left
    the scope (``out_of_scope`` decides). Without Graph (``entra_groups``) ``existing_group_ids``
    is None: orphans count as out of scope.

    Selected mode with ``prune``: the managed groups outside the selection are read too (without
    members). The copy of a group deleted in Entra is deleted whichever selection wrote it; one that
    still exists (another run's selection) is left out of this run, unless ``out_of_scope`` is
    ``delete``, which deletes every managed group under search_base that is not selected.
    """
    desired_ids = set(group_id(g) for g in desired)
    others = []
    if selected_ids is not None and params.get('prune'):
        known = set(ad_codecs.group_id_from_anchor(o.get('anchor')) for o in managed)
        others = [o for o in ad_reader.read_managed_groups_without_members(ad, search_base)
                  if ad_codecs.group_id_from_anchor(o.get('anchor')) not in known]
        managed = managed + others
    if graph is None:
        return managed, None
    orphans = set(ad_codecs.group_id_from_anchor(o.get('anchor')) for o in managed) - desired_ids - set([None])
    existing = entra_reader_existing(graph, orphans)
    if others and params.get('out_of_scope') != 'delete':
        managed = [o for o in managed if not any(o is x for x in others)
                   or ad_codecs.group_id_from_anchor(o.get('anchor')) not in existing]
    return managed, sorted(existing)


def entra_reader_existing(graph, ids):
    """``entra_reader.existing_group_ids`` (imported here: a run with entra_groups needs no Graph libraries)."""
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import entra_reader
    return entra_reader.existing_group_ids(graph, ids) if ids else set()


def synced_group_members(desired):
    """{member id: objectSid} of the AD-synced groups (members of type group that are not written in
    this run and carry an on-premises SID) listed as members of the desired groups."""
    ids = set(group_id(g) for g in desired)
    out = {}
    for group in desired:
        for member in group.get('members') or []:
            mid = str(member.get('id') or '').lower()
            if member.get('type') == 'group' and mid not in ids and member.get('on_premises_security_identifier'):
                out[mid] = member['on_premises_security_identifier']
    return out


def resolve_synced_groups(gc, synced):
    """{member id: {"dn", "matched_by": "sid"}} for AD-synced member groups found in the forest (Global
    Catalog) by objectSid. The planner keeps such a group in a parent that has it and never adds it:
    Cloud Sync does not provision references to AD-synced groups
    (https://learn.microsoft.com/en-us/entra/identity/hybrid/cloud-sync/how-provisioning-to-active-directory-works),
    and Entra does list them as members, so an authoritative run must not remove them either."""
    by_sid = {}
    for obj in ad_reader.read_groups_by_sid(gc, '', sorted(set(synced.values()))):
        if obj.get('object_sid'):
            by_sid[str(obj['object_sid']).upper()] = obj['dn']
    return dict((mid, {'dn': by_sid[str(sid).upper()], 'matched_by': 'sid'})
                for mid, sid in synced.items() if str(sid).upper() in by_sid)


def read_soa_originals(ad, domain_dn, desired, managed):
    """The original AD groups (by objectSid, anywhere in the domain) of desired groups whose source of
    authority moved to the cloud and that no managed group carries the anchor of yet."""
    anchored = set(ad_codecs.group_id_from_anchor(o.get('anchor')) for o in managed)
    sids = [g.get('on_premises_security_identifier') for g in desired
            if g.get('cloud_managed') is True and g.get('on_premises_security_identifier')
            and group_id(g) not in anchored]
    return ad_reader.read_groups_by_sid(ad, domain_dn, sids) if sids else []


# Options besides PLAN_OPTIONS that change what a run writes for the same Entra and AD state.
FINGERPRINT_OPTIONS = ('member_match',)


def plan_fingerprint(params, options):
    """What the AD part of the state remembers of the options: a run with other options (another
    target_ou, naming, membership...) must examine every group, not only the changed ones."""
    data = dict(options)
    data.update((k, params.get(k)) for k in FINGERPRINT_OPTIONS if params.get(k) is not None)
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode('utf-8')).hexdigest()


def groups_from_state(state, max_members, with_members):
    """``entra_reader.groups_from_state`` (imported here: a run with entra_groups needs no Graph libraries)."""
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import entra_reader
    if with_members is None or with_members:
        delta_state.hydrate(state)   # member lists wanted: read (or, a full read's, made) now
    return entra_reader.groups_from_state(state, max_members, with_members, member_flags=False)


def saved_ad_state(old_state):
    """The AD part (``ad``) of a loaded delta state, or None."""
    return old_state.get('ad') if isinstance(old_state, dict) else None


def _reach_ad(ad, params, old_state, fingerprint):
    """Connect to AD and check it (schema, containers); with a delta state, read its side of the
    scope (``ad_scope``). Returns ``(domain_dn, search_base, scope or None)``."""
    ad.connect()
    check_schema(ad)
    domain_dn = ad.root_dse().get('default_naming_context')
    search_base = params.get('search_base') or domain_dn
    check_containers(ad, params, domain_dn, search_base)
    return domain_dn, search_base, ad_scope(ad, domain_dn, search_base, old_state, fingerprint) if reads_delta(params) else None


def ad_scope(ad, domain_dn, search_base, old_state, options):
    """The AD side of a delta run's scope, read while Graph is (it needs nothing from Graph):
    ``(mark, reason, ad_changed)``. ``mark`` is the DC's uSN mark now (saved for the next run),
    ``reason`` why the saved AD state cannot be used (None: it can), ``ad_changed`` the Entra ids
    whose AD copy someone else changed since the saved mark (None with a reason).
    Read before any group is, so a change made during this run is seen by the next one."""
    mark = ad_changes.read_watermark(ad)
    saved = saved_ad_state(old_state)
    reason = ad_changes.unusable_reason(saved, mark, search_base, options=options)
    ad_changed = None
    if reason is None:
        ad_changed = ad_changes.groups_to_reread(ad_changes.read_changed_groups(ad, domain_dn, saved['usn']), saved, search_base)
        if saved.get('unresolved_members') and ad_changes.users_changed_since(ad, domain_dn, saved['usn']):
            reason = 'users_changed'   # a member that did not resolve last time may resolve now
    return mark, reason, ad_changed


def incremental_scope(scope, old_state, new_state, max_members=None):
    """For a run with a delta state: ``(mark, ids, reason, ad_changed)``, from ``ad_scope``'s answer
    and Graph's changes. ``ids`` the Entra group ids changed on either side since the last run, and
    those the last run did not write as planned (None: examine all, for ``reason``); ``ad_changed``
    those whose AD copy someone else changed, and the unsettled ones (both compared in full)."""
    mark, reason, ad_changed = scope
    saved = saved_ad_state(old_state)
    ids, reason = incremental.examine(incremental.entra_changed_ids(old_state, new_state, max_members), ad_changed, reason)
    unsettled = set((saved or {}).get('unsettled') or ()) & set((new_state.get('groups') or {}))
    # Every group examined (ids None), in full: nothing compares with the old member lists, and the
    # new ones are made only if the groups are made from them (groups_from_state; a full read's
    # are in the groups it returned), so a full read does not hold both in memory.
    if ids is not None and (ids or unsettled):
        # Groups to examine: their member lists are needed (a run with no change on either side
        # never reads them; see delta_state).
        delta_state.hydrate(old_state)
        delta_state.hydrate(new_state)
    if ids is not None:
        # Not written as planned last time (incremental.unsettled_ids): examined again, in full; so
        # are the groups listing a group changed in AD or unsettled (their link to it may be missing).
        full = set(ad_changed) | unsettled
        full |= incremental.parents_of(new_state, full)
        ids = set(ids) | full
        ad_changed = full
    return mark, ids, reason, ad_changed


def narrow_to(desired, ids, deltas=None, old_state=None, new_state=None):
    """The desired groups to examine: those in ``ids``, and the groups nested in them as references
    (their AD copies hold the DNs the parents' member lists need; their own members are not
    examined, so they are passed as ``nested_only``). A group of ``deltas``
    (``incremental.member_deltas``) is passed with ``member_changes`` instead of its members (see
    ``writeback_plan``): its added members as ``new_state`` knows them, and its removed ones as
    ``old_state`` knew them."""
    deltas = deltas or {}
    examined = []
    for group in desired:
        gid = group_id(group)
        if gid not in ids:
            continue
        delta = deltas.get(gid)
        if delta is not None:
            group = dict(group, members=None, member_changes=dict(
                added=incremental.state_members(new_state, delta['added']),
                removed=incremental.state_members(old_state, delta['removed'])))
        examined.append(group)
    children = incremental.child_group_ids(examined, ids)
    return examined + [dict(group, nested_only=True, members=[]) for group in desired if group_id(group) in children]


def members_not_planned(desired):
    """Ids of the groups whose AD members a run does not read: nested references (``nested_only``)
    and groups planned from member changes."""
    return [group_id(g) for g in desired if g.get('nested_only') or g.get('member_changes') is not None]


def member_delta_fallback(desired, managed, mark):
    """Ids of the groups planned from member changes (``narrow_to``) whose AD copy is not as the last
    run left it after all: not exactly one copy among ``managed`` (deleted or duplicated meanwhile),
    or a copy changed since this run's ``mark`` (a change made by hand while the run was starting).
    They are compared in full instead."""
    copies = {}
    for obj in managed:
        gid = ad_codecs.group_id_from_anchor(obj.get('anchor'))
        copies.setdefault(gid, []).append(obj)
    back = set()
    for group in desired:
        gid = group_id(group)
        if group.get('member_changes') is None:
            continue
        found = copies.get(gid) or []
        if len(found) != 1 or (mark is not None and int(found[0].get('usn_changed') or 0) > int(mark['usn'])):
            back.add(gid)
    return back


def _start_members_file(params, new_state):
    """``(executor, future)``: the new members file of ``new_state`` written in a thread
    (``delta_state.write_members``); the future gives its reference for ``save_state``."""
    writer = ThreadPoolExecutor(max_workers=1)
    return writer, writer.submit(delta_state.write_members, params['delta_state_path'], new_state)


def release_members(groups, new_state, members_written=None):
    """Once the plan is made, the member lists of ``groups`` (read from Graph, or made from the
    state) serve nobody but the members file's writer (a full read's state keeps its member lists
    in the groups read: ``delta_state.GroupsRead``): once it is done (``members_written``, its
    future; its error is raised where the state is saved), the lists are dropped, and the member
    dicts with them. The writes, the read-back of the AD mark and the result are then made in the
    memory they held: at 200,000 users they had been the xlarge first run's peak (404 MB,
    memory_phases.py --apply). A state that holds its own member lists (a delta run's) does not
    need them: its writer is not waited for, and goes on beside the writes."""
    if delta_state.is_lazy(new_state):
        if members_written is not None:
            wait_for([members_written])
        delta_state.release_members(new_state)
    for group in groups:
        if group.get('members'):
            group['members'] = ()


def not_examined_counts(desired, examined_ids):
    """Summary counts of the in-scope groups an incremental run did not examine (nothing changed on
    either side since the last run): eligible ones are unchanged, the others skipped."""
    unchanged = skipped = 0
    for group in desired:
        if group_id(group) in examined_ids:
            continue
        if group.get('eligible', True):
            unchanged += 1
        else:
            skipped += 1
    return unchanged, skipped


def next_ad_state(ad, domain_dn, search_base, mark, old_state, examined_ids, managed, plan_ops, groups, fingerprint=None):
    """The AD part of the state file after an applied run (see ad_changes): the managed groups
    (objectGUID -> Entra id) and a mark for the next run's search.

    A run that wrote saves the DC's mark read after its writes, so the next run does not read its
    17,000 new groups back as changes: the groups someone else changed between this run's start
    and that mark (found by reading the changed groups back now) are kept as unsettled, compared
    in full next time. When that cannot be trusted (a member that did not resolve may resolve
    through a user created meanwhile, or the second mark is not of the same DC) the mark read at
    the start is saved with the uSNChanged of this run's own writes, which the next run skips."""
    saved = saved_ad_state(old_state)
    known = dict((saved or {}).get('managed') or {}) if examined_ids is not None else {}
    for obj in managed:
        gid = ad_codecs.group_id_from_anchor(obj.get('anchor'))
        if gid and obj.get('object_guid'):
            known[obj['object_guid']] = gid
    written = set(op.get('group_id') for op in plan_ops)
    unresolved = any(rep.get('unresolved_members') for rep in groups)
    if examined_ids is not None and saved:
        unresolved = unresolved or bool(saved.get('unresolved_members'))
    unsettled = incremental.unsettled_ids(groups, (saved or {}).get('unsettled') if examined_ids is not None else None,
                                          examined_ids)
    own = {}
    save_mark = mark
    if written:
        after = None if unresolved else ad_changes.read_watermark(ad)
        # The groups this run wrote, and the few someone else changed meanwhile (ADClient.search:
        # within a page, one unpaged search; Samba ignores a request's size limit, so the estimate
        # is kept for answers that fit a page).
        changed = ad_changes.read_changed_groups(ad, domain_dn, mark['usn'], expected=len(written))
        own, others = ad_changes.split_own_writes(changed, written, known, search_base)
        if after is not None and after.get('invocation_id') == mark.get('invocation_id') and after['usn'] >= mark['usn']:
            save_mark, own = after, {}
            unsettled = set(unsettled) | others
    return ad_changes.new_state(save_mark, search_base, known, own, previous=saved if examined_ids is not None else None,
                                full_read=examined_ids is None, unresolved_members=unresolved, options=fingerprint,
                                unsettled=unsettled)


def incremental_report(new_state, examined, reason, desired, all_desired, summary):
    """What an incremental run read, for the result; folds the groups it did not examine (nothing
    changed on either side) into ``summary``."""
    last = new_state.get('last_run') or {}
    report = dict(entra=last.get('mode'), entra_reason=last.get('reason'), ad='usn' if examined is not None else 'full',
                  ad_reason=reason, examined_groups=len(desired) if examined is not None else len(all_desired),
                  in_scope_groups=len(all_desired))
    if examined is not None:
        unchanged, skipped = not_examined_counts(all_desired, set(group_id(g) for g in desired))
        summary['unchanged'] = summary.get('unchanged', 0) + unchanged
        summary['skipped'] = summary.get('skipped', 0) + skipped
    return report


def _resolve(ad, domain, params, domain_dn, users, member_guids=None, pool=None):
    """``{entra id: dn or {"dn": None, "reason"}}`` of ``users`` (member dicts), through ``ad``'s
    Global Catalog; ``domain``: the client of ``ad``'s domain for the consistency-GUID searches (see
    ``ad_reader.resolve_users``), None for none; ``pool``: see ``resolve_users``. The planner takes
    both shapes (``writeback_plan._resolved_dn``); the unresolved share one dict per reason (nobody
    changes them)."""
    resolution, unresolved = ad_reader.resolve_users(ad.global_catalog(), users, params.get('member_match') or 'auto',
                                                     known_guids=member_guids, domain=domain, domain_base=domain_dn,
                                                     connections=ad_reader.RESOLVE_CONNECTIONS, dn_only=True, pool=pool)
    reasons = {}
    for uid, why in unresolved.items():
        # the planner reports the reason
        resolution[uid] = reasons.get(why) or reasons.setdefault(why, {'dn': None, 'reason': why})
    return resolution


class _EarlyResolution(object):
    """``_resolve`` of ``users`` in a thread, while the caller goes on reading with ``ad``: the
    domain searches go to a connection of its own to the same DC (``ADClient.sibling``), whose
    request counts are added to ``ad``'s when it closes."""

    def __init__(self, ad, params, domain_dn, users):
        self.ad = ad
        self.domain = None
        self.pool = self.future = None
        if users:
            self.pool = ThreadPoolExecutor(max_workers=1)
            self.future = self.pool.submit(self._run, params, domain_dn, users)

    def _run(self, params, domain_dn, users):
        # The connections too are opened on the thread (new ones: the caller's is not touched); a
        # failure to open them is raised by ``result``. The domain's serves only the
        # consistency-GUID searches, for users nothing else resolved: it connects if one is made.
        self.ad.global_catalog()
        self.domain = self.ad.sibling(connect=False)
        return _resolve(self.ad, self.domain, params, domain_dn, users)

    def result(self):
        try:
            return self.future.result() if self.future is not None else {}
        finally:
            self.close()

    def close(self):
        if self.pool is not None:
            self.future.exception()   # never close a connection a search still uses
            self.pool.shutdown()
            self.pool = None
        if self.domain is not None:
            self.ad.count_from(self.domain)
            self.domain.close()
            self.domain = None


class _StreamedResolution(object):
    """The users of all mode's full read resolved while Graph is still read: a first run's. Graph's member
    pages are handed to ``add`` as they arrive (the read's listener, on Graph's workers); a
    thread of this object waits until AD is reached (``reached``), then resolves the users, ``BATCH``
    new ones at a time, on an ``ad_reader.search_pool`` of ``ad``'s Global Catalog connection (the
    caller's searches go to the domain until ``result``) and another, and the last ones once the read
    is over (``finish``), while the caller reads AD. The large
    benchmark's first run read Graph for 3.1 s and then resolved its 20,000 users for 3.8 s.

    Only when no group under the search base carries our anchor (``ad_reader.has_managed_groups``):
    otherwise the objectGUIDs of the managed groups' members resolve most users without a search
    (see run_writeback) and this resolves nothing (``declined``); nor when its thread meets an error
    (a connection, a search): the run then resolves the users itself, and meets the error there if
    it is the DC's. The consistency-GUID searches
    (``resolve_users``: each scans the domain's users) are not made here, a batch at a time:
    ``result(users)`` leaves the users no search found (``not_found_in_forest``) to the caller,
    who resolves them as without this; and a user whose member dict differs from the one resolved
    (a beta read refused part-way is read again from v1.0, with other identifiers). Each user's
    answer depends on its identifiers and the directory alone, so the answers are those of
    resolving all the users at once."""

    BATCH = 1000
    _END = object()

    def __init__(self, ad, params):
        self.ad = ad
        self.params = params
        self.queue = Queue()
        self.where = None
        self.reach = threading.Event()
        self.lock = threading.Lock()
        self.stopped = False
        self.seen = {}          # id -> the member dict resolved
        self.differ = set()     # ids seen with other identifiers too: left to the caller
        self.found = {}
        self.declined = None
        self.checked = threading.Event()   # set once it knows whether it resolves (``declined``)
        self.on_resolved = None            # called with ``resolved`` after each batch (its thread)
        self.taken = self.resolved = 0     # users queued, and resolved in that order
        self.domain = self.search = None
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.future = self.pool.submit(self._run)

    # The read's listener (``entra_reader.ReadListener``) when nothing else listens.
    def listed(self, groups):
        pass

    def members(self, members):
        self.add(members)

    def complete(self, gid, items):
        pass

    def add(self, members):
        """Graph's page of ``members`` (on a Graph worker): its users not seen before are queued. Only
        those: at 20,000 groups the resolution lagged the read, and the pages queued meanwhile held
        the run's peak higher. Nothing once it declined."""
        fresh = []
        with self.lock:
            if self.declined is not None:
                return
            self._take(members, fresh)
            if fresh:
                # Queued in the order counted (``taken_users``): the thread resolves in that order.
                self.taken += len(fresh)
                self.queue.put(fresh)

    def reached(self, domain_dn, search_base):
        """AD is reached (``_reach_ad``): the thread may search it."""
        self.where = (domain_dn, search_base)
        self.reach.set()

    def finish(self):
        """Graph is read: the users still waiting are resolved now."""
        self.queue.put(self._END)

    def _take(self, members, batch):
        for member in members:
            uid = member.get('id') if member.get('type') == 'user' else None
            if not uid:
                continue
            first_seen = self.seen.get(uid)
            if first_seen is None:
                self.seen[uid] = member
                batch.append(member)
            elif first_seen is not member and first_seen != member:
                self.differ.add(uid)

    def _decline(self, why):
        """Answer for nobody (the run resolves every user itself, as without this) and take no more."""
        with self.lock:
            self.declined = why
            self.seen, self.found = {}, {}
        while not self.queue.empty():
            self.queue.get()

    def taken_users(self):
        """How many users were queued so far; once ``resolved`` reaches it, they all were resolved."""
        return self.taken

    def answer(self, member):
        """``(state, answer)`` for one user (a member dict as listed): ``('ok', answer)`` once
        resolved as ``result`` would give it, ``('pending', None)``, or ``('never', None)``: it
        declined, or ``result`` will leave this user to the run (see the class docstring)."""
        uid = member.get('id')
        with self.lock:
            if self.declined is not None or uid in self.differ:
                return 'never', None
            first_seen = self.seen.get(uid)
            if first_seen is not None and not (first_seen is member or first_seen == member):
                return 'never', None
            found = self.found.get(uid)
        if found is None:
            return 'pending', None
        if isinstance(found, dict) and found.get('reason') == 'not_found_in_forest':
            return 'never', None
        return 'ok', found

    def _run(self):
        self.reach.wait()
        if self.stopped:
            self.declined = 'stopped'
            self.checked.set()
            return
        try:
            self._resolve_stream()
        except Exception as exc:  # pylint: disable=broad-except
            # Nothing is lost: the run resolves the users itself, and meets the same error if it is the DC's.
            self._decline('error: %s' % (exc,))
        finally:
            self.checked.set()

    def _resolve_stream(self):
        domain_dn, search_base = self.where
        self.domain = self.ad.sibling()
        try:
            managed = ad_reader.has_managed_groups(self.domain, search_base)
        finally:
            self.domain.close()   # one search; its counts are added to ``ad``'s by ``close``
        if managed:
            self._decline('managed_groups')
            return
        self.checked.set()
        batch = []
        done = False
        while not done and not self.stopped:
            item = self.queue.get()
            if item is self._END:
                done = True
            else:
                batch.extend(item)
            if batch and not self.stopped and (done or len(batch) >= self.BATCH):
                if self.search is None:
                    # Opened for the first users: a run listing none never connects to the Global Catalog.
                    self.search = ad_reader.search_pool(self.ad.global_catalog())
                resolved = _resolve(self.ad, None, self.params, domain_dn, batch, pool=self.search)
                with self.lock:
                    self.found.update(resolved)
                    self.resolved += len(batch)
                if self.on_resolved is not None:
                    self.on_resolved(self.resolved)
                batch = []

    def result(self, users):
        """``_resolve``'s answer for those of ``users`` (the run's, as it would resolve them) this
        resolved, as described above; none when it declined (managed groups exist, or it met an
        error: the run's own resolution meets it too, if it is the DC's)."""
        self.finish()
        try:
            self.future.result()
        finally:
            self.close()
        # Its own map, less what it does not answer for, is the answer: a copy was 10 MB more at
        # 200,000 users (ids it resolved that ``users`` does not list are left in: nobody asks for them).
        with self.lock:
            found, seen, self.found, self.seen = self.found, self.seen, {}, {}
        for user in users:
            uid = user.get('id')
            answer = found.get(uid)
            if answer is None:
                continue
            first_seen = seen.get(uid)
            if uid in self.differ or (isinstance(answer, dict) and answer.get('reason') == 'not_found_in_forest') or \
                    not (first_seen is user or first_seen == user):
                del found[uid]
        return found

    def close(self):
        if self.pool is not None:
            self.stopped = True
            self.reach.set()
            self.queue.put(self._END)
            self.future.exception()   # never close a connection a search still uses
            self.pool.shutdown()
            self.pool = None
        if self.search is not None:
            self.search.close()
            self.search = None
        if self.domain is not None:
            self.domain.close()
            self.ad.count_from(self.domain)
            self.domain = None


def _users_to_resolve(groups):
    """The users listed by ``groups``: their members, or the added and removed ones of
    ``member_changes`` (a removed user is resolved as the last run knew it, to find the DN it was
    written as)."""
    users = {}
    for g in groups:
        changes = g.get('member_changes') or {}
        for m in (g.get('members') or []) + (changes.get('added') or []) + (changes.get('removed') or []):
            if m.get('type') == 'user' and m.get('id'):
                users.setdefault(m['id'], m)
    return list(users.values())


def _merge_apply(plan_dict, applied):
    """Fold what the applier did into the report and summary: per-group errors, groups a
    concurrent run created a moment ago (adopted: ``updated`` or ``unchanged``, never ``created``),
    and, when the run stopped, the groups whose operations were not (all) run."""
    if not applied.errors and not applied.notes and not applied.adopted and not applied.not_run:
        return
    not_reached = set(op.get('group_id') for op in applied.not_run)
    stopped = (getattr(applied.fatal, 'msg', None) or str(applied.fatal)) if applied.fatal is not None else None
    for rep in plan_dict['groups']:
        gid = rep.get('id')
        if gid in applied.adopted and gid not in applied.errors:
            _report_adopted(rep, applied, plan_dict['diff'])
        if gid in applied.errors:
            rep['action'] = 'error'
            rep['reason'] = 'ldap_error'
            rep['reason_text'] = applied.errors[gid]
            if gid in plan_dict['diff']['after']:
                # The planned state was not reached (some of the group's operations may have run):
                # the diff must not show it as the result.
                plan_dict['diff']['after'][gid] = {'error': applied.errors[gid]}
        elif gid in not_reached:
            rep['action'] = 'error'
            rep['reason'] = 'not_applied'
            rep['reason_text'] = 'Not (fully) written: the run stopped before this group\'s operations ran (%s). ' \
                                 'The next run completes it.' % stopped
            if gid in plan_dict['diff']['after']:
                plan_dict['diff']['after'][gid] = {'error': rep['reason_text']}
        if gid in applied.notes:
            rep.setdefault('notes', []).extend(applied.notes[gid])
    # A group that failed counts as an error only, not also as created/updated/... as planned.
    plan_dict['summary'] = summarise(plan_dict['groups'])


def _report_adopted(rep, applied, diff):
    """A planned create that met the group already made by a concurrent run: report what this run
    changed on it, not a create."""
    info = applied.adopted[rep['id']]
    later = [dn for op in applied.executed if op.get('group_id') == rep['id'] and op['op'] == 'members'
             and op.get('outcome') == 'done' for dn in op.get('add') or []]
    added = list(info['members_added']) + later
    rep['members_added'] = added
    rep['members_removed'] = []
    rep['changes'] = dict(info['changes'])
    if added:
        rep['changes']['member'] = {'added': len(added), 'removed': 0}
    rep['action'] = 'updated' if rep['changes'] else 'unchanged'
    rep['adopted_concurrent'] = True
    if rep['action'] == 'unchanged':
        diff['before'].pop(rep['id'], None)
        diff['after'].pop(rep['id'], None)
    else:
        diff['before'][rep['id']] = dict((attr, c['before']) for attr, c in info['changes'].items())
        diff['after'][rep['id']] = dict((attr, c['after']) for attr, c in info['changes'].items())
        if added:
            diff['after'][rep['id']]['members_added'] = added


def _executed_plan(applied, ops):
    """The plan as run: each operation with its ``outcome`` (``not_run`` for those never sent)."""
    if not applied.executed and not applied.not_run:
        return ops
    return applied.executed + applied.not_run


def _shaped(result, params):
    """A result, or a failure's details, with its lists bounded as ``member_details``,
    ``member_sample_size`` and ``unchanged_groups`` say (``writeback_result.shape``). At xlarge a first run stopped after
    16,921 creates returned its details unshaped, and its process peaked at 712.5 MB."""
    return writeback_result.shape(result, params.get('member_details') or 'sample',
                                  params.get('member_sample_size') or writeback_result.DEFAULT_SAMPLE,
                                  unchanged_groups(params))


def unchanged_groups(params):
    """``unchanged_groups`` as the run applies it: as given, else V(findings) in all mode (a
    scheduled run of every group) and V(all) when the groups are selected or given."""
    return params.get('unchanged_groups') or ('findings' if params.get('all_groups') else 'all')


def _failed_after_writes(exc, result, applied, ops, params, report=True):
    """The run wrote to AD and then failed: the failure says changed, with what was done, bounded
    as a result is; ``report_path`` gets the full lists first (``report=False``: writing it is what failed)."""
    if applied.fatal is not None:
        _merge_apply(result, applied)
        what = 'stopped after it wrote to AD: %s' % (exc.msg if isinstance(exc, ADError) else exc)
        advice = 'the groups not reached are listed with reason not_applied; the next run finds every group made by its ' \
                 'anchor and completes the rest'
    else:
        # Groups written early (writeback_early) were written: a refusal of the plan says so (Refused.message).
        what = 'wrote to AD and then failed: %s' % (exc.message(written=True) if isinstance(exc, Refused) else
                                                    getattr(exc, 'msg', None) or '%s: %s' % (type(exc).__name__, exc))
        advice = 'what was written is in summary, groups and plan'
    details = dict(getattr(exc, 'details', None) or {})
    details.update(changed=True, summary=result['summary'], groups=result['groups'], plan=_executed_plan(applied, ops),
                   cycles=result['cycles'])
    if report and params.get('report_path'):
        try:
            writeback_result.write_report(params['report_path'], details, details['groups'])
            advice += '; the full member lists are in report_path %s' % params['report_path']
        except (IOError, OSError) as err:
            advice += '; the report file (report_path %s) could not be written either: %s' % (params['report_path'], err)
    summary = ', '.join('%s %d' % (k, v) for k, v in sorted(result['summary'].items()) if v and not k.endswith('_members'))
    err = WritebackError('The run %s (done: %s); %s' % (what, summary or 'nothing counted', advice),
                         details=_shaped(details, params))
    err.after_writes = True
    return err


def _outside_search_base(params, domain_dn, search_base):
    """Warnings for containers (target_ou, ou_map) outside search_base: groups written there are not
    found again by the next run, which then reports them as a name collision instead of updating them."""
    containers = [params.get('target_ou') or 'CN=Users,%s' % domain_dn]
    containers += [e.get('ou') for e in params.get('ou_map') or [] if isinstance(e, dict) and e.get('ou')]
    out = []
    for container in containers:
        try:
            inside = ad_codecs.dn_is_within(container, search_base)
        except ValueError:
            continue  # the planner refuses an invalid DN with its own message
        if not inside and container not in [w[0] for w in out]:
            out.append((container, 'Groups placed in %s are outside search_base %s: later runs do not find them again (and report a '
                                   'name collision instead of updating them); widen search_base' % (container, search_base)))
    return [w[1] for w in out]


def _made_meanwhile(ad, search_base, desired, managed, taken, member_guids):
    """Groups another run created after ``managed`` was read: a planned DN now held by an object
    carrying the anchor of one of our desired groups. They are read again (by anchor, under
    search_base) and planned as the existing groups they are, not as a name collision and not as a
    create; overlapping runs then count each group as created once."""
    wanted = set(str(g.get('id')).lower() for g in desired if g.get('id'))
    have = set(ad_codecs.group_id_from_anchor(obj.get('anchor')) for obj in managed)
    late = sorted(set(gid for gid in (ad_codecs.group_id_from_anchor(obj.get('anchor')) for obj in taken.values())
                      if gid and gid in wanted and gid not in have))
    if not late:
        return []
    return ad_reader.read_managed_groups(ad, search_base, late, member_guids=member_guids)


def refuse_not_found(params, not_found):
    """With fail_on_not_found, a selected id or display name that matches no Entra group fails the
    run before anything is read from or written to AD, naming them."""
    if not_found and params.get('fail_on_not_found'):
        raise Refused('%d selected group(s) not found in Entra (fail_on_not_found): %s'
                      % (len(not_found), ', '.join(str(x) for x in not_found)),
                      details=dict(changed=False, not_found=list(not_found)))


def _value_change(before, after, attr):
    return {'before': before.get(attr), 'after': after.get(attr)}


def attach_change_values(groups, diff):
    """Turn each report's ``changes`` (attribute names, as planned) into
    ``{attribute: {"before": old, "after": new}}`` from the plan's diff, so a report can show old
    and new values. ``cn`` and ``container`` come from ``previous_dn`` and ``dn``; ``member`` is
    ``{"added": n, "removed": n}`` (the DNs are in members_added and members_removed)."""
    for rep in groups:
        names = rep.get('changes')
        if isinstance(names, dict):
            continue
        before = diff['before'].get(rep.get('id')) or {}
        after = diff['after'].get(rep.get('id')) or {}
        out = {}
        for attr in names or []:
            if attr in ('cn', 'container'):
                pick = ad_codecs.rdn_value if attr == 'cn' else ad_codecs.parent_dn
                old = rep.get('previous_dn')
                out[attr] = {'before': pick(old) if old else None, 'after': pick(rep['dn']) if rep.get('dn') else None}
            elif attr == 'member':
                out[attr] = {'added': len(rep.get('members_added') or []), 'removed': len(rep.get('members_removed') or [])}
            else:
                out[attr] = _value_change(before, after, attr)
        rep['changes'] = out


def ansible_diff(diff, groups):
    """The plan's diff ({"before": {id: ...}, "after": {id: ...}}) as Ansible's list of per-group
    diffs, each headed by the group's DN (before: the DN it had, after: the DN it gets), in the
    order of ``groups``."""
    out = []
    seen = set()
    known = set(rep.get('id') for rep in groups)
    leftovers = [{'id': gid} for gid in sorted(set(diff['before']) | set(diff['after'])) if gid not in known]
    for rep in list(groups) + leftovers:
        gid = rep.get('id')
        if gid in seen or (gid not in diff['before'] and gid not in diff['after']):
            continue
        seen.add(gid)
        before = diff['before'].get(gid) or {}
        after = diff['after'].get(gid) or {}
        dn = after.get('dn') or rep.get('dn') or before.get('dn')
        old_dn = before.get('dn') or rep.get('previous_dn') or dn
        out.append(dict(
            before_header=old_dn if before else '%s (absent)' % dn,
            after_header=(dn if after else '%s (deleted)' % old_dn) if 'error' not in after else '%s (not written)' % dn,
            before=before, after=after))
    return out


def _stats(*clients):
    total = {}
    for client in clients:
        if client is None:
            continue
        for key, value in client.stats.items():
            total[key] = total.get(key, 0) + value
    return total


def run_writeback(params, check_mode=False, diff_mode=False):
    """Run the whole writeback; returns the module result (without ``failed``), or raises
    WritebackError/CloudSyncError. Groups that failed individually are in the result with
    ``action: error``; the caller decides how to report them."""
    limit_malloc_arenas()   # before any thread: see process_memory
    check_output_paths(params)
    old_state = load_state(params['delta_state_path']) if reads_delta(params) else None
    options = dict((k, params.get(k)) for k in PLAN_OPTIONS if params.get(k) is not None)
    fingerprint = plan_fingerprint(params, options)
    ad = ADClient(params)
    # members_written: the future of the new members file's reference, until a saved head names it
    gc = early = members_writer = members_written = stream = writes_early = None
    applied = ApplyResult()
    try:
        if params.get('entra_groups') is None and params.get('all_groups') and old_state is None:
            # All mode's full read without a saved state (a first run): its users are resolved while
            # Graph is read, and (not in check mode) each group is written once what it needs is
            # known (writeback_early). A selection (an on-demand run of a few groups) would pay a
            # connection for little.
            stream = _StreamedResolution(ad, params)
            if not check_mode:
                writes_early = EarlyCreates(ad, params, options, stream, applied)
        # AD is connected to and checked and, with a delta state, its changes since the last run are
        # read (in a thread) while Graph is read: neither needs the other, and a delta run spends
        # most of its reading time waiting on one of the two servers. Graph's read stays on this
        # thread: what it allocates is most of the run's memory, and another thread's allocations
        # go to another malloc arena (a higher peak RSS).
        # A run that cannot read Graph says so first.

        def reach():
            where = _reach_ad(ad, params, old_state, fingerprint)
            for listener in (stream, writes_early):
                if listener is not None:
                    listener.reached(where[0], where[1])
            return where
        wanted, (domain_dn, search_base, scope) = beside(
            lambda: _desired(params, old_state, writes_early or stream), reach)
        if stream is not None:
            stream.finish()
        if writes_early is not None:
            writes_early.stop()
            if applied.fatal is not None:
                raise applied.fatal   # the connection was lost while writing early: reported below
            if not writes_early.planned:
                writes_early.close()
                writes_early = None
        desired, graph, not_found, new_state = wanted['groups'], wanted['graph'], wanted['not_found'], wanted['new_state']
        saving = new_state is not None and not check_mode
        if graph is not None and desired is not None:
            _share_members(desired)
        ambiguous = wanted['ambiguous']
        refuse_not_found(params, not_found)

        # With a delta state, only the groups changed on either side since the last run are examined
        # (Graph delta and the DC's uSN mark); ``examined`` None: all of them (``scope_reason`` says why).
        mark = examined = scope_reason = None
        deltas = {}
        if new_state is not None:
            mark, examined, scope_reason, ad_changed = incremental_scope(scope, old_state, new_state, params['max_members'])
            if examined is not None:
                # Groups changed in Entra only: planned from their member changes, their AD members not read.
                known = (saved_ad_state(old_state) or {}).get('managed') or {}
                deltas = incremental.member_deltas(old_state, new_state, examined, ad_changed, params['max_members'],
                                                   managed_ids=set(known.values()))
            if desired is None:
                # A Graph delta run: the groups, with members only for those compared in full.
                desired = groups_from_state(new_state, params['max_members'],
                                            None if examined is None else set(examined) - set(deltas))
        all_desired = desired
        if examined is not None:
            desired = narrow_to(desired, examined, deltas, old_state, new_state)
        ids = None
        if params.get('groups') and params.get('entra_groups') is None:
            # Selected mode: only the selected groups (and the groups nested in them) are in scope. A
            # selected id that no longer exists in Entra is read, so prune deletes its copy; other
            # managed groups are looked at only for deletes (see deletion_scope).
            ids = [g['id'] for g in desired] + wanted['gone_ids']

        # The members' objectGUIDs come with the managed groups (extended-DN control), so users
        # that already are members resolve without a Global Catalog search: a no-op run of 20,000
        # users spent most of its time in those searches. Only the GUIDs of users to resolve are kept.
        users = _users_to_resolve(desired)
        member_guids = ad_reader.KnownGuids(users)
        read_ids = ids
        if examined is not None:
            read_ids = sorted(set(examined) | set(group_id(g) for g in desired))
            # Few of the examined groups are read with their members (most are planned from their
            # member changes), so their members' objectGUIDs spare few Global Catalog searches: the
            # users are resolved (in a thread, on connections of their own) while the groups are read.
            early = _EarlyResolution(ad, params, domain_dn, users)
        if writes_early is not None:
            # No group carried the anchor when the run began (a first run): the managed groups are
            # those written since, as their writes make them (read back, their members would cost
            # what a full-read no-op does).
            managed = writes_early.written_objects()
        else:
            managed = ad_reader.read_managed_groups(ad, search_base, read_ids, member_guids=member_guids,
                                                    without_members=members_not_planned(desired) if read_ids is not None else ())
        back = member_delta_fallback(desired, managed, mark)
        if back:
            # Rare: planned again in full, with the groups nested in them, and read again with members.
            deltas = dict((k, v) for k, v in deltas.items() if k not in back)
            if wanted['groups'] is None:
                all_desired = groups_from_state(new_state, params['max_members'], set(examined) - set(deltas))
            desired = narrow_to(all_desired, examined, deltas, old_state, new_state)
            read_ids = sorted(set(examined) | set(group_id(g) for g in desired))
            users = _users_to_resolve(desired)
            member_guids = ad_reader.KnownGuids(users)
            managed = ad_reader.read_managed_groups(ad, search_base, read_ids, member_guids=member_guids,
                                                    without_members=members_not_planned(desired))
        if saving and delta_state.is_lazy(new_state):
            # A full read's new members file (the Entra side of the state: nothing below changes
            # it) is written in a thread from here on, while AD is read and the users resolved,
            # which wait on the DC; the head that names it is written once the writes are done and
            # the AD mark is read back, or the file is removed. Written here, before the users' DNs
            # and the plan exist, its chunks cost no peak: beside the writes they were the xlarge
            # first run's (375 -> 405 MB, memory_phases.py --apply). A delta run's is written
            # beside the writes (below).
            members_writer, members_written = _start_members_file(params, new_state)
        managed, existing_ids = deletion_scope(params, ad, graph, search_base, ids, desired, managed)
        soa_originals = read_soa_originals(ad, domain_dn, desired, managed)
        anchored = set(ad_codecs.group_id_from_anchor(o.get('anchor')) for o in managed)
        # Only a group to create may adopt a Writeback v2 group: one with an AD copy is not adopted (its v2
        # namesake, if any, is only a DN in use, which read_objects_at finds if the plan wants it), and an
        # ineligible one is not written.
        v2_candidates = ad_reader.read_writeback_v2_groups(
            ad, search_base, read_ids if read_ids is None else
            [group_id(g) for g in desired if group_id(g) not in anchored and g.get('eligible', True) is not False])

        names = planned_names(desired, options, domain_dn)
        # A planned DN held by a group read above is known already (the planner counts those as
        # taken itself, with the same dn/anchor/object_guid): only the others are looked up.
        held = set(dn_key(obj['dn']) for obj in managed + v2_candidates if obj.get('dn'))
        taken = ad_reader.read_objects_at(ad, domain_dn, [dn for dn in names['dns'] if dn_key(dn) not in held])
        managed = managed + _made_meanwhile(ad, search_base, desired, managed, taken, member_guids)
        sam_taken = ad_reader.read_sam_account_names(ad, domain_dn, names['sam_account_names']) \
            if names['sam_account_names'] else set()

        if stream is not None:
            resolution, stream = stream.result(users), None
        else:
            resolution = early.result() if early is not None else {}
        # All of them, or (after an early resolution) those of groups planned in full again since.
        users = [u for u in users if u.get('id') not in resolution]
        if users:
            resolution.update(_resolve(ad, ad, params, domain_dn, users, member_guids))
        gc = ad.global_catalog() if resolution else None
        synced_groups = synced_group_members(desired)
        if synced_groups:
            gc = gc or ad.global_catalog()
            resolution.update(resolve_synced_groups(gc, synced_groups))

        ad_state = dict(domain_dn=domain_dn, managed=managed, v2_candidates=v2_candidates, taken_dns=taken,
                        sam_taken=sorted(sam_taken), soa_originals=soa_originals)
        options['existing_group_ids'] = existing_ids
        plan = plan_writeback(desired, ad_state, resolution, options)
        result = plan.to_dict()
        if writes_early is not None:
            # The groups written early were planned as existing: their reports are the waves'.
            writes_early.close()   # its writes done, its connection's requests counted
            result = writes_early.merge(result)
            if applied.fatal is not None:
                for op in plan.ops:
                    op['outcome'] = 'not_run'
                applied.not_run.extend(plan.ops)
                raise _failed_after_writes(applied.fatal, result, applied, result['ops'], params)
        attach_change_values(result['groups'], result['diff'])
        refuse_unmatched_scope(params, ids if examined is None else [], all_desired, managed,
                               [op for op in plan.ops if op['op'] == 'delete'] or plan.threshold_deletions, search_base)
        refuse_empty_scope(params, ids, all_desired, [op for op in plan.ops if op['op'] == 'delete'] or
                           plan.threshold_deletions, search_base)
        if plan.deletion_threshold_exceeded:
            deletions = len(plan.threshold_deletions)
            raise Refused(
                'this run would delete %d groups, more than deletion_threshold=%d'
                % (deletions, params.get('deletion_threshold') or 0),
                'Check why so many groups left scope; raise deletion_threshold for one run if the deletions are intended. '
                'It would delete: %s.' % describe_groups(plan.threshold_deletions),
                details=_shaped(dict(summary=plan.summary, groups=plan.groups, changed=False, would_delete=plan.threshold_deletions),
                                params))

        # What only the plan needed is dropped: the writes, the read-back and the result reuse its memory.
        resolution = users = None
        if params.get('entra_groups') is None:
            release_members(all_desired, new_state, members_written)
        if saving and members_writer is None:
            # A delta run's members file is made from the state's own lists, small next to a first
            # run's memory: written beside the writes, which wait on the DC (0.13 s for the large
            # benchmark's incremental run), rather than beside the reads and the plan, which are CPU
            # work that holds the interpreter too.
            members_writer, members_written = _start_members_file(params, new_state)
        try:
            apply_plan(ad, plan.ops, check_mode=check_mode, result=applied, connections=params.get('ad_write_connections') or WRITE_CONNECTIONS)
            _merge_apply(result, applied)
            if saving and not applied.errors:
                try:
                    written = members_written.result()   # its file error, if any, is raised here
                    if mark is not None:
                        new_state['ad'] = next_ad_state(ad, domain_dn, search_base, mark, old_state, examined, managed,
                                                        result['ops'], result['groups'], fingerprint)
                    save_state(params['delta_state_path'], new_state, written)
                    members_written = None   # the head names it now
                except (IOError, OSError) as exc:
                    raise WritebackError('Cannot save the delta state file (delta_state_path %s): %s; the next run reads '
                                         'what changed since the previous state' % (params['delta_state_path'], exc))
        except Exception as exc:  # pylint: disable=broad-except
            if not applied.changed:
                raise
            raise _failed_after_writes(exc, result, applied, result['ops'], params)

        out = dict(
            changed=plan.changed if check_mode else applied.changed,
            written_early=dict(groups=writes_early.written(), waves=writes_early.waves, stopped=writes_early.left_why)
            if writes_early is not None else None,
            summary=result['summary'],
            groups=result['groups'],
            plan=_executed_plan(applied, result['ops']),
            warnings=list(result['warnings']) + ['Entra group not found: %s' % x for x in not_found] + [
                'Entra display name %r matches %d groups (%s): none of them was written; select them by id'
                % (e['name'], len(e['ids']), ', '.join(e['ids'])) for e in ambiguous] + _outside_search_base(params, domain_dn, search_base)
            + wanted['read_warnings'],
            cycles=result['cycles'],
            ldap_operations=_stats(ad, gc),
            graph_requests=(graph.stats.get('requests', 0) if graph is not None else 0),
            member_source=wanted['member_source'],
            domain_controller=ad.server,
            not_found=not_found,
            ambiguous=ambiguous,
        )
        if new_state is not None:
            out['incremental'] = incremental_report(new_state, examined, scope_reason, desired, all_desired, out['summary'])
        if params.get('report_path'):
            try:
                writeback_result.write_report(params['report_path'], out, out['groups'])
            except (IOError, OSError) as exc:
                # Checked writable before the first write; if it fails now, after writes, say so.
                err = WritebackError('Cannot write the report file (report_path %s): %s' % (params['report_path'], exc))
                if not applied.changed:
                    raise err
                raise _failed_after_writes(err, result, applied, result['ops'], params, report=False)
        if diff_mode:
            out['diff'] = result['diff']
        return _shaped(out, params)
    except Exception as exc:  # pylint: disable=broad-except
        if writes_early is None or getattr(exc, 'after_writes', False):
            raise
        # Groups were written while Graph was read, and the run failed before its own apply
        # (reading Graph or AD, planning): say what was written, never "nothing was written".
        writes_early.close()
        if not applied.changed:
            raise
        so_far = writes_early.early_result()
        raise _failed_after_writes(exc, so_far, applied, so_far['ops'], params)
    finally:
        if stream is not None:
            stream.close()
        if writes_early is not None:
            writes_early.close()
        if early is not None:
            early.close()
        if members_writer is not None:
            members_writer.shutdown(wait=True)
            if members_written is not None and members_written.exception() is None:
                # no head names it: the run stopped before saving its state
                delta_state.discard_members(params['delta_state_path'], members_written.result())
        ad.close()
