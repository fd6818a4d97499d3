#include "vmm/replay/capture.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "fmt/core.h"
#include "vmm/kvm/unique_fd.h"
#include "vmm/replay/machine_facts.h"
#include "vmm/replay/trace.h"

namespace activemm {
namespace {

// The events ../shared/traces records, as tracefs names them (events/SYSTEM/NAME/enable).
constexpr const char* kEvents[] = {"sched/sched_switch", "sched/sched_process_fork",
                                   "sched/sched_process_exec", "sched/sched_process_exit",
                                   "tlb/tlb_flush"};

constexpr uint64_t kPfKthread = 0x00200000;  // include/linux/sched.h

std::string Errno(int e) { return std::strerror(e); }

// Debian's Abseil has a string_view of its own.
absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }

std::string_view Trim(std::string_view s) {
  const size_t b = s.find_first_not_of(" \t\n");
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t\n") - b + 1);
}

template <typename... Args>
void Say(std::FILE* f, fmt::format_string<Args...> format, Args&&... args) {
  if (f == nullptr) return;
  fmt::print(f, "activemm capture: {}\n", fmt::format(format, std::forward<Args>(args)...));
  std::fflush(f);
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    const int e = errno;
    if (e == ENOENT) return absl::NotFoundError(absl::StrFormat("%s does not exist", path));
    return absl::InternalError(absl::StrFormat("cannot read %s: %s", path, Errno(e)));
  }
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(absl::StrFormat("reading %s: %s", path, Errno(errno)));
    }
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

absl::Status WriteAll(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(absl::StrFormat("writing %s: %s", path, Errno(errno)));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

// Writes a tracefs control file the way `echo VALUE > FILE` does.
absl::Status WriteControl(const std::string& path, std::string_view value) {
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC));
  if (!fd.valid()) {
    return absl::InternalError(absl::StrFormat("cannot open %s: %s", path, Errno(errno)));
  }
  std::string line(value);
  line += '\n';
  return WriteAll(fd.get(), line, path);
}

// The value to write back to restore a control file that read `text`: "1" and "0" as they
// are, "0*"/"1*" (an event enabled or disabled in soft mode) as the plain value, and
// buffer_size_kb's "7 (expanded: 1408)" (not allocated yet) as the size it would have had.
// nullopt when there is nothing single to restore (buffer_size_kb reads "X" when CPUs differ).
std::optional<std::string> RestoreValue(std::string_view text) {
  text = Trim(text);
  if (size_t p = text.find("(expanded: "); p != std::string_view::npos) {
    text = text.substr(p + 11);
    text = text.substr(0, text.find(')'));
  } else {
    text = text.substr(0, text.find_first_of(" *"));
  }
  if (text.empty() || !std::all_of(text.begin(), text.end(), absl::ascii_isdigit)) {
    return std::nullopt;
  }
  return std::string(text);
}

// The tracefs settings a capture changes, each put back as it was when this goes out of scope,
// whatever way the capture ends: tracefs is global, and a capture that failed half-way must not
// leave events recording into a 16 MiB-per-CPU buffer behind it.
class TracefsSettings {
 public:
  TracefsSettings(std::string tracefs, std::FILE* progress)
      : tracefs_(std::move(tracefs)), progress_(progress) {}
  TracefsSettings(const TracefsSettings&) = delete;
  TracefsSettings& operator=(const TracefsSettings&) = delete;

  ~TracefsSettings() {
    // Stop recording first, so that restoring the rest records nothing of ours; tracing_on gets
    // its own old value back last (it was saved first).
    if (!saved_.empty()) (void)WriteControl(tracefs_ + "/tracing_on", "0");
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
      if (absl::Status s = WriteControl(it->first, it->second); !s.ok()) {
        Say(progress_, "warning: could not restore {}: {}", it->first, std::string(s.message()));
      }
    }
  }

  // Remembers what tracefs file `name` holds, to write it back as it is: a number as Set does,
  // other files (current_tracer, set_event) their whole text. Once per file.
  absl::Status Save(const std::string& name) {
    const std::string path = tracefs_ + "/" + name;
    if (std::any_of(saved_.begin(), saved_.end(), [&](const auto& s) { return s.first == path; })) {
      return absl::OkStatus();
    }
    absl::StatusOr<std::string> old = ReadWholeFile(path);
    if (!old.ok()) return old.status();
    std::optional<std::string> v = RestoreValue(*old);
    if (!v.has_value() && name != "buffer_size_kb") v = std::string(Trim(*old));
    if (v.has_value()) saved_.emplace_back(path, *v);
    return absl::OkStatus();
  }

  // Writes `value` to tracefs file `name` (relative to the mount point), the first time
  // remembering what it held.
  absl::Status Set(const std::string& name, std::string_view value) {
    const std::string path = tracefs_ + "/" + name;
    if (std::none_of(saved_.begin(), saved_.end(),
                     [&](const auto& s) { return s.first == path; })) {
      absl::StatusOr<std::string> old = ReadWholeFile(path);
      if (!old.ok()) return old.status();
      if (std::optional<std::string> v = RestoreValue(*old); v.has_value()) {
        saved_.emplace_back(path, *v);
      }
    }
    return WriteControl(path, value);
  }

 private:
  std::string tracefs_;
  std::FILE* progress_;
  std::vector<std::pair<std::string, std::string>> saved_;  // path, value to write back
};

