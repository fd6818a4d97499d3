// Which kind of KVM this process runs on, as every report names it: the module that provides
// /dev/kvm, whether it runs guests on VMX/SVM or in software, and the hypervisor, if any, that
// this host itself runs under. The kind explains the numbers: kvm_pvm emulates every ring-0
// guest instruction, and nested under QEMU TCG even VMX/SVM itself is emulated.
#ifndef ACTIVEMM_VMM_KVM_KVM_HOST_H_
#define ACTIVEMM_VMM_KVM_KVM_HOST_H_

#include <stdint.h>

#include <string>
#include <string_view>

#include "nlohmann/json.hpp"
#include "vmm/kvm/kvm.h"

namespace activemm {

enum class KvmHostKind {
  kHardware,   // kvm_intel / kvm_amd on bare metal: VMX or SVM in silicon
  kSoftware,   // kvm_pvm: no VMX/SVM; guest ring 0 is emulated (shadow paging)
  kNestedTcg,  // kvm_intel / kvm_amd inside QEMU TCG: VMX/SVM themselves emulated
  kNested,     // kvm_intel / kvm_amd inside another hypervisor: nested VMX/SVM
};

// "hardware", "software", "nested-tcg", "nested": the JSON names.
const char* KvmHostKindName(KvmHostKind kind);

// The vendor signature of CPUID leaf 0x40000000 from its EBX, ECX and EDX, with trailing NULs
// cut ("KVMKVMKVM\0\0\0" is "KVMKVMKVM") and other unprintable bytes shown as '?'.
std::string HypervisorSignature(uint32_t ebx, uint32_t ecx, uint32_t edx);

// A reader's name for a signature: "QEMU TCG", "KVM", "Hyper-V"...; an unknown one quoted, and
// "" (a hypervisor bit without a signature) "an unnamed hypervisor".
std::string HypervisorName(std::string_view signature);

struct KvmHost {
  KvmHostKind kind = KvmHostKind::kHardware;
  std::string provider;           // kvm_intel, kvm_amd or kvm_pvm; "" when none is loaded
  bool under_hypervisor = false;  // this host's CPUID.1:ECX.HYPERVISOR (bit 31)
  std::string hypervisor;         // then its HypervisorSignature(); "" otherwise
  bool pcid = false;              // KVM offers PCID to guests: real PCIDs, else modeled only
  int api_version = 0;

  // The "host:" line of every report, e.g. "nested KVM under QEMU TCG (kvm_amd on emulated
  // SVM, slow), KVM API 12, no PCID (modeled only)".
  std::string Summary() const;
  // The "host" object of every --json report (docs/report.md).
  nlohmann::json Json() const;
};

// The classification, pure: the provider module decides software against hardware-assisted
// KVM; for the latter, the hypervisor this host runs under decides bare metal, nested under
// QEMU TCG or nested under another hypervisor. An unknown provider is taken as
// hardware-assisted (upstream has no other kind). `signature` is HypervisorSignature()'s.
KvmHost ClassifyKvmHost(std::string_view provider, bool hypervisor_bit, std::string_view signature,
                        bool pcid, int api_version);

// Probes this machine: /sys/module for the provider, CPUID in this process for the
// hypervisor, and `kvm`'s supported CPUID for PCID.
KvmHost ProbeKvmHost(const Kvm& kvm);

}  // namespace activemm

#endif  // ACTIVEMM_VMM_KVM_KVM_HOST_H_
