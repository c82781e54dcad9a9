"""The engine's pure output helpers (issue 14.9 and 14.2): per-group diffs headed by the DN,
changes with old and new values, the action values documented in RETURN, the containers and
output paths checked before the first write."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os

import pytest
import yaml

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import writeback, writeback_plan
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.writeback_plan import plan_writeback
from ansible_collections.hybrid_identity.cloud_sync.plugins.modules import ad_group_writeback

DOMAIN = 'DC=corp,DC=example,DC=test'
OU = 'OU=Cloud,' + DOMAIN
GID = '0b4c53d7-3f5c-4a0e-9a55-5f8f0c1d2e3f'


def group(name, description=None, members=None):
    return dict(id=GID, display_name=name, description=description, security_enabled=True, mail_enabled=False,
                group_types=[], on_premises_sync_enabled=None, members=members)


def managed(name, description, parent=OU):
    cn = '%s_%s' % (name, GID[-12:])
    return dict(dn='CN=%s,%s' % (cn, parent), object_guid='11111111-2222-3333-4444-555555555555', object_sid='S-1-5-21-1-2-3-1000',
                cn=cn, parent_dn=parent, anchor='Group_' + GID, admin_description='Group_' + GID, display_name=name,
                description=description, group_type=-2147483640, sam_account_name='$ABC', admin_count=0, members=[])


def planned(desired, existing):
    plan = plan_writeback([desired], dict(domain_dn=DOMAIN, managed=existing, v2_candidates=[], taken_dns={}, sam_taken=[]),
                          {}, dict(target_ou=OU))
    result = plan.to_dict()
    writeback.attach_change_values(result['groups'], result['diff'])
    return result


def test_a_rename_reports_old_and_new_values_and_a_diff_headed_by_both_dns():
    result = planned(group('New Name', 'same'), [managed('Old Name', 'same')])
    rep = result['groups'][0]
    assert rep['changes']['displayName'] == {'before': 'Old Name', 'after': 'New Name'}
    assert rep['changes']['cn'] == {'before': 'Old Name_' + GID[-12:], 'after': 'New Name_' + GID[-12:]}
    assert 'description' not in rep['changes']
    diffs = writeback.ansible_diff(result['diff'], result['groups'])
    assert len(diffs) == 1
    assert diffs[0]['before_header'] == 'CN=Old Name_%s,%s' % (GID[-12:], OU)
    assert diffs[0]['after_header'] == 'CN=New Name_%s,%s' % (GID[-12:], OU)
    assert diffs[0]['before']['displayName'] == 'Old Name' and diffs[0]['after']['displayName'] == 'New Name'


def test_a_move_reports_the_containers_and_a_create_has_no_before():
    elsewhere = 'OU=Old,' + DOMAIN
    moved = planned(group('Name', 'd'), [managed('Name', 'd', parent=elsewhere)])['groups'][0]
    assert moved['changes']['container'] == {'before': elsewhere, 'after': OU}
    created = planned(group('Fresh', 'text'), [])
    assert created['groups'][0]['changes']['description'] == {'before': None, 'after': 'text'}
    diffs = writeback.ansible_diff(created['diff'], created['groups'])
    assert diffs[0]['before_header'].endswith(' (absent)') and diffs[0]['before'] == {}


def test_an_unchanged_group_has_no_diff_and_no_changes():
    result = planned(group('Name', 'd'), [managed('Name', 'd')])
    assert result['groups'][0]['changes'] == {}
    assert writeback.ansible_diff(result['diff'], result['groups']) == []


def test_return_documents_every_action_the_planner_and_the_applier_report():
    doc = yaml.safe_load(ad_group_writeback.RETURN)
    documented = doc['groups']['contains']['action']['choices']
    assert sorted(documented) == sorted(writeback_plan.GROUP_ACTIONS)


def test_containers_to_check_name_each_option():
    params = dict(target_ou=None, ou_map=[{'id': GID, 'ou': 'OU=A,' + DOMAIN}, {'pattern': 'x', 'ou': 'OU=B,' + DOMAIN}])
    assert writeback.containers_to_check(params, DOMAIN, OU) == [
        ('search_base', OU), ('target_ou', 'CN=Users,' + DOMAIN), ('ou_map[0].ou', 'OU=A,' + DOMAIN), ('ou_map[1].ou', 'OU=B,' + DOMAIN)]


def test_output_paths_are_checked_before_anything_runs(tmp_path):
    writeback.check_output_paths(dict(delta_state_path=str(tmp_path / 'state.json')))
    assert os.listdir(str(tmp_path)) == [], 'the check leaves nothing behind'
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    for bad, why in ((str(blocker / 'state.json'), 'is not a directory'), (str(tmp_path / 'no' / 'state.json'), 'does not exist'),
                     (str(tmp_path), 'is a directory')):
        with pytest.raises(writeback.WritebackError) as refused:
            writeback.check_output_paths(dict(delta_state_path=bad))
        assert why in refused.value.msg and 'delta_state_path' in refused.value.msg and 'Nothing was written' in refused.value.msg
        assert refused.value.details['changed'] is False


def test_member_delta_fallback_compares_in_full_a_group_whose_copy_is_not_as_left():
    """A group planned from member changes whose AD copy is missing, duplicated or changed since
    the run's mark (a change by hand while the run started) is compared in full instead."""
    def obj(n, usn):
        return dict(anchor='Group_%08x-0000-4000-8000-%012x' % (n, n), usn_changed=usn)

    def g(n):
        return dict(id='%08x-0000-4000-8000-%012x' % (n, n), members=None, member_changes=dict(added=[], removed=[]))
    desired = [g(1), g(2), g(3), g(4), dict(g(5), member_changes=None)]
    managed = [obj(1, 100), obj(2, 101), obj(3, 90), obj(3, 90)]
    back = writeback.member_delta_fallback(desired, managed, {'usn': 100})
    assert back == set([g(2)['id'], g(3)['id'], g(4)['id']])


