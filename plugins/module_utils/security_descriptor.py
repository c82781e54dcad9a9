# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Binary NT security descriptors (the value of ``nTSecurityDescriptor``), standard library only.

* ``SecurityDescriptor.from_bytes(data)`` / ``sd.to_bytes()``: self-relative descriptors. The
  round trip is byte-exact for descriptors read from AD: the order of owner, group, SACL and DACL
  in the buffer, ACL revisions, unused bytes at the end of an ACL or an ACE, and the bodies of ACE
  types this module does not know are all kept.
* ``Ace``: one access control entry. ACCESS_ALLOWED/DENIED (0x00/0x01), SYSTEM_AUDIT (0x02),
  ACCESS_ALLOWED/DENIED_OBJECT (0x05/0x06) and SYSTEM_AUDIT_OBJECT (0x07) are decoded; any other
  type is kept as opaque bytes and written back unchanged.
* ``sd.to_sddl(domain_sid)``: SDDL text as Samba's ``samba-tool dsacl get`` prints it (well-known
  SID aliases, access-mask abbreviations), for readable diffs.
* ``Acl.canonical_order()`` / ``is_canonical``: Windows' order of a DACL (explicit deny, explicit
  allow, then inherited ACEs in their existing order).

SIDs and GUIDs are handled as strings (``S-1-5-...``, lower-case dashed GUIDs); their binary
forms come from ``ad_codecs``. Malformed input raises ``ValueError``.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import struct

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_codecs import (
    guid_from_bytes, guid_to_bytes, normalize_guid, sid_from_bytes, sid_to_bytes,
)

# Control flags (SECURITY_DESCRIPTOR_CONTROL)
SE_OWNER_DEFAULTED = 0x0001
SE_GROUP_DEFAULTED = 0x0002
SE_DACL_PRESENT = 0x0004
SE_DACL_DEFAULTED = 0x0008
SE_SACL_PRESENT = 0x0010
SE_SACL_DEFAULTED = 0x0020
SE_DACL_AUTO_INHERIT_REQ = 0x0100
SE_SACL_AUTO_INHERIT_REQ = 0x0200
SE_DACL_AUTO_INHERITED = 0x0400
SE_SACL_AUTO_INHERITED = 0x0800
SE_DACL_PROTECTED = 0x1000
SE_SACL_PROTECTED = 0x2000
SE_SELF_RELATIVE = 0x8000

# ACE types
ACCESS_ALLOWED_ACE_TYPE = 0x00
ACCESS_DENIED_ACE_TYPE = 0x01
SYSTEM_AUDIT_ACE_TYPE = 0x02
ACCESS_ALLOWED_OBJECT_ACE_TYPE = 0x05
ACCESS_DENIED_OBJECT_ACE_TYPE = 0x06
SYSTEM_AUDIT_OBJECT_ACE_TYPE = 0x07

OBJECT_ACE_TYPES = frozenset((ACCESS_ALLOWED_OBJECT_ACE_TYPE, ACCESS_DENIED_OBJECT_ACE_TYPE, SYSTEM_AUDIT_OBJECT_ACE_TYPE))
DECODED_ACE_TYPES = frozenset((ACCESS_ALLOWED_ACE_TYPE, ACCESS_DENIED_ACE_TYPE, SYSTEM_AUDIT_ACE_TYPE)) | OBJECT_ACE_TYPES
DENY_ACE_TYPES = frozenset((ACCESS_DENIED_ACE_TYPE, ACCESS_DENIED_OBJECT_ACE_TYPE))
ALLOW_ACE_TYPES = frozenset((ACCESS_ALLOWED_ACE_TYPE, ACCESS_ALLOWED_OBJECT_ACE_TYPE))

# ACE flags
OBJECT_INHERIT_ACE = 0x01
CONTAINER_INHERIT_ACE = 0x02
NO_PROPAGATE_INHERIT_ACE = 0x04
INHERIT_ONLY_ACE = 0x08
INHERITED_ACE = 0x10
SUCCESSFUL_ACCESS_ACE_FLAG = 0x40
FAILED_ACCESS_ACE_FLAG = 0x80
INHERITANCE_FLAGS = OBJECT_INHERIT_ACE | CONTAINER_INHERIT_ACE | NO_PROPAGATE_INHERIT_ACE | INHERIT_ONLY_ACE

