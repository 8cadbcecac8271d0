/* The route dictionary: vectors from the real server's algorithm (JavaScript key order, UTF-16
 * sort, duplicates), lookups, reading handshakes in both shapes with every error, limits,
 * memory bounds and failing-allocator loops; and MD5 (RFC 1321 appendix A.5), which the
 * dictionary version is made from.
 * SPDX-License-Identifier: MIT
 */
#include <pomelo/dict.h>

#include <stdio.h>
#include <stdlib.h>

#include "tap.h"
#include "testutil.h"
#include "transport/hash.h"

#define N_(a) (sizeof(a) / sizeof((a)[0]))

static size_t count_list(const char *const *l) {
  size_t n = 0;
  while (l[n]) {
    n++;
  }
  return n;
}

static pomelo_json_doc *parse(const char *text) {
  pomelo_json_doc *doc = NULL;
  pomelo_json_options o;
  pomelo_json_options_default(&o);
  o.max_size = (size_t)64 << 20;
  if (pomelo_json_parse(&doc, NULL, text, strlen(text), &o, NULL) != 0) {
    return NULL;
  }
  return doc;
}

/* Reads `sys` (JSON text) into a dictionary; returns the error code. */
static int from_text(pomelo_dict **d, const pomelo_allocator *a, const char *sys) {
  pomelo_json_doc *doc = parse(sys);
  int rc;
  if (!doc) {
    *d = NULL;
    return -9999;
  }
  rc = pomelo_dict_from_handshake(d, a, pomelo_json_root(doc));
  pomelo_json_doc_del(doc);
  return rc;
}

/* The concatenation of the strings up to a NULL (malloc'ed). */
static char *concat(const char *first, ...) {
  va_list ap;
  size_t n = 1;
  const char *p;
  char *s;
  va_start(ap, first);
  for (p = first; p; p = va_arg(ap, const char *)) {
    n += strlen(p);
  }
  va_end(ap);
  s = malloc(n);
  s[0] = '\0';
  va_start(ap, first);
  for (p = first; p; p = va_arg(ap, const char *)) {
    strcat(s, p);
  }
  va_end(ap);
  return s;
}

/* The sys object of libpomelo2's shape for a vector. */
#define PAIR_SYS(v)                                                                                \
  concat("{\"routeToCode\":", (v)->json, ",\"codeToRoute\":", (v)->c2r, ",\"dictVersion\":\"",     \
         (v)->version, "\"}", (const char *)NULL)

/* Every member of the dictionary JSON and of codeToRoute resolves as the texts say. */
static int lookups_agree(const pomelo_dict *d) {
  pomelo_json_doc *j = parse(pomelo_dict_json(d, NULL));
  pomelo_json_doc *c = parse(pomelo_dict_code_to_route_json(d, NULL));
  const pomelo_json_value *r;
  size_t i, good = j && c;
  if (good) {
    r = pomelo_json_root(j);
    for (i = 0; good && i < pomelo_json_len(r); i++) {
      size_t len;
      int64_t code = 0;
      const char *k = pomelo_json_key_at(r, i, &len);
      good = pomelo_json_int64(pomelo_json_at(r, i), &code) == 0 &&
             pomelo_dict_code(d, k, len) == code;
    }
    r = pomelo_json_root(c);
    good = good && pomelo_json_len(r) == pomelo_dict_count(d);
    for (i = 0; good && i < pomelo_json_len(r); i++) {
      size_t len, rlen = 0;
      const char *route = pomelo_json_string(pomelo_json_at(r, i), &len);
      const char *got = pomelo_dict_route(d, (uint16_t)atoi(pomelo_json_key_at(r, i, NULL)), &rlen);
      good = got && rlen == len && memcmp(got, route, len) == 0 && got[len] == '\0' &&
             pomelo_dict_code(d, got, rlen) != 0;
    }
  }
  pomelo_json_doc_del(j);
  pomelo_json_doc_del(c);
  return (int)good;
}

/* ---------------------------------------------------------------------------------------------
 * MD5 (RFC 1321 appendix A.5)
 * ------------------------------------------------------------------------------------------- */

static void hex16(const uint8_t d[16], char out[33]) {
  static const char h[] = "0123456789abcdef";
  int i;
  for (i = 0; i < 16; i++) {
    out[2 * i] = h[d[i] >> 4];
    out[2 * i + 1] = h[d[i] & 15];
  }
  out[32] = '\0';
}

static void test_md5(void) {
  static const struct {
    const char *in, *md5;
  } v[] = {
      {"", "d41d8cd98f00b204e9800998ecf8427e"},
      {"a", "0cc175b9c0f1b6a831c399e269772661"},
      {"abc", "900150983cd24fb0d6963f7d28e17f72"},
      {"message digest", "f96b697d7cb7938d525a2f31aaf161d0"},
      {"abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"},
      {"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
       "d174ab98d277d9f5a5611c2c9f419d9f"},
      {"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
       "57edf4a22be3c955ac49da2e2107b67a"},
  };
  size_t i;
  for (i = 0; i < N_(v); i++) {
    size_t len = strlen(v[i].in), split, bad = 0;
    uint8_t d[16];
    char hex[33];
    pm_md5 s;
    pm_md5_init(&s);
    pm_md5_update(&s, v[i].in, len);
    pm_md5_final(&s, d);
    hex16(d, hex);
    is_str(hex, v[i].md5, "md5(\"%.20s%s\")", v[i].in, len > 20 ? "..." : "");
    /* the same digest however the input is split */
    for (split = 0; split <= len; split++) {
      pm_md5_init(&s);
      pm_md5_update(&s, v[i].in, split);
      pm_md5_update(&s, v[i].in, 0);
      pm_md5_update(&s, v[i].in + split, len - split);
      pm_md5_final(&s, d);
      hex16(d, hex);
      bad += strcmp(hex, v[i].md5) != 0;
    }
    ok(bad == 0, "md5 of vector %zu split at each of %zu points", i + 1, len + 1);
  }
  {
    /* lengths around the 56- and 64-byte padding edges, against one-byte-at-a-time updates */
    uint8_t buf[200], d1[16], d2[16];
    size_t n, k, bad = 0;
    for (n = 0; n < sizeof buf; n++) {
      buf[n] = (uint8_t)(n * 37 + 11);
    }
    for (n = 0; n <= sizeof buf; n++) {
      pm_md5 s;
      pm_md5_init(&s);
      pm_md5_update(&s, buf, n);
      pm_md5_final(&s, d1);
      pm_md5_init(&s);
      for (k = 0; k < n; k++) {
        pm_md5_update(&s, buf + k, 1);
      }
      pm_md5_final(&s, d2);
      bad += memcmp(d1, d2, 16) != 0;
    }
    ok(bad == 0, "md5: whole and byte-wise updates agree for lengths 0..200");
  }
  {
    char b64[25];
    is_int(pm_md5_base64("", 0, b64), 24, "md5 base64 is 24 characters");
    is_str(b64, "1B2M2Y8AsgTpgAmY7PhCfg==", "base64(md5(\"\"))");
    pm_md5_base64("{}", 2, b64);
    is_str(b64, "mZFLkyvTelC5g8XnyQrpOw==", "base64(md5(\"{}\")), the version of an empty dict");
  }
}

/* ---------------------------------------------------------------------------------------------
 * Vectors from the real algorithm
 *
 * Produced by node running pomelo 2.2.7's lib/components/dictionary.js itself (unmodified,
 * from tests/peers/pomelo-server/node_modules/pomelo) on handler files and a user dictionary
 * made from each list: see the script at the end of this file. Regenerate with
 *   cd tests/peers/pomelo-server && npm ci
 *   node dictvec.js node_modules/pomelo > vectors.c
 * and paste its output here. The handler routes are given in any order (the component sorts
 * them); a duplicate handler route counts once, which is what the real loader does with a
 * repeated handler key.
 * ------------------------------------------------------------------------------------------- */

typedef struct dict_vector {
  const char *name;
  const char *routes[24];
  const char *extra[24];
  const char *json;
  const char *c2r;
  const char *version;
} dict_vector;

