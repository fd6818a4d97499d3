// The exit status of the activemm command (docs/architecture.md lists them for users).
#ifndef ACTIVEMM_VMM_CLI_EXIT_CODES_H_
#define ACTIVEMM_VMM_CLI_EXIT_CODES_H_

#include <signal.h>

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

}  // namespace activemm

#endif  // ACTIVEMM_VMM_CLI_EXIT_CODES_H_
