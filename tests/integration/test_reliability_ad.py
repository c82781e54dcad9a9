"""Reliability against AD faults, in a private lab (its own directory and loopback addresses), so
stopping its domain controller never disturbs the shared lab other tests use at the same time.

- a DC that dies in the middle of a run: the run stops with a clear error naming the server
  (changed, with the outcome of each operation),
  nothing is half made (every group that exists carries its anchor, none exists twice) and, once
  the DC is back, the next run converges to exactly what a clean run makes;
- failover: an unreachable first DC is tried once, the run goes on the live one and stays there;
- several processes writing back the same groups at once never make a duplicate.

The private lab: ``CLOUDSYNC_RELIABILITY_LAB_DIR`` (default /tmp/lab-rel) and
``CLOUDSYNC_RELIABILITY_LAB_IPS`` (default 127.0.0.32,127.0.0.33,127.0.0.34; only corp's, the
first, is used). Its DC is stopped again when the module ends (the files stay: the next start
takes a few seconds).
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import dataclasses
import json
import os
import socket
import subprocess
import sys
import threading
import uuid

import pytest

from listeners import Listener

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import writeback
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_client import ADClient, ADError
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_codecs import dn_key
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.errors import CloudSyncError

from lab.lab import Lab, LabError
from lab.second_dc import SecondDC
from writeback_helpers import ROOT, Directory, entra_group, entra_user, first, run, run_playbook, values, writeback_params

PRIVATE_LAB_DIR = os.environ.get('CLOUDSYNC_RELIABILITY_LAB_DIR', '/tmp/lab-rel')
PRIVATE_LAB_IPS = os.environ.get('CLOUDSYNC_RELIABILITY_LAB_IPS', '127.0.0.32,127.0.0.33,127.0.0.34')
SECOND_DC_IP = os.environ.get('CLOUDSYNC_RELIABILITY_DC2_IP', '127.0.0.35')


@pytest.fixture(scope='module')
def private_lab():
    """(Lab, corp Forest) of a lab of our own: its DC may be stopped without harming anyone."""
    saved = os.environ.get('CLOUDSYNC_LAB_IPS')
    os.environ['CLOUDSYNC_LAB_IPS'] = PRIVATE_LAB_IPS  # read by lab.forest_ip() when provisioning
    try:
        the_lab = Lab(lab_dir=PRIVATE_LAB_DIR)
        forest = the_lab.up(('corp',))['corp']
    except (LabError, OSError) as exc:
        pytest.fail('the private reliability lab could not be brought up: %s' % exc, pytrace=False)
    finally:
        if saved is None:
            os.environ.pop('CLOUDSYNC_LAB_IPS', None)
        else:
            os.environ['CLOUDSYNC_LAB_IPS'] = saved
    assert forest.ip in PRIVATE_LAB_IPS.split(','), 'the private lab must not be the shared one (%s)' % forest.ip
    yield the_lab, forest
    the_lab.stop_forest('corp')


@pytest.fixture
def rel(private_lab):
    """(lab, forest, Directory, sandbox OU factory); every OU made is removed afterwards."""
    the_lab, forest = private_lab
    the_lab.start_forest('corp')  # no-op when running; a test that stopped it may have failed midway
    directory = Directory(forest)
    made = []

    def sandbox(prefix='rel'):
        made.append(directory.make_ou('%s-%s' % (prefix, uuid.uuid4().hex[:10])))
        return made[-1]
    yield the_lab, forest, directory, sandbox
    the_lab.start_forest('corp')
    cleanup = Directory(forest)
    for dn in made:
        cleanup.remove_tree(dn)
    cleanup.close()
    try:
        directory.close()
    except Exception:  # pylint: disable=broad-except
        pass  # its connection died with the DC


def many_groups(forest, count, prefix):
    ids = forest.identities
    return [entra_group('%s %02d' % (prefix, i), [entra_user(ids[i % len(ids)]), entra_user(ids[(i + 7) % len(ids)], 'sid')],
                        description='group %d' % i) for i in range(count)]


def groups_in(directory, ou):
    return list(directory.client.search(ou, '(objectClass=group)', ['cn', 'displayName', 'description', 'member', 'groupType',
                                                                    'adminDescription', 'msDS-ExternalDirectoryObjectId']))


def end_state(directory, ou):
    """What a run leaves in ``ou``, independent of the OU's name: {anchor: (cn, display name, ...)}."""
    state = {}
    for entry in groups_in(directory, ou):
        anchor = first(entry, 'msDS-ExternalDirectoryObjectId')
        assert anchor not in state, 'two groups carry the anchor %s' % anchor
        state[anchor] = (first(entry, 'cn'), first(entry, 'displayName'), first(entry, 'description'),
                         first(entry, 'groupType'), first(entry, 'adminDescription'),
                         tuple(sorted(dn_key(dn) for dn in values(entry, 'member'))))
    return state


