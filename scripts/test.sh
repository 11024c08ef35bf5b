#!/usr/bin/env bash
# Runs every check of libserl: formatting, lints, all tests, and the wasm32
# build of the evaluator. Installs what it needs (the wasm32 target, rustfmt,
# clippy) when missing. Usage: ./scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v rustup >/dev/null 2>&1; then
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
  rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$' || rustup target add wasm32-unknown-unknown
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace
echo "== serl-core evaluator for wasm32-unknown-unknown"
cargo build -p serl-core --no-default-features --target wasm32-unknown-unknown
echo "== all checks passed"
