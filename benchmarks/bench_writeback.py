#!/usr/bin/env python
"""Benchmark of ad_group_writeback at scale, side by side with the floor and the peer.

    .venv/bin/python benchmarks/bench_writeback.py --size small|large [--peer auto|yes|no] [--keep]

What it does (README "Performance" describes the figures):

1. the lab's corp forest, seeded with the size's synced users (``lab.py seed``: created once,
   reused between runs), and a tenant generated from those users (``emulator/generate.py``:
   2,000 groups, 20,000 synced users, ~200,000 memberships, a 50,000-member group, nesting 3
   deep for ``large``), served by the Graph emulator in its own process (throttling off: the
   figures are about the client, not Graph's rate limits);
2. the scenarios, each a separate process running the real module file
   (``plugins/modules/ad_group_writeback.py <args.json>``, as Ansible runs it): wall time, Graph
   requests (the module's count and the emulator's), LDAP operations (the module's ``ADClient``
   counters), peak RSS of that process (``wait4`` rusage);
3. the floor: ``floor.py`` sends exactly the LDAP writes of the first run (the check-mode plan,
   member lists known) with raw ldap3;
4. the peer: ``peer/read_groups.py`` (msgraph-sdk) then ``peer/playbook.yml``
   (community.general.ldap_entry / ldap_attrs, one task per group) through ansible-playbook.

Groups go to OU=Bench (the module), OU=BenchFloor and OU=BenchPeer of corp, emptied before
each run. ``--floor-cleanup snapshot`` (the default for xlarge) removes the floor's groups, and at
the end the module's, by restoring a lab snapshot of corp taken before the floor's writes instead
of a tree delete (untimed; the DC is stopped and started). Results: a table on stdout and
``benchmarks/results/<size>-<UTC time>.json``.
Benchmarks print figures; they never assert on time.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import datetime
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, 'benchmarks')
COLLECTIONS = os.path.join(ROOT, '.build', 'collections')
PY = os.path.join(ROOT, '.venv', 'bin', 'python')
for _p in (COLLECTIONS, os.path.join(ROOT, 'tests'), BENCH):
    if _p not in sys.path:
        sys.path.insert(0, _p)

_LINK = os.path.join(COLLECTIONS, 'ansible_collections', 'hybrid_identity', 'cloud_sync')
if not os.path.exists(_LINK):
    os.makedirs(os.path.dirname(_LINK), exist_ok=True)
    os.symlink(ROOT, _LINK)

from emulator.process import EmulatorProcess, requests_between  # noqa: E402


def variant_collections(checkout):
    """A collections path whose hybrid_identity.cloud_sync is ``checkout`` (another checkout of this
    repository, e.g. a ``git worktree`` of an earlier commit): ``--variant`` runs its module."""
    path = os.path.join(ROOT, '.build', 'variant-collections')
    link = os.path.join(path, 'ansible_collections', 'hybrid_identity', 'cloud_sync')
    os.makedirs(os.path.dirname(link), exist_ok=True)
    if os.path.islink(link) and os.path.realpath(link) != os.path.realpath(checkout):
        os.unlink(link)
    if not os.path.exists(link):
        os.symlink(os.path.abspath(checkout), link)
    return path


SIZES = {
    # synced users come from the lab (created once); users = synced + ~10% cloud-only.
    'small': dict(groups=100, synced=1000, users=1100, memberships=5000, big=2000, depth=3, seed=7),
    'large': dict(groups=2000, synced=20000, users=22000, memberships=200000, big=50000, depth=3, seed=7),
    # Cloud Sync's published limit for all mode (20,000 groups): issue 12's memory and slope target.
    'xlarge': dict(groups=20000, synced=200000, users=220000, memberships=2000000, big=50000, depth=3, seed=7),
}
# The module's ad_timeout by size. At xlarge the lab's DC, busy with the first run, once took more
# than 60 s to answer one 5,000-value member add to a group of 23,000
# (xlarge-20261207T112410Z.json): the first run stopped there. ad_timeout's documentation tells
# users of such tenants to raise it; the benchmark does what it says.
AD_TIMEOUT = {'small': 60, 'large': 60, 'xlarge': 900}
RUN_OPTIONS = {}   # set by main(): options every module run gets (ad_timeout for the size)
MODULE = os.path.join(ROOT, 'plugins', 'modules', 'ad_group_writeback.py')
SUMMARY_KEYS = ('created', 'updated', 'renamed', 'deleted', 'unchanged', 'skipped', 'errors', 'members_added',
                'members_removed', 'unresolved_members')


def log(msg):
    sys.stderr.write('[bench %s] %s\n' % (time.strftime('%H:%M:%S'), msg))
    sys.stderr.flush()


# --------------------------------------------------------------------------- processes
def run_measured(argv, env=None, stdout_path=None, timeout=None):
    """Run ``argv``; returns (rc, wall seconds, peak RSS MB, stdout text). Peak RSS: VmHWM of a
    Python script run through hwm.py; for anything else ``ru_maxrss`` from wait4 on this child
    (which includes the driver's size at fork: an upper bound)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    hwm_file = None
    if argv[0] == PY and len(argv) > 1 and argv[1].endswith('.py'):
        # Peak RSS of the script's own address space (see hwm.py for why not ru_maxrss).
        fd, hwm_file = tempfile.mkstemp(prefix='bench-hwm-', suffix='.json')
        os.close(fd)
        full_env['BENCH_HWM_FILE'] = hwm_file
        argv = [PY, os.path.join(BENCH, 'hwm.py')] + list(argv[1:])
    out = open(stdout_path, 'w+') if stdout_path else tempfile.TemporaryFile('w+')
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE, env=full_env, cwd=ROOT, text=True)
    deadline = None if timeout is None else start + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if deadline is not None and time.perf_counter() > deadline:
            proc.kill()
        time.sleep(0.02)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read()
    out.seek(0)
    text = out.read()
    out.close()
    if proc.returncode != 0 and err:
        log('stderr of %s:\n%s' % (os.path.basename(argv[2] if len(argv) > 2 else argv[0]), err[-3000:]))
    rss = usage.ru_maxrss / 1024.0
    if hwm_file:
        try:
            with open(hwm_file) as fh:
                rss = json.load(fh)['VmHWM']
        except (IOError, OSError, ValueError, KeyError):
            log('no VmHWM recorded for %s; ru_maxrss (an upper bound) is reported' % argv[2])
        os.unlink(hwm_file)
    return proc.returncode, wall, rss, text


