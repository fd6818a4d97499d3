#include "vmm/tools/timeline.h"

#include <algorithm>
#include <map>
#include <string_view>

#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"

namespace activemm {
namespace {

using nlohmann::json;

// Trace-event timestamps are microseconds; the runs keep nanoseconds until they are written.
double Us(int64_t ns) { return static_cast<double>(ns) / 1000.0; }

// Guest TSCs and trace timestamps are not trusted: times are kept within +-kMaxNs (36 years),
// so that no arithmetic below overflows. A guest step record with a TSC near 2^64 made the
// conversion to nanoseconds overflow int64_t (found by tests/fuzz/guest_memory_fuzz).
constexpr int64_t kMaxNs = int64_t{1} << 60;
int64_t ClampNs(int64_t ns) { return std::clamp(ns, -kMaxNs, kMaxNs); }

class EventWriter {
 public:
  void Process(int pid, const std::string& name, int sort) {
    Add({{"ph", "M"},
         {"pid", pid},
         {"tid", 0},
         {"name", "process_name"},
         {"args", {{"name", name}}}});
    Add({{"ph", "M"},
         {"pid", pid},
         {"tid", 0},
         {"name", "process_sort_index"},
         {"args", {{"sort_index", sort}}}});
  }
  void Thread(int pid, int tid, const std::string& name) {
    Add({{"ph", "M"},
         {"pid", pid},
         {"tid", tid},
         {"name", "thread_name"},
         {"args", {{"name", name}}}});
    Add({{"ph", "M"},
         {"pid", pid},
         {"tid", tid},
         {"name", "thread_sort_index"},
         {"args", {{"sort_index", tid}}}});
  }
  void Slice(int pid, int tid, const std::string& name, const char* cat, int64_t begin_ns,
             int64_t end_ns, json args) {
    Add({{"ph", "X"},
         {"pid", pid},
         {"tid", tid},
         {"name", name},
         {"cat", cat},
         {"ts", Us(begin_ns)},
         {"dur", Us(std::max<int64_t>(end_ns - begin_ns, 1))},
         {"args", std::move(args)}});
  }
  void Instant(int pid, int tid, const std::string& name, const char* cat, int64_t ns, json args) {
    Add({{"ph", "i"},
         {"s", "t"},
         {"pid", pid},
         {"tid", tid},
         {"name", name},
         {"cat", cat},
         {"ts", Us(ns)},
         {"args", std::move(args)}});
  }
  // An arrow from one track to another (flow events bind to the slices around them).
  void Arrow(int pid, int from_tid, int64_t from_ns, int to_tid, int64_t to_ns,
             const std::string& name) {
    const int id = next_flow_++;
    Add({{"ph", "s"},
         {"id", id},
         {"pid", pid},
         {"tid", from_tid},
         {"name", name},
         {"cat", "ipi"},
         {"ts", Us(from_ns)}});
    Add({{"ph", "f"},
         {"bp", "e"},
         {"id", id},
         {"pid", pid},
         {"tid", to_tid},
         {"name", name},
         {"cat", "ipi"},
         {"ts", Us(to_ns)}});
  }
  // The document: the object as json::dump writes it (keys sorted), around the events.
  std::string Take() && {
    out_ += "]}\n";
    return std::move(out_);
  }

 private:
  // Each event is written as it comes: a long replay has millions, and a json array of them
  // took ten times the memory of their text.
  void Add(const json& event) {
    if (out_.size() > kHead.size()) out_ += ',';
    // Task names come from the trace, whose comms are any bytes (not UTF-8: dump() threw,
    // found by tests/fuzz/replay_planner_fuzz); a bad sequence is written as U+FFFD.
    out_ += event.dump(-1, ' ', false, json::error_handler_t::replace);
  }

  static constexpr std::string_view kHead = R"({"displayTimeUnit":"ms","traceEvents":[)";
  std::string out_{kHead};
  int next_flow_ = 1;
};

// What one CPU track shows at a time: its task, loaded mm and lazy state, as an open slice.
struct CpuTrack {
  bool open = false;
  int64_t since_ns = 0;
  int32_t task = abi::kNoTask;
  int32_t mm = abi::kInitMm;
  bool lazy = false;
};

class RunTimeline {
 public:
  RunTimeline(EventWriter& w, int pid, const TimelineRun& run, int64_t t0_ns)
      : w_(w), pid_(pid), run_(run), t0_ns_(t0_ns) {}

