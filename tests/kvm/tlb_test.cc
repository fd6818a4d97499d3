// ASIDs and TLB shootdowns on real KVM, with expectations derived by hand from
// arch/x86/mm/tlb.c (switch_mm_irqs_off, choose_new_asid, flush_tlb_mm_range, flush_tlb_func),
// and the planted bugs of this layer caught by the rule they break.
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shared/mm_abi.h"
#include "tests/kvm/kvm_test_util.h"
#include "vmm/model/scenario.h"
#include "vmm/model/scenario_run.h"

namespace activemm {
namespace {

using ::testing::HasSubstr;

absl::StatusOr<ScenarioReport> RunJson(const Kvm& kvm, const std::string& json,
                                       abi::MmBug bug = abi::MmBug::kNone,
                                       abi::LazyMode lazy = abi::LazyMode::kOn) {
  CompileOptions co;
  co.verify_every_step = true;
  absl::StatusOr<Scenario> sc = CompileScenario(json, "test", co);
  if (!sc.ok()) return sc.status();
  ScenarioRunOptions o;
  o.lazy = lazy;
  o.bug = bug;
  o.pcid = abi::PcidMode::kModeled;
  o.mem_bytes = 64ull << 20;
  o.timeout = absl::Seconds(20);
  return RunScenarioOnKvm(kvm, *sc, o);
}

class TlbTest : public KvmTest {};

// Thread A1 of A runs on CPU 1, which then runs kernel thread K (lazy on A). CPU 0 unmaps a
// page of A: tlb_gen 0 -> 1; CPU 1 is lazy, so no IPI (should_flush_tlb); CPU 0 flushes the
// page itself (INVLPG). When CPU 1 switches back to A1 it is the same mm, was lazy, and its
// ASID's tlb_gen 0 is behind 1: one flushing CR3 write with the same ASID.
constexpr const char* kLazySkipped = R"({"version": 1, "name": "lazy-skipped", "cpus": 2,
 "steps": [{"op": "spawn", "task": "A"}, {"op": "clone_vm", "parent": "A", "task": "A1"},
  {"op": "kthread", "task": "K"},
  {"op": "run", "cpu": 0, "task": "A"}, {"op": "run", "cpu": 1, "task": "A1"},
  {"op": "run", "cpu": 1, "task": "K"},
  {"op": "munmap", "task": "A", "pages": 1},
  {"op": "counters", "shootdowns": 1, "ipis_sent": 0, "invlpg": 1},
  {"op": "check", "mm": "A", "loaded_on": [0, 1], "lazy_on": [1]},
  {"op": "run", "cpu": 1, "task": "A1"},
  {"op": "counters", "cpu": 1, "cr3_writes": 2, "cr3_writes_flush": 2, "cr3_writes_noflush": 0,
   "ipis_received": 0}]})";

TEST_F(TlbTest, ALazyCpuSkippedByMunmapReloadsWithAFlush) {
  absl::StatusOr<ScenarioReport> r = RunJson(kvm(), kLazySkipped);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->ok()) << r->run.report << (r->violations.empty() ? "" : r->violations[0].message);
  EXPECT_EQ(r->checks_passed, 3);
}

TEST_F(TlbTest, ForgettingTheTlbGenCheckAfterLazyModeIsCaught) {
  absl::StatusOr<ScenarioReport> r = RunJson(kvm(), kLazySkipped, abi::MmBug::kNoTlbGenCheck);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_FALSE(r->violations.empty()) << r->run.report;
  EXPECT_EQ(r->violations[0].rule, "tlb_gen");
  EXPECT_THAT(r->violations[0].message, HasSubstr("CPU 1 runs on mm 'A' (not lazy)"));
}

