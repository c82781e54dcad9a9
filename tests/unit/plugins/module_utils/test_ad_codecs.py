# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import re
import uuid

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import ad_codecs as c
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.errors import CloudSyncError

settings.register_profile('unit', max_examples=300, deadline=None)
settings.load_profile('unit')

META = ',+"\\<>;=# \x00\n\r\t'
values = st.text(alphabet=st.one_of(st.sampled_from(list(META)), st.characters(blacklist_categories=('Cs',))), max_size=40)
attr_types = st.sampled_from(['CN', 'OU', 'DC', 'cn', 'uid', 'L', '2.5.4.3'])


# ---------------------------------------------------------------------------- errors

def test_cloudsyncerror_fail_kwargs():
    err = CloudSyncError('boom', details={'dn': 'CN=x', 'msg': 'ignored'}, code=5)
    assert err.msg == 'boom'
    assert str(err) == 'boom'
    assert err.to_fail_kwargs() == {'msg': 'boom', 'dn': 'CN=x', 'code': 5}
    assert CloudSyncError('plain').to_fail_kwargs() == {'msg': 'plain'}


# ---------------------------------------------------------------------------- DN escaping

@pytest.mark.parametrize('raw, escaped', [
    ('a,b', 'a\\,b'),
    ('a+b', 'a\\+b'),
    ('say "hi"', 'say \\"hi\\"'),
    ('back\\slash', 'back\\\\slash'),
    ('<x>;y=z', '\\<x\\>\\;y\\=z'),
    ('#first', '\\#first'),
    ('mid#dle', 'mid#dle'),
    (' lead', '\\ lead'),
    ('trail ', 'trail\\ '),
    (' ', '\\ '),
    ('  ', '\\ \\ '),
    ('in side', 'in side'),
    ('nul\x00', 'nul\\00'),
    ('line\nfeed\r', 'line\\0Afeed\\0D'),
    ('del\x7f', 'del\\7F'),
    ('Ünïcødé ñ 日本', 'Ünïcødé ñ 日本'),
    ('', ''),
])
def test_escape_dn_value_examples(raw, escaped):
    assert c.escape_dn_value(raw) == escaped
    assert c.unescape_dn_value(escaped) == raw


def test_escape_dn_value_rejects_non_text():
    with pytest.raises(ValueError):
        c.escape_dn_value(b'bytes')


def test_unescape_hex_pairs_utf8():
    assert c.unescape_dn_value('a\\2Cb') == 'a,b'
    assert c.unescape_dn_value('\\C3\\A9t\\C3\\A9') == 'été'
    assert c.unescape_dn_value('\\E6\\97\\A5x') == '日x'
    with pytest.raises(ValueError):
        c.unescape_dn_value('\\FF')
    with pytest.raises(ValueError):
        c.unescape_dn_value('abc\\')


@given(values)
def test_escape_round_trip(v):
    esc = c.escape_dn_value(v)
    assert c.unescape_dn_value(esc) == v
    # no unescaped metacharacter survives
    stripped = re.sub(r'\\(?:[0-9A-Fa-f]{2}|.)', '', esc, flags=re.S)
    assert not set(stripped) & set(',+"\\<>;\x00')
    assert not esc.startswith('#') and not esc.startswith(' ')
    assert not (esc.endswith(' ') and not esc.endswith('\\ '))


@given(st.lists(st.lists(st.tuples(attr_types, values), min_size=1, max_size=3).map(tuple), min_size=1, max_size=5))
def test_build_parse_round_trip(rdns):
    dn = c.build_dn(rdns)
    assert c.parse_dn(dn) == [tuple(r) for r in rdns]
    assert c.build_dn(c.parse_dn(dn)) == dn
    assert c.rdn_value(dn) == rdns[0][0][1]
    assert c.parse_dn(c.first_rdn(dn)) == [tuple(rdns[0])]
    if len(rdns) > 1:
        assert c.parse_dn(c.parent_dn(dn)) == [tuple(r) for r in rdns[1:]]
    else:
        assert c.parent_dn(dn) == ''


def _hex_all(value):
    return ''.join('\\%02X' % b for b in value.encode('utf-8'))


