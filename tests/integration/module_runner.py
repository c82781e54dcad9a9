# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run module tasks through ansible-playbook, as users do, in an environment without credentials.

``run_tasks(tmp_path, tasks, env=...)`` runs each task (a dict: module name -> arguments, plus any
task keywords) with ``ignore_errors`` and returns ``(rc, output, results)``: ``results[i]`` is what
task ``i`` registered. The environment is the test's own minus every variable that could hand the
modules a credential or an identity endpoint (``AZURE_*``, ``CLOUDSYNC_*``, ``IDENTITY_*``,
``MSI_*``, ``IMDS_ENDPOINT``, ``REQUESTS_CA_BUNDLE``), plus ``env``.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRUBBED_PREFIXES = ('AZURE_', 'CLOUDSYNC_', 'IDENTITY_', 'MSI_')
SCRUBBED_NAMES = ('IMDS_ENDPOINT', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE')


def clean_environment(env=None):
    full = dict((k, v) for k, v in os.environ.items()
                if not k.startswith(SCRUBBED_PREFIXES) and k not in SCRUBBED_NAMES)
    full.update({
        'ANSIBLE_HOST_KEY_CHECKING': 'false', 'ANSIBLE_RETRY_FILES_ENABLED': 'false',
        'ANSIBLE_LOCALHOST_WARNING': 'false', 'ANSIBLE_INVENTORY_UNPARSED_WARNING': 'false',
        'ANSIBLE_NOCOLOR': '1',
        'ANSIBLE_PYTHON_INTERPRETER': os.path.join(ROOT, '.venv', 'bin', 'python'),
    })
    full.update(env or {})
    return full


def run_tasks(tmp_path, tasks, env=None, check=False, timeout=600):
    """Run ``tasks`` in one play on localhost; returns (rc, stdout+stderr, [registered result per task])."""
    results = tmp_path / 'results.json'
    play_tasks = []
    for n, task in enumerate(tasks):
        task = dict(task)
        task.setdefault('name', 'task %d' % n)
        task['register'] = 'r%d' % n
        task['ignore_errors'] = True
        play_tasks.append(task)
    save = '{{ [%s] | to_json }}' % ', '.join('r%d' % n for n in range(len(tasks)))
    play_tasks.append({'name': 'save', 'ansible.builtin.copy': {'content': save, 'dest': str(results), 'mode': '0600'},
                       'check_mode': False})
    path = tmp_path / 'play.yml'
    path.write_text(json.dumps([{'hosts': 'localhost', 'gather_facts': False, 'tasks': play_tasks}]))
    cmd = [os.path.join(ROOT, '.venv', 'bin', 'ansible-playbook'), '-i', 'localhost,', '-c', 'local', str(path)]
    if check:
        cmd.append('--check')
    proc = subprocess.run(cmd, capture_output=True, text=True, env=clean_environment(env), timeout=timeout, check=False)
    output = proc.stdout + proc.stderr
    assert results.exists(), output[-4000:]
    return proc.returncode, output, json.loads(results.read_text())


def failure_text(result):
    """Everything a failed task shows the user (message and exception), for 'no traceback' checks."""
    return '%s\n%s\n%s' % (result.get('msg', ''), result.get('exception', ''), result.get('module_stderr', ''))
