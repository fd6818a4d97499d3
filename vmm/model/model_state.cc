#include "vmm/model/model_state.h"

#include <cstring>

#include "absl/strings/str_format.h"
#include "vmm/model/scenario.h"

namespace activemm {
namespace {

// More events of one kind on one CPU than any run can have (2^48: over three days at a billion
// a second): a counter beyond it is garbage, and sums of such counters would overflow.
constexpr uint64_t kMaxPlausibleCount = uint64_t{1} << 48;

}  // namespace

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
  for (int c = 0; c < cpus; ++c) {
    for (int i = 0; i < abi::kNumMmCounters; ++i) {
      const uint64_t v = CounterValue(s.cpus[c].counters, i);
      if (v <= kMaxPlausibleCount) continue;
      s.problems.push_back(absl::StrFormat("CPU %d: counter %s is %#x, more than any run counts", c,
                                           MmCounterNames()[i], v));
      break;  // one per CPU: a garbage counter page would flood the report
    }
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
    v.mm_index = static_cast<uint32_t>(s.mm_structs.size());
    s.mm_structs.push_back(*mm);
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
    for (int i = 0; i < abi::kNumMmCounters; ++i) {
      // Saturating: counters come from the guest (ReadModel reports implausible ones).
      if (__builtin_add_overflow(total[i], CounterValue(c.counters, i), &total[i])) {
        total[i] = UINT64_MAX;
      }
    }
  }
  abi::MmCounters out;
  std::memcpy(&out, total, sizeof out);
  return out;
}

}  // namespace activemm
