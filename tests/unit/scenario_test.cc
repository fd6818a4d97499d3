// Scenario files: parsing, strict validation against the host-side model, and compilation into
// the guest's step program.
#include "vmm/model/scenario.h"

#include <stdint.h>

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shared/mm_abi.h"

namespace activemm {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr int32_t kNo = -1;

// A scenario file around `steps` (a JSON array body).
std::string Scenario2(const std::string& steps, int cpus = 2) {
  return absl::StrFormat(R"({"version": 1, "name": "t", "cpus": %d, "steps": [%s]})", cpus, steps);
}

absl::StatusOr<Scenario> Compile(const std::string& text, const CompileOptions& options = {}) {
  return CompileScenario(text, "t.json", options);
}

uint32_t Op(abi::StepOp op) { return static_cast<uint32_t>(op); }

abi::Step MakeStep(abi::StepOp op, uint32_t cpu, int32_t task, int32_t parent, int32_t mm,
                   uint32_t pages, uint32_t prot, uint32_t index, uint32_t arg = 0,
                   uint32_t flags = 0) {
  return abi::Step{Op(op), cpu, task, parent, mm, pages, prot, flags, index, arg, 0};
}

std::string Describe(const abi::Step& s) {
  return absl::StrFormat(
      "{op %d cpu %d task %d parent %d mm %d pages %d prot %d flags %d index %d arg %d late %#x}",
      s.op, s.cpu, s.task, s.parent, s.mm, s.pages, s.prot, s.flags, s.index, s.arg,
      s.late_ipi_cpus);
}

void ExpectProgram(const std::vector<abi::Step>& actual, const std::vector<abi::Step>& expected) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < actual.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("program step ", i, ": got ", Describe(actual[i]), ", want ",
                              Describe(expected[i])));
    EXPECT_EQ(actual[i].op, expected[i].op);
    EXPECT_EQ(actual[i].cpu, expected[i].cpu);
    EXPECT_EQ(actual[i].task, expected[i].task);
    EXPECT_EQ(actual[i].parent, expected[i].parent);
    EXPECT_EQ(actual[i].mm, expected[i].mm);
    EXPECT_EQ(actual[i].pages, expected[i].pages);
    EXPECT_EQ(actual[i].prot, expected[i].prot);
    EXPECT_EQ(actual[i].flags, expected[i].flags);
    EXPECT_EQ(actual[i].index, expected[i].index);
    EXPECT_EQ(actual[i].arg, expected[i].arg);
  }
}

// ---- MmCounterNames ---------------------------------------------------------------------------

TEST(ScenarioCounterNamesTest, MatchTheAbiFieldsInOrder) {
  const std::vector<std::string>& names = MmCounterNames();
  ASSERT_EQ(names.size(), static_cast<size_t>(abi::kNumMmCounters));
  EXPECT_EQ(names.front(), "context_switches");
  EXPECT_EQ(names[5], "cr3_writes");
  EXPECT_EQ(names[11], "lazy_drops");
  EXPECT_EQ(names.back(), "user_bursts");
}

// ---- Compilation -------------------------------------------------------------------------------

// Every op once, so each compiled field is pinned down.
constexpr char kEveryOp[] = R"({
  "version": 1, "name": "every op", "cpus": 2, "lazy_tlb": false,
  "steps": [
    {"op": "spawn", "task": "A", "pages": 8, "cpu": 1},
    {"op": "clone_vm", "parent": "A", "task": "A1"},
    {"op": "kthread", "task": "K"},
    {"op": "run", "cpu": 1, "task": "A"},
    {"op": "fork", "parent": "A", "task": "B"},
    {"op": "exec", "task": "A"},
    {"op": "mmap", "task": "A", "pages": 3},
    {"op": "mprotect", "task": "A", "pages": 2, "prot": "rw"},
    {"op": "munmap", "task": "A", "pages": 2},
    {"op": "check", "mm": "A", "mm_users": 1, "mm_count": 1, "freed": false,
     "loaded_on": [1, 0], "lazy_on": [], "lazy_tlb": true},
    {"op": "run", "cpu": 0, "task": "K"},
    {"op": "use_mm", "task": "K", "mm": "B"},
    {"op": "mmap", "task": "K"},
    {"op": "unuse_mm", "task": "K"},
    {"op": "check", "task": "K"},
    {"op": "idle", "cpu": 0},
    {"op": "exit", "task": "A"},
    {"op": "counters", "cpu": 1, "cr3_writes": 2, "user_bursts": 0},
    {"op": "checkpoint"}
  ]
})";

