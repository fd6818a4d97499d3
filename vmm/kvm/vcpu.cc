#include "vmm/kvm/vcpu.h"

#include <sys/ioctl.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"
#include "vmm/kvm/kvm_uapi.h"

namespace activemm {
namespace {

absl::Status IoctlError(const char* what, int id) {
  return absl::InternalError(
      absl::StrFormat("%s on vCPU %d failed: %s", what, id, std::strerror(errno)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Vcpu>> Vcpu::Create(const Kvm& kvm, int vm_fd, int id) {
  int fd = ioctl(vm_fd, KVM_CREATE_VCPU, id);
  if (fd < 0) return IoctlError("KVM_CREATE_VCPU", id);
  UniqueFd owned(fd);
  void* run = mmap(nullptr, kvm.vcpu_mmap_size(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (run == MAP_FAILED) return IoctlError("mmap of kvm_run", id);
  return std::unique_ptr<Vcpu>(
      new Vcpu(id, std::move(owned), static_cast<kvm_run*>(run), kvm.vcpu_mmap_size()));
}

Vcpu::~Vcpu() { munmap(run_, run_size_); }

absl::StatusOr<uint32_t> Vcpu::Run() {
  if (ioctl(fd_.get(), KVM_RUN, 0) < 0) {
    if (errno == EINTR || errno == EAGAIN) return KVM_EXIT_INTR;
    return IoctlError("KVM_RUN", id_);
  }
  return run_->exit_reason;
}

absl::StatusOr<kvm_regs> Vcpu::GetRegs() const {
  kvm_regs r;
  if (ioctl(fd_.get(), KVM_GET_REGS, &r) < 0) return IoctlError("KVM_GET_REGS", id_);
  return r;
}

absl::Status Vcpu::SetRegs(const kvm_regs& r) {
  if (ioctl(fd_.get(), KVM_SET_REGS, &r) < 0) return IoctlError("KVM_SET_REGS", id_);
  return absl::OkStatus();
}

absl::StatusOr<kvm_sregs> Vcpu::GetSregs() const {
  kvm_sregs s;
  if (ioctl(fd_.get(), KVM_GET_SREGS, &s) < 0) return IoctlError("KVM_GET_SREGS", id_);
  return s;
}

absl::Status Vcpu::SetSregs(const kvm_sregs& s) {
  if (ioctl(fd_.get(), KVM_SET_SREGS, &s) < 0) return IoctlError("KVM_SET_SREGS", id_);
  return absl::OkStatus();
}

absl::Status Vcpu::SetCpuid(const std::vector<kvm_cpuid_entry2>& entries) {
  std::vector<uint8_t> buf(sizeof(KvmCpuid2Header) + entries.size() * sizeof(kvm_cpuid_entry2));
  auto* c = reinterpret_cast<KvmCpuid2Header*>(buf.data());
  c->nent = static_cast<uint32_t>(entries.size());
  std::memcpy(buf.data() + sizeof *c, entries.data(), entries.size() * sizeof(kvm_cpuid_entry2));
  if (ioctl(fd_.get(), kKvmSetCpuid2, c) < 0) return IoctlError("KVM_SET_CPUID2", id_);
  return absl::OkStatus();
}

absl::StatusOr<uint32_t> Vcpu::GetMpState() const {
  kvm_mp_state mp;
  if (ioctl(fd_.get(), KVM_GET_MP_STATE, &mp) < 0) return IoctlError("KVM_GET_MP_STATE", id_);
  return mp.mp_state;
}

absl::StatusOr<kvm_lapic_state> Vcpu::GetLapic() const {
  kvm_lapic_state lapic;
  if (ioctl(fd_.get(), KVM_GET_LAPIC, &lapic) < 0) return IoctlError("KVM_GET_LAPIC", id_);
  return lapic;
}

absl::Status Vcpu::SetMpState(uint32_t state) {
  kvm_mp_state mp{state};
  if (ioctl(fd_.get(), KVM_SET_MP_STATE, &mp) < 0) return IoctlError("KVM_SET_MP_STATE", id_);
  return absl::OkStatus();
}

long Vcpu::TscKhz() const { return ioctl(fd_.get(), KVM_GET_TSC_KHZ, 0); }

}  // namespace activemm
