// The replay planner (vmm/replay/replay_plan.h) on hand-made traces, no KVM: the program steps each
// event becomes, derived by hand from the rules in vmm/replay/replay_plan.cc, the plan's
// independence from the kernel's own CR3 loads (the answer it is scored against), and its
// robustness to traces that are damaged or incomplete. The real traces in ../shared/traces are
// planned too.
#include "vmm/replay/replay_plan.h"

#include <stdint.h>
#include <string.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shared/mm_abi.h"
#include "vmm/replay/trace.h"

namespace activemm {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using Op = abi::StepOp;

// ---- writing traces ---------------------------------------------------------------------------

// The task named at the start of a line. tgid -1 prints as "-------" (the idle task).
struct Who {
  std::string comm;
  int pid;
  int tgid;
};

Who Idle() { return {"<idle>", 0, -1}; }

// Timestamps are microseconds after 100 s, printed as ftrace does ("100.000010").
std::string Line(int cpu, int64_t us, const Who& w, const std::string& flags,
                 const std::string& event) {
  const std::string tgid = w.tgid < 0 ? "-------" : absl::StrFormat("%7d", w.tgid);
  const int64_t t = 100'000'000 + us;
  return absl::StrFormat("%16s-%-7d (%s) [%03d] %s %6d.%06d: %s", w.comm, w.pid, tgid, cpu, flags,
                         t / 1'000'000, t % 1'000'000, event);
}

std::string SwitchCommOf(const Who& w, int cpu) {
  return w.pid == 0 ? absl::StrFormat("swapper/%d", cpu) : w.comm;
}

std::string Switch(int cpu, int64_t us, const Who& prev, const std::string& state,
                   const Who& next) {
  return Line(
      cpu, us, prev, "d..2.",
      absl::StrFormat("sched_switch: prev_comm=%s prev_pid=%d prev_prio=120 "
                      "prev_state=%s ==> next_comm=%s next_pid=%d next_prio=120",
                      SwitchCommOf(prev, cpu), prev.pid, state, SwitchCommOf(next, cpu), next.pid));
}

std::string Fork(int cpu, int64_t us, const Who& parent, const Who& child) {
  return Line(cpu, us, parent, ".....",
              absl::StrFormat("sched_process_fork: comm=%s pid=%d child_comm=%s child_pid=%d",
                              parent.comm, parent.pid, child.comm, child.pid));
}

std::string Exec(int cpu, int64_t us, const Who& w, const std::string& filename) {
  return Line(
      cpu, us, w, ".....",
      absl::StrFormat("sched_process_exec: filename=%s pid=%d old_pid=%d", filename, w.pid, w.pid));
}

std::string Exit(int cpu, int64_t us, const Who& w, const std::string& flags = ".....") {
  return Line(cpu, us, w, flags,
              absl::StrFormat("sched_process_exit: comm=%s pid=%d prio=120 group_dead=true", w.comm,
                              w.pid));
}

std::string Flush(int cpu, int64_t us, const Who& w, const std::string& flags, int pages,
                  int reason) {
  static const char* const kNames[] = {"flush on task switch", "remote shootdown",
                                       "local shootdown",      "local MM shootdown",
                                       "remote IPI send",      "remote wrong CPU"};
  return Line(cpu, us, w, flags,
              absl::StrFormat("tlb_flush: pages:%d reason:%s (%d)", pages, kNames[reason], reason));
}

// The kernel's CR3 load of a switch: traced by the task switched out, inside __schedule.
std::string Load(int cpu, int64_t us, const Who& prev, bool flush = true) {
  return Flush(cpu, us, prev, "d..2.", flush ? -1 : 0, 0);
}

std::string TraceText(const std::vector<std::string>& lines, int cpus = 2) {
  std::string text =
      absl::StrFormat("# tracer: nop\n#\n# entries-in-buffer/entries-written: %d/%d   #P:%d\n#\n",
                      lines.size(), lines.size(), cpus);
  for (const std::string& l : lines) absl::StrAppend(&text, l, "\n");
  return text;
}

TraceDir MakeDir(const std::string& text, std::set<int> kthreads = {},
                 std::map<int, int> tgids = {}) {
  TraceDir dir;
  dir.path = "synthetic";
  dir.trace = ParseTrace(text);
  dir.kthreads = std::move(kthreads);
  dir.tgids = std::move(tgids);
  dir.kernel_release = "test";
  dir.kernel_cpus = dir.trace.num_cpus;
  return dir;
}

ReplayPlan Plan(const TraceDir& dir) {
  absl::StatusOr<ReplayPlan> plan = PlanReplay(dir, ReplayPlanOptions{});
  EXPECT_TRUE(plan.ok()) << plan.status();
  if (!plan.ok()) return ReplayPlan{};
  return *std::move(plan);
}

// ---- reading plans ------------------------------------------------------------------------

const char* OpName(uint32_t op) {
  static const char* const kOps[] = {
      "?",      "spawn",    "clone_vm", "fork",   "kthread",  "run",    "idle",     "exec", "exit",
      "use_mm", "unuse_mm", "mmap",     "munmap", "mprotect", "verify", "parallel", "flush"};
  return op < std::size(kOps) ? kOps[op] : "?";
}

// Every field, so that comparing two of these compares the steps exactly.
std::string Str(const abi::Step& s) {
  return absl::StrFormat("%s cpu=%u task=%d parent=%d mm=%d pages=%u prot=%u flags=%u arg=%u ev=%u",
                         OpName(s.op), s.cpu, s.task, s.parent, s.mm, s.pages, s.prot, s.flags,
                         s.arg, s.index);
}

// The program without its last step, the final verification (ExpectWellFormed checks it is
// there; TheFinalVerificationNamesNoTraceEvent what it carries).
std::vector<std::string> Steps(const ReplayPlan& plan) {
  std::vector<std::string> out;
  for (const abi::Step& s : plan.scenario.program) out.push_back(Str(s));
  if (!out.empty()) out.pop_back();
  return out;
}

// The expected steps, as the planner emits them (MakeStep: parent kNoTask, mm kNoMm, flags 0,
// index = the trace event the step comes from).
abi::Step S(Op op, uint32_t cpu, int32_t task, uint32_t ev) {
  abi::Step s{};
  s.op = static_cast<uint32_t>(op);
  s.cpu = cpu;
  s.task = task;
  s.parent = abi::kNoTask;
  s.mm = abi::kNoMm;
  s.index = ev;
  return s;
}
std::string Spawn(uint32_t cpu, int32_t task, int32_t mm, uint32_t ev) {
  abi::Step s = S(Op::kSpawn, cpu, task, ev);
  s.mm = mm;
  s.pages = 1;
  return Str(s);
}
std::string CloneVm(uint32_t cpu, int32_t task, int32_t parent, uint32_t ev) {
  abi::Step s = S(Op::kCloneVm, cpu, task, ev);
  s.parent = parent;
  return Str(s);
}
std::string ForkStep(uint32_t cpu, int32_t task, int32_t parent, int32_t mm, uint32_t ev) {
  abi::Step s = S(Op::kFork, cpu, task, ev);
  s.parent = parent;
  s.mm = mm;
  return Str(s);
}
std::string Kthread(uint32_t cpu, int32_t task, uint32_t ev) {
  return Str(S(Op::kKthread, cpu, task, ev));
}
// A switch to `task`; `mm` is the next task's mm (only named for --plan output).
std::string RunStep(uint32_t cpu, int32_t task, int32_t mm, uint32_t ev, uint32_t arg = 0) {
  abi::Step s = S(Op::kRun, cpu, task, ev);
  s.mm = mm;
  s.arg = arg;
  return Str(s);
}
std::string IdleStep(uint32_t cpu, uint32_t ev, uint32_t arg = 0) {
  abi::Step s = S(Op::kIdle, cpu, abi::kNoTask, ev);
  s.arg = arg;
  return Str(s);
}
std::string ExecStep(uint32_t cpu, int32_t task, int32_t mm, uint32_t ev) {
  abi::Step s = S(Op::kExec, cpu, task, ev);
  s.mm = mm;
  s.pages = 1;
  return Str(s);
}
std::string ExitStep(uint32_t cpu, int32_t task, uint32_t ev) {
  abi::Step s = S(Op::kExit, cpu, task, ev);
  s.arg = abi::kExitKeepsRunning;
  return Str(s);
}
std::string FlushBegin(uint32_t cpu, int32_t task, int32_t mm, int pages, uint32_t ev) {
  abi::Step s = S(Op::kFlush, cpu, task, ev);
  s.mm = mm;
  s.pages = pages < 0 ? abi::kFlushAllPages : static_cast<uint32_t>(pages);
  s.arg = abi::kFlushBegin;
  return Str(s);
}
// `ipi`: the flush was a reason-4 line (the finish step then names its late CPUs, maybe none).
std::string FlushFinish(uint32_t cpu, int32_t task, int32_t mm, uint32_t ev, bool ipi,
                        uint64_t late = 0) {
  abi::Step s = S(Op::kFlush, cpu, task, ev);
  s.mm = mm;
  s.arg = abi::kFlushFinish;
  if (ipi) s.late_ipi_cpus = late;
  return Str(s);
}
std::string Verify(uint32_t ev, uint32_t check) {
  abi::Step s = S(Op::kVerify, 0, abi::kNoTask, ev);
  s.arg = check;
  return Str(s);
}

std::string Str(const ReplaySwitch& s) {
  return absl::StrFormat("line=%d cpu=%d %d->%d kind='%s' step=%d why='%s'", s.line, s.cpu,
                         s.prev_pid, s.next_pid, s.kind, s.step, s.unplaced_why);
}

std::string Str(const ReplayPlanStats& p) {
  return absl::StrFormat(
      "tasks=%d kthreads=%d mid_trace=%d forked=%d vforks=%d threads=%d kthreads_forked=%d "
      "execs=%d execs_at_vfork_wakeup=%d exits=%d exits_after_preemption=%d flushes=%d "
      "local_part=%d of_fork=%d without_mm=%d retargeted=%d late_ipis=%d inferred=%d "
      "inferred_idle=%d inferred_exits=%d skipped=%d [%s]",
      p.tasks, p.kthreads, p.pids_first_seen_mid_trace, p.processes_forked, p.vforks, p.threads,
      p.kthreads_forked, p.execs, p.execs_at_vfork_wakeup, p.exits, p.exits_after_preemption,
      p.flushes, p.flushes_local_part, p.flushes_of_fork, p.flushes_without_mm,
      p.flushes_retargeted, p.late_ipis, p.inferred_switches, p.inferred_idle_exits,
      p.inferred_exits, p.skipped_events, absl::StrJoin(p.skipped, "; "));
}

// What every plan must satisfy, whatever the trace: each placed switch points at a run/idle
// step of its own CPU (to the task it names), step fields stay within the scenario's tables,
// and the program ends with the final verification.
void ExpectWellFormed(const TraceDir& dir, const ReplayPlan& plan) {
  const Scenario& sc = plan.scenario;
  const int n = static_cast<int>(sc.program.size());
  EXPECT_EQ(sc.cpus, dir.trace.num_cpus);
  ASSERT_FALSE(sc.program.empty());
  EXPECT_EQ(sc.program.back().op, static_cast<uint32_t>(Op::kVerify));
  ASSERT_FALSE(sc.checks.empty());
  EXPECT_EQ(sc.checks.back().kind, HostCheck::Kind::kFinal);
  EXPECT_EQ(sc.mm_names.at(0), "init_mm");
  for (int i = 0; i < n; ++i) {
    const abi::Step& s = sc.program[i];
    SCOPED_TRACE(absl::StrFormat("step %d: %s", i, Str(s)));
    EXPECT_LT(s.cpu, static_cast<uint32_t>(sc.cpus));
    EXPECT_GE(s.task, abi::kNoTask);
    EXPECT_LT(s.task, static_cast<int32_t>(sc.task_names.size()));
    EXPECT_GE(s.mm, abi::kNoMm);
    EXPECT_LT(s.mm, static_cast<int32_t>(sc.mm_names.size()));
    if (s.op == static_cast<uint32_t>(Op::kVerify)) {
      EXPECT_LT(s.arg, sc.checks.size());
      EXPECT_LE(s.index, dir.trace.events.size());  // the final one: one past the last event
    } else {
      EXPECT_LT(s.index, dir.trace.events.size());
    }
  }
  EXPECT_EQ(plan.switches.size(),
            static_cast<size_t>(std::count_if(
                dir.trace.events.begin(), dir.trace.events.end(),
                [](const TraceEvent& e) { return e.kind == TraceEventKind::kSwitch; })));
  for (const ReplaySwitch& sw : plan.switches) {
    SCOPED_TRACE(Str(sw));
    ASSERT_GE(sw.event, 0);
    ASSERT_LT(sw.event, static_cast<int>(dir.trace.events.size()));
    const TraceEvent& e = dir.trace.events[sw.event];
    EXPECT_EQ(e.kind, TraceEventKind::kSwitch);
    EXPECT_EQ(e.line, sw.line);
    EXPECT_EQ(e.cpu, sw.cpu);
    EXPECT_EQ(e.prev_pid, sw.prev_pid);
    EXPECT_EQ(e.next_pid, sw.next_pid);
    if (sw.step < 0) {
      EXPECT_FALSE(sw.unplaced_why.empty());
      continue;
    }
    ASSERT_LT(sw.step, n);
    const abi::Step& s = sc.program[sw.step];
    EXPECT_EQ(s.cpu, static_cast<uint32_t>(sw.cpu)) << Str(s);
    if (sw.next_pid == 0) {
      EXPECT_EQ(s.op, static_cast<uint32_t>(Op::kIdle)) << Str(s);
    } else {
      EXPECT_EQ(s.op, static_cast<uint32_t>(Op::kRun)) << Str(s);
      if (s.task >= 0 && s.task < static_cast<int32_t>(sc.task_names.size())) {
        EXPECT_TRUE(absl::EndsWith(sc.task_names[s.task], absl::StrFormat("-%d", sw.next_pid)))
            << sc.task_names[s.task] << " for " << Str(s);
      }
    }
  }
}

// ---- the central property: the kernel's CR3 loads are not an input ------------------------

bool IsCr3LoadLine(std::string_view line) {
  Trace t = ParseTrace(line);
  return t.events.size() == 1 && t.events[0].kind == TraceEventKind::kFlush &&
         t.events[0].reason == FlushReason::kTaskSwitch;
}

// `text` with every "flush on task switch (0)" line turned into a '#' comment: the same line
// numbers, none of the answers.
std::string WithoutCr3Loads(const std::string& text, int* commented) {
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  *commented = 0;
  for (std::string& l : lines) {
    if (IsCr3LoadLine(l)) {
      l = "#" + l;
      ++*commented;
    }
  }
  return absl::StrJoin(lines, "\n");
}

// A step with its event index replaced by the event's line: event indices shift when events
// are removed, lines do not.
abi::Step ByLine(const abi::Step& s, const Trace& t) {
  abi::Step out = s;
  out.index = s.index < t.events.size() ? static_cast<uint32_t>(t.events[s.index].line) : ~0u;
  return out;
}

void ExpectSamePlan(const TraceDir& a_dir, const ReplayPlan& a, const TraceDir& b_dir,
                    const ReplayPlan& b) {
  ASSERT_EQ(a.scenario.program.size(), b.scenario.program.size());
  int differing = 0;
  for (size_t i = 0; i < a.scenario.program.size(); ++i) {
    const abi::Step sa = ByLine(a.scenario.program[i], a_dir.trace);
    const abi::Step sb = ByLine(b.scenario.program[i], b_dir.trace);
    if (memcmp(&sa, &sb, sizeof(abi::Step)) != 0 && ++differing <= 5) {
      ADD_FAILURE() << "step " << i << ": " << Str(sa) << " vs " << Str(sb)
                    << " (ev = trace line here)";
    }
  }
  EXPECT_EQ(differing, 0);
  ASSERT_EQ(a.switches.size(), b.switches.size());
  for (size_t k = 0; k < a.switches.size(); ++k) {
    EXPECT_EQ(Str(a.switches[k]), Str(b.switches[k]));
    EXPECT_EQ(a_dir.trace.events[a.switches[k].event].line,
              b_dir.trace.events[b.switches[k].event].line);
  }
  EXPECT_EQ(Str(a.stats), Str(b.stats));
  EXPECT_EQ(a.scenario.task_names, b.scenario.task_names);
  EXPECT_EQ(a.scenario.mm_names, b.scenario.mm_names);
  ASSERT_EQ(a.scenario.checks.size(), b.scenario.checks.size());
  for (size_t i = 0; i < a.scenario.checks.size(); ++i) {
    const HostCheck& ca = a.scenario.checks[i];
    const HostCheck& cb = b.scenario.checks[i];
    EXPECT_EQ(ca.kind, cb.kind);
    EXPECT_EQ(ca.step_index < 0 ? -1 : a_dir.trace.events.at(ca.step_index).line,
              cb.step_index < 0 ? -1 : b_dir.trace.events.at(cb.step_index).line);
  }
}

// Plans `dir` and the same folder with its CR3 loads commented out; both plans must be equal.
// `min_commented`: how many reason-0 lines the test meant the trace to have.
void ExpectPlanIgnoresCr3Loads(const TraceDir& dir, const std::string& text,
                               int min_commented = 1) {
  int commented = 0;
  TraceDir without = dir;
  without.trace = ParseTrace(WithoutCr3Loads(text, &commented));
  EXPECT_GE(commented, min_commented);
  ASSERT_EQ(without.trace.events.size() + commented, dir.trace.events.size());
  ASSERT_EQ(without.trace.stats.lines, dir.trace.stats.lines);
  absl::StatusOr<ReplayPlan> a = PlanReplay(dir, ReplayPlanOptions{});
  absl::StatusOr<ReplayPlan> b = PlanReplay(without, ReplayPlanOptions{});
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  ExpectSamePlan(dir, *a, without, *b);
}

// ---- threads, kernel threads ----------------------------------------------------------------

TEST(ReplayPlanTest, ThreadsShareOneMmAndKernelThreadsHaveNone) {
  const Who a{"a", 100, 100}, a2{"a", 101, 100}, kw{"kworker/u4:1", 20, 20};
  const std::string text = TraceText({
      Switch(0, 10, Idle(), "R", a),  // e0
      Load(0, 11, Idle()),            // e1
      Fork(0, 20, a, a2),             // e2: a thread (same tgid)
      Switch(0, 30, a, "S", a2),      // e3
      Switch(0, 40, a2, "S", kw),     // e4
      Switch(0, 50, kw, "I", a),      // e5
  });
  const TraceDir dir = MakeDir(text, {20});
  const ReplayPlan plan = Plan(dir);
  ExpectWellFormed(dir, plan);
  // Tasks 0 and 1 are the idle tasks; a is task 2 on mm 1, its thread task 3 on the same mm.
  EXPECT_THAT(Steps(plan),
              ElementsAre(Spawn(0, 2, 1, 0), RunStep(0, 2, 1, 0),  //
                          CloneVm(0, 3, 2, 2),                     //
                          RunStep(0, 3, 1, 3),                     //
                          Kthread(0, 4, 4), RunStep(0, 4, abi::kNoMm, 4), RunStep(0, 2, 1, 5)));
  EXPECT_THAT(plan.scenario.task_names,
              ElementsAre("idle/0", "idle/1", "a-100", "a-101", "kworker/u4:1-20"));
  EXPECT_THAT(plan.scenario.mm_names, ElementsAre("init_mm", "a-100"));
  ASSERT_EQ(plan.switches.size(), 4u);
  EXPECT_EQ(plan.switches[0].kind, "kernel->user");
  EXPECT_EQ(plan.switches[1].kind, "user->user (same mm)");
  EXPECT_EQ(plan.switches[2].kind, "user->kernel");
  EXPECT_EQ(plan.switches[3].kind, "kernel->user");
  EXPECT_EQ(plan.switches[0].step, 1);
  EXPECT_EQ(plan.switches[1].step, 3);
  EXPECT_EQ(plan.switches[2].step, 5);
  EXPECT_EQ(plan.switches[3].step, 6);
  EXPECT_EQ(plan.switches[1].line, 5 + 3);  // 4 header lines, then e0 at line 5
  const ReplayPlanStats& p = plan.stats;
  EXPECT_EQ(p.tasks, 3);
  EXPECT_EQ(p.kthreads, 1);
  EXPECT_EQ(p.pids_first_seen_mid_trace, 2);  // a and the kworker; a2 was forked
  EXPECT_EQ(p.threads, 1);
  EXPECT_EQ(p.processes_forked, 0);
  EXPECT_EQ(p.vforks, 0);
  EXPECT_EQ(p.inferred_switches, 0);
  EXPECT_EQ(p.skipped_events, 0);
  ExpectPlanIgnoresCr3Loads(dir, text);
}

TEST(ReplayPlanTest, PidsFirstSeenMidTrace) {
  // A thread whose fork is not in the trace joins its tgid's mm (tgids.txt names its tgid);
  // a kernel thread no longer in kthreads.txt is known by its name.
  const Who a{"a", 100, 100}, a2{"a", 105, 100}, k{"ksoftirqd/0", 15, 15};
  const std::string text = TraceText({
      Switch(0, 10, Idle(), "R", a),  // e0
      Switch(0, 20, a, "S", a2),      // e1
      Switch(0, 30, a2, "S", k),      // e2
      Switch(0, 40, k, "S", Idle()),  // e3
  });
  const TraceDir dir = MakeDir(text, {}, {{105, 100}});
  const ReplayPlan plan = Plan(dir);
  ExpectWellFormed(dir, plan);
  EXPECT_THAT(Steps(plan),
              ElementsAre(Spawn(0, 2, 1, 0), RunStep(0, 2, 1, 0),    //
                          CloneVm(0, 3, 2, 1), RunStep(0, 3, 1, 1),  //
                          Kthread(0, 4, 2), RunStep(0, 4, abi::kNoMm, 2), IdleStep(0, 3)));
  EXPECT_EQ(plan.stats.pids_first_seen_mid_trace, 3);
  EXPECT_EQ(plan.stats.kthreads, 1);
  EXPECT_EQ(plan.stats.threads, 0);  // no fork event
  EXPECT_EQ(plan.switches[3].kind, "kernel->kernel");
}

// ---- fork: dup_mm (with dup_mmap's flush) or CLONE_VM ---------------------------------------

TEST(ReplayPlanTest, ForkAfterAFullFlushCopiesTheMmAVforkSharesIt) {
  const Who p{"p", 100, 100}, c{"p", 101, 101}, v{"q", 102, 102};
  const std::string text = TraceText({
      Switch(0, 10, Idle(), "R", p),    // e0
      Load(0, 11, Idle()),              // e1
      Flush(0, 20, p, "d..1.", -1, 3),  // e2: dup_mmap's flush_tlb_mm(oldmm)
      Fork(0, 25, p, c),                // e3: a process: a new mm
      Flush(0, 30, p, "d..2.", 1, 3),   // e4: an ordinary flush
      Fork(0, 35, p, v),                // e5: no full flush before: CLONE_VM
      Switch(0, 40, p, "D", v),         // e6
  });
  const TraceDir dir = MakeDir(text);
  const ReplayPlan plan = Plan(dir);
  ExpectWellFormed(dir, plan);
  EXPECT_THAT(Steps(plan), ElementsAre(Spawn(0, 2, 1, 0), RunStep(0, 2, 1, 0),  //
                                       ForkStep(0, 3, 2, 2, 3),                 // e2 emits nothing
                                       FlushBegin(0, 2, 1, 1, 4), FlushFinish(0, 2, 1, 4, false),
                                       CloneVm(0, 4, 2, 5),    //
                                       RunStep(0, 4, 1, 6)));  // the parent's mm
  EXPECT_THAT(plan.scenario.mm_names, ElementsAre("init_mm", "p-100", "p-101"));
  const ReplayPlanStats& s = plan.stats;
  EXPECT_EQ(s.processes_forked, 1);
  EXPECT_EQ(s.flushes_of_fork, 1);
  EXPECT_EQ(s.flushes, 1);
  EXPECT_EQ(s.vforks, 1);
  EXPECT_EQ(s.threads, 0);
  EXPECT_EQ(plan.switches[0].kind, "kernel->user");
  EXPECT_EQ(plan.switches[1].kind, "user->user (same mm)");
  ExpectPlanIgnoresCr3Loads(dir, text);
}

TEST(ReplayPlanTest, AFullFlushBeforeAThreadIsNotAForkFlush) {
  // The next thing the CPU shows is a fork into the same tgid: no dup_mmap, so the full flush
  // is an ordinary one.
  const Who p{"p", 100, 100}, t{"p", 101, 100};
  const std::string text = TraceText({
      Switch(0, 10, Idle(), "R", p),    // e0
      Flush(0, 20, p, "d..1.", -1, 3),  // e1
      Fork(0, 25, p, t),                // e2
  });
  const TraceDir dir = MakeDir(text, {}, {{101, 100}});
  const ReplayPlan plan = Plan(dir);
  ExpectWellFormed(dir, plan);
  EXPECT_THAT(Steps(plan),
              ElementsAre(Spawn(0, 2, 1, 0), RunStep(0, 2, 1, 0), FlushBegin(0, 2, 1, -1, 1),
                          FlushFinish(0, 2, 1, 1, false), CloneVm(0, 3, 2, 2)));
  EXPECT_EQ(plan.stats.flushes_of_fork, 0);
  EXPECT_EQ(plan.stats.threads, 1);
  EXPECT_EQ(plan.stats.processes_forked, 0);
}

TEST(ReplayPlanTest, KernelThreadsForkKernelThreads) {
  const Who kt{"kthreadd", 2, 2}, kw{"kworker/0:2", 30, 30};
  const std::string text = TraceText({
      Switch(0, 10, Idle(), "R", kt),  // e0
      Fork(0, 20, kt, kw),             // e1
      Switch(0, 30, kt, "S", kw),      // e2
  });
  const TraceDir dir = MakeDir(text);  // kthreadd is pid 2 even without kthreads.txt
  const ReplayPlan plan = Plan(dir);
  ExpectWellFormed(dir, plan);
  EXPECT_THAT(Steps(plan), ElementsAre(Kthread(0, 2, 0), RunStep(0, 2, abi::kNoMm, 0),
                                       Kthread(0, 3, 1), RunStep(0, 3, abi::kNoMm, 2)));
  EXPECT_EQ(plan.stats.kthreads_forked, 1);
  EXPECT_EQ(plan.stats.kthreads, 2);
}

// ---- vfork + exec ---------------------------------------------------------------------------

TEST(ReplayPlanTest, VforkChildExecsBeforeItsParentWakesWhileRunning) {
  // The child is preempted by its woken parent before its exec event is traced: exec_mmap
  // happened first (it is what woke the parent).
  const Who sh{"sh", 100, 100}, c{"sh", 101, 101}, ls{"ls", 101, 101};
  const std::string text = TraceText({
      Switch(0, 10, Idle(), "R", sh),  // e0
      Fork(0, 20, sh, c),              // e1: vfork
      Switch(0, 30, sh, "D", c),       // e2
      Switch(0, 40, c, "R+", sh),      // e3: the parent runs again
      Switch(0, 50, sh, "S", ls),      // e4
      Exec(0, 60, ls, "ls"),           // e5
  });
  const TraceDir dir = MakeDir(text);
  const ReplayPlan plan = Plan(dir);
  ExpectWellFormed(dir, plan);
  EXPECT_THAT(Steps(plan),
              ElementsAre(Spawn(0, 2, 1, 0), RunStep(0, 2, 1, 0),     //
                          CloneVm(0, 3, 2, 1),                        //
                          RunStep(0, 3, 1, 2),                        //
                          ExecStep(0, 3, 2, 3), RunStep(0, 2, 1, 3),  // the exec first
                          RunStep(0, 3, 2, 4)));  // the child on its new mm; e5 adds nothing
  EXPECT_THAT(plan.scenario.mm_names,
              ElementsAre("init_mm", "sh-100", absl::StrFormat("ls-101@%d", 5 + 5)));
  EXPECT_EQ(plan.stats.vforks, 1);
  EXPECT_EQ(plan.stats.execs, 1);
  EXPECT_EQ(plan.stats.execs_at_vfork_wakeup, 1);
  EXPECT_EQ(plan.switches[2].step, 5);
  EXPECT_EQ(plan.switches[3].step, 6);
}

TEST(ReplayPlanTest, VforkChildExecsBeforeItsParentWakesAfterItSwitchedOut) {
  // The child last ran before the parent woke: its exec goes before the step that switched it
  // out (with that step's event), and the switches after it move up one step.
  const Who sh{"sh", 100, 100}, c{"sh", 101, 101}, ls{"ls", 101, 101};
  const std::string text = TraceText({
      Switch(0, 10, Idle(), "R", sh),  // e0
      Fork(0, 20, sh, c),              // e1: vfork
      Switch(0, 30, sh, "D", c),       // e2
      Switch(0, 40, c, "S", Idle()),   // e3: the child sleeps (its exec is under way)
      Load(0, 41, c),                  // e4
      Switch(0, 50, Idle(), "R", sh),  // e5: the parent runs again
      Load(0, 51, Idle()),             // e6
      Switch(0, 60, sh, "S", ls),      // e7
      Load(0, 61, sh),                 // e8
      Exec(0, 70, ls, "ls"),           // e9
  });
  const TraceDir dir = MakeDir(text);
  const ReplayPlan plan = Plan(dir);
  ExpectWellFormed(dir, plan);
  EXPECT_THAT(Steps(plan), ElementsAre(Spawn(0, 2, 1, 0), RunStep(0, 2, 1, 0),  //
                                       CloneVm(0, 3, 2, 1),                     //
                                       RunStep(0, 3, 1, 2),                     //
                                       ExecStep(0, 3, 2, 3),  // before the child's switch-out
                                       IdleStep(0, 3),        //
                                       RunStep(0, 2, 1, 5),   //
                                       RunStep(0, 3, 2, 7)));
  EXPECT_EQ(plan.stats.execs_at_vfork_wakeup, 1);
  EXPECT_EQ(plan.stats.execs, 1);
  ASSERT_EQ(plan.switches.size(), 5u);
  EXPECT_EQ(plan.switches[1].step, 3);
  EXPECT_EQ(plan.switches[2].step, 5);  // moved up by the inserted exec
  EXPECT_EQ(plan.switches[3].step, 6);
  EXPECT_EQ(plan.switches[4].step, 7);
  ExpectPlanIgnoresCr3Loads(dir, text, 3);
}

TEST(ReplayPlanTest, VforkChildExecBeforeTheParentWakesTakesItsFlushesAlong) {
  // setup_arg_pages flushes the new mm before the exec event: those flushes move onto it.
  const Who sh{"sh", 100, 100}, c{"sh", 101, 101}, ls{"ls", 101, 101};
  const std::string text = TraceText({
      Switch(0, 10, Idle(), "R", sh),  // e0
      Fork(0, 20, sh, c),              // e1: vfork
      Switch(0, 30, sh, "D", c),       // e2
      Flush(0, 35, c, "d..2.", 1, 3),  // e3: on the new mm (exec_mmap already ran)
      Switch(0, 40, c, "R+", sh),      // e4
      Exec(0, 60, ls, "ls"),           // e5
  });
  const TraceDir dir = MakeDir(text);
  const ReplayPlan plan = Plan(dir);
  ExpectWellFormed(dir, plan);
  EXPECT_THAT(
      Steps(plan),
      ElementsAre(Spawn(0, 2, 1, 0), RunStep(0, 2, 1, 0), CloneVm(0, 3, 2, 1), RunStep(0, 3, 1, 2),
                  ExecStep(0, 3, 2, 3),  // before the flush, with the flush's event
                  FlushBegin(0, 3, 2, 1, 3), FlushFinish(0, 3, 2, 3, false), RunStep(0, 2, 1, 4),
                  // e5 runs on CPU 0, where the parent is current: the child is
                  // switched back in (inferred) to exec, which it already did.
                  RunStep(0, 3, 2, 5)));
  EXPECT_EQ(plan.stats.execs_at_vfork_wakeup, 1);
  EXPECT_EQ(plan.stats.flushes, 1);
  EXPECT_EQ(plan.stats.inferred_switches, 1);
  EXPECT_EQ(plan.stats.flushes_retargeted, 1);  // one flush (both of its halves moved)
  ASSERT_EQ(plan.switches.size(), 3u);
  EXPECT_EQ(plan.switches[2].step, 7);
}

// ---- flushes ----------------------------------------------------------------------------------

TEST(ReplayPlanTest, AnIpiFlushAndItsLocalHalfAreOneFlush) {
  const Who a{"a", 100, 100};
  const std::string text = TraceText({
      Switch(0, 10, Idle(), "R", a),    // e0
      Load(0, 11, Idle()),              // e1
      Flush(0, 20, a, "...1.", 3, 4),   // e2: flush_tlb_multi sends the IPIs
      Flush(0, 21, a, "d..2.", 3, 3),   // e3: ... and flushes locally
      Flush(0, 30, a, "d..2.", -1, 3),  // e4: a local flush on its own
      Flush(0, 40, a, "d..2.", 99, 3),  // e5: more than 64 pages: everything
  });
  const TraceDir dir = MakeDir(text);
  const ReplayPlan plan = Plan(dir);
  ExpectWellFormed(dir, plan);
  EXPECT_THAT(Steps(plan), ElementsAre(Spawn(0, 2, 1, 0), RunStep(0, 2, 1, 0),  //
                                       FlushBegin(0, 2, 1, 3, 2), FlushFinish(0, 2, 1, 2, true, 0),
                                       FlushBegin(0, 2, 1, -1, 4), FlushFinish(0, 2, 1, 4, false),
                                       FlushBegin(0, 2, 1, -1, 5), FlushFinish(0, 2, 1, 5, false)));
  EXPECT_EQ(plan.stats.flushes, 3);
  EXPECT_EQ(plan.stats.flushes_local_part, 1);
  EXPECT_EQ(plan.stats.late_ipis, 0);
  ExpectPlanIgnoresCr3Loads(dir, text);
}

TEST(ReplayPlanTest, RemoteFlushReasonsAreNotInputs) {
  // Reasons 1 and 5 are what the remote CPUs did with an IPI, 2 a kernel flush, 0 the answer.
  const Who a{"a", 100, 100}, b{"b", 200, 200};
  const std::string text = TraceText({
      Switch(0, 10, Idle(), "R", a),    // e0
      Switch(1, 11, Idle(), "R", b),    // e1
      Flush(1, 20, b, "d.h1.", 1, 1),   // e2
      Flush(1, 21, b, "d.h..", -1, 5),  // e3
      Flush(0, 22, a, "d..1.", -1, 2),  // e4
      Flush(0, 23, a, "d..1.", 0, 0),   // e5
  });
  const TraceDir dir = MakeDir(text);
  const ReplayPlan plan = Plan(dir);
  ExpectWellFormed(dir, plan);
  EXPECT_THAT(Steps(plan), ElementsAre(Spawn(0, 2, 1, 0), RunStep(0, 2, 1, 0), Spawn(1, 3, 2, 1),
                                       RunStep(1, 3, 2, 1)));
  EXPECT_EQ(plan.stats.flushes, 0);
  EXPECT_EQ(plan.stats.flushes_local_part, 0);
}

TEST(ReplayPlanTest, FlushesBeforeAnExecAreOnTheNewMm) {
  const Who sh{"sh", 100, 100}, ls{"ls", 100, 100};
  const std::string text = TraceText({
      Switch(0, 10, Idle(), "R", sh),   // e0
      Load(0, 11, Idle()),              // e1
      Flush(0, 20, sh, "d..2.", 1, 3),  // e2: an ordinary flush of the old mm
      Switch(0, 30, sh, "R+", Idle()),  // e3
      Switch(0, 40, Idle(), "R", sh),   // e4
      Flush(0, 50, ls, "d..2.", 1, 3),  // e5: setup_arg_pages, on the new mm
      Flush(0, 55, ls, "d..2.", 2, 3),  // e6
      Flush(0, 56, ls, "d..1.", 0, 0),  // e7: exec's activate_mm traces reason 0 too
      Exec(0, 60, ls, "ls"),            // e8
      Flush(0, 70, ls, "d..2.", 1, 3),  // e9: after it: the new mm anyway
  });
  const TraceDir dir = MakeDir(text);
  const ReplayPlan plan = Plan(dir);
  ExpectWellFormed(dir, plan);
  EXPECT_THAT(Steps(plan),
              ElementsAre(Spawn(0, 2, 1, 0), RunStep(0, 2, 1, 0),                     //
                          FlushBegin(0, 2, 1, 1, 2), FlushFinish(0, 2, 1, 2, false),  //
                          IdleStep(0, 3), RunStep(0, 2, 1, 4),                        //
                          ExecStep(0, 2, 2, 8),                                       //
                          FlushBegin(0, 2, 2, 1, 5), FlushFinish(0, 2, 2, 5, false),  //
                          FlushBegin(0, 2, 2, 2, 6), FlushFinish(0, 2, 2, 6, false),  //
                          FlushBegin(0, 2, 2, 1, 9), FlushFinish(0, 2, 2, 9, false)));
  EXPECT_THAT(plan.scenario.mm_names,
              ElementsAre("init_mm", "sh-100", absl::StrFormat("ls-100@%d", 5 + 8)));
  EXPECT_EQ(plan.stats.flushes, 4);
  EXPECT_EQ(plan.stats.execs, 1);
  // Two flushes moved, each with both halves (its tlb_gen increment and its IPIs).
  EXPECT_EQ(plan.stats.flushes_retargeted, 2);
  ExpectPlanIgnoresCr3Loads(dir, text, 2);
}

TEST(ReplayPlanTest, AnExecMovedBeforeItsFlushesKeepsTheOtherCpusSwitchesInPlace) {
  // Between the flush and the exec another CPU switches: the exec goes before the flush, and
  // the other CPU's switch must still point at its own step.
  const Who sh{"sh", 100, 100}, ls{"ls", 100, 100}, x{"x", 200, 200};
  const std::string text = TraceText({
      Switch(0, 10, Idle(), "R", sh),   // e0
      Switch(1, 11, Idle(), "R", x),    // e1
      Flush(0, 20, ls, "d..2.", 1, 3),  // e2
      Switch(1, 25, x, "S", Idle()),    // e3
      Exec(0, 30, ls, "ls"),            // e4
  });
  const TraceDir dir = MakeDir(text);
  const ReplayPlan plan = Plan(dir);
  ExpectWellFormed(dir, plan);
  EXPECT_THAT(Steps(plan),
              ElementsAre(Spawn(0, 2, 1, 0), RunStep(0, 2, 1, 0), Spawn(1, 3, 2, 1),
                          RunStep(1, 3, 2, 1), ExecStep(0, 2, 3, 4), FlushBegin(0, 2, 3, 1, 2),
                          FlushFinish(0, 2, 3, 2, false), IdleStep(1, 3)));
  ASSERT_EQ(plan.switches.size(), 3u);
  EXPECT_EQ(plan.switches[2].step, 7);
}

TEST(ReplayPlanTest, FlushesWithoutAnMm) {
  const Who kw{"kworker/1:0", 20, 20}, a{"a", 100, 100};
  const std::string text = TraceText({
      Switch(0, 10, Idle(), "R", kw),       // e0
      Flush(0, 20, kw, "d..2.", 1, 3),      // e1: a kernel thread (kthread_use_mm)
      Flush(1, 25, Idle(), "d..2.", 1, 3),  // e2: the idle task
      Switch(0, 30, kw, "I", a),            // e3
      Exit(0, 40, a),                       // e4
      Flush(0, 50, a, "d..1.", -1, 3),      // e5: exit_mmap, after exit_mm
      Switch(0, 60, a, "X", Idle()),        // e6
  });
  const TraceDir dir = MakeDir(text, {20});
  const ReplayPlan plan = Plan(dir);
  ExpectWellFormed(dir, plan);
  EXPECT_THAT(Steps(plan), ElementsAre(Kthread(0, 2, 0), RunStep(0, 2, abi::kNoMm, 0),
                                       Spawn(0, 3, 1, 3), RunStep(0, 3, 1, 3), ExitStep(0, 3, 4),
                                       IdleStep(0, 6, abi::kSwitchPrevDies)));
  EXPECT_EQ(plan.stats.flushes_without_mm, 3);
  EXPECT_EQ(plan.stats.flushes, 0);
}

TEST(ReplayPlanTest, ALateIpiLandsAfterItsTargetSwitchedAway) {
  // CPU 1 runs a's other thread when a's flush sends its IPIs, and the next thing CPU 1 shows
  // is switching that thread out: the IPI landed after the switch.
  const Who a{"a", 100, 100}, a2{"a", 101, 100};
  const std::string text = TraceText({
      Switch(0, 10, Idle(), "R", a),   // e0
      Load(0, 11, Idle()),             // e1
      Switch(1, 12, Idle(), "R", a2),  // e2
      Load(1, 13, Idle()),             // e3
      Flush(0, 20, a, "...1.", 1, 4),  // e4
      Flush(0, 21, a, "d..2.", 1, 3),  // e5: its local half
      Switch(1, 22, a2, "S", Idle()),  // e6
      Flush(0, 30, a, "...1.", 1, 4),  // e7: CPU 1 no longer runs a
      Flush(0, 31, a, "d..2.", 1, 3),  // e8
  });
  const TraceDir dir = MakeDir(text, {}, {{101, 100}});
  const ReplayPlan plan = Plan(dir);
  ExpectWellFormed(dir, plan);
  EXPECT_THAT(Steps(plan),
              ElementsAre(Spawn(0, 2, 1, 0), RunStep(0, 2, 1, 0), CloneVm(1, 3, 2, 2),
                          RunStep(1, 3, 1, 2),  //
                          FlushBegin(0, 2, 1, 1, 4), FlushFinish(0, 2, 1, 4, true, 1u << 1),
                          IdleStep(1, 6),  //
                          FlushBegin(0, 2, 1, 1, 7), FlushFinish(0, 2, 1, 7, true, 0)));
  EXPECT_EQ(plan.scenario.program[5].late_ipi_cpus, 2u);
  EXPECT_EQ(plan.stats.late_ipis, 1);
  EXPECT_EQ(plan.stats.flushes, 2);
  EXPECT_EQ(plan.stats.flushes_local_part, 2);
  ExpectPlanIgnoresCr3Loads(dir, text, 2);
}

TEST(ReplayPlanTest, AnIpiHandledBeforeTheSwitchIsNotLate) {
  const Who a{"a", 100, 100}, a2{"a", 101, 100};
  const std::string text = TraceText({
      Switch(0, 10, Idle(), "R", a),    // e0
      Switch(1, 12, Idle(), "R", a2),   // e1
      Flush(0, 20, a, "...1.", 1, 4),   // e2
      Flush(0, 21, a, "d..2.", 1, 3),   // e3
      Flush(1, 22, a2, "d.h1.", 1, 1),  // e4: CPU 1 handles the IPI
      Switch(1, 23, a2, "S", Idle()),   // e5
  });
  const TraceDir dir = MakeDir(text, {}, {{101, 100}});
  const ReplayPlan plan = Plan(dir);
  ExpectWellFormed(dir, plan);
  EXPECT_THAT(Steps(plan), ElementsAre(Spawn(0, 2, 1, 0), RunStep(0, 2, 1, 0), CloneVm(1, 3, 2, 1),
                                       RunStep(1, 3, 1, 1), FlushBegin(0, 2, 1, 1, 2),
                                       FlushFinish(0, 2, 1, 2, true, 0), IdleStep(1, 5)));
  EXPECT_EQ(plan.stats.late_ipis, 0);
}

TEST(ReplayPlanTest, AFlushIncrementGoesBeforeWhatOtherCpusTracedInTheSameMicrosecond) {
  // The tlb_gen increment counts as done 1 ns before the flush line: a switch CPU 1 traced in
  // the same microsecond, just before the flush line, comes after it.
  const Who a{"a", 100, 100}, a2{"a", 101, 100};
  const std::string text = TraceText({
      Switch(0, 10, Idle(), "R", a),   // e0
      Switch(1, 20, Idle(), "R", a2),  // e1: same microsecond as e2
      Flush(0, 20, a, "d..2.", 1, 3),  // e2
  });
  const TraceDir dir = MakeDir(text, {}, {{101, 100}});
  const ReplayPlan plan = Plan(dir);
  ExpectWellFormed(dir, plan);
  EXPECT_THAT(Steps(plan), ElementsAre(Spawn(0, 2, 1, 0), RunStep(0, 2, 1, 0),
                                       FlushBegin(0, 2, 1, 1, 2), CloneVm(1, 3, 2, 1),
                                       RunStep(1, 3, 1, 1), FlushFinish(0, 2, 1, 2, false)));

  // ... unless that CPU then handles the flush's IPI (reason 1): it read tlb_gen before the
  // increment.
  const std::string text2 = TraceText({
      Switch(0, 10, Idle(), "R", a),    // e0
      Switch(1, 20, Idle(), "R", a2),   // e1
      Flush(0, 20, a, "...1.", 1, 4),   // e2
      Flush(1, 21, a2, "d.h1.", 1, 1),  // e3
      Flush(0, 22, a, "d..2.", 1, 3),   // e4
  });
  const TraceDir dir2 = MakeDir(text2, {}, {{101, 100}});
  const ReplayPlan plan2 = Plan(dir2);
  ExpectWellFormed(dir2, plan2);
  EXPECT_THAT(Steps(plan2), ElementsAre(Spawn(0, 2, 1, 0), RunStep(0, 2, 1, 0), CloneVm(1, 3, 2, 1),
                                        RunStep(1, 3, 1, 1), FlushBegin(0, 2, 1, 1, 2),
                                        FlushFinish(0, 2, 1, 2, true, 0)));
}

// ---- exit ----------------------------------------------------------------------------------

TEST(ReplayPlanTest, ExitThenTheZombieSwitch) {
  const Who a{"a", 100, 100};
  const std::string text = TraceText({
      Switch(0, 10, Idle(), "R", a),   // e0
      Load(0, 11, Idle()),             // e1
      Exit(0, 20, a),                  // e2
      Flush(0, 21, a, "d..1.", 0, 0),  // e3: leave_mm of the exiting task's lazy mm
      Switch(0, 30, a, "Z", Idle()),   // e4
  });
  const TraceDir dir = MakeDir(text);
  const ReplayPlan plan = Plan(dir);
  ExpectWellFormed(dir, plan);
  EXPECT_THAT(Steps(plan),
              ElementsAre(Spawn(0, 2, 1, 0), RunStep(0, 2, 1, 0), ExitStep(0, 2, 2),  //
                          IdleStep(0, 4, abi::kSwitchPrevDies)));
  EXPECT_EQ(plan.scenario.program[2].arg, abi::kExitKeepsRunning);
  EXPECT_EQ(plan.scenario.program[3].arg, abi::kSwitchPrevDies);
  EXPECT_EQ(plan.stats.exits, 1);
  EXPECT_EQ(plan.stats.exits_after_preemption, 0);
  EXPECT_EQ(plan.stats.inferred_exits, 0);
  EXPECT_EQ(plan.switches[1].kind, "kernel->kernel (prev exiting)");
  ExpectPlanIgnoresCr3Loads(dir, text, 2);
}

TEST(ReplayPlanTest, ExitWithNeedReschedFinishesWhenSwitchedBackIn) {
  const Who a{"a", 100, 100}, b{"b", 200, 200};
  const std::string text = TraceText({
      Switch(0, 10, Idle(), "R", a),  // e0
      Exit(0, 20, a, ".N..."),        // e1: need-resched set
      Switch(0, 30, a, "R+", b),      // e2: preempted before exit_mm
      Load(0, 31, a),                 // e3
      Switch(0, 40, b, "S", a),       // e4: back: exit_mm now
      Load(0, 41, b),                 // e5
      Switch(0, 50, a, "Z", b),       // e6
  });
  const TraceDir dir = MakeDir(text);
  const ReplayPlan plan = Plan(dir);
  ExpectWellFormed(dir, plan);
  EXPECT_THAT(Steps(plan),
              ElementsAre(Spawn(0, 2, 1, 0), RunStep(0, 2, 1, 0),  //
                          Spawn(0, 3, 2, 2), RunStep(0, 3, 2, 2),  // a still has its mm
                          RunStep(0, 2, 1, 4), ExitStep(0, 2, 4),  //
                          RunStep(0, 3, 2, 6, abi::kSwitchPrevDies)));
  EXPECT_EQ(plan.stats.exits, 1);
  EXPECT_EQ(plan.stats.exits_after_preemption, 1);
  EXPECT_EQ(plan.switches[1].kind, "user->user");
  EXPECT_EQ(plan.switches[3].kind, "kernel->user (prev exiting)");
  ExpectPlanIgnoresCr3Loads(dir, text, 2);
}

TEST(ReplayPlanTest, ExitWithNeedReschedButNoPreemptionExitsAtOnce) {
  const Who a{"a", 100, 100};
  const std::string text = TraceText({
      Switch(0, 10, Idle(), "R", a),  // e0
      Exit(0, 20, a, ".N..."),        // e1
      Switch(0, 30, a, "Z", Idle()),  // e2: not R: no preemption came first
  });
  const TraceDir dir = MakeDir(text);
  const ReplayPlan plan = Plan(dir);
  EXPECT_THAT(Steps(plan), ElementsAre(Spawn(0, 2, 1, 0), RunStep(0, 2, 1, 0), ExitStep(0, 2, 1),
                                       IdleStep(0, 2, abi::kSwitchPrevDies)));
  EXPECT_EQ(plan.stats.exits_after_preemption, 0);
}

TEST(ReplayPlanTest, ADeadSwitchWithoutAnExitEventInfersTheExit) {
  const Who a{"a", 100, 100};
  const std::string text = TraceText({
      Switch(0, 10, Idle(), "R", a),  // e0
      Switch(0, 20, a, "X", Idle()),  // e1
      Switch(0, 30, Idle(), "R", a),  // e2: pid 100 again: a new task
  });
  const TraceDir dir = MakeDir(text);
  const ReplayPlan plan = Plan(dir);
  ExpectWellFormed(dir, plan);
  EXPECT_THAT(Steps(plan), ElementsAre(Spawn(0, 2, 1, 0), RunStep(0, 2, 1, 0), ExitStep(0, 2, 1),
                                       IdleStep(0, 1, abi::kSwitchPrevDies), Spawn(0, 3, 2, 2),
                                       RunStep(0, 3, 2, 2)));
  EXPECT_EQ(plan.stats.inferred_exits, 1);
  EXPECT_EQ(plan.stats.exits, 0);
  EXPECT_EQ(plan.stats.pids_first_seen_mid_trace, 2);
}

// ---- switches the trace does not show -------------------------------------------------------

TEST(ReplayPlanTest, UntracedSwitchesAwayFromIdleAreInferred) {
  // CPU 1 never records switching away from swapper/1: b shows up there running.
  const Who a{"a", 100, 100}, b{"b", 101, 101};
  const std::string text = TraceText({
      Switch(1, 10, Idle(), "R", a),  // e0
      Load(1, 11, Idle()),            // e1
      Switch(1, 20, a, "S", Idle()),  // e2
      Switch(1, 30, b, "S", Idle()),  // e3: b ran, untraced
  });
  const TraceDir dir = MakeDir(text);
  const ReplayPlan plan = Plan(dir);
  ExpectWellFormed(dir, plan);
  EXPECT_THAT(Steps(plan), ElementsAre(Spawn(1, 2, 1, 0), RunStep(1, 2, 1, 0), IdleStep(1, 2),
                                       Spawn(1, 3, 2, 3), RunStep(1, 3, 2, 3),  // inferred
                                       IdleStep(1, 3)));
  EXPECT_EQ(plan.stats.inferred_switches, 1);
  EXPECT_EQ(plan.stats.inferred_idle_exits, 1);
  ASSERT_EQ(plan.switches.size(), 3u);
  EXPECT_EQ(plan.switches[2].step, 5);
  ExpectPlanIgnoresCr3Loads(dir, text);
}

TEST(ReplayPlanTest, ATaskStillRunningElsewhereLeavesThatCpuIdleFirst) {
  const Who a{"a", 100, 100};
  const std::string text = TraceText({
      Switch(0, 10, Idle(), "R", a),  // e0
      Switch(1, 20, Idle(), "R", a),  // e1: CPU 0's switch away from a was lost
  });
  const TraceDir dir = MakeDir(text);
  const ReplayPlan plan = Plan(dir);
  ExpectWellFormed(dir, plan);
  EXPECT_THAT(Steps(plan), ElementsAre(Spawn(0, 2, 1, 0), RunStep(0, 2, 1, 0), IdleStep(0, 1),
                                       RunStep(1, 2, 1, 1)));
  EXPECT_EQ(plan.stats.inferred_switches, 1);
  EXPECT_EQ(plan.stats.inferred_idle_exits, 0);
}

// ---- robustness -----------------------------------------------------------------------------

TEST(ReplayPlanTest, DamagedTracesArePlannedAndCounted) {
  const Who a{"a", 100, 100}, b{"b", 200, 200}, c{"c", 300, 300}, d{"d", 400, 400};
  const std::string text = TraceText({
      "this is not a trace line",      // malformed
      Switch(0, 10, Idle(), "R", a),   // e0
      "CPU:1 [LOST 5 EVENTS]",         // e1
      Flush(1, 20, b, "d..2.", 1, 3),  // e2: b never seen
      Exec(0, 30, c, "c"),             // e3: c never seen
      Fork(0, 40, c, b),               // e4: b already seen
      Line(0, 45, c, "d..2.", "sched_switch: prev_comm=c prev_pid=300 prev_pri"),  // cut
      Exec(0, 50, Idle(), "x"),            // e5: the idle task
      Exit(1, 60, b),                      // e6
      Exit(1, 61, b),                      // e7: again
      Switch(0, 70, Idle(), "R", Idle()),  // e8: to itself
      "CPU:0 [LOST EVENTS]",               // e9
      Fork(0, 80, d, Who{"d", 401, 401}),  // e10
  });
  const TraceDir dir = MakeDir(text);
  EXPECT_EQ(dir.trace.stats.malformed, 2);
  EXPECT_EQ(dir.trace.stats.lost_markers, 2);
  absl::StatusOr<ReplayPlan> plan = PlanReplay(dir, ReplayPlanOptions{});
  ASSERT_TRUE(plan.ok()) << plan.status();
  ExpectWellFormed(dir, *plan);
  const ReplayPlanStats& s = plan->stats;
  EXPECT_EQ(s.pids_first_seen_mid_trace, 4) << Str(s);  // a, b, c, d
  EXPECT_EQ(s.skipped_events, 3) << Str(s);
  EXPECT_THAT(s.skipped, ElementsAre(HasSubstr("child pid 200 was already seen"),
                                     HasSubstr("an idle task cannot exec"),
                                     HasSubstr("not a task that can exit here")));
  const int e4_line = dir.trace.events[4].line;
  EXPECT_THAT(s.skipped[0], HasSubstr(absl::StrFormat("line %d:", e4_line)));
  EXPECT_EQ(s.execs, 1);
  EXPECT_EQ(s.exits, 1);
  EXPECT_EQ(s.flushes, 1);
  // b on CPU 1, c and the idle task on CPU 0, d on CPU 0.
  EXPECT_EQ(s.inferred_switches, 4) << Str(s);
  EXPECT_EQ(s.inferred_idle_exits, 2) << Str(s);
  ASSERT_EQ(plan->switches.size(), 2u);
  EXPECT_EQ(plan->switches[1].step, -1);
  EXPECT_EQ(plan->switches[1].unplaced_why, "the next task is already running there");
  EXPECT_EQ(s.processes_forked + s.vforks + s.threads, 1);
}

TEST(ReplayPlanTest, OnlyLostMarkersAndNoise) {
  const std::string text = TraceText({"CPU:0 [LOST 3 EVENTS]", "garbage", "CPU:1 [LOST EVENTS]"});
  const TraceDir dir = MakeDir(text);
  ASSERT_EQ(dir.trace.events.size(), 2u);
  const ReplayPlan plan = Plan(dir);
  EXPECT_THAT(Steps(plan), IsEmpty());  // only the final verification
  EXPECT_THAT(plan.switches, IsEmpty());
  EXPECT_EQ(plan.stats.skipped_events, 0);
}

TEST(ReplayPlanTest, TheFinalVerificationNamesNoTraceEvent) {
  // It runs after the last event: like a compiled scenario's, it carries the index one past
  // the last one (--plan shows line 0 for it), whatever the last line of the trace is. In
  // particular it must not depend on whether that line is a CR3 load.
  const Who a{"a", 100, 100};
  const std::string text = TraceText({
      Switch(0, 10, Idle(), "R", a),  // e0
      Load(0, 11, Idle()),            // e1
  });
  const TraceDir dir = MakeDir(text);
  const ReplayPlan plan = Plan(dir);
  ExpectWellFormed(dir, plan);
  ASSERT_EQ(plan.scenario.program.size(), 3u);
  EXPECT_EQ(Str(plan.scenario.program[2]), Verify(2, 0));
  ASSERT_EQ(plan.scenario.checks.size(), 1u);
  EXPECT_EQ(plan.scenario.checks[0].kind, HostCheck::Kind::kFinal);
  EXPECT_EQ(plan.scenario.checks[0].step_index, -1);
  ExpectPlanIgnoresCr3Loads(dir, text);
}

TEST(ReplayPlanTest, TooManyCpusIsAnErrorNamingTheTrace) {
  TraceDir dir = MakeDir(TraceText({Switch(0, 10, Idle(), "R", Who{"a", 100, 100})}, 65));
  absl::StatusOr<ReplayPlan> plan = PlanReplay(dir, ReplayPlanOptions{});
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(plan.status().message(), HasSubstr("synthetic/trace.txt"));
  EXPECT_THAT(plan.status().message(), HasSubstr("65 CPUs"));
}

TEST(ReplayPlanTest, VerifyEveryStepAndCheckpoints) {
  const Who a{"a", 100, 100};
  std::vector<std::string> lines = {Switch(0, 1, Idle(), "R", a)};
  for (int i = 0; i < 30; ++i) {
    lines.push_back(Flush(0, 10 + 10 * i, a, "d..2.", 1, 3));
  }
  const TraceDir dir = MakeDir(TraceText(lines));
  ReplayPlanOptions o;
  o.verify_every_step = true;
  o.verify_every = 10;
  absl::StatusOr<ReplayPlan> plan = PlanReplay(dir, o);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ExpectWellFormed(dir, *plan);
  int verifies = 0;
  for (const abi::Step& s : plan->scenario.program) {
    if (s.op == static_cast<uint32_t>(Op::kVerify)) {
      ++verifies;
      EXPECT_EQ(s.flags, 0u);
    } else {
      EXPECT_EQ(s.flags, abi::kStepVerifyAfter) << Str(s);
    }
  }
  // 2 + 60 model steps; a checkpoint once 10 steps have passed with no flush open.
  EXPECT_EQ(plan->scenario.program.size(), 62u + verifies);
  EXPECT_EQ(verifies, 7);
  EXPECT_EQ(plan->scenario.checks.size(), 7u);
  // Never between the two halves of a flush.
  for (size_t i = 1; i < plan->scenario.program.size(); ++i) {
    const abi::Step& s = plan->scenario.program[i];
    if (s.op == static_cast<uint32_t>(Op::kVerify) && i + 1 < plan->scenario.program.size()) {
      EXPECT_NE(plan->scenario.program[i - 1].arg, abi::kFlushBegin) << i;
    }
  }
}

// Random damage to a real trace: lines dropped, duplicated, swapped or with another pid. The
// planner must neither fail nor produce a malformed plan.
TEST(ReplayPlanTest, MutatedRealTrace) {
  const std::string path = std::string(ACTIVEMM_SHARED_TRACES) + "/make";
  absl::StatusOr<TraceDir> dir = LoadTraceDir(path);
  if (!dir.ok()) GTEST_SKIP() << path << ": " << dir.status();
  std::ifstream in(path + "/trace.txt");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::vector<std::string> lines = absl::StrSplit(ss.str(), '\n');
  std::mt19937 rng(1234);
  for (int round = 0; round < 40; ++round) {
    std::vector<std::string> m = lines;
    std::uniform_int_distribution<size_t> at(12, m.size() - 2);
    for (int k = 0; k < 30; ++k) {
      const size_t i = at(rng);
      switch (rng() % 4) {
        case 0:
          m.erase(m.begin() + i);
          break;
        case 1:
          m.insert(m.begin() + i, m[i]);
          break;
        case 2:
          std::swap(m[i], m[i + 1]);
          break;
        case 3:
          // An iterator insert: insert(pos, "7") meets GCC 12's -Wrestrict false positive at -O3.
          if (size_t p = m[i].find("pid="); p != std::string::npos) {
            m[i].insert(m[i].begin() + static_cast<std::ptrdiff_t>(p + 4), '7');
          }
          break;
      }
    }
    TraceDir d = *dir;
    d.trace = ParseTrace(absl::StrJoin(m, "\n"));
    SCOPED_TRACE(absl::StrFormat("round %d", round));
    absl::StatusOr<ReplayPlan> plan = PlanReplay(d, ReplayPlanOptions{});
    ASSERT_TRUE(plan.ok()) << plan.status();
    ExpectWellFormed(d, *plan);
    if (HasFatalFailure() || HasFailure()) break;
  }
}

// ---- the real traces ----------------------------------------------------------------------

class ReplayPlanSharedTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    path_ = std::string(ACTIVEMM_SHARED_TRACES) + "/" + GetParam();
    if (!std::filesystem::is_directory(path_)) GTEST_SKIP() << path_ << " is not there";
    absl::StatusOr<TraceDir> dir = LoadTraceDir(path_);
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = *std::move(dir);
    std::ifstream in(path_ + "/trace.txt");
    std::stringstream ss;
    ss << in.rdbuf();
    text_ = ss.str();
  }
  std::string path_;
  TraceDir dir_;
  std::string text_;
};

TEST_P(ReplayPlanSharedTest, PlanIsTheSameWithoutTheKernelsCr3Loads) {
  ExpectPlanIgnoresCr3Loads(dir_, text_, 40);
}

TEST_P(ReplayPlanSharedTest, PlanIsWellFormedAndPlacesEverySwitch) {
  const ReplayPlan plan = Plan(dir_);
  ExpectWellFormed(dir_, plan);
  int placed = 0;
  for (const ReplaySwitch& s : plan.switches) placed += s.step >= 0;
  EXPECT_EQ(placed, static_cast<int>(plan.switches.size()));
  EXPECT_EQ(plan.stats.skipped_events, 0) << Str(plan.stats);
}

INSTANTIATE_TEST_SUITE_P(Traces, ReplayPlanSharedTest,
                         ::testing::Values("make", "pipe-proc", "threads-fork-exec"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           std::string name = info.param;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

}  // namespace
}  // namespace activemm
