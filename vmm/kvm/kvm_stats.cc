#include "vmm/kvm/kvm_stats.h"

#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"

namespace activemm {
namespace {

// Bounds on what the file may claim: KVM has a few dozen statistics with names of at most a
// few dozen bytes (KVM_STATS_NAME_SIZE is 48); anything far beyond is a corrupt file.
constexpr uint32_t kMaxDescriptors = 65536;
constexpr uint32_t kMaxNameSize = 4096;
constexpr uint64_t kMaxValueBytes = 1 << 20;

absl::Status ReadAt(int fd, void* buf, size_t n, uint64_t offset, const char* what) {
  const ssize_t got = pread(fd, buf, n, static_cast<off_t>(offset));
  if (got < 0) {
    return absl::InternalError(
        absl::StrFormat("reading KVM statistics (%s): %s", what, std::strerror(errno)));
  }
  if (static_cast<size_t>(got) != n) {
    return absl::DataLossError(absl::StrFormat(
        "reading KVM statistics (%s): %d of %d bytes at offset %d", what, got, n, offset));
  }
  return absl::OkStatus();
}

// A counter that only grows (KVM_STATS_TYPE_CUMULATIVE), one value: what a delta means.
bool IsCumulativeScalar(const KvmStats::Stat& s) {
  return (s.flags & KVM_STATS_TYPE_MASK) == KVM_STATS_TYPE_CUMULATIVE && s.size == 1;
}

}  // namespace

absl::StatusOr<std::unique_ptr<KvmStats>> KvmStats::Open(const Kvm& kvm, int owner_fd) {
  if (kvm.CheckExtension(KVM_CAP_BINARY_STATS_FD) <= 0) {
    return absl::UnimplementedError(
        "this KVM has no binary statistics (KVM_CAP_BINARY_STATS_FD, Linux 5.14 or later)");
  }
  return Open(owner_fd);
}

absl::StatusOr<std::unique_ptr<KvmStats>> KvmStats::Open(int owner_fd) {
  const int fd = ioctl(owner_fd, KVM_GET_STATS_FD, nullptr);
  if (fd < 0 && (errno == ENOTTY || errno == EINVAL)) {
    return absl::UnimplementedError(
        "this KVM has no binary statistics (KVM_GET_STATS_FD, Linux 5.14 or later)");
  }
  if (fd < 0) {
    return absl::InternalError(
        absl::StrFormat("KVM_GET_STATS_FD failed: %s", std::strerror(errno)));
  }
  return FromFd(UniqueFd(fd));
}

absl::StatusOr<std::unique_ptr<KvmStats>> KvmStats::FromFd(UniqueFd fd) {
  auto stats = std::unique_ptr<KvmStats>(new KvmStats(std::move(fd)));
  const int f = stats->fd_.get();
  kvm_stats_header h;  // fixed-size: its C and C++ layouts agree
  if (absl::Status s = ReadAt(f, &h, sizeof h, 0, "header"); !s.ok()) return s;
  if (h.num_desc > kMaxDescriptors || h.name_size == 0 || h.name_size > kMaxNameSize) {
    return absl::DataLossError(absl::StrFormat(
        "KVM statistics header claims %d descriptors with %d-byte names", h.num_desc, h.name_size));
  }
  const size_t desc_bytes = sizeof(KvmStatsDescHeader) + h.name_size;
  std::vector<uint8_t> descs(desc_bytes * h.num_desc);
  if (absl::Status s = ReadAt(f, descs.data(), descs.size(), h.desc_offset, "descriptors");
      !s.ok()) {
    return s;
  }
  stats->stats_.reserve(h.num_desc);
  for (uint32_t i = 0; i < h.num_desc; ++i) {
    const uint8_t* p = descs.data() + i * desc_bytes;
    KvmStatsDescHeader d;
    std::memcpy(&d, p, sizeof d);
    const char* name = reinterpret_cast<const char*>(p + sizeof d);
    Stat st;
    st.name.assign(name, strnlen(name, h.name_size));
    st.flags = d.flags;
    st.size = d.size;
    st.offset = uint64_t{h.data_offset} + d.offset;
    stats->stats_.push_back(std::move(st));
  }
  return stats;
}

absl::StatusOr<KvmStats::Stat> KvmStats::Find(std::string_view name) const {
  for (const Stat& s : stats_) {
    if (s.name == name) return s;
  }
  return absl::NotFoundError(absl::StrFormat("KVM has no statistic named %s", name));
}

absl::StatusOr<uint64_t> KvmStats::Read(const Stat& stat) const {
  if (stat.size == 0) {
    return absl::DataLossError(absl::StrFormat("KVM statistic %s has no value", stat.name));
  }
  uint64_t v;
  if (absl::Status s = ReadAt(fd_.get(), &v, sizeof v, stat.offset, stat.name.c_str()); !s.ok()) {
    return s;
  }
  return v;
}

absl::StatusOr<std::vector<std::pair<std::string, uint64_t>>> KvmStats::ReadCumulative() const {
  uint64_t lo = UINT64_MAX, hi = 0;
  for (const Stat& s : stats_) {
    if (!IsCumulativeScalar(s)) continue;
    lo = std::min(lo, s.offset);
    hi = std::max(hi, s.offset + sizeof(uint64_t));
  }
  std::vector<std::pair<std::string, uint64_t>> out;
  if (lo >= hi) return out;
  // The descriptors came from the file and are not trusted: the span is bounded like them.
  if (hi - lo > kMaxValueBytes) {
    return absl::DataLossError(absl::StrFormat("KVM statistics values span %d bytes", hi - lo));
  }
  std::vector<uint8_t> values(hi - lo);
  if (absl::Status s = ReadAt(fd_.get(), values.data(), values.size(), lo, "values"); !s.ok()) {
    return s;
  }
  for (const Stat& s : stats_) {
    if (!IsCumulativeScalar(s)) continue;
    uint64_t v;
    std::memcpy(&v, values.data() + (s.offset - lo), sizeof v);
    out.emplace_back(s.name, v);
  }
  return out;
}

}  // namespace activemm
