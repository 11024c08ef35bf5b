#!/usr/bin/env bash
# Fuzzes libserl's parsers with cargo-fuzz (libFuzzer + AddressSanitizer,
# a pinned nightly toolchain; the library itself stays on stable).
#
#   ./scripts/fuzz.sh 10                 # the CI smoke: 10 s per target
#   ./scripts/fuzz.sh 3600 equiv vote    # a campaign on two targets
#
# Each target starts from its committed seeds (fuzz/seeds/T) and grows its
# own corpus (fuzz/corpus/T, not committed). A crash, a failed invariant or
# an input slower than 10 s fails the run and is written to
# fuzz/artifacts/T/; once fixed, keep it in fuzz/regressions/T/ (the tests
# replay every seed and regression on stable). Prints per target: runs,
# executions, coverage (libFuzzer's cov/ft) and corpus size; fuzz/stats.tsv
# accumulates the executions of every run.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
toolchain="${SERL_NIGHTLY:-nightly-2026-10-29}"
seconds="${1:-10}"
shift || true
if ! rustup run "$toolchain" rustc --version >/dev/null 2>&1; then
  rustup toolchain install "$toolchain" --profile minimal
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --version 0.13.2 --locked
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo "+$toolchain" fuzz list)
fi
cargo "+$toolchain" fuzz build -O >/dev/null
mkdir -p logs
status=0
printf '%-14s %12s %8s %8s %8s\n' target executions cov ft corpus
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  log="logs/$t.log"
  if ! cargo "+$toolchain" fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 >"$log" 2>&1; then
    echo "== $t FAILED (fuzz/$log, input in fuzz/artifacts/$t/):"
    grep -E "panicked|ERROR|SUMMARY|Test unit written" "$log" | head -8
    status=1
  fi
  execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+')
  ft=$(grep -oE 'ft: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+')
  corpus=$(find "corpus/$t" -type f | wc -l)
  printf '%-14s %12s %8s %8s %8s\n' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$corpus"
  printf '%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$t" "$seconds" "${execs:-0}" "${cov:-0}" >>stats.tsv
done
exit $status
