/* The route dictionary (spec 3, 12 item 7): built as pomelo 2.2.7's dictionary component builds
 * it, or read back from a handshake response.
 *
 * A dictionary is built once and never changes, so it is a few flat arrays: the distinct routes
 * in the order of the dictionary JSON (their bytes in one arena), the codes in ascending order,
 * an open-addressed table of route indices for route -> code, and, only when the codes are not
 * exactly 1..count, a second table for code -> route. The two JSON texts and the version are
 * made at build time.
 * SPDX-License-Identifier: MIT
 */
#include <pomelo/dict.h>

#include <stdlib.h>

#include "core/core.h"
#include "json/json_int.h"
#include "transport/hash.h"

#define ROUTE_MAX 255u

typedef struct dict_route {
  uint32_t off;  /* of its bytes (NUL-terminated) in the arena */
  uint16_t code; /* route -> code: the last code given to it */
  uint8_t len;
} dict_route;

typedef struct dict_code {
  uint32_t route; /* index into routes */
  uint16_t code;
} dict_code;

struct pomelo_dict {
  pomelo_allocator alloc;
  char *arena;        /* the routes' bytes */
  dict_route *routes; /* distinct routes, in insertion order */
  dict_code *codes;   /* ascending by code */
  uint32_t *rtab;     /* route hash table: route index + 1, 0 = empty; rmask + 1 slots */
  uint32_t *ctab;     /* NULL when codes[i].code == i + 1; else as rtab, over codes */
  uint32_t nroutes;
  uint32_t ncodes;
  uint32_t rmask;
  uint32_t cmask;
  uint32_t arena_len; /* bytes used */
  char *json;         /* {"route":code,...} */
  size_t json_len;
  char *c2r; /* {"code":"route",...} */
  size_t c2r_len;
  char *version;
};

/* ---------------------------------------------------------------------------------------------
 * Tables
 * ------------------------------------------------------------------------------------------- */

static uint32_t route_hash(const char *s, size_t len) {
  uint32_t h = 2166136261u; /* FNV-1a, then a multiplier so the low bits mix */
  size_t i;
  for (i = 0; i < len; i++) {
    h = (h ^ (uint8_t)s[i]) * 16777619u;
  }
  h *= 0x9E3779B1u;
  return h ^ (h >> 15);
}

static uint32_t code_hash(uint32_t code) {
  uint32_t h = code * 0x9E3779B1u;
  return h ^ (h >> 16);
}

/* A power of two at least 2n (load at most 1/2), at least 8; n <= 65536. */
static uint32_t table_size(uint32_t n) {
  uint32_t c = 8;
  while (c < 2u * n) {
    c *= 2u;
  }
  return c;
}

static const char *route_str(const pomelo_dict *d, const dict_route *r) {
  return d->arena + r->off;
}

/* The slot of `s` in rtab: the one holding it, or the empty one where it would go. */
static uint32_t route_slot(const pomelo_dict *d, const char *s, size_t len) {
  uint32_t j = route_hash(s, len) & d->rmask;
  for (;;) {
    uint32_t ix = d->rtab[j];
    if (!ix) {
      return j;
    }
    {
      const dict_route *r = &d->routes[ix - 1u];
      if (r->len == len && (len == 0 || memcmp(route_str(d, r), s, len) == 0)) {
        return j;
      }
    }
    j = (j + 1u) & d->rmask;
  }
}

/* Appends route `s` with `code` unless present (then only its code changes, as a JavaScript
 * object keeps a key's place when its value is replaced). The arena and the arrays were sized
 * for every route. Stores the route's index in *ix; returns 1 when it was already present. */
static int route_put(pomelo_dict *d, const char *s, size_t len, uint16_t code, uint32_t *ix) {
  uint32_t j = route_slot(d, s, len);
  dict_route *r;
  if (d->rtab[j]) {
    *ix = d->rtab[j] - 1u;
    d->routes[*ix].code = code;
    return 1;
  }
  r = &d->routes[d->nroutes];
  r->off = d->arena_len;
  r->len = (uint8_t)len;
  r->code = code;
  if (len) {
    memcpy(d->arena + d->arena_len, s, len);
  }
  d->arena[d->arena_len + len] = '\0';
  d->arena_len += (uint32_t)len + 1u;
  *ix = d->nroutes++;
  d->rtab[j] = *ix + 1u;
  return 0;
}

