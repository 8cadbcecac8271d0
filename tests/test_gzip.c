/* Compressed bodies (gzip.c): round trips of several sizes, zlib and gzip input, the output cap
 * against a compression bomb (with the memory it costs), truncated, corrupt and trailing input,
 * failing allocations. Built without zlib, both calls must say POMELO_ERR_UNSUPPORTED.
 * SPDX-License-Identifier: MIT
 */
#include <pomelo/common.h>

#include <stdlib.h>

#include "codec/codec_int.h"
#include "tap.h"
#include "testutil.h"

#if defined(POMELO_HAVE_ZLIB)

#include <zlib.h>

/* Test data: text-like (compressible) or xorshift noise (not). */
static uint8_t *make_data(size_t n, int noise) {
  static const char words[] = "{\"route\":\"chat.chatHandler.send\",\"msg\":\"hello pomelo\"} ";
  uint8_t *p = malloc(n ? n : 1);
  uint32_t x = 2463534242u;
  size_t i;
  for (i = 0; i < n; i++) {
    if (noise) {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      p[i] = (uint8_t)x;
    } else {
      p[i] = (uint8_t)words[(i + i / 977) % (sizeof words - 1)];
    }
  }
  return p;
}

/* Compresses with zlib directly: windowBits 15 (zlib), 15 + 16 (gzip) or -15 (raw deflate). */
static uint8_t *z_compress(const uint8_t *in, size_t len, int window_bits, size_t *out_len) {
  z_stream zs;
  size_t cap;
  uint8_t *out;
  memset(&zs, 0, sizeof zs);
  if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY) !=
      Z_OK) {
    return NULL;
  }
  cap = deflateBound(&zs, (uLong)len) + 32;
  out = malloc(cap);
  zs.next_in = (Bytef *)(uintptr_t)in;
  zs.avail_in = (uInt)len;
  zs.next_out = out;
  zs.avail_out = (uInt)cap;
  if (deflate(&zs, Z_FINISH) != Z_STREAM_END) {
    free(out);
    deflateEnd(&zs);
    return NULL;
  }
  *out_len = zs.total_out;
  deflateEnd(&zs);
  return out;
}

/* An exact-size heap copy, so reads past the end are caught by sanitizers. */
static uint8_t *copy_of(const uint8_t *p, size_t n) {
  uint8_t *c = malloc(n ? n : 1);
  if (n) {
    memcpy(c, p, n);
  }
  return c;
}

static int inflate_copy(const uint8_t *in, size_t len, size_t cap, uint8_t **out, size_t *out_len,
                        const pomelo_allocator *a) {
  uint8_t *c = copy_of(in, len);
  int rc = pm_inflate(a, c, len, cap, out, out_len);
  free(c);
  return rc;
}

static void test_round_trips(void) {
  static const size_t sizes[] = {0, 1, 2, 100, 255, 4096, 65535, 65536, 300000, (1u << 20) + 7};
  size_t i;
  int noise;
  for (noise = 0; noise < 2; noise++) {
    for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
      size_t n = sizes[i], zl = 0, ol = 0, head = i % 3 == 0 ? 0 : 5;
      uint8_t *data = make_data(n, noise), *z = NULL, *o = NULL, *u;
      uLongf ul = (uLongf)(n + 1);
      const char *kind = noise ? "noise" : "text";
      int rc = pm_deflate(NULL, data, n, head, &z, &zl);
      is_int(rc, 0, "deflate %zu bytes of %s (headroom %zu)", n, kind, head);
      if (rc) {
        free(data);
        continue;
      }
      diag("%zu bytes of %s -> %zu", n, kind, zl);
      /* RFC 1950: a zlib header (deflate, 32 KiB window, check bits) read by zlib itself */
      ok(zl >= 8 && z[head] == 0x78 && ((z[head] << 8) | z[head + 1]) % 31 == 0,
         "zlib header %02x %02x", zl ? z[head] : 0, zl > 1 ? z[head + 1] : 0);
      u = malloc(n + 1);
      ok(uncompress(u, &ul, z + head, (uLong)zl) == Z_OK && ul == n &&
             (n == 0 || memcmp(u, data, n) == 0),
         "zlib's uncompress reads it back");
      free(u);
      rc = inflate_copy(z + head, zl, n, &o, &ol, NULL);
      is_int(rc, 0, "inflate with a cap of exactly %zu", n);
      ok(ol == n && (n == 0 ? o == NULL : memcmp(o, data, n) == 0), "same bytes back");
      pm_free(pomelo_allocator_libc(), o);
      o = NULL;
      if (n) {
        rc = inflate_copy(z + head, zl, n - 1, &o, &ol, NULL);
        ok(rc == POMELO_ERR_GZIP_TOO_LARGE && o == NULL && ol == 0, "a cap of %zu is too small",
           n - 1);
      }
      rc = inflate_copy(z + head, zl, (size_t)-1, &o, &ol, NULL);
      ok(rc == 0 && ol == n, "no cap to speak of");
      pm_free(pomelo_allocator_libc(), o);
      pm_free(pomelo_allocator_libc(), z);
      free(data);
    }
  }
}