# Object ACE flags
ACE_OBJECT_TYPE_PRESENT = 0x1
ACE_INHERITED_OBJECT_TYPE_PRESENT = 0x2

# Access rights of directory objects
RIGHT_DS_CREATE_CHILD = 0x00000001
RIGHT_DS_DELETE_CHILD = 0x00000002
RIGHT_DS_LIST_CONTENTS = 0x00000004
RIGHT_DS_WRITE_PROPERTY_EXTENDED = 0x00000008   # validated write (SW)
RIGHT_DS_READ_PROPERTY = 0x00000010
RIGHT_DS_WRITE_PROPERTY = 0x00000020
RIGHT_DS_DELETE_TREE = 0x00000040
RIGHT_DS_LIST_OBJECT = 0x00000080
RIGHT_DS_CONTROL_ACCESS = 0x00000100            # extended right (CR)
DELETE = 0x00010000
READ_CONTROL = 0x00020000
WRITE_DAC = 0x00040000
WRITE_OWNER = 0x00080000
GENERIC_ALL = 0x10000000
GENERIC_EXECUTE = 0x20000000
GENERIC_WRITE = 0x40000000
GENERIC_READ = 0x80000000

# What AD stores for the generic rights of directory objects (the DS generic mapping): an ACE
# written with GENERIC_WRITE is stored as SW|WP|RC, which is what "Generic Write" means in dsacls.
DS_GENERIC_WRITE = READ_CONTROL | RIGHT_DS_WRITE_PROPERTY | RIGHT_DS_WRITE_PROPERTY_EXTENDED
DS_GENERIC_READ = READ_CONTROL | RIGHT_DS_LIST_CONTENTS | RIGHT_DS_READ_PROPERTY | RIGHT_DS_LIST_OBJECT
DS_GENERIC_EXECUTE = READ_CONTROL | RIGHT_DS_LIST_CONTENTS
DS_GENERIC_ALL = 0x000F01FF

# SDDL tables, in the order Samba prints them (so text compares equal to samba-tool's).
SDDL_ACCESS_RIGHTS = (
    ('RP', RIGHT_DS_READ_PROPERTY), ('WP', RIGHT_DS_WRITE_PROPERTY), ('CR', RIGHT_DS_CONTROL_ACCESS),
    ('CC', RIGHT_DS_CREATE_CHILD), ('DC', RIGHT_DS_DELETE_CHILD), ('LC', RIGHT_DS_LIST_CONTENTS),
    ('LO', RIGHT_DS_LIST_OBJECT), ('RC', READ_CONTROL), ('WO', WRITE_OWNER), ('WD', WRITE_DAC),
    ('SD', DELETE), ('DT', RIGHT_DS_DELETE_TREE), ('SW', RIGHT_DS_WRITE_PROPERTY_EXTENDED),
    ('GA', GENERIC_ALL), ('GR', GENERIC_READ), ('GW', GENERIC_WRITE), ('GX', GENERIC_EXECUTE),
)
SDDL_ACE_FLAGS = (
    ('OI', OBJECT_INHERIT_ACE), ('CI', CONTAINER_INHERIT_ACE), ('NP', NO_PROPAGATE_INHERIT_ACE),
    ('IO', INHERIT_ONLY_ACE), ('ID', INHERITED_ACE), ('SA', SUCCESSFUL_ACCESS_ACE_FLAG), ('FA', FAILED_ACCESS_ACE_FLAG),
)
SDDL_ACE_TYPES = {
    ACCESS_ALLOWED_ACE_TYPE: 'A', ACCESS_DENIED_ACE_TYPE: 'D', SYSTEM_AUDIT_ACE_TYPE: 'AU', 0x03: 'AL',
    ACCESS_ALLOWED_OBJECT_ACE_TYPE: 'OA', ACCESS_DENIED_OBJECT_ACE_TYPE: 'OD', SYSTEM_AUDIT_OBJECT_ACE_TYPE: 'OU', 0x08: 'OL',
}

