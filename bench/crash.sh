#!/usr/bin/env bash
# Crash run on loopback: one `zib server` and six `zib node` processes (release);
# uploads run while the server and nodes are killed with SIGKILL at random points
# and restarted, then the cluster settles. Fails if any acknowledged upload does not
# read back byte for byte (lost) or any file is left pending/uploading/distributed
# (stuck). Prints the seed; SEED=<n> replays the chaos schedule.
#   bench/crash.sh [duration-secs] [settle-secs]     (defaults 60, 120)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-60}
settle=${2:-120}
work=${BENCH_DIR:-${TMPDIR:-/tmp}/zib-bench-crash}
rm -rf "$work" && mkdir -p "$work"
cargo build --release -q --bin zib
zib=${CARGO_TARGET_DIR:-$PWD/target}/release/zib
python3 bench/lib/crash.py --zib "$zib" --work "$work" --duration "$duration" \
  --settle "$settle" ${SEED:+--seed "$SEED"}