static void test_formats(void) {
  uint8_t *data = make_data(5000, 0), *z, *o = NULL;
  size_t zl = 0, ol = 0;
  int rc;

  z = z_compress(data, 5000, 15 + 16, &zl);
  ok(z && z[0] == 0x1f && z[1] == 0x8b, "a gzip stream made with deflateInit2(15 + 16)");
  rc = inflate_copy(z, zl, 5000, &o, &ol, NULL);
  ok(rc == 0 && ol == 5000 && memcmp(o, data, 5000) == 0, "gzip (RFC 1952) inflates");
  pm_free(pomelo_allocator_libc(), o);
  free(z);

  z = z_compress(data, 5000, 15, &zl);
  rc = inflate_copy(z, zl, 5000, &o, &ol, NULL);
  ok(rc == 0 && ol == 5000 && memcmp(o, data, 5000) == 0, "zlib (RFC 1950) inflates");
  pm_free(pomelo_allocator_libc(), o);
  free(z);

  z = z_compress(data, 5000, 9, &zl);
  rc = inflate_copy(z, zl, 5000, &o, &ol, NULL);
  ok(rc == 0 && ol == 5000, "zlib with a 512-byte window inflates");
  pm_free(pomelo_allocator_libc(), o);
  free(z);

  z = z_compress(data, 5000, -15, &zl);
  rc = inflate_copy(z, zl, 5000, &o, &ol, NULL);
  ok(rc == POMELO_ERR_GZIP && o == NULL && ol == 0, "raw deflate (no header) is refused");
  free(z);

  z = z_compress(NULL, 0, 15 + 16, &zl);
  rc = inflate_copy(z, zl, 0, &o, &ol, NULL);
  ok(rc == 0 && o == NULL && ol == 0, "an empty gzip stream, cap 0: NULL and 0");
  free(z);

  {
    /* a zlib stream with a preset dictionary */
    z_stream zs;
    uint8_t buf[256];
    memset(&zs, 0, sizeof zs);
    deflateInit(&zs, Z_DEFAULT_COMPRESSION);
    deflateSetDictionary(&zs, (const Bytef *)"pomelo", 6);
    zs.next_in = data;
    zs.avail_in = 100;
    zs.next_out = buf;
    zs.avail_out = sizeof buf;
    deflate(&zs, Z_FINISH);
    rc = inflate_copy(buf, zs.total_out, 100, &o, &ol, NULL);
    ok(rc == POMELO_ERR_GZIP && o == NULL, "a preset dictionary is refused");
    deflateEnd(&zs);
  }
  free(data);
}

