#include "vmm/model/scenario_run.h"

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <optional>
#include <thread>

#include "absl/strings/str_format.h"
#include "shared/x86.h"
#include "vmm/kvm/vm.h"
#include "vmm/model/model_state.h"
#include "vmm/model/program_stream.h"

namespace activemm {
namespace {

// CPU `cpu`'s step-loop bookkeeping (abi::StepLoopCpu), range-checked by GuestMemory.
absl::StatusOr<abi::StepLoopCpu> ReadStepLoopCpu(const GuestMemory& mem, int cpu) {
  return mem.Read<abi::StepLoopCpu>(abi::kStepLoopPa + cpu * sizeof(abi::StepLoopCpu));
}

abi::ScenarioHeader ProgramConfig(const ScenarioRunOptions& o) {
  abi::ScenarioHeader h{};
  h.lazy_mode = static_cast<uint32_t>(o.lazy);
  h.step_state = o.record_step_state ? 1 : 0;
  h.pcid_mode = static_cast<uint32_t>(o.pcid);
  h.num_asids = o.asids;
  h.bug = static_cast<uint32_t>(o.bug);
  return h;
}

// Keeps "LABEL: step N/M (P%)" on stderr up to date from the guest's steps_done while the
// guest runs, and erases it at the end, so the report that follows starts on a clean line.
class ProgressLine {
 public:
  ProgressLine(const std::string& label, const GuestMemory& mem, size_t total)
      : label_(label), mem_(mem), total_(total) {
    if (!label_.empty()) thread_ = std::thread([this] { Loop(); });
  }
  ~ProgressLine() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard<std::mutex> g(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
    std::fprintf(stderr, "\r\033[K");
  }

 private:
  void Loop() {
    std::unique_lock<std::mutex> g(mu_);
    while (!cv_.wait_for(g, std::chrono::milliseconds(250), [this] { return done_; })) {
      absl::StatusOr<abi::MmDirectory> dir = mem_.Read<abi::MmDirectory>(abi::kMmDirectoryPa);
      if (!dir.ok()) continue;
      const size_t done = std::min<size_t>(dir->steps_done, total_);
      std::fprintf(stderr, "\r\033[K%s: step %zu/%zu (%zu%%)", label_.c_str(), done, total_,
                   total_ == 0 ? 100 : done * 100 / total_);
      std::fflush(stderr);
    }
  }

  const std::string label_;
  const GuestMemory& mem_;
  const size_t total_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

}  // namespace

const char* LazyModeName(abi::LazyMode m) {
  switch (m) {
    case abi::LazyMode::kOn:
      return "on";
    case abi::LazyMode::kOff:
      return "off";
    case abi::LazyMode::kShootdown:
      return "shootdown";
  }
  return "?";
}

const char* PcidModeName(abi::PcidMode m) {
  switch (m) {
    case abi::PcidMode::kOff:
      return "off";
    case abi::PcidMode::kModeled:
      return "modeled";
    case abi::PcidMode::kHardware:
      return "hardware";
  }
  return "?";
}

absl::StatusOr<ScenarioReport> RunScenarioOnKvm(const Kvm& kvm, const Scenario& sc,
                                                const ScenarioRunOptions& o) {
  if (o.asids < 1 || o.asids > abi::kMaxAsids) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--asids=%d: must be between 1 and %d", o.asids, abi::kMaxAsids));
  }
  absl::StatusOr<GuestImage> image = GuestImage::Embedded();
  if (!image.ok()) return image.status();
  VmConfig vc;
  vc.cpus = sc.cpus;
  vc.mem_bytes = o.mem_bytes;
  vc.program = abi::Program::kScenario;
  vc.verbose = o.verbose;
  absl::StatusOr<std::unique_ptr<Vm>> vm = Vm::Create(kvm, *image, vc);
  if (!vm.ok()) return vm.status();
  ProgramStream program(sc.program, (*vm)->memory());
  if (absl::Status s = program.Start(ProgramConfig(o)); !s.ok()) return s;

  ScenarioReport report;
  report.scenario = sc.name;
  report.lazy = o.lazy;
  report.pcid = o.pcid;
  report.asids = o.asids;
  report.steps_total = static_cast<int>(sc.program.size());
  const int num_tasks = static_cast<int>(sc.task_names.size());
  const int num_mms = static_cast<int>(sc.mm_names.size());

