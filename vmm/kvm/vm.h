// A KVM virtual machine ready to run: guest RAM with the image and boot parameters loaded, the
// host's minimal boot page table, the in-kernel irqchip, and one vCPU per simulated CPU, each
// about to enter the guest directly in 64-bit long mode.
#ifndef ACTIVEMM_VMM_KVM_VM_H_
#define ACTIVEMM_VMM_KVM_VM_H_

#include <stdint.h>

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "shared/abi.h"
#include "vmm/kvm/guest_image.h"
#include "vmm/kvm/guest_memory.h"
#include "vmm/kvm/kvm.h"
#include "vmm/kvm/unique_fd.h"
#include "vmm/kvm/vcpu.h"

namespace activemm {

struct VmConfig {
  int cpus = 1;
  uint64_t mem_bytes = abi::kDefaultMemBytes;
  abi::Program program = abi::Program::kSelftest;
  abi::Inject inject = abi::Inject::kNone;
  bool verbose = false;
  // Set by Vm::Create from the host's kind (abi::kBootFillByHost).
  bool fill_by_host = false;
};

class Vm {
 public:
  static absl::StatusOr<std::unique_ptr<Vm>> Create(const Kvm& kvm, const GuestImage& image,
                                                    const VmConfig& config);

  const VmConfig& config() const { return config_; }
  const GuestImage& image() const { return image_; }
  GuestMemory& memory() { return *memory_; }
  int num_vcpus() const { return static_cast<int>(vcpus_.size()); }
  Vcpu& vcpu(int i) { return *vcpus_[i]; }
  uint64_t tsc_khz() const { return tsc_khz_; }

 private:
  Vm(const VmConfig& config, const GuestImage& image) : config_(config), image_(image) {}
  absl::Status LoadGuest();
  absl::Status BuildBootPageTable();
  absl::Status CreateVcpu(const Kvm& kvm, int id);

  VmConfig config_;
  GuestImage image_;
  UniqueFd vm_fd_;
  std::unique_ptr<GuestMemory> memory_;
  std::vector<std::unique_ptr<Vcpu>> vcpus_;
  uint64_t boot_window_bytes_ = 0;
  uint64_t tsc_khz_ = 0;
};

// Checks a configuration before anything is created; the message names the bad value.
absl::Status ValidateVmConfig(const VmConfig& config, const GuestImage& image);

}  // namespace activemm

#endif  // ACTIVEMM_VMM_KVM_VM_H_