@given(st.lists(st.tuples(st.sampled_from(['CN', 'OU', 'DC']), values), min_size=1, max_size=4))
def test_dn_key_ignores_escaping_style_and_case(pairs):
    plain = c.build_dn(pairs)
    hexed = ','.join('%s=%s' % (a.lower(), _hex_all(v.upper())) for a, v in pairs)
    spaced = ' , '.join('%s = %s' % (a, c.escape_dn_value(v)) for a, v in pairs)
    key = c.dn_key(plain)
    assert c.dn_key(spaced) == key
    if all(c.fold_case(v.upper()) == c.fold_case(v) for _a, v in pairs):
        assert c.dn_key(hexed) == key


@given(st.lists(st.tuples(st.sampled_from(['CN', 'OU', 'DC']), values), min_size=1, max_size=4), st.sampled_from([',', ' , ', ', ']))
def test_dn_key_fast_path_equals_full_parse(pairs, sep):
    dn = sep.join('%s=%s' % (a, c.escape_dn_value(v)) for a, v in pairs)
    assert c.dn_key(dn) == ','.join(c._key_rdn(r) for r in c.parse_dn(dn))


plain_values = st.text(alphabet=st.sampled_from(list('aZ09 -_.#=,+\\"<>;\x01\u00e9')), min_size=1, max_size=12)


@given(st.lists(st.tuples(st.sampled_from(['CN', 'ou', 'Dc', 'x-Attr', '2.5.4.3']), plain_values), min_size=1, max_size=4),
       st.sampled_from([',', ', ', ' ,']))
def test_plain_dn_key_is_the_full_parse_or_none(pairs, sep):
    # The unparsed key of a plain DN is the key the full parse gives; every other DN is parsed.
    dn = sep.join('%s=%s' % (a, v) for a, v in pairs)
    key = c.plain_dn_key(dn)
    try:
        parsed = ','.join(c._key_rdn(r) for r in c.parse_dn(dn))
    except ValueError:
        assert key is None
        return
    if key is not None:
        assert key == parsed
    assert c.dn_key(dn) == parsed


@given(st.lists(st.tuples(st.sampled_from(['CN', 'ou', 'Dc', 'x-Attr', '2.5.4.3']), plain_values), min_size=1, max_size=4),
       st.sampled_from([',', ', ', ' ,', ';', '+']))
def test_plain_dn_positions_are_the_full_parse(pairs, sep):
    # _parse_dn_positions splits a plain DN without parsing it: the same RDNs and ends as the full
    # parse; any other DN goes to the full parse.
    dn = sep.join('%s=%s' % (a, v) for a, v in pairs)
    try:
        full = c._parse_dn_positions_in_full(dn)
    except ValueError:
        with pytest.raises(ValueError):
            c._parse_dn_positions(dn)
        return
    assert c._parse_dn_positions(dn) == full
    if c._PLAIN_DN.fullmatch(dn):
        assert c._plain_dn_positions(dn) == full


def test_plain_dn_positions_examples():
    dn = 'CN=Group 1 (renamed)_6eb2,OU=Bench,DC=corp,DC=example,DC=test'
    assert c._plain_dn_positions(dn) == c._parse_dn_positions_in_full(dn) == (
        [(('CN', 'Group 1 (renamed)_6eb2'),), (('OU', 'Bench'),), (('DC', 'corp'),), (('DC', 'example'),), (('DC', 'test'),)],
        [26, 35, 43, 54, len(dn)])
    assert c.parent_dn(dn) == 'OU=Bench,DC=corp,DC=example,DC=test' and c.rdn_value(dn) == 'Group 1 (renamed)_6eb2'
    assert c.parse_dn('CN=\u00e9t\u00e9,DC=x') == [(('CN', '\u00e9t\u00e9'),), (('DC', 'x'),)]


def test_plain_dn_key_examples():
    assert c.plain_dn_key('CN=Bench User 1,OU=Synced,DC=corp') == 'CN=BENCH USER 1,OU=SYNCED,DC=CORP'
    for not_plain in ('CN=a ,DC=x', 'CN=a, DC=x', 'CN=a\\,b,DC=x', 'CN=a+UID=b,DC=x', 'CN= a,DC=x', 'CN=#a,DC=x',
                      'CN=\u00e9,DC=x', '2.5.4.3=a,DC=x', 'CN=,DC=x', 'CN=a,DC=x,', 'CN=a=b,DC=x', ''):
        assert c.plain_dn_key(not_plain) is None, not_plain
    assert c.plain_dn_key('CN=a#b,DC=x') == c.dn_key('cn=A#B , dc=X') == 'CN=A#B,DC=X'


