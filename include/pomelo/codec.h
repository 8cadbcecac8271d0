/* libpomelo: the package and message codecs (spec sections 1 and 2).
 *
 * A Pomelo byte stream is a sequence of packages: a 4-byte header (type, 24-bit big-endian body
 * length) and a body. The body of a DATA package is a message: a flag byte, a varint id
 * (requests and responses), a route (requests, notifies and pushes) and the body bytes.
 *
 * Everything here is pure and reentrant except the stream decoder, which is an object used by one
 * thread at a time.
 * SPDX-License-Identifier: MIT
 */
#ifndef POMELO_CODEC_H
#define POMELO_CODEC_H

#include <pomelo/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * Packages
 * ------------------------------------------------------------------------------------------- */

/** Package types (the first header byte). */
typedef enum pomelo_pkg_type {
  POMELO_PKG_HANDSHAKE = 1,     /**< client request / server response, JSON body */
  POMELO_PKG_HANDSHAKE_ACK = 2, /**< client to server, empty body */
  POMELO_PKG_HEARTBEAT = 3,     /**< both ways, empty body */
  POMELO_PKG_DATA = 4,          /**< both ways, a message (pomelo_msg) */
  POMELO_PKG_KICK = 5           /**< server to client, JSON body {"reason":...} */
} pomelo_pkg_type;

#define POMELO_PKG_HEAD_LEN 4u
/** The largest body the 24-bit length can express: 2^24 - 1 bytes. */
#define POMELO_PKG_BODY_MAX 0xFFFFFFu
/** The default body limit of the stream decoder: 64 KiB. */
#define POMELO_PKG_DEFAULT_LIMIT 65536u

/** A decoded package. `body` is a borrowed view (see where it came from for how long it lives);
 * an empty body has body_len 0. `type` is one of pomelo_pkg_type unless the decoder was created
 * with POMELO_PKG_DECODER_ALLOW_UNKNOWN, in which case any byte value may appear. */
typedef struct pomelo_pkg {
  int type;
  const uint8_t *body;
  size_t body_len;
} pomelo_pkg;

/** Returns the lower-case name of a package type ("handshake", "handshake_ack", "heartbeat",
 * "data", "kick"), or NULL for any other value. */
POMELO_API const char *pomelo_pkg_type_name(int type);

/** Encodes one package (header and body) into `buf` of `cap` bytes.
 * `body` may be NULL when `body_len` is 0. On success returns 0 and stores the package length
 * (4 + body_len) in `*out_len`. Errors:
 * - POMELO_ERR_INVALID_ARG: `out_len` NULL, `type` not 1..5, or `body` NULL with body_len > 0;
 * - POMELO_ERR_PKG_TOO_LARGE: body_len > POMELO_PKG_BODY_MAX;
 * - POMELO_ERR_BUFFER_TOO_SMALL: `cap` too small (or `buf` NULL); `*out_len` receives the size
 *   needed, so calling with (NULL, 0) measures. */
POMELO_API int pomelo_pkg_encode(uint8_t *buf, size_t cap, int type, const uint8_t *body,
                                 size_t body_len, size_t *out_len);

/** Encodes one package into a new frame (refcount 1, owned by the caller, who unrefs it).
 * `alloc` may be NULL. Errors as pomelo_pkg_encode (never BUFFER_TOO_SMALL), plus
 * POMELO_ERR_NOMEM. */
POMELO_API int pomelo_pkg_encode_frame(pomelo_frame **out, const pomelo_allocator *alloc, int type,
                                       const uint8_t *body, size_t body_len);

/** Decodes one complete package at the start of `data` without copying.
 * Returns 0 and fills `*pkg` (body points into `data`) and `*consumed` (4 + body length) when a
 * whole package is present. Errors:
 * - POMELO_ERR_PKG_TRUNCATED: fewer bytes than the header declares (`*consumed` = bytes needed);
 * - POMELO_ERR_PKG_TYPE: the type byte is not 1..5;
 * - POMELO_ERR_INVALID_ARG: a NULL pointer argument. */
