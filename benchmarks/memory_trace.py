#!/usr/bin/env python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What holds the memory at the planner's peak: ``memory_phases.py``'s check-mode run under
tracemalloc, with the allocation sites that hold the most printed after a planner phase.

    PYTHONPATH=.build/collections:tests .venv/bin/python benchmarks/memory_trace.py --size large --state \\
        [--after plan_creates] [--top 14]

``--after`` names functions of ``writeback_plan`` (comma-separated) after which a snapshot is taken
(``plan_creates``: the member DN maps, create ops and reports are all alive then). tracemalloc
slows the run about three times and counts Python allocations only (not the interpreter's own
RSS); the figures are where the memory is, not the peak RSS (memory_phases.py prints that).
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
    args, rest = ap.parse_known_args(argv)
    tracemalloc.start(1)
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import writeback_plan

    def hook(name):
        real = getattr(writeback_plan, name)

        def traced(*a, **kw):
            result = real(*a, **kw)
            current, peak = tracemalloc.get_traced_memory()
            print('== after %s: traced %.1f MB (peak so far %.1f MB)' % (name, current / 1e6, peak / 1e6))
            for stat in tracemalloc.take_snapshot().statistics('lineno')[:args.top]:
                frame = stat.traceback[0]
                print('%8.1f MB %8d blocks  %s:%s' % (stat.size / 1e6, stat.count, os.path.basename(frame.filename), frame.lineno))
            sys.stdout.flush()
            return result
        setattr(writeback_plan, name, traced)

    for name in args.after.split(','):
        hook(name)
    return memory_phases.main(rest)


if __name__ == '__main__':
    sys.exit(main())