// A directory removed with its contents unless Release()d.
class TempDir {
 public:
  explicit TempDir(std::string path) : path_(std::move(path)) {}
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    if (path_.empty()) return;
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  void Release() { path_.clear(); }

 private:
  std::string path_;
};

// While tracefs is set up, signals that would end activemm (Ctrl-C reaches it and the command
// through the terminal, kill reaches one) are passed on to the command instead: the command
// ends, its trace is still written and tracefs restored. Outside the command's run they are
// held back: setting up and writing the trace takes a moment only, and a signal that comes
// before the command starts is passed on as soon as it has (else Ctrl-C during the set-up
// would be lost and the command run in full).
constexpr int kForwardedSignals[] = {SIGINT, SIGQUIT, SIGTERM, SIGHUP};
volatile sig_atomic_t g_child = 0;
volatile sig_atomic_t g_pending_signal = 0;

void ForwardSignal(int sig) {
  const pid_t child = g_child;
  if (child > 0) {
    kill(child, sig);
  } else {
    g_pending_signal = sig;
  }
}

class ScopedSignalForwarding {
 public:
  ScopedSignalForwarding() {
    g_pending_signal = 0;
    struct sigaction sa = {};
    sa.sa_handler = ForwardSignal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < std::size(kForwardedSignals); ++i) {
      sigaction(kForwardedSignals[i], &sa, &old_[i]);
    }
  }
  ~ScopedSignalForwarding() {
    g_child = 0;
    for (size_t i = 0; i < std::size(kForwardedSignals); ++i) {
      sigaction(kForwardedSignals[i], &old_[i], nullptr);
    }
  }
  ScopedSignalForwarding(const ScopedSignalForwarding&) = delete;
  ScopedSignalForwarding& operator=(const ScopedSignalForwarding&) = delete;

 private:
  struct sigaction old_[std::size(kForwardedSignals)];
};

bool IsExecutableFile(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(path.c_str(), X_OK) == 0;
}

// Finds the command as execvp() will, so that a misspelt command is reported before tracefs
// is touched.
absl::Status CheckCommand(const std::string& name) {
  if (name.empty()) return absl::InvalidArgumentError("the command is an empty string");
  if (name.find('/') != std::string::npos) {
    if (access(name.c_str(), F_OK) != 0) {
      return absl::InvalidArgumentError(absl::StrFormat("%s: command not found", name));
    }
    if (!IsExecutableFile(name)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: not an executable file (permission denied)", name));
    }
    return absl::OkStatus();
  }
  const char* path = std::getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path != nullptr ? path : "/bin:/usr/bin", ':')) {
    if (IsExecutableFile(absl::StrCat(dir.empty() ? "." : dir, "/", name))) {
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError(
      absl::StrFormat("%s: command not found (in PATH=%s)", name, path != nullptr ? path : ""));
}

// Runs the command to its end; its wait status, or an error if it could not be started.
absl::StatusOr<int> RunCommand(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  // The child reports a failed exec through this pipe; a successful exec closes it (CLOEXEC).
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrFormat("pipe: %s", Errno(errno)));
  }
  UniqueFd rd(p[0]), wr(p[1]);
  // The forwarded signals are blocked across the fork: a child that took one with the
  // inherited ForwardSignal (its g_child is 0) would hold it back and exec, losing it. The
  // child resets them to their default before it unblocks them (one pending then ends it, as
  // it should end the command); the parent unblocks them once g_child names the child.
  sigset_t forwarded, old_mask;
  sigemptyset(&forwarded);
  for (int sig : kForwardedSignals) sigaddset(&forwarded, sig);
  pthread_sigmask(SIG_BLOCK, &forwarded, &old_mask);
  const pid_t pid = fork();
  if (pid < 0) {
    const int e = errno;
    pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    return absl::InternalError(absl::StrFormat("fork: %s", Errno(e)));
  }
  if (pid == 0) {
    for (int sig : kForwardedSignals) signal(sig, SIG_DFL);
    pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    execvp(args[0], args.data());
    const int e = errno;
    (void)!write(wr.get(), &e, sizeof e);
    _exit(127);
  }
  g_child = pid;
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);  // one blocked meanwhile is forwarded now
  // One that came during the set-up, before the fork, was held back: the command gets it now.
  if (const int sig = g_pending_signal; sig != 0) kill(pid, sig);
  wr.Reset();
  int exec_errno = 0;
  ssize_t n;
  do {
    n = read(rd.get(), &exec_errno, sizeof exec_errno);
  } while (n < 0 && errno == EINTR);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return absl::InternalError(absl::StrFormat("waitpid: %s", Errno(errno)));
  }
  g_child = 0;
  if (n == static_cast<ssize_t>(sizeof exec_errno)) {
    return absl::InvalidArgumentError(
        exec_errno == ENOENT ? absl::StrFormat("%s: command not found", argv[0])
                             : absl::StrFormat("cannot run %s: %s", argv[0], Errno(exec_errno)));
  }
  return status;
}

