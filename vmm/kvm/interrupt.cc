#include "vmm/kvm/interrupt.h"

#include <signal.h>

#include <mutex>

namespace activemm {
namespace {

constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP};

volatile sig_atomic_t first_signal = 0;

void OnSignal(int sig) {
  if (first_signal == 0) {
    first_signal = sig;
    return;
  }
  // Asked twice: the default action (termination) now, without waiting for the run to stop.
  signal(sig, SIG_DFL);
  raise(sig);
}

}  // namespace

void InstallInterruptHandlers() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa = {};
    sa.sa_handler = OnSignal;
    sigemptyset(&sa.sa_mask);
    // SA_RESTART: a read of a scenario script's output or a file is resumed, not cut short.
    // KVM_RUN is not restarted whatever the flag: it returns EINTR, which the vCPU loop expects.
    sa.sa_flags = SA_RESTART;
    for (int sig : kSignals) sigaction(sig, &sa, nullptr);
  });
}

int InterruptSignal() { return first_signal; }

std::string SignalName(int sig) {
  switch (sig) {
    case SIGINT:
      return "SIGINT";
    case SIGTERM:
      return "SIGTERM";
    case SIGHUP:
      return "SIGHUP";
  }
  return "signal " + std::to_string(sig);
}

}  // namespace activemm
