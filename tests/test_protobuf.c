/* pomelo-protobuf: the parsed form and version of proto descriptions (byte for byte as the real
 * parser and server print them), handshake round trips, the spec 7.4 vectors (server encoder
 * bytes, and the browser's wire-type-2 bytes decoded), field order, duplicates, every error
 * code with its path, limits, CESU-8, measuring, and failing-allocator loops.
 * Expected bytes and texts come from pomelo-protobuf 0.4.0 under node (spec Appendix A).
 * SPDX-License-Identifier: MIT
 */
#include <pomelo/protobuf.h>

#include <stdio.h>

#include "tap.h"
#include "testutil.h"

#ifndef POMELO_SOURCE_ROOT
#define POMELO_SOURCE_ROOT "."
#endif

#define LIT(s) s, sizeof(s) - 1u
#define PM_ARRAY_LEN_(a) (sizeof(a) / sizeof((a)[0]))

/* ---------------------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------------------- */

static pomelo_protos *mk(const char *server, const char *client) {
  pomelo_protos *p = NULL;
  pomelo_pb_error err;
  int rc = pomelo_protos_new(&p, NULL, server, server ? strlen(server) : 0, client,
                             client ? strlen(client) : 0, NULL, &err);
  if (rc) {
    diag("protos_new: %s (%s) at %s", pomelo_err_name(rc), err.path, server);
  }
  return p;
}

static pomelo_json_doc *parse(const char *json) {
  pomelo_json_doc *doc = NULL;
  if (pomelo_json_parse(&doc, NULL, json, strlen(json), NULL, NULL) != 0) {
    diag("bad test JSON: %s", json);
  }
  return doc;
}

static void to_hex(const uint8_t *b, size_t n, char *out) {
  size_t i, o = 0;
  for (i = 0; i < n; i++) {
    o += (size_t)sprintf(out + o, i ? " %02x" : "%02x", b[i]);
  }
  out[o] = '\0';
}

/* "{"n":" k times, then `inner`, then k closing braces. */
static void nest_json(char *out, size_t k, const char *inner) {
  size_t i, o = 0;
  for (i = 0; i < k; i++) {
    o += (size_t)sprintf(out + o, "{\"n\":");
  }
  o += (size_t)sprintf(out + o, "%s", inner);
  for (i = 0; i < k; i++) {
    out[o++] = '}';
  }
  out[o] = '\0';
}

/* "n.n.n" with k parts. */
static void n_path(char *out, size_t k) {
  size_t i, o = 0;
  for (i = 0; i < k; i++) {
    o += (size_t)sprintf(out + o, i ? ".n" : "n");
  }
  out[o] = '\0';
}

/* Encodes `json` as `route` of the server side (or client, `side`) into hex; returns the code. */
static int enc(const pomelo_protos *p, pomelo_protos_side side, const char *route, const char *json,
               unsigned flags, char *hex, pomelo_pb_error *err) {
  uint8_t buf[4096];
  size_t n = 0, m = 0;
  pomelo_json_doc *doc = parse(json);
  const pomelo_pb_type *t = pomelo_protos_find(p, side, route, strlen(route));
  int rc, rc2;
  pomelo_pb_error e2;
  hex[0] = '\0';
  if (!doc || !t) {
    pomelo_json_doc_del(doc);
    return -9999;
  }
  rc = pomelo_pb_encode(t, pomelo_json_root(doc), flags, buf, sizeof buf, &n, err);
  rc2 = pomelo_pb_encode(t, pomelo_json_root(doc), flags, NULL, 0, &m, &e2);
  if (rc2 != rc || (rc == 0 && m != n)) {
    diag("measure disagrees: %d/%d %zu/%zu", rc, rc2, n, m);
    rc = -9998;
  }
  if (rc == 0) {
    to_hex(buf, n, hex);
  }
  pomelo_json_doc_del(doc);
  return rc;
}

static int enc_s(const pomelo_protos *p, const char *route, const char *json, char *hex,
                 pomelo_pb_error *err) {
  return enc(p, POMELO_PROTOS_SERVER, route, json, 0, hex, err);
}

/* Decodes hex as `route` (server side) into JSON text in `out`. */
static int dec(const pomelo_protos *p, const char *route, const char *hex, char *out, size_t cap,
               pomelo_pb_error *err) {
  uint8_t buf[4096];
  long n = test_hex_decode(hex, buf, sizeof buf);
  const pomelo_pb_type *t = pomelo_protos_find(p, POMELO_PROTOS_SERVER, route, strlen(route));
  pomelo_json_writer *w = NULL;
  int rc;
  const char *d;
  size_t dl;
  out[0] = '\0';
  if (n < 0 || !t || pomelo_json_writer_new(&w, NULL, 0) != 0) {
    return -9999;
  }
  {
    /* at the end of an exact-size block, so an over-read faults under ASan */
    uint8_t *exact = malloc(n ? (size_t)n : 1u);
    memcpy(exact, buf, (size_t)n);
    rc = pomelo_pb_decode(t, exact, (size_t)n, w, err);
    free(exact);
  }
  if (rc == 0) {
    d = pomelo_json_writer_data(w, &dl);
    if (dl >= cap) {
      dl = cap - 1;
    }
    memcpy(out, d, dl);
    out[dl] = '\0';
  }
  pomelo_json_writer_del(w);
  return rc;
}

static const char *side_json(const pomelo_protos *p, pomelo_protos_side s) {
  return pomelo_protos_side_json(p, s, NULL);
}

/* The spec's Appendix A protos. */
static const char *const T_PROTOS =
    "{\"onChat\":{\"required string msg\":1,\"required string from\":2,\"required string "
    "target\":3},"
    "\"t\":{\"required uInt32 u\":1,\"required sInt32 s\":2,\"required int32 i\":3,\"optional "
    "float f\":4,\"optional double d\":5,\"optional string str\":6,\"message Pos\":{\"required "
    "uInt32 x\":1,\"required uInt32 y\":2},\"optional Pos pos\":7,\"repeated uInt32 "
    "ru\":8,\"repeated string rs\":9,\"repeated Pos rp\":10,\"optional Item item\":11},"
    "\"message Item\":{\"required uInt32 id\":1}}";

static const char *const CHAT_SERVER =
    "{\"onChat\":{\"required string msg\":1,\"required string from\":2,\"required string "
    "target\":3}}";

static const char *const CHAT_PARSED =
    "{\"onChat\":{\"msg\":{\"option\":\"required\",\"type\":\"string\",\"tag\":1},\"from\":{"
    "\"option\":\"required\",\"type\":\"string\",\"tag\":2},\"target\":{\"option\":"
    "\"required\",\"type\":\"string\",\"tag\":3},\"__messages\":{},\"__tags\":{\"1\":\"msg\","
    "\"2\":\"from\",\"3\":\"target\"}}}";

/* Reads the "protos" value of the connector's 729-byte handshake (spec 4.4) from
 * tests/data/handshake-responses.hex, written back compactly. */
static char *handshake_protos(pomelo_json_doc **doc_out) {
  static char line[8192];
  static uint8_t pkg[4096];
  char *res = NULL;
  FILE *f = fopen(POMELO_SOURCE_ROOT "/tests/data/handshake-responses.hex", "r");
  *doc_out = NULL;
  if (!f) {
    return NULL;
  }
  while (fgets(line, sizeof line, f)) {
    long n;
    pomelo_json_doc *doc = NULL;
    pomelo_json_writer *w = NULL;
    const char *d;
    size_t dl;
    if (strncmp(line, "CONN733 ", 8) != 0) {
      continue;
    }
    line[strcspn(line, "\r\n")] = '\0';
    n = test_hex_decode(line + 8, pkg, sizeof pkg);
    if (n != 733 || pomelo_json_parse(&doc, NULL, (const char *)pkg + 4, 729, NULL, NULL) != 0) {
      break;
    }
    pomelo_json_writer_new(&w, NULL, 0);
    pomelo_json_write_value(
        w, pomelo_json_get(pomelo_json_get(pomelo_json_root(doc), "sys"), "protos"));
    d = pomelo_json_writer_data(w, &dl);
    res = malloc(dl + 1);
    memcpy(res, d, dl + 1);
    pomelo_json_writer_del(w);
    *doc_out = doc;
    break;
  }
  fclose(f);
  return res;
}

/* ---------------------------------------------------------------------------------------------
 * Schemas
 * ------------------------------------------------------------------------------------------- */

static void test_limits_default(void) {
  pomelo_pb_limits l;
  pomelo_pb_limits_default(&l);
  is_int(l.max_depth, 32, "default max_depth");
  is_int(l.max_schema, 1 << 20, "default max_schema");
  is_int(l.max_fields, 65536, "default max_fields");
  pomelo_pb_limits_default(NULL);
  ok(1, "limits_default(NULL) is harmless");
}

