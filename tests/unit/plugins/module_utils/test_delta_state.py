# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The delta state on disk: a head and a members file (delta_state), on a real temporary folder."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os

import pytest

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import delta_state, entra_reader, incremental


def sample_state():
    return {
        'version': entra_reader.STATE_VERSION, 'delta_link': 'https://graph/delta?token=1', 'filter': None,
        'beta_members': True, 'writeback_enabled_only': False, 'member_source': 'beta', 'full_read_at': 1.0,
        'groups': {
            'g1': {'id': 'g1', 'display_name': 'One', 'security_enabled': True, 'mail_enabled': False, 'group_types': [],
                   'member_ids': ['u1', 'u2']},
            'g2': {'id': 'g2', 'display_name': 'Two', 'security_enabled': True, 'mail_enabled': False, 'group_types': [],
                   'member_ids': ['u2']},
        },
        'objects': {'u1': {'id': 'u1', 'type': 'user'}, 'u2': {'id': 'u2', 'type': 'user'}},
        'last_run': {'mode': 'full'}, 'ad': {'usn': 5},
    }


def members_files(folder):
    return sorted(n for n in os.listdir(str(folder)) if '.members-' in n)


def test_saved_as_a_small_head_and_a_members_file(tmp_path):
    path = str(tmp_path / 'state.json')
    delta_state.save(path, sample_state())
    head = json.load(open(path))
    assert 'objects' not in head and all('member_ids' not in g for g in head['groups'].values())
    assert head['groups']['g1']['member_count'] == 2 and head['ad'] == {'usn': 5}
    (name,) = members_files(tmp_path)
    assert head['members_file']['file'] == name
    bulk = json.load(open(str(tmp_path / name)))
    assert bulk['token'] == head['members_file']['token'] and bulk['member_ids'] == {'g1': ['u1', 'u2'], 'g2': ['u2']}
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o600) and oct(os.stat(str(tmp_path / name)).st_mode & 0o777) == oct(0o600)


def test_loaded_head_hydrates_to_the_saved_state(tmp_path):
    path = str(tmp_path / 'state.json')
    delta_state.save(path, sample_state())
    loaded = delta_state.load(path)
    assert not delta_state.is_hydrated(loaded)
    delta_state.hydrate(loaded)
    assert delta_state.is_hydrated(loaded)
    loaded.pop(delta_state.MEMBERS_KEY)
    loaded.pop('members_file')
    assert loaded == sample_state()
    # one string per member id, shared with the objects' keys
    keys = dict((k, k) for k in loaded['objects'])
    assert all(keys[m] is m for g in loaded['groups'].values() for m in g['member_ids'])


def test_unhydrated_state_refuses_member_questions(tmp_path):
    """Asking a state whose member lists were not loaded for them is an error, never an empty list."""
    path = str(tmp_path / 'state.json')
    delta_state.save(path, sample_state())
    loaded = delta_state.load(path)
    with pytest.raises(ValueError):
        incremental.parents_of(loaded, ['u1'])
    with pytest.raises(ValueError):
        entra_reader.groups_from_state(loaded, 100, with_members={'g1'})
    # eligibility needs only the count, which the head keeps
    groups = entra_reader.groups_from_state(loaded, 1, with_members=set())
    assert [(g['id'], g['member_count'], g['eligible']) for g in groups] == [('g1', 2, False), ('g2', 1, True)]


def test_unchanged_members_are_not_written_again(tmp_path):
    """A state carrying the loaded members file (no member list changed) saves only its head."""
    path = str(tmp_path / 'state.json')
    delta_state.save(path, sample_state())
    before = members_files(tmp_path)
    mtime = os.stat(str(tmp_path / before[0])).st_mtime_ns
    loaded = delta_state.load(path)
    new = dict((k, v) for k, v in loaded.items() if k != 'groups')
    new['groups'] = dict(loaded['groups'])
    new[delta_state.MEMBERS_KEY] = delta_state.share_members(loaded, new['groups'])
    new['delta_link'] = 'https://graph/delta?token=2'
    delta_state.save(path, new)
    assert members_files(tmp_path) == before and os.stat(str(tmp_path / before[0])).st_mtime_ns == mtime
    again = delta_state.load(path)
    assert again['delta_link'].endswith('token=2')
    assert delta_state.hydrate(again)['groups']['g1']['member_ids'] == ['u1', 'u2']


