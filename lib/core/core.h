/* libpomelo internal: core helpers shared by every layer (not installed).
 * SPDX-License-Identifier: MIT
 */
#ifndef POMELO_LIB_CORE_H
#define POMELO_LIB_CORE_H

#include <stdint.h>
#include <stddef.h>
#include <string.h>

#include <pomelo/common.h>

#if defined(__GNUC__)
#define PM_LIKELY(x) __builtin_expect(!!(x), 1)
#define PM_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define PM_LIKELY(x) (x)
#define PM_UNLIKELY(x) (x)
#endif

#define PM_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define PM_MIN(a, b) ((a) < (b) ? (a) : (b))
#define PM_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Copies `src` into `dst`, or the libc allocator when `src` is NULL or incomplete. */
void pm_alloc_init(pomelo_allocator *dst, const pomelo_allocator *src);

static inline void *pm_malloc(const pomelo_allocator *a, size_t n) {
  return a->malloc(n, a->user_data);
}
static inline void *pm_realloc(const pomelo_allocator *a, void *p, size_t n) {
  return a->realloc(p, n, a->user_data);
}
static inline void pm_free(const pomelo_allocator *a, void *p) {
  if (p) {
    a->free(p, a->user_data);
  }
}
/* Allocates n zeroed bytes. */
void *pm_calloc(const pomelo_allocator *a, size_t n);

/* Frames. Bytes before `data` (the headroom) let a transport prepend its own header (the
 * WebSocket frame header) once, in place, for every member sharing the frame. */
#define PM_FRAME_HEADROOM 10u

struct pomelo_frame {
  uint32_t refs;
  uint32_t head; /* headroom bytes reserved before data */
  size_t len;
  pomelo_allocator alloc;
  uint8_t bytes[]; /* head bytes of headroom, then len bytes of data */
};

/* Allocates a frame with `headroom` spare bytes before `len` bytes of uninitialised data, which
 * the caller fills through *data before sharing the frame. Returns 0 or POMELO_ERR_NOMEM. */
int pm_frame_alloc(pomelo_frame **out, const pomelo_allocator *alloc, size_t headroom, size_t len,
                   uint8_t **data);

static inline uint8_t *pm_frame_mut(pomelo_frame *f) {
  return f->bytes + f->head;
}

/* Big-endian helpers. */
static inline uint32_t pm_be24(const uint8_t *p) {
  return ((uint32_t)p[0] << 16) | ((uint32_t)p[1] << 8) | (uint32_t)p[2];
}
static inline void pm_put_be24(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 16);
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)v;
}

#endif /* POMELO_LIB_CORE_H */
