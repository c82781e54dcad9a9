"""Honest failures (issue 14, item 2): a run never writes to AD and then says "nothing changed".

- Every output path (``delta_state_path``) and every container (``target_ou``, the ``ou_map``
  targets, ``search_base``) is checked before the first write, in check mode too: check mode must
  not report a create that the real run refuses.
- A failure after writes (the state file cannot be saved, an LDAP error mid-apply) fails with
  ``changed: true`` and the summary, groups and plan of what was done.

Through ansible-playbook where the module contract is what is tested, through the engine where a
failure has to be placed between two steps of one run.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import shutil
import time
import uuid

import pytest

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import delta_state, writeback
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_client import ADClient, ADError
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.errors import CloudSyncError

from test_cloudsync_permissions import grant_permissions, sandbox_ou
from writeback_helpers import Directory, entra_group, entra_user, graph_args, run, run_playbook, synced_users

PREFIX = 'WF %s ' % uuid.uuid4().hex[:6]

PLAY = """
- hosts: localhost
  gather_facts: false
  module_defaults:
    group/hybrid_identity.cloud_sync.cloud_sync:
      domain_controllers: ["{ip}"]
      ad_ca_file: "{ca}"
      ad_user: "{user}"
      ad_password: "{password}"
  tasks:
    - name: drift
      hybrid_identity.cloud_sync.ad_group_writeback: {args}
      check_mode: true
      register: r_drift
      ignore_errors: true
    - name: apply
      hybrid_identity.cloud_sync.ad_group_writeback: {args}
      register: r_apply
      ignore_errors: true
    - name: save
      ansible.builtin.copy:
        content: "{{{{ {{'drift': r_drift, 'apply': r_apply}} | to_json }}}}"
        dest: "{{results}}"
        mode: "0600"
