#include "vmm/replay/parallel_blocks.h"

#include <algorithm>
#include <map>

namespace activemm {
namespace {

// What the program has done so far, as far as independence needs it: who runs where, which
// mm each task owns, which mm each CPU has loaded, and which mms still have an owner.
class ProgramState {
 public:
  explicit ProgramState(int cpus) : curr_(cpus), loaded_(cpus, abi::kInitMm), late_(cpus) {
    for (int c = 0; c < cpus; ++c) {
      curr_[c] = c;  // the idle tasks
      Grow(c);
      kthread_[c] = true;
    }
  }

  uint32_t Cpus() const { return static_cast<uint32_t>(curr_.size()); }
  int32_t Curr(uint32_t cpu) const { return curr_[cpu]; }
  int32_t Loaded(uint32_t cpu) const { return loaded_[cpu]; }
  bool LatePending(uint32_t cpu) const { return late_[cpu]; }
  int32_t MmOf(int32_t task) const {
    return task >= 0 && static_cast<size_t>(task) < mm_.size() ? mm_[task] : abi::kNoMm;
  }
  // Whether a switch to `task` returns to ring 3 (a user task with an mm): its ring-3 burst
  // uses its mm's control page and user stack (guest/programs/user_burst.cc).
  bool ReturnsToUser(int32_t task) const {
    return MmOf(task) != abi::kNoMm &&
           !(static_cast<size_t>(task) < kthread_.size() && kthread_[task]);
  }
  bool Owned(int32_t mm) const {
    return mm >= 0 && static_cast<size_t>(mm) < users_.size() && users_[mm] > 0;
  }

  void Apply(const abi::Step& s) {
    const uint32_t c = s.cpu;
    if (c >= Cpus()) return;  // not a step of this program's CPUs: nothing to follow
    switch (static_cast<abi::StepOp>(s.op)) {
      case abi::StepOp::kSpawn:
      case abi::StepOp::kFork:
        SetMm(s.task, s.mm);
        kthread_[s.task] = false;
        break;
      case abi::StepOp::kCloneVm:
        SetMm(s.task, MmOf(s.parent));
        kthread_[s.task] = false;
        break;
      case abi::StepOp::kKthread:
        SetMm(s.task, abi::kNoMm);
        kthread_[s.task] = true;
        break;
      case abi::StepOp::kRun:
      case abi::StepOp::kIdle: {
        const int32_t next =
            s.op == static_cast<uint32_t>(abi::StepOp::kIdle) ? static_cast<int32_t>(c) : s.task;
        curr_[c] = next;
        // A kernel thread keeps what was loaded (lazy TLB); where it loads init_mm instead
        // (lazy TLB off), the mm kept here only makes the claims wider.
        if (MmOf(next) != abi::kNoMm) loaded_[c] = MmOf(next);
        late_[c] = false;
        break;
      }
      case abi::StepOp::kExec:
        SetMm(s.task, s.mm);
        loaded_[c] = s.mm;
        late_[c] = false;
        break;
      case abi::StepOp::kExit:
        SetMm(s.task, abi::kNoMm);
        if (s.arg != abi::kExitKeepsRunning) curr_[c] = static_cast<int32_t>(c);
        late_[c] = false;
        break;
      case abi::StepOp::kUseMm:
        // kthread_use_mm: the mm is borrowed (mm_count), not owned (mm_users).
        Grow(s.task);
        mm_[s.task] = s.mm;
        loaded_[c] = s.mm;
        late_[c] = false;
        break;
      case abi::StepOp::kUnuseMm:
        Grow(s.task);
        mm_[s.task] = abi::kNoMm;
        late_[c] = false;
        break;
      case abi::StepOp::kFlush: {
        const uint64_t late = s.late_ipi_cpus;
        for (size_t cpu = 0; cpu < late_.size() && cpu < 64; ++cpu) {
          if (late & (uint64_t{1} << cpu)) late_[cpu] = true;
        }
        late_[c] = false;
        break;
      }
      case abi::StepOp::kMmap:
      case abi::StepOp::kMunmap:
      case abi::StepOp::kMprotect:
        late_[c] = false;
        break;
      case abi::StepOp::kVerify:
      case abi::StepOp::kParallel:
        break;
    }
  }

 private:
  void Grow(int32_t task) {
    if (static_cast<size_t>(task) >= mm_.size()) mm_.resize(task + 1, abi::kNoMm);
    if (static_cast<size_t>(task) >= owner_.size()) owner_.resize(task + 1, false);
    if (static_cast<size_t>(task) >= kthread_.size()) kthread_.resize(task + 1, false);
  }

  // Task `task` owns `mm` from now on (kNoMm: none), as mm_users counts owners.
  void SetMm(int32_t task, int32_t mm) {
    if (task < 0) return;
    Grow(task);
    if (owner_[task] && mm_[task] > abi::kInitMm) --users_[mm_[task]];
    mm_[task] = mm;
    owner_[task] = mm > abi::kInitMm;
    if (owner_[task]) {
      if (static_cast<size_t>(mm) >= users_.size()) users_.resize(mm + 1, 0);
      ++users_[mm];
    }
  }

