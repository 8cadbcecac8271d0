/* The cluster's bus messages: protobuf wire format, hand-encoded (cluster_int.h lists them).
 * Encoders run twice: with dst NULL they only count, then they write the counted bytes.
 * Decoders never allocate from a length the input claims: strings are views, and the arrays of
 * repeated fields grow as their elements arrive.
 * SPDX-License-Identifier: MIT
 */
#include "cluster/cluster_int.h"

/* ---------------------------------------------------------------------------------------------
 * Writing
 * ------------------------------------------------------------------------------------------- */

static size_t put_varint(uint8_t *dst, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    if (dst) {
      dst[n] = (uint8_t)(v | 0x80);
    }
    v >>= 7;
    n++;
  }
  if (dst) {
    dst[n] = (uint8_t)v;
  }
  return n + 1;
}

/* Field `field` as a varint (omitted when 0, as proto3 does). */
static size_t put_uint(uint8_t *dst, uint32_t field, uint64_t v) {
  size_t n;
  if (v == 0) {
    return 0;
  }
  n = put_varint(dst, (uint64_t)field << 3);
  return n + put_varint(dst ? dst + n : NULL, v);
}

/* Field `field` as length-delimited bytes (omitted when empty unless `always`). */
static size_t put_bytes(uint8_t *dst, uint32_t field, const void *p, size_t len, int always) {
  size_t n;
  if (len == 0 && !always) {
    return 0;
  }
  n = put_varint(dst, ((uint64_t)field << 3) | 2);
  n += put_varint(dst ? dst + n : NULL, len);
  if (dst && len) {
    memcpy(dst + n, p, len);
  }
  return n + len;
}

static size_t put_str(uint8_t *dst, uint32_t field, pm_str s) {
  return put_bytes(dst, field, s.p, s.len, 0);
}

#define ADV(d, n) ((d) ? (d) + (n) : NULL)

static size_t session_write(uint8_t *dst, const pm_env_request *r) {
  size_t n = put_uint(dst, 1, r->sid);
  if (r->has_uid) {
    n += put_bytes(ADV(dst, n), 2, r->uid.p, r->uid.len, 1);
  }
  return n + put_str(ADV(dst, n), 3, r->settings);
}

static size_t msg_write(uint8_t *dst, const pm_env_request *r) {
  size_t n = put_uint(dst, 1, r->msg_id);
  n += put_str(ADV(dst, n), 2, r->route);
  n += put_str(ADV(dst, n), 3, r->data);
  return n + put_uint(ADV(dst, n), 5, r->msg_type);
}

/* A nested message: its tag, its length, then its fields. */
static size_t put_nested(uint8_t *dst, uint32_t field, size_t (*w)(uint8_t *, const void *),
                         const void *v) {
  size_t len = w(NULL, v), n;
  n = put_varint(dst, ((uint64_t)field << 3) | 2);
  n += put_varint(ADV(dst, n), len);
  if (dst) {
    w(dst + n, v);
  }
  return n + len;
}

static size_t session_write_v(uint8_t *dst, const void *v) {
  return session_write(dst, v);
}

static size_t msg_write_v(uint8_t *dst, const void *v) {
  return msg_write(dst, v);
}

size_t pm_env_request_write(uint8_t *dst, const pm_env_request *r) {
  size_t n = put_uint(dst, 1, r->type);
  if (r->has_session) {
    n += put_nested(ADV(dst, n), 2, session_write_v, r);
  }
  n += put_nested(ADV(dst, n), 3, msg_write_v, r);
  return n + put_str(ADV(dst, n), 4, r->frontend);
}

static size_t error_write_v(uint8_t *dst, const void *v) {
  const pm_env_response *r = v;
  size_t n = put_str(dst, 1, r->code);
  return n + put_str(ADV(dst, n), 2, r->msg);
}

size_t pm_env_response_write(uint8_t *dst, const pm_env_response *r) {
  size_t n = put_str(dst, 1, r->data);
  if (r->has_error) {
    n += put_nested(ADV(dst, n), 2, error_write_v, r);
  }
  return n;
}

size_t pm_env_bind_write(uint8_t *dst, const pm_env_bind *b) {
  size_t n = put_str(dst, 1, b->uid);
  return n + put_str(ADV(dst, n), 2, b->fid);
}

/* The repeated uids (one field each, empty ones kept) and sids (one varint field each). */
static size_t put_lists(uint8_t *dst, const pm_env_multi *m, uint32_t uid_field) {
  size_t n = 0, i;
  for (i = 0; i < m->nuids; i++) {
    n += put_bytes(ADV(dst, n), uid_field, m->uids[i].p, m->uids[i].len, 1);
  }
  for (i = 0; i < m->nsids; i++) {
    n += put_varint(ADV(dst, n), (uint64_t)(uid_field + 1) << 3);
    n += put_varint(ADV(dst, n), m->sids[i]);
  }
  return n;
}

