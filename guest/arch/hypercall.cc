#include "guest/arch/hypercall.h"

#include <stdarg.h>

#include "guest/arch/cpu.h"
#include "guest/arch/percpu.h"
#include "guest/lib/format.h"
#include "guest/lib/lib.h"
#include "guest/mm/kernel_map.h"

namespace activemm::guest {

void Hypercall(abi::Hypercall nr) { OutL(abi::kHypercallPort, static_cast<uint32_t>(nr)); }

void FillPhys(uint64_t pa, uint8_t value, uint64_t bytes) {
  if (boot_params->flags & abi::kBootFillByHost) {
    abi::CpuMailbox* mb = this_cpu()->mailbox;
    mb->arg[0] = pa;
    mb->arg[1] = bytes;
    mb->arg[2] = value;
    Hypercall(abi::Hypercall::kFill);
  } else {
    memset(PhysToVirt(pa), value, bytes);
  }
}

void Log(const char* fmt, ...) {
  abi::CpuMailbox* mb = this_cpu()->mailbox;
  va_list ap;
  va_start(ap, fmt);
  mb->log_len = static_cast<uint32_t>(VFormat(mb->log, abi::kLogMax, fmt, ap));
  va_end(ap);
  Hypercall(abi::Hypercall::kLog);
}

void Checkpoint(uint64_t id) {
  this_cpu()->mailbox->arg[0] = id;
  Hypercall(abi::Hypercall::kCheckpoint);
}

void Panic(const char* file, int line, const char* message, int num_values, uint64_t v0,
           uint64_t v1, uint64_t v2, uint64_t v3) {
  Cli();
  abi::PanicReport& p = this_cpu()->mailbox->panic;
  CopyString(p.message, sizeof p.message, message);
  CopyString(p.file, sizeof p.file, file);
  p.line = static_cast<uint32_t>(line);
  p.num_values = static_cast<uint32_t>(num_values);
  p.values[0] = v0;
  p.values[1] = v1;
  p.values[2] = v2;
  p.values[3] = v3;
  Hypercall(abi::Hypercall::kPanic);
  HaltForever();
}

void Done(uint64_t status) {
  Cli();
  this_cpu()->mailbox->arg[0] = status;
  Hypercall(abi::Hypercall::kDone);
  HaltForever();
}

}  // namespace activemm::guest
