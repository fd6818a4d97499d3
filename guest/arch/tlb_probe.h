// Whether this machine's TLB lets a stale translation be seen: measured once at boot, not
// assumed from the host's kind (docs/hosts.md).
#ifndef ACTIVEMM_GUEST_ARCH_TLB_PROBE_H_
#define ACTIVEMM_GUEST_ARCH_TLB_PROBE_H_

#include <stdint.h>

#include "shared/abi.h"

namespace activemm::guest {

// CPU 0, with init_mm (root `swapper_pgd_pa`) loaded and before any other CPU loads it: maps
// kTlbProbeVa to page A, reads it, points the PTE at page B with no flush and reads again. The
// mapping is gone again when this returns, and init_mm's user half empty, as it must be.
abi::TlbProbe ProbeStaleTlb(uint64_t swapper_pgd_pa);

}  // namespace activemm::guest

#endif  // ACTIVEMM_GUEST_ARCH_TLB_PROBE_H_
