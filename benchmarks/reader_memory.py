#!/usr/bin/env python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Peak RSS (VmHWM, through hwm.py) and wall time of the real ad_group_writeback module in check
mode on the benchmark's tenant, for the current tree and, in the same run, for a git revision
(``--before``): the before/after figures of a memory or speed change, measured side by side.

    .venv/bin/python benchmarks/reader_memory.py --size large [--before HEAD~3] [--repeat 2]

Scenarios (check mode only: nothing is written to AD): ``first`` (an empty OU: every group is
planned as created, the first run's own work), ``first+state`` (the same with a fresh
delta_state_path: the incremental reader's full read) and ``noop-read`` (OU=Bench as search base
and target, whatever the benchmark left there). Times are only comparable as ratios within one
run (the machine is shared); each scenario alternates before/after ``--repeat`` times and the
lower figure counts.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_writeback as bench  # noqa: E402


def tree_at(rev, root):
    """The collection as it was at ``rev``, importable under its Galaxy name: returns the collections path."""
    coll = os.path.join(root, 'ansible_collections', 'hybrid_identity', 'cloud_sync')
    os.makedirs(coll)
    archive = subprocess.run(['git', 'archive', rev], cwd=bench.ROOT, check=True, stdout=subprocess.PIPE).stdout
    subprocess.run(['tar', '-x', '-C', coll], input=archive, check=True)
    return root


def run_module(collections, args, work, name):
    module = os.path.join(collections, 'ansible_collections', 'hybrid_identity', 'cloud_sync', 'plugins', 'modules',
                          'ad_group_writeback.py')
    args_path = os.path.join(work, 'args-%s.json' % name)
    with open(args_path, 'w') as fh:
        json.dump(args, fh)
    env = {'PYTHONPATH': collections, 'REQUESTS_CA_BUNDLE': ''}
    rc, wall, rss, text = bench.run_measured([bench.PY, module, args_path], env=env,
                                             stdout_path=os.path.join(work, 'result-%s.json' % name))
    try:
        result = json.loads(text[text.index('{'):])
    except ValueError:
        result = {'failed': True, 'msg': text[-500:]}
    ok = rc == 0 and not result.get('failed')
    if not ok:
        bench.log('%s FAILED: %s' % (name, str(result.get('msg'))[:1000]))
    return dict(ok=ok, wall=wall, rss=rss, summary=result.get('summary') or {})


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument('--size', default='large', choices=sorted(bench.SIZES))
    ap.add_argument('--before', help='git revision to measure beside the working tree')
    ap.add_argument('--repeat', type=int, default=1)
    ap.add_argument('--scenarios', default='first,first+state')
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
        trees.insert(0, ('before', tree_at(args.before, tmp)))
    emu = bench.start_emulator(tenant_path, work)
    rows = {}
    try:
        for scenario in args.scenarios.split(','):
            ou = empty if scenario.startswith('first') else 'OU=Bench,%s' % forest.base_dn
            for unused in range(args.repeat):
                for label, collections in trees:
                    state = os.path.join(tmp, 'state-%s.json' % label) if scenario.endswith('+state') else None
                    if state and os.path.exists(state):
                        os.unlink(state)
                    module_args = bench.module_args(forest, emu, ou, state, True)
                    row = run_module(collections, module_args, work, 'memory-%s-%s' % (scenario, label))
                    bench.log('%-12s %-6s %7.2f s  peak RSS %6.1f MB  %s' % (
                        scenario, label, row['wall'], row['rss'], dict((k, row['summary'].get(k)) for k in ('created', 'unchanged'))))
                    best = rows.setdefault((scenario, label), dict(row))
                    best['wall'] = min(best['wall'], row['wall'])
                    best['rss'] = min(best['rss'], row['rss'])
                    best['ok'] = best['ok'] and row['ok']
    finally:
        emu.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print('\n%-12s %-7s %9s %12s %s' % ('scenario', 'tree', 'wall s', 'peak RSS MB', 'x before (wall)'))
    for (scenario, label), row in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1] != 'before')):
        base = rows.get((scenario, 'before'))
        ratio = '%.2f' % (row['wall'] / base['wall']) if base and label != 'before' else '-'
        print('%-12s %-7s %9.2f %12.1f %s%s' % (scenario, label, row['wall'], row['rss'], ratio, '' if row['ok'] else '  FAILED'))
    return 0


if __name__ == '__main__':
    sys.exit(main())
