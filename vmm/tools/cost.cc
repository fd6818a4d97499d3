#include "vmm/tools/cost.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_format.h"
#include "fmt/core.h"
#include "vmm/kvm/kvm_stats.h"
#include "vmm/kvm/vm.h"
#include "vmm/model/scenario_run.h"

namespace activemm {
namespace {

// The vCPU statistic that counts the instructions KVM emulated. Where ring 0 is emulated one
// instruction at a time (kvm_pvm), it counts every ring-0 instruction the guest runs.
constexpr const char* kInsnStat = "insn_emulation";

// The cases reported, in table order (kCalibration is the markers' overhead, not a case).
constexpr abi::CostCase kCases[] = {abi::CostCase::kUserToKernel, abi::CostCase::kKernelToUser,
                                    abi::CostCase::kUserToUser, abi::CostCase::kUserToUserSameMm,
                                    abi::CostCase::kKernelToKernel};

struct Sample {
  bool done = false;
  int64_t cycles = 0;
  int64_t instructions = 0;
  int64_t cr3_writes = 0;
};

// Takes the guest's marks of one run. The guest is not trusted: every mark is checked against
// the protocol (begin, then the end of the same measurement, each measurement once).
class MarkRecorder {
 public:
  MarkRecorder(int iterations, const KvmStats* stats, std::optional<KvmStats::Stat> insn)
      : iterations_(iterations),
        stats_(stats),
        insn_(std::move(insn)),
        samples_(abi::kNumCostCases, std::vector<Sample>(iterations)) {}

  absl::Status OnMark(const MarkView& v) {
    const uint32_t kind = abi::MarkArgKind(v.args[0]);
    const uint32_t which = abi::MarkArgCase(v.args[0]);
    const uint64_t iteration = v.args[1];
    if (which >= abi::kNumCostCases || iteration >= static_cast<uint64_t>(iterations_)) {
      return absl::DataLossError(absl::StrFormat(
          "CPU %d marked measurement %d of case %d: there are %d iterations of %d cases", v.cpu,
          iteration, which, iterations_, abi::kNumCostCases));
    }
    uint64_t insns = 0;
    if (insn_.has_value()) {
      absl::StatusOr<uint64_t> n = stats_->Read(*insn_);
      if (!n.ok()) return n.status();
      insns = *n;
    }
    if (kind == static_cast<uint32_t>(abi::MarkKind::kBegin)) {
      if (open_) {
        return absl::DataLossError(
            absl::StrFormat("CPU %d began a measurement while measurement %d of case %d was open",
                            v.cpu, iteration_, which_));
      }
      open_ = true;
      which_ = which;
      iteration_ = static_cast<uint32_t>(iteration);
      begin_insns_ = insns;
      return absl::OkStatus();
    }
    if (kind != static_cast<uint32_t>(abi::MarkKind::kEnd)) {
      return absl::DataLossError(absl::StrFormat("CPU %d: unknown mark kind %d", v.cpu, kind));
    }
    if (!open_ || which != which_ || iteration != iteration_) {
      return absl::DataLossError(
          absl::StrFormat("CPU %d ended measurement %d of case %d, which it had not begun", v.cpu,
                          iteration, which));
    }
    open_ = false;
    Sample& s = samples_[which][iteration];
    if (s.done) {
      return absl::DataLossError(absl::StrFormat("CPU %d measured iteration %d of case %d twice",
                                                 v.cpu, iteration, which));
    }
    s.done = true;
    s.cycles = static_cast<int64_t>(v.args[2]);
    s.instructions = static_cast<int64_t>(insns - begin_insns_);
    s.cr3_writes = static_cast<int64_t>(v.args[3]);
    return absl::OkStatus();
  }

  // Every iteration of every case, once the run has completed.
  absl::Status CheckComplete() const {
    for (uint32_t c = 0; c < abi::kNumCostCases; ++c) {
      const int64_t n = std::count_if(samples_[c].begin(), samples_[c].end(),
                                      [](const Sample& s) { return s.done; });
      if (n != iterations_) {
        return absl::DataLossError(
            absl::StrFormat("the guest finished with %d of %d measurements of case %s", n,
                            iterations_, CostCaseName(static_cast<abi::CostCase>(c))));
      }
    }
    return absl::OkStatus();
  }

