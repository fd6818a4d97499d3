// One KVM vCPU: its fd, its shared kvm_run page and the register ioctls. The thread that runs
// it belongs to the Runner.
#ifndef ACTIVEMM_VMM_KVM_VCPU_H_
#define ACTIVEMM_VMM_KVM_VCPU_H_

#include <linux/kvm.h>

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "vmm/kvm/kvm.h"
#include "vmm/kvm/unique_fd.h"

namespace activemm {

class Vcpu {
 public:
  static absl::StatusOr<std::unique_ptr<Vcpu>> Create(const Kvm& kvm, int vm_fd, int id);
  ~Vcpu();
  Vcpu(const Vcpu&) = delete;
  Vcpu& operator=(const Vcpu&) = delete;

  int id() const { return id_; }
  // For ioctls this class does not wrap (KVM_GET_STATS_FD).
  int fd() const { return fd_.get(); }
  kvm_run* run() const { return run_; }

  // One KVM_RUN; returns kvm_run::exit_reason, or KVM_EXIT_INTR when a signal or
  // immediate_exit interrupted it (EINTR / EAGAIN).
  absl::StatusOr<uint32_t> Run();
  // Makes the current and every later KVM_RUN return at once. Pair with a signal to the
  // thread running it (Runner::Kick); never cleared, so a stop cannot be lost.
  void RequestImmediateExit() { __atomic_store_n(&run_->immediate_exit, 1, __ATOMIC_SEQ_CST); }

  absl::StatusOr<kvm_regs> GetRegs() const;
  absl::Status SetRegs(const kvm_regs& r);
  absl::StatusOr<kvm_sregs> GetSregs() const;
  absl::Status SetSregs(const kvm_sregs& s);
  absl::Status SetCpuid(const std::vector<kvm_cpuid_entry2>& entries);
  absl::StatusOr<uint32_t> GetMpState() const;
  // KVM_GET_LAPIC: the in-kernel local APIC's register page (IRR, ISR, TPR, ...).
  absl::StatusOr<kvm_lapic_state> GetLapic() const;
  absl::Status SetMpState(uint32_t state);
  // KVM_GET_TSC_KHZ: the guest TSC frequency, or a negative value when unknown.
  long TscKhz() const;

 private:
  Vcpu(int id, UniqueFd fd, kvm_run* run, size_t run_size)
      : id_(id), fd_(std::move(fd)), run_(run), run_size_(run_size) {}
  int id_;
  UniqueFd fd_;
  kvm_run* run_;
  size_t run_size_;
};

}  // namespace activemm

#endif  // ACTIVEMM_VMM_KVM_VCPU_H_