def test_dn_key_examples():
    with pytest.raises(ValueError):
        c.dn_key(None)
    k = c.dn_key('CN=Finance\\, Team,OU=Groups,DC=corp,DC=example,DC=test')
    assert c.dn_key('cn=finance\\2C team , ou=GROUPS,dc=CORP,dc=Example,dc=test') == k
    assert c.dn_key('CN="Finance, Team",OU=Groups,DC=corp,DC=example,DC=test') == k
    assert c.dn_key('CN=Finance Team,OU=Groups,DC=corp,DC=example,DC=test') != k
    # trailing escaped space is significant, unescaped spaces around separators are not
    assert c.dn_key('CN=a\\ ,DC=x') != c.dn_key('CN=a ,DC=x')
    assert c.dn_key('CN=a ,DC=x') == c.dn_key('CN=a,DC=x')
    # multi-valued RDN order does not matter
    assert c.dn_key('CN=a+UID=b,DC=x') == c.dn_key('uid=B+cn=A,dc=X')
    assert c.dn_key('CN=Été,DC=x') == c.dn_key('CN=\\C3\\89T\\C3\\A9,DC=x')
    assert c.dn_key('') == ''
    # AD's case-insensitivity is a per-character upper-case mapping, not full case folding
    assert c.dn_key('CN=Straße,DC=x') != c.dn_key('CN=Strasse,DC=x')
    assert c.dn_key('CN=σ,DC=x') == c.dn_key('CN=ς,DC=x') == c.dn_key('CN=Σ,DC=x')
    assert c.dn_key('CN=Ärger,DC=x') == c.dn_key('cn=äRGER,dc=X')
    assert c.fold_case('abc') == 'ABC' and c.fold_case('ß') == 'ß'


@pytest.mark.parametrize('bad', ['CN', 'CN=a,', 'CN=a,,DC=x', '=a', 'C N=a', 'CN=a\\', 'CN="open'])
def test_parse_dn_rejects_invalid(bad):
    with pytest.raises(ValueError):
        c.parse_dn(bad)
    with pytest.raises(ValueError):
        c.dn_key(bad)


def test_parse_dn_examples():
    assert c.parse_dn('CN=Smith\\, John+UID=js,OU=Sales;DC=x') == [
        (('CN', 'Smith, John'), ('UID', 'js')), (('OU', 'Sales'),), (('DC', 'x'),)]
    assert c.parse_dn('CN=#04024869,DC=x') == [(('CN', 'Hi'),), (('DC', 'x'),)]
    assert c.parse_dn('CN=a\\2Cb,DC=x') == [(('CN', 'a,b'),), (('DC', 'x'),)]
    assert c.parse_dn('  ') == []
    assert c.parse_dn('CN=x=y,DC=z') == [(('CN', 'x=y'),), (('DC', 'z'),)]


def test_parent_first_rdn_and_within():
    dn = 'CN=a\\,b , OU=Groups,DC=corp,DC=test'
    assert c.parent_dn(dn) == 'OU=Groups,DC=corp,DC=test'
    assert c.first_rdn(dn) == 'CN=a\\,b'
    assert c.first_rdn('CN=x') == 'CN=x'
    assert c.rdn_attr(dn) == 'CN'
    assert c.rdn_value(dn) == 'a,b'
    assert c.parent_dn('DC=test') == ''
    assert c.first_rdn('CN=a\\ , DC=b\\  ') == 'CN=a\\ '
    assert c.parent_dn('CN=a\\ , DC=b\\  ') == 'DC=b\\ '
    assert c.first_rdn('CN=a\\\\ ,DC=b') == 'CN=a\\\\'
    assert c.dn_is_within(dn, 'dc=CORP,dc=test')
    assert c.dn_is_within('DC=corp,DC=test', 'DC=corp,DC=test')
    assert not c.dn_is_within('CN=x,DC=xcorp,DC=test', 'DC=corp,DC=test')
    assert c.build_rdn('CN', ' x,') == 'CN=\\ x\\,'
    assert c.build_dn([('CN', 'a'), ('DC', 'b')]) == 'CN=a,DC=b'
    with pytest.raises(ValueError):
        c.build_rdn('C N', 'x')


# ---------------------------------------------------------------------------- filters

def test_escape_filter_value_examples():
    assert c.escape_filter_value('a*(b)\\c\x00') == 'a\\2a\\28b\\29\\5cc\\00'
    assert c.escape_filter_value('Ünï') == 'Ünï'
    assert c.escape_filter_value(b'\x01\xff(') == '\\01\\ff\\28'
    assert c.escape_filter_bytes(bytearray(b'\x00a')) == '\\00\\61'
    with pytest.raises(ValueError):
        c.escape_filter_bytes('text')


