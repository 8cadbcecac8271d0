/* Package codec and streaming decoder (spec 1.1, 1.2).
 * SPDX-License-Identifier: MIT
 */
#include <pomelo/codec.h>

#include "tap.h"
#include "testutil.h"

static const uint8_t dummy[1] = {0};

static void test_encode(void) {
  uint8_t buf[64];
  size_t n = 0;
  int t;
  for (t = POMELO_PKG_HANDSHAKE; t <= POMELO_PKG_KICK; t++) {
    is_int(pomelo_pkg_encode(buf, sizeof buf, t, NULL, 0, &n), 0, "encode empty type %d", t);
    is_mem(buf, n, ((uint8_t[]){(uint8_t)t, 0, 0, 0}), 4, "type %d empty body is 4 bytes", t);
  }
  is_int(pomelo_pkg_encode(buf, sizeof buf, POMELO_PKG_DATA, (const uint8_t *)"abc", 3, &n), 0,
         "encode data");
  is_mem(buf, n,
         "\x04\x00\x00\x03"
         "abc",
         7, "data package bytes");
  is_int(pomelo_pkg_encode(buf, 6, POMELO_PKG_DATA, (const uint8_t *)"abc", 3, &n),
         POMELO_ERR_BUFFER_TOO_SMALL, "buffer one byte short");
  is_int(n, 7, "needed size reported");
  is_int(pomelo_pkg_encode(NULL, 0, POMELO_PKG_DATA, dummy, POMELO_PKG_BODY_MAX, &n),
         POMELO_ERR_BUFFER_TOO_SMALL, "measure the largest body");
  is_int(n, 4 + 0xFFFFFF, "largest package size");
  is_int(pomelo_pkg_encode(NULL, 0, POMELO_PKG_DATA, dummy, POMELO_PKG_BODY_MAX + 1, &n),
         POMELO_ERR_PKG_TOO_LARGE, "2^24 body is refused (JS would truncate the length)");
  is_int(pomelo_pkg_encode(buf, sizeof buf, 0, NULL, 0, &n), POMELO_ERR_INVALID_ARG, "type 0");
  is_int(pomelo_pkg_encode(buf, sizeof buf, 6, NULL, 0, &n), POMELO_ERR_INVALID_ARG, "type 6");
  is_int(pomelo_pkg_encode(buf, sizeof buf, 4, NULL, 1, &n), POMELO_ERR_INVALID_ARG,
         "NULL body with length");
  is_int(pomelo_pkg_encode(buf, sizeof buf, 4, NULL, 0, NULL), POMELO_ERR_INVALID_ARG,
         "NULL out_len");
  is_str(pomelo_pkg_type_name(1), "handshake", "name 1");
  is_str(pomelo_pkg_type_name(2), "handshake_ack", "name 2");
  is_str(pomelo_pkg_type_name(3), "heartbeat", "name 3");
  is_str(pomelo_pkg_type_name(4), "data", "name 4");
  is_str(pomelo_pkg_type_name(5), "kick", "name 5");
  ok(pomelo_pkg_type_name(0) == NULL && pomelo_pkg_type_name(6) == NULL, "no name for 0 and 6");
}

static void test_encode_frame(void) {
  test_alloc ta;
  pomelo_frame *f = NULL;
  long n;
  test_alloc_init(&ta, 0);
  is_int(pomelo_pkg_encode_frame(&f, &ta.a, POMELO_PKG_KICK, (const uint8_t *)"{}", 2), 0,
         "encode_frame");
  is_mem(pomelo_frame_data(f), pomelo_frame_len(f), "\x05\x00\x00\x02{}", 6, "frame bytes");
  pomelo_frame_unref(f);
  is_int(ta.live, 0, "frame freed");
  is_int(pomelo_pkg_encode_frame(&f, &ta.a, 9, NULL, 0), POMELO_ERR_INVALID_ARG, "bad type");
  is_int(pomelo_pkg_encode_frame(&f, &ta.a, 4, dummy, POMELO_PKG_BODY_MAX + 1),
         POMELO_ERR_PKG_TOO_LARGE, "too large");
  is_int(ta.calls, 1, "no allocation for refused input");
  for (n = 1; n <= 2; n++) {
    int rc;
    test_alloc_init(&ta, n);
    rc = pomelo_pkg_encode_frame(&f, &ta.a, POMELO_PKG_HEARTBEAT, NULL, 0);
    if (ta.failed) {
      is_int(rc, POMELO_ERR_NOMEM, "allocation %ld fails", n);
    } else {
      is_int(rc, 0, "allocation %ld: no failure left", n);
      pomelo_frame_unref(f);
    }
    is_int(ta.live, 0, "no leak (%ld)", n);
  }
}