static void test_chat(void) {
  pomelo_protos *p = mk(CHAT_SERVER, "{}"), *q, *h = NULL;
  pomelo_json_doc *doc = NULL;
  char *want = handshake_protos(&doc);
  size_t n = 0;
  const char *j;
  pomelo_pb_error err;
  int rc;
  ok(p != NULL, "chatofpomelo protos parse");
  if (!p) {
    return;
  }
  is_str(pomelo_protos_version(p), "2zWPnSlRsRxjqgcU215Uxg==", "chatofpomelo version");
  is_str(side_json(p, POMELO_PROTOS_SERVER), CHAT_PARSED, "chatofpomelo parsed server protos");
  is_str(side_json(p, POMELO_PROTOS_CLIENT), "{}", "chatofpomelo parsed client protos");
  ok(want != NULL, "the connector handshake of spec 4.4 is readable");
  j = pomelo_protos_json(p, &n);
  is_str(j, want ? want : "", "protos value equals the live handshake's, byte for byte");
  is_int(n, strlen(j), "protos_json length");
  is_int(pomelo_protos_count(p, POMELO_PROTOS_SERVER), 1, "one server route");
  is_int(pomelo_protos_count(p, POMELO_PROTOS_CLIENT), 0, "no client route");
  ok(pomelo_protos_find(p, POMELO_PROTOS_SERVER, LIT("onChat")) != NULL, "find onChat");
  ok(pomelo_protos_find(p, POMELO_PROTOS_CLIENT, LIT("onChat")) == NULL, "not on client side");
  ok(pomelo_protos_find(p, POMELO_PROTOS_SERVER, LIT("onCha")) == NULL, "prefix is no route");
  ok(pomelo_protos_find(NULL, POMELO_PROTOS_SERVER, LIT("onChat")) == NULL, "find on NULL");

  /* NULL / empty client is {} too */
  q = mk(CHAT_SERVER, NULL);
  is_str(q ? pomelo_protos_json(q, NULL) : "", j, "NULL client protos is {}");
  pomelo_protos_del(q);
  rc = pomelo_protos_new(&q, NULL, CHAT_SERVER, strlen(CHAT_SERVER), "", 0, NULL, NULL);
  is_str(rc == 0 ? pomelo_protos_json(q, NULL) : "", j, "empty client protos is {}");
  pomelo_protos_del(q);

  /* the client side: the same set from the handshake */
  if (doc) {
    const pomelo_json_value *pv =
        pomelo_json_get(pomelo_json_get(pomelo_json_root(doc), "sys"), "protos");
    rc = pomelo_protos_from_handshake(&h, NULL, pv, NULL, &err);
    is_int(rc, 0, "from_handshake of the live handshake");
    is_str(rc == 0 ? pomelo_protos_json(h, NULL) : "", j, "from_handshake gives the same JSON");
    is_str(rc == 0 ? pomelo_protos_version(h) : "",
           "2zWPnSlRsRxjqgcU215Uxg==", "from_handshake keeps the version");
    pomelo_protos_del(h);
  }
  pomelo_json_doc_del(doc);
  free(want);
  pomelo_protos_del(p);

  p = mk(NULL, NULL);
  is_str(p ? pomelo_protos_version(p) : "", "xT9OvpsqULwrUv2IpdUD4Q==", "empty set: md5 of {}{}");
  is_str(p ? pomelo_protos_json(p, NULL) : "",
         "{\"server\":{},\"client\":{},\"version\":\"xT9OvpsqULwrUv2IpdUD4Q==\"}",
         "empty set JSON");
  pomelo_protos_del(p);
  pomelo_protos_del(NULL);
  ok(pomelo_protos_json(NULL, &n) == NULL && n == 0, "protos_json(NULL)");
  ok(pomelo_protos_version(NULL) == NULL, "protos_version(NULL)");
  ok(pomelo_protos_side_json(NULL, POMELO_PROTOS_SERVER, &n) == NULL && n == 0, "side_json(NULL)");
  is_int(pomelo_protos_count(NULL, POMELO_PROTOS_SERVER), 0, "count(NULL)");
}

/* Round trip through from_handshake: the same JSON and version. */
static void check_handshake_roundtrip(const pomelo_protos *p, const char *name) {
  pomelo_json_doc *doc = parse(pomelo_protos_json(p, NULL));
  pomelo_protos *h = NULL;
  pomelo_pb_error err;
  int rc = pomelo_protos_from_handshake(&h, NULL, pomelo_json_root(doc), NULL, &err);
  is_int(rc, 0, "%s: from_handshake of its own JSON", name);
  if (rc == 0) {
    is_str(pomelo_protos_json(h, NULL), pomelo_protos_json(p, NULL), "%s: identical JSON", name);
    is_int(pomelo_protos_count(h, POMELO_PROTOS_SERVER),
           pomelo_protos_count(p, POMELO_PROTOS_SERVER), "%s: same route count", name);
  } else {
    diag("%s at %s", pomelo_err_name(rc), err.path);
  }
  pomelo_protos_del(h);
  pomelo_json_doc_del(doc);
}

static void test_parser_rules(void) {
  /* checked against pomelo-protobuf 0.4.0's parse() under node */
  static const char s3[] =
      "{\"r\":{\"required uInt32 5\":3,\"required string x\":1,\"message M\":{\"optional M2 "
      "m\":1,\"message M2\":{}},\"required uInt32 2\":2,\"optional string y\":1,\"foo bar "
      "baz\":4,\"required string\":6,\"message a b\":{},\"packed uInt32 z\":7,\"optional G "
      "g\":8,\"message 7\":{},\"message 3\":{}},\"message G\":{\"optional uInt32 "
      "a\":1},\"10\":{\"repeated double d\":1},\"2\":{}}";
  static const char s3_parsed[] =
      "{\"2\":{\"__messages\":{},\"__tags\":{}},\"10\":{\"d\":{\"option\":\"repeated\","
      "\"type\":\"double\",\"tag\":1},\"__messages\":{},\"__tags\":{\"1\":\"d\"}},\"r\":{\"2\":"
      "{\"option\":\"required\",\"type\":\"uInt32\",\"tag\":2},\"5\":{\"option\":\"required\","
      "\"type\":\"uInt32\",\"tag\":3},\"x\":{\"option\":\"required\",\"type\":\"string\","
      "\"tag\":1},\"g\":{\"option\":\"optional\",\"type\":\"G\",\"tag\":8},\"__messages\":{"
      "\"3\":{\"__messages\":{},\"__tags\":{}},\"7\":{\"__messages\":{},\"__tags\":{}},\"M\":{"
      "\"m\":{\"option\":\"optional\",\"type\":\"M2\",\"tag\":1},\"__messages\":{\"M2\":{\"__"
      "messages\":{},\"__tags\":{}}},\"__tags\":{\"1\":\"m\"}}},\"__tags\":{\"1\":\"x\",\"2\":"
      "\"2\",\"3\":\"5\",\"8\":\"g\"}},\"message G\":{\"a\":{\"option\":\"optional\",\"type\":"
      "\"uInt32\",\"tag\":1},\"__messages\":{},\"__tags\":{\"1\":\"a\"}}}";
  pomelo_protos *p = mk(s3, "{\"c\":{\"required uInt32 a\":1}}");
  ok(p != NULL, "rules: parses");
  if (p) {
    is_str(side_json(p, POMELO_PROTOS_SERVER), s3_parsed,
           "rules: key order, skipped keys, duplicate tag, nested, global, index names");
    is_str(pomelo_protos_version(p), "E/vArxTuKDWFC2EzBgo9Rg==", "rules: version");
    is_int(pomelo_protos_count(p, POMELO_PROTOS_SERVER), 3, "rules: 3 routes (not message G)");
    is_int(pomelo_protos_count(p, POMELO_PROTOS_CLIENT), 1, "rules: 1 client route");
    ok(pomelo_protos_find(p, POMELO_PROTOS_SERVER, LIT("message G")) != NULL,
       "rules: a global type is found by its key, as the JS encoder would");
    check_handshake_roundtrip(p, "rules");
  }
  pomelo_protos_del(p);

  /* JSON duplicate keys: the last value, at the first place (JSON.parse) */
  p = mk("{\"a\":{\"required uInt32 x\":1,\"optional string y\":2,\"required uInt32 x\":3},"
         "\"b\":{},\"a\":{\"required uInt32 z\":1}}",
         NULL);
  is_str(p ? side_json(p, POMELO_PROTOS_SERVER) : "",
         "{\"a\":{\"z\":{\"option\":\"required\",\"type\":\"uInt32\",\"tag\":1},\"__messages\":"
         "{},\"__tags\":{\"1\":\"z\"}},\"b\":{\"__messages\":{},\"__tags\":{}}}",
         "duplicate route: last value at first place");
  pomelo_protos_del(p);
  p = mk("{\"a\":{\"required uInt32 x\":1,\"optional string y\":2,\"required uInt32 x\":3}}", NULL);
  is_str(p ? side_json(p, POMELO_PROTOS_SERVER) : "",
         "{\"a\":{\"x\":{\"option\":\"required\",\"type\":\"uInt32\",\"tag\":3},\"y\":{"
         "\"option\":\"optional\",\"type\":\"string\",\"tag\":2},\"__messages\":{},\"__tags\":{"
         "\"2\":\"y\",\"3\":\"x\"}}}",
         "duplicate field key: last tag at first place");
  pomelo_protos_del(p);

  /* duplicate tags: the first wins, even when the later one would be invalid */
  p = mk("{\"m\":{\"required uInt32 a\":1,\"optional bool b\":1,\"optional string c\":2,"
         "\"optional string \":2,\"repeated Nope a\":2}}",
         NULL);
  is_str(p ? side_json(p, POMELO_PROTOS_SERVER) : "",
         "{\"m\":{\"a\":{\"option\":\"required\",\"type\":\"uInt32\",\"tag\":1},\"c\":{"
         "\"option\":\"optional\",\"type\":\"string\",\"tag\":2},\"__messages\":{},\"__tags\":{"
         "\"1\":\"a\",\"2\":\"c\"}}}",
         "duplicate tags skipped (first wins)");
  pomelo_protos_del(p);

  /* tags written 1.0 or 1e0 are the number 1 */
  p = mk("{\"m\":{\"required uInt32 a\":1.0,\"required uInt32 b\":2e0,\"required uInt32 "
         "c\":268435455}}",
         NULL);
  is_str(p ? side_json(p, POMELO_PROTOS_SERVER) : "",
         "{\"m\":{\"a\":{\"option\":\"required\",\"type\":\"uInt32\",\"tag\":1},\"b\":{"
         "\"option\":\"required\",\"type\":\"uInt32\",\"tag\":2},\"c\":{\"option\":\"required\","
         "\"type\":\"uInt32\",\"tag\":268435455},\"__messages\":{},\"__tags\":{\"1\":\"a\",\"2\":"
         "\"b\",\"268435455\":\"c\"}}}",
         "tags as numbers; the largest tag 2^28-1");
  pomelo_protos_del(p);

  /* global type visible in nested types; a message type named like an unsupported scalar */
  p = mk("{\"r\":{\"message A\":{\"optional B b\":1,\"optional bool c\":2,\"message bool\":{}},"
         "\"optional A a\":1},\"message B\":{\"optional B next\":1}}",
         NULL);
  ok(p != NULL, "a global type is visible in a nested one; recursive global types; bool as a "
                "message name");
  pomelo_protos_del(p);

  /* non-ASCII and escaped names */
  p = mk("{\"r\\u00e9\":{\"optional string \\u4f60\":1,\"optional string q\\\"\":2}}", NULL);
  is_str(p ? side_json(p, POMELO_PROTOS_SERVER) : "",
         "{\"r\xc3\xa9\":{\"\xe4\xbd\xa0\":{\"option\":\"optional\",\"type\":\"string\",\"tag\":"
         "1},\"q\\\"\":{\"option\":\"optional\",\"type\":\"string\",\"tag\":2},\"__messages\":{},"
         "\"__tags\":{\"1\":\"\xe4\xbd\xa0\",\"2\":\"q\\\"\"}}}",
         "names: UTF-8 and escapes as JSON.stringify writes them");
  if (p) {
    check_handshake_roundtrip(p, "names");
  }
  pomelo_protos_del(p);

  p = mk(T_PROTOS, CHAT_SERVER);
  ok(p != NULL, "appendix A protos");
  if (p) {
    check_handshake_roundtrip(p, "appendix A");
  }
  pomelo_protos_del(p);
}

