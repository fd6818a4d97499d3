#include "vmm/replay/replay_plan.h"

#include <algorithm>
#include <climits>
#include <map>
#include <set>
#include <string_view>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "vmm/replay/parallel_blocks.h"

namespace activemm {
namespace {

// Data pages of every replayed mm: ring 3 verifies them at each switch-in, so one keeps the
// user side real without slowing a 10,000-switch replay down.
constexpr uint32_t kReplayPages = 1;
constexpr int kMaxSkippedListed = 20;

// Kernel threads that exited before the recording stopped are not in kthreads.txt; their
// names give them away.
bool LooksLikeKthread(std::string_view comm) {
  static constexpr std::string_view kPrefixes[] = {
      "kworker/",      "ksoftirqd/", "migration/", "rcu_",      "cpuhp/",      "kthreadd",
      "kcompactd",     "kswapd",     "khugepaged", "jbd2/",     "irq/",        "idle_inject/",
      "oom_reaper",    "watchdog",   "kblockd",    "writeback", "napi/",       "kauditd",
      "khungtaskd",    "ksmd",       "kdevtmpfs",  "scsi_",     "kintegrityd", "kthrotld",
      "ipv6_addrconf", "rcub/",      "rcuc/",      "rcuog/",    "rcuop/",      "pool_workqueue",
      "kstrp",         "zswap",      "xfs",        "ext4-rsv"};
  for (std::string_view p : kPrefixes) {
    if (comm.starts_with(p)) return true;
  }
  return false;
}

enum class RunState { kRunnable, kRunning, kDead };

struct PlanTask {
  int pid = 0;
  int tgid = 0;
  bool kthread = false;
  int32_t mm = abi::kNoMm;
  RunState state = RunState::kRunnable;
  bool exiting = false;  // past exit_mm: dead at its next switch-out with state X or Z
  int cpu = -1;
  // vfork (CLONE_VM | CLONE_VFORK): the parent sleeps until the child's exec_mmap (or exit)
  // releases it through mm_release -> complete_vfork_done.
  int32_t vfork_child = abi::kNoTask;  // in the parent, until the child's exec or exit
  int32_t vfork_parent = abi::kNoTask;
  int exec_event = -1;           // in a vfork child: the index of its exec event, -1 if none comes
  bool exec_done_early = false;  // exec_mmap already replayed when the parent woke
  int last_switch_out = -1;      // program step that last switched this task out
  bool exit_pending = false;     // exit event seen, preempted before exit_mm
};

class Planner {
 public:
  Planner(const TraceDir& dir, const ReplayPlanOptions& options, ReplayPlan* out)
      : dir_(dir), events_(dir.trace.events), options_(options), out_(*out) {}

  absl::Status Run() {
    const int cpus = dir_.trace.num_cpus;
    if (cpus < 1 || cpus > static_cast<int>(abi::kMaxCpus)) {
      return Error(absl::StrFormat("%d CPUs: activemm runs 1 to %d", cpus, abi::kMaxCpus));
    }
    Scenario& sc = out_.scenario;
    sc.name = "replay of " + dir_.path;
    sc.cpus = cpus;
    sc.lazy_tlb = true;
    sc.source = dir_.path + "/trace.txt";
    for (int c = 0; c < cpus; ++c) {
      sc.task_names.push_back(absl::StrFormat("idle/%d", c));
      PlanTask idle;
      idle.kthread = true;
      idle.state = RunState::kRunning;
      idle.cpu = c;
      tasks_.push_back(idle);
      curr_.push_back(c);
    }
    sc.mm_names.push_back("init_mm");
    for (const TraceEvent& e : events_) {
      sc.step_ops.AddTraceLine(e.line, TraceEventKindName(e.kind));
    }
    Prescan();

    for (cur_pos_ = 0; cur_pos_ < static_cast<int>(order_.size()); ++cur_pos_) {
      const auto [i, phase] = order_[cur_pos_];
      event_ = i;
      const TraceEvent& e = events_[event_];
      absl::Status s = phase == 0 ? Apply(e) : FlushFinish(e);
      if (!s.ok()) return s;
      // Not while a flush is half done: a CPU is behind its mm's tlb_gen until the flush ends.
      if (options_.verify_every > 0 && open_flushes_.empty() &&
          static_cast<int>(sc.program.size()) - last_verify_ >= options_.verify_every) {
        AddVerify(HostCheck::Kind::kCheckpoint, event_);
      }
    }
    // After the last event: like a compiled scenario's, one past it (no trace line).
    event_ = static_cast<int>(events_.size());
    AddVerify(HostCheck::Kind::kFinal, -1);
    return absl::OkStatus();
  }

