/* libpomelo-nats: a NATS connection on the caller's event loop, and the glue that carries a
 * pomelo_cluster's bus over it (docs/nats.md).
 *
 * A separate, optional library (libpomelo-nats, pkg-config `libpomelo-nats`) built when the
 * build finds libnats (the NATS C client, Debian's libnats-dev); libpomelo itself never links
 * libnats, and pomelo/pomelo.h does not include this header. Linux only (epoll, eventfd).
 *
 * The loop contract. libnats runs threads of its own (a reconnect thread, a timer thread, a
 * flusher, one message thread per subscription, a thread for connection events). None of
 * them ever runs a callback of yours: everything they report is queued inside the adapter,
 * and the adapter wakes ONE file descriptor. The caller's loop watches it and calls process:
 *
 *   fd = pomelo_nats_fd(n)          register once for readability (EPOLLIN, POLLIN, a libuv
 *                                   poll handle, a libevent EV_READ|EV_PERSIST event); it is
 *                                   level-triggered and never changes
 *   fd readable  -> pomelo_nats_process(n, now)   on_message, on_state, on_closed and the
 *                                   attached cluster's deliveries run here, on the caller's
 *                                   thread;
 *                                   edge-triggered loops call it again while it returns 1
 *
 * The adapter needs no timer of its own (libnats keeps its pings and reconnect waits on its
 * threads); an attached cluster's timers are its server's (pomelo_server_expiry).
 *
 * What the descriptor stands for: an epoll set the adapter owns, holding the NATS socket
 * (libnats asks for read and write interest from its threads; the adapter changes the set under
 * a lock) and an eventfd that libnats' threads signal when the connection goes down or up and
 * when subscriptions have messages. The socket's reads and writes, hence the NATS protocol
 * parsing, happen inside pomelo_nats_process (libnats' external event loop mode,
 * natsConnection_ProcessReadEvent and natsConnection_ProcessWriteEvent).
 *
 * Threads: one pomelo_nats is used by one thread at a time, like everything in libpomelo;
 * several may live in one process (each with its own libnats connection).
 *
 * Delivery is NATS core's: at most once. A message is lost when the connection drops while it
 * travels, and dropped (counted in stats.dropped) when a subscription holds more than its
 * pending limits because the loop does not call pomelo_nats_process fast enough.
 * SPDX-License-Identifier: MIT
 */
#ifndef POMELO_NATS_H
#define POMELO_NATS_H

#include <pomelo/common.h>
#include <pomelo/cluster.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pomelo_nats pomelo_nats;

/** Connection settings. Fill with pomelo_nats_settings_default, then change fields. Strings
 * are copied by pomelo_nats_new. */
typedef struct pomelo_nats_settings {
  /** The server to connect to: "nats://host:port", or a comma-separated list of them (spaces
   * around the commas allowed), each tried on connect and on every reconnect, in an order
   * libnats shuffles (to spread clients over a NATS cluster). Credentials go in the URL
   * ("nats://user:password@host:4222"). Default "nats://127.0.0.1:4222". */
  const char *url;
  /** The connection's name, as the server's monitoring shows it (NULL, the default: none). */
  const char *name;
  /** How long one attempt to connect to one server may take: TCP connect and the NATS
   * handshake (default 2000 ms). */
  uint32_t connect_timeout_ms;
  /** 1 (default): when no server answers at pomelo_nats_new, it succeeds anyway and the
   * connection is tried again in the background with the reconnect settings (a process may
   * start before nats-server); on_state says when it comes up. 0: pomelo_nats_new fails with
   * POMELO_ERR_BUS_DOWN. */
  int retry_connect;
  /** The wait between two attempts on the same server after a loss (default 2000 ms). */
  uint32_t reconnect_wait_ms;
  /** Attempts per server after a loss before the connection gives up and closes for good
   * (on_closed); -1 (default): forever. */
  int max_reconnects;
  /** While the connection is down (lost, or not yet made with retry_connect), publishes are
   * kept in a buffer of this many bytes (protocol overhead included, about 20 bytes plus the
   * subjects per message) and sent when it comes back; past it, pomelo_nats_publish fails
   * with POMELO_ERR_BUS_DOWN. Default 8 MiB; at most INT_MAX. */
  size_t reconnect_buffer;
  /** Per-subscription pending limits: messages received and not yet processed by the loop,
   * in number and in bytes (payloads), beyond which new ones are dropped and counted
   * (stats.dropped). Defaults 65536 messages and 64 MiB; -1: no limit; at most INT_MAX. */
  int pending_msgs;
  int64_t pending_bytes;
  /** The hand-off queue between libnats' message threads and the loop's thread, for all
   * subscriptions together: messages (default 1024) and payload bytes (default 8 MiB; a message
   * larger than this passes alone). pomelo_nats_process delivers at most queue_msgs messages
   * per call. While it is full, messages wait in the subscriptions' pending lists (above). */
  uint32_t queue_msgs;
  size_t queue_bytes;
  /** How often the client pings the server to find a dead connection (default 120000 ms, as
   * libnats; a lost TCP connection is usually seen at once, without a ping). */
  uint32_t ping_interval_ms;
  /** How long pomelo_nats_del may wait to write what is still buffered (the cluster's "bye",
   * say) before it closes the connection (default 1000 ms; 0: do not wait). */
  uint32_t close_timeout_ms;
} pomelo_nats_settings;

