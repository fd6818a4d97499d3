#include "vmm/trace.h"

#include <fcntl.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <limits>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "shared/abi.h"

namespace activemm {

const char* TraceEventKindName(TraceEventKind k) {
  switch (k) {
    case TraceEventKind::kSwitch:
      return "sched_switch";
    case TraceEventKind::kFork:
      return "sched_process_fork";
    case TraceEventKind::kExec:
      return "sched_process_exec";
    case TraceEventKind::kExit:
      return "sched_process_exit";
    case TraceEventKind::kFlush:
      return "tlb_flush";
    case TraceEventKind::kLost:
      return "lost";
  }
  return "unknown";
}

namespace {

// ftrace prints the CPU as "[%03d]"; anything at or beyond this is garbage, not a big machine.
constexpr int kMaxCpuColumn = 4096;
constexpr int kMaxTraceCpus = static_cast<int>(abi::kMaxCpus);
constexpr size_t kMaxMalformedLines = 10;
constexpr int64_t kNsPerSec = 1000000000;
constexpr int kMaxFlushReason = static_cast<int>(FlushReason::kRemoteWrongCpu);

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsSpace(char c) { return c == ' ' || c == '\t'; }

std::string_view StripLeadingSpaces(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  return s;
}

std::string_view StripTrailingSpaces(std::string_view s) {
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

std::string_view StripSpaces(std::string_view s) {
  return StripTrailingSpaces(StripLeadingSpaces(s));
}

bool AllDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), IsDigit);
}

// Decimal digits only. absl::SimpleAtoi alone would also accept a sign, a "0x" prefix or
// surrounding whitespace, none of which a well-formed trace has in these places; it still does
// the overflow check.
template <typename T>
bool ParseUnsigned(std::string_view s, T* out) {
  return AllDigits(s) && absl::SimpleAtoi(absl::string_view(s.data(), s.size()), out);
}

// As ParseUnsigned, with an optional '-' (priorities and tlb_flush's pages can be negative).
template <typename T>
bool ParseSigned(std::string_view s, T* out) {
  std::string_view digits = s;
  if (!digits.empty() && digits.front() == '-') digits.remove_prefix(1);
  return AllDigits(digits) && absl::SimpleAtoi(absl::string_view(s.data(), s.size()), out);
}

// Takes `prefix` off the front of *s.
bool Eat(std::string_view* s, std::string_view prefix) {
  if (!s->starts_with(prefix)) return false;
  s->remove_prefix(prefix.size());
  return true;
}

// Splits *s at the first `delim`: *value gets the text before it, *s keeps the text after it.
// Values that may contain spaces (comms, file names) thus end where the next key begins.
bool Until(std::string_view* s, std::string_view delim, std::string_view* value) {
  size_t at = s->find(delim);
  if (at == std::string_view::npos) return false;
  *value = s->substr(0, at);
  s->remove_prefix(at + delim.size());
  return true;
}

// "713.868165" -> 713868165000. Integer arithmetic on both parts, because a double has too few
// bits to keep nanoseconds exact beyond ~104 days of uptime. Digits beyond nanoseconds (no
// clock prints them) are dropped.
bool ParseTimestamp(std::string_view s, int64_t* ns) {
  size_t dot = s.find('.');
  if (dot == std::string_view::npos) return false;
  int64_t sec = 0;
  if (!ParseUnsigned(s.substr(0, dot), &sec)) return false;
  std::string_view frac = s.substr(dot + 1);
  if (!AllDigits(frac)) return false;
  int64_t sub = 0;
  for (size_t i = 0; i < 9; ++i) sub = sub * 10 + (i < frac.size() ? frac[i] - '0' : 0);
  if (sec > (std::numeric_limits<int64_t>::max() - sub) / kNsPerSec) return false;
  *ns = sec * kNsPerSec + sub;
  return true;
}

// The flags column: 5 characters since the migrate-disable column (Linux 5.13), 4 before.
bool ValidFlags(std::string_view s) {
  if (s.size() < 4 || s.size() > 5) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return c > ' ' && c < 0x7f; });
}

// prev_state: one or more state letters, "+" for preempted, "|" between combined states.
bool ValidState(std::string_view s) {
  if (s.empty()) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '+' || c == '|';
  });
}

bool ValidEventName(std::string_view s) {
  if (s.empty()) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || IsDigit(c) || c == '_';
  });
}

