#!/usr/bin/env bash
# Browser bench of zib-sdk.js (headless Chromium, real `zib dev` on loopback): sealing
# throughput vs raw WebCrypto, upload MB/s, peak JS heap and RSS at 64 and 256 MiB.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
bash "$repo/scripts/install-browser-test-deps.sh"
(cd "$repo" && cargo build -p zib-cli --quiet)
node "$repo/bench/browser/run.mjs"
