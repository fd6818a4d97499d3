// choose_new_asid and the CR3 encoding (shared/asid.h), as the guest runs them on its switch
// path: hits, misses, round-robin eviction, the wrap from the last slot to slot 0.
#include "shared/asid.h"

#include "gtest/gtest.h"

namespace activemm {
namespace {

// A CPU right after initialize_tlbstate_and_flush: init_mm (ctx_id 1) in slot 0, next_asid 1.
abi::CpuMmState FreshCpu() {
  abi::CpuMmState s{};
  s.ctxs[0] = {1, 0};
  s.next_asid = 1;
  return s;
}

// What switch_mm_irqs_off does with the answer when it flushes.
NewAsid Load(abi::CpuMmState& s, uint64_t ctx_id, uint64_t tlb_gen, uint32_t asids = 6) {
  NewAsid ns = ChooseNewAsid(s, asids, abi::PcidMode::kModeled, ctx_id, tlb_gen);
  if (ns.need_flush) s.ctxs[ns.asid] = {ctx_id, tlb_gen};
  return ns;
}

TEST(ChooseNewAsidTest, MissesTakeSlotsRoundRobinFromOne) {
  abi::CpuMmState s = FreshCpu();
  for (uint16_t want = 1; want <= 5; ++want) {
    NewAsid ns = Load(s, 100 + want, 0);
    EXPECT_EQ(ns.asid, want);
    EXPECT_TRUE(ns.need_flush);
  }
  EXPECT_EQ(s.next_asid, 6);
}

TEST(ChooseNewAsidTest, TheSixthMissWrapsToSlotZeroAndEvictsInitMm) {
  abi::CpuMmState s = FreshCpu();
  for (int i = 1; i <= 5; ++i) Load(s, 100 + i, 0);
  NewAsid ns = Load(s, 106, 0);
  EXPECT_EQ(ns.asid, 0);
  EXPECT_TRUE(ns.need_flush);
  EXPECT_EQ(s.next_asid, 1);
  EXPECT_EQ(s.ctxs[0].ctx_id, 106u);
  // The next miss evicts slot 1 (the oldest), and init_mm now misses too.
  EXPECT_EQ(Load(s, 107, 0).asid, 1);
  EXPECT_EQ(Load(s, 1, 0).asid, 2);
}

TEST(ChooseNewAsidTest, AHitKeepsTheTlbUnlessItsGenerationIsBehind) {
  abi::CpuMmState s = FreshCpu();
  Load(s, 200, 3);
  NewAsid same = Load(s, 200, 3);
  EXPECT_EQ(same.asid, 1);
  EXPECT_FALSE(same.need_flush);
  NewAsid behind = Load(s, 200, 4);
  EXPECT_EQ(behind.asid, 1);
  EXPECT_TRUE(behind.need_flush);
  EXPECT_EQ(s.next_asid, 2);  // hits allocate nothing
}

TEST(ChooseNewAsidTest, WithoutPcidEverythingIsAsidZeroAndFlushes) {
  abi::CpuMmState s = FreshCpu();
  for (uint64_t ctx : {1, 200, 200}) {
    NewAsid ns = ChooseNewAsid(s, 6, abi::PcidMode::kOff, ctx, 0);
    EXPECT_EQ(ns.asid, 0);
    EXPECT_TRUE(ns.need_flush);
  }
  EXPECT_EQ(s.next_asid, 1);
}

TEST(ChooseNewAsidTest, FewerSlotsWrapSooner) {
  abi::CpuMmState s = FreshCpu();
  EXPECT_EQ(Load(s, 300, 0, /*asids=*/2).asid, 1);
  EXPECT_EQ(Load(s, 301, 0, 2).asid, 0);
  EXPECT_EQ(Load(s, 302, 0, 2).asid, 1);
  EXPECT_EQ(Load(s, 300, 0, 2).asid, 0);  // evicted earlier: a miss again
}

TEST(BuildCr3Test, RealPcidsCarryAsidPlusOneAndTheNoFlushBit) {
  const uint64_t pgd = 0x1234000;
  x86::Cr3 flush = BuildCr3(pgd, 0, abi::PcidMode::kHardware, true);
  EXPECT_EQ(flush.raw(), pgd | 1);
  x86::Cr3 keep = BuildCr3(pgd, 5, abi::PcidMode::kHardware, false);
  EXPECT_EQ(keep.raw(), pgd | 6 | (1ull << 63));
  EXPECT_EQ(keep.as_read_back().raw(), pgd | 6);
  EXPECT_EQ(keep.pcid(), 6);
  EXPECT_TRUE(keep.noflush());
}

TEST(BuildCr3Test, ModeledAndOffLoadAPlainRoot) {
  for (abi::PcidMode m : {abi::PcidMode::kModeled, abi::PcidMode::kOff}) {
    EXPECT_EQ(BuildCr3(0x5000, 3, m, false).raw(), 0x5000u);
    EXPECT_EQ(BuildCr3(0x5000, 3, m, true).raw(), 0x5000u);
  }
}

}  // namespace
}  // namespace activemm
