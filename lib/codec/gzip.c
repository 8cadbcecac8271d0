/* Compressed bodies (message flag bit 4, spec 7.1) through zlib, when the build has it.
 *
 * Inflating takes a zlib (RFC 1950) or gzip (RFC 1952) stream, told apart by its header, and
 * grows the output buffer geometrically as output arrives, never past the caller's cap: a
 * compression bomb costs at most the cap plus zlib's own state (about 40 KiB: the inflate state
 * and its 32 KiB window), however large it claims to be. Every allocation, zlib's included,
 * goes through the pomelo allocator.
 * SPDX-License-Identifier: MIT
 */
#include "codec/codec_int.h"

#if defined(POMELO_HAVE_ZLIB)

#include <limits.h>

#define ZLIB_CONST /* next_in points at const bytes */
#include <zlib.h>

/* The first output buffer: a few times the input (deflate rarely does better than 4:1 on
 * JSON), within these bounds, and never past the cap. */
#define INFLATE_FIRST_MIN 256u
#define INFLATE_FIRST_MAX (64u * 1024u)

static voidpf z_alloc(voidpf opaque, uInt items, uInt size) {
  const pomelo_allocator *a = opaque;
  if (size && items > SIZE_MAX / size) {
    return Z_NULL;
  }
  return pm_malloc(a, (size_t)items * size);
}

static void z_free(voidpf opaque, voidpf p) {
  pm_free((const pomelo_allocator *)opaque, p);
}

/* zlib counts input in uInt: feed long inputs in pieces. */
static void feed(z_stream *zs, const uint8_t **in, size_t *left) {
  if (zs->avail_in == 0 && *left) {
    uInt n = *left > UINT_MAX ? UINT_MAX : (uInt)*left;
    zs->next_in = *in;
    zs->avail_in = n;
    *in += n;
    *left -= n;
  }
}

static void z_setup(z_stream *zs, pomelo_allocator *a) {
  memset(zs, 0, sizeof(*zs));
  zs->zalloc = z_alloc;
  zs->zfree = z_free;
  zs->opaque = a;
}

int pm_inflate(const pomelo_allocator *alloc, const uint8_t *in, size_t len, size_t cap,
               uint8_t **out, size_t *out_len) {
  pomelo_allocator a;
  z_stream zs;
  uint8_t *buf = NULL, probe;
  size_t size = 0, have = 0;
  int zrc, rc = 0;

  if (!out || !out_len) {
    return POMELO_ERR_INVALID_ARG;
  }
  *out = NULL;
  *out_len = 0;
  if (!in || len == 0) {
    return POMELO_ERR_GZIP;
  }
  pm_alloc_init(&a, alloc);
  z_setup(&zs, &a);
  zrc = inflateInit2(&zs, 15 + 32); /* 32: a zlib or a gzip header */
  if (zrc != Z_OK) {
    return zrc == Z_MEM_ERROR ? POMELO_ERR_NOMEM : POMELO_ERR_INTERNAL;
  }
  feed(&zs, &in, &len);
  for (;;) {
    if (have == size && size < cap) {
      /* Room for more: the first buffer from the input length, then doubling, up to the cap. */
      size_t total = len + zs.avail_in, want;
      uint8_t *nb;
      if (size) {
        want = size > cap / 2u ? cap : size * 2u;
      } else {
        want = total >= INFLATE_FIRST_MAX / 4u ? INFLATE_FIRST_MAX
                                               : PM_MAX(total * 4u, (size_t)INFLATE_FIRST_MIN);
      }
      want = PM_MIN(PM_MAX(want, size + 1u), cap);
      nb = pm_realloc(&a, buf, want);
      if (!nb) {
        rc = POMELO_ERR_NOMEM;
        break;
      }
      buf = nb;
      size = want;
    }
    if (have < size) {
      size_t room = size - have;
      zs.next_out = buf + have;
      zs.avail_out = room > UINT_MAX ? UINT_MAX : (uInt)room;
    } else {
      /* At the cap: one more byte of output means too large. */
      zs.next_out = &probe;
      zs.avail_out = 1;
    }
    {
      uInt before = zs.avail_out;
      int full = have == size;
      zrc = inflate(&zs, Z_NO_FLUSH);
      if (full && zs.avail_out == 0) {
        rc = POMELO_ERR_GZIP_TOO_LARGE;
        break;
      }
      if (!full) {
        have += before - zs.avail_out;
      }
    }
    feed(&zs, &in, &len);
    if (zrc == Z_STREAM_END) {
      if (zs.avail_in || len) {
        rc = POMELO_ERR_GZIP; /* bytes after the end of the stream */
      }
      break;
    }
    if (zrc == Z_MEM_ERROR) {
      rc = POMELO_ERR_NOMEM;
      break;
    }
    if (zrc != Z_OK && zrc != Z_BUF_ERROR) {
      rc = POMELO_ERR_GZIP; /* Z_DATA_ERROR, Z_NEED_DICT (a preset dictionary), ... */
      break;
    }
    if (zs.avail_in == 0 && zs.avail_out > 0) {
      /* Everything consumed, room left, no end: the stream is cut short. */
      rc = POMELO_ERR_GZIP;
      break;
    }
  }
  inflateEnd(&zs);
  if (rc || have == 0) {
    pm_free(&a, buf);
    return rc;
  }
  *out = buf;
  *out_len = have;
  return 0;
}

