#!/usr/bin/env bash
# Runs a command with a working /dev/kvm on a host that has none: inside a small Linux VM
# under QEMU's TCG, whose emulated AMD CPU has SVM with nested paging, so kvm_amd loads there.
#
#   scripts/nested_kvm/run.sh [OPTIONS] [--] COMMAND [ARGS...]
#
#   --cpus N          the VM's CPUs (default 2)
#   --mem SIZE        the VM's memory, QEMU syntax (default 4G)
#   --cwd DIR         where the command runs (default: the current folder)
#   --rw DIR          a host folder the command may write (repeatable, at most 8); everything
#                     else of the host's root is read-only; /tmp and /var/tmp are the VM's own
#   --env NAME=VALUE  an environment variable for the command (repeatable); the command
#                     otherwise gets a clean environment and ACTIVEMM_NESTED_KVM=1
#   --timeout SEC     stop the VM after SEC seconds, exit status 124 (default 1800)
#   --tcg-thread single|multi
#                     single (default): one host thread runs every VM CPU; multi used both
#                     host cores but hung the guest kernel in some boots (docs/hosts.md)
#   --no-kvm-pin      do not hold an idle KVM VM open for the run (init.sh says why it is)
#   --cache DIR       kernel cache (default: $ACTIVEMM_NESTED_CACHE, else build/nested-kvm)
#   --verbose         the VM's console (kernel log) on stderr as it boots
#   --quiet           no "nested-kvm:" summary lines on stderr
#
# The command's stdout and stderr, merged, stream to this script's stdout; its stdin is
# /dev/null. Exit status: the command's own; 124 when the timeout stopped the VM; 125 when the
# VM could not be set up (no QEMU, no kernel package, kvm_amd did not load, the guest kernel
# locked up), with one line saying why and the end of the VM's console.
#
# Needs root: QEMU's 9p shares the host root with passthrough permissions. The kernel is
# Debian's, fetched into the cache and never installed (kernel.sh).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

cpus=2 mem=4G cwd=$PWD timeout=1800 tcg_thread=single kvm_pin=1 verbose=0 quiet=0
cache=${ACTIVEMM_NESTED_CACHE:-${ACTIVEMM_BUILD_DIR:-$root/build}/nested-kvm}
rw_dirs=() envs=()

say() { [[ $quiet == 1 ]] || echo "nested-kvm: $*" >&2; }
die() { echo "nested-kvm: $*" >&2; exit 125; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
  case $1 in
    --cpus) cpus=${2:-}; shift 2 ;;
    --mem) mem=${2:-}; shift 2 ;;
    --cwd) cwd=${2:-}; shift 2 ;;
    --rw) rw_dirs+=("${2:-}"); shift 2 ;;
    --env) envs+=("${2:-}"); shift 2 ;;
    --timeout) timeout=${2:-}; shift 2 ;;
    --tcg-thread) tcg_thread=${2:-}; shift 2 ;;
    --no-kvm-pin) kvm_pin=0; shift ;;
    --cache) cache=${2:-}; shift 2 ;;
    --verbose) verbose=1; shift ;;
    --quiet) quiet=1; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; break ;;
    -*) die "unknown option $1 (--help lists them)" ;;
    *) break ;;
  esac
