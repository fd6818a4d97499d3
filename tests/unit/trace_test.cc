// The ftrace text parser: every event kind field by field, the lines it must count and skip
// rather than trust, trace folders, and the real traces in ../shared/traces.
#include "vmm/replay/trace.h"

#include <stdint.h>
#include <stdlib.h>

#include <algorithm>
#include <array>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace activemm {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kSwitchLine[] =
    "            bash-6140    (   6140) [001] d..2.   713.868165: sched_switch: prev_comm=bash "
    "prev_pid=6140 prev_prio=120 prev_state=S ==> next_comm=swapper/1 next_pid=0 next_prio=120";
constexpr char kFlushLine[] =
    "          <idle>-0       (-------) [000] d..2.   713.868112: tlb_flush: pages:-1 "
    "reason:flush on task switch (0)";
constexpr char kForkLine[] =
    "            bash-6140    (   6140) [001] .....   713.868087: sched_process_fork: comm=bash "
    "pid=6140 child_comm=bash child_pid=6143";
constexpr char kExecLine[] =
    "            bash-6143    (   6143) [000] .....   713.868445: sched_process_exec: "
    "filename=run-workload.sh pid=6143 old_pid=6143";
constexpr char kExitLine[] =
    "         dirname-6145    (   6145) [000] .....   713.871907: sched_process_exit: "
    "comm=dirname pid=6145 prio=120 group_dead=true";
constexpr char kIpiLine[] =
    "      sched-pipe-6214    (   6214) [001] ...2.   714.495182: tlb_flush: pages:1 "
    "reason:remote IPI send (4)";
constexpr char kWakeupLine[] =
    "            bash-6140    (   6140) [001] d..2.   713.868000: sched_wakeup: comm=cat "
    "pid=6150 prio=120 target_cpu=000";
constexpr char kHeader[] = "# entries-in-buffer/entries-written: 6104/6104   #P:2";

// Every line is exactly one of these; the parser must never lose or double-count one.
void ExpectConsistent(const Trace& t) {
  const TraceStats& s = t.stats;
  EXPECT_EQ(s.lines, s.comments + s.events + s.malformed + s.other_events);
  EXPECT_EQ(s.events, static_cast<int>(t.events.size()));
  EXPECT_EQ(s.malformed_lines.size(), static_cast<size_t>(std::min(s.malformed, 10)));
  EXPECT_TRUE(std::is_sorted(s.malformed_lines.begin(), s.malformed_lines.end()));
  int lost_markers = 0;
  uint64_t lost_events = 0;
  int prev_line = 0;
  for (const TraceEvent& e : t.events) {
    EXPECT_GT(e.line, prev_line);
    EXPECT_LE(e.line, s.lines);
    EXPECT_GE(e.cpu, 0);
    EXPECT_LT(e.cpu, 4096);
    if (t.num_cpus > 0) {
      EXPECT_LT(e.cpu, t.num_cpus);
    }
    prev_line = e.line;
    if (e.kind == TraceEventKind::kLost) {
      ++lost_markers;
      lost_events += e.lost;
    }
  }
  EXPECT_EQ(s.lost_markers, lost_markers);
  EXPECT_EQ(s.lost_events, lost_events);
  for (int line : s.malformed_lines) {
    EXPECT_GE(line, 1);
    EXPECT_LE(line, s.lines);
  }
}

// A trace of one event line: the event, or a failure naming how the line was classified.
// An event's names live in its Trace's pool, so the one-line traces are kept for the life of
// the test binary (a few hundred lines).
TraceEvent ParseOne(const std::string& line) {
  static std::deque<Trace>* const kept = new std::deque<Trace>;
  const Trace& t = kept->emplace_back(ParseTrace(line));
  ExpectConsistent(t);
  EXPECT_EQ(t.stats.events, 1) << line;
  EXPECT_EQ(t.stats.malformed, 0) << line;
  EXPECT_EQ(t.events.size(), 1u);
  return t.events.empty() ? TraceEvent{} : t.events.front();
}

// Whether a single line is counted malformed (and nothing else).
bool IsMalformed(const std::string& line) {
  Trace t = ParseTrace(line);
  ExpectConsistent(t);
  return t.stats.lines == 1 && t.stats.malformed == 1 && t.events.empty();
}

TEST(TraceParseTest, SwitchHasEveryField) {
  TraceEvent e = ParseOne(kSwitchLine);
  EXPECT_EQ(e.kind, TraceEventKind::kSwitch);
  EXPECT_EQ(e.line, 1);
  EXPECT_EQ(e.cpu, 1);
  EXPECT_EQ(e.pid, 6140);
  EXPECT_EQ(e.tgid, 6140);
  EXPECT_EQ(e.comm, "bash");
  EXPECT_EQ(e.flags, "d..2.");
  EXPECT_EQ(e.timestamp_ns, 713868165000);
  EXPECT_EQ(e.prev_comm, "bash");
  EXPECT_EQ(e.prev_pid, 6140);
  EXPECT_EQ(e.prev_state, "S");
  EXPECT_EQ(e.next_comm, "swapper/1");
  EXPECT_EQ(e.next_pid, 0);
}

TEST(TraceParseTest, SwitchStatesAndPriorities) {
  TraceEvent e = ParseOne(
      "          <idle>-0       (-------) [000] d..2.     5.000001: sched_switch: "
      "prev_comm=swapper/0 prev_pid=0 prev_prio=120 prev_state=R+ ==> next_comm=migration/0 "
      "next_pid=19 next_prio=0");
  EXPECT_EQ(e.prev_state, "R+");
  EXPECT_EQ(e.next_comm, "migration/0");
  EXPECT_EQ(e.next_pid, 19);
  // SCHED_DEADLINE tasks have prio -1.
  e = ParseOne(
      "            dl-7       (      7) [000] d..2.     5.000002: sched_switch: prev_comm=dl "
      "prev_pid=7 prev_prio=-1 prev_state=D|K ==> next_comm=x next_pid=8 next_prio=-1");
  EXPECT_EQ(e.prev_state, "D|K");
  EXPECT_EQ(e.next_pid, 8);
}

TEST(TraceParseTest, ForkHasEveryField) {
  TraceEvent e = ParseOne(kForkLine);
  EXPECT_EQ(e.kind, TraceEventKind::kFork);
  EXPECT_EQ(e.line, 1);
  EXPECT_EQ(e.cpu, 1);
  EXPECT_EQ(e.pid, 6140);
  EXPECT_EQ(e.tgid, 6140);
  EXPECT_EQ(e.comm, "bash");
  EXPECT_EQ(e.flags, ".....");
  EXPECT_EQ(e.timestamp_ns, 713868087000);
  EXPECT_EQ(e.child_pid, 6143);
  EXPECT_EQ(e.child_comm, "bash");
}

TEST(TraceParseTest, ExecHasEveryField) {
  TraceEvent e = ParseOne(kExecLine);
  EXPECT_EQ(e.kind, TraceEventKind::kExec);
  EXPECT_EQ(e.cpu, 0);
  EXPECT_EQ(e.pid, 6143);
  EXPECT_EQ(e.tgid, 6143);
  EXPECT_EQ(e.comm, "bash");
  EXPECT_EQ(e.flags, ".....");
  EXPECT_EQ(e.timestamp_ns, 713868445000);
  EXPECT_EQ(e.filename, "run-workload.sh");
  // A path with spaces, and even " pid=" in it, ends at the last " pid=".
  e = ParseOne(
      "             sh-12      (     12) [000] .....     1.000000: sched_process_exec: "
      "filename=/tmp/my dir/a pid=3/run pid=12 old_pid=14");
  EXPECT_EQ(e.filename, "/tmp/my dir/a pid=3/run");
  EXPECT_EQ(e.pid, 12);
}

TEST(TraceParseTest, ExitHasEveryField) {
  TraceEvent e = ParseOne(kExitLine);
  EXPECT_EQ(e.kind, TraceEventKind::kExit);
  EXPECT_EQ(e.cpu, 0);
  EXPECT_EQ(e.pid, 6145);
  EXPECT_EQ(e.tgid, 6145);
  EXPECT_EQ(e.comm, "dirname");
  EXPECT_EQ(e.flags, ".....");
  EXPECT_EQ(e.timestamp_ns, 713871907000);
  // Before Linux 6.16 there was no group_dead.
  e = ParseOne(
      "         dirname-6145    (   6145) [000] .....   713.871907: sched_process_exit: "
      "comm=dirname pid=6145 prio=120");
  EXPECT_EQ(e.kind, TraceEventKind::kExit);
  EXPECT_EQ(e.pid, 6145);
  EXPECT_TRUE(IsMalformed(
      "         dirname-6145    (   6145) [000] .....   713.871907: sched_process_exit: "
      "comm=dirname pid=6145 prio=120 group_dead=maybe"));
}

TEST(TraceParseTest, FlushHasEveryField) {
  TraceEvent e = ParseOne(kFlushLine);
  EXPECT_EQ(e.kind, TraceEventKind::kFlush);
  EXPECT_EQ(e.cpu, 0);
  EXPECT_EQ(e.pid, 0);
  EXPECT_EQ(e.tgid, -1);
  EXPECT_EQ(e.comm, "<idle>");
  EXPECT_EQ(e.flags, "d..2.");
  EXPECT_EQ(e.timestamp_ns, 713868112000);
  EXPECT_EQ(e.pages, -1);
  EXPECT_EQ(e.reason, FlushReason::kTaskSwitch);

  e = ParseOne(kIpiLine);
  EXPECT_EQ(e.comm, "sched-pipe");
  EXPECT_EQ(e.pid, 6214);
  EXPECT_EQ(e.flags, "...2.");
  EXPECT_EQ(e.pages, 1);
  EXPECT_EQ(e.reason, FlushReason::kRemoteSendIpi);
}

