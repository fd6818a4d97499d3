#!/usr/bin/env bash
# Sets up, builds and runs every test (the README's test command; .ci/run calls it).
# Where /dev/kvm is usable the KVM tests must run: ACTIVEMM_REQUIRE_KVM=1 turns their skip into
# a failure, and a skipped test in CTest's summary fails the run as well.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${ACTIVEMM_BUILD_DIR:-$root/build}

bash "$root/scripts/setup.sh"
bash "$root/scripts/build.sh"

if [ -r /dev/kvm ] && [ -w /dev/kvm ] && /usr/bin/python3 -c \
    'import os; os.close(os.open("/dev/kvm", os.O_RDWR))' 2>/dev/null; then
  export ACTIVEMM_REQUIRE_KVM=1
  echo "test: /dev/kvm is usable: KVM tests must run, none may skip"
else
  echo "test: /dev/kvm is not usable here: KVM tests will skip"
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
(cd "$build" && ctest --output-on-failure -j "$(nproc)") 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
  exit "$status"
fi
if [ "${ACTIVEMM_REQUIRE_KVM:-0}" = 1 ] && grep -qE '\*\*\*Skipped|Not Run' "$log"; then
  echo "test: /dev/kvm is usable but some tests were skipped:" >&2
  grep -E '\*\*\*Skipped|Not Run' "$log" >&2
  exit 1
fi
