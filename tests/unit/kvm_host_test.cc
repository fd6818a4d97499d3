// The host kind every report names: the classification from the provider module, this host's
// own CPUID hypervisor bit and signature, and PCID; the "host:" line and the JSON object.
#include "vmm/kvm/kvm_host.h"

#include <stdint.h>

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace activemm {
namespace {

// A register of CPUID.0x40000000 as the CPU returns it: four signature bytes, little-endian.
constexpr uint32_t Le(const char (&s)[5]) {
  return static_cast<uint8_t>(s[0]) | static_cast<uint8_t>(s[1]) << 8 |
         static_cast<uint8_t>(s[2]) << 16 | static_cast<uint32_t>(static_cast<uint8_t>(s[3])) << 24;
}

TEST(HypervisorSignatureTest, ReadsEbxEcxEdxInOrder) {
  EXPECT_EQ(HypervisorSignature(Le("TCGT"), Le("CGTC"), Le("GTCG")), "TCGTCGTCGTCG");
  EXPECT_EQ(HypervisorSignature(Le("Micr"), Le("osof"), Le("t Hv")), "Microsoft Hv");
}

TEST(HypervisorSignatureTest, CutsTrailingNulsAndMasksOtherUnprintableBytes) {
  // KVM's is "KVMKVMKVM\0\0\0" (Linux KVM_SIGNATURE).
  EXPECT_EQ(HypervisorSignature(Le("KVMK"), Le("VMKV"), Le("M\0\0\0")), "KVMKVMKVM");
  EXPECT_EQ(HypervisorSignature(0, 0, 0), "");
  EXPECT_EQ(HypervisorSignature(Le("AB\0C"),
                                Le("\x01"
                                   "DEF"),
                                Le("GHIJ")),
            "AB?C?DEFGHIJ");
}

TEST(HypervisorNameTest, NamesKnownSignaturesAndQuotesOthers) {
  EXPECT_EQ(HypervisorName("TCGTCGTCGTCG"), "QEMU TCG");
  EXPECT_EQ(HypervisorName("KVMKVMKVM"), "KVM");
  EXPECT_EQ(HypervisorName("Microsoft Hv"), "Hyper-V");
  EXPECT_EQ(HypervisorName("VMwareVMware"), "VMware");
  EXPECT_EQ(HypervisorName("XenVMMXenVMM"), "Xen");
  EXPECT_EQ(HypervisorName("bhyve bhyve "), "bhyve");
  EXPECT_EQ(HypervisorName("NotAKnownOne"), "hypervisor \"NotAKnownOne\"");
  EXPECT_EQ(HypervisorName(""), "an unnamed hypervisor");
}

// One row per kind: what the probes saw, what the host is, and the line reports print.
struct ClassifyCase {
  const char* name;
  const char* provider;
  bool hypervisor_bit;
  const char* signature;
  bool pcid;
  KvmHostKind kind;
  const char* summary;
};

const ClassifyCase kClassifyCases[] = {
    {"IntelOnBareMetal", "kvm_intel", false, "", true, KvmHostKind::kHardware,
     "hardware KVM (kvm_intel) on bare metal, KVM API 12, PCID available"},
    {"AmdOnBareMetal", "kvm_amd", false, "", false, KvmHostKind::kHardware,
     "hardware KVM (kvm_amd) on bare metal, KVM API 12, no PCID (modeled only)"},
    {"AmdUnderQemuTcg", "kvm_amd", true, "TCGTCGTCGTCG", false, KvmHostKind::kNestedTcg,
     "nested KVM under QEMU TCG (kvm_amd on emulated SVM, slow), KVM API 12, no PCID (modeled "
     "only)"},
    {"IntelUnderQemuTcg", "kvm_intel", true, "TCGTCGTCGTCG", false, KvmHostKind::kNestedTcg,
     "nested KVM under QEMU TCG (kvm_intel on emulated VMX, slow), KVM API 12, no PCID (modeled "
     "only)"},
    {"IntelUnderKvm", "kvm_intel", true, "KVMKVMKVM", true, KvmHostKind::kNested,
     "hardware KVM (kvm_intel) nested under KVM, KVM API 12, PCID available"},
    {"AmdUnderHyperV", "kvm_amd", true, "Microsoft Hv", true, KvmHostKind::kNested,
     "hardware KVM (kvm_amd) nested under Hyper-V, KVM API 12, PCID available"},
    {"IntelUnderUnknownHypervisor", "kvm_intel", true, "SomethingNew", false, KvmHostKind::kNested,
     "hardware KVM (kvm_intel) nested under hypervisor \"SomethingNew\", KVM API 12, no PCID "
     "(modeled only)"},
    {"IntelUnderUnsignedHypervisor", "kvm_intel", true, "", false, KvmHostKind::kNested,
     "hardware KVM (kvm_intel) nested under an unnamed hypervisor, KVM API 12, no PCID (modeled "
     "only)"},
    {"PvmUnderKvm", "kvm_pvm", true, "KVMKVMKVM", false, KvmHostKind::kSoftware,
     "software KVM (kvm_pvm, ring 0 emulated) under KVM, KVM API 12, no PCID (modeled only)"},
    // PVM needs no VMX/SVM: even under QEMU TCG it is the software kind, not nested.
    {"PvmUnderQemuTcg", "kvm_pvm", true, "TCGTCGTCGTCG", false, KvmHostKind::kSoftware,
     "software KVM (kvm_pvm, ring 0 emulated) under QEMU TCG, KVM API 12, no PCID (modeled "
     "only)"},
    {"PvmOnBareMetal", "kvm_pvm", false, "", true, KvmHostKind::kSoftware,
     "software KVM (kvm_pvm, ring 0 emulated) on bare metal, KVM API 12, PCID available"},
    {"UnknownProviderOnBareMetal", "", false, "", false, KvmHostKind::kHardware,
     "hardware KVM (module unknown) on bare metal, KVM API 12, no PCID (modeled only)"},
    {"UnknownProviderUnderQemuTcg", "", true, "TCGTCGTCGTCG", false, KvmHostKind::kNestedTcg,
     "nested KVM under QEMU TCG (module unknown on emulated VMX/SVM, slow), KVM API 12, no PCID "
     "(modeled only)"},
};

class ClassifyKvmHostTest : public ::testing::TestWithParam<ClassifyCase> {};

TEST_P(ClassifyKvmHostTest, KindFieldsAndSummary) {
  const ClassifyCase& c = GetParam();
  const KvmHost h = ClassifyKvmHost(c.provider, c.hypervisor_bit, c.signature, c.pcid, 12);
  EXPECT_EQ(h.kind, c.kind) << KvmHostKindName(h.kind);
  EXPECT_EQ(h.provider, c.provider);
  EXPECT_EQ(h.under_hypervisor, c.hypervisor_bit);
  EXPECT_EQ(h.hypervisor, c.signature);
  EXPECT_EQ(h.pcid, c.pcid);
  EXPECT_EQ(h.api_version, 12);
  EXPECT_EQ(h.Summary(), c.summary);
}

INSTANTIATE_TEST_SUITE_P(Kinds, ClassifyKvmHostTest, ::testing::ValuesIn(kClassifyCases),
                         [](const ::testing::TestParamInfo<ClassifyCase>& info) {
                           return std::string(info.param.name);
                         });

TEST(ClassifyKvmHostCpuidTest, SignatureWithoutTheHypervisorBitIsIgnored) {
  // Leaf 0x40000000 means nothing unless CPUID.1:ECX.HYPERVISOR says a hypervisor is there.
  const KvmHost h = ClassifyKvmHost("kvm_amd", false, "TCGTCGTCGTCG", false, 12);
  EXPECT_EQ(h.kind, KvmHostKind::kHardware);
  EXPECT_EQ(h.hypervisor, "");
}

TEST(KvmHostKindNameTest, JsonNames) {
  EXPECT_STREQ(KvmHostKindName(KvmHostKind::kHardware), "hardware");
  EXPECT_STREQ(KvmHostKindName(KvmHostKind::kSoftware), "software");
  EXPECT_STREQ(KvmHostKindName(KvmHostKind::kNestedTcg), "nested-tcg");
  EXPECT_STREQ(KvmHostKindName(KvmHostKind::kNested), "nested");
}

TEST(KvmHostJsonTest, HasEveryDocumentedFieldWithItsType) {
  const KvmHost h = ClassifyKvmHost("kvm_amd", true, "TCGTCGTCGTCG", false, 12);
  const nlohmann::json j = h.Json();
  EXPECT_EQ(j, nlohmann::json({{"kind", "nested-tcg"},
                               {"provider", "kvm_amd"},
                               {"hypervisor", "TCGTCGTCGTCG"},
                               {"pcid", false},
                               {"api", 12},
                               {"summary", h.Summary()}}));
  EXPECT_TRUE(j["pcid"].is_boolean());
  EXPECT_TRUE(j["api"].is_number_integer());
}

TEST(KvmHostJsonTest, BareMetalHasAnEmptyHypervisor) {
  const nlohmann::json j = ClassifyKvmHost("kvm_intel", false, "", true, 12).Json();
  EXPECT_EQ(j["kind"], "hardware");
  EXPECT_EQ(j["hypervisor"], "");
  EXPECT_EQ(j["pcid"], true);
}

}  // namespace
}  // namespace activemm
