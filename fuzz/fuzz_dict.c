/* Fuzz target: reading route dictionaries from handshakes (dict.c).
 *
 * The input is parsed as JSON; the root and, when present, its "sys" member are each given to
 * pomelo_dict_from_handshake. A failure is one of the documented codes with nothing returned.
 * A success resolves every code to a route whose code resolves back to that route, agrees with
 * its own JSON texts (which parse strictly), reads back from those texts to the same texts, and
 * its routes, given to pomelo_dict_new, come out in JavaScript's sort order as checked by a
 * reference UTF-16 comparison. A failing allocation gives POMELO_ERR_NOMEM, and nothing leaks.
 * SPDX-License-Identifier: MIT
 */
#include <pomelo/dict.h>

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

static pomelo_json_doc *parse_strict(const char *s, size_t len) {
  pomelo_json_options o;
  pomelo_json_doc *doc = NULL;
  pomelo_json_options_default(&o);
  o.utf8 = POMELO_JSON_UTF8_STRICT;
  o.max_size = (size_t)64 << 20;
  CHECK(pomelo_json_parse(&doc, NULL, s, len, &o, NULL) == 0);
  return doc;
}

/* The next UTF-16 code unit of valid UTF-8 at *p (a pending low surrogate in *low). */
static uint32_t next_unit(const uint8_t **p, const uint8_t *end, uint32_t *low) {
  uint32_t cp;
  const uint8_t *s = *p;
  if (*low) {
    cp = *low;
    *low = 0;
    return cp;
  }
  if (s[0] < 0x80) {
    cp = s[0];
    s += 1;
  } else if (s[0] < 0xE0) {
    cp = (uint32_t)(s[0] & 0x1F) << 6 | (s[1] & 0x3Fu);
    s += 2;
  } else if (s[0] < 0xF0) {
    cp = (uint32_t)(s[0] & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3Fu);
    s += 3;
  } else {
    cp = (uint32_t)(s[0] & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 |
         (uint32_t)(s[2] & 0x3F) << 6 | (s[3] & 0x3Fu);
    s += 4;
  }
  CHECK(s <= end);
  *p = s;
  if (cp >= 0x10000) {
    cp -= 0x10000;
    *low = 0xDC00 + (cp & 0x3FF);
    return 0xD800 + (cp >> 10);
  }
  return cp;
}

/* Compares two UTF-8 strings as JavaScript compares strings: by UTF-16 code units. */
static int utf16_cmp(const char *a, size_t al, const char *b, size_t bl) {
  const uint8_t *x = (const uint8_t *)a, *xe = x + al, *y = (const uint8_t *)b, *ye = y + bl;
  uint32_t lx = 0, ly = 0;
  for (;;) {
    uint32_t ux, uy;
    int dx = x == xe && !lx, dy = y == ye && !ly;
    if (dx || dy) {
      return dx && dy ? 0 : dx ? -1 : 1;
    }
    ux = next_unit(&x, xe, &lx);
    uy = next_unit(&y, ye, &ly);
    if (ux != uy) {
      return ux < uy ? -1 : 1;
    }
  }
}

static void check_dict(const pomelo_dict *d) {
  pomelo_json_doc *jd, *jc, *back = NULL;
  const pomelo_json_value *r, *c;
  pomelo_json_writer *w = NULL;
  const char *json, *c2r, *ver, *s;
  size_t jl, cl, i, n, len, nroutes = 0;
  const char **routes;
  pomelo_dict *d2 = NULL;

  json = pomelo_dict_json(d, &jl);
  c2r = pomelo_dict_code_to_route_json(d, &cl);
  ver = pomelo_dict_version(d);
  CHECK(json && c2r && ver && strlen(json) == jl && strlen(c2r) == cl);
  jd = parse_strict(json, jl);
  jc = parse_strict(c2r, cl);
  r = pomelo_json_root(jd);
  c = pomelo_json_root(jc);
  CHECK(pomelo_json_typeof(r) == POMELO_JSON_OBJECT && pomelo_json_typeof(c) == POMELO_JSON_OBJECT);
  n = pomelo_dict_count(d);
  CHECK(pomelo_json_len(c) == n && n <= POMELO_DICT_MAX);

  /* code -> route -> code -> the same route, in ascending code order */
  for (i = 0; i < n; i++) {
    size_t rl = 0, kl;
    const char *k = pomelo_json_key_at(c, i, &kl);
    long code = atol(k);
    const char *want = pomelo_json_string(pomelo_json_at(c, i), &len);
    uint16_t back_code;
    CHECK(code >= 1 && code <= 65535);
    CHECK(i == 0 || code > atol(pomelo_json_key_at(c, i - 1, NULL)));
    s = pomelo_dict_route(d, (uint16_t)code, &rl);
    CHECK(s && rl == len && memcmp(s, want, len) == 0 && s[len] == '\0');
    back_code = pomelo_dict_code(d, s, rl);
    CHECK(back_code != 0);
    s = pomelo_dict_route(d, back_code, &kl);
    CHECK(s && kl == rl && memcmp(s, want, rl) == 0);
  }
  /* route -> code as the dict JSON says; every route once */
  routes = malloc((pomelo_json_len(r) + 1) * sizeof(*routes));
  CHECK(routes != NULL);
  for (i = 0; i < pomelo_json_len(r); i++) {
    int64_t v = 0;
    const char *k = pomelo_json_key_at(r, i, &len);
    CHECK(pomelo_json_int64(pomelo_json_at(r, i), &v) == 0);
    CHECK(pomelo_dict_code(d, k, len) == v && v >= 1);
    if (strlen(k) == len) {
      routes[nroutes++] = k;
    }
  }

  /* read back from its own texts: the same texts */
  CHECK(pomelo_json_writer_new(&w, NULL, 0) == 0);
  CHECK(pomelo_json_write_begin_object(w) == 0);
  CHECK(pomelo_json_write_key(w, "routeToCode", 11) == 0);
  CHECK(pomelo_json_write_raw(w, json, jl) == 0);
  CHECK(pomelo_json_write_key(w, "codeToRoute", 11) == 0);
  CHECK(pomelo_json_write_raw(w, c2r, cl) == 0);
  CHECK(pomelo_json_write_key(w, "dictVersion", 11) == 0);
  CHECK(pomelo_json_write_string(w, ver, strlen(ver)) == 0);
  CHECK(pomelo_json_write_end_object(w) == 0);
  s = pomelo_json_writer_data(w, &len);
  back = parse_strict(s, len);
  CHECK(pomelo_dict_from_handshake(&d2, NULL, pomelo_json_root(back)) == 0);
  CHECK(strcmp(pomelo_dict_json(d2, NULL), json) == 0);
  CHECK(strcmp(pomelo_dict_code_to_route_json(d2, NULL), c2r) == 0);
  CHECK(strcmp(pomelo_dict_version(d2), ver) == 0);
  pomelo_dict_del(d2);
  pomelo_json_doc_del(back);
  pomelo_json_writer_del(w);

  /* its routes (those without NUL bytes) as handler routes: sorted as JavaScript sorts */
  d2 = NULL;
  CHECK(pomelo_dict_new(&d2, NULL, routes, nroutes, NULL, 0) == 0);
  CHECK(pomelo_dict_count(d2) == nroutes);
  for (i = 1; i < nroutes; i++) {
    size_t l1, l2;
    const char *a = pomelo_dict_route(d2, (uint16_t)i, &l1);
    const char *b = pomelo_dict_route(d2, (uint16_t)(i + 1), &l2);
    CHECK(a && b && utf16_cmp(a, l1, b, l2) < 0);
  }
  pomelo_dict_del(d2);
  free(routes);
  pomelo_json_doc_del(jd);
  pomelo_json_doc_del(jc);
}

static int known_error(int rc) {
  return rc == POMELO_ERR_NOT_FOUND || rc == POMELO_ERR_JSON_TYPE ||
         rc == POMELO_ERR_ROUTE_TOO_LONG || rc == POMELO_ERR_LIMIT;
}

static void one(const pomelo_json_value *sys, size_t size, uint8_t pick) {
  test_alloc ta;
  pomelo_dict *d = (pomelo_dict *)&ta;
  int rc, rc2;
  test_alloc_init(&ta, 0);
  rc = pomelo_dict_from_handshake(&d, &ta.a, sys);
  if (rc) {
    CHECK(known_error(rc) && d == NULL);
  } else {
    check_dict(d);
    pomelo_dict_del(d);
  }
  CHECK(ta.live == 0);
  /* the memory follows the input */
  CHECK(ta.peak <= 4096 + 32 * size);

  /* one allocation failing */
  test_alloc_init(&ta, 1 + pick % 12);
  d = (pomelo_dict *)&ta;
  rc2 = pomelo_dict_from_handshake(&d, &ta.a, sys);
  CHECK(ta.failed ? rc2 == POMELO_ERR_NOMEM && d == NULL : rc2 == rc);
  if (rc2 == 0) {
    pomelo_dict_del(d);
  }
  CHECK(ta.live == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pomelo_json_doc *doc = NULL;
  const pomelo_json_value *root, *sys;
  uint8_t pick = size ? data[size - 1] : 0;
  if (pomelo_json_parse(&doc, NULL, (const char *)data, size, NULL, NULL) != 0) {
    return 0;
  }
  root = pomelo_json_root(doc);
  one(root, size, pick);
  sys = pomelo_json_get(root, "sys");
  if (sys) {
    one(sys, size, pick);
  }
  pomelo_json_doc_del(doc);
  return 0;
}
