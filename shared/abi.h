// The host/guest ABI: memory layout, boot parameters, per-CPU mailboxes and the hypercall
// protocol. Both sides compile this header; every struct is standard-layout with fixed-width
// fields, guest addresses are uint64_t, and every offset the host relies on is static_assert'ed.
// Bump kAbiVersion whenever a layout or a meaning here changes: the host refuses a guest image
// built against another version, and the guest refuses boot parameters of another version.
#ifndef ACTIVEMM_SHARED_ABI_H_
#define ACTIVEMM_SHARED_ABI_H_

#include <stddef.h>
#include <stdint.h>

#include "shared/abi_asm.h"

namespace activemm::abi {

inline constexpr uint32_t kAbiVersion = ACTIVEMM_ABI_VERSION;
inline constexpr uint64_t kImageMagic = ACTIVEMM_IMAGE_MAGIC;  // "AMMGUEST"
inline constexpr uint64_t kBootMagic = 0x544f4f424d4d41ull;    // "AMMBOOT"

inline constexpr uint32_t kMaxCpus = 64;

// ---- Guest physical memory layout ------------------------------------------------------------
// 0x0000_0000  unused (a null physical address is always a bug)
// 0x0000_1000  BootParams          host -> guest, written before the first KVM_RUN
// 0x0000_2000  boot page tables    host-built, only the kernel image window (6 pages)
// 0x0000_9000  GuestInfo           guest -> host
// 0x0001_0000  CpuMailbox[64]      one 4 KiB page per CPU: hypercall arguments and reports
// 0x0020_0000  guest image         text, data, bss (incl. boot stacks); 2 MiB aligned
// image end    free RAM            the guest's page allocator hands this out
inline constexpr uint64_t kBootParamsPa = 0x1000;
inline constexpr uint64_t kBootTablesPa = 0x2000;
inline constexpr uint64_t kBootTablesPages = 6;
inline constexpr uint64_t kGuestInfoPa = 0x9000;
inline constexpr uint64_t kMailboxPa = 0x10000;
inline constexpr uint64_t kMailboxSize = 0x1000;
inline constexpr uint64_t kImageLoadPa = ACTIVEMM_IMAGE_LOAD_PA;

inline constexpr uint64_t kMinMemBytes = 16ull << 20;
// Guest RAM stays below the 32-bit MMIO hole (the local APIC sits at 0xfee00000).
inline constexpr uint64_t kMaxMemBytes = 3ull << 30;
inline constexpr uint64_t kDefaultMemBytes = 256ull << 20;

// ---- Guest virtual memory layout (the kernel half is shared by every address space) -----------
// Same places as Linux x86-64 with 4-level paging (Documentation/arch/x86/x86_64/mm.rst).
inline constexpr uint64_t kDirectMapBase = 0xffff888000000000ull;       // all RAM, 2 MiB pages
inline constexpr uint64_t kKernelTextBase = ACTIVEMM_KERNEL_TEXT_BASE;  // physical 0 .. image end
inline constexpr int kFirstKernelPml4Index = 256;                       // entries 256..511
// User half used by the guest's user tasks.
inline constexpr uint64_t kUserTextVa = 0x0000000000400000ull;
inline constexpr uint64_t kUserDataVa = 0x0000000010000000ull;
inline constexpr uint64_t kUserStackTopVa = 0x00007ffffff00000ull;

// ---- The guest image --------------------------------------------------------------------------
// The first bytes of the flat guest binary. The host checks it before loading anything.
struct GuestImageHeader {
  uint64_t magic;        // kImageMagic
  uint32_t abi_version;  // kAbiVersion the guest was built with
  uint32_t header_size;  // sizeof(GuestImageHeader)
  uint64_t load_pa;      // physical address of the image's first byte (kImageLoadPa)
  uint64_t link_va;      // virtual address of the image's first byte
  uint64_t entry_va;     // where every vCPU starts: rdi = cpu index, rsi = &BootParams
  uint64_t end_va;       // end of .bss, page aligned
};
static_assert(sizeof(GuestImageHeader) == 48);
static_assert(offsetof(GuestImageHeader, entry_va) == 32);

// ---- Boot parameters (host -> guest) ----------------------------------------------------------
enum class Program : uint32_t {
  kSelftest = 1,  // the SMP self-test: report in, IPI ring, ring 3 round trip
  kScenario = 2,  // the mm model executing a scenario program (shared/mm_abi.h)
  kCost = 3,      // the context-switch cost benchmark (shared/cost_abi.h), CPU 0 only
};

// Faults planted on purpose, so that tests can prove they are reported.
enum class Inject : uint32_t {
  kNone = 0,
  kKernelFault = 1,  // CPU 0 reads an unmapped kernel address in ring 0 (#PF)
  kUserFault = 2,    // the last CPU's ring-3 code writes to an unmapped user page (#PF)
  kSpin = 3,         // the last CPU spins with interrupts off after reporting in (watchdog)
  kPanic = 4,        // CPU 0 fails a GUEST_CHECK
  kVerifyStorm = 5,  // every CPU asks the host to verify, all at once, many times
};
// The last value: selftest's --inject table (vmm/cli/flags.h) must name every one up to it.
inline constexpr Inject kLastInject = Inject::kVerifyStorm;

struct BootParams {
  uint64_t magic;  // kBootMagic
  uint32_t abi_version;
  uint32_t num_cpus;
  uint64_t mem_bytes;
  uint32_t program;  // Program
  uint32_t inject;   // Inject
  uint32_t verbose;  // nonzero: the guest logs its progress
  uint32_t flags;    // kBoot* bits
  uint64_t tsc_khz;  // 0 when the host could not tell
  // The host's boot page table maps physical [0, boot_window_bytes) at kKernelTextBase: the
  // image plus kBootScratchBytes for the tables the guest builds before it has a direct map.
  uint64_t boot_window_bytes;
};
static_assert(sizeof(BootParams) == 56);
static_assert(offsetof(BootParams, mem_bytes) == 16);
static_assert(offsetof(BootParams, tsc_khz) == 40);
static_assert(offsetof(BootParams, boot_window_bytes) == 48);

inline constexpr uint64_t kBootScratchBytes = 2ull << 20;

// BootParams::flags. kBootFillByHost: the guest asks the host (kFill) to poison freed task
// stacks, where ring 0 is emulated instruction by instruction (kvm_pvm): there a REP STOSQ over
// a page is 512 emulated stores, about half a millisecond, and an exit a few microseconds. Where
// ring 0 runs natively it is the other way round, and the guest fills them itself. Never pages
// that may be page tables: a shadow-paging hypervisor would not see the host's writes.
inline constexpr uint32_t kBootFillByHost = 1;

// ---- Guest facts (guest -> host) ---------------------------------------------------------------
// What the boot-time TLB probe saw (guest/arch/tlb_probe.cc): after a PTE changed from page A
// to page B with no flush, did a read still return A?
enum class TlbProbe : uint32_t {
  kNotRun = 0,
  kNotObservable = 1,  // the read returned B: this host's MMU keeps no stale translation
  kObservable = 2,     // the read returned A: a missed flush leaves a stale entry a read sees
  kInconclusive = 3,   // the first read was not A, or the read after INVLPG not B
};

struct GuestInfo {
  uint32_t abi_version;  // the guest's kAbiVersion, written at its first hypercall
  uint32_t cpus_online;
  uint64_t swapper_pgd_pa;  // init_mm's page table root, 0 until built
  uint64_t alloc_start_pa;  // first page the page allocator may hand out
  uint64_t alloc_end_pa;    // end of RAM
  uint64_t pages_allocated;
  uint64_t pages_freed;
  uint32_t tlb_probe;  // TlbProbe, written by CPU 0 at boot
  uint32_t reserved;
};
static_assert(sizeof(GuestInfo) == 56);
static_assert(offsetof(GuestInfo, swapper_pgd_pa) == 8);

// ---- Hypercalls --------------------------------------------------------------------------------
// A hypercall is a 32-bit OUT of its number to kHypercallPort. Port I/O exits to the host
// synchronously on hardware KVM, nested KVM and the software hypervisor (kvm_pvm), and the
// number arrives in kvm_run's I/O data, so the host needs no KVM_GET_REGS. Arguments travel in
// the calling CPU's mailbox, which the host reads through its bounds-checked accessor.
inline constexpr uint16_t kHypercallPort = ACTIVEMM_HYPERCALL_PORT;

enum class Hypercall : uint32_t {
  kHello = 1,       // first call of every CPU: GuestInfo.abi_version is set; arg[0] = APIC id
  kLog = 2,         // log[0..log_len) is one line of text
  kCheckpoint = 3,  // arg[0] = checkpoint id; returns when every running CPU has reached it and
                    // the host has inspected the quiet guest
  kPanic = 4,       // panic holds the reason; the run fails, the CPU never resumes
  kException = 5,   // panic.fault holds an unexpected exception; the run fails
  kDone = 6,        // this CPU has finished; arg[0] = 0 on success
  kVerify = 7,      // arg[0] = check index (or kVerifyNoCheck), arg[1] = the step: the host pauses
                    // every other vCPU (they are idle between steps), verifies, and resumes them
  kMark = 8,    // begin or end of measurement: arguments in shared/cost_abi.h; the host reads the
                // vCPU's statistics and resumes it at once
  kRefill = 9,  // the scenario program's window runs low (shared/mm_abi.h kProgramWindow): the
                // host loads the next steps, raises ScenarioHeader::steps_loaded, and resumes
  kFill = 10,   // arg[0] = guest physical address, arg[1] = bytes (at most kMaxFillBytes),
                // arg[2] = the byte: the host sets the range and resumes (kBootFillByHost)
};
inline constexpr uint64_t kMaxFillBytes = 64 * 1024;

// arg[0] of a kVerify that belongs to no check of the scenario file: a full verification only
// (--verify=every-step, after a parallel block).
inline constexpr uint64_t kVerifyNoCheck = ~uint64_t{0};

// Checkpoint ids of the self-test program.
inline constexpr uint64_t kCheckpointKernelTables = 1;  // CPU 0 has built init_mm's page table
inline constexpr uint64_t kCheckpointOnline = 2;        // every CPU has reported in
inline constexpr uint64_t kCheckpointSelftest = 3;      // IPIs and ring 3 done on every CPU
// Checkpoint ids of the scenario program.
inline constexpr uint64_t kCheckpointModelReady = 10;  // CPU 0 has the configuration and init_mm
inline constexpr uint64_t kCheckpointCpusReady = 11;   // every CPU has its rq and tlbstate

// The CPU state at an exception, as pushed by the CPU and the guest's trap entry.
struct FaultReport {
  uint64_t vector;
  uint64_t error_code;
  uint64_t cr2;
  uint64_t cr3;
  uint64_t rip;
  uint64_t cs;
  uint64_t rflags;
  uint64_t rsp;
  uint64_t ss;
};
static_assert(sizeof(FaultReport) == 72);

inline constexpr size_t kPanicMessageMax = 160;
inline constexpr size_t kPanicFileMax = 48;
inline constexpr int kPanicValuesMax = 4;

struct PanicReport {
  char message[kPanicMessageMax];  // NUL-terminated within the array (the host bounds it anyway)
  char file[kPanicFileMax];
  uint32_t line;
  uint32_t num_values;  // host clamps to kPanicValuesMax
  uint64_t values[kPanicValuesMax];
  FaultReport fault;  // valid for kException
};
static_assert(sizeof(PanicReport) == 320);

inline constexpr int kSelftestMaxPages = 8;
inline constexpr uint64_t kSelftestPages = 4;

// What each CPU's self-test did, for the host to check.
struct SelftestReport {
  uint32_t online;         // 1 once the CPU has its GDT, IDT, APIC and init_mm loaded
  uint32_t apic_id;        // read from the x2APIC ID register
  uint32_t ipi_target;     // the CPU this one sent its IPI to
  uint32_t ipi_sender;     // written by the sender before it sends
  uint32_t ipis_received;  // counted by the IPI handler
  uint32_t user_pages;     // data pages mapped for ring 3
  // ICR writes this CPU's code made, counted before each: with ipis_received it tells an IPI
  // the guest sent twice from one the hypervisor delivered twice.
  uint32_t ipis_sent;
  uint32_t reserved;
  uint64_t user_pgd_pa;    // root of the CPU's user page table
  uint64_t user_seed;      // ring 3 wrote seed ^ va into every 8-byte word of each data page
  uint64_t user_checksum;  // sum of the words ring 3 read back
  uint64_t user_errors;    // words ring 3 read back wrong
  uint64_t user_trap_cs;   // CS in the frame of the trap that ended ring 3
  uint64_t user_trap_rip;  // RIP of that trap (the ud2 in the user text)
  uint64_t data_pa[kSelftestMaxPages];
};
static_assert(sizeof(SelftestReport) == 144);

inline constexpr size_t kLogMax = 480;

// One per CPU at kMailboxPa + cpu * kMailboxSize.
struct CpuMailbox {
  uint64_t arg[4];
  uint32_t log_len;
  uint32_t reserved;
  char log[kLogMax];
  PanicReport panic;
  SelftestReport selftest;
};
static_assert(sizeof(CpuMailbox) <= kMailboxSize);
static_assert(offsetof(CpuMailbox, log) == 40);
static_assert(offsetof(CpuMailbox, panic) == 520);
static_assert(offsetof(CpuMailbox, selftest) == 840);
static_assert(kMailboxPa + kMaxCpus * kMailboxSize <= kImageLoadPa);
static_assert(kBootTablesPa + kBootTablesPages * 0x1000 <= kGuestInfoPa);

constexpr uint64_t MailboxPa(uint32_t cpu) { return kMailboxPa + cpu * kMailboxSize; }

// The value ring 3 writes at user virtual address va (both sides compute it).
constexpr uint64_t UserPattern(uint64_t seed, uint64_t va) { return seed ^ va; }
constexpr uint64_t SelftestSeed(uint32_t cpu) {
  return 0xa5a5000000000000ull ^ (uint64_t{cpu} << 40);
}

}  // namespace activemm::abi

#endif  // ACTIVEMM_SHARED_ABI_H_
