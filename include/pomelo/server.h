/* libpomelo: the server (a Pomelo frontend): sessions, route dispatch, filters, forwarding,
 * channels, encode-once pushes, limits and statistics (spec section 8).
 *
 * A server holds the connections it accepted as sessions; the sockets stay the caller's. The
 * server keeps a ready list: the sessions that have new output to write or that want their
 * socket closed. The loop drains it after every call into the server, so a wake-up costs
 * nothing for the sessions that have nothing to do:
 *
 *   accept()        -> pomelo_server_accept(srv, now, my_socket, &session)
 *   readable        -> pomelo_session_feed(session, bytes, n, now)
 *   writable        -> pomelo_session_out_iov / writev / pomelo_session_out_consume
 *   timer           -> pomelo_server_expiry(srv) is the next deadline over ALL sessions;
 *                      pomelo_server_handle_expiry(srv, now) when it passes
 *   socket died     -> pomelo_session_peer_closed(session)
 *   after each call -> while ((s = pomelo_server_next_ready(srv, &what))):
 *                        POMELO_READY_WRITE: write its output (until EAGAIN)
 *                        POMELO_READY_CLOSE: clean up, close its socket,
 *                                            pomelo_server_release(srv, s)
 *
 * Callbacks run only inside the call that caused them (feed, handle_expiry, a push, ...), never
 * inside pomelo_session_peer_closed, pomelo_server_release, pomelo_server_next_ready or
 * pomelo_server_del. Handlers are registered by route ("connector.entryHandler.enter") of this
 * server's type; each request reaches its handler with a pomelo_request handle, answered at once
 * or later. Routes of other server types go to the forward hook, so a connector can hand work
 * to backend processes over any bus.
 *
 * Strings: routes and kick reasons, which a program writes as literals, are NUL-terminated;
 * uids, channel names, session settings and bodies, which may come from a peer (and may hold
 * NUL bytes), are a pointer and a length.
 *
 * One server and everything made from it is used by one thread at a time. Callbacks may call
 * any function of the server except pomelo_server_del and pomelo_server_release.
 * docs/getting-started.md walks through a whole server; docs/server.md lists every handle's
 * lifetime.
 * SPDX-License-Identifier: MIT
 */
#ifndef POMELO_SERVER_H
#define POMELO_SERVER_H

#include <pomelo/common.h>
#include <pomelo/codec.h>
#include <pomelo/conn.h>
#include <pomelo/json.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pomelo_server pomelo_server;
typedef struct pomelo_session pomelo_session;
typedef struct pomelo_request pomelo_request;
typedef struct pomelo_channel pomelo_channel;

/** What bind() does when the uid is already bound to another session. */
typedef enum pomelo_uid_policy {
  POMELO_UID_MANY = 0,      /**< many sessions per uid (the real server's default) */
  POMELO_UID_REJECT = 1,    /**< the second bind fails (the real server's singleSession) */
  POMELO_UID_KICK_OLDER = 2 /**< the older sessions are kicked ("replaced") */
} pomelo_uid_policy;

/** What happens when a session's queued output passes max_output. */
typedef enum pomelo_slow_policy {
  POMELO_SLOW_DROP = 0,      /**< further pushes to it are dropped (counted) until it drains */
  POMELO_SLOW_DISCONNECT = 1 /**< the session is closed (POMELO_CLOSE_SLOW_CONSUMER) */
} pomelo_slow_policy;

/** What happens to a request or notify over the rate limit. */
typedef enum pomelo_rate_policy {
  POMELO_RATE_DROP = 0, /**< the message is dropped without an answer (counted) */
  POMELO_RATE_KICK = 1  /**< the session is kicked with reason "rate limit" */
} pomelo_rate_policy;

/** How a server writes text for a client (spec 12.19). The real browser client encodes and
 * decodes UTF-8 itself and knows only 1- to 3-byte sequences: it sends a character outside the
 * Basic Multilingual Plane (an emoji) as CESU-8 (two 3-byte surrogate sequences) and cannot read
 * one sent as 4-byte UTF-8. */
typedef enum pomelo_text_mode {
  /** Default: CESU8 for clients whose handshake says sys.type "js-websocket" (the browser
   * client), UTF8 for every other client (libpomelo2, Unity, pomelo_client). */
  POMELO_TEXT_AUTO = 0,
  POMELO_TEXT_UTF8 = 1, /**< every client reads real UTF-8 */
  POMELO_TEXT_CESU8 = 2 /**< every client gets the browser form */
} pomelo_text_mode;