// Both threads of A run (not lazy) on CPUs 0 and 1; CPU 0 unmaps a page: CPU 1 gets the IPI
// and flushes the page (flush_tlb_func: exactly one generation behind, a partial flush).
constexpr const char* kRemoteFlush = R"({"version": 1, "name": "remote-flush", "cpus": 2,
 "steps": [{"op": "spawn", "task": "A"}, {"op": "clone_vm", "parent": "A", "task": "A1"},
  {"op": "run", "cpu": 0, "task": "A"}, {"op": "run", "cpu": 1, "task": "A1"},
  {"op": "munmap", "task": "A", "pages": 1},
  {"op": "counters", "cpu": 0, "shootdowns": 1, "ipis_sent": 1, "invlpg": 1},
  {"op": "counters", "cpu": 1, "ipis_received": 1, "invlpg": 1, "full_flushes": 0}]})";

TEST_F(TlbTest, AMunmapIpisTheOtherCpuRunningTheMm) {
  absl::StatusOr<ScenarioReport> r = RunJson(kvm(), kRemoteFlush);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->ok()) << r->run.report << (r->violations.empty() ? "" : r->violations[0].message);
  EXPECT_EQ(r->checks_passed, 2);
}

TEST_F(TlbTest, SkippingTheIpiToANonLazyCpuIsCaught) {
  absl::StatusOr<ScenarioReport> r = RunJson(kvm(), kRemoteFlush, abi::MmBug::kSkipIpiNonLazy);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_FALSE(r->violations.empty()) << r->run.report;
  EXPECT_EQ(r->violations[0].rule, "tlb_gen");
  EXPECT_THAT(r->violations[0].message, HasSubstr("CPU 1 runs on mm 'A' (not lazy) with its ASID"));
}

// One CPU runs n processes round-robin twice. Round 1: every switch misses (n flushing loads;
// ASIDs 1..5, then slot 0 and wrap). Round 2 with n <= 6: every process still owns its slot with
// an unchanged tlb_gen: n TLB-preserving loads. With n = 7 the 7th process took slot 1 from the
// 1st, so round 2 misses every time (each eviction takes the next victim's slot): 2n flushes.
std::string Cycle(int n) {
  std::string steps;
  for (int i = 1; i <= n; ++i)
    absl::StrAppend(&steps, absl::StrFormat(R"({"op": "spawn", "task": "P%d", "pages": 1},)", i));
  for (int round = 0; round < 2; ++round) {
    for (int i = 1; i <= n; ++i) {
      absl::StrAppend(&steps, absl::StrFormat(R"({"op": "run", "cpu": 0, "task": "P%d"},)", i));
    }
  }
  const int noflush = n <= 6 ? n : 0;
  absl::StrAppend(
      &steps,
      absl::StrFormat(
          R"({"op": "counters", "cr3_writes": %d, "cr3_writes_flush": %d, "cr3_writes_noflush": %d,
         "context_switches": %d, "switch_kernel_to_user": 1, "switch_user_to_user": %d})",
          2 * n, 2 * n - noflush, noflush, 2 * n, 2 * n - 1));
  return absl::StrFormat(R"({"version": 1, "name": "cycle%d", "cpus": 1, "steps": [%s]})", n,
                         steps);
}

class AsidCycleTest : public TlbTest, public testing::WithParamInterface<int> {};

TEST_P(AsidCycleTest, TlbPreservingLoadsOnlyWhileProcessesFitTheSixAsids) {
  absl::StatusOr<ScenarioReport> r = RunJson(kvm(), Cycle(GetParam()));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->ok()) << r->run.report << (r->violations.empty() ? "" : r->violations[0].message);
  EXPECT_EQ(r->checks_passed, 1);
}

INSTANTIATE_TEST_SUITE_P(Processes, AsidCycleTest, testing::Values(5, 6, 7));

TEST_F(TlbTest, ReusingAnAsidSlotWithoutAFlushIsCaught) {
  absl::StatusOr<ScenarioReport> r = RunJson(kvm(), Cycle(7), abi::MmBug::kAsidNoFlush);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_FALSE(r->violations.empty()) << r->run.report;
  EXPECT_EQ(r->violations[0].rule, "asid");
}