static const dict_code *code_find(const pomelo_dict *d, uint32_t code) {
  uint32_t j;
  if (code == 0 || d->ncodes == 0) {
    return NULL;
  }
  if (!d->ctab) {
    return code <= d->ncodes ? &d->codes[code - 1u] : NULL;
  }
  for (j = code_hash(code) & d->cmask; d->ctab[j]; j = (j + 1u) & d->cmask) {
    const dict_code *c = &d->codes[d->ctab[j] - 1u];
    if (c->code == code) {
      return c;
    }
  }
  return NULL;
}

/* Builds ctab when the (sorted) codes are not exactly 1..ncodes. */
static int code_index(pomelo_dict *d) {
  uint32_t i, size;
  for (i = 0; i < d->ncodes && d->codes[i].code == i + 1u; i++) {
  }
  if (i == d->ncodes) {
    return 0;
  }
  size = table_size(d->ncodes);
  d->ctab = pm_calloc(&d->alloc, (size_t)size * sizeof(*d->ctab));
  if (!d->ctab) {
    return POMELO_ERR_NOMEM;
  }
  d->cmask = size - 1u;
  for (i = 0; i < d->ncodes; i++) {
    uint32_t j = code_hash(d->codes[i].code) & d->cmask;
    while (d->ctab[j]) {
      j = (j + 1u) & d->cmask;
    }
    d->ctab[j] = i + 1u;
  }
  return 0;
}

/* Allocates the dictionary and its arrays for up to `nroutes` distinct routes of `bytes` bytes
 * in all (NULs included) and `ncodes` codes. */
static int dict_alloc(pomelo_dict **out, const pomelo_allocator *alloc, uint32_t nroutes,
                      uint32_t ncodes, size_t bytes) {
  pomelo_allocator a;
  pomelo_dict *d;
  uint32_t size = table_size(nroutes);
  pm_alloc_init(&a, alloc);
  d = pm_calloc(&a, sizeof(*d));
  if (!d) {
    return POMELO_ERR_NOMEM;
  }
  d->alloc = a;
  d->arena = pm_malloc(&a, bytes ? bytes : 1u);
  d->routes = pm_malloc(&a, (size_t)(nroutes ? nroutes : 1u) * sizeof(*d->routes));
  d->codes = pm_malloc(&a, (size_t)(ncodes ? ncodes : 1u) * sizeof(*d->codes));
  d->rtab = pm_calloc(&a, (size_t)size * sizeof(*d->rtab));
  d->rmask = size - 1u;
  *out = d;
  if (!d->arena || !d->routes || !d->codes || !d->rtab) {
    return POMELO_ERR_NOMEM;
  }
  return 0;
}

void pomelo_dict_del(pomelo_dict *d) {
  if (!d) {
    return;
  }
  pm_free(&d->alloc, d->arena);
  pm_free(&d->alloc, d->routes);
  pm_free(&d->alloc, d->codes);
  pm_free(&d->alloc, d->rtab);
  pm_free(&d->alloc, d->ctab);
  pm_free(&d->alloc, d->json);
  pm_free(&d->alloc, d->c2r);
  pm_free(&d->alloc, d->version);
  pm_free(&d->alloc, d);
}

/* ---------------------------------------------------------------------------------------------
 * The JSON texts and the version
 * ------------------------------------------------------------------------------------------- */

/* Whether `s` is a canonical array index ("0" to "4294967294", no sign, no leading zero): the
 * keys a JavaScript object enumerates first, in ascending numeric order, before all others in
 * insertion order (so JSON.stringify writes them first). Its value goes to *v. */
static int array_index(const char *s, size_t len, uint64_t *v) {
  uint64_t n = 0;
  size_t i;
  if (len == 0 || len > 10 || (len > 1 && s[0] == '0')) {
    return 0;
  }
  for (i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9') {
      return 0;
    }
    n = n * 10u + (uint64_t)(s[i] - '0');
  }
  if (n > 4294967294u) {
    return 0;
  }
  *v = n;
  return 1;
}

typedef struct index_key {
  uint64_t value;
  uint32_t route;
} index_key;

