/* libpomelo internal: codec helpers (not installed).
 * SPDX-License-Identifier: MIT
 */
#ifndef POMELO_LIB_CODEC_INT_H
#define POMELO_LIB_CODEC_INT_H

#include <pomelo/codec.h>

#include "core/core.h"

static inline int pm_pkg_type_valid(int type) {
  return type >= POMELO_PKG_HANDSHAKE && type <= POMELO_PKG_KICK;
}

static inline void pm_pkg_put_head(uint8_t *p, int type, size_t body_len) {
  p[0] = (uint8_t)type;
  pm_put_be24(p + 1, (uint32_t)body_len);
}

/* The stream decoder's state, embeddable in a connection (pm_pkg_decoder_init/_fini) or
 * heap-allocated through the public API. */
struct pomelo_pkg_decoder {
  const pomelo_allocator *alloc; /* points at the owner's allocator copy */
  uint8_t *buf;                  /* reassembly buffer: header then body */
  uint32_t cap;                  /* allocated bytes of buf */
  uint32_t have;                 /* bytes of the current package held in buf */
  uint32_t limit;                /* body limit */
  int16_t error;                 /* 0, or the sticky error returned by every later call */
  uint8_t flags;                 /* POMELO_PKG_DECODER_* */
  uint8_t hdr[4];                /* the current header (bytes arrive here first) */
};

void pm_pkg_decoder_init(pomelo_pkg_decoder *dec, const pomelo_allocator *alloc, uint32_t limit,
                         unsigned flags);
void pm_pkg_decoder_fini(pomelo_pkg_decoder *dec);

/* Encodes an unsigned LEB128 varint of a 32-bit value into p (at least 5 bytes); returns the
 * byte count. */
size_t pm_varint_put(uint8_t *p, uint32_t v);
size_t pm_varint_len(uint32_t v);

/* A readable, never-NULL address for empty views. */
extern const uint8_t pm_empty[1];

#endif /* POMELO_LIB_CODEC_INT_H */
