/* libpomelo: core definitions shared by every layer.
 *
 * Error codes, the allocator, byte views, refcounted frames and the version.
 * SPDX-License-Identifier: MIT
 */
#ifndef POMELO_COMMON_H
#define POMELO_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include <pomelo/version.h>

/* POMELO_API marks the symbols the shared library exports; everything else is hidden. */
#if defined(_WIN32) || defined(__CYGWIN__)
#if defined(POMELO_BUILDING) && !defined(POMELO_STATIC)
#define POMELO_API __declspec(dllexport)
#elif !defined(POMELO_STATIC)
#define POMELO_API __declspec(dllimport)
#else
#define POMELO_API
#endif
#elif defined(__GNUC__) && __GNUC__ >= 4
#define POMELO_API __attribute__((visibility("default")))
#else
#define POMELO_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * Error codes
 *
 * Every function that can fail returns an int: 0 (POMELO_OK) or more on success, one of the
 * negative codes below on failure. The list is one table; pomelo_strerror() and
 * pomelo_err_name() are generated from it.
 *
 * Codes at or below POMELO_ERR_FATAL (-500) say that the library itself failed (out of memory,
 * an internal error), not the peer or the caller. They never make a whole object unusable:
 *   - a call that processes one connection's input or timers (pomelo_conn_feed,
 *     pomelo_session_feed, pomelo_conn_handle_expiry, ...) closes that connection (state
 *     CLOSED, reason POMELO_CLOSE_ERROR); the server or client holding it and every other
 *     connection go on;
 *   - a call that could not queue output for a server session closes that session the same way
 *     (its client never silently misses a message);
 *   - any other call did nothing, and may be retried.
 * All other codes leave the object as the function's comment says.
 *
 * Ranges: -1..-19 general, -20..-39 codec, -40..-59 JSON, -60..-79 transport, -80..-99
 * connection, -100..-119 server, -120..-139 client, -140..-159
 * protobuf, -500 and below fatal.
 *
 * Application error codes are positive: the library never uses a positive error code, so an
 * application passes its own (1, 2, ...) through pomelo_request_error, filters and on_error,
 * beside the library's negative ones, without clashes (pomelo_err_is_app).
 * ------------------------------------------------------------------------------------------- */

