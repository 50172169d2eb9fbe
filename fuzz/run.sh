#!/usr/bin/env bash
# Runs every fuzz target for a number of executions each (default 10,000,000) and prints
# what each did. Needs nightly and cargo-fuzz: rustup toolchain install nightly;
# cargo install cargo-fuzz. Crashes land in fuzz/artifacts/<target>/; turn each into a
# regression test before fixing it.
#   fuzz/run.sh [RUNS] [TARGET ...]
set -euo pipefail
cd "$(dirname "$0")"
runs=${1:-10000000}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(ciphertexts keys parameters protocol_json http_routes onnx pickle)
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  echo "== $t: $runs runs"
  cargo +nightly fuzz run "$t" "corpus/$t" -- -runs="$runs" -max_len=65536 -print_final_stats=1 2>&1 \
    | grep -E "stat::number_of_executed_units|stat::peak_rss_mb|Done|SUMMARY|panicked|ERROR" || true
done