def test_changed_members_get_a_new_file_and_the_old_one_goes(tmp_path):
    path = str(tmp_path / 'state.json')
    delta_state.save(path, sample_state())
    (old,) = members_files(tmp_path)
    changed = sample_state()
    changed['groups']['g2']['member_ids'] = ['u1', 'u2']
    delta_state.save(path, changed)
    (new,) = members_files(tmp_path)
    assert new != old
    assert delta_state.hydrate(delta_state.load(path))['groups']['g2']['member_ids'] == ['u1', 'u2']


def test_members_written_first_then_the_head_names_them(tmp_path):
    """``write_members`` (run while the AD mark is read back) writes only the new members file: the
    head on disk still names the old one, which stays, until ``save(..., written=)`` writes the head
    naming the new file and removes the old one."""
    path = str(tmp_path / 'state.json')
    delta_state.save(path, sample_state())
    (old,) = members_files(tmp_path)
    changed = sample_state()
    changed['groups']['g2']['member_ids'] = ['u1', 'u2']
    written = delta_state.write_members(path, changed)
    assert sorted(members_files(tmp_path)) == sorted([old, written['file']])
    assert delta_state.hydrate(delta_state.load(path))['groups']['g2']['member_ids'] == ['u2']   # the old state, whole
    assert delta_state.save(path, changed, written) == written
    assert members_files(tmp_path) == [written['file']]
    assert delta_state.hydrate(delta_state.load(path))['groups']['g2']['member_ids'] == ['u1', 'u2']


def test_write_members_writes_nothing_for_the_loaded_lists(tmp_path):
    path = str(tmp_path / 'state.json')
    delta_state.save(path, sample_state())
    before = members_files(tmp_path)
    loaded = delta_state.load(path)
    assert delta_state.write_members(path, loaded) is None
    assert members_files(tmp_path) == before


def test_an_unhydrated_state_without_its_file_is_not_saved(tmp_path):
    path = str(tmp_path / 'state.json')
    delta_state.save(path, sample_state())
    loaded = delta_state.load(path)
    loaded.pop(delta_state.MEMBERS_KEY)
    with pytest.raises(delta_state.DeltaStateError):
        delta_state.save(str(tmp_path / 'other.json'), loaded)


def test_missing_or_foreign_members_file_is_refused_with_the_way_out(tmp_path):
    path = str(tmp_path / 'state.json')
    delta_state.save(path, sample_state())
    (name,) = members_files(tmp_path)
    bulk = json.load(open(str(tmp_path / name)))
    bulk['token'] = 'someone-else'
    json.dump(bulk, open(str(tmp_path / name), 'w'))
    loaded = delta_state.load(path)
    with pytest.raises(delta_state.DeltaStateError, match='does not belong.*remove the delta state file'):
        delta_state.hydrate(loaded)
    os.unlink(str(tmp_path / name))
    with pytest.raises(delta_state.DeltaStateError, match='is missing.*remove the delta state file'):
        delta_state.load(path)


def test_a_state_of_the_previous_format_loads_as_is(tmp_path):
    """Version 1 kept everything in one file: it loads whole, and the reader's version check sends
    it to a full read (read_groups_incremental's ``no_state``)."""
    path = str(tmp_path / 'state.json')
    old = dict(sample_state(), version=1)
    json.dump(old, open(path, 'w'))
    assert delta_state.load(path) == old


def test_a_state_file_that_is_not_json_is_refused_with_the_way_out(tmp_path):
    path = tmp_path / 'state.json'
    path.write_text('{"half": ')
    with pytest.raises(delta_state.DeltaStateError, match='Cannot read the delta state file .*state.json: .*remove it to start'):
        delta_state.load(str(path))
    assert delta_state.load(str(tmp_path / 'none.json')) is None


