/* The JSON writer: compact output, escaped as JSON.stringify does.
 * SPDX-License-Identifier: MIT
 */
#include "json/json_int.h"

#define LV_OBJECT 0x1u /* the level is an object (else an array) */
#define LV_ITEMS 0x2u  /* it has at least one element or member: the next one needs a comma */
#define LV_KEY 0x4u    /* a key was written: its value comes next */
#define LEVELS_INLINE 64
#define DEFAULT_DEPTH 64
#define BUF_MIN 256

struct pomelo_json_writer {
  pomelo_allocator alloc;
  char *buf; /* NUL-terminated when not NULL */
  size_t len, cap;
  int err; /* sticky error, 0 when usable */
  uint32_t max_depth;
  uint32_t depth; /* open levels */
  int done;       /* a complete top-level value was written */
  uint8_t *lv;    /* LV_* bits per open level */
  size_t lv_cap;
  uint8_t lv_inline[LEVELS_INLINE];
};

int pomelo_json_writer_new(pomelo_json_writer **out, const pomelo_allocator *alloc,
                           uint32_t max_depth) {
  pomelo_allocator a;
  pomelo_json_writer *w;
  if (!out) {
    return POMELO_ERR_INVALID_ARG;
  }
  *out = NULL;
  pm_alloc_init(&a, alloc);
  w = pm_calloc(&a, sizeof(*w));
  if (!w) {
    return POMELO_ERR_NOMEM;
  }
  w->alloc = a;
  w->max_depth = max_depth ? max_depth : DEFAULT_DEPTH;
  w->lv = w->lv_inline;
  w->lv_cap = LEVELS_INLINE;
  *out = w;
  return 0;
}

void pomelo_json_writer_del(pomelo_json_writer *w) {
  if (w) {
    pomelo_allocator a = w->alloc;
    pm_free(&a, w->buf);
    if (w->lv != w->lv_inline) {
      pm_free(&a, w->lv);
    }
    pm_free(&a, w);
  }
}

void pomelo_json_writer_reset(pomelo_json_writer *w) {
  if (w) {
    w->len = 0;
    if (w->buf) {
      w->buf[0] = '\0';
    }
    w->err = 0;
    w->depth = 0;
    w->done = 0;
  }
}

const char *pomelo_json_writer_data(const pomelo_json_writer *w, size_t *len) {
  if (len) {
    *len = w && w->buf ? w->len : 0;
  }
  return w && w->buf ? w->buf : "";
}

int pomelo_json_writer_complete(const pomelo_json_writer *w) {
  return w && !w->err && w->done && w->depth == 0;
}

/* ---------------------------------------------------------------------------------------------
 * Output buffer
 * ------------------------------------------------------------------------------------------- */

/* Makes room for `n` more bytes and the NUL. */
static int reserve(pomelo_json_writer *w, size_t n) {
  size_t need, ncap;
  char *nb;
  if (n > SIZE_MAX - 1 - w->len) {
    return POMELO_ERR_NOMEM;
  }
  need = w->len + n + 1;
  if (need <= w->cap) {
    return 0;
  }
  ncap = w->cap < BUF_MIN ? BUF_MIN : w->cap;
  while (ncap < need) {
    ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
  }
  nb = pm_realloc(&w->alloc, w->buf, ncap);
  if (!nb) {
    return POMELO_ERR_NOMEM;
  }
  w->buf = nb;
  w->cap = ncap;
  return 0;
}

static int put(pomelo_json_writer *w, const void *p, size_t n) {
  int rc = reserve(w, n);
  if (rc == 0) {
    memcpy(w->buf + w->len, p, n);
    w->len += n;
    w->buf[w->len] = '\0';
  }
  return rc;
}

static int put_byte(pomelo_json_writer *w, char c) {
  return put(w, &c, 1);
}

/* Escapes: 0 = copy, 'u' = \u00XX, any other = backslash and that byte. */
static const char esc_table[256] = {
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'b', 't', 'n', 'u', 'f', 'r', 'u', 'u', 'u',  'u', 'u',
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 0,   0,   '"', 0,    0,   0,
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,    0,   0,
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,    0,   0,
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   '\\',
};

