#include "vmm/model/scenario.h"

#include <stddef.h>
#include <stdint.h>

#include <algorithm>
#include <functional>
#include <initializer_list>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"
#include "shared/abi.h"
#include "shared/mm_abi.h"

// Validation helpers return a Status whose message is only the reason; the step loop adds the
// "SOURCE: step N (OP): " prefix, so every helper can stay ignorant of where it is called from.
#define SCENARIO_RETURN_IF_ERROR(expr)                   \
  do {                                                   \
    absl::Status scenario_status_ = (expr);              \
    if (!scenario_status_.ok()) return scenario_status_; \
  } while (0)

#define SCENARIO_ASSIGN_OR_RETURN(lhs, expr) \
  SCENARIO_ASSIGN_OR_RETURN_IMPL(SCENARIO_CONCAT(scenario_or_, __LINE__), lhs, expr)
#define SCENARIO_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                   \
  if (!tmp.ok()) return std::move(tmp).status();       \
  lhs = *std::move(tmp)
#define SCENARIO_CONCAT(a, b) SCENARIO_CONCAT_INNER(a, b)
#define SCENARIO_CONCAT_INNER(a, b) a##b

namespace activemm {

const std::vector<std::string>& MmCounterNames() {
  static const std::vector<std::string>* const kNames = new std::vector<std::string>{
#define ACTIVEMM_MM_COUNTER_NAME(name) #name,
      ACTIVEMM_MM_COUNTERS(ACTIVEMM_MM_COUNTER_NAME)
#undef ACTIVEMM_MM_COUNTER_NAME
  };
  return *kNames;
}

namespace {

using json = nlohmann::json;

constexpr int kMinCpus = 1;
constexpr int kMaxCpus = static_cast<int>(abi::kMaxCpus);
constexpr int kMaxSpawnPages = 32;  // spawn and exec: the initial data pages
constexpr int kDefaultSpawnPages = 4;
constexpr int kDefaultMapPages = 1;  // mmap, munmap, mprotect
constexpr int kMaxPageEntries = static_cast<int>(abi::kMaxUserPages);
constexpr size_t kMaxValueChars = 40;  // of a JSON value quoted in a message

absl::Status Invalid(absl::string_view reason) { return absl::InvalidArgumentError(reason); }

// A JSON value for a message: its type and, shortened, its text, so the user sees what was
// actually there ("string \"4\"", "number 2.5").
std::string Describe(const json& value) {
  std::string text = value.dump();
  if (text.size() > kMaxValueChars) text = text.substr(0, kMaxValueChars) + "...";
  if (value.is_null()) return "null";
  if (value.is_object()) return "an object";
  if (value.is_array()) return absl::StrCat("array ", text);
  return absl::StrCat(value.type_name(), " ", text);
}

std::string Quote(const std::string& s) { return absl::StrCat("'", s, "'"); }

absl::Status CheckFields(const json& object, std::initializer_list<const char*> allowed,
                         const std::string& what) {
  for (const auto& [key, value] : object.items()) {
    if (std::none_of(allowed.begin(), allowed.end(),
                     [&key = key](const char* a) { return key == a; })) {
      return Invalid(absl::StrFormat("unknown field %s (%s takes: %s)", Quote(key), what,
                                     absl::StrJoin(allowed, ", ")));
    }
  }
  return absl::OkStatus();
}

// Integers only: a JSON 2.0 or "2" is a type error, not something to convert.
absl::StatusOr<std::optional<int64_t>> OptionalInt(const json& object, const char* field,
                                                   int64_t min, int64_t max) {
  auto it = object.find(field);
  if (it == object.end()) return std::optional<int64_t>();
  if (!it->is_number_integer()) {
    return Invalid(absl::StrFormat("field '%s' must be an integer, got %s", field, Describe(*it)));
  }
  // Unsigned values beyond int64_t would wrap in get<int64_t>(); they are out of range anyway.
  if (it->is_number_unsigned() &&
      it->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return Invalid(
        absl::StrFormat("field '%s' is %s, must be %d..%d", field, it->dump(), min, max));
  }
  int64_t v = it->get<int64_t>();
  if (v < min || v > max) {
    return Invalid(absl::StrFormat("field '%s' is %d, must be %d..%d", field, v, min, max));
  }
  return std::optional<int64_t>(v);
}

absl::StatusOr<int64_t> RequiredInt(const json& object, const char* field, int64_t min,
                                    int64_t max) {
  if (!object.contains(field)) return Invalid(absl::StrFormat("missing field '%s'", field));
  SCENARIO_ASSIGN_OR_RETURN(std::optional<int64_t> v, OptionalInt(object, field, min, max));
  return *v;
}

absl::StatusOr<std::optional<bool>> OptionalBool(const json& object, const char* field) {
  auto it = object.find(field);
  if (it == object.end()) return std::optional<bool>();
  if (!it->is_boolean()) {
    return Invalid(
        absl::StrFormat("field '%s' must be true or false, got %s", field, Describe(*it)));
  }
  return std::optional<bool>(it->get<bool>());
}

// A check's mode filter: `field` ("lazy_tlb" or "pcid") holds true, false, a mode name or a
// list of mode names; absent means every mode. `names` maps each name to its mode bits, and
// true / false to the bits they stand for.
absl::StatusOr<uint32_t> ModeFilter(const json& object, const char* field,
                                    const std::vector<std::pair<std::string, uint32_t>>& names,
                                    uint32_t every, uint32_t if_true, uint32_t if_false) {
  auto it = object.find(field);
  if (it == object.end()) return every;
  if (it->is_boolean()) return it->get<bool>() ? if_true : if_false;
  std::vector<std::string> choices;
  for (const auto& [name, bits] : names) choices.push_back(Quote(name));
  const std::string expected =
      absl::StrFormat("true, false, one of %s, or a list of them", absl::StrJoin(choices, ", "));
  auto lookup = [&](const json& v) -> absl::StatusOr<uint32_t> {
    if (v.is_string()) {
      for (const auto& [name, bits] : names) {
        if (v.get<std::string>() == name) return bits;
      }
    }
    return Invalid(absl::StrFormat("field '%s' must be %s, got %s", field, expected, Describe(v)));
  };
  if (!it->is_array()) return lookup(*it);
  if (it->empty()) {
    return Invalid(
        absl::StrFormat("field '%s' is an empty list: the step would apply in no mode", field));
  }
  uint32_t bits = 0;
  for (const json& v : *it) {
    SCENARIO_ASSIGN_OR_RETURN(uint32_t b, lookup(v));
    bits |= b;
  }
  return bits;
}

// "lazy_tlb": true is lazy TLB on (not shootdown, whose lazy users hold no reference), false
// off.
absl::StatusOr<uint32_t> LazyModeFilter(const json& step) {
  static const std::vector<std::pair<std::string, uint32_t>> kNames = {
      {"on", ModeBit(abi::LazyMode::kOn)},
      {"shootdown", ModeBit(abi::LazyMode::kShootdown)},
      {"off", ModeBit(abi::LazyMode::kOff)}};
  return ModeFilter(step, "lazy_tlb", kNames, kEveryLazyMode, ModeBit(abi::LazyMode::kOn),
                    ModeBit(abi::LazyMode::kOff));
}

// "pcid": true is PCIDs in use (real or modeled: both make the same decisions), false none.
absl::StatusOr<uint32_t> PcidModeFilter(const json& step) {
  constexpr uint32_t kWithPcid =
      ModeBit(abi::PcidMode::kHardware) | ModeBit(abi::PcidMode::kModeled);
  static const std::vector<std::pair<std::string, uint32_t>> kNames = {
      {"hardware", ModeBit(abi::PcidMode::kHardware)},
      {"modeled", ModeBit(abi::PcidMode::kModeled)},
      {"off", ModeBit(abi::PcidMode::kOff)}};
  return ModeFilter(step, "pcid", kNames, kEveryPcidMode, kWithPcid, ModeBit(abi::PcidMode::kOff));
}

absl::StatusOr<std::optional<std::string>> OptionalName(const json& object, const char* field) {
  auto it = object.find(field);
  if (it == object.end()) return std::optional<std::string>();
  if (!it->is_string()) {
    return Invalid(absl::StrFormat("field '%s' must be a string, got %s", field, Describe(*it)));
  }
  std::string s = it->get<std::string>();
  if (s.empty()) return Invalid(absl::StrFormat("field '%s' must not be empty", field));
  return std::optional<std::string>(std::move(s));
}

absl::StatusOr<std::string> RequiredName(const json& object, const char* field) {
  if (!object.contains(field)) return Invalid(absl::StrFormat("missing field '%s'", field));
  SCENARIO_ASSIGN_OR_RETURN(std::optional<std::string> s, OptionalName(object, field));
  return *std::move(s);
}

// The first key that appears twice in one JSON object. nlohmann::json keeps the last value
// silently, which would hide a typo-like mistake ("pages" given twice), so the parser callback
// records it. step is the index in "steps" it occurred in, or -1 outside the steps.
struct DuplicateKey {
  std::string key;
  int step = -1;
};

// A SAX pass of its own: nlohmann's parse callback made parsing quadratic in the number of
// steps (a million-step scenario took minutes), its SAX interface stays linear.
class DuplicateKeyFinder : public nlohmann::json_sax<json> {
 public:
  bool null() override { return Value(); }
  bool boolean(bool) override { return Value(); }
  bool number_integer(json::number_integer_t) override { return Value(); }
  bool number_unsigned(json::number_unsigned_t) override { return Value(); }
  bool number_float(json::number_float_t, const json::string_t&) override { return Value(); }
  bool string(json::string_t&) override { return Value(); }
  bool binary(json::binary_t&) override { return Value(); }
  bool start_object(std::size_t) override {
    Value();
    ++depth_;
    keys_.emplace_back();
    return true;
  }
  bool end_object() override {
    --depth_;
    if (!keys_.empty()) keys_.pop_back();
    return true;
  }
  bool start_array(std::size_t) override {
    Value();
    ++depth_;
    return true;
  }
  bool end_array() override {
    --depth_;
    return true;
  }
  bool key(json::string_t& key) override {
    if (depth_ == 1) top_level_key_ = key;
    if (!keys_.empty() && !keys_.back().insert(key).second && !found_) {
      found_ = DuplicateKey{key, depth_ >= 3 && InSteps() ? steps_seen_ - 1 : -1};
    }
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override {
    return false;  // json::parse, run first, has reported it
  }

  const std::optional<DuplicateKey>& found() const { return found_; }

 private:
  // A value or container that starts while only the top-level object and its "steps" array are
  // open is a step.
  bool InSteps() const { return top_level_key_ == "steps"; }
  bool Value() {
    if (depth_ == 2 && InSteps()) ++steps_seen_;
    return true;
  }

  int depth_ = 0;  // containers open
  std::vector<std::set<std::string>> keys_;
  std::string top_level_key_;
  int steps_seen_ = 0;
  std::optional<DuplicateKey> found_;
};

// The host-side structural model: who exists, who runs where, who owns which mm. Reference
// counts beyond mm_users and all TLB state are the guest's business; this model only has to
// know enough to reject a step Linux could not execute.
struct ModelTask {
  std::string name;
  bool alive = true;
  bool kthread = false;   // PF_KTHREAD (idle tasks and kthread-created tasks until they exec)
  bool using_mm = false;  // between kthread_use_mm and kthread_unuse_mm
  int32_t mm = abi::kNoMm;
  int on_cpu = -1;
  int exec_count = 0;
};

struct ModelMm {
  std::string name;
  int users = 0;    // mm_users: live tasks that own it (a kthread_use_mm borrower does not)
  int entries = 0;  // page entries, mapped and unmapped
  int mapped = 0;
};

class Compiler {
 public:
  Compiler(const CompileOptions& options, Scenario* out) : options_(options), out_(*out) {}