 private:
  // The trace line of the event being applied (0 outside the events).
  int CurrentLine() const {
    return event_ >= 0 && event_ < static_cast<int>(events_.size()) ? events_[event_].line : 0;
  }

  absl::Status Error(const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrFormat("%s/trace.txt: %s", dir_.path, what));
  }

  // pid -> tgid from tgids.txt and the lines' TGID column; the next event on each CPU, the
  // kernel's CR3 loads (reason 0) left out: the plan must come out the same without them.
  void Prescan() {
    tgid_ = dir_.tgids;
    on_cpu_.assign(dir_.trace.num_cpus, {});
    for (int i = 0; i < static_cast<int>(events_.size()); ++i) {
      const TraceEvent& e = events_[i];
      if (e.tgid > 0) tgid_.emplace(e.pid, e.tgid);
      if (e.kind == TraceEventKind::kExec) execs_[e.pid].push_back(i);
      if (e.kind == TraceEventKind::kFlush && e.reason == FlushReason::kTaskSwitch) continue;
      if (e.cpu >= 0 && e.cpu < dir_.trace.num_cpus) on_cpu_[e.cpu].push_back(i);
    }
    next_on_cpu_.assign(events_.size(), -1);
    for (const std::vector<int>& v : on_cpu_) {
      for (size_t k = 0; k + 1 < v.size(); ++k) next_on_cpu_[v[k]] = v[k + 1];
    }
    Order();
  }

  // Whether event i is a flush_tlb_mm_range the replay applies: a reason 4 or 3 line that is
  // not the local half of the reason 4 just before it on its CPU.
  bool IsFlushInput(int i) const {
    const TraceEvent& e = events_[i];
    return e.kind == TraceEventKind::kFlush && !local_half_[i] &&
           (e.reason == FlushReason::kLocalMmShootdown || e.reason == FlushReason::kRemoteSendIpi);
  }

  // Whether a switch another CPU traced in the same microsecond as flush i read tlb_gen before
  // the flush incremented it: that CPU then handled the flush's IPI (reason 1, a real flush)
  // before it did anything else, which it would not have needed had it seen the increment.
  bool SeenBeforeIncrement(int i) const {
    const int64_t ts = events_[i].timestamp_ns;
    for (int dir : {-1, 1}) {
      for (int j = i + dir;
           j >= 0 && j < static_cast<int>(events_.size()) && events_[j].timestamp_ns == ts;
           j += dir) {
        const TraceEvent& s = events_[j];
        if (s.kind != TraceEventKind::kSwitch || s.cpu == events_[i].cpu) continue;
        const int k = next_on_cpu_[j];
        if (k >= 0 && events_[k].kind == TraceEventKind::kFlush &&
            events_[k].reason == FlushReason::kRemoteShootdown) {
          return true;
        }
      }
    }
    return false;
  }

  // The order events are applied in. A flush_tlb_mm_range increments tlb_gen well before it
  // traces its IPIs (reason 4) or its local flush (reason 3), and a switch on another CPU reads
  // tlb_gen after it traced sched_switch: such a switch, traced just before the flush's
  // line, can already have seen the new generation while the IPIs were chosen after it. So a
  // flush is applied in two halves: the increment as of increment_lead_ns before its line (in
  // practice: before what other CPUs traced in the same microsecond), the IPIs and the local
  // flush at it. Each CPU's own events keep their order.
  void Order() {
    local_half_.assign(events_.size(), false);
    for (size_t i = 0; i < events_.size(); ++i) {
      const TraceEvent& e = events_[i];
      if (e.kind != TraceEventKind::kFlush || e.reason != FlushReason::kRemoteSendIpi) continue;
      const int j = next_on_cpu_[i];
      if (j >= 0 && events_[j].kind == TraceEventKind::kFlush && events_[j].pid == e.pid &&
          (events_[j].reason == FlushReason::kLocalMmShootdown ||
           events_[j].reason == FlushReason::kRemoteWrongCpu)) {
        local_half_[j] = true;
      }
    }
    struct Entry {
      int64_t at;
      int event;
      int phase;
    };
    std::vector<Entry> entries;
    entries.reserve(events_.size() * 5 / 4);
    std::vector<int64_t> last(dir_.trace.num_cpus, INT64_MIN);
    for (size_t i = 0; i < events_.size(); ++i) {
      const TraceEvent& e = events_[i];
      const bool own_cpu = e.cpu >= 0 && e.cpu < dir_.trace.num_cpus;
      auto add = [&](int64_t t, int phase) {
        if (own_cpu) {
          t = std::max(t, last[e.cpu]);
          last[e.cpu] = t;
        }
        entries.push_back({t, static_cast<int>(i), phase});
      };
      if (IsFlushInput(static_cast<int>(i))) {
        const int64_t lead =
            SeenBeforeIncrement(static_cast<int>(i)) ? 0 : options_.increment_lead_ns;
        add(e.timestamp_ns - lead, 0);
        add(e.timestamp_ns, 1);
      } else {
        add(e.timestamp_ns, 0);
      }
    }
    std::stable_sort(entries.begin(), entries.end(),
                     [](const Entry& a, const Entry& b) { return a.at < b.at; });
    order_.clear();
    pos_.assign(events_.size(), 0);
    for (const Entry& en : entries) {
      if (en.phase == 0) pos_[en.event] = static_cast<int>(order_.size());
      order_.push_back({en.event, en.phase});
    }
  }

