/* Fuzz target: the JSON reader and writer.
 *
 * Every input is parsed in both UTF-8 modes with large and small limits. A failure has a JSON
 * error code and an offset within the input. A success writes back (write_value) as valid UTF-8
 * that parses again, strictly, to a tree that writes back identically, and that write_raw takes
 * verbatim; accessors agree with each other; every number's double, written with write_double,
 * reads back the same. write_raw accepts exactly what strict parsing accepts. A strict success is
 * valid UTF-8 and parses the same in repair mode. pomelo_utf8_valid agrees with a reference
 * decoder. Allocation failures give NOMEM, and nothing leaks.
 * SPDX-License-Identifier: MIT
 */
#include <pomelo/json.h>

#include <math.h>
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

/* A reference UTF-8 check written differently: decode a code point, then judge it. */
static int ref_utf8(const uint8_t *s, size_t n, size_t *bad) {
  size_t i = 0;
  while (i < n) {
    uint32_t cp;
    size_t k, len;
    uint8_t c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1Fu;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0Fu;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07u;
    } else {
      *bad = i;
      return 0;
    }
    if (n - i < len) {
      *bad = i;
      return 0;
    }
    for (k = 1; k < len; k++) {
      if ((s[i + k] & 0xC0) != 0x80) {
        *bad = i;
        return 0;
      }
      cp = (cp << 6) | (s[i + k] & 0x3Fu);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      *bad = i;
      return 0;
    }
    i += len;
  }
  return 1;
}

static int is_json_error(int rc) {
  return rc == POMELO_ERR_JSON_SYNTAX || rc == POMELO_ERR_JSON_DEPTH ||
         rc == POMELO_ERR_JSON_TOO_LARGE || rc == POMELO_ERR_JSON_UTF8;
}

/* Checks accessors on every value of a tree (recursion bounded by the parse depth limit). */
static void walk(const pomelo_json_value *v, pomelo_json_writer *w, uint32_t depth) {
  size_t i, n, klen, slen;
  const char *s;
  CHECK(depth <= 1000);
  switch (pomelo_json_typeof(v)) {
  case POMELO_JSON_NULL:
    CHECK(pomelo_json_len(v) == 0 && pomelo_json_string(v, NULL) == NULL);
    break;
  case POMELO_JSON_BOOL:
    CHECK(pomelo_json_bool(v) == 0 || pomelo_json_bool(v) == 1);
    break;
  case POMELO_JSON_NUMBER: {
    double d = pomelo_json_number(v);
    int64_t iv;
    s = pomelo_json_number_text(v, &slen);
    CHECK(s && slen > 0 && s[slen] == '\0' && strlen(s) == slen);
    if (pomelo_json_int64(v, &iv) == 0) {
      CHECK((double)iv == d || (iv == 0 && d == 0));
    }
    if (isfinite(d)) {
      pomelo_json_doc *doc = NULL;
      const char *t;
      size_t tlen;
      pomelo_json_writer_reset(w);
      CHECK(pomelo_json_write_double(w, d) == 0);
      t = pomelo_json_writer_data(w, &tlen);
      CHECK(pomelo_json_parse(&doc, NULL, t, tlen, NULL, NULL) == 0);
      CHECK(pomelo_json_number(pomelo_json_root(doc)) == d);
      pomelo_json_doc_del(doc);
    } else {
      pomelo_json_writer_reset(w);
      CHECK(pomelo_json_write_double(w, d) == POMELO_ERR_JSON_NUMBER);
    }
    break;
  }
  case POMELO_JSON_STRING:
    s = pomelo_json_string(v, &slen);
    CHECK(s && s[slen] == '\0');
    CHECK(pomelo_utf8_valid((const uint8_t *)s, slen, NULL));
    break;
  case POMELO_JSON_ARRAY:
    n = pomelo_json_len(v);
    for (i = 0; i < n; i++) {
      walk(pomelo_json_at(v, i), w, depth + 1);
    }
    CHECK(pomelo_json_at(v, n) == NULL && pomelo_json_key_at(v, 0, NULL) == NULL);
    break;
  case POMELO_JSON_OBJECT:
    n = pomelo_json_len(v);
    for (i = 0; i < n; i++) {
      const pomelo_json_value *got;
      size_t j;
      const char *k = pomelo_json_key_at(v, i, &klen);
      CHECK(k && k[klen] == '\0' && pomelo_utf8_valid((const uint8_t *)k, klen, NULL));
      /* lookup finds the last member with this key */
      got = pomelo_json_get_n(v, k, klen);
      for (j = n; j-- > i;) {
        size_t l2;
        const char *k2 = pomelo_json_key_at(v, j, &l2);
        if (l2 == klen && memcmp(k2, k, klen) == 0) {
          break;
        }
      }
      CHECK(got == pomelo_json_at(v, j));
      walk(pomelo_json_at(v, i), w, depth + 1);
    }
    CHECK(pomelo_json_at(v, n) == NULL && pomelo_json_key_at(v, n, NULL) == NULL);
    break;
  }
}

/* Writes a tree into a new writer; returns it (the caller frees). */
static pomelo_json_writer *write_tree(const pomelo_json_value *v, uint32_t depth,
                                      const pomelo_allocator *a) {
  pomelo_json_writer *w = NULL;
  CHECK(pomelo_json_writer_new(&w, a, depth) == 0);
  CHECK(pomelo_json_write_value(w, v) == 0);
  CHECK(pomelo_json_writer_complete(w));
  return w;
}

