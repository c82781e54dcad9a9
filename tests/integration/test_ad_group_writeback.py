"""ad_group_writeback against the real lab: every behaviour of the engine, checked by reading AD
independently afterwards. Each test works in an OU of its own (``sandbox``), used as both the
target container and the managed-group search base, so tests never see each other's groups."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import threading
import uuid

import pytest

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_client import ADClient
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_codecs import dn_key, parent_dn
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.errors import CloudSyncError
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.writeback_apply import apply_plan

from writeback_helpers import (
    Directory, ad_params, as_member, entra_group, entra_user, first, identity_dn_keys, new_id, run, values,
)

WRITES = ('adds', 'modifies', 'modify_dns', 'deletes')


def writes(result):
    return dict((k, result['ldap_operations'].get(k, 0)) for k in WRITES)


def no_writes(result):
    return not any(writes(result).values())


def in_box(corp, groups, sandbox, **kw):
    kw.setdefault('target_ou', sandbox)
    kw.setdefault('search_base', sandbox)
    return run(corp, groups, **kw)


def test_check_mode_then_create_then_rerun_sends_no_write(corp, corp_dir, sandbox):
    ids = corp.identities
    group = entra_group('Finance Team', [entra_user(ids[0]), entra_user(ids[1], 'sid'), entra_user(ids[2], 'immutable_id')],
                        description='  Budget owners  ')
    check = in_box(corp, [group], sandbox, check=True)
    assert check['changed'] is True
    assert [op['op'] for op in check['plan']] == ['create']
    assert no_writes(check)
    assert corp_dir.by_anchor(group['id']) == [], 'check mode must not write'

    first_run = in_box(corp, [group], sandbox)
    assert first_run['changed'] is True and first_run['summary']['created'] == 1
    entry = corp_dir.one(group['id'])
    assert entry['dn'] == 'CN=Finance Team_%s,%s' % (group['id'][-12:], sandbox)
    assert first(entry, 'displayName') == 'Finance Team'
    assert first(entry, 'description') == 'Budget owners'
    assert int(first(entry, 'groupType')) == -2147483640
    assert first(entry, 'adminDescription') == 'Group_' + group['id']
    assert first(entry, 'sAMAccountName').startswith('$'), 'AD generates the sAMAccountName when no template is given'
    assert corp_dir.member_keys(entry) == identity_dn_keys(ids[:3])
    matched = dict((m['id'], m) for m in group['members'])
    assert first_run['groups'][0]['unresolved_members'] == []
    assert set(matched) == set(m['id'] for m in group['members'])

    again = in_box(corp, [group], sandbox)
    assert again['changed'] is False
    assert no_writes(again), 'a no-op rerun must send no LDAP write: %r' % writes(again)
    assert again['summary']['unchanged'] == 1


NASTY_NAMES = [
    'Sales, EMEA + "Partners" \\ <core>; =x',
    '#hash leads',
    '  padded both sides  ',
    'Ünïcødé グループ 名前',
    'tab\tand\x01control',
    'x' * 256,
]


def test_names_that_need_escaping(corp, corp_dir, sandbox):
    groups = [entra_group(name, description='d' * 500) for name in NASTY_NAMES]
    result = in_box(corp, groups, sandbox)
    assert result['summary']['created'] == len(NASTY_NAMES), result['groups']
    for group in groups:
        entry = corp_dir.one(group['id'])
        cn = first(entry, 'cn')
        assert cn.endswith('_' + group['id'][-12:])
        assert len(cn) <= 64
        assert first(entry, 'displayName') == group['display_name']
        assert len(first(entry, 'description')) == 448
        assert parent_dn(entry['dn']).lower() == sandbox.lower()
    expected_cn = NASTY_NAMES[2].strip() + '_' + groups[2]['id'][-12:]
    assert first(corp_dir.one(groups[2]['id']), 'cn') == expected_cn
    assert first(corp_dir.one(groups[5]['id']), 'cn') == 'x' * 51 + '_' + groups[5]['id'][-12:]
    again = in_box(corp, groups, sandbox)
    assert again['changed'] is False and no_writes(again)


def test_check_mode_reports_manual_drift_and_apply_repairs_it(corp, corp_dir, sandbox):
    ids = corp.identities
    group = entra_group('Drift Watch', [entra_user(i) for i in ids[3:6]], description='as in Entra')
    in_box(corp, [group], sandbox)
    entry = corp_dir.one(group['id'])
    elsewhere = corp_dir.make_ou('moved-by-hand', parent=sandbox)
    # Someone edits the group in AD by hand.
    corp_dir.modify(entry['dn'], {'member': [('add', [ids[10]['dn']]), ('delete', [ids[3]['dn']])],
                                  'description': ('replace', ['edited in AD'])})
    corp_dir.client.modify_dn(entry['dn'], 'CN=%s' % first(entry, 'cn').replace(',', '\\,'), new_superior=elsewhere)
    moved_dn = corp_dir.one(group['id'])['dn']

    drift = in_box(corp, [group], sandbox, check=True, diff=True)
    report = drift['groups'][0]
    assert drift['changed'] is True and no_writes(drift)
    assert set(map(dn_key, report['members_added'])) == {dn_key(ids[3]['dn'])}
    assert set(map(dn_key, report['members_removed'])) == {dn_key(ids[10]['dn'])}
    assert 'description' in report['changes'] and 'container' in report['changes']
    assert drift['summary']['moved'] == 1
    assert drift['diff']['before'] and drift['diff']['after']
    assert corp_dir.one(group['id'])['dn'] == moved_dn, 'check mode must not move anything back'

    fixed = in_box(corp, [group], sandbox)
    assert fixed['changed'] is True
    entry = corp_dir.one(group['id'])
    assert parent_dn(entry['dn']).lower() == sandbox.lower()
    assert first(entry, 'description') == 'as in Entra'
    assert corp_dir.member_keys(entry) == identity_dn_keys(ids[3:6])
    assert in_box(corp, [group], sandbox)['changed'] is False


def test_rename_and_move_keep_object_guid_and_sid(corp, corp_dir, sandbox):
    group = entra_group('Old Name', [entra_user(corp.identities[6])])
    in_box(corp, [group], sandbox)
    before = corp_dir.one(group['id'])
    target = corp_dir.make_ou('new-home', parent=sandbox)
    group['display_name'] = 'New Name'
    result = in_box(corp, [group], sandbox, target_ou=target)
    assert result['summary']['renamed'] == 1 and result['summary']['moved'] == 1
    assert [op['op'] for op in result['plan']] == ['modify_dn', 'modify']
    after = corp_dir.one(group['id'])
    assert after['dn'] == 'CN=New Name_%s,%s' % (group['id'][-12:], target)
    assert first(after, 'objectGUID') == first(before, 'objectGUID')
    assert first(after, 'objectSid') == first(before, 'objectSid')
    assert first(after, 'displayName') == 'New Name'
    assert corp_dir.member_keys(after) == corp_dir.member_keys(before)


def test_ou_map_by_id_name_and_pattern(corp, corp_dir, sandbox):
    ou_a = corp_dir.make_ou('a', parent=sandbox)
    ou_b = corp_dir.make_ou('b', parent=sandbox)
    ou_c = corp_dir.make_ou('c', parent=sandbox)
    g1, g2, g3, g4 = (entra_group(n) for n in ('By Id', 'By Name', 'SG-Pattern', 'Default'))
    ou_map = [{'id': g1['id'], 'ou': ou_a}, {'name': 'by name', 'ou': ou_b}, {'pattern': '^SG-', 'ou': ou_c}]
    in_box(corp, [g1, g2, g3, g4], sandbox, ou_map=ou_map)
    assert parent_dn(corp_dir.one(g1['id'])['dn']) == ou_a
    assert parent_dn(corp_dir.one(g2['id'])['dn']) == ou_b
    assert parent_dn(corp_dir.one(g3['id'])['dn']) == ou_c
    assert parent_dn(corp_dir.one(g4['id'])['dn']).lower() == sandbox.lower()


def test_additive_membership_keeps_members_added_in_ad(corp, corp_dir, sandbox):
    ids = corp.identities
    group = entra_group('Additive', [entra_user(ids[7])])
    in_box(corp, [group], sandbox, membership='additive')
    dn = corp_dir.one(group['id'])['dn']
    corp_dir.modify(dn, {'member': ('add', [ids[8]['dn']])})
    group['members'].append(entra_user(ids[9]))
    result = in_box(corp, [group], sandbox, membership='additive')
    assert result['groups'][0]['members_removed'] == []
    assert corp_dir.member_keys(corp_dir.one(group['id'])) == identity_dn_keys([ids[7], ids[8], ids[9]])
    authoritative = in_box(corp, [group], sandbox)
    assert set(map(dn_key, authoritative['groups'][0]['members_removed'])) == {dn_key(ids[8]['dn'])}


def test_prune_orphans_and_deletion_threshold(corp, corp_dir, sandbox):
    groups = [entra_group('Prune %d' % i) for i in range(3)]
    in_box(corp, groups, sandbox)
    keep = groups[:1]

    left = in_box(corp, keep, sandbox)
    assert left['summary']['orphaned'] == 2 and left['summary']['deleted'] == 0
    assert len(corp_dir.children(sandbox)) == 3, 'without prune nothing is deleted'

    with pytest.raises(CloudSyncError) as refused:
        in_box(corp, keep, sandbox, prune=True, out_of_scope='delete', deletion_threshold=1)
    assert 'deletion_threshold=1' in refused.value.msg and 'delete 2 groups' in refused.value.msg
    assert len(corp_dir.children(sandbox)) == 3, 'over the threshold nothing is deleted'

    check = in_box(corp, keep, sandbox, prune=True, out_of_scope='delete', check=True)
    assert check['summary']['deleted'] == 2 and len(corp_dir.children(sandbox)) == 3

    pruned = in_box(corp, keep, sandbox, prune=True, out_of_scope='delete')
    assert pruned['summary']['deleted'] == 2
    assert corp_dir.by_anchor(groups[1]['id']) == [] and corp_dir.by_anchor(groups[2]['id']) == []
    assert len(corp_dir.by_anchor(groups[0]['id'])) == 1


def test_never_touches_objects_without_the_anchor(corp, corp_dir, sandbox):
    group = entra_group('Taken Name')
    foreign_dn = 'CN=Taken Name_%s,%s' % (group['id'][-12:], sandbox)
    corp_dir.add_group(foreign_dn, description='hand made')
    unanchored = corp_dir.add_group('CN=Bystander,%s' % sandbox, description='not ours')
    result = in_box(corp, [group], sandbox, prune=True)
    report = result['groups'][0]
    assert report['action'] in ('skipped', 'error') and report['reason'], report
    assert result['summary']['deleted'] == 0
    assert first(corp_dir.get(foreign_dn), 'description') == 'hand made'
    assert first(corp_dir.get(foreign_dn), 'msDS-ExternalDirectoryObjectId') is None
    assert corp_dir.get(unanchored) is not None


def test_duplicate_anchor_is_an_error_for_that_group_only(corp, corp_dir, sandbox):
    dup, fine = entra_group('Dup'), entra_group('Fine')
    for n in (1, 2):
        corp_dir.add_group('CN=dup%d,%s' % (n, sandbox), **{'msDS-ExternalDirectoryObjectId': 'Group_' + dup['id']})
    result = in_box(corp, [dup, fine], sandbox)
    by_id = dict((g['id'], g) for g in result['groups'])
    assert by_id[dup['id']]['action'] in ('error', 'skipped')
    assert 'duplicate' in (by_id[dup['id']]['reason'] or '').lower()
    assert by_id[fine['id']]['action'] == 'created'
    assert len(corp_dir.by_anchor(dup['id'])) == 2


def test_admin_count_groups_are_refused_unless_allowed(corp, corp_dir, sandbox):
    group = entra_group('Protected', [entra_user(corp.identities[11])])
    in_box(corp, [group], sandbox)
    dn = corp_dir.one(group['id'])['dn']
    corp_dir.modify(dn, {'adminCount': ('replace', ['1'])})
    group['description'] = 'changed'
    refused = in_box(corp, [group], sandbox)
    assert refused['groups'][0]['action'] == 'skipped' and 'admin' in refused['groups'][0]['reason']
    assert first(corp_dir.get(dn), 'description') is None
    allowed = in_box(corp, [group], sandbox, allow_admin_count=True)
    assert allowed['groups'][0]['action'] == 'updated'
    assert first(corp_dir.get(dn), 'description') == 'changed'


def test_adopt_writeback_v2_groups(corp, corp_dir, sandbox):
    ids = corp.identities
    group = entra_group('Legacy V2', [entra_user(ids[12])])
    v2_dn = corp_dir.add_group('CN=Group_%s,%s' % (group['id'], sandbox), adminDescription='Group_' + group['id'],
                               member=[ids[12]['dn']])
    guid = first(corp_dir.get(v2_dn), 'objectGUID')

    not_adopted = in_box(corp, [group], sandbox)
    assert not_adopted['groups'][0]['action'] == 'skipped'
    assert corp_dir.by_anchor(group['id']) == [], 'a v2 group is not written twice'

    adopted = in_box(corp, [group], sandbox, adopt_writeback_v2=True)
    assert adopted['groups'][0]['adopted'] is True
    entry = corp_dir.one(group['id'])
    assert entry['dn'] == v2_dn and first(entry, 'objectGUID') == guid

    renamed = in_box(corp, [group], sandbox, adopt_writeback_v2=True, adopt_rename=True)
    assert renamed['summary']['renamed'] == 1
    entry = corp_dir.one(group['id'])
    assert first(entry, 'cn') == 'Legacy V2_' + group['id'][-12:] and first(entry, 'objectGUID') == guid
    assert in_box(corp, [group], sandbox, adopt_writeback_v2=True, adopt_rename=True)['changed'] is False


def test_nested_groups_children_first_and_cycles_do_not_loop(corp, corp_dir, sandbox):
    ids = corp.identities
    child = entra_group('Child', [entra_user(ids[13])])
    parent = entra_group('Parent', [entra_user(ids[14]), as_member(child)])
    a = entra_group('Cycle A')
    b = entra_group('Cycle B', [as_member(a)])
    a['members'].append(as_member(b))
    result = in_box(corp, [parent, child, a, b], sandbox)
    assert result['summary']['created'] == 4
    creates = [op['group_id'] for op in result['plan'] if op['op'] == 'create']
    assert creates.index(child['id']) < creates.index(parent['id'])
    assert result['cycles']
    child_dn = corp_dir.one(child['id'])['dn']
    assert dn_key(child_dn) in corp_dir.member_keys(corp_dir.one(parent['id']))
    assert dn_key(corp_dir.one(b['id'])['dn']) in corp_dir.member_keys(corp_dir.one(a['id']))
    assert dn_key(corp_dir.one(a['id'])['dn']) in corp_dir.member_keys(corp_dir.one(b['id']))
    assert in_box(corp, [parent, child, a, b], sandbox)['changed'] is False


def test_unsupported_and_unresolved_members_are_reported_not_fatal(corp, corp_dir, sandbox, fabrikam):
    ids = corp.identities
    cloud_only = dict(id=new_id(), type='user', display_name='cloud only', on_premises_sync_enabled=None)
    ghost = entra_user(dict(ids[15], object_guid=str(uuid.uuid4())))
    other_forest = entra_user(fabrikam.identities[0])
    others = [dict(id=new_id(), type=t, display_name=t) for t in ('device', 'service_principal', 'org_contact')]
    out_of_scope = dict(id=new_id(), type='group', display_name='not written back')
    group = entra_group('Mixed', [entra_user(ids[16]), cloud_only, ghost, other_forest, out_of_scope] + others)
    result = in_box(corp, [group], sandbox)
    report = result['groups'][0]
    assert report['action'] == 'created'
    assert corp_dir.member_keys(corp_dir.one(group['id'])) == identity_dn_keys([ids[16]])
    unresolved = dict((m['id'], m['reason']) for m in report['unresolved_members'])
    assert unresolved[ghost['id']] == unresolved[other_forest['id']] == 'not_found_in_forest'
    skipped = dict((m['id'], m['reason']) for m in report['skipped_members'])
    assert skipped[cloud_only['id']] == 'cloud_only_user'
    assert skipped[out_of_scope['id']] == 'group_not_in_scope'
    for o in others:
        assert skipped[o['id']].startswith('unsupported_type_')


def test_groups_over_max_members_are_skipped(corp, corp_dir, sandbox):
    ids = corp.identities
    big = entra_group('Too Big', [entra_user(i) for i in ids[:4]])
    small = entra_group('Small', [entra_user(ids[0])])
    result = in_box(corp, [big, small], sandbox, max_members=3)
    by_id = dict((g['id'], g) for g in result['groups'])
    assert by_id[big['id']]['action'] == 'skipped' and by_id[big['id']]['reason'] == 'too_many_members'
    assert corp_dir.by_anchor(big['id']) == []
    assert by_id[small['id']]['action'] == 'created'


def test_sam_account_name_template_and_collision(corp, corp_dir, sandbox):
    g1 = entra_group('Template One')
    g2 = entra_group('Template Two')
    taken = 'tpl-%s' % g2['id'][-12:]
    corp_dir.add_group('CN=squatter,%s' % sandbox, sAMAccountName=taken)
    result = in_box(corp, [g1, g2], sandbox, sam_account_name_template='tpl-{id_suffix}')
    by_id = dict((g['id'], g) for g in result['groups'])
    assert by_id[g1['id']]['action'] == 'created'
    assert first(corp_dir.one(g1['id']), 'sAMAccountName') == 'tpl-' + g1['id'][-12:]
    assert by_id[g2['id']]['action'] in ('error', 'skipped')
    assert 'sam' in by_id[g2['id']]['reason'].lower()


def test_each_forest_holds_only_its_own_members(corp, fabrikam, corp_dir):
    fab_dir = Directory(fabrikam)
    try:
        corp_box = corp_dir.make_ou('t-mf-%s' % uuid.uuid4().hex[:8])
        fab_box = fab_dir.make_ou('t-mf-%s' % uuid.uuid4().hex[:8])
        members = [entra_user(corp.identities[20]), entra_user(fabrikam.identities[20], 'sid')]
        group = entra_group('Two Forests', members)
        r_corp = run(corp, [group], target_ou=corp_box, search_base=corp_box)
        r_fab = run(fabrikam, [group], target_ou=fab_box, search_base=fab_box)
        assert corp_dir.member_keys(corp_dir.one(group['id'])) == identity_dn_keys([corp.identities[20]])
        assert fab_dir.member_keys(fab_dir.one(group['id'])) == identity_dn_keys([fabrikam.identities[20]])
        assert [m['id'] for m in r_corp['groups'][0]['unresolved_members']] == [members[1]['id']]
        assert [m['id'] for m in r_fab['groups'][0]['unresolved_members']] == [members[0]['id']]
    finally:
        corp_dir.remove_tree(corp_box)
        fab_dir.remove_tree(fab_box)
        fab_dir.close()


def test_two_runs_at_once_make_no_duplicate(corp, corp_dir, sandbox):
    ids = corp.identities
    groups = [entra_group('Race %d' % i, [entra_user(ids[21 + i])]) for i in range(5)]
    errors = []

    def worker():
        try:
            in_box(corp, groups, sandbox)
        except Exception as exc:  # pylint: disable=broad-except
            errors.append(exc)

    threads = [threading.Thread(target=worker), threading.Thread(target=worker)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for group in groups:
        entry = corp_dir.one(group['id'])
        assert corp_dir.member_keys(entry) == identity_dn_keys([ids[21 + groups.index(group)]])
    assert in_box(corp, groups, sandbox)['changed'] is False


def test_create_that_meets_its_own_anchor_converges_instead_of_duplicating(corp, corp_dir, sandbox):
    """The race made deterministic: run A plans a create, run B creates the group first, then A's
    stale plan is applied. A must find B's object by its anchor and converge, not fail or duplicate.
    (The plans applied in these tests are returned in full: in sample mode an operation gives its
    member lists as counts.)"""
    ids = corp.identities
    group = entra_group('Stale Plan', [entra_user(ids[26]), entra_user(ids[27])])
    stale = in_box(corp, [group], sandbox, check=True, member_details='full')
    assert [op['op'] for op in stale['plan']] == ['create']
    in_box(corp, [dict(group, members=[entra_user(ids[26])])], sandbox)
    client = ADClient(ad_params(corp)).connect()
    try:
        applied = apply_plan(client, stale['plan'])
    finally:
        client.close()
    assert applied.errors == {}
    assert [op['outcome'] for op in applied.executed] == ['adopted_concurrent']
    assert applied.notes[group['id']]
    assert corp_dir.member_keys(corp_dir.one(group['id'])) == identity_dn_keys(ids[26:28])


def test_create_that_meets_a_foreign_object_fails_for_that_group_only(corp, corp_dir, sandbox):
    group, other = entra_group('Squatted'), entra_group('Unaffected')
    stale = in_box(corp, [group, other], sandbox, check=True, member_details='full')
    squatter = corp_dir.add_group(stale['groups'][[g['id'] for g in stale['groups']].index(group['id'])]['dn'])
    client = ADClient(ad_params(corp)).connect()
    try:
        applied = apply_plan(client, stale['plan'])
    finally:
        client.close()
    assert list(applied.errors) == [group['id']]
    assert 'without the anchor' in applied.errors[group['id']]
    # the outcomes are set on the plan's own operations (copies of 17,000 were 6 MB at a run's end)
    assert len(applied.executed) == len(stale['plan']) and all(
        done is planned for done, planned in zip(applied.executed, stale['plan']))
    assert sorted(op['outcome'] for op in stale['plan']) == ['created', 'error']
    assert first(corp_dir.get(squatter), 'msDS-ExternalDirectoryObjectId') is None
    assert len(corp_dir.by_anchor(other['id'])) == 1


def test_writes_land_on_the_object_that_was_read_not_on_whoever_took_its_dn(corp, corp_dir, sandbox):
    """A stale plan (read, then someone renames our group and puts another object at its old DN)
    must update, change the members of and delete our group by objectGUID, never the object now
    holding the DN."""
    ids = corp.identities
    group = entra_group('Target', [entra_user(ids[0])], description='v1')
    in_box(corp, [group], sandbox)
    ours = corp_dir.one(group['id'])
    group['description'] = 'v2'
    group['members'] = group['members'] + [entra_user(ids[1])]
    stale_update = in_box(corp, [group], sandbox, check=True, member_details='full')
    stale_delete = in_box(corp, [], sandbox, check=True, member_details='full', prune=True, out_of_scope='delete', prune_empty_scope=True)
    assert [op['op'] for op in stale_update['plan']] == ['modify', 'members']
    assert [op['op'] for op in stale_delete['plan']] == ['delete']
    corp_dir.client.modify_dn(ours['dn'], 'CN=renamed by hand')
    impostor = corp_dir.add_group(ours['dn'], description='impostor')
    client = ADClient(ad_params(corp)).connect()
    try:
        assert apply_plan(client, stale_update['plan']).errors == {}
        assert first(corp_dir.one(group['id']), 'description') == 'v2'
        assert corp_dir.member_keys(corp_dir.one(group['id'])) == identity_dn_keys(ids[:2])
        assert first(corp_dir.get(impostor), 'description') == 'impostor'
        assert corp_dir.member_keys(corp_dir.get(impostor)) == set(), 'the member change went to the impostor'
        assert apply_plan(client, stale_delete['plan']).errors == {}
    finally:
        client.close()
    assert corp_dir.by_anchor(group['id']) == []
    assert corp_dir.get(impostor) is not None


def test_a_stale_rename_never_renames_the_object_that_took_the_dn(corp, corp_dir, sandbox):
    """modify DN goes by DN (Samba resolves no <GUID=...> there): the applier must check that the
    DN still holds the group the plan read, and otherwise leave whatever is there alone."""
    group = entra_group('Before')
    in_box(corp, [group], sandbox)
    ours = corp_dir.one(group['id'])
    group['display_name'] = 'After'
    stale_rename = in_box(corp, [group], sandbox, check=True, member_details='full')
    assert [op['op'] for op in stale_rename['plan']] == ['modify_dn', 'modify']
    corp_dir.client.modify_dn(ours['dn'], 'CN=renamed by hand')
    impostor = corp_dir.add_group(ours['dn'], description='impostor')
    client = ADClient(ad_params(corp)).connect()
    try:
        applied = apply_plan(client, stale_rename['plan'])
    finally:
        client.close()
    assert list(applied.errors) == [group['id']] and 'another object' in applied.errors[group['id']]
    assert [op['outcome'] for op in applied.executed] == ['error', 'skipped_after_error']
    assert first(corp_dir.get(impostor), 'description') == 'impostor', 'the impostor was renamed'
    assert first(corp_dir.one(group['id']), 'displayName') == 'Before'
    assert in_box(corp, [group], sandbox)['summary']['renamed'] == 1, 'the next run finds the group by its anchor'
    assert first(corp_dir.one(group['id']), 'cn') == 'After_' + group['id'][-12:]


def test_a_container_outside_search_base_is_warned_about(corp, corp_dir, sandbox):
    """A group written outside search_base is not found again by the next run, which cannot update
    it (the name is taken, by a group it did not read): the run says so up front."""
    narrow = corp_dir.make_ou('narrow', parent=sandbox)
    group = entra_group('Outside')
    first_run = in_box(corp, [group], sandbox, search_base=narrow)
    assert first_run['summary']['created'] == 1
    assert any(sandbox in w and 'outside search_base' in w for w in first_run['warnings']), first_run['warnings']
    second = in_box(corp, [group], sandbox, search_base=narrow)
    assert second['groups'][0]['reason'] == 'dn_collision', 'what the warning announces'
    assert len(corp_dir.by_anchor(group['id'])) == 1, 'never a second copy'
    inside = in_box(corp, [group], sandbox)
    assert not any('outside search_base' in w for w in inside['warnings'])
    assert inside['groups'][0]['action'] == 'unchanged'


def test_schema_without_anchor_is_refused(lab):
    legacy = lab.up(forests=('legacy',), schema_extension=False)['legacy']
    with pytest.raises(CloudSyncError) as refused:
        run(legacy, [entra_group('Nope')])
    assert 'msDS-ExternalDirectoryObjectId' in refused.value.msg and '2016' in refused.value.msg


def test_entra_groups_without_members_are_refused(corp):
    group = entra_group('No members read')
    group['members'] = None
    with pytest.raises(CloudSyncError) as refused:
        run(corp, [group])
    assert 'without members' in refused.value.msg


__all__ = ['values']


def test_a_missing_container_is_named_as_what_to_fix(corp, corp_dir, sandbox):
    """Checked before the first write (check mode too): the run refuses, naming the option and the
    DN, and writes no group at all (before, the other group was created and this one failed)."""
    missing = 'OU=No Such OU,%s' % sandbox
    group, other = entra_group('Nowhere To Go'), entra_group('Somewhere')
    for check in (True, False):
        with pytest.raises(CloudSyncError) as refused:
            in_box(corp, [group, other], sandbox, check=check, ou_map=[{'id': group['id'], 'ou': missing}])
        assert 'ou_map[0].ou %s does not exist' % missing in refused.value.msg, refused.value.msg
        assert refused.value.details['changed'] is False
    assert corp_dir.children(sandbox) == []


def test_prune_with_an_empty_scope_is_refused_unless_meant(corp, corp_dir, sandbox):
    """A filter typo or an empty entra_groups must not delete every managed group."""
    groups = [entra_group('Kept %d' % i) for i in range(2)]
    in_box(corp, groups, sandbox)
    with pytest.raises(CloudSyncError) as refused:
        in_box(corp, [], sandbox, prune=True, out_of_scope='delete')
    assert 'no Entra group is in scope' in refused.value.msg and 'prune_empty_scope' in refused.value.msg
    assert len(corp_dir.children(sandbox)) == 2
    meant = in_box(corp, [], sandbox, prune=True, out_of_scope='delete', prune_empty_scope=True)
    assert meant['summary']['deleted'] == 2 and corp_dir.children(sandbox) == []
