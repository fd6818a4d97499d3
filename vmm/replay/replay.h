// `activemm replay`: a real trace's events replayed in trace order on the vCPUs (replay_plan.h),
// then scored against what the traced kernel did. The answer is in the trace: a sched_switch
// loaded CR3 when the next event on its CPU is tlb_flush reason 0 ("flush on task switch") with
// the flags d..2. that switch_mm_irqs_off inside __schedule shows; pages:-1 means that load
// flushed the TLB, pages:0 that PCID kept it.
#ifndef ACTIVEMM_VMM_REPLAY_REPLAY_H_
#define ACTIVEMM_VMM_REPLAY_REPLAY_H_

#include <stdint.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "vmm/kvm/kvm.h"
#include "vmm/kvm/kvm_host.h"
#include "vmm/model/scenario_run.h"
#include "vmm/replay/replay_plan.h"
#include "vmm/replay/trace.h"

namespace activemm {

// What the traced kernel did at one sched_switch.
enum class Truth {
  kUnknown,  // the trace ends, or lost events, before the next event on that CPU
  kNoLoad,
  kLoad,
};

struct SwitchOutcome {
  Truth truth = Truth::kUnknown;
  bool truth_flush = false;
  int truth_line = 0;   // the line the truth comes from (0 when unknown)
  bool placed = false;  // the switch ran as a step of the guest
  bool cr3_load = false;
  bool flush = false;
};

struct ReplayScore {
  int switches = 0;  // sched_switch lines
  int placed = 0;
  int unplaced = 0;
  int scored = 0;  // placed and with a known truth
  int truth_unknown = 0;
  int real_loads = 0;  // among scored
  int true_pos = 0, false_pos = 0, false_neg = 0, true_neg = 0;
  int flush_right = 0, flush_wrong = 0;  // among true positives
  double precision() const;
  double recall() const;
  double flush_accuracy() const;
};

// Derives the truth of every switch from the trace (reason-0 lines are read here only).
std::vector<SwitchOutcome> TraceTruth(const Trace& trace,
                                      const std::vector<ReplaySwitch>& switches);

ReplayScore Score(const std::vector<SwitchOutcome>& outcomes);

struct ReplayResult {
  ReplayPlan plan;
  ScenarioReport report;                // the guest run: counters, violations, step results
  std::vector<SwitchOutcome> outcomes;  // parallel to plan.switches
  ReplayScore score;
  double seconds = 0;        // wall time of the guest run
  double parse_seconds = 0;  // reading and parsing the folder (set by the caller who loaded it)
  double plan_seconds = 0;   // PlanReplay
  // How the traced kernel's PCID use and lazy-TLB flavour were decided: by a flag, by the
  // folder's machine.txt, or assumed (said so, for a folder without one).
  std::string traced_machine;
};

struct ReplayOptions {
  ScenarioRunOptions run;
  ReplayPlanOptions plan;
};

// What the replay takes the traced kernel to be where the user's flags (`--pcid`, `--lazy-tlb`:
// pcid_flag, lazy_flag) leave it open: PCID used or not (without it every CR3 load flushes),
// and its lazy-TLB flavour, from the folder's machine.txt (activemm capture writes it), else
// assumed. Sets ro->pcid and ro->lazy accordingly; returns the sentence the report prints.
std::string ConfigureForTracedMachine(const MachineFacts& m, bool pcid_flag, bool lazy_flag,
                                      ScenarioRunOptions* ro);

absl::StatusOr<ReplayResult> RunReplay(const Kvm& kvm, const TraceDir& dir,
                                       const ReplayOptions& options);

// "line,cpu,prev_pid,next_pid,cr3_load,flush" and a row per sched_switch (empty cr3_load and
// flush when the switch was not placed).
std::string DecisionsCsv(const ReplayResult& r);
// Every program step the replay ran: "step,line,op,cpu,task,mm,cr3_load,flush" (line 0 for
// the final verification), to follow what the emulator did between two switches.
std::string PlanCsv(const ReplayResult& r, const Trace& trace);
std::string FormatReplay(const TraceDir& dir, const ReplayResult& r);
// The first `n` disagreements with the trace lines around each.
std::string FormatDisagreements(const TraceDir& dir, const ReplayResult& r, int n);
std::string ReplayJson(const TraceDir& dir, const ReplayResult& r, const KvmHost& host);

}  // namespace activemm

#endif  // ACTIVEMM_VMM_REPLAY_REPLAY_H_
