/* pomelo-protobuf bodies (spec 7.4): the encoder of the real server (lib/encoder.js) and the
 * decoder both JS codecs share (lib/decoder.js), with the differences docs/protobuf.md lists.
 *
 * The encoder writes backwards from the end of the caller's buffer: a nested message is
 * written before its length prefix, so every byte is produced once and no size is computed
 * twice, whatever the nesting. Measuring is the same walk without stores. The field order is
 * JavaScript's key order of the object (array-index keys first, ascending; a duplicate key
 * keeps its first place and its last value), kept in a small per-level table of first/last
 * member positions (on the C stack unless the message has many fields).
 *
 * The decoder reads the whole body into a flat list of values first (a repeated field gathers
 * its elements wherever they appear; any other field seen twice keeps its last value at its
 * first place), then writes the JSON. Memory grows with the bytes read, never with a length or
 * count read from them.
 * SPDX-License-Identifier: MIT
 */
#include <pomelo/protobuf.h>

#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "json/json_int.h"
#include "proto/pb_int.h"

/* A step of the path to the value being worked on, for error reports: the field, and the
 * element index inside a repeated field (SIZE_MAX when none). */
typedef struct pb_path {
  const struct pb_path *up;
  const pb_field *f;
  size_t idx;
} pb_path;

static int path_err(pomelo_pb_error *err, int code, size_t offset, const pb_path *p) {
  const pb_path *chain[PB_DEPTH_CAP + 2u];
  char buf[128];
  size_t n = 0, len = 0;
  if (!err) {
    return code;
  }
  for (; p && n < PM_ARRAY_LEN(chain); p = p->up) {
    chain[n++] = p;
  }
  while (n-- && len < 127u) {
    size_t room = 127u - len, l;
    if (len) {
      buf[len++] = '.';
      room--;
    }
    l = chain[n]->f->name_len < room ? chain[n]->f->name_len : room;
    memcpy(buf + len, chain[n]->f->name, l);
    len += l;
    if (chain[n]->idx != SIZE_MAX && len < 127u) {
      char num[32];
      size_t k = 0;
      num[k++] = '[';
      k += pm_json_format_u64(chain[n]->idx, num + k);
      num[k++] = ']';
      l = k < 127u - len ? k : 127u - len;
      memcpy(buf + len, num, l);
      len += l;
    }
  }
  pb_err(err, code, offset, buf, len);
  return code;
}

/* ---------------------------------------------------------------------------------------------
 * Encoder
 * ------------------------------------------------------------------------------------------- */

#define PB_ST_INLINE 512u

typedef struct pb_enc {
  uint8_t *buf;
  size_t cap;
  size_t pos; /* bytes produced so far (they end at buf + cap) */
  int over;   /* stores stopped: measuring, or the buffer is too small */
  unsigned flags;
  uint32_t max_depth;
  pomelo_pb_error *err;
  const pomelo_allocator *a;
  /* Per-level tables (first and last member + 1 of each field), as a stack; every word at or
   * above `st_top` and below `st_hw` is zero. */
  uint32_t *st;
  size_t st_cap, st_top, st_hw;
  uint32_t st_inline[PB_ST_INLINE];
} pb_enc;

/* Room for `n` more bytes before those produced; NULL when not storing. */
static uint8_t *enc_room(pb_enc *e, size_t n) {
  e->pos += n;
  if (e->over || !e->buf) {
    return NULL; /* measuring (no buffer), or it no longer fits */
  }
  if (e->pos > e->cap) {
    e->over = 1;
    return NULL;
  }
  return e->buf + (e->cap - e->pos);
}

static void enc_varint(pb_enc *e, uint64_t v) {
  uint8_t tmp[10], *d;
  size_t n = 0;
  do {
    uint8_t b = (uint8_t)(v & 0x7Fu);
    v >>= 7;
    tmp[n++] = (uint8_t)(v ? b | 0x80u : b);
  } while (v);
  d = enc_room(e, n);
  if (d) {
    memcpy(d, tmp, n);
  }
}

static void enc_le(pb_enc *e, uint64_t bits, size_t n) {
  uint8_t *d = enc_room(e, n);
  size_t i;
  if (d) {
    for (i = 0; i < n; i++) {
      d[i] = (uint8_t)(bits >> (8u * i));
    }
  }
}

static void enc_key(pb_enc *e, const pb_field *f) {
  enc_varint(e, ((uint64_t)f->tag << 3) | pb_kind_wire(f->kind));
}

