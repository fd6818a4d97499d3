#include "vmm/kvm/guest_profile.h"

#include <algorithm>
#include <functional>
#include <utility>
#include <vector>
#include "absl/strings/string_view.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"

namespace activemm {
namespace {

struct FileBucket {
  absl::string_view file;
  ProfileBucket bucket;
};
// Every guest source file a scenario's steps run code of.
constexpr FileBucket kFiles[] = {
    {"sched.cc", ProfileBucket::kModeledKernel},
    {"tlb.cc", ProfileBucket::kModeledKernel},
    {"mm.cc", ProfileBucket::kModeledKernel},
    {"page_alloc.cc", ProfileBucket::kModeledKernel},
    {"kernel_map.cc", ProfileBucket::kModeledKernel},
    {"page_table.h", ProfileBucket::kModeledKernel},  // shared/: the mm's page-table walks
    {"asid.h", ProfileBucket::kModeledKernel},        // shared/: choose_new_asid
    {"lib.cc", ProfileBucket::kModeledKernel},        // memset/memcpy of page tables and mm slots
    {"scenario.cc", ProfileBucket::kStepLoop},
    {"hypercall.cc", ProfileBucket::kStepLoop},  // the step loop's verify and refill requests
    {"apic.cc", ProfileBucket::kInterrupts},
    {"traps.cc", ProfileBucket::kInterrupts},
    {"user_burst.cc", ProfileBucket::kUserTrips},
    {"user_mode.cc", ProfileBucket::kUserTrips},
};

struct FunctionBucket {
  absl::string_view prefix;  // of the function's name without namespaces
  ProfileBucket bucket;
};
// Functions whose purpose is not their file's (entry.S holds one function of each kind).
constexpr FunctionBucket kFunctions[] = {
    {"RecordStep(", ProfileBucket::kRecords},
    {"Kick(", ProfileBucket::kInterrupts},
    {"scenario_kick_taken(", ProfileBucket::kInterrupts},
    {"WaitForKick(", ProfileBucket::kHalted},
    {"safe_halt", ProfileBucket::kHalted},
    {"trap_", ProfileBucket::kInterrupts},  // trap_stubs, trap_common
    {"kick_entry", ProfileBucket::kInterrupts},
    {"ud_entry", ProfileBucket::kUserTrips},
    {"user_ud_trap", ProfileBucket::kUserTrips},
    {"enter_user", ProfileBucket::kUserTrips},
    {"resume_kernel", ProfileBucket::kUserTrips},
    {"__switch_to_asm", ProfileBucket::kModeledKernel},
    {"ret_from_fork", ProfileBucket::kModeledKernel},
};

// "activemm::guest::(anonymous namespace)::StepLoop()" -> "StepLoop()".
std::string ShortName(absl::string_view name) {
  return absl::StrReplaceAll(name, {{"activemm::guest::", ""}, {"(anonymous namespace)::", ""}});
}

}  // namespace

const char* ProfileBucketName(ProfileBucket b) {
  switch (b) {
    case ProfileBucket::kModeledKernel:
      return "modeled kernel";
    case ProfileBucket::kStepLoop:
      return "step loop";
    case ProfileBucket::kRecords:
      return "step records";
    case ProfileBucket::kInterrupts:
      return "interrupts and traps";
    case ProfileBucket::kUserTrips:
      return "entering and leaving ring 3";
    case ProfileBucket::kUser:
      return "ring 3";
    case ProfileBucket::kHalted:
      return "halted, waiting";
    case ProfileBucket::kHost:
      return "in the host";
    case ProfileBucket::kOther:
      return "other guest code";
  }
  return "?";
}

ProfileBucket ClassifyGuestCode(const GuestImage::Symbol* fn) {
  if (fn == nullptr) return ProfileBucket::kOther;
  const std::string name = ShortName(fn->name);
  for (const FunctionBucket& f : kFunctions) {
    if (absl::StartsWith(name, f.prefix)) return f.bucket;
  }
  for (const FileBucket& f : kFiles) {
    if (fn->file == f.file) return f.bucket;
  }
  return ProfileBucket::kOther;
}

void GuestProfile::AddGuest(const GuestImage& image, const kvm_regs& regs, const kvm_sregs& sregs) {
  ++samples;
  if ((sregs.cs.selector & 3) == 3) {
    ++buckets[static_cast<int>(ProfileBucket::kUser)];
    return;
  }
  const GuestImage::Symbol* fn = image.SymbolAt(regs.rip);
  ++buckets[static_cast<int>(ClassifyGuestCode(fn))];
  ++functions[fn == nullptr ? std::string("(no symbol)")
                            : absl::StrCat(ShortName(fn->name), " (", fn->file, ")")];
}

void GuestProfile::AddHost(uint64_t n) {
  samples += n;
  buckets[static_cast<int>(ProfileBucket::kHost)] += n;
}

void GuestProfile::Merge(const GuestProfile& other) {
  samples += other.samples;
  for (int i = 0; i < kNumProfileBuckets; ++i) buckets[i] += other.buckets[i];
  for (const auto& [name, n] : other.functions) functions[name] += n;
}

std::string FormatProfile(const GuestProfile& p) {
  if (p.hz == 0) return "";
  std::string out = absl::StrFormat("profile: %d samples at %d Hz per vCPU:", p.samples, p.hz);
  const double total = p.samples == 0 ? 1.0 : static_cast<double>(p.samples);
  const char* sep = " ";
  for (int i = 0; i < kNumProfileBuckets; ++i) {
    if (p.buckets[i] == 0) continue;
    absl::StrAppendFormat(&out, "%s%s %.1f%%", sep,
                          ProfileBucketName(static_cast<ProfileBucket>(i)),
                          100.0 * static_cast<double>(p.buckets[i]) / total);
    sep = ", ";
  }
  std::vector<std::pair<uint64_t, std::string>> top;
  for (const auto& [name, n] : p.functions) top.emplace_back(n, name);
  std::sort(top.begin(), top.end(), std::greater<>());
  if (top.size() > 5) top.resize(5);
  for (size_t i = 0; i < top.size(); ++i) {
    absl::StrAppendFormat(&out, "%s%s %.1f%%", i == 0 ? "\n  most sampled guest functions: " : ", ",
                          top[i].second, 100.0 * static_cast<double>(top[i].first) / total);
  }
  return out;
}

nlohmann::json ProfileJson(const GuestProfile& p) {
  nlohmann::json buckets = nlohmann::json::object();
  for (int i = 0; i < kNumProfileBuckets; ++i) {
    buckets[ProfileBucketName(static_cast<ProfileBucket>(i))] = p.buckets[i];
  }
  return {{"hz", p.hz}, {"samples", p.samples}, {"buckets", buckets}, {"functions", p.functions}};
}

}  // namespace activemm
