// The host's side of the program window: steps go into their slots ahead of the guest, every
// finished step's record comes back in program order across any number of windows, and a
// refill the protocol cannot produce is refused.
#include "vmm/model/program_stream.h"

#include <memory>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shared/mm_abi.h"

namespace activemm {
namespace {

using ::testing::HasSubstr;

class ProgramStreamTest : public ::testing::Test {
 protected:
  // Guest RAM up to the image: the header, the steps' and the records' slots.
  ProgramStreamTest()
      : ram_(abi::kImageLoadPa), mem_(GuestMemory::WrapForTesting(ram_.data(), ram_.size())) {}

  static std::vector<abi::Step> Program(uint32_t n) {
    std::vector<abi::Step> p(n);
    for (uint32_t i = 0; i < n; ++i) p[i].index = i;
    return p;
  }
  const abi::ScenarioHeader& Header() const {
    return *reinterpret_cast<const abi::ScenarioHeader*>(&ram_[abi::kScenarioPa]);
  }
  abi::Step& Slot(uint32_t step) {
    return reinterpret_cast<abi::Step*>(&ram_[abi::kProgramStepsPa])[abi::ProgramSlot(step)];
  }
  abi::StepRecord& Record(uint32_t step) {
    return reinterpret_cast<abi::StepRecord*>(
        &ram_[abi::kProgramRecordsPa])[abi::ProgramSlot(step)];
  }
  // What the guest does when it finishes step i: its record in i's slot.
  void Finish(uint32_t i) {
    ASSERT_LT(i, Header().steps_loaded);
    ASSERT_EQ(Slot(i).index, i) << "step " << i << " is not in its slot";
    Record(i).result = abi::kStepExecuted;
    Record(i).tsc_begin = 1000 + i;
  }

  std::vector<uint8_t> ram_;
  std::unique_ptr<GuestMemory> mem_;
};

TEST_F(ProgramStreamTest, AShortProgramIsLoadedWholeAndNeverRefilled) {
  const std::vector<abi::Step> p = Program(100);
  ProgramStream stream(p, *mem_);
  abi::ScenarioHeader config{};
  config.num_asids = 6;
  ASSERT_TRUE(stream.Start(config).ok());
  EXPECT_EQ(Header().num_steps, 100u);
  EXPECT_EQ(Header().steps_loaded, 100u);
  EXPECT_EQ(Header().num_asids, 6u);
  for (uint32_t i = 0; i < 60; ++i) Finish(i);
  const std::vector<abi::StepRecord> r = stream.TakeRecords();
  ASSERT_EQ(r.size(), 100u);
  EXPECT_EQ(r[59].tsc_begin, 1059u);
  EXPECT_EQ(r[60].result, 0);  // never executed
}

TEST_F(ProgramStreamTest, ALongProgramStreamsAndEveryRecordComesBackInOrder) {
  const uint32_t n = 3 * abi::kProgramWindow + 123;
  const std::vector<abi::Step> p = Program(n);
  ProgramStream stream(p, *mem_);
  ASSERT_TRUE(stream.Start(abi::ScenarioHeader{}).ok());
  EXPECT_EQ(Header().steps_loaded, abi::kProgramWindow);
  // The guest's rule: refill once fewer than kProgramRefillAhead steps are loaded ahead.
  for (uint32_t next = 0; next < n; ++next) {
    Finish(next);
    const uint32_t after = next + 1;
    const uint32_t loaded = Header().steps_loaded;
    if (after < n && loaded < n && loaded < after + abi::kProgramRefillAhead) {
      ASSERT_TRUE(stream.Refill(after).ok()) << "after " << after;
      EXPECT_EQ(Header().steps_loaded, std::min(n, after + abi::kProgramWindow));
    }
  }
  // At 4097, 8194, 12291, 16388 and 20485 steps: each half window, until the last is loaded.
  EXPECT_EQ(stream.refills(), 5u);
  const std::vector<abi::StepRecord> r = stream.TakeRecords();
  ASSERT_EQ(r.size(), n);
  for (uint32_t i = 0; i < n; ++i) {
    ASSERT_EQ(r[i].tsc_begin, 1000 + i) << "step " << i;
  }
}

TEST_F(ProgramStreamTest, ARefillTheProtocolCannotProduceIsRefused) {
  const std::vector<abi::Step> p = Program(2 * abi::kProgramWindow);
  ProgramStream stream(p, *mem_);
  ASSERT_TRUE(stream.Start(abi::ScenarioHeader{}).ok());
  // Beyond what was ever loaded: the guest cannot have finished those steps.
  absl::Status s = stream.Refill(abi::kProgramWindow + 1);
  EXPECT_THAT(s.message(), HasSubstr("after 8193 steps, but 8192 were loaded"));
  ASSERT_TRUE(stream.Refill(5000).ok());
  // Backwards, below records already copied out.
  s = stream.Refill(4999);
  EXPECT_THAT(s.message(), HasSubstr("after 4999 steps, but 13192 were loaded and 5000"));
  // A 64-bit count is not truncated into range.
  EXPECT_FALSE(stream.Refill((uint64_t{1} << 32) + 6000).ok());
}

TEST_F(ProgramStreamTest, AnEmptyOrOversizedProgramIsRefused) {
  const std::vector<abi::Step> empty;
  ProgramStream stream(empty, *mem_);
  EXPECT_THAT(stream.Start(abi::ScenarioHeader{}).message(), HasSubstr("a program of 0 steps"));
}

}  // namespace
}  // namespace activemm
