/* libpomelo internal: a connection's output queue (not installed).
 *
 * A FIFO of byte runs, each either inside a shared refcounted frame (the queue holds one
 * reference) or static bytes (control packages). Two entries live inline, so a connection that
 * sends one thing at a time never allocates for its queue; bursts move to a heap ring, kept when
 * small (PM_OUTQ_KEEP) so that steady bursts do not allocate again.
 * SPDX-License-Identifier: MIT
 */
#ifndef POMELO_LIB_OUTQ_H
#define POMELO_LIB_OUTQ_H

#include <pomelo/conn.h>

#include "core/core.h"

typedef struct pm_out_entry {
  pomelo_frame *frame; /* reference held by the queue, or NULL for static bytes */
  const uint8_t *data;
  size_t len;
} pm_out_entry;

#define PM_OUTQ_INLINE 2u
/* A drained heap ring of at most this many entries is kept for the next burst (so bursts do not
 * allocate on every write); larger ones are released. Deleting or clearing releases it. */
#define PM_OUTQ_KEEP 8u

typedef struct pm_outq {
  pm_out_entry *ring; /* inline_ or a heap block of cap entries */
  uint32_t cap;
  uint32_t head;
  uint32_t count;
  uint8_t dropped; /* pm_outq_drop: nothing is reported any more; memory kept until clear */
  size_t off;      /* bytes of ring[head] already written */
  size_t bytes;    /* unwritten bytes in the queue */
  pm_out_entry inline_[PM_OUTQ_INLINE];
} pm_outq;

void pm_outq_init(pm_outq *q);
/* Appends `len` bytes at `data`; `frame` (may be NULL for static bytes) is referenced by the
 * queue on success. Returns 0 or POMELO_ERR_NOMEM (nothing queued). */
int pm_outq_push(pm_outq *q, const pomelo_allocator *a, pomelo_frame *frame, const uint8_t *data,
                 size_t len);
int pm_outq_iov(const pm_outq *q, struct iovec *iov, int max);
void pm_outq_consume(pm_outq *q, const pomelo_allocator *a, size_t n);
/* Drops everything queued and frees it. */
void pm_outq_clear(pm_outq *q, const pomelo_allocator *a);
/* Drops everything queued without freeing it: the queue reports nothing any more (no bytes, no
 * iovecs, consume does nothing, push fails with POMELO_ERR_STATE), but the bytes stay valid
 * until pm_outq_clear, since the caller may still be writing them (an asynchronous write). */
void pm_outq_drop(pm_outq *q);

#endif /* POMELO_LIB_OUTQ_H */
