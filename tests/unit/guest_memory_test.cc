// GuestMemory: the bounds-checked window onto guest RAM.
#include "vmm/kvm/guest_memory.h"

#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <initializer_list>
#include <limits>
#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shared/page_table.h"
#include "shared/x86.h"

namespace activemm {
namespace {

constexpr uint64_t kSize = 16ull << 20;
constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

std::unique_ptr<GuestMemory> Make16M() {
  absl::StatusOr<std::unique_ptr<GuestMemory>> mem = GuestMemory::Create(kSize);
  EXPECT_TRUE(mem.ok()) << mem.status();
  return mem.ok() ? *std::move(mem) : nullptr;
}

TEST(GuestMemoryTest, CreateGivesZeroedMemoryOfTheRequestedSize) {
  std::unique_ptr<GuestMemory> mem = Make16M();
  ASSERT_NE(mem, nullptr);
  EXPECT_EQ(mem->size(), kSize);
  EXPECT_NE(mem->host_base(), nullptr);
  for (uint64_t gpa : {uint64_t{0}, kSize / 2, kSize - 8}) {
    absl::StatusOr<uint64_t> v = mem->Read<uint64_t>(gpa);
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_EQ(*v, 0u);
  }
}

TEST(GuestMemoryTest, ReadWriteRoundTrip) {
  std::unique_ptr<GuestMemory> mem = Make16M();
  ASSERT_NE(mem, nullptr);
  ASSERT_TRUE(mem->Write<uint64_t>(0x1000, 0x0123456789abcdefull).ok());
  ASSERT_TRUE(mem->Write<uint32_t>(kSize - 4, 0xdeadbeef).ok());
  struct Pair {
    uint32_t a;
    uint16_t b;
  };
  ASSERT_TRUE(mem->Write(0x2003, Pair{7, 9}).ok());  // unaligned is fine

  EXPECT_EQ(*mem->Read<uint64_t>(0x1000), 0x0123456789abcdefull);
  EXPECT_EQ(*mem->Read<uint8_t>(0x1000), 0xef);  // little endian, same bytes
  EXPECT_EQ(*mem->Read<uint32_t>(kSize - 4), 0xdeadbeefu);
  absl::StatusOr<Pair> p = mem->Read<Pair>(0x2003);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->a, 7u);
  EXPECT_EQ(p->b, 9u);
  // Writes land at host_base() + gpa.
  uint64_t raw;
  std::memcpy(&raw, mem->host_base() + 0x1000, sizeof raw);
  EXPECT_EQ(raw, 0x0123456789abcdefull);

  std::vector<uint8_t> in(3 * 4096), out(in.size());
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<uint8_t>(i * 7);
  ASSERT_TRUE(mem->WriteBytes(0x7ff800, in.data(), in.size()).ok());
  ASSERT_TRUE(mem->ReadBytes(0x7ff800, out.data(), out.size()).ok());
  EXPECT_EQ(in, out);
}

// The size of the arena the range cases run against.
constexpr uint64_t kArena = 0x4000;

struct RangeCase {
  const char* name;
  uint64_t gpa;
  uint64_t len;
  bool ok;
  friend std::ostream& operator<<(std::ostream& os, const RangeCase& c) { return os << c.name; }
};

class GuestMemoryRangeTest : public ::testing::TestWithParam<RangeCase> {
 protected:
  // A small wrapped arena surrounded by guard bytes that must never be touched.
  static constexpr uint64_t kGuard = 64;
  static constexpr uint8_t kFill = 0x5a;

  GuestMemoryRangeTest() : host_(kGuard + kArena + kGuard, kFill) {
    mem_ = GuestMemory::WrapForTesting(host_.data() + kGuard, kArena);
  }

  bool GuardsIntact() const {
    for (uint64_t i = 0; i < kGuard; ++i) {
      if (host_[i] != kFill || host_[kGuard + kArena + i] != kFill) return false;
    }
    return true;
  }

