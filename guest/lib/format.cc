#include "guest/lib/format.h"

#include <stdint.h>

namespace activemm::guest {
namespace {

class Out {
 public:
  Out(char* buf, size_t cap) : buf_(buf), cap_(cap) {}
  void Put(char c) {
    if (len_ + 1 < cap_) buf_[len_++] = c;
  }
  void PutString(const char* s) {
    while (*s) Put(*s++);
  }
  void PutUnsigned(uint64_t v, unsigned base) {
    char digits[24];
    int n = 0;
    do {
      unsigned d = static_cast<unsigned>(v % base);
      digits[n++] = static_cast<char>(d < 10 ? '0' + d : 'a' + d - 10);
      v /= base;
    } while (v != 0);
    while (n > 0) Put(digits[--n]);
  }
  size_t Finish() {
    if (cap_ > 0) buf_[len_] = '\0';
    return len_;
  }

 private:
  char* buf_;
  size_t cap_;
  size_t len_ = 0;
};

}  // namespace

size_t VFormat(char* buf, size_t cap, const char* fmt, va_list ap) {
  Out out(buf, cap);
  for (const char* p = fmt; *p; ++p) {
    if (*p != '%') {
      out.Put(*p);
      continue;
    }
    ++p;
    int longs = 0;
    while (*p == 'l' || *p == 'z') {
      ++longs;
      ++p;
    }
    switch (*p) {
      case 'd': {
        int64_t v = longs ? va_arg(ap, int64_t) : va_arg(ap, int);
        if (v < 0) {
          out.Put('-');
          out.PutUnsigned(0 - static_cast<uint64_t>(v), 10);
        } else {
          out.PutUnsigned(static_cast<uint64_t>(v), 10);
        }
        break;
      }
      case 'u':
        out.PutUnsigned(longs ? va_arg(ap, uint64_t) : va_arg(ap, unsigned), 10);
        break;
      case 'x':
        out.PutUnsigned(longs ? va_arg(ap, uint64_t) : va_arg(ap, unsigned), 16);
        break;
      case 'p':
        out.PutString("0x");
        out.PutUnsigned(reinterpret_cast<uint64_t>(va_arg(ap, void*)), 16);
        break;
      case 's': {
        const char* s = va_arg(ap, const char*);
        out.PutString(s ? s : "(null)");
        break;
      }
      case 'c':
        out.Put(static_cast<char>(va_arg(ap, int)));
        break;
      case '%':
        out.Put('%');
        break;
      case '\0':
        return out.Finish();
      default:
        out.Put('%');
        out.Put(*p);
    }
  }
  return out.Finish();
}

size_t Format(char* buf, size_t cap, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  size_t n = VFormat(buf, cap, fmt, ap);
  va_end(ap);
  return n;
}

void CopyString(char* dst, size_t cap, const char* src) {
  size_t i = 0;
  for (; src[i] && i + 1 < cap; ++i) dst[i] = src[i];
  if (cap > 0) dst[i] = '\0';
}

}  // namespace activemm::guest