/* Writes `s` quoted and escaped (the bytes must be valid UTF-8). */
static int put_string(pomelo_json_writer *w, const char *s, size_t len) {
  static const char hex[] = "0123456789abcdef";
  const uint8_t *p = (const uint8_t *)s;
  size_t i = 0, clean, n;
  char *o;
  int rc;
  while (i < len && esc_table[p[i]] == 0) {
    i++;
  }
  clean = i; /* the bytes before the first one to escape (all of them, usually): one copy */
  if (clean > SIZE_MAX - 2) {
    return POMELO_ERR_NOMEM;
  }
  n = 2 + clean;
  for (; i < len; i++) {
    char e = esc_table[p[i]];
    size_t add = e == 0 ? 1 : e == 'u' ? 6 : 2;
    if (n > SIZE_MAX - add) {
      return POMELO_ERR_NOMEM;
    }
    n += add;
  }
  rc = reserve(w, n);
  if (rc != 0) {
    return rc;
  }
  o = w->buf + w->len;
  *o++ = '"';
  if (clean) { /* never memcpy from a NULL s of length 0 */
    memcpy(o, s, clean);
    o += clean;
  }
  for (i = clean; i < len; i++) {
    char e = esc_table[p[i]];
    if (e == 0) {
      *o++ = (char)p[i];
    } else if (e == 'u') {
      memcpy(o, "\\u00", 4);
      o[4] = hex[p[i] >> 4];
      o[5] = hex[p[i] & 0xFu];
      o += 6;
    } else {
      o[0] = '\\';
      o[1] = e;
      o += 2;
    }
  }
  *o++ = '"';
  w->len += n;
  w->buf[w->len] = '\0';
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Structure
 * ------------------------------------------------------------------------------------------- */

/* Checks that a value may come now and writes the comma it needs. */
static int value_begin(pomelo_json_writer *w) {
  uint8_t l;
  if (w->depth == 0) {
    return w->done ? POMELO_ERR_STATE : 0;
  }
  l = w->lv[w->depth - 1];
  if (l & LV_OBJECT) {
    return (l & LV_KEY) ? 0 : POMELO_ERR_STATE;
  }
  return (l & LV_ITEMS) ? put_byte(w, ',') : 0;
}

/* Records that a value was placed in the innermost level (or at the top). */
static void value_placed(pomelo_json_writer *w, int container) {
  if (w->depth == 0) {
    w->done = !container;
  } else if (w->lv[w->depth - 1] & LV_OBJECT) {
    w->lv[w->depth - 1] &= (uint8_t)~LV_KEY;
  } else {
    w->lv[w->depth - 1] |= LV_ITEMS;
  }
}

static int w_scalar(pomelo_json_writer *w, const char *text, size_t len) {
  int rc = value_begin(w);
  if (rc == 0) {
    rc = put(w, text, len);
  }
  if (rc == 0) {
    value_placed(w, 0);
  }
  return rc;
}

static int w_string(pomelo_json_writer *w, const char *s, size_t len) {
  int rc = value_begin(w);
  if (rc == 0) {
    rc = put_string(w, s, len);
  }
  if (rc == 0) {
    value_placed(w, 0);
  }
  return rc;
}

static int w_key(pomelo_json_writer *w, const char *s, size_t len) {
  uint8_t *l;
  int rc;
  if (w->depth == 0) {
    return POMELO_ERR_STATE;
  }
  l = &w->lv[w->depth - 1];
  if (!(*l & LV_OBJECT) || (*l & LV_KEY)) {
    return POMELO_ERR_STATE;
  }
  rc = (*l & LV_ITEMS) ? put_byte(w, ',') : 0;
  if (rc == 0) {
    rc = put_string(w, s, len);
  }
  if (rc == 0) {
    rc = put_byte(w, ':');
  }
  if (rc == 0) {
    *l |= LV_KEY | LV_ITEMS;
  }
  return rc;
}

static int w_begin(pomelo_json_writer *w, int object) {
  int rc = value_begin(w);
  if (rc != 0) {
    return rc;
  }
  if (w->depth >= w->max_depth) {
    return POMELO_ERR_JSON_DEPTH;
  }
  if (w->depth == w->lv_cap) {
    uint8_t *nl;
    size_t ncap = w->lv_cap * 2;
    if (w->lv == w->lv_inline) {
      nl = pm_malloc(&w->alloc, ncap);
      if (nl) {
        memcpy(nl, w->lv, w->lv_cap);
      }
    } else {
      nl = pm_realloc(&w->alloc, w->lv, ncap);
    }
    if (!nl) {
      return POMELO_ERR_NOMEM;
    }
    w->lv = nl;
    w->lv_cap = ncap;
  }
  rc = put_byte(w, object ? '{' : '[');
  if (rc == 0) {
    value_placed(w, 1);
    w->lv[w->depth++] = object ? LV_OBJECT : 0;
  }
  return rc;
}

static int w_end(pomelo_json_writer *w, int object) {
  uint8_t l;
  int rc;
  if (w->depth == 0) {
    return POMELO_ERR_STATE;
  }
  l = w->lv[w->depth - 1];
  if ((l & LV_OBJECT) != (object ? LV_OBJECT : 0u) || (l & LV_KEY)) {
    return POMELO_ERR_STATE;
  }
  rc = put_byte(w, object ? '}' : ']');
  if (rc == 0) {
    w->depth--;
    if (w->depth == 0) {
      w->done = 1;
    }
  }
  return rc;
}

typedef struct wframe {
  const pomelo_json_value *v;
  size_t i;
} wframe;

#define FRAMES_INLINE 32

/* Writes a parsed tree without recursion. */
static int w_tree(pomelo_json_writer *w, const pomelo_json_value *v) {
  wframe inl[FRAMES_INLINE], *st = inl;
  size_t n = 0, cap = FRAMES_INLINE;
  int rc = 0;
  while (v) {
    pomelo_json_type t = pm_json_type(v);
    switch (t) {
    case POMELO_JSON_NULL:
      rc = w_scalar(w, "null", 4);
      break;
    case POMELO_JSON_BOOL:
      rc = (v->tag & PM_JSON_TAG_TRUE) ? w_scalar(w, "true", 4) : w_scalar(w, "false", 5);
      break;
    case POMELO_JSON_NUMBER:
      rc = w_scalar(w, v->u.s, pm_json_len(v));
      break;
    case POMELO_JSON_STRING:
      rc = w_string(w, v->u.s, pm_json_len(v)); /* a parsed string is valid UTF-8 */
      break;
    default: {
      int object = t == POMELO_JSON_OBJECT;
      rc = w_begin(w, object);
      if (rc == 0 && pm_json_len(v) == 0) {
        rc = w_end(w, object);
      } else if (rc == 0) {
        if (n == cap) {
          wframe *ns;
          if (cap > SIZE_MAX / 2 / sizeof(*ns)) {
            rc = POMELO_ERR_NOMEM;
            break;
          }
          if (st == inl) {
            ns = pm_malloc(&w->alloc, cap * 2 * sizeof(*ns));
            if (ns) {
              memcpy(ns, st, n * sizeof(*ns));
            }
          } else {
            ns = pm_realloc(&w->alloc, st, cap * 2 * sizeof(*ns));
          }
          if (!ns) {
            rc = POMELO_ERR_NOMEM;
            break;
          }
          st = ns;
          cap *= 2;
        }
        st[n].v = v;
        st[n].i = 0;
        n++;
      }
      break;
    }
    }
    /* The next value: the next child of the innermost open container, closing finished ones. */
    v = NULL;
    while (rc == 0 && n > 0) {
      wframe *f = &st[n - 1];
      int object = pm_json_type(f->v) == POMELO_JSON_OBJECT;
      if (f->i < pm_json_len(f->v)) {
        if (object) {
          const pomelo_json_value *k = &f->v->u.kids[2 * f->i];
          rc = w_key(w, k->u.s, pm_json_len(k));
          v = &f->v->u.kids[2 * f->i + 1];
        } else {
          v = &f->v->u.kids[f->i];
        }
        f->i++;
        break;
      }
      rc = w_end(w, object);
      n--;
    }
    if (rc != 0) {
      break;
    }
  }
  if (st != inl) {
    pm_free(&w->alloc, st);
  }
  return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Public calls: every error is sticky, and the failing call leaves no bytes behind.
 * ------------------------------------------------------------------------------------------- */

static int finish(pomelo_json_writer *w, size_t mark, int rc) {
  if (rc != 0) {
    w->err = rc;
    w->len = mark;
    if (w->buf) {
      w->buf[mark] = '\0';
    }
  }
  return rc;
}

/* Every public call: checks `w` and the sticky error, runs `expr` with `mark` the length before
 * it, and makes any error sticky. */
#define WRITER_CALL(w, expr)                                                                       \
  do {                                                                                             \
    size_t mark;                                                                                   \
    int rc_;                                                                                       \
    if (!(w)) {                                                                                    \
      return POMELO_ERR_INVALID_ARG;                                                               \
    }                                                                                              \
    if ((w)->err) {                                                                                \
      return (w)->err;                                                                             \
    }                                                                                              \
    mark = (w)->len;                                                                               \
    rc_ = (expr);                                                                                  \
    return finish((w), mark, rc_);                                                                 \
  } while (0)

int pomelo_json_write_null(pomelo_json_writer *w) {
  WRITER_CALL(w, w_scalar(w, "null", 4));
}

int pomelo_json_write_bool(pomelo_json_writer *w, int value) {
  WRITER_CALL(w, value ? w_scalar(w, "true", 4) : w_scalar(w, "false", 5));
}

int pomelo_json_write_int64(pomelo_json_writer *w, int64_t value) {
  char tmp[24];
  WRITER_CALL(w, w_scalar(w, tmp, pm_json_format_i64(value, tmp)));
}

int pomelo_json_write_uint64(pomelo_json_writer *w, uint64_t value) {
  char tmp[24];
  WRITER_CALL(w, w_scalar(w, tmp, pm_json_format_u64(value, tmp)));
}

static int w_double(pomelo_json_writer *w, double value) {
  char tmp[PM_JSON_DOUBLE_MAX];
  size_t n = pm_json_format_double(value, tmp);
  return n == 0 ? POMELO_ERR_JSON_NUMBER : w_scalar(w, tmp, n);
}

int pomelo_json_write_double(pomelo_json_writer *w, double value) {
  WRITER_CALL(w, w_double(w, value));
}

/* Checks a string argument: NULL only when empty, valid UTF-8. */
static int check_text(const char *s, size_t len) {
  if (!s && len > 0) {
    return POMELO_ERR_INVALID_ARG;
  }
  if (!pomelo_utf8_valid((const uint8_t *)s, len, NULL)) {
    return POMELO_ERR_JSON_UTF8;
  }
  return 0;
}

static int w_string_checked(pomelo_json_writer *w, const char *s, size_t len) {
  int rc = check_text(s, len);
  return rc != 0 ? rc : w_string(w, s ? s : "", len);
}

static int w_key_checked(pomelo_json_writer *w, const char *s, size_t len) {
  int rc = check_text(s, len);
  return rc != 0 ? rc : w_key(w, s ? s : "", len);
}

int pomelo_json_write_string(pomelo_json_writer *w, const char *s, size_t len) {
  WRITER_CALL(w, w_string_checked(w, s, len));
}

int pomelo_json_write_key(pomelo_json_writer *w, const char *key, size_t len) {
  WRITER_CALL(w, w_key_checked(w, key, len));
}

int pomelo_json_write_begin_object(pomelo_json_writer *w) {
  WRITER_CALL(w, w_begin(w, 1));
}

int pomelo_json_write_end_object(pomelo_json_writer *w) {
  WRITER_CALL(w, w_end(w, 1));
}

int pomelo_json_write_begin_array(pomelo_json_writer *w) {
  WRITER_CALL(w, w_begin(w, 0));
}

int pomelo_json_write_end_array(pomelo_json_writer *w) {
  WRITER_CALL(w, w_end(w, 0));
}

static int w_raw(pomelo_json_writer *w, const char *json, size_t len) {
  int rc;
  if (!json && len > 0) {
    return POMELO_ERR_INVALID_ARG;
  }
  rc = value_begin(w);
  if (rc == 0) {
    rc = pm_json_validate(&w->alloc, json, len, w->max_depth - w->depth, NULL);
  }
  if (rc == 0) {
    /* Surrounding whitespace is dropped; the value itself is copied as it is. */
    while (pm_json_is_ws((uint8_t)json[0])) {
      json++;
      len--;
    }
    while (pm_json_is_ws((uint8_t)json[len - 1])) {
      len--;
    }
    rc = put(w, json, len);
  }
  if (rc == 0) {
    value_placed(w, 0);
  }
  return rc;
}

int pomelo_json_write_raw(pomelo_json_writer *w, const char *json, size_t len) {
  WRITER_CALL(w, w_raw(w, json, len));
}

int pomelo_json_write_value(pomelo_json_writer *w, const pomelo_json_value *v) {
  WRITER_CALL(w, v ? w_tree(w, v) : POMELO_ERR_INVALID_ARG);
}
