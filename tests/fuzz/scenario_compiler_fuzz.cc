// Fuzz target: the scenario compiler (vmm/model/scenario.h) on arbitrary text.
//
// The input is the scenario file's text. It is compiled as `activemm run FILE` does, then
// again with a --cpus override and --verify=every-step, the override taken from the input's
// length so that both valid and out-of-range values (-1, 0, 65) come up. A compiled program
// must be one the guest can execute: every CPU, task, mm and check index in range, and every
// parallel block's steps inside the program.
#include <stddef.h>
#include <stdint.h>

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "shared/mm_abi.h"
#include "tests/fuzz/fuzz_input.h"
#include "vmm/model/scenario.h"

namespace {

void CheckScenario(const activemm::Scenario& sc, const activemm::CompileOptions& options) {
  using activemm::abi::StepOp;
  namespace abi = activemm::abi;
  FUZZ_CHECK(sc.cpus >= 1 && sc.cpus <= static_cast<int>(abi::kMaxCpus));
  if (options.cpus.has_value()) FUZZ_CHECK(sc.cpus == *options.cpus);
  FUZZ_CHECK(!sc.program.empty());
  FUZZ_CHECK(!sc.checks.empty());
  FUZZ_CHECK(sc.checks.back().kind == activemm::HostCheck::Kind::kFinal);
  FUZZ_CHECK(sc.task_names.size() >= static_cast<size_t>(sc.cpus));
  FUZZ_CHECK(sc.task_names.size() <= abi::kMaxTasks);
  FUZZ_CHECK(!sc.mm_names.empty() && sc.mm_names.size() <= abi::kMaxMms);
  const int32_t tasks = static_cast<int32_t>(sc.task_names.size());
  const int32_t mms = static_cast<int32_t>(sc.mm_names.size());
  for (size_t i = 0; i < sc.program.size(); ++i) {
    const abi::Step& s = sc.program[i];
    FUZZ_CHECK(std::string(activemm::StepOpName(s.op)) != "?");
    FUZZ_CHECK(s.cpu < static_cast<uint32_t>(sc.cpus));
    FUZZ_CHECK(s.task >= abi::kNoTask && s.task < tasks);
    FUZZ_CHECK(s.mm >= abi::kNoMm && s.mm < mms);
    if (s.op == static_cast<uint32_t>(StepOp::kVerify)) FUZZ_CHECK(s.arg < sc.checks.size());
    if (s.op == static_cast<uint32_t>(StepOp::kParallel)) {
      FUZZ_CHECK(s.arg >= 1 && i + s.arg < sc.program.size());
    }
  }
  for (const activemm::HostCheck& c : sc.checks) {
    FUZZ_CHECK(c.step_index >= -1 && c.step_index < static_cast<int>(sc.step_ops.size()));
    if (c.mm_slot.has_value()) FUZZ_CHECK(*c.mm_slot >= 0 && *c.mm_slot < mms);
    if (c.task.has_value()) FUZZ_CHECK(*c.task >= 0 && *c.task < tasks);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  activemm::CompileOptions plain;
  absl::StatusOr<activemm::Scenario> sc = activemm::CompileScenario(text, "fuzz.json", plain);
  if (sc.ok()) CheckScenario(*sc, plain);
  // Text that is not a JSON object fails before the options are read: compiling it again would
  // repeat the same parse, error for error (most mutated inputs; the parse is most of the cost).
  if (!sc.ok()) {
    const absl::string_view message = sc.status().message();
    if (absl::StartsWith(message, "fuzz.json: invalid JSON: ") ||
        absl::StartsWith(message, "fuzz.json: empty: ") ||
        absl::StartsWith(message, "fuzz.json: the scenario must be a JSON object")) {
      return 0;
    }
  }

  activemm::CompileOptions overridden;
  overridden.cpus = static_cast<int>(size % 67) - 1;  // -1 .. 65
  overridden.verify_every_step = true;
  sc = activemm::CompileScenario(text, "fuzz.json", overridden);
  if (sc.ok()) CheckScenario(*sc, overridden);
  return 0;
}