static void test_decode_one(void) {
  pomelo_pkg p;
  size_t used = 99;
  const uint8_t two[] = {4, 0, 0, 2, 'h', 'i', 3, 0, 0, 0};
  is_int(pomelo_pkg_decode(two, sizeof two, &p, &used), 0, "decode first of two");
  is_int(used, 6, "consumed one package");
  is_int(p.type, 4, "type");
  ok(p.body == two + 4 && p.body_len == 2, "body is a view into the input");
  is_int(pomelo_pkg_decode(two + 6, 4, &p, &used), 0, "heartbeat");
  is_int(p.body_len, 0, "empty body");
  is_int(pomelo_pkg_decode(two, 3, &p, &used), POMELO_ERR_PKG_TRUNCATED, "3 header bytes");
  is_int(used, 4, "needs a header");
  is_int(pomelo_pkg_decode(two, 5, &p, &used), POMELO_ERR_PKG_TRUNCATED, "body cut");
  is_int(used, 6, "needs 6 bytes");
  is_int(pomelo_pkg_decode((const uint8_t *)"\x00\x00\x00\x00", 4, &p, &used), POMELO_ERR_PKG_TYPE,
         "type 0");
  is_int(pomelo_pkg_decode((const uint8_t *)"\x06\x00\x00\x00", 4, &p, &used), POMELO_ERR_PKG_TYPE,
         "type 6");
  is_int(pomelo_pkg_decode(NULL, 0, &p, &used), POMELO_ERR_PKG_TRUNCATED, "empty input");
  is_int(pomelo_pkg_decode(NULL, 1, &p, &used), POMELO_ERR_INVALID_ARG, "NULL with length");
}

/* A stream of every type, with empty, small and larger bodies. */
static size_t build_stream(uint8_t *s, size_t cap) {
  size_t n = 0, k, used;
  int t;
  uint8_t body[300];
  for (k = 0; k < sizeof body; k++) {
    body[k] = (uint8_t)(k * 7);
  }
  for (t = 1; t <= 5; t++) {
    pomelo_pkg_encode(s + n, cap - n, t, NULL, 0, &used);
    n += used;
    pomelo_pkg_encode(s + n, cap - n, t, body, (size_t)t * 13, &used);
    n += used;
  }
  pomelo_pkg_encode(s + n, cap - n, 4, body, sizeof body, &used);
  n += used;
  return n;
}

typedef struct collected {
  int n;
  int type[32];
  size_t len[32];
  uint8_t bytes[4096];
  size_t total;
} collected;

/* Feeds `s` in pieces cut at the offsets in `cuts` (ascending, ending with len). */
static int feed_cuts(pomelo_pkg_decoder *d, const uint8_t *s, const size_t *cuts, size_t ncuts,
                     collected *c) {
  size_t start = 0, i;
  memset(c, 0, sizeof(*c));
  for (i = 0; i < ncuts; i++) {
    size_t end = cuts[i], pos = start;
    while (pos < end) {
      pomelo_pkg p;
      size_t used;
      int rc = pomelo_pkg_decoder_feed(d, s + pos, end - pos, &used, &p);
      if (rc < 0) {
        return rc;
      }
      pos += used;
      if (rc == 1) {
        c->type[c->n] = p.type;
        c->len[c->n] = p.body_len;
        memcpy(c->bytes + c->total, p.body, p.body_len);
        c->total += p.body_len;
        c->n++;
      } else if (pos != end) {
        return -9999;
      }
    }
    start = end;
  }
  return 0;
}