static int index_key_cmp(const void *a, const void *b) {
  const index_key *x = a, *y = b;
  return (x->value > y->value) - (x->value < y->value);
}

static int write_member(pomelo_json_writer *w, const pomelo_dict *d, const dict_route *r) {
  int rc = pomelo_json_write_key(w, route_str(d, r), r->len);
  return rc ? rc : pomelo_json_write_uint64(w, r->code);
}

/* Copies the writer's text into a new NUL-terminated buffer. */
static int take_text(pomelo_dict *d, const pomelo_json_writer *w, char **out, size_t *out_len) {
  size_t len;
  const char *s = pomelo_json_writer_data(w, &len);
  *out = pm_malloc(&d->alloc, len + 1u);
  if (!*out) {
    return POMELO_ERR_NOMEM;
  }
  memcpy(*out, s, len + 1u);
  *out_len = len;
  return 0;
}

/* The dictionary JSON in JavaScript's key order, then codeToRoute in code order. */
static int dict_write(pomelo_dict *d) {
  pomelo_json_writer *w = NULL;
  index_key *keys = NULL;
  uint32_t nkeys = 0, i;
  int rc;

  for (i = 0; i < d->nroutes; i++) {
    uint64_t v;
    nkeys += (uint32_t)array_index(route_str(d, &d->routes[i]), d->routes[i].len, &v);
  }
  if (nkeys) {
    keys = pm_malloc(&d->alloc, (size_t)nkeys * sizeof(*keys));
    if (!keys) {
      return POMELO_ERR_NOMEM;
    }
    nkeys = 0;
    for (i = 0; i < d->nroutes; i++) {
      if (array_index(route_str(d, &d->routes[i]), d->routes[i].len, &keys[nkeys].value)) {
        keys[nkeys++].route = i;
      }
    }
    qsort(keys, nkeys, sizeof(*keys), index_key_cmp);
  }

  rc = pomelo_json_writer_new(&w, &d->alloc, 1);
  rc = rc ? rc : pomelo_json_write_begin_object(w);
  for (i = 0; !rc && i < nkeys; i++) {
    rc = write_member(w, d, &d->routes[keys[i].route]);
  }
  for (i = 0; !rc && i < d->nroutes; i++) {
    uint64_t v;
    const dict_route *r = &d->routes[i];
    if (!array_index(route_str(d, r), r->len, &v)) {
      rc = write_member(w, d, r);
    }
  }
  rc = rc ? rc : pomelo_json_write_end_object(w);
  rc = rc ? rc : take_text(d, w, &d->json, &d->json_len);
  pm_free(&d->alloc, keys);

  if (!rc) {
    pomelo_json_writer_reset(w);
    rc = pomelo_json_write_begin_object(w);
  }
  for (i = 0; !rc && i < d->ncodes; i++) {
    char num[24];
    const dict_route *r = &d->routes[d->codes[i].route];
    size_t n = pm_json_format_u64(d->codes[i].code, num);
    rc = pomelo_json_write_key(w, num, n);
    rc = rc ? rc : pomelo_json_write_string(w, route_str(d, r), r->len);
  }
  rc = rc ? rc : pomelo_json_write_end_object(w);
  rc = rc ? rc : take_text(d, w, &d->c2r, &d->c2r_len);
  pomelo_json_writer_del(w);
  /* The routes were checked to be UTF-8 and the depth is 1: only memory can fail. */
  return rc ? POMELO_ERR_NOMEM : 0;
}

