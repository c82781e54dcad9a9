"""process_memory: glibc is asked for one malloc arena; nothing is asked elsewhere."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
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


def test_the_module_rebuilds_its_result_before_it_exits(monkeypatch):
    from ansible.module_utils import basic
    from ansible.module_utils.testing import patch_module_args
    from ansible_collections.hybrid_identity.cloud_sync.plugins.modules import ad_group_writeback
    steps = []
    monkeypatch.setattr(ad_group_writeback, 'quick_thread_switches', lambda: steps.append('switches'))
    monkeypatch.setattr(ad_group_writeback, 'run_writeback', lambda *a, **kw: steps.append('run') or
                        dict(changed=False, groups=[], plan=[], warnings=[]))

    def rebuilt(make):
        out = make()
        steps.append('rebuilt')
        return out
    monkeypatch.setattr(ad_group_writeback, 'rebuilt_in_fresh_memory', rebuilt)

    def exit_json(self, **result):
        steps.append('exit')
        raise SystemExit(0)
    monkeypatch.setattr(basic.AnsibleModule, 'exit_json', exit_json)
    args = dict(all_groups=True, domain_controllers=['127.0.0.2'], ad_user='admin', ad_password='p', tenant_id='t',
                client_id='c', client_secret='s', search_base='OU=A,DC=x', target_ou='OU=A,DC=x')
    with patch_module_args(args), pytest.raises(SystemExit):
        ad_group_writeback.main()
    assert steps == ['switches', 'run', 'rebuilt', 'exit']


def test_a_rebuilt_result_is_the_same_json():
    result = {'changed': True, 'groups': [{'id': 'g', 'dn': 'CN=é,DC=x', 'members_added': ['a'] * 3}] * 2500,
              'cycles': [('g1', 'g2')], 'n': None}
    assert process_memory.rebuilt_in_fresh_memory(lambda: result) == json.loads(json.dumps(result))


def test_a_result_that_is_not_json_or_cannot_be_written_is_kept(tmp_path):
    odd = {'ids': {'a', 'b'}}
    assert process_memory.rebuilt_in_fresh_memory(lambda: odd) is odd
    plain = {'a': 1}
    assert process_memory.rebuilt_in_fresh_memory(lambda: plain, directory=str(tmp_path / 'missing')) is plain


def test_the_run_raises_through():
    def failing():
        raise ValueError('the run failed')
    with pytest.raises(ValueError):
        process_memory.rebuilt_in_fresh_memory(failing)


@pytest.mark.skipif(platform.libc_ver()[0] != 'glibc', reason='glibc only')
def test_a_rebuilt_result_does_not_hold_the_memory_around_its_pieces():
    # Like a run's result: a few objects kept out of many made (here 1 in 64 of 400,000 dicts, about
    # 100 MB), each keeping its arena of freed neighbours. Rebuilt, it holds its own size.
    def run():
        made = [{'id': 'object %d' % i, 'n': i} for i in range(400000)]
        return {'kept': made[::64]}
    before = _rss_kb()
    held = run()
    process_memory.release_free_memory()
    holding = _rss_kb() - before
    assert holding > 40 * 1024, 'the kept pieces hold most of what was made'
    del held
    process_memory.release_free_memory()
    rebuilt = process_memory.rebuilt_in_fresh_memory(run)
    assert len(rebuilt['kept']) == 6250
    assert _rss_kb() - before < holding / 4
