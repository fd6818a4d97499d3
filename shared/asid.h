// ASID allocation and CR3 values, as arch/x86/mm/tlb.c computes them (choose_new_asid(),
// build_cr3(), build_cr3_noflush()). Pure functions over a CPU's cpu_tlbstate, shared so the
// guest uses them on its switch path and the host tests them and checks real CR3s with them.
#ifndef ACTIVEMM_SHARED_ASID_H_
#define ACTIVEMM_SHARED_ASID_H_

#include <stdint.h>

#include "shared/mm_abi.h"
#include "shared/x86.h"

namespace activemm {

struct NewAsid {
  uint16_t asid;
  bool need_flush;
};

// The ASID `next` (ctx_id, at generation next_tlb_gen) gets on this CPU. A slot that already
// holds the mm is reused, flushing only if it is behind; otherwise the next slot round-robin,
// wrapping from the last slot to slot 0 (next_asid restarts at 1), always flushing. Without
// PCID everything is ASID 0 and every switch flushes. Updates tlb->next_asid only.
inline NewAsid ChooseNewAsid(abi::CpuMmState& tlb, uint32_t num_asids, abi::PcidMode pcid,
                             uint64_t ctx_id, uint64_t next_tlb_gen) {
  if (pcid == abi::PcidMode::kOff) return {0, true};
  for (uint16_t asid = 0; asid < num_asids; ++asid) {
    if (tlb.ctxs[asid].ctx_id != ctx_id) continue;
    return {asid, tlb.ctxs[asid].tlb_gen < next_tlb_gen};
  }
  uint16_t asid = tlb.next_asid++;
  if (asid >= num_asids) {
    asid = 0;
    tlb.next_asid = 1;
  }
  return {asid, true};
}

// The CR3 value for a pgd and ASID: PCID = ASID + 1 (PCID 0 is for code unaware of PCIDs) and
// bit 63 when the TLB is to be kept — but only where PCIDs are real. With modeled PCID the
// decision is computed and counted, and CR3 is loaded without PCID bits.
inline x86::Cr3 BuildCr3(uint64_t pgd_pa, uint16_t asid, abi::PcidMode pcid, bool need_flush) {
  if (pcid != abi::PcidMode::kHardware) return x86::Cr3::Make(pgd_pa, 0, false);
  return x86::Cr3::Make(pgd_pa, static_cast<uint16_t>(asid + 1), !need_flush);
}

}  // namespace activemm

#endif  // ACTIVEMM_SHARED_ASID_H_
