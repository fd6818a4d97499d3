/* wl_threads [THREADS=3 (2..4)] [ROUNDS=2000]
 *
 * One process whose threads pass a token round a ring of pipes, ROUNDS times. Every hop wakes
 * the next thread (often on the other CPU) and puts the sender to sleep, so the trace is full of
 * switches between threads of one mm and to and from idle. Before passing the token on, each
 * thread maps, touches and unmaps a few pages: a munmap while sibling threads have the mm loaded
 * (or lazily kept) flushes their TLBs. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include "wl_common.h"

enum { kMaxThreads = 4, kPages = 4 };

static int pipes[kMaxThreads][2];
static int nthreads;
static long rounds;
static long page_size;

static void* Ring(void* arg) {
  const long i = (long)arg;
  const int in = pipes[i][0];
  const int out = pipes[(i + 1) % nthreads][1];
  for (long r = 0; r < rounds; ++r) {
    char token;
    WL_CHECK(read(in, &token, 1) == 1, "read");
    char* p = mmap(NULL, kPages * page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    WL_CHECK(p != MAP_FAILED, "mmap");
    for (int k = 0; k < kPages; ++k) p[k * page_size] = (char)r;  // fault every page in
    WL_CHECK(munmap(p, kPages * page_size) == 0, "munmap");
    WL_CHECK(write(out, &token, 1) == 1, "write");
  }
  return NULL;
}

int main(int argc, char** argv) {
  nthreads = (int)wl_arg(argc, argv, 1, 3, 2, kMaxThreads);
  rounds = wl_arg(argc, argv, 2, 2000, 1, 1000000);
  page_size = sysconf(_SC_PAGESIZE);
  for (int i = 0; i < nthreads; ++i) WL_CHECK(pipe(pipes[i]) == 0, "pipe");
  pthread_t threads[kMaxThreads];
  for (long i = 0; i < nthreads; ++i) {
    WL_CHECK_PT(pthread_create(&threads[i], NULL, Ring, (void*)i), "pthread_create");
  }
  const char token = 't';
  WL_CHECK(write(pipes[0][1], &token, 1) == 1, "write");
  for (int i = 0; i < nthreads; ++i) WL_CHECK_PT(pthread_join(threads[i], NULL), "pthread_join");
  printf("wl_threads: %d threads, %ld rounds, %ld hops\n", nthreads, rounds, nthreads * rounds);
  return 0;
}
