#!/usr/bin/env bash
# Installs everything the tests, the demo and the benchmarks need on a Debian 12 machine:
# Debian packages (Samba AD DC, Kerberos client and headers, venv) and a virtualenv at .venv
# with the collection's and the tests' Python dependencies. Idempotent: a second run is quick.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

# Every Debian package the lab, the tests and the set-up rely on, by name: packages are installed
# with --no-install-recommends, so a package that only comes as a Recommends (samba-ad-provision,
# the schema files of 'samba-tool domain provision') must be listed here. tests/lab/preflight.py
# (run below, first in tools/test.sh, and as a test) refuses a relied-on file whose package is
# not named here, even when the file happens to be present.
APT_PACKAGES=(
  samba-ad-dc samba samba-common-bin python3-samba samba-ad-provision winbind  # the lab's AD DCs, samba-tool, the AD schema files
  krb5-user smbclient ldb-tools iproute2                                       # kinit, smbclient; ldbadd/ldbmodify/ldbsearch; ip
  util-linux mount                                                             # unshare, mount: the lab DC's smbd/winbindd (Lab.ensure_smb)
  libkrb5-dev python3-venv python3-dev gcc                                     # .venv, and gssapi built in it
  openjdk-17-jre-headless                                                      # java for ansible-rulebook (Event-Driven Ansible)
  openssl rsync shellcheck                                                     # tools/sanity.sh and ansible-test sanity
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # krb5-user asks for a default realm; the lab writes its own krb5.conf, so answer blank.
  echo "krb5-config krb5-config/default_realm string" | debconf-set-selections 2>/dev/null || true
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Before anything else: each file and tool the lab relies on is present, from a package named above.
if ! python3 tests/lab/preflight.py; then
  echo "setup: the machine lacks what the lab relies on (above); tools/setup.sh must name each package in APT_PACKAGES" >&2
  exit 1
fi
# Samba's packaging starts system daemons we do not want: the lab runs its own DCs.
for svc in samba-ad-dc smbd nmbd winbind; do
  systemctl disable --now "$svc" >/dev/null 2>&1 || true
done

PY="${PYTHON:-python3}"
stamp=".venv/.deps-$(cat requirements.txt tests/requirements.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setup: creating virtualenv .venv"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q 'ansible-core>=2.16,<2.20' -r requirements.txt -r tests/requirements.txt 'gssapi>=1.8'
  rm -f .venv/.deps-*
  touch "$stamp"
fi
# The checkout as a collection (what ansible-playbook, ansible-lint and the tests resolve
# hybrid_identity.cloud_sync to): a symlink under .build/, which git ignores.
link=".build/collections/ansible_collections/hybrid_identity/cloud_sync"
if [ ! -e "$link" ]; then
  mkdir -p "$(dirname "$link")"
  ln -sfn "$here" "$link"
fi
# Collections the Windows agent role uses (for lint and its syntax tests), from PyPI's bundle.
.venv/bin/python tools/windows_collections.py
echo "setup: ok (ansible-core $(.venv/bin/python -c 'import ansible.release as r; print(r.__version__)'))"
