# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Entra groups and their members as plain data (the contract of docs/architecture.md).

``read_groups(client, ...)`` -> list of Entra group dicts; ``read_groups_report(client, ...)`` the
same with ``not_found`` and ``skipped``; ``read_groups_incremental(client, state, ...)`` ->
``(groups, new_state)`` using ``/groups/delta``.

Choices made here (and documented in the modules):

* **Members are read from Graph beta.** ``onPremisesObjectIdentifier`` (the user's AD objectGUID,
  the first way members are found in AD) exists only on the beta user resource: selecting it on
  v1.0 fails with 400. Members are therefore read from ``/beta/groups/{id}/members`` with a
  ``$select`` that includes it. ``beta_members=False`` reads v1.0 instead; the identifier is then
  ``None`` and members are matched by SID or immutable id. Groups themselves are read from v1.0.
* **Many groups: $batch.** Members of several groups are read through JSON ``$batch`` (20 groups
  per batch, ``graph_parallelism`` batches at once), not one request per group.
* **Selection.** Ids are read with ``GET /groups/{id}`` (in $batch; a 404 is "not found"); names
  with ``displayName in (...)`` (15 names per request; quotes doubled). A name matching several
  groups selects all of them (and is reported in ``ambiguous``). ``all_groups`` reads
  ``securityEnabled eq true and mailEnabled eq false`` ANDed with ``odata_filter`` (passed to
  Graph as given, in parentheses); ``odata_filter`` alone reads every group it matches.
* **Limited member data is an error.** An app with only ``GroupMember.Read.All`` gets users back
  with an id and nothing else; treating them as cloud-only users would remove them from AD, so
  the read fails and names the missing permission (``User.Read.All``).
* ``too_many_members`` is evaluated when direct members are read (``member_count``).
* **Incremental reads** keep in ``state`` the deltaLink, the in-scope groups and their member ids,
  and the member details; a run applies ``/groups/delta`` changes, re-checks the scope of changed
  groups with Graph (the OData filter is evaluated by Graph, never here), reads the full
  membership of groups new to the scope and the details of new members only. A rejected deltaLink
  (410 / ``syncStateNotFound``), a changed filter or select, or a state older than
  ``full_read_interval`` seconds (default one day, so changes to users themselves are picked up)
  means a full read.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re
import time

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.errors import CloudSyncError
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.graph_client import (
    DeltaResyncRequired, odata_quote, relative_url,
)

try:
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.eligibility import (
        MAX_MEMBERS, classify_member, group_ineligibility,
    )
except ImportError:  # pragma: no cover - eligibility.py ships with the collection
    MAX_MEMBERS = 50000
    classify_member = group_ineligibility = None

GUID_RE = re.compile(r'^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$')

GROUP_SELECT = ('id', 'displayName', 'description', 'securityEnabled', 'mailEnabled', 'groupTypes', 'membershipRule',
                'onPremisesSyncEnabled')
MEMBER_SELECT = ('id', 'displayName', 'userPrincipalName', 'onPremisesSyncEnabled', 'onPremisesSecurityIdentifier',
                 'onPremisesImmutableId', 'onPremisesDomainName')
BETA_MEMBER_SELECT = MEMBER_SELECT + ('onPremisesObjectIdentifier',)
DELTA_SELECT = ('displayName', 'description', 'securityEnabled', 'mailEnabled', 'groupTypes', 'membershipRule',
                'onPremisesSyncEnabled', 'members')
ELIGIBLE_CLAUSE = 'securityEnabled eq true and mailEnabled eq false'
IN_LIMIT = 15          # values in one OData 'in (...)'
STATE_VERSION = 1
FULL_READ_INTERVAL = 86400

TYPE_NAMES = {
    'user': 'user', 'group': 'group', 'device': 'device', 'orgcontact': 'org_contact',
    'serviceprincipal': 'service_principal', 'application': 'application',
}


class EntraReadError(CloudSyncError):
    """Entra data could not be read as needed (other than an HTTP failure, which is a GraphError)."""


def split_selection(groups):
    """Selection entries -> (ids (lower case), display names), order kept, duplicates dropped."""
    ids, names = [], []
    for item in groups or []:
        text = str(item).strip()
        if GUID_RE.match(text):
            if text.lower() not in ids:
                ids.append(text.lower())
        elif text and text not in names:
            names.append(text)
    return ids, names


