#!/usr/bin/env bash
# The C ABI's thread-safety check under ThreadSanitizer: libserl's toolkit
# (the evaluator, without the trainer) built with -Zsanitizer=thread and the
# standard library rebuilt the same way (nightly toolchain, rust-src), the
# 8-thread stress test compiled with gcc -fsanitize=thread, linked with the
# TSan runtime of that toolchain (gcc's own libtsan predates LLVM's newer
# entry points). Any data race report fails the run.
# Usage: ./scripts/tsan.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
toolchain="${SERL_NIGHTLY:-nightly-2026-10-29}"
seconds="${1:-3}"
if ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
  rustup toolchain install "$toolchain" --profile minimal --component rust-src
fi
rustup component list --toolchain "$toolchain" --installed | grep -q '^rust-src' \
  || rustup component add rust-src --toolchain "$toolchain"
host=x86_64-unknown-linux-gnu
RUSTFLAGS="-Zsanitizer=thread" cargo "+$toolchain" build -q -Zbuild-std --target "$host" \
  -p serl-ffi --no-default-features --release --target-dir target/tsan
sysroot=$(rustup run "$toolchain" rustc --print sysroot)
rt=$(ls "$sysroot/lib/rustlib/$host/lib/"librustc-*_rt.tsan.a | head -1)
out=target/tsan/test_threads
gcc -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -pedantic -Werror -O1 -g -fsanitize=thread \
  -Iinclude -c bindings/cpp/tests/test_threads.c -o "$out.o"
gcc "$out.o" -Wl,--whole-archive "$rt" -Wl,--no-whole-archive \
  "target/tsan/$host/release/libserl.a" -lpthread -ldl -lm -lrt -o "$out"
TSAN_OPTIONS="halt_on_error=1 exitcode=66" "$out" "$seconds"
