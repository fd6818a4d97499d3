// `activemm cost`: what one context switch costs the guest, per case (user -> kernel thread,
// kernel thread -> user, user -> user, ...) with lazy TLB on and off. Each mode runs the guest's
// cost program (guest/programs/cost.cc) on a fresh single-vCPU VM. Per measured switch the guest
// reports TSC cycles; where the host's KVM has binary statistics and emulates ring 0, the host also
// counts the switch's ring-0 instructions exactly (the vCPU statistic insn_emulation, read at
// the marks around the switch). docs/costs.md explains the method and the numbers.
#ifndef ACTIVEMM_VMM_TOOLS_COST_H_
#define ACTIVEMM_VMM_TOOLS_COST_H_

#include <stdint.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "shared/cost_abi.h"
#include "vmm/kvm/kvm.h"
#include "vmm/kvm/kvm_host.h"
#include "vmm/kvm/runner.h"

namespace activemm {

struct CostOptions {
  int iterations = 200;  // measured switches per case and mode, 1..abi::kMaxCostIterations
  abi::PcidMode pcid = abi::PcidMode::kModeled;
  uint32_t asids = abi::kDefaultAsids;
  std::vector<abi::LazyMode> modes = {abi::LazyMode::kOn, abi::LazyMode::kOff};
  uint64_t mem_bytes = 64ull << 20;
  absl::Duration timeout = absl::Seconds(30);
  bool verbose = false;
};

// Median (the lower middle value for an even count), minimum and maximum of a series.
struct CostSummary {
  int64_t median = 0;
  int64_t min = 0;
  int64_t max = 0;
};
CostSummary Summarize(std::vector<int64_t> values);

struct CostCaseResult {
  abi::CostCase which = abi::CostCase::kUserToKernel;
  abi::LazyMode lazy = abi::LazyMode::kOn;
  // Per iteration, with the markers' median cost subtracted.
  std::vector<int64_t> cycles;
  std::vector<int64_t> instructions;  // empty when the host cannot count them
  CostSummary cycle_summary;
  CostSummary instruction_summary;
  bool instructions_exact = false;  // every iteration counted the same
  int64_t cr3_writes = 0;           // per switch (the median; the guest's own count)
};

// The floor in one mode: a bare CR3 write and a bare stack switch, per operation (loops of
// abi::kFloorOps minus the empty loop; a stack switch is half of a round trip).
struct CostFloorResult {
  abi::CostCase which = abi::CostCase::kBareCr3Write;
  abi::LazyMode lazy = abi::LazyMode::kOn;
  double cycles = 0;        // median over the iterations
  double instructions = 0;  // median; 0 when the host cannot count them
  bool instructions_exact = false;
};

struct CostMarkerOverhead {
  abi::LazyMode lazy = abi::LazyMode::kOn;
  int64_t cycles = 0;        // median of the empty mark pairs
  int64_t instructions = 0;  // median; 0 when not counted
};

struct CostReport {
  KvmHost kvm_host;      // where it ran: the "host:" line and the JSON "host" object
  uint64_t tsc_khz = 0;  // the guest's TSC; 0 when KVM could not tell
  int iterations = 0;
  abi::PcidMode pcid = abi::PcidMode::kModeled;
  bool have_instructions = false;
  std::string instructions_note;  // why there are no instruction counts, when there are none
  std::vector<CostMarkerOverhead> overhead;  // per mode
  // Case by case, each in every mode of CostOptions::modes, in that order.
  std::vector<CostCaseResult> cases;
  std::vector<CostFloorResult> floor;  // each floor operation in every mode
  // How the guest runs ended: the first that did not complete, else completed.
  Outcome outcome = Outcome::kCompleted;
  std::string failure;  // the run's report when it did not complete

  bool ok() const { return outcome == Outcome::kCompleted; }
};

const char* CostCaseName(abi::CostCase c);   // "user_to_kernel" (JSON)
const char* CostCaseTitle(abi::CostCase c);  // "user -> kernel thread" (table)

// kInvalidArgument for bad options; other errors when a VM cannot be made or the guest broke
// the mark protocol. A guest that fails or hangs is a report with !ok().
absl::StatusOr<CostReport> RunCostBenchmark(const Kvm& kvm, const CostOptions& options);

std::string FormatCostReport(const CostReport& r);
nlohmann::json CostReportJson(const CostReport& r);

}  // namespace activemm

#endif  // ACTIVEMM_VMM_TOOLS_COST_H_
