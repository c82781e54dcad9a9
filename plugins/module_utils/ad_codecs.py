# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure codecs for Active Directory values (standard library only).

* Distinguished names (RFC 4514): ``escape_dn_value``, ``unescape_dn_value``, ``parse_dn``,
  ``build_dn``, ``build_rdn``, ``dn_key``, ``fold_case``, ``parent_dn``, ``first_rdn``,
  ``rdn_value``, ``rdn_attr``, ``dn_is_within``, ``split_extended_dn``.
* Search filters (RFC 4515): ``escape_filter_value``, ``escape_filter_bytes``.
* The Cloud Sync anchor: ``ANCHOR_ATTRIBUTE``, ``ANCHOR_PREFIX``, ``anchor_for``, ``group_id_from_anchor``.
* objectGUID: ``guid_to_bytes``, ``guid_from_bytes``, ``guid_to_filter``,
  ``guid_from_immutable_id``, ``immutable_id_from_guid``, ``normalize_guid``.
* objectSid: ``sid_to_bytes``, ``sid_from_bytes``, ``sid_to_filter``.

Parsed DNs are lists of RDNs; each RDN is a tuple of ``(attribute_type, value)`` pairs
(one pair except for multi-valued RDNs such as ``CN=a+UID=b``); values are unescaped text.
Bad input raises ``ValueError`` with a message naming the offending value.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import binascii
import re
import struct
import uuid

# Characters RFC 4514 requires (or AD applies) a backslash before, anywhere in a value.
_DN_SPECIAL = frozenset(',+"\\<>;=')
_HEX_DIGITS = frozenset('0123456789abcdefABCDEF')
# A DN that needs no escape processing at all: the fast path of dn_key.
_SIMPLE_DN = re.compile(r'^[^\\"+#;]*$')
_NEEDS_ESCAPE = re.compile(r'[,+"\\<>;=\x00-\x1f\x7f]|^[ #]| $')
_ATTR_TYPE = re.compile(r'^([A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)*)$')
# A DN whose key is its own upper case (see dn_key): ASCII, attribute types of letters, digits and
# hyphens, every value unescaped and needing no escape (no special or control character, no
# leading space or "#", no trailing space), no space around the separators, no multi-valued RDN.
_PLAIN_RDN = r'[A-Za-z][A-Za-z0-9-]*=[^ #,+"\\<>;=\x00-\x1f\x7f](?:[^,+"\\<>;=\x00-\x1f\x7f]*[^ ,+"\\<>;=\x00-\x1f\x7f])?'
_PLAIN_DN = re.compile('%s(?:,%s)*' % (_PLAIN_RDN, _PLAIN_RDN))


# --------------------------------------------------------------------------------------------
# Distinguished names
# --------------------------------------------------------------------------------------------

def escape_dn_value(value):
    """Escape one attribute value for use in a DN (RFC 4514, as AD writes it).

    ``,+"\\<>;=`` get a backslash; NUL and other control characters (U+0000..U+001F, U+007F)
    become ``\\XX`` hex pairs; a leading ``#`` or space and a trailing space get a backslash.
    Non-ASCII characters are kept as text (ldap3 sends the DN as UTF-8).
    """
    if not isinstance(value, str):
        raise ValueError('DN attribute value must be text, got %r' % (value,))
    if not _NEEDS_ESCAPE.search(value):
        return value
    out = []
    last = len(value) - 1
    for i, ch in enumerate(value):
        code = ord(ch)
        if ch in _DN_SPECIAL:
            out.append('\\' + ch)
        elif code < 0x20 or code == 0x7f:
            out.append('\\%02X' % code)
        elif ch == ' ' and (i == 0 or i == last):
            out.append('\\ ')
        elif ch == '#' and i == 0:
            out.append('\\#')
        else:
            out.append(ch)
    return ''.join(out)


def _decode_hex_bytes(buf, where):
    try:
        return bytes(buf).decode('utf-8')
    except UnicodeDecodeError:
        raise ValueError('DN %r: escaped bytes are not valid UTF-8' % (where,)) from None