/* Reserves `words` zeroed words on the table stack; returns the base index, or SIZE_MAX. */
static size_t st_push(pb_enc *e, size_t words) {
  size_t base = e->st_top, need;
  if (words > (SIZE_MAX / sizeof(uint32_t)) / 2u - base) {
    return SIZE_MAX;
  }
  need = base + words;
  if (need > e->st_cap) {
    size_t ncap = e->st_cap * 2u > need ? e->st_cap * 2u : need;
    uint32_t *n = pm_malloc(e->a, ncap * sizeof(*n));
    if (!n) {
      return SIZE_MAX;
    }
    memcpy(n, e->st, base * sizeof(*n));
    memset(n + base, 0, (ncap - base) * sizeof(*n));
    if (e->st != e->st_inline) {
      pm_free(e->a, e->st);
    }
    e->st = n;
    e->st_cap = ncap;
    e->st_hw = ncap;
  }
  if (need > e->st_hw) {
    memset(e->st + e->st_hw, 0, (need - e->st_hw) * sizeof(*e->st));
    e->st_hw = need;
  }
  e->st_top = need;
  return base;
}

#define PB_2_52 4503599627370496

/* An integer from a JSON number (integral, judged on its text) or a string of ASCII digits with
 * an optional '-' (as parseInt reads one). Returns 0 or -1. */
static int int_of(const pomelo_json_value *v, int64_t lo, int64_t hi, int64_t *out) {
  int64_t x = 0;
  if (pomelo_json_typeof(v) == POMELO_JSON_NUMBER) {
    if (pomelo_json_int64(v, &x) != 0) {
      return -1;
    }
  } else if (pomelo_json_typeof(v) == POMELO_JSON_STRING) {
    size_t n, i = 0;
    const char *s = pomelo_json_string(v, &n);
    int neg = 0;
    if (n && s[0] == '-') {
      neg = 1;
      i = 1;
    }
    if (i == n) {
      return -1;
    }
    for (; i < n; i++) {
      if (s[i] < '0' || s[i] > '9') {
        return -1;
      }
      x = x * 10 + (s[i] - '0');
      if (x > ((int64_t)1 << 53)) {
        return -1;
      }
    }
    if (neg) {
      x = -x;
    }
  } else {
    return -1;
  }
  if (x < lo || x > hi) {
    return -1;
  }
  *out = x;
  return 0;
}

/* A double as the nearest float, as Math.fround and Float32Array round it (the cast alone
 * would be undefined beyond the float range). */
static uint32_t float_bits(double d) {
  float f;
  uint32_t bits;
  if (d >= 0x1.ffffffp127) {
    f = HUGE_VALF;
  } else if (d <= -0x1.ffffffp127) {
    f = -HUGE_VALF;
  } else if (d > (double)FLT_MAX) {
    f = FLT_MAX;
  } else if (d < -(double)FLT_MAX) {
    f = -FLT_MAX;
  } else {
    f = (float)d;
  }
  memcpy(&bits, &f, sizeof(bits));
  return bits;
}

static int enc_scalar(pb_enc *e, unsigned kind, const pomelo_json_value *v, const pb_path *path) {
  int64_t x;
  switch (kind) {
  case PB_UINT32:
    if (int_of(v, 0, (int64_t)1 << 53, &x) != 0) {
      return path_err(e->err, POMELO_ERR_PB_TYPE, 0, path);
    }
    enc_varint(e, (uint64_t)x);
    return 0;
  case PB_INT32:
  case PB_SINT32:
    if (int_of(v, -PB_2_52, PB_2_52, &x) != 0) {
      return path_err(e->err, POMELO_ERR_PB_TYPE, 0, path);
    }
    enc_varint(e, x < 0 ? (uint64_t)(-x) * 2u - 1u : (uint64_t)x * 2u);
    return 0;
  case PB_FLOAT:
  case PB_DOUBLE: {
    double d;
    uint64_t bits;
    if (pomelo_json_typeof(v) != POMELO_JSON_NUMBER) {
      return path_err(e->err, POMELO_ERR_PB_TYPE, 0, path);
    }
    d = pomelo_json_number(v);
    if (kind == PB_FLOAT) {
      enc_le(e, float_bits(d), 4);
    } else {
      memcpy(&bits, &d, sizeof(bits));
      enc_le(e, bits, 8);
    }
    return 0;
  }
  default:
    return path_err(e->err, POMELO_ERR_INTERNAL, 0, path);
  }
}

/* Writes `s` (valid UTF-8) with each 4-byte sequence as two 3-byte surrogate sequences. */
static void cesu8_put(uint8_t *d, const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (s[i] >= 0xF0u && i + 3u < n) {
      uint32_t cp = ((uint32_t)(s[i] & 0x07u) << 18) | ((uint32_t)(s[i + 1u] & 0x3Fu) << 12) |
                    ((uint32_t)(s[i + 2u] & 0x3Fu) << 6) | (s[i + 3u] & 0x3Fu);
      uint32_t u[2];
      int k;
      cp -= 0x10000u;
      u[0] = 0xD800u + (cp >> 10);
      u[1] = 0xDC00u + (cp & 0x3FFu);
      for (k = 0; k < 2; k++) {
        *d++ = (uint8_t)(0xE0u | (u[k] >> 12));
        *d++ = (uint8_t)(0x80u | ((u[k] >> 6) & 0x3Fu));
        *d++ = (uint8_t)(0x80u | (u[k] & 0x3Fu));
      }
      i += 4u;
    } else {
      *d++ = s[i++];
    }
  }
}