// Parses "COMM-PID (TGID)" (or "COMM-PID" when the trace was recorded without record-tgid).
// COMM may itself contain dashes and parentheses, so both are found from the right.
bool ParseTask(std::string_view left, TraceEvent* e) {
  left = StripTrailingSpaces(left);
  e->tgid = -1;
  if (!left.empty() && left.back() == ')') {
    size_t open = left.rfind('(');
    if (open == std::string_view::npos) return false;
    std::string_view tgid = StripSpaces(left.substr(open + 1, left.size() - open - 2));
    if (tgid.empty()) return false;
    // The idle task has no thread group: ftrace prints dashes instead of a number.
    if (tgid.find_first_not_of('-') != std::string_view::npos && !ParseUnsigned(tgid, &e->tgid)) {
      return false;
    }
    left = StripTrailingSpaces(left.substr(0, open));
  }
  size_t dash = left.rfind('-');
  if (dash == std::string_view::npos || !ParseUnsigned(left.substr(dash + 1), &e->pid)) {
    return false;
  }
  // ftrace right-aligns COMM in a 16-column field; the padding is not part of the name.
  e->comm = std::string(StripLeadingSpaces(left.substr(0, dash)));
  return true;
}

// Parses the line from the CPU column at `bracket` (the " [" before it) onwards:
// "[CPU] FLAGS TIMESTAMP: " and what precedes it. *rest gets "EVENT: FIELDS".
bool ParseHeaderAt(std::string_view line, size_t bracket, TraceEvent* e, std::string_view* rest) {
  std::string_view s = line.substr(bracket + 2);
  std::string_view v;
  if (!Until(&s, "]", &v) || !ParseUnsigned(v, &e->cpu) || e->cpu >= kMaxCpuColumn) return false;
  if (s.empty() || !IsSpace(s.front())) return false;
  s = StripLeadingSpaces(s);
  if (!Until(&s, " ", &v) || !ValidFlags(v)) return false;
  std::string_view flags = v;
  s = StripLeadingSpaces(s);
  if (!Until(&s, ": ", &v) || !ParseTimestamp(v, &e->timestamp_ns)) return false;
  if (!ParseTask(line.substr(0, bracket), e)) return false;
  e->flags = std::string(flags);
  *rest = s;
  return true;
}

// COMM may contain " [" too, so each " [" is tried as the CPU column until one yields a whole
// header; in real traces the first one does.
bool ParseHeader(std::string_view line, TraceEvent* e, std::string_view* rest) {
  for (size_t at = line.find(" ["); at != std::string_view::npos; at = line.find(" [", at + 1)) {
    if (ParseHeaderAt(line, at, e, rest)) return true;
  }
  return false;
}

// trace-cmd report -l: "%8.8s-%-5d %3d" (COMM cut or padded to 8 characters, PID, CPU), the
// flags right after the CPU, then " TIMESTAMP: ". *rest gets "EVENT: FIELDS".
bool ParseTraceCmdHeader(std::string_view line, TraceEvent* e, std::string_view* rest) {
  constexpr size_t kCommWidth = 8;
  if (line.size() <= kCommWidth + 1 || line[kCommWidth] != '-') return false;
  std::string_view s = line.substr(kCommWidth + 1);
  size_t digits = s.find_first_not_of("0123456789");
  if (digits == std::string_view::npos || !ParseUnsigned(s.substr(0, digits), &e->pid)) {
    return false;
  }
  s.remove_prefix(digits);
  if (s.empty() || !IsSpace(s.front())) return false;
  s = StripLeadingSpaces(s);
  digits = s.find_first_not_of("0123456789");
  if (digits == std::string_view::npos || !ParseUnsigned(s.substr(0, digits), &e->cpu) ||
      e->cpu >= kMaxCpuColumn) {
    return false;
  }
  s.remove_prefix(digits);
  std::string_view v;
  if (!Until(&s, " ", &v) || !ValidFlags(v)) return false;
  e->flags = std::string(v);
  s = StripLeadingSpaces(s);
  if (!Until(&s, ": ", &v) || !ParseTimestamp(v, &e->timestamp_ns)) return false;
  e->comm = std::string(StripLeadingSpaces(line.substr(0, kCommWidth)));
  e->tgid = -1;
  *rest = s;
  return true;
}

// The payloads below are the TP_printk formats of the kernel's tracepoints. Each checks that
// the payload's own pid is the line's task: the replay takes `pid` as both, and a line where
// they disagree has been mangled.