  // The first exec event of `pid` after the event being applied, or -1.
  int NextExecOf(int pid) const {
    auto it = execs_.find(pid);
    if (it == execs_.end()) return -1;
    for (int i : it->second) {
      if (i > event_) return i;
    }
    return -1;
  }

  // The first event of `cpu` applied after the entry being applied now (reason-0 lines left
  // out), or -1.
  int NextOnCpuAfterNow(int cpu) const {
    const std::vector<int>& v = on_cpu_[cpu];  // in trace order, which is their applied order
    auto it =
        std::upper_bound(v.begin(), v.end(), cur_pos_, [&](int p, int e) { return p < pos_[e]; });
    return it == v.end() ? -1 : *it;
  }

  // The CPUs a flush IPI of mm sent at event i reaches only after they switched away: they run
  // mm (so the IPI is sent) but the next thing they show is that switch, not the flush the IPI
  // makes them do (reason 1). IPIs take microseconds here; a switch can come first.
  uint64_t LateIpiTargets(int initiator, int32_t mm) const {
    uint64_t late = 0;
    for (int cpu = 0; cpu < dir_.trace.num_cpus; ++cpu) {
      if (cpu == initiator) continue;
      const PlanTask& cur = tasks_[curr_[cpu]];
      if (cur.mm != mm) continue;
      const int j = NextOnCpuAfterNow(cpu);
      if (j >= 0 && events_[j].kind == TraceEventKind::kSwitch && events_[j].prev_pid == cur.pid) {
        late |= uint64_t{1} << cpu;
      }
    }
    return late;
  }

  int TgidOf(int pid) const {
    auto it = tgid_.find(pid);
    return it != tgid_.end() ? it->second : pid;
  }

  void Skip(const TraceEvent& e, const std::string& why) {
    ++out_.stats.skipped_events;
    if (static_cast<int>(out_.stats.skipped.size()) < kMaxSkippedListed) {
      out_.stats.skipped.push_back(absl::StrFormat("line %d: %s", e.line, why));
    }
  }

  // ---- emitting steps ----

  abi::Step MakeStep(abi::StepOp op, int cpu, int32_t task) const {
    return ModelStep(op, cpu, task, static_cast<uint32_t>(event_), options_.verify_every_step);
  }

  int Emit(const abi::Step& s) {
    out_.scenario.program.push_back(s);
    return static_cast<int>(out_.scenario.program.size()) - 1;
  }

  void AddVerify(HostCheck::Kind kind, int event) {
    abi::Step s = MakeStep(abi::StepOp::kVerify, 0, abi::kNoTask);
    s.flags = 0;
    s.arg = static_cast<uint32_t>(out_.scenario.checks.size());
    HostCheck& check = out_.scenario.checks.emplace_back();
    check.kind = kind;
    check.step_index = event;
    Emit(s);
    last_verify_ = static_cast<int>(out_.scenario.program.size());
  }

  absl::StatusOr<int32_t> NewMm(const std::string& name) {
    std::vector<std::string>& names = out_.scenario.mm_names;
    if (names.size() >= abi::kMaxMms) {
      return Error(absl::StrFormat("line %d: more than %d mms: the guest has no room for more",
                                   CurrentLine(), abi::kMaxMms - 1));
    }
    names.push_back(name);
    return static_cast<int32_t>(names.size()) - 1;
  }

  absl::StatusOr<int32_t> NewTask(int pid, int tgid, const std::string& comm, bool kthread) {
    if (tasks_.size() >= abi::kMaxTasks) {
      return Error(absl::StrFormat("line %d: more than %d tasks: the guest has no room for more",
                                   CurrentLine(), abi::kMaxTasks - dir_.trace.num_cpus));
    }
    PlanTask t;
    t.pid = pid;
    t.tgid = tgid;
    t.kthread = kthread;
    tasks_.push_back(t);
    out_.scenario.task_names.push_back(absl::StrFormat("%s-%d", comm, pid));
    const int32_t index = static_cast<int32_t>(tasks_.size()) - 1;
    by_pid_[pid] = index;
    ++out_.stats.tasks;
    if (kthread) ++out_.stats.kthreads;
    return index;
  }

