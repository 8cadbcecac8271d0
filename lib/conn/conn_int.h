/* libpomelo internal: the connection object (not installed).
 *
 * A connection's code follows its data, one file per step; read them in this order:
 *   conn_transport.c  bytes in: the hybrid sniffer, WebSocket framing, the package decoder;
 *   conn.c            the state machine: each package by role and state, closing, lifecycle;
 *   conn_handshake.c  the handshake of the Pomelo dialect (both roles), behind pm_dialect;
 *   conn_heartbeat.c  heartbeats and every timer (handshake, idle, liveness);
 *   conn_output.c     bytes out: packages framed for the transport into the output queue
 *                     (outq.c), and the caller's out_iov / out_consume.
 * SPDX-License-Identifier: MIT
 */
#ifndef POMELO_LIB_CONN_INT_H
#define POMELO_LIB_CONN_INT_H

#include <pomelo/conn.h>

#include "codec/codec_int.h"
#include "conn/outq.h"
#include "core/core.h"

/* Package counters a server keeps for all its connections. */
typedef struct pm_conn_counters {
  uint64_t packages_in;
  uint64_t packages_out;
  uint64_t messages_dropped; /* malformed DATA messages */
  uint64_t too_large;        /* connections closed for a package or message over max_body */
} pm_conn_counters;

typedef struct pm_dialect pm_dialect;

/* What connections made with the same settings share (a server's connections share one). */
typedef struct pm_conn_shared {
  pomelo_conn_settings set;
  const pm_dialect *dialect; /* the handshake and heartbeat rules */
  pomelo_conn_callbacks cb;
  pomelo_allocator alloc;
  uint32_t refs;
  pm_conn_counters *counters; /* NULL, or where to count packages */
  /* Internal hook (the server's): the connection just became CLOSED (wants_close). */
  void (*on_closed)(pomelo_conn *conn, void *user_data);
} pm_conn_shared;

#define PM_NO_DEADLINE UINT64_MAX

/* `ms` after `now`, or no deadline when `ms` is 0 (the timeout is off). */
static inline uint64_t pm_after(uint64_t now, uint32_t ms) {
  return ms ? now + ms : PM_NO_DEADLINE;
}

struct pomelo_conn {
  pm_conn_shared *sh;
  void *user_data;
  uint8_t role;         /* pomelo_role */
  uint8_t state;        /* pomelo_conn_state */
  uint8_t transport;    /* pomelo_transport */
  uint8_t close_reason; /* pomelo_close_reason */
  uint8_t hs_pending;   /* server: on_handshake called, waiting for handshake_reply */
  uint8_t hs_need_dict; /* server: the client's dictVersion differs from ours */
  uint8_t hs_need_protos;
  uint8_t close_notified; /* on_close already called */
  uint32_t hb_interval;   /* ms; server: from settings; client: from the server */
  uint32_t hb_timeout;    /* ms */
  uint64_t hs_deadline;   /* handshake must complete before this */
  uint64_t hb_deadline;   /* server: next heartbeat due from the client; client: liveness */
  uint64_t hb_send_at;    /* client: when to send the next heartbeat */
  uint64_t idle_at;       /* last activity + idle timeout */
  pomelo_pkg_decoder dec;
  pm_outq q;
  struct pm_ws *ws;  /* WebSocket state, once the transport is WebSocket */
  uint8_t sniff_len; /* server, AUTO: first bytes held until the transport is known */
  uint8_t sniff[3];
};

/* ---------------------------------------------------------------------------------------------
 * The dialect: what differs between the Pomelo servers' protocols (pomelo and pinus today; nano
 * and pitaya later: their handshake fields, server-driven heartbeats). The state machine calls
 * these and nothing else about the handshake or the heartbeat policy.
 * ------------------------------------------------------------------------------------------- */

struct pm_dialect {
  const char *name;
  /* Server, INIT: a HANDSHAKE package arrived. Validates it, asks the application
   * (check_client, on_handshake) and answers through pm_conn_server_accept or _refuse (now, or
   * later through pomelo_conn_handshake_reply). Returns 0 or a fatal error. */
  int (*server_handshake)(pomelo_conn *c, const uint8_t *body, size_t len);
  /* Server: queues the success answer with the application's `user` JSON (may be NULL).
   * Returns 0 or an error (nothing queued). */
  int (*server_answer)(pomelo_conn *c, const char *user, size_t user_len);
  /* Server: queues the refusal with `code`. Returns 0 or an error. */
  int (*server_refusal)(pomelo_conn *c, int code);
  /* Client: queues the handshake request. Returns 0 or an error. */
  int (*client_request)(pomelo_conn *c);
  /* Client, INIT: the server's HANDSHAKE answer arrived; accept it (pm_conn_client_accepted) or
   * not (pm_conn_client_refused). Returns 0 or a fatal error. */
  int (*client_response)(pomelo_conn *c, const uint8_t *body, size_t len, uint64_t now);
  /* Server, WORKING: the client's ACK was processed (pomelo: the first heartbeat goes out). */
  int (*server_working)(pomelo_conn *c, uint64_t now);
  /* Server, WORKING: a client HEARTBEAT arrived (pomelo: echoed at once). */
  int (*server_heartbeat_in)(pomelo_conn *c, uint64_t now);
};

extern const pm_dialect pm_dialect_pomelo;

/* ---------------------------------------------------------------------------------------------
 * Between the steps
 * ------------------------------------------------------------------------------------------- */

