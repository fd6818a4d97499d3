#include "vmm/report.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_format.h"
#include "fmt/core.h"
#include "fmt/format.h"
#include "vmm/model_state.h"

namespace activemm {
namespace {

// The table columns: the counters a reader compares first.
struct Column {
  const char* header;
  int counter;  // index into MmCounterNames()
};

int CounterIndex(const std::string& name) {
  const std::vector<std::string>& names = MmCounterNames();
  for (int i = 0; i < static_cast<int>(names.size()); ++i) {
    if (names[i] == name) return i;
  }
  return -1;
}

const std::vector<Column>& TableColumns() {
  static const std::vector<Column> cols = {
      {"switches", CounterIndex("context_switches")},
      {"u->k", CounterIndex("switch_user_to_kernel")},
      {"k->k", CounterIndex("switch_kernel_to_kernel")},
      {"k->u", CounterIndex("switch_kernel_to_user")},
      {"u->u", CounterIndex("switch_user_to_user")},
      {"cr3", CounterIndex("cr3_writes")},
      {"flush", CounterIndex("cr3_writes_flush")},
      {"noflush", CounterIndex("cr3_writes_noflush")},
      {"invlpg", CounterIndex("invlpg")},
      {"lazy", CounterIndex("lazy_entries")},
      {"grabs", CounterIndex("lazy_grabs")},
      {"drops", CounterIndex("lazy_drops")},
      {"ipis", CounterIndex("ipis_sent")},
      {"ring3", CounterIndex("user_bursts")},
  };
  return cols;
}

std::string Row(const std::string& label, const abi::MmCounters& c) {
  std::string row = fmt::format("{:>6}", label);
  for (const Column& col : TableColumns()) {
    row += fmt::format(" {:>8}", CounterValue(c, col.counter));
  }
  return row + "\n";
}

nlohmann::json CountersJson(const abi::MmCounters& c) {
  nlohmann::json j = nlohmann::json::object();
  const std::vector<std::string>& names = MmCounterNames();
  for (int i = 0; i < static_cast<int>(names.size()); ++i) j[names[i]] = CounterValue(c, i);
  return j;
}

std::string Verdict(const ScenarioReport& r) {
  std::string out = fmt::format("checks: {} passed, {} failed; violations: {}\n", r.checks_passed,
                                r.checks_failed, r.violations.size());
  for (const Violation& v : r.violations) out += fmt::format("  [{}] {}\n", v.rule, v.message);
  if (r.run.outcome != Outcome::kCompleted && r.violations.empty()) {
    out += fmt::format("run ended: {}\n{}\n", OutcomeName(r.run.outcome), r.run.report);
  } else if (r.run.outcome != Outcome::kCompleted && r.run.outcome != Outcome::kCheckFailed) {
    out += fmt::format("run ended: {}\n{}\n", OutcomeName(r.run.outcome), r.run.report);
  }
  return out;
}

}  // namespace

std::string FormatRunReport(const ScenarioReport& r, const std::string& host) {
  std::string out = fmt::format(
      "activemm run: scenario '{}', {} CPUs, lazy TLB {}, PCID {} ({} ASIDs); {}\n", r.scenario,
      r.cpus.size(), LazyModeName(r.lazy), PcidModeName(r.pcid), r.asids, host);
  out += fmt::format("{:>6}", "cpu");
  for (const Column& col : TableColumns()) out += fmt::format(" {:>8}", col.header);
  out += "\n";
  for (size_t c = 0; c < r.cpus.size(); ++c) out += Row(std::to_string(c), r.cpus[c]);
  out += Row("total", r.totals);
  out += fmt::format("steps: {}/{} executed in {:.2f} s\n", r.steps_done, r.steps_total,
                     r.run.seconds);
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

std::string FormatComparison(const std::vector<ScenarioReport>& reports, const std::string& host) {
  if (reports.empty()) return "";
  const ScenarioReport& base = reports.back();  // lazy TLB off: the baseline
  std::string out = fmt::format("activemm compare: scenario '{}', {} CPUs, PCID {}; {}\n",
                                base.scenario, base.cpus.size(), PcidModeName(base.pcid), host);
  out += fmt::format("{:<26}", "counter (totals)");
  for (const ScenarioReport& r : reports) {
    out += fmt::format(" {:>12}", fmt::format("lazy {}", LazyModeName(r.lazy)));
  }
  out += fmt::format(" {:>16}\n", "saved by lazy on");
  const std::vector<std::string>& names = MmCounterNames();
  for (int i = 0; i < static_cast<int>(names.size()); ++i) {
    out += fmt::format("{:<26}", names[i]);
    for (const ScenarioReport& r : reports)
      out += fmt::format(" {:>12}", CounterValue(r.totals, i));
    const int64_t on = static_cast<int64_t>(CounterValue(reports.front().totals, i));
    const int64_t off = static_cast<int64_t>(CounterValue(base.totals, i));
    std::string saved;
    if (off > 0) {
      saved = fmt::format("{} ({:.0f}%)", off - on, 100.0 * static_cast<double>(off - on) / off);
    } else if (on != off) {
      saved = fmt::format("{}", off - on);
    }
    out += fmt::format(" {:>16}\n", saved);
  }
  for (const ScenarioReport& r : reports) {
    out += fmt::format("lazy TLB {}: ", LazyModeName(r.lazy)) + Verdict(r);
  }
  return out;
}

nlohmann::json RunReportJson(const ScenarioReport& r) {
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
              {"steps_total", r.steps_total}};
  j["ok"] = r.ok();
  return j;
}

nlohmann::json ComparisonJson(const std::vector<ScenarioReport>& reports) {
  nlohmann::json j;
  j["runs"] = nlohmann::json::array();
  for (const ScenarioReport& r : reports) j["runs"].push_back(RunReportJson(r));
  if (!reports.empty()) {
    const abi::MmCounters& on = reports.front().totals;
    const abi::MmCounters& off = reports.back().totals;
    nlohmann::json saved = nlohmann::json::object();
    const std::vector<std::string>& names = MmCounterNames();
    for (int i = 0; i < static_cast<int>(names.size()); ++i) {
      saved[names[i]] =
          static_cast<int64_t>(CounterValue(off, i)) - static_cast<int64_t>(CounterValue(on, i));
    }
    j["saved"] = saved;
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