static int enc_string(pb_enc *e, const pomelo_json_value *v, const pb_path *path) {
  size_t n, out, i;
  const char *s = pomelo_json_string(v, &n);
  uint8_t *d;
  if (!s) {
    return path_err(e->err, POMELO_ERR_PB_TYPE, 0, path);
  }
  out = n;
  if (e->flags & POMELO_PB_CESU8) {
    for (i = 0; i < n; i++) {
      if ((uint8_t)s[i] >= 0xF0u) {
        out += 2u;
      }
    }
  }
  d = enc_room(e, out);
  if (d) {
    if (out == n) {
      memcpy(d, s, n);
    } else {
      cesu8_put(d, (const uint8_t *)s, n);
    }
  }
  enc_varint(e, out);
  return 0;
}

static int enc_msg(pb_enc *e, const pomelo_pb_type *t, const pomelo_json_value *obj, uint32_t depth,
                   const pb_path *up);

/* One value of field `f` (not a whole repeated field). */
static int enc_value(pb_enc *e, const pb_field *f, const pomelo_json_value *v, uint32_t depth,
                     const pb_path *path) {
  size_t end;
  int rc;
  if (pb_kind_is_scalar(f->kind)) {
    return enc_scalar(e, f->kind, v, path);
  }
  if (f->kind == PB_STRING) {
    return enc_string(e, v, path);
  }
  if (pomelo_json_typeof(v) != POMELO_JSON_OBJECT) {
    return path_err(e->err, POMELO_ERR_PB_TYPE, 0, path);
  }
  if (depth + 1u > e->max_depth) {
    return path_err(e->err, POMELO_ERR_PB_DEPTH, 0, path);
  }
  end = e->pos;
  rc = enc_msg(e, f->msg, v, depth + 1u, path);
  if (rc) {
    return rc;
  }
  enc_varint(e, e->pos - end);
  return 0;
}

/* Field `f` with its value `v` (backwards: value, then key). */
static int enc_field(pb_enc *e, const pb_field *f, const pomelo_json_value *v, uint32_t depth,
                     const pb_path *up) {
  pb_path here;
  size_t n, j;
  int rc;
  here.up = up;
  here.f = f;
  here.idx = SIZE_MAX;
  if (f->rule != PB_REPEATED) {
    rc = enc_value(e, f, v, depth, &here);
    if (!rc) {
      enc_key(e, f);
    }
    return rc;
  }
  if (pomelo_json_typeof(v) == POMELO_JSON_NULL) {
    return 0; /* as the JS encoder: a falsy repeated value is left out */
  }
  if (pomelo_json_typeof(v) != POMELO_JSON_ARRAY) {
    return path_err(e->err, POMELO_ERR_PB_TYPE, 0, &here);
  }
  n = pomelo_json_len(v);
  if (n == 0) {
    return 0;
  }
  if (pb_kind_is_scalar(f->kind)) {
    /* one key, the element count, the elements */
    for (j = n; j-- > 0;) {
      here.idx = j;
      rc = enc_scalar(e, f->kind, pomelo_json_at(v, j), &here);
      if (rc) {
        return rc;
      }
    }
    enc_varint(e, n);
    enc_key(e, f);
    return 0;
  }
  for (j = n; j-- > 0;) {
    here.idx = j;
    rc = enc_value(e, f, pomelo_json_at(v, j), depth, &here);
    if (rc) {
      return rc;
    }
    enc_key(e, f);
  }
  return 0;
}

static const pb_field *member_field(const pomelo_pb_type *t, const pomelo_json_value *obj,
                                    size_t i) {
  size_t kl;
  const char *k = pomelo_json_key_at(obj, i, &kl);
  return pb_field_by_name(t, k, kl);
}

