#!/usr/bin/env python
"""Profile one module run (cProfile) against the state a benchmark left behind.

    .venv/bin/python benchmarks/profile_scenario.py --size large [--delta] [--write] [--top 40]

Starts the Graph emulator on ``.build/bench/<size>/tenant.json`` (the tenant as generated, before
the benchmark's 1% changes), runs ``ad_group_writeback`` once in its own process under cProfile
(check mode unless ``--write``; full Graph read, or with ``--delta`` from a copy of the delta
state file) and prints the functions by cumulative and by own time. Also prints the peak RSS.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import os
import pstats
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_writeback as bench  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument('--size', default='large', choices=sorted(bench.SIZES))
    ap.add_argument('--delta', action='store_true')
    ap.add_argument('--write', action='store_true')
    ap.add_argument('--top', type=int, default=35)
    ap.add_argument('--no-profile', action='store_true')
    args = ap.parse_args(argv)
    from lab.lab import Lab
    forest = Lab().forest('corp')
    work = os.path.join(bench.ROOT, '.build', 'bench', args.size)
    emu = bench.start_emulator(os.path.join(work, 'tenant.json'), work)
    state = None
    if args.delta:
        state = os.path.join(work, 'profile-delta-state.json')
        shutil.copy(os.path.join(work, 'delta-state.json'), state)
    name = 'profile'
    try:
        row, _result = bench.run_scenario(name, forest, emu, work, 'OU=Bench,' + forest.base_dn, state, not args.write,
                                          profile=not args.no_profile)
    finally:
        emu.stop()
    print(row)
    if not args.no_profile:
        stats = pstats.Stats(os.path.join(work, 'profile-%s.pstats' % name))
        stats.sort_stats('cumulative').print_stats(args.top)
        stats.sort_stats('tottime').print_stats(args.top)
    return 0


if __name__ == '__main__':
    sys.exit(main())
