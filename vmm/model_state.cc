#include "vmm/model_state.h"

#include <cstring>

#include "absl/strings/str_format.h"

namespace activemm {

absl::StatusOr<ModelSnapshot> ReadModel(const GuestMemory& mem, int cpus, int num_tasks,
                                        int num_mms) {
  if (cpus < 0 || cpus > static_cast<int>(abi::kMaxCpus) || num_tasks < 0 ||
      num_tasks > static_cast<int>(abi::kMaxTasks) || num_mms < 0 ||
      num_mms > static_cast<int>(abi::kMaxMms)) {
    return absl::InvalidArgumentError("model bounds out of range");
  }
  absl::StatusOr<abi::MmDirectory> dir = mem.Read<abi::MmDirectory>(abi::kMmDirectoryPa);
  if (!dir.ok()) return dir.status();
  ModelSnapshot s;
  s.cpus.resize(cpus);
  s.tasks.resize(num_tasks);
  std::vector<abi::MmSlot> slots(num_mms);
  absl::Status st = mem.ReadBytes(dir->cpus_pa, s.cpus.data(), cpus * sizeof(abi::CpuMmState));
  if (st.ok()) {
    st = mem.ReadBytes(dir->tasks_pa, s.tasks.data(), num_tasks * sizeof(abi::TaskStruct));
  }
  if (st.ok()) st = mem.ReadBytes(dir->mm_slots_pa, slots.data(), num_mms * sizeof(abi::MmSlot));
  if (!st.ok()) {
    return absl::DataLossError(
        absl::StrFormat("the guest's model directory points outside RAM: %s", st.message()));
  }
  s.mms.resize(num_mms);
  for (int i = 0; i < num_mms; ++i) {
    MmView& v = s.mms[i];
    v.pa = slots[i].pa;
    switch (slots[i].state) {
      case static_cast<uint32_t>(abi::SlotState::kUnused):
        v.state = abi::SlotState::kUnused;
        break;
      case static_cast<uint32_t>(abi::SlotState::kLive):
        v.state = abi::SlotState::kLive;
        break;
      case static_cast<uint32_t>(abi::SlotState::kFreed):
        v.state = abi::SlotState::kFreed;
        break;
      default:
        s.problems.push_back(absl::StrFormat("mm slot %d has state %d", i, slots[i].state));
        continue;
    }
    if (v.state != abi::SlotState::kLive) continue;
    absl::StatusOr<abi::MmStruct> mm = mem.Read<abi::MmStruct>(v.pa);
    if (!mm.ok()) {
      s.problems.push_back(
          absl::StrFormat("mm slot %d: mm_struct at %#x: %s", i, v.pa, mm.status().message()));
      continue;
    }
    if (mm->magic != abi::kMmMagic) {
      s.problems.push_back(
          absl::StrFormat("mm slot %d: mm_struct at %#x has magic %#x", i, v.pa, mm->magic));
      continue;
    }
    if (mm->nr_pages > abi::kMaxUserPages) {
      s.problems.push_back(absl::StrFormat("mm slot %d: nr_pages %d exceeds %d", i, mm->nr_pages,
                                           abi::kMaxUserPages));
      mm->nr_pages = abi::kMaxUserPages;
    }
    v.mm = *mm;
    v.readable = true;
  }
  return s;
}

uint64_t CounterValue(const abi::MmCounters& c, int index) {
  uint64_t v[abi::kNumMmCounters];
  std::memcpy(v, &c, sizeof v);
  return index >= 0 && index < abi::kNumMmCounters ? v[index] : 0;
}

abi::MmCounters TotalCounters(const ModelSnapshot& s) {
  uint64_t total[abi::kNumMmCounters] = {};
  for (const abi::CpuMmState& c : s.cpus) {
    for (int i = 0; i < abi::kNumMmCounters; ++i) total[i] += CounterValue(c.counters, i);
  }
  abi::MmCounters out;
  std::memcpy(&out, total, sizeof out);
  return out;
}

}  // namespace activemm
