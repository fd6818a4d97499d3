#include "guest/user_mode.h"

#include "guest/percpu.h"
#include "shared/x86.h"

extern "C" uint64_t enter_user(const activemm::guest::UserEntry* e);
extern "C" [[noreturn]] void resume_kernel(uint64_t result);

namespace activemm::guest {
namespace {

// The exit of the round trip in progress, per CPU (written by the trap, read after it).
UserExit user_exit[abi::kMaxCpus];

}  // namespace

UserExit RunUser(const UserEntry& e) {
  enter_user(&e);
  return user_exit[this_cpu()->cpu];
}

bool HandleUserTrap(const TrapFrame& f) {
  // Only a `ud2` (0f 0b) inside the user text is a request; any other #UD is a real invalid
  // opcode. The bytes are read through the kernel's own alias of the text, so a wild user RIP
  // cannot make the kernel fault here.
  uint64_t size = static_cast<uint64_t>(__user_text_end - __user_text_start);
  uint64_t offset = f.rip - abi::kUserTextVa;
  if (f.rip < abi::kUserTextVa || offset + 2 > size) return false;
  const auto* insn = reinterpret_cast<const uint8_t*>(__user_text_start + offset);
  if (insn[0] != 0x0f || insn[1] != 0x0b) return false;
  if (f.rax != kSysExitToKernel) return false;
  UserExit& x = user_exit[this_cpu()->cpu];
  x.rdi = f.rdi;
  x.rsi = f.rsi;
  x.trap_cs = f.cs;
  x.trap_rip = f.rip;
  resume_kernel(0);
}

}  // namespace activemm::guest