# --------------------------------------------------------------------------- AD
def ad_params(forest):
    return dict(domain_controllers=[forest.ip], ad_tls_mode='ldaps', ad_allow_plaintext=False, ad_ca_file=forest.ca_file,
                ad_validate_certs=True, ad_auth='simple', ad_user=forest.admin_upn, ad_password=forest.admin_password,
                ad_port=None, global_catalog=None, ad_timeout=60, ad_page_size=1000)


def admin_client(forest):
    """Set-up and clean-up connection: a tree delete of 2,000 groups and 100,000+ links takes
    Samba minutes, so the timeout is long."""
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_client import ADClient
    params = ad_params(forest)
    params['ad_timeout'] = 1800
    return ADClient(params).connect()


def existing_ou(forest, name):
    """OU=<name> under the domain, made if missing, kept as it is otherwise; its DN."""
    dn = 'OU=%s,%s' % (name, forest.base_dn)
    client = admin_client(forest)
    try:
        if client.get(dn, ['distinguishedName']) is None:
            client.add(dn, {'objectClass': 'organizationalUnit'})
    finally:
        client.close()
    return dn


def fresh_ou(forest, name):
    """Empty OU=<name> under the domain (deleting what a previous run left)."""
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_client import ADError
    dn = 'OU=%s,%s' % (name, forest.base_dn)
    for attempt in range(4):
        client = admin_client(forest)
        try:
            if client.get(dn, ['distinguishedName']) is not None:
                t = time.perf_counter()
                client.delete(dn, tree=True)
                log('emptied %s (%.1f s)' % (dn, time.perf_counter() - t))
            client.add(dn, {'objectClass': 'organizationalUnit'})
            return dn
        except ADError as exc:
            # The shared lab's DC may be restarted by a test meanwhile, or end a long tree delete.
            if attempt == 3:
                raise
            log('emptying %s failed (%s); retrying' % (dn, exc))
            time.sleep(10)
        finally:
            client.close()
    return dn


def count_groups(forest, ou_dn):
    client = admin_client(forest)
    try:
        groups = list(client.search(ou_dn, '(objectClass=group)', ['cn']))
        return len(groups)
    finally:
        client.close()


def count_group_tombstones(forest):
    """Deleted groups the DC still keeps (untimed). Samba does not use its uSNChanged index for the
    ``uSNChanged>=`` search the delta run makes (Windows does): every group object of the domain is
    looked at, tombstones included; at 41,500 tombstones (a lab after a day of benchmarks) that
    search took 0.39 s instead of 1 ms. Each benchmark deletes its groups again, so the count is
    printed and saved with the figures."""
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_changes import SHOW_DELETED
    client = admin_client(forest)
    try:
        return sum(1 for unused in client.search(forest.base_dn, '(&(objectClass=group)(isDeleted=TRUE))', ['1.1'],
                                                 controls=[SHOW_DELETED]))
    finally:
        client.close()


# --------------------------------------------------------------------------- Graph emulator

def start_emulator(tenant_path, work):
    """The Graph emulator in its own process (so it is not measured as part of the module)."""
    return EmulatorProcess(['--tenant', tenant_path, '--no-throttle'], work, python=PY, timeout=300)


# --------------------------------------------------------------------------- scenarios
def module_args(forest, emu, target_ou, state_path, check, extra=None):
    from emulator.fixtures import CLIENT_ID, CLIENT_SECRET, TENANT_ID
    args = ad_params(forest)
    args.update(
        all_groups=True, target_ou=target_ou, search_base=target_ou, membership='authoritative', prune=True,
        deletion_threshold=500, max_members=50000,
        tenant_id=TENANT_ID, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, auth_method='client_secret',
        authority_host=emu.info['authority_url'], graph_endpoint=emu.info['base_url'],
        graph_ca_bundle=emu.info['ca_file'],
        _ansible_check_mode=check, _ansible_diff=False,
    )
    if state_path:
        args['delta_state_path'] = state_path
    args.update(RUN_OPTIONS)
    args.update(extra or {})
    args = dict((k, v) for k, v in args.items() if v is not None)
    return {'ANSIBLE_MODULE_ARGS': args}


