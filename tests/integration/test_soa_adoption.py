"""Groups whose source of authority moved to the cloud (issue 11, item 11), against the lab and the
HTTPS Graph emulator.

An AD group synced to Entra and then converted ("Group SOA": onPremisesSyncBehavior/isCloudManaged)
is provisioned back onto its ORIGINAL AD group, found through its on-premises identifiers (the
objectSid Entra keeps as onPremisesSecurityIdentifier), never as a new copy, and must be universal:
https://learn.microsoft.com/en-us/entra/identity/hybrid/cloud-sync/how-provisioning-to-active-directory-works
https://learn.microsoft.com/en-us/entra/identity/hybrid/how-to-group-source-of-authority-configure
Our choice: the original keeps its DN and sAMAccountName (also after later renames in Entra) unless
soa_move is true; a non-universal original is reported with what to change and left untouched.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import uuid

import pytest

from writeback_helpers import Directory, dn_key, first, graph_args, run, synced_users

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import ad_codecs

PREFIX = 'SOA %s ' % uuid.uuid4().hex[:6]
UNIVERSAL_SECURITY = -2147483640
GLOBAL_SECURITY = -2147483646


@pytest.fixture(autouse=True)
def _no_ambient_ca_bundle(monkeypatch):
    monkeypatch.setenv('REQUESTS_CA_BUNDLE', '/nonexistent/ca-bundle.pem')


@pytest.fixture
def box(corp):
    directory = Directory(corp)
    ou = directory.make_ou('t-soa-%s' % uuid.uuid4().hex[:8])
    target = directory.make_ou('target', parent=ou)
    try:
        yield dict(directory=directory, ou=ou, target=target)
    finally:
        directory.remove_tree(ou)
        directory.close()


def original_group(directory, ou, name, group_type, members=()):
    """An AD group as if Connect Sync had synced it up: returns (dn, objectGUID, objectSid, sAMAccountName)."""
    sam = 'soa-%s' % uuid.uuid4().hex[:10]
    dn = 'CN=%s,%s' % (name, ou)
    attrs = dict(sAMAccountName=sam, groupType=group_type, description='on-premises original')
    if members:
        attrs['member'] = list(members)
    directory.add_group(dn, **attrs)
    entry = directory.get(dn)
    guid = ad_codecs.guid_from_bytes(first(entry, 'objectGUID'))
    sid = ad_codecs.sid_from_bytes(first(entry, 'objectSid'))
    return dn, guid, sid, sam


def converted_tenant(graph_tenant, corp, name, sid, sam, member_identities=(), synced_group_sids=()):
    """The Entra side: the group synced from AD, then its source of authority converted to the cloud.
    ``synced_group_sids``: AD groups synced to Entra as members of it."""
    b = graph_tenant()
    users = synced_users(b, member_identities)
    users += [b.group(PREFIX + 'Synced %d' % n, kind='synced', id=str(uuid.uuid4()), onPremisesSecurityIdentifier=s)
              for n, s in enumerate(synced_group_sids)]
    gid = b.group(name, kind='synced', members=users, id=str(uuid.uuid4()), onPremisesSecurityIdentifier=sid,
                  onPremisesSamAccountName=sam, onPremisesDomainName=corp.identities[0]['domain'])
    return b, gid


def test_cloud_managed_group_is_adopted_in_place_and_stays_there(corp, box, graph_tenant, graph_emulator_factory):
    d, ids = box['directory'], corp.identities
    name = PREFIX + 'Finance'
    # The original holds an AD group too, synced to Entra: Cloud Sync never provisions such a
    # reference, and Entra lists it as a member, so it stays (and is never added elsewhere).
    nested_dn, unused_guid, nested_sid, unused_sam = original_group(d, box['ou'], 'Legacy Nested', UNIVERSAL_SECURITY)
    dn, guid, sid, sam = original_group(d, box['ou'], 'Legacy Finance', UNIVERSAL_SECURITY,
                                        members=[ids[20]['dn'], ids[21]['dn'], nested_dn])
    b, gid = converted_tenant(graph_tenant, corp, name, sid, sam, member_identities=[ids[20], ids[22]],
                              synced_group_sids=[nested_sid])
    emu = graph_emulator_factory(b.build())
    emu.admin.convert_group_to_cloud(gid)
    args = graph_args(emu)
    args.update(groups=[gid], target_ou=box['target'], search_base=box['ou'])

    check = run(corp, None, check=True, **args)
    assert [op['op'] for op in check['plan']] == ['modify', 'members'], check['plan']
    assert first(d.get(dn), 'msDS-ExternalDirectoryObjectId') is None, 'check mode writes nothing'

    result = run(corp, None, **args)
    rep = result['groups'][0]
    assert rep['id'] == gid and rep['adopted'] and rep['adopted_from'] == 'source_of_authority', rep
    assert rep['action'] == 'updated' and rep['dn'] == dn
    entry = d.one(gid)
    assert dn_key(entry['dn']) == dn_key(dn), 'the original keeps its DN'
    assert ad_codecs.guid_from_bytes(first(entry, 'objectGUID')) == guid
    assert ad_codecs.sid_from_bytes(first(entry, 'objectSid')) == sid
    assert first(entry, 'sAMAccountName') == sam and first(entry, 'displayName') == name
    assert first(entry, 'adminDescription') is None
    assert d.member_keys(entry) == set([dn_key(ids[20]['dn']), dn_key(ids[22]['dn']), dn_key(nested_dn)])
    assert [m['reason'] for m in rep['skipped_members']] == ['group_not_in_scope']
    assert d.children(box['target']) == [], 'never a second copy'

    again = run(corp, None, **args)
    assert again['changed'] is False and again['groups'][0]['action'] == 'unchanged'

    # A later rename in Entra: the same object, its DN kept, displayName follows.
    emu.admin.update_group(gid, displayName=PREFIX + 'Finance EMEA')
    renamed = run(corp, None, **args)
    assert renamed['groups'][0]['action'] == 'updated' and sorted(renamed['groups'][0]['changes']) == ['displayName']
    entry = d.one(gid)
    assert dn_key(entry['dn']) == dn_key(dn) and first(entry, 'displayName') == PREFIX + 'Finance EMEA'
    assert ad_codecs.guid_from_bytes(first(entry, 'objectGUID')) == guid

    # soa_move: renamed and moved to the naming scheme and target_ou, still the same object.
    args.update(soa_move=True)
    moved = run(corp, None, **args)
    assert moved['groups'][0]['action'] == 'moved', moved['groups']
    entry = d.one(gid)
    assert dn_key(entry['dn']) == dn_key('CN=%sFinance EMEA_%s,%s' % (PREFIX, gid[-12:], box['target']))
    assert ad_codecs.guid_from_bytes(first(entry, 'objectGUID')) == guid
    assert ad_codecs.sid_from_bytes(first(entry, 'objectSid')) == sid
    assert run(corp, None, **args)['changed'] is False


def test_non_universal_original_is_reported_with_what_to_change(corp, box, graph_tenant, graph_emulator_factory):
    d = box['directory']
    dn, guid, sid, sam = original_group(d, box['ou'], 'Legacy Global', GLOBAL_SECURITY)
    b, gid = converted_tenant(graph_tenant, corp, PREFIX + 'Global', sid, sam)
    emu = graph_emulator_factory(b.build())
    emu.admin.convert_group_to_cloud(gid)
    args = graph_args(emu)
    args.update(groups=[gid], target_ou=box['target'], search_base=box['ou'])
    result = run(corp, None, **args)
    rep = result['groups'][0]
    assert rep['action'] == 'skipped' and rep['reason'] == 'soa_not_universal', rep
    assert 'global' in rep['reason_text'] and 'GroupScope Universal' in rep['reason_text'] and dn in rep['reason_text']
    assert result['changed'] is False
    entry = d.get(dn)
    assert first(entry, 'msDS-ExternalDirectoryObjectId') is None and int(first(entry, 'groupType')) == GLOBAL_SECURITY
    assert d.children(box['target']) == [], 'never a copy instead'
