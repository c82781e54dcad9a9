#!/usr/bin/env python
"""Run a module file as Ansible does, with a wall-clock timeline of the writeback's steps.

    python benchmarks/timeline.py --out TIMELINE.json MODULE_FILE ARGS.json

Each step below is wrapped (in its module's namespace, where the engine looks it up) so that
every call records its start, end and thread, in seconds since this script started; the
timeline is written as JSON at exit (the module ends with ``exit_json``) and ``format_timeline``
prints it. Unlike cProfile it costs next to nothing, and it shows what runs beside what: which
steps wait on the DC, on Graph or on the interpreter, and where the writes begin and end.
``bench_writeback.py --timeline SCENARIO`` runs a scenario this way. A generator (such as
``ad_changes.read_changed_groups``) is timed by the step that consumes it, not by itself.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import atexit
import functools
import importlib
import json
import runpy
import sys
import threading
import time

STARTED = time.monotonic()

PACKAGE = 'ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.'
STEPS = {
    'writeback': ['_desired', '_reach_ad', 'incremental_scope', 'groups_from_state', 'narrow_to', 'member_delta_fallback',
                  'deletion_scope', 'read_soa_originals', '_made_meanwhile', '_resolve', 'plan_writeback', 'release_members',
                  'apply_plan', 'next_ad_state', 'save_state', 'incremental_report'],
    'ad_reader': ['read_managed_groups', 'read_writeback_v2_groups', 'read_objects_at', 'read_sam_account_names'],
    'ad_changes': ['read_watermark', 'split_own_writes'],
    'incremental': ['member_deltas'],
    'delta_state': ['load', 'hydrate', 'write_members'],
    'entra_reader': ['read_groups_incremental', 'read_groups_report'],
    'writeback_result': ['shape', 'write_report'],
    'writeback_early': ['apply_plan'],   # one wave's writes each (a first run's, while Graph is read)
}


def _wrap(module, name, log):
    func = getattr(module, name)
    label = '%s.%s' % (module.__name__.rsplit('.', 1)[-1], name)

    @functools.wraps(func)
    def timed(*args, **kwargs):
        began = time.monotonic() - STARTED
        try:
            return func(*args, **kwargs)
        finally:
            log.append(dict(step=label, start=round(began, 4), end=round(time.monotonic() - STARTED, 4),
                            thread=threading.current_thread().name))
    setattr(module, name, timed)


def instrument(log):
    """Wrap every step of ``STEPS`` that exists (a renamed step is skipped, not an error)."""
    for short, names in STEPS.items():
        module = importlib.import_module(PACKAGE + short)
        for name in names:
            if callable(getattr(module, name, None)):
                _wrap(module, name, log)


def format_timeline(data):
    """The timeline as text: one line per call, by start time."""
    lines = ['%8s %8s %8s  %-12s %s' % ('start', 'end', 'seconds', 'thread', 'step'),
             '%8.3f %8s %8s  %-12s %s' % (data['instrumented_s'], '', '', 'MainThread', '(imports done, module starts)')]
    for item in sorted(data['steps'], key=lambda s: (s['start'], s['end'])):
        lines.append('%8.3f %8.3f %8.3f  %-12s %s' % (item['start'], item['end'], item['end'] - item['start'],
                                                      item['thread'][:12], item['step']))
    lines.append('%8s %8.3f %8s  %-12s %s' % ('', data['exit_s'], '', 'MainThread', '(exit)'))
    return '\n'.join(lines)


def main(argv):
    if len(argv) < 4 or argv[1] != '--out':
        sys.stderr.write(__doc__)
        return 2
    out, module_file = argv[2], argv[3]
    log = []
    instrument(log)
    data = dict(steps=log, instrumented_s=round(time.monotonic() - STARTED, 4))

    def dump():
        data['exit_s'] = round(time.monotonic() - STARTED, 4)
        with open(out, 'w') as handle:
            json.dump(data, handle, indent=1)
    atexit.register(dump)
    sys.argv = argv[3:]
    runpy.run_path(module_file, run_name='__main__')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
