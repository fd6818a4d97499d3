#include "vmm/kvm/runner.h"

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "fmt/core.h"
#include "shared/x86.h"
#include "vmm/kvm/guest_report.h"
#include "vmm/kvm/interrupt.h"
#include "vmm/kvm/kvm_stats.h"

namespace activemm {
namespace {

constexpr int kKickSignal = SIGUSR1;
// Guest log lines a run keeps; the rest are counted (a guest may log in a loop).
constexpr size_t kMaxLogLines = 1000;

// The kick signal only has to interrupt KVM_RUN (EINTR): its handler does nothing. Installed
// without SA_RESTART so the ioctl is not transparently restarted.
void InstallKickHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_handler = [](int) {};
    sigemptyset(&sa.sa_mask);
    sigaction(kKickSignal, &sa, nullptr);
  });
}

}  // namespace

const char* OutcomeName(Outcome o) {
  switch (o) {
    case Outcome::kCompleted:
      return "completed";
    case Outcome::kGuestException:
      return "guest exception";
    case Outcome::kGuestPanic:
      return "guest panic";
    case Outcome::kVcpuError:
      return "vCPU error";
    case Outcome::kWatchdog:
      return "watchdog";
    case Outcome::kCheckFailed:
      return "check failed";
    case Outcome::kHostError:
      return "host error";
    case Outcome::kInterrupted:
      return "interrupted";
  }
  return "?";
}

Runner::Runner(Vm& vm, RunOptions options)
    : vm_(vm),
      options_(std::move(options)),
      n_(vm.num_vcpus()),
      state_(n_),
      checkpoint_sregs_(n_),
      at_checkpoint_(n_, false),
      pause_sregs_(n_),
      pause_present_(n_, false),
      hello_seen_(n_, false),
      where_(new std::atomic<uint8_t>[n_]),
      sample_due_(new std::atomic<bool>[n_]),
      profiles_(n_),
      host_samples_(n_, 0) {
  for (int i = 0; i < n_; ++i) {
    where_[i] = kInHost;
    sample_due_[i] = false;
  }
}

RunResult Runner::Run() {
  InstallKickHandler();
  const Clock::time_point start = Clock::now();
  {
    // Under the lock: a vCPU that fails at once kicks the others through threads_, which must
    // not be growing meanwhile. A thread not started yet needs no kick; it sees stop_.
    std::lock_guard<std::mutex> l(mu_);
    live_ = n_;
    last_progress_ = start;
    threads_.reserve(n_);
    for (int i = 0; i < n_; ++i) threads_.emplace_back([this, i] { VcpuLoop(i); });
    if (options_.profile_hz > 0) sampler_ = std::thread([this] { SampleLoop(); });
  }

  {
    std::unique_lock<std::mutex> lock(mu_);
    const auto timeout = absl::ToChronoNanoseconds(options_.timeout);
    uint64_t last_seen = options_.progress ? options_.progress() : 0;
    while (exited_ < n_) {
      cv_.wait_for(lock, std::chrono::milliseconds(50));
      if (stop_ || exited_ == n_ || handler_running_) continue;
      if (const int sig = InterruptSignal(); sig != 0) {
        // Not during a verification (handler_running_): its pass ends first, within ms.
        FailLocked(Outcome::kInterrupted, -1,
                   absl::StrFormat("interrupted by %s: every vCPU stopped", SignalName(sig)));
        continue;
      }
      if (options_.progress) {
        const uint64_t seen = options_.progress();
        if (seen > last_seen) {
          last_seen = seen;
          last_progress_ = Clock::now();
          hypercalls_without_progress_ = 0;
        }
      }
      if (Clock::now() - last_progress_ > timeout) {
        // Stop first so every thread records where its vCPU was; the report is built after.
        FailLocked(Outcome::kWatchdog, -1, "");
      }
    }
  }
  // The sampler first: it signals vCPU threads, which must not be joined (gone) meanwhile.
  sampler_stop_ = true;
  if (sampler_.joinable()) sampler_.join();
  for (std::thread& t : threads_) t.join();
  threads_.clear();

  std::lock_guard<std::mutex> l(mu_);
  if (options_.profile_hz > 0) {
    result_.profile.hz = options_.profile_hz;
    for (int i = 0; i < n_; ++i) {
      result_.profile.Merge(profiles_[i]);
      result_.profile.AddHost(host_samples_[i]);
    }
  }
  if (result_.outcome == Outcome::kWatchdog) result_.report = WatchdogReport();
  if (log_dropped_ > 0) {
    result_.log.push_back(absl::StrFormat("(%d more guest log lines dropped: the host keeps %d)",
                                          log_dropped_, kMaxLogLines));
  }
  result_.vcpus = state_;
  // Guest memory, so checked: a value no probe writes reads as inconclusive.
  if (absl::StatusOr<abi::GuestInfo> info = vm_.memory().Read<abi::GuestInfo>(abi::kGuestInfoPa);
      info.ok() && info->tlb_probe <= static_cast<uint32_t>(abi::TlbProbe::kInconclusive)) {
    result_.tlb_probe = static_cast<abi::TlbProbe>(info->tlb_probe);
  } else {
    result_.tlb_probe = abi::TlbProbe::kInconclusive;
  }
  result_.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return result_;
}

