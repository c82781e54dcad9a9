# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Event-Driven Ansible source ``hybrid_identity.cloud_sync.entra_group_changes``.

Polls Microsoft Graph ``/groups/delta`` and puts one event per changed Entra group on the
rulebook's queue::

    - name: Entra group changes
      hosts: localhost
      sources:
        - hybrid_identity.cloud_sync.entra_group_changes:
            delta_state_path: /var/lib/cloudsync/eda-delta.json
            poll_interval: 5
      rules: ...

Options (``args``):

* the modules' Graph connection options, with the same aliases, defaults and environment
  fallbacks (read from ``GRAPH_AUTH_ARGSPEC``, so they stay the same): ``tenant_id``
  (``AZURE_TENANT_ID``), ``client_id`` (``AZURE_CLIENT_ID``), ``client_secret``
  (``AZURE_CLIENT_SECRET``), ``client_certificate_path``, ``auth_method``, ``cloud``,
  ``authority_host``, ``graph_endpoint`` (``CLOUDSYNC_GRAPH_ENDPOINT``), ``graph_ca_bundle``
  (``CLOUDSYNC_GRAPH_CA_BUNDLE``), ``graph_retry_budget``, ...: see the ``graph_auth`` doc fragment.
* ``delta_state_path`` (``CLOUDSYNC_EDA_STATE_PATH``; required): JSON file holding the delta
  link (and the names of groups seen). A restart resumes from it: no full read. It is written
  only after the changes it covers were put on the queue, so a crash repeats events rather
  than losing them.
* ``poll_interval`` (``CLOUDSYNC_EDA_POLL_INTERVAL``; seconds, default 30): one delta request per poll when nothing changed.
* ``settle`` (``CLOUDSYNC_EDA_SETTLE``; seconds, default 0.5): after a poll that found changes, the next poll comes after
  ``settle`` seconds, until a poll finds nothing or ``max_batch_wait`` passed; everything
  found meanwhile is one batch. 500 changes made within a few seconds reach the rulebook as one
  event per changed group, all in one batch (``batch.index`` 0 carries every group id of the
  batch, so one rule run can handle all of them).
* ``max_batch_wait`` (``CLOUDSYNC_EDA_MAX_BATCH_WAIT``; seconds, default 10): upper bound of a batch's coalescing time.
* ``outage_backoff_max`` (``CLOUDSYNC_EDA_OUTAGE_BACKOFF_MAX``; seconds, default 60): longest wait between polls while Graph fails
  (429/5xx/connection errors after the client's own retries); Retry-After is honoured.
* ``initial`` (``CLOUDSYNC_EDA_INITIAL``; ``latest`` default, or ``full``): without a state file, start from "now"
  (``$deltatoken=latest``: nothing is read) or read every group once (one ``created`` event
  each, so a first run writes everything back).

Event (``event.cloud_sync``)::

    {"change": "created" | "updated" | "renamed" | "deleted" | "members" | "resync",
     "changes": [all kinds that apply, e.g. ["renamed", "members"]],
     "group_id": "...", "display_name": "..." | None, "previous_display_name": "..." | None,
     "properties": {changed Graph properties, camelCase},
     "members_added": [ids], "members_removed": [ids],
     "batch": {"id": "...", "index": 0, "size": 3, "group_ids": [...], "nested_group_ids": [...]
               (both on index 0 only)},
     "detected_at": epoch seconds}

``resync`` (no ``group_id``): Graph rejected the delta link (expired after about 7 days,
or reset), so changes may have been missed: the rulebook should run a full writeback.

Graph: https://learn.microsoft.com/graph/api/group-delta (delta rounds, ``@removed``,
``members@delta``), https://learn.microsoft.com/graph/delta-query-overview (``$deltatoken=latest``,
tokens expire: 410 / ``syncStateNotFound``), https://learn.microsoft.com/graph/throttling
(Retry-After).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import asyncio
import json
import logging
import os
import sys
import time
import uuid

# ansible-rulebook loads this file with runpy, outside Ansible's collection loader: make the
# collection's module_utils importable from the collection tree this file is in
# (<root>/ansible_collections/<ns>/<name>/extensions/eda/plugins/event_source/this.py).
try:
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import graph_client as _gc
except ImportError:  # pragma: no cover - depends on how the collection is installed
    _HERE = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.abspath(os.path.join(_HERE, *([os.pardir] * 7))))
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import graph_client as _gc

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.entra_reader import collect as _collect  # noqa: E402
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.argspec import GRAPH_AUTH_ARGSPEC  # noqa: E402
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import json_file  # noqa: E402

GraphClient = _gc.GraphClient
GraphError = _gc.GraphError
DeltaResyncRequired = _gc.DeltaResyncRequired

