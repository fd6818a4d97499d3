// `help`: the command list, or one command's usage and flags, from the grammar's tables.
#include <string>

#include "fmt/core.h"
#include "vmm/cli/command_util.h"
#include "vmm/cli/commands.h"
#include "vmm/cli/exit_codes.h"
#include "vmm/cli/flags.h"
#include "vmm/kvm/interrupt.h"
#include "vmm/kvm/kvm.h"
#include "vmm/kvm/kvm_host.h"

namespace activemm {

// `help [COMMAND]`, `--help`, `-h`, `COMMAND --help`: on stdout, exit status 0.
int HelpCommand(const ParsedCommandLine& cl) {
  const CommandLine& grammar = Grammar();
  std::string topic;
  if (cl.command == "help" && !cl.args.empty()) {
    topic = cl.args[0];
  } else if (!cl.command.empty() && !(cl.command == "help" && !cl.help)) {
    topic = cl.command;
  }
  if (topic.empty()) {
    fmt::print("{}", grammar.Help());
    return kExitOk;
  }
  const std::string text = grammar.CommandHelp(topic);
  if (text.empty()) {
    ParsedCommandLine general;  // the hint points at the command list
    return UsageError(general, grammar.UnknownCommand(topic));
  }
  fmt::print("{}", text);
  return kExitOk;
}

}  // namespace activemm