def unescape_dn_value(value):
    """Reverse ``escape_dn_value``: backslash escapes and ``\\XX`` hex pairs (consecutive pairs
    form UTF-8 sequences). Leading/trailing unescaped spaces are NOT stripped here (``parse_dn``
    does that); a value starting with an unescaped ``#`` is decoded as a BER hex string."""
    if not isinstance(value, str):
        raise ValueError('DN attribute value must be text, got %r' % (value,))
    if value.startswith('#'):
        return _decode_ber_hexstring(value[1:], value)
    out = []
    buf = bytearray()
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if ch == '\\':
            if i + 2 < n and value[i + 1] in _HEX_DIGITS and value[i + 2] in _HEX_DIGITS:
                buf.append(int(value[i + 1:i + 3], 16))
                i += 3
                continue
            if i + 1 >= n:
                raise ValueError('DN value %r ends with a lone backslash' % (value,))
            if buf:
                out.append(_decode_hex_bytes(buf, value))
                buf = bytearray()
            out.append(value[i + 1])
            i += 2
            continue
        if buf:
            out.append(_decode_hex_bytes(buf, value))
            buf = bytearray()
        out.append(ch)
        i += 1
    if buf:
        out.append(_decode_hex_bytes(buf, value))
    return ''.join(out)


def _decode_ber_hexstring(hexstr, where):
    """``#04...`` style values (RFC 4514 2.4): decode a BER string type, else keep the text."""
    try:
        raw = binascii.unhexlify(hexstr)
    except (binascii.Error, ValueError):
        raise ValueError('DN value %r: invalid BER hex string' % (where,)) from None
    if len(raw) >= 2 and raw[0] in (0x04, 0x0c, 0x13, 0x14, 0x16, 0x1a) and raw[1] < 0x80 and raw[1] == len(raw) - 2:
        try:
            return raw[2:].decode('utf-8')
        except UnicodeDecodeError:
            pass
    # Not a string we understand: keep the literal form so it still compares consistently.
    return '#' + hexstr.lower()


def parse_dn(dn):
    """Parse a DN into a list of RDNs, each a tuple of ``(attr_type, value)`` pairs.

    Handles ``\\,``-style escapes, ``\\2C`` hex pairs (multi-byte UTF-8 too), multi-valued RDNs
    (``+``), ``;`` as a legacy separator, quoted values, spaces around separators and ``=``.
    Attribute types keep the case they are written in. ``''`` parses to ``[]``.
    """
    rdns, _positions = _parse_dn_positions(dn)
    return rdns


def _parse_dn_positions(dn):
    """Parse ``dn``; also return the index just after each RDN's terminating separator."""
    if isinstance(dn, str) and _PLAIN_DN.fullmatch(dn):
        return _plain_dn_positions(dn)
    return _parse_dn_positions_in_full(dn)


def _plain_dn_positions(dn):
    """``_parse_dn_positions`` of a plain DN (``_PLAIN_DN``: one unescaped ``attr=value`` per RDN, no
    space around the separators), as ``str.split`` gives it: 2.2 against 8.0 microseconds for the DN of
    a group, and a run parses the DN of every group it reads and plans."""
    rdns = []
    ends = []
    pos = 0
    for part in dn.split(','):
        attr, value = part.split('=', 1)
        rdns.append(((attr, value),))
        pos += len(part) + 1
        ends.append(pos)
    ends[-1] = len(dn)
    return rdns, ends