LOG = logging.getLogger('hybrid_identity.cloud_sync.entra_group_changes')

DELTA_SELECT = ('displayName', 'description', 'securityEnabled', 'mailEnabled', 'groupTypes', 'membershipRule',
                'onPremisesSyncEnabled', 'members')
STATE_VERSION = 1
SOURCE_OPTIONS = {
    'delta_state_path': (['CLOUDSYNC_EDA_STATE_PATH'], None, str),
    'poll_interval': (['CLOUDSYNC_EDA_POLL_INTERVAL'], 30.0, float),
    'settle': (['CLOUDSYNC_EDA_SETTLE'], 0.5, float),
    'max_batch_wait': (['CLOUDSYNC_EDA_MAX_BATCH_WAIT'], 10.0, float),
    'outage_backoff_max': (['CLOUDSYNC_EDA_OUTAGE_BACKOFF_MAX'], 60.0, float),
    'initial': (['CLOUDSYNC_EDA_INITIAL'], 'latest', str),
}
CHANGE_ORDER = ('deleted', 'created', 'renamed', 'updated', 'members')
CREATE_KEYS = ('displayName', 'securityEnabled', 'mailEnabled', 'groupTypes')


class SourceError(Exception):
    """Bad options or an unusable state file: the source stops with this message."""


TYPES = {'str': str, 'path': str, 'int': int, 'float': float, 'bool': bool}


def graph_options():
    """The modules' Graph connection options (``GRAPH_AUTH_ARGSPEC``), as
    ``{name: (environment variables, default, type, aliases, choices)}``: the source takes the same
    options, aliases and environment fallbacks, so it follows them when they change."""
    out = {}
    for name, spec in GRAPH_AUTH_ARGSPEC.items():
        fallback = spec.get('fallback')
        envs = list(fallback[1]) if fallback and len(fallback) > 1 else []
        out[name] = (envs, spec.get('default'), TYPES.get(spec.get('type') or 'str', str), list(spec.get('aliases') or []),
                     spec.get('choices'))
    return out


def _convert(name, value, kind):
    if value is None:
        return None
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ('1', 'true', 'yes', 'on'):
            return True
        if text in ('0', 'false', 'no', 'off'):
            return False
        raise SourceError('%s must be a boolean, not %r' % (name, value))
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise SourceError('%s must be %s, not %r' % (name, kind.__name__, value))


def resolve_options(args, environ=None):
    """The source's options from ``args`` (names or aliases of the modules' Graph options, and
    the source's own), else their environment variables, else the defaults (pure: ``environ``
    defaults to ``os.environ``)."""
    environ = os.environ if environ is None else environ
    args = dict(args or {})
    known = graph_options()
    known.update((k, v + ([], None)) for k, v in SOURCE_OPTIONS.items())
    alias_of = dict((alias, name) for name, spec in known.items() for alias in spec[3])
    given = {}
    for key, value in args.items():
        name = alias_of.get(key, key)
        if name not in known:
            raise SourceError('Unknown option of hybrid_identity.cloud_sync.entra_group_changes: %s' % key)
        if value is not None and value != '':
            given[name] = value
    out = {}
    for name, (envs, default, kind, unused_aliases, choices) in known.items():
        value = given.get(name)
        if value is None:
            value = next((environ[e] for e in envs if environ.get(e)), None)
        value = _convert(name, value if value is not None else default, kind)
        if choices and value is not None and value not in choices:
            raise SourceError('%s must be one of %s, not %r' % (name, ', '.join(choices), value))
        out[name] = value
    if out.get('client_certificate_path'):
        out['client_certificate_path'] = os.path.expanduser(out['client_certificate_path'])
    if not out['delta_state_path']:
        raise SourceError('delta_state_path (or CLOUDSYNC_EDA_STATE_PATH) is required: the delta link is kept there so '
                          'a restart resumes without reading every group')
    if out['initial'] not in ('latest', 'full'):
        raise SourceError("initial must be 'latest' or 'full', not %r" % out['initial'])
    for name in ('poll_interval', 'settle', 'max_batch_wait', 'outage_backoff_max'):
        if out[name] < 0:
            raise SourceError('%s must not be negative' % name)
    return out


# -- pure core: delta changes -> per-group events ------------------------------------------------