// What the kernel's per-CPU ASID slots held before the recording no trace shows, and a replay
// cannot know: an mm still in a slot makes the kernel keep the TLB where the replay, which
// starts with empty slots, allocates, and the round-robin of choose_new_asid then differs by
// one for the rest of a cyclic workload. So, traced, every CPU in turn gets a process that loads
// kPrimeExecs + 1 fresh mms in a row (a fork, then exec after exec of this program's hidden
// `__prime` command): more than the 6 dynamic ASIDs, so every slot is then held by an mm the
// trace shows, in the same round-robin order in the kernel and in the replay.
constexpr int kPrimeExecs = 8;

absl::Status PrimeAsids() {
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) {
    return absl::InternalError(absl::StrFormat("sched_getaffinity: %s", Errno(errno)));
  }
  const std::string execs = std::to_string(kPrimeExecs);
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &allowed)) continue;
    const pid_t pid = fork();
    if (pid < 0) return absl::InternalError(absl::StrFormat("fork: %s", Errno(errno)));
    if (pid == 0) {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(cpu, &one);
      if (sched_setaffinity(0, sizeof one, &one) != 0) _exit(126);
      execl("/proc/self/exe", "activemm", "__prime", execs.c_str(), nullptr);
      _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
      if (errno != EINTR) return absl::InternalError(absl::StrFormat("waitpid: %s", Errno(errno)));
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      return absl::InternalError(absl::StrFormat(
          "priming the ASIDs of CPU %d failed (wait status %#x): /proc/self/exe __prime", cpu,
          status));
    }
  }
  return absl::OkStatus();
}

std::string DescribeStatus(int status) {
  if (WIFEXITED(status)) return absl::StrFormat("exited with status %d", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return absl::StrFormat("was killed by signal %d (%s)", WTERMSIG(status),
                           strsignal(WTERMSIG(status)));
  }
  return absl::StrFormat("ended with wait status %#x", status);
}

// An output file of the capture, written through stdio and synced before it counts.
class OutFile {
 public:
  static absl::StatusOr<std::unique_ptr<OutFile>> Create(const std::string& path) {
    std::FILE* f = std::fopen(path.c_str(), "wxe");
    if (f == nullptr) {
      return absl::InternalError(absl::StrFormat("cannot create %s: %s", path, Errno(errno)));
    }
    return std::unique_ptr<OutFile>(new OutFile(path, f));
  }
  ~OutFile() {
    if (f_ != nullptr) std::fclose(f_);
  }
  void Write(std::string_view s) { std::fwrite(s.data(), 1, s.size(), f_); }
  absl::Status Close() {
    const bool ok = std::fflush(f_) == 0 && !std::ferror(f_) && fsync(fileno(f_)) == 0;
    const int e = errno;
    const bool closed = std::fclose(f_) == 0;
    f_ = nullptr;
    if (!ok || !closed) {
      return absl::InternalError(absl::StrFormat("writing %s: %s", path_, Errno(ok ? errno : e)));
    }
    return absl::OkStatus();
  }

 private:
  OutFile(std::string path, std::FILE* f) : path_(std::move(path)), f_(f) {
    std::setvbuf(f_, nullptr, _IOFBF, 1 << 20);
  }
  std::string path_;
  std::FILE* f_;
};

absl::Status WriteSmallFile(const std::string& path, std::string_view content) {
  absl::StatusOr<std::unique_ptr<OutFile>> f = OutFile::Create(path);
  if (!f.ok()) return f.status();
  (*f)->Write(content);
  return (*f)->Close();
}

// Copies tracefs's `trace` (tens of MB for a full buffer) to `out`, line by line, through
// StripExecPath.
absl::Status CopyTrace(const std::string& from, const std::string& to) {
  UniqueFd in(open(from.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in.valid()) {
    return absl::InternalError(absl::StrFormat("cannot read %s: %s", from, Errno(errno)));
  }
  absl::StatusOr<std::unique_ptr<OutFile>> out = OutFile::Create(to);
  if (!out.ok()) return out.status();
  std::string pending;
  std::vector<char> buf(1 << 20);
  auto emit = [&](std::string_view line) {
    (*out)->Write(StripExecPath(line));
    (*out)->Write("\n");
  };
  for (;;) {
    ssize_t n = read(in.get(), buf.data(), buf.size());
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(absl::StrFormat("reading %s: %s", from, Errno(errno)));
    }
    pending.append(buf.data(), static_cast<size_t>(n));
    size_t start = 0;
    for (size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1) {
      emit(std::string_view(pending).substr(start, nl - start));
    }
    pending.erase(0, start);
  }
  if (!pending.empty()) emit(pending);
  return (*out)->Close();
}

// PIDs of kernel threads alive now, ascending, one a line.
std::string KernelThreads() {
  std::vector<long> pids;
  if (DIR* d = opendir("/proc")) {
    while (dirent* e = readdir(d)) {
      long pid;
      if (!absl::SimpleAtoi(e->d_name, &pid)) continue;
      // A process may end between readdir and read: it is then no kernel thread of ours.
      absl::StatusOr<std::string> stat = ReadWholeFile(absl::StrFormat("/proc/%d/stat", pid));
      if (!stat.ok()) continue;
      std::optional<uint64_t> flags = StatFlags(*stat);
      if (flags.has_value() && (*flags & kPfKthread) != 0) pids.push_back(pid);
    }
    closedir(d);
  }
  std::sort(pids.begin(), pids.end());
  std::string out;
  for (long p : pids) out += absl::StrFormat("%d\n", p);
  return out;
}

