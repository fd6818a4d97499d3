#!/usr/bin/env bash
# The long soak: `activemm stress` (a seeded random scenario, the verifier after every step) at
# many vCPUs over several seeds. Not part of the test command: it takes tens of minutes.
#
#   scripts/soak_stress.sh [--bin PATH] CPUS SEEDS STEPS [CPUS SEEDS STEPS ...]
#
# Runs seeds 1..SEEDS of each set and prints one line per run ("cpus 16 seed 3: 21876 steps,
# 0 violations, 212 s"), then a total. Exit status 0 when every run completed with no violation.
# With no sets: the soak of docs/results.md, 16 vCPUs x 10 seeds x 20,000 steps, then 64 vCPUs x
# 3 seeds x 5,000 steps. Needs /dev/kvm; where there is none, inside the nested VM:
#   scripts/nested_kvm/run.sh --cpus 2 --timeout 7200 --rw build -- scripts/soak_stress.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${ACTIVEMM_BUILD_DIR:-$root/build}/vmm/activemm
if [[ ${1:-} == --bin ]]; then
  bin=${2:?soak_stress: --bin wants a path}
  shift 2
fi
[[ $# -gt 0 ]] || set -- 16 10 20000 64 3 5000
(( $# % 3 == 0 )) || { echo "soak_stress: sets are CPUS SEEDS STEPS (got $# words)" >&2; exit 2; }
[[ -x $bin ]] || { echo "soak_stress: $bin is not built (bash scripts/build.sh)" >&2; exit 2; }

out=$(mktemp)
trap 'rm -f "$out"' EXIT
runs=0 failed=0 start=$SECONDS
while [[ $# -gt 0 ]]; do
  cpus=$1 seeds=$2 steps=$3
  shift 3
  for ((seed = 1; seed <= seeds; seed++)); do
    t0=$SECONDS
    set +e
    "$bin" stress --cpus "$cpus" --seed "$seed" --steps "$steps" >"$out" 2>&1 </dev/null
    status=$?
    set -e
    runs=$((runs + 1))
    # "steps: 21876/21876 executed in 212.40 s" and "...; invariant violations: 0"
    done_steps=$(sed -n 's/^steps: \([0-9]*\/[0-9]*\) executed.*/\1/p' "$out")
    violations=$(sed -n 's/.*invariant violations: \([0-9]*\).*/\1/p' "$out")
    echo "cpus $cpus seed $seed: ${done_steps:-?} steps, ${violations:-?} violations," \
      "$((SECONDS - t0)) s, exit status $status"
    if [[ $status != 0 ]]; then
      failed=$((failed + 1))
      tail -n 20 "$out" | sed 's/^/  | /'
    fi
  done
done
echo "soak_stress: $runs runs, $failed failed, $((SECONDS - start)) s"
[[ $failed == 0 ]]