done
[[ $# -gt 0 ]] || die "no command given (--help)"
[[ $cpus =~ ^[1-9][0-9]*$ ]] || die "--cpus wants a positive number, not '$cpus'"
[[ $timeout =~ ^[1-9][0-9]*$ ]] || die "--timeout wants a positive number of seconds, not '$timeout'"
[[ $tcg_thread == single || $tcg_thread == multi ]] || die "--tcg-thread is single or multi"
[[ ${#rw_dirs[@]} -le 8 ]] || die "at most 8 --rw folders"
for i in "${!rw_dirs[@]}"; do
  d=$(realpath -e -- "${rw_dirs[i]}" 2>/dev/null) || die "--rw ${rw_dirs[i]}: no such folder"
  [[ -d $d && $d != / ]] || die "--rw $d: not a folder other than /"
  rw_dirs[i]=$d
done
for e in "${envs[@]}"; do
  [[ $e =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "--env '$e' is not NAME=VALUE"
done
cwd=$(realpath -e -- "$cwd" 2>/dev/null) || die "--cwd: no such folder"
[[ $EUID == 0 ]] || die "must run as root (QEMU shares the host root over 9p with its owners)"
command -v qemu-system-x86_64 >/dev/null ||
  die "qemu-system-x86_64 is missing (Debian package qemu-system-x86; scripts/setup.sh --nested installs it)"

boot=$(bash "$here/kernel.sh" "$cache") || exit 125

run=$(mktemp -d /tmp/nested-kvm.XXXXXX)
ctl=$run/ctl
mkdir "$ctl"
qemu_pid='' watch_pid='' tail_pid=''
cleanup() {
  local p
  for p in $qemu_pid $watch_pid $tail_pid; do kill "$p" 2>/dev/null || true; done
  rm -rf "$run"
}
trap cleanup EXIT
trap 'echo "nested-kvm: interrupted" >&2; exit 130' INT
trap 'echo "nested-kvm: terminated" >&2; exit 143' TERM HUP

# What init.sh reads (sourced by busybox sh: printf %q of plain paths is POSIX-safe).
# Host folders under /tmp or /var/tmp that the VM's own would hide: the command's folder and
# this project's tree (the command may be a script of it) and ../shared beside it.
keep_dirs=()
for d in "$cwd" "$root" "$(dirname "$root")/shared"; do
  [[ -d $d ]] || continue
  case $d in /tmp/* | /var/tmp/*) keep_dirs+=("$d") ;; esac
done
keep_srcs=()
for d in "${keep_dirs[@]}"; do keep_srcs+=("$(realpath -e -- "$d")"); done  # a symlink's target
{
  printf 'KVM_PIN=%q\nRW_COUNT=%q\nKEEP_COUNT=%q\n' "$kvm_pin" "${#rw_dirs[@]}" "${#keep_dirs[@]}"
  for i in "${!keep_dirs[@]}"; do
    printf 'KEEP_DIR_%d=%q\nKEEP_SRC_%d=%q\n' "$i" "${keep_dirs[i]}" "$i" "${keep_srcs[i]}"
  done
  for i in "${!rw_dirs[@]}"; do printf 'RW_DIR_%d=%q\n' "$i" "${rw_dirs[i]}"; done
} >"$ctl/run.conf"
cp "$here/kvm_pin.py" "$ctl/"
{
  echo '#!/bin/bash'
  for e in "${envs[@]}"; do printf 'export %q\n' "$e"; done
  printf 'cd -- %q || exit 125\n' "$cwd"
  printf 'exec'
  printf ' %q' "$@"
  printf '\n'
} >"$ctl/cmd.sh"

shares=(
  -virtfs "local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap"
  -virtfs "local,path=$ctl,mount_tag=ctl,security_model=passthrough"
)
for i in "${!rw_dirs[@]}"; do
  shares+=(-virtfs "local,path=${rw_dirs[i]},mount_tag=rw$i,security_model=passthrough,multidevs=remap")
done
loglevel=4
[[ $verbose == 1 ]] && loglevel=7
qemu=(
  qemu-system-x86_64 -accel "tcg,thread=$tcg_thread" -machine q35 -cpu max
  -smp "$cpus" -m "$mem" -nographic -nodefaults -no-reboot
  -kernel "$boot/vmlinuz" -initrd "$boot/initramfs.cpio.gz"
  -append "console=ttyS0 rdinit=/init panic=-1 loglevel=$loglevel mitigations=off"
  -serial "file:$run/console.log"
  -chardev stdio,id=out -serial chardev:out
  "${shares[@]}"
)
say "booting Debian's $(cat "$boot/kernel-release") under QEMU TCG (emulated, so slower than" \
  "KVM on hardware): $cpus CPUs, $mem, timeout ${timeout}s"

: >"$run/console.log"
start=$(date +%s.%N)
if [[ $verbose == 1 ]]; then
  tail -n +1 -f "$run/console.log" >&2 &
  tail_pid=$!
fi
timeout -k 10 "$timeout" "${qemu[@]}" </dev/null &
qemu_pid=$!
# A guest kernel that reports a soft lockup, an RCU stall or a task blocked for minutes does not
# recover (seen with --tcg-thread multi: docs/hosts.md): stop it now rather than at the timeout.
lockup='BUG: soft lockup|rcu: INFO: rcu_[a-z]+ (detected stalls|self-detected stall)|INFO: task .* blocked for more than'
(
  while kill -0 "$qemu_pid" 2>/dev/null; do
    sleep 2
    if grep -a -m1 -E "$lockup" "$run/console.log" >"$run/lockup" 2>/dev/null; then
      kill "$qemu_pid" 2>/dev/null
      exit 0
    fi
  done
  rm -f "$run/lockup"
) &
watch_pid=$!
set +e
wait "$qemu_pid"
qemu_status=$?
set -e
qemu_pid=''
kill "$watch_pid" 2>/dev/null || true
wait "$watch_pid" 2>/dev/null || true
watch_pid=''
if [[ -n $tail_pid ]]; then
  kill "$tail_pid" 2>/dev/null || true
  tail_pid=''
fi
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
elapsed=$(seconds "$start" "$(date +%s.%N)")

console_tail() {
  [[ $verbose == 0 && -s $run/console.log ]] || return 0
  echo "nested-kvm: the VM's console, last $1 lines:" >&2
  tail -n "$1" "$run/console.log" | sed 's/^/  | /' >&2
}
if [[ -f $ctl/kvm-info ]]; then
  say "VM: $(tr '\n' ' ' <"$ctl/kvm-info")"
fi
if [[ -f $ctl/status ]]; then
  status=$(cat "$ctl/status")
  boot_s=$(awk '{ print $1 }' "$ctl/started")
  cmd_s=$(awk -v b="$boot_s" '{ printf "%.1f", $1 - b }' "$ctl/finished" 2>/dev/null || echo '?')
  say "command exited with status $status after ${cmd_s}s (VM boot ${boot_s}s, ${elapsed}s in all)"
  exit "$status"
fi
if [[ -s $run/lockup ]]; then
  echo "nested-kvm: the VM's kernel locked up after ${elapsed}s: $(cat "$run/lockup")" >&2
  console_tail 30
  exit 125
fi
if [[ $qemu_status == 124 || $qemu_status == 137 ]]; then
  echo "nested-kvm: timed out after ${timeout}s; the command had$([[ -f $ctl/started ]] || echo ' not') started" >&2
  console_tail 20
  exit 124
fi
if [[ -f $ctl/failed ]]; then
  echo "nested-kvm: the VM could not be set up: $(cat "$ctl/failed")" >&2
else
  echo "nested-kvm: QEMU exited with status $qemu_status before the command finished" >&2
fi
console_tail 40
exit 125