size_t pm_env_push_write(uint8_t *dst, const pm_env_multi *m) {
  size_t n = put_str(dst, 1, m->route);
  n += put_str(ADV(dst, n), 2, m->data);
  n += put_lists(ADV(dst, n), m, 3);
  return n + put_uint(ADV(dst, n), 5, m->bound_only ? 1 : 0);
}

size_t pm_env_kick_write(uint8_t *dst, const pm_env_multi *m) {
  size_t n = put_lists(dst, m, 1);
  return n + put_str(ADV(dst, n), 3, m->reason);
}

/* ---------------------------------------------------------------------------------------------
 * Reading
 * ------------------------------------------------------------------------------------------- */

typedef struct rd {
  const uint8_t *p, *end;
} rd;

static int get_varint(rd *r, uint64_t *v) {
  uint64_t x = 0;
  int shift;
  for (shift = 0; shift < 64 && r->p < r->end; shift += 7) {
    uint8_t b = *r->p++;
    x |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      if (shift == 63 && b > 1) {
        return POMELO_ERR_CLUSTER_ENVELOPE; /* past 64 bits */
      }
      *v = x;
      return 0;
    }
  }
  return POMELO_ERR_CLUSTER_ENVELOPE;
}

/* One field: its number and wire type; a length-delimited one's bytes in *s, a varint in *v.
 * Fixed 32/64-bit fields are skipped (v and s untouched). */
static int get_field(rd *r, uint32_t *field, uint32_t *wt, uint64_t *v, pm_str *s) {
  uint64_t key, len;
  if (get_varint(r, &key) != 0 || (key >> 3) == 0 || (key >> 3) > UINT32_MAX) {
    return POMELO_ERR_CLUSTER_ENVELOPE;
  }
  *field = (uint32_t)(key >> 3);
  *wt = (uint32_t)(key & 7);
  switch (*wt) {
  case 0:
    return get_varint(r, v);
  case 1:
  case 5: {
    size_t n = *wt == 1 ? 8 : 4;
    if ((size_t)(r->end - r->p) < n) {
      return POMELO_ERR_CLUSTER_ENVELOPE;
    }
    r->p += n;
    return 0;
  }
  case 2:
    if (get_varint(r, &len) != 0 || len > (uint64_t)(r->end - r->p)) {
      return POMELO_ERR_CLUSTER_ENVELOPE;
    }
    s->p = (const char *)r->p;
    s->len = (size_t)len;
    r->p += len;
    return 0;
  default:
    return POMELO_ERR_CLUSTER_ENVELOPE; /* groups (3, 4) and 6, 7 */
  }
}

/* The next field of `r` into (f, wt, v, s); 1 while there is one, 0 at the end, < 0 on error. */
static int next(rd *r, uint32_t *f, uint32_t *wt, uint64_t *v, pm_str *s) {
  int rc;
  if (r->p == r->end) {
    return 0;
  }
  rc = get_field(r, f, wt, v, s);
  return rc ? rc : 1;
}

static int read_session(pm_str in, pm_env_request *out) {
  rd r = {(const uint8_t *)in.p, (const uint8_t *)in.p + in.len};
  uint32_t f, wt;
  uint64_t v = 0;
  pm_str s = {NULL, 0};
  int rc;
  while ((rc = next(&r, &f, &wt, &v, &s)) > 0) {
    if (f == 1 && wt == 0) {
      out->sid = v;
    } else if (f == 2 && wt == 2) {
      out->uid = s;
      out->has_uid = 1;
    } else if (f == 3 && wt == 2) {
      out->settings = s;
    }
  }
  return rc;
}

static int read_msg(pm_str in, pm_env_request *out) {
  rd r = {(const uint8_t *)in.p, (const uint8_t *)in.p + in.len};
  uint32_t f, wt;
  uint64_t v = 0;
  pm_str s = {NULL, 0};
  int rc;
  while ((rc = next(&r, &f, &wt, &v, &s)) > 0) {
    if (f == 1 && wt == 0) {
      out->msg_id = v;
    } else if (f == 2 && wt == 2) {
      out->route = s;
    } else if (f == 3 && wt == 2) {
      out->data = s;
    } else if (f == 5 && wt == 0) {
      if (v > 3) {
        return POMELO_ERR_CLUSTER_ENVELOPE;
      }
      out->msg_type = (uint32_t)v;
    }
  }
  return rc;
}

int pm_env_request_read(const uint8_t *p, size_t len, pm_env_request *out) {
  rd r = {p, p + len};
  uint32_t f, wt;
  uint64_t v = 0;
  pm_str s = {NULL, 0};
  int rc;
  memset(out, 0, sizeof *out);
  while ((rc = next(&r, &f, &wt, &v, &s)) > 0) {
    if (f == 1 && wt == 0) {
      if (v > PM_RQ_SESSION) {
        return POMELO_ERR_CLUSTER_ENVELOPE;
      }
      out->type = (uint32_t)v;
    } else if (f == 2 && wt == 2) {
      out->has_session = 1;
      rc = read_session(s, out);
    } else if (f == 3 && wt == 2) {
      rc = read_msg(s, out);
    } else if (f == 4 && wt == 2) {
      out->frontend = s;
    }
    if (rc < 0) {
      return rc;
    }
  }
  return rc;
}

