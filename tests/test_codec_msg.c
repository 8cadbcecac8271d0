/* Message codec: every edge case of spec section 2.
 * SPDX-License-Identifier: MIT
 */
#include <pomelo/codec.h>

#include "tap.h"
#include "testutil.h"

static pomelo_msg mk(pomelo_msg_type type, uint32_t id, const char *route, const char *body) {
  pomelo_msg m;
  memset(&m, 0, sizeof m);
  m.type = type;
  m.id = id;
  m.route = route;
  m.route_len = route ? strlen(route) : 0;
  m.body = (const uint8_t *)body;
  m.body_len = body ? strlen(body) : 0;
  return m;
}

static int enc(const pomelo_msg *m, uint8_t *out, size_t cap, size_t *n) {
  return pomelo_msg_encode(out, cap, m, n);
}

#define EXPECT_ENC(m, hex, name)                                                                   \
  do {                                                                                             \
    uint8_t out_[600], want_[600];                                                                 \
    size_t n_ = 0;                                                                                 \
    long wn_ = test_hex_decode(hex, want_, sizeof want_);                                          \
    int rc_ = enc(&(m), out_, sizeof out_, &n_);                                                   \
    is_int(rc_, 0, "%s: encodes", name);                                                           \
    is_mem(out_, n_, want_, (size_t)wn_, "%s: bytes", name);                                       \
  } while (0)

static void test_flags(void) {
  pomelo_msg m;
  m = mk(POMELO_MSG_REQUEST, 1, "a", NULL);
  EXPECT_ENC(m, "00 01 01 61", "request flag 0x00");
  m.route_compressed = 1;
  m.route_code = 0x0102;
  EXPECT_ENC(m, "01 01 01 02", "request compressed flag 0x01, code big-endian");
  m = mk(POMELO_MSG_NOTIFY, 0, "a", "x");
  EXPECT_ENC(m, "02 01 61 78", "notify flag 0x02, no id");
  m.id = 77; /* ignored for a notify */
  EXPECT_ENC(m, "02 01 61 78", "notify ignores id");
  m.route_compressed = 1;
  m.route_code = 3;
  EXPECT_ENC(m, "03 00 03 78", "notify compressed flag 0x03");
  m = mk(POMELO_MSG_RESPONSE, 1, "ignored", "{}");
  EXPECT_ENC(m, "04 01 7b 7d", "response flag 0x04, no route");
  m = mk(POMELO_MSG_PUSH, 0, "onAdd", NULL);
  EXPECT_ENC(m, "06 05 6f 6e 41 64 64", "push flag 0x06, no id, empty body");
  m.route_compressed = 1;
  m.route_code = 13;
  EXPECT_ENC(m, "07 00 0d", "push compressed 0x07 (MS7)");
  m.gzip = 1;
  EXPECT_ENC(m, "17 00 0d", "gzip push compressed 0x17");
  m = mk(POMELO_MSG_PUSH, 0, "onChat", "x");
  m.gzip = 1;
  EXPECT_ENC(m, "16 06 6f 6e 43 68 61 74 78", "gzip push 0x16 (MS8)");
}

