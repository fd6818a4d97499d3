#include "vmm/kvm/guest_image.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

extern "C" const uint8_t activemm_guest_bin_start[], activemm_guest_bin_end[];
extern "C" const char activemm_guest_syms_start[], activemm_guest_syms_end[];

namespace activemm {

absl::StatusOr<GuestImage> GuestImage::Embedded() {
  return Parse(absl::MakeConstSpan(activemm_guest_bin_start, activemm_guest_bin_end),
               absl::string_view(activemm_guest_syms_start,
                                 activemm_guest_syms_end - activemm_guest_syms_start));
}

absl::StatusOr<GuestImage> GuestImage::Parse(absl::Span<const uint8_t> bytes,
                                             absl::string_view symbols) {
  GuestImage img;
  if (bytes.size() < sizeof(abi::GuestImageHeader)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("guest image is %d bytes, smaller than its header", bytes.size()));
  }
  std::memcpy(&img.header_, bytes.data(), sizeof img.header_);
  const abi::GuestImageHeader& h = img.header_;
  if (h.magic != abi::kImageMagic) {
    return absl::InvalidArgumentError("guest image has no activemm header (bad magic)");
  }
  if (h.abi_version != abi::kAbiVersion) {
    return absl::FailedPreconditionError(
        absl::StrFormat("guest image was built for ABI version %d, this host speaks %d",
                        h.abi_version, abi::kAbiVersion));
  }
  if (h.header_size != sizeof(abi::GuestImageHeader) || h.load_pa != abi::kImageLoadPa ||
      h.link_va != abi::kKernelTextBase + abi::kImageLoadPa) {
    return absl::InvalidArgumentError(
        absl::StrFormat("guest image header does not match the ABI (size %d, load %#x, link %#x)",
                        h.header_size, h.load_pa, h.link_va));
  }
  if (h.end_va < h.link_va + bytes.size() || h.entry_va < h.link_va ||
      h.entry_va >= h.link_va + bytes.size()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("guest image header is inconsistent (entry %#x, end %#x, %d bytes)",
                        h.entry_va, h.end_va, bytes.size()));
  }
  img.bytes_ = bytes;
  for (absl::string_view line : absl::StrSplit(symbols, '\n', absl::SkipEmpty())) {
    // "ffffffff80200030 T _start", with `nm -l` then a tab and "guest/arch/entry.S:22".
    std::pair<absl::string_view, absl::string_view> at = absl::StrSplit(line, '\t');
    std::vector<absl::string_view> f = absl::StrSplit(at.first, absl::MaxSplits(' ', 2));
    uint64_t va;
    if (f.size() != 3 || !absl::SimpleHexAtoi(f[0], &va)) continue;
    if (f[2] == "__user_text_start") img.user_text_start_ = va;
    if (f[2] == "__user_text_end") img.user_text_end_ = va;
    if (f[1] != "T" && f[1] != "t" && f[1] != "W" && f[1] != "w") continue;  // code only
    absl::string_view file = at.second.substr(0, at.second.rfind(':'));
    file = file.substr(file.rfind('/') + 1);  // npos + 1 == 0: no folder
    img.symbols_.push_back({va, std::string(f[2]), std::string(file)});
  }
  // Linker-script markers ("__user_text_start") share addresses with functions; order them
  // first among equals so that Symbolize, which takes the last candidate, names the function.
  auto key = [](const Symbol& s) { return std::make_pair(s.va, !absl::StartsWith(s.name, "__")); };
  std::sort(img.symbols_.begin(), img.symbols_.end(),
            [&](const Symbol& a, const Symbol& b) { return key(a) < key(b); });
  return img;
}

const GuestImage::Symbol* GuestImage::SymbolAt(uint64_t va) const {
  auto it = std::upper_bound(symbols_.begin(), symbols_.end(), va,
                             [](uint64_t v, const Symbol& s) { return v < s.va; });
  if (it == symbols_.begin() || va >= header_.end_va) return nullptr;
  return &*--it;
}

std::string GuestImage::Symbolize(uint64_t va) const {
  const Symbol* s = SymbolAt(va);
  return s == nullptr ? "" : absl::StrFormat("%s+%#x", s->name, va - s->va);
}

uint64_t GuestImage::UserTextAlias(uint64_t user_va) const {
  if (user_va < abi::kUserTextVa) return 0;
  uint64_t offset = user_va - abi::kUserTextVa;
  if (offset >= user_text_end_ - user_text_start_) return 0;
  return user_text_start_ + offset;
}

}  // namespace activemm