  // A live task of `tgid` with an mm to share, or kNoTask.
  int32_t MmHolderOf(int tgid) const {
    for (int32_t i = static_cast<int32_t>(tasks_.size()) - 1; i >= dir_.trace.num_cpus; --i) {
      const PlanTask& t = tasks_[i];
      if (t.tgid == tgid && t.mm != abi::kNoMm && t.state != RunState::kDead && !t.exiting) {
        return i;
      }
    }
    return abi::kNoTask;
  }

  // A task that existed before the recording (or whose fork was lost): a kernel thread, a
  // thread of a known process, or a process with an mm of its own.
  absl::StatusOr<int32_t> TaskFor(int pid, int cpu, const std::string& comm) {
    if (pid == 0) return cpu;  // each CPU's idle task
    if (auto it = by_pid_.find(pid); it != by_pid_.end()) return it->second;
    const bool kthread = pid == 2 || dir_.kthreads.contains(pid) || LooksLikeKthread(comm);
    const int tgid = TgidOf(pid);
    absl::StatusOr<int32_t> t = NewTask(pid, tgid, comm, kthread);
    if (!t.ok()) return t.status();
    ++out_.stats.pids_first_seen_mid_trace;
    if (kthread) {
      Emit(MakeStep(abi::StepOp::kKthread, cpu, *t));
      return t;
    }
    if (int32_t holder = MmHolderOf(tgid); holder != abi::kNoTask) {
      abi::Step s = MakeStep(abi::StepOp::kCloneVm, cpu, *t);
      s.parent = holder;
      tasks_[*t].mm = tasks_[holder].mm;
      Emit(s);
      return t;
    }
    absl::StatusOr<int32_t> mm = NewMm(absl::StrFormat("%s-%d", comm, pid));
    if (!mm.ok()) return mm.status();
    abi::Step s = MakeStep(abi::StepOp::kSpawn, cpu, *t);
    s.mm = *mm;
    s.pages = kReplayPages;
    tasks_[*t].mm = *mm;
    Emit(s);
    return t;
  }

  // Switches `cpu` to task t. The trace may have missed a switch elsewhere (t still running on
  // another CPU in the plan): that CPU goes idle first. Returns the step, or -1 with why.
  int SwitchTo(int cpu, int32_t t, bool inferred, std::string_view* why, bool prev_dies = false) {
    PlanTask& n = tasks_[t];
    if (n.state == RunState::kDead) {
      *why = "the next task has exited";
      return -1;
    }
    if (n.state == RunState::kRunning && n.cpu != cpu) {
      if (SwitchTo(n.cpu, n.cpu, /*inferred=*/true, why) < 0) return -1;
    }
    if (n.vfork_child != abi::kNoTask) ExecBeforeParentWakes(n.vfork_child);
    const int32_t prev = curr_[cpu];
    if (prev == t) {
      *why = "the next task is already running there";
      return -1;
    }
    const bool to_idle = t == cpu;
    abi::Step s =
        MakeStep(to_idle ? abi::StepOp::kIdle : abi::StepOp::kRun, cpu, to_idle ? abi::kNoTask : t);
    s.mm = n.mm;  // not read by the guest (it follows next->mm): names the mm in --plan output
    PlanTask& p = tasks_[prev];
    const bool dies = prev_dies && p.exiting;
    if (dies) s.arg = abi::kSwitchPrevDies;
    const int step = Emit(s);
    p.last_switch_out = step;
    if (dies) {
      p.state = RunState::kDead;
      by_pid_.erase(p.pid);
    } else {
      p.state = RunState::kRunnable;
    }
    p.cpu = -1;
    n.state = RunState::kRunning;
    n.cpu = cpu;
    curr_[cpu] = t;
    if (n.exit_pending) {  // back to finish do_exit: exit_mm now
      n.exit_pending = false;
      ExitTask(cpu, t);
    }
    if (inferred) {
      ++out_.stats.inferred_switches;
      if (prev < dir_.trace.num_cpus) ++out_.stats.inferred_idle_exits;
    }
    return step;
  }

