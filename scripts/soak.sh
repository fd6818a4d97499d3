#!/usr/bin/env bash
# Runs one command many times and counts the runs that fail: for races that fire once in a
# hundred runs on one hypervisor and never on another (docs/hosts.md has the figures).
#
#   scripts/soak.sh [--runs N] [--failures DIR] -- COMMAND [ARGS...]
#
# Each failed run's status and output go to DIR/run-K.log (default: no copies kept) and its
# last lines to stderr. The closing line is "soak: N runs, F failed"; the exit status is 0 when
# none failed, 1 otherwise. Inside the nested-KVM VM:
#   scripts/nested_kvm/run.sh --rw build -- scripts/soak.sh --runs 200 -- build/vmm/activemm selftest --cpus 4
set -euo pipefail
runs=100 failures=''
while [[ $# -gt 0 ]]; do
  case $1 in
    --runs) runs=${2:-}; shift 2 ;;
    --failures) failures=${2:-}; shift 2 ;;
    --) shift; break ;;
    *) echo "soak: unknown option $1 (usage: soak.sh [--runs N] [--failures DIR] -- COMMAND...)" >&2; exit 2 ;;
  esac
done
[[ $# -gt 0 ]] || { echo "soak: no command given" >&2; exit 2; }
[[ $runs =~ ^[1-9][0-9]*$ ]] || { echo "soak: --runs wants a positive number, not '$runs'" >&2; exit 2; }
[[ -z $failures ]] || mkdir -p "$failures"

out=$(mktemp)
trap 'rm -f "$out"' EXIT
failed=0
declare -A by_status=()
start=$SECONDS
for ((k = 1; k <= runs; k++)); do
  set +e
  "$@" >"$out" 2>&1 </dev/null
  status=$?
  set -e
  if [[ $status != 0 ]]; then
    failed=$((failed + 1))
    by_status[$status]=$((${by_status[$status]:-0} + 1))
    echo "soak: run $k of $runs exited with status $status:" >&2
    tail -n 15 "$out" | sed 's/^/  | /' >&2
    [[ -z $failures ]] || { echo "status $status" | cat - "$out" >"$failures/run-$k.log"; }
  fi
  if ((k % 25 == 0 && k < runs)); then
    echo "soak: $k of $runs runs, $failed failed, $((SECONDS - start)) s" >&2
  fi
done
statuses=''
for s in "${!by_status[@]}"; do statuses+=" status $s: ${by_status[$s]};"; done
echo "soak: $runs runs, $failed failed${statuses:+ (${statuses# })} in $((SECONDS - start)) s: $*"
[[ $failed == 0 ]]