  const std::vector<Sample>& samples(abi::CostCase c) const {
    return samples_[static_cast<uint32_t>(c)];
  }

 private:
  const int iterations_;
  const KvmStats* stats_;
  const std::optional<KvmStats::Stat> insn_;
  std::vector<std::vector<Sample>> samples_;  // [case][iteration]
  bool open_ = false;
  uint32_t which_ = 0;
  uint32_t iteration_ = 0;
  uint64_t begin_insns_ = 0;
};

struct ModeRun {
  Outcome outcome = Outcome::kCompleted;
  std::string failure;
  uint64_t tsc_khz = 0;
  bool counted = false;             // insn_emulation was read at every mark
  std::string not_counted;          // why not
  std::unique_ptr<KvmStats> stats;  // the vCPU's, which marks reads
  std::unique_ptr<MarkRecorder> marks;
};

absl::StatusOr<ModeRun> RunMode(const Kvm& kvm, const GuestImage& image, const CostOptions& o,
                                abi::LazyMode lazy) {
  VmConfig vc;
  vc.cpus = 1;
  vc.mem_bytes = o.mem_bytes;
  vc.program = abi::Program::kCost;
  vc.verbose = o.verbose;
  absl::StatusOr<std::unique_ptr<Vm>> vm = Vm::Create(kvm, image, vc);
  if (!vm.ok()) return vm.status();
  abi::CostHeader h{};
  h.magic = abi::kCostMagic;
  h.lazy_mode = static_cast<uint32_t>(lazy);
  h.pcid_mode = static_cast<uint32_t>(o.pcid);
  h.num_asids = o.asids;
  h.iterations = static_cast<uint32_t>(o.iterations);
  if (absl::Status s = (*vm)->memory().Write(abi::kCostHeaderPa, h); !s.ok()) return s;

  ModeRun run;
  run.tsc_khz = (*vm)->tsc_khz();
  std::optional<KvmStats::Stat> insn;
  absl::StatusOr<std::unique_ptr<KvmStats>> opened = KvmStats::Open(kvm, (*vm)->vcpu(0).fd());
  if (opened.ok()) {
    run.stats = *std::move(opened);
    absl::StatusOr<KvmStats::Stat> found = run.stats->Find(kInsnStat);
    if (found.ok()) {
      insn = *found;
      run.counted = true;
    } else {
      run.not_counted = std::string(found.status().message());
    }
  } else {
    run.not_counted = std::string(opened.status().message());
  }
  run.marks = std::make_unique<MarkRecorder>(o.iterations, run.stats.get(), insn);

  RunOptions ro;
  ro.timeout = o.timeout;
  ro.verbose = o.verbose;
  ro.on_mark = [recorder = run.marks.get()](const MarkView& v) { return recorder->OnMark(v); };
  Runner runner(**vm, ro);
  RunResult r = runner.Run();
  run.outcome = r.outcome;
  if (r.outcome != Outcome::kCompleted) {
    run.failure = absl::StrFormat("lazy TLB %s: %s", LazyModeName(lazy), r.report);
    return run;
  }
  if (absl::Status s = run.marks->CheckComplete(); !s.ok()) return s;
  return run;
}

std::vector<int64_t> Column(const std::vector<Sample>& samples, int64_t Sample::*field,
                            int64_t minus) {
  std::vector<int64_t> v;
  v.reserve(samples.size());
  for (const Sample& s : samples) v.push_back(s.*field - minus);
  return v;
}

// 1234567 -> "1,234,567".
std::string Grouped(int64_t v) {
  std::string digits = std::to_string(v < 0 ? -v : v);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return v < 0 ? "-" + out : out;
}

const CostCaseResult* FindCase(const CostReport& r, abi::CostCase c, abi::LazyMode m) {
  for (const CostCaseResult& x : r.cases) {
    if (x.which == c && x.lazy == m) return &x;
  }
  return nullptr;
}

nlohmann::json SummaryJson(const CostSummary& s, const std::vector<int64_t>& values) {
  return {{"median", s.median}, {"min", s.min}, {"max", s.max}, {"per_iteration", values}};
}

}  // namespace

CostSummary Summarize(std::vector<int64_t> values) {
  if (values.empty()) return {};
  std::sort(values.begin(), values.end());
  return {values[(values.size() - 1) / 2], values.front(), values.back()};
}

const char* CostCaseName(abi::CostCase c) {
  switch (c) {
    case abi::CostCase::kCalibration:
      return "calibration";
    case abi::CostCase::kUserToKernel:
      return "user_to_kernel";
    case abi::CostCase::kKernelToUser:
      return "kernel_to_user";
    case abi::CostCase::kUserToUser:
      return "user_to_user";
    case abi::CostCase::kUserToUserSameMm:
      return "user_to_user_same_mm";
    case abi::CostCase::kKernelToKernel:
      return "kernel_to_kernel";
    case abi::CostCase::kFloorEmpty:
      return "floor_empty_loop";
    case abi::CostCase::kBareCr3Write:
      return "bare_cr3_write";
    case abi::CostCase::kBareStackSwitch:
      return "bare_stack_switch";
  }
  return "?";
}

const char* CostCaseTitle(abi::CostCase c) {
  switch (c) {
    case abi::CostCase::kCalibration:
      return "empty mark pair";
    case abi::CostCase::kUserToKernel:
      return "user -> kernel thread";
    case abi::CostCase::kKernelToUser:
      return "kernel thread -> user";
    case abi::CostCase::kUserToUser:
      return "user -> user, other mm";
    case abi::CostCase::kUserToUserSameMm:
      return "user -> user, same mm";
    case abi::CostCase::kKernelToKernel:
      return "kernel -> kernel";
    case abi::CostCase::kFloorEmpty:
      return "empty floor loop";
    case abi::CostCase::kBareCr3Write:
      return "bare CR3 write";
    case abi::CostCase::kBareStackSwitch:
      return "bare stack switch";
  }
  return "?";
}

absl::StatusOr<CostReport> RunCostBenchmark(const Kvm& kvm, const CostOptions& o) {
  if (o.iterations < 1 || o.iterations > static_cast<int>(abi::kMaxCostIterations)) {
    return absl::InvalidArgumentError(absl::StrFormat("--iterations=%d: must be between 1 and %d",
                                                      o.iterations, abi::kMaxCostIterations));
  }
  if (o.asids < 1 || o.asids > abi::kMaxAsids) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--asids=%d: must be between 1 and %d", o.asids, abi::kMaxAsids));
  }
  if (o.modes.empty()) return absl::InvalidArgumentError("no lazy TLB mode to measure");
  absl::StatusOr<GuestImage> image = GuestImage::Embedded();
  if (!image.ok()) return image.status();