static void test_decode_fields(void) {
  pomelo_msg m;
  uint8_t in[600];
  long n;

  n = test_hex_decode("01 ac 02 00 01 7b 7d", in, sizeof in); /* MS3 */
  is_int(pomelo_msg_decode(in, (size_t)n, &m), 0, "MS3 decodes");
  ok(m.type == POMELO_MSG_REQUEST && m.id == 300 && m.route_compressed && m.route_code == 1 &&
         !m.gzip,
     "MS3 fields");
  ok(m.body == in + 5 && m.body_len == 2, "body is a view into the input");

  n = test_hex_decode("16 06 6f 6e 43 68 61 74 78", in, sizeof in); /* MS8 */
  is_int(pomelo_msg_decode(in, (size_t)n, &m), 0, "MS8 decodes");
  ok(m.type == POMELO_MSG_PUSH && m.gzip && !m.route_compressed && m.route_len == 6 &&
         memcmp(m.route, "onChat", 6) == 0 && m.body_len == 1 && m.body[0] == 'x',
     "gzip bit reported, route and body");

  n = test_hex_decode("04 01", in, sizeof in);
  is_int(pomelo_msg_decode(in, (size_t)n, &m), 0, "response with empty body");
  ok(m.type == POMELO_MSG_RESPONSE && m.id == 1 && m.body_len == 0 && m.route_len == 0 &&
         m.route != NULL && m.body != NULL,
     "empty body and no route, non-NULL views");

  n = test_hex_decode("05 07 7b 7d", in, sizeof in);
  is_int(pomelo_msg_decode(in, (size_t)n, &m), 0, "response with the route bit set");
  ok(m.route_compressed && m.id == 7 && m.body_len == 2, "bit reported, no route read");

  n = test_hex_decode("00 05 00", in, sizeof in); /* MS9 */
  is_int(pomelo_msg_decode(in, (size_t)n, &m), 0, "empty route decodes");
  ok(m.route_len == 0 && m.body_len == 0 && m.id == 5, "empty route is \"\", not NULL");

  /* Bits 5..7 are ignored, as by pomelo-protocol (the type is masked to 3 bits). */
  n = test_hex_decode("e6 01 61", in, sizeof in);
  is_int(pomelo_msg_decode(in, (size_t)n, &m), 0, "flag 0xe6 decodes");
  ok(m.type == POMELO_MSG_PUSH && !m.gzip, "bits 5-7 ignored");

  /* Types 4..7 are refused (pomelo-protocol accepts them with no id or route). */
  {
    int t;
    for (t = 4; t <= 7; t++) {
      uint8_t b[3] = {(uint8_t)(t << 1), 1, 2};
      is_int(pomelo_msg_decode(b, 3, &m), POMELO_ERR_MSG_TYPE, "type %d refused", t);
      m = mk((pomelo_msg_type)t, 1, "a", NULL);
      is_int(pomelo_msg_encode(b, sizeof b, &m, &(size_t){0}), POMELO_ERR_MSG_TYPE,
             "type %d not encodable", t);
    }
  }
  is_int(pomelo_msg_decode(in, 0, &m), POMELO_ERR_MSG_TRUNCATED, "empty message");
  is_int(pomelo_msg_decode(NULL, 0, &m), POMELO_ERR_MSG_TRUNCATED, "NULL empty message");
  is_int(pomelo_msg_decode(NULL, 1, &m), POMELO_ERR_INVALID_ARG, "NULL with length");
  is_int(pomelo_msg_decode(in, 1, NULL), POMELO_ERR_INVALID_ARG, "NULL msg");
  is_str(pomelo_msg_type_name(0), "request", "name 0");
  is_str(pomelo_msg_type_name(1), "notify", "name 1");
  is_str(pomelo_msg_type_name(2), "response", "name 2");
  is_str(pomelo_msg_type_name(3), "push", "name 3");
  ok(pomelo_msg_type_name(4) == NULL && pomelo_msg_type_name(-1) == NULL, "no other names");
}