@given(st.text(alphabet=st.one_of(st.sampled_from(list('*()\\\x00')), st.characters(blacklist_categories=('Cs',))), max_size=60))
def test_escape_filter_value_no_metachars(v):
    esc = c.escape_filter_value(v)
    rest = re.sub(r'\\[0-9a-f]{2}', '', esc)
    assert not set(rest) & set('*()\\\x00')
    # decodes back (escapes are UTF-8 bytes: RFC 4515)
    parts = re.split(r'(\\[0-9a-f]{2})', esc)
    raw = b''.join(bytes([int(p[1:], 16)]) if re.match(r'^\\[0-9a-f]{2}$', p) else p.encode('utf-8') for p in parts)
    assert raw.decode('utf-8') == v
    # no leading or trailing whitespace left for a filter parser to strip
    assert esc == esc.strip()


@given(st.binary(max_size=40))
def test_escape_filter_bytes_every_byte(b):
    esc = c.escape_filter_bytes(b)
    assert len(esc) == 3 * len(b)
    assert bytes(int(x, 16) for x in re.findall(r'\\([0-9a-f]{2})', esc)) == b


# ---------------------------------------------------------------------------- GUID

KNOWN_GUID = '01234567-89ab-cdef-0123-456789abcdef'
KNOWN_BYTES = bytes.fromhex('67452301ab89efcd0123456789abcdef')


def test_guid_known_values():
    assert c.guid_to_bytes(KNOWN_GUID) == KNOWN_BYTES
    assert c.guid_to_bytes('{01234567-89AB-CDEF-0123-456789ABCDEF}') == KNOWN_BYTES
    assert c.guid_from_bytes(KNOWN_BYTES) == KNOWN_GUID
    assert c.guid_to_filter(KNOWN_GUID) == '\\67\\45\\23\\01\\ab\\89\\ef\\cd\\01\\23\\45\\67\\89\\ab\\cd\\ef'
    assert c.immutable_id_from_guid(KNOWN_GUID) == base64.b64encode(KNOWN_BYTES).decode()
    assert c.immutable_id_from_guid(KNOWN_GUID) == 'Z0UjAauJ780BI0VniavN7w=='
    assert c.guid_from_immutable_id('Z0UjAauJ780BI0VniavN7w==') == KNOWN_GUID
    assert c.normalize_guid('{0123456789ABCDEF0123456789ABCDEF}') == KNOWN_GUID


@pytest.mark.parametrize('bad', ['', 'nope', '01234567-89ab-cdef-0123-456789abcde', 12, None, '01234567-89ab-cdef-0123-456789abcdeg'])
def test_guid_rejects_bad_strings(bad):
    with pytest.raises(ValueError):
        c.guid_to_bytes(bad)


@pytest.mark.parametrize('bad', [b'', b'x' * 15, b'x' * 17, 'x' * 16])
def test_guid_from_bytes_rejects(bad):
    with pytest.raises(ValueError):
        c.guid_from_bytes(bad)


@pytest.mark.parametrize('bad', ['', 'not base64!', base64.b64encode(b'short').decode(), 'user@corp.example.test', None])
def test_guid_from_immutable_id_rejects(bad):
    with pytest.raises(ValueError):
        c.guid_from_immutable_id(bad)


@given(st.uuids())
def test_guid_round_trips(u):
    s = str(u)
    assert c.guid_from_bytes(c.guid_to_bytes(s)) == s
    assert c.guid_to_bytes(s.upper()) == u.bytes_le
    assert c.guid_from_immutable_id(c.immutable_id_from_guid(s)) == s
    assert len(c.guid_to_filter(s)) == 48
    assert uuid.UUID(bytes_le=c.guid_to_bytes(s)) == u


# ---------------------------------------------------------------------------- SID

def test_sid_known_values():
    admins = bytes.fromhex('01020000000000052000000020020000')
    assert c.sid_to_bytes('S-1-5-32-544') == admins
    assert c.sid_from_bytes(admins) == 'S-1-5-32-544'
    assert c.sid_to_filter('S-1-5-32-544') == '\\01\\02\\00\\00\\00\\00\\00\\05\\20\\00\\00\\00\\20\\02\\00\\00'
    dom = 'S-1-5-21-3623811015-3361044348-30300820-1013'
    raw = c.sid_to_bytes(dom)
    assert raw[:8] == bytes.fromhex('0105000000000005')
    assert raw[-4:] == (1013).to_bytes(4, 'little')
    assert c.sid_from_bytes(raw) == dom
    assert c.sid_from_bytes(c.sid_to_bytes('S-1-0')) == 'S-1-0'
    assert c.sid_from_bytes(c.sid_to_bytes('S-1-0x123456789ABC-1')) == 'S-1-0x123456789ABC-1'


