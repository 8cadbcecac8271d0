/* Bodies and routes on the wire for one peer: see wire.h.
 * SPDX-License-Identifier: MIT
 */
#include "proto/wire.h"

#include "codec/codec_int.h"
#include "json/json_int.h"

void pm_bytes_fini(pm_bytes *b, const pomelo_allocator *a) {
  pm_free(a, b->own);
  b->own = NULL;
  b->p = NULL;
  b->len = 0;
}

/* ---------------------------------------------------------------------------------------------
 * Text
 * ------------------------------------------------------------------------------------------- */

size_t pm_cesu8_repair(uint8_t *p, size_t len) {
  size_t i = 0, o = 0;
  while (i < len) {
    uint32_t hi, lo;
    if (p[i] == 0xEDu && pm_utf8_seq(p + i, len - i, &hi) == PM_UTF8_SURROGATE) {
      if (hi < 0xDC00u && i + 3 < len && p[i + 3] == 0xEDu &&
          pm_utf8_seq(p + i + 3, len - i - 3, &lo) == PM_UTF8_SURROGATE && lo >= 0xDC00u) {
        o += pm_utf8_put(p + o, 0x10000u + ((hi - 0xD800u) << 10) + (lo - 0xDC00u));
        i += 6;
      } else {
        o += pm_utf8_put(p + o, 0xFFFDu); /* a lone half: 3 bytes for 3 bytes */
        i += 3;
      }
    } else {
      p[o++] = p[i++];
    }
  }
  return o;
}

static int has_byte(const uint8_t *p, size_t len, uint8_t b) {
  return len && memchr(p, b, len) != NULL;
}

/* Whether text may hold a character outside the BMP: a 4-byte sequence, or (in JSON) a
 * \uD800-\uDBFF escape. Errs towards yes. */
static int maybe_astral(const uint8_t *p, size_t len) {
  size_t i;
  for (i = 0; i < len; i++) {
    if (p[i] >= 0xF0u) {
      return 1;
    }
    if (p[i] == '\\' && i + 3 < len && p[i + 1] == 'u' && (p[i + 2] | 0x20) == 'd' &&
        ((p[i + 3] >= '8' && p[i + 3] <= '9') ||
         ((p[i + 3] | 0x20) >= 'a' && (p[i + 3] | 0x20) <= 'b'))) {
      return 1;
    }
  }
  return 0;
}

/* Writes code point `cp` (outside the BMP) as its two UTF-16 surrogates, each either as a JSON
 * escape \uXXXX (`escape`) or as a 3-byte CESU-8 sequence, at `out` (NULL measures); returns
 * the byte count. */
static size_t put_surrogates(uint32_t cp, int escape, uint8_t *out) {
  static const char hex[] = "0123456789abcdef";
  uint32_t u[2];
  size_t o = 0;
  int k, j;
  u[0] = 0xD800u + ((cp - 0x10000u) >> 10);
  u[1] = 0xDC00u + ((cp - 0x10000u) & 0x3FFu);
  for (k = 0; k < 2; k++) {
    if (escape) {
      if (out) {
        out[o] = '\\';
        out[o + 1] = 'u';
        for (j = 0; j < 4; j++) {
          out[o + 2 + (size_t)j] = (uint8_t)hex[(u[k] >> (12 - 4 * j)) & 0xFu];
        }
      }
      o += 6;
    } else {
      if (out) {
        out[o] = (uint8_t)(0xE0u | (u[k] >> 12));
        out[o + 1] = (uint8_t)(0x80u | ((u[k] >> 6) & 0x3Fu));
        out[o + 2] = (uint8_t)(0x80u | (u[k] & 0x3Fu));
      }
      o += 3;
    }
  }
  return o;
}

/* Copies `in` to `out` (NULL measures) with each 4-byte sequence rewritten by put_surrogates:
 * as a JSON escape pair (\ud83d\ude00; valid only for JSON text, where such bytes lie inside
 * strings) when `escape`, else as CESU-8. Returns the byte count. */
static size_t rewrite_astral(const uint8_t *in, size_t len, int escape, uint8_t *out) {
  size_t i = 0, o = 0;
  while (i < len) {
    uint32_t cp;
    if (in[i] >= 0xF0u && pm_utf8_seq(in + i, len - i, &cp) == 4) {
      o += put_surrogates(cp, escape, out ? out + o : NULL);
      i += 4;
    } else {
      if (out) {
        out[o] = in[i];
      }
      o++;
      i++;
    }
  }
  return o;
}

/* ---------------------------------------------------------------------------------------------
 * In
 * ------------------------------------------------------------------------------------------- */

int pm_in_route(const pomelo_dict *dict, const pomelo_msg *m, char buf[POMELO_MSG_ROUTE_MAX + 1],
                const char **route, size_t *len) {
  if (m->route_compressed) {
    const char *r = pomelo_dict_route(dict, m->route_code, len);
    if (!r) {
      return POMELO_ERR_ROUTE_CODE;
    }
    *route = r;
    return 0;
  }
  *route = m->route;
  *len = m->route_len;
  if (has_byte((const uint8_t *)m->route, m->route_len, 0xEDu)) {
    memcpy(buf, m->route, m->route_len);
    *len = pm_cesu8_repair((uint8_t *)buf, m->route_len);
    buf[*len] = 0;
    *route = buf;
  }
  return 0;
}

