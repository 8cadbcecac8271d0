/* libpomelo internal: how bodies and routes look on the wire for one peer (spec 3, 7, 12.19),
 * shared by the server and the client (not installed).
 *
 * In: a received message becomes its string route (dictionary codes resolved, CESU-8 repaired)
 * and its body as JSON text in real UTF-8 (inflated when flagged, decoded from protobuf when its
 * route has a proto, CESU-8 repaired), or its bytes untouched on a binary route.
 * Out: a response, push, request or notify is built once per wire format (pm_out), the formats
 * being the PM_FMT_* bits a peer negotiated; recipients with the same format share one frame.
 * SPDX-License-Identifier: MIT
 */
#ifndef POMELO_LIB_PROTO_WIRE_H
#define POMELO_LIB_PROTO_WIRE_H

#include <pomelo/codec.h>
#include <pomelo/dict.h>
#include <pomelo/json.h>
#include <pomelo/protobuf.h>

#include "core/core.h"

/* Wire format bits (a session's or a client's). */
#define PM_FMT_PB 0x1u   /* bodies of routes with a proto are protobuf */
#define PM_FMT_CESU 0x2u /* the peer reads only 1- to 3-byte UTF-8: non-BMP text as CESU-8 */
#define PM_FMT_GZIP 0x4u /* bodies of gzip_min bytes or more are deflated (flag bit 4) */
#define PM_FMT_COUNT 8u

/* Bytes that are either borrowed (own NULL) or owned (p == own, freed by pm_bytes_fini). */
typedef struct pm_bytes {
  const uint8_t *p;
  size_t len;
  uint8_t *own;
} pm_bytes;

void pm_bytes_fini(pm_bytes *b, const pomelo_allocator *a);

/* The route of a received REQUEST/NOTIFY/PUSH: the dictionary's route for a code (`dict` may be
 * NULL), else the string, CESU-8 surrogate pairs rewritten as UTF-8 into `buf` when present.
 * Returns 0 with the route in *route and *len (NUL-terminated only for a code), or
 * POMELO_ERR_ROUTE_CODE. */
int pm_in_route(const pomelo_dict *dict, const pomelo_msg *m, char buf[POMELO_MSG_ROUTE_MAX + 1],
                const char **route, size_t *len);

/* The body of a received message for the application: inflated (at most `cap` bytes) when the
 * gzip flag is set; then, unless `binary`, decoded from protobuf with `pb` (NULL: it is JSON
 * text) through `scratch`, and CESU-8 repaired. *out borrows from `m`, `scratch`, or owns.
 * Returns 0, POMELO_ERR_GZIP*, POMELO_ERR_UNSUPPORTED (a flagged body without zlib),
 * POMELO_ERR_PB_* (`err` filled when not NULL), POMELO_ERR_NOMEM. */
int pm_in_body(const pomelo_allocator *a, pomelo_json_writer *scratch, const pomelo_msg *m,
               const pomelo_pb_type *pb, int binary, uint32_t cap, pm_bytes *out,
               pomelo_pb_error *err);

/* Rewrites CESU-8 surrogate pairs in place as 4-byte UTF-8 and lone surrogates as U+FFFD;
 * returns the new length (never longer). */
size_t pm_cesu8_repair(uint8_t *p, size_t len);

/* One outgoing message, built lazily for each format it is sent in. */
typedef struct pm_out {
  const pomelo_allocator *alloc;
  pomelo_msg_type type;
  uint32_t id;
  const char *route; /* REQUEST/NOTIFY/PUSH */
  size_t route_len;
  uint16_t code;            /* the route's dictionary code, 0 when none */
  const pomelo_pb_type *pb; /* the route's proto, NULL for JSON */
  const uint8_t *body;      /* JSON text (or bytes when binary); NULL when given as a tree */
  size_t len;
  const pomelo_json_value *tree; /* the body as a tree: given, or parsed on first protobuf use */
  pomelo_json_doc *doc;
  uint8_t *text; /* the tree written as JSON, when the body was given as a tree only */
  uint32_t gzip_min;
  uint8_t binary;
  uint8_t astral;     /* the route or body holds a character outside the BMP */
  int pb_error;       /* first protobuf failure: that format's body went out empty */
  unsigned last_fmt;  /* the format asked for last (PM_FMT_COUNT: none yet) ... */
  pomelo_frame *last; /* ... and its frame: a fan-out asks for the same one again and again */
  pomelo_frame *frames[PM_FMT_COUNT];
} pm_out;

/* Sets up `o`. `body`/`len` is JSON text ("{}" when empty) or, with `binary`, bytes; `tree`
 * (may be NULL) the same body as a tree (used when `body` is NULL). Borrowed until pm_out_fini.
 * Returns 0 or POMELO_ERR_ROUTE_TOO_LONG / POMELO_ERR_INVALID_ARG. */
int pm_out_init(pm_out *o, const pomelo_allocator *a, pomelo_msg_type type, uint32_t id,
                const char *route, size_t route_len, const pomelo_dict *dict,
                const pomelo_pb_type *pb, const uint8_t *body, size_t len,
                const pomelo_json_value *tree, int binary, uint32_t gzip_min);

/* The frame of the message in format `fmt` (built on first use; borrowed: valid until
 * pm_out_fini). Returns 0 or an error (POMELO_ERR_JSON_* when the body must be parsed for
 * protobuf and is not JSON, POMELO_ERR_PKG_TOO_LARGE, POMELO_ERR_NOMEM). A protobuf encode
 * failure is not an error: the body goes out empty, as the real server sends it, and
 * o->pb_error records why. */
int pm_out_frame(pm_out *o, unsigned fmt, pomelo_frame **f);

void pm_out_fini(pm_out *o);

#endif /* POMELO_LIB_PROTO_WIRE_H */