def test_a_members_file_that_is_not_json_is_refused_with_the_way_out(tmp_path):
    path = str(tmp_path / 'state.json')
    delta_state.save(path, sample_state())
    (name,) = members_files(tmp_path)
    (tmp_path / name).write_text('not json')
    loaded = delta_state.load(path)
    with pytest.raises(delta_state.DeltaStateError, match='Cannot read the members file .*%s: .*remove the delta state file' % name):
        delta_state.hydrate(loaded)


# ---- review of the head + members file design (safety) -----------------------------------------

def changed_sample():
    changed = sample_state()
    changed['groups']['g2']['member_ids'] = ['u1', 'u2']
    return changed


def test_a_concurrent_runs_fresh_members_file_is_not_removed(tmp_path):
    """Two runs on one delta_state_path: run A has written its members file and not yet its head
    when run B saves. B removes the file its head replaced, not A's: A's head, written next, must
    find its members file."""
    path = str(tmp_path / 'state.json')
    delta_state.save(path, sample_state())
    (replaced,) = members_files(tmp_path)
    theirs = delta_state.members_path(path, 'a' * 32)
    json.dump(dict(token='a' * 32, member_ids={}, objects={}), open(theirs, 'w'))
    ours = delta_state.save(path, changed_sample())['file']
    assert os.path.exists(theirs), 'a concurrent run\'s members file, younger than its head, was removed'
    assert members_files(tmp_path) == sorted([ours, os.path.basename(theirs)]) and replaced not in members_files(tmp_path)


def test_an_orphan_members_file_is_removed_once_old(tmp_path):
    """A members file no head refers to (a run killed between its members file and its head) goes
    at the next save once older than ORPHAN_AGE."""
    path = str(tmp_path / 'state.json')
    delta_state.save(path, sample_state())
    orphan = delta_state.members_path(path, 'b' * 32)
    json.dump({}, open(orphan, 'w'))
    old = os.stat(orphan).st_mtime - delta_state.ORPHAN_AGE - 60
    os.utime(orphan, (old, old))
    loaded = delta_state.load(path)
    new = dict(loaded, groups=dict(loaded['groups']), delta_link='https://graph/delta?token=2')
    ref = delta_state.save(path, new)   # a no-op run: the members file is kept, the orphan goes
    assert members_files(tmp_path) == [ref['file']]


def test_killed_between_members_file_and_head_leaves_the_old_state_usable(tmp_path, monkeypatch):
    """A crash after the new members file and before the head: the old head and its members file
    are intact, and the next save collects the orphan (once old)."""
    path = str(tmp_path / 'state.json')
    delta_state.save(path, sample_state())
    real = delta_state.json_file.write_atomically

    def crash_on_head(target, data, prefix='.cloudsync-'):
        if target == path:
            raise KeyboardInterrupt('killed')
        return real(target, data, prefix)

    monkeypatch.setattr(delta_state.json_file, 'write_atomically', crash_on_head)
    with pytest.raises(KeyboardInterrupt):
        delta_state.save(path, changed_sample())
    monkeypatch.setattr(delta_state.json_file, 'write_atomically', real)
    assert len(members_files(tmp_path)) == 2
    loaded = delta_state.hydrate(delta_state.load(path))
    assert loaded['groups']['g2']['member_ids'] == ['u2']


def test_a_loaded_state_still_hydrates_after_another_run_replaced_its_members_file(tmp_path):
    """Run A loaded the head (member lists not read); run B saved changed member lists meanwhile and
    removed the members file A's head referred to. A reads the member lists it loaded (the file is
    held open from load on), and its save, sharing them, writes them to a new members file."""
    path = str(tmp_path / 'state.json')
    delta_state.save(path, sample_state())
    run_a = delta_state.load(path)
    delta_state.save(path, changed_sample())   # run B
    assert delta_state.hydrate(run_a)['groups']['g2']['member_ids'] == ['u2']
    run_a2 = delta_state.load(path)
    delta_state.save(path, sample_state())     # run C: run_a2's members file goes
    new = dict(run_a2, groups=dict(run_a2['groups']), delta_link='https://graph/delta?token=3')
    ref = delta_state.save(path, new)          # shares a members file that is gone: written anew
    assert os.path.exists(str(tmp_path / ref['file']))
    again = delta_state.hydrate(delta_state.load(path))
    assert again['delta_link'].endswith('token=3') and again['groups']['g2']['member_ids'] == ['u1', 'u2']