TEST(ScenarioCompileTest, EveryOpCompilesToTheExpectedSteps) {
  absl::StatusOr<Scenario> sc = Compile(kEveryOp);
  ASSERT_TRUE(sc.ok()) << sc.status();
  EXPECT_EQ(sc->name, "every op");
  EXPECT_EQ(sc->source, "t.json");
  EXPECT_EQ(sc->cpus, 2);
  EXPECT_FALSE(sc->lazy_tlb);
  EXPECT_THAT(sc->task_names, ElementsAre("idle/0", "idle/1", "A", "A1", "K", "B"));
  EXPECT_THAT(sc->mm_names, ElementsAre("init_mm", "A", "B", "A.exec1"));
  std::vector<std::string> ops;
  for (size_t i = 0; i < sc->step_ops.size(); ++i) ops.push_back(sc->step_ops[i]);
  EXPECT_THAT(ops, ElementsAre("spawn", "clone_vm", "kthread", "run", "fork", "exec", "mmap",
                               "mprotect", "munmap", "check", "run", "use_mm", "mmap", "unuse_mm",
                               "check", "idle", "exit", "counters", "checkpoint"));
  using S = abi::StepOp;
  const uint32_t w = abi::kPageWritable;
  ExpectProgram(sc->program,
                {
                    MakeStep(S::kSpawn, 1, 2, kNo, 1, 8, 0, 0),
                    MakeStep(S::kCloneVm, 0, 3, 2, kNo, 0, 0, 1),  // A not running: CPU 0
                    MakeStep(S::kKthread, 0, 4, kNo, kNo, 0, 0, 2),
                    MakeStep(S::kRun, 1, 2, kNo, kNo, 0, 0, 3),
                    MakeStep(S::kFork, 1, 5, 2, 2, 0, 0, 4),  // A runs on CPU 1
                    MakeStep(S::kExec, 1, 2, kNo, 3, 4, 0, 5),
                    MakeStep(S::kMmap, 1, 2, kNo, kNo, 3, 0, 6),
                    MakeStep(S::kMprotect, 1, 2, kNo, kNo, 2, w, 7),
                    MakeStep(S::kMunmap, 1, 2, kNo, kNo, 2, 0, 8),
                    MakeStep(S::kVerify, 0, kNo, kNo, kNo, 0, 0, 9, /*arg=*/0),
                    MakeStep(S::kRun, 0, 4, kNo, kNo, 0, 0, 10),
                    MakeStep(S::kUseMm, 0, 4, kNo, 2, 0, 0, 11),
                    MakeStep(S::kMmap, 0, 4, kNo, kNo, 1, 0, 12),
                    MakeStep(S::kUnuseMm, 0, 4, kNo, kNo, 0, 0, 13),
                    MakeStep(S::kVerify, 0, kNo, kNo, kNo, 0, 0, 14, /*arg=*/1),
                    MakeStep(S::kIdle, 0, 0, kNo, kNo, 0, 0, 15),
                    MakeStep(S::kExit, 1, 2, kNo, kNo, 0, 0, 16),
                    MakeStep(S::kVerify, 0, kNo, kNo, kNo, 0, 0, 17, /*arg=*/2),
                    MakeStep(S::kVerify, 0, kNo, kNo, kNo, 0, 0, 18, /*arg=*/3),
                    MakeStep(S::kVerify, 0, kNo, kNo, kNo, 0, 0, 19, /*arg=*/4),  // final
                });

  ASSERT_EQ(sc->checks.size(), 5u);
  const HostCheck& mm_check = sc->checks[0];
  EXPECT_EQ(mm_check.kind, HostCheck::Kind::kCheck);
  EXPECT_EQ(mm_check.step_index, 9);
  EXPECT_EQ(mm_check.mm_slot, 1);
  EXPECT_FALSE(mm_check.task.has_value());
  EXPECT_EQ(mm_check.mm_users, 1);
  EXPECT_EQ(mm_check.mm_count, 1);
  EXPECT_EQ(mm_check.freed, false);
  ASSERT_TRUE(mm_check.loaded_on.has_value());
  EXPECT_THAT(*mm_check.loaded_on, ElementsAre(0, 1));  // sorted
  ASSERT_TRUE(mm_check.lazy_on.has_value());
  EXPECT_TRUE(mm_check.lazy_on->empty());
  EXPECT_EQ(mm_check.lazy_modes, ModeBit(abi::LazyMode::kOn));  // true: on, not shootdown
  EXPECT_EQ(mm_check.pcid_modes, kEveryPcidMode);
  EXPECT_TRUE(mm_check.AppliesTo(abi::LazyMode::kOn, abi::PcidMode::kOff));
  EXPECT_FALSE(mm_check.AppliesTo(abi::LazyMode::kShootdown, abi::PcidMode::kModeled));

  const HostCheck& task_check = sc->checks[1];
  EXPECT_EQ(task_check.kind, HostCheck::Kind::kCheck);
  EXPECT_EQ(task_check.step_index, 14);
  EXPECT_EQ(task_check.task, 4);
  EXPECT_FALSE(task_check.mm_slot.has_value());
  EXPECT_FALSE(task_check.mm_users.has_value());
  EXPECT_FALSE(task_check.loaded_on.has_value());
  EXPECT_EQ(task_check.lazy_modes, kEveryLazyMode);
  EXPECT_EQ(task_check.pcid_modes, kEveryPcidMode);

  const HostCheck& counters = sc->checks[2];
  EXPECT_EQ(counters.kind, HostCheck::Kind::kCounters);
  EXPECT_EQ(counters.step_index, 17);
  EXPECT_EQ(counters.cpu, 1);
  EXPECT_EQ(counters.counters,
            (std::map<std::string, uint64_t>{{"cr3_writes", 2}, {"user_bursts", 0}}));

  EXPECT_EQ(sc->checks[3].kind, HostCheck::Kind::kCheckpoint);
  EXPECT_EQ(sc->checks[3].step_index, 18);
  EXPECT_EQ(sc->checks[4].kind, HostCheck::Kind::kFinal);
  EXPECT_EQ(sc->checks[4].step_index, -1);
}

TEST(ScenarioCompileTest, ModeFiltersNameModesOrLists) {
  absl::StatusOr<Scenario> sc = CompileScenario(R"({
  "version": 1, "name": "filters", "cpus": 1,
  "steps": [
    {"op": "counters", "lazy_tlb": "shootdown", "cr3_writes": 0},
    {"op": "counters", "lazy_tlb": ["on", "shootdown"], "pcid": false, "cr3_writes": 0},
    {"op": "counters", "lazy_tlb": false, "pcid": true, "cr3_writes": 0},
    {"op": "check", "mm": "init_mm", "pcid": ["hardware"], "loaded_on": [0]}
  ]})",
                                                "f.json", {});
  ASSERT_TRUE(sc.ok()) << sc.status();
  using L = abi::LazyMode;
  using P = abi::PcidMode;
  EXPECT_EQ(sc->checks[0].lazy_modes, ModeBit(L::kShootdown));
  EXPECT_EQ(sc->checks[0].pcid_modes, kEveryPcidMode);
  EXPECT_EQ(sc->checks[1].lazy_modes, ModeBit(L::kOn) | ModeBit(L::kShootdown));
  EXPECT_EQ(sc->checks[1].pcid_modes, ModeBit(P::kOff));
  EXPECT_EQ(sc->checks[2].lazy_modes, ModeBit(L::kOff));
  EXPECT_EQ(sc->checks[2].pcid_modes, ModeBit(P::kHardware) | ModeBit(P::kModeled));
  EXPECT_TRUE(sc->checks[2].AppliesTo(L::kOff, P::kHardware));
  EXPECT_FALSE(sc->checks[2].AppliesTo(L::kOff, P::kOff));
  EXPECT_FALSE(sc->checks[2].AppliesTo(L::kOn, P::kModeled));
  EXPECT_EQ(sc->checks[3].pcid_modes, ModeBit(P::kHardware));
}

