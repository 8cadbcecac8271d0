/* A connection's output queue.
 * SPDX-License-Identifier: MIT
 */
#include "conn/outq.h"

void pm_outq_init(pm_outq *q) {
  memset(q, 0, sizeof(*q));
  q->ring = q->inline_;
  q->cap = PM_OUTQ_INLINE;
}

static int grow(pm_outq *q, const pomelo_allocator *a) {
  uint32_t cap = q->cap * 2, i;
  pm_out_entry *ring;
  if (cap < 8) {
    cap = 8;
  }
  ring = pm_malloc(a, (size_t)cap * sizeof(*ring));
  if (!ring) {
    return POMELO_ERR_NOMEM;
  }
  for (i = 0; i < q->count; i++) {
    ring[i] = q->ring[(q->head + i) % q->cap];
  }
  if (q->ring != q->inline_) {
    pm_free(a, q->ring);
  }
  q->ring = ring;
  q->cap = cap;
  q->head = 0;
  return 0;
}

int pm_outq_push(pm_outq *q, const pomelo_allocator *a, pomelo_frame *frame, const uint8_t *data,
                 size_t len) {
  pm_out_entry *e;
  if (q->dropped) {
    return POMELO_ERR_STATE;
  }
  if (q->count == q->cap && grow(q, a) != 0) {
    return POMELO_ERR_NOMEM;
  }
  e = &q->ring[(q->head + q->count) % q->cap];
  e->frame = frame ? pomelo_frame_ref(frame) : NULL;
  e->data = data;
  e->len = len;
  q->count++;
  q->bytes += len;
  return 0;
}

int pm_outq_iov(const pm_outq *q, struct iovec *iov, int max) {
  uint32_t i;
  int n = 0;
  for (i = 0; !q->dropped && i < q->count && n < max; i++) {
    const pm_out_entry *e = &q->ring[(q->head + i) % q->cap];
    size_t skip = i == 0 ? q->off : 0;
    iov[n].iov_base = (void *)(uintptr_t)(e->data + skip);
    iov[n].iov_len = e->len - skip;
    n++;
  }
  return n;
}

static void release_ring(pm_outq *q, const pomelo_allocator *a) {
  if (q->ring != q->inline_) {
    pm_free(a, q->ring);
    q->ring = q->inline_;
    q->cap = PM_OUTQ_INLINE;
  }
  q->head = 0;
  q->off = 0;
}

void pm_outq_consume(pm_outq *q, const pomelo_allocator *a, size_t n) {
  if (q->dropped) {
    return;
  }
  if (n > q->bytes) {
    n = q->bytes;
  }
  q->bytes -= n;
  while (n > 0 && q->count > 0) {
    pm_out_entry *e = &q->ring[q->head];
    size_t left = e->len - q->off;
    if (n < left) {
      q->off += n;
      return;
    }
    n -= left;
    pomelo_frame_unref(e->frame);
    q->head = (q->head + 1) % q->cap;
    q->count--;
    q->off = 0;
  }
  /* Zero-length entries at the front are done too. */
  while (q->count > 0 && q->ring[q->head].len == 0) {
    pomelo_frame_unref(q->ring[q->head].frame);
    q->head = (q->head + 1) % q->cap;
    q->count--;
  }
  if (q->count == 0) {
    if (q->cap > PM_OUTQ_KEEP) {
      release_ring(q, a); /* a large burst's ring is not kept */
    } else {
      q->head = 0;
      q->off = 0;
    }
  }
}

void pm_outq_clear(pm_outq *q, const pomelo_allocator *a) {
  while (q->count > 0) {
    pomelo_frame_unref(q->ring[q->head].frame);
    q->head = (q->head + 1) % q->cap;
    q->count--;
  }
  q->bytes = 0;
  q->dropped = 0;
  release_ring(q, a);
}

void pm_outq_drop(pm_outq *q) {
  q->dropped = 1;
  q->bytes = 0;
}
