#!/usr/bin/env bash
# Builds libserl's WASM packages: the evaluator's web target into www/pkg
# (used by the demo page) and its Node.js target into pkg-node (used by the
# tests), both with TypeScript types; and the compute engine's browser build
# (serl-webgpu: the model on WebGPU) into www/pkg-engine, with the demo
# model, configuration and seeds copied into www/model for panel 3. Needs wasm-bindgen-cli at the crate's version
# (installed with cargo when missing) and the npm devDependencies (binaryen's
# wasm-opt shrinks the module). Prints the .wasm size, raw and gzipped.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

version=$(grep -m1 -E '^wasm-bindgen = ' serl-wasm/Cargo.toml | sed -E 's/.*"=?([0-9.]+)".*/\1/')
if ! command -v wasm-bindgen >/dev/null 2>&1 || [ "$(wasm-bindgen --version | awk '{print $2}')" != "$version" ]; then
  echo "== installing wasm-bindgen-cli $version (takes several minutes once)"
  cargo install wasm-bindgen-cli --version "$version"
fi
rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$' || rustup target add wasm32-unknown-unknown
[ -d "$here/node_modules/binaryen" ] || (cd "$here" && npm ci --no-audit --no-fund)

cargo build -p serl-wasm --profile wasm --target wasm32-unknown-unknown
target="${CARGO_TARGET_DIR:-$root/target}"
wasm="$target/wasm32-unknown-unknown/wasm/serl_wasm.wasm"
rm -rf "$here/www/pkg" "$here/pkg-node"
wasm-bindgen --target web --out-dir "$here/www/pkg" "$wasm"
wasm-bindgen --target nodejs --out-dir "$here/pkg-node" "$wasm"
for out in "$here/www/pkg/serl_wasm_bg.wasm" "$here/pkg-node/serl_wasm_bg.wasm"; do
  node "$here/node_modules/binaryen/bin/wasm-opt" -Oz \
    --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
    --enable-mutable-globals --enable-reference-types --enable-multivalue --strip-debug --strip-producers \
    "$out" -o "$out"
done
# The engine: optimised for speed (its CPU fallback runs the kernels in
# WebAssembly), not size; wasm-bindgen only.
cargo build -p serl-webgpu --release --target wasm32-unknown-unknown
rm -rf "$here/www/pkg-engine" "$here/www/model"
wasm-bindgen --target web --out-dir "$here/www/pkg-engine" "$target/wasm32-unknown-unknown/release/serl_webgpu.wasm"
mkdir -p "$here/www/model"
cp "$root"/demo/model/* "$root/demo/serl-demo.toml" "$root/demo/seeds.jsonl" "$here/www/model/"
engine=$(stat -c %s "$here/www/pkg-engine/serl_webgpu_bg.wasm")
engine_gz=$(gzip -9 -c "$here/www/pkg-engine/serl_webgpu_bg.wasm" | wc -c)
echo "serl_webgpu_bg.wasm (the engine): $engine bytes, $engine_gz bytes gzipped"
raw=$(stat -c %s "$here/www/pkg/serl_wasm_bg.wasm")
gz=$(gzip -9 -c "$here/www/pkg/serl_wasm_bg.wasm" | wc -c)
echo "serl_wasm_bg.wasm: $raw bytes, $gz bytes gzipped (budget 409600)"
