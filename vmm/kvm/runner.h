// Runs a Vm: one host thread per vCPU, each a loop of KVM_RUN and a switch on the exit reason;
// the hypercall protocol (shared/abi.h); the checkpoint barrier at which the host inspects a
// quiet guest; and a watchdog that stops a guest that makes no progress. Every way a run can
// end is a RunResult, never a hang and never a crash of the host.
#ifndef ACTIVEMM_VMM_KVM_RUNNER_H_
#define ACTIVEMM_VMM_KVM_RUNNER_H_

#include <linux/kvm.h>
#include <stdint.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "vmm/kvm/guest_profile.h"
#include "vmm/kvm/vm.h"

namespace activemm {

enum class Outcome {
  kCompleted,       // every vCPU reported done with status 0
  kGuestException,  // an unexpected exception in the guest
  kGuestPanic,      // a failed GUEST_CHECK, or a CPU done with a nonzero status
  kVcpuError,       // triple fault, emulation failure, failed entry, unexpected I/O or MMIO
  kWatchdog,        // no progress within the timeout
  kCheckFailed,     // the host's checks at a checkpoint found a violation
  kHostError,       // a KVM ioctl failed
  kInterrupted,     // SIGINT, SIGTERM or SIGHUP (vmm/kvm/interrupt.h): stopped on request
};
const char* OutcomeName(Outcome o);

// What the host sees at a checkpoint: all vCPUs that are still running are stopped in the host.
struct CheckpointView {
  uint64_t id;
  GuestMemory& memory;
  // Per vCPU: its special registers as it entered the checkpoint (for its real CR3), or
  // nullopt-like `present[i] == false` for a vCPU that had already finished.
  const std::vector<kvm_sregs>& sregs;
  const std::vector<bool>& present;
};
using CheckpointHandler = std::function<absl::Status(const CheckpointView&)>;

// A verification point requested by one vCPU (the kVerify hypercall): the host has paused every
// other vCPU out of the guest, so all of guest memory is quiet and every CR3 is at hand.
struct VerifyView {
  uint64_t check;       // the guest's arg[0]
  uint64_t step_index;  // the guest's arg[1]
  int caller_cpu;
  GuestMemory& memory;
  const std::vector<kvm_sregs>& sregs;  // per vCPU
  const std::vector<bool>& present;     // false for a vCPU that has finished
};
using VerifyHandler = std::function<absl::Status(const VerifyView&)>;

// A measurement mark (the kMark hypercall, shared/cost_abi.h). The handler runs in the calling
// vCPU's thread while that vCPU is stopped at the hypercall, so what it reads of the vCPU (its
// statistics) is exactly as of the mark; it must be quick, the others keep running.
struct MarkView {
  int cpu;
  const uint64_t (&args)[4];  // the mailbox's arg[]
};
using MarkHandler = std::function<absl::Status(const MarkView&)>;

// The kRefill hypercall (the scenario program's window, vmm/model/program_stream.h): runs in the
// calling vCPU's thread, the others keep running; `arg0` is the guest's mailbox arg[0].
using RefillHandler = std::function<absl::Status(uint64_t arg0)>;

// Reads a counter the guest advances as it works (steps done), from guest memory and
// range-checked by the caller; its value only has to grow while the guest makes progress (only
// growth counts, and the caller bounds it, so a guest cannot fake progress for ever).
using ProgressProbe = std::function<uint64_t()>;

struct RunOptions {
  // Longest time without progress. With a `progress` probe: no change of it and no new
  // checkpoint reached (hypercalls alone are no progress, so a guest that floods the host with
  // them is stopped too; time the host spends verifying is not counted). Without one: no
  // hypercall from any vCPU.
  absl::Duration timeout = absl::Seconds(10);
  bool verbose = false;             // echo guest log lines to stderr
  CheckpointHandler on_checkpoint;  // may be empty
  VerifyHandler on_verify;          // may be empty
  MarkHandler on_mark;              // may be empty
  RefillHandler on_refill;          // may be empty: then kRefill is a protocol error
  // May be empty: then only hypercalls count as progress. A program runs thousands of steps
  // between hypercalls, so a slow host (nested KVM under TCG, a loaded machine) must not
  // mistake a long stretch of steps for a hang.
  ProgressProbe progress;
  // May be empty: what the program waits for, for the watchdog's report ("step 6650 of 7180,
  // a switch on CPU 1"), read from guest memory like `progress`.
  std::function<std::string()> describe_wait;
  // Samples per second and vCPU of where the vCPU is (vmm/kvm/guest_profile.h); 0: none.
  int profile_hz = 0;
};

struct VcpuFinalState {
  enum class Phase { kRunning, kAtCheckpoint, kDone, kFailed };
  Phase phase = Phase::kRunning;
  uint64_t checkpoint = 0;  // last checkpoint id it reached
  bool have_regs = false;
  kvm_regs regs{};
  kvm_sregs sregs{};
  bool halted = false;
  std::string lapic;  // DescribeLapic, "" when KVM_GET_LAPIC failed
};

struct RunResult {
  Outcome outcome = Outcome::kCompleted;
  int failed_cpu = -1;
  std::string report;  // empty when completed; otherwise what happened, multi-line
  std::vector<VcpuFinalState> vcpus;
  std::vector<std::string> log;  // guest log lines, "cpu N: text"
  uint64_t checkpoints_passed = 0;
  double seconds = 0;
  // KVM's cumulative vCPU statistics (exits, io_exits, halt_exits, insn_emulation, ...), what
  // the run added to each, summed over the vCPUs; empty where KVM has no binary statistics.
  std::map<std::string, uint64_t> kvm_stats;
  GuestProfile profile;  // with RunOptions::profile_hz
  // What the guest's boot-time TLB probe saw (GuestInfo::tlb_probe): whether a stale
  // translation is observable on this host, measured, not assumed from its kind.
  abi::TlbProbe tlb_probe = abi::TlbProbe::kNotRun;
};

// "observable", "not observable", "inconclusive", "not run": the JSON names.
const char* TlbProbeName(abi::TlbProbe p);
// The line reports print: "TLB: stale translations observable here (...)".
std::string TlbProbeSummary(abi::TlbProbe p);

class Runner {
 public:
  Runner(Vm& vm, RunOptions options);
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