static void expect_schema_err(const char *server, const char *client, const pomelo_pb_limits *lim,
                              int code, const char *path, const char *name) {
  pomelo_protos *p = (pomelo_protos *)&code;
  pomelo_pb_error err;
  int rc;
  memset(&err, 0x55, sizeof err);
  rc = pomelo_protos_new(&p, NULL, server, server ? strlen(server) : 0, client,
                         client ? strlen(client) : 0, lim, &err);
  is_int(rc, code, "%s: %s", name, pomelo_err_name(code));
  ok(p == NULL, "%s: no set", name);
  is_int(err.code, code, "%s: err.code", name);
  is_str(err.path, path, "%s: path", name);
  /* without err */
  rc = pomelo_protos_new(&p, NULL, server, server ? strlen(server) : 0, client,
                         client ? strlen(client) : 0, lim, NULL);
  is_int(rc, code, "%s: same without err", name);
}

static void test_schema_errors(void) {
  pomelo_pb_limits lim;
  pomelo_pb_error err;
  pomelo_protos *p;
  int rc;
  char deep[2048];
  size_t i, n = 0;

  expect_schema_err("{", NULL, NULL, POMELO_ERR_JSON_SYNTAX, "server", "not JSON");
  rc = pomelo_protos_new(&p, NULL, LIT("{\"a\":{} x"), NULL, 0, NULL, &err);
  is_int(err.offset, 8, "JSON error offset");
  expect_schema_err("{}", "[1", NULL, POMELO_ERR_JSON_SYNTAX, "client", "client not JSON");
  expect_schema_err("{}", "{\"a\":\"\xff\"}", NULL, POMELO_ERR_JSON_UTF8, "client", "bad UTF-8");
  expect_schema_err("[]", NULL, NULL, POMELO_ERR_PB_SCHEMA, "server", "top level not an object");
  expect_schema_err("{\"r\":1}", NULL, NULL, POMELO_ERR_PB_SCHEMA, "server/r",
                    "route not an object");
  expect_schema_err("{}", "{\"r\":[]}", NULL, POMELO_ERR_PB_SCHEMA, "client/r",
                    "client route not an object");
  expect_schema_err("{\"r\":{\"required bool b\":1}}", NULL, NULL, POMELO_ERR_PB_SCHEMA,
                    "server/r/required bool b", "unknown type bool");
  expect_schema_err("{\"r\":{\"message P\":{\"repeated bytes b\":1}}}", NULL, NULL,
                    POMELO_ERR_PB_SCHEMA, "server/r/message P/repeated bytes b",
                    "unknown type in a nested message");
  expect_schema_err("{\"r\":{\"optional uInt64 b\":1}}", NULL, NULL, POMELO_ERR_PB_SCHEMA,
                    "server/r/optional uInt64 b", "uInt64");
  expect_schema_err("{\"r\":{\"message sInt64\":{},\"optional sInt64 b\":1}}", NULL, NULL,
                    POMELO_ERR_PB_SCHEMA, "server/r/optional sInt64 b",
                    "sInt64 even when a message has the name");
  expect_schema_err("{\"r\":{\"message A\":{\"optional B b\":1},\"message B\":{}}}", NULL, NULL,
                    POMELO_ERR_PB_SCHEMA, "server/r/message A/optional B b",
                    "an outer message's nested type is not visible inside an inner one");
  expect_schema_err("{\"r\":{\"optional Item i\":1}}", "{\"message Item\":{}}", NULL,
                    POMELO_ERR_PB_SCHEMA, "server/r/optional Item i",
                    "globals of the other side are not visible");
  expect_schema_err("{\"r\":{\"required uInt32 a\":0}}", NULL, NULL, POMELO_ERR_PB_SCHEMA,
                    "server/r/required uInt32 a", "tag 0");
  expect_schema_err("{\"r\":{\"required uInt32 a\":-1}}", NULL, NULL, POMELO_ERR_PB_SCHEMA,
                    "server/r/required uInt32 a", "negative tag");
  expect_schema_err("{\"r\":{\"required uInt32 a\":1.5}}", NULL, NULL, POMELO_ERR_PB_SCHEMA,
                    "server/r/required uInt32 a", "fractional tag");
  expect_schema_err("{\"r\":{\"required uInt32 a\":\"1\"}}", NULL, NULL, POMELO_ERR_PB_SCHEMA,
                    "server/r/required uInt32 a", "tag as a string");
  expect_schema_err("{\"r\":{\"required uInt32 a\":268435456}}", NULL, NULL, POMELO_ERR_PB_SCHEMA,
                    "server/r/required uInt32 a", "tag 2^28");
  expect_schema_err("{\"r\":{\"required uInt32 \":1}}", NULL, NULL, POMELO_ERR_PB_SCHEMA,
                    "server/r/required uInt32 ", "empty field name");
  expect_schema_err("{\"r\":{\"required uInt32 __proto__\":1}}", NULL, NULL, POMELO_ERR_PB_SCHEMA,
                    "server/r/required uInt32 __proto__", "__proto__ field");
  expect_schema_err("{\"r\":{\"required uInt32 __tags\":1}}", NULL, NULL, POMELO_ERR_PB_SCHEMA,
                    "server/r/required uInt32 __tags", "__tags field");
  expect_schema_err("{\"__proto__\":{}}", NULL, NULL, POMELO_ERR_PB_SCHEMA, "server/__proto__",
                    "__proto__ route");
  expect_schema_err("{\"r\":{\"required uInt32 a\":1,\"optional string a\":2}}", NULL, NULL,
                    POMELO_ERR_PB_SCHEMA, "server/r/optional string a", "duplicate field name");
  expect_schema_err("{\"r\":{\"message X\":5}}", NULL, NULL, POMELO_ERR_PB_SCHEMA,
                    "server/r/message X", "nested message not an object");
  expect_schema_err("{\"r\":{\"required  x\":1}}", NULL, NULL, POMELO_ERR_PB_SCHEMA,
                    "server/r/required  x", "empty type name does not resolve");

  /* depth */
  n = (size_t)sprintf(deep, "{\"r\":");
  for (i = 0; i < 3; i++) {
    n += (size_t)sprintf(deep + n, "{\"message M\":");
  }
  n += (size_t)sprintf(deep + n, "{}");
  for (i = 0; i < 4; i++) {
    deep[n++] = '}';
  }
  deep[n] = '\0';
  pomelo_pb_limits_default(&lim);
  lim.max_depth = 4;
  p = NULL;
  rc = pomelo_protos_new(&p, NULL, deep, n, NULL, 0, &lim, &err);
  is_int(rc, 0, "depth 4 within max_depth 4");
  pomelo_protos_del(p);
  lim.max_depth = 3;
  expect_schema_err(deep, NULL, &lim, POMELO_ERR_PB_DEPTH, "server/r/message M/message M/message M",
                    "depth 4 beyond max_depth 3");
  n = (size_t)sprintf(deep, "{\"r\":");
  for (i = 0; i < 40; i++) {
    n += (size_t)sprintf(deep + n, "{\"message M\":");
  }
  n += (size_t)sprintf(deep + n, "{}");
  for (i = 0; i < 41; i++) {
    deep[n++] = '}';
  }
  deep[n] = '\0';
  rc = pomelo_protos_new(&p, NULL, deep, n, NULL, 0, NULL, &err);
  is_int(rc, POMELO_ERR_PB_DEPTH, "41 levels beyond the default 32");
  lim.max_depth = 255;
  rc = pomelo_protos_new(&p, NULL, deep, n, NULL, 0, &lim, &err);
  is_int(rc, 0, "max_depth 255 accepted");
  pomelo_protos_del(p);

  /* limits */
  pomelo_pb_limits_default(&lim);
  lim.max_schema = 10;
  expect_schema_err("{\"r\":{    }}", NULL, &lim, POMELO_ERR_LIMIT, "server", "max_schema");
  rc = pomelo_protos_new(&p, NULL, LIT("{\"r\":{  }}"), NULL, 0, &lim, &err);
  is_int(rc, 0, "max_schema: exactly 10 bytes");
  pomelo_protos_del(p);
  expect_schema_err("{}", "{\"rr\":{    }}", &lim, POMELO_ERR_LIMIT, "client",
                    "max_schema applies per side");
  pomelo_pb_limits_default(&lim);
  lim.max_fields = 3;
  rc = pomelo_protos_new(&p, NULL, LIT("{\"r\":{\"message A\":{}, \"optional A a\":1}}"), NULL, 0,
                         &lim, &err);
  is_int(rc, 0, "max_fields: 3 items");
  pomelo_protos_del(p);
  expect_schema_err("{\"r\":{\"message A\":{}, \"optional A a\":1}}", "{\"c\":{}}", &lim,
                    POMELO_ERR_LIMIT, "client/c", "max_fields counts both sides");

  /* bad arguments */
  rc = pomelo_protos_new(NULL, NULL, LIT("{}"), NULL, 0, NULL, &err);
  is_int(rc, POMELO_ERR_INVALID_ARG, "out NULL");
  rc = pomelo_protos_new(&p, NULL, NULL, 3, NULL, 0, NULL, &err);
  is_int(rc, POMELO_ERR_INVALID_ARG, "server NULL with a length");
  rc = pomelo_protos_new(&p, NULL, NULL, 0, NULL, 3, NULL, &err);
  is_int(rc, POMELO_ERR_INVALID_ARG, "client NULL with a length");
  pomelo_pb_limits_default(&lim);
  lim.max_depth = 0;
  rc = pomelo_protos_new(&p, NULL, LIT("{}"), NULL, 0, &lim, &err);
  is_int(rc, POMELO_ERR_INVALID_ARG, "max_depth 0");
  lim.max_depth = 256;
  rc = pomelo_protos_new(&p, NULL, LIT("{}"), NULL, 0, &lim, &err);
  is_int(rc, POMELO_ERR_INVALID_ARG, "max_depth 256");
}

