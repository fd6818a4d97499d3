// The guest image embedded in the binary: its header (checked before anything is loaded) and
// its symbol table, used to name guest addresses in fault and watchdog reports.
#ifndef ACTIVEMM_VMM_KVM_GUEST_IMAGE_H_
#define ACTIVEMM_VMM_KVM_GUEST_IMAGE_H_

#include <stdint.h>

#include <string>
#include <vector>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "shared/abi.h"

namespace activemm {

class GuestImage {
 public:
  // The image linked into this binary.
  static absl::StatusOr<GuestImage> Embedded();
  // Checks a flat image and its `nm -n` symbol listing (tests feed broken ones).
  static absl::StatusOr<GuestImage> Parse(absl::Span<const uint8_t> bytes,
                                          absl::string_view symbols);

  const abi::GuestImageHeader& header() const { return header_; }
  absl::Span<const uint8_t> bytes() const { return bytes_; }
  // Physical end of the image including .bss.
  uint64_t end_pa() const { return header_.end_va - header_.link_va + header_.load_pa; }

  struct Symbol {
    uint64_t va;
    std::string name;
    std::string file;  // the source file's name ("sched.cc"), "" when the listing has none
  };
  // "symbol+0x12" for a guest virtual address, or "" when no symbol covers it.
  std::string Symbolize(uint64_t va) const;
  const std::vector<Symbol>& symbols() const { return symbols_; }  // ascending
  // The function a guest virtual address is in, or nullptr when no symbol covers it.
  const Symbol* SymbolAt(uint64_t va) const;
  // The kernel-half address of a user virtual address inside the user text window (the same
  // bytes, mapped at abi::kUserTextVa in user page tables), or 0 outside it.
  uint64_t UserTextAlias(uint64_t user_va) const;
  uint64_t user_text_size() const { return user_text_end_ - user_text_start_; }

 private:
  abi::GuestImageHeader header_{};
  absl::Span<const uint8_t> bytes_;
  std::vector<Symbol> symbols_;   // ascending
  uint64_t user_text_start_ = 0;  // __user_text_start / __user_text_end, when listed
  uint64_t user_text_end_ = 0;
};

}  // namespace activemm

#endif  // ACTIVEMM_VMM_KVM_GUEST_IMAGE_H_