def merge_pending(pending, changes):
    """Fold one poll's merged delta changes (``{gid: group}`` from ``GraphClient.delta_groups``)
    into ``pending`` (same shape) so one batch holds one record per group. A member added then
    removed within the batch ends as the last state seen; a group deleted ends deleted."""
    for gid, item in changes.items():
        cur = pending.setdefault(gid, {'id': gid})
        members = dict((m['id'], m) for m in cur.get('members@delta') or [])
        for key, value in item.items():
            if key in ('id', 'members@delta'):
                continue
            cur[key] = value
        for m in item.get('members@delta') or []:
            members[m['id']] = m
        if members:
            cur['members@delta'] = list(members.values())
        if '@removed' not in item and '@removed' in cur and len(item) > 1:
            del cur['@removed']   # re-created within the batch (only Microsoft 365 groups can be)
    return pending


def classify(item, known_names):
    """``(change, changes, previous name)`` of one merged delta record. ``known_names`` maps
    group ids to the display names seen before (the state file's)."""
    gid = item['id']
    if '@removed' in item:
        return 'deleted', ['deleted'], known_names.get(gid)
    props = dict((k, v) for k, v in item.items() if k not in ('id', 'members@delta') and not k.startswith('@'))
    kinds = []
    previous = known_names.get(gid)
    if gid not in known_names and all(k in props for k in CREATE_KEYS):
        kinds.append('created')
    else:
        if 'displayName' in props and props['displayName'] != previous:
            kinds.append('renamed')
        if any(k != 'displayName' for k in props):
            kinds.append('updated')
    if item.get('members@delta'):
        kinds.append('members')
    if not kinds:
        kinds.append('updated')
    primary = next(k for k in CHANGE_ORDER if k in kinds)
    return primary, kinds, previous


def build_events(pending, known_names, batch_id=None, now=None, nested=None):
    """One event per group of the batch, sorted by group id; ``batch.index`` 0 carries all ids
    (and, when known, ``nested_group_ids``: the groups nested in them, whose links the writeback
    of the batch must keep)."""
    batch_id = batch_id or str(uuid.uuid4())
    now = time.time() if now is None else now
    gids = sorted(pending)
    events = []
    for index, gid in enumerate(gids):
        item = pending[gid]
        change, kinds, previous = classify(item, known_names)
        members = item.get('members@delta') or []
        props = dict((k, v) for k, v in item.items() if k not in ('id', 'members@delta') and not k.startswith('@'))
        batch = {'id': batch_id, 'index': index, 'size': len(gids)}
        if index == 0:
            batch['group_ids'] = gids
            if nested is not None:
                batch['nested_group_ids'] = list(nested)
        events.append({'cloud_sync': {
            'change': change, 'changes': kinds, 'group_id': gid,
            'display_name': props.get('displayName', known_names.get(gid)),
            'previous_display_name': previous if 'renamed' in kinds else None,
            'properties': props,
            'members_added': sorted(m['id'] for m in members if '@removed' not in m),
            'members_removed': sorted(m['id'] for m in members if '@removed' in m),
            'batch': batch, 'detected_at': now}})
    return events


def remember_names(known_names, pending):
    for gid, item in pending.items():
        if '@removed' in item:
            known_names.pop(gid, None)
        elif 'displayName' in item:
            known_names[gid] = item['displayName']
    return known_names


def resync_event(reason, now=None):
    return {'cloud_sync': {'change': 'resync', 'changes': ['resync'], 'group_id': None, 'reason': reason,
                           'batch': {'id': str(uuid.uuid4()), 'index': 0, 'size': 1, 'group_ids': []},
                           'detected_at': time.time() if now is None else now}}


def outage_wait(exc, attempt, poll_interval, cap):
    """Seconds to wait after a failed poll: the server's Retry-After when it gave one, else
    doubling from the poll interval; never more than ``cap`` (nor less than one second)."""
    retry_after = getattr(exc, 'retry_after', None)
    if retry_after is not None:
        return max(1.0, min(float(retry_after), cap))
    return max(1.0, min(max(poll_interval, 1.0) * (2 ** min(attempt, 10)), cap))


# -- state file -------------------------------------------------------------------------------------

def load_state(path):
    state = json_file.read(path, 'the EDA delta state file', 'remove it to start from now', SourceError)
    if state is None:
        return None
    if not isinstance(state, dict) or state.get('version') != STATE_VERSION or not state.get('delta_link'):
        raise SourceError('%s is not a delta state file of entra_group_changes (remove it to start from now)' % path)
    return state


def save_state(path, state):
    """Atomic write (temporary file, then rename): a crash never leaves half a file."""
    directory = os.path.dirname(os.path.abspath(path)) or '.'
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o700)
    json_file.write_atomically(path, state, prefix='.eda-delta-')


# -- the shell: polling loop ------------------------------------------------------------------------

