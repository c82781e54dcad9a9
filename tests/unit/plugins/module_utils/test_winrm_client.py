"""winrm_client's endpoint URL: the default port follows the scheme, as prereq_facts documents."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.hybrid_identity.cloud_sync.plugins.module_utils.winrm_client import WINRM_ARGSPEC, endpoint_url


@pytest.mark.parametrize('scheme,port,url', [
    ('https', None, 'https://agent.test:5986/wsman'),
    ('http', None, 'http://agent.test:5985/wsman'),
    (None, None, 'https://agent.test:5986/wsman'),
    ('http', 8080, 'http://agent.test:8080/wsman'),
])
def test_default_port_follows_the_scheme(scheme, port, url):
    assert endpoint_url(dict(agent_host='agent.test', winrm_scheme=scheme, winrm_port=port)) == url


def test_ipv6_host_is_bracketed():
    assert endpoint_url(dict(agent_host='::1', winrm_scheme='https')) == 'https://[::1]:5986/wsman'


def test_the_port_has_no_fixed_default_in_the_argspec():
    assert WINRM_ARGSPEC['winrm_port'].get('default') is None