const char* TlbProbeName(abi::TlbProbe p) {
  switch (p) {
    case abi::TlbProbe::kNotRun:
      return "not run";
    case abi::TlbProbe::kNotObservable:
      return "not observable";
    case abi::TlbProbe::kObservable:
      return "observable";
    case abi::TlbProbe::kInconclusive:
      return "inconclusive";
  }
  return "inconclusive";
}

std::string TlbProbeSummary(abi::TlbProbe p) {
  switch (p) {
    case abi::TlbProbe::kObservable:
      return "TLB: stale translations observable here (at boot, a read after a PTE change with "
             "no flush still returned the old page)";
    case abi::TlbProbe::kNotObservable:
      return "TLB: stale translations not observable here (at boot, a read after a PTE change "
             "with no flush returned the new page)";
    case abi::TlbProbe::kInconclusive:
      return "TLB: the boot probe of stale translations was inconclusive";
    case abi::TlbProbe::kNotRun:
      break;
  }
  return "TLB: the boot probe of stale translations did not run";
}

std::string Runner::WatchdogReport() {
  // With a progress probe, hypercalls are no progress (a flood of them is counted below).
  std::string r = absl::StrFormat(
      "watchdog: the guest made no progress (%s) for %s; it was stopped. Where each vCPU was:",
      options_.progress ? "no step completed" : "no hypercall from any CPU",
      absl::FormatDuration(options_.timeout));
  for (int i = 0; i < n_; ++i) {
    const VcpuFinalState& s = state_[i];
    std::string where;
    switch (s.phase) {
      case VcpuFinalState::Phase::kDone:
        where = "finished";
        break;
      case VcpuFinalState::Phase::kFailed:
        where = "failed";
        break;
      case VcpuFinalState::Phase::kAtCheckpoint:
        where = absl::StrFormat("waiting in the host at checkpoint %d for the other CPUs",
                                s.checkpoint);
        break;
      case VcpuFinalState::Phase::kRunning:
        where = s.have_regs ? FormatVcpuPosition(s.regs, s.sregs, s.halted, vm_.image())
                            : "running (registers unavailable)";
        // A root outside RAM: every access of the vCPU faults, and so does every exception
        // handler; what a hypervisor makes of that (a triple fault, a retry for ever) varies.
        if (s.have_regs &&
            !vm_.memory().Contains(x86::Cr3::FromRaw(s.sregs.cr3).root(), x86::kPageSize)) {
          absl::StrAppend(&where, " (its CR3 root is outside guest RAM)");
        }
        if (!s.lapic.empty()) absl::StrAppend(&where, "; ", s.lapic);
        break;
    }
    r += absl::StrFormat("\n  vCPU %d: %s", i, where);
  }
  if (options_.describe_wait) absl::StrAppend(&r, "\n  the program: ", options_.describe_wait());
  if (options_.progress && hypercalls_without_progress_ > 0) {
    absl::StrAppendFormat(&r,
                          "\n  %d hypercalls since the last progress: a guest that only makes "
                          "hypercalls (a flood) makes no progress",
                          hypercalls_without_progress_);
  }
  return r;
}

