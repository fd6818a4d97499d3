/* wl_io [DIR] [MIB=2] [PROCS=3]
 *
 * PROCS processes each write MIB MiB to a temporary file in DIR ($TMPDIR, else /var/tmp, which
 * is on disk where /tmp may be tmpfs), fsyncing after every 64 KiB, drop it from the page cache
 * and read it back. fsync and the reads block in the kernel and wake its block-layer and
 * file-system workers: kernel threads that run lazily on the mm of whatever ran before them,
 * between the processes, which switch between one another's mms. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "wl_common.h"

enum { kChunk = 64 << 10 };

static void Fill(char* buf, long chunk) {
  for (int i = 0; i < kChunk; ++i) buf[i] = (char)(chunk * 131 + i);
}

static int Work(const char* dir, long mib) {
  char path[4096];
  snprintf(path, sizeof path, "%s/wl_io-XXXXXX", dir);
  const int fd = mkstemp(path);
  WL_CHECK(fd >= 0, path);
  WL_CHECK(unlink(path) == 0, "unlink");  // nothing is left behind, however this ends
  static char buf[kChunk], back[kChunk];
  const long chunks = mib * ((1 << 20) / kChunk);
  for (long c = 0; c < chunks; ++c) {
    Fill(buf, c);
    WL_CHECK(pwrite(fd, buf, kChunk, c * kChunk) == kChunk, "pwrite");
    WL_CHECK(fsync(fd) == 0, "fsync");
  }
  // Clean pages can be dropped: the reads below then go to the device.
  errno = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  WL_CHECK(errno == 0, "posix_fadvise");
  for (long c = 0; c < chunks; ++c) {
    WL_CHECK(pread(fd, back, kChunk, c * kChunk) == kChunk, "pread");
    Fill(buf, c);
    if (memcmp(buf, back, kChunk) != 0) {
      fprintf(stderr, "wl_io: chunk %ld read back differs from what was written\n", c);
      return 1;
    }
  }
  WL_CHECK(close(fd) == 0, "close");
  return 0;
}

int main(int argc, char** argv) {
  const char* dir = argc > 1 ? argv[1] : getenv("TMPDIR");
  if (dir == NULL || *dir == '\0') dir = "/var/tmp";
  const long mib = wl_arg(argc, argv, 2, 2, 1, 1024);
  const long procs = wl_arg(argc, argv, 3, 3, 1, 64);
  for (long p = 0; p < procs; ++p) {
    const pid_t pid = fork();
    WL_CHECK(pid >= 0, "fork");
    if (pid == 0) _exit(Work(dir, mib));
  }
  int failed = 0;
  for (long p = 0; p < procs; ++p) {
    int status;
    WL_CHECK(wait(&status) > 0, "wait");
    failed |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
  }
  if (failed) return 1;
  printf("wl_io: %ld processes wrote, synced and read back %ld MiB each in %s\n", procs, mib,
         dir);
  return 0;
}
