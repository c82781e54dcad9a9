"""Hostile input at the planner, AD reader and Entra reader level (pure, property-based).

Group names, descriptions, ids and member identifiers come from Entra (or from a playbook):
anyone who can name a cloud group controls them. Whatever they hold (DN and filter
metacharacters, a leading #, leading or trailing spaces, non-ASCII, control characters, maximal
lengths, text that is not a GUID, an LDAP or OData injection attempt such as ``*)(objectClass=*``
or ``a' or 1 eq 1``), it must stay data:

- every LDAP filter the AD reader sends parses (ldap3's own RFC 4515 parser) into exactly the
  intended structure, whose assertion values, unescaped, are exactly the input values;
- identifiers that are not GUIDs or SIDs never reach an LDAP filter at all;
- every OData ``$filter`` the Entra reader sends parses (the Graph emulator's parser) into one
  ``displayName in (...)`` whose literals are exactly the requested names; only GUIDs are ever
  put into a URL path;
- the planner's DN for any display name parses, sits exactly in the target OU, and its RDN value
  is the documented cn (at most 64 UTF-16 units), with displayName kept exactly.

The AD and Graph "clients" here are recorders that answer nothing: the code under test builds
the requests; nothing of the product is replaced.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import re
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import ad_codecs, ad_reader, entra_reader
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.writeback_plan import (
    cn_for, plan_writeback, planned_names,
)

ldap3_search = pytest.importorskip('ldap3.operation.search')
from emulator.tenant import _Parser as ODataParser  # noqa: E402  pylint: disable=wrong-import-position

DOMAIN = 'DC=corp,DC=example,DC=test'
TARGET = 'OU=Cloud \\#Groups\\, EMEA,' + DOMAIN

# The characters that mean something in a DN, an LDAP filter or an OData literal, plus controls.
META = list(',+"\\<>;=#*()\x00\'/ ?&%$@[]|:') + ['\t', '\n', '\r', '\x01', '\x1f', '\x7f', '\u00a0', '\u200b', '\ufeff']
hostile_text = st.text(alphabet=st.one_of(st.sampled_from(META), st.characters(blacklist_categories=('Cs',))), max_size=80)
INJECTIONS = ['*)(objectClass=*', '*', ')(|(cn=*', '\\2a', 'x)(!(cn=x', "a' or 1 eq 1", "') or startswith(displayName,'",
              "a'' or ''1'' eq ''1", '#', ' leading', 'trailing ', '#x,y=z+w', 'Ünïcødé グループ', '\x00', 'a\x00b',
              'x' * 256, '\U0001F600' * 40]

LDAP_AND, LDAP_OR, LDAP_EQUAL = 1, 2, 10


class RecordingLDAP(object):
    """Stands where ADClient stands: records each search, finds nothing."""

    def __init__(self):
        self.filters = []

    def search(self, base, ldap_filter, attributes=None, scope='subtree', **kwargs):
        self.filters.append(ldap_filter)
        return iter(())


class RecordingGraph(object):
    """Stands where GraphClient stands: records each request, finds nothing."""

    def __init__(self):
        self.requests = []

    def iter_pages(self, path, params=None, headers=None, version='v1.0'):
        self.requests.append((path, dict(params or {})))
        return iter(())

    def get(self, path, params=None, headers=None, version='v1.0'):
        self.requests.append((path, dict(params or {})))
        return {}

    def collection_params(self, path, params=None, headers=None):
        return dict(params or {}), {}

    def url(self, path, params=None, version='v1.0'):
        # The reader measures advanced queries by their URL length, as GraphClient.url builds it.
        from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.graph_client import relative_url
        return relative_url('https://graph.microsoft.com/%s%s' % (version, path), params)

    def batch_collect(self, requests_list, version='v1.0', headers=None, tolerate=(404,)):
        for key, url in requests_list:
            self.requests.append((url, {}))
        return dict((key, []) for key, _url in requests_list), {}


def _unescape(raw):
    """An assertion value as ldap3 parsed it (bytes with \\XX escapes) -> the bytes it asserts."""
    return re.sub(rb'\\([0-9a-fA-F]{2})', lambda m: bytes([int(m.group(1), 16)]), raw)


def parse_ldap(text):
    """ldap3's RFC 4515 parser: (tag, attribute, value bytes, children) trees; raises on syntax errors."""
    root = ldap3_search.parse_filter(text, None, False, False, None, False)

    def conv(node):
        assertion = node.assertion or {}
        value = assertion.get('value')
        return (node.tag, assertion.get('attr'), _unescape(value) if value is not None else None,
                [conv(e) for e in node.elements])
    assert root.tag == 0 and len(root.elements) == 1, 'more than one filter at the top of %r' % text
    return conv(root.elements[0])