def check_odata_filter(text):
    """Refuse a filter whose quotes or parentheses are unbalanced (outside string literals): it
    is ANDed in parentheses with the built-in clause, and must not be able to close them and widen
    the scope (``x) or (true``). Returns the filter stripped."""
    text = str(text).strip()
    depth, i, n = 0, 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "'":
            i += 1
            while True:
                if i >= n:
                    raise EntraReadError('group_filter has an unterminated string literal: %s' % text)
                if text[i] == "'":
                    if i + 1 < n and text[i + 1] == "'":   # a doubled quote inside the literal
                        i += 2
                        continue
                    break
                i += 1
        elif ch == '(':
            depth += 1
        elif ch == ')':
            depth -= 1
            if depth < 0:
                raise EntraReadError('group_filter closes a parenthesis it did not open: %s' % text)
        i += 1
    if depth:
        raise EntraReadError('group_filter has unbalanced parentheses: %s' % text)
    if not text:
        raise EntraReadError('group_filter is empty')
    return text


def member_type(item):
    """'user' | 'group' | 'device' | 'org_contact' | 'service_principal' | other (snake case)."""
    odata = (item.get('@odata.type') or '').rsplit('.', 1)[-1]
    if not odata:
        return 'unknown'
    return TYPE_NAMES.get(odata.lower(), re.sub(r'(?<!^)([A-Z])', r'_\1', odata).lower())


def to_member(item, mtype=None):
    """A Graph directoryObject (member) -> the contract's member dict."""
    oid = item.get('onPremisesObjectIdentifier')
    return {
        'id': (item.get('id') or '').lower(),
        'type': mtype or member_type(item),
        'display_name': item.get('displayName'),
        'user_principal_name': item.get('userPrincipalName'),
        'on_premises_object_identifier': oid.lower() if isinstance(oid, str) else oid,
        'on_premises_security_identifier': item.get('onPremisesSecurityIdentifier'),
        'on_premises_immutable_id': item.get('onPremisesImmutableId'),
        'on_premises_domain_name': item.get('onPremisesDomainName'),
        'on_premises_sync_enabled': item.get('onPremisesSyncEnabled'),
    }


def to_group(item):
    """A Graph group -> the contract's group dict (without members)."""
    return {
        'id': (item.get('id') or '').lower(),
        'display_name': item.get('displayName'),
        'description': item.get('description'),
        'security_enabled': item.get('securityEnabled'),
        'mail_enabled': item.get('mailEnabled'),
        'group_types': list(item.get('groupTypes') or []),
        'membership_rule': item.get('membershipRule'),
        'on_premises_sync_enabled': item.get('onPremisesSyncEnabled'),
    }


def _check_limited(group_id, items):
    """Users returned without their properties mean the app lacks User.Read.All (see module doc)."""
    for item in items:
        if member_type(item) == 'user' and 'userPrincipalName' not in item:
            raise EntraReadError(
                'Members of Entra group %s came back without user properties (user %s has only an id): the application '
                'lacks the User.Read.All (or Directory.Read.All) permission. Without it synced users cannot be told from '
                'cloud-only users, so nothing is read.' % (group_id, item.get('id')), details=dict(group_id=group_id))


def _members_request(group_id, members, beta_members):
    segment = 'transitiveMembers' if members == 'transitive' else 'members'
    select = BETA_MEMBER_SELECT if beta_members else MEMBER_SELECT
    return '/groups/%s/%s' % (group_id, segment), {'$select': ','.join(select)}


def collect(client, reqs, version='v1.0', tolerate=(404,)):
    """Read collections ``[(key, path, params)]``: ``(results {key: items}, errors {key: GraphError})``.
    One request is sent as such (with paging), several through $batch."""
    if not reqs:
        return {}, {}
    if len(reqs) == 1:
        key, path, params = reqs[0]
        try:
            return {key: list(client.iter_pages(path, params, version=version))}, {}
        except CloudSyncError as exc:
            if getattr(exc, 'status', None) in tolerate:
                return {key: []}, {key: exc}
            raise
    prepared, headers = [], {}
    for key, path, params in reqs:
        params, hdrs = client.collection_params(path, params)
        headers.update(hdrs)
        prepared.append((key, relative_url(path, params)))
    return client.batch_collect(prepared, version=version, headers=headers or None, tolerate=tolerate)


def read_members(client, group_ids, members='direct', beta_members=True):
    """``{group id: [member dict]}`` for every id; one request per page for one group, $batch for more.
    A group that disappeared meanwhile (404) maps to None."""
    version = 'beta' if beta_members else 'v1.0'
    reqs = [(gid,) + _members_request(gid, members, beta_members) for gid in group_ids]
    results, errors = collect(client, reqs, version=version)
    out = {}
    for gid in group_ids:
        if gid in errors:
            out[gid] = None
            continue
        _check_limited(gid, results[gid])
        out[gid] = [to_member(i) for i in results[gid]]
    return out


