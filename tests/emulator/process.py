"""The emulator in a process of its own (for benchmarks: its work is then not measured as the
client's), and what it served between two counter snapshots."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVER = os.path.join(ROOT, 'tests', 'emulator', 'server.py')


class EmulatorProcess(object):
    """``tests/emulator/server.py`` with ``server_args`` (tenant or --generate, throttling), on a
    free port; ``.info`` is its state file (URLs, CA file), ``.admin`` its RemoteAdmin."""

    def __init__(self, server_args, work, python=None, timeout=600):
        self.state_file = os.path.join(work, 'emulator.json')
        if os.path.exists(self.state_file):
            os.unlink(self.state_file)
        self.log = open(os.path.join(work, 'emulator.log'), 'w')
        cmd = [python or sys.executable, SERVER, '--port', '0', '--state-file', self.state_file] + list(server_args)
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.time() + timeout
        while not os.path.exists(self.state_file):
            if self.proc.poll() is not None or time.time() > deadline:
                self.stop()
                raise RuntimeError('the emulator did not start: see %s' % self.log.name)
            time.sleep(0.2)
        time.sleep(0.2)  # the state file is written in one go, but give the writer a moment to close it
        with open(self.state_file) as fh:
            self.info = json.load(fh)
        from emulator.server import RemoteAdmin
        self.admin = RemoteAdmin(self.info['base_url'], self.info['ca_file'])

    def counters(self):
        return self.admin.counters()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def requests_between(before, after):
    """Graph requests served between two counter snapshots: ``http`` (plain requests and $batch
    envelopes, tokens apart), ``batch``, ``batch_items``, ``tokens``, ``throttled``."""
    kinds_b, kinds_a = before.get('by_kind', {}), after.get('by_kind', {})
    d = dict((k, kinds_a.get(k, 0) - kinds_b.get(k, 0)) for k in kinds_a)
    return dict(http=d.get('graph', 0) + d.get('batch', 0), batch=d.get('batch', 0), batch_items=d.get('batch_item', 0),
                tokens=d.get('token', 0), throttled=after.get('throttled', 0) - before.get('throttled', 0))
