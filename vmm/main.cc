// activemm: Linux's mm / active_mm / lazy-TLB behaviour on real x86-64 page tables under KVM.
// Flags are parsed here only and passed down as config structs.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "fmt/core.h"
#include "vmm/exit_codes.h"
#include "vmm/kvm.h"
#include "vmm/selftest.h"

ABSL_FLAG(int, cpus, 4, "number of vCPUs (simulated CPUs), 1..64");
ABSL_FLAG(std::string, mem, "256M",
          "guest RAM, a multiple of 2M between 16M and 3G (suffix M or G)");
ABSL_FLAG(double, timeout, 10, "seconds without guest progress before the watchdog stops the run");
ABSL_FLAG(std::string, inject, "none",
          "plant a fault to test the reporting: none, kernel-fault, user-fault, spin, panic");
ABSL_FLAG(bool, verbose, false, "print the guest's log lines");
ABSL_FLAG(std::string, kvm, activemm::Kvm::kDevicePath, "KVM device to open");

namespace activemm {
namespace {

constexpr const char* kUsage =
    "activemm COMMAND [flags]\n"
    "\n"
    "Commands:\n"
    "  selftest   boot the guest on --cpus vCPUs: every CPU reports in, sends and receives an\n"
    "             IPI, and makes a ring-3 round trip on its own page table; the host verifies\n"
    "             it all (exit 0 only if all of it happened)\n"
    "\n"
    "Flags: --cpus, --mem, --timeout, --inject, --verbose, --kvm (--help lists them all).\n"
    "Exit status: 0 ok, 1 check failed, 2 usage, 3 guest failure, 4 watchdog, 5 no usable KVM,\n"
    "6 host error.";

int UsageError(const std::string& msg) {
  fmt::print(stderr, "activemm: {}\n(activemm --help for usage)\n", msg);
  return kExitUsage;
}

bool ParseMem(std::string s, uint64_t* bytes) {
  s = absl::AsciiStrToUpper(s);
  uint64_t mult = 1ull << 20;
  if (!s.empty() && (s.back() == 'M' || s.back() == 'G')) {
    if (s.back() == 'G') mult = 1ull << 30;
    s.pop_back();
  }
  uint64_t n;
  if (!absl::SimpleAtoi(s, &n) || n == 0 || n > (1ull << 40) / mult) return false;
  *bytes = n * mult;
  return true;
}

bool ParseInject(const std::string& s, abi::Inject* out) {
  static const std::pair<const char*, abi::Inject> kNames[] = {
      {"none", abi::Inject::kNone},
      {"kernel-fault", abi::Inject::kKernelFault},
      {"user-fault", abi::Inject::kUserFault},
      {"spin", abi::Inject::kSpin},
      {"panic", abi::Inject::kPanic}};
  for (const auto& [name, value] : kNames) {
    if (s == name) {
      *out = value;
      return true;
    }
  }
  return false;
}

int Selftest() {
  SelftestOptions opt;
  opt.vm.cpus = absl::GetFlag(FLAGS_cpus);
  opt.vm.verbose = absl::GetFlag(FLAGS_verbose);
  if (!ParseMem(absl::GetFlag(FLAGS_mem), &opt.vm.mem_bytes)) {
    return UsageError(
        absl::StrFormat("--mem=%s: expected a size such as 256M or 1G", absl::GetFlag(FLAGS_mem)));
  }
  if (!ParseInject(absl::GetFlag(FLAGS_inject), &opt.vm.inject)) {
    return UsageError(
        absl::StrFormat("--inject=%s: expected none, kernel-fault, user-fault, spin or panic",
                        absl::GetFlag(FLAGS_inject)));
  }
  double timeout = absl::GetFlag(FLAGS_timeout);
  if (!(timeout > 0 && timeout <= 3600)) {
    return UsageError(absl::StrFormat("--timeout=%g: expected seconds in (0, 3600]", timeout));
  }
  opt.timeout = absl::Seconds(timeout);
  if (opt.vm.cpus < 1 || opt.vm.cpus > static_cast<int>(abi::kMaxCpus)) {
    return UsageError(
        absl::StrFormat("--cpus=%d: must be between 1 and %d", opt.vm.cpus, abi::kMaxCpus));
  }

  absl::StatusOr<std::unique_ptr<Kvm>> kvm = Kvm::Open(absl::GetFlag(FLAGS_kvm));
  if (!kvm.ok()) {
    fmt::print(stderr, "activemm: {}\n", std::string(kvm.status().message()));
    return kExitNoKvm;
  }
  absl::StatusOr<SelftestResult> r = RunSelftest(**kvm, opt);
  if (!r.ok()) {
    fmt::print(stderr, "activemm: {}\n", std::string(r.status().message()));
    return r.status().code() == absl::StatusCode::kInvalidArgument ? kExitUsage : kExitHostError;
  }
  std::string summary = FormatSelftestSummary(*r, opt.vm, (*kvm)->Describe());
  fmt::print(r->passed ? stdout : stderr, "{}", summary);
  if (r->passed) return kExitOk;
  return r->run.outcome == Outcome::kCompleted ? kExitCheckFailed : ExitCodeFor(r->run.outcome);
}

}  // namespace
}  // namespace activemm

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(activemm::kUsage);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() < 2) return activemm::UsageError("no command given");
  if (args.size() > 2) {
    return activemm::UsageError(absl::StrFormat("unexpected argument '%s'", args[2]));
  }
  std::string cmd = args[1];
  if (cmd == "selftest") return activemm::Selftest();
  return activemm::UsageError(absl::StrFormat("unknown command '%s'", cmd));
}