static int same(const collected *a, const collected *b) {
  int i;
  if (a->n != b->n || a->total != b->total || memcmp(a->bytes, b->bytes, a->total) != 0) {
    return 0;
  }
  for (i = 0; i < a->n; i++) {
    if (a->type[i] != b->type[i] || a->len[i] != b->len[i]) {
      return 0;
    }
  }
  return 1;
}

static void test_stream_splits(void) {
  uint8_t s[2048];
  size_t len = build_stream(s, sizeof s), chunk, cut;
  pomelo_pkg_decoder *d;
  collected whole, part;
  size_t cuts[2048];
  int all_ok = 1, rc;

  is_int(pomelo_pkg_decoder_new(&d, NULL, 0, 0), 0, "decoder_new");
  cuts[0] = len;
  is_int(feed_cuts(d, s, cuts, 1, &whole), 0, "whole stream");
  is_int(whole.n, 11, "11 packages");
  is_int(pomelo_pkg_decoder_pending(d), 0, "nothing pending");

  /* Every chunk size. */
  for (chunk = 1; chunk <= len; chunk++) {
    size_t k = 0, off;
    for (off = chunk; off < len; off += chunk) {
      cuts[k++] = off;
    }
    cuts[k++] = len;
    rc = feed_cuts(d, s, cuts, k, &part);
    if (rc != 0 || !same(&whole, &part) || pomelo_pkg_decoder_pending(d) != 0) {
      all_ok = 0;
      diag("chunk size %zu differs (rc %d)", chunk, rc);
      break;
    }
  }
  ok(all_ok, "same packages at every chunk size 1..%zu", len);

  /* Every single split point. */
  all_ok = 1;
  for (cut = 0; cut <= len; cut++) {
    cuts[0] = cut;
    cuts[1] = len;
    rc = feed_cuts(d, s, cuts, 2, &part);
    if (rc != 0 || !same(&whole, &part)) {
      all_ok = 0;
      diag("split at %zu differs", cut);
      break;
    }
  }
  ok(all_ok, "same packages at every split point 0..%zu", len);
  pomelo_pkg_decoder_del(d);
  pomelo_pkg_decoder_del(NULL);
}

static void test_stream_zero_copy(void) {
  pomelo_pkg_decoder *d;
  const uint8_t in[] = {4, 0, 0, 3, 'a', 'b', 'c', 3, 0, 0, 0, 4, 0};
  pomelo_pkg p;
  size_t used;
  pomelo_pkg_decoder_new(&d, NULL, 0, 0);
  is_int(pomelo_pkg_decoder_feed(d, in, sizeof in, &used, &p), 1, "first package");
  ok(p.body == in + 4, "complete package is returned in place");
  is_int(used, 7, "consumed 7");
  is_int(pomelo_pkg_decoder_feed(d, in + 7, sizeof in - 7, &used, &p), 1, "heartbeat");
  ok(p.body != NULL && p.body_len == 0, "empty body has a non-NULL pointer");
  is_int(pomelo_pkg_decoder_feed(d, in + 11, 2, &used, &p), 0, "partial header");
  is_int(used, 2, "partial header consumed");
  is_int(pomelo_pkg_decoder_pending(d), 2, "2 bytes pending");
  is_int(pomelo_pkg_decoder_feed(d, NULL, 0, &used, &p), 0, "feeding nothing");
  pomelo_pkg_decoder_reset(d);
  is_int(pomelo_pkg_decoder_pending(d), 0, "reset drops the partial package");
  pomelo_pkg_decoder_del(d);
}

