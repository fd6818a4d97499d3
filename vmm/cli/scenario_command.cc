// `run`, `compare` and `stress`: a scenario (a JSON file, a Python script's JSON, the built-in
// one or the stress generator's) compiled and run with the verifier on, in one mode or all.
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "fmt/core.h"
#include "vmm/cli/command_util.h"
#include "vmm/cli/commands.h"
#include "vmm/cli/exit_codes.h"
#include "vmm/cli/flags.h"
#include "vmm/kvm/interrupt.h"
#include "vmm/kvm/kvm.h"
#include "vmm/kvm/kvm_host.h"
#include "vmm/kvm/unique_fd.h"
#include "vmm/model/report.h"
#include "vmm/model/scenario.h"
#include "vmm/model/scenario_run.h"
#include "vmm/tools/timeline.h"

namespace activemm {
namespace {

// The project's scripts/ folder (stress_gen.py, activemm_scenario.py): $ACTIVEMM_SCRIPTS, else
// the one of the source tree this binary was built from, found from the binary's own place.
std::string ScriptsDir() {
  if (const char* env = std::getenv("ACTIVEMM_SCRIPTS"); env != nullptr) return env;
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  const std::filesystem::path dir = ec ? std::filesystem::current_path(ec) : self.parent_path();
  return (dir / ACTIVEMM_SCRIPTS_FROM_BINARY).lexically_normal().string();
}

// `s` quoted for /bin/sh.
std::string ShellQuote(const std::string& s) {
  // StrCat, not "'" + string + "'": GCC 12 at -O3 warns -Wrestrict on that (a known false
  // positive, GCC bug 105329).
  return absl::StrCat("'", absl::StrReplaceAll(s, {{"'", "'\\''"}}), "'");
}

// The stress generator's scenario: scripts/stress_gen.py of this source tree (or of
// $ACTIVEMM_SCRIPTS), run by Debian's /usr/bin/python3.
absl::StatusOr<std::string> GenerateStress(int cpus, uint64_t seed, int steps) {
  const std::string script = ScriptsDir() + "/stress_gen.py";
  if (!std::ifstream(script)) {
    return absl::NotFoundError(absl::StrFormat(
        "%s not found (set ACTIVEMM_SCRIPTS to the project's scripts/ folder)", script));
  }
  std::string cmd = absl::StrFormat("/usr/bin/python3 %s --cpus %d --seed %d --steps %d",
                                    ShellQuote(script), cpus, seed, steps);
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

// The whole of the file `path`, or why it cannot be read ("PATH: cannot read the WHAT: No such
// file or directory").
absl::StatusOr<std::string> ReadWholeFile(const std::string& path, std::string_view what) {
  auto failed = [&](int err) {
    return absl::NotFoundError(
        absl::StrFormat("%s: cannot read the %s: %s", path, what, std::strerror(err)));
  };
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return failed(errno);
  std::string out;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  const int err = std::ferror(f) ? errno : 0;
  std::fclose(f);
  if (err != 0) return failed(err);
  return out;
}

// Why a Python scenario script failed, in one line, from what it wrote on stderr: its last line
// (a traceback ends with the exception), after "at line N: " when the traceback names a line of
// the script itself. "" when it wrote nothing.
std::string ScriptFailure(const std::string& path, const std::string& errors) {
  std::vector<absl::string_view> lines = absl::StrSplit(errors, '\n', absl::SkipWhitespace());
  if (lines.empty()) return "";
  const std::string why(absl::StripAsciiWhitespace(lines.back()));
  // Python names the script by its absolute path: '  File "/abs/s.py", line 3, in <module>'.
  const std::string frame = absl::StrCat(
      "File \"", std::filesystem::absolute(path).lexically_normal().string(), "\", line ");
  for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
    const size_t at = it->find(frame);
    if (at == absl::string_view::npos) continue;
    absl::string_view number = it->substr(at + frame.size());
    number = number.substr(0, number.find(','));
    int line = 0;
    if (absl::SimpleAtoi(number, &line)) return absl::StrFormat("at line %d: %s", line, why);
    break;
  }
  return why;
}

// The scenario text: a JSON file, the JSON a Python scenario script prints (run by Debian's
// /usr/bin/python3, with the scripts folder first on PYTHONPATH so that a script anywhere can
// import activemm_scenario), or the built-in scenario.
absl::StatusOr<std::string> LoadScenarioText(const std::string& path) {
  if (path.empty()) return std::string(DefaultScenarioJson());
  if (!absl::EndsWith(path, ".py")) return ReadWholeFile(path, "scenario file");
  if (absl::StatusOr<std::string> probe = ReadWholeFile(path, "scenario script"); !probe.ok()) {
    return probe.status();
  }
  std::string python_path = ScriptsDir();
  if (const char* env = std::getenv("PYTHONPATH"); env != nullptr && *env != '\0') {
    absl::StrAppend(&python_path, ":", env);
  }
  std::string cmd =
      absl::StrCat("PYTHONPATH=", ShellQuote(python_path), " /usr/bin/python3 ", ShellQuote(path));
  // The script's stderr goes to an anonymous in-memory file (inherited by the shell, no file
  // left anywhere): a failure is reported in one line, not as a traceback.
  UniqueFd errors_fd(memfd_create("activemm-scenario-stderr", 0));
  if (errors_fd.valid()) absl::StrAppend(&cmd, " 2>&", errors_fd.get());
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) {
    return absl::InternalError(absl::StrFormat("%s: cannot run /usr/bin/python3", path));
  }
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int status = pclose(p);
  std::string errors;
  if (errors_fd.valid() && lseek(errors_fd.get(), 0, SEEK_SET) == 0) {
    ssize_t got;
    while ((got = read(errors_fd.get(), buf, sizeof buf)) > 0) errors.append(buf, got);
  }
  if (status != 0) {
    std::string why = ScriptFailure(path, errors);
    if (!why.empty()) why = (absl::StartsWith(why, "at line ") ? " " : ": ") + why;
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: the scenario script failed (exit status %d)%s", path,
                        WIFEXITED(status) ? WEXITSTATUS(status) : status, why));
  }
  fmt::print(stderr, "{}", errors);  // the warnings of a script that worked
  if (absl::StripAsciiWhitespace(out).empty()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: the scenario script printed nothing: it must print the scenario's JSON on stdout "
        "(activemm_scenario's main(scenario) does)",
        path));
  }
  return out;
}

}  // namespace

