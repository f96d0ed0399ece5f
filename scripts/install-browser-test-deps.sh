#!/usr/bin/env bash
# Installs what the browser SDK tests need: Debian's chromium (only when missing) and
# playwright-core (the driver only, no bundled browser) and hls.js (the player the
# HLS playback test loads) under sdk/js/node_modules.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
  echo "installing chromium (Debian package)" >&2
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q chromium
fi

cd "$repo/sdk/js"
if [ ! -d node_modules/playwright-core ] || [ ! -f node_modules/hls.js/dist/hls.min.js ]; then
  # playwright-core never downloads a browser; ours is /usr/bin/chromium.
  export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
  if [ -f package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
  else
    npm install --no-audit --no-fund --loglevel=error
  fi
fi
