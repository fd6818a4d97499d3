// The mm model on real KVM: the built-in scenario passes in both modes with exact counters, and
// every planted bug is caught by the verifier under the rule it breaks.
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shared/mm_abi.h"
#include "tests/kvm/kvm_test_util.h"
#include "vmm/model/scenario.h"
#include "vmm/model/scenario_run.h"

namespace activemm {
namespace {

using ::testing::HasSubstr;

Scenario Compile(const std::string& json, bool every_step) {
  CompileOptions co;
  co.verify_every_step = every_step;
  absl::StatusOr<Scenario> sc = CompileScenario(json, "test", co);
  EXPECT_TRUE(sc.ok()) << sc.status();
  return *sc;
}

ScenarioRunOptions Options(abi::LazyMode lazy, abi::MmBug bug = abi::MmBug::kNone) {
  ScenarioRunOptions o;
  o.lazy = lazy;
  o.bug = bug;
  o.mem_bytes = 64ull << 20;
  o.timeout = absl::Seconds(20);
  return o;
}

class ScenarioRunTest : public KvmTest {};

// A process A on CPU 0, a kernel thread K borrowing A's mm, and back to A.
constexpr const char* kBorrow = R"({"version": 1, "name": "borrow", "cpus": 1, "steps": [
  {"op": "spawn", "task": "A"},
  {"op": "kthread", "task": "K"},
  {"op": "run", "cpu": 0, "task": "A"},
  {"op": "run", "cpu": 0, "task": "K"},
  {"op": "check", "mm": "A", "mm_users": 1, "mm_count": 2, "loaded_on": [0], "lazy_on": [0],
   "lazy_tlb": true},
  {"op": "check", "mm": "A", "mm_users": 1, "mm_count": 1, "loaded_on": [], "lazy_tlb": false},
  {"op": "run", "cpu": 0, "task": "A"},
  {"op": "check", "mm": "A", "mm_users": 1, "mm_count": 1, "loaded_on": [0], "lazy_on": []},
  {"op": "exit", "task": "A"},
  {"op": "check", "mm": "A", "mm_users": 0, "mm_count": 1, "freed": false, "loaded_on": [],
   "lazy_tlb": true},
  {"op": "check", "mm": "A", "freed": true, "lazy_tlb": false}
]})";

TEST_F(ScenarioRunTest, BorrowingInBothModesWithExactCounters) {
  Scenario sc = Compile(kBorrow, /*every_step=*/true);
  // Lazy on: idle->A loads A (1 flushing CR3 write, new ASID 1); A->K keeps it (lazy, grab);
  // K->A: same mm, lazy, tlb_gen unchanged: no CR3 write (drop of the borrow). Exit: exit_mm
  // grabs A lazily and enters lazy mode; mmput frees A's user half, whose flush_tlb_mm (page
  // tables freed) finds this CPU lazy on A: leave_mm, a CR3 write of init_mm (still in ASID 0
  // with its generation: no flush). The idle task then borrows A without having it loaded.
  absl::StatusOr<ScenarioReport> on = RunScenarioOnKvm(kvm(), sc, Options(abi::LazyMode::kOn));
  ASSERT_TRUE(on.ok()) << on.status();
  EXPECT_TRUE(on->ok()) << on->run.report;
  EXPECT_EQ(on->checks_failed, 0);
  EXPECT_EQ(on->checks_passed, 3);             // the two "lazy_tlb": false checks do not apply
  EXPECT_EQ(on->totals.context_switches, 4u);  // A, K, A, idle
  EXPECT_EQ(on->totals.cr3_writes, 2u);
  EXPECT_EQ(on->totals.cr3_writes_noflush, 1u);
  EXPECT_EQ(on->totals.leave_mm, 1u);
  EXPECT_EQ(on->totals.lazy_grabs, 2u);  // A->K, exit_mm
  EXPECT_EQ(on->totals.lazy_drops, 2u);  // idle->A drops init_mm, K->A drops A
  // A full verification after each of the 6 model steps, at each of the 5 checks (applying or
  // not) and at the end; each took some host time.
  EXPECT_EQ(on->verifications, 12);
  EXPECT_GT(on->verify_seconds, 0);
  // Lazy off: A; K loads init_mm; A again; exit loads init_mm: 4 CR3 writes. The exit's
  // flush finds init_mm loaded here: nothing to flush.
  absl::StatusOr<ScenarioReport> off = RunScenarioOnKvm(kvm(), sc, Options(abi::LazyMode::kOff));
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_TRUE(off->ok()) << off->run.report;
  EXPECT_EQ(off->checks_passed, 3);
  EXPECT_EQ(off->totals.context_switches, 4u);
  EXPECT_EQ(off->totals.cr3_writes, 4u);
  EXPECT_EQ(off->totals.lazy_grabs, 0u);
}