/** A session's wire format (pomelo_session_format): which bodies are protobuf and how text is
 * written. Received bodies are turned into JSON in real UTF-8 whatever the format; only what
 * the server sends depends on it. */
#define POMELO_FORMAT_PROTOBUF                                                                     \
  0x1u /**< pushes (and requests in) of routes that have a proto                                   \
            are protobuf (set when the server has protos) */
#define POMELO_FORMAT_CESU8                                                                        \
  0x2u                          /**< characters outside the BMP: in JSON bodies as                 \
                                     \uD83D\uDE00 escapes, in protobuf strings and routes          \
                                     as CESU-8 */
#define POMELO_FORMAT_GZIP 0x4u /**< bodies of settings.gzip_min bytes and more deflated */
#define POMELO_FORMAT_PROTOBUF_RESPONSES                                                           \
  0x8u /**< responses protobuf-encoded with the server                                             \
            proto of the request's route */

/** Server settings. Fill with pomelo_server_settings_default, then change fields. */
typedef struct pomelo_server_settings {
  /** This server's id ("connector-server-1", the sessions' frontendId) and type ("connector",
   * the first part of the routes it serves). Copied. Defaults "connector-server-1" and
   * "connector". */
  const char *server_id;
  const char *server_type;
  /** The settings of every connection (role forced to server): heartbeat, timeouts, body
   * limit, transport, handshake extras. Its strings must outlive the server. */
  pomelo_conn_settings conn;
  /** Sessions at once; over it pomelo_server_accept fails (0 = unlimited, the default). */
  uint32_t max_connections;
  /** Queued output bytes per session before slow_policy applies (default 1 MiB). */
  size_t max_output;
  pomelo_slow_policy slow_policy; /**< default POMELO_SLOW_DROP */
  /** Requests and notifies per second per session (token bucket; 0 = no limit, default) and
   * the bucket size (0 = one second's worth). */
  uint32_t rate_limit;
  uint32_t rate_burst;
  pomelo_rate_policy rate_policy; /**< default POMELO_RATE_DROP */
  pomelo_uid_policy uid_policy;   /**< default POMELO_UID_MANY */
  /** Push batching: 0 (default) tells the caller about new output at once; N > 0 holds the
   * output-ready notification of a session for up to N ms, so that the pushes of that window
   * leave in one writev (like the real server's buffer scheduler, whose default is 20 ms). */
  uint32_t flush_interval_ms;
  /** With protos (conn.protos): responses to a request whose route has a server proto are
   * protobuf, as the real server sends them (1, the default). 0 sends them as JSON, for
   * libpomelo2 clients, which cannot decode protobuf responses (spec 10). Pushes are protobuf
   * either way. Per session: POMELO_FORMAT_PROTOBUF_RESPONSES. */
  int protobuf_responses;
  /** How text is written for clients (default POMELO_TEXT_AUTO). Per session:
   * POMELO_FORMAT_CESU8. */
  pomelo_text_mode text_mode;
  /** Responses and pushes whose body is at least this many bytes are deflated (a zlib stream)
   * and flagged (bit 4); 0 (default) never: NetEase clients do not inflate (libpomelo2 rejects
   * the flag), only pomelo_client and pitaya-style clients do. Needs zlib. Per session:
   * POMELO_FORMAT_GZIP. Flagged input is inflated in every case (up to conn.max_body). */
  uint32_t gzip_min;
} pomelo_server_settings;

/** Fills `s` with the defaults. */
POMELO_API void pomelo_server_settings_default(pomelo_server_settings *s);