static void test_bad_input(void) {
  uint8_t *data = make_data(3000, 1), *o = NULL, *z[2], *t;
  size_t zl[2], ol = 77, k, cut;
  int rc, f;

  rc = pm_inflate(NULL, (const uint8_t *)"x", 0, 100, &o, &ol);
  ok(rc == POMELO_ERR_GZIP && o == NULL && ol == 0, "empty input");
  rc = pm_inflate(NULL, NULL, 0, 100, &o, &ol);
  is_int(rc, POMELO_ERR_GZIP, "NULL input");
  is_int(pm_inflate(NULL, data, 10, 100, NULL, &ol), POMELO_ERR_INVALID_ARG, "out NULL");
  is_int(pm_inflate(NULL, data, 10, 100, &o, NULL), POMELO_ERR_INVALID_ARG, "out_len NULL");
  is_int(pm_deflate(NULL, NULL, 5, 0, &o, &ol), POMELO_ERR_INVALID_ARG, "deflate NULL, 5");
  is_int(pm_deflate(NULL, data, 5, 0, NULL, &ol), POMELO_ERR_INVALID_ARG, "deflate out NULL");
  rc = inflate_copy(data, 3000, 10000, &o, &ol, NULL);
  is_int(rc, POMELO_ERR_GZIP, "noise");
  rc = inflate_copy((const uint8_t *)"\x1f\x8b", 2, 100, &o, &ol, NULL);
  is_int(rc, POMELO_ERR_GZIP, "a gzip magic alone");

  zl[0] = zl[1] = 0;
  z[0] = z_compress(data, 3000, 15, &zl[0]);
  z[1] = z_compress(data, 3000, 15 + 16, &zl[1]);
  if (!ok(z[0] && z[1] && zl[0] > 20 && zl[0] < 4000 && zl[1] > 20 && zl[1] < 4000,
          "zlib and gzip streams of 3000 bytes of noise")) {
    return;
  }
  for (f = 0; f < 2; f++) {
    const char *name = f ? "gzip" : "zlib";
    size_t bad = 0;
    /* every truncation */
    for (cut = 0; cut < zl[f]; cut++) {
      rc = inflate_copy(z[f], cut, 10000, &o, &ol, NULL);
      bad += rc != POMELO_ERR_GZIP || o != NULL || ol != 0;
    }
    ok(bad == 0, "%s: each of %zu truncations is POMELO_ERR_GZIP", name, zl[f]);
    /* a cut stream under a cap it reaches: still a bad stream, not too large */
    rc = inflate_copy(z[f], zl[f] - 4, 3000, &o, &ol, NULL);
    is_int(rc, POMELO_ERR_GZIP, "%s: cut in the trailer, cap reached", name);
    /* trailing bytes */
    t = malloc(2 * zl[f] + 1);
    memcpy(t, z[f], zl[f]);
    t[zl[f]] = 0;
    rc = inflate_copy(t, zl[f] + 1, 10000, &o, &ol, NULL);
    ok(rc == POMELO_ERR_GZIP && o == NULL, "%s: a NUL byte after the end", name);
    memcpy(t + zl[f], z[f], zl[f]);
    rc = inflate_copy(t, 2 * zl[f], 10000, &o, &ol, NULL);
    is_int(rc, POMELO_ERR_GZIP, "%s: a second stream after the first", name);
    /* corrupt checksums and headers */
    memcpy(t, z[f], zl[f]);
    t[zl[f] - 1] ^= 1;
    rc = inflate_copy(t, zl[f], 10000, &o, &ol, NULL);
    is_int(rc, POMELO_ERR_GZIP, "%s: a bad %s", name, f ? "length" : "adler32");
    memcpy(t, z[f], zl[f]);
    t[zl[f] - (f ? 5 : 2)] ^= 0x80;
    rc = inflate_copy(t, zl[f], 10000, &o, &ol, NULL);
    is_int(rc, POMELO_ERR_GZIP, "%s: a bad %s", name, f ? "crc32" : "adler32");
    memcpy(t, z[f], zl[f]);
    t[f ? 2 : 0] ^= 0x04;
    rc = inflate_copy(t, zl[f], 10000, &o, &ol, NULL);
    is_int(rc, POMELO_ERR_GZIP, "%s: a bad header", name);
    /* flipping each byte in turn never crashes or leaks, and never yields the wrong size */
    bad = 0;
    for (k = 0; k < zl[f]; k++) {
      memcpy(t, z[f], zl[f]);
      t[k] ^= 0x55;
      rc = inflate_copy(t, zl[f], 3000, &o, &ol, NULL);
      bad += rc == 0 ? ol > 3000 : (rc != POMELO_ERR_GZIP && rc != POMELO_ERR_GZIP_TOO_LARGE);
      pm_free(pomelo_allocator_libc(), o);
    }
    ok(bad == 0, "%s: each corrupted byte gives an error or at most the cap", name);
    free(t);
  }
  free(z[0]);
  free(z[1]);
  free(data);
}

