#!/usr/bin/env bash
# The AI stages' cost on loopback (release, --features ai): one `zib server` and six
# `zib node`, only node0 loading models, from a models directory holding just what the
# run needs. On a ~60 s clip of espeak-ng speech over a 1280x720 test pattern:
#   transcription fastest, recommended   real-time factor (clip seconds / run seconds)
#   vision standard, hq                  run seconds per minute of video
# and node0's peak RSS (VmHWM) during each (a fresh cluster per run, so the peak is the
# run's and its models'). Run time is the job's started_at → completed_at; the wall
# time from the submission is printed too.
#   bench/ai.sh [seconds]            (default 60)
# Installs the models it needs (scripts/install-models.sh fastest recommended vision).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-media-deps.sh
bash scripts/install-models.sh fastest recommended vision
work=${BENCH_DIR:-${TMPDIR:-/tmp}/zib-bench-ai}
rm -rf "$work" && mkdir -p "$work"
cargo build --release -q --features ai --bin zib
zib=${CARGO_TARGET_DIR:-$PWD/target}/release/zib
python3 bench/lib/ai.py --zib "$zib" --work "$work" --seconds "${1:-60}"
