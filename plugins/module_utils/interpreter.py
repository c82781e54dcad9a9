# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the module's Python interpreter is set for a writeback: its garbage collector.

A setting of the whole process, made once by the module's ``main`` after its imports
(never by the engine itself, which tests and benchmarks also run in their own processes).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import gc

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
