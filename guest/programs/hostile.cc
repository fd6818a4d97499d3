// A hostile guest (guest/programs/hostile.h): test hooks that corrupt what the host reads. Not bugs
// of the mm model: the model is correct up to the step where a hook fires, and the guest never goes
// on from the corruption.
#include "guest/programs/hostile.h"

#include "guest/arch/cpu.h"
#include "guest/arch/hypercall.h"
#include "guest/kernel/model.h"
#include "shared/x86.h"

namespace activemm::guest {
namespace {

using x86::Pte;

constexpr uint64_t kTableFlags = Pte::kPresent | Pte::kWritable | Pte::kUser;
// Guest physical addresses no guest RAM reaches: RAM ends at or below abi::kMaxMemBytes (3 GiB).
// Below 4 GiB, so that any CPU's MAXPHYADDR allows them in CR3 and in a page-table entry.
constexpr uint64_t kOutsideRamPa = abi::kMaxMemBytes;
static_assert(kOutsideRamPa % x86::kPageSize == 0 && kOutsideRamPa < (4ull << 30));

// The user mm to corrupt: the one loaded on this CPU, else the first live one.
int32_t VictimMm() {
  const int32_t loaded = this_rq()->loaded_mm;
  if (loaded > abi::kInitMm &&
      mm_slots[loaded].state == static_cast<uint32_t>(abi::SlotState::kLive)) {
    return loaded;
  }
  for (int32_t slot = 1; slot < static_cast<int32_t>(abi::kMaxMms); ++slot) {
    if (mm_slots[slot].state == static_cast<uint32_t>(abi::SlotState::kLive)) return slot;
  }
  Panic(__FILE__, __LINE__, "hostile hook: no live user mm at the middle step to corrupt");
}

uint64_t* TableAt(uint64_t pa) { return static_cast<uint64_t*>(PhysToVirt(pa)); }

// The host verifies the corrupted state; if it lets this CPU go on, it missed the corruption.
[[noreturn]] void VerifyAndPanic(uint32_t step_index) {
  abi::CpuMailbox* mb = this_cpu()->mailbox;
  mb->arg[0] = abi::kVerifyNoCheck;
  mb->arg[1] = step_index;
  Hypercall(abi::Hypercall::kVerify);
  Panic(__FILE__, __LINE__,
        "hostile hook: the host verified the corrupted state and let the guest go on");
}

// `n` bytes of `dst` without a NUL: printable text with an unprintable byte every 16.
void FillUnterminated(char* dst, uint64_t n, char base) {
  for (uint64_t i = 0; i < n; ++i) {
    dst[i] = (i % 16 == 15) ? static_cast<char>(i % 32 == 31 ? 0xff : 0x01)
                            : static_cast<char>(base + static_cast<char>(i % 26));
  }
}

[[noreturn]] void Flood(uint32_t step_index) {
  abi::CpuMailbox* mb = this_cpu()->mailbox;
  for (uint64_t n = 0;; ++n) {
    FillUnterminated(mb->log, abi::kLogMax, 'a');
    mb->log_len = abi::kLogMax;
    Hypercall(abi::Hypercall::kLog);
    Hypercall(abi::Hypercall::kHello);
    mb->arg[0] = n;
    Hypercall(abi::Hypercall::kMark);
    if (n % 64 == 0) {  // a verification now and then: the model itself is still consistent
      mb->arg[0] = abi::kVerifyNoCheck;
      mb->arg[1] = step_index;
      Hypercall(abi::Hypercall::kVerify);
    }
  }
}

}  // namespace

void hostile_guest(abi::MmBug bug, uint32_t step_index) {
  Cli();
  switch (bug) {
    case abi::MmBug::kHostileTaskIndex: {
      // Task and mm indices out of every range, in the run-queue and in a task.
      CpuMmState* rq = this_rq();
      rq->curr = 0x7ffffff0;
      rq->prev_mm = 0x40000000;
      tasks[0].mm = 123456;
      tasks[0].active_mm = -77;
      break;
    }
    case abi::MmBug::kHostileMmSlot: {
      // A live slot whose mm_struct lies outside RAM, and init_mm's slot in no known state.
      mm_slots[VictimMm()].pa = ~uint64_t{0} & ~(x86::kPageSize - 1);
      mm_slots[abi::kInitMm].state = 0xdeadbeef;
      break;
    }
    case abi::MmBug::kHostileDirectory: {
      // The directory the host finds the model through points outside RAM, and at the very end
      // of the address space (an overflowing range).
      auto* dir = static_cast<abi::MmDirectory*>(PhysToVirt(abi::kMmDirectoryPa));
      dir->tasks_pa = ~uint64_t{0} - 16;
      dir->cpus_pa = uint64_t{1} << 40;
      dir->mm_slots_pa = kOutsideRamPa;
      dir->num_mms = 0xffffffff;
      dir->num_tasks = 0xffffffff;
      break;
    }
    case abi::MmBug::kHostileCounts: {
      // Counts at the edges of their types: refcounts, generations, counters near 2^64 (this
      // CPU's, so that the totals over CPUs overflow), a page count past its array.
      MmStruct* mm = Mm(VictimMm());
      mm->mm_count = 0x7fffffff;
      mm->mm_users = static_cast<int32_t>(0x80000000u);
      mm->tlb_gen = ~uint64_t{0};
      mm->ctx_id = ~uint64_t{0} - 1;
      mm->nr_pages = 0xffffffff;
      mm->nr_tables = 0xffffffff;
      uint64_t* c = reinterpret_cast<uint64_t*>(&counters());
      for (int i = 0; i < abi::kNumMmCounters; ++i) c[i] = ~uint64_t{0} - static_cast<uint64_t>(i);
      break;
    }
    case abi::MmBug::kHostilePtSelf: {
      // A PML4 entry of the user half that points at its own table page.
      const uint64_t pgd_pa = Mm(VictimMm())->pgd_pa;
      TableAt(pgd_pa)[1] = Pte::Make(pgd_pa, kTableFlags).raw();
      break;
    }
    case abi::MmBug::kHostilePtCycle: {
      // A PDPT entry that points back at the PML4 above it: pgd -> pdpt -> pgd.
      const uint64_t pgd_pa = Mm(VictimMm())->pgd_pa;
      const Pte top(TableAt(pgd_pa)[0]);
      GUEST_CHECK(top.present() && !top.huge());
      uint64_t* pdpt = TableAt(top.addr());
      int free = 1;
      while (free < x86::kEntriesPerTable - 1 && Pte(pdpt[free]).present()) ++free;
      pdpt[free] = Pte::Make(pgd_pa, kTableFlags).raw();
      break;
    }
    case abi::MmBug::kHostilePtOutside: {
      // A PML4 entry whose table is outside RAM.
      const uint64_t pgd_pa = Mm(VictimMm())->pgd_pa;
      TableAt(pgd_pa)[2] = Pte::Make(kOutsideRamPa, kTableFlags).raw();
      break;
    }
    case abi::MmBug::kHostilePgd: {
      // The model says the mm's page table is outside RAM (the real CR3 is left alone).
      Mm(VictimMm())->pgd_pa = kOutsideRamPa;
      break;
    }
    case abi::MmBug::kHostileCr3: {
      // The real CR3 outside RAM: the next instruction fetch walks tables that do not exist.
      // The vCPU cannot handle that (nor the exception it raises): a triple fault, or
      // whatever the hypervisor makes of it, for the host to report.
      WriteCr3(x86::Cr3::Make(kOutsideRamPa, 0, false));
      for (;;) Pause();
    }
    case abi::MmBug::kHostileString: {
      // Report strings without a terminator and counts past their arrays: a log line, then a
      // panic report.
      abi::CpuMailbox* mb = this_cpu()->mailbox;
      FillUnterminated(mb->log, abi::kLogMax, 'a');
      mb->log_len = 0xffffffff;
      Hypercall(abi::Hypercall::kLog);
      abi::PanicReport& p = mb->panic;
      FillUnterminated(p.message, sizeof p.message, 'A');
      FillUnterminated(p.file, sizeof p.file, 'a');
      p.line = 0xffffffff;
      p.num_values = 0xffffffff;
      for (int i = 0; i < abi::kPanicValuesMax; ++i) p.values[i] = ~uint64_t{0};
      Hypercall(abi::Hypercall::kPanic);
      HaltForever();
    }
    case abi::MmBug::kHostileFlood:
      Flood(step_index);
    case abi::MmBug::kHostileFill: {
      // Two pages from the last page of the address space on: a range that wraps past 2^64.
      abi::CpuMailbox* mb = this_cpu()->mailbox;
      mb->arg[0] = ~uint64_t{0} - 0xfff;
      mb->arg[1] = 2 * 4096;
      mb->arg[2] = 0xcc;
      Hypercall(abi::Hypercall::kFill);
      break;  // the host must have stopped the run: VerifyAndPanic says it did not
    }
    default:
      Panic(__FILE__, __LINE__, "hostile hook: not a hostile case", 1,
            uint64_t{static_cast<uint32_t>(bug)});
  }
  VerifyAndPanic(step_index);
}

}  // namespace activemm::guest