// "PATH/trace" is there, mounting tracefs on PATH first if need be.
absl::Status EnsureTracefs(const std::string& tracefs, std::FILE* progress) {
  const std::string trace = tracefs + "/trace";
  if (access(trace.c_str(), F_OK) == 0) return absl::OkStatus();
  if (mount("nodev", tracefs.c_str(), "tracefs", 0, nullptr) != 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s does not exist and tracefs cannot be mounted on %s (%s): mount it (mount -t tracefs "
        "nodev %s) or use a kernel with tracing (CONFIG_FTRACE)",
        trace, tracefs, Errno(errno), tracefs));
  }
  if (access(trace.c_str(), F_OK) != 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "mounted tracefs on %s, but %s is still missing: is this kernel built with tracing "
        "(CONFIG_FTRACE)?",
        tracefs, trace));
  }
  Say(progress, "mounted tracefs on {}", tracefs);
  return absl::OkStatus();
}

// Tells about tracefs settings that would put more than our events into the trace.
void WarnAboutOtherTracing(const std::string& tracefs, std::FILE* progress) {
  if (absl::StatusOr<std::string> t = ReadWholeFile(tracefs + "/current_tracer"); t.ok()) {
    const std::string tracer(absl::StripAsciiWhitespace(*t));
    if (!tracer.empty() && tracer != "nop") {
      Say(progress,
          "warning: {}/current_tracer is '{}', not 'nop': its output fills the buffer too "
          "(echo nop > {}/current_tracer)",
          tracefs, tracer, tracefs);
    }
  }
  if (absl::StatusOr<std::string> set = ReadWholeFile(tracefs + "/set_event"); set.ok()) {
    std::vector<std::string> others;
    for (absl::string_view e : absl::StrSplit(*set, '\n', absl::SkipWhitespace())) {
      const std::string as_path = absl::StrReplaceAll(e, {{":", "/"}});
      if (std::none_of(std::begin(kEvents), std::end(kEvents),
                       [&](const char* ours) { return as_path == ours; })) {
        others.emplace_back(e);
      }
    }
    if (!others.empty()) {
      Say(progress, "warning: other trace events are enabled and will be in trace.txt too: {}",
          absl::StrJoin(others, " "));
    }
  }
}

// OUT_DIR must be new or an empty directory: a capture never mixes with older files. A new one
// is made with its missing parents (CaptureTrace): the nearest folder above it that exists must
// take new folders, so that a path through a file or a read-only place is refused before
// tracefs is touched.
absl::Status CheckOutDir(const std::string& out) {
  struct stat st;
  if (lstat(out.c_str(), &st) != 0) {
    if (errno != ENOENT && errno != ENOTDIR) {
      return absl::InternalError(absl::StrFormat("cannot check %s: %s", out, Errno(errno)));
    }
    for (std::filesystem::path above = std::filesystem::path(out).parent_path();;
         above = above.parent_path()) {
      const std::string dir = above.empty() ? "." : above.string();
      if (stat(dir.c_str(), &st) != 0) {
        if ((errno == ENOENT || errno == ENOTDIR) && above != above.parent_path()) continue;
        return absl::InternalError(absl::StrFormat("cannot check %s: %s", dir, Errno(errno)));
      }
      if (!S_ISDIR(st.st_mode)) {
        return absl::InvalidArgumentError(
            absl::StrFormat("%s: %s is not a folder: name a new folder", out, dir));
      }
      if (access(dir.c_str(), W_OK | X_OK) != 0) {
        return absl::InvalidArgumentError(
            absl::StrFormat("%s: cannot create it in %s: %s", out, dir, Errno(errno)));
      }
      return absl::OkStatus();
    }
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::AlreadyExistsError(
        absl::StrFormat("%s already exists and is not a directory: name a new folder", out));
  }
  std::error_code ec;
  if (!std::filesystem::is_empty(out, ec) || ec) {
    return absl::AlreadyExistsError(absl::StrFormat(
        "%s already exists and is not empty: name a new folder, or remove that one first", out));
  }
  return absl::OkStatus();
}

// The trace folder's files beside trace.txt, however it was recorded: tgids.txt (tracefs's
// saved_tgids), kthreads.txt, kernel.txt and machine.txt.
absl::Status WriteFolderFacts(const std::string& tracefs, const std::string& dir,
                              std::FILE* progress) {
  absl::StatusOr<std::string> tgids = ReadWholeFile(tracefs + "/saved_tgids");
  if (!tgids.ok()) {
    Say(progress, "warning: {}; tgids.txt is empty", std::string(tgids.status().message()));
    tgids = std::string();
  }
  if (absl::Status s = WriteSmallFile(dir + "/tgids.txt", *tgids); !s.ok()) return s;
  if (absl::Status s = WriteSmallFile(dir + "/kthreads.txt", KernelThreads()); !s.ok()) return s;
  struct utsname u;
  if (uname(&u) != 0) return absl::InternalError(absl::StrFormat("uname: %s", Errno(errno)));
  const std::string kernel = absl::StrFormat("%s\n%d\n", u.release, sysconf(_SC_NPROCESSORS_ONLN));
  if (absl::Status s = WriteSmallFile(dir + "/kernel.txt", kernel); !s.ok()) return s;
  return WriteSmallFile(dir + "/machine.txt", ThisMachineFacts());
}

