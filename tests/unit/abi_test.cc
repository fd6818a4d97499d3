// Runtime checks of shared/abi.h that matter to users of the ABI (the header already
// static_asserts sizes and offsets).
#include "shared/abi.h"

#include <stdint.h>

#include <cstring>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "gtest/gtest.h"
#include "shared/abi_asm.h"

namespace activemm::abi {
namespace {

// ---- Every struct crossing the boundary can be copied byte for byte ------------------------

template <typename T>
class AbiStructTest : public ::testing::Test {};

using AbiStructs = ::testing::Types<GuestImageHeader, BootParams, GuestInfo, FaultReport,
                                    PanicReport, SelftestReport, CpuMailbox>;
TYPED_TEST_SUITE(AbiStructTest, AbiStructs);

TYPED_TEST(AbiStructTest, StandardLayoutAndTriviallyCopyable) {
  EXPECT_TRUE(std::is_standard_layout_v<TypeParam>);
  EXPECT_TRUE(std::is_trivially_copyable_v<TypeParam>);
  EXPECT_TRUE(std::has_unique_object_representations_v<TypeParam>)
      << "padding bytes would carry stale data across the boundary";
  EXPECT_EQ(sizeof(TypeParam) % 8, 0u);
  EXPECT_LE(alignof(TypeParam), 8u);
}

// ---- Guest physical layout -------------------------------------------------------------------

TEST(AbiLayoutTest, MailboxesLieBelowTheImageAndDoNotOverlap) {
  EXPECT_EQ(MailboxPa(0), kMailboxPa);
  EXPECT_LT(MailboxPa(kMaxCpus - 1), kImageLoadPa);
  EXPECT_LE(MailboxPa(kMaxCpus - 1) + kMailboxSize, kImageLoadPa);
  EXPECT_LE(sizeof(CpuMailbox), kMailboxSize);
  for (uint32_t cpu = 0; cpu < kMaxCpus; ++cpu) {
    EXPECT_EQ(MailboxPa(cpu) % 0x1000, 0u) << cpu;
    if (cpu > 0) {
      EXPECT_GE(MailboxPa(cpu), MailboxPa(cpu - 1) + sizeof(CpuMailbox)) << cpu;
    }
  }
}

struct Region {
  const char* name;
  uint64_t start;
  uint64_t size;
};

TEST(AbiLayoutTest, FixedRegionsDoNotOverlap) {
  const std::vector<Region> regions = {
      {"BootParams", kBootParamsPa, 0x1000},
      {"boot tables", kBootTablesPa, kBootTablesPages * 0x1000},
      {"GuestInfo", kGuestInfoPa, sizeof(GuestInfo)},
      {"mailboxes", kMailboxPa, kMaxCpus * kMailboxSize},
  };
  EXPECT_LE(sizeof(BootParams), 0x1000u);
  for (const Region& r : regions) {
    SCOPED_TRACE(r.name);
    EXPECT_GT(r.start, 0u) << "physical 0 stays unused";
    EXPECT_EQ(r.start % 0x1000, 0u);
    EXPECT_LE(r.start + r.size, kImageLoadPa);
    for (const Region& o : regions) {
      if (&o == &r) continue;
      EXPECT_TRUE(r.start + r.size <= o.start || o.start + o.size <= r.start) << "and " << o.name;
    }
  }
}

TEST(AbiLayoutTest, ImageAndMemoryLimits) {
  EXPECT_EQ(kImageLoadPa % (2ull << 20), 0u);
  EXPECT_LT(kImageLoadPa + kBootScratchBytes, kMinMemBytes);
  EXPECT_LE(kMinMemBytes, kDefaultMemBytes);
  EXPECT_LE(kDefaultMemBytes, kMaxMemBytes);
  EXPECT_LE(kMaxMemBytes, 0xfee00000u);  // below the local APIC
}

// ---- Values both sides compute ------------------------------------------------------------

TEST(AbiValuesTest, SelftestSeedAndUserPatternDifferPerCpu) {
  std::set<uint64_t> seeds;
  std::set<uint64_t> patterns;
  for (uint32_t cpu = 0; cpu < kMaxCpus; ++cpu) {
    seeds.insert(SelftestSeed(cpu));
    patterns.insert(UserPattern(SelftestSeed(cpu), kUserDataVa));
  }
  EXPECT_EQ(seeds.size(), kMaxCpus);
  EXPECT_EQ(patterns.size(), kMaxCpus);
  EXPECT_NE(SelftestSeed(0), 0u);
  // The pattern also differs per address, and the host can undo it.
  EXPECT_NE(UserPattern(SelftestSeed(1), kUserDataVa),
            UserPattern(SelftestSeed(1), kUserDataVa + 8));
  EXPECT_EQ(UserPattern(SelftestSeed(5), kUserDataVa + 0x1238) ^ (kUserDataVa + 0x1238),
            SelftestSeed(5));
}

TEST(AbiValuesTest, ConstantsMatchTheAssemblyMacros) {
  EXPECT_EQ(kAbiVersion, uint32_t{ACTIVEMM_ABI_VERSION});
  EXPECT_EQ(kImageMagic, uint64_t{ACTIVEMM_IMAGE_MAGIC});
  EXPECT_EQ(kImageLoadPa, uint64_t{ACTIVEMM_IMAGE_LOAD_PA});
  EXPECT_EQ(kKernelTextBase, uint64_t{ACTIVEMM_KERNEL_TEXT_BASE});
  EXPECT_EQ(kHypercallPort, ACTIVEMM_HYPERCALL_PORT);
}

TEST(AbiValuesTest, MagicsSpellTheirNamesInMemory) {
  char image[9] = {};
  std::memcpy(image, &kImageMagic, 8);
  EXPECT_EQ(std::string(image), "AMMGUEST");
  char boot[9] = {};
  std::memcpy(boot, &kBootMagic, 8);
  EXPECT_EQ(std::string(boot), "AMMBOOT");
}

TEST(AbiValuesTest, VirtualLayout) {
  EXPECT_EQ(kDirectMapBase >> 39 & 0x1ff, 273u);
  EXPECT_GE(static_cast<int>(kDirectMapBase >> 39 & 0x1ff), kFirstKernelPml4Index);
  EXPECT_GE(static_cast<int>(kKernelTextBase >> 39 & 0x1ff), kFirstKernelPml4Index);
  EXPECT_LT(kUserStackTopVa, 1ull << 47);
  EXPECT_LT(kUserTextVa, kUserDataVa);
  EXPECT_LT(kUserDataVa, kUserStackTopVa);
}

}  // namespace
}  // namespace activemm::abi
