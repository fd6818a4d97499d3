// PageTable<Mem> from shared/page_table.h over plain host memory, plus the x86 value types
// (Pte, Cr3) and address helpers it is built on.
#include "shared/page_table.h"

#include <stdint.h>

#include <limits>
#include <ostream>
#include <tuple>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shared/x86.h"

namespace activemm {
namespace {

using ::testing::ElementsAre;
using x86::Pte;

constexpr uint64_t kP = Pte::kPresent;
constexpr uint64_t kW = Pte::kWritable;
constexpr uint64_t kU = Pte::kUser;
constexpr uint64_t kNx = Pte::kNoExecute;
constexpr uint64_t k4K = x86::kPageSize;
constexpr uint64_t k2M = x86::kHugePageSize;
constexpr uint64_t k1G = 1ull << 30;
constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

// An arena of 4 KiB host pages standing in for guest physical memory: page i has physical
// address kBase + i * 4096. Pages are handed out in order by AllocTable.
class ArenaMem {
 public:
  static constexpr uint64_t kBase = 0x100000;

  explicit ArenaMem(size_t pages) : pages_(pages) {}

  uint64_t* Table(uint64_t pa) {
    if (pa < kBase || pa % k4K != 0) return nullptr;
    uint64_t index = (pa - kBase) / k4K;
    if (index >= pages_.size()) return nullptr;
    return pages_[index].e;
  }

  uint64_t AllocTable() {
    if (next_ == pages_.size()) return 0;
    for (uint64_t& e : pages_[next_].e) e = 0;
    return kBase + (next_++) * k4K;
  }

  size_t allocated() const { return next_; }
  uint64_t end_pa() const { return kBase + pages_.size() * k4K; }

 private:
  struct alignas(4096) Page {
    uint64_t e[x86::kEntriesPerTable];
  };
  std::vector<Page> pages_;
  size_t next_ = 0;
};

// A fresh root in an arena of `pages` pages.
class PageTableTest : public ::testing::Test {
 protected:
  explicit PageTableTest(size_t pages = 64) : mem_(pages), pt_(mem_, mem_.AllocTable()) {}

  // The raw entry `idx` of the table at `table_pa`.
  uint64_t& Entry(uint64_t table_pa, int idx) { return mem_.Table(table_pa)[idx]; }

  // Visits every leaf of the whole address space within `budget` entries: the walk's status and
  // the leaves it reached.
  std::pair<PtStatus, int> CountLeaves(uint64_t budget) {
    int leaves = 0;
    const PtStatus s = pt_.ForEachLeaf(0, kMax, budget, [&](uint64_t, Pte, int) {
      ++leaves;
      return true;
    });
    return {s, leaves};
  }

  // The table entries a walk of va passes through, from the PML4 entry down to `to_level`.
  std::vector<Pte> Path(uint64_t va, int to_level) {
    std::vector<Pte> path;
    uint64_t table = pt_.root();
    for (int level = 4; level >= to_level; --level) {
      Pte e(Entry(table, x86::TableIndex(va, level)));
      path.push_back(e);
      table = e.addr();
    }
    return path;
  }

