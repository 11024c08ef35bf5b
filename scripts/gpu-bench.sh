#!/usr/bin/env bash
# The engine's backends side by side on this machine: for each model shape
# (random weights of real sizes, so no download), greedy generation tokens/s
# at batch 1 and 64 and one SeRL update (reference forward, forward +
# backward, clipping, AdamW on 4 x 320 tokens), on the CPU and on wgpu
# (CUDA joins when that backend exists), with the fraction of the GPU's
# memory bandwidth (decode) and FLOP/s (update) reached.
#
# Usage: scripts/gpu-bench.sh [BENCH_BINARY]
#   Without an argument it builds the bench (cargo, release, --features wgpu).
#   A machine without network can run a binary built elsewhere:
#     cargo build --release -p serl-core --features wgpu --example bench_model
#     scripts/gpu-bench.sh target/release/examples/bench_model
# Environment:
#   SHAPES       model shapes (default "smollm2-135m qwen2.5-1.5b"; "tiny" to try the script)
#   DEVICES      engine devices (default "cpu wgpu")
#   NEW          new tokens per generation (default 32)
#   MICRO, SEQ   the update's micro-batch (default 4 x 320)
#   PEAK_GBPS, PEAK_TFLOPS  the GPU's memory bandwidth and f32 FLOP/s, when
#                the GPU is not one the table below knows
#   SERL_PROFILE=1  also prints each update's forward + backward per kernel
#                (stderr; the backend waits after every kernel for it)
# Output: one JSON line per measurement (bench_model's), then a table.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${1:-}
if [ -z "$bin" ]; then
  cargo build --release -q -p serl-core --features wgpu --example bench_model
  bin=target/release/examples/bench_model
fi
[ -x "$bin" ] || { echo "gpu-bench: $bin is not an executable" >&2; exit 2; }

shapes=${SHAPES:-smollm2-135m qwen2.5-1.5b}
devices=${DEVICES:-cpu wgpu}
new=${NEW:-32}
micro=${MICRO:-4}
seq=${SEQ:-320}

# Mesa's WSI wants a runtime directory even for compute-only use.
[ -n "${XDG_RUNTIME_DIR:-}" ] || { XDG_RUNTIME_DIR=$(mktemp -d); chmod 700 "$XDG_RUNTIME_DIR"; export XDG_RUNTIME_DIR; }

# The GPU's peaks: dense f32 without tensor cores (the engine computes in
# f32 on the shader cores), and memory bandwidth, from the vendors' sheets.
gpu=""
command -v nvidia-smi >/dev/null 2>&1 && gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 || true)
peak_gbps=${PEAK_GBPS:-}
peak_tflops=${PEAK_TFLOPS:-}
if [ -z "$peak_gbps" ] || [ -z "$peak_tflops" ]; then
  case "$gpu" in
    *H200*) g=4800 t=67 ;;
    *H100*PCIe*) g=2000 t=51 ;;
    *H100*) g=3350 t=67 ;;
    *A100*80GB*) g=2039 t=19.5 ;;
    *A100*) g=1555 t=19.5 ;;
    *L40S*) g=864 t=91.6 ;;
    *L4*) g=300 t=30.3 ;;
    *4090*) g=1008 t=82.6 ;;
    *) g="" t="" ;;
  esac
  peak_gbps=${peak_gbps:-$g}
  peak_tflops=${peak_tflops:-$t}
fi

echo "== gpu-bench: ${gpu:-no NVIDIA GPU found}; shapes: $shapes; devices: $devices"
out=$(mktemp)
for shape in $shapes; do
  for dev in $devices; do
    echo "-- $shape on $dev" >&2
    if ! "$bin" device "$dev" "$shape" "$new" "$micro" "$seq" | tee -a "$out"; then
      echo "{\"bench\": \"failed\", \"device\": \"$dev\", \"shape\": \"$shape\"}" | tee -a "$out"
    fi
  done
done

python3 - "$out" "$peak_gbps" "$peak_tflops" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
gbps = float(sys.argv[2]) if sys.argv[2] else None
tflops = float(sys.argv[3]) if sys.argv[3] else None
def pct(value, peak, dev):
    # Fractions of the GPU's peaks only (the CPU has its own figures in the README).
    return f"{100 * value / peak:.1f}%" if peak and not dev.startswith("cpu") else "-"
print()
print("| shape | device | gen b=1 tok/s | gen b=64 tok/s | decode GB/s (b=1) | of peak | update s | TFLOP/s | of peak |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
keys = []
for r in rows:
    k = (r.get("shape"), r.get("device"))
    if k not in keys:
        keys.append(k)
for shape, dev in keys:
    g = {r["batch"]: r for r in rows if r["bench"] == "device_generate" and (r["shape"], r["device"]) == (shape, dev)}
    u = next((r for r in rows if r["bench"] == "device_update" and (r["shape"], r["device"]) == (shape, dev)), None)
    b1, b64 = g.get(1), g.get(64)
    cells = [shape, dev,
             f"{b1['tokens_per_s']:.1f}" if b1 else "failed",
             f"{b64['tokens_per_s']:.1f}" if b64 else "failed",
             f"{b1['decode_gb_per_s']:.1f}" if b1 else "-",
             pct(b1["decode_gb_per_s"], gbps, dev) if b1 else "-",
             f"{u['seconds']:.2f}" if u else "failed",
             f"{u['tflops']:.2f}" if u else "-",
             pct(u["tflops"], tflops, dev) if u else "-"]
    print("| " + " | ".join(cells) + " |")
if not (gbps and tflops):
    print("\n(peaks unknown for this GPU: set PEAK_GBPS and PEAK_TFLOPS for the fractions)")
EOF
rm -f "$out"
