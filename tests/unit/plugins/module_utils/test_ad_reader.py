"""ad_reader's member resolution logic against a stand-in for the Global Catalog that answers
with fixed entries (the lab tests cover the real searches): a user that matched but whose
identifier cannot be read fails the run instead of being taken for "not found"."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import uuid

import pytest

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import ad_codecs, ad_reader
from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.ad_client import ADError

SID = 'S-1-5-21-1-2-3-1105'


class AnsweringGC(object):
    """Stands where ADClient stands for the Global Catalog: every search returns ``entries``."""
    server = 'ldaps://gc.test:3269'

    def __init__(self, entries):
        self.entries = entries
        self.filters = []

    def search(self, base, ldap_filter, attributes=None, scope='subtree', **kwargs):
        self.filters.append(ldap_filter)
        return iter(self.entries)


def member(guid=None, sid=None):
    return dict(id=str(uuid.uuid4()), type='user', on_premises_object_identifier=guid, on_premises_security_identifier=sid)


def test_a_readable_match_resolves():
    guid = str(uuid.uuid4())
    entry = {'dn': 'CN=u,DC=x', 'attributes': {'objectGUID': [ad_codecs.guid_to_bytes(guid)]}}
    user = member(guid=guid)
    resolution, unresolved = ad_reader.resolve_users(AnsweringGC([entry]), [user], 'object_identifier')
    assert resolution == {user['id']: {'dn': 'CN=u,DC=x', 'matched_by': 'object_identifier'}} and unresolved == {}


def test_dn_only_maps_each_user_to_its_dn_and_users_sharing_an_identifier_all_resolve():
    guid = str(uuid.uuid4())
    entry = {'dn': 'CN=u,DC=x', 'attributes': {'objectGUID': [ad_codecs.guid_to_bytes(guid)]}}
    one, two, other = member(guid=guid), member(guid=guid.upper()), member(guid=str(uuid.uuid4()))
    resolution, unresolved = ad_reader.resolve_users(AnsweringGC([entry]), [one, two, other, one], 'object_identifier',
                                                     dn_only=True)
    assert resolution == {one['id']: 'CN=u,DC=x', two['id']: 'CN=u,DC=x'}
    assert unresolved == {other['id']: 'not_found_in_forest'}


@pytest.mark.parametrize('method,user', [('sid', member(sid=SID)), ('object_identifier', member(guid=str(uuid.uuid4())))])
def test_a_match_whose_identifier_cannot_be_read_fails_instead_of_dropping_the_member(method, user):
    entry = {'dn': 'CN=hidden,DC=x', 'attributes': {'objectClass': ['user']}}
    with pytest.raises(ADError) as failed:
        ad_reader.resolve_users(AnsweringGC([entry]), [user], method)
    assert 'CN=hidden,DC=x' in failed.value.msg and 'gc.test' in failed.value.msg


def test_no_match_is_unresolved_not_an_error():
    user = member(sid=SID)
    resolution, unresolved = ad_reader.resolve_users(AnsweringGC([]), [user], 'auto')
    assert resolution == {} and unresolved == {user['id']: 'not_found_in_forest'}


def test_the_consistency_guid_is_never_searched_in_the_global_catalog_only_in_the_domain():
    """mS-DS-ConsistencyGuid is not in the Global Catalog's partial attribute set nor indexed
    (https://learn.microsoft.com/windows/win32/adschema/a-ms-ds-consistencyguid): the Global
    Catalog is asked by objectGUID only, the domain by the consistency GUID, for what is left."""
    consistency = str(uuid.uuid4())
    user = dict(member(), on_premises_immutable_id=ad_codecs.immutable_id_from_guid(consistency))
    gc = AnsweringGC([])
    domain = AnsweringGC([{'dn': 'CN=c,DC=x', 'attributes': {'mS-DS-ConsistencyGuid': [ad_codecs.guid_to_bytes(consistency)]}}])
    resolution, unresolved = ad_reader.resolve_users(gc, [user], 'auto', domain=domain, domain_base='DC=x')
    assert resolution == {user['id']: {'dn': 'CN=c,DC=x', 'matched_by': 'immutable_id'}} and unresolved == {}
    assert gc.filters and not any('ConsistencyGuid' in f for f in gc.filters), gc.filters
    assert domain.filters == ['(&(objectClass=user)(|(mS-DS-ConsistencyGuid=%s)))' % ad_codecs.guid_to_filter(consistency)]


def test_without_a_domain_connection_the_consistency_guid_is_not_searched():
    user = dict(member(), on_premises_immutable_id=ad_codecs.immutable_id_from_guid(str(uuid.uuid4())))
    gc = AnsweringGC([])
    resolution, unresolved = ad_reader.resolve_users(gc, [user], 'immutable_id')
    assert resolution == {} and unresolved == {user['id']: 'not_found_in_forest'}
    assert not any('ConsistencyGuid' in f for f in gc.filters), gc.filters


def test_users_entra_places_in_another_domain_are_not_scanned_for_in_this_one():
    """The domain search scans (the attribute is not indexed): a user of another domain or forest
    (on_premises_domain_name) cannot be there, so it is not searched for."""
    ours = dict(member(), on_premises_immutable_id=ad_codecs.immutable_id_from_guid(str(uuid.uuid4())),
                on_premises_domain_name='Corp.Example.Test')
    theirs = dict(member(), on_premises_immutable_id=ad_codecs.immutable_id_from_guid(str(uuid.uuid4())),
                  on_premises_domain_name='fabrikam.example.test')
    domain = AnsweringGC([])
    ad_reader.resolve_users(AnsweringGC([]), [ours, theirs], 'immutable_id', domain=domain, domain_base='DC=corp,DC=example,DC=test')
    assert len(domain.filters) == 1
    assert ad_codecs.guid_to_filter(ad_codecs.guid_from_immutable_id(ours['on_premises_immutable_id'])) in domain.filters[0]
    assert ad_codecs.guid_to_filter(ad_codecs.guid_from_immutable_id(theirs['on_premises_immutable_id'])) not in domain.filters[0]
    domain = AnsweringGC([])
    ad_reader.resolve_users(AnsweringGC([]), [theirs], 'immutable_id', domain=domain, domain_base='DC=corp,DC=example,DC=test')
    assert domain.filters == [], 'nothing of this domain to look for: no scan'


@pytest.mark.parametrize('extended', [False, True])
def test_a_member_dn_met_in_several_groups_is_one_string(extended):
    guid = str(uuid.uuid4())
    prefix = '<GUID=%s>;' % guid if extended else ''

    def entry(name):
        # a fresh string per value, as ldap3 decodes each group's member values
        return {'dn': 'CN=%s,DC=x' % name, 'attributes': {'member': [''.join([prefix, 'CN=u,', 'DC=x'])]}}
    one, two = entry('g1'), entry('g2')
    assert one['attributes']['member'][0] is not two['attributes']['member'][0]
    guids = {} if extended else None
    same = {}
    g1 = ad_reader.group_from_entry(one, guids, same)
    g2 = ad_reader.group_from_entry(two, guids, same)
    assert g1['members'] == g2['members'] == ['CN=u,DC=x'] and g1['members'][0] is g2['members'][0]
    assert guids is None or guids == {guid: 'CN=u,DC=x'}


def test_known_guids_keep_only_the_users_guids_under_their_own_strings():
    """The managed groups' members are recorded only for the users to resolve, keyed by the user's
    own GUID string (no copy per member read); a GUID no member had resolves by search."""
    wanted, absent = member(guid=str(uuid.uuid4())), member(guid=str(uuid.uuid4()))
    known = ad_reader.KnownGuids([wanted, absent, member()])
    other = str(uuid.uuid4())
    entry = {'dn': 'CN=g,DC=x', 'attributes': {'member': [
        '<GUID=%s>;CN=w,DC=x' % wanted['on_premises_object_identifier'].upper(), '<GUID=%s>;CN=o,DC=x' % other]}}
    group = ad_reader.group_from_entry(entry, known)
    assert group['members'] == ['CN=w,DC=x', 'CN=o,DC=x']
    assert known == {wanted['on_premises_object_identifier']: 'CN=w,DC=x', absent['on_premises_object_identifier']: None}
    (key,) = [k for k in known if known[k]]
    assert key is wanted['on_premises_object_identifier']
    gc = AnsweringGC([])
    resolution, unresolved = ad_reader.resolve_users(gc, [wanted, absent], 'object_identifier', known_guids=known)
    assert resolution == {wanted['id']: {'dn': 'CN=w,DC=x', 'matched_by': 'object_identifier'}}
    assert list(unresolved) == [absent['id']] and len(gc.filters) == 1


class PagedClient(object):
    """Records the page size each search asks for."""

    def __init__(self, page_size):
        self.page_size = page_size
        self.pages = []

    def search(self, base, ldap_filter, attributes=None, scope='subtree', controls=None, page_size=None, **kwargs):
        self.pages.append(page_size)
        return iter([])


@pytest.mark.parametrize('configured, asked', [(1000, ad_reader.MEMBER_PAGE_SIZE), (50, 50)])
def test_all_managed_groups_are_read_with_their_members_a_small_page_at_a_time(configured, asked):
    """A page of groups with their members is held three times while decoded: the full read asks
    for MEMBER_PAGE_SIZE groups a page, or fewer when ad_page_size says so."""
    client = PagedClient(configured)
    assert ad_reader.read_managed_groups(client, 'DC=x', member_guids={}) == []
    assert client.pages == [asked]
