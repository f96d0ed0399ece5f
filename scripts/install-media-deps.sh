#!/usr/bin/env bash
# Installs ffmpeg and ffprobe (Debian's ffmpeg package: libx264 and the native AAC
# encoder included) with apt-get, only when either is missing or cannot encode
# H.264 + AAC. The video encoder's tests call it first; so can a node's host setup.
# Also installs what the AI tests generate their clips with, when missing: espeak-ng
# (spoken sentences) and fonts-dejavu-core (ffmpeg drawtext's burned-in text).
set -euo pipefail
# Tests run in parallel and may call this at once: one installer at a time.
exec 9>"${TMPDIR:-/tmp}/zib-test-deps.lock"
flock 9

usable() {
  command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 || return 1
  local encoders
  # Read whole (grep -q would close the pipe early and pipefail would see SIGPIPE).
  encoders="$(ffmpeg -hide_banner -encoders 2>/dev/null)" || return 1
  grep -q ' libx264 ' <<<"$encoders" && grep -q ' aac ' <<<"$encoders"
}

FONT=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
missing=()
usable || missing+=(ffmpeg)
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
[ -f "$FONT" ] || missing+=(fonts-dejavu-core)

if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (apt-get)" >&2
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then sudo=(sudo -n); fi
  export DEBIAN_FRONTEND=noninteractive
  # A stale or half-fetched package index fails the first update now and then.
  "${sudo[@]}" apt-get update -qq >/dev/null || "${sudo[@]}" apt-get update -qq >/dev/null
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
usable || { echo "ffmpeg/ffprobe with libx264 and aac are not usable after install" >&2; exit 1; }
command -v espeak-ng >/dev/null 2>&1 || { echo "espeak-ng is missing after install" >&2; exit 1; }
[ -f "$FONT" ] || { echo "$FONT is missing after installing fonts-dejavu-core" >&2; exit 1; }