def in_ou(forest, groups, ou, **kw):
    return run(forest, groups, target_ou=ou, search_base=ou, **kw)


def test_dc_stopped_mid_run_fails_cleanly_leaves_no_half_group_and_next_run_converges(rel, monkeypatch):
    the_lab, forest, directory, sandbox = rel
    groups = many_groups(forest, 20, 'Outage')
    reference_ou, ou = sandbox('clean'), sandbox('outage')
    clean = in_ou(forest, groups, reference_ou)
    assert clean['summary']['created'] == 20 and clean['summary']['errors'] == 0
    reference = end_state(directory, reference_ou)
    directory.close()

    adds_before_outage = 5

    class DCDiesAfterFewAdds(ADClient):
        """The engine's own client; after a few adds the lab's DC really stops (SIGTERM to samba)."""
        adds_done = 0

        def add(self, dn, attributes):
            out = super(DCDiesAfterFewAdds, self).add(dn, attributes)
            DCDiesAfterFewAdds.adds_done += 1
            if DCDiesAfterFewAdds.adds_done == adds_before_outage:
                assert the_lab.stop_forest('corp'), 'the private DC was not running'
            return out

    monkeypatch.setattr(writeback, 'ADClient', DCDiesAfterFewAdds)
    with pytest.raises(CloudSyncError) as failure:
        in_ou(forest, groups, ou)
    monkeypatch.undo()
    err = failure.value
    # The run had written: it fails saying so (changed), with what was done and what was not run.
    assert err.details.get('changed') is True, err.details
    assert 'LDAP add of' in err.msg and forest.ip in err.msg and 'session terminated' in err.msg, err.msg
    assert 'Traceback' not in err.msg
    outcomes = [op.get('outcome') for op in err.details['plan']]
    # five made, the add that met the stopped DC in error, the rest never sent
    assert outcomes == ['created'] * adds_before_outage + ['error'] + ['not_run'] * (20 - adds_before_outage - 1), outcomes
    assert DCDiesAfterFewAdds.adds_done == adds_before_outage

    the_lab.start_forest('corp')
    directory = Directory(forest)
    try:
        partial = groups_in(directory, ou)
        anchors = [first(e, 'msDS-ExternalDirectoryObjectId') for e in partial]
        assert len(partial) == adds_before_outage, [e['dn'] for e in partial]
        assert None not in anchors, 'a group without its anchor was left behind'
        assert len(set(anchors)) == len(anchors), 'a group was created twice'
        assert set(anchors) <= set('Group_' + g['id'] for g in groups)

        recovered = in_ou(forest, groups, ou)
        assert recovered['summary']['errors'] == 0, recovered['groups']
        assert recovered['summary']['created'] == 20 - adds_before_outage
        assert end_state(directory, ou) == reference, 'after the outage the end state differs from a clean run'
        again = in_ou(forest, groups, ou)
        assert again['changed'] is False
    finally:
        directory.close()


