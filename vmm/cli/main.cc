// activemm: Linux's mm / active_mm / lazy-TLB behaviour on real x86-64 page tables under KVM.
// The command line is parsed here only (vmm/cli/command_line.h, against the grammar of
// vmm/cli/flags.cc) and handed to its command (vmm/cli/*_command.cc), which passes it down as
// config structs.
#include <string>
#include <vector>

#include "vmm/cli/command_util.h"
#include "vmm/cli/commands.h"
#include "vmm/cli/flags.h"
#include "vmm/kvm/interrupt.h"
#include "vmm/replay/capture.h"

int main(int argc, char** argv) {
  using activemm::ParsedCommandLine;
  const ParsedCommandLine cl =
      activemm::Grammar().Parse(std::vector<std::string>(argv + 1, argv + argc));
  if (!cl.error.empty()) return activemm::UsageError(cl, cl.error);
  if (cl.help || cl.command == "help") return activemm::HelpCommand(cl);
  if (cl.command == "__prime") return activemm::PrimeStep(cl.args.empty() ? "" : cl.args[0]);
  if (cl.command == "capture") return activemm::CaptureCommand(cl);  // it forwards signals itself
  // From here on every command runs guests: a signal stops the run instead of killing it.
  activemm::InstallInterruptHandlers();
  if (cl.command == "selftest") return activemm::SelftestCommand(cl);
  if (cl.command == "cost") return activemm::CostCommand(cl);
  if (cl.command == "replay") return activemm::ReplayCommand(cl);
  return activemm::ScenarioCommand(cl);  // run, compare, stress
}
