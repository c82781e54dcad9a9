# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The process's memory on glibc: one malloc arena, and freed memory given back before the exit.

glibc gives a thread that allocates while another holds the main arena an arena of its own (up to
eight per core), and memory freed in an arena stays with it. The writeback decodes Graph's replies
on ``graph_parallelism`` threads and resolves users on two LDAP connections in threads: each left
tens of megabytes that no later step of the run could use. With one arena, what one step frees the
next one reuses. Measured with ``benchmarks/memory_phases.py --size xlarge --state`` (check mode,
20,000 groups, 1.9 million memberships), with ``MALLOC_ARENA_MAX=1`` set before Python started
(which a module cannot do; this call is the same from inside): peak RSS 521 -> 458 MB, the run no
slower (73-87 s either way on the shared 2-core machine).

Python's own small objects are not concerned (pymalloc serves them under the GIL); the threads
share glibc's lock only for larger blocks (reply bodies, lists), which they take under the GIL
anyway. Elsewhere (musl, macOS) nothing is done.

Once the run is over only its result is left, but what the run freed stays in the process (glibc
and CPython keep it for reuse), and what comes next cannot reuse it: Ansible's ``exit_json`` holds
the result's JSON twice while it prints it (``json.dumps``, then ``'\\n%s' %``), and at 20,000
groups each is larger than the largest block glibc serves from its heap (32 MB), so both are new
memory on top of what the run kept. The module therefore gets its result through
``rebuilt_in_fresh_memory``: the result is rebuilt from its JSON, and the memory the run held is
given back (``release_free_memory``) in between. Measured with ``memory_phases.py --size xlarge
--state`` (check mode, ansible-core's exit included): RSS 427 MB when the run returns, 213 MB once
the result is rebuilt; the exit, which had been the peak (553 MB), now stays under the run's own
(434 MB, with the planner and result changes made alongside).
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import gc
import json
import sys
import tempfile

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import json_file

M_ARENA_MAX = -8   # glibc's malloc.h


def limit_malloc_arenas(count=1):
    """Ask glibc for at most ``count`` malloc arenas (arenas already made stay). True when glibc
    took it; False elsewhere, or when it cannot be asked."""
    return _glibc_call('mallopt', M_ARENA_MAX, int(count))   # M_ARENA_MAX is glibc's


def _glibc_call(name, *args):
    """``bool`` of glibc's function ``name`` called with ``args``; False off glibc or when it cannot
    be called."""
    if not sys.platform.startswith('linux'):
        return False
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version   # pylint: disable=pointless-statement  # glibc only
        return bool(getattr(libc, name)(*args))
    except (ImportError, OSError, AttributeError, TypeError):
        return False


def release_free_memory():
    """Collect garbage, then give the free pages of the heap back to the system (glibc's
    ``malloc_trim(0)``). True when glibc did give some back; False when there was nothing to give,
    or elsewhere."""
    gc.collect()
    return _glibc_call('malloc_trim', 0)


def rebuilt_in_fresh_memory(make, directory=None):
    """``make()``'s result (a JSON-able dict) rebuilt from its JSON, with the memory the original
    held given back in between.

    A module's result is made last, out of objects (strings, lists) allocated all through the run
    and scattered over memory the run has otherwise freed; CPython gives an arena of its small
    objects back to the system only once all of it is free, so a result of 20,000 groups kept most
    of the run's memory in the process (359 MB) while ``exit_json`` added its JSON twice on top.
    Written to an unlinked temporary file (in ``directory``) and read back, the result holds only
    its own size (the file is gone once read; mode 0600 meanwhile). Anything but JSON types would
    change on the way (a tuple becomes a list): a result that cannot be written as JSON, or a file
    that cannot be written, leaves the result as it is."""
    held = [make()]
    try:
        handle = tempfile.TemporaryFile('w+', prefix='.cloudsync-result-', dir=directory)
    except (IOError, OSError):
        return held.pop()
    with handle:
        try:
            json_file.dump(held[0], handle)
            handle.flush()
        except (TypeError, ValueError, IOError, OSError):
            return held.pop()
        del held[:]
        release_free_memory()
        handle.seek(0)
        return json.load(handle)