void Runner::VcpuLoop(int cpu) {
  Vcpu& vcpu = vm_.vcpu(cpu);
  // The vCPU's statistics before and after its run (a delta: KVM_RUN calls before this run, the
  // boot's register setup, count too); no statistics is no error, only nothing to report.
  absl::StatusOr<std::unique_ptr<KvmStats>> stats = KvmStats::Open(vcpu.fd());
  absl::StatusOr<std::vector<std::pair<std::string, uint64_t>>> stats_before =
      stats.ok() ? (*stats)->ReadCumulative() : stats.status();
  for (;;) {
    if (stop_.load()) break;
    where_[cpu].store(kInGuest, std::memory_order_relaxed);
    absl::StatusOr<uint32_t> reason = vcpu.Run();
    where_[cpu].store(kInHost, std::memory_order_relaxed);
    if (!reason.ok()) {
      Fail(Outcome::kHostError, cpu, std::string(reason.status().message()));
      break;
    }
    // Kicked by the sampler: where the vCPU was. The kick may also have come from a pause or a
    // stop (the same signal), so the check below still runs.
    if (sample_due_[cpu].exchange(false, std::memory_order_relaxed)) {
      if (*reason == KVM_EXIT_INTR) {
        TakeSample(cpu);
      } else {
        profiles_[cpu].AddHost();  // the signal came while this thread was in the host
      }
    }
    if (*reason == KVM_EXIT_INTR) {  // kicked: stopping, pausing for a verification, a sample
      if (!ParkIfPaused(cpu)) break;
      continue;
    }
    if (!HandleExit(cpu, *reason)) break;
  }
  where_[cpu].store(kGone, std::memory_order_relaxed);
  // Record where this vCPU stopped, from its own thread, while nothing else runs it.
  absl::StatusOr<kvm_regs> regs = vcpu.GetRegs();
  absl::StatusOr<kvm_sregs> sregs = vcpu.GetSregs();
  absl::StatusOr<uint32_t> mp = vcpu.GetMpState();
  absl::StatusOr<kvm_lapic_state> lapic = vcpu.GetLapic();
  absl::StatusOr<std::vector<std::pair<std::string, uint64_t>>> stats_after =
      stats_before.ok() ? (*stats)->ReadCumulative() : stats_before.status();
  std::lock_guard<std::mutex> l(mu_);
  if (stats_after.ok() && stats_after->size() == stats_before->size()) {
    for (size_t i = 0; i < stats_after->size(); ++i) {
      result_.kvm_stats[(*stats_after)[i].first] +=
          (*stats_after)[i].second - (*stats_before)[i].second;
    }
  }
  VcpuFinalState& s = state_[cpu];
  if (regs.ok() && sregs.ok()) {
    s.have_regs = true;
    s.regs = *regs;
    s.sregs = *sregs;
    s.halted = mp.ok() && *mp == KVM_MP_STATE_HALTED;
  }
  if (lapic.ok()) s.lapic = DescribeLapic(*lapic);
  ++exited_;
  cv_.notify_all();
}

