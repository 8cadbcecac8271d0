/* libpomelo: one Pomelo connection, server role or client role (spec sections 4, 5, 6).
 *
 * A connection turns bytes into a working Pomelo session: the handshake and its ACK, heartbeats,
 * kick, timeouts, and the output queue. It never touches a socket or a clock:
 *
 *   accept/connect  -> pomelo_conn_new(..., now)
 *   readable        -> read(); pomelo_conn_feed(conn, bytes, n, now)
 *   writable        -> pomelo_conn_out_iov(); writev(); pomelo_conn_out_consume(conn, n, now)
 *   timer           -> pomelo_conn_expiry() gives the next deadline;
 *                      pomelo_conn_handle_expiry(conn, now) when it passes
 *   after each call -> if pomelo_conn_wants_close(conn): close the socket, pomelo_conn_del(conn)
 *   socket died     -> pomelo_conn_peer_closed(conn)
 *
 * Time is milliseconds on the caller's monotonic clock. A connection is used by one thread at a
 * time. Callbacks run inside the call that caused them (feed, handle_expiry, ...); they may call
 * any function on the connection except pomelo_conn_del.
 * SPDX-License-Identifier: MIT
 */
#ifndef POMELO_CONN_H
#define POMELO_CONN_H

#include <pomelo/common.h>
#include <pomelo/codec.h>
#include <pomelo/dict.h>
#include <pomelo/json.h>
#include <pomelo/protobuf.h>
#include <pomelo/transport.h>

#if defined(_WIN32)
/** Layout-compatible stand-in for POSIX struct iovec. */
struct iovec {
  void *iov_base;
  size_t iov_len;
};
#else
#include <sys/uio.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pomelo_conn pomelo_conn;

/** Which side of the protocol a connection plays. */
typedef enum pomelo_role {
  POMELO_ROLE_SERVER = 0, /**< accepts a client: answers the handshake, echoes heartbeats */
  POMELO_ROLE_CLIENT = 1  /**< talks to a server: sends the handshake, the ACK, heartbeats */
} pomelo_role;

/** Connection states (spec 4.1). The client role goes INIT (handshake sent) -> WORKING (response
 * accepted, ACK sent); WAIT_ACK is the server's state between its response and the client's
 * ACK. CLOSING: no more input is processed and the last bytes (an error response, a kick) are
 * being flushed. CLOSED: the caller must close the socket. */
typedef enum pomelo_conn_state {
  POMELO_CONN_INIT = 0,
  POMELO_CONN_WAIT_ACK = 1,
  POMELO_CONN_WORKING = 2,
  POMELO_CONN_CLOSING = 3,
  POMELO_CONN_CLOSED = 4
} pomelo_conn_state;

/** Why a connection ended. */
typedef enum pomelo_close_reason {
  POMELO_CLOSE_NONE = 0,              /**< still open */
  POMELO_CLOSE_PEER = 1,              /**< the peer closed the socket (pomelo_conn_peer_closed) */
  POMELO_CLOSE_HEARTBEAT_TIMEOUT = 2, /**< no heartbeat in time */
  POMELO_CLOSE_HANDSHAKE_TIMEOUT = 3, /**< the handshake did not complete in time */
  POMELO_CLOSE_IDLE_TIMEOUT = 4,      /**< no bytes either way for the idle timeout */
  POMELO_CLOSE_KICKED = 5,            /**< server: we kicked it; client: we were kicked */
  POMELO_CLOSE_HANDSHAKE_FAILED = 6,  /**< handshake refused (code 500/501) either way */
  POMELO_CLOSE_PROTOCOL_ERROR = 7,    /**< bad bytes: unknown package type, over a limit, ... */
  POMELO_CLOSE_SHUTDOWN = 8,          /**< the server is shutting down */
  POMELO_CLOSE_LOCAL = 9,             /**< the application closed it (pomelo_conn_close) */
  POMELO_CLOSE_SLOW_CONSUMER = 10,    /**< the output queue passed its limit */
  POMELO_CLOSE_RATE_LIMIT = 11,       /**< too many requests */
  POMELO_CLOSE_MAX_CONNECTIONS = 12,  /**< refused: the server is full */
  POMELO_CLOSE_ERROR = 13,            /**< the library failed for this connection (out of memory) */
  POMELO_CLOSE_TOO_LARGE = 14         /**< the peer sent a package or message over max_body */
} pomelo_close_reason;

/** Returns a lower-case name for a close reason ("heartbeat_timeout", ...), "unknown" for any
 * other value. */
POMELO_API const char *pomelo_close_reason_name(int reason);

/** Connection settings. Fill with pomelo_conn_settings_default(), then change fields. Strings
 * are borrowed: they must outlive every connection created with the settings. */