@pytest.mark.parametrize('graph_fails', [True, False])
def test_graph_is_read_while_ad_is_reached_and_a_graph_error_is_said_first(monkeypatch, graph_fails):
    """Graph is read in a thread while the run connects to AD. When both fail, the Graph error is the
    one reported (a run used to stop there before AD was reached); when only AD fails, AD's is."""
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_client import ADClient, ADError
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.errors import CloudSyncError
    reached = []

    def desired(params, old_state=None, listener=None):
        reached.append('graph')
        if graph_fails:
            raise CloudSyncError('Graph refused the token')
        return dict(groups=[], graph=None, not_found=[], gone_ids=[], new_state=None, ambiguous=[], member_source=None,
                    read_warnings=[])

    def connect(self):
        reached.append('ad')
        raise ADError('Cannot reach the DC', operation='bind')
    monkeypatch.setattr(writeback, '_desired', desired)
    monkeypatch.setattr(ADClient, 'connect', connect)
    with pytest.raises(CloudSyncError) as err:
        writeback.run_writeback(dict(domain_controllers=['127.0.0.2'], groups=['x'], max_members=50000))
    assert sorted(reached) == ['ad', 'graph']
    assert str(err.value).startswith('Graph refused' if graph_fails else 'Cannot reach')


def test_a_refusal_says_nothing_was_written_only_when_nothing_was():
    """A refusal of the plan words itself by whether the run wrote: a first run writes groups while
    Graph is still read (writeback_early), so the same refusal, raised after those writes, must not
    say "Nothing was written" (the wording is the refusal's own, not a patch of its text)."""
    refused = writeback.Refused('this run would delete 3 groups, more than deletion_threshold=2', 'Raise it for one run.',
                                details=dict(changed=False))
    assert refused.msg == ('Refused: this run would delete 3 groups, more than deletion_threshold=2. Nothing was written. '
                           'Raise it for one run.')
    assert isinstance(refused, writeback.WritebackError) and refused.details == dict(changed=False)
    assert refused.message(written=True) == 'Refused: this run would delete 3 groups, more than deletion_threshold=2. ' \
                                            'Raise it for one run.'
    assert writeback.Refused('x').msg == 'Refused: x. Nothing was written.'

    applied = writeback.ApplyResult()
    applied.changed = True
    result = dict(summary=dict(created=2, unchanged=0), groups=[], cycles=[])
    failed = writeback._failed_after_writes(refused, result, applied, [], {})
    assert 'wrote to AD and then failed: Refused: this run would delete 3 groups' in failed.msg
    assert 'Nothing was written' not in failed.msg and 'created 2' in failed.msg
    assert failed.details['changed'] is True and failed.after_writes is True
