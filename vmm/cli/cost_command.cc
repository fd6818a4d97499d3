// `cost`: the guest's cost of each context-switch case (docs/costs.md).
#include <memory>
#include <string>

#include "fmt/core.h"
#include "vmm/cli/command_util.h"
#include "vmm/cli/commands.h"
#include "vmm/cli/exit_codes.h"
#include "vmm/cli/flags.h"
#include "vmm/kvm/interrupt.h"
#include "vmm/kvm/kvm.h"
#include "vmm/kvm/kvm_host.h"
#include "vmm/tools/cost.h"

namespace activemm {

// `cost [--iterations N] [--json OUT]`: the guest's cost per context-switch case, lazy TLB on
// and off (or the one mode --lazy-tlb names).
int CostCommand(const ParsedCommandLine& cl) {
  CostOptions o;
  o.iterations = static_cast<int>(cl.Int("iterations"));
  o.asids = static_cast<uint32_t>(cl.Int("asids"));
  o.verbose = cl.Bool("verbose");
  if (std::string e = ParseMemAndTimeout(cl, &o.mem_bytes, &o.timeout); !e.empty()) {
    return UsageError(cl, e);
  }
  if (std::string e = CheckOutputFiles(cl, {"json"}); !e.empty()) return InputError(e);
  const std::string pcid = cl.String("pcid");
  if (pcid == "off") o.pcid = abi::PcidMode::kOff;
  if (cl.Has("lazy-tlb")) o.modes = {LazyModeFlag(cl, abi::LazyMode::kOn)};
  absl::StatusOr<std::unique_ptr<Kvm>> kvm = OpenKvm(cl, &o.pcid);
  if (!kvm.ok()) return NoKvm(kvm.status());
  absl::StatusOr<CostReport> r = RunCostBenchmark(**kvm, o);
  if (InterruptSignal() != 0) return Interrupted();
  if (!r.ok()) {
    return Failed(r.status());
  }
  if (!r->ok()) {
    fmt::print(stderr, "activemm cost: the guest run failed: {}\n", r->failure);
    return ExitCodeFor(r->outcome);
  }
  fmt::print("{}", FormatCostReport(*r));
  if (const std::string json_path = cl.String("json"); !json_path.empty()) {
    if (int code = WriteOutput(json_path, CostReportJson(*r).dump(2) + "\n"); code != kExitOk) {
      return code;
    }
  }
  return kExitOk;
}

}  // namespace activemm
