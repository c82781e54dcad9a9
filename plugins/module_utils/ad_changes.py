# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What changed in AD since the last run: the ``uSNChanged`` high-water mark of one DC.

This is Microsoft's documented way of polling AD for changes ("Polling for Changes Using
uSNChanged", https://learn.microsoft.com/en-us/windows/win32/ad/polling-for-changes-using-usnchanged,
and its example, https://learn.microsoft.com/en-us/windows/win32/ad/example-code-to-retrieve-changes-using-usnchanged):

- keep three facts of the DC after each run: its DNS name, its ``invocationId`` (a new one means
  the DC was restored from a backup, or is another DC) and its rootDSE ``highestCommittedUSN``;
- next time, on the same DC with the same invocationId, search ``(uSNChanged>=<saved USN + 1>)``:
  every object created, modified, renamed, moved or deleted there since has a higher uSNChanged.
  Deleted objects are found with the show-deleted control (LDAP_SERVER_SHOW_DELETED_OID) under
  the domain's ``CN=Deleted Objects``; our anchor survives the deletion because
  ``msDS-ExternalDirectoryObjectId`` has searchFlags 9 (indexed | preserve on delete).
- USNs are per DC: any other DC, a restored DC or a saved mark above the DC's current one means
  the saved mark says nothing, and the run reads everything (a full read), saying why.

Checked against Samba 4.17 in the lab (tests/integration/test_ad_changes.py): a member added by
hand, a rename, a move and a delete each raise the group's uSNChanged.

The decisions (may the saved mark be used, which groups need a fresh read) are pure functions;
the two reads go through ``ADClient`` like every other reader.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import time

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import ad_codecs
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_client import OID_SHOW_DELETED, first
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_codecs import ANCHOR_ATTRIBUTE

AD_STATE_VERSION = 1
# A full AD read at least this often (seconds), like Cloud Sync's periodic full cycle: a safety net
# for what a watermark cannot see (for example a change made in the window of this run's own writes).
FULL_READ_INTERVAL = 24 * 3600
SHOW_DELETED = (OID_SHOW_DELETED, True, None)
CHANGE_ATTRIBUTES = ['objectGUID', ANCHOR_ATTRIBUTE, 'uSNChanged', 'isDeleted']


def read_watermark(client):
    """The DC's change mark now: ``{"server", "invocation_id", "usn"}`` (uncached rootDSE read)."""
    root = None
    for entry in client.search('', '(objectClass=*)', ['highestCommittedUSN', 'dsServiceName', 'dnsHostName'], scope='base'):
        root = entry
    if root is None or first(root, 'highestCommittedUSN') is None or not first(root, 'dsServiceName'):
        return None   # a server that does not publish its USN (not AD): no incremental AD reads
    ntds = client.get(first(root, 'dsServiceName'), ['invocationId'], binary_attributes=['invocationId'])
    invocation = first(ntds, 'invocationId') if ntds else None
    if isinstance(invocation, (bytes, bytearray)) and len(invocation) == 16:
        invocation = ad_codecs.guid_from_bytes(invocation)
    return {
        'server': (first(root, 'dnsHostName') or '').lower(),
        'invocation_id': invocation,
        'usn': int(first(root, 'highestCommittedUSN')),
    }


def unusable_reason(saved, current, search_base, now=None, full_read_interval=FULL_READ_INTERVAL, options=None):
    """Why the saved AD state cannot be trusted for an incremental read (a short reason code), or
    None when it can. ``options``: the fingerprint of this run's options (``new_state``'s
    ``options``): with other options every group may be written differently. Pure."""
    if not isinstance(saved, dict) or not saved:
        return 'no_ad_state'
    if saved.get('version') != AD_STATE_VERSION:
        return 'ad_state_version'
    if current is None or not current.get('invocation_id'):
        return 'dc_without_usn'
    try:
        if ad_codecs.dn_key(saved.get('search_base') or '') != ad_codecs.dn_key(search_base):
            return 'search_base_changed'
    except ValueError:
        return 'search_base_changed'
    if options is not None and saved.get('options') != options:
        return 'options_changed'
    if saved.get('invocation_id') != current['invocation_id']:
        # Another DC, or this DC restored from a backup: its USNs are not the ones saved.
        return 'dc_changed' if (saved.get('server') or '') != current.get('server') else 'dc_restored'
    if int(saved.get('usn') or 0) > current['usn']:
        return 'usn_went_back'
    now = time.time() if now is None else now
    if full_read_interval is not None and now - float(saved.get('full_read_at') or 0) > full_read_interval:
        return 'interval'
    return None


