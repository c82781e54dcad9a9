"""Deletes against the lab and the HTTPS Graph emulator (issue 11, item 6).

Cloud Sync deletes the AD group of a group hard-deleted in Entra; for a group that only leaves
scope it documents nothing ("AD groups can't be disabled, so don't apply user deprovisioning
behavior to groups"):
https://learn.microsoft.com/en-us/entra/identity/hybrid/cloud-sync/how-provisioning-to-active-directory-works
So: a copy whose Entra group is deleted is deleted by default (prune, still under
deletion_threshold; prune: false keeps it, reported orphaned); a copy whose group left scope is
kept by default (out_of_scope: keep) and deleted with out_of_scope: delete. The engine asks Graph
whether each orphan's group still exists (GET /groups/{id}: 404 for a deleted one).
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import uuid

import pytest

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.errors import CloudSyncError
from ansible_collections.hybrid_identity.cloud_sync.plugins.modules import ad_group_writeback
from writeback_helpers import Directory, graph_args, run

PREFIX = 'DEL %s ' % uuid.uuid4().hex[:6]


@pytest.fixture(autouse=True)
def _no_ambient_ca_bundle(monkeypatch):
    monkeypatch.setenv('REQUESTS_CA_BUNDLE', '/nonexistent/ca-bundle.pem')


@pytest.fixture
def world(corp, graph_tenant, graph_emulator_factory):
    b = graph_tenant()
    names = ['Alpha', 'Beta', 'Gamma', 'Delta', 'Epsilon']
    # Random ids: the builder's are the same in every test, and the lab is shared.
    gids = dict((n, b.group(PREFIX + n, id=str(uuid.uuid4()))) for n in names)
    emu = graph_emulator_factory(b.build())
    directory = Directory(corp)
    ou = directory.make_ou('t-del-%s' % uuid.uuid4().hex[:8])
    try:
        yield dict(emu=emu, gids=gids, ou=ou, directory=directory)
    finally:
        directory.remove_tree(ou)
        directory.close()


def wb(corp, w, **kw):
    """A run as the module makes it: prune is on unless a test turns it off."""
    kw.setdefault('target_ou', w['ou'])
    kw.setdefault('search_base', w['ou'])
    kw.setdefault('prune', True)
    args = graph_args(w['emu'])
    args.update(kw)
    return run(corp, None, **args)


def all_mode(corp, w, **kw):
    return wb(corp, w, all_groups=True, group_filter="startswith(displayName,'%s')" % PREFIX, **kw)


def by_id(result):
    return dict((g['id'], g) for g in result['groups'])


def test_module_defaults_delete_hard_deleted_groups_and_keep_out_of_scope_ones():
    spec = ad_group_writeback.argument_spec().argument_spec
    assert spec['prune']['default'] is True
    assert spec['out_of_scope']['default'] == 'keep' and spec['out_of_scope']['choices'] == ['keep', 'delete']


def test_group_deleted_in_entra_is_deleted_by_default_and_kept_with_prune_false(corp, world):
    w, d, gids = world, world['directory'], world['gids']
    assert all_mode(corp, w)['summary']['created'] == 5
    w['emu'].admin.delete_group(gids['Beta'])

    kept = all_mode(corp, w, prune=False)
    rep = by_id(kept)[gids['Beta']]
    assert rep['action'] == 'orphaned' and rep['reason'] == 'deleted_in_entra' and rep['entra'] == 'deleted'
    assert len(d.by_anchor(gids['Beta'])) == 1, 'prune: false deletes nothing'

    check = all_mode(corp, w, check=True)
    assert by_id(check)[gids['Beta']]['action'] == 'deleted' and len(d.by_anchor(gids['Beta'])) == 1

    result = all_mode(corp, w)
    assert result['summary']['deleted'] == 1 and result['changed']
    assert d.by_anchor(gids['Beta']) == []
    assert all(len(d.by_anchor(gids[n])) == 1 for n in ('Alpha', 'Gamma', 'Delta', 'Epsilon'))
    assert all_mode(corp, w)['changed'] is False


def test_group_out_of_scope_is_kept_by_default_and_deleted_with_the_option(corp, world):
    w, d, gids = world, world['directory'], world['gids']
    all_mode(corp, w)
    # Gamma no longer matches group_filter; it still exists in Entra.
    w['emu'].admin.update_group(gids['Gamma'], displayName='Renamed out of the filter %s' % uuid.uuid4().hex[:4])
    kept = all_mode(corp, w)
    rep = by_id(kept)[gids['Gamma']]
    assert rep['action'] == 'orphaned' and rep['reason'] == 'not_in_scope' and rep['entra'] == 'exists'
    assert kept['summary']['deleted'] == 0 and len(d.by_anchor(gids['Gamma'])) == 1

    deleted = all_mode(corp, w, out_of_scope='delete')
    assert by_id(deleted)[gids['Gamma']]['action'] == 'deleted'
    assert d.by_anchor(gids['Gamma']) == []


def test_deletion_threshold_refuses_and_names_the_groups(corp, world):
    w, d, gids = world, world['directory'], world['gids']
    all_mode(corp, w)
    for name in ('Beta', 'Delta', 'Epsilon'):
        w['emu'].admin.delete_group(gids[name])
    with pytest.raises(CloudSyncError) as refused:
        all_mode(corp, w, deletion_threshold=2)
    msg = refused.value.msg
    assert 'delete 3 groups' in msg and 'deletion_threshold=2' in msg
    for name in ('Beta', 'Delta', 'Epsilon'):
        entry = d.one(gids[name])
        assert PREFIX + name in msg and entry['dn'] in msg, 'the refusal names each group and its DN'
    assert sorted(g['id'] for g in refused.value.details['would_delete']) == sorted(gids[n] for n in ('Beta', 'Delta', 'Epsilon'))
    assert all(len(d.by_anchor(gids[n])) == 1 for n in ('Beta', 'Delta', 'Epsilon')), 'over the threshold nothing is deleted'
    assert all_mode(corp, w, deletion_threshold=3)['summary']['deleted'] == 3


def test_selected_mode_cleans_up_deselected_groups_per_decision(corp, world):
    """A deselected group's copy: kept while its group exists (another selection may own it),
    deleted once the group is deleted in Entra, and deleted at once with out_of_scope: delete."""
    w, d, gids = world, world['directory'], world['gids']
    wb(corp, w, groups=[gids[n] for n in ('Alpha', 'Beta', 'Gamma')])
    # Deselect Beta and Gamma.
    kept = wb(corp, w, groups=[gids['Alpha']])
    assert [g['id'] for g in kept['groups']] == [gids['Alpha']], 'groups of other selections are not reported'
    assert len(d.by_anchor(gids['Beta'])) == 1 and len(d.by_anchor(gids['Gamma'])) == 1
    # Beta is deleted in Entra: its copy goes, though no run selects it any more.
    w['emu'].admin.delete_group(gids['Beta'])
    cleaned = wb(corp, w, groups=[gids['Alpha']])
    assert by_id(cleaned)[gids['Beta']]['action'] == 'deleted' and d.by_anchor(gids['Beta']) == []
    assert len(d.by_anchor(gids['Gamma'])) == 1
    # Without prune, nothing outside the selection is looked at.
    w['emu'].admin.delete_group(gids['Gamma'])
    untouched = wb(corp, w, groups=[gids['Alpha']], prune=False)
    assert [g['id'] for g in untouched['groups']] == [gids['Alpha']] and len(d.by_anchor(gids['Gamma'])) == 1
    # out_of_scope: delete removes every managed group of the search base that is not selected.
    wb(corp, w, groups=[gids['Delta']])
    gone = wb(corp, w, groups=[gids['Alpha']], out_of_scope='delete')
    assert by_id(gone)[gids['Delta']]['action'] == 'deleted' and by_id(gone)[gids['Delta']]['entra'] == 'exists'
    assert d.by_anchor(gids['Delta']) == [] and d.by_anchor(gids['Gamma']) == []
    assert len(d.by_anchor(gids['Alpha'])) == 1


@pytest.mark.parametrize('directory_read', [True, False])
def test_existence_check_uses_get_by_ids_when_granted_else_reads_each_group(corp, graph_tenant, graph_emulator_factory, directory_read):
    """POST /directoryObjects/getByIds needs Directory.Read.All
    (https://learn.microsoft.com/en-us/graph/api/directoryobject-getbyids); without it the engine falls
    back to GET /groups/{id} (Group.Read.All, 404 when deleted). Either way the same groups are deleted."""
    b = graph_tenant()
    if directory_read:
        b.data['apps'][0]['permissions'].append('Directory.Read.All')
    gids = [b.group(PREFIX + 'Exists %d' % n, id=str(uuid.uuid4())) for n in range(3)]
    emu = graph_emulator_factory(b.build())
    directory = Directory(corp)
    ou = directory.make_ou('t-del-%s' % uuid.uuid4().hex[:8])
    w = dict(emu=emu, ou=ou)
    try:
        wb(corp, w, groups=list(gids))
        emu.admin.delete_group(gids[1])
        start = len(emu.admin.requests())
        result = wb(corp, w, groups=[gids[0]])
        assert by_id(result)[gids[1]]['action'] == 'deleted' and directory.by_anchor(gids[1]) == []
        assert len(directory.by_anchor(gids[2])) == 1
        paths = [(r['method'], r['path'].split('?')[0]) for r in emu.admin.requests(start)]
        posts = [p for p in paths if p[1].endswith('/directoryObjects/getByIds')]
        statuses = [r['status'] for r in emu.admin.requests(start) if r['path'].split('?')[0].endswith('/getByIds')]
        if directory_read:
            assert statuses == [200]
        else:
            assert statuses == [403] and len(posts) == 1, 'refused once, then read group by group'
    finally:
        directory.remove_tree(ou)
        directory.close()