static const dict_vector vectors[] = {
    {"chatofpomelo",
     {"connector.entryHandler.enter", "gate.gateHandler.queryEntry", "chat.chatHandler.send", NULL},
     {NULL},
     "{\"chat.chatHandler.send\":1,\"connector.entryHandler.enter\":2,\"gate.gateHandler."
     "queryEntry\":3}",
     "{\"1\":\"chat.chatHandler.send\",\"2\":\"connector.entryHandler.enter\",\"3\":\"gate."
     "gateHandler.queryEntry\"}",
     "s2r1qfKDrbhWCkA6uf+PTA=="},
    {"empty", {NULL}, {NULL}, "{}", "{}", "mZFLkyvTelC5g8XnyQrpOw=="},
    {"extra only",
     {NULL},
     {"onChat", "onAdd", "onLeave", NULL},
     "{\"onChat\":1,\"onAdd\":2,\"onLeave\":3}",
     "{\"1\":\"onChat\",\"2\":\"onAdd\",\"3\":\"onLeave\"}",
     "6/qmnW7BMRvpM6YhnVjArw=="},
    {"ascii order",
     {"a.b.c", "A.b.c", "a.B.c", "a.b.C", "a.b.c_", "a.b.c0", "a.b.", "a.b.c.d", "a.b.c-", "a.b.~",
      "a.b. ", "Z.z.z", "_.x.y", "0.x.y", "9.x.y", NULL},
     {NULL},
     "{\"0.x.y\":1,\"9.x.y\":2,\"A.b.c\":3,\"Z.z.z\":4,\"_.x.y\":5,\"a.B.c\":6,\"a.b.\":7,\"a.b. "
     "\":8,\"a.b.C\":9,\"a.b.c\":10,\"a.b.c-\":11,\"a.b.c.d\":12,\"a.b.c0\":13,\"a.b.c_\":14,\"a.b."
     "~\":15}",
     "{\"1\":\"0.x.y\",\"2\":\"9.x.y\",\"3\":\"A.b.c\",\"4\":\"Z.z.z\",\"5\":\"_.x.y\",\"6\":\"a.B."
     "c\",\"7\":\"a.b.\",\"8\":\"a.b. "
     "\",\"9\":\"a.b.C\",\"10\":\"a.b.c\",\"11\":\"a.b.c-\",\"12\":\"a.b.c.d\",\"13\":\"a.b.c0\","
     "\"14\":\"a.b.c_\",\"15\":\"a.b.~\"}",
     "aybezC7rzZzYb1GEv9AH3g=="},
    {"chat with pushes",
     {"connector.entryHandler.enter", "gate.gateHandler.queryEntry", "chat.chatHandler.send", NULL},
     {"onChat", "onAdd", "onLeave", NULL},
     "{\"chat.chatHandler.send\":1,\"connector.entryHandler.enter\":2,\"gate.gateHandler."
     "queryEntry\":3,\"onChat\":4,\"onAdd\":5,\"onLeave\":6}",
     "{\"1\":\"chat.chatHandler.send\",\"2\":\"connector.entryHandler.enter\",\"3\":\"gate."
     "gateHandler.queryEntry\",\"4\":\"onChat\",\"5\":\"onAdd\",\"6\":\"onLeave\"}",
     "2aLbouXtKQ/URxNfQ1DeAg=="},
    {"duplicates in extra",
     {"connector.entryHandler.enter", "gate.gateHandler.queryEntry", "chat.chatHandler.send", NULL},
     {"onChat", "connector.entryHandler.enter", "onChat", "onAdd", "onChat", NULL},
     "{\"chat.chatHandler.send\":1,\"connector.entryHandler.enter\":5,\"gate.gateHandler."
     "queryEntry\":3,\"onChat\":8,\"onAdd\":7}",
     "{\"1\":\"chat.chatHandler.send\",\"2\":\"connector.entryHandler.enter\",\"3\":\"gate."
     "gateHandler.queryEntry\",\"4\":\"onChat\",\"5\":\"connector.entryHandler.enter\",\"6\":"
     "\"onChat\",\"7\":\"onAdd\",\"8\":\"onChat\"}",
     "Z3gj1HxHchG0iwncufDqjg=="},
    {"integer-like keys",
     {"a.b.c", "x.y.z", NULL},
     {"5", "onChat", "0", "10", "4294967294", "4294967295", "01", "-1", "1.5", "007", " 1", "1e3",
      "99999999999", "2", "5", NULL},
     "{\"0\":5,\"2\":16,\"5\":17,\"10\":6,\"4294967294\":7,\"a.b.c\":1,\"x.y.z\":2,\"onChat\":4,"
     "\"4294967295\":8,\"01\":9,\"-1\":10,\"1.5\":11,\"007\":12,\" "
     "1\":13,\"1e3\":14,\"99999999999\":15}",
     "{\"1\":\"a.b.c\",\"2\":\"x.y.z\",\"3\":\"5\",\"4\":\"onChat\",\"5\":\"0\",\"6\":\"10\",\"7\":"
     "\"4294967294\",\"8\":\"4294967295\",\"9\":\"01\",\"10\":\"-1\",\"11\":\"1.5\",\"12\":\"007\","
     "\"13\":\" 1\",\"14\":\"1e3\",\"15\":\"99999999999\",\"16\":\"2\",\"17\":\"5\"}",
     "9pIXzgelWJh/3iF+RUOAgA=="},
    {"non-ASCII",
     {"x.y.\303\251", "x.y.e", "x.y.\344\270\255", "x.y.\356\200\200", "x.y.\357\277\277",
      "x.y.\357\277\275", "x.y.\360\237\230\200", "x.y.\360\220\200\200", "x.y.\364\217\277\277",
      "x.y.\355\237\277", "x.y.\357\275\241", "x.y.\177", "x.y.\302\200", "\303\251.a.b",
      "\360\237\230\200.a.b", "\356\274\200.a.b", "x.y.\360\237\230\200\303\251",
      "x.y.\356\200\200a", NULL},
     {"\360\237\230\201", "\357\244\200", "\303\251t\303\251", "x.y.\356\200\200", NULL},
     "{\"x.y.e\":1,\"x.y.\177\":2,\"x.y.\302\200\":3,\"x.y.\303\251\":4,\"x.y.\344\270\255\":5,\"x."
     "y.\355\237\277\":6,\"x.y.\360\220\200\200\":7,\"x.y.\360\237\230\200\":8,\"x.y."
     "\360\237\230\200\303\251\":9,\"x.y.\364\217\277\277\":10,\"x.y.\356\200\200\":22,\"x.y."
     "\356\200\200a\":12,\"x.y.\357\275\241\":13,\"x.y.\357\277\275\":14,\"x.y.\357\277\277\":15,"
     "\"\303\251.a.b\":16,\"\360\237\230\200.a.b\":17,\"\356\274\200.a.b\":18,\"\360\237\230\201\":"
     "19,\"\357\244\200\":20,\"\303\251t\303\251\":21}",
     "{\"1\":\"x.y.e\",\"2\":\"x.y.\177\",\"3\":\"x.y.\302\200\",\"4\":\"x.y.\303\251\",\"5\":\"x."
     "y.\344\270\255\",\"6\":\"x.y.\355\237\277\",\"7\":\"x.y.\360\220\200\200\",\"8\":\"x.y."
     "\360\237\230\200\",\"9\":\"x.y.\360\237\230\200\303\251\",\"10\":\"x.y.\364\217\277\277\","
     "\"11\":\"x.y.\356\200\200\",\"12\":\"x.y.\356\200\200a\",\"13\":\"x.y.\357\275\241\",\"14\":"
     "\"x.y.\357\277\275\",\"15\":\"x.y.\357\277\277\",\"16\":\"\303\251.a.b\",\"17\":"
     "\"\360\237\230\200.a.b\",\"18\":\"\356\274\200.a.b\",\"19\":\"\360\237\230\201\",\"20\":"
     "\"\357\244\200\",\"21\":\"\303\251t\303\251\",\"22\":\"x.y.\356\200\200\"}",
     "iRQ083CFgrskGwZI2i/Mvg=="},
    {"escapes",
     {"x.y.\011", "x.y.\"", "x.y.\\", "x.y.\342\200\250", "x.y.\001", "x.y./", NULL},
     {"\012", "\"q\"", "\037", "\342\200\251", NULL},
     "{\"x.y.\\u0001\":1,\"x.y.\\t\":2,\"x.y.\\\"\":3,\"x.y./"
     "\":4,\"x.y.\\\\\":5,\"x.y.\342\200\250\":6,\"\\n\":7,\"\\\"q\\\"\":8,\"\\u001f\":9,"
     "\"\342\200\251\":10}",
     "{\"1\":\"x.y.\\u0001\",\"2\":\"x.y.\\t\",\"3\":\"x.y.\\\"\",\"4\":\"x.y./"
     "\",\"5\":\"x.y.\\\\\",\"6\":\"x.y.\342\200\250\",\"7\":\"\\n\",\"8\":\"\\\"q\\\"\",\"9\":"
     "\"\\u001f\",\"10\":\"\342\200\251\"}",
     "2uaLs5YRsev/2Tmvl9y+Zg=="},
    {"extra repeats",
     {"a.b.c", NULL},
     {"p", "p", "p", "7", "a.b.c", "7", NULL},
     "{\"7\":7,\"a.b.c\":6,\"p\":4}",
     "{\"1\":\"a.b.c\",\"2\":\"p\",\"3\":\"p\",\"4\":\"p\",\"5\":\"7\",\"6\":\"a.b.c\",\"7\":"
     "\"7\"}",
     "4Xba7SmiOkmfqmDcO5xKuA=="},
    {"duplicate handler routes",
     {"b.b.b", "a.a.a", "b.b.b", "c.c.c", "a.a.a", NULL},
     {"a.a.a", NULL},
     "{\"a.a.a\":4,\"b.b.b\":2,\"c.c.c\":3}",
     "{\"1\":\"a.a.a\",\"2\":\"b.b.b\",\"3\":\"c.c.c\",\"4\":\"a.a.a\"}",
     "jUh/JnmjkqeDermXeYnCyw=="},
    {"empty route",
     {NULL},
     {"", "a", "", NULL},
     "{\"\":3,\"a\":2}",
     "{\"1\":\"\",\"2\":\"a\",\"3\":\"\"}",
     "qJVLUrHlgh/ENDoKJlASnw=="},
};

