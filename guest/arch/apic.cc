#include "guest/arch/apic.h"

#include "guest/arch/cpu.h"
#include "guest/arch/traps.h"
#include "shared/x86.h"

namespace activemm::guest {

uint32_t ApicInit() {
  // EXTD may only be set together with or after EN (SDM 11.12.5).
  uint64_t base = Rdmsr(x86::kMsrApicBase);
  Wrmsr(x86::kMsrApicBase, base | x86::kApicBaseEnable | x86::kApicBaseX2apic);
  Wrmsr(x86::kMsrX2apicSvr, x86::kApicSvrEnable | kVecSpurious);
  return static_cast<uint32_t>(Rdmsr(x86::kMsrX2apicId));
}

void ApicSendIpi(uint32_t apic_id, uint8_t vector) {
  // x2APIC ICR: destination in bits 63:32; delivery mode fixed (0), physical, edge. One WRMSR
  // sends it; there is no delivery-status bit to poll in x2APIC mode (SDM 11.12.9).
  Wrmsr(x86::kMsrX2apicIcr, (uint64_t{apic_id} << 32) | vector);
}

void ApicEoi() { Wrmsr(x86::kMsrX2apicEoi, 0); }

}  // namespace activemm::guest