  CostReport report;
  report.kvm_host = ProbeKvmHost(kvm);
  report.iterations = o.iterations;
  report.pcid = o.pcid;
  std::vector<ModeRun> runs;
  for (abi::LazyMode m : o.modes) {
    absl::StatusOr<ModeRun> run = RunMode(kvm, *image, o, m);
    if (!run.ok()) return run.status();
    report.tsc_khz = run->tsc_khz;
    if (!run->failure.empty() || run->outcome != Outcome::kCompleted) {
      report.outcome = run->outcome;
      report.failure = run->failure;
      return report;
    }
    runs.push_back(*std::move(run));
  }

  // Instructions are counted where every run read insn_emulation and the empty mark pair
  // counted some: its dozens of ring-0 instructions are all emulated only where ring 0 is.
  report.have_instructions = true;
  std::vector<CostSummary> calibration_insns;
  for (const ModeRun& run : runs) {
    const std::vector<Sample>& cal = run.marks->samples(abi::CostCase::kCalibration);
    calibration_insns.push_back(Summarize(Column(cal, &Sample::instructions, 0)));
    if (!run.counted) {
      report.have_instructions = false;
      report.instructions_note = run.not_counted;
    } else if (calibration_insns.back().median <= 0 && report.have_instructions) {
      report.have_instructions = false;
      report.instructions_note =
          "ring 0 runs natively here, and insn_emulation counts only the instructions KVM "
          "emulates";
    }
  }