  VerifierConfig vcfg;
  vcfg.lazy = o.lazy;
  vcfg.pcid = o.pcid;
  std::unique_ptr<MmVerifier> verifier;
  RunOptions ro;
  ro.timeout = o.timeout;
  ro.profile_hz = o.profile_hz;
  ro.verbose = o.verbose;
  ro.on_refill = [&program](uint64_t done) { return program.Refill(done); };
  ro.on_checkpoint = [&](const CheckpointView& v) -> absl::Status {
    if (v.id == abi::kCheckpointModelReady) {
      absl::StatusOr<abi::GuestInfo> info = v.memory.Read<abi::GuestInfo>(abi::kGuestInfoPa);
      if (!info.ok()) return info.status();
      vcfg.swapper_pgd_pa = info->swapper_pgd_pa;
      verifier = std::make_unique<MmVerifier>(sc, (*vm)->image(), vcfg);
    }
    return absl::OkStatus();
  };
  ro.on_verify = [&](const VerifyView& v) -> absl::Status {
    if (verifier == nullptr) return absl::InternalError("verification before the model was ready");
    const auto verify_start = std::chrono::steady_clock::now();
    ++report.verifications;
    // Every way out of this pass counts its time (an early return is a failed run anyway).
    struct AddTime {
      std::chrono::steady_clock::time_point start;
      double* total;
      ~AddTime() {
        *total += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      }
    } add_time{verify_start, &report.verify_seconds};
    absl::StatusOr<ModelSnapshot> snap = ReadModel(v.memory, sc.cpus, num_tasks, num_mms);
    if (!snap.ok()) return snap.status();
    int step = v.step_index < sc.step_ops.size() ? static_cast<int>(v.step_index) : -1;
    if (v.check != abi::kVerifyNoCheck) {
      if (v.check >= sc.checks.size()) {
        return absl::DataLossError(
            absl::StrFormat("the guest asked for check %d of %d", v.check, sc.checks.size()));
      }
      const HostCheck& check = sc.checks[v.check];
      step = check.step_index;
      if ((check.kind == HostCheck::Kind::kCheck || check.kind == HostCheck::Kind::kCounters) &&
          check.AppliesTo(o.lazy, o.pcid)) {
        std::vector<Violation> failed = verifier->Evaluate(check, *snap);
        if (failed.empty()) {
          ++report.checks_passed;
        } else {
          ++report.checks_failed;
          report.failed_expectations.insert(report.failed_expectations.end(), failed.begin(),
                                            failed.end());
        }
      }
    }
    std::vector<Violation> broken = verifier->VerifyAll(v.memory, *snap, v.sregs, v.present);
    if (broken.empty()) return absl::OkStatus();
    for (Violation& b : broken) b.step_index = step;
    const std::string first =
        absl::StrFormat("%s: [%s] %s",
                        step >= 0 ? absl::StrFormat("after step %d (%s)", step, sc.step_ops[step])
                                  : std::string("at the end"),
                        broken[0].rule, broken[0].message);
    report.violations.insert(report.violations.end(), broken.begin(), broken.end());
    // Later state is built on a broken one: stop here, where the report is exact.
    return absl::FailedPreconditionError(first);
  };
  auto steps_done = [&vm]() -> std::optional<uint32_t> {
    absl::StatusOr<abi::MmDirectory> d =
        (*vm)->memory().Read<abi::MmDirectory>(abi::kMmDirectoryPa);
    if (!d.ok()) return std::nullopt;
    return d->steps_done;
  };
  // Clamped to the program: a guest that writes garbage there gains no more progress than
  // the program has steps.
  ro.progress = [steps_done, total = sc.program.size()] {
    return std::min<uint64_t>(steps_done().value_or(0), total);
  };
  ro.describe_wait = [steps_done, &sc, &vm]() -> std::string {
    const std::optional<uint32_t> n = steps_done();
    std::string out;
    if (!n.has_value()) {
      out = "steps done unreadable";
    } else if (*n >= sc.program.size()) {
      out = absl::StrFormat("all %d steps done (a bad count from the guest if beyond)", *n);
    } else if (const abi::Step& s = sc.program[*n];
               s.op == static_cast<uint32_t>(abi::StepOp::kParallel)) {
      out = absl::StrFormat("%d of %d steps done; next, a parallel block (step %d)", *n,
                            sc.program.size(), s.index);
    } else {
      const std::string op = s.index < sc.step_ops.size() ? sc.step_ops[s.index] : "?";
      out = absl::StrFormat("%d of %d steps done; next, step %d (%s) on CPU %d", *n,
                            sc.program.size(), s.index, op, s.cpu);
    }
    // Each CPU's wake-ups: a CPU halted with every kick sent to it taken, yet short of the step
    // that is its, read next_step before the kick's step was published; one with a kick sent
    // and not taken (and none pending in its APIC) lost it in the hypervisor.
    for (int cpu = 0; cpu < sc.cpus; ++cpu) {
      absl::StatusOr<abi::StepLoopCpu> c = ReadStepLoopCpu((*vm)->memory(), cpu);
      if (!c.ok()) continue;
      absl::StrAppendFormat(&out,
                            "\n  CPU %d: last halted seeing program step %d next; %d halts, %d "
                            "kicks sent to it, %d taken",
                            cpu, c->waiting_for, c->halts, c->kicks_sent, c->kicks_taken);
    }
    return out;
  };
  Runner runner(**vm, ro);
  {
    ProgressLine progress(o.progress_label, (*vm)->memory(), sc.program.size());
    report.run = runner.Run();
  }

  // The final state, read after every vCPU stopped.
  absl::StatusOr<abi::MmDirectory> dir =
      (*vm)->memory().Read<abi::MmDirectory>(abi::kMmDirectoryPa);
  if (dir.ok()) {
    report.steps_done = static_cast<int>(std::min<uint64_t>(dir->steps_done, sc.program.size()));
  }
  report.tsc_khz = (*vm)->tsc_khz();
  for (int cpu = 0; cpu < sc.cpus; ++cpu) {
    absl::StatusOr<abi::StepLoopCpu> c = ReadStepLoopCpu((*vm)->memory(), cpu);
    if (c.ok()) report.shadow_interrupts += c->shadow_interrupts;
  }
  report.step_records = program.TakeRecords();
  absl::StatusOr<ModelSnapshot> snap = ReadModel((*vm)->memory(), sc.cpus, num_tasks, num_mms);
  if (snap.ok() && verifier != nullptr) {
    for (const abi::CpuMmState& c : snap->cpus) report.cpus.push_back(c.counters);
    report.totals = TotalCounters(*snap);
    for (int32_t slot = 1; slot < num_mms; ++slot) {
      MmReport m;
      m.name = sc.mm_names[slot];
      m.freed = snap->Freed(slot);
      if (snap->Live(slot)) {
        m.mm_users = snap->Mm(slot).mm_users;
        m.mm_count = snap->Mm(slot).mm_count;
      } else if (!m.freed) {
        continue;  // never created (the run stopped before)
      }
      report.mms.push_back(m);
    }
  }
  return report;
}

}  // namespace activemm
