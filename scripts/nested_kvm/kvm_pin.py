"""Holds one idle KVM VM open inside the nested-KVM VM for the whole run (scripts/nested_kvm/
init.sh says why). Its vCPU has an in-kernel local APIC that stays software-disabled, so the
static keys KVM counts per VM and per APIC (preempt notifiers, apic_sw_disabled,
apic_hw_disabled) never drop to zero between the tests' VMs. Standard library only; run by
Debian's /usr/bin/python3 from the host root."""

import fcntl
import os
import signal

KVM_CREATE_VM = 0xAE01
KVM_CREATE_VCPU = 0xAE41
KVM_CREATE_IRQCHIP = 0xAE60

kvm = os.open("/dev/kvm", os.O_RDWR)
vm = fcntl.ioctl(kvm, KVM_CREATE_VM, 0)
fcntl.ioctl(vm, KVM_CREATE_IRQCHIP, 0)
vcpu = fcntl.ioctl(vm, KVM_CREATE_VCPU, 0)
open("/run/nested-kvm/kvm-pin-ready", "w").close()
while True:
    signal.pause()