/* The version of big_routes() and big_extra(), from the same script. */
static const char big_version[] = "FqyfvYqu5oPcOQ0eDqHinQ==";

static const dict_vector *find_vector(const char *name) {
  size_t i;
  for (i = 0; i < N_(vectors); i++) {
    if (strcmp(vectors[i].name, name) == 0) {
      return &vectors[i];
    }
  }
  return NULL;
}

static pomelo_dict *build(const dict_vector *v, const pomelo_allocator *a, int *rc) {
  pomelo_dict *d = NULL;
  size_t n = count_list(v->routes), m = count_list(v->extra);
  *rc = pomelo_dict_new(&d, a, n ? v->routes : NULL, n, m ? v->extra : NULL, m);
  return d;
}

/* The routes in reverse, and rotated by one: the dictionary must not depend on their order. */
static int same_when_reordered(const dict_vector *v) {
  const char *r[24];
  size_t n = count_list(v->routes), i, k;
  int good = 1;
  for (k = 0; k < 2 && n > 1; k++) {
    pomelo_dict *d = NULL;
    for (i = 0; i < n; i++) {
      r[i] = k == 0 ? v->routes[n - 1 - i] : v->routes[(i + 1) % n];
    }
    good = good && pomelo_dict_new(&d, NULL, r, n, v->extra, count_list(v->extra)) == 0 &&
           strcmp(pomelo_dict_json(d, NULL), v->json) == 0 &&
           strcmp(pomelo_dict_code_to_route_json(d, NULL), v->c2r) == 0;
    pomelo_dict_del(d);
  }
  return good;
}

static void test_vectors(void) {
  size_t i;
  for (i = 0; i < N_(vectors); i++) {
    const dict_vector *v = &vectors[i];
    size_t len = 0;
    int rc;
    pomelo_dict *d = build(v, NULL, &rc), *h = NULL;
    char *sys;
    is_int(rc, 0, "%s: built", v->name);
    if (rc) {
      continue;
    }
    is_str(pomelo_dict_json(d, &len), v->json, "%s: dict JSON as node's", v->name);
    is_int(len, strlen(v->json), "%s: its length", v->name);
    is_str(pomelo_dict_code_to_route_json(d, &len), v->c2r, "%s: codeToRoute as node's", v->name);
    is_int(len, strlen(v->c2r), "%s: its length", v->name);
    is_str(pomelo_dict_version(d), v->version, "%s: version as node's", v->name);
    ok(lookups_agree(d), "%s: lookups agree with the JSON texts", v->name);
    ok(same_when_reordered(v), "%s: the same from the routes in other orders", v->name);

    /* read back as libpomelo2 reads it */
    sys = PAIR_SYS(v);
    rc = from_text(&h, NULL, sys);
    is_int(rc, 0, "%s: read back from routeToCode + codeToRoute", v->name);
    if (!rc) {
      is_str(pomelo_dict_json(h, NULL), v->json, "%s: same dict JSON", v->name);
      is_str(pomelo_dict_code_to_route_json(h, NULL), v->c2r, "%s: same codeToRoute", v->name);
      is_str(pomelo_dict_version(h), v->version, "%s: same version", v->name);
      is_int(pomelo_dict_count(h), pomelo_dict_count(d), "%s: same count", v->name);
      ok(lookups_agree(h), "%s: its lookups agree", v->name);
    }
    pomelo_dict_del(h);
    free(sys);

    /* and as the JS client reads it: the dict alone (codeToRoute is then its inverse) */
    sys = concat("{\"dict\":", v->json, "}", (const char *)NULL);
    rc = from_text(&h, NULL, sys);
    is_int(rc, 0, "%s: read back from dict alone", v->name);
    if (!rc) {
      is_str(pomelo_dict_json(h, NULL), v->json, "%s: same dict JSON", v->name);
      is_str(pomelo_dict_version(h), "", "%s: no version", v->name);
      ok(lookups_agree(h), "%s: its lookups agree", v->name);
    }
    pomelo_dict_del(h);
    free(sys);
    pomelo_dict_del(d);
  }
}

/* The big list of the script: 1000 handler routes over 7 server types and 13 handlers, and 200
 * extra routes that repeat each other and include integer-like ones. */
static char **big_routes(size_t *n) {
  char **r = malloc(1000 * sizeof(*r));
  size_t i;
  for (i = 0; i < 1000; i++) {
    r[i] = malloc(32);
    snprintf(r[i], 32, "s%zu.h%zu.m%zu", i % 7, i % 13, (i * 7919) % 1000);
  }
  *n = 1000;
  return r;
}

static char **big_extra(size_t *m) {
  char **r = malloc(200 * sizeof(*r));
  size_t i;
  for (i = 0; i < 200; i++) {
    r[i] = malloc(16);
    if (i % 3) {
      snprintf(r[i], 16, "push%zu", i % 50);
    } else {
      snprintf(r[i], 16, "%zu", i);
    }
  }
  *m = 200;
  return r;
}

static void free_list(char **l, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    free(l[i]);
  }
  free(l);
}