// --profile: sampling where each vCPU is takes it out of the guest now and then; the run's
// decisions and counters stay exactly those of the run without it. KVM's statistics come back
// with every run where KVM has binary statistics (Linux 5.14 on: every host this project has).
TEST_F(ScenarioRunTest, AProfiledRunDecidesTheSameAndAccountsForEverySample) {
  Scenario sc = Compile(kBorrow, /*every_step=*/true);
  ScenarioRunOptions o = Options(abi::LazyMode::kOn);
  o.profile_hz = 10000;
  absl::StatusOr<ScenarioReport> r = RunScenarioOnKvm(kvm(), sc, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->ok()) << r->run.report;
  EXPECT_EQ(r->checks_passed, 3);
  EXPECT_EQ(r->totals.context_switches, 4u);
  EXPECT_EQ(r->totals.cr3_writes, 2u);
  EXPECT_EQ(r->totals.lazy_grabs, 2u);

  const GuestProfile& p = r->run.profile;
  EXPECT_EQ(p.hz, 10000);
  EXPECT_GT(p.samples, 0u);  // the run boots a VM: milliseconds, so a few dozen samples
  uint64_t in_buckets = 0, in_functions = 0;
  for (uint64_t n : p.buckets) in_buckets += n;
  for (const auto& [name, n] : p.functions) in_functions += n;
  EXPECT_EQ(in_buckets, p.samples);
  // Every sample in the guest kernel names its function; ring 3 and the host name none.
  EXPECT_EQ(in_functions + p.buckets[static_cast<int>(ProfileBucket::kUser)] +
                p.buckets[static_cast<int>(ProfileBucket::kHost)],
            p.samples);
  EXPECT_THAT(FormatProfile(p), HasSubstr("samples at 10000 Hz per vCPU"));

  ASSERT_FALSE(r->run.kvm_stats.empty());
  EXPECT_GT(r->run.kvm_stats.at("exits"), 0u);  // every hypercall is one (io_exits is 0 on
                                                // kvm_pvm, which counts them elsewhere)

  // Without a timeline the records hold the result bits only (abi::ScenarioHeader::step_state).
  ASSERT_EQ(r->step_records.size(), sc.program.size());
  for (size_t i = 0; i < sc.program.size(); ++i) {
    if (sc.program[i].op != static_cast<uint32_t>(abi::StepOp::kRun)) continue;
    EXPECT_TRUE(r->step_records[i].result & abi::kStepExecuted) << "step " << i;
    EXPECT_EQ(r->step_records[i].tsc_begin, 0u) << "step " << i;
    EXPECT_EQ(r->step_records[i].curr, 0) << "step " << i;
  }

  // Without --profile: no samples, the same decisions.
  absl::StatusOr<ScenarioReport> plain = RunScenarioOnKvm(kvm(), sc, Options(abi::LazyMode::kOn));
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->run.profile.hz, 0);
  EXPECT_EQ(plain->run.profile.samples, 0u);
  EXPECT_EQ(FormatProfile(plain->run.profile), "");
  EXPECT_EQ(plain->totals.cr3_writes, r->totals.cr3_writes);
  EXPECT_EQ(plain->totals.cr3_writes_noflush, r->totals.cr3_writes_noflush);
}

TEST_F(ScenarioRunTest, AFailedExpectationIsReportedNotHidden) {
  std::string json = kBorrow;
  json.replace(json.find("\"mm_count\": 2"), 13, "\"mm_count\": 3");
  absl::StatusOr<ScenarioReport> r =
      RunScenarioOnKvm(kvm(), Compile(json, false), Options(abi::LazyMode::kOn));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->ok());
  EXPECT_EQ(r->checks_failed, 1);
  // An expectation, not an invariant: reported apart from the violations.
  EXPECT_THAT(r->violations, testing::IsEmpty());
  ASSERT_EQ(r->failed_expectations.size(), 1u);
  EXPECT_THAT(r->failed_expectations[0].message,
              HasSubstr("step 4 (check): mm 'A': mm_count is 2, expected 3"));
}

