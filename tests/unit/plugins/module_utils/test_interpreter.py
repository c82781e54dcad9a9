"""interpreter: the collector leaves the startup objects alone; threads switch sooner."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import gc
import sys
import weakref

import pytest

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import interpreter


def test_the_collector_is_asked_to_freeze_when_it_can(monkeypatch):
    frozen = []
    monkeypatch.setattr(gc, 'freeze', lambda: frozen.append(True))
    assert interpreter.freeze_startup_objects() is True
    assert frozen == [True]
    monkeypatch.delattr(gc, 'freeze')
    assert interpreter.freeze_startup_objects() is False   # Python before 3.7


@pytest.mark.skipif(not hasattr(gc, 'unfreeze'), reason='gc.freeze is Python 3.7+')
def test_a_frozen_object_is_freed_when_its_last_reference_goes():
    class Held(object):
        pass
    held = Held()
    gone = weakref.ref(held)
    try:
        interpreter.freeze_startup_objects()
        assert gc.get_freeze_count() > 0
        del held
        assert gone() is None   # reference counting still frees it: nothing is kept alive
    finally:
        gc.unfreeze()


def test_the_switch_interval_is_set_and_the_old_one_returned():
    before = sys.getswitchinterval()
    try:
        assert interpreter.quick_thread_switches(0.002) == before
        assert sys.getswitchinterval() == pytest.approx(0.002)
    finally:
        sys.setswitchinterval(before)
