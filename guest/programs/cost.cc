// The cost benchmark (Program::kCost, shared/cost_abi.h): CPU 0 switches between a few tasks
// through the model's context_switch() and brackets each measured switch with two kMark
// hypercalls, at which the host reads the vCPU's statistics; the guest reports the TSC cycles
// in between with the second mark.
//
// Every task of the benchmark runs the same loop, CostLoop: close the measurement that the
// switch into it opened, take the next switch of the plan, open its measurement, switch. Because
// the loop is the same code in every task, the code around a measured switch is exactly the
// code around an empty mark pair (kCalibration, where the "switch" is to the running task and
// is skipped), so the host can subtract the markers' cost. User tasks run no ring-3 burst
// (ModelConfig::user_bursts): the benchmark measures context_switch() alone, from the call in
// the previous task to its return in the next one (finish_task_switch included).
#include "guest/arch/cpu.h"
#include "guest/arch/hypercall.h"
#include "guest/kernel/model.h"
#include "shared/cost_abi.h"

namespace activemm::guest {
namespace {

using abi::CostCase;

constexpr int32_t kMmA = 1;  // process A and its thread A2
constexpr int32_t kMmB = 2;  // process B

// A pair of tasks switched back and forth: x -> y is `there`, y -> x is `back` (measured only
// when back_measured; otherwise it just returns to x for the next round).
struct Pair {
  int32_t x;
  int32_t y;
  CostCase there;
  CostCase back;
  bool back_measured;
};
constexpr uint32_t kNumPairs = 4;

// The next switch of the plan. next == the running task: no switch (a calibration round).
struct Switch {
  int32_t next;
  CostCase cost_case;
  uint32_t iteration;
  bool measured;
};

// Where the plan is. Global, not local: the loop runs in every task's frame in turn.
struct Cursor {
  uint32_t stage;  // 0: calibration; 1..kNumPairs: pairs[stage - 1]; then done
  uint32_t round;  // kCostWarmupRounds unmeasured, then the measured iterations
  uint32_t leg;    // pairs: 0 = there, 1 = back
  bool entered;    // pairs: x is running
};

// The measurement a begin mark opened, closed by the task the switch resumes.
struct Pending {
  bool open;
  CostCase cost_case;
  uint32_t iteration;
  uint64_t cr3_writes;  // counters().cr3_writes at the begin mark
  uint64_t tsc;         // read last before the switch
};

constinit Pair pairs[kNumPairs] = {};
constinit Cursor cursor = {};
constinit Pending pending = {};
constinit uint32_t iterations = 0;

Switch Measured(int32_t next, CostCase c, uint32_t round, bool measured) {
  const bool after_warmup = round >= abi::kCostWarmupRounds;
  return {next, c, after_warmup ? round - abi::kCostWarmupRounds : 0, measured && after_warmup};
}

Switch NextSwitch() {
  const uint32_t rounds = abi::kCostWarmupRounds + iterations;
  for (;;) {
    Cursor& c = cursor;
    if (c.stage == 0) {
      if (c.round < rounds) {
        return Measured(this_rq()->curr, CostCase::kCalibration, c.round++, true);
      }
    } else if (c.stage <= kNumPairs) {
      const Pair& p = pairs[c.stage - 1];
      if (!c.entered) {
        c.entered = true;
        return {p.x, CostCase::kCalibration, 0, false};
      }
      if (c.round < rounds) {
        if (c.leg == 0) {
          c.leg = 1;
          return Measured(p.y, p.there, c.round, true);
        }
        c.leg = 0;
        return Measured(p.x, p.back, c.round++, p.back_measured);
      }
    } else {
      return {abi::kNoTask, CostCase::kCalibration, 0, false};
    }
    ++c.stage;
    c.round = 0;
    c.leg = 0;
    c.entered = false;
  }
}

void Mark(abi::MarkKind kind, CostCase c, uint32_t iteration, uint64_t cycles,
          uint64_t cr3_writes) {
  abi::CpuMailbox* mb = this_cpu()->mailbox;
  mb->arg[0] = abi::MarkArg0(kind, c);
  mb->arg[1] = iteration;
  mb->arg[2] = cycles;
  mb->arg[3] = cr3_writes;
  Hypercall(abi::Hypercall::kMark);
}

void BeginMeasurement(const Switch& s) {
  pending.open = true;
  pending.cost_case = s.cost_case;
  pending.iteration = s.iteration;
  pending.cr3_writes = counters().cr3_writes;
  Mark(abi::MarkKind::kBegin, s.cost_case, s.iteration, 0, 0);
  pending.tsc = Rdtsc();  // last: the switch follows
}

void EndMeasurement(uint64_t tsc) {
  pending.open = false;
  Mark(abi::MarkKind::kEnd, pending.cost_case, pending.iteration, tsc - pending.tsc,
       counters().cr3_writes - pending.cr3_writes);
}

// ---- The floor: a bare CR3 write and a bare stack switch, in loops of kFloorOps ----------

constinit uint64_t floor_main_sp = 0;
constinit uint64_t floor_aux_sp = 0;
alignas(16) constinit uint8_t floor_aux_stack[4096] = {};

// The other side of a bare stack switch: switched to, it switches straight back.
[[noreturn]] void FloorAux() {
  for (;;) __switch_to_asm(&floor_aux_sp, floor_main_sp);
}

// One loop per case, the same loop around each operation (the case is a template argument, so
// no test of it is left inside the loop to differ between them).
template <CostCase c>
[[gnu::noinline]] void FloorLoop() {
  const uint64_t cr3 = ReadCr3();
  for (uint32_t k = 0; k < abi::kFloorOps; ++k) {
    if constexpr (c == CostCase::kBareCr3Write) {
      asm volatile("mov %0, %%cr3" ::"r"(cr3) : "memory");
    } else if constexpr (c == CostCase::kBareStackSwitch) {
      __switch_to_asm(&floor_main_sp, floor_aux_sp);
    } else {
      asm volatile("" ::"r"(cr3) : "memory");  // kFloorEmpty: the loop alone
    }
  }
}

// Every case reaches its loop through the same instructions (an indexed call), so the empty
// loop subtracts the dispatch exactly: a chain of compares costs each case a different number,
// and clang's layout of it put one more instruction before the CR3 loop than the empty one.
void FloorLoop(CostCase c) {
  static constexpr void (*kLoops[])() = {FloorLoop<CostCase::kFloorEmpty>,
                                         FloorLoop<CostCase::kBareCr3Write>,
                                         FloorLoop<CostCase::kBareStackSwitch>};
  const uint32_t i = static_cast<uint32_t>(c) - static_cast<uint32_t>(CostCase::kFloorEmpty);
  GUEST_CHECK_VALUES(i < 3, 1, uint64_t{i});
  kLoops[i]();
}

void MeasureFloor() {
  // FloorAux's first run: __switch_to_asm pops six registers and returns into it, with the
  // stack 8 off 16 as after a call.
  auto* top = reinterpret_cast<uint64_t*>(floor_aux_stack + sizeof floor_aux_stack);
  top[-2] = reinterpret_cast<uint64_t>(FloorAux);
  floor_aux_sp = reinterpret_cast<uint64_t>(top - 8);
  constexpr CostCase kFloorCases[] = {CostCase::kFloorEmpty, CostCase::kBareCr3Write,
                                      CostCase::kBareStackSwitch};
  for (CostCase c : kFloorCases) {
    for (uint32_t i = 0; i < abi::kCostWarmupRounds + iterations; ++i) {
      const bool measured = i >= abi::kCostWarmupRounds;
      const uint32_t iteration = measured ? i - abi::kCostWarmupRounds : 0;
      if (measured) Mark(abi::MarkKind::kBegin, c, iteration, 0, 0);
      const uint64_t tsc = Rdtsc();
      FloorLoop(c);
      const uint64_t cycles = Rdtsc() - tsc;
      if (measured) Mark(abi::MarkKind::kEnd, c, iteration, cycles, 0);
    }
  }
}

[[noreturn]] void CostLoop() {
  for (;;) {
    const uint64_t tsc = Rdtsc();  // first: the switch that resumed this task just returned
    if (pending.open) EndMeasurement(tsc);
    const Switch s = NextSwitch();
    if (s.next == abi::kNoTask) Done(0);
    if (s.measured) BeginMeasurement(s);
    if (s.next != this_rq()->curr) context_switch(s.next);
  }
}

}  // namespace

void RunCost() {
  Cli();  // no interrupt may land inside a measurement (nothing sends one on a single CPU)
  if (this_cpu()->cpu != 0) Done(0);
  const auto* h = static_cast<const abi::CostHeader*>(PhysToVirt(abi::kCostHeaderPa));
  GUEST_CHECK_VALUES(h->magic == abi::kCostMagic && h->iterations >= 1 &&
                         h->iterations <= abi::kMaxCostIterations && h->num_asids >= 1 &&
                         h->num_asids <= abi::kMaxAsids,
                     3, h->magic, uint64_t{h->iterations}, uint64_t{h->num_asids});
  model.lazy = static_cast<abi::LazyMode>(h->lazy_mode);
  model.pcid = static_cast<abi::PcidMode>(h->pcid_mode);
  model.num_asids = h->num_asids;
  model.user_bursts = false;
  model.new_task_start = CostLoop;
  iterations = h->iterations;

  init_mm_setup();
  sched_init_cpu();
  initialize_tlbstate();
  // The tasks: two processes A and B with one page each, a thread A2 of A, two kernel threads.
  // Task numbers below num_cpus are the CPUs' idle tasks.
  const int32_t first = static_cast<int32_t>(boot_params->num_cpus);
  const int32_t a = first, a2 = first + 1, b = first + 2, k = first + 3, k2 = first + 4;
  spawn_process(a, kMmA, 1);
  clone_vm_task(a2, a);
  spawn_process(b, kMmB, 1);
  task_create(k, abi::kPfKthread);
  task_create(k2, abi::kPfKthread);
  // K borrows A's mm (lazy) and hands it back; K <-> K2 hand the borrow over between them.
  pairs[0] = {a, k, CostCase::kUserToKernel, CostCase::kKernelToUser, true};
  pairs[1] = {a, b, CostCase::kUserToUser, CostCase::kUserToUser, false};
  pairs[2] = {a, a2, CostCase::kUserToUserSameMm, CostCase::kUserToUserSameMm, false};
  pairs[3] = {k, k2, CostCase::kKernelToKernel, CostCase::kKernelToKernel, false};
  MeasureFloor();
  CostLoop();
}

}  // namespace activemm::guest
