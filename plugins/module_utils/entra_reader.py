# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Entra groups and their members as plain data (the contract of docs/architecture.md).

``read_groups(client, ...)`` -> list of Entra group dicts; ``read_groups_report(client, ...)`` the
same with ``not_found`` and ``skipped``; ``read_groups_incremental(client, state, ...)`` ->
``(groups, new_state)`` using ``/groups/delta``.

Choices made here (and documented in the modules):

* **Members are read from Graph beta, with a v1.0 path.** ``onPremisesObjectIdentifier`` (the
  user's AD objectGUID, the first way members are found in AD) exists only on the beta user
  resource: selecting it on v1.0 fails with 400. Members are therefore read from
  ``/beta/groups/{id}/members`` with a ``$select`` that includes it. When beta refuses (a 400: the
  property withdrawn, as in a cloud that lacks it, or beta itself unavailable, "Invalid version")
  the same read goes to v1.0 without it, where members carry ``onPremisesSecurityIdentifier``
  (objectSid, documented on the v1.0 user) and are matched by SID or immutable id. The source used
  is reported (``member_source``: ``beta`` or ``v1.0``). ``beta_members=False`` reads v1.0 directly.
  Groups themselves are read from v1.0 (from beta when the scope needs a beta-only property).
* **Graph's documented query limits** (known issues, "Some limitations apply to query parameters":
  https://learn.microsoft.com/en-us/graph/known-issues#some-limitations-apply-to-query-parameters):
  a ``$filter`` with ``in`` holds at most 15 expressions in the whole clause (every value and every
  other comparison counts), and an ``eq`` value at most 120 characters, unless the request uses
  advanced query (``ConsistencyLevel: eventual`` + ``$count=true``), whose limit is a URL of 2,048
  characters. Every filter built here is sized to fit (``count_filter_expressions``); display
  names longer than 120 characters are looked up with advanced query.
* **Source of authority.** An AD-synced group converted to the cloud ("Group SOA":
  ``onPremisesSyncBehavior/isCloudManaged``, beta) keeps its on-premises identifiers and has
  ``onPremisesSyncEnabled`` null. For groups that carry an on-premises SID and are not synced, the
  flag is read (``GET /beta/groups/{id}/onPremisesSyncBehavior`` in $batch; application permission
  ``Group-OnPremisesSyncBehavior.ReadWrite.All``) into ``cloud_managed``; a 403 leaves it False and
  adds a warning. See https://learn.microsoft.com/en-us/entra/identity/hybrid/how-to-group-source-of-authority-configure
* **Nested groups in selected mode** (``include_nested``): a cloud security group that is a direct
  member of a selected group, and is not selected itself, is returned too, with ``nested_only``
  True and no members: Cloud Sync writes such a group back "and not it's members"; "If you want to
  nest groups and provision them AD, then you will need to add all of the member groups to the scope
  also" (so one level: its own nested groups are not followed):
  https://learn.microsoft.com/en-us/entra/identity/hybrid/cloud-sync/how-to-configure-entra-to-active-directory#scope-provisioning-to-specific-groups
* **Writeback flag** (``writeback_enabled_only``): only groups whose ``writebackConfiguration/isEnabled``
  (beta) is true, like Cloud Sync's scoping filter on it; groups are then read from beta and the
  flag is checked on what Graph returns. A ``group_filter`` naming a beta-only property is sent to
  beta (v1.0 does not know it).
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

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import delta_state
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.beside import beside
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
                'onPremisesSyncEnabled', 'onPremisesSecurityIdentifier', 'onPremisesSamAccountName', 'onPremisesDomainName')
BETA_GROUP_SELECT = GROUP_SELECT + ('writebackConfiguration',)
# Group properties only the beta endpoint has (a filter naming one must go to beta).
BETA_ONLY_GROUP_PROPERTIES = ('writebackConfiguration', 'onPremisesGroupType', 'organizationId')
SOA_PERMISSION = 'Group-OnPremisesSyncBehavior.ReadWrite.All'

MEMBER_SELECT = ('id', 'displayName', 'userPrincipalName', 'onPremisesSyncEnabled', 'onPremisesSecurityIdentifier',
                 'onPremisesImmutableId', 'onPremisesDomainName')
BETA_MEMBER_SELECT = MEMBER_SELECT + ('onPremisesObjectIdentifier',)
DELTA_SELECT = ('displayName', 'description', 'securityEnabled', 'mailEnabled', 'groupTypes', 'membershipRule',
                'onPremisesSyncEnabled', 'members')
ELIGIBLE_CLAUSE = 'securityEnabled eq true and mailEnabled eq false'
IN_LIMIT = 15          # expressions in one $filter clause with 'in' (values and comparisons), without advanced query
EQ_VALUE_LIMIT = 120   # characters of an eq value, without advanced query
URL_LIMIT = 2048       # characters of the URL of an advanced query
URL_MARGIN = 48        # room for a longer Graph host than the one measured (national clouds)
STATE_VERSION = 2   # 2: saved as a head and a members file (delta_state)
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


_FILTER_TOKEN_RE = re.compile(r"\s*(?:('(?:[^']|'')*')|([(),])|([A-Za-z_$][A-Za-z0-9_./$:-]*)|(-?\d+(?:\.\d+)?)|(\S))")
_COMPARISONS = ('eq', 'ne', 'gt', 'ge', 'lt', 'le')
_FUNCTIONS = ('startswith', 'endswith', 'contains')


def _filter_tokens(text):
    tokens = []
    for m in _FILTER_TOKEN_RE.finditer(str(text)):
        if m.group(1) is not None:
            tokens.append(('str', m.group(1)))
        elif m.group(2) is not None:
            tokens.append(('punct', m.group(2)))
        elif m.group(3) is not None:
            tokens.append(('ident', m.group(3).lower()))
        elif m.group(4) is not None:
            tokens.append(('num', m.group(4)))
    return tokens