def _group_select():
    return ','.join(GROUP_SELECT)


def find_groups(client, ids=None, display_names=None, odata_filter=None, all_groups=False):
    """Graph groups selected by ids, names, filter or all mode: ``(groups (Graph dicts), not_found, ambiguous)``."""
    found = {}
    order = []
    not_found, ambiguous = [], []

    def keep(item):
        gid = (item.get('id') or '').lower()
        if gid and gid not in found:
            found[gid] = item
            order.append(gid)

    if odata_filter:
        odata_filter = check_odata_filter(odata_filter)
    if all_groups or (odata_filter and not ids and not display_names):
        flt = ELIGIBLE_CLAUSE if all_groups else None
        if odata_filter:
            flt = '%s and (%s)' % (flt, odata_filter) if flt else odata_filter
        for item in client.iter_pages('/groups', {'$filter': flt, '$select': _group_select()}):
            keep(item)
    if ids:
        if len(ids) == 1:
            try:
                results, errors = {ids[0]: [client.get('/groups/%s' % ids[0], {'$select': _group_select()})]}, {}
            except CloudSyncError as exc:
                if getattr(exc, 'status', None) not in (400, 404):
                    raise
                results, errors = {ids[0]: []}, {ids[0]: exc}
        else:
            results, errors = client.batch_collect(
                [(gid, relative_url('/groups/%s' % gid, {'$select': _group_select()})) for gid in ids], tolerate=(400, 404))
        for gid in ids:
            items = results.get(gid) or []
            if gid in errors or not items:
                not_found.append(gid)
            for item in items:
                keep(item)
    if display_names:
        reqs = []
        for n in range(0, len(display_names), IN_LIMIT):
            flt = 'displayName in (%s)' % ','.join(odata_quote(name) for name in display_names[n:n + IN_LIMIT])
            reqs.append((n, '/groups', {'$filter': flt, '$select': _group_select()}))
        results, unused_errors = collect(client, reqs, tolerate=())
        by_name = {}
        for items in results.values():
            for item in items:
                by_name.setdefault((item.get('displayName') or '').lower(), []).append(item)
        for name in display_names:
            matches = by_name.get(name.lower()) or []
            if not matches:
                not_found.append(name)
            elif len(matches) > 1:
                ambiguous.append({'name': name, 'ids': sorted(m['id'].lower() for m in matches)})
            for item in matches:
                keep(item)
    return [found[g] for g in order], not_found, ambiguous


def evaluate(groups, max_members=MAX_MEMBERS):
    """Set ``eligible``/``ineligible_reasons`` on every group and ``supported``/``reason`` on every
    member (a nested group is supported when it is an eligible group of this read)."""
    for group in groups:
        reasons = group_ineligibility(group, max_members) if group_ineligibility else []
        group['eligible'] = not reasons
        group['ineligible_reasons'] = reasons
    in_scope = set(g['id'] for g in groups if g['eligible'])
    for group in groups:
        for member in group.get('members') or []:
            supported, reason = classify_member(member, in_scope) if classify_member else (True, None)
            member['supported'] = supported
            member['reason'] = reason
    return groups


def read_groups_report(client, ids=None, display_names=None, odata_filter=None, all_groups=False, members='none',
                       eligible_only=False, max_members=MAX_MEMBERS, beta_members=True):
    """Everything ``read_groups`` does, as ``dict(groups, not_found, skipped, ambiguous)``;
    ``skipped`` lists the ineligible groups left out by ``eligible_only`` (id, display_name, reasons)."""
    if members not in ('none', 'direct', 'transitive'):
        raise EntraReadError("members must be 'none', 'direct' or 'transitive', not %r" % (members,))
    if not (ids or display_names or odata_filter or all_groups):
        raise EntraReadError('Nothing selected: give group ids, display names, a filter or all_groups')
    raw, not_found, ambiguous = find_groups(client, ids, display_names, odata_filter, all_groups)
    groups = [to_group(item) for item in raw]
    if members != 'none':
        # Ineligible groups of a read restricted to eligible ones need no members, except for the
        # size check, which needs direct members: only groups ineligible for other reasons are skipped.
        wanted = groups
        if eligible_only:
            wanted = [g for g in groups if not (group_ineligibility(g, None) if group_ineligibility else [])]
        got = read_members(client, [g['id'] for g in wanted], members, beta_members)
        gone = []
        for group in wanted:
            mem = got.get(group['id'])
            if mem is None:
                gone.append(group)
                continue
            group['members'] = mem
            if members == 'direct':
                group['member_count'] = len(mem)
        for group in gone:  # deleted between the group read and the member read
            groups.remove(group)
            not_found.append(group['id'])
    evaluate(groups, max_members)
    skipped = []
    if eligible_only:
        skipped = [{'id': g['id'], 'display_name': g['display_name'], 'reasons': g['ineligible_reasons']}
                   for g in groups if not g['eligible']]
        groups = [g for g in groups if g['eligible']]
        evaluate(groups, max_members)
    return dict(groups=groups, not_found=not_found, skipped=skipped, ambiguous=ambiguous)


