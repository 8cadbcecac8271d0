/* The server: sessions over connections, the timer heap, limits, statistics.
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>

#include "server/server_int.h"
#include "cluster/cluster_int.h"

void pomelo_server_settings_default(pomelo_server_settings *s) {
  memset(s, 0, sizeof(*s));
  s->server_id = "connector-server-1";
  s->server_type = "connector";
  pomelo_conn_settings_default(&s->conn);
  s->max_output = (size_t)1 << 20;
  s->protobuf_responses = 1;
}

/* ---------------------------------------------------------------------------------------------
 * The timer heap: one entry per session with a deadline, keyed by that deadline.
 * ------------------------------------------------------------------------------------------- */

static void heap_set(pomelo_server *srv, uint32_t i, pomelo_session *s) {
  srv->heap[i] = s;
  s->heap_idx = i;
}

static void heap_up(pomelo_server *srv, uint32_t i) {
  pomelo_session *s = srv->heap[i];
  while (i > 0) {
    uint32_t p = (i - 1) / 2;
    if (srv->heap[p]->deadline <= s->deadline) {
      break;
    }
    heap_set(srv, i, srv->heap[p]);
    i = p;
  }
  heap_set(srv, i, s);
}

static void heap_down(pomelo_server *srv, uint32_t i) {
  pomelo_session *s = srv->heap[i];
  for (;;) {
    uint32_t c = 2 * i + 1;
    if (c >= srv->heap_len) {
      break;
    }
    if (c + 1 < srv->heap_len && srv->heap[c + 1]->deadline < srv->heap[c]->deadline) {
      c++;
    }
    if (srv->heap[c]->deadline >= s->deadline) {
      break;
    }
    heap_set(srv, i, srv->heap[c]);
    i = c;
  }
  heap_set(srv, i, s);
}

static void heap_remove(pomelo_server *srv, pomelo_session *s) {
  uint32_t i = s->heap_idx;
  pomelo_session *last;
  if (i == PM_NO_HEAP) {
    return;
  }
  s->heap_idx = PM_NO_HEAP;
  last = srv->heap[--srv->heap_len];
  if (last != s) {
    heap_set(srv, i, last);
    heap_up(srv, i);
    heap_down(srv, last->heap_idx);
  }
}

/* Recomputes a session's deadline and its heap position (the heap has room for every session,
 * reserved at accept, so this never allocates). */
void pm_session_touch(pomelo_session *s) {
  pomelo_server *srv = s->srv;
  uint64_t d;
  if (!s->conn) {
    return;
  }
  d = PM_MIN(pomelo_conn_expiry(s->conn), s->flush_at);
  if (d == PM_NO_DEADLINE) {
    heap_remove(srv, s);
    return;
  }
  if (s->heap_idx == PM_NO_HEAP) {
    s->deadline = d;
    heap_set(srv, srv->heap_len++, s);
    heap_up(srv, s->heap_idx);
  } else if (d != s->deadline) {
    s->deadline = d;
    heap_up(srv, s->heap_idx);
    heap_down(srv, s->heap_idx);
  }
}

uint64_t pomelo_server_expiry(const pomelo_server *srv) {
  uint64_t e = srv->heap_len ? srv->heap[0]->deadline : PM_NO_DEADLINE;
  if (srv->cluster) {
    e = PM_MIN(e, pm_cluster_expiry(srv->cluster));
  }
  return e;
}

/* ---------------------------------------------------------------------------------------------
 * The ready list: the sessions that need the loop (output to write, a socket to close), FIFO.
 * ------------------------------------------------------------------------------------------- */

static void ready_add(pomelo_session *s) {
  pomelo_server *srv = s->srv;
  if (s->on_ready || !s->conn) {
    return;
  }
  s->on_ready = 1;
  s->ready_next = NULL;
  s->ready_prev = srv->ready_tail;
  if (srv->ready_tail) {
    srv->ready_tail->ready_next = s;
  } else {
    srv->ready_head = s;
  }
  srv->ready_tail = s;
  if (srv->ready_count++ == 0 && srv->cb.on_ready_list) {
    srv->cb.on_ready_list(srv, srv->user_data);
  }
}

static void ready_remove(pomelo_session *s) {
  pomelo_server *srv = s->srv;
  if (!s->on_ready) {
    return;
  }
  if (s->ready_prev) {
    s->ready_prev->ready_next = s->ready_next;
  } else {
    srv->ready_head = s->ready_next;
  }
  if (s->ready_next) {
    s->ready_next->ready_prev = s->ready_prev;
  } else {
    srv->ready_tail = s->ready_prev;
  }
  s->ready_next = s->ready_prev = NULL;
  s->on_ready = 0;
  srv->ready_count--;
}

