// The mm model's state in the guest: the objects of shared/mm_abi.h (mm_struct, task_struct,
// run-queue and cpu_tlbstate per CPU) and the run's configuration. The code that changes them
// mirrors Linux function by function in mm.cc, tlb.cc and sched.cc.
#ifndef ACTIVEMM_GUEST_KERNEL_MODEL_H_
#define ACTIVEMM_GUEST_KERNEL_MODEL_H_

#include <stdint.h>

#include "guest/arch/percpu.h"
#include "guest/mm/page_alloc.h"
#include "shared/mm_abi.h"

namespace activemm::guest {

using abi::CpuMmState;
using abi::MmStruct;
using abi::TaskStruct;

struct ModelConfig {
  abi::LazyMode lazy = abi::LazyMode::kOn;
  abi::PcidMode pcid = abi::PcidMode::kModeled;
  uint32_t num_asids = abi::kDefaultAsids;
  abi::MmBug bug = abi::MmBug::kNone;
  // A user task switched in runs its ring-3 burst (after_switch). The cost benchmark turns it
  // off: it measures the switch alone, and the burst is mostly native ring-3 work besides.
  bool user_bursts = true;
  // Where a new task goes on after ret_from_fork: the running program's loop (the scenario's
  // step loop, the cost benchmark's), set by the program before it creates tasks.
  void (*new_task_start)() = nullptr;  // never returns
};

extern ModelConfig model;
extern abi::MmSlot mm_slots[abi::kMaxMms];
extern TaskStruct tasks[abi::kMaxTasks];
extern CpuMmState cpu_mm[abi::kMaxCpus];

// Lazy TLB switching (kernel threads keep the previous mm loaded): on and shootdown.
inline bool LazyOn() { return model.lazy != abi::LazyMode::kOff; }
// Lazy users hold mm_count references (CONFIG_MMU_LAZY_TLB_REFCOUNT=y): on only. In the
// shootdown variant the final mmdrop instead IPIs the CPUs that may still use the mm lazily.
inline bool LazyRefs() { return model.lazy == abi::LazyMode::kOn; }
inline bool Bug(abi::MmBug b) { return model.bug == b; }

inline MmStruct* Mm(int32_t slot) { return static_cast<MmStruct*>(PhysToVirt(mm_slots[slot].pa)); }
inline TaskStruct* Task(int32_t index) { return &tasks[index]; }
inline int32_t TaskIndex(const TaskStruct* t) { return static_cast<int32_t>(t - tasks); }

// This CPU's run-queue and tlbstate. Never cache it across a context switch: a task may resume
// on another CPU (the %gs-relative read is what keeps it right, as this_rq() in Linux).
inline CpuMmState* this_rq() { return this_cpu()->rq; }
inline abi::MmCounters& counters() { return this_rq()->counters; }
inline TaskStruct* current() { return Task(this_rq()->curr); }
inline bool IsKthread(const TaskStruct* t) { return t->flags & abi::kPfKthread; }

// entry.S: saves the callee-saved registers on the current stack, stores its pointer in *prev_sp
// and continues on next_sp (arch/x86/entry/entry_64.S).
extern "C" void __switch_to_asm(uint64_t* prev_sp, uint64_t next_sp);

// ---- mm.cc: mm_struct life cycle and user mappings ----
// Creates mm `slot` with `pages` fresh data pages (mm_users = mm_count = 1).
void mm_alloc(int32_t slot, uint32_t pages);
// dup_mm: a new mm `slot` with copies of `old`'s user pages.
void dup_mm(int32_t slot, int32_t old);
void init_mm_setup();  // slot 0 = init_mm, on the swapper page table (CPU 0, once)
void mmgrab(int32_t mm);
void mmdrop(int32_t mm);
void mmget(int32_t mm);
void mmput(int32_t mm);
void mmgrab_lazy_tlb(int32_t mm);
void mmdrop_lazy_tlb(int32_t mm);
// mmap / munmap / mprotect on current->mm.
void do_mmap(int32_t mm, uint32_t pages);
void do_munmap(int32_t mm, uint32_t pages);
void do_mprotect(int32_t mm, uint32_t pages, uint32_t prot);

// ---- tlb.cc: arch/x86/mm/tlb.c ----
void initialize_tlbstate();
void switch_mm_irqs_off(int32_t next);
void enter_lazy_tlb(int32_t mm);
// After a page-table change of mm in [start, end): tlb_gen += 1, IPIs to the other CPUs in
// mm_cpumask that need them, and the local flush (flush_tlb_mm_range): INVLPG per page up to 33
// pages, else a full flush. freed_tables: page-table pages were freed, lazy CPUs are IPI'd too.
// late: CPUs whose IPI is posted without waiting, to be handled after their next step
// (flush_tlb_late_ipi), as a replayed trace shows the IPI landing after a switch.
void flush_tlb_mm_range(int32_t mm, uint64_t start, uint64_t end, bool freed_tables = false,
                        uint64_t late = 0);
// flush_tlb_mm_range in two halves, for a replayed trace whose other CPUs act between them:
// the tlb_gen increment (and the flush's description in this CPU's flush_info), then the
// IPIs and the local flush.
void flush_tlb_mm_range_begin(int32_t mm, uint64_t start, uint64_t end, bool freed_tables);
void flush_tlb_mm_range_finish(uint64_t late);
// A flush IPI this CPU was sent late (see flush_tlb_mm_range): handled now, if any.
void flush_tlb_late_ipi();
// The flush IPI's handler: runs flush_tlb_func for every CPU that asked this one.
void flush_tlb_ipi();
// flush_tlb_mm: the whole mm, page-table pages freed (fork, exit_mmap).
void flush_tlb_mm(int32_t mm);
// cleanup_lazy_tlbs (MMU_LAZY_TLB_SHOOTDOWN): every CPU still using mm lazily moves to init_mm.
void cleanup_lazy_tlbs(int32_t mm);

// ---- sched.cc: kernel/sched/core.c, fork, exit, exec, kthread ----
void sched_init_cpu();  // this CPU's idle task is current
int32_t task_create(int32_t index, uint32_t flags);
// A process with an mm of its own: task `index` on the new mm `slot` with `pages` data pages.
void spawn_process(int32_t index, int32_t slot, uint32_t pages);
// copy_mm with CLONE_VM: task `index` shares `parent`'s mm (a thread, or a vfork child).
void clone_vm_task(int32_t index, int32_t parent);
void context_switch(int32_t next);
// exit_mm (and PF_EXITING): the task keeps running on its mm lazily, as an exiting task does
// until its last switch; the last user's mmput tears the address space down.
void exit_mm();
[[noreturn]] void do_exit();
void do_exec(int32_t new_mm, uint32_t pages);
void kthread_use_mm(int32_t mm);
void kthread_unuse_mm();

// ---- user_burst.cc ----
// The current user task runs once in ring 3 on its loaded page table: it verifies every page
// holds what it last wrote, rewrites the writable ones, and checks unmapped and read-only pages
// fault as they must.
void run_user_burst();

// ---- scenario.cc, cost.cc: the programs ----
[[noreturn]] void RunScenario();
// The kick interrupt (kVecKick) arrived: counted for the host (abi::StepLoopCpu).
void scenario_kick_taken();
[[noreturn]] void RunCost();

}  // namespace activemm::guest

#endif  // ACTIVEMM_GUEST_KERNEL_MODEL_H_
