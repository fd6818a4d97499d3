// Fuzz target: everything the host decodes from guest memory, on guest RAM the input fills
// (guest_memory_input.h: parameters, then records written at guest physical addresses).
//
// The readers run as the host runs them, through the same GuestMemory accessors:
//   - each vCPU's mailbox as Runner::HandleHypercall decodes it (vmm/kvm/runner.cc): the hello
//     check of GuestInfo, the log line, the panic and the exception reports;
//   - the self-test's checkpoints (SelftestVerifier::OnCheckpoint), in the order the input
//     gives, stopping at the first failure as the run does;
//   - the scenario program's: GuestInfo's init_mm root, ReadModel (tasks, mm slots and
//     mm_structs, per-CPU states), the MmVerifier (VerifyAll: references, refcounts, the real
//     CR3s, every live mm's page tables walked and its pages read; Evaluate of every check of
//     the built-in scenario), the step-loop records, the step records and the --timeline built
//     from them.
// The host must not trust any of it: an address outside RAM, a count beyond its bound or a
// looping page table is a problem reported, never a crash, an overflow or a hang.
#include <stddef.h>
#include <stdint.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "shared/abi.h"
#include "shared/mm_abi.h"
#include "tests/fuzz/guest_memory_input.h"
#include "vmm/kvm/guest_image.h"
#include "vmm/kvm/guest_memory.h"
#include "vmm/kvm/guest_report.h"
#include "vmm/kvm/runner.h"
#include "vmm/model/mm_verifier.h"
#include "vmm/model/model_state.h"
#include "vmm/model/program_stream.h"
#include "vmm/model/scenario.h"
#include "vmm/model/scenario_run.h"
#include "vmm/tools/selftest.h"
#include "vmm/tools/timeline.h"