TEST(TraceParseTest, FlushReasonsByNumberNotName) {
  const std::array<FlushReason, 6> want = {
      FlushReason::kTaskSwitch,       FlushReason::kRemoteShootdown, FlushReason::kLocalShootdown,
      FlushReason::kLocalMmShootdown, FlushReason::kRemoteSendIpi,   FlushReason::kRemoteWrongCpu};
  for (int r = 0; r < 6; ++r) {
    TraceEvent e = ParseOne(absl::StrFormat(
        "               a-1       (      1) [000] d.h1.     1.000000: tlb_flush: pages:%d "
        "reason:some other name (%d)",
        r * 100, r));
    EXPECT_EQ(e.reason, want[r]);
    EXPECT_EQ(e.pages, r * 100);
  }
  // An empty reason name is still the format "reason:%s (%d)".
  EXPECT_EQ(ParseOne("a-1 (1) [000] d..2. 1.0: tlb_flush: pages:0 reason: (5)").reason,
            FlushReason::kRemoteWrongCpu);
  // Reasons the kernel does not have, and pages below TLB_FLUSH_ALL.
  const std::string prefix = "a-1 (1) [000] d..2. 1.0: tlb_flush: ";
  EXPECT_TRUE(IsMalformed(prefix + "pages:1 reason:new (6)"));
  EXPECT_TRUE(IsMalformed(prefix + "pages:1 reason:new (-1)"));
  EXPECT_TRUE(IsMalformed(prefix + "pages:1 reason:new (99999999999999999999)"));
  EXPECT_TRUE(IsMalformed(prefix + "pages:-2 reason:flush on task switch (0)"));
  EXPECT_TRUE(IsMalformed(prefix + "pages:x reason:flush on task switch (0)"));
  EXPECT_TRUE(IsMalformed(prefix + "pages:1 reason:flush on task switch (0"));
  EXPECT_TRUE(IsMalformed(prefix + "pages:1 reason:flush on task switch ()"));
  EXPECT_TRUE(IsMalformed(prefix + "pages:1 reason:(0)"));
  EXPECT_TRUE(IsMalformed(prefix + "pages:1 (0)"));
}

TEST(TraceParseTest, CommWithSpacesDashesColonsAndSlashes) {
  TraceEvent e = ParseOne(
      " memfd:sealed-91-1564    (   1560) [001] d..2.    10.000000: tlb_flush: pages:0 "
      "reason:flush on task switch (0)");
  EXPECT_EQ(e.comm, "memfd:sealed-91");
  EXPECT_EQ(e.pid, 1564);
  EXPECT_EQ(e.tgid, 1560);

  e = ParseOne(
      "    kworker/u8:0-12      (     12) [000] d..2.    10.000001: sched_switch: "
      "prev_comm=kworker/u8:0 prev_pid=12 prev_prio=120 prev_state=I ==> "
      "next_comm=gmain thread next_pid=777 next_prio=120");
  EXPECT_EQ(e.comm, "kworker/u8:0");
  EXPECT_EQ(e.pid, 12);
  EXPECT_EQ(e.next_comm, "gmain thread");
  EXPECT_EQ(e.next_pid, 777);

  e = ParseOne(
      "    gmain thread-777     (    770) [000] d..2.    10.000002: sched_switch: "
      "prev_comm=gmain thread prev_pid=777 prev_prio=120 prev_state=S ==> "
      "next_comm=a-b (c) [d] next_pid=5 next_prio=120");
  EXPECT_EQ(e.comm, "gmain thread");
  EXPECT_EQ(e.pid, 777);
  EXPECT_EQ(e.tgid, 770);
  EXPECT_EQ(e.prev_comm, "gmain thread");
  EXPECT_EQ(e.next_comm, "a-b (c) [d]");

  // A comm with " [" and "(": the CPU column is the " [" that yields a whole header.
  e = ParseOne(
      "    x [1] (y)-42      (     40) [001] .....    10.000003: sched_process_fork: "
      "comm=x [1] (y) pid=42 child_comm=x [1] (y) child_pid=43");
  EXPECT_EQ(e.comm, "x [1] (y)");
  EXPECT_EQ(e.pid, 42);
  EXPECT_EQ(e.tgid, 40);
  EXPECT_EQ(e.cpu, 1);
  EXPECT_EQ(e.child_comm, "x [1] (y)");
  EXPECT_EQ(e.child_pid, 43);

  // Saved-cmdlines misses print "<...>".
  e = ParseOne(
      "           <...>-9       (      9) [000] .....    10.000004: sched_process_exit: "
      "comm=cc1 pid=9 prio=120 group_dead=false");
  EXPECT_EQ(e.comm, "<...>");
  EXPECT_EQ(e.pid, 9);
}

TEST(TraceParseTest, IdleTaskAndMissingTgidColumn) {
  TraceEvent e = ParseOne(kFlushLine);
  EXPECT_EQ(e.tgid, -1);
  EXPECT_EQ(e.pid, 0);
  // Recorded without record-tgid: no TGID column at all.
  e = ParseOne(
      "            bash-6140    [001] d..2.   713.868165: sched_switch: prev_comm=bash "
      "prev_pid=6140 prev_prio=120 prev_state=S ==> next_comm=swapper/1 next_pid=0 "
      "next_prio=120");
  EXPECT_EQ(e.pid, 6140);
  EXPECT_EQ(e.tgid, -1);
  EXPECT_EQ(e.comm, "bash");
  EXPECT_EQ(e.cpu, 1);
  // Older kernels print a 4-character flags column.
  e = ParseOne("            bash-6140  [001] d..2   713.868165: tlb_flush: pages:3 reason:x (2)");
  EXPECT_EQ(e.flags, "d..2");
  EXPECT_EQ(e.reason, FlushReason::kLocalShootdown);
}

TEST(TraceParseTest, TimestampsAreExactNanoseconds) {
  const std::string tail = ": tlb_flush: pages:0 reason:x (0)";
  auto ts = [&](const std::string& stamp) {
    return ParseOne("a-1 (1) [000] d..2. " + stamp + tail).timestamp_ns;
  };
  EXPECT_EQ(ts("713.868165"), 713868165000);
  EXPECT_EQ(ts("0.000001"), 1000);
  EXPECT_EQ(ts("12345.123456789"), 12345123456789);
  EXPECT_EQ(ts("1.5"), 1500000000);
  // Digits beyond nanoseconds are dropped, not rounded.
  EXPECT_EQ(ts("1.9999999999"), 1999999999);
  // A double would lose the last digits here.
  EXPECT_EQ(ts("9223372035.999999999"), 9223372035999999999);
  EXPECT_EQ(ts("9223372036.854775807"), INT64_MAX);
  EXPECT_TRUE(IsMalformed("a-1 (1) [000] d..2. 9223372036.854775808" + tail));
  EXPECT_TRUE(IsMalformed("a-1 (1) [000] d..2. 99999999999999999999.0" + tail));
  EXPECT_TRUE(IsMalformed("a-1 (1) [000] d..2. 713" + tail));
  EXPECT_TRUE(IsMalformed("a-1 (1) [000] d..2. 713." + tail));
  EXPECT_TRUE(IsMalformed("a-1 (1) [000] d..2. .5" + tail));
  EXPECT_TRUE(IsMalformed("a-1 (1) [000] d..2. 7a3.5" + tail));
  EXPECT_TRUE(IsMalformed("a-1 (1) [000] d..2. -1.5" + tail));
}

TEST(TraceParseTest, LostMarkers) {
  Trace t = ParseTrace(absl::StrCat(kHeader, "\n", kSwitchLine, "\nCPU:1 [LOST 123 EVENTS]\n",
                                    kFlushLine, "\nCPU:0 [LOST EVENTS]\nCPU:1 [LOST 7 EVENTS]\n"));
  ExpectConsistent(t);
  EXPECT_EQ(t.stats.lines, 6);
  EXPECT_EQ(t.stats.events, 5);
  EXPECT_EQ(t.stats.lost_markers, 3);
  EXPECT_EQ(t.stats.lost_events, 130u);
  ASSERT_EQ(t.events.size(), 5u);
  const TraceEvent& lost = t.events[1];
  EXPECT_EQ(lost.kind, TraceEventKind::kLost);
  EXPECT_EQ(lost.line, 3);
  EXPECT_EQ(lost.cpu, 1);
  EXPECT_EQ(lost.lost, 123u);
  EXPECT_EQ(lost.pid, -1);
  EXPECT_EQ(lost.tgid, -1);
  EXPECT_EQ(lost.timestamp_ns, 0);
  // ftrace could not count them.
  EXPECT_EQ(t.events[3].kind, TraceEventKind::kLost);
  EXPECT_EQ(t.events[3].cpu, 0);
  EXPECT_EQ(t.events[3].lost, 0u);
  EXPECT_EQ(t.events[3].line, 5);
  EXPECT_EQ(t.events[4].lost, 7u);

  for (const char* bad :
       {"CPU:1 [LOST 123 EVENTS", "CPU:1 [LOST 123 EVENTS] x", "CPU:x [LOST 1 EVENTS]",
        "CPU:-1 [LOST 1 EVENTS]", "CPU:4096 [LOST 1 EVENTS]", "CPU:1 [LOST -5 EVENTS]",
        "CPU:1 [LOST 99999999999999999999999 EVENTS]", "CPU:1 [LOST",
        "CPU:", "CPU:1 [LOST  EVENTS]"}) {
    EXPECT_TRUE(IsMalformed(bad)) << bad;
  }
  EXPECT_EQ(ParseOne("CPU:1 [LOST 18446744073709551615 EVENTS]").lost, UINT64_MAX);
}

