/* libpomelo: the client (requests, responses, pushes, reconnects) over a client-role connection.
 *
 * Like the rest of the library it does no I/O: the caller connects a socket, calls
 * pomelo_client_connect(), feeds received bytes, drains output, passes the time, and reconnects
 * when the client says so.
 *
 *   socket connected  -> pomelo_client_connect(cl, now)        (queues the handshake)
 *   readable          -> pomelo_client_feed(cl, bytes, n, now)
 *   writable          -> pomelo_client_out_iov / writev / pomelo_client_out_consume
 *   timer             -> pomelo_client_expiry / pomelo_client_handle_expiry(cl, now)
 *   after each call   -> if pomelo_client_wants_close(cl): close the socket
 *   socket died       -> pomelo_client_peer_closed(cl, now)
 *   on_reconnect      -> connect a new socket, then pomelo_client_connect(cl, now)
 *
 * A client is used by one thread at a time. Callbacks may call any client function except
 * pomelo_client_del.
 * SPDX-License-Identifier: MIT
 */
#ifndef POMELO_CLIENT_H
#define POMELO_CLIENT_H

#include <pomelo/common.h>
#include <pomelo/codec.h>
#include <pomelo/conn.h>
#include <pomelo/json.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pomelo_client pomelo_client;

/** Client states. */
typedef enum pomelo_client_state {
  POMELO_CLIENT_IDLE = 0,          /**< never connected, or disconnected by the application */
  POMELO_CLIENT_CONNECTING = 1,    /**< handshake under way */
  POMELO_CLIENT_CONNECTED = 2,     /**< handshake done: requests and pushes flow */
  POMELO_CLIENT_WAIT_RECONNECT = 3 /**< connection lost; on_reconnect fires at the reconnect time */
} pomelo_client_state;

/** Reconnect policy: after a lost connection (not after a kick, a refused handshake or
 * pomelo_client_disconnect), the n-th attempt waits delay_ms << (n-1) when exponential (else
 * delay_ms), capped at max_delay_ms, then jittered to a uniform value in [d/2, 3d/2) using the
 * settings' random callback (no jitter without one). Attempts count from the last accepted
 * handshake; when max_attempts have failed the client goes IDLE. */
typedef struct pomelo_reconnect_policy {
  int enabled;           /**< default 1 */
  uint32_t delay_ms;     /**< default 2000 */
  uint32_t max_delay_ms; /**< default 30000; 0 = no cap */
  int exponential;       /**< default 1 */
  uint32_t max_attempts; /**< 0 = unlimited (default) */
} pomelo_reconnect_policy;

/** Client settings. Fill with pomelo_client_settings_default, then change fields. */
typedef struct pomelo_client_settings {
  /** The connection settings (role is forced to client): handshake fields (client_type,
   * client_version, user_json), timeouts, max_body, transport (TCP or WS). Its strings are
   * borrowed and must outlive the client. cached_dict_version is ignored: the client sends the
   * versions of the dictionary and protos it received in an earlier handshake (spec 10), and
   * cached_proto_version likewise. */
  pomelo_conn_settings conn;
  /** Default timeout of a request, in ms (default 10000; 0 = none). */
  uint32_t request_timeout_ms;
  pomelo_reconnect_policy reconnect;
  /** Randomness (for reconnect jitter and, over WebSocket, keys and masks): returns 32 random
   * bits; receives the client's user_data. May be NULL (no jitter) except over WebSocket. */
  uint32_t (*random)(void *user_data);
  /** Request and notify bodies of at least this many bytes are deflated (a zlib stream) and
   * flagged (bit 4); 0 (default) never: the real servers do not inflate. Needs zlib
   * (POMELO_ERR_UNSUPPORTED from pomelo_client_new otherwise). Flagged responses and pushes
   * are inflated in every case (up to conn.max_body). */
  uint32_t gzip_min;
} pomelo_client_settings;

/** Fills `s` with the defaults. */
POMELO_API void pomelo_client_settings_default(pomelo_client_settings *s);

/** Called once per request: `status` is 0 with the response message (views valid during the
 * call; its body is JSON text: decoded from protobuf with the server proto of the request's
 * route when the handshake's protos have one, inflated when flagged), POMELO_ERR_TIMEOUT when
 * no response came in time, POMELO_ERR_CLOSED when the connection was lost or the client
 * disconnected or deleted first, or the decode error of a response that came but could not be
 * read (POMELO_ERR_PB_*, POMELO_ERR_GZIP*; `resp` NULL in all those cases). `route` is the
 * request's route. */
