// The input format of guest_memory_fuzz, shared with the seed writer (guest_memory_seeds.cc).
//
//   GuestMemoryFuzzParams, zero-extended when the input is shorter
//   then records up to the end: uint32 gpa, uint16 len, len bytes copied to guest physical
//   gpa % (the RAM size) (cut at the end of RAM and of the input)
//
// Guest RAM is at most 2 MiB (ram_shrink): every structure the host reads at a fixed place
// (BootParams, GuestInfo, MmDirectory, the step-loop records, the mailboxes, the program and its
// step records) is below the image at 0x200000; the rest is wherever the guest's pointers say.
#ifndef ACTIVEMM_TESTS_FUZZ_GUEST_MEMORY_INPUT_H_
#define ACTIVEMM_TESTS_FUZZ_GUEST_MEMORY_INPUT_H_

#include <stdint.h>

namespace activemm::fuzz {

inline constexpr uint64_t kGuestMemoryFuzzRam = 2ull << 20;

struct GuestMemoryFuzzParams {
  uint8_t cpus;         // 1 + cpus % 64 vCPUs
  uint8_t lazy;         // abi::LazyMode 1 + lazy % 3
  uint8_t pcid;         // abi::PcidMode pcid % 3
  uint8_t checkpoints;  // self-test checkpoint ids, 2 bits each (0 = stop), in order
  uint16_t num_tasks;   // ReadModel's counts: v % 64, or v & 0x7fff when bit 15 is set (it
  uint16_t num_mms;     // refuses more than the guest has)
  uint32_t ram_shrink;  // guest RAM: kGuestMemoryFuzzRam - 8 * (ram_shrink % (that / 8)) bytes
  uint32_t tsc_khz;     // the report's TSC rate for the timeline (0: unknown)
  uint64_t present;     // bit n: vCPU n's registers are known (KVM_GET_SREGS worked)
  uint64_t cr3[4];      // vCPU n's real CR3 is cr3[n % 4]
};
static_assert(sizeof(GuestMemoryFuzzParams) == 56);

struct GuestMemoryFuzzRecord {
  uint32_t gpa;
  uint16_t len;
} __attribute__((packed));
static_assert(sizeof(GuestMemoryFuzzRecord) == 6);

}  // namespace activemm::fuzz

#endif  // ACTIVEMM_TESTS_FUZZ_GUEST_MEMORY_INPUT_H_
