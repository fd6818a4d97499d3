/* What the workloads share: dying loudly on a failed system call, and arguments. Include it
 * after defining _GNU_SOURCE (program_invocation_short_name). */
#ifndef ACTIVEMM_TESTS_WORKLOADS_WL_COMMON_H_
#define ACTIVEMM_TESTS_WORKLOADS_WL_COMMON_H_

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A workload whose system call failed is no workload: say which and stop. */
#define WL_CHECK(cond, what)                                                        \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      fprintf(stderr, "%s: %s failed: %s\n", program_invocation_short_name, (what), \
              strerror(errno));                                                     \
      exit(1);                                                                      \
    }                                                                               \
  } while (0)

/* pthread functions return the error instead of setting errno. */
#define WL_CHECK_PT(call, what)                                                     \
  do {                                                                              \
    int wl_err_ = (call);                                                           \
    if (wl_err_ != 0) {                                                             \
      fprintf(stderr, "%s: %s failed: %s\n", program_invocation_short_name, (what), \
              strerror(wl_err_));                                                   \
      exit(1);                                                                      \
    }                                                                               \
  } while (0)

/* argv[i] as a number in [lo, hi], or `def` when absent. */
static inline long wl_arg(int argc, char** argv, int i, long def, long lo, long hi) {
  if (argc <= i) return def;
  char* end;
  long v = strtol(argv[i], &end, 10);
  if (*argv[i] == '\0' || *end != '\0' || v < lo || v > hi) {
    fprintf(stderr, "%s: argument %d '%s': expected a number in [%ld, %ld]\n",
            program_invocation_short_name, i, argv[i], lo, hi);
    exit(2);
  }
  return v;
}

#endif /* ACTIVEMM_TESTS_WORKLOADS_WL_COMMON_H_ */