  void Start() {
    for (int c = 0; c < out_.cpus; ++c) {
      ModelTask idle;
      idle.name = absl::StrCat("idle/", c);
      idle.kthread = true;
      idle.on_cpu = c;
      tasks_.push_back(idle);
      out_.task_names.push_back(idle.name);
      curr_.push_back(c);
    }
    mms_.push_back(ModelMm{"init_mm"});
    mm_by_name_["init_mm"] = abi::kInitMm;
    out_.mm_names.push_back("init_mm");
  }

  absl::Status Step(int index, const json& step) {
    if (!step.is_object()) {
      return Invalid(absl::StrFormat("a step must be a JSON object, got %s", Describe(step)));
    }
    auto op_it = step.find("op");
    if (op_it == step.end()) return Invalid("missing field 'op'");
    if (!op_it->is_string()) {
      return Invalid(absl::StrFormat("field 'op' must be a string, got %s", Describe(*op_it)));
    }
    const std::string op = op_it->get<std::string>();
    index_ = index;
    if (op == "spawn") return Spawn(step);
    if (op == "clone_vm") return CloneOrFork(step, /*fork=*/false);
    if (op == "fork") return CloneOrFork(step, /*fork=*/true);
    if (op == "kthread") return Kthread(step);
    if (op == "run") return Run(step);
    if (op == "idle") return Idle(step);
    if (op == "exec") return Exec(step);
    if (op == "exit") return Exit(step);
    if (op == "use_mm") return UseMm(step);
    if (op == "unuse_mm") return UnuseMm(step);
    if (op == "mmap" || op == "munmap" || op == "mprotect") return PageOp(step, op);
    if (op == "check") return Check(step);
    if (op == "counters") return Counters(step);
    if (op == "checkpoint") return Checkpoint(step);
    if (op == "parallel") {
      if (block_cpu_ >= 0) return Invalid("a parallel block cannot contain another");
      return Parallel(step);
    }
    return Invalid(absl::StrFormat(
        "unknown op %s (ops: spawn, clone_vm, fork, kthread, run, idle, exec, exit, use_mm, "
        "unuse_mm, mmap, munmap, mprotect, check, counters, checkpoint, parallel)",
        Quote(op)));
  }

