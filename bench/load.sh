#!/usr/bin/env bash
# Load on loopback: one `zib server` and six `zib node` processes (release), then 50
# concurrent uploaders (`zib upload`) and 100 concurrent CDN readers at once, after a
# one-client baseline in the same run. Reports errors (a wrong byte is one), p50/p99
# latency, throughput, loaded/baseline ratios and peak RSS of server and nodes.
#   bench/load.sh [size-kib] [uploads-each] [reads-each]    (defaults 512, 4, 20)
# Exits non-zero if any request failed.
set -euo pipefail
cd "$(dirname "$0")/.."
size_kib=${1:-512}
uploads_each=${2:-4}
reads_each=${3:-20}
work=${BENCH_DIR:-${TMPDIR:-/tmp}/zib-bench-load}
rm -rf "$work" && mkdir -p "$work"
cargo build --release -q --bin zib
zib=${CARGO_TARGET_DIR:-$PWD/target}/release/zib
python3 bench/lib/load.py --zib "$zib" --work "$work" --size-kib "$size_kib" \
  --uploads-each "$uploads_each" --reads-each "$reads_each" ${SEED:+--seed "$SEED"}