struct BugCase {
  const char* name;
  abi::MmBug bug;
  abi::LazyMode lazy;
  const char* rule;
  const char* fragment;
  friend std::ostream& operator<<(std::ostream& os, const BugCase& c) { return os << c.name; }
};

class PlantedBugTest : public KvmTest, public testing::WithParamInterface<BugCase> {};

TEST_P(PlantedBugTest, IsCaughtByTheRuleItBreaks) {
  const BugCase& c = GetParam();
  absl::StatusOr<ScenarioReport> r = RunScenarioOnKvm(
      kvm(), Compile(DefaultScenarioJson(), /*every_step=*/true), Options(c.lazy, c.bug));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->ok());
  EXPECT_EQ(r->run.outcome, Outcome::kCheckFailed) << r->run.report;
  ASSERT_FALSE(r->violations.empty()) << r->run.report;
  EXPECT_EQ(r->violations[0].rule, c.rule) << r->violations[0].message;
  EXPECT_THAT(r->violations[0].message, HasSubstr(c.fragment));
}

INSTANTIATE_TEST_SUITE_P(
    Bugs, PlantedBugTest,
    testing::Values(
        // user -> kernel without mmgrab_lazy_tlb: the borrower holds no reference.
        BugCase{"SkipLazyMmgrab", abi::MmBug::kSkipLazyMmgrab, abi::LazyMode::kOn, "mm_count",
                "lazy borrowers 1"},
        // finish_task_switch drops rq->prev_mm twice: the first k -> u switch (idle's init_mm)
        // already leaves init_mm one reference short.
        BugCase{"DoubleMmdrop", abi::MmBug::kDoubleMmdrop, abi::LazyMode::kOn, "mm_count",
                "mm 'init_mm': mm_count is"},
        // kernel -> user without parking the borrowed mm: its reference leaks.
        BugCase{"ForgetPrevMm", abi::MmBug::kForgetPrevMm, abi::LazyMode::kOn, "mm_count",
                "expected"},
        BugCase{"NoCpumask", abi::MmBug::kNoCpumask, abi::LazyMode::kOn, "mm_cpumask",
                "is not in its mm_cpumask"},
        // Loading init_mm (lazy TLB off) keeps the old page table in CR3.
        BugCase{"WrongCr3", abi::MmBug::kWrongCr3, abi::LazyMode::kOff, "cr3",
                "loaded_mm 'init_mm' needs"}),
    [](const testing::TestParamInfo<BugCase>& i) { return std::string(i.param.name); });

// Parent P forks C; C runs (rewrites its pages), then P runs and unmaps a page. Ring 3 of
// every run walks the real page tables, so these bugs show up in the guest itself.
constexpr const char* kForkMunmap = R"({"version": 1, "name": "fork-munmap", "cpus": 1,
 "steps": [{"op": "spawn", "task": "P"}, {"op": "run", "cpu": 0, "task": "P"},
  {"op": "fork", "parent": "P", "task": "C"}, {"op": "run", "cpu": 0, "task": "C"},
  {"op": "run", "cpu": 0, "task": "P"}, {"op": "munmap", "task": "P", "pages": 1},
  {"op": "run", "cpu": 0, "task": "C"}, {"op": "checkpoint"}]})";

TEST_F(ScenarioRunTest, ForkAndMunmapAreCleanWithoutBugs) {
  absl::StatusOr<ScenarioReport> r =
      RunScenarioOnKvm(kvm(), Compile(kForkMunmap, true), Options(abi::LazyMode::kOn));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->ok()) << r->run.report;
  EXPECT_EQ(r->totals.user_bursts, 5u);  // P, C, P, P after munmap, C
  EXPECT_EQ(r->totals.invlpg, 1u);       // the unmapped page, P's mm loaded here
}

