/* libpomelo: the cluster (docs/cluster.md): one pomelo_server per process, many processes on
 * many machines, talking over a message bus (NATS through libpomelo-nats, or any other).
 *
 * A cluster object is attached to one server and holds what that server needs to work with
 * the others:
 *   - a table of live servers (id, type, frontend or not, client host and port, sessions),
 *     fed by the announcements of the others over the bus, or by a static list;
 *   - a router from a server type to one of its servers (crc32 of the uid or of a session
 *     setting, as chatofpomelo; round-robin; sticky per session; or the caller's function);
 *   - forwarding: a server that receives a client route of another server type publishes it to
 *     the server the router picks and answers the client when the answer comes back (a table
 *     of requests in flight, deadlines in the server's timer, failing at once when the target
 *     leaves, the bus is down or nobody listens);
 *   - remote calls between servers (pomelo_cluster_call, handlers by pomelo_cluster_on);
 *   - backend-to-frontend session operations (bind, unbind, settings, kick, push), each
 *     acknowledged, and bind announcements so that POMELO_UID_KICK_OLDER holds across
 *     frontends;
 *   - cluster channels: members (uid, frontend id) on a backend; a push is one bus message per
 *     frontend, and each frontend encodes its frame once for all its members.
 *
 * It is sans-IO like the rest of the library: it never touches a socket. The caller (or
 * libpomelo-nats) gives it one function that publishes bytes on a subject
 * (pomelo_cluster_set_bus), subscribes to the subjects it lists (pomelo_cluster_subject), and
 * delivers what arrives with pomelo_cluster_deliver, on the server's thread, with `now`. Its
 * timers (deadlines of forwards and calls, announcements, expiry of silent servers) are part
 * of pomelo_server_expiry / pomelo_server_handle_expiry: the loop needs nothing more.
 *
 * Subjects, with P the prefix (settings.prefix, default "pomelo"):
 *   P/servers/<type>/<id>        requests to one server (forwards, calls, session operations)
 *   P/servers/<type>/<id>/push   grouped pushes to one frontend
 *   P/<type>/broadcast           pushes to every frontend of a type
 *   P/<type>/kick                kicks by uid on every frontend of a type
 *   P/<type>/bindings            {uid, frontend id} after each bind on a frontend of the type
 *   P/sd/announce, P/sd/bye, P/sd/query   server records (discovery)
 *   P/inbox/<id>/<instance>.<n>  answers to this server (it subscribes to ".../<instance>.*")
 * The bytes are protobuf envelopes with pitaya's field numbers (docs/cluster.md).
 *
 * One cluster and its server are used by one thread at a time. Delete the cluster before its
 * server.
 * SPDX-License-Identifier: MIT
 */
#ifndef POMELO_CLUSTER_H
#define POMELO_CLUSTER_H

#include <pomelo/common.h>
#include <pomelo/server.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pomelo_cluster pomelo_cluster;
typedef struct pomelo_cluster_channel pomelo_cluster_channel;

/** Longest server id or type, in bytes. Ids and types are non-empty and hold none of
 * ". *>/" nor control characters (they become parts of bus subjects). */
#define POMELO_CLUSTER_NAME_MAX 64

/** A server of the table (pomelo_cluster_servers, pomelo_cluster_find, the on_server event).
 * Its strings are NUL-terminated and valid until the next call into the cluster or its server
 * (copy what you keep). */
typedef struct pomelo_cluster_server {
  const char *id;
  const char *type;
  const char *hostname;    /**< the machine's name as it announced it ("" if none) */
  const char *client_host; /**< a frontend's address for clients ("" for a backend) */
  uint16_t client_port;    /**< a frontend's port for clients (0 for a backend) */
  int frontend;            /**< 1 for a frontend (it holds client sessions) */
  uint32_t sessions;       /**< sessions at its last announcement */
  int is_static;           /**< added by pomelo_cluster_add_server: never expires */
  int self;                /**< this process's own server */
} pomelo_cluster_server;

/** Cluster settings. Fill with pomelo_cluster_settings_default, then change fields. The
 * server's id and type come from its own settings. */