TEST(TraceParseTest, HeaderGivesCpuCount) {
  Trace t = ParseTrace(absl::StrCat("# tracer: nop\n#\n", kHeader, "\n#\n", kSwitchLine, "\n"));
  ExpectConsistent(t);
  EXPECT_EQ(t.num_cpus, 2);
  EXPECT_EQ(t.stats.comments, 4);
  EXPECT_EQ(t.stats.events, 1);

  t = ParseTrace(kSwitchLine);
  EXPECT_EQ(t.num_cpus, 0);

  t = ParseTrace("# entries-in-buffer/entries-written: 1/1   #P:64\n");
  EXPECT_EQ(t.num_cpus, 64);
  EXPECT_EQ(t.stats.comments, 1);

  // A "#P:" that is not a CPU count, or contradicts the first, is malformed, not a comment.
  t = ParseTrace("#P:2\n#P:x\n#P:0\n#P:\n#P:99999999999\n#P:3\n#P:2 \n");
  ExpectConsistent(t);
  EXPECT_EQ(t.num_cpus, 2);
  EXPECT_EQ(t.stats.comments, 2);
  EXPECT_EQ(t.stats.malformed, 5);
  EXPECT_THAT(t.stats.malformed_lines, ElementsAre(2, 3, 4, 5, 6));
}

TEST(TraceParseTest, EventsOnCpusBeyondTheHeaderAreMalformed) {
  Trace t = ParseTrace(absl::StrCat(
      kHeader, "\n", kSwitchLine, "\n",
      "a-1 (1) [002] d..2. 1.0: tlb_flush: pages:0 reason:x (0)\nCPU:2 [LOST 5 EVENTS]\n",
      "a-1 (1) [4095] d..2. 1.0: tlb_flush: pages:0 reason:x (0)\n"));
  ExpectConsistent(t);
  EXPECT_EQ(t.stats.events, 1);
  EXPECT_EQ(t.stats.malformed, 3);
  EXPECT_EQ(t.stats.lost_markers, 0);
  EXPECT_EQ(t.stats.lost_events, 0u);
  EXPECT_THAT(t.stats.malformed_lines, ElementsAre(3, 4, 5));

  // A header after the events (a hand-made file) still applies to all of them.
  t = ParseTrace(absl::StrCat("a-1 (1) [003] d..2. 1.0: tlb_flush: pages:0 reason:x (0)\n",
                              kSwitchLine, "\nCPU:7 [LOST 5 EVENTS]\n", kHeader, "\n"));
  ExpectConsistent(t);
  EXPECT_EQ(t.num_cpus, 2);
  EXPECT_EQ(t.stats.events, 1);
  EXPECT_EQ(t.stats.comments, 1);
  EXPECT_EQ(t.stats.lost_markers, 0);
  EXPECT_THAT(t.stats.malformed_lines, ElementsAre(1, 3));
}

TEST(TraceParseTest, CpuColumnOutOfRange) {
  const std::string tail = " d..2. 1.0: tlb_flush: pages:0 reason:x (0)";
  EXPECT_EQ(ParseOne("a-1 (1) [4095]" + tail).cpu, 4095);
  EXPECT_TRUE(IsMalformed("a-1 (1) [4096]" + tail));
  EXPECT_TRUE(IsMalformed("a-1 (1) [-01]" + tail));
  EXPECT_TRUE(IsMalformed("a-1 (1) [99999999999999999999]" + tail));
  EXPECT_TRUE(IsMalformed("a-1 (1) []" + tail));
  EXPECT_TRUE(IsMalformed("a-1 (1) [0x1]" + tail));
}

TEST(TraceParseTest, CommentsAndBlankLines) {
  Trace t = ParseTrace("# tracer: nop\n\n   \n\t\n#\n##### CPU 1 buffer started ####\n");
  ExpectConsistent(t);
  EXPECT_EQ(t.stats.lines, 6);
  EXPECT_EQ(t.stats.comments, 6);
  EXPECT_EQ(t.stats.events, 0);
  EXPECT_EQ(t.num_cpus, 0);
  // Only a '#' in the first column makes a comment: a comm may start with one.
  TraceEvent e = ParseOne("   #x-5 (5) [000] ..... 1.0: tlb_flush: pages:0 reason:x (0)");
  EXPECT_EQ(e.comm, "#x");
}

TEST(TraceParseTest, UnknownEventTypesCountAsOther) {
  Trace t = ParseTrace(absl::StrCat(
      kWakeupLine, "\n", kSwitchLine, "\n",
      "          <idle>-0       (-------) [000] d.h1.   713.868000: irq_handler_entry: irq=24 "
      "name=virtio0\n",
      "            bash-1    (   1) [000] .....     1.000000: tracing_mark_write: hello: there\n",
      "            bash-1    (   1) [000] .....     1.000000: no_fields:\n"));
  ExpectConsistent(t);
  EXPECT_EQ(t.stats.lines, 5);
  EXPECT_EQ(t.stats.other_events, 4);
  EXPECT_EQ(t.stats.events, 1);
  EXPECT_EQ(t.stats.malformed, 0);
  ASSERT_EQ(t.events.size(), 1u);
  EXPECT_EQ(t.events[0].line, 2);
}

TEST(TraceParseTest, PayloadPidMustBeTheLineTask) {
  // The replay reads `pid` as both the running task and the payload's task.
  EXPECT_TRUE(IsMalformed(
      "            bash-6140    (   6140) [001] d..2.   713.868165: sched_switch: prev_comm=bash "
      "prev_pid=6141 prev_prio=120 prev_state=S ==> next_comm=swapper/1 next_pid=0 "
      "next_prio=120"));
  EXPECT_TRUE(IsMalformed(
      "            bash-6140    (   6140) [001] .....   713.868087: sched_process_fork: "
      "comm=bash pid=1 child_comm=bash child_pid=6143"));
  EXPECT_TRUE(IsMalformed(
      "            bash-6143    (   6143) [000] .....   713.868445: sched_process_exec: "
      "filename=run-workload.sh pid=6142 old_pid=6142"));
  EXPECT_TRUE(IsMalformed(
      "         dirname-6145    (   6145) [000] .....   713.871907: sched_process_exit: "
      "comm=dirname pid=6 prio=120 group_dead=true"));
}

TEST(TraceParseTest, MalformedLinesAreCountedAndSkipped) {
  const std::vector<std::string> bad = {
      "garbage",
      "            bash-6140    (   6140) [001] d..2.   713.868165: sched_switch: prev_comm=bash",
      "            bash-x       (   6140) [001] d..2.   713.868165: tlb_flush: pages:0 reason:x "
      "(0)",
      "            bash         (   6140) [001] d..2.   713.868165: tlb_flush: pages:0 reason:x "
      "(0)",
      "            bash-6140    (   61x0) [001] d..2.   713.868165: tlb_flush: pages:0 reason:x "
      "(0)",
      "            bash-6140    (       ) [001] d..2.   713.868165: tlb_flush: pages:0 reason:x "
      "(0)",
      "            bash-6140    (   6140) [001] d..2.   713.868165 tlb_flush: pages:0 reason:x (0)",
      "            bash-6140    (   6140) [001]   713.868165: tlb_flush: pages:0 reason:x (0)",
      "            bash-6140    (   6140) [001] d..2..   713.868165: tlb_flush: pages:0 reason:x "
      "(0)",
      "            bash-99999999999 (   6140) [001] d..2. 1.0: tlb_flush: pages:0 reason:x (0)",
      "            bash-6140    (   6140) [001] d..2.   713.868165: tlb-flush: pages:0 reason:x "
      "(0)",
      "            bash-6140    (   6140) [001] d..2.   713.868165: sched_switch",
      "            bash-6140    (   6140) [001] d..2.   713.868165: sched_switch:x",
      "            bash-6140    (   6140) [001] d..2.   713.868165: tlb_flush: pages:"
      "99999999999999999999 reason:x (0)",
      "            bash-6140    (   6140) [001] d..2.   713.868165: sched_process_fork: comm=bash "
      "pid=6140 child_comm=bash child_pid=-3",
      "            bash-6140    (   6140) [001] d..2.   713.868165: sched_switch: prev_comm=bash "
      "prev_pid=6140 prev_prio=120 prev_state= ==> next_comm=swapper/1 next_pid=0 next_prio=120",
      "            bash-6140    (   6140) [001] d..2.   713.868165: sched_switch: prev_comm=bash "
      "prev_pid=6140 prev_prio=120 prev_state=S ==> next_comm=swapper/1 next_pid=0 next_prio=",
      "            bash-6140    (   6140) [001] d..2.   713.868165: sched_switch: prev_comm=bash "
      "prev_pid=6140 prev_prio=120 prev_state=S ==> next_comm=swapper/1 next_pid=0 "
      "next_prio=120 extra",
      std::string("a-1 (1) [000] d..2. 1.0: tlb_flush: pages:0 reason:x (0)") + '\0',
  };
  std::string text = absl::StrCat(kHeader, "\n");
  for (const std::string& line : bad) absl::StrAppend(&text, line, "\n", kSwitchLine, "\n");
  Trace t = ParseTrace(text);
  ExpectConsistent(t);
  EXPECT_EQ(t.stats.lines, 1 + 2 * static_cast<int>(bad.size()));
  EXPECT_EQ(t.stats.malformed, static_cast<int>(bad.size()));
  EXPECT_EQ(t.stats.events, static_cast<int>(bad.size()));
  // Only the first ten are kept.
  EXPECT_THAT(t.stats.malformed_lines, ElementsAre(2, 4, 6, 8, 10, 12, 14, 16, 18, 20));
  for (const TraceEvent& e : t.events) EXPECT_EQ(e.line % 2, 1);
  for (const std::string& line : bad) EXPECT_TRUE(IsMalformed(line)) << line;
}

