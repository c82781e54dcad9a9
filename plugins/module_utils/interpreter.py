# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the module's Python interpreter is set for a writeback: its garbage collector and how soon a
thread waiting for the interpreter gets it.

Both are settings of the whole process, made once by the module's ``main`` after its imports
(never by the engine itself, which tests and benchmarks also run in their own processes).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import gc
import sys

# Seconds a thread waiting for the interpreter lets the running thread go on before asking it to
# yield (CPython's default is 0.005). See quick_thread_switches.
SWITCH_INTERVAL = 0.001


def freeze_startup_objects():
    """Leave every object that exists now out of the garbage collector's later passes
    (``gc.freeze``); returns whether it could (Python 3.7 and later).

    Called once the module's imports are done: ansible-core, ldap3, requests, msal and this
    collection are some 45,000 objects that live as long as the process. CPython's collector walks
    all of them again in each of its full passes, and a run that builds hundreds of thousands of
    objects (Graph's replies, the delta state, LDAP answers) makes many such passes. Freezing does
    not keep anything alive: objects are still freed when their last reference goes, only a cycle
    among the frozen ones would never be collected. Measured with ``benchmarks/gc_cost.py`` (the
    large benchmark tenant's first-run plan, check mode, each run in a fresh process, alternated):
    4.99 and 4.71 s of CPU frozen against 5.33 and 5.06 s without, the peak RSS the same (130 MB)."""
    freeze = getattr(gc, 'freeze', None)
    if freeze is None:
        return False
    freeze()
    return True


def quick_thread_switches(interval=SWITCH_INTERVAL):
    """Make a thread that waits for the interpreter get it within ``interval`` seconds
    (``sys.setswitchinterval``); returns the interval it replaced.

    The writes wait on the DC, one request at a time, while other threads of the run decode
    (Graph's replies and the users' resolution while a first run writes early, the members file
    written beside a delta run's writes). CPython lets a running thread keep the interpreter for the
    whole switch interval (5 ms by default) before a thread whose reply has arrived gets it: every
    LDAP request made while another thread computes waited up to that long again, about the DC's own
    time for a member change on the lab. Measured with ``tools/bench.sh --size large --first-repeat 2
    --incremental-repeat 3 --variant <a checkout without it>`` (``large-20261207T202618Z.json``,
    each pair from the same lab snapshot): the incremental run took 0.891, 0.967 and 0.976 times
    the variant's; the first runs 0.986 and 1.081 times (no effect beyond the machine's drift)."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(interval)
    return previous
