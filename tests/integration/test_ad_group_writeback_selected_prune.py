"""Selected mode. Only the selected groups (and the groups nested in them) are written. With
prune (the default), the AD copy of a group deleted in Entra is deleted whether or not this run
selects it (Cloud Sync deletes the AD group of a hard-deleted group:
https://learn.microsoft.com/en-us/entra/identity/hybrid/cloud-sync/how-provisioning-to-active-directory-works);
managed groups of other selections whose Entra group still exists are neither reported nor
deleted (out_of_scope: keep). A display name that matches several groups selects none of them."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import uuid

import pytest

from writeback_helpers import Directory, entra_group, entra_user, graph_args, run

PREFIX = 'SP %s ' % uuid.uuid4().hex[:6]


@pytest.fixture(autouse=True)
def _no_ambient_ca_bundle(monkeypatch):
    monkeypatch.setenv('REQUESTS_CA_BUNDLE', '/nonexistent/ca-bundle.pem')


def test_selected_prune_deletes_groups_gone_from_entra_and_keeps_other_selections(corp, graph_tenant, graph_emulator_factory):
    ids = corp.identities
    b = graph_tenant()
    user = b.synced_user(ids[0]['sam_account_name'], object_guid=ids[0]['object_guid'], object_sid=ids[0]['object_sid'],
                         domain=ids[0]['domain'], dn=ids[0]['dn'], upn=ids[0]['user_principal_name'])
    alive = b.group(PREFIX + 'Alive', members=[user], id=str(uuid.uuid4()))
    other_run = b.group(PREFIX + 'Other run', id=str(uuid.uuid4()))
    emu = graph_emulator_factory(b.build())
    directory = Directory(corp)
    ou = directory.make_ou('t-selprune-%s' % uuid.uuid4().hex[:8])
    try:
        # AD already holds four managed groups: one still in Entra (selected), one deleted in Entra
        # (selected below), one deleted in Entra and selected by no run any more, and one still in
        # Entra managed by another run's selection (not selected).
        gone_selected = entra_group(PREFIX + 'Gone selected', [entra_user(ids[1])])
        gone_deselected = entra_group(PREFIX + 'Gone deselected', [entra_user(ids[3])])
        other_copy = entra_group(PREFIX + 'Other run', [entra_user(ids[2])], group_id=other_run)
        alive_copy = entra_group(PREFIX + 'Alive', [entra_user(ids[0])], group_id=alive)
        seeded = run(corp, [alive_copy, gone_selected, gone_deselected, other_copy], target_ou=ou, search_base=ou)
        assert seeded['summary']['created'] == 4, seeded['groups']

        args = graph_args(emu)
        args.update(target_ou=ou, search_base=ou, groups=[alive, gone_selected['id']], prune=True)
        check = run(corp, None, check=True, **args)
        by_id = dict((g['id'], g) for g in check['groups'])
        assert by_id[gone_selected['id']]['action'] == 'deleted'
        assert by_id[gone_deselected['id']]['action'] == 'deleted' and by_id[gone_deselected['id']]['entra'] == 'deleted'
        assert other_run not in by_id, 'a group of another selection that still exists is out of this run entirely'
        assert directory.by_anchor(gone_selected['id']), 'check mode must not delete'

        result = run(corp, None, **args)
        assert result['summary']['deleted'] == 2, result['groups']
        assert directory.by_anchor(gone_selected['id']) == [] and directory.by_anchor(gone_deselected['id']) == []
        assert len(directory.by_anchor(other_run)) == 1, 'prune in selected mode deleted a group of another selection'
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