  void Write() {
    const Scenario& sc = *run_.scenario;
    const std::vector<abi::StepRecord>& rec = run_.report->step_records;
    w_.Process(pid_, run_.label, pid_);
    tracks_.assign(sc.cpus, CpuTrack{});
    for (const abi::StepRecord& r : rec) {  // the TSC clock starts at the first step run
      if ((r.result & abi::kStepExecuted) && r.tsc_begin != 0) {
        first_tsc_ = r.tsc_begin;
        break;
      }
    }
    for (int c = 0; c < sc.cpus; ++c) {
      w_.Thread(pid_, c, absl::StrFormat("CPU %d", c));
      // Every CPU starts in its idle task on init_mm (the guest's boot state).
      tracks_[c] = {true, 0, static_cast<int32_t>(c), abi::kInitMm, false};
    }
    const size_t n = std::min(sc.program.size(), rec.size());
    int64_t last_ns = 0;
    int64_t prev_time = INT64_MIN;
    for (size_t i = 0; i < n; ++i) {
      const abi::StepRecord& r = rec[i];
      if (!(r.result & abi::kStepExecuted)) continue;
      const abi::Step& s = sc.program[i];
      if (s.cpu >= static_cast<uint32_t>(sc.cpus)) continue;
      int64_t begin = Begin(i, r), end = End(i, r);
      // Steps on one clock tick keep their program order.
      if (begin <= prev_time) {
        end += prev_time + 1 - begin;
        begin = prev_time + 1;
      }
      end = std::min(std::max(end, begin + 1), kMaxNs);
      begin = std::min(begin, end - 1);
      prev_time = end;
      last_ns = std::max(last_ns, end);
      Step(static_cast<int>(i), s, r, begin, end);
    }
    for (int c = 0; c < sc.cpus; ++c) Close(c, last_ns);
  }

 private:
  int64_t Begin(size_t i, const abi::StepRecord& r) const {
    if (!run_.step_time_ns.empty()) return ClampNs(run_.step_time_ns[i] - t0_ns_);
    return TscNs(r.tsc_begin);
  }
  int64_t End(size_t i, const abi::StepRecord& r) const {
    if (!run_.step_time_ns.empty()) return ClampNs(run_.step_time_ns[i] - t0_ns_) + 1;
    return TscNs(r.tsc_end);
  }
  int64_t TscNs(uint64_t tsc) const {
    const uint64_t khz = run_.report->tsc_khz != 0 ? run_.report->tsc_khz : 1000000;
    const uint64_t d = tsc > first_tsc_ ? tsc - first_tsc_ : 0;
    const long double ns = static_cast<long double>(d) * 1e6L / khz;
    return ns >= kMaxNs ? kMaxNs : static_cast<int64_t>(ns);
  }

  std::string TaskName(int32_t t) const {
    const std::vector<std::string>& names = run_.scenario->task_names;
    return t >= 0 && t < static_cast<int32_t>(names.size()) ? names[t] : "?";
  }
  std::string MmName(int32_t m) const {
    const std::vector<std::string>& names = run_.scenario->mm_names;
    return m >= 0 && m < static_cast<int32_t>(names.size()) ? names[m] : "?";
  }

  void Close(int cpu, int64_t at) {
    CpuTrack& t = tracks_[cpu];
    if (!t.open) return;
    std::string name = TaskName(t.task);
    if (t.lazy) {
      name += " (lazy on " + MmName(t.mm) + ")";
    } else if (t.mm != abi::kInitMm || t.task >= run_.scenario->cpus) {
      name += " [" + MmName(t.mm) + "]";
    }
    w_.Slice(pid_, cpu, name, t.lazy ? "lazy" : "task", t.since_ns, at,
             {{"task", TaskName(t.task)}, {"loaded_mm", MmName(t.mm)}, {"lazy", t.lazy}});
    t.open = false;
  }

  // The CPU's state changed at `at`: the slice so far ends there and a new one begins.
  void Set(int cpu, int64_t at, int32_t task, int32_t mm, bool lazy) {
    CpuTrack& t = tracks_[cpu];
    if (t.open && t.task == task && t.mm == mm && t.lazy == lazy) return;
    Close(cpu, at);
    t = {true, at, task, mm, lazy};
  }

  void Step(int i, const abi::Step& s, const abi::StepRecord& r, int64_t begin, int64_t end) {
    const int cpu = static_cast<int>(s.cpu);
    const std::string op = StepOpName(s.op);
    json where = {{"step", i}, {"op", op}};
    if (s.index < run_.scenario->step_ops.size())
      where["source"] = run_.scenario->step_ops[s.index];
    if (r.result & abi::kStepCr3Load) {
      const bool flush = r.result & abi::kStepCr3Flush;
      w_.Instant(pid_, cpu, flush ? "CR3 load (flush)" : "CR3 load (TLB kept)", "cr3", end,
                 {{"mm", MmName(r.loaded_mm)}, {"step", where}});
    }
    for (uint64_t m = r.ipi_cpus; m != 0; m &= m - 1) {
      const int target = __builtin_ctzll(m);
      if (target >= run_.scenario->cpus) continue;
      w_.Arrow(pid_, cpu, begin, target, end, "flush IPI");
      w_.Instant(pid_, cpu, absl::StrFormat("flush IPI -> CPU %d", target), "ipi", begin, where);
    }
    // Other CPUs that a flush IPI sent to init_mm (this CPU's own leave_mm is its CR3 load
    // above): each is a CR3 load there.
    for (uint64_t m = r.leave_mm_cpus & ~(uint64_t{1} << cpu); m != 0; m &= m - 1) {
      const int c = __builtin_ctzll(m);
      if (c >= run_.scenario->cpus) continue;
      w_.Instant(pid_, c, "CR3 load (leave_mm: init_mm)", "cr3", end, where);
      Set(c, end, tracks_[c].task, abi::kInitMm, false);
    }
    Set(cpu, end, r.curr, r.loaded_mm, r.is_lazy != 0);
  }