def _parse_dn_positions_in_full(dn):
    """``_parse_dn_positions`` of any DN: escapes, quotes, hex strings, multi-valued RDNs, spaces."""
    if not isinstance(dn, str):
        raise ValueError('DN must be text, got %r' % (dn,))
    n = len(dn)
    i = 0
    rdns = []
    ends = []
    current = []
    if not dn.strip():
        return [], []
    while True:
        # attribute type
        eq = dn.find('=', i)
        if eq < 0:
            raise ValueError('Invalid DN %r: missing "=" after %r' % (dn, dn[i:]))
        attr = dn[i:eq].strip()
        if not _ATTR_TYPE.match(attr):
            raise ValueError('Invalid DN %r: bad attribute type %r' % (dn, attr))
        i = eq + 1
        while i < n and dn[i] == ' ':
            i += 1
        # attribute value
        if i < n and dn[i] == '#':
            j = i + 1
            while j < n and dn[j] in _HEX_DIGITS:
                j += 1
            value = _decode_ber_hexstring(dn[i + 1:j], dn)
            i = j
            while i < n and dn[i] == ' ':
                i += 1
        elif i < n and dn[i] == '"':
            j = i + 1
            chunk = []
            while j < n and dn[j] != '"':
                if dn[j] == '\\' and j + 1 < n:
                    chunk.append(dn[j:j + 2])
                    j += 2
                else:
                    chunk.append(escape_dn_value(dn[j]) if dn[j] in _DN_SPECIAL else dn[j])
                    j += 1
            if j >= n:
                raise ValueError('Invalid DN %r: unterminated quoted value' % (dn,))
            value = unescape_dn_value(''.join(chunk))
            i = j + 1
            while i < n and dn[i] == ' ':
                i += 1
        else:
            out = []
            buf = bytearray()
            keep = 0  # length of `out` up to the last character that must be kept
            while i < n:
                ch = dn[i]
                if ch == '\\':
                    if i + 2 < n and dn[i + 1] in _HEX_DIGITS and dn[i + 2] in _HEX_DIGITS:
                        buf.append(int(dn[i + 1:i + 3], 16))
                        i += 3
                        continue
                    if i + 1 >= n:
                        raise ValueError('Invalid DN %r: ends with a lone backslash' % (dn,))
                    if buf:
                        out.append(_decode_hex_bytes(buf, dn))
                        buf = bytearray()
                    out.append(dn[i + 1])
                    keep = len(out)
                    i += 2
                    continue
                if ch in ',;+':
                    break
                if buf:
                    out.append(_decode_hex_bytes(buf, dn))
                    buf = bytearray()
                    keep = len(out)
                out.append(ch)
                if ch != ' ':
                    keep = len(out)
                i += 1
            if buf:
                out.append(_decode_hex_bytes(buf, dn))
                keep = len(out)
            value = ''.join(out[:keep])
        current.append((attr, value))
        if i >= n:
            rdns.append(tuple(current))
            ends.append(n)
            break
        sep = dn[i]
        if sep not in ',;+':
            raise ValueError('Invalid DN %r: unexpected %r after a value' % (dn, sep))
        i += 1
        if sep != '+':
            rdns.append(tuple(current))
            ends.append(i)
            current = []
        if i >= n or not dn[i:].strip():
            raise ValueError('Invalid DN %r: ends with a separator' % (dn,))
    return rdns, ends


def _rdn_pairs(rdn):
    """Accept an RDN as a tuple/list of pairs or a single ``(attr, value)`` pair."""
    if len(rdn) == 2 and isinstance(rdn[0], str) and isinstance(rdn[1], str):
        return [tuple(rdn)]
    return [tuple(p) for p in rdn]


def build_rdn(attr, value):
    """``build_rdn('CN', 'a,b') == 'CN=a\\,b'``."""
    if not _ATTR_TYPE.match(attr or ''):
        raise ValueError('Bad attribute type %r' % (attr,))
    return '%s=%s' % (attr, escape_dn_value(value))


def build_dn(rdns):
    """Inverse of ``parse_dn``: a list of RDNs (each a tuple of pairs, or one ``(attr, value)``
    pair) to a DN string with every value escaped."""
    parts = []
    for rdn in rdns:
        parts.append('+'.join(build_rdn(a, v) for a, v in _rdn_pairs(rdn)))
    return ','.join(parts)


_FOLD_CACHE = {}


def fold_case(value):
    """Case-insensitive comparison form of a value, the way AD compares: every character mapped
    to its single-character upper case (``ß`` stays ``ß``, unlike ``str.casefold``; ``ς`` and
    ``σ`` both become ``Σ``)."""
    if value.isascii():
        return value.upper()
    out = []
    for ch in value:
        up = _FOLD_CACHE.get(ch)
        if up is None:
            up = ch.upper()
            if len(up) != 1:
                up = ch
            if len(_FOLD_CACHE) < 65536:
                _FOLD_CACHE[ch] = up
        out.append(up)
    return ''.join(out)