// "prev_comm=%s prev_pid=%d prev_prio=%d prev_state=%s ==> next_comm=%s next_pid=%d
// next_prio=%d"
bool ParseSwitch(std::string_view s, TraceEvent* e) {
  std::string_view prev_comm, next_comm, state, v;
  int prio = 0;
  if (!Eat(&s, "prev_comm=") || !Until(&s, " prev_pid=", &prev_comm) ||
      !Until(&s, " prev_prio=", &v) || !ParseUnsigned(v, &e->prev_pid) ||
      !Until(&s, " prev_state=", &v) || !ParseSigned(v, &prio) ||
      !Until(&s, " ==> next_comm=", &state) || !ValidState(state) ||
      !Until(&s, " next_pid=", &next_comm) || !Until(&s, " next_prio=", &v) ||
      !ParseUnsigned(v, &e->next_pid) || !ParseSigned(s, &prio)) {
    return false;
  }
  if (e->prev_pid != e->pid) return false;
  e->prev_comm = std::string(prev_comm);
  e->next_comm = std::string(next_comm);
  e->prev_state = std::string(state);
  return true;
}

// "comm=%s pid=%d child_comm=%s child_pid=%d"
bool ParseFork(std::string_view s, TraceEvent* e) {
  std::string_view comm, child_comm, v;
  int parent = 0;
  if (!Eat(&s, "comm=") || !Until(&s, " pid=", &comm) || !Until(&s, " child_comm=", &v) ||
      !ParseUnsigned(v, &parent) || !Until(&s, " child_pid=", &child_comm) ||
      !ParseUnsigned(s, &e->child_pid)) {
    return false;
  }
  if (parent != e->pid) return false;
  e->child_comm = std::string(child_comm);
  return true;
}

// "filename=%s pid=%d old_pid=%d". A path may contain anything, but " pid=" can only be the
// key after it: the last occurrence ends the file name (" old_pid=" does not contain it).
bool ParseExec(std::string_view s, TraceEvent* e) {
  if (!Eat(&s, "filename=")) return false;
  size_t at = s.rfind(" pid=");
  if (at == std::string_view::npos) return false;
  std::string_view filename = s.substr(0, at);
  s.remove_prefix(at + 5);
  std::string_view v;
  int pid = 0, old_pid = 0;
  if (!Until(&s, " old_pid=", &v) || !ParseUnsigned(v, &pid) || !ParseUnsigned(s, &old_pid)) {
    return false;
  }
  if (pid != e->pid) return false;
  e->filename = std::string(filename);
  return true;
}

// "comm=%s pid=%d prio=%d", with " group_dead=%s" appended since Linux 6.16.
bool ParseExit(std::string_view s, TraceEvent* e) {
  std::string_view comm, v;
  int pid = 0, prio = 0;
  if (!Eat(&s, "comm=") || !Until(&s, " pid=", &comm) || !Until(&s, " prio=", &v) ||
      !ParseUnsigned(v, &pid)) {
    return false;
  }
  if (Until(&s, " group_dead=", &v)) {
    if (!ParseSigned(v, &prio) || (s != "true" && s != "false")) return false;
  } else if (!ParseSigned(s, &prio)) {
    return false;
  }
  return pid == e->pid;
}

// "pages:%ld reason:%s (%d)": the reason's name, then its number, which is what we keep (the
// names have changed across kernel versions, the enum values have not).
bool ParseFlush(std::string_view s, TraceEvent* e) {
  std::string_view v;
  if (!Eat(&s, "pages:") || !Until(&s, " reason:", &v) || !ParseSigned(v, &e->pages) ||
      e->pages < -1) {
    return false;
  }
  if (s.empty() || s.back() != ')') return false;
  size_t open = s.rfind('(');
  if (open == std::string_view::npos || open == 0 || s[open - 1] != ' ') return false;
  int reason = 0;
  if (!ParseUnsigned(s.substr(open + 1, s.size() - open - 2), &reason) ||
      reason > kMaxFlushReason) {
    return false;
  }
  e->reason = static_cast<FlushReason>(reason);
  return true;
}

