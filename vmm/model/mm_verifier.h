// The host's verifier of the mm model: the invariants of docs/scenarios.md ("The model"), each
// vCPU's real CR3 against cpu_tlbstate.loaded_mm, every live mm's page tables walked by the
// host, and the expectations of a scenario's check and counters steps.
#ifndef ACTIVEMM_VMM_MODEL_MM_VERIFIER_H_
#define ACTIVEMM_VMM_MODEL_MM_VERIFIER_H_

#include <linux/kvm.h>

#include <string>
#include <vector>

#include "shared/mm_abi.h"
#include "vmm/kvm/guest_image.h"
#include "vmm/kvm/guest_memory.h"
#include "vmm/model/model_state.h"
#include "vmm/model/scenario.h"

namespace activemm {

struct Violation {
  std::string rule;     // e.g. "mm_count", "cr3", "use-after-free", "check"
  std::string message;  // names the objects and the values
  int step_index = -1;  // the scenario step after which it was found (-1: the end)
};

struct VerifierConfig {
  abi::LazyMode lazy = abi::LazyMode::kOn;
  abi::PcidMode pcid = abi::PcidMode::kModeled;
  uint64_t swapper_pgd_pa = 0;
};

class MmVerifier {
 public:
  MmVerifier(const Scenario& scenario, const GuestImage& image, VerifierConfig config)
      : scenario_(scenario), image_(image), config_(config) {}

  // Every invariant, the real CR3s (sregs[cpu] where present[cpu]) and every live mm's tables.
  std::vector<Violation> VerifyAll(GuestMemory& mem, const ModelSnapshot& s,
                                   const std::vector<kvm_sregs>& sregs,
                                   const std::vector<bool>& present) const;

  // The expectations of one check / counters step; empty when they hold (or do not apply to
  // this mode).
  std::vector<Violation> Evaluate(const HostCheck& check, const ModelSnapshot& s) const;

  std::string MmName(int32_t slot) const;
  std::string TaskName(int32_t index) const;

 private:
  void CheckReferences(const ModelSnapshot& s, std::vector<Violation>& out) const;
  void CheckRefcounts(const ModelSnapshot& s, std::vector<Violation>& out) const;
  void CheckCpus(const ModelSnapshot& s, const std::vector<kvm_sregs>& sregs,
                 const std::vector<bool>& present, std::vector<Violation>& out) const;
  void CheckPageTables(GuestMemory& mem, const ModelSnapshot& s, std::vector<Violation>& out) const;

  const Scenario& scenario_;
  const GuestImage& image_;
  VerifierConfig config_;
};

}  // namespace activemm

#endif  // ACTIVEMM_VMM_MODEL_MM_VERIFIER_H_