// The lost-event markers of a recorded trace (`marker` as its format writes them).
void SayLostEvents(const TraceStats& st, const char* marker, const CaptureOptions& o) {
  if (st.lost_markers == 0) return;
  Say(o.progress,
      "warning: {} {} markers: {} events were dropped; capture again with a larger --buffer-kb "
      "(now {})",
      st.lost_markers, marker, st.lost_events, o.buffer_kb);
}

// "N lines: S sched_switch, F sched_process_fork, ...": what a recorded trace holds.
void SayEventCounts(const Trace& trace, std::FILE* progress) {
  std::map<TraceEventKind, int> per_kind;
  for (const TraceEvent& e : trace.events) ++per_kind[e.kind];
  std::vector<std::string> counts;
  for (TraceEventKind k : {TraceEventKind::kSwitch, TraceEventKind::kFork, TraceEventKind::kExec,
                           TraceEventKind::kExit, TraceEventKind::kFlush}) {
    counts.push_back(absl::StrFormat("%d %s", per_kind[k], TraceEventKindName(k)));
  }
  Say(progress, "{} lines: {}", trace.stats.lines, absl::StrJoin(counts, ", "));
}

// The trace, written into `dir` while tracefs is set up by `settings`.
absl::Status Record(const CaptureOptions& o, const std::string& dir, TracefsSettings& settings) {
  const std::string& t = o.tracefs;
  if (absl::Status s = settings.Set("tracing_on", "0"); !s.ok()) return s;
  // Opening `trace` for writing with O_TRUNC empties the ring buffer (echo > trace).
  if (absl::Status s = WriteControl(t + "/trace", ""); !s.ok()) return s;
  if (absl::Status s = settings.Set("buffer_size_kb", std::to_string(o.buffer_kb)); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat(s.message(), " (try a smaller --buffer-kb)"));
  }
  if (absl::Status s = settings.Set("options/record-tgid", "1"); !s.ok()) return s;
  for (const char* e : kEvents) {
    const std::string file = absl::StrCat("events/", e, "/enable");
    if (access((t + "/" + file).c_str(), F_OK) != 0) {
      return absl::FailedPreconditionError(
          absl::StrFormat("%s/%s does not exist: this kernel cannot trace %s (trace events need "
                          "CONFIG_EVENT_TRACING; tlb/tlb_flush is emitted by x86 kernels only)",
                          t, file, e));
    }
    if (absl::Status s = settings.Set(file, "1"); !s.ok()) return s;
  }
  WarnAboutOtherTracing(t, o.progress);

  Say(o.progress, "tracing sched and tlb_flush events ({} KiB buffer per CPU) while running: {}",
      o.buffer_kb, absl::StrJoin(o.argv, " "));
  if (absl::Status s = settings.Set("tracing_on", "1"); !s.ok()) return s;
  if (absl::Status s = PrimeAsids(); !s.ok()) {
    (void)WriteControl(t + "/tracing_on", "0");
    return s;
  }
  absl::StatusOr<int> status = RunCommand(o.argv);
  // Stop at once: what follows (and the restore) is not part of the workload.
  absl::Status stopped = WriteControl(t + "/tracing_on", "0");
  if (!status.ok()) return status.status();
  if (!stopped.ok()) return stopped;
  Say(o.progress, "{} {}{}", o.argv[0], DescribeStatus(*status),
      *status == 0 ? "" : " (the trace is kept)");

  if (absl::Status s = CopyTrace(t + "/trace", dir + "/trace.txt"); !s.ok()) return s;
  if (absl::Status s = WriteFolderFacts(t, dir, o.progress); !s.ok()) return s;

  // What was recorded, read back with the replay's own parser.
  absl::StatusOr<std::string> text = ReadWholeFile(dir + "/trace.txt");
  if (!text.ok()) return text.status();
  const Trace trace = ParseTrace(*text);
  const TraceStats& st = trace.stats;
  if (trace.num_cpus == 0) {
    Say(o.progress,
        "warning: {}/trace has no '# entries-in-buffer/entries-written: ... #P:N' "
        "header line: is {} a tracefs?",
        t, t);
  } else if (st.entries_in_buffer < st.entries_written) {
    Say(o.progress,
        "warning: {} of {} events were overwritten (the buffer was full): the trace misses its "
        "beginning; capture again with a larger --buffer-kb (now {})",
        st.entries_written - st.entries_in_buffer, st.entries_written, o.buffer_kb);
  }
  SayLostEvents(st, "[LOST N EVENTS]", o);
  SayEventCounts(trace, o.progress);
  return absl::OkStatus();
}

// ---- --with trace-cmd ----

// `name` as execvp() finds it in $PATH; "" when it is not there.
std::string FindInPath(const std::string& name) {
  if (name.find('/') != std::string::npos) return IsExecutableFile(name) ? name : "";
  const char* path = std::getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path != nullptr ? path : "/bin:/usr/bin", ':')) {
    std::string file = absl::StrCat(dir.empty() ? "." : dir, "/", name);
    if (IsExecutableFile(file)) return file;
  }
  return "";
}