  std::vector<uint8_t> host_;
  std::unique_ptr<GuestMemory> mem_;
};

TEST_P(GuestMemoryRangeTest, ContainsReadAndWriteAgree) {
  const RangeCase& c = GetParam();
  EXPECT_EQ(mem_->Contains(c.gpa, c.len), c.ok);

  // Never more than the arena is actually copied, so a buffer of the arena size suffices for
  // the successful cases; refused cases must not touch the buffer at all.
  std::vector<uint8_t> buf(kArena + 1, 0xc3);
  absl::Status w = mem_->WriteBytes(c.gpa, buf.data(), c.len);
  absl::Status r = mem_->ReadBytes(c.gpa, buf.data(), c.len);
  if (c.ok) {
    EXPECT_TRUE(w.ok()) << w;
    EXPECT_TRUE(r.ok()) << r;
  } else {
    EXPECT_EQ(w.code(), absl::StatusCode::kOutOfRange) << w;
    EXPECT_EQ(r.code(), absl::StatusCode::kOutOfRange) << r;
    for (uint64_t i = 0; i < kArena; ++i) ASSERT_EQ(host_[kGuard + i], kFill) << i;
    for (uint8_t b : buf) ASSERT_EQ(b, 0xc3);
  }
  EXPECT_TRUE(GuardsIntact());
}

INSTANTIATE_TEST_SUITE_P(
    Cases, GuestMemoryRangeTest,
    ::testing::Values(
        // In range.
        RangeCase{"ZeroZero", 0, 0, true}, RangeCase{"FirstByte", 0, 1, true},
        RangeCase{"All", 0, kArena, true}, RangeCase{"LastEight", kArena - 8, 8, true},
        RangeCase{"EmptyAtEnd", kArena, 0, true}, RangeCase{"LastByte", kArena - 1, 1, true},
        // Out of range.
        RangeCase{"StraddlesEnd", kArena - 4, 8, false}, RangeCase{"AtEnd", kArena, 1, false},
        RangeCase{"EmptyPastEnd", kArena + 1, 0, false}, RangeCase{"TooLong", 0, kArena + 1, false},
        RangeCase{"GpaNearMaxOverflows", kMax - 3, 8, false}, RangeCase{"GpaMax", kMax, 1, false},
        RangeCase{"GpaMaxEmpty", kMax, 0, false}, RangeCase{"LenMax", 1, kMax, false},
        RangeCase{"SumWrapsToZero", 8, kMax - 7, false},
        RangeCase{"SumWrapsBelowSize", 0x100, kMax - 0xff + 0x10, false}),
    [](const ::testing::TestParamInfo<RangeCase>& info) { return info.param.name; });

// The fill hypercall's work (abi::Hypercall::kFill): the range the guest names, nothing more,
// and nothing at all when any of it is outside RAM.
TEST(GuestMemoryTest, FillSetsExactlyTheRangeAndRefusesOneOutsideRam) {
  std::unique_ptr<GuestMemory> mem = Make16M();
  ASSERT_NE(mem, nullptr);
  ASSERT_TRUE(mem->Fill(0x2000, 0xa5, 4096).ok());
  EXPECT_EQ(*mem->Read<uint8_t>(0x1fff), 0u);
  EXPECT_EQ(*mem->Read<uint64_t>(0x2000), 0xa5a5a5a5a5a5a5a5ull);
  EXPECT_EQ(*mem->Read<uint64_t>(0x2ff8), 0xa5a5a5a5a5a5a5a5ull);
  EXPECT_EQ(*mem->Read<uint8_t>(0x3000), 0u);
  ASSERT_TRUE(mem->Fill(kSize - 8, 0x11, 8).ok());
  EXPECT_TRUE(mem->Fill(kSize, 0, 0).ok());
  for (auto [gpa, len] : {std::pair<uint64_t, uint64_t>{kSize - 8, 9},
                          {kSize, 1},
                          {kMax, 2},
                          {0, kMax},
                          {8, kMax - 4}}) {
    EXPECT_EQ(mem->Fill(gpa, 0xff, len).code(), absl::StatusCode::kOutOfRange)
        << gpa << " +" << len;
  }
  EXPECT_EQ(*mem->Read<uint64_t>(kSize - 8), 0x1111111111111111ull);  // untouched by the refusals
  EXPECT_EQ(*mem->Read<uint64_t>(0), 0u);
}

TEST(GuestMemoryTest, TypedAccessOutOfRange) {
  std::unique_ptr<GuestMemory> mem = Make16M();
  ASSERT_NE(mem, nullptr);
  EXPECT_EQ(mem->Read<uint64_t>(kMax - 3).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(mem->Read<uint64_t>(kSize - 7).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(mem->Read<uint8_t>(kSize).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(mem->Write<uint64_t>(kMax - 3, 1).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(mem->Write<uint64_t>(kSize - 7, 1).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(mem->Write<uint8_t>(kSize, 1).code(), absl::StatusCode::kOutOfRange);
  std::vector<uint8_t> big(kSize + 1);
  EXPECT_EQ(mem->ReadBytes(0, big.data(), kSize + 1).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(mem->WriteBytes(0, big.data(), kSize + 1).code(), absl::StatusCode::kOutOfRange);
  EXPECT_TRUE(mem->ReadBytes(0, big.data(), kSize).ok());
  EXPECT_TRUE(mem->ReadBytes(0, nullptr, 0).ok());
}

TEST(GuestMemoryTest, ContainsEdgeCases) {
  uint8_t arena[0x100] = {};
  std::unique_ptr<GuestMemory> mem = GuestMemory::WrapForTesting(arena, sizeof arena);
  EXPECT_EQ(mem->size(), 0x100u);
  EXPECT_EQ(mem->host_base(), arena);
  EXPECT_TRUE(mem->Contains(0, 0));
  EXPECT_TRUE(mem->Contains(0, 0x100));
  EXPECT_TRUE(mem->Contains(0xff, 1));
  EXPECT_TRUE(mem->Contains(0x100, 0));
  EXPECT_FALSE(mem->Contains(0x100, 1));
  EXPECT_FALSE(mem->Contains(0x101, 0));
  EXPECT_FALSE(mem->Contains(0, 0x101));
  EXPECT_FALSE(mem->Contains(0x80, 0x81));
  EXPECT_FALSE(mem->Contains(kMax, 1));
  EXPECT_FALSE(mem->Contains(1, kMax));
  EXPECT_FALSE(mem->Contains(kMax, kMax));

  std::unique_ptr<GuestMemory> empty = GuestMemory::WrapForTesting(arena, 0);
  EXPECT_TRUE(empty->Contains(0, 0));
  EXPECT_FALSE(empty->Contains(0, 1));
  EXPECT_FALSE(empty->Contains(1, 0));
}

TEST(GuestMemoryTest, TableReturnsPagesInsideRamOnly) {
  std::unique_ptr<GuestMemory> mem = Make16M();
  ASSERT_NE(mem, nullptr);
  uint64_t* base = reinterpret_cast<uint64_t*>(mem->host_base());
  EXPECT_EQ(mem->Table(0), base);
  EXPECT_EQ(mem->Table(0x1000), base + 512);
  EXPECT_EQ(mem->Table(kSize - 0x1000), base + (kSize - 0x1000) / 8);
  // Unaligned.
  for (uint64_t pa : std::initializer_list<uint64_t>{0x1, 0x8, 0x1008, 0x1800, kSize - 0x800}) {
    EXPECT_EQ(mem->Table(pa), nullptr) << std::hex << pa;
  }
  // Outside RAM, including addresses whose end would overflow.
  for (uint64_t pa : std::initializer_list<uint64_t>{kSize, kSize + 0x1000, 1ull << 32,
                                                     0x000ffffffffff000ull, kMax & ~0xfffull}) {
    EXPECT_EQ(mem->Table(pa), nullptr) << std::hex << pa;
  }
  // The host never grows guest tables.
  EXPECT_EQ(mem->AllocTable(), 0u);
}

TEST(GuestMemoryTest, TableOfTinyMemoryEndingMidPage) {
  alignas(4096) static uint8_t arena[0x1800];
  std::unique_ptr<GuestMemory> mem = GuestMemory::WrapForTesting(arena, sizeof arena);
  EXPECT_NE(mem->Table(0), nullptr);
  EXPECT_EQ(mem->Table(0x1000), nullptr);  // only half of the page is RAM
}

TEST(GuestMemoryTest, PageTableOverGuestMemoryRefusesTablesOutsideRam) {
  std::unique_ptr<GuestMemory> mem = Make16M();
  ASSERT_NE(mem, nullptr);
  constexpr uint64_t kRoot = 0x2000, kPdpt = 0x3000, kPd = 0x4000, kPt = 0x5000;
  using x86::Pte;
  constexpr uint64_t kTable = Pte::kPresent | Pte::kWritable;
  ASSERT_TRUE(mem->Write(kRoot, Pte::Make(kPdpt, kTable).raw()).ok());
  ASSERT_TRUE(mem->Write(kPdpt, Pte::Make(kPd, kTable).raw()).ok());
  ASSERT_TRUE(mem->Write(kPd + 2 * 8, Pte::Make(kPt, kTable).raw()).ok());
  ASSERT_TRUE(mem->Write(kPt, Pte::Make(0x9000, kTable).raw()).ok());
  ASSERT_TRUE(mem->Write(kPt + 8, Pte::Make(kSize, kTable).raw()).ok());  // not a table: fine

  PageTable<GuestMemory> pt(*mem, kRoot);
  WalkResult w = pt.Walk(0x400123);
  ASSERT_EQ(w.status, PtStatus::kOk);
  EXPECT_EQ(w.pa, 0x9123u);
  // A leaf may name any frame: only tables must be inside RAM.
  EXPECT_EQ(pt.Walk(0x401000).pa, kSize);
  EXPECT_EQ(pt.Map(0x402000, 0xa000, Pte::kWritable), PtStatus::kOk);
  EXPECT_EQ(pt.Map(0x10000000, 0xa000, Pte::kWritable), PtStatus::kNoMemory);

  // Corrupt the PD entry so that it points just past the end of RAM.
  ASSERT_TRUE(mem->Write(kPd + 2 * 8, Pte::Make(kSize, kTable).raw()).ok());
  EXPECT_EQ(pt.Walk(0x400123).status, PtStatus::kBadTable);
  EXPECT_EQ(pt.ForEachLeaf(0, kMax, 100, [](uint64_t, Pte, int) { return true; }),
            PtStatus::kBadTable);
}

// ---- BoundedString ---------------------------------------------------------------------------

TEST(BoundedStringTest, StopsAtNul) {
  const char chars[12] = "hello\0world";
  EXPECT_EQ(GuestMemory::BoundedString(chars, sizeof chars), "hello");
  EXPECT_EQ(GuestMemory::BoundedString(chars, 3), "hel");
  EXPECT_EQ(GuestMemory::BoundedString(chars, 0), "");
  EXPECT_EQ(GuestMemory::BoundedString("\0abc", 4), "");
}

TEST(BoundedStringTest, ReplacesUnprintableBytes) {
  const char chars[] = {'a', '\x01', '\t', '\n', ' ', '~', '\x7f', '\x80', '\xff', 'z', '\0'};
  EXPECT_EQ(GuestMemory::BoundedString(chars, sizeof chars), "a??? ~???z");
}

TEST(BoundedStringTest, NeverReadsPastCapacity) {
  // The array ends exactly where an inaccessible page begins: one byte too far faults.
  const long page = sysconf(_SC_PAGESIZE);
  ASSERT_GT(page, 0);
  void* m = mmap(nullptr, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(m, MAP_FAILED);
  char* p = static_cast<char*>(m);
  ASSERT_EQ(mprotect(p + page, page, PROT_NONE), 0);
  constexpr size_t kCap = 16;
  char* chars = p + page - kCap;
  std::memset(chars, 'x', kCap);  // no NUL anywhere
  EXPECT_EQ(GuestMemory::BoundedString(chars, kCap), std::string(kCap, 'x'));
  chars[kCap - 1] = '\x02';
  EXPECT_EQ(GuestMemory::BoundedString(chars, kCap), std::string(kCap - 1, 'x') + "?");
  munmap(m, 2 * page);
}

}  // namespace
}  // namespace activemm
