#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz; clang, with AddressSanitizer and
# UndefinedBehaviorSanitizer) into build/fuzz (or $ACTIVEMM_BUILD_DIR/fuzz), replays each
# target's corpus, then fuzzes each target for SECONDS, one at a time. Fails on any crash, hang,
# leak or sanitizer report; the input is kept in build/fuzz/artifacts/.
#
#   fuzz.sh [SECONDS] [TARGET...]     (default: 15 seconds; every target)
#
# scripts/test.sh runs `fuzz.sh 15`. To fuzz longer by hand, e.g. an hour on the guest memory
# readers: `bash scripts/fuzz.sh 3600 guest_memory`. New inputs are written to
# build/fuzz/corpus/TARGET, never to tests/fuzz/corpus: to keep a crashing input as a regression
# test, copy it from build/fuzz/artifacts/ to tests/fuzz/corpus/TARGET/ (every build replays
# those: the CTest tests fuzz_corpus.TARGET).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${ACTIVEMM_BUILD_DIR:-$root/build}
fuzz=$build/fuzz

seconds=${1:-15}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(trace_parser scenario_compiler replay_planner guest_memory)

# The largest input each target tries: above its largest seed (tests/fuzz/corpus/TARGET).
max_len() {
  case $1 in
    trace_parser | replay_planner) echo 6144 ;;
    scenario_compiler) echo 16384 ;;
    *) echo 32768 ;;
  esac
}

cmake -S "$root" -B "$fuzz" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DACTIVEMM_FUZZ=ON >/dev/null
cmake --build "$fuzz" -j "$(nproc)" --target "${targets[@]/%/_fuzz}"

mkdir -p "$fuzz/artifacts"
status=0
for t in "${targets[@]}"; do
  bin=$fuzz/tests/fuzz/${t}_fuzz
  corpus=$root/tests/fuzz/corpus/$t
  log=$fuzz/$t.log
  mkdir -p "$fuzz/corpus/$t"
  # -runs=0: every corpus input once; then fuzzing, new inputs into the build folder's corpus.
  if "$bin" -runs=0 "$corpus" >"$log" 2>&1 &&
    "$bin" -max_total_time="$seconds" -max_len="$(max_len "$t")" -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$fuzz/artifacts/$t-" \
      "$fuzz/corpus/$t" "$corpus" >>"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    echo "fuzz: $t: ${runs:-?} runs in ${seconds} s (${speed:-?}/s), no crash"
  else
    echo "fuzz: $t FAILED (inputs kept in $fuzz/artifacts/); the end of $log:" >&2
    tail -n 40 "$log" >&2
    status=1
  fi
done
exit "$status"
