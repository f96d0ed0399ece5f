#!/usr/bin/env bash
# The whole test suite: Rust (unit, property and integration tests on real
# `zib dev` clusters) and, when present, the JS SDK's Node and browser tests.
# Installs what it needs on a fresh Debian machine with the Rust toolchain.
# The AI stages are built in (`--features zib-cli/ai`) and their tests run on real
# models: ffmpeg, espeak-ng and the fastest, recommended and vision models are installed first.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== media tools and AI models"
scripts/install-media-deps.sh
scripts/install-models.sh fastest recommended vision

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked --features zib-cli/ai -- -D warnings

echo "== cargo test"
cargo test --workspace --locked --features zib-cli/ai

# A pass of every fuzzer from its committed seeds, on request: ZIB_FUZZ_SECS=10
# (seconds per target). Its own sanitizer-coverage build of the server costs ~10 min
# on a cold 2-core machine, which the CI budget does not have (docs/testing.md).
if [ "${ZIB_FUZZ_SECS:-0}" != 0 ]; then
  echo "== fuzz (${ZIB_FUZZ_SECS} s per target)"
  scripts/fuzz.sh "${ZIB_FUZZ_SECS}"
fi

if [ -x sdk/js/run-tests.sh ]; then
  echo "== JS SDK tests"
  # The zib binary cargo test just built (the AI stages in, this tree's zib-sdk.js
  # embedded): a separate `-p zib-cli` build resolves features apart and rebuilds.
  ZIB_BIN="${ZIB_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/debug/zib}" sdk/js/run-tests.sh
fi