/** Server callbacks; each may be NULL and receives the server's user_data last. */
typedef struct pomelo_server_callbacks {
  /** The ready list went from empty to non-empty. Only for loops that drain the list once per
   * iteration rather than after every call (libevent's event_active, say): it runs inside
   * library calls, in the middle of a push even, so it should only note that a drain is due. */
  void (*on_ready_list)(pomelo_server *srv, void *user_data);
  /** Like pomelo_conn_callbacks.check_client: return 0 to refuse the handshake with 501. */
  int (*check_client)(pomelo_server *srv, pomelo_session *s, const char *type, size_t type_len,
                      const char *version, size_t version_len, void *user_data);
  /** Like pomelo_conn_callbacks.on_handshake: when set, answer every handshake with
   * pomelo_session_handshake_reply (now or later). */
  void (*on_handshake)(pomelo_server *srv, pomelo_session *s, const pomelo_json_value *request,
                       void *user_data);
  /** The session's handshake completed (ACK received). */
  void (*on_session_ready)(pomelo_server *srv, pomelo_session *s, void *user_data);
  /** A request or notify for a route whose server type is not this server's. `session_json`
   * is the exported session (pomelo_session_export); `msg` the message (views valid during the
   * call). For a request, answer later with pomelo_server_respond(srv, sid, msg->id, ...).
   * When NULL, such requests go to the server's cluster when it has one (cluster.h), else to
   * the default handler, or get {"code":500}. */
  void (*on_forward)(pomelo_server *srv, pomelo_session *s, const char *session_json,
                     size_t session_json_len, const pomelo_msg *msg, void *user_data);
  /** Error handler: a request is answered as an error, `err` being the application's code
   * (positive) or the library's (negative: POMELO_ERR_NO_HANDLER, POMELO_ERR_ROUTE_TYPE,
   * POMELO_ERR_ROUTE, or what a filter returned). Write a JSON object into `body` to answer with
   * it (a "code" of 500 is added when it has none); write nothing for the default. */
  void (*on_error)(pomelo_server *srv, pomelo_request *req, int err, pomelo_json_writer *body,
                   void *user_data);
} pomelo_server_callbacks;

/** Creates a server. `settings` NULL = defaults. Errors: POMELO_ERR_INVALID_ARG,
 * POMELO_ERR_NOMEM. */
POMELO_API int pomelo_server_new(pomelo_server **out, const pomelo_server_settings *settings,
                                 const pomelo_server_callbacks *callbacks,
                                 const pomelo_allocator *alloc, void *user_data);

/** Frees the server, its sessions, channels and pending requests' memory. Accepts NULL. */
POMELO_API void pomelo_server_del(pomelo_server *srv);

/** The server's user_data. */
POMELO_API void *pomelo_server_user_data(const pomelo_server *srv);

/* ---------------------------------------------------------------------------------------------
 * Connections
 * ------------------------------------------------------------------------------------------- */

/** Registers a newly accepted connection as a session at `now`. `socket_data` is the caller's
 * (pomelo_session_user_data). Errors: POMELO_ERR_LIMIT (max_connections reached: close the
 * socket at once; counted as rejected), POMELO_ERR_STATE (shutting down), POMELO_ERR_NOMEM. */
POMELO_API int pomelo_server_accept(pomelo_server *srv, uint64_t now, void *socket_data,
                                    pomelo_session **out);

/** Feeds received bytes of a session; handlers run inside. Returns 0, or the error that closed
 * the session (it is then closing or closed, and on the ready list once its socket may close;
 * see pomelo_conn_feed for the reaction to each: a package over max_body gets a KICK
 * "message too large"). POMELO_ERR_NOMEM closes only this session (POMELO_CLOSE_ERROR): the
 * server and its other sessions go on. Bytes fed to a closing session are ignored. */
POMELO_API int pomelo_session_feed(pomelo_session *s, const uint8_t *data, size_t len,
                                   uint64_t now);

/** The session's output, as for a connection (pomelo_conn_out_iov and friends): the iovecs stay
 * valid until those bytes are consumed or the session is released. */
POMELO_API int pomelo_session_out_iov(const pomelo_session *s, struct iovec *iov, int max);
POMELO_API size_t pomelo_session_out_len(const pomelo_session *s);
POMELO_API void pomelo_session_out_consume(pomelo_session *s, size_t n, uint64_t now);

/** What a session taken off the ready list needs (bits of `*what`). */
#define POMELO_READY_WRITE 0x1u /**< output is queued: write it (until the socket would block) */
#define POMELO_READY_CLOSE 0x2u /**< finished: close its socket, then pomelo_server_release */