def test_a_renamed_head_saves_without_an_internal_error(tmp_path):
    """A head moved to another name still finds its members file; a no-op run saving it under the
    new name writes the member lists to a file named after it (the other name's file is left alone)."""
    path = str(tmp_path / 'state.json')
    delta_state.save(path, sample_state())
    (old,) = members_files(tmp_path)
    moved = str(tmp_path / 'moved.json')
    os.rename(path, moved)
    loaded = delta_state.load(moved)
    ref = delta_state.save(moved, dict(loaded, groups=dict(loaded['groups'])))
    assert ref['file'].startswith('moved.json.members-') and old in members_files(tmp_path)
    assert delta_state.hydrate(delta_state.load(moved))['objects'] == sample_state()['objects']


def test_a_head_without_its_members_file_reference_is_refused(tmp_path):
    """A head of this version that names no members file (edited by hand, truncated by a tool) is
    refused with the way out, not read as a state without members (a KeyError in the reader)."""
    path = str(tmp_path / 'state.json')
    delta_state.save(path, sample_state())
    head = json.load(open(path))
    head.pop('members_file')
    json.dump(head, open(path, 'w'))
    with pytest.raises(delta_state.DeltaStateError, match='state.json names no members file.*remove it'):
        delta_state.load(path)


def test_a_members_file_of_other_groups_is_refused(tmp_path):
    """A members file whose groups are not the head's (same token, a head edited or restored
    alone) is refused, naming the file."""
    path = str(tmp_path / 'state.json')
    delta_state.save(path, sample_state())
    (name,) = members_files(tmp_path)
    bulk = json.load(open(str(tmp_path / name)))
    bulk['member_ids'].pop('g2')
    json.dump(bulk, open(str(tmp_path / name), 'w'))
    with pytest.raises(delta_state.DeltaStateError, match='members file .*%s does not belong' % name):
        delta_state.hydrate(delta_state.load(path))


def test_unhydrated_objects_are_refused_not_empty(tmp_path):
    """incremental's readers of ``objects`` refuse a state whose member lists were not loaded,
    instead of taking every member for unknown; two states sharing one members file (a run in
    which Entra reported no change) have no changed object."""
    path = str(tmp_path / 'state.json')
    delta_state.save(path, sample_state())
    old = delta_state.load(path)
    new = dict(old, groups=dict(old['groups']))
    new[delta_state.MEMBERS_KEY] = delta_state.share_members(old, new['groups'])
    with pytest.raises(ValueError):
        incremental.state_members(new, ['u1'])
    assert incremental._changed_objects(old, new) == set()
    delta_state.hydrate(new)   # hydrated on one side only: still the same objects
    assert incremental._changed_objects(old, new) == set()
    assert incremental.state_members(new, ['u1']) == [{'id': 'u1', 'type': 'user'}]
    other = delta_state.load(path)
    with pytest.raises(ValueError):
        incremental._changed_objects(other, new)


