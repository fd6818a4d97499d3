// The host's side of the scenario program's window (shared/mm_abi.h kProgramWindow): it loads
// the steps into guest RAM ahead of the guest and copies each finished step's record out before
// the slot is reused, so a program of any length runs in the default guest RAM.
#ifndef ACTIVEMM_VMM_MODEL_PROGRAM_STREAM_H_
#define ACTIVEMM_VMM_MODEL_PROGRAM_STREAM_H_

#include <stdint.h>

#include <mutex>
#include <vector>

#include "absl/status/status.h"
#include "shared/mm_abi.h"
#include "vmm/kvm/guest_memory.h"

namespace activemm {

class ProgramStream {
 public:
  // `program` must outlive the stream; at most abi::kMaxProgramSteps steps.
  ProgramStream(const std::vector<abi::Step>& program, GuestMemory& mem);
  ProgramStream(const ProgramStream&) = delete;
  ProgramStream& operator=(const ProgramStream&) = delete;

  // Writes the header (`config` but its num_steps and steps_loaded, which the stream sets) and
  // the first window, before the guest starts.
  absl::Status Start(const abi::ScenarioHeader& config);

  // The guest's kRefill hypercall: every step before `done` is finished. Copies out their
  // records, loads the steps that fit in the slots they free, and publishes steps_loaded.
  // Any vCPU thread may call it, while the others run. A `done` the stream cannot have let the
  // guest reach is an error: the guest broke the protocol.
  absl::Status Refill(uint64_t done);

  // After the run, when no vCPU runs: every step's record, those never executed all zero.
  std::vector<abi::StepRecord> TakeRecords();

  uint64_t refills() const { return refills_; }

 private:
  // Copies the records of steps [from, to) (all in the window) out of guest RAM.
  absl::Status DrainLocked(uint32_t from, uint32_t to);
  // Writes steps [from, to) into their slots and zeroes their records.
  absl::Status LoadLocked(uint32_t from, uint32_t to);

  const std::vector<abi::Step>& program_;
  GuestMemory& mem_;
  std::mutex mu_;
  uint32_t loaded_ = 0;   // steps [0, loaded_) have been written to the window
  uint32_t drained_ = 0;  // records [0, drained_) copied into records_
  uint64_t refills_ = 0;
  std::vector<abi::StepRecord> records_;
};

}  // namespace activemm

#endif  // ACTIVEMM_VMM_MODEL_PROGRAM_STREAM_H_