# Well-known SIDs -> SDDL alias.
SDDL_WELL_KNOWN_SIDS = {
    'S-1-1-0': 'WD', 'S-1-3-0': 'CO', 'S-1-3-1': 'CG', 'S-1-3-4': 'OW', 'S-1-5-2': 'NU', 'S-1-5-4': 'IU',
    'S-1-5-6': 'SU', 'S-1-5-7': 'AN', 'S-1-5-9': 'ED', 'S-1-5-10': 'PS', 'S-1-5-11': 'AU', 'S-1-5-12': 'RC',
    'S-1-5-18': 'SY', 'S-1-5-19': 'LS', 'S-1-5-20': 'NS', 'S-1-5-33': 'WR', 'S-1-15-2-1': 'AC',
    'S-1-16-4096': 'LW', 'S-1-16-8192': 'ME', 'S-1-16-12288': 'HI', 'S-1-16-16384': 'SI',
    'S-1-5-32-544': 'BA', 'S-1-5-32-545': 'BU', 'S-1-5-32-546': 'BG', 'S-1-5-32-547': 'PU', 'S-1-5-32-548': 'AO',
    'S-1-5-32-549': 'SO', 'S-1-5-32-550': 'PO', 'S-1-5-32-551': 'BO', 'S-1-5-32-552': 'RE', 'S-1-5-32-554': 'RU',
    'S-1-5-32-555': 'RD', 'S-1-5-32-556': 'NO', 'S-1-5-32-558': 'MU', 'S-1-5-32-559': 'LU', 'S-1-5-32-568': 'IS',
    'S-1-5-32-569': 'CY', 'S-1-5-32-573': 'ER', 'S-1-5-32-574': 'CD', 'S-1-5-32-575': 'RA', 'S-1-5-32-576': 'ES',
    'S-1-5-32-577': 'MS', 'S-1-5-32-578': 'HA', 'S-1-5-32-579': 'AA', 'S-1-5-32-580': 'RM',
}
# Domain-relative RIDs -> SDDL alias (need the domain SID).
SDDL_DOMAIN_RIDS = {
    498: 'RO', 500: 'LA', 501: 'LG', 512: 'DA', 513: 'DU', 514: 'DG', 515: 'DC', 516: 'DD', 517: 'CA',
    518: 'SA', 519: 'EA', 520: 'PA', 522: 'CN', 525: 'AP', 526: 'KA', 527: 'EK', 553: 'RS',
}


def _sid_at(data, offset, what):
    if offset + 8 > len(data):
        raise ValueError('security descriptor: %s SID at offset %d runs past the end (%d bytes)' % (what, offset, len(data)))
    count = data[offset + 1]
    end = offset + 8 + 4 * count
    if end > len(data):
        raise ValueError('security descriptor: %s SID at offset %d runs past the end (%d bytes)' % (what, offset, len(data)))
    return sid_from_bytes(data[offset:end]), end - offset


def _mask_to_sddl(mask):
    if mask == 0:
        return ''
    out = []
    rest = mask
    for code, bit in SDDL_ACCESS_RIGHTS:
        if mask & bit:
            out.append(code)
            rest &= ~bit
    if rest:
        return '0x%08x' % mask
    return ''.join(out)


def _flags_to_sddl(flags):
    return ''.join(code for code, bit in SDDL_ACE_FLAGS if flags & bit)


def sid_to_sddl(sid, domain_sid=None):
    """A SID as SDDL writes it: a two-letter alias for well-known and domain-relative SIDs."""
    alias = SDDL_WELL_KNOWN_SIDS.get(sid)
    if alias:
        return alias
    if domain_sid and sid.upper().startswith(domain_sid.upper() + '-'):
        rest = sid[len(domain_sid) + 1:]
        if rest.isdigit() and int(rest) in SDDL_DOMAIN_RIDS:
            return SDDL_DOMAIN_RIDS[int(rest)]
    return sid


def mask_to_names(mask):
    """Access mask to a list of SDDL right abbreviations (unknown bits as a hex string)."""
    names = [code for code, bit in SDDL_ACCESS_RIGHTS if mask & bit]
    rest = mask
    for _code, bit in SDDL_ACCESS_RIGHTS:
        rest &= ~bit
    if rest:
        names.append('0x%08x' % rest)
    return names