def _key_rdn(pairs):
    return '+'.join(sorted('%s=%s' % (a.upper(), escape_dn_value(fold_case(v))) for a, v in pairs))


def plain_dn_key(dn):
    """``dn_key`` of a plain DN (see ``_PLAIN_DN``): its upper case; None for any other text."""
    return dn.upper() if dn.isascii() and _PLAIN_DN.fullmatch(dn) else None


def dn_key(dn):
    """Normalised comparison key: DNs AD returns with different escaping, case or spacing
    (``CN=A\\2CB , DC=x`` and ``cn=a\\,b,dc=X``) give the same key. Attribute types are
    upper-cased, values unescaped, case-folded with ``fold_case`` and re-escaped; spaces around
    separators dropped. Raises ValueError for a string that is not a DN.

    Most DNs a directory returns are plain (``_PLAIN_DN``): their key is their upper case, made
    without parsing (0.7 against 5 microseconds), so a run can key a DN again where keeping its key
    would cost more (the planner's groups to create: 30 MB of keys at 20,000 groups). Upper-casing
    the attribute types is what lets a plain DN's key be ``dn.upper()``."""
    if not isinstance(dn, str):
        raise ValueError('DN must be text, got %r' % (dn,))
    key = plain_dn_key(dn)
    if key is not None:
        return key
    if _SIMPLE_DN.match(dn) and dn.strip():
        parts = []
        for piece in dn.split(','):
            attr, eq, value = piece.partition('=')
            attr = attr.strip()
            if not eq or '=' in value or not _ATTR_TYPE.match(attr):
                break
            parts.append(attr.upper() + '=' + escape_dn_value(fold_case(value.strip(' '))))
        else:
            return ','.join(parts)
    return ','.join(_key_rdn(rdn) for rdn in parse_dn(dn))


def _rstrip_unescaped(text):
    """Strip trailing spaces that are not escaped (``a\\ `` keeps its escaped space)."""
    while text.endswith(' '):
        body = text[:-1]
        backslashes = len(body) - len(body.rstrip('\\'))
        if backslashes % 2:
            break
        text = body
    return text


def parent_dn(dn):
    """The DN without its first RDN, as written in ``dn`` (escaping kept). ``''`` for a
    single-RDN DN."""
    _rdns, ends = _parse_dn_positions(dn)
    if len(ends) < 2:
        return ''
    return _rstrip_unescaped(dn[ends[0]:].lstrip(' '))


def first_rdn(dn):
    """The first RDN of ``dn`` as written (escaping kept), e.g. ``CN=a\\,b``."""
    _rdns, ends = _parse_dn_positions(dn)
    if not ends:
        raise ValueError('Empty DN has no RDN')
    text = dn[:ends[0]].lstrip(' ')
    if len(ends) > 1:
        text = text[:-1]
    return _rstrip_unescaped(text)


def rdn_value(dn):
    """Unescaped value of the first attribute of the first RDN: ``rdn_value('CN=a\\,b,DC=x')
    == 'a,b'``."""
    rdns = parse_dn(dn)
    if not rdns:
        raise ValueError('Empty DN has no RDN')
    return rdns[0][0][1]


def rdn_attr(dn):
    """Attribute type of the first RDN (``'CN'``, ``'OU'``...)."""
    rdns = parse_dn(dn)
    if not rdns:
        raise ValueError('Empty DN has no RDN')
    return rdns[0][0][0]


def dn_is_within(dn, base_dn):
    """True when ``dn`` equals ``base_dn`` or lies below it (compared by ``dn_key``)."""
    key = dn_key(dn)
    base = dn_key(base_dn)
    if not base:
        return True
    return key == base or key.endswith(',' + base)


def split_extended_dn(value):
    """``<GUID=...>;<SID=...>;CN=...`` (a DN in the string form of the extended-DN control) ->
    ``(DN, objectGUID or None)``. A plain DN (or a lone ``<GUID=...>`` search base) comes back
    unchanged with None."""
    guid = None
    while value.startswith('<'):
        end = value.find('>;')
        if end < 0:
            break
        part, value = value[1:end], value[end + 2:]
        if part[:5].upper() == 'GUID=' and len(part) == 41:
            # Only the string form (ExtendedDNFlag 1, dashed): the hex form of flag 0 is the bytes in
            # objectGUID's mixed-endian layout, which normalize_guid would read as another GUID.
            try:
                guid = normalize_guid(part[5:])
            except ValueError:
                guid = None
    return value, guid


