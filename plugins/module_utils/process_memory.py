# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One malloc arena for the whole process, on glibc.

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
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import sys

M_ARENA_MAX = -8   # glibc's malloc.h


def limit_malloc_arenas(count=1):
    """Ask glibc for at most ``count`` malloc arenas (arenas already made stay). True when glibc
    took it; False elsewhere, or when it cannot be asked."""
    if not sys.platform.startswith('linux'):
        return False
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version   # pylint: disable=pointless-statement  # glibc only: M_ARENA_MAX is glibc's
        return bool(libc.mallopt(M_ARENA_MAX, int(count)))
    except (ImportError, OSError, AttributeError, TypeError):
        return False