  void Finish() {
    HostCheck final_check;
    final_check.kind = HostCheck::Kind::kFinal;
    final_check.step_index = -1;
    // The final pass runs after the last file step, so it carries the index one past it.
    AddVerify(std::move(final_check), static_cast<int>(out_.step_ops.size()));
  }

 private:
  // ---- steps that create ----

  absl::Status Spawn(const json& step) {
    SCENARIO_RETURN_IF_ERROR(CheckFields(step, {"op", "task", "pages", "cpu"}, "spawn"));
    SCENARIO_ASSIGN_OR_RETURN(std::string name, RequiredName(step, "task"));
    SCENARIO_ASSIGN_OR_RETURN(std::optional<int64_t> pages,
                              OptionalInt(step, "pages", 1, kMaxSpawnPages));
    SCENARIO_ASSIGN_OR_RETURN(std::optional<int> cpu, OptionalCpu(step, "cpu"));
    SCENARIO_RETURN_IF_ERROR(CheckNewTaskName(name));
    int n = static_cast<int>(pages.value_or(kDefaultSpawnPages));
    SCENARIO_ASSIGN_OR_RETURN(int32_t mm, NewMm(name, n, n));
    int32_t task = NewTask(name, /*kthread=*/false, mm);
    abi::Step s = ModelStep(abi::StepOp::kSpawn, cpu.value_or(ExecCpu(0)), task);
    s.mm = mm;
    s.pages = static_cast<uint32_t>(n);
    Emit(s);
    return absl::OkStatus();
  }

  absl::Status CloneOrFork(const json& step, bool fork) {
    const char* op = fork ? "fork" : "clone_vm";
    SCENARIO_RETURN_IF_ERROR(CheckFields(step, {"op", "parent", "task"}, op));
    SCENARIO_ASSIGN_OR_RETURN(std::string parent_name, RequiredName(step, "parent"));
    SCENARIO_ASSIGN_OR_RETURN(std::string name, RequiredName(step, "task"));
    SCENARIO_ASSIGN_OR_RETURN(int32_t parent, FindTask(parent_name));
    SCENARIO_RETURN_IF_ERROR(RequireAlive(parent));
    const ModelTask& p = tasks_[parent];
    if (p.mm == abi::kNoMm || p.using_mm) {
      return Invalid(
          absl::StrFormat("parent %s is a kernel thread, not a user task", Quote(p.name)));
    }
    SCENARIO_RETURN_IF_ERROR(CheckNewTaskName(name));
    int32_t parent_mm = p.mm;
    int cpu = p.on_cpu >= 0 ? p.on_cpu : ExecCpu(0);
    abi::Step s{};
    if (fork) {
      // dup_mm copies every entry, unmapped ones included (they stay listed in the child too).
      const ModelMm& src = mms_[parent_mm];
      SCENARIO_ASSIGN_OR_RETURN(int32_t mm, NewMm(name, src.entries, src.mapped));
      s = ModelStep(abi::StepOp::kFork, cpu, NewTask(name, /*kthread=*/false, mm));
      s.mm = mm;
    } else {
      ++mms_[parent_mm].users;
      s = ModelStep(abi::StepOp::kCloneVm, cpu, NewTask(name, /*kthread=*/false, parent_mm));
    }
    s.parent = parent;
    Emit(s);
    return absl::OkStatus();
  }

  absl::Status Kthread(const json& step) {
    SCENARIO_RETURN_IF_ERROR(CheckFields(step, {"op", "task"}, "kthread"));
    SCENARIO_ASSIGN_OR_RETURN(std::string name, RequiredName(step, "task"));
    SCENARIO_RETURN_IF_ERROR(CheckNewTaskName(name));
    Emit(ModelStep(abi::StepOp::kKthread, ExecCpu(0), NewTask(name, /*kthread=*/true, abi::kNoMm)));
    return absl::OkStatus();
  }

  // ---- scheduling ----

  absl::Status Run(const json& step) {
    SCENARIO_RETURN_IF_ERROR(CheckFields(step, {"op", "cpu", "task"}, "run"));
    SCENARIO_ASSIGN_OR_RETURN(int cpu, RequiredCpu(step, "cpu"));
    SCENARIO_ASSIGN_OR_RETURN(std::string name, RequiredName(step, "task"));
    SCENARIO_ASSIGN_OR_RETURN(int32_t task, FindTask(name));
    SCENARIO_RETURN_IF_ERROR(RequireAlive(task));
    const ModelTask& t = tasks_[task];
    if (t.on_cpu == cpu) {
      return Invalid(absl::StrFormat("task %s is already running on CPU %d", Quote(name), cpu));
    }
    if (t.on_cpu >= 0) {
      return Invalid(absl::StrFormat("task %s is running on CPU %d", Quote(name), t.on_cpu));
    }
    SwitchTo(cpu, task);
    Emit(ModelStep(abi::StepOp::kRun, cpu, task));
    return absl::OkStatus();
  }

  absl::Status Idle(const json& step) {
    SCENARIO_RETURN_IF_ERROR(CheckFields(step, {"op", "cpu"}, "idle"));
    SCENARIO_ASSIGN_OR_RETURN(int cpu, RequiredCpu(step, "cpu"));
    if (curr_[cpu] == cpu) return Invalid(absl::StrFormat("CPU %d is already idle", cpu));
    SwitchTo(cpu, cpu);
    Emit(ModelStep(abi::StepOp::kIdle, cpu, cpu));
    return absl::OkStatus();
  }

  // ---- steps of the current task ----

  absl::Status Exec(const json& step) {
    SCENARIO_RETURN_IF_ERROR(CheckFields(step, {"op", "task", "pages"}, "exec"));
    SCENARIO_ASSIGN_OR_RETURN(int32_t task, CurrentTask(step));
    SCENARIO_ASSIGN_OR_RETURN(std::optional<int64_t> pages,
                              OptionalInt(step, "pages", 1, kMaxSpawnPages));
    ModelTask& t = tasks_[task];
    if (t.using_mm) {
      return Invalid(absl::StrFormat(
          "kernel thread %s is between use_mm and unuse_mm (of mm %s) and cannot exec",
          Quote(t.name), Quote(mms_[t.mm].name)));
    }
    int n = static_cast<int>(pages.value_or(kDefaultSpawnPages));
    SCENARIO_ASSIGN_OR_RETURN(int32_t mm,
                              NewMm(absl::StrCat(t.name, ".exec", t.exec_count + 1), n, n));
    ++t.exec_count;
    if (t.mm != abi::kNoMm) DropUser(t.mm);
    t.mm = mm;
    t.kthread = false;  // a kernel thread that execs becomes a user task
    abi::Step s = ModelStep(abi::StepOp::kExec, t.on_cpu, task);
    s.mm = mm;
    s.pages = static_cast<uint32_t>(n);
    Emit(s);
    return absl::OkStatus();
  }

