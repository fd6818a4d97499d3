// FormParallelBlocks on hand-made programs: which switches share a block, which run alone, and
// that every step keeps its place per CPU. That blocks change no decision is checked on KVM
// (tests/kvm/replay_test.cc: the shared traces replayed with and without them).
#include "vmm/replay/parallel_blocks.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shared/mm_abi.h"
#include "vmm/model/scenario.h"

namespace activemm {
namespace {

using abi::StepOp;

// Two CPUs; tasks 0 and 1 are their idle tasks.
class ProgramBuilder {
 public:
  ProgramBuilder& Spawn(int32_t task, int32_t mm, int cpu = 0) {
    abi::Step s = Make(StepOp::kSpawn, cpu, task);
    s.mm = mm;
    prog_.push_back(s);
    return *this;
  }
  ProgramBuilder& CloneVm(int32_t task, int32_t parent, int cpu = 0) {
    abi::Step s = Make(StepOp::kCloneVm, cpu, task);
    s.parent = parent;
    prog_.push_back(s);
    return *this;
  }
  ProgramBuilder& Kthread(int32_t task) {
    prog_.push_back(Make(StepOp::kKthread, 0, task));
    return *this;
  }
  ProgramBuilder& Run(int cpu, int32_t task, uint32_t arg = 0) {
    abi::Step s = Make(StepOp::kRun, cpu, task);
    s.arg = arg;
    prog_.push_back(s);
    return *this;
  }
  ProgramBuilder& Idle(int cpu, uint32_t arg = 0) {
    abi::Step s = Make(StepOp::kIdle, cpu, abi::kNoTask);
    s.arg = arg;
    prog_.push_back(s);
    return *this;
  }
  ProgramBuilder& Exit(int cpu, int32_t task) {
    abi::Step s = Make(StepOp::kExit, cpu, task);
    s.arg = abi::kExitKeepsRunning;
    prog_.push_back(s);
    return *this;
  }
  ProgramBuilder& Flush(int cpu, int32_t task, int32_t mm, uint64_t late_cpus) {
    abi::Step s = Make(StepOp::kFlush, cpu, task);
    s.mm = mm;
    s.late_ipi_cpus = late_cpus;
    prog_.push_back(s);
    return *this;
  }
  // n rounds of: CPU 0 runs a, goes idle; CPU 1 runs b, goes idle.
  ProgramBuilder& PingPong(int32_t a, int32_t b, int n) {
    for (int i = 0; i < n; ++i) Run(0, a).Run(1, b).Idle(0).Idle(1);
    return *this;
  }
  const std::vector<abi::Step>& program() const { return prog_; }
  int size() const { return static_cast<int>(prog_.size()); }

