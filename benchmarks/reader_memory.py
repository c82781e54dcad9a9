#!/usr/bin/env python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Peak RSS (VmHWM, through hwm.py) and wall time of the real ad_group_writeback module in check
mode on the benchmark's tenant, for the current tree and, in the same run, for a git revision
(``--before``): the before/after figures of a memory or speed change, measured side by side.

    .venv/bin/python benchmarks/reader_memory.py --size large [--before REV [--only path,...]] [--repeat 2]

Scenarios (check mode only: nothing is written to AD): ``first`` (an empty OU: every group is
planned as created, the first run's own work), ``first+state`` (the same with a fresh
delta_state_path: the incremental reader's full read), ``first+delta`` (a state saved by a full read
first: a delta read in which nothing changed in Entra, with the first run's plan) and ``noop-read``
(OU=Bench as search base and target, whatever the benchmark left there). Times are only comparable as ratios within one
run (the machine is shared); each scenario alternates before/after ``--repeat`` times and the
lower figure counts. ``cpu s`` is the module process's own user+system time (less moved by the
load of other processes than the wall time; the DC's and the emulator's time are not in it).
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_writeback as bench  # noqa: E402


def tree_at(rev, root, only=None):
    """The collection as it was at ``rev``, importable under its Galaxy name: returns the collections
    path. ``only`` (paths): the working tree's plugins with just those files as they were at ``rev``
    (the effect of one change, apart from everything else that changed since)."""
    coll = os.path.join(root, 'ansible_collections', 'hybrid_identity', 'cloud_sync')
    if not only:
        os.makedirs(coll)
        archive = subprocess.run(['git', 'archive', rev], cwd=bench.ROOT, check=True, stdout=subprocess.PIPE).stdout
        subprocess.run(['tar', '-x', '-C', coll], input=archive, check=True)
        return root
    os.makedirs(coll)
    shutil.copytree(os.path.join(bench.ROOT, 'plugins'), os.path.join(coll, 'plugins'),
                    ignore=shutil.ignore_patterns('__pycache__'))
    for path in only:
        text = subprocess.run(['git', 'show', '%s:%s' % (rev, path)], cwd=bench.ROOT, check=True, stdout=subprocess.PIPE).stdout
        with open(os.path.join(coll, path), 'wb') as fh:
            fh.write(text)
    return root


def run_module(collections, args, work, name):
    module = os.path.join(collections, 'ansible_collections', 'hybrid_identity', 'cloud_sync', 'plugins', 'modules',
                          'ad_group_writeback.py')
    args_path = os.path.join(work, 'args-%s.json' % name)
    with open(args_path, 'w') as fh:
        json.dump(args, fh)
    env = {'PYTHONPATH': collections, 'REQUESTS_CA_BUNDLE': ''}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    rc, wall, rss, text = bench.run_measured([bench.PY, module, args_path], env=env,
                                             stdout_path=os.path.join(work, 'result-%s.json' % name))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    try:
        result = json.loads(text[text.index('{'):])
    except ValueError:
        result = {'failed': True, 'msg': text[-500:]}
    ok = rc == 0 and not result.get('failed')
    if not ok:
        bench.log('%s FAILED: %s' % (name, str(result.get('msg'))[:1000]))
    return dict(ok=ok, wall=wall, cpu=cpu, rss=rss, summary=result.get('summary') or {})


STATE_SCRIPT = '''
import json, sys
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import entra_reader, writeback
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.graph_client import GraphClient
params = json.load(open(sys.argv[1]))
groups, state = entra_reader.read_groups_incremental(GraphClient(params), None, max_members=params['max_members'])
writeback.save_state(sys.argv[2], state)
'''