typedef struct pomelo_cluster_settings {
  const char *prefix;      /**< subject prefix (default "pomelo"; "pitaya" to share pitaya's) */
  const char *hostname;    /**< announced; default "" */
  const char *client_host; /**< a frontend's address as clients reach it (default "") */
  uint16_t client_port;    /**< a frontend's client port (default 0) */
  int frontend;            /**< this server holds client sessions (default 1 if client_port) */
  /** Announcement period (default 5000 ms); a server not heard from for three periods (its
   * own ttlMs) leaves the table. 0: no discovery (static list only, nothing announced). */
  uint32_t announce_ms;
  uint32_t timeout_ms;         /**< forwards and calls (default 5000 ms) */
  uint32_t max_in_flight;      /**< forwards + calls awaiting an answer, in all (default 65536) */
  uint32_t max_in_flight_peer; /**< ... to one server (default 10000) */
  uint32_t max_in_flight_session; /**< ... forwards of one client session (default 64) */
  /** The largest bus message (default 1 MiB, NATS' default max_payload; the bus adapter sets
   * the real one with pomelo_cluster_set_max_payload). Larger forwards are refused at once
   * with an error answer; larger pushes and calls fail with POMELO_ERR_PAYLOAD. */
  size_t max_payload;
  /** A string unique to this run of the server (the process id and its start time, say; at
   * most 32 bytes of [A-Za-z0-9_-]), announced with its record and part of its inbox subject:
   * the others tell a restart of the same id from a server that merely went quiet, and
   * answers meant for a previous run never reach this one. Default NULL: made from the
   * object's address, which only tells apart the clusters alive in one process. */
  const char *instance;
} pomelo_cluster_settings;

/** Fills `s` with the defaults. */
POMELO_API void pomelo_cluster_settings_default(pomelo_cluster_settings *s);

/** What happened to a server of the table (on_server). */
typedef enum pomelo_cluster_event {
  POMELO_CLUSTER_JOIN = 1,  /**< it announced itself (or was added statically) */
  POMELO_CLUSTER_LEAVE = 2, /**< it said bye, or was silent for its ttl */
  POMELO_CLUSTER_UPDATE = 3 /**< a record changed (sessions, address) */
} pomelo_cluster_event;

/** Cluster callbacks; each may be NULL and receives the cluster's user_data last. */
typedef struct pomelo_cluster_callbacks {
  /** A server joined, left or changed. After a LEAVE its forwards and calls have failed and
   * its members are gone from every cluster channel (on_member_lost ran for each). */
  void (*on_server)(pomelo_cluster *c, const pomelo_cluster_server *srv, pomelo_cluster_event event,
                    void *user_data);
  /** A member of a cluster channel was removed because its frontend left the table. */
  void (*on_member_lost)(pomelo_cluster *c, pomelo_cluster_channel *ch, const char *uid,
                         size_t uid_len, const char *frontend_id, void *user_data);
  /** The bus went down (up 0) or came back (up 1), as the adapter said. */
  void (*on_bus)(pomelo_cluster *c, int up, void *user_data);
} pomelo_cluster_callbacks;

/** Creates a cluster for `srv` (one per server) and attaches it: from now on the server's
 * routes of other server types go to the cluster (unless the server has its own on_forward),
 * its binds are announced, its timers include the cluster's. The server's id and type must be
 * valid names (POMELO_CLUSTER_NAME_MAX). Nothing is published before the bus is set and said
 * up (pomelo_cluster_set_bus, pomelo_cluster_bus_up). Errors: POMELO_ERR_INVALID_ARG (a bad
 * name or setting), POMELO_ERR_EXISTS (the server has a cluster), POMELO_ERR_NOMEM. */
POMELO_API int pomelo_cluster_new(pomelo_cluster **out, pomelo_server *srv,
                                  const pomelo_cluster_settings *settings,
                                  const pomelo_cluster_callbacks *callbacks,
                                  const pomelo_allocator *alloc, void *user_data);

/** Says bye on the bus (when it is up), fails what is in flight (their done callbacks run
 * with POMELO_ERR_CLOSED, forwarded clients get {"code":500}), detaches from the server and
 * frees everything. Accepts NULL. */
POMELO_API void pomelo_cluster_del(pomelo_cluster *c);