TEST_F(ScenarioRunTest, APageSharedAfterForkIsCaughtByRing3) {
  absl::StatusOr<ScenarioReport> r = RunScenarioOnKvm(
      kvm(), Compile(kForkMunmap, false), Options(abi::LazyMode::kOn, abi::MmBug::kForkSharesPage));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->run.outcome, Outcome::kGuestPanic);
  // P reads its first page back and finds C's words in all 512 of them.
  EXPECT_THAT(r->run.report, HasSubstr("ring 3 read wrong words from its pages"));
  EXPECT_THAT(r->run.report, HasSubstr(absl::StrFormat("0x200, %#x", abi::kUserDataVa)));
}

TEST_F(ScenarioRunTest, AMappingLeftByMunmapIsCaughtByRing3) {
  absl::StatusOr<ScenarioReport> r = RunScenarioOnKvm(
      kvm(), Compile(kForkMunmap, false), Options(abi::LazyMode::kOn, abi::MmBug::kMunmapKeepsPte));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->run.outcome, Outcome::kGuestPanic);
  EXPECT_THAT(r->run.report, HasSubstr("without a fault"));
}

// A program over two windows long (shared/mm_abi.h kProgramWindow) streams through the window:
// every step runs once, in order, including parallel blocks that straddle a refill.
TEST_F(ScenarioRunTest, AProgramLongerThanTheWindowStreamsThroughIt) {
  std::vector<std::string> steps = {R"({"op": "spawn", "task": "A"})",
                                    R"({"op": "spawn", "task": "B"})",
                                    R"({"op": "kthread", "task": "K"})"};
  uint64_t switches = 0;
  const std::string a0 = R"({"op": "run", "cpu": 0, "task": "A"})";
  const std::string k0 = R"({"op": "run", "cpu": 0, "task": "K"})";
  const std::string b1 = R"({"op": "run", "cpu": 1, "task": "B"})";
  const std::string i1 = R"({"op": "idle", "cpu": 1})";
  for (int round = 0; round < 4400; ++round) {
    if (round % 37 == 36) {  // 5 program steps: its slots fall across every position
      steps.push_back(absl::StrFormat(
          R"({"op": "parallel", "steps": {"0": [%s, %s], "1": [%s, %s]}})", a0, k0, b1, i1));
    } else {
      for (const std::string* s : {&a0, &b1, &k0, &i1}) steps.push_back(*s);
    }
    switches += 4;
  }
  // The last round leaves K on CPU 0, borrowing A.
  steps.push_back(R"({"op": "check", "mm": "A", "mm_users": 1, "mm_count": 2, "loaded_on": [0],
                      "lazy_on": [0]})");
  Scenario sc =
      Compile(absl::StrFormat(R"({"version": 1, "name": "long", "cpus": 2, "steps": [%s]})",
                              absl::StrJoin(steps, ",")),
              /*every_step=*/false);
  ASSERT_GT(sc.program.size(), 2u * abi::kProgramWindow);
  ScenarioRunOptions o = Options(abi::LazyMode::kOn);
  o.record_step_state = true;  // the records' curr is checked below
  absl::StatusOr<ScenarioReport> r = RunScenarioOnKvm(kvm(), sc, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->ok()) << r->run.report;
  EXPECT_EQ(r->steps_done, static_cast<int>(sc.program.size()));
  EXPECT_EQ(r->checks_passed, 1);
  EXPECT_EQ(r->totals.context_switches, switches);
  // Only the first loads of A and B write CR3: K borrows A, the idle task borrows B, and both
  // come back to an mm still loaded with its tlb_gen unchanged.
  EXPECT_EQ(r->totals.cr3_writes, 2u);
  ASSERT_EQ(r->step_records.size(), sc.program.size());
  size_t executed = 0;
  for (size_t i = 0; i < sc.program.size(); ++i) {
    const abi::Step& s = sc.program[i];
    if (s.op == static_cast<uint32_t>(abi::StepOp::kParallel)) continue;
    ASSERT_TRUE(r->step_records[i].result & abi::kStepExecuted) << "step " << i;
    if (s.op == static_cast<uint32_t>(abi::StepOp::kRun)) {
      ASSERT_EQ(r->step_records[i].curr, s.task) << "step " << i;
    }
    ++executed;
  }
  EXPECT_GT(executed, 2u * abi::kProgramWindow);
}

}  // namespace
}  // namespace activemm