# --------------------------------------------------------------------------------------------
# Search filters
# --------------------------------------------------------------------------------------------

_FILTER_ESCAPES = {'\\': '\\5c', '*': '\\2a', '(': '\\28', ')': '\\29', '\x00': '\\00'}


def escape_filter_bytes(data):
    """Every byte as ``\\xx`` (for binary attributes such as objectGUID and objectSid)."""
    if not isinstance(data, (bytes, bytearray)):
        raise ValueError('escape_filter_bytes needs bytes, got %r' % (type(data).__name__,))
    return ''.join('\\%02x' % b for b in bytearray(data))


def escape_filter_value(value):
    """Escape an assertion value for an LDAP filter (RFC 4515): ``*()\\`` and NUL become
    ``\\2a \\28 \\29 \\5c \\00``; text stays text. Bytes are escaped byte by byte.

    Leading and trailing whitespace is escaped too (its UTF-8 bytes as ``\\xx``): ldap3 strips it
    from a filter string, so the value sent would otherwise differ from the one asked for."""
    if isinstance(value, (bytes, bytearray)):
        return escape_filter_bytes(value)
    if not isinstance(value, str):
        value = str(value)
    out = [_FILTER_ESCAPES.get(ch, ch) for ch in value]
    start, end = 0, len(value) - 1
    while start <= end and value[start].isspace():
        out[start] = escape_filter_bytes(value[start].encode('utf-8'))
        start += 1
    while end >= start and value[end].isspace():
        out[end] = escape_filter_bytes(value[end].encode('utf-8'))
        end -= 1
    return ''.join(out)


# --------------------------------------------------------------------------------------------
# The Cloud Sync anchor (msDS-ExternalDirectoryObjectId = Group_<Entra objectId>)
# --------------------------------------------------------------------------------------------

ANCHOR_ATTRIBUTE = 'msDS-ExternalDirectoryObjectId'
ANCHOR_PREFIX = 'Group_'
_ANCHOR = re.compile(r'Group_([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})', re.IGNORECASE)


def anchor_for(group_id):
    """The anchor Cloud Sync writes for an Entra group id: ``Group_<objectId>``."""
    return ANCHOR_PREFIX + group_id


def group_id_from_anchor(anchor):
    """``Group_<objectId>`` -> ``<objectId>`` (lower case); None for anything else. Only a value of
    exactly that form is ours: an object whose value merely starts with ``Group_`` is never
    treated as a managed group (so never modified or pruned)."""
    if not isinstance(anchor, str):
        return None
    match = _ANCHOR.fullmatch(anchor)
    return match.group(1).lower() if match else None


# --------------------------------------------------------------------------------------------
# objectGUID
# --------------------------------------------------------------------------------------------

def _parse_guid(value):
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str):
        raise ValueError('GUID must be a string like "01234567-89ab-cdef-0123-456789abcdef", got %r' % (value,))
    text = value.strip()
    if text.startswith('{') and text.endswith('}'):
        text = text[1:-1]
    if not re.match(r'^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$', text) and \
            not re.match(r'^[0-9a-fA-F]{32}$', text):
        raise ValueError('Not a GUID: %r (expected 01234567-89ab-cdef-0123-456789abcdef)' % (value,))
    return uuid.UUID(text)


def normalize_guid(value):
    """Canonical lower-case dashed form of a GUID string (braces and case accepted); ``value``
    itself when it is in that form already (one string per GUID, not a copy per use)."""
    canonical = str(_parse_guid(value))
    return value if value == canonical else canonical


def guid_to_bytes(value):
    """GUID string to the 16 bytes AD stores in objectGUID (first three fields little-endian)."""
    return _parse_guid(value).bytes_le


