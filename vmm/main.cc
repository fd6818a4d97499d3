// activemm: Linux's mm / active_mm / lazy-TLB behaviour on real x86-64 page tables under KVM.
// Flags are parsed here only and passed down as config structs.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/time/time.h"
#include "fmt/core.h"
#include "vmm/capture.h"
#include "vmm/cost.h"
#include "vmm/exit_codes.h"
#include "vmm/kvm.h"
#include "vmm/kvm_host.h"
#include "vmm/replay.h"
#include "vmm/report.h"
#include "vmm/scenario.h"
#include "vmm/scenario_run.h"
#include "vmm/selftest.h"
#include "vmm/timeline.h"

ABSL_FLAG(int, cpus, 0,
          "number of vCPUs (simulated CPUs), 1..64; default: 4 for selftest, the scenario's own "
          "for run and compare");
ABSL_FLAG(std::string, mem, "256M",
          "guest RAM, a multiple of 2M between 16M and 3G (suffix M or G)");
ABSL_FLAG(double, timeout, 10, "seconds without guest progress before the watchdog stops the run");
ABSL_FLAG(std::string, inject, "none",
          "plant a bug to prove it is caught. selftest: kernel-fault, user-fault, spin, panic, "
          "verify-storm; "
          "run/compare: skip-lazy-mmgrab, double-mmdrop, forget-prev-mm, no-cpumask, wrong-cr3, "
          "fork-shares-page, munmap-keeps-pte, skip-ipi, no-tlb-gen-check, asid-no-flush");
ABSL_FLAG(std::string, lazy_tlb, "",
          "written --lazy-tlb. run: on, off or shootdown (default: the scenario's \"lazy_tlb\"); "
          "compare runs on "
          "and off");
ABSL_FLAG(std::string, pcid, "auto",
          "auto (real PCIDs where CPUID offers PCID, else modeled), modeled (ASID decisions "
          "computed, CR3 loaded without PCID bits) or off (ASID 0, every mm switch flushes)");
ABSL_FLAG(int, asids, 6, "per-CPU dynamic ASID slots (TLB_NR_DYN_ASIDS), 1..16");
ABSL_FLAG(int, iterations, 200, "cost: measured switches per case and mode, 1..100000");
ABSL_FLAG(std::string, verify, "end",
          "when the host verifies besides check/checkpoint steps: end, or every-step");
ABSL_FLAG(std::string, json, "", "also write the report as JSON to this file");
ABSL_FLAG(uint64_t, seed, 1, "stress: the generator's seed");
ABSL_FLAG(int, steps, 2000, "stress: model steps to generate");
ABSL_FLAG(bool, verbose, false, "print the guest's log lines");
ABSL_FLAG(std::string, kvm, activemm::Kvm::kDevicePath, "KVM device to open");
ABSL_FLAG(std::string, timeline, "",
          "run, compare, replay: write a Chrome/Perfetto trace-event file (ui.perfetto.dev) with "
          "a track per CPU: tasks, loaded mm, lazy periods, CR3 loads, IPIs");
ABSL_FLAG(std::string, decisions, "",
          "replay: write the emulator's decision for every sched_switch to this CSV file");
ABSL_FLAG(std::string, plan, "",
          "replay: write every program step it ran (with the trace line behind it) to this CSV "
          "file");
ABSL_FLAG(int, explain, 0, "replay: list the first N disagreements with the trace lines around them");
ABSL_FLAG(int, buffer_kb, activemm::kDefaultCaptureBufferKb,
          "written --buffer-kb. capture: the trace ring buffer per CPU, in KiB");
ABSL_FLAG(std::string, tracefs, activemm::kDefaultTracefs,
          "advanced: where capture finds (or mounts) tracefs; tests point it elsewhere");

