#include "vmm/replay/machine_facts.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <sstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace activemm {
namespace {

// absl's splitting and trimming work on absl::string_view, which is not std::string_view here.
absl::string_view Absl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// The "flags" line of the first CPU in /proc/cpuinfo, as a set.
std::set<std::string, std::less<>> CpuFlags(std::string_view cpuinfo) {
  for (absl::string_view line : absl::StrSplit(Absl(cpuinfo), '\n')) {
    std::vector<absl::string_view> kv = absl::StrSplit(line, absl::MaxSplits(':', 1));
    if (kv.size() != 2 || absl::StripAsciiWhitespace(kv[0]) != "flags") continue;
    std::set<std::string, std::less<>> flags;
    for (absl::string_view f : absl::StrSplit(kv[1], ' ', absl::SkipEmpty())) {
      flags.emplace(std::string(absl::StripAsciiWhitespace(f)));
    }
    return flags;
  }
  return {};
}

bool HasWord(std::string_view text, std::string_view word) {
  for (absl::string_view w :
       absl::StrSplit(Absl(text), absl::ByAnyChar(" \t\n"), absl::SkipEmpty())) {
    if (w == Absl(word)) return true;
  }
  return false;
}

std::string ReadSmall(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const char* YesNo(bool b) { return b ? "yes" : "no"; }

bool ParseYesNo(absl::string_view v, std::optional<bool>* out) {
  if (v == "yes" || v == "no") {
    *out = v == "yes";
    return true;
  }
  return false;
}

}  // namespace

std::string FormatMachineFacts(std::string_view release, std::string_view arch, int cpus,
                               std::string_view cpuinfo, std::string_view cmdline,
                               std::string_view kernel_config) {
  const auto flags = CpuFlags(cpuinfo);
  const bool pcid = flags.count("pcid") > 0, invpcid = flags.count("invpcid") > 0;
  const bool pge = flags.count("pge") > 0;
  const bool nopcid = HasWord(cmdline, "nopcid"), noinvpcid = HasWord(cmdline, "noinvpcid");
  // MMU_LAZY_TLB_SHOOTDOWN is selected by powerpc only (arch/Kconfig, 6.2 on): an x86 kernel
  // refcounts lazy mms whatever its config file, which is often not installed.
  std::string lazy = "unknown";
  if (HasWord(kernel_config, "CONFIG_MMU_LAZY_TLB_SHOOTDOWN=y")) {
    lazy = "shootdown";
  } else if (HasWord(kernel_config, "CONFIG_MMU_LAZY_TLB_REFCOUNT=y") || arch == "x86_64") {
    lazy = "refcount";
  }
  std::string out =
      "# The traced machine, for activemm replay (docs/replay.md): written by activemm capture.\n";
  absl::StrAppendFormat(&out, "release: %s\n", Absl(release));
  absl::StrAppendFormat(&out, "cpus: %d\n", cpus);
  absl::StrAppendFormat(&out, "cpu_pcid: %s\n", YesNo(pcid));
  absl::StrAppendFormat(&out, "cpu_invpcid: %s\n", YesNo(invpcid));
  absl::StrAppendFormat(&out, "boot_nopcid: %s\n", YesNo(nopcid));
  absl::StrAppendFormat(&out, "boot_noinvpcid: %s\n", YesNo(noinvpcid));
  absl::StrAppendFormat(&out, "kernel_pcid: %s\n", YesNo(pcid && pge && !nopcid));
  absl::StrAppendFormat(&out, "lazy_tlb: %s\n", lazy);
  return out;
}

std::string ThisMachineFacts() {
  struct utsname u {};
  const bool named = uname(&u) == 0;
  const std::string release = named ? u.release : "";
  return FormatMachineFacts(release, named ? u.machine : "",
                            static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN)),
                            ReadSmall("/proc/cpuinfo"), ReadSmall("/proc/cmdline"),
                            release.empty() ? "" : ReadSmall("/boot/config-" + release));
}

MachineFacts ParseMachineFacts(std::string_view text) {
  MachineFacts m;
  m.present = true;
  for (absl::string_view line : absl::StrSplit(Absl(text), '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    std::vector<absl::string_view> kv = absl::StrSplit(line, absl::MaxSplits(':', 1));
    if (kv.size() != 2) {
      ++m.bad_lines;
      continue;
    }
    const absl::string_view key = absl::StripAsciiWhitespace(kv[0]);
    const absl::string_view value = absl::StripAsciiWhitespace(kv[1]);
    bool ok = true;
    if (key == "release") {
      m.release = std::string(value);
    } else if (key == "cpus") {
      ok = absl::SimpleAtoi(value, &m.cpus) && m.cpus >= 1 && m.cpus <= 8192;
      if (!ok) m.cpus = 0;
    } else if (key == "cpu_pcid") {
      ok = ParseYesNo(value, &m.cpu_pcid);
    } else if (key == "cpu_invpcid") {
      ok = ParseYesNo(value, &m.cpu_invpcid);
    } else if (key == "boot_nopcid") {
      ok = ParseYesNo(value, &m.boot_nopcid);
    } else if (key == "boot_noinvpcid") {
      ok = ParseYesNo(value, &m.boot_noinvpcid);
    } else if (key == "kernel_pcid") {
      ok = ParseYesNo(value, &m.kernel_pcid);
    } else if (key == "lazy_tlb") {
      ok = value == "refcount" || value == "shootdown" || value == "unknown";
      if (ok) m.lazy_tlb = value == "unknown" ? "" : std::string(value);
    } else {
      ok = false;
    }
    if (!ok) ++m.bad_lines;
  }
  return m;
}

}  // namespace activemm