def test_a_run_that_examines_every_group_does_not_read_the_old_member_lists(tmp_path, monkeypatch):
    """When every group is examined (``ids`` None: a full read in Entra, or an AD mark that cannot
    be trusted), nothing asks the old state for member lists (member_deltas and narrow_to run only
    for an incremental scope): its members file is not read, so a full read does not hold the old
    member lists beside the new ones (memory) nor fail on them."""
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import ad_changes, writeback
    path = str(tmp_path / 'state.json')
    delta_state.save(path, sample_state())
    old = delta_state.load(path)
    new = sample_state()   # as a full read returns it: member lists in memory
    monkeypatch.setattr(ad_changes, 'read_watermark', lambda ad: {'server': 'dc', 'invocation_id': 'x', 'usn': 9})
    monkeypatch.setattr(ad_changes, 'unusable_reason', lambda saved, mark, base, options=None: 'invocation_id_changed')
    scope = writeback.ad_scope(None, 'DC=corp', 'DC=corp', old, 'fingerprint')
    mark, ids, reason, unused = writeback.incremental_scope(scope, old, new, 100)
    assert ids is None and reason == 'invocation_id_changed'
    assert not delta_state.is_hydrated(old)
    assert [g['id'] for g in writeback.groups_from_state(new, 100, None)] == ['g1', 'g2']


@pytest.mark.parametrize('data', [
    {}, [], {'a': 1}, {'big': dict(('k%05d' % i, {'v': [i, None, 'é"\\']}) for i in range(4321)), 'small': {'x': 1}, 'n': None},
    {'big': dict((str(i), i) for i in range(2001)), 1: 'int key'},
    {'long': [{'i': i, 'l': [i, 'x']} for i in range(4001)], 'edge': list(range(2000)), 'one': list(range(2001)), 'e': []},
    {'result': {'groups': [{'id': i, 'm': ['x'] * 3} for i in range(4500)], 'summary': {'n': 1, 'deep': {1: 'int key'}}}},
])
def test_json_file_dump_writes_what_json_dump_writes(tmp_path, data):
    """The chunked writer gives the same JSON document as json.dump (keys in order, big dicts whole)."""
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import json_file
    path = tmp_path / 'out.json'
    json_file.write_atomically(str(path), data)
    assert json.loads(path.read_text()) == json.loads(json.dumps(data))
    assert list(json.loads(path.read_text())) == list(json.loads(json.dumps(data)))


class _Writes(object):
    def __init__(self):
        self.parts = []

    def write(self, text):
        self.parts.append(text)


def test_json_file_dump_writes_a_result_wrapped_in_one_key_as_it_writes_the_result():
    """ad_group_writeback rebuilds ``{'result': result}`` (or ``{'failure': ...}``) from its JSON: the
    wrapped result's group list is written a chunk at a time, never as one string (at xlarge the
    40 MB result encoded at once raised a first run's peak from 370 to 420 MB)."""
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import json_file
    result = {'changed': True, 'groups': [{'id': 'g%05d' % i, 'members_added': ['CN=u,DC=corp'] * 5} for i in range(9000)]}
    for data in (result, {'result': result}, {'failure': {'msg': 'x', 'details': result}}):
        out = _Writes()
        json_file.dump(data, out)
        assert json.loads(''.join(out.parts)) == data
        whole = len(json.dumps(result['groups']))
        assert max(len(p) for p in out.parts) < whole / 4


def lazy_sample():
    """sample_state as a full read makes it: member lists left in the groups read."""
    u1, u2 = {'id': 'u1', 'type': 'user'}, {'id': 'u2', 'type': 'user'}
    read = [dict(id='g1', display_name='One', security_enabled=True, mail_enabled=False, group_types=[], members=[u1, u2]),
            dict(id='g2', display_name='Two', security_enabled=True, mail_enabled=False, group_types=[], members=[u2])]
    state = sample_state()
    del state['objects']
    for entry in state['groups'].values():
        entry['member_count'] = len(entry.pop('member_ids'))
    return delta_state.lazy_state(state, read, entry_object)


def entry_object(member):
    return dict(member)