  RunResult Run();

 private:
  using Clock = std::chrono::steady_clock;

  void VcpuLoop(int cpu);
  // Profiling: every 1/profile_hz s, samples each vCPU (a kick out of KVM_RUN, or a host
  // sample when its thread is not in KVM_RUN) until sampler_stop_.
  void SampleLoop();
  void TakeSample(int cpu);
  // Returns false when the vCPU must leave its loop.
  bool HandleExit(int cpu, uint32_t reason);
  bool HandleHypercall(int cpu, uint32_t nr);
  void Checkpoint(int cpu, uint64_t id);
  void Verify(int cpu, uint64_t check, uint64_t step_index);
  // A vCPU thread interrupted out of KVM_RUN: park while another vCPU's verification runs.
  // Returns false when the run is stopping.
  bool ParkIfPaused(int cpu);
  // Parks `cpu` (with its registers) for as long as another vCPU's pause lasts. mu_ held.
  // Returns false when the run is stopping.
  bool ParkWhilePausedLocked(int cpu, const absl::StatusOr<kvm_sregs>& sregs,
                             std::unique_lock<std::mutex>& lock);
  void Finish(int cpu);
  // Runs the handler and releases the barrier once every live vCPU is waiting. mu_ held.
  void MaybeReleaseLocked(std::unique_lock<std::mutex>& lock);
  void Fail(Outcome outcome, int cpu, std::string report);
  void FailLocked(Outcome outcome, int cpu, std::string report);
  void StopAllLocked();
  std::string WatchdogReport();

  Vm& vm_;
  RunOptions options_;
  const int n_;
  std::vector<std::thread> threads_;

  std::mutex mu_;
  std::condition_variable cv_;  // barrier release, vCPU exit, failure
  std::atomic<bool> stop_{false};
  bool failed_ = false;
  RunResult result_;
  std::vector<VcpuFinalState> state_;
  std::vector<kvm_sregs> checkpoint_sregs_;
  std::vector<bool> at_checkpoint_;
  int live_ = 0;     // vCPUs neither done nor failed
  int arrived_ = 0;  // live vCPUs waiting at the barrier
  int exited_ = 0;   // vCPU threads that have left their loop
  // Pause for a verification: requested by pause_requester_, joined by every other thread.
  bool pausing_ = false;
  int pause_requester_ = -1;
  int parked_ = 0;
  uint64_t pause_generation_ = 0;
  std::vector<kvm_sregs> pause_sregs_;
  std::vector<bool> pause_present_;
  uint64_t generation_ = 0;
  bool handler_running_ = false;
  Clock::time_point last_progress_;
  // The guest is not trusted to be quiet (docs/architecture.md, "A hostile guest"): hypercalls
  // since the last progress (for the watchdog's report), the vCPUs that have said hello (the
  // first is progress), the highest checkpoint released, and log lines beyond kMaxLogLines.
  uint64_t hypercalls_without_progress_ = 0;
  std::vector<bool> hello_seen_;
  uint64_t checkpoint_high_ = 0;
  bool checkpoint_released_ = false;
  uint64_t log_dropped_ = 0;
  // Profiling (RunOptions::profile_hz). where_[i]: vCPU i's thread is in (or about to enter)
  // KVM_RUN, in the host, or out of its loop (kInGuest, kInHost, kGone); sample_due_[i]: the
  // sampler kicked it and wants its position. Each profile_[i] is written by vCPU i's thread only,
  // host_samples_ by the sampler only; merged after the join.
  enum Where : uint8_t { kInHost, kInGuest, kGone };
  std::unique_ptr<std::atomic<uint8_t>[]> where_;
  std::unique_ptr<std::atomic<bool>[]> sample_due_;
  std::vector<GuestProfile> profiles_;
  std::vector<uint64_t> host_samples_;
  std::thread sampler_;
  std::atomic<bool> sampler_stop_{false};
};

}  // namespace activemm

#endif  // ACTIVEMM_VMM_KVM_RUNNER_H_
