#!/usr/bin/env bash
# Encoding on loopback (release): for each clip length (default 20 and 60 s of 1080p30,
# generated), plain ffmpeg first makes the same ladder from the local file (the
# baseline), then one `zib server` + six `zib node` encode it from `zib upload` and
# `POST /v1/api/encoding/request`. Prints time-to-playable and time-to-safe as ratios to
# the clip's length, the ladder's wall time as a ratio to plain ffmpeg's, and the peak
# RSS (VmHWM) of the encoding node, which should not grow with the clip. Then the cost
# of thumbnails: the same 20 s clip encoded with the default poster + sprite storyboard
# and with `thumbnails: false`, request to local_complete, as a ratio.
#   bench/video.sh [seconds...]      ZIB_BENCH_X264_PRESET=veryfast (baseline's preset)
#   ZIB_BENCH_THUMBNAILS_SECONDS=20  (0 skips the thumbnails run)
# Exits non-zero if an encode did not reach `safe` (or, in the thumbnails run,
# local_complete with thumbnails as asked).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f scripts/install-media-deps.sh ] && bash scripts/install-media-deps.sh
command -v ffmpeg >/dev/null || { echo "ffmpeg missing (scripts/install-media-deps.sh)" >&2; exit 1; }
seconds=("$@")
[ ${#seconds[@]} -eq 0 ] && seconds=(20 60)
work=${BENCH_DIR:-${TMPDIR:-/tmp}/zib-bench-video}
rm -rf "$work" && mkdir -p "$work"
cargo build --release -q --bin zib
zib=${CARGO_TARGET_DIR:-$PWD/target}/release/zib
python3 bench/lib/video.py --zib "$zib" --work "$work" --seconds "${seconds[@]}" \
  --thumbnails-seconds "${ZIB_BENCH_THUMBNAILS_SECONDS:-20}"