TEST(TraceParseTest, TruncatedLinesAreMalformed) {
  // A file cut mid-line: every prefix of a line is malformed, except those that only shorten
  // its last number (nothing tells "next_prio=12" from a whole line) and, for sched_process_exit,
  // those that end in the pre-6.16 format's last field "prio=120".
  const std::string exit_line = kExitLine;
  const size_t old_exit_end = exit_line.size() - std::string(" group_dead=true").size();
  struct Case {
    std::string line;
    int last_number_digits;
  };
  const std::vector<Case> cases = {
      {kSwitchLine, 3}, {kForkLine, 4},  {kExecLine, 4},
      {kExitLine, 0},   {kFlushLine, 0}, {"CPU:1 [LOST 123 EVENTS]", 0},
  };
  for (const Case& c : cases) {
    for (size_t n = 1; n < c.line.size(); ++n) {
      std::string prefix = c.line.substr(0, n);
      if (prefix.find_first_not_of(' ') == std::string::npos) continue;  // a blank line
      Trace t = ParseTrace(prefix);
      ExpectConsistent(t);
      bool valid = n >= c.line.size() - c.last_number_digits + 1;
      if (c.line == exit_line) valid = n >= old_exit_end - 2 && n <= old_exit_end;
      EXPECT_EQ(t.stats.events, valid ? 1 : 0) << prefix;
      EXPECT_EQ(t.stats.malformed, valid ? 0 : 1) << prefix;
    }
  }
}

TEST(TraceParseTest, CrlfAndMissingFinalNewline) {
  Trace t = ParseTrace(absl::StrCat(kHeader, "\r\n#\r\n\r\n", kSwitchLine, "\r\n", kExecLine));
  ExpectConsistent(t);
  EXPECT_EQ(t.num_cpus, 2);
  EXPECT_EQ(t.stats.lines, 5);
  EXPECT_EQ(t.stats.comments, 3);
  EXPECT_EQ(t.stats.events, 2);
  EXPECT_EQ(t.stats.malformed, 0);
  ASSERT_EQ(t.events.size(), 2u);
  EXPECT_EQ(t.events[0].line, 4);
  EXPECT_EQ(t.events[0].next_comm, "swapper/1");
  EXPECT_EQ(t.events[1].line, 5);
  EXPECT_EQ(t.events[1].filename, "run-workload.sh");

  // The last line's number is the same with or without a final newline.
  for (const char* end : {"", "\n", "\r\n"}) {
    t = ParseTrace(absl::StrCat(kSwitchLine, "\n", kFlushLine, end));
    EXPECT_EQ(t.stats.lines, 2) << end;
    ASSERT_EQ(t.events.size(), 2u);
    EXPECT_EQ(t.events[1].line, 2);
    EXPECT_EQ(t.events[1].reason, FlushReason::kTaskSwitch);
  }
}

TEST(TraceParseTest, EmptyText) {
  Trace t = ParseTrace("");
  EXPECT_EQ(t.stats.lines, 0);
  EXPECT_EQ(t.stats.events, 0);
  EXPECT_EQ(t.num_cpus, 0);
  t = ParseTrace("\n");
  EXPECT_EQ(t.stats.lines, 1);
  EXPECT_EQ(t.stats.comments, 1);
}

TEST(TraceParseTest, KindNames) {
  EXPECT_STREQ(TraceEventKindName(TraceEventKind::kSwitch), "sched_switch");
  EXPECT_STREQ(TraceEventKindName(TraceEventKind::kFork), "sched_process_fork");
  EXPECT_STREQ(TraceEventKindName(TraceEventKind::kExec), "sched_process_exec");
  EXPECT_STREQ(TraceEventKindName(TraceEventKind::kExit), "sched_process_exit");
  EXPECT_STREQ(TraceEventKindName(TraceEventKind::kFlush), "tlb_flush");
  EXPECT_STREQ(TraceEventKindName(TraceEventKind::kLost), "lost");
}

// Lines of `text` as the parser must count them: a last line without a newline counts too.
int CountLines(const std::string& text) {
  int n = static_cast<int>(std::count(text.begin(), text.end(), '\n'));
  return n + (!text.empty() && text.back() != '\n' ? 1 : 0);
}

TEST(TraceFuzzTest, RandomBytes) {
  std::mt19937 rng(20240601);
  // Half the bytes come from the characters the parser looks for, so random text reaches deep
  // into it; the rest are anything at all.
  const std::string alphabet = "0123456789-()[]:.# \n\r\t=<>|+dabhxCPULOSTEVN_-------";
  for (int iter = 0; iter < 2000; ++iter) {
    std::string text(rng() % 600, '\0');
    for (char& c : text) {
      c = rng() % 2 ? alphabet[rng() % alphabet.size()] : static_cast<char>(rng() % 256);
    }
    Trace t = ParseTrace(text);
    ExpectConsistent(t);
    EXPECT_EQ(t.stats.lines, CountLines(text));
  }
}

TEST(TraceFuzzTest, MutatedRealLines) {
  std::vector<std::string> lines = {kSwitchLine, kFlushLine, kForkLine,   kExecLine,
                                    kExitLine,   kIpiLine,   kWakeupLine, "CPU:1 [LOST 3 EVENTS]",
                                    kHeader,     "#",        ""};
  std::mt19937 rng(7);
  for (int iter = 0; iter < 2000; ++iter) {
    std::string text;
    int intact_events = 0;
    const int n = 1 + rng() % 40;
    for (int i = 0; i < n; ++i) {
      std::string line = lines[rng() % lines.size()];
      switch (line.empty() ? 4 : rng() % 5) {
        case 0:  // the file cut mid-line
          line.resize(rng() % line.size());
          break;
        case 1:  // a byte changed
          line[rng() % line.size()] = static_cast<char>(rng() % 256);
          break;
        case 2:  // a byte lost
          line.erase(rng() % line.size(), 1);
          break;
        case 3: {  // a piece repeated
          size_t at = rng() % line.size();
          line.insert(at, line.substr(at, rng() % 20));
          break;
        }
        default:
          if (line == kSwitchLine || line == kFlushLine || line == kForkLine || line == kExecLine ||
              line == kExitLine || line == kIpiLine || line.starts_with("CPU:")) {
            ++intact_events;
          }
      }
      absl::StrAppend(&text, line, rng() % 2 ? "\n" : "\r\n");
    }
    if (rng() % 2) text.pop_back();
    Trace t = ParseTrace(text);
    ExpectConsistent(t);
    EXPECT_EQ(t.stats.lines, CountLines(text));
    // Every intact event line is still an event (all of them are on CPU 0 or 1).
    if (t.num_cpus == 0 || t.num_cpus >= 2) {
      EXPECT_GE(t.stats.events, intact_events) << text;
    }
  }
}