def test_dc_stopped_while_two_connections_write_member_changes_stops_both_and_the_next_run_converges(rel, monkeypatch):
    """Member changes of existing groups go over two connections at once (ad_write_connections): the
    DC dies after a few of them; the run stops on both, says what was done, what failed and what was
    never sent, and the next run brings every group where a clean run does."""
    the_lab, forest, directory, sandbox = rel
    ids = forest.identities
    groups = many_groups(forest, 20, 'Parallel')
    reference_ou, ou = sandbox('clean'), sandbox('parallel')
    for box in (reference_ou, ou):
        assert in_ou(forest, groups, box)['summary']['created'] == 20
    for i, group in enumerate(groups):   # one member more for each: 20 independent member changes
        group['members'] = group['members'] + [entra_user(ids[(i + 3) % len(ids)], 'sid')]
    clean = in_ou(forest, groups, reference_ou, ad_write_connections=2)
    assert clean['summary']['updated'] == 20 and clean['summary']['errors'] == 0
    reference = end_state(directory, reference_ou)
    directory.close()

    before_outage = 6
    done = []
    lock = threading.Lock()
    real_modify = ADClient.modify
    connections = set()

    def modify_then_maybe_die(self, dn, changes, **kw):
        out = real_modify(self, dn, changes, **kw)
        with lock:
            connections.add(id(self))
            done.append(dn)
            if len(done) == before_outage:
                assert the_lab.stop_forest('corp'), 'the private DC was not running'
        return out
    monkeypatch.setattr(ADClient, 'modify', modify_then_maybe_die)
    with pytest.raises(CloudSyncError) as failure:
        in_ou(forest, groups, ou, ad_write_connections=2)
    monkeypatch.undo()
    err = failure.value
    assert err.details.get('changed') is True and forest.ip in err.msg and 'Traceback' not in err.msg, err.msg
    outcomes = [op.get('outcome') for op in err.details['plan']]
    sent, failed = outcomes.count('done'), outcomes.count('error')
    # the other connection's write in flight while the DC stopped may have made it or not
    assert len(outcomes) == 20 and before_outage <= sent <= before_outage + 1, outcomes
    assert 1 <= failed <= 2 and outcomes.count('not_run') == 20 - sent - failed, 'each connection stops after its write'
    assert len(connections) == 2, 'the member changes went over two connections'

    the_lab.start_forest('corp')
    directory = Directory(forest)
    try:
        recovered = in_ou(forest, groups, ou, ad_write_connections=2)
        assert recovered['summary']['errors'] == 0, recovered['groups']
        # a write that failed as the DC stopped may have been committed first
        assert 20 - sent - failed <= recovered['summary']['updated'] <= 20 - sent, recovered['summary']
        assert end_state(directory, ou) == reference, 'after the outage the end state differs from a clean run'
        assert in_ou(forest, groups, ou, ad_write_connections=2)['changed'] is False
    finally:
        directory.close()