POMELO_API int pomelo_pkg_decode(const uint8_t *data, size_t len, pomelo_pkg *pkg,
                                 size_t *consumed);

/* ---------------------------------------------------------------------------------------------
 * Stream decoder: bytes in, packages out
 *
 * Feed whatever the socket gave; the decoder accepts bytes split anywhere (one at a time
 * included). A package that lies wholly inside the fed bytes is returned as a view into them
 * (zero copy); a package split across calls is reassembled in the decoder's own buffer, which
 * grows only as bytes arrive (never from the length a peer claims) and is bounded by the body
 * limit.
 * ------------------------------------------------------------------------------------------- */

typedef struct pomelo_pkg_decoder pomelo_pkg_decoder;

/** Flag for pomelo_pkg_decoder_new: return packages of unknown types instead of failing (a client
 * ignores them; a server closes the connection, which is the default). */
#define POMELO_PKG_DECODER_ALLOW_UNKNOWN 0x1u

/** Creates a stream decoder. `alloc` may be NULL (libc). `body_limit` is the largest body
 * accepted: 0 means POMELO_PKG_DEFAULT_LIMIT; at most POMELO_PKG_BODY_MAX. `flags` is 0 or
 * POMELO_PKG_DECODER_ALLOW_UNKNOWN. Returns 0, POMELO_ERR_INVALID_ARG (out NULL, limit above the
 * maximum, unknown flag) or POMELO_ERR_NOMEM. Delete with pomelo_pkg_decoder_del. */
POMELO_API int pomelo_pkg_decoder_new(pomelo_pkg_decoder **out, const pomelo_allocator *alloc,
                                      size_t body_limit, unsigned flags);

/** Frees the decoder and its buffer. Accepts NULL. */
POMELO_API void pomelo_pkg_decoder_del(pomelo_pkg_decoder *dec);

/** Feeds bytes and extracts at most one package.
 * Reads from `in` (`in_len` bytes; `in` may be NULL when in_len is 0) and stores in `*consumed`
 * how many bytes it used. Returns:
 * - 1: a package is in `*pkg`. Its body is valid until the next call on `dec` and, if it points
 *   into `in`, as long as `in` is. Call again with the rest of the input (`in + *consumed`):
 *   several packages may be waiting in one chunk.
 * - 0: every byte was consumed and no package is complete yet.
 * - POMELO_ERR_PKG_TYPE: the header's type is not 1..5 (and the flag does not allow it);
 * - POMELO_ERR_PKG_TOO_LARGE: the header declares a body over the limit;
 * - POMELO_ERR_NOMEM (fatal): the reassembly buffer could not grow.
 * After an error the decoder is failed: every later call returns the same error (reset clears
 * it). `*consumed` then counts the bytes up to and including the bad header. */
POMELO_API int pomelo_pkg_decoder_feed(pomelo_pkg_decoder *dec, const uint8_t *in, size_t in_len,
                                       size_t *consumed, pomelo_pkg *pkg);

/** Drops any partial package and clears a failed state; keeps the limit and flags. */
POMELO_API void pomelo_pkg_decoder_reset(pomelo_pkg_decoder *dec);

/** Bytes of an unfinished package the decoder holds (header bytes included). */
POMELO_API size_t pomelo_pkg_decoder_pending(const pomelo_pkg_decoder *dec);

/* ---------------------------------------------------------------------------------------------
 * Messages (the body of a DATA package)
 * ------------------------------------------------------------------------------------------- */

/** Message types (bits 1..3 of the flag byte). */
typedef enum pomelo_msg_type {
  POMELO_MSG_REQUEST = 0,  /**< client to server: id and route */
  POMELO_MSG_NOTIFY = 1,   /**< client to server: route, no id, never answered */
  POMELO_MSG_RESPONSE = 2, /**< server to client: id, no route */
  POMELO_MSG_PUSH = 3      /**< server to client: route, no id */
} pomelo_msg_type;

