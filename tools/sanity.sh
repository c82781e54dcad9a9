#!/usr/bin/env bash
# Runs `ansible-test sanity` on a copy of the collection placed under
# <tmp>/ansible_collections/hybrid_identity/cloud_sync (ansible-test needs that path),
# in ansible-test's own virtualenvs (--venv: no Docker). Extra arguments go to ansible-test.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
# Outside the checkout: inside it, ansible-test would ask the checkout's git, which ignores the copy.
build_root="${CLOUDSYNC_SANITY_DIR:-${TMPDIR:-/tmp}/cloud_sync-sanity-$(printf '%s' "$here" | sha256sum | cut -c1-12)}"
dest="$build_root/ansible_collections/hybrid_identity/cloud_sync"
mkdir -p "$dest"
# Files git tracks, plus new files it does not ignore, exactly as in the work tree.
git ls-files -z --cached --others --exclude-standard | rsync -a --delete --ignore-missing-args --from0 --files-from=- ./ "$dest/"
# rsync --delete only prunes inside the listed set; drop files removed from the tree since the last copy.
(cd "$dest" && find . -type f -not -path './tests/output/*' -print0) | while IFS= read -r -d '' f; do
  [ -e "$here/$f" ] || rm -f "$dest/$f"
done

# ansible-test runs each sanity test in a virtualenv of its own and bootstraps pip in it with a
# script it downloads from a host outside the package registries; give it a local stand-in.
venv_sanity="$here/.venv-sanity"
if [ ! -x "$venv_sanity/bin/ansible-test" ]; then
  "${PYTHON:-python3}" -m venv "$venv_sanity"
  "$venv_sanity/bin/python" -m pip install -q "$("$here/.venv/bin/python" -c 'import ansible; print("ansible-core==" + ansible.__version__)' 2>/dev/null || echo 'ansible-core>=2.16,<2.20')"
fi
pip_version="$("$venv_sanity/bin/python" - <<'PY'
import os, re, ansible_test
src = open(os.path.join(os.path.dirname(ansible_test.__file__), '_internal', 'python_requirements.py')).read()
m = re.search(r"pip='([0-9.]+)'", src)
print(m.group(1) if m else '')
PY
)"
cache="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
if [ -n "$pip_version" ] && ! cmp -s "$here/tools/get_pip_offline.py" "$cache"; then
  mkdir -p "$(dirname "$cache")"
  cp "$here/tools/get_pip_offline.py" "$cache"
fi
cd "$dest"
PATH="$venv_sanity/bin:$PATH" exec ansible-test sanity --local --python 3.11 --requirements --color no "$@"
