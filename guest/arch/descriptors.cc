#include "guest/arch/descriptors.h"

#include <stdint.h>

#include "guest/arch/cpu.h"
#include "guest/arch/traps.h"
#include "shared/x86.h"

extern "C" char trap_stubs[];              // entry.S: 256 stubs of 16 bytes
extern "C" char kick_entry[], ud_entry[];  // entry.S: the lean entries of two vectors

namespace activemm::guest {
namespace {

struct [[gnu::packed]] DescriptorPointer {
  uint16_t limit;
  uint64_t base;
};

struct IdtGate {
  uint16_t offset_low;
  uint16_t selector;
  uint8_t ist;
  uint8_t type_attr;
  uint16_t offset_mid;
  uint32_t offset_high;
  uint32_t reserved;
};
static_assert(sizeof(IdtGate) == 16);

constexpr int kDoubleFaultIst = 1;
// Present, DPL 0, 64-bit interrupt gate (IF cleared on entry, SDM 6.14.1).
constexpr uint8_t kInterruptGate = 0x8e;

alignas(4096) constinit IdtGate idt[256] = {};

// Flat 64-bit code/data descriptors (SDM 3.4.5; base and limit ignored in 64-bit mode).
constexpr uint64_t kKernelCode = 0x00af9a000000ffffull;  // L=1, DPL 0
constexpr uint64_t kKernelData = 0x00cf92000000ffffull;
constexpr uint64_t kUserData = 0x00cff2000000ffffull;  // DPL 3
constexpr uint64_t kUserCode = 0x00affa000000ffffull;  // L=1, DPL 3

}  // namespace

void BuildIdt() {
  uint64_t base = reinterpret_cast<uint64_t>(trap_stubs);
  for (int v = 0; v < 256; ++v) {
    uint64_t handler = base + static_cast<uint64_t>(v) * 16;
    // Two vectors every scenario step may take have lean entries of their own (entry.S).
    if (v == kVecKick) handler = reinterpret_cast<uint64_t>(kick_entry);
    if (v == x86::kVecInvalidOpcode) handler = reinterpret_cast<uint64_t>(ud_entry);
    IdtGate& g = idt[v];
    g.offset_low = static_cast<uint16_t>(handler);
    g.selector = x86::kKernelCs;
    // A double fault gets its own stack, so a kernel stack overflow is reported as a double
    // fault instead of escalating into a triple fault the guest cannot report.
    g.ist = v == x86::kVecDoubleFault ? kDoubleFaultIst : 0;
    g.type_attr = kInterruptGate;
    g.offset_mid = static_cast<uint16_t>(handler >> 16);
    g.offset_high = static_cast<uint32_t>(handler >> 32);
    g.reserved = 0;
  }
}

void LoadIdt() {
  DescriptorPointer p{sizeof idt - 1, reinterpret_cast<uint64_t>(idt)};
  asm volatile("lidt %0" ::"m"(p));
}

void LoadCpuDescriptors(PerCpu* cpu) {
  cpu->self = cpu;
  cpu->tss.ist[kDoubleFaultIst - 1] = reinterpret_cast<uint64_t>(cpu->ist_stack + kIstStackSize);
  cpu->tss.iomap_base = sizeof(Tss);  // no I/O bitmap: ring-3 port I/O is refused
  uint64_t tss = reinterpret_cast<uint64_t>(&cpu->tss);
  cpu->gdt[0] = 0;
  cpu->gdt[1] = kKernelCode;
  cpu->gdt[2] = kKernelData;
  cpu->gdt[3] = kUserData;
  cpu->gdt[4] = kUserCode;
  // 64-bit available TSS descriptor, 16 bytes (SDM 8.2.3).
  cpu->gdt[5] =
      (sizeof(Tss) - 1) | ((tss & 0xffffff) << 16) | (0x89ull << 40) | (((tss >> 24) & 0xff) << 56);
  cpu->gdt[6] = tss >> 32;
  DescriptorPointer p{sizeof cpu->gdt - 1, reinterpret_cast<uint64_t>(cpu->gdt)};
  asm volatile(
      "lgdt %0\n\t"
      "mov %w1, %%ds\n\t"
      "mov %w1, %%es\n\t"
      "mov %w1, %%ss\n\t"
      "mov %w1, %%fs\n\t"
      "mov %w1, %%gs\n\t"
      // A far return is the way to reload CS in 64-bit mode.
      "pushq %2\n\t"
      "lea 1f(%%rip), %%rax\n\t"
      "pushq %%rax\n\t"
      "lretq\n"
      "1:\n\t"
      "ltr %w3"
      :
      : "m"(p), "r"(static_cast<uint64_t>(x86::kKernelDs)),
        "i"(static_cast<uint64_t>(x86::kKernelCs)), "r"(static_cast<uint32_t>(x86::kTss))
      : "rax", "memory");
  // Loading %gs above cleared GS_BASE; set it last.
  Wrmsr(x86::kMsrGsBase, reinterpret_cast<uint64_t>(cpu));
}

}  // namespace activemm::guest
