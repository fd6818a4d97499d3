// `replay DIR`: a real Linux trace on the emulator, scored against the traced kernel.
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "fmt/core.h"
#include "vmm/cli/command_util.h"
#include "vmm/cli/commands.h"
#include "vmm/cli/exit_codes.h"
#include "vmm/cli/flags.h"
#include "vmm/kvm/interrupt.h"
#include "vmm/kvm/kvm.h"
#include "vmm/kvm/kvm_host.h"
#include "vmm/replay/replay.h"
#include "vmm/replay/trace.h"
#include "vmm/tools/timeline.h"

namespace activemm {

// `replay DIR`: a real trace on the emulator, scored against the traced kernel's CR3 loads.
int ReplayCommand(const ParsedCommandLine& cl) {
  if (cl.args.empty()) return UsageError(cl, "replay: no trace folder given (activemm replay DIR)");
  const std::string& dir_path = cl.args[0];
  ReplayOptions o;
  if (std::string e = ParseModelFlags(cl, &o.run); !e.empty()) return UsageError(cl, e);
  if (std::string e = CheckOutputFiles(cl, {"decisions", "json", "plan", "timeline"}); !e.empty()) {
    return InputError(e);
  }
  o.run.lazy = LazyModeFlag(cl, abi::LazyMode::kOn);
  o.run.profile_hz = static_cast<int>(cl.Int("profile"));
  o.run.record_step_state = !cl.String("timeline").empty();
  o.plan.verify_every_step = cl.String("verify") == "every-step";
  o.plan.parallel_blocks = cl.String("parallel") == "on";
  const int explain = static_cast<int>(cl.Int("explain"));
  const auto parse_start = std::chrono::steady_clock::now();
  absl::StatusOr<TraceDir> dir = LoadTraceDir(dir_path);
  if (!dir.ok()) return InputError(std::string(dir.status().message()));
  const double parse_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - parse_start).count();

  absl::StatusOr<std::unique_ptr<Kvm>> kvm = OpenKvm(cl, &o.run.pcid);
  if (!kvm.ok()) {
    return NoKvm(kvm.status());
  }
  const std::string traced_machine =
      ConfigureForTracedMachine(dir->machine, cl.Has("pcid"), cl.Has("lazy-tlb"), &o.run);
  absl::StatusOr<ReplayResult> r = RunReplay(**kvm, *dir, o);
  if (InterruptSignal() != 0) return Interrupted();
  if (!r.ok()) {
    return Failed(r.status());
  }
  r->traced_machine = traced_machine;
  r->parse_seconds = parse_seconds;
  const bool ok = r->report.ok();
  const KvmHost host = ProbeKvmHost(**kvm);
  fmt::print(ok ? stdout : stderr, "{}host: {}\n", FormatReplay(*dir, *r), host.Summary());
  if (explain > 0) fmt::print("{}", FormatDisagreements(*dir, *r, explain));
  // Each file is made only when asked for: a long trace's timeline is hundreds of megabytes.
  const std::pair<const char*, std::function<std::string()>> outputs[] = {
      {"decisions", [&] { return DecisionsCsv(*r); }},
      {"json", [&] { return ReplayJson(*dir, *r, host); }},
      {"plan", [&] { return PlanCsv(*r, dir->trace); }},
      {"timeline", [&] { return ReplayTimeline(*dir, *r); }}};
  for (const auto& [flag, make] : outputs) {
    const std::string& path = cl.String(flag);
    if (path.empty()) continue;
    if (int code = WriteOutput(path, make()); code != kExitOk) return code;
  }
  if (ok) return kExitOk;
  return r->report.run.outcome == Outcome::kCompleted ? kExitCheckFailed
                                                      : ExitCodeFor(r->report.run.outcome);
}

}  // namespace activemm
