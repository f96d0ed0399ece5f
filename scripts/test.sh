#!/usr/bin/env bash
# The whole test suite: Rust (unit, property and integration tests on real
# `zib dev` clusters) and, when present, the JS SDK's Node and browser tests.
# Installs what it needs on a fresh Debian machine with the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --workspace --locked

if [ -x sdk/js/run-tests.sh ]; then
  echo "== JS SDK tests"
  sdk/js/run-tests.sh
fi
