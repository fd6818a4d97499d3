// `activemm selftest`: boots the guest on N vCPUs and checks, from the host, that every CPU
// reported in, sent and received an IPI, and made a ring-3 round trip on a page table of its
// own whose user pages hold exactly what ring 3 wrote.
#ifndef ACTIVEMM_VMM_TOOLS_SELFTEST_H_
#define ACTIVEMM_VMM_TOOLS_SELFTEST_H_

#include <stdint.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "vmm/kvm/kvm_host.h"
#include "vmm/kvm/runner.h"
#include "vmm/kvm/vm.h"

namespace activemm {

// What the host verified for one CPU.
struct SelftestCpuRow {
  int cpu = 0;
  uint32_t apic_id = 0;
  uint32_t ipi_target = 0;
  uint32_t ipi_sender = 0;
  uint32_t ipis_received = 0;
  uint64_t trap_cs = 0;
  uint64_t user_pgd_pa = 0;
  int pages_verified = 0;
};

struct SelftestResult {
  RunResult run;
  std::vector<SelftestCpuRow> cpus;  // filled at the final checkpoint
  bool passed = false;               // run completed and all three checkpoints passed
};

// Checks the guest's self-test reports at each checkpoint (see guest/programs/selftest.cc).
class SelftestVerifier {
 public:
  SelftestVerifier(const GuestImage& image, int cpus) : image_(image), cpus_(cpus) {}
  absl::Status OnCheckpoint(const CheckpointView& view);
  const std::vector<SelftestCpuRow>& rows() const { return rows_; }

 private:
  absl::Status CheckKernelTables(const CheckpointView& view);
  absl::Status CheckOnline(const CheckpointView& view);
  absl::Status CheckSelftest(const CheckpointView& view);
  absl::Status CheckRealCr3(const CheckpointView& view);
  absl::Status CheckUserAddressSpace(GuestMemory& mem, int cpu, const abi::SelftestReport& rep,
                                     SelftestCpuRow& row);

  const GuestImage& image_;
  int cpus_;
  uint64_t swapper_pgd_pa_ = 0;
  std::vector<SelftestCpuRow> rows_;
};

struct SelftestOptions {
  VmConfig vm;
  absl::Duration timeout = absl::Seconds(10);
};

// Runs the self-test on `kvm`. A Status error means the VM could not be set up; guest and
// verification failures are in the result.
absl::StatusOr<SelftestResult> RunSelftest(const Kvm& kvm, const SelftestOptions& options);

// The host line, the per-CPU table and the one-line verdict.
std::string FormatSelftestSummary(const SelftestResult& r, const VmConfig& config,
                                  const KvmHost& host);

}  // namespace activemm

#endif  // ACTIVEMM_VMM_TOOLS_SELFTEST_H_
