#!/usr/bin/env bash
# The one command for the performance figures of the README:
#   tools/bench.sh --size small     smoke run, a few minutes (peer included)
#   tools/bench.sh --size large     2,000 groups, 20,000 synced users, ~200,000 memberships
#   tools/bench.sh --size xlarge    20,000 groups, 200,000 synced users, ~2,000,000 memberships
# Runs tools/setup.sh and the peer's setup, brings the lab up (reused when healthy), seeds the
# synced users once (incremental: later runs reuse them), then benchmarks/bench_writeback.py.
# Other arguments go to bench_writeback.py (e.g. --peer yes, --profile first).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

size=small
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size="$2"; shift 2 ;;
    --size=*) size="${1#--size=}"; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
case "$size" in
  small) users=1000 ;;
  large) users=20000 ;;
  xlarge) users=200000 ;;
  *) echo "bench: --size small|large|xlarge" >&2; exit 2 ;;
esac

tools/setup.sh
benchmarks/peer/setup.sh
.venv/bin/python tests/lab/lab.py up --forest corp
.venv/bin/python tests/lab/lab.py seed --forest corp --users "$users"
exec .venv/bin/python benchmarks/bench_writeback.py --size "$size" "${args[@]}"