def _close_paren(tokens, i):
    """Index of the ')' matching the '(' at ``i``."""
    depth = 0
    for j in range(i, len(tokens)):
        if tokens[j] == ('punct', '('):
            depth += 1
        elif tokens[j] == ('punct', ')'):
            depth -= 1
            if depth == 0:
                return j
    return len(tokens) - 1


def count_filter_expressions(text):
    """How many expressions Graph counts in a ``$filter`` clause: every value inside ``in (...)``
    and every other comparison (``eq``/``ne``/..., ``startswith(...)``). Pure; a literal's content
    never counts."""
    if not text:
        return 0
    tokens = _filter_tokens(text)
    count = 0
    i = 0
    while i < len(tokens):
        kind, val = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else (None, None)
        if kind == 'ident' and val == 'in' and nxt == ('punct', '('):
            end = _close_paren(tokens, i + 1)
            count += 1 + sum(1 for t in tokens[i + 2:end] if t == ('punct', ','))
            i = end + 1
            continue
        if kind == 'ident' and val.split(':')[-1] in _COMPARISONS:
            count += 1
        elif kind == 'ident' and val in _FUNCTIONS and nxt == ('punct', '('):
            count += 1
            end = _close_paren(tokens, i + 1)
            after = tokens[end + 1] if end + 1 < len(tokens) else (None, None)
            if after[0] == 'ident' and after[1] in _COMPARISONS:
                i = end + 3   # startswith(x,'a') eq true is one expression
                continue
        i += 1
    return count


def names_beta_property(text):
    """True when an OData filter names a group property only beta has (outside string literals)."""
    if not text:
        return False
    bare = re.sub(r"'(?:[^']|'')*'", "''", str(text))
    return any(re.search(r'\b%s\b' % re.escape(p), bare, re.IGNORECASE) for p in BETA_ONLY_GROUP_PROPERTIES)


def chunk_in_values(values, other_expressions, measure):
    """Split ``values`` into lists for ``x in (...)`` filters that fit Graph's limits: at most
    ``IN_LIMIT - other_expressions`` values per filter without advanced query. Returns a list of
    ``(values, advanced)``; ``advanced`` chunks (when the other expressions leave no room, or for
    values longer than EQ_VALUE_LIMIT) are sized by URL length instead: ``measure(chunk)`` is the
    length of the request URL for a chunk (pure given ``measure``)."""
    plain, long_values = [], []
    for v in values:
        (long_values if len(v) > EQ_VALUE_LIMIT else plain).append(v)
    room = IN_LIMIT - other_expressions
    out = []
    if room >= 1:
        for n in range(0, len(plain), room):
            out.append((plain[n:n + room], False))
    else:
        long_values = plain + long_values
    chunk = []
    for v in long_values:
        if measure([v]) > URL_LIMIT - URL_MARGIN:
            raise EntraReadError('The Graph filter for %r does not fit the 2,048 characters Graph allows in a URL' % (v,))
        if chunk and measure(chunk + [v]) > URL_LIMIT - URL_MARGIN:
            out.append((chunk, True))
            chunk = []
        chunk.append(v)
    if chunk:
        out.append((chunk, True))
    return out


_MEMBER_TYPES = {}


def member_type(item):
    """'user' | 'group' | 'device' | 'org_contact' | 'service_principal' | other (snake case).
    Remembered per ``@odata.type`` (a handful of them): worked out for each of 1.9 million members,
    its regular expression was 0.26 s of the client's CPU per 85,000 (cProfile of the large read)."""
    odata = item.get('@odata.type') or ''
    found = _MEMBER_TYPES.get(odata)
    if found is None:
        short = odata.rsplit('.', 1)[-1]
        if not short:
            found = 'unknown'
        elif short.lower() in TYPE_NAMES:
            found = TYPE_NAMES[short.lower()]
        else:
            found = re.sub(r'(?<!^)([A-Z])', r'_\1', short).lower()
        if len(_MEMBER_TYPES) < 100:
            _MEMBER_TYPES[odata] = found
    return found


def _lower(text):
    """``text`` in lower case, the same string when it already is (Graph's ids are: a copy of each
    of 220,000 ids is 19 MB at 20,000 groups)."""
    if text.islower():
        return text
    lowered = text.lower()
    return text if lowered == text else lowered


_DOMAINS = {}


def _domain(name):
    """One string per on-premises domain name (every synced user repeats its domain's)."""
    if not isinstance(name, str):
        return name
    return _DOMAINS.setdefault(name, name) if len(_DOMAINS) < 1000 else name


def to_member(item, mtype=None):
    """A Graph directoryObject (member) -> the contract's member dict."""
    oid = item.get('onPremisesObjectIdentifier')
    return {
        'id': _lower(item.get('id') or ''),
        'type': mtype or member_type(item),
        'display_name': item.get('displayName'),
        'user_principal_name': item.get('userPrincipalName'),
        'on_premises_object_identifier': _lower(oid) if isinstance(oid, str) else oid,
        'on_premises_security_identifier': item.get('onPremisesSecurityIdentifier'),
        'on_premises_immutable_id': item.get('onPremisesImmutableId'),
        'on_premises_domain_name': _domain(item.get('onPremisesDomainName')),
        'on_premises_sync_enabled': item.get('onPremisesSyncEnabled'),
    }


