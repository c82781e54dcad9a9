# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""security_descriptor: byte-exact round trips of descriptors read from the lab's Samba AD, and SDDL
equal to Samba's own rendering (samba-tool prints ``descriptor.as_sddl(domain_sid)``)."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import pathlib
import struct
import subprocess

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import security_descriptor as sdm
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.security_descriptor import Ace, Acl, SecurityDescriptor

FIXTURES = pathlib.Path(__file__).parent / 'fixtures'
SD_FILES = sorted(FIXTURES.glob('sd_*.bin'))
# The lab forest (corp) the fixtures were read from.
CORP_SID = 'S-1-5-21-4053621970-426217385-1478750156'
SYSTEM_PYTHON = '/usr/bin/python3'

# What `samba-tool dsacl get --objectdn=OU=Delegated,DC=corp,DC=example,DC=test` printed for the object
# whose descriptor is sd_ou_delegated.bin.
OU_DELEGATED_SDDL = (
    'O:DAG:DAD:AI(A;;RPWPCRCCDCLCLORCWOWDSDDTSW;;;SY)(A;;RPWPCRCCDCLCLORCWOWDSDDTSW;;;DA)'
    '(OA;;CCDC;bf967a86-0de6-11d0-a285-00aa003049e2;;AO)(OA;;CCDC;bf967aba-0de6-11d0-a285-00aa003049e2;;AO)'
    '(OA;;CCDC;bf967a9c-0de6-11d0-a285-00aa003049e2;;AO)(OA;;CCDC;bf967aa8-0de6-11d0-a285-00aa003049e2;;PO)'
    '(A;;RPLCLORC;;;AU)(A;;RPLCLORC;;;ED)(OA;;CCDC;4828cc14-1437-45bc-9b07-ad6f015e5f28;;AO)'
    '(OA;CIIOID;RP;4c164200-20c0-11d0-a768-00aa006e0529;4828cc14-1437-45bc-9b07-ad6f015e5f28;RU)'
    '(OA;CIIOID;RP;4c164200-20c0-11d0-a768-00aa006e0529;bf967aba-0de6-11d0-a285-00aa003049e2;RU)'
    '(OA;CIIOID;RP;5f202010-79a5-11d0-9020-00c04fc2d4cf;4828cc14-1437-45bc-9b07-ad6f015e5f28;RU)'
    '(OA;CIIOID;RP;5f202010-79a5-11d0-9020-00c04fc2d4cf;bf967aba-0de6-11d0-a285-00aa003049e2;RU)'
    '(OA;CIIOID;RP;bc0ac240-79a9-11d0-9020-00c04fc2d4cf;4828cc14-1437-45bc-9b07-ad6f015e5f28;RU)'
    '(OA;CIIOID;RP;bc0ac240-79a9-11d0-9020-00c04fc2d4cf;bf967aba-0de6-11d0-a285-00aa003049e2;RU)'
    '(OA;CIIOID;RP;59ba2f42-79a2-11d0-9020-00c04fc2d3cf;4828cc14-1437-45bc-9b07-ad6f015e5f28;RU)'
    '(OA;CIIOID;RP;59ba2f42-79a2-11d0-9020-00c04fc2d3cf;bf967aba-0de6-11d0-a285-00aa003049e2;RU)'
    '(OA;CIIOID;RP;037088f8-0ae1-11d2-b422-00a0c968f939;4828cc14-1437-45bc-9b07-ad6f015e5f28;RU)'
    '(OA;CIIOID;RP;037088f8-0ae1-11d2-b422-00a0c968f939;bf967aba-0de6-11d0-a285-00aa003049e2;RU)'
    '(OA;CIIOID;RP;b7c69e6d-2cc7-11d2-854e-00a0c983f608;bf967a86-0de6-11d0-a285-00aa003049e2;ED)'
    '(OA;CIIOID;RP;b7c69e6d-2cc7-11d2-854e-00a0c983f608;bf967a9c-0de6-11d0-a285-00aa003049e2;ED)'
    '(OA;CIIOID;RP;b7c69e6d-2cc7-11d2-854e-00a0c983f608;bf967aba-0de6-11d0-a285-00aa003049e2;ED)'
    '(OA;CIIOID;RPLCLORC;;4828cc14-1437-45bc-9b07-ad6f015e5f28;RU)(OA;CIIOID;RPLCLORC;;bf967a9c-0de6-11d0-a285-00aa003049e2;RU)'
    '(OA;CIIOID;RPLCLORC;;bf967aba-0de6-11d0-a285-00aa003049e2;RU)(OA;CIID;RPWPCR;91e647de-d96f-4b70-9557-d63ff4f3ccd8;;PS)'
    '(A;CIID;RPWPCRCCDCLCLORCWOWDSDDTSW;;;EA)(A;CIID;LC;;;RU)(A;CIID;RPWPCRCCLCLORCWOWDSDSW;;;BA)'
    'S:AI(OU;CIIDSA;WP;f30e3bbe-9ff0-11d1-b603-0000f80367c1;bf967aa5-0de6-11d0-a285-00aa003049e2;WD)'
    '(OU;CIIDSA;WP;f30e3bbf-9ff0-11d1-b603-0000f80367c1;bf967aa5-0de6-11d0-a285-00aa003049e2;WD)'
)

