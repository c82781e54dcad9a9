# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure writeback planner: (desired Entra groups, AD state, member resolution, options) ->
an ordered plan of LDAP operations plus a per-group report. No I/O; deterministic order.

Entry points
============

``plan_writeback(desired_groups, ad_state, resolution, options=None) -> Plan``

``planned_names(desired_groups, options, domain_dn) -> {"dns": [...], "sam_account_names": [...]}``
    The DNs and sAMAccountNames the plan may want, so the AD reader can look them up (base
    reads / one OR filter) and fill ``ad_state["taken_dns"]`` and ``ad_state["sam_taken"]``
    before planning.

``DEFAULT_OPTIONS``: the option defaults below.

Inputs
======

``desired_groups``: Entra group dicts (docs/architecture.md), normally already filtered to
scope. Eligibility is re-checked; ineligible groups are reported ``skipped`` and their AD copy,
if any, is left untouched (deleted only with ``out_of_scope="delete"``, and never for a group
over ``max_members``: a size limit is not a scope change). ``members`` absent or None means "not
read": membership of that group is not touched. ``nested_only`` True (a group written only
because a selected group contains it): written, renamed and updated like any other, linked into
its parents, but its membership is not managed. ``cloud_managed`` True (its source of authority
moved from AD to the cloud) with ``on_premises_security_identifier``: written onto its original
AD group (see ``soa_originals``), never created. ``member_changes``
(``{"added": [member], "removed": [member]}``, with ``members`` None and ``member_count`` the
whole count) instead of ``members``: the group's AD copy was not changed since the last run, so
its AD members are what that run derived from the old member list, and only the changes are
planned (the AD copy's ``members`` need not be read). Given for a group without an AD copy it is
an error (``ValueError``): a create needs every member. Its report says ``member_scope: changes``,
and its skipped and unresolved members are those of the added ones.

``ad_state`` (produced by ad_reader)::

    {
      "domain_dn": "DC=corp,DC=example,DC=test",
      "managed": [managed group, ...],        # every object whose msDS-ExternalDirectoryObjectId
                                              # starts with "Group_" (the anchor), in the managed
                                              # search scope; duplicates are kept, not merged
      "v2_candidates": [managed group, ...],  # groups with adminDescription=Group_<id> and no
                                              # anchor (Connect Sync Group Writeback v2)
      "taken_dns": {dn_key(dn): {"dn": dn, "anchor": str|None, "object_guid": str|None}},
                                              # existing objects at the DNs of planned_names()
                                              # (any object class); may be empty or absent
      "sam_taken": ["lower-cased sAMAccountName", ...],  # existing names among planned_names()
      "soa_originals": [managed group, ...]   # groups found by the objectSid of cloud-managed
                                              # Entra groups (anywhere in the domain); optional
    }

    managed group = {"dn", "object_guid", "object_sid", "cn", "parent_dn", "anchor",
                     "admin_description", "display_name", "description", "group_type",
                     "sam_account_name", "admin_count", "members": [dn, ...]}

``resolution``: ``{entra user id: {"dn": dn, "matched_by": "object_identifier"|"sid"|"immutable_id"}}``
(a plain DN string is accepted too). It may also map the id of a member group that is not written
(an AD-synced group, found by objectSid) to its DN: that DN is never added to the parent, and
kept where it is (Cloud Sync does not provision references to AD-synced groups, but Entra lists
them as members, so an authoritative run must not remove them). Users missing from it, or given as ``{"dn": None, "reason": code}``
(the reader's reason: ``not_found_in_forest``, ``no_on_premises_identifier``,
``no_identifier_for_member_match``), are reported in ``unresolved_members`` with that reason
(``unresolved`` when none is given).

Options (``DEFAULT_OPTIONS``)
=============================

* ``target_ou``: container for groups without an ``ou_map`` match; default ``CN=Users,<domain_dn>``.
* ``ou_map``: list of ``{"id"|"name"|"pattern"|"glob": ..., "ou": dn}``; first match wins.
  ``id``: the group id (case-insensitive); ``name``: the whole display name (case-insensitive);
  ``pattern``: a Python regular expression searched in the display name (``re.search``, anchor
  with ``^...$``); ``glob``: a shell-style pattern on the whole display name (case-insensitive).
* ``naming``: ``cloud_sync`` (cn = Left(Trim(displayName), 51) + "_" + last 12 characters of id;
  the cut counts UTF-16 code units, as AD does, and never splits a character) or
  ``writeback_v2`` (cn = ``Group_<id>``).
* ``sam_account_name_template``: None (AD generates one; never modified) or a ``str.format``
  template with ``{display_name}`` (trimmed), ``{id}``, ``{id_suffix}`` (last 12 of id) and
  ``{cn}``. Characters AD forbids (``"/\\[]:;|=,+*?<>@`` and controls) become ``_``; leading/
  trailing spaces and trailing dots are removed; cut to 256 characters. A name already used by
  another object, or computed for two groups, is an error for that group (``sam_account_name_collision``).
* ``membership``: ``authoritative`` (AD members == desired) or ``additive`` (only adds).
* ``prune`` (default True): delete the managed groups whose Entra group was deleted (orphans
  whose id is not in ``existing_group_ids``); False deletes nothing (orphans are reported
  ``orphaned``, reason ``deleted_in_entra``).
* ``out_of_scope``: ``keep`` (default) or ``delete``: what happens (with ``prune``) to orphans
  whose Entra group still exists (in ``existing_group_ids``: reason ``not_in_scope``) or whose
  existence is unknown (``existing_group_ids`` None: reason ``scope_unknown``), and to the copies
  of groups that became ineligible.
* ``existing_group_ids``: which orphans' groups still exist in Entra (any scope), or None when
  that was not checked. Each orphan report carries ``entra``: ``deleted``/``exists``/``unknown``.
* ``soa_move``: False (default) keeps the DN (cn and container) of a cloud-managed group's AD
  group, also after renames in Entra; True applies ``naming`` and the OU rules to it. Its
  ``sAMAccountName`` and ``adminDescription`` are never written (the original keeps them).
* ``deletion_threshold``: more deletions than this -> no delete at all, flag
  ``deletion_threshold_exceeded``, ``Plan.threshold_deletions`` lists them ({id, display_name,
  dn}) and the warning names up to ``NAMED_GROUPS_MAX``. None disables the check. Default 500.
* ``max_members``: 50000. ``allow_admin_count``: False (adminCount=1 groups are not modified,
  renamed or deleted; reported ``skipped``).
* ``adopt_writeback_v2``: take over v2 groups (set the anchor). When False and a v2 group
  exists, the Entra group is ``skipped`` (``writeback_v2_group_exists``) rather than written twice.
* ``adopt_rename``: when False, a group whose cn is its v2 name ``Group_<id>`` keeps its cn and
  container (stable across runs); when True it follows ``naming`` and the OU rules.
* ``chunk_size``: member values per LDAP modify (and in the ``create`` op); default 5000.

Output
======

``Plan.ops`` (execute in order): ``modify_dn``, ``create`` (children before parents),
``modify``, ``members`` (chunked), ``delete``::

    {"op": "modify_dn", "group_id", "dn": old_dn, "new_dn", "new_rdn": "CN=...", "new_superior": dn|None}
    {"op": "create", "group_id", "dn", "attributes": {attr: value}, "members": [dn]}
    {"op": "modify", "group_id", "dn", "changes": {attr: new value | None (clear)}}
    {"op": "members", "group_id", "dn", "add": [dn], "remove": [dn], "object_guid": guid (when read)}
    {"op": "delete", "group_id", "dn", "object_guid": guid|None}

``create`` attributes: ``objectClass`` ("group"), ``cn``, ``displayName``, ``description``
(only when non-empty), ``groupType`` (int), ``msDS-ExternalDirectoryObjectId``,
``adminDescription``, and ``sAMAccountName`` only with a template. ``modify``, ``delete`` and the
``members`` ops of existing groups carry ``object_guid`` too, so the applier acts on the object
that was read (a group created in this run is written by its DN).

Phases (each a function, in this order): ``index_desired`` / ``index_ad_state``,
``plan_targets`` (targets and collisions; SOA and v2 adoption), ``plan_renames`` (renames and
moves), ``desired_memberships``, ``plan_creates`` (creates in order, children before parents),
``plan_attribute_updates`` / ``plan_member_changes`` / ``finish_existing_reports`` (existing
groups), ``plan_deletes`` (orphans, threshold).

``Plan.groups``: one entry per Entra group and per orphan: ``id, display_name, dn,
previous_dn, object_guid, action`` (one of ``GROUP_ACTIONS``: created/updated/renamed/moved/
deleted/unchanged/skipped/orphaned/error), ``changes`` (attribute names; ``cn`` for a rename, ``container`` for a move,
``member``), ``members_added``, ``members_removed``, ``unresolved_members``,
``skipped_members`` (``[{id, display_name, reason}]``), ``reason`` (code or None),
``reason_text``, ``adopted`` (and ``adopted_from``: ``writeback_v2`` or ``source_of_authority``),
``nested_only`` (for such groups), ``entra`` (orphans). A group both renamed and moved has action
``moved``. Cycle warnings name the groups as ``'display name' (id)``.
``Plan.summary`` (``summarise(groups)``): counts per action (``renamed``/``moved`` count every rename/move, so a group
can count in both), ``members_added``, ``members_removed``, ``unresolved_members``,
``skipped_members``. ``Plan.warnings``, ``Plan.cycles``, ``Plan.deletion_threshold_exceeded``,
``Plan.threshold_deletions``, ``Plan.changed``, ``Plan.diff`` ({"before": {id: {...}}, "after": {id: {...}}}), ``Plan.to_dict()``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import fnmatch
import re

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import ad_codecs
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_codecs import (
    anchor_for, build_rdn, escape_dn_value, group_id_from_anchor, parent_dn, parse_dn, rdn_value,
)
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.eligibility import (
    MAX_MEMBERS, classify_member, group_ineligibility, reason_text,
)
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.errors import CloudSyncError

GROUP_TYPE_UNIVERSAL_SECURITY = -2147483640
GROUP_TYPE_SECURITY = 0x80000000
GROUP_TYPE_GLOBAL = 0x2
GROUP_TYPE_DOMAIN_LOCAL = 0x4
GROUP_TYPE_UNIVERSAL = 0x8

# Every value of a group report's ``action`` (and so of the module's ``groups[].action``).
GROUP_ACTIONS = ('created', 'updated', 'renamed', 'moved', 'deleted', 'unchanged', 'skipped', 'orphaned', 'error')

# At most this many groups are named in a warning or refusal (the rest are counted).
NAMED_GROUPS_MAX = 20

# The same member DNs are keyed several times per run (wanted, present, sorted, diffed): a
# 2,000-group tenant made 334,000 dn_key calls for 22,000 distinct DNs. A plain DN (most of them)
# is keyed without parsing (``ad_codecs.plain_dn_key``) and not kept: a cache of every member DN
# and its key was 30 MB of the planner's peak at 220,000 DNs. The others (escaped commas, spaces
# around separators...) parse 7 times slower and are cached (a pure function of its text; a
# ValueError is not cached and is raised again) in a plain dict, emptied when full and after each
# plan.
_DN_KEYS = {}
DN_KEYS_MAX = 1 << 18


def dn_key(dn):
    """``ad_codecs.dn_key``; cached for text that is not a plain DN (anything but text goes through
    uncached and fails there)."""
    if not isinstance(dn, str):
        return ad_codecs.dn_key(dn)
    key = ad_codecs.plain_dn_key(dn)
    if key is not None:
        return key
    key = _DN_KEYS.get(dn)
    if key is None:
        key = ad_codecs.dn_key(dn)
        if len(_DN_KEYS) >= DN_KEYS_MAX:
            _DN_KEYS.clear()
        _DN_KEYS[dn] = key
    return key


CN_NAME_MAX = 51
DESCRIPTION_MAX = 448
SAM_MAX = 256
DIFF_MEMBERS_MAX = 1000

DEFAULT_OPTIONS = dict(
    target_ou=None,
    ou_map=[],
    naming='cloud_sync',
    sam_account_name_template=None,
    membership='authoritative',
    prune=True,
    out_of_scope='keep',
    existing_group_ids=None,
    soa_move=False,
    deletion_threshold=500,
    max_members=MAX_MEMBERS,
    allow_admin_count=False,
    adopt_writeback_v2=False,
    adopt_rename=False,
    chunk_size=5000,
)

PLAN_REASON_TEXT = {
    'DuplicateTargetEntries': 'More than one AD object carries this group\'s anchor; nothing is changed until only one remains.',
    'dn_collision': 'Another AD object already uses the distinguished name this group needs; it is not overwritten.',
    'sam_account_name_collision': 'The sAMAccountName from the template is already used by another object (or another group of this run).',
    'sam_account_name_invalid': 'The sAMAccountName template produced an empty or invalid name.',
    'admin_count': 'The AD group is protected by AdminSDHolder (adminCount=1); it is not changed unless allow_admin_count is set.',
    'writeback_v2_group_exists': 'A Group Writeback v2 group (adminDescription=Group_<id>) exists; set adopt_writeback_v2 to take it over.',
    'not_in_scope': 'The Entra group still exists but is no longer in scope (deselected, not matching group_filter, or '
                    'ineligible); its AD group is left in place (out_of_scope is "keep").',
    'scope_unknown': 'The Entra group is not in scope and whether it still exists in Entra was not checked (entra_groups '
                     'given without Graph); its AD group is left in place unless out_of_scope is "delete".',
    'deleted_in_entra': 'The Entra group was deleted; its AD group is left in place because prune is false.',
    'soa_original_not_found': 'The group\'s source of authority moved to the cloud, but its original AD group (by objectSid) '
                              'is not in this domain; no new copy is created.',
    'soa_original_anchored_elsewhere': 'The original AD group of this cloud-managed group carries the anchor of another '
                                       'Entra group; it is not changed.',
    'soa_not_universal': 'The original AD group of this cloud-managed group is not a universal security group; Cloud Sync '
                         'writes back only universal groups. It is not changed.',
    'deletion_threshold_exceeded': 'The run would delete more groups than the deletion threshold; nothing is deleted.',
    'self_member': 'The group contains itself; AD does not allow that membership.',
}


class PlanError(CloudSyncError):
    """Invalid planner input (options, state shape)."""


# --------------------------------------------------------------------------------------------
# naming helpers
# --------------------------------------------------------------------------------------------

def _utf16_len(ch):
    return 2 if ord(ch) > 0xFFFF else 1


def left_utf16(text, limit):
    """The longest prefix of ``text`` whose UTF-16 length is at most ``limit`` (AD counts
    string lengths in UTF-16 code units); never splits a character."""
    used = 0
    for i, ch in enumerate(text):
        used += _utf16_len(ch)
        if used > limit:
            return text[:i]
    return text


def group_id(group):
    return str(group.get('id') or '').strip().lower()


def cn_for(group, naming='cloud_sync'):
    """The ``cn`` (RDN value, unescaped) for ``group`` under ``naming``."""
    gid = group_id(group)
    if naming == 'writeback_v2':
        return anchor_for(gid)
    name = (group.get('display_name') or '').strip()
    return left_utf16(name, CN_NAME_MAX) + '_' + gid[-12:]


def description_for(group):
    """Left(Trim(description), 448), or None when empty."""
    desc = (group.get('description') or '').strip()
    desc = left_utf16(desc, DESCRIPTION_MAX)
    return desc or None


_SAM_FORBIDDEN = re.compile(r'["/\\\[\]:;|=,+*?<>@\x00-\x1f\x7f]')


def sam_for(group, template, cn):
    """sAMAccountName from the template (see module doc), or None without a template.
    Raises PlanError for a template with unknown fields."""
    if not template:
        return None
    gid = group_id(group)
    try:
        raw = template.format(display_name=(group.get('display_name') or '').strip(), id=gid, id_suffix=gid[-12:], cn=cn)
    except (KeyError, IndexError, ValueError) as exc:
        raise PlanError('sam_account_name_template %r is invalid: %s (fields: display_name, id, id_suffix, cn)' % (template, exc))
    name = _SAM_FORBIDDEN.sub('_', raw).strip(' ')
    name = left_utf16(name, SAM_MAX).rstrip(' .')
    return name


def _normalize_options(options, domain_dn):
    opts = dict(DEFAULT_OPTIONS)
    for key, value in (options or {}).items():
        if key not in DEFAULT_OPTIONS:
            raise PlanError('Unknown planner option %r' % (key,))
        if value is not None or key in ('sam_account_name_template', 'deletion_threshold', 'existing_group_ids', 'target_ou'):
            opts[key] = value
    if not opts['target_ou']:
        if not domain_dn:
            raise PlanError('Neither target_ou nor the domain DN is known; cannot place groups')
        opts['target_ou'] = 'CN=Users,' + domain_dn
    _check_dn(opts['target_ou'], 'target_ou')
    if opts['naming'] not in ('cloud_sync', 'writeback_v2'):
        raise PlanError('naming must be cloud_sync or writeback_v2, not %r' % (opts['naming'],))
    if opts['membership'] not in ('authoritative', 'additive'):
        raise PlanError('membership must be authoritative or additive, not %r' % (opts['membership'],))
    if opts['out_of_scope'] not in ('keep', 'delete'):
        raise PlanError('out_of_scope must be keep or delete, not %r' % (opts['out_of_scope'],))
    try:
        opts['chunk_size'] = int(opts['chunk_size'])
    except (TypeError, ValueError):
        raise PlanError('chunk_size must be a positive integer, not %r' % (opts['chunk_size'],)) from None
    if opts['chunk_size'] < 1:
        raise PlanError('chunk_size must be a positive integer, not %r' % (opts['chunk_size'],))
    if opts['deletion_threshold'] is not None and int(opts['deletion_threshold']) < 0:
        raise PlanError('deletion_threshold must be 0 or more')
    rules = []
    for i, entry in enumerate(opts['ou_map'] or []):
        if not isinstance(entry, dict) or not entry.get('ou'):
            raise PlanError('ou_map[%d] needs an "ou" and one of id, name, pattern, glob' % i)
        keys = [k for k in ('id', 'name', 'pattern', 'glob') if entry.get(k) is not None]
        if len(keys) != 1:
            raise PlanError('ou_map[%d] needs exactly one of id, name, pattern, glob (has %s)' % (i, ', '.join(keys) or 'none'))
        _check_dn(entry['ou'], 'ou_map[%d].ou' % i)
        kind = keys[0]
        value = entry[kind]
        if kind == 'pattern':
            try:
                value = re.compile(value)
            except re.error as exc:
                raise PlanError('ou_map[%d].pattern %r is not a valid regular expression: %s' % (i, entry['pattern'], exc)) from None
        elif kind in ('id', 'name', 'glob'):
            value = str(value).strip().lower() if kind == 'id' else str(value)
        rules.append((kind, value, entry['ou'].strip()))
    opts['_ou_rules'] = rules
    if opts['sam_account_name_template']:
        sam_for({'id': '0' * 36, 'display_name': 'x'}, opts['sam_account_name_template'], 'x')
    if opts['existing_group_ids'] is not None:
        opts['existing_group_ids'] = set(str(x).lower() for x in opts['existing_group_ids'])
    return opts


def _check_dn(dn, what):
    try:
        if not parse_dn(dn):
            raise ValueError('empty')
    except ValueError as exc:
        raise PlanError('%s %r is not a valid DN: %s' % (what, dn, exc)) from None


def container_for(group, opts):
    """Target container DN for ``group``: first matching ``ou_map`` rule, else ``target_ou``."""
    gid = group_id(group)
    name = group.get('display_name') or ''
    for kind, value, ou in opts['_ou_rules']:
        if kind == 'id' and gid == value:
            return ou
        if kind == 'name' and name.strip().casefold() == value.strip().casefold():
            return ou
        if kind == 'pattern' and value.search(name):
            return ou
        if kind == 'glob' and fnmatch.fnmatchcase(name.casefold(), value.casefold()):
            return ou
    return opts['target_ou']


def names_by_group(desired_groups, options=None, domain_dn=None):
    """``{group id: (DN, sAMAccountName or None)}``: the names a create of each group would take
    (an existing group may keep its own; see ``_target_for``)."""
    opts = _normalize_options(options, domain_dn)
    out = {}
    for g in desired_groups:
        gid = group_id(g)
        if not gid:
            continue
        cn = cn_for(g, opts['naming'])
        out[gid] = (build_rdn('CN', cn) + ',' + container_for(g, opts), sam_for(g, opts['sam_account_name_template'], cn) or None)
    return out


def planned_names(desired_groups, options=None, domain_dn=None):
    """DNs and sAMAccountNames the plan may want (for the reader's collision look-ups)."""
    names = names_by_group(desired_groups, options, domain_dn).values()
    return {'dns': sorted(set(dn for dn, unused in names), key=dn_key),
            'sam_account_names': sorted(set(sam for unused, sam in names if sam), key=str.lower)}


# --------------------------------------------------------------------------------------------
# the plan
# --------------------------------------------------------------------------------------------

class Plan(object):
    """Result of ``plan_writeback`` (see module doc)."""

    def __init__(self):
        self.ops = []
        self.groups = []
        self.summary = {}
        self.warnings = []
        self.cycles = []
        self.deletion_threshold_exceeded = False
        self.threshold_deletions = []
        self.diff = {'before': {}, 'after': {}}

    @property
    def changed(self):
        return bool(self.ops)

    def to_dict(self):
        """The plan as a dict of its own lists and reports, not copies: the writeback merges the
        apply's outcomes into the reports it returns, and a deep copy held every op, report and
        member entry twice at the run's peak (14 MB of 196 on the large benchmark tenant)."""
        return dict(
            ops=self.ops, groups=self.groups, summary=self.summary, warnings=self.warnings,
            cycles=self.cycles, deletion_threshold_exceeded=self.deletion_threshold_exceeded,
            threshold_deletions=self.threshold_deletions,
            changed=self.changed, diff=self.diff,
        )


def _report(gid, name):
    return dict(id=gid, display_name=name, dn=None, previous_dn=None, object_guid=None, action=None, changes=[],
                members_added=[], members_removed=[], unresolved_members=[], skipped_members=[],
                reason=None, reason_text=None, adopted=False)


def _set_reason(rep, action, code, detail=None):
    rep['action'] = action
    rep['reason'] = code
    text = PLAN_REASON_TEXT.get(code) or reason_text(code)
    rep['reason_text'] = text + (' ' + detail if detail else '')


def _member_entry(member, reason, entries=None):
    """A skipped or unresolved member as reported: ``{id, display_name, reason}``. With ``entries``
    (a dict kept for one plan) equal entries are one dict shared by every group reporting it: a
    cloud-only user in 40 groups is one entry, not 40 (770,000 entries for 20,000 groups
    otherwise). Nobody changes an entry once made."""
    key = (member.get('id'), member.get('display_name'), reason)
    found = entries.get(key) if entries is not None else None
    if found is None:
        found = dict(id=key[0], display_name=key[1], reason=reason)
        if entries is not None:
            entries[key] = found
    return found


def _chunks(seq, size):
    for i in range(0, len(seq), size):
        yield seq[i:i + size]


def _attrs_of(obj):
    """Comparable attributes of an existing AD group."""
    return {
        'displayName': obj.get('display_name') or None,
        'description': obj.get('description') or None,
        'groupType': int(obj['group_type']) if obj.get('group_type') is not None else None,
        'msDS-ExternalDirectoryObjectId': obj.get('anchor') or None,
        'adminDescription': obj.get('admin_description') or None,
        'sAMAccountName': obj.get('sam_account_name') or None,
    }


def _diff_members(dns, ordered=False):
    """The diff's view of a member list: sorted by DN key (``ordered``: already, and then the same
    list), or its size when longer than DIFF_MEMBERS_MAX."""
    if len(dns) > DIFF_MEMBERS_MAX:
        return '<%d members>' % len(dns)
    return dns if ordered else sorted(dns, key=dn_key)


def plan_writeback(desired_groups, ad_state, resolution, options=None):
    """Plan the writeback; see the module docstring for inputs, options and output.

    The plan is built in phases, each a function of its own (in this order):
    ``index_desired`` and ``index_ad_state`` (inputs by id), ``plan_targets`` (per group: the AD
    object, the target DN, eligibility and collisions), ``plan_renames`` (modify DN of existing
    groups), ``desired_memberships`` (the member DNs each group should have), ``plan_creates``
    (new groups, children before parents), ``plan_attribute_updates`` and ``plan_member_changes``
    (existing groups), ``finish_existing_reports`` (action and diff of existing groups) and
    ``plan_deletes`` (orphans, the deletion threshold).
    """
    try:
        return _plan_writeback(desired_groups, ad_state or {}, resolution, options)
    finally:
        _DN_KEYS.clear()


def _plan_writeback(desired_groups, ad_state, resolution, options):
    opts = _normalize_options(options, ad_state.get('domain_dn'))
    plan = Plan()
    warnings = plan.warnings

    desired = index_desired(desired_groups, warnings)
    order = sorted(desired)
    ad_index = index_ad_state(ad_state)
    targets = plan_targets(desired, ad_index, opts, warnings)
    state, reports = targets['state'], targets['reports']
    modify_dn_ops, rename_map = plan_renames(order, state, reports)
    wanted = desired_memberships(order, desired, state, reports, resolution or {}, targets['not_written'], rename_map)

    plan.cycles = _find_cycles(order, wanted['child_groups'])
    for cyc in plan.cycles:
        warnings.append('Nested groups form a cycle: %s' % ' -> '.join(_group_label(desired[c]) for c in cyc + [cyc[0]]))

    create_ops, create_member_ops = plan_creates(order, state, reports, wanted, opts, plan.diff)
    modify_ops, attr_changes = plan_attribute_updates(order, state, reports, opts)
    member_ops, member_changes = plan_member_changes(order, state, reports, wanted, rename_map, opts)
    finish_existing_reports(order, state, reports, attr_changes, member_changes, plan.diff)
    deletes = plan_deletes(desired, ad_index['managed_by_id'], opts, plan.diff, warnings, reports)
    plan.deletion_threshold_exceeded = deletes['threshold_exceeded']

    plan.ops = modify_dn_ops + create_ops + modify_ops + create_member_ops + member_ops + deletes['ops']
    plan.groups = [reports[gid] for gid in order] + deletes['reports']
    plan.threshold_deletions = deletes['threshold_deletions']
    for rep in plan.groups:
        if rep['reason'] and not rep['reason_text']:
            rep['reason_text'] = reason_text(rep['reason'])
    plan.summary = summarise(plan.groups)
    plan.diff = dict((side, dict(sorted(plan.diff[side].items()))) for side in ('before', 'after'))
    return plan


# ---- phase: inputs by id --------------------------------------------------------------------

def index_desired(desired_groups, warnings):
    """{group id: Entra group}: groups without a usable id are dropped (with a warning), the first
    copy of a group given twice is kept."""
    desired = {}
    for g in desired_groups or []:
        gid = group_id(g)
        if not gid:
            warnings.append('An Entra group without an id was ignored: %r' % (g.get('display_name'),))
            continue
        if group_id_from_anchor(anchor_for(gid)) != gid:
            # Its anchor would not be recognised as ours on the next run (see ad_codecs.group_id_from_anchor).
            warnings.append('Entra group %r (%r) was ignored: its id is not an Entra object id (a GUID)' % (gid, g.get('display_name')))
            continue
        if gid in desired:
            warnings.append('Entra group %s was given twice; the first copy is used' % gid)
            continue
        desired[gid] = g
    return desired


def index_ad_state(ad_state):
    """The AD state by id: ``managed_by_id`` ({gid: [objects with its anchor]}), ``v2_by_id``
    ({gid: [Writeback v2 objects]}), ``taken`` ({dn_key: holder} of every DN known to be in use)
    and ``sam_taken`` (lower-cased sAMAccountNames in use)."""
    managed_by_id = {}
    for obj in ad_state.get('managed') or []:
        gid = group_id_from_anchor(obj.get('anchor'))
        if gid is None:
            continue
        managed_by_id.setdefault(gid, []).append(obj)
    v2_by_id = {}
    for obj in ad_state.get('v2_candidates') or []:
        if obj.get('anchor'):
            continue
        gid = group_id_from_anchor(obj.get('admin_description'))
        if gid is None:
            continue
        v2_by_id.setdefault(gid, []).append(obj)
    # Objects occupying DNs: what the reader found at planned DNs, plus every group we already know.
    taken = {}
    for holder in (ad_state.get('taken_dns') or {}).values():
        if holder.get('dn'):
            taken[dn_key(holder['dn'])] = holder
    for obj in (ad_state.get('managed') or []) + (ad_state.get('v2_candidates') or []):
        if obj.get('dn'):
            taken.setdefault(dn_key(obj['dn']), dict(dn=obj['dn'], anchor=obj.get('anchor'), object_guid=obj.get('object_guid')))
    sam_taken = set(str(s).lower() for s in (ad_state.get('sam_taken') or []))
    soa_by_sid = {}
    for obj in ad_state.get('soa_originals') or []:
        if obj.get('object_sid'):
            soa_by_sid.setdefault(str(obj['object_sid']).upper(), []).append(obj)
    return dict(managed_by_id=managed_by_id, v2_by_id=v2_by_id, taken=taken, sam_taken=sam_taken, soa_by_sid=soa_by_sid)


# ---- phase: targets and collisions -----------------------------------------------------------

def plan_targets(desired, ad_index, opts, warnings):
    """Per desired group: which AD object it is (anchor, Writeback v2 adoption, or a create), its
    target cn/container/DN and attributes, or why it is not written (ineligible, duplicate anchor,
    adminCount, DN or sAMAccountName collision).

    Returns ``dict(reports={gid: report}, state={gid: target}, not_written={gid: [existing DNs]})``
    where a target is ``dict(obj (None for a create), dn, cn, container, attrs, adopted)``; groups
    in ``not_written`` have no target, and their existing DNs are never removed from a parent.
    """
    reports = {}
    state = {}
    not_written = {}
    claimed = dict(dns={}, sams={})   # dn_key -> gid, lower sam -> gid
    for gid in sorted(desired):
        g = desired[gid]
        rep = _report(gid, g.get('display_name'))
        reports[gid] = rep
        existing = ad_index['managed_by_id'].get(gid, [])
        v2 = ad_index['v2_by_id'].get(gid, [])
        existing_dns = [o.get('dn') for o in existing + v2 if o.get('dn')]
        found = _existing_object(gid, g, existing, v2, existing_dns, rep, ad_index, opts, warnings)
        if found is None:
            not_written[gid] = existing_dns
            continue
        obj, adopted = found
        target = _target_for(gid, g, obj, ad_index, claimed, rep, opts)
        if target is None:
            not_written[gid] = existing_dns
            continue
        target['adopted'] = bool(adopted)
        state[gid] = target
        rep['dn'] = target['dn']
        rep['adopted'] = bool(adopted)
        if adopted == 'soa':
            rep['adopted_from'] = 'source_of_authority'
        elif adopted:
            rep['adopted_from'] = 'writeback_v2'
        if obj is not None:
            rep['object_guid'] = obj.get('object_guid')
    return dict(reports=reports, state=state, not_written=not_written)


def is_cloud_managed(group):
    """Was the group's source of authority moved from AD to the cloud (``onPremisesSyncBehavior/isCloudManaged``)?"""
    return group.get('cloud_managed') is True


def _existing_object(gid, g, existing, v2, existing_dns, rep, ad_index, opts, warnings):
    """``(obj or None, adopted)`` for a group that may be written, or None (``rep`` says why not).
    ``adopted``: False, True (a Writeback v2 group) or ``'soa'`` (the original AD group of a group
    whose source of authority moved to the cloud)."""
    reasons = group_ineligibility(g, opts['max_members'])
    if is_cloud_managed(g):
        # A converted group may still say onPremisesSyncEnabled; the cloud masters it now.
        reasons = [r for r in reasons if r != 'synced_from_ad']
    if reasons:
        _set_reason(rep, 'skipped', reasons[0])
        rep['reasons'] = reasons
        rep['reason_text'] = ' '.join(reason_text(r) for r in reasons)
        rep['dn'] = existing[0]['dn'] if len(existing) == 1 else None
        return None
    if len(existing) > 1:
        _set_reason(rep, 'error', 'DuplicateTargetEntries', 'Objects: %s.' % '; '.join(sorted(existing_dns, key=dn_key)))
        rep['duplicates'] = sorted((o.get('dn') for o in existing), key=dn_key)
        return None
    adopted = False
    if existing:
        obj = existing[0]
        if v2:
            warnings.append('Entra group %s: ignoring Writeback v2 group(s) %s because %s carries the anchor' % (
                gid, '; '.join(o.get('dn') for o in v2), obj.get('dn')))
    elif v2:
        if not opts['adopt_writeback_v2']:
            _set_reason(rep, 'skipped', 'writeback_v2_group_exists', 'Object: %s.' % '; '.join(o.get('dn') for o in v2))
            return None
        if len(v2) > 1:
            _set_reason(rep, 'error', 'DuplicateTargetEntries', 'Writeback v2 objects: %s.' % '; '.join(sorted(existing_dns, key=dn_key)))
            rep['duplicates'] = sorted(existing_dns, key=dn_key)
            return None
        obj = v2[0]
        adopted = True
    elif is_cloud_managed(g):
        found = _soa_original(gid, g, ad_index, rep)
        if found is None:
            return None
        obj, adopted = found
    else:
        obj = None
    if obj is not None and int(obj.get('admin_count') or 0) == 1 and not opts['allow_admin_count']:
        _set_reason(rep, 'skipped', 'admin_count', 'Object: %s.' % obj.get('dn'))
        rep['dn'] = obj.get('dn')
        rep['object_guid'] = obj.get('object_guid')
        warnings.append('Group %s (%s) is protected by adminCount=1 and was not changed' % (gid, obj.get('dn')))
        return None
    return obj, adopted


def _soa_original(gid, g, ad_index, rep):
    """The original AD group of a cloud-managed group, found by its objectSid (Entra's
    ``onPremisesSecurityIdentifier``): ``(obj, 'soa')`` to adopt, ``(obj, False)`` when it carries
    our anchor already (outside ``search_base``), or None (``rep`` says why: never a new copy).

    Cloud Sync provisions such a group onto its original AD object and needs it universal:
    https://learn.microsoft.com/en-us/entra/identity/hybrid/cloud-sync/how-provisioning-to-active-directory-works
    """
    sid = str(g.get('on_premises_security_identifier') or '').upper()
    found = ad_index['soa_by_sid'].get(sid, []) if sid else []
    if not found:
        _set_reason(rep, 'skipped', 'soa_original_not_found', 'objectSid %s%s.' % (
            sid or '(none in Entra)', ', domain %s' % g['on_premises_domain_name'] if g.get('on_premises_domain_name') else ''))
        return None
    obj = found[0]
    owner = group_id_from_anchor(obj.get('anchor'))
    if owner == gid:
        return obj, False
    if obj.get('anchor'):
        _set_reason(rep, 'error', 'soa_original_anchored_elsewhere', 'Object %s, anchor %s.' % (obj.get('dn'), obj.get('anchor')))
        rep['dn'] = obj.get('dn')
        return None
    gtype = int(obj.get('group_type') or 0) & 0xFFFFFFFF
    if not gtype & GROUP_TYPE_UNIVERSAL or not gtype & GROUP_TYPE_SECURITY:
        _set_reason(rep, 'skipped', 'soa_not_universal', soa_conversion_hint(obj))
        rep['dn'] = obj.get('dn')
        rep['object_guid'] = obj.get('object_guid')
        return None
    return obj, 'soa'


def soa_conversion_hint(obj):
    """What to change on a non-universal (or non-security) original AD group, in words."""
    gtype = int(obj.get('group_type') or 0) & 0xFFFFFFFF
    scope = 'universal' if gtype & GROUP_TYPE_UNIVERSAL else 'global' if gtype & GROUP_TYPE_GLOBAL else \
        'domain local' if gtype & GROUP_TYPE_DOMAIN_LOCAL else 'unknown'
    kind = 'security' if gtype & GROUP_TYPE_SECURITY else 'distribution'
    steps = []
    if scope != 'universal':
        steps.append('change its scope from %s to universal (Set-ADGroup -Identity "%s" -GroupScope Universal; a global group '
                     'must not be a member of another global group, a domain local group must not contain domain local groups)'
                     % (scope, obj.get('dn')))
    if kind != 'security':
        steps.append('make it a security group (Set-ADGroup -GroupCategory Security)')
    return '%s is a %s %s group (groupType %d): %s, then run again.' % (
        obj.get('dn'), scope, kind, int(obj.get('group_type') or 0), '; '.join(steps))


def _target_for(gid, g, obj, ad_index, claimed, rep, opts):
    """The target (see ``plan_targets``) of a group to be written, or None on a collision."""
    cn = cn_for(g, opts['naming'])
    container = container_for(g, opts)
    if obj is not None and not opts['adopt_rename'] and opts['naming'] != 'writeback_v2':
        current_cn = rdn_value(obj['dn'])
        if current_cn.lower() == anchor_for(gid).lower():
            cn = current_cn
            container = parent_dn(obj['dn'])
    soa = is_cloud_managed(g)
    if soa and obj is not None and not opts['soa_move']:
        # The original group keeps its name and OU (ACLs, scripts and people know it there).
        cn = rdn_value(obj['dn'])
        container = parent_dn(obj['dn'])
    new_dn = build_rdn('CN', cn) + ',' + container
    key = dn_key(new_dn)

    if obj is None or key != dn_key(obj['dn']):
        holder = ad_index['taken'].get(key)
        if holder and not _is_self(holder, gid, obj):
            _set_reason(rep, 'error', 'dn_collision', 'Wanted %s, held by %s (anchor %s).' % (new_dn, holder.get('dn'), holder.get('anchor')))
            rep['dn'] = obj.get('dn') if obj else None
            return None
    if key in claimed['dns']:
        _set_reason(rep, 'error', 'dn_collision', 'Wanted %s, also computed for Entra group %s.' % (new_dn, claimed['dns'][key]))
        rep['dn'] = obj.get('dn') if obj else None
        return None

    # An original AD group keeps its sAMAccountName (logons and scripts use it).
    sam = None if soa else sam_for(g, opts['sam_account_name_template'], cn)
    if sam is not None or (opts['sam_account_name_template'] and not soa):
        if not sam:
            _set_reason(rep, 'error', 'sam_account_name_invalid')
            return None
        own = (obj.get('sam_account_name') or '').lower() if obj else ''
        if sam.lower() in claimed['sams'] or (sam.lower() in ad_index['sam_taken'] and sam.lower() != own):
            other = claimed['sams'].get(sam.lower())
            _set_reason(rep, 'error', 'sam_account_name_collision', 'Name %r%s.' % (sam, ' (also Entra group %s)' % other if other else ''))
            rep['dn'] = obj.get('dn') if obj else None
            return None
        claimed['sams'][sam.lower()] = gid
    claimed['dns'][key] = gid

    attrs = {
        'cn': cn,
        'displayName': g.get('display_name') or None,
        'description': description_for(g),
        'groupType': GROUP_TYPE_UNIVERSAL_SECURITY,
        'msDS-ExternalDirectoryObjectId': anchor_for(gid),
        'adminDescription': anchor_for(gid),
    }
    if sam:
        attrs['sAMAccountName'] = sam
    if soa:
        # adminDescription=Group_<id> would take the original out of Connect Sync's scope (its
        # default rules filter on it); the anchor alone links it.
        del attrs['adminDescription']
    return dict(obj=obj, dn=new_dn, cn=cn, container=container, attrs=attrs)


# ---- phase: renames and moves ----------------------------------------------------------------

def plan_renames(order, state, reports):
    """``(modify_dn ops, rename_map)`` for existing groups whose cn or container changes;
    ``rename_map`` is {dn_key(old DN): new DN}. Sets each target's final ``dn``."""
    rename_map = {}
    ops = []
    for gid in order:
        st = state.get(gid)
        if not st or st['obj'] is None:
            continue
        old_dn = st['obj']['dn']
        renamed = rdn_value(old_dn) != st['cn']
        moved = dn_key(parent_dn(old_dn)) != dn_key(st['container'])
        if not renamed and not moved:
            st['dn'] = old_dn            # keep AD's own spelling of the DN
            reports[gid]['dn'] = old_dn
            continue
        if renamed:
            new_rdn = build_rdn('CN', st['cn'])
            reports[gid]['changes'].append('cn')
        else:
            new_rdn = 'CN=' + escape_dn_value(rdn_value(old_dn))
        new_superior = st['container'] if moved else None
        if moved:
            reports[gid]['changes'].append('container')
        new_dn = new_rdn + ',' + (st['container'] if moved else parent_dn(old_dn))
        st['dn'] = new_dn
        st['renamed'], st['moved'] = renamed, moved
        reports[gid]['dn'] = new_dn
        reports[gid]['previous_dn'] = old_dn
        rename_map[dn_key(old_dn)] = new_dn
        ops.append(dict(op='modify_dn', group_id=gid, dn=old_dn, new_dn=new_dn, new_rdn=new_rdn,
                        new_superior=new_superior, object_guid=st['obj'].get('object_guid')))
    return ops, rename_map


# ---- phase: members ----------------------------------------------------------------------------

def desired_memberships(order, desired, state, reports, resolution, not_written, rename_map):
    """What each written group's ``member`` should be.

    Returns ``dict(members={gid: {dn_key: dn}}, child_groups={gid: set of child gids written in
    this run}, protected={gid: set of dn_keys never removed}, removals={gid: {dn_key: dn}},
    to_create={gid: listed members}, to_compare={gid: listed members}, member_dns)``: a group
    whose members are given in full is in ``to_create`` (no AD object) or ``to_compare`` (an
    existing one), not ``members``; ``member_dns(gid, listed, report)`` makes its map, its
    protected keys (and reports its skipped and unresolved members) when ``plan_creates`` or
    ``plan_member_changes`` comes to it, and the map is dropped once used: the maps of all groups
    at once were the planner's peak (1.2 million member links at 20,000 groups; a full-read no-op
    kept 2.4 million map entries, the wanted and the present members of every existing group).
    Groups whose members are not managed are left out of ``members`` and get ``members_known``
    False: ``members`` None (not read), or ``nested_only`` (written only because a selected group
    contains it: Cloud Sync writes such a group "without its members", so its AD members are
    neither added nor removed). A group given with ``member_changes`` (its AD members were not
    read: see ``plan_writeback``) gets ``members_known`` ``"changes"``: ``members`` holds the DNs
    of its added members and ``removals`` those of its removed ones. Skipped and unresolved
    members (of the added ones, for ``member_changes``) are reported on the group.
    """
    in_scope = set(desired)
    members = {}
    child_groups = {}
    protected = {}
    removals = {}
    to_create = {}
    to_compare = {}
    entries = {}   # shared skipped/unresolved entries (see _member_entry)

    def member_dns(gid, listed, rep):
        return _member_dns(gid, listed, rep, in_scope, state, resolution, not_written, rename_map, entries)

    for gid in order:
        st = state.get(gid)
        if not st:
            continue
        g = desired[gid]
        rep = reports[gid]
        if g.get('nested_only'):
            rep['nested_only'] = True
        delta = g.get('member_changes')
        if g.get('nested_only') or (g.get('members') is None and delta is None):
            st['members_known'] = False
            continue
        if delta is not None:
            if st['obj'] is None:
                raise ValueError('Entra group %s was given with member_changes but has no AD copy: its members must be '
                                 'given in full' % gid)
            st['members_known'] = 'changes'
            listed = delta.get('added') or []
            removals[gid] = _removed_member_dns(delta.get('removed') or [], resolution, rep, entries)
        else:
            st['members_known'] = True
            listed = g['members']
            # Its DN map is made one group at a time when the group is created or compared (see
            # above). Its child groups are needed now (for the order of the creates and the
            # cycles): its group members are classified here (their report entries go to a scratch
            # report; the map's maker reports every member).
            (to_create if st['obj'] is None else to_compare)[gid] = listed
            child_groups[gid] = member_dns(gid, [m for m in listed if _is_group(m)], _report(gid, None))[1]
            continue
        wanted, children, prot = member_dns(gid, listed, rep)   # the added members only: kept
        for key in set(removals[gid]) & set(wanted):
            del removals[gid][key]   # another listed member has this DN
        members[gid] = wanted
        child_groups[gid] = children
        protected[gid] = prot
    return dict(members=members, child_groups=child_groups, protected=protected, removals=removals, to_create=to_create,
                to_compare=to_compare, member_dns=member_dns)


def _is_group(member):
    return (member.get('type') or '').lower() == 'group'


def _resolved_dn(resolution, member):
    """``(dn or None, reason or None)`` of a member in ``resolution``."""
    mid = str(member.get('id')).lower()
    res = resolution.get(member.get('id'), resolution.get(mid))
    if isinstance(res, dict):
        return res.get('dn'), res.get('reason')
    return res, None


def _member_dns(gid, listed, rep, in_scope, state, resolution, not_written, rename_map, entries=None):
    """``(wanted {dn_key: dn}, child gids, protected dn_keys)`` of the members ``listed`` for group
    ``gid``; the skipped and unresolved ones go to ``rep``."""
    wanted = {}
    children = set()
    prot = set()
    for m in sorted(listed, key=lambda x: (str(x.get('type')), str(x.get('id')).lower())):
        ok, why = classify_member(m, in_scope)
        mid = str(m.get('id')).lower()
        if not ok:
            rep['skipped_members'].append(_member_entry(m, why, entries))
            if _is_group(m):
                # An AD-synced group Entra lists as a member: never added, kept where it is.
                dn = _resolved_dn(resolution, m)[0]
                if dn:
                    prot.add(dn_key(dn))
            continue
        if _is_group(m):
            if mid == gid:
                rep['skipped_members'].append(_member_entry(m, 'self_member', entries))
                continue
            if mid in state:
                dn = state[mid]['dn']
                wanted[dn_key(dn)] = dn
                children.add(mid)
            else:
                rep['skipped_members'].append(_member_entry(m, 'group_not_written', entries))
                for old in not_written.get(mid, []):
                    prot.add(dn_key(rename_map.get(dn_key(old), old)))
            continue
        dn, why = _resolved_dn(resolution, m)
        if not dn:
            rep['unresolved_members'].append(_member_entry(m, why or 'unresolved', entries))
            continue
        wanted[dn_key(dn)] = dn
    return wanted, children, prot


def _removed_member_dns(removed, resolution, rep, entries=None):
    """{dn_key: dn} of the removed members that resolve (users only: the others were never written).
    A removed synced user that does not resolve now (deleted in AD, which took it out of the group,
    or no longer matched) is reported in ``unresolved_members`` (``removed_member_not_found``)."""
    out = {}
    for m in removed:
        if (m.get('type') or '').lower() != 'user':
            continue
        dn, why = _resolved_dn(resolution, m)
        if dn:
            out[dn_key(dn)] = dn
        elif why not in ('no_on_premises_identifier', 'no_identifier_for_member_match'):
            rep['unresolved_members'].append(_member_entry(m, 'removed_member_not_found', entries))
    return out


# ---- phase: creates in order -------------------------------------------------------------------

def plan_creates(order, state, reports, wanted, opts, diff):
    """``(create ops, member ops)`` for groups without an AD object, children before parents: a
    create carries the members it can (up to ``chunk_size``); links to a child that is created
    later (a cycle) and the rest of a large membership follow as member ops."""
    child_groups = wanted['child_groups']
    creates = [gid for gid in order if gid in state and state[gid]['obj'] is None]
    create_order, deferred = _topological(creates, child_groups)
    create_ops = []
    member_ops = []
    for gid in create_order:
        st = state[gid]
        rep = reports[gid]
        attrs = dict((k, v) for k, v in st['attrs'].items() if v is not None)
        attrs['objectClass'] = 'group'
        # A created group's DN map is made here, one group at a time, and dropped once its ops are
        # made (see desired_memberships); a group whose members are not managed has none.
        listed = wanted['to_create'].pop(gid, None)
        members = wanted['member_dns'](gid, listed, rep)[0] if listed is not None else {}
        # The member DNs in key order (the map's keys are their dn_keys): the report's list, and the
        # create's and the diff's when they hold all of them. One list shared by the three (nobody
        # changes a plan's lists): at 1.2 million member links three copies were 23 MB.
        ordered = []
        initial = []
        later = []
        for key in sorted(members):
            ordered.append(members[key])
            child = _child_of(key, gid, child_groups, state)
            if child is not None and (gid, child) in deferred:
                later.append(members[key])
            else:
                initial.append(members[key])
        if not later:
            initial = ordered
        if len(initial) > opts['chunk_size']:
            later = initial[opts['chunk_size']:] + later
            initial = initial[:opts['chunk_size']]
        create_ops.append(dict(op='create', group_id=gid, dn=st['dn'], attributes=attrs, members=initial))
        for chunk in _chunks(sorted(later, key=dn_key), opts['chunk_size']):
            member_ops.append(dict(op='members', group_id=gid, dn=st['dn'], add=chunk, remove=[]))
        rep['action'] = 'created'
        rep['changes'] = sorted(k for k in attrs if k != 'objectClass')
        rep['members_added'] = ordered
        diff['before'][gid] = {}
        after = dict(attrs)
        after['dn'] = st['dn']
        after['members'] = _diff_members(ordered, ordered=True)
        diff['after'][gid] = after
    return create_ops, member_ops


# ---- phase: existing groups: attributes, members, report -----------------------------------------

def plan_attribute_updates(order, state, reports, opts):
    """``(modify ops, {gid: {attr: new value}})`` for existing groups whose attributes differ."""
    ops = []
    changed = {}
    for gid in order:
        st = state.get(gid)
        if not st or st['obj'] is None:
            continue
        obj = st['obj']
        current = _attrs_of(obj)
        changes = {}
        for attr, value in st['attrs'].items():
            if attr == 'cn':
                continue
            if attr == 'sAMAccountName' and not opts['sam_account_name_template']:
                continue
            if current.get(attr) != value:
                changes[attr] = value
        if changes:
            ops.append(dict(op='modify', group_id=gid, dn=st['dn'], changes=changes, object_guid=obj.get('object_guid')))
            reports[gid]['changes'].extend(sorted(changes))
        changed[gid] = changes
    return ops, changed


def plan_member_changes(order, state, reports, wanted, rename_map, opts):
    """``(member ops, {gid: (adds, removes, after)})`` for existing groups whose members are managed:
    adds of missing members, and (authoritative membership) removes of the others, except the
    protected DNs of child groups that were not written this run. ``after`` is the diff's view of
    the membership once changed (renamed DNs followed; see ``_diff_members``), None when the group
    is unchanged or planned from Entra's member changes (its AD members were not read). Each
    group's wanted and present maps are made here and dropped once compared (see
    ``desired_memberships``)."""
    ops = []
    result = {}
    for gid in order:
        st = state.get(gid)
        if not st or st['obj'] is None or not st.get('members_known'):
            continue
        if st['members_known'] == 'changes':
            want = wanted['members'][gid]
            # Planned from Entra's member changes: the adds and removes are sent as they are (the
            # permissive modify makes an add of a present value, or a remove of an absent one, a no-op).
            adds = [want[k] for k in sorted(want)]
            removes = []
            if opts['membership'] == 'authoritative':
                protected = wanted['protected'].get(gid, ())
                gone = wanted['removals'].get(gid) or {}
                removes = [gone[k] for k in sorted(gone) if k not in protected]
            ops.extend(_member_ops(gid, st['obj'], st['dn'], adds, removes, opts))
            reports[gid]['member_scope'] = 'changes'
            if adds or removes:
                reports[gid]['changes'].append('member')
            result[gid] = (adds, removes, None)
            continue
        want, unused, protected = wanted['member_dns'](gid, wanted['to_compare'].pop(gid), reports[gid])
        have = {}
        for dn in st['obj'].get('members') or []:
            k = dn_key(dn)
            new = rename_map.get(k)
            if new is not None:
                have[dn_key(new)] = new
            else:
                have[k] = dn
        add_keys = [k for k in sorted(want) if k not in have]
        remove_keys = [k for k in sorted(have) if k not in want and k not in protected] \
            if opts['membership'] == 'authoritative' else []
        adds = [want[k] for k in add_keys]
        removes = [have[k] for k in remove_keys]
        ops.extend(_member_ops(gid, st['obj'], st['dn'], adds, removes, opts))
        after = None
        if adds or removes:
            reports[gid]['changes'].append('member')
            for k in remove_keys:
                del have[k]
            for k in add_keys:
                have[k] = want[k]
            after = _diff_members(list(have.values()))
        result[gid] = (adds, removes, after)
    return ops, result


def _member_ops(gid, obj, dn, adds, removes, opts):
    """The member changes of the existing group ``obj`` (at ``dn`` once renamed or moved), in chunks;
    each carries the group's objectGUID when it was read, so the write lands on the group read,
    whatever holds ``dn`` (a group written earlier in this run, writeback_early's, has none: by DN,
    as a group created by this plan)."""
    items = [('remove', d) for d in removes] + [('add', d) for d in adds]
    guid = dict(object_guid=obj['object_guid']) if obj.get('object_guid') else {}
    return [dict(op='members', group_id=gid, dn=dn, add=[d for a, d in chunk if a == 'add'],
                 remove=[d for a, d in chunk if a == 'remove'], **guid) for chunk in _chunks(items, opts['chunk_size'])]


def finish_existing_reports(order, state, reports, attr_changes, member_changes, diff):
    """Action (moved/renamed/updated/unchanged), member lists and diff of each existing group."""
    for gid in order:
        st = state.get(gid)
        if not st or st['obj'] is None:
            continue
        obj = st['obj']
        rep = reports[gid]
        changes = attr_changes.get(gid) or {}
        adds, removes, after_members = member_changes.get(gid, ([], [], None))
        rep['members_added'] = adds
        rep['members_removed'] = removes
        if st.get('moved'):
            rep['action'] = 'moved'
        elif st.get('renamed'):
            rep['action'] = 'renamed'
        elif changes or adds or removes:
            rep['action'] = 'updated'
        else:
            rep['action'] = 'unchanged'
        if rep['action'] == 'unchanged':
            continue
        current = _attrs_of(obj)
        before = dict(current)
        before['dn'] = obj['dn']
        after = dict(current)
        after.update(changes)
        after['dn'] = st['dn']
        if (adds or removes) and after_members is None:
            # Planned from Entra's member changes: the AD members were not read.
            after['members_added'] = _diff_members(adds)
            after['members_removed'] = _diff_members(removes)
        elif adds or removes:
            before['members'] = _diff_members(list(obj.get('members') or []))
            after['members'] = after_members
        diff['before'][gid] = dict((k, v) for k, v in before.items() if v is not None)
        diff['after'][gid] = dict((k, v) for k, v in after.items() if v is not None)


# ---- phase: deletes ------------------------------------------------------------------------------

def orphan_state(gid, opts):
    """What Entra says of a managed group that is not desired: ``deleted`` (not among
    ``existing_group_ids``), ``exists`` (among them: out of scope) or ``unknown`` (not checked)."""
    if opts['existing_group_ids'] is None:
        return 'unknown'
    return 'exists' if gid in opts['existing_group_ids'] else 'deleted'


def plan_deletes(desired, managed_by_id, opts, diff, warnings, reports=None):
    """Managed groups whose Entra group is not desired (orphans), and copies of desired groups
    that became ineligible: what to delete.

    * Deleted in Entra (``orphan_state`` ``deleted``): deleted when ``prune`` (Cloud Sync deletes
      the AD group of a hard-deleted group), else ``orphaned`` (``deleted_in_entra``).
    * Out of scope (still in Entra, or not checked; or ineligible now, except for its size):
      deleted only when ``prune`` and ``out_of_scope`` is ``delete``, else ``orphaned``
      (``not_in_scope`` / ``scope_unknown``) or, for an ineligible group, left ``skipped``.
    * Never: a duplicate anchor, an adminCount=1 group (unless allowed).

    Over ``deletion_threshold`` nothing is deleted (``deletion_threshold_exceeded``; the warning
    names the groups). Returns ``dict(ops, reports (of orphans), threshold_exceeded,
    threshold_deletions ([{id, display_name, dn}] that would have been deleted))``.
    """
    delete_ops = []
    orphan_reports = []
    deleting = []      # reports marked deleted (orphans, and ineligible groups' reports)
    for gid in sorted(managed_by_id):
        if gid in desired:
            continue
        objs = managed_by_id[gid]
        entra = orphan_state(gid, opts)
        for obj in sorted(objs, key=lambda o: dn_key(o.get('dn') or '')):
            rep = _report(gid, obj.get('display_name'))
            rep['dn'] = obj.get('dn')
            rep['object_guid'] = obj.get('object_guid')
            rep['entra'] = entra
            orphan_reports.append(rep)
            if len(objs) > 1:
                _set_reason(rep, 'error', 'DuplicateTargetEntries', 'Objects: %s.' % '; '.join(sorted((o.get('dn') for o in objs), key=dn_key)))
                continue
            if entra == 'deleted' and not opts['prune']:
                _set_reason(rep, 'orphaned', 'deleted_in_entra')
                continue
            if entra != 'deleted' and not (opts['prune'] and opts['out_of_scope'] == 'delete'):
                _set_reason(rep, 'orphaned', 'not_in_scope' if entra == 'exists' else 'scope_unknown')
                continue
            if int(obj.get('admin_count') or 0) == 1 and not opts['allow_admin_count']:
                _set_reason(rep, 'orphaned', 'admin_count')
                warnings.append('Orphaned group %s is protected by adminCount=1 and was not deleted' % obj.get('dn'))
                continue
            rep['action'] = 'deleted'
            deleting.append(rep)
            delete_ops.append(dict(op='delete', group_id=gid, dn=obj['dn'], object_guid=obj.get('object_guid')))
            diff['before'][gid] = dict((k, v) for k, v in dict(_attrs_of(obj), dn=obj['dn']).items() if v is not None)
            diff['after'][gid] = {}
    if opts['prune'] and opts['out_of_scope'] == 'delete':
        for gid in sorted(desired):
            rep = (reports or {}).get(gid)
            objs = managed_by_id.get(gid, [])
            if rep is None or rep['action'] != 'skipped' or len(objs) != 1 or not rep.get('reasons'):
                continue
            if 'too_many_members' in rep['reasons']:
                continue   # a size limit is not a scope change: the group is still wanted
            obj = objs[0]
            if int(obj.get('admin_count') or 0) == 1 and not opts['allow_admin_count']:
                continue
            rep['action'] = 'deleted'
            rep['reason_text'] = (rep.get('reason_text') or '') + ' Its AD group is deleted (out_of_scope is "delete").'
            rep['dn'] = obj['dn']
            rep['object_guid'] = obj.get('object_guid')
            deleting.append(rep)
            delete_ops.append(dict(op='delete', group_id=gid, dn=obj['dn'], object_guid=obj.get('object_guid')))
            diff['before'][gid] = dict((k, v) for k, v in dict(_attrs_of(obj), dn=obj['dn']).items() if v is not None)
            diff['after'][gid] = {}
    exceeded = False
    would_delete = []
    threshold = opts['deletion_threshold']
    if threshold is not None and len(delete_ops) > int(threshold):
        exceeded = True
        would_delete = [dict(id=r['id'], display_name=r['display_name'], dn=r['dn']) for r in deleting]
        warnings.append('The run would delete %d groups, more than the deletion threshold %d; nothing was deleted: %s' % (
            len(delete_ops), int(threshold), describe_groups(would_delete)))
        for rep in deleting:
            _set_reason(rep, 'orphaned' if rep['id'] not in desired else 'skipped', 'deletion_threshold_exceeded')
            diff['before'].pop(rep['id'], None)
            diff['after'].pop(rep['id'], None)
        delete_ops = []
    return dict(ops=delete_ops, reports=orphan_reports, threshold_exceeded=exceeded, threshold_deletions=would_delete)


def _group_label(group):
    """``'Display Name' (id)`` of an Entra group or a report, for warnings."""
    return '%r (%s)' % (group.get('display_name') or '', group.get('id'))


def describe_groups(groups, limit=NAMED_GROUPS_MAX):
    """``'Name' (DN), ...`` of at most ``limit`` groups (``[{display_name, dn, id}]``), then how many more."""
    shown = ['%r (%s)' % (g.get('display_name') or g.get('id'), g.get('dn') or g.get('id')) for g in groups[:limit]]
    more = len(groups) - len(shown)
    return ', '.join(shown) + (' and %d more' % more if more > 0 else '')


def _is_self(holder, gid, obj):
    """Is the object holding a DN the group itself (so no collision)?"""
    if obj is not None and holder.get('object_guid') and obj.get('object_guid'):
        return str(holder['object_guid']).lower() == str(obj['object_guid']).lower()
    if obj is not None and holder.get('dn') and obj.get('dn'):
        if dn_key(holder['dn']) == dn_key(obj['dn']):
            return True
    return group_id_from_anchor(holder.get('anchor')) == gid and obj is not None


def _child_of(key, gid, child_groups, state):
    for child in child_groups.get(gid, ()):
        if dn_key(state[child]['dn']) == key:
            return child
    return None


def _find_cycles(order, child_groups):
    """Elementary cycles found by DFS back edges (one per back edge), deterministic."""
    color = {}
    cycles = []
    for root in order:
        if root not in child_groups or color.get(root):
            continue
        stack = [(root, iter(sorted(child_groups.get(root, ()))))]
        path = [root]
        color[root] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                color[node] = 2
                stack.pop()
                path.pop()
                continue
            if nxt not in child_groups:
                continue
            if color.get(nxt) == 1:
                cycles.append(path[path.index(nxt):])
            elif not color.get(nxt):
                color[nxt] = 1
                path.append(nxt)
                stack.append((nxt, iter(sorted(child_groups.get(nxt, ())))))
    return cycles


def _topological(creates, child_groups):
    """Post-order of the created groups (children first); returns (order, deferred edges)."""
    created = set(creates)
    color = {}
    result = []
    deferred = set()
    for root in creates:
        if color.get(root):
            continue
        color[root] = 1
        stack = [(root, iter(sorted(c for c in child_groups.get(root, ()) if c in created)))]
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                color[node] = 2
                result.append(node)
                stack.pop()
                continue
            if color.get(nxt) == 1:
                deferred.add((node, nxt))
            elif not color.get(nxt):
                color[nxt] = 1
                stack.append((nxt, iter(sorted(c for c in child_groups.get(nxt, ()) if c in created))))
    return result, deferred


def summarise(groups):
    """The ``summary`` counts of a list of per-group reports. A group in error counts as an error
    only: what was planned for it (a cn, members) was not (all) done, so it is not counted as done."""
    summary = dict(created=0, updated=0, renamed=0, moved=0, deleted=0, unchanged=0, skipped=0, orphaned=0, errors=0,
                   members_added=0, members_removed=0, unresolved_members=0, skipped_members=0)
    for rep in groups:
        action = rep['action']
        if action == 'error':
            summary['errors'] += 1
            summary['unresolved_members'] += len(rep['unresolved_members'])
            summary['skipped_members'] += len(rep['skipped_members'])
            continue
        if action in ('renamed', 'moved'):
            pass
        elif action in summary:
            summary[action] += 1
        if 'cn' in rep['changes'] and action != 'created':
            summary['renamed'] += 1
        if 'container' in rep['changes']:
            summary['moved'] += 1
        summary['members_added'] += len(rep['members_added'])
        summary['members_removed'] += len(rep['members_removed'])
        summary['unresolved_members'] += len(rep['unresolved_members'])
        summary['skipped_members'] += len(rep['skipped_members'])
    return summary