def to_group(item, cloud_managed=False):
    """A Graph group -> the contract's group dict (without members). ``writeback_enabled`` is None
    unless the group was read from beta with ``writebackConfiguration``."""
    wb = item.get('writebackConfiguration')
    if isinstance(wb, dict):
        writeback_enabled = wb.get('isEnabled') is True
    else:
        writeback_enabled = False if 'writebackConfiguration' in item else None
    return {
        'id': (item.get('id') or '').lower(),
        'display_name': item.get('displayName'),
        'description': item.get('description'),
        'security_enabled': item.get('securityEnabled'),
        'mail_enabled': item.get('mailEnabled'),
        'group_types': list(item.get('groupTypes') or []),
        'membership_rule': item.get('membershipRule'),
        'on_premises_sync_enabled': item.get('onPremisesSyncEnabled'),
        'cloud_managed': bool(cloud_managed),
        'on_premises_security_identifier': item.get('onPremisesSecurityIdentifier'),
        'on_premises_sam_account_name': item.get('onPremisesSamAccountName'),
        'on_premises_domain_name': item.get('onPremisesDomainName'),
        'writeback_enabled': writeback_enabled,
    }


def soa_candidates(groups):
    """Contract groups whose source-of-authority flag matters: they came from AD (an on-premises
    SID) and are not synced from it now (a converted group has onPremisesSyncEnabled null)."""
    return [g for g in groups if g.get('on_premises_security_identifier') and g.get('on_premises_sync_enabled') is not True]


def read_cloud_managed(client, group_ids):
    """``({id: bool}, warnings)`` from ``GET /beta/groups/{id}/onPremisesSyncBehavior`` ($batch).
    A group whose flag cannot be read (403: the app lacks Group-OnPremisesSyncBehavior.ReadWrite.All;
    400: beta unavailable) is left out and named in a warning."""
    if not group_ids:
        return {}, []
    reqs = [(gid, relative_url('/groups/%s/onPremisesSyncBehavior' % gid)) for gid in group_ids]
    try:
        if len(reqs) == 1:
            results, errors = {group_ids[0]: [client.get(reqs[0][1], version='beta')]}, {}
        else:
            results, errors = client.batch_collect(reqs, version='beta', tolerate=(400, 403, 404))
    except CloudSyncError as exc:
        if getattr(exc, 'status', None) not in (400, 403, 404):
            raise
        results, errors = {}, dict((g, exc) for g in group_ids)
    out = {}
    for gid in group_ids:
        items = results.get(gid) or []
        if gid in errors or not items:
            continue
        body = items[0]
        if isinstance(body.get('value'), dict):   # the documented example wraps the object in "value"
            body = body['value']
        out[gid] = body.get('isCloudManaged') is True
    unread = [g for g in group_ids if g not in out]
    warnings = []
    if unread:
        first = errors.get(unread[0])
        warnings.append(
            'The source of authority (onPremisesSyncBehavior/isCloudManaged, beta) of %d group(s) that came from AD could not '
            'be read (%s): they are treated as not converted to the cloud, so not written back. Grant the application %s '
            'to write back converted groups. Groups: %s' % (len(unread), first or 'no answer', SOA_PERMISSION, ', '.join(unread)))
    return out, warnings


def apply_cloud_managed(client, groups):
    """Set ``cloud_managed`` on the groups that need it (see ``soa_candidates``); returns warnings."""
    cands = soa_candidates(groups)
    if not cands:
        return []
    flags, warnings = read_cloud_managed(client, [g['id'] for g in cands])
    for g in cands:
        g['cloud_managed'] = flags.get(g['id'], False)
    return warnings


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


def collect(client, reqs, version='v1.0', tolerate=(404,), transform=None, on_last_page=None):
    """Read collections ``[(key, path, params)]``: ``(results {key: items}, errors {key: GraphError})``.
    One request is sent as such (with paging), several through $batch; requests that need other
    headers (advanced query's ``ConsistencyLevel``) go in batches of their own, so a plain query is
    never sent as an eventually consistent one. ``transform(key, items)`` -> items is applied to each
    page as it arrives (the raw page is not kept); its ``object_hook`` attribute, when it has one, is
    given to ``json.loads`` for the replies (see ``member_converter``). ``on_last_page(key)``: see
    ``GraphClient.batch_collect``."""
    if not reqs:
        return {}, {}
    object_hook = getattr(transform, 'object_hook', None)
    if len(reqs) == 1:
        key, path, params = reqs[0]
        try:
            if transform is None:
                return {key: list(client.iter_pages(path, params, version=version))}, {}
            items = []
            for page in client.pages(path, params, version=version, object_hook=object_hook):
                items.extend(transform(key, page.get('value') or []))
            if on_last_page is not None:
                on_last_page(key)
            return {key: items}, {}
        except CloudSyncError as exc:
            if getattr(exc, 'status', None) in tolerate:
                return {key: []}, {key: exc}
            raise
    by_headers = {}
    for key, path, params in reqs:
        params, hdrs = client.collection_params(path, params)
        group = by_headers.setdefault(tuple(sorted(hdrs.items())), [])
        group.append((key, relative_url(path, params)))
    results, errors = {}, {}
    for hdrs, prepared in by_headers.items():
        kwargs = {'transform': transform, 'object_hook': object_hook} if transform is not None else {}
        if on_last_page is not None:
            kwargs['on_last_page'] = on_last_page
        got, failed = client.batch_collect(prepared, version=version, headers=dict(hdrs) or None, tolerate=tolerate, **kwargs)
        results.update(got)
        errors.update(failed)
    return results, errors


def beta_refused(exc):
    """A 400 from beta: the property withdrawn (``Could not find a property named ...``) or beta
    itself unavailable (``Invalid version``). Then the documented v1.0 path is used."""
    return getattr(exc, 'status', None) == 400


def read_members_sourced(client, group_ids, members='direct', beta_members=True, listener=None):
    """``(members by group id (see read_members), source 'beta' | 'v1.0')``: beta first, v1.0 when
    beta refuses (``listener`` may then have heard some of beta's members, and groups, first)."""
    if beta_members:
        try:
            return read_members(client, group_ids, members, True, listener), 'beta'
        except CloudSyncError as exc:
            if not beta_refused(exc):
                raise
    return read_members(client, group_ids, members, False, listener), 'v1.0'


