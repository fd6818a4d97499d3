#include "vmm/replay/trace.h"

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

// The names of one line as the parse found them, pointing into the line. They are interned
// only once the whole line has parsed: a header tried at several " [" columns, or a line that
// turns out malformed, adds nothing to the pool.
struct LineNames {
  std::string_view comm, flags, prev_comm, next_comm, prev_state, child_comm, filename;
};

// Parses "COMM-PID (TGID)" (or "COMM-PID" when the trace was recorded without record-tgid).
// COMM may itself contain dashes and parentheses, so both are found from the right.
bool ParseTask(std::string_view left, TraceEvent* e, LineNames* n) {
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
  n->comm = StripLeadingSpaces(left.substr(0, dash));
  return true;
}

// Parses the line from the CPU column at `bracket` (the " [" before it) onwards:
// "[CPU] FLAGS TIMESTAMP: " and what precedes it. *rest gets "EVENT: FIELDS".
bool ParseHeaderAt(std::string_view line, size_t bracket, TraceEvent* e, LineNames* n,
                   std::string_view* rest) {
  std::string_view s = line.substr(bracket + 2);
  std::string_view v;
  if (!Until(&s, "]", &v) || !ParseUnsigned(v, &e->cpu) || e->cpu >= kMaxCpuColumn) return false;
  if (s.empty() || !IsSpace(s.front())) return false;
  s = StripLeadingSpaces(s);
  if (!Until(&s, " ", &v) || !ValidFlags(v)) return false;
  std::string_view flags = v;
  s = StripLeadingSpaces(s);
  if (!Until(&s, ": ", &v) || !ParseTimestamp(v, &e->timestamp_ns)) return false;
  if (!ParseTask(line.substr(0, bracket), e, n)) return false;
  n->flags = flags;
  *rest = s;
  return true;
}

// COMM may contain " [" too, so each " [" is tried as the CPU column until one yields a whole
// header; in real traces the first one does.
bool ParseHeader(std::string_view line, TraceEvent* e, LineNames* n, std::string_view* rest) {
  for (size_t at = line.find(" ["); at != std::string_view::npos; at = line.find(" [", at + 1)) {
    if (ParseHeaderAt(line, at, e, n, rest)) return true;
  }
  return false;
}

// trace-cmd report -l: "%8.8s-%-5d %3d" (COMM cut or padded to 8 characters, PID, CPU), the
// flags right after the CPU, then " TIMESTAMP: ". *rest gets "EVENT: FIELDS".
bool ParseTraceCmdHeader(std::string_view line, TraceEvent* e, LineNames* n,
                         std::string_view* rest) {
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
  n->flags = v;
  s = StripLeadingSpaces(s);
  if (!Until(&s, ": ", &v) || !ParseTimestamp(v, &e->timestamp_ns)) return false;
  n->comm = StripLeadingSpaces(line.substr(0, kCommWidth));
  e->tgid = -1;
  *rest = s;
  return true;
}

// The payloads below are the TP_printk formats of the kernel's tracepoints. Each checks that
// the payload's own pid is the line's task: the replay takes `pid` as both, and a line where
// they disagree has been mangled.

// "prev_comm=%s prev_pid=%d prev_prio=%d prev_state=%s ==> next_comm=%s next_pid=%d
// next_prio=%d"
bool ParseSwitch(std::string_view s, TraceEvent* e, LineNames* n) {
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
  n->prev_comm = prev_comm;
  n->next_comm = next_comm;
  n->prev_state = state;
  return true;
}

// "comm=%s pid=%d child_comm=%s child_pid=%d"
bool ParseFork(std::string_view s, TraceEvent* e, LineNames* n) {
  std::string_view comm, child_comm, v;
  int parent = 0;
  if (!Eat(&s, "comm=") || !Until(&s, " pid=", &comm) || !Until(&s, " child_comm=", &v) ||
      !ParseUnsigned(v, &parent) || !Until(&s, " child_pid=", &child_comm) ||
      !ParseUnsigned(s, &e->child_pid)) {
    return false;
  }
  if (parent != e->pid) return false;
  n->child_comm = child_comm;
  return true;
}