def equality_values(node, attr):
    """The values of an equality on ``attr``, or of an OR of such equalities; fails on anything else."""
    tag, a, value, children = node
    if tag == LDAP_EQUAL:
        assert a.lower() == attr.lower(), (a, attr)
        return [value]
    assert tag == LDAP_OR, 'expected an OR of %s equalities, got tag %s' % (attr, tag)
    out = []
    for child in children:
        assert child[0] == LDAP_EQUAL and child[1].lower() == attr.lower(), child
        out.append(child[2])
    return out


def strip_object_class(node, object_class):
    tag, _a, _v, children = node
    assert tag == LDAP_AND, node
    assert children[0] == (LDAP_EQUAL, 'objectClass', object_class.encode(), []), children[0]
    return children[1:]


# -- AD reader ----------------------------------------------------------------------------------

@given(st.lists(st.one_of(hostile_text, st.sampled_from(INJECTIONS)), min_size=1, max_size=8, unique=True))
def test_selected_groups_filter_asserts_exactly_the_anchors_asked_for(ids):
    rec = RecordingLDAP()
    assert ad_reader.read_managed_groups(rec, DOMAIN, ids) == []
    asked = []
    for text in rec.filters:
        rest = strip_object_class(parse_ldap(text), 'group')
        assert len(rest) == 1
        asked.extend(equality_values(rest[0], ad_reader.ANCHOR_ATTRIBUTE))
    assert sorted(asked) == sorted(ad_reader.anchor_for(i).encode('utf-8') for i in ids)


@given(st.lists(st.one_of(hostile_text, st.sampled_from(INJECTIONS)), min_size=1, max_size=8, unique=True))
def test_writeback_v2_filter_asserts_exactly_the_admin_descriptions_asked_for(ids):
    rec = RecordingLDAP()
    ad_reader.read_writeback_v2_groups(rec, DOMAIN, ids)
    asked = []
    for text in rec.filters[1:]:  # the first is the fixed prefix search for all v2 groups
        rest = strip_object_class(parse_ldap(text), 'group')
        assert len(rest) == 2 and rest[1][0] == 3, 'expected (adminDescription...)(!(anchor=*)): %r' % text
        asked.extend(equality_values(rest[0], 'adminDescription'))
    if len(rec.filters) > 1:
        assert sorted(asked) == sorted(ad_reader.anchor_for(i).encode('utf-8') for i in ids)


@given(st.lists(st.one_of(hostile_text, st.sampled_from(INJECTIONS)).filter(lambda s: s.strip()), min_size=1, max_size=6, unique=True))
def test_name_lookups_assert_exactly_the_names_asked_for(names):
    rec = RecordingLDAP()
    ad_reader.read_sam_account_names(rec, DOMAIN, names)
    asked = [v for text in rec.filters for v in equality_values(parse_ldap(text), 'sAMAccountName')]
    assert sorted(asked) == sorted(set(n.lower().encode('utf-8') for n in names)), 'names are looked up case-insensitively'
    dns = [ad_codecs.build_dn([(('CN', n),), (('OU', 'X'),)]) + ',' + DOMAIN for n in names]
    rec = RecordingLDAP()
    ad_reader.read_objects_at(rec, DOMAIN, dns)
    asked = [v for text in rec.filters for v in equality_values(parse_ldap(text), 'distinguishedName')]
    assert sorted(asked) == sorted(dn.encode('utf-8') for dn in dns)


identifier = st.one_of(st.none(), hostile_text, st.sampled_from(INJECTIONS), st.uuids().map(str),
                       st.uuids().map(lambda u: '{%s}' % str(u).upper()))


@given(st.lists(st.tuples(identifier, identifier, identifier), min_size=1, max_size=6),
       st.sampled_from(['auto', 'object_identifier', 'sid', 'immutable_id']))
def test_member_identifiers_reach_ldap_only_as_validated_binary(idents, member_match):
    users = [dict(id='u%d' % n, type='user', on_premises_object_identifier=oid, on_premises_security_identifier=sid,
                  on_premises_immutable_id=imm) for n, (oid, sid, imm) in enumerate(idents)]
    rec = RecordingLDAP()
    resolution, unresolved = ad_reader.resolve_users(rec, users, member_match)
    assert resolution == {} and set(unresolved) == set(u['id'] for u in users)
    for text in rec.filters:
        rest = strip_object_class(parse_ldap(text), 'user')
        assert len(rest) == 1 and rest[0][0] == LDAP_OR
        for tag, attr, value, _children in rest[0][3]:
            assert tag == LDAP_EQUAL
            if attr == 'objectSid':
                assert ad_codecs.sid_to_bytes(ad_codecs.sid_from_bytes(value)) == value
            else:
                assert attr in ('objectGUID', 'mS-DS-ConsistencyGuid') and len(value) == 16


