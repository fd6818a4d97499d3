// Fuzz target: the replay planner (vmm/replay/replay_plan.h) on parsed traces, and the scoring of a
// replay against the trace, its --timeline and its --json (vmm/replay/replay.h): what needs no
// guest.
//
// The input is a trace folder, as for trace_parser_fuzz: trace.txt, then optionally tgids.txt,
// kthreads.txt and kernel.txt, separated by NUL bytes. Parsed with ParseTraceDir, planned with
// PlanReplay (every-step verification when the input's length is odd), and the plan checked:
// the guest must be able to execute it (CPUs, tasks, mms and checks in range) and every switch
// must point at its own run or idle step.
#include <stddef.h>
#include <stdint.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "shared/mm_abi.h"
#include "tests/fuzz/fuzz_input.h"
#include "vmm/kvm/kvm_host.h"
#include "vmm/replay/replay.h"
#include "vmm/replay/replay_plan.h"
#include "vmm/replay/trace.h"
#include "vmm/tools/timeline.h"

namespace {

void CheckPlan(const activemm::ReplayPlan& plan, const activemm::TraceDir& dir) {
  namespace abi = activemm::abi;
  using abi::StepOp;
  const activemm::Scenario& sc = plan.scenario;
  FUZZ_CHECK(sc.cpus == dir.trace.num_cpus);
  FUZZ_CHECK(!sc.program.empty() && !sc.checks.empty());
  FUZZ_CHECK(sc.checks.back().kind == activemm::HostCheck::Kind::kFinal);
  FUZZ_CHECK(sc.task_names.size() <= abi::kMaxTasks);
  FUZZ_CHECK(!sc.mm_names.empty() && sc.mm_names.size() <= abi::kMaxMms);
  FUZZ_CHECK(sc.step_ops.size() == dir.trace.events.size());
  const int32_t tasks = static_cast<int32_t>(sc.task_names.size());
  const int32_t mms = static_cast<int32_t>(sc.mm_names.size());
  for (const abi::Step& s : sc.program) {
    FUZZ_CHECK(std::string(activemm::StepOpName(s.op)) != "?");
    FUZZ_CHECK(s.cpu < static_cast<uint32_t>(sc.cpus));
    FUZZ_CHECK(s.task >= abi::kNoTask && s.task < tasks);
    FUZZ_CHECK(s.mm >= abi::kNoMm && s.mm < mms);
    FUZZ_CHECK(s.index <= dir.trace.events.size());
    if (s.op == static_cast<uint32_t>(StepOp::kVerify)) FUZZ_CHECK(s.arg < sc.checks.size());
  }
  for (const activemm::ReplaySwitch& r : plan.switches) {
    FUZZ_CHECK(r.event >= 0 && r.event < static_cast<int>(dir.trace.events.size()));
    FUZZ_CHECK(dir.trace.events[r.event].kind == activemm::TraceEventKind::kSwitch);
    FUZZ_CHECK(r.step >= -1 && r.step < static_cast<int>(sc.program.size()));
    if (r.step >= 0) {
      const abi::Step& s = sc.program[r.step];
      FUZZ_CHECK(s.op == static_cast<uint32_t>(StepOp::kRun) ||
                 s.op == static_cast<uint32_t>(StepOp::kIdle));
      FUZZ_CHECK(s.cpu == static_cast<uint32_t>(r.cpu));
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::vector<std::string_view> files = activemm::fuzz::SplitInput(input, 4);
  absl::StatusOr<activemm::TraceDir> dir =
      activemm::ParseTraceDir("fuzz", files[0], files[1], files[2], files[3]);
  if (!dir.ok()) return 0;

  activemm::ReplayPlanOptions options;
  options.verify_every_step = size % 2 == 1;
  options.verify_every = static_cast<int>(size % 7) * 10;  // 0: at the end only
  absl::StatusOr<activemm::ReplayPlan> plan = activemm::PlanReplay(*dir, options);
  if (!plan.ok()) return 0;
  CheckPlan(*plan, *dir);

  // The truth of every switch is read from the trace alone.
  std::vector<activemm::SwitchOutcome> outcomes = activemm::TraceTruth(dir->trace, plan->switches);
  FUZZ_CHECK(outcomes.size() == plan->switches.size());
  for (size_t i = 0; i < outcomes.size(); ++i) outcomes[i].placed = plan->switches[i].step >= 0;
  const activemm::ReplayScore score = activemm::Score(outcomes);
  FUZZ_CHECK(score.switches == static_cast<int>(outcomes.size()));
  FUZZ_CHECK(score.placed + score.unplaced == score.switches);

  // The --timeline of the replay: the program's steps on the trace's clock and the traced
  // kernel's CPUs (no step ran: the guest's records are guest_memory_fuzz's). Its JSON costs
  // more than the rest together: for one input in four (by length).
  if (size % 4 != 0) return 0;
  activemm::ReplayResult result;
  result.plan = *std::move(plan);
  result.report.step_records.resize(result.plan.scenario.program.size());
  activemm::ReplayTimeline(*dir, result);
  // And its --json, which names the trace's folder and kernel.
  activemm::ReplayJson(*dir, result, activemm::KvmHost{});
  return 0;
}
