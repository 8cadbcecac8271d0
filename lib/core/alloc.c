/* The default allocator and allocation helpers.
 * SPDX-License-Identifier: MIT
 */
#include <stdlib.h>

#include "core/core.h"

static void *libc_malloc(size_t size, void *user_data) {
  (void)user_data;
  return malloc(size ? size : 1);
}

static void *libc_realloc(void *ptr, size_t size, void *user_data) {
  (void)user_data;
  return realloc(ptr, size ? size : 1);
}

static void libc_free(void *ptr, void *user_data) {
  (void)user_data;
  free(ptr);
}

static const pomelo_allocator libc_allocator = {libc_malloc, libc_realloc, libc_free, NULL};

const pomelo_allocator *pomelo_allocator_libc(void) {
  return &libc_allocator;
}

void pm_alloc_init(pomelo_allocator *dst, const pomelo_allocator *src) {
  if (src && src->malloc && src->realloc && src->free) {
    *dst = *src;
  } else {
    *dst = libc_allocator;
  }
}

void *pm_calloc(const pomelo_allocator *a, size_t n) {
  void *p = pm_malloc(a, n);
  if (p) {
    memset(p, 0, n);
  }
  return p;
}
