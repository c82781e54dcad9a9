# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""pytest fixtures for the AD lab (use with ``-p lab.fixtures`` or ``pytest_plugins = ["lab.fixtures"]``).

``lab`` brings corp and fabrikam up once per session, reusing a healthy running lab (the lab
stays up after the session: other runs reuse it; ``lab.py down`` stops it). ``corp`` and
``fabrikam`` are the Forest objects (see lab.lab.Forest). ``lab_dir`` is the lab directory
(for pki.issue_cert & co.).
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from lab.lab import DEFAULT_FORESTS, Lab, LabError


@pytest.fixture(scope="session")
def lab():
    the_lab = Lab()
    try:
        the_lab.up(DEFAULT_FORESTS)
    except (LabError, OSError) as exc:
        pytest.fail("the AD lab could not be brought up: %s" % exc, pytrace=False)
    return the_lab


@pytest.fixture(scope="session")
def lab_dir(lab):
    return lab.dir


@pytest.fixture(scope="session")
def corp(lab):
    return lab.forest("corp")


@pytest.fixture(scope="session")
def fabrikam(lab):
    return lab.forest("fabrikam")