typedef struct pomelo_conn_settings {
  pomelo_role role;           /**< default POMELO_ROLE_SERVER */
  pomelo_transport transport; /**< default POMELO_TRANSPORT_AUTO */

  /** Server: the heartbeat interval sent to clients (as seconds, `sys.heartbeat`), 0 for none
   * (no heartbeats either way; the gate case). Client: ignored, the server's value is used.
   * Default 0. */
  uint32_t heartbeat_interval_ms;
  /** Server: close a client that sent no heartbeat for this long after our last heartbeat
   * (0 = 2 x interval, as the real server). Client: close when nothing arrived for this long
   * (0 = 2 x the server's interval). */
  uint32_t heartbeat_timeout_ms;
  /** Server: whether a DATA package also counts as liveness. Default 0: only heartbeats do, as
   * in the real server (spec 5); 1 is more lenient and still compatible. */
  int data_is_liveness;
  /** Both roles: close if the handshake has not completed (server: ACK received; client:
   * response received) this long after creation. Default 10000; 0 = none (the real server has
   * none). */
  uint32_t handshake_timeout_ms;
  /** Both roles: close after this long with no bytes either way. Default 90000, the real
   * server's switcher timeout; 0 = none. */
  uint32_t idle_timeout_ms;
  /** The largest package body accepted (default 64 KiB, at most 2^24 - 1). Over WebSocket, a
   * message from a client may hold at most one such package (max_body + 4 bytes; larger
   * messages are closed with 1009). */
  uint32_t max_body;
  /** WebSocket: the largest HTTP upgrade request (server) or response (client) head, in bytes
   * (default 8192; a larger request is answered 431 and closed). */
  uint32_t http_max_head;

  /* Server role: the optional parts of the handshake response (spec 4.3). Borrowed: they must
   * outlive every connection created with the settings.
   * - `dict` (NULL: none): the response has "useDict":true and, when the client's
   *   sys.dictVersion is absent or differs, "dict", "routeToCode", "codeToRoute" and
   *   "dictVersion" (always the four together: libpomelo2 aborts on a subset).
   * - `protos` (NULL: none): the response has "useProto":true and, when the client's
   *   sys.protoVersion is not the set's version, "protos" {"server","client","version"}.
   *   Without protos, a client that announces a protoVersion (a cache from another server) gets
   *   an empty set with its own version and "useProto":true, so it stops decoding with stale
   *   schemas; a client announcing none (or 0) gets neither. */
  const pomelo_dict *dict;
  const pomelo_protos *protos;

  /* Client role: what the handshake request says (spec 4.2). */
  const char *client_type;          /**< sys.type; default "libpomelo" */
  const char *client_version;       /**< sys.version; default the library version */
  const char *user_json;            /**< the "user" object, JSON text, or NULL to omit it */
  const char *cached_dict_version;  /**< sys.dictVersion, or NULL to omit it */
  const char *cached_proto_version; /**< sys.protoVersion, or NULL to omit it */
  /** Client over WebSocket: the Host header of the upgrade request (e.g. "127.0.0.1:3010";
   * default "localhost") and the request path (default "/"). */
  const char *ws_host;
  const char *ws_path;
} pomelo_conn_settings;

/** Fills `s` with the defaults listed on each field. */
POMELO_API void pomelo_conn_settings_default(pomelo_conn_settings *s);

/** Callbacks. Unused ones may be NULL. Every one receives the user_data given to
 * pomelo_conn_new last. */
