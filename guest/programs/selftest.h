// The SMP self-test program (activemm selftest): every CPU reports in, sends an IPI to the next
// CPU and receives one, then enters ring 3 on a page table of its own, touches user pages and
// traps back. The host checks the reports at each checkpoint (vmm/tools/selftest.cc).
#ifndef ACTIVEMM_GUEST_PROGRAMS_SELFTEST_H_
#define ACTIVEMM_GUEST_PROGRAMS_SELFTEST_H_

namespace activemm::guest {

[[noreturn]] void RunSelftest();

}  // namespace activemm::guest

#endif  // ACTIVEMM_GUEST_PROGRAMS_SELFTEST_H_