static void expect_hs_err(const char *json, int code, const char *path, const char *name) {
  pomelo_json_doc *doc = parse(json);
  pomelo_protos *p = NULL;
  pomelo_pb_error err;
  int rc = pomelo_protos_from_handshake(&p, NULL, pomelo_json_root(doc), NULL, &err);
  is_int(rc, code, "handshake %s: %s", name, pomelo_err_name(code));
  is_str(err.path, path, "handshake %s: path", name);
  ok(p == NULL, "handshake %s: no set", name);
  pomelo_protos_del(p);
  pomelo_json_doc_del(doc);
}

static void test_handshake_form(void) {
  pomelo_json_doc *doc;
  pomelo_protos *p = NULL;
  int rc;
  /* a form that is not canonical: normalised on output */
  doc = parse("{\"client\":{\"c\":{\"__tags\":{\"1\":\"a\"},\"__messages\":{},\"a\":{\"tag\":1,"
              "\"type\":\"uInt32\",\"option\":\"optional\",\"extra\":1}}},\"version\":\"v1\"}");
  rc = pomelo_protos_from_handshake(&p, NULL, pomelo_json_root(doc), NULL, NULL);
  is_int(rc, 0, "handshake form: reordered keys, extra keys, missing server");
  is_str(rc == 0 ? pomelo_protos_json(p, NULL) : "",
         "{\"server\":{},\"client\":{\"c\":{\"a\":{\"option\":\"optional\",\"type\":\"uInt32\","
         "\"tag\":1},\"__messages\":{},\"__tags\":{\"1\":\"a\"}}},\"version\":\"v1\"}",
         "handshake form: written canonically, version kept");
  pomelo_protos_del(p);
  pomelo_json_doc_del(doc);
  doc = parse("{\"server\":{}}");
  rc = pomelo_protos_from_handshake(&p, NULL, pomelo_json_root(doc), NULL, NULL);
  is_str(rc == 0 ? pomelo_protos_version(p) : "",
         "xT9OvpsqULwrUv2IpdUD4Q==", "handshake form without version: computed");
  pomelo_protos_del(p);
  pomelo_json_doc_del(doc);

  expect_hs_err("[]", POMELO_ERR_PB_SCHEMA, "", "not an object");
  expect_hs_err("{\"server\":1}", POMELO_ERR_PB_SCHEMA, "server", "server not an object");
  expect_hs_err("{\"server\":{\"r\":{\"__tags\":{}}}}", POMELO_ERR_PB_SCHEMA, "server/r/__messages",
                "no __messages");
  expect_hs_err("{\"server\":{\"r\":{\"__messages\":{}}}}", POMELO_ERR_PB_SCHEMA, "server/r/__tags",
                "no __tags");
  expect_hs_err("{\"server\":{\"r\":{\"a\":{\"option\":\"optional\",\"type\":\"uInt32\",\"tag\":"
                "1},\"__messages\":{},\"__tags\":{}}}}",
                POMELO_ERR_PB_SCHEMA, "server/r/__tags", "__tags missing a field");
  expect_hs_err("{\"server\":{\"r\":{\"a\":{\"option\":\"optional\",\"type\":\"uInt32\",\"tag\":"
                "1},\"__messages\":{},\"__tags\":{\"1\":\"b\"}}}}",
                POMELO_ERR_PB_SCHEMA, "server/r/__tags", "__tags naming another field");
  expect_hs_err("{\"server\":{\"r\":{\"a\":{\"option\":\"optional\",\"type\":\"uInt32\",\"tag\":"
                "1},\"__messages\":{},\"__tags\":{\"01\":\"a\"}}}}",
                POMELO_ERR_PB_SCHEMA, "server/r/__tags", "__tags key not canonical");
  expect_hs_err("{\"server\":{\"r\":{\"a\":{\"option\":\"packed\",\"type\":\"uInt32\",\"tag\":1},"
                "\"__messages\":{},\"__tags\":{\"1\":\"a\"}}}}",
                POMELO_ERR_PB_SCHEMA, "server/r/a", "unknown option");
  expect_hs_err("{\"server\":{\"r\":{\"a\":{\"option\":\"optional\",\"type\":\"uInt32\"},"
                "\"__messages\":{},\"__tags\":{}}}}",
                POMELO_ERR_PB_SCHEMA, "server/r/a", "no tag");
  expect_hs_err("{\"server\":{\"r\":{\"a\":{\"option\":\"optional\",\"type\":\"uInt32\",\"tag\":1},"
                "\"b\":{\"option\":\"optional\",\"type\":\"uInt32\",\"tag\":1},"
                "\"__messages\":{},\"__tags\":{\"1\":\"a\"}}}}",
                POMELO_ERR_PB_SCHEMA, "server/r/b", "duplicate tag");
  expect_hs_err("{\"server\":{\"r\":{\"a\":{\"option\":\"optional\",\"type\":\"P\",\"tag\":1},"
                "\"__messages\":{\"Q\":{\"__messages\":{},\"__tags\":{}}},\"__tags\":{\"1\":\"a\"}"
                "}}}",
                POMELO_ERR_PB_SCHEMA, "server/r/a", "unresolved type");
  expect_hs_err("{\"client\":{\"r\":{\"__messages\":{\"Q\":{\"__messages\":{},\"x\":1,\"__tags\":"
                "{}}},\"__tags\":{}}}}",
                POMELO_ERR_PB_SCHEMA, "client/r/__messages/Q/x", "nested field not an object");
  expect_hs_err("{\"server\":{},\"version\":5}", POMELO_ERR_PB_SCHEMA, "version",
                "version not a string");
  rc = pomelo_protos_from_handshake(&p, NULL, NULL, NULL, NULL);
  is_int(rc, POMELO_ERR_INVALID_ARG, "handshake: NULL value");
  doc = parse("{}");
  rc = pomelo_protos_from_handshake(NULL, NULL, pomelo_json_root(doc), NULL, NULL);
  is_int(rc, POMELO_ERR_INVALID_ARG, "handshake: out NULL");
  pomelo_json_doc_del(doc);
}

/* ---------------------------------------------------------------------------------------------
 * Encoding and decoding
 * ------------------------------------------------------------------------------------------- */

typedef struct vec {
  const char *route;
  const char *json;    /* what the server encodes */
  const char *server;  /* pomelo-protobuf's lib/encoder.js bytes */
  const char *browser; /* lib/client/protobuf.js bytes (wire type 2, CESU-8) */
  const char *decoded; /* our decode of both */
} vec;

static const vec vectors[] = {
    {"onChat", "{\"msg\":\"hi\",\"from\":\"alice\",\"target\":\"*\"}",
     "0a 02 68 69 12 05 61 6c 69 63 65 1a 01 2a", "0a 02 68 69 12 05 61 6c 69 63 65 1a 01 2a",
     "{\"msg\":\"hi\",\"from\":\"alice\",\"target\":\"*\"}"},
    {"onChat", "{\"target\":\"*\",\"from\":\"alice\",\"msg\":\"hi\"}",
     "1a 01 2a 12 05 61 6c 69 63 65 0a 02 68 69", NULL,
     "{\"target\":\"*\",\"from\":\"alice\",\"msg\":\"hi\"}"},
    {"t", "{\"u\":300,\"s\":-1,\"i\":-2}", "08 ac 02 10 01 18 03", "0a ac 02 12 01 1a 03",
     "{\"u\":300,\"s\":-1,\"i\":-2}"},
    {"t", "{\"u\":0,\"s\":0,\"i\":0,\"f\":1.5,\"d\":0.1}",
     "08 00 10 00 18 00 25 00 00 c0 3f 29 9a 99 99 99 99 99 b9 3f",
     "0a 00 12 00 1a 00 25 00 00 c0 3f 29 9a 99 99 99 99 99 b9 3f",
     "{\"u\":0,\"s\":0,\"i\":0,\"f\":1.5,\"d\":0.1}"},
    {"t", "{\"u\":0,\"s\":0,\"i\":0,\"str\":\"\\u4f60\\u597d\",\"pos\":{\"x\":1,\"y\":2}}",
     "08 00 10 00 18 00 32 06 e4 bd a0 e5 a5 bd 3a 04 08 01 10 02",
     "0a 00 12 00 1a 00 32 06 e4 bd a0 e5 a5 bd 3a 04 0a 01 12 02",
     "{\"u\":0,\"s\":0,\"i\":0,\"str\":\"\xe4\xbd\xa0\xe5\xa5\xbd\",\"pos\":{\"x\":1,\"y\":2}}"},
    {"t",
     "{\"u\":0,\"s\":0,\"i\":0,\"str\":\"\\u4f60\\u597d\\ud83d\\ude00\",\"pos\":{\"x\":1,"
     "\"y\":2}}",
     "08 00 10 00 18 00 32 0a e4 bd a0 e5 a5 bd f0 9f 98 80 3a 04 08 01 10 02",
     "0a 00 12 00 1a 00 32 0c e4 bd a0 e5 a5 bd ed a0 bd ed b8 80 3a 04 0a 01 12 02",
     "{\"u\":0,\"s\":0,\"i\":0,\"str\":\"\xe4\xbd\xa0\xe5\xa5\xbd\xf0\x9f\x98\x80\",\"pos\":{"
     "\"x\":1,\"y\":2}}"},
    {"t", "{\"u\":0,\"s\":0,\"i\":0,\"ru\":[1,2,300],\"rs\":[\"a\",\"bc\"]}",
     "08 00 10 00 18 00 40 03 01 02 ac 02 4a 01 61 4a 02 62 63",
     "0a 00 12 00 1a 00 42 03 01 02 ac 02 4a 01 61 4a 02 62 63",
     "{\"u\":0,\"s\":0,\"i\":0,\"ru\":[1,2,300],\"rs\":[\"a\",\"bc\"]}"},
    {"t",
     "{\"u\":0,\"s\":0,\"i\":0,\"rp\":[{\"x\":1,\"y\":2},{\"x\":3,\"y\":4}],\"item\":{\"id\":"
     "7}}",
     "08 00 10 00 18 00 52 04 08 01 10 02 52 04 08 03 10 04 5a 02 08 07",
     "0a 00 12 00 1a 00 52 04 0a 01 12 02 52 04 0a 03 12 04 5a 02 0a 07",
     "{\"u\":0,\"s\":0,\"i\":0,\"rp\":[{\"x\":1,\"y\":2},{\"x\":3,\"y\":4}],\"item\":{\"id\":7}}"},
    /* checked against node: float overflow is Infinity, -0 keeps its sign */
    {"t", "{\"u\":0,\"s\":0,\"i\":0,\"f\":3.4e39,\"d\":-0}",
     "08 00 10 00 18 00 25 00 00 80 7f 29 00 00 00 00 00 00 00 80", NULL,
     "{\"u\":0,\"s\":0,\"i\":0,\"f\":null,\"d\":0}"},
    {"t", "{\"u\":9007199254740992,\"s\":-4503599627370496,\"i\":4503599627370496}",
     "08 80 80 80 80 80 80 80 10 10 ff ff ff ff ff ff ff 0f 18 80 80 80 80 80 80 80 10", NULL,
     "{\"u\":9007199254740992,\"s\":-4503599627370496,\"i\":4503599627370496}"},
};

