// Real Linux traces: the ftrace text format of `activemm capture` (and of ../shared/traces),
// parsed into events. The parser never fails on a bad line: it counts and skips it, so a
// truncated or hand-edited trace still replays as far as it makes sense.
//
// A line looks like
//   "            bash-6140    (   6140) [001] d..2.   713.868165: sched_switch: prev_comm=..."
//   COMM-PID (TGID) [CPU] FLAGS TIMESTAMP: EVENT: FIELDS
// COMM may contain spaces and dashes (the PID is after the last '-' before the '('); TGID is
// "-------" for the idle task. Lines starting with '#' are comments; "CPU:N [LOST M EVENTS]"
// marks events the ring buffer dropped on CPU N.
//
// It also reads the text `trace-cmd report -l -N` makes of a trace.dat (detected by its first
// line, "cpus=N", which gives the CPU count):
//   "    bash-6140    1d..2.   713.868165: sched_switch:         prev_comm=..."
//   COMM-PID CPU+FLAGS TIMESTAMP: EVENT: FIELDS
// COMM is cut to 8 characters (the parser restores the whole name from the events' own comm
// fields where they name it), there is no TGID column (ParseTraceDir takes tgids.txt's), and
// "CPU:N [M EVENTS DROPPED]" marks lost events. -l prints the flags, -N the kernel's own
// field formats (trace-cmd's plugins print sched_switch and tlb_flush their own way).
#ifndef ACTIVEMM_VMM_REPLAY_TRACE_H_
#define ACTIVEMM_VMM_REPLAY_TRACE_H_

#include <stdint.h>

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "vmm/replay/interned_string.h"
#include "vmm/replay/machine_facts.h"

#include "absl/status/statusor.h"

namespace activemm {

enum class TraceEventKind {
  kSwitch,  // sched_switch
  kFork,    // sched_process_fork
  kExec,    // sched_process_exec
  kExit,    // sched_process_exit
  kFlush,   // tlb_flush
  kLost,    // a "[LOST N EVENTS]" marker: `lost` events of `cpu` are missing before this line
            // (no task: pid -1, timestamp_ns 0; lost 0 for "[LOST EVENTS]", an unknown count)
};

// include/linux/mm_types.h, enum tlb_flush_reason.
enum class FlushReason : int {
  kTaskSwitch = 0,        // "flush on task switch": a CR3 load (the replay's answer)
  kRemoteShootdown = 1,   // flush_tlb_func from a flush IPI
  kLocalShootdown = 2,    // flush_tlb_func for a kernel (mm == NULL) flush
  kLocalMmShootdown = 3,  // flush_tlb_func on the initiating CPU
  kRemoteSendIpi = 4,     // flush_tlb_multi sends flush IPIs
  kRemoteWrongCpu = 5,    // flush_tlb_func on a CPU that no longer runs the mm
};

// Names are interned in the Trace's pool (interned_string.h): an event is valid while a copy
// of its Trace lives.
struct TraceEvent {
  TraceEventKind kind = TraceEventKind::kSwitch;
  int line = 0;   // 1-based line number in trace.txt
  int cpu = 0;    // [CPU]
  int pid = 0;    // the task named at the start of the line (the one running on `cpu`)
  int tgid = -1;  // (TGID); -1 for "-------" (idle) or a trace without the TGID column
  int64_t timestamp_ns = 0;
  InternedString comm;   // COMM of that task
  InternedString flags;  // the 5-character column, e.g. "d..2." (irqs off, preempt depth 2)

