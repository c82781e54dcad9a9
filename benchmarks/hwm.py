#!/usr/bin/env python
"""Run a Python script and record its own peak resident set size (VmHWM) when it exits.

    BENCH_HWM_FILE=out.json python hwm.py script.py [args...]

``wait4``'s ``ru_maxrss`` cannot be used for this: Linux carries the pre-exec RSS over exec, so a
child forked from a large parent (the benchmark driver holding the generated tenant) would report
the parent's size. VmHWM belongs to the process's own address space, created by exec.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import atexit
import json
import os
import runpy
import sys


def _report(path):
    out = {}
    with open('/proc/self/status') as fh:
        for line in fh:
            if line.startswith(('VmHWM', 'VmRSS')):
                key, value = line.split(':')
                out[key] = int(value.split()[0]) / 1024.0
    with open(path, 'w') as fh:
        json.dump(out, fh)


def main():
    path = os.environ.pop('BENCH_HWM_FILE')
    atexit.register(_report, path)
    script = sys.argv[1]
    sys.argv = sys.argv[1:]
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    runpy.run_path(script, run_name='__main__')


if __name__ == '__main__':
    main()
