#!/usr/bin/env bash
# Runs every cargo-fuzz (libFuzzer) target in fuzz/ for a bounded time each:
#   scripts/fuzz.sh [seconds-per-target] [target...]
# Default 20 s per target. Exits non-zero on the first crash, timeout or failed
# property and prints the reproducer, replayable with
#   (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none -a <target> <file>).
#
# The machine has only a stable toolchain: cargo-fuzz passes nightly-only flags, which
# RUSTC_BOOTSTRAP=1 allows. No sanitizer: the code under test is safe Rust, and
# ASan would double the build and slow every run; `-a` keeps debug assertions and
# overflow checks on, so an arithmetic overflow is a crash. The committed seeds in
# fuzz/corpus/<target>/ are only read; what libFuzzer finds goes to a scratch dir.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
shift || true
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
target_dir="${CARGO_TARGET_DIR:-$PWD/target}/fuzz"
work=$(realpath -m "${FUZZ_WORK_DIR:-${TMPDIR:-/tmp}/zib-fuzz}")
flags=(--sanitizer none --debug-assertions --target-dir "$target_dir")

cd fuzz
# fuzz/Cargo.lock starts from the workspace's versions. It is not --locked (cargo
# fuzz cannot pass it): a dependency added to a workspace crate is resolved here
# too, keeping every version already locked, and reported so it gets committed.
t0=$(date +%s)
cargo fuzz build "${flags[@]}"
echo "fuzz build: $(($(date +%s) - t0)) s"
git diff --quiet -- Cargo.lock 2>/dev/null ||
  echo "note: fuzz/Cargo.lock changed (a workspace crate gained a dependency): commit it"

targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
failed=()
for t in "${targets[@]}"; do
  rm -rf "${work:?}/$t" && mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
  if cargo fuzz run "${flags[@]}" "$t" "$work/$t/corpus" "corpus/$t" -- \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 \
      -artifact_prefix="$work/$t/artifacts/" >"$work/$t/log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/$t/log" | grep -o '[0-9]*$' || true)
    [ -n "$runs" ] || runs=$(grep -oE '^#[0-9]+' "$work/$t/log" | tail -n 1 | tr -d '#')
    echo "fuzz $t: ok (${runs:-?} runs in ${secs} s)"
  else
    echo "fuzz $t: FAILED"
    tail -n 40 "$work/$t/log"
    for f in "$work/$t/artifacts/"*; do
      [ -e "$f" ] && echo "reproducer: $f"
    done
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz targets failed: ${failed[*]} (logs and reproducers under $work)"
  exit 1
fi