  EventWriter& w_;
  const int pid_;
  const TimelineRun& run_;
  const int64_t t0_ns_;
  std::vector<CpuTrack> tracks_;
  uint64_t first_tsc_ = 0;
};

// The traced kernel's CPUs: who ran (sched_switch), its CR3 loads (reason 0) and flush IPIs
// (reason 4), on the trace's clock.
void KernelTimeline(EventWriter& w, int pid, const Trace& trace, const std::string& label,
                    int64_t t0_ns) {
  w.Process(pid, label, pid);
  struct Open {
    bool open = false;
    int64_t since = 0;
    std::string name;
  };
  std::vector<Open> open(trace.num_cpus);
  for (int c = 0; c < trace.num_cpus; ++c) w.Thread(pid, c, absl::StrFormat("CPU %d", c));
  int64_t last = 0;
  for (const TraceEvent& e : trace.events) {
    if (e.cpu < 0 || e.cpu >= trace.num_cpus || e.kind == TraceEventKind::kLost) continue;
    const int64_t t = ClampNs(e.timestamp_ns - t0_ns);
    last = std::max(last, t);
    json where = {{"line", e.line}};
    if (e.kind == TraceEventKind::kSwitch) {
      Open& o = open[e.cpu];
      const std::string prev = absl::StrFormat("%s-%d", e.prev_comm, e.prev_pid);
      // The task that ran up to here: the open slice, or (first switch on the CPU, or one after
      // an untraced switch) the prev task from the trace's start.
      if (o.open) {
        w.Slice(pid, e.cpu, o.name, "task", o.since, t, where);
      } else if (t > 0) {
        w.Slice(pid, e.cpu, prev, "task", 0, t, where);
      }
      o = {true, t, absl::StrFormat("%s-%d", e.next_comm, e.next_pid)};
    } else if (e.kind == TraceEventKind::kFlush && e.reason == FlushReason::kTaskSwitch) {
      w.Instant(pid, e.cpu, e.pages == -1 ? "CR3 load (flush)" : "CR3 load (TLB kept)", "cr3", t,
                {{"line", e.line}, {"flags", e.flags}});
    } else if (e.kind == TraceEventKind::kFlush && e.reason == FlushReason::kRemoteSendIpi) {
      w.Instant(pid, e.cpu, "flush IPIs sent", "ipi", t, {{"line", e.line}, {"pages", e.pages}});
    }
  }
  for (int c = 0; c < trace.num_cpus; ++c) {
    if (open[c].open)
      w.Slice(pid, c, open[c].name, "task", open[c].since, last + 1, json::object());
  }
}

}  // namespace

std::string TimelineJson(const std::vector<TimelineRun>& runs, const Trace* trace,
                         const std::string& trace_label) {
  EventWriter w;
  int64_t t0 = 0;
  if (trace != nullptr) {
    for (const TraceEvent& e : trace->events) {
      if (e.kind != TraceEventKind::kLost) {
        t0 = e.timestamp_ns;
        break;
      }
    }
  }
  int pid = 1;
  for (const TimelineRun& run : runs) {
    if (run.scenario == nullptr || run.report == nullptr) continue;
    RunTimeline(w, pid++, run, t0).Write();
  }
  if (trace != nullptr) KernelTimeline(w, pid, *trace, trace_label, t0);
  return std::move(w).Take();
}

std::string ReplayTimeline(const TraceDir& dir, const ReplayResult& r) {
  TimelineRun run;
  run.label = absl::StrFormat("activemm replay: lazy %s, PCID %s", LazyModeName(r.report.lazy),
                              PcidModeName(r.report.pcid));
  run.scenario = &r.plan.scenario;
  run.report = &r.report;
  const std::vector<TraceEvent>& ev = dir.trace.events;
  int64_t last = 0;
  for (const abi::Step& s : r.plan.scenario.program) {
    if (s.index < ev.size()) last = ev[s.index].timestamp_ns;
    run.step_time_ns.push_back(last);
  }
  return TimelineJson({run}, &dir.trace, "Linux (the trace): " + dir.kernel_release);
}

}  // namespace activemm
