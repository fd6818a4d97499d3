// Scenarios: the JSON file format (docs/scenarios.md), its validation, and its compilation into
// the step program the guest executes (shared/mm_abi.h). Validation replays the scenario on a
// small host-side model of who runs where, so a step Linux could not do is rejected before the
// guest starts, with the step's index and the reason.
#ifndef ACTIVEMM_VMM_MODEL_SCENARIO_H_
#define ACTIVEMM_VMM_MODEL_SCENARIO_H_

#include <stdint.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "shared/mm_abi.h"

namespace activemm {

// The names of the counters in abi::MmCounters, in field order ("context_switches", ...).
const std::vector<std::string>& MmCounterNames();

// A model step of a program: no parent, no mm, verified after when verify_after (the caller
// fills in the rest); index names the source event or file step it comes from.
abi::Step ModelStep(abi::StepOp op, int cpu, int32_t task, uint32_t index, bool verify_after);

// A program step's op as the file spells it ("run", "clone_vm", ...; "flush" for a replay's
// flush_tlb_mm_range), "?" for an unknown value.
const char* StepOpName(uint32_t op);

// A mode's bit in HostCheck's mode sets.
constexpr uint32_t ModeBit(abi::LazyMode m) { return 1u << static_cast<uint32_t>(m); }
constexpr uint32_t ModeBit(abi::PcidMode m) { return 1u << static_cast<uint32_t>(m); }
constexpr uint32_t kEveryLazyMode =
    ModeBit(abi::LazyMode::kOn) | ModeBit(abi::LazyMode::kShootdown) | ModeBit(abi::LazyMode::kOff);
constexpr uint32_t kEveryPcidMode = ModeBit(abi::PcidMode::kHardware) |
                                    ModeBit(abi::PcidMode::kModeled) | ModeBit(abi::PcidMode::kOff);

// One host verification point: a `check`, `counters` or `checkpoint` step of the file, or the
// final verification the compiler appends.
struct HostCheck {
  enum class Kind { kCheck, kCounters, kCheckpoint, kFinal };
  Kind kind = Kind::kCheckpoint;
  int step_index = -1;  // index in the file's steps (-1 for kFinal)
  // The modes the check holds in ("lazy_tlb" and "pcid" filters): bit ModeBit(mode) is set
  // for every mode it applies to; every mode by default.
  uint32_t lazy_modes = kEveryLazyMode;
  uint32_t pcid_modes = kEveryPcidMode;

  // kCheck: exactly one of mm_slot / task is set.
  std::optional<int32_t> mm_slot;  // "mm": a slot number (see Scenario::mm_names)
  std::optional<int32_t> task;     // "task": that task's active_mm at this point
  std::optional<int64_t> mm_users;
  std::optional<int64_t> mm_count;
  std::optional<bool> freed;
  std::optional<std::vector<int>> loaded_on;  // sorted CPU numbers
  std::optional<std::vector<int>> lazy_on;    // sorted CPU numbers

  // kCounters: expected values by counter name; cpu unset means the totals.
  std::optional<int> cpu;
  std::map<std::string, uint64_t> counters;

  // Whether this check applies to a run in these modes.
  bool AppliesTo(abi::LazyMode lazy, abi::PcidMode pcid) const {
    return (lazy_modes & ModeBit(lazy)) != 0 && (pcid_modes & ModeBit(pcid)) != 0;
  }
};

// What each step of the source was, for reports ("after step 5 (exec)"): a scenario file's
// op names, or a replayed trace's events ("line 812: sched_switch"). A trace has millions of
// events: each is kept as its line number and a constant name, not as a string of its own.
class StepSources {
 public:
  void AddOp(std::string op) { ops_.push_back(std::move(op)); }
  void AddTraceLine(int line, const char* event) { lines_.push_back({line, event}); }
  size_t size() const { return ops_.size() + lines_.size(); }
  // The ops first, then the trace lines (a source has one kind or the other).
  std::string operator[](size_t i) const;

 private:
  struct TraceLine {
    int line;
    const char* event;  // a constant: TraceEventKindName
  };
  std::vector<std::string> ops_;
  std::vector<TraceLine> lines_;
};

struct Scenario {
  std::string name;
  int cpus = 1;
  bool lazy_tlb = true;
  std::string source;  // file name, for messages
  // The compiled form, valid for `cpus` CPUs.
  std::vector<abi::Step> program;       // model steps and kVerify steps (arg = checks index)
  std::vector<HostCheck> checks;        // referenced by kVerify steps; the last one is kFinal
  std::vector<std::string> task_names;  // task index -> name; 0..cpus-1 are "idle/N"
  std::vector<std::string> mm_names;    // mm slot -> name; 0 is "init_mm"
  StepSources step_ops;                 // file step index -> what it was, for reports
};

struct CompileOptions {
  std::optional<int> cpus;  // --cpus: overrides the file's "cpus" (must cover every CPU used)
  bool verify_every_step = false;  // --verify=every-step: kStepVerifyAfter on every model step
  // The longest program accepted (tests lower it to reach the limit cheaply).
  uint32_t max_steps = abi::kMaxProgramSteps;
};

// Parses and validates `json_text` (from `source`, used in messages) and compiles it. Errors
// are kInvalidArgument with one message naming the source, the step index and op, and the
// reason, e.g. "a.json: step 4 (exec): task 'B' is not running on any CPU".
absl::StatusOr<Scenario> CompileScenario(const std::string& json_text, const std::string& source,
                                         const CompileOptions& options);

// The built-in scenario `activemm run` and `activemm compare` use when given none.
const char* DefaultScenarioJson();

}  // namespace activemm

#endif  // ACTIVEMM_VMM_MODEL_SCENARIO_H_