// "filename=%s pid=%d old_pid=%d". A path may contain anything, but " pid=" can only be the
// key after it: the last occurrence ends the file name (" old_pid=" does not contain it).
bool ParseExec(std::string_view s, TraceEvent* e, LineNames* n) {
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
  n->filename = filename;
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

// What a line says of the format, before any event: trace-cmd report's text starts (after
// blank lines) with "cpus=N", or with "version = N" (trace-cmd 2) and then that.
enum class FormatClue { kBlank, kVersion, kTraceCmd, kFtrace };

FormatClue FormatClueOf(std::string_view line) {
  line = StripSpaces(line);
  if (line.empty()) return FormatClue::kBlank;
  if (line.starts_with("cpus=")) return FormatClue::kTraceCmd;
  if (line.starts_with("version = ")) return FormatClue::kVersion;
  return FormatClue::kFtrace;
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

// Text fed in pieces of any size, as lines: fn(line) for each line without its "\n" or
// "\r\n". *partial holds what follows the last newline until the next piece completes it;
// FinishLines passes it on as the last line (a last line without a newline counts too).
template <typename Fn>
void SplitLines(std::string* partial, std::string_view text, Fn fn) {
  auto line = [&](std::string_view l) {
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    fn(l);
  };
  for (size_t nl; (nl = text.find('\n')) != std::string_view::npos; text.remove_prefix(nl + 1)) {
    if (partial->empty()) {
      line(text.substr(0, nl));
    } else {
      partial->append(text.substr(0, nl));
      line(*partial);
      partial->clear();
    }
  }
  partial->append(text);
}

template <typename Fn>
void FinishLines(std::string* partial, Fn fn) {
  if (partial->empty()) return;
  std::string last = std::move(*partial);
  partial->clear();
  SplitLines(partial, last + "\n", fn);
}

// Calls fn(line) for each line of a whole text; an empty text has no lines.
template <typename Fn>
void ForEachLine(std::string_view text, Fn fn) {
  std::string partial;
  SplitLines(&partial, text, fn);
  FinishLines(&partial, fn);
}

void NoteMalformed(TraceStats* stats, int line) {
  ++stats->malformed;
  if (stats->malformed_lines.size() < kMaxMalformedLines) stats->malformed_lines.push_back(line);
}

enum class LineClass { kEvent, kMalformed, kOther };

// Classifies one non-comment line, filling *e for an event.
LineClass ParseEventLine(std::string_view line, TraceFormat format, TraceEvent* e, LineNames* n) {
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
  if (!(trace_cmd ? ParseTraceCmdHeader(line, e, n, &rest) : ParseHeader(line, e, n, &rest)) ||
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
    ok = ParseSwitch(rest, e, n);
  } else if (name == "sched_process_fork") {
    e->kind = TraceEventKind::kFork;
    ok = ParseFork(rest, e, n);
  } else if (name == "sched_process_exec") {
    e->kind = TraceEventKind::kExec;
    ok = ParseExec(rest, e, n);
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
  std::map<int, InternedString> whole;
  auto note = [&](int pid, const InternedString& comm) {
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
    if (it != whole.end() && it->second.starts_with(e.comm.str())) e.comm = it->second;
  }
}

std::string JoinPath(const std::string& dir, const char* file) {
  if (!dir.empty() && dir.back() == '/') return dir + file;
  return absl::StrFormat("%s/%s", dir, file);
}

// Calls fn(block) for each block of the file as it is read, after size_hint(the file's size);
// kNotFound when it does not exist, so callers can treat it as optional.
template <typename SizeFn, typename BlockFn>
absl::Status ReadBlocks(const std::string& path, SizeFn size_hint, BlockFn fn) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT) return absl::NotFoundError(absl::StrFormat("%s: no such file", path));
    return absl::ErrnoToStatus(err, absl::StrFormat("%s: cannot open", path));
  }
  struct stat st;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) size_hint(static_cast<size_t>(st.st_size));
  // A block big enough that a read costs little per byte, small enough to stay in the cache.
  std::vector<char> buf(1 << 20);
  for (;;) {
    ssize_t n = read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      close(fd);
      return absl::ErrnoToStatus(err, absl::StrFormat("%s: cannot read", path));
    }
    if (n == 0) break;
    fn(std::string_view(buf.data(), static_cast<size_t>(n)));
  }
  close(fd);
  return absl::OkStatus();
}