/** Takes the next session off the ready list and returns it, with what it needs in `*what`;
 * NULL when the list is empty. A session is on the list once at most, in the order it became
 * ready: when its output goes from empty to non-empty (after the flush_interval_ms when
 * batching) and when it wants its socket closed (POMELO_READY_CLOSE: its final bytes are
 * written or the peer is gone; that is the only time the library asks for a close). Writing
 * may finish a closing session, which then comes back with POMELO_READY_CLOSE: drain until
 * NULL. A session that needs nothing by the time it is taken off is skipped. O(1). */
POMELO_API pomelo_session *pomelo_server_next_ready(pomelo_server *srv, unsigned *what);

/** The number of sessions on the ready list. */
POMELO_API size_t pomelo_server_ready_count(const pomelo_server *srv);

/** 1 when the session's socket should close now (the same as POMELO_READY_CLOSE). */
POMELO_API int pomelo_session_wants_close(const pomelo_session *s);

/** Why the session ended (a pomelo_close_reason; POMELO_CLOSE_NONE while it works). Readable
 * until the session is released. */
POMELO_API int pomelo_session_close_reason(const pomelo_session *s);

/** The session's socket died or reached end of file: the session is closed at once (reason
 * POMELO_CLOSE_PEER unless it was already closing for another reason) and put on the ready list
 * with POMELO_READY_CLOSE. Runs no callback. */
POMELO_API void pomelo_session_peer_closed(pomelo_session *s);

/** Frees a session, in any state (close its socket first). It leaves every channel and its uid
 * and the ready list; its pending requests stay valid handles whose answers return
 * POMELO_ERR_CLOSED. Runs no callback. Never from inside a callback. */
POMELO_API void pomelo_server_release(pomelo_server *srv, pomelo_session *s);

/** The next deadline over all sessions (timeouts, heartbeats, push batching), or UINT64_MAX. */
POMELO_API uint64_t pomelo_server_expiry(const pomelo_server *srv);

/** Runs every timer due at `now`; only the sessions whose deadline passed are touched. Sessions
 * it closes (timeouts) or gives output (batched pushes) go on the ready list. A session whose
 * timer work fails for lack of memory is closed (POMELO_CLOSE_ERROR); the others go on. */
POMELO_API void pomelo_server_handle_expiry(pomelo_server *srv, uint64_t now);

/** Graceful shutdown: every session is kicked with `reason` (a KICK package {"reason":...} to
 * those past the handshake when `reason`, NUL-terminated, is not NULL) and closes once flushed;
 * accept then fails. Drain the ready list until pomelo_server_session_count() is 0 (give up on
 * peers that do not read after a while of your choosing: release them). */
POMELO_API void pomelo_server_shutdown(pomelo_server *srv, const char *reason);

/* ---------------------------------------------------------------------------------------------
 * Sessions
 * ------------------------------------------------------------------------------------------- */

/** The session id: unique in this server, increasing from 1. */
POMELO_API uint64_t pomelo_session_id(const pomelo_session *s);

/** The caller's socket_data given at accept. */
POMELO_API void *pomelo_session_user_data(const pomelo_session *s);

/** The connection state (see conn.h). */
POMELO_API pomelo_conn_state pomelo_session_state(const pomelo_session *s);

/** The bound uid (NUL-terminated; length in `*len` if not NULL), or NULL when unbound. */
POMELO_API const char *pomelo_session_uid(const pomelo_session *s, size_t *len);

/** Binds the session to `uid` (copied). Errors: POMELO_ERR_INVALID_ARG (empty uid),
 * POMELO_ERR_EXISTS (already bound to another uid, or the uid is taken under
 * POMELO_UID_REJECT), POMELO_ERR_STATE (the session is closing), POMELO_ERR_NOMEM. Binding the
 * same uid again succeeds. Under POMELO_UID_KICK_OLDER the uid's other sessions are kicked with
 * reason "replaced". */
POMELO_API int pomelo_session_bind(pomelo_session *s, const char *uid, size_t len);

/** Unbinds the session's uid. Errors: POMELO_ERR_STATE (not bound). */
POMELO_API int pomelo_session_unbind(pomelo_session *s);

/** Sets a string setting (key and value copied). Errors: POMELO_ERR_INVALID_ARG,
 * POMELO_ERR_NOMEM. */
POMELO_API int pomelo_session_set(pomelo_session *s, const char *key, size_t key_len,
                                  const char *value, size_t value_len);

/** A setting's value (NUL-terminated, length in `*len`), or NULL. Valid until it changes. */
POMELO_API const char *pomelo_session_get(const pomelo_session *s, const char *key, size_t key_len,
                                          size_t *len);