static void test_vectors(void) {
  pomelo_protos *p = mk(T_PROTOS, NULL);
  size_t i;
  char hex[8192], out[8192];
  pomelo_pb_error err;
  if (!p) {
    ok(0, "vectors: protos");
    return;
  }
  for (i = 0; i < PM_ARRAY_LEN_(vectors); i++) {
    const vec *v = &vectors[i];
    int rc = enc_s(p, v->route, v->json, hex, &err);
    is_int(rc, 0, "vector %zu: encodes", i);
    is_str(hex, v->server, "vector %zu: server encoder bytes", i);
    rc = dec(p, v->route, v->server, out, sizeof out, &err);
    is_int(rc, 0, "vector %zu: decodes", i);
    is_str(out, v->decoded, "vector %zu: decoded", i);
    if (v->browser) {
      rc = dec(p, v->route, v->browser, out, sizeof out, &err);
      is_int(rc, 0, "vector %zu: browser bytes decode", i);
      is_str(out, v->decoded, "vector %zu: browser bytes decoded (wire type 2, CESU-8)", i);
    }
  }
  /* the browser client's CESU-8 */
  {
    int rc = enc(p, POMELO_PROTOS_SERVER, "t", vectors[5].json, POMELO_PB_CESU8, hex, &err);
    is_int(rc, 0, "CESU8 flag encodes");
    is_str(hex, "08 00 10 00 18 00 32 0c e4 bd a0 e5 a5 bd ed a0 bd ed b8 80 3a 04 08 01 10 02",
           "CESU8 flag: non-BMP as two 3-byte surrogates");
    rc = enc(p, POMELO_PROTOS_SERVER, "t", vectors[4].json, POMELO_PB_CESU8, hex, &err);
    is_str(hex, vectors[4].server, "CESU8 flag: BMP text unchanged");
  }
  pomelo_protos_del(p);
}

static void expect_enc_err(const pomelo_protos *p, const char *route, const char *json, int code,
                           const char *path, const char *name) {
  char hex[4096];
  pomelo_pb_error err;
  int rc;
  memset(&err, 0x55, sizeof err);
  rc = enc_s(p, route, json, hex, &err);
  is_int(rc, code, "encode %s: %s", name, pomelo_err_name(code));
  is_int(err.code, code, "encode %s: err.code", name);
  is_str(err.path, path, "encode %s: path", name);
}

static void expect_enc(const pomelo_protos *p, const char *route, const char *json,
                       const char *hex_want, const char *name) {
  char hex[4096];
  pomelo_pb_error err;
  int rc = enc_s(p, route, json, hex, &err);
  is_int(rc, 0, "encode %s", name);
  if (rc) {
    diag("%s at %s", pomelo_err_name(rc), err.path);
  }
  is_str(hex, hex_want, "encode %s: bytes", name);
}