_SAMBA_SDDL = r'''
import json, sys
from samba.dcerpc import security
from samba.ndr import ndr_unpack, ndr_pack
req = json.load(sys.stdin)
dom = security.dom_sid(req["domain_sid"])
out = []
for hexdata in req["descriptors"]:
    sd = ndr_unpack(security.descriptor, bytes.fromhex(hexdata))
    out.append({"sddl": sd.as_sddl(dom), "repacked": ndr_pack(sd).hex()})
print(json.dumps(out))
'''


def _samba_available():
    if not os.path.exists(SYSTEM_PYTHON):
        return False
    proc = subprocess.run([SYSTEM_PYTHON, '-c', 'import samba.dcerpc.security'], capture_output=True,
                          env={'PATH': '/usr/bin:/bin'}, check=False)
    return proc.returncode == 0


needs_samba = pytest.mark.skipif(not _samba_available(), reason='Samba python bindings (/usr/bin/python3 samba) not installed')


def samba_render(blobs, domain_sid=CORP_SID):
    """Samba's own SDDL (and its NDR re-encoding) of each binary descriptor."""
    proc = subprocess.run([SYSTEM_PYTHON, '-c', _SAMBA_SDDL], input=json.dumps({
        'domain_sid': domain_sid, 'descriptors': [b.hex() for b in blobs]}),
        capture_output=True, text=True, env={'PATH': '/usr/bin:/bin', 'LANG': 'C.UTF-8'}, check=True)
    return json.loads(proc.stdout)


# ------------------------------------------------------------------ real descriptors from the lab

def test_fixtures_present():
    names = set(p.name for p in SD_FILES)
    for expected in ('sd_domain_root.bin', 'sd_domain_root_dacl.bin', 'sd_ou_delegated.bin', 'sd_adminsdholder.bin'):
        assert expected in names


@pytest.mark.parametrize('path', SD_FILES, ids=lambda p: p.name)
def test_lab_descriptor_round_trip_is_byte_exact(path):
    data = path.read_bytes()
    sd = SecurityDescriptor.from_bytes(data)
    assert sd.to_bytes() == data
    # and through a deep copy and a parse of the result
    assert SecurityDescriptor.from_bytes(sd.copy().to_bytes()).to_bytes() == data


def test_ou_sddl_matches_samba_tool_output():
    sd = SecurityDescriptor.from_bytes((FIXTURES / 'sd_ou_delegated.bin').read_bytes())
    assert sd.to_sddl(CORP_SID) == OU_DELEGATED_SDDL


def test_dacl_only_descriptor_has_no_owner_group_sacl():
    sd = SecurityDescriptor.from_bytes((FIXTURES / 'sd_domain_root_dacl.bin').read_bytes())
    assert sd.owner is None and sd.group is None and sd.sacl is None
    assert sd.dacl is not None and len(sd.dacl) > 10
    assert sd.to_sddl(CORP_SID).startswith('D:AI(')
    full = SecurityDescriptor.from_bytes((FIXTURES / 'sd_domain_root.bin').read_bytes())
    assert full.dacl == sd.dacl


@needs_samba
def test_lab_descriptors_sddl_equal_samba():
    blobs = [p.read_bytes() for p in SD_FILES]
    ref = samba_render(blobs)
    for path, blob, r in zip(SD_FILES, blobs, ref):
        assert SecurityDescriptor.from_bytes(blob).to_sddl(CORP_SID) == r['sddl'], path.name


