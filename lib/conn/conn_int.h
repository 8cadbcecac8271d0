/* libpomelo internal: the connection object (not installed).
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

/* What connections made with the same settings share (a server's connections share one). */
typedef struct pm_conn_shared {
  pomelo_conn_settings set;
  pomelo_conn_callbacks cb;
  pomelo_allocator alloc;
  uint32_t refs;
  pm_conn_counters *counters; /* NULL, or where to count packages */
  /* Internal hook (the server's): the connection just became CLOSED (wants_close). */
  void (*on_closed)(pomelo_conn *conn, void *user_data);
} pm_conn_shared;

#define PM_NO_DEADLINE UINT64_MAX

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
