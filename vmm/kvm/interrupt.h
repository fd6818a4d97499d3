// Ctrl-C and kill while a guest runs: SIGINT, SIGTERM and SIGHUP stop the run cleanly instead of
// killing activemm mid-way. The handler only records the signal; the runner's watchdog loop
// sees it within its 50 ms poll, stops every vCPU and joins its thread, and the command then
// writes no output file (a report of half a run would read as a whole one) and exits with
// 128 + the signal's number, as a shell reports a process that signal ended. A second signal
// (any of them) kills at once, for a run that does not stop.
#ifndef ACTIVEMM_VMM_KVM_INTERRUPT_H_
#define ACTIVEMM_VMM_KVM_INTERRUPT_H_

#include <string>

namespace activemm {

// Installs the handlers (once; later calls do nothing).
void InstallInterruptHandlers();

// The first of those signals received since, or 0.
int InterruptSignal();

// "SIGINT", "SIGTERM", "SIGHUP"; "signal N" for another.
std::string SignalName(int sig);

}  // namespace activemm

#endif  // ACTIVEMM_VMM_KVM_INTERRUPT_H_