// The last user of A exits on CPU 0 while kernel thread K on CPU 1 is lazily on A.
// exit_mmap's flush (freed tables) IPIs CPU 1: lazy, it leaves A for init_mm (leave_mm); CPU 0,
// lazy too after exit_mm, leaves itself. With refcounted lazy TLB (on), K's lazy reference and
// the dying task's keep A alive (mm_count 2, not freed). In the shootdown variant lazy users
// hold nothing: mmput's mmdrop frees A at once, and __mmdrop's cleanup_lazy_tlbs IPIs every CPU
// of the mask so that any task still using A lazily moves to init_mm: CPU 1's K does.
constexpr const char* kLastExitWhileLazy = R"({"version": 1, "name": "last-exit", "cpus": 2,
 "steps": [{"op": "spawn", "task": "A"}, {"op": "clone_vm", "parent": "A", "task": "A1"},
  {"op": "kthread", "task": "K"},
  {"op": "run", "cpu": 0, "task": "A"}, {"op": "run", "cpu": 1, "task": "A1"},
  {"op": "run", "cpu": 1, "task": "K"}, {"op": "exit", "task": "A"},
  {"op": "run", "cpu": 0, "task": "A1"}, {"op": "exit", "task": "A1"}]})";

TEST_F(TlbTest, LastExitWithALazyUserElsewhereRefcountedVersusShootdown) {
  std::string on = std::string(kLastExitWhileLazy);
  on.replace(on.rfind("]}"), 2, R"(,
  {"op": "check", "mm": "A", "mm_users": 0, "mm_count": 2, "freed": false, "loaded_on": []},
  {"op": "counters", "cpu": 1, "ipis_received": 1, "leave_mm": 1},
  {"op": "counters", "cpu": 0, "ipis_sent": 1, "leave_mm": 1}]})");
  absl::StatusOr<ScenarioReport> r = RunJson(kvm(), on, abi::MmBug::kNone, abi::LazyMode::kOn);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->ok()) << r->run.report << (r->violations.empty() ? "" : r->violations[0].message);
  EXPECT_EQ(r->checks_passed, 3);

  std::string shoot = std::string(kLastExitWhileLazy);
  // Two IPIs to CPU 1 now: the flush of the freed tables, then cleanup_lazy_tlbs.
  shoot.replace(shoot.rfind("]}"), 2, R"(,
  {"op": "check", "mm": "A", "freed": true, "loaded_on": []},
  {"op": "check", "task": "K", "loaded_on": [0, 1], "lazy_on": []},
  {"op": "counters", "cpu": 1, "ipis_received": 2, "leave_mm": 1},
  {"op": "counters", "cpu": 0, "ipis_sent": 2, "leave_mm": 1}]})");
  r = RunJson(kvm(), shoot, abi::MmBug::kNone, abi::LazyMode::kShootdown);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->ok()) << r->run.report << (r->violations.empty() ? "" : r->violations[0].message);
  EXPECT_EQ(r->checks_passed, 4);
}