// A fresh folder under the test's temporary directory, removed afterwards.
class TempTraceDir {
 public:
  TempTraceDir() {
    std::string tmpl = (std::filesystem::path(::testing::TempDir()) / "trace_test.XXXXXX");
    if (mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ~TempTraceDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  TempTraceDir(const TempTraceDir&) = delete;
  TempTraceDir& operator=(const TempTraceDir&) = delete;

  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }
  void Write(const std::string& name, const std::string& text) const {
    std::ofstream(File(name), std::ios::binary) << text;
  }

 private:
  std::string path_;
};

// Two CPUs' worth of events, without a header.
std::string TwoEvents() { return absl::StrCat(kSwitchLine, "\n", kFlushLine, "\n"); }

TEST(TraceDirTest, MissingFolder) {
  TempTraceDir tmp;
  ASSERT_FALSE(tmp.path().empty());
  const std::string path = tmp.File("nope");
  absl::StatusOr<TraceDir> dir = LoadTraceDir(path);
  ASSERT_FALSE(dir.ok());
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(dir.status().message(), path + ": no such trace folder");
}

TEST(TraceDirTest, NotAFolder) {
  TempTraceDir tmp;
  tmp.Write("trace.txt", TwoEvents());
  absl::StatusOr<TraceDir> dir = LoadTraceDir(tmp.File("trace.txt"));
  ASSERT_FALSE(dir.ok());
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(dir.status().message(), HasSubstr(tmp.File("trace.txt") + ": not a folder"));
}

TEST(TraceDirTest, MissingTraceTxt) {
  TempTraceDir tmp;
  tmp.Write("kernel.txt", "6.18\n2\n");
  absl::StatusOr<TraceDir> dir = LoadTraceDir(tmp.path());
  ASSERT_FALSE(dir.ok());
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(dir.status().message(), tmp.File("trace.txt") + ": no such file");
}

TEST(TraceDirTest, UnreadableFiles) {
  TempTraceDir tmp;
  std::filesystem::create_directory(tmp.File("trace.txt"));
  absl::StatusOr<TraceDir> dir = LoadTraceDir(tmp.path());
  ASSERT_FALSE(dir.ok());
  EXPECT_THAT(dir.status().message(), HasSubstr(tmp.File("trace.txt") + ": cannot read"));

  // An optional file may be missing, but one that is there must be readable.
  std::filesystem::remove(tmp.File("trace.txt"));
  tmp.Write("trace.txt", absl::StrCat(kHeader, "\n", TwoEvents()));
  std::filesystem::create_directory(tmp.File("kernel.txt"));
  dir = LoadTraceDir(tmp.path());
  ASSERT_FALSE(dir.ok());
  EXPECT_THAT(dir.status().message(), HasSubstr(tmp.File("kernel.txt") + ": cannot read"));
}

TEST(TraceDirTest, TraceWithoutEvents) {
  TempTraceDir tmp;
  tmp.Write("trace.txt", "");
  tmp.Write("kernel.txt", "6.18\n2\n");
  absl::StatusOr<TraceDir> dir = LoadTraceDir(tmp.path());
  ASSERT_FALSE(dir.ok());
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(dir.status().message(),
            tmp.File("trace.txt") +
                ": no events (0 lines: 0 comments, 0 malformed, 0 of other event types)");

  tmp.Write("trace.txt", absl::StrCat(kHeader, "\ngarbage\n", kWakeupLine, "\n"));
  dir = LoadTraceDir(tmp.path());
  ASSERT_FALSE(dir.ok());
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(dir.status().message(), tmp.File("trace.txt") +
                                        ": no events (3 lines: 1 comments, 1 malformed (the first "
                                        "at line 2), 1 of other event types)");
}

TEST(TraceDirTest, CpuCountFromKernelTxtWhenTheHeaderHasNone) {
  TempTraceDir tmp;
  // The event on CPU 2 is only found out of range once kernel.txt is read.
  tmp.Write("trace.txt",
            absl::StrCat("garbage\n", kSwitchLine, "\n",
                         "a-1 (1) [002] d..2. 1.0: tlb_flush: pages:0 reason:x (0)\n",
                         "CPU:3 [LOST 9 EVENTS]\n", kFlushLine, "\nCPU:1 [LOST 4 EVENTS]\n"));
  tmp.Write("kernel.txt", "6.18.44-fc-v669\n2\n");
  absl::StatusOr<TraceDir> dir = LoadTraceDir(tmp.path());
  ASSERT_TRUE(dir.ok()) << dir.status();
  const Trace& t = dir->trace;
  ExpectConsistent(t);
  EXPECT_EQ(dir->kernel_cpus, 2);
  EXPECT_EQ(dir->kernel_release, "6.18.44-fc-v669");
  EXPECT_EQ(t.num_cpus, 2);
  EXPECT_EQ(t.stats.events, 3);
  EXPECT_EQ(t.stats.malformed, 3);
  EXPECT_THAT(t.stats.malformed_lines, ElementsAre(1, 3, 4));
  EXPECT_EQ(t.stats.lost_markers, 1);
  EXPECT_EQ(t.stats.lost_events, 4u);
  ASSERT_EQ(t.events.size(), 3u);
  EXPECT_EQ(t.events[0].line, 2);
  EXPECT_EQ(t.events[1].line, 5);
  EXPECT_EQ(t.events[2].line, 6);

  // Dropped lines join the first ten malformed ones in order.
  std::string text;
  for (int i = 0; i < 12; ++i) absl::StrAppend(&text, i == 1 ? kFlushLine : "garbage", "\n");
  absl::StrAppend(&text, "a-1 (1) [005] d..2. 1.0: tlb_flush: pages:0 reason:x (0)\n");
  tmp.Write("trace.txt", text);
  dir = LoadTraceDir(tmp.path());
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_EQ(dir->trace.stats.malformed, 12);
  EXPECT_THAT(dir->trace.stats.malformed_lines, ElementsAre(1, 3, 4, 5, 6, 7, 8, 9, 10, 11));

  // Nothing left on the CPUs the machine has.
  tmp.Write("trace.txt", "a-1 (1) [005] d..2. 1.0: tlb_flush: pages:0 reason:x (0)\n");
  dir = LoadTraceDir(tmp.path());
  ASSERT_FALSE(dir.ok());
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(dir.status().message(),
              HasSubstr(tmp.File("trace.txt") + ": no events on the 2 CPUs kernel.txt names"));
}

TEST(TraceDirTest, HeaderWinsOverKernelTxt) {
  TempTraceDir tmp;
  tmp.Write("trace.txt",
            absl::StrCat("# entries-in-buffer/entries-written: 2/2   #P:4\n", TwoEvents()));
  tmp.Write("kernel.txt", "6.18\n2\n");
  absl::StatusOr<TraceDir> dir = LoadTraceDir(tmp.path());
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_EQ(dir->trace.num_cpus, 4);
  EXPECT_EQ(dir->kernel_cpus, 2);
  EXPECT_EQ(dir->trace.stats.events, 2);
}

TEST(TraceDirTest, NoCpuCount) {
  TempTraceDir tmp;
  tmp.Write("trace.txt", TwoEvents());
  absl::StatusOr<TraceDir> dir = LoadTraceDir(tmp.path());
  ASSERT_FALSE(dir.ok());
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(dir.status().message(),
            tmp.File("trace.txt") + ": no '#P:N' header line and no CPU count in kernel.txt");

  // A kernel.txt whose count is unreadable counts as a bad line and gives no count.
  tmp.Write("kernel.txt", "6.18\ntwo\n");
  dir = LoadTraceDir(tmp.path());
  ASSERT_FALSE(dir.ok());
  EXPECT_EQ(dir.status().message(),
            tmp.File("trace.txt") + ": no '#P:N' header line and no CPU count in kernel.txt");
}

TEST(TraceDirTest, MoreCpusThanActivemmEmulates) {
  TempTraceDir tmp;
  tmp.Write("trace.txt", absl::StrCat("#P:65\n", TwoEvents()));
  absl::StatusOr<TraceDir> dir = LoadTraceDir(tmp.path());
  ASSERT_FALSE(dir.ok());
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      dir.status().message(),
      tmp.File("trace.txt") + ": the trace has 65 CPUs (#P:65); activemm emulates at most 64");

  tmp.Write("trace.txt", TwoEvents());
  tmp.Write("kernel.txt", "6.18\n128\n");
  dir = LoadTraceDir(tmp.path());
  ASSERT_FALSE(dir.ok());
  EXPECT_EQ(dir.status().message(),
            tmp.File("kernel.txt") + ": the trace has 128 CPUs; activemm emulates at most 64");

  tmp.Write("trace.txt", absl::StrCat("#P:64\n", TwoEvents()));
  dir = LoadTraceDir(tmp.path());
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_EQ(dir->trace.num_cpus, 64);
}

TEST(TraceDirTest, AuxFiles) {
  TempTraceDir tmp;
  tmp.Write("trace.txt", absl::StrCat(kHeader, "\n", TwoEvents()));
  tmp.Write("tgids.txt", "1 1\r\n6141 6140\r\n\r\nx 3\n4\n5 6 7\n 8\t8 \n-9 9\n");
  tmp.Write("kthreads.txt", "2\n3\n\nabc\n-4\n99999999999\n 5 \n");
  tmp.Write("kernel.txt", "6.18.44-fc-v669\r\n2\r\nextra\n");
  absl::StatusOr<TraceDir> dir = LoadTraceDir(tmp.path() + "/");
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_EQ(dir->path, tmp.path() + "/");
  EXPECT_EQ(dir->tgids, (std::map<int, int>{{1, 1}, {6141, 6140}, {8, 8}}));
  EXPECT_EQ(dir->kthreads, (std::set<int>{2, 3, 5}));
  EXPECT_EQ(dir->kernel_release, "6.18.44-fc-v669");
  EXPECT_EQ(dir->kernel_cpus, 2);
  // tgids: "x 3", "4", "5 6 7", "-9 9"; kthreads: "abc", "-4", the overflow; kernel: "extra".
  EXPECT_EQ(dir->bad_aux_lines, 8);
  EXPECT_EQ(dir->trace.stats.events, 2);
}

TEST(TraceDirTest, OptionalFilesMayBeMissing) {
  TempTraceDir tmp;
  tmp.Write("trace.txt", absl::StrCat(kHeader, "\n", TwoEvents()));
  absl::StatusOr<TraceDir> dir = LoadTraceDir(tmp.path());
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_EQ(dir->path, tmp.path());
  EXPECT_THAT(dir->tgids, IsEmpty());
  EXPECT_THAT(dir->kthreads, IsEmpty());
  EXPECT_EQ(dir->kernel_release, "");
  EXPECT_EQ(dir->kernel_cpus, 0);
  EXPECT_EQ(dir->bad_aux_lines, 0);
  EXPECT_EQ(dir->trace.num_cpus, 2);
  EXPECT_EQ(dir->trace.stats.lines, 3);
}

// ---- The real traces in ../shared/traces ------------------------------------------------------
// The expected numbers were counted with grep and awk, independently of the parser.

struct SharedTrace {
  const char* name;
  int lines;
  int switches, forks, execs, exits, flushes;
  std::array<int, 6> reasons;  // tlb_flush events by reason
  int flush_all;               // tlb_flush pages:-1
  int idle;                    // events of the idle task: "(-------)"
  int cpu0, cpu1;
  int tgids;
  int64_t first_ns, last_ns;
  friend std::ostream& operator<<(std::ostream& os, const SharedTrace& t) { return os << t.name; }
};

const SharedTrace kSharedTraces[] = {
    {"make",
     2049,
     207,
     32,
     32,
     32,
     1734,
     {149, 0, 0, 1561, 16, 8},
     110,
     40,
     1036,
     1001,
     197,
     714936931000,
     715056156000},
    {"pipe-proc",
     9613,
     8953,
     6,
     5,
     6,
     631,
     {185, 0, 0, 392, 52, 2},
     28,
     2936,
     6118,
     3483,
     163,
     714431941000,
     714497926000},
    {"threads-fork-exec",
     6116,
     4713,
     17,
     15,
     17,
     1342,
     {46, 76, 0, 903, 313, 4},
     65,
     634,
     4508,
     1596,
     155,
     713868071000,
     714008688000},
};

std::string SharedTracesDir() { return ACTIVEMM_SHARED_TRACES; }

class TraceSharedTest : public ::testing::TestWithParam<SharedTrace> {
 protected:
  void SetUp() override {
    if (!std::filesystem::is_directory(SharedTracesDir())) {
      GTEST_SKIP() << SharedTracesDir() << " is not there";
    }
  }
};