/** Fills `s` with the defaults. */
POMELO_API void pomelo_nats_settings_default(pomelo_nats_settings *s);

/** Callbacks; each may be NULL and receives the adapter's user_data last. They run only inside
 * pomelo_nats_process, on the caller's thread, and may call any function of the adapter except
 * pomelo_nats_del. */
typedef struct pomelo_nats_callbacks {
  /** A message on one of the subscriptions made by pomelo_nats_subscribe (messages of an
   * attached cluster's subscriptions go to the cluster, not here). `subject` and `reply`
   * (NULL when the sender wants no answer) are NUL-terminated; `data` (NULL when `len` is 0)
   * and the strings are valid during the call. `flags`: POMELO_CLUSTER_NO_RESPONDERS when this
   * is the server's "no responders" answer (status 503, no payload) to a request this
   * connection published with `subject` as its reply subject: nobody is subscribed to the
   * request's subject. */
  void (*on_message)(pomelo_nats *n, const char *subject, const char *reply, const uint8_t *data,
                     size_t len, unsigned flags, void *user_data);
  /** The connection came up (up 1: connected, subscriptions made again after a reconnect, the
   * max payload known) or went down (up 0: lost, libnats reconnecting in the background, or
   * closed). Calls alternate, starting with an up; a loss and a reconnect between two
   * pomelo_nats_process calls still give a 0 then a 1. */
  void (*on_state)(pomelo_nats *n, int up, void *user_data);
  /** The connection is closed for good: max_reconnects attempts failed (after the on_state(0)
   * of the loss, if it had come up). Once; only pomelo_nats_del is useful after it. */
  void (*on_closed)(pomelo_nats *n, void *user_data);
} pomelo_nats_callbacks;

/** Creates the adapter and connects. This call blocks while it tries each server of the URL
 * once (up to connect_timeout_ms each: libnats' connect is synchronous even on an external
 * loop). `settings` NULL: defaults; `callbacks` NULL: none; `alloc` NULL: libc (libnats'
 * own memory never goes through it). No callback runs inside: the first on_state(1) comes
 * from the first pomelo_nats_process. Returns 0 and `*out`, or: POMELO_ERR_INVALID_ARG (out
 * NULL, a bad setting or URL), POMELO_ERR_BUS_DOWN (retry_connect 0 and no server could be
 * reached, or a server refused the connection: pomelo_nats_last_error says why),
 * POMELO_ERR_NOMEM, POMELO_ERR_INTERNAL (a system call or libnats failed). */
POMELO_API int pomelo_nats_new(pomelo_nats **out, const pomelo_nats_settings *settings,
                               const pomelo_nats_callbacks *callbacks,
                               const pomelo_allocator *alloc, void *user_data);

/** Writes what is buffered (waiting up to close_timeout_ms for the socket), closes the
 * connection, waits for libnats' threads to let go of the adapter (its closed callback, the
 * subscriptions' completion, the socket's detach: about a millisecond), frees everything and
 * closes the descriptor. Should libnats' threads not let go within 10 s, the adapter's memory
 * is left allocated rather than freed under them. Messages not yet delivered are dropped; no
 * callback runs. Delete an attached cluster first, or detach it (pomelo_nats_attach). Never
 * from inside a callback. Accepts NULL. */
POMELO_API void pomelo_nats_del(pomelo_nats *n);

/** The adapter's user_data. */
POMELO_API void *pomelo_nats_user_data(const pomelo_nats *n);

/** The descriptor to watch for readability (see the loop contract above). Owned by the
 * adapter: never read, write or close it. The same for the adapter's whole life. */
POMELO_API int pomelo_nats_fd(const pomelo_nats *n);

/** Does the work the descriptor announced, on the caller's thread, with `now` (the caller's
 * monotonic clock in ms, passed to an attached cluster): socket reads and writes, connection
 * state changes (on_state, on_closed; an attached cluster's pomelo_cluster_bus_up), and up to
 * settings.queue_msgs received messages (on_message; pomelo_cluster_deliver). Never blocks.
 * Returns 1 when work is left (the descriptor is still readable: call it again, or let a
 * level-triggered loop wake up again), 0 when none, POMELO_ERR_INVALID_ARG when n is NULL. */
POMELO_API int pomelo_nats_process(pomelo_nats *n, uint64_t now);

/** Subscribes to `subject` (NUL-terminated, copied; NATS wildcards "*" for one token and ">"
 * for the rest allowed). Its messages go to on_message. libnats makes the subscription again
 * on every reconnect; while the connection is down (or not yet made), it is made when it
 * comes up. Errors: POMELO_ERR_INVALID_ARG (not a valid subject), POMELO_ERR_EXISTS (already
 * subscribed to it through this function), POMELO_ERR_CLOSED (the connection is closed for
 * good), POMELO_ERR_NOMEM, POMELO_ERR_INTERNAL. */