def read_groups(client, ids=None, display_names=None, odata_filter=None, all_groups=False, members='none',
                eligible_only=False, max_members=MAX_MEMBERS, beta_members=True):
    """Entra groups (contract dicts), with members when ``members`` is 'direct' or 'transitive'."""
    return read_groups_report(client, ids=ids, display_names=display_names, odata_filter=odata_filter,
                              all_groups=all_groups, members=members, eligible_only=eligible_only,
                              max_members=max_members, beta_members=beta_members)['groups']


# -- incremental ------------------------------------------------------------------------------------

def _latest_delta_link(client):
    """A deltaLink for "now" without reading everything (``$deltatoken=latest``)."""
    unused_changes, link = client.delta_groups(list(DELTA_SELECT), delta_link=client.url(
        '/groups/delta', {'$select': ','.join(DELTA_SELECT), '$deltatoken': 'latest'}))
    return link


MEMBER_KEYS = ('id', 'type', 'display_name', 'user_principal_name', 'on_premises_object_identifier',
               'on_premises_security_identifier', 'on_premises_immutable_id', 'on_premises_domain_name',
               'on_premises_sync_enabled')


def _compact(member):
    """A member as kept in the state: contract keys only, unset ones left out (the state of a large
    tenant is mostly members)."""
    return dict((k, member[k]) for k in MEMBER_KEYS if member.get(k) is not None)


def _state_from_groups(groups, delta_link, odata_filter, beta_members, reason):
    objects = {}
    state_groups = {}
    for g in groups:
        entry = dict((k, v) for k, v in g.items() if k not in ('members', 'eligible', 'ineligible_reasons', 'member_count'))
        entry['member_ids'] = [m['id'] for m in g.get('members') or []]
        state_groups[g['id']] = entry
        for m in g.get('members') or []:
            objects[m['id']] = _compact(m)
    return {
        'version': STATE_VERSION, 'delta_link': delta_link, 'filter': odata_filter, 'beta_members': bool(beta_members),
        'full_read_at': time.time(), 'groups': state_groups, 'objects': objects,
        'last_run': {'mode': 'full', 'reason': reason, 'changed_groups': len(state_groups)},
    }


def _groups_from_state(state, max_members):
    groups = []
    objects = state['objects']
    for gid in sorted(state['groups']):
        entry = state['groups'][gid]
        group = dict((k, v) for k, v in entry.items() if k != 'member_ids')
        group['members'] = [dict((k, (objects.get(mid) or {'id': mid, 'type': 'unknown'}).get(k)) for k in MEMBER_KEYS)
                            for mid in entry['member_ids']]
        group['member_count'] = len(group['members'])
        groups.append(group)
    return evaluate(groups, max_members)


def _full_read(client, odata_filter, max_members, beta_members, reason):
    link = _latest_delta_link(client)
    groups = read_groups(client, odata_filter=odata_filter, all_groups=True, members='direct', max_members=max_members,
                         beta_members=beta_members)
    state = _state_from_groups(groups, link, odata_filter, beta_members, reason)
    return _groups_from_state(state, max_members), state


def _scope_check(client, gids, odata_filter):
    """Which of ``gids`` are in scope now, with their current properties (Graph evaluates the filter)."""
    flt_base = ELIGIBLE_CLAUSE + (' and (%s)' % odata_filter if odata_filter else '')
    reqs = []
    for n in range(0, len(gids), IN_LIMIT):
        chunk = gids[n:n + IN_LIMIT]
        reqs.append((n, '/groups', {'$filter': 'id in (%s) and %s' % (','.join(odata_quote(g) for g in chunk), flt_base),
                                    '$select': _group_select()}))
    results, unused_errors = collect(client, reqs, tolerate=())
    return dict((i['id'].lower(), i) for items in results.values() for i in items)