// Concurrency: CPU 0 unmaps and reprotects pages of A while CPU 1, which runs A's other thread,
// switches to kernel threads (going lazy on A at some point of CPU 0's flushes, or not yet),
// and CPU 2 forks and execs another process. Whether CPU 1 gets an IPI depends on the
// interleaving; that it ends in a consistent state does not.
constexpr const char* kParallel = R"({"version": 1, "name": "parallel", "cpus": 3, "steps": [
 {"op": "spawn", "task": "A", "pages": 8}, {"op": "clone_vm", "parent": "A", "task": "A1"},
 {"op": "spawn", "task": "B"}, {"op": "kthread", "task": "K"}, {"op": "kthread", "task": "K2"},
 {"op": "run", "cpu": 0, "task": "A"}, {"op": "run", "cpu": 1, "task": "A1"},
 {"op": "parallel", "steps": {
    "0": [{"op": "munmap", "task": "A", "pages": 2}, {"op": "mprotect", "task": "A", "pages": 2},
          {"op": "mmap", "task": "A", "pages": 3}, {"op": "munmap", "task": "A", "pages": 1}],
    "1": [{"op": "run", "cpu": 1, "task": "K"}, {"op": "run", "cpu": 1, "task": "K2"},
          {"op": "idle", "cpu": 1}],
    "2": [{"op": "run", "cpu": 2, "task": "B"}, {"op": "fork", "parent": "B", "task": "C"},
          {"op": "exec", "task": "B"}]}},
 {"op": "check", "mm": "A", "mm_users": 2},
 {"op": "check", "mm": "B.exec1", "mm_users": 1, "loaded_on": [2]},
 {"op": "check", "mm": "B", "freed": true},
 {"op": "run", "cpu": 1, "task": "A1"},
 {"op": "counters", "shootdowns": 5, "context_switches": 7}]})";

class ParallelTest : public TlbTest, public testing::WithParamInterface<abi::LazyMode> {};

TEST_P(ParallelTest, ConcurrentUnmapsAndSwitchesEndConsistentEveryTime) {
  // The counters step: shootdowns 5 = munmap, mprotect, munmap on CPU 0 + fork's flush of B
  // and exit_mmap of B at exec on CPU 2 (mmap needs none); context switches 7 = A on CPU 0;
  // A1, K, K2, idle, A1 on CPU 1; B on CPU 2. Where A is loaded after the block depends on the
  // interleaving: if one of CPU 0's flush IPIs was sent while CPU 1 still ran A1 but handled
  // after CPU 1 had gone lazy, flush_tlb_func moved CPU 1 to init_mm (leave_mm), as Linux does.
  for (int round = 0; round < 5; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    absl::StatusOr<ScenarioReport> r = RunJson(kvm(), kParallel, abi::MmBug::kNone, GetParam());
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r->ok()) << r->run.report
                         << (r->violations.empty() ? "" : r->violations[0].message);
  }
}

// Regression: in a block one CPU creates a task (taking a kernel stack) while another frees a
// dead task's stack. Before the stack list had a lock, two CPUs could end up on one stack and a
// switch returned through a frame the other had overwritten (#GP in __switch_to_asm, or a hang).
TEST_P(ParallelTest, CreatingAndExitingTasksConcurrentlyKeepsStacksApart) {
  std::string steps;
  for (int i = 0; i < 300; ++i) {
    absl::StrAppend(&steps, i ? "," : "",
                    absl::StrFormat(R"({"op": "parallel", "steps": {
        "0": [{"op": "kthread", "task": "a%d"}, {"op": "run", "cpu": 0, "task": "a%d"},
              {"op": "exit", "task": "a%d"}],
        "1": [{"op": "kthread", "task": "b%d"}, {"op": "run", "cpu": 1, "task": "b%d"},
              {"op": "exit", "task": "b%d"}]}})",
                                    i, i, i, i, i, i));
  }
  absl::StatusOr<ScenarioReport> r = RunJson(
      kvm(),
      absl::StrFormat(R"({"version": 1, "name": "create-exit", "cpus": 2, "steps": [%s]})", steps),
      abi::MmBug::kNone, GetParam());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->ok()) << r->run.report << (r->violations.empty() ? "" : r->violations[0].message);
  EXPECT_EQ(r->totals.context_switches, 1200u);  // 600 kernel threads in, 600 exits to idle
}

INSTANTIATE_TEST_SUITE_P(Modes, ParallelTest,
                         testing::Values(abi::LazyMode::kOn, abi::LazyMode::kOff,
                                         abi::LazyMode::kShootdown),
                         [](const testing::TestParamInfo<abi::LazyMode>& i) {
                           return std::string(LazyModeName(i.param));
                         });

}  // namespace
}  // namespace activemm