TEST(ScenarioCompileTest, DefaultsApplied) {
  absl::StatusOr<Scenario> sc = Compile(Scenario2(R"(
      {"op": "spawn", "task": "A"},
      {"op": "run", "cpu": 0, "task": "A"},
      {"op": "mmap", "task": "A"},
      {"op": "mprotect", "task": "A"},
      {"op": "munmap", "task": "A"},
      {"op": "exec", "task": "A"},
      {"op": "counters", "cr3_writes": 1})"));
  ASSERT_TRUE(sc.ok()) << sc.status();
  EXPECT_TRUE(sc->lazy_tlb);  // the file's default
  using S = abi::StepOp;
  ExpectProgram(sc->program, {
                                 MakeStep(S::kSpawn, 0, 2, kNo, 1, 4, 0, 0),
                                 MakeStep(S::kRun, 0, 2, kNo, kNo, 0, 0, 1),
                                 MakeStep(S::kMmap, 0, 2, kNo, kNo, 1, 0, 2),
                                 MakeStep(S::kMprotect, 0, 2, kNo, kNo, 1, 0, 3),  // "r"
                                 MakeStep(S::kMunmap, 0, 2, kNo, kNo, 1, 0, 4),
                                 MakeStep(S::kExec, 0, 2, kNo, 2, 4, 0, 5),
                                 MakeStep(S::kVerify, 0, kNo, kNo, kNo, 0, 0, 6, 0),
                                 MakeStep(S::kVerify, 0, kNo, kNo, kNo, 0, 0, 7, 1),
                             });
  EXPECT_FALSE(sc->checks[0].cpu.has_value());  // totals
  EXPECT_EQ(sc->checks[0].lazy_modes, kEveryLazyMode);
  EXPECT_EQ(sc->checks[0].pcid_modes, kEveryPcidMode);
}

TEST(ScenarioCompileTest, VerifyEveryStepFlagsModelStepsOnly) {
  CompileOptions options;
  options.verify_every_step = true;
  absl::StatusOr<Scenario> sc = Compile(Scenario2(R"(
      {"op": "spawn", "task": "A"},
      {"op": "checkpoint"},
      {"op": "run", "cpu": 1, "task": "A"})"),
                                        options);
  ASSERT_TRUE(sc.ok()) << sc.status();
  ASSERT_EQ(sc->program.size(), 4u);
  EXPECT_EQ(sc->program[0].flags, abi::kStepVerifyAfter);
  EXPECT_EQ(sc->program[1].flags, 0u);  // a kVerify step is a verification already
  EXPECT_EQ(sc->program[2].flags, abi::kStepVerifyAfter);
  EXPECT_EQ(sc->program[3].flags, 0u);
}

TEST(ScenarioCompileTest, CpusOverrideRenumbersTasks) {
  CompileOptions options;
  options.cpus = 4;
  absl::StatusOr<Scenario> sc = Compile(Scenario2(R"(
      {"op": "spawn", "task": "A"},
      {"op": "run", "cpu": 3, "task": "A"},
      {"op": "idle", "cpu": 3})"),
                                        options);
  ASSERT_TRUE(sc.ok()) << sc.status();
  EXPECT_EQ(sc->cpus, 4);
  EXPECT_THAT(sc->task_names, ElementsAre("idle/0", "idle/1", "idle/2", "idle/3", "A"));
  EXPECT_EQ(sc->program[0].task, 4);
  EXPECT_EQ(sc->program[1].cpu, 3u);
  EXPECT_EQ(sc->program[2].task, 3);  // CPU 3's idle task
}

TEST(ScenarioCompileTest, CpusOverrideMustCoverEveryCpuUsed) {
  CompileOptions options;
  options.cpus = 2;
  absl::StatusOr<Scenario> sc = Compile(Scenario2(R"(
      {"op": "spawn", "task": "A"},
      {"op": "run", "cpu": 3, "task": "A"})",
                                                  4),
                                        options);
  ASSERT_FALSE(sc.ok());
  EXPECT_EQ(sc.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sc.status().message(),
            "t.json: step 1 (run): field 'cpu': CPU 3 is out of range: the run has 2 CPUs "
            "(0..1; --cpus 2 overrides the file's \"cpus\")");
}

TEST(ScenarioCompileTest, KernelThreadThatExecsBecomesAUserTask) {
  absl::StatusOr<Scenario> sc = Compile(Scenario2(R"(
      {"op": "kthread", "task": "K"},
      {"op": "run", "cpu": 0, "task": "K"},
      {"op": "exec", "task": "K", "pages": 2},
      {"op": "exec", "task": "K"},
      {"op": "clone_vm", "parent": "K", "task": "K1"},
      {"op": "mmap", "task": "K"})"));
  ASSERT_TRUE(sc.ok()) << sc.status();
  EXPECT_THAT(sc->mm_names, ElementsAre("init_mm", "K.exec1", "K.exec2"));
  EXPECT_EQ(sc->program[4].parent, 2);
  EXPECT_EQ(sc->program[4].cpu, 0u);  // where the parent runs

  absl::StatusOr<Scenario> bad = Compile(Scenario2(R"(
      {"op": "kthread", "task": "K"},
      {"op": "run", "cpu": 0, "task": "K"},
      {"op": "exec", "task": "K"},
      {"op": "spawn", "task": "A"},
      {"op": "use_mm", "task": "K", "mm": "A"})"));
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("step 4 (use_mm): task 'K' is a user task"));
}

TEST(ScenarioCompileTest, ForkCopiesPageEntries) {
  // 30 + 30 = 60 entries in A; B inherits them, so 4 more fit and a 5th does not.
  const std::string steps = R"(
      {"op": "spawn", "task": "A", "pages": 30},
      {"op": "run", "cpu": 0, "task": "A"},
      {"op": "mmap", "task": "A", "pages": 30},
      {"op": "fork", "parent": "A", "task": "B"},
      {"op": "run", "cpu": 1, "task": "B"},
      {"op": "mmap", "task": "B", "pages": 4})";
  EXPECT_TRUE(Compile(Scenario2(steps)).ok());
  absl::StatusOr<Scenario> sc =
      Compile(Scenario2(steps + R"(, {"op": "mmap", "task": "B", "pages": 1})"));
  ASSERT_FALSE(sc.ok());
  EXPECT_THAT(sc.status().message(),
              HasSubstr("step 6 (mmap): mmap of 1 pages: mm 'B' already has 64 page entries"));
}

