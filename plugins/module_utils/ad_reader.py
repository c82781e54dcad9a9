# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read what AD holds, as plain data: managed groups (found by their anchor) and the AD objects
that Entra members resolve to. Talks to AD only through ``ADClient``; knows no LDAP itself.

Managed group dicts follow the contract in docs/architecture.md. Member resolution goes to the
Global Catalog, so users of every domain of the forest resolve, in batched searches (one OR
filter for up to ``RESOLVE_CHUNK`` identifiers), never one search per member.

One exception: ``mS-DS-ConsistencyGuid`` is not in the Global Catalog's partial attribute set and
is not indexed (https://learn.microsoft.com/windows/win32/adschema/a-ms-ds-consistencyguid:
"Is Indexed: False", "In Global Catalog: False"), so a Global Catalog search on it never matches
on Windows. An immutable id that is a consistency GUID (not the objectGUID) is looked up through
the domain's own LDAP connection (``domain``), last, only for users nothing else resolved.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import ad_codecs
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_client import ADError, first, values
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_codecs import (
    ANCHOR_ATTRIBUTE, ANCHOR_PREFIX, anchor_for, split_extended_dn,
)

GROUP_ATTRIBUTES = [
    'cn', 'displayName', 'description', 'groupType', 'sAMAccountName', 'adminCount',
    ANCHOR_ATTRIBUTE, 'adminDescription', 'objectGUID', 'objectSid', 'member',
]

USER_ATTRIBUTES = ['objectGUID', 'objectSid', 'mS-DS-ConsistencyGuid', 'objectClass']
# What each resolution search reads of a user: only the identifier it matches on (and the DN).
# Decoding the other attributes (objectClass alone has four values) was a third of the client's
# time in resolving 20,000 users.
SEARCH_ATTRIBUTES = {'sid': ['objectSid'], 'object_identifier': ['objectGUID'], 'immutable_id': ['objectGUID'],
                     'consistency_guid': ['mS-DS-ConsistencyGuid']}

# Identifiers per OR filter. AD accepts far longer filters; 200 keeps each request modest.
RESOLVE_CHUNK = 200
# Global Catalog connections a run resolves its members on at once (see resolve_users): the DC
# answers one OR search while the client decodes the previous one.
RESOLVE_CONNECTIONS = 2
# Anchors (or DNs) per OR filter when reading selected groups.
ANCHOR_CHUNK = 100
# Groups per page when all managed groups are read with their members: a page is held three times
# while it is decoded (ldap3's raw values, its own decoding, ours); 1,000 groups of 20,000 (1.2
# million member links) were 34 MB above what the read keeps (memory_phases.py, full-read no-op).
# The selected reads ask for ANCHOR_CHUNK groups at a time.
MEMBER_PAGE_SIZE = 100

MATCH_ORDER = ('object_identifier', 'sid', 'immutable_id')

# LDAP_SERVER_EXTENDED_DN_OID with ExtendedDNFlag 1 (string form): DN-valued attributes come back
# as '<GUID=...>;<SID=...>;CN=...' (Windows and Samba; a server that ignores it sends plain DNs).
EXTENDED_DN_CONTROL = ('1.2.840.113556.1.4.529', False, b'\x30\x03\x02\x01\x01')


