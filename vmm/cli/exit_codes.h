// The exit status of the activemm command (docs/architecture.md lists them for users).
#ifndef ACTIVEMM_VMM_CLI_EXIT_CODES_H_
#define ACTIVEMM_VMM_CLI_EXIT_CODES_H_

#include <signal.h>

#include "absl/status/status.h"

#include "vmm/kvm/runner.h"

namespace activemm {

enum ExitCode : int {
  kExitOk = 0,
  kExitCheckFailed = 1,  // an expectation failed or the verifier found a violation
  kExitUsage = 2,        // bad command line or input
  kExitGuestFailed = 3,  // guest exception, panic, triple fault, emulation failure
  kExitWatchdog = 4,     // the guest made no progress within --timeout
  kExitNoKvm = 5,        // /dev/kvm missing, not accessible or unsuitable
  kExitHostError = 6,    // a KVM call failed unexpectedly
};

inline int ExitCodeFor(Outcome o) {
  switch (o) {
    case Outcome::kCompleted:
      return kExitOk;
    case Outcome::kCheckFailed:
      return kExitCheckFailed;
    case Outcome::kGuestException:
    case Outcome::kGuestPanic:
    case Outcome::kVcpuError:
      return kExitGuestFailed;
    case Outcome::kWatchdog:
      return kExitWatchdog;
    case Outcome::kHostError:
      return kExitHostError;
    case Outcome::kInterrupted:
      return 128 + SIGINT;  // the command returns 128 + the signal it got (vmm/kvm/interrupt.h)
  }
  return kExitHostError;
}

// The exit status of a command whose step failed with `s`: what the user gave was wrong (a bad
// argument, an output that exists already, a file that is not there: 2), else the host failed
// (6). The one mapping every command uses (vmm/cli/command_util.h Failed).
inline int ExitFor(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kOk:
      return kExitOk;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kNotFound:
      return kExitUsage;
    default:
      return kExitHostError;
  }
}

}  // namespace activemm

#endif  // ACTIVEMM_VMM_CLI_EXIT_CODES_H_