TEST(ScenarioCompileTest, CheckMayNameAFreedMmButNotADeadTask) {
  absl::StatusOr<Scenario> sc = Compile(Scenario2(R"(
      {"op": "spawn", "task": "A"},
      {"op": "run", "cpu": 0, "task": "A"},
      {"op": "exit", "task": "A"},
      {"op": "run", "cpu": 1, "task": "A"})"));
  ASSERT_FALSE(sc.ok());  // a dead task cannot run...
  EXPECT_THAT(sc.status().message(), HasSubstr("step 3 (run): task 'A' has exited"));

  sc = Compile(Scenario2(R"(
      {"op": "spawn", "task": "A"},
      {"op": "run", "cpu": 0, "task": "A"},
      {"op": "exit", "task": "A"},
      {"op": "check", "mm": "A", "freed": true, "loaded_on": [0]})"));
  ASSERT_TRUE(sc.ok()) << sc.status();  // ...its mm may still be checked...
  EXPECT_EQ(sc->checks[0].mm_slot, 1);

  sc = Compile(Scenario2(R"(
      {"op": "spawn", "task": "A"},
      {"op": "run", "cpu": 0, "task": "A"},
      {"op": "exit", "task": "A"},
      {"op": "check", "task": "A"})"));
  ASSERT_FALSE(sc.ok());  // ...but not through the task, which has no active_mm any more
  EXPECT_THAT(sc.status().message(),
              HasSubstr("step 3 (check): task 'A' has exited: it has no active_mm to check"));
}

TEST(ScenarioCompileTest, TooManyTasks) {
  std::vector<std::string> steps;
  for (uint32_t i = 1; i < abi::kMaxTasks; ++i) {
    steps.push_back(absl::StrFormat(R"({"op": "kthread", "task": "K%d"})", i));
  }
  EXPECT_TRUE(Compile(Scenario2(absl::StrJoin(steps, ","), 1)).ok());  // 1 idle + 4095
  steps.push_back(R"({"op": "kthread", "task": "last"})");
  absl::StatusOr<Scenario> sc = Compile(Scenario2(absl::StrJoin(steps, ","), 1));
  ASSERT_FALSE(sc.ok());
  EXPECT_THAT(sc.status().message(),
              HasSubstr(absl::StrFormat("step %d (kthread): task 'last': too many tasks",
                                        abi::kMaxTasks - 1)));
}

TEST(ScenarioCompileTest, TooManyMms) {
  std::vector<std::string> steps = {R"({"op": "spawn", "task": "A"})",
                                    R"({"op": "run", "cpu": 0, "task": "A"})"};
  for (uint32_t i = 2; i < abi::kMaxMms; ++i) steps.push_back(R"({"op": "exec", "task": "A"})");
  EXPECT_TRUE(Compile(Scenario2(absl::StrJoin(steps, ","), 1)).ok());  // init_mm, A, 4094 execs
  steps.push_back(R"({"op": "exec", "task": "A"})");
  absl::StatusOr<Scenario> sc = Compile(Scenario2(absl::StrJoin(steps, ","), 1));
  ASSERT_FALSE(sc.ok());
  EXPECT_THAT(sc.status().message(), HasSubstr("(exec): mm 'A.exec4095': too many mms"));
}

TEST(ScenarioCompileTest, TooManySteps) {
  // The final verification takes a program slot too. The limit is lowered so the test stays
  // small; the real one (abi::kMaxProgramSteps) is the same comparison.
  CompileOptions o;
  o.max_steps = 100;
  std::vector<std::string> steps(99, R"({"op": "checkpoint"})");
  EXPECT_TRUE(Compile(Scenario2(absl::StrJoin(steps, ","), 1), o).ok());
  steps.push_back(R"({"op": "checkpoint"})");
  absl::StatusOr<Scenario> sc = Compile(Scenario2(absl::StrJoin(steps, ","), 1), o);
  ASSERT_FALSE(sc.ok());
  EXPECT_THAT(sc.status().message(),
              HasSubstr("step 99 (checkpoint): the program is too long: at most 100 steps run"));
}

TEST(ScenarioCompileTest, ParallelBlockLongerThanTheWindowAllows) {
  auto block = [](int n) {
    std::vector<std::string> list;
    for (int i = 0; i < n; ++i) {
      list.push_back(i % 2 == 0 ? R"({"op": "run", "cpu": 0, "task": "K"})"
                                : R"({"op": "idle", "cpu": 0})");
    }
    return absl::StrFormat(
        R"({"op": "kthread", "task": "K"}, {"op": "parallel", "steps": {"0": [%s]}})",
        absl::StrJoin(list, ","));
  };
  EXPECT_TRUE(Compile(Scenario2(block(abi::kProgramRefillAhead - 1), 1)).ok());
  absl::StatusOr<Scenario> sc = Compile(Scenario2(block(abi::kProgramRefillAhead), 1));
  ASSERT_FALSE(sc.ok());
  EXPECT_THAT(sc.status().message(),
              HasSubstr(absl::StrFormat("step 1 (parallel): the block's lists make %d model "
                                        "steps; at most %d run in one block",
                                        abi::kProgramRefillAhead, abi::kProgramRefillAhead - 1)));
}

// ---- The built-in scenario ---------------------------------------------------------------------

TEST(ScenarioDefaultTest, CompilesForItsOwnCpuCount) {
  absl::StatusOr<Scenario> sc = CompileScenario(DefaultScenarioJson(), "default", {});
  ASSERT_TRUE(sc.ok()) << sc.status();
  EXPECT_EQ(sc->cpus, 2);
  EXPECT_TRUE(sc->lazy_tlb);
  ASSERT_FALSE(sc->checks.empty());
  EXPECT_EQ(sc->checks.back().kind, HostCheck::Kind::kFinal);
  // Some expectations must hold in both modes, so `activemm compare` checks something in each.
  int unfiltered_checks = 0;
  for (const HostCheck& c : sc->checks) {
    if (c.kind == HostCheck::Kind::kCheck && c.lazy_modes == kEveryLazyMode) ++unfiltered_checks;
  }
  EXPECT_GE(unfiltered_checks, 2);
  EXPECT_EQ(sc->checks[sc->checks.size() - 2].kind, HostCheck::Kind::kCheckpoint);

  CompileOptions more;
  more.cpus = 4;
  EXPECT_TRUE(CompileScenario(DefaultScenarioJson(), "default", more).ok());
}

TEST(ScenarioCompileTest, ParallelBlockBecomesAHeadAndPerCpuSteps) {
  // A runs on CPU 0; B and K are new. CPU 0 unmaps from A while CPU 1 runs K then B.
  absl::StatusOr<Scenario> sc = Compile(Scenario2(R"(
    {"op": "spawn", "task": "A"}, {"op": "spawn", "task": "B"}, {"op": "kthread", "task": "K"},
    {"op": "run", "cpu": 0, "task": "A"},
    {"op": "parallel", "steps": {"0": [{"op": "munmap", "task": "A"}],
                                 "1": [{"op": "run", "cpu": 1, "task": "K"},
                                       {"op": "run", "cpu": 1, "task": "B"}]}})"));
  ASSERT_TRUE(sc.ok()) << sc.status();
  // Tasks: idle/0, idle/1, A=2, B=3, K=4. Program: 4 model steps, the block head with 3
  // sub-steps, the final verification.
  ASSERT_EQ(sc->program.size(), 9u);
  const abi::Step& head = sc->program[4];
  EXPECT_EQ(head.op, Op(abi::StepOp::kParallel));
  EXPECT_EQ(head.arg, 3u);
  EXPECT_EQ(head.index, 4u);
  EXPECT_EQ(sc->program[5].op, Op(abi::StepOp::kMunmap));
  EXPECT_EQ(sc->program[5].cpu, 0u);
  EXPECT_EQ(sc->program[6].op, Op(abi::StepOp::kRun));
  EXPECT_EQ(sc->program[6].cpu, 1u);
  EXPECT_EQ(sc->program[6].task, 4);
  EXPECT_EQ(sc->program[7].task, 3);
  EXPECT_EQ(sc->program[8].op, Op(abi::StepOp::kVerify));
}

TEST(ScenarioCompileTest, ParallelVerifiesAfterTheBlockNotInside) {
  CompileOptions every;
  every.verify_every_step = true;
  absl::StatusOr<Scenario> sc = Compile(Scenario2(R"(
    {"op": "kthread", "task": "K"},
    {"op": "parallel", "steps": {"1": [{"op": "run", "cpu": 1, "task": "K"},
                                       {"op": "idle", "cpu": 1}]}})"),
                                        every);
  ASSERT_TRUE(sc.ok()) << sc.status();
  EXPECT_EQ(sc->program[1].flags, abi::kStepVerifyAfter);
  EXPECT_EQ(sc->program[2].flags, 0u);
  EXPECT_EQ(sc->program[3].flags, 0u);
}

// ---- Errors ------------------------------------------------------------------------------------

struct ErrorCase {
  const char* name;
  std::string text;
  std::vector<std::string> fragments;  // each must be in the message
  // Test names and failure messages show the case's name, not its bytes.
  friend std::ostream& operator<<(std::ostream& os, const ErrorCase& c) { return os << c.name; }
};

class ScenarioErrorTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(ScenarioErrorTest, IsInvalidArgumentNamingTheCause) {
  absl::StatusOr<Scenario> sc = Compile(GetParam().text);
  ASSERT_FALSE(sc.ok());
  EXPECT_EQ(sc.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(sc.status().message()), StartsWith("t.json: "));
  for (const std::string& f : GetParam().fragments) {
    EXPECT_THAT(std::string(sc.status().message()), HasSubstr(f));
  }
}

// Steps that set up A (running on CPU 0), K (a kernel thread, not running) and B (not running).
const std::string kSetUp = R"(
    {"op": "spawn", "task": "A"},
    {"op": "kthread", "task": "K"},
    {"op": "spawn", "task": "B", "pages": 2},
    {"op": "run", "cpu": 0, "task": "A"})";

std::string WithSetUp(const std::string& more) { return Scenario2(kSetUp + "," + more); }

const ErrorCase kErrorCases[] = {
    // The file as a whole.
    {"InvalidJson", R"({"version": 1, "name": )", {"t.json: invalid JSON: ", "at byte"}},
    {"TrailingGarbage", Scenario2(R"({"op": "checkpoint"})") + "x", {"invalid JSON"}},
    {"NotAnObject", "[1, 2]", {"the scenario must be a JSON object, got array [1,2]"}},
    {"WrongVersion",
     R"({"version": 2, "name": "t", "cpus": 1, "steps": [{"op": "checkpoint"}]})",
     {"t.json: unsupported version 2"}},
    {"VersionAsString",
     R"({"version": "1", "name": "t", "cpus": 1, "steps": [{"op": "checkpoint"}]})",
     {"t.json: unsupported version \"1\""}},
    {"MissingVersion",
     R"({"name": "t", "cpus": 1, "steps": [{"op": "checkpoint"}]})",
     {"t.json: missing field 'version'"}},
    {"MissingName",
     R"({"version": 1, "cpus": 1, "steps": [{"op": "checkpoint"}]})",
     {"t.json: missing field 'name'"}},
    {"EmptyName",
     R"({"version": 1, "name": "", "cpus": 1, "steps": [{"op": "checkpoint"}]})",
     {"field 'name' must not be empty"}},
    {"UnknownTopLevelField",
     R"({"version": 1, "name": "t", "cpus": 1, "lazytlb": true, "steps": [{"op": "checkpoint"}]})",
     {"t.json: unknown field 'lazytlb'"}},
    {"DuplicateTopLevelField",
     R"({"version": 1, "name": "t", "name": "u", "cpus": 1, "steps": [{"op": "checkpoint"}]})",
     {"t.json: duplicate field 'name'"}},
    {"CpusZero",
     R"({"version": 1, "name": "t", "cpus": 0, "steps": [{"op": "checkpoint"}]})",
     {"field 'cpus' is 0, must be 1..64"}},
    {"CpusTooMany",
     R"({"version": 1, "name": "t", "cpus": 65, "steps": [{"op": "checkpoint"}]})",
     {"field 'cpus' is 65, must be 1..64"}},
    {"CpusNotInteger",
     R"({"version": 1, "name": "t", "cpus": 2.5, "steps": [{"op": "checkpoint"}]})",
     {"field 'cpus' must be an integer, got number 2.5"}},
    {"MissingCpus",
     R"({"version": 1, "name": "t", "steps": [{"op": "checkpoint"}]})",
     {"t.json: missing field 'cpus'"}},
    {"LazyTlbNotBool",
     R"({"version": 1, "name": "t", "cpus": 1, "lazy_tlb": "on", "steps": [{"op": "checkpoint"}]})",
     {"field 'lazy_tlb' must be true or false, got string \"on\""}},
    {"MissingSteps", R"({"version": 1, "name": "t", "cpus": 1})", {"missing field 'steps'"}},
    {"StepsNotArray",
     R"({"version": 1, "name": "t", "cpus": 1, "steps": {}})",
     {"field 'steps' must be an array"}},
    {"NoSteps", Scenario2(""), {"field 'steps' is empty"}},

    // Step shape.
    {"StepNotObject", Scenario2("3"), {"t.json: step 0 (?): a step must be a JSON object"}},
    {"MissingOp", Scenario2(R"({"task": "A"})"), {"step 0 (?): missing field 'op'"}},
    {"OpNotString", Scenario2(R"({"op": 1})"), {"step 0 (?): field 'op' must be a string"}},
    {"UnknownOp", Scenario2(R"({"op": "jump"})"), {"step 0 (jump): unknown op 'jump'"}},
    {"UnknownStepField",
     Scenario2(R"({"op": "spawn", "task": "A", "page": 2})"),
     {"step 0 (spawn): unknown field 'page'"}},
    {"DuplicateStepField",
     Scenario2(R"({"op": "checkpoint"}, {"op": "spawn", "task": "A", "pages": 2, "pages": 3})"),
     {"t.json: step 1 (spawn): duplicate field 'pages'"}},
    {"MissingTask", Scenario2(R"({"op": "spawn"})"), {"step 0 (spawn): missing field 'task'"}},
    {"EmptyTaskName",
     Scenario2(R"({"op": "spawn", "task": ""})"),
     {"step 0 (spawn): field 'task' must not be empty"}},
    {"TaskNotString",
     Scenario2(R"({"op": "kthread", "task": 7})"),
     {"step 0 (kthread): field 'task' must be a string, got number 7"}},
    {"PagesAsString",
     Scenario2(R"({"op": "spawn", "task": "A", "pages": "4"})"),
     {"step 0 (spawn): field 'pages' must be an integer, got string \"4\""}},
    {"PagesZero",
     Scenario2(R"({"op": "spawn", "task": "A", "pages": 0})"),
     {"field 'pages' is 0, must be 1..32"}},
    {"SpawnPagesTooMany",
     Scenario2(R"({"op": "spawn", "task": "A", "pages": 33})"),
     {"step 0 (spawn): field 'pages' is 33, must be 1..32"}},
    {"ExecPagesTooMany",
     WithSetUp(R"({"op": "exec", "task": "A", "pages": 40})"),
     {"step 4 (exec): field 'pages' is 40, must be 1..32"}},
    {"MissingRunCpu",
     WithSetUp(R"({"op": "run", "task": "B"})"),
     {"step 4 (run): missing field 'cpu'"}},
    {"ProtInvalid",
     WithSetUp(R"({"op": "mprotect", "task": "A", "prot": "rwx"})"),
     {"step 4 (mprotect): field 'prot' must be \"r\" or \"rw\", got string \"rwx\""}},
    {"LazyFilterUnknownMode",
     Scenario2(R"({"op": "check", "mm": "init_mm", "lazy_tlb": "lazy"})"),
     {"step 0 (check): field 'lazy_tlb' must be true, false, one of 'on', 'shootdown', 'off', "
      "or a list of them, got string \"lazy\""}},
    {"LazyFilterEmptyList",
     Scenario2(R"({"op": "counters", "cpu": 0, "lazy_tlb": [], "cr3_writes": 1})"),
     {"step 0 (counters): field 'lazy_tlb' is an empty list: the step would apply in no mode"}},
    {"PcidFilterNumber",
     Scenario2(R"({"op": "counters", "pcid": 1, "cr3_writes": 1})"),
     {"step 0 (counters): field 'pcid' must be true, false, one of 'hardware', 'modeled', "
      "'off', or a list of them, got number 1"}},
    {"CountersFieldOnCheckpoint",
     Scenario2(R"({"op": "checkpoint", "lazy_tlb": true})"),
     {"step 0 (checkpoint): unknown field 'lazy_tlb'"}},

    // CPUs.
    {"RunCpuOutOfRange",
     WithSetUp(R"({"op": "run", "cpu": 2, "task": "B"})"),
     {"step 4 (run): field 'cpu': CPU 2 is out of range: the scenario has 2 CPUs"}},
    {"IdleCpuNegative",
     WithSetUp(R"({"op": "idle", "cpu": -1})"),
     {"step 4 (idle): field 'cpu': CPU -1 is out of range"}},
    {"SpawnCpuOutOfRange",
     Scenario2(R"({"op": "spawn", "task": "A", "cpu": 9})"),
     {"step 0 (spawn): field 'cpu': CPU 9 is out of range"}},
    {"LoadedOnCpuOutOfRange",
     WithSetUp(R"({"op": "check", "mm": "A", "loaded_on": [0, 5]})"),
     {"step 4 (check): field 'loaded_on': CPU 5 is out of range"}},
    {"LazyOnDuplicateCpu",
     WithSetUp(R"({"op": "check", "mm": "A", "lazy_on": [1, 1]})"),
     {"step 4 (check): field 'lazy_on' lists CPU 1 twice"}},
    {"LoadedOnNotArray",
     WithSetUp(R"({"op": "check", "mm": "A", "loaded_on": 0})"),
     {"field 'loaded_on' must be an array of CPU numbers, got number 0"}},
    {"CountersCpuOutOfRange",
     WithSetUp(R"({"op": "counters", "cpu": 2})"),
     {"step 4 (counters): field 'cpu': CPU 2 is out of range"}},

    // Names.
    {"DuplicateTaskName",
     WithSetUp(R"({"op": "kthread", "task": "B"})"),
     {"step 4 (kthread): task 'B' already exists"}},
    {"TaskNameReusedAfterExit",
     WithSetUp(R"({"op": "exit", "task": "A"}, {"op": "spawn", "task": "A"})"),
     {"step 5 (spawn): task 'A' already exists"}},
    {"UnknownTask",
     WithSetUp(R"({"op": "run", "cpu": 1, "task": "X"})"),
     {"step 4 (run): unknown task 'X'"}},
    {"IdleTaskNamed",
     WithSetUp(R"({"op": "run", "cpu": 1, "task": "idle/0"})"),
     {"step 4 (run): task 'idle/0': scenarios cannot name idle tasks"}},
    {"IdleTaskNameCreated",
     Scenario2(R"({"op": "kthread", "task": "idle/5"})"),
     {"step 0 (kthread): task name 'idle/5' is reserved"}},
    {"UnknownParent",
     WithSetUp(R"({"op": "clone_vm", "parent": "Z", "task": "Z1"})"),
     {"step 4 (clone_vm): unknown task 'Z'"}},
    {"UnknownMmInUseMm",
     WithSetUp(R"({"op": "run", "cpu": 1, "task": "K"}, {"op": "use_mm", "task": "K",
                  "mm": "Z"})"),
     {"step 5 (use_mm): unknown mm 'Z'"}},
    {"UnknownMmInCheck",
     WithSetUp(R"({"op": "check", "mm": "K"})"),
     {"step 4 (check): unknown mm 'K'"}},
    {"ForkChildNamedLikeAnExecMm",
     WithSetUp(R"({"op": "exec", "task": "A"}, {"op": "fork", "parent": "A", "task": "A.exec1"})"),
     {"step 5 (fork): mm 'A.exec1' already exists"}},
    {"ExecMmNamedLikeATask",
     Scenario2(R"({"op": "spawn", "task": "A.exec1"}, {"op": "spawn", "task": "A"},
                  {"op": "run", "cpu": 0, "task": "A"}, {"op": "exec", "task": "A"})"),
     {"step 3 (exec): mm 'A.exec1' already exists"}},
    {"SpawnNamedInitMm",
     Scenario2(R"({"op": "spawn", "task": "init_mm"})"),
     {"step 0 (spawn): mm 'init_mm' already exists"}},

    // Scheduling.
    {"RunTaskRunningElsewhere",
     WithSetUp(R"({"op": "run", "cpu": 1, "task": "A"})"),
     {"step 4 (run): task 'A' is running on CPU 0"}},
    {"RunCurrentTask",
     WithSetUp(R"({"op": "run", "cpu": 0, "task": "A"})"),
     {"step 4 (run): task 'A' is already running on CPU 0"}},
    {"RunExitedTask",
     WithSetUp(R"({"op": "exit", "task": "A"}, {"op": "run", "cpu": 1, "task": "A"})"),
     {"step 5 (run): task 'A' has exited"}},
    {"IdleOnIdleCpu",
     WithSetUp(R"({"op": "idle", "cpu": 1})"),
     {"step 4 (idle): CPU 1 is already idle"}},
    {"IdleAfterExit",
     WithSetUp(R"({"op": "exit", "task": "A"}, {"op": "idle", "cpu": 0})"),
     {"step 5 (idle): CPU 0 is already idle"}},

    // Steps of the current task.
    {"ExecNotCurrent",
     WithSetUp(R"({"op": "exec", "task": "B"})"),
     {"t.json: step 4 (exec): task 'B' is not running on any CPU"}},
    {"ExitNotCurrent",
     WithSetUp(R"({"op": "exit", "task": "B"})"),
     {"step 4 (exit): task 'B' is not running on any CPU"}},
    {"ExitTwice",
     WithSetUp(R"({"op": "exit", "task": "A"}, {"op": "exit", "task": "A"})"),
     {"step 5 (exit): task 'A' has exited"}},
    {"UseMmNotCurrent",
     WithSetUp(R"({"op": "use_mm", "task": "K", "mm": "A"})"),
     {"step 4 (use_mm): task 'K' is not running on any CPU"}},
    {"UnuseMmNotCurrent",
     WithSetUp(R"({"op": "unuse_mm", "task": "K"})"),
     {"step 4 (unuse_mm): task 'K' is not running on any CPU"}},
    {"MmapNotCurrent",
     WithSetUp(R"({"op": "mmap", "task": "B"})"),
     {"step 4 (mmap): task 'B' is not running on any CPU"}},
    {"MunmapNotCurrent",
     WithSetUp(R"({"op": "munmap", "task": "B"})"),
     {"step 4 (munmap): task 'B' is not running on any CPU"}},
    {"MprotectNotCurrent",
     WithSetUp(R"({"op": "mprotect", "task": "B"})"),
     {"step 4 (mprotect): task 'B' is not running on any CPU"}},
    {"UseMmFromUserTask",
     WithSetUp(R"({"op": "use_mm", "task": "A", "mm": "B"})"),
     {"step 4 (use_mm): task 'A' is a user task, not a kernel thread"}},
    {"UnuseMmFromUserTask",
     WithSetUp(R"({"op": "unuse_mm", "task": "A"})"),
     {"step 4 (unuse_mm): task 'A' is a user task, not a kernel thread"}},
    {"UseMmWithoutUsers",
     WithSetUp(R"({"op": "exit", "task": "A"}, {"op": "run", "cpu": 1, "task": "K"},
                  {"op": "use_mm", "task": "K", "mm": "A"})"),
     {"step 6 (use_mm): mm 'A' has no users (mm_users is 0)"}},
    {"UseMmInitMm",
     WithSetUp(R"({"op": "run", "cpu": 1, "task": "K"}, {"op": "use_mm", "task": "K",
                  "mm": "init_mm"})"),
     {"step 5 (use_mm): use_mm of mm 'init_mm'"}},
    {"UseMmTwice",
     WithSetUp(R"({"op": "run", "cpu": 1, "task": "K"}, {"op": "use_mm", "task": "K", "mm": "A"},
                  {"op": "use_mm", "task": "K", "mm": "B"})"),
     {"step 6 (use_mm): kernel thread 'K' is already using mm 'A'"}},
    {"UnuseMmWithoutUseMm",
     WithSetUp(R"({"op": "run", "cpu": 1, "task": "K"}, {"op": "unuse_mm", "task": "K"})"),
     {"step 5 (unuse_mm): kernel thread 'K' is not using an mm"}},
    {"ExitOfKthreadUsingMm",
     WithSetUp(R"({"op": "run", "cpu": 1, "task": "K"}, {"op": "use_mm", "task": "K", "mm": "A"},
                  {"op": "exit", "task": "K"})"),
     {"step 6 (exit): kernel thread 'K' is between use_mm and unuse_mm (of mm 'A')"}},
    {"ExecOfKthreadUsingMm",
     WithSetUp(R"({"op": "run", "cpu": 1, "task": "K"}, {"op": "use_mm", "task": "K", "mm": "A"},
                  {"op": "exec", "task": "K"})"),
     {"step 6 (exec): kernel thread 'K' is between use_mm and unuse_mm"}},
    {"CloneVmOfKthread",
     WithSetUp(R"({"op": "clone_vm", "parent": "K", "task": "K1"})"),
     {"step 4 (clone_vm): parent 'K' is a kernel thread, not a user task"}},
    {"ForkOfExitedParent",
     WithSetUp(R"({"op": "exit", "task": "A"}, {"op": "fork", "parent": "A", "task": "A2"})"),
     {"step 5 (fork): task 'A' has exited"}},
    {"MmapByKthreadWithoutMm",
     WithSetUp(R"({"op": "run", "cpu": 1, "task": "K"}, {"op": "mmap", "task": "K"})"),
     {"step 5 (mmap): task 'K' is a kernel thread with no mm"}},
    {"MmapOnMmWhoseUsersExited",
     WithSetUp(R"({"op": "run", "cpu": 1, "task": "K"}, {"op": "use_mm", "task": "K", "mm": "A"},
                  {"op": "exit", "task": "A"}, {"op": "mmap", "task": "K"})"),
     {"step 7 (mmap): mm 'A' has no users (mm_users is 0)"}},

    // Pages.
    {"MunmapMoreThanMapped",
     WithSetUp(R"({"op": "munmap", "task": "A", "pages": 5})"),
     {"step 4 (munmap): munmap of 5 pages: mm 'A' has only 4 mapped"}},
    {"MprotectAfterMunmapOfAll",
     WithSetUp(R"({"op": "munmap", "task": "A", "pages": 4}, {"op": "mprotect", "task": "A"})"),
     {"step 5 (mprotect): mprotect of 1 pages: mm 'A' has only 0 mapped"}},
    {"TooManyPageEntries",
     WithSetUp(R"({"op": "mmap", "task": "A", "pages": 60}, {"op": "munmap", "task": "A",
                  "pages": 64}, {"op": "mmap", "task": "A"})"),
     {"step 6 (mmap): mmap of 1 pages: mm 'A' already has 64 page entries"}},
    {"MmapPagesTooMany",
     WithSetUp(R"({"op": "mmap", "task": "A", "pages": 65})"),
     {"step 4 (mmap): field 'pages' is 65, must be 1..64"}},

    // Checks and counters.
    {"CheckWithMmAndTask",
     WithSetUp(R"({"op": "check", "mm": "A", "task": "A"})"),
     {"step 4 (check): fields 'mm' ('A') and 'task' ('A') both given"}},
    {"CheckWithoutMmOrTask",
     WithSetUp(R"({"op": "check", "mm_users": 1})"),
     {"step 4 (check): missing field 'mm' (or 'task')"}},
    {"CheckUnknownField",
     WithSetUp(R"({"op": "check", "mm": "A", "users": 1})"),
     {"step 4 (check): unknown field 'users'"}},
    {"CheckNegativeMmCount",
     WithSetUp(R"({"op": "check", "mm": "A", "mm_count": -1})"),
     {"step 4 (check): field 'mm_count' is -1"}},
    {"CheckFreedNotBool",
     WithSetUp(R"({"op": "check", "mm": "A", "freed": 0})"),
     {"step 4 (check): field 'freed' must be true or false, got number 0"}},
    {"CheckUnknownTask",
     WithSetUp(R"({"op": "check", "task": "Q"})"),
     {"step 4 (check): unknown task 'Q'"}},
    {"CheckInitMmRefcounts",
     WithSetUp(R"({"op": "check", "mm": "init_mm", "mm_users": 1})"),
     {"step 4 (check): mm 'init_mm': its reference counts are not modeled"}},
    {"UnknownCounter",
     WithSetUp(R"({"op": "counters", "cr3_write": 1})"),
     {"step 4 (counters): unknown counter 'cr3_write'"}},
    {"NegativeCounter",
     WithSetUp(R"({"op": "counters", "invlpg": -2})"),
     {"step 4 (counters): counter 'invlpg' must be a non-negative integer, got number -2"}},
    {"CounterNotInteger",
     WithSetUp(R"({"op": "counters", "invlpg": "2"})"),
     {"counter 'invlpg' must be a non-negative integer, got string \"2\""}},

    // Parallel blocks.
    {"ParallelNested",
     WithSetUp(R"({"op": "parallel", "steps": {"1": [{"op": "parallel", "steps": {}}]}})"),
     {"step 4 (parallel): CPU 1's step 0 (parallel): only model steps may run in parallel"}},
    {"ParallelCheckInside",
     WithSetUp(R"({"op": "parallel", "steps": {"0": [{"op": "check", "mm": "A"}]}})"),
     {"CPU 0's step 0 (check): only model steps may run in parallel; checks go after the block"}},
    {"ParallelBadKey",
     WithSetUp(R"({"op": "parallel", "steps": {"7": []}})"),
     {"step 4 (parallel): parallel list key '7' is not a CPU number (0..1)"}},
    {"ParallelEmpty",
     WithSetUp(R"({"op": "parallel", "steps": {}})"),
     {"field 'steps' must be a non-empty object of per-CPU step lists"}},
    {"ParallelRunOnAnotherCpu",
     WithSetUp(R"({"op": "parallel", "steps": {"0": [{"op": "run", "cpu": 1, "task": "K"}]}})"),
     {"CPU 0's step 0 (run): it would run on CPU 1, not CPU 0"}},
    {"ParallelParentRunsElsewhere",
     WithSetUp(R"({"op": "parallel", "steps": {"1": [{"op": "clone_vm", "parent": "A",
                                                       "task": "A9"}]}})"),
     {"CPU 1's step 0 (clone_vm): it would run on CPU 0, not CPU 1"}},
    {"ParallelSameTaskTwice",
     WithSetUp(R"({"op": "parallel", "steps": {"0": [{"op": "fork", "parent": "B", "task": "C"}],
                                                "1": [{"op": "run", "cpu": 1, "task": "B"}]}})"),
     {"CPU 1's step 0 (run): task 'B' is used by the lists of CPU 0 and CPU 1"}},
    {"ParallelExitLeavesAnMmAnotherListChanges",
     WithSetUp(R"({"op": "clone_vm", "parent": "A", "task": "A1"},
                  {"op": "run", "cpu": 1, "task": "A1"},
                  {"op": "parallel", "steps": {"0": [{"op": "mmap", "task": "A"}],
                                                "1": [{"op": "exit", "task": "A1"}]}})"),
     {"step 6 (parallel): CPU 1's step 0 (exit): mm 'A' is used by the lists of CPU 0 and CPU 1"}},
    {"ParallelSameMmTwice",
     WithSetUp(R"({"op": "parallel", "steps": {"0": [{"op": "mmap", "task": "A"}],
                                                "1": [{"op": "run", "cpu": 1, "task": "K"},
                                                      {"op": "use_mm", "task": "K",
                                                       "mm": "A"}]}})"),
     {"CPU 1's step 1 (use_mm): mm 'A' is used by the lists of CPU 0 and CPU 1",
      "parallel lists must be independent"}},
};

INSTANTIATE_TEST_SUITE_P(Scenario, ScenarioErrorTest, ::testing::ValuesIn(kErrorCases),
                         [](const ::testing::TestParamInfo<ErrorCase>& info) {
                           return std::string(info.param.name);
                         });

TEST(ScenarioOptionsTest, CpusOptionOutOfRange) {
  for (int cpus : {0, 65}) {
    CompileOptions options;
    options.cpus = cpus;
    absl::StatusOr<Scenario> sc = Compile(Scenario2(R"({"op": "checkpoint"})"), options);
    ASSERT_FALSE(sc.ok());
    EXPECT_EQ(sc.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(sc.status().message()),
                HasSubstr(absl::StrFormat("t.json: --cpus %d is out of range 1..64", cpus)));
  }
}

}  // namespace
}  // namespace activemm