static void test_big(void) {
  size_t n, m, i;
  char **r = big_routes(&n), **x = big_extra(&m), **twice;
  pomelo_dict *d = NULL, *d2 = NULL;
  is_int(pomelo_dict_new(&d, NULL, (const char *const *)r, n, (const char *const *)x, m), 0,
         "big: built");
  is_str(pomelo_dict_version(d), big_version, "big: version as node's");
  is_int(pomelo_dict_count(d), 1200, "big: 1200 codes");
  ok(lookups_agree(d), "big: lookups agree");
  /* each handler route twice, in another order: the same dictionary */
  twice = malloc(2 * n * sizeof(*twice));
  for (i = 0; i < n; i++) {
    twice[i] = r[n - 1 - i];
    twice[n + i] = r[(i * 37) % n];
  }
  is_int(pomelo_dict_new(&d2, NULL, (const char *const *)twice, 2 * n, (const char *const *)x, m),
         0, "big twice: built");
  is_str(pomelo_dict_json(d2, NULL), pomelo_dict_json(d, NULL), "big twice: the same JSON");
  is_str(pomelo_dict_version(d2), big_version, "big twice: the same version");
  free(twice);
  pomelo_dict_del(d);
  pomelo_dict_del(d2);
  free_list(r, n);
  free_list(x, m);
}

/* ---------------------------------------------------------------------------------------------
 * pomelo_dict_new: rules, arguments, lookups
 * ------------------------------------------------------------------------------------------- */

static void test_new(void) {
  const dict_vector *chat = find_vector("duplicates in extra");
  const char *r[] = {"b.b.b", "a.a.a"};
  const char *bad_utf8[] = {"a.b.\xC3"};
  const char *null_route[] = {"a.b.c", NULL};
  pomelo_dict *d = (pomelo_dict *)&r, *e = NULL;
  size_t len = 99;
  const char *s;
  int rc;

  is_int(pomelo_dict_new(NULL, NULL, r, 2, NULL, 0), POMELO_ERR_INVALID_ARG, "out NULL");
  is_int(pomelo_dict_new(&d, NULL, NULL, 1, NULL, 0), POMELO_ERR_INVALID_ARG, "routes NULL, n 1");
  ok(d == NULL, "*out is NULL after an error");
  is_int(pomelo_dict_new(&d, NULL, r, 2, NULL, 3), POMELO_ERR_INVALID_ARG, "extra NULL, m 3");
  is_int(pomelo_dict_new(&d, NULL, null_route, 2, NULL, 0), POMELO_ERR_INVALID_ARG, "a NULL route");
  is_int(pomelo_dict_new(&d, NULL, r, 2, null_route, 2), POMELO_ERR_INVALID_ARG,
         "a NULL extra route");
  is_int(pomelo_dict_new(&d, NULL, bad_utf8, 1, NULL, 0), POMELO_ERR_INVALID_ARG,
         "a route that is not UTF-8");
  is_int(pomelo_dict_new(&d, NULL, NULL, 0, bad_utf8, 1), POMELO_ERR_INVALID_ARG,
         "an extra route that is not UTF-8");
  is_int(pomelo_dict_new(&d, NULL, NULL, 0, NULL, 0), 0, "no routes at all");
  is_str(pomelo_dict_json(d, &len), "{}", "empty: {}");
  is_int(len, 2, "empty: length 2");
  is_str(pomelo_dict_code_to_route_json(d, NULL), "{}", "empty: codeToRoute {}");
  is_int(pomelo_dict_count(d), 0, "empty: count 0");
  is_int(pomelo_dict_code(d, "", 0), 0, "empty: no code for \"\"");
  ok(pomelo_dict_route(d, 1, NULL) == NULL, "empty: no route for 1");
  pomelo_dict_del(d);

  rc = pomelo_dict_new(&d, NULL, r, 2, r, 1);
  is_int(rc, 0, "an extra route that is a handler route");
  is_str(pomelo_dict_json(d, NULL), "{\"a.a.a\":1,\"b.b.b\":3}", "it keeps its place");
  is_int(pomelo_dict_code(d, "b.b.b", 5), 3, "route -> the new code");
  is_str(pomelo_dict_route(d, 2, NULL), "b.b.b", "the old code still resolves");
  is_str(pomelo_dict_route(d, 3, NULL), "b.b.b", "and the new one");
  pomelo_dict_del(d);

  /* lookups on the chat vector with repeated pushes */
  d = build(chat, NULL, &rc);
  is_int(rc, 0, "chat with repeats: built");
  is_int(pomelo_dict_count(d), 8, "8 codes");
  is_int(pomelo_dict_code(d, "onChat", 6), 8, "onChat -> its last code");
  is_int(pomelo_dict_code(d, "onChatX", 6), 8, "the length is the route's, not strlen");
  is_int(pomelo_dict_code(d, "onChat", 5), 0, "a prefix has no code");
  is_int(pomelo_dict_code(d, "nope", 4), 0, "unknown route -> 0");
  is_int(pomelo_dict_code(d, NULL, 0), 0, "NULL, 0 -> 0");
  is_int(pomelo_dict_code(d, NULL, 3), 0, "NULL, 3 -> 0");
  is_int(pomelo_dict_code(NULL, "onChat", 6), 0, "NULL dict -> 0");
  for (rc = 4; rc <= 8; rc += 2) {
    is_str(pomelo_dict_route(d, (uint16_t)rc, NULL), "onChat", "code %d -> onChat", rc);
  }
  s = pomelo_dict_route(d, 5, &len);
  is_str(s, "connector.entryHandler.enter", "code 5 -> the overwritten route");
  is_int(len, 28, "with its length");
  s = pomelo_dict_route(d, 0, &len);
  ok(s == NULL && len == 0, "code 0 never resolves");
  ok(pomelo_dict_route(d, 9, NULL) == NULL, "code 9 is unknown");
  ok(pomelo_dict_route(d, 65535, NULL) == NULL, "code 65535 is unknown");
  ok(pomelo_dict_route(NULL, 1, &len) == NULL && len == 0, "NULL dict -> NULL");
  is_int(pomelo_dict_count(NULL), 0, "count of NULL");
  pomelo_dict_del(NULL);
  ok(1, "pomelo_dict_del(NULL)");
  pomelo_dict_del(d);

  /* the empty route is a route */
  d = build(find_vector("empty route"), NULL, &rc);
  is_int(pomelo_dict_code(d, "", 0), 3, "\"\" -> 3");
  is_int(pomelo_dict_code(d, NULL, 0), 3, "NULL, 0 is \"\" too");
  is_str(pomelo_dict_route(d, 1, &len), "", "1 -> \"\"");
  pomelo_dict_del(d);

  /* the dictionary outlives nothing it was made from */
  {
    char a1[] = "x.y.z", a2[] = "onPush";
    const char *rr[] = {a1}, *xx[] = {a2};
    rc = pomelo_dict_new(&e, NULL, rr, 1, xx, 1);
    memset(a1, 'q', 5);
    memset(a2, 'q', 6);
    is_str(pomelo_dict_json(e, NULL), "{\"x.y.z\":1,\"onPush\":2}", "routes are copied");
    is_int(pomelo_dict_code(e, "x.y.z", 5), 1, "and found after the input changed");
    pomelo_dict_del(e);
  }
}

