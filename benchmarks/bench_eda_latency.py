#!/usr/bin/env python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Latency of event-driven writeback: from a membership change in Entra to the AD state.

    .venv/bin/python benchmarks/bench_eda_latency.py [--changes 20] [--poll-interval 5] [--idle 60]

What it does:

1. a tenant of the lab's corp users (synced users with the AD identifiers) and one cloud
   security group, served by the Graph emulator over HTTPS in its own process (default
   settings, throttling on); the group is written back once into OU=EDABench of corp;
2. the real ``ansible-rulebook`` runs the collection's rulebook
   ``hybrid_identity.cloud_sync.group_writeback`` (source ``entra_group_changes`` polling every
   ``--poll-interval`` seconds, playbook ``eda_writeback`` writing the batch's groups back);
3. ``--changes`` times: a user is added to (or removed from) the group through the emulator's
   admin API, then AD is read every 0.1 s until the group's ``member`` shows it: the latency
   is from just before the admin call to the first AD read that shows the change. Between two
   changes a random pause of 0..poll interval puts the changes at random points of the poll
   cycle;
4. ``--idle`` seconds without changes: the Graph requests the emulator served meanwhile (per
   minute, delta requests apart, tokens apart).

Prints p50, p95, max of the latency and the idle request rate, and saves them to
``benchmarks/results/eda-latency-<UTC time>.json``. Benchmarks print figures; they never
assert on time. Cloud Sync's own cycle, for comparison, is 20 minutes
(https://learn.microsoft.com/entra/identity/hybrid/cloud-sync/what-is-provisioning-agent).
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import datetime
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTIONS = os.path.join(ROOT, '.build', 'collections')
VENV_BIN = os.path.join(ROOT, '.venv', 'bin')
PY = os.path.join(VENV_BIN, 'python')
for _p in (COLLECTIONS, os.path.join(ROOT, 'tests'), os.path.join(ROOT, 'tests', 'integration')):
    if _p not in sys.path:
        sys.path.insert(0, _p)
_LINK = os.path.join(COLLECTIONS, 'ansible_collections', 'hybrid_identity', 'cloud_sync')
if not os.path.exists(_LINK):
    os.makedirs(os.path.dirname(_LINK), exist_ok=True)
    os.symlink(ROOT, _LINK)

from emulator.process import EmulatorProcess, requests_between  # noqa: E402  pylint: disable=wrong-import-position


def percentile(values, pct):
    """Nearest-rank percentile (pct in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, int(-(-pct * len(ordered) // 100)))
    return ordered[min(rank, len(ordered)) - 1]


def build_tenant(identities, path):
    from emulator.fixtures import TenantBuilder
    b = TenantBuilder()
    users = [b.synced_user(i['sam_account_name'], object_guid=i['object_guid'], object_sid=i['object_sid'],
                           domain=i['domain'], dn=i['dn'], upn=i['user_principal_name']) for i in identities]
    group = b.group('EDA Bench', members=users[:5])
    with open(path, 'w') as handle:
        json.dump(b.build(), handle)
    return users, group


def graph_params(info):
    from emulator.fixtures import CLIENT_ID, CLIENT_SECRET, TENANT_ID
    return dict(tenant_id=TENANT_ID, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, client_certificate_path=None,
                client_certificate_password=None, auth_method='auto', managed_identity_client_id=None, cloud='public',
                authority_host=info['authority_url'], graph_endpoint=info['base_url'], graph_ca_bundle=info['ca_file'],
                graph_validate_certs=True, graph_timeout=30, graph_max_retries=5, graph_max_retry_wait=60,
                graph_parallelism=4)


def rulebook_env(info, forest, ou, state_path, poll_interval):
    from emulator.fixtures import CLIENT_ID, CLIENT_SECRET, TENANT_ID
    env = dict(os.environ)
    env.update({
        'PATH': VENV_BIN + os.pathsep + env.get('PATH', ''), 'ANSIBLE_COLLECTIONS_PATH': COLLECTIONS,
        'AZURE_TENANT_ID': TENANT_ID, 'AZURE_CLIENT_ID': CLIENT_ID, 'AZURE_CLIENT_SECRET': CLIENT_SECRET,
        'AZURE_AUTHORITY_HOST': info['authority_url'], 'CLOUDSYNC_GRAPH_ENDPOINT': info['base_url'],
        'CLOUDSYNC_GRAPH_CA_BUNDLE': info['ca_file'], 'REQUESTS_CA_BUNDLE': info['ca_file'],
        'CLOUDSYNC_EDA_STATE_PATH': state_path, 'CLOUDSYNC_EDA_POLL_INTERVAL': str(poll_interval),
        'CLOUDSYNC_AD_SERVERS': forest.ip, 'CLOUDSYNC_AD_USER': forest.admin_upn,
        'CLOUDSYNC_AD_PASSWORD': forest.admin_password, 'CLOUDSYNC_AD_CA_FILE': forest.ca_file,
        'CLOUDSYNC_TARGET_OU': ou, 'CLOUDSYNC_SEARCH_BASE': ou,
        'ANSIBLE_PYTHON_INTERPRETER': PY, 'ANSIBLE_HOST_KEY_CHECKING': 'false', 'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_LOCALHOST_WARNING': 'false',
    })
    return env


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
    ap.add_argument('--changes', type=int, default=20, help='membership changes measured (at least 20)')
    ap.add_argument('--poll-interval', type=float, default=5.0, help='seconds between delta polls of the source')
    ap.add_argument('--idle', type=float, default=60.0, help='seconds without changes for the idle request rate')
    ap.add_argument('--seed', type=int, default=1)
    args = ap.parse_args(argv)
    if args.changes < 20:
        ap.error('--changes must be at least 20 (p95 needs them)')
    rnd = random.Random(args.seed)

    from lab.lab import Lab
    from writeback_helpers import Directory, dn_key, writeback_params
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.writeback import run_writeback

    lab = Lab()
    forest = lab.up(('corp',))['corp']
    identities = [i for i in forest.identities if i.get('enabled', True)][:30]
    work = tempfile.mkdtemp(prefix='bench-eda-')
    tenant_path = os.path.join(work, 'tenant.json')
    users, group = build_tenant(identities, tenant_path)
    emu = EmulatorProcess(['--tenant', tenant_path], work, python=PY, timeout=300)
    directory = Directory(forest)
    ou = 'OU=EDABench,%s' % forest.groups_ou
    directory.remove_tree(ou)
    directory.make_ou('EDABench')
    rb = None
    try:
        params = writeback_params(forest, None, groups=[group], target_ou=ou, search_base=ou)
        params.update(graph_params(emu.info))
        run_writeback(params)
        ad_group_dn = directory.one(group, ou)['dn']

        def ad_members():
            entry = directory.get(ad_group_dn, ['member'])
            return set(dn_key(d) for d in (entry['attributes'].get('member') or []))

        members = set(range(5))
        inventory = os.path.join(work, 'inventory.yml')
        with open(inventory, 'w') as handle:
            handle.write('all:\n  hosts:\n    localhost:\n      ansible_connection: local\n'
                         '      ansible_python_interpreter: %s\n' % PY)
        state_path = os.path.join(work, 'eda-delta.json')
        log = open(os.path.join(work, 'rulebook.log'), 'w')
        rb = subprocess.Popen([os.path.join(VENV_BIN, 'ansible-rulebook'), '-i', inventory, '--rulebook',
                               'hybrid_identity.cloud_sync.group_writeback'], stdout=log, stderr=subprocess.STDOUT,
                              env=rulebook_env(emu.info, forest, ou, state_path, args.poll_interval), cwd=work,
                              start_new_session=True)
        deadline = time.time() + 180
        while not os.path.exists(state_path):
            if rb.poll() is not None or time.time() > deadline:
                raise RuntimeError('ansible-rulebook did not start: see %s' % log.name)
            time.sleep(0.2)
        time.sleep(args.poll_interval)

        latencies = []
        for n in range(args.changes):
            time.sleep(rnd.uniform(0, args.poll_interval))
            candidates_add = [i for i in range(len(users)) if i not in members]
            if n % 2 == 0 or len(members) <= 1:
                idx = rnd.choice(candidates_add)
                members.add(idx)
                started = time.time()
                emu.admin.add_members(group, [users[idx]])
            else:
                idx = rnd.choice(sorted(members))
                members.discard(idx)
                started = time.time()
                emu.admin.remove_members(group, [users[idx]])
            want = set(dn_key(identities[i]['dn']) for i in members)
            while True:
                if ad_members() == want:
                    break
                if time.time() - started > 300 or rb.poll() is not None:
                    raise RuntimeError('change %d did not reach AD; see %s' % (n, log.name))
                time.sleep(0.1)
            latencies.append(time.time() - started)
            kind = 'add' if idx in members else 'remove'
            print('change %2d (%s user %02d): %.2f s' % (n + 1, kind, idx, latencies[-1]), flush=True)

        time.sleep(args.poll_interval * 2)      # the last run's own reads are over
        before = emu.counters()
        since = max([e['n'] for e in emu.admin.requests()] or [0])
        time.sleep(args.idle)
        after = emu.counters()
        idle_log = [e for e in emu.admin.requests(since=since) if e['n'] > since]
        served = requests_between(before, after)
        delta = sum(1 for e in idle_log if e['kind'] == 'graph' and '/groups/delta' in e['path'])
        per_minute = 60.0 / args.idle
        result = {
            'poll_interval_s': args.poll_interval, 'changes': len(latencies),
            'latency_s': {'p50': round(percentile(latencies, 50), 2), 'p95': round(percentile(latencies, 95), 2),
                          'max': round(max(latencies), 2), 'min': round(min(latencies), 2),
                          'all': [round(x, 2) for x in latencies]},
            'idle': {'seconds': args.idle, 'graph_requests_per_minute': round(served['http'] * per_minute, 1),
                     'delta_requests_per_minute': round(delta * per_minute, 1),
                     'token_requests_per_minute': round(served['tokens'] * per_minute, 1),
                     'polls_per_minute': round(60.0 / args.poll_interval, 1)},
        }
        print()
        print('poll interval %.0f s, %d membership changes (Entra admin API -> AD member attribute)'
              % (args.poll_interval, len(latencies)))
        print('latency p50 %.2f s  p95 %.2f s  max %.2f s  (min %.2f s)' % (
            result['latency_s']['p50'], result['latency_s']['p95'], result['latency_s']['max'], result['latency_s']['min']))
        print('idle: %.1f Graph requests per minute (%.1f of them /groups/delta, %.1f polls per minute), %.1f token requests'
              % (result['idle']['graph_requests_per_minute'], result['idle']['delta_requests_per_minute'],
                 result['idle']['polls_per_minute'], result['idle']['token_requests_per_minute']))
        out_dir = os.path.join(ROOT, 'benchmarks', 'results')
        os.makedirs(out_dir, exist_ok=True)
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime('%Y%m%dT%H%M%SZ')
        with open(os.path.join(out_dir, 'eda-latency-%s.json' % stamp), 'w') as handle:
            json.dump(result, handle, indent=1)
        return 0
    finally:
        if rb is not None and rb.poll() is None:
            os.killpg(rb.pid, signal.SIGTERM)
            try:
                rb.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(rb.pid, signal.SIGKILL)
        emu.stop()
        directory.remove_tree(ou)
        directory.close()


if __name__ == '__main__':
    sys.exit(main())
