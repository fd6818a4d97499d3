// What the host makes of guest state a hostile guest writes (docs/architecture.md, "A hostile
// guest"), without a guest: counts near 2^64 in the model's counters.
#include <stdint.h>

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shared/mm_abi.h"
#include "vmm/kvm/guest_memory.h"
#include "vmm/model/model_state.h"

namespace activemm {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr uint64_t kRam = 0x40000;
constexpr uint64_t kCpusPa = 0x20000;

class HostileStateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mem_ = GuestMemory::WrapForTesting(ram_.data(), ram_.size());
    abi::MmDirectory dir{};
    dir.cpus_pa = kCpusPa;
    dir.tasks_pa = 0x30000;
    dir.mm_slots_pa = 0x38000;
    ASSERT_TRUE(mem_->Write(abi::kMmDirectoryPa, dir).ok());
  }
  void SetCounters(int cpu, uint64_t value) {
    abi::CpuMmState c{};
    uint64_t* words = reinterpret_cast<uint64_t*>(&c.counters);
    for (int i = 0; i < abi::kNumMmCounters; ++i) words[i] = value;
    ASSERT_TRUE(mem_->Write(kCpusPa + cpu * sizeof(abi::CpuMmState), c).ok());
  }

  std::vector<uint8_t> ram_ = std::vector<uint8_t>(kRam, 0);
  std::unique_ptr<GuestMemory> mem_;
};

TEST_F(HostileStateTest, CountersNear2To64AreReportedAndTheirTotalsSaturate) {
  SetCounters(0, 3);
  SetCounters(1, UINT64_MAX - 1);
  absl::StatusOr<ModelSnapshot> s = ReadModel(*mem_, 2, 0, 0);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_THAT(s->problems, ElementsAre(HasSubstr("CPU 1: counter context_switches is "
                                                 "0xfffffffffffffffe, more than any run counts")));
  const abi::MmCounters total = TotalCounters(*s);
  for (int i = 0; i < abi::kNumMmCounters; ++i) EXPECT_EQ(CounterValue(total, i), UINT64_MAX);
}

TEST_F(HostileStateTest, PlausibleCountersAreNoProblem) {
  SetCounters(0, uint64_t{1} << 48);
  SetCounters(1, 7);
  absl::StatusOr<ModelSnapshot> s = ReadModel(*mem_, 2, 0, 0);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->problems.empty());
  EXPECT_EQ(CounterValue(TotalCounters(*s), 0), (uint64_t{1} << 48) + 7);
}

}  // namespace
}  // namespace activemm
