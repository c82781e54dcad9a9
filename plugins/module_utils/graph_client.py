# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""``GraphClient``: Microsoft Graph reads over one pooled ``requests`` session.

* ``get(path, params)`` one response body; ``iter_pages(path, params, headers)`` the items of a
  collection, following ``@odata.nextLink`` whole and unmodified (``$top=999`` by default on
  directory collections; ``ConsistencyLevel: eventual`` re-sent on every page when used).
* ``batch_collect(requests)`` many small collection reads through JSON ``$batch`` (20 per batch,
  ``graph_parallelism`` batches at once); each sub-response's nextLink goes into a later batch;
  throttled sub-requests alone are retried, after the longest ``Retry-After``.
* ``delta_groups(select, delta_link)`` one round of ``/groups/delta`` merged per group (pages split
  a large group's members; replays tolerated); a rejected link raises ``DeltaResyncRequired``.
* Retries 429/503/504 (and connection failures) honouring ``Retry-After`` (seconds, fractional or
  HTTP-date), else exponential backoff with jitter, for as long as ``graph_retry_budget`` seconds
  from a request's first attempt (``retry_delay``): an outage is ridden out by time, not by a count
  that a short Retry-After uses up. A Retry-After longer than what is left of the budget fails at
  once (waiting would only be refused again); a backoff is clamped to what is left. The failure
  says how many attempts were made, over how long and how much of it was waiting.
  ``graph_max_retries``, when set, also caps the count. A 401 ``InvalidAuthenticationToken`` gets
  one token refresh. Requests carry ``client-request-id`` and ``x-ms-throttle-priority: low``.
* Every failure is a ``GraphError`` naming the request, HTTP status, Graph's code and message
  and the ``request-id`` (what Microsoft support asks for).
* ``stats``: requests, retries, throttled, batches, sub_requests, pages, token_refreshes.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import email.utils
import math
import random
import re
import threading
import time
import uuid

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.errors import CloudSyncError
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.graph_auth import (
    CLOUDS, GraphAuth, GraphAuthError, HAS_REQUESTS, make_session,
)

try:
    from urllib.parse import quote, urlencode, urlsplit
except ImportError:  # pragma: no cover - Python 2 is not supported by the collection
    from urllib import quote, urlencode  # type: ignore
    from urlparse import urlsplit  # type: ignore

if HAS_REQUESTS:
    import requests

try:
    from concurrent.futures import ThreadPoolExecutor
except ImportError:  # pragma: no cover
    ThreadPoolExecutor = None

__all__ = ['GraphClient', 'GraphError', 'GraphAuthError', 'DeltaResyncRequired', 'parse_retry_after', 'backoff_delay',
           'retry_delay', 'give_up_text', 'merge_delta_pages', 'format_graph_error', 'odata_quote', 'relative_url']

RETRY_STATUSES = (429, 503, 504)
# Seconds one request may spend being retried, from its first attempt (option graph_retry_budget).
DEFAULT_RETRY_BUDGET = 300
BATCH_SIZE = 20
DEFAULT_TOP = 999
# Collections (last path segment, casts stripped) that accept $top: directory object lists.
TOP_COLLECTIONS = frozenset(['groups', 'users', 'members', 'transitivemembers', 'memberof', 'transitivememberof',
                             'devices', 'serviceprincipals', 'contacts', 'applications', 'owners'])
ADVANCED_QUERY_RE = re.compile(r"(\bne\b|\bnot\b|\bendswith\(|\beq null\b|\$count|\$search)", re.IGNORECASE)
SYNC_STATE_CODES = ('syncstatenotfound', 'resyncrequired', 'syncstateinvalid')
QUERY_SAFE = "$,'()/:@=*"


class GraphError(CloudSyncError):
    """A Graph request failed. Attributes: status, code, message, request_id, client_request_id,
    method, url (path and query, never a token)."""

    def __init__(self, msg, status=None, code=None, message=None, request_id=None, client_request_id=None,
                 method=None, url=None, details=None, retry_after=None):
        info = dict(status=status, code=code, graph_message=message, request_id=request_id,
                    client_request_id=client_request_id, method=method, url=url)
        info.update(details or {})
        super(GraphError, self).__init__(msg, details=dict((k, v) for k, v in info.items() if v is not None))
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.client_request_id = client_request_id
        self.method = method
        self.url = url
        self.retry_after = retry_after


class DeltaResyncRequired(GraphError):
    """The delta link was rejected (410 Gone / 400 syncStateNotFound): do a full read, then a new delta round."""


def odata_quote(value):
    """An OData string literal: single quotes doubled, wrapped in quotes (``O'Brien`` -> ``'O''Brien'``)."""
    return "'%s'" % str(value).replace("'", "''")


def parse_retry_after(value, now=None):
    """Seconds to wait from a ``Retry-After`` value: delta seconds (fractional allowed) or an
    HTTP-date. None when absent or unparsable; never negative."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    try:
        seconds = float(text)
        if math.isnan(seconds) or math.isinf(seconds):
            return None
        return max(0.0, seconds)
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_tz(text)
    except (TypeError, ValueError, IndexError):
        parsed = None
    if not parsed:
        return None
    when = email.utils.mktime_tz(parsed)
    return max(0.0, when - (time.time() if now is None else now))


def backoff_delay(attempt, base=1.0, cap=60.0, rand=random.random):
    """Exponential backoff with jitter for retry ``attempt`` (0 first): a value in
    [d/2, d] where d = min(cap, base * 2**attempt)."""
    ceiling = min(float(cap), float(base) * (2 ** max(0, int(attempt))))
    return ceiling / 2.0 + rand() * ceiling / 2.0


def retry_delay(attempts, elapsed, retry_after, budget, max_retries=None, backoff_base=1.0, rand=random.random):
    """How long to wait before sending a refused request again, or why not to: ``(delay, None)`` or
    ``(None, reason)``.

    ``attempts``: requests sent so far (1 after the first refusal); ``elapsed``: seconds since the
    first was sent; ``retry_after``: the server's Retry-After in seconds (None when absent); ``budget``:
    ``graph_retry_budget``. A positive Retry-After is honoured whole: when it is longer than what is
    left of the budget the request fails now rather than retry early (Graph asks clients to wait it
    out: https://learn.microsoft.com/en-us/graph/throttling#best-practices-to-handle-throttling).
    Without one (or with 0) the exponential backoff is used, clamped to what is left of the budget so
    that the last attempt lands inside it."""
    budget = float(budget)
    remaining = budget - elapsed
    if max_retries is not None and attempts > max_retries:
        return None, 'graph_max_retries=%d reached' % max_retries
    if retry_after is not None and retry_after > 0:
        if retry_after > remaining:
            return None, 'Retry-After %gs is more than the %.1f s left of graph_retry_budget=%gs' % (
                retry_after, max(remaining, 0.0), budget)
        return retry_after, None
    if remaining < 0.05:
        return None, 'graph_retry_budget=%gs used up' % budget
    return min(backoff_delay(attempts - 1, backoff_base, rand=rand), remaining), None


def give_up_text(attempts, elapsed, waited, reason):
    """'gave up after 3 attempts in 4.1 s (waited 4.0 s): <reason>' for a failure message."""
    return 'gave up after %d attempts in %.1f s (waited %.1f s): %s' % (attempts, elapsed, waited, reason)


def format_graph_error(method, url, status, code=None, message=None, request_id=None, client_request_id=None,
                       date=None, prefix=None):
    """'Graph GET /v1.0/groups/x failed: HTTP 404 Request_ResourceNotFound: ... (request-id r, client-request-id c, date d)'."""
    text = '%sGraph %s %s failed: HTTP %s' % (prefix or '', method, url, status)
    if code:
        text += ' %s' % code
    if message:
        text += ': %s' % message
    ids = []
    if request_id:
        ids.append('request-id %s' % request_id)
    if client_request_id:
        ids.append('client-request-id %s' % client_request_id)
    if date:
        ids.append('date %s' % date)
    if ids:
        text += ' (%s)' % ', '.join(ids)
    return text


def relative_url(path, params=None):
    """``path?query`` with the query encoded as ``GraphClient`` encodes it (for ``$batch`` urls)."""
    if not params:
        return path
    query = urlencode([(k, v if isinstance(v, str) else str(v)) for k, v in params.items() if v is not None],
                      quote_via=quote, safe=QUERY_SAFE)
    return path + ('&' if '?' in path else '?') + query if query else path


def _error_body(body):
    """(code, message, request-id, client-request-id, date) from a Graph error envelope."""
    err = (body or {}).get('error') if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return None, None, None, None, None
    inner = err.get('innerError') or err.get('innererror') or {}
    return (err.get('code'), err.get('message'), inner.get('request-id'), inner.get('client-request-id'),
            inner.get('date'))


def _header(headers, name):
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return value
    return None


def merge_delta_pages(pages, merged=None):
    """Merge the ``value`` items of delta pages into ``{group id: group}``.

    A group split over pages appears several times: properties are updated (later wins),
    ``members@delta`` entries accumulate keyed by member id (a replayed entry changes nothing; a
    later entry for the same member wins); ``@removed`` marks the group as deleted. Order across
    pages is not assumed. Each merged group keeps Graph's camelCase properties, ``members@delta``
    as a list, and ``@removed`` when deleted."""
    merged = {} if merged is None else merged
    members = {}
    for gid, group in merged.items():
        members[gid] = dict((m['id'], m) for m in group.get('members@delta') or [])
    for page in pages:
        for item in (page.get('value') if isinstance(page, dict) else page) or []:
            gid = item.get('id')
            if not gid:
                continue
            gid = gid.lower()
            group = merged.setdefault(gid, {'id': gid})
            members.setdefault(gid, {})
            for key, value in item.items():
                if key in ('id', 'members@delta'):
                    continue
                group[key] = value
            for entry in item.get('members@delta') or []:
                mid = entry.get('id')
                if mid:
                    members[gid][mid.lower()] = dict(entry, id=mid.lower())
    for gid, group in merged.items():
        if members.get(gid) or 'members@delta' in group:
            group['members@delta'] = list(members.get(gid, {}).values())
    return merged


class _Response(object):
    __slots__ = ('status', 'headers', 'body', 'request_id', 'client_request_id')

    def __init__(self, status, headers, body, request_id=None, client_request_id=None):
        self.status = status
        self.headers = headers
        self.body = body
        self.request_id = request_id
        self.client_request_id = client_request_id


class GraphClient(object):
    """Reads Microsoft Graph. ``GraphClient(params)`` with the ``graph_auth`` options, or with
    keyword overrides (``GraphClient(params, graph_parallelism=8)``); ``auth=`` a ready ``GraphAuth``."""

    def __init__(self, params=None, auth=None, warn=None, throttle_priority='low', **settings):
        if not HAS_REQUESTS:
            raise GraphAuthError('The Python library requests is required to talk to Microsoft Graph')
        merged = dict(params or {})
        merged.update(settings)
        self.params = merged
        self.parallelism = max(1, int(merged.get('graph_parallelism') or 4))
        self.timeout = float(merged.get('graph_timeout') or 60)
        # graph_max_retries: an optional cap on the count; None (the default) leaves only the time budget.
        self.max_retries = max(0, int(merged['graph_max_retries'])) if merged.get('graph_max_retries') is not None else None
        # graph_max_retry_wait is the former name of graph_retry_budget (an alias in the argument spec).
        budget = merged.get('graph_retry_budget')
        if budget is None:
            budget = merged.get('graph_max_retry_wait')
        self.retry_budget = max(0.0, float(budget if budget is not None else DEFAULT_RETRY_BUDGET))
        self.backoff_base = float(merged.get('graph_backoff_base') or 1.0)
        self.throttle_priority = throttle_priority
        if auth is None:
            session = make_session(merged, pool_size=self.parallelism, warn=warn)
            auth = GraphAuth(merged, session=session, warn=warn)
        self.auth = auth
        self.session = auth.session
        self.endpoint = auth.graph_endpoint
        split = urlsplit(self.endpoint)
        self._origin = '%s://%s' % (split.scheme.lower(), split.netloc.lower())
        # Graph hosts whose nextLinks may be mapped onto an overridden endpoint (a proxy).
        self._graph_origins = set(g for unused_l, g in CLOUDS.values())
        self._lock = threading.Lock()
        self._executor = None
        self.stats = dict(requests=0, retries=0, throttled=0, batches=0, sub_requests=0, pages=0, token_refreshes=0,
                          retry_wait=0.0)

    # -- plumbing --------------------------------------------------------------------------------
    def close(self):
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _count(self, key, n=1):
        with self._lock:
            self.stats[key] = self.stats.get(key, 0) + n

    def map_parallel(self, fn, items):
        """``[fn(item) for item in items]`` with ``graph_parallelism`` workers; the first exception is raised."""
        items = list(items)
        if self.parallelism <= 1 or len(items) <= 1:
            return [fn(item) for item in items]
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=self.parallelism)
        futures = [self._executor.submit(fn, item) for item in items]
        results, first_error = [], None
        for fut in futures:
            try:
                results.append(fut.result())
            except Exception as exc:  # pylint: disable=broad-except
                results.append(None)
                if first_error is None:
                    first_error = exc
        if first_error is not None:
            raise first_error
        return results

    def url(self, path, params=None, version='v1.0'):
        """Absolute URL for ``path`` (``/groups``, ``/beta/users``, ``/v1.0/...`` or an absolute Graph URL)."""
        if path.lower().startswith('https://') or path.lower().startswith('http://'):
            url = self._own_url(path)
        else:
            if not path.startswith('/'):
                path = '/' + path
            if not (path.startswith('/v1.0/') or path.startswith('/beta/') or path in ('/v1.0', '/beta')):
                path = '/%s%s' % (version, path)
            url = self.endpoint + path
        return relative_url(url, params)

    def _own_url(self, url):
        """A nextLink/deltaLink: used whole; only its origin is mapped onto an overridden endpoint,
        and a link to any other host is refused (the token must not leave Graph)."""
        split = urlsplit(url)
        origin = '%s://%s' % (split.scheme.lower(), split.netloc.lower())
        if origin == self._origin:
            return url
        if origin in self._graph_origins:
            return self.endpoint + url[len(origin):]
        raise GraphError('Graph returned a link to another host (%s), not followed: %s' % (origin, url), url=url)

    def _short(self, url):
        """The URL without the endpoint, for messages: ``/v1.0/groups?$filter=...``."""
        if url.startswith(self.endpoint):
            return url[len(self.endpoint):] or '/'
        return url

    def _headers(self, token, extra=None):
        headers = {'Authorization': 'Bearer ' + token, 'Accept': 'application/json',
                   'client-request-id': str(uuid.uuid4())}
        if self.throttle_priority:
            headers['x-ms-throttle-priority'] = self.throttle_priority
        headers.update(extra or {})
        return headers

    def _fail(self, method, url, status, body, headers, client_request_id, prefix=None, cls=GraphError, suffix=None,
              extra=None):
        code, message, rid, crid, date = _error_body(body)
        rid = rid or _header(headers, 'request-id')
        crid = crid or _header(headers, 'client-request-id') or client_request_id
        if code is None and isinstance(body, dict) and body.get('error') and not isinstance(body.get('error'), dict):
            code, message = str(body.get('error')), body.get('error_description') or body.get('message')
        if message is None and not isinstance(body, dict) and body:
            message = str(body)[:300]
        short = self._short(url)
        text = format_graph_error(method, short, status, code, message, rid, crid, date, prefix=prefix)
        if suffix:
            text += '; ' + suffix
        return cls(text, status=status, code=code, message=message, request_id=rid, client_request_id=crid,
                   method=method, url=short, retry_after=parse_retry_after(_header(headers, 'Retry-After')), details=extra)

    def _wait(self, seconds):
        if seconds > 0:
            self._count('retry_wait', seconds)
            time.sleep(seconds)

    def request(self, method, path, params=None, headers=None, json_body=None, version='v1.0', retry_statuses=RETRY_STATUSES,
                object_hook=None):
        """Send one request with retries; returns the parsed JSON body (or None for an empty body).
        Raises GraphError (DeltaResyncRequired for rejected delta links). ``object_hook`` is
        ``json.loads``'s: each JSON object of the body passes through it as it is decoded (see
        ``entra_reader.member_converter``: a page's members become member dicts before the next is
        decoded, instead of a whole batch of raw objects existing at once)."""
        url = self.url(path, params, version)
        short = self._short(url)
        attempt = 0
        waited = 0.0
        first_sent = None
        refreshed = False
        token = self.auth.get_token()
        while True:
            hdrs = self._headers(token, headers)
            crid = hdrs['client-request-id']
            self._count('requests')
            if first_sent is None:
                first_sent = time.monotonic()
            try:
                resp = self.session.request(method, url, headers=hdrs, json=json_body, timeout=self.timeout,
                                            allow_redirects=False)
            except requests.exceptions.SSLError as exc:
                raise GraphError('Graph %s %s failed: TLS error: %s (set graph_ca_bundle to the CA that issued the '
                                 'certificate of %s)' % (method, short, exc, self._origin),
                                 method=method, url=short, client_request_id=crid)
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                    requests.exceptions.ChunkedEncodingError) as exc:
                elapsed = time.monotonic() - first_sent
                delay, why = retry_delay(attempt + 1, elapsed, None, self.retry_budget, self.max_retries, self.backoff_base)
                if delay is None:
                    raise GraphError('Graph %s %s failed: %s: %s; %s'
                                     % (method, short, type(exc).__name__, exc, give_up_text(attempt + 1, elapsed, waited, why)),
                                     method=method, url=short, client_request_id=crid,
                                     details=dict(attempts=attempt + 1, waited=round(waited, 1), elapsed=round(elapsed, 1)))
                attempt += 1
                waited += delay
                self._count('retries')
                self._wait(delay)
                continue
            try:
                body = (resp.json(object_hook=object_hook) if object_hook else resp.json()) if resp.content else None
            except ValueError:
                body = resp.text
            if resp.status_code < 300:
                if resp.status_code >= 200 and not isinstance(body, (dict, type(None))):
                    raise GraphError('Graph %s %s returned a body that is not JSON (HTTP %s, request-id %s)'
                                     % (method, short, resp.status_code, resp.headers.get('request-id')),
                                     status=resp.status_code, method=method, url=short,
                                     request_id=resp.headers.get('request-id'), client_request_id=crid)
                return body
            status = resp.status_code
            if status == 401 and not refreshed:
                code = _error_body(body)[0]
                if code in (None, 'InvalidAuthenticationToken'):
                    refreshed = True
                    self._count('token_refreshes')
                    token = self.auth.get_token(force_refresh=True, stale_token=token)
                    continue
            err_code = (_error_body(body)[0] or '').lower()
            if status == 410 or (status == 400 and err_code in SYNC_STATE_CODES):
                err = self._fail(method, url, status, body, resp.headers, crid, cls=DeltaResyncRequired)
                err.details['location'] = resp.headers.get('Location')
                raise err
            if status in retry_statuses:
                if status == 429:
                    self._count('throttled')
                retry_after = parse_retry_after(resp.headers.get('Retry-After'))
                elapsed = time.monotonic() - first_sent
                delay, why = retry_delay(attempt + 1, elapsed, retry_after, self.retry_budget, self.max_retries,
                                         self.backoff_base)
                if delay is None:
                    raise self._fail(method, url, status, body, resp.headers, crid,
                                     suffix=give_up_text(attempt + 1, elapsed, waited, why),
                                     extra=dict(attempts=attempt + 1, waited=round(waited, 1), elapsed=round(elapsed, 1)))
                attempt += 1
                waited += delay
                self._count('retries')
                self._wait(delay)
                continue
            raise self._fail(method, url, status, body, resp.headers, crid)

    # -- reads ------------------------------------------------------------------------------------
    def get(self, path, params=None, headers=None, version='v1.0'):
        """GET one resource or one page; returns the JSON body."""
        return self.request('GET', path, params=params, headers=headers, version=version)

    def collection_params(self, path, params=None, headers=None):
        """(params, headers) for a collection read: $top=999 on directory collections, advanced query
        (ConsistencyLevel: eventual + $count=true) when the query needs it."""
        params = dict(params or {})
        headers = dict(headers or {})
        last = path.split('?')[0].rstrip('/').rsplit('/', 1)[-1].lower()
        if last.startswith('microsoft.graph.'):
            last = path.split('?')[0].rstrip('/').rsplit('/', 2)[-2].lower()
        if '$top' not in params and last in TOP_COLLECTIONS:
            params['$top'] = str(DEFAULT_TOP)
        query_text = ' '.join(str(params.get(k) or '') for k in ('$filter', '$search', '$orderby'))
        if ('$search' in params or ADVANCED_QUERY_RE.search(query_text) or
                ('$orderby' in params and '$filter' in params) or str(params.get('$count')).lower() == 'true'):
            if not any(k.lower() == 'consistencylevel' for k in headers):
                headers['ConsistencyLevel'] = 'eventual'
            params.setdefault('$count', 'true')
        return params, headers

    def pages(self, path, params=None, headers=None, version='v1.0', object_hook=None):
        """Yield the page bodies of a collection, following @odata.nextLink whole; request headers
        (ConsistencyLevel in particular) are re-sent on every page. ``object_hook``: see ``request``."""
        params, headers = self.collection_params(path, params, headers)
        body = self.request('GET', path, params=params, headers=headers, version=version, object_hook=object_hook)
        while True:
            self._count('pages')
            yield body or {}
            link = (body or {}).get('@odata.nextLink')
            if not link:
                return
            body = self.request('GET', link, headers=headers, object_hook=object_hook)

    def iter_pages(self, path, params=None, headers=None, version='v1.0'):
        """Yield every item of a collection (all pages)."""
        for page in self.pages(path, params, headers, version):
            yield from page.get('value') or []

    def count(self, path, params=None):
        """``@odata.count`` of a collection (advanced query), reading one item."""
        params = dict(params or {})
        params.update({'$count': 'true', '$top': '1'})
        body = self.get(path, params, headers={'ConsistencyLevel': 'eventual'})
        return (body or {}).get('@odata.count')

    # -- $batch -----------------------------------------------------------------------------------
    def _relative(self, link, version):
        """A nextLink as a $batch url: path and query after ``/<version>``, otherwise unmodified."""
        url = self._own_url(link)
        prefix = '%s/%s' % (self.endpoint, version)
        if not url.startswith(prefix):
            raise GraphError('nextLink %s is not under %s, cannot follow it in $batch' % (link, prefix), url=link)
        return url[len(prefix):]

    def _send_batch(self, chunk, version, headers, object_hook=None):
        body = {'requests': [dict({'id': str(i), 'method': 'GET', 'url': rel},
                                  **({'headers': dict(headers)} if headers else {}))
                             for i, (unused_key, rel) in enumerate(chunk)]}
        self._count('batches')
        self._count('sub_requests', len(chunk))
        reply = self.request('POST', '/%s/$batch' % version, json_body=body, headers={'Content-Type': 'application/json'},
                             object_hook=object_hook)
        by_id = dict((str(r.get('id')), r) for r in (reply or {}).get('responses') or [])
        out = []
        for i, (key, rel) in enumerate(chunk):
            sub = by_id.get(str(i))
            if sub is None:
                out.append((key, rel, None))
            else:
                out.append((key, rel, sub))
        return out

    @staticmethod
    def _transform_batch(reply, transform, on_last_page=None):
        """``reply`` (see ``_send_batch``) with ``transform`` applied to the items of its successful
        pages; ``on_last_page(key)`` is called (after the transform) for each successful page that has
        no ``@odata.nextLink``: that collection is read whole."""
        if transform is None and on_last_page is None:
            return reply
        for key, unused_rel, sub in reply:
            status = (sub or {}).get('status')
            body = (sub or {}).get('body')
            if status is not None and int(status) < 300 and isinstance(body, dict) and isinstance(body.get('value'), list):
                if transform is not None:
                    body['value'] = transform(key, body['value'])
                if on_last_page is not None and not body.get('@odata.nextLink'):
                    on_last_page(key)
        return reply

    def batch_collect(self, requests_list, version='v1.0', headers=None, tolerate=(404,), transform=None, object_hook=None,
                      on_last_page=None):
        """Read many collections through JSON $batch.

        ``requests_list``: ``[(key, relative url with query, no version), ...]``. Returns
        ``(results, errors)``: ``{key: [items of every page]}`` and ``{key: GraphError}`` for
        sub-requests that failed with a status in ``tolerate`` (others raise). Throttled (429) and
        unavailable (503/504) sub-requests are retried alone after the longest Retry-After of the
        round, each for as long as ``graph_retry_budget`` from its first attempt (``retry_delay``).
        ``transform(key, items)`` -> items, when given, is applied to each successful page as soon as
        its batch arrives (in the worker), so the raw JSON of a page is released before the next
        batches come in instead of the whole round's being held at once. ``object_hook`` (see
        ``request``) is given every object of every reply as it is decoded. ``on_last_page(key)``, when
        given, is called in the worker once a collection's last page has arrived and been transformed
        (see ``_transform_batch``): a caller can act on that collection before the round ends."""
        results = dict((key, []) for key, unused_rel in requests_list)
        errors = {}
        pending = list(requests_list)
        attempts = {}
        waited = {}
        first_sent = {}
        while pending:
            chunks = [pending[i:i + BATCH_SIZE] for i in range(0, len(pending), BATCH_SIZE)]
            sent_at = time.monotonic()
            for unused_key, rel in pending:
                first_sent.setdefault(rel, sent_at)
            replies = self.map_parallel(
                lambda c: self._transform_batch(self._send_batch(c, version, headers, object_hook), transform, on_last_page),
                chunks)
            pending = []
            retry, longest = [], 0.0
            for reply in replies:
                for key, rel, sub in reply:
                    status = (sub or {}).get('status')
                    sub_body = (sub or {}).get('body')
                    sub_headers = (sub or {}).get('headers') or {}
                    if sub is not None and status is not None and int(status) < 300:
                        self._count('pages')
                        if isinstance(sub_body, dict) and 'value' in sub_body:
                            results[key].extend(sub_body.get('value') or [])
                        elif isinstance(sub_body, dict) and sub_body:
                            results[key].append(sub_body)  # a single resource (GET /groups/{id})
                        link = (sub_body or {}).get('@odata.nextLink')
                        if link:
                            pending.append((key, self._relative(link, version)))
                        continue
                    status = int(status) if status is not None else 503
                    url = '%s/%s%s' % (self.endpoint, version, rel)
                    if status in RETRY_STATUSES:
                        if status == 429:
                            self._count('throttled')
                        ra = parse_retry_after(_header(sub_headers, 'Retry-After'))
                        n = attempts.get(rel, 0)
                        elapsed = time.monotonic() - first_sent[rel]
                        delay, why = retry_delay(n + 1, elapsed, ra, self.retry_budget, self.max_retries, self.backoff_base)
                        if delay is None:
                            spent = waited.get(rel, 0.0)
                            raise self._fail('GET', url, status, sub_body, sub_headers, None, prefix='($batch sub-request) ',
                                             suffix=give_up_text(n + 1, elapsed, spent, why),
                                             extra=dict(attempts=n + 1, waited=round(spent, 1), elapsed=round(elapsed, 1)))
                        attempts[rel] = n + 1
                        waited[rel] = waited.get(rel, 0.0) + delay
                        longest = max(longest, delay)
                        retry.append((key, rel))
                        continue
                    err = self._fail('GET', url, status, sub_body, sub_headers, None, prefix='($batch sub-request) ')
                    if status in tolerate:
                        errors[key] = err
                        continue
                    raise err
            if retry:
                self._count('retries', len(retry))
                self._wait(longest)
                pending = retry + pending
        return results, errors

    # -- delta ------------------------------------------------------------------------------------
    def delta_groups(self, select, delta_link=None, odata_filter=None):
        """One delta round of ``/groups/delta``: ``(changes, new_delta_link)``.

        ``changes`` is ``{group id: merged group}`` (see ``merge_delta_pages``). Follows nextLink
        until a deltaLink, also across empty pages. Raises ``DeltaResyncRequired`` when Graph
        rejects ``delta_link`` (the caller does a full read and starts a new round)."""
        if delta_link:
            body = self.request('GET', delta_link)
        else:
            params = {'$select': ','.join(select) if not isinstance(select, str) else select}
            if odata_filter:
                params['$filter'] = odata_filter
            body = self.request('GET', '/groups/delta', params=params)
        merged = {}
        guard = 0
        while True:
            self._count('pages')
            merge_delta_pages([body or {}], merged)
            if (body or {}).get('@odata.deltaLink'):
                return merged, body['@odata.deltaLink']
            link = (body or {}).get('@odata.nextLink')
            if not link:
                raise GraphError('Graph delta page has neither @odata.nextLink nor @odata.deltaLink', url='/groups/delta')
            guard += 1
            if guard > 1000000:  # pragma: no cover - a server that never ends the round
                raise GraphError('Graph delta round did not end after %d pages' % guard, url='/groups/delta')
            body = self.request('GET', link)
