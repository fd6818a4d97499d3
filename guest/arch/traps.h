// Trap and interrupt dispatch for all 256 vectors.
#ifndef ACTIVEMM_GUEST_ARCH_TRAPS_H_
#define ACTIVEMM_GUEST_ARCH_TRAPS_H_

#include <stdint.h>

#include "guest/arch/asm_offsets.h"
#include "shared/x86.h"

namespace activemm::guest {

// The frame entry.S builds: registers pushed by trap_common, then the vector and error code,
// then what the CPU pushed (SDM 6.14.2).
struct TrapFrame {
  uint64_t r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
  uint64_t vector;
  uint64_t error_code;
  uint64_t rip, cs, rflags, rsp, ss;
};
static_assert(sizeof(TrapFrame) == 22 * 8);

inline bool FromUser(const TrapFrame& f) { return (f.cs & 3) == 3; }

static_assert(VEC_INVALID_OPCODE == x86::kVecInvalidOpcode);

// Vectors of the guest's own interrupts.
inline constexpr int kVecIpiTest = 0xf0;   // the self-test's IPI
inline constexpr int kVecKick = VEC_KICK;  // wakes a CPU waiting for its next scenario step
inline constexpr int kVecFlushTlb = 0xf2;  // a TLB shootdown request (CALL_FUNCTION_VECTOR)
inline constexpr int kVecSpurious = 0xff;  // APIC spurious vector (no EOI, SDM 11.9)

// Reports an unexpected exception to the host and stops this CPU.
[[noreturn]] void ReportUnexpectedTrap(const TrapFrame& f);

}  // namespace activemm::guest

extern "C" void trap_dispatch(activemm::guest::TrapFrame* frame);

#endif  // ACTIVEMM_GUEST_ARCH_TRAPS_H_
