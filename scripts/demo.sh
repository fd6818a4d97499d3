#!/usr/bin/env bash
# Sets up, builds and runs the main job: the SMP self-test on 8 vCPUs (the lazy-TLB comparison
# takes its place once it exists).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${ACTIVEMM_BUILD_DIR:-$root/build}

bash "$root/scripts/setup.sh"
bash "$root/scripts/build.sh"
exec "$build/vmm/activemm" selftest --cpus 8 "$@"
