"""Selected mode. With prune, only the selected groups are in scope. The AD copy of a selected
id that no longer exists in Entra is deleted; managed groups that were not selected (another
run's selection, in the same search base) are never read, reported or deleted. A display name
that matches several groups selects none of them."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import uuid

import pytest

from writeback_helpers import Directory, entra_group, entra_user, graph_args, run

PREFIX = 'SP %s ' % uuid.uuid4().hex[:6]


@pytest.fixture(autouse=True)
def _no_ambient_ca_bundle(monkeypatch):
    monkeypatch.setenv('REQUESTS_CA_BUNDLE', '/nonexistent/ca-bundle.pem')


def test_selected_prune_deletes_only_selected_groups_gone_from_entra(corp, graph_tenant, graph_emulator_factory):
    ids = corp.identities
    b = graph_tenant()
    user = b.synced_user(ids[0]['sam_account_name'], object_guid=ids[0]['object_guid'], object_sid=ids[0]['object_sid'],
                         domain=ids[0]['domain'], dn=ids[0]['dn'], upn=ids[0]['user_principal_name'])
    alive = b.group(PREFIX + 'Alive', members=[user])
    emu = graph_emulator_factory(b.build())
    directory = Directory(corp)
    ou = directory.make_ou('t-selprune-%s' % uuid.uuid4().hex[:8])
    try:
        # AD already holds three managed groups: one still in Entra, one deleted in Entra (selected
        # below), one deleted in Entra but managed by another run's selection (not selected).
        gone_selected = entra_group(PREFIX + 'Gone selected', [entra_user(ids[1])])
        other_run = entra_group(PREFIX + 'Other run', [entra_user(ids[2])])
        alive_copy = entra_group(PREFIX + 'Alive', [entra_user(ids[0])], group_id=alive)
        seeded = run(corp, [alive_copy, gone_selected, other_run], target_ou=ou, search_base=ou)
        assert seeded['summary']['created'] == 3, seeded['groups']

        args = graph_args(emu)
        args.update(target_ou=ou, search_base=ou, groups=[alive, gone_selected['id']], prune=True)
        check = run(corp, None, check=True, **args)
        by_id = dict((g['id'], g) for g in check['groups'])
        assert by_id[gone_selected['id']]['action'] == 'deleted'
        assert other_run['id'] not in by_id, 'a group that was not selected is out of this run entirely'
        assert directory.by_anchor(gone_selected['id']), 'check mode must not delete'

        result = run(corp, None, **args)
        assert result['summary']['deleted'] == 1, result['groups']
        assert directory.by_anchor(gone_selected['id']) == []
        assert len(directory.by_anchor(other_run['id'])) == 1, 'prune in selected mode deleted a group that was not selected'
        assert len(directory.by_anchor(alive)) == 1
    finally:
        directory.remove_tree(ou)
        directory.close()


def test_a_display_name_matching_several_groups_writes_none_of_them(corp, graph_tenant, graph_emulator_factory):
    b = graph_tenant()
    twin_a = b.group(PREFIX + 'Twin')
    twin_b = b.group(PREFIX + 'Twin')
    single = b.group(PREFIX + 'Single')
    emu = graph_emulator_factory(b.build())
    directory = Directory(corp)
    ou = directory.make_ou('t-ambiguous-%s' % uuid.uuid4().hex[:8])
    try:
        args = graph_args(emu)
        args.update(target_ou=ou, search_base=ou, groups=[PREFIX + 'Twin', PREFIX + 'Single'])
        result = run(corp, None, **args)
        assert [g['id'] for g in result['groups']] == [single]
        assert result['ambiguous'] == [dict(name=PREFIX + 'Twin', ids=sorted([twin_a, twin_b]))]
        assert any('Twin' in w and 'select them by id' in w for w in result['warnings'])
        assert result['not_found'] == []
        assert directory.by_anchor(twin_a) == [] and directory.by_anchor(twin_b) == []

        args.update(groups=[PREFIX + 'Twin', twin_a])
        by_id = run(corp, None, **args)
        assert [g['id'] for g in by_id['groups']] == [twin_a], 'a group also selected by id stays selected'
        assert len(directory.by_anchor(twin_a)) == 1 and directory.by_anchor(twin_b) == []
    finally:
        directory.remove_tree(ou)
        directory.close()