static void test_ids(void) {
  static const struct {
    uint32_t id;
    const char *hex;
  } v[] = {
      {1, "01"},
      {127, "7f"},
      {128, "80 01"},
      {300, "ac 02"},
      {16383, "ff 7f"},
      {16384, "80 80 01"},
      {2097151, "ff ff 7f"},
      {2097152, "80 80 80 01"},
      {268435455, "ff ff ff 7f"},
      {268435456, "80 80 80 80 01"},
      {2147483647, "ff ff ff ff 07"},
  };
  size_t i;
  pomelo_msg m;
  uint8_t in[16], want[16];
  size_t n;
  for (i = 0; i < sizeof v / sizeof v[0]; i++) {
    long wn = test_hex_decode(v[i].hex, want + 1, sizeof want - 1);
    pomelo_msg d;
    want[0] = 0x04;
    m = mk(POMELO_MSG_RESPONSE, v[i].id, NULL, NULL);
    is_int(pomelo_msg_encode(in, sizeof in, &m, &n), 0, "id %u encodes", v[i].id);
    is_mem(in, n, want, (size_t)wn + 1, "id %u varint", v[i].id);
    is_int(pomelo_msg_decode(want, (size_t)wn + 1, &d), 0, "id %u decodes", v[i].id);
    is_int(d.id, v[i].id, "id %u round trip", v[i].id);
  }
  m = mk(POMELO_MSG_REQUEST, 0, "", NULL);
  is_int(pomelo_msg_encode(in, sizeof in, &m, &n), POMELO_ERR_MSG_ID, "id 0 not encodable");
  m.id = 0x80000000u;
  is_int(pomelo_msg_encode(in, sizeof in, &m, &n), POMELO_ERR_MSG_ID,
         "id 2^31 not encodable (Node would hang answering it)");
  m.id = 0xffffffffu;
  is_int(pomelo_msg_encode(in, sizeof in, &m, &n), POMELO_ERR_MSG_ID, "id 2^32-1");
  m = mk(POMELO_MSG_PUSH, 0xffffffffu, "a", NULL);
  is_int(pomelo_msg_encode(in, sizeof in, &m, &n), 0, "push ignores id");

  n = (size_t)test_hex_decode("00 00 00", in, sizeof in);
  is_int(pomelo_msg_decode(in, n, &m), POMELO_ERR_MSG_ID, "request id 0 refused");
  n = (size_t)test_hex_decode("04 80 80 80 80 08", in, sizeof in);
  is_int(pomelo_msg_decode(in, n, &m), POMELO_ERR_MSG_ID, "id 2^31 refused (JS: negative)");
  n = (size_t)test_hex_decode("04 ff ff ff ff 0f", in, sizeof in);
  is_int(pomelo_msg_decode(in, n, &m), POMELO_ERR_MSG_ID, "id 2^32-1 refused");
  n = (size_t)test_hex_decode("04 81 80 80 80 80 00", in, sizeof in);
  is_int(pomelo_msg_decode(in, n, &m), POMELO_ERR_MSG_ID, "6-byte varint refused");
  n = (size_t)test_hex_decode("04 81 80 80 80 80", in, sizeof in);
  is_int(pomelo_msg_decode(in, n, &m), POMELO_ERR_MSG_ID,
         "5 continuation bytes refused even at the end");
  n = (size_t)test_hex_decode("04 80", in, sizeof in);
  is_int(pomelo_msg_decode(in, n, &m), POMELO_ERR_MSG_TRUNCATED, "varint cut");
  n = (size_t)test_hex_decode("04", in, sizeof in);
  is_int(pomelo_msg_decode(in, n, &m), POMELO_ERR_MSG_TRUNCATED, "id missing");
  n = (size_t)test_hex_decode("04 81 00 7b 7d", in, sizeof in);
  is_int(pomelo_msg_decode(in, n, &m), 0, "non-canonical varint accepted");
  ok(m.id == 1 && m.body_len == 2, "non-canonical 81 00 is id 1");
}

