/* wl_mmap_churn [ITERATIONS=2000]
 *
 * Two threads of one process, started together, each mapping 1..40 pages, writing to every one
 * and unmapping them, ITERATIONS times. Unmapping pages that are in the TLB makes the kernel
 * flush them on every CPU the mm is loaded on: with both threads running on two CPUs, most
 * munmaps send a TLB shootdown IPI to the other thread's CPU. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "wl_common.h"

enum { kThreads = 2, kMaxPages = 40 };

static long iterations;
static long page_size;
static pthread_barrier_t start;

static void* Churn(void* arg) {
  unsigned seed = (unsigned)(uintptr_t)arg + 1;  // a fixed sequence per thread
  pthread_barrier_wait(&start);
  for (long i = 0; i < iterations; ++i) {
    const long pages = 1 + rand_r(&seed) % kMaxPages;
    char* p = mmap(NULL, pages * page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    WL_CHECK(p != MAP_FAILED, "mmap");
    for (long k = 0; k < pages; ++k) p[k * page_size] = (char)i;
    WL_CHECK(munmap(p, pages * page_size) == 0, "munmap");
  }
  return NULL;
}

int main(int argc, char** argv) {
  iterations = wl_arg(argc, argv, 1, 2000, 1, 10000000);
  page_size = sysconf(_SC_PAGESIZE);
  WL_CHECK_PT(pthread_barrier_init(&start, NULL, kThreads), "pthread_barrier_init");
  pthread_t threads[kThreads];
  for (long i = 0; i < kThreads; ++i) {
    WL_CHECK_PT(pthread_create(&threads[i], NULL, Churn, (void*)i), "pthread_create");
  }
  for (int i = 0; i < kThreads; ++i) WL_CHECK_PT(pthread_join(threads[i], NULL), "pthread_join");
  printf("wl_mmap_churn: %d threads, %ld map-touch-unmap rounds each\n", kThreads, iterations);
  return 0;
}