typedef void (*pomelo_response_cb)(pomelo_client *client, int status, const char *route,
                                   size_t route_len, const pomelo_msg *resp, void *req_data);

/** Called for a push: `route` is the push route, resolved through the handshake dictionary when
 * compressed (an unknown code is given as its decimal digits, as the JS client does); the
 * route fields of `push` are as they were on the wire, its body JSON text (decoded from
 * protobuf with the route's server proto, inflated; a push that cannot be decoded is dropped).
 * Views are valid during the call. */
typedef void (*pomelo_push_cb)(pomelo_client *client, const char *route, size_t route_len,
                               const pomelo_msg *push, void *user_data);

typedef struct pomelo_client_callbacks {
  /** The handshake succeeded; `response` is the server's parsed answer (valid during the call). */
  void (*on_connected)(pomelo_client *client, const pomelo_json_value *response, void *user_data);
  /** The server refused the handshake (code 500, 501, or -1 for an unreadable answer). No
   * reconnect follows. */
  void (*on_handshake_error)(pomelo_client *client, int code, void *user_data);
  /** A push for which no route handler (pomelo_client_on) is registered. */
  pomelo_push_cb on_push;
  /** The server kicked us; `reason` may be NULL. No reconnect follows. */
  void (*on_kick)(pomelo_client *client, const char *reason, size_t reason_len, void *user_data);
  /** The connection ended (a pomelo_close_reason; POMELO_CLOSE_LOCAL after
   * pomelo_client_disconnect), or a socket given after on_reconnect could not connect
   * (pomelo_client_peer_closed, POMELO_CLOSE_PEER). `reconnect_at` is when on_reconnect will
   * fire (UINT64_MAX when no reconnect is planned). Called before the pending requests fail. */
  void (*on_disconnect)(pomelo_client *client, int reason, uint64_t reconnect_at, void *user_data);
  /** Time to reconnect: connect a new socket and call pomelo_client_connect. `attempt` counts
   * from 1. */
  void (*on_reconnect)(pomelo_client *client, uint32_t attempt, void *user_data);
  /** The output queue became non-empty. */
  void (*on_output)(pomelo_client *client, void *user_data);
} pomelo_client_callbacks;

/** Creates a client (state IDLE). `settings` NULL = defaults; `callbacks` may be NULL; both are
 * copied. Errors: POMELO_ERR_INVALID_ARG (out NULL, a bad connection setting, WebSocket without
 * a random callback), POMELO_ERR_UNSUPPORTED (a transport this build cannot do),
 * POMELO_ERR_NOMEM. */
POMELO_API int pomelo_client_new(pomelo_client **out, const pomelo_client_settings *settings,
                                 const pomelo_client_callbacks *callbacks,
                                 const pomelo_allocator *alloc, void *user_data);

/** Frees the client. Pending requests get their callback with POMELO_ERR_CLOSED first. Accepts
 * NULL. Never from inside a callback. */
POMELO_API void pomelo_client_del(pomelo_client *client);

/** The user_data given at creation. */
POMELO_API void *pomelo_client_user_data(const pomelo_client *client);

/** Starts a connection on a freshly connected socket: queues the handshake (state CONNECTING),
 * with sys.dictVersion when a dictionary is cached. Any previous connection is dropped (its
 * waiting requests fail with POMELO_ERR_CLOSED, with no on_disconnect). May be called from a
 * callback. Errors: POMELO_ERR_NOMEM (nothing changed), POMELO_ERR_STATE (from a callback
 * run by pomelo_client_del). */
POMELO_API int pomelo_client_connect(pomelo_client *client, uint64_t now);

/** Closes the connection on purpose: no reconnect (a planned one is cancelled); on_disconnect
 * (POMELO_CLOSE_LOCAL) runs, pending requests fail with POMELO_ERR_CLOSED; state IDLE. Output
 * already queued (a notify, say) is still flushed: pomelo_client_wants_close() says to close the
 * socket once it has been written (at once when nothing is queued). */
POMELO_API void pomelo_client_disconnect(pomelo_client *client);

