"""pytest fixtures for the WinRM endpoint (wired in by tests/conftest.py through pytest_plugins).

* ``winrm_endpoint``: a running endpoint (function scope) for a provisioning agent host with
  agent 1.1.1370.0, its service running, its registry key and no Connect Sync; Basic auth as
  ``endpoint.user`` / ``endpoint.password``. Change ``endpoint.facts`` (a ``HostFacts``) to
  describe another host.
* ``winrm_endpoint_factory``: ``factory(facts=None, **kwargs) -> WinRMEndpoint`` (e.g.
  ``ntlm=True``, ``receive_chunk=16``), stopped at teardown.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from winrm_endpoint.powershell import HostFacts
from winrm_endpoint.server import WinRMEndpoint

USER = "agent-admin"
PASSWORD = "Agent-Admin-Pass1!"


def _start(facts=None, **kwargs):
    kwargs.setdefault("users", {USER: PASSWORD})
    endpoint = WinRMEndpoint(facts if facts is not None else HostFacts.agent_host(), **kwargs).start()
    endpoint.user = USER
    endpoint.password = PASSWORD
    return endpoint


@pytest.fixture
def winrm_endpoint():
    endpoint = _start()
    yield endpoint
    endpoint.stop()


@pytest.fixture
def winrm_endpoint_factory():
    started = []

    def factory(facts=None, **kwargs):
        endpoint = _start(facts, **kwargs)
        started.append(endpoint)
        return endpoint
    yield factory
    for endpoint in started:
        endpoint.stop()
