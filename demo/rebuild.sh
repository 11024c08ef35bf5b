#!/usr/bin/env bash
# Rebuilds the shipped demo model with the recipe of demo/README.md and
# checks that every file equals the shipped one, byte for byte.
# Takes about 1 h 55 min on 2 cores. Usage: demo/rebuild.sh [WORK_DIR]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-$root/runs/demo-rebuild}"
cd "$root"
cargo build --release --bin serl
serl=target/release/serl
"$serl" demo-data --out "$work/data" --seed 2026 --n-sft 20000 --n-eval 200
# The same problems with three in five solutions cut to the bare answer.
"$serl" demo-data --family direct --out "$work/data-direct" --seed 2026 --n-sft 20000 --n-eval 200
# Four cosine cycles over the worked corpus: a fresh model, then three more;
# then one over the direct corpus.
"$serl" sft --preset demo --data "$work/data/sft.jsonl" --out "$work/stage1" \
    --seed 0 --steps 800 --batch-size 32 --lr 2e-3 --max-len 512
"$serl" sft --model "$work/stage1" --data "$work/data/sft.jsonl" --out "$work/stage2" \
    --seed 1 --steps 1000 --batch-size 32 --lr 2e-3 --max-len 512
"$serl" sft --model "$work/stage2" --data "$work/data/sft.jsonl" --out "$work/stage3" \
    --seed 2 --steps 1000 --batch-size 32 --lr 1.5e-3 --max-len 512
"$serl" sft --model "$work/stage3" --data "$work/data/sft.jsonl" --out "$work/stage4" \
    --seed 3 --steps 1500 --batch-size 32 --lr 1e-3 --max-len 512
"$serl" sft --model "$work/stage4" --data "$work/data-direct/sft.jsonl" --out "$work/model" \
    --seed 4 --steps 400 --batch-size 32 --lr 1e-3 --max-len 512
status=0
for f in seeds.jsonl eval.jsonl; do
    cmp "$work/data/$f" "demo/$f" || status=1
    cmp "$work/data-direct/$f" "demo/$f" || status=1
done
for f in demo/model/*; do
    cmp "$work/model/$(basename "$f")" "$f" || status=1
done
if [ "$status" = 0 ]; then echo "rebuilt demo model and data are identical to the shipped ones"; fi
exit "$status"
