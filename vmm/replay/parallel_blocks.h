// Parallel blocks for a planned replay: runs of context switches on different CPUs that touch
// disjoint tasks and mms are wrapped in kParallel blocks, so that each vCPU executes its part
// at once instead of waiting, halted, for its turn in the trace's order.
//
// A replay's program is the trace's interleaving of every CPU's events, one step at a time: a
// CPU runs one step, kicks the next step's CPU and halts. On a 2-CPU trace one vCPU is halted
// about half of the time and every change of CPU costs a kick IPI and a halt exit. Steps whose
// outcome cannot depend on the interleaving need not wait for each other; the decisions (CR3
// loads, flushes, refcounts, the page allocator's order) come out the same, which
// tests/unit/parallel_blocks_test.cc and the KVM replay tests check record by record.
#ifndef ACTIVEMM_VMM_REPLAY_PARALLEL_BLOCKS_H_
#define ACTIVEMM_VMM_REPLAY_PARALLEL_BLOCKS_H_

#include <stdint.h>

#include <vector>

#include "shared/mm_abi.h"

namespace activemm {

// The longest block formed. A block moves the program's progress counter (the watchdog's and
// the progress line's) only when it ends, so a block must end well within the watchdog's 10 s
// on the slowest host kind (nested KVM under QEMU TCG, milliseconds per step); and 128 steps
// make the block's own cost (waking every CPU, the last one's hand-over) under 2% of it.
inline constexpr uint32_t kMaxParallelBlockSteps = 128;

struct ParallelBlocks {
  std::vector<abi::Step> program;  // with kParallel heads
  std::vector<int> new_index;      // old step index -> its index in `program`
  int blocks = 0;
  int steps_in_blocks = 0;
};

// Wraps the independent context switches of `program` (a sequential program for `cpus` CPUs,
// CPU c's idle task being task c) in parallel blocks. A step joins a block when it is a plain
// run or idle switch (not the last switch of a dying task, not the first step of a CPU a late
// flush IPI is pending on, no verification after it) and neither the task it leaves nor the
// task it runs is touched by another CPU's step in the block, nor, when the task it runs goes
// back to ring 3, that task's mm: the ring-3 burst that follows a switch to a user task uses
// its mm's control page and user stack (guest/programs/user_burst.cc), one CPU at a time. Nothing
// else in a block can make its outcome depend on the interleaving:
// - What a switch writes is its CPU's own (loaded_mm, ASID slots, is_lazy, counters) or atomic
//   and commutative on the mm (its own bit of mm_cpumask, mm_count's lazy references).
// - What it reads of another CPU's doing is the mm's tlb_gen, which only a flush changes, and
//   flushes, exits, execs and everything that allocates or frees run one at a time.
// - An mm with no owning task left (mm_users 0) is never touched in a block: a switch may drop
//   its last reference and free it, and the page allocator's order must not depend on who ran
//   first.
// So one CPU may lazily borrow, or drop, an mm whose thread runs on another. Steps keep
// their order per CPU; a block has steps of two CPUs at least, and at least 8 steps and two
// per CPU (a shorter one costs more in wake-ups than it saves).
ParallelBlocks FormParallelBlocks(const std::vector<abi::Step>& program, int cpus);

}  // namespace activemm

#endif  // ACTIVEMM_VMM_REPLAY_PARALLEL_BLOCKS_H_