pomelo_session *pomelo_server_next_ready(pomelo_server *srv, unsigned *what) {
  pomelo_session *s;
  while ((s = srv->ready_head) != NULL) {
    unsigned w = 0;
    ready_remove(s);
    if (pomelo_conn_wants_close(s->conn)) {
      w = POMELO_READY_CLOSE;
    } else if (pomelo_conn_out_len(s->conn) && s->flush_at == PM_NO_DEADLINE) {
      w = POMELO_READY_WRITE;
    }
    if (w) {
      if (what) {
        *what = w;
      }
      return s;
    }
  }
  if (what) {
    *what = 0;
  }
  return NULL;
}

size_t pomelo_server_ready_count(const pomelo_server *srv) {
  return srv->ready_count;
}

void pomelo_server_handle_expiry(pomelo_server *srv, uint64_t now) {
  srv->now = PM_MAX(srv->now, now);
  while (srv->heap_len && srv->heap[0]->deadline <= now) {
    pomelo_session *s = srv->heap[0];
    if (s->flush_at <= now) {
      s->flush_at = PM_NO_DEADLINE;
      if (pomelo_conn_out_len(s->conn)) {
        ready_add(s);
      }
    }
    if (pomelo_conn_handle_expiry(s->conn, now) < 0) {
      srv->stats.errors++; /* the connection closed itself (POMELO_CLOSE_ERROR) */
    }
    pm_session_touch(s);
    if (s->heap_idx == 0 && s->deadline <= now) {
      heap_remove(srv, s); /* defensive: never loop on a deadline that does not move */
    }
  }
  if (srv->cluster) {
    pm_cluster_handle_expiry(srv->cluster, now);
  }
}

