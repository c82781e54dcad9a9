#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script):
#   1. set-up (Debian packages, .venv)            tools/setup.sh
#   2. the lab's preflight: every file and tool the lab relies on is present and comes from a
#      Debian package tools/setup.sh names (tests/lab/preflight.py; runs whatever the arguments)
#   3. ansible-test sanity                         tools/sanity.sh
#   4. ansible-lint (production profile) and the changelog fragments
#   5. unit and integration tests in one pytest run (the lab's Samba DCs and the Graph emulator
#      are started by the fixtures and left running for the next run; `python tests/lab/lab.py down`
#      stops them).
# Arguments are passed to pytest (e.g. `bash tools/test.sh -k writeback`); with arguments,
# sanity and lint are skipped unless CLOUDSYNC_FULL=1.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here" || exit 1
bash tools/setup.sh || { echo "test: set-up failed"; exit 1; }
export PATH="$here/.venv/bin:$PATH"

failed=()
step() { echo; echo "=== $1"; }

step "preflight: what the lab relies on, from packages tools/setup.sh names"
python3 tests/lab/preflight.py || failed+=("preflight")

if [ "$#" -eq 0 ] || [ "${CLOUDSYNC_FULL:-0}" = 1 ]; then
  step "ansible-test sanity"
  bash tools/sanity.sh || failed+=("sanity")

  step "ansible-lint (production profile)"
  ANSIBLE_COLLECTIONS_PATH="$here/.build/collections${ANSIBLE_COLLECTIONS_PATH:+:$ANSIBLE_COLLECTIONS_PATH}" \
    ansible-lint --offline -q || failed+=("ansible-lint")

  step "changelog fragments"
  antsibull-changelog lint || failed+=("changelog")
fi

step "pytest: unit and integration tests"
python -m pytest tests -ra -p no:cacheprovider "$@"
rc=$?
case "$rc" in
  0) ;;
  5) echo "test: pytest collected no tests: that is a failure of the suite, not a pass"; failed+=("pytest (no tests collected)") ;;
  *) failed+=("pytest (exit $rc)") ;;
esac

echo
if [ "${#failed[@]}" -gt 0 ]; then
  echo "test: FAILED: ${failed[*]}"
  exit 1
fi
echo "test: all steps passed"