  for (size_t i = 0; i < runs.size(); ++i) {
    const MarkRecorder& marks = *runs[i].marks;
    const std::vector<Sample>& cal = marks.samples(abi::CostCase::kCalibration);
    CostMarkerOverhead ov;
    ov.lazy = o.modes[i];
    ov.cycles = Summarize(Column(cal, &Sample::cycles, 0)).median;
    ov.instructions = report.have_instructions ? calibration_insns[i].median : 0;
    report.overhead.push_back(ov);
  }
  for (abi::CostCase c : kCases) {
    for (size_t i = 0; i < runs.size(); ++i) {
      const std::vector<Sample>& samples = runs[i].marks->samples(c);
      const CostMarkerOverhead& ov = report.overhead[i];
      CostCaseResult r;
      r.which = c;
      r.lazy = o.modes[i];
      r.cycles = Column(samples, &Sample::cycles, ov.cycles);
      r.cycle_summary = Summarize(r.cycles);
      r.cr3_writes = Summarize(Column(samples, &Sample::cr3_writes, 0)).median;
      if (report.have_instructions) {
        r.instructions = Column(samples, &Sample::instructions, ov.instructions);
        r.instruction_summary = Summarize(r.instructions);
        r.instructions_exact = r.instruction_summary.min == r.instruction_summary.max;
      }
      report.cases.push_back(std::move(r));
    }
  }
  // The floor: per operation, the loop of kFloorOps minus the empty loop's median.
  for (abi::CostCase c : {abi::CostCase::kBareCr3Write, abi::CostCase::kBareStackSwitch}) {
    const double per = abi::kFloorOps * (c == abi::CostCase::kBareStackSwitch ? 2.0 : 1.0);
    for (size_t i = 0; i < runs.size(); ++i) {
      const std::vector<Sample>& empty = runs[i].marks->samples(abi::CostCase::kFloorEmpty);
      const std::vector<Sample>& samples = runs[i].marks->samples(c);
      CostFloorResult f;
      f.which = c;
      f.lazy = o.modes[i];
      const int64_t empty_cycles = Summarize(Column(empty, &Sample::cycles, 0)).median;
      f.cycles =
          static_cast<double>(Summarize(Column(samples, &Sample::cycles, empty_cycles)).median) /
          per;
      if (report.have_instructions) {
        const int64_t empty_insns = Summarize(Column(empty, &Sample::instructions, 0)).median;
        const CostSummary insns = Summarize(Column(samples, &Sample::instructions, empty_insns));
        f.instructions = static_cast<double>(insns.median) / per;
        f.instructions_exact = insns.min == insns.max;
      }
      report.floor.push_back(f);
    }
  }
  return report;
}

std::string FormatCostReport(const CostReport& r) {
  std::string out = fmt::format(
      "activemm cost: one context switch in the guest, {} measured switches per case and mode\n",
      r.iterations);
  out += fmt::format("host: {}; guest TSC {}; PCID {}\n", r.kvm_host.Summary(),
                     r.tsc_khz != 0 ? fmt::format("{:.3f} MHz", r.tsc_khz / 1000.0)
                                    : std::string("of unknown frequency"),
                     PcidModeName(r.pcid));
  if (r.have_instructions) {
    out +=
        "instructions: ring-0 instructions per switch, counted by KVM (vCPU statistic "
        "insn_emulation); \"exact\" when every iteration counted the same\n";
  } else {
    out +=
        fmt::format("instruction counts: not available on this host ({})\n", r.instructions_note);
  }
  std::string overhead;
  for (const CostMarkerOverhead& ov : r.overhead) {
    overhead += fmt::format("{}lazy TLB {}: {} cycles", overhead.empty() ? "" : "; ",
                            LazyModeName(ov.lazy), Grouped(ov.cycles));
    if (r.have_instructions) overhead += fmt::format(", {} instructions", ov.instructions);
  }
  out +=
      fmt::format("marker overhead (median of the empty mark pairs), subtracted: {}\n\n", overhead);

  out += fmt::format("{:<24} {:>9} {:>4} {:>14} {:>14} {:>12} {:>12}\n", "case", "lazy TLB", "CR3",
                     "instructions", "cycles median", "min", "max");
  abi::CostCase last = abi::CostCase::kCalibration;
  for (const CostCaseResult& c : r.cases) {
    std::string insns = "-";
    if (r.have_instructions) {
      insns = c.instructions_exact ? fmt::format("{} exact", Grouped(c.instruction_summary.median))
                                   : fmt::format("~{}", Grouped(c.instruction_summary.median));
    }
    out += fmt::format("{:<24} {:>9} {:>4} {:>14} {:>14} {:>12} {:>12}\n",
                       c.which == last ? "" : CostCaseTitle(c.which), LazyModeName(c.lazy),
                       c.cr3_writes, insns, Grouped(c.cycle_summary.median),
                       Grouped(c.cycle_summary.min), Grouped(c.cycle_summary.max));
    last = c.which;
  }

  // What lazy TLB saves, where both modes were measured.
  std::string saved;
  for (abi::CostCase c : kCases) {
    const CostCaseResult* on = FindCase(r, c, abi::LazyMode::kOn);
    const CostCaseResult* off = FindCase(r, c, abi::LazyMode::kOff);
    if (on == nullptr || off == nullptr) continue;
    const int64_t a =
        r.have_instructions ? on->instruction_summary.median : on->cycle_summary.median;
    const int64_t b =
        r.have_instructions ? off->instruction_summary.median : off->cycle_summary.median;
    if (a == b) continue;
    saved +=
        fmt::format("  {:<24} {:>9} {} ({:.0f}% of off)\n", CostCaseTitle(c), Grouped(b - a),
                    r.have_instructions ? "instructions" : "cycles",
                    b != 0 ? 100.0 * static_cast<double>(b - a) / static_cast<double>(b) : 0.0);
  }
  if (!saved.empty()) out += "\nlazy TLB on saves per switch (median, against off):\n" + saved;
  if (!r.floor.empty()) {
    out += fmt::format(
        "\nthe floor, per operation ({} in a loop, minus the loop; a stack switch is half a "
        "round trip):\n",
        abi::kFloorOps);
    for (const CostFloorResult& f : r.floor) {
      out += fmt::format(
          "  {:<22} {:>9} {:>14} {:>14}\n", CostCaseTitle(f.which), LazyModeName(f.lazy),
          r.have_instructions
              ? fmt::format("{:.1f} instr{}", f.instructions, f.instructions_exact ? " exact" : "")
              : std::string("-"),
          fmt::format("{:.0f} cycles", f.cycles));
    }
  }
  return out;
}

