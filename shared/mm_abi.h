// The mm model's objects as both sides see them: Linux's mm_struct, task_struct, run-queue and
// cpu_tlbstate, named as in Linux, and the compiled scenario program the guest executes.
//
// References between objects are indices, not pointers: a task's `mm` is an mm slot number
// (kNoMm for NULL), so the host can range-check every reference it follows and name the
// object in a report. The guest keeps the objects where the host finds them through GuestInfo.
#ifndef ACTIVEMM_SHARED_MM_ABI_H_
#define ACTIVEMM_SHARED_MM_ABI_H_

#include <stddef.h>
#include <stdint.h>

#include "shared/abi.h"

namespace activemm::abi {

inline constexpr int32_t kNoMm = -1;
inline constexpr int32_t kInitMm = 0;  // slot 0 is init_mm, never freed
inline constexpr int32_t kNoTask = -1;
inline constexpr int32_t kNoCpu = -1;
// cpu_tlbstate.loaded_mm while switch_mm_irqs_off changes it (LOADED_MM_SWITCHING): never seen
// at a quiet point.
inline constexpr int32_t kLoadedMmSwitching = -2;

inline constexpr uint32_t kMaxMms = 4096;
inline constexpr uint32_t kMaxTasks = 4096;
inline constexpr uint32_t kMaxUserPages = 64;  // data pages an mm can have mapped or probed
inline constexpr uint32_t kMaxAsids = 16;      // TLB_NR_DYN_ASIDS is 6 by default
inline constexpr uint32_t kMaxMmTables = 16;   // page-table pages below an mm's pgd
inline constexpr uint32_t kDefaultAsids = 6;

// ---- mm_struct ----------------------------------------------------------------------------------
inline constexpr uint64_t kMmMagic = 0x4d4d5f5354525543ull;  // "CURTS_MM"

enum class PageState : uint32_t {
  kMapped = 1,    // present in the page table; ring 3 verifies and (if writable) rewrites it
  kUnmapped = 2,  // munmapped: ring 3 must fault on it
};
inline constexpr uint32_t kPageWritable = 1;

struct UserPage {
  uint64_t va;
  uint64_t pa;     // 0 once unmapped (the page went back to the allocator)
  uint64_t tag;    // ring 3 expects tag ^ word_va in every word; it writes the next tag
  uint32_t state;  // PageState
  uint32_t prot;   // kPageWritable or 0
};
static_assert(sizeof(UserPage) == 32);

// One per mm, in a page of its own from the guest's page allocator (poisoned when freed).
struct MmStruct {
  uint64_t magic;  // kMmMagic while allocated
  int32_t mm_users;
  int32_t mm_count;
  uint64_t pgd_pa;      // page-table root; kernel half shared with init_mm
  uint64_t ctl_pa;      // the control page ring 3 reads its work list from (kUserCtlVa)
  uint64_t stack_pa;    // the user stack page (kUserStackTopVa - 4 KiB)
  uint64_t ctx_id;      // unique per mm, for ever (mm->context.ctx_id)
  uint64_t tlb_gen;     // mm->context.tlb_gen
  uint64_t cpumask;     // mm_cpumask(mm): bit n = CPU n
  uint32_t nr_pages;    // entries used in pages[]
  uint32_t generation;  // ring-3 bursts run on this mm (part of every page tag)
  UserPage pages[kMaxUserPages];
  // The page-table pages below pgd (PDPTs, PDs, PTs of the user half), so exit_mmap frees them
  // without scanning 512-entry tables: each scanned entry is an emulated instruction or more.
  uint32_t nr_tables;
  uint32_t reserved;
  uint64_t tables[kMaxMmTables];
};
static_assert(offsetof(MmStruct, pgd_pa) == 16);
static_assert(offsetof(MmStruct, pages) == 72);
static_assert(offsetof(MmStruct, tables) == 72 + 32 * kMaxUserPages + 8);
static_assert(sizeof(MmStruct) <= 4096);

enum class SlotState : uint32_t { kUnused = 0, kLive = 1, kFreed = 2 };

// The guest's registry of mms: slot n holds the mm the scenario calls n (the host names them).
struct MmSlot {
  uint64_t pa;     // the MmStruct page; stays recorded after the mm is freed
  uint32_t state;  // SlotState
  uint32_t reserved;
};
static_assert(sizeof(MmSlot) == 16);

// ---- task_struct --------------------------------------------------------------------------------
enum class TaskState : uint32_t {
  kUnused = 0,
  kRunnable = 1,  // alive, not running on any CPU
  kRunning = 2,   // the `curr` of the CPU in on_cpu
  kDead = 3,      // exited; its kernel stack is gone
};
inline constexpr uint32_t kPfKthread = 1;  // PF_KTHREAD
inline constexpr uint32_t kPfIdle = 2;     // a CPU's idle task
inline constexpr uint32_t kPfUsingMm = 4;  // between kthread_use_mm and kthread_unuse_mm
inline constexpr uint32_t kPfExiting = 8;  // PF_EXITING: in do_exit, past exit_mm

struct TaskStruct {
  uint32_t state;     // TaskState
  uint32_t flags;     // kPf*
  int32_t mm;         // slot or kNoMm
  int32_t active_mm;  // slot or kNoMm
  int32_t on_cpu;     // kNoCpu when not running
  uint32_t exec_count;
  uint64_t stack_pa;  // kernel stack (kTaskStackPages pages); 0 for idle tasks (boot stacks)
  uint64_t sp;        // saved kernel stack pointer while switched out (thread.sp)
};
static_assert(sizeof(TaskStruct) == 40);
inline constexpr uint32_t kTaskStackPages = 2;

// ---- per-CPU: run-queue, cpu_tlbstate, counters ---------------------------------------------
struct TlbContext {  // cpu_tlbstate.ctxs[asid]
  uint64_t ctx_id;
  uint64_t tlb_gen;
};

// Event counters, per CPU, counted from the first scenario step on. The one list of their names:
// the struct, the host's name table (vmm/model/scenario.cc MmCounterNames) and the reports come
// from it; tests/python/test_names.py checks the Python scenario library's copy against it.
#define ACTIVEMM_MM_COUNTERS(X)                                                           \
  X(context_switches)                                                                     \
  X(switch_user_to_kernel)                                                                \
  X(switch_kernel_to_kernel)                                                              \
  X(switch_kernel_to_user)                                                                \
  X(switch_user_to_user)                                                                  \
  X(cr3_writes)                                                                           \
  X(cr3_writes_flush)                                                                     \
  X(cr3_writes_noflush) /* loads that keep (or, with modeled PCID, would keep) the TLB */ \
  X(invlpg)                                                                               \
  X(lazy_entries) /* enter_lazy_tlb that set is_lazy */                                   \
  X(lazy_grabs)   /* mmgrab_lazy_tlb that took a reference */                             \
  X(lazy_drops)   /* mmdrop_lazy_tlb that dropped one */                                  \
  X(ipis_sent)                                                                            \
  X(ipis_received)                                                                        \
  X(shootdowns)                                                                           \
  X(full_flushes)                                                                         \
  X(leave_mm)                                                                             \
  X(user_bursts) /* ring-3 runs of user tasks */

struct MmCounters {
#define ACTIVEMM_MM_COUNTER_FIELD(name) uint64_t name;
  ACTIVEMM_MM_COUNTERS(ACTIVEMM_MM_COUNTER_FIELD)
#undef ACTIVEMM_MM_COUNTER_FIELD
};
inline constexpr int kNumMmCounters = sizeof(MmCounters) / sizeof(uint64_t);
static_assert(sizeof(MmCounters) == 18 * 8);

struct CpuMmState {
  // struct rq
  int32_t curr;     // task
  int32_t idle;     // task
  int32_t prev_mm;  // rq->prev_mm: an mm parked for finish_task_switch, or kNoMm
  // struct tlb_state (cpu_tlbstate) and tlb_state_shared.is_lazy
  int32_t loaded_mm;
  uint16_t loaded_mm_asid;
  uint16_t next_asid;
  uint8_t is_lazy;
  uint8_t late_ipi_pending;  // a flush IPI is on its way here (replay: it lands after a switch)
  uint8_t reserved[2];
  TlbContext ctxs[kMaxAsids];
  MmCounters counters;
};
static_assert(offsetof(CpuMmState, ctxs) == 24);
static_assert(sizeof(CpuMmState) == 24 + 16 * kMaxAsids + sizeof(MmCounters));

// ---- the scenario program (host -> guest) -------------------------------------------------
enum class StepOp : uint32_t {
  kSpawn = 1,      // task, mm (new), pages
  kCloneVm = 2,    // task (new), parent
  kFork = 3,       // task (new), parent, mm (new)
  kKthread = 4,    // task (new)
  kRun = 5,        // cpu, task; arg kSwitchPrevDies
  kIdle = 6,       // cpu; arg kSwitchPrevDies
  kExec = 7,       // task (current), mm (new), pages
  kExit = 8,       // task (current); arg kExitKeepsRunning: it stays current until a switch
                   // step with kSwitchPrevDies
  kUseMm = 9,      // task (current kthread), mm
  kUnuseMm = 10,   // task (current kthread)
  kMmap = 11,      // task (current), pages
  kMunmap = 12,    // task (current), pages
  kMprotect = 13,  // task (current), pages, prot
  kVerify = 14,    // a host verification point: arg = index into the host's check list
  kParallel = 15,  // arg = N: the next N steps run concurrently, each on its CPU, in order per
                   // CPU; every CPU joins, and the program goes on when all have finished
  kFlush = 16,     // task (current), mm, pages (kFlushAllPages: all), arg kFlushFreedTables:
                   // flush_tlb_mm_range as a replayed trace's tlb_flush event asks
};

// kExit's arg: do_exit up to exit_mm only; the task stays current (PF_EXITING) until the next
// run step switches away from it, and is dead from then on. A replayed trace shows its exit
// event and, later, the switch away from the dying task as two events.
inline constexpr uint32_t kExitKeepsRunning = 1;
// kRun and kIdle's arg: the task switched out is dead (its last __schedule, from do_task_dead).
// Without it an exiting task that is switched out was preempted, and runs again later.
inline constexpr uint32_t kSwitchPrevDies = 1;
// kFlush: pages means the whole address space; arg: kFlushFreedTables (page-table pages were
// freed), and at most one of kFlushBegin (only the tlb_gen increment) and kFlushFinish (only the
// IPIs and the local flush of the flush this CPU began last).
inline constexpr uint32_t kFlushAllPages = 0xffffffffu;
inline constexpr uint32_t kFlushFreedTables = 1;
inline constexpr uint32_t kFlushBegin = 2;
inline constexpr uint32_t kFlushFinish = 4;

inline constexpr uint32_t kStepVerifyAfter = 1;  // the host verifies after this step

// One program step. Every field means one thing; a field an op does not use is zero (kNoTask,
// kNoMm for the references).
struct Step {
  uint32_t op;  // StepOp
  uint32_t cpu;
  int32_t task;
  int32_t parent;  // kCloneVm, kFork: the task copied
  int32_t mm;
  uint32_t pages;
  uint32_t prot;   // kMprotect: kPageWritable or 0
  uint32_t flags;  // kStepVerifyAfter
  uint32_t index;  // the step's index in the scenario file (for reports)
  uint32_t arg;    // the op's argument (StepOp says which)
  // kFlush: the CPUs whose flush IPI lands only after their next step (a replayed trace shows
  // them switching away before they handled it). The initiator does not wait for them.
  uint64_t late_ipi_cpus;
};
static_assert(sizeof(Step) == 48);

enum class LazyMode : uint32_t {
  kOn = 1,         // Linux today: CONFIG_MMU_LAZY_TLB_REFCOUNT=y
  kOff = 2,        // no lazy TLB: kernel threads load init_mm (Linux 4.14-4.18 without PCID)
  kShootdown = 3,  // MMU_LAZY_TLB_SHOOTDOWN: lazy users hold no reference
};
enum class PcidMode : uint32_t {
  kOff = 0,       // ASID 0, every mm switch flushes
  kModeled = 1,   // ASID decisions computed; CR3 loaded without PCID bits (no PCID here)
  kHardware = 2,  // CR4.PCIDE=1 and real PCIDs with the no-flush bit
};

// Bugs the mm model can plant on purpose (--inject), so tests can prove each is caught.
enum class MmBug : uint32_t {
  kNone = 0,
  kSkipLazyMmgrab = 1,  // user -> kernel switch takes no lazy reference
  kDoubleMmdrop = 2,    // finish_task_switch drops rq->prev_mm twice
  kForgetPrevMm = 3,    // kernel -> user switch does not park the borrowed mm in rq->prev_mm
  kNoCpumask = 4,       // switch_mm_irqs_off never sets the CPU in mm_cpumask
  kWrongCr3 = 5,        // loading init_mm keeps the previous mm's page table in CR3
  kForkSharesPage = 6,  // dup_mm maps the parent's first page into the child instead of a copy
  kMunmapKeepsPte = 7,  // munmap frees the pages but leaves their PTEs in place
  kSkipIpiNonLazy = 8,  // flush_tlb_mm_range sends no IPI to a non-lazy CPU using the mm
  kNoTlbGenCheck = 9,   // back from lazy mode to the same mm: no tlb_gen check, no flush
  kAsidNoFlush = 10,    // choose_new_asid reuses a slot for another mm without a flush
  // Not bugs: test hooks on the step loop, for the watchdog and interruption tests. Every value
  // from kSlowSteps on is a hook (the step loop tests that with one compare).
  kSlowSteps = 11,     // every step first spins kSlowStepTscCycles: long runs on any host
  kStallHalfway = 12,  // the CPU of the middle step spins there, interrupts off, forever
  // Not bugs: a hostile guest (guest/programs/hostile.h), for the tests that the host survives one.
  // At the middle step the CPU writes garbage into what the host reads, then asks it to verify.
  kHostileTaskIndex = 13,  // rq->curr, rq->prev_mm, a task's mm and active_mm out of range
  kHostileMmSlot = 14,     // a live mm slot's mm_struct outside RAM; init_mm's slot state junk
  kHostileDirectory = 15,  // the model directory's tables outside RAM, its counts at 2^32-1
  kHostileCounts = 16,     // refcounts at INT32_MAX/MIN, tlb_gen and counters near 2^64
  kHostilePtSelf = 17,     // a user PML4 entry pointing at its own table page
  kHostilePtCycle = 18,    // a PDPT entry pointing back at the PML4 above it
  kHostilePtOutside = 19,  // a user PML4 entry whose table is outside RAM
  kHostilePgd = 20,        // the model's pgd_pa of an mm outside RAM
  kHostileCr3 = 21,        // the real CR3 loaded with a root outside RAM
  kHostileString = 22,     // log and panic strings without a terminator, counts past arrays
  kHostileFlood = 23,      // hypercalls (log, hello, mark, verify) in a loop, no step done
  kHostileFill = 24,       // a fill hypercall for a range that wraps past 2^64
};
// The last value: --inject's table (vmm/cli/flags.h) must name every one up to it.
inline constexpr MmBug kLastMmBug = MmBug::kHostileFill;
inline constexpr bool IsHostile(MmBug b) {
  return b >= MmBug::kHostileTaskIndex && b <= MmBug::kHostileFill;
}
// About a millisecond on a 2-4 GHz TSC.
inline constexpr uint64_t kSlowStepTscCycles = 3'000'000;

struct ScenarioHeader {
  uint32_t num_steps;
  uint32_t lazy_mode;  // LazyMode
  uint32_t pcid_mode;  // PcidMode
  uint32_t num_asids;  // 1..kMaxAsids
  uint32_t bug;        // MmBug
  // Steps [0, steps_loaded) have been in the window (host -> guest, raised during the run at
  // each kRefill; see kProgramWindow).
  uint32_t steps_loaded;
  // 1: every StepRecord gets the CPU's state afterwards and the step's TSC span (what a
  // timeline is drawn from); 0: its result byte only, the rest left as it was. The result is
  // all a replay scores and all a run reports; the rest costs about 25 ring-0 instructions a
  // step, so the host asks for it only when a timeline is wanted.
  uint32_t step_state;
  uint32_t reserved;
};
static_assert(sizeof(ScenarioHeader) == 32);

// What a step did, written by the CPU that executed it (guest -> host). A replay scores its
// run steps by them: the real kernel's CR3 loads are known per sched_switch.
enum StepResult : uint8_t {
  kStepExecuted = 1,
  kStepCr3Load = 2,   // this CPU wrote CR3 during the step (a switch_mm_irqs_off load)
  kStepCr3Flush = 4,  // ... and the load flushed the TLB (need_flush; no PCID kept it)
};
// What happened during one step, written by the CPU that executed it when it finished: its
// result bits, and with ScenarioHeader::step_state its state afterwards and what it did to
// other CPUs. The timeline is built from these.
struct StepRecord {
  uint64_t tsc_begin;
  uint64_t tsc_end;
  uint64_t ipi_cpus;       // CPUs this step sent flush IPIs to (late ones included)
  uint64_t leave_mm_cpus;  // CPUs that left their lazy mm for init_mm because of this step
  int32_t loaded_mm;       // this CPU's cpu_tlbstate.loaded_mm afterwards
  int32_t curr;            // this CPU's current task afterwards
  uint8_t result;          // StepResult bits
  uint8_t is_lazy;         // this CPU's is_lazy afterwards
  uint8_t reserved[6];
};
static_assert(sizeof(StepRecord) == 48);

// The program streams through a window below the image: step i lives in slot
// i % kProgramWindow of the steps and of the records, so a program of any length runs in the
// same guest RAM. The host fills the window ahead of the guest: at the start with the first
// kProgramWindow steps, then at each kRefill hypercall with the steps whose slots hold finished
// ones (every step before MmDirectory::steps_done), after copying out their records. The guest
// asks for a refill once fewer than kProgramRefillAhead loaded steps remain ahead of it, so a
// parallel block of up to that many steps is always whole in the window when it starts.
inline constexpr uint64_t kScenarioPa = 0x100000;
inline constexpr uint64_t kScenarioBytes = kImageLoadPa - kScenarioPa;
inline constexpr uint32_t kProgramWindow = 8192;  // a power of two: the slot is i & (W - 1)
inline constexpr uint32_t kProgramRefillAhead = kProgramWindow / 2;
inline constexpr uint64_t kProgramStepsPa = kScenarioPa + 0x40;
inline constexpr uint64_t kProgramRecordsPa = kProgramStepsPa + kProgramWindow * sizeof(Step);
static_assert((kProgramWindow & (kProgramWindow - 1)) == 0);
static_assert(sizeof(ScenarioHeader) <= kProgramStepsPa - kScenarioPa);
static_assert(kProgramRecordsPa + kProgramWindow * sizeof(StepRecord) <= kImageLoadPa);

// The boot-time TLB probe's pages (guest/arch/tlb_probe.cc), between the program window and the
// image: two data pages and the PDPT, PD and PT that map kTlbProbeVa in init_mm for a moment.
// Nothing else writes them, so they are zero, as the VM's fresh RAM is, until the probe runs.
inline constexpr uint64_t kTlbProbePa = 0x1f0000;
inline constexpr uint64_t kTlbProbePages = 5;
inline constexpr uint64_t kTlbProbeVa = 0x40000000;  // PML4 0, PDPT 1, PD 0, PT 0: user half
static_assert(kProgramRecordsPa + kProgramWindow * sizeof(StepRecord) <= kTlbProbePa);
static_assert(kTlbProbePa + kTlbProbePages * 4096 <= kImageLoadPa);
static_assert(kMailboxPa + kMaxCpus * kMailboxSize <= kScenarioPa);
// The longest program the host accepts: its steps and records are kept in host memory
// (96 bytes a step, 3 GiB at the limit).
inline constexpr uint32_t kMaxProgramSteps = 32u << 20;
inline constexpr uint32_t ProgramSlot(uint32_t step) { return step & (kProgramWindow - 1); }

// Where the guest keeps the model (written into GuestInfo-like directory at kMmDirectoryPa).
struct MmDirectory {
  uint64_t mm_slots_pa;  // MmSlot[kMaxMms]
  uint64_t tasks_pa;     // TaskStruct[kMaxTasks]
  uint64_t cpus_pa;      // CpuMmState[num_cpus]
  uint32_t num_mms;      // slots in use (allocated ever)
  uint32_t num_tasks;
  uint32_t steps_done;  // steps the guest has completed
  uint32_t reserved;
};
static_assert(sizeof(MmDirectory) == 40);
inline constexpr uint64_t kMmDirectoryPa = kGuestInfoPa + 0x800;

// The step loop's wake-up bookkeeping, one per CPU at kStepLoopPa (guest -> host): with it the
// watchdog's report says what each CPU waited for and whether its wake-up was sent and taken,
// which tells a lost wake-up in the guest from one lost by the hypervisor.
struct StepLoopCpu {
  uint32_t waiting_for;  // the step the CPU saw next before it last halted
  uint32_t halts;        // halts waiting for its step
  uint32_t kicks_sent;   // wake-ups other CPUs sent it (added atomically before each IPI)
  uint32_t kicks_taken;  // wake-up interrupts it handled
  // Interrupts taken at the HLT of "sti; hlt", inside STI's shadow, which hardware never does
  // (guest/arch/cpu.h SafeHaltThenCli); counted for every program, not only scenarios.
  uint32_t shadow_interrupts;
  uint32_t reserved;
};
static_assert(sizeof(StepLoopCpu) == 24);
inline constexpr uint64_t kStepLoopPa = kGuestInfoPa + 0x1000;
static_assert(kStepLoopPa + kMaxCpus * sizeof(StepLoopCpu) <= kMailboxPa);

// User virtual addresses of an mm (beyond kUserTextVa / kUserDataVa / kUserStackTopVa).
inline constexpr uint64_t kUserCtlVa = 0x0000000000600000ull;

// The control page ring 3 works from (kUserCtlVa). The kernel fills `work`, ring 3 fills the
// results; both sides compile this layout.
struct UserWork {
  uint64_t va;
  uint64_t expect_tag;  // every word must read expect_tag ^ word_va
  uint64_t new_tag;     // then every word is rewritten as new_tag ^ word_va (if writable)
  uint32_t kind;        // UserWorkKind
  uint32_t reserved;
};
enum class UserWorkKind : uint32_t {
  kVerifyAndRewrite = 1,
  kVerifyOnly = 2,  // read-only page: verify, then a write must fault
  kMustFault = 3,   // unmapped page: a read must fault
};
struct UserControl {
  uint64_t num_work;
  uint64_t bad_words;       // words that did not hold the expected value
  uint64_t missing_faults;  // accesses that should have faulted and did not
  uint64_t first_bad_va;
  uint64_t first_bad_value;
  uint64_t reserved[3];
  UserWork work[kMaxUserPages];
};
static_assert(offsetof(UserControl, work) == 64);
static_assert(sizeof(UserControl) <= 4096);
static_assert(sizeof(UserWork) == 32);

}  // namespace activemm::abi

#endif  // ACTIVEMM_SHARED_MM_ABI_H_
