// `activemm cost` on real KVM: every case is measured in both modes, and where KVM counts the
// guest's ring-0 instructions the counts are exact and show what lazy TLB saves. Timings are
// never asserted (they depend on the host's load); instruction and CR3-write counts are exact
// properties of the guest's code path. Also the binary-statistics reader, on KVM and on a
// fabricated stats file.
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shared/cost_abi.h"
#include "tests/kvm/kvm_test_util.h"
#include "vmm/kvm/kvm_stats.h"
#include "vmm/kvm/vm.h"
#include "vmm/tools/cost.h"

namespace activemm {
namespace {

using ::testing::HasSubstr;

constexpr int kIterations = 5;

const CostCaseResult& Case(const CostReport& r, abi::CostCase c, abi::LazyMode m) {
  for (const CostCaseResult& x : r.cases) {
    if (x.which == c && x.lazy == m) return x;
  }
  ADD_FAILURE() << "no result for " << CostCaseName(c) << " with lazy TLB " << int(m);
  static const CostCaseResult kNone;
  return kNone;
}

class CostTest : public KvmTest {
 protected:
  // A short benchmark (ctest runs each test in its own process, so each runs its own).
  CostReport Run() {
    CostOptions o;
    o.iterations = kIterations;
    o.timeout = absl::Seconds(20);
    absl::StatusOr<CostReport> r = RunCostBenchmark(kvm(), o);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) {
      CostReport failed;
      failed.outcome = Outcome::kHostError;
      failed.failure = std::string(r.status().message());
      return failed;
    }
    return *std::move(r);
  }
};

TEST_F(CostTest, EveryCaseIsMeasuredInBothModes) {
  const CostReport r = Run();
  ASSERT_TRUE(r.ok()) << r.failure;
  EXPECT_EQ(r.iterations, kIterations);
  EXPECT_FALSE(r.kvm_host.Summary().empty());
  ASSERT_EQ(r.overhead.size(), 2u);
  ASSERT_EQ(r.cases.size(), 10u);
  for (abi::CostCase c :
       {abi::CostCase::kUserToKernel, abi::CostCase::kKernelToUser, abi::CostCase::kUserToUser,
        abi::CostCase::kUserToUserSameMm, abi::CostCase::kKernelToKernel}) {
    for (abi::LazyMode m : {abi::LazyMode::kOn, abi::LazyMode::kOff}) {
      const CostCaseResult& x = Case(r, c, m);
      EXPECT_EQ(x.cycles.size(), size_t{kIterations}) << CostCaseName(c);
      EXPECT_LE(x.cycle_summary.min, x.cycle_summary.median);
      EXPECT_LE(x.cycle_summary.median, x.cycle_summary.max);
    }
  }
  const std::string table = FormatCostReport(r);
  EXPECT_THAT(table, HasSubstr("user -> kernel thread"));
  EXPECT_THAT(table, HasSubstr("kernel thread -> user"));
  EXPECT_THAT(table, HasSubstr("kernel -> kernel"));
  // The floor: a bare CR3 write and a bare stack switch, per mode. A stack switch is a dozen and
  // more instructions (__switch_to_asm's pushes, pops and ret, and its call); a CR3 write one.
  ASSERT_EQ(r.floor.size(), 4u);
  for (const CostFloorResult& f : r.floor) {
    EXPECT_GT(f.cycles, 0) << CostCaseName(f.which);
    if (!r.have_instructions) continue;
    EXPECT_TRUE(f.instructions_exact) << CostCaseName(f.which);
    if (f.which == abi::CostCase::kBareStackSwitch) {
      EXPECT_GE(f.instructions, 15) << CostCaseName(f.which);
    } else {
      EXPECT_GT(f.instructions, 0.5) << CostCaseName(f.which);
      EXPECT_LE(f.instructions, 1.0) << CostCaseName(f.which);
    }
  }
  EXPECT_THAT(table, HasSubstr("bare stack switch"));
  const nlohmann::json j = CostReportJson(r);
  EXPECT_EQ(j["floor"].size(), 4u);
  EXPECT_EQ(j["cases"].size(), 10u);
  EXPECT_EQ(j["cases"][0]["cycles"]["per_iteration"].size(), size_t{kIterations});
}

// Where lazy TLB keeps the page table, the guest writes no CR3; where it is off, kernel threads
// load init_mm. The guest's own count, per switch, in every iteration.
TEST_F(CostTest, Cr3WritesPerSwitchFollowTheModel) {
  const CostReport r = Run();
  ASSERT_TRUE(r.ok()) << r.failure;
  struct Expect {
    abi::CostCase c;
    int64_t on, off;
  };
  for (const Expect& e :
       {Expect{abi::CostCase::kUserToKernel, 0, 1}, Expect{abi::CostCase::kKernelToUser, 0, 1},
        Expect{abi::CostCase::kUserToUser, 1, 1}, Expect{abi::CostCase::kUserToUserSameMm, 0, 0},
        Expect{abi::CostCase::kKernelToKernel, 0, 0}}) {
    EXPECT_EQ(Case(r, e.c, abi::LazyMode::kOn).cr3_writes, e.on) << CostCaseName(e.c);
    EXPECT_EQ(Case(r, e.c, abi::LazyMode::kOff).cr3_writes, e.off) << CostCaseName(e.c);
  }
}

TEST_F(CostTest, InstructionCountsAreExactAndLazyTlbSavesSome) {
  const CostReport r = Run();
  ASSERT_TRUE(r.ok()) << r.failure;
  if (!r.have_instructions) {
    // Nothing to count on this host (hardware KVM, or no binary statistics): say why.
    EXPECT_FALSE(r.instructions_note.empty());
    EXPECT_THAT(FormatCostReport(r), HasSubstr("instruction counts: not available on this host"));
    for (const CostCaseResult& x : r.cases) EXPECT_TRUE(x.instructions.empty());
    return;
  }
  for (const CostMarkerOverhead& ov : r.overhead) EXPECT_GT(ov.instructions, 0);
  for (const CostCaseResult& x : r.cases) {
    ASSERT_EQ(x.instructions.size(), size_t{kIterations});
    EXPECT_TRUE(x.instructions_exact) << CostCaseName(x.which);
    for (int64_t n : x.instructions) {
      EXPECT_EQ(n, x.instructions[0]) << CostCaseName(x.which);
      EXPECT_GT(n, 0) << CostCaseName(x.which);
    }
  }
  // user -> kernel thread: lazy enter_lazy_tlb against a CR3 write of init_mm.
  EXPECT_LT(Case(r, abi::CostCase::kUserToKernel, abi::LazyMode::kOn).instruction_summary.median,
            Case(r, abi::CostCase::kUserToKernel, abi::LazyMode::kOff).instruction_summary.median);
  // Back to the borrowed mm: no CR3 write against one.
  EXPECT_LT(Case(r, abi::CostCase::kKernelToUser, abi::LazyMode::kOn).instruction_summary.median,
            Case(r, abi::CostCase::kKernelToUser, abi::LazyMode::kOff).instruction_summary.median);
  // Both modes take the same path between two mms.
  EXPECT_EQ(Case(r, abi::CostCase::kUserToUser, abi::LazyMode::kOn).instruction_summary.median,
            Case(r, abi::CostCase::kUserToUser, abi::LazyMode::kOff).instruction_summary.median);
}

TEST_F(CostTest, BadOptionsAreRejectedBeforeAnyGuestRuns) {
  CostOptions o;
  o.iterations = 0;
  absl::StatusOr<CostReport> r = RunCostBenchmark(kvm(), o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("--iterations=0"));
  o.iterations = static_cast<int>(abi::kMaxCostIterations) + 1;
  EXPECT_EQ(RunCostBenchmark(kvm(), o).status().code(), absl::StatusCode::kInvalidArgument);
}

class CostStatsTest : public KvmTest {};

TEST_F(CostStatsTest, VcpuStatisticsAreFoundByName) {
  absl::StatusOr<GuestImage> image = GuestImage::Embedded();
  ASSERT_TRUE(image.ok()) << image.status();
  VmConfig vc;
  vc.mem_bytes = 16ull << 20;
  absl::StatusOr<std::unique_ptr<Vm>> vm = Vm::Create(kvm(), *image, vc);
  ASSERT_TRUE(vm.ok()) << vm.status();
  absl::StatusOr<std::unique_ptr<KvmStats>> stats = KvmStats::Open(kvm(), (*vm)->vcpu(0).fd());
  if (!stats.ok()) {
    // Only a KVM without binary statistics may refuse, and it must say so.
    EXPECT_EQ(stats.status().code(), absl::StatusCode::kUnimplemented) << stats.status();
    EXPECT_THAT(std::string(stats.status().message()), HasSubstr("KVM_CAP_BINARY_STATS_FD"));
    return;
  }
  EXPECT_FALSE((*stats)->stats().empty());
  absl::StatusOr<KvmStats::Stat> exits = (*stats)->Find("exits");
  ASSERT_TRUE(exits.ok()) << exits.status();
  EXPECT_TRUE((*stats)->Read(*exits).ok());
  EXPECT_EQ((*stats)->Find("no_such_statistic").status().code(), absl::StatusCode::kNotFound);
}

// A stats file as KVM lays it out: header, descriptors with 16-byte names, values.
std::vector<uint8_t> FakeStatsFile(uint32_t num_desc, uint32_t name_size) {
  kvm_stats_header h{};
  h.name_size = name_size;
  h.num_desc = num_desc;
  h.id_offset = sizeof h;
  h.desc_offset = sizeof h + 16;
  const uint32_t desc_bytes = sizeof(KvmStatsDescHeader) + 16;
  h.data_offset = h.desc_offset + 2 * desc_bytes;
  std::vector<uint8_t> f(h.data_offset + 2 * 8, 0);
  std::memcpy(f.data(), &h, sizeof h);
  const char* names[] = {"exits", "insn_emulation"};
  for (uint32_t i = 0; i < 2; ++i) {
    KvmStatsDescHeader d{};
    d.size = 1;
    d.offset = i * 8;
    uint8_t* p = f.data() + h.desc_offset + i * desc_bytes;
    std::memcpy(p, &d, sizeof d);
    std::strcpy(reinterpret_cast<char*>(p + sizeof d), names[i]);
    const uint64_t value = 1000 + i;
    std::memcpy(f.data() + h.data_offset + i * 8, &value, 8);
  }
  return f;
}

UniqueFd MemFile(const std::vector<uint8_t>& bytes) {
  UniqueFd fd(memfd_create("stats", 0));
  EXPECT_TRUE(fd.valid());
  EXPECT_EQ(write(fd.get(), bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  return fd;
}

TEST(CostStatsParseTest, ReadsTheCLayoutOfDescriptors) {
  absl::StatusOr<std::unique_ptr<KvmStats>> stats = KvmStats::FromFd(MemFile(FakeStatsFile(2, 16)));
  ASSERT_TRUE(stats.ok()) << stats.status();
  ASSERT_EQ((*stats)->stats().size(), 2u);
  absl::StatusOr<KvmStats::Stat> insn = (*stats)->Find("insn_emulation");
  ASSERT_TRUE(insn.ok()) << insn.status();
  absl::StatusOr<uint64_t> v = (*stats)->Read(*insn);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, 1001u);
}

TEST(CostStatsParseTest, ReadCumulativeTakesTheCountersOnly) {
  std::vector<uint8_t> f = FakeStatsFile(2, 16);
  absl::StatusOr<std::unique_ptr<KvmStats>> stats = KvmStats::FromFd(MemFile(f));
  ASSERT_TRUE(stats.ok()) << stats.status();
  absl::StatusOr<std::vector<std::pair<std::string, uint64_t>>> all = (*stats)->ReadCumulative();
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(*all, (std::vector<std::pair<std::string, uint64_t>>{{"exits", 1000},
                                                                 {"insn_emulation", 1001}}));
  // insn_emulation made an instant value (KVM_STATS_TYPE_INSTANT): a delta of it means
  // nothing, so it is left out.
  kvm_stats_header h;
  std::memcpy(&h, f.data(), sizeof h);
  KvmStatsDescHeader d;
  uint8_t* second = f.data() + h.desc_offset + sizeof(KvmStatsDescHeader) + 16;
  std::memcpy(&d, second, sizeof d);
  d.flags = KVM_STATS_TYPE_INSTANT;
  std::memcpy(second, &d, sizeof d);
  stats = KvmStats::FromFd(MemFile(f));
  ASSERT_TRUE(stats.ok()) << stats.status();
  all = (*stats)->ReadCumulative();
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(*all, (std::vector<std::pair<std::string, uint64_t>>{{"exits", 1000}}));
}

TEST(CostStatsParseTest, ImplausibleHeadersAndShortFilesAreDataLoss) {
  EXPECT_EQ(KvmStats::FromFd(MemFile(FakeStatsFile(1u << 30, 16))).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(KvmStats::FromFd(MemFile(FakeStatsFile(2, 0))).status().code(),
            absl::StatusCode::kDataLoss);
  std::vector<uint8_t> cut = FakeStatsFile(2, 16);
  cut.resize(30);  // the descriptors are missing
  EXPECT_EQ(KvmStats::FromFd(MemFile(cut)).status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace activemm
