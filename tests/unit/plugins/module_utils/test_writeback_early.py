"""writeback_early.EarlyCreates's planning, without threads or AD: which groups a wave takes
(children first, never a cycle, never a group waiting for a user or left by a child), that a wave
plans each group as the whole plan would, and how the early groups are folded into the run's
result. Against the lab and the Graph emulator: tests/integration/test_early_creates.py."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import writeback_early
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.writeback_plan import plan_writeback

DOMAIN = 'DC=corp,DC=example,DC=test'
OU = 'OU=Cloud,' + DOMAIN


def gid(n):
    return '%08d-0000-4000-8000-000000000000' % n


def user(n, synced=True):
    return dict(id='u%d' % n, type='user', display_name='U%d' % n,
                on_premises_security_identifier='S-1-5-21-1-2-3-%d' % (1000 + n) if synced else None)


def group(n, members):
    return dict(id=gid(n), display_name='G%d' % n, security_enabled=True, mail_enabled=False, group_types=[],
                members=members)


def member_group(n):
    return dict(id=gid(n), type='group', display_name='G%d' % n)


class Stream(object):
    """The streamed resolution's answers: ``known`` {id: DN}, ``never`` ids."""

    def __init__(self, known, never=()):
        self.known, self.never = dict(known), set(never)
        self.taken = 0

    def taken_users(self):
        return self.taken

    def answer(self, member):
        if member['id'] in self.never:
            return 'never', None
        if member['id'] in self.known:
            return 'ok', self.known[member['id']]
        return 'pending', None


class Writer(object):
    def __init__(self):
        self.waves = []

    def submit(self, fn, ops):
        self.waves.append(ops)
        return None


def early(listed, stream, options=None):
    e = object.__new__(writeback_early.EarlyCreates)
    e.params = dict(max_members=5)
    e.options = dict(options or {}, target_ou=OU)
    e.stream = stream
    e.left_why = None
    e.groups = dict((g['id'], dict(g, members=None)) for g in listed)
    e.left, e.ineligible, e.pending, e.resolved_users = set(), {}, {}, 0
    e.planned, e.reports, e.diff, e.ops, e.waves = {}, {}, {'before': {}, 'after': {}}, [], 0
    e.taken, e.sam_taken, e.memberships = {}, set(), 0
    e.writer, e.writes = Writer(), []
    return e


def dn_of(uid):
    return 'CN=%s,OU=Staff,%s' % (uid, DOMAIN)


def test_waves_take_children_first_and_leave_cycles_waiting_users_and_their_parents():
    child = group(1, [user(1), user(2)])
    parent = group(2, [member_group(1), user(3), user(9, synced=False)])
    waits = group(3, [user(4)])                       # its user is not resolved yet
    above_waits = group(4, [member_group(3), user(1)])
    cycle_a = group(5, [member_group(6), user(1)])
    cycle_b = group(6, [member_group(5), user(2)])
    never = group(7, [user(5)])                       # its user is left to the run: so is the group
    listed = [child, parent, waits, above_waits, cycle_a, cycle_b, never]
    e = early(listed, Stream(dict((u, dn_of(u)) for u in ('u1', 'u2', 'u3')), never=['u5']))
    for g in listed:
        # the stream has taken the users of every group before its list is whole: 'waits' needs one more
        e._complete(g['id'], g['members'], 1 if g is waits or g is above_waits else 0)
    assert e._ready() == set([gid(1), gid(2), gid(7)])

    e._plan_ready(DOMAIN)
    assert gid(7) in e.left and gid(7) not in e.pending   # its user is left to the run: so is the group
    assert set(e.planned) == set([gid(1), gid(2)]) and len(e.writer.waves) == 1
    ops = e.writer.waves[0]
    assert [op['group_id'] for op in ops if op['op'] == 'create'] == [gid(1), gid(2)]   # the child first
    child_dn = e.planned[gid(1)]['dn']
    assert child_dn in e.planned[gid(2)]['members'] and dn_of('u3') in e.planned[gid(2)]['members']
    assert e.reports[gid(2)]['skipped_members'][0]['reason'] == 'cloud_only_user'

    # u4 resolves: the group waiting for it and its parent form the next wave; the cycle never does.
    assert e._ready() == set()
    e.stream.known['u4'] = dn_of('u4')
    e.resolved_users = 1
    assert e._ready() == set([gid(3), gid(4)])
    e._plan_ready(DOMAIN)
    assert set(e.planned) == set([gid(1), gid(2), gid(3), gid(4)]) and e._ready() == set()
    assert set(e.pending) == set([gid(5), gid(6)])


def test_a_wave_plans_a_group_as_the_whole_plan_does_an_ineligible_child_included():
    big = group(1, [user(n) for n in range(1, 7)])      # over max_members=5
    holder = group(2, [member_group(1), user(1)] + [user(n) for n in range(2, 5)])
    known = dict(('u%d' % n, dn_of('u%d' % n)) for n in range(1, 7))
    e = early([big, holder], Stream(known), options=dict(chunk_size=2, max_members=5))
    e._complete(big['id'], big['members'], 0)
    e._complete(holder['id'], holder['members'], 0)
    assert gid(1) in e.ineligible
    e._plan_ready(DOMAIN)

    whole = plan_writeback([big, holder], dict(domain_dn=DOMAIN), known, dict(chunk_size=2, max_members=5, target_ou=OU))
    assert e.ops == [op for op in whole.ops if op['group_id'] == gid(2)]
    assert e.reports[gid(2)] == [r for r in whole.groups if r['id'] == gid(2)][0]
    assert e.reports[gid(2)]['skipped_members'][0]['reason'] == 'group_not_written'
    written = e.planned[gid(2)]
    assert sorted(written['members']) == sorted(dn_of('u%d' % n) for n in range(1, 5))
    assert written['anchor'] == 'Group_' + gid(2) and written['display_name'] == 'G2'

    # The run's own plan, given the written group as an AD object, finds nothing to do for it.
    again = plan_writeback([big, holder], dict(domain_dn=DOMAIN, managed=[written]), known,
                           dict(chunk_size=2, max_members=5, target_ou=OU))
    assert again.ops == [] and [r['action'] for r in again.groups if r['id'] == gid(2)] == ['unchanged']


