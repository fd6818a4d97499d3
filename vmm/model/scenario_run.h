// Runs a compiled scenario on a fresh VM with the verifier on, and reports what happened.
#ifndef ACTIVEMM_VMM_MODEL_SCENARIO_RUN_H_
#define ACTIVEMM_VMM_MODEL_SCENARIO_RUN_H_

#include <stdint.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "shared/mm_abi.h"
#include "vmm/kvm/kvm.h"
#include "vmm/kvm/runner.h"
#include "vmm/model/mm_verifier.h"
#include "vmm/model/scenario.h"

namespace activemm {

struct ScenarioRunOptions {
  abi::LazyMode lazy = abi::LazyMode::kOn;
  abi::PcidMode pcid = abi::PcidMode::kModeled;
  uint32_t asids = abi::kDefaultAsids;
  abi::MmBug bug = abi::MmBug::kNone;
  uint64_t mem_bytes = abi::kDefaultMemBytes;
  absl::Duration timeout = absl::Seconds(30);
  bool verbose = false;
  // Non-empty: while the guest runs, a progress line "LABEL: step N/M" is kept up to date on
  // stderr (for terminals; main() leaves it empty in CI and when stderr is not a terminal).
  std::string progress_label;
  int profile_hz = 0;  // RunOptions::profile_hz
  // Each step's record also gets the CPU's state and TSC span (abi::ScenarioHeader::step_state):
  // what a timeline needs, and only a timeline.
  bool record_step_state = false;
};

struct MmReport {
  std::string name;
  int64_t mm_users = 0;
  int64_t mm_count = 0;
  bool freed = false;
};

struct ScenarioReport {
  std::string scenario;
  abi::LazyMode lazy = abi::LazyMode::kOn;
  abi::PcidMode pcid = abi::PcidMode::kModeled;
  uint32_t asids = abi::kDefaultAsids;
  std::vector<abi::MmCounters> cpus;
  abi::MmCounters totals{};
  // The scenario's expectations (`check` and `counters` steps that apply in this run's modes):
  // how many held, how many did not, and each value that differed ("CPU 0 cr3_writes is 3,
  // expected 2"). Apart from the invariants: a failed expectation says the scenario's author
  // and the emulator disagree, a violation that the emulated kernel broke a rule.
  int checks_passed = 0;
  int checks_failed = 0;
  std::vector<Violation> failed_expectations;
  std::vector<Violation> violations;  // invariants the verifier found broken
  std::vector<MmReport> mms;
  RunResult run;  // how the guest run ended
  int steps_done = 0;
  int steps_total = 0;
  // Per program step (all zero: not executed); beyond `result`, zero unless
  // ScenarioRunOptions::record_step_state.
  std::vector<abi::StepRecord> step_records;
  uint64_t tsc_khz = 0;  // the guest TSC's rate (0: unknown)
  // Full verifications (reading the model and checking every rule) and the host time they took,
  // while every vCPU waited.
  int verifications = 0;
  double verify_seconds = 0;
  // Interrupts the guest took inside STI's shadow, resumed after the HLT (abi::StepLoopCpu):
  // a quirk of the host's emulation (docs/hosts.md), 0 on hardware.
  uint64_t shadow_interrupts = 0;

  // Exit status 0 only when the run completed, every check passed and nothing was violated.
  bool ok() const {
    return run.outcome == Outcome::kCompleted && checks_failed == 0 && violations.empty() &&
           failed_expectations.empty();
  }
};

const char* LazyModeName(abi::LazyMode m);  // "on", "off", "shootdown"
const char* PcidModeName(abi::PcidMode m);  // "off", "modeled", "hardware"

absl::StatusOr<ScenarioReport> RunScenarioOnKvm(const Kvm& kvm, const Scenario& scenario,
                                                const ScenarioRunOptions& options);

}  // namespace activemm

#endif  // ACTIVEMM_VMM_MODEL_SCENARIO_RUN_H_