void Runner::SampleLoop() {
  const auto period = std::chrono::nanoseconds(1'000'000'000 / options_.profile_hz);
  auto next = Clock::now() + period;
  while (!sampler_stop_.load()) {
    std::this_thread::sleep_until(next);
    next += period;
    for (int i = 0; i < n_; ++i) {
      const uint8_t where = where_[i].load(std::memory_order_relaxed);
      if (where == kGone) continue;
      if (where == kInHost) {
        ++host_samples_[i];  // handling an exit, or parked for a verification
        continue;
      }
      // A sample not taken yet (the vCPU was slow to leave the guest) is not asked twice.
      if (sample_due_[i].exchange(true, std::memory_order_relaxed)) continue;
      pthread_kill(threads_[i].native_handle(), kKickSignal);
    }
  }
}

void Runner::TakeSample(int cpu) {
  Vcpu& vcpu = vm_.vcpu(cpu);
  absl::StatusOr<kvm_regs> regs = vcpu.GetRegs();
  absl::StatusOr<kvm_sregs> sregs = vcpu.GetSregs();
  if (regs.ok() && sregs.ok()) profiles_[cpu].AddGuest(vm_.image(), *regs, *sregs);
}

bool Runner::ParkIfPaused(int cpu) {
  // The vCPU is out of KVM_RUN and stays out while parked, so these registers stay current.
  absl::StatusOr<kvm_sregs> sregs = vm_.vcpu(cpu).GetSregs();
  std::unique_lock<std::mutex> lock(mu_);
  if (!ParkWhilePausedLocked(cpu, sregs, lock)) return false;
  // Re-armed under the lock: a stop sets immediate_exit under the same lock, after stop_, so
  // it can never be undone here.
  __atomic_store_n(&vm_.vcpu(cpu).run()->immediate_exit, 0, __ATOMIC_SEQ_CST);
  return true;
}

bool Runner::ParkWhilePausedLocked(int cpu, const absl::StatusOr<kvm_sregs>& sregs,
                                   std::unique_lock<std::mutex>& lock) {
  for (;;) {
    if (stop_) return false;
    if (!pausing_ || cpu == pause_requester_) return true;
    pause_sregs_[cpu] = sregs.ok() ? *sregs : kvm_sregs{};
    pause_present_[cpu] = sregs.ok();
    ++parked_;
    const uint64_t gen = pause_generation_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return pause_generation_ != gen || stop_; });
    // The race this loop closes: another vCPU may have requested the next pause before this
    // thread woke from the last one. Its kick (immediate_exit + signal) already happened while
    // this thread was not in KVM_RUN; clearing immediate_exit now would lose it, and this vCPU
    // would sit halted in the guest while the requester waits for it forever. So park again.
  }
}

void Runner::Verify(int cpu, uint64_t check, uint64_t step_index) {
  const Clock::time_point begin = Clock::now();
  absl::StatusOr<kvm_sregs> own = vm_.vcpu(cpu).GetSregs();
  if (!own.ok()) {
    Fail(Outcome::kHostError, cpu, std::string(own.status().message()));
    return;
  }
  std::unique_lock<std::mutex> lock(mu_);
  // The guest is not trusted to ask one at a time: a vCPU that asks while another's
  // verification is under way takes part in that one as a parked vCPU first (else each would
  // wait for the other to park), then runs its own.
  if (!ParkWhilePausedLocked(cpu, own, lock)) return;
  pausing_ = true;
  pause_requester_ = cpu;
  parked_ = 0;
  std::fill(pause_present_.begin(), pause_present_.end(), false);
  pause_sregs_[cpu] = *own;
  pause_present_[cpu] = true;
  // Every other vCPU still in its loop leaves KVM_RUN (immediate_exit covers one that is about
  // to enter, the signal one that is inside) and parks in ParkIfPaused.
  for (int i = 0; i < n_; ++i) {
    if (i == cpu) continue;
    vm_.vcpu(i).RequestImmediateExit();
    pthread_kill(threads_[i].native_handle(), kKickSignal);
  }
  // Every other vCPU that has not finished must be out of the guest: parked here, or waiting
  // at a checkpoint barrier (it entered the host with its registers read at arrival).
  cv_.wait(lock, [&] {
    int others_running = 0, at_barrier = 0;
    for (int i = 0; i < n_; ++i) {
      if (i == cpu || state_[i].phase == VcpuFinalState::Phase::kDone ||
          state_[i].phase == VcpuFinalState::Phase::kFailed) {
        continue;
      }
      ++others_running;
      if (at_checkpoint_[i]) {
        ++at_barrier;
        pause_sregs_[i] = checkpoint_sregs_[i];
        pause_present_[i] = true;
      }
    }
    return stop_ || parked_ + at_barrier >= others_running;
  });
  absl::Status status = absl::OkStatus();
  if (!stop_ && options_.on_verify) {
    handler_running_ = true;
    std::vector<kvm_sregs> sregs = pause_sregs_;
    std::vector<bool> present = pause_present_;
    lock.unlock();
    status = options_.on_verify(VerifyView{check, step_index, cpu, vm_.memory(), sregs, present});
    lock.lock();
    handler_running_ = false;
  }
  // A verification is no progress where a probe tells progress (a guest may ask for them in a
  // loop), but the time the host spent on it is not the guest's.
  if (options_.progress) {
    last_progress_ += Clock::now() - begin;
  } else {
    last_progress_ = Clock::now();
  }
  pausing_ = false;
  pause_requester_ = -1;
  ++pause_generation_;
  cv_.notify_all();
  if (!status.ok() && !stop_) {
    FailLocked(Outcome::kCheckFailed, -1, std::string(status.message()));
  }
}

