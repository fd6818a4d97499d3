#include "vmm/model/program_stream.h"

#include <algorithm>
#include <atomic>
#include <cstddef>

#include "absl/strings/str_format.h"

namespace activemm {
namespace {

// Calls fn(first_step, slot, count) for the runs of steps [from, to) that are contiguous in
// the window (a range crosses the window's end at most once: to - from <= kProgramWindow).
template <typename Fn>
absl::Status ForEachRun(uint32_t from, uint32_t to, Fn fn) {
  while (from < to) {
    const uint32_t slot = abi::ProgramSlot(from);
    const uint32_t count = std::min(to - from, abi::kProgramWindow - slot);
    if (absl::Status s = fn(from, slot, count); !s.ok()) return s;
    from += count;
  }
  return absl::OkStatus();
}

}  // namespace

ProgramStream::ProgramStream(const std::vector<abi::Step>& program, GuestMemory& mem)
    : program_(program), mem_(mem) {}

absl::Status ProgramStream::Start(const abi::ScenarioHeader& config) {
  if (program_.empty() || program_.size() > abi::kMaxProgramSteps) {
    return absl::InvalidArgumentError(absl::StrFormat("a program of %d steps (at most %d run)",
                                                      program_.size(), abi::kMaxProgramSteps));
  }
  std::lock_guard<std::mutex> l(mu_);
  records_.assign(program_.size(), abi::StepRecord{});
  const uint32_t n = static_cast<uint32_t>(program_.size());
  const uint32_t first = std::min(n, abi::kProgramWindow);
  if (absl::Status s = LoadLocked(0, first); !s.ok()) return s;
  abi::ScenarioHeader h = config;
  h.num_steps = n;
  h.steps_loaded = first;
  loaded_ = first;
  return mem_.Write(abi::kScenarioPa, h);
}

absl::Status ProgramStream::Refill(uint64_t done) {
  std::lock_guard<std::mutex> l(mu_);
  ++refills_;
  // Records before drained_ were copied at an earlier refill; a step the window never held
  // cannot be finished.
  if (done < drained_ || done > loaded_) {
    return absl::DataLossError(absl::StrFormat(
        "the guest asked for more of the program after %d steps, but %d were loaded and %d "
        "finished before",
        done, loaded_, drained_));
  }
  const uint32_t d = static_cast<uint32_t>(done);
  if (absl::Status s = DrainLocked(drained_, d); !s.ok()) return s;
  drained_ = d;
  const uint32_t n = static_cast<uint32_t>(program_.size());
  // Slots of steps before `done` are free: the window may run up to done + kProgramWindow.
  const uint32_t to = static_cast<uint32_t>(std::min<uint64_t>(n, done + abi::kProgramWindow));
  if (to <= loaded_) return absl::OkStatus();
  if (absl::Status s = LoadLocked(loaded_, to); !s.ok()) return s;
  loaded_ = to;
  // The steps before the count that publishes them: x86 keeps stores in order, the fence keeps
  // the compiler from moving the count's store up (a guest CPU that read the new count would
  // otherwise execute the slot's old step).
  std::atomic_thread_fence(std::memory_order_release);
  return mem_.Write(abi::kScenarioPa + offsetof(abi::ScenarioHeader, steps_loaded), to);
}

std::vector<abi::StepRecord> ProgramStream::TakeRecords() {
  std::lock_guard<std::mutex> l(mu_);
  // Steps from drained_ to loaded_ are still in the window: the finished ones, then the one a
  // failed run stopped in (its record as far as it got), then zeroes (never executed). Past
  // loaded_, nothing ran.
  if (DrainLocked(drained_, loaded_).ok()) drained_ = loaded_;
  return std::move(records_);
}

absl::Status ProgramStream::DrainLocked(uint32_t from, uint32_t to) {
  return ForEachRun(from, to, [&](uint32_t step, uint32_t slot, uint32_t count) {
    return mem_.ReadBytes(abi::kProgramRecordsPa + uint64_t{slot} * sizeof(abi::StepRecord),
                          &records_[step], uint64_t{count} * sizeof(abi::StepRecord));
  });
}

absl::Status ProgramStream::LoadLocked(uint32_t from, uint32_t to) {
  static const abi::StepRecord kZero[64] = {};
  return ForEachRun(from, to, [&](uint32_t step, uint32_t slot, uint32_t count) {
    if (absl::Status s = mem_.WriteBytes(abi::kProgramStepsPa + uint64_t{slot} * sizeof(abi::Step),
                                         &program_[step], uint64_t{count} * sizeof(abi::Step));
        !s.ok()) {
      return s;
    }
    // The slot's record held an older step's (copied out already): a step not executed yet
    // reads as all zero.
    for (uint32_t k = 0; k < count; k += 64) {
      const uint32_t c = std::min<uint32_t>(64, count - k);
      if (absl::Status s =
              mem_.WriteBytes(abi::kProgramRecordsPa + uint64_t{slot + k} * sizeof(abi::StepRecord),
                              kZero, uint64_t{c} * sizeof(abi::StepRecord));
          !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  });
}

}  // namespace activemm
