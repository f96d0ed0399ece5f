#!/usr/bin/env bash
# Durability figures on `zib dev` (release): time from upload start to `safe` for a
# file of SIZE_MIB (default 100), and storage overhead once safe (bytes on nodes ÷
# bytes uploaded; (k+m)/k = 1.5 for 4+2, plus per-blob filesystem rounding).
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-100}
work=${BENCH_DIR:-${TMPDIR:-/tmp}/zib-bench-durability}
rm -rf "$work" && mkdir -p "$work"
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
cargo build --release -q -p zib-cli
zib=$PWD/target/release/zib
head -c $((size_mib * 1048576)) /dev/urandom > "$work/src.bin"
"$zib" dev --data-dir "$work/dev" --listen 127.0.0.1:0 2> "$work/dev.log" &
for _ in $(seq 1 600); do [ -f "$work/dev/credentials.json" ] && break; sleep 0.1; done
eval "$(python3 -c "
import json; c = json.load(open('$work/dev/credentials.json'))
print(f\"export ZIB_API_URL={c['api_url']} ZIB_ACCESS_KEY={c['access_key']} ZIB_SECRET_KEY={c['secret_key']}\")")"
t0=$(date +%s.%N)
id=$("$zib" upload --bucket bench --key src.bin "$work/src.bin" | python3 -c "import json,sys; print(json.load(sys.stdin)['file_id'])")
t_up=$(date +%s.%N)
while :; do
  phase=$(curl -s -H "Authorization: Bearer $ZIB_ACCESS_KEY:$ZIB_SECRET_KEY" "$ZIB_API_URL/v1/api/pipeline/$id" \
    | python3 -c "import json,sys; print(json.load(sys.stdin)['stages']['upload']['phase'])")
  [ "$phase" = safe ] && break
  sleep 0.2
done
t_safe=$(date +%s.%N)
sleep 3  # the originator's full copy is dropped on the command that follows `safe`
stored=$(du -sb "$work/dev/nodes" | cut -f1)
bytes=$(stat -c %s "$work/src.bin")
python3 - <<PY
print(f"size                         {$size_mib} MiB")
print(f"upload (distributed)         {$t_up - $t0:.1f} s")
print(f"upload start -> safe         {$t_safe - $t0:.1f} s")
print(f"bytes on nodes / uploaded    {$stored / $bytes:.3f}  (4+2 gives 1.5)")
PY