class Ace(object):
    """One ACE.

    Decoded types carry ``ace_type``, ``flags``, ``mask``, ``sid`` (string) and, for object ACEs,
    ``object_type`` / ``inherited_object_type`` (GUID strings or None). ``object_flags`` is derived
    from which GUIDs are present. ``trailing`` holds bytes after the SID inside the ACE (kept).
    Opaque (unknown) types carry ``body``: the bytes after the 4-byte header.
    """

    __slots__ = ('ace_type', 'flags', 'mask', 'sid', 'object_type', 'inherited_object_type', 'trailing', 'body')

    def __init__(self, ace_type, flags=0, mask=0, sid=None, object_type=None, inherited_object_type=None,
                 trailing=b'', body=None):
        self.ace_type = int(ace_type)
        self.flags = int(flags)
        self.mask = int(mask)
        self.sid = sid
        self.object_type = normalize_guid(object_type) if object_type else None
        self.inherited_object_type = normalize_guid(inherited_object_type) if inherited_object_type else None
        self.trailing = bytes(trailing or b'')
        self.body = bytes(body) if body is not None else None
        if self.body is None:
            if self.ace_type not in DECODED_ACE_TYPES:
                raise ValueError('ACE type 0x%02x needs its raw body' % self.ace_type)
            if not sid:
                raise ValueError('ACE needs a SID')
            sid_to_bytes(sid)  # validate
            if self.ace_type not in OBJECT_ACE_TYPES and (self.object_type or self.inherited_object_type):
                raise ValueError('only object ACEs (types 0x05-0x07) carry object types')

    # -- classification ----------------------------------------------------------------------

    @property
    def is_opaque(self):
        return self.body is not None

    @property
    def is_object_ace(self):
        return self.ace_type in OBJECT_ACE_TYPES

    @property
    def is_inherited(self):
        return bool(self.flags & INHERITED_ACE)

    @property
    def is_deny(self):
        return self.ace_type in DENY_ACE_TYPES

    @property
    def is_allow(self):
        return self.ace_type in ALLOW_ACE_TYPES

    @property
    def object_flags(self):
        return (ACE_OBJECT_TYPE_PRESENT if self.object_type else 0) | \
            (ACE_INHERITED_OBJECT_TYPE_PRESENT if self.inherited_object_type else 0)

    def key(self):
        """What makes two ACEs grant the same thing: type, trustee, rights, object type, inherited
        object type and inheritance flags (not the INHERITED_ACE bit, not audit flags)."""
        if self.is_opaque:
            return ('opaque', self.ace_type, self.flags, self.body)
        return (self.ace_type, (self.sid or '').upper(), self.mask, self.object_type, self.inherited_object_type,
                self.flags & INHERITANCE_FLAGS)

    # -- codec -------------------------------------------------------------------------------

    @classmethod
    def from_bytes(cls, data, offset=0):
        """Decode the ACE at ``offset``; returns (ace, size)."""
        if offset + 4 > len(data):
            raise ValueError('ACE header at offset %d runs past the end of the ACL' % offset)
        ace_type, flags, size = struct.unpack_from('<BBH', data, offset)
        if size < 4 or offset + size > len(data):
            raise ValueError('ACE at offset %d has size %d, beyond the ACL' % (offset, size))
        body = bytes(data[offset + 4:offset + size])
        if ace_type not in DECODED_ACE_TYPES:
            return cls(ace_type, flags, body=body), size
        if len(body) < 4:
            raise ValueError('ACE at offset %d is too short for its access mask' % offset)
        mask = struct.unpack_from('<I', body, 0)[0]
        pos = 4
        object_type = inherited = None
        if ace_type in OBJECT_ACE_TYPES:
            if len(body) < 8:
                raise ValueError('object ACE at offset %d is too short' % offset)
            oflags = struct.unpack_from('<I', body, 4)[0]
            pos = 8
            if oflags & ~0x3:
                # Flags we do not understand: keep the whole ACE opaque rather than guess.
                return cls(ace_type, flags, body=body), size
            if oflags & ACE_OBJECT_TYPE_PRESENT:
                object_type = guid_from_bytes(body[pos:pos + 16]) if len(body) >= pos + 16 else None
                pos += 16
            if oflags & ACE_INHERITED_OBJECT_TYPE_PRESENT:
                inherited = guid_from_bytes(body[pos:pos + 16]) if len(body) >= pos + 16 else None
                pos += 16
            if pos > len(body):
                raise ValueError('object ACE at offset %d is too short for its GUIDs' % offset)
        if pos + 8 > len(body):
            raise ValueError('ACE at offset %d is too short for its SID' % offset)
        count = body[pos + 1]
        sid_end = pos + 8 + 4 * count
        if sid_end > len(body):
            raise ValueError('ACE at offset %d: SID runs past the ACE' % offset)
        sid = sid_from_bytes(body[pos:sid_end])
        return cls(ace_type, flags, mask, sid, object_type, inherited, trailing=body[sid_end:]), size

    def to_bytes(self):
        if self.is_opaque:
            body = self.body
        else:
            body = struct.pack('<I', self.mask & 0xFFFFFFFF)
            if self.is_object_ace:
                body += struct.pack('<I', self.object_flags)
                if self.object_type:
                    body += guid_to_bytes(self.object_type)
                if self.inherited_object_type:
                    body += guid_to_bytes(self.inherited_object_type)
            body += sid_to_bytes(self.sid) + self.trailing
        size = 4 + len(body)
        if size > 0xFFFF:
            raise ValueError('ACE of %d bytes is too large' % size)
        return struct.pack('<BBH', self.ace_type, self.flags, size) + body

    # -- text --------------------------------------------------------------------------------

    def to_sddl(self, domain_sid=None):
        if self.is_opaque:
            return '(0x%02x;%s;%s)' % (self.ace_type, _flags_to_sddl(self.flags), self.body.hex())
        return '(%s;%s;%s;%s;%s;%s)' % (
            SDDL_ACE_TYPES.get(self.ace_type, '0x%02x' % self.ace_type), _flags_to_sddl(self.flags), _mask_to_sddl(self.mask),
            self.object_type or '', self.inherited_object_type or '', sid_to_sddl(self.sid, domain_sid))

    def to_dict(self, domain_sid=None):
        """JSON-able description (for module results)."""
        if self.is_opaque:
            return {'type': self.ace_type, 'flags': self.flags, 'body': self.body.hex(), 'sddl': self.to_sddl(domain_sid)}
        return {
            'type': SDDL_ACE_TYPES.get(self.ace_type, self.ace_type), 'sid': self.sid, 'mask': self.mask,
            'rights': mask_to_names(self.mask), 'flags': [c for c, b in SDDL_ACE_FLAGS if self.flags & b],
            'object_type': self.object_type, 'inherited_object_type': self.inherited_object_type,
            'sddl': self.to_sddl(domain_sid),
        }

    def copy(self):
        return Ace(self.ace_type, self.flags, self.mask, self.sid, self.object_type, self.inherited_object_type,
                   self.trailing, self.body)

    def __eq__(self, other):
        return isinstance(other, Ace) and self.to_bytes() == other.to_bytes()

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash(self.to_bytes())

    def __repr__(self):
        return 'Ace(%s)' % self.to_sddl()


