#!/usr/bin/env bash
# Runs clang-tidy 14 with the checks .clang-tidy chooses over the host's sources (vmm/, and the
# shared/ headers they include), with the compile commands of a build folder. The test command
# runs it (ctest: tidy).
#
#   bash scripts/check_tidy.sh [BUILD_DIR]     (default: build)
#
# Exit status: 0 clean; 1 a finding (each printed, as an error); 2 no clang-tidy-14 (bash
# scripts/setup.sh installs it) or no compile_commands.json in BUILD_DIR.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build}
tidy=$(command -v clang-tidy-14 || true)
if [ -z "$tidy" ]; then
  echo "check_tidy: clang-tidy-14 not found (bash scripts/setup.sh installs it)" >&2
  exit 2
fi
if [ ! -f "$build/compile_commands.json" ]; then
  echo "check_tidy: no $build/compile_commands.json (build first: bash scripts/build.sh)" >&2
  exit 2
fi
cd "$root"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -d '' files < <(git ls-files -z -- 'vmm/*.cc')
else
  mapfile -d '' files < <(find vmm -name '*.cc' -print0)
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
# Two files per clang-tidy, one process per CPU; the findings are errors (WarningsAsErrors).
status=0
printf '%s\0' "${files[@]}" |
  xargs -0 -P "$(nproc)" -n 2 "$tidy" -p "$build" --quiet >"$out" 2>/dev/null || status=$?
if [ "$status" -ne 0 ]; then
  grep -E ': (error|warning):' -A3 "$out" >&2 || cat "$out" >&2
  echo "check_tidy: clang-tidy found the above in ${#files[@]} files" >&2
  exit 1
fi
echo "check_tidy: ${#files[@]} files, no findings"