namespace {

namespace abi = activemm::abi;
using activemm::fuzz::GuestMemoryFuzzParams;
using activemm::fuzz::GuestMemoryFuzzRecord;
using activemm::fuzz::kGuestMemoryFuzzRam;

// What stays the same from one input to the next: guest RAM (only the bytes an input wrote
// are cleared after it), the embedded image and the built-in scenario.
struct Fixture {
  uint8_t* ram;
  activemm::GuestImage image;
  activemm::Scenario scenario;
};

Fixture& GetFixture() {
  static Fixture* f = [] {
    auto* fx = new Fixture;
    fx->ram = static_cast<uint8_t*>(std::calloc(kGuestMemoryFuzzRam, 1));
    absl::StatusOr<activemm::GuestImage> image = activemm::GuestImage::Embedded();
    absl::StatusOr<activemm::Scenario> sc =
        activemm::CompileScenario(activemm::DefaultScenarioJson(), "built-in", {});
    if (fx->ram == nullptr || !image.ok() || !sc.ok()) std::abort();
    fx->image = *std::move(image);
    fx->scenario = *std::move(sc);
    return fx;
  }();
  return *f;
}

// The hypercall arguments of one vCPU, as Runner::HandleHypercall reads and formats them.
void DecodeMailbox(const activemm::GuestMemory& mem, const activemm::GuestImage& image, int cpu) {
  absl::StatusOr<abi::GuestInfo> info = mem.Read<abi::GuestInfo>(abi::kGuestInfoPa);
  if (info.ok()) (void)(info->abi_version == abi::kAbiVersion);
  absl::StatusOr<abi::CpuMailbox> mb = mem.Read<abi::CpuMailbox>(abi::MailboxPa(cpu));
  if (!mb.ok()) return;
  const uint32_t len = std::min<uint32_t>(mb->log_len, abi::kLogMax);
  std::string line = activemm::GuestMemory::BoundedString(mb->log, len);
  std::string panic = activemm::FormatPanic(cpu, mb->panic);
  std::string fault = activemm::FormatFault(cpu, mb->panic.fault, image);
}

void Selftest(activemm::GuestMemory& mem, const activemm::GuestImage& image, int cpus,
              uint8_t checkpoints, const std::vector<kvm_sregs>& sregs,
              const std::vector<bool>& present) {
  activemm::SelftestVerifier verifier(image, cpus);
  for (int k = 0; k < 4; ++k) {
    const uint64_t id = (checkpoints >> (2 * k)) & 3;
    if (id == 0) break;
    const activemm::CheckpointView view{id, mem, sregs, present};
    if (!verifier.OnCheckpoint(view).ok()) break;  // the run stops at a failed checkpoint
  }
}

// ReadModel's counts: below 64 unless the top bit is set, then up to 32767 (beyond what the
// guest has: refused). A snapshot of 4096 mms is 9 MB; most inputs need far fewer.
int ModelCount(uint16_t v) { return (v & 0x8000) != 0 ? (v & 0x7fff) : v % 64; }

void Scenario(activemm::GuestMemory& mem, const Fixture& fx, const GuestMemoryFuzzParams& p,
              int cpus, const std::vector<kvm_sregs>& sregs, const std::vector<bool>& present) {
  const activemm::Scenario& sc = fx.scenario;
  activemm::VerifierConfig config;
  config.lazy = static_cast<abi::LazyMode>(1 + p.lazy % 3);
  config.pcid = static_cast<abi::PcidMode>(p.pcid % 3);
  absl::StatusOr<abi::GuestInfo> info = mem.Read<abi::GuestInfo>(abi::kGuestInfoPa);
  if (info.ok()) config.swapper_pgd_pa = info->swapper_pgd_pa;
  const activemm::MmVerifier verifier(sc, fx.image, config);

  absl::StatusOr<activemm::ModelSnapshot> snap =
      activemm::ReadModel(mem, cpus, ModelCount(p.num_tasks), ModelCount(p.num_mms));
  if (snap.ok()) {
    for (const activemm::HostCheck& check : sc.checks) verifier.Evaluate(check, *snap);
    verifier.VerifyAll(mem, *snap, sregs, present);
    activemm::TotalCounters(*snap);
  }

  // What scenario_run.cc reads besides the model: the progress, each CPU's wake-ups, and the
  // step records, which the timeline turns into slices.
  activemm::ScenarioReport report;
  absl::StatusOr<abi::MmDirectory> dir = mem.Read<abi::MmDirectory>(abi::kMmDirectoryPa);
  if (dir.ok()) report.steps_done = static_cast<int>(dir->steps_done);
  for (int cpu = 0; cpu < cpus; ++cpu) {
    absl::StatusOr<abi::StepLoopCpu> c =
        mem.Read<abi::StepLoopCpu>(abi::kStepLoopPa + cpu * sizeof(abi::StepLoopCpu));
    if (c.ok()) report.shadow_interrupts += c->shadow_interrupts;
  }
  report.tsc_khz = p.tsc_khz;
  // The program window (vmm/model/program_stream.h): the host loads it before the guest runs, then
  // the guest writes the records and asks for refills after a count of its choosing.
  // Reused from input to input (ReadBytes fills it whole): a fresh 384 KiB buffer per input,
  // zeroed and faulted in, was half of this target's time.
  static std::vector<uint8_t>& written =
      *new std::vector<uint8_t>(abi::kProgramWindow * sizeof(abi::StepRecord));
  const bool have_records =
      mem.ReadBytes(abi::kProgramRecordsPa, written.data(), written.size()).ok();
  activemm::ProgramStream stream(sc.program, mem);
  if (have_records && stream.Start(abi::ScenarioHeader{}).ok() &&
      mem.WriteBytes(abi::kProgramRecordsPa, written.data(), written.size()).ok()) {
    if (dir.ok()) (void)stream.Refill(dir->steps_done);
    report.step_records = stream.TakeRecords();
    activemm::TimelineRun run;
    run.label = "fuzz";
    run.scenario = &sc;
    run.report = &report;
    activemm::TimelineJson({run}, nullptr, "");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Fixture& fx = GetFixture();
  GuestMemoryFuzzParams p{};
  std::memcpy(&p, data, std::min(size, sizeof p));
  size_t at = std::min(size, sizeof p);

  // Guest RAM ends where the buffer ends, so that AddressSanitizer catches any read past it.
  // Its size stays a multiple of 8, so that page-table entries are aligned as in a real mapping.
  const uint64_t ram_bytes = kGuestMemoryFuzzRam - p.ram_shrink % (kGuestMemoryFuzzRam / 8) * 8;
  uint8_t* const base = fx.ram + (kGuestMemoryFuzzRam - ram_bytes);

  // The records, into RAM; each written range is remembered, to clear it afterwards.
  std::vector<std::pair<uint64_t, uint64_t>> written;
  while (at + sizeof(GuestMemoryFuzzRecord) <= size) {
    GuestMemoryFuzzRecord r;
    std::memcpy(&r, data + at, sizeof r);
    at += sizeof r;
    const uint64_t gpa = r.gpa % ram_bytes;
    const uint64_t len = std::min<uint64_t>({r.len, ram_bytes - gpa, size - at});
    std::memcpy(base + gpa, data + at, len);
    written.emplace_back(gpa, len);
    at += len;
  }
  std::unique_ptr<activemm::GuestMemory> mem =
      activemm::GuestMemory::WrapForTesting(base, ram_bytes);
  const int cpus = 1 + p.cpus % static_cast<int>(activemm::abi::kMaxCpus);
  std::vector<kvm_sregs> sregs(cpus);
  std::vector<bool> present(cpus);
  for (int c = 0; c < cpus; ++c) {
    sregs[c].cr3 = p.cr3[c % 4];
    present[c] = (p.present >> c) & 1;
  }

  // A hypercall decodes its caller's mailbox; all are alike but for their place: the first
  // and the last CPU's.
  DecodeMailbox(*mem, fx.image, 0);
  if (cpus > 1) DecodeMailbox(*mem, fx.image, cpus - 1);
  Selftest(*mem, fx.image, cpus, p.checkpoints, sregs, present);
  Scenario(*mem, fx, p, cpus, sregs, present);

  for (const auto& [gpa, len] : written) std::memset(base + gpa, 0, len);
  return 0;
}