  absl::Status Exit(const json& step) {
    SCENARIO_RETURN_IF_ERROR(CheckFields(step, {"op", "task"}, "exit"));
    SCENARIO_ASSIGN_OR_RETURN(int32_t task, CurrentTask(step));
    ModelTask& t = tasks_[task];
    if (t.using_mm) {
      return Invalid(absl::StrFormat(
          "kernel thread %s is between use_mm and unuse_mm (of mm %s) and cannot exit",
          Quote(t.name), Quote(mms_[t.mm].name)));
    }
    int cpu = t.on_cpu;
    if (t.mm != abi::kNoMm) DropUser(t.mm);
    t.mm = abi::kNoMm;
    t.alive = false;
    SwitchTo(cpu, cpu);  // the exiting task's CPU switches to its idle task
    Emit(ModelStep(abi::StepOp::kExit, cpu, task));
    return absl::OkStatus();
  }

  absl::Status UseMm(const json& step) {
    SCENARIO_RETURN_IF_ERROR(CheckFields(step, {"op", "task", "mm"}, "use_mm"));
    SCENARIO_ASSIGN_OR_RETURN(int32_t task, CurrentTask(step));
    SCENARIO_ASSIGN_OR_RETURN(std::string mm_name, RequiredName(step, "mm"));
    ModelTask& t = tasks_[task];
    if (!t.kthread) {
      return Invalid(absl::StrFormat("task %s is a user task, not a kernel thread", Quote(t.name)));
    }
    if (t.using_mm) {
      return Invalid(absl::StrFormat("kernel thread %s is already using mm %s", Quote(t.name),
                                     Quote(mms_[t.mm].name)));
    }
    SCENARIO_ASSIGN_OR_RETURN(int32_t mm, FindMm(mm_name));
    if (mm == abi::kInitMm) {
      return Invalid("use_mm of mm 'init_mm': kthread_use_mm takes a user mm");
    }
    if (mms_[mm].users == 0) {
      return Invalid(absl::StrFormat("mm %s has no users (mm_users is 0)", Quote(mm_name)));
    }
    t.using_mm = true;
    t.mm = mm;
    abi::Step s = ModelStep(abi::StepOp::kUseMm, t.on_cpu, task);
    s.mm = mm;
    Emit(s);
    return absl::OkStatus();
  }

  absl::Status UnuseMm(const json& step) {
    SCENARIO_RETURN_IF_ERROR(CheckFields(step, {"op", "task"}, "unuse_mm"));
    SCENARIO_ASSIGN_OR_RETURN(int32_t task, CurrentTask(step));
    ModelTask& t = tasks_[task];
    if (!t.kthread) {
      return Invalid(absl::StrFormat("task %s is a user task, not a kernel thread", Quote(t.name)));
    }
    if (!t.using_mm) {
      return Invalid(absl::StrFormat("kernel thread %s is not using an mm", Quote(t.name)));
    }
    t.using_mm = false;
    t.mm = abi::kNoMm;
    Emit(ModelStep(abi::StepOp::kUnuseMm, t.on_cpu, task));
    return absl::OkStatus();
  }

  absl::Status PageOp(const json& step, const std::string& op) {
    const bool mprotect = op == "mprotect";
    if (mprotect) {
      SCENARIO_RETURN_IF_ERROR(CheckFields(step, {"op", "task", "pages", "prot"}, op));
    } else {
      SCENARIO_RETURN_IF_ERROR(CheckFields(step, {"op", "task", "pages"}, op));
    }
    SCENARIO_ASSIGN_OR_RETURN(int32_t task, CurrentTask(step));
    SCENARIO_ASSIGN_OR_RETURN(std::optional<int64_t> pages_opt,
                              OptionalInt(step, "pages", 1, kMaxPageEntries));
    uint32_t prot = 0;
    if (mprotect) {
      auto it = step.find("prot");
      if (it != step.end()) {
        if (!it->is_string() || (*it != "r" && *it != "rw")) {
          return Invalid(
              absl::StrFormat("field 'prot' must be \"r\" or \"rw\", got %s", Describe(*it)));
        }
        if (*it == "rw") prot = abi::kPageWritable;
      }
    }
    const ModelTask& t = tasks_[task];
    if (t.mm == abi::kNoMm) {
      return Invalid(
          absl::StrFormat("task %s is a kernel thread with no mm (not between use_mm and unuse_mm)",
                          Quote(t.name)));
    }
    ModelMm& mm = mms_[t.mm];
    // Only reachable through a kthread_use_mm borrower outliving the mm's last user: exit_mmap
    // has torn the user pages down, and Linux requires an mm_users reference (mmget) for this.
    if (mm.users == 0) {
      return Invalid(absl::StrFormat("mm %s has no users (mm_users is 0): its pages are gone",
                                     Quote(mm.name)));
    }
    int pages = static_cast<int>(pages_opt.value_or(kDefaultMapPages));
    abi::StepOp step_op;
    if (op == "mmap") {
      step_op = abi::StepOp::kMmap;
      if (mm.entries + pages > kMaxPageEntries) {
        return Invalid(absl::StrFormat(
            "mmap of %d pages: mm %s already has %d page entries (mapped and unmapped), at most "
            "%d fit",
            pages, Quote(mm.name), mm.entries, kMaxPageEntries));
      }
      mm.entries += pages;
      mm.mapped += pages;
    } else {
      step_op = mprotect ? abi::StepOp::kMprotect : abi::StepOp::kMunmap;
      if (pages > mm.mapped) {
        return Invalid(absl::StrFormat("%s of %d pages: mm %s has only %d mapped", op, pages,
                                       Quote(mm.name), mm.mapped));
      }
      if (!mprotect) mm.mapped -= pages;
    }
    abi::Step s = ModelStep(step_op, t.on_cpu, task);
    s.pages = static_cast<uint32_t>(pages);
    s.prot = prot;
    Emit(s);
    return absl::OkStatus();
  }

  // ---- concurrency ----