// run, compare and stress.
int ScenarioCommand(const ParsedCommandLine& cl) {
  const std::string& cmd = cl.command;
  const std::string path = cl.args.empty() ? "" : cl.args[0];
  const bool compare = cmd == "compare";
  const bool stress = cmd == "stress";
  ScenarioRunOptions ro;
  if (std::string e = ParseModelFlags(cl, &ro); !e.empty()) return UsageError(cl, e);
  if (std::string e = CheckOutputFiles(cl, {"json", "timeline"}); !e.empty()) return InputError(e);
  ro.record_step_state = !cl.String("timeline").empty();
  if (!compare) ro.profile_hz = static_cast<int>(cl.Int("profile"));

  absl::StatusOr<std::string> text;
  CompileOptions co;
  if (stress) {
    text = GenerateStress(static_cast<int>(cl.Int("cpus")), cl.Uint64("seed"),
                          static_cast<int>(cl.Int("steps")));
    // $ACTIVEMM_SCRIPTS pointing where there is no generator is the user's to fix (NotFound).
    if (!text.ok()) return Failed(text.status());
  } else {
    text = LoadScenarioText(path);
    if (!text.ok()) return InputError(std::string(text.status().message()));
    if (cl.Has("cpus")) co.cpus = static_cast<int>(cl.Int("cpus"));
  }
  // A stress run checks every quiet point: there is a quiet point after every step.
  co.verify_every_step = stress || cl.String("verify") == "every-step";
  absl::StatusOr<Scenario> sc = CompileScenario(*text, path.empty() ? "built-in" : path, co);
  if (!sc.ok()) return InputError(std::string(sc.status().message()));

  absl::StatusOr<std::unique_ptr<Kvm>> kvm = OpenKvm(cl, &ro.pcid);
  if (!kvm.ok()) {
    return NoKvm(kvm.status());
  }
  // compare: every lazy mode, under each PCID mode this host has (real PCIDs where CPUID
  // offers them, the modeled decisions, none), unless --pcid picked one.
  std::vector<std::pair<abi::LazyMode, abi::PcidMode>> modes;
  if (compare) {
    std::vector<abi::PcidMode> pcids = {ro.pcid};
    if (cl.String("pcid") == "auto") {
      pcids = {abi::PcidMode::kModeled, abi::PcidMode::kOff};
      if (ro.pcid == abi::PcidMode::kHardware) pcids.insert(pcids.begin(), ro.pcid);
    }
    for (abi::PcidMode p : pcids) {
      for (abi::LazyMode m : {abi::LazyMode::kOn, abi::LazyMode::kShootdown, abi::LazyMode::kOff}) {
        modes.push_back({m, p});
      }
    }
  } else {
    modes = {{LazyModeFlag(cl, sc->lazy_tlb ? abi::LazyMode::kOn : abi::LazyMode::kOff), ro.pcid}};
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
    if (InterruptSignal() != 0) return Interrupted();  // compare: no further run either
    if (!r.ok()) {
      return Failed(r.status());
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
  if (const std::string json_path = cl.String("json"); !json_path.empty()) {
    nlohmann::json j = compare ? ComparisonJson(reports, host) : RunReportJson(reports[0], host);
    if (int code = WriteOutput(json_path, j.dump(2) + "\n"); code != kExitOk) return code;
  }
  if (const std::string timeline = cl.String("timeline"); !timeline.empty()) {
    std::vector<TimelineRun> runs;
    for (const ScenarioReport& r : reports) {
      runs.push_back({absl::StrFormat("activemm: lazy %s, PCID %s", LazyModeName(r.lazy),
                                      PcidModeName(r.pcid)),
                      &*sc,
                      &r,
                      {}});
    }
    if (int code = WriteOutput(timeline, TimelineJson(runs, nullptr, "")); code != kExitOk) {
      return code;
    }
  }
  return worst;
}

}  // namespace activemm
