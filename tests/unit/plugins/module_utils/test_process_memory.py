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


def _rss_kb():
    with open('/proc/self/status') as fh:
        for line in fh:
            if line.startswith('VmRSS'):
                return int(line.split()[1])
    raise AssertionError('no VmRSS')


@pytest.mark.skipif(platform.libc_ver()[0] != 'glibc', reason='glibc only')
def test_freed_heap_memory_goes_back_to_the_system():
    # 64 MB in 4 KB blocks (glibc's heap, not pymalloc, not mmap), all freed but the last: the heap's
    # top is held, so glibc cannot shrink it on its own and keeps the pages until malloc_trim.
    blocks = [bytearray(4096) for unused in range(16384)]
    last = blocks[-1]
    del blocks
    before = _rss_kb()
    assert process_memory.release_free_memory() is True
    assert before - _rss_kb() > 32 * 1024
    assert len(last) == 4096


def test_nothing_is_released_off_linux(monkeypatch):
    monkeypatch.setattr(process_memory.sys, 'platform', 'darwin')
    assert process_memory.release_free_memory() is False


def test_the_module_releases_before_it_exits(monkeypatch):
    from ansible.module_utils import basic
    from ansible.module_utils.testing import patch_module_args
    from ansible_collections.hybrid_identity.cloud_sync.plugins.modules import ad_group_writeback
    steps = []
    monkeypatch.setattr(ad_group_writeback, 'run_writeback', lambda *a, **kw: steps.append('run') or
                        dict(changed=False, groups=[], plan=[], warnings=[]))
    monkeypatch.setattr(ad_group_writeback, 'release_free_memory', lambda: steps.append('release'))

    def exit_json(self, **result):
        steps.append('exit')
        raise SystemExit(0)
    monkeypatch.setattr(basic.AnsibleModule, 'exit_json', exit_json)
    args = dict(all_groups=True, domain_controllers=['127.0.0.2'], ad_user='admin', ad_password='p', tenant_id='t',
                client_id='c', client_secret='s', search_base='OU=A,DC=x', target_ou='OU=A,DC=x')
    with patch_module_args(args), pytest.raises(SystemExit):
        ad_group_writeback.main()
    assert steps == ['run', 'release', 'exit']
