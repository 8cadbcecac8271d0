/* libpomelo internal: the server's structures (not installed).
 * SPDX-License-Identifier: MIT
 */
#ifndef POMELO_LIB_SERVER_INT_H
#define POMELO_LIB_SERVER_INT_H

#include <pomelo/server.h>
#include <pomelo/cluster.h>

#include "conn/conn_int.h"
#include "core/map.h"
#include "proto/wire.h"

typedef struct pm_filter {
  pm_fn fn; /* pomelo_before_fn or pomelo_after_fn */
  void *ud;
} pm_filter;

typedef struct pm_filters {
  pm_filter *v;
  uint32_t n, cap;
} pm_filters;

/* A registered route: its handler and its own filters (heap object: stable address). */
typedef struct pm_route {
  pomelo_handler_fn fn;
  void *ud;
  pm_filters before, after;
} pm_route;

typedef struct pm_setting {
  char *key; /* one allocation: key NUL value NUL */
  size_t klen;
  char *val;
  size_t vlen;
} pm_setting;

/* A channel a session was added to, under which uid (the member's own copy). */
typedef struct pm_membership {
  pomelo_channel *ch;
  const char *uid;
  size_t uid_len;
} pm_membership;

#define PM_NO_HEAP UINT32_MAX

struct pomelo_session {
  pomelo_server *srv;
  pomelo_conn *conn; /* NULL for a session imported by pomelo_server_dispatch */
  uint64_t sid;
  void *user_data;
  char *uid; /* NULL when unbound */
  size_t uid_len;
  pomelo_session *uid_next, *uid_prev; /* the other sessions of the same uid */
  pomelo_session *all_next, *all_prev; /* every session of the server */
  pm_setting *settings;
  uint32_t nsettings, csettings;
  pm_membership *channels;
  uint32_t nchannels, cchannels;
  uint32_t heap_idx;  /* position in the server's timer heap, PM_NO_HEAP when absent */
  uint64_t deadline;  /* its key there */
  uint64_t flush_at;  /* batching: when to report the output (PM_NO_DEADLINE: nothing held) */
  int64_t tokens;     /* rate limit: milli-tokens */
  uint64_t tokens_at; /* when they were last refilled */
  pomelo_session *ready_next, *ready_prev; /* the server's ready list, while on it */
  uint8_t on_ready;                        /* on the ready list */
  uint8_t format;                          /* POMELO_FORMAT_* */
  uint8_t imported;
  char *frontend_id; /* an imported session's frontendId (NULL: none or a local session) */
  int failed;        /* a fatal error met while the conn called us back (returned by the feed) */
};

typedef struct pm_member {
  uint64_t sid;
  pomelo_session *s; /* the session of sid (NULL when there was none at add time) */
  char *uid;         /* own allocation: sessions point at it from their membership list */
  size_t uid_len;
} pm_member;

struct pomelo_channel {
  pomelo_server *srv;
  char *name; /* the channels map's key copy */
  size_t name_len;
  pm_member *m;
  uint32_t n, cap;
  pm_strmap index; /* sid bytes + uid -> position + 1 (code) */
};

struct pomelo_request {
  pomelo_server *srv;
  uint64_t sid;
  pomelo_session *imported; /* backend dispatch: the imported session, owned */
  pm_route *route;          /* NULL when no handler matched */
  pomelo_msg msg;
  pomelo_json_doc *doc;
  uint8_t parsed;
  void (*reply)(const char *body, size_t len, void *arg);
  void *reply_arg;
  pomelo_request *next, *prev; /* the server's pending requests */
  char data[];                 /* route, NUL, body */
};

