// What the commands share: their errors and exit statuses, the flags every guest-running
// command reads, and the checks made before a guest starts.
#ifndef ACTIVEMM_VMM_CLI_COMMAND_UTIL_H_
#define ACTIVEMM_VMM_CLI_COMMAND_UTIL_H_

#include <stdint.h>

#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "shared/mm_abi.h"
#include "vmm/cli/command_line.h"
#include "vmm/kvm/kvm.h"
#include "vmm/model/scenario_run.h"

namespace activemm {

// A command-line error: the message, then where the help is. Exit status 2.
int UsageError(const ParsedCommandLine& cl, const std::string& msg);
// An error in what the command line points at (a scenario, a script, a trace folder): the
// command line itself was fine, so no pointer to the help. Exit status 2.
int InputError(const std::string& msg);
// A run stopped by SIGINT, SIGTERM or SIGHUP (vmm/kvm/interrupt.h): its vCPU threads are joined;
// nothing is written, since a report of part of a run would read as the whole. Exit status
// 128 + the signal's number, as a shell reports a process the signal ended.
int Interrupted();
// A failed step of a command: "WHO: message" on stderr; the exit status ExitFor(s).
int Failed(const absl::Status& s, std::string_view who = "activemm");
// /dev/kvm could not be used: the reason on stderr; exit status 5.
int NoKvm(const absl::Status& s);
// Writes an output file whole or not at all (WriteFileAtomically): kExitOk, or the error on
// stderr and exit status 2.
int WriteOutput(const std::string& path, const std::string& content);

// --mem and --timeout, shared by every command that boots a guest; "" when both are fine.
std::string ParseMemAndTimeout(const ParsedCommandLine& cl, uint64_t* mem_bytes,
                               absl::Duration* timeout);
// The output files the flags `flags` name (--json, --timeline, ...) can be written: each names a
// file, not a folder, in a folder that exists and takes new files, and no two name the same one.
// Checked before the guest starts, so that a long run does not end in a write error. "" when
// they are fine, else the error.
std::string CheckOutputFiles(const ParsedCommandLine& cl, std::initializer_list<const char*> flags);
// Progress lines for long runs: on a terminal only, and never in CI (CI=true) or when the
// guest's own log is echoed.
bool ShowProgress(const ParsedCommandLine& cl);
// The flags every command that runs the mm model shares: --asids, --mem, --timeout, --pcid,
// --inject, --verbose (--verify and --lazy-tlb are read where they apply). "" when they are
// fine, else the usage error.
std::string ParseModelFlags(const ParsedCommandLine& cl, ScenarioRunOptions* ro);
// --lazy-tlb, else `default_mode`.
abi::LazyMode LazyModeFlag(const ParsedCommandLine& cl, abi::LazyMode default_mode);
// /dev/kvm (or --kvm); with --pcid=auto on a CPU with PCID, `*pcid` becomes real PCIDs.
absl::StatusOr<std::unique_ptr<Kvm>> OpenKvm(const ParsedCommandLine& cl, abi::PcidMode* pcid);

}  // namespace activemm

#endif  // ACTIVEMM_VMM_CLI_COMMAND_UTIL_H_
