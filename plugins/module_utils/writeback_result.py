# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A result that stays small: bounded member lists in what ``ad_group_writeback`` returns.

A first run on a large tenant plans 100,000+ member links and skips tens of thousands of
cloud-only members; returned in full, every job result would carry megabytes of DNs, and AWX
stores every job's result. By default (``member_details: sample``) each list of member DNs or
member entries in ``groups[]`` keeps its first ``member_sample_size`` items and gains a count
(``<list>_count``), the operations in ``plan[]`` give their member lists as counts only, and the
skipped and unresolved members are counted by reason (``skipped_members_by_reason``,
``unresolved_members_by_reason``); ``member_details: full``
returns everything, and ``report_path`` writes the full lists to a JSON file whatever the mode.
With ``unchanged_groups: findings`` (all mode's default) an unchanged group is listed only when it
has something to say (members that cannot be written, a reason, a note, an adoption); the others
are counted in ``summary.unchanged`` and ``unchanged_not_listed``: a full read of 2,000 unchanged
groups returned 1.6 MB of entries that said nothing but "unchanged", on every scheduled run.
Functions of plain data (``compact_*`` and ``shape`` change what they are given), and
``write_report`` (one file).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import json_file

GROUP_LISTS = ('members_added', 'members_removed', 'unresolved_members', 'skipped_members')
BY_REASON = ('unresolved_members', 'skipped_members')
PLAN_LISTS = ('members', 'add', 'remove')
DEFAULT_SAMPLE = 20


def count_by_reason(entries):
    out = {}
    for entry in entries or ():
        reason = entry.get('reason') if isinstance(entry, dict) else None
        out[reason or 'unknown'] = out.get(reason or 'unknown', 0) + 1
    return out


def _bound(item, keys, sample):
    """``item`` with its lists under ``keys`` cut to ``sample`` items, each with its count (in place)."""
    for key in keys:
        values = item.get(key)
        if not isinstance(values, list):
            continue
        item[key + '_count'] = len(values)
        if len(values) > sample:
            item[key] = values[:sample]
    return item


def compact_groups(groups, sample=DEFAULT_SAMPLE):
    """The per-group reports with bounded member lists, counts and counts by reason: ``groups``
    itself, each report changed in place. Copies of 17,000 reports, made while the run still held
    the originals, were the xlarge check run's peak (RSS 378 -> 403 MB as the result was shaped)."""
    for rep in groups:
        by_reason = dict((key + '_by_reason', count_by_reason(rep[key])) for key in BY_REASON if isinstance(rep.get(key), list))
        _bound(rep, GROUP_LISTS, sample)
        rep.update(by_reason)
    return groups


def compact_plan(ops):
    """The plan's operations with their member lists (``members``, ``add``, ``remove``) as counts
    (``members_count``, ...), in place: the same DNs are in the group's entry (``members_added``,
    ``members_removed``, sampled there). Returned twice, the samples were a quarter of a 20,000-group
    first run's result (12.6 of 53 MB), and Ansible holds a result's JSON twice while it prints it."""
    for op in ops:
        for key in PLAN_LISTS:
            if isinstance(op.get(key), list):
                op[key + '_count'] = len(op.pop(key))
    return ops


def member_reasons(groups):
    """Run-wide counts by reason: ``{"skipped": {reason: n}, "unresolved": {reason: n}}``."""
    totals = {'skipped': {}, 'unresolved': {}}
    for rep in groups:
        for key, name in (('skipped_members', 'skipped'), ('unresolved_members', 'unresolved')):
            for reason, count in count_by_reason(rep.get(key)).items():
                totals[name][reason] = totals[name].get(reason, 0) + count
    return totals


def full_lists(groups):
    """What the report file holds per group: id, display name, DN and the full member lists."""
    return [dict([('id', rep.get('id')), ('display_name', rep.get('display_name')), ('dn', rep.get('dn'))] +
                 [(key, rep.get(key) or []) for key in GROUP_LISTS]) for rep in groups]


def write_report(path, result, groups):
    """Write the full member lists (and the run's summary) to ``path`` atomically, mode 0600."""
    data = dict(summary=result.get('summary'), incremental=result.get('incremental'), member_reasons=member_reasons(groups),
                groups=full_lists(groups))
    json_file.write_atomically(path, data, prefix='.cloudsync-report-')


FINDINGS = ('unresolved_members', 'skipped_members', 'reason', 'notes', 'adopted', 'adopted_concurrent', 'changes')


def has_findings(rep):
    """Whether a group's report says more than "unchanged": any action but ``unchanged``, or an
    unchanged group with members that cannot be written, a reason, a note or an adoption."""
    return rep.get('action') != 'unchanged' or any(rep.get(key) for key in FINDINGS)


def unlisted(groups):
    """``groups`` without the unchanged groups that have nothing to report (see ``has_findings``),
    and how many were left out."""
    kept = [rep for rep in groups if has_findings(rep)]
    return kept, len(groups) - len(kept)


def shape(result, member_details='sample', sample=DEFAULT_SAMPLE, unchanged_groups='all'):
    """The module result with bounded lists (``member_details: sample``) or as it is (``full``);
    ``member_reasons`` is added in both modes, and with ``unchanged_groups: findings`` the unchanged
    groups with nothing to report are counted (``unchanged_not_listed``), not listed. Changes
    ``result``'s groups and operations in place (the run is over: nothing reads the full lists after
    this; ``report_path`` is written before)."""
    groups = result.get('groups') or []
    result['member_reasons'] = member_reasons(groups)
    result['unchanged_not_listed'] = 0
    if unchanged_groups == 'findings' and isinstance(result.get('groups'), list):
        groups, result['unchanged_not_listed'] = unlisted(groups)
        result['groups'] = groups
    if member_details == 'full':
        return result
    result['groups'] = compact_groups(groups, sample)
    if isinstance(result.get('plan'), list):
        result['plan'] = compact_plan(result['plan'])
    return result