int pm_in_body(const pomelo_allocator *a, pomelo_json_writer *scratch, const pomelo_msg *m,
               const pomelo_pb_type *pb, int binary, uint32_t cap, pm_bytes *out,
               pomelo_pb_error *err) {
  uint8_t *inflated = NULL;
  int rc;
  out->p = m->body;
  out->len = m->body_len;
  out->own = NULL;
  if (m->gzip) {
    rc = pm_inflate(a, m->body, m->body_len, cap, &inflated, &out->len);
    if (rc) {
      return rc;
    }
    out->p = inflated;
    out->own = inflated;
  }
  if (binary) {
    return 0;
  }
  if (pb) {
    const char *text;
    pomelo_json_writer_reset(scratch);
    rc = pomelo_pb_decode(pb, out->p, out->len, scratch, err);
    pm_bytes_fini(out, a);
    if (rc) {
      return rc;
    }
    text = pomelo_json_writer_data(scratch, &out->len);
    out->p = (const uint8_t *)text;
    return 0;
  }
  if (has_byte(out->p, out->len, 0xEDu)) {
    if (!out->own) {
      out->own = pm_malloc(a, out->len ? out->len : 1);
      if (!out->own) {
        return POMELO_ERR_NOMEM;
      }
      memcpy(out->own, out->p, out->len);
      out->p = out->own;
    }
    out->len = pm_cesu8_repair(out->own, out->len);
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Out
 * ------------------------------------------------------------------------------------------- */

int pm_out_init(pm_out *o, const pomelo_allocator *a, pomelo_msg_type type, uint32_t id,
                const char *route, size_t route_len, const pomelo_dict *dict,
                const pomelo_pb_type *pb, const uint8_t *body, size_t len,
                const pomelo_json_value *tree, int binary, uint32_t gzip_min) {
  memset(o, 0, sizeof *o);
  if ((!body && len) || (!route && route_len)) {
    return POMELO_ERR_INVALID_ARG;
  }
  if (route_len > POMELO_MSG_ROUTE_MAX) {
    return POMELO_ERR_ROUTE_TOO_LONG;
  }
  o->alloc = a;
  o->last_fmt = PM_FMT_COUNT;
  o->type = type;
  o->id = id;
  o->route = route;
  o->route_len = route_len;
  o->binary = (uint8_t)(binary != 0);
  o->pb = binary ? NULL : pb;
  o->tree = tree;
  o->gzip_min = gzip_min;
  if (type != POMELO_MSG_RESPONSE && route) {
    o->code = pomelo_dict_code(dict, route, route_len);
  }
  if (body && len) {
    o->body = body;
    o->len = len;
  } else if (!tree || binary) {
    o->body = (const uint8_t *)(binary ? "" : "{}");
    o->len = binary ? 0 : 2;
  }
  if (!binary) {
    o->astral = (uint8_t)((o->body && maybe_astral(o->body, o->len)) ||
                          (!o->code && maybe_astral((const uint8_t *)route, route_len)) ||
                          (!o->body && tree));
  }
  return 0;
}

void pm_out_fini(pm_out *o) {
  unsigned i, j;
  for (i = 0; i < PM_FMT_COUNT; i++) {
    if (o->frames[i]) {
      for (j = i + 1; j < PM_FMT_COUNT; j++) {
        if (o->frames[j] == o->frames[i]) {
          o->frames[j] = NULL; /* aliases of one frame hold one reference */
        }
      }
      pomelo_frame_unref(o->frames[i]);
      o->frames[i] = NULL;
    }
  }
  pomelo_json_doc_del(o->doc);
  pm_free(o->alloc, o->text);
  o->doc = NULL;
  o->text = NULL;
}

/* The body as a tree, parsed once. */
static int out_tree(pm_out *o, const pomelo_json_value **t) {
  if (!o->tree) {
    int rc = pomelo_json_parse(&o->doc, o->alloc, (const char *)o->body, o->len, NULL, NULL);
    if (rc) {
      return rc;
    }
    o->tree = pomelo_json_root(o->doc);
  }
  *t = o->tree;
  return 0;
}

/* The body as JSON text, written from the tree once when only a tree was given. */
static int out_text(pm_out *o) {
  pomelo_json_writer *w;
  const char *d;
  size_t n;
  int rc;
  if (o->body) {
    return 0;
  }
  rc = pomelo_json_writer_new(&w, o->alloc, 0);
  rc = rc ? rc : pomelo_json_write_value(w, o->tree);
  if (rc == 0) {
    d = pomelo_json_writer_data(w, &n);
    o->text = pm_malloc(o->alloc, n ? n : 1);
    if (!o->text) {
      rc = POMELO_ERR_NOMEM;
    } else {
      memcpy(o->text, d, n);
      o->body = o->text;
      o->len = n;
    }
  }
  pomelo_json_writer_del(w);
  return rc;
}

/* The body bytes of format `fmt` (without gzip) into *b. */
static int out_body(pm_out *o, unsigned fmt, pm_bytes *b) {
  int rc;
  b->own = NULL;
  if ((fmt & PM_FMT_PB) && o->pb) {
    const pomelo_json_value *t = NULL;
    unsigned flags = (fmt & PM_FMT_CESU) ? POMELO_PB_CESU8 : 0;
    size_t need = 0;
    pomelo_pb_error err;
    rc = out_tree(o, &t);
    if (rc == POMELO_ERR_NOMEM) {
      return rc;
    }
    rc = rc ? rc : pomelo_pb_encode(o->pb, t, flags, NULL, 0, &need, &err);
    if (rc == 0 && need) { /* measured: now the bytes */
      b->own = pm_malloc(o->alloc, need);
      if (!b->own) {
        return POMELO_ERR_NOMEM;
      }
      rc = pomelo_pb_encode(o->pb, t, flags, b->own, need, &need, &err);
    }
    if (rc == POMELO_ERR_NOMEM) {
      pm_bytes_fini(b, o->alloc);
      return rc;
    }
    if (rc) {
      /* As the real server: a body protobuf cannot carry (or not JSON) goes out empty. */
      o->pb_error = o->pb_error ? o->pb_error : rc;
      pm_bytes_fini(b, o->alloc);
      need = 0;
    }
    b->p = b->own;
    b->len = need;
    return 0;
  }
  rc = out_text(o);
  if (rc) {
    return rc;
  }
  b->p = o->body;
  b->len = o->len;
  if ((fmt & PM_FMT_CESU) && !o->binary) {
    size_t n = rewrite_astral(o->body, o->len, 1, NULL);
    if (n != o->len) {
      b->own = pm_malloc(o->alloc, n);
      if (!b->own) {
        return POMELO_ERR_NOMEM;
      }
      rewrite_astral(o->body, o->len, 1, b->own);
      b->p = b->own;
      b->len = n;
    }
  }
  return 0;
}

static int out_frame(pm_out *o, unsigned fmt, pomelo_frame **f);

int pm_out_frame(pm_out *o, unsigned fmt, pomelo_frame **f) {
  int rc;
  if (fmt == o->last_fmt) {
    *f = o->last;
    return 0;
  }
  rc = out_frame(o, fmt, f);
  if (rc == 0) {
    o->last_fmt = fmt;
    o->last = *f;
  }
  return rc;
}

static int out_frame(pm_out *o, unsigned fmt, pomelo_frame **f) {
  pm_bytes body;
  uint8_t *z = NULL, croute[(POMELO_MSG_ROUTE_MAX / 4 + 1) * 6];
  pomelo_msg m;
  unsigned base;
  int rc;
  if (!o->pb) {
    fmt &= ~PM_FMT_PB;
  }
  if (!o->astral) {
    fmt &= ~PM_FMT_CESU;
  }
  if (!o->gzip_min) {
    fmt &= ~PM_FMT_GZIP;
  }
  fmt &= PM_FMT_COUNT - 1;
  if (o->frames[fmt]) {
    *f = o->frames[fmt];
    return 0;
  }
  base = fmt & ~PM_FMT_GZIP;
  rc = out_body(o, base, &body);
  if (rc) {
    return rc;
  }
  memset(&m, 0, sizeof m);
  m.type = o->type;
  m.id = o->id;
  if (o->type != POMELO_MSG_RESPONSE) {
    if (o->code) {
      m.route_compressed = 1;
      m.route_code = o->code;
    } else if ((fmt & PM_FMT_CESU) && o->route_len) {
      size_t n = rewrite_astral((const uint8_t *)o->route, o->route_len, 0, NULL);
      if (n > POMELO_MSG_ROUTE_MAX) {
        pm_bytes_fini(&body, o->alloc);
        return POMELO_ERR_ROUTE_TOO_LONG;
      }
      rewrite_astral((const uint8_t *)o->route, o->route_len, 0, croute);
      m.route = (const char *)croute;
      m.route_len = n;
    } else {
      m.route = o->route;
      m.route_len = o->route_len;
    }
  }
  m.body = body.p;
  m.body_len = body.len;
  if ((fmt & PM_FMT_GZIP) && body.len >= o->gzip_min) {
    size_t zl;
    rc = pm_deflate(o->alloc, body.p, body.len, 0, &z, &zl);
    if (rc) {
      pm_bytes_fini(&body, o->alloc);
      return rc;
    }
    m.body = z;
    m.body_len = zl;
    m.gzip = 1;
  } else if (fmt & PM_FMT_GZIP) {
    /* Too small to compress: the same frame as without gzip. */
    pm_bytes_fini(&body, o->alloc);
    rc = out_frame(o, base, f);
    if (rc == 0) {
      o->frames[fmt] = *f;
    }
    return rc;
  }
  rc = pomelo_msg_encode_frame(&o->frames[fmt], o->alloc, &m);
  pm_free(o->alloc, z);
  pm_bytes_fini(&body, o->alloc);
  if (rc) {
    o->frames[fmt] = NULL;
    return rc;
  }
  *f = o->frames[fmt];
  return 0;
}
