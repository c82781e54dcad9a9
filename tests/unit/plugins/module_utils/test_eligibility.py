# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils import eligibility as e


def group(**kw):
    g = dict(id='11111111-2222-3333-4444-555555555555', display_name='G', security_enabled=True, mail_enabled=False,
             group_types=[], on_premises_sync_enabled=None)
    g.update(kw)
    return g


def test_cloud_security_group_is_eligible():
    assert e.group_ineligibility(group()) == []
    assert e.group_ineligibility(group(group_types=['DynamicMembership'], on_premises_sync_enabled=False)) == []


@pytest.mark.parametrize('kw, reason', [
    (dict(security_enabled=False), 'not_security_enabled'),
    (dict(security_enabled=None), 'not_security_enabled'),
    (dict(mail_enabled=True), 'mail_enabled'),
    (dict(group_types=['Unified']), 'microsoft_365'),
    (dict(group_types=['unified', 'DynamicMembership']), 'microsoft_365'),
    (dict(on_premises_sync_enabled=True), 'synced_from_ad'),
    (dict(member_count=50001), 'too_many_members'),
    (dict(on_premises_security_identifier='S-1-5-21-1-2-3-1111'), 'source_of_authority_on_premises'),
    (dict(on_premises_security_identifier='S-1-5-21-1-2-3-1111', on_premises_sync_enabled=False, cloud_managed=False),
     'source_of_authority_on_premises'),
])
def test_each_ineligibility_reason(kw, reason):
    assert e.group_ineligibility(group(**kw)) == [reason]
    assert e.reason_text(reason) and e.reason_text(reason) != reason


def test_reasons_accumulate_in_fixed_order():
    g = group(security_enabled=False, mail_enabled=True, group_types=['Unified'], on_premises_sync_enabled=True, member_count=3)
    assert e.group_ineligibility(g, max_members=2) == [
        'not_security_enabled', 'mail_enabled', 'microsoft_365', 'synced_from_ad', 'too_many_members']


def test_group_converted_to_the_cloud_is_eligible_although_it_came_from_ad():
    """Group SOA: "Cloud Sync provisions to the same AD group that SOA had applied for"
    (https://learn.microsoft.com/en-us/entra/identity/hybrid/how-to-group-source-of-authority-configure);
    after the switch onPremisesSyncEnabled is null and the on-premises SID stays."""
    converted = group(cloud_managed=True, on_premises_security_identifier='S-1-5-21-1-2-3-1111',
                      on_premises_sam_account_name='Finance', on_premises_domain_name='corp.example.test')
    assert e.group_ineligibility(converted) == []
    # even while Graph still says it is synced (the flag wins), and other reasons still apply
    assert e.group_ineligibility(group(cloud_managed=True, on_premises_sync_enabled=True)) == []
    assert e.group_ineligibility(group(cloud_managed=True, mail_enabled=True)) == ['mail_enabled']


def test_member_limit_boundary_and_child_groups_count_as_one():
    members = [dict(id='u%d' % i, type='user') for i in range(3)] + [dict(id='g1', type='group')]
    assert e.group_ineligibility(group(members=members), max_members=4) == []
    assert e.group_ineligibility(group(members=members), max_members=3) == ['too_many_members']
    assert e.group_ineligibility(group(member_count=50000)) == []
    # the larger of member_count and len(members) is used
    assert e.group_ineligibility(group(member_count=1, members=members), max_members=3) == ['too_many_members']
    assert e.group_member_count(group()) is None
    assert e.group_ineligibility(group(member_count=10), max_members=None) == []


@pytest.mark.parametrize('anchor', [
    dict(on_premises_object_identifier='01234567-89ab-cdef-0123-456789abcdef'),
    dict(on_premises_security_identifier='S-1-5-21-1-2-3-1001'),
    dict(on_premises_immutable_id='Z0UjAauJ780BI0VniavN7w=='),
    dict(on_premises_sync_enabled=True),
])
def test_synced_users_supported(anchor):
    m = dict(id='u1', type='user', display_name='U')
    m.update(anchor)
    assert e.classify_member(m, set()) == (True, None)


def test_cloud_only_user():
    m = dict(id='u1', type='user', on_premises_object_identifier=None, on_premises_security_identifier=None,
             on_premises_immutable_id=None, on_premises_sync_enabled=None)
    assert e.classify_member(m, set()) == (False, 'cloud_only_user')


def test_groups_supported_only_in_scope():
    m = dict(id='AAAA', type='group')
    assert e.classify_member(m, {'aaaa'}) == (True, None)
    assert e.classify_member(m, {'bbbb'}) == (False, 'group_not_in_scope')


@pytest.mark.parametrize('mtype', ['device', 'service_principal', 'org_contact', 'application'])
def test_unsupported_types(mtype):
    supported, reason = e.classify_member(dict(id='x', type=mtype, on_premises_sync_enabled=True), {'x'})
    assert not supported
    assert reason == 'unsupported_type_' + mtype
    text = e.reason_text(reason)
    assert text != reason and 'not written back' in text, 'a reason code without its own words: %r' % text


def test_member_without_id():
    assert e.classify_member(dict(type='user', on_premises_sync_enabled=True), set()) == (False, 'missing_id')


def test_reason_text_covers_all_codes():
    for code in ['not_security_enabled', 'mail_enabled', 'microsoft_365', 'synced_from_ad', 'too_many_members',
                 'cloud_only_user', 'group_not_in_scope', 'unsupported_type_device', 'unsupported_type_service_principal',
                 'unsupported_type_org_contact', 'unresolved', 'source_of_authority_on_premises', 'writeback_not_enabled']:
        assert code in e.REASON_TEXT
    assert e.reason_text('no_such_code') == 'no_such_code'
