/* wl_forkexec [COUNT=20]
 *
 * Runs /bin/true COUNT times through fork + exec (the child gets a copy of the parent's mm,
 * then exec replaces it) and COUNT times through posix_spawn (glibc clones with CLONE_VM |
 * CLONE_VFORK: the child borrows the parent's mm until it execs, the parent waits). */
#define _GNU_SOURCE
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "wl_common.h"

extern char** environ;

static void Reap(pid_t pid, const char* how) {
  int status;
  WL_CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "wl_forkexec: /bin/true (%s) ended with wait status %#x\n", how, status);
    exit(1);
  }
}

int main(int argc, char** argv) {
  const long count = wl_arg(argc, argv, 1, 20, 1, 10000);
  char* const true_argv[] = {"true", NULL};
  for (long i = 0; i < count; ++i) {
    const pid_t pid = fork();
    WL_CHECK(pid >= 0, "fork");
    if (pid == 0) {
      execv("/bin/true", true_argv);
      _exit(127);
    }
    Reap(pid, "fork+exec");
  }
  for (long i = 0; i < count; ++i) {
    pid_t pid;
    const int err = posix_spawn(&pid, "/bin/true", NULL, NULL, true_argv, environ);
    errno = err;
    WL_CHECK(err == 0, "posix_spawn /bin/true");
    Reap(pid, "posix_spawn");
  }
  printf("wl_forkexec: /bin/true %ld times by fork+exec, %ld times by posix_spawn\n", count,
         count);
  return 0;
}