  // {"op": "parallel", "steps": {"0": [...], "1": [...]}}: each CPU's list runs on that CPU,
  // concurrently with the others. So that every interleaving is valid and the outcome does not
  // depend on it, the lists must be independent: no task appears in two lists (as the task,
  // the parent, or the task a list switches away from), and no user mm is touched by two lists
  // (owned by a task a list names, created, execed, exited, used or unused, or changed by
  // mmap/munmap/mprotect/fork). Concurrency stays where Linux has it: lazy borrowing and flush
  // IPIs on mms loaded from before the block, shared refcounts (init_mm), the page allocator.
  absl::Status Parallel(const json& step) {
    SCENARIO_RETURN_IF_ERROR(CheckFields(step, {"op", "steps"}, "parallel"));
    auto lists_it = step.find("steps");
    if (lists_it == step.end()) return Invalid("missing field 'steps'");
    if (!lists_it->is_object() || lists_it->empty()) {
      return Invalid(
          absl::StrFormat("field 'steps' must be a non-empty object of per-CPU step lists, got %s",
                          Describe(*lists_it)));
    }
    const int parallel_index = index_;
    abi::Step head = ModelStep(abi::StepOp::kParallel, 0, abi::kNoTask);
    const size_t head_pos = out_.program.size();
    Emit(head);
    std::map<int32_t, int> task_owner;  // task -> list CPU
    std::map<int32_t, int> mm_owner;    // user mm -> list CPU
    auto claim = [&](auto& owner, int32_t what, int cpu, const std::string& kind,
                     const std::string& name) -> absl::Status {
      auto [it, inserted] = owner.emplace(what, cpu);
      if (!inserted && it->second != cpu) {
        return Invalid(absl::StrFormat(
            "%s %s is used by the lists of CPU %d and CPU %d: parallel lists must be "
            "independent",
            kind, Quote(name), it->second, cpu));
      }
      return absl::OkStatus();
    };
    for (const auto& [key, list] : lists_it->items()) {
      int cpu = -1;
      if (!absl::SimpleAtoi(key, &cpu) || cpu < 0 || cpu >= out_.cpus) {
        return Invalid(absl::StrFormat("parallel list key %s is not a CPU number (0..%d)",
                                       Quote(key), out_.cpus - 1));
      }
      if (!list.is_array()) {
        return Invalid(absl::StrFormat("the list of CPU %d must be an array of steps, got %s", cpu,
                                       Describe(list)));
      }
      for (size_t k = 0; k < list.size(); ++k) {
        const json& inner = list[k];
        const std::string where = absl::StrFormat("CPU %d's step %d", cpu, k);
        const std::string op = inner.is_object() && inner.contains("op") && inner["op"].is_string()
                                   ? inner["op"].get<std::string>()
                                   : "?";
        if (op == "check" || op == "counters" || op == "checkpoint" || op == "parallel") {
          return Invalid(
              absl::StrFormat("%s (%s): only model steps may run in parallel; "
                              "checks go after the block",
                              where, op));
        }
        // What the step names, before it runs: the tasks, their mms, the mm it uses. The task a
        // switch leaves is claimed, but not its mm: switching away from a thread of an mm that
        // another list unmaps from is exactly the race lazy TLB and the flush IPIs must survive.
        auto in_step = [&](const absl::Status& st) {
          return st.ok() ? st : Invalid(absl::StrFormat("%s (%s): %s", where, op, st.message()));
        };
        const int32_t leaving = curr_[cpu];
        if (!(leaving < out_.cpus && leaving == cpu)) {
          SCENARIO_RETURN_IF_ERROR(
              in_step(claim(task_owner, leaving, cpu, "task", tasks_[leaving].name)));
        }
        std::vector<int32_t> tasks_named;
        for (const char* f : {"task", "parent"}) {
          if (inner.is_object() && inner.contains(f) && inner[f].is_string()) {
            auto t = task_by_name_.find(inner[f].get<std::string>());
            if (t != task_by_name_.end()) tasks_named.push_back(t->second);
          }
        }
        std::vector<int32_t> mms_named;
        // The mms the named tasks own before the step: exit, exec and unuse_mm leave theirs.
        for (int32_t t : tasks_named) {
          if (tasks_[t].mm > abi::kInitMm) mms_named.push_back(tasks_[t].mm);
        }
        if (inner.is_object() && inner.contains("mm") && inner["mm"].is_string()) {
          auto m = mm_by_name_.find(inner["mm"].get<std::string>());
          if (m != mm_by_name_.end()) mms_named.push_back(m->second);
        }
        block_cpu_ = cpu;
        const size_t before = out_.program.size();
        absl::Status st = Step(parallel_index, inner);
        block_cpu_ = -1;
        if (!st.ok()) return Invalid(absl::StrFormat("%s (%s): %s", where, op, st.message()));
        for (size_t p = before; p < out_.program.size(); ++p) {
          abi::Step& emitted = out_.program[p];
          if (emitted.cpu != static_cast<uint32_t>(cpu)) {
            return Invalid(absl::StrFormat("%s (%s): it would run on CPU %d, not CPU %d", where, op,
                                           emitted.cpu, cpu));
          }
          emitted.flags = 0;  // verification happens after the whole block
          if (emitted.task != abi::kNoTask) tasks_named.push_back(emitted.task);
          if (emitted.parent != abi::kNoTask) tasks_named.push_back(emitted.parent);
          if (emitted.mm != abi::kNoMm) mms_named.push_back(emitted.mm);
        }
        for (int32_t t : tasks_named) {
          if (t < out_.cpus && t == cpu) continue;  // this CPU's own idle task
          SCENARIO_RETURN_IF_ERROR(in_step(claim(task_owner, t, cpu, "task", tasks_[t].name)));
          if (tasks_[t].mm > abi::kInitMm) mms_named.push_back(tasks_[t].mm);
        }
        for (int32_t m : mms_named) {
          if (m <= abi::kInitMm) continue;
          SCENARIO_RETURN_IF_ERROR(in_step(claim(mm_owner, m, cpu, "mm", mms_[m].name)));
        }
      }
    }
    const size_t block = out_.program.size() - head_pos - 1;
    // A block starts only when it is whole in the program's window (shared/mm_abi.h).
    if (block >= abi::kProgramRefillAhead) {
      return Invalid(
          absl::StrFormat("the block's lists make %d model steps; at most %d run in "
                          "one block",
                          block, abi::kProgramRefillAhead - 1));
    }
    out_.program[head_pos].arg = static_cast<uint32_t>(block);
    return absl::OkStatus();
  }

  // Where a step that names no CPU runs: in a parallel list, that list's CPU.
  int ExecCpu(int default_cpu) const { return block_cpu_ >= 0 ? block_cpu_ : default_cpu; }

  // ---- verification points ----

  absl::Status Check(const json& step) {
    SCENARIO_RETURN_IF_ERROR(CheckFields(step,
                                         {"op", "mm", "task", "mm_users", "mm_count", "freed",
                                          "loaded_on", "lazy_on", "lazy_tlb", "pcid"},
                                         "check"));
    HostCheck check;
    check.kind = HostCheck::Kind::kCheck;
    check.step_index = index_;
    SCENARIO_ASSIGN_OR_RETURN(std::optional<std::string> mm_name, OptionalName(step, "mm"));
    SCENARIO_ASSIGN_OR_RETURN(std::optional<std::string> task_name, OptionalName(step, "task"));
    if (mm_name && task_name) {
      return Invalid(absl::StrFormat(
          "fields 'mm' (%s) and 'task' (%s) both given: a check names exactly one of them",
          Quote(*mm_name), Quote(*task_name)));
    }
    if (!mm_name && !task_name) return Invalid("missing field 'mm' (or 'task')");
    if (mm_name) {
      SCENARIO_ASSIGN_OR_RETURN(check.mm_slot, FindMm(*mm_name));
    } else {
      SCENARIO_ASSIGN_OR_RETURN(check.task, FindTask(*task_name));
      // An exited task has no active_mm to check: refused here rather than failed at run time.
      if (!tasks_[*check.task].alive) {
        return Invalid(absl::StrFormat(
            "task %s has exited: it has no active_mm to check (name its mm with \"mm\")",
            Quote(*task_name)));
      }
    }
    constexpr int64_t kMaxRef = std::numeric_limits<int32_t>::max();
    SCENARIO_ASSIGN_OR_RETURN(check.mm_users, OptionalInt(step, "mm_users", 0, kMaxRef));
    SCENARIO_ASSIGN_OR_RETURN(check.mm_count, OptionalInt(step, "mm_count", 0, kMaxRef));
    SCENARIO_ASSIGN_OR_RETURN(check.freed, OptionalBool(step, "freed"));
    if (check.mm_slot == abi::kInitMm && (check.mm_users || check.mm_count || check.freed)) {
      return Invalid(
          "mm 'init_mm': its reference counts are not modeled; check only loaded_on/lazy_on");
    }
    SCENARIO_ASSIGN_OR_RETURN(check.loaded_on, OptionalCpuList(step, "loaded_on"));
    SCENARIO_ASSIGN_OR_RETURN(check.lazy_on, OptionalCpuList(step, "lazy_on"));
    SCENARIO_ASSIGN_OR_RETURN(check.lazy_modes, LazyModeFilter(step));
    SCENARIO_ASSIGN_OR_RETURN(check.pcid_modes, PcidModeFilter(step));
    AddVerify(std::move(check), index_);
    return absl::OkStatus();
  }

