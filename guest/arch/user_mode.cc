#include "guest/arch/user_mode.h"

#include "guest/arch/percpu.h"
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

}  // namespace activemm::guest

using activemm::guest::IretFrame;

// entry.S ud_entry, for a #UD from ring 3 with the user's rax, rdi and rsi: only a `ud2`
// (0f 0b) inside the user text with rax = kSysExitToKernel is a request (any other #UD is a
// real invalid opcode, and this returns for the general path to report it). The bytes are
// read through the kernel's own alias of the text, so a wild user RIP cannot make the kernel
// fault here.
extern "C" void user_ud_trap(uint64_t rax, uint64_t rdi, uint64_t rsi, const IretFrame* f) {
  using namespace activemm::guest;
  const uint64_t size = static_cast<uint64_t>(__user_text_end - __user_text_start);
  const uint64_t offset = f->rip - activemm::abi::kUserTextVa;
  if (f->rip < activemm::abi::kUserTextVa || offset + 2 > size) return;
  const auto* insn = reinterpret_cast<const uint8_t*>(__user_text_start + offset);
  if (insn[0] != 0x0f || insn[1] != 0x0b || rax != kSysExitToKernel) return;
  UserExit& x = user_exit[this_cpu()->cpu];
  x.rdi = rdi;
  x.rsi = rsi;
  x.trap_cs = f->cs;
  x.trap_rip = f->rip;
  resume_kernel(0);
}
