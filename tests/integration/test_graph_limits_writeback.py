"""ad_group_writeback against the HTTPS Graph emulator holding Graph's documented limits, and the
real lab AD: the runs a real tenant would refuse on the old code converge now.

* A delta run in which 20 groups were renamed and 5 had members changed: the scope check used to
  send ``id in (15 ids) and securityEnabled eq true and mailEnabled eq false and (filter)`` (18
  expressions; Graph allows 15 without advanced query:
  https://learn.microsoft.com/en-us/graph/known-issues#some-limitations-apply-to-query-parameters).
* Selecting 20 groups and one of 130 characters by name (an eq value is at most 120 characters
  without advanced query; same page).
* The whole writeback with ``onPremisesObjectIdentifier`` withdrawn from beta, or beta
  unavailable: members come from v1.0 and are matched by objectSid (``member_source: v1.0``), and
  a second run changes nothing.
* ``writeback_enabled_only``: only groups whose writebackConfiguration/isEnabled (beta) is true.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import uuid

import pytest

from writeback_helpers import Directory, first, graph_args, identity_dn_keys, run


@pytest.fixture(autouse=True)
def _no_ambient_ca_bundle(monkeypatch):
    monkeypatch.setenv('REQUESTS_CA_BUNDLE', '/nonexistent/ca-bundle.pem')


@pytest.fixture
def world(corp, graph_tenant, graph_emulator_factory):
    prefix = 'GL %s ' % uuid.uuid4().hex[:6]
    ids = corp.identities
    b = graph_tenant()
    users = [b.synced_user(i['sam_account_name'], object_guid=i['object_guid'], object_sid=i['object_sid'],
                           domain=i['domain'], dn=i['dn'], upn=i['user_principal_name']) for i in ids[:6]]
    groups = [b.group('%sGroup %02d' % (prefix, n), members=[users[n % 3]]) for n in range(25)]
    long_name = prefix + 'a group whose display name is 130 characters long, which Entra allows (up to 256) '
    long_name += 'x' * (130 - len(long_name))
    long_id = b.group(long_name, members=[users[3]])
    flagged = b.group(prefix + 'Flagged', members=[users[4]], writebackConfiguration={'isEnabled': True, 'onPremisesGroupType': None})
    emu = graph_emulator_factory(b.build(), settings={'throttle_enabled': False})
    directory = Directory(corp)
    ou = directory.make_ou('t-limits-%s' % uuid.uuid4().hex[:8])
    try:
        yield dict(emu=emu, ids=ids, users=users, groups=groups, long_name=long_name, long_id=long_id, flagged=flagged,
                   prefix=prefix, ou=ou, directory=directory)
    finally:
        directory.remove_tree(ou)
        directory.close()


def wb(corp, w, **kw):
    kw.setdefault('target_ou', w['ou'])
    kw.setdefault('search_base', w['ou'])
    kw.setdefault('prune', False)
    args = graph_args(w['emu'])
    args.update(kw)
    return run(corp, None, **args)


def graph_errors(emu, since=0):
    return [(e['path'], e['status']) for e in emu.admin.requests(since)
            if e['kind'] in ('graph', 'batch_item') and e['status'] >= 400]


def test_delta_run_with_20_renames_and_5_member_changes_converges(corp, world, tmp_path):
    w, d, emu = world, world['directory'], world['emu']
    state = str(tmp_path / 'delta.json')
    flt = "startswith(displayName,'%s')" % w['prefix']
    first_run = wb(corp, w, all_groups=True, group_filter=flt, delta_state_path=state)
    assert first_run['summary']['created'] == 27, first_run['groups']
    for n, gid in enumerate(w['groups'][:20]):
        emu.admin.update_group(gid, displayName='%sRenamed %02d' % (w['prefix'], n))
    for gid in w['groups'][20:]:
        emu.admin.add_members(gid, [w['users'][5]])
    log_start = len(emu.admin.requests())
    second = wb(corp, w, all_groups=True, group_filter=flt, delta_state_path=state)
    assert json.load(open(state))['last_run']['mode'] == 'delta'
    assert graph_errors(emu, log_start) == []
    assert second['summary']['renamed'] == 20 and second['summary']['members_added'] == 5, second['summary']
    for n, gid in enumerate(w['groups'][:20]):
        entry = d.one(gid)
        assert first(entry, 'displayName') == '%sRenamed %02d' % (w['prefix'], n)
        assert first(entry, 'cn').startswith('%sRenamed %02d' % (w['prefix'], n)[:51])
    for n, gid in enumerate(w['groups'][20:], start=20):
        assert d.member_keys(d.one(gid)) == identity_dn_keys([w['ids'][n % 3], w['ids'][5]])
    again = wb(corp, w, all_groups=True, group_filter=flt, delta_state_path=state, check=True)
    assert again['changed'] is False


def test_select_20_names_and_a_130_character_name(corp, world):
    w, d, emu = world, world['directory'], world['emu']
    names = ['%sGroup %02d' % (w['prefix'], n) for n in range(20)] + [w['long_name']]
    result = wb(corp, w, groups=names)
    assert result['not_found'] == [] and graph_errors(emu) == []
    assert result['summary']['created'] == 21, result['summary']
    assert first(d.one(w['long_id']), 'displayName') == w['long_name']
    assert d.member_keys(d.one(w['long_id'])) == identity_dn_keys([w['ids'][3]])
    assert wb(corp, w, groups=names)['changed'] is False


@pytest.mark.parametrize('switch', [{'beta_withdrawn': ['onPremisesObjectIdentifier']}, {'beta_available': False}],
                         ids=['property_withdrawn', 'beta_unavailable'])
def test_whole_writeback_without_beta_matches_members_by_sid(corp, world, switch):
    w, d, emu = world, world['directory'], world['emu']
    emu.admin.update_settings(**switch)
    flt = "startswith(displayName,'%sGroup 0')" % w['prefix']
    result = wb(corp, w, all_groups=True, group_filter=flt)
    assert result['member_source'] == 'v1.0'
    assert result['summary']['created'] == 10 and result['summary']['unresolved_members'] == 0, result['summary']
    for n, gid in enumerate(w['groups'][:10]):
        assert d.member_keys(d.one(gid)) == identity_dn_keys([w['ids'][n % 3]])
    again = wb(corp, w, all_groups=True, group_filter=flt)
    assert again['changed'] is False and again['member_source'] == 'v1.0'
    assert not any(again['ldap_operations'][k] for k in ('adds', 'modifies', 'modify_dns', 'deletes'))
    # beta back: the same groups, now read with the objectGUID, are still unchanged
    emu.admin.update_settings(beta_withdrawn=[], beta_available=True)
    back = wb(corp, w, all_groups=True, group_filter=flt)
    assert back['member_source'] == 'beta' and back['changed'] is False


def test_writeback_enabled_only(corp, world):
    w, d = world, world['directory']
    flt = "startswith(displayName,'%s')" % w['prefix']
    result = wb(corp, w, all_groups=True, group_filter=flt, writeback_enabled_only=True)
    assert [g['id'] for g in result['groups'] if g['action'] == 'created'] == [w['flagged']]
    assert d.by_anchor(w['groups'][0]) == []
    selected = wb(corp, w, groups=[w['groups'][0], w['flagged']], writeback_enabled_only=True)
    assert selected['not_found'] == []
    assert any('not enabled for writeback' in x and w['groups'][0] in x for x in selected['warnings'])
    assert d.by_anchor(w['groups'][0]) == [] and selected['changed'] is False
