// `activemm replay` on real KVM: each real trace of ../shared/traces (Linux 6.18, 2 CPUs, PCID)
// and of tests/traces (Linux 6.1, 8 CPUs, no PCID) replays without a violation, every step and
// switch runs, and the emulator's CR3 loads match the traced kernel's. The decisions do not depend
// on the kernel's own CR3 load events: a copy of the trace with them commented out gives the same
// decisions, byte for byte. That second replay also runs one step at a time (no parallel blocks,
// vmm/replay/parallel_blocks.h): the decisions, every CPU's counters and every mm's final refcounts
// are the same as the first's, which ran its independent switches in parallel blocks.
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "shared/mm_abi.h"
#include "tests/kvm/kvm_test_util.h"
#include "vmm/replay/replay.h"
#include "vmm/replay/trace.h"

namespace activemm {
namespace {

namespace fs = std::filesystem;

struct SharedTrace {
  const char* name;
  int real_loads;           // CR3 loads of the traced kernel's switches; all matched today
  int extra_loads = 0;      // the emulator's loads where the kernel had none (docs/replay.md)
  int truth_unknown = 1;    // switches with no next event on their CPU: the trace's last ones
  bool in_repo = false;     // under tests/traces (must be there), else ../shared/traces
  int steps_in_blocks = 0;  // program steps the planner puts in parallel blocks
  friend std::ostream& operator<<(std::ostream& os, const SharedTrace& t) { return os << t.name; }
};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A temporary folder, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string templ = (fs::temp_directory_path() / "activemm-replay-XXXXXX").string();
    if (mkdtemp(templ.data()) != nullptr) path_ = templ;
  }
  ~TempDir() {
    if (!path_.empty()) {
      std::error_code ec;
      fs::remove_all(path_, ec);
    }
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The trace with every "flush on task switch (0)" line turned into a '#' comment.
std::string WithoutCr3Loads(const std::string& text, int* commented) {
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  *commented = 0;
  for (std::string& l : lines) {
    const Trace t = ParseTrace(l);
    if (t.events.size() == 1 && t.events[0].kind == TraceEventKind::kFlush &&
        t.events[0].reason == FlushReason::kTaskSwitch) {
      l = "#" + l;
      ++*commented;
    }
  }
  return absl::StrJoin(lines, "\n");
}

class ReplayTest : public KvmTest, public testing::WithParamInterface<SharedTrace> {
 protected:
  void SetUp() override {
    KvmTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    if (GetParam().in_repo) {
      path_ = std::string(ACTIVEMM_TEST_TRACES) + "/" + GetParam().name;
      ASSERT_TRUE(fs::is_directory(path_)) << path_;
    } else {
      path_ = std::string(ACTIVEMM_SHARED_TRACES) + "/" + GetParam().name;
      if (!fs::is_directory(path_)) GTEST_SKIP() << path_ << " is not there";
    }
  }

  // As `activemm replay` runs it with no mode flags: real PCIDs where the CPU has them, and
  // what the folder's machine.txt says of the traced kernel.
  ReplayOptions Options(const TraceDir& dir) const {
    ReplayOptions o;
    if (kvm().HasPcid()) o.run.pcid = abi::PcidMode::kHardware;
    ConfigureForTracedMachine(dir.machine, /*pcid_flag=*/false, /*lazy_flag=*/false, &o.run);
    return o;
  }

  std::string path_;
};

std::string Describe(const ReplayResult& r) {
  const ReplayScore& s = r.score;
  std::string out = absl::StrFormat(
      "steps %d/%d, %d violations; switches %d, placed %d, scored %d, real loads %d; "
      "tp %d fp %d fn %d; precision %.4f recall %.4f flush accuracy %.4f (%d of %d)",
      r.report.steps_done, r.report.steps_total, r.report.violations.size(), s.switches, s.placed,
      s.scored, s.real_loads, s.true_pos, s.false_pos, s.false_neg, s.precision(), s.recall(),
      s.flush_accuracy(), s.flush_right, s.flush_right + s.flush_wrong);
  for (size_t i = 0; i < r.report.violations.size() && i < 5; ++i) {
    absl::StrAppendFormat(&out, "\n  violation [%s] %s", r.report.violations[i].rule,
                          r.report.violations[i].message);
  }
  return out;
}

TEST_P(ReplayTest, MatchesTheKernelAndIgnoresItsCr3LoadEvents) {
  const SharedTrace& want = GetParam();
  absl::StatusOr<TraceDir> dir = LoadTraceDir(path_);
  ASSERT_TRUE(dir.ok()) << dir.status();
  absl::StatusOr<ReplayResult> r = RunReplay(kvm(), *dir, Options(*dir));
  ASSERT_TRUE(r.ok()) << r.status();
  const ReplayScore& s = r->score;
  const std::string what = Describe(*r);
  std::cout << "[ replay   ] " << want.name << ": " << what << " in " << r->seconds << " s\n";

  // The guest ran all of it, and the host found nothing wrong.
  EXPECT_TRUE(r->report.ok()) << what << "\n" << r->report.run.report;
  EXPECT_THAT(r->report.violations, testing::IsEmpty()) << what;
  EXPECT_EQ(r->report.steps_total, static_cast<int>(r->plan.scenario.program.size()));
  EXPECT_EQ(r->report.steps_done, r->report.steps_total) << what;
  // Every switch was placed and ran.
  int switch_events = 0;
  for (const TraceEvent& e : dir->trace.events) switch_events += e.kind == TraceEventKind::kSwitch;
  EXPECT_EQ(s.switches, switch_events);
  EXPECT_EQ(s.placed, switch_events) << what;
  EXPECT_EQ(s.unplaced, 0) << what;
  EXPECT_EQ(s.truth_unknown, want.truth_unknown) << what;
  // The score: today every real load is matched, with its flush, and the only extra load is
  // the one docs/replay.md explains (a CPU lazy on a task's mm from before the recording).
  EXPECT_EQ(s.real_loads, want.real_loads) << what;
  EXPECT_EQ(s.true_pos, want.real_loads) << what;
  EXPECT_EQ(s.false_pos, want.extra_loads) << what;
  EXPECT_EQ(s.flush_right, want.real_loads) << what;
  EXPECT_EQ(r->plan.stats.steps_in_parallel_blocks, want.steps_in_blocks);

  // The same folder without the kernel's CR3 loads: nothing to score against, the same
  // decisions.
  TempDir tmp;
  ASSERT_FALSE(tmp.path().empty());
  int commented = 0;
  {
    std::ofstream out(tmp.path() + "/trace.txt", std::ios::binary);
    out << WithoutCr3Loads(ReadAll(path_ + "/trace.txt"), &commented);
  }
  EXPECT_GT(commented, want.real_loads);
  for (const char* f : {"tgids.txt", "kthreads.txt", "kernel.txt", "machine.txt"}) {
    if (fs::exists(path_ + "/" + f)) fs::copy_file(path_ + "/" + f, tmp.path() + "/" + f);
  }
  absl::StatusOr<TraceDir> bare = LoadTraceDir(tmp.path());
  ASSERT_TRUE(bare.ok()) << bare.status();
  ASSERT_EQ(bare->trace.events.size() + commented, dir->trace.events.size());
  ReplayOptions serial = Options(*bare);
  serial.plan.parallel_blocks = false;
  absl::StatusOr<ReplayResult> rb = RunReplay(kvm(), *bare, serial);
  ASSERT_TRUE(rb.ok()) << rb.status();
  EXPECT_TRUE(rb->report.ok()) << Describe(*rb);
  EXPECT_EQ(rb->score.scored, 0);
  EXPECT_EQ(rb->score.placed, switch_events);
  EXPECT_EQ(rb->plan.stats.parallel_blocks, 0);

  // Parallel blocks or not, every CPU counted the same and every mm ended the same.
  ASSERT_EQ(r->report.cpus.size(), rb->report.cpus.size());
  for (size_t c = 0; c < r->report.cpus.size(); ++c) {
    const auto* a = reinterpret_cast<const uint64_t*>(&r->report.cpus[c]);
    const auto* b = reinterpret_cast<const uint64_t*>(&rb->report.cpus[c]);
    for (int k = 0; k < abi::kNumMmCounters; ++k) {
      EXPECT_EQ(a[k], b[k]) << "CPU " << c << " counter " << k << ", parallel vs serial";
    }
  }
  ASSERT_EQ(r->report.mms.size(), rb->report.mms.size());
  for (size_t m = 0; m < r->report.mms.size(); ++m) {
    const MmReport &a = r->report.mms[m], &b = rb->report.mms[m];
    EXPECT_TRUE(a.mm_users == b.mm_users && a.mm_count == b.mm_count && a.freed == b.freed)
        << "mm " << a.name << ": users " << a.mm_users << "/" << b.mm_users << ", count "
        << a.mm_count << "/" << b.mm_count << ", freed " << a.freed << "/" << b.freed
        << " (parallel/serial)";
  }

  const std::string csv = DecisionsCsv(*r);
  const std::string bare_csv = DecisionsCsv(*rb);
  EXPECT_TRUE(csv == bare_csv)
      << "the decisions differ without the CR3 load events, one step at a time";
  if (csv != bare_csv) {
    std::vector<std::string> a = absl::StrSplit(csv, '\n'), b = absl::StrSplit(bare_csv, '\n');
    for (size_t i = 0, shown = 0; i < std::min(a.size(), b.size()) && shown < 5; ++i) {
      if (a[i] != b[i]) {
        ADD_FAILURE() << "row " << i << ": " << a[i] << " vs " << b[i];
        ++shown;
      }
    }
  }
  // One row per sched_switch line, and a header.
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), switch_events + 1);
  EXPECT_TRUE(csv.starts_with("line,cpu,prev_pid,next_pid,cr3_load,flush\n"));
}

INSTANTIATE_TEST_SUITE_P(
    Traces, ReplayTest,
    testing::Values(SharedTrace{"make", 84}, SharedTrace{"pipe-proc", 174, 0, 1, false, 11825},
                    SharedTrace{"threads-fork-exec", 15, 0, 1, false, 562},
                    // tests/traces/README.md
                    SharedTrace{"linux61-8cpu-wl_forkexec", 27, 1, 7, true, 730},
                    SharedTrace{"linux61-8cpu-wl_threads", 564, 0, 5, true},
                    SharedTrace{"linux61-8cpu-wl_mmap_churn", 72, 0, 6, true}),
    [](const testing::TestParamInfo<SharedTrace>& info) {
      std::string name = info.param.name;
      std::replace(name.begin(), name.end(), '-', '_');
      return name;
    });

}  // namespace
}  // namespace activemm