/** The cluster's user_data, and its server. */
POMELO_API void *pomelo_cluster_user_data(const pomelo_cluster *c);
POMELO_API pomelo_server *pomelo_cluster_server_of(const pomelo_cluster *c);

/* ---------------------------------------------------------------------------------------------
 * The bus
 * ------------------------------------------------------------------------------------------- */

/** Publishes `len` bytes on `subject` with a reply subject (NULL when no answer is wanted).
 * All strings NUL-terminated, bytes valid during the call (copy or send them). Returns 0, or
 * an error: POMELO_ERR_BUS_DOWN (the bus is down and cannot buffer it), POMELO_ERR_CLOSED (the
 * bus is closed for good), POMELO_ERR_PAYLOAD, ... (the operation that published fails with
 * it). */
typedef int (*pomelo_cluster_publish_fn)(void *bus, const char *subject, const char *reply,
                                         const uint8_t *data, size_t len);

/** Sets the function that publishes and its first argument. */
POMELO_API void pomelo_cluster_set_bus(pomelo_cluster *c, pomelo_cluster_publish_fn publish,
                                       void *bus);

/** The subjects to subscribe to, i from 0 while it returns non-NULL (NUL-terminated; a
 * trailing ".*" is a NATS wildcard for one token). Valid while the cluster lives. */
POMELO_API const char *pomelo_cluster_subject(const pomelo_cluster *c, size_t i);

/** The bus is connected and subscribed (up 1) or lost (up 0), at `now`. Up: this server
 * announces itself and asks the others to (P/sd/query); silent servers are not expired while
 * the bus was down. Down: every forward and call in flight fails at once and new ones fail
 * fast (POMELO_ERR_BUS_DOWN) until it is up again. */
POMELO_API void pomelo_cluster_bus_up(pomelo_cluster *c, int up, uint64_t now);

/** The bus's largest message (NATS: the server's max_payload). */
POMELO_API void pomelo_cluster_set_max_payload(pomelo_cluster *c, size_t max_payload);

/** Flags of pomelo_cluster_deliver. */
#define POMELO_CLUSTER_NO_RESPONDERS                                                               \
  0x1u /**< the bus says nobody is subscribed to the subject of the request answered on            \
            `subject` (NATS status 503): it fails at once */

/** Delivers a message the bus received on `subject` (NUL-terminated) with its reply subject
 * (NULL or "" when none), at `now`. Runs handlers and callbacks. Returns 0, or the error that
 * made it drop the message (counted in stats): POMELO_ERR_CLUSTER_ENVELOPE (undecodable),
 * POMELO_ERR_NOT_FOUND (a subject or correlation id it does not know: a late answer),
 * POMELO_ERR_NOMEM. Bad input never affects anything else. */
POMELO_API int pomelo_cluster_deliver(pomelo_cluster *c, const char *subject, const char *reply,
                                      const uint8_t *data, size_t len, unsigned flags,
                                      uint64_t now);

/* ---------------------------------------------------------------------------------------------
 * The server table
 * ------------------------------------------------------------------------------------------- */

/** Adds a server that never expires (a line of the real servers.json): `rec`'s id, type,
 * hostname, client_host, client_port and frontend are copied. A record for the same id
 * replaces it. Errors: POMELO_ERR_INVALID_ARG (bad name), POMELO_ERR_NOMEM. */
POMELO_API int pomelo_cluster_add_server(pomelo_cluster *c, const pomelo_cluster_server *rec);

/** Removes a server (static or discovered; not this server itself), as if it left. Errors:
 * POMELO_ERR_NOT_FOUND. */
POMELO_API int pomelo_cluster_remove_server(pomelo_cluster *c, const char *id);

/** Stores up to `max` servers of `type` (NULL: every type, this server included) in `out`, in
 * the router's order (ids sorted bytewise), and returns how many there are. */
POMELO_API size_t pomelo_cluster_servers(const pomelo_cluster *c, const char *type,
                                         pomelo_cluster_server *out, size_t max);

/** The server `id` into `*out`. Errors: POMELO_ERR_NOT_FOUND. */
POMELO_API int pomelo_cluster_find(const pomelo_cluster *c, const char *id,
                                   pomelo_cluster_server *out);

/* ---------------------------------------------------------------------------------------------
 * Routing
 * ------------------------------------------------------------------------------------------- */

