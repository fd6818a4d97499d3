// Guest RAM as the host sees it. Guest memory is untrusted: every access goes through this
// class, which checks the guest physical range (overflow-safe) and returns a Status instead of
// touching host memory outside the mapping.
#ifndef ACTIVEMM_VMM_KVM_GUEST_MEMORY_H_
#define ACTIVEMM_VMM_KVM_GUEST_MEMORY_H_

#include <stddef.h>
#include <stdint.h>

#include <cstring>
#include <memory>
#include <string>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace activemm {

class GuestMemory {
 public:
  // Maps `bytes` of zeroed anonymous memory (reserved lazily) to back guest physical 0..bytes.
  static absl::StatusOr<std::unique_ptr<GuestMemory>> Create(uint64_t bytes);
  // Wraps memory the caller owns (tests).
  static std::unique_ptr<GuestMemory> WrapForTesting(uint8_t* base, uint64_t bytes);
  ~GuestMemory();
  GuestMemory(const GuestMemory&) = delete;
  GuestMemory& operator=(const GuestMemory&) = delete;

  uint64_t size() const { return size_; }
  // For KVM_SET_USER_MEMORY_REGION only; everything else uses the checked accessors.
  uint8_t* host_base() const { return base_; }

  bool Contains(uint64_t gpa, uint64_t len) const { return gpa <= size_ && len <= size_ - gpa; }

  absl::Status ReadBytes(uint64_t gpa, void* out, uint64_t len) const;
  absl::Status WriteBytes(uint64_t gpa, const void* in, uint64_t len);
  // Sets [gpa, gpa + len) to `value`; OutOfRange outside guest RAM.
  absl::Status Fill(uint64_t gpa, uint8_t value, uint64_t len);

  template <typename T>
  absl::StatusOr<T> Read(uint64_t gpa) const {
    static_assert(std::is_trivially_copyable_v<T>);
    T value;
    absl::Status s = ReadBytes(gpa, &value, sizeof(T));
    if (!s.ok()) return s;
    return value;
  }
  template <typename T>
  absl::Status Write(uint64_t gpa, const T& value) {
    static_assert(std::is_trivially_copyable_v<T>);
    return WriteBytes(gpa, &value, sizeof(T));
  }

  // A guest character array of `capacity` bytes as a string: up to the first NUL, never past
  // the array, with unprintable bytes shown as '?'.
  static std::string BoundedString(const char* chars, size_t capacity);

  // A pointer to the 512 entries of a page-table page, or nullptr when pa is not a page-aligned
  // page inside guest RAM: the Mem interface of shared/page_table.h.
  uint64_t* Table(uint64_t pa);
  uint64_t AllocTable() { return 0; }  // the host never grows guest page tables this way

 private:
  GuestMemory(uint8_t* base, uint64_t size, bool owned) : base_(base), size_(size), owned_(owned) {}
  uint8_t* base_;
  uint64_t size_;
  bool owned_;
};

}  // namespace activemm

#endif  // ACTIVEMM_VMM_KVM_GUEST_MEMORY_H_
