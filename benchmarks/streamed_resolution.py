#!/usr/bin/env python
"""A first run's reading phase with and without the users resolved while Graph is read
(``writeback._StreamedResolution``), alternated in one session on the same lab and tenant.

    .venv/bin/python benchmarks/streamed_resolution.py --size large [--runs 3]

Each run is ad_group_writeback in check mode with a fresh delta state file on an empty OU (the
first run's plan: every group created), in a child process of its own; ``--runs`` pairs are
alternated (streamed, then not) so that a slower moment of the machine hits both. Printed per
run: the wall time, and the seconds until the plan is made (what the stream can shorten: a real
first run writes after that). The Graph emulator runs on the benchmark's tenant
(``.build/bench/<size>/tenant.json``, made by ``tools/bench.sh --size <size>``) in its own process.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_writeback as bench  # noqa: E402

CHILD = '''
import json, sys, time
began = time.monotonic()
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import writeback
from ansible_collections.hybrid_identity.cloud_sync.plugins.modules import ad_group_writeback as module
params, streamed = json.load(open(sys.argv[1])), sys.argv[2] == 'streamed'
if not streamed:
    class NotStreamed(writeback._StreamedResolution):
        def _run(self):
            return None
    writeback._StreamedResolution = NotStreamed
planned = {}
plan = writeback.plan_writeback
def timed_plan(*args, **kwargs):
    out = plan(*args, **kwargs)
    planned['at'] = time.monotonic() - began
    return out
writeback.plan_writeback = timed_plan
spec = module.argument_spec()
spec = getattr(spec, 'argument_spec', spec)
full = dict((k, v.get('default')) for k, v in spec.items())
full.update(params)
result = writeback.run_writeback(full, check_mode=True)
print(json.dumps(dict(wall=time.monotonic() - began, planned=planned['at'], searches=result['ldap_operations']['searches'],
                      summary=result['summary'])))
'''


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument('--size', default='large', choices=sorted(bench.SIZES))
    ap.add_argument('--ou', default='BenchEmpty')
    ap.add_argument('--runs', type=int, default=3, help='pairs of runs (streamed, not streamed)')
    args = ap.parse_args(argv)
    from lab.lab import Lab
    forest = Lab().forest('corp')
    work = os.path.join(bench.ROOT, '.build', 'bench', args.size)
    ou = bench.existing_ou(forest, args.ou)
    emu = bench.start_emulator(os.path.join(work, 'tenant.json'), work)
    figures = dict(streamed=[], not_streamed=[])
    summaries = set()
    try:
        for n in range(args.runs):
            for variant in ('streamed', 'not_streamed'):
                state = os.path.join(work, 'streamed-resolution-state.json')
                if os.path.exists(state):
                    os.unlink(state)
                params = bench.module_args(forest, emu, ou, state, True)['ANSIBLE_MODULE_ARGS']
                params = dict((k, v) for k, v in params.items() if not k.startswith('_'))
                with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as fh:
                    json.dump(params, fh)
                try:
                    env = dict(os.environ, PYTHONPATH=bench.COLLECTIONS, REQUESTS_CA_BUNDLE='')
                    out = subprocess.run([bench.PY, '-c', CHILD, fh.name, variant], check=True, env=env,
                                         stdout=subprocess.PIPE, universal_newlines=True).stdout
                finally:
                    os.unlink(fh.name)
                got = json.loads(out.strip().splitlines()[-1])
                summaries.add(json.dumps(got['summary'], sort_keys=True))
                figures[variant].append(got)
                print('run %d %-13s wall %6.2f s  planned at %6.2f s  %d searches'
                      % (n + 1, variant, got['wall'], got['planned'], got['searches']))
                sys.stdout.flush()
    finally:
        emu.stop()
    for variant, runs in figures.items():
        print('%-13s median wall %6.2f s, median planned at %6.2f s (%d runs)'
              % (variant, statistics.median(r['wall'] for r in runs), statistics.median(r['planned'] for r in runs), len(runs)))
    print('same summary in every run: %s' % (len(summaries) == 1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
