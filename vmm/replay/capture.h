// `activemm capture`: records a real Linux scheduling + TLB trace (ftrace, through tracefs) while
// a command runs, in the folder format of ../shared/traces (README.md there): trace.txt,
// tgids.txt, kthreads.txt and kernel.txt. These traces are the ground truth the replay checks
// against.
#ifndef ACTIVEMM_VMM_REPLAY_CAPTURE_H_
#define ACTIVEMM_VMM_REPLAY_CAPTURE_H_

#include <stdint.h>

#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace activemm {

inline constexpr const char* kDefaultTracefs = "/sys/kernel/tracing";
inline constexpr int kDefaultCaptureBufferKb = 16384;  // KiB per CPU, as capture-trace.sh
inline constexpr int kMaxCaptureBufferKb = 1 << 20;    // 1 GiB per CPU: more is surely a typo

// What records the trace (`capture --with`).
enum class CaptureTool {
  kTracefs,   // activemm itself, through tracefs: trace.txt is tracefs's `trace` file
  kTraceCmd,  // `trace-cmd record`: trace.dat, and trace.txt is `trace-cmd report -l -N` of it
};

struct CaptureOptions {
  std::string out_dir;                      // must not exist, or be an empty directory
  std::vector<std::string> argv;            // the command; argv[0] is looked up in $PATH
  int buffer_kb = kDefaultCaptureBufferKb;  // ring buffer per CPU
  std::string tracefs = kDefaultTracefs;    // tests point this at a fake directory
  CaptureTool tool = CaptureTool::kTracefs;
  std::string trace_cmd = "trace-cmd";  // kTraceCmd: the program, looked up in $PATH
  std::FILE* progress = nullptr;        // one-line status messages and warnings; nullptr: none
};

// Traces while o.argv runs and writes o.out_dir whole or not at all. The command's own exit
// status does not make this fail (it is reported through o.progress). Every tracefs setting it
// changes is put back as it was, on every path out.
//
// With CaptureTool::kTraceCmd, `trace-cmd record` records instead (while activemm runs the
// command), trace.dat is kept and trace.txt is its `trace-cmd report -l -N`; the tracefs
// settings trace-cmd changes (and does not put back) are restored all the same.
//
// Errors: InvalidArgument for a bad option or a command that cannot be run (or trace-cmd that
// is not installed), AlreadyExists when
// o.out_dir is in the way, PermissionDenied without root; anything else is a host problem
// (tracefs, I/O).
absl::Status CaptureTrace(const CaptureOptions& o);

// `activemm __prime N` (hidden; see capture.cc PrimeAsids): exec itself N more times, each exec
// a fresh mm loaded on this CPU. Returns the exit status when it does not exec.
int PrimeStep(const std::string& left);

// The pieces below are exposed for tests.

// `line` with the filename of a sched_process_exec event reduced to its last path component,
// so recorded data names no host paths; any other line unchanged.
std::string StripExecPath(std::string_view line);

// The flags field (the 9th) of a /proc/PID/stat text, or nullopt if it is malformed. The comm
// field may itself contain spaces and parentheses, so fields are counted after the last ')'.
std::optional<uint64_t> StatFlags(std::string_view stat);

}  // namespace activemm

#endif  // ACTIVEMM_VMM_REPLAY_CAPTURE_H_
