"""beside(): two steps at once, the caller's step on the caller's thread, its error first."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import threading
import time

import pytest

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.beside import beside


def test_both_results_and_the_threads_they_ran_on():
    caller = threading.current_thread()
    ran = {}

    def main():
        ran['main'] = threading.current_thread()
        return 1

    def helper():
        ran['helper'] = threading.current_thread()
        return 2
    assert beside(main, helper) == (1, 2)
    assert ran['main'] is caller and ran['helper'] is not caller
    assert beside(main) == (1, None)


def test_the_callers_error_is_raised_once_the_helper_is_done():
    done = []

    def helper():
        time.sleep(0.2)
        done.append(True)
        raise ValueError('helper')

    def main():
        raise KeyError('main')
    with pytest.raises(KeyError):
        beside(main, helper)
    assert done == [True]


def test_the_helpers_error_when_the_caller_succeeds():
    def helper():
        raise ValueError('helper')
    with pytest.raises(ValueError, match='helper'):
        beside(lambda: 1, helper)