"""


def play_for(forest, args, user=None, password=None):
    return PLAY.format(ip=forest.ip, ca=forest.ca_file, user=user or forest.admin_upn, password=password or forest.admin_password,
                       args=json.dumps(args))


@pytest.fixture
def box(corp):
    directory = Directory(corp)
    dn = directory.make_ou('t-fail-%s' % uuid.uuid4().hex[:8])
    yield directory, dn
    directory.remove_tree(dn)
    directory.close()


@pytest.fixture
def tenant(corp, graph_tenant, graph_emulator_factory):
    """An emulated tenant with two cloud groups whose members are lab users."""
    ids = corp.identities
    b = graph_tenant()
    users = synced_users(b, ids[36:38])
    groups = [b.group(PREFIX + 'One', members=users[:1]), b.group(PREFIX + 'Two', members=users)]
    return graph_emulator_factory(b.build()), groups


def module_graph_args(emu):
    return dict(tenant_id=emu.tenant_id, client_id=emu.client_id, client_secret=emu.client_secret,
                authority_host=emu.authority_url, graph_endpoint=emu.base_url, graph_ca_bundle=emu.ca_file)


def test_unwritable_state_path_is_refused_before_any_write_in_check_mode_too(corp, box, tenant, tmp_path):
    """The state file's directory is a regular file: nothing can be saved there. Before, check mode
    passed and the real run created the groups and then failed with changed false."""
    directory, ou = box
    emu, group_ids = tenant
    blocker = tmp_path / 'not-a-directory'
    blocker.write_text('a file where the state directory should be')
    state = str(blocker / 'state.json')
    args = dict(module_graph_args(emu), all_groups=True, group_filter="startswith(displayName,'%s')" % PREFIX,
                target_ou=ou, search_base=ou, delta_state_path=state)
    rc, output, saved = run_playbook(play_for(corp, args), tmp_path)
    assert rc == 0, output[-3000:]
    for task in ('drift', 'apply'):
        result = saved[task]
        assert result.get('failed') is True, (task, result)
        assert result['changed'] is False, (task, result)
        assert 'delta_state_path' in result['msg'] and state in result['msg'], result['msg']
        assert 'Nothing was written' in result['msg'], result['msg']
        assert 'Traceback' not in result['msg']
    for gid in group_ids:
        assert directory.by_anchor(gid, ou) == [], 'the refused run wrote to AD'


def test_a_missing_ou_map_target_fails_in_check_mode_and_writes_nothing(corp, box, tmp_path):
    """Before, check mode reported a create into an OU that does not exist (changed, ok), and the
    real run created the other group and failed for this one."""
    directory, ou = box
    missing = 'OU=Not There,%s' % ou
    stray, other = entra_group('Mapped Nowhere'), entra_group('Would Be Fine')
    args = dict(entra_groups=[stray, other], target_ou=ou, search_base=ou, ou_map=[{'id': stray['id'], 'ou': missing}])
    rc, output, saved = run_playbook(play_for(corp, args), tmp_path)
    assert rc == 0, output[-3000:]
    for task in ('drift', 'apply'):
        result = saved[task]
        assert result.get('failed') is True, (task, result)
        assert result['changed'] is False
        assert missing in result['msg'] and 'ou_map' in result['msg'], result['msg']
    assert directory.by_anchor(other['id'], ou) == [] and directory.by_anchor(stray['id'], ou) == []


def test_missing_target_ou_and_search_base_are_named_before_anything_is_planned(corp, box):
    _directory, ou = box
    gone = 'OU=Gone,%s' % ou
    for option in ('target_ou', 'search_base'):
        with pytest.raises(CloudSyncError) as refused:
            run(corp, [entra_group('Anything')], check=True, **dict(dict(target_ou=ou, search_base=ou), **{option: gone}))
        assert option in refused.value.msg and gone in refused.value.msg, refused.value.msg
        assert refused.value.details.get('changed') is False


def test_a_state_file_that_cannot_be_saved_after_the_writes_reports_changed_with_the_summary(
        corp, box, tenant, tmp_path, monkeypatch):
    """The state directory disappears while the run writes (checked writable before the writes):
    the writes happened, so the failure says changed true and carries what was done."""
    directory, ou = box
    emu, group_ids = tenant
    state_dir = tmp_path / 'state'
    state_dir.mkdir()
    state = str(state_dir / 'state.json')
    real_apply = writeback.apply_plan

    def apply_then_lose_the_directory(*args, **kwargs):
        outcome = real_apply(*args, **kwargs)
        shutil.rmtree(str(state_dir))
        (tmp_path / 'state').write_text('now a file')
        return outcome
    monkeypatch.setattr(writeback, 'apply_plan', apply_then_lose_the_directory)
    args = graph_args(emu)
    args.update(all_groups=True, group_filter="startswith(displayName,'%s')" % PREFIX, target_ou=ou, search_base=ou,
                delta_state_path=state)
    with pytest.raises(CloudSyncError) as failed:
        run(corp, None, **args)
    err = failed.value
    assert err.details['changed'] is True, err.details
    assert err.details['summary']['created'] == 2, err.details['summary']
    assert [op['op'] for op in err.details['plan']] == ['create', 'create']
    assert all(op['outcome'] == 'created' for op in err.details['plan'])
    assert 'delta_state_path' in err.msg and state in err.msg, err.msg
    assert 'wrote to AD' in err.msg, err.msg
    for gid in group_ids:
        assert len(directory.by_anchor(gid, ou)) == 1
    assert not os.path.isdir(state)


def lose_the_connection_after_one_add(monkeypatch):
    """ADClient.add fails from its second call on as a DC that went away does (no LDAP result code)."""
    real_add = ADClient.add
    calls = []

    def add_then_lose_the_connection(self, dn, attributes, *args, **kwargs):
        calls.append(dn)
        if len(calls) > 1:
            raise ADError('Connection to %s lost during add of %r' % (self.server, dn), operation='add', server=self.server, dn=dn)
        return real_add(self, dn, attributes, *args, **kwargs)
    monkeypatch.setattr(ADClient, 'add', add_then_lose_the_connection)


def test_an_ldap_failure_mid_apply_reports_changed_with_what_was_done(corp, box, monkeypatch):
    """The connection is lost after the first create (a DC that went away: no LDAP result code).
    The run stops, and says that it wrote one group and which ones it did not get to."""
    directory, ou = box
    groups = [entra_group('Mid %d' % i, [entra_user(corp.identities[36])]) for i in range(3)]
    lose_the_connection_after_one_add(monkeypatch)
    with pytest.raises(CloudSyncError) as failed:
        run(corp, groups, target_ou=ou, search_base=ou)
    err = failed.value
    assert err.details['changed'] is True, err.details
    assert err.details['summary']['created'] == 1, err.details['summary']
    outcomes = [op['outcome'] for op in err.details['plan']]
    assert outcomes == ['created', 'error', 'not_run'], outcomes
    by_action = sorted(g['action'] for g in err.details['groups'])
    assert by_action == ['created', 'error', 'error'], err.details['groups']
    assert 'Connection to' in err.msg and 'lost' in err.msg
    assert sum(len(directory.by_anchor(g['id'], ou)) for g in groups) == 1
    monkeypatch.undo()
    rerun = run(corp, groups, target_ou=ou, search_base=ou)
    assert rerun['summary']['created'] == 2 and rerun['summary']['unchanged'] == 1, 'the next run completes the rest'
    assert all(len(directory.by_anchor(g['id'], ou)) == 1 for g in groups)


def test_a_failure_after_writes_is_bounded_as_a_result_is_with_the_full_lists_in_report_path(corp, box, tmp_path, monkeypatch):
    """A run that stops after its writes returns what was done with the same bounds as a result
    (member_details, member_sample_size): at xlarge the unshaped details of a first run stopped by a
    DC timeout made the process peak at 712.5 MB. The full lists go to report_path first;
    member_details=full still returns them all."""
    directory, ou = box
    members = [entra_user(identity) for identity in corp.identities[36:39]]
    groups = [entra_group('Bounded %d' % i, members) for i in range(3)]
    report = tmp_path / 'report.json'
    lose_the_connection_after_one_add(monkeypatch)
    with pytest.raises(CloudSyncError) as failed:
        run(corp, groups, target_ou=ou, search_base=ou, member_sample_size=1, report_path=str(report))
    err = failed.value
    assert err.details['changed'] is True and err.details['summary']['created'] == 1, err.details['summary']
    created = [g for g in err.details['groups'] if g['action'] == 'created']
    assert len(created) == 1 and created[0]['members_added_count'] == 3 and len(created[0]['members_added']) == 1, created
    assert all('members' not in op and 'add' not in op for op in err.details['plan']), err.details['plan']
    assert [op.get('members_count') for op in err.details['plan'] if op['op'] == 'create'] == [3, 3, 3]
    assert 'member_reasons' in err.details
    assert 'report_path' in err.msg and str(report) in err.msg, err.msg
    saved = json.load(open(str(report)))
    full = [g for g in saved['groups'] if g['id'] == created[0]['id']]
    assert len(full) == 1 and len(full[0]['members_added']) == 3, full
    assert saved['summary']['created'] == 1

    monkeypatch.undo()
    lose_the_connection_after_one_add(monkeypatch)
    with pytest.raises(CloudSyncError) as again:
        run(corp, groups, target_ou=ou, search_base=ou, member_details='full')
    assert again.value.details['summary']['created'] == 1, again.value.details['summary']
    whole = [g for g in again.value.details['groups'] if g['action'] == 'created']
    assert len(whole) == 1 and len(whole[0]['members_added']) == 3, whole
    assert [len(op['members']) for op in again.value.details['plan'] if op['op'] == 'create'] == [3, 3]
    monkeypatch.undo()


def test_a_run_stopped_mid_apply_leaves_no_state_behind(corp, box, tenant, tmp_path, monkeypatch):
    """The members file is written before the plan is applied (writeback.run_writeback); when the
    run stops before its head is saved (here the connection is lost on the second create), the
    file is removed with it: nothing names it, and the next run starts from a full read."""
    directory, ou = box
    emu, group_ids = tenant
    state_dir = tmp_path / 'state'
    state_dir.mkdir()
    state = str(state_dir / 'state.json')
    lose_the_connection_after_one_add(monkeypatch)
    args = graph_args(emu)
    args.update(all_groups=True, group_filter="startswith(displayName,'%s')" % PREFIX, target_ou=ou, search_base=ou,
                delta_state_path=state)
    with pytest.raises(CloudSyncError) as failed:
        run(corp, None, **args)
    assert failed.value.details['changed'] is True and 'lost' in failed.value.msg
    assert os.listdir(str(state_dir)) == []
    monkeypatch.undo()
    rerun = run(corp, None, **args)
    assert rerun['incremental']['entra'] == 'full' and rerun['summary']['created'] == 1
    assert sorted(n.split('.members-')[0] for n in os.listdir(str(state_dir))) == ['state.json', 'state.json']
    assert all(len(directory.by_anchor(gid, ou)) == 1 for gid in group_ids)


def test_the_members_file_is_written_before_the_writes_end(corp, box, tenant, tmp_path, monkeypatch):
    """The Entra side of the state is known before the first write: its members file is written in a
    thread while AD is read (which waits on the DC), before the writes end; the head only after them."""
    directory, ou = box
    state_dir = tmp_path / 'state'
    state_dir.mkdir()
    real_apply = writeback.apply_plan
    seen = {}

    def apply_and_look(*args, **kwargs):
        outcome = real_apply(*args, **kwargs)
        deadline = time.time() + 20
        while time.time() < deadline and not seen.get('members'):
            names = os.listdir(str(state_dir))
            seen.update(members=[n for n in names if '.members-' in n], head='state.json' in names)
            time.sleep(0.01)
        return outcome
    monkeypatch.setattr(writeback, 'apply_plan', apply_and_look)
    args = graph_args(tenant[0])
    args.update(all_groups=True, group_filter="startswith(displayName,'%s')" % PREFIX, target_ou=ou, search_base=ou,
                delta_state_path=str(state_dir / 'state.json'))
    result = run(corp, None, **args)
    assert result['summary']['created'] == 2
    assert seen['members'] and seen['head'] is False, seen
    assert json.load(open(str(state_dir / 'state.json')))['members_file']['file'] == seen['members'][0]


def test_member_lists_are_dropped_before_the_writes_once_the_members_file_is_whole(corp, box, tenant, tmp_path, monkeypatch):
    """Once planned, the member lists read from Graph are dropped before the writes (their memory
    serves the writes, the read-back and the result), but only once the members file's writer,
    which makes the file from them, is done: a writer slower than the AD reads still saves every
    member."""
    directory, ou = box
    emu, group_ids = tenant
    state_path = str(tmp_path / 'state.json')
    real_write, real_lazy, real_apply = delta_state.write_members, delta_state.lazy_state, writeback.apply_plan
    read = {}

    def slow_write(*args, **kwargs):
        time.sleep(3)   # the plan is made long before
        return real_write(*args, **kwargs)

    def keep_groups(state, groups, to_object):
        read['groups'] = groups
        return real_lazy(state, groups, to_object)

    def apply_and_look(*args, **kwargs):
        read['members_at_apply'] = sorted(len(g.get('members') or ()) for g in read['groups'])
        return real_apply(*args, **kwargs)
    monkeypatch.setattr(delta_state, 'write_members', slow_write)
    monkeypatch.setattr(delta_state, 'lazy_state', keep_groups)
    monkeypatch.setattr(writeback, 'apply_plan', apply_and_look)
    args = graph_args(emu)
    args.update(all_groups=True, group_filter="startswith(displayName,'%s')" % PREFIX, target_ou=ou, search_base=ou,
                delta_state_path=state_path)
    result = run(corp, None, **args)
    assert result['summary']['created'] == 2
    assert read['members_at_apply'] == [0, 0]
    saved = delta_state.hydrate(delta_state.load(state_path))
    assert sorted(len(saved['groups'][gid]['member_ids']) for gid in group_ids) == [1, 2]
    assert len(saved['objects']) == 2


def test_fail_on_not_found_names_the_selected_groups_missing_from_entra_and_writes_nothing(corp, box, tenant, tmp_path):
    """Issue 14.9: with fail_on_not_found a selection that matches no Entra group fails the run
    (check mode too) before anything is written, naming it; by default the run writes what it
    found and reports the rest in not_found."""
    directory, ou = box
    emu, group_ids = tenant
    missing_id = str(uuid.uuid4())
    selection = [PREFIX + 'One', PREFIX + 'Nowhere', missing_id]
    args = dict(module_graph_args(emu), groups=selection, target_ou=ou, search_base=ou, fail_on_not_found=True)
    rc, output, saved = run_playbook(play_for(corp, args), tmp_path)
    assert rc == 0, output[-3000:]
    for task in ('drift', 'apply'):
        result = saved[task]
        assert result.get('failed') is True and result['changed'] is False, (task, result)
        assert PREFIX + 'Nowhere' in result['msg'] and missing_id in result['msg'], result['msg']
        assert 'fail_on_not_found' in result['msg'] and sorted(result['not_found']) == sorted(selection[1:])
    assert directory.by_anchor(group_ids[0], ou) == []

    del args['fail_on_not_found']
    rc, output, saved = run_playbook(play_for(corp, args), tmp_path)
    assert rc == 0, output[-3000:]
    assert saved['apply'].get('failed') is not True, saved['apply']
    assert saved['apply']['summary']['created'] == 1 and sorted(saved['apply']['not_found']) == sorted(selection[1:])
    assert len(directory.by_anchor(group_ids[0], ou)) == 1


def test_a_group_whose_write_is_refused_fails_the_task_with_changed_and_what_was_done(corp, tmp_path):
    """Bound as an account granted one OU only: the group mapped elsewhere is refused by AD
    (insufficientAccessRights) after the other was created. The task fails, says changed, and
    carries the summary and the plan with each operation's outcome."""
    directory = Directory(corp)
    try:
        with sandbox_ou(corp, prefix='wf-ok') as granted, sandbox_ou(corp, prefix='wf-no') as denied:
            rc, output, _result = grant_permissions(corp, tmp_path / 'grant', targets=[granted], principal=corp.unprivileged_user)
            assert rc == 0, output[-2000:]
            allowed, refused = entra_group('Allowed Here'), entra_group('Refused There')
            args = dict(entra_groups=[allowed, refused], target_ou=granted, search_base=granted,
                        ou_map=[{'id': refused['id'], 'ou': denied}])
            rc, output, saved = run_playbook(play_for(corp, args, corp.unprivileged_upn, corp.unprivileged_password),
                                             tmp_path)
            assert rc == 0, output[-3000:]
            assert saved['drift'].get('failed') is not True and saved['drift']['changed'] is True
            result = saved['apply']
            assert result.get('failed') is True and result['changed'] is True, result
            assert result['summary']['created'] == 1 and result['summary']['errors'] == 1, result['summary']
            assert sorted(op['outcome'] for op in result['plan']) == ['created', 'error'], result['plan']
            by_id = dict((g['id'], g) for g in result['groups'])
            assert 'insufficientAccessRights' in by_id[refused['id']]['reason_text'] and 'Refused There' in result['msg']
            assert len(directory.by_anchor(allowed['id'], granted)) == 1 and directory.by_anchor(refused['id'], denied) == []
    finally:
        directory.close()