class Poller(object):
    """Blocking Graph calls (run in a worker thread by ``main``)."""

    def __init__(self, options):
        params = dict((k, options[k]) for k in GRAPH_AUTH_ARGSPEC)
        self.client = GraphClient(params, warn=LOG.warning)

    def latest_link(self):
        unused, link = self.client.delta_groups(list(DELTA_SELECT), delta_link=self.client.url(
            '/groups/delta', {'$select': ','.join(DELTA_SELECT), '$deltatoken': 'latest'}))
        return link

    def full_round(self):
        return self.client.delta_groups(list(DELTA_SELECT))

    def poll(self, link):
        return self.client.delta_groups(list(DELTA_SELECT), delta_link=link)

    def nested_groups(self, group_ids):
        """Ids of the groups nested (transitively) in ``group_ids``: one small read per group
        (``transitiveMembers/microsoft.graph.group?$select=id``), in $batch for several. A group
        deleted meanwhile has none."""
        reqs = [(gid, '/groups/%s/transitiveMembers/microsoft.graph.group' % gid, {'$select': 'id'}) for gid in group_ids]
        results, unused_errors = _collect(self.client, reqs)
        return sorted(set(item['id'].lower() for items in results.values() for item in items if item.get('id'))
                      - set(group_ids))

    def close(self):
        self.client.close()


async def _call(fn, *args):
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, fn, *args)


async def _start_state(poller, options, queue):
    """The state to poll from: the saved one, or a new one (``initial``)."""
    path = options['delta_state_path']
    state = load_state(path)
    if state is not None:
        LOG.info('entra_group_changes: resuming from the delta link in %s', path)
        return state
    if options['initial'] == 'full':
        changes, link = await _call(poller.full_round)
        state = {'version': STATE_VERSION, 'delta_link': link, 'names': {}}
        if changes:
            for event in build_events(changes, {}):
                await queue.put(event)
            remember_names(state['names'], changes)
    else:
        state = {'version': STATE_VERSION, 'delta_link': await _call(poller.latest_link), 'names': {}}
    save_state(path, state)
    return state


async def run(queue, options, poller=None, stop=None, sleep=asyncio.sleep):
    """The polling loop; ``stop`` (an ``asyncio.Event``) ends it (tests)."""
    poller = poller or Poller(options)
    stop = stop or asyncio.Event()
    failures = 0
    try:
        state = await _start_state(poller, options, queue)
        pending, batch_started, batch_link = {}, None, None
        while not stop.is_set():
            try:
                changes, link = await _call(poller.poll, batch_link or state['delta_link'])
                failures = 0
            except DeltaResyncRequired as exc:
                LOG.warning('entra_group_changes: Graph rejected the delta link (%s): starting from now and asking '
                            'for a full writeback', exc)
                state = {'version': STATE_VERSION, 'delta_link': await _call(poller.latest_link),
                         'names': state.get('names') or {}}
                pending, batch_started, batch_link = {}, None, None
                await queue.put(resync_event('delta_rejected: HTTP %s %s' % (exc.status, exc.code or '')))
                save_state(options['delta_state_path'], state)
                continue
            except (GraphError, _gc.GraphAuthError) as exc:
                wait = outage_wait(exc, failures, options['poll_interval'], options['outage_backoff_max'])
                failures += 1
                LOG.warning('entra_group_changes: poll failed (%s); next try in %.0f s', exc, wait)
                await sleep(wait)
                continue
            now = time.monotonic()
            if changes:
                merge_pending(pending, changes)
                batch_link = link
                if batch_started is None:
                    batch_started = now
                if now - batch_started < options['max_batch_wait']:
                    await sleep(options['settle'])
                    continue
            elif batch_link is not None:
                batch_link = link
            if pending:
                try:
                    nested = await _call(poller.nested_groups, sorted(g for g in pending if '@removed' not in pending[g]))
                except (GraphError, _gc.GraphAuthError) as exc:
                    LOG.warning('entra_group_changes: nested groups not read (%s): the playbook reads them', exc)
                    nested = None
                for event in build_events(pending, state.get('names') or {}, nested=nested):
                    await queue.put(event)
                state['names'] = remember_names(state.get('names') or {}, pending)
                pending, batch_started = {}, None
            state['delta_link'] = batch_link or link
            batch_link = None
            save_state(options['delta_state_path'], state)
            await sleep(options['poll_interval'])
    finally:
        poller.close()


async def main(queue, args):
    """Entry point called by ansible-rulebook."""
    options = resolve_options(args)
    await run(queue, options)


if __name__ == '__main__':  # pragma: no cover - manual run: print the events
    class _PrintQueue(object):
        async def put(self, event):
            print(json.dumps(event), flush=True)

    logging.basicConfig(level=logging.INFO)
    asyncio.run(main(_PrintQueue(), json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}))