  // The task an event line names must be the one running on its CPU: if the plan disagrees,
  // the trace did not show a switch (switches away from idle on some CPUs, lost events).
  absl::StatusOr<int32_t> EnsureCurrent(const TraceEvent& e, bool* ok) {
    absl::StatusOr<int32_t> t = TaskFor(e.pid, e.cpu, e.comm);
    if (!t.ok()) return t;
    *ok = true;
    if (curr_[e.cpu] == *t) return t;
    std::string_view why;
    if (SwitchTo(e.cpu, *t, /*inferred=*/true, &why) < 0) {
      Skip(e, absl::StrFormat("its task cannot run on its CPU: %s", why));
      *ok = false;
    }
    return t;
  }

  // ---- events ----

  absl::Status Apply(const TraceEvent& e) {
    switch (e.kind) {
      case TraceEventKind::kSwitch:
        return Switch(e);
      case TraceEventKind::kFork:
        return Fork(e);
      case TraceEventKind::kExec:
        return Exec(e);
      case TraceEventKind::kExit:
        return Exit(e);
      case TraceEventKind::kFlush:
        if (local_half_[event_]) {
          ++out_.stats.flushes_local_part;
          return absl::OkStatus();
        }
        if (IsFlushInput(event_)) return FlushBegin(e);
        return absl::OkStatus();  // reason 0 is the answer; 1, 2, 5 are consequences
      case TraceEventKind::kLost:
        return absl::OkStatus();
    }
    return absl::OkStatus();
  }

  absl::Status Switch(const TraceEvent& e) {
    ReplaySwitch rec;
    rec.event = event_;
    rec.line = e.line;
    rec.cpu = e.cpu;
    rec.prev_pid = e.prev_pid;
    rec.next_pid = e.next_pid;
    TraceEvent prev_line = e;
    prev_line.pid = e.prev_pid;
    prev_line.comm = e.prev_comm;
    bool ok = false;
    absl::StatusOr<int32_t> prev = EnsureCurrent(prev_line, &ok);
    if (!prev.ok()) return prev.status();
    if (!ok) {
      rec.unplaced_why = "its prev task could not be made current";
      out_.switches.push_back(rec);
      return absl::OkStatus();
    }
    // A task switched out dead (X) or as a zombie (Z) went through do_exit: if its exit event
    // is missing, exit_mm happens here.
    const bool dying = !e.prev_state.empty() && (e.prev_state[0] == 'X' || e.prev_state[0] == 'Z');
    if (dying && *prev >= dir_.trace.num_cpus && !tasks_[*prev].exiting) {
      if (!tasks_[*prev].exit_pending) ++out_.stats.inferred_exits;
      tasks_[*prev].exit_pending = false;
      ExitTask(e.cpu, *prev);
    }
    absl::StatusOr<int32_t> next = TaskFor(e.next_pid, e.cpu, e.next_comm);
    if (!next.ok()) return next.status();
    // A vfork child's exec comes before its parent runs (see SwitchTo): first, so the switch's
    // case is named with the mms it really switches between.
    if (tasks_[*next].vfork_child != abi::kNoTask) ExecBeforeParentWakes(tasks_[*next].vfork_child);
    rec.kind = SwitchKind(tasks_[*prev], tasks_[*next]);
    rec.step = SwitchTo(e.cpu, *next, /*inferred=*/false, &rec.unplaced_why, dying);
    out_.switches.push_back(rec);
    return absl::OkStatus();
  }

  // The switch case as context_switch sees it: by prev->mm and next->mm.
  // A view of a constant: a trace has millions of switches and these ten kinds.
  static std::string_view SwitchKind(const PlanTask& prev, const PlanTask& next) {
    static constexpr std::string_view kKinds[5][2] = {
        {"kernel->kernel", "kernel->kernel (prev exiting)"},
        {"kernel->user", "kernel->user (prev exiting)"},
        {"user->kernel", "user->kernel (prev exiting)"},
        {"user->user", "user->user (prev exiting)"},
        {"user->user (same mm)", "user->user (same mm) (prev exiting)"},
    };
    const bool from_user = prev.mm != abi::kNoMm, to_user = next.mm != abi::kNoMm;
    const int k = from_user && to_user && prev.mm == next.mm ? 4 : from_user * 2 + to_user;
    return kKinds[k][prev.exiting ? 1 : 0];
  }

  // Whether the full flush at event i is dup_mmap's flush_tlb_mm(oldmm): the next thing its CPU
  // shows (after the flush's own local half) is `pid` forking a child into another tgid.
  bool IsForkFlush(int i, int pid) {
    int j = next_on_cpu_[i];
    while (j >= 0 && events_[j].kind == TraceEventKind::kFlush && events_[j].pid == pid &&
           (events_[j].reason == FlushReason::kLocalMmShootdown ||
            events_[j].reason == FlushReason::kRemoteWrongCpu)) {
      j = next_on_cpu_[j];
    }
    if (j < 0) return false;
    const TraceEvent& f = events_[j];
    if (f.kind != TraceEventKind::kFork || f.pid != pid) return false;
    if (TgidOf(f.child_pid) == TgidOf(pid)) return false;
    dup_forks_.insert(j);
    return true;
  }