#define POMELO_ERROR_LIST(X)                                                                       \
  X(OK, 0, "success")                                                                              \
  X(ERR_INVALID_ARG, -1, "invalid argument")                                                       \
  X(ERR_BUFFER_TOO_SMALL, -2, "output buffer too small")                                           \
  X(ERR_UNSUPPORTED, -3, "feature not supported by this build")                                    \
  X(ERR_STATE, -4, "operation not allowed in the current state")                                   \
  X(ERR_NOT_FOUND, -5, "not found")                                                                \
  X(ERR_EXISTS, -6, "already exists")                                                              \
  X(ERR_LIMIT, -7, "configured limit reached")                                                     \
  X(ERR_TIMEOUT, -8, "timed out")                                                                  \
  X(ERR_CLOSED, -9, "connection closed")                                                           \
  X(ERR_PKG_TYPE, -20, "unknown package type")                                                     \
  X(ERR_PKG_TOO_LARGE, -21, "package body larger than the limit")                                  \
  X(ERR_PKG_TRUNCATED, -22, "package ends before its declared length")                             \
  X(ERR_MSG_TYPE, -23, "invalid message type (types 4 to 7 do not exist)")                         \
  X(ERR_MSG_TRUNCATED, -24, "message ends inside its header")                                      \
  X(ERR_MSG_ID, -25, "message id out of range (1 to 2^31-1, at most 5 varint bytes)")              \
  X(ERR_ROUTE_TOO_LONG, -26, "route longer than 255 bytes")                                        \
  X(ERR_ROUTE_CODE, -27, "route code not in the dictionary")                                       \
  X(ERR_GZIP, -28, "invalid compressed body")                                                      \
  X(ERR_GZIP_TOO_LARGE, -29, "compressed body inflates past the limit")                            \
  X(ERR_JSON_SYNTAX, -40, "invalid JSON")                                                          \
  X(ERR_JSON_DEPTH, -41, "JSON nested deeper than the limit")                                      \
  X(ERR_JSON_TOO_LARGE, -42, "JSON text larger than the limit")                                    \
  X(ERR_JSON_UTF8, -43, "invalid UTF-8 in JSON text")                                              \
  X(ERR_JSON_TYPE, -44, "JSON value of another type")                                              \
  X(ERR_JSON_NUMBER, -45, "number not representable in JSON")                                      \
  X(ERR_HTTP, -60, "invalid HTTP upgrade request")                                                 \
  X(ERR_HTTP_TOO_LARGE, -61, "HTTP upgrade request larger than the limit")                         \
  X(ERR_WS_HANDSHAKE, -62, "WebSocket upgrade refused or invalid")                                 \
  X(ERR_WS_PROTOCOL, -63, "WebSocket protocol error")                                              \
  X(ERR_WS_UTF8, -64, "invalid UTF-8 in a WebSocket text message")                                 \
  X(ERR_WS_TOO_LARGE, -65, "WebSocket message larger than the limit")                              \
  X(ERR_ROUTE, -100, "route is not serverType.handler.method")                                     \
  X(ERR_ROUTE_TYPE, -101, "route of another server type")                                          \
  X(ERR_NO_HANDLER, -102, "no handler for the route")                                              \
  X(ERR_PB_SCHEMA, -140, "invalid protobuf description")                                           \
  X(ERR_PB_TRUNCATED, -141, "protobuf body ends inside a field")                                   \
  X(ERR_PB_TAG, -142, "protobuf tag not in the message")                                           \
  X(ERR_PB_TYPE, -143, "value does not fit the protobuf field type")                               \
  X(ERR_PB_REQUIRED, -144, "required protobuf field missing")                                      \
  X(ERR_PB_DEPTH, -145, "protobuf messages nested deeper than the limit")                          \
  X(ERR_PB_VARINT, -146, "protobuf varint longer than 64 bits")                                    \
  X(ERR_PB_UTF8, -147, "protobuf string is not UTF-8")                                             \
  X(ERR_CLUSTER_ENVELOPE, -160, "invalid cluster bus message")                                     \
  X(ERR_BUS_DOWN, -161, "the cluster bus is down")                                                 \
  X(ERR_NO_RESPONDERS, -162, "no server listens on the bus subject")                               \
  X(ERR_SERVER_LEFT, -163, "the target server left the cluster")                                   \
  X(ERR_PAYLOAD, -164, "message larger than the bus's max payload")                                \
  X(ERR_FATAL, -500, "fatal error")                                                                \
  X(ERR_NOMEM, -501, "out of memory")                                                              \
  X(ERR_INTERNAL, -503, "internal error")

/** The library's error codes (see POMELO_ERROR_LIST). */
typedef enum pomelo_error {
#define POMELO_ERROR_ENUM_(name, value, text) POMELO_##name = value,
  POMELO_ERROR_LIST(POMELO_ERROR_ENUM_)
#undef POMELO_ERROR_ENUM_
      POMELO_ERROR_END_ = -1000
} pomelo_error;

/** Returns a short English description of `code` (a static string, never NULL; unknown codes
 * give "unknown error", application codes "application error"). Thread-safe. */
POMELO_API const char *pomelo_strerror(int code);

/** Returns the enum name of `code` without its prefix, e.g. "ERR_NOMEM" for POMELO_ERR_NOMEM
 * (a static string, never NULL; unknown codes give "UNKNOWN"). Thread-safe. */
POMELO_API const char *pomelo_err_name(int code);

/** Returns 1 if `code` is in the fatal range (at or below POMELO_ERR_FATAL), else 0. */
POMELO_API int pomelo_err_is_fatal(int code);

