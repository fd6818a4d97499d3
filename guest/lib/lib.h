// Declarations of the C library functions guest/lib/lib.cc provides (there is no libc).
#ifndef ACTIVEMM_GUEST_LIB_LIB_H_
#define ACTIVEMM_GUEST_LIB_LIB_H_

#include <stddef.h>

extern "C" {
void* memset(void* dst, int c, size_t n);
void* memcpy(void* dst, const void* src, size_t n);
void* memmove(void* dst, const void* src, size_t n);
int memcmp(const void* a, const void* b, size_t n);
}

#endif  // ACTIVEMM_GUEST_LIB_LIB_H_