bool Runner::HandleExit(int cpu, uint32_t reason) {
  kvm_run* run = vm_.vcpu(cpu).run();
  switch (reason) {
    case KVM_EXIT_IO: {
      const auto& io = run->io;
      if (io.direction == KVM_EXIT_IO_OUT && io.port == abi::kHypercallPort && io.size == 4 &&
          io.count == 1) {
        uint32_t nr;
        std::memcpy(&nr, reinterpret_cast<const uint8_t*>(run) + io.data_offset, sizeof nr);
        return HandleHypercall(cpu, nr);
      }
      Fail(Outcome::kVcpuError, cpu,
           absl::StrFormat("CPU %d: unexpected port I/O: %s of %d byte(s) at port %#x", cpu,
                           io.direction == KVM_EXIT_IO_OUT ? "write" : "read", io.size, io.port));
      return false;
    }
    case KVM_EXIT_MMIO:
      Fail(Outcome::kVcpuError, cpu,
           absl::StrFormat("CPU %d: %s of %d byte(s) at guest physical %#x, outside guest RAM", cpu,
                           run->mmio.is_write ? "write" : "read", run->mmio.len,
                           run->mmio.phys_addr));
      return false;
    case KVM_EXIT_SHUTDOWN:
      Fail(Outcome::kVcpuError, cpu,
           absl::StrFormat("CPU %d: triple fault (an exception while the guest could not "
                           "handle exceptions, e.g. before its IDT was loaded)",
                           cpu));
      return false;
    case KVM_EXIT_INTERNAL_ERROR:
      Fail(Outcome::kVcpuError, cpu,
           absl::StrFormat("CPU %d: KVM internal error, suberror %d%s", cpu, run->internal.suberror,
                           run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION
                               ? " (KVM could not emulate an instruction)"
                               : ""));
      return false;
    case KVM_EXIT_FAIL_ENTRY:
      Fail(Outcome::kVcpuError, cpu,
           absl::StrFormat("CPU %d: VM entry failed, hardware reason %#x", cpu,
                           run->fail_entry.hardware_entry_failure_reason));
      return false;
    case KVM_EXIT_HLT:
      // Only without an in-kernel irqchip; activemm always has one.
      Fail(Outcome::kVcpuError, cpu, absl::StrFormat("CPU %d: unexpected HLT exit", cpu));
      return false;
    default:
      Fail(Outcome::kVcpuError, cpu,
           absl::StrFormat("CPU %d: unexpected KVM exit reason %d", cpu, reason));
      return false;
  }
}

