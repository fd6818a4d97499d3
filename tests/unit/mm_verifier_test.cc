// The host's verifier (vmm/model/mm_verifier.h) in-process, on a model written by hand into plain
// memory, as gVisor tests its page tables: a consistent state passes, and each rule, broken on
// its own, is reported under its name. No guest and no KVM: the KVM tests show the rules hold
// in real runs, these that each one is checked at all.
#include "vmm/model/mm_verifier.h"

#include <linux/kvm.h>
#include <stdint.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shared/mm_abi.h"
#include "shared/x86.h"
#include "vmm/kvm/guest_image.h"
#include "vmm/kvm/guest_memory.h"
#include "vmm/model/model_state.h"
#include "vmm/model/scenario.h"

namespace activemm {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr uint64_t kInitPgd = 0x1000;
constexpr uint64_t kPgdA = 0x2000;
constexpr uint64_t kPgdB = 0x3000;
constexpr uint64_t kDataPage = 0x4000;
constexpr int32_t kA = 1, kB = 2;          // mm slots
constexpr int32_t kIdle1 = 1, kTaskA = 2;  // tasks (0 and 1 are the idle tasks)
constexpr int32_t kTaskB = 3, kKthread = 4;

// Two CPUs on their idle tasks, which borrow init_mm; processes A and B each with an mm of its
// own (no pages, no control page: nothing to map), not running; a kernel thread, not running.
class MmVerifierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mem_ = GuestMemory::WrapForTesting(ram_.data(), ram_.size());
    absl::StatusOr<GuestImage> image = GuestImage::Embedded();
    ASSERT_TRUE(image.ok()) << image.status();
    image_ = std::make_unique<GuestImage>(*std::move(image));
    sc_.cpus = 2;
    sc_.task_names = {"idle/0", "idle/1", "A", "B", "K"};
    sc_.mm_names = {"init_mm", "A", "B"};

    for (uint64_t pgd : {kInitPgd, kPgdA, kPgdB}) {
      s_.mms.push_back({abi::SlotState::kLive, pgd, true, static_cast<uint32_t>(s_.mms.size())});
      abi::MmStruct mm{};
      mm.magic = abi::kMmMagic;
      mm.pgd_pa = pgd;
      mm.ctx_id = s_.mm_structs.size();
      mm.mm_users = 1;
      mm.mm_count = 1;
      s_.mm_structs.push_back(mm);
    }
    Mm(abi::kInitMm).mm_count = 3;  // its users, and the two idle tasks' lazy references
    for (int c = 0; c < 2; ++c) {
      s_.tasks.push_back({static_cast<uint32_t>(abi::TaskState::kRunning),
                          abi::kPfKthread | abi::kPfIdle, abi::kNoMm, abi::kInitMm, c, 0, 0, 0});
      abi::CpuMmState cpu{};
      cpu.curr = cpu.idle = c;
      cpu.prev_mm = abi::kNoMm;
      cpu.loaded_mm = abi::kInitMm;
      cpu.ctxs[0] = {0, 0};  // ASID 0 holds init_mm (ctx_id 0)
      s_.cpus.push_back(cpu);
    }
    for (int32_t mm : {kA, kB}) {
      s_.tasks.push_back(
          {static_cast<uint32_t>(abi::TaskState::kRunnable), 0, mm, mm, abi::kNoCpu, 0, 0, 0});
    }
    s_.tasks.push_back({static_cast<uint32_t>(abi::TaskState::kRunnable), abi::kPfKthread,
                        abi::kNoMm, abi::kNoMm, abi::kNoCpu, 0, 0, 0});
    sregs_.resize(2);
    for (kvm_sregs& r : sregs_) r.cr3 = kInitPgd;
  }

  abi::MmStruct& Mm(int32_t slot) { return s_.mm_structs[s_.mms[slot].mm_index]; }

  // CPU `c` switches to process `task` (mm `mm`) as switch_mm_irqs_off leaves it: loaded,
  // in the mm's cpumask, ASID 1 holding the mm at its generation, the real CR3 its pgd.
  void Run(int c, int32_t task, int32_t mm) {
    s_.tasks[c].state = static_cast<uint32_t>(abi::TaskState::kRunnable);
    s_.tasks[c].on_cpu = abi::kNoCpu;
    // The idle task hands its borrowed init_mm over (prev->active_mm = NULL) and
    // finish_task_switch drops the lazy reference.
    s_.tasks[c].active_mm = abi::kNoMm;
    Mm(abi::kInitMm).mm_count -= 1;
    s_.tasks[task].state = static_cast<uint32_t>(abi::TaskState::kRunning);
    s_.tasks[task].on_cpu = c;
    s_.cpus[c].curr = task;
    s_.cpus[c].loaded_mm = mm;
    s_.cpus[c].loaded_mm_asid = 1;
    s_.cpus[c].ctxs[1] = {Mm(mm).ctx_id, Mm(mm).tlb_gen};
    Mm(mm).cpumask |= uint64_t{1} << c;
    sregs_[c].cr3 = Mm(mm).pgd_pa;
  }

  std::set<std::string> Rules(abi::LazyMode lazy = abi::LazyMode::kOn) {
    VerifierConfig config;
    config.lazy = lazy;
    config.swapper_pgd_pa = kInitPgd;
    MmVerifier v(sc_, *image_, config);
    std::set<std::string> rules;
    messages_.clear();
    for (const Violation& x : v.VerifyAll(*mem_, s_, sregs_, present_)) {
      rules.insert(x.rule);
      messages_.push_back(x.message);
    }
    return rules;
  }

  std::vector<uint8_t> ram_ = std::vector<uint8_t>(0x10000);
  std::unique_ptr<GuestMemory> mem_;
  std::unique_ptr<GuestImage> image_;
  Scenario sc_;
  ModelSnapshot s_;
  std::vector<kvm_sregs> sregs_;
  std::vector<bool> present_ = {true, true};
  std::vector<std::string> messages_;
};