  // kSwitch
  InternedString prev_comm, next_comm;
  int prev_pid = 0, next_pid = 0;
  InternedString prev_state;  // "R", "S", "D", "I", "X", "Z", "R+", ...
  // kFork: parent = pid (the line's task), child below. kExec and kExit: `pid` field.
  int child_pid = 0;
  InternedString child_comm;
  InternedString filename;  // kExec
  // kFlush
  FlushReason reason = FlushReason::kTaskSwitch;
  int64_t pages = 0;  // -1: TLB_FLUSH_ALL
  // kLost
  uint64_t lost = 0;
};

struct TraceStats {
  int lines = 0;         // every line of the file
  int comments = 0;      // '#' lines and blank lines
  int events = 0;        // parsed events (kLost markers included)
  int malformed = 0;     // lines that are not a comment, a LOST marker or a known event;
                         // also events on a CPU >= num_cpus and an unreadable "#P:" header
  int beyond_cpus = 0;   // of the malformed: events on a CPU >= num_cpus
  int other_events = 0;  // well-formed lines of events the replay does not use
  int lost_markers = 0;
  uint64_t lost_events = 0;
  // From the header "# entries-in-buffer/entries-written: N/M": M > N means the ring buffer
  // overwrote the first M - N events. Both 0 without that line.
  uint64_t entries_in_buffer = 0;
  uint64_t entries_written = 0;
  std::vector<int> malformed_lines;  // the first few, for messages (at most 10)
};

enum class TraceFormat {
  kFtrace,    // tracefs's `trace` file, as `activemm capture` writes it
  kTraceCmd,  // `trace-cmd report -l -N` of a trace.dat (first line "cpus=N")
};

struct Trace {
  TraceFormat format = TraceFormat::kFtrace;
  int num_cpus = 0;                // from the header's "#P:N" (trace-cmd: "cpus=N"); 0 when absent
                                   // (LoadTraceDir: kernel.txt's)
  std::vector<TraceEvent> events;  // in file order
  TraceStats stats;
  std::shared_ptr<const StringPool> names;  // the events' names
};

// Parses the ftrace text, or trace-cmd's (see above). Never fails: malformed lines are counted
// in stats.
Trace ParseTrace(std::string_view text);

// ParseTrace's parser, fed the text in pieces of any size, so that a long trace's text is never
// whole in memory (LoadTraceDir reads trace.txt a block at a time).
class TraceParser {
 public:
  TraceParser();
  void Reserve(size_t text_bytes);  // a hint: the text's size
  void Feed(std::string_view text);
  Trace Finish() &&;

 private:
  void Line(std::string_view line);   // a whole line, without its "\n"
  void Parse(std::string_view line);  // ... once the format is known
  void Decide(TraceFormat format);

  Trace trace_;
  std::shared_ptr<StringPool> names_;  // the events' names, handed to the Trace by Finish
  std::string partial_;                // the text after the last "\n" fed
  bool format_known_ = false;
  // The lines before the format is known: blank lines, a "version = N" line, blank lines.
  int held_blank_before_ = 0;
  std::optional<std::string> held_version_;
  int held_blank_after_ = 0;
};

// A trace folder: trace.txt (required), tgids.txt ("PID TGID" per line), kthreads.txt (a PID
// per line), kernel.txt (release, then CPU count). Missing optional files are empty.
struct TraceDir {
  std::string path;
  Trace trace;
  std::map<int, int> tgids;  // pid -> tgid
  std::set<int> kthreads;    // pids that were kernel threads when the recording stopped
  std::string kernel_release;
  int kernel_cpus = 0;
  int bad_aux_lines = 0;  // malformed lines in tgids.txt / kthreads.txt / kernel.txt
  MachineFacts machine;   // machine.txt (present = false for a folder without one)
};

// Reads a trace folder. A trace-cmd text's events get their TGID from tgids.txt (the column
// the ftrace text has; -1 for a pid it does not name).
// Errors (kNotFound, kInvalidArgument) name the file: a missing folder or
// trace.txt, a trace.txt with no event at all, or a CPU count that is neither in the header nor
// in kernel.txt.
absl::StatusOr<TraceDir> LoadTraceDir(const std::string& path);

// LoadTraceDir's checks on texts already read: trace.txt, tgids.txt, kthreads.txt and
// kernel.txt (empty for a missing optional file) of the folder `path`, which only names the
// files in messages. The fuzzers (tests/fuzz) call it.
absl::StatusOr<TraceDir> ParseTraceDir(const std::string& path, std::string_view trace_text,
                                       std::string_view tgids_text, std::string_view kthreads_text,
                                       std::string_view kernel_text);

// The lines of the folder's trace.txt whose numbers are in `lines` (1-based, as TraceEvent::line
// counts them), without their newline, read a block at a time.
absl::StatusOr<std::map<int, std::string>> ReadTraceLines(const std::string& dir_path,
                                                          const std::set<int>& lines);

const char* TraceEventKindName(TraceEventKind k);  // "sched_switch", ..., "lost"

}  // namespace activemm

#endif  // ACTIVEMM_VMM_REPLAY_TRACE_H_