def test_filter_values_keep_leading_and_trailing_whitespace():
    for value in (' padded ', 'Group_x\r', '\tlead', 'trail\u00a0', '  ', ' in side '):
        (tag, attr, sent, _c) = parse_ldap('(sAMAccountName=%s)' % ad_codecs.escape_filter_value(value))
        assert sent == value.encode('utf-8'), (value, sent)


# -- Entra reader and selection -----------------------------------------------------------------

@given(st.lists(st.one_of(hostile_text, st.sampled_from(INJECTIONS)), min_size=1, max_size=entra_reader.IN_LIMIT))
def test_selection_by_display_name_is_one_in_clause_of_exactly_those_names(entries):
    """Every name reaches Graph exactly as given, each in an ``in`` clause of displayName; names of
    more than 120 characters go in advanced queries of their own (Graph's eq/in value limit,
    https://learn.microsoft.com/en-us/graph/known-issues#some-limitations-apply-to-query-parameters),
    so a selection may take several requests, which together hold exactly the names."""
    ids, names = entra_reader.split_selection(entries)
    rec = RecordingGraph()
    entra_reader.find_groups(rec, ids=None, display_names=names)
    if not names:
        assert rec.requests == []
        return
    sent = []
    for url, params in rec.requests:
        if not params:   # a $batch sub-request: the parameters are in the URL
            path, _sep, query = url.partition('?')
            params = dict((k, v) for k, v in (
                (unquote(a), unquote(b)) for a, _e, b in (item.partition('=') for item in query.split('&'))))
        else:
            path = url
        assert path.split('?')[0].endswith('/groups'), url
        node = ODataParser(params['$filter']).parse()
        assert node[:2] == ('in', 'displayName'), params['$filter']
        sent.extend(node[2])
    assert sorted(sent) == sorted(names)


@given(st.lists(st.one_of(hostile_text, st.sampled_from(INJECTIONS), st.uuids().map(str)), min_size=1, max_size=10))
def test_only_guids_are_ever_put_into_a_url_path(entries):
    ids, names = entra_reader.split_selection(entries)
    for gid in ids:
        assert re.fullmatch(r'[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}', gid), gid
    for name in names:
        assert not entra_reader.GUID_RE.match(name)
    rec = RecordingGraph()
    entra_reader.find_groups(rec, ids=ids or None, display_names=None)
    for url, _params in rec.requests:
        segment = url.split('?', 1)[0]
        assert re.fullmatch(r'/groups/[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}', segment), url


def test_a_guid_with_a_trailing_newline_is_not_taken_as_a_guid():
    guid = '6f1c0000-0000-4000-8000-0000000000ab'
    for text in (guid + '\n/../users', guid + "' or 1 eq 1", guid + '\x00'):
        ids, names = entra_reader.split_selection([text])
        assert ids == [], text


# -- planner --------------------------------------------------------------------------------------

def _utf16_units(text):
    return len(text.encode('utf-16-le')) // 2


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(hostile_text, st.sampled_from(INJECTIONS)), st.uuids(), st.one_of(st.none(), hostile_text))
def test_planned_dn_of_any_name_parses_sits_in_the_target_ou_and_keeps_the_name(name, gid, description):
    group = dict(id=str(gid), display_name=name, description=description, members=[], security_enabled=True,
                 mail_enabled=False, group_types=[])
    options = {'target_ou': TARGET}
    names = planned_names([group], options, DOMAIN)
    plan = plan_writeback([group], dict(domain_dn=DOMAIN, managed=[], v2_candidates=[], taken_dns={}, sam_taken=[]), {}, options)
    (op,) = plan.ops
    assert op['op'] == 'create' and names['dns'] == [op['dn']]
    parsed = ad_codecs.parse_dn(op['dn'])
    assert ad_codecs.dn_key(ad_codecs.parent_dn(op['dn'])) == ad_codecs.dn_key(TARGET)
    assert ad_codecs.rdn_attr(op['dn']).lower() == 'cn' and len(parsed[0]) == 1
    cn = ad_codecs.rdn_value(op['dn'])
    assert cn == cn_for(group) == op['attributes']['cn']
    assert cn.endswith('_' + str(gid)[-12:])
    assert _utf16_units(cn) <= 64
    assert cn == cn.strip(' '), 'AD strips leading and trailing spaces of an RDN: the name would not round-trip'
    assert op['attributes'].get('displayName') == name or (not name.strip() and not op['attributes'].get('displayName'))
    assert op['attributes']['msDS-ExternalDirectoryObjectId'] == 'Group_' + str(gid)
    desc = op['attributes'].get('description')
    if desc is not None:
        assert _utf16_units(desc) <= 448 and desc == desc.strip()