// The whole file; kNotFound when it does not exist.
absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::string text;
  absl::Status s = ReadBlocks(
      path, [&](size_t size) { text.reserve(size); },
      [&](std::string_view block) { text.append(block); });
  if (!s.ok()) return s;
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

// LoadTraceDir's and ParseTraceDir's checks of a parsed trace and the folder's other files.
absl::StatusOr<TraceDir> FinishTraceDir(const std::string& path, Trace trace_in,
                                        std::string_view tgids_text, std::string_view kthreads_text,
                                        std::string_view kernel_text) {
  TraceDir dir;
  dir.path = path;
  const std::string trace_path = JoinPath(path, "trace.txt");
  const std::string kernel_path = JoinPath(path, "kernel.txt");
  dir.trace = std::move(trace_in);
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

}  // namespace

TraceParser::TraceParser() : names_(std::make_shared<StringPool>()) {}

void TraceParser::Reserve(size_t text_bytes) {
  // Real lines are 100-160 bytes: reserving avoids copying every event as the vector grows
  // (pages reserved and never written cost no memory).
  trace_.events.reserve(text_bytes / 100);
}

void TraceParser::Feed(std::string_view text) {
  SplitLines(&partial_, text, [this](std::string_view line) { Line(line); });
}

Trace TraceParser::Finish() && {
  FinishLines(&partial_, [this](std::string_view line) { Line(line); });
  if (!format_known_) Decide(TraceFormat::kFtrace);
  if (trace_.format == TraceFormat::kTraceCmd) RestoreCutComms(&trace_);
  // ftrace prints "#P:" before any event, but a hand-made or concatenated file may not.
  if (trace_.num_cpus > 0) DropEventsBeyond(trace_.num_cpus, &trace_);
  trace_.names = std::move(names_);
  return std::move(trace_);
}

void TraceParser::Line(std::string_view line) {
  if (format_known_) return Parse(line);
  // Until a line decides the format, the blank lines and a "version = N" line wait (they are
  // comments in trace-cmd's text, and the version line malformed in ftrace's).
  switch (FormatClueOf(line)) {
    case FormatClue::kBlank:
      ++(held_version_ ? held_blank_after_ : held_blank_before_);
      return;
    case FormatClue::kVersion:
      if (!held_version_) {
        held_version_ = std::string(line);
        return;
      }
      Decide(TraceFormat::kFtrace);
      break;
    case FormatClue::kTraceCmd:
      Decide(TraceFormat::kTraceCmd);
      break;
    case FormatClue::kFtrace:
      Decide(TraceFormat::kFtrace);
      break;
  }
  Parse(line);
}

void TraceParser::Decide(TraceFormat format) {
  trace_.format = format;
  format_known_ = true;
  for (; held_blank_before_ > 0; --held_blank_before_) Parse("");
  if (held_version_) Parse(*held_version_);
  held_version_.reset();
  for (; held_blank_after_ > 0; --held_blank_after_) Parse("");
}