/* Route lengths and counts. */
static void test_limits(void) {
  char r255[256], r256[257];
  const char *one[1];
  char **many;
  size_t i, bad = 0;
  pomelo_dict *d = NULL;

  memset(r255, 'r', 255);
  r255[255] = '\0';
  memset(r256, 'r', 256);
  r256[256] = '\0';
  one[0] = r255;
  is_int(pomelo_dict_new(&d, NULL, one, 1, NULL, 0), 0, "a 255-byte route");
  is_int(pomelo_dict_code(d, r255, 255), 1, "is found");
  is_int(pomelo_dict_code(d, r256, 256), 0, "a 256-byte lookup is not");
  pomelo_dict_del(d);
  one[0] = r256;
  is_int(pomelo_dict_new(&d, NULL, one, 1, NULL, 0), POMELO_ERR_ROUTE_TOO_LONG, "a 256-byte route");
  is_int(pomelo_dict_new(&d, NULL, NULL, 0, one, 1), POMELO_ERR_ROUTE_TOO_LONG,
         "a 256-byte extra route");

  many = malloc(65537 * sizeof(*many));
  for (i = 0; i < 65537; i++) {
    many[i] = malloc(16);
    snprintf(many[i], 16, "r.h.%05zu", i);
  }
  is_int(pomelo_dict_new(&d, NULL, (const char *const *)many, 65535, NULL, 0), 0,
         "65535 handler routes");
  is_int(pomelo_dict_count(d), 65535, "65535 codes");
  for (i = 0; i < 65535; i++) {
    size_t len = 0;
    const char *s = pomelo_dict_route(d, (uint16_t)(i + 1), &len);
    bad += !s || strcmp(s, many[i]) != 0 || pomelo_dict_code(d, many[i], len) != i + 1;
  }
  ok(bad == 0, "every code -> route -> code");
  pomelo_dict_del(d);
  is_int(pomelo_dict_new(&d, NULL, (const char *const *)many, 65536, NULL, 0), POMELO_ERR_LIMIT,
         "65536 handler routes");
  is_int(pomelo_dict_new(&d, NULL, NULL, 0, (const char *const *)many, 65536), POMELO_ERR_LIMIT,
         "65536 extra routes");
  is_int(pomelo_dict_new(&d, NULL, NULL, 0, (const char *const *)many, 65535), 0,
         "65535 extra routes");
  pomelo_dict_del(d);
  is_int(pomelo_dict_new(&d, NULL, (const char *const *)many, 65000,
                         (const char *const *)many + 65000, 536),
         POMELO_ERR_LIMIT, "65000 + 536");
  is_int(pomelo_dict_new(&d, NULL, (const char *const *)many, 65000,
                         (const char *const *)many + 65000, 535),
         0, "65000 + 535");
  pomelo_dict_del(d);
  /* duplicates count once: 65536 handler routes of which two are the same */
  free(many[65535]);
  many[65535] = malloc(16);
  memcpy(many[65535], many[7], strlen(many[7]) + 1);
  is_int(pomelo_dict_new(&d, NULL, (const char *const *)many, 65536, NULL, 0), 0,
         "65536 handler routes with one repeated: 65535 codes");
  is_int(pomelo_dict_count(d), 65535, "count 65535");
  pomelo_dict_del(d);
  /* extra routes always take a code, even repeated */
  is_int(pomelo_dict_new(&d, NULL, (const char *const *)many, 65535, (const char *const *)many, 1),
         POMELO_ERR_LIMIT, "65535 handler routes and one repeated extra");
  for (i = 0; i < 65537; i++) {
    free(many[i]);
  }
  free(many);
}

/* ---------------------------------------------------------------------------------------------
 * pomelo_dict_from_handshake
 * ------------------------------------------------------------------------------------------- */

static void test_handshake_shapes(void) {
  /* the body pomelo 2.2.7's chatofpomelo connector sends (spec 4.4) */
  static const char body[] =
      "{\"code\":200,\"sys\":{\"heartbeat\":3,\"dict\":{\"chat.chatHandler.send\":1,\"connector."
      "entryHandler.enter\":2,\"gate.gateHandler.queryEntry\":3},\"routeToCode\":{\"chat."
      "chatHandler.send\":1,\"connector.entryHandler.enter\":2,\"gate.gateHandler.queryEntry\":3},"
      "\"codeToRoute\":{\"1\":\"chat.chatHandler.send\",\"2\":\"connector.entryHandler.enter\","
      "\"3\":\"gate.gateHandler.queryEntry\"},\"dictVersion\":\"s2r1qfKDrbhWCkA6uf+PTA==\","
      "\"useDict\":true,\"useProto\":true}}";
  pomelo_json_doc *doc = parse(body);
  pomelo_dict *d = NULL;
  size_t len = 0;
  int rc;

  rc = pomelo_dict_from_handshake(&d, NULL, pomelo_json_get(pomelo_json_root(doc), "sys"));
  is_int(rc, 0, "the chatofpomelo handshake");
  is_str(pomelo_dict_version(d), "s2r1qfKDrbhWCkA6uf+PTA==", "its version");
  is_str(pomelo_dict_json(d, NULL), find_vector("chatofpomelo")->json, "its dict");
  is_int(pomelo_dict_code(d, "gate.gateHandler.queryEntry", 27), 3, "a lookup");
  pomelo_dict_del(d);
  pomelo_json_doc_del(doc);

  /* the live duplicate (spec 3): connector.entryHandler.enter became 15, both codes resolve */
  rc = from_text(&d, NULL,
                 "{\"routeToCode\":{\"a.b.c\":1,\"connector.entryHandler.enter\":15,\"x\":14},"
                 "\"codeToRoute\":{\"2\":\"connector.entryHandler.enter\",\"1\":\"a.b.c\","
                 "\"14\":\"x\",\"15\":\"connector.entryHandler.enter\"},\"dictVersion\":\"v1\"}");
  is_int(rc, 0, "two codes for one route, codes not 1..n");
  is_int(pomelo_dict_count(d), 4, "4 codes");
  is_int(pomelo_dict_code(d, "connector.entryHandler.enter", 28), 15, "route -> 15");
  is_str(pomelo_dict_route(d, 2, NULL), "connector.entryHandler.enter", "2 -> route");
  is_str(pomelo_dict_route(d, 15, &len), "connector.entryHandler.enter", "15 -> route");
  ok(pomelo_dict_route(d, 3, NULL) == NULL && pomelo_dict_route(d, 13, NULL) == NULL &&
         pomelo_dict_route(d, 16, NULL) == NULL,
     "codes between and after are unknown");
  is_str(pomelo_dict_code_to_route_json(d, NULL),
         "{\"1\":\"a.b.c\",\"2\":\"connector.entryHandler.enter\",\"14\":\"x\","
         "\"15\":\"connector.entryHandler.enter\"}",
         "codeToRoute in code order");
  is_str(pomelo_dict_json(d, NULL), "{\"a.b.c\":1,\"connector.entryHandler.enter\":15,\"x\":14}",
         "the dict in its order");
  is_str(pomelo_dict_version(d), "v1", "the version");
  ok(lookups_agree(d), "lookups agree");
  pomelo_dict_del(d);

  /* sparse codes up to 65535 in the dict-alone shape */
  rc = from_text(&d, NULL, "{\"dict\":{\"a\":65535,\"b\":7,\"c\":2.0,\"d\":3e1},\"x\":1}");
  is_int(rc, 0, "dict alone, sparse codes, 2.0 and 3e1 as integers");
  is_int(pomelo_dict_code(d, "a", 1), 65535, "a -> 65535");
  is_str(pomelo_dict_route(d, 65535, NULL), "a", "65535 -> a");
  is_str(pomelo_dict_route(d, 30, NULL), "d", "30 -> d");
  is_str(pomelo_dict_code_to_route_json(d, NULL),
         "{\"2\":\"c\",\"7\":\"b\",\"30\":\"d\",\"65535\":\"a\"}",
         "its codeToRoute is the inverse");
  is_str(pomelo_dict_json(d, NULL), "{\"a\":65535,\"b\":7,\"c\":2,\"d\":30}",
         "numbers written back as integers");
  is_str(pomelo_dict_version(d), "", "no version");
  pomelo_dict_del(d);

  /* integer-like routes go first in the dict JSON, as JSON.parse + JSON.stringify order them */
  rc = from_text(&d, NULL, "{\"dict\":{\"b\":1,\"10\":2,\"2\":3,\"01\":4}}");
  is_int(rc, 0, "integer-like routes");
  is_str(pomelo_dict_json(d, NULL), "{\"2\":3,\"10\":2,\"b\":1,\"01\":4}", "in JavaScript's order");
  pomelo_dict_del(d);

  /* empty dictionaries */
  rc = from_text(&d, NULL, "{\"routeToCode\":{},\"codeToRoute\":{},\"dictVersion\":\"\"}");
  is_int(rc, 0, "empty pair");
  is_int(pomelo_dict_count(d), 0, "count 0");
  is_str(pomelo_dict_json(d, NULL), "{}", "{}");
  is_int(pomelo_dict_code(d, "a", 1), 0, "nothing found");
  pomelo_dict_del(d);
  rc = from_text(&d, NULL, "{\"dict\":{}}");
  is_int(rc, 0, "empty dict");
  pomelo_dict_del(d);

  /* the pair wins over dict, which is then not looked at */
  rc =
      from_text(&d, NULL, "{\"dict\":[1],\"routeToCode\":{\"a\":1},\"codeToRoute\":{\"1\":\"a\"}}");
  is_int(rc, 0, "the pair is read, dict ignored");
  is_int(pomelo_dict_code(d, "a", 1), 1, "a -> 1");
  pomelo_dict_del(d);

  /* pomelo 1.0.x (spec 11): dict carries a "version" string */
  rc = from_text(&d, NULL, "{\"dict\":{\"a.b.c\":1,\"version\":\"0123abcd\",\"b.c.d\":2}}");
  is_int(rc, 0, "1.0.x dict with a version inside");
  is_int(pomelo_dict_count(d), 2, "the version is not a route");
  is_str(pomelo_dict_version(d), "0123abcd", "it is the version");
  is_str(pomelo_dict_json(d, NULL), "{\"a.b.c\":1,\"b.c.d\":2}", "and not in the dict JSON");
  pomelo_dict_del(d);
  rc = from_text(&d, NULL, "{\"dict\":{\"a\":1,\"version\":\"old\"},\"dictVersion\":\"new\"}");
  is_int(rc, 0, "1.0.x version and dictVersion");
  is_str(pomelo_dict_version(d), "new", "dictVersion wins");
  pomelo_dict_del(d);
  rc = from_text(&d, NULL, "{\"dict\":{\"version\":3}}");
  is_int(rc, 0, "a route named version");
  is_int(pomelo_dict_code(d, "version", 7), 3, "is a route when its value is a code");
  pomelo_dict_del(d);

  /* routes with NUL bytes and escapes */
  rc = from_text(&d, NULL, "{\"dict\":{\"a\\u0000b\":1,\"\\u00e9\":2}}");
  is_int(rc, 0, "a route with a NUL byte");
  is_int(pomelo_dict_code(d, "a\0b", 3), 1, "found by its three bytes");
  is_int(pomelo_dict_code(d, "a", 1), 0, "not by its prefix");
  {
    const char *s = pomelo_dict_route(d, 1, &len);
    ok(s && len == 3 && memcmp(s, "a\0b", 4) == 0, "route 1 is 3 bytes, NUL-terminated");
  }
  is_str(pomelo_dict_json(d, NULL), "{\"a\\u0000b\":1,\"\303\251\":2}", "written back escaped");
  pomelo_dict_del(d);
}