/** Removes a setting. Errors: POMELO_ERR_NOT_FOUND. */
POMELO_API int pomelo_session_remove(pomelo_session *s, const char *key, size_t key_len);

/** The session with id `sid`, or NULL. */
POMELO_API pomelo_session *pomelo_server_session(const pomelo_server *srv, uint64_t sid);

/** Stores up to `max` sessions bound to `uid` in `out` and returns how many are bound. */
POMELO_API size_t pomelo_server_sessions_by_uid(const pomelo_server *srv, const char *uid,
                                                size_t len, pomelo_session **out, size_t max);

/** Calls `fn` for every session (in no particular order) until it returns non-zero. `fn` may
 * kick or close sessions, not release them. Returns the number of calls. */
POMELO_API size_t pomelo_server_foreach(pomelo_server *srv, int (*fn)(pomelo_session *s, void *arg),
                                        void *arg);

/** The number of sessions, and of those bound to a uid. */
POMELO_API size_t pomelo_server_session_count(const pomelo_server *srv);
POMELO_API size_t pomelo_server_bound_count(const pomelo_server *srv);

/** The session's wire format (POMELO_FORMAT_* bits). It is chosen when the handshake arrives,
 * from the settings and the client's sys.type (see pomelo_text_mode), before check_client and
 * on_handshake run, which may change it. */
POMELO_API unsigned pomelo_session_format(const pomelo_session *s);

/** Sets the session's wire format for what is sent from now on. Errors: POMELO_ERR_INVALID_ARG
 * (an unknown bit), POMELO_ERR_UNSUPPORTED (POMELO_FORMAT_GZIP without zlib). */
POMELO_API int pomelo_session_set_format(pomelo_session *s, unsigned format);

/** Kicks one session: see pomelo_conn_kick (a KICK {"reason":...} when `reason`, NUL-terminated,
 * is not NULL and the session is past its handshake, then a close after the flush). Errors:
 * POMELO_ERR_STATE (already closing), POMELO_ERR_INVALID_ARG (reason not UTF-8),
 * POMELO_ERR_NOMEM (closed at once instead, POMELO_CLOSE_ERROR). */
POMELO_API int pomelo_session_kick(pomelo_session *s, const char *reason);

/** Kicks every session bound to `uid`. Returns how many were kicked (0 when none). */
POMELO_API size_t pomelo_server_kick_uid(pomelo_server *srv, const char *uid, size_t len,
                                         const char *reason);

/** Answers a handshake left pending by on_handshake (see pomelo_conn_handshake_reply). */
POMELO_API int pomelo_session_handshake_reply(pomelo_session *s, int code, const char *user_json,
                                              size_t user_json_len);

/** Writes the session as JSON {"id":sid,"frontendId":..,"uid":..|null,"settings":{..}} (the
 * shape of the real server's session.export()) into `buf` of `cap` bytes; `*out_len` receives
 * the length (POMELO_ERR_BUFFER_TOO_SMALL with the size needed). */
POMELO_API int pomelo_session_export(const pomelo_session *s, char *buf, size_t cap,
                                     size_t *out_len);

/* ---------------------------------------------------------------------------------------------
 * Route dispatch
 * ------------------------------------------------------------------------------------------- */

/** A handler. For a request (it has an id), `req` is valid until it is answered
 * (pomelo_request_respond, _error or _drop), now or later, even after its connection closed;
 * every request must be answered or dropped once. For a notify (no id), `req` is valid only
 * until the handler returns: the library frees it then, and answering it does nothing.
 * pomelo_request_msg(req)->type tells which. */
typedef void (*pomelo_handler_fn)(pomelo_request *req, void *user_data);

/** Registers `fn` for `route`, NUL-terminated: "serverType.handler.method", exactly three
 * non-empty parts, the server type being this server's (settings.server_type: routes of other
 * types never reach this server's handlers; they go to on_forward). Replaces an earlier one.
 * `route` NULL registers the default handler: it gets every request and notify that no handler
 * takes and that is not forwarded (an unknown handler or method, another server type without
 * on_forward, a route of 2 or 4+ parts), instead of the {"code":500} answer. Errors:
 * POMELO_ERR_INVALID_ARG (fn NULL), POMELO_ERR_ROUTE (not three non-empty parts, or over 255
 * bytes), POMELO_ERR_ROUTE_TYPE (another server type), POMELO_ERR_NOMEM. */
