#include "vmm/replay/replay.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <string_view>

#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "vmm/model/report.h"

namespace activemm {
namespace {

double Ratio(int num, int den) { return den == 0 ? 1.0 : static_cast<double>(num) / den; }

// The flags switch_mm_irqs_off shows when __schedule calls it: irqs off, no hardirq, preempt
// depth 2. The same event from exec's activate_mm (d..1.) or a flush IPI's leave_mm (d.h1.)
// is a CR3 load too, but not a switch's.
bool IsSwitchLoad(const TraceEvent& e) {
  return e.kind == TraceEventKind::kFlush && e.reason == FlushReason::kTaskSwitch &&
         e.flags.size() == 5 && e.flags[0] == 'd' && e.flags[2] == '.' && e.flags[3] == '2';
}

const char* Yes(bool b) { return b ? "yes" : "no"; }

// A disagreement's class, for the summary and --explain.
std::string Disagreement(const ReplaySwitch& s, const SwitchOutcome& o) {
  if (o.truth == Truth::kLoad && !o.cr3_load) return absl::StrFormat("missed load, %s", s.kind);
  if (o.truth == Truth::kNoLoad && o.cr3_load) return absl::StrFormat("extra load, %s", s.kind);
  if (o.truth == Truth::kLoad && o.flush != o.truth_flush) {
    return absl::StrFormat(
        "%s, %s", o.flush ? "flushed, the kernel kept the TLB" : "kept, the kernel flushed",
        s.kind);
  }
  return "";
}

}  // namespace

double ReplayScore::precision() const { return Ratio(true_pos, true_pos + false_pos); }
double ReplayScore::recall() const { return Ratio(true_pos, true_pos + false_neg); }
double ReplayScore::flush_accuracy() const { return Ratio(flush_right, flush_right + flush_wrong); }

std::vector<SwitchOutcome> TraceTruth(const Trace& trace,
                                      const std::vector<ReplaySwitch>& switches) {
  // The next event on each event's CPU, found in one backwards pass.
  const std::vector<TraceEvent>& ev = trace.events;
  std::vector<int> next(ev.size(), -1);
  std::map<int, int> seen;  // cpu -> the nearest later event
  for (int i = static_cast<int>(ev.size()) - 1; i >= 0; --i) {
    auto it = seen.find(ev[i].cpu);
    if (it != seen.end()) next[i] = it->second;
    seen[ev[i].cpu] = i;
  }
  std::vector<SwitchOutcome> out(switches.size());
  // A trace without a single CR3 load event was recorded without them (or had them removed):
  // there is nothing to score against, rather than "no switch loaded CR3".
  const bool has_loads = std::any_of(ev.begin(), ev.end(), [](const TraceEvent& e) {
    return e.kind == TraceEventKind::kFlush && e.reason == FlushReason::kTaskSwitch;
  });
  if (!has_loads) return out;
  for (size_t k = 0; k < switches.size(); ++k) {
    const int j = next[switches[k].event];
    SwitchOutcome& o = out[k];
    if (j < 0 || ev[j].kind == TraceEventKind::kLost) continue;  // unknown
    o.truth_line = ev[j].line;
    if (IsSwitchLoad(ev[j])) {
      o.truth = Truth::kLoad;
      o.truth_flush = ev[j].pages == -1;
    } else {
      o.truth = Truth::kNoLoad;
    }
  }
  return out;
}

ReplayScore Score(const std::vector<SwitchOutcome>& outcomes) {
  ReplayScore s;
  for (const SwitchOutcome& o : outcomes) {
    ++s.switches;
    if (!o.placed) {
      ++s.unplaced;
      continue;
    }
    ++s.placed;
    if (o.truth == Truth::kUnknown) {
      ++s.truth_unknown;
      continue;
    }
    ++s.scored;
    const bool real = o.truth == Truth::kLoad;
    if (real) ++s.real_loads;
    if (real && o.cr3_load) {
      ++s.true_pos;
      if (o.flush == o.truth_flush) {
        ++s.flush_right;
      } else {
        ++s.flush_wrong;
      }
    }
    if (!real && o.cr3_load) ++s.false_pos;
    if (real && !o.cr3_load) ++s.false_neg;
    if (!real && !o.cr3_load) ++s.true_neg;
  }
  return s;
}

absl::StatusOr<ReplayResult> RunReplay(const Kvm& kvm, const TraceDir& dir,
                                       const ReplayOptions& options) {
  ReplayResult r;
  const auto plan_start = std::chrono::steady_clock::now();
  ReplayPlanOptions plan_options = options.plan;
  // The step loop's test hooks (MmBug from kSlowSteps on) fire only between steps run one at a
  // time: with one planted, no parallel blocks.
  if (options.run.bug >= abi::MmBug::kSlowSteps) plan_options.parallel_blocks = false;
  absl::StatusOr<ReplayPlan> plan = PlanReplay(dir, plan_options);
  if (!plan.ok()) return plan.status();
  r.plan = *std::move(plan);
  const auto start = std::chrono::steady_clock::now();
  r.plan_seconds = std::chrono::duration<double>(start - plan_start).count();
  absl::StatusOr<ScenarioReport> report = RunScenarioOnKvm(kvm, r.plan.scenario, options.run);
  if (!report.ok()) return report.status();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r.report = *std::move(report);
  r.outcomes = TraceTruth(dir.trace, r.plan.switches);
  for (size_t k = 0; k < r.plan.switches.size(); ++k) {
    const int step = r.plan.switches[k].step;
    if (step < 0 || step >= static_cast<int>(r.report.step_records.size())) continue;
    const uint8_t bits = r.report.step_records[step].result;
    SwitchOutcome& o = r.outcomes[k];
    o.placed = (bits & abi::kStepExecuted) != 0;
    o.cr3_load = (bits & abi::kStepCr3Load) != 0;
    o.flush = (bits & abi::kStepCr3Flush) != 0;
  }
  r.score = Score(r.outcomes);
  return r;
}

std::string ConfigureForTracedMachine(const MachineFacts& m, bool pcid_flag, bool lazy_flag,
                                      ScenarioRunOptions* ro) {
  std::string pcid;
  if (pcid_flag) {
    pcid = absl::StrFormat("PCID %s (--pcid)", PcidModeName(ro->pcid));
  } else if (!m.present || !m.kernel_pcid.has_value()) {
    pcid = absl::StrFormat(
        "PCID assumed used (no machine.txt says otherwise; --pcid=off replays a kernel without "
        "it), replayed %s",
        PcidModeName(ro->pcid));
  } else if (!*m.kernel_pcid) {
    ro->pcid = abi::PcidMode::kOff;
    pcid = absl::StrFormat("PCID not used (machine.txt: cpu_pcid %s, boot_nopcid %s), replayed off",
                           m.cpu_pcid.value_or(false) ? "yes" : "no",
                           m.boot_nopcid.value_or(false) ? "yes" : "no");
  } else {
    pcid = absl::StrFormat("PCID used (machine.txt), replayed %s", PcidModeName(ro->pcid));
  }
  std::string lazy;
  if (lazy_flag) {
    lazy = absl::StrFormat("lazy TLB %s (--lazy-tlb)", LazyModeName(ro->lazy));
  } else if (m.lazy_tlb == "shootdown") {
    ro->lazy = abi::LazyMode::kShootdown;
    lazy = "lazy TLB shootdown (machine.txt)";
  } else {
    lazy = absl::StrFormat("lazy TLB %s (%s)", LazyModeName(ro->lazy),
                           m.lazy_tlb == "refcount" ? "machine.txt" : "assumed: x86 refcounts");
  }
  return pcid + "; " + lazy;
}

std::string DecisionsCsv(const ReplayResult& r) {
  std::string out = "line,cpu,prev_pid,next_pid,cr3_load,flush\n";
  for (size_t k = 0; k < r.plan.switches.size(); ++k) {
    const ReplaySwitch& s = r.plan.switches[k];
    const SwitchOutcome& o = r.outcomes[k];
    if (o.placed) {
      absl::StrAppendFormat(&out, "%d,%d,%d,%d,%d,%d\n", s.line, s.cpu, s.prev_pid, s.next_pid,
                            o.cr3_load ? 1 : 0, o.cr3_load && o.flush ? 1 : 0);
    } else {
      absl::StrAppendFormat(&out, "%d,%d,%d,%d,,\n", s.line, s.cpu, s.prev_pid, s.next_pid);
    }
  }
  return out;
}

std::string PlanCsv(const ReplayResult& r, const Trace& trace) {
  const Scenario& sc = r.plan.scenario;
  auto task = [&](int32_t t) -> std::string {
    return t >= 0 && t < static_cast<int32_t>(sc.task_names.size()) ? sc.task_names[t] : "";
  };
  auto mm = [&](int32_t m) -> std::string {
    return m >= 0 && m < static_cast<int32_t>(sc.mm_names.size()) ? sc.mm_names[m] : "";
  };
  std::string out = "step,line,op,cpu,task,mm,cr3_load,flush\n";
  for (size_t i = 0; i < sc.program.size(); ++i) {
    const abi::Step& s = sc.program[i];
    const int line = s.index < trace.events.size() ? trace.events[s.index].line : 0;
    const uint8_t bits = i < r.report.step_records.size() ? r.report.step_records[i].result : 0;
    absl::StrAppendFormat(&out, "%d,%d,%s,%d,%s,%s,%d,%d\n", i, line, StepOpName(s.op), s.cpu,
                          task(s.task), mm(s.mm), (bits & abi::kStepCr3Load) ? 1 : 0,
                          (bits & abi::kStepCr3Flush) ? 1 : 0);
  }
  return out;
}

namespace {

std::map<std::string, int> DisagreementClasses(const ReplayResult& r) {
  std::map<std::string, int> classes;
  for (size_t k = 0; k < r.outcomes.size(); ++k) {
    const SwitchOutcome& o = r.outcomes[k];
    if (!o.placed || o.truth == Truth::kUnknown) continue;
    std::string d = Disagreement(r.plan.switches[k], o);
    if (!d.empty()) ++classes[d];
  }
  return classes;
}

}  // namespace

std::string FormatReplay(const TraceDir& dir, const ReplayResult& r) {
  const ReplayScore& s = r.score;
  const ReplayPlanStats& p = r.plan.stats;
  const TraceStats& t = dir.trace.stats;
  std::string out;
  absl::StrAppendFormat(&out, "replay of %s (%s, %d CPUs)\n", dir.path,
                        dir.kernel_release.empty() ? "kernel release unknown" : dir.kernel_release,
                        dir.trace.num_cpus);
  if (!r.traced_machine.empty())
    absl::StrAppendFormat(&out, "traced machine: %s\n", r.traced_machine);
  absl::StrAppendFormat(&out,
                        "trace: %d lines, %d events, %d malformed, %d other events, %d lost-event "
                        "markers (%d events lost)\n",
                        t.lines, t.events, t.malformed, t.other_events, t.lost_markers,
                        t.lost_events);
  absl::StrAppendFormat(&out,
                        "tasks: %d (%d kernel threads, %d first seen mid-trace); forks: %d "
                        "processes, %d vforks, %d threads, %d kernel threads; %d execs (%d of "
                        "them before the vfork parent woke), %d exits (%d finished after a "
                        "preemption)\n",
                        p.tasks, p.kthreads, p.pids_first_seen_mid_trace, p.processes_forked,
                        p.vforks, p.threads, p.kthreads_forked, p.execs, p.execs_at_vfork_wakeup,
                        p.exits, p.exits_after_preemption);
  absl::StrAppendFormat(&out,
                        "flushes replayed: %d (also: %d local halves of an IPI flush, %d of "
                        "fork, %d by tasks without an mm, %d moved onto exec's new mm); %d "
                        "IPIs land after their target switched\n",
                        p.flushes, p.flushes_local_part, p.flushes_of_fork, p.flushes_without_mm,
                        p.flushes_retargeted, p.late_ipis);
  absl::StrAppendFormat(&out,
                        "inferred: %d switches (%d away from an untraced idle task), %d exits; "
                        "%d events skipped\n",
                        p.inferred_switches, p.inferred_idle_exits, p.inferred_exits,
                        p.skipped_events);
  for (const std::string& why : p.skipped) absl::StrAppendFormat(&out, "  skipped %s\n", why);
  absl::StrAppendFormat(&out,
                        "parallel: %d blocks of independent switches hold %d of the program's "
                        "steps\n",
                        p.parallel_blocks, p.steps_in_parallel_blocks);
  const ScenarioReport& rep = r.report;
  absl::StrAppendFormat(&out,
                        "guest: %d/%d steps in %.2f s (lazy TLB %s, PCID %s, %d ASIDs); %d "
                        "CR3 writes, %d IPIs; violations: %d\n",
                        rep.steps_done, rep.steps_total, r.seconds, LazyModeName(rep.lazy),
                        PcidModeName(rep.pcid), rep.asids, rep.totals.cr3_writes,
                        rep.totals.ipis_sent, rep.violations.size());
  for (const Violation& v : rep.violations) {
    absl::StrAppendFormat(&out, "  violation [%s] %s\n", v.rule, v.message);
  }
  if (rep.shadow_interrupts != 0) out += ShadowInterruptsNote(rep.shadow_interrupts);
  if (rep.run.profile.hz > 0) absl::StrAppend(&out, FormatProfile(rep.run.profile), "\n");
  // A run that stopped early says why (the watchdog's report names where each vCPU was): the
  // score below covers only the steps before it.
  if (rep.run.outcome != Outcome::kCompleted &&
      !(rep.run.outcome == Outcome::kCheckFailed && !rep.violations.empty())) {
    absl::StrAppendFormat(&out, "run ended: %s\n%s\n", OutcomeName(rep.run.outcome),
                          rep.run.report);
  }
  if (s.scored == 0 && s.placed > 0) {
    absl::StrAppendFormat(&out,
                          "no score: the trace has no CR3 load events (tlb_flush reason 0, "
                          "\"flush on task switch\") to compare with\n");
  }
  absl::StrAppendFormat(&out,
                        "switches: %d; placed %d, not placed %d; scored %d (truth unknown for "
                        "%d); real CR3 loads %d\n",
                        s.switches, s.placed, s.unplaced, s.scored, s.truth_unknown, s.real_loads);
  absl::StrAppendFormat(&out,
                        "CR3 loads: precision %.4f, recall %.4f (%d right, %d extra, %d "
                        "missed); flush accuracy %.4f (%d of %d)\n",
                        s.precision(), s.recall(), s.true_pos, s.false_pos, s.false_neg,
                        s.flush_accuracy(), s.flush_right, s.flush_right + s.flush_wrong);
  for (const auto& [what, n] : DisagreementClasses(r)) {
    absl::StrAppendFormat(&out, "  %5d  %s\n", n, what);
  }
  return out;
}

std::string FormatDisagreements(const TraceDir& dir, const ReplayResult& r, int n) {
  // The disagreements first, then the trace lines they show, read from trace.txt (the text of a
  // long trace is not kept in memory).
  struct Shown {
    const ReplaySwitch* s;
    const SwitchOutcome* o;
    std::string what;
    std::vector<int> before;  // the CPU's events before the switch (up to 4)
  };
  std::vector<Shown> shown;
  std::set<int> wanted;
  const std::vector<TraceEvent>& ev = dir.trace.events;
  for (size_t k = 0; k < r.outcomes.size() && static_cast<int>(shown.size()) < n; ++k) {
    const SwitchOutcome& o = r.outcomes[k];
    const ReplaySwitch& s = r.plan.switches[k];
    std::string what;
    if (!o.placed) {
      what = absl::StrFormat("not placed: %s", s.unplaced_why);
    } else if (o.truth != Truth::kUnknown) {
      what = Disagreement(s, o);
    }
    if (what.empty()) continue;
    Shown& sh = shown.emplace_back(Shown{&s, &o, std::move(what), {}});
    for (int i = s.event - 1; i >= 0 && sh.before.size() < 4; --i) {
      if (ev[i].cpu == s.cpu) sh.before.push_back(ev[i].line);
    }
    std::reverse(sh.before.begin(), sh.before.end());
    wanted.insert(sh.before.begin(), sh.before.end());
    wanted.insert(s.line);
    if (o.truth_line > 0) wanted.insert(o.truth_line);
  }
  // A trace.txt changed or gone since the replay read it shows its lines empty.
  const std::map<int, std::string> lines =
      ReadTraceLines(dir.path, wanted).value_or(std::map<int, std::string>());
  auto line_at = [&](int line) -> std::string_view {
    auto it = lines.find(line);
    return it == lines.end() ? std::string_view() : std::string_view(it->second);
  };
  std::string out;
  for (size_t i = 0; i < shown.size(); ++i) {
    const ReplaySwitch& s = *shown[i].s;
    const SwitchOutcome& o = *shown[i].o;
    absl::StrAppendFormat(&out, "#%d line %d, CPU %d: %s\n", i + 1, s.line, s.cpu, shown[i].what);
    absl::StrAppendFormat(&out, "  kernel: CR3 load %s%s; emulator: CR3 load %s%s\n",
                          Yes(o.truth == Truth::kLoad),
                          o.truth == Truth::kLoad ? (o.truth_flush ? " (flush)" : " (kept)") : "",
                          Yes(o.cr3_load), o.cr3_load ? (o.flush ? " (flush)" : " (kept)") : "");
    for (int l : shown[i].before) absl::StrAppendFormat(&out, "  %7d  %s\n", l, line_at(l));
    absl::StrAppendFormat(&out, "> %7d  %s\n", s.line, line_at(s.line));
    if (o.truth_line > 0) {
      absl::StrAppendFormat(&out, "  %7d  %s\n", o.truth_line, line_at(o.truth_line));
    }
  }
  if (shown.empty()) out = "no disagreements\n";
  return out;
}

std::string ReplayJson(const TraceDir& dir, const ReplayResult& r, const KvmHost& host) {
  const ReplayScore& s = r.score;
  const ReplayPlanStats& p = r.plan.stats;
  nlohmann::json j;
  j["trace"] = dir.path;
  j["traced_machine"] = r.traced_machine;
  j["kernel"] = dir.kernel_release;
  j["cpus"] = dir.trace.num_cpus;
  j["host"] = host.Json();
  j["mode"] = {{"lazy_tlb", LazyModeName(r.report.lazy)},
               {"pcid", PcidModeName(r.report.pcid)},
               {"asids", r.report.asids}};
  const TraceStats& t = dir.trace.stats;
  j["input"] = {{"lines", t.lines},
                {"events", t.events},
                {"malformed", t.malformed},
                {"other_events", t.other_events},
                {"lost_markers", t.lost_markers},
                {"lost_events", t.lost_events},
                {"tasks", p.tasks},
                {"kthreads", p.kthreads},
                {"pids_first_seen_mid_trace", p.pids_first_seen_mid_trace},
                {"processes_forked", p.processes_forked},
                {"vforks", p.vforks},
                {"threads", p.threads},
                {"kthreads_forked", p.kthreads_forked},
                {"execs", p.execs},
                {"execs_at_vfork_wakeup", p.execs_at_vfork_wakeup},
                {"exits", p.exits},
                {"exits_after_preemption", p.exits_after_preemption},
                {"flushes", p.flushes},
                {"flushes_local_part", p.flushes_local_part},
                {"flushes_of_fork", p.flushes_of_fork},
                {"flushes_without_mm", p.flushes_without_mm},
                {"flushes_retargeted", p.flushes_retargeted},
                {"late_ipis", p.late_ipis},
                {"inferred_switches", p.inferred_switches},
                {"inferred_idle_exits", p.inferred_idle_exits},
                {"inferred_exits", p.inferred_exits},
                {"skipped_events", p.skipped_events},
                {"parallel_blocks", p.parallel_blocks},
                {"steps_in_parallel_blocks", p.steps_in_parallel_blocks}};
  j["score"] = {{"switches", s.switches},
                {"placed", s.placed},
                {"unplaced", s.unplaced},
                {"scored", s.scored},
                {"truth_unknown", s.truth_unknown},
                {"real_loads", s.real_loads},
                {"true_positives", s.true_pos},
                {"false_positives", s.false_pos},
                {"false_negatives", s.false_neg},
                {"true_negatives", s.true_neg},
                {"precision", s.precision()},
                {"recall", s.recall()},
                {"flush_right", s.flush_right},
                {"flush_wrong", s.flush_wrong},
                {"flush_accuracy", s.flush_accuracy()}};
  nlohmann::json classes = nlohmann::json::object();
  for (const auto& [what, n] : DisagreementClasses(r)) classes[what] = n;
  j["disagreements"] = classes;
  j["guest"] = {{"steps_done", r.report.steps_done},
                {"steps_total", r.report.steps_total},
                {"seconds", r.seconds},
                {"violations", r.report.violations.size()},
                {"cr3_writes", r.report.totals.cr3_writes},
                {"cr3_writes_flush", r.report.totals.cr3_writes_flush},
                {"ipis_sent", r.report.totals.ipis_sent},
                {"context_switches", r.report.totals.context_switches},
                {"stale_tlb", TlbProbeName(r.report.run.tlb_probe)},
                {"kvm", r.report.run.kvm_stats}};
  // What the replay cost against what it replays: the traced span (first to last event) and
  // the host's own phases.
  int64_t first_ns = 0, last_ns = 0;
  for (const TraceEvent& e : dir.trace.events) {
    if (e.timestamp_ns <= 0) continue;  // lost-event markers carry none
    if (first_ns == 0 || e.timestamp_ns < first_ns) first_ns = e.timestamp_ns;
    last_ns = std::max(last_ns, e.timestamp_ns);
  }
  j["phases"] = {{"traced_seconds", static_cast<double>(last_ns - first_ns) * 1e-9},
                 {"parse_seconds", r.parse_seconds},
                 {"plan_seconds", r.plan_seconds},
                 {"guest_seconds", r.seconds}};
  if (r.report.run.profile.hz > 0) j["guest"]["profile"] = ProfileJson(r.report.run.profile);
  // The folder's path and kernel.txt's release are any bytes, maybe not UTF-8 (see
  // TimelineJson): a bad sequence is written as U+FFFD instead of throwing.
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace activemm