def test_an_unwritable_report_path_is_refused_before_any_write_and_one_lost_after_the_writes_says_changed(
        corp, box, tmp_path, monkeypatch):
    """report_path is an output path like delta_state_path: checked before the first write (check
    mode too); if it still cannot be written after the writes, the failure says changed true."""
    directory, ou = box
    group = entra_group('Reported')
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    for check in (True, False):
        with pytest.raises(CloudSyncError) as refused:
            run(corp, [group], check=check, target_ou=ou, search_base=ou, report_path=str(blocker / 'report.json'))
        assert 'report_path' in refused.value.msg and refused.value.details['changed'] is False
    assert directory.by_anchor(group['id'], ou) == []

    report_dir = tmp_path / 'reports'
    report_dir.mkdir()
    real_apply = writeback.apply_plan

    def apply_then_lose_the_directory(*args, **kwargs):
        outcome = real_apply(*args, **kwargs)
        shutil.rmtree(str(report_dir))
        return outcome
    monkeypatch.setattr(writeback, 'apply_plan', apply_then_lose_the_directory)
    with pytest.raises(CloudSyncError) as failed:
        run(corp, [group], target_ou=ou, search_base=ou, report_path=str(report_dir / 'report.json'))
    assert failed.value.details['changed'] is True and failed.value.details['summary']['created'] == 1
    assert 'report_path' in failed.value.msg and 'wrote to AD' in failed.value.msg
    assert len(directory.by_anchor(group['id'], ou)) == 1
