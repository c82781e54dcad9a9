# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A result that stays small (issue 12.5), against the lab: bounded member lists with counts and
counts by reason by default, everything with member_details=full, and the full lists in
report_path (checked before any write)."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os

import pytest

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.errors import CloudSyncError

from writeback_helpers import entra_group, entra_user, new_id, run


def cloud_only(n):
    return dict(id=new_id(), type='user', display_name='cloud %d' % n, user_principal_name='c%d@x.test' % n,
                on_premises_sync_enabled=None, on_premises_object_identifier=None, on_premises_security_identifier=None,
                on_premises_immutable_id=None, on_premises_domain_name=None)


def group(corp):
    members = [entra_user(i) for i in corp.identities[:12]] + [cloud_only(n) for n in range(30)]
    members.append(dict(id=new_id(), type='device', display_name='PC'))
    return entra_group('Size Test', members)


def test_default_result_is_bounded_and_counted(corp, corp_dir, sandbox, tmp_path):
    g = group(corp)
    report = str(tmp_path / 'report.json')
    result = run(corp, [g], target_ou=sandbox, search_base=sandbox, member_sample_size=5, report_path=report)
    rep = result['groups'][0]
    assert len(rep['members_added']) == 5 and rep['members_added_count'] == 12
    assert len(rep['skipped_members']) == 5 and rep['skipped_members_count'] == 31
    assert rep['skipped_members_by_reason'] == {'cloud_only_user': 30, 'unsupported_type_device': 1}
    assert result['member_reasons']['skipped'] == {'cloud_only_user': 30, 'unsupported_type_device': 1}
    create = [op for op in result['plan'] if op['op'] == 'create'][0]
    assert 'members' not in create and create['members_count'] == 12
    assert result['summary']['members_added'] == 12 and result['summary']['skipped_members'] == 31
    # AD got every member, whatever the result shows.
    assert len(corp_dir.member_keys(corp_dir.one(g['id'], sandbox))) == 12
    full = json.load(open(report))
    assert len(full['groups'][0]['members_added']) == 12 and len(full['groups'][0]['skipped_members']) == 31
    assert oct(os.stat(report).st_mode & 0o777) == '0o600'


def test_full_details_on_request(corp, corp_dir, sandbox):
    g = group(corp)
    result = run(corp, [g], target_ou=sandbox, search_base=sandbox, member_details='full', check=True)
    rep = result['groups'][0]
    assert len(rep['skipped_members']) == 31 and len(rep['members_added']) == 12
    assert 'skipped_members_count' not in rep


def test_unwritable_report_path_is_refused_before_any_write(corp, corp_dir, sandbox, tmp_path):
    g = group(corp)
    with pytest.raises(CloudSyncError) as err:
        run(corp, [g], target_ou=sandbox, search_base=sandbox, report_path=str(tmp_path / 'missing' / 'report.json'))
    assert 'report_path' in err.value.msg
    assert corp_dir.by_anchor(g['id'], sandbox) == []