TEST_P(TraceSharedTest, CountsMatch) {
  const SharedTrace& want = GetParam();
  absl::StatusOr<TraceDir> dir = LoadTraceDir(SharedTracesDir() + "/" + want.name);
  ASSERT_TRUE(dir.ok()) << dir.status();
  const Trace& t = dir->trace;
  ExpectConsistent(t);
  EXPECT_EQ(t.num_cpus, 2);
  EXPECT_EQ(t.stats.lines, want.lines);
  EXPECT_EQ(t.stats.comments, 12);
  EXPECT_EQ(t.stats.malformed, 0);
  EXPECT_THAT(t.stats.malformed_lines, IsEmpty());
  EXPECT_EQ(t.stats.other_events, 0);
  EXPECT_EQ(t.stats.lost_markers, 0);
  EXPECT_EQ(t.stats.events, want.lines - 12);

  std::map<TraceEventKind, int> kinds;
  std::array<int, 6> reasons = {};
  int flush_all = 0, idle = 0, cpu0 = 0, cpu1 = 0;
  int64_t prev_ns = 0;
  for (const TraceEvent& e : t.events) {
    ++kinds[e.kind];
    if (e.kind == TraceEventKind::kFlush) {
      ++reasons[static_cast<int>(e.reason)];
      if (e.pages == -1) ++flush_all;
    }
    if (e.tgid == -1) {
      ++idle;
      EXPECT_EQ(e.pid, 0);
      EXPECT_EQ(e.comm, "<idle>");
    }
    ++(e.cpu == 0 ? cpu0 : cpu1);
    EXPECT_EQ(e.flags.size(), 5u);
    // ftrace merges the CPUs' buffers in time order.
    EXPECT_GE(e.timestamp_ns, prev_ns) << "line " << e.line;
    prev_ns = e.timestamp_ns;
  }
  EXPECT_EQ(kinds[TraceEventKind::kSwitch], want.switches);
  EXPECT_EQ(kinds[TraceEventKind::kFork], want.forks);
  EXPECT_EQ(kinds[TraceEventKind::kExec], want.execs);
  EXPECT_EQ(kinds[TraceEventKind::kExit], want.exits);
  EXPECT_EQ(kinds[TraceEventKind::kFlush], want.flushes);
  EXPECT_EQ(kinds[TraceEventKind::kLost], 0);
  EXPECT_EQ(reasons, want.reasons);
  EXPECT_EQ(flush_all, want.flush_all);
  EXPECT_EQ(idle, want.idle);
  EXPECT_EQ(cpu0, want.cpu0);
  EXPECT_EQ(cpu1, want.cpu1);
  ASSERT_FALSE(t.events.empty());
  EXPECT_EQ(t.events.front().line, 13);
  EXPECT_EQ(t.events.front().timestamp_ns, want.first_ns);
  EXPECT_EQ(t.events.back().line, want.lines);
  EXPECT_EQ(t.events.back().timestamp_ns, want.last_ns);

  EXPECT_EQ(static_cast<int>(dir->tgids.size()), want.tgids);
  EXPECT_EQ(dir->tgids.at(3955), 3954);
  EXPECT_EQ(dir->kthreads.size(), 57u);
  EXPECT_EQ(dir->kthreads.count(2), 1u);
  EXPECT_EQ(dir->kernel_release, "6.18.44-fc-v669");
  EXPECT_EQ(dir->kernel_cpus, 2);
  EXPECT_EQ(dir->bad_aux_lines, 0);
}

