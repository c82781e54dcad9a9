#!/usr/bin/env bash
# Sets up the peer baseline (what an administrator writes today without this collection):
# python-ldap in .venv (community.general's LDAP modules import it; it builds against the
# Debian packages libldap2-dev and libsasl2-dev), and community.general extracted from the
# `ansible` package on PyPI into .build/peer_collections, without installing `ansible` into .venv.
# Idempotent: a second run only checks.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$here"

missing=()
for p in libldap2-dev libsasl2-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "peer setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! .venv/bin/python -c 'import ldap' 2>/dev/null; then
  echo "peer setup: pip install python-ldap into .venv"
  .venv/bin/python -m pip install -q python-ldap
fi

dest=.build/peer_collections
if [ ! -f "$dest/ansible_collections/community/general/plugins/modules/ldap_entry.py" ]; then
  echo "peer setup: extracting community.general from the ansible package on PyPI into $dest"
  dl="$(mktemp -d)"
  .venv/bin/python -m pip download -q --no-deps --only-binary=:all: -d "$dl" 'ansible>=10,<12'
  mkdir -p "$dest"
  .venv/bin/python - "$dl" "$dest" <<'PY'
import glob, os, sys, zipfile
dl, dest = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(dl, 'ansible-*.whl'))[0]
prefix = 'ansible_collections/community/general/'
with zipfile.ZipFile(wheel) as zf:
    names = [n for n in zf.namelist() if n.startswith(prefix)]
    for n in names:
        zf.extract(n, dest)
print('peer setup: %d files of community.general from %s' % (len(names), os.path.basename(wheel)))
PY
  rm -rf "$dl"
fi
echo "peer setup: ok"
