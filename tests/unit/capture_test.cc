// The text handling of `activemm capture` (vmm/replay/capture.h): what it changes in recorded lines
// and what it reads from /proc and from the trace header.
#include "vmm/replay/capture.h"
#include "vmm/replay/trace.h"

#include "gtest/gtest.h"

namespace activemm {
namespace {

TEST(StripExecPath, KeepsOnlyTheProgramName) {
  EXPECT_EQ(StripExecPath("            bash-6143    (   6143) [000] .....   713.868445: "
                          "sched_process_exec: filename=/usr/bin/run-workload.sh pid=6143 "
                          "old_pid=6143"),
            "            bash-6143    (   6143) [000] .....   713.868445: "
            "sched_process_exec: filename=run-workload.sh pid=6143 old_pid=6143");
}

TEST(StripExecPath, CutsAPathWithSpacesAsAWhole) {
  EXPECT_EQ(StripExecPath("a-1 (1) [000] ..... 1.0: sched_process_exec: "
                          "filename=/home/x y/my prog pid=1 old_pid=1"),
            "a-1 (1) [000] ..... 1.0: sched_process_exec: filename=my prog pid=1 old_pid=1");
}

TEST(StripExecPath, LeavesOtherLinesAlone) {
  for (const char* line :
       {"a-1 (1) [000] ..... 1.0: sched_process_exec: filename=true pid=1 old_pid=1",
        "a-1 (1) [000] d..2. 1.0: sched_switch: prev_comm=a/b prev_pid=1 prev_prio=120 "
        "prev_state=S ==> next_comm=swapper/0 next_pid=0 next_prio=120",
        "# entries-in-buffer/entries-written: 6104/6104   #P:2", ""}) {
    EXPECT_EQ(StripExecPath(line), line);
  }
}

TEST(StatFlags, CountsFieldsAfterTheLastParenthesis) {
  EXPECT_EQ(StatFlags("2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0"), 2129984u);
  // A comm may hold spaces and parentheses: "a) S 1 (b".
  EXPECT_EQ(StatFlags("77 (a) S 1 (b) R 1 77 77 0 -1 4194560 12 0"), 4194560u);
  EXPECT_EQ(StatFlags("77 (x) S 1 2"), std::nullopt);
  EXPECT_EQ(StatFlags("garbage"), std::nullopt);
}

// The capture's summary and warnings come from the replay's parser (vmm/replay/trace.h): the
// header's entry counts (events the full buffer overwrote) and LOST markers.
TEST(CaptureSummary, HeaderEntriesComeFromTheTraceParser) {
  TraceStats st = ParseTrace("# entries-in-buffer/entries-written: 6104/9000   #P:2\n").stats;
  EXPECT_EQ(st.entries_in_buffer, 6104u);
  EXPECT_EQ(st.entries_written, 9000u);
  st = ParseTrace("# tracer: nop\n").stats;
  EXPECT_EQ(st.entries_in_buffer, 0u);
  EXPECT_EQ(st.entries_written, 0u);
  st = ParseTrace("# entries-in-buffer/entries-written: x/y\n").stats;
  EXPECT_EQ(st.entries_in_buffer, 0u);
  EXPECT_EQ(st.entries_written, 0u);
}

TEST(CaptureSummary, LostEventsComeFromTheTraceParser) {
  EXPECT_EQ(ParseTrace("CPU:1 [LOST 123 EVENTS]\n").stats.lost_events, 123u);
  EXPECT_EQ(ParseTrace("a-1 (1) [000] d..2. 1.0: tlb_flush: pages:-1 reason:flush on task "
                       "switch (0)\n")
                .stats.lost_events,
            0u);
}

}  // namespace
}  // namespace activemm
