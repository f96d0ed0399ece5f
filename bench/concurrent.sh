#!/usr/bin/env bash
# Many uploads at once through `zib dev` (6 nodes in one process) on loopback:
# aggregate MB/s of N concurrent `zib upload`s of SIZE_MIB each against one upload of
# the same total bytes, measured in the same run, and the peak RSS of zib dev during
# each (/usr/bin/time -v; a fresh cluster per run, so each peak is its run's). The
# nodes' shared buffer budget (`upload_buffer_bytes`) is what keeps the peak flat.
#
#   bench/concurrent.sh [N] [SIZE_MIB]      (defaults 16 and 64)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-16}
size_mib=${2:-64}
work=${BENCH_DIR:-${TMPDIR:-/tmp}/zib-bench-concurrent}
rm -rf "$work" && mkdir -p "$work"
# The inputs and the cluster's data are N x SIZE_MIB several times over: gone at exit.
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
cargo build --release -q -p zib-cli
zib=$PWD/target/release/zib
now() { date +%s.%N; }

head -c $((size_mib * 1048576)) /dev/urandom > "$work/piece.bin"
for _ in $(seq 1 "$n"); do cat "$work/piece.bin"; done > "$work/whole.bin"
total=$(stat -c %s "$work/whole.bin")

# run NAME COMMAND...: a fresh zib dev, the command timed, then the cluster's peak RSS.
run() {
  local name=$1; shift
  rm -rf "$work/dev"
  ZIB_AI_NODES=0 /usr/bin/time -v "$zib" dev --data-dir "$work/dev" --listen 127.0.0.1:0 --nodes 6 \
    2> "$work/$name.dev.log" & local dev_pid=$!
  for _ in $(seq 1 600); do [ -f "$work/dev/credentials.json" ] && break; sleep 0.1; done
  eval "$(python3 -c "
import json; c = json.load(open('$work/dev/credentials.json'))
print(f\"export ZIB_API_URL={c['api_url']} ZIB_ACCESS_KEY={c['access_key']} ZIB_SECRET_KEY={c['secret_key']}\")")"
  local t0 t1
  t0=$(now); "$@"; t1=$(now)
  pkill -INT -P "$dev_pid" zib || true
  wait "$dev_pid" || true
  local rss
  rss=$(awk -F': ' '/Maximum resident set size/ {print int($2/1024)}' "$work/$name.dev.log")
  python3 -c "print(f'{\"$name\":<28} {$total/1048576/($t1-$t0):6.0f} MB/s   zib dev peak RSS $rss MiB')"
  echo "$total $t0 $t1" > "$work/$name.times"
}

one() { "$zib" upload --bucket bench --key whole.bin "$work/whole.bin" > /dev/null; }
many() {
  local pids=()
  for i in $(seq 1 "$n"); do
    "$zib" upload --bucket bench --key "piece-$i.bin" "$work/piece.bin" > /dev/null & pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
}

echo "$n x $size_mib MiB concurrent vs one upload of $((total / 1048576)) MiB; 2 cores"
run "one upload" one
run "$n concurrent uploads" many
python3 - "$work" "$n" <<'PY'
import sys
work, n = sys.argv[1], sys.argv[2]
def rate(name):
    total, t0, t1 = map(float, open(f"{work}/{name}.times").read().split())
    return total / (t1 - t0)
print(f"ratio concurrent / one      {rate(f'{n} concurrent uploads') / rate('one upload'):.2f}")
PY