  absl::Status Counters(const json& step) {
    HostCheck check;
    check.kind = HostCheck::Kind::kCounters;
    check.step_index = index_;
    const std::vector<std::string>& names = MmCounterNames();
    for (const auto& [key, value] : step.items()) {
      if (key == "op" || key == "cpu" || key == "lazy_tlb" || key == "pcid") continue;
      if (std::find(names.begin(), names.end(), key) == names.end()) {
        return Invalid(absl::StrFormat("unknown counter %s (counters: %s)", Quote(key),
                                       absl::StrJoin(names, ", ")));
      }
      if (!value.is_number_integer() || (!value.is_number_unsigned() && value.get<int64_t>() < 0)) {
        return Invalid(absl::StrFormat("counter '%s' must be a non-negative integer, got %s", key,
                                       Describe(value)));
      }
      check.counters[key] = value.get<uint64_t>();
    }
    SCENARIO_ASSIGN_OR_RETURN(check.cpu, OptionalCpu(step, "cpu"));
    SCENARIO_ASSIGN_OR_RETURN(check.lazy_modes, LazyModeFilter(step));
    SCENARIO_ASSIGN_OR_RETURN(check.pcid_modes, PcidModeFilter(step));
    AddVerify(std::move(check), index_);
    return absl::OkStatus();
  }

  absl::Status Checkpoint(const json& step) {
    SCENARIO_RETURN_IF_ERROR(CheckFields(step, {"op"}, "checkpoint"));
    HostCheck check;
    check.kind = HostCheck::Kind::kCheckpoint;
    check.step_index = index_;
    AddVerify(std::move(check), index_);
    return absl::OkStatus();
  }

  // ---- the model ----

  absl::Status CheckNewTaskName(const std::string& name) {
    if (task_by_name_.count(name) != 0) {
      return Invalid(absl::StrFormat(
          "task %s already exists (a task name can be created only once)", Quote(name)));
    }
    if (absl::string_view(name).substr(0, 5) == "idle/") {
      return Invalid(absl::StrFormat("task name %s is reserved for idle tasks", Quote(name)));
    }
    if (static_cast<uint64_t>(tasks_.size()) >= abi::kMaxTasks) {
      return Invalid(
          absl::StrFormat("task %s: too many tasks, at most %d including the %d idle tasks",
                          Quote(name), abi::kMaxTasks, out_.cpus));
    }
    return absl::OkStatus();
  }

  int32_t NewTask(const std::string& name, bool kthread, int32_t mm) {
    ModelTask t;
    t.name = name;
    t.kthread = kthread;
    t.mm = mm;
    int32_t index = static_cast<int32_t>(tasks_.size());
    tasks_.push_back(std::move(t));
    task_by_name_[name] = index;
    out_.task_names.push_back(name);
    return index;
  }

  absl::StatusOr<int32_t> NewMm(const std::string& name, int entries, int mapped) {
    if (mm_by_name_.count(name) != 0) {
      return Invalid(absl::StrFormat("mm %s already exists", Quote(name)));
    }
    if (static_cast<uint64_t>(mms_.size()) >= abi::kMaxMms) {
      return Invalid(absl::StrFormat("mm %s: too many mms, at most %d including init_mm",
                                     Quote(name), abi::kMaxMms));
    }
    int32_t slot = static_cast<int32_t>(mms_.size());
    mms_.push_back(ModelMm{name, /*users=*/1, entries, mapped});
    mm_by_name_[name] = slot;
    out_.mm_names.push_back(name);
    return slot;
  }

  // mmput: at the last user exit_mmap frees the user pages and their entries.
  void DropUser(int32_t mm) {
    ModelMm& m = mms_[mm];
    if (--m.users == 0) m.entries = m.mapped = 0;
  }

  absl::StatusOr<int32_t> FindTask(const std::string& name) const {
    auto it = task_by_name_.find(name);
    if (it != task_by_name_.end()) return it->second;
    if (absl::string_view(name).substr(0, 5) == "idle/") {
      return Invalid(absl::StrFormat("task %s: scenarios cannot name idle tasks (use the idle op)",
                                     Quote(name)));
    }
    return Invalid(absl::StrFormat("unknown task %s", Quote(name)));
  }

  absl::StatusOr<int32_t> FindMm(const std::string& name) const {
    auto it = mm_by_name_.find(name);
    if (it == mm_by_name_.end()) return Invalid(absl::StrFormat("unknown mm %s", Quote(name)));
    return it->second;
  }

  absl::Status RequireAlive(int32_t task) const {
    if (!tasks_[task].alive) {
      return Invalid(absl::StrFormat("task %s has exited", Quote(tasks_[task].name)));
    }
    return absl::OkStatus();
  }

  // The "task" of a step that runs as that task: it must exist, be alive and be current.
  absl::StatusOr<int32_t> CurrentTask(const json& step) const {
    SCENARIO_ASSIGN_OR_RETURN(std::string name, RequiredName(step, "task"));
    SCENARIO_ASSIGN_OR_RETURN(int32_t task, FindTask(name));
    SCENARIO_RETURN_IF_ERROR(RequireAlive(task));
    if (tasks_[task].on_cpu < 0) {
      return Invalid(absl::StrFormat("task %s is not running on any CPU", Quote(name)));
    }
    return task;
  }

  void SwitchTo(int cpu, int32_t next) {
    tasks_[curr_[cpu]].on_cpu = -1;
    tasks_[next].on_cpu = cpu;
    curr_[cpu] = next;
  }

  absl::StatusOr<std::optional<int>> OptionalCpu(const json& step, const char* field) const {
    auto it = step.find(field);
    if (it == step.end()) return std::optional<int>();
    SCENARIO_ASSIGN_OR_RETURN(int cpu, CpuNumber(*it, absl::StrFormat("field '%s'", field)));
    return std::optional<int>(cpu);
  }