def guid_from_bytes(data):
    """objectGUID bytes (16, AD's mixed-endian layout) to the lower-case GUID string."""
    if not isinstance(data, (bytes, bytearray)) or len(data) != 16:
        raise ValueError('objectGUID must be 16 bytes, got %r' % (data,))
    return str(uuid.UUID(bytes_le=bytes(data)))


def guid_to_filter(value):
    """Escaped form for ``(objectGUID=...)``: ``\\67\\45\\23\\01...``."""
    return escape_filter_bytes(guid_to_bytes(value))


def guid_from_immutable_id(immutable_id):
    """Entra ``onPremisesImmutableId`` (base64 of the 16 objectGUID bytes) to a GUID string.
    Raises ValueError when it is not base64 of 16 bytes (e.g. a UPN-style immutable id)."""
    if not isinstance(immutable_id, str) or not immutable_id.strip():
        raise ValueError('Immutable id must be a non-empty base64 string, got %r' % (immutable_id,))
    try:
        raw = base64.b64decode(immutable_id.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError('Immutable id %r is not valid base64' % (immutable_id,)) from None
    if len(raw) != 16:
        raise ValueError('Immutable id %r decodes to %d bytes, not the 16 of a GUID' % (immutable_id, len(raw)))
    return guid_from_bytes(raw)


def immutable_id_from_guid(value):
    """GUID string to the base64 immutable id Entra Connect derives from objectGUID."""
    return base64.b64encode(guid_to_bytes(value)).decode('ascii')


# --------------------------------------------------------------------------------------------
# objectSid
# --------------------------------------------------------------------------------------------

_SID_RE = re.compile(r'^S-(\d+)-(0[xX][0-9a-fA-F]{1,12}|\d+)((?:-\d+)*)$')


def sid_to_bytes(sid):
    """``S-1-5-21-...`` to the binary objectSid (revision, count, 48-bit big-endian authority,
    32-bit little-endian sub-authorities)."""
    if not isinstance(sid, str):
        raise ValueError('SID must be a string like "S-1-5-21-...", got %r' % (sid,))
    m = _SID_RE.match(sid.strip().upper().replace('0X', '0x'))
    if not m:
        raise ValueError('Not a SID: %r (expected S-1-5-21-...)' % (sid,))
    revision = int(m.group(1))
    auth_text = m.group(2)
    authority = int(auth_text, 16) if auth_text.lower().startswith('0x') else int(auth_text)
    subs = [int(x) for x in m.group(3).split('-')[1:]] if m.group(3) else []
    if revision != 1:
        raise ValueError('SID %r: revision must be 1' % (sid,))
    if authority >= 1 << 48:
        raise ValueError('SID %r: identifier authority exceeds 48 bits' % (sid,))
    if len(subs) > 15:
        raise ValueError('SID %r: more than 15 sub-authorities' % (sid,))
    for s in subs:
        if s >= 1 << 32:
            raise ValueError('SID %r: sub-authority %d exceeds 32 bits' % (sid, s))
    return struct.pack('<BB', revision, len(subs)) + authority.to_bytes(6, 'big') + \
        b''.join(struct.pack('<I', s) for s in subs)


def sid_from_bytes(data):
    """Binary objectSid to ``S-1-5-21-...`` (authority of 2^32 or more in ``0x`` hex form)."""
    if not isinstance(data, (bytes, bytearray)) or len(data) < 8:
        raise ValueError('objectSid must be at least 8 bytes, got %r' % (data,))
    data = bytes(data)
    revision, count = data[0], data[1]
    if revision != 1:
        raise ValueError('objectSid %r: revision must be 1' % (data,))
    if len(data) != 8 + 4 * count or count > 15:
        raise ValueError('objectSid %r: length does not match its %d sub-authorities' % (data, count))
    authority = int.from_bytes(data[2:8], 'big')
    subs = struct.unpack('<%dI' % count, data[8:]) if count else ()
    auth_text = str(authority) if authority < 1 << 32 else '0x%012X' % authority
    return 'S-%d-%s%s' % (revision, auth_text, ''.join('-%d' % s for s in subs))


def sid_to_filter(sid):
    """Escaped form for ``(objectSid=...)``. (AD also accepts the ``S-1-...`` string form.)"""
    return escape_filter_bytes(sid_to_bytes(sid))
