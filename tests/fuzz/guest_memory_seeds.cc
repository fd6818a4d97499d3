// Writes seeds for guest_memory_fuzz: consistent guest states, as the guest leaves them, in the
// fuzzer's input format (guest_memory_input.h), so that fuzzing starts from inputs that reach
// the deepest checks (every live mm's page tables, the self-test's user pages), and a few
// broken ones. Each state is also verified here, and its violations printed: the consistent
// ones must have none.
//
//   guest_memory_seeds OUT_DIR
#include <stdint.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "shared/abi.h"
#include "shared/mm_abi.h"
#include "shared/page_table.h"
#include "shared/x86.h"
#include "tests/fuzz/guest_memory_input.h"
#include "vmm/kvm/guest_image.h"
#include "vmm/kvm/guest_memory.h"
#include "vmm/model/mm_verifier.h"
#include "vmm/model/model_state.h"
#include "vmm/model/scenario.h"

namespace activemm {
namespace {

using fuzz::GuestMemoryFuzzParams;
using fuzz::kGuestMemoryFuzzRam;
using x86::Pte;

constexpr uint64_t kAllocStart = 0x50000;  // after the mailboxes
constexpr uint64_t kAllocEnd = abi::kScenarioPa;

// Guest RAM being built, with a bump allocator of zeroed pages: the Mem of page_table.h.
class State {
 public:
  State() : ram_(kGuestMemoryFuzzRam, 0) {}
  uint64_t* Table(uint64_t pa) {
    if (pa % x86::kPageSize != 0 || pa + x86::kPageSize > ram_.size()) return nullptr;
    return reinterpret_cast<uint64_t*>(ram_.data() + pa);
  }
  uint64_t AllocTable() {
    if (next_ >= kAllocEnd) return 0;
    uint64_t pa = next_;
    next_ += x86::kPageSize;
    return pa;
  }
  template <typename T>
  T* At(uint64_t pa) {
    return reinterpret_cast<T*>(ram_.data() + pa);
  }
  void Map(uint64_t root, uint64_t va, uint64_t pa, uint64_t flags,
           uint64_t size = x86::kPageSize) {
    PageTable<State> pt(*this, root);
    if (pt.Map(va, pa, flags, size) != PtStatus::kOk) {
      std::fprintf(stderr, "cannot map %#lx\n", static_cast<unsigned long>(va));
      std::exit(1);
    }
  }
  std::vector<uint8_t>& ram() { return ram_; }