def member_converter(shared=None):
    """``convert(group_id, items)`` -> contract member dicts for one page of Graph members (refusing
    limited member data, see ``_check_limited``). A directory object that is a member of several
    groups gets one dict, shared by every group that lists it (``shared``: {id: member dict}), when
    Graph returned it alike each time: 196,440 memberships of 50,000 objects are 50,000 dicts, not
    196,440. Members are plain data nobody changes per group (``evaluate`` sets ``supported`` and
    ``reason``, which depend on the object alone).

    ``convert.object_hook`` converts directory objects while the reply is decoded (``collect`` gives
    it to ``json.loads``): a $batch reply of 20 pages of 999 members is never held as 20,000 raw
    objects with every string Graph sent, only as the member dicts kept (at 1.9 million memberships
    the raw objects of the batches in flight were 85 MB more at the read's peak, and memory Python
    kept afterwards). A user without its properties is left raw, for ``convert`` to refuse naming
    the group. ``convert`` takes raw items (Graph's, with ``@odata.type``) and converted ones alike."""
    shared = {} if shared is None else shared

    def share(member):
        if member['id']:
            first = shared.setdefault(member['id'], member)
            if first is not member and first == member:
                return first
        return member

    def object_hook(obj):
        if '@odata.type' not in obj or 'id' not in obj:
            return obj   # the page, the $batch envelope, a header or error object: not a directory object
        mtype = member_type(obj)
        if mtype == 'user' and 'userPrincipalName' not in obj:
            return obj   # limited member data: ``convert`` raises with the group's id
        return share(to_member(obj, mtype))

    def is_raw(item):
        # Graph's objects carry @odata.type; a member dict has ``type`` and never @odata.type
        return '@odata.type' in item or 'type' not in item

    def convert(group_id, items):
        raw = [item for item in items if is_raw(item)]
        if not raw:
            return items
        _check_limited(group_id, raw)
        return [share(to_member(item)) if is_raw(item) else item for item in items]
    convert.object_hook = object_hook
    return convert


def read_members(client, group_ids, members='direct', beta_members=True, listener=None):
    """``{group id: [member dict]}`` for every id; one request per page for one group, $batch for more.
    A group that disappeared meanwhile (404) maps to None. Each page becomes member dicts as it
    arrives (``member_converter``: one dict per directory object). A ``listener`` (``ReadListener``)
    hears each page's member dicts as soon as they are made, and each group's whole list once its
    last page is in, on the thread that read it (a Graph worker): the caller can start work on them
    (resolving users, writing groups) while the read goes on."""
    version = 'beta' if beta_members else 'v1.0'
    reqs = [(gid,) + _members_request(gid, members, beta_members) for gid in group_ids]
    transform = member_converter()
    last_page = None
    if listener is not None:
        transform, last_page = _heard(transform, listener)
    results, errors = collect(client, reqs, version=version, transform=transform, on_last_page=last_page)
    out = {}
    for gid in group_ids:
        out[gid] = None if gid in errors else results.pop(gid)
    return out


class ReadListener(object):
    """What a caller hears of a full read while it goes on, to start work before the read ends (the
    writeback's first run resolves users and writes groups). Each method is called on the reading
    thread or a Graph worker, so it must be quick and thread-safe. This one hears nothing."""

    def listed(self, groups):
        """The groups whose members are about to be read (contract dicts, ``cloud_managed`` set)."""

    def members(self, items):
        """One page of member dicts, as soon as it is converted."""

    def complete(self, group_id, items):
        """Group ``group_id``'s whole member list, its last page read. A group may come again (with
        v1.0's members when beta refused part-way); one whose read failed (404) never comes."""


def _heard(convert, listener):
    """``(transform, on_last_page)`` for ``collect``: ``convert`` (see ``member_converter``), with
    each page's member dicts told to ``listener`` and each group's pages told whole once its last
    arrives. A group's pages are kept (as references to the same dicts) until then: one page for
    most groups."""
    pages = {}   # group id -> its converted pages so far; pages of one group come one round at a time

    def heard(group_id, items):
        out = convert(group_id, items)
        listener.members(out)
        pages.setdefault(group_id, []).append(out)
        return out
    heard.object_hook = convert.object_hook

    def last_page(group_id):
        got = pages.pop(group_id, None) or []
        listener.complete(group_id, got[0] if len(got) == 1 else [m for page in got for m in page])
    return heard, last_page


def _group_select(beta=False):
    return ','.join(BETA_GROUP_SELECT if beta else GROUP_SELECT)


def filter_requests(client, key_prefix, prop, values, other_clause, select, version):
    """``[(key, path, params)]`` reading ``/groups`` with ``prop in (...)`` ANDed with
    ``other_clause``, sized to Graph's limits (see ``chunk_in_values``)."""
    others = count_filter_expressions(other_clause)

    def flt(chunk):
        text = '%s in (%s)' % (prop, ','.join(odata_quote(v) for v in chunk))
        return '%s and %s' % (text, other_clause) if other_clause else text

    def measure(chunk):
        return len(client.url('/groups', {'$filter': flt(chunk), '$select': select, '$count': 'true', '$top': '999'},
                              version=version))
    reqs = []
    for n, (chunk, advanced) in enumerate(chunk_in_values(values, others, measure)):
        params = {'$filter': flt(chunk), '$select': select}
        if advanced:
            params['$count'] = 'true'   # with ConsistencyLevel: eventual (collection_params adds it)
        reqs.append(('%s%d' % (key_prefix, n), '/groups', params))
    return reqs


