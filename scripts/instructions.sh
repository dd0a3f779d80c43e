#!/usr/bin/env bash
# Instructions per poll cycle, counted by callgrind: unlike wall time they do
# not depend on what else the (shared, 2-core) machine is doing. Runs the
# cycle example with ITERS iterations and with 0, and divides the difference.
#   cargo build --release --example cycle && scripts/instructions.sh [N] [ITERS]
set -euo pipefail
n=${1:-10000}
iters=${2:-3}
bin=${CYCLE_BIN:-target/release/examples/cycle}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
count() {
  valgrind --tool=callgrind --callgrind-out-file="$out/cg.%p" "$bin" "$n" "$1" "$2" 2>&1 >/dev/null |
    awk '/Collected :/ {print $4}'
}
for mode in ${MODES:-raw snapshot same flip}; do
  base=$(count "$mode" 0)
  total=$(count "$mode" "$iters")
  echo "$mode n=$n: $(( (total - base) / iters / 1000 )) k instructions per iteration"
done