void TraceParser::Parse(std::string_view line) {
  TraceStats& stats = trace_.stats;
  const int number = ++stats.lines;
  if (trace_.format == TraceFormat::kTraceCmd &&
      (line.starts_with("cpus=") || line.starts_with("version = "))) {
    int cpus = line.starts_with("cpus=") ? TraceCmdCpus(line) : 0;
    if (cpus < 0 || (cpus > 0 && trace_.num_cpus > 0 && cpus != trace_.num_cpus)) {
      NoteMalformed(&stats, number);
      return;
    }
    if (cpus > 0) trace_.num_cpus = cpus;
    ++stats.comments;
    return;
  }
  // Only a '#' in the first column starts a comment: event lines are indented, and a COMM
  // may itself begin with '#'.
  if (line.empty() || line.front() == '#' || line.find_first_not_of(" \t") == line.npos) {
    int cpus = line.empty() ? 0 : HeaderCpus(line);
    if (cpus < 0 || (cpus > 0 && trace_.num_cpus > 0 && cpus != trace_.num_cpus)) {
      NoteMalformed(&stats, number);
      return;
    }
    if (cpus > 0) trace_.num_cpus = cpus;
    HeaderEntries(line, &stats);
    ++stats.comments;
    return;
  }
  TraceEvent e;
  e.line = number;
  LineNames n;
  switch (ParseEventLine(line, trace_.format, &e, &n)) {
    case LineClass::kOther:
      ++stats.other_events;
      return;
    case LineClass::kMalformed:
      NoteMalformed(&stats, number);
      return;
    case LineClass::kEvent:
      break;
  }
  StringPool& pool = *names_;
  e.comm = pool.Intern(n.comm);
  e.flags = pool.Intern(n.flags);
  e.prev_comm = pool.Intern(n.prev_comm);
  e.next_comm = pool.Intern(n.next_comm);
  e.prev_state = pool.Intern(n.prev_state);
  e.child_comm = pool.Intern(n.child_comm);
  e.filename = pool.Intern(n.filename);
  ++stats.events;
  if (e.kind == TraceEventKind::kLost) {
    ++stats.lost_markers;
    stats.lost_events += e.lost;
  }
  trace_.events.push_back(e);
}

Trace ParseTrace(std::string_view text) {
  TraceParser parser;
  parser.Reserve(text.size());
  parser.Feed(text);
  return std::move(parser).Finish();
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
  // trace.txt is parsed as it is read: a minute of a busy machine is hundreds of megabytes.
  TraceParser parser;
  if (absl::Status s = ReadBlocks(
          JoinPath(path, "trace.txt"), [&](size_t size) { parser.Reserve(size); },
          [&](std::string_view block) { parser.Feed(block); });
      !s.ok()) {
    return s;
  }
  absl::StatusOr<std::string> tgids = ReadOptionalFile(JoinPath(path, "tgids.txt"));
  if (!tgids.ok()) return tgids.status();
  absl::StatusOr<std::string> kthreads = ReadOptionalFile(JoinPath(path, "kthreads.txt"));
  if (!kthreads.ok()) return kthreads.status();
  absl::StatusOr<std::string> kernel = ReadOptionalFile(JoinPath(path, "kernel.txt"));
  if (!kernel.ok()) return kernel.status();
  // Optional too, but its absence is itself a fact for the report ("assumed").
  absl::StatusOr<std::string> machine = ReadFile(JoinPath(path, "machine.txt"));
  if (!machine.ok() && !absl::IsNotFound(machine.status())) return machine.status();
  absl::StatusOr<TraceDir> dir =
      FinishTraceDir(path, std::move(parser).Finish(), *tgids, *kthreads, *kernel);
  if (dir.ok() && machine.ok()) {
    dir->machine = ParseMachineFacts(*machine);
    dir->bad_aux_lines += dir->machine.bad_lines;
  }
  return dir;
}

absl::StatusOr<std::map<int, std::string>> ReadTraceLines(const std::string& dir_path,
                                                          const std::set<int>& lines) {
  std::map<int, std::string> out;
  if (lines.empty()) return out;
  int number = 0;
  std::string partial;
  auto keep = [&](std::string_view line) {
    if (lines.contains(++number)) out.emplace(number, std::string(line));
  };
  absl::Status s = ReadBlocks(
      JoinPath(dir_path, "trace.txt"), [](size_t) {},
      [&](std::string_view block) { SplitLines(&partial, block, keep); });
  if (!s.ok()) return s;
  FinishLines(&partial, keep);
  return out;
}

absl::StatusOr<TraceDir> ParseTraceDir(const std::string& path, std::string_view trace_text,
                                       std::string_view tgids_text, std::string_view kthreads_text,
                                       std::string_view kernel_text) {
  return FinishTraceDir(path, ParseTrace(trace_text), tgids_text, kthreads_text, kernel_text);
}

}  // namespace activemm
