// The guest side of the hypercall protocol (shared/abi.h): arguments go into this CPU's
// mailbox, then one OUT of the call number to the hypercall port exits to the host.
#ifndef ACTIVEMM_GUEST_ARCH_HYPERCALL_H_
#define ACTIVEMM_GUEST_ARCH_HYPERCALL_H_

#include <stdint.h>

#include "shared/abi.h"

namespace activemm::guest {

void Hypercall(abi::Hypercall nr);
// Sets `bytes` bytes at physical `pa` to `value`: by the host where BootParams says so
// (abi::kBootFillByHost: ring 0 is emulated), else with memset. bytes <= abi::kMaxFillBytes.
// Never for a page that is or may become a page table (shared/abi.h says why).
void FillPhys(uint64_t pa, uint8_t value, uint64_t bytes);

// One log line to the host (shown with --verbose and kept in the run's report).
[[gnu::format(printf, 1, 2)]] void Log(const char* fmt, ...);

// Waits until every running CPU has reached checkpoint `id` and the host has inspected the
// quiet guest.
void Checkpoint(uint64_t id);

// Reports a failed invariant and stops this CPU for good; the host fails the run.
[[noreturn]] void Panic(const char* file, int line, const char* message, int num_values = 0,
                        uint64_t v0 = 0, uint64_t v1 = 0, uint64_t v2 = 0, uint64_t v3 = 0);

// This CPU is finished (status 0 = success). The host never resumes it.
[[noreturn]] void Done(uint64_t status);

}  // namespace activemm::guest

// GUEST_CHECK(cond) / GUEST_CHECK_VALUES(cond, n, v0...): the guest has no exceptions and no
// Status; a broken invariant is reported with file, line, the expression and up to four values.
#define GUEST_CHECK(cond)                                                   \
  do {                                                                      \
    if (__builtin_expect(!(cond), 0))                                       \
      ::activemm::guest::Panic(__FILE__, __LINE__, "check failed: " #cond); \
  } while (0)
#define GUEST_CHECK_VALUES(cond, n, ...)                                                    \
  do {                                                                                      \
    if (__builtin_expect(!(cond), 0))                                                       \
      ::activemm::guest::Panic(__FILE__, __LINE__, "check failed: " #cond, n, __VA_ARGS__); \
  } while (0)

#endif  // ACTIVEMM_GUEST_ARCH_HYPERCALL_H_