static void test_stream_limits(void) {
  pomelo_pkg_decoder *d;
  pomelo_pkg p;
  size_t used;
  uint8_t big[4 + 17];
  test_alloc ta;
  memset(big, 'x', sizeof big);
  big[0] = 4;
  big[1] = 0;
  big[2] = 0;

  is_int(pomelo_pkg_decoder_new(&d, NULL, POMELO_PKG_BODY_MAX + 1, 0), POMELO_ERR_INVALID_ARG,
         "limit above 2^24-1 refused");
  is_int(pomelo_pkg_decoder_new(&d, NULL, 0, 0x80), POMELO_ERR_INVALID_ARG, "unknown flag");
  is_int(pomelo_pkg_decoder_new(NULL, NULL, 0, 0), POMELO_ERR_INVALID_ARG, "NULL out");

  is_int(pomelo_pkg_decoder_new(&d, NULL, 16, 0), 0, "limit 16");
  big[3] = 16;
  is_int(pomelo_pkg_decoder_feed(d, big, 20, &used, &p), 1, "body at the limit accepted");
  big[3] = 17;
  is_int(pomelo_pkg_decoder_feed(d, big, 21, &used, &p), POMELO_ERR_PKG_TOO_LARGE,
         "body over the limit refused");
  is_int(used, 4, "consumed the header");
  is_int(pomelo_pkg_decoder_feed(d, big, 4, &used, &p), POMELO_ERR_PKG_TOO_LARGE, "sticky");
  is_int(used, 0, "nothing consumed once failed");
  pomelo_pkg_decoder_reset(d);
  big[3] = 3;
  is_int(pomelo_pkg_decoder_feed(d, big, 7, &used, &p), 1, "reset clears the failure");
  /* The limit also applies to a header that arrives a byte at a time. */
  big[3] = 17;
  is_int(pomelo_pkg_decoder_feed(d, big, 3, &used, &p), 0, "3 header bytes");
  is_int(pomelo_pkg_decoder_feed(d, big + 3, 1, &used, &p), POMELO_ERR_PKG_TOO_LARGE,
         "split header over the limit");
  pomelo_pkg_decoder_del(d);

  /* Default limit: 64 KiB. */
  pomelo_pkg_decoder_new(&d, NULL, 0, 0);
  is_int(pomelo_pkg_decoder_feed(d, (const uint8_t *)"\x04\x01\x00\x00", 4, &used, &p), 0,
         "65536-byte body accepted by default");
  pomelo_pkg_decoder_reset(d);
  is_int(pomelo_pkg_decoder_feed(d, (const uint8_t *)"\x04\x01\x00\x01", 4, &used, &p),
         POMELO_ERR_PKG_TOO_LARGE, "65537 refused by default");
  pomelo_pkg_decoder_del(d);

  /* Unknown types: refused by default (the server closes), returned with the flag. */
  {
    static const uint8_t types[] = {0, 6, 7, 0x47, 0xff};
    size_t i;
    for (i = 0; i < sizeof types; i++) {
      uint8_t h[4] = {types[i], 0, 0, 0};
      pomelo_pkg_decoder_new(&d, NULL, 0, 0);
      is_int(pomelo_pkg_decoder_feed(d, h, 4, &used, &p), POMELO_ERR_PKG_TYPE,
             "type 0x%02x refused", types[i]);
      pomelo_pkg_decoder_del(d);
      pomelo_pkg_decoder_new(&d, NULL, 0, POMELO_PKG_DECODER_ALLOW_UNKNOWN);
      is_int(pomelo_pkg_decoder_feed(d, h, 4, &used, &p), 1, "type 0x%02x allowed with flag",
             types[i]);
      is_int(p.type, types[i], "unknown type reported");
      pomelo_pkg_decoder_del(d);
    }
  }

  /* A peer that claims 16 MiB but sends 10 bytes costs no more than those bytes. */
  test_alloc_init(&ta, 0);
  pomelo_pkg_decoder_new(&d, &ta.a, POMELO_PKG_BODY_MAX, 0);
  is_int(pomelo_pkg_decoder_feed(d,
                                 (const uint8_t *)"\x04\xff\xff\xff"
                                                  "0123456789",
                                 14, &used, &p),
         0, "16 MiB claim, 10 bytes");
  ok(ta.bytes < 512, "memory follows arrived bytes, not the claim (%zu bytes)", ta.bytes);
  pomelo_pkg_decoder_del(d);
  is_int(ta.live, 0, "no leak");
}

