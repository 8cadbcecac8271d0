/* pomelo-protobuf proto sets (spec 7.2, 7.3): the JSON proto description parsed as the real
 * server's pomelo-protobuf 0.4.0 parser parses it, the parsed form the handshake carries (byte
 * for byte as JSON.stringify prints the parser's result), its version, and the reverse: a set
 * made from a handshake's parsed form.
 *
 * JavaScript object semantics matter for the bytes: JSON.parse keeps the last of duplicate keys
 * at the place of the first, and every object lists its array-index keys ("0".."4294967294")
 * first, ascending, then the other keys in insertion order. Every object read here is viewed
 * that way (js_view), and every object written is ordered that way.
 * SPDX-License-Identifier: MIT
 */
#include <pomelo/protobuf.h>

#include <stdlib.h>

#include "json/json_int.h"
#include "proto/pb_int.h"
#include "transport/hash.h"

#define PB_CHUNK_MIN 2048u
#define PB_CHUNK_MAX 65536u
#define PB_ALIGN 16u

struct pb_chunk {
  pb_chunk *next;
  size_t used;
  size_t cap;
};

static const char *const rule_names[3] = {"required", "optional", "repeated"};
static const char *const scalar_names[6] = {"uInt32", "int32",  "sInt32",
                                            "float",  "double", "string"};

/* ---------------------------------------------------------------------------------------------
 * Errors and limits
 * ------------------------------------------------------------------------------------------- */

void pb_err(pomelo_pb_error *err, int code, size_t offset, const char *path, size_t path_len) {
  if (!err) {
    return;
  }
  err->code = code;
  err->offset = offset;
  if (path_len > sizeof(err->path) - 1u) {
    path_len = sizeof(err->path) - 1u;
  }
  if (path_len) {
    memcpy(err->path, path, path_len);
  }
  err->path[path_len] = '\0';
}

void pomelo_pb_limits_default(pomelo_pb_limits *lim) {
  if (!lim) {
    return;
  }
  lim->max_depth = 32;
  lim->max_schema = (size_t)1 << 20;
  lim->max_fields = 65536;
}

/* ---------------------------------------------------------------------------------------------
 * Arena: the set's types, fields and names, freed all at once
 * ------------------------------------------------------------------------------------------- */

#define PB_CHUNK_HDR ((sizeof(pb_chunk) + PB_ALIGN - 1u) & ~(size_t)(PB_ALIGN - 1u))

static void *arena_alloc(pomelo_protos *p, size_t n) {
  pb_chunk *c = p->chunks;
  void *r;
  if (n > SIZE_MAX / 2u) {
    return NULL;
  }
  n = n ? (n + PB_ALIGN - 1u) & ~(size_t)(PB_ALIGN - 1u) : PB_ALIGN;
  if (!c || c->cap - c->used < n) {
    size_t cap = c ? c->cap * 2u : PB_CHUNK_MIN;
    pb_chunk *nc;
    if (cap > PB_CHUNK_MAX) {
      cap = PB_CHUNK_MAX;
    }
    if (cap < n) {
      cap = n;
    }
    nc = pm_malloc(&p->alloc, PB_CHUNK_HDR + cap);
    if (!nc) {
      return NULL;
    }
    nc->used = 0;
    nc->cap = cap;
    if (c && cap == n && c->cap - c->used >= PB_ALIGN * 4u) {
      /* an oversized block: keep filling the current chunk afterwards */
      nc->next = c->next;
      c->next = nc;
    } else {
      nc->next = c;
      p->chunks = nc;
    }
    c = nc;
  }
  r = (char *)c + PB_CHUNK_HDR + c->used;
  c->used += n;
  return r;
}

static char *arena_str(pomelo_protos *p, const char *s, size_t n) {
  char *d = arena_alloc(p, n + 1u);
  if (d) {
    if (n) {
      memcpy(d, s, n);
    }
    d[n] = '\0';
  }
  return d;
}

/* ---------------------------------------------------------------------------------------------
 * JavaScript views of objects
 * ------------------------------------------------------------------------------------------- */

/* Whether the `n` bytes at `s` are an array index ("0", or no leading zero, at most
 * 4294967294), which JavaScript orders before the other keys of an object. */
static int is_array_index(const char *s, size_t n, uint32_t *v) {
  uint64_t x = 0;
  size_t i;
  if (n == 0 || n > 10 || (n > 1 && s[0] == '0')) {
    return 0;
  }
  for (i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') {
      return 0;
    }
    x = x * 10u + (uint64_t)(s[i] - '0');
  }
  if (x > 4294967294u) {
    return 0;
  }
  *v = (uint32_t)x;
  return 1;
}

typedef struct js_mem {
  const char *key;
  size_t klen;
  const pomelo_json_value *val; /* of the last member with this key */
  size_t pos;                   /* of the first member with this key */
  uint32_t ival;
  uint8_t is_index;
} js_mem;

static int cmp_bytes(const char *a, size_t an, const char *b, size_t bn) {
  int c = memcmp(a, b, an < bn ? an : bn);
  if (c) {
    return c;
  }
  return an < bn ? -1 : an > bn;
}

static int cmp_key_pos(const void *x, const void *y) {
  const js_mem *a = x, *b = y;
  int c = cmp_bytes(a->key, a->klen, b->key, b->klen);
  if (c) {
    return c;
  }
  return a->pos < b->pos ? -1 : a->pos > b->pos;
}

/* JavaScript's order of an object's own keys: array-index names ("0", "17") first, ascending,
 * then the others in insertion order (`pos`). */
static int js_key_order(int a_index, uint32_t a_ival, size_t a_pos, int b_index, uint32_t b_ival,
                        size_t b_pos) {
  if (a_index != b_index) {
    return a_index ? -1 : 1;
  }
  if (a_index && a_ival != b_ival) {
    return a_ival < b_ival ? -1 : 1;
  }
  return a_pos < b_pos ? -1 : a_pos > b_pos;
}

