// The inputs the fuzzers (tests/fuzz) found to crash the host, each run through the function
// that failed; the fuzzers' corpora (tests/fuzz/corpus) keep them too.
#include <stdint.h>

#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "shared/mm_abi.h"
#include "vmm/kvm/guest_memory.h"
#include "vmm/kvm/kvm_host.h"
#include "vmm/model/model_state.h"
#include "vmm/model/scenario.h"
#include "vmm/model/scenario_run.h"
#include "vmm/replay/replay.h"
#include "vmm/replay/replay_plan.h"
#include "vmm/replay/trace.h"
#include "vmm/tools/timeline.h"

namespace activemm {
namespace {

using ::testing::HasSubstr;

// guest_memory_fuzz: an empty read into an empty vector's data() (ReadModel of 0 tasks) passed
// a null pointer to memcpy (UBSan: nonnull-attribute).
TEST(FuzzRegressionTest, EmptyGuestMemoryAccessTakesANullBuffer) {
  std::vector<uint8_t> ram(0x20000, 0);
  std::unique_ptr<GuestMemory> mem = GuestMemory::WrapForTesting(ram.data(), ram.size());
  EXPECT_TRUE(mem->ReadBytes(0x1000, nullptr, 0).ok());
  EXPECT_TRUE(mem->WriteBytes(0x1000, nullptr, 0).ok());
  absl::StatusOr<abi::MmDirectory> dir = mem->Read<abi::MmDirectory>(abi::kMmDirectoryPa);
  ASSERT_TRUE(dir.ok());
  absl::StatusOr<ModelSnapshot> snap = ReadModel(*mem, 0, 0, 0);
  ASSERT_TRUE(snap.ok()) << snap.status();
  EXPECT_TRUE(snap->tasks.empty());
}

// scenario_compiler_fuzz: a number beyond a double's range is out_of_range 406, not a
// parse_error, and escaped CompileScenario (std::terminate).
TEST(FuzzRegressionTest, NumberTooLargeForADoubleIsInvalidJson) {
  absl::StatusOr<Scenario> sc =
      CompileScenario(R"({"version": 1, "name": "x", "cpus": 1e999, "steps": []})", "big.json", {});
  ASSERT_FALSE(sc.ok());
  EXPECT_EQ(sc.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(sc.status().message(), HasSubstr("big.json"));
  EXPECT_THAT(sc.status().message(), HasSubstr("invalid JSON: number overflow parsing '1e999'"));
}

// guest_memory_fuzz: a guest step record's TSC near 2^64 made the timeline's conversion to
// nanoseconds overflow int64_t (UBSan: float-cast-overflow).
TEST(FuzzRegressionTest, TimelineOfAGuestTscNearTheEndOfTime) {
  absl::StatusOr<Scenario> sc = CompileScenario(DefaultScenarioJson(), "built-in", {});
  ASSERT_TRUE(sc.ok()) << sc.status();
  ScenarioReport report;
  report.tsc_khz = 1;
  report.step_records.resize(sc->program.size());
  for (size_t i = 0; i < report.step_records.size(); ++i) {
    abi::StepRecord& r = report.step_records[i];
    r.result = abi::kStepExecuted;
    r.tsc_begin = i == 0 ? 1 : std::numeric_limits<uint64_t>::max() - i;
    r.tsc_end = std::numeric_limits<uint64_t>::max();
  }
  TimelineRun run;
  run.label = "fuzz";
  run.scenario = &*sc;
  run.report = &report;
  const std::string json = TimelineJson({run}, nullptr, "");
  EXPECT_TRUE(nlohmann::json::accept(json));
}

// replay_planner_fuzz: a task name (a comm) or kernel release that is not UTF-8 made the JSON
// writer throw (type_error 316) in --timeline and --json of `activemm replay`.
TEST(FuzzRegressionTest, ReplayJsonOfATraceThatIsNotUtf8) {
  const std::string trace =
      "# entries-in-buffer/entries-written: 2/2   #P:1\n"
      "          <idle>-0       (-------) [000] d..2.   714.432315: sched_switch: "
      "prev_comm=swapper/0 prev_pid=0 prev_prio=120 prev_state=R ==> next_comm=w\xff\xfeker "
      "next_pid=15 next_prio=120\n"
      "       w\xff\xfeker-15      (     15) [000] d..2.   714.432327: sched_switch: "
      "prev_comm=w\xff\xfeker prev_pid=15 prev_prio=120 prev_state=S ==> next_comm=swapper/0 "
      "next_pid=0 next_prio=120\n";
  absl::StatusOr<TraceDir> dir = ParseTraceDir("t", trace, "", "", "6.1-\xff\n1\n");
  ASSERT_TRUE(dir.ok()) << dir.status();
  absl::StatusOr<ReplayPlan> plan = PlanReplay(*dir, {});
  ASSERT_TRUE(plan.ok()) << plan.status();
  ReplayResult r;
  r.plan = *std::move(plan);
  r.report.step_records.resize(r.plan.scenario.program.size());
  const std::string timeline = ReplayTimeline(*dir, r);
  EXPECT_TRUE(nlohmann::json::accept(timeline));
  EXPECT_THAT(timeline, HasSubstr("\xef\xbf\xbd"));  // U+FFFD where the bad bytes were
  EXPECT_THAT(timeline, HasSubstr("ker-15"));
  const std::string json = ReplayJson(*dir, r, KvmHost{});
  EXPECT_TRUE(nlohmann::json::accept(json));
}

}  // namespace
}  // namespace activemm
