# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Preflight of the machine: every file and tool the lab, the tests and the set-up rely on is
present, and comes from a Debian package that tools/setup.sh names in APT_PACKAGES.

The second half is what catches the mistake of issue 14: a file present only because someone once
installed its package by hand (samba-ad-provision, a Recommends that `--no-install-recommends`
leaves out) passes every test on that machine and fails on a fresh one. Here the file's owner is
asked of dpkg (`dpkg-query -S`), and a package the set-up does not name is refused, so CI fails
on the machine where the file happens to be present.

Standard library only: tools/setup.sh runs it with the system python right after installing the
Debian packages, before the virtualenv exists; tools/test.sh runs it first; `lab.py preflight`
runs it too.

    python3 tests/lab/preflight.py [--setup-sh tools/setup.sh]

Exit 0 and one line when all is well; otherwise one line per problem (what is missing or not
named, what needs it, which package provides it) and exit 1.
"""
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import argparse
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SETUP_SH = os.path.join(ROOT, 'tools', 'setup.sh')
# The PATH the lab gives Samba's tools (lab.lab._system_env).
SYSTEM_PATH = '/usr/sbin:/usr/bin:/sbin:/bin'
AD_SCHEMA = '/usr/share/samba/setup/ad-schema/'

# (a file by absolute path, or a command looked up on SYSTEM_PATH; the Debian 12 package that
#  provides it; what relies on it). The package is the hint printed when the file is missing; when
# it is present, dpkg says which package owns it and that package must be in APT_PACKAGES.
REQUIREMENTS = (
    ('/usr/bin/samba-tool', 'samba-common-bin', 'lab.py provisions each forest and joins a second DC with it'),
    ('/usr/sbin/samba', 'samba', 'the AD domain controller of each lab forest'),
    ('/usr/lib/python3/dist-packages/samba/__init__.py', 'python3-samba', 'samba-tool, and the SDDL cross-check of the unit tests'),
    (AD_SCHEMA + 'AD_DS_Attributes__Windows_Server_2012_R2.ldf', 'samba-ad-provision', "'samba-tool domain provision' (the schema)"),
    (AD_SCHEMA + 'AD_DS_Classes__Windows_Server_2012_R2.ldf', 'samba-ad-provision', "'samba-tool domain provision' (the schema)"),
    (AD_SCHEMA + 'AD_DS_Attributes__Windows_Server_2016.ldf', 'samba-ad-provision', 'lab.py: the 2016 schema (msDS-ExternalDirectoryObjectId)'),
    (AD_SCHEMA + 'AD_DS_Classes__Windows_Server_2016.ldf', 'samba-ad-provision', 'lab.py: the 2016 schema (msDS-ExternalDirectoryObjectId)'),
    ('ldbmodify', 'ldb-tools', 'lab.py: schema extension and lab objects'),
    ('ldbadd', 'ldb-tools', 'lab.py: seeding users'),
    ('ldbsearch', 'ldb-tools', 'lab.py: reading the seeded identities'),
    ('kinit', 'krb5-user', 'Kerberos binds against the lab KDCs (Forest.kinit)'),
    ('smbclient', 'smbclient', "Kerberos access to a lab DC's file share (shared/spec/ad-lab.md)"),
    ('smbcontrol', 'samba', "reloading a lab DC's smb.conf (shared/spec/ad-lab.md)"),
    ('/usr/sbin/smbd', 'samba', "the file shares of corp's DC (Lab.ensure_smb, access-follows-Entra tests)"),
    ('/usr/sbin/winbindd', 'winbind', "group names and ids for smbd on corp's DC (Lab.ensure_smb)"),
    ('unshare', 'util-linux', "Lab.ensure_smb: smbd and winbindd of corp's DC in a mount namespace of their own"),
    ('mount', 'mount', "Lab.ensure_smb: the forest's winbindd socket directory where smbd looks for it"),
    ('ip', 'iproute2', 'lab.py: the loopback addresses of the lab DCs'),
    ('java', 'openjdk-17-jre-headless', 'ansible-rulebook (Event-Driven Ansible) in the tests'),
    ('krb5-config', 'libkrb5-dev', 'building gssapi into .venv'),
    ('gcc', 'gcc', 'building gssapi into .venv'),
    ('rsync', 'rsync', 'tools/sanity.sh: the copy ansible-test runs on'),
    ('shellcheck', 'shellcheck', "ansible-test sanity's shellcheck test"),
)


def apt_packages(setup_sh_text):
    """The package names of the ``APT_PACKAGES=(...)`` array of a set-up script (may span lines,
    may hold comments, which may hold parentheses)."""
    match = re.search(r'^[ \t]*APT_PACKAGES=\(', setup_sh_text, re.MULTILINE)
    if not match:
        raise ValueError('no APT_PACKAGES=(...) array in the set-up script')
    names = []
    for line in setup_sh_text[match.end():].splitlines():
        code = line.split('#', 1)[0]
        names.extend(code.split(')', 1)[0].split())
        if ')' in code:
            return names
    raise ValueError('the APT_PACKAGES=(...) array of the set-up script is not closed')


def problems(requirements, named, locate, owners_of):
    """The problems found, as sentences (empty: all is well). Pure: ``locate(what)`` returns the
    path of a file or command or None; ``owners_of(path)`` the Debian packages that own it ([]
    when dpkg knows none); ``named`` the packages the set-up installs by name."""
    named = set(named)
    found = []
    for what, package, needed_by in requirements:
        path = locate(what)
        if path is None:
            found.append('missing %s (%s): install the Debian package %s (tools/setup.sh names it in APT_PACKAGES)'
                         % (what, needed_by, package))
            continue
        owners = owners_of(path)
        if not owners:
            found.append('%s (%s) is not from a Debian package (dpkg knows no owner of %s): a fresh machine would not have it;'
                         ' install it from the package %s, named in tools/setup.sh APT_PACKAGES' % (what, needed_by, path, package))
        elif not named.intersection(owners):
            found.append('%s (%s) comes from the Debian package %s, which tools/setup.sh does not name in APT_PACKAGES:'
                         ' the set-up does not ask for it, so a fresh machine has it only if something else happens to'
                         ' install it; add %s to APT_PACKAGES' % (what, needed_by, ' or '.join(owners), owners[0]))
    return found


def locate(what):
    if what.startswith('/'):
        return what if os.path.exists(what) else None
    return shutil.which(what, path=SYSTEM_PATH)


def _usrmerge_aliases(path):
    """The names dpkg may know a path by on a merged-/usr system (/bin/ip for /usr/bin/ip...)."""
    out = [path]
    for short in ('/bin/', '/sbin/', '/lib/'):
        if path.startswith('/usr' + short):
            out.append(path[len('/usr'):])
        elif path.startswith(short):
            out.append('/usr' + path)
    return out


def owners_of(path):
    """The Debian packages dpkg says own ``path`` (following symlinks: /usr/bin/java is an
    alternatives link into the JRE's package), without architecture suffixes."""
    candidates = []
    for p in (path, os.path.realpath(path)):
        for alias in _usrmerge_aliases(p):
            if alias not in candidates:
                candidates.append(alias)
    for candidate in candidates:
        try:
            proc = subprocess.run(['dpkg-query', '-S', candidate], capture_output=True, text=True, timeout=60, check=False)
        except OSError:
            return []
        if proc.returncode != 0:
            continue
        owners = []
        for line in proc.stdout.splitlines():
            if line.startswith('diversion ') or ': ' not in line:
                continue
            head, listed = line.split(': ', 1)
            if listed.strip() != candidate:
                continue
            owners.extend(p.strip().split(':')[0] for p in head.split(','))
        if owners:
            return owners
    return []


def check(setup_sh=SETUP_SH, requirements=REQUIREMENTS):
    with open(setup_sh) as fh:
        named = apt_packages(fh.read())
    return problems(requirements, named, locate, owners_of)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n', 1)[0])
    parser.add_argument('--setup-sh', default=SETUP_SH, help='the set-up script whose APT_PACKAGES to hold the machine to')
    args = parser.parse_args(argv)
    found = check(args.setup_sh)
    for line in found:
        print('preflight: ' + line)
    if found:
        print('preflight: FAILED (%d problem%s)' % (len(found), '' if len(found) == 1 else 's'))
        return 1
    print('preflight: ok (%d files and tools present, each from a Debian package %s names)' % (len(REQUIREMENTS), args.setup_sh))
    return 0


if __name__ == '__main__':
    sys.exit(main())