bool Runner::HandleHypercall(int cpu, uint32_t nr) {
  {
    std::lock_guard<std::mutex> l(mu_);
    // With a progress probe, a hypercall is no progress (but a vCPU's first hello is): a guest
    // that loops on hypercalls and completes no step is stopped by the watchdog.
    const bool first_hello =
        nr == static_cast<uint32_t>(abi::Hypercall::kHello) && !hello_seen_[cpu];
    if (first_hello) hello_seen_[cpu] = true;
    if (!options_.progress || first_hello) {
      last_progress_ = Clock::now();
    } else {
      ++hypercalls_without_progress_;
    }
  }
  GuestMemory& mem = vm_.memory();
  absl::StatusOr<abi::CpuMailbox> mb = mem.Read<abi::CpuMailbox>(abi::MailboxPa(cpu));
  if (!mb.ok()) {
    Fail(Outcome::kHostError, cpu, std::string(mb.status().message()));
    return false;
  }
  switch (static_cast<abi::Hypercall>(nr)) {
    case abi::Hypercall::kHello: {
      absl::StatusOr<abi::GuestInfo> info = mem.Read<abi::GuestInfo>(abi::kGuestInfoPa);
      if (!info.ok() || info->abi_version != abi::kAbiVersion) {
        Fail(Outcome::kGuestPanic, cpu,
             absl::StrFormat("CPU %d: the guest speaks ABI version %d, the host %d", cpu,
                             info.ok() ? info->abi_version : 0, abi::kAbiVersion));
        return false;
      }
      return true;
    }
    case abi::Hypercall::kLog: {
      uint32_t len = std::min<uint32_t>(mb->log_len, abi::kLogMax);
      std::string line =
          absl::StrFormat("cpu %d: %s", cpu, GuestMemory::BoundedString(mb->log, len));
      if (options_.verbose) fmt::print(stderr, "[guest] {}\n", line);
      std::lock_guard<std::mutex> l(mu_);
      if (result_.log.size() < kMaxLogLines) {
        result_.log.push_back(std::move(line));
      } else {
        ++log_dropped_;  // a guest that floods the log costs no memory beyond the first lines
      }
      return true;
    }
    case abi::Hypercall::kCheckpoint:
      Checkpoint(cpu, mb->arg[0]);
      return !stop_.load();
    case abi::Hypercall::kVerify:
      Verify(cpu, mb->arg[0], mb->arg[1]);
      return !stop_.load();
    case abi::Hypercall::kMark:
      if (options_.on_mark) {
        if (absl::Status s = options_.on_mark(MarkView{cpu, mb->arg}); !s.ok()) {
          Fail(Outcome::kCheckFailed, cpu, std::string(s.message()));
          return false;
        }
      }
      return true;
    case abi::Hypercall::kRefill: {
      absl::Status s = options_.on_refill
                           ? options_.on_refill(mb->arg[0])
                           : absl::FailedPreconditionError("a refill, but no program streams");
      if (!s.ok()) {
        Fail(Outcome::kGuestPanic, cpu, absl::StrFormat("CPU %d: %s", cpu, s.message()));
        return false;
      }
      return true;
    }
    case abi::Hypercall::kFill: {
      // The guest's own RAM, bounded per call: a guest can ask for no more than it could write.
      absl::Status s =
          mb->arg[1] > abi::kMaxFillBytes
              ? absl::OutOfRangeError(absl::StrFormat("%d bytes, more than the %d a fill may set",
                                                      mb->arg[1], abi::kMaxFillBytes))
              : mem.Fill(mb->arg[0], static_cast<uint8_t>(mb->arg[2]), mb->arg[1]);
      if (!s.ok()) {
        Fail(Outcome::kGuestPanic, cpu,
             absl::StrFormat("CPU %d: a fill hypercall: %s", cpu, s.message()));
        return false;
      }
      return true;
    }
    case abi::Hypercall::kPanic:
      Fail(Outcome::kGuestPanic, cpu, FormatPanic(cpu, mb->panic));
      return false;
    case abi::Hypercall::kException:
      Fail(Outcome::kGuestException, cpu, FormatFault(cpu, mb->panic.fault, vm_.image()));
      return false;
    case abi::Hypercall::kDone:
      if (mb->arg[0] != 0) {
        Fail(Outcome::kGuestPanic, cpu,
             absl::StrFormat("CPU %d finished with status %d", cpu, mb->arg[0]));
        return false;
      }
      Finish(cpu);
      return false;
  }
  Fail(Outcome::kGuestPanic, cpu, absl::StrFormat("CPU %d: unknown hypercall %d", cpu, nr));
  return false;
}

void Runner::Checkpoint(int cpu, uint64_t id) {
  absl::StatusOr<kvm_sregs> sregs = vm_.vcpu(cpu).GetSregs();
  if (!sregs.ok()) {
    Fail(Outcome::kHostError, cpu, std::string(sregs.status().message()));
    return;
  }
  std::unique_lock<std::mutex> lock(mu_);
  if (stop_) return;
  state_[cpu].phase = VcpuFinalState::Phase::kAtCheckpoint;
  state_[cpu].checkpoint = id;
  checkpoint_sregs_[cpu] = *sregs;
  at_checkpoint_[cpu] = true;
  ++arrived_;
  const uint64_t gen = generation_;
  cv_.notify_all();  // a verification in progress counts this vCPU as out of the guest now
  MaybeReleaseLocked(lock);
  cv_.wait(lock, [&] { return generation_ != gen || stop_; });
  // Released while another vCPU's verification still runs: stay out of the guest until it
  // ends, so the guest stays quiet for it.
  ParkWhilePausedLocked(cpu, sregs, lock);
}