/** Returns 1 if `code` is an application error code (positive), else 0. */
POMELO_API int pomelo_err_is_app(int code);

/* ---------------------------------------------------------------------------------------------
 * Allocator
 * ------------------------------------------------------------------------------------------- */

/** A memory allocator. Objects copy the struct at _new; a NULL pointer where an allocator is
 * taken means the C library's malloc/realloc/free. The three functions behave like their libc
 * namesakes (realloc(NULL, n) allocates; free(NULL) is a no-op) and receive `user_data` last.
 * Every allocation of the library goes through it. */
typedef struct pomelo_allocator {
  void *(*malloc)(size_t size, void *user_data);
  void *(*realloc)(void *ptr, size_t size, void *user_data);
  void (*free)(void *ptr, void *user_data);
  void *user_data;
} pomelo_allocator;

/** Returns the allocator that uses the C library (a static object; never NULL). */
POMELO_API const pomelo_allocator *pomelo_allocator_libc(void);

/* ---------------------------------------------------------------------------------------------
 * Byte views
 * ------------------------------------------------------------------------------------------- */

/** A borrowed run of bytes. Views handed to callbacks or returned by decoders are valid only as
 * long as the function that produced them documents (usually: during the callback, or until the
 * next call on the same object). `data` may be NULL only when `len` is 0. */
typedef struct pomelo_view {
  const uint8_t *data;
  size_t len;
} pomelo_view;

/* ---------------------------------------------------------------------------------------------
 * Frames: refcounted immutable byte buffers
 *
 * A frame is the unit of output: encoded once, then shared by any number of output queues, each
 * holding a reference. Frames are not thread-safe (the refcount is a plain integer), like
 * everything made from one server.
 * ------------------------------------------------------------------------------------------- */

typedef struct pomelo_frame pomelo_frame;

/** Creates a frame holding a copy of `len` bytes at `data` (`data` may be NULL when `len` is 0)
 * with a reference count of 1. `alloc` may be NULL (libc); it is copied into the frame.
 * Returns 0, POMELO_ERR_INVALID_ARG (out NULL, or data NULL with len > 0) or POMELO_ERR_NOMEM. */
POMELO_API int pomelo_frame_new(pomelo_frame **out, const pomelo_allocator *alloc, const void *data,
                                size_t len);

/** Adds a reference to `frame` and returns it. `frame` must not be NULL. */
POMELO_API pomelo_frame *pomelo_frame_ref(pomelo_frame *frame);

/** Drops a reference; the last one frees the frame. Accepts NULL. */
POMELO_API void pomelo_frame_unref(pomelo_frame *frame);

/** The frame's bytes, valid while the caller holds a reference. Never NULL. */
POMELO_API const uint8_t *pomelo_frame_data(const pomelo_frame *frame);

/** The number of bytes in the frame. */
POMELO_API size_t pomelo_frame_len(const pomelo_frame *frame);

/** The current reference count (for tests and diagnostics). */
POMELO_API uint32_t pomelo_frame_refcount(const pomelo_frame *frame);

/* ---------------------------------------------------------------------------------------------
 * Version and build features
 * ------------------------------------------------------------------------------------------- */

/** The library's version as "MAJOR.MINOR.PATCH" (a static string) of the library that is
 * running, which may differ from the POMELO_VERSION_STRING the caller was compiled with. */
POMELO_API const char *pomelo_version(void);

/** The running library's version as POMELO_VERSION_NUMBER computes it (0xMMmmpp). */
POMELO_API uint32_t pomelo_version_number(void);

/** Build features, as bits of the value pomelo_features() returns. */
#define POMELO_FEATURE_ZLIB 0x1u /**< built with zlib: compressed bodies can be inflated */

/** Returns the POMELO_FEATURE_* bits of the running library. */
POMELO_API uint32_t pomelo_features(void);

#ifdef __cplusplus
}
#endif

#endif /* POMELO_COMMON_H */
