// Turns a real Linux trace into a step program for the guest: every traced pid becomes a task
// (kernel threads as kernel threads, the threads of a tgid on one mm), fork, exec and exit
// events create, replace and end mms, tlb_flush events of the initiating CPU (reasons 3 and 4)
// become flush_tlb_mm_range calls, and every sched_switch becomes a context switch on its CPU.
//
// The kernel's own CR3 loads (tlb_flush reason 0, "flush on task switch") are never an input:
// they are the answer the replay is scored against (see replay.h). Reasons 1 and 5 are what
// remote CPUs did with a flush IPI, which the emulated shootdown decides for itself.
#ifndef ACTIVEMM_VMM_REPLAY_REPLAY_PLAN_H_
#define ACTIVEMM_VMM_REPLAY_REPLAY_PLAN_H_

#include <stdint.h>

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "vmm/model/scenario.h"
#include "vmm/replay/trace.h"

namespace activemm {

// One sched_switch line of the trace and the program step that replays it.
struct ReplaySwitch {
  int event = 0;  // index in Trace::events
  int line = 0;   // 1-based line in trace.txt
  int cpu = 0;
  int prev_pid = 0;
  int next_pid = 0;
  // Views of constants (a trace has millions of switches):
  std::string_view kind;          // "user->user (same mm)", "user->user", "user->kernel", ...
  int step = -1;                  // the run/idle step, -1 when the switch could not be placed
  std::string_view unplaced_why;  // when step < 0
};

// What the planner made of the trace besides switches: the counts a user needs to judge how
// much of the trace the replay rests on.
struct ReplayPlanStats {
  int tasks = 0;                      // tasks created (idle tasks excluded)
  int kthreads = 0;                   // ... of which kernel threads
  int pids_first_seen_mid_trace = 0;  // tasks created for a pid with no fork event
  int processes_forked = 0;           // fork with dup_mm
  int vforks = 0;                     // fork into another tgid without dup_mmap's flush: CLONE_VM
  int threads = 0;                    // fork into the same tgid
  int kthreads_forked = 0;            // forked by a kernel thread
  int execs = 0;
  int execs_at_vfork_wakeup = 0;  // exec_mmap replayed before the vfork parent ran again
  int exits = 0;
  int exits_after_preemption = 0;  // exit_mm replayed when the preempted task came back
  int flushes = 0;                 // flush_tlb_mm_range steps
  int flushes_local_part = 0;      // reason 3/5 right after its own reason 4: the same flush
  int flushes_of_fork = 0;         // dup_mmap's flush_tlb_mm, which the emulated fork does itself
  int flushes_without_mm = 0;      // by a task with no mm of its own (kernel thread, exiting task)
  int flushes_retargeted = 0;      // before an exec event, on the new mm (setup_arg_pages)
  int late_ipis = 0;               // flush IPIs that land after their target switched away
  int inferred_switches = 0;       // switches the trace implies but does not show
  int inferred_idle_exits = 0;     // ... of which away from an idle task (untraced on some CPUs)
  int inferred_exits = 0;          // a task switched out dead without an exit event
  int skipped_events = 0;          // events that could not be applied (listed in skipped)
  int parallel_blocks = 0;         // blocks of independent switches (vmm/replay/parallel_blocks.h)
  int steps_in_parallel_blocks = 0;
  std::vector<std::string> skipped;  // the first few, "line N: why"
};

struct ReplayPlan {
  Scenario scenario;  // program, task and mm names; step index = trace event index
  std::vector<ReplaySwitch> switches;
  ReplayPlanStats stats;
};

struct ReplayPlanOptions {
  bool verify_every_step = false;  // a verification after every step: no parallel blocks
  // Independent switches of different CPUs run at once (vmm/replay/parallel_blocks.h); off, one CPU
  // at a time in the trace's order.
  bool parallel_blocks = true;
  int verify_every = 1000;  // a full verification after every this many program steps (0: end only)
  // How long before its trace line a flush's tlb_gen increment counts as done (see Order()):
  // 1 ns puts it before whatever another CPU traced in the same microsecond (the trace clock's
  // resolution), and after anything earlier. Leads of 1.5 us and more make the mmap/munmap
  // captures worse (a switch traced 1-2 us before the flush line did not see it).
  int64_t increment_lead_ns = 1;
};

// Builds the program. Fails (kInvalidArgument, naming the trace) only when the trace needs
// more CPUs, tasks or mms than the guest has.
absl::StatusOr<ReplayPlan> PlanReplay(const TraceDir& dir, const ReplayPlanOptions& options);

}  // namespace activemm

#endif  // ACTIVEMM_VMM_REPLAY_REPLAY_PLAN_H_