POMELO_API int pomelo_server_on(pomelo_server *srv, const char *route, pomelo_handler_fn fn,
                                void *user_data);

/** Makes `route` (NUL-terminated, any route: a handler's, another server type's, a push
 * route) a binary route: its bodies pass untouched both ways, never parsed as JSON, decoded or
 * encoded as protobuf, or rewritten for text (received bodies are still inflated when flagged).
 * Its handlers read pomelo_request_msg(req)->body. Errors: POMELO_ERR_ROUTE_TOO_LONG,
 * POMELO_ERR_INVALID_ARG, POMELO_ERR_NOMEM. */
POMELO_API int pomelo_server_binary_route(pomelo_server *srv, const char *route);

/** A before-filter: return 0 to let the request through, or an error code (an application code
 * > 0 or a library code < 0) to stop it: a request is then answered as an error through
 * on_error; a notify is dropped. It must not answer the request itself. */
typedef int (*pomelo_before_fn)(pomelo_request *req, void *user_data);
/** An after-filter: sees the answer about to be sent (`err` 0 and the body, or the error);
 * returning non-zero turns a successful answer into an error answer with that code. */
typedef int (*pomelo_after_fn)(pomelo_request *req, int err, const uint8_t *body, size_t len,
                               void *user_data);

/** Adds a filter for `route` (NUL-terminated, as for pomelo_server_on; NULL: global, for every
 * route). Global filters run before route filters; each kind in the order added. Errors:
 * POMELO_ERR_INVALID_ARG (fn NULL), POMELO_ERR_ROUTE, POMELO_ERR_ROUTE_TYPE, POMELO_ERR_NOMEM. */
POMELO_API int pomelo_server_before(pomelo_server *srv, const char *route, pomelo_before_fn fn,
                                    void *user_data);
POMELO_API int pomelo_server_after(pomelo_server *srv, const char *route, pomelo_after_fn fn,
                                   void *user_data);

/** The request's session (NULL once it has been released). */
POMELO_API pomelo_session *pomelo_request_session(const pomelo_request *req);
/** The session id the request came from (also after release). */
POMELO_API uint64_t pomelo_request_sid(const pomelo_request *req);
/** The message: type (REQUEST or NOTIFY), id, route (always the string route: a dictionary
 * code resolved, CESU-8 repaired), body: JSON text in UTF-8 whatever came on the wire (decoded
 * from protobuf, inflated, CESU-8 surrogate pairs rewritten as UTF-8), or on a binary route the
 * bytes as received (inflated). Views valid until the request is answered. */
POMELO_API const pomelo_msg *pomelo_request_msg(const pomelo_request *req);
/** The body parsed as JSON (NULL when it is not valid JSON, and on a binary route; the real
 * server would dispatch {}). Valid until the request is answered. */
POMELO_API const pomelo_json_value *pomelo_request_json(pomelo_request *req);

/** Answers with `body` (JSON text; NULL or empty: "{}"; on a binary route, bytes) and frees the
 * handle (in every case). The library writes it in the session's format: protobuf when the
 * request's route has a server proto and the session takes protobuf responses (when the body
 * does not fit the proto, an empty body goes out as from the real server, and the call returns
 * the POMELO_ERR_PB_* code after sending it), JSON otherwise.
 * A notify: does nothing, returns 0 (the handle lives until its handler returns). Errors:
 * POMELO_ERR_INVALID_ARG (body NULL with a length; nothing done, the handle stays),
 * POMELO_ERR_CLOSED (the session is gone or closing: nothing sent), POMELO_ERR_NOMEM (the
 * session is closed, POMELO_CLOSE_ERROR, rather than leave its client waiting). */
POMELO_API int pomelo_request_respond(pomelo_request *req, const char *body, size_t len);

/** pomelo_request_respond with the body as a tree (`value`, borrowed for the call; NULL: {}),
 * e.g. the request's own pomelo_request_json. After-filters see it written as JSON. */
POMELO_API int pomelo_request_respond_value(pomelo_request *req, const pomelo_json_value *value);