 private:
  abi::Step Make(StepOp op, int cpu, int32_t task) {
    return ModelStep(op, cpu, task, static_cast<uint32_t>(prog_.size()), false);
  }
  std::vector<abi::Step> prog_;
};

// The heads of `b`'s blocks, as (position, steps).
std::vector<std::pair<int, uint32_t>> Heads(const ParallelBlocks& b) {
  std::vector<std::pair<int, uint32_t>> heads;
  for (size_t i = 0; i < b.program.size(); ++i) {
    if (b.program[i].op == static_cast<uint32_t>(StepOp::kParallel)) {
      heads.emplace_back(static_cast<int>(i), b.program[i].arg);
    }
  }
  return heads;
}

// Every old step is in the new program, in order, at new_index; only heads were added.
void ExpectSameStepsInOrder(const std::vector<abi::Step>& old, const ParallelBlocks& b) {
  ASSERT_EQ(b.new_index.size(), old.size());
  int last = -1;
  for (size_t i = 0; i < old.size(); ++i) {
    const int n = b.new_index[i];
    ASSERT_GT(n, last) << "step " << i;
    ASSERT_LT(n, static_cast<int>(b.program.size()));
    EXPECT_EQ(b.program[n].index, old[i].index);
    EXPECT_EQ(b.program[n].op, old[i].op);
    last = n;
  }
  EXPECT_EQ(b.program.size(), old.size() + Heads(b).size());
  EXPECT_EQ(b.blocks, static_cast<int>(Heads(b).size()));
}

TEST(ParallelBlocksTest, TwoProcessesOnTwoCpusShareOneBlock) {
  ProgramBuilder p;
  p.Spawn(2, 1).Spawn(3, 2).PingPong(2, 3, 10);
  const ParallelBlocks b = FormParallelBlocks(p.program(), 2);
  ExpectSameStepsInOrder(p.program(), b);
  // The spawns run alone; the 40 switches in one block right after them.
  EXPECT_THAT(Heads(b), testing::ElementsAre(std::make_pair(2, 40u)));
  EXPECT_EQ(b.steps_in_blocks, 40);
}

TEST(ParallelBlocksTest, ATaskOnTwoCpusEndsTheBlock) {
  ProgramBuilder p;
  p.Spawn(2, 1).Spawn(3, 2).PingPong(2, 3, 4);
  p.Run(1, 2).Idle(1);  // task 2 moves to CPU 1: it was CPU 0's in this block
  p.PingPong(3, 2, 4);
  const ParallelBlocks b = FormParallelBlocks(p.program(), 2);
  ExpectSameStepsInOrder(p.program(), b);
  EXPECT_THAT(Heads(b), testing::ElementsAre(std::make_pair(2, 16u), std::make_pair(19, 18u)));
}

TEST(ParallelBlocksTest, ThreadsOfOneMmGoBackToRing3OnOneCpuAtATime) {
  ProgramBuilder p;
  p.Spawn(2, 1).CloneVm(3, 2);  // two threads of mm 1
  p.PingPong(2, 3, 4);
  const ParallelBlocks b = FormParallelBlocks(p.program(), 2);
  ExpectSameStepsInOrder(p.program(), b);
  EXPECT_THAT(Heads(b), testing::IsEmpty());
}

TEST(ParallelBlocksTest, AKernelThreadBorrowsTheMmAThreadRunsOnElsewhere) {
  ProgramBuilder p;
  p.Spawn(2, 1).CloneVm(3, 2).Kthread(4);
  p.Run(1, 3);  // CPU 1 runs thread 3 of mm 1, CPU 0 borrows mm 1 in its kernel thread
  for (int i = 0; i < 6; ++i) p.Run(0, 2).Run(0, 4).Idle(1).Run(1, 3);
  const ParallelBlocks b = FormParallelBlocks(p.program(), 2);
  ExpectSameStepsInOrder(p.program(), b);
  // Thread 2 goes back to ring 3 on CPU 0, thread 3 on CPU 1: mm 1 is claimed by the first.
  // Each block ends where the other CPU's thread would run.
  EXPECT_THAT(Heads(b), testing::IsEmpty());

  ProgramBuilder q;
  q.Spawn(2, 1).Spawn(3, 2).Kthread(4);
  q.Run(0, 2);
  for (int i = 0; i < 6; ++i) q.Run(0, 4).Run(1, 3).Idle(0).Idle(1);  // CPU 0 lazy on mm 1
  const ParallelBlocks c = FormParallelBlocks(q.program(), 2);
  ExpectSameStepsInOrder(q.program(), c);
  EXPECT_THAT(Heads(c), testing::ElementsAre(std::make_pair(3, 25u)));
}

TEST(ParallelBlocksTest, FlushesExitsAndDyingTasksRunAlone) {
  ProgramBuilder p;
  p.Spawn(2, 1).Spawn(3, 2).PingPong(2, 3, 3).Run(0, 2);
  p.Flush(0, 2, 1, /*late_cpus=*/0b10);  // CPU 1's next step handles a late IPI
  p.Idle(1).Idle(0).PingPong(2, 3, 3).Run(0, 2);
  p.Exit(0, 2).Run(1, 3).Idle(0, abi::kSwitchPrevDies);
  const ParallelBlocks b = FormParallelBlocks(p.program(), 2);
  ExpectSameStepsInOrder(p.program(), b);
  // 13 switches; the flush and CPU 1's next step alone; CPU 0's idle, 12 switches and a run;
  // the exit, and the rest too short for a block.
  EXPECT_THAT(Heads(b), testing::ElementsAre(std::make_pair(2, 13u), std::make_pair(18, 14u)));
}

TEST(ParallelBlocksTest, AnMmWithNoOwnerLeftIsNeverInABlock) {
  ProgramBuilder p;
  p.Spawn(2, 1).Spawn(3, 2).Kthread(4);
  p.Run(0, 2).Exit(0, 2).Run(0, 4, abi::kSwitchPrevDies);  // CPU 0's kthread borrows dead mm 1
  for (int i = 0; i < 8; ++i) p.Run(1, 3).Idle(1);
  p.Idle(0);  // the switch that drops mm 1's last reference
  for (int i = 0; i < 8; ++i) p.Run(1, 3).Idle(1);
  const ParallelBlocks b = FormParallelBlocks(p.program(), 2);
  ExpectSameStepsInOrder(p.program(), b);
  // CPU 1 alone has block-able steps: no block has two CPUs.
  EXPECT_THAT(Heads(b), testing::IsEmpty());
}

TEST(ParallelBlocksTest, ShortRunsStaySerialAndLongOnesAreCut) {
  ProgramBuilder p;
  p.Spawn(2, 1).Spawn(3, 2).PingPong(2, 3, 1);  // 4 switches: too few to pay for a block
  const ParallelBlocks b = FormParallelBlocks(p.program(), 2);
  EXPECT_THAT(Heads(b), testing::IsEmpty());

  ProgramBuilder q;
  q.Spawn(2, 1).Spawn(3, 2).PingPong(2, 3, 50);  // 200 switches
  const ParallelBlocks c = FormParallelBlocks(q.program(), 2);
  ExpectSameStepsInOrder(q.program(), c);
  EXPECT_THAT(Heads(c),
              testing::ElementsAre(std::make_pair(2, kMaxParallelBlockSteps),
                                   std::make_pair(3 + static_cast<int>(kMaxParallelBlockSteps),
                                                  200u - kMaxParallelBlockSteps)));
}

}  // namespace
}  // namespace activemm