def run_scenario(name, forest, emu, work, target_ou, state_path, check, profile=None, extra=None, timeline=False,
                 stop_after=None, variant=None):
    """One module run as a whole process; ``variant``: another checkout whose module is run instead
    (see variant_collections)."""
    args_path = os.path.join(work, 'args-%s.json' % name)
    with open(args_path, 'w') as fh:
        json.dump(module_args(forest, emu, target_ou, state_path, check, extra), fh)
    env = {'PYTHONPATH': variant_collections(variant) if variant else COLLECTIONS, 'REQUESTS_CA_BUNDLE': ''}
    module = os.path.join(os.path.abspath(variant), 'plugins', 'modules', 'ad_group_writeback.py') if variant else MODULE
    argv = [PY, module, args_path]
    if profile:
        argv = [PY, '-m', 'cProfile', '-o', os.path.join(work, 'profile-%s.pstats' % name), module, args_path]
    if timeline:
        argv = [PY, os.path.join(BENCH, 'timeline.py'), '--out', timeline_path(work, name), module, args_path]
    if stop_after is not None:
        argv = [PY, os.path.join(BENCH, 'stop_after.py'), str(stop_after), module, args_path]
    before = emu.counters()
    rc, wall, rss, text = run_measured(argv, env=env, stdout_path=os.path.join(work, 'result-%s.json' % name))
    after = emu.counters()
    try:
        result = json.loads(text[text.index('{'):])
    except ValueError:
        result = {'failed': True, 'msg': text[-2000:]}
    if rc != 0 or result.get('failed'):
        log('%s FAILED (rc %s): %s' % (name, rc, str(result.get('msg'))[:2000]))
    ops = result.get('ldap_operations') or {}
    summary = result.get('summary') or {}
    row = dict(
        scenario=name, check_mode=check, ok=(rc == 0 and not result.get('failed')), wall_s=round(wall, 3),
        graph_requests=result.get('graph_requests'), graph_http=requests_between(before, after),
        ldap=dict(searches=ops.get('searches', 0), adds=ops.get('adds', 0), modifies=ops.get('modifies', 0),
                  deletes=ops.get('deletes', 0), modify_dns=ops.get('modify_dns', ops.get('renames', 0))),
        ldap_raw=ops, peak_rss_mb=round(rss, 1), changed=result.get('changed'), result_bytes=len(text),
        summary=dict((k, summary.get(k)) for k in SUMMARY_KEYS),
        plan_ops=len(result.get('plan') or []), written_early=result.get('written_early'),
    )
    log('%-18s %7.2f s  graph %s  ldap %s  rss %.0f MB  %s%s' % (
        name, wall, row['graph_http'], row['ldap'], rss, row['summary'],
        '  written early %s' % row['written_early'] if row['written_early'] else ''))
    return row, result