  ArenaMem mem_;
  PageTable<ArenaMem> pt_;
};

// ---- Map + Walk ---------------------------------------------------------------------------

struct MapCase {
  const char* name;
  uint64_t va;
  uint64_t pa;
  uint64_t flags;
  uint64_t page_size;
  uint64_t probe_offset;  // Walk(va + probe_offset)
  friend std::ostream& operator<<(std::ostream& os, const MapCase& c) { return os << c.name; }
};

class MapWalkTest : public PageTableTest, public ::testing::WithParamInterface<MapCase> {};

TEST_P(MapWalkTest, WalkTranslatesWithinThePage) {
  const MapCase& c = GetParam();
  ASSERT_EQ(pt_.Map(c.va, c.pa, c.flags, c.page_size), PtStatus::kOk);

  WalkResult w = pt_.Walk(c.va + c.probe_offset);
  ASSERT_EQ(w.status, PtStatus::kOk);
  int level = c.page_size == k2M ? 2 : 1;
  EXPECT_EQ(w.level, level);
  EXPECT_EQ(w.pa, c.pa + c.probe_offset);
  EXPECT_EQ(w.leaf.addr(), c.pa);
  EXPECT_EQ(w.leaf.huge(), level == 2);
  EXPECT_EQ(w.leaf.raw(), c.pa | c.flags | kP | (level == 2 ? Pte::kHuge : 0));
  // entry_pa is the leaf's own slot: in the table the level above points to.
  std::vector<Pte> path = Path(c.va, level + 1);
  EXPECT_EQ(w.entry_pa, path.back().addr() + 8 * x86::TableIndex(c.va, level));

  // The first and last byte of the page translate too; the bytes around it do not.
  EXPECT_EQ(pt_.Walk(c.va).pa, c.pa);
  EXPECT_EQ(pt_.Walk(c.va + c.page_size - 1).pa, c.pa + c.page_size - 1);
  uint64_t next = c.va + c.page_size;  // may leave the canonical half (or wrap to 0)
  EXPECT_EQ(pt_.Walk(next).status,
            x86::IsCanonical(next) ? PtStatus::kNotMapped : PtStatus::kNotCanonical);
  if (c.va != 0) {
    EXPECT_EQ(pt_.Walk(c.va - 1).status, PtStatus::kNotMapped);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Pages, MapWalkTest,
    ::testing::Values(MapCase{"User4K", 0x400000, 0x5000, kW | kU, k4K, 0x123},
                      MapCase{"ReadOnlyNx4K", 0x10000000, 0x7000, kNx, k4K, 0xff8},
                      MapCase{"VaZero", 0, 0x3000, kW, k4K, 0},
                      MapCase{"TopOfUserHalf", 0x7ffffffff000, 0x9000, kW | kU, k4K, 0xfff},
                      MapCase{"KernelText4K", 0xffffffff80201000, 0x201000, kNx, k4K, 0x10},
                      MapCase{"LastPage", 0xfffffffffffff000, 0xa000, kW, k4K, 0x7},
                      MapCase{"DirectMap2M", 0xffff888000200000, 0x400000, kW | kNx, k2M, 0x12345},
                      MapCase{"User2M", 0x600000, 0x40000000, kW | kU, k2M, 0x1fffff},
                      MapCase{"KernelText2M", 0xffffffff80000000, 0, kW, k2M, 0x1000}),
    [](const ::testing::TestParamInfo<MapCase>& info) { return info.param.name; });

TEST_F(PageTableTest, HugeLeafBit12IsPatNotAddress) {
  // In a 2 MiB leaf bit 12 is PAT; the frame is the 2 MiB-aligned address without it.
  constexpr uint64_t kPat = 1ull << 12;
  ASSERT_EQ(pt_.Map(0x200000, 0x600000, kW | kPat, k2M), PtStatus::kOk);
  WalkResult w = pt_.Walk(0x200abc);
  ASSERT_EQ(w.status, PtStatus::kOk);
  EXPECT_EQ(w.level, 2);
  EXPECT_EQ(w.pa, 0x600abcu);
}

TEST_F(PageTableTest, TwoPagesShareIntermediateTables) {
  ASSERT_EQ(pt_.Map(0x400000, 0x5000, kW), PtStatus::kOk);
  size_t tables = mem_.allocated();
  EXPECT_EQ(tables, 4u);  // root, PDPT, PD, PT
  ASSERT_EQ(pt_.Map(0x401000, 0x6000, kW), PtStatus::kOk);
  EXPECT_EQ(mem_.allocated(), tables);
  EXPECT_EQ(pt_.Walk(0x400000).pa, 0x5000u);
  EXPECT_EQ(pt_.Walk(0x401000).pa, 0x6000u);
  EXPECT_EQ(pt_.Walk(0x400000).entry_pa + 8, pt_.Walk(0x401000).entry_pa);
}

TEST_F(PageTableTest, WalkOfEmptyTableIsNotMappedAtPml4) {
  WalkResult w = pt_.Walk(0xffffffff80000000);
  EXPECT_EQ(w.status, PtStatus::kNotMapped);
  EXPECT_EQ(w.level, 4);
  EXPECT_EQ(w.entry_pa, pt_.root() + 8 * 511);
}

// ---- Intermediate table permissions --------------------------------------------------------

TEST_F(PageTableTest, KernelLeafGetsSupervisorIntermediates) {
  ASSERT_EQ(pt_.Map(0xffffffff80200000, 0x200000, kW | kNx), PtStatus::kOk);
  for (Pte e : Path(0xffffffff80200000, 2)) {
    EXPECT_EQ(e.flags(), kP | kW) << std::hex << e.raw();
  }
}

TEST_F(PageTableTest, UserLeafGetsUserIntermediates) {
  ASSERT_EQ(pt_.Map(0x400000, 0x5000, kU), PtStatus::kOk);  // read-only user page
  for (Pte e : Path(0x400000, 2)) {
    EXPECT_EQ(e.flags(), kP | kW | kU) << std::hex << e.raw();
  }
  // The leaf keeps its own permissions: not writable.
  EXPECT_EQ(pt_.Walk(0x400000).leaf.flags(), kP | kU);
}

TEST_F(PageTableTest, UserLeafUpgradesExistingSupervisorIntermediates) {
  ASSERT_EQ(pt_.Map(0x400000, 0x5000, kW), PtStatus::kOk);  // supervisor page, user half
  for (Pte e : Path(0x400000, 2)) EXPECT_FALSE(e.user());
  ASSERT_EQ(pt_.Map(0x401000, 0x6000, kW | kU), PtStatus::kOk);
  for (Pte e : Path(0x401000, 2)) EXPECT_EQ(e.flags(), kP | kW | kU) << std::hex << e.raw();
  // The supervisor leaf stays supervisor.
  EXPECT_FALSE(pt_.Walk(0x400000).leaf.user());
  EXPECT_TRUE(pt_.Walk(0x401000).leaf.user());
}

// ---- Map errors ------------------------------------------------------------------------------

TEST_F(PageTableTest, MapOverPresentLeafIsAlreadyMapped) {
  ASSERT_EQ(pt_.Map(0x400000, 0x5000, kW), PtStatus::kOk);
  EXPECT_EQ(pt_.Map(0x400000, 0x6000, kW | kU), PtStatus::kAlreadyMapped);
  ASSERT_EQ(pt_.Map(0x200000, 0x400000, kW, k2M), PtStatus::kOk);
  EXPECT_EQ(pt_.Map(0x200000, 0x800000, kW, k2M), PtStatus::kAlreadyMapped);
  // The original leaves are untouched.
  EXPECT_EQ(pt_.Walk(0x400000).leaf.raw(), 0x5000 | kP | kW);
  EXPECT_EQ(pt_.Walk(0x200000).leaf.raw(), 0x400000 | kP | kW | Pte::kHuge);
}

struct MisalignedCase {
  const char* name;
  uint64_t va;
  uint64_t pa;
  uint64_t page_size;
  friend std::ostream& operator<<(std::ostream& os, const MisalignedCase& c) {
    return os << c.name;
  }
};

class MisalignedTest : public PageTableTest,
                       public ::testing::WithParamInterface<MisalignedCase> {};

TEST_P(MisalignedTest, RefusedBeforeAllocatingAnything) {
  const MisalignedCase& c = GetParam();
  size_t before = mem_.allocated();
  EXPECT_EQ(pt_.Map(c.va, c.pa, kW, c.page_size), PtStatus::kMisaligned);
  EXPECT_EQ(mem_.allocated(), before);
  EXPECT_EQ(Entry(pt_.root(), x86::TableIndex(c.va, 4)), 0u);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, MisalignedTest,
    ::testing::Values(MisalignedCase{"Va4K", 0x400800, 0x5000, k4K},
                      MisalignedCase{"Pa4K", 0x400000, 0x5008, k4K},
                      MisalignedCase{"Va2M", 0x201000, 0x200000, k2M},
                      MisalignedCase{"Pa2M", 0x200000, 0x201000, k2M},
                      MisalignedCase{"PageSize8K", 0x400000, 0x4000, 2 * k4K},
                      MisalignedCase{"PageSize1G", 0x40000000, 0x40000000, k1G},
                      MisalignedCase{"PageSizeZero", 0x400000, 0x5000, 0}),
    [](const ::testing::TestParamInfo<MisalignedCase>& info) { return info.param.name; });

TEST_F(PageTableTest, NonCanonicalAddresses) {
  for (uint64_t va : {0x0000800000000000ull, 0xffff7ffffffff000ull, 0x0001000000000000ull,
                      0x8000000000000000ull}) {
    SCOPED_TRACE(testing::Message() << std::hex << va);
    EXPECT_EQ(pt_.Map(va, 0x5000, kW), PtStatus::kNotCanonical);
    EXPECT_EQ(pt_.Walk(va).status, PtStatus::kNotCanonical);
    Pte old;
    EXPECT_EQ(pt_.Unmap(va, &old), PtStatus::kNotCanonical);
  }
  EXPECT_EQ(mem_.allocated(), 1u);  // only the root
}

TEST_F(PageTableTest, FourKUnderTwoMIsHugeInTheWay) {
  ASSERT_EQ(pt_.Map(0x200000, 0x400000, kW, k2M), PtStatus::kOk);
  EXPECT_EQ(pt_.Map(0x201000, 0x5000, kW), PtStatus::kHugeInTheWay);
  EXPECT_EQ(pt_.Map(0x3ff000, 0x5000, kW), PtStatus::kHugeInTheWay);
  // Unmap clears 4 KiB leaves only.
  Pte old(0x1234000);
  EXPECT_EQ(pt_.Unmap(0x201000, &old), PtStatus::kHugeInTheWay);
  EXPECT_EQ(old.raw(), 0x1234000u);
  EXPECT_EQ(pt_.Walk(0x201000).pa, 0x401000u);
}

TEST_F(PageTableTest, OneGiBLeafIsHonouredAndInTheWay) {
  // The code never creates 1 GiB leaves but must recognise them in a table it walks.
  ASSERT_EQ(pt_.Map(0x400000, 0x5000, kW), PtStatus::kOk);  // creates the PDPT for 0..512G
  uint64_t pdpt = Pte(Entry(pt_.root(), 0)).addr();
  Entry(pdpt, 1) = Pte::Make(0x80000000, kP | kW | Pte::kHuge).raw();  // 1G..2G -> 2G..3G

  WalkResult w = pt_.Walk(0x40000000 + 0x123456);
  ASSERT_EQ(w.status, PtStatus::kOk);
  EXPECT_EQ(w.level, 3);
  EXPECT_EQ(w.pa, 0x80123456u);
  EXPECT_EQ(w.entry_pa, pdpt + 8);
  EXPECT_EQ(pt_.Map(0x40000000, 0x5000, kW), PtStatus::kHugeInTheWay);
  EXPECT_EQ(pt_.Map(0x40200000, 0x200000, kW, k2M), PtStatus::kHugeInTheWay);
}

TEST(PageTableMemoryTest, NoMemoryWhenArenaIsExhausted) {
  ArenaMem mem(3);  // root + 2 tables: one short of a 4 KiB mapping
  PageTable<ArenaMem> pt(mem, mem.AllocTable());
  EXPECT_EQ(pt.Map(0x400000, 0x5000, kW), PtStatus::kNoMemory);
  EXPECT_EQ(mem.allocated(), 3u);
  // The tables made so far stay; the address is still unmapped.
  WalkResult w = pt.Walk(0x400000);
  EXPECT_EQ(w.status, PtStatus::kNotMapped);
  EXPECT_EQ(w.level, 2);
  // A 2 MiB page needs no page table, so it fits.
  EXPECT_EQ(pt.Map(0x200000, 0x200000, kW, k2M), PtStatus::kOk);
}

TEST(PageTableMemoryTest, ExactlyEnoughMemory) {
  ArenaMem mem(4);
  PageTable<ArenaMem> pt(mem, mem.AllocTable());
  EXPECT_EQ(pt.Map(0x400000, 0x5000, kW), PtStatus::kOk);
  EXPECT_EQ(pt.Map(0x401000, 0x6000, kW), PtStatus::kOk);
  EXPECT_EQ(pt.Map(0x800000, 0x7000, kW), PtStatus::kNoMemory);  // needs a second PT
}

TEST_F(PageTableTest, EntryPointingOutsideTheArenaIsBadTable) {
  ASSERT_EQ(pt_.Map(0x400000, 0x5000, kW), PtStatus::kOk);
  uint64_t pd = Path(0x400000, 3).back().addr();
  // Corrupt the PD entry so that it points past the arena.
  const uint64_t bad = mem_.end_pa() + 0x10000;
  Entry(pd, 2) = Pte::Make(bad, kP | kW).raw();

  WalkResult w = pt_.Walk(0x400000);
  EXPECT_EQ(w.status, PtStatus::kBadTable);
  EXPECT_EQ(w.entry_pa, bad + 8 * x86::TableIndex(0x400000, 1));
  EXPECT_EQ(pt_.Map(0x401000, 0x6000, kW), PtStatus::kBadTable);
  Pte old;
  EXPECT_EQ(pt_.Unmap(0x400000, &old), PtStatus::kBadTable);
  const auto [status, leaves] = CountLeaves(1000);
  EXPECT_EQ(status, PtStatus::kBadTable);
  EXPECT_EQ(leaves, 0);
}

TEST_F(PageTableTest, EntryPointingBelowTheArenaIsBadTable) {
  Entry(pt_.root(), 0) = Pte::Make(0x1000, kP | kW).raw();
  EXPECT_EQ(pt_.Walk(0x400000).status, PtStatus::kBadTable);
  EXPECT_EQ(pt_.Map(0x400000, 0x5000, kW), PtStatus::kBadTable);
}

TEST(PageTableMemoryTest, RootOutsideTheArenaIsBadTable) {
  ArenaMem mem(4);
  PageTable<ArenaMem> pt(mem, 0);
  WalkResult w = pt.Walk(0x400000);
  EXPECT_EQ(w.status, PtStatus::kBadTable);
  EXPECT_EQ(w.entry_pa, 0u);
  EXPECT_EQ(pt.Map(0x400000, 0x5000, kW), PtStatus::kBadTable);
  EXPECT_EQ(pt.ForEachLeaf(0, kMax, 10, [](uint64_t, Pte, int) { return true; }),
            PtStatus::kBadTable);
}

// ---- Unmap -----------------------------------------------------------------------------------

TEST_F(PageTableTest, UnmapReturnsOldPteAndLeavesNothingMapped) {
  ASSERT_EQ(pt_.Map(0xffff888000001000, 0x9000, kW | kNx), PtStatus::kOk);
  ASSERT_EQ(pt_.Map(0xffff888000002000, 0xa000, kW), PtStatus::kOk);
  Pte old;
  ASSERT_EQ(pt_.Unmap(0xffff888000001234, &old), PtStatus::kOk);
  EXPECT_EQ(old, Pte::Make(0x9000, kP | kW | kNx));

  WalkResult w = pt_.Walk(0xffff888000001000);
  EXPECT_EQ(w.status, PtStatus::kNotMapped);
  EXPECT_EQ(w.level, 1);
  // The neighbour is untouched, and the page can be mapped again.
  EXPECT_EQ(pt_.Walk(0xffff888000002000).pa, 0xa000u);
  EXPECT_EQ(pt_.Unmap(0xffff888000001000, &old), PtStatus::kNotMapped);
  size_t tables = mem_.allocated();
  EXPECT_EQ(pt_.Map(0xffff888000001000, 0xb000, kW), PtStatus::kOk);
  EXPECT_EQ(mem_.allocated(), tables);  // table pages were left in place
  EXPECT_EQ(pt_.Walk(0xffff888000001000).pa, 0xb000u);
}

TEST_F(PageTableTest, UnmapWithoutTablesIsNotMapped) {
  Pte old(0x42000);
  EXPECT_EQ(pt_.Unmap(0x400000, &old), PtStatus::kNotMapped);
  EXPECT_EQ(old.raw(), 0x42000u);
}

// ---- ForEachLeaf -----------------------------------------------------------------------------

struct Leaf {
  uint64_t va;
  uint64_t pa;
  int level;
  friend bool operator==(const Leaf&, const Leaf&) = default;
  friend std::ostream& operator<<(std::ostream& os, const Leaf& l) {
    return os << std::hex << "{va 0x" << l.va << ", pa 0x" << l.pa << ", level " << std::dec
              << l.level << "}";
  }
};

class ForEachLeafTest : public PageTableTest {
 protected:
  void SetUp() override {
    // Mapped out of order on purpose; the walk must report them ascending.
    for (const Leaf& l : {kLeaves[7], kLeaves[2], kLeaves[5], kLeaves[0], kLeaves[6], kLeaves[3],
                          kLeaves[1], kLeaves[4]}) {
      ASSERT_EQ(pt_.Map(l.va, l.pa, kW, l.level == 2 ? k2M : k4K), PtStatus::kOk)
          << std::hex << l.va;
    }
  }

  std::vector<Leaf> Collect(uint64_t lo, uint64_t hi, PtStatus* status = nullptr) {
    std::vector<Leaf> out;
    PtStatus s = pt_.ForEachLeaf(lo, hi, 10000, [&](uint64_t va, Pte e, int level) {
      out.push_back({va, e.addr(), level});
      return true;
    });
    if (status != nullptr) *status = s;
    EXPECT_EQ(s, PtStatus::kOk);
    return out;
  }

  static constexpr Leaf kLeaves[] = {
      {0x400000, 0x5000, 1},
      {0x401000, 0x6000, 1},
      {0x600000, 0x200000, 2},
      {0x7ffffffff000, 0x7000, 1},
      {0xffff888000000000, 0x400000, 2},
      {0xffff888000200000, 0x8000, 1},
      {0xffffffff80000000, 0x600000, 2},
      {0xfffffffffffff000, 0x9000, 1},
  };
};

TEST_F(ForEachLeafTest, VisitsEveryLeafInAscendingOrderWithSignExtendedVa) {
  EXPECT_THAT(Collect(0, kMax), ElementsAre(kLeaves[0], kLeaves[1], kLeaves[2], kLeaves[3],
                                            kLeaves[4], kLeaves[5], kLeaves[6], kLeaves[7]));
}

TEST_F(ForEachLeafTest, RespectsHalfOpenRange) {
  // hi is exclusive: the leaf starting at hi is not visited.
  EXPECT_THAT(Collect(0x401000, 0xffff888000200000),
              ElementsAre(kLeaves[1], kLeaves[2], kLeaves[3], kLeaves[4]));
  // Kernel half only.
  EXPECT_THAT(Collect(0xffff800000000000, kMax),
              ElementsAre(kLeaves[4], kLeaves[5], kLeaves[6], kLeaves[7]));
  // User half only.
  EXPECT_THAT(Collect(0, 0x800000000000),
              ElementsAre(kLeaves[0], kLeaves[1], kLeaves[2], kLeaves[3]));
  // A range between leaves, and an empty range.
  EXPECT_THAT(Collect(0x402000, 0x600000), ElementsAre());
  EXPECT_THAT(Collect(0x400000, 0x400000), ElementsAre());
  // One page.
  EXPECT_THAT(Collect(0xffffffff80000000, 0xffffffff80000001), ElementsAre(kLeaves[6]));
}

TEST_F(ForEachLeafTest, LeafOverlappingTheRangeIsVisitedWithItsStart) {
  // [0x600001, 0x600002) lies inside the 2 MiB leaf at 0x600000.
  EXPECT_THAT(Collect(0x600001, 0x600002), ElementsAre(kLeaves[2]));
  EXPECT_THAT(Collect(0x7fffff, 0x800000), ElementsAre(kLeaves[2]));
}

TEST_F(ForEachLeafTest, StopsWhenCallbackReturnsFalse) {
  std::vector<uint64_t> seen;
  PtStatus s = pt_.ForEachLeaf(0, kMax, 10000, [&](uint64_t va, Pte, int) {
    seen.push_back(va);
    return seen.size() < 3;
  });
  EXPECT_EQ(s, PtStatus::kOk);
  EXPECT_THAT(seen, ElementsAre(kLeaves[0].va, kLeaves[1].va, kLeaves[2].va));
}

TEST_F(PageTableTest, BudgetCountsEveryPresentEntry) {
  ASSERT_EQ(pt_.Map(0x400000, 0x5000, kW), PtStatus::kOk);
  // PML4E + PDPTE + PDE + PTE = 4 present entries.
  int calls = 0;
  auto count = [&](uint64_t, Pte, int) {
    ++calls;
    return true;
  };
  EXPECT_EQ(pt_.ForEachLeaf(0, kMax, 4, count), PtStatus::kOk);
  EXPECT_EQ(calls, 1);
  calls = 0;
  EXPECT_EQ(pt_.ForEachLeaf(0, kMax, 3, count), PtStatus::kBudgetExceeded);
  EXPECT_EQ(calls, 0);
}

TEST_F(PageTableTest, SelfReferencingPml4EntryIsALoop) {
  // PML4[0] points back at the PML4 itself (a "recursive" entry): found, not followed.
  Entry(pt_.root(), 0) = Pte::Make(pt_.root(), kP | kW).raw();
  const auto [status, calls] = CountLeaves(1000);
  EXPECT_EQ(status, PtStatus::kLoop);
  EXPECT_EQ(calls, 0);
}

TEST_F(PageTableTest, FullySelfReferencingTableIsALoop) {
  // Every PML4 entry points at the PML4: 512^4 paths if followed.
  for (int i = 0; i < x86::kEntriesPerTable; ++i) {
    Entry(pt_.root(), i) = Pte::Make(pt_.root(), kP | kW).raw();
  }
  const auto [status, calls] = CountLeaves(5000);
  EXPECT_EQ(status, PtStatus::kLoop);
  EXPECT_EQ(calls, 0);
}

TEST_F(PageTableTest, EntryPointingBackAtAnUpperTableIsALoop) {
  // pgd -> pdpt -> pd, and a PD entry back at the PML4: the leaves before it are visited.
  ASSERT_EQ(pt_.Map(0x400000, 0x5000, kW | kU), PtStatus::kOk);
  const uint64_t pd = Path(0x400000, 3).back().addr();
  Entry(pd, 3) = Pte::Make(pt_.root(), kP | kW | kU).raw();
  const auto [status, calls] = CountLeaves(1000);
  EXPECT_EQ(status, PtStatus::kLoop);
  EXPECT_EQ(calls, 1);
}

TEST_F(PageTableTest, TableSharedByTwoEntriesIsNoLoop) {
  // Two PD entries naming one page table: shared, not a loop; each leaf is seen twice.
  ASSERT_EQ(pt_.Map(0x400000, 0x5000, kW | kU), PtStatus::kOk);
  const uint64_t pd = Path(0x400000, 3).back().addr();
  Entry(pd, 3) = Entry(pd, 2);
  const auto [status, calls] = CountLeaves(1000);
  EXPECT_EQ(status, PtStatus::kOk);
  EXPECT_EQ(calls, 2);
}

// ---- x86 value types ---------------------------------------------------------------------------

TEST(Cr3Test, MakeAndAccessors) {
  x86::Cr3 c = x86::Cr3::Make(0x123456789000, 0xabc, true);
  EXPECT_EQ(c.raw(), 0x8000123456789abcull);
  EXPECT_EQ(c.root(), 0x123456789000u);
  EXPECT_EQ(c.pcid(), 0xabc);
  EXPECT_TRUE(c.noflush());

  x86::Cr3 read = c.as_read_back();
  EXPECT_EQ(read.raw(), 0x0000123456789abcull);
  EXPECT_FALSE(read.noflush());
  EXPECT_EQ(read.root(), c.root());
  EXPECT_EQ(read.pcid(), c.pcid());
  EXPECT_EQ(read.as_read_back(), read);
}

TEST(Cr3Test, MasksPcidAndRoot) {
  // PCID is 12 bits; root loses its page offset and bits above 51.
  x86::Cr3 c = x86::Cr3::Make(0xfff0123456789fffull, 0xf123, false);
  EXPECT_EQ(c.pcid(), 0x123);
  EXPECT_EQ(c.root(), 0x0000123456789000ull);
  EXPECT_FALSE(c.noflush());
  EXPECT_EQ(c.raw(), 0x0000123456789123ull);
  EXPECT_EQ(c.as_read_back(), c);
}

TEST(Cr3Test, FromRawAndDefault) {
  EXPECT_EQ(x86::Cr3().raw(), 0u);
  x86::Cr3 c = x86::Cr3::FromRaw(0x8000000000005001ull);
  EXPECT_EQ(c.root(), 0x5000u);
  EXPECT_EQ(c.pcid(), 1);
  EXPECT_TRUE(c.noflush());
  EXPECT_EQ(c, x86::Cr3::Make(0x5000, 1, true));
  EXPECT_FALSE(c == x86::Cr3::Make(0x5000, 1, false));
}

TEST(PteTest, Accessors) {
  Pte e = Pte::Make(0x0000123456789000, kP | kW | kU | Pte::kHuge | kNx | Pte::kAccessed);
  EXPECT_EQ(e.addr(), 0x0000123456789000u);
  EXPECT_EQ(e.flags(), kP | kW | kU | Pte::kHuge | kNx | Pte::kAccessed);
  EXPECT_EQ(e.raw(), e.addr() | e.flags());
  EXPECT_TRUE(e.present());
  EXPECT_TRUE(e.writable());
  EXPECT_TRUE(e.user());
  EXPECT_TRUE(e.huge());
  EXPECT_TRUE(e.no_execute());

  Pte none;
  EXPECT_EQ(none.raw(), 0u);
  EXPECT_FALSE(none.present());
  EXPECT_FALSE(none.writable());
  EXPECT_FALSE(none.user());
  EXPECT_FALSE(none.huge());
  EXPECT_FALSE(none.no_execute());

  Pte ro(0x5000 | kP);
  EXPECT_TRUE(ro.present());
  EXPECT_FALSE(ro.writable());
  EXPECT_EQ(ro.addr(), 0x5000u);
  EXPECT_EQ(ro.flags(), kP);
}

TEST(PteTest, MakeMasksAddressToBits51To12) {
  Pte e = Pte::Make(0xfff0000000005fffull, kP);
  EXPECT_EQ(e.addr(), 0x5000u);
  EXPECT_EQ(e.raw(), 0x5001u);
  EXPECT_EQ(e, Pte(0x5001));
  EXPECT_FALSE(e == Pte(0x5003));
}

TEST(TableIndexTest, EdgeValues) {
  using T = std::tuple<uint64_t, int, int, int, int>;  // va, PML4, PDPT, PD, PT index
  for (auto [va, l4, l3, l2, l1] : {
           T{0, 0, 0, 0, 0},
           T{0xfff, 0, 0, 0, 0},
           T{0x1000, 0, 0, 0, 1},
           T{0x400000, 0, 0, 2, 0},
           T{0x7ffffffff000, 255, 511, 511, 511},
           T{0xffff800000000000, 256, 0, 0, 0},
           T{0xffff888000000000, 273, 0, 0, 0},
           T{0xffffffff80000000, 511, 510, 0, 0},
           T{0xffffffff80201000, 511, 510, 1, 1},
           T{0xffffffffffffffff, 511, 511, 511, 511},
       }) {
    SCOPED_TRACE(testing::Message() << std::hex << va);
    EXPECT_EQ(x86::TableIndex(va, 4), l4);
    EXPECT_EQ(x86::TableIndex(va, 3), l3);
    EXPECT_EQ(x86::TableIndex(va, 2), l2);
    EXPECT_EQ(x86::TableIndex(va, 1), l1);
  }
}

TEST(IsCanonicalTest, EdgeValues) {
  using T = std::tuple<uint64_t, bool>;
  for (auto [va, canonical] : {
           T{0, true},
           T{0x00007fffffffffff, true},
           T{0x0000800000000000, false},
           T{0x0001000000000000, false},
           T{0x7fffffffffffffff, false},
           T{0x8000000000000000, false},
           T{0xffff7fffffffffff, false},
           T{0xfffe800000000000, false},
           T{0xffff800000000000, true},
           T{0xffff888000000000, true},
           T{0xffffffffffffffff, true},
       }) {
    EXPECT_EQ(x86::IsCanonical(va), canonical) << std::hex << va;
  }
}

TEST(LevelSizeTest, Values) {
  EXPECT_EQ(LevelSize(1), 4096u);
  EXPECT_EQ(LevelSize(2), 2u << 20);
  EXPECT_EQ(LevelSize(3), 1u << 30);
  EXPECT_EQ(LevelSize(4), 512ull << 30);
}

}  // namespace
}  // namespace activemm
