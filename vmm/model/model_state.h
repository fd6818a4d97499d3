// A snapshot of the guest's mm model, read through the shared ABI from a quiet guest. Nothing
// read is trusted: every index is range-checked and every guest address goes through
// GuestMemory; what does not make sense becomes a problem in the snapshot, not a crash.
#ifndef ACTIVEMM_VMM_MODEL_MODEL_STATE_H_
#define ACTIVEMM_VMM_MODEL_MODEL_STATE_H_

#include <stdint.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "shared/mm_abi.h"
#include "vmm/kvm/guest_memory.h"

namespace activemm {

struct MmView {
  abi::SlotState state = abi::SlotState::kUnused;
  uint64_t pa = 0;
  bool readable = false;  // live, inside RAM and with the mm magic
  uint32_t mm_index = 0;  // when readable: its mm_struct in ModelSnapshot::mm_structs
};

struct ModelSnapshot {
  std::vector<MmView> mms;  // by slot, [0, num_mms)
  // The live mms' mm_structs (2 KiB each), apart: a long run has thousands of freed slots, and
  // a snapshot is taken after every step with --verify=every-step.
  std::vector<abi::MmStruct> mm_structs;
  std::vector<abi::TaskStruct> tasks;  // by index, [0, num_tasks)
  std::vector<abi::CpuMmState> cpus;   // by CPU
  std::vector<std::string> problems;   // structural problems found while reading

  bool Live(int32_t slot) const {
    return slot >= 0 && slot < static_cast<int32_t>(mms.size()) &&
           mms[slot].state == abi::SlotState::kLive && mms[slot].readable;
  }
  // The mm_struct of a readable slot; all zero for any other.
  const abi::MmStruct& Mm(int32_t slot) const {
    static const abi::MmStruct kNone{};
    return Live(slot) ? mm_structs[mms[slot].mm_index] : kNone;
  }
  bool Freed(int32_t slot) const {
    return slot >= 0 && slot < static_cast<int32_t>(mms.size()) &&
           mms[slot].state == abi::SlotState::kFreed;
  }
};

// Reads `num_mms` mm slots, `num_tasks` tasks and `cpus` per-CPU states. An error only when the
// directory itself cannot be read.
absl::StatusOr<ModelSnapshot> ReadModel(const GuestMemory& mem, int cpus, int num_tasks,
                                        int num_mms);

// Sums of the per-CPU counters.
abi::MmCounters TotalCounters(const ModelSnapshot& s);
uint64_t CounterValue(const abi::MmCounters& c, int index);  // by MmCounterNames() index

}  // namespace activemm

#endif  // ACTIVEMM_VMM_MODEL_MODEL_STATE_H_