static int set_version(pomelo_dict *d, const char *s, size_t len) {
  d->version = pm_malloc(&d->alloc, len + 1u);
  if (!d->version) {
    return POMELO_ERR_NOMEM;
  }
  if (len) {
    memcpy(d->version, s, len);
  }
  d->version[len] = '\0';
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Building from route lists
 * ------------------------------------------------------------------------------------------- */

/* JavaScript's default sort order on UTF-8 strings: UTF-16 code units. It is byte order except
 * that U+E000..U+FFFF (lead bytes EE, EF) come after U+10000 and above (lead bytes F0..F4, two
 * units D800..DBFF then DC00..DFFF). The first differing bytes of two valid UTF-8 strings are
 * either both continuation bytes of one character (and both strings are in the same range) or
 * both start characters, so only that pair needs mapping. */
static int js_cmp(const void *a, const void *b) {
  const uint8_t *x = *(const uint8_t *const *)a, *y = *(const uint8_t *const *)b;
  unsigned cx, cy;
  while (*x && *x == *y) {
    x++;
    y++;
  }
  cx = *x;
  cy = *y;
  if (cx >= 0xEEu && cy >= 0xEEu) {
    cx = cx <= 0xEFu ? cx + 0x10u : cx;
    cy = cy <= 0xEFu ? cy + 0x10u : cy;
  }
  return (cx > cy) - (cx < cy);
}

/* Checks one route of the caller's: its length goes to *len. */
static int check_route(const char *s, size_t *len) {
  size_t n = 0;
  if (!s) {
    return POMELO_ERR_INVALID_ARG;
  }
  while (s[n]) {
    if (++n > ROUTE_MAX) {
      return POMELO_ERR_ROUTE_TOO_LONG;
    }
  }
  if (!pomelo_utf8_valid((const uint8_t *)s, n, NULL)) {
    return POMELO_ERR_INVALID_ARG; /* a JSON text cannot carry it */
  }
  *len = n;
  return 0;
}

int pomelo_dict_new(pomelo_dict **out, const pomelo_allocator *alloc, const char *const *routes,
                    size_t n, const char *const *extra, size_t m) {
  pomelo_allocator a;
  const char **sorted = NULL;
  pomelo_dict *d = NULL;
  size_t i, u = 0, bytes = 0, len;
  int rc;

  if (!out) {
    return POMELO_ERR_INVALID_ARG;
  }
  *out = NULL;
  if ((!routes && n) || (!extra && m)) {
    return POMELO_ERR_INVALID_ARG;
  }
  for (i = 0; i < n; i++) {
    if ((rc = check_route(routes[i], &len)) != 0) {
      return rc;
    }
  }
  for (i = 0; i < m; i++) {
    if ((rc = check_route(extra[i], &len)) != 0) {
      return rc;
    }
    bytes += len + 1u;
  }
  if (m > POMELO_DICT_MAX) {
    return POMELO_ERR_LIMIT;
  }
  pm_alloc_init(&a, alloc);

  /* The handler routes, sorted, each once. */
  if (n) {
    if (n > SIZE_MAX / sizeof(*sorted)) {
      return POMELO_ERR_NOMEM;
    }
    sorted = pm_malloc(&a, n * sizeof(*sorted));
    if (!sorted) {
      return POMELO_ERR_NOMEM;
    }
    memcpy(sorted, routes, n * sizeof(*sorted));
    qsort(sorted, n, sizeof(*sorted), js_cmp);
    for (i = 0; i < n; i++) {
      if (u == 0 || strcmp(sorted[u - 1u], sorted[i]) != 0) {
        sorted[u++] = sorted[i];
      }
    }
    if (u + m > POMELO_DICT_MAX) {
      pm_free(&a, sorted);
      return POMELO_ERR_LIMIT;
    }
    for (i = 0; i < u; i++) {
      bytes += strlen(sorted[i]) + 1u;
    }
  }

  rc = dict_alloc(&d, &a, (uint32_t)(u + m), (uint32_t)(u + m), bytes);
  if (!rc) {
    for (i = 0; i < u + m; i++) {
      const char *s = i < u ? sorted[i] : extra[i - u];
      uint32_t ix;
      (void)route_put(d, s, strlen(s), (uint16_t)(i + 1u), &ix);
      d->codes[i].code = (uint16_t)(i + 1u);
      d->codes[i].route = ix;
    }
    d->ncodes = (uint32_t)(u + m);
    rc = dict_write(d);
  }
  pm_free(&a, sorted);
  if (!rc) {
    char v[25];
    size_t vl = pm_md5_base64(d->json, d->json_len, v);
    rc = set_version(d, v, vl);
  }
  if (rc) {
    pomelo_dict_del(d);
    return rc;
  }
  *out = d;
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Reading a handshake
 * ------------------------------------------------------------------------------------------- */

/* A route code as a JSON value: an integer 1..65535 (2.0 and 2e0 are 2, as in JavaScript). */
static int code_of_value(const pomelo_json_value *v, uint16_t *code) {
  int64_t n;
  if (pomelo_json_int64(v, &n) != 0 || n < 1 || n > (int64_t)POMELO_DICT_MAX) {
    return POMELO_ERR_JSON_TYPE;
  }
  *code = (uint16_t)n;
  return 0;
}

/* A route code as an object key: canonical decimal "1".."65535" (what String(code) gives). */
static int code_of_key(const char *s, size_t len, uint16_t *code) {
  uint32_t n = 0;
  size_t i;
  if (len == 0 || len > 5 || s[0] == '0') {
    return POMELO_ERR_JSON_TYPE;
  }
  for (i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9') {
      return POMELO_ERR_JSON_TYPE;
    }
    n = n * 10u + (uint32_t)(s[i] - '0');
  }
  if (n > POMELO_DICT_MAX) {
    return POMELO_ERR_JSON_TYPE;
  }
  *code = (uint16_t)n;
  return 0;
}

static int code_cmp(const void *a, const void *b) {
  const dict_code *x = a, *y = b;
  return (x->code > y->code) - (x->code < y->code);
}

/* Whether member i of the route -> code object is pomelo 1.0.x's "version" (a string inside
 * sys.dict, spec 11), which is not a route. */
static int is_legacy_version(const pomelo_json_value *obj, size_t i) {
  size_t len;
  const char *k = pomelo_json_key_at(obj, i, &len);
  return len == 7 && memcmp(k, "version", 7) == 0 &&
         pomelo_json_typeof(pomelo_json_at(obj, i)) == POMELO_JSON_STRING;
}

int pomelo_dict_from_handshake(pomelo_dict **out, const pomelo_allocator *alloc,
                               const pomelo_json_value *sys) {
  const pomelo_json_value *r2c, *c2r, *ver, *legacy = NULL;
  pomelo_dict *d = NULL;
  size_t i, nr, nc, bytes = 0, len;
  const char *s;
  uint16_t code = 0;
  int rc;

  if (!out) {
    return POMELO_ERR_INVALID_ARG;
  }
  *out = NULL;
  if (!sys) {
    return POMELO_ERR_INVALID_ARG;
  }
  if (pomelo_json_typeof(sys) != POMELO_JSON_OBJECT) {
    return POMELO_ERR_JSON_TYPE;
  }
  r2c = pomelo_json_get(sys, "routeToCode");
  c2r = pomelo_json_get(sys, "codeToRoute");
  ver = pomelo_json_get(sys, "dictVersion");
  if (!r2c && !c2r) {
    r2c = pomelo_json_get(sys, "dict");
  } else if (!r2c || !c2r) {
    return POMELO_ERR_NOT_FOUND; /* half of libpomelo2's pair */
  }
  if (!r2c) {
    return POMELO_ERR_NOT_FOUND;
  }
  if (pomelo_json_typeof(r2c) != POMELO_JSON_OBJECT ||
      (c2r && pomelo_json_typeof(c2r) != POMELO_JSON_OBJECT) ||
      (ver && pomelo_json_typeof(ver) != POMELO_JSON_STRING)) {
    return POMELO_ERR_JSON_TYPE;
  }
  nr = pomelo_json_len(r2c);
  nc = c2r ? pomelo_json_len(c2r) : 0;
  if (!c2r) {
    for (i = 0; i < nr; i++) {
      if (is_legacy_version(r2c, i)) {
        legacy = pomelo_json_at(r2c, i); /* the last one, as JavaScript would read it */
      }
    }
  }
  if (nr - (legacy ? 1u : 0u) > POMELO_DICT_MAX || nc > POMELO_DICT_MAX) {
    return POMELO_ERR_LIMIT;
  }

  /* Every member must be a route (at most 255 bytes) with a code. */
  for (i = 0; i < nr; i++) {
    if (!c2r && is_legacy_version(r2c, i)) {
      continue;
    }
    pomelo_json_key_at(r2c, i, &len);
    if (len > ROUTE_MAX) {
      return POMELO_ERR_ROUTE_TOO_LONG;
    }
    if ((rc = code_of_value(pomelo_json_at(r2c, i), &code)) != 0) {
      return rc;
    }
    bytes += len + 1u;
  }
  for (i = 0; i < nc; i++) {
    const pomelo_json_value *v = pomelo_json_at(c2r, i);
    s = pomelo_json_key_at(c2r, i, &len);
    if ((rc = code_of_key(s, len, &code)) != 0 || pomelo_json_typeof(v) != POMELO_JSON_STRING) {
      return POMELO_ERR_JSON_TYPE;
    }
    pomelo_json_string(v, &len);
    if (len > ROUTE_MAX) {
      return POMELO_ERR_ROUTE_TOO_LONG;
    }
  }

  rc = dict_alloc(&d, alloc, (uint32_t)nr, (uint32_t)(c2r ? nc : nr), bytes);
  /* route -> code, each route once */
  for (i = 0; !rc && i < nr; i++) {
    uint32_t ix;
    if (!c2r && is_legacy_version(r2c, i)) {
      continue;
    }
    s = pomelo_json_key_at(r2c, i, &len);
    (void)code_of_value(pomelo_json_at(r2c, i), &code);
    if (route_put(d, s, len, code, &ix)) {
      rc = POMELO_ERR_JSON_TYPE; /* a duplicate key */
    } else if (!c2r) {
      d->codes[d->ncodes].code = code;
      d->codes[d->ncodes++].route = ix;
    }
  }
  /* code -> route: every route is one of routeToCode's */
  for (i = 0; !rc && i < nc; i++) {
    uint32_t j;
    s = pomelo_json_key_at(c2r, i, &len);
    (void)code_of_key(s, len, &code);
    s = pomelo_json_string(pomelo_json_at(c2r, i), &len);
    j = route_slot(d, s, len);
    if (!d->rtab[j]) {
      rc = POMELO_ERR_JSON_TYPE;
      break;
    }
    d->codes[d->ncodes].code = code;
    d->codes[d->ncodes++].route = d->rtab[j] - 1u;
  }
  if (!rc) {
    qsort(d->codes, d->ncodes, sizeof(*d->codes), code_cmp);
    for (i = 1; i < d->ncodes; i++) {
      if (d->codes[i].code == d->codes[i - 1u].code) {
        rc = POMELO_ERR_JSON_TYPE; /* two routes for one code */
        break;
      }
    }
  }
  rc = rc ? rc : code_index(d);
  /* and every route's code leads back to it */
  for (i = 0; !rc && c2r && i < d->nroutes; i++) {
    const dict_code *c = code_find(d, d->routes[i].code);
    if (!c || c->route != i) {
      rc = POMELO_ERR_JSON_TYPE;
    }
  }
  rc = rc ? rc : dict_write(d);
  if (!rc) {
    if (!ver) {
      ver = legacy;
    }
    s = ver ? pomelo_json_string(ver, &len) : "";
    rc = set_version(d, s, ver ? len : 0);
  }
  if (rc) {
    pomelo_dict_del(d);
    return rc;
  }
  *out = d;
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Accessors
 * ------------------------------------------------------------------------------------------- */

const char *pomelo_dict_version(const pomelo_dict *d) {
  return d ? d->version : "";
}

const char *pomelo_dict_json(const pomelo_dict *d, size_t *len) {
  if (len) {
    *len = d ? d->json_len : 2;
  }
  return d ? d->json : "{}";
}

const char *pomelo_dict_code_to_route_json(const pomelo_dict *d, size_t *len) {
  if (len) {
    *len = d ? d->c2r_len : 2;
  }
  return d ? d->c2r : "{}";
}

size_t pomelo_dict_count(const pomelo_dict *d) {
  return d ? d->ncodes : 0;
}

uint16_t pomelo_dict_code(const pomelo_dict *d, const char *route, size_t len) {
  uint32_t j;
  if (!d || d->nroutes == 0 || len > ROUTE_MAX || (!route && len)) {
    return 0;
  }
  j = route_slot(d, route ? route : "", len);
  return d->rtab[j] ? d->routes[d->rtab[j] - 1u].code : 0;
}

const char *pomelo_dict_route(const pomelo_dict *d, uint16_t code, size_t *len) {
  const dict_code *c = d ? code_find(d, code) : NULL;
  if (!c) {
    if (len) {
      *len = 0;
    }
    return NULL;
  }
  if (len) {
    *len = d->routes[c->route].len;
  }
  return route_str(d, &d->routes[c->route]);
}
