# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The real ansible-rulebook (Java 17, drools) running the collection's rulebook
hybrid_identity.cloud_sync.group_writeback: its source polls the HTTPS Graph emulator, and its
playbook writes the changed groups back to the lab's corp DC. Changes are made through the
emulator's admin API and the test waits until AD shows them (no timing is asserted).

Covered: a membership added and removed in Entra reaches AD, a nested group keeps its link
when only its parent changes, a rename renames the AD group (same objectGUID), a group deleted in
Entra has its AD copy deleted (selected-mode prune: only the batch's groups) while a managed
group outside the batch is left alone, and a restart resumes from the saved delta link.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import uuid

import pytest

from eda_helpers import Rulebook, eda_env, wait_until
from writeback_helpers import Directory, dn_key, first, graph_args, identity_dn_keys, run, synced_users


@pytest.fixture(autouse=True)
def _no_ambient_ca_bundle(monkeypatch):
    monkeypatch.setenv('REQUESTS_CA_BUNDLE', '/nonexistent/ca-bundle.pem')


@pytest.fixture
def world(corp, graph_tenant, graph_emulator_factory, tmp_path):
    ids = corp.identities
    b = graph_tenant()
    users = synced_users(b, ids[:4])
    tag = uuid.uuid4().hex[:6]
    child = b.group('EDA Child %s' % tag, members=[users[2]])
    parent = b.group('EDA Parent %s' % tag, members=[users[0], child])
    other = b.group('EDA Other %s' % tag, members=[users[3]])
    emu = graph_emulator_factory(b.build())
    directory = Directory(corp)
    ou = directory.make_ou('t-eda-%s' % tag)
    try:
        args = graph_args(emu)
        first_run = run(corp, None, groups=[parent, child, other], target_ou=ou, search_base=ou, **args)
        assert first_run['summary']['created'] == 3, first_run['groups']
        yield dict(emu=emu, ids=ids, users=users, parent=parent, child=child, other=other, ou=ou, directory=directory,
                   env=eda_env(emu, corp, ou, tmp_path / 'eda-delta.json'), work=tmp_path)
    finally:
        directory.remove_tree(ou)
        directory.close()


def members_of(directory, gid, ou):
    found = directory.by_anchor(gid, ou)
    return directory.member_keys(found[0]) if found else None


def test_rulebook_writes_entra_changes_back_to_ad(world):
    w, d, admin = world, world['directory'], world['emu'].admin
    child_dn = d.one(w['child'], w['ou'])['dn']
    other_before = d.one(w['other'], w['ou'])
    rb = Rulebook(w['env'], w['work']).start()
    try:
        # a member added in Entra appears in AD; the nested child group stays a member
        admin.add_members(w['parent'], [w['users'][1]])
        want = identity_dn_keys(w['ids'][:2]) | {dn_key(child_dn)}
        wait_until(lambda: members_of(d, w['parent'], w['ou']) == want, rb, 'the added member reaching AD')

        # removed in Entra: gone from AD
        admin.remove_members(w['parent'], [w['users'][0]])
        want = identity_dn_keys(w['ids'][1:2]) | {dn_key(child_dn)}
        wait_until(lambda: members_of(d, w['parent'], w['ou']) == want, rb, 'the removed member leaving AD')

        # renamed in Entra: same AD object, new name
        guid = d.one(w['parent'], w['ou'])['attributes']['objectGUID']
        admin.update_group(w['parent'], displayName='EDA Renamed %s' % w['parent'][-4:])
        renamed = wait_until(lambda: [g for g in d.by_anchor(w['parent'], w['ou'])
                                      if first(g, 'displayName') == 'EDA Renamed %s' % w['parent'][-4:]], rb,
                             'the rename reaching AD')
        assert renamed[0]['attributes']['objectGUID'] == guid

        # deleted in Entra: its AD copy is pruned, the parent loses the link, the other group is untouched
        admin.delete_group(w['child'])
        wait_until(lambda: d.by_anchor(w['child'], w['ou']) == [], rb, 'the deleted group leaving AD')
        assert members_of(d, w['parent'], w['ou']) == identity_dn_keys(w['ids'][1:2])
        other_after = d.one(w['other'], w['ou'])
        assert other_after['attributes']['objectGUID'] == other_before['attributes']['objectGUID']
        assert d.member_keys(other_after) == d.member_keys(other_before)
    finally:
        rb.stop()
    # each change was a run of the rulebook's playbook (not one run per event)
    runs = rb.log(tail=10 ** 7).count('PLAY [Write back the Entra groups of an event batch]')
    assert 4 <= runs <= 8, runs


def test_rulebook_restart_resumes_from_the_saved_delta_link(world):
    w, d, admin = world, world['directory'], world['emu'].admin
    rb = Rulebook(w['env'], w['work']).start()
    rb.stop()
    saved = json.loads(open(w['env']['CLOUDSYNC_EDA_STATE_PATH']).read())
    assert saved['delta_link']

    admin.add_members(w['other'], [w['users'][0]])           # while the rulebook is down
    since = max([e['n'] for e in admin.requests()] or [0])
    rb = Rulebook(w['env'], w['work']).start()
    try:
        want = identity_dn_keys([w['ids'][0], w['ids'][3]])
        wait_until(lambda: members_of(d, w['other'], w['ou']) == want, rb, 'the change made while down reaching AD')
    finally:
        rb.stop()
    delta = [e['path'] for e in admin.requests(since=since) if e['kind'] == 'graph' and '/groups/delta' in e['path']]
    assert delta and all('token=' in p for p in delta), delta   # no new full round after the restart
