"""interpreter: threads switch sooner."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import sys

import pytest

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import interpreter


def test_the_switch_interval_is_set_and_the_old_one_returned():
    before = sys.getswitchinterval()
    try:
        assert interpreter.quick_thread_switches(0.002) == before
        assert sys.getswitchinterval() == pytest.approx(0.002)
    finally:
        sys.setswitchinterval(before)