// A lost-events marker: "CPU:1[open]123 [close]", or "CPU:1[open][close]" when the ring buffer
// could not count them (lost = 0 then). ftrace writes "CPU:1 [LOST 123 EVENTS]" (open
// " [LOST ", close "EVENTS]"), trace-cmd "CPU:1 [123 EVENTS DROPPED]" (" [", "EVENTS DROPPED]").
bool ParseLostMarker(std::string_view s, std::string_view open, std::string_view close,
                     TraceEvent* e) {
  std::string_view v;
  if (!Eat(&s, "CPU:") || !Until(&s, open, &v) || !ParseUnsigned(v, &e->cpu) ||
      e->cpu >= kMaxCpuColumn) {
    return false;
  }
  if (s == close) {
    e->lost = 0;
    return true;
  }
  return s.size() > close.size() && s.substr(s.size() - close.size()) == close &&
         s[s.size() - close.size() - 1] == ' ' &&
         ParseUnsigned(s.substr(0, s.size() - close.size() - 1), &e->lost);
}

// trace-cmd's first line, "cpus=2": the count, or -1 when it holds none.
int TraceCmdCpus(std::string_view line) {
  int n = 0;
  if (!Eat(&line, "cpus=") || !ParseUnsigned(StripTrailingSpaces(line), &n) || n < 1 ||
      n > kMaxCpuColumn) {
    return -1;
  }
  return n;
}

// Whether `text` is trace-cmd report's: its first line that is not blank is "cpus=N", or
// "version = N" (trace-cmd 2) and then that.
TraceFormat DetectFormat(std::string_view text) {
  bool version_seen = false;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = StripSpaces(text.substr(0, nl));
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    if (line.starts_with("cpus=")) return TraceFormat::kTraceCmd;
    if (!version_seen && line.starts_with("version = ")) {
      version_seen = true;
      continue;
    }
    break;
  }
  return TraceFormat::kFtrace;
}

// "# entries-in-buffer/entries-written: 6104/6104   #P:2": 0 when the line has no "#P:",
// -1 when it has one that does not hold a CPU count.
int HeaderCpus(std::string_view line) {
  size_t at = line.find("#P:");
  if (at == std::string_view::npos) return 0;
  std::string_view s = line.substr(at + 3);
  size_t end = s.find_first_of(" \t");
  int n = 0;
  if (!ParseUnsigned(s.substr(0, end), &n) || n < 1 || n > kMaxCpuColumn) return -1;
  return n;
}

// "# entries-in-buffer/entries-written: 6104/9000   #P:2": the two counts into `stats`; other
// comment lines leave them alone.
void HeaderEntries(std::string_view line, TraceStats* stats) {
  constexpr std::string_view kKey = "# entries-in-buffer/entries-written:";
  if (!line.starts_with(kKey)) return;
  std::string_view s = line.substr(kKey.size());
  s.remove_prefix(std::min(s.find_first_not_of(" \t"), s.size()));
  std::string_view in, written;
  if (!Until(&s, "/", &in)) return;
  written = s.substr(0, s.find_first_of(" \t"));
  uint64_t a = 0, b = 0;
  if (ParseUnsigned(in, &a) && ParseUnsigned(written, &b)) {
    stats->entries_in_buffer = a;
    stats->entries_written = b;
  }
}

// Calls fn(line) for each line of `text` without its "\n" or "\r\n"; a last line without a
// newline counts too, an empty text has no lines.
template <typename Fn>
void ForEachLine(std::string_view text, Fn fn) {
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    fn(line);
  }
}

void NoteMalformed(TraceStats* stats, int line) {
  ++stats->malformed;
  if (stats->malformed_lines.size() < kMaxMalformedLines) stats->malformed_lines.push_back(line);
}

enum class LineClass { kEvent, kMalformed, kOther };