static void test_stream_growth(void) {
  /* A 100 KB body fed in 1000-byte pieces: the buffer never exceeds twice what arrived, and
   * is released after the package is handed out. */
  static uint8_t s[4 + 100000];
  pomelo_pkg_decoder *d;
  pomelo_pkg p;
  size_t used, pos = 0, base;
  test_alloc ta;
  int bounded = 1, rc = 0;
  pomelo_pkg_encode(s, sizeof s, 4, s + 4, 0, &used); /* header only, fix length below */
  s[1] = (uint8_t)(100000 >> 16);
  s[2] = (uint8_t)(100000 >> 8);
  s[3] = (uint8_t)100000;
  for (pos = 4; pos < sizeof s; pos++) {
    s[pos] = (uint8_t)pos;
  }
  test_alloc_init(&ta, 0);
  pomelo_pkg_decoder_new(&d, &ta.a, POMELO_PKG_BODY_MAX, 0);
  base = ta.bytes;
  for (pos = 0; pos < sizeof s; pos += used) {
    size_t n = (sizeof s - pos < 1000 ? sizeof s - pos : 1000);
    rc = pomelo_pkg_decoder_feed(d, s + pos, n, &used, &p);
    if (ta.bytes - base > 2 * (pos + used) + 256) {
      bounded = 0;
    }
    if (rc != 0) {
      break;
    }
  }
  is_int(rc, 1, "large package reassembled");
  is_int(pos + used, sizeof s, "all bytes consumed");
  is_mem(p.body, p.body_len, s + 4, 100000, "body intact");
  ok(bounded, "buffer at most twice the bytes received");
  is_int(pomelo_pkg_decoder_feed(d, NULL, 0, &used, &p), 0, "next call");
  is_int(ta.bytes, base, "large buffer released once the package was consumed");
  pomelo_pkg_decoder_del(d);
  is_int(ta.live, 0, "no leak");
}

static void test_stream_nomem(void) {
  uint8_t s[2048];
  size_t len = build_stream(s, sizeof s);
  long n;
  int saw_nomem = 0, clean = 1;
  for (n = 1; n < 64; n++) {
    test_alloc ta;
    pomelo_pkg_decoder *d = NULL;
    collected c;
    size_t cuts[600], k = 0, off;
    int rc;
    test_alloc_init(&ta, n);
    rc = pomelo_pkg_decoder_new(&d, &ta.a, 0, 0);
    if (rc == 0) {
      for (off = 3; off < len; off += 3) {
        cuts[k++] = off;
      }
      cuts[k++] = len;
      rc = feed_cuts(d, s, cuts, k, &c);
      if (rc == POMELO_ERR_NOMEM) {
        size_t used;
        pomelo_pkg p;
        saw_nomem = 1;
        if (pomelo_pkg_decoder_feed(d, s, 4, &used, &p) != POMELO_ERR_NOMEM) {
          clean = 0; /* the failure is sticky */
        }
      } else if (rc != 0) {
        clean = 0;
      }
      pomelo_pkg_decoder_del(d);
    } else if (rc != POMELO_ERR_NOMEM) {
      clean = 0;
    }
    if (ta.live != 0) {
      clean = 0;
      diag("leak with allocation %ld failing", n);
    }
    if (!ta.failed) {
      break;
    }
  }
  ok(saw_nomem, "allocation failures surface as POMELO_ERR_NOMEM");
  ok(clean, "every failing allocation handled, sticky, no leak (%ld runs)", n);
}

int main(void) {
  test_encode();
  test_encode_frame();
  test_decode_one();
  test_stream_splits();
  test_stream_zero_copy();
  test_stream_limits();
  test_stream_growth();
  test_stream_nomem();
  return done_testing();
}