  // The first half of a flush: its tlb_gen increment (see Order()).
  absl::Status FlushBegin(const TraceEvent& e) {
    if (e.pid == 0) {
      ++out_.stats.flushes_without_mm;
      return absl::OkStatus();
    }
    bool ok = false;
    absl::StatusOr<int32_t> t = EnsureCurrent(e, &ok);
    if (!t.ok()) return t.status();
    if (!ok) return absl::OkStatus();
    const PlanTask& task = tasks_[*t];
    if (task.mm == abi::kNoMm) {
      // A kernel thread flushing through kthread_use_mm, or an exiting task after exit_mm
      // (exit_mmap's flush, which the emulated exit does itself): no mm the plan can name.
      ++out_.stats.flushes_without_mm;
      return absl::OkStatus();
    }
    if (e.pages == -1 && IsForkFlush(event_, e.pid)) {
      ++out_.stats.flushes_of_fork;
      return absl::OkStatus();
    }
    abi::Step s = MakeStep(abi::StepOp::kFlush, e.cpu, *t);
    s.mm = task.mm;
    s.pages = e.pages < 0 || e.pages > 64 ? abi::kFlushAllPages : static_cast<uint32_t>(e.pages);
    // freed_tables is not in the trace: lazy CPUs catch up at their next switch instead.
    s.arg = abi::kFlushBegin;
    Emit(s);
    open_flushes_[event_] = *t;
    ++out_.stats.flushes;
    return absl::OkStatus();
  }

  // The second half: the IPIs (some landing late) and the local flush.
  absl::Status FlushFinish(const TraceEvent& e) {
    auto it = open_flushes_.find(event_);
    if (it == open_flushes_.end()) return absl::OkStatus();  // its first half was not replayed
    const int32_t t = it->second;
    open_flushes_.erase(it);
    abi::Step s = MakeStep(abi::StepOp::kFlush, e.cpu, t);
    s.mm = tasks_[t].mm;
    s.arg = abi::kFlushFinish;
    if (e.reason == FlushReason::kRemoteSendIpi) {
      const uint64_t late = LateIpiTargets(e.cpu, s.mm);
      s.late_ipi_cpus = late;
      out_.stats.late_ipis += __builtin_popcountll(late);
    }
    Emit(s);
    return absl::OkStatus();
  }

  absl::Status Fork(const TraceEvent& e) {
    if (by_pid_.contains(e.child_pid)) {
      Skip(e, absl::StrFormat("child pid %d was already seen", e.child_pid));
      return absl::OkStatus();
    }
    bool ok = false;
    absl::StatusOr<int32_t> parent = EnsureCurrent(e, &ok);
    if (!parent.ok()) return parent.status();
    if (!ok) return absl::OkStatus();
    const PlanTask p = tasks_[*parent];
    const int child_tgid = TgidOf(e.child_pid);
    if (p.kthread) {  // kthreadd, or a kernel thread starting a usermode helper
      absl::StatusOr<int32_t> c = NewTask(e.child_pid, child_tgid, e.child_comm, true);
      if (!c.ok()) return c.status();
      Emit(MakeStep(abi::StepOp::kKthread, e.cpu, *c));
      ++out_.stats.kthreads_forked;
      return absl::OkStatus();
    }
    if (p.mm == abi::kNoMm) {
      Skip(e, "the parent has no mm left (it is exiting)");
      return absl::OkStatus();
    }
    absl::StatusOr<int32_t> c = NewTask(e.child_pid, child_tgid, e.child_comm, false);
    if (!c.ok()) return c.status();
    abi::Step s;
    if (dup_forks_.contains(event_)) {
      absl::StatusOr<int32_t> mm = NewMm(absl::StrFormat("%s-%d", e.child_comm, e.child_pid));
      if (!mm.ok()) return mm.status();
      s = MakeStep(abi::StepOp::kFork, e.cpu, *c);
      s.mm = *mm;
      tasks_[*c].mm = *mm;
      ++out_.stats.processes_forked;
    } else {
      // A thread (same tgid) or vfork/posix_spawn (CLONE_VM into a new tgid, no dup_mmap and
      // so no flush before the fork event): the child shares the parent's mm.
      s = MakeStep(abi::StepOp::kCloneVm, e.cpu, *c);
      tasks_[*c].mm = p.mm;
      if (child_tgid == p.tgid) {
        ++out_.stats.threads;
      } else {
        ++out_.stats.vforks;
        tasks_[*parent].vfork_child = *c;
        tasks_[*c].vfork_parent = *parent;
        tasks_[*c].exec_event = NextExecOf(e.child_pid);
      }
    }
    s.parent = *parent;
    Emit(s);
    return absl::OkStatus();
  }