def find_groups(client, ids=None, display_names=None, odata_filter=None, all_groups=False, beta=False):
    """Graph groups selected by ids, names, filter or all mode: ``(groups (Graph dicts), not_found, ambiguous)``.
    ``beta``: read from beta (with ``writebackConfiguration``)."""
    version = 'beta' if beta else 'v1.0'
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
        params = {'$filter': flt, '$select': _group_select(beta)}
        if count_filter_expressions(flt) > IN_LIMIT:
            # more than Graph takes without advanced query (a long group_filter): send it as one
            params['$count'] = 'true'
        for item in client.iter_pages('/groups', params, version=version):
            keep(item)
    if ids:
        results, errors = get_groups_by_id(client, ids, beta)
        for gid in ids:
            items = results.get(gid) or []
            if gid in errors or not items:
                not_found.append(gid)
            for item in items:
                keep(item)
    if display_names:
        reqs = filter_requests(client, 'n', 'displayName', display_names, None, _group_select(beta), version)
        results, unused_errors = collect(client, reqs, version=version, tolerate=())
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


def get_groups_by_id(client, ids, beta=False):
    """``(results {id: [group]}, errors {id: GraphError})`` for ``GET /groups/{id}`` (in $batch for several)."""
    version = 'beta' if beta else 'v1.0'
    if len(ids) == 1:
        try:
            return {ids[0]: [client.get('/groups/%s' % ids[0], {'$select': _group_select(beta)}, version=version)]}, {}
        except CloudSyncError as exc:
            if getattr(exc, 'status', None) not in (400, 404):
                raise
            return {ids[0]: []}, {ids[0]: exc}
    return client.batch_collect([(gid, relative_url('/groups/%s' % gid, {'$select': _group_select(beta)})) for gid in ids],
                                version=version, tolerate=(400, 404))


def nested_candidates(groups):
    """Ids of groups that are direct members of ``groups`` but not among them (order kept). Pure;
    one level: the members of a ``nested_only`` group are not followed."""
    have = set(g['id'] for g in groups)
    out = []
    for g in groups:
        if g.get('nested_only'):
            continue
        for m in g.get('members') or []:
            mid = (m.get('id') or '').lower()
            if m.get('type') == 'group' and mid and mid not in have and mid not in out:
                out.append(mid)
    return out


def nested_only_groups(groups):
    """The eligible ones of ``groups`` (contract dicts of nested groups, ``cloud_managed`` already
    set) as groups written without their members: ``nested_only`` True, ``members`` []. Pure."""
    out = []
    for g in groups:
        if group_ineligibility is not None and group_ineligibility(g, None):
            continue
        g = dict(g)
        g.update(nested_only=True, members=[], member_count=0)
        out.append(g)
    return out


def evaluate(groups, max_members=MAX_MEMBERS, member_flags=True):
    """Set ``eligible``/``ineligible_reasons`` on every group and (``member_flags``)
    ``supported``/``reason`` on every member (a nested group is supported when it is an eligible
    group of this read). The writeback engine classifies members itself and asks for no member
    flags: two more keys take a member dict past ten, which doubles its size in CPython."""
    for group in groups:
        reasons = group_ineligibility(group, None if group.get('nested_only') else max_members) if group_ineligibility else []
        group['eligible'] = not reasons
        group['ineligible_reasons'] = reasons
    if not member_flags:
        return groups
    in_scope = set(g['id'] for g in groups if g['eligible'])
    for group in groups:
        for member in group.get('members') or []:
            supported, reason = classify_member(member, in_scope) if classify_member else (True, None)
            member['supported'] = supported
            member['reason'] = reason
    return groups


def read_groups_report(client, ids=None, display_names=None, odata_filter=None, all_groups=False, members='none',
                       eligible_only=False, max_members=MAX_MEMBERS, beta_members=True, include_nested=False,
                       writeback_enabled_only=False, member_flags=True, listener=None):
    """Everything ``read_groups`` does, as ``dict(groups, not_found, skipped, ambiguous, member_source,
    warnings)``; ``listener``: see ``read_members`` (it also hears the groups listed); ``skipped``
    lists the ineligible groups left out by ``eligible_only`` and the groups left out by
    ``writeback_enabled_only`` (id, display_name, reasons). ``member_source`` is 'beta',
    'v1.0' or None (no members read). ``include_nested`` adds the eligible nested groups of the
    selected ones (``nested_only``, see the module docstring). ``member_flags``: see ``evaluate``."""
    if members not in ('none', 'direct', 'transitive'):
        raise EntraReadError("members must be 'none', 'direct' or 'transitive', not %r" % (members,))
    if not (ids or display_names or odata_filter or all_groups):
        raise EntraReadError('Nothing selected: give group ids, display names, a filter or all_groups')
    if odata_filter:
        odata_filter = check_odata_filter(odata_filter)
    beta = bool(writeback_enabled_only) or names_beta_property(odata_filter)
    raw, not_found, ambiguous = find_groups(client, ids, display_names, odata_filter, all_groups, beta=beta)
    groups = [to_group(item) for item in raw]
    skipped = []
    if writeback_enabled_only:
        skipped = [{'id': g['id'], 'display_name': g['display_name'], 'reasons': ['writeback_not_enabled']}
                   for g in groups if g['writeback_enabled'] is not True]
        groups = [g for g in groups if g['writeback_enabled'] is True]
    warnings = apply_cloud_managed(client, groups)
    member_source = None
    if members != 'none':
        # Ineligible groups of a read restricted to eligible ones need no members, except for the
        # size check, which needs direct members: only groups ineligible for other reasons are skipped.
        wanted = groups
        if eligible_only:
            wanted = [g for g in groups if not (group_ineligibility(g, None) if group_ineligibility else [])]
        if listener is not None:
            listener.listed(wanted)
        got, member_source = read_members_sourced(client, [g['id'] for g in wanted], members, beta_members, listener)
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
    if include_nested and members != 'none':
        warnings += _add_nested(client, groups, beta)
    evaluate(groups, max_members, member_flags)
    if eligible_only:
        skipped += [{'id': g['id'], 'display_name': g['display_name'], 'reasons': g['ineligible_reasons']}
                    for g in groups if not g['eligible']]
        groups = [g for g in groups if g['eligible']]
        evaluate(groups, max_members, member_flags)
    return dict(groups=groups, not_found=not_found, skipped=skipped, ambiguous=ambiguous, member_source=member_source,
                warnings=warnings)


