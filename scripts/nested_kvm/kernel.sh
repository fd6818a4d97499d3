#!/usr/bin/env bash
# Fetches Debian's kernel for the nested-KVM VM into a cache folder and builds the boot files
# from it: prints the folder holding `vmlinuz` and `initramfs.cpio.gz` (scripts/nested_kvm/run.sh).
#
#   kernel.sh CACHE_DIR
#
# The kernel package (linux-image-amd64's dependency, or $ACTIVEMM_NESTED_KERNEL_PKG) is
# fetched with `apt-get download` and unpacked with `dpkg-deb -x`: never installed, so the
# host's own kernel and boot loader are untouched. The initramfs holds busybox, this folder's
# init.sh and the modules the VM needs (virtio 9p, kvm_amd), decompressed and in load order.
# It is rebuilt when init.sh changes. A half-built cache is never used: each step writes to a
# temporary name and renames.
#
# Exit status: 0, or 125 with one line saying what could not be had.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() { echo "nested-kvm: $*" >&2; exit 125; }
[[ $# == 1 ]] || die "usage: kernel.sh CACHE_DIR"
cache=$1
mkdir -p "$cache" || die "cannot create the kernel cache $cache"
cache=$(cd "$cache" && pwd)

for tool in dpkg-deb apt-get depmod gzip; do
  command -v "$tool" >/dev/null || die "$tool is missing (run scripts/setup.sh --nested)"
done
busybox=/bin/busybox
# grep reads the whole list (no -q): with pipefail, a grep that quits at the first match can
# kill busybox with SIGPIPE and fail the pipeline though insmod is there.
[[ -x $busybox ]] && "$busybox" --list 2>/dev/null | grep -x insmod >/dev/null ||
  die "$busybox (Debian package busybox-static) is missing (run scripts/setup.sh --nested)"

# The kernel package: the one linux-image-amd64 depends on, unless the caller names one.
pkg=${ACTIVEMM_NESTED_KERNEL_PKG:-}
if [[ -z $pkg ]]; then
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
    awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')
  [[ -n $pkg ]] || die "apt-cache knows no linux-image-amd64 (run apt-get update)"
fi
[[ $pkg =~ ^linux-image-[A-Za-z0-9.+-]+$ ]] || die "'$pkg' is not a kernel package name"

kdir=$cache/$pkg
if [[ ! -f $kdir/.unpacked ]]; then
  echo "nested-kvm: fetching $pkg (apt-get download) into $cache" >&2
  tmp=$(mktemp -d "$cache/.fetch.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  if ! (cd "$tmp" && apt-get download -q "$pkg" >download.log 2>&1); then
    die "apt-get download $pkg failed: $(grep -m1 -E '^E:' "$tmp/download.log" || tail -n1 "$tmp/download.log")"
  fi
  deb=$(compgen -G "$tmp/${pkg}_*.deb" | head -n1) || true
  [[ -n $deb ]] || die "apt-get download $pkg left no .deb"
  # Only the kernel image and its modules: firmware and docs are not needed.
  mkdir "$tmp/root"
  dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp/root" --wildcards './boot/vmlinuz-*' './lib/modules/*' ||
    die "unpacking $deb failed"
  rm -rf "$kdir"
  mv "$tmp/root" "$kdir"
  touch "$kdir/.unpacked"
  rm -rf "$tmp"
  trap - EXIT
fi

vmlinuz=$(compgen -G "$kdir/boot/vmlinuz-*" | sort -V | tail -n1) || true
[[ -n $vmlinuz ]] || die "$kdir has no boot/vmlinuz-*"
kver=${vmlinuz##*/vmlinuz-}
mods=$kdir/lib/modules/$kver
[[ -d $mods/kernel ]] || die "$kdir has no modules for $kver"
[[ -f $mods/modules.dep ]] || depmod -b "$kdir" "$kver" || die "depmod for $kver failed"

# The initramfs, rebuilt when init.sh or the module list changes.
# Two groups, loaded in this order: the shares first, so that a failure of kvm_amd can be
# reported through the control share.
base=(virtio_pci 9pnet_virtio 9p)
kvm=(kvm_amd)
stamp=$(cat "$here/init.sh" <(echo "${base[*]}" "${kvm[*]}" "$kver") | sha256sum | cut -c1-16)
boot=$cache/boot-$kver-$stamp
if [[ ! -f $boot/initramfs.cpio.gz ]]; then
  tmp=$(mktemp -d "$cache/.initramfs.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  tree=$tmp/tree
  mkdir -p "$tree"/{bin,dev,proc,sys,ctl,root,modules}
  cp "$busybox" "$tree/bin/busybox"
  cp "$here/init.sh" "$tree/init"
  chmod 755 "$tree/init"

  # modules.dep lists each module's dependencies, the ones to load first last; a module
  # built into this kernel has no line and needs no loading.
  declare -A loaded=()
  module_line() {  # the modules.dep line of module NAME (- and _ are the same), or ""
    local pattern=${1//_/[-_]}
    grep -E "(^|/)${pattern}\.ko(\.xz|\.zst|\.gz)?:" "$mods/modules.dep" | head -n1 || true
  }
  add_module() {  # GROUP RELATIVE_PATH: unpack it, once, and append it to GROUP's load order
    local group=$1 rel=$2 name=${2##*/}
    name=${name%%.ko*}
    name=${name//-/_}
    [[ -n ${loaded[$name]:-} ]] && return 0
    loaded[$name]=1
    case $rel in
      *.ko.xz) xz -dc "$mods/$rel" ;;
      *.ko.zst) zstd -qdc "$mods/$rel" ;;
      *.ko.gz) gzip -dc "$mods/$rel" ;;
      *) cat "$mods/$rel" ;;
    esac >"$tree/modules/$name.ko" || die "cannot decompress $rel"
    echo "$name" >>"$tree/modules/$group.order"
  }
  add_group() {  # GROUP MODULE...: each module after its dependencies
    local group=$1 m line deps i
    shift
    for m in "$@"; do
      line=$(module_line "$m")
      if [[ -z $line ]]; then
        grep -qE "/${m//_/[-_]}\.ko" "$mods/modules.builtin" 2>/dev/null && continue
        die "module $m is neither built into $kver nor in its modules.dep"
      fi
      read -r -a deps <<<"${line#*:}"
      for ((i = ${#deps[@]} - 1; i >= 0; i--)); do add_module "$group" "${deps[i]}"; done
      add_module "$group" "${line%%:*}"
    done
    touch "$tree/modules/$group.order"
  }
  add_group base "${base[@]}"
  add_group kvm "${kvm[@]}"

  (cd "$tree" && find . | "$busybox" cpio -o -H newc 2>/dev/null | gzip -1) >"$tmp/initramfs.cpio.gz" ||
    die "building the initramfs failed"
  cp "$vmlinuz" "$tmp/vmlinuz"
  echo "$kver" >"$tmp/kernel-release"
  rm -rf "$tree" "$cache"/boot-*
  mv "$tmp" "$boot"
  trap - EXIT
fi
echo "$boot"
