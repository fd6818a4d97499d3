#include "vmm/cli/command_util.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "fmt/core.h"
#include "vmm/cli/exit_codes.h"
#include "vmm/cli/flags.h"
#include "vmm/kvm/interrupt.h"
#include "vmm/model/report.h"

namespace activemm {

int UsageError(const ParsedCommandLine& cl, const std::string& msg) {
  fmt::print(stderr, "activemm: {}\n{}\n", msg, Grammar().Hint(cl.command));
  return kExitUsage;
}

int InputError(const std::string& msg) {
  fmt::print(stderr, "activemm: {}\n", msg);
  return kExitUsage;
}

int Interrupted() {
  const int sig = InterruptSignal();
  fmt::print(stderr, "activemm: interrupted by {}: the run was stopped; no output written\n",
             SignalName(sig));
  return 128 + sig;
}

namespace {

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

}  // namespace

std::string ParseMemAndTimeout(const ParsedCommandLine& cl, uint64_t* mem_bytes,
                               absl::Duration* timeout) {
  // The range vmm/kvm/vm.cc ValidateVmConfig holds the guest to, checked here too so that the
  // mistake is named before /dev/kvm is opened.
  const std::string range = absl::StrFormat("a multiple of 2M from %dM to %dG",
                                            abi::kMinMemBytes >> 20, abi::kMaxMemBytes >> 30);
  if (!ParseMem(cl.String("mem"), mem_bytes)) {
    return absl::StrFormat("--mem=%s: expected a size such as 256M or 1G (%s)", cl.String("mem"),
                           range);
  }
  if (*mem_bytes % (2ull << 20) != 0 || *mem_bytes < abi::kMinMemBytes ||
      *mem_bytes > abi::kMaxMemBytes) {
    return absl::StrFormat("--mem=%s: must be %s", cl.String("mem"), range);
  }
  const double seconds = cl.Double("timeout");
  if (!(seconds > 0 && seconds <= 3600)) {
    return absl::StrFormat("--timeout=%s: expected seconds in (0, 3600]", cl.String("timeout"));
  }
  *timeout = absl::Seconds(seconds);
  return "";
}

std::string CheckOutputFiles(const ParsedCommandLine& cl,
                             std::initializer_list<const char*> flags) {
  std::vector<std::pair<std::string, const char*>> seen;  // path, flag
  for (const char* flag : flags) {
    const std::string path = cl.String(flag);
    if (path.empty()) continue;
    const std::string given = absl::StrFormat("--%s=%s", flag, path);
    for (const auto& [other, other_flag] : seen) {
      if (other == path) return absl::StrFormat("%s: --%s names the same file", given, other_flag);
    }
    seen.emplace_back(path, flag);
    struct stat st;
    if (stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      return absl::StrFormat("%s: %s is a folder; name a file", given, path);
    }
    const size_t slash = path.rfind('/');
    const std::string dir =
        slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
    if (stat(dir.c_str(), &st) != 0) {
      if (errno == ENOENT) return absl::StrFormat("%s: the folder %s does not exist", given, dir);
      return absl::StrFormat("%s: cannot write in %s: %s", given, dir, std::strerror(errno));
    }
    if (!S_ISDIR(st.st_mode)) return absl::StrFormat("%s: %s is not a folder", given, dir);
    if (access(dir.c_str(), W_OK | X_OK) != 0) {
      return absl::StrFormat("%s: cannot write in %s: %s", given, dir, std::strerror(errno));
    }
  }
  return "";
}

bool ShowProgress(const ParsedCommandLine& cl) {
  return isatty(STDERR_FILENO) && std::getenv("CI") == nullptr && !cl.Bool("verbose");
}

std::string ParseModelFlags(const ParsedCommandLine& cl, ScenarioRunOptions* ro) {
  ro->verbose = cl.Bool("verbose");
  if (ShowProgress(cl)) ro->progress_label = cl.command;
  ro->asids = static_cast<uint32_t>(cl.Int("asids"));
  if (std::string e = ParseMemAndTimeout(cl, &ro->mem_bytes, &ro->timeout); !e.empty()) return e;
  // auto is refined once /dev/kvm is open (OpenKvm)
  ro->pcid = cl.String("pcid") == "off" ? abi::PcidMode::kOff : abi::PcidMode::kModeled;
  ro->bug = Lookup(kMmBugs, cl.String("inject"));
  return "";
}

abi::LazyMode LazyModeFlag(const ParsedCommandLine& cl, abi::LazyMode default_mode) {
  const std::string lazy = cl.String("lazy-tlb");
  return lazy.empty() ? default_mode : Lookup(kLazyModes, lazy);
}

absl::StatusOr<std::unique_ptr<Kvm>> OpenKvm(const ParsedCommandLine& cl, abi::PcidMode* pcid) {
  absl::StatusOr<std::unique_ptr<Kvm>> kvm = Kvm::Open(cl.String("kvm"));
  if (kvm.ok() && cl.String("pcid") == "auto" && (*kvm)->HasPcid()) {
    *pcid = abi::PcidMode::kHardware;
  }
  return kvm;
}

int Failed(const absl::Status& s, std::string_view who) {
  fmt::print(stderr, "{}: {}\n", who, std::string(s.message()));
  return ExitFor(s);
}

int NoKvm(const absl::Status& s) {
  fmt::print(stderr, "activemm: {}\n", std::string(s.message()));
  return kExitNoKvm;
}

int WriteOutput(const std::string& path, const std::string& content) {
  if (absl::Status s = WriteFileAtomically(path, content); !s.ok()) {
    fmt::print(stderr, "activemm: {}\n", std::string(s.message()));
    return kExitUsage;
  }
  return kExitOk;
}

}  // namespace activemm
