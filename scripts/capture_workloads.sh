#!/usr/bin/env bash
# Records a real Linux trace of each workload in tests/workloads with `activemm capture`, into
# OUT_ROOT/NAME (the folder format of ../shared/traces). Needs root (tracefs) and a build in
# build/ (or $ACTIVEMM_BUILD_DIR): bash scripts/build.sh.
#   usage: sudo bash scripts/capture_workloads.sh OUT_ROOT [--buffer-kb N]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${ACTIVEMM_BUILD_DIR:-$root/build}
if [ $# -lt 1 ] || [ -z "$1" ]; then
  echo "usage: $0 OUT_ROOT [--buffer-kb N]  (captures each workload into OUT_ROOT/NAME)" >&2
  exit 2
fi
out_root=$1
shift
activemm=$build/vmm/activemm
workloads=$build/tests/workloads
names=(wl_threads wl_forkexec wl_mmap_churn wl_io)
for f in "$activemm" "${names[@]/#/$workloads/}"; do
  if [ ! -x "$f" ]; then
    echo "capture_workloads: $f is missing: build first (bash scripts/build.sh, with the same" \
      "ACTIVEMM_BUILD_DIR)" >&2
    exit 2
  fi
done
for name in "${names[@]}"; do
  "$activemm" capture "$out_root/$name" "$@" -- "$workloads/$name"
done
