/* Benchmark helpers: a monotonic clock, medians, and a counting allocator that also keeps a
 * histogram of live blocks by size (to tell which objects make up the memory of a session).
 * SPDX-License-Identifier: MIT
 */
#ifndef POMELO_BENCH_BENCHUTIL_H
#define POMELO_BENCH_BENCHUTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <pomelo/common.h>

static inline uint64_t bench_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline int bench_cmp_double_(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Sorts `v` (n > 0 values) in place and returns its median. */
static inline double bench_median(double *v, size_t n) {
  qsort(v, n, sizeof(*v), bench_cmp_double_);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Blocks smaller than this are counted by exact size in `by_size`. */
#define BENCH_SMALL 4096u

/* A pomelo_allocator over malloc that counts calls and live blocks and bytes (the bytes asked
 * for: malloc's own per-block overhead, 8 to 16 bytes with glibc, is not included). */
typedef struct bench_alloc {
  pomelo_allocator a;
  long calls;         /* malloc + realloc calls */
  long frees;         /* free calls with a block */
  long live;          /* blocks not yet freed */
  size_t bytes;       /* live bytes */
  size_t small_bytes; /* live bytes in blocks < BENCH_SMALL */
  long *by_size;      /* [BENCH_SMALL]: live blocks of each small size */
} bench_alloc;

typedef struct bench_alloc_hdr {
  size_t size;
  size_t pad; /* keeps the user block 16-byte aligned */
} bench_alloc_hdr;

static inline void bench_alloc_add_(bench_alloc *t, size_t size, long sign) {
  t->live += sign;
  if (sign > 0) {
    t->bytes += size;
  } else {
    t->bytes -= size;
  }
  if (size < BENCH_SMALL) {
    t->by_size[size] += sign;
    if (sign > 0) {
      t->small_bytes += size;
    } else {
      t->small_bytes -= size;
    }
  }
}

static inline void *bench_alloc_malloc_(size_t size, void *ud) {
  bench_alloc *t = (bench_alloc *)ud;
  bench_alloc_hdr *h = (bench_alloc_hdr *)malloc(sizeof(*h) + (size ? size : 1));
  t->calls++;
  if (!h) {
    return NULL;
  }
  h->size = size;
  bench_alloc_add_(t, size, 1);
  return h + 1;
}

static inline void bench_alloc_free_(void *p, void *ud) {
  bench_alloc *t = (bench_alloc *)ud;
  bench_alloc_hdr *h;
  if (!p) {
    return;
  }
  h = (bench_alloc_hdr *)p - 1;
  t->frees++;
  bench_alloc_add_(t, h->size, -1);
  free(h);
}

static inline void *bench_alloc_realloc_(void *p, size_t size, void *ud) {
  bench_alloc *t = (bench_alloc *)ud;
  bench_alloc_hdr *h;
  size_t old;
  if (!p) {
    return bench_alloc_malloc_(size, ud);
  }
  t->calls++;
  h = (bench_alloc_hdr *)p - 1;
  old = h->size;
  h = (bench_alloc_hdr *)realloc(h, sizeof(*h) + (size ? size : 1));
  if (!h) {
    return NULL;
  }
  bench_alloc_add_(t, old, -1);
  h->size = size;
  bench_alloc_add_(t, size, 1);
  return h + 1;
}

static inline void bench_alloc_init(bench_alloc *t) {
  memset(t, 0, sizeof(*t));
  t->by_size = (long *)calloc(BENCH_SMALL, sizeof(long));
  if (!t->by_size) {
    fprintf(stderr, "out of memory\n");
    exit(1);
  }
  t->a.malloc = bench_alloc_malloc_;
  t->a.realloc = bench_alloc_realloc_;
  t->a.free = bench_alloc_free_;
  t->a.user_data = t;
}

static inline void bench_alloc_fini(bench_alloc *t) {
  free(t->by_size);
  t->by_size = NULL;
}

/* Parses the command line of the codec benchmarks, `--reps R` and `--iters K`, into *reps and
 * *iters (left as they are when absent). Prints the usage or the error of `name` and returns 2
 * on a bad command line (R < 1, K < min_iters), else 0. */
static inline int bench_reps_iters(int argc, char **argv, const char *name, int *reps,
                                   size_t *iters, size_t min_iters) {
  int a;
  for (a = 1; a < argc; a++) {
    if (strcmp(argv[a], "--reps") == 0 && a + 1 < argc) {
      *reps = atoi(argv[++a]);
    } else if (strcmp(argv[a], "--iters") == 0 && a + 1 < argc) {
      *iters = (size_t)strtoul(argv[++a], NULL, 10);
    } else {
      fprintf(stderr, "usage: %s [--reps R] [--iters K]\n", argv[0]);
      return 2;
    }
  }
  if (*reps < 1 || *iters < min_iters) {
    fprintf(stderr, "%s: bad --reps or --iters\n", name);
    return 2;
  }
  return 0;
}

#endif /* POMELO_BENCH_BENCHUTIL_H */