INSTANTIATE_TEST_SUITE_P(Traces, TraceSharedTest, ::testing::ValuesIn(kSharedTraces),
                         [](const ::testing::TestParamInfo<SharedTrace>& info) {
                           std::string name = info.param.name;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

TEST(TraceSharedFileTest, ThreadsForkExecLines) {
  const std::string path = SharedTracesDir() + "/threads-fork-exec";
  if (!std::filesystem::is_directory(path)) GTEST_SKIP() << path << " is not there";
  absl::StatusOr<TraceDir> dir = LoadTraceDir(path);
  ASSERT_TRUE(dir.ok()) << dir.status();
  auto at_line = [&](int line) -> const TraceEvent& {
    auto it = std::find_if(dir->trace.events.begin(), dir->trace.events.end(),
                           [&](const TraceEvent& e) { return e.line == line; });
    static const TraceEvent kNone;
    return it == dir->trace.events.end() ? kNone : *it;
  };
  // 39: bash-6140 (6140) [001] d..2. 713.868165: sched_switch: prev_comm=bash prev_pid=6140
  //     prev_prio=120 prev_state=S ==> next_comm=swapper/1 next_pid=0 next_prio=120
  const TraceEvent& sw = at_line(39);
  EXPECT_EQ(sw.line, 39);
  EXPECT_EQ(sw.kind, TraceEventKind::kSwitch);
  EXPECT_EQ(sw.cpu, 1);
  EXPECT_EQ(sw.pid, 6140);
  EXPECT_EQ(sw.timestamp_ns, 713868165000);
  EXPECT_EQ(sw.prev_state, "S");
  EXPECT_EQ(sw.next_comm, "swapper/1");
  // 45: bash-6143 (6143) [000] ..... 713.868445: sched_process_exec: filename=run-workload.sh
  const TraceEvent& exec = at_line(45);
  EXPECT_EQ(exec.kind, TraceEventKind::kExec);
  EXPECT_EQ(exec.pid, 6143);
  EXPECT_EQ(exec.filename, "run-workload.sh");
  // 94: bash-6143 ... sched_process_fork: comm=bash pid=6143 child_comm=bash child_pid=6144
  const TraceEvent& fork = at_line(94);
  EXPECT_EQ(fork.kind, TraceEventKind::kFork);
  EXPECT_EQ(fork.child_pid, 6144);
  EXPECT_EQ(fork.timestamp_ns, 713870512000);
  // 164: dirname-6145 ... sched_process_exit: comm=dirname pid=6145 prio=120 group_dead=true
  const TraceEvent& exit = at_line(164);
  EXPECT_EQ(exit.kind, TraceEventKind::kExit);
  EXPECT_EQ(exit.comm, "dirname");
  EXPECT_EQ(exit.pid, 6145);
  // 672: tfe-6153 (6152) [000] d.h1. 713.953988: tlb_flush: pages:16 reason:remote shootdown (1)
  const TraceEvent& ipi = at_line(672);
  EXPECT_EQ(ipi.kind, TraceEventKind::kFlush);
  EXPECT_EQ(ipi.pid, 6153);
  EXPECT_EQ(ipi.tgid, 6152);
  EXPECT_EQ(ipi.flags, "d.h1.");
  EXPECT_EQ(ipi.pages, 16);
  EXPECT_EQ(ipi.reason, FlushReason::kRemoteShootdown);
}

// How fast it parses is a benchmark's business (tests/bench/trace_parse_bench.cc): a wall-clock
// limit here failed on a slower host for no defect.
TEST(TraceSharedFileTest, PipeProcParsesWhole) {
  const std::string path = SharedTracesDir() + "/pipe-proc/trace.txt";
  std::ifstream in(path, std::ios::binary);
  if (!in) GTEST_SKIP() << path << " is not there";
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(text.size(), 1000000u);
  Trace t = ParseTrace(text);
  EXPECT_EQ(t.stats.events, 9601);
}

// ---- trace-cmd report -l -N ----

// Every field of an event except its line number (the two texts' headers differ in length).
std::string EventFields(const TraceEvent& e) {
  return absl::StrFormat(
      "%s cpu=%d pid=%d tgid=%d comm=%s flags=%s ts=%d prev=%s/%d/%s next=%s/%d child=%s/%d "
      "file=%s pages=%d reason=%d lost=%d",
      TraceEventKindName(e.kind), e.cpu, e.pid, e.tgid, e.comm, e.flags, e.timestamp_ns,
      e.prev_comm, e.prev_pid, e.prev_state, e.next_comm, e.next_pid, e.child_comm, e.child_pid,
      e.filename, e.pages, static_cast<int>(e.reason), e.lost);
}

std::vector<std::string> AllEventFields(const Trace& t) {
  std::vector<std::string> out;
  for (const TraceEvent& e : t.events) out.push_back(EventFields(e));
  return out;
}

// One recording of this machine (Linux 6.18, 2 CPUs) read twice: tracefs's `trace` file, and
// `trace-cmd extract` of the same ring buffer through `trace-cmd report -l -N`; lines 305-329
// and 294-318, each with its header.
constexpr char kSameFtrace[] = R"trace(# tracer: nop
#
# entries-in-buffer/entries-written: 1312/1312   #P:2
#
#                                          _-----=> irqs-off/BH-disabled
#                                         / _----=> need-resched
#                                        | / _---=> hardirq/softirq
#                                        || / _--=> preempt-depth
#                                        ||| / _-=> migrate-disable
#                                        |||| /     delay
#           TASK-PID       TGID    CPU#  |||||  TIMESTAMP  FUNCTION
#              | |           |       |   |||||     |         |
              sh-13549   (  13549) [000] ..... 65622.321325: sched_process_fork: comm=sh pid=13549 child_comm=sh child_pid=13551
              sh-13549   (  13549) [000] d..2. 65622.321335: sched_switch: prev_comm=sh prev_pid=13549 prev_prio=120 prev_state=D ==> next_comm=sh next_pid=13551 next_prio=120
            true-13551   (  13551) [000] dN.1. 65622.321674: tlb_flush: pages:-1 reason:flush on task switch (0)
            true-13551   (  13551) [000] d..2. 65622.321704: sched_switch: prev_comm=true prev_pid=13551 prev_prio=120 prev_state=R+ ==> next_comm=sh next_pid=13549 next_prio=120
            true-13551   (  13551) [000] d..2. 65622.321724: tlb_flush: pages:-1 reason:flush on task switch (0)
              sh-13549   (  13549) [000] d..2. 65622.321750: sched_switch: prev_comm=sh prev_pid=13549 prev_prio=120 prev_state=S ==> next_comm=true next_pid=13551 next_prio=120
              sh-13549   (  13549) [000] d..2. 65622.321753: tlb_flush: pages:-1 reason:flush on task switch (0)
            true-13551   (  13551) [000] d..3. 65622.321793: tlb_flush: pages:1 reason:local MM shootdown (3)
            true-13551   (  13551) [000] d..1. 65622.321798: tlb_flush: pages:-1 reason:local MM shootdown (3)
            true-13551   (  13551) [000] ..... 65622.322127: sched_process_exec: filename=/bin/true pid=13551 old_pid=13551
            true-13551   (  13551) [000] d..2. 65622.322499: tlb_flush: pages:1 reason:local MM shootdown (3)
            true-13551   (  13551) [000] d..2. 65622.322758: tlb_flush: pages:1 reason:local MM shootdown (3)
            true-13551   (  13551) [000] d..2. 65622.322902: tlb_flush: pages:1 reason:local MM shootdown (3)
            true-13551   (  13551) [000] d..2. 65622.322917: tlb_flush: pages:1 reason:local MM shootdown (3)
            true-13551   (  13551) [000] d..2. 65622.322934: tlb_flush: pages:1 reason:local MM shootdown (3)
            true-13551   (  13551) [000] d..2. 65622.322951: tlb_flush: pages:1 reason:local MM shootdown (3)
            true-13551   (  13551) [000] d..1. 65622.323190: tlb_flush: pages:4 reason:local MM shootdown (3)
            true-13551   (  13551) [000] d..1. 65622.323224: tlb_flush: pages:1 reason:local MM shootdown (3)
            true-13551   (  13551) [000] d..1. 65622.323275: tlb_flush: pages:2 reason:local MM shootdown (3)
            true-13551   (  13551) [000] d..1. 65622.323617: tlb_flush: pages:13 reason:local MM shootdown (3)
        activemm-12285   (  12285) [001] d..2. 65622.323685: sched_switch: prev_comm=activemm prev_pid=12285 prev_prio=120 prev_state=R ==> next_comm=cc1plus next_pid=13496 next_prio=120
        activemm-12285   (  12285) [001] d..2. 65622.323692: tlb_flush: pages:-1 reason:flush on task switch (0)
            true-13551   (  13551) [000] d..2. 65622.323706: sched_switch: prev_comm=true prev_pid=13551 prev_prio=120 prev_state=R ==> next_comm=rcu_preempt next_pid=15 next_prio=120
     rcu_preempt-15      (     15) [000] d..2. 65622.323728: sched_switch: prev_comm=rcu_preempt prev_pid=15 prev_prio=120 prev_state=I ==> next_comm=true next_pid=13551 next_prio=120
            true-13551   (  13551) [000] ..... 65622.323840: sched_process_exit: comm=true pid=13551 prio=120 group_dead=true
)trace";
constexpr char kSameTraceCmd[] = R"trace(cpus=2
      sh-13549   0..... 65622.321325: sched_process_fork:   comm=sh pid=13549 child_comm=sh child_pid=13551
      sh-13549   0d..2. 65622.321335: sched_switch:         prev_comm=sh prev_pid=13549 prev_prio=120 prev_state=D ==> next_comm=sh next_pid=13551 next_prio=120
    true-13551   0dN.1. 65622.321674: tlb_flush:            pages:-1 reason:flush on task switch (0)
    true-13551   0d..2. 65622.321704: sched_switch:         prev_comm=true prev_pid=13551 prev_prio=120 prev_state=R+ ==> next_comm=sh next_pid=13549 next_prio=120
    true-13551   0d..2. 65622.321724: tlb_flush:            pages:-1 reason:flush on task switch (0)
      sh-13549   0d..2. 65622.321750: sched_switch:         prev_comm=sh prev_pid=13549 prev_prio=120 prev_state=S ==> next_comm=true next_pid=13551 next_prio=120
      sh-13549   0d..2. 65622.321753: tlb_flush:            pages:-1 reason:flush on task switch (0)
    true-13551   0d..3. 65622.321793: tlb_flush:            pages:1 reason:local MM shootdown (3)
    true-13551   0d..1. 65622.321798: tlb_flush:            pages:-1 reason:local MM shootdown (3)
    true-13551   0..... 65622.322127: sched_process_exec:   filename=/bin/true pid=13551 old_pid=13551
    true-13551   0d..2. 65622.322499: tlb_flush:            pages:1 reason:local MM shootdown (3)
    true-13551   0d..2. 65622.322758: tlb_flush:            pages:1 reason:local MM shootdown (3)
    true-13551   0d..2. 65622.322902: tlb_flush:            pages:1 reason:local MM shootdown (3)
    true-13551   0d..2. 65622.322917: tlb_flush:            pages:1 reason:local MM shootdown (3)
    true-13551   0d..2. 65622.322934: tlb_flush:            pages:1 reason:local MM shootdown (3)
    true-13551   0d..2. 65622.322951: tlb_flush:            pages:1 reason:local MM shootdown (3)
    true-13551   0d..1. 65622.323190: tlb_flush:            pages:4 reason:local MM shootdown (3)
    true-13551   0d..1. 65622.323224: tlb_flush:            pages:1 reason:local MM shootdown (3)
    true-13551   0d..1. 65622.323275: tlb_flush:            pages:2 reason:local MM shootdown (3)
    true-13551   0d..1. 65622.323617: tlb_flush:            pages:13 reason:local MM shootdown (3)
activemm-12285   1d..2. 65622.323685: sched_switch:         prev_comm=activemm prev_pid=12285 prev_prio=120 prev_state=R ==> next_comm=cc1plus next_pid=13496 next_prio=120
activemm-12285   1d..2. 65622.323692: tlb_flush:            pages:-1 reason:flush on task switch (0)
    true-13551   0d..2. 65622.323706: sched_switch:         prev_comm=true prev_pid=13551 prev_prio=120 prev_state=R ==> next_comm=rcu_preempt next_pid=15 next_prio=120
rcu_pree-15      0d..2. 65622.323728: sched_switch:         prev_comm=rcu_preempt prev_pid=15 prev_prio=120 prev_state=I ==> next_comm=true next_pid=13551 next_prio=120
    true-13551   0..... 65622.323840: sched_process_exit:   comm=true pid=13551 prio=120 group_dead=true
)trace";
constexpr char kSameTgids[] = "13549 13549\n13551 13551\n12285 12285\n15 15\n13496 13473\n";

TEST(TraceCmdTest, DetectedByItsCpusLine) {
  EXPECT_EQ(ParseTrace(kSameFtrace).format, TraceFormat::kFtrace);
  Trace t = ParseTrace(kSameTraceCmd);
  EXPECT_EQ(t.format, TraceFormat::kTraceCmd);
  EXPECT_EQ(t.num_cpus, 2);
  EXPECT_EQ(t.stats.comments, 1);
  EXPECT_EQ(t.stats.malformed, 0) << t.stats.malformed_lines.front();
  EXPECT_EQ(t.stats.events, 25);
  // trace-cmd 2 printed its file version first.
  EXPECT_EQ(ParseTrace(absl::StrCat("version = 6\n", kSameTraceCmd)).format,
            TraceFormat::kTraceCmd);
  EXPECT_EQ(ParseTrace("\nversion = 6\ncpus=4\n").num_cpus, 4);
}

// The same recording in both formats: the same events, field by field, once tgids.txt has
// given the trace-cmd text its TGIDs.
TEST(TraceCmdTest, SameRecordingSameEvents) {
  absl::StatusOr<TraceDir> ftrace = ParseTraceDir("f", kSameFtrace, kSameTgids, "", "");
  absl::StatusOr<TraceDir> trace_cmd = ParseTraceDir("t", kSameTraceCmd, kSameTgids, "", "");
  ASSERT_TRUE(ftrace.ok()) << ftrace.status();
  ASSERT_TRUE(trace_cmd.ok()) << trace_cmd.status();
  EXPECT_EQ(ftrace->trace.num_cpus, trace_cmd->trace.num_cpus);
  ASSERT_EQ(ftrace->trace.events.size(), 25u);
  EXPECT_EQ(AllEventFields(trace_cmd->trace), AllEventFields(ftrace->trace));
  // The kinds the replay needs are all there, and the CR3 loads' flags.
  std::set<TraceEventKind> kinds;
  for (const TraceEvent& e : trace_cmd->trace.events) kinds.insert(e.kind);
  EXPECT_EQ(kinds.size(), 5u);
  const TraceEvent& load = trace_cmd->trace.events[4];
  EXPECT_EQ(load.kind, TraceEventKind::kFlush);
  EXPECT_EQ(load.reason, FlushReason::kTaskSwitch);
  EXPECT_EQ(load.flags, "d..2.");
  EXPECT_EQ(load.line, 6);
  // "rcu_pree" on its line: the whole name comes from its sched_switch fields.
  EXPECT_EQ(trace_cmd->trace.events[23].comm, "rcu_preempt");
}

TEST(TraceCmdTest, WithoutTgidsTheColumnIsUnknown) {
  Trace t = ParseTrace(kSameTraceCmd);
  for (const TraceEvent& e : t.events) EXPECT_EQ(e.tgid, -1);
  absl::StatusOr<TraceDir> dir = ParseTraceDir("t", kSameTraceCmd, "13549 13549\n", "", "");
  ASSERT_TRUE(dir.ok()) << dir.status();
  EXPECT_EQ(dir->trace.events[0].tgid, 13549);
  EXPECT_EQ(dir->trace.events[2].tgid, -1);  // 13551: not in tgids.txt
}