def save_state(emu, path, collections):
    """The delta state a full read of ``collections``' reader leaves (made in a child process, not
    measured): the next check-mode run is a delta read (nothing changed in Entra)."""
    from emulator.fixtures import CLIENT_ID, CLIENT_SECRET, TENANT_ID
    args = dict(tenant_id=TENANT_ID, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, auth_method='client_secret',
                authority_host=emu.info['authority_url'], graph_endpoint=emu.info['base_url'],
                graph_ca_bundle=emu.info['ca_file'], max_members=50000)
    args_path = path + '.args'
    with open(args_path, 'w') as fh:
        json.dump(args, fh)
    env = dict(os.environ, PYTHONPATH=collections, REQUESTS_CA_BUNDLE='')
    subprocess.run([bench.PY, '-c', STATE_SCRIPT, args_path, path], check=True, env=env)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument('--size', default='large', choices=sorted(bench.SIZES))
    ap.add_argument('--before', help='git revision to measure beside the working tree')
    ap.add_argument('--only', help='with --before: only these files (comma-separated paths) as at that revision')
    ap.add_argument('--repeat', type=int, default=1)
    ap.add_argument('--scenarios', default='first,first+state,first+delta')
    args = ap.parse_args(argv)
    from lab.lab import Lab
    forest = Lab().forest('corp')
    work = os.path.join(bench.ROOT, '.build', 'bench', args.size)
    tenant_path = os.path.join(work, 'tenant.json')
    if not os.path.exists(tenant_path):
        os.makedirs(work, exist_ok=True)
        bench.build_tenant(args.size, forest, work)
    empty = 'OU=BenchEmpty,%s' % forest.base_dn
    client = bench.admin_client(forest)
    if client.get(empty, ['distinguishedName']) is None:
        client.add(empty, {'objectClass': 'organizationalUnit'})
    client.close()
    trees = [('after', bench.COLLECTIONS)]
    tmp = tempfile.mkdtemp(prefix='reader-memory-')
    if args.before:
        trees.insert(0, ('before', tree_at(args.before, tmp, args.only.split(',') if args.only else None)))
    emu = bench.start_emulator(tenant_path, work)
    rows = {}
    try:
        for scenario in args.scenarios.split(','):
            ou = empty if scenario.startswith('first') else 'OU=Bench,%s' % forest.base_dn
            for unused in range(args.repeat):
                for label, collections in trees:
                    state = os.path.join(tmp, 'state-%s.json' % label) if scenario.endswith(('+state', '+delta')) else None
                    if state and os.path.exists(state):
                        os.unlink(state)
                    if scenario.endswith('+delta'):
                        save_state(emu, state, collections)
                    module_args = bench.module_args(forest, emu, ou, state, True)
                    row = run_module(collections, module_args, work, 'memory-%s-%s' % (scenario, label))
                    bench.log('%-12s %-6s %7.2f s  cpu %6.2f s  peak RSS %6.1f MB  %s' % (
                        scenario, label, row['wall'], row['cpu'], row['rss'],
                        dict((k, row['summary'].get(k)) for k in ('created', 'unchanged'))))
                    best = rows.setdefault((scenario, label), dict(row))
                    best['wall'] = min(best['wall'], row['wall'])
                    best['cpu'] = min(best['cpu'], row['cpu'])
                    best['rss'] = min(best['rss'], row['rss'])
                    best['ok'] = best['ok'] and row['ok']
    finally:
        emu.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print('\n%-12s %-7s %9s %9s %12s %10s %10s' % ('scenario', 'tree', 'wall s', 'cpu s', 'peak RSS MB', 'wall x bef', 'cpu x bef'))
    for (scenario, label), row in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1] != 'before')):
        base = rows.get((scenario, 'before'))
        ratio = '%.2f' % (row['wall'] / base['wall']) if base and label != 'before' else '-'
        cpu_ratio = '%.2f' % (row['cpu'] / base['cpu']) if base and label != 'before' and base['cpu'] else '-'
        flag = '' if row['ok'] else '  FAILED'
        print('%-12s %-7s %9.2f %9.2f %12.1f %10s %10s%s' % (scenario, label, row['wall'], row['cpu'], row['rss'], ratio, cpu_ratio, flag))
    return 0


if __name__ == '__main__':
    sys.exit(main())