def mutate(emu, tenant, fraction, seed):
    """Change ``fraction`` of the groups (rename) and of the memberships (half removed, half
    added) in Entra through the emulator's admin API. Returns what was done."""
    rng = random.Random(seed)
    groups = [g for g in tenant['groups'] if g.get('securityEnabled') and not g.get('mailEnabled')
              and not g.get('groupTypes') and not g.get('onPremisesSyncEnabled')]
    n_groups = max(1, int(len(tenant['groups']) * fraction))
    renamed = rng.sample(groups, min(n_groups, len(groups)))
    for g in renamed:
        emu.admin.update_group(g['id'], displayName=g['displayName'] + ' (renamed)')
    memberships = tenant['memberships']
    total = sum(len(v) for v in memberships.values())
    n_members = max(2, int(total * fraction))
    synced = [u['id'] for u in tenant['users'] if u.get('onPremisesSyncEnabled')]
    eligible_ids = [g['id'] for g in groups]
    removals, additions = {}, {}
    pairs = [(gid, m) for gid in eligible_ids for m in memberships.get(gid, ())]
    for gid, m in rng.sample(pairs, min(n_members // 2, len(pairs))):
        removals.setdefault(gid, []).append(m)
    added = 0
    while added < n_members - n_members // 2:
        gid = rng.choice(eligible_ids)
        uid = rng.choice(synced)
        have = set(memberships.get(gid, ())) | set(additions.get(gid, ()))
        if uid in have:
            continue
        additions.setdefault(gid, []).append(uid)
        added += 1
    for gid, ids in removals.items():
        emu.admin.remove_members(gid, ids)
    for gid, ids in additions.items():
        emu.admin.add_members(gid, ids)
    return dict(groups_renamed=len(renamed), memberships_removed=sum(len(v) for v in removals.values()),
                memberships_added=added, memberships_total=total)


# --------------------------------------------------------------------------- baselines
def _floor_script(forest, plan_path, floor_ou, out, connections=1):
    return run_measured([PY, os.path.join(BENCH, 'floor.py'), '--plan', plan_path, '--from-ou',
                         'OU=Bench,' + forest.base_dn, '--to-ou', floor_ou, '--server', forest.ip,
                         '--ca-file', forest.ca_file, '--user', forest.admin_upn,
                         '--password-env', 'BENCH_AD_PASSWORD', '--out', out, '--connections', str(connections)],
                        env={'BENCH_AD_PASSWORD': forest.admin_password})


def floor_snapshot_name(name):
    """The lab snapshot taken before a floor's writes (``--floor-cleanup snapshot``)."""
    return 'bench-before-' + name.replace(' ', '-')


def lab_snapshot(lab, forest, snapshot, restore=False):
    """Untimed: ``lab.py snapshot``/``restore`` of the forest (stop the DC, copy its folder, start
    it), then ``sync``. Returns the seconds it took.

    The copy leaves the DC's folder (878 MB at the large benchmark) as dirty pages that the kernel
    writes back over the next half minute, while the timed run that follows makes the DC commit
    its writes: the same incremental floor took 4.91 s in one pair and 7.20-8.01 s in the four
    others of one run (``large-20261207T204009Z.json``). Flushed first, each timed run starts
    with the disk idle."""
    t = time.perf_counter()
    (lab.restore if restore else lab.snapshot)(forest.name, snapshot)
    os.sync()
    seconds = time.perf_counter() - t
    log('%s lab snapshot %s of %s (untimed): %.1f s' % ('restored' if restore else 'took', snapshot, forest.name, seconds))
    return seconds


def run_floor(forest, plan_path, work, name='floor', base_plan=None, cleanup='delete', lab=None, in_place=False,
              connections=1):
    """Time floor.py writing ``plan_path`` into OU=BenchFloor. With ``base_plan`` (the first run's
    plan) the OU is first given, untimed, the groups that plan creates: the floor of an incremental
    run is its writes replayed onto the same groups.

    ``in_place``: the writes go to the module's own groups in OU=Bench instead, between a lab
    snapshot and its restore (``cleanup`` must be ``snapshot``): the floor of an incremental run then
    writes on the directory exactly as the module's run finds it. A copy in OU=BenchFloor doubles
    every user's memberOf backlinks while the floor writes (see the README).

    ``cleanup``: how the floor's groups go afterwards, untimed. ``delete``: an LDAP tree delete of
    OU=BenchFloor. ``snapshot``: a lab snapshot of the forest taken before the floor's writes and
    restored once its groups are counted (Samba's tree delete of the xlarge floor, 17,000 groups
    with 1.9M memberOf backlinks, does not finish)."""
    if in_place and (cleanup != 'snapshot' or base_plan):
        raise ValueError('run_floor: in_place writes over the module\'s groups: a snapshot restores them, no copy is made')
    floor_ou = 'OU=Bench,' + forest.base_dn if in_place else fresh_ou(forest, 'BenchFloor')
    untimed = {}
    if cleanup == 'snapshot':
        untimed['snapshot_s'] = round(lab_snapshot(lab, forest, floor_snapshot_name(name)), 3)
    if base_plan:
        _floor_script(forest, base_plan, floor_ou, os.path.join(work, '%s-base.json' % name), connections)
    out = os.path.join(work, '%s.json' % name)
    rc, wall, rss, unused_text = _floor_script(forest, plan_path, floor_ou, out, connections)
    data = json.load(open(out)) if os.path.exists(out) else {}
    groups_in_ad = count_groups(forest, floor_ou)
    # Samba keeps each user's memberOf backlinks in the user's record: leaving the floor's 100,000+
    # links in place would make the module's runs pay for twice as many. Removed, untimed.
    if cleanup == 'snapshot':
        untimed['restore_s'] = round(lab_snapshot(lab, forest, floor_snapshot_name(name), restore=True), 3)
    else:
        t = time.perf_counter()
        fresh_ou(forest, 'BenchFloor')
        untimed['delete_s'] = round(time.perf_counter() - t, 3)
    # The floor is the whole script (interpreter start, bind, writes), as the module is measured
    # as a whole process; write_s is the bind and the writes alone.
    row = dict(scenario=name, ok=rc == 0, wall_s=round(wall, 3), write_s=round(data.get('write_s', 0), 3),
               ldap=dict(searches=0, adds=data.get('adds', 0), modifies=data.get('modifies', 0), deletes=data.get('deletes', 0),
                         modify_dns=data.get('modify_dns', 0)),
               graph_requests=0, peak_rss_mb=round(rss, 1), groups_in_ad=groups_in_ad, cleanup=cleanup,
               cleanup_untimed=untimed, in_place=bool(in_place))
    log('%-18s %7.2f s (bind and writes %.2f s)  ldap %s  rss %.0f MB' % (
        name, wall, row['write_s'], row['ldap'], rss))
    return row


def back_to_start(lab, forest, snapshot, work, state):
    """corp as the snapshot taken before the run's first write, and no delta state (files beside it too)."""
    lab_snapshot(lab, forest, snapshot, restore=True)
    for name in os.listdir(work):
        if name.startswith(os.path.basename(state)):
            os.unlink(os.path.join(work, name))


def timeline_path(work, name):
    """Where ``benchmarks/timeline.py`` saves the timeline of scenario ``name``."""
    return os.path.join(work, 'timeline-%s.json' % name.replace(' ', '-').replace('(', '').replace(')', ''))


def read_timeline(work, name):
    """The timeline ``benchmarks/timeline.py`` saved for scenario ``name``, printed."""
    data = json.load(open(timeline_path(work, name)))
    sys.path.insert(0, BENCH)
    from timeline import format_timeline
    log('timeline of %s:\n%s' % (name, format_timeline(data)))
    return data


def keep_incremental_start(lab, forest, work, state):
    """Before a repeated incremental scenario: a lab snapshot of corp and a copy of the delta state
    files. Returns the function that puts both back (untimed) before each run after the first, so
    every run does the same writes (the emulator's delta answers the same)."""
    kept = os.path.join(work, 'before-incremental')
    lab_snapshot(lab, forest, 'bench-before-incremental')
    if os.path.isdir(kept):
        shutil.rmtree(kept)
    os.makedirs(kept)
    for name in os.listdir(work):
        if name.startswith(os.path.basename(state)):
            shutil.copy2(os.path.join(work, name), kept)

    def restore():
        lab_snapshot(lab, forest, 'bench-before-incremental', restore=True)
        for name in os.listdir(kept):
            shutil.copy2(os.path.join(kept, name), work)
    return restore


def run_peer(forest, emu, work, timeout):
    from emulator.fixtures import CLIENT_ID, CLIENT_SECRET, TENANT_ID
    peer_ou = fresh_ou(forest, 'BenchPeer')
    vars_path = os.path.join(work, 'peer-groups.json')
    before = emu.counters()
    rc1, wall1, rss1, unused_out = run_measured(
        [PY, os.path.join(BENCH, 'peer', 'read_groups.py'), '--emulator-info', emu.state_file, '--ou', peer_ou,
         '--out', vars_path],
        env={'PYTHONPATH': os.path.join(ROOT, 'tests'), 'BENCH_TENANT_ID': TENANT_ID, 'BENCH_CLIENT_ID': CLIENT_ID,
             'BENCH_CLIENT_SECRET': CLIENT_SECRET})
    after = emu.counters()
    log('peer read (msgraph-sdk)  %.2f s  rc %s  graph %s  rss %.0f MB' % (wall1, rc1, requests_between(before, after), rss1))
    env = {
        'ANSIBLE_COLLECTIONS_PATH': os.path.join(ROOT, '.build', 'peer_collections'),
        'ANSIBLE_HOST_KEY_CHECKING': 'false', 'ANSIBLE_RETRY_FILES_ENABLED': 'false',
        'ANSIBLE_LOCALHOST_WARNING': 'false', 'ANSIBLE_INVENTORY_UNPARSED_WARNING': 'false', 'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_PYTHON_INTERPRETER': PY, 'ANSIBLE_CALLBACK_RESULT_FORMAT': 'yaml', 'ANSIBLE_DISPLAY_OK_HOSTS': 'false',
        'ANSIBLE_DISPLAY_SKIPPED_HOSTS': 'false',
        'BENCH_LDAP_URI': forest.ldaps_url(), 'BENCH_BIND_DN': forest.admin_dn, 'BENCH_BIND_PW': forest.admin_password,
        'BENCH_CA_FILE': forest.ca_file,
    }
    rc2, wall2, rss2, text = run_measured(
        [os.path.join(ROOT, '.venv', 'bin', 'ansible-playbook'), '-i', 'localhost,', '-c', 'local',
         os.path.join(BENCH, 'peer', 'playbook.yml'), '-e', '@' + vars_path],
        env=env, stdout_path=os.path.join(work, 'peer-playbook.log'), timeout=timeout)
    recap = text[text.rfind('PLAY RECAP'):].strip() if 'PLAY RECAP' in text else text[-1500:]
    ngroups = len(json.load(open(vars_path)).get('peer_groups', [])) if os.path.exists(vars_path) else 0
    row = dict(scenario='peer', ok=(rc1 == 0 and rc2 == 0), wall_s=round(wall1 + wall2, 3), read_s=round(wall1, 3),
               write_s=round(wall2, 3), graph_http=requests_between(before, after), groups=ngroups,
               groups_in_ad=count_groups(forest, peer_ou), peak_rss_mb=round(max(rss1, rss2), 1),
               timed_out=(timeout is not None and wall2 >= timeout), recap=recap)
    log('peer write (ansible ldap_entry/ldap_attrs)  %.2f s  rc %s  %s' % (wall2, rc2, recap.replace('\n', ' ')[:300]))
    return row


# --------------------------------------------------------------------------- tenant
def build_tenant(size, forest, work):
    from emulator.fixtures import build_tenant as gen
    spec = SIZES[size]
    path = os.path.join(work, 'tenant.json')
    identities = forest.identities[:spec['synced']]
    if len(identities) < spec['synced']:
        raise SystemExit('the lab has %d users, %d needed: run lab.py seed --users %d'
                         % (len(forest.identities), spec['synced'], spec['synced']))
    t = time.perf_counter()
    tenant = gen(groups=spec['groups'], users=spec['users'], memberships=spec['memberships'],
                 nesting_depth=spec['depth'], big_group_members=spec['big'], seed=spec['seed'], identities=identities)
    with open(path, 'w') as fh:
        json.dump(tenant, fh)
    memberships = sum(len(v) for v in tenant['memberships'].values())
    log('tenant: %d groups, %d users, %d memberships (generated in %.1f s)' % (
        len(tenant['groups']), len(tenant['users']), memberships, time.perf_counter() - t))
    return tenant, path


# --------------------------------------------------------------------------- report
def ratio(a, b):
    return round(a / b, 3) if a and b else None


def fastest(rows):
    """The fastest of ``rows`` (one scenario run several times), with every run's wall time (``wall_all_s``)."""
    row = min(rows, key=lambda r: r['wall_s'])
    row['wall_all_s'] = [r['wall_s'] for r in rows]
    return row


def table(rows, first_wall, floor_wall, peer_wall):
    head = '%-22s %9s %7s %9s %7s %6s %8s %7s %7s %8s %8s %8s' % (
        'scenario', 'wall s', 'graph', 'searches', 'adds', 'mods', 'deletes', 'RSS MB', 'x floor', 'x first',
        'peer/x', 'changed')
    lines = [head, '-' * len(head)]
    for r in rows:
        ldap = r.get('ldap') or {}
        graph = r.get('graph_http', {}).get('http', r.get('graph_requests', 0)) if isinstance(r.get('graph_http'), dict) \
            else r.get('graph_requests', 0)
        lines.append('%-22s %9.2f %7s %9s %7s %6s %8s %7s %7s %8s %8s %8s' % (
            r['scenario'] + ('' if r.get('ok', True) else ' (FAILED)'), r['wall_s'], graph, ldap.get('searches', '-'),
            ldap.get('adds', '-'), ldap.get('modifies', '-'), ldap.get('deletes', '-'), r.get('peak_rss_mb', '-'),
            ratio(r['wall_s'], floor_wall) or '-', ratio(r['wall_s'], first_wall) or '-',
            ratio(peer_wall, r['wall_s']) or '-', r.get('changed', '-')))
    return '\n'.join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    ap.add_argument('--size', choices=sorted(SIZES), default='small')
    ap.add_argument('--peer', choices=['auto', 'yes', 'no'], default='auto',
                    help='auto: run the peer on the small size only (it cannot finish the large one in reasonable time)')
    ap.add_argument('--peer-timeout', type=float, default=3600)
    ap.add_argument('--no-floor', action='store_true')
    ap.add_argument('--no-incremental', action='store_true',
                    help='stop after the no-op scenarios (xlarge: the incremental floor rebuilds every group once more)')
    ap.add_argument('--repeat', type=int, default=2, help='runs of each no-op scenario (the fastest is reported)')
    ap.add_argument('--profile', action='append', default=[], help='scenario name(s) to run under cProfile')
    ap.add_argument('--timeline', action='append', default=[],
                    help='scenario name(s) to run with a wall-clock timeline of their steps (benchmarks/timeline.py), '
                         'printed and saved with the results')
    ap.add_argument('--incremental-repeat', type=int, default=1,
                    help='runs of the incremental scenario and of its floor, alternated (floor, run, floor, run...), each '
                         'from the same lab snapshot and delta state (the fastest of each counts; all wall times and each '
                         'pair\'s ratio are kept)')
    ap.add_argument('--work', help='working directory (default .build/bench/<size>)')
    ap.add_argument('--variant', metavar='CHECKOUT',
                    help='another checkout of this repository (e.g. a git worktree of an earlier commit): after each '
                         'incremental run, and after each first run when the lab is snapshotted before it (a floor with '
                         '--floor-cleanup snapshot), its module runs the same scenario from the same start, so two '
                         'versions are compared pair by pair in one run of the machine (rows "... (variant)")')
    ap.add_argument('--incremental-floor', choices=['in-place', 'copy', 'both'], default='in-place',
                    help="where the incremental run's floor writes: over the module's own groups between a lab snapshot and "
                         "its restore (in-place, the directory as the module's run finds it), or onto a copy of them in "
                         "OU=BenchFloor (copy: every user's memberOf backlinks doubled meanwhile); both: the two, the "
                         "ratio against in-place")
    ap.add_argument('--floor-cleanup', choices=['delete', 'snapshot'],
                    help='how the floor\'s groups are removed, untimed: delete (an LDAP tree delete of OU=BenchFloor) or '
                         'snapshot (lab.py snapshot of corp before the floor\'s writes, restored after them: stops and starts '
                         'the DC, so never on a lab others are using). Default: snapshot for large and xlarge (the module\'s '
                         'first run then starts from the very database the floor started from: after a tree delete '
                         'the DC was slower by up to a third; and Samba\'s tree delete of 17,000 groups does not finish), '
                         'delete for small')
    ap.add_argument('--floor-connections', type=int, default=1, metavar='N',
                    help='connections floor.py spreads the independent writes over (default 1: the floor as issue 12 '
                         'defines it; the module writes them over ad_write_connections, 2 by default)')
    ap.add_argument('--first-repeat', type=int, default=1, metavar='N',
                    help='run the floor and the first run N times each, alternated (floor, first, floor, first...), '
                         'the lab restored to its start between pairs: the floor of this machine varies by a third '
                         'from one run to the next; the fastest of each is reported, and each pair\'s ratio '
                         '(needs --floor-cleanup snapshot)')
    ap.add_argument('--stopped-first', type=int, metavar='N',
                    help='before the first run, a first run whose DC stops answering after N writes '
                         '(benchmarks/stop_after.py): the size of a failure after writes (peak RSS, result bytes); '
                         'a lab snapshot taken before it (the floor\'s, or its own with --no-floor) is then restored')
    ap.add_argument('--keep', action='store_true',
                    help='leave the written groups in OU=Bench/OU=BenchPeer (default: emptied at the end, untimed, '
                         'so the shared lab does not carry 100,000+ links for other users)')
    args = ap.parse_args(argv)
    if args.floor_cleanup is None:
        args.floor_cleanup = 'delete' if args.size == 'small' else 'snapshot'
    if args.first_repeat > 1 and (args.no_floor or args.floor_cleanup != 'snapshot'):
        ap.error('--first-repeat alternates floors and first runs, restoring the lab between them: it needs the floor '
                 'and --floor-cleanup snapshot')
    if args.stopped_first is not None and not args.no_floor and args.floor_cleanup != 'snapshot':
        ap.error('--stopped-first restores a snapshot taken before any write of the run: with the floor, it needs '
                 '--floor-cleanup snapshot')

    from lab.lab import Lab
    lab = Lab()
    forest = lab.forest('corp')
    work = args.work or os.path.join(ROOT, '.build', 'bench', args.size)
    RUN_OPTIONS['ad_timeout'] = AD_TIMEOUT[args.size]
    os.makedirs(work, exist_ok=True)
    started = datetime.datetime.now(datetime.timezone.utc)
    tenant, tenant_path = build_tenant(args.size, forest, work)
    emu = start_emulator(tenant_path, work)
    rows, extra = [], {'module_ad_timeout': RUN_OPTIONS['ad_timeout']}
    timelines = {}
    start_snapshot = []
    try:
        target = fresh_ou(forest, 'Bench')
        state = os.path.join(work, 'delta-state.json')
        if os.path.exists(state):
            os.unlink(state)

        def scenario(name, check, state_path=state, repeat=1, before_next=None, after_each=None):
            """Run a scenario ``repeat`` times (only those that leave AD and the state as they found
            them, or with ``before_next`` putting them back before each run after the first); the
            fastest run is reported, every wall time is kept (the machine is shared). The last run's
            AD and state stay for the next scenario."""
            runs = []
            for index in range(repeat):
                if index and before_next is not None:
                    before_next()
                runs.append(run_scenario(name, forest, emu, work, target, state_path, check,
                                         profile=name in args.profile, timeline=name in args.timeline))
                if name in args.timeline:
                    timelines.setdefault(name, []).append(read_timeline(work, name))
                if after_each is not None:
                    after_each()
            summaries = set(json.dumps(r[0]['summary'], sort_keys=True) for r in runs)
            if len(summaries) > 1:
                log('%s: the repeated runs did not do the same: %s' % (name, sorted(summaries)))
            row, result = min(runs, key=lambda r: r[0]['wall_s'])
            row['wall_all_s'] = [r[0]['wall_s'] for r in runs]
            rows.append(row)
            return row, result

        def capture_plan(name, path, state_path=state):
            """The full plan (member_details: full; the module returns samples by default) of a check
            run, for the floor: an untimed extra run, not a row."""
            unused_row, result = run_scenario(name + ' (plan)', forest, emu, work, target, state_path, True,
                                              extra={'member_details': 'full'})
            with open(path, 'w') as fh:
                json.dump(result.get('plan') or [], fh)

        extra['group_tombstones_at_start'] = count_group_tombstones(forest)
        log('group tombstones in the domain: %d (see count_group_tombstones)' % extra['group_tombstones_at_start'])
        scenario('first (check)', True)
        plan_path = os.path.join(work, 'plan.json')
        floor_row = None
        if not args.no_floor:
            capture_plan('first', plan_path)   # the floor's writes
            floor_row = run_floor(forest, plan_path, work, cleanup=args.floor_cleanup, lab=lab,
                                  connections=args.floor_connections)
            if args.floor_cleanup == 'snapshot':
                start_snapshot.append(floor_snapshot_name('floor'))  # corp before any write of this run
        if args.stopped_first is not None:
            if not start_snapshot:
                # no floor (--no-floor): corp as it is before the stopped run's writes
                start_snapshot.append(floor_snapshot_name('stopped first'))
                extra['stopped_snapshot_s'] = round(lab_snapshot(lab, forest, start_snapshot[0]), 3)
            stopped, result = run_scenario('first (stopped)', forest, emu, work, target, state, False,
                                           stop_after=args.stopped_first)
            # it fails as designed: ok when it says what it wrote
            stopped['ok'] = bool(result.get('failed') and result.get('changed') and 'stop_after.py' in str(result.get('msg')))
            rows.append(stopped)
            back_to_start(lab, forest, start_snapshot[0], work, state)
        floors = [floor_row]

        def next_pair():
            # corp and the state as before the first run, then another floor (its own snapshot and restore)
            back_to_start(lab, forest, start_snapshot[0], work, state)
            floors.append(run_floor(forest, plan_path, work, cleanup=args.floor_cleanup, lab=lab,
                                    connections=args.floor_connections))

        def variant_after(name, back):
            """--variant: ``(runs, run)``; ``run`` puts the lab back (``back()``) and runs the other
            checkout's module on scenario ``name`` from the same start, its row added to ``runs``."""
            runs = []
            label = '%s (variant)' % name

            def run():
                back()
                runs.append(run_scenario(label, forest, emu, work, target, state, False,
                                         timeline=name in args.timeline, variant=args.variant)[0])
                if name in args.timeline:
                    timelines.setdefault(label, []).append(read_timeline(work, label))
            return runs, run

        def variant_rows(name, row, runs):
            """The variant's fastest run of scenario ``name`` as a row, and each pair's ratio against ``row``'s runs."""
            if not runs:
                return
            variant_row = fastest(runs)
            variant_row['variant'] = os.path.abspath(args.variant)
            rows.append(variant_row)
            key = '%s_x_variant_pairs' % name
            extra[key] = [ratio(m, v) for m, v in zip(row['wall_all_s'], variant_row['wall_all_s'])]
            log('%s run / variant\'s, pair by pair: %s' % (name, extra[key]))

        first_variant_runs, first_variant = variant_after('first', lambda: back_to_start(lab, forest, start_snapshot[0], work, state))
        first_row, _r = scenario('first', False, repeat=max(1, args.first_repeat), before_next=next_pair,
                                 after_each=first_variant if args.variant and start_snapshot else None)
        variant_rows('first', first_row, first_variant_runs)
        if len(floors) > 1:
            extra['first_x_floor_pairs'] = [ratio(f, fl['wall_s']) for f, fl in zip(first_row['wall_all_s'], floors)]
            floor_row = fastest(floors)
            log('first run / floor, pair by pair: %s' % extra['first_x_floor_pairs'])
        extra['groups_in_ad_after_first'] = count_groups(forest, target)
        # A no-op run leaves AD and the delta state as they were: repeated, the fastest counts.
        scenario('noop (check)', True, repeat=args.repeat)
        scenario('noop', False, repeat=args.repeat)
        scenario('noop full read (check)', True, state_path=None, repeat=args.repeat)
        scenario('noop full read', False, state_path=None, repeat=args.repeat)
        incr_floor = None
        if not args.no_incremental:
            extra['group_tombstones_at_incremental'] = count_group_tombstones(forest)
            extra['mutation'] = mutate(emu, tenant, 0.01, SIZES[args.size]['seed'])
            log('mutated Entra: %s' % extra['mutation'])
            scenario('incremental (check)', True)
            incr_plan = os.path.join(work, 'plan-incremental.json')
            if not args.no_floor:
                capture_plan('incremental', incr_plan)   # the floor's writes
                if args.incremental_floor in ('copy', 'both'):
                    copy_floor = run_floor(forest, incr_plan, work, name='floor incr. copy', base_plan=plan_path,
                                           cleanup=args.floor_cleanup, lab=lab, connections=args.floor_connections)
                    incr_floor = copy_floor
                if args.incremental_floor == 'both':
                    extra['floor_incremental_copy'] = copy_floor
            repeat = max(1, args.incremental_repeat)
            restore = keep_incremental_start(lab, forest, work, state) if repeat > 1 else None
            in_place = not args.no_floor and args.incremental_floor in ('in-place', 'both')
            incr_floors = []

            def incremental_floor():
                # Over the module's groups, between a snapshot and its restore: the lab as the module's run finds it.
                incr_floors.append(run_floor(forest, incr_plan, work, name='floor incremental', cleanup='snapshot', lab=lab,
                                             in_place=True, connections=args.floor_connections))

            def next_incremental_pair():
                # Alternated like the first runs' pairs (floor, run, floor, run...): the machine's speed drifts
                # over minutes, and N floors then N runs would give one side the faster minutes.
                restore()
                if in_place:
                    incremental_floor()
            if in_place:
                incremental_floor()
            if args.variant and restore is None:
                restore = keep_incremental_start(lab, forest, work, state)
            variant_runs, variant_run = variant_after('incremental', restore)
            incr_row, unused = scenario('incremental', False, repeat=repeat, before_next=next_incremental_pair,
                                        after_each=variant_run if args.variant else None)
            variant_rows('incremental', incr_row, variant_runs)
            if incr_floors:
                incr_floor = fastest(incr_floors)
                extra['incremental_x_floor_pairs'] = [ratio(m, fl['wall_s']) for m, fl in zip(incr_row['wall_all_s'], incr_floors)]
                log('incremental run / floor, pair by pair: %s' % extra['incremental_x_floor_pairs'])
            if incr_floor:
                extra['incremental_x_floor'] = ratio(incr_row['wall_s'], incr_floor['wall_s'])
            scenario('after incr. (check)', True)
        peer_row = None
        if args.peer == 'yes' or (args.peer == 'auto' and args.size == 'small'):
            peer_row = run_peer(forest, emu, work, args.peer_timeout)
    finally:
        emu.stop()
        if not args.keep and start_snapshot:
            # the module's groups go the floor's way too: corp as it was before the floor's writes
            extra['cleanup_restore_s'] = round(lab_snapshot(lab, forest, start_snapshot[0], restore=True), 3)
        elif not args.keep and args.floor_cleanup == 'snapshot':
            log('--floor-cleanup snapshot without a floor: the groups stay in OU=Bench (a tree delete of them may not '
                'finish); lab.py restore <a snapshot taken before> removes them')
        elif not args.keep:
            for name in ('Bench', 'BenchPeer'):
                fresh_ou(forest, name)

    floor_wall = floor_row['wall_s'] if floor_row else None
    peer_wall = peer_row['wall_s'] if peer_row else None
    all_rows = ([floor_row] if floor_row else []) + rows + ([incr_floor] if incr_floor else []) + \
        ([extra['floor_incremental_copy']] if extra.get('floor_incremental_copy') else []) + ([peer_row] if peer_row else [])
    text = table(all_rows, first_row['wall_s'], floor_wall, peer_wall)
    print('\nad_group_writeback benchmark, size %s (%s)' % (args.size, json.dumps(SIZES[args.size])))
    print(text)
    out_dir = os.path.join(BENCH, 'results')
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, '%s-%s.json' % (args.size, started.strftime('%Y%m%dT%H%M%SZ')))
    with open(out, 'w') as fh:
        json.dump(dict(size=args.size, spec=SIZES[args.size], started=started.isoformat(), rows=all_rows,
                       floor_cleanup=args.floor_cleanup, floor_connections=args.floor_connections,
                       first_wall_s=first_row['wall_s'], floor_wall_s=floor_wall, peer_wall_s=peer_wall,
                       cpus=os.cpu_count(), table=text, timelines=timelines, **extra), fh, indent=1)
    print('\nsaved %s' % os.path.relpath(out, ROOT))
    failed = [r['scenario'] for r in all_rows if not r.get('ok', True)]
    if failed:
        print('FAILED scenarios: %s' % ', '.join(failed))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