  absl::StatusOr<int> RequiredCpu(const json& step, const char* field) const {
    auto it = step.find(field);
    if (it == step.end()) return Invalid(absl::StrFormat("missing field '%s'", field));
    return CpuNumber(*it, absl::StrFormat("field '%s'", field));
  }

  // One CPU number, valid for the effective CPU count (--cpus may lower the file's).
  absl::StatusOr<int> CpuNumber(const json& value, const std::string& what) const {
    if (!value.is_number_integer()) {
      return Invalid(absl::StrFormat("%s must be a CPU number, got %s", what, Describe(value)));
    }
    bool negative = !value.is_number_unsigned() && value.get<int64_t>() < 0;
    if (negative || value.get<uint64_t>() >= static_cast<uint64_t>(out_.cpus)) {
      return Invalid(absl::StrFormat(
          "%s: CPU %s is out of range: the %s has %d CPU%s (0..%d%s)", what, value.dump(),
          options_.cpus ? "run" : "scenario", out_.cpus, out_.cpus == 1 ? "" : "s", out_.cpus - 1,
          options_.cpus ? absl::StrFormat("; --cpus %d overrides the file's \"cpus\"", out_.cpus)
                        : ""));
    }
    return static_cast<int>(value.get<uint64_t>());
  }

  absl::StatusOr<std::optional<std::vector<int>>> OptionalCpuList(const json& step,
                                                                  const char* field) const {
    auto it = step.find(field);
    if (it == step.end()) return std::optional<std::vector<int>>();
    if (!it->is_array()) {
      return Invalid(absl::StrFormat("field '%s' must be an array of CPU numbers, got %s", field,
                                     Describe(*it)));
    }
    std::vector<int> cpus;
    for (const json& e : *it) {
      SCENARIO_ASSIGN_OR_RETURN(int cpu, CpuNumber(e, absl::StrFormat("field '%s'", field)));
      if (std::find(cpus.begin(), cpus.end(), cpu) != cpus.end()) {
        return Invalid(absl::StrFormat("field '%s' lists CPU %d twice", field, cpu));
      }
      cpus.push_back(cpu);
    }
    std::sort(cpus.begin(), cpus.end());
    return std::optional<std::vector<int>>(std::move(cpus));
  }

  abi::Step ModelStep(abi::StepOp op, int cpu, int32_t task) const {
    return activemm::ModelStep(op, cpu, task, static_cast<uint32_t>(index_),
                               options_.verify_every_step);
  }

  void Emit(const abi::Step& s) { out_.program.push_back(s); }

  void AddVerify(HostCheck check, int index) {
    abi::Step s{};
    s.op = static_cast<uint32_t>(abi::StepOp::kVerify);
    s.cpu = 0;
    s.task = abi::kNoTask;
    s.parent = abi::kNoTask;
    s.mm = abi::kNoMm;
    s.index = static_cast<uint32_t>(index);
    s.arg = static_cast<uint32_t>(out_.checks.size());
    out_.checks.push_back(std::move(check));
    out_.program.push_back(s);
  }

  const CompileOptions& options_;
  Scenario& out_;
  int index_ = 0;       // the file step being compiled
  int block_cpu_ = -1;  // the CPU of the parallel list being compiled, -1 outside blocks
  std::vector<ModelTask> tasks_;
  std::vector<ModelMm> mms_;
  std::vector<int32_t> curr_;                    // per CPU: the current task
  std::map<std::string, int32_t> task_by_name_;  // created tasks only (idle tasks are unnamed)
  std::map<std::string, int32_t> mm_by_name_;
};

absl::Status TopLevelError(const std::string& source, absl::string_view reason) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": ", reason));
}

}  // namespace

std::string StepSources::operator[](size_t i) const {
  if (i < ops_.size()) return ops_[i];
  const TraceLine& t = lines_[i - ops_.size()];
  return absl::StrFormat("line %d: %s", t.line, t.event);
}

absl::StatusOr<Scenario> CompileScenario(const std::string& json_text, const std::string& source,
                                         const CompileOptions& options) {
  if (json_text.find_first_not_of(" \t\r\n") == std::string::npos) {
    return TopLevelError(source, "empty: a scenario is a JSON object (docs/scenarios.md)");
  }
  json doc;
  DuplicateKeyFinder duplicates;
  try {
    doc = json::parse(json_text);
    json::sax_parse(json_text, &duplicates);
  } catch (const json::parse_error& e) {
    // "[json.exception.parse_error.101] parse error at line 1, column 5: syntax error ...": the
    // position and the reason, without the library's prefix, and the bytes it quotes (a binary
    // file's) escaped so the message stays one line of text.
    std::string what = e.what();
    if (size_t at = what.find("parse error at "); at != std::string::npos) {
      what = what.substr(at + 15);
    }
    std::string printable;
    for (unsigned char c : what) {
      if (c >= 0x20 && c < 0x7f) {
        printable.push_back(static_cast<char>(c));
      } else {
        absl::StrAppendFormat(&printable, "\\x%02x", c);
      }
    }
    return TopLevelError(source,
                         absl::StrFormat("invalid JSON: %s (at byte %d)", printable, e.byte));
  } catch (const json::out_of_range& e) {
    // A number too large for a double ({"cpus": 1e999}) is not a parse_error but out_of_range
    // 406, which escaped and terminated activemm (found by tests/fuzz/scenario_compiler_fuzz).
    std::string what = e.what();  // "[json.exception.out_of_range.406] number overflow ..."
    if (size_t at = what.find("] "); at != std::string::npos) what = what.substr(at + 2);
    return TopLevelError(source, absl::StrFormat("invalid JSON: %s", what));
  }
  if (const std::optional<DuplicateKey>& dup = duplicates.found()) {
    std::string reason = absl::StrFormat("duplicate field %s", Quote(dup->key));
    if (dup->step < 0) return TopLevelError(source, reason);
    std::string op = "?";
    const json& steps = doc["steps"];
    const json& step = steps.is_array() && static_cast<size_t>(dup->step) < steps.size()
                           ? steps[dup->step]
                           : json();
    if (step.is_object() && step.contains("op") && step["op"].is_string()) {
      op = step["op"].get<std::string>();
    }
    return TopLevelError(source, absl::StrFormat("step %d (%s): %s", dup->step, op, reason));
  }

  if (!doc.is_object()) {
    return TopLevelError(
        source, absl::StrFormat("the scenario must be a JSON object, got %s", Describe(doc)));
  }
  Scenario out;
  out.source = source;
  absl::Status header = [&]() -> absl::Status {
    SCENARIO_RETURN_IF_ERROR(
        CheckFields(doc, {"version", "name", "cpus", "lazy_tlb", "steps"}, "a scenario"));
    if (!doc.contains("version")) return Invalid("missing field 'version'");
    if (!doc["version"].is_number_integer() || doc["version"] != 1) {
      return Invalid(absl::StrFormat("unsupported version %s: this activemm reads version 1",
                                     doc["version"].dump()));
    }
    SCENARIO_ASSIGN_OR_RETURN(out.name, RequiredName(doc, "name"));
    SCENARIO_ASSIGN_OR_RETURN(int64_t cpus, RequiredInt(doc, "cpus", kMinCpus, kMaxCpus));
    out.cpus = static_cast<int>(cpus);
    if (options.cpus) {
      if (*options.cpus < kMinCpus || *options.cpus > kMaxCpus) {
        return Invalid(absl::StrFormat("--cpus %d is out of range 1..%d", *options.cpus, kMaxCpus));
      }
      out.cpus = *options.cpus;
    }
    SCENARIO_ASSIGN_OR_RETURN(std::optional<bool> lazy, OptionalBool(doc, "lazy_tlb"));
    out.lazy_tlb = lazy.value_or(true);
    if (!doc.contains("steps")) return Invalid("missing field 'steps'");
    const json& steps = doc["steps"];
    if (!steps.is_array()) {
      return Invalid(absl::StrFormat("field 'steps' must be an array, got %s", Describe(steps)));
    }
    if (steps.empty()) return Invalid("field 'steps' is empty: a scenario needs steps");
    return absl::OkStatus();
  }();
  if (!header.ok()) return TopLevelError(source, header.message());

  Compiler compiler(options, &out);
  compiler.Start();
  const json& steps = doc["steps"];
  for (size_t i = 0; i < steps.size(); ++i) {
    const json& step = steps[i];
    std::string op = "?";
    if (step.is_object() && step.contains("op") && step["op"].is_string()) {
      op = step["op"].get<std::string>();
    }
    out.step_ops.AddOp(op);
    absl::Status st = compiler.Step(static_cast<int>(i), step);
    if (!st.ok()) {
      return TopLevelError(source, absl::StrFormat("step %d (%s): %s", i, op, st.message()));
    }
    // Checked as it grows, so a runaway file fails at the step that overflows.
    if (out.program.size() + 1 > options.max_steps) {  // + 1: the final verification
      return TopLevelError(
          source, absl::StrFormat("step %d (%s): the program is too long: at most %d steps run "
                                  "(including the final verification)",
                                  i, op, options.max_steps));
    }
  }
  compiler.Finish();
  return out;
}