int pm_env_response_read(const uint8_t *p, size_t len, pm_env_response *out) {
  rd r = {p, p + len};
  uint32_t f, wt;
  uint64_t v = 0;
  pm_str s = {NULL, 0};
  int rc;
  memset(out, 0, sizeof *out);
  while ((rc = next(&r, &f, &wt, &v, &s)) > 0) {
    if (f == 1 && wt == 2) {
      out->data = s;
    } else if (f == 2 && wt == 2) {
      rd e = {(const uint8_t *)s.p, (const uint8_t *)s.p + s.len};
      uint32_t ef, ewt;
      pm_str es = {NULL, 0};
      out->has_error = 1;
      while ((rc = next(&e, &ef, &ewt, &v, &es)) > 0) {
        if (ef == 1 && ewt == 2) {
          out->code = es;
        } else if (ef == 2 && ewt == 2) {
          out->msg = es;
        }
      }
      if (rc < 0) {
        return rc;
      }
    }
  }
  return rc;
}

int pm_env_bind_read(const uint8_t *p, size_t len, pm_env_bind *out) {
  rd r = {p, p + len};
  uint32_t f, wt;
  uint64_t v = 0;
  pm_str s = {NULL, 0};
  int rc;
  memset(out, 0, sizeof *out);
  while ((rc = next(&r, &f, &wt, &v, &s)) > 0) {
    if (f == 1 && wt == 2) {
      out->uid = s;
    } else if (f == 2 && wt == 2) {
      out->fid = s;
    }
  }
  return rc;
}

static int add_uid(const pomelo_allocator *a, pm_env_multi *m, pm_str s) {
  if (m->nuids == m->cuids) {
    size_t cap = m->cuids ? m->cuids * 2 : 16;
    pm_str *v = pm_realloc(a, m->uids, cap * sizeof(*v));
    if (!v) {
      return POMELO_ERR_NOMEM;
    }
    m->uids = v;
    m->cuids = cap;
  }
  m->uids[m->nuids++] = s;
  return 0;
}

static int add_sid(const pomelo_allocator *a, pm_env_multi *m, uint64_t sid) {
  if (m->nsids == m->csids) {
    size_t cap = m->csids ? m->csids * 2 : 16;
    uint64_t *v = pm_realloc(a, m->sids, cap * sizeof(*v));
    if (!v) {
      return POMELO_ERR_NOMEM;
    }
    m->sids = v;
    m->csids = cap;
  }
  m->sids[m->nsids++] = sid;
  return 0;
}

/* A sids field: one varint, or (packed) a run of them. */
static int read_sids(const pomelo_allocator *a, pm_env_multi *m, uint32_t wt, uint64_t v,
                     pm_str s) {
  rd r;
  int rc = 0;
  if (wt == 0) {
    return add_sid(a, m, v);
  }
  if (wt != 2) {
    return 0;
  }
  r.p = (const uint8_t *)s.p;
  r.end = r.p + s.len;
  while (rc == 0 && r.p < r.end) {
    rc = get_varint(&r, &v);
    rc = rc ? rc : add_sid(a, m, v);
  }
  return rc;
}

/* MultiPush (kick 0) or MultiKick (kick 1). */
static int read_multi(const pomelo_allocator *a, const uint8_t *p, size_t len, pm_env_multi *out,
                      int kick) {
  rd r = {p, p + len};
  uint32_t f, wt, uf = kick ? 1 : 3;
  uint64_t v = 0;
  pm_str s = {NULL, 0};
  int rc;
  memset(out, 0, sizeof *out);
  while ((rc = next(&r, &f, &wt, &v, &s)) > 0) {
    if (f == uf && wt == 2) {
      rc = add_uid(a, out, s);
    } else if (f == uf + 1) {
      rc = read_sids(a, out, wt, v, s);
    } else if (!kick && f == 1 && wt == 2) {
      out->route = s;
    } else if (!kick && f == 2 && wt == 2) {
      out->data = s;
    } else if (!kick && f == 5 && wt == 0) {
      out->bound_only = v != 0;
    } else if (kick && f == 3 && wt == 2) {
      out->reason = s;
    }
    if (rc < 0) {
      break;
    }
  }
  if (rc < 0) {
    pm_env_multi_fini(a, out);
  }
  return rc < 0 ? rc : 0;
}

int pm_env_push_read(const pomelo_allocator *a, const uint8_t *p, size_t len, pm_env_multi *out) {
  return read_multi(a, p, len, out, 0);
}

int pm_env_kick_read(const pomelo_allocator *a, const uint8_t *p, size_t len, pm_env_multi *out) {
  return read_multi(a, p, len, out, 1);
}

void pm_env_multi_fini(const pomelo_allocator *a, pm_env_multi *m) {
  pm_free(a, m->uids);
  pm_free(a, m->sids);
  m->uids = NULL;
  m->sids = NULL;
  m->nuids = m->cuids = m->nsids = m->csids = 0;
}