/** Answers as an error and frees the handle: `err` is the application's code (> 0) or a
 * library code (< 0), given to on_error and the after-filters, never sent; the body is what
 * on_error writes, else `body` (a JSON object, or NULL), with "code":500 added when it has no
 * "code", like the real server. A notify: does nothing, returns 0. Errors: as
 * pomelo_request_respond; POMELO_ERR_INVALID_ARG when `err` is 0 (nothing done, the handle
 * stays: an error needs a code). */
POMELO_API int pomelo_request_error(pomelo_request *req, int err, const char *body, size_t len);

/** Frees the handle without answering (a notify: does nothing). */
POMELO_API void pomelo_request_drop(pomelo_request *req);

/** Sends a response for request `id` of session `sid` (a forwarded request answered by a
 * backend). `route` (NUL-terminated, may be NULL) is the request's route, which chooses the
 * response's proto, as for pomelo_request_respond; NULL sends JSON. Errors:
 * POMELO_ERR_NOT_FOUND (no such session), POMELO_ERR_STATE (not working), codec errors,
 * POMELO_ERR_PB_* (sent with an empty body), POMELO_ERR_NOMEM (the session is closed,
 * POMELO_CLOSE_ERROR). */
POMELO_API int pomelo_server_respond(pomelo_server *srv, uint64_t sid, uint32_t id,
                                     const char *route, const char *body, size_t len);

/** Backend side of forwarding: runs `msg` (a forwarded request or notify) through this server's
 * filters and handlers for a session imported from `session_json` (from
 * pomelo_session_export). The imported session has no connection: pomelo_request_session gives
 * a read-only session (id, uid, settings). The answer of a request is given to `reply` (body
 * bytes, valid during the call), to be carried back to the frontend (pomelo_server_respond);
 * notifies never reply. A request's `reply` runs exactly once: with its answer, or with body
 * NULL (len 0) when the request was dropped unanswered or the server deleted first. Errors:
 * POMELO_ERR_JSON_* / POMELO_ERR_INVALID_ARG (bad session JSON), POMELO_ERR_NOMEM (the message
 * could not be dispatched: `reply` is not called). */
POMELO_API int pomelo_server_dispatch(pomelo_server *srv, const char *session_json,
                                      size_t session_json_len, const pomelo_msg *msg,
                                      void (*reply)(const char *body, size_t len, void *arg),
                                      void *arg);

/* ---------------------------------------------------------------------------------------------
 * Pushes and channels
 *
 * A push is encoded once per wire format among its recipients (JSON or protobuf, text for the
 * browser or UTF-8; a channel of JSON and protobuf members encodes twice at most) into
 * refcounted frames shared by every recipient of that format (raw TCP and WebSocket alike);
 * each recipient's queue holds a reference. The route goes out as its dictionary code when the
 * dictionary has it. Bodies are JSON text (NULL or empty: "{}"), or bytes on a binary route;
 * the _value variants take a parsed tree instead (written as JSON, or encoded to protobuf
 * without reparsing). A body that does not fit the route's proto goes out empty to protobuf
 * recipients, as from the real server (counted in stats.encode_errors).
 * ------------------------------------------------------------------------------------------- */

/** Pushes `body` (JSON text; NULL or empty: "{}") on `route` (NUL-terminated) to one session.
 * Errors: POMELO_ERR_STATE (not working), POMELO_ERR_LIMIT (dropped by the slow-consumer
 * policy, or the session closed by it), codec errors (POMELO_ERR_ROUTE_TOO_LONG, ...),
 * POMELO_ERR_NOMEM (the push could not be queued: the session is closed, POMELO_CLOSE_ERROR). */
POMELO_API int pomelo_session_push(pomelo_session *s, const char *route, const char *body,
                                   size_t len);

/** pomelo_session_push with the body as a tree (`value`, borrowed for the call; NULL: {}). */
POMELO_API int pomelo_session_push_value(pomelo_session *s, const char *route,
                                         const pomelo_json_value *value);

/** Pushes to every session bound to each of the `n` uids. Returns the number of sessions
 * reached, or an error (codec errors, POMELO_ERR_NOMEM when the push could not be built:
 * nobody got it). A session that cannot take it for lack of memory is closed. */
POMELO_API int pomelo_server_push_uids(pomelo_server *srv, const char *const *uids,
                                       const size_t *uid_lens, size_t n, const char *route,
                                       const char *body, size_t len);