def test_object_ace_fields():
    sd = SecurityDescriptor.from_bytes((FIXTURES / 'sd_ou_delegated.bin').read_bytes())
    ace = [a for a in sd.dacl if a.is_object_ace and a.inherited_object_type and a.object_type][0]
    assert ace.ace_type == sdm.ACCESS_ALLOWED_OBJECT_ACE_TYPE
    assert ace.object_flags == 3
    assert ace.is_inherited
    assert ace.sid == 'S-1-5-32-554'
    assert ace.to_dict(CORP_SID)['rights'] == ['RP']


# ------------------------------------------------------------------ synthetic descriptors

SIDS = ['S-1-1-0', 'S-1-5-18', 'S-1-5-32-544', 'S-1-5-10', 'S-1-3-0', CORP_SID + '-512', CORP_SID + '-519',
        CORP_SID + '-1105', 'S-1-5-21-1-2-3-4', 'S-1-5-32-553', 'S-1-5-11', 'S-1-5-9']
GUIDS = [None, 'bf967a9c-0de6-11d0-a285-00aa003049e2', 'bf967aba-0de6-11d0-a285-00aa003049e2',
         '1131f6aa-9c07-11d1-f79f-00c04fc2dcd2', '00000000-0000-0000-0000-000000000000']
MASKS = st.one_of(st.sampled_from([0, 1, 3, 0x10, 0x20028, 0xf01ff, 0x20094, 0x100, 0x10000000, 0x40000000, 0x1f01ff]),
                  st.integers(min_value=0, max_value=0xFFFFFFFF))


@st.composite
def aces(draw, audit=False):
    if audit:
        ace_type = draw(st.sampled_from([sdm.SYSTEM_AUDIT_ACE_TYPE, sdm.SYSTEM_AUDIT_OBJECT_ACE_TYPE]))
        flags = draw(st.sampled_from([0x40, 0x80, 0xc0, 0x52, 0x5a]))
    else:
        ace_type = draw(st.sampled_from([0, 1, 5, 6]))
        flags = draw(st.sampled_from([0, 0x2, 0xa, 0x12, 0x1a, 0x3, 0x4, 0x10]))
    obj = inh = None
    if ace_type in sdm.OBJECT_ACE_TYPES:
        obj, inh = draw(st.sampled_from(GUIDS)), draw(st.sampled_from(GUIDS))
    return Ace(ace_type, flags, draw(MASKS), draw(st.sampled_from(SIDS)), obj, inh)


@st.composite
def descriptors(draw):
    dacl = draw(st.one_of(st.none(), st.lists(aces(), max_size=8).map(Acl)))
    sacl = draw(st.one_of(st.none(), st.lists(aces(audit=True), max_size=3).map(Acl)))
    control = sdm.SE_SELF_RELATIVE | draw(st.sampled_from([0, sdm.SE_DACL_AUTO_INHERITED, sdm.SE_DACL_PROTECTED | 0x100]))
    if sacl is not None:
        control |= draw(st.sampled_from([0, sdm.SE_SACL_AUTO_INHERITED]))
    return SecurityDescriptor(owner=draw(st.one_of(st.none(), st.sampled_from(SIDS))),
                              group=draw(st.one_of(st.none(), st.sampled_from(SIDS))),
                              dacl=dacl, sacl=sacl,
                              control=control | (sdm.SE_DACL_PRESENT if dacl is not None else 0)
                              | (sdm.SE_SACL_PRESENT if sacl is not None else 0))


@settings(max_examples=200, deadline=None)
@given(descriptors())
def test_synthetic_round_trip(sd):
    data = sd.to_bytes()
    again = SecurityDescriptor.from_bytes(data)
    assert again.to_bytes() == data
    assert again.to_sddl(CORP_SID) == sd.to_sddl(CORP_SID)


