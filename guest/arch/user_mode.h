// Ring-3 round trips: enter user mode on the current page table and come back when the user
// code traps with `ud2` (the CI hypervisor has no SYSCALL or INT n from ring 3).
#ifndef ACTIVEMM_GUEST_ARCH_USER_MODE_H_
#define ACTIVEMM_GUEST_ARCH_USER_MODE_H_

#include <stdint.h>

#include "guest/arch/traps.h"

namespace activemm::guest {

// Requests the user code makes with rax at its `ud2` (guest/arch/user_text.S).
inline constexpr uint64_t kSysExitToKernel = 0;

// Layout known to entry.S (enter_user).
struct UserEntry {
  uint64_t rip;
  uint64_t rsp;
  uint64_t rdi;
  uint64_t rsi;
  uint64_t rdx;
};

// What the user code left when it trapped back.
struct UserExit {
  uint64_t rdi;
  uint64_t rsi;
  uint64_t trap_cs;   // CS of the trap frame: proves the code ran in ring 3
  uint64_t trap_rip;  // where it trapped
};

// Runs ring-3 code at e.rip until it requests kSysExitToKernel. Any other trap from ring 3 is
// reported to the host as an unexpected exception.
UserExit RunUser(const UserEntry& e);

// What the CPU pushed for an exception without an error code (SDM 6.14.2).
struct IretFrame {
  uint64_t rip, cs, rflags, rsp, ss;
};

// Called by trap_dispatch for #PF from ring 3: true when it was one of user_burst's probes of a
// page that must fault (the frame is then set to resume after the probe).
bool HandleUserProbeFault(TrapFrame& f, uint64_t cr2);

// The ring-3 code's pages (linker symbols) and its entry points.
extern "C" char __user_text_start[], __user_text_end[];
extern "C" char user_selftest[], user_fault[];

}  // namespace activemm::guest

#endif  // ACTIVEMM_GUEST_ARCH_USER_MODE_H_
