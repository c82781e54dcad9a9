# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The result stays small (issue 12.5): bounded member lists, counts and counts by reason."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import writeback_result as wr


def report(n_skipped=50, n_added=30):
    return {
        'id': 'g1', 'display_name': 'One', 'dn': 'CN=One,DC=x',
        'members_added': ['CN=u%d,DC=x' % i for i in range(n_added)], 'members_removed': [],
        'unresolved_members': [{'id': 'a', 'reason': 'not_found'}],
        'skipped_members': [{'id': 's%d' % i, 'reason': 'cloud_only_user' if i % 5 else 'unsupported_type_device'}
                            for i in range(n_skipped)],
    }


def result():
    return {'summary': {'created': 1}, 'groups': [report(), report(n_skipped=3, n_added=2)],
            'plan': [{'op': 'create', 'group_id': 'g1', 'members': ['CN=u%d,DC=x' % i for i in range(100)]},
                     {'op': 'members', 'group_id': 'g1', 'add': ['CN=v%d,DC=x' % i for i in range(45)], 'remove': []}]}


def test_sample_mode_bounds_every_list_and_counts_it():
    out = wr.shape(result(), 'sample', sample=10)
    big, small = out['groups']
    assert len(big['skipped_members']) == 10 and big['skipped_members_count'] == 50
    assert big['skipped_members_by_reason'] == {'cloud_only_user': 40, 'unsupported_type_device': 10}
    assert len(big['members_added']) == 10 and big['members_added_count'] == 30
    assert big['unresolved_members_by_reason'] == {'not_found': 1}
    assert len(small['skipped_members']) == 3 and small['skipped_members_count'] == 3
    # An operation's member DNs are the group's (members_added, sampled above): counts only.
    assert 'members' not in out['plan'][0] and out['plan'][0]['members_count'] == 100
    assert 'add' not in out['plan'][1] and out['plan'][1]['add_count'] == 45 and out['plan'][1]['remove_count'] == 0
    assert out['plan'][0]['op'] == 'create' and out['plan'][1]['group_id'] == 'g1'
    assert out['member_reasons']['skipped'] == {'cloud_only_user': 42, 'unsupported_type_device': 11}


def test_full_mode_keeps_everything():
    out = wr.shape(result(), 'full')
    assert len(out['groups'][0]['skipped_members']) == 50 and 'skipped_members_count' not in out['groups'][0]
    assert len(out['plan'][0]['members']) == 100
    assert out['member_reasons']['unresolved'] == {'not_found': 2}


def test_sample_result_of_a_large_run_is_small():
    many = {'summary': {}, 'groups': [report(n_skipped=2000, n_added=2000) for unused in range(50)], 'plan': []}
    full = len(json.dumps(wr.shape(json.loads(json.dumps(many)), 'full')))
    small = len(json.dumps(wr.shape(many, 'sample')))
    assert small * 50 < full


def test_report_file_has_the_full_lists(tmp_path):
    path = str(tmp_path / 'report.json')
    res = result()
    wr.write_report(path, res, res['groups'])
    data = json.load(open(path))
    assert len(data['groups'][0]['skipped_members']) == 50 and data['member_reasons']['skipped']['cloud_only_user'] == 42
    assert oct(os.stat(path).st_mode & 0o777) == '0o600'


def test_sample_mode_shapes_the_reports_and_operations_in_place():
    # No copy of 17,000 reports while the run still holds them (that copy was the xlarge check run's peak).
    given = result()
    reports, ops = list(given['groups']), list(given['plan'])
    full_added = reports[0]['members_added']
    out = wr.shape(given, 'sample', sample=10)
    assert all(a is b for a, b in zip(out['groups'], reports)) and all(a is b for a, b in zip(out['plan'], ops))
    assert reports[0]['members_added'] == full_added[:10] and len(full_added) == 30
    assert reports[0]['skipped_members_by_reason'] == {'cloud_only_user': 40, 'unsupported_type_device': 10}
    assert 'members' not in ops[0] and ops[0]['members_count'] == 100


def plain(gid, action='unchanged', **extra):
    rep = dict(id=gid, display_name=gid, dn='CN=%s,DC=x' % gid, previous_dn=None, object_guid='guid-' + gid, action=action,
               changes={}, members_added=[], members_removed=[], unresolved_members=[], skipped_members=[], reason=None,
               reason_text=None, adopted=False)
    rep.update(extra)
    return rep


def test_findings_mode_lists_only_the_unchanged_groups_with_something_to_say():
    groups = [plain('quiet1'), plain('quiet2'), plain('written', 'updated', changes={'member': {'added': 1, 'removed': 0}}),
              plain('skips', skipped_members=[{'id': 'c', 'reason': 'cloud_only_user'}]),
              plain('unresolved', unresolved_members=[{'id': 'u', 'reason': 'not_found'}]),
              plain('noted', notes=['created by a concurrent run a moment ago: adopted']), plain('adopted', adopted=True),
              plain('orphan', 'orphaned', reason='out_of_scope'), plain('skipped', 'skipped', reason='admin_count')]
    out = wr.shape({'summary': {'unchanged': 6}, 'groups': [dict(g) for g in groups]}, 'sample', unchanged_groups='findings')
    assert [g['id'] for g in out['groups']] == ['written', 'skips', 'unresolved', 'noted', 'adopted', 'orphan', 'skipped']
    assert out['unchanged_not_listed'] == 2 and out['summary'] == {'unchanged': 6}
    assert out['member_reasons'] == {'skipped': {'cloud_only_user': 1}, 'unresolved': {'not_found': 1}}
    out = wr.shape({'summary': {}, 'groups': [dict(g) for g in groups]}, 'full', unchanged_groups='all')
    assert [g['id'] for g in out['groups']] == [g['id'] for g in groups] and out['unchanged_not_listed'] == 0


def test_findings_is_the_default_of_all_mode_only():
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import writeback
    assert writeback.unchanged_groups(dict(all_groups=True)) == 'findings'
    assert writeback.unchanged_groups(dict(all_groups=True, unchanged_groups='all')) == 'all'
    assert writeback.unchanged_groups(dict(groups=['g'])) == 'all'
    assert writeback.unchanged_groups(dict(entra_groups=[], unchanged_groups='findings')) == 'findings'
    assert writeback.unchanged_groups(dict(entra_groups=[])) == 'all'