class Acl(object):
    """An ACL: ``revision`` (2, or 4 when it holds object ACEs), ``aces`` and unused ``slack`` bytes."""

    ACL_REVISION = 2
    ACL_REVISION_DS = 4

    def __init__(self, aces=None, revision=None, sbz1=0, sbz2=0, slack=b''):
        self.aces = list(aces or [])
        self.revision = revision
        self.sbz1 = sbz1
        self.sbz2 = sbz2
        self.slack = bytes(slack or b'')

    @classmethod
    def from_bytes(cls, data, offset=0):
        if offset + 8 > len(data):
            raise ValueError('ACL header at offset %d runs past the end (%d bytes)' % (offset, len(data)))
        revision, sbz1, size, count, sbz2 = struct.unpack_from('<BBHHH', data, offset)
        if size < 8 or offset + size > len(data):
            raise ValueError('ACL at offset %d has size %d, beyond the descriptor (%d bytes)' % (offset, size, len(data)))
        region = bytes(data[offset:offset + size])
        aces = []
        pos = 8
        for _i in range(count):
            ace, ace_size = Ace.from_bytes(region, pos)
            aces.append(ace)
            pos += ace_size
        return cls(aces, revision, sbz1, sbz2, slack=region[pos:])

    def to_bytes(self):
        body = b''.join(ace.to_bytes() for ace in self.aces) + self.slack
        revision = self.revision
        if revision is None:
            revision = self.ACL_REVISION
        if revision < self.ACL_REVISION_DS and any(a.is_object_ace for a in self.aces):
            revision = self.ACL_REVISION_DS
        size = 8 + len(body)
        if size > 0xFFFF or len(self.aces) > 0xFFFF:
            raise ValueError('ACL of %d bytes / %d ACEs is too large' % (size, len(self.aces)))
        return struct.pack('<BBHHH', revision, self.sbz1, size, len(self.aces), self.sbz2) + body

    def to_sddl(self, domain_sid=None):
        return ''.join(ace.to_sddl(domain_sid) for ace in self.aces)

    def copy(self):
        return Acl([a.copy() for a in self.aces], self.revision, self.sbz1, self.sbz2, self.slack)

    # -- order -------------------------------------------------------------------------------

    def explicit(self):
        return [a for a in self.aces if not a.is_inherited]

    def inherited(self):
        return [a for a in self.aces if a.is_inherited]

    def canonical_order(self):
        """The ACEs in Windows' canonical order: explicit deny, explicit allow (anything else explicit,
        e.g. audit or unknown types, after them), then the inherited ACEs in their existing order.
        The relative order inside each group is kept (a stable sort)."""
        def rank(ace):
            if ace.is_inherited:
                return 3
            if ace.is_deny:
                return 0
            if ace.is_allow:
                return 1
            return 2
        return sorted(self.aces, key=rank)

    def is_canonical(self):
        return self.canonical_order() == self.aces

    def __eq__(self, other):
        return isinstance(other, Acl) and self.to_bytes() == other.to_bytes()

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash(self.to_bytes())

    def __len__(self):
        return len(self.aces)

    def __iter__(self):
        return iter(self.aces)


