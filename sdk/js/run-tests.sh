#!/usr/bin/env bash
# Every test of the JS SDK: envelope vectors, Node uploads against `zib dev`, and the
# headless-Chromium tests of the example app. Installs what it needs when missing.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

bash "$repo/scripts/install-browser-test-deps.sh"
# The encoding test makes its clip with ffmpeg, and its cluster encodes with it.
bash "$repo/scripts/install-media-deps.sh"
# The AI test transcribes on real models (no-op when installed).
bash "$repo/scripts/install-models.sh" fastest recommended vision

if [ -z "${ZIB_BIN:-}" ]; then
  # The server embeds zib-sdk.js: build even when the binary exists (a no-op when fresh).
  # With the AI stages, as the test command's cargo test built it (ai.test.mjs).
  (cd "$repo" && cargo build -p zib-cli --features ai --quiet)
fi

cd "$here"
# One file at a time: each starts its own cluster, and two cores are all there is.
node --test --test-concurrency=1 test/*.test.mjs
