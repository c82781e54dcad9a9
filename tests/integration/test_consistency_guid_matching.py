"""Immutable-id matching by mS-DS-ConsistencyGuid (issue 11, item 9).

On Windows mS-DS-ConsistencyGuid is not in the Global Catalog's partial attribute set and is not
indexed ("In Global Catalog: False", "Is Indexed: False":
https://learn.microsoft.com/windows/win32/adschema/a-ms-ds-consistencyguid), so a Global Catalog
search on it never matches there. The lab's schema says the same (lab.py makes it explicit), and
an immutable id that is a user's consistency GUID (not its objectGUID) is resolved through the
domain's own LDAP connection, reported ``matched_by: immutable_id``. Samba's Global Catalog port
does not enforce the partial attribute set, so the tests record which connection was asked.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import uuid

import pytest

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import ad_codecs, ad_reader
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_client import ADClient

from writeback_helpers import Directory, ad_params, add_consistency_guid_user, dn_key, entra_group, first, run, values


class Recording(object):
    """An ADClient (real connection) whose searches are recorded: (filter, base)."""

    def __init__(self, client):
        self.client = client
        self.server = client.server
        self.searches = []

    def search(self, base, ldap_filter, *args, **kwargs):
        self.searches.append((ldap_filter, base))
        return self.client.search(base, ldap_filter, *args, **kwargs)


@pytest.fixture
def user_with_consistency_guid(corp):
    """(DN, consistency GUID, objectGUID) of a user in a sandbox OU whose mS-DS-ConsistencyGuid is not its objectGUID."""
    directory = Directory(corp)
    ou = directory.make_ou('t-cguid-%s' % uuid.uuid4().hex[:8])
    dn = 'CN=Anchored Elsewhere,%s' % ou
    consistency = add_consistency_guid_user(directory, dn, 'cg')
    raw = first(directory.get(dn, ['objectGUID']), 'objectGUID')
    try:
        yield dict(dn=dn, ou=ou, consistency_guid=consistency, object_guid=ad_codecs.guid_from_bytes(raw))
    finally:
        directory.remove_tree(ou)
        directory.close()


def entra_member(immutable_guid):
    return dict(id=str(uuid.uuid4()), type='user', display_name='Anchored Elsewhere', on_premises_sync_enabled=True,
                on_premises_object_identifier=None, on_premises_security_identifier=None,
                on_premises_immutable_id=ad_codecs.immutable_id_from_guid(immutable_guid), on_premises_domain_name=None)


def test_the_lab_schema_keeps_consistency_guid_out_of_the_partial_attribute_set_as_windows_does(corp):
    directory = Directory(corp)
    try:
        schema = 'CN=Schema,CN=Configuration,%s' % corp.base_dn
        found = list(directory.client.search(schema, '(lDAPDisplayName=mS-DS-ConsistencyGuid)',
                                             ['isMemberOfPartialAttributeSet', 'searchFlags'], scope='onelevel'))
    finally:
        directory.close()
    assert len(found) == 1
    assert str(first(found[0], 'isMemberOfPartialAttributeSet')).upper() == 'FALSE', found[0]
    assert int(first(found[0], 'searchFlags') or 0) & 1 == 0, 'not indexed on Windows'


def test_a_consistency_guid_immutable_id_resolves_through_the_domain_not_the_global_catalog(corp, user_with_consistency_guid):
    user = user_with_consistency_guid
    member = entra_member(user['consistency_guid'])
    ad = ADClient(ad_params(corp)).connect()
    try:
        gc = Recording(ad.global_catalog())
        domain = Recording(ad)
        resolution, unresolved = ad_reader.resolve_users(gc, [member], 'auto', domain=domain, domain_base=corp.base_dn)
    finally:
        ad.close()
    assert unresolved == {}
    assert resolution[member['id']]['matched_by'] == 'immutable_id'
    assert dn_key(resolution[member['id']]['dn']) == dn_key(user['dn'])
    assert not any('consistencyguid' in f.lower() for f, _base in gc.searches), gc.searches
    assert [base for f, base in domain.searches if 'consistencyguid' in f.lower()] == [corp.base_dn], domain.searches


def test_an_immutable_id_that_is_the_object_guid_needs_no_domain_search(corp, user_with_consistency_guid):
    user = user_with_consistency_guid
    member = entra_member(user['object_guid'])
    ad = ADClient(ad_params(corp)).connect()
    try:
        gc = Recording(ad.global_catalog())
        domain = Recording(ad)
        resolution, unresolved = ad_reader.resolve_users(gc, [member], 'immutable_id', domain=domain, domain_base=corp.base_dn)
    finally:
        ad.close()
    assert unresolved == {} and resolution[member['id']]['matched_by'] == 'immutable_id'
    assert domain.searches == [], 'found in the Global Catalog by objectGUID: nothing else to ask'


def test_the_writeback_makes_such_a_user_a_member(corp, user_with_consistency_guid):
    user = user_with_consistency_guid
    group = entra_group('Consistency Guid Member', [entra_member(user['consistency_guid'])])
    result = run(corp, [group], target_ou=user['ou'], search_base=user['ou'])
    assert result['summary']['created'] == 1 and result['groups'][0]['unresolved_members'] == [], result['groups']
    directory = Directory(corp)
    try:
        entry = directory.one(group['id'], user['ou'])
    finally:
        directory.close()
    assert [dn_key(dn) for dn in values(entry, 'member')] == [dn_key(user['dn'])]


def test_an_early_resolution_searches_the_domain_on_its_own_connection(corp, user_with_consistency_guid):
    """A delta run resolves the examined groups' users in a thread while it reads the groups
    (writeback._EarlyResolution): the consistency-GUID search goes to a second connection to the
    same DC, never the run's own (in use meanwhile); its requests are counted on the run's client."""
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import writeback
    user = user_with_consistency_guid
    member = entra_member(user['consistency_guid'])
    ad = ADClient(ad_params(corp))
    ad.connect()
    try:
        domain_dn = ad.root_dse().get('default_naming_context')
        own = Recording(ad)
        ad.search = own.search   # every search on the run's own client is recorded
        early = writeback._EarlyResolution(ad, dict(member_match='auto'), domain_dn, [member])
        searches_before = ad.stats['searches']
        resolution = early.result()
        # the run's resolution maps each id to its DN alone (writeback._resolve, dn_only); the member
        # has only an immutable id (the consistency GUID), so only that round can have found it
        assert dn_key(resolution[member['id']]) == dn_key(user['dn'])
        assert own.searches == []   # nothing went through the run's own connection
        assert ad.stats['searches'] > searches_before   # the sibling's searches, added when it closed
        assert early.domain is None and writeback._EarlyResolution(ad, {}, domain_dn, []).result() == {}
    finally:
        ad.close()


def test_an_early_resolution_connects_to_the_domain_only_when_it_searches_there(corp, user_with_consistency_guid, monkeypatch):
    """A user found by its objectGUID in the Global Catalog needs no consistency-GUID search: the
    early resolution's domain connection is then never opened (ADClient.sibling(connect=False))."""
    from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import writeback
    user = user_with_consistency_guid
    member = dict(entra_member(user['object_guid']), on_premises_object_identifier=user['object_guid'])
    opened = []
    real = ADClient._connect_one

    def counting(self, spec):
        opened.append('global catalog' if self.is_global_catalog else 'domain')
        return real(self, spec)
    ad = ADClient(ad_params(corp))
    ad.connect()
    monkeypatch.setattr(ADClient, '_connect_one', counting)
    try:
        domain_dn = ad.root_dse().get('default_naming_context')
        resolution = writeback._EarlyResolution(ad, dict(member_match='auto'), domain_dn, [member]).result()
        assert dn_key(resolution[member['id']]) == dn_key(user['dn'])
        assert opened == ['global catalog']
        # and one that needs the domain's search connects there (the test above checks where it searched)
        del opened[:]
        other = entra_member(user['consistency_guid'])
        resolution = writeback._EarlyResolution(ad, dict(member_match='auto'), domain_dn, [other]).result()
        assert dn_key(resolution[other['id']]) == dn_key(user['dn'])
        assert opened == ['domain']   # the Global Catalog's connection is the run's, opened above
    finally:
        ad.close()