TEST_F(MmVerifierTest, AConsistentStatePasses) {
  EXPECT_THAT(Rules(), IsEmpty()) << testing::PrintToString(messages_);
  Run(0, kTaskA, kA);
  Run(1, kTaskB, kB);
  EXPECT_THAT(Rules(), IsEmpty()) << testing::PrintToString(messages_);
}

TEST_F(MmVerifierTest, ALazyBorrowerNeedsItsReference) {
  Run(0, kTaskA, kA);
  // A -> K: the kernel thread borrows mm A and holds a reference on it.
  s_.tasks[kTaskA].state = static_cast<uint32_t>(abi::TaskState::kRunnable);
  s_.tasks[kKthread] = {
      static_cast<uint32_t>(abi::TaskState::kRunning), abi::kPfKthread, abi::kNoMm, kA, 0, 0, 0, 0};
  s_.cpus[0].curr = kKthread;
  s_.cpus[0].is_lazy = 1;
  Mm(kA).mm_count = 2;
  EXPECT_THAT(Rules(), IsEmpty()) << testing::PrintToString(messages_);
  // Without lazy references (shootdown) the count is 1 ...
  EXPECT_THAT(Rules(abi::LazyMode::kShootdown), ElementsAre("mm_count"));
  // ... and with lazy TLB off nothing may borrow A at all.
  EXPECT_THAT(Rules(abi::LazyMode::kOff), Contains("lazy-tlb-off"));
  Mm(kA).mm_count = 1;  // the reference skip-lazy-mmgrab forgets
  EXPECT_THAT(Rules(), ElementsAre("mm_count"));
}

TEST_F(MmVerifierTest, EachRefcountRule) {
  Mm(kA).mm_users = 2;
  EXPECT_THAT(Rules(), ElementsAre("mm_users"));
  Mm(kA).mm_users = 1;
  Mm(kB).mm_count = 0;  // users but no count: two statements of the same break
  EXPECT_THAT(Rules(), ElementsAre("mm_count"));
  EXPECT_THAT(messages_, Contains(testing::HasSubstr("mm_users 1 > 0 but mm_count 0")));
}

