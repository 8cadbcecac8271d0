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

/* Bodies with the compressed flag (bit 4, gzip.c). Built without zlib, both return
 * POMELO_ERR_UNSUPPORTED. */

/* Inflates the zlib (RFC 1950) or gzip (RFC 1952) stream (told apart by its header) of `len`
 * bytes at `in` into a new buffer from `a` that grows with the output, never past `cap` bytes.
 * Returns 0 with the buffer in *out (freed by the caller with pm_free; NULL when *out_len is 0),
 * POMELO_ERR_GZIP (not a complete valid stream, or bytes after its end),
 * POMELO_ERR_GZIP_TOO_LARGE (it inflates to more than `cap` bytes: nothing past the cap was
 * allocated), POMELO_ERR_UNSUPPORTED or POMELO_ERR_NOMEM. */
int pm_inflate(const pomelo_allocator *a, const uint8_t *in, size_t len, size_t cap, uint8_t **out,
               size_t *out_len);

/* Deflates `len` bytes into a zlib stream (RFC 1950, default level) in a new buffer from `a`
 * with `headroom` free bytes before the stream (for a message header): *out is the buffer,
 * the stream starts at *out + headroom and is *out_len bytes long. Returns 0,
 * POMELO_ERR_UNSUPPORTED or POMELO_ERR_NOMEM. */
int pm_deflate(const pomelo_allocator *a, const uint8_t *in, size_t len, size_t headroom,
               uint8_t **out, size_t *out_len);

#endif /* POMELO_LIB_CODEC_INT_H */
