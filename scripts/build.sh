#!/usr/bin/env bash
# Configures and builds activemm into build/ (or $ACTIVEMM_BUILD_DIR).
#
#   build.sh [CMAKE_OPTION...]
#
# Extra arguments go to CMake's configure step: scripts/test.sh passes -DACTIVEMM_WERROR=ON, so
# that developers and CI treat warnings as errors while a user's build does not.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${ACTIVEMM_BUILD_DIR:-$root/build}
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$build" -j "$(nproc)"