/* An allocator over test_alloc that remembers the largest block asked for. */
typedef struct big_alloc {
  test_alloc t;
  pomelo_allocator a;
  size_t largest;
} big_alloc;

static void *big_malloc(size_t n, void *ud) {
  big_alloc *b = ud;
  b->largest = n > b->largest ? n : b->largest;
  return b->t.a.malloc(n, &b->t);
}
static void *big_realloc(void *p, size_t n, void *ud) {
  big_alloc *b = ud;
  b->largest = n > b->largest ? n : b->largest;
  return b->t.a.realloc(p, n, &b->t);
}
static void big_free(void *p, void *ud) {
  big_alloc *b = ud;
  b->t.a.free(p, &b->t);
}
static void big_init(big_alloc *b) {
  test_alloc_init(&b->t, 0);
  b->a.malloc = big_malloc;
  b->a.realloc = big_realloc;
  b->a.free = big_free;
  b->a.user_data = b;
  b->largest = 0;
}

static void test_bomb(void) {
  const size_t n = 10u << 20, cap = 64u << 10;
  uint8_t *zeros = calloc(n, 1), *z, *o = NULL;
  size_t zl = 0, ol = 0;
  big_alloc b;
  int f, rc;
  for (f = 0; f < 2; f++) {
    const char *name = f ? "gzip" : "zlib";
    z = z_compress(zeros, n, f ? 15 + 16 : 15, &zl);
    diag("%s: 10 MiB of zeros in %zu bytes", name, zl);
    big_init(&b);
    rc = inflate_copy(z, zl, cap, &o, &ol, &b.a);
    ok(rc == POMELO_ERR_GZIP_TOO_LARGE && o == NULL && ol == 0,
       "%s bomb, cap 64 KiB: POMELO_ERR_GZIP_TOO_LARGE", name);
    ok(b.largest <= cap, "%s bomb: the largest block is %zu bytes (cap %zu)", name, b.largest, cap);
    /* zlib's own state: the inflate state (about 7 KiB) and its 32 KiB window */
    ok(b.t.peak <= cap + (48u << 10), "%s bomb: %zu bytes live at peak, %ld allocations", name,
       b.t.peak, b.t.calls);
    is_int(b.t.live, 0, "%s bomb: all freed", name);
    /* the same stream with a cap of its size inflates, growing up to exactly the cap */
    big_init(&b);
    rc = inflate_copy(z, zl, n, &o, &ol, &b.a);
    ok(rc == 0 && ol == n && b.largest == n, "%s: a cap of 10 MiB exactly holds it", name);
    ok(b.t.calls < 40, "%s: the buffer grows geometrically (%ld allocations)", name, b.t.calls);
    pm_free(&b.a, o);
    o = NULL;
    is_int(b.t.live, 0, "%s: all freed", name);
    free(z);
  }
  free(zeros);
}

