// Tasks and the context switch: context_switch() and finish_task_switch() of
// kernel/sched/core.c, copy_mm's task side, exit_mm() (kernel/exit.c), exec_mmap()
// (fs/exec.c) and kthread_use_mm() / kthread_unuse_mm() (kernel/kthread.c).
#include "guest/arch/cpu.h"
#include "guest/arch/hypercall.h"
#include "guest/arch/spinlock.h"
#include "guest/kernel/model.h"
#include "guest/lib/lib.h"
#include "shared/x86.h"

extern "C" void ret_from_fork_asm();
extern "C" [[noreturn]] void ret_from_fork();

namespace activemm::guest {

constinit TaskStruct tasks[abi::kMaxTasks] = {};
constinit CpuMmState cpu_mm[abi::kMaxCpus] = {};

namespace {

constexpr uint64_t kStackBytes = abi::kTaskStackPages * x86::kPageSize;

// Kernel stacks of dead tasks, for reuse (their first word links the list). In a parallel
// block one CPU may create a task while another frees a dead one's stack: the lock keeps the
// list whole (without it, two CPUs could take the same stack, and a switch would later return
// through a frame the other task overwrote).
constinit SpinLock stacks_lock;
constinit uint64_t free_stacks = 0;

uint64_t AllocStack() {
  {
    SpinLockGuard g(stacks_lock);
    const uint64_t pa = free_stacks;
    if (pa != 0) {
      free_stacks = *static_cast<uint64_t*>(PhysToVirt(pa));
      return pa;
    }
  }
  const uint64_t pa = AllocContiguous(abi::kTaskStackPages);
  GUEST_CHECK(pa != 0);
  return pa;
}

void FreeStack(uint64_t pa) {
  FillPhys(pa, kPagePoison, kStackBytes);
  SpinLockGuard g(stacks_lock);
  *static_cast<uint64_t*>(PhysToVirt(pa)) = free_stacks;
  free_stacks = pa;
}

// The mm a user task owns decides the switch case, as `prev->mm` / `next->mm` do in Linux.
void CountSwitch(const TaskStruct* prev, const TaskStruct* next) {
  abi::MmCounters& c = counters();
  ++c.context_switches;
  const bool from_user = prev->mm != abi::kNoMm, to_user = next->mm != abi::kNoMm;
  if (from_user && !to_user) ++c.switch_user_to_kernel;
  if (!from_user && !to_user) ++c.switch_kernel_to_kernel;
  if (!from_user && to_user) ++c.switch_kernel_to_user;
  if (from_user && to_user) ++c.switch_user_to_user;
}

void finish_task_switch() {
  CpuMmState* rq = this_rq();
  const int32_t mm = rq->prev_mm;
  rq->prev_mm = abi::kNoMm;
  if (mm != abi::kNoMm) {
    // The borrowed mm a kernel thread handed over in a kernel -> user switch: it could not be
    // dropped before the switch, because until switch_to this CPU's previous task still ran
    // on it (and it may have been the last reference).
    mmdrop_lazy_tlb(mm);
    if (Bug(abi::MmBug::kDoubleMmdrop)) mmdrop_lazy_tlb(mm);
  }
  TaskStruct* prev = Task(this_cpu()->switch_prev);
  if (prev->state == static_cast<uint32_t>(abi::TaskState::kDead) && prev->stack_pa != 0) {
    // We now run on the next task's stack: the dead one's can go (put_task_stack).
    FreeStack(prev->stack_pa);
    prev->stack_pa = 0;
  }
}

// What a task does once it is running again: a user task returns to ring 3.
void after_switch() {
  TaskStruct* cur = current();
  // The flag last: a switch to a kernel thread (the lazy path) pays nothing for it.
  if (cur->mm != abi::kNoMm && !IsKthread(cur) && model.user_bursts) run_user_burst();
}

}  // namespace

void sched_init_cpu() {
  const uint32_t cpu = this_cpu()->cpu;
  TaskStruct* idle = Task(static_cast<int32_t>(cpu));
  idle->state = static_cast<uint32_t>(abi::TaskState::kRunning);
  idle->flags = abi::kPfKthread | abi::kPfIdle;
  idle->mm = abi::kNoMm;
  idle->active_mm = abi::kInitMm;
  idle->on_cpu = static_cast<int32_t>(cpu);
  idle->stack_pa = 0;  // the boot stack
  CpuMmState* rq = this_rq();
  rq->curr = rq->idle = static_cast<int32_t>(cpu);
  rq->prev_mm = abi::kNoMm;
  // The boot idle task holds a lazy reference on init_mm (init_task.active_mm = &init_mm;
  // sched_init's mmgrab_lazy_tlb in kernel/sched/core.c); not an event of the run.
  if (LazyRefs()) mmgrab(abi::kInitMm);
}

int32_t task_create(int32_t index, uint32_t flags) {
  GUEST_CHECK_VALUES(index >= 0 && index < static_cast<int32_t>(abi::kMaxTasks) &&
                         tasks[index].state == static_cast<uint32_t>(abi::TaskState::kUnused),
                     1, static_cast<uint64_t>(index));
  TaskStruct* t = Task(index);
  t->flags = flags;
  t->mm = abi::kNoMm;
  t->active_mm = abi::kNoMm;
  t->on_cpu = abi::kNoCpu;
  t->exec_count = 0;
  t->stack_pa = AllocStack();
  // The frame __switch_to_asm pops: six callee-saved registers, then the return address.
  auto* top =
      reinterpret_cast<uint64_t*>(static_cast<uint8_t*>(PhysToVirt(t->stack_pa)) + kStackBytes);
  top[-1] = reinterpret_cast<uint64_t>(ret_from_fork_asm);
  for (int i = 2; i <= 7; ++i) top[-i] = 0;
  t->sp = reinterpret_cast<uint64_t>(top - 7);
  __atomic_store_n(&t->state, static_cast<uint32_t>(abi::TaskState::kRunnable), __ATOMIC_RELEASE);
  return index;
}

void spawn_process(int32_t index, int32_t slot, uint32_t pages) {
  TaskStruct* t = Task(task_create(index, 0));
  mm_alloc(slot, pages);
  t->mm = t->active_mm = slot;
}

void clone_vm_task(int32_t index, int32_t parent) {
  const int32_t mm = Task(parent)->mm;
  GUEST_CHECK(mm != abi::kNoMm);
  TaskStruct* t = Task(task_create(index, 0));
  mmget(mm);
  t->mm = t->active_mm = mm;
}

void context_switch(int32_t next_index) {
  CpuMmState* rq = this_rq();
  TaskStruct* prev = current();
  TaskStruct* next = Task(next_index);
  CountSwitch(prev, next);

  if (next->mm == abi::kNoMm) {  // to a kernel thread
    if (LazyOn()) {
      // Keep prev's page table loaded (no CR3 write): the kernel half is the same in every mm.
      enter_lazy_tlb(prev->active_mm);
      next->active_mm = prev->active_mm;
      if (prev->mm != abi::kNoMm) {  // user -> kernel: the borrow needs a reference
        if (!Bug(abi::MmBug::kSkipLazyMmgrab)) mmgrab_lazy_tlb(prev->active_mm);
      } else {  // kernel -> kernel: the reference is handed over with active_mm
        prev->active_mm = abi::kNoMm;
      }
    } else {
      // No lazy TLB: load init_mm instead of keeping the user page table (enter_lazy_tlb with
      // tlb_use_lazy_mode off, arch/x86/mm/tlb.c of Linux 4.14-4.18).
      switch_mm_irqs_off(abi::kInitMm);
      next->active_mm = abi::kInitMm;
      if (prev->mm == abi::kNoMm) prev->active_mm = abi::kNoMm;
    }
  } else {  // to a user task
    switch_mm_irqs_off(next->mm);
    if (prev->mm == abi::kNoMm) {  // kernel -> user: drop the borrowed mm after the switch
      if (LazyOn() && !Bug(abi::MmBug::kForgetPrevMm)) rq->prev_mm = prev->active_mm;
      prev->active_mm = abi::kNoMm;
    }
  }

  if (prev->state != static_cast<uint32_t>(abi::TaskState::kDead)) {
    prev->state = static_cast<uint32_t>(abi::TaskState::kRunnable);
  }
  prev->on_cpu = abi::kNoCpu;
  next->state = static_cast<uint32_t>(abi::TaskState::kRunning);
  next->on_cpu = static_cast<int32_t>(this_cpu()->cpu);
  rq->curr = next_index;
  this_cpu()->switch_prev = TaskIndex(prev);
  __switch_to_asm(&prev->sp, next->sp);
  // Running as `next` now, in the frame where it was switched out: maybe on another CPU than
  // the one it left, which is why nothing above is reused below (this_rq() is re-read).
  finish_task_switch();
  after_switch();
}

void exit_mm() {
  TaskStruct* t = current();
  t->flags |= abi::kPfExiting;
  const int32_t mm = t->mm;
  if (mm != abi::kNoMm) {
    if (LazyOn()) {
      // The dying task keeps running on mm until it switches away: hold it lazily first, so
      // mmput dropping the last user cannot free the page table under this CPU.
      mmgrab_lazy_tlb(mm);
      t->mm = abi::kNoMm;
      enter_lazy_tlb(mm);
    } else {
      t->mm = abi::kNoMm;
      switch_mm_irqs_off(abi::kInitMm);
      t->active_mm = abi::kInitMm;
    }
    mmput(mm);
  }
}

[[noreturn]] void do_exit() {
  TaskStruct* t = current();
  exit_mm();
  t->state = static_cast<uint32_t>(abi::TaskState::kDead);
  context_switch(this_rq()->idle);
  Panic(__FILE__, __LINE__, "a dead task was switched back in", 1,
        static_cast<uint64_t>(TaskIndex(t)));
}

void do_exec(int32_t new_mm, uint32_t pages) {
  TaskStruct* t = current();
  mm_alloc(new_mm, pages);
  const int32_t old_mm = t->mm;
  const int32_t active_mm = t->active_mm;
  t->mm = new_mm;
  t->active_mm = new_mm;
  t->flags &= ~abi::kPfKthread;  // a kernel thread that execs becomes a user task
  ++t->exec_count;
  switch_mm_irqs_off(new_mm);  // activate_mm
  if (old_mm != abi::kNoMm) {
    mmput(old_mm);
  } else {
    mmdrop_lazy_tlb(active_mm);  // the kernel thread's borrowed mm
  }
  run_user_burst();
}

void kthread_use_mm(int32_t mm) {
  TaskStruct* t = current();
  GUEST_CHECK(IsKthread(t) && t->mm == abi::kNoMm);
  // A real reference, not a lazy one: the mm must outlive the use even if every user exits.
  mmgrab(mm);
  const int32_t active_mm = t->active_mm;
  t->active_mm = mm;
  t->mm = mm;
  t->flags |= abi::kPfUsingMm;
  switch_mm_irqs_off(mm);
  // Dropped even when active_mm == mm: the lazy and the real reference are separate paths.
  mmdrop_lazy_tlb(active_mm);
}

void kthread_unuse_mm() {
  TaskStruct* t = current();
  const int32_t mm = t->mm;
  GUEST_CHECK(IsKthread(t) && mm != abi::kNoMm);
  t->mm = abi::kNoMm;
  t->flags &= ~abi::kPfUsingMm;
  if (LazyOn()) {
    mmgrab_lazy_tlb(mm);  // active_mm stays mm: now a lazy borrow
    enter_lazy_tlb(mm);
  } else {
    switch_mm_irqs_off(abi::kInitMm);
    t->active_mm = abi::kInitMm;
  }
  mmdrop(mm);
}

}  // namespace activemm::guest

using namespace activemm::guest;

extern "C" void ret_from_fork() {
  finish_task_switch();
  after_switch();
  model.new_task_start();  // the program that switched to the new task goes on in it
  Panic(__FILE__, __LINE__, "a program's new-task loop returned", 0);
}