namespace activemm {
namespace {

constexpr const char* kUsage =
    "activemm COMMAND [flags]\n"
    "\n"
    "Commands:\n"
    "  selftest   boot the guest on --cpus vCPUs: every CPU reports in, sends and receives an\n"
    "             IPI, and makes a ring-3 round trip on its own page table; the host verifies\n"
    "             it all (exit 0 only if all of it happened)\n"
    "  run [SCENARIO.json|SCENARIO.py]\n"
    "             run a scenario (default: the built-in one) with the verifier on; per-CPU and\n"
    "             total counters, checks and violations\n"
    "  compare [SCENARIO.json|SCENARIO.py]\n"
    "             run it with lazy TLB on and off, side by side, with the CR3 writes saved\n"
    "  stress     a seeded random scenario (scripts/stress_gen.py: --cpus, --seed, --steps)\n"
    "             run with the verifier after every step\n"
    "  capture OUT_DIR [--buffer-kb N] -- COMMAND [ARGS...]\n"
    "             record a real Linux sched + tlb_flush trace (ftrace) while COMMAND runs, into\n"
    "             the new folder OUT_DIR (root; --buffer-kb: KiB per CPU, default 16384)\n"
    "  cost [--iterations N] [--json OUT]\n"
    "             the guest's cost of one context switch per case (user -> kernel thread,\n"
    "             kernel thread -> user, user -> user...), lazy TLB on and off: TSC cycles and,\n"
    "             where KVM counts them, ring-0 instructions (docs/costs.md)\n"
    "\n"
    "Flags: --cpus, --mem, --timeout, --inject, --verbose, --kvm, --lazy-tlb, --pcid, --asids,\n"
    "--verify, --json (--help lists them all).\n"
    "Exit status: 0 ok, 1 check failed, 2 usage, 3 guest failure, 4 watchdog, 5 no usable KVM,\n"
    "6 host error.";

int UsageError(const std::string& msg) {
  fmt::print(stderr, "activemm: {}\n(activemm --help for usage)\n", msg);
  return kExitUsage;
}

bool ParseMem(std::string s, uint64_t* bytes) {
  s = absl::AsciiStrToUpper(s);
  uint64_t mult = 1ull << 20;
  if (!s.empty() && (s.back() == 'M' || s.back() == 'G')) {
    if (s.back() == 'G') mult = 1ull << 30;
    s.pop_back();
  }
  uint64_t n;
  if (!absl::SimpleAtoi(s, &n) || n == 0 || n > (1ull << 40) / mult) return false;
  *bytes = n * mult;
  return true;
}

// Looks `s` up in a table of {name, value} pairs.
template <typename T, size_t N>
bool ParseName(const std::pair<const char*, T> (&names)[N], const std::string& s, T* out) {
  for (const auto& [name, value] : names) {
    if (s == name) {
      *out = value;
      return true;
    }
  }
  return false;
}

// --mem and --timeout, shared by every command that boots a guest; "" when both are fine.
std::string ParseMemAndTimeout(uint64_t* mem_bytes, absl::Duration* timeout) {
  if (!ParseMem(absl::GetFlag(FLAGS_mem), mem_bytes)) {
    return absl::StrFormat("--mem=%s: expected a size such as 256M or 1G",
                           absl::GetFlag(FLAGS_mem));
  }
  const double seconds = absl::GetFlag(FLAGS_timeout);
  if (!(seconds > 0 && seconds <= 3600)) {
    return absl::StrFormat("--timeout=%g: expected seconds in (0, 3600]", seconds);
  }
  *timeout = absl::Seconds(seconds);
  return "";
}

bool ParseInject(const std::string& s, abi::Inject* out) {
  static const std::pair<const char*, abi::Inject> kNames[] = {
      {"none", abi::Inject::kNone},
      {"kernel-fault", abi::Inject::kKernelFault},
      {"user-fault", abi::Inject::kUserFault},
      {"spin", abi::Inject::kSpin},
      {"panic", abi::Inject::kPanic},
      {"verify-storm", abi::Inject::kVerifyStorm}};
  return ParseName(kNames, s, out);
}

int Selftest() {
  SelftestOptions opt;
  opt.vm.cpus = absl::GetFlag(FLAGS_cpus) == 0 ? 4 : absl::GetFlag(FLAGS_cpus);
  opt.vm.verbose = absl::GetFlag(FLAGS_verbose);
  if (std::string e = ParseMemAndTimeout(&opt.vm.mem_bytes, &opt.timeout); !e.empty()) {
    return UsageError(e);
  }
  if (!ParseInject(absl::GetFlag(FLAGS_inject), &opt.vm.inject)) {
    return UsageError(absl::StrFormat(
        "--inject=%s: expected none, kernel-fault, user-fault, spin, panic or verify-storm",
        absl::GetFlag(FLAGS_inject)));
  }
  if (opt.vm.cpus < 1 || opt.vm.cpus > static_cast<int>(abi::kMaxCpus)) {
    return UsageError(
        absl::StrFormat("--cpus=%d: must be between 1 and %d", opt.vm.cpus, abi::kMaxCpus));
  }

  absl::StatusOr<std::unique_ptr<Kvm>> kvm = Kvm::Open(absl::GetFlag(FLAGS_kvm));
  if (!kvm.ok()) {
    fmt::print(stderr, "activemm: {}\n", std::string(kvm.status().message()));
    return kExitNoKvm;
  }
  absl::StatusOr<SelftestResult> r = RunSelftest(**kvm, opt);
  if (!r.ok()) {
    fmt::print(stderr, "activemm: {}\n", std::string(r.status().message()));
    return r.status().code() == absl::StatusCode::kInvalidArgument ? kExitUsage : kExitHostError;
  }
  std::string summary = FormatSelftestSummary(*r, opt.vm, ProbeKvmHost(**kvm));
  fmt::print(r->passed ? stdout : stderr, "{}", summary);
  if (r->passed) return kExitOk;
  return r->run.outcome == Outcome::kCompleted ? kExitCheckFailed : ExitCodeFor(r->run.outcome);
}

bool ParseMmBug(const std::string& s, abi::MmBug* out) {
  static const std::pair<const char*, abi::MmBug> kNames[] = {
      {"none", abi::MmBug::kNone},
      {"skip-lazy-mmgrab", abi::MmBug::kSkipLazyMmgrab},
      {"double-mmdrop", abi::MmBug::kDoubleMmdrop},
      {"forget-prev-mm", abi::MmBug::kForgetPrevMm},
      {"no-cpumask", abi::MmBug::kNoCpumask},
      {"wrong-cr3", abi::MmBug::kWrongCr3},
      {"fork-shares-page", abi::MmBug::kForkSharesPage},
      {"munmap-keeps-pte", abi::MmBug::kMunmapKeepsPte},
      {"skip-ipi", abi::MmBug::kSkipIpiNonLazy},
      {"no-tlb-gen-check", abi::MmBug::kNoTlbGenCheck},
      {"asid-no-flush", abi::MmBug::kAsidNoFlush}};
  return ParseName(kNames, s, out);
}

// The stress generator's scenario: scripts/stress_gen.py of this source tree (or of
// $ACTIVEMM_SCRIPTS), run by Debian's /usr/bin/python3.
absl::StatusOr<std::string> GenerateStress(int cpus, uint64_t seed, int steps) {
  const char* env = std::getenv("ACTIVEMM_SCRIPTS");
  const std::string dir = env != nullptr ? env : ACTIVEMM_SCRIPTS_DIR;
  const std::string script = dir + "/stress_gen.py";
  if (!std::ifstream(script)) {
    return absl::NotFoundError(absl::StrFormat(
        "%s not found (set ACTIVEMM_SCRIPTS to the project's scripts/ folder)", script));
  }
  std::string cmd = absl::StrFormat("/usr/bin/python3 '%s' --cpus %d --seed %d --steps %d", script,
                                    cpus, seed, steps);
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return absl::InternalError("cannot run /usr/bin/python3");
  std::string out;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int status = pclose(p);
  if (status != 0) {
    return absl::InternalError(absl::StrFormat("%s failed (exit status %d)", script,
                                               WIFEXITED(status) ? WEXITSTATUS(status) : status));
  }
  return out;
}

// The scenario text: a JSON file, the JSON a Python scenario script prints (run by Debian's
// /usr/bin/python3, which sees the project's library), or the built-in scenario.
absl::StatusOr<std::string> LoadScenarioText(const std::string& path) {
  if (path.empty()) return std::string(DefaultScenarioJson());
  if (absl::EndsWith(path, ".py")) {
    std::ifstream probe(path);
    if (!probe) {
      return absl::NotFoundError(absl::StrFormat("%s: cannot read the scenario script", path));
    }
    std::string cmd = "/usr/bin/python3 '" + absl::StrReplaceAll(path, {{"'", "'\\''"}}) + "'";
    FILE* p = popen(cmd.c_str(), "r");
    if (p == nullptr) {
      return absl::InternalError(absl::StrFormat("%s: cannot run /usr/bin/python3", path));
    }
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    int status = pclose(p);
    if (status != 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: the scenario script failed (exit status %d); its error is above",
                          path, WIFEXITED(status) ? WEXITSTATUS(status) : status));
    }
    return out;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrFormat("%s: cannot read the scenario file", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The flags every command that runs the mm model shares: --asids, --mem, --timeout, --pcid,
// --inject, --verify, --lazy-tlb, --verbose. "" when they are fine, else the usage error.
// Progress lines for long runs: on a terminal only, and never in CI (CI=true) or when the
// guest's own log is echoed.
bool ShowProgress() {
  return isatty(STDERR_FILENO) && std::getenv("CI") == nullptr && !absl::GetFlag(FLAGS_verbose);
}

std::string ParseModelFlags(const std::string& cmd, ScenarioRunOptions* ro) {
  ro->verbose = absl::GetFlag(FLAGS_verbose);
  if (ShowProgress()) ro->progress_label = cmd;
  ro->asids = static_cast<uint32_t>(absl::GetFlag(FLAGS_asids));
  if (absl::GetFlag(FLAGS_asids) < 1 || absl::GetFlag(FLAGS_asids) > 16) {
    return absl::StrFormat("--asids=%d: must be between 1 and 16", absl::GetFlag(FLAGS_asids));
  }
  if (std::string e = ParseMemAndTimeout(&ro->mem_bytes, &ro->timeout); !e.empty()) return e;
  const std::string pcid = absl::GetFlag(FLAGS_pcid);
  if (pcid == "auto" || pcid == "modeled") {
    ro->pcid = abi::PcidMode::kModeled;  // auto is refined once /dev/kvm is open
  } else if (pcid == "off") {
    ro->pcid = abi::PcidMode::kOff;
  } else {
    return absl::StrFormat("--pcid=%s: expected auto, modeled or off", pcid);
  }
  if (!ParseMmBug(absl::GetFlag(FLAGS_inject), &ro->bug)) {
    return absl::StrFormat(
        "--inject=%s: %s takes none, skip-lazy-mmgrab, double-mmdrop, forget-prev-mm, "
        "no-cpumask, wrong-cr3, fork-shares-page, munmap-keeps-pte, skip-ipi, no-tlb-gen-check "
        "or asid-no-flush",
        absl::GetFlag(FLAGS_inject), cmd);
  }
  const std::string verify = absl::GetFlag(FLAGS_verify);
  if (verify != "end" && verify != "every-step") {
    return absl::StrFormat("--verify=%s: expected end or every-step", verify);
  }
  const std::string lazy = absl::GetFlag(FLAGS_lazy_tlb);
  if (!lazy.empty() && lazy != "on" && lazy != "off" && lazy != "shootdown") {
    return absl::StrFormat("--lazy-tlb=%s: expected on, off or shootdown", lazy);
  }
  return "";
}

abi::LazyMode LazyModeFlag(abi::LazyMode default_mode) {
  const std::string lazy = absl::GetFlag(FLAGS_lazy_tlb);
  if (lazy == "on") return abi::LazyMode::kOn;
  if (lazy == "off") return abi::LazyMode::kOff;
  if (lazy == "shootdown") return abi::LazyMode::kShootdown;
  return default_mode;
}

absl::StatusOr<std::unique_ptr<Kvm>> OpenKvm(ScenarioRunOptions* ro) {
  absl::StatusOr<std::unique_ptr<Kvm>> kvm = Kvm::Open(absl::GetFlag(FLAGS_kvm));
  if (kvm.ok() && absl::GetFlag(FLAGS_pcid) == "auto" && (*kvm)->HasPcid()) {
    ro->pcid = abi::PcidMode::kHardware;
  }
  return kvm;
}

// `replay DIR`: a real trace on the emulator, scored against the traced kernel's CR3 loads.
int ReplayCommand(const std::string& dir_path) {
  if (dir_path.empty()) return UsageError("replay: no trace folder given (activemm replay DIR)");
  ReplayOptions o;
  if (std::string e = ParseModelFlags("replay", &o.run); !e.empty()) return UsageError(e);
  o.run.lazy = LazyModeFlag(abi::LazyMode::kOn);
  o.plan.verify_every_step = absl::GetFlag(FLAGS_verify) == "every-step";
  if (absl::GetFlag(FLAGS_cpus) != 0) {
    return UsageError("--cpus: replay runs one vCPU per traced CPU (the trace's #P:)");
  }
  const int explain = absl::GetFlag(FLAGS_explain);
  if (explain < 0) return UsageError(absl::StrFormat("--explain=%d: expected N >= 0", explain));
  absl::StatusOr<TraceDir> dir = LoadTraceDir(dir_path);
  if (!dir.ok()) return UsageError(std::string(dir.status().message()));

  absl::StatusOr<std::unique_ptr<Kvm>> kvm = OpenKvm(&o.run);
  if (!kvm.ok()) {
    fmt::print(stderr, "activemm: {}\n", std::string(kvm.status().message()));
    return kExitNoKvm;
  }
  absl::StatusOr<ReplayResult> r = RunReplay(**kvm, *dir, o);
  if (!r.ok()) {
    fmt::print(stderr, "activemm: {}\n", std::string(r.status().message()));
    return r.status().code() == absl::StatusCode::kInvalidArgument ? kExitUsage : kExitHostError;
  }
  const bool ok = r->report.ok();
  const KvmHost host = ProbeKvmHost(**kvm);
  fmt::print(ok ? stdout : stderr, "{}host: {}\n", FormatReplay(*dir, *r), host.Summary());
  if (explain > 0) {
    std::ifstream in(dir_path + "/trace.txt", std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    fmt::print("{}", FormatDisagreements(*dir, ss.str(), *r, explain));
  }
  for (const auto& [path, content] :
       {std::pair{absl::GetFlag(FLAGS_decisions), DecisionsCsv(*r)},
        std::pair{absl::GetFlag(FLAGS_json), ReplayJson(*dir, *r, host)},
        std::pair{absl::GetFlag(FLAGS_plan), PlanCsv(*r, dir->trace)},
        std::pair{absl::GetFlag(FLAGS_timeline), ReplayTimeline(*dir, *r)}}) {
    if (path.empty()) continue;
    if (absl::Status s = WriteFileAtomically(path, content); !s.ok()) {
      fmt::print(stderr, "activemm: {}\n", std::string(s.message()));
      return kExitUsage;
    }
  }
  if (ok) return kExitOk;
  return r->report.run.outcome == Outcome::kCompleted ? kExitCheckFailed
                                                      : ExitCodeFor(r->report.run.outcome);
}

int ScenarioCommand(const std::string& cmd, const std::string& path) {
  const bool compare = cmd == "compare";
  const bool stress = cmd == "stress";
  ScenarioRunOptions ro;
  if (std::string e = ParseModelFlags(cmd, &ro); !e.empty()) return UsageError(e);
  const std::string verify = absl::GetFlag(FLAGS_verify);
  const std::string lazy = absl::GetFlag(FLAGS_lazy_tlb);
  if (compare && !lazy.empty()) {
    return UsageError("--lazy-tlb: compare runs both modes; use run for one");
  }

  absl::StatusOr<std::string> text;
  CompileOptions co;
  if (stress) {
    const int cpus = absl::GetFlag(FLAGS_cpus) == 0 ? 4 : absl::GetFlag(FLAGS_cpus);
    const int steps = absl::GetFlag(FLAGS_steps);
    if (cpus < 1 || cpus > 64 || steps < 1 || steps > 30000) {
      return UsageError("stress: --cpus must be 1..64 and --steps 1..30000");
    }
    text = GenerateStress(cpus, absl::GetFlag(FLAGS_seed), steps);
    if (!text.ok()) {
      fmt::print(stderr, "activemm: {}\n", std::string(text.status().message()));
      return kExitHostError;
    }
  } else {
    text = LoadScenarioText(path);
    if (!text.ok()) return UsageError(std::string(text.status().message()));
    if (absl::GetFlag(FLAGS_cpus) != 0) co.cpus = absl::GetFlag(FLAGS_cpus);
  }
  // A stress run checks every quiet point: there is a quiet point after every step.
  co.verify_every_step = stress || verify == "every-step";
  absl::StatusOr<Scenario> sc = CompileScenario(*text, path.empty() ? "built-in" : path, co);
  if (!sc.ok()) return UsageError(std::string(sc.status().message()));

  absl::StatusOr<std::unique_ptr<Kvm>> kvm = OpenKvm(&ro);
  if (!kvm.ok()) {
    fmt::print(stderr, "activemm: {}\n", std::string(kvm.status().message()));
    return kExitNoKvm;
  }
  // compare: every lazy mode, under each PCID mode this host has (real PCIDs where CPUID
  // offers them, the modeled decisions, none), unless --pcid picked one.
  std::vector<std::pair<abi::LazyMode, abi::PcidMode>> modes;
  if (compare) {
    std::vector<abi::PcidMode> pcids = {ro.pcid};
    if (absl::GetFlag(FLAGS_pcid) == "auto") {
      pcids = {abi::PcidMode::kModeled, abi::PcidMode::kOff};
      if (ro.pcid == abi::PcidMode::kHardware) pcids.insert(pcids.begin(), ro.pcid);
    }
    for (abi::PcidMode p : pcids) {
      for (abi::LazyMode m : {abi::LazyMode::kOn, abi::LazyMode::kShootdown, abi::LazyMode::kOff}) {
        modes.push_back({m, p});
      }
    }
  } else {
    modes = {{LazyModeFlag(sc->lazy_tlb ? abi::LazyMode::kOn : abi::LazyMode::kOff), ro.pcid}};
  }
  std::vector<ScenarioReport> reports;
  for (const auto& [lazy, pcid] : modes) {
    ro.lazy = lazy;
    ro.pcid = pcid;
    if (!ro.progress_label.empty()) {
      ro.progress_label =
          absl::StrFormat("%s (lazy %s, PCID %s)", cmd, LazyModeName(lazy), PcidModeName(pcid));
    }
    absl::StatusOr<ScenarioReport> r = RunScenarioOnKvm(**kvm, *sc, ro);
    if (!r.ok()) {
      fmt::print(stderr, "activemm: {}\n", std::string(r.status().message()));
      return r.status().code() == absl::StatusCode::kInvalidArgument ? kExitUsage : kExitHostError;
    }
    reports.push_back(*std::move(r));
  }
  const KvmHost host = ProbeKvmHost(**kvm);
  const std::string text_out =
      compare ? FormatComparison(reports, host) : FormatRunReport(reports[0], host);
  bool all_ok = true;
  int worst = kExitOk;
  for (const ScenarioReport& r : reports) {
    if (r.ok()) continue;
    all_ok = false;
    int code = r.run.outcome == Outcome::kCompleted ? kExitCheckFailed : ExitCodeFor(r.run.outcome);
    worst = std::max(worst, code);
  }
  fmt::print(all_ok ? stdout : stderr, "{}", text_out);
  const std::string json_path = absl::GetFlag(FLAGS_json);
  if (!json_path.empty()) {
    nlohmann::json j = compare ? ComparisonJson(reports, host) : RunReportJson(reports[0], host);
    absl::Status s = WriteFileAtomically(json_path, j.dump(2) + "\n");
    if (!s.ok()) {
      fmt::print(stderr, "activemm: {}\n", std::string(s.message()));
      return kExitUsage;
    }
  }
  if (const std::string path = absl::GetFlag(FLAGS_timeline); !path.empty()) {
    std::vector<TimelineRun> runs;
    for (const ScenarioReport& r : reports) {
      runs.push_back({absl::StrFormat("activemm: lazy %s, PCID %s", LazyModeName(r.lazy),
                                      PcidModeName(r.pcid)),
                      &*sc, &r, {}});
    }
    if (absl::Status s = WriteFileAtomically(path, TimelineJson(runs, nullptr, "")); !s.ok()) {
      fmt::print(stderr, "activemm: {}\n", std::string(s.message()));
      return kExitUsage;
    }
  }
  return worst;
}

// `cost [--iterations N] [--json OUT]`: the guest's cost per context-switch case, lazy TLB on
// and off (or the one mode --lazy-tlb names).
int CostCommand() {
  CostOptions o;
  o.iterations = absl::GetFlag(FLAGS_iterations);
  if (absl::GetFlag(FLAGS_asids) < 1 || absl::GetFlag(FLAGS_asids) > 16) {
    return UsageError(
        absl::StrFormat("--asids=%d: must be between 1 and 16", absl::GetFlag(FLAGS_asids)));
  }
  o.asids = static_cast<uint32_t>(absl::GetFlag(FLAGS_asids));
  o.verbose = absl::GetFlag(FLAGS_verbose);
  if (o.iterations < 1 || o.iterations > static_cast<int>(abi::kMaxCostIterations)) {
    return UsageError(absl::StrFormat("--iterations=%d: must be between 1 and %d", o.iterations,
                                      abi::kMaxCostIterations));
  }
  if (std::string e = ParseMemAndTimeout(&o.mem_bytes, &o.timeout); !e.empty()) {
    return UsageError(e);
  }
  const std::string pcid = absl::GetFlag(FLAGS_pcid);
  if (pcid == "off") {
    o.pcid = abi::PcidMode::kOff;
  } else if (pcid != "auto" && pcid != "modeled") {
    return UsageError(absl::StrFormat("--pcid=%s: expected auto, modeled or off", pcid));
  }
  const std::string lazy = absl::GetFlag(FLAGS_lazy_tlb);
  if (lazy == "on" || lazy == "off" || lazy == "shootdown") {
    o.modes = {LazyModeFlag(abi::LazyMode::kOn)};
  } else if (!lazy.empty()) {
    return UsageError(absl::StrFormat("--lazy-tlb=%s: expected on, off or shootdown", lazy));
  }
  absl::StatusOr<std::unique_ptr<Kvm>> kvm = Kvm::Open(absl::GetFlag(FLAGS_kvm));
  if (!kvm.ok()) {
    fmt::print(stderr, "activemm: {}\n", std::string(kvm.status().message()));
    return kExitNoKvm;
  }
  if (pcid == "auto" && (*kvm)->HasPcid()) o.pcid = abi::PcidMode::kHardware;
  absl::StatusOr<CostReport> r = RunCostBenchmark(**kvm, o);
  if (!r.ok()) {
    fmt::print(stderr, "activemm: {}\n", std::string(r.status().message()));
    return r.status().code() == absl::StatusCode::kInvalidArgument ? kExitUsage : kExitHostError;
  }
  if (!r->ok()) {
    fmt::print(stderr, "activemm cost: the guest run failed: {}\n", r->failure);
    return ExitCodeFor(r->outcome);
  }
  fmt::print("{}", FormatCostReport(*r));
  const std::string json_path = absl::GetFlag(FLAGS_json);
  if (!json_path.empty()) {
    absl::Status s = WriteFileAtomically(json_path, CostReportJson(*r).dump(2) + "\n");
    if (!s.ok()) {
      fmt::print(stderr, "activemm: {}\n", std::string(s.message()));
      return kExitUsage;
    }
  }
  return kExitOk;
}

// `capture OUT_DIR [--buffer-kb N] -- COMMAND [ARGS...]`. absl stops parsing flags at the first
// "--" and appends what follows to the positional arguments, so `args` cannot tell OUT_DIR from
// the command: the command is taken from the original `argv`, after that "--", untouched.
int Capture(const std::vector<char*>& args, int argc, char** argv) {
  constexpr const char* kSyntax = "activemm capture OUT_DIR [--buffer-kb N] -- COMMAND [ARGS...]";
  int dashes = 0;
  for (int i = 1; i < argc && dashes == 0; ++i) {
    if (std::string_view(argv[i]) == "--") dashes = i;
  }
  const size_t command_args = dashes == 0 ? 0 : argc - dashes - 1;
  // args: the program, "capture", OUT_DIR, then the command.
  const size_t before = args.size() - std::min(command_args, args.size());
  if (before < 3) return UsageError(absl::StrFormat("capture: no OUT_DIR given (%s)", kSyntax));
  if (before > 3) {
    return UsageError(absl::StrFormat(
        "capture: unexpected argument '%s' (the command goes after --: %s)", args[3], kSyntax));
  }
  if (command_args == 0) {
    return UsageError(absl::StrFormat("capture: no command given after -- (%s)", kSyntax));
  }
  CaptureOptions o;
  o.out_dir = args[2];
  o.argv.assign(argv + dashes + 1, argv + argc);
  o.buffer_kb = absl::GetFlag(FLAGS_buffer_kb);
  o.tracefs = absl::GetFlag(FLAGS_tracefs);
  o.progress = stderr;  // the command's stdout stays its own
  if (o.buffer_kb < 1 || o.buffer_kb > kMaxCaptureBufferKb) {
    return UsageError(absl::StrFormat("--buffer-kb=%d: expected KiB per CPU, 1..%d", o.buffer_kb,
                                      kMaxCaptureBufferKb));
  }
  absl::Status s = CaptureTrace(o);
  if (!s.ok()) {
    fmt::print(stderr, "activemm capture: {}\n", std::string(s.message()));
    return s.code() == absl::StatusCode::kInvalidArgument ||
                   s.code() == absl::StatusCode::kAlreadyExists
               ? kExitUsage
               : kExitHostError;
  }
  return kExitOk;
}

}  // namespace
}  // namespace activemm

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(activemm::kUsage);
  // --help lists the flags of this file (absl's default looks for a file named after the
  // program), not Abseil's own.
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "vmm/main.cc");
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  absl::SetFlagsUsageConfig(usage);
  // Flags are spelled with dashes on the command line (--lazy-tlb) and with underscores in
  // absl (lazy_tlb): rewrite the few that have one before parsing.
  std::vector<std::string> storage(argv, argv + argc);
  std::vector<char*> argv2;
  for (std::string& a : storage) {
    for (const char* name : {"lazy-tlb", "buffer-kb"}) {
      const std::string dashed = std::string("--") + name;
      if (a == dashed || absl::StartsWith(a, dashed + "=")) {
        a = "--" + absl::StrReplaceAll(name, {{"-", "_"}}) + a.substr(dashed.size());
      }
    }
    argv2.push_back(a.data());
  }
  std::vector<char*> args = absl::ParseCommandLine(argc, argv2.data());
  if (args.size() < 2) return activemm::UsageError("no command given");
  std::string cmd = args[1];
  if (cmd == "capture") return activemm::Capture(args, argc, argv);
  if (cmd == "__prime") return activemm::PrimeStep(args.size() > 2 ? args[2] : "");
  const size_t max_args = cmd == "run" || cmd == "compare" || cmd == "replay" ? 3 : 2;
  if (args.size() > max_args) {
    return activemm::UsageError(absl::StrFormat("unexpected argument '%s'", args[max_args]));
  }
  if (cmd == "selftest") return activemm::Selftest();
  if (cmd == "cost") return activemm::CostCommand();
  if (cmd == "replay") return activemm::ReplayCommand(args.size() > 2 ? args[2] : "");
  if (cmd == "run" || cmd == "compare" || cmd == "stress") {
    return activemm::ScenarioCommand(cmd, args.size() > 2 ? args[2] : "");
  }
  return activemm::UsageError(absl::StrFormat("unknown command '%s'", cmd));
}
