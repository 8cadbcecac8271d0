/* Fuzz target: pomelo-protobuf proto descriptions and handshake parsed forms.
 *
 * The first byte picks how the rest is read: as serverProtos alone, as serverProtos and
 * clientProtos split at the first newline, or as a handshake's "protos" value; its high bit also
 * fails one allocation on purpose. A failure has one of the documented codes and a terminated
 * path. A success gives a handshake value made of both sides' parsed forms and a 24-character
 * version; from_handshake of that value gives a set with identical JSON, version and route
 * counts; every top-level key is found; an empty body decodes as {} and {} encodes (or misses a
 * required field); tighter limits never accept what the defaults refuse, and agree when both
 * accept. Nothing leaks.
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

static int is_schema_error(int rc) {
  return rc == POMELO_ERR_JSON_SYNTAX || rc == POMELO_ERR_JSON_DEPTH ||
         rc == POMELO_ERR_JSON_UTF8 || rc == POMELO_ERR_PB_SCHEMA || rc == POMELO_ERR_PB_DEPTH ||
         rc == POMELO_ERR_LIMIT;
}

static void check_err(const pomelo_pb_error *err, int rc) {
  CHECK(err->code == rc);
  CHECK(memchr(err->path, '\0', sizeof err->path) != NULL);
}

/* Everything a good set must satisfy. */
static void check_set(const pomelo_protos *p) {
  pomelo_json_doc *doc = NULL, *sdoc = NULL;
  pomelo_protos *h = NULL;
  pomelo_pb_error err;
  pomelo_json_writer *w = NULL;
  size_t len, sl, cl, k;
  const char *j = pomelo_protos_json(p, &len);
  const char *sj = pomelo_protos_side_json(p, POMELO_PROTOS_SERVER, &sl);
  const char *cj = pomelo_protos_side_json(p, POMELO_PROTOS_CLIENT, &cl);
  const char *v = pomelo_protos_version(p);
  pomelo_json_options o;
  int s;

  CHECK(j && sj && cj && v && strlen(j) == len && strlen(sj) == sl && strlen(cj) == cl);
  if (strcspn(v, "\"\\\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12"
                 "\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f") == strlen(v)) {
    CHECK(len == 10 + sl + 10 + cl + 12 + strlen(v) + 2); /* nothing to escape in the version */
  }
  CHECK(memcmp(j, "{\"server\":", 10) == 0 && memcmp(j + 10, sj, sl) == 0);
  CHECK(memcmp(j + 10 + sl, ",\"client\":", 10) == 0 && memcmp(j + 20 + sl, cj, cl) == 0);

  pomelo_json_options_default(&o);
  o.utf8 = POMELO_JSON_UTF8_STRICT;
  o.max_depth = 1000;
  o.max_size = len;
  CHECK(pomelo_json_parse(&doc, NULL, j, len, &o, NULL) == 0);
  CHECK(pomelo_protos_from_handshake(&h, NULL, pomelo_json_root(doc), NULL, &err) == 0);
  CHECK(strcmp(pomelo_protos_json(h, NULL), j) == 0);
  CHECK(strcmp(pomelo_protos_version(h), v) == 0);
  CHECK(pomelo_json_writer_new(&w, NULL, 0) == 0);
  for (s = 0; s < 2; s++) {
    const pomelo_json_value *side = pomelo_json_get(pomelo_json_root(doc), s ? "client" : "server");
    size_t routes = 0;
    CHECK(pomelo_protos_count(h, (pomelo_protos_side)s) ==
          pomelo_protos_count(p, (pomelo_protos_side)s));
    for (k = 0; k < pomelo_json_len(side); k++) {
      size_t kl, n = 0;
      const char *key = pomelo_json_key_at(side, k, &kl);
      const pomelo_pb_type *t = pomelo_protos_find(p, (pomelo_protos_side)s, key, kl);
      pomelo_json_doc *e = NULL;
      int rc;
      CHECK(t != NULL && pomelo_protos_find(h, (pomelo_protos_side)s, key, kl) != NULL);
      if (!(kl >= 8 && memcmp(key, "message ", 8) == 0)) {
        routes++;
      }
      pomelo_json_writer_reset(w);
      CHECK(pomelo_pb_decode(t, NULL, 0, w, NULL) == 0);
      CHECK(strcmp(pomelo_json_writer_data(w, NULL), "{}") == 0);
      CHECK(pomelo_json_parse(&e, NULL, "{}", 2, NULL, NULL) == 0);
      rc = pomelo_pb_encode(t, pomelo_json_root(e), 0, NULL, 0, &n, NULL);
      CHECK((rc == 0 && n == 0) || rc == POMELO_ERR_PB_REQUIRED);
      pomelo_json_doc_del(e);
    }
    CHECK(routes == pomelo_protos_count(p, (pomelo_protos_side)s));
  }
  pomelo_json_writer_del(w);
  pomelo_protos_del(h);
  pomelo_json_doc_del(sdoc);
  pomelo_json_doc_del(doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  test_alloc ta;
  pomelo_protos *p = NULL, *q = NULL;
  pomelo_pb_error err;
  pomelo_pb_limits lim;
  const char *text, *client = NULL;
  size_t tlen, clen = 0;
  unsigned mode;
  int rc, rc2;

  if (size == 0) {
    return 0;
  }
  mode = data[0] % 3u;
  text = (const char *)data + 1;
  tlen = size - 1;
  if (mode == 1) {
    const char *nl = memchr(text, '\n', tlen);
    if (nl) {
      client = nl + 1;
      clen = tlen - (size_t)(client - text);
      tlen = (size_t)(nl - text);
    }
  }

  test_alloc_init(&ta, 0);
  if (mode == 2) {
    pomelo_json_doc *doc = NULL;
    if (pomelo_json_parse(&doc, NULL, text, tlen, NULL, NULL) != 0) {
      return 0;
    }
    rc = pomelo_protos_from_handshake(&p, &ta.a, pomelo_json_root(doc), NULL, &err);
    check_err(&err, rc);
    CHECK(rc == 0 || is_schema_error(rc));
    if (rc == 0) {
      /* a second time gives the same; the JSON is canonical for from_handshake too */
      check_set(p);
    }
    if (data[0] & 0x80) {
      test_alloc tf;
      test_alloc_init(&tf, 1 + (data[0] >> 4 & 7));
      rc2 = pomelo_protos_from_handshake(&q, &tf.a, pomelo_json_root(doc), NULL, &err);
      CHECK(tf.failed ? rc2 == POMELO_ERR_NOMEM : rc2 == rc);
      pomelo_protos_del(q);
      CHECK(tf.live == 0);
    }
    pomelo_protos_del(p);
    pomelo_json_doc_del(doc);
    CHECK(ta.live == 0);
    return 0;
  }

  rc = pomelo_protos_new(&p, &ta.a, text, tlen, client, clen, NULL, &err);
  check_err(&err, rc);
  CHECK(rc == 0 ? p != NULL : p == NULL && is_schema_error(rc));
  if (rc == 0) {
    check_set(p);
  }

  /* tighter limits: never more accepting; the same result when accepting */
  pomelo_pb_limits_default(&lim);
  lim.max_depth = 3;
  lim.max_fields = 16;
  rc2 = pomelo_protos_new(&q, &ta.a, text, tlen, client, clen, &lim, &err);
  check_err(&err, rc2);
  if (rc2 == 0) {
    CHECK(rc == 0 && strcmp(pomelo_protos_json(p, NULL), pomelo_protos_json(q, NULL)) == 0);
  } else {
    CHECK(is_schema_error(rc2));
  }
  pomelo_protos_del(q);
  q = NULL;

  if (data[0] & 0x80) {
    test_alloc tf;
    test_alloc_init(&tf, 1 + (data[0] >> 4 & 7));
    rc2 = pomelo_protos_new(&q, &tf.a, text, tlen, client, clen, NULL, &err);
    check_err(&err, rc2);
    CHECK(tf.failed ? rc2 == POMELO_ERR_NOMEM : rc2 == rc);
    if (rc2 == 0) {
      CHECK(strcmp(pomelo_protos_json(p, NULL), pomelo_protos_json(q, NULL)) == 0);
    }
    pomelo_protos_del(q);
    CHECK(tf.live == 0);
  }
  pomelo_protos_del(p);
  CHECK(ta.live == 0);
  return 0;
}
