// machine.txt: what capture records of the traced machine and what replay reads back.
#include "vmm/replay/machine_facts.h"

#include "gtest/gtest.h"

namespace activemm {
namespace {

constexpr const char* kCpuinfoPcid =
    "processor\t: 0\nflags\t\t: fpu vme pge pse pcid invpcid sse\n\n"
    "processor\t: 1\nflags\t\t: fpu vme pge pse pcid invpcid sse\n";
constexpr const char* kCpuinfoNoPcid = "processor\t: 0\nflags\t\t: fpu vme pge pse sse\n";

TEST(MachineFactsTest, ACpuWithPcidAndAPlainBootUsesIt) {
  const MachineFacts m = ParseMachineFacts(FormatMachineFacts(
      "6.18.44", "x86_64", 2, kCpuinfoPcid, "BOOT_IMAGE=/vmlinuz root=/dev/vda1 quiet",
      "CONFIG_X86_64=y\nCONFIG_MMU_LAZY_TLB_REFCOUNT=y\n"));
  EXPECT_TRUE(m.present);
  EXPECT_EQ(m.bad_lines, 0);
  EXPECT_EQ(m.release, "6.18.44");
  EXPECT_EQ(m.cpus, 2);
  EXPECT_EQ(m.cpu_pcid, true);
  EXPECT_EQ(m.cpu_invpcid, true);
  EXPECT_EQ(m.boot_nopcid, false);
  EXPECT_EQ(m.kernel_pcid, true);
  EXPECT_EQ(m.lazy_tlb, "refcount");
}

TEST(MachineFactsTest, NoPcidFlagOrANopcidBootMeansTheKernelDidNotUseIt) {
  EXPECT_EQ(ParseMachineFacts(FormatMachineFacts("6.1.0", "", 8, kCpuinfoNoPcid, "quiet", ""))
                .kernel_pcid,
            false);
  const MachineFacts m =
      ParseMachineFacts(FormatMachineFacts("6.1.0", "", 8, kCpuinfoPcid, "quiet nopcid", ""));
  EXPECT_EQ(m.cpu_pcid, true);
  EXPECT_EQ(m.boot_nopcid, true);
  EXPECT_EQ(m.kernel_pcid, false);
  EXPECT_EQ(m.lazy_tlb, "");  // no kernel config found, not x86: unknown
  // "nopcid" as part of another word is not the option.
  EXPECT_EQ(ParseMachineFacts(FormatMachineFacts("r", "", 1, kCpuinfoPcid, "foo=nopcidx", ""))
                .kernel_pcid,
            true);
}

TEST(MachineFactsTest, AnX86KernelRefcountsWithoutItsConfig) {
  EXPECT_EQ(
      ParseMachineFacts(FormatMachineFacts("r", "x86_64", 1, kCpuinfoNoPcid, "", "")).lazy_tlb,
      "refcount");
}

TEST(MachineFactsTest, AShootdownKernelIsRecorded) {
  EXPECT_EQ(ParseMachineFacts(FormatMachineFacts("r", "", 1, kCpuinfoNoPcid, "",
                                                 "CONFIG_MMU_LAZY_TLB_SHOOTDOWN=y\n"))
                .lazy_tlb,
            "shootdown");
}

TEST(MachineFactsTest, BadLinesAreCountedAndTheRestKept) {
  const MachineFacts m = ParseMachineFacts(
      "# a comment\nkernel_pcid: maybe\ncpus: 0\nno colon here\ncolour: blue\ncpu_pcid: no\n"
      "lazy_tlb: shootdown\n");
  EXPECT_EQ(m.bad_lines, 4);
  EXPECT_FALSE(m.kernel_pcid.has_value());
  EXPECT_EQ(m.cpus, 0);
  EXPECT_EQ(m.cpu_pcid, false);
  EXPECT_EQ(m.lazy_tlb, "shootdown");
}

}  // namespace
}  // namespace activemm
