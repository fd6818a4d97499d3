// --timeline: a run as a Chrome/Perfetto trace-event file (JSON; opens in ui.perfetto.dev and
// chrome://tracing). Each run is a process and each of its CPUs one track (thread) showing the
// running task as slices (named with the loaded mm, and marked when the CPU is lazy), CR3 loads
// and leave_mm as instants, and flush IPIs as arrows between CPU tracks. A replay adds the
// traced kernel's own CPUs as another process on the same time axis.
#ifndef ACTIVEMM_VMM_TOOLS_TIMELINE_H_
#define ACTIVEMM_VMM_TOOLS_TIMELINE_H_

#include <stdint.h>

#include <string>
#include <vector>

#include "vmm/model/scenario.h"
#include "vmm/model/scenario_run.h"
#include "vmm/replay/replay.h"
#include "vmm/replay/trace.h"

namespace activemm {

struct TimelineRun {
  std::string label;  // the process name, e.g. "activemm: lazy on, PCID modeled"
  const Scenario* scenario = nullptr;
  const ScenarioReport* report = nullptr;  // its step_records give the times and states
  // A replay's steps on the trace's clock: the trace timestamp (ns) of each step's event.
  // Empty: the guest's TSC (step_records' tsc_begin / tsc_end).
  std::vector<int64_t> step_time_ns;
};

// The trace-event JSON of `runs`, and of `trace`'s CPUs when it is not null.
std::string TimelineJson(const std::vector<TimelineRun>& runs, const Trace* trace,
                         const std::string& trace_label);

// The --timeline file of a replay: the emulator's CPUs and the traced kernel's, on the trace's
// clock.
std::string ReplayTimeline(const TraceDir& dir, const ReplayResult& r);

}  // namespace activemm

#endif  // ACTIVEMM_VMM_TOOLS_TIMELINE_H_