static void test_encode_rules(void) {
  pomelo_protos *p = mk(T_PROTOS, NULL), *q;
  uint8_t buf[64];
  size_t n;
  pomelo_json_doc *doc;
  const pomelo_pb_type *t;
  pomelo_pb_error err;
  int rc;
  if (!p) {
    ok(0, "encode rules: protos");
    return;
  }
  expect_enc(p, "t", "{\"u\":1,\"zz\":5,\"s\":0,\"i\":0,\"nope\":{}}", "08 01 10 00 18 00",
             "unknown keys dropped");
  expect_enc(p, "t", "{\"u\":1,\"s\":0,\"i\":0,\"u\":2}", "08 02 10 00 18 00",
             "duplicate key: last value at the first place");
  expect_enc(p, "t", "{\"u\":\"12\",\"s\":\"-3\",\"i\":\"007\"}", "08 0c 10 05 18 0e",
             "digit strings as parseInt reads them");
  expect_enc(p, "t", "{\"u\":1e2,\"s\":-0,\"i\":2.0}", "08 64 10 00 18 04",
             "integral numbers in any notation");
  expect_enc(p, "t", "{\"u\":0,\"s\":2147483647,\"i\":-2147483648}",
             "08 00 10 fe ff ff ff 0f 18 ff ff ff ff 0f", "int32 range, zigzag");
  expect_enc(p, "t", "{\"u\":4294967295,\"s\":0,\"i\":0}", "08 ff ff ff ff 0f 10 00 18 00",
             "uInt32 2^32-1");
  expect_enc(p, "t", "{\"u\":0,\"s\":0,\"i\":0,\"ru\":[],\"rs\":[],\"rp\":null}",
             "08 00 10 00 18 00", "empty arrays and a null repeated field left out");
  expect_enc(p, "t", "{\"u\":0,\"s\":0,\"i\":0,\"pos\":{\"y\":2,\"x\":1,\"q\":3}}",
             "08 00 10 00 18 00 3a 04 10 02 08 01", "nested: key order of the nested object");
  expect_enc(p, "t", "{\"u\":0,\"s\":0,\"i\":0,\"f\":0.1,\"d\":1e400}",
             "08 00 10 00 18 00 25 cd cc cc 3d 29 00 00 00 00 00 00 f0 7f",
             "float rounding; a double literal beyond range is Infinity as in JSON.parse");
  expect_enc(p, "onChat", "{\"msg\":\"\",\"from\":\"a\\u0000b\",\"target\":\"\\n\"}",
             "0a 00 12 03 61 00 62 1a 01 0a", "empty string, NUL, control");

  expect_enc_err(p, "t", "{\"s\":0,\"i\":0}", POMELO_ERR_PB_REQUIRED, "u", "required missing");
  expect_enc_err(p, "t", "{\"u\":0,\"s\":0,\"i\":0,\"pos\":{\"x\":1}}", POMELO_ERR_PB_REQUIRED,
                 "pos.y", "required missing in a nested message");
  expect_enc_err(p, "t", "{\"u\":0,\"s\":0,\"i\":0,\"rp\":[{\"x\":1,\"y\":1},{\"x\":1}]}",
                 POMELO_ERR_PB_REQUIRED, "rp[1].y", "required missing in a repeated element");
  expect_enc_err(p, "t", "{\"u\":0,\"s\":0,\"i\":0,\"item\":{}}", POMELO_ERR_PB_REQUIRED, "item.id",
                 "required missing in a global type");
  expect_enc_err(p, "t", "{\"u\":null,\"s\":0,\"i\":0}", POMELO_ERR_PB_TYPE, "u", "null scalar");
  expect_enc_err(p, "t", "{\"u\":true,\"s\":0,\"i\":0}", POMELO_ERR_PB_TYPE, "u", "bool scalar");
  expect_enc_err(p, "t", "{\"u\":[1],\"s\":0,\"i\":0}", POMELO_ERR_PB_TYPE, "u", "array scalar");
  expect_enc_err(p, "t", "{\"u\":-1,\"s\":0,\"i\":0}", POMELO_ERR_PB_TYPE, "u", "negative uInt32");
  expect_enc_err(p, "t", "{\"u\":1.5,\"s\":0,\"i\":0}", POMELO_ERR_PB_TYPE, "u",
                 "fractional uInt32");
  expect_enc_err(p, "t", "{\"u\":9007199254740993,\"s\":0,\"i\":0}", POMELO_ERR_PB_TYPE, "u",
                 "uInt32 above 2^53");
  expect_enc_err(p, "t", "{\"u\":\"12a\",\"s\":0,\"i\":0}", POMELO_ERR_PB_TYPE, "u",
                 "uInt32 string with a non-digit");
  expect_enc_err(p, "t", "{\"u\":\"-1\",\"s\":0,\"i\":0}", POMELO_ERR_PB_TYPE, "u",
                 "uInt32 string with a sign");
  expect_enc_err(p, "t", "{\"u\":\"\",\"s\":0,\"i\":0}", POMELO_ERR_PB_TYPE, "u",
                 "uInt32 empty string");
  expect_enc_err(p, "t", "{\"u\":0,\"s\":4503599627370497,\"i\":0}", POMELO_ERR_PB_TYPE, "s",
                 "sInt32 above 2^52");
  expect_enc_err(p, "t", "{\"u\":0,\"s\":0,\"i\":-4503599627370497}", POMELO_ERR_PB_TYPE, "i",
                 "int32 below -2^52");
  expect_enc_err(p, "t", "{\"u\":0,\"s\":0,\"i\":0,\"f\":\"1\"}", POMELO_ERR_PB_TYPE, "f",
                 "float from a string");
  expect_enc_err(p, "t", "{\"u\":0,\"s\":0,\"i\":0,\"d\":{}}", POMELO_ERR_PB_TYPE, "d",
                 "double from an object");
  expect_enc_err(p, "t", "{\"u\":0,\"s\":0,\"i\":0,\"str\":5}", POMELO_ERR_PB_TYPE, "str",
                 "string from a number");
  expect_enc_err(p, "t", "{\"u\":0,\"s\":0,\"i\":0,\"pos\":[]}", POMELO_ERR_PB_TYPE, "pos",
                 "message from an array");
  expect_enc_err(p, "t", "{\"u\":0,\"s\":0,\"i\":0,\"pos\":null}", POMELO_ERR_PB_TYPE, "pos",
                 "message from null");
  expect_enc_err(p, "t", "{\"u\":0,\"s\":0,\"i\":0,\"ru\":5}", POMELO_ERR_PB_TYPE, "ru",
                 "repeated from a number");
  expect_enc_err(p, "t", "{\"u\":0,\"s\":0,\"i\":0,\"ru\":[1,\"x\"]}", POMELO_ERR_PB_TYPE, "ru[1]",
                 "repeated element of the wrong type");
  expect_enc_err(p, "t", "{\"u\":0,\"s\":0,\"i\":0,\"rs\":[\"a\",null]}", POMELO_ERR_PB_TYPE,
                 "rs[1]", "repeated string element null");
  expect_enc_err(p, "t", "{\"u\":0,\"s\":0,\"i\":0,\"rp\":[{\"x\":1,\"y\":-1}]}",
                 POMELO_ERR_PB_TYPE, "rp[0].y", "path into a repeated message");

  /* measure, exact buffer, too small, bad arguments */
  doc = parse("{\"msg\":\"hi\",\"from\":\"alice\",\"target\":\"*\"}");
  t = pomelo_protos_find(p, POMELO_PROTOS_SERVER, LIT("onChat"));
  rc = pomelo_pb_encode(t, pomelo_json_root(doc), 0, NULL, 0, &n, &err);
  ok(rc == 0 && n == 14, "measure mode gives 14");
  memset(buf, 0xee, sizeof buf);
  rc = pomelo_pb_encode(t, pomelo_json_root(doc), 0, buf, 14, &n, &err);
  ok(rc == 0 && n == 14 && buf[0] == 0x0a && buf[13] == 0x2a && buf[14] == 0xee,
     "exact buffer: bytes at the start, nothing beyond");
  n = 0;
  rc = pomelo_pb_encode(t, pomelo_json_root(doc), 0, buf, 13, &n, &err);
  ok(rc == POMELO_ERR_BUFFER_TOO_SMALL && n == 14 && err.code == rc,
     "one byte short: BUFFER_TOO_SMALL and the size needed");
  rc = pomelo_pb_encode(t, pomelo_json_root(doc), 0, buf, 0, &n, &err);
  ok(rc == POMELO_ERR_BUFFER_TOO_SMALL && n == 14, "buffer of 0 bytes");
  rc = pomelo_pb_encode(t, pomelo_json_root(doc), 0, buf, sizeof buf, &n, NULL);
  ok(rc == 0 && n == 14 && buf[0] == 0x0a, "large buffer: moved to the start; err NULL");
  rc = pomelo_pb_encode(t, pomelo_json_root(doc), 0, NULL, 5, &n, &err);
  is_int(rc, POMELO_ERR_INVALID_ARG, "NULL buffer with a capacity");
  rc = pomelo_pb_encode(NULL, pomelo_json_root(doc), 0, buf, sizeof buf, &n, &err);
  is_int(rc, POMELO_ERR_INVALID_ARG, "NULL type");
  rc = pomelo_pb_encode(t, NULL, 0, buf, sizeof buf, &n, &err);
  is_int(rc, POMELO_ERR_INVALID_ARG, "NULL value");
  rc = pomelo_pb_encode(t, pomelo_json_root(doc), 0, buf, sizeof buf, NULL, &err);
  is_int(rc, POMELO_ERR_INVALID_ARG, "NULL out_len");
  rc = pomelo_pb_encode(t, pomelo_json_get(pomelo_json_root(doc), "msg"), 0, buf, sizeof buf, &n,
                        &err);
  is_int(rc, POMELO_ERR_INVALID_ARG, "value not an object");
  pomelo_json_doc_del(doc);
  doc = parse("{\"nothing\":1}");
  t = pomelo_protos_find(p, POMELO_PROTOS_SERVER, LIT("t"));
  rc = pomelo_pb_encode(t, pomelo_json_root(doc), 0, buf, sizeof buf, &n, &err);
  is_int(rc, POMELO_ERR_PB_REQUIRED, "t of an object without its fields: required");
  pomelo_json_doc_del(doc);
  pomelo_protos_del(p);

  /* empty result; array-index field names come first as in a JS object */
  q = mk("{\"e\":{\"optional uInt32 a\":1},\"n\":{\"optional uInt32 b\":1,\"optional uInt32 "
         "10\":2,\"optional uInt32 2\":3,\"optional uInt32 a\":4}}",
         NULL);
  expect_enc(q, "e", "{}", "", "empty object: 0 bytes");
  expect_enc(q, "e", "{\"x\":1}", "", "no field present: 0 bytes");
  expect_enc(q, "n", "{\"a\":1,\"10\":2,\"b\":3,\"2\":4}", "18 04 10 02 20 01 08 03",
             "array-index keys first, ascending (JS object order)");
  expect_enc(q, "n", "{\"2\":1,\"2\":5,\"a\":2}", "18 05 20 02",
             "duplicate array-index key: its last value");
  pomelo_protos_del(q);

  /* depth: a recursive global type; the top message is level 1 */
  q = mk("{\"r\":{\"optional N n\":1},\"message N\":{\"optional N n\":1,\"optional uInt32 v\":2}}",
         NULL);
  {
    char json[4096], path[256], hex[8192];
    nest_json(json, 31, "{\"v\":1}");
    rc = enc_s(q, "r", json, hex, &err);
    is_int(rc, 0, "32 levels within max_depth 32");
    nest_json(json, 32, "{\"v\":1}");
    n_path(path, 32);
    expect_enc_err(q, "r", json, POMELO_ERR_PB_DEPTH, path, "33 levels beyond max_depth 32");
  }
  pomelo_protos_del(q);
}

static void expect_dec(const pomelo_protos *p, const char *route, const char *hex, const char *want,
                       const char *name) {
  char out[8192];
  pomelo_pb_error err;
  int rc = dec(p, route, hex, out, sizeof out, &err);
  is_int(rc, 0, "decode %s", name);
  if (rc) {
    diag("%s at %s offset %zu", pomelo_err_name(rc), err.path, err.offset);
  }
  is_str(out, want, "decode %s: JSON", name);
}

static void expect_dec_err(const pomelo_protos *p, const char *route, const char *hex, int code,
                           const char *path, size_t offset, const char *name) {
  char out[8192];
  pomelo_pb_error err;
  int rc;
  memset(&err, 0x55, sizeof err);
  rc = dec(p, route, hex, out, sizeof out, &err);
  is_int(rc, code, "decode %s: %s", name, pomelo_err_name(code));
  is_int(err.code, code, "decode %s: err.code", name);
  is_str(err.path, path, "decode %s: path", name);
  is_int(err.offset, offset, "decode %s: offset", name);
}

