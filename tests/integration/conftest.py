"""Fixtures shared by the integration tests that write groups into a sandbox OU of corp."""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import uuid

import pytest

from writeback_helpers import Directory


@pytest.fixture
def corp_dir(corp):
    """An admin view of the corp forest (writeback_helpers.Directory), closed afterwards."""
    directory = Directory(corp)
    yield directory
    directory.close()


@pytest.fixture
def sandbox(corp_dir):
    """A fresh OU under corp's OU=CloudGroups, tree-deleted afterwards: tests never see each other's groups."""
    dn = corp_dir.make_ou('t-%s' % uuid.uuid4().hex[:10])
    yield dn
    corp_dir.remove_tree(dn)