class SecurityDescriptor(object):
    """A self-relative security descriptor.

    ``owner``/``group``: SID strings or None; ``dacl``/``sacl``: ``Acl`` or None (a present but
    NULL DACL is ``dacl=None`` with SE_DACL_PRESENT in ``control``). ``layout`` is the order of the
    parts in the buffer as read (kept on write); new descriptors use owner, group, SACL, DACL.
    """

    def __init__(self, owner=None, group=None, dacl=None, sacl=None, control=None, revision=1, sbz1=0, layout=None,
                 trailing=b''):
        self.owner = owner
        self.group = group
        self.dacl = dacl
        self.sacl = sacl
        if control is None:
            control = SE_SELF_RELATIVE | (SE_DACL_PRESENT if dacl is not None else 0) | (SE_SACL_PRESENT if sacl is not None else 0)
        self.control = control
        self.revision = revision
        self.sbz1 = sbz1
        self.layout = list(layout) if layout else ['owner', 'group', 'sacl', 'dacl']
        self.trailing = bytes(trailing or b'')

    @classmethod
    def from_bytes(cls, data):
        if not isinstance(data, (bytes, bytearray)):
            raise ValueError('security descriptor must be bytes, got %r' % type(data).__name__)
        data = bytes(data)
        if len(data) < 20:
            raise ValueError('security descriptor of %d bytes is shorter than its 20-byte header' % len(data))
        revision, sbz1, control, o_off, g_off, s_off, d_off = struct.unpack_from('<BBHIIII', data, 0)
        if revision != 1:
            raise ValueError('security descriptor revision %d is not 1' % revision)
        if not control & SE_SELF_RELATIVE:
            raise ValueError('security descriptor is not self-relative (control 0x%04x)' % control)
        parts = []  # (offset, name, end)
        owner = group = dacl = sacl = None
        if o_off:
            owner, size = _sid_at(data, o_off, 'owner')
            parts.append((o_off, 'owner', o_off + size))
        if g_off:
            group, size = _sid_at(data, g_off, 'group')
            parts.append((g_off, 'group', g_off + size))
        if s_off and control & SE_SACL_PRESENT:
            sacl = Acl.from_bytes(data, s_off)
            parts.append((s_off, 'sacl', s_off + len(sacl.to_bytes())))
        if d_off and control & SE_DACL_PRESENT:
            dacl = Acl.from_bytes(data, d_off)
            parts.append((d_off, 'dacl', d_off + len(dacl.to_bytes())))
        parts.sort()
        layout = [name for _off, name, _end in parts]
        for name in ('owner', 'group', 'sacl', 'dacl'):
            if name not in layout:
                layout.append(name)
        end = max([p[2] for p in parts] or [20])
        sd = cls(owner, group, dacl, sacl, control, revision, sbz1, layout, trailing=data[end:])
        return sd

    def to_bytes(self):
        # A PRESENT flag without an ACL (a NULL DACL or SACL) is kept as read.
        control = self.control | SE_SELF_RELATIVE
        control = (control | SE_DACL_PRESENT) if self.dacl is not None else control
        control = (control | SE_SACL_PRESENT) if self.sacl is not None else control
        blobs = {
            'owner': sid_to_bytes(self.owner) if self.owner else b'',
            'group': sid_to_bytes(self.group) if self.group else b'',
            'sacl': self.sacl.to_bytes() if self.sacl is not None else b'',
            'dacl': self.dacl.to_bytes() if self.dacl is not None else b'',
        }
        offsets = {}
        out = []
        pos = 20
        for name in self.layout:
            blob = blobs[name]
            if blob:
                offsets[name] = pos
                out.append(blob)
                pos += len(blob)
        header = struct.pack('<BBHIIII', self.revision, self.sbz1, control, offsets.get('owner', 0), offsets.get('group', 0),
                             offsets.get('sacl', 0), offsets.get('dacl', 0))
        return header + b''.join(out) + self.trailing

    def copy(self):
        return SecurityDescriptor(self.owner, self.group, self.dacl.copy() if self.dacl is not None else None,
                                  self.sacl.copy() if self.sacl is not None else None, self.control, self.revision,
                                  self.sbz1, self.layout, self.trailing)

    def to_sddl(self, domain_sid=None):
        """SDDL as Samba prints it. ``domain_sid`` enables aliases such as DA, EA, DU."""
        out = []
        if self.owner:
            out.append('O:' + sid_to_sddl(self.owner, domain_sid))
        if self.group:
            out.append('G:' + sid_to_sddl(self.group, domain_sid))
        if self.control & SE_DACL_PRESENT:
            out.append('D:' + self._acl_flags(SE_DACL_PROTECTED, SE_DACL_AUTO_INHERIT_REQ, SE_DACL_AUTO_INHERITED))
            out.append(self.dacl.to_sddl(domain_sid) if self.dacl is not None else 'NO_ACCESS_CONTROL')
        if self.control & SE_SACL_PRESENT and self.sacl is not None:
            out.append('S:' + self._acl_flags(SE_SACL_PROTECTED, SE_SACL_AUTO_INHERIT_REQ, SE_SACL_AUTO_INHERITED))
            out.append(self.sacl.to_sddl(domain_sid))
        return ''.join(out)

    def _acl_flags(self, protected, req, inherited):
        return ''.join(code for code, bit in (('P', protected), ('AR', req), ('AI', inherited)) if self.control & bit)

    def __eq__(self, other):
        return isinstance(other, SecurityDescriptor) and self.to_bytes() == other.to_bytes()

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash(self.to_bytes())

    def __repr__(self):
        return 'SecurityDescriptor(%s)' % self.to_sddl()


def parse(data):
    """Shorthand for ``SecurityDescriptor.from_bytes``."""
    return SecurityDescriptor.from_bytes(data)


def domain_sid_of(sid):
    """The domain part of an account SID (S-1-5-21-a-b-c-RID -> S-1-5-21-a-b-c), else None."""
    if not sid:
        return None
    parts = sid.split('-')
    if len(parts) == 8 and parts[:4] == ['S', '1', '5', '21']:
        return '-'.join(parts[:7])
    return None