static int enc_msg(pb_enc *e, const pomelo_pb_type *t, const pomelo_json_value *obj, uint32_t depth,
                   const pb_path *up) {
  size_t n = pomelo_json_len(obj), i, base;
  uint32_t k = t->nfields, r;
  int rc = 0;
  if (k == 0) {
    return 0;
  }
  base = st_push(e, 2u * (size_t)k);
  if (base == SIZE_MAX) {
    pb_err(e->err, POMELO_ERR_NOMEM, 0, NULL, 0);
    return POMELO_ERR_NOMEM;
  }
  /* first and last member of each field */
  for (i = 0; i < n; i++) {
    const pb_field *f = member_field(t, obj, i);
    if (f) {
      uint32_t *s = e->st + base + 2u * (size_t)(f - t->fields);
      if (!s[0]) {
        s[0] = (uint32_t)i + 1u;
      }
      s[1] = (uint32_t)i + 1u;
    }
  }
  for (r = 0; r < t->nreq; r++) {
    if (!e->st[base + 2u * (size_t)t->req[r]]) {
      pb_path here;
      here.up = up;
      here.f = &t->fields[t->req[r]];
      here.idx = SIZE_MAX;
      rc = path_err(e->err, POMELO_ERR_PB_REQUIRED, 0, &here);
      goto out;
    }
  }
  /* backwards: the other fields by first appearance, then the array-index names */
  for (i = n; i-- > 0;) {
    const pb_field *f = member_field(t, obj, i);
    if (f && !f->is_index) {
      size_t s = base + 2u * (size_t)(f - t->fields);
      if (e->st[s] == i + 1u) {
        rc = enc_field(e, f, pomelo_json_at(obj, e->st[s + 1u] - 1u), depth, up);
        if (rc) {
          goto out;
        }
      }
    }
  }
  for (r = t->nindex; r-- > 0;) {
    size_t s = base + 2u * (size_t)r;
    if (e->st[s]) {
      rc = enc_field(e, &t->fields[r], pomelo_json_at(obj, e->st[s + 1u] - 1u), depth, up);
      if (rc) {
        goto out;
      }
    }
  }
out:
  /* leave the words zero for the next user */
  if (2u * (size_t)k <= 4u * n) {
    memset(e->st + base, 0, 2u * (size_t)k * sizeof(*e->st));
  } else {
    for (i = 0; i < n; i++) {
      const pb_field *f = member_field(t, obj, i);
      if (f) {
        size_t s = base + 2u * (size_t)(f - t->fields);
        e->st[s] = 0;
        e->st[s + 1u] = 0;
      }
    }
  }
  e->st_top = base;
  return rc;
}

