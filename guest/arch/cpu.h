// Inline accessors for privileged x86 instructions (the kvm-unit-tests processor.h habit). Where
// ring 0 is emulated (kvm_pvm) every ring-0 instruction costs about 1 us, so these stay single
// instructions and callers avoid redundant ones.
#ifndef ACTIVEMM_GUEST_ARCH_CPU_H_
#define ACTIVEMM_GUEST_ARCH_CPU_H_

#include <stdint.h>

#include "shared/x86.h"

namespace activemm::guest {

inline uint64_t ReadCr2() {
  uint64_t v;
  asm volatile("mov %%cr2, %0" : "=r"(v));
  return v;
}
inline uint64_t ReadCr3() {
  uint64_t v;
  asm volatile("mov %%cr3, %0" : "=r"(v));
  return v;
}
// "memory": the compiler must not move page-table stores across the switch.
inline void WriteCr3(x86::Cr3 cr3) { asm volatile("mov %0, %%cr3" ::"r"(cr3.raw()) : "memory"); }
inline uint64_t ReadCr4() {
  uint64_t v;
  asm volatile("mov %%cr4, %0" : "=r"(v));
  return v;
}
inline void WriteCr4(uint64_t v) { asm volatile("mov %0, %%cr4" ::"r"(v) : "memory"); }
inline bool CpuHasPcid() {
  uint32_t a = 1, b, c = 0, d;
  asm volatile("cpuid" : "+a"(a), "=b"(b), "+c"(c), "=d"(d));
  return c & (1u << 17);  // CPUID.1:ECX.PCID
}
inline void Invlpg(uint64_t va) { asm volatile("invlpg (%0)" ::"r"(va) : "memory"); }

inline uint64_t Rdmsr(uint32_t msr) {
  uint32_t lo, hi;
  asm volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
  return (uint64_t{hi} << 32) | lo;
}
inline void Wrmsr(uint32_t msr, uint64_t v) {
  asm volatile("wrmsr" ::"c"(msr), "a"(static_cast<uint32_t>(v)),
               "d"(static_cast<uint32_t>(v >> 32))
               : "memory");
}
inline uint64_t Rdtsc() {
  uint32_t lo, hi;
  asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return (uint64_t{hi} << 32) | lo;
}
inline void OutL(uint16_t port, uint32_t v) {
  asm volatile("outl %0, %1" ::"a"(v), "Nd"(port) : "memory");
}
inline void Cli() { asm volatile("cli" ::: "memory"); }
inline void Pause() { asm volatile("pause" ::: "memory"); }
// STI's one-instruction interrupt shadow makes "sti; hlt" atomic: an interrupt that became
// pending before the STI wakes the HLT instead of being taken before it (SDM 6.8.3). Without
// it, the wake-up IPI could be handled between the caller's last check and the HLT, and the
// CPU would sleep forever. Not every emulator keeps the shadow: nested KVM under QEMU TCG was
// seen to deliver the interrupt between the two (docs/hosts.md), so the one HLT of this
// sequence is at a known address (entry.S) and trap_dispatch resumes an interrupt taken there
// after it, as the architecture would have.
extern "C" void safe_halt_then_cli();
extern "C" const char safe_halt_hlt[];
inline void SafeHaltThenCli() { safe_halt_then_cli(); }
[[noreturn]] inline void HaltForever() {
  for (;;) asm volatile("cli; hlt");
}

}  // namespace activemm::guest

#endif  // ACTIVEMM_GUEST_ARCH_CPU_H_