static void test_routes(void) {
  char r[300];
  uint8_t out[600];
  size_t n;
  pomelo_msg m, d;
  memset(r, 'r', sizeof r);
  m = mk(POMELO_MSG_NOTIFY, 0, NULL, "b");
  m.route = r;
  m.route_len = 255;
  is_int(pomelo_msg_encode(out, sizeof out, &m, &n), 0, "255-byte route");
  ok(n == 1 + 1 + 255 + 1 && out[1] == 255, "length byte 255");
  is_int(pomelo_msg_decode(out, n, &d), 0, "255-byte route decodes");
  ok(d.route_len == 255 && d.route == (const char *)out + 2 && d.body_len == 1,
     "route is a view, body follows");
  m.route_len = 256;
  is_int(pomelo_msg_encode(out, sizeof out, &m, &n), POMELO_ERR_ROUTE_TOO_LONG,
         "256-byte route refused");
  m.route = NULL;
  m.route_len = 0;
  is_int(pomelo_msg_encode(out, sizeof out, &m, &n), 0, "NULL route is empty");
  is_mem(out, n,
         "\x02\x00"
         "b",
         3, "empty route is one zero byte");
  m.route_len = 1;
  is_int(pomelo_msg_encode(out, sizeof out, &m, &n), POMELO_ERR_INVALID_ARG,
         "NULL route with length");
  {
    /* UTF-8 route: the length counts bytes. */
    const char *u = "chat.\xe4\xbd\xa0\xe5\xa5\xbd.\xf0\x9f\x98\x80";
    m = mk(POMELO_MSG_REQUEST, 9, u, "{}");
    is_int(pomelo_msg_encode(out, sizeof out, &m, &n), 0, "UTF-8 route");
    is_int(out[2], strlen(u), "length byte counts UTF-8 bytes");
    is_int(pomelo_msg_decode(out, n, &d), 0, "UTF-8 route decodes");
    is_mem(d.route, d.route_len, u, strlen(u), "UTF-8 route bytes intact");
  }
  /* Route codes. */
  m = mk(POMELO_MSG_REQUEST, 1, NULL, NULL);
  m.route_compressed = 1;
  m.route_code = 0xffff;
  EXPECT_ENC(m, "01 01 ff ff", "route code 65535");
  m.route_code = 0;
  EXPECT_ENC(m, "01 01 00 00", "route code 0 encodable");
  {
    uint8_t in[8];
    size_t k = (size_t)test_hex_decode("01 01 ff", in, sizeof in);
    is_int(pomelo_msg_decode(in, k, &d), POMELO_ERR_MSG_TRUNCATED, "route code cut");
    k = (size_t)test_hex_decode("03", in, sizeof in);
    is_int(pomelo_msg_decode(in, k, &d), POMELO_ERR_MSG_TRUNCATED, "route code missing");
    k = (size_t)test_hex_decode("02 05 61 62", in, sizeof in);
    is_int(pomelo_msg_decode(in, k, &d), POMELO_ERR_MSG_TRUNCATED, "route shorter than its length");
    k = (size_t)test_hex_decode("02", in, sizeof in);
    is_int(pomelo_msg_decode(in, k, &d), POMELO_ERR_MSG_TRUNCATED, "route length missing");
    k = (size_t)test_hex_decode("03 12 34", in, sizeof in);
    is_int(pomelo_msg_decode(in, k, &d), 0, "notify by code, empty body");
    ok(d.route_code == 0x1234 && d.body_len == 0, "code 0x1234");
  }
}

static void test_sizes(void) {
  static const uint8_t dummy[1];
  uint8_t out[8];
  size_t n = 0;
  pomelo_msg m = mk(POMELO_MSG_REQUEST, 300, "abc", "xyz");
  is_int(pomelo_msg_encode(NULL, 0, &m, &n), POMELO_ERR_BUFFER_TOO_SMALL, "measure");
  is_int(n, 1 + 2 + 1 + 3 + 3, "measured size");
  is_int(pomelo_msg_encode(out, sizeof out, &m, &n), POMELO_ERR_BUFFER_TOO_SMALL, "one short");
  is_int(pomelo_msg_encode(out, 8, NULL, &n), POMELO_ERR_INVALID_ARG, "NULL msg");
  is_int(pomelo_msg_encode(out, 8, &m, NULL), POMELO_ERR_INVALID_ARG, "NULL out_len");
  m.body = NULL;
  is_int(pomelo_msg_encode(out, 8, &m, &n), POMELO_ERR_INVALID_ARG, "NULL body with length");
  m = mk(POMELO_MSG_PUSH, 0, "r", NULL);
  m.body = dummy;
  m.body_len = POMELO_PKG_BODY_MAX;
  {
    pomelo_frame *f = NULL;
    test_alloc ta;
    test_alloc_init(&ta, 0);
    is_int(pomelo_msg_encode_frame(&f, &ta.a, &m), POMELO_ERR_PKG_TOO_LARGE,
           "message over 2^24-1 does not fit a package");
    is_int(ta.calls, 0, "refused before allocating");
  }
}

