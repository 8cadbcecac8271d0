/* libpomelo internal: the client object (not installed).
 * SPDX-License-Identifier: MIT
 */
#ifndef POMELO_LIB_CLIENT_INT_H
#define POMELO_LIB_CLIENT_INT_H

#include <pomelo/client.h>

#include "core/map.h"
#include "conn/conn_int.h"
#include "core/core.h"
#include "proto/wire.h"

#define PM_REQ_NO_HEAP UINT32_MAX

/* A request waiting for its response: in the id map, in the deadline heap (when it has a
 * timeout) and in the issue-order list (so a lost connection fails them in order). */
typedef struct pm_req {
  struct pm_req *prev, *next;
  uint64_t deadline; /* PM_NO_DEADLINE when none */
  uint32_t id;
  uint32_t heap_idx; /* PM_REQ_NO_HEAP when not in the heap */
  pomelo_response_cb cb;
  void *data;
  size_t route_len;
  char route[]; /* route_len bytes, NUL-terminated: the request's route, for the response (and,
                   later, to pick the protobuf decoder of the response body) */
} pm_req;

struct pomelo_client {
  pomelo_allocator alloc;
  pomelo_client_settings set;
  pomelo_client_callbacks cb;
  void *user_data;
  pm_conn_shared *sh; /* settings of every connection the client makes */
  pomelo_conn *conn;  /* the current connection, or NULL */
  /* Connections replaced while one of their calls was running (pomelo_client_connect from a
   * callback): closed, deleted when the outermost call returns. */
  pomelo_conn **zombies;
  uint32_t nzombies, zombies_cap;
  uint32_t depth;         /* nesting of calls into a connection */
  uint8_t state;          /* pomelo_client_state */
  uint8_t no_reconnect;   /* the current connection ends for good (kick, refusal, ours) */
  uint8_t deleting;       /* inside pomelo_client_del */
  uint32_t defer_output;  /* inside a send: on_output waits until the request is registered */
  uint8_t output_pending; /* ... and is due */
  uint32_t attempt;       /* reconnect attempts since the last accepted handshake */
  uint64_t reconnect_at;  /* when on_reconnect fires (WAIT_RECONNECT), or PM_NO_DEADLINE */
  uint64_t now;           /* the latest time the caller gave */
  uint32_t next_id;       /* the next request id to try */
  pm_idmap reqs;          /* id -> pm_req */
  pm_req **heap;          /* min-heap of the requests with a deadline */
  uint32_t heap_len, heap_cap;
  pm_req *first, *last; /* every waiting request, in issue order */
  pm_strmap handlers;   /* route -> push callback */
  /* The route dictionary of the last handshake that carried one (spec 3), kept across
   * reconnects; later handshakes send its version as sys.dictVersion. NULL when none. */
  pomelo_dict *dict;
  /* The proto set of the last handshake that carried one (spec 7), kept across reconnects;
   * later handshakes send its version as sys.protoVersion. NULL when none. */
  pomelo_protos *protos;
  pomelo_json_writer *scratch; /* protobuf bodies decoded to JSON, while not busy */
  int scratch_busy;
};

/* Tests: sets the next request id to try (1..POMELO_MSG_ID_MAX). */
void pm_client_set_next_id(pomelo_client *cl, uint32_t id);

/* The delay (ms) before reconnect attempt `attempt` (from 1), jitter included. */
uint64_t pm_client_reconnect_delay(const pomelo_client *cl, uint32_t attempt);

#endif /* POMELO_LIB_CLIENT_INT_H */
