#!/usr/bin/env bash
# Erasure coding: our zib-erasure wrapper vs the bare reed-solomon-erasure crate at
# 4+2 / 1 MiB shards over 64 MiB. Prints GB/s (10^9 bytes of segment data per second)
# and ours/raw; the wrapper should keep >= 0.8 of the crate's speed.
set -euo pipefail

cd "$(dirname "$0")/.."
cargo bench -p zib-erasure --bench erasure -- --noplot "$@"

target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
python3 - "$target_dir/criterion" <<'PY'
import json, sys, pathlib

root = pathlib.Path(sys.argv[1])
BYTES = 64 << 20

def gbps(group, bench):
    est = json.loads((root / group / bench / "new" / "estimates.json").read_text())
    return BYTES / est["mean"]["point_estimate"]  # bytes per ns == GB/s

rows = [
    ("encode", "encode_parity", "raw_rs_encode", "hot path: node reads into shard buffers"),
    ("encode", "encode_segment", "raw_rs_encode", "convenience: one extra copy"),
    ("reconstruct", "reconstruct_segment", "raw_rs_reconstruct", "same Option<Vec> interface"),
    ("reconstruct", "reconstruct_segment", "raw_rs_reconstruct_prealloc", "vs crate's preallocated best case"),
    ("reconstruct", "reconstruct_segment_into", "raw_rs_reconstruct", "reused output buffer"),
    ("reconstruct", "reconstruct_segment_into", "raw_rs_reconstruct_prealloc", "reused output vs preallocated"),
]
print()
print(f"{'ours':<22}{'GB/s':>8}  {'raw':<30}{'GB/s':>8}  {'ratio':>6}  note")
for group, ours, raw, note in rows:
    o, r = gbps(group, ours), gbps(group, raw)
    ratio = o / r
    flag = "" if ratio >= 0.8 else "  BELOW 0.8"
    print(f"{ours:<22}{o:8.2f}  {raw:<30}{r:8.2f}  {ratio:6.2f}  {note}{flag}")
PY
