#!/usr/bin/env bash
# Checks that every C++ file of the tree is formatted as .clang-format says, with clang-format
# 14, the version the project pins (other versions disagree on details). The test command runs
# it (ctest: format); with --fix it formats the files in place instead.
#
#   bash scripts/check_format.sh [--fix]
#
# Exit status: 0 formatted; 1 a file is not (each is named, with the first differences); 2 no
# clang-format-14 (bash scripts/setup.sh installs it) or a bad option.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
fix=0
case ${1:-} in
  --fix) fix=1 ;;
  "") ;;
  *) echo "check_format: unknown option $1 (usage: check_format.sh [--fix])" >&2; exit 2 ;;
esac
cf=$(command -v clang-format-14 || true)
if [ -z "$cf" ]; then
  echo "check_format: clang-format-14 not found (bash scripts/setup.sh installs it)" >&2
  exit 2
fi
cd "$root"
# The tracked files in a clone; every source file where there is no git.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -d '' files < <(git ls-files -z -- '*.cc' '*.h')
else
  mapfile -d '' files < <(find guest shared tests vmm -name '*.cc' -print0 -o -name '*.h' -print0)
fi
if [ "$fix" = 1 ]; then
  "$cf" -i -- "${files[@]}"
  exit 0
fi
bad=0
for f in "${files[@]}"; do
  [ -f "$f" ] || continue  # deleted in the work tree, not yet in the index
  if ! out=$("$cf" --dry-run --Werror -- "$f" 2>&1); then
    echo "$out" | head -20
    bad=1
  fi
done
if [ "$bad" = 1 ]; then
  echo "check_format: files above differ from .clang-format (fix: bash scripts/check_format.sh --fix)" >&2
  exit 1
fi
echo "check_format: ${#files[@]} files formatted"
