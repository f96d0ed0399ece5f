#!/usr/bin/env bash
# Erasure coding: our zib-erasure wrapper vs the bare reed-solomon-erasure crate at
# 4+2 / 1 MiB shards over 64 MiB. Prints GB/s (10^9 bytes of segment data per second)
# and ours/raw; the wrapper should keep >= 0.8 of the crate's speed.
# "best" uses the fastest criterion sample, which shrugs off load from other processes
# better than the mean does; on a busy machine trust the best column.
set -euo pipefail

cd "$(dirname "$0")/.."
cargo bench -p zib-erasure --bench erasure -- --noplot "$@"

target_dir=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
python3 - "$target_dir/criterion" <<'PY'
import json, sys, pathlib

root = pathlib.Path(sys.argv[1])
BYTES = 64 << 20

def rates(group, bench):
    run = root / group / bench / "new"
    mean_ns = json.loads((run / "estimates.json").read_text())["mean"]["point_estimate"]
    sample = json.loads((run / "sample.json").read_text())
    best_ns = min(t / n for t, n in zip(sample["times"], sample["iters"]))
    return BYTES / mean_ns, BYTES / best_ns  # bytes per ns == GB/s

benches = [
    ("encode", "raw_rs_encode"),
    ("encode", "encode_parity"),
    ("encode", "encode_segment"),
    ("reconstruct", "raw_rs_reconstruct"),
    ("reconstruct", "raw_rs_reconstruct_prealloc"),
    ("reconstruct", "raw_rs_reconstruct_concat"),
    ("reconstruct", "reconstruct_segment"),
    ("reconstruct", "reconstruct_segment_into"),
]
gb = {b: rates(g, b) for g, b in benches}
print()
print(f"{'bench':<30}{'mean GB/s':>10}{'best GB/s':>10}")
for _, b in benches:
    print(f"{b:<30}{gb[b][0]:10.2f}{gb[b][1]:10.2f}")

pairs = [
    ("encode_parity", "raw_rs_encode", "hot path: node reads the file into shard buffers"),
    ("encode_segment", "raw_rs_encode", "convenience: copies the segment into fresh shards"),
    ("reconstruct_segment", "raw_rs_reconstruct", "same Option<Vec> input"),
    ("reconstruct_segment", "raw_rs_reconstruct_prealloc", "vs crate into preallocated shards"),
    ("reconstruct_segment", "raw_rs_reconstruct_concat", "same job (contiguous segment) with the bare crate"),
    ("reconstruct_segment_into", "raw_rs_reconstruct", "reused output buffer"),
]
print()
print(f"{'ours / raw':<56}{'mean':>6}{'best':>6}  note")
for ours, raw, note in pairs:
    mean, best = gb[ours][0] / gb[raw][0], gb[ours][1] / gb[raw][1]
    flag = "" if best >= 0.8 else "  (< 0.8)"
    print(f"{ours + ' / ' + raw:<56}{mean:6.2f}{best:6.2f}  {note}{flag}")
PY
