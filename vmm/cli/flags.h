// The command line's grammar: every command and flag of activemm, and the tables of the flags
// that pick from a list (--inject, --lazy-tlb). Each table serves the parsing, the error message
// and the help alike.
#ifndef ACTIVEMM_VMM_CLI_FLAGS_H_
#define ACTIVEMM_VMM_CLI_FLAGS_H_

#include <stddef.h>

#include <string>
#include <vector>

#include "shared/abi.h"
#include "shared/mm_abi.h"
#include "vmm/cli/command_line.h"

namespace activemm {

// One value of a flag that picks from a table: the table serves the parsing, the error message
// and the help alike.
template <typename T>
struct Named {
  const char* name;
  T value;
  const char* help;
  bool test_hook = false;  // FlagChoice::test_hook: named on the help's "test hooks" line only
};

// --inject for selftest: a guest failure planted on purpose (shared/abi.h Inject).
inline constexpr Named<abi::Inject> kSelftestInjects[] = {
    {"none", abi::Inject::kNone, "nothing planted"},
    {"kernel-fault", abi::Inject::kKernelFault,
     "CPU 0 reads an unmapped kernel address in ring 0 (#PF)"},
    {"user-fault", abi::Inject::kUserFault,
     "the last CPU's ring-3 code writes to an unmapped user page (#PF)"},
    {"spin", abi::Inject::kSpin,
     "the last CPU spins with interrupts off after reporting in (watchdog)"},
    {"panic", abi::Inject::kPanic, "CPU 0 fails a GUEST_CHECK"},
    {"verify-storm", abi::Inject::kVerifyStorm,
     "every CPU asks the host to verify, all at once, many times"},
};

// --inject for the commands that run the mm model: a bug planted in it (shared/mm_abi.h MmBug).
inline constexpr Named<abi::MmBug> kMmBugs[] = {
    {"none", abi::MmBug::kNone, "nothing planted"},
    {"skip-lazy-mmgrab", abi::MmBug::kSkipLazyMmgrab,
     "a user -> kernel switch takes no lazy reference"},
    {"double-mmdrop", abi::MmBug::kDoubleMmdrop, "finish_task_switch drops rq->prev_mm twice"},
    {"forget-prev-mm", abi::MmBug::kForgetPrevMm,
     "a kernel -> user switch does not park the borrowed mm in rq->prev_mm"},
    {"no-cpumask", abi::MmBug::kNoCpumask, "switch_mm_irqs_off never sets the CPU in mm_cpumask"},
    {"wrong-cr3", abi::MmBug::kWrongCr3,
     "loading init_mm keeps the previous mm's page table in CR3"},
    {"fork-shares-page", abi::MmBug::kForkSharesPage,
     "dup_mm maps the parent's first page into the child instead of a copy"},
    {"munmap-keeps-pte", abi::MmBug::kMunmapKeepsPte,
     "munmap frees the pages but leaves their PTEs in place"},
    {"skip-ipi", abi::MmBug::kSkipIpiNonLazy,
     "flush_tlb_mm_range sends no IPI to a non-lazy CPU using the mm"},
    {"no-tlb-gen-check", abi::MmBug::kNoTlbGenCheck,
     "back from lazy mode to the same mm: no tlb_gen check, no flush"},
    {"asid-no-flush", abi::MmBug::kAsidNoFlush,
     "choose_new_asid reuses a slot for another mm without a flush"},
    {"slow-steps", abi::MmBug::kSlowSteps,
     "not a bug, for tests: every step first spins about 1 ms, so a long program takes long"},
    {"stall", abi::MmBug::kStallHalfway,
     "not a bug, for tests: the guest stops making progress at the middle step (watchdog)"},
    // A hostile guest (guest/programs/hostile.h; docs/architecture.md "A hostile guest"): at the
    // middle step the guest corrupts what the host reads, to test that the host reports it and
    // survives. Test hooks, not bugs of the model.
    {"hostile-task-index", abi::MmBug::kHostileTaskIndex,
     "task and mm indices out of range in a run-queue and a task", true},
    {"hostile-mm-slot", abi::MmBug::kHostileMmSlot,
     "an mm slot whose mm_struct is outside RAM, and a slot in no known state", true},
    {"hostile-directory", abi::MmBug::kHostileDirectory, "the model directory points outside RAM",
     true},
    {"hostile-counts", abi::MmBug::kHostileCounts,
     "refcounts at INT32_MAX/MIN, tlb_gen and counters near 2^64", true},
    {"hostile-pt-self", abi::MmBug::kHostilePtSelf, "a PML4 entry pointing at its own table page",
     true},
    {"hostile-pt-cycle", abi::MmBug::kHostilePtCycle,
     "a PDPT entry pointing back at the PML4 above it", true},
    {"hostile-pt-outside", abi::MmBug::kHostilePtOutside, "a PML4 entry whose table is outside RAM",
     true},
    {"hostile-pgd", abi::MmBug::kHostilePgd, "an mm's pgd_pa outside RAM", true},
    {"hostile-cr3", abi::MmBug::kHostileCr3, "the real CR3 loaded with a root outside RAM", true},
    {"hostile-string", abi::MmBug::kHostileString,
     "log and panic strings without a terminator, counts past their arrays", true},
    {"hostile-flood", abi::MmBug::kHostileFlood, "hypercalls in a loop and no step done (watchdog)",
     true},
    {"hostile-fill", abi::MmBug::kHostileFill,
     "a fill hypercall for a range that wraps past the end of the address space", true},
};

// A table that names every value of its enum, each once, in the enum's order, up to `last`: the
// ABI's enum and the names users type cannot drift apart.
template <typename T, size_t N>
constexpr bool NamesEveryValueInOrder(const Named<T> (&table)[N], T last) {
  for (size_t i = 0; i < N; ++i) {
    if (static_cast<size_t>(table[i].value) != i) return false;
  }
  return N == static_cast<size_t>(last) + 1;
}
static_assert(NamesEveryValueInOrder(kSelftestInjects, abi::kLastInject));
static_assert(NamesEveryValueInOrder(kMmBugs, abi::kLastMmBug));

// --lazy-tlb (shared/mm_abi.h LazyMode).
inline constexpr Named<abi::LazyMode> kLazyModes[] = {
    {"on", abi::LazyMode::kOn,
     "Linux today: a kernel thread borrows the previous mm, no CR3 write (lazy reference)"},
    {"off", abi::LazyMode::kOff, "no lazy TLB: kernel threads load init_mm"},
    {"shootdown", abi::LazyMode::kShootdown,
     "MMU_LAZY_TLB_SHOOTDOWN (powerpc): lazy CPUs hold no reference"},
};

template <typename T, size_t N>
std::vector<FlagChoice> Choices(const Named<T> (&table)[N]) {
  std::vector<FlagChoice> out;
  for (const Named<T>& n : table) out.push_back({n.name, n.help, n.test_hook});
  return out;
}

// The value named `name`; the parser has already refused names not in the table.
template <typename T, size_t N>
T Lookup(const Named<T> (&table)[N], const std::string& name) {
  for (const Named<T>& n : table) {
    if (name == n.name) return n.value;
  }
  return table[0].value;
}

// The commands and flags of activemm.
const CommandLine& Grammar();

}  // namespace activemm

#endif  // ACTIVEMM_VMM_CLI_FLAGS_H_
