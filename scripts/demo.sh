#!/usr/bin/env bash
# Sets up, builds and runs the main job: `activemm compare` on its built-in scenario (lazy TLB
# on and off, side by side, with the CR3 writes saved). Extra arguments go to activemm.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${ACTIVEMM_BUILD_DIR:-$root/build}

bash "$root/scripts/setup.sh"
bash "$root/scripts/build.sh"
exec "$build/vmm/activemm" compare "$@"
