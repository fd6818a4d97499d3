// guest_main: what every CPU does between _start and its program.
#include "guest/arch/cpu.h"
#include "guest/arch/descriptors.h"
#include "guest/arch/hypercall.h"
#include "guest/arch/percpu.h"
#include "guest/arch/tlb_probe.h"
#include "guest/kernel/model.h"
#include "guest/mm/kernel_map.h"
#include "guest/mm/page_alloc.h"
#include "guest/programs/selftest.h"
#include "shared/abi.h"
#include "shared/x86.h"

extern "C" char __image_end[];

namespace activemm::guest {

constinit PerCpu percpu[abi::kMaxCpus] = {};
// Never written: only this_cpu()'s asm names it (guest/arch/percpu.h says why).
constinit int this_cpu_anchor = 0;
constinit const abi::BootParams* boot_params = nullptr;
constinit abi::GuestInfo* guest_info = nullptr;

namespace {

template <typename T>
T* LowPhys(uint64_t pa) {
  // Low physical memory through the boot window, which init_mm's page table keeps mapped.
  return reinterpret_cast<T*>(pa + abi::kKernelTextBase);
}

}  // namespace

}  // namespace activemm::guest

using namespace activemm;
using namespace activemm::guest;

extern "C" [[noreturn]] void guest_main(uint64_t cpu_index, const abi::BootParams* params) {
  // Nothing can be reported before GS_BASE points at a PerCpu: stop quietly on a bad index (the
  // host set it, and the watchdog will name this vCPU).
  if (cpu_index >= abi::kMaxCpus) HaltForever();
  PerCpu* self = &percpu[cpu_index];
  self->cpu = static_cast<uint32_t>(cpu_index);
  self->rq = &cpu_mm[cpu_index];
  self->mailbox = LowPhys<abi::CpuMailbox>(abi::MailboxPa(self->cpu));
  LoadCpuDescriptors(self);

  boot_params = params;
  guest_info = LowPhys<abi::GuestInfo>(abi::kGuestInfoPa);
  guest_info->abi_version = abi::kAbiVersion;
  Hypercall(abi::Hypercall::kHello);
  if (params->magic != abi::kBootMagic || params->abi_version != abi::kAbiVersion) {
    Panic(__FILE__, __LINE__, "boot parameters have the wrong magic or ABI version", 2,
          params->magic, params->abi_version);
  }

  const uint64_t image_end_pa = reinterpret_cast<uint64_t>(__image_end) - abi::kKernelTextBase;
  if (self->cpu == 0) {
    BuildIdt();
    LoadIdt();
    GUEST_CHECK_VALUES(params->mem_bytes > image_end_pa, 2, params->mem_bytes, image_end_pa);
    PageAllocInit(image_end_pa, params->mem_bytes);
    guest_info->swapper_pgd_pa = BuildSwapperPgd(params->mem_bytes, image_end_pa);
    // Before any other CPU loads init_mm: the probe maps a page in its user half for a moment.
    WriteCr3(x86::Cr3::Make(guest_info->swapper_pgd_pa, 0, false));
    guest_info->tlb_probe = static_cast<uint32_t>(ProbeStaleTlb(guest_info->swapper_pgd_pa));
  }
  // The other CPUs wait in the host (no spinning) until CPU 0 has built the IDT and init_mm.
  Checkpoint(abi::kCheckpointKernelTables);
  if (self->cpu != 0) LoadIdt();
  WriteCr3(x86::Cr3::Make(guest_info->swapper_pgd_pa, 0, false));

  switch (static_cast<abi::Program>(params->program)) {
    case abi::Program::kSelftest:
      RunSelftest();
    case abi::Program::kScenario:
      RunScenario();
    case abi::Program::kCost:
      RunCost();
  }
  Panic(__FILE__, __LINE__, "unknown program", 1, params->program);
}