def _member_details(client, refs, beta_members):
    """Contract member dicts for new member ids: users and groups read in $batch, others by type only."""
    out = {}
    reqs = []
    select = ','.join(BETA_MEMBER_SELECT if beta_members else MEMBER_SELECT)
    for mid, mtype in refs.items():
        if mtype == 'user':
            reqs.append((mid, relative_url('/users/%s' % mid, {'$select': select})))
        elif mtype == 'group':
            reqs.append((mid, relative_url('/groups/%s' % mid, {'$select': 'id,displayName'})))
        else:
            out[mid] = to_member({'id': mid}, mtype)
    if reqs:
        results, errors = client.batch_collect(reqs, version='beta' if beta_members else 'v1.0')
        for mid, unused_url in reqs:
            items = results.get(mid) or []
            if mid in errors or not items:
                continue  # deleted meanwhile: its removal comes in a later delta round
            item = dict(items[0])
            item.setdefault('@odata.type', '#microsoft.graph.' + refs[mid])
            if refs[mid] == 'user':
                _check_limited('(delta)', [item])
            out[mid] = to_member(item, refs[mid])
    return out


def read_groups_incremental(client, state, odata_filter=None, max_members=MAX_MEMBERS, beta_members=True,
                            full_read_interval=FULL_READ_INTERVAL):
    """All in-scope groups (all mode: eligible clause AND ``odata_filter``) with direct members,
    read incrementally with ``/groups/delta``: ``(groups, new_state)``. ``state`` is what the
    previous call returned (JSON-able) or None. ``new_state['last_run']`` says whether this was a
    full read (and why) or a delta run, and how many groups changed."""
    if odata_filter:
        odata_filter = check_odata_filter(odata_filter)
    reason = None
    if not state or not isinstance(state, dict) or state.get('version') != STATE_VERSION or not state.get('delta_link'):
        reason = 'no_state'
    elif state.get('filter') != odata_filter:
        reason = 'filter_changed'
    elif bool(state.get('beta_members')) != bool(beta_members):
        reason = 'member_api_changed'
    elif full_read_interval is not None and time.time() - float(state.get('full_read_at') or 0) > full_read_interval:
        reason = 'interval'
    if reason:
        return _full_read(client, odata_filter, max_members, beta_members, reason)
    try:
        changes, link = client.delta_groups(list(DELTA_SELECT), delta_link=state['delta_link'])
    except DeltaResyncRequired as exc:
        return _full_read(client, odata_filter, max_members, beta_members,
                          'delta_rejected: HTTP %s %s' % (exc.status, exc.code or ''))
    new = {
        'version': STATE_VERSION, 'delta_link': link, 'filter': odata_filter, 'beta_members': bool(beta_members),
        'full_read_at': state.get('full_read_at'), 'groups': dict(state['groups']), 'objects': dict(state['objects']),
    }
    groups = new['groups']
    removed = [gid for gid, ch in changes.items() if '@removed' in ch]
    for gid in removed:
        groups.pop(gid, None)
    changed = [gid for gid in changes if gid not in removed]
    in_scope = _scope_check(client, changed, odata_filter) if changed else {}
    newly = []
    for gid in changed:
        if gid not in in_scope:
            groups.pop(gid, None)  # left the scope (or never was in it)
            continue
        entry = dict(to_group(in_scope[gid]))
        if gid in groups:
            ids = list(groups[gid]['member_ids'])
            present = set(ids)
            for m in changes[gid].get('members@delta') or []:
                mid = m['id']
                if '@removed' in m:
                    if mid in present:
                        present.discard(mid)
                        ids.remove(mid)
                elif mid not in present:
                    present.add(mid)
                    ids.append(mid)
            entry['member_ids'] = ids
        else:
            newly.append(gid)
            entry['member_ids'] = []
        groups[gid] = entry
    if newly:
        got = read_members(client, newly, 'direct', beta_members)
        for gid in newly:
            mem = got.get(gid)
            if mem is None:
                groups.pop(gid, None)
                continue
            groups[gid]['member_ids'] = [m['id'] for m in mem]
            for m in mem:
                new['objects'][m['id']] = _compact(m)
    refs = {}
    for gid in changed:
        for m in changes[gid].get('members@delta') or []:
            if '@removed' not in m and m['id'] not in new['objects'] and gid in groups:
                refs[m['id']] = member_type(m) if m.get('@odata.type') else 'unknown'
    if refs:
        new['objects'].update((k, _compact(v)) for k, v in _member_details(client, refs, beta_members).items())
    # forget objects no group refers to any more
    used = set(mid for g in groups.values() for mid in g['member_ids'])
    new['objects'] = dict((k, v) for k, v in new['objects'].items() if k in used)
    new['last_run'] = {'mode': 'delta', 'reason': None, 'changed_groups': len(changes), 'removed_groups': len(removed),
                       'new_in_scope': len(newly), 'new_members_read': len(refs)}
    return _groups_from_state(new, max_members), new