/** The current state. */
POMELO_API pomelo_client_state pomelo_client_get_state(const pomelo_client *client);

/** Feeds received bytes (ignored when no connection is open). Returns 0, or the error that
 * broke the connection (see pomelo_conn_feed; POMELO_ERR_NOMEM closes it with
 * POMELO_CLOSE_ERROR): it is then lost, on_disconnect runs and a reconnect is planned per the
 * policy. The client itself stays usable. */
POMELO_API int pomelo_client_feed(pomelo_client *client, const uint8_t *data, size_t len,
                                  uint64_t now);

/** The output, as for a connection (see pomelo_conn_out_iov and friends). */
POMELO_API int pomelo_client_out_iov(const pomelo_client *client, struct iovec *iov, int max);
POMELO_API size_t pomelo_client_out_len(const pomelo_client *client);
POMELO_API void pomelo_client_out_consume(pomelo_client *client, size_t n, uint64_t now);

/** 1 when the caller should close the current socket now. It stays 1 until the next
 * pomelo_client_connect. */
POMELO_API int pomelo_client_wants_close(const pomelo_client *client);

/** The socket died or reached end of file. Pending requests fail with POMELO_ERR_CLOSED, and a
 * reconnect is planned per the policy. Also call it when the socket opened after on_reconnect
 * could not connect: the next attempt is planned (on_disconnect tells when). Harmless on a
 * connection that is already closed. */
POMELO_API void pomelo_client_peer_closed(pomelo_client *client, uint64_t now);

/** The next deadline (heartbeats, request timeouts, the reconnect time), or UINT64_MAX. */
POMELO_API uint64_t pomelo_client_expiry(const pomelo_client *client);

/** Runs what is due at `now`: heartbeats, request timeouts, connection timeouts, on_reconnect.
 * Returns 0, or POMELO_ERR_NOMEM when a heartbeat could not be queued (the connection is then
 * lost with POMELO_CLOSE_ERROR, as by pomelo_client_feed). */
POMELO_API int pomelo_client_handle_expiry(pomelo_client *client, uint64_t now);

/** Sends a request (CONNECTED only) on `route`, NUL-terminated. The route is compressed when
 * the server's dictionary has it; `body` is JSON text (or any bytes), encoded to protobuf when
 * the handshake's client protos have the route (then it must be JSON that fits the proto:
 * POMELO_ERR_JSON_* or POMELO_ERR_PB_* otherwise, nothing sent). `timeout_ms` 0 uses the settings'
 * default. `cb` (may be NULL) is called exactly once, later, never from inside this call. Ids
 * run 1..2^31-1, wrap, skip 0 and ids still waiting.
 * `*id_out` (if not NULL) receives the id. Errors (nothing is sent, `cb` is never called):
 * POMELO_ERR_INVALID_ARG (a NULL route, or a NULL body with a length), POMELO_ERR_STATE (not
 * connected), the codec's errors (POMELO_ERR_ROUTE_TOO_LONG, POMELO_ERR_PKG_TOO_LARGE, ...),
 * POMELO_ERR_LIMIT (2^31-1 requests waiting), POMELO_ERR_NOMEM (nothing sent; the client stays
 * usable). */
POMELO_API int pomelo_client_request(pomelo_client *client, const char *route, const uint8_t *body,
                                     size_t body_len, uint32_t timeout_ms, pomelo_response_cb cb,
                                     void *req_data, uint64_t now, uint32_t *id_out);

/** Sends a notify on `route` (NUL-terminated; CONNECTED only; never answered). Errors as
 * pomelo_client_request. */
POMELO_API int pomelo_client_notify(pomelo_client *client, const char *route, const uint8_t *body,
                                    size_t body_len);

/** Registers `cb` for pushes on `route` (NUL-terminated; "" for the empty route; replacing an
 * earlier one; `cb` NULL removes it). The route is copied. Errors: POMELO_ERR_INVALID_ARG (route
 * NULL), POMELO_ERR_NOMEM. */
POMELO_API int pomelo_client_on(pomelo_client *client, const char *route, pomelo_push_cb cb,
                                void *user_data);

/** The number of requests waiting for a response. */
POMELO_API size_t pomelo_client_pending(const pomelo_client *client);

#ifdef __cplusplus
}
#endif

#endif /* POMELO_CLIENT_H */