typedef struct pomelo_conn_callbacks {
  /** Server: the client's sys.type and sys.version (empty when absent or not strings). Return
   * non-zero to accept, 0 to refuse with code 501 (the real server's checkClient). */
  int (*check_client)(pomelo_conn *conn, const char *type, size_t type_len, const char *version,
                      size_t version_len, void *user_data);
  /** Server: a valid handshake request arrived (`request` is the whole parsed body, valid during
   * the call). When this callback is set, the connection waits for
   * pomelo_conn_handshake_reply(), which may be called from inside the callback or later (the
   * handshake deadline still runs). When it is NULL, every valid handshake is accepted. */
  void (*on_handshake)(pomelo_conn *conn, const pomelo_json_value *request, void *user_data);
  /** Client: the server's handshake response: its code (200, 500, 501, or -1 when the body is
   * not a JSON object with a numeric code) and the parsed body (NULL when not JSON; valid during
   * the call). On 200 the ACK has been queued and the connection is WORKING. */
  void (*on_handshake_response)(pomelo_conn *conn, int code, const pomelo_json_value *response,
                                void *user_data);
  /** Both: the connection is WORKING (server: ACK received; client: handshake accepted). */
  void (*on_ready)(pomelo_conn *conn, void *user_data);
  /** Both: a DATA message arrived in the WORKING state. Views are valid during the call. */
  void (*on_message)(pomelo_conn *conn, const pomelo_msg *msg, void *user_data);
  /** Client: the server kicked us; `reason` is the "reason" string of the KICK body (NULL when
   * absent). The connection is then CLOSED with POMELO_CLOSE_KICKED. */
  void (*on_kick)(pomelo_conn *conn, const char *reason, size_t reason_len, void *user_data);
  /** Both: the output queue went from empty to non-empty (arm write interest). */
  void (*on_output)(pomelo_conn *conn, void *user_data);
  /** Both: the connection stopped working (it entered CLOSING or CLOSED); called once. */
  void (*on_close)(pomelo_conn *conn, int reason, void *user_data);
  /** Server over WebSocket: may refuse an upgrade by its request path and Origin header
   * (`origin` NULL when absent). Return 0 to accept, or an HTTP status (403, 404, ...) to answer
   * and close. NULL accepts every path, as the real server does. */
  int (*check_upgrade)(pomelo_conn *conn, const char *path, size_t path_len, const char *origin,
                       size_t origin_len, void *user_data);
  /** Client over WebSocket (required there): 32 random bits for the upgrade key and the frame
   * masks. The library never calls rand(). */
  uint32_t (*random)(pomelo_conn *conn, void *user_data);
} pomelo_conn_callbacks;

/** Creates a connection at time `now` (ms). `settings` NULL means the defaults; `callbacks` may
 * be NULL; both are copied. `alloc` may be NULL (libc). A client-role connection queues its
 * handshake request at once. Errors: POMELO_ERR_INVALID_ARG (out NULL, or a bad setting:
 * max_body over 2^24 - 1, an unknown role or transport), POMELO_ERR_UNSUPPORTED (a transport
 * this build cannot do), POMELO_ERR_NOMEM. */
POMELO_API int pomelo_conn_new(pomelo_conn **out, const pomelo_conn_settings *settings,
                               const pomelo_conn_callbacks *callbacks,
                               const pomelo_allocator *alloc, uint64_t now, void *user_data);

/** Frees the connection, its queued output and its buffers. Accepts NULL. Never from inside one
 * of its callbacks. */
POMELO_API void pomelo_conn_del(pomelo_conn *conn);

/** The user_data given at creation. */
POMELO_API void *pomelo_conn_user_data(const pomelo_conn *conn);

/** Feeds `len` received bytes (borrowed for the call). Processes every complete package,
 * running callbacks. Returns 0; or, when the bytes broke the protocol, the error, after which
 * the connection is closing or closed:
 * - POMELO_ERR_PKG_TOO_LARGE or POMELO_ERR_WS_TOO_LARGE: a package (or WebSocket message) over
 *   max_body. Server role in the WORKING state: a KICK {"reason":"message too large"} is sent
 *   (over WebSocket followed by a close frame 1009), then the connection closes after the
 *   flush; before the handshake is done it closes at once (WebSocket: close frame 1009). Reason
 *   POMELO_CLOSE_TOO_LARGE either way.
 * - other codec, transport or HTTP errors (POMELO_ERR_PKG_TYPE, POMELO_ERR_WS_PROTOCOL, ...):
 *   POMELO_CLOSE_PROTOCOL_ERROR (an HTTP error answer or a WebSocket close frame is flushed
 *   first when the transport has one).
 * - POMELO_ERR_NOMEM: the connection is CLOSED with POMELO_CLOSE_ERROR.
 * Bytes fed to a closing or closed connection are ignored. */
POMELO_API int pomelo_conn_feed(pomelo_conn *conn, const uint8_t *data, size_t len, uint64_t now);

/** The current state. */
POMELO_API pomelo_conn_state pomelo_conn_get_state(const pomelo_conn *conn);

/** The transport in use (AUTO until a server-role connection has seen its first bytes). */
POMELO_API pomelo_transport pomelo_conn_get_transport(const pomelo_conn *conn);

/** 1 when the caller should close the socket now (the state is CLOSED), else 0. */
POMELO_API int pomelo_conn_wants_close(const pomelo_conn *conn);

/** Why the connection ended (POMELO_CLOSE_NONE while open). */
POMELO_API int pomelo_conn_close_reason(const pomelo_conn *conn);

/** The socket died or reached end of file: the connection is CLOSED with POMELO_CLOSE_PEER
 * (unless it was already closing for another reason) and queued output is dropped (no longer
 * reported; its memory stays valid until pomelo_conn_del, see pomelo_conn_out_iov). */