/* conn.c: the state machine. */
/* One decoded package, handled by role and state. Returns 0 or a fatal error. */
int pm_conn_package(pomelo_conn *c, const pomelo_pkg *p, uint64_t now);
/* Hard close: output dropped (a WebSocket close frame still goes out), CLOSED unless that frame
 * must be flushed. */
void pm_conn_close_now(pomelo_conn *c, int reason);
/* The connection is done (wants_close): the caller must close the socket now. */
void pm_conn_enter_closed(pomelo_conn *c);
/* Soft close: what is queued is flushed (then a WebSocket close frame), then CLOSED. */
void pm_conn_close_after_flush(pomelo_conn *c, int reason);
/* The peer sent a package or message over max_body: a KICK says why when working, then the
 * close (POMELO_CLOSE_TOO_LARGE). */
void pm_conn_close_too_large(pomelo_conn *c);
/* Server: answers the pending handshake with success (then WAIT_ACK; `user` JSON may be NULL)
 * or refuses it with `code` (the answer is flushed, then the connection closes). Return 0 or an
 * error. */
int pm_conn_server_accept(pomelo_conn *c, const char *user, size_t user_len);
int pm_conn_server_refuse(pomelo_conn *c, int code);
/* Client: the server accepted with heartbeat interval `hb_ms` (0: none): the ACK is queued and
 * the connection works; `response` goes to on_handshake_response. Returns 0 or an error. */
int pm_conn_client_accepted(pomelo_conn *c, uint32_t hb_ms, const pomelo_json_value *response,
                            uint64_t now);
/* Client: refused with `code` (-1: unreadable); the connection closes. */
void pm_conn_client_refused(pomelo_conn *c, int code, const pomelo_json_value *response);

/* conn_transport.c: bytes in. */
/* Sets up the WebSocket state; the client role also queues its upgrade request. */
int pm_conn_start_ws(pomelo_conn *c);

/* conn_heartbeat.c: timers. */
/* Server: sends a heartbeat and restarts the client's liveness deadline (nothing when no
 * heartbeat is configured). */
int pm_conn_heartbeat(pomelo_conn *c, uint64_t now);
/* Client: the server announced heartbeats every `hb_ms`: start ours and the liveness clock. */
void pm_conn_heartbeat_start(pomelo_conn *c, uint32_t hb_ms, uint64_t now);
/* The peer showed it is alive at `now` (server: a DATA package with data_is_liveness; client:
 * any package): the liveness deadline moves. */
void pm_conn_alive(pomelo_conn *c, uint64_t now);

/* conn_output.c: bytes out. */
/* Queues bytes exactly as they go on the wire (`f` NULL for static bytes). */
int pm_conn_enqueue_raw(pomelo_conn *c, pomelo_frame *f, const uint8_t *data, size_t len);
/* Queues whole packages (inside frame `f`, or static bytes), framed for the transport, counted. */
int pm_conn_enqueue(pomelo_conn *c, pomelo_frame *f, const uint8_t *data, size_t len);
/* Queues a control package without a body (HEARTBEAT, HANDSHAKE_ACK): no allocation. */
int pm_conn_queue_control(pomelo_conn *c, int type);
/* Queues one package built from `body`. */
int pm_conn_queue_pkg(pomelo_conn *c, int type, const uint8_t *body, size_t len);
/* Builds a JSON body with `build` and queues it as one package of `type`. */
typedef int (*pm_json_build_fn)(pomelo_conn *c, pomelo_json_writer *w, const void *arg);
int pm_conn_queue_json(pomelo_conn *c, int type, pm_json_build_fn build, const void *arg);
/* WebSocket output: raw bytes (the HTTP upgrade), control frames (pong, close; masked on the
 * client side), a close frame once. pm_ws_io callbacks take the connection as ctx. */
int pm_conn_ws_send(void *conn, const uint8_t *data, size_t len);
int pm_conn_ws_control(void *conn, int opcode, const uint8_t *payload, size_t len);
int pm_conn_ws_close(pomelo_conn *c, uint16_t code);
/* 32 random bits from the caller's callback (client: WebSocket keys and masks). */
uint32_t pm_conn_random32(pomelo_conn *c);

/* JSON writing helpers of the handshake and kick bodies. */
int pm_json_key_raw(pomelo_json_writer *w, const char *key, const char *json);
int pm_json_key_str(pomelo_json_writer *w, const char *key, const char *str, size_t len);

/* Creates a connection on shared settings (takes a reference to `sh`). */
int pm_conn_new_shared(pomelo_conn **out, pm_conn_shared *sh, uint64_t now, void *user_data);
/* Makes a shared block from settings and callbacks (refcount 1). */
int pm_conn_shared_new(pm_conn_shared **out, const pomelo_conn_settings *settings,
                       const pomelo_conn_callbacks *callbacks, const pomelo_allocator *alloc);
void pm_conn_shared_unref(pm_conn_shared *sh);
/* Closes at once with `reason` (queued output dropped; over WebSocket a close frame is still
 * flushed), as a timeout does. */
void pm_conn_abort(pomelo_conn *c, int reason);
/* pomelo_conn_kick with the close reason to record (POMELO_CLOSE_KICKED, _SHUTDOWN, ...). */
int pm_conn_kick_as(pomelo_conn *c, const char *reason, int close_reason);

/* The KICK reason sent to a client whose package or message was over max_body. */
#define PM_KICK_TOO_LARGE "message too large"

#endif /* POMELO_LIB_CONN_INT_H */