POMELO_API int pomelo_nats_subscribe(pomelo_nats *n, const char *subject);

/** Ends the subscription made by pomelo_nats_subscribe(n, subject): its messages not yet
 * delivered are dropped, and no on_message comes for it after this returns. Errors:
 * POMELO_ERR_NOT_FOUND. */
POMELO_API int pomelo_nats_unsubscribe(pomelo_nats *n, const char *subject);

/** Publishes `len` bytes (`data` may be NULL when `len` is 0) on `subject`, with a reply
 * subject (NULL or "": none) for the receiver's answer, both NUL-terminated. The bytes are
 * copied into libnats' output buffer, which pomelo_nats_process writes out. While the
 * connection is down they wait in the reconnect buffer. Returns 0, or: POMELO_ERR_PAYLOAD
 * (`len` over pomelo_nats_max_payload: refused before it reaches libnats, counted in
 * stats.too_large), POMELO_ERR_BUS_DOWN (the connection is down and the reconnect buffer is
 * full), POMELO_ERR_CLOSED (the connection is closed for good), POMELO_ERR_INVALID_ARG (a bad
 * subject), POMELO_ERR_NOMEM; all but POMELO_ERR_PAYLOAD are counted in stats.publish_errors.
 * Nothing is sent when it fails. */
POMELO_API int pomelo_nats_publish(pomelo_nats *n, const char *subject, const char *reply,
                                   const uint8_t *data, size_t len);

/** The largest payload the server accepts (its max_payload, 1 MiB unless configured): the
 * value of the server of the last connection, 1 MiB (NATS' default) before the first one. */
POMELO_API size_t pomelo_nats_max_payload(const pomelo_nats *n);

/** 1 when the last on_state said up; 0 before the first one (which pomelo_nats_process
 * delivers), and while down. */
POMELO_API int pomelo_nats_is_up(const pomelo_nats *n);

/** 1 when the connection is closed for good (max_reconnects attempts failed), from the
 * on_closed callback on; only pomelo_nats_del is useful then. */
POMELO_API int pomelo_nats_is_closed(const pomelo_nats *n);

/** libnats' text for the last libnats failure seen by a call on `n` (or, with `n` NULL, by
 * pomelo_nats_new in this thread): a static string, "" when none. For logs. */
POMELO_API const char *pomelo_nats_last_error(const pomelo_nats *n);

/** Counters since pomelo_nats_new. */
typedef struct pomelo_nats_stats {
  uint64_t published;       /**< publishes accepted (sent, or buffered while down) */
  uint64_t published_bytes; /**< their payload bytes */
  uint64_t received;        /**< messages delivered (on_message or the cluster) */
  uint64_t received_bytes;  /**< their payload bytes */
  uint64_t dropped;         /**< messages dropped by the pending limits (libnats' count) */
  uint64_t publish_errors;  /**< publishes refused: down with a full buffer, closed, bad args */
  uint64_t too_large;       /**< publishes refused: over the max payload */
  uint64_t disconnects;     /**< times the connection was lost */
  uint64_t reconnects;      /**< times it came back after a loss */
  uint64_t subscriptions;   /**< subscriptions now (the cluster's included) */
} pomelo_nats_stats;

/** Copies the counters into `out`. */
POMELO_API void pomelo_nats_get_stats(const pomelo_nats *n, pomelo_nats_stats *out);

/* ---------------------------------------------------------------------------------------------
 * The cluster's bus over NATS
 * ------------------------------------------------------------------------------------------- */

/** Makes `n` the bus of cluster `c`: pomelo_cluster_set_bus(c, a function publishing through
 * pomelo_nats_publish, n); a subscription to every pomelo_cluster_subject(c, i), whose
 * messages go to pomelo_cluster_deliver(c, subject, reply, data, len, flags, now) (not to
 * on_message) from pomelo_nats_process; pomelo_cluster_set_max_payload(c,
 * pomelo_nats_max_payload(n)) now and after each (re)connection; and, from the next
 * pomelo_nats_process on, pomelo_cluster_bus_up(c, up, now) with the connection's state (at
 * once when it is already up, then at each change, just before on_state, which still runs).
 * One cluster per adapter. Errors: POMELO_ERR_INVALID_ARG, POMELO_ERR_EXISTS (a cluster is
 * attached), and those of pomelo_nats_subscribe (nothing is then attached).
 *
 * Teardown, with no pomelo_nats_process in between: pomelo_cluster_del(c) (its "bye" is
 * published through n), then pomelo_nats_del(n), which writes it out; or
 * pomelo_nats_detach(n) first when the adapter lives on. */
POMELO_API int pomelo_nats_attach(pomelo_nats *n, pomelo_cluster *c);

/** Forgets the attached cluster (if any): its subscriptions end, nothing is delivered to it
 * any more. The cluster keeps publishing through `n` (its bus stays set): delete it before
 * the adapter. */
POMELO_API void pomelo_nats_detach(pomelo_nats *n);

#ifdef __cplusplus
}
#endif

#endif /* POMELO_NATS_H */