class SlowProxy(object):
    """A TCP relay on the DC's own address (another port, so its certificate still names the host
    connected to) that holds every chunk for ``delay`` seconds: a slow WAN link to the DC. TLS
    stays end to end; the relay sees only ciphertext."""

    def __init__(self, ip, port, delay=0.03):
        self.target = (ip, port)
        self.delay = delay
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((ip, 0))
        self.sock.listen(16)
        self.address = '%s:%d' % (ip, self.sock.getsockname()[1])
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                client, _peer = self.sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src, dst):
        import time
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                time.sleep(self.delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.sock.close()


def test_dc_stopped_during_an_ansible_run_is_a_failed_task_naming_the_server_not_a_traceback(rel, tmp_path):
    """As users see it: ansible-playbook runs ad_group_writeback (through a slow link, so the run
    is still creating groups) while the DC is stopped; the task fails cleanly and a rerun after
    the DC is back converges without duplicates."""
    import time
    the_lab, forest, directory, sandbox = rel
    ou = sandbox('ansible-outage')
    groups = many_groups(forest, 40, 'Ansible outage')
    proxy = SlowProxy(forest.ip, 636)
    play = json.dumps([{'hosts': 'localhost', 'gather_facts': False, 'tasks': [
        {'name': 'writeback', 'hybrid_identity.cloud_sync.ad_group_writeback': {
            'domain_controllers': [proxy.address], 'ad_ca_file': forest.ca_file, 'ad_user': forest.admin_upn,
            'entra_groups': groups, 'target_ou': ou, 'search_base': ou, 'ad_timeout': 5},
         'register': 'r', 'ignore_errors': True},
        {'name': 'save', 'ansible.builtin.copy': {'content': '{{ r | to_json }}', 'dest': '{results}', 'mode': '0600'}}]}])
    stopped = []

    def stop_when_creating():
        watcher = Directory(forest)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if len(groups_in(watcher, ou)) >= 3:
                    stopped.append(the_lab.stop_forest('corp'))
                    return
                time.sleep(0.05)
        finally:
            try:
                watcher.close()
            except Exception:  # pylint: disable=broad-except
                pass
    thread = threading.Thread(target=stop_when_creating, daemon=True)
    thread.start()
    try:
        rc, output, saved = run_playbook(play, tmp_path, env={'CLOUDSYNC_AD_PASSWORD': forest.admin_password})
    finally:
        thread.join(130)
        proxy.close()
    assert stopped == [True], 'the DC was not stopped while the run was creating groups'
    assert saved is not None, output[-3000:]
    assert saved.get('failed') is True, 'the run ended before the DC stopped: %r' % saved.get('summary')
    assert proxy.address in saved['msg'] and 'failed' in saved['msg'], saved['msg']
    assert 'Traceback' not in output and 'Traceback' not in str(saved.get('exception', '')), output[-3000:]
    assert 'unexpectedly' not in saved['msg'], 'a lost DC must be a handled ADError, not an unexpected exception'

    the_lab.start_forest('corp')
    fresh = Directory(forest)
    try:
        partial = end_state(fresh, ou)  # asserts no anchor twice
        assert 3 <= len(partial) < len(groups)
        assert set(partial) <= set('Group_' + g['id'] for g in groups)
        recovered = in_ou(forest, groups, ou)
        assert recovered['summary']['errors'] == 0 and recovered['summary']['created'] == len(groups) - len(partial)
        assert len(end_state(fresh, ou)) == len(groups)
    finally:
        fresh.close()


def test_unreachable_first_dc_fails_over_to_the_live_one_and_stays_there(rel):
    _lab, forest, directory, sandbox = rel
    ou = sandbox('failover')
    dead = Listener('127.0.0.99')  # a DC whose LDAPS service is broken: accepts, then hangs up
    groups = many_groups(forest, 6, 'Failover')
    try:
        result = in_ou(forest, groups, ou, domain_controllers=['127.0.0.99', dead.address, forest.ip])
    finally:
        dead.close()
    assert result['domain_controller'] == '%s:636 (ldaps)' % forest.ip
    assert result['summary']['created'] == 6 and result['summary']['errors'] == 0
    assert result['ldap_operations']['adds'] == 6 and result['ldap_operations']['searches'] > 3
    assert dead.connections == 1, 'the broken DC was contacted %d times: the run must stay on the live DC' % dead.connections
    assert len(groups_in(directory, ou)) == 6


def test_every_dc_unreachable_is_one_clear_error_naming_each(rel):
    _lab, forest, _directory, sandbox = rel
    ou = sandbox('nodc')
    with pytest.raises(ADError) as failure:
        in_ou(forest, many_groups(forest, 1, 'Nowhere'), ou, domain_controllers=['127.0.0.98', '127.0.0.99'])
    msg = failure.value.msg
    assert 'Could not connect to any domain controller' in msg
    assert '127.0.0.98:636 (ldaps): open failed: connection refused' in msg
    assert '127.0.0.99:636 (ldaps): open failed: connection refused' in msg


@pytest.fixture(scope='module')
def second_dc(private_lab):
    """A second DC joined to the private forest (tests/lab/second_dc.py), running on SECOND_DC_IP."""
    the_lab, _forest = private_lab
    the_lab.start_forest('corp')
    try:
        dc2 = SecondDC(the_lab, 'corp', ip=SECOND_DC_IP).join().start()
    except (LabError, OSError) as exc:
        pytest.fail('the second DC could not be joined or started: %s' % exc, pytrace=False)
    yield dc2
    dc2.stop()


def test_first_dc_down_run_goes_to_the_joined_second_dc_and_both_converge_after_replication(rel, second_dc):
    """A real two-DC domain: with the first DC stopped the run fails over to the second, whose
    changes, once replicated back, leave both DCs holding one group per anchor and nothing to do."""
    the_lab, forest, directory, sandbox = rel
    dcs = [forest.ip, second_dc.ip]
    ou = sandbox('twodc')
    groups = many_groups(forest, 4, 'TwoDC')
    first_run = in_ou(forest, groups, ou, domain_controllers=dcs)
    assert first_run['domain_controller'] == '%s:636 (ldaps)' % forest.ip
    second_dc.replicate_from_first()
    on_dc2 = dataclasses.replace(forest, ip=second_dc.ip)
    dc2_dir = Directory(on_dc2)
    try:
        assert end_state(dc2_dir, ou) == end_state(directory, ou), 'the second DC holds what the first wrote'
    finally:
        dc2_dir.close()
    directory.close()

    ids = forest.identities
    changed = [dict(g) for g in groups] + many_groups(forest, 1, 'TwoDC late')
    changed[0]['members'] = [entra_user(ids[30])]
    assert the_lab.stop_forest('corp')
    during = in_ou(forest, changed, ou, domain_controllers=dcs)
    assert during['domain_controller'] == '%s:636 (ldaps)' % second_dc.ip
    assert during['summary']['created'] == 1 and during['summary']['errors'] == 0
    assert during['summary']['members_removed'] == 2, during['summary']

    the_lab.start_forest('corp')
    second_dc.push_to_first()
    directory = Directory(forest)
    dc2_dir = Directory(on_dc2)
    try:
        state = end_state(directory, ou)
        assert state == end_state(dc2_dir, ou)
        assert len(state) == 5
        assert state['Group_' + changed[0]['id']][5] == (dn_key(ids[30]['dn']),)
    finally:
        dc2_dir.close()
        directory.close()
    again = in_ou(forest, changed, ou, domain_controllers=dcs)
    assert again['domain_controller'] == '%s:636 (ldaps)' % forest.ip
    assert again['changed'] is False


WORKER = r'''
import json, sys, time
sys.path[:0] = [sys.argv[1], sys.argv[2]]
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.writeback import run_writeback
params = json.load(open(sys.argv[3]))
start_at = float(sys.argv[4])
while time.time() < start_at:
    time.sleep(0.005)
try:
    result = run_writeback(params)
    print(json.dumps({"summary": result["summary"], "groups": [[g["id"], g["action"]] for g in result["groups"]]}))
except Exception as exc:
    print(json.dumps({"error": "%s: %s" % (type(exc).__name__, exc)}))
'''


def test_parallel_processes_writing_back_the_same_groups_make_no_duplicate(rel, tmp_path):
    """Four processes (as four Ansible forks or four controllers would) start the same run at the
    same instant; each plans creates for all groups, so most creates collide."""
    _lab, forest, directory, sandbox = rel
    ou = sandbox('race')
    groups = many_groups(forest, 12, 'Race')
    processes = 4
    script = tmp_path / 'worker.py'
    script.write_text(WORKER)
    import time
    start_at = time.time() + 3.0  # every interpreter is up and has planned by then
    procs = []
    for n in range(processes):
        ordered = groups[n * 3:] + groups[:n * 3]  # each process begins with different groups
        params_file = tmp_path / ('params-%d.json' % n)
        params_file.write_text(json.dumps(writeback_params(forest, ordered, target_ou=ou, search_base=ou)))
        procs.append(subprocess.Popen(
            [sys.executable, str(script), str(os.path.join(ROOT, '.build', 'collections')), str(os.path.join(ROOT, 'tests')),
             str(params_file), repr(start_at)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    for proc in procs:
        out, errtext = proc.communicate(timeout=300)
        assert proc.returncode == 0, errtext[-2000:]
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    assert [o.get('error') for o in outputs] == [None] * processes, outputs
    assert all(o['summary']['errors'] == 0 for o in outputs), outputs
    created = sum(o['summary']['created'] for o in outputs)
    assert created >= len(groups), 'each group was planned as a create by at least one run'
    state = end_state(directory, ou)  # asserts no anchor twice
    assert sorted(state) == sorted('Group_' + g['id'] for g in groups)
    ids = forest.identities
    for i, group in enumerate(groups):
        members = state['Group_' + group['id']][5]
        assert members == tuple(sorted([dn_key(ids[i % len(ids)]['dn']), dn_key(ids[(i + 7) % len(ids)]['dn'])]))
    assert in_ou(forest, groups, ou)['changed'] is False
