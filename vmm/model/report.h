// What `activemm run` and `activemm compare` print and write: per-CPU and total tables, the
// side-by-side comparison of lazy TLB on and off, and the --json report (docs/report.md).
#ifndef ACTIVEMM_VMM_MODEL_REPORT_H_
#define ACTIVEMM_VMM_MODEL_REPORT_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "vmm/kvm/kvm_host.h"
#include "vmm/model/scenario_run.h"

namespace activemm {

// One line for reports when the guest took interrupts inside STI's shadow ("" never: call it
// only when n > 0).
std::string ShadowInterruptsNote(uint64_t n);

std::string FormatRunReport(const ScenarioReport& r, const KvmHost& host);
// Side by side: the same scenario in several lazy-TLB and PCID modes, grouped by PCID mode, with
// what lazy TLB on saves against lazy TLB off in each group.
std::string FormatComparison(const std::vector<ScenarioReport>& reports, const KvmHost& host);

nlohmann::json RunReportJson(const ScenarioReport& r, const KvmHost& host);
// The runs share the host: it is named once, at the top, not in every run.
nlohmann::json ComparisonJson(const std::vector<ScenarioReport>& reports, const KvmHost& host);

// Writes `content` to `path` whole or not at all (a temporary file renamed into place).
absl::Status WriteFileAtomically(const std::string& path, const std::string& content);

}  // namespace activemm

#endif  // ACTIVEMM_VMM_MODEL_REPORT_H_
