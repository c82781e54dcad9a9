"""Nested groups in selected mode against the lab and the HTTPS Graph emulator (issue 11, item 5).

Cloud Sync writes back a cloud security group nested in a selected group too, "only the nested
group will be written back and not its members", and links it as a member of the parent
(https://learn.microsoft.com/en-us/entra/identity/hybrid/cloud-sync/how-provisioning-to-active-directory-works,
"Nested group membership behavior"). Unless the nested group is selected itself, its AD members
are neither added nor removed.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import uuid

import pytest

from writeback_helpers import Directory, dn_key, graph_args, run, values

PREFIX = 'NST %s ' % uuid.uuid4().hex[:6]


@pytest.fixture(autouse=True)
def _no_ambient_ca_bundle(monkeypatch):
    monkeypatch.setenv('REQUESTS_CA_BUNDLE', '/nonexistent/ca-bundle.pem')


def synced(b, identity):
    return b.synced_user(identity['sam_account_name'], object_guid=identity['object_guid'], object_sid=identity['object_sid'],
                         domain=identity['domain'], dn=identity['dn'], upn=identity['user_principal_name'])


def test_nested_group_of_a_selected_group_is_written_without_members_and_linked(corp, graph_tenant, graph_emulator_factory):
    ids = corp.identities
    b = graph_tenant()
    parent_user, child_user = synced(b, ids[10]), synced(b, ids[11])
    child = b.group(PREFIX + 'Child', members=[child_user], id=str(uuid.uuid4()))
    parent = b.group(PREFIX + 'Parent', members=[child, parent_user], id=str(uuid.uuid4()))
    emu = graph_emulator_factory(b.build())
    directory = Directory(corp)
    ou = directory.make_ou('t-nested-%s' % uuid.uuid4().hex[:8])
    try:
        args = graph_args(emu)
        args.update(target_ou=ou, search_base=ou, groups=[parent])
        result = run(corp, None, **args)
        by_id = dict((g['id'], g) for g in result['groups'])
        assert by_id[child]['action'] == 'created' and by_id[child]['nested_only'] is True, result['groups']
        assert by_id[parent]['action'] == 'created'

        child_ad = directory.one(child, ou)
        parent_ad = directory.one(parent, ou)
        assert list(values(child_ad, 'member')) == [], 'the nested group is written without its members'
        assert directory.member_keys(parent_ad) == set([dn_key(child_ad['dn']), dn_key(ids[10]['dn'])])

        again = run(corp, None, **args)
        assert again['changed'] is False and set(g['action'] for g in again['groups']) == {'unchanged'}

        # Members added to the nested group by hand stay: its membership is not managed.
        directory.modify(child_ad['dn'], {'member': [('add', [ids[12]['dn']])]})
        kept = run(corp, None, **args)
        assert kept['changed'] is False
        assert directory.member_keys(directory.one(child, ou)) == set([dn_key(ids[12]['dn'])])

        # Selected itself, the nested group gets its own members (authoritative).
        args.update(groups=[parent, child])
        both = run(corp, None, **args)
        child_rep = dict((g['id'], g) for g in both['groups'])[child]
        assert not child_rep.get('nested_only') and child_rep['action'] == 'updated'
        assert directory.member_keys(directory.one(child, ou)) == set([dn_key(ids[11]['dn'])])
        assert directory.member_keys(directory.one(parent, ou)) == set([dn_key(child_ad['dn']), dn_key(ids[10]['dn'])])
    finally:
        directory.remove_tree(ou)
        directory.close()