abi::Step ModelStep(abi::StepOp op, int cpu, int32_t task, uint32_t index, bool verify_after) {
  abi::Step s{};
  s.op = static_cast<uint32_t>(op);
  s.cpu = static_cast<uint32_t>(cpu);
  s.task = task;
  s.parent = abi::kNoTask;
  s.mm = abi::kNoMm;
  s.flags = verify_after ? abi::kStepVerifyAfter : 0;
  s.index = index;
  return s;
}

const char* StepOpName(uint32_t op) {
  static constexpr const char* kOps[] = {
      "?",      "spawn",    "clone_vm", "fork",   "kthread",  "run",    "idle",     "exec", "exit",
      "use_mm", "unuse_mm", "mmap",     "munmap", "mprotect", "verify", "parallel", "flush"};
  return op < std::size(kOps) ? kOps[op] : "?";
}

const char* DefaultScenarioJson() {
  // Two threads of A on two CPUs; a kernel thread borrows A on CPU 0 (lazy TLB: no CR3 write,
  // a lazy reference on A) and A comes back without a CR3 write. B exits on CPU 1: exit_mm
  // takes a lazy reference, and the flush of B's freed page tables makes the lazy CPU leave B
  // for init_mm (leave_mm), so B is no longer loaded anywhere but outlives its users, held by
  // the idle task that borrows it, until a user task runs on CPU 1. Expectations that depend
  // on the mode carry "lazy_tlb" and "pcid"; the others hold in every mode:
  // - shootdown (MMU_LAZY_TLB_SHOOTDOWN) switches as lazy TLB on does, but the lazy users hold
  //   no reference: A's count stays 1 while K borrows it, and B is freed at its exit (the
  //   final mmdrop's cleanup_lazy_tlbs moves idle/1 off it; CPU 1 already left it by leave_mm).
  // - CPU 0's CR3 writes: A's first load flushes (a new ASID); lazy TLB off adds the loads of
  //   init_mm (for K) and of A again, which keep the TLB with PCIDs (ASID 0, and ASID 1 still
  //   at A's tlb_gen) and flush without (choose_new_asid: ASID 0, need_flush).
  return R"json({
  "version": 1,
  "name": "default: lazy TLB borrowing",
  "cpus": 2,
  "lazy_tlb": true,
  "steps": [
    {"op": "spawn", "task": "A", "pages": 4},
    {"op": "clone_vm", "parent": "A", "task": "A1"},
    {"op": "kthread", "task": "K"},
    {"op": "spawn", "task": "B", "pages": 2},
    {"op": "run", "cpu": 0, "task": "A"},
    {"op": "run", "cpu": 1, "task": "A1"},
    {"op": "run", "cpu": 0, "task": "K"},
    {"op": "check", "mm": "A", "mm_users": 2},
    {"op": "check", "mm": "A", "lazy_tlb": true, "mm_count": 2, "loaded_on": [0, 1],
     "lazy_on": [0]},
    {"op": "check", "mm": "A", "lazy_tlb": "shootdown", "mm_count": 1, "loaded_on": [0, 1],
     "lazy_on": [0]},
    {"op": "check", "mm": "A", "lazy_tlb": false, "mm_count": 1, "loaded_on": [1],
     "lazy_on": []},
    {"op": "run", "cpu": 0, "task": "A"},
    {"op": "mmap", "task": "A", "pages": 2},
    {"op": "run", "cpu": 1, "task": "B"},
    {"op": "munmap", "task": "B", "pages": 1},
    {"op": "exit", "task": "B"},
    {"op": "check", "mm": "B", "lazy_tlb": true, "mm_users": 0, "mm_count": 1, "freed": false,
     "loaded_on": []},
    {"op": "check", "mm": "B", "lazy_tlb": ["shootdown", "off"], "freed": true,
     "loaded_on": []},
    {"op": "run", "cpu": 1, "task": "A1"},
    {"op": "check", "mm": "B", "freed": true},
    {"op": "check", "mm": "A", "mm_users": 2, "mm_count": 1, "loaded_on": [0, 1],
     "lazy_on": []},
    {"op": "counters", "cpu": 0, "lazy_tlb": ["on", "shootdown"], "context_switches": 3,
     "cr3_writes": 1, "cr3_writes_flush": 1, "cr3_writes_noflush": 0},
    {"op": "counters", "cpu": 0, "lazy_tlb": false, "context_switches": 3, "cr3_writes": 3},
    {"op": "counters", "cpu": 0, "lazy_tlb": false, "pcid": true, "cr3_writes_flush": 1,
     "cr3_writes_noflush": 2},
    {"op": "counters", "cpu": 0, "lazy_tlb": false, "pcid": false, "cr3_writes_flush": 3,
     "cr3_writes_noflush": 0},
    {"op": "checkpoint"}
  ]
})json";
}

}  // namespace activemm