static void test_decode_rules(void) {
  pomelo_protos *p = mk(T_PROTOS, NULL), *q;
  pomelo_json_writer *w = NULL;
  const pomelo_pb_type *t;
  pomelo_pb_error err;
  int rc;
  if (!p) {
    ok(0, "decode rules: protos");
    return;
  }
  expect_dec(p, "t", "", "{}", "empty body");
  expect_dec(p, "t", "0d 05", "{\"u\":5}", "wire type 5 on a varint field is ignored");
  expect_dec(p, "t", "4a 01 61 40 02 01 02 08 01 4a 01 62 40 01 03",
             "{\"rs\":[\"a\",\"b\"],\"ru\":[1,2,3],\"u\":1}",
             "repeated fields gather where they first appear (checked with node)");
  expect_dec(p, "t", "08 01 10 01 08 02", "{\"u\":2,\"s\":-1}",
             "a repeated optional field: last value, first place");
  expect_dec(p, "t", "40 00", "{\"ru\":[]}", "a repeated scalar with count 0");
  expect_dec(p, "t", "08 ff ff ff ff ff ff ff ff ff 01", "{\"u\":18446744073709552000}",
             "2^64-1 printed as the JS double prints (node)");
  expect_dec(p, "t", "10 ff ff ff ff ff ff ff ff ff 01", "{\"s\":9223372036854776000}",
             "zigzag of 2^64-1 as the JS decoder computes it (node)");
  expect_dec(p, "t", "10 81 80 80 80 80 80 80 c0 01", "{\"s\":54043195528445950}",
             "zigzag above 2^53 (node)");
  expect_dec(p, "t", "10 ff ff ff ff 0f 18 fe ff ff ff 0f", "{\"s\":-2147483648,\"i\":2147483647}",
             "int32 extremes");
  expect_dec(p, "t", "25 00 00 c0 7f 2d 00 00 00 00 00 00 f0 7f", "{\"f\":null,\"d\":null}",
             "NaN and Infinity print as null (node)");
  expect_dec(p, "t", "25 cd cc cc 3d 2d 00 00 00 00 00 00 00 80",
             "{\"f\":0.10000000149011612,\"d\":0}", "float widened; -0 prints 0");
  expect_dec(p, "t", "08 80 80 80 80 80 80 80 80 80 00", "{\"u\":0}",
             "a 10-byte varint of 0 (not canonical) is accepted");
  expect_dec(p, "t", "32 06 ed a0 bd ed b8 80", "{\"str\":\"\xf0\x9f\x98\x80\"}",
             "CESU-8 pair rewritten as 4-byte UTF-8");
  expect_dec(p, "t", "32 07 ed a0 bd 41 ed b8 80",
             "{\"str\":\"\xef\xbf\xbd"
             "A\xef\xbf\xbd\"}",
             "lone surrogates become U+FFFD");
  expect_dec(p, "t", "32 06 ed b8 80 ed a0 bd", "{\"str\":\"\xef\xbf\xbd\xef\xbf\xbd\"}",
             "low then high: two U+FFFD");
  expect_dec(p, "t", "32 03 00 22 5c", "{\"str\":\"\\u0000\\\"\\\\\"}", "NUL, quote, backslash");
  expect_dec(p, "t", "3a 00 52 00", "{\"pos\":{},\"rp\":[{}]}",
             "empty nested messages (required fields are not checked)");
  expect_dec(p, "t", "5a 00 5a 02 08 09", "{\"item\":{\"id\":9}}", "a message field twice: last");

  expect_dec_err(p, "t", "60 01", POMELO_ERR_PB_TAG, "", 0, "unknown tag 12");
  expect_dec_err(p, "t", "08 01 00", POMELO_ERR_PB_TAG, "", 2, "tag 0");
  expect_dec_err(p, "t", "3a 02 18 01", POMELO_ERR_PB_TAG, "pos", 2, "unknown tag in nested");
  expect_dec_err(p, "t", "52 02 08 01 52 02 20 00", POMELO_ERR_PB_TAG, "rp[1]", 6,
                 "unknown tag in a repeated element");
  expect_dec_err(p, "t", "88 80 80 80 10 01", POMELO_ERR_PB_TAG, "", 0,
                 "a key whose low 32 bits name a tag is still unknown");
  expect_dec_err(p, "t", "08", POMELO_ERR_PB_TRUNCATED, "u", 1, "value missing");
  expect_dec_err(p, "t", "08 80", POMELO_ERR_PB_TRUNCATED, "u", 2, "varint cut");
  expect_dec_err(p, "t", "88", POMELO_ERR_PB_TRUNCATED, "", 1, "key cut");
  expect_dec_err(p, "t", "25 00 00 c0", POMELO_ERR_PB_TRUNCATED, "f", 4, "float cut");
  expect_dec_err(p, "t", "29 00 00 00 00 00 00 f0", POMELO_ERR_PB_TRUNCATED, "d", 8, "double cut");
  expect_dec_err(p, "t", "32 05 61 62", POMELO_ERR_PB_TRUNCATED, "str", 4,
                 "string cut (node would keep 'ab')");
  expect_dec_err(p, "t", "3a 04 08 01", POMELO_ERR_PB_TRUNCATED, "pos", 4, "nested cut");
  expect_dec_err(p, "t", "3a 02 08 80 01", POMELO_ERR_PB_TRUNCATED, "pos.x", 4,
                 "a value crossing the nested message's end");
  expect_dec_err(p, "t", "40 03 01 02", POMELO_ERR_PB_TRUNCATED, "ru[0]", 4,
                 "count beyond the bytes left");
  expect_dec_err(p, "t", "40 80 80 80 80 80 80 80 80 10 01", POMELO_ERR_PB_TRUNCATED, "ru[0]", 11,
                 "count 2^60 in an 11-byte body fails at once");
  expect_dec_err(p, "t", "40 02 01 80", POMELO_ERR_PB_TRUNCATED, "ru[1]", 4, "an element cut");
  expect_dec_err(p, "t", "08 80 80 80 80 80 80 80 80 80 80 01", POMELO_ERR_PB_VARINT, "u", 1,
                 "11-byte varint");
  expect_dec_err(p, "t", "08 80 80 80 80 80 80 80 80 80 02", POMELO_ERR_PB_VARINT, "u", 1,
                 "10-byte varint beyond 64 bits");
  expect_dec(p, "t", "08 80 80 80 80 80 80 80 80 80 01", "{\"u\":9223372036854776000}",
             "10-byte varint of 2^63");
  expect_dec_err(p, "t", "32 02 c3 28", POMELO_ERR_PB_UTF8, "str", 2, "invalid UTF-8");
  expect_dec_err(p, "t", "32 02 c0 80", POMELO_ERR_PB_UTF8, "str", 2, "overlong");
  expect_dec_err(p, "t", "4a 01 61 4a 03 61 62 ff", POMELO_ERR_PB_UTF8, "rs[1]", 7,
                 "invalid UTF-8 in the second element");
  expect_dec_err(p, "t", "32 02 f0 9f", POMELO_ERR_PB_UTF8, "str", 2, "4-byte sequence cut");

  /* bad arguments */
  t = pomelo_protos_find(p, POMELO_PROTOS_SERVER, LIT("t"));
  pomelo_json_writer_new(&w, NULL, 0);
  rc = pomelo_pb_decode(NULL, (const uint8_t *)"", 0, w, &err);
  is_int(rc, POMELO_ERR_INVALID_ARG, "decode: NULL type");
  rc = pomelo_pb_decode(t, NULL, 1, w, &err);
  is_int(rc, POMELO_ERR_INVALID_ARG, "decode: NULL data with a length");
  rc = pomelo_pb_decode(t, NULL, 0, NULL, &err);
  is_int(rc, POMELO_ERR_INVALID_ARG, "decode: NULL writer");
  rc = pomelo_pb_decode(t, NULL, 0, w, NULL);
  is_int(rc, 0, "decode: NULL data, empty, no err");
  is_str(pomelo_json_writer_data(w, NULL), "{}", "decode: {}");
  pomelo_json_writer_reset(w);
  /* the writer's own limit */
  pomelo_json_writer_del(w);
  pomelo_json_writer_new(&w, NULL, 1);
  rc = pomelo_pb_decode(t, (const uint8_t *)"\x3a\x00", 2, w, &err);
  is_int(rc, POMELO_ERR_JSON_DEPTH, "decode: the writer's depth limit");
  is_int(err.code, POMELO_ERR_JSON_DEPTH, "decode: err.code is the writer's");
  pomelo_json_writer_del(w);
  pomelo_protos_del(p);

  /* array-index field names first in the output; many distinct fields (the map path) */
  q = mk("{\"n\":{\"optional uInt32 b\":1,\"optional uInt32 10\":2,\"optional uInt32 "
         "2\":3,\"repeated uInt32 a\":4,\"optional uInt32 c\":5,\"optional uInt32 d\":6,"
         "\"optional uInt32 e\":7,\"optional uInt32 f\":8,\"optional uInt32 g\":9,"
         "\"optional uInt32 h\":10,\"optional uInt32 i\":11,\"optional uInt32 j\":12}}",
         NULL);
  expect_dec(q, "n", "20 01 01 10 02 08 03 18 04", "{\"2\":4,\"10\":2,\"a\":[1],\"b\":3}",
             "array-index keys first, ascending");
  expect_dec(
      q, "n",
      "08 01 28 02 30 03 38 04 40 05 48 06 50 07 58 08 60 09 10 0a 18 0b 20 01 "
      "0c 08 0d 60 0e 20 01 0f 28 10",
      "{\"2\":11,\"10\":10,\"b\":13,\"c\":16,\"d\":3,\"e\":4,\"f\":5,\"g\":6,\"h\":7,\"i\":8,"
      "\"j\":14,\"a\":[12,15]}",
      "more than 8 fields: duplicates still found");
  pomelo_protos_del(q);

  /* depth */
  q = mk("{\"r\":{\"optional N n\":1},\"message N\":{\"optional N n\":1,\"optional uInt32 v\":2}}",
         NULL);
  {
    char hex[1024], want[1024], path[256];
    size_t k, len = 2;
    uint8_t bytes[128];
    /* innermost: 10 01 (v=1); each level wraps it in 0a LEN */
    bytes[0] = 0x10;
    bytes[1] = 0x01;
    for (k = 0; k < 32; k++) {
      memmove(bytes + 2, bytes, len);
      bytes[0] = 0x0a;
      bytes[1] = (uint8_t)len;
      len += 2;
      if (k == 30) {
        to_hex(bytes, len, hex);
        nest_json(want, 31, "{\"v\":1}");
        expect_dec(q, "r", hex, want, "32 levels within max_depth 32");
      }
    }
    to_hex(bytes, len, hex);
    n_path(path, 32);
    expect_dec_err(q, "r", hex, POMELO_ERR_PB_DEPTH, path, 63, "33 levels beyond max_depth 32");
  }
  pomelo_protos_del(q);
}

/* The deepest nesting allowed: 255 levels encode and decode (the C stack holds). */
static void test_depth_cap(void) {
  static char json[4096], want[4096];
  static const char schema[] =
      "{\"r\":{\"optional N n\":1},\"message N\":{\"optional N n\":1,\"optional uInt32 v\":2}}";
  pomelo_pb_limits lim;
  pomelo_json_options o;
  pomelo_protos *p = NULL;
  pomelo_json_doc *doc = NULL;
  pomelo_json_writer *w = NULL;
  const pomelo_pb_type *t;
  uint8_t buf[4096];
  size_t n = 0;
  int rc;
  pomelo_pb_limits_default(&lim);
  lim.max_depth = 255;
  rc = pomelo_protos_new(&p, NULL, LIT(schema), NULL, 0, &lim, NULL);
  t = pomelo_protos_find(p, POMELO_PROTOS_SERVER, LIT("r"));
  nest_json(json, 254, "{\"v\":1}");
  pomelo_json_options_default(&o);
  o.max_depth = 300;
  rc = rc ? rc : pomelo_json_parse(&doc, NULL, json, strlen(json), &o, NULL);
  rc = rc ? rc : pomelo_pb_encode(t, pomelo_json_root(doc), 0, buf, sizeof buf, &n, NULL);
  is_int(rc, 0, "255 levels encode with max_depth 255");
  is_int(n, 2 * 254 + 2 + (254 - 63) * 1,
         "255 levels: size (lengths of 128 and more take 2 bytes)");
  pomelo_json_writer_new(&w, NULL, 300);
  rc = pomelo_pb_decode(t, buf, n, w, NULL);
  is_int(rc, 0, "255 levels decode");
  strcpy(want, json);
  is_str(pomelo_json_writer_data(w, NULL), want, "255 levels: same JSON back");
  pomelo_json_writer_del(w);
  pomelo_json_doc_del(doc);
  doc = NULL;
  nest_json(json, 255, "{\"v\":1}");
  pomelo_json_parse(&doc, NULL, json, strlen(json), &o, NULL);
  rc = pomelo_pb_encode(t, pomelo_json_root(doc), 0, NULL, 0, &n, NULL);
  is_int(rc, POMELO_ERR_PB_DEPTH, "256 levels: PB_DEPTH");
  pomelo_json_doc_del(doc);
  pomelo_protos_del(p);
}