static void test_frame(void) {
  pomelo_msg m = mk(POMELO_MSG_PUSH, 0, "onAdd", "{\"route\":\"onAdd\",\"user\":\"bob\"}");
  pomelo_frame *f = NULL;
  uint8_t want[64];
  long wn = test_hex_decode("04 00 00 25 06 05 6f 6e 41 64 64 7b 22 72 6f 75 74 65 22 3a 22 6f 6e"
                            " 41 64 64 22 2c 22 75 73 65 72 22 3a 22 62 6f 62 22 7d",
                            want, sizeof want);
  long n;
  is_int(pomelo_msg_encode_frame(&f, NULL, &m), 0, "push frame");
  is_mem(pomelo_frame_data(f), pomelo_frame_len(f), want, (size_t)wn,
         "onAdd push package as recorded from the real server (chat-ws trace)");
  pomelo_frame_unref(f);
  m.type = (pomelo_msg_type)9;
  is_int(pomelo_msg_encode_frame(&f, NULL, &m), POMELO_ERR_MSG_TYPE, "bad type");
  is_int(pomelo_msg_encode_frame(NULL, NULL, &m), POMELO_ERR_INVALID_ARG, "NULL out");
  m.type = POMELO_MSG_PUSH;
  for (n = 1; n <= 2; n++) {
    test_alloc ta;
    int rc;
    test_alloc_init(&ta, n);
    rc = pomelo_msg_encode_frame(&f, &ta.a, &m);
    if (ta.failed) {
      is_int(rc, POMELO_ERR_NOMEM, "allocation %ld fails", n);
    } else {
      is_int(rc, 0, "no failure left (%ld)", n);
      pomelo_frame_unref(f);
    }
    is_int(ta.live, 0, "no leak (%ld)", n);
  }
}

/* Every prefix of a valid message decodes as a shorter body or fails as truncated. */
static void test_prefixes(void) {
  static const char *hexes[] = {
      ("00 ff ff ff ff 07 1c 63 6f 6e 6e 65 63 74 6f 72 2e 65 6e 74 72 79 48 61 6e 64 6c 65 72 2e"
       " 65 6e 74 65 72 7b 7d"),
      "01 ac 02 00 01 7b 7d",
      "07 00 0d",
      "04 80 01 7b 7d",
  };
  size_t i, cut;
  int all = 1;
  for (i = 0; i < sizeof hexes / sizeof hexes[0]; i++) {
    uint8_t in[128];
    pomelo_msg full, m;
    size_t n = (size_t)test_hex_decode(hexes[i], in, sizeof in), head;
    pomelo_msg_decode(in, n, &full);
    head = n - full.body_len;
    for (cut = 0; cut < n; cut++) {
      uint8_t *p = malloc(cut ? cut : 1); /* exact size: over-reads fault under ASan */
      int rc;
      memcpy(p, in, cut);
      rc = pomelo_msg_decode(p, cut, &m);
      if (cut < head ? rc != POMELO_ERR_MSG_TRUNCATED
                     : (rc != 0 || m.body_len != cut - head || m.id != full.id)) {
        all = 0;
        diag("message %zu prefix %zu: rc %d", i, cut, rc);
      }
      free(p);
    }
  }
  ok(all, "every prefix is truncated inside the header, a shorter body after it");
}

int main(void) {
  test_flags();
  test_decode_fields();
  test_ids();
  test_routes();
  test_sizes();
  test_frame();
  test_prefixes();
  return done_testing();
}
