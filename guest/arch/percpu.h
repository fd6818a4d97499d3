// Per-CPU data. %gs points at the running CPU's PerCpu (IA32_GS_BASE), so this_cpu() is one
// load; the guest never runs SWAPGS because ring-3 code cannot change GS_BASE (CR4.FSGSBASE=0).
#ifndef ACTIVEMM_GUEST_ARCH_PERCPU_H_
#define ACTIVEMM_GUEST_ARCH_PERCPU_H_

#include <stddef.h>
#include <stdint.h>

#include "guest/arch/asm_offsets.h"
#include "shared/abi.h"

namespace activemm::abi {
struct CpuMmState;  // shared/mm_abi.h
}  // namespace activemm::abi

namespace activemm::guest {

// 64-bit task-state segment (SDM 8.7).
struct [[gnu::packed]] Tss {
  uint32_t reserved0;
  uint64_t rsp0;  // stack for traps from ring 3
  uint64_t rsp1;
  uint64_t rsp2;
  uint64_t reserved1;
  uint64_t ist[7];  // IST1 is the double-fault stack
  uint64_t reserved2;
  uint16_t reserved3;
  uint16_t iomap_base;
};
static_assert(sizeof(Tss) == 104);

inline constexpr int kGdtEntries = 7;  // null, kernel code/data, user data/code, TSS (2 slots)
inline constexpr size_t kIstStackSize = 4096;

struct PerCpu {
  PerCpu* self;         // %gs:0
  uint64_t resume_rsp;  // enter_user / resume_kernel
  Tss tss;
  uint32_t cpu;
  uint32_t apic_id;
  alignas(8) uint64_t gdt[kGdtEntries];
  abi::CpuMailbox* mailbox;
  // abi::StepLoopCpu::kicks_taken of this CPU, for entry.S's kick_entry (null outside the
  // scenario program, which alone sends kicks).
  uint32_t* kicks_taken;
  abi::CpuMmState* rq;  // &cpu_mm[cpu]: this_rq() without an index computation
  // Set by a step that writes CR3 (abi::kStepCr3Load, kStepCr3Flush), cleared as one begins.
  uint8_t step_result;
  uint32_t ipis_received;  // atomic: the IPI handler increments it
  uint32_t cur_step;       // the scenario step this CPU is executing
  uint64_t step_tsc;       // the TSC when the step began
  uint64_t step_ipi_cpus;  // flush IPIs sent in the step (guest/mm/tlb.cc)
  uint64_t step_leave_mm;  // atomic: CPUs that left their lazy mm because of the step
  // In a parallel block: the next step of the block to look at (0 when in none), the block's
  // end, and the last block this CPU has finished its part of.
  uint32_t par_next;
  uint32_t par_end;
  uint32_t par_done;
  int32_t switch_prev;  // the task context_switch switched away from (for finish_task_switch)
  // TLB shootdown (guest/mm/tlb.cc): what this CPU asks others to flush, the CPUs that still owe
  // it an acknowledgement, and the initiators whose requests this CPU has to handle.
  struct FlushInfo {
    int32_t mm;
    uint32_t initiator;
    uint64_t start;
    uint64_t end;  // kFlushAll for a full flush
    uint64_t new_tlb_gen;
    bool freed_tables;
    bool shoot_lazy;  // a cleanup_lazy_tlbs request instead of a flush
  } flush_info;
  FlushInfo late_flush;         // a flush IPI to handle after this CPU's next step, when its
                                // cpu_mm[].late_ipi_pending is set
  uint64_t flush_acks_pending;  // atomic, bit per target CPU
  uint64_t flush_requests;      // atomic, bit per initiating CPU
  alignas(16) uint8_t ist_stack[kIstStackSize];
};
static_assert(offsetof(PerCpu, self) == PERCPU_SELF);
static_assert(offsetof(PerCpu, resume_rsp) == PERCPU_RESUME_RSP);
static_assert(offsetof(PerCpu, kicks_taken) == PERCPU_KICKS_TAKEN);
static_assert(offsetof(PerCpu, tss) + offsetof(Tss, rsp0) == PERCPU_TSS_RSP0);

extern PerCpu percpu[abi::kMaxCpus];

// Not volatile, but "reading" this_cpu_anchor, which nothing ever writes: the compiler may
// reuse one read of %gs:0 until something that may write memory (a call, an asm with a
// "memory" clobber), as Linux's this_cpu_read_stable() is reused. That is what makes it safe:
// a task switched out on one CPU may resume on another, and the switch is always the opaque
// call __switch_to_asm, after which every use reads %gs:0 again. A plain asm could be CSE'd
// across that call, and the resumed task would keep using the old CPU's data; a volatile one
// (what this was) is read again at every use, about 10 ring-0 instructions a step.
extern int this_cpu_anchor;  // not const: a call must be assumed to write it
inline PerCpu* this_cpu() {
  PerCpu* p;
  asm("mov %%gs:0, %0" : "=r"(p) : "m"(this_cpu_anchor));
  return p;
}

// Boot parameters, readable on every CPU (set by each CPU at entry, before anything else).
extern const abi::BootParams* boot_params;
extern abi::GuestInfo* guest_info;

}  // namespace activemm::guest

#endif  // ACTIVEMM_GUEST_ARCH_PERCPU_H_