def test_a_full_reads_state_is_saved_from_its_groups_without_making_its_lists(tmp_path):
    """The members file of a lazy state is written from the groups read, never made in memory: the
    state stays lazy, and what is saved is what the hydrated state holds."""
    path = str(tmp_path / 'state.json')
    state = lazy_sample()
    assert delta_state.is_lazy(state) and not delta_state.is_hydrated(state)
    delta_state.save(path, state)
    assert delta_state.is_lazy(state) and 'member_ids' not in state['groups']['g1']
    head = json.load(open(path))
    assert '_member_groups' not in head and head['groups']['g1']['member_count'] == 2
    loaded = delta_state.hydrate(delta_state.load(path))
    expected = sample_state()
    assert loaded['objects'] == expected['objects']
    assert dict((g, e['member_ids']) for g, e in loaded['groups'].items()) == {'g1': ['u1', 'u2'], 'g2': ['u2']}
    assert delta_state.hydrate(state) is state and not delta_state.is_lazy(state)
    assert state['objects'] == expected['objects'] and state['groups'] == expected['groups']


def test_a_released_lazy_state_refuses_to_write_its_members_and_stays_as_it_was(tmp_path):
    """Once its groups' member lists are released (the writeback drops them after planning), a
    lazy state can no longer make a members file or hydrate: never a file of empty groups."""
    path = str(tmp_path / 'state.json')
    state = lazy_sample()
    delta_state.release_members(state)
    with pytest.raises(delta_state.DeltaStateError, match='released'):
        delta_state.write_members(path, state)
    assert os.listdir(str(tmp_path)) == []
    with pytest.raises(delta_state.DeltaStateError, match='released'):
        delta_state.hydrate(state)
    assert delta_state.is_lazy(state) and state['groups']['g1'] == {
        'id': 'g1', 'display_name': 'One', 'security_enabled': True, 'mail_enabled': False, 'group_types': [], 'member_count': 2}
    hydrated = sample_state()
    delta_state.release_members(hydrated)   # no-op: its lists are its own
    assert hydrated == sample_state()


def test_the_head_is_the_state_without_its_member_lists(tmp_path):
    """The head's group entries are made as they are written (never a copy of them all): each is
    its entry without member_ids, with their count."""
    path = str(tmp_path / 'state.json')
    state = sample_state()
    delta_state.save(path, state)
    head = json.load(open(path))
    expected = sample_state()
    for entry in expected['groups'].values():
        entry['member_count'] = len(entry.pop('member_ids'))
    assert head['groups'] == expected['groups']
    assert state == sample_state()


def test_a_lazy_state_keeps_the_last_dict_read_of_an_object():
    u1_old, u1_new = {'id': 'u1', 'type': 'user', 'display_name': 'old'}, {'id': 'u1', 'type': 'user', 'display_name': 'new'}
    state = delta_state.lazy_state({'groups': {'g1': {'member_count': 1}, 'g2': {'member_count': 1}}},
                                   [{'id': 'g1', 'members': [u1_old]}, {'id': 'g2', 'members': [u1_new]}], entry_object)
    assert delta_state.hydrate(state)['objects'] == {'u1': u1_new}


@pytest.mark.parametrize('count', [0, 1, 2000, 2001, 4500])
def test_json_file_pairs_are_written_as_their_object(tmp_path, count):
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import json_file
    pairs = [('k%d' % i, {'v': i}) for i in range(count)]
    path = tmp_path / 'out.json'
    json_file.write_atomically(str(path), {'a': 1, 'p': json_file.Pairs(iter(pairs)), 'z': None})
    assert json.loads(path.read_text()) == {'a': 1, 'p': dict(pairs), 'z': None}


def test_json_file_pairs_of_long_lists_are_written_a_few_at_a_time(tmp_path, monkeypatch):
    # Member lists are chunked by their items too, so no chunk's text holds most of a large state.
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import json_file
    pairs = [('g%d' % i, ['m%d' % j for j in range(i * 7)]) for i in range(60)]
    sizes = []
    real = json_file.json.dumps
    monkeypatch.setattr(json_file.json, 'dumps', lambda value: sizes.append(
        sum(len(v) for v in value.values()) if isinstance(value, dict) else 0) or real(value))
    monkeypatch.setattr(json_file, 'CHUNK_ITEMS', 500)
    path = tmp_path / 'out.json'
    json_file.write_atomically(str(path), {'p': json_file.Pairs(iter(pairs))})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {'p': dict(pairs)}
    assert len(sizes) >= 20 and max(sizes) < 500 + 60 * 7
