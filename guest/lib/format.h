// A small printf for the guest log: %d %u %x %s %c %p %% with the l, ll and z modifiers.
// Each formatted character costs ring-0 instructions (~1 us each where ring 0 is emulated,
// kvm_pvm): the guest logs sparingly.
#ifndef ACTIVEMM_GUEST_LIB_FORMAT_H_
#define ACTIVEMM_GUEST_LIB_FORMAT_H_

#include <stdarg.h>
#include <stddef.h>

namespace activemm::guest {

// Writes at most cap - 1 characters and a NUL; returns the number written (without the NUL).
size_t VFormat(char* buf, size_t cap, const char* fmt, va_list ap);
[[gnu::format(printf, 3, 4)]] size_t Format(char* buf, size_t cap, const char* fmt, ...);

// Copies a NUL-terminated string, truncating to cap - 1 characters.
void CopyString(char* dst, size_t cap, const char* src);

}  // namespace activemm::guest

#endif  // ACTIVEMM_GUEST_LIB_FORMAT_H_
