// KVM's binary statistics of a VM or vCPU (KVM_GET_STATS_FD, Documentation/virt/kvm/api.rst
// 4.133): a header, a descriptor per statistic, and the values, all read with pread from a file
// descriptor KVM hands out. Reading a value costs one pread and no exit of the vCPU.
#ifndef ACTIVEMM_VMM_KVM_KVM_STATS_H_
#define ACTIVEMM_VMM_KVM_KVM_STATS_H_

#include <stdint.h>

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "vmm/kvm/kvm.h"
#include "vmm/kvm/unique_fd.h"

namespace activemm {

// The C layout of struct kvm_stats_desc without its flexible `name` array: Debian 12's uapi
// headers declare it with __DECLARE_FLEX_ARRAY, which makes the struct larger in C++ (see
// vmm/kvm/kvm_uapi.h). The name follows at offset 16, name_size bytes.
struct KvmStatsDescHeader {
  uint32_t flags;  // KVM_STATS_TYPE_*, KVM_STATS_UNIT_*, KVM_STATS_BASE_*
  int16_t exponent;
  uint16_t size;    // number of u64 values (1 unless a histogram)
  uint32_t offset;  // of the first value, from the header's data_offset
  uint32_t bucket_size;
};
static_assert(sizeof(KvmStatsDescHeader) == 16);

class KvmStats {
 public:
  struct Stat {
    std::string name;
    uint32_t flags = 0;
    uint32_t size = 0;
    uint64_t offset = 0;  // of the first value in the stats file
  };

  // KVM_GET_STATS_FD on `owner_fd` (a VM or vCPU fd). kUnimplemented when this KVM has no
  // KVM_CAP_BINARY_STATS_FD (Linux before 5.14).
  static absl::StatusOr<std::unique_ptr<KvmStats>> Open(const Kvm& kvm, int owner_fd);
  // The same without a Kvm at hand: kUnimplemented when the ioctl is unknown (ENOTTY, EINVAL).
  static absl::StatusOr<std::unique_ptr<KvmStats>> Open(int owner_fd);
  // Parses a stats file already open (what Open gets from KVM).
  static absl::StatusOr<std::unique_ptr<KvmStats>> FromFd(UniqueFd fd);

  const std::vector<Stat>& stats() const { return stats_; }
  // The statistic called `name`; kNotFound when this KVM has none by that name.
  absl::StatusOr<Stat> Find(std::string_view name) const;
  // Its current (first) value.
  absl::StatusOr<uint64_t> Read(const Stat& stat) const;
  // Every cumulative single-valued statistic (exits, io_exits, halt_exits, insn_emulation, ...)
  // at once, in descriptor order, with one pread of the values.
  absl::StatusOr<std::vector<std::pair<std::string, uint64_t>>> ReadCumulative() const;

 private:
  explicit KvmStats(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
  std::vector<Stat> stats_;
};

}  // namespace activemm

#endif  // ACTIVEMM_VMM_KVM_KVM_STATS_H_