// Classifies one non-comment line, filling *e for an event.
LineClass ParseEventLine(std::string_view line, TraceFormat format, TraceEvent* e) {
  const bool trace_cmd = format == TraceFormat::kTraceCmd;
  if (line.starts_with("CPU:")) {
    const bool ok = trace_cmd ? ParseLostMarker(line, " [", "EVENTS DROPPED]", e)
                              : ParseLostMarker(line, " [LOST ", "EVENTS]", e);
    if (!ok) return LineClass::kMalformed;
    e->kind = TraceEventKind::kLost;
    e->pid = -1;  // no task: 0 would read as the idle task
    return LineClass::kEvent;
  }
  std::string_view rest, name;
  if (!(trace_cmd ? ParseTraceCmdHeader(line, e, &rest) : ParseHeader(line, e, &rest)) ||
      !Until(&rest, ":", &name) || !ValidEventName(name)) {
    return LineClass::kMalformed;
  }
  // "EVENT:" ends the line or is followed by a space; anything else was cut or mangled.
  // trace-cmd pads the name to a column.
  if (!rest.empty() && !Eat(&rest, " ")) return LineClass::kMalformed;
  if (trace_cmd) rest = StripLeadingSpaces(rest);
  bool ok = false;
  if (name == "sched_switch") {
    e->kind = TraceEventKind::kSwitch;
    ok = ParseSwitch(rest, e);
  } else if (name == "sched_process_fork") {
    e->kind = TraceEventKind::kFork;
    ok = ParseFork(rest, e);
  } else if (name == "sched_process_exec") {
    e->kind = TraceEventKind::kExec;
    ok = ParseExec(rest, e);
  } else if (name == "sched_process_exit") {
    e->kind = TraceEventKind::kExit;
    ok = ParseExit(rest, e);
  } else if (name == "tlb_flush") {
    e->kind = TraceEventKind::kFlush;
    ok = ParseFlush(rest, e);
  } else {
    return LineClass::kOther;
  }
  return ok ? LineClass::kEvent : LineClass::kMalformed;
}

// Drops the events of CPUs the trace does not have: they count as malformed. Done once the
// count is known, after parsing: the header may follow events, or the count come from
// kernel.txt.
void DropEventsBeyond(int num_cpus, Trace* trace) {
  TraceStats& stats = trace->stats;
  std::vector<int> dropped;
  auto beyond = [&](const TraceEvent& e) {
    if (e.cpu < num_cpus) return false;
    dropped.push_back(e.line);
    --stats.events;
    ++stats.malformed;
    ++stats.beyond_cpus;
    if (e.kind == TraceEventKind::kLost) {
      --stats.lost_markers;
      stats.lost_events -= e.lost;
    }
    return true;
  };
  trace->events.erase(std::remove_if(trace->events.begin(), trace->events.end(), beyond),
                      trace->events.end());
  if (dropped.empty()) return;
  // The first malformed lines of the whole file: the kept ones were the smallest of theirs, so
  // the smallest of the union are the right ones.
  std::vector<int>& lines = stats.malformed_lines;
  lines.insert(lines.end(), dropped.begin(), dropped.end());
  std::sort(lines.begin(), lines.end());
  if (lines.size() > kMaxMalformedLines) lines.resize(kMaxMalformedLines);
}

// trace-cmd cuts the line's COMM to 8 characters; the sched_switch and fork fields name whole
// ones. A cut name becomes the last whole name of that pid in the trace that starts with it:
// the name ftrace would print, which is the task's latest (saved_cmdlines, refreshed at each
// switch).
void RestoreCutComms(Trace* trace) {
  constexpr size_t kCut = 8;
  std::map<int, std::string> whole;
  auto note = [&](int pid, const std::string& comm) {
    if (comm.size() > kCut) {
      whole[pid] = comm;
    } else {
      whole.erase(pid);
    }
  };
  for (const TraceEvent& e : trace->events) {
    if (e.kind == TraceEventKind::kSwitch) {
      note(e.prev_pid, e.prev_comm);
      note(e.next_pid, e.next_comm);
    } else if (e.kind == TraceEventKind::kFork) {
      note(e.child_pid, e.child_comm);
    }
  }
  for (TraceEvent& e : trace->events) {
    if (e.comm.size() != kCut) continue;
    auto it = whole.find(e.pid);
    if (it != whole.end() && it->second.starts_with(e.comm)) e.comm = it->second;
  }
}

std::string JoinPath(const std::string& dir, const char* file) {
  if (!dir.empty() && dir.back() == '/') return dir + file;
  return absl::StrFormat("%s/%s", dir, file);
}

// The whole file; kNotFound when it does not exist, so callers can treat it as optional.
absl::StatusOr<std::string> ReadFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) return absl::NotFoundError(absl::StrFormat("%s: no such file", path));
    return absl::ErrnoToStatus(err, absl::StrFormat("%s: cannot open", path));
  }
  std::string text;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      close(fd);
      return absl::ErrnoToStatus(err, absl::StrFormat("%s: cannot read", path));
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return text;
}

// An optional file: missing is empty, any other failure is an error.
absl::StatusOr<std::string> ReadOptionalFile(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (absl::IsNotFound(text.status())) return std::string();
  return text;
}

