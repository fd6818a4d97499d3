#include "vmm/kvm/vm.h"

#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"
#include "shared/page_table.h"
#include "shared/x86.h"
#include "vmm/kvm/kvm_host.h"

namespace activemm {
namespace {

constexpr uint64_t RoundUp(uint64_t v, uint64_t align) { return (v + align - 1) / align * align; }

absl::Status VmIoctlError(const char* what) {
  return absl::InternalError(absl::StrFormat("%s failed: %s", what, std::strerror(errno)));
}

// Hands out the fixed boot-table pages (shared/abi.h) to the shared page-table code.
class BootTableMem {
 public:
  explicit BootTableMem(GuestMemory& mem) : mem_(mem) {}
  uint64_t* Table(uint64_t pa) { return mem_.Table(pa); }
  uint64_t AllocTable() {
    if (used_ >= abi::kBootTablesPages) return 0;
    return abi::kBootTablesPa + (used_++) * x86::kPageSize;
  }

 private:
  GuestMemory& mem_;
  uint64_t used_ = 0;
};

// 64-bit flat segments as the guest's GDT will describe them (SDM 3.4.5); KVM_SET_SREGS loads
// the hidden parts directly, so the guest runs before it has loaded a GDT of its own.
kvm_segment CodeSegment() {
  kvm_segment s{};
  s.limit = 0xffffffff;
  s.selector = x86::kKernelCs;
  s.type = 11;  // execute/read, accessed
  s.present = 1;
  s.s = 1;
  s.l = 1;
  s.g = 1;
  return s;
}

kvm_segment DataSegment() {
  kvm_segment s{};
  s.limit = 0xffffffff;
  s.selector = x86::kKernelDs;
  s.type = 3;  // read/write, accessed
  s.present = 1;
  s.db = 1;
  s.s = 1;
  s.g = 1;
  return s;
}

}  // namespace

absl::Status ValidateVmConfig(const VmConfig& config, const GuestImage& image) {
  if (config.cpus < 1 || config.cpus > static_cast<int>(abi::kMaxCpus)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--cpus=%d: must be between 1 and %d", config.cpus, abi::kMaxCpus));
  }
  if (config.mem_bytes % x86::kHugePageSize != 0 || config.mem_bytes < abi::kMinMemBytes ||
      config.mem_bytes > abi::kMaxMemBytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--mem=%dM: must be a multiple of 2 MiB between %d MiB and %d MiB",
                        config.mem_bytes >> 20, abi::kMinMemBytes >> 20, abi::kMaxMemBytes >> 20));
  }
  uint64_t window = RoundUp(image.end_pa(), x86::kHugePageSize) + abi::kBootScratchBytes;
  if (window + (4ull << 20) > config.mem_bytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--mem=%dM leaves no room after the %d KiB guest image",
                        config.mem_bytes >> 20, image.end_pa() >> 10));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Vm>> Vm::Create(const Kvm& kvm, const GuestImage& image,
                                               const VmConfig& config) {
  if (absl::Status s = ValidateVmConfig(config, image); !s.ok()) return s;
  auto vm = std::unique_ptr<Vm>(new Vm(config, image));
  // Where ring 0 is emulated, the host zeroes and poisons the guest's pages (abi::kFill).
  vm->config_.fill_by_host = ProbeKvmHost(kvm).kind == KvmHostKind::kSoftware;
  int fd = ioctl(kvm.fd(), KVM_CREATE_VM, 0);
  if (fd < 0) return VmIoctlError("KVM_CREATE_VM");
  vm->vm_fd_ = UniqueFd(fd);
  // Intel VMX without unrestricted guest needs three pages for real-mode emulation; the guest
  // never runs in real mode, but kvmtool and QEMU set it before creating vCPUs all the same.
  // Other providers may refuse it, which is harmless.
  if (kvm.CheckExtension(KVM_CAP_SET_TSS_ADDR) > 0) ioctl(fd, KVM_SET_TSS_ADDR, 0xfffbd000ul);
  if (ioctl(fd, KVM_CREATE_IRQCHIP, 0) < 0) return VmIoctlError("KVM_CREATE_IRQCHIP");

  absl::StatusOr<std::unique_ptr<GuestMemory>> mem = GuestMemory::Create(config.mem_bytes);
  if (!mem.ok()) return mem.status();
  vm->memory_ = *std::move(mem);
  kvm_userspace_memory_region region{};
  region.slot = 0;
  region.guest_phys_addr = 0;
  region.memory_size = config.mem_bytes;
  region.userspace_addr = reinterpret_cast<uint64_t>(vm->memory_->host_base());
  if (ioctl(fd, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
    return VmIoctlError("KVM_SET_USER_MEMORY_REGION");
  }

  if (absl::Status s = vm->BuildBootPageTable(); !s.ok()) return s;
  for (int i = 0; i < config.cpus; ++i) {
    if (absl::Status s = vm->CreateVcpu(kvm, i); !s.ok()) return s;
  }
  if (absl::Status s = vm->LoadGuest(); !s.ok()) return s;
  return vm;
}

absl::Status Vm::BuildBootPageTable() {
  // Only the kernel image window: physical [0, image end + scratch) at kKernelTextBase, in
  // 2 MiB pages. The guest builds its real page tables (direct map, init_mm) itself.
  boot_window_bytes_ = RoundUp(image_.end_pa(), x86::kHugePageSize) + abi::kBootScratchBytes;
  BootTableMem tables(*memory_);
  uint64_t root = tables.AllocTable();
  PageTable<BootTableMem> pt(tables, root);
  for (uint64_t pa = 0; pa < boot_window_bytes_; pa += x86::kHugePageSize) {
    PtStatus s = pt.Map(abi::kKernelTextBase + pa, pa, x86::Pte::kWritable, x86::kHugePageSize);
    if (s != PtStatus::kOk) {
      return absl::InternalError(
          absl::StrFormat("boot page table at %#x: %s", pa, PtStatusName(s)));
    }
  }
  return absl::OkStatus();
}

absl::Status Vm::LoadGuest() {
  const abi::GuestImageHeader& h = image_.header();
  absl::Status s = memory_->WriteBytes(h.load_pa, image_.bytes().data(), image_.bytes().size());
  if (!s.ok()) return s;
  abi::BootParams bp{};
  bp.magic = abi::kBootMagic;
  bp.abi_version = abi::kAbiVersion;
  bp.num_cpus = static_cast<uint32_t>(config_.cpus);
  bp.mem_bytes = config_.mem_bytes;
  bp.program = static_cast<uint32_t>(config_.program);
  bp.inject = static_cast<uint32_t>(config_.inject);
  bp.verbose = config_.verbose ? 1 : 0;
  bp.tsc_khz = tsc_khz_;
  bp.boot_window_bytes = boot_window_bytes_;
  bp.flags = config_.fill_by_host ? abi::kBootFillByHost : 0;
  return memory_->Write(abi::kBootParamsPa, bp);
}

absl::Status Vm::CreateVcpu(const Kvm& kvm, int id) {
  absl::StatusOr<std::unique_ptr<Vcpu>> v = Vcpu::Create(kvm, vm_fd_.get(), id);
  if (!v.ok()) return v.status();
  Vcpu& vcpu = **v;
  vcpus_.push_back(*std::move(v));

  // CPUID: what KVM supports, with this vCPU's APIC id in leaf 1 EBX[31:24] and the x2APIC id in
  // leaves 0xb and 0x1f EDX; the in-kernel LAPIC's id is the vCPU id.
  std::vector<kvm_cpuid_entry2> cpuid = kvm.supported_cpuid();
  for (kvm_cpuid_entry2& e : cpuid) {
    if (e.function == 1) e.ebx = (e.ebx & 0x00ffffff) | (static_cast<uint32_t>(id) << 24);
    if (e.function == 0xb || e.function == 0x1f) e.edx = static_cast<uint32_t>(id);
  }
  if (absl::Status s = vcpu.SetCpuid(cpuid); !s.ok()) return s;

  absl::StatusOr<kvm_sregs> sregs = vcpu.GetSregs();
  if (!sregs.ok()) return sregs.status();
  kvm_sregs& sr = *sregs;
  sr.cs = CodeSegment();
  sr.ds = sr.es = sr.fs = sr.gs = sr.ss = DataSegment();
  // A busy 64-bit TSS and an unusable LDT satisfy the VM-entry checks until the guest loads
  // its own (SDM 26.3.1.2).
  sr.tr = kvm_segment{};
  sr.tr.selector = x86::kTss;
  sr.tr.limit = 0x67;
  sr.tr.type = 11;
  sr.tr.present = 1;
  sr.ldt = kvm_segment{};
  sr.ldt.type = 2;
  sr.ldt.present = 1;
  sr.ldt.limit = 0xffff;
  sr.gdt.base = 0;
  sr.gdt.limit = 0;
  sr.idt.base = 0;
  sr.idt.limit = 0;
  sr.cr0 = x86::kCr0Pe | x86::kCr0Mp | x86::kCr0Et | x86::kCr0Ne | x86::kCr0Wp | x86::kCr0Pg;
  sr.cr3 = abi::kBootTablesPa;
  sr.cr4 = x86::kCr4Pae | x86::kCr4Osfxsr | x86::kCr4Osxmmexcpt;
  sr.efer = x86::kEferLme | x86::kEferLma | x86::kEferNxe;
  if (absl::Status s = vcpu.SetSregs(sr); !s.ok()) return s;

  kvm_regs regs{};
  regs.rip = image_.header().entry_va;
  regs.rdi = static_cast<uint64_t>(id);
  regs.rsi = abi::kKernelTextBase + abi::kBootParamsPa;
  regs.rflags = 2;  // bit 1 is reserved and reads as 1
  if (absl::Status s = vcpu.SetRegs(regs); !s.ok()) return s;

  // With the in-kernel irqchip only the BSP starts runnable; the others wait for INIT/SIPI.
  // activemm starts them all directly in long mode instead.
  if (absl::Status s = vcpu.SetMpState(KVM_MP_STATE_RUNNABLE); !s.ok()) return s;
  if (id == 0) {
    long khz = vcpu.TscKhz();
    tsc_khz_ = khz > 0 ? static_cast<uint64_t>(khz) : 0;
  }
  return absl::OkStatus();
}

}  // namespace activemm