/** How a route of a server type finds its server. */
typedef enum pomelo_route_mode {
  /** Math.abs(crc32(key)) % n over the servers of the type in id order, crc32 being the npm
   * `crc` package's (pomelo's default route and chatofpomelo's dispatcher): the key is the
   * session's uid ("" when unbound), or a session setting (pomelo_cluster_set_router's key).
   * The default. */
  POMELO_ROUTE_HASH = 0,
  POMELO_ROUTE_ROUND_ROBIN = 1, /**< each message to the next server */
  POMELO_ROUTE_STICKY = 2,      /**< round-robin once per session, then the same server */
  POMELO_ROUTE_CALLBACK = 3     /**< the caller's function */
} pomelo_route_mode;

/** A router: returns the index in `servers` (n >= 1, id order) of the server for the message
 * (`msg` NULL for a pomelo_cluster_call; `s` NULL when there is no session), or -1 to refuse. */
typedef int (*pomelo_router_fn)(pomelo_cluster *c, const char *type, const pomelo_session *s,
                                const pomelo_msg *msg, const pomelo_cluster_server *servers,
                                size_t n, void *user_data);

/** Sets how routes of `type` are routed: `key` (NUL-terminated, copied) is the session setting
 * hashed by POMELO_ROUTE_HASH (NULL: the uid); `fn` is POMELO_ROUTE_CALLBACK's function.
 * Errors: POMELO_ERR_INVALID_ARG, POMELO_ERR_NOMEM. */
POMELO_API int pomelo_cluster_set_router(pomelo_cluster *c, const char *type,
                                         pomelo_route_mode mode, const char *key,
                                         pomelo_router_fn fn, void *user_data);

/** The npm `crc` package's crc32 of a string (0.2.0, which pomelo and chatofpomelo use): the
 * CRC-32 of the low bytes of its UTF-16 code units, as a signed 32-bit value. `s` is UTF-8
 * (invalid bytes count as themselves). */
POMELO_API int32_t pomelo_cluster_crc32(const char *s, size_t len);

/** Picks a server of `type` as POMELO_ROUTE_HASH does for `key` (a gate's queryEntry: the
 * connector for a uid): Math.abs(crc32(key)) % n. Errors: POMELO_ERR_NOT_FOUND (none). */
POMELO_API int pomelo_cluster_pick(const pomelo_cluster *c, const char *type, const char *key,
                                   size_t key_len, pomelo_cluster_server *out);

/* ---------------------------------------------------------------------------------------------
 * Remote calls
 * ------------------------------------------------------------------------------------------- */

/** The end of a call or a session operation: `rc` 0 with the answer's body (JSON text; for a
 * handler's error answer, its error body), or the reason it failed: POMELO_ERR_TIMEOUT,
 * POMELO_ERR_BUS_DOWN, POMELO_ERR_NO_RESPONDERS, POMELO_ERR_SERVER_LEFT, POMELO_ERR_CLOSED (the
 * cluster is being deleted), POMELO_ERR_NOT_FOUND (a session operation on a session that is
 * gone). The body is valid during the call. */
typedef void (*pomelo_cluster_done_fn)(pomelo_cluster *c, int rc, const char *body, size_t len,
                                       void *arg);

/** Registers `fn` for remote route `route` ("chat.chatRemote.add": this server's type, three
 * parts), reached only by pomelo_cluster_call, never by clients. The handler gets a request
 * whose session is the caller's (read-only, imported) or an empty one (id 0); answer it as any
 * request (pomelo_request_respond). Errors: as pomelo_server_on. */
POMELO_API int pomelo_cluster_on(pomelo_cluster *c, const char *route, pomelo_handler_fn fn,
                                 void *user_data);

/** Calls remote route `route` (NUL-terminated) of server `server_id`, or (server_id NULL) of the
 * server the router picks for the route's type and session `s` (may be NULL). `s` (a local or
 * imported session, may be NULL) travels with the call. `body` is JSON text (NULL: {}).
 * `done` gets the answer; `done` NULL sends a notify (no answer). Returns 0 (done will run,
 * never inside this call) or: POMELO_ERR_ROUTE, POMELO_ERR_NOT_FOUND (no such server / no
 * server of the type), POMELO_ERR_BUS_DOWN, POMELO_ERR_PAYLOAD, POMELO_ERR_LIMIT (too many in
 * flight), a publish error, POMELO_ERR_NOMEM (done is then not called). */
