// Test hooks, not model bugs: a hostile guest (--inject=hostile-*, shared/mm_abi.h MmBug
// kHostile*). At the scenario's middle step the guest writes garbage into what the host reads
// (the model's indices and counts, its directory, a page table, the real CR3, a report string)
// or floods the host with hypercalls, then asks the host to verify. The host must end the run
// with a reported violation or guest failure, never crash, hang or allocate without bound
// (docs/architecture.md, "A hostile guest").
#ifndef ACTIVEMM_GUEST_PROGRAMS_HOSTILE_H_
#define ACTIVEMM_GUEST_PROGRAMS_HOSTILE_H_

#include <stdint.h>

#include "shared/mm_abi.h"

namespace activemm::guest {

// Runs the hostile case `bug` on this CPU, which is about to execute program step
// `step_index`; never returns. If the host lets the guest go on after the corruption (it did
// not notice it), the guest panics saying so, so a host that misses a case fails the test.
[[noreturn]] void hostile_guest(abi::MmBug bug, uint32_t step_index);

}  // namespace activemm::guest

#endif  // ACTIVEMM_GUEST_PROGRAMS_HOSTILE_H_
