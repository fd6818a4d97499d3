// The scenario program: every CPU executes the steps addressed to it, one step at a time in
// program order, and waits halted (woken by a kick IPI) while another CPU executes. The host
// verifies at kVerify steps and, with --verify=every-step, after every step.
#include "guest/arch/apic.h"
#include "guest/arch/cpu.h"
#include "guest/arch/hypercall.h"
#include "guest/arch/traps.h"
#include "guest/kernel/model.h"
#include "guest/programs/hostile.h"
#include "shared/x86.h"

namespace activemm::guest {
namespace {

constinit const abi::ScenarioHeader* header = nullptr;
constinit const abi::Step* steps = nullptr;    // the program's window (kProgramWindow slots)
constinit abi::StepRecord* records = nullptr;  // one per slot, for the host
constinit uint32_t next_step = 0;  // the step to execute next; written by the CPU that ran the last
constinit abi::MmDirectory* directory = nullptr;
constinit uint32_t block_finished = 0;  // CPUs done with the current parallel block (atomic)
constinit bool step_state = false;      // header->step_state: full records (a timeline)

void Verify(uint64_t check, uint32_t step_index) {
  abi::CpuMailbox* mb = this_cpu()->mailbox;
  mb->arg[0] = check;
  mb->arg[1] = step_index;
  Hypercall(abi::Hypercall::kVerify);
}

abi::StepLoopCpu* StepLoopState(uint32_t cpu) {
  return static_cast<abi::StepLoopCpu*>(PhysToVirt(abi::kStepLoopPa)) + cpu;
}

void Kick(uint32_t cpu) {
  __atomic_add_fetch(&StepLoopState(cpu)->kicks_sent, 1, __ATOMIC_RELAXED);
  ApicSendIpi(percpu[cpu].apic_id, kVecKick);
}

// Step i and its record, in the slot the window keeps them in while step i is loaded and not
// yet finished (shared/mm_abi.h kProgramWindow).
const abi::Step& StepAt(uint32_t i) { return steps[abi::ProgramSlot(i)]; }
abi::StepRecord& RecordAt(uint32_t i) { return records[abi::ProgramSlot(i)]; }

// Asks the host for more of the program once fewer than kProgramRefillAhead loaded steps remain
// from `next` on. Every step before `next` is finished (its record written), so the host may
// reuse their slots; it reads that bound from arg[0].
[[gnu::always_inline]] inline void RefillIfLow(uint32_t next) {
  const uint32_t loaded = __atomic_load_n(&header->steps_loaded, __ATOMIC_ACQUIRE);
  if (loaded >= header->num_steps || loaded >= next + abi::kProgramRefillAhead) return;
  this_cpu()->mailbox->arg[0] = next;
  Hypercall(abi::Hypercall::kRefill);
}

// A switch step whose prev is dying: do_task_dead's last __schedule. The task must have gone
// through exit_mm (kExit with kExitKeepsRunning); finish_task_switch frees its stack.
void SwitchOutDies(const abi::Step& s) {
  if (s.arg != abi::kSwitchPrevDies) return;
  TaskStruct* t = current();
  GUEST_CHECK_VALUES((t->flags & abi::kPfExiting) && !(t->flags & abi::kPfIdle), 1,
                     static_cast<uint64_t>(this_rq()->curr));
  t->state = static_cast<uint32_t>(abi::TaskState::kDead);
}

void ExecuteStep(const abi::Step& s) {
  switch (static_cast<abi::StepOp>(s.op)) {
    case abi::StepOp::kSpawn:
      spawn_process(s.task, s.mm, s.pages);
      return;
    case abi::StepOp::kCloneVm:
      clone_vm_task(s.task, s.parent);
      return;
    case abi::StepOp::kFork: {  // copy_mm -> dup_mm
      const int32_t mm = Task(s.parent)->mm;
      GUEST_CHECK(mm != abi::kNoMm);
      TaskStruct* t = Task(task_create(s.task, 0));
      dup_mm(s.mm, mm);
      t->mm = t->active_mm = s.mm;
      return;
    }
    case abi::StepOp::kKthread:
      task_create(s.task, abi::kPfKthread);
      return;
    case abi::StepOp::kRun:
      GUEST_CHECK_VALUES(Task(s.task)->state == static_cast<uint32_t>(abi::TaskState::kRunnable), 2,
                         static_cast<uint64_t>(s.task), uint64_t{Task(s.task)->state});
      SwitchOutDies(s);
      context_switch(s.task);
      return;
    case abi::StepOp::kIdle:
      SwitchOutDies(s);
      context_switch(this_rq()->idle);
      return;
    case abi::StepOp::kExec:
      GUEST_CHECK(this_rq()->curr == s.task);
      do_exec(s.mm, s.pages);
      return;
    case abi::StepOp::kExit:
      GUEST_CHECK(this_rq()->curr == s.task);
      if (s.arg == abi::kExitKeepsRunning) {
        exit_mm();
        return;
      }
      do_exit();  // does not return: the CPU continues in its idle task
    case abi::StepOp::kUseMm:
      GUEST_CHECK(this_rq()->curr == s.task);
      kthread_use_mm(s.mm);
      return;
    case abi::StepOp::kUnuseMm:
      GUEST_CHECK(this_rq()->curr == s.task);
      kthread_unuse_mm();
      return;
    case abi::StepOp::kMmap:
    case abi::StepOp::kMunmap:
    case abi::StepOp::kMprotect: {
      TaskStruct* t = current();
      GUEST_CHECK(this_rq()->curr == s.task && t->mm != abi::kNoMm);
      if (s.op == static_cast<uint32_t>(abi::StepOp::kMmap)) do_mmap(t->mm, s.pages);
      if (s.op == static_cast<uint32_t>(abi::StepOp::kMunmap)) do_munmap(t->mm, s.pages);
      if (s.op == static_cast<uint32_t>(abi::StepOp::kMprotect)) {
        do_mprotect(t->mm, s.pages, s.prot);
      }
      if (!IsKthread(t)) run_user_burst();  // the task goes back to ring 3 on the new mapping
      return;
    }
    case abi::StepOp::kFlush: {
      GUEST_CHECK(this_rq()->curr == s.task);
      // The flushed range: the mm's data area, as far as the trace said (INVLPG of an address
      // nothing maps is harmless); the whole address space for TLB_FLUSH_ALL.
      const uint64_t pages = s.pages == abi::kFlushAllPages ? (1ull << 35) : s.pages;
      const uint64_t start = abi::kUserDataVa, end = start + pages * x86::kPageSize;
      const bool freed = s.arg & abi::kFlushFreedTables;
      if (s.arg & abi::kFlushBegin) {
        flush_tlb_mm_range_begin(s.mm, start, end, freed);
      } else if (s.arg & abi::kFlushFinish) {
        GUEST_CHECK_VALUES(this_cpu()->flush_info.mm == s.mm, 2,
                           static_cast<uint64_t>(this_cpu()->flush_info.mm),
                           static_cast<uint64_t>(s.mm));
        flush_tlb_mm_range_finish(s.late_ipi_cpus);
      } else {
        flush_tlb_mm_range(s.mm, start, end, freed, s.late_ipi_cpus);
      }
      return;
    }
    case abi::StepOp::kVerify:
      Verify(s.arg, s.index);
      return;
    case abi::StepOp::kParallel:
      break;  // handled by the step loop, never executed as a step
  }
  Panic(__FILE__, __LINE__, "unknown step op", 2, uint64_t{s.op}, uint64_t{s.index});
}

// The step loop's own functions are inlined into it (always_inline): each call would cost its
// prologue and epilogue, a dozen ring-0 instructions a step where every one costs about a
// microsecond (kvm_pvm).

// Hands the program on to step `next`: publishes it and wakes the CPU(s) that execute it.
[[gnu::always_inline]] inline void Advance(uint32_t next) {
  directory->steps_done = next;
  const bool more = next < header->num_steps;
  // Before next_step is published: the CPUs woken for step `next` (and a parallel block from
  // it) must find it loaded. The refill's exit orders the host's writes before this CPU's
  // release below.
  if (more) RefillIfLow(next);
  // Release: the next CPU must see everything this step wrote before it sees the step index.
  __atomic_store_n(&next_step, next, __ATOMIC_RELEASE);
  const uint32_t me = this_cpu()->cpu;
  const abi::Step* s = more ? &StepAt(next) : nullptr;
  if (s == nullptr || s->op == static_cast<uint32_t>(abi::StepOp::kParallel)) {
    for (uint32_t c = 0; c < boot_params->num_cpus; ++c) {
      if (c != me) Kick(c);
    }
  } else if (s->cpu != me) {
    Kick(s->cpu);
  }
}

// Starts step i on this CPU.
[[gnu::always_inline]] inline void BeginStep(uint32_t i) {
  PerCpu* self = this_cpu();
  self->cur_step = i;
  self->step_result = abi::kStepExecuted;
  if (step_state) {  // only RecordStep reads these
    self->step_ipi_cpus = 0;
    self->step_tsc = Rdtsc();
  }
}

// Out of line, unlike the rest of the loop: `activemm replay --profile` tells the record
// writing apart from the loop by the function it samples in (vmm/kvm/guest_profile.cc).
[[gnu::noinline]] void RecordStep(uint32_t i, uint8_t result) {
  PerCpu* self = this_cpu();
  const CpuMmState* rq = this_rq();
  abi::StepRecord& r = RecordAt(i);
  r.tsc_begin = self->step_tsc;
  r.tsc_end = Rdtsc();
  r.ipi_cpus = self->step_ipi_cpus;
  r.leave_mm_cpus = __atomic_exchange_n(&self->step_leave_mm, 0, __ATOMIC_ACQ_REL);
  r.loaded_mm = rq->loaded_mm;
  r.curr = rq->curr;
  r.result = result;
  r.is_lazy = rq->is_lazy;
}

// Completes the step this CPU is executing. Called after ExecuteStep returns, which may be in
// another task's frame (the one a run step switched to), so the step comes from per-CPU state.
[[gnu::always_inline]] inline void FinishStep() {
  PerCpu* self = this_cpu();
  // The result before a late flush IPI lands: its CR3 load (leave_mm) is not the step's; the
  // record after it, so the state it shows is where the CPU really is. Every CR3 write of this
  // CPU since BeginStep is the step's (load_new_mm_cr3 sets the bits): nothing else runs on a
  // CPU while it executes a step, and the flush IPIs it handles for others write no CR3 unless
  // they move it to init_mm, which is then this step's doing too.
  const uint8_t result = self->step_result;
  if (this_rq()->late_ipi_pending) flush_tlb_late_ipi();
  if (step_state) {
    RecordStep(self->cur_step, result);
  } else {
    RecordAt(self->cur_step).result = result;
  }
  if (self->par_next != 0) return;  // inside a parallel block: the loop goes on with it
  const uint32_t i = self->cur_step;
  const abi::Step& s = StepAt(i);
  if (s.flags & abi::kStepVerifyAfter) Verify(abi::kVerifyNoCheck, s.index);
  Advance(i + 1);
}

// This CPU's next step in the parallel block it is in, or its exit from the block: the last CPU
// to finish verifies (if asked) and moves the program past the block.
void ContinueParallel() {
  PerCpu* self = this_cpu();
  for (uint32_t j = self->par_next; j < self->par_end; ++j) {
    const abi::Step& s = StepAt(j);
    if (s.cpu != self->cpu) continue;
    self->par_next = j + 1;
    BeginStep(j);
    ExecuteStep(s);
    FinishStep();
    return;
  }
  const uint32_t block = self->par_done;
  const uint32_t end = self->par_end;
  self->par_next = 0;
  self->par_end = 0;
  if (__atomic_add_fetch(&block_finished, 1, __ATOMIC_ACQ_REL) == boot_params->num_cpus) {
    __atomic_store_n(&block_finished, 0, __ATOMIC_RELAXED);
    const abi::Step& p = StepAt(block);
    if (p.flags & abi::kStepVerifyAfter) Verify(abi::kVerifyNoCheck, p.index);
    Advance(end);
  }
}

// Halts until a kick (or any interrupt); `seen` is the step this CPU saw next, for the host.
void WaitForKick(uint32_t seen) {
  abi::StepLoopCpu* state = StepLoopState(this_cpu()->cpu);
  state->waiting_for = seen;
  ++state->halts;
  SafeHaltThenCli();
}

// The test hooks of the step loop (abi::MmBug from kSlowSteps on), before step i runs.
[[gnu::noinline]] void StepTestHook(uint32_t i, const abi::Step& s) {
  if (Bug(abi::MmBug::kSlowSteps)) {
    const uint64_t start = Rdtsc();
    while (Rdtsc() - start < abi::kSlowStepTscCycles) Pause();
  }
  if (i < header->num_steps / 2) return;  // the others fire at the middle step
  if (Bug(abi::MmBug::kStallHalfway)) {
    for (;;) Pause();  // no progress, no hypercall: only the host's watchdog ends this
  }
  if (abi::IsHostile(model.bug)) hostile_guest(model.bug, s.index);
}

[[noreturn]] void StepLoop() {
  for (;;) {
    Cli();
    PerCpu* self = this_cpu();
    if (self->par_next != 0) {
      ContinueParallel();
      continue;
    }
    const uint32_t i = __atomic_load_n(&next_step, __ATOMIC_ACQUIRE);
    if (i >= header->num_steps) Done(0);
    const abi::Step& s = StepAt(i);
    if (s.op == static_cast<uint32_t>(abi::StepOp::kParallel)) {
      if (self->par_done == i) {  // this CPU's part is done; the others are still at it
        WaitForKick(i);
        continue;
      }
      // The whole block is loaded: Advance left at least kProgramRefillAhead steps ahead.
      GUEST_CHECK_VALUES(s.arg <= header->num_steps - i - 1 && s.arg < abi::kProgramRefillAhead, 2,
                         uint64_t{i}, uint64_t{s.arg});
      self->par_done = i;
      self->par_next = i + 1;
      self->par_end = i + 1 + s.arg;
      continue;
    }
    if (s.cpu != self->cpu) {
      // The kick may come between the load above and the halt: it stays pending (interrupts
      // are off) and the atomic sti;hlt wakes at once.
      WaitForKick(i);
      continue;
    }
    // One compare per step for every test hook (the hooks are numbered after the model bugs).
    if (model.bug >= abi::MmBug::kSlowSteps) StepTestHook(i, s);
    BeginStep(i);
    ExecuteStep(s);
    FinishStep();
  }
}

// Where a new task starts (after ret_from_fork): it finishes the step that switched to it.
void StepLoopResume() {
  FinishStep();
  StepLoop();
}

}  // namespace

void scenario_kick_taken() {
  __atomic_add_fetch(&StepLoopState(this_cpu()->cpu)->kicks_taken, 1, __ATOMIC_RELAXED);
}

void RunScenario() {
  const uint32_t cpu = this_cpu()->cpu;
  if (cpu == 0) {
    header = static_cast<const abi::ScenarioHeader*>(PhysToVirt(abi::kScenarioPa));
    GUEST_CHECK_VALUES(
        header->num_steps > 0 && header->num_asids >= 1 && header->num_asids <= abi::kMaxAsids, 2,
        uint64_t{header->num_steps}, uint64_t{header->num_asids});
    // The first window is loaded before the guest starts.
    GUEST_CHECK_VALUES(
        header->steps_loaded == header->num_steps || header->steps_loaded == abi::kProgramWindow, 2,
        uint64_t{header->steps_loaded}, uint64_t{header->num_steps});
    steps = static_cast<const abi::Step*>(PhysToVirt(abi::kProgramStepsPa));
    records = static_cast<abi::StepRecord*>(PhysToVirt(abi::kProgramRecordsPa));
    model.lazy = static_cast<abi::LazyMode>(header->lazy_mode);
    model.pcid = static_cast<abi::PcidMode>(header->pcid_mode);
    model.num_asids = header->num_asids;
    model.new_task_start = StepLoopResume;
    model.bug = static_cast<abi::MmBug>(header->bug);
    step_state = header->step_state != 0;
    init_mm_setup();
    directory = static_cast<abi::MmDirectory*>(PhysToVirt(abi::kMmDirectoryPa));
    directory->mm_slots_pa = reinterpret_cast<uint64_t>(mm_slots) - abi::kKernelTextBase;
    directory->tasks_pa = reinterpret_cast<uint64_t>(tasks) - abi::kKernelTextBase;
    directory->cpus_pa = reinterpret_cast<uint64_t>(cpu_mm) - abi::kKernelTextBase;
  }
  // Every CPU needs the configuration and init_mm before it sets up its own state.
  Checkpoint(abi::kCheckpointModelReady);
  this_cpu()->apic_id = ApicInit();
  this_cpu()->par_done = ~0u;
  this_cpu()->kicks_taken = &StepLoopState(cpu)->kicks_taken;  // counted by entry.S kick_entry
  sched_init_cpu();
  initialize_tlbstate();
  Checkpoint(abi::kCheckpointCpusReady);
  StepLoop();
}

}  // namespace activemm::guest