POMELO_API int pomelo_cluster_call(pomelo_cluster *c, const char *server_id,
                                   const pomelo_session *s, const char *route, const char *body,
                                   size_t len, pomelo_cluster_done_fn done, void *arg);

/* ---------------------------------------------------------------------------------------------
 * Session operations: a backend acting on sessions of a frontend
 *
 * Each goes to frontend `frontend_id` and is acknowledged: `done` (may be NULL) gets rc 0 and a
 * body {"reached":n} (pushes: how many sessions got it), or a failure as for calls
 * (POMELO_ERR_NOT_FOUND: the session is gone; POMELO_ERR_EXISTS: the bind was refused by the
 * frontend's uid policy). They return 0 or an error as pomelo_cluster_call (done not called).
 * The frontend applies them with its own rules (uid policy, slow consumers, formats).
 * ------------------------------------------------------------------------------------------- */

/** The frontend id of a session: its server's id for a local session, the frontendId it was
 * exported with for an imported one (NUL-terminated; "" when unknown). */
POMELO_API const char *pomelo_session_frontend_id(const pomelo_session *s);

/** Binds session `sid` of the frontend to `uid`. */
POMELO_API int pomelo_cluster_bind(pomelo_cluster *c, const char *frontend_id, uint64_t sid,
                                   const char *uid, size_t uid_len, pomelo_cluster_done_fn done,
                                   void *arg);
/** Unbinds session `sid`. */
POMELO_API int pomelo_cluster_unbind(pomelo_cluster *c, const char *frontend_id, uint64_t sid,
                                     pomelo_cluster_done_fn done, void *arg);
/** Sets setting `key` of session `sid` to `value` (value NULL: removes it). */
POMELO_API int pomelo_cluster_set(pomelo_cluster *c, const char *frontend_id, uint64_t sid,
                                  const char *key, size_t key_len, const char *value,
                                  size_t value_len, pomelo_cluster_done_fn done, void *arg);
/** Kicks session `sid` (uid NULL), or every session of the frontend bound to `uid` (sid 0);
 * reason NUL-terminated, may be NULL. The answer says how many: {"reached":n}. */
POMELO_API int pomelo_cluster_kick(pomelo_cluster *c, const char *frontend_id, uint64_t sid,
                                   const char *uid, size_t uid_len, const char *reason,
                                   pomelo_cluster_done_fn done, void *arg);
/** Kicks every session bound to `uid` on every frontend of `frontend_type` (one broadcast
 * message, not acknowledged). */
POMELO_API int pomelo_cluster_kick_uid(pomelo_cluster *c, const char *frontend_type,
                                       const char *uid, size_t uid_len, const char *reason);
/** Pushes `body` (JSON text) on `route` to the `n` sessions `sids` and the sessions bound to
 * the `m` uids of the frontend, encoded once there for all of them. */
POMELO_API int pomelo_cluster_push(pomelo_cluster *c, const char *frontend_id, const uint64_t *sids,
                                   size_t n, const char *const *uids, const size_t *uid_lens,
                                   size_t m, const char *route, const char *body, size_t len,
                                   pomelo_cluster_done_fn done, void *arg);
/** Pushes to every session (bound_only: every bound session) of every frontend of
 * `frontend_type` (one broadcast message, not acknowledged). */
POMELO_API int pomelo_cluster_broadcast(pomelo_cluster *c, const char *frontend_type,
                                        int bound_only, const char *route, const char *body,
                                        size_t len);

/* ---------------------------------------------------------------------------------------------
 * Cluster channels: members on frontends anywhere
 * ------------------------------------------------------------------------------------------- */

/** Creates channel `name`. Errors: POMELO_ERR_EXISTS, POMELO_ERR_INVALID_ARG, POMELO_ERR_NOMEM. */
POMELO_API int pomelo_cluster_channel_new(pomelo_cluster *c, const char *name, size_t len,
                                          pomelo_cluster_channel **out);