  std::vector<int32_t> curr_;    // per CPU
  std::vector<int32_t> loaded_;  // per CPU: the mm its CR3 holds (init_mm at boot)
  std::vector<bool> late_;       // per CPU: a late flush IPI lands after its next step
  std::vector<int32_t> mm_;      // per task: its mm (owned, or used by a kernel thread)
  std::vector<bool> owner_;      // per task: counted in users_ of its mm
  std::vector<bool> kthread_;    // per task: a kernel thread (idle tasks included)
  std::vector<int> users_;       // per mm: owning tasks (mm_users, as far as it matters)
};

// A block wakes every CPU at its start and waits for the last at its end, where steps run one
// at a time kick only the next step's CPU: a short block costs more than it saves.
size_t MinBlockSteps(int cpus) { return std::max<size_t>(8, 2 * static_cast<size_t>(cpus)); }

bool IsSwitch(const abi::Step& s) {
  return s.op == static_cast<uint32_t>(abi::StepOp::kRun) ||
         s.op == static_cast<uint32_t>(abi::StepOp::kIdle);
}

// The block being formed: its steps, and which CPU claimed each task and each mm whose tasks
// go back to ring 3.
class Block {
 public:
  // What step `s` claims: the task it leaves, the task it runs and, when that one goes back to
  // ring 3, its mm (else kNoMm). False when the step cannot run in any block.
  static bool Claims(const abi::Step& s, const ProgramState& st, int32_t tasks[2],
                     int32_t* user_mm) {
    if (!IsSwitch(s) || s.arg != 0 || s.flags != 0 || s.cpu >= st.Cpus() || st.LatePending(s.cpu)) {
      return false;
    }
    tasks[0] = st.Curr(s.cpu);
    tasks[1] =
        s.op == static_cast<uint32_t>(abi::StepOp::kIdle) ? static_cast<int32_t>(s.cpu) : s.task;
    for (int32_t m : {st.Loaded(s.cpu), st.MmOf(tasks[0]), st.MmOf(tasks[1])}) {
      if (m > abi::kInitMm && !st.Owned(m)) return false;  // its last reference may drop here
    }
    *user_mm = st.ReturnsToUser(tasks[1]) ? st.MmOf(tasks[1]) : abi::kNoMm;
    return true;
  }

  bool Fits(uint32_t cpu, const int32_t tasks[2], int32_t user_mm) const {
    if (steps_.size() >= kMaxParallelBlockSteps) return false;
    auto free_for = [cpu](const std::map<int32_t, uint32_t>& owner, int32_t what) {
      auto it = owner.find(what);
      return it == owner.end() || it->second == cpu;
    };
    return free_for(task_owner_, tasks[0]) && free_for(task_owner_, tasks[1]) &&
           (user_mm == abi::kNoMm || free_for(user_mm_owner_, user_mm));
  }

  void Add(int old_index, const abi::Step& s, const int32_t tasks[2], int32_t user_mm) {
    steps_.push_back(old_index);
    cpus_ |= uint64_t{1} << (s.cpu % 64);
    for (int k = 0; k < 2; ++k) task_owner_.emplace(tasks[k], s.cpu);
    if (user_mm != abi::kNoMm) user_mm_owner_.emplace(user_mm, s.cpu);
  }

  // Appends the block to `out` (with its head when two CPUs at least take part) and empties it.
  void Flush(const std::vector<abi::Step>& program, int cpus, ParallelBlocks* out) {
    if (steps_.empty()) return;
    const bool parallel = (cpus_ & (cpus_ - 1)) != 0 && steps_.size() >= MinBlockSteps(cpus);
    if (parallel) {
      abi::Step head{};
      head.op = static_cast<uint32_t>(abi::StepOp::kParallel);
      head.task = abi::kNoTask;
      head.parent = abi::kNoTask;
      head.mm = abi::kNoMm;
      head.index = program[steps_.front()].index;
      head.arg = static_cast<uint32_t>(steps_.size());
      out->program.push_back(head);
      ++out->blocks;
      out->steps_in_blocks += static_cast<int>(steps_.size());
    }
    for (int i : steps_) {
      out->new_index[i] = static_cast<int>(out->program.size());
      out->program.push_back(program[i]);
    }
    steps_.clear();
    cpus_ = 0;
    task_owner_.clear();
    user_mm_owner_.clear();
  }

 private:
  std::vector<int> steps_;  // old indices
  uint64_t cpus_ = 0;
  std::map<int32_t, uint32_t> task_owner_;
  std::map<int32_t, uint32_t> user_mm_owner_;
};

}  // namespace

ParallelBlocks FormParallelBlocks(const std::vector<abi::Step>& program, int cpus) {
  ParallelBlocks out;
  out.new_index.assign(program.size(), -1);
  out.program.reserve(program.size() + program.size() / 16);
  ProgramState state(cpus);
  Block block;
  int32_t tasks[2];
  int32_t user_mm = abi::kNoMm;
  for (size_t i = 0; i < program.size(); ++i) {
    const abi::Step& s = program[i];
    if (Block::Claims(s, state, tasks, &user_mm)) {
      if (!block.Fits(s.cpu, tasks, user_mm)) block.Flush(program, cpus, &out);
      block.Add(static_cast<int>(i), s, tasks, user_mm);
    } else {
      block.Flush(program, cpus, &out);
      out.new_index[i] = static_cast<int>(out.program.size());
      out.program.push_back(s);
    }
    state.Apply(s);
  }
  block.Flush(program, cpus, &out);
  return out;
}

}  // namespace activemm
