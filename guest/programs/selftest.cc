#include "guest/programs/selftest.h"

#include "guest/arch/apic.h"
#include "guest/arch/cpu.h"
#include "guest/arch/hypercall.h"
#include "guest/arch/percpu.h"
#include "guest/arch/traps.h"
#include "guest/arch/user_mode.h"
#include "guest/mm/kernel_map.h"
#include "shared/abi.h"
#include "shared/x86.h"

namespace activemm::guest {
namespace {

using abi::Inject;

Inject Injected() { return static_cast<Inject>(boot_params->inject); }

uint64_t UserTextVa(const char* symbol) {
  return abi::kUserTextVa + static_cast<uint64_t>(symbol - __user_text_start);
}

// A user page table for this CPU: init_mm's kernel half, the user text (U, read-only,
// executable), `pages` data pages and one stack page (U, writable, no-execute).
uint64_t BuildUserPgd(abi::SelftestReport& rep, uint64_t pages) {
  uint64_t pgd = AllocPgdWithKernelHalf(guest_info->swapper_pgd_pa);
  GUEST_CHECK(pgd != 0);
  DirectMapMem mem;
  PageTable<DirectMapMem> pt(mem, pgd);
  uint64_t text_pa = reinterpret_cast<uint64_t>(__user_text_start) - abi::kKernelTextBase;
  uint64_t text_size = static_cast<uint64_t>(__user_text_end - __user_text_start);
  for (uint64_t off = 0; off < text_size; off += x86::kPageSize) {
    PtStatus s = pt.Map(abi::kUserTextVa + off, text_pa + off, x86::Pte::kUser);
    GUEST_CHECK_VALUES(s == PtStatus::kOk, 1, static_cast<uint64_t>(s));
  }
  constexpr uint64_t kUserData = x86::Pte::kUser | x86::Pte::kWritable | x86::Pte::kNoExecute;
  for (uint64_t i = 0; i < pages; ++i) {
    uint64_t pa = AllocPage();
    GUEST_CHECK(pa != 0);
    rep.data_pa[i] = pa;
    PtStatus s = pt.Map(abi::kUserDataVa + i * x86::kPageSize, pa, kUserData);
    GUEST_CHECK_VALUES(s == PtStatus::kOk, 1, static_cast<uint64_t>(s));
  }
  uint64_t stack = AllocPage();
  GUEST_CHECK(stack != 0);
  PtStatus s = pt.Map(abi::kUserStackTopVa - x86::kPageSize, stack, kUserData);
  GUEST_CHECK_VALUES(s == PtStatus::kOk, 1, static_cast<uint64_t>(s));
  return pgd;
}

}  // namespace

void RunSelftest() {
  PerCpu* self = this_cpu();
  abi::SelftestReport& rep = self->mailbox->selftest;
  const uint32_t ncpus = boot_params->num_cpus;
  const bool last_cpu = self->cpu == ncpus - 1;

  self->apic_id = ApicInit();
  rep.apic_id = self->apic_id;
  rep.online = 1;
  __atomic_add_fetch(&guest_info->cpus_online, 1, __ATOMIC_RELAXED);
  if (boot_params->verbose) Log("cpu %u online, apic id %u", self->cpu, self->apic_id);

  if (self->cpu == 0 && Injected() == Inject::kKernelFault) {
    // An address in the vmalloc area, which the guest never maps: a ring-0 #PF.
    (void)*reinterpret_cast<volatile uint64_t*>(0xffffc90000000000ull);
  }
  if (self->cpu == 0 && Injected() == Inject::kPanic) {
    GUEST_CHECK_VALUES(rep.online == 0, 2, uint64_t{rep.online}, uint64_t{self->cpu});
  }

  // Every CPU has its APIC enabled before any IPI is sent: the host releases the checkpoint
  // only when all have arrived.
  Checkpoint(abi::kCheckpointOnline);

  if (Injected() == Inject::kVerifyStorm) {
    // The host must cope with verifications it did not ask for, from several CPUs at once.
    for (int i = 0; i < 20; ++i) {
      self->mailbox->arg[0] = abi::kVerifyNoCheck;
      self->mailbox->arg[1] = static_cast<uint64_t>(i);
      Hypercall(abi::Hypercall::kVerify);
    }
  }

  if (last_cpu && Injected() == Inject::kSpin) {
    for (;;) asm volatile("" ::: "memory");  // interrupts are off: only the watchdog ends this
  }

  // The IPI ring. The IPI may arrive before this CPU halts; interrupts are off until the
  // sti;hlt, so it stays pending in the IRR and wakes the HLT instead of being lost.
  const uint32_t target = (self->cpu + 1) % ncpus;
  rep.ipi_target = target;
  percpu[target].mailbox->selftest.ipi_sender = self->cpu;
  ++rep.ipis_sent;
  ApicSendIpi(percpu[target].apic_id, kVecIpiTest);
  while (__atomic_load_n(&self->ipis_received, __ATOMIC_RELAXED) == 0) SafeHaltThenCli();
  rep.ipis_received = __atomic_load_n(&self->ipis_received, __ATOMIC_RELAXED);

  // Ring 3 on this CPU's own page table.
  rep.user_pages = abi::kSelftestPages;
  rep.user_seed = abi::SelftestSeed(self->cpu);
  rep.user_pgd_pa = BuildUserPgd(rep, abi::kSelftestPages);
  WriteCr3(x86::Cr3::Make(rep.user_pgd_pa, 0, false));
  UserEntry entry{
      .rip = UserTextVa(last_cpu && Injected() == Inject::kUserFault ? user_fault : user_selftest),
      .rsp = abi::kUserStackTopVa,
      .rdi = abi::kUserDataVa,
      .rsi = abi::kSelftestPages,
      .rdx = rep.user_seed,
  };
  UserExit exit = RunUser(entry);
  WriteCr3(x86::Cr3::Make(guest_info->swapper_pgd_pa, 0, false));
  rep.user_checksum = exit.rdi;
  rep.user_errors = exit.rsi;
  rep.user_trap_cs = exit.trap_cs;
  rep.user_trap_rip = exit.trap_rip;
  if (boot_params->verbose) Log("cpu %u back from ring 3, cs %lx", self->cpu, exit.trap_cs);

  Checkpoint(abi::kCheckpointSelftest);
  Done(0);
}

}  // namespace activemm::guest
