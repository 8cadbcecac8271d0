/* Shared test helpers: a counting allocator that can fail the Nth allocation, and hex.
 * SPDX-License-Identifier: MIT
 */
#ifndef POMELO_TESTS_TESTUTIL_H
#define POMELO_TESTS_TESTUTIL_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <pomelo/common.h>

/* A pomelo_allocator that counts allocations, tracks live blocks and bytes, and fails the
 * allocation numbered `fail_at` (1-based; 0 = never) and, if `fail_after` is set, every one
 * after it. Use: test_alloc ta; test_alloc_init(&ta, n); pass &ta.a; check ta.live == 0. */
typedef struct test_alloc {
  pomelo_allocator a;
  long fail_at;
  int fail_after;
  long calls;   /* malloc + growing realloc calls so far */
  long live;    /* blocks not yet freed */
  size_t bytes; /* live bytes */
  size_t peak;  /* most live bytes at once */
  long failed;  /* how many calls were failed */
} test_alloc;

typedef struct test_alloc_hdr {
  size_t size;
  size_t pad; /* keeps the user block 16-byte aligned */
} test_alloc_hdr;

static inline int test_alloc_should_fail_(test_alloc *t) {
  t->calls++;
  if (t->fail_at && (t->calls == t->fail_at || (t->fail_after && t->calls > t->fail_at))) {
    t->failed++;
    return 1;
  }
  return 0;
}

static inline void *test_alloc_malloc_(size_t size, void *ud) {
  test_alloc *t = (test_alloc *)ud;
  test_alloc_hdr *h;
  if (test_alloc_should_fail_(t)) {
    return NULL;
  }
  h = (test_alloc_hdr *)malloc(sizeof(*h) + (size ? size : 1));
  if (!h) {
    return NULL;
  }
  h->size = size;
  t->live++;
  t->bytes += size;
  if (t->bytes > t->peak) {
    t->peak = t->bytes;
  }
  return h + 1;
}

static inline void test_alloc_free_(void *p, void *ud) {
  test_alloc *t = (test_alloc *)ud;
  test_alloc_hdr *h;
  if (!p) {
    return;
  }
  h = (test_alloc_hdr *)p - 1;
  t->live--;
  t->bytes -= h->size;
  free(h);
}

static inline void *test_alloc_realloc_(void *p, size_t size, void *ud) {
  test_alloc *t = (test_alloc *)ud;
  test_alloc_hdr *h, *n;
  if (!p) {
    return test_alloc_malloc_(size, ud);
  }
  if (test_alloc_should_fail_(t)) {
    return NULL;
  }
  h = (test_alloc_hdr *)p - 1;
  n = (test_alloc_hdr *)malloc(sizeof(*n) + (size ? size : 1));
  if (!n) {
    return NULL;
  }
  memcpy(n + 1, h + 1, h->size < size ? h->size : size);
  n->size = size;
  t->bytes = t->bytes - h->size + size;
  if (t->bytes > t->peak) {
    t->peak = t->bytes;
  }
  free(h);
  return n + 1;
}

static inline void test_alloc_init(test_alloc *t, long fail_at) {
  memset(t, 0, sizeof(*t));
  t->a.malloc = test_alloc_malloc_;
  t->a.realloc = test_alloc_realloc_;
  t->a.free = test_alloc_free_;
  t->a.user_data = t;
  t->fail_at = fail_at;
}

/* Decodes hex (spaces and other separators between byte pairs are skipped) into out (cap
 * bytes); returns the byte count, or -1 on bad input or overflow. */
static inline long test_hex_decode(const char *hex, uint8_t *out, size_t cap) {
  size_t n = 0;
  int hi = -1;
  for (; *hex; hex++) {
    int v;
    char c = *hex;
    if (c >= '0' && c <= '9') {
      v = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      v = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      v = c - 'A' + 10;
    } else {
      if (hi >= 0) {
        return -1;
      }
      continue;
    }
    if (hi < 0) {
      hi = v;
    } else {
      if (n >= cap) {
        return -1;
      }
      out[n++] = (uint8_t)(hi << 4 | v);
      hi = -1;
    }
  }
  return hi >= 0 ? -1 : (long)n;
}

#endif /* POMELO_TESTS_TESTUTIL_H */