// tgids.txt: "PID TGID" per line.
void ParseTgids(std::string_view text, TraceDir* dir) {
  ForEachLine(text, [&](std::string_view line) {
    line = StripSpaces(line);
    if (line.empty()) return;
    size_t sp = line.find_first_of(" \t");
    int pid = 0, tgid = 0;
    if (sp == std::string_view::npos || !ParseUnsigned(line.substr(0, sp), &pid) ||
        !ParseUnsigned(StripLeadingSpaces(line.substr(sp)), &tgid)) {
      ++dir->bad_aux_lines;
      return;
    }
    dir->tgids[pid] = tgid;
  });
}

// kthreads.txt: a PID per line.
void ParseKthreads(std::string_view text, TraceDir* dir) {
  ForEachLine(text, [&](std::string_view line) {
    line = StripSpaces(line);
    if (line.empty()) return;
    int pid = 0;
    if (!ParseUnsigned(line, &pid)) {
      ++dir->bad_aux_lines;
      return;
    }
    dir->kthreads.insert(pid);
  });
}

// kernel.txt: the release (`uname -r`), then the CPU count (`nproc`). Blank lines are skipped.
void ParseKernel(std::string_view text, TraceDir* dir) {
  int index = 0;
  ForEachLine(text, [&](std::string_view line) {
    line = StripSpaces(line);
    if (line.empty()) return;
    switch (index++) {
      case 0:
        dir->kernel_release = std::string(line);
        return;
      case 1:
        if (!ParseUnsigned(line, &dir->kernel_cpus) || dir->kernel_cpus < 1 ||
            dir->kernel_cpus > kMaxCpuColumn) {
          dir->kernel_cpus = 0;
          ++dir->bad_aux_lines;
        }
        return;
      default:
        ++dir->bad_aux_lines;
    }
  });
}

std::string DescribeStats(const TraceStats& s) {
  std::string text =
      absl::StrFormat("%d lines: %d comments, %d malformed", s.lines, s.comments, s.malformed);
  if (!s.malformed_lines.empty()) {
    absl::StrAppendFormat(&text, " (the first at line %d)", s.malformed_lines.front());
  }
  absl::StrAppendFormat(&text, ", %d of other event types", s.other_events);
  return text;
}

}  // namespace

Trace ParseTrace(std::string_view text) {
  Trace trace;
  TraceStats& stats = trace.stats;
  // ~110 bytes per line in real traces; reserving avoids regrowing a vector of strings.
  trace.events.reserve(text.size() / 100);
  trace.format = DetectFormat(text);
  const bool trace_cmd = trace.format == TraceFormat::kTraceCmd;
  ForEachLine(text, [&](std::string_view line) {
    const int number = ++stats.lines;
    if (trace_cmd && (line.starts_with("cpus=") || line.starts_with("version = "))) {
      int cpus = line.starts_with("cpus=") ? TraceCmdCpus(line) : 0;
      if (cpus < 0 || (cpus > 0 && trace.num_cpus > 0 && cpus != trace.num_cpus)) {
        NoteMalformed(&stats, number);
        return;
      }
      if (cpus > 0) trace.num_cpus = cpus;
      ++stats.comments;
      return;
    }
    // Only a '#' in the first column starts a comment: event lines are indented, and a COMM
    // may itself begin with '#'.
    if (line.empty() || line.front() == '#' || line.find_first_not_of(" \t") == line.npos) {
      int cpus = line.empty() ? 0 : HeaderCpus(line);
      if (cpus < 0 || (cpus > 0 && trace.num_cpus > 0 && cpus != trace.num_cpus)) {
        NoteMalformed(&stats, number);
        return;
      }
      if (cpus > 0) trace.num_cpus = cpus;
      HeaderEntries(line, &stats);
      ++stats.comments;
      return;
    }
    TraceEvent e;
    e.line = number;
    switch (ParseEventLine(line, trace.format, &e)) {
      case LineClass::kOther:
        ++stats.other_events;
        return;
      case LineClass::kMalformed:
        NoteMalformed(&stats, number);
        return;
      case LineClass::kEvent:
        break;
    }
    ++stats.events;
    if (e.kind == TraceEventKind::kLost) {
      ++stats.lost_markers;
      stats.lost_events += e.lost;
    }
    trace.events.push_back(std::move(e));
  });
  if (trace_cmd) RestoreCutComms(&trace);
  // ftrace prints "#P:" before any event, but a hand-made or concatenated file may not.
  if (trace.num_cpus > 0) DropEventsBeyond(trace.num_cpus, &trace);
  return trace;
}