/** The channel `name`, or NULL. */
POMELO_API pomelo_cluster_channel *pomelo_cluster_channel_get(const pomelo_cluster *c,
                                                              const char *name, size_t len);
/** Destroys a channel. Not from inside on_member_lost. */
POMELO_API void pomelo_cluster_channel_destroy(pomelo_cluster_channel *ch);
/** Stores up to `max` of the cluster's channels in `out` (in no particular order) and returns
 * how many there are. The pointers are valid until a channel is created or destroyed. */
POMELO_API size_t pomelo_cluster_channels(const pomelo_cluster *c, pomelo_cluster_channel **out,
                                          size_t max);
/** Adds member `uid` of frontend `frontend_id` (NUL-terminated). Errors: POMELO_ERR_EXISTS
 * (the same uid on the same frontend), POMELO_ERR_INVALID_ARG, POMELO_ERR_NOMEM. */
POMELO_API int pomelo_cluster_channel_add(pomelo_cluster_channel *ch, const char *uid, size_t len,
                                          const char *frontend_id);
/** Removes member `uid` of `frontend_id`. Errors: POMELO_ERR_NOT_FOUND. */
POMELO_API int pomelo_cluster_channel_leave(pomelo_cluster_channel *ch, const char *uid, size_t len,
                                            const char *frontend_id);
/** The number of members. */
POMELO_API size_t pomelo_cluster_channel_count(const pomelo_cluster_channel *ch);
/** Member i (0 <= i < count; the order changes when members leave). Errors:
 * POMELO_ERR_NOT_FOUND. */
POMELO_API int pomelo_cluster_channel_member(const pomelo_cluster_channel *ch, size_t i,
                                             const char **uid, size_t *uid_len,
                                             const char **frontend_id);
/** Whether `uid` is a member (on any frontend). */
POMELO_API int pomelo_cluster_channel_has(const pomelo_cluster_channel *ch, const char *uid,
                                          size_t len);
/** The channel's name. */
POMELO_API const char *pomelo_cluster_channel_name(const pomelo_cluster_channel *ch, size_t *len);
/** Pushes `body` (JSON text) on `route` to every member: one bus message per frontend with its
 * members' uids (members on this server itself, when it is a frontend, are pushed directly).
 * Returns the number of frontends it went to, or an error (POMELO_ERR_PAYLOAD, a publish
 * error, POMELO_ERR_NOMEM: some frontends may have got it). Not acknowledged. */
POMELO_API int pomelo_cluster_channel_push(pomelo_cluster_channel *ch, const char *route,
                                           const char *body, size_t len);

/* ---------------------------------------------------------------------------------------------
 * Statistics
 * ------------------------------------------------------------------------------------------- */

typedef struct pomelo_cluster_stats {
  uint64_t servers;         /**< servers in the table now (this one included) */
  uint64_t in_flight;       /**< forwards and calls awaiting an answer now */
  uint64_t forwards;        /**< client requests and notifies published to another server */
  uint64_t forward_answers; /**< answers delivered to clients (whose session still existed) */
  uint64_t forward_orphans; /**< answers whose client session was gone */
  uint64_t calls;           /**< pomelo_cluster_call and session operations published */
  uint64_t served;          /**< forwards, calls and session operations this server ran */
  uint64_t timeouts;        /**< forwards and calls that timed out */
  uint64_t failed_fast;     /**< failed at once: no server, bus down, no responders, left */
  uint64_t limited;         /**< refused by the in-flight limits */
  uint64_t too_large;       /**< refused: over max_payload */
  uint64_t late_answers;    /**< answers to nothing in flight (after a timeout) */
  uint64_t bad_messages;    /**< undecodable bus messages */
  uint64_t publish_errors;  /**< the bus refused a publish */
  uint64_t pushes_in;       /**< grouped pushes this frontend received */
  uint64_t pushes_out;      /**< grouped pushes published */
  uint64_t binds_kicked;    /**< sessions kicked by another frontend's bind (KICK_OLDER) */
  uint64_t joins, leaves;   /**< table events */
} pomelo_cluster_stats;

/** Copies the counters into `out`. */
POMELO_API void pomelo_cluster_get_stats(const pomelo_cluster *c, pomelo_cluster_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* POMELO_CLUSTER_H */