def test_merge_puts_the_wave_reports_and_ops_first_and_notes_what_the_whole_plan_changed():
    e = early([], Stream({}))
    e.reports = {'a': dict(id='a', dn='A', action='created', changes=[], members_added=['x'], members_removed=[],
                           unresolved_members=[], skipped_members=[]),
                 'b': dict(id='b', dn='B', action='created', changes=[], members_added=['z'], members_removed=[],
                           unresolved_members=[], skipped_members=[]),
                 'c': dict(id='c', dn='C', action='created', changes=[], members_added=[], members_removed=[],
                           unresolved_members=[], skipped_members=[])}
    e.diff = {'before': {'a': {}, 'b': {}, 'c': {}}, 'after': {'a': {'dn': 'A'}, 'b': {'dn': 'B'}, 'c': {'dn': 'C'}}}
    e.ops = [dict(op='create', group_id='a'), dict(op='create', group_id='b'), dict(op='create', group_id='c')]
    later = dict(op='members', group_id='b', add=['y'], remove=[])
    result = dict(ops=[later], diff={'before': {'b': {'dn': 'B'}}, 'after': {'b': {'dn': 'B', 'members': ['y', 'z']}}},
                  groups=[
                      dict(id='a', dn='A', action='unchanged', changes=[], members_added=[], members_removed=[],
                           unresolved_members=[], skipped_members=[]),
                      dict(id='b', dn='B', action='updated', changes=['member'], members_added=['y'], members_removed=[],
                           unresolved_members=[], skipped_members=[]),
                      dict(id='c', dn='C', action='error', changes=[], members_added=[], members_removed=[],
                           unresolved_members=[], skipped_members=[])])
    merged = e.merge(result)
    assert [op['group_id'] for op in merged['ops']] == ['a', 'b', 'c', 'b']
    assert merged['groups'][0] is e.reports['a']
    b = merged['groups'][1]
    assert b['action'] == 'created' and b['members_added'] == ['z', 'y'] and 'member' in b['notes'][0]
    assert merged['diff']['before']['b'] == {} and merged['diff']['after']['b'] == {'dn': 'B', 'members': ['y', 'z']}
    assert merged['groups'][2]['action'] == 'error' and merged['groups'][2]['notes']
    assert merged['summary']['created'] == 2 and merged['summary']['errors'] == 1


def test_past_the_membership_budget_the_other_groups_wait_for_the_run_plan(monkeypatch):
    monkeypatch.setattr(writeback_early.EarlyCreates, 'MEMBERSHIPS_MAX', 3)
    first = group(1, [user(1), user(2)])
    second = group(2, [user(1), user(2)])
    third = group(3, [user(3)])
    e = early([first, second, third], Stream(dict((u, dn_of(u)) for u in ('u1', 'u2', 'u3'))))
    e._complete(first['id'], first['members'], 0)
    e._plan_ready(DOMAIN)
    assert set(e.planned) == set([gid(1)]) and e.left_why is None
    e._complete(second['id'], second['members'], 0)
    e._plan_ready(DOMAIN)
    assert set(e.planned) == set([gid(1), gid(2)]) and e.memberships == 4 and e.left_why == 'memberships_max'


def test_a_group_whose_user_is_still_unresolved_when_planned_waits_and_so_do_its_parents():
    child = group(1, [user(1)])
    parent = group(2, [member_group(1), user(2)])
    e = early([child, parent], Stream({'u2': dn_of('u2')}))
    e._complete(child['id'], child['members'], 0)
    e._complete(parent['id'], parent['members'], 0)
    e.stream.taken = 5
    e._plan_ready(DOMAIN)
    assert e.planned == {} and e.left == set() and e.pending[gid(1)][1] == 5 and gid(2) in e.pending
    e.stream.known['u1'] = dn_of('u1')
    e.resolved_users = 5
    e._plan_ready(DOMAIN)
    assert set(e.planned) == set([gid(1), gid(2)])


def test_a_tenant_listing_more_groups_than_the_bound_writes_nothing_early(monkeypatch):
    monkeypatch.setattr(writeback_early.EarlyCreates, 'GROUPS_MAX', 1)

    class Conn(object):
        def search(self, *args, **kwargs):
            return []
    e = early([], Stream({}))
    e.stopped, e.where, e.conn = False, (DOMAIN, DOMAIN), None
    e.stream.checked = type('Set', (), {'wait': lambda self, t=None: True})()
    e.stream.declined = None
    e.reach = type('Set', (), {'wait': lambda self, t=None: True})()
    e.ad = type('AD', (), {'sibling': lambda self: Conn()})()
    from queue import Queue
    e.events = Queue()
    e.events.put(('listed', [group(1, None), group(2, None)]))
    e._plan_waves()
    assert e.left_why == 'groups_max' and e.groups == {}
