"""Pure parts of entra_reader: Graph objects to contract dicts, selection parsing, eligibility and
member support, the limited-permission guard, and the incremental state round trip."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json

import pytest

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import delta_state, entra_reader as er


def test_split_selection_ids_lowercased_names_kept():
    ids, names = er.split_selection(['6F1C2B9A-5D6E-4F70-8A9B-0C1D2E3F4A5B', ' Finance ', 'Finance',
                                     '6f1c2b9a-5d6e-4f70-8a9b-0c1d2e3f4a5b', 'not-a-guid', ''])
    assert ids == ['6f1c2b9a-5d6e-4f70-8a9b-0c1d2e3f4a5b']
    assert names == ['Finance', 'not-a-guid']


@pytest.mark.parametrize('odata,expected', [
    ('#microsoft.graph.user', 'user'), ('#microsoft.graph.group', 'group'), ('#microsoft.graph.device', 'device'),
    ('#microsoft.graph.orgContact', 'org_contact'), ('#microsoft.graph.servicePrincipal', 'service_principal'),
    ('#microsoft.graph.someNewThing', 'some_new_thing'), (None, 'unknown'),
])
def test_member_type(odata, expected):
    for unused in range(2):   # worked out, then remembered
        assert er.member_type({'@odata.type': odata} if odata else {}) == expected


def test_to_member_and_to_group_shapes():
    m = er.to_member({'@odata.type': '#microsoft.graph.user', 'id': 'ABC', 'displayName': 'Alice',
                      'userPrincipalName': 'alice@corp', 'onPremisesObjectIdentifier': 'AAAA-BBBB',
                      'onPremisesSecurityIdentifier': 'S-1-5-21-1', 'onPremisesImmutableId': 'x==',
                      'onPremisesDomainName': 'corp', 'onPremisesSyncEnabled': True})
    assert m == {'id': 'abc', 'type': 'user', 'display_name': 'Alice', 'user_principal_name': 'alice@corp',
                 'on_premises_object_identifier': 'aaaa-bbbb', 'on_premises_security_identifier': 'S-1-5-21-1',
                 'on_premises_immutable_id': 'x==', 'on_premises_domain_name': 'corp', 'on_premises_sync_enabled': True}
    g = er.to_group({'id': 'G', 'displayName': 'Fin', 'securityEnabled': True, 'mailEnabled': False, 'groupTypes': None})
    assert g == {'id': 'g', 'display_name': 'Fin', 'description': None, 'security_enabled': True, 'mail_enabled': False,
                 'group_types': [], 'membership_rule': None, 'on_premises_sync_enabled': None, 'cloud_managed': False,
                 'on_premises_security_identifier': None, 'on_premises_sam_account_name': None,
                 'on_premises_domain_name': None, 'writeback_enabled': None}
    # a converted group (Group SOA) keeps its on-premises identifiers; the beta writeback flag
    soa = er.to_group({'id': 'S', 'onPremisesSecurityIdentifier': 'S-1-5-21-7', 'onPremisesSamAccountName': 'Fin',
                       'onPremisesDomainName': 'corp.example.test', 'writebackConfiguration': {'isEnabled': True}},
                      cloud_managed=True)
    assert (soa['cloud_managed'], soa['on_premises_security_identifier'], soa['on_premises_sam_account_name'],
            soa['on_premises_domain_name'], soa['writeback_enabled']) == (True, 'S-1-5-21-7', 'Fin', 'corp.example.test', True)
    assert er.to_group({'id': 'x', 'writebackConfiguration': None})['writeback_enabled'] is False
    assert er.to_group({'id': 'x', 'writebackConfiguration': {'isEnabled': None}})['writeback_enabled'] is False


def _group(gid, members=(), **kw):
    g = {'id': gid, 'display_name': gid, 'description': None, 'security_enabled': True, 'mail_enabled': False,
         'group_types': [], 'membership_rule': None, 'on_premises_sync_enabled': None, 'members': list(members)}
    g.update(kw)
    return g


def _m(mid, mtype='user', **kw):
    m = {'id': mid, 'type': mtype, 'display_name': mid, 'user_principal_name': None,
         'on_premises_object_identifier': None, 'on_premises_security_identifier': None, 'on_premises_immutable_id': None,
         'on_premises_domain_name': None, 'on_premises_sync_enabled': None}
    m.update(kw)
    return m


def test_evaluate_groups_and_members():
    child = _group('child')
    m365 = _group('m365', group_types=['Unified'], mail_enabled=True)
    parent = _group('parent', [_m('u1', on_premises_security_identifier='S-1-5-21-9'), _m('u2'), _m('child', 'group'),
                               _m('m365', 'group'), _m('pc', 'device')])
    big = _group('big', [_m('x%d' % i, on_premises_sync_enabled=True) for i in range(6)])
    er.evaluate([child, m365, parent, big], max_members=5)
    assert (parent['eligible'], m365['eligible'], big['eligible']) == (True, False, False)
    assert m365['ineligible_reasons'] == ['mail_enabled', 'microsoft_365']
    assert big['ineligible_reasons'] == ['too_many_members']
    reasons = dict((m['id'], (m['supported'], m['reason'])) for m in parent['members'])
    assert reasons == {'u1': (True, None), 'u2': (False, 'cloud_only_user'), 'child': (True, None),
                       'm365': (False, 'group_not_in_scope'), 'pc': (False, 'unsupported_type_device')}


def test_limited_member_data_is_refused():
    er._check_limited('g', [{'@odata.type': '#microsoft.graph.user', 'id': 'u', 'userPrincipalName': None},
                            {'@odata.type': '#microsoft.graph.device', 'id': 'd'}])
    with pytest.raises(er.EntraReadError, match='User.Read.All'):
        er._check_limited('g', [{'@odata.type': '#microsoft.graph.user', 'id': 'u'}])


def _batch_reply(pages):
    """A $batch reply of member pages, as Graph sends it (text)."""
    return json.dumps({'responses': [
        {'id': str(i), 'status': 200, 'headers': {'Content-Type': 'application/json'},
         'body': {'@odata.context': 'https://graph.microsoft.com/v1.0/$metadata#directoryObjects', 'value': page}}
        for i, page in enumerate(pages)]})


USER = {'@odata.type': '#microsoft.graph.user', 'id': 'AB-1', 'displayName': 'A', 'userPrincipalName': 'a@x',
        'onPremisesObjectIdentifier': 'F0-1', 'onPremisesSyncEnabled': True, 'onPremisesDomainName': 'corp.test'}
DEVICE = {'@odata.type': '#microsoft.graph.device', 'id': 'd-1', 'displayName': 'PC'}


def test_members_converted_while_decoding_equal_those_converted_after():
    """member_converter's object_hook turns directory objects into member dicts as json.loads
    decodes them; the pages, envelope and headers pass unchanged, ``convert`` passes the converted
    members through, and a member shared by two pages is one dict."""
    pages = [[USER, DEVICE], [dict(USER)]]
    after = er.member_converter()
    expected = [after('g%d' % i, page) for i, page in enumerate(pages)]
    during = er.member_converter()
    reply = json.loads(_batch_reply(pages), object_hook=during.object_hook)
    assert reply['responses'][0]['headers'] == {'Content-Type': 'application/json'}
    assert all('@odata.type' not in m and 'type' in m for r in reply['responses'] for m in r['body']['value'])
    got = [during('g%d' % i, r['body']['value']) for i, r in enumerate(reply['responses'])]
    assert got == expected and got[0][0]['id'] == 'ab-1' and got[0][1]['type'] == 'device'
    assert got[0][0] is got[1][0]
    assert during('g9', [dict(USER)])[0] is got[0][0]   # raw items still convert (the other path)


def test_a_user_without_properties_is_refused_when_converted_while_decoding():
    convert = er.member_converter()
    limited = {'@odata.type': '#microsoft.graph.user', 'id': 'u-9'}
    reply = json.loads(_batch_reply([[DEVICE, limited]]), object_hook=convert.object_hook)
    with pytest.raises(er.EntraReadError, match='group g1 .*u-9'):
        convert('g1', reply['responses'][0]['body']['value'])


def test_state_round_trip_is_json_and_rebuilds_groups():
    groups = er.evaluate([_group('g1', [_m('u1', on_premises_sync_enabled=True), _m('g2', 'group')]), _group('g2')])
    state = er._state_from_groups(groups, 'https://graph/delta?$deltatoken=x', None, True, 'no_state')
    again = json.loads(json.dumps(delta_state.hydrate(state)))   # JSON once its member lists are made (see delta_state.GroupsRead)
    rebuilt = er.groups_from_state(again, 50000)
    by_id = dict((g['id'], g) for g in rebuilt)
    assert [m['id'] for m in by_id['g1']['members']] == ['u1', 'g2']
    assert by_id['g1']['member_count'] == 2 and by_id['g1']['eligible']
    assert by_id['g1']['members'][1]['supported'] is True
    assert 'supported' not in again['objects']['u1']
    assert again['delta_link'].endswith('$deltatoken=x') and again['last_run']['mode'] == 'full'


def test_read_groups_report_refuses_empty_selection_and_bad_members():
    with pytest.raises(er.EntraReadError, match='Nothing selected'):
        er.read_groups_report(None)
    with pytest.raises(er.EntraReadError, match='members'):
        er.read_groups_report(None, all_groups=True, members='all')


@pytest.mark.parametrize('text', [
    "startswith(displayName,'Sales')", "displayName eq 'O''Brien (EU)'", "displayName eq ')'",
    "(a eq 'x') or (b eq 'y')", "groupTypes/any(c:c eq 'DynamicMembership')",
])
def test_odata_filter_accepted(text):
    assert er.check_odata_filter(' %s ' % text) == text


@pytest.mark.parametrize('text', [
    "startswith(displayName,'a')) or (mailEnabled eq true", "displayName eq 'x", "(a eq 'b'", "a eq 'b')", '  ',
    "displayName eq 'it''s", "x eq 'a'') or (true",
])
def test_odata_filter_refused(text):
    with pytest.raises(er.EntraReadError):
        er.check_odata_filter(text)


# -- Graph's documented query limits (known issues, "Some limitations apply to query parameters":
# https://learn.microsoft.com/en-us/graph/known-issues#some-limitations-apply-to-query-parameters)

@pytest.mark.parametrize('text,count', [
    (None, 0), ('', 0),
    ("securityEnabled eq true and mailEnabled eq false", 2),
    ("id in ('a','b','c') and securityEnabled eq true and mailEnabled eq false", 5),
    ("displayName in ('a, b','it''s (x)', 'eq ne')", 3),          # commas, quotes, words inside literals do not count
    ("startswith(displayName,'Sales')", 1),
    ("startswith(displayName,'Sales') eq true", 1),
    ("groupTypes/any(c:c eq 'Unified')", 1),
    ("not(startswith(displayName,'a')) or (displayName eq 'b' and description eq 'c')", 3),
    ("writebackConfiguration/isEnabled eq true", 1),
])
def test_count_filter_expressions(text, count):
    assert er.count_filter_expressions(text) == count


def test_scope_check_clause_of_fifteen_ids_is_split_to_fit():
    """The delta scope check sent ``id in (15 ids) and securityEnabled eq true and mailEnabled eq false``
    (17 expressions): Graph refuses more than 15."""
    ids = ['%032x' % i for i in range(40)]
    chunks = er.chunk_in_values(ids, er.count_filter_expressions(er.ELIGIBLE_CLAUSE), lambda c: 0)
    assert [len(c) for c, advanced in chunks] == [13, 13, 13, 1]
    assert not any(advanced for unused, advanced in chunks)
    assert [i for c, unused in chunks for i in c] == ids
    # a user filter of 13 expressions leaves no room: advanced query, sized by URL length
    chunks = er.chunk_in_values(ids, 15, lambda c: 100 + 40 * len(c))
    assert all(advanced for unused, advanced in chunks)
    assert all(100 + 40 * len(c) <= er.URL_LIMIT - er.URL_MARGIN for c, unused in chunks)
    assert [i for c, unused in chunks for i in c] == ids


def test_long_names_go_to_advanced_query_and_too_long_urls_are_refused():
    names = ['short %d' % i for i in range(20)] + ['L' * 130, 'M' * 121]
    chunks = er.chunk_in_values(names, 0, lambda c: 200 + sum(len(v) + 3 for v in c))
    plain = [c for c, advanced in chunks if not advanced]
    assert [len(c) for c in plain] == [15, 5]
    assert [c for c, advanced in chunks if advanced] == [['L' * 130, 'M' * 121]]
    with pytest.raises(er.EntraReadError, match='2,048'):
        er.chunk_in_values(['x' * 200], 0, lambda c: 5000)


def test_names_beta_property():
    assert er.names_beta_property('writebackConfiguration/isEnabled eq true')
    assert not er.names_beta_property("displayName eq 'writebackConfiguration'")
    assert not er.names_beta_property("startswith(displayName,'A')")


# -- nested groups in selected mode, source of authority ---------------------------------------------

def test_nested_candidates_one_level_and_nested_only_groups():
    parent = _group('parent', [_m('child', 'group'), _m('u1', on_premises_sync_enabled=True), _m('other', 'group')])
    other = _group('other', [_m('child', 'group'), _m('u2', on_premises_sync_enabled=True)])
    assert er.nested_candidates([parent, other]) == ['child']   # selected 'other' is no candidate; 'child' once
    child = _group('child', [_m('grandchild', 'group')])
    nested = er.nested_only_groups([child, _group('m365', group_types=['Unified']),
                                    _group('synced', on_premises_sync_enabled=True)])
    assert [(g['id'], g['nested_only'], g['members']) for g in nested] == [('child', True, [])]
    # its own nested groups are not followed: Cloud Sync writes it "and not its members"
    assert er.nested_candidates([parent, other] + nested) == []
    er.evaluate([parent, other] + nested, max_members=1)
    reasons = dict((m['id'], m['reason']) for m in parent['members'])
    assert reasons['child'] is None and nested[0]['eligible'] is True   # no size check on a nested-only group


def test_soa_candidates():
    groups = [_group('cloud'), _group('synced', on_premises_sync_enabled=True, on_premises_security_identifier='S-1'),
              _group('converted', on_premises_security_identifier='S-2'),
              _group('off', on_premises_sync_enabled=False, on_premises_security_identifier='S-3')]
    assert [g['id'] for g in er.soa_candidates(groups)] == ['converted', 'off']


def test_state_objects_are_the_member_dicts_unless_flags_are_set():
    """Without member flags the state keeps each member dict itself (no copy) and groups_from_state
    hands it out again; with flags (which evaluate sets on the member dicts) both are copies, so the
    saved state never carries them."""
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import entra_reader as er
    m = er.to_member({'id': 'AB-1', '@odata.type': '#microsoft.graph.user', 'displayName': 'A',
                      'onPremisesDomainName': 'corp.example.test'})
    assert m['id'] == 'ab-1'
    group = dict(id='g1', display_name='G', security_enabled=True, mail_enabled=False, group_types=[], members=[m])
    state = er._state_from_groups([group], 'link', None, True, 'no_state')
    assert 'objects' not in state and state['groups']['g1']['member_count'] == 1, 'a full read\'s state is lazy'
    delta_state.hydrate(state)
    assert state['objects']['ab-1'] is m and state['groups']['g1']['member_ids'] == ['ab-1']
    assert 'member_count' not in state['groups']['g1']
    plain = er.groups_from_state(state, 100, member_flags=False)
    assert plain[0]['members'][0] is m
    flagged = er.groups_from_state(state, 100, member_flags=True)
    assert flagged[0]['members'][0] is not m and 'supported' in flagged[0]['members'][0] and 'supported' not in m
    m['supported'] = True   # a flagged member dict is copied into the state, flags left out
    assert er._state_object(m) is not m and 'supported' not in er._state_object(m)


@pytest.mark.parametrize('ids, delta, expected', [
    (['a', 'b', 'c'], [], ['a', 'b', 'c']),
    (['a', 'b', 'c'], [{'id': 'b', '@removed': {}}], ['a', 'c']),
    (['a', 'b'], [{'id': 'c'}, {'id': 'a'}], ['a', 'b', 'c']),
    (['a', 'b'], [{'id': 'a', '@removed': {}}, {'id': 'a'}], ['b', 'a']),
    (['a'], [{'id': 'c'}, {'id': 'c', '@removed': {}}], ['a']),
    (['a'], [{'id': 'a', '@removed': {}}, {'id': 'a'}, {'id': 'a', '@removed': {}}], []),
    (['a'], [{'id': 'x', '@removed': {}}], ['a']),
])
def test_a_member_delta_applies_as_removing_and_appending_in_order(ids, delta, expected):
    def naive(ids, delta):
        out = list(ids)
        for m in delta:
            if '@removed' in m:
                if m['id'] in out:
                    out.remove(m['id'])
            elif m['id'] not in out:
                out.append(m['id'])
        return out
    assert er._apply_member_delta(ids, delta) == expected == naive(ids, delta)
