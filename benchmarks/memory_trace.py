#!/usr/bin/env python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What holds the memory at the planner's peak: ``memory_phases.py``'s check-mode run under
tracemalloc, with the allocation sites that hold the most printed after a planner phase.

    PYTHONPATH=.build/collections:tests .venv/bin/python benchmarks/memory_trace.py --size large --state \\
        [--after plan_creates] [--top 14]

``--after`` names functions of ``writeback_plan`` (comma-separated; ``entra_reader.read_members_sourced``
names another module's: writeback, entra_reader, ad_reader) after which a snapshot is taken
(``plan_creates``: the member DN maps, create ops and reports are all alive then). tracemalloc
slows the run about three times and counts Python allocations made during the run only (not the code
imported before it, not the harness's, not the interpreter's own RSS); the figures are where the
memory is, not the peak RSS (memory_phases.py prints that). ``--frames 8`` groups the sites by
traceback: ``decoder.py`` alone means "something json.loads returned", the frames say whose.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import os
import sys
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import memory_phases  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument('--after', default='plan_creates')
    ap.add_argument('--top', type=int, default=14)
    ap.add_argument('--frames', type=int, default=1,
                    help='frames kept per allocation; with more, the sites are grouped by their whole traceback '
                         '(who called the allocation: json.loads for one)')
    args, rest = ap.parse_known_args(argv)
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import writeback, writeback_plan

    # Traced from the run's start: what the harness holds (the lab's identities, the emulator's client)
    # and the code imported before are not counted; only what the run allocates (and still holds).
    run = writeback.run_writeback

    def traced_run(*a, **kw):
        tracemalloc.start(args.frames)
        try:
            return run(*a, **kw)
        finally:
            tracemalloc.stop()
    writeback.run_writeback = traced_run

    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import entra_reader, ad_reader
    modules = {'writeback_plan': writeback_plan, 'writeback': writeback, 'entra_reader': entra_reader,
               'ad_reader': ad_reader}

    def hook(name):
        owner = writeback_plan
        if '.' in name:
            owner_name, name = name.split('.', 1)
            owner = modules[owner_name]
        real = getattr(owner, name)

        def traced(*a, **kw):
            result = real(*a, **kw)
            current, peak = tracemalloc.get_traced_memory()
            print('== after %s: traced %.1f MB (peak so far %.1f MB)' % (name, current / 1e6, peak / 1e6))
            for stat in tracemalloc.take_snapshot().statistics('lineno' if args.frames == 1 else 'traceback')[:args.top]:
                print('%8.1f MB %8d blocks  %s' % (stat.size / 1e6, stat.count, ' <- '.join(
                    '%s:%s' % (os.path.basename(f.filename), f.lineno) for f in reversed(stat.traceback))))
            sys.stdout.flush()
            return result
        setattr(owner, name, traced)

    for name in args.after.split(','):
        hook(name)
    return memory_phases.main(rest)


if __name__ == '__main__':
    sys.exit(main())
