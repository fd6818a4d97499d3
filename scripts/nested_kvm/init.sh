#!/bin/busybox sh
# PID 1 of the nested-KVM VM (scripts/nested_kvm/run.sh). Loads virtio 9p and kvm_amd, mounts
# the host's root read-only with the caller's writable folders on top, chroots into it and runs
# /ctl/cmd.sh there. The command's output goes to the second serial port, which run.sh streams;
# its exit status goes to /ctl/status. Whatever fails is written to /ctl/failed, then the VM
# powers off: run.sh turns that into exit status 125 with the reason.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1

ctl_mounted=0
fail() {
  echo "nested-kvm init: $*"
  dmesg | tail -n 20
  if [ "$ctl_mounted" = 1 ]; then echo "$*" >/ctl/failed; sync; fi
  poweroff -f
  sleep 30
}

for m in $(cat /modules/base.order); do insmod "/modules/$m.ko" || fail "insmod $m"; done
p9="trans=virtio,version=9p2000.L,msize=524288"
mount -t 9p -o "$p9,cache=none" ctl /ctl || fail "mounting the control share"
ctl_mounted=1
. /ctl/run.conf

# KVM: kvm_amd on QEMU's emulated SVM with nested paging. A module that fails to load is
# reported with the kernel's own words.
for m in $(cat /modules/kvm.order); do
  insmod "/modules/$m.ko" || fail "insmod $m: $(dmesg | grep -i -E 'kvm|svm' | tail -n 1)"
done
if [ ! -c /dev/kvm ]; then
  [ -r /sys/class/misc/kvm/dev ] || fail "kvm_amd loaded but there is no /dev/kvm"
  IFS=: read major minor </sys/class/misc/kvm/dev
  mknod -m 0666 /dev/kvm c "$major" "$minor"
fi
{
  echo "kernel=$(uname -r)"
  echo "cpu_flags=$(grep -m1 '^flags' /proc/cpuinfo | grep -o -w -E 'svm|npt|pcid|invpcid|x2apic' | tr '\n' ' ')"
  for p in npt nested avic; do echo "kvm_amd.$p=$(cat /sys/module/kvm_amd/parameters/$p)"; done
} >/ctl/kvm-info

# The host's root, read-only, with fresh kernel filesystems and the writable folders.
r=/root
mount -t 9p -o "$p9,cache=loose,ro" hostroot $r || fail "mounting the host root"
mount -t proc proc $r/proc || fail "mounting $r/proc"
mount -t sysfs sysfs $r/sys || fail "mounting $r/sys"
mount -t devtmpfs devtmpfs $r/dev || fail "mounting $r/dev"
mkdir -p $r/dev/pts $r/dev/shm
mount -t devpts devpts $r/dev/pts
mount -t tmpfs -o mode=1777 tmpfs $r/dev/shm
mount -t tmpfs -o mode=755 tmpfs $r/run || fail "mounting $r/run"
# The VM's /tmp and /var/tmp hide the host's: folders the command needs from there (its cwd,
# the project tree, a clone in /tmp) are held aside and bound back, read-only, on top.
i=0
while [ "$i" -lt "$KEEP_COUNT" ]; do
  eval "src=\$KEEP_SRC_$i"
  mkdir -p /held/$i
  mount --bind "$r$src" /held/$i || fail "holding $src"
  i=$((i + 1))
done
mount -t tmpfs -o mode=1777 tmpfs $r/tmp || fail "mounting $r/tmp"
mount -t tmpfs -o mode=1777 tmpfs $r/var/tmp || fail "mounting $r/var/tmp"
i=0
while [ "$i" -lt "$KEEP_COUNT" ]; do
  eval "dir=\$KEEP_DIR_$i"
  mkdir -p "$r$dir"
  mount --bind /held/$i "$r$dir" || fail "binding $dir back"
  i=$((i + 1))
done
mkdir -p $r/run/nested-kvm
mount -o bind /ctl $r/run/nested-kvm
i=0
while [ "$i" -lt "$RW_COUNT" ]; do
  eval "dir=\$RW_DIR_$i"
  mkdir -p "$r$dir" 2>/dev/null  # under the VM's own /tmp, the folder is not there yet
  mount -t 9p -o "$p9,cache=mmap" "rw$i" "$r$dir" || fail "mounting $dir writable"
  i=$((i + 1))
done

# The KVM pin: one idle VM held open for the whole run. KVM flips static keys (preempt
# notifiers in the scheduler) and enables SVM on every CPU when the first VM is created and
# undoes it when the last one goes; text-patching those keys under TCG has hung guest kernels
# (soft lockups in __schedule). Held open, they flip once per boot instead of once per test.
if [ "$KVM_PIN" = 1 ]; then
  chroot $r /usr/bin/python3 /run/nested-kvm/kvm_pin.py </dev/null >/ctl/kvm-pin.log 2>&1 &
  n=0
  while [ ! -e /ctl/kvm-pin-ready ] && [ "$n" -lt 300 ] && kill -0 $! 2>/dev/null; do
    usleep 100000
    n=$((n + 1))
  done
  [ -e /ctl/kvm-pin-ready ] || fail "the KVM pin did not start: $(cat /ctl/kvm-pin.log)"
fi

stty -F /dev/ttyS1 raw -echo
cat /proc/uptime >/ctl/started
# stdin /dev/null; stdout and stderr one stream through a pipe, as in CI (isatty() false).
# The host root is read-only here, so per-user configuration and caches (matplotlib's) go to
# the VM's own /tmp.
{
  chroot $r /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root USER=root LOGNAME=root LANG=C.UTF-8 TERM=dumb ACTIVEMM_NESTED_KVM=1 \
    XDG_CONFIG_HOME=/tmp/.config XDG_CACHE_HOME=/tmp/.cache \
    /bin/bash /run/nested-kvm/cmd.sh </dev/null
  echo "$?" >/ctl/status
} 2>&1 | cat >/dev/ttyS1
cat /proc/uptime >/ctl/finished
sync
poweroff -f
sleep 30
