#include "vmm/model/report.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>

#include "absl/strings/str_format.h"
#include "fmt/core.h"
#include "fmt/format.h"
#include "vmm/model/model_state.h"

namespace activemm {
namespace {

int CounterIndex(const std::string& name) {
  const std::vector<std::string>& names = MmCounterNames();
  for (int i = 0; i < static_cast<int>(names.size()); ++i) {
    if (names[i] == name) return i;
  }
  return -1;
}

// Up to this many CPUs the run table has a column per CPU; beyond, the totals only (the JSON
// report has every CPU).
constexpr size_t kMaxCpuColumns = 8;

// The run table: a row per counter, named as scenarios and --json name it, and a column per
// CPU and for the totals.
std::string CounterTable(const ScenarioReport& r) {
  const std::vector<std::string>& names = MmCounterNames();
  size_t width = 0;
  for (const std::string& n : names) width = std::max(width, n.size());
  const bool per_cpu = r.cpus.size() <= kMaxCpuColumns;
  std::string out = fmt::format("{:<{}}", "counter", width);
  if (per_cpu) {
    for (size_t c = 0; c < r.cpus.size(); ++c)
      out += fmt::format(" {:>8}", fmt::format("cpu {}", c));
  }
  out += fmt::format(" {:>8}\n", "total");
  for (int i = 0; i < static_cast<int>(names.size()); ++i) {
    out += fmt::format("{:<{}}", names[i], width);
    if (per_cpu) {
      for (const abi::MmCounters& c : r.cpus) out += fmt::format(" {:>8}", CounterValue(c, i));
    }
    out += fmt::format(" {:>8}\n", CounterValue(r.totals, i));
  }
  if (!per_cpu) {
    out += fmt::format("({} CPUs: totals only; --json has every CPU's counters)\n", r.cpus.size());
  }
  return out;
}

nlohmann::json CountersJson(const abi::MmCounters& c) {
  nlohmann::json j = nlohmann::json::object();
  const std::vector<std::string>& names = MmCounterNames();
  for (int i = 0; i < static_cast<int>(names.size()); ++i) j[names[i]] = CounterValue(c, i);
  return j;
}

}  // namespace

std::string ShadowInterruptsNote(uint64_t n) {
  return fmt::format(
      "host quirk: {} interrupt(s) arrived inside STI's shadow and were resumed after the HLT "
      "(docs/hosts.md)\n",
      n);
}

namespace {

std::string Verdict(const ScenarioReport& r) {
  std::string out = fmt::format("expectations: {} passed, {} failed; invariant violations: {}\n",
                                r.checks_passed, r.checks_failed, r.violations.size());
  for (const Violation& v : r.failed_expectations) {
    out += fmt::format("  failed expectation: {}\n", v.message);
  }
  for (const Violation& v : r.violations) {
    out += fmt::format("  violation [{}] {}\n", v.rule, v.message);
  }
  if (r.shadow_interrupts != 0) out += ShadowInterruptsNote(r.shadow_interrupts);
  if (r.run.outcome != Outcome::kCompleted && r.violations.empty()) {
    out += fmt::format("run ended: {}\n{}\n", OutcomeName(r.run.outcome), r.run.report);
  } else if (r.run.outcome != Outcome::kCompleted && r.run.outcome != Outcome::kCheckFailed) {
    out += fmt::format("run ended: {}\n{}\n", OutcomeName(r.run.outcome), r.run.report);
  }
  return out;
}

}  // namespace

std::string FormatRunReport(const ScenarioReport& r, const KvmHost& host) {
  std::string out = fmt::format(
      "activemm run: scenario '{}', {} CPUs, lazy TLB {}, PCID {} ({} ASIDs)\nhost: {}\n",
      r.scenario, r.cpus.size(), LazyModeName(r.lazy), PcidModeName(r.pcid), r.asids,
      host.Summary());
  out += CounterTable(r);
  out += fmt::format("steps: {}/{} executed in {:.2f} s\n", r.steps_done, r.steps_total,
                     r.run.seconds);
  out += TlbProbeSummary(r.run.tlb_probe) + "\n";
  if (r.run.profile.hz > 0) out += FormatProfile(r.run.profile) + "\n";
  if (!r.mms.empty()) {
    // Live mms by name; freed ones only counted (a stress run frees thousands).
    constexpr size_t kMaxListed = 12;
    std::string live;
    size_t listed = 0, live_count = 0, freed = 0;
    for (const MmReport& m : r.mms) {
      if (m.freed) {
        ++freed;
        continue;
      }
      ++live_count;
      if (listed++ < kMaxListed) {
        live += fmt::format(" {} (users {}, count {})", m.name, m.mm_users, m.mm_count);
      }
    }
    if (live_count > kMaxListed) live += fmt::format(" and {} more", live_count - kMaxListed);
    out += fmt::format("mms at the end:{}{}; {} freed\n", live, live.empty() ? " none live" : "",
                       freed);
  }
  return out + Verdict(r);
}

namespace {

// The rows of the comparison: what lazy TLB changes, and the switch cases behind it.
struct CompareRow {
  const char* label;
  const char* counter;
};
constexpr CompareRow kCompareRows[] = {
    {"context switches", "context_switches"},
    {"  user -> kernel", "switch_user_to_kernel"},
    {"  kernel -> kernel", "switch_kernel_to_kernel"},
    {"  kernel -> user", "switch_kernel_to_user"},
    {"  user -> user", "switch_user_to_user"},
    {"CR3 writes", "cr3_writes"},
    {"  flushing", "cr3_writes_flush"},
    {"  TLB-preserving", "cr3_writes_noflush"},
    {"full flushes (no CR3 switch)", "full_flushes"},
    {"INVLPGs", "invlpg"},
    {"flush IPIs sent", "ipis_sent"},
    {"leave_mm", "leave_mm"},
    {"lazy TLB entries", "lazy_entries"},
    {"lazy mm_count grabs", "lazy_grabs"},
    {"lazy mm_count drops", "lazy_drops"},
};

// The PCID modes present, in the order first seen, and per mode the run of each lazy mode.
struct CompareGroup {
  abi::PcidMode pcid;
  const ScenarioReport* on = nullptr;
  const ScenarioReport* shootdown = nullptr;
  const ScenarioReport* off = nullptr;
};

std::vector<CompareGroup> GroupByPcid(const std::vector<ScenarioReport>& reports) {
  std::vector<CompareGroup> groups;
  for (const ScenarioReport& r : reports) {
    auto it = std::find_if(groups.begin(), groups.end(),
                           [&](const CompareGroup& g) { return g.pcid == r.pcid; });
    if (it == groups.end()) it = groups.insert(groups.end(), CompareGroup{r.pcid});
    (r.lazy == abi::LazyMode::kOn          ? it->on
     : r.lazy == abi::LazyMode::kShootdown ? it->shootdown
                                           : it->off) = &r;
  }
  return groups;
}

// What a lazy mode saves against lazy TLB off: "1 (17%)", or where it does more, "costs 2" (a
// bare negative in a column headed "saves" reads as a typo).
std::string Saved(int64_t mode, int64_t off) {
  const int64_t saved = off - mode;
  if (saved == 0) return off > 0 ? "0 (0%)" : "";
  if (saved > 0) {
    return fmt::format("{} ({:.0f}%)", saved, 100.0 * static_cast<double>(saved) / off);
  }
  if (off > 0) {
    return fmt::format("costs {} (+{:.0f}%)", -saved, 100.0 * static_cast<double>(-saved) / off);
  }
  return fmt::format("costs {}", -saved);
}

// A total as int64_t, clamped to INT64_MAX (the counters come from the guest): the difference
// of two is then never out of range.
int64_t Total(const ScenarioReport* r, int counter) {
  if (r == nullptr) return 0;
  return static_cast<int64_t>(
      std::min<uint64_t>(CounterValue(r->totals, counter), std::numeric_limits<int64_t>::max()));
}

}  // namespace

std::string FormatComparison(const std::vector<ScenarioReport>& reports, const KvmHost& host) {
  if (reports.empty()) return "";
  const std::vector<CompareGroup> groups = GroupByPcid(reports);
  std::string out =
      fmt::format("activemm compare: scenario '{}', {} CPUs, {} ASIDs\nhost: {}\n",
                  reports[0].scenario, reports[0].cpus.size(), reports[0].asids, host.Summary());
  // Per PCID mode: lazy on, shootdown, off, and what on saves against off.
  constexpr int kNum = 9, kSaved = 16;
  std::string head1 = fmt::format("{:<30}", ""), head2 = fmt::format("{:<30}", "totals");
  for (const CompareGroup& g : groups) {
    head1 += fmt::format(" | {:<{}}", fmt::format("PCID {}", PcidModeName(g.pcid)),
                         3 * (kNum + 1) + kSaved);
    head2 += fmt::format(" | {:>{}} {:>{}} {:>{}} {:>{}}", "lazy on", kNum, "shootdown", kNum,
                         "lazy off", kNum, "on saves", kSaved);
  }
  out += head1 + "\n" + head2 + "\n";
  for (const CompareRow& row : kCompareRows) {
    const int i = CounterIndex(row.counter);
    out += fmt::format("{:<30}", row.label);
    for (const CompareGroup& g : groups) {
      auto cell = [&](const ScenarioReport* r) {
        return r == nullptr ? std::string("-") : fmt::format("{}", Total(r, i));
      };
      out += fmt::format(
          " | {:>{}} {:>{}} {:>{}} {:>{}}", cell(g.on), kNum, cell(g.shootdown), kNum, cell(g.off),
          kNum, g.on != nullptr && g.off != nullptr ? Saved(Total(g.on, i), Total(g.off, i)) : "",
          kSaved);
    }
    out += "\n";
  }
  for (const ScenarioReport& r : reports) {
    out +=
        fmt::format("lazy {}, PCID {}: ", LazyModeName(r.lazy), PcidModeName(r.pcid)) + Verdict(r);
  }
  return out;
}

namespace {

nlohmann::json RunJson(const ScenarioReport& r) {
  nlohmann::json j;
  j["scenario"] = r.scenario;
  j["mode"] = {{"lazy_tlb", r.lazy != abi::LazyMode::kOff},
               {"lazy", LazyModeName(r.lazy)},
               {"pcid", PcidModeName(r.pcid)},
               {"asids", r.asids}};
  j["totals"] = CountersJson(r.totals);
  j["cpus"] = nlohmann::json::array();
  for (size_t c = 0; c < r.cpus.size(); ++c) {
    nlohmann::json cpu = CountersJson(r.cpus[c]);
    cpu["cpu"] = c;
    j["cpus"].push_back(cpu);
  }
  j["checks"] = {{"passed", r.checks_passed}, {"failed", r.checks_failed}};
  j["failed_expectations"] = nlohmann::json::array();
  for (const Violation& v : r.failed_expectations) {
    j["failed_expectations"].push_back({{"message", v.message}, {"step", v.step_index}});
  }
  j["violations"] = nlohmann::json::array();
  for (const Violation& v : r.violations) {
    j["violations"].push_back({{"rule", v.rule}, {"message", v.message}, {"step", v.step_index}});
  }
  j["mms"] = nlohmann::json::array();
  for (const MmReport& m : r.mms) {
    j["mms"].push_back(
        {{"name", m.name}, {"mm_users", m.mm_users}, {"mm_count", m.mm_count}, {"freed", m.freed}});
  }
  j["run"] = {{"outcome", OutcomeName(r.run.outcome)},
              {"report", r.run.report},
              {"seconds", r.run.seconds},
              {"steps_done", r.steps_done},
              {"steps_total", r.steps_total},
              {"interrupts_in_sti_shadow", r.shadow_interrupts},
              {"stale_tlb", TlbProbeName(r.run.tlb_probe)},
              {"verifications", r.verifications},
              {"verify_seconds", r.verify_seconds},
              {"kvm", r.run.kvm_stats}};
  if (r.run.profile.hz > 0) j["run"]["profile"] = ProfileJson(r.run.profile);
  j["ok"] = r.ok();
  return j;
}

}  // namespace

nlohmann::json RunReportJson(const ScenarioReport& r, const KvmHost& host) {
  nlohmann::json j = RunJson(r);
  j["host"] = host.Json();
  return j;
}

nlohmann::json ComparisonJson(const std::vector<ScenarioReport>& reports, const KvmHost& host) {
  nlohmann::json j;
  j["host"] = host.Json();
  j["runs"] = nlohmann::json::array();
  for (const ScenarioReport& r : reports) j["runs"].push_back(RunJson(r));
  // Per PCID mode, what each lazy mode saves against lazy TLB off: off minus mode, per counter.
  j["savings"] = nlohmann::json::array();
  const std::vector<std::string>& names = MmCounterNames();
  for (const CompareGroup& g : GroupByPcid(reports)) {
    if (g.off == nullptr) continue;
    for (const ScenarioReport* r : {g.on, g.shootdown}) {
      if (r == nullptr) continue;
      nlohmann::json saved = nlohmann::json::object();
      nlohmann::json percent = nlohmann::json::object();
      for (int i = 0; i < static_cast<int>(names.size()); ++i) {
        const int64_t off = Total(g.off, i), mode = Total(r, i);
        saved[names[i]] = off - mode;
        if (off > 0) percent[names[i]] = 100.0 * static_cast<double>(off - mode) / off;
      }
      j["savings"].push_back({{"pcid", PcidModeName(g.pcid)},
                              {"lazy", LazyModeName(r->lazy)},
                              {"against", "off"},
                              {"saved", saved},
                              {"percent", percent}});
    }
  }
  return j;
}

absl::Status WriteFileAtomically(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("cannot write %s: %s", path, std::strerror(errno)));
  }
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      close(fd);
      unlink(tmp.c_str());
      return absl::InternalError(absl::StrFormat("writing %s: %s", path, std::strerror(e)));
    }
    done += static_cast<size_t>(n);
  }
  if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    unlink(tmp.c_str());
    return absl::InternalError(absl::StrFormat("writing %s: %s", path, std::strerror(e)));
  }
  return absl::OkStatus();
}

}  // namespace activemm