def _add_nested(client, groups, beta):
    """Append the eligible nested groups of ``groups`` that are not among them (``nested_only``)."""
    wanted = nested_candidates(groups)
    if not wanted:
        return []
    results, errors = get_groups_by_id(client, wanted, beta)
    found = [to_group(results[gid][0]) for gid in wanted if gid not in errors and results.get(gid)]
    warnings = apply_cloud_managed(client, found)
    groups.extend(nested_only_groups(found))
    return warnings


def read_groups(client, ids=None, display_names=None, odata_filter=None, all_groups=False, members='none',
                eligible_only=False, max_members=MAX_MEMBERS, beta_members=True, include_nested=False,
                writeback_enabled_only=False):
    """Entra groups (contract dicts), with members when ``members`` is 'direct' or 'transitive'."""
    return read_groups_report(client, ids=ids, display_names=display_names, odata_filter=odata_filter,
                              all_groups=all_groups, members=members, eligible_only=eligible_only,
                              max_members=max_members, beta_members=beta_members, include_nested=include_nested,
                              writeback_enabled_only=writeback_enabled_only)['groups']


# -- incremental ------------------------------------------------------------------------------------

def _delta_select(beta):
    """Delta reads from beta (when the scope needs the writeback flag) select it too, so a change of
    the flag alone is a change."""
    return DELTA_SELECT + (('writebackConfiguration',) if beta else ())


def _latest_delta_link(client, beta=False):
    """A deltaLink for "now" without reading everything (``$deltatoken=latest``)."""
    select = _delta_select(beta)
    unused_changes, link = client.delta_groups(list(select), delta_link=client.url(
        '/groups/delta', {'$select': ','.join(select), '$deltatoken': 'latest'}, version='beta' if beta else 'v1.0'))
    return link


MEMBER_KEYS = ('id', 'type', 'display_name', 'user_principal_name', 'on_premises_object_identifier',
               'on_premises_security_identifier', 'on_premises_immutable_id', 'on_premises_domain_name',
               'on_premises_sync_enabled')


def _contract_only(member):
    """Whether ``member`` has exactly the contract keys (no member flags, nothing else)."""
    return len(member) == len(MEMBER_KEYS) and all(k in member for k in MEMBER_KEYS)


def _state_object(member):
    """A member as kept in the state: the contract keys, every one of them (unset ones None). A
    member dict with exactly those keys (as the writeback reads them: no member flags) is kept
    itself, not copied: at 20,000 groups a copy of each of 220,000 objects cost ~60 MB."""
    return member if _contract_only(member) else dict((k, member.get(k)) for k in MEMBER_KEYS)


def _state_from_groups(groups, delta_link, odata_filter, beta_members, reason, writeback_enabled_only=False,
                       member_source=None, warnings=()):
    """The state of a full read: lazy, its member lists left in ``groups`` until they are needed
    or saved (``delta_state.GroupsRead``)."""
    state_groups = {}
    for g in groups:
        entry = dict((k, v) for k, v in g.items() if k not in ('members', 'eligible', 'ineligible_reasons', 'member_count'))
        entry['member_count'] = len(g.get('members') or [])
        state_groups[g['id']] = entry
    return delta_state.lazy_state({
        'version': STATE_VERSION, 'delta_link': delta_link, 'filter': odata_filter, 'beta_members': bool(beta_members),
        'writeback_enabled_only': bool(writeback_enabled_only), 'member_source': member_source,
        'full_read_at': time.time(), 'groups': state_groups,
        'last_run': {'mode': 'full', 'reason': reason, 'changed_groups': len(state_groups), 'member_source': member_source,
                     'warnings': list(warnings)},
    }, groups, _state_object)


def groups_from_state(state, max_members, with_members=None, member_flags=True):
    """The contract groups of a state, sorted by id; one member dict per object (shared by the
    groups listing it), built from ``state['objects']`` (which stays as it is: it is saved); without
    ``member_flags`` the state's own object dicts are the member dicts (nothing changes them).
    ``with_members`` (a set of ids, or None for all): only those groups get their ``members``; the
    others have ``members`` None (not built) and their ``member_count``, which is all their
    eligibility needs (an incremental run plans only the groups that changed). ``member_flags``: see
    ``evaluate``."""
    if delta_state.is_lazy(state):
        delta_state.hydrate(state)   # a full read's: its member lists are made from the groups it read
    groups = []
    objects = state.get('objects') or {}
    members_by_id = {}

    def member(mid):
        found = members_by_id.get(mid)
        if found is None:
            obj = objects.get(mid) or {'id': mid, 'type': 'unknown'}
            if not member_flags and _contract_only(obj):
                found = members_by_id[mid] = obj   # nothing sets flags on it: the state's own dict
            else:
                found = members_by_id[mid] = dict((k, obj.get(k)) for k in MEMBER_KEYS)
        return found

    hydrated = delta_state.is_hydrated(state)
    for gid in sorted(state['groups']):
        entry = state['groups'][gid]
        group = dict((k, v) for k, v in entry.items() if k not in ('member_ids', 'member_count'))
        if with_members is None or gid in with_members:
            if not hydrated:
                raise ValueError('groups_from_state: the member lists of the state are not loaded (delta_state.hydrate)')
            group['members'] = [member(mid) for mid in entry['member_ids']]
        else:
            group['members'] = None
        group['member_count'] = len(entry['member_ids']) if 'member_ids' in entry else entry['member_count']
        groups.append(group)
    return evaluate(groups, max_members, member_flags)