POMELO_API void pomelo_conn_peer_closed(pomelo_conn *conn);

/** The next deadline (ms) at which pomelo_conn_handle_expiry must be called, or UINT64_MAX when
 * no timer runs. */
POMELO_API uint64_t pomelo_conn_expiry(const pomelo_conn *conn);

/** Runs the timers due at `now`: sends heartbeats (client), closes on timeouts. Calling it early
 * is harmless. Returns 0, or POMELO_ERR_NOMEM after which the connection is CLOSED with
 * POMELO_CLOSE_ERROR. */
POMELO_API int pomelo_conn_handle_expiry(pomelo_conn *conn, uint64_t now);

/** Fills up to `max` iovecs with the queued output, in order, and returns how many it filled
 * (0 when nothing is queued). The memory stays valid until the bytes are consumed or the
 * connection is deleted, also when the connection closes in between (an asynchronous write, as
 * libuv's uv_write, may still be sending them): a hard close (peer_closed, a timeout, a
 * protocol error) stops reporting the queued output but frees it only in pomelo_conn_del. */
POMELO_API int pomelo_conn_out_iov(const pomelo_conn *conn, struct iovec *iov, int max);

/** The number of queued output bytes. */
POMELO_API size_t pomelo_conn_out_len(const pomelo_conn *conn);

/** Tells the connection that `n` bytes from the front of its output were written (at most
 * pomelo_conn_out_len). A CLOSING connection whose output is empty becomes CLOSED. */
POMELO_API void pomelo_conn_out_consume(pomelo_conn *conn, size_t n, uint64_t now);

/** Queues a message (any type the role may send: a server sends RESPONSE and PUSH, a client
 * REQUEST and NOTIFY). Only in the WORKING state, as the real server. Errors:
 * POMELO_ERR_STATE (not WORKING), POMELO_ERR_INVALID_ARG (a type this role does not send), the
 * codec's errors (POMELO_ERR_MSG_ID, POMELO_ERR_ROUTE_TOO_LONG, POMELO_ERR_PKG_TOO_LARGE, ...),
 * POMELO_ERR_NOMEM. */
POMELO_API int pomelo_conn_send(pomelo_conn *conn, const pomelo_msg *msg);

/** Queues a frame holding one or more complete DATA packages (e.g. from
 * pomelo_msg_encode_frame), taking a new reference to it: the frame can be shared by many
 * connections. Only in the WORKING state. Errors: POMELO_ERR_STATE, POMELO_ERR_INVALID_ARG,
 * POMELO_ERR_NOMEM. */
POMELO_API int pomelo_conn_send_frame(pomelo_conn *conn, pomelo_frame *frame);

/** Server: answers a handshake that on_handshake left pending. `code` 200 accepts (then
 * `user_json`, if not NULL, is embedded as the response's "user" and must be valid JSON); any
 * other code sends {"code":code} and closes the connection once it is flushed (500 is the real
 * server's answer to a failed user handshake). Errors: POMELO_ERR_STATE (no pending handshake),
 * POMELO_ERR_JSON_* (invalid user_json; nothing sent), POMELO_ERR_NOMEM. */
POMELO_API int pomelo_conn_handshake_reply(pomelo_conn *conn, int code, const char *user_json,
                                           size_t user_json_len);

/** Server: kicks the client. In the WORKING state a KICK package {"reason":reason} is queued
 * first (when `reason`, a NUL-terminated string, is not NULL; an empty reason still sends one),
 * as the real server does; then the connection closes once its output is flushed, with
 * POMELO_CLOSE_KICKED. Errors: POMELO_ERR_STATE (already closing or closed),
 * POMELO_ERR_INVALID_ARG (a client-role connection, or a reason that is not UTF-8; nothing
 * happened), POMELO_ERR_NOMEM (the KICK could not be queued: the connection is CLOSED with
 * POMELO_CLOSE_ERROR). */
POMELO_API int pomelo_conn_kick(pomelo_conn *conn, const char *reason);

/** Closes the connection: queued output is still flushed, no new input is processed, and the
 * connection becomes CLOSED with `reason` (a pomelo_close_reason, e.g. POMELO_CLOSE_LOCAL or
 * POMELO_CLOSE_SHUTDOWN). Errors: POMELO_ERR_STATE when already closing or closed. */
POMELO_API int pomelo_conn_close(pomelo_conn *conn, int reason);

/** Server: the heartbeat interval in ms, 0 when none. Client: the interval the server announced
 * (0 before the handshake or when it announced none). */
POMELO_API uint32_t pomelo_conn_heartbeat_interval(const pomelo_conn *conn);

#ifdef __cplusplus
}
#endif

#endif /* POMELO_CONN_H */
