// Fuzz target: the ftrace text parser and the rest of a trace folder's texts.
//
// The input is a trace folder: trace.txt, then optionally tgids.txt, kthreads.txt and
// kernel.txt, separated by NUL bytes (a trace has none). It goes through ParseTrace and, when
// the other files are there, ParseTraceDir (LoadTraceDir without the file system), and the
// results are checked against
// what vmm/replay/trace.h promises: the parser never fails, counts every line, keeps events in file
// order and only on the CPUs the trace has.
#include <stddef.h>
#include <stdint.h>

#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "shared/abi.h"
#include "tests/fuzz/fuzz_input.h"
#include "vmm/replay/trace.h"

namespace {

int CountLines(std::string_view text) {
  int n = 0;
  for (char c : text) n += c == '\n';
  if (!text.empty() && text.back() != '\n') ++n;
  return n;
}

void CheckTrace(const activemm::Trace& t, int lines) {
  using activemm::TraceEventKind;
  const activemm::TraceStats& s = t.stats;
  FUZZ_CHECK(s.lines == lines);
  FUZZ_CHECK(s.events == static_cast<int>(t.events.size()));
  FUZZ_CHECK(s.comments + s.events + s.malformed + s.other_events == s.lines);
  FUZZ_CHECK(s.malformed_lines.size() <= 10);
  FUZZ_CHECK(static_cast<int>(s.malformed_lines.size()) <= s.malformed);
  for (size_t i = 0; i < s.malformed_lines.size(); ++i) {
    FUZZ_CHECK(s.malformed_lines[i] >= 1 && s.malformed_lines[i] <= lines);
    if (i > 0) FUZZ_CHECK(s.malformed_lines[i - 1] < s.malformed_lines[i]);
  }
  int lost_markers = 0, prev_line = 0;
  uint64_t lost_events = 0;
  for (const activemm::TraceEvent& e : t.events) {
    FUZZ_CHECK(e.line > prev_line && e.line <= lines);
    prev_line = e.line;
    FUZZ_CHECK(e.cpu >= 0);
    if (t.num_cpus > 0) FUZZ_CHECK(e.cpu < t.num_cpus);
    if (e.kind == TraceEventKind::kLost) {
      ++lost_markers;
      lost_events += e.lost;
    }
    if (e.kind == TraceEventKind::kFlush) {
      FUZZ_CHECK(e.pages >= -1);
      FUZZ_CHECK(static_cast<int>(e.reason) >= 0 && static_cast<int>(e.reason) <= 5);
    }
    if (e.kind == TraceEventKind::kSwitch) FUZZ_CHECK(e.prev_pid == e.pid);
  }
  FUZZ_CHECK(lost_markers == s.lost_markers);
  FUZZ_CHECK(lost_events == s.lost_events);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::vector<std::string_view> files = activemm::fuzz::SplitInput(input, 4);

  const activemm::Trace trace = activemm::ParseTrace(files[0]);
  CheckTrace(trace, CountLines(files[0]));

  // The folder's checks only when the input has the other files (it parses trace.txt again).
  if (input.find('\0') == std::string_view::npos) return 0;
  absl::StatusOr<activemm::TraceDir> dir =
      activemm::ParseTraceDir("fuzz", files[0], files[1], files[2], files[3]);
  if (dir.ok()) {
    const activemm::Trace& t = dir->trace;
    FUZZ_CHECK(!t.events.empty());
    FUZZ_CHECK(t.num_cpus >= 1 && t.num_cpus <= static_cast<int>(activemm::abi::kMaxCpus));
    CheckTrace(t, CountLines(files[0]));
  }
  return 0;
}