def _full_read(client, odata_filter, max_members, beta_members, reason, writeback_enabled_only=False, member_flags=True,
               listener=None):
    """A full read: ``(groups, state)``. The groups are the ones read (sorted by id, as a delta run
    returns them), not a second copy rebuilt from the state."""
    beta = bool(writeback_enabled_only) or names_beta_property(odata_filter)
    link = _latest_delta_link(client, beta)
    report = read_groups_report(client, odata_filter=odata_filter, all_groups=True, members='direct', max_members=max_members,
                                beta_members=beta_members, writeback_enabled_only=writeback_enabled_only, member_flags=member_flags,
                                listener=listener)
    groups = report.pop('groups')
    state = _state_from_groups(groups, link, odata_filter, beta_members, reason, writeback_enabled_only,
                               report['member_source'], report['warnings'])
    groups.sort(key=lambda g: g['id'])
    return groups, state


def _scope_check(client, gids, odata_filter, writeback_enabled_only=False):
    """Which of ``gids`` are in scope now, with their current properties (Graph evaluates the filter).
    ``id in (...)`` is sized so that the whole clause, the eligible clause and the filter included,
    holds at most 15 expressions (Graph's limit without advanced query)."""
    beta = bool(writeback_enabled_only) or names_beta_property(odata_filter)
    flt_base = ELIGIBLE_CLAUSE + (' and (%s)' % odata_filter if odata_filter else '')
    reqs = filter_requests(client, 's', 'id', gids, flt_base, _group_select(beta), 'beta' if beta else 'v1.0')
    results, unused_errors = collect(client, reqs, version='beta' if beta else 'v1.0', tolerate=())
    found = dict((i['id'].lower(), i) for items in results.values() for i in items)
    if writeback_enabled_only:
        found = dict((k, v) for k, v in found.items() if to_group(v)['writeback_enabled'] is True)
    return found


def _member_details(client, refs, beta_members):
    """Contract member dicts for new member ids: users and groups read in $batch, others by type
    only. Beta first; v1.0 when beta refuses (see ``read_members_sourced``)."""
    if beta_members:
        try:
            return _member_details_from(client, refs, True)
        except CloudSyncError as exc:
            if not beta_refused(exc):
                raise
    return _member_details_from(client, refs, False)


def _member_details_from(client, refs, beta_members):
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
        results, errors = client.batch_collect(reqs, version='beta' if beta_members else 'v1.0', tolerate=(404,))
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
                            full_read_interval=FULL_READ_INTERVAL, writeback_enabled_only=False, build_groups=True,
                            member_flags=True, listener=None):
    """All in-scope groups (all mode: eligible clause AND ``odata_filter``) with direct members,
    read incrementally with ``/groups/delta``: ``(groups, new_state)``. ``state`` is what the
    previous call returned (JSON-able) or None. ``new_state['last_run']`` says whether this was a
    full read (and why) or a delta run, and how many groups changed. ``build_groups`` False: a
    delta run returns ``(None, new_state)`` and the caller builds the groups it needs with
    ``groups_from_state`` (a full read returns the groups it read either way). ``member_flags``: see
    ``evaluate``. ``listener``: see ``read_groups_report`` (it hears a full read only)."""
    if odata_filter:
        odata_filter = check_odata_filter(odata_filter)
    reason = None
    if not state or not isinstance(state, dict) or state.get('version') != STATE_VERSION or not state.get('delta_link'):
        reason = 'no_state'
    elif state.get('filter') != odata_filter:
        reason = 'filter_changed'
    elif bool(state.get('beta_members')) != bool(beta_members):
        reason = 'member_api_changed'
    elif bool(state.get('writeback_enabled_only')) != bool(writeback_enabled_only):
        reason = 'scope_changed'
    elif full_read_interval is not None and time.time() - float(state.get('full_read_at') or 0) > full_read_interval:
        reason = 'interval'
    if reason:
        return _full_read(client, odata_filter, max_members, beta_members, reason, writeback_enabled_only, member_flags,
                          listener)
    if delta_state.is_lazy(state):
        delta_state.hydrate(state)   # a full read's state passed on in memory, not loaded from its file
    try:
        changes, link = client.delta_groups(list(_delta_select(False)), delta_link=state['delta_link'])
    except DeltaResyncRequired as exc:
        return _full_read(client, odata_filter, max_members, beta_members,
                          'delta_rejected: HTTP %s %s' % (exc.status, exc.code or ''), writeback_enabled_only, member_flags,
                          listener)
    new = {
        'version': STATE_VERSION, 'delta_link': link, 'filter': odata_filter, 'beta_members': bool(beta_members),
        'writeback_enabled_only': bool(writeback_enabled_only), 'member_source': state.get('member_source'),
        'full_read_at': state.get('full_read_at'), 'groups': dict(state['groups']),
    }
    if not changes:
        # Nothing changed in Entra: the member lists are the saved ones, not read unless the run
        # needs them (delta_state.hydrate), not written again.
        shared = delta_state.share_members(state, new['groups'])
        if shared is not None:
            new[delta_state.MEMBERS_KEY] = shared
        else:
            new['objects'] = dict(state['objects'])
        new['last_run'] = {'mode': 'delta', 'reason': None, 'changed_groups': 0, 'removed_groups': 0, 'new_in_scope': 0,
                           'new_members_read': 0, 'member_source': new['member_source'], 'warnings': []}
        if build_groups:
            delta_state.hydrate(new)
        return (groups_from_state(new, max_members, member_flags=member_flags) if build_groups else None), new
    removed = [gid for gid, ch in changes.items() if '@removed' in ch]
    changed = [gid for gid in changes if gid not in removed]

    def scope():
        in_scope = _scope_check(client, changed, odata_filter, writeback_enabled_only) if changed else {}
        entries = dict((gid, to_group(item)) for gid, item in in_scope.items())
        return in_scope, entries, apply_cloud_managed(client, list(entries.values()))
    # The changed groups' scope is asked of Graph (in a thread) while the old member lists are read
    # from the members file (on this thread: they are most of what is allocated here).
    unused, (in_scope, entries, warnings) = beside(lambda: delta_state.hydrate(state), scope)
    new['groups'] = dict(state['groups'])
    new['objects'] = dict(state['objects'])
    groups = new['groups']
    for gid in removed:
        groups.pop(gid, None)
    newly = []
    for gid in changed:
        if gid not in in_scope:
            groups.pop(gid, None)  # left the scope (or never was in it)
            continue
        entry = dict(entries[gid])
        if gid in groups:
            entry['member_ids'] = _apply_member_delta(groups[gid]['member_ids'], changes[gid].get('members@delta') or [])
        else:
            newly.append(gid)
            entry['member_ids'] = []
        groups[gid] = entry
    if newly:
        got, new['member_source'] = read_members_sourced(client, newly, 'direct', beta_members)
        for gid in newly:
            mem = got.get(gid)
            if mem is None:
                groups.pop(gid, None)
                continue
            groups[gid]['member_ids'] = [m['id'] for m in mem]
            for m in mem:
                new['objects'][m['id']] = _state_object(m)
    refs = {}
    for gid in changed:
        for m in changes[gid].get('members@delta') or []:
            if '@removed' not in m and m['id'] not in new['objects'] and gid in groups:
                refs[m['id']] = member_type(m) if m.get('@odata.type') else 'unknown'
    if refs:
        new['objects'].update((k, _state_object(v)) for k, v in _member_details(client, refs, beta_members).items())
    # forget objects no group refers to any more
    used = set(mid for g in groups.values() for mid in g['member_ids'])
    new['objects'] = dict((k, v) for k, v in new['objects'].items() if k in used)
    shared = delta_state.share_members(state, groups)
    if shared is not None and _same_members(state, new):
        # Only properties changed (a rename, a description): the loaded members file still holds
        # these lists, so saving writes the head alone, not every member list again.
        new[delta_state.MEMBERS_KEY] = shared
    new['last_run'] = {'mode': 'delta', 'reason': None, 'changed_groups': len(changes), 'removed_groups': len(removed),
                       'new_in_scope': len(newly), 'new_members_read': len(refs), 'member_source': new['member_source'],
                       'warnings': warnings}
    return (groups_from_state(new, max_members, member_flags=member_flags) if build_groups else None), new


