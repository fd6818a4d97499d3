#include "vmm/kvm/guest_memory.h"

#include <sys/mman.h>

#include <cerrno>

#include "absl/strings/str_format.h"
#include "shared/x86.h"

namespace activemm {

absl::StatusOr<std::unique_ptr<GuestMemory>> GuestMemory::Create(uint64_t bytes) {
  void* m = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) {
    return absl::ResourceExhaustedError(absl::StrFormat("cannot map %d MiB of guest memory: %s",
                                                        bytes >> 20, std::strerror(errno)));
  }
  return std::unique_ptr<GuestMemory>(new GuestMemory(static_cast<uint8_t*>(m), bytes, true));
}

std::unique_ptr<GuestMemory> GuestMemory::WrapForTesting(uint8_t* base, uint64_t bytes) {
  return std::unique_ptr<GuestMemory>(new GuestMemory(base, bytes, false));
}

GuestMemory::~GuestMemory() {
  if (owned_) munmap(base_, size_);
}

absl::Status GuestMemory::ReadBytes(uint64_t gpa, void* out, uint64_t len) const {
  if (!Contains(gpa, len)) {
    return absl::OutOfRangeError(absl::StrFormat(
        "guest physical range [%#x, +%#x) is outside guest RAM (%#x bytes)", gpa, len, size_));
  }
  // An empty read may come with a null buffer (ReadModel with 0 tasks reads into an empty
  // vector's data(), found by tests/fuzz/guest_memory_fuzz), which memcpy must never get.
  if (len != 0) std::memcpy(out, base_ + gpa, len);
  return absl::OkStatus();
}

absl::Status GuestMemory::WriteBytes(uint64_t gpa, const void* in, uint64_t len) {
  if (!Contains(gpa, len)) {
    return absl::OutOfRangeError(absl::StrFormat(
        "guest physical range [%#x, +%#x) is outside guest RAM (%#x bytes)", gpa, len, size_));
  }
  if (len != 0) std::memcpy(base_ + gpa, in, len);  // as in ReadBytes: never a null buffer
  return absl::OkStatus();
}

absl::Status GuestMemory::Fill(uint64_t gpa, uint8_t value, uint64_t len) {
  if (!Contains(gpa, len)) {
    return absl::OutOfRangeError(absl::StrFormat(
        "guest physical range [%#x, +%#x) is outside guest RAM (%#x bytes)", gpa, len, size_));
  }
  if (len != 0) std::memset(base_ + gpa, value, len);
  return absl::OkStatus();
}

std::string GuestMemory::BoundedString(const char* chars, size_t capacity) {
  std::string s;
  for (size_t i = 0; i < capacity && chars[i] != '\0'; ++i) {
    unsigned char c = static_cast<unsigned char>(chars[i]);
    s.push_back(c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '?');
  }
  return s;
}

uint64_t* GuestMemory::Table(uint64_t pa) {
  if (pa % x86::kPageSize != 0 || !Contains(pa, x86::kPageSize)) return nullptr;
  return reinterpret_cast<uint64_t*>(base_ + pa);
}

}  // namespace activemm