nlohmann::json CostReportJson(const CostReport& r) {
  nlohmann::json j;
  j["host"] = r.kvm_host.Json();
  j["tsc_khz"] = r.tsc_khz;
  j["iterations"] = r.iterations;
  j["pcid"] = PcidModeName(r.pcid);
  j["instructions_available"] = r.have_instructions;
  j["instructions_source"] = r.have_instructions ? nlohmann::json(kInsnStat) : nlohmann::json();
  j["instructions_note"] = r.instructions_note;
  nlohmann::json overhead = nlohmann::json::array();
  for (const CostMarkerOverhead& ov : r.overhead) {
    overhead.push_back({{"lazy_tlb", LazyModeName(ov.lazy)},
                        {"cycles", ov.cycles},
                        {"instructions", r.have_instructions ? nlohmann::json(ov.instructions)
                                                             : nlohmann::json()}});
  }
  j["marker_overhead"] = overhead;
  nlohmann::json cases = nlohmann::json::array();
  for (const CostCaseResult& c : r.cases) {
    nlohmann::json x;
    x["case"] = CostCaseName(c.which);
    x["title"] = CostCaseTitle(c.which);
    x["lazy_tlb"] = LazyModeName(c.lazy);
    x["iterations"] = c.cycles.size();
    x["cr3_writes"] = c.cr3_writes;
    x["cycles"] = SummaryJson(c.cycle_summary, c.cycles);
    if (r.have_instructions) {
      x["instructions"] = SummaryJson(c.instruction_summary, c.instructions);
      x["instructions"]["exact"] = c.instructions_exact;
    } else {
      x["instructions"] = nullptr;
    }
    cases.push_back(std::move(x));
  }
  j["cases"] = cases;
  nlohmann::json floor = nlohmann::json::array();
  for (const CostFloorResult& f : r.floor) {
    floor.push_back({{"case", CostCaseName(f.which)},
                     {"title", CostCaseTitle(f.which)},
                     {"lazy_tlb", LazyModeName(f.lazy)},
                     {"ops_per_loop", abi::kFloorOps},
                     {"cycles", f.cycles},
                     {"instructions", r.have_instructions ? nlohmann::json(f.instructions)
                                                          : nlohmann::json(nullptr)},
                     {"instructions_exact", f.instructions_exact}});
  }
  j["floor"] = floor;
  return j;
}

}  // namespace activemm