/** Pushes to every working session, or only to those bound to a uid. Returns the number
 * reached or an error, as pomelo_server_push_uids. */
POMELO_API int pomelo_server_broadcast(pomelo_server *srv, int bound_only, const char *route,
                                       const char *body, size_t len);

/** Creates channel `name`. Errors: POMELO_ERR_EXISTS, POMELO_ERR_INVALID_ARG, POMELO_ERR_NOMEM. */
POMELO_API int pomelo_channel_new(pomelo_server *srv, const char *name, size_t len,
                                  pomelo_channel **out);
/** The channel `name`, or NULL. */
POMELO_API pomelo_channel *pomelo_server_channel(const pomelo_server *srv, const char *name,
                                                 size_t len);
/** Destroys a channel (its members are not affected). */
POMELO_API void pomelo_channel_destroy(pomelo_channel *ch);
/** Adds member (uid, sid). Adding the same pair twice is POMELO_ERR_EXISTS (the real server
 * would deliver twice). Errors: POMELO_ERR_INVALID_ARG, POMELO_ERR_NOMEM. */
POMELO_API int pomelo_channel_add(pomelo_channel *ch, const char *uid, size_t len, uint64_t sid);
/** Removes member (uid, sid). Errors: POMELO_ERR_NOT_FOUND. */
POMELO_API int pomelo_channel_leave(pomelo_channel *ch, const char *uid, size_t len, uint64_t sid);
/** The number of members. */
POMELO_API size_t pomelo_channel_count(const pomelo_channel *ch);
/** Member i (0 <= i < count; the order changes when members leave): its uid and sid. Returns
 * POMELO_ERR_NOT_FOUND when out of range. */
POMELO_API int pomelo_channel_member(const pomelo_channel *ch, size_t i, const char **uid,
                                     size_t *uid_len, uint64_t *sid);
/** The channel's name. */
POMELO_API const char *pomelo_channel_name(const pomelo_channel *ch, size_t *len);
/** Pushes to every member whose session is still there and working. Returns the number
 * reached, or an error, as pomelo_server_push_uids. */
POMELO_API int pomelo_channel_push(pomelo_channel *ch, const char *route, const char *body,
                                   size_t len);

/** pomelo_channel_push with the body as a tree (`value`, borrowed for the call; NULL: {}). */
POMELO_API int pomelo_channel_push_value(pomelo_channel *ch, const char *route,
                                         const pomelo_json_value *value);

/* ---------------------------------------------------------------------------------------------
 * Statistics
 * ------------------------------------------------------------------------------------------- */

/** Counters since creation (`connections` and `bound` are current values). */
typedef struct pomelo_server_stats {
  uint64_t connections;          /**< sessions now */
  uint64_t connections_total;    /**< sessions accepted */
  uint64_t connections_rejected; /**< accepts refused by max_connections */
  uint64_t handshakes_ok;
  uint64_t handshakes_failed; /**< 500/501 answers and handshake timeouts */
  uint64_t packages_in;
  uint64_t packages_out;
  uint64_t bytes_in;
  uint64_t bytes_out; /**< bytes reported written with out_consume */
  uint64_t requests;
  uint64_t notifies;
  uint64_t responses;
  uint64_t pushes;     /**< push packages queued (one per recipient) */
  uint64_t push_drops; /**< pushes dropped by the slow-consumer policy */
  uint64_t slow_disconnects;
  uint64_t timeouts; /**< heartbeat, handshake and idle timeouts */
  uint64_t kicks;
  uint64_t rate_limited;
  uint64_t protocol_errors;
  uint64_t dropped_messages; /**< malformed, unroutable or out-of-state messages dropped */
  uint64_t forwarded;
  uint64_t too_large;     /**< sessions closed for a package or message over max_body */
  uint64_t errors;        /**< sessions closed because the library failed (out of memory) */
  uint64_t decode_errors; /**< received bodies that could not be decoded (protobuf, gzip) */
  uint64_t encode_errors; /**< bodies sent empty because they did not fit their proto */
  uint64_t gzip_bombs;    /**< flagged bodies that inflated past max_body (session closed) */
} pomelo_server_stats;

/** Copies the counters into `out`. */
POMELO_API void pomelo_server_get_stats(const pomelo_server *srv, pomelo_server_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* POMELO_SERVER_H */