 private:
  std::vector<uint8_t> ram_;
  uint64_t next_ = kAllocStart;
};

// init_mm's table: the direct map of RAM and the kernel image window, 2 MiB pages.
uint64_t KernelTables(State& st) {
  const uint64_t pgd = st.AllocTable();
  st.Map(pgd, abi::kDirectMapBase, 0, Pte::kWritable | Pte::kNoExecute, x86::kHugePageSize);
  st.Map(pgd, abi::kKernelTextBase, 0, Pte::kWritable, x86::kHugePageSize);
  st.Map(pgd, abi::kKernelTextBase + abi::kImageLoadPa, abi::kImageLoadPa, Pte::kWritable,
         x86::kHugePageSize);
  return pgd;
}

// A user page table: init_mm's kernel half and the user text.
uint64_t UserTables(State& st, uint64_t swapper, const GuestImage& image) {
  const uint64_t pgd = st.AllocTable();
  std::memcpy(st.Table(pgd) + 256, st.Table(swapper) + 256, 256 * 8);
  const uint64_t text_pa = image.UserTextAlias(abi::kUserTextVa) - abi::kKernelTextBase;
  for (uint64_t off = 0; off < image.user_text_size(); off += x86::kPageSize) {
    st.Map(pgd, abi::kUserTextVa + off, text_pa + off, Pte::kUser);
  }
  return pgd;
}

void FillPattern(State& st, uint64_t pa, uint64_t seed, uint64_t va) {
  uint64_t* w = st.At<uint64_t>(pa);
  for (size_t i = 0; i < x86::kPageSize / 8; ++i) w[i] = seed ^ (va + i * 8);
}

struct Seed {
  std::string name;
  GuestMemoryFuzzParams params{};
  State state;
};

// Two CPUs: CPU 0 in its idle task on init_mm, CPU 1 running task 2 of mm 1, which maps a
// zeroed writable page and a read-only page its ring 3 filled; a freed mm 2.
void ModelState(Seed& s, const GuestImage& image, abi::LazyMode lazy, abi::PcidMode pcid) {
  State& st = s.state;
  const uint64_t swapper = KernelTables(st);
  auto* info = st.At<abi::GuestInfo>(abi::kGuestInfoPa);
  info->abi_version = abi::kAbiVersion;
  info->cpus_online = 2;
  info->swapper_pgd_pa = swapper;
  info->alloc_start_pa = kAllocStart;
  info->alloc_end_pa = kAllocEnd;

  auto* dir = st.At<abi::MmDirectory>(abi::kMmDirectoryPa);
  dir->mm_slots_pa = st.AllocTable();
  dir->tasks_pa = st.AllocTable();
  dir->cpus_pa = st.AllocTable();
  dir->num_mms = 3;
  dir->num_tasks = 3;
  dir->steps_done = 5;

  // init_mm
  const uint64_t init_pa = st.AllocTable();
  auto* init = st.At<abi::MmStruct>(init_pa);
  init->magic = abi::kMmMagic;
  init->mm_users = 1;
  init->mm_count = lazy == abi::LazyMode::kOn ? 3 : 1;  // + the two idle tasks' lazy references
  init->pgd_pa = swapper;
  init->ctx_id = 1;
  init->tlb_gen = 1;
  // mm 1
  const uint64_t mm_pa = st.AllocTable();
  auto* mm = st.At<abi::MmStruct>(mm_pa);
  mm->magic = abi::kMmMagic;
  mm->mm_users = 1;
  mm->mm_count = 1;
  mm->pgd_pa = UserTables(st, swapper, image);
  mm->ctl_pa = st.AllocTable();
  mm->stack_pa = st.AllocTable();
  mm->ctx_id = 2;
  mm->tlb_gen = 3;
  mm->cpumask = 1u << 1;
  const uint64_t rw = Pte::kUser | Pte::kWritable | Pte::kNoExecute;
  st.Map(mm->pgd_pa, abi::kUserCtlVa, mm->ctl_pa, rw);
  st.Map(mm->pgd_pa, abi::kUserStackTopVa - x86::kPageSize, mm->stack_pa, rw);
  mm->nr_pages = 3;
  mm->pages[0] = {abi::kUserDataVa, st.AllocTable(), 0, 1, abi::kPageWritable};
  mm->pages[1] = {abi::kUserDataVa + x86::kPageSize, st.AllocTable(), 0x5a5a0000, 1, 0};
  mm->pages[2] = {abi::kUserDataVa + 2 * x86::kPageSize, 0, 0, 2, 0};  // munmapped
  st.Map(mm->pgd_pa, mm->pages[0].va, mm->pages[0].pa, rw);
  st.Map(mm->pgd_pa, mm->pages[1].va, mm->pages[1].pa, Pte::kUser | Pte::kNoExecute);
  FillPattern(st, mm->pages[1].pa, mm->pages[1].tag, mm->pages[1].va);

  auto* slots = st.At<abi::MmSlot>(dir->mm_slots_pa);
  slots[0] = {init_pa, static_cast<uint32_t>(abi::SlotState::kLive), 0};
  slots[1] = {mm_pa, static_cast<uint32_t>(abi::SlotState::kLive), 0};
  slots[2] = {st.AllocTable(), static_cast<uint32_t>(abi::SlotState::kFreed), 0};

  auto* tasks = st.At<abi::TaskStruct>(dir->tasks_pa);
  const uint32_t idle = abi::kPfKthread | abi::kPfIdle;
  tasks[0] = {
      static_cast<uint32_t>(abi::TaskState::kRunning), idle, abi::kNoMm, abi::kInitMm, 0, 0, 0, 0};
  tasks[1] = {static_cast<uint32_t>(abi::TaskState::kRunnable),
              idle,
              abi::kNoMm,
              abi::kInitMm,
              abi::kNoCpu,
              0,
              0,
              0x1000};
  tasks[2] = {static_cast<uint32_t>(abi::TaskState::kRunning), 0, 1, 1, 1, 1, st.AllocTable(), 0};

  auto* cpus = st.At<abi::CpuMmState>(dir->cpus_pa);
  cpus[0].curr = 0;
  cpus[0].idle = 0;
  cpus[0].prev_mm = abi::kNoMm;
  cpus[0].loaded_mm = abi::kInitMm;
  cpus[0].loaded_mm_asid = 0;
  cpus[0].ctxs[0] = {init->ctx_id, init->tlb_gen};
  cpus[0].counters.context_switches = 4;
  cpus[0].counters.cr3_writes = 2;
  cpus[1].curr = 2;
  cpus[1].idle = 1;
  cpus[1].prev_mm = abi::kNoMm;
  cpus[1].loaded_mm = 1;
  cpus[1].loaded_mm_asid = 1;
  cpus[1].next_asid = 2;
  cpus[1].ctxs[1] = {mm->ctx_id, mm->tlb_gen};
  cpus[1].counters.context_switches = 3;
  cpus[1].counters.lazy_entries = 1;

  auto* loop = st.At<abi::StepLoopCpu>(abi::kStepLoopPa);
  loop[0] = {5, 2, 2, 2, 0, 0};
  loop[1] = {5, 1, 1, 1, 1, 0};

  GuestMemoryFuzzParams& p = s.params;
  p.cpus = 1;  // two vCPUs
  p.lazy = static_cast<uint8_t>(static_cast<uint32_t>(lazy) - 1);
  p.pcid = static_cast<uint8_t>(pcid);
  p.num_tasks = 3;
  p.num_mms = 3;
  p.tsc_khz = 2000000;
  p.present = 3;
  const bool hw = pcid == abi::PcidMode::kHardware;
  p.cr3[0] = x86::Cr3::Make(swapper, hw ? 1 : 0, false).raw();
  p.cr3[1] = x86::Cr3::Make(mm->pgd_pa, hw ? 2 : 0, false).raw();
  p.cr3[2] = p.cr3[0];
  p.cr3[3] = p.cr3[1];
}

// The step records of the built-in scenario's first steps, as the guest writes them.
void StepRecords(Seed& s, const Scenario& sc) {
  auto* rec = s.state.At<abi::StepRecord>(abi::kProgramRecordsPa);
  for (size_t i = 0; i < sc.program.size() && i < 6; ++i) {
    rec[i].tsc_begin = 1000000 + i * 5000;
    rec[i].tsc_end = rec[i].tsc_begin + 3000;
    rec[i].ipi_cpus = i == 4 ? 2 : 0;
    rec[i].leave_mm_cpus = i == 5 ? 2 : 0;
    rec[i].loaded_mm = i < 2 ? 0 : 1;
    rec[i].curr = static_cast<int32_t>(i % 3);
    rec[i].result = abi::kStepExecuted | (i == 2 ? abi::kStepCr3Load | abi::kStepCr3Flush : 0);
    rec[i].is_lazy = i == 3;
  }
}

// CPU 0's mailbox after a log line, a panic and an exception report.
void Mailbox(Seed& s, int cpu) {
  auto* mb = s.state.At<abi::CpuMailbox>(abi::MailboxPa(cpu));
  const char log[] = "cpu online, init_mm loaded";
  std::memcpy(mb->log, log, sizeof log - 1);
  mb->log_len = sizeof log - 1;
  mb->arg[0] = abi::kCheckpointOnline;
  const char msg[] = "GUEST_CHECK(mm->mm_count > 0) failed";
  const char file[] = "guest/mm/mm.cc";
  std::memcpy(mb->panic.message, msg, sizeof msg);
  std::memcpy(mb->panic.file, file, sizeof file);
  mb->panic.line = 123;
  mb->panic.num_values = 2;
  mb->panic.values[0] = 0xdead;
  mb->panic.values[1] = 7;
  mb->panic.fault = {14,
                     6,
                     0x10004008,
                     0x1234000,
                     abi::kUserTextVa + 0x24,
                     x86::kUserCs,
                     0x202,
                     abi::kUserStackTopVa - 8,
                     x86::kUserDs};
}

// One CPU's self-test, passed: its user page table maps the user text and four data pages
// holding seed ^ va.
void SelftestState(Seed& s, const GuestImage& image) {
  State& st = s.state;
  const uint64_t swapper = KernelTables(st);
  auto* info = st.At<abi::GuestInfo>(abi::kGuestInfoPa);
  info->abi_version = abi::kAbiVersion;
  info->cpus_online = 1;
  info->swapper_pgd_pa = swapper;
  auto* rep = st.At<abi::SelftestReport>(abi::MailboxPa(0) + offsetof(abi::CpuMailbox, selftest));
  rep->online = 1;
  rep->apic_id = 0;
  rep->ipi_target = 0;
  rep->ipi_sender = 0;
  rep->ipis_received = 1;
  rep->ipis_sent = 1;
  rep->user_pages = abi::kSelftestPages;
  rep->user_pgd_pa = UserTables(st, swapper, image);
  rep->user_seed = abi::SelftestSeed(0);
  rep->user_trap_cs = x86::kUserCs;
  rep->user_trap_rip = abi::kUserTextVa + 0x10;
  uint64_t sum = 0;
  for (uint32_t i = 0; i < rep->user_pages; ++i) {
    const uint64_t va = abi::kUserDataVa + i * x86::kPageSize;
    rep->data_pa[i] = st.AllocTable();
    st.Map(rep->user_pgd_pa, va, rep->data_pa[i], Pte::kUser | Pte::kWritable | Pte::kNoExecute);
    FillPattern(st, rep->data_pa[i], rep->user_seed, va);
    for (size_t w = 0; w < x86::kPageSize / 8; ++w)
      sum += abi::UserPattern(rep->user_seed, va + w * 8);
  }
  rep->user_checksum = sum;
  GuestMemoryFuzzParams& p = s.params;
  p.cpus = 0;  // one vCPU
  p.checkpoints = 1 | 2 << 2 | 3 << 4;
  p.present = 1;
  p.cr3[0] = p.cr3[1] = p.cr3[2] = p.cr3[3] = swapper;
}

// The input: the parameters, then a record per run of nonzero 8-byte words (runs closer than
// 32 bytes are merged).
std::vector<uint8_t> Encode(Seed& s) {
  std::vector<uint8_t> out(sizeof s.params);
  std::memcpy(out.data(), &s.params, sizeof s.params);
  const std::vector<uint8_t>& ram = s.state.ram();
  const uint64_t* w = reinterpret_cast<const uint64_t*>(ram.data());
  const size_t words = ram.size() / 8;
  for (size_t i = 0; i < words;) {
    if (w[i] == 0) {
      ++i;
      continue;
    }
    size_t end = i + 1;
    for (size_t zeros = 0; end < words && zeros < 4 && (end - i) * 8 < 60000; ++end) {
      zeros = w[end] == 0 ? zeros + 1 : 0;
    }
    while (w[end - 1] == 0) --end;
    fuzz::GuestMemoryFuzzRecord r{static_cast<uint32_t>(i * 8),
                                  static_cast<uint16_t>((end - i) * 8)};
    const uint8_t* rb = reinterpret_cast<const uint8_t*>(&r);
    out.insert(out.end(), rb, rb + sizeof r);
    out.insert(out.end(), ram.begin() + i * 8, ram.begin() + end * 8);
    i = end;
  }
  return out;
}

// The violations the verifier finds in a scenario state (the consistent ones must have none).
size_t Violations(Seed& s, const GuestImage& image, const Scenario& sc) {
  std::unique_ptr<GuestMemory> mem =
      GuestMemory::WrapForTesting(s.state.ram().data(), s.state.ram().size());
  const GuestMemoryFuzzParams& p = s.params;
  VerifierConfig c;
  c.lazy = static_cast<abi::LazyMode>(1 + p.lazy % 3);
  c.pcid = static_cast<abi::PcidMode>(p.pcid % 3);
  c.swapper_pgd_pa = s.state.At<abi::GuestInfo>(abi::kGuestInfoPa)->swapper_pgd_pa;
  absl::StatusOr<ModelSnapshot> snap = ReadModel(*mem, 1 + p.cpus, p.num_tasks, p.num_mms);
  if (!snap.ok()) return 1000;
  std::vector<kvm_sregs> sregs(1 + p.cpus);
  std::vector<bool> present(1 + p.cpus);
  for (int i = 0; i <= p.cpus; ++i) {
    sregs[i].cr3 = p.cr3[i % 4];
    present[i] = (p.present >> i) & 1;
  }
  std::vector<Violation> v = MmVerifier(sc, image, c).VerifyAll(*mem, *snap, sregs, present);
  for (const Violation& x : v) std::printf("  [%s] %s\n", x.rule.c_str(), x.message.c_str());
  return v.size();
}

int Main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: guest_memory_seeds OUT_DIR\n");
    return 2;
  }
  absl::StatusOr<GuestImage> image = GuestImage::Embedded();
  absl::StatusOr<Scenario> sc = CompileScenario(DefaultScenarioJson(), "built-in", {});
  if (!image.ok() || !sc.ok()) return 1;