/* Each allocation failing in turn: NOMEM, nothing returned, nothing leaked. */
static void test_alloc_failures(void) {
  uint8_t *data = make_data(200000, 0), *z = NULL, *o = NULL;
  size_t zl = 0, ol = 0;
  long k, bad = 0, rounds = 0;
  int rc;

  rc = pm_deflate(NULL, data, 200000, 3, &z, &zl);
  is_int(rc, 0, "a stream to inflate");
  for (k = 1; k < 1000; k++) {
    test_alloc ta;
    test_alloc_init(&ta, k);
    o = (uint8_t *)&ta;
    rc = pm_inflate(&ta.a, z + 3, zl, 200000, &o, &ol);
    rounds++;
    if (ta.failed ? rc != POMELO_ERR_NOMEM || o != NULL || ol != 0
                  : rc != 0 || ol != 200000 || memcmp(o, data, ol) != 0) {
      bad++;
      diag("inflate: allocation %ld failing gave %s", k, pomelo_err_name(rc));
    }
    if (!rc) {
      pm_free(&ta.a, o);
    }
    bad += ta.live != 0;
    if (!ta.failed) {
      break;
    }
  }
  ok(bad == 0 && rounds > 3, "inflate: NOMEM and no leak with each of %ld allocations failing",
     rounds - 1);
  pm_free(pomelo_allocator_libc(), z);

  bad = 0;
  rounds = 0;
  for (k = 1; k < 1000; k++) {
    test_alloc ta;
    test_alloc_init(&ta, k);
    z = (uint8_t *)&ta;
    rc = pm_deflate(&ta.a, data, 200000, 7, &z, &zl);
    rounds++;
    if (rc == 0) {
      /* a failed shrink at the end keeps the larger buffer: still a success */
      uint8_t *back = NULL;
      size_t bl = 0;
      if (pm_inflate(NULL, z + 7, zl, 200000, &back, &bl) != 0 || bl != 200000 ||
          memcmp(back, data, bl) != 0) {
        bad++;
        diag("deflate: allocation %ld failing gave a bad stream", k);
      }
      pm_free(pomelo_allocator_libc(), back);
      pm_free(&ta.a, z);
    } else if (!ta.failed || rc != POMELO_ERR_NOMEM || z != NULL) {
      bad++;
      diag("deflate: allocation %ld failing gave %s", k, pomelo_err_name(rc));
    }
    bad += ta.live != 0;
    if (!ta.failed) {
      break;
    }
  }
  ok(bad == 0 && rounds > 3, "deflate: NOMEM or a good stream, no leak, each of %ld failing",
     rounds - 1);
  free(data);
}

int main(void) {
  ok(pomelo_features() & POMELO_FEATURE_ZLIB, "built with zlib: POMELO_FEATURE_ZLIB is set");
  test_round_trips();
  test_formats();
  test_bad_input();
  test_bomb();
  test_alloc_failures();
  return done_testing();
}

#else /* !POMELO_HAVE_ZLIB */

int main(void) {
  /* a valid zlib stream of "hi" */
  static const uint8_t z[] = {0x78, 0x9c, 0xcb, 0xc8, 0x04, 0x00, 0x01, 0x3b, 0x00, 0xd2};
  uint8_t *o = (uint8_t *)&o;
  size_t ol = 5;
  test_alloc ta;
  test_alloc_init(&ta, 0);
  ok(!(pomelo_features() & POMELO_FEATURE_ZLIB), "built without zlib: no POMELO_FEATURE_ZLIB");
  is_int(pm_inflate(&ta.a, z, sizeof z, 100, &o, &ol), POMELO_ERR_UNSUPPORTED,
         "inflate: POMELO_ERR_UNSUPPORTED");
  ok(o == NULL && ol == 0, "inflate: nothing returned");
  o = (uint8_t *)&o;
  ol = 5;
  is_int(pm_deflate(&ta.a, (const uint8_t *)"hi", 2, 4, &o, &ol), POMELO_ERR_UNSUPPORTED,
         "deflate: POMELO_ERR_UNSUPPORTED");
  ok(o == NULL && ol == 0, "deflate: nothing returned");
  is_int(pm_inflate(NULL, NULL, 0, 0, &o, &ol), POMELO_ERR_UNSUPPORTED,
         "inflate of nothing: POMELO_ERR_UNSUPPORTED");
  is_int(ta.calls, 0, "nothing allocated");
  return done_testing();
}

#endif
