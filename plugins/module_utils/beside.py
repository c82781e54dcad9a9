# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Two steps at once: one on the caller's thread, one in a helper thread (steps that wait on
different servers and need nothing from each other)."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

from concurrent.futures import ThreadPoolExecutor


def beside(main, helper=None):
    """Run ``helper()`` in a thread while ``main()`` runs on this one; ``(main's result, helper's
    result)`` (None without ``helper``). The step that allocates most belongs on this thread:
    another thread's allocations go to another malloc arena (a higher peak RSS). ``main``'s error is
    raised first, once the helper is done (it may still use a connection the caller closes next);
    then the helper's."""
    if helper is None:
        return main(), None
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(helper)
        try:
            result = main()
        except BaseException:
            future.exception()
            raise
        return result, future.result()