  std::vector<Seed> seeds(6);
  seeds[0].name = "model_lazy_on";
  ModelState(seeds[0], *image, abi::LazyMode::kOn, abi::PcidMode::kModeled);
  StepRecords(seeds[0], *sc);
  Mailbox(seeds[0], 0);
  seeds[1].name = "model_lazy_off_pcid";
  ModelState(seeds[1], *image, abi::LazyMode::kOff, abi::PcidMode::kHardware);
  seeds[2].name = "model_shootdown";
  ModelState(seeds[2], *image, abi::LazyMode::kShootdown, abi::PcidMode::kOff);
  seeds[2]
      .state
      .At<abi::MmStruct>(
          seeds[2]
              .state
              .At<abi::MmSlot>(
                  seeds[2].state.At<abi::MmDirectory>(abi::kMmDirectoryPa)->mm_slots_pa)[0]
              .pa)
      ->mm_count = 1;
  seeds[3].name = "selftest";
  SelftestState(seeds[3], *image);
  Mailbox(seeds[3], 0);

  // Broken states: a page table that points back at itself, a task on a freed mm, an mm
  // slot outside RAM, a mailbox with an oversized log and unterminated strings.
  seeds[4].name = "model_broken";
  ModelState(seeds[4], *image, abi::LazyMode::kOn, abi::PcidMode::kModeled);
  {
    State& st = seeds[4].state;
    auto* dir = st.At<abi::MmDirectory>(abi::kMmDirectoryPa);
    auto* slots = st.At<abi::MmSlot>(dir->mm_slots_pa);
    auto* mm = st.At<abi::MmStruct>(slots[1].pa);
    st.Table(mm->pgd_pa)[1] = Pte::Make(mm->pgd_pa, Pte::kPresent | Pte::kWritable).raw();
    slots[2].pa = 0xfffff000;
    slots[2].state = static_cast<uint32_t>(abi::SlotState::kLive);
    st.At<abi::TaskStruct>(dir->tasks_pa)[1].active_mm = 2;
    auto* mb = st.At<abi::CpuMailbox>(abi::MailboxPa(1));
    mb->log_len = 0xffffffff;
    std::memset(mb->log, 'x', sizeof mb->log);
    std::memset(mb->panic.message, 0x7f, sizeof mb->panic.message + sizeof mb->panic.file);
    mb->panic.num_values = 1000;
  }
  seeds[5].name = "small_ram";
  Mailbox(seeds[5], 0);
  seeds[5].params.ram_shrink = (kGuestMemoryFuzzRam - 0x10400) / 8;  // RAM ends in the mailbox

  for (Seed& s : seeds) {
    std::printf("%s:\n", s.name.c_str());
    if (s.name.starts_with("model")) std::printf("  %zu violations\n", Violations(s, *image, *sc));
    std::vector<uint8_t> bytes = Encode(s);
    std::ofstream out(std::string(argv[1]) + "/" + s.name, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
    std::printf("  %zu bytes\n", bytes.size());
  }
  return 0;
}

}  // namespace
}  // namespace activemm

int main(int argc, char** argv) { return activemm::Main(argc, argv); }
