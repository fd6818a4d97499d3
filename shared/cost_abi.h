// The cost benchmark (`activemm cost`, Program::kCost): what the host asks for, at the program
// header's place, and what the guest says at each kMark hypercall.
//
// The guest brackets every measured context switch with two marks. At each the host reads the
// vCPU's binary statistics, so the difference of insn_emulation between the marks counts the
// ring-0 instructions of the switch where ring 0 is emulated (kvm_pvm); the guest's TSC
// difference between the marks is the switch in cycles. Empty mark pairs (kCalibration) measure
// the markers themselves, which the host subtracts.
#ifndef ACTIVEMM_SHARED_COST_ABI_H_
#define ACTIVEMM_SHARED_COST_ABI_H_

#include <stddef.h>
#include <stdint.h>

#include "shared/mm_abi.h"

namespace activemm::abi {

// What is measured: the floor first, then the switches, in this order.
enum class CostCase : uint32_t {
  kCalibration = 0,       // an empty mark pair: the markers' own cost
  kUserToKernel = 1,      // user task -> kernel thread
  kKernelToUser = 2,      // that kernel thread -> the user task whose mm it borrowed
  kUserToUser = 3,        // user task -> user task of another process (another mm)
  kUserToUserSameMm = 4,  // user task -> another thread of its process
  kKernelToKernel = 5,    // kernel thread -> kernel thread
  // The floor, measured before the switches: kFloorOps operations in a loop between two marks,
  // minus the same loop doing nothing (kFloorEmpty), per operation.
  kFloorEmpty = 6,
  kBareCr3Write = 7,     // MOV to CR3 of the value loaded (a flushing reload without PCID)
  kBareStackSwitch = 8,  // __switch_to_asm to another stack and back: two stack switches
};
inline constexpr uint32_t kNumCostCases = 9;
inline constexpr uint32_t kFloorOps = 32;

enum class MarkKind : uint32_t {
  kBegin = 1,  // the measurement starts once the host resumes the vCPU
  kEnd = 2,    // it ended before this hypercall
};

// kMark's mailbox arguments:
//   arg[0] = MarkKind | CostCase << 8
//   arg[1] = iteration (0 .. iterations - 1)
//   arg[2] = kEnd: guest TSC cycles from the begin mark's return to the end mark
//   arg[3] = kEnd: CR3 writes the guest counted in between (MmCounters::cr3_writes)
constexpr uint64_t MarkArg0(MarkKind kind, CostCase c) {
  return static_cast<uint64_t>(kind) | (static_cast<uint64_t>(c) << 8);
}
constexpr uint32_t MarkArgKind(uint64_t arg0) { return static_cast<uint32_t>(arg0 & 0xff); }
constexpr uint32_t MarkArgCase(uint64_t arg0) { return static_cast<uint32_t>(arg0 >> 8); }

inline constexpr uint64_t kCostMagic = 0x54534f434d4d41ull;  // "AMMCOST"
inline constexpr uint32_t kMaxCostIterations = 100000;
// Unmeasured rounds before each case's first measured one: new tasks start through
// ret_from_fork, and a mm's first switch-in takes an ASID and joins mm_cpumask.
inline constexpr uint32_t kCostWarmupRounds = 3;

// Host -> guest, at kCostHeaderPa (where a scenario's header goes: the program area).
struct CostHeader {
  uint64_t magic;       // kCostMagic
  uint32_t lazy_mode;   // LazyMode
  uint32_t pcid_mode;   // PcidMode
  uint32_t num_asids;   // 1..kMaxAsids
  uint32_t iterations;  // measured switches per case, 1..kMaxCostIterations
};
static_assert(sizeof(CostHeader) == 24);
static_assert(offsetof(CostHeader, iterations) == 20);
inline constexpr uint64_t kCostHeaderPa = kScenarioPa;

}  // namespace activemm::abi

#endif  // ACTIVEMM_SHARED_COST_ABI_H_