static void test_handshake_errors(void) {
  static const struct {
    const char *sys;
    int rc;
    const char *what;
  } v[] = {
      {"[]", POMELO_ERR_JSON_TYPE, "sys is an array"},
      {"\"x\"", POMELO_ERR_JSON_TYPE, "sys is a string"},
      {"null", POMELO_ERR_JSON_TYPE, "sys is null"},
      {"{}", POMELO_ERR_NOT_FOUND, "nothing in sys"},
      {"{\"heartbeat\":3,\"dictVersion\":\"x\"}", POMELO_ERR_NOT_FOUND, "a version alone"},
      {"{\"routeToCode\":{\"a\":1}}", POMELO_ERR_NOT_FOUND, "routeToCode without codeToRoute"},
      {"{\"codeToRoute\":{\"1\":\"a\"}}", POMELO_ERR_NOT_FOUND, "codeToRoute without routeToCode"},
      {"{\"routeToCode\":{\"a\":1},\"dict\":{\"a\":1}}", POMELO_ERR_NOT_FOUND,
       "half the pair with a dict"},
      {"{\"routeToCode\":[],\"codeToRoute\":{}}", POMELO_ERR_JSON_TYPE, "routeToCode an array"},
      {"{\"routeToCode\":null,\"codeToRoute\":{}}", POMELO_ERR_JSON_TYPE, "routeToCode null"},
      {"{\"routeToCode\":{},\"codeToRoute\":\"x\"}", POMELO_ERR_JSON_TYPE, "codeToRoute a string"},
      {"{\"dict\":[\"a\"]}", POMELO_ERR_JSON_TYPE, "dict an array"},
      {"{\"dict\":null}", POMELO_ERR_JSON_TYPE, "dict null"},
      {"{\"dict\":{},\"dictVersion\":1}", POMELO_ERR_JSON_TYPE, "dictVersion a number"},
      {"{\"dict\":{},\"dictVersion\":null}", POMELO_ERR_JSON_TYPE, "dictVersion null"},
      {"{\"dict\":{\"a\":0}}", POMELO_ERR_JSON_TYPE, "code 0"},
      {"{\"dict\":{\"a\":-1}}", POMELO_ERR_JSON_TYPE, "code -1"},
      {"{\"dict\":{\"a\":65536}}", POMELO_ERR_JSON_TYPE, "code 65536"},
      {"{\"dict\":{\"a\":4294967297}}", POMELO_ERR_JSON_TYPE, "code 2^32+1"},
      {"{\"dict\":{\"a\":1.5}}", POMELO_ERR_JSON_TYPE, "code 1.5"},
      {"{\"dict\":{\"a\":1e400}}", POMELO_ERR_JSON_TYPE, "code 1e400"},
      {"{\"dict\":{\"a\":\"1\"}}", POMELO_ERR_JSON_TYPE, "code a string"},
      {"{\"dict\":{\"a\":true}}", POMELO_ERR_JSON_TYPE, "code true"},
      {"{\"dict\":{\"a\":null}}", POMELO_ERR_JSON_TYPE, "code null"},
      {"{\"dict\":{\"a\":{}}}", POMELO_ERR_JSON_TYPE, "code an object"},
      {"{\"dict\":{\"a\":1,\"b\":1}}", POMELO_ERR_JSON_TYPE, "dict: two routes, one code"},
      {"{\"dict\":{\"a\":1,\"a\":2}}", POMELO_ERR_JSON_TYPE, "dict: a route twice"},
      {"{\"dict\":{\"version\":\"x\",\"a\":0}}", POMELO_ERR_JSON_TYPE,
       "1.0.x dict with a bad code"},
      {"{\"routeToCode\":{\"a\":1},\"codeToRoute\":{\"0\":\"a\"}}", POMELO_ERR_JSON_TYPE,
       "codeToRoute key 0"},
      {"{\"routeToCode\":{\"a\":1},\"codeToRoute\":{\"01\":\"a\"}}", POMELO_ERR_JSON_TYPE,
       "codeToRoute key 01"},
      {"{\"routeToCode\":{\"a\":1},\"codeToRoute\":{\"+1\":\"a\"}}", POMELO_ERR_JSON_TYPE,
       "codeToRoute key +1"},
      {"{\"routeToCode\":{\"a\":1},\"codeToRoute\":{\"1.0\":\"a\"}}", POMELO_ERR_JSON_TYPE,
       "codeToRoute key 1.0"},
      {"{\"routeToCode\":{\"a\":1},\"codeToRoute\":{\" 1\":\"a\"}}", POMELO_ERR_JSON_TYPE,
       "codeToRoute key with a space"},
      {"{\"routeToCode\":{\"a\":1},\"codeToRoute\":{\"\":\"a\"}}", POMELO_ERR_JSON_TYPE,
       "codeToRoute key empty"},
      {"{\"routeToCode\":{\"a\":1},\"codeToRoute\":{\"65536\":\"a\"}}", POMELO_ERR_JSON_TYPE,
       "codeToRoute key 65536"},
      {"{\"routeToCode\":{\"a\":1},\"codeToRoute\":{\"100000\":\"a\"}}", POMELO_ERR_JSON_TYPE,
       "codeToRoute key 100000"},
      {"{\"routeToCode\":{\"a\":1},\"codeToRoute\":{\"1\":1}}", POMELO_ERR_JSON_TYPE,
       "codeToRoute value a number"},
      {"{\"routeToCode\":{\"a\":1},\"codeToRoute\":{\"1\":null}}", POMELO_ERR_JSON_TYPE,
       "codeToRoute value null"},
      {"{\"routeToCode\":{\"a\":1,\"a\":1},\"codeToRoute\":{\"1\":\"a\"}}", POMELO_ERR_JSON_TYPE,
       "routeToCode: a route twice"},
      {"{\"routeToCode\":{\"a\":1},\"codeToRoute\":{\"1\":\"a\",\"1\":\"a\"}}",
       POMELO_ERR_JSON_TYPE, "codeToRoute: a code twice"},
      {"{\"routeToCode\":{\"a\":1},\"codeToRoute\":{\"1\":\"a\",\"2\":\"b\"}}",
       POMELO_ERR_JSON_TYPE, "codeToRoute: a route routeToCode lacks"},
      {"{\"routeToCode\":{\"a\":1,\"b\":2},\"codeToRoute\":{\"1\":\"a\"}}", POMELO_ERR_JSON_TYPE,
       "routeToCode: a code codeToRoute lacks"},
      {"{\"routeToCode\":{\"a\":1,\"b\":2},\"codeToRoute\":{\"1\":\"b\",\"2\":\"a\"}}",
       POMELO_ERR_JSON_TYPE, "the two disagree"},
      {"{\"routeToCode\":{\"a\":2},\"codeToRoute\":{\"1\":\"a\",\"3\":\"a\"}}",
       POMELO_ERR_JSON_TYPE, "a route whose code is not among its codes"},
      {"{\"routeToCode\":{\"a\":1},\"codeToRoute\":{\"1\":\"a\"},\"dictVersion\":[]}",
       POMELO_ERR_JSON_TYPE, "the pair with a bad version"},
  };
  size_t i;
  for (i = 0; i < N_(v); i++) {
    pomelo_dict *d = (pomelo_dict *)&i;
    int rc = from_text(&d, NULL, v[i].sys);
    is_int(rc, v[i].rc, "%s -> %s", v[i].what, pomelo_err_name(v[i].rc));
    ok(d == NULL, "%s: *out NULL", v[i].what);
  }
  {
    pomelo_dict *d = NULL;
    pomelo_json_doc *doc = parse("{\"dict\":{\"a\":1}}");
    is_int(pomelo_dict_from_handshake(NULL, NULL, pomelo_json_root(doc)), POMELO_ERR_INVALID_ARG,
           "out NULL");
    is_int(pomelo_dict_from_handshake(&d, NULL, NULL), POMELO_ERR_INVALID_ARG, "sys NULL");
    pomelo_json_doc_del(doc);
  }
}