static int cmp_js_order(const void *x, const void *y) {
  const js_mem *a = x, *b = y;
  return js_key_order(a->is_index, a->ival, a->pos, b->is_index, b->ival, b->pos);
}

/* The members of object `obj` as JavaScript sees them after JSON.parse: unique keys (the last
 * value at the first key's place) in JavaScript's order. `*out` is NULL when there are none;
 * the caller frees it. */
static int js_view(const pomelo_allocator *a, const pomelo_json_value *obj, js_mem **out,
                   size_t *count) {
  size_t n = pomelo_json_len(obj), i, k;
  js_mem *m;
  int sorted = 1, plain = 1;
  *out = NULL;
  *count = 0;
  if (n == 0) {
    return 0;
  }
  if (n > SIZE_MAX / sizeof(*m)) {
    return POMELO_ERR_NOMEM;
  }
  m = pm_malloc(a, n * sizeof(*m));
  if (!m) {
    return POMELO_ERR_NOMEM;
  }
  for (i = 0; i < n; i++) {
    m[i].key = pomelo_json_key_at(obj, i, &m[i].klen);
    m[i].val = pomelo_json_at(obj, i);
    m[i].pos = i;
    m[i].is_index = (uint8_t)is_array_index(m[i].key, m[i].klen, &m[i].ival);
    if (m[i].is_index) {
      plain = 0;
    }
    if (i && cmp_bytes(m[i - 1].key, m[i - 1].klen, m[i].key, m[i].klen) >= 0) {
      sorted = 0;
    }
  }
  if (!sorted) {
    /* group equal keys (by key, then position) and keep one member per key */
    qsort(m, n, sizeof(*m), cmp_key_pos);
    for (i = 0, k = 0; i < n; k++) {
      size_t j = i;
      while (j + 1u < n && m[j + 1u].klen == m[i].klen &&
             memcmp(m[j + 1u].key, m[i].key, m[i].klen) == 0) {
        j++;
      }
      m[k] = m[i];
      m[k].val = m[j].val;
      i = j + 1u;
    }
    n = k;
    plain = 0;
  }
  if (!plain) {
    qsort(m, n, sizeof(*m), cmp_js_order);
  }
  *out = m;
  *count = n;
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Building
 * ------------------------------------------------------------------------------------------- */

typedef struct pb_build {
  pomelo_protos *p;
  pomelo_pb_error *err;
  int side;
  int hs; /* reading a handshake's parsed form, not a proto description */
} pb_build;

/* A field as read, before duplicates are dropped and the order is fixed. */
typedef struct pb_cand {
  const char *name;
  size_t name_len;
  const char *tname;
  size_t tname_len;
  const char *key; /* the member key, for error paths */
  size_t key_len;
  uint32_t tag;
  uint32_t seq;
  uint32_t ival;
  uint8_t rule;
  uint8_t keep;
  uint8_t is_index;
} pb_cand;

static void path_put(char *buf, size_t *len, const char *s, size_t n) {
  size_t room = 127u - *len;
  if (n > room) {
    n = room;
  }
  if (n) {
    memcpy(buf + *len, s, n);
    *len += n;
  }
}

/* Fails the build with `code` and the path of `t` (may be NULL: the side alone), then `last`
 * (may be NULL). Paths read "server/route/message Pos/required uInt32 x" for a proto
 * description and "server/route/__messages/Pos/x" for a parsed form. */
static int fail(pb_build *b, int code, const pomelo_pb_type *t, const char *last, size_t last_len) {
  const pomelo_pb_type *chain[PB_DEPTH_CAP + 2u];
  char buf[128];
  size_t len = 0, n = 0;
  if (!b->err) {
    return code;
  }
  for (; t && n < PM_ARRAY_LEN(chain); t = t->parent) {
    chain[n++] = t;
  }
  path_put(buf, &len, b->side ? "client" : "server", 6);
  while (n--) {
    path_put(buf, &len, "/", 1);
    if (chain[n]->parent) {
      if (b->hs) {
        path_put(buf, &len, "__messages/", 11);
      } else {
        path_put(buf, &len, "message ", 8);
      }
    }
    path_put(buf, &len, chain[n]->name, chain[n]->name_len);
  }
  if (last) {
    path_put(buf, &len, "/", 1);
    path_put(buf, &len, last, last_len);
  }
  pb_err(b->err, code, 0, buf, len);
  return code;
}

static int nomem(pb_build *b) {
  pb_err(b->err, POMELO_ERR_NOMEM, 0, NULL, 0);
  return POMELO_ERR_NOMEM;
}

static int count_item(pb_build *b, const pomelo_pb_type *t, const char *last, size_t last_len) {
  if (b->p->items >= b->p->lim.max_fields) {
    return fail(b, POMELO_ERR_LIMIT, t, last, last_len);
  }
  b->p->items++;
  return 0;
}

static int str_is(const char *s, size_t n, const char *lit) {
  size_t l = strlen(lit);
  return n == l && memcmp(s, lit, l) == 0;
}

/* Names JavaScript would not keep as own properties of the parsed form, or that the parsed form
 * uses itself; refused. */
static int bad_name(const char *s, size_t n, int field) {
  if (str_is(s, n, "__proto__")) {
    return 1;
  }
  return field && (n == 0 || str_is(s, n, "__messages") || str_is(s, n, "__tags"));
}

static int rule_of(const char *s, size_t n) {
  int i;
  for (i = 0; i < 3; i++) {
    if (str_is(s, n, rule_names[i])) {
      return i;
    }
  }
  return -1;
}

/* A positive integral tag of at most PB_TAG_MAX. */
static int tag_of(const pomelo_json_value *v, uint32_t *tag) {
  int64_t x;
  if (pomelo_json_typeof(v) != POMELO_JSON_NUMBER || pomelo_json_int64(v, &x) != 0 || x < 1 ||
      x > (int64_t)PB_TAG_MAX) {
    return -1;
  }
  *tag = (uint32_t)x;
  return 0;
}

static pomelo_pb_type *new_type(pb_build *b, const pomelo_pb_type *parent, const char *name,
                                size_t len) {
  pomelo_pb_type *t = arena_alloc(b->p, sizeof(*t));
  if (!t) {
    return NULL;
  }
  memset(t, 0, sizeof(*t));
  t->set = b->p;
  t->parent = parent;
  t->name = arena_str(b->p, name, len);
  if (!t->name) {
    return NULL;
  }
  t->name_len = (uint32_t)len;
  t->is_index = (uint8_t)is_array_index(name, len, &t->ival);
  return t;
}

static int cmp_cand_tag(const void *x, const void *y) {
  const pb_cand *a = x, *b = y;
  if (a->tag != b->tag) {
    return a->tag < b->tag ? -1 : 1;
  }
  return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Kept first, array-index names first (ascending), then definition order. */
static int cmp_cand_order(const void *x, const void *y) {
  const pb_cand *a = x, *b = y;
  if (a->keep != b->keep) {
    return a->keep ? -1 : 1;
  }
  return js_key_order(a->is_index, a->ival, a->seq, b->is_index, b->ival, b->seq);
}

/* Array-index names first, ascending, then definition order: how JavaScript lists the keys of
 * "__messages". */
static int cmp_type_order(const void *x, const void *y) {
  const pomelo_pb_type *a = *(pomelo_pb_type *const *)x, *b = *(pomelo_pb_type *const *)y;
  return js_key_order(a->is_index, a->ival, a->seq, b->is_index, b->ival, b->seq);
}

static int cmp_type_name(const void *x, const void *y) {
  const pomelo_pb_type *a = *(pomelo_pb_type *const *)x, *b = *(pomelo_pb_type *const *)y;
  return cmp_bytes(a->name, a->name_len, b->name, b->name_len);
}

static int cmp_u64(const void *x, const void *y) {
  uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
  return a < b ? -1 : a > b;
}

/* Turns the candidates of `t` into its fields: duplicate tags dropped after the first (or
 * refused, reading a parsed form), names and types checked, JavaScript's order, the lookup
 * tables. `nested`/`nn` are its nested types in definition order. */
static int finish_type(pb_build *b, pomelo_pb_type *t, pb_cand *c, size_t nc,
                       pomelo_pb_type **nested, size_t nn) {
  pomelo_protos *p = b->p;
  pb_field *fields;
  uint32_t *by_tag, *hash, *req, hcap, nf = 0, nindex = 0, nreq = 0;
  uint64_t *pairs = NULL;
  size_t i;
  int rc;

  if (nc) {
    qsort(c, nc, sizeof(*c), cmp_cand_tag);
    for (i = 0; i < nc; i++) {
      c[i].keep = (uint8_t)(i == 0 || c[i].tag != c[i - 1u].tag);
      if (!c[i].keep && b->hs) {
        return fail(b, POMELO_ERR_PB_SCHEMA, t, c[i].key, c[i].key_len);
      }
    }
    qsort(c, nc, sizeof(*c), cmp_cand_order);
  }
  for (i = 0; i < nc && c[i].keep; i++) {
    nf++;
  }
  /* the kept ones, in their final order */
  for (i = 0; i < nf; i++) {
    if (bad_name(c[i].name, c[i].name_len, 1)) {
      return fail(b, POMELO_ERR_PB_SCHEMA, t, c[i].key, c[i].key_len);
    }
    if (str_is(c[i].tname, c[i].tname_len, "uInt64") ||
        str_is(c[i].tname, c[i].tname_len, "sInt64")) {
      return fail(b, POMELO_ERR_PB_SCHEMA, t, c[i].key, c[i].key_len);
    }
    rc = count_item(b, t, c[i].key, c[i].key_len);
    if (rc) {
      return rc;
    }
    if (c[i].is_index) {
      nindex++;
    }
  }

  fields = nf ? arena_alloc(p, (size_t)nf * sizeof(*fields)) : NULL;
  hcap = 4;
  while (hcap < 2u * nf) {
    hcap *= 2u;
  }
  by_tag = nf ? arena_alloc(p, (size_t)nf * sizeof(*by_tag)) : NULL;
  hash = nf ? arena_alloc(p, (size_t)hcap * sizeof(*hash)) : NULL;
  req = nf ? arena_alloc(p, (size_t)nf * sizeof(*req)) : NULL;
  if (nf && (!fields || !by_tag || !hash || !req)) {
    return nomem(b);
  }
  if (nf) {
    memset(hash, 0, (size_t)hcap * sizeof(*hash));
    pairs = pm_malloc(&p->alloc, (size_t)nf * sizeof(*pairs));
    if (!pairs) {
      return nomem(b);
    }
  }
  for (i = 0; i < nf; i++) {
    pb_field *f = &fields[i];
    uint32_t j, k;
    memset(f, 0, sizeof(*f));
    f->name = arena_str(p, c[i].name, c[i].name_len);
    f->tname = arena_str(p, c[i].tname, c[i].tname_len);
    if (!f->name || !f->tname) {
      pm_free(&p->alloc, pairs);
      return nomem(b);
    }
    f->name_len = (uint32_t)c[i].name_len;
    f->tname_len = (uint32_t)c[i].tname_len;
    f->tag = c[i].tag;
    f->rule = c[i].rule;
    f->is_index = c[i].is_index;
    f->ival = c[i].ival;
    f->kind = PB_MESSAGE;
    for (k = 0; k < 6; k++) {
      if (str_is(f->tname, f->tname_len, scalar_names[k])) {
        f->kind = (uint8_t)k;
        break;
      }
    }
    if (f->rule == PB_REQUIRED) {
      req[nreq++] = (uint32_t)i;
    }
    pairs[i] = ((uint64_t)f->tag << 32) | (uint64_t)i;
    j = pb_hash(f->name, f->name_len) & (hcap - 1u);
    while (hash[j]) {
      const pb_field *g = &fields[hash[j] - 1u];
      if (g->name_len == f->name_len && memcmp(g->name, f->name, f->name_len) == 0) {
        pm_free(&p->alloc, pairs);
        return fail(b, POMELO_ERR_PB_SCHEMA, t, c[i].key, c[i].key_len);
      }
      j = (j + 1u) & (hcap - 1u);
    }
    hash[j] = (uint32_t)i + 1u;
  }
  if (nf) {
    qsort(pairs, nf, sizeof(*pairs), cmp_u64);
    for (i = 0; i < nf; i++) {
      by_tag[i] = (uint32_t)pairs[i];
    }
    pm_free(&p->alloc, pairs);
  }
  t->fields = fields;
  t->nfields = nf;
  t->nindex = nindex;
  t->by_tag = by_tag;
  t->hash = hash;
  t->hmask = hcap - 1u;
  t->req = req;
  t->nreq = nreq;

  if (nn) {
    pomelo_pb_type **by_name = arena_alloc(p, nn * sizeof(*by_name));
    if (!by_name) {
      return nomem(b);
    }
    qsort(nested, nn, sizeof(*nested), cmp_type_order);
    memcpy(by_name, nested, nn * sizeof(*by_name));
    qsort(by_name, nn, sizeof(*by_name), cmp_type_name);
    t->nested = nested;
    t->nested_by_name = by_name;
    t->nnested = (uint32_t)nn;
  }
  return 0;
}

/* Splits a proto description key on single spaces: the number of parts and the first two
 * (the rest of the key after the second space is the third). */
typedef struct pb_parts {
  size_t n;
  const char *p[3];
  size_t len[3];
} pb_parts;

static void split_key(const char *s, size_t n, pb_parts *out) {
  size_t i, start = 0;
  out->n = 1;
  for (i = 0; i <= n; i++) {
    if (i == n || s[i] == ' ') {
      if (out->n <= 3) {
        out->p[out->n - 1u] = s + start;
        out->len[out->n - 1u] = i - start;
      }
      if (i < n) {
        out->n++;
        start = i + 1u;
      }
    }
  }
}

/* One message of a proto description (pomelo-protobuf lib/parser.js parseObject). */
static int desc_message(pb_build *b, const pomelo_json_value *obj, pomelo_pb_type *t,
                        uint32_t depth) {
  js_mem *m = NULL;
  pb_cand *c = NULL;
  pomelo_pb_type **nested = NULL;
  size_t n, i, nc = 0, nn = 0;
  int rc;

  if (depth > b->p->lim.max_depth) {
    return fail(b, POMELO_ERR_PB_DEPTH, t, NULL, 0);
  }
  if (pomelo_json_typeof(obj) != POMELO_JSON_OBJECT) {
    return fail(b, POMELO_ERR_PB_SCHEMA, t, NULL, 0);
  }
  rc = js_view(&b->p->alloc, obj, &m, &n);
  if (rc) {
    return nomem(b);
  }
  if (n) {
    c = pm_malloc(&b->p->alloc, n * sizeof(*c));
    nested = arena_alloc(b->p, n * sizeof(*nested));
    if (!c || !nested) {
      rc = nomem(b);
      goto out;
    }
  }
  for (i = 0; i < n; i++) {
    pb_parts parts;
    int rule;
    split_key(m[i].key, m[i].klen, &parts);
    if (str_is(parts.p[0], parts.len[0], "message")) {
      pomelo_pb_type *nt;
      if (parts.n != 2) {
        continue;
      }
      if (bad_name(parts.p[1], parts.len[1], 0) ||
          pomelo_json_typeof(m[i].val) != POMELO_JSON_OBJECT) {
        rc = fail(b, POMELO_ERR_PB_SCHEMA, t, m[i].key, m[i].klen);
        goto out;
      }
      rc = count_item(b, t, m[i].key, m[i].klen);
      if (rc) {
        goto out;
      }
      nt = new_type(b, t, parts.p[1], parts.len[1]);
      if (!nt) {
        rc = nomem(b);
        goto out;
      }
      nt->seq = (uint32_t)nn;
      rc = desc_message(b, m[i].val, nt, depth + 1u);
      if (rc) {
        goto out;
      }
      nested[nn++] = nt;
      continue;
    }
    rule = rule_of(parts.p[0], parts.len[0]);
    if (rule < 0 || parts.n != 3) {
      continue; /* not a field: the real parser ignores it */
    }
    memset(&c[nc], 0, sizeof(c[nc]));
    if (tag_of(m[i].val, &c[nc].tag) != 0) {
      rc = fail(b, POMELO_ERR_PB_SCHEMA, t, m[i].key, m[i].klen);
      goto out;
    }
    c[nc].rule = (uint8_t)rule;
    c[nc].tname = parts.p[1];
    c[nc].tname_len = parts.len[1];
    c[nc].name = parts.p[2];
    c[nc].name_len = parts.len[2];
    c[nc].key = m[i].key;
    c[nc].key_len = m[i].klen;
    c[nc].seq = (uint32_t)i;
    c[nc].is_index = (uint8_t)is_array_index(c[nc].name, c[nc].name_len, &c[nc].ival);
    nc++;
  }
  rc = finish_type(b, t, c, nc, nested, nn);
out:
  pm_free(&b->p->alloc, c);
  pm_free(&b->p->alloc, m);
  return rc;
}

/* Checks that "__tags" maps exactly the fields' tags to their names. */
static int hs_check_tags(pb_build *b, const pomelo_pb_type *t, const pomelo_json_value *tags) {
  js_mem *m = NULL;
  size_t n, i;
  int rc = js_view(&b->p->alloc, tags, &m, &n);
  if (rc) {
    return nomem(b);
  }
  if (n != t->nfields) {
    rc = fail(b, POMELO_ERR_PB_SCHEMA, t, "__tags", 6);
  }
  for (i = 0; i < n && !rc; i++) {
    uint32_t tag;
    const pb_field *f;
    size_t sl;
    const char *s = pomelo_json_string(m[i].val, &sl);
    if (!is_array_index(m[i].key, m[i].klen, &tag) || !(f = pb_field_by_tag(t, tag)) || !s ||
        sl != f->name_len || memcmp(s, f->name, sl) != 0) {
      rc = fail(b, POMELO_ERR_PB_SCHEMA, t, "__tags", 6);
    }
  }
  pm_free(&b->p->alloc, m);
  return rc;
}

/* One message of a parsed form ({"x":{"option":..,"type":..,"tag":..},"__messages":{..},
 * "__tags":{..}}), as a client receives it in the handshake. */
static int hs_message(pb_build *b, const pomelo_json_value *obj, pomelo_pb_type *t,
                      uint32_t depth) {
  js_mem *m = NULL, *mm = NULL;
  pb_cand *c = NULL;
  pomelo_pb_type **nested = NULL;
  const pomelo_json_value *tags = NULL;
  size_t n, i, nc = 0, nn = 0, nmm = 0;
  int rc, have_msgs = 0;

  if (depth > b->p->lim.max_depth) {
    return fail(b, POMELO_ERR_PB_DEPTH, t, NULL, 0);
  }
  if (pomelo_json_typeof(obj) != POMELO_JSON_OBJECT) {
    return fail(b, POMELO_ERR_PB_SCHEMA, t, NULL, 0);
  }
  rc = js_view(&b->p->alloc, obj, &m, &n);
  if (rc) {
    return nomem(b);
  }
  if (n) {
    c = pm_malloc(&b->p->alloc, n * sizeof(*c));
    if (!c) {
      rc = nomem(b);
      goto out;
    }
  }
  for (i = 0; i < n; i++) {
    const pomelo_json_value *v = m[i].val;
    if (str_is(m[i].key, m[i].klen, "__messages")) {
      size_t j;
      if (pomelo_json_typeof(v) != POMELO_JSON_OBJECT) {
        rc = fail(b, POMELO_ERR_PB_SCHEMA, t, m[i].key, m[i].klen);
        goto out;
      }
      have_msgs = 1;
      rc = js_view(&b->p->alloc, v, &mm, &nmm);
      if (rc) {
        rc = nomem(b);
        goto out;
      }
      if (nmm) {
        nested = arena_alloc(b->p, nmm * sizeof(*nested));
        if (!nested) {
          rc = nomem(b);
          goto out;
        }
      }
      for (j = 0; j < nmm; j++) {
        pomelo_pb_type *nt;
        if (bad_name(mm[j].key, mm[j].klen, 0)) {
          rc = fail(b, POMELO_ERR_PB_SCHEMA, t, "__messages", 10);
          goto out;
        }
        rc = count_item(b, t, "__messages", 10);
        if (rc) {
          goto out;
        }
        nt = new_type(b, t, mm[j].key, mm[j].klen);
        if (!nt) {
          rc = nomem(b);
          goto out;
        }
        nt->seq = (uint32_t)nn;
        rc = hs_message(b, mm[j].val, nt, depth + 1u);
        if (rc) {
          goto out;
        }
        nested[nn++] = nt;
      }
    } else if (str_is(m[i].key, m[i].klen, "__tags")) {
      if (pomelo_json_typeof(v) != POMELO_JSON_OBJECT) {
        rc = fail(b, POMELO_ERR_PB_SCHEMA, t, m[i].key, m[i].klen);
        goto out;
      }
      tags = v;
    } else {
      const char *opt, *ty;
      size_t ol, tl;
      int rule;
      opt = pomelo_json_string(pomelo_json_get(v, "option"), &ol);
      ty = pomelo_json_string(pomelo_json_get(v, "type"), &tl);
      memset(&c[nc], 0, sizeof(c[nc]));
      if (pomelo_json_typeof(v) != POMELO_JSON_OBJECT || !opt || !ty ||
          (rule = rule_of(opt, ol)) < 0 || tag_of(pomelo_json_get(v, "tag"), &c[nc].tag) != 0) {
        rc = fail(b, POMELO_ERR_PB_SCHEMA, t, m[i].key, m[i].klen);
        goto out;
      }
      c[nc].rule = (uint8_t)rule;
      c[nc].tname = ty;
      c[nc].tname_len = tl;
      c[nc].name = m[i].key;
      c[nc].name_len = m[i].klen;
      c[nc].key = m[i].key;
      c[nc].key_len = m[i].klen;
      c[nc].seq = (uint32_t)i;
      c[nc].is_index = m[i].is_index;
      c[nc].ival = m[i].ival;
      nc++;
    }
  }
  if (!have_msgs) {
    rc = fail(b, POMELO_ERR_PB_SCHEMA, t, "__messages", 10);
    goto out;
  }
  if (!tags) {
    rc = fail(b, POMELO_ERR_PB_SCHEMA, t, "__tags", 6);
    goto out;
  }
  rc = finish_type(b, t, c, nc, nested, nn);
  if (!rc) {
    rc = hs_check_tags(b, t, tags);
  }
out:
  pm_free(&b->p->alloc, c);
  pm_free(&b->p->alloc, mm);
  pm_free(&b->p->alloc, m);
  return rc;
}

/* The top level of one side: every key is a message (a route, or "message X": a global type). */
static int build_side(pb_build *b, const pomelo_json_value *root) {
  pb_side *s = &b->p->side[b->side];
  js_mem *m = NULL;
  size_t n, i;
  int rc;
  if (pomelo_json_typeof(root) != POMELO_JSON_OBJECT) {
    return fail(b, POMELO_ERR_PB_SCHEMA, NULL, NULL, 0);
  }
  rc = js_view(&b->p->alloc, root, &m, &n);
  if (rc) {
    return nomem(b);
  }
  if (n) {
    s->top = arena_alloc(b->p, n * sizeof(*s->top));
    if (!s->top) {
      rc = nomem(b);
      goto out;
    }
  }
  for (i = 0; i < n; i++) {
    pomelo_pb_type *t;
    pm_strmap_ent *e;
    if (bad_name(m[i].key, m[i].klen, 0)) {
      rc = fail(b, POMELO_ERR_PB_SCHEMA, NULL, m[i].key, m[i].klen);
      goto out;
    }
    rc = count_item(b, NULL, m[i].key, m[i].klen);
    if (rc) {
      goto out;
    }
    t = new_type(b, NULL, m[i].key, m[i].klen);
    if (!t) {
      rc = nomem(b);
      goto out;
    }
    rc = b->hs ? hs_message(b, m[i].val, t, 1) : desc_message(b, m[i].val, t, 1);
    if (rc) {
      goto out;
    }
    e = pm_strmap_upsert(&s->map, &b->p->alloc, t->name, t->name_len);
    if (!e) {
      rc = nomem(b);
      goto out;
    }
    e->val = t;
    s->top[s->ntop++] = t;
    if (!(t->name_len >= 8 && memcmp(t->name, "message ", 8) == 0)) {
      s->nroutes++;
    }
  }
out:
  pm_free(&b->p->alloc, m);
  return rc;
}

/* Resolves the message types of the fields of `t` and of its nested types: the nested type of
 * the message that holds the field, else the side's global "message T". */
static int resolve(pb_build *b, pomelo_pb_type *t) {
  pb_side *s = &b->p->side[b->side];
  uint32_t i;
  for (i = 0; i < t->nfields; i++) {
    pb_field *f = &t->fields[i];
    const pomelo_pb_type *r = NULL;
    uint32_t lo = 0, hi = t->nnested;
    if (f->kind != PB_MESSAGE) {
      continue;
    }
    while (lo < hi) {
      uint32_t mid = lo + (hi - lo) / 2u;
      const pomelo_pb_type *x = t->nested_by_name[mid];
      int c = cmp_bytes(x->name, x->name_len, f->tname, f->tname_len);
      if (c == 0) {
        r = x;
        break;
      }
      if (c < 0) {
        lo = mid + 1u;
      } else {
        hi = mid;
      }
    }
    if (!r) {
      char small[256];
      size_t kl = 8u + f->tname_len;
      char *key = kl <= sizeof(small) ? small : pm_malloc(&b->p->alloc, kl);
      pm_strmap_ent *e;
      if (!key) {
        return nomem(b);
      }
      memcpy(key, "message ", 8);
      memcpy(key + 8, f->tname, f->tname_len);
      e = pm_strmap_get(&s->map, key, kl);
      if (key != small) {
        pm_free(&b->p->alloc, key);
      }
      r = e ? e->val : NULL;
    }
    if (!r) {
      if (b->hs) {
        return fail(b, POMELO_ERR_PB_SCHEMA, t, f->name, f->name_len);
      } else {
        char k[128];
        size_t kl = 0;
        const char *rn = rule_names[f->rule];
        path_put(k, &kl, rn, strlen(rn));
        path_put(k, &kl, " ", 1);
        path_put(k, &kl, f->tname, f->tname_len);
        path_put(k, &kl, " ", 1);
        path_put(k, &kl, f->name, f->name_len);
        return fail(b, POMELO_ERR_PB_SCHEMA, t, k, kl);
      }
    }
    f->msg = r;
  }
  for (i = 0; i < t->nnested; i++) {
    int rc = resolve(b, t->nested[i]);
    if (rc) {
      return rc;
    }
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The parsed form as JSON
 * ------------------------------------------------------------------------------------------- */

static int write_lit(pomelo_json_writer *w, const char *s) {
  return pomelo_json_write_key(w, s, strlen(s));
}

static int emit_type(pomelo_json_writer *w, const pomelo_pb_type *t) {
  uint32_t i;
  int rc = pomelo_json_write_begin_object(w);
  for (i = 0; i < t->nfields && !rc; i++) {
    const pb_field *f = &t->fields[i];
    const char *rn = rule_names[f->rule];
    rc = pomelo_json_write_key(w, f->name, f->name_len);
    rc = rc ? rc : pomelo_json_write_begin_object(w);
    rc = rc ? rc : write_lit(w, "option");
    rc = rc ? rc : pomelo_json_write_string(w, rn, strlen(rn));
    rc = rc ? rc : write_lit(w, "type");
    rc = rc ? rc : pomelo_json_write_string(w, f->tname, f->tname_len);
    rc = rc ? rc : write_lit(w, "tag");
    rc = rc ? rc : pomelo_json_write_uint64(w, f->tag);
    rc = rc ? rc : pomelo_json_write_end_object(w);
  }
  rc = rc ? rc : write_lit(w, "__messages");
  rc = rc ? rc : pomelo_json_write_begin_object(w);
  for (i = 0; i < t->nnested && !rc; i++) {
    rc = pomelo_json_write_key(w, t->nested[i]->name, t->nested[i]->name_len);
    rc = rc ? rc : emit_type(w, t->nested[i]);
  }
  rc = rc ? rc : pomelo_json_write_end_object(w);
  rc = rc ? rc : write_lit(w, "__tags");
  rc = rc ? rc : pomelo_json_write_begin_object(w);
  for (i = 0; i < t->nfields && !rc; i++) {
    const pb_field *f = &t->fields[t->by_tag[i]];
    char num[24];
    size_t nl = pm_json_format_u64(f->tag, num);
    rc = pomelo_json_write_key(w, num, nl);
    rc = rc ? rc : pomelo_json_write_string(w, f->name, f->name_len);
  }
  rc = rc ? rc : pomelo_json_write_end_object(w);
  return rc ? rc : pomelo_json_write_end_object(w);
}

static int emit_side(pomelo_json_writer *w, const pb_side *s) {
  uint32_t i;
  int rc = pomelo_json_write_begin_object(w);
  for (i = 0; i < s->ntop && !rc; i++) {
    rc = pomelo_json_write_key(w, s->top[i]->name, s->top[i]->name_len);
    rc = rc ? rc : emit_type(w, s->top[i]);
  }
  return rc ? rc : pomelo_json_write_end_object(w);
}

static char *dup_bytes(const pomelo_allocator *a, const char *s, size_t n) {
  char *d = pm_malloc(a, n + 1u);
  if (d) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

/* Writes both sides' parsed forms, the version (computed when `version` is NULL) and the
 * handshake value. */
static int make_json(pb_build *b, const char *version, size_t vlen) {
  pomelo_protos *p = b->p;
  pomelo_json_writer *w = NULL;
  const char *d;
  size_t n;
  int rc, k;
  rc = pomelo_json_writer_new(&w, &p->alloc, 2u * p->lim.max_depth + 8u);
  if (rc) {
    return nomem(b);
  }
  for (k = 0; k < 2 && !rc; k++) {
    pomelo_json_writer_reset(w);
    rc = emit_side(w, &p->side[k]);
    if (!rc) {
      d = pomelo_json_writer_data(w, &n);
      p->side[k].json = dup_bytes(&p->alloc, d, n);
      p->side[k].json_len = n;
      rc = p->side[k].json ? 0 : POMELO_ERR_NOMEM;
    }
  }
  if (!rc) {
    if (version) {
      p->version = dup_bytes(&p->alloc, version, vlen);
    } else {
      /* lib/components/protobuf.js: md5(JSON(client) + JSON(server)), base64 */
      pm_md5 md5;
      uint8_t dig[16];
      pm_md5_init(&md5);
      pm_md5_update(&md5, p->side[POMELO_PROTOS_CLIENT].json,
                    p->side[POMELO_PROTOS_CLIENT].json_len);
      pm_md5_update(&md5, p->side[POMELO_PROTOS_SERVER].json,
                    p->side[POMELO_PROTOS_SERVER].json_len);
      pm_md5_final(&md5, dig);
      p->version = pm_malloc(&p->alloc, 25);
      if (p->version) {
        pm_base64_encode(dig, 16, p->version);
        vlen = 24;
      }
    }
    rc = p->version ? 0 : POMELO_ERR_NOMEM;
  }
  if (!rc) {
    pomelo_json_writer_reset(w);
    rc = pomelo_json_write_begin_object(w);
    rc = rc ? rc : write_lit(w, "server");
    rc = rc ? rc : emit_side(w, &p->side[POMELO_PROTOS_SERVER]);
    rc = rc ? rc : write_lit(w, "client");
    rc = rc ? rc : emit_side(w, &p->side[POMELO_PROTOS_CLIENT]);
    rc = rc ? rc : write_lit(w, "version");
    rc = rc ? rc : pomelo_json_write_string(w, p->version, vlen);
    rc = rc ? rc : pomelo_json_write_end_object(w);
    if (!rc) {
      d = pomelo_json_writer_data(w, &n);
      p->json = dup_bytes(&p->alloc, d, n);
      p->json_len = n;
      rc = p->json ? 0 : POMELO_ERR_NOMEM;
    }
  }
  pomelo_json_writer_del(w);
  if (rc == POMELO_ERR_NOMEM) {
    return nomem(b);
  }
  if (rc) {
    /* a version that is not UTF-8 (from a handshake), or a depth the writer refused */
    return fail(b, rc == POMELO_ERR_JSON_DEPTH ? POMELO_ERR_PB_DEPTH : POMELO_ERR_PB_SCHEMA, NULL,
                NULL, 0);
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Public API
 * ------------------------------------------------------------------------------------------- */

static int start(pomelo_protos **out, const pomelo_allocator *alloc, const pomelo_pb_limits *lim,
                 pomelo_pb_error *err) {
  pomelo_allocator a;
  pomelo_protos *p;
  pb_err(err, 0, 0, NULL, 0);
  if (!out) {
    pb_err(err, POMELO_ERR_INVALID_ARG, 0, NULL, 0);
    return POMELO_ERR_INVALID_ARG;
  }
  *out = NULL;
  if (lim && (lim->max_depth == 0 || lim->max_depth > PB_DEPTH_CAP)) {
    pb_err(err, POMELO_ERR_INVALID_ARG, 0, NULL, 0);
    return POMELO_ERR_INVALID_ARG;
  }
  pm_alloc_init(&a, alloc);
  p = pm_calloc(&a, sizeof(*p));
  if (!p) {
    pb_err(err, POMELO_ERR_NOMEM, 0, NULL, 0);
    return POMELO_ERR_NOMEM;
  }
  p->alloc = a;
  if (lim) {
    p->lim = *lim;
  } else {
    pomelo_pb_limits_default(&p->lim);
  }
  pm_strmap_init(&p->side[0].map);
  pm_strmap_init(&p->side[1].map);
  *out = p;
  return 0;
}

static int finish(pb_build *b, pomelo_protos **out, int rc, const char *version, size_t vlen) {
  int k;
  for (k = 0; k < 2 && !rc; k++) {
    uint32_t i;
    b->side = k;
    for (i = 0; i < b->p->side[k].ntop && !rc; i++) {
      rc = resolve(b, b->p->side[k].top[i]);
    }
  }
  if (!rc) {
    rc = make_json(b, version, vlen);
  }
  if (rc) {
    pomelo_protos_del(b->p);
    *out = NULL;
    return rc;
  }
  *out = b->p;
  return 0;
}

/* Parses one side's proto description text. */
static int desc_side(pb_build *b, const char *json, size_t len) {
  pomelo_json_options o;
  pomelo_json_doc *doc = NULL;
  size_t off = 0;
  int rc;
  if (!json || len == 0) {
    return 0;
  }
  if (len > b->p->lim.max_schema) {
    pb_err(b->err, POMELO_ERR_LIMIT, b->p->lim.max_schema, b->side ? "client" : "server", 6);
    return POMELO_ERR_LIMIT;
  }
  pomelo_json_options_default(&o);
  o.max_size = len;
  /* deep enough for max_depth messages (one level each, below the top object), and no less
   * than the JSON default, so a schema too deep gets POMELO_ERR_PB_DEPTH with its path */
  o.max_depth = b->p->lim.max_depth + 2u < 64u ? 64u : b->p->lim.max_depth + 2u;
  rc = pomelo_json_parse(&doc, &b->p->alloc, json, len, &o, &off);
  if (rc) {
    pb_err(b->err, rc, rc == POMELO_ERR_NOMEM ? 0 : off, b->side ? "client" : "server", 6);
    return rc;
  }
  rc = build_side(b, pomelo_json_root(doc));
  pomelo_json_doc_del(doc);
  return rc;
}

/* The answer to arguments that cannot be used: nothing made. */
static int bad_args(pomelo_protos **out, pomelo_pb_error *err) {
  pb_err(err, POMELO_ERR_INVALID_ARG, 0, NULL, 0);
  if (out) {
    *out = NULL;
  }
  return POMELO_ERR_INVALID_ARG;
}

int pomelo_protos_new(pomelo_protos **out, const pomelo_allocator *alloc, const char *server_json,
                      size_t server_len, const char *client_json, size_t client_len,
                      const pomelo_pb_limits *lim, pomelo_pb_error *err) {
  pb_build b;
  int rc;
  if ((!server_json && server_len) || (!client_json && client_len)) {
    return bad_args(out, err);
  }
  rc = start(out, alloc, lim, err);
  if (rc) {
    return rc;
  }
  b.p = *out;
  b.err = err;
  b.hs = 0;
  b.side = POMELO_PROTOS_SERVER;
  rc = desc_side(&b, server_json, server_len);
  if (!rc) {
    b.side = POMELO_PROTOS_CLIENT;
    rc = desc_side(&b, client_json, client_len);
  }
  return finish(&b, out, rc, NULL, 0);
}

int pomelo_protos_from_handshake(pomelo_protos **out, const pomelo_allocator *alloc,
                                 const pomelo_json_value *protos, const pomelo_pb_limits *lim,
                                 pomelo_pb_error *err) {
  pb_build b;
  const pomelo_json_value *v;
  const char *ver = NULL;
  size_t vlen = 0;
  int rc, k;
  if (!protos) {
    return bad_args(out, err);
  }
  rc = start(out, alloc, lim, err);
  if (rc) {
    return rc;
  }
  b.p = *out;
  b.err = err;
  b.hs = 1;
  b.side = 0;
  if (pomelo_json_typeof(protos) != POMELO_JSON_OBJECT) {
    pb_err(err, POMELO_ERR_PB_SCHEMA, 0, NULL, 0);
    rc = POMELO_ERR_PB_SCHEMA;
  }
  for (k = 0; k < 2 && !rc; k++) {
    b.side = k;
    v = pomelo_json_get(protos, k ? "client" : "server");
    if (v) {
      rc = build_side(&b, v);
    }
  }
  if (!rc) {
    v = pomelo_json_get(protos, "version");
    if (v) {
      ver = pomelo_json_string(v, &vlen);
      if (!ver) {
        pb_err(err, POMELO_ERR_PB_SCHEMA, 0, "version", 7);
        rc = POMELO_ERR_PB_SCHEMA;
      }
    }
  }
  return finish(&b, out, rc, ver, vlen);
}

void pomelo_protos_del(pomelo_protos *p) {
  pb_chunk *c;
  int k;
  if (!p) {
    return;
  }
  for (k = 0; k < 2; k++) {
    pm_strmap_fini(&p->side[k].map, &p->alloc);
    pm_free(&p->alloc, p->side[k].json);
  }
  pm_free(&p->alloc, p->json);
  pm_free(&p->alloc, p->version);
  for (c = p->chunks; c;) {
    pb_chunk *next = c->next;
    pm_free(&p->alloc, c);
    c = next;
  }
  pm_free(&p->alloc, p);
}

const char *pomelo_protos_version(const pomelo_protos *p) {
  return p ? p->version : NULL;
}

const char *pomelo_protos_json(const pomelo_protos *p, size_t *len) {
  if (len) {
    *len = p ? p->json_len : 0;
  }
  return p ? p->json : NULL;
}

const char *pomelo_protos_side_json(const pomelo_protos *p, pomelo_protos_side side, size_t *len) {
  int ok = p && (side == POMELO_PROTOS_SERVER || side == POMELO_PROTOS_CLIENT);
  if (len) {
    *len = ok ? p->side[side].json_len : 0;
  }
  return ok ? p->side[side].json : NULL;
}

size_t pomelo_protos_count(const pomelo_protos *p, pomelo_protos_side side) {
  if (!p || (side != POMELO_PROTOS_SERVER && side != POMELO_PROTOS_CLIENT)) {
    return 0;
  }
  return p->side[side].nroutes;
}

const pomelo_pb_type *pomelo_protos_find(const pomelo_protos *p, pomelo_protos_side side,
                                         const char *route, size_t len) {
  pm_strmap_ent *e;
  if (!p || (side != POMELO_PROTOS_SERVER && side != POMELO_PROTOS_CLIENT) || (!route && len)) {
    return NULL;
  }
  e = pm_strmap_get(&p->side[side].map, route ? route : "", len);
  return e ? e->val : NULL;
}
