# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running the real ansible-rulebook with the collection's rulebook in tests: its environment
(Graph emulator, lab DC, sandbox OU) and the process."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import signal
import subprocess
import time
import uuid

from writeback_helpers import ROOT

VENV_BIN = os.path.join(ROOT, '.venv', 'bin')
RULEBOOK = 'hybrid_identity.cloud_sync.group_writeback'


def eda_env(emu, forest, ou, state_path, poll_interval=1):
    """The environment the rulebook's source and playbook read their settings from."""
    env = dict(os.environ)
    env.update({
        'PATH': VENV_BIN + os.pathsep + env.get('PATH', ''),
        'AZURE_TENANT_ID': emu.tenant_id, 'AZURE_CLIENT_ID': emu.client_id, 'AZURE_CLIENT_SECRET': emu.client_secret,
        'AZURE_AUTHORITY_HOST': emu.authority_url, 'CLOUDSYNC_GRAPH_ENDPOINT': emu.base_url,
        'CLOUDSYNC_GRAPH_CA_BUNDLE': emu.ca_file,
        'CLOUDSYNC_EDA_STATE_PATH': str(state_path), 'CLOUDSYNC_EDA_POLL_INTERVAL': str(poll_interval),
        'CLOUDSYNC_AD_SERVERS': forest.ip, 'CLOUDSYNC_AD_USER': forest.admin_upn,
        'CLOUDSYNC_AD_PASSWORD': forest.admin_password, 'CLOUDSYNC_AD_CA_FILE': forest.ca_file,
        'CLOUDSYNC_TARGET_OU': ou, 'CLOUDSYNC_SEARCH_BASE': ou,
        'ANSIBLE_PYTHON_INTERPRETER': os.path.join(VENV_BIN, 'python'),
        'ANSIBLE_HOST_KEY_CHECKING': 'false', 'ANSIBLE_LOCALHOST_WARNING': 'false', 'ANSIBLE_NOCOLOR': '1',
    })
    return env


class Rulebook(object):
    """``ansible-rulebook --rulebook hybrid_identity.cloud_sync.group_writeback`` in a process group."""

    def __init__(self, env, work):
        self.env = env
        self.work = work
        self.inventory = os.path.join(str(work), 'inventory.yml')
        with open(self.inventory, 'w') as handle:
            handle.write('all:\n  hosts:\n    localhost:\n      ansible_connection: local\n'
                         '      ansible_python_interpreter: %s\n' % os.path.join(VENV_BIN, 'python'))
        self.proc = None
        self.log_path = None

    def start(self):
        self.log_path = os.path.join(str(self.work), 'rulebook-%s.log' % uuid.uuid4().hex[:6])
        log = open(self.log_path, 'w')
        self.proc = subprocess.Popen(
            [os.path.join(VENV_BIN, 'ansible-rulebook'), '-i', self.inventory, '--rulebook', RULEBOOK, '-v'],
            stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=str(self.work), start_new_session=True)
        log.close()
        state = self.env['CLOUDSYNC_EDA_STATE_PATH']
        deadline = time.time() + 180
        mtime = os.path.getmtime(state) if os.path.exists(state) else None
        # polling has begun once the source (re)wrote its state file
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError('ansible-rulebook exited (rc=%s):\n%s' % (self.proc.returncode, self.log()))
            if os.path.exists(state) and os.path.getmtime(state) != mtime:
                return self
            time.sleep(0.2)
        raise AssertionError('the source did not start polling:\n%s' % self.log())

    def log(self, tail=6000):
        with open(self.log_path) as handle:
            return handle.read()[-tail:]

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def wait_until(check, rulebook, what, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        if rulebook.proc.poll() is not None:
            break
        time.sleep(0.5)
    raise AssertionError('%s did not happen; rulebook log:\n%s' % (what, rulebook.log()))