void Runner::Finish(int cpu) {
  std::unique_lock<std::mutex> lock(mu_);
  state_[cpu].phase = VcpuFinalState::Phase::kDone;
  --live_;
  cv_.notify_all();  // a verification in progress waits for one parked vCPU fewer
  // The others may all be waiting for this one at a checkpoint it will never reach; if so the
  // barrier is complete without it.
  MaybeReleaseLocked(lock);
}

void Runner::MaybeReleaseLocked(std::unique_lock<std::mutex>& lock) {
  if (stop_ || arrived_ == 0 || arrived_ != live_) return;
  uint64_t id = 0;
  int first = -1;
  for (int i = 0; i < n_; ++i) {
    if (!at_checkpoint_[i]) continue;
    if (first < 0) {
      first = i;
      id = state_[i].checkpoint;
    } else if (state_[i].checkpoint != id) {
      FailLocked(Outcome::kCheckFailed, i,
                 absl::StrFormat("CPUs met at different checkpoints: CPU %d at %d, CPU %d at %d",
                                 first, id, i, state_[i].checkpoint));
      return;
    }
  }
  absl::Status status = absl::OkStatus();
  const Clock::time_point handler_begin = Clock::now();
  if (options_.on_checkpoint) {
    // Every live vCPU is parked in this barrier, so guest memory is quiet while the handler
    // reads it. The lock is dropped so the watchdog loop keeps running (it pauses while
    // handler_running_ is set: host work is not a hung guest).
    handler_running_ = true;
    std::vector<kvm_sregs> sregs = checkpoint_sregs_;
    std::vector<bool> present = at_checkpoint_;
    lock.unlock();
    status = options_.on_checkpoint(CheckpointView{id, vm_.memory(), sregs, present});
    lock.lock();
    handler_running_ = false;
  }
  // A checkpoint beyond every one before is progress; one again (a guest looping on
  // checkpoints, with a progress probe) only has the host's time excused.
  if (!options_.progress || !checkpoint_released_ || id > checkpoint_high_) {
    last_progress_ = Clock::now();
    hypercalls_without_progress_ = 0;
  } else {
    last_progress_ += Clock::now() - handler_begin;
  }
  checkpoint_high_ = checkpoint_released_ ? std::max(checkpoint_high_, id) : id;
  checkpoint_released_ = true;
  if (!status.ok()) {
    FailLocked(Outcome::kCheckFailed, -1,
               absl::StrFormat("at checkpoint %d: %s", id, status.message()));
    return;
  }
  ++result_.checkpoints_passed;
  for (int i = 0; i < n_; ++i) {
    if (!at_checkpoint_[i]) continue;
    at_checkpoint_[i] = false;
    state_[i].phase = VcpuFinalState::Phase::kRunning;
  }
  arrived_ = 0;
  ++generation_;
  cv_.notify_all();
}

void Runner::Fail(Outcome outcome, int cpu, std::string report) {
  std::lock_guard<std::mutex> l(mu_);
  FailLocked(outcome, cpu, std::move(report));
}

void Runner::FailLocked(Outcome outcome, int cpu, std::string report) {
  if (cpu >= 0 && state_[cpu].phase != VcpuFinalState::Phase::kDone) {
    state_[cpu].phase = VcpuFinalState::Phase::kFailed;
  }
  if (!failed_) {  // the first failure is the one reported
    failed_ = true;
    result_.outcome = outcome;
    result_.failed_cpu = cpu;
    result_.report = std::move(report);
  }
  StopAllLocked();
}

void Runner::StopAllLocked() {
  if (stop_.exchange(true)) return;
  // Order matters: stop_ first (a thread about to enter KVM_RUN sees it), then
  // immediate_exit (a thread past that check but not yet in the guest returns at once), then
  // the signal (a thread already in the guest exits with EINTR).
  for (int i = 0; i < n_; ++i) vm_.vcpu(i).RequestImmediateExit();
  for (int i = 0; i < n_ && i < static_cast<int>(threads_.size()); ++i) {
    pthread_kill(threads_[i].native_handle(), kKickSignal);
  }
  cv_.notify_all();
}

}  // namespace activemm