// Starts `argv` (argv[0] a path) with stdin from /dev/null, stdout to `out` and stderr to
// `err` (created), in a process group of its own: Ctrl-C at the terminal reaches the command
// being traced, not the tools around it, which activemm stops itself.
absl::StatusOr<pid_t> SpawnTool(const std::vector<std::string>& argv, const std::string& out,
                                const std::string& err) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  UniqueFd in_fd(open("/dev/null", O_RDONLY | O_CLOEXEC));
  UniqueFd out_fd(open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  UniqueFd err_fd(open(err.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (!in_fd.valid() || !out_fd.valid() || !err_fd.valid()) {
    return absl::InternalError(
        absl::StrFormat("cannot create %s or %s: %s", out, err, Errno(errno)));
  }
  // As RunCommand: the forwarded signals stay blocked until the child has its defaults back.
  sigset_t forwarded, old_mask;
  sigemptyset(&forwarded);
  for (int sig : kForwardedSignals) sigaddset(&forwarded, sig);
  pthread_sigmask(SIG_BLOCK, &forwarded, &old_mask);
  const pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    for (int sig : kForwardedSignals) signal(sig, SIG_DFL);
    pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    if (dup2(in_fd.get(), 0) < 0 || dup2(out_fd.get(), 1) < 0 || dup2(err_fd.get(), 2) < 0) {
      _exit(126);
    }
    execv(args[0], args.data());
    _exit(127);
  }
  const int e = errno;
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  if (pid < 0) return absl::InternalError(absl::StrFormat("fork: %s", Errno(e)));
  return pid;
}

absl::StatusOr<int> WaitTool(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return absl::InternalError(absl::StrFormat("waitpid: %s", Errno(errno)));
  }
  return status;
}

// The last lines of a tool's stderr, joined into one ("trace-cmd: Operation not permitted
// opening to '...'"), for messages.
std::string ToolError(const std::string& log) {
  absl::StatusOr<std::string> text = ReadWholeFile(log);
  if (!text.ok()) return "";
  std::vector<std::string> lines;
  for (absl::string_view l : absl::StrSplit(*text, '\n', absl::SkipWhitespace())) {
    lines.emplace_back(absl::StripAsciiWhitespace(l));
  }
  if (lines.size() > 2) lines.erase(lines.begin(), lines.end() - 2);
  return absl::StrJoin(lines, " ");
}

// A running `trace-cmd record`, stopped (SIGINT: it writes trace.dat and exits) and waited
// for when it goes out of scope unless Stop() was called; before the tracefs settings are
// restored, since it writes tracefs on its way out.
class TraceCmdRecorder {
 public:
  explicit TraceCmdRecorder(pid_t pid) : pid_(pid) {}
  TraceCmdRecorder(const TraceCmdRecorder&) = delete;
  TraceCmdRecorder& operator=(const TraceCmdRecorder&) = delete;
  ~TraceCmdRecorder() {
    if (pid_ > 0) (void)Stop();
  }
  pid_t pid() const { return pid_; }
  // Its wait status.
  absl::StatusOr<int> Stop() {
    const pid_t pid = std::exchange(pid_, 0);
    kill(pid, SIGINT);
    return WaitTool(pid);
  }
  // Whether it has ended already (then its wait status is in *status).
  bool Ended(int* status) {
    if (waitpid(pid_, status, WNOHANG) != pid_) return false;
    pid_ = 0;
    return true;
  }

 private:
  pid_t pid_;
};

