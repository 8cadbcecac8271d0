/* libpomelo internal: the in-memory form of pomelo-protobuf proto sets, shared by the schema
 * parser (pb_schema.c) and the codec (pb_codec.c); not installed.
 *
 * A proto set is built once and never changes. Everything it holds (types, fields, names) lives
 * in a few arena chunks freed together by pomelo_protos_del, apart from the per-side route maps
 * and the JSON texts.
 * SPDX-License-Identifier: MIT
 */
#ifndef POMELO_LIB_PROTO_PB_INT_H
#define POMELO_LIB_PROTO_PB_INT_H

#include <pomelo/protobuf.h>

#include "core/core.h"
#include "core/map.h"

/* Depth limits above this are refused: every walk over types and bodies recurses once per
 * nested message, so this bounds the C stack (a few hundred bytes per level). */
#define PB_DEPTH_CAP 255u

/* Tags are 1..2^28-1: the JS encoder computes the key as (tag << 3) | wiretype in 32-bit
 * signed arithmetic, so larger tags make it fail. */
#define PB_TAG_MAX 0x0FFFFFFFu

/* Field rules, in the order of their names in the parsed form. */
enum { PB_REQUIRED = 0, PB_OPTIONAL = 1, PB_REPEATED = 2 };

/* Value kinds. The scalars (uInt32 .. double) are the "simple types" of the JS codec: repeated,
 * they are one key, a count, then the elements. */
enum {
  PB_UINT32 = 0,
  PB_INT32 = 1,
  PB_SINT32 = 2,
  PB_FLOAT = 3,
  PB_DOUBLE = 4,
  PB_STRING = 5,
  PB_MESSAGE = 6
};

static inline int pb_kind_is_scalar(unsigned kind) {
  return kind <= PB_DOUBLE;
}

/* The wire type the server encoder puts in keys (lib/constant.js). */
static inline unsigned pb_kind_wire(unsigned kind) {
  switch (kind) {
  case PB_FLOAT:
    return 5;
  case PB_DOUBLE:
    return 1;
  case PB_STRING:
  case PB_MESSAGE:
    return 2;
  default:
    return 0;
  }
}

typedef struct pb_field {
  const char *name; /* NUL-terminated, in the set's arena */
  const char *tname;
  uint32_t name_len;
  uint32_t tname_len;
  uint32_t tag;
  uint32_t ival;    /* the name's numeric value when it is an array index */
  uint8_t rule;     /* PB_REQUIRED .. */
  uint8_t kind;     /* PB_UINT32 .. */
  uint8_t is_index; /* the name is an array index ("0", "17"): JS orders it first */
  uint8_t pad_;
  const pomelo_pb_type *msg; /* PB_MESSAGE: the resolved type */
} pb_field;

struct pomelo_pb_type {
  const struct pomelo_protos *set;
  const pomelo_pb_type *parent; /* the message this one is nested in; NULL at top level */
  const char *name;             /* top level: the key (route or "message X"); nested: X */
  uint32_t name_len;
  uint32_t ival; /* the name's value when it is an array index */
  uint32_t seq;  /* definition order among its siblings (while building) */
  uint8_t is_index;
  uint8_t pad_[3];
  /* Fields in the parsed form's (JavaScript's) key order: the `nindex` fields whose names are
   * array indices first, ascending, then the others in definition order. */
  pb_field *fields;
  uint32_t nfields;
  uint32_t nindex;
  const uint32_t *by_tag; /* field indices by ascending tag (the order of "__tags") */
  const uint32_t *hash;   /* name -> field index + 1 (0 empty); hmask + 1 slots */
  uint32_t hmask;
  uint32_t nreq;
  const uint32_t *req; /* indices of the required fields */
  /* Nested types in the parsed form's order, and the same sorted by name for lookups. */
  pomelo_pb_type *const *nested;
  pomelo_pb_type *const *nested_by_name;
  uint32_t nnested;
};

/* One side (server or client protos). */
typedef struct pb_side {
  pomelo_pb_type **top; /* top-level entries in the parsed form's order */
  uint32_t ntop;
  uint32_t nroutes; /* those whose key is not "message X" */
  pm_strmap map;    /* key -> type (val) */
  char *json;       /* the side's parsed form */
  size_t json_len;
} pb_side;

typedef struct pb_chunk pb_chunk;

struct pomelo_protos {
  pomelo_allocator alloc;
  pomelo_pb_limits lim;
  pb_chunk *chunks;
  pb_side side[2];
  char *json; /* {"server":...,"client":...,"version":"..."} */
  size_t json_len;
  char *version;
  uint32_t items; /* fields and types so far (max_fields) */
};

/* FNV-1a over `n` bytes, used for the field name tables. */
static inline uint32_t pb_hash(const char *s, size_t n) {
  uint32_t h = 2166136261u;
  size_t i;
  for (i = 0; i < n; i++) {
    h = (h ^ (uint8_t)s[i]) * 16777619u;
  }
  return h ^ (h >> 15);
}

/* The field of `t` named by the `n` bytes at `s`, or NULL. */
static inline const pb_field *pb_field_by_name(const pomelo_pb_type *t, const char *s, size_t n) {
  uint32_t j;
  if (!t->nfields) {
    return NULL;
  }
  j = pb_hash(s, n) & t->hmask;
  while (t->hash[j]) {
    const pb_field *f = &t->fields[t->hash[j] - 1u];
    if (f->name_len == n && memcmp(f->name, s, n) == 0) {
      return f;
    }
    j = (j + 1u) & t->hmask;
  }
  return NULL;
}

/* The field of `t` with tag `tag`, or NULL. */
static inline const pb_field *pb_field_by_tag(const pomelo_pb_type *t, uint64_t tag) {
  uint32_t lo = 0, hi = t->nfields;
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2u;
    const pb_field *f = &t->fields[t->by_tag[mid]];
    if (f->tag == tag) {
      return f;
    }
    if (f->tag < tag) {
      lo = mid + 1u;
    } else {
      hi = mid;
    }
  }
  return NULL;
}

/* Fills `err` (may be NULL): code, offset, and the path (truncated to fit; may be NULL). */
void pb_err(pomelo_pb_error *err, int code, size_t offset, const char *path, size_t path_len);

#endif /* POMELO_LIB_PROTO_PB_INT_H */