@pytest.mark.parametrize('bad', ['', 'S-2-5-21', 'X-1-5', 'S-1', 'S-1-5-4294967296', 'S-1-281474976710656-1',
                                 'S-1-5' + '-1' * 16, None, 'S-1-5-21-a'])
def test_sid_to_bytes_rejects(bad):
    with pytest.raises(ValueError):
        c.sid_to_bytes(bad)


@pytest.mark.parametrize('bad', [b'', b'\x01\x01\x00\x00\x00\x00\x00\x05', b'\x02\x00\x00\x00\x00\x00\x00\x05', 'S-1-5'])
def test_sid_from_bytes_rejects(bad):
    with pytest.raises(ValueError):
        c.sid_from_bytes(bad)


@given(st.integers(0, (1 << 48) - 1), st.lists(st.integers(0, (1 << 32) - 1), max_size=15))
def test_sid_round_trips(authority, subs):
    auth = str(authority) if authority < 1 << 32 else '0x%012X' % authority
    sid = 'S-1-%s%s' % (auth, ''.join('-%d' % s for s in subs))
    raw = c.sid_to_bytes(sid)
    assert len(raw) == 8 + 4 * len(subs)
    assert c.sid_from_bytes(raw) == sid


@given(st.uuids())
def test_anchor_round_trip(value):
    gid = str(value)
    assert c.group_id_from_anchor(c.anchor_for(gid)) == gid
    assert c.group_id_from_anchor(c.anchor_for(gid.upper())) == gid
    assert c.group_id_from_anchor('group_' + gid) == gid


@pytest.mark.parametrize('value', [None, '', 'Group_', 'Group_x', 'User_' + '0' * 8 + '-0000-4000-8000-' + '0' * 12,
                                   'Group_{01234567-89ab-cdef-0123-456789abcdef}', 'Group_0123456789abcdef0123456789abcdef',
                                   ' Group_01234567-89ab-cdef-0123-456789abcdef', 'Group_01234567-89ab-cdef-0123-456789abcdef\n'])
def test_only_exact_anchors_are_ours(value):
    assert c.group_id_from_anchor(value) is None


@pytest.mark.parametrize('value,expected', [
    ('<GUID=01234567-89AB-CDEF-0123-456789ABCDEF>;<SID=S-1-5-21-1-2-3-500>;CN=a\\,b,DC=x',
     ('CN=a\\,b,DC=x', '01234567-89ab-cdef-0123-456789abcdef')),
    ('<GUID=01234567-89ab-cdef-0123-456789abcdef>;CN=x', ('CN=x', '01234567-89ab-cdef-0123-456789abcdef')),
    ('<SID=S-1-5-21-1-2-3-500>;CN=x', ('CN=x', None)),
    ('CN=plain,DC=x', ('CN=plain,DC=x', None)),
    ('<GUID=01234567-89ab-cdef-0123-456789abcdef>', ('<GUID=01234567-89ab-cdef-0123-456789abcdef>', None)),
    ('<GUID=nonsense>;CN=x', ('CN=x', None)),
    ('<GUID=0123456789abcdef0123456789abcdef>;CN=x', ('CN=x', None)),
])
def test_split_extended_dn(value, expected):
    assert c.split_extended_dn(value) == expected


def test_canonical_identifiers_are_kept_not_copied():
    # At 200,000 users a copy of each SID or GUID used as a search key was 17-19 MB of the resolution's peak.
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import ad_reader
    guid = str(uuid.UUID(int=12345))
    assert c.normalize_guid(guid) is guid
    assert c.normalize_guid('{%s}' % guid.upper()) == guid
    sid = ''.join(['S-1-5-21-', '1004336348-1177238915-682003330-', '1105'])
    assert ad_reader._user_key({'on_premises_security_identifier': sid}, 'sid') is sid
    assert ad_reader._user_key({'on_premises_security_identifier': sid.lower()}, 'sid') == sid
    assert ad_reader._user_key({'on_premises_object_identifier': guid}, 'object_identifier') is guid