def read_changed_groups(client, domain_dn, since_usn, expected=None):
    """Groups of the domain (deleted ones included) whose uSNChanged is above ``since_usn``, as they
    are read (a generator: the 17,000 groups a first run wrote are folded a page at a time, never
    held as a list): ``{"object_guid", "group_id" (from the anchor, or None), "usn", "deleted", "dn"}``.
    ``expected``: how many the caller expects (``ADClient.search``: within a page, one unpaged search)."""
    ldap_filter = '(&(objectClass=group)(uSNChanged>=%d))' % (int(since_usn) + 1)
    for entry in client.search(domain_dn, ldap_filter, CHANGE_ATTRIBUTES, controls=[SHOW_DELETED], expected=expected):
        guid = first(entry, 'objectGUID')
        yield {
            'object_guid': ad_codecs.guid_from_bytes(guid) if isinstance(guid, (bytes, bytearray)) else guid,
            'group_id': ad_codecs.group_id_from_anchor(first(entry, ANCHOR_ATTRIBUTE)),
            'usn': int(first(entry, 'uSNChanged') or 0),
            'deleted': str(first(entry, 'isDeleted') or '').upper() == 'TRUE',
            'dn': entry.get('dn'),
        }


def users_changed_since(client, domain_dn, since_usn):
    """True when any user of the domain changed (created, renamed, deleted...) since ``since_usn``:
    a member that did not resolve last time may resolve now. One entry at most is read."""
    ldap_filter = '(&(objectCategory=person)(objectClass=user)(uSNChanged>=%d))' % (int(since_usn) + 1)
    for unused in client.search(domain_dn, ldap_filter, ['objectGUID'], controls=[SHOW_DELETED], page_size=1):
        return True
    return False


def groups_to_reread(changed, saved, search_base=None):
    """Entra group ids whose AD copy changed since the saved mark, from ``read_changed_groups``
    output. A change this collection made itself (the object's uSNChanged is the one recorded right
    after our own write) is not a change. An object that lost its anchor is found by the objectGUID
    the state remembers. An object carrying one of our anchors that the last run did not manage and
    that is outside ``search_base`` (another job's copy for another OU, a test copy) is not ours:
    it is ignored (one inside is a copy made meanwhile, so it counts). Pure."""
    known = saved.get('managed') or {}
    own = saved.get('own_writes') or {}
    out = set()
    for item in changed:
        guid = item.get('object_guid')
        gid = item.get('group_id') or known.get(guid)
        if not gid:
            continue   # not ours, never was
        if search_base and guid not in known and not _within(item.get('dn'), search_base):
            continue   # someone else's copy, outside the scope this state is about
        if guid and own.get(guid) == item.get('usn'):
            continue   # our own write of the last run
        out.add(gid)
    return out


def split_own_writes(changed, written, known, search_base=None):
    """Read right after a run's writes (``read_changed_groups`` from the run's start mark): the
    groups this run wrote and the others. Returns ``(own, others)``: ``own`` {objectGUID:
    uSNChanged} of this run's writes (``known``, {objectGUID: Entra id}, is updated with their
    objects: deleted ones dropped, new ones added); ``others`` the Entra ids whose copy someone else
    changed while the run wrote (see ``groups_to_reread``), which the next run must compare in full
    when it searches from a mark read after the writes. Pure, apart from updating ``known``."""
    own = {}
    rest = []
    for item in changed:
        gid = item.get('group_id') or known.get(item.get('object_guid'))
        if gid in written:
            own[item['object_guid']] = item['usn']
            if item.get('deleted'):
                known.pop(item['object_guid'], None)
            else:
                known[item['object_guid']] = gid
        else:
            rest.append(item)
    return own, groups_to_reread(rest, {'managed': known}, search_base)


def _within(dn, search_base):
    try:
        return bool(dn) and ad_codecs.dn_is_within(dn, search_base)
    except ValueError:
        return True   # cannot tell: counted


def new_state(watermark, search_base, managed, own_writes=None, previous=None, full_read=False,
              unresolved_members=False, now=None, options=None, unsettled=()):
    """The AD part of the state file after a run. ``managed``: {objectGUID: Entra group id} of every
    managed group known after the run; ``own_writes``: {objectGUID: uSNChanged} read right after
    this run's writes; ``unsettled``: Entra group ids not written as planned (skipped or failed),
    which the next run compares in full. Pure."""
    now = time.time() if now is None else now
    full_read_at = now if full_read or not previous else float(previous.get('full_read_at') or now)
    return {
        'version': AD_STATE_VERSION,
        'server': watermark['server'],
        'invocation_id': watermark['invocation_id'],
        'usn': watermark['usn'],
        'search_base': search_base,
        'full_read_at': full_read_at,
        'managed': dict(managed),
        'own_writes': dict(own_writes or {}),
        'unresolved_members': bool(unresolved_members),
        'options': options,
        'unsettled': sorted(unsettled or ()),
    }