def _int_or_none(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class KnownGuids(dict):
    """``{objectGUID: DN or None}`` for ``read_managed_groups(member_guids=...)`` and
    ``resolve_users(known_guids=...)``, made from the users to resolve: only their objectGUIDs are
    kept, keyed by the very string their object-identifier key is (not a copy), each given the DN
    of the member read that has it. A plain dict keeps every member's GUID as a new string: at
    200,000 members those were 17 MB of a full-read no-op's peak."""

    def __init__(self, users=()):
        dict.__init__(self)
        for user in users:
            key = _user_key(user, 'object_identifier')
            if key is not None:
                self[key] = None

    def record(self, guid, dn):
        if guid in self:
            self[guid] = dn   # the key stays the string it was made with


def group_from_entry(entry, member_guids=None, same_dns=None):
    """A search result entry of a group -> the plain managed-group dict. With ``member_guids`` (a
    dict, or a ``KnownGuids``) the members were read with the extended-DN control: their
    objectGUIDs go there ({guid: DN}) and the group's ``members`` stay plain DNs. ``same_dns`` (a dict, shared by the
    groups of one read): a member DN met before is that same string, not a copy (a user in six
    groups came back as six strings: 1.2 million member values of 200,000 users at 20,000 groups)."""
    guid = first(entry, 'objectGUID')
    sid = first(entry, 'objectSid')
    dn = split_extended_dn(entry['dn'])[0]   # the control extends the entry's own DN too
    members = list(values(entry, 'member'))
    if member_guids is not None:
        record = member_guids.record if isinstance(member_guids, KnownGuids) else member_guids.__setitem__
        plain = []
        for value in members:
            member_dn, member_guid = split_extended_dn(value)
            if same_dns is not None:
                member_dn = same_dns.setdefault(member_dn, member_dn)
            plain.append(member_dn)
            if member_guid:
                record(member_guid, member_dn)
        members = plain
    elif same_dns is not None:
        members = [same_dns.setdefault(member_dn, member_dn) for member_dn in members]
    return {
        'dn': dn,
        'object_guid': ad_codecs.guid_from_bytes(guid) if isinstance(guid, bytes) else guid,
        'object_sid': ad_codecs.sid_from_bytes(sid) if isinstance(sid, bytes) else sid,
        'cn': first(entry, 'cn'),
        'parent_dn': ad_codecs.parent_dn(dn),
        'anchor': first(entry, ANCHOR_ATTRIBUTE),
        'admin_description': first(entry, 'adminDescription'),
        'display_name': first(entry, 'displayName'),
        'description': first(entry, 'description'),
        'group_type': _int_or_none(first(entry, 'groupType')),
        'sam_account_name': first(entry, 'sAMAccountName'),
        'admin_count': _int_or_none(first(entry, 'adminCount')) or 0,
        'members': members,
    }


def _chunks(items, size):
    items = list(items)
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _or_filter(attribute, escaped_values):
    if len(escaped_values) == 1:
        return '(%s=%s)' % (attribute, escaped_values[0])
    return '(|%s)' % ''.join('(%s=%s)' % (attribute, v) for v in escaped_values)


def read_managed_groups(client, search_base, group_ids=None, member_guids=None, without_members=()):
    """Groups under ``search_base`` that carry a ``Group_`` anchor.

    With ``group_ids`` only those groups' anchors are searched (selected mode); without, every
    group whose anchor starts with ``Group_`` (needed to find orphans for pruning). With
    ``member_guids`` (a dict) it is filled with {objectGUID: DN} of every member read, for
    ``resolve_users(known_guids=...)``. The groups of ``without_members`` (ids among
    ``group_ids``) are read without their ``member`` attribute (their ``members`` is None: not
    read), which is most of what a large group costs to read; they come with their
    ``usn_changed`` instead (to tell whether they changed since a mark).
    """
    out = []
    same_dns = {}
    controls = [EXTENDED_DN_CONTROL] if member_guids is not None else None
    if group_ids is None:
        ldap_filter = '(&(objectClass=group)(%s=%s*))' % (ANCHOR_ATTRIBUTE, ANCHOR_PREFIX)
        for entry in client.search(search_base, ldap_filter, GROUP_ATTRIBUTES, controls=controls,
                                   page_size=min(client.page_size, MEMBER_PAGE_SIZE)):
            out.append(group_from_entry(entry, member_guids, same_dns))
        return out
    light = set(without_members or ())
    wanted = sorted(set(group_ids))
    for ids, attributes in (([i for i in wanted if i not in light], GROUP_ATTRIBUTES),
                            ([i for i in wanted if i in light], [a for a in GROUP_ATTRIBUTES if a != 'member'] + ['uSNChanged'])):
        for chunk in _chunks(ids, ANCHOR_CHUNK):
            escaped = [ad_codecs.escape_filter_value(anchor_for(gid)) for gid in chunk]
            ldap_filter = '(&(objectClass=group)%s)' % _or_filter(ANCHOR_ATTRIBUTE, escaped)
            # The extended-DN control only serves ``member``: a light read goes without it.
            for entry in client.search(search_base, ldap_filter, attributes, expected=len(chunk),
                                       controls=controls if attributes is GROUP_ATTRIBUTES else None):
                group = group_from_entry(entry, member_guids, same_dns)
                if attributes is not GROUP_ATTRIBUTES:
                    group['members'] = None
                    group['usn_changed'] = _int_or_none(first(entry, 'uSNChanged'))
                out.append(group)
    return out


def read_writeback_v2_groups(client, search_base, group_ids=None):
    """Groups written by Connect Sync Group Writeback v2: ``adminDescription=Group_<id>`` and no
    anchor yet. These are candidates for adoption, never touched otherwise."""
    out = []
    no_anchor = '(!(%s=*))' % ANCHOR_ATTRIBUTE
    if group_ids is None:
        ldap_filter = '(&(objectClass=group)(adminDescription=%s*)%s)' % (ANCHOR_PREFIX, no_anchor)
        batches = [(ldap_filter, None)]
    else:
        batches = []
        for chunk in _chunks(sorted(set(group_ids)), ANCHOR_CHUNK):
            escaped = [ad_codecs.escape_filter_value(anchor_for(gid)) for gid in chunk]
            batches.append(('(&(objectClass=group)%s%s)' % (_or_filter('adminDescription', escaped), no_anchor), len(chunk)))
    for ldap_filter, expected in batches:
        for entry in client.search(search_base, ldap_filter, GROUP_ATTRIBUTES, expected=expected):
            out.append(group_from_entry(entry))
    return out


def read_objects_at(client, search_base, dns):
    """Which of ``dns`` exist already, as {dn_key: {"dn", "anchor", "object_guid"}}: the planner
    uses it to refuse overwriting a foreign object that holds the name a group wants."""
    out = {}
    for chunk in _chunks(sorted(set(dns), key=ad_codecs.dn_key), ANCHOR_CHUNK):
        escaped = [ad_codecs.escape_filter_value(dn) for dn in chunk]
        ldap_filter = _or_filter('distinguishedName', escaped)
        for entry in client.search(search_base, ldap_filter, [ANCHOR_ATTRIBUTE, 'objectGUID', 'objectClass'],
                                   expected=len(chunk)):
            guid = first(entry, 'objectGUID')
            out[ad_codecs.dn_key(entry['dn'])] = {
                'dn': entry['dn'],
                'anchor': first(entry, ANCHOR_ATTRIBUTE),
                'object_guid': ad_codecs.guid_from_bytes(guid) if isinstance(guid, bytes) else guid,
            }
    return out


def read_sam_account_names(client, search_base, names):
    """Which of ``names`` are taken (lower case), for the sAMAccountName template collision check."""
    taken = set()
    for chunk in _chunks(sorted(set(n.lower() for n in names)), ANCHOR_CHUNK):
        escaped = [ad_codecs.escape_filter_value(n) for n in chunk]
        for entry in client.search(search_base, _or_filter('sAMAccountName', escaped), ['sAMAccountName'],
                                   expected=len(chunk)):
            name = first(entry, 'sAMAccountName')
            if name:
                taken.add(name.lower())
    return taken


def _user_keys(member):
    """The identifiers of an Entra user we can match on, in the documented order."""
    keys = {}
    for method in MATCH_ORDER:
        key = _user_key(member, method)
        if key is not None:
            keys[method] = key
    return keys


def _user_key(member, method):
    """The identifier of an Entra user for one ``method`` of ``MATCH_ORDER``, or None (absent or
    not well formed)."""
    try:
        if method == 'object_identifier':
            oid = member.get('on_premises_object_identifier')
            return ad_codecs.normalize_guid(oid) if oid else None
        if method == 'sid':
            sid = member.get('on_premises_security_identifier')
            if not sid:
                return None
            ad_codecs.sid_to_bytes(sid)
            # The same string when it already is upper case (Graph's are): a copy of each of
            # 200,000 SIDs was 19 MB of the resolution's peak.
            return sid if sid.isupper() else sid.upper()
        if method == 'immutable_id':
            imm = member.get('on_premises_immutable_id')
            return ad_codecs.guid_from_immutable_id(imm) if imm else None
        return None
    except ValueError:
        return None


def resolve_users(gc, users, member_match='auto', search_base='', known_guids=None, domain=None, domain_base=None,
                  connections=1, dn_only=False, pool=None):
    """Resolve Entra users to AD DNs through the Global Catalog.

    ``users``: member dicts (type user). ``member_match``: ``auto`` tries the object identifier
    (objectGUID), then the SID (objectSid), then the immutable id (base64 of objectGUID or
    mS-DS-ConsistencyGuid); or one of those alone. Returns ``(resolution, unresolved)``:
    ``{entra id: {"dn", "matched_by"}}`` and ``{entra id: reason}``; with ``dn_only`` the first maps
    each id to its DN alone (what the planner takes: a dict per user is 44 MB at 200,000 users).

    ``known_guids`` ({objectGUID: DN}, the members of the managed groups as
    ``read_managed_groups(member_guids=...)`` found them; a GUID without a DN is not known): an object identifier found there is
    resolved to that DN without a search, in the object-identifier round exactly where the search
    would have matched it (objectGUIDs are unique in the forest). Only the objectGUID is taken
    this way: a SID can also be a foreign security principal's, which the search rightly skips.

    ``domain`` (an ``ADClient`` of the domain, not the Global Catalog) and ``domain_base`` (its
    naming context): the immutable-id round searches the Global Catalog by objectGUID only; the
    ids still unresolved are then searched by ``mS-DS-ConsistencyGuid`` in the domain (not in the
    Global Catalog's partial attribute set, see the module docstring). Users of other domains of the
    forest whose immutable id is a consistency GUID are not found that way. Without ``domain`` the
    consistency GUID is not searched at all.

    ``connections`` > 1: a round of several OR searches runs on that many Global Catalog connections
    at once (the extra ones opened like ``gc``, closed at the end, their request counts added to
    ``gc.stats``), so the DC answers one search while the client decodes another. Results are
    merged in the order of the searches: the same as on one connection. ``pool`` (``search_pool``):
    connections the caller keeps open from one call to the next and closes, for a caller that
    resolves its users a part at a time (``gc`` and ``connections`` are then the pool's). Each
    user's answer depends on its own identifiers and the directory alone, so the users resolved a
    part at a time get the answers they would get all at once.
    """
    own = pool is None
    pool = _SearchPool(gc, connections) if own else pool
    try:
        return _resolve_users(pool, pool.gc, users, member_match, search_base, known_guids, domain, domain_base, dn_only)
    finally:
        if own:
            pool.close()


def search_pool(gc, connections=RESOLVE_CONNECTIONS):
    """Global Catalog connections for ``resolve_users(pool=...)``: ``gc`` and up to ``connections`` - 1
    more, opened when a search round needs them and kept until ``close()`` (which adds their
    request counts to ``gc.stats``)."""
    return _SearchPool(gc, connections)


def has_managed_groups(client, search_base):
    """Does any group under ``search_base`` carry a ``Group_`` anchor? Asks for no attributes and
    stops at the first entry (one page of a paged search)."""
    ldap_filter = '(&(objectClass=group)(%s=%s*))' % (ANCHOR_ATTRIBUTE, ANCHOR_PREFIX)
    for unused_entry in client.search(search_base, ldap_filter, ['1.1']):
        return True
    return False


def _resolve_users(pool, gc, users, member_match, search_base, known_guids, domain, domain_base, dn_only):
    # The identifiers are computed per round, for the users still unresolved, and dropped after it:
    # at 200,000 users a dict of every user's identifiers held through the rounds was 90 MB.
    known_guids = known_guids or {}
    order = MATCH_ORDER if member_match == 'auto' else (member_match,)
    pending = {}
    for user in users:
        uid = user.get('id')
        if uid and uid not in pending:
            pending[uid] = user
    here = _dns_name(domain_base) if domain is not None else None

    def elsewhere(uid):
        # a user Entra places in another domain than ``domain``'s
        their = (pending[uid].get('on_premises_domain_name') or '').strip().lower()
        return bool(their and here and their != here)

    resolution = {}

    def found(uid, dn, method):
        if uid not in resolution:
            resolution[uid] = dn if dn_only else {'dn': dn, 'matched_by': method}

    for method in order:
        wanted = {}   # key -> uid, or a list of the uids when several users share the key
        for uid, user in pending.items():
            if uid in resolution:
                continue
            key = _user_key(user, method)
            if key is None:
                continue
            have = wanted.get(key)
            if have is None:
                wanted[key] = uid
            elif isinstance(have, list):
                have.append(uid)
            else:
                wanted[key] = [have, uid]
        if method == 'object_identifier' and known_guids:
            for key in [k for k in wanted if known_guids.get(k)]:
                for uid in _uids(wanted.pop(key)):
                    found(uid, known_guids[key], method)
        if not wanted:
            continue
        for key, dn in pool.search_users(method, list(wanted), search_base):
            for uid in _uids(wanted.get(key)):
                found(uid, dn, method)
        if method == 'immutable_id' and domain is not None:
            # Each search scans the domain's users (the attribute is not indexed): only for users of
            # this domain (or of no known domain) that nothing else resolved.
            left = [key for key, uids in wanted.items()
                    if any(uid not in resolution and not elsewhere(uid) for uid in _uids(uids))]
            for key, dn in _search_users(domain, 'consistency_guid', left, domain_base or ''):
                for uid in _uids(wanted.get(key)):
                    found(uid, dn, method)
    unresolved = {}
    for uid, user in pending.items():
        if uid in resolution:
            continue
        keys = _user_keys(user)
        usable = [m for m in order if m in keys]
        if not keys:
            unresolved[uid] = 'no_on_premises_identifier'
        elif not usable:
            unresolved[uid] = 'no_identifier_for_member_match'
        else:
            unresolved[uid] = 'not_found_in_forest'
    return resolution, unresolved


def _uids(wanted_value):
    """The uids of one ``wanted`` value (one uid, a list of them, or None)."""
    if wanted_value is None:
        return ()
    return wanted_value if isinstance(wanted_value, list) else (wanted_value,)


class _SearchPool(object):
    """``_search_users`` over up to ``size`` connections like ``gc`` (see ``resolve_users``)."""

    def __init__(self, gc, size):
        self.gc = gc
        self.size = max(1, int(size or 1))
        self.extra = []

    def _connections(self, wanted):
        while len(self.extra) + 1 < min(self.size, wanted):
            try:
                conn = type(self.gc)(self.gc.params, global_catalog=self.gc.is_global_catalog, range_size=self.gc.range_size)
                conn.connect()
            except Exception:  # pylint: disable=broad-except
                self.size = len(self.extra) + 1   # no more connections to be had: search on those there are
                break
            self.extra.append(conn)
        return [self.gc] + self.extra

    def search_users(self, method, keys, search_base):
        """``[(key, dn)]`` as ``_search_users`` yields them, the chunks spread over the connections."""
        chunks = list(_chunks(sorted(keys), RESOLVE_CHUNK))
        if self.size <= 1 or len(chunks) <= 1:
            return list(_search_users(self.gc, method, keys, search_base))
        conns = self._connections(len(chunks))
        if len(conns) <= 1:
            return list(_search_users(self.gc, method, keys, search_base))
        from concurrent.futures import ThreadPoolExecutor
        found = [None] * len(chunks)

        def work(index):
            # one thread per connection (an ldap3 connection serves one request at a time)
            for n in range(index, len(chunks), len(conns)):
                found[n] = list(_search_users(conns[index], method, chunks[n], search_base))
        with ThreadPoolExecutor(max_workers=len(conns)) as pool:
            futures = [pool.submit(work, i) for i in range(len(conns))]
            for fut in futures:
                fut.result()   # the first failure is raised, as on one connection
        return [pair for part in found for pair in part]

    def close(self):
        for conn in self.extra:
            self.gc.count_from(conn)
            try:
                conn.close()
            except Exception:  # pylint: disable=broad-except
                pass
        self.extra = []


def _dns_name(naming_context):
    """``DC=corp,DC=example,DC=test`` -> ``corp.example.test`` (None when it has no DC parts)."""
    try:
        parts = [value for rdn in ad_codecs.parse_dn(naming_context or '') for attr, value in rdn if attr.lower() == 'dc']
    except ValueError:
        return None
    return '.'.join(parts).lower() or None


def _require_readable(gc, entry, method):
    """A user matched by the filter whose identifier cannot be read (no read right on objectGUID or
    objectSid, or a Global Catalog not holding it) must fail the run: taking it for "not found"
    would drop the member, and authoritative membership would then remove it from the group."""
    attrs = {'sid': ('objectSid',), 'object_identifier': ('objectGUID',), 'immutable_id': ('objectGUID',)}.get(
        method, ('mS-DS-ConsistencyGuid',))
    if any(isinstance(first(entry, a), bytes) for a in attrs):
        return
    raise ADError('User %r matched the member search on %s but its %s could not be read; check the read rights of the bind '
                  'account and that the Global Catalog holds the attribute (members are not dropped on a guess)'
                  % (entry['dn'], getattr(gc, 'server', 'the Global Catalog'), ' or '.join(attrs)),
                  operation='search', server=getattr(gc, 'server', None), dn=entry['dn'])


def _search_users(gc, method, keys, search_base):
    """Yield (key, dn) for AD users matching ``keys`` by ``method``, in batched OR searches."""
    for chunk in _chunks(sorted(keys), RESOLVE_CHUNK):
        if method == 'sid':
            clauses = ['(objectSid=%s)' % ad_codecs.sid_to_filter(k) for k in chunk]
        elif method in ('object_identifier', 'immutable_id'):
            # immutable_id: base64 of objectGUID (the Global Catalog round), or of
            # mS-DS-ConsistencyGuid when that was the source anchor (the domain round below).
            clauses = ['(objectGUID=%s)' % ad_codecs.guid_to_filter(k) for k in chunk]
        else:  # consistency_guid: only ever sent to a domain connection, never to the Global Catalog
            clauses = ['(mS-DS-ConsistencyGuid=%s)' % ad_codecs.guid_to_filter(k) for k in chunk]
        ldap_filter = '(&(objectClass=user)(|%s))' % ''.join(clauses)
        wanted = set(chunk)
        for entry in gc.search(search_base, ldap_filter, SEARCH_ATTRIBUTES.get(method, USER_ATTRIBUTES), expected=len(chunk)):
            _require_readable(gc, entry, method)
            if method == 'sid':
                sid = first(entry, 'objectSid')
                key = ad_codecs.sid_from_bytes(sid).upper() if isinstance(sid, bytes) else None
                if key in wanted:
                    yield key, entry['dn']
                continue
            for attr in ('mS-DS-ConsistencyGuid',) if method == 'consistency_guid' else ('objectGUID',):
                raw = first(entry, attr)
                if isinstance(raw, bytes) and len(raw) == 16:
                    key = ad_codecs.guid_from_bytes(raw)
                    if key in wanted:
                        yield key, entry['dn']
                        break


def read_managed_groups_without_members(client, search_base):
    """Every group under ``search_base`` carrying a ``Group_`` anchor, without its members (their
    ``members`` is []): enough to decide and carry out deletes of groups outside the run's selection."""
    ldap_filter = '(&(objectClass=group)(%s=%s*))' % (ANCHOR_ATTRIBUTE, ANCHOR_PREFIX)
    attributes = [a for a in GROUP_ATTRIBUTES if a != 'member']
    return [group_from_entry(entry) for entry in client.search(search_base, ldap_filter, attributes)]


def read_groups_by_sid(client, search_base, sids):
    """Groups under ``search_base`` (normally the domain) whose objectSid is one of ``sids``, with their
    members: the original AD groups of Entra groups whose source of authority moved to the cloud
    (Entra keeps the original's objectSid as ``onPremisesSecurityIdentifier``). objectSid is indexed."""
    out = []
    wanted = []
    for sid in sorted(set(str(s).upper() for s in sids or () if s)):
        try:
            wanted.append(ad_codecs.sid_to_filter(sid))
        except ValueError:
            continue   # not a SID: nothing can match it
    for chunk in _chunks(wanted, ANCHOR_CHUNK):
        ldap_filter = '(&(objectClass=group)%s)' % _or_filter('objectSid', chunk)
        for entry in client.search(search_base, ldap_filter, GROUP_ATTRIBUTES, expected=len(chunk)):
            out.append(group_from_entry(entry))
    return out
