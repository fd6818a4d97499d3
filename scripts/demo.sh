#!/usr/bin/env bash
# Sets up, builds and runs the main job: `activemm compare` on its built-in scenario (every lazy
# TLB mode under each PCID mode, side by side, with the CR3 writes saved). Extra arguments go
# to activemm compare. Where /dev/kvm is unusable it runs inside a QEMU TCG VM with nested KVM
# (scripts/nested_kvm/run.sh), and says so.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${ACTIVEMM_BUILD_DIR:-$root/build}

if why=$(bash "$root/scripts/nested_kvm/host_kvm.sh"); then
  bash "$root/scripts/setup.sh"
  bash "$root/scripts/build.sh"
  exec "$build/vmm/activemm" compare "$@"
fi
bash "$root/scripts/setup.sh" --nested
bash "$root/scripts/build.sh"
echo "demo: $why here, so activemm runs inside a QEMU TCG VM with nested KVM" \
  "(scripts/nested_kvm/run.sh): emulated, slower, about 15 s to boot" >&2
# Output files named on the command line land in the current folder: it is writable there.
rw=()
[ "$PWD" = / ] || rw=(--rw "$PWD")
exec bash "$root/scripts/nested_kvm/run.sh" --quiet "${rw[@]}" -- "$build/vmm/activemm" compare "$@"
