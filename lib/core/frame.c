/* Refcounted immutable frames.
 * SPDX-License-Identifier: MIT
 */
#include "core/core.h"

int pm_frame_alloc(pomelo_frame **out, const pomelo_allocator *alloc, size_t headroom, size_t len,
                   uint8_t **data) {
  pomelo_allocator a;
  pomelo_frame *f;
  if (len > SIZE_MAX - sizeof(*f) - headroom) {
    return POMELO_ERR_NOMEM;
  }
  pm_alloc_init(&a, alloc);
  f = pm_malloc(&a, sizeof(*f) + headroom + len);
  if (!f) {
    return POMELO_ERR_NOMEM;
  }
  f->refs = 1;
  f->head = (uint32_t)headroom;
  f->len = len;
  f->alloc = a;
  *out = f;
  if (data) {
    *data = f->bytes + headroom;
  }
  return 0;
}

int pomelo_frame_new(pomelo_frame **out, const pomelo_allocator *alloc, const void *data,
                     size_t len) {
  uint8_t *dst;
  int rc;
  if (!out || (!data && len > 0)) {
    return POMELO_ERR_INVALID_ARG;
  }
  rc = pm_frame_alloc(out, alloc, 0, len, &dst);
  if (rc == 0 && len > 0) {
    memcpy(dst, data, len);
  }
  return rc;
}

pomelo_frame *pomelo_frame_ref(pomelo_frame *frame) {
  frame->refs++;
  return frame;
}

void pomelo_frame_unref(pomelo_frame *frame) {
  if (frame && --frame->refs == 0) {
    pomelo_allocator a = frame->alloc;
    pm_free(&a, frame);
  }
}

const uint8_t *pomelo_frame_data(const pomelo_frame *frame) {
  return frame->bytes + frame->head;
}

size_t pomelo_frame_len(const pomelo_frame *frame) {
  return frame->len;
}

uint32_t pomelo_frame_refcount(const pomelo_frame *frame) {
  return frame->refs;
}
