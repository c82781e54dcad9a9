# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the module's Python interpreter is set for a writeback: how soon a thread waiting for the
interpreter gets it.

A setting of the whole process, made once by the module's ``main`` (never by the engine itself,
which tests and benchmarks also run in their own processes).

The garbage collector is left as Python sets it. ``benchmarks/gc_cost.py`` (the large tenant's
first-run plan, check mode, a fresh process per run, modes alternated, nothing else running)
measured: ``gc.freeze()`` after the imports 5.75-7.03 s of CPU against 5.68-6.67 s by default (no
gain); thresholds raised to (100000, 20, 100) 4.98-5.24 s against 5.29-5.82 s, with a higher peak
(132.1 against 130.8 MB); no collector 4.72-5.85 s and 137-142 MB. The xlarge first run peaks at
399 MB of its 400 MB bound, so no memory was traded for that CPU.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import sys

# Seconds a thread waiting for the interpreter lets the running thread go on before asking it to
# yield (CPython's default is 0.005). See quick_thread_switches.
SWITCH_INTERVAL = 0.001


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