int pm_session_fail(pomelo_session *s, int rc) {
  if (pomelo_err_is_fatal(rc) && s->conn && !pomelo_conn_wants_close(s->conn)) {
    s->srv->stats.errors++;
    pm_conn_abort(s->conn, POMELO_CLOSE_ERROR);
    pm_session_touch(s);
  }
  return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Connection callbacks (user_data is the session)
 * ------------------------------------------------------------------------------------------- */

/* The wire format a client gets: from the settings and its sys.type. */
static unsigned initial_format(const pomelo_server *srv, const char *type, size_t tl) {
  unsigned f = 0;
  if (srv->protos) {
    f |= POMELO_FORMAT_PROTOBUF;
    if (srv->set.protobuf_responses) {
      f |= POMELO_FORMAT_PROTOBUF_RESPONSES;
    }
  }
  if (srv->set.text_mode == POMELO_TEXT_CESU8 ||
      (srv->set.text_mode == POMELO_TEXT_AUTO && tl == 12 &&
       memcmp(type, "js-websocket", 12) == 0)) {
    f |= POMELO_FORMAT_CESU8;
  }
  if (srv->set.gzip_min && (pomelo_features() & POMELO_FEATURE_ZLIB)) {
    f |= POMELO_FORMAT_GZIP;
  }
  return f;
}

unsigned pomelo_session_format(const pomelo_session *s) {
  return s->format;
}

int pomelo_session_set_format(pomelo_session *s, unsigned format) {
  if (format & ~(POMELO_FORMAT_PROTOBUF | POMELO_FORMAT_CESU8 | POMELO_FORMAT_GZIP |
                 POMELO_FORMAT_PROTOBUF_RESPONSES)) {
    return POMELO_ERR_INVALID_ARG;
  }
  if ((format & POMELO_FORMAT_GZIP) && !(pomelo_features() & POMELO_FEATURE_ZLIB)) {
    return POMELO_ERR_UNSUPPORTED;
  }
  s->format = (uint8_t)format;
  return 0;
}

int pm_server_is_binary(const pomelo_server *srv, const char *route, size_t len) {
  return srv->binary.count && pm_strmap_get(&srv->binary, route, len) != NULL;
}

int pomelo_server_binary_route(pomelo_server *srv, const char *route) {
  size_t len;
  if (!srv || !route) {
    return POMELO_ERR_INVALID_ARG;
  }
  len = strlen(route);
  if (len > POMELO_MSG_ROUTE_MAX) {
    return POMELO_ERR_ROUTE_TOO_LONG;
  }
  return pm_strmap_upsert(&srv->binary, &srv->alloc, route, len) ? 0 : POMELO_ERR_NOMEM;
}

static int cb_check_client(pomelo_conn *c, const char *type, size_t tl, const char *version,
                           size_t vl, void *ud) {
  pomelo_session *s = ud;
  pomelo_server *srv = s->srv;
  (void)c;
  s->format = (uint8_t)initial_format(srv, type, tl);
  return srv->cb.check_client ? srv->cb.check_client(srv, s, type, tl, version, vl, srv->user_data)
                              : 1;
}

static void cb_handshake(pomelo_conn *c, const pomelo_json_value *req, void *ud) {
  pomelo_session *s = ud;
  (void)c;
  s->srv->cb.on_handshake(s->srv, s, req, s->srv->user_data);
}

static void cb_ready(pomelo_conn *c, void *ud) {
  pomelo_session *s = ud;
  pomelo_server *srv = s->srv;
  (void)c;
  srv->stats.handshakes_ok++;
  if (srv->cb.on_session_ready) {
    srv->cb.on_session_ready(srv, s, srv->user_data);
  }
}

static void cb_message(pomelo_conn *c, const pomelo_msg *m, void *ud) {
  pomelo_session *s = ud;
  int rc = pm_server_receive(s, m);
  (void)c;
  if (pomelo_err_is_fatal(rc) && !s->failed) {
    s->failed = rc; /* pomelo_session_feed returns it; the session is closed below */
    pm_session_fail(s, rc);
  }
}

static void cb_output(pomelo_conn *c, void *ud) {
  pomelo_session *s = ud;
  pomelo_server *srv = s->srv;
  if (srv->set.flush_interval_ms && pomelo_conn_get_state(c) == POMELO_CONN_WORKING) {
    if (s->flush_at == PM_NO_DEADLINE) {
      s->flush_at = srv->now + srv->set.flush_interval_ms;
      pm_session_touch(s);
    }
    return;
  }
  ready_add(s);
}

static void cb_closed(pomelo_conn *c, void *ud) {
  (void)c;
  ready_add(ud);
}

/* The connection stopped working (closing or closed): counted by reason. */
static void cb_close(pomelo_conn *c, int reason, void *ud) {
  pomelo_session *s = ud;
  pomelo_server *srv = s->srv;
  switch (reason) {
  case POMELO_CLOSE_HEARTBEAT_TIMEOUT:
  case POMELO_CLOSE_IDLE_TIMEOUT:
    srv->stats.timeouts++;
    break;
  case POMELO_CLOSE_HANDSHAKE_TIMEOUT:
    srv->stats.timeouts++;
    srv->stats.handshakes_failed++;
    break;
  case POMELO_CLOSE_HANDSHAKE_FAILED:
    srv->stats.handshakes_failed++;
    break;
  case POMELO_CLOSE_KICKED:
    srv->stats.kicks++;
    break;
  case POMELO_CLOSE_PROTOCOL_ERROR:
    srv->stats.protocol_errors++;
    break;
  case POMELO_CLOSE_SLOW_CONSUMER:
    srv->stats.slow_disconnects++;
    break;
  default:
    break;
  }
  /* What is still queued (a KICK, a close frame) goes out now, batching or not. */
  if (s->flush_at != PM_NO_DEADLINE) {
    s->flush_at = PM_NO_DEADLINE;
    pm_session_touch(s);
  }
  if (pomelo_conn_out_len(c)) {
    ready_add(s);
  }
}

/* ---------------------------------------------------------------------------------------------
 * Lifecycle
 * ------------------------------------------------------------------------------------------- */

static char *dup_str(const pomelo_allocator *a, const char *s, size_t *len) {
  size_t n = strlen(s);
  char *p = pm_malloc(a, n + 1);
  if (p) {
    memcpy(p, s, n + 1);
    *len = n;
  }
  return p;
}

int pomelo_server_new(pomelo_server **out, const pomelo_server_settings *settings,
                      const pomelo_server_callbacks *callbacks, const pomelo_allocator *alloc,
                      void *user_data) {
  pomelo_allocator a;
  pomelo_server *srv;
  pomelo_conn_settings cs;
  pomelo_conn_callbacks ccb;
  int rc;
  if (!out) {
    return POMELO_ERR_INVALID_ARG;
  }
  pm_alloc_init(&a, alloc);
  srv = pm_calloc(&a, sizeof(*srv));
  if (!srv) {
    return POMELO_ERR_NOMEM;
  }
  srv->alloc = a;
  if (settings) {
    srv->set = *settings;
  } else {
    pomelo_server_settings_default(&srv->set);
  }
  if (callbacks) {
    srv->cb = *callbacks;
  }
  srv->user_data = user_data;
  if (!srv->set.server_id || !srv->set.server_type || !*srv->set.server_type ||
      strchr(srv->set.server_type, '.')) {
    pm_free(&a, srv);
    return POMELO_ERR_INVALID_ARG;
  }
  if (srv->set.max_output == 0) {
    srv->set.max_output = (size_t)1 << 20;
  }
  srv->server_id = dup_str(&a, srv->set.server_id, &srv->id_len);
  srv->server_type = dup_str(&a, srv->set.server_type, &srv->type_len);
  if (!srv->server_id || !srv->server_type) {
    pomelo_server_del(srv);
    return POMELO_ERR_NOMEM;
  }
  srv->set.server_id = srv->server_id;
  srv->set.server_type = srv->server_type;
  cs = srv->set.conn;
  cs.role = POMELO_ROLE_SERVER;
  memset(&ccb, 0, sizeof ccb);
  ccb.check_client = cb_check_client;
  ccb.on_handshake = srv->cb.on_handshake ? cb_handshake : NULL;
  ccb.on_ready = cb_ready;
  ccb.on_message = cb_message;
  ccb.on_output = cb_output;
  ccb.on_close = cb_close;
  rc = pm_conn_shared_new(&srv->sh, &cs, &ccb, &a);
  if (rc) {
    pomelo_server_del(srv);
    return rc;
  }
  srv->sh->counters = &srv->counters;
  srv->sh->on_closed = cb_closed;
  srv->dict = cs.dict;
  srv->protos = cs.protos;
  if (srv->set.gzip_min && !(pomelo_features() & POMELO_FEATURE_ZLIB)) {
    pomelo_server_del(srv);
    return POMELO_ERR_UNSUPPORTED;
  }
  rc = pomelo_json_writer_new(&srv->scratch, &a, 0);
  if (rc) {
    pomelo_server_del(srv);
    return rc;
  }
  srv->next_sid = 1;
  pm_idmap_init(&srv->by_sid);
  pm_strmap_init(&srv->by_uid);
  pm_strmap_init(&srv->routes);
  pm_strmap_init(&srv->channels);
  pm_strmap_init(&srv->binary);
  pm_strmap_init(&srv->remotes);
  *out = srv;
  return 0;
}

static void free_session(pomelo_server *srv, pomelo_session *s);

void pomelo_server_del(pomelo_server *srv) {
  pomelo_allocator a;
  uint32_t i;
  if (!srv) {
    return;
  }
  a = srv->alloc;
  if (srv->cluster) {
    pm_cluster_detach(srv->cluster); /* deleted before its cluster: the cluster is inert */
  }
  pm_server_release_requests(srv);
  while (srv->all) {
    free_session(srv, srv->all);
  }
  for (i = 0; i < srv->channels.cap; i++) {
    pm_strmap_ent *e = pm_strmap_slot(&srv->channels, i);
    if (e) {
      pm_channel_free(e->val);
    }
  }
  for (i = 0; i < srv->routes.cap; i++) {
    pm_strmap_ent *e = pm_strmap_slot(&srv->routes, i);
    if (e) {
      pm_route *r = e->val;
      pm_free(&a, r->before.v);
      pm_free(&a, r->after.v);
      pm_free(&a, r);
    }
  }
  for (i = 0; i < srv->remotes.cap; i++) {
    pm_strmap_ent *e = pm_strmap_slot(&srv->remotes, i);
    if (e) {
      pm_free(&a, e->val);
    }
  }
  pm_strmap_fini(&srv->remotes, &a);
  if (srv->fallback) {
    pm_free(&a, srv->fallback->before.v);
    pm_free(&a, srv->fallback->after.v);
    pm_free(&a, srv->fallback);
  }
  pm_free(&a, srv->before.v);
  pm_free(&a, srv->after.v);
  pm_strmap_fini(&srv->channels, &a);
  pm_strmap_fini(&srv->binary, &a);
  pomelo_json_writer_del(srv->scratch);
  pm_strmap_fini(&srv->routes, &a);
  pm_strmap_fini(&srv->by_uid, &a);
  pm_idmap_fini(&srv->by_sid, &a);
  pm_free(&a, srv->heap);
  pm_conn_shared_unref(srv->sh);
  pm_free(&a, srv->server_id);
  pm_free(&a, srv->server_type);
  pm_free(&a, srv);
}

void *pomelo_server_user_data(const pomelo_server *srv) {
  return srv->user_data;
}

/* ---------------------------------------------------------------------------------------------
 * Sessions
 * ------------------------------------------------------------------------------------------- */

int pomelo_server_accept(pomelo_server *srv, uint64_t now, void *socket_data,
                         pomelo_session **out) {
  pomelo_session *s;
  int rc;
  if (!out) {
    return POMELO_ERR_INVALID_ARG;
  }
  srv->now = PM_MAX(srv->now, now);
  if (srv->shutting_down) {
    return POMELO_ERR_STATE;
  }
  if (srv->set.max_connections && srv->sessions >= srv->set.max_connections) {
    srv->stats.connections_rejected++;
    return POMELO_ERR_LIMIT;
  }
  if (srv->heap_cap == srv->sessions) {
    uint32_t cap = srv->heap_cap ? srv->heap_cap * 2 : 16;
    pomelo_session **h;
    if (srv->heap_cap >= UINT32_MAX / 2) {
      return POMELO_ERR_LIMIT;
    }
    h = pm_realloc(&srv->alloc, srv->heap, (size_t)cap * sizeof(*h));
    if (!h) {
      return POMELO_ERR_NOMEM;
    }
    srv->heap = h;
    srv->heap_cap = cap;
  }
  if (pm_idmap_reserve(&srv->by_sid, &srv->alloc, 1) != 0) {
    return POMELO_ERR_NOMEM;
  }
  s = pm_calloc(&srv->alloc, sizeof(*s));
  if (!s) {
    return POMELO_ERR_NOMEM;
  }
  s->srv = srv;
  s->sid = srv->next_sid;
  s->user_data = socket_data;
  s->heap_idx = PM_NO_HEAP;
  s->flush_at = PM_NO_DEADLINE;
  s->tokens = (int64_t)(srv->set.rate_burst ? srv->set.rate_burst : srv->set.rate_limit) * 1000;
  s->tokens_at = now;
  rc = pm_conn_new_shared(&s->conn, srv->sh, now, s);
  if (rc) {
    pm_free(&srv->alloc, s);
    return rc;
  }
  srv->next_sid++;
  pm_idmap_put(&srv->by_sid, s->sid, s);
  s->all_next = srv->all;
  if (srv->all) {
    srv->all->all_prev = s;
  }
  srv->all = s;
  srv->sessions++;
  srv->stats.connections_total++;
  pm_session_touch(s);
  *out = s;
  return 0;
}

int pomelo_session_feed(pomelo_session *s, const uint8_t *data, size_t len, uint64_t now) {
  pomelo_server *srv = s->srv;
  int rc;
  if (!s->conn) {
    return POMELO_ERR_STATE;
  }
  srv->now = PM_MAX(srv->now, now);
  srv->stats.bytes_in += len;
  rc = pomelo_conn_feed(s->conn, data, len, now);
  if (pomelo_err_is_fatal(rc) && !s->failed) {
    srv->stats.errors++; /* the connection closed itself (POMELO_CLOSE_ERROR) */
  }
  if (s->failed) {
    rc = s->failed; /* a handler's answer could not be queued: the session was closed */
    s->failed = 0;
  }
  pm_session_touch(s);
  return rc;
}

int pomelo_session_out_iov(const pomelo_session *s, struct iovec *iov, int max) {
  return s->conn ? pomelo_conn_out_iov(s->conn, iov, max) : 0;
}

size_t pomelo_session_out_len(const pomelo_session *s) {
  return s->conn ? pomelo_conn_out_len(s->conn) : 0;
}

void pomelo_session_out_consume(pomelo_session *s, size_t n, uint64_t now) {
  if (!s->conn) {
    return;
  }
  n = PM_MIN(n, pomelo_conn_out_len(s->conn));
  s->srv->now = PM_MAX(s->srv->now, now);
  s->srv->stats.bytes_out += n;
  pomelo_conn_out_consume(s->conn, n, now);
  pm_session_touch(s);
}

int pomelo_session_wants_close(const pomelo_session *s) {
  return !s->conn || pomelo_conn_wants_close(s->conn);
}

int pomelo_session_close_reason(const pomelo_session *s) {
  return s->conn ? pomelo_conn_close_reason(s->conn) : POMELO_CLOSE_NONE;
}

void pomelo_session_peer_closed(pomelo_session *s) {
  if (s->conn) {
    pomelo_conn_peer_closed(s->conn); /* cb_close counts, cb_closed puts it on the ready list */
    pm_session_touch(s);
  }
}

static void uid_unlink(pomelo_session *s);

static void free_settings(pomelo_session *s, const pomelo_allocator *a) {
  uint32_t i;
  for (i = 0; i < s->nsettings; i++) {
    pm_free(a, s->settings[i].key);
  }
  pm_free(a, s->settings);
}

/* Frees an imported session (never registered in the server). */
void pm_session_free_imported(pomelo_session *s) {
  const pomelo_allocator *a = &s->srv->alloc;
  free_settings(s, a);
  pm_free(a, s->frontend_id);
  pm_free(a, s->uid);
  pm_free(a, s);
}

static void free_session(pomelo_server *srv, pomelo_session *s) {
  if (srv->cluster) {
    pm_cluster_session_gone(srv->cluster, s->sid);
  }
  pm_session_leave_channels(s);
  uid_unlink(s);
  heap_remove(srv, s);
  ready_remove(s);
  pm_idmap_del(&srv->by_sid, &srv->alloc, s->sid);
  if (s->all_prev) {
    s->all_prev->all_next = s->all_next;
  } else {
    srv->all = s->all_next;
  }
  if (s->all_next) {
    s->all_next->all_prev = s->all_prev;
  }
  srv->sessions--;
  pomelo_conn_del(s->conn);
  free_settings(s, &srv->alloc);
  pm_free(&srv->alloc, s->channels);
  pm_free(&srv->alloc, s);
}

void pomelo_server_release(pomelo_server *srv, pomelo_session *s) {
  if (!s || s->srv != srv || !s->conn) {
    return;
  }
  free_session(srv, s);
}

void pomelo_server_shutdown(pomelo_server *srv, const char *reason) {
  pomelo_session *s;
  srv->shutting_down = 1;
  for (s = srv->all; s; s = s->all_next) {
    if (pomelo_conn_get_state(s->conn) < POMELO_CONN_CLOSING) {
      int rc = pm_conn_kick_as(s->conn, reason, POMELO_CLOSE_SHUTDOWN);
      if (rc == POMELO_ERR_INVALID_ARG) {
        pomelo_conn_close(s->conn, POMELO_CLOSE_SHUTDOWN); /* a reason that is not UTF-8 */
      } else if (rc) {
        srv->stats.errors++;
      }
      pm_session_touch(s);
    }
  }
}

uint64_t pomelo_session_id(const pomelo_session *s) {
  return s->sid;
}

const char *pomelo_session_frontend_id(const pomelo_session *s) {
  if (s->imported) {
    return s->frontend_id ? s->frontend_id : "";
  }
  return s->srv->server_id;
}

void *pomelo_session_user_data(const pomelo_session *s) {
  return s->user_data;
}

pomelo_conn_state pomelo_session_state(const pomelo_session *s) {
  return s->conn ? pomelo_conn_get_state(s->conn) : POMELO_CONN_CLOSED;
}

const char *pomelo_session_uid(const pomelo_session *s, size_t *len) {
  if (len) {
    *len = s->uid ? s->uid_len : 0;
  }
  return s->uid;
}

pomelo_session *pomelo_server_session(const pomelo_server *srv, uint64_t sid) {
  return sid ? pm_idmap_get(&srv->by_sid, sid) : NULL;
}

size_t pomelo_server_session_count(const pomelo_server *srv) {
  return srv->sessions;
}

size_t pomelo_server_bound_count(const pomelo_server *srv) {
  return srv->bound;
}

size_t pomelo_server_foreach(pomelo_server *srv, int (*fn)(pomelo_session *s, void *arg),
                             void *arg) {
  pomelo_session *s, *next;
  size_t n = 0;
  for (s = srv->all; s; s = next) {
    next = s->all_next;
    n++;
    if (fn(s, arg)) {
      break;
    }
  }
  return n;
}

/* uid index: the map holds the first session of each uid; the others hang off it. */
static void uid_unlink(pomelo_session *s) {
  pomelo_server *srv = s->srv;
  if (!s->uid) {
    return;
  }
  if (s->uid_prev) {
    s->uid_prev->uid_next = s->uid_next;
  } else {
    pm_strmap_ent *e = pm_strmap_get(&srv->by_uid, s->uid, s->uid_len);
    if (s->uid_next) {
      e->val = s->uid_next;
    } else {
      pm_strmap_del(&srv->by_uid, &srv->alloc, s->uid, s->uid_len);
    }
  }
  if (s->uid_next) {
    s->uid_next->uid_prev = s->uid_prev;
  }
  s->uid_next = s->uid_prev = NULL;
  pm_free(&srv->alloc, s->uid);
  s->uid = NULL;
  s->uid_len = 0;
  srv->bound--;
}

int pomelo_session_bind(pomelo_session *s, const char *uid, size_t len) {
  pomelo_server *srv = s->srv;
  pm_strmap_ent *e;
  pomelo_session *first;
  char *copy;
  if (!uid || len == 0) {
    return POMELO_ERR_INVALID_ARG;
  }
  if (!s->conn || pomelo_conn_get_state(s->conn) >= POMELO_CONN_CLOSING) {
    return POMELO_ERR_STATE;
  }
  if (s->uid) {
    return s->uid_len == len && memcmp(s->uid, uid, len) == 0 ? 0 : POMELO_ERR_EXISTS;
  }
  e = pm_strmap_get(&srv->by_uid, uid, len);
  first = e ? e->val : NULL;
  if (first && srv->set.uid_policy == POMELO_UID_REJECT) {
    return POMELO_ERR_EXISTS;
  }
  copy = pm_malloc(&srv->alloc, len + 1);
  if (!copy) {
    return POMELO_ERR_NOMEM;
  }
  memcpy(copy, uid, len);
  copy[len] = 0;
  if (!e) {
    e = pm_strmap_upsert(&srv->by_uid, &srv->alloc, uid, len);
    if (!e) {
      pm_free(&srv->alloc, copy);
      return POMELO_ERR_NOMEM;
    }
  }
  s->uid = copy;
  s->uid_len = len;
  s->uid_next = first;
  s->uid_prev = NULL;
  if (first) {
    first->uid_prev = s;
  }
  e->val = s;
  srv->bound++;
  if (srv->cluster) {
    pm_cluster_bound(srv->cluster, s); /* the other frontends kick their older sessions */
  }
  if (s->uid_next && srv->set.uid_policy == POMELO_UID_KICK_OLDER) {
    pomelo_session *o;
    for (o = s->uid_next; o; o = o->uid_next) {
      if (pomelo_conn_get_state(o->conn) < POMELO_CONN_CLOSING) {
        pomelo_session_kick(o, "replaced");
      }
    }
  }
  return 0;
}

int pomelo_session_unbind(pomelo_session *s) {
  if (!s->uid || !s->conn) {
    return POMELO_ERR_STATE;
  }
  uid_unlink(s);
  return 0;
}

size_t pomelo_server_sessions_by_uid(const pomelo_server *srv, const char *uid, size_t len,
                                     pomelo_session **out, size_t max) {
  pm_strmap_ent *e = uid ? pm_strmap_get(&srv->by_uid, uid, len) : NULL;
  pomelo_session *s;
  size_t n = 0;
  for (s = e ? e->val : NULL; s; s = s->uid_next) {
    if (n < max && out) {
      out[n] = s;
    }
    n++;
  }
  return n;
}

int pomelo_session_kick(pomelo_session *s, const char *reason) {
  int rc;
  if (!s->conn) {
    return POMELO_ERR_STATE;
  }
  rc = pomelo_conn_kick(s->conn, reason);
  if (pomelo_err_is_fatal(rc)) {
    s->srv->stats.errors++; /* the connection closed itself (POMELO_CLOSE_ERROR) */
  }
  pm_session_touch(s);
  return rc;
}

size_t pomelo_server_kick_uid(pomelo_server *srv, const char *uid, size_t len, const char *reason) {
  pm_strmap_ent *e = uid ? pm_strmap_get(&srv->by_uid, uid, len) : NULL;
  pomelo_session *s;
  size_t n = 0;
  for (s = e ? e->val : NULL; s; s = s->uid_next) {
    if (pomelo_session_kick(s, reason) == 0) {
      n++;
    }
  }
  return n;
}

int pomelo_session_handshake_reply(pomelo_session *s, int code, const char *user_json,
                                   size_t user_json_len) {
  int rc;
  if (!s->conn) {
    return POMELO_ERR_STATE;
  }
  rc = pomelo_conn_handshake_reply(s->conn, code, user_json, user_json_len);
  pm_session_touch(s);
  return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Settings
 * ------------------------------------------------------------------------------------------- */

static pm_setting *find_setting(const pomelo_session *s, const char *key, size_t klen) {
  uint32_t i;
  for (i = 0; i < s->nsettings; i++) {
    if (s->settings[i].klen == klen && memcmp(s->settings[i].key, key, klen) == 0) {
      return &s->settings[i];
    }
  }
  return NULL;
}

int pomelo_session_set(pomelo_session *s, const char *key, size_t klen, const char *value,
                       size_t vlen) {
  const pomelo_allocator *a = &s->srv->alloc;
  pm_setting *st;
  char *buf;
  if (!key || (!value && vlen) || klen == 0 || klen > SIZE_MAX / 2 || vlen > SIZE_MAX / 2) {
    return POMELO_ERR_INVALID_ARG;
  }
  buf = pm_malloc(a, klen + vlen + 2);
  if (!buf) {
    return POMELO_ERR_NOMEM;
  }
  memcpy(buf, key, klen);
  buf[klen] = 0;
  if (vlen) {
    memcpy(buf + klen + 1, value, vlen);
  }
  buf[klen + 1 + vlen] = 0;
  st = find_setting(s, key, klen);
  if (!st) {
    if (s->nsettings == s->csettings) {
      uint32_t cap = s->csettings ? s->csettings * 2 : 4;
      pm_setting *v = pm_realloc(a, s->settings, cap * sizeof(*v));
      if (!v) {
        pm_free(a, buf);
        return POMELO_ERR_NOMEM;
      }
      s->settings = v;
      s->csettings = cap;
    }
    st = &s->settings[s->nsettings++];
  } else {
    pm_free(a, st->key);
  }
  st->key = buf;
  st->klen = klen;
  st->val = buf + klen + 1;
  st->vlen = vlen;
  return 0;
}

const char *pomelo_session_get(const pomelo_session *s, const char *key, size_t klen, size_t *len) {
  pm_setting *st = key ? find_setting(s, key, klen) : NULL;
  if (len) {
    *len = st ? st->vlen : 0;
  }
  return st ? st->val : NULL;
}

int pomelo_session_remove(pomelo_session *s, const char *key, size_t klen) {
  pm_setting *st = key ? find_setting(s, key, klen) : NULL;
  if (!st) {
    return POMELO_ERR_NOT_FOUND;
  }
  pm_free(&s->srv->alloc, st->key);
  *st = s->settings[--s->nsettings];
  return 0;
}

int pomelo_session_export(const pomelo_session *s, char *buf, size_t cap, size_t *out_len) {
  pomelo_json_writer *w;
  const char *json;
  size_t len;
  uint32_t i;
  int rc;
  if (!out_len) {
    return POMELO_ERR_INVALID_ARG;
  }
  rc = pomelo_json_writer_new(&w, &s->srv->alloc, 0);
  if (rc) {
    return rc;
  }
  rc = pomelo_json_write_begin_object(w);
  rc = rc ? rc : pomelo_json_write_key(w, "id", 2);
  rc = rc ? rc : pomelo_json_write_uint64(w, s->sid);
  rc = rc ? rc : pomelo_json_write_key(w, "frontendId", 10);
  rc = rc ? rc
          : pomelo_json_write_string(w, pomelo_session_frontend_id(s),
                                     strlen(pomelo_session_frontend_id(s)));
  rc = rc ? rc : pomelo_json_write_key(w, "uid", 3);
  if (!rc) {
    rc = s->uid ? pomelo_json_write_string(w, s->uid, s->uid_len) : pomelo_json_write_null(w);
  }
  rc = rc ? rc : pomelo_json_write_key(w, "settings", 8);
  rc = rc ? rc : pomelo_json_write_begin_object(w);
  for (i = 0; !rc && i < s->nsettings; i++) {
    rc = pomelo_json_write_key(w, s->settings[i].key, s->settings[i].klen);
    rc = rc ? rc : pomelo_json_write_string(w, s->settings[i].val, s->settings[i].vlen);
  }
  rc = rc ? rc : pomelo_json_write_end_object(w);
  rc = rc ? rc : pomelo_json_write_end_object(w);
  if (!rc) {
    json = pomelo_json_writer_data(w, &len);
    *out_len = len;
    if (!buf || cap < len) {
      rc = POMELO_ERR_BUFFER_TOO_SMALL;
    } else {
      memcpy(buf, json, len);
    }
  }
  pomelo_json_writer_del(w);
  return rc;
}

void pomelo_server_get_stats(const pomelo_server *srv, pomelo_server_stats *out) {
  *out = srv->stats;
  out->connections = srv->sessions;
  out->packages_in = srv->counters.packages_in;
  out->packages_out = srv->counters.packages_out;
  out->dropped_messages += srv->counters.messages_dropped;
  out->too_large = srv->counters.too_large;
}