@needs_samba
def test_synthetic_sddl_and_layout_equal_samba():
    """A batch of generated descriptors: our SDDL equals Samba's, and Samba's NDR encoding of the
    same descriptor is byte for byte ours (owner, group, SACL, DACL order)."""
    import random
    rnd = random.Random(4711)
    blobs = []
    for _i in range(150):
        dacl = Acl([_random_ace(rnd) for _j in range(rnd.randint(0, 8))]) if rnd.random() < 0.9 else None
        sacl = Acl([_random_ace(rnd, audit=True) for _j in range(rnd.randint(0, 3))]) if rnd.random() < 0.3 else None
        control = sdm.SE_SELF_RELATIVE | rnd.choice([0, 0x400, 0x1400, 0x1500])
        sd = SecurityDescriptor(rnd.choice([None] + SIDS), rnd.choice([None] + SIDS), dacl, sacl,
                                control | (4 if dacl is not None else 0) | (0x10 if sacl is not None else 0))
        blobs.append(sd.to_bytes())
    ref = samba_render(blobs)
    for blob, r in zip(blobs, ref):
        assert SecurityDescriptor.from_bytes(blob).to_sddl(CORP_SID) == r['sddl']
        assert bytes.fromhex(r['repacked']) == blob


def _random_ace(rnd, audit=False):
    if audit:
        ace_type, flags = rnd.choice([2, 7]), rnd.choice([0x40, 0x80, 0x52])
    else:
        ace_type, flags = rnd.choice([0, 1, 5, 6]), rnd.choice([0, 2, 0xa, 0x12, 0x1a, 0x4])
    mask = rnd.choice([0, 1, 3, 0x10, 0x20028, 0xf01ff, 0x20094, 0x100, 0x10000000, 0x40000000, 0x1f01ff, rnd.getrandbits(32)])
    obj = inh = None
    if ace_type in sdm.OBJECT_ACE_TYPES:
        obj, inh = rnd.choice(GUIDS), rnd.choice(GUIDS)
    return Ace(ace_type, flags, mask, rnd.choice(SIDS), obj, inh)


# ------------------------------------------------------------------ opaque and odd bytes are kept

def _acl_blob(ace_blobs, revision=4, slack=b''):
    body = b''.join(ace_blobs) + slack
    return struct.pack('<BBHHH', revision, 0, 8 + len(body), len(ace_blobs), 0) + body


def _sd_blob(dacl_blob, control=0x8004):
    return struct.pack('<BBHIIII', 1, 0, control, 0, 0, 0, 20) + dacl_blob


def test_unknown_ace_type_preserved_byte_exact():
    unknown = struct.pack('<BBH', 0x11, 0x00, 20) + bytes(range(16))           # mandatory label-ish, opaque
    callback = struct.pack('<BBH', 0x09, 0x02, 12) + b'\xde\xad\xbe\xef\x01\x02\x03\x04'
    normal = Ace(0, 0, 0x10, 'S-1-5-11').to_bytes()
    data = _sd_blob(_acl_blob([normal, unknown, callback]))
    sd = SecurityDescriptor.from_bytes(data)
    assert [a.is_opaque for a in sd.dacl] == [False, True, True]
    assert sd.to_bytes() == data
    assert '(0x11;;' in sd.to_sddl()


def test_ace_trailing_bytes_and_acl_slack_preserved():
    ace = Ace(5, 2, 3, 'S-1-5-11', 'bf967a9c-0de6-11d0-a285-00aa003049e2').to_bytes()
    padded = struct.pack('<BBH', ace[0], ace[1], len(ace) + 4) + ace[4:] + b'\x00\x00\xab\xcd'
    data = _sd_blob(_acl_blob([padded], slack=b'\x00' * 12))
    sd = SecurityDescriptor.from_bytes(data)
    assert sd.dacl.aces[0].trailing == b'\x00\x00\xab\xcd'
    assert sd.dacl.slack == b'\x00' * 12
    assert sd.to_bytes() == data


def test_object_ace_with_unknown_object_flags_kept_opaque():
    body = struct.pack('<II', 0x10, 0x4) + bytes.fromhex('010100000000000100000000')
    blob = struct.pack('<BBH', 5, 0, 4 + len(body)) + body
    data = _sd_blob(_acl_blob([blob]))
    sd = SecurityDescriptor.from_bytes(data)
    assert sd.dacl.aces[0].is_opaque
    assert sd.to_bytes() == data


def test_null_acls_round_trip():
    for control in (0x8004, 0x8014, 0x8010):
        data = struct.pack('<BBHIIII', 1, 0, control, 0, 0, 0, 0)
        sd = SecurityDescriptor.from_bytes(data)
        assert sd.dacl is None and sd.sacl is None
        assert sd.to_bytes() == data
    assert SecurityDescriptor.from_bytes(struct.pack('<BBHIIII', 1, 0, 0x8004, 0, 0, 0, 0)).to_sddl() == 'D:NO_ACCESS_CONTROL'