static void one(const uint8_t *data, size_t size, int strict, uint32_t max_depth, size_t max_size,
                test_alloc *ta) {
  pomelo_json_options o;
  pomelo_json_doc *doc = (pomelo_json_doc *)&o, *doc2 = NULL;
  pomelo_json_writer *w1, *w2, *wr, *scratch = NULL;
  size_t off = (size_t)-1, n1, n2;
  const char *o1, *o2;
  int rc, raw_rc;

  pomelo_json_options_default(&o);
  o.utf8 = strict ? POMELO_JSON_UTF8_STRICT : POMELO_JSON_UTF8_REPAIR;
  o.max_depth = max_depth;
  o.max_size = max_size;
  rc = pomelo_json_parse(&doc, &ta->a, (const char *)data, size, &o, &off);

  /* write_raw validates with the same code, strictly and without a size limit */
  if (strict && rc != POMELO_ERR_JSON_TOO_LARGE) {
    CHECK(pomelo_json_writer_new(&wr, &ta->a, max_depth) == 0);
    raw_rc = pomelo_json_write_raw(wr, (const char *)data, size);
    CHECK(raw_rc == rc);
    pomelo_json_writer_del(wr);
  }
  if (rc != 0) {
    CHECK(is_json_error(rc));
    CHECK(doc == NULL);
    CHECK(off <= size);
    CHECK((rc == POMELO_ERR_JSON_TOO_LARGE) == (size > max_size));
    if (rc == POMELO_ERR_JSON_TOO_LARGE) {
      CHECK(off == max_size);
    }
    return;
  }
  CHECK(doc != NULL && size <= max_size);
  if (strict) {
    CHECK(pomelo_utf8_valid(data, size, NULL)); /* non-ASCII only appears in valid strings */
  }

  w1 = write_tree(pomelo_json_root(doc), max_depth ? max_depth : 1, &ta->a);
  o1 = pomelo_json_writer_data(w1, &n1);
  CHECK(n1 <= size); /* compact output is never longer than its input */
  CHECK(pomelo_utf8_valid((const uint8_t *)o1, n1, NULL));

  /* the output parses strictly, and writes back identically */
  o.utf8 = POMELO_JSON_UTF8_STRICT;
  o.max_size = n1;
  CHECK(pomelo_json_parse(&doc2, &ta->a, o1, n1, &o, NULL) == 0);
  w2 = write_tree(pomelo_json_root(doc2), max_depth ? max_depth : 1, &ta->a);
  o2 = pomelo_json_writer_data(w2, &n2);
  CHECK(n1 == n2 && memcmp(o1, o2, n1) == 0);

  /* write_raw takes the output verbatim */
  pomelo_json_writer_reset(w2);
  CHECK(pomelo_json_write_raw(w2, o1, n1) == 0);
  o2 = pomelo_json_writer_data(w2, &n2);
  CHECK(n1 == n2 && memcmp(o1, o2, n1) == 0);

  /* a strict success reads the same in repair mode */
  if (strict) {
    pomelo_json_doc *doc3 = NULL;
    pomelo_json_writer *w3;
    o.utf8 = POMELO_JSON_UTF8_REPAIR;
    o.max_size = size;
    CHECK(pomelo_json_parse(&doc3, &ta->a, (const char *)data, size, &o, NULL) == 0);
    w3 = write_tree(pomelo_json_root(doc3), max_depth ? max_depth : 1, &ta->a);
    o2 = pomelo_json_writer_data(w3, &n2);
    CHECK(n1 == n2 && memcmp(o1, o2, n1) == 0);
    pomelo_json_writer_del(w3);
    pomelo_json_doc_del(doc3);
  }

  CHECK(pomelo_json_writer_new(&scratch, &ta->a, 0) == 0);
  walk(pomelo_json_root(doc), scratch, 0);
  pomelo_json_writer_del(scratch);

  pomelo_json_writer_del(w1);
  pomelo_json_writer_del(w2);
  pomelo_json_doc_del(doc2);
  pomelo_json_doc_del(doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  test_alloc ta;
  size_t b1 = 0, b2 = 0;
  int v1, v2;
  long k;

  v1 = pomelo_utf8_valid(data, size, &b1);
  v2 = ref_utf8(data, size, &b2);
  CHECK(v1 == v2 && (v1 || b1 == b2));

  test_alloc_init(&ta, 0);
  one(data, size, 0, 64, (size_t)1 << 20, &ta);
  one(data, size, 1, 64, (size_t)1 << 20, &ta);
  one(data, size, 0, 3, 64, &ta);
  one(data, size, 1, 3, 64, &ta);
  one(data, size, 0, 0, (size_t)1 << 20, &ta);
  CHECK(ta.live == 0);

  /* Fail one allocation of a parse and of a write_value, chosen from the input. */
  for (k = 1; k <= 3; k++) {
    test_alloc tp, tw;
    pomelo_json_doc *doc = NULL;
    pomelo_json_writer *w = NULL;
    int rc;
    test_alloc_init(&tp, (long)(size % 5) + k);
    rc = pomelo_json_parse(&doc, &tp.a, (const char *)data, size, NULL, NULL);
    CHECK(tp.failed ? rc == POMELO_ERR_NOMEM && doc == NULL : rc == 0 || is_json_error(rc));
    if (rc == 0) {
      test_alloc_init(&tw, k);
      rc = pomelo_json_writer_new(&w, &tw.a, 0);
      if (rc == 0) {
        rc = pomelo_json_write_value(w, pomelo_json_root(doc));
      }
      CHECK(tw.failed ? rc == POMELO_ERR_NOMEM : rc == 0);
      pomelo_json_writer_del(w);
      CHECK(tw.live == 0);
      pomelo_json_doc_del(doc);
    }
    CHECK(tp.live == 0);
  }
  return 0;
}
