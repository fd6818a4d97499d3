// The local APIC in x2APIC mode: registers are MSRs (SDM 11.12), so no MMIO page is mapped.
#ifndef ACTIVEMM_GUEST_ARCH_APIC_H_
#define ACTIVEMM_GUEST_ARCH_APIC_H_

#include <stdint.h>

namespace activemm::guest {

// Switches this CPU's APIC to x2APIC mode, enables it and returns its APIC id.
uint32_t ApicInit();
// A fixed-delivery IPI with `vector` to the CPU whose APIC id is `apic_id` (physical mode).
void ApicSendIpi(uint32_t apic_id, uint8_t vector);
void ApicEoi();

}  // namespace activemm::guest

#endif  // ACTIVEMM_GUEST_ARCH_APIC_H_
