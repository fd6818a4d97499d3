// Human-readable reports of guest state: exceptions, panics and where a vCPU was.
#ifndef ACTIVEMM_VMM_KVM_GUEST_REPORT_H_
#define ACTIVEMM_VMM_KVM_GUEST_REPORT_H_

#include <linux/kvm.h>
#include <stdint.h>

#include <string>

#include "shared/abi.h"
#include "vmm/kvm/guest_image.h"

namespace activemm {

// "#PF (page fault)" for an exception vector, "vector 0x40" otherwise.
std::string VectorName(uint64_t vector);

// "0xffffffff80201234 <symbol+0x12>", or the bare address when no symbol covers it. Addresses
// in the user text window are named through the text's kernel alias.
std::string DescribeRip(const GuestImage& image, uint64_t rip);

// A page-table entry's permissions for messages: "W" writable, "U" user, "NX"/"X" execution;
// a leading "-" for an entry that is not present ("-WUNX").
std::string DescribePtePerms(uint64_t pte_bits);

// The report of an unexpected guest exception.
std::string FormatFault(int cpu, const abi::FaultReport& f, const GuestImage& image);

// The report of a guest panic (GUEST_CHECK); bounded however the guest filled it.
std::string FormatPanic(int cpu, const abi::PanicReport& p);

// One line: where a stopped vCPU was (RIP, RSP, CR3, interrupt flag, halted or not).
// The interrupts a local APIC holds, from its register page (KVM_GET_LAPIC): "APIC: pending
// 0xf1; in service none; TPR 0". A vCPU halted with interrupts on and a deliverable vector
// pending (its class above the highest in service and TPR's) is one the hypervisor failed to
// wake; one with nothing pending was never sent its wake-up.
std::string DescribeLapic(const kvm_lapic_state& lapic);

std::string FormatVcpuPosition(const kvm_regs& regs, const kvm_sregs& sregs, bool halted,
                               const GuestImage& image);

}  // namespace activemm

#endif  // ACTIVEMM_VMM_KVM_GUEST_REPORT_H_
