// `selftest`: the guest boots on --cpus vCPUs and every CPU proves the machine works.
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
#include "vmm/tools/selftest.h"

namespace activemm {

int SelftestCommand(const ParsedCommandLine& cl) {
  SelftestOptions opt;
  opt.vm.cpus = static_cast<int>(cl.Int("cpus"));
  opt.vm.verbose = cl.Bool("verbose");
  if (std::string e = ParseMemAndTimeout(cl, &opt.vm.mem_bytes, &opt.timeout); !e.empty()) {
    return UsageError(cl, e);
  }
  opt.vm.inject = Lookup(kSelftestInjects, cl.String("inject"));

  absl::StatusOr<std::unique_ptr<Kvm>> kvm = Kvm::Open(cl.String("kvm"));
  if (!kvm.ok()) {
    return NoKvm(kvm.status());
  }
  absl::StatusOr<SelftestResult> r = RunSelftest(**kvm, opt);
  if (InterruptSignal() != 0) return Interrupted();
  if (!r.ok()) {
    return Failed(r.status());
  }
  std::string summary = FormatSelftestSummary(*r, opt.vm, ProbeKvmHost(**kvm));
  fmt::print(r->passed ? stdout : stderr, "{}", summary);
  if (r->passed) return kExitOk;
  return r->run.outcome == Outcome::kCompleted ? kExitCheckFailed : ExitCodeFor(r->run.outcome);
}

}  // namespace activemm