// The trace through `trace-cmd record`, written into `dir`: trace.dat, and trace.txt made of it
// by `trace-cmd report -l -N` (-l: the flags column, which tells the CR3 loads; -N: the
// kernel's own formats). trace-cmd enables the events, sets the buffer and record-tgid, and on
// its way out clears the buffer and disables every event, leaving the rest as it set it: so
// `settings` saves first what it changes, and puts it back.
absl::Status RecordWithTraceCmd(const CaptureOptions& o, const std::string& trace_cmd,
                                const std::string& dir, TracefsSettings& settings) {
  const std::string& t = o.tracefs;
  // tracing_on first: trace-cmd turns it on once it records, which is how we know it does.
  if (absl::Status s = settings.Set("tracing_on", "0"); !s.ok()) return s;
  for (const char* file : {"current_tracer", "buffer_size_kb", "options/record-tgid",
                           "options/function-trace", "set_event"}) {
    if (absl::Status s = settings.Save(file); !s.ok()) return s;
  }
  for (const char* e : kEvents) {
    const std::string file = absl::StrCat(t, "/events/", e, "/enable");
    if (access(file.c_str(), F_OK) != 0) {
      return absl::FailedPreconditionError(
          absl::StrFormat("%s does not exist: this kernel cannot trace %s (trace events need "
                          "CONFIG_EVENT_TRACING; tlb/tlb_flush is emitted by x86 kernels only)",
                          file, e));
    }
  }
  const std::string dat = dir + "/trace.dat";
  const std::string log = dir + "/trace-cmd.log";
  // -d: leave the function tracer alone (enabling it writes /proc/sys/kernel/ftrace_enabled,
  // which a container may refuse); --no-filter: trace trace-cmd's own processes too, as the
  // kernel ran them (by default their CR3 loads would be missing).
  std::vector<std::string> argv = {trace_cmd,     "record",     "-d",
                                   "--no-filter", "-b",         std::to_string(o.buffer_kb),
                                   "-O",          "record-tgid"};
  for (const char* e : kEvents) {
    argv.push_back("-e");
    argv.push_back(absl::StrReplaceAll(e, {{"/", ":"}}));
  }
  argv.push_back("-o");
  argv.push_back(dat);
  absl::StatusOr<pid_t> pid = SpawnTool(argv, dir + "/trace-cmd.out", log);
  if (!pid.ok()) return pid.status();
  TraceCmdRecorder recorder(*pid);

  // Recording once trace-cmd has set tracing_on (after the events and the buffer).
  constexpr int kStartSeconds = 60;
  for (int waited_ms = 0;; waited_ms += 10) {
    int status = 0;
    if (recorder.Ended(&status)) {
      return absl::FailedPreconditionError(absl::StrFormat("%s record %s before it recorded: %s",
                                                           trace_cmd, DescribeStatus(status),
                                                           ToolError(log)));
    }
    absl::StatusOr<std::string> on = ReadWholeFile(t + "/tracing_on");
    if (on.ok() && Trim(*on) == "1") break;
    if (waited_ms >= kStartSeconds * 1000) {
      return absl::InternalError(absl::StrFormat(
          "%s record did not start recording within %d s (%s/tracing_on stayed 0): %s", trace_cmd,
          kStartSeconds, t, ToolError(log)));
    }
    usleep(10000);
  }
  WarnAboutOtherTracing(t, o.progress);
  Say(o.progress,
      "tracing sched and tlb_flush events with trace-cmd ({} KiB buffer per CPU) while "
      "running: {}",
      o.buffer_kb, absl::StrJoin(o.argv, " "));
  if (absl::Status s = PrimeAsids(); !s.ok()) return s;
  absl::StatusOr<int> status = RunCommand(o.argv);
  absl::StatusOr<int> recorded = recorder.Stop();
  if (!status.ok()) return status.status();
  if (!recorded.ok()) return recorded.status();
  Say(o.progress, "{} {}{}", o.argv[0], DescribeStatus(*status),
      *status == 0 ? "" : " (the trace is kept)");

  // trace-cmd record fails on its way out where tracefs refuses it something it resets (e.g.
  // set_ftrace_filter without function tracing), after trace.dat is written: the report
  // decides whether that is whole.
  const std::string report = dir + "/trace-cmd.report";
  absl::StatusOr<pid_t> reader =
      SpawnTool({trace_cmd, "report", "-l", "-N", "-i", dat}, report, log);
  if (!reader.ok()) return reader.status();
  absl::StatusOr<int> read_status = WaitTool(*reader);
  if (!read_status.ok()) return read_status.status();
  if (*read_status != 0) {
    return absl::InternalError(absl::StrFormat(
        "%s record %s, and `%s report -l -N` cannot read its %s (it %s): %s", trace_cmd,
        DescribeStatus(*recorded), trace_cmd, dat, DescribeStatus(*read_status), ToolError(log)));
  }
  if (*recorded != 0) {
    Say(o.progress, "warning: {} record {} ({}); its trace.dat reads back whole", trace_cmd,
        DescribeStatus(*recorded), ToolError(log));
  }
  if (absl::Status s = CopyTrace(report, dir + "/trace.txt"); !s.ok()) return s;
  for (const std::string& f : {report, log, dir + "/trace-cmd.out"}) unlink(f.c_str());

  if (absl::Status s = WriteFolderFacts(t, dir, o.progress); !s.ok()) return s;

  absl::StatusOr<std::string> text = ReadWholeFile(dir + "/trace.txt");
  if (!text.ok()) return text.status();
  const Trace trace = ParseTrace(*text);
  const TraceStats& st = trace.stats;
  if (trace.format != TraceFormat::kTraceCmd || trace.num_cpus == 0) {
    Say(o.progress, "warning: `{} report` wrote no 'cpus=N' first line: replay will not read it",
        trace_cmd);
  }
  SayLostEvents(st, "[EVENTS DROPPED]", o);
  SayEventCounts(trace, o.progress);
  return absl::OkStatus();
}

}  // namespace

std::string StripExecPath(std::string_view line) {
  const size_t ev = line.find(": sched_process_exec: ");
  if (ev == std::string_view::npos) return std::string(line);
  const size_t key = line.find("filename=", ev);
  if (key == std::string_view::npos) return std::string(line);
  const size_t start = key + 9;
  // The format is "filename=%s pid=%d old_pid=%d": the name ends at the last " pid=", so a
  // path with spaces in it is cut as a whole.
  size_t end = line.rfind(" pid=");
  if (end == std::string_view::npos || end < start) end = line.find(' ', start);
  if (end == std::string_view::npos) end = line.size();
  const std::string_view name = line.substr(start, end - start);
  const size_t slash = name.rfind('/');
  if (slash == std::string_view::npos || slash + 1 == name.size()) return std::string(line);
  std::string out(line.substr(0, start));
  out += name.substr(slash + 1);
  out += line.substr(end);
  return out;
}

