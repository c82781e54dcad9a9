# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ad_changes against the lab's real Samba AD DC: the uSNChanged high-water mark sees every kind of
manual change to a managed group (member added, renamed, moved, deleted), and nothing else.

Microsoft's method: https://learn.microsoft.com/en-us/windows/win32/ad/polling-for-changes-using-usnchanged
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import uuid

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import ad_changes
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_codecs import anchor_for

from writeback_helpers import new_id


def _managed(corp_dir, sandbox, name):
    gid = new_id()
    dn = corp_dir.add_group('CN=%s,%s' % (name, sandbox), **{'msDS-ExternalDirectoryObjectId': anchor_for(gid)})
    return gid, dn


def _changed_ids(corp_dir, corp, mark, saved=None):
    changed = ad_changes.read_changed_groups(corp_dir.client, corp.base_dn, mark['usn'])
    return ad_changes.groups_to_reread(changed, saved or {})


def test_watermark_names_the_dc_and_grows(corp, corp_dir, sandbox):
    first = ad_changes.read_watermark(corp_dir.client)
    assert first['server'] == corp.dc_hostname.lower()
    assert len(first['invocation_id']) == 36
    _managed(corp_dir, sandbox, 'grow')
    second = ad_changes.read_watermark(corp_dir.client)
    assert second['invocation_id'] == first['invocation_id']
    assert second['usn'] > first['usn']


def test_each_manual_change_is_seen(corp, corp_dir, sandbox):
    member_gid, member_dn = _managed(corp_dir, sandbox, 'member-added')
    rename_gid, rename_dn = _managed(corp_dir, sandbox, 'renamed')
    move_gid, move_dn = _managed(corp_dir, sandbox, 'moved')
    delete_gid, delete_dn = _managed(corp_dir, sandbox, 'deleted')
    quiet_gid, unused = _managed(corp_dir, sandbox, 'quiet')
    other = corp_dir.make_ou('elsewhere', parent=sandbox)
    ours = set([member_gid, rename_gid, move_gid, delete_gid, quiet_gid])
    mark = ad_changes.read_watermark(corp_dir.client)
    assert _changed_ids(corp_dir, corp, mark) & ours == set()

    corp_dir.modify(member_dn, {'member': [('add', [corp.identities[0]['dn']])]})
    corp_dir.client.modify_dn(rename_dn, 'CN=renamed by hand')
    corp_dir.client.modify_dn(move_dn, 'CN=moved', new_superior=other)
    corp_dir.client.delete(delete_dn)

    # (other groups of the shared lab may change meanwhile: only ours are compared)
    assert _changed_ids(corp_dir, corp, mark) & ours == set([member_gid, rename_gid, move_gid, delete_gid])


def test_anchor_removed_by_hand_is_found_by_the_remembered_guid(corp, corp_dir, sandbox):
    gid, dn = _managed(corp_dir, sandbox, 'unanchored')
    guid = ad_changes.read_changed_groups(corp_dir.client, corp.base_dn, 0)
    guid = [c['object_guid'] for c in guid if c['group_id'] == gid][0]
    mark = ad_changes.read_watermark(corp_dir.client)
    corp_dir.modify(dn, {'msDS-ExternalDirectoryObjectId': [('replace', [])]})
    assert gid not in _changed_ids(corp_dir, corp, mark)
    assert gid in _changed_ids(corp_dir, corp, mark, saved={'managed': {guid: gid}})


def test_own_writes_are_not_changes_but_a_later_edit_is(corp, corp_dir, sandbox):
    mark = ad_changes.read_watermark(corp_dir.client)
    gid, dn = _managed(corp_dir, sandbox, 'ours')
    own = dict((c['object_guid'], c['usn']) for c in ad_changes.read_changed_groups(corp_dir.client, corp.base_dn, mark['usn'])
               if c['group_id'] == gid)
    assert gid not in _changed_ids(corp_dir, corp, mark, saved={'own_writes': own})
    corp_dir.modify(dn, {'description': [('replace', ['edited by hand'])]})
    assert gid in _changed_ids(corp_dir, corp, mark, saved={'own_writes': own})


def test_users_changed_since(corp, corp_dir, sandbox):
    mark = ad_changes.read_watermark(corp_dir.client)
    assert ad_changes.users_changed_since(corp_dir.client, corp.base_dn, mark['usn']) is False
    corp_dir.client.add('CN=late user,%s' % sandbox, {'objectClass': 'user', 'sAMAccountName': 'late%s' % uuid.uuid4().hex[:8]})
    assert ad_changes.users_changed_since(corp_dir.client, corp.base_dn, mark['usn']) is True