  absl::Status Exec(const TraceEvent& e) {
    bool ok = false;
    absl::StatusOr<int32_t> t = EnsureCurrent(e, &ok);
    if (!t.ok()) return t.status();
    if (!ok) return absl::OkStatus();
    if (*t < dir_.trace.num_cpus) {
      Skip(e, "an idle task cannot exec");
      return absl::OkStatus();
    }
    ++out_.stats.execs;
    if (tasks_[*t].exec_done_early) {
      tasks_[*t].exec_done_early = false;
      return absl::OkStatus();
    }
    DetachVfork(*t);
    absl::StatusOr<int32_t> mm =
        NewMm(absl::StrFormat("%s-%d@%d", e.filename.empty() ? e.comm : e.filename, e.pid, e.line));
    if (!mm.ok()) return mm.status();
    abi::Step s = MakeStep(abi::StepOp::kExec, e.cpu, *t);
    s.mm = *mm;
    s.pages = kReplayPages;
    // The exec event comes after the binary is loaded: the flushes this task did just before it
    // (setup_arg_pages moving the stack) were on the new mm, already loaded by exec_mmap. The
    // exec step goes before them, and they flush the new mm.
    const int at =
        BeforeTrailingFlushes(static_cast<int>(out_.scenario.program.size()), e.cpu, *t, *mm);
    Insert(at, s);
    PlanTask& task = tasks_[*t];
    task.mm = *mm;
    task.kthread = false;
    return absl::OkStatus();
  }

  // Where an exec of `task` on `cpu` goes if it is to come before program step `at`: before
  // the flush steps of that task that precede it on its CPU, which then flush the new mm.
  // Steps of other CPUs in between are passed over (they do not involve the task: it runs on
  // `cpu`), except verification points and steps that copy the task's mm.
  int BeforeTrailingFlushes(int at, int cpu, int32_t task, int32_t new_mm) {
    std::vector<abi::Step>& prog = out_.scenario.program;
    for (int i = at - 1; i >= 0; --i) {
      const abi::Step& s = prog[i];
      const auto op = static_cast<abi::StepOp>(s.op);
      if (op == abi::StepOp::kVerify || s.parent == task) break;
      if (s.cpu != static_cast<uint32_t>(cpu)) continue;
      if (op != abi::StepOp::kFlush || s.task != task) break;
      prog[i].mm = new_mm;
      if (!(s.arg & abi::kFlushFinish)) ++out_.stats.flushes_retargeted;  // a flush, not a half
      at = i;
    }
    return at;
  }

  void DetachVfork(int32_t child) {
    PlanTask& c = tasks_[child];
    if (c.vfork_parent == abi::kNoTask) return;
    tasks_[c.vfork_parent].vfork_child = abi::kNoTask;
    c.vfork_parent = abi::kNoTask;
  }

  // The vfork parent is about to run: its child has released it, and when the child's exec
  // event comes later in the trace, that release was exec_mmap (the exec event is only traced
  // once the new binary is loaded, and the woken parent usually preempts the child before).
  // The child's exec is replayed where it last ran: now, if it is running, else just before
  // the step that switched it out.
  void ExecBeforeParentWakes(int32_t child) {
    PlanTask& c = tasks_[child];
    if (c.exec_event < 0 || c.state == RunState::kDead || c.exiting) {
      DetachVfork(child);
      return;
    }
    int at;
    int cpu;
    if (c.state == RunState::kRunning) {
      at = static_cast<int>(out_.scenario.program.size());
      cpu = c.cpu;
    } else if (c.last_switch_out >= 0) {
      at = c.last_switch_out;
      cpu = static_cast<int>(out_.scenario.program[at].cpu);
    } else {
      DetachVfork(child);  // it never ran: nothing to place
      return;
    }
    const TraceEvent& ex = events_[c.exec_event];
    absl::StatusOr<int32_t> mm = NewMm(
        absl::StrFormat("%s-%d@%d", ex.filename.empty() ? ex.comm : ex.filename, ex.pid, ex.line));
    if (!mm.ok()) {
      DetachVfork(child);
      return;
    }
    abi::Step s = MakeStep(abi::StepOp::kExec, cpu, child);
    s.mm = *mm;
    s.pages = kReplayPages;
    at = BeforeTrailingFlushes(at, cpu, child, *mm);
    if (at < static_cast<int>(out_.scenario.program.size())) {
      s.index = out_.scenario.program[at].index;
      s.flags = out_.scenario.program[at].flags;
    }
    Insert(at, s);
    c.mm = *mm;
    c.kthread = false;
    c.exec_done_early = true;
    ++out_.stats.execs_at_vfork_wakeup;
    DetachVfork(child);
  }

