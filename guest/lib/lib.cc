// The few C library functions the compiler may call on its own in freestanding code.
#include <stddef.h>
#include <stdint.h>

extern "C" {

void* memset(void* dst, int c, size_t n) {
  void* d = dst;
  // One REP STOS: a single instruction instead of a loop of them. Where ring 0 is emulated,
  // KVM emulates a REP string instruction element by element, so 8-byte elements cost an
  // eighth of byte elements: whole pages (zeroing, poisoning) use STOSQ.
  if (((reinterpret_cast<uintptr_t>(dst) | n) & 7) == 0) {
    size_t words = n / 8;
    uint64_t v = 0x0101010101010101ull * static_cast<uint8_t>(c);
    asm volatile("rep stosq" : "+D"(d), "+c"(words) : "a"(v) : "memory");
  } else {
    asm volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
  }
  return dst;
}

void* memcpy(void* dst, const void* src, size_t n) {
  void* d = dst;
  if (((reinterpret_cast<uintptr_t>(dst) | reinterpret_cast<uintptr_t>(src) | n) & 7) == 0) {
    size_t words = n / 8;
    asm volatile("rep movsq" : "+D"(d), "+S"(src), "+c"(words) : : "memory");
  } else {
    asm volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
  }
  return dst;
}

void* memmove(void* dst, const void* src, size_t n) {
  auto* d = static_cast<uint8_t*>(dst);
  const auto* s = static_cast<const uint8_t*>(src);
  if (d <= s || d >= s + n) return memcpy(dst, src, n);
  while (n-- > 0) d[n] = s[n];
  return dst;
}

int memcmp(const void* a, const void* b, size_t n) {
  const auto* x = static_cast<const uint8_t*>(a);
  const auto* y = static_cast<const uint8_t*>(b);
  for (size_t i = 0; i < n; ++i) {
    if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
  }
  return 0;
}

}  // extern "C"
