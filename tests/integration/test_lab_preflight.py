# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The machine's preflight (tests/lab/preflight.py): each file and tool the lab relies on is
present AND comes from a Debian package tools/setup.sh names in APT_PACKAGES.

Issue 14: a fresh Debian 12 lacked samba-ad-provision (a Recommends of samba-ad-dc, left out by
--no-install-recommends); CI passed only because the developer machine had it from a manual
install. These tests hold this machine (where the file IS present) to a copy of setup.sh without
that package, and the preflight must refuse it, naming the package and the file. The real machine
is never changed.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import os
import re
import subprocess

from lab import preflight

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SETUP_SH = os.path.join(ROOT, 'tools', 'setup.sh')
TEST_SH = os.path.join(ROOT, 'tools', 'test.sh')
SYSTEM_PYTHON = '/usr/bin/python3'
LDF_2012 = 'AD_DS_Attributes__Windows_Server_2012_R2.ldf'


def _preflight(*args):
    # The system python, as tools/setup.sh runs it before the virtualenv exists.
    proc = subprocess.run([SYSTEM_PYTHON, os.path.join(ROOT, 'tests', 'lab', 'preflight.py')] + list(args),
                          capture_output=True, text=True, timeout=300, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def _setup_text():
    with open(SETUP_SH) as fh:
        return fh.read()


def test_this_machine_passes_against_the_real_setup():
    rc, out = _preflight()
    assert rc == 0, out
    assert 'preflight: ok' in out


def test_setup_without_samba_ad_provision_is_refused_naming_it(tmp_path):
    text = _setup_text()
    assert 'samba-ad-provision' in preflight.apt_packages(text)
    # The same script with samba-ad-provision taken out of APT_PACKAGES (only there).
    start = text.index('APT_PACKAGES=(')
    end = text.index('\n)', start)
    edited = text[:start] + re.sub(r'(?<=\s)samba-ad-provision(?=\s)', '', text[start:end]) + text[end:]
    assert 'samba-ad-provision' not in preflight.apt_packages(edited)
    copy = tmp_path / 'setup.sh'
    copy.write_text(edited)

    rc, out = _preflight('--setup-sh', str(copy))
    assert rc == 1, out
    flagged = [line for line in out.splitlines() if 'samba-ad-provision' in line]
    assert any(LDF_2012 in line and 'add samba-ad-provision to APT_PACKAGES' in line for line in flagged), out
    assert 'preflight: FAILED' in out
    # Nothing else is wrong with the copy: every complaint is about that package.
    assert all('samba-ad-provision' in line for line in out.splitlines() if line != out.splitlines()[-1]), out


def test_a_missing_file_is_named_with_the_package_that_provides_it():
    found = preflight.problems(preflight.REQUIREMENTS, preflight.apt_packages(_setup_text()),
                               locate=lambda what: None if what.endswith(LDF_2012) else '/x/' + what,
                               owners_of=lambda path: ['samba'])
    assert len(found) == 1
    assert found[0].startswith('missing /usr/share/samba/setup/ad-schema/' + LDF_2012), found
    assert 'install the Debian package samba-ad-provision' in found[0]


def test_a_file_no_package_owns_is_refused():
    found = preflight.problems([('/usr/local/bin/samba-tool', 'samba-common-bin', 'provisioning')], ['samba-common-bin'],
                               locate=lambda what: what, owners_of=lambda path: [])
    assert len(found) == 1 and 'not from a Debian package' in found[0] and 'samba-common-bin' in found[0]


def test_owners_are_read_from_dpkg_through_symlinks_and_merged_usr():
    # /usr/bin/java is an alternatives link into the JRE's package; dpkg knows ip as /bin/ip.
    assert preflight.owners_of(preflight.locate('java')) == ['openjdk-17-jre-headless']
    assert preflight.owners_of(preflight.locate('ip')) == ['iproute2']
    assert preflight.owners_of('/usr/share/samba/setup/ad-schema/' + LDF_2012) == ['samba-ad-provision']
    assert preflight.owners_of('/nonexistent/file') == []


def test_apt_packages_reads_a_multiline_array_with_comments():
    text = 'X=1\nAPT_PACKAGES=(\n  a b  # c (d) e\n  f\n)\nAPT_OTHER=(z)\n'
    assert preflight.apt_packages(text) == ['a', 'b', 'f']
    assert preflight.apt_packages('APT_PACKAGES=(a b) # (x)\n') == ['a', 'b']


def test_test_sh_runs_the_preflight_first_and_counts_no_tests_as_failure():
    with open(TEST_SH) as fh:
        text = fh.read()
    preflight_at = text.index('python3 tests/lab/preflight.py')
    assert preflight_at < text.index('bash tools/sanity.sh') < text.index('python -m pytest')
    # pytest's exit code 5 (no tests collected) fails the suite.
    assert re.search(r'\n\s*5\)[^\n]*failed\+=', text), 'tools/test.sh no longer fails on pytest exit code 5'