std::optional<uint64_t> StatFlags(std::string_view stat) {
  const size_t paren = stat.rfind(')');
  if (paren == std::string_view::npos) return std::nullopt;
  // After "(comm)": state ppid pgrp session tty_nr tpgid flags ...
  std::vector<absl::string_view> fields =
      absl::StrSplit(Av(stat.substr(paren + 1)), ' ', absl::SkipWhitespace());
  uint64_t flags;
  if (fields.size() < 7 || !absl::SimpleAtoi(fields[6], &flags)) return std::nullopt;
  return flags;
}

int PrimeStep(const std::string& left) {
  int n = 0;
  if (!absl::SimpleAtoi(left, &n) || n < 0 || n > 64) return 2;
  if (n == 0) return 0;
  const std::string next = std::to_string(n - 1);
  execl("/proc/self/exe", "activemm", "__prime", next.c_str(), nullptr);
  return 127;
}

absl::Status CaptureTrace(const CaptureOptions& o) {
  if (o.argv.empty()) return absl::InvalidArgumentError("no command given");
  if (o.out_dir.empty()) return absl::InvalidArgumentError("no output folder given");
  if (o.buffer_kb < 1 || o.buffer_kb > kMaxCaptureBufferKb) {
    return absl::InvalidArgumentError(
        absl::StrFormat("buffer size %d KiB: must be between 1 and %d KiB per CPU", o.buffer_kb,
                        kMaxCaptureBufferKb));
  }
  // Mistakes the user can fix without root come first.
  std::string out = o.out_dir;
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  if (absl::Status s = CheckOutDir(out); !s.ok()) return s;
  if (absl::Status s = CheckCommand(o.argv[0]); !s.ok()) return s;
  std::string trace_cmd;
  if (o.tool == CaptureTool::kTraceCmd) {
    trace_cmd = FindInPath(o.trace_cmd);
    if (trace_cmd.empty()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "--with trace-cmd: %s is not installed (not in PATH): install it (Debian, Ubuntu: "
          "apt-get install trace-cmd) or capture without --with trace-cmd",
          o.trace_cmd));
    }
  }
  if (geteuid() != 0) {
    return absl::PermissionDeniedError("needs root to write tracefs (run it with sudo)");
  }

  if (absl::Status s = EnsureTracefs(o.tracefs, o.progress); !s.ok()) return s;
  // tracefs is one for the whole machine: two captures at once would switch each other's
  // events off and clear each other's buffer. The lock goes with the descriptor.
  UniqueFd lock(open(o.tracefs.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!lock.valid()) {
    return absl::InternalError(absl::StrFormat("cannot open %s: %s", o.tracefs, Errno(errno)));
  }
  if (flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
    Say(o.progress, "waiting for another activemm capture on {} to finish", o.tracefs);
    while (flock(lock.get(), LOCK_EX) != 0) {
      if (errno != EINTR) {
        return absl::InternalError(absl::StrFormat("cannot lock %s: %s", o.tracefs, Errno(errno)));
      }
    }
  }

  // Everything is built in a folder next to OUT_DIR (the same file system) and renamed into
  // place at the end, so OUT_DIR is whole or absent.
  const std::filesystem::path out_path(out);
  std::filesystem::path parent = out_path.parent_path();
  if (parent.empty()) parent = ".";
  std::error_code ec;
  std::filesystem::create_directories(parent, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrFormat("cannot create the folder %s: %s", parent.string(), ec.message()));
  }
  std::string pattern =
      (parent / ("." + out_path.filename().string() + ".capture-XXXXXX")).string();
  if (mkdtemp(pattern.data()) == nullptr) {
    return absl::InternalError(
        absl::StrFormat("cannot create a folder in %s: %s", parent.string(), Errno(errno)));
  }
  TempDir tmp(pattern);
  // mkdtemp makes it private; the capture gets the modes an ordinary mkdir would give it.
  const mode_t mask = umask(0);
  umask(mask);
  chmod(tmp.path().c_str(), 0777 & ~mask);

  {
    ScopedSignalForwarding forward;
    TracefsSettings settings(o.tracefs, o.progress);
    absl::Status s = o.tool == CaptureTool::kTraceCmd
                         ? RecordWithTraceCmd(o, trace_cmd, tmp.path(), settings)
                         : Record(o, tmp.path(), settings);
    if (!s.ok()) {
      // The files as the user knows them: in OUT_DIR, not in the temporary folder (removed).
      return absl::Status(s.code(), absl::StrReplaceAll(s.message(), {{tmp.path(), out}}));
    }
  }

  if (rename(tmp.path().c_str(), out.c_str()) != 0) {
    const int e = errno;
    if (e == ENOTEMPTY || e == EEXIST || e == ENOTDIR) {
      return absl::AlreadyExistsError(absl::StrFormat(
          "%s was created or filled while capturing; nothing was written to it", out));
    }
    return absl::InternalError(
        absl::StrFormat("cannot rename %s to %s: %s", tmp.path(), out, Errno(e)));
  }
  tmp.Release();
  if (UniqueFd d(open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)); d.valid()) {
    fsync(d.get());  // the rename itself survives a crash
  }
  Say(o.progress, "wrote {}/: {}trace.txt, tgids.txt, kthreads.txt, kernel.txt, machine.txt", out,
      o.tool == CaptureTool::kTraceCmd ? "trace.dat, " : "");
  return absl::OkStatus();
}

}  // namespace activemm