absl::StatusOr<TraceDir> LoadTraceDir(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    int err = errno;
    if (err == ENOENT) {
      return absl::NotFoundError(absl::StrFormat("%s: no such trace folder", path));
    }
    return absl::ErrnoToStatus(err, absl::StrFormat("%s: cannot open the trace folder", path));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::NotFoundError(
        absl::StrFormat("%s: not a folder (a trace folder holds trace.txt)", path));
  }
  absl::StatusOr<std::string> trace_text = ReadFile(JoinPath(path, "trace.txt"));
  if (!trace_text.ok()) return trace_text.status();
  absl::StatusOr<std::string> tgids = ReadOptionalFile(JoinPath(path, "tgids.txt"));
  if (!tgids.ok()) return tgids.status();
  absl::StatusOr<std::string> kthreads = ReadOptionalFile(JoinPath(path, "kthreads.txt"));
  if (!kthreads.ok()) return kthreads.status();
  absl::StatusOr<std::string> kernel = ReadOptionalFile(JoinPath(path, "kernel.txt"));
  if (!kernel.ok()) return kernel.status();
  // Optional too, but its absence is itself a fact for the report ("assumed").
  absl::StatusOr<std::string> machine = ReadFile(JoinPath(path, "machine.txt"));
  if (!machine.ok() && !absl::IsNotFound(machine.status())) return machine.status();
  absl::StatusOr<TraceDir> dir = ParseTraceDir(path, *trace_text, *tgids, *kthreads, *kernel);
  if (dir.ok() && machine.ok()) {
    dir->machine = ParseMachineFacts(*machine);
    dir->bad_aux_lines += dir->machine.bad_lines;
  }
  return dir;
}

absl::StatusOr<TraceDir> ParseTraceDir(const std::string& path, std::string_view trace_text,
                                       std::string_view tgids_text,
                                       std::string_view kthreads_text,
                                       std::string_view kernel_text) {
  TraceDir dir;
  dir.path = path;
  const std::string trace_path = JoinPath(path, "trace.txt");
  const std::string kernel_path = JoinPath(path, "kernel.txt");
  dir.trace = ParseTrace(trace_text);
  ParseTgids(tgids_text, &dir);
  ParseKthreads(kthreads_text, &dir);
  ParseKernel(kernel_text, &dir);

  Trace& trace = dir.trace;
  if (trace.format == TraceFormat::kTraceCmd) {
    // The TGID column ftrace prints is saved_tgids' entry, which tgids.txt holds.
    for (TraceEvent& e : trace.events) {
      if (e.tgid >= 0 || e.pid <= 0) continue;
      auto it = dir.tgids.find(e.pid);
      if (it != dir.tgids.end()) e.tgid = it->second;
    }
  }
  if (trace.events.empty() && trace.stats.beyond_cpus > 0 && trace.num_cpus > 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: no events on the %d CPUs of its '#P:%d' header: %d on higher CPUs (%s)", trace_path,
        trace.num_cpus, trace.num_cpus, trace.stats.beyond_cpus, DescribeStats(trace.stats)));
  }
  if (trace.events.empty()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: no events (%s)%s", trace_path, DescribeStats(trace.stats),
        trace.format == TraceFormat::kTraceCmd && trace.stats.malformed > 0
            ? "; a trace-cmd text needs the flags and the kernel's formats: trace-cmd report -l "
              "-N"
            : ""));
  }
  if (trace.num_cpus == 0) {
    if (dir.kernel_cpus == 0) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: no '#P:N' header line and no CPU count in kernel.txt", trace_path));
    }
    if (dir.kernel_cpus > kMaxTraceCpus) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: the trace has %d CPUs; activemm emulates at most %d", kernel_path,
                          dir.kernel_cpus, kMaxTraceCpus));
    }
    DropEventsBeyond(dir.kernel_cpus, &trace);
    trace.num_cpus = dir.kernel_cpus;
    if (trace.events.empty()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: no events on the %d CPUs kernel.txt names (%s)", trace_path,
                          trace.num_cpus, DescribeStats(trace.stats)));
    }
  } else if (trace.num_cpus > kMaxTraceCpus) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: the trace has %d CPUs (#P:%d); activemm emulates at most %d",
                        trace_path, trace.num_cpus, trace.num_cpus, kMaxTraceCpus));
  }
  return dir;
}

}  // namespace activemm