def _apply_member_delta(ids, delta):
    """``ids`` (a member list) after Graph's ``members@delta`` items, in order: as removing each
    removed id from the list and appending each added one, without a list search per removal (a
    group of 50,000 members losing 500 of them)."""
    present = set(ids)
    gone = set()     # ids of the list removed
    tail = {}        # ids appended, in order (a dict keeps insertion order)
    for m in delta:
        mid = m['id']
        if '@removed' in m:
            if mid in present:
                present.discard(mid)
                if mid in tail:
                    del tail[mid]
                else:
                    gone.add(mid)
        elif mid not in present:
            present.add(mid)
            tail[mid] = None
    return [i for i in ids if i not in gone] + list(tail)


def _same_members(old, new):
    """Whether two hydrated delta states of the same groups (``delta_state.share_members`` checks
    that) hold the same member lists and member objects: a delta that changed only group properties."""
    return all(new['groups'][gid]['member_ids'] == entry['member_ids'] for gid, entry in old['groups'].items()) and \
        new['objects'] == old['objects']


GET_BY_IDS_MAX = 1000   # ids per POST /directoryObjects/getByIds, as documented


def existing_group_ids(client, group_ids):
    """Which of ``group_ids`` still exist in Entra, in any scope: the set of those ids (lower case).

    Tells a group deleted in Entra (its AD copy is deleted, as Cloud Sync does:
    https://learn.microsoft.com/en-us/entra/identity/hybrid/cloud-sync/how-provisioning-to-active-directory-works)
    from one that only left the run's scope. Security groups are deleted permanently, at once
    (https://learn.microsoft.com/en-us/graph/api/group-delete), so a group Graph does not return is gone.

    First ``POST /directoryObjects/getByIds`` (1,000 ids a request; unknown ids are left out), which needs
    Directory.Read.All (https://learn.microsoft.com/en-us/graph/api/directoryobject-getbyids); when that is
    refused (403), ``GET /groups/{id}?$select=id`` for each (in $batch, 20 a request), which Group.Read.All
    allows, and a deleted group answers 404 (https://learn.microsoft.com/en-us/graph/api/group-get). The
    refusal is remembered on the client. Other errors raise: a group is never taken for deleted because
    Graph failed.
    """
    ids = sorted(set(str(i).lower() for i in group_ids or ()))
    if not ids:
        return set()
    if len(ids) > 1 and not getattr(client, 'get_by_ids_refused', False):
        try:
            found = set()
            for start in range(0, len(ids), GET_BY_IDS_MAX):
                body = client.request('POST', '/directoryObjects/getByIds',
                                      json_body={'ids': ids[start:start + GET_BY_IDS_MAX], 'types': ['group']})
                found.update(str(o.get('id') or '').lower() for o in (body or {}).get('value') or [])
            return found & set(ids)
        except CloudSyncError as exc:
            if getattr(exc, 'status', None) != 403:
                raise
            client.get_by_ids_refused = True   # no Directory.Read.All: read each group below
    params = {'$select': 'id'}
    if len(ids) == 1:
        try:
            body = client.get('/groups/%s' % ids[0], params)
        except CloudSyncError as exc:
            if getattr(exc, 'status', None) == 404:
                return set()
            raise
        return set([ids[0]]) if body and str(body.get('id') or '').lower() == ids[0] else set()
    results, errors = client.batch_collect([(gid, relative_url('/groups/%s' % gid, params)) for gid in ids], tolerate=(404,))
    return set(gid for gid in ids if gid not in errors and any(str(i.get('id') or '').lower() == gid for i in results.get(gid) or []))