def test_acl_revision_raised_for_object_aces():
    acl = Acl([Ace(5, 0, 1, 'S-1-5-11', 'bf967a9c-0de6-11d0-a285-00aa003049e2')], revision=2)
    assert acl.to_bytes()[0] == 4
    assert Acl([Ace(0, 0, 1, 'S-1-5-11')], revision=2).to_bytes()[0] == 2


@pytest.mark.parametrize('data', [
    b'', b'\x01\x00\x04\x80', struct.pack('<BBHIIII', 1, 0, 0x0004, 0, 0, 0, 0),
    struct.pack('<BBHIIII', 2, 0, 0x8004, 0, 0, 0, 20) + _acl_blob([]),
    _sd_blob(_acl_blob([Ace(0, 0, 1, 'S-1-5-11').to_bytes()])[:-3]),
    _sd_blob(struct.pack('<BBHHH', 4, 0, 8, 1, 0)),
])
def test_malformed_descriptors_raise_value_error(data):
    with pytest.raises(ValueError):
        SecurityDescriptor.from_bytes(data)


def test_ace_validation():
    with pytest.raises(ValueError):
        Ace(0, 0, 1, 'not-a-sid')
    with pytest.raises(ValueError):
        Ace(0, 0, 1, 'S-1-5-11', object_type='bf967a9c-0de6-11d0-a285-00aa003049e2')
    with pytest.raises(ValueError):
        Ace(0x11, 0, 1, 'S-1-5-11')


# ------------------------------------------------------------------ SDDL details

def test_sddl_aliases_and_masks():
    sd = SecurityDescriptor(owner=CORP_SID + '-512', group=CORP_SID + '-513', dacl=Acl([
        Ace(5, 0xa, sdm.DS_GENERIC_WRITE, CORP_SID + '-1105', None, 'bf967a9c-0de6-11d0-a285-00aa003049e2'),
        Ace(0, 0, 0x1f01ff, 'S-1-5-18'), Ace(1, 0x12, 0, 'S-1-1-0'),
    ]), control=sdm.SE_SELF_RELATIVE | sdm.SE_DACL_PRESENT | sdm.SE_DACL_PROTECTED | sdm.SE_DACL_AUTO_INHERITED)
    assert sd.to_sddl(CORP_SID) == ('O:DAG:DUD:PAI(OA;CIIO;WPRCSW;;bf967a9c-0de6-11d0-a285-00aa003049e2;%s-1105)'
                                    '(A;;0x001f01ff;;;SY)(D;CIID;;;;WD)' % CORP_SID)
    # without the domain SID, domain-relative SIDs stay numeric
    assert sd.to_sddl().startswith('O:%s-512G:%s-513' % (CORP_SID, CORP_SID))
    assert sdm.mask_to_names(0x20028) == ['WP', 'RC', 'SW']
    assert sdm.mask_to_names(0x100001) == ['CC', '0x00100000']


def test_domain_sid_of():
    assert sdm.domain_sid_of(CORP_SID + '-1105') == CORP_SID
    assert sdm.domain_sid_of('S-1-5-32-544') is None
    assert sdm.domain_sid_of(None) is None


# ------------------------------------------------------------------ canonical order

def test_canonical_order_keeps_inherited_in_place_and_is_stable():
    a1 = Ace(0, 0, 1, 'S-1-5-11')
    d1 = Ace(1, 0, 1, 'S-1-5-11')
    od = Ace(6, 0, 1, 'S-1-5-11', 'bf967a9c-0de6-11d0-a285-00aa003049e2')
    a2 = Ace(5, 2, 3, 'S-1-5-18', 'bf967a9c-0de6-11d0-a285-00aa003049e2')
    i1 = Ace(0, 0x12, 4, 'S-1-5-9')
    i2 = Ace(1, 0x12, 4, 'S-1-5-9')
    acl = Acl([a1, i1, d1, a2, od, i2])
    assert not acl.is_canonical()
    assert acl.canonical_order() == [d1, od, a1, a2, i1, i2]
    assert Acl(acl.canonical_order()).is_canonical()
    real = SecurityDescriptor.from_bytes((FIXTURES / 'sd_ou_delegated.bin').read_bytes())
    assert real.dacl.is_canonical()
