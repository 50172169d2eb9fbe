#!/usr/bin/env bash
# Our engine, SEAL 4.1 (through Pyfhel) and fhe.rs side by side: N = 8192, t = 65537, one thread
# pinned to one core, the three benches interleaved for ROUNDS rounds; then one table of the
# last round (../shared/peers/compare.py) and our bench's NTT floors.
#
# Usage: PEERS_SCRATCH=/scratch bash he-layers/benches/side_by_side.sh [ROUNDS]   (default 2)
# Needs the peers built once: PEERS_SCRATCH=/scratch bash ../shared/peers/run_all.sh fhe-rs seal
# (5-8 min; it also runs them once). PEERS: the peers' folder (default ../shared/peers beside
# this repository). CORE: the core to pin to (default 0). Measure on a quiet machine: the
# 1-minute load is logged before each bench and should stay below 1.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PEERS="${PEERS:-$ROOT/../shared/peers}"
: "${PEERS_SCRATCH:?set PEERS_SCRATCH to the scratch folder of the peers (see the usage line)}"
FHE="$PEERS_SCRATCH/fhe-rs-target/release/peers-fhe-rs"
SEAL="$PEERS_SCRATCH/venv-seal/bin/python"
for need in "$FHE" "$SEAL" "$PEERS/seal-pyfhel/bench.py" "$PEERS/compare.py"; do
  [ -e "$need" ] || { echo "missing $need: build the peers first (see the usage line)" >&2; exit 2; }
done
ROUNDS="${1:-2}"
CORE="${CORE:-0}"
OUT="$PEERS_SCRATCH/results"
mkdir -p "$OUT"
export OMP_NUM_THREADS=1 RAYON_NUM_THREADS=1
(cd "$ROOT" && cargo bench -p he-layers --bench engine --no-run -q)
OURS=(cargo bench -p he-layers --bench engine -q -- 8192 --peers)
stamp() { echo "[$(date -Is)] $1 load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/load.log" >&2; }
for r in $(seq 1 "$ROUNDS"); do
  stamp "ours r$r"
  (cd "$ROOT" && taskset -c "$CORE" "${OURS[@]}" 2>/dev/null) > "$OUT/ours-r$r.md"
  stamp "fhe-rs r$r"
  taskset -c "$CORE" "$FHE" --reps 11 --degrees 8192 --seal-level > "$OUT/fhe-rs-r$r.md"
  stamp "seal r$r"
  taskset -c "$CORE" "$SEAL" "$PEERS/seal-pyfhel/bench.py" --reps 11 --degrees 8192 --no-ckks \
    > "$OUT/seal-r$r.md"
done
stamp "end"
echo "## Side by side, round $ROUNDS of $ROUNDS (one thread, core $CORE), $(date -Is)"
python3 "$PEERS/compare.py" "$OUT/fhe-rs-r$ROUNDS.md" "$OUT/seal-r$ROUNDS.md" "$OUT/ours-r$ROUNDS.md"
echo
echo "## Ours, with NTT floors (round $ROUNDS)"
sed -n '/^| operation/,/^$/p' "$OUT/ours-r$ROUNDS.md"