int pomelo_pb_encode(const pomelo_pb_type *t, const pomelo_json_value *value, unsigned flags,
                     uint8_t *buf, size_t cap, size_t *out_len, pomelo_pb_error *err) {
  pb_enc *e;
  pb_enc local;
  int rc;
  pb_err(err, 0, 0, NULL, 0);
  if (!t || !value || !out_len || (!buf && cap) ||
      pomelo_json_typeof(value) != POMELO_JSON_OBJECT) {
    pb_err(err, POMELO_ERR_INVALID_ARG, 0, NULL, 0);
    return POMELO_ERR_INVALID_ARG;
  }
  e = &local;
  e->buf = buf;
  e->cap = buf ? cap : 0;
  e->pos = 0;
  e->over = 0;
  e->flags = flags;
  e->max_depth = t->set->lim.max_depth;
  e->err = err;
  e->a = &t->set->alloc;
  e->st = e->st_inline;
  e->st_cap = PB_ST_INLINE;
  e->st_top = 0;
  e->st_hw = 0;
  rc = enc_msg(e, t, value, 1, NULL);
  if (e->st != e->st_inline) {
    pm_free(e->a, e->st);
  }
  if (rc) {
    return rc;
  }
  *out_len = e->pos;
  if (!buf) {
    return 0;
  }
  if (e->over) {
    pb_err(err, POMELO_ERR_BUFFER_TOO_SMALL, 0, NULL, 0);
    return POMELO_ERR_BUFFER_TOO_SMALL;
  }
  if (e->pos && e->pos < cap) {
    memmove(buf, buf + (cap - e->pos), e->pos);
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Decoder
 * ------------------------------------------------------------------------------------------- */

enum { DV_NUM = 0, DV_STR_IN = 1, DV_STR_BUF = 2, DV_MSG = 3 };

/* A decoded value. Index 0 of the value and entry arrays means "none". */
typedef struct pb_dval {
  union {
    double d;
    struct {
      uint32_t off, len; /* in the input (DV_STR_IN) or the repaired-string buffer */
    } s;
    struct {
      uint32_t first, last; /* the message's entries in first-appearance order */
    } m;
  } u;
  uint32_t next;  /* the next element of a repeated field */
  uint32_t count; /* DV_MSG: entries */
  uint8_t kind;
  uint8_t has_index; /* DV_MSG: an entry's field name is an array index */
} pb_dval;

/* A field present in a decoded message: its value, or its elements. */
typedef struct pb_dent {
  const pb_field *f;
  uint32_t head, tail;
  uint32_t next;
  uint32_t count; /* elements */
} pb_dent;

/* A message with more entries than this finds its entries through the map, else by a scan. */
#define PB_SCAN_MAX 8u

typedef struct pb_dec {
  const uint8_t *data;
  size_t len;
  const pomelo_allocator *a;
  uint32_t max_depth;
  pomelo_pb_error *err;
  pb_dval *v;
  uint32_t nv, cv;
  pb_dent *e;
  uint32_t ne, ce;
  uint8_t *sb; /* repaired strings */
  size_t sn, sc;
  pm_idmap idx;  /* (message value << 32 | field index + 1) -> entry */
  uint64_t *tmp; /* emission: the array-index entries of the messages being written */
  size_t ntmp, ctmp;
} pb_dec;

static int dec_nomem(pb_dec *d) {
  pb_err(d->err, POMELO_ERR_NOMEM, 0, NULL, 0);
  return POMELO_ERR_NOMEM;
}

static int grow(const pomelo_allocator *a, void **p, uint32_t *cap, uint32_t need, size_t size) {
  uint32_t ncap;
  void *np;
  if (need <= *cap) {
    return 0;
  }
  ncap = *cap ? *cap : 16u;
  while (ncap < need) {
    if (ncap > UINT32_MAX / 2u) {
      return POMELO_ERR_NOMEM;
    }
    ncap *= 2u;
  }
  if ((size_t)ncap > SIZE_MAX / size) {
    return POMELO_ERR_NOMEM;
  }
  np = pm_realloc(a, *p, (size_t)ncap * size);
  if (!np) {
    return POMELO_ERR_NOMEM;
  }
  *p = np;
  *cap = ncap;
  return 0;
}

/* A new value; returns its index, or 0 when out of memory. */
static uint32_t new_val(pb_dec *d, unsigned kind) {
  pb_dval *x;
  if (d->nv == UINT32_MAX || grow(d->a, (void **)&d->v, &d->cv, d->nv + 1u, sizeof(*d->v)) != 0) {
    return 0;
  }
  x = &d->v[d->nv];
  memset(x, 0, sizeof(*x));
  x->kind = (uint8_t)kind;
  return d->nv++;
}

/* Reads a varint ending before `end`: its value, and the double the JS codecs compute for it
 * (the sum of each 7-bit group times its power of two, rounded at each step). */
static int dec_varint(pb_dec *d, size_t *pos, size_t end, uint64_t *out, double *js,
                      const pb_path *path) {
  uint64_t v = 0;
  size_t start = *pos, p = *pos;
  unsigned i;
  for (i = 0;; i++) {
    uint8_t b;
    if (p >= end) {
      return path_err(d->err, POMELO_ERR_PB_TRUNCATED, p, path);
    }
    b = d->data[p++];
    if (i == 9u && b > 1u) {
      return path_err(d->err, POMELO_ERR_PB_VARINT, start, path);
    }
    v |= (uint64_t)(b & 0x7Fu) << (7u * i);
    if (b < 0x80u) {
      break;
    }
  }
  *pos = p;
  *out = v;
  if (js) {
    if (v < ((uint64_t)1 << 53)) {
      *js = (double)v; /* every partial sum is exact below 2^53: the same double */
    } else {
      double n = 0;
      size_t q;
      for (q = start, i = 0; q < p; q++, i++) {
        n = n + ldexp((double)(d->data[q] & 0x7Fu), (int)(7u * i));
      }
      *js = n;
    }
  }
  return 0;
}

/* Checks the string of `n` bytes at `s`: 0 when it is UTF-8, 1 when it holds CESU-8 surrogates
 * to rewrite, or POMELO_ERR_PB_UTF8 with the offset of the bad sequence in `*bad`. */
static int str_check(const uint8_t *s, size_t n, size_t *bad) {
  size_t i = 0;
  int repair = 0;
  while (i < n) {
    uint32_t cp;
    int k;
    if (s[i] < 0x80u) {
      i++;
      continue;
    }
    k = pm_utf8_seq(s + i, n - i, &cp);
    if (k == PM_UTF8_BAD) {
      *bad = i;
      return POMELO_ERR_PB_UTF8;
    }
    if (k == PM_UTF8_SURROGATE) {
      repair = 1;
      k = 3;
    }
    i += (size_t)k;
  }
  return repair;
}

/* Rewrites CESU-8: a high surrogate followed by a low one becomes the 4-byte UTF-8 of its
 * character, any other surrogate U+FFFD. `d` has room for `n` bytes; returns the length. */
static size_t str_repair(uint8_t *d, const uint8_t *s, size_t n) {
  size_t i = 0, o = 0;
  while (i < n) {
    uint32_t cp, lo;
    int k;
    if (s[i] < 0x80u) {
      d[o++] = s[i++];
      continue;
    }
    k = pm_utf8_seq(s + i, n - i, &cp);
    if (k != PM_UTF8_SURROGATE) {
      memcpy(d + o, s + i, (size_t)k);
      o += (size_t)k;
      i += (size_t)k;
      continue;
    }
    if (cp < 0xDC00u && n - i >= 6u && s[i + 3u] == 0xEDu &&
        pm_utf8_seq(s + i + 3u, n - i - 3u, &lo) == PM_UTF8_SURROGATE && lo >= 0xDC00u) {
      o += pm_utf8_put(d + o, 0x10000u + ((cp - 0xD800u) << 10) + (lo - 0xDC00u));
      i += 6u;
    } else {
      o += pm_utf8_put(d + o, 0xFFFDu);
      i += 3u;
    }
  }
  return o;
}

static int dec_msg(pb_dec *d, const pomelo_pb_type *t, uint32_t mi, size_t pos, size_t end,
                   uint32_t depth, const pb_path *up);

/* Reads one value of field `f` at `*pos` into value `vi`. */
static int dec_value(pb_dec *d, const pb_field *f, uint32_t vi, size_t *pos, size_t end,
                     uint32_t depth, const pb_path *path) {
  uint64_t u;
  double n;
  size_t p = *pos;
  int rc;
  switch (f->kind) {
  case PB_UINT32:
  case PB_INT32:
  case PB_SINT32:
    rc = dec_varint(d, &p, end, &u, &n, path);
    if (rc) {
      return rc;
    }
    if (f->kind != PB_UINT32) {
      /* lib/codec.js decodeSInt32, in the same double arithmetic */
      double m = fmod(n, 2.0);
      n = ((m + n) / 2.0) * (m == 1.0 ? -1.0 : 1.0);
    }
    d->v[vi].u.d = n;
    break;
  case PB_FLOAT:
  case PB_DOUBLE: {
    size_t w = f->kind == PB_FLOAT ? 4u : 8u, i;
    uint64_t bits = 0;
    if (end - p < w) {
      return path_err(d->err, POMELO_ERR_PB_TRUNCATED, end, path);
    }
    for (i = 0; i < w; i++) {
      bits |= (uint64_t)d->data[p + i] << (8u * i);
    }
    p += w;
    if (w == 4u) {
      uint32_t b32 = (uint32_t)bits;
      float fl;
      memcpy(&fl, &b32, sizeof(fl));
      d->v[vi].u.d = (double)fl;
    } else {
      memcpy(&d->v[vi].u.d, &bits, sizeof(bits));
    }
    break;
  }
  case PB_STRING: {
    size_t bad = 0;
    rc = dec_varint(d, &p, end, &u, NULL, path);
    if (rc) {
      return rc;
    }
    if (u > end - p) {
      return path_err(d->err, POMELO_ERR_PB_TRUNCATED, end, path);
    }
    rc = str_check(d->data + p, (size_t)u, &bad);
    if (rc < 0) {
      return path_err(d->err, rc, p + bad, path);
    }
    if (rc == 0) {
      d->v[vi].kind = DV_STR_IN;
      d->v[vi].u.s.off = (uint32_t)p;
      d->v[vi].u.s.len = (uint32_t)u;
    } else {
      size_t need = d->sn + (size_t)u, len;
      if (need > d->sc) {
        size_t ncap = d->sc ? d->sc : 64u;
        uint8_t *nb;
        while (ncap < need) {
          ncap *= 2u;
        }
        nb = pm_realloc(d->a, d->sb, ncap);
        if (!nb) {
          return dec_nomem(d);
        }
        d->sb = nb;
        d->sc = ncap;
      }
      len = str_repair(d->sb + d->sn, d->data + p, (size_t)u);
      d->v[vi].kind = DV_STR_BUF;
      d->v[vi].u.s.off = (uint32_t)d->sn;
      d->v[vi].u.s.len = (uint32_t)len;
      d->sn += len;
    }
    p += (size_t)u;
    break;
  }
  default:
    rc = dec_varint(d, &p, end, &u, NULL, path);
    if (rc) {
      return rc;
    }
    if (u > end - p) {
      return path_err(d->err, POMELO_ERR_PB_TRUNCATED, end, path);
    }
    if (depth + 1u > d->max_depth) {
      return path_err(d->err, POMELO_ERR_PB_DEPTH, *pos, path);
    }
    d->v[vi].kind = DV_MSG;
    rc = dec_msg(d, f->msg, vi, p, p + (size_t)u, depth + 1u, path);
    if (rc) {
      return rc;
    }
    p += (size_t)u;
    break;
  }
  *pos = p;
  return 0;
}

/* The entry of field `f` in message `mi`, added (empty) when absent; 0 when out of memory. */
static uint32_t dec_entry(pb_dec *d, const pomelo_pb_type *t, uint32_t mi, const pb_field *f) {
  pb_dval *m = &d->v[mi];
  uint64_t key = ((uint64_t)mi << 32) | (uint64_t)(f - t->fields + 1);
  uint32_t ei;
  if (m->count && d->e[m->u.m.last].f == f) {
    return m->u.m.last;
  }
  if (m->count <= PB_SCAN_MAX) {
    for (ei = m->u.m.first; ei; ei = d->e[ei].next) {
      if (d->e[ei].f == f) {
        return ei;
      }
    }
  } else {
    ei = (uint32_t)(uintptr_t)pm_idmap_get(&d->idx, key);
    if (ei) {
      return ei;
    }
  }
  if (d->ne == UINT32_MAX || grow(d->a, (void **)&d->e, &d->ce, d->ne + 1u, sizeof(*d->e))) {
    return 0;
  }
  ei = d->ne;
  if (m->count >= PB_SCAN_MAX) {
    /* from now on through the map: add this message's entries (the earlier ones once) */
    uint32_t x;
    if (pm_idmap_reserve(&d->idx, d->a, m->count == PB_SCAN_MAX ? m->count + 1u : 1u)) {
      return 0;
    }
    if (m->count == PB_SCAN_MAX) {
      for (x = m->u.m.first; x; x = d->e[x].next) {
        pm_idmap_put(&d->idx, ((uint64_t)mi << 32) | (uint64_t)(d->e[x].f - t->fields + 1),
                     (void *)(uintptr_t)x);
      }
    }
    pm_idmap_put(&d->idx, key, (void *)(uintptr_t)ei);
  }
  d->ne++;
  memset(&d->e[ei], 0, sizeof(d->e[ei]));
  d->e[ei].f = f;
  if (m->count) {
    d->e[m->u.m.last].next = ei;
  } else {
    m->u.m.first = ei;
  }
  m->u.m.last = ei;
  m->count++;
  if (f->is_index) {
    m->has_index = 1;
  }
  return ei;
}

/* Appends value `vi` to entry `ei` (a repeated field), or makes it the entry's value. */
static void dec_put(pb_dec *d, uint32_t ei, uint32_t vi) {
  pb_dent *en = &d->e[ei];
  if (en->f->rule == PB_REPEATED && en->head) {
    d->v[en->tail].next = vi;
  } else {
    en->head = vi;
  }
  en->tail = vi;
  en->count++;
}

static int dec_msg(pb_dec *d, const pomelo_pb_type *t, uint32_t mi, size_t pos, size_t end,
                   uint32_t depth, const pb_path *up) {
  while (pos < end) {
    size_t kpos = pos;
    uint64_t key, count;
    const pb_field *f;
    pb_path here;
    uint32_t ei, vi;
    int rc = dec_varint(d, &pos, end, &key, NULL, up);
    if (rc) {
      return rc;
    }
    /* the wire type (key & 7) is ignored: the browser sends varints with wire type 2 */
    f = pb_field_by_tag(t, key >> 3);
    if (!f) {
      return path_err(d->err, POMELO_ERR_PB_TAG, kpos, up);
    }
    ei = dec_entry(d, t, mi, f);
    if (!ei) {
      return dec_nomem(d);
    }
    here.up = up;
    here.f = f;
    here.idx = f->rule == PB_REPEATED ? d->e[ei].count : SIZE_MAX;
    if (f->rule == PB_REPEATED && pb_kind_is_scalar(f->kind)) {
      /* an element count, then the elements; each takes at least `w` bytes */
      size_t w = f->kind == PB_FLOAT ? 4u : f->kind == PB_DOUBLE ? 8u : 1u;
      rc = dec_varint(d, &pos, end, &count, NULL, &here);
      if (rc) {
        return rc;
      }
      if (count > (end - pos) / w) {
        return path_err(d->err, POMELO_ERR_PB_TRUNCATED, end, &here);
      }
      while (count--) {
        vi = new_val(d, DV_NUM);
        if (!vi) {
          return dec_nomem(d);
        }
        here.idx = d->e[ei].count;
        rc = dec_value(d, f, vi, &pos, end, depth, &here);
        if (rc) {
          return rc;
        }
        dec_put(d, ei, vi);
      }
      continue;
    }
    vi = new_val(d, DV_NUM);
    if (!vi) {
      return dec_nomem(d);
    }
    rc = dec_value(d, f, vi, &pos, end, depth, &here);
    if (rc) {
      return rc;
    }
    dec_put(d, ei, vi);
  }
  return 0;
}

static int emit_msg(pb_dec *d, pomelo_json_writer *w, uint32_t mi);

static int emit_val(pb_dec *d, pomelo_json_writer *w, uint32_t vi) {
  const pb_dval *x = &d->v[vi];
  switch (x->kind) {
  case DV_NUM:
    if (x->u.d > -9007199254740992.0 && x->u.d < 9007199254740992.0 && x->u.d == floor(x->u.d)) {
      return pomelo_json_write_int64(w, (int64_t)x->u.d); /* -0 too prints "0" */
    }
    /* JSON.stringify prints NaN and the infinities as null */
    return isfinite(x->u.d) ? pomelo_json_write_double(w, x->u.d) : pomelo_json_write_null(w);
  case DV_STR_IN:
    return pomelo_json_write_string(w, (const char *)d->data + x->u.s.off, x->u.s.len);
  case DV_STR_BUF:
    return pomelo_json_write_string(w, (const char *)d->sb + x->u.s.off, x->u.s.len);
  default:
    return emit_msg(d, w, vi);
  }
}

static int emit_entry(pb_dec *d, pomelo_json_writer *w, uint32_t ei) {
  const pb_dent *en = &d->e[ei];
  uint32_t vi;
  int rc = pomelo_json_write_key(w, en->f->name, en->f->name_len);
  if (rc) {
    return rc;
  }
  if (en->f->rule != PB_REPEATED) {
    return emit_val(d, w, en->head);
  }
  rc = pomelo_json_write_begin_array(w);
  for (vi = en->head; vi && !rc; vi = d->v[vi].next) {
    rc = emit_val(d, w, vi);
  }
  return rc ? rc : pomelo_json_write_end_array(w);
}

static int cmp_u64(const void *x, const void *y) {
  uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
  return a < b ? -1 : a > b;
}

static int emit_msg(pb_dec *d, pomelo_json_writer *w, uint32_t mi) {
  uint32_t ei;
  int rc = pomelo_json_write_begin_object(w);
  if (rc) {
    return rc;
  }
  if (d->v[mi].has_index) {
    /* JavaScript lists array-index keys first, ascending */
    size_t base = d->ntmp, i, top;
    for (ei = d->v[mi].u.m.first; ei; ei = d->e[ei].next) {
      if (d->e[ei].f->is_index) {
        if (d->ntmp == d->ctmp) {
          size_t nc = d->ctmp ? d->ctmp * 2u : 16u;
          uint64_t *nt = pm_realloc(d->a, d->tmp, nc * sizeof(*nt));
          if (!nt) {
            return POMELO_ERR_NOMEM;
          }
          d->tmp = nt;
          d->ctmp = nc;
        }
        d->tmp[d->ntmp++] = ((uint64_t)d->e[ei].f->ival << 32) | ei;
      }
    }
    top = d->ntmp;
    qsort(d->tmp + base, top - base, sizeof(*d->tmp), cmp_u64);
    for (i = base; i < top && !rc; i++) {
      rc = emit_entry(d, w, (uint32_t)d->tmp[i]);
    }
    d->ntmp = base;
    if (rc) {
      return rc;
    }
  }
  for (ei = d->v[mi].u.m.first; ei && !rc; ei = d->e[ei].next) {
    if (!d->e[ei].f->is_index) {
      rc = emit_entry(d, w, ei);
    }
  }
  return rc ? rc : pomelo_json_write_end_object(w);
}

int pomelo_pb_decode(const pomelo_pb_type *t, const uint8_t *data, size_t len,
                     pomelo_json_writer *w, pomelo_pb_error *err) {
  pb_dec d;
  int rc;
  pb_err(err, 0, 0, NULL, 0);
  if (!t || !w || (!data && len) || len >= UINT32_MAX) {
    pb_err(err, POMELO_ERR_INVALID_ARG, 0, NULL, 0);
    return POMELO_ERR_INVALID_ARG;
  }
  memset(&d, 0, sizeof(d));
  d.data = data;
  d.len = len;
  d.a = &t->set->alloc;
  d.max_depth = t->set->lim.max_depth;
  d.err = err;
  pm_idmap_init(&d.idx);
  d.nv = 1; /* index 0 is "none" */
  d.ne = 1;
  if (grow(d.a, (void **)&d.v, &d.cv, 2, sizeof(*d.v)) ||
      grow(d.a, (void **)&d.e, &d.ce, 1, sizeof(*d.e))) {
    rc = dec_nomem(&d);
    goto out;
  }
  memset(&d.v[1], 0, sizeof(d.v[1]));
  d.v[1].kind = DV_MSG;
  d.nv = 2;
  rc = dec_msg(&d, t, 1, 0, len, 1, NULL);
  if (!rc) {
    rc = emit_msg(&d, w, 1);
    if (rc) {
      pb_err(err, rc, 0, NULL, 0);
    }
  }
out:
  pm_free(d.a, d.v);
  pm_free(d.a, d.e);
  pm_free(d.a, d.sb);
  pm_free(d.a, d.tmp);
  pm_idmap_fini(&d.idx, d.a);
  return rc;
}
