#!/usr/bin/env bash
# Exits 0 when this host's /dev/kvm opens read-write; otherwise prints why not, in a few
# words ("/dev/kvm does not exist"), and exits 1. scripts/test.sh and scripts/demo.sh use it to
# choose between running guests here and inside the nested-KVM VM (run.sh).
set -u
if [[ ! -e /dev/kvm ]]; then
  echo "/dev/kvm does not exist"
  exit 1
fi
why=$(/usr/bin/python3 - 2>&1 <<'PY'
import os
try:
    os.close(os.open("/dev/kvm", os.O_RDWR))
except OSError as e:
    print(f"/dev/kvm cannot be opened: {e.strerror}")
    raise SystemExit(1)
PY
) && exit 0
echo "$why"
exit 1
