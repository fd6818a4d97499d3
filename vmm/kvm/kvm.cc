#include "vmm/kvm/kvm.h"

#include <fcntl.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"
#include "vmm/kvm/kvm_uapi.h"

namespace activemm {

absl::StatusOr<std::unique_ptr<Kvm>> Kvm::Open(const std::string& path) {
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    switch (e) {
      case ENOENT:
        return absl::UnavailableError(absl::StrFormat(
            "%s does not exist: this machine offers no KVM. Load the module (modprobe kvm_intel "
            "or kvm_amd) on a host with virtualization enabled in firmware, or run on a machine "
            "or CI runner that provides /dev/kvm",
            path));
      case EACCES:
      case EPERM:
        return absl::PermissionDeniedError(absl::StrFormat(
            "no permission to open %s: add yourself to its group (sudo usermod -aG kvm $USER, "
            "then log in again) or run as root",
            path));
      default:
        return absl::UnavailableError(
            absl::StrFormat("cannot open %s: %s", path, std::strerror(e)));
    }
  }
  auto kvm = std::unique_ptr<Kvm>(new Kvm(UniqueFd(fd)));
  kvm->api_version_ = ioctl(fd, KVM_GET_API_VERSION, 0);
  if (kvm->api_version_ < 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s is not a KVM device (KVM_GET_API_VERSION: %s)", path, std::strerror(errno)));
  }
  if (kvm->api_version_ != KVM_API_VERSION) {
    return absl::FailedPreconditionError(absl::StrFormat("%s speaks KVM API %d, activemm needs %d",
                                                         path, kvm->api_version_, KVM_API_VERSION));
  }
  kvm->vcpu_mmap_size_ = ioctl(fd, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (kvm->vcpu_mmap_size_ <= 0) {
    return absl::InternalError(
        absl::StrFormat("KVM_GET_VCPU_MMAP_SIZE failed: %s", std::strerror(errno)));
  }
  for (int need : {KVM_CAP_IRQCHIP, KVM_CAP_IMMEDIATE_EXIT, KVM_CAP_MP_STATE}) {
    if (kvm->CheckExtension(need) <= 0) {
      return absl::FailedPreconditionError(
          absl::StrFormat("%s lacks KVM capability %d, which activemm needs", path, need));
    }
  }
  // KVM_GET_SUPPORTED_CPUID fails with E2BIG until the buffer is large enough.
  for (int n = 256; n <= 4096; n *= 2) {
    std::vector<uint8_t> buf(sizeof(KvmCpuid2Header) + n * sizeof(kvm_cpuid_entry2));
    auto* c = reinterpret_cast<KvmCpuid2Header*>(buf.data());
    c->nent = n;
    if (ioctl(fd, kKvmGetSupportedCpuid, c) == 0) {
      auto* entries = reinterpret_cast<const kvm_cpuid_entry2*>(buf.data() + sizeof *c);
      kvm->cpuid_.assign(entries, entries + c->nent);
      break;
    }
    if (errno != E2BIG) {
      return absl::InternalError(
          absl::StrFormat("KVM_GET_SUPPORTED_CPUID failed: %s", std::strerror(errno)));
    }
  }
  if (kvm->cpuid_.empty()) return absl::InternalError("KVM_GET_SUPPORTED_CPUID returned nothing");
  return kvm;
}

int Kvm::CheckExtension(int cap) const { return ioctl(fd_.get(), KVM_CHECK_EXTENSION, cap); }

bool Kvm::HasPcid() const {
  for (const kvm_cpuid_entry2& e : cpuid_) {
    if (e.function == 1 && e.index == 0) return e.ecx & (1u << 17);  // CPUID.1:ECX.PCID
  }
  return false;
}

}  // namespace activemm
