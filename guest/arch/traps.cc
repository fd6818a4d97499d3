#include "guest/arch/traps.h"

#include "guest/arch/apic.h"
#include "guest/arch/cpu.h"
#include "guest/arch/hypercall.h"
#include "guest/arch/percpu.h"
#include "guest/arch/user_mode.h"
#include "guest/kernel/model.h"
#include "guest/mm/page_alloc.h"
#include "shared/x86.h"

namespace activemm::guest {

void ReportUnexpectedTrap(const TrapFrame& f) {
  Cli();
  abi::FaultReport& r = this_cpu()->mailbox->panic.fault;
  r.vector = f.vector;
  r.error_code = f.error_code;
  r.cr2 = ReadCr2();
  r.cr3 = ReadCr3();
  r.rip = f.rip;
  r.cs = f.cs;
  r.rflags = f.rflags;
  r.rsp = f.rsp;
  r.ss = f.ss;
  Hypercall(abi::Hypercall::kException);
  HaltForever();
}

}  // namespace activemm::guest

using namespace activemm::guest;

extern "C" void trap_dispatch(TrapFrame* f) {
  // An interrupt taken at SafeHaltThenCli's HLT came inside STI's shadow, which hardware never
  // does: it would return to the HLT and sleep through the wake-up it just handled. Resume
  // after the HLT (one byte), as an interrupt that woke it would.
  if (f->rip == reinterpret_cast<uint64_t>(safe_halt_hlt)) {
    f->rip += 1;
    auto* state = static_cast<activemm::abi::StepLoopCpu*>(PhysToVirt(activemm::abi::kStepLoopPa));
    ++state[this_cpu()->cpu].shadow_interrupts;
  }
  switch (f->vector) {
    case activemm::x86::kVecInvalidOpcode:
      // ud2 from ring 3, the way back into the kernel, never gets here: entry.S's ud_entry
      // takes it. What does is a real invalid opcode, reported below.
      break;
    case activemm::x86::kVecPageFault:
      if (FromUser(*f) && HandleUserProbeFault(*f, ReadCr2())) return;
      break;
    case kVecKick:
      scenario_kick_taken();
      ApicEoi();
      return;
    case kVecFlushTlb:
      flush_tlb_ipi();
      ApicEoi();
      return;
    case kVecIpiTest:
      __atomic_add_fetch(&this_cpu()->ipis_received, 1, __ATOMIC_RELAXED);
      ApicEoi();
      return;
    case kVecSpurious:
      return;
    default:
      break;
  }
  ReportUnexpectedTrap(*f);
}
