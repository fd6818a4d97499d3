#include "vmm/kvm/kvm_host.h"

#include <cpuid.h>
#include <sys/stat.h>

#include <cstring>

#include "absl/strings/str_format.h"

namespace activemm {
namespace {

constexpr std::string_view kTcgSignature = "TCGTCGTCGTCG";

// CPUID.1:ECX bit 31 is reserved for hypervisors to set (SDM vol. 2A, CPUID, "Not Used"; Linux
// X86_FEATURE_HYPERVISOR), and leaf 0x40000000 is where they name themselves.
constexpr uint32_t kCpuidHypervisorBit = 1u << 31;
constexpr uint32_t kCpuidHypervisorBase = 0x40000000;

// The signatures Linux's arch/x86/kernel/cpu/hypervisor.c and its detectors know, plus QEMU's
// own under TCG and the one KVM gives its Hyper-V interface.
struct KnownHypervisor {
  std::string_view signature;  // trailing NULs cut, as HypervisorSignature() returns it
  const char* name;
};
constexpr KnownHypervisor kKnownHypervisors[] = {
    {kTcgSignature, "QEMU TCG"},
    {"KVMKVMKVM", "KVM"},
    {"Linux KVM Hv", "KVM (Hyper-V interface)"},
    // Also what KVM shows when QEMU enables Hyper-V enlightenments (hv-vendor-id default).
    {"Microsoft Hv", "Hyper-V"},
    {"VMwareVMware", "VMware"},
    {"XenVMMXenVMM", "Xen"},
    {"VBoxVBoxVBox", "VirtualBox"},
    {" lrpepyh  vr", "Parallels"},
    {"bhyve bhyve ", "bhyve"},
    {"ACRNACRNACRN", "ACRN"},
    {"Jailhouse", "Jailhouse"},
    {" QNXQVMBSQG ", "QNX"},
};

// The module providing /dev/kvm, as /sys/module lists it ("" when none of them is loaded).
std::string ProbeProvider() {
  struct stat st;
  for (const char* m : {"kvm_intel", "kvm_amd", "kvm_pvm"}) {
    if (stat(absl::StrFormat("/sys/module/%s", m).c_str(), &st) == 0) return m;
  }
  return "";
}

}  // namespace

const char* KvmHostKindName(KvmHostKind kind) {
  switch (kind) {
    case KvmHostKind::kHardware:
      return "hardware";
    case KvmHostKind::kSoftware:
      return "software";
    case KvmHostKind::kNestedTcg:
      return "nested-tcg";
    case KvmHostKind::kNested:
      return "nested";
  }
  return "?";
}

std::string HypervisorSignature(uint32_t ebx, uint32_t ecx, uint32_t edx) {
  char raw[12];
  std::memcpy(raw, &ebx, 4);
  std::memcpy(raw + 4, &ecx, 4);
  std::memcpy(raw + 8, &edx, 4);
  size_t n = sizeof raw;
  while (n > 0 && raw[n - 1] == '\0') --n;
  std::string s(raw, n);
  for (char& c : s) {
    if (c < 0x20 || c > 0x7e) c = '?';
  }
  return s;
}

std::string HypervisorName(std::string_view signature) {
  if (signature.empty()) return "an unnamed hypervisor";
  for (const KnownHypervisor& h : kKnownHypervisors) {
    if (signature == h.signature) return h.name;
  }
  return absl::StrFormat("hypervisor \"%s\"", signature);
}

KvmHost ClassifyKvmHost(std::string_view provider, bool hypervisor_bit, std::string_view signature,
                        bool pcid, int api_version) {
  KvmHost h;
  h.provider = std::string(provider);
  h.under_hypervisor = hypervisor_bit;
  h.hypervisor = hypervisor_bit ? std::string(signature) : "";
  h.pcid = pcid;
  h.api_version = api_version;
  if (provider == "kvm_pvm") {
    // PVM needs no VMX/SVM, so where it runs does not change how: it is software either way.
    h.kind = KvmHostKind::kSoftware;
  } else if (!hypervisor_bit) {
    h.kind = KvmHostKind::kHardware;
  } else if (h.hypervisor == kTcgSignature) {
    h.kind = KvmHostKind::kNestedTcg;
  } else {
    h.kind = KvmHostKind::kNested;
  }
  return h;
}

std::string KvmHost::Summary() const {
  const std::string module = provider.empty() ? "module unknown" : provider;
  const std::string where =
      under_hypervisor ? "under " + HypervisorName(hypervisor) : std::string("on bare metal");
  std::string kind_text;
  switch (kind) {
    case KvmHostKind::kHardware:
      kind_text = absl::StrFormat("hardware KVM (%s) %s", module, where);
      break;
    case KvmHostKind::kSoftware:
      kind_text = absl::StrFormat("software KVM (%s, ring 0 emulated) %s", module, where);
      break;
    case KvmHostKind::kNestedTcg: {
      const char* extension = provider == "kvm_intel" ? "VMX"
                              : provider == "kvm_amd" ? "SVM"
                                                      : "VMX/SVM";
      kind_text =
          absl::StrFormat("nested KVM under QEMU TCG (%s on emulated %s, slow)", module, extension);
      break;
    }
    case KvmHostKind::kNested:
      kind_text = absl::StrFormat("hardware KVM (%s) nested %s", module, where);
      break;
  }
  return absl::StrFormat("%s, KVM API %d, %s", kind_text, api_version,
                         pcid ? "PCID available" : "no PCID (modeled only)");
}

nlohmann::json KvmHost::Json() const {
  return {{"kind", KvmHostKindName(kind)},
          {"provider", provider},
          {"hypervisor", hypervisor},
          {"pcid", pcid},
          {"api", api_version},
          {"summary", Summary()}};
}

KvmHost ProbeKvmHost(const Kvm& kvm) {
  unsigned eax, ebx, ecx, edx;
  __cpuid(1, eax, ebx, ecx, edx);
  const bool hypervisor_bit = ecx & kCpuidHypervisorBit;
  std::string signature;
  if (hypervisor_bit) {
    // __get_cpuid() would refuse the leaf: it checks against the basic maximum leaf, which
    // says nothing about the hypervisor range.
    __cpuid(kCpuidHypervisorBase, eax, ebx, ecx, edx);
    signature = HypervisorSignature(ebx, ecx, edx);
  }
  return ClassifyKvmHost(ProbeProvider(), hypervisor_bit, signature, kvm.HasPcid(),
                         kvm.api_version());
}

}  // namespace activemm