/* Builds {"<shape>":{...n members...}} with routes of `rlen` bytes (sys text, malloc'ed). */
static char *big_sys(int pair, size_t n, size_t rlen, int bad_c2r_route) {
  size_t cap = 64 + 2 * n * (rlen + 24), o = 0, i;
  char *s = malloc(cap);
  o += (size_t)snprintf(s + o, cap - o, pair ? "{\"routeToCode\":{" : "{\"dict\":{");
  for (i = 0; i < n; i++) {
    o += (size_t)snprintf(s + o, cap - o, "%s\"%0*zu\":%zu", i ? "," : "", (int)rlen, i,
                          i % 65535 + 1);
  }
  o += (size_t)snprintf(s + o, cap - o, "}");
  if (pair) {
    o += (size_t)snprintf(s + o, cap - o, ",\"codeToRoute\":{");
    for (i = 0; i < n; i++) {
      o += (size_t)snprintf(s + o, cap - o, "%s\"%zu\":\"%0*zu\"", i ? "," : "", i % 65535 + 1,
                            (int)(bad_c2r_route ? rlen + 1 : rlen), i);
    }
    o += (size_t)snprintf(s + o, cap - o, "}");
  }
  snprintf(s + o, cap - o, "}");
  return s;
}

static void test_handshake_limits(void) {
  pomelo_dict *d = NULL;
  char *s;
  int pair;
  for (pair = 0; pair < 2; pair++) {
    const char *shape = pair ? "pair" : "dict";
    s = big_sys(pair, 65535, 6, 0);
    is_int(from_text(&d, NULL, s), 0, "%s: 65535 codes", shape);
    is_int(pomelo_dict_count(d), 65535, "%s: count", shape);
    is_int(pomelo_dict_code(d, "065534", 6), 65535, "%s: the last route", shape);
    ok(lookups_agree(d), "%s: lookups agree", shape);
    pomelo_dict_del(d);
    free(s);
    s = big_sys(pair, 65536, 6, 0);
    is_int(from_text(&d, NULL, s), POMELO_ERR_LIMIT, "%s: 65536 routes", shape);
    free(s);
    s = big_sys(pair, 3, 255, 0);
    is_int(from_text(&d, NULL, s), 0, "%s: 255-byte routes", shape);
    pomelo_dict_del(d);
    free(s);
    s = big_sys(pair, 3, 256, 0);
    is_int(from_text(&d, NULL, s), POMELO_ERR_ROUTE_TOO_LONG, "%s: 256-byte routes", shape);
    free(s);
  }
  s = big_sys(1, 3, 255, 1);
  is_int(from_text(&d, NULL, s), POMELO_ERR_ROUTE_TOO_LONG, "pair: a 256-byte codeToRoute value");
  free(s);
  /* codeToRoute alone over the limit */
  {
    size_t cap = 65537 * 16 + 64, o = 0, i;
    s = malloc(cap);
    o += (size_t)snprintf(s, cap, "{\"routeToCode\":{\"a\":1},\"codeToRoute\":{");
    for (i = 0; i < 65536; i++) {
      o += (size_t)snprintf(s + o, cap - o, "%s\"%zu\":\"a\"", i ? "," : "", i + 1);
    }
    snprintf(s + o, cap - o, "}}");
    is_int(from_text(&d, NULL, s), POMELO_ERR_LIMIT, "pair: 65536 codeToRoute members");
    free(s);
  }

  /* memory follows the input: a code of 65535 costs no table of 65535 entries */
  {
    test_alloc ta;
    pomelo_json_doc *doc =
        parse("{\"routeToCode\":{\"a\":65535},\"codeToRoute\":{\"65535\":\"a\"}}");
    test_alloc_init(&ta, 0);
    is_int(pomelo_dict_from_handshake(&d, &ta.a, pomelo_json_root(doc)), 0, "one code of 65535");
    ok(ta.peak < 2048, "it costs %zu bytes at peak", ta.peak);
    pomelo_dict_del(d);
    is_int(ta.live, 0, "all freed");
    pomelo_json_doc_del(doc);
  }
}

/* ---------------------------------------------------------------------------------------------
 * Failing allocations
 * ------------------------------------------------------------------------------------------- */

typedef int (*make_fn)(pomelo_dict **d, const pomelo_allocator *a, const void *arg);

static int make_new(pomelo_dict **d, const pomelo_allocator *a, const void *arg) {
  const dict_vector *v = arg;
  size_t n = count_list(v->routes), m = count_list(v->extra);
  return pomelo_dict_new(d, a, v->routes, n, v->extra, m);
}

static int make_hs(pomelo_dict **d, const pomelo_allocator *a, const void *arg) {
  return pomelo_dict_from_handshake(d, a, arg);
}

static void alloc_loop(const char *name, make_fn fn, const void *arg, const char *want_json) {
  long n, bad = 0, rounds = 0;
  for (n = 1; n < 10000; n++) {
    test_alloc ta;
    pomelo_dict *d = (pomelo_dict *)&ta;
    int rc;
    test_alloc_init(&ta, n);
    rc = fn(&d, &ta.a, arg);
    rounds++;
    if (ta.failed) {
      if (rc != POMELO_ERR_NOMEM || d != NULL) {
        bad++;
        diag("%s: allocation %ld failing gave %s", name, n, pomelo_err_name(rc));
      }
    } else if (rc != 0 || strcmp(pomelo_dict_json(d, NULL), want_json) != 0) {
      bad++;
      diag("%s: no failure, but %s", name, pomelo_err_name(rc));
    }
    pomelo_dict_del(rc == 0 ? d : NULL);
    if (ta.live != 0) {
      bad++;
      diag("%s: allocation %ld failing leaks %ld blocks", name, n, ta.live);
    }
    if (!ta.failed) {
      break;
    }
  }
  ok(bad == 0 && rounds > 3,
     "%s: NOMEM, *out NULL and no leak with each of %ld allocations failing", name, rounds - 1);
}