/* Encodes then decodes: the JSON comes back (values the JS codecs carry exactly). */
static void test_roundtrip(void) {
  static const char *const objs[] = {
      "{\"u\":4294967295,\"s\":-2147483648,\"i\":2147483647,\"f\":-1.25,\"d\":1.7976931348623157e+"
      "308,\"str\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\",\"pos\":{\"x\":0,\"y\":1},\"ru\":[0,"
      "1,127,128,16383,16384],\"rs\":[\"\",\"x\"],\"rp\":[{\"x\":5,\"y\":6}],\"item\":{\"id\":3}}",
      "{\"item\":{\"id\":1},\"i\":-1,\"s\":1,\"u\":1}",
      "{\"u\":1,\"s\":0,\"i\":0,\"d\":5e-324,\"f\":1.401298464324817e-45}",
  };
  pomelo_protos *p = mk(T_PROTOS, NULL);
  size_t i;
  for (i = 0; p && i < PM_ARRAY_LEN_(objs); i++) {
    char hex[8192], out[8192];
    pomelo_pb_error err;
    int rc = enc_s(p, "t", objs[i], hex, &err);
    is_int(rc, 0, "round trip %zu: encodes", i);
    rc = dec(p, "t", hex, out, sizeof out, &err);
    is_int(rc, 0, "round trip %zu: decodes", i);
    is_str(out, objs[i], "round trip %zu: same JSON", i);
  }
  pomelo_protos_del(p);
}

/* ---------------------------------------------------------------------------------------------
 * Failing allocators
 * ------------------------------------------------------------------------------------------- */

static void test_alloc_failures(void) {
  static const char *const schemas[] = {
      NULL, /* T_PROTOS */
      "{\"r\":{\"required uInt32 5\":3,\"required string x\":1,\"message M\":{\"optional M2 "
      "m\":1,\"message M2\":{}},\"required uInt32 2\":2,\"optional string y\":1,\"message "
      "7\":{},\"message 3\":{}},\"message G\":{\"optional uInt32 a\":1},\"10\":{\"repeated "
      "double d\":1},\"2\":{},\"r\":{\"optional uInt32 q\":1}}",
  };
  char big[16384];
  size_t bn = 0, i;
  long k, failures = 0;
  int all_ok = 1;

  /* a message with 300 fields: the encoder's table outgrows its stack space */
  bn += (size_t)sprintf(big + bn, "{\"b\":{");
  for (i = 1; i <= 300; i++) {
    bn += (size_t)sprintf(big + bn, "%s\"optional uInt32 f%zu\":%zu", i > 1 ? "," : "", i, i);
  }
  bn += (size_t)sprintf(big + bn, ",\"repeated S s\":301},\"message S\":{\"optional S s\":1,"
                                  "\"repeated string t\":2}}");

  for (i = 0; i < 3; i++) {
    const char *s = i == 0 ? T_PROTOS : i == 1 ? schemas[1] : big;
    int done = 0;
    for (k = 1; !done && k < 10000; k++) {
      test_alloc ta;
      pomelo_protos *p = NULL;
      pomelo_pb_error err;
      int rc;
      test_alloc_init(&ta, k);
      rc = pomelo_protos_new(&p, &ta.a, s, strlen(s), CHAT_SERVER, strlen(CHAT_SERVER), NULL, &err);
      if (ta.failed) {
        failures++;
        if (rc != POMELO_ERR_NOMEM || p != NULL || err.code != rc) {
          all_ok = 0;
          diag("schema %zu fail at %ld: rc %d", i, k, rc);
        }
      } else {
        done = 1;
        if (rc != 0) {
          all_ok = 0;
          diag("schema %zu: %s at %s", i, pomelo_err_name(rc), err.path);
        }
      }
      if (p) {
        /* from_handshake of its JSON, failing too */
        pomelo_json_doc *doc = parse(pomelo_protos_json(p, NULL));
        long j;
        int hdone = 0;
        for (j = 1; done && !hdone && j < 10000; j++) {
          test_alloc tb;
          pomelo_protos *h = NULL;
          test_alloc_init(&tb, j);
          rc = pomelo_protos_from_handshake(&h, &tb.a, pomelo_json_root(doc), NULL, &err);
          if (tb.failed) {
            failures++;
            if (rc != POMELO_ERR_NOMEM || h) {
              all_ok = 0;
              diag("handshake %zu fail at %ld: rc %d", i, j, rc);
            }
          } else {
            hdone = 1;
            if (rc != 0 || strcmp(pomelo_protos_json(h, NULL), pomelo_protos_json(p, NULL))) {
              all_ok = 0;
            }
          }
          pomelo_protos_del(h);
          if (tb.live != 0) {
            all_ok = 0;
            diag("handshake %zu fail at %ld: %ld blocks leaked", i, j, tb.live);
          }
        }
        pomelo_json_doc_del(doc);
      }
      pomelo_protos_del(p);
      if (ta.live != 0) {
        all_ok = 0;
        diag("schema %zu fail at %ld: %ld blocks leaked", i, k, ta.live);
      }
    }
    ok(done, "schema %zu: allocation-failure loop ends in success", i);
  }
  ok(all_ok, "protos_new and from_handshake: every failed allocation gives NOMEM, no leak (%ld)",
     failures);

  /* encode (the big table) and decode, with the set's allocator failing */
  {
    test_alloc ta;
    pomelo_protos *p = NULL;
    pomelo_json_doc *doc;
    char json[8192];
    size_t jn = 0;
    const pomelo_pb_type *t;
    uint8_t buf[8192];
    size_t n = 0;
    long base;
    int enc_done = 0, dec_done = 0;
    char want[8192];
    test_alloc_init(&ta, 0);
    pomelo_protos_new(&p, &ta.a, big, bn, NULL, 0, NULL, NULL);
    t = pomelo_protos_find(p, POMELO_PROTOS_SERVER, LIT("b"));
    jn += (size_t)sprintf(json + jn, "{");
    for (i = 1; i <= 300; i += 7) {
      jn += (size_t)sprintf(json + jn, "\"f%zu\":%zu,", i, i * 1000);
    }
    jn += (size_t)sprintf(json + jn, "\"s\":[{\"s\":{\"t\":[\"\xed\xa0\xbd\xed\xb8\x80\"]},"
                                     "\"t\":[\"a\",\"b\"]},{}]}");
    doc = parse(json);
    all_ok = 1;
    for (k = 1; t && !enc_done && k < 1000; k++) {
      int rc;
      base = ta.calls;
      ta.fail_at = base + k;
      ta.failed = 0;
      rc = pomelo_pb_encode(t, pomelo_json_root(doc), 0, buf, sizeof buf, &n, NULL);
      if (ta.failed) {
        if (rc != POMELO_ERR_NOMEM) {
          all_ok = 0;
        }
      } else {
        enc_done = rc == 0;
      }
    }
    ok(enc_done && k > 2, "encode: a failed allocation (table of 600 words) gives NOMEM");
    ta.fail_at = 0;
    {
      pomelo_json_writer *w = NULL;
      const char *d;
      pomelo_json_writer_new(&w, NULL, 0);
      pomelo_pb_decode(t, buf, n, w, NULL);
      d = pomelo_json_writer_data(w, NULL);
      strcpy(want, d);
      for (k = 1; !dec_done && k < 1000; k++) {
        int rc;
        pomelo_json_writer_reset(w);
        base = ta.calls;
        ta.fail_at = base + k;
        ta.failed = 0;
        rc = pomelo_pb_decode(t, buf, n, w, NULL);
        if (ta.failed) {
          if (rc != POMELO_ERR_NOMEM) {
            all_ok = 0;
          }
        } else {
          dec_done = rc == 0 && strcmp(pomelo_json_writer_data(w, NULL), want) == 0;
        }
      }
      pomelo_json_writer_del(w);
    }
    ok(dec_done && k > 3, "decode: every failed allocation gives NOMEM (%ld steps)", k);
    ok(all_ok, "encode/decode allocation failures: NOMEM each time");
    ta.fail_at = 0;
    pomelo_json_doc_del(doc);
    pomelo_protos_del(p);
    is_int(ta.live, 0, "encode/decode: nothing leaked");
  }

  /* a count of 2^60 in a 10-byte body: no allocation beyond the decoder's first */
  {
    test_alloc ta;
    pomelo_protos *p = NULL;
    pomelo_json_writer *w = NULL;
    const pomelo_pb_type *t;
    long before;
    int rc;
    test_alloc_init(&ta, 0);
    pomelo_protos_new(&p, &ta.a, T_PROTOS, strlen(T_PROTOS), NULL, 0, NULL, NULL);
    t = pomelo_protos_find(p, POMELO_PROTOS_SERVER, LIT("t"));
    pomelo_json_writer_new(&w, NULL, 0);
    before = ta.calls;
    rc = pomelo_pb_decode(t, (const uint8_t *)"\x40\x80\x80\x80\x80\x80\x80\x80\x80\x10", 10, w,
                          NULL);
    is_int(rc, POMELO_ERR_PB_TRUNCATED, "count 2^60: TRUNCATED");
    ok(ta.calls - before <= 3 && ta.peak < 64 * 1024, "count 2^60: %ld allocations, peak %zu",
       ta.calls - before, ta.peak);
    pomelo_json_writer_del(w);
    pomelo_protos_del(p);
  }
}

int main(void) {
  test_limits_default();
  test_chat();
  test_parser_rules();
  test_schema_errors();
  test_handshake_form();
  test_vectors();
  test_encode_rules();
  test_decode_rules();
  test_depth_cap();
  test_roundtrip();
  test_alloc_failures();
  return done_testing();
}
