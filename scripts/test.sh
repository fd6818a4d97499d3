#!/usr/bin/env bash
# Sets up, builds and runs every test (the README's test command; .ci/run calls it).
#
# Every test runs on every host and a skipped KVM test fails the run: ACTIVEMM_REQUIRE_KVM=1
# turns a KVM test's skip into a failure, and a skip in CTest's summary fails the run too.
# Where /dev/kvm is usable, all tests run here. Where it is not, the tests labelled `kvm` run
# inside a QEMU TCG VM with nested KVM (scripts/nested_kvm/run.sh) and the rest run here.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${ACTIVEMM_BUILD_DIR:-$root/build}

# The nested-KVM runner's own tests boot QEMU on every host, so its packages are always needed.
bash "$root/scripts/setup.sh" --nested
bash "$root/scripts/build.sh" -DACTIVEMM_WERROR=ON
export ACTIVEMM_REQUIRE_KVM=1

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
# ctest [ARGS...] in the build folder, here, with its output in $logs/NAME; its status.
run_ctest() {
  local name=$1
  shift
  set +e
  "$@" 2>&1 | tee "$logs/$name"
  local status=${PIPESTATUS[0]}
  set -e
  return "$status"
}

status=0
if why=$(bash "$root/scripts/nested_kvm/host_kvm.sh"); then
  echo "test: /dev/kvm is usable here: every test runs on this host, none may skip"
  run_ctest all bash -c "cd '$build' && ctest --output-on-failure -j $(nproc)" || status=$?
else
  echo "test: $why: the KVM tests run inside a QEMU TCG VM with nested KVM" \
    "(scripts/nested_kvm/run.sh; emulated, so slower), the others on this host; none may skip"
  run_ctest host bash -c "cd '$build' && ctest --output-on-failure -j $(nproc) -LE kvm" || status=$?
  # matplotlib's font cache, built here once: in the VM a first build prints a note on stderr
  # that the sweep tests rightly refuse.
  mpl=$build/nested-kvm/matplotlib
  mkdir -p "$mpl"
  MPLCONFIGDIR=$mpl /usr/bin/python3 -c 'import matplotlib.pyplot' 2>/dev/null || true
  run_ctest nested bash "$root/scripts/nested_kvm/run.sh" --cpus 2 --timeout 3600 \
    --rw "$build" --cwd "$build" --env ACTIVEMM_REQUIRE_KVM=1 --env "CI=${CI:-}" \
    --env "MPLCONFIGDIR=$mpl" \
    -- ctest --output-on-failure -j 2 -L kvm || { s=$?; [ "$status" -ne 0 ] || status=$s; }
fi

# Sanitizers: the host and its host-side tests again, built with AddressSanitizer and
# UndefinedBehaviorSanitizer (GCC; -O1 -g1 builds in half the time of -O2 -g) in $build/asan,
# only the targets those tests run. The freestanding guest cannot be (docs/architecture.md,
# "Sanitizers and fuzzing"). The tests that boot QEMU (examples, nested_kvm_runner) and the
# format and tidy checks (they run nothing built) are not repeated; the CTest entry of the KVM tests, not
# built here, is left out.
asan=$build/asan
echo "test: the host and its host-side tests with AddressSanitizer and UndefinedBehaviorSanitizer ($asan)"
cmake -S "$root" -B "$asan" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" -DACTIVEMM_WERROR=ON \
  -DACTIVEMM_SANITIZE=address,undefined >/dev/null
asan_targets=(activemm activemm_unit_tests wl_threads wl_forkexec wl_mmap_churn wl_io
  trace_parser_fuzz scenario_compiler_fuzz replay_planner_fuzz guest_memory_fuzz)
if cmake --build "$asan" -j "$(nproc)" --target "${asan_targets[@]}"; then
  run_ctest asan bash -c "cd '$asan' && UBSAN_OPTIONS=print_stacktrace=1 ctest \
    --output-on-failure -j $(nproc) -LE kvm -E '^(examples|nested_kvm_runner|format|tidy)\$|_NOT_BUILT\$'" ||
    { s=$?; [ "$status" -ne 0 ] || status=$s; }
else
  echo "test: the sanitizer build failed" >&2
  [ "$status" -ne 0 ] || status=1
fi

# Fuzzing: every fuzz target's corpus replayed, then 15 s of libFuzzer each (clang, with both
# sanitizers; $build/fuzz). scripts/fuzz.sh runs them longer by hand.
echo "test: the fuzz targets, 15 s each (scripts/fuzz.sh, $build/fuzz)"
run_ctest fuzz bash "$root/scripts/fuzz.sh" 15 || { s=$?; [ "$status" -ne 0 ] || status=$s; }

if grep -qE '\*\*\*Skipped|Not Run' "$logs"/*; then
  echo "test: some tests were skipped or not run; every test must run on every host:" >&2
  grep -hE '\*\*\*Skipped|Not Run' "$logs"/* >&2
  [ "$status" -ne 0 ] || status=1
fi
exit "$status"