static void test_alloc_loops(void) {
  static const char *const names[] = {"chatofpomelo", "integer-like keys", "duplicates in extra",
                                      "non-ASCII", "empty"};
  size_t i;
  for (i = 0; i < N_(names); i++) {
    const dict_vector *v = find_vector(names[i]);
    char *sys;
    pomelo_json_doc *doc;
    char label[64];
    snprintf(label, sizeof label, "new %s", v->name);
    alloc_loop(label, make_new, v, v->json);
    sys = PAIR_SYS(v);
    doc = parse(sys);
    snprintf(label, sizeof label, "pair %s", v->name);
    alloc_loop(label, make_hs, pomelo_json_root(doc), v->json);
    pomelo_json_doc_del(doc);
    free(sys);
    sys = concat("{\"dict\":", v->json, "}", (const char *)NULL);
    doc = parse(sys);
    snprintf(label, sizeof label, "dict %s", v->name);
    alloc_loop(label, make_hs, pomelo_json_root(doc), v->json);
    pomelo_json_doc_del(doc);
    free(sys);
  }
  {
    /* a sparse dictionary (its code table) */
    pomelo_json_doc *doc = parse("{\"dict\":{\"a\":9,\"b\":70,\"5\":3},\"dictVersion\":\"v\"}");
    alloc_loop("dict sparse", make_hs, pomelo_json_root(doc), "{\"5\":3,\"a\":9,\"b\":70}");
    pomelo_json_doc_del(doc);
  }
}

int main(void) {
  test_md5();
  test_vectors();
  test_big();
  test_new();
  test_limits();
  test_handshake_shapes();
  test_handshake_errors();
  test_handshake_limits();
  test_alloc_loops();
  return done_testing();
}

/* ---------------------------------------------------------------------------------------------
 * The script that made the vectors above (dictvec.js)
 * ---------------------------------------------------------------------------------------------

// node dictvec.js <dir of the pomelo 2.2.7 package> > vectors.c
'use strict';
const fs = require('fs'), path = require('path'), os = require('os');
const Dictionary = require(path.join(process.argv[2], 'lib/components/dictionary.js'));

// Runs the real component: handler route "type.name.key" becomes key `key` of a handler file
// named `name` in app/servers/<type>/handler/; `extra` is the user dictionary file.
function run(routes, extra) {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'dictvec-'));
  const servers = {}, handlers = new Map();
  for (const r of routes) {
    const a = r.indexOf('.'), b = r.indexOf('.', a + 1);
    const type = r.slice(0, a), name = r.slice(a + 1, b), key = r.slice(b + 1);
    if (a < 0 || b < 0 || key === 'name' || name === '') throw new Error('unsupported: ' + r);
    servers[type] = [{id: type + '-1'}];
    const hk = type + '\0' + name;
    if (!handlers.has(hk)) handlers.set(hk, {type, name, keys: new Set()});
    handlers.get(hk).keys.add(key);
  }
  let n = 0;
  for (const h of handlers.values()) {
    const dir = path.join(base, 'app/servers', h.type, 'handler');
    fs.mkdirSync(dir, {recursive: true});
    let src = 'module.exports = {name: ' + JSON.stringify(h.name);
    for (const k of h.keys) src += ', ' + JSON.stringify(k) + ': function () {}';
    fs.writeFileSync(path.join(dir, 'h' + n++ + '.js'), src + '};\n');
  }
  const opts = {dict: path.join(base, 'dictionary.json')};
  fs.writeFileSync(opts.dict, JSON.stringify(extra));
  const app = {getBase: () => base, get: (k) => (k === 'servers' ? servers : undefined)};
  const c = Dictionary(app, opts);
  let out;
  c.start(() => {
    out = {dict: JSON.stringify(c.getDict()), c2r: JSON.stringify(c.getAbbrs()),
           version: c.getVersion()};
  });
  fs.rmSync(base, {recursive: true, force: true});
  return out;
}

function cstr(s) { // a C literal: octal escapes, so no hex escape swallows the next character
  let o = '"';
  for (const c of Buffer.from(s, 'utf8')) {
    if (c === 0x22 || c === 0x5c || c === 0x3f) o += '\\' + String.fromCharCode(c);
    else if (c >= 0x20 && c < 0x7f) o += String.fromCharCode(c);
    else o += '\\' + c.toString(8).padStart(3, '0');
  }
  return o + '"';
}

const chat = ['connector.entryHandler.enter', 'gate.gateHandler.queryEntry',
              'chat.chatHandler.send'];
const v = [
  ['chatofpomelo', chat, []],
  ['empty', [], []],
  ['extra only', [], ['onChat', 'onAdd', 'onLeave']],
  ['ascii order', ['a.b.c', 'A.b.c', 'a.B.c', 'a.b.C', 'a.b.c_', 'a.b.c0', 'a.b.', 'a.b.c.d',
                   'a.b.c-', 'a.b.~', 'a.b. ', 'Z.z.z', '_.x.y', '0.x.y', '9.x.y'], []],
  ['chat with pushes', chat, ['onChat', 'onAdd', 'onLeave']],
  ['duplicates in extra', chat,
   ['onChat', 'connector.entryHandler.enter', 'onChat', 'onAdd', 'onChat']],
  ['integer-like keys', ['a.b.c', 'x.y.z'],
   ['5', 'onChat', '0', '10', '4294967294', '4294967295', '01', '-1', '1.5', '007', ' 1', '1e3',
    '99999999999', '2', '5']],
  ['non-ASCII',
   ['x.y.\u00e9', 'x.y.e', 'x.y.\u4e2d', 'x.y.\ue000', 'x.y.\uffff', 'x.y.\ufffd', 'x.y.\u{1f600}',
    'x.y.\u{10000}', 'x.y.\u{10ffff}', 'x.y.\ud7ff', 'x.y.\uff61', 'x.y.\u007f', 'x.y.\u0080',
    '\u00e9.a.b', '\u{1f600}.a.b', '\uef00.a.b', 'x.y.\u{1f600}\u00e9', 'x.y.\ue000a'],
   ['\u{1f601}', '\uf900', '\u00e9t\u00e9', 'x.y.\ue000']],
  ['escapes', ['x.y.\t', 'x.y."', 'x.y.\\', 'x.y.\u2028', 'x.y.\u0001', 'x.y./'],
   ['\n', '"q"', '\u001f', '\u2029']],
  ['extra repeats', ['a.b.c'], ['p', 'p', 'p', '7', 'a.b.c', '7']],
  ['duplicate handler routes', ['b.b.b', 'a.a.a', 'b.b.b', 'c.c.c', 'a.a.a'], ['a.a.a']],
  ['empty route', [], ['', 'a', '']],
];
for (const [name, routes, extra] of v) {
  const r = run(routes, extra);
  const list = (a) => '{' + a.map(cstr).concat(['NULL']).join(', ') + '}';
  console.log(`  {${cstr(name)},\n   ${list(routes)},\n   ${list(extra)},\n` +
              `   ${cstr(r.dict)},\n   ${cstr(r.c2r)},\n   ${cstr(r.version)}},`);
}
// The big list: the same loops as big_routes() in test_dict.c; only its version is kept.
const big = [], bigExtra = [];
for (let i = 0; i < 1000; i++) {
  big.push('s' + (i % 7) + '.h' + (i % 13) + '.m' + ((i * 7919) % 1000));
}
for (let i = 0; i < 200; i++) bigExtra.push(i % 3 ? 'push' + (i % 50) : String(i));
console.log('big: ' + cstr(run(big, bigExtra).version));
*/
