// Corrections to <linux/kvm.h> for C++. The 6.1 uapi headers (Debian 12) declare flexible
// array members with __DECLARE_FLEX_ARRAY, which in C++ adds a 1-byte empty struct, so
// sizeof(kvm_cpuid2) is 12 instead of 8 and every ioctl number derived from it is wrong
// (KVM answers EINVAL). Linux fixed the macro later ("uapi: stddef.h: Fix
// __DECLARE_FLEX_ARRAY for C++"); until every supported distribution has that, activemm
// spells out the C layout of the variable-length structs it uses.
#ifndef ACTIVEMM_VMM_KVM_KVM_UAPI_H_
#define ACTIVEMM_VMM_KVM_KVM_UAPI_H_

#include <linux/kvm.h>
#include <stdint.h>
#include <sys/ioctl.h>

namespace activemm {

// struct kvm_cpuid2 without its flexible array; the entries follow at offset 8.
struct KvmCpuid2Header {
  uint32_t nent;
  uint32_t padding;
};
static_assert(sizeof(KvmCpuid2Header) == 8);

inline constexpr unsigned long kKvmGetSupportedCpuid = _IOWR(KVMIO, 0x05, KvmCpuid2Header);
inline constexpr unsigned long kKvmSetCpuid2 = _IOW(KVMIO, 0x90, KvmCpuid2Header);

}  // namespace activemm

#endif  // ACTIVEMM_VMM_KVM_KVM_UAPI_H_