int pm_deflate(const pomelo_allocator *alloc, const uint8_t *in, size_t len, size_t headroom,
               uint8_t **out, size_t *out_len) {
  pomelo_allocator a;
  z_stream zs;
  uint8_t *buf;
  size_t size, bound, have;
  int zrc, rc = 0;

  if (!out || !out_len || (!in && len)) {
    return POMELO_ERR_INVALID_ARG;
  }
  *out = NULL;
  *out_len = 0;
  pm_alloc_init(&a, alloc);
  z_setup(&zs, &a);
  zrc = deflateInit(&zs, Z_DEFAULT_COMPRESSION);
  if (zrc != Z_OK) {
    return zrc == Z_MEM_ERROR ? POMELO_ERR_NOMEM : POMELO_ERR_INTERNAL;
  }
  /* deflateBound is exact for one pass; uLong may be narrower than size_t. */
  bound = len > (size_t)ULONG_MAX / 2u ? len + len / 8u + 64u : (size_t)deflateBound(&zs, len);
  if (bound < len || headroom > SIZE_MAX - bound) {
    deflateEnd(&zs);
    return POMELO_ERR_NOMEM;
  }
  size = headroom + bound;
  buf = pm_malloc(&a, size ? size : 1u);
  if (!buf) {
    deflateEnd(&zs);
    return POMELO_ERR_NOMEM;
  }
  have = headroom;
  if (!in) {
    in = pm_empty;
  }
  for (;;) {
    size_t room = size - have;
    uInt before;
    feed(&zs, &in, &len);
    if (room == 0) {
      /* Not expected after deflateBound; grow rather than fail. */
      size_t want = size > SIZE_MAX / 2u ? SIZE_MAX : size * 2u;
      uint8_t *nb = want > size ? pm_realloc(&a, buf, want) : NULL;
      if (!nb) {
        rc = POMELO_ERR_NOMEM;
        break;
      }
      buf = nb;
      size = want;
      room = size - have;
    }
    zs.next_out = buf + have;
    zs.avail_out = before = room > UINT_MAX ? UINT_MAX : (uInt)room;
    zrc = deflate(&zs, len ? Z_NO_FLUSH : Z_FINISH);
    have += before - zs.avail_out;
    if (zrc == Z_STREAM_END) {
      break;
    }
    if (zrc != Z_OK && zrc != Z_BUF_ERROR) {
      rc = POMELO_ERR_INTERNAL;
      break;
    }
  }
  deflateEnd(&zs);
  if (rc) {
    pm_free(&a, buf);
    return rc;
  }
  /* Compressible bodies leave most of the bound unused: give it back when that is worth it
   * (a failed shrink keeps the larger buffer). */
  if (size - have > 4096u && size - have > size / 4u) {
    uint8_t *nb = pm_realloc(&a, buf, have);
    if (nb) {
      buf = nb;
    }
  }
  *out = buf;
  *out_len = have - headroom;
  return 0;
}

#else /* !POMELO_HAVE_ZLIB */

int pm_inflate(const pomelo_allocator *alloc, const uint8_t *in, size_t len, size_t cap,
               uint8_t **out, size_t *out_len) {
  (void)alloc;
  (void)in;
  (void)len;
  (void)cap;
  if (out) {
    *out = NULL;
  }
  if (out_len) {
    *out_len = 0;
  }
  return POMELO_ERR_UNSUPPORTED;
}

int pm_deflate(const pomelo_allocator *alloc, const uint8_t *in, size_t len, size_t headroom,
               uint8_t **out, size_t *out_len) {
  (void)alloc;
  (void)in;
  (void)len;
  (void)headroom;
  if (out) {
    *out = NULL;
  }
  if (out_len) {
    *out_len = 0;
  }
  return POMELO_ERR_UNSUPPORTED;
}

#endif