  // Inserts a step into the program already planned: the steps from `at` on move up one.
  void Insert(int at, const abi::Step& s) {
    std::vector<abi::Step>& prog = out_.scenario.program;
    prog.insert(prog.begin() + at, s);
    for (ReplaySwitch& r : out_.switches) {
      if (r.step >= at) ++r.step;
    }
    for (PlanTask& t : tasks_) {
      if (t.last_switch_out >= at) ++t.last_switch_out;
    }
    ++last_verify_;
  }

  void ExitTask(int cpu, int32_t t) {
    abi::Step s = MakeStep(abi::StepOp::kExit, cpu, t);
    s.arg = abi::kExitKeepsRunning;
    Emit(s);
    PlanTask& task = tasks_[t];
    task.mm = abi::kNoMm;
    task.exiting = true;
  }

  absl::Status Exit(const TraceEvent& e) {
    bool ok = false;
    absl::StatusOr<int32_t> t = EnsureCurrent(e, &ok);
    if (!t.ok()) return t.status();
    if (!ok) return absl::OkStatus();
    if (*t < dir_.trace.num_cpus || tasks_[*t].exiting || tasks_[*t].exit_pending) {
      Skip(e, "not a task that can exit here");
      return absl::OkStatus();
    }
    DetachVfork(*t);
    ++out_.stats.exits;
    // sched_process_exit is traced before exit_mm. When need-resched was already set there
    // (flags "?N...") and the next thing its CPU shows is this task preempted, the preemption
    // came first (perf_event_exit_task, before exit_mm, has the first preemption point), and
    // exit_mm runs once the task is switched back in.
    const int j = next_on_cpu_[event_];
    if (e.flags.size() > 1 && e.flags[1] == 'N' && j >= 0 &&
        events_[j].kind == TraceEventKind::kSwitch && events_[j].prev_pid == e.pid &&
        !events_[j].prev_state.empty() && events_[j].prev_state[0] == 'R') {
      tasks_[*t].exit_pending = true;
      ++out_.stats.exits_after_preemption;
      return absl::OkStatus();
    }
    ExitTask(e.cpu, *t);
    return absl::OkStatus();
  }

  const TraceDir& dir_;
  const std::vector<TraceEvent>& events_;
  const ReplayPlanOptions& options_;
  ReplayPlan& out_;
  int event_ = 0;  // the event being applied (every step it emits carries it as its index)
  int last_verify_ = 0;
  std::vector<PlanTask> tasks_;    // guest task index -> task; 0..cpus-1 are the idle tasks
  std::map<int, int32_t> by_pid_;  // live tasks (not idle)
  std::vector<int32_t> curr_;      // per CPU
  std::vector<bool> local_half_;   // flush lines that are the local half of a reason 4 before them
  std::map<int, int32_t> open_flushes_;  // flush events begun and not finished -> their task
  std::map<int, int> tgid_;
  std::map<int, std::vector<int>> execs_;  // pid -> its exec events
  std::vector<int> next_on_cpu_;
  std::vector<std::pair<int, int>> order_;  // (event, half) in the order they are applied
  std::vector<int> pos_;                  // event index -> the place of its (first) entry in order_
  int cur_pos_ = 0;                       // the entry being applied
  std::vector<std::vector<int>> on_cpu_;  // per CPU: its events in order (reason 0 left out)
  std::set<int> dup_forks_;               // fork events whose dup_mmap flush was recognised
};

}  // namespace

absl::StatusOr<ReplayPlan> PlanReplay(const TraceDir& dir, const ReplayPlanOptions& options) {
  ReplayPlan plan;
  Planner planner(dir, options, &plan);
  if (absl::Status s = planner.Run(); !s.ok()) return s;
  if (options.parallel_blocks && !options.verify_every_step) {
    ParallelBlocks blocks = FormParallelBlocks(plan.scenario.program, plan.scenario.cpus);
    plan.scenario.program = std::move(blocks.program);
    for (ReplaySwitch& r : plan.switches) {
      if (r.step >= 0) r.step = blocks.new_index[r.step];
    }
    plan.stats.parallel_blocks = blocks.blocks;
    plan.stats.steps_in_parallel_blocks = blocks.steps_in_blocks;
  }
  return plan;
}

}  // namespace activemm