struct pomelo_server {
  pomelo_allocator alloc;
  pomelo_server_settings set;
  char *server_id, *server_type;
  size_t id_len, type_len;
  pomelo_server_callbacks cb;
  void *user_data;
  pm_conn_shared *sh;
  pm_conn_counters counters;
  pomelo_server_stats stats;
  uint64_t next_sid;
  uint64_t now; /* the latest time any call passed */
  pm_idmap by_sid;
  pm_strmap by_uid;            /* uid -> first session (val) */
  pm_strmap routes;            /* route -> pm_route (val) */
  pm_strmap channels;          /* name -> pomelo_channel (val) */
  pm_strmap binary;            /* binary routes (no val) */
  const pomelo_dict *dict;     /* set.conn.dict */
  const pomelo_protos *protos; /* set.conn.protos */
  pomelo_json_writer *scratch; /* protobuf bodies decoded to JSON, while not busy */
  int scratch_busy;
  pomelo_session *all;
  pomelo_session *ready_head, *ready_tail; /* sessions that need the loop (FIFO) */
  size_t ready_count;
  pm_route *fallback; /* the default handler (pomelo_server_on with route NULL), or NULL */
  pomelo_session **heap;
  uint32_t heap_len, heap_cap;
  pm_filters before, after; /* global filters */
  pomelo_request *reqs;
  size_t sessions, bound;
  int shutting_down;
  pomelo_cluster *cluster; /* attached by pomelo_cluster_new, or NULL */
  pm_strmap remotes;       /* remote routes (pomelo_cluster_on) -> pm_route (val) */
};

/* server.c */
/* Whether `route` is a binary route. */
int pm_server_is_binary(const pomelo_server *srv, const char *route, size_t len);
/* The wire format bits (PM_FMT_*) of what the session receives as pushes or responses: the
 * public POMELO_FORMAT_* bits are the PM_FMT_* ones, plus PROTOBUF_RESPONSES. */
#if POMELO_FORMAT_PROTOBUF != PM_FMT_PB || POMELO_FORMAT_CESU8 != PM_FMT_CESU ||                   \
    POMELO_FORMAT_GZIP != PM_FMT_GZIP
#error "the session format bits must be the wire format bits"
#endif
static inline unsigned pm_session_push_fmt(const pomelo_session *s) {
  return s->format & (PM_FMT_COUNT - 1);
}
static inline unsigned pm_session_response_fmt(const pomelo_session *s) {
  return (s->format & (PM_FMT_CESU | PM_FMT_GZIP)) |
         ((s->format & POMELO_FORMAT_PROTOBUF_RESPONSES) ? PM_FMT_PB : 0);
}
void pm_session_touch(pomelo_session *s);
/* After a fatal error `rc` on a session's path: the session is closed (POMELO_CLOSE_ERROR,
 * counted) so its client never silently misses a message. Returns rc. */
int pm_session_fail(pomelo_session *s, int rc);
void pm_session_free_imported(pomelo_session *s);
/* dispatch.c */
/* A message a connected session received, as on the wire: its route and body made what
 * handlers see (pm_server_receive), then dispatched (pm_server_dispatch_msg). Return 0 or a
 * fatal error. */
int pm_server_receive(pomelo_session *s, const pomelo_msg *m);
int pm_server_dispatch_msg(pomelo_session *s, const pomelo_msg *m);
/* A request or notify that cannot be dispatched for error `err`: answered through on_error
 * (a request) or dropped. */
int pm_server_refuse(pomelo_session *s, const pomelo_msg *m, int err);
/* pomelo_server_dispatch, or (remote 1) the same for a remote route of pomelo_cluster_on, whose
 * session may have id 0 (no session). */
int pm_server_dispatch_ex(pomelo_server *srv, const char *session_json, size_t session_json_len,
                          const pomelo_msg *msg,
                          void (*reply)(const char *body, size_t len, void *arg), void *arg,
                          int remote);
/* Registers a remote route's handler (pomelo_cluster_on). */
int pm_server_on_remote(pomelo_server *srv, const char *route, pomelo_handler_fn fn, void *ud);
/* Pushes to the sessions of `sids` and those bound to `uids` (one encode per format for all).
 * A session in both lists gets it twice. Returns the number reached or an error, as
 * pomelo_server_push_uids. */
int pm_server_push_many(pomelo_server *srv, const uint64_t *sids, size_t n, const char *const *uids,
                        const size_t *uid_lens, size_t m, const char *route, const char *body,
                        size_t len);
void pm_server_release_requests(pomelo_server *srv);
/* channel.c */
void pm_channel_free(pomelo_channel *ch);
void pm_session_leave_channels(pomelo_session *s);
/* Queues a push frame for one session, applying the slow-consumer policy. Returns 0,
 * POMELO_ERR_STATE (not working), POMELO_ERR_LIMIT (dropped or disconnected) or
 * POMELO_ERR_NOMEM (the session was closed). */
int pm_session_queue_push(pomelo_session *s, pomelo_frame *f);

#endif /* POMELO_LIB_SERVER_INT_H */
