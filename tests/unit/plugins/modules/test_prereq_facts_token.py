# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""prereq_facts reads the app's application permissions from the roles claim of its own access token
(the JWT payload, decoded without a signature check: the token is our own, just issued to us)."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import base64
import json

import pytest

from ansible_collections.hybrid_identity.cloud_sync.plugins.modules import prereq_facts


def jwt(claims):
    def part(obj):
        return base64.urlsafe_b64encode(json.dumps(obj).encode('utf-8')).rstrip(b'=').decode('ascii')
    return '%s.%s.%s' % (part({'alg': 'RS256', 'typ': 'JWT'}), part(claims), 'c2lnbmF0dXJl')


class FakeAuth(object):
    def __init__(self, token):
        self.token = token

    def get_token(self):
        return self.token


class FakeGraph(object):
    def __init__(self, token):
        self.auth = FakeAuth(token)


def identity(token, client_id='11111111-1111-4111-8111-111111111111'):
    facts = {'errors': {}}
    prereq_facts._app_identity(FakeGraph(token), {'client_id': client_id}, facts)
    return facts


def test_roles_claim_is_the_app_permissions():
    facts = identity(jwt({'oid': 'aaaaaaaa-0000-4000-8000-000000000001', 'roles': ['User.Read.All', 'GroupMember.Read.All'],
                          'idtyp': 'app'}))
    assert facts['app_roles'] == ['User.Read.All', 'GroupMember.Read.All']
    assert facts['principal_id'] == 'aaaaaaaa-0000-4000-8000-000000000001'


def test_app_token_without_any_permission_has_no_roles_claim():
    assert identity(jwt({'oid': 'x', 'idtyp': 'app'}))['app_roles'] == []


def test_delegated_token_is_not_checked():
    facts = identity(jwt({'oid': 'x', 'scp': 'User.Read'}))
    assert 'app_roles' not in facts and 'delegated' in facts['errors']['app_roles']


@pytest.mark.parametrize('token', ['not-a-jwt', 'a.%%%.c', 'a.' + base64.urlsafe_b64encode(b'[1, 2]').decode('ascii') + '.c', None])
def test_unreadable_token_is_an_error_not_a_traceback(token):
    facts = identity(token)
    assert 'app_roles' not in facts and facts['errors']['app_roles']
