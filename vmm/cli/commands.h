// The commands of activemm, one file each (vmm/cli/*_command.cc); main.cc picks one. Each
// returns the process's exit status (vmm/cli/exit_codes.h).
#ifndef ACTIVEMM_VMM_CLI_COMMANDS_H_
#define ACTIVEMM_VMM_CLI_COMMANDS_H_

#include "vmm/cli/command_line.h"

namespace activemm {

int SelftestCommand(const ParsedCommandLine& cl);
int ScenarioCommand(const ParsedCommandLine& cl);  // run, compare, stress
int ReplayCommand(const ParsedCommandLine& cl);
int CostCommand(const ParsedCommandLine& cl);
int CaptureCommand(const ParsedCommandLine& cl);
int HelpCommand(const ParsedCommandLine& cl);  // help [COMMAND], --help, COMMAND --help

}  // namespace activemm

#endif  // ACTIVEMM_VMM_CLI_COMMANDS_H_
