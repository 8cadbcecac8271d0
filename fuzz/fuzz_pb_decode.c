/* Fuzz target: the pomelo-protobuf decoder, and the encoder on what it decodes.
 *
 * The first byte picks one of a few fixed schemas (the spec's, a recursive one with every
 * repeated kind and array-index names, one with many fields, and the recursive one with a depth
 * limit of 3); the rest is a body. A failure has a protobuf error code (or NOMEM when an
 * allocation was failed on purpose) and an offset within the body. A success is one JSON object
 * that parses; when it encodes (it may not: a required field absent, a number the encoder does
 * not take), measuring agrees with encoding, and the bytes decode to a JSON text that encodes to
 * the same bytes again; encoding it with POMELO_PB_CESU8 decodes to the same text too. Nothing
 * leaks.
 * SPDX-License-Identifier: MIT
 */
#include <pomelo/protobuf.h>

#include <stdlib.h>
#include <string.h>

#include "testutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                                   \
  do {                                                                                             \
    if (!(x)) {                                                                                    \
      abort();                                                                                     \
    }                                                                                              \
  } while (0)

static const char *const schemas[] = {
    "{\"t\":{\"required uInt32 u\":1,\"required sInt32 s\":2,\"required int32 i\":3,\"optional "
    "float f\":4,\"optional double d\":5,\"optional string str\":6,\"message Pos\":{\"required "
    "uInt32 x\":1,\"required uInt32 y\":2},\"optional Pos pos\":7,\"repeated uInt32 "
    "ru\":8,\"repeated string rs\":9,\"repeated Pos rp\":10,\"optional Item item\":11},"
    "\"message Item\":{\"required uInt32 id\":1}}",
    "{\"t\":{\"optional N n\":1,\"repeated N rn\":2,\"repeated float rf\":3,\"repeated double "
    "rd\":4,\"repeated sInt32 rz\":5,\"repeated int32 ri\":6,\"optional string s\":7,\"repeated "
    "string rs\":8,\"optional uInt32 1\":9,\"optional uInt32 0\":10,\"repeated uInt32 "
    "ru\":11},\"message N\":{\"optional N n\":1,\"repeated N rn\":2,\"optional uInt32 "
    "u\":3,\"optional string s\":4,\"repeated uInt32 ru\":5,\"optional double 7\":6}}",
    "{\"t\":{\"optional uInt32 a\":1,\"optional sInt32 b\":2,\"optional int32 c\":3,\"optional "
    "float d\":4,\"optional double e\":5,\"optional string f\":6,\"repeated uInt32 g\":7,"
    "\"repeated sInt32 h\":8,\"repeated string i\":9,\"optional M j\":10,\"repeated M "
    "k\":11,\"optional uInt32 l\":12,\"optional uInt32 m\":13,\"optional string n\":14,"
    "\"optional uInt32 o\":15,\"repeated double p\":16},\"message M\":{\"required uInt32 "
    "a\":1,\"optional M b\":2}}",
};

#define NSETS 4

static test_alloc ta;
static pomelo_protos *sets[NSETS];
static const pomelo_pb_type *types[NSETS];

static void init(void) {
  size_t i;
  test_alloc_init(&ta, 0);
  for (i = 0; i < NSETS; i++) {
    const char *s = schemas[i < 3 ? i : 1];
    pomelo_pb_limits lim;
    pomelo_pb_limits_default(&lim);
    if (i == 3) {
      lim.max_depth = 3;
    }
    CHECK(pomelo_protos_new(&sets[i], &ta.a, s, strlen(s), NULL, 0, &lim, NULL) == 0);
    types[i] = pomelo_protos_find(sets[i], POMELO_PROTOS_SERVER, "t", 1);
    CHECK(types[i] != NULL);
  }
}

static int is_decode_error(int rc) {
  return rc == POMELO_ERR_PB_TRUNCATED || rc == POMELO_ERR_PB_TAG || rc == POMELO_ERR_PB_VARINT ||
         rc == POMELO_ERR_PB_UTF8 || rc == POMELO_ERR_PB_DEPTH || rc == POMELO_ERR_JSON_DEPTH;
}

