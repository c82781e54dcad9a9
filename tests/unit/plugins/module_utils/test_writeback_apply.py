"""writeback_apply.apply_plan with a stand-in client: a group whose create failed is never acted on
by DN or linked into another group later in the run (another object may hold its name), in this
call or a later one sharing the ApplyResult (a first run's early waves, then the run's own plan);
with several connections, independent writes spread over them, each group's in order on one, and
a lost connection stopping them all.
The applier against a real DC: tests/integration (test_writeback_failures, test_reliability_ad)."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import threading
import time

import pytest

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import writeback_apply
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_client import ADError
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.writeback_apply import ApplyResult, apply_plan

OU = 'OU=Cloud,DC=corp,DC=example,DC=test'
CHILD = 'CN=Child,' + OU
PARENT = 'CN=Parent,' + OU
OTHER = 'CN=Other,' + OU
USER = 'CN=U1,OU=Staff,DC=corp,DC=example,DC=test'


class Client(object):
    server = 'dc1'

    def __init__(self):
        self.sent = []

    def add(self, dn, attributes):
        self.sent.append(('add', dn))
        if dn == CHILD:
            raise ADError('insufficient rights on %s' % dn, operation='add', dn=dn, result=50,
                          result_name='insufficientAccessRights')

    def modify(self, dn, changes):
        self.sent.append(('modify', dn))


def create(gid, dn, members):
    return dict(op='create', group_id=gid, dn=dn, attributes={'cn': gid}, members=members)


def test_a_failed_create_is_never_linked_or_written_by_dn_afterwards():
    client = Client()
    result = ApplyResult()
    apply_plan(client, [create('c', CHILD, [USER]), create('p', PARENT, [CHILD.lower(), USER])], result=result)
    assert client.sent == [('add', CHILD)]
    assert set(result.errors) == set(['c', 'p']) and 'whose create failed' in result.errors['p']

    # A later call with the same result (the run's own plan after the early waves).
    later = [dict(op='members', group_id='o', dn=OTHER, object_guid='1234', add=[USER, CHILD], remove=[]),
             dict(op='modify', group_id='c', dn=CHILD, changes={'description': 'x'}),
             dict(op='members', group_id='o2', dn=OTHER, object_guid='5678', add=[USER], remove=[])]
    apply_plan(client, later, result=result)
    assert client.sent == [('add', CHILD), ('modify', '<GUID=5678>')]
    assert [op['outcome'] for op in later] == ['error', 'error', 'done']


def test_nothing_is_refused_when_no_create_failed():
    client = Client()
    ops = [create('p', PARENT, [USER]), dict(op='members', group_id='p', dn=PARENT, add=[OTHER], remove=[])]
    result = apply_plan(client, ops)
    assert client.sent == [('add', PARENT), ('modify', PARENT)] and not result.errors


# -- several connections (apply_plan's ``connections``) --------------------------------------------

class Conn(object):
    """A stand-in connection: records (connection name, target, member change) in one shared log,
    and can lose its connection (``lose_at``: on that target) or refuse one target."""
    server = 'dc1'

    def __init__(self, name, log, lose_at=None, refuse=None, siblings=1, sibling_fails=False):
        self.name, self.log, self.lose_at, self.refuse = name, log, lose_at, refuse
        self.stats = {'modifies': 0}
        self.made, self.closed = [], False
        self.siblings, self.sibling_fails = siblings, sibling_fails
        self.lock = threading.Lock()

    def sibling(self):
        if self.sibling_fails:
            raise ADError('cannot connect to dc1')   # no result code: the connection itself
        other = Conn('%s.%d' % (self.name, len(self.made) + 1), self.log, self.lose_at, self.refuse)
        self.made.append(other)
        return other

    def count_from(self, other):
        self.stats['modifies'] += other.stats['modifies']

    def close(self):
        self.closed = True

    def modify(self, dn, changes):
        time.sleep(0.001)   # the DC's time: lets the other connection's thread run
        if dn == self.lose_at:
            raise ADError('the connection to dc1 was lost')
        if dn == self.refuse:
            raise ADError('insufficient rights on %s' % dn, operation='modify', dn=dn, result=50,
                          result_name='insufficientAccessRights')
        self.stats['modifies'] += 1
        self.log.append((self.name, dn, changes))

    def modify_dn(self, dn, new_rdn, new_superior=None):
        self.log.append((self.name, 'modify_dn', dn))

    def get(self, dn, attributes):
        return {'objectGUID': [bytes(bytearray(range(16)))]}


def guid(n):
    return '%08d-0000-0000-0000-000000000000' % n


def members(n, chunk=0, add=None):
    return dict(op='members', group_id='g%d' % n, dn='CN=G%d,%s' % (n, OU), object_guid=guid(n),
                add=add or ['CN=U%d-%d,OU=Staff,DC=corp,DC=example,DC=test' % (n, chunk)], remove=[])


def test_segments_keep_order_for_what_depends_on_it():
    renamed = dict(op='modify_dn', group_id='g90', dn='CN=Old,' + OU, new_rdn='CN=New', object_guid=guid(90))
    made = create('g91', 'CN=Made,' + OU, [USER])
    names_new = members(92, add=['CN=New,' + OU])          # links the renamed group by its new DN
    names_made = members(93, add=['cn=made,' + OU.lower()])  # links the group made in this plan
    free = [members(n) for n in range(10)]
    deleted = dict(op='delete', group_id='g94', dn='CN=D,' + OU, object_guid=guid(94))
    ops = [renamed, made] + free[:5] + [names_new, names_made] + free[5:] + [deleted]
    parts = writeback_apply.segments(ops, 2)
    assert [(p, [op['group_id'] for op in part]) for p, part in parts] == [
        (False, ['g90', 'g91', 'g0', 'g1', 'g2', 'g3', 'g4', 'g92', 'g93', 'g5', 'g6', 'g7', 'g8', 'g9', 'g94'])], \
        'runs of fewer than PARALLEL_MIN independent writes keep the order'
    by_dn = [dict(op='members', group_id='g%d' % n, dn='CN=G%d,%s' % (n, OU), add=[USER], remove=[]) for n in range(30, 40)]
    of_renamed = dict(op='members', group_id='g90', dn='CN=New,' + OU, add=[USER], remove=[])   # its DN after the rename
    of_made = dict(op='modify', group_id='g91', dn='CN=Made,' + OU, changes={'description': 'x'})
    ops = [renamed, made] + [members(n) for n in range(20)] + [names_new, of_renamed, of_made] + by_dn
    parts = writeback_apply.segments(ops, 2)
    assert [(p, len(part)) for p, part in parts] == [(False, 2), (True, 20), (False, 3), (True, 10)], \
        'a link to a renamed group, a write by the DN a plan renames to or creates: in order; by an unchanged DN: beside'
    assert writeback_apply.segments(ops, 1) == [(False, ops)]


def test_two_connections_send_each_write_once_each_group_in_order_and_report_in_plan_order():
    log = []
    main = Conn('main', log)
    ops = [members(n, chunk) for n in range(12) for chunk in range(3)]
    result = apply_plan(main, ops, connections=2)
    assert sorted((dn, c['member'][0][1][0]) for unused, dn, c in log) == \
        sorted(('<GUID=%s>' % op['object_guid'], op['add'][0]) for op in ops), 'every write once'
    for n in range(12):
        sent = [(who, c['member'][0][1][0]) for who, dn, c in log if dn == '<GUID=%s>' % guid(n)]
        assert len(set(who for who, unused in sent)) == 1, 'a group on one connection'
        assert [u for unused, u in sent] == [op['add'][0] for op in ops if op['group_id'] == 'g%d' % n], 'in order'
    assert set(who for who, unused, unused2 in log) == {'main', 'main.1'}, 'both connections wrote'
    assert result.executed == ops and all(op['outcome'] == 'done' for op in ops) and result.changed
    assert main.stats['modifies'] == len(ops) and main.made[0].closed, 'the sibling counted and closed'


def test_a_lost_connection_stops_both_and_says_what_was_not_sent():
    log = []
    ops = [members(n) for n in range(20)] + [dict(op='delete', group_id='g99', dn='CN=D,' + OU, object_guid=guid(99))]
    main = Conn('main', log, lose_at='<GUID=%s>' % guid(6))
    with pytest.raises(ADError) as lost:
        apply_plan(main, ops, connections=2)
    err = lost.value
    result = err.applied
    assert result.fatal is err and ops[6]['outcome'] == 'error' and result.errors['g6']
    sent = set(dn for unused, dn, unused2 in log)
    assert all(op['outcome'] == 'done' for op in ops if op['op'] == 'members' and '<GUID=%s>' % op['object_guid'] in sent)
    assert result.not_run == [op for op in ops if op['outcome'] == 'not_run'] and ops[-1] in result.not_run
    assert result.executed == [op for op in ops if op['outcome'] in ('done', 'error')], 'in the plan order'
    assert len(result.executed) + len(result.not_run) == len(ops)
    assert main.made[0].closed


def test_a_refused_group_is_skipped_the_others_written_and_a_sibling_that_cannot_connect_leaves_one_connection():
    log = []
    ops = [members(n, chunk) for n in range(10) for chunk in range(2)]
    main = Conn('main', log, refuse='<GUID=%s>' % guid(3))
    result = apply_plan(main, ops, connections=2)
    assert [op['outcome'] for op in ops if op['group_id'] == 'g3'] == ['error', 'skipped_after_error']
    assert set(result.errors) == {'g3'} and sum(1 for op in ops if op['outcome'] == 'done') == 18

    log2 = []
    lonely = Conn('main', log2, sibling_fails=True)
    for op in ops:
        op.pop('outcome', None)
        op.pop('error', None)
    result = apply_plan(lonely, ops, connections=2)
    assert [dn for unused, dn, unused2 in log2] == ['<GUID=%s>' % op['object_guid'] for op in ops]
    assert set(who for who, unused, unused2 in log2) == {'main'} and not result.errors
