#!/usr/bin/env bash
# Installs what activemm needs to build and test, from Debian's packages only, and only what is
# missing. As root it runs apt-get; otherwise it prints the exact command to run and fails.
#
#   setup.sh [--nested]
#
# --nested adds what the nested-KVM VM needs (scripts/nested_kvm/run.sh: QEMU, busybox for its
# initramfs, depmod and xz for the kernel's modules) and fetches its kernel into the build
# tree's cache, so that the first run does not wait for the download.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

nested=0
case ${1:-} in
  --nested) nested=1 ;;
  "") ;;
  *) echo "setup: unknown option $1 (usage: setup.sh [--nested])" >&2; exit 2 ;;
esac

# clang-format-14 and clang-tidy-14: the versions the format and tidy tests pin
# (scripts/check_format.sh, scripts/check_tidy.sh).
# clang and its compiler-rt (libclang-rt-dev: libclang-rt-14-dev on Debian 12, the runtime of
# -fsanitize=fuzzer) build the fuzz targets (scripts/fuzz.sh). trace-cmd: `activemm capture
# --with trace-cmd` and its tests (docs/replay.md).
packages=(
  g++ cmake make binutils clang libclang-rt-dev clang-format-14 clang-tidy-14
  libabsl-dev libfmt-dev libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev
  python3 python3-pytest python3-matplotlib trace-cmd
)
if [ "$nested" = 1 ]; then
  packages+=(qemu-system-x86 busybox-static kmod xz-utils)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: missing Debian packages: ${missing[*]}" >&2
    echo "setup: run: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

# Scripts and tests run Python through Debian's interpreter, which sees python3-pytest and
# python3-matplotlib (scripts/sweep.py's plots); the first python3 on PATH may be another one
# that does not.
if ! /usr/bin/python3 -c 'import pytest' 2>/dev/null; then
  echo "setup: /usr/bin/python3 cannot import pytest (install python3-pytest)" >&2
  exit 1
fi
if ! /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
  echo "setup: /usr/bin/python3 cannot import matplotlib (install python3-matplotlib)" >&2
  exit 1
fi

if [ "$nested" = 1 ]; then
  cache=${ACTIVEMM_NESTED_CACHE:-${ACTIVEMM_BUILD_DIR:-$root/build}/nested-kvm}
  bash "$root/scripts/nested_kvm/kernel.sh" "$cache" >/dev/null
elif [ ! -e /dev/kvm ]; then
  echo "setup: note: /dev/kvm does not exist here; guests will run inside a QEMU VM with nested KVM (setup.sh --nested)" >&2
elif [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
  echo "setup: note: no read/write access to /dev/kvm; add yourself to group kvm" >&2
fi