/* Encodes `v`; returns the code, the bytes in a malloc'd *out. Checks measuring agrees. */
static int encode(const pomelo_pb_type *t, const pomelo_json_value *v, unsigned flags,
                  uint8_t **out, size_t *len) {
  size_t need = 0, n = 0;
  pomelo_pb_error err;
  int rc = pomelo_pb_encode(t, v, flags, NULL, 0, &need, &err);
  *out = NULL;
  CHECK(rc == err.code);
  if (rc) {
    CHECK(rc == POMELO_ERR_PB_REQUIRED || rc == POMELO_ERR_PB_TYPE || rc == POMELO_ERR_PB_DEPTH);
    return rc;
  }
  *out = malloc(need ? need : 1);
  CHECK(*out);
  if (need) {
    /* one byte short first */
    CHECK(pomelo_pb_encode(t, v, flags, *out, need - 1, &n, NULL) == POMELO_ERR_BUFFER_TOO_SMALL &&
          n == need);
  }
  CHECK(pomelo_pb_encode(t, v, flags, *out, need, &n, NULL) == 0 && n == need);
  *len = need;
  return 0;
}

/* Decodes into `w` (reset first); returns the code. */
static int decode(const pomelo_pb_type *t, const uint8_t *b, size_t n, pomelo_json_writer *w) {
  pomelo_pb_error err;
  int rc;
  pomelo_json_writer_reset(w);
  rc = pomelo_pb_decode(t, b, n, w, &err);
  CHECK(rc == err.code);
  if (rc == 0) {
    CHECK(pomelo_json_writer_complete(w));
  }
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pomelo_json_writer *w1 = NULL, *w2 = NULL;
  pomelo_json_doc *doc = NULL, *doc2 = NULL;
  const pomelo_pb_type *t;
  const uint8_t *body;
  const char *j1, *j2;
  size_t blen, l1, l2, n1 = 0, n2 = 0;
  uint8_t *b1 = NULL, *b2 = NULL;
  long live;
  int rc;
  pomelo_pb_error err;

  if (!sets[0]) {
    init();
  }
  if (size == 0) {
    return 0;
  }
  t = types[data[0] % NSETS];
  body = data + 1;
  blen = size - 1;
  live = ta.live;

  CHECK(pomelo_json_writer_new(&w1, NULL, 0) == 0);
  CHECK(pomelo_json_writer_new(&w2, NULL, 0) == 0);

  /* with an allocation failed on purpose */
  if (data[0] & 0x80) {
    ta.fail_at = ta.calls + 1 + (data[0] >> 4 & 7);
    ta.failed = 0;
    rc = decode(t, body, blen, w1);
    CHECK(ta.failed ? rc == POMELO_ERR_NOMEM : rc != POMELO_ERR_NOMEM);
    ta.fail_at = 0;
    CHECK(ta.live == live);
  }

  rc = decode(t, body, blen, w1);
  CHECK(ta.live == live);
  if (rc != 0) {
    CHECK(is_decode_error(rc));
    pomelo_json_writer_reset(w1);
    CHECK(pomelo_pb_decode(t, body, blen, w1, &err) == rc && err.offset <= blen);
    goto out;
  }
  j1 = pomelo_json_writer_data(w1, &l1);
  CHECK(l1 >= 2 && j1[0] == '{');
  CHECK(pomelo_json_parse(&doc, NULL, j1, l1, NULL, NULL) == 0);
  if (blen == 0) {
    CHECK(l1 == 2);
  }

  /* re-encode; then one more round must be a fixed point */
  if (encode(t, pomelo_json_root(doc), 0, &b1, &n1) == 0) {
    CHECK(decode(t, b1, n1, w2) == 0);
    j2 = pomelo_json_writer_data(w2, &l2);
    CHECK(pomelo_json_parse(&doc2, NULL, j2, l2, NULL, NULL) == 0);
    CHECK(encode(t, pomelo_json_root(doc2), 0, &b2, &n2) == 0);
    CHECK(n1 == n2 && (n1 == 0 || memcmp(b1, b2, n1) == 0));
    free(b2);
    b2 = NULL;
    /* the browser's CESU-8 reads back as the same text */
    CHECK(encode(t, pomelo_json_root(doc2), POMELO_PB_CESU8, &b2, &n2) == 0);
    CHECK(n2 >= n1);
    CHECK(decode(t, b2, n2, w1) == 0);
    j1 = pomelo_json_writer_data(w1, &l1);
    j2 = pomelo_json_writer_data(w2, &l2);
    CHECK(l1 == l2 && memcmp(j1, j2, l1) == 0);
  }
  CHECK(ta.live == live);

out:
  free(b1);
  free(b2);
  pomelo_json_doc_del(doc);
  pomelo_json_doc_del(doc2);
  pomelo_json_writer_del(w1);
  pomelo_json_writer_del(w2);
  return 0;
}
