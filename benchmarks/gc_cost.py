#!/usr/bin/env python
"""What CPython's garbage collector costs the writeback: CPU time of one run of ``run_writeback`` in
check mode (full Graph read, the first-run plan of every group, into an empty OU), each run in a
fresh process, the modes alternated round by round:

    .venv/bin/python benchmarks/gc_cost.py [--rounds 3] [--modes default,freeze,off]

``default``: the collector as Python sets it (what the module does; the figures are in
``plugins/module_utils/interpreter.py``); ``freeze``: ``gc.freeze()`` once the imports are done;
``off``: no collector
at all (a bound: the run then keeps its cyclic garbage, a higher peak); ``raised``: thresholds
(100000, 20, 100). Needs the large benchmark's tenant (``.build/bench/large/tenant.json``, made by
``tools/bench.sh --size large``) and the lab. Prints one JSON line per run: wall and CPU seconds,
peak RSS, the plan's summary.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_writeback as bench  # noqa: E402

WORK = os.path.join(bench.ROOT, '.build', 'bench', 'large')
EMU_INFO = os.path.join(WORK, 'gc-cost-emulator.json')
MODES = ('default', 'freeze', 'off', 'raised')


class _Emulator(object):
    """The running emulator's connection details, as ``bench.module_args`` reads them."""

    def __init__(self, info):
        self.info = info


def one_run(mode):
    """One check run in this process, the collector set as ``mode`` says; prints its JSON line."""
    from lab.lab import Lab
    from ansible_collections.hybrid_identity.cloud_sync.plugins.modules import ad_group_writeback as module
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import writeback
    forest = Lab().forest('corp')
    forest.identities = None
    ou = bench.existing_ou(forest, 'BenchEmpty')
    with open(EMU_INFO) as fh:
        emu = _Emulator(json.load(fh))
    params = bench.module_args(forest, emu, ou, None, True)['ANSIBLE_MODULE_ARGS']
    spec = module.argument_spec()
    spec = getattr(spec, 'argument_spec', spec)
    args = dict((k, v.get('default')) for k, v in spec.items())
    args.update((k, v) for k, v in params.items() if not k.startswith('_'))
    for key in ('groups', 'group_filter', 'entra_groups', 'sam_account_name_template', 'delta_state_path', 'ou_map',
                'naming', 'member_match'):
        args.setdefault(key, None)   # as memory_phases.py: what AnsibleModule would fill in
    args['ou_map'] = args['ou_map'] or []
    args['naming'] = args['naming'] or 'cloud_sync'
    args['member_match'] = args['member_match'] or 'auto'
    if mode == 'raised':
        gc.set_threshold(100000, 20, 100)
    elif mode == 'freeze':
        gc.freeze()
    elif mode == 'off':
        gc.disable()
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    out = writeback.run_writeback(args, check_mode=True)
    after, end = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    print(json.dumps(dict(mode=mode, wall_s=round(end - start, 3), cpu_s=round(cpu, 3),
                          peak_rss_mb=round(after.ru_maxrss / 1024.0, 1), summary=out['summary'])))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--modes', default='default,freeze,off')
    ap.add_argument('--one', choices=MODES, help=argparse.SUPPRESS)   # a child: one run
    args = ap.parse_args(argv)
    if args.one:
        one_run(args.one)
        return 0
    modes = args.modes.split(',')
    emu = bench.start_emulator(os.path.join(WORK, 'tenant.json'), WORK)
    with open(EMU_INFO, 'w') as fh:
        json.dump(emu.info, fh)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([bench.COLLECTIONS, os.path.join(bench.ROOT, 'tests')]))
    try:
        for index in range(args.rounds):
            for mode in (modes if index % 2 == 0 else modes[::-1]):
                proc = subprocess.run([bench.PY, os.path.abspath(__file__), '--one', mode], env=env, check=False,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
                lines = [line for line in proc.stdout.splitlines() if line.startswith('{')]
                print(lines[-1] if lines else '%s failed: %s' % (mode, proc.stderr[-2000:]))
                sys.stdout.flush()
    finally:
        emu.stop()
    return 0


if __name__ == '__main__':
    sys.exit(main())
