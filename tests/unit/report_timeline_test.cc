// The run report (vmm/model/report.h) and the timeline (vmm/tools/timeline.h) in-process, from a
// ScenarioReport written by hand: what a run's text, JSON and Perfetto file say about it. The
// KVM and CLI tests check them on real runs; these pin what each figure is made of.
#include <stdint.h>

#include <algorithm>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "shared/mm_abi.h"
#include "vmm/kvm/kvm_host.h"
#include "vmm/model/mm_verifier.h"
#include "vmm/model/report.h"
#include "vmm/model/scenario.h"
#include "vmm/model/scenario_run.h"
#include "vmm/tools/timeline.h"

namespace activemm {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Two CPUs: CPU 0 runs A (a CR3 load that flushes), then the kernel thread K (lazy on A); CPU 1
// runs B, sending a flush IPI to CPU 0 on the way.
class ReportTimelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sc_.name = "hand-made";
    sc_.cpus = 2;
    sc_.task_names = {"idle/0", "idle/1", "A", "B", "K"};
    sc_.mm_names = {"init_mm", "A", "B"};
    sc_.program = {ModelStep(abi::StepOp::kRun, 0, 2, 0, false),
                   ModelStep(abi::StepOp::kRun, 1, 3, 1, false),
                   ModelStep(abi::StepOp::kRun, 0, 4, 2, false)};
    r_.scenario = sc_.name;
    r_.cpus.resize(2);
    r_.cpus[0].context_switches = 2;
    r_.cpus[0].cr3_writes = 1;
    r_.cpus[0].cr3_writes_flush = 1;
    r_.cpus[1].context_switches = 1;
    r_.cpus[1].cr3_writes = 1;
    r_.cpus[1].cr3_writes_flush = 1;
    r_.cpus[1].ipis_sent = 1;
    r_.totals.context_switches = 3;
    r_.totals.cr3_writes = 2;
    r_.totals.cr3_writes_flush = 2;
    r_.totals.ipis_sent = 1;
    r_.checks_passed = 2;
    r_.mms = {{"A", 1, 2, false}, {"B", 1, 1, false}, {"C", 0, 0, true}};
    r_.run.outcome = Outcome::kCompleted;
    r_.steps_done = r_.steps_total = 3;
    r_.verifications = 4;
    r_.tsc_khz = 1000000;  // 1 GHz: a cycle is a nanosecond
    const uint8_t load = abi::kStepExecuted | abi::kStepCr3Load | abi::kStepCr3Flush;
    r_.step_records = {
        {1000, 2000, 0, 0, /*loaded_mm=*/1, /*curr=*/2, load, 0, {}},
        {3000, 4000, /*ipi_cpus=*/1, 0, 2, 3, load, 0, {}},
        {5000, 6000, 0, 0, 1, 4, abi::kStepExecuted, /*is_lazy=*/1, {}},
    };
    host_ = ClassifyKvmHost("kvm_pvm", true, "KVMKVMKVM", false, 12);
  }

  Scenario sc_;
  ScenarioReport r_;
  KvmHost host_;
};

TEST_F(ReportTimelineTest, TheTextReportSaysWhatRanAndHowItEnded) {
  const std::string text = FormatRunReport(r_, host_);
  EXPECT_THAT(text, HasSubstr("scenario 'hand-made', 2 CPUs, lazy TLB on, PCID modeled"));
  EXPECT_THAT(text, HasSubstr("steps: 3/3 executed"));
  // Live mms by name, freed ones counted.
  EXPECT_THAT(text,
              HasSubstr("mms at the end: A (users 1, count 2) B (users 1, count 1); 1 freed"));
  EXPECT_THAT(text, Not(HasSubstr("violation ")));

  r_.violations.push_back({"mm_count", "mm 'A': mm_count is 2, expected 1", 2});
  EXPECT_FALSE(r_.ok());
  EXPECT_THAT(FormatRunReport(r_, host_), HasSubstr("mm 'A': mm_count is 2, expected 1"));
}

TEST_F(ReportTimelineTest, TheJsonCarriesEveryCounterPerCpuAndInTotal) {
  const nlohmann::json j = RunReportJson(r_, host_);
  EXPECT_EQ(j["totals"]["cr3_writes"], 2);
  EXPECT_EQ(j["totals"]["ipis_sent"], 1);
  ASSERT_EQ(j["cpus"].size(), 2u);
  EXPECT_EQ(j["cpus"][0]["context_switches"], 2);
  EXPECT_EQ(j["cpus"][1]["ipis_sent"], 1);
  // Every counter the ABI has, by its name, in both.
  for (const std::string& name : MmCounterNames()) {
    EXPECT_TRUE(j["totals"].contains(name)) << name;
    EXPECT_TRUE(j["cpus"][0].contains(name)) << name;
  }
  EXPECT_EQ(j["run"]["verifications"], 4);
  EXPECT_EQ(j["run"]["steps_done"], 3);
  EXPECT_EQ(j["mms"].size(), 3u);
  EXPECT_EQ(j["mms"][2]["freed"], true);
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["host"]["kind"], "software");

  r_.violations.push_back({"cr3", "CPU 0: real CR3 is 0x1000", -1});
  const nlohmann::json bad = RunReportJson(r_, host_);
  EXPECT_EQ(bad["ok"], false);
  ASSERT_EQ(bad["violations"].size(), 1u);
  EXPECT_EQ(bad["violations"][0]["rule"], "cr3");
  EXPECT_EQ(bad["violations"][0]["step"], -1);
}

TEST_F(ReportTimelineTest, TheTimelineHasATrackPerCpuTheCr3LoadsAndTheIpis) {
  const std::string text = TimelineJson({{"activemm: lazy on", &sc_, &r_, {}}}, nullptr, "");
  const nlohmann::json j = nlohmann::json::parse(text);
  std::vector<std::string> threads, instants, slices;
  for (const nlohmann::json& e : j["traceEvents"]) {
    if (e["name"] == "thread_name") threads.push_back(e["args"]["name"]);
    if (e["ph"] == "i") instants.push_back(e["name"]);
    if (e["ph"] == "X") slices.push_back(e["name"]);
  }
  EXPECT_THAT(threads, testing::ElementsAre("CPU 0", "CPU 1"));
  // Two CR3 loads, both flushing; one IPI, from CPU 1 to CPU 0.
  EXPECT_EQ(std::count(instants.begin(), instants.end(), "CR3 load (flush)"), 2);
  EXPECT_THAT(instants, testing::Contains("flush IPI -> CPU 0"));
  // CPU 0: idle on init_mm, A on A, then K lazy on A (to the end).
  EXPECT_THAT(slices, testing::Contains("A [A]"));
  EXPECT_THAT(slices, testing::Contains("K (lazy on A)"));
  EXPECT_THAT(slices, testing::Contains("B [B]"));
}

}  // namespace
}  // namespace activemm