/** The largest message id: ids are 1..2^31-1 (the Node server hangs on larger ones). */
#define POMELO_MSG_ID_MAX 0x7FFFFFFFu
/** The longest string route, in bytes. */
#define POMELO_MSG_ROUTE_MAX 255u
/** The largest header a message can have: flag, 5-byte id, length byte and 255 route bytes. */
#define POMELO_MSG_HEAD_MAX (1u + 5u + 1u + 255u)

/** A message, for encoding and as decoded.
 * - `id`: REQUEST and RESPONSE only, 1..POMELO_MSG_ID_MAX; ignored (and 0 when decoded) for the
 *   other types.
 * - Route, REQUEST/NOTIFY/PUSH only: when `route_compressed` is non-zero the route is the 2-byte
 *   code `route_code` (a dictionary index; 0 is encodable but never resolves); otherwise the
 *   `route_len` bytes at `route` (not NUL-terminated; UTF-8 by convention, not checked here;
 *   empty allowed; at most POMELO_MSG_ROUTE_MAX bytes).
 * - `gzip`: the compressed-body flag (bit 4). Reported on decode; the codec does not inflate
 *   the body (the server and the client do, with zlib). Real NetEase peers never set it
 *   (spec 7.1).
 * - `body`: the rest of the message; may be empty.
 * Decoded views point into the decoded bytes. */
typedef struct pomelo_msg {
  pomelo_msg_type type;
  uint32_t id;
  int route_compressed;
  uint16_t route_code;
  const char *route;
  size_t route_len;
  int gzip;
  const uint8_t *body;
  size_t body_len;
} pomelo_msg;

/** Returns "request", "notify", "response" or "push", or NULL for another value. */
POMELO_API const char *pomelo_msg_type_name(int type);

/** Encodes a message (not a package) into `buf` of `cap` bytes; stores its length in `*out_len`.
 * Errors:
 * - POMELO_ERR_INVALID_ARG: a NULL `msg` or `out_len`, or NULL route/body pointers with a
 *   non-zero length;
 * - POMELO_ERR_MSG_TYPE: type not 0..3;
 * - POMELO_ERR_MSG_ID: a REQUEST or RESPONSE id outside 1..POMELO_MSG_ID_MAX;
 * - POMELO_ERR_ROUTE_TOO_LONG: a string route over 255 bytes;
 * - POMELO_ERR_BUFFER_TOO_SMALL: `*out_len` receives the size needed ((NULL, 0) measures). */
POMELO_API int pomelo_msg_encode(uint8_t *buf, size_t cap, const pomelo_msg *msg, size_t *out_len);

/** Encodes a message inside a DATA package, header included, into a new frame (refcount 1,
 * owned by the caller). Errors as pomelo_msg_encode, plus POMELO_ERR_PKG_TOO_LARGE when the
 * message exceeds POMELO_PKG_BODY_MAX and POMELO_ERR_NOMEM. */
POMELO_API int pomelo_msg_encode_frame(pomelo_frame **out, const pomelo_allocator *alloc,
                                       const pomelo_msg *msg);

/** Decodes a message from the `len` bytes at `data` (a DATA package body) without copying.
 * Fills every field of `*msg` (views point into `data`). Errors, leaving `*msg` unspecified:
 * - POMELO_ERR_MSG_TRUNCATED: empty input, or it ends inside the id or route;
 * - POMELO_ERR_MSG_TYPE: flag type 4..7 (bits 5..7 of the flag are ignored, as by every peer);
 * - POMELO_ERR_MSG_ID: an id of 0, above 2^31-1, or longer than 5 varint bytes;
 * - POMELO_ERR_INVALID_ARG: a NULL pointer argument. */
POMELO_API int pomelo_msg_decode(const uint8_t *data, size_t len, pomelo_msg *msg);

#ifdef __cplusplus
}
#endif

#endif /* POMELO_CODEC_H */