TEST_F(MmVerifierTest, EachReferenceRule) {
  s_.tasks[kTaskA].active_mm = 7;  // no such slot
  EXPECT_THAT(Rules(), Contains("reference"));
  s_.tasks[kTaskA].active_mm = kB;  // owns A, runs on B
  EXPECT_THAT(Rules(), Contains("active_mm"));
  s_.tasks[kTaskA].active_mm = kA;

  s_.mms[kB].state = abi::SlotState::kFreed;  // B freed under its owner
  EXPECT_THAT(Rules(), Contains("use-after-free"));
  s_.mms[kB].state = abi::SlotState::kLive;

  s_.tasks[kTaskB].state = static_cast<uint32_t>(abi::TaskState::kDead);  // dead, mm kept
  EXPECT_THAT(Rules(), Contains("exit"));
}

TEST_F(MmVerifierTest, EachRunQueueRule) {
  s_.cpus[1].prev_mm = kA;  // finish_task_switch did not drop it
  EXPECT_THAT(Rules(), Contains("prev_mm"));
  s_.cpus[1].prev_mm = abi::kNoMm;

  s_.cpus[1].curr = 99;
  EXPECT_THAT(Rules(), Contains("rq"));
  s_.cpus[1].curr = kIdle1;

  s_.cpus[1].loaded_mm = kB;  // the idle task borrows init_mm, the CPU has B loaded
  EXPECT_THAT(Rules(), Contains("active_mm-loaded"));
}

TEST_F(MmVerifierTest, EachTlbRule) {
  Run(0, kTaskA, kA);
  Mm(kA).cpumask = 0;  // a flush would skip CPU 0
  EXPECT_THAT(Rules(), ElementsAre("mm_cpumask"));
  Mm(kA).cpumask = 1;

  Mm(kA).tlb_gen = 5;  // flushed; CPU 0, running A, never caught up
  EXPECT_THAT(Rules(), ElementsAre("tlb_gen"));
  s_.cpus[0].late_ipi_pending = 1;  // unless the IPI is still on its way
  EXPECT_THAT(Rules(), IsEmpty()) << testing::PrintToString(messages_);
  s_.cpus[0].late_ipi_pending = 0;
  s_.cpus[0].ctxs[1].tlb_gen = 5;

  s_.cpus[0].ctxs[1].ctx_id = Mm(kB).ctx_id;  // the ASID holds another mm
  EXPECT_THAT(Rules(), ElementsAre("asid"));
  s_.cpus[0].ctxs[1].ctx_id = Mm(kA).ctx_id;

  sregs_[0].cr3 = kPgdB;  // the real CR3 is not loaded_mm's
  EXPECT_THAT(Rules(), ElementsAre("cr3"));
  present_[0] = false;  // a vCPU whose registers were not read is not compared
  EXPECT_THAT(Rules(), IsEmpty());
}

TEST_F(MmVerifierTest, EachPageTableRule) {
  auto* a = reinterpret_cast<uint64_t*>(ram_.data() + kPgdA);
  a[abi::kFirstKernelPml4Index] = 0x5000 | x86::Pte::kPresent;  // its own kernel half
  EXPECT_THAT(Rules(), ElementsAre("kernel-half"));
  a[abi::kFirstKernelPml4Index] = 0;

  a[0] = 0x4000 | x86::Pte::kPresent | x86::Pte::kUser;  // a user mapping no list has
  Mm(kA).ctl_pa = 0x6000;  // with a control page, the mm's mappings are checked
  EXPECT_THAT(Rules(), ElementsAre("mapping"));
  a[0] = 0;
  Mm(kA).ctl_pa = 0;

  Mm(kB).pgd_pa = 0x100000;  // outside RAM
  EXPECT_THAT(Rules(), Contains("page-tables"));
  Mm(kB).pgd_pa = kPgdB;

  // A data page both mms list, whose contents are not what its last writer left.
  for (int32_t mm : {kA, kB}) {
    Mm(mm).nr_pages = 1;
    Mm(mm).pages[0] = {abi::kUserDataVa, kDataPage, 0x1234,
                       static_cast<uint32_t>(abi::PageState::kMapped), abi::kPageWritable};
  }
  EXPECT_THAT(Rules(), ElementsAre("page-content", "page-shared"));
}

TEST_F(MmVerifierTest, WhatTheSnapshotFoundWrongIsReported) {
  s_.problems.push_back("task 9: state 77 is not a task state");
  EXPECT_THAT(Rules(), ElementsAre("guest-state"));
}

}  // namespace
}  // namespace activemm