TEST(TraceCmdTest, IdleDroppedMarkersAndBadLines) {
  Trace t = ParseTrace(
      "cpus=2\n"
      "  <idle>-0       1d..2. 65622.321335: sched_switch:         prev_comm=swapper/1 prev_pid=0 "
      "prev_prio=120 prev_state=R ==> next_comm=sh next_pid=13549 next_prio=120\n"
      "CPU:1 [12 EVENTS DROPPED]\n"
      "CPU:0 [EVENTS DROPPED]\n"
      "kworker/-123456   0d.h1. 65622.321336: tlb_flush:            pages:-1 reason:remote "
      "shootdown (1)\n"
      // Without -l: no flags.
      "            bash-13548 [001] 65622.222001: sched_process_fork:   comm=bash pid=13548 "
      "child_comm=bash child_pid=13549\n"
      // Without -N: trace-cmd's own sched_switch format.
      "    bash-13548   1d..2. 65622.222013: sched_switch:         bash:13548 [120] R ==> "
      "qemu-system-x86:11281 [120]\n"
      "    bash-13548   2d..2. 65622.222013: tlb_flush:            pages:0 reason:flush on task "
      "switch (0)\n"
      "cpus=3\n"
      "    bash-13548   1d..2. 65622.222013: sched_wakeup:         comm=x pid=1 prio=120 "
      "target_cpu=001\n");
  EXPECT_EQ(t.format, TraceFormat::kTraceCmd);
  ASSERT_EQ(t.events.size(), 4u);
  EXPECT_EQ(t.events[0].pid, 0);
  EXPECT_EQ(t.events[0].comm, "<idle>");
  EXPECT_EQ(t.events[0].cpu, 1);
  EXPECT_EQ(t.events[0].next_pid, 13549);
  EXPECT_EQ(t.events[1].kind, TraceEventKind::kLost);
  EXPECT_EQ(t.events[1].cpu, 1);
  EXPECT_EQ(t.events[1].lost, 12u);
  EXPECT_EQ(t.events[2].kind, TraceEventKind::kLost);
  EXPECT_EQ(t.events[2].lost, 0u);
  EXPECT_EQ(t.stats.lost_markers, 2);
  EXPECT_EQ(t.stats.lost_events, 12u);
  EXPECT_EQ(t.events[3].pid, 123456);
  EXPECT_EQ(t.events[3].comm, "kworker/");
  EXPECT_EQ(t.events[3].flags, "d.h1.");
  EXPECT_EQ(t.events[3].reason, FlushReason::kRemoteShootdown);
  // No flags, plugin format, CPU 2 of 2, a second CPU count: malformed; sched_wakeup: other.
  EXPECT_EQ(t.stats.malformed, 4);
  EXPECT_THAT(t.stats.malformed_lines, ElementsAre(6, 7, 8, 9));
  EXPECT_EQ(t.stats.beyond_cpus, 1);
  EXPECT_EQ(t.stats.other_events, 1);
}

// ftrace text is never taken for trace-cmd's, whatever its lines say.
TEST(TraceCmdTest, FtraceTextStaysFtrace) {
  Trace t = ParseTrace(absl::StrCat("# tracer: nop\ncpus=2\n", kSwitchLine, "\n"));
  EXPECT_EQ(t.format, TraceFormat::kFtrace);
  EXPECT_EQ(t.events.size(), 1u);
}

TEST(TraceCmdTest, TextWithoutFlagsIsRefusedWithTheCommand) {
  absl::StatusOr<TraceDir> dir = ParseTraceDir(
      "t",
      "cpus=2\n            bash-13548 [001] 65622.222001: sched_process_fork:   comm=bash "
      "pid=13548 child_comm=bash child_pid=13549\n",
      "", "", "");
  ASSERT_FALSE(dir.ok());
  EXPECT_THAT(dir.status().message(), HasSubstr("t/trace.txt: no events"));
  EXPECT_THAT(dir.status().message(), HasSubstr("trace-cmd report -l -N"));
}

// ---- long traces: read in pieces, names stored once ----

std::vector<int> EventLines(const Trace& t) {
  std::vector<int> out;
  for (const TraceEvent& e : t.events) out.push_back(e.line);
  return out;
}

// LoadTraceDir feeds trace.txt to TraceParser a block at a time: pieces of any size parse as
// the whole text does, with lines (and "\r\n") cut anywhere, and the format decided after the
// blank and "version = N" lines held before it.
TEST(TraceParserTest, PiecesOfAnySizeParseAsTheWhole) {
  const std::string texts[] = {
      absl::StrCat(kHeader, "\r\n#\r\n\r\n", kSwitchLine, "\r\n", kExecLine, "\n", kForkLine,
                   "\nnot an event\n", kFlushLine),
      kSameFtrace,
      kSameTraceCmd,
      absl::StrCat("\n \nversion = 6\n\n", kSameTraceCmd),
      absl::StrCat("\nversion = 6\nversion = 6\n", kSwitchLine),  // ftrace: two malformed
      "\n\nversion = 6\n\n",                                      // never decided: ftrace
      "",
  };
  for (const std::string& text : texts) {
    const Trace whole = ParseTrace(text);
    for (size_t piece : {1, 2, 3, 7, 64, 4096}) {
      SCOPED_TRACE(absl::StrFormat("pieces of %d of %s", piece, text.substr(0, 40)));
      TraceParser parser;
      for (size_t at = 0; at < text.size(); at += piece) {
        parser.Feed(std::string_view(text).substr(at, piece));
      }
      const Trace t = std::move(parser).Finish();
      ExpectConsistent(t);
      EXPECT_EQ(t.format, whole.format);
      EXPECT_EQ(t.num_cpus, whole.num_cpus);
      EXPECT_EQ(t.stats.lines, whole.stats.lines);
      EXPECT_EQ(t.stats.comments, whole.stats.comments);
      EXPECT_EQ(t.stats.malformed_lines, whole.stats.malformed_lines);
      EXPECT_EQ(t.stats.other_events, whole.stats.other_events);
      EXPECT_EQ(EventLines(t), EventLines(whole));
      EXPECT_EQ(AllEventFields(t), AllEventFields(whole));
    }
  }
  EXPECT_EQ(ParseTrace(texts[4]).stats.malformed, 2);
  EXPECT_EQ(ParseTrace(texts[3]).format, TraceFormat::kTraceCmd);
  EXPECT_EQ(ParseTrace(texts[3]).stats.comments, 5);  // 3 blank, version, cpus=2
}

// A million-switch trace has two million events and a few hundred distinct names: each name
// is stored once, and an event stays small.
TEST(TraceParserTest, NamesAreStoredOnce) {
  const Trace t = ParseTrace(absl::StrCat(kSwitchLine, "\n", kSwitchLine, "\n", kFlushLine, "\n"));
  ASSERT_EQ(t.events.size(), 3u);
  // "bash" (line task and prev), "swapper/1", "S", "<idle>", "d..2." (all three lines).
  EXPECT_EQ(t.names->size(), 5u);
  EXPECT_EQ(&t.events[0].comm.str(), &t.events[1].comm.str());
  EXPECT_EQ(&t.events[0].comm.str(), &t.events[1].prev_comm.str());
  EXPECT_EQ(&t.events[0].flags.str(), &t.events[2].flags.str());
  EXPECT_EQ(&t.events[0].next_comm.str(), &t.events[1].next_comm.str());
  EXPECT_TRUE(t.events[2].prev_comm.empty());  // a flush names no prev task
  EXPECT_LE(sizeof(TraceEvent), 128u);
  // A copy of the trace shares the names: its events stay valid when the original goes.
  Trace copy;
  {
    const Trace original = ParseTrace(kSwitchLine);
    copy = original;
  }
  EXPECT_EQ(copy.events[0].next_comm, "swapper/1");
}

// --explain shows trace lines read back from trace.txt by number, a block at a time: a line cut
// between two blocks comes back whole, "\r\n" as "\n", the last line without its newline too.
TEST(TraceDirTest, ReadTraceLinesByNumber) {
  TempTraceDir tmp;
  std::string text;
  std::vector<std::string> lines;
  // 3 MiB of lines of many lengths: some cross the reader's 1 MiB blocks.
  for (int i = 1; text.size() < (3u << 20); ++i) {
    lines.push_back(
        absl::StrFormat("%d %s", i, std::string(static_cast<size_t>(i * 7919 % 997), 'x')));
    text += lines.back() + (i % 5 == 0 ? "\r\n" : "\n");
  }
  lines.push_back("the last line, without a newline");
  text += lines.back();
  tmp.Write("trace.txt", text);
  std::set<int> wanted = {1, 2, static_cast<int>(lines.size()), static_cast<int>(lines.size()) + 1};
  // The lines that start before a block boundary and end after it.
  size_t at = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    const size_t end = text.find('\n', at);
    const size_t next = end == std::string::npos ? text.size() : end + 1;
    for (size_t block = 1u << 20; block < text.size(); block += 1u << 20) {
      if (at < block && next > block) wanted.insert(static_cast<int>(i) + 1);
    }
    at = next;
  }
  ASSERT_GE(wanted.size(), 6u);  // the 4 above and a line across each of two or more boundaries
  absl::StatusOr<std::map<int, std::string>> got = ReadTraceLines(tmp.path(), wanted);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->size(), wanted.size() - 1);  // no line after the last
  for (const auto& [n, line] : *got) EXPECT_EQ(line, lines[n - 1]) << "line " << n;
  EXPECT_FALSE(ReadTraceLines(tmp.File("nope"), {1}).ok());
  EXPECT_TRUE(ReadTraceLines(tmp.File("nope"), {})->empty());
}

}  // namespace
}  // namespace activemm
