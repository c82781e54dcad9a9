"""writeback._StreamedResolution's thread and its ways out, with a stand-in AD: it never hangs a
run (AD never reached, Graph failed, an error in its thread), it declines (the run resolves every
user itself) when managed groups exist or when it meets an error, it connects to the Global Catalog
only for users, and it stops resolving once closed. Its answers against a real DC are tested in
tests/integration/test_streamed_resolution.py."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import threading
import time

import pytest

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import writeback
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_client import ADClient


class FakeClient(object):
    def __init__(self, fail=None):
        self.stats = {'searches': 0}
        self.closed = False
        self.fail = fail

    def close(self):
        self.closed = True


class FakeAD(object):
    def __init__(self, fail_sibling=None, fail_gc=None):
        self.stats = {'searches': 0}
        self.siblings = []
        self.gc_opened = 0
        self.fail_sibling = fail_sibling
        self.fail_gc = fail_gc

    count_from = ADClient.count_from   # the real one: it only reads and adds ``stats``

    def sibling(self):
        if self.fail_sibling:
            raise self.fail_sibling
        client = FakeClient()
        client.stats['searches'] = 1
        self.siblings.append(client)
        return client

    def global_catalog(self):
        if self.fail_gc:
            raise self.fail_gc
        self.gc_opened += 1
        return FakeClient()


class Pool(object):
    closed = 0

    def close(self):
        Pool.closed += 1


@pytest.fixture
def stand_ins(monkeypatch):
    calls = dict(resolved=[], managed=False, fail_resolve=[])

    def resolve(ad, domain, params, domain_dn, users, member_guids=None, pool=None):
        assert domain is None and pool is not None
        for err in calls['fail_resolve']:
            raise err
        calls['resolved'].append([u['id'] for u in users])
        return dict((u['id'], 'CN=%s,DC=corp' % u['id']) for u in users)

    monkeypatch.setattr(writeback, '_resolve', resolve)
    monkeypatch.setattr(writeback.ad_reader, 'has_managed_groups', lambda client, base: calls['managed'])
    monkeypatch.setattr(writeback.ad_reader, 'search_pool', lambda gc, connections=2: Pool())
    return calls


def users(*ids):
    return [dict(id=i, type='user') for i in ids]


def ends_within(func, seconds=10):
    done = []
    thread = threading.Thread(target=lambda: done.append(func()))
    thread.daemon = True
    thread.start()
    thread.join(seconds)
    assert done, 'did not return within %s s' % seconds
    return done[0]


def test_users_are_resolved_in_batches_once_ad_is_reached_and_counted(stand_ins, monkeypatch):
    monkeypatch.setattr(writeback._StreamedResolution, 'BATCH', 2)
    ad = FakeAD()
    stream = writeback._StreamedResolution(ad, {})
    stream.add(users('a', 'b') + [dict(id='d', type='device')])
    time.sleep(0.05)
    assert stand_ins['resolved'] == []   # AD not reached yet
    stream.reached('DC=corp', 'OU=G,DC=corp')
    stream.add(users('a', 'c'))          # a: seen already
    stream.finish()
    answer = ends_within(lambda: stream.result(users('a', 'b', 'c')))
    assert answer == {'a': 'CN=a,DC=corp', 'b': 'CN=b,DC=corp', 'c': 'CN=c,DC=corp'}
    assert stand_ins['resolved'] == [['a', 'b'], ['c']]
    assert stream.declined is None and ad.gc_opened == 1 and ad.stats['searches'] == 1   # the sibling's search
    assert ad.siblings[0].closed


def test_no_user_no_global_catalog(stand_ins):
    ad = FakeAD()
    stream = writeback._StreamedResolution(ad, {})
    stream.reached('DC=corp', 'DC=corp')
    stream.add([dict(id='g', type='group')])
    assert ends_within(lambda: stream.result([])) == {}
    assert ad.gc_opened == 0


def test_managed_groups_make_it_decline_and_stop_taking(stand_ins):
    stand_ins['managed'] = True
    stream = writeback._StreamedResolution(FakeAD(), {})
    stream.add(users('a'))
    stream.reached('DC=corp', 'DC=corp')
    deadline = time.monotonic() + 10
    while not stream.future.done() and time.monotonic() < deadline:   # declined, and its queue dropped
        time.sleep(0.01)
    assert stream.declined == 'managed_groups'
    stream.add(users('b'))
    assert stream.seen == {} and stream.queue.empty()
    assert ends_within(lambda: stream.result(users('a', 'b'))) == {}
    assert stand_ins['resolved'] == []


@pytest.mark.parametrize('where', ['sibling', 'gc', 'search'])
def test_an_error_in_its_thread_leaves_every_user_to_the_run(stand_ins, monkeypatch, where):
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_client import ADError
    monkeypatch.setattr(writeback._StreamedResolution, 'BATCH', 1)
    err = ADError('Cannot reach the Global Catalog', operation='bind')
    ad = FakeAD(fail_sibling=err if where == 'sibling' else None, fail_gc=err if where == 'gc' else None)
    if where == 'search':
        stand_ins['fail_resolve'].append(err)
    stream = writeback._StreamedResolution(ad, {})
    stream.add(users('a', 'b'))
    stream.reached('DC=corp', 'DC=corp')
    assert ends_within(lambda: stream.result(users('a', 'b'))) == {}
    assert stream.declined.startswith('error: Cannot reach the Global Catalog')


def test_close_ends_the_thread_when_ad_is_never_reached(stand_ins):
    """_reach_ad failed (or the Graph read did, before it): the run's finally closes the stream."""
    stream = writeback._StreamedResolution(FakeAD(), {})
    stream.add(users('a'))
    ends_within(stream.close)
    assert stream.future.done() and stand_ins['resolved'] == []


def test_close_stops_resolving_what_is_still_queued(stand_ins, monkeypatch):
    monkeypatch.setattr(writeback._StreamedResolution, 'BATCH', 1)
    gate = threading.Event()
    resolve = writeback._resolve

    def slow(*args, **kwargs):
        gate.wait(10)
        return resolve(*args, **kwargs)
    monkeypatch.setattr(writeback, '_resolve', slow)
    stream = writeback._StreamedResolution(FakeAD(), {})
    stream.reached('DC=corp', 'DC=corp')
    for uid in 'abcdef':
        stream.add(users(uid))
    time.sleep(0.05)
    closing = threading.Thread(target=stream.close)
    closing.start()
    time.sleep(0.05)
    gate.set()
    closing.join(10)
    assert not closing.is_alive()
    assert len(stand_ins['resolved']) <= 1   # the batch under way when it was closed, no more
