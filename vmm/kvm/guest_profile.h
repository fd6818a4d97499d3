// Where a guest run's time goes, by sampling (`--profile=HZ`): the host interrupts every vCPU
// HZ times a second, reads where it was (ring 3, halted, a guest kernel function, or out of the
// guest in the host), and counts it in a bucket by the function's source file. On a host that
// emulates ring 0 an instruction at a time (kvm_pvm) time is instructions, so the buckets say
// which code the ring-0 instructions of a run belong to; on any host they say where the wall
// time went. A sample costs one exit of the vCPU; at 1 kHz that is a small fraction of a step.
#ifndef ACTIVEMM_VMM_KVM_GUEST_PROFILE_H_
#define ACTIVEMM_VMM_KVM_GUEST_PROFILE_H_

#include <linux/kvm.h>
#include <stdint.h>

#include <array>
#include <map>
#include <string>

#include "nlohmann/json.hpp"
#include "vmm/kvm/guest_image.h"

namespace activemm {

// What a sampled vCPU was doing. The guest's code is split by what it is for: the kernel being
// modeled (sched, tlb, mm, the page allocator: what a real kernel would run), the scenario
// program's step loop around it and its step records, interrupts and traps (kick IPIs, flush
// IPIs, the way back from ring 3), entering and leaving ring 3, ring 3 itself, halted waiting
// for the next step, and the host (the vCPU's thread outside KVM_RUN: a hypercall being
// handled, a verification, a pause for another CPU's verification).
enum class ProfileBucket {
  kModeledKernel,
  kStepLoop,
  kRecords,
  kInterrupts,
  kUserTrips,
  kUser,
  kHalted,
  kHost,
  kOther,  // boot, selftest, cost, formatting: nothing a scenario's steps run
};
inline constexpr int kNumProfileBuckets = static_cast<int>(ProfileBucket::kOther) + 1;
const char* ProfileBucketName(ProfileBucket b);  // "modeled kernel", "step loop", ...

// The bucket of guest kernel code: by the function's source file, with the few functions of a
// file that serve another purpose named (the step loop's records, kicks and halts).
ProfileBucket ClassifyGuestCode(const GuestImage::Symbol* fn);

struct GuestProfile {
  int hz = 0;            // 0: not profiled
  uint64_t samples = 0;  // every sample of every vCPU
  std::array<uint64_t, kNumProfileBuckets> buckets{};
  // Guest kernel functions by samples: "context_switch(int) (sched.cc)".
  std::map<std::string, uint64_t> functions;

  // A vCPU stopped in the guest: its registers decide the bucket.
  void AddGuest(const GuestImage& image, const kvm_regs& regs, const kvm_sregs& sregs);
  void AddHost(uint64_t n = 1);  // n samples of a vCPU thread outside KVM_RUN
  void Merge(const GuestProfile& other);
};

// "profile: 7412 samples at 1000 Hz per vCPU: modeled kernel 31.0%, ..." and the five
// functions sampled most; "" when not profiled.
std::string FormatProfile(const GuestProfile& p);
// {"hz", "samples", "buckets": {name: samples}, "functions": {name: samples}}.
nlohmann::json ProfileJson(const GuestProfile& p);

}  // namespace activemm

#endif  // ACTIVEMM_VMM_KVM_GUEST_PROFILE_H_
