// /dev/kvm: opening it with errors a user can act on, and what it offers.
#ifndef ACTIVEMM_VMM_KVM_KVM_H_
#define ACTIVEMM_VMM_KVM_KVM_H_

#include <linux/kvm.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "vmm/kvm/unique_fd.h"

namespace activemm {

class Kvm {
 public:
  static constexpr const char* kDevicePath = "/dev/kvm";

  // Opens `path`; the error says what is wrong and what to do (no device, no permission, ...).
  static absl::StatusOr<std::unique_ptr<Kvm>> Open(const std::string& path = kDevicePath);

  int fd() const { return fd_.get(); }
  int api_version() const { return api_version_; }
  int vcpu_mmap_size() const { return vcpu_mmap_size_; }
  int CheckExtension(int cap) const;
  // KVM_GET_SUPPORTED_CPUID.
  const std::vector<kvm_cpuid_entry2>& supported_cpuid() const { return cpuid_; }
  bool HasPcid() const;

 private:
  explicit Kvm(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
  int api_version_ = 0;
  int vcpu_mmap_size_ = 0;
  std::vector<kvm_cpuid_entry2> cpuid_;
};

}  // namespace activemm

#endif  // ACTIVEMM_VMM_KVM_KVM_H_
