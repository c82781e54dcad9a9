"""process_memory: glibc is asked for one malloc arena; nothing is asked elsewhere."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import platform

import pytest

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import process_memory


@pytest.mark.skipif(platform.libc_ver()[0] != 'glibc', reason='glibc only')
def test_glibc_takes_the_arena_limit():
    assert process_memory.limit_malloc_arenas() is True


def test_nothing_is_asked_off_linux(monkeypatch):
    monkeypatch.setattr(process_memory.sys, 'platform', 'darwin')
    assert process_memory.limit_malloc_arenas() is False


def test_a_writeback_run_asks_before_anything_else(monkeypatch, tmp_path):
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import writeback
    asked = []
    monkeypatch.setattr(writeback, 'limit_malloc_arenas', lambda: asked.append(True))
    with pytest.raises(writeback.WritebackError):
        # refused at its first check (an output path in a missing directory): the arenas were asked for before
        writeback.run_writeback({'report_path': str(tmp_path / 'missing' / 'report.json')})
    assert asked == [True]
