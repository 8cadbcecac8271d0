/* The client: request ids and response matching, request timeouts, push dispatch, the route
 * dictionary and the reconnect policy, over one client-role connection at a time (conn.c does
 * the handshake, ACK, heartbeats, liveness and kick).
 *
 * A request goes: pomelo_client_request -> id (next_free_id) -> route compressed through the
 * dictionary -> pomelo_conn_send -> registered in the id map, the deadline heap and the issue
 * list. Its response comes back through conn_on_message -> the id map -> the callback. A lost
 * connection fails every waiting request (in issue order) and plans the reconnect.
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>

#include "client/client_int.h"

/* ---------------------------------------------------------------------------------------------
 * Settings
 * ------------------------------------------------------------------------------------------- */

void pomelo_client_settings_default(pomelo_client_settings *s) {
  memset(s, 0, sizeof(*s));
  pomelo_conn_settings_default(&s->conn);
  s->conn.role = POMELO_ROLE_CLIENT;
  s->conn.transport = POMELO_TRANSPORT_TCP;
  s->request_timeout_ms = 10000;
  s->reconnect.enabled = 1;
  s->reconnect.delay_ms = 2000;
  s->reconnect.max_delay_ms = 30000;
  s->reconnect.exponential = 1;
  s->reconnect.max_attempts = 0;
  s->random = NULL;
}

uint64_t pm_client_reconnect_delay(const pomelo_client *cl, uint32_t attempt) {
  const pomelo_reconnect_policy *p = &cl->set.reconnect;
  uint64_t d = p->delay_ms;
  if (p->exponential && attempt > 1) {
    uint32_t shift = attempt - 1u;
    d = shift >= 32u ? UINT64_MAX : d << shift; /* delay_ms < 2^32: no overflow below 32 */
  }
  if (p->max_delay_ms && d > p->max_delay_ms) {
    d = p->max_delay_ms;
  }
  if (d > UINT32_MAX) {
    d = UINT32_MAX;
  }
  if (cl->set.random && d > 0) {
    /* Uniform in [d/2, 3d/2), as libpomelo2's rand() % d + d / 2. */
    uint64_t r = cl->set.random(cl->user_data);
    d = d / 2u + ((r * d) >> 32);
  }
  return d;
}

/* now + ms, saturated below PM_NO_DEADLINE (which means "none"). */
static uint64_t deadline_after(uint64_t now, uint64_t ms) {
  return now >= PM_NO_DEADLINE - 1u - ms ? PM_NO_DEADLINE - 1u : now + ms;
}

/* ---------------------------------------------------------------------------------------------
 * The deadline heap
 * ------------------------------------------------------------------------------------------- */

static void heap_set(pomelo_client *cl, uint32_t i, pm_req *r) {
  cl->heap[i] = r;
  r->heap_idx = i;
}

static void heap_up(pomelo_client *cl, uint32_t i) {
  pm_req *r = cl->heap[i];
  while (i > 0) {
    uint32_t parent = (i - 1u) / 2u;
    if (cl->heap[parent]->deadline <= r->deadline) {
      break;
    }
    heap_set(cl, i, cl->heap[parent]);
    i = parent;
  }
  heap_set(cl, i, r);
}

static void heap_down(pomelo_client *cl, uint32_t i) {
  pm_req *r = cl->heap[i];
  for (;;) {
    uint32_t c = 2u * i + 1u;
    if (c >= cl->heap_len) {
      break;
    }
    if (c + 1u < cl->heap_len && cl->heap[c + 1u]->deadline < cl->heap[c]->deadline) {
      c++;
    }
    if (r->deadline <= cl->heap[c]->deadline) {
      break;
    }
    heap_set(cl, i, cl->heap[c]);
    i = c;
  }
  heap_set(cl, i, r);
}

/* Makes room for one more entry. */
static int heap_reserve(pomelo_client *cl) {
  pm_req **nh;
  uint32_t ncap;
  if (cl->heap_len < cl->heap_cap) {
    return 0;
  }
  if (cl->heap_cap >= (1u << 30)) {
    return POMELO_ERR_NOMEM;
  }
  ncap = cl->heap_cap ? 2u * cl->heap_cap : 8u;
  if ((uint64_t)ncap * sizeof(*nh) > (uint64_t)PTRDIFF_MAX / 2u) {
    return POMELO_ERR_NOMEM;
  }
  nh = pm_realloc(&cl->alloc, cl->heap, (size_t)ncap * sizeof(*nh));
  if (!nh) {
    return POMELO_ERR_NOMEM;
  }
  cl->heap = nh;
  cl->heap_cap = ncap;
  return 0;
}

static void heap_push(pomelo_client *cl, pm_req *r) {
  heap_set(cl, cl->heap_len++, r);
  heap_up(cl, r->heap_idx);
}

static void heap_remove(pomelo_client *cl, pm_req *r) {
  uint32_t i = r->heap_idx;
  pm_req *last;
  if (i == PM_REQ_NO_HEAP) {
    return;
  }
  r->heap_idx = PM_REQ_NO_HEAP;
  last = cl->heap[--cl->heap_len];
  if (last != r) {
    heap_set(cl, i, last);
    if (i > 0 && cl->heap[(i - 1u) / 2u]->deadline > last->deadline) {
      heap_up(cl, i);
    } else {
      heap_down(cl, i);
    }
  }
  /* Give memory back when the heap has shrunk well below its size (a failure keeps it). */
  if (cl->heap_cap > 16u && cl->heap_len <= cl->heap_cap / 4u) {
    pm_req **nh = pm_realloc(&cl->alloc, cl->heap, (size_t)(cl->heap_cap / 2u) * sizeof(*nh));
    if (nh) {
      cl->heap = nh;
      cl->heap_cap /= 2u;
    }
  }
}

/* ---------------------------------------------------------------------------------------------
 * Waiting requests
 * ------------------------------------------------------------------------------------------- */

static void list_unlink(pomelo_client *cl, pm_req *r) {
  if (r->prev) {
    r->prev->next = r->next;
  } else {
    cl->first = r->next;
  }
  if (r->next) {
    r->next->prev = r->prev;
  } else {
    cl->last = r->prev;
  }
  r->prev = r->next = NULL;
}

/* Takes every waiting request out of the client (structures freed) and returns them as a list
 * in issue order, for failing outside the client's state. */
static pm_req *detach_requests(pomelo_client *cl) {
  pm_req *list = cl->first;
  cl->first = cl->last = NULL;
  pm_idmap_fini(&cl->reqs, &cl->alloc);
  pm_free(&cl->alloc, cl->heap);
  cl->heap = NULL;
  cl->heap_len = cl->heap_cap = 0;
  return list;
}

static void fail_list(pomelo_client *cl, pm_req *list, int status) {
  while (list) {
    pm_req *r = list;
    list = r->next;
    if (r->cb) {
      r->cb(cl, status, r->route, r->route_len, NULL, r->data);
    }
    pm_free(&cl->alloc, r);
  }
}

/* Removes a request found in the id map from the other structures. */
static void req_forget(pomelo_client *cl, pm_req *r) {
  heap_remove(cl, r);
  list_unlink(cl, r);
}

/* The next id in 1..2^31-1 that no waiting request holds, from next_id on (wrapping past
 * 2^31-1 to 1). The caller checked that a free id exists. */
static uint32_t next_free_id(const pomelo_client *cl) {
  uint32_t id = cl->next_id;
  for (;;) {
    if (id == 0 || id > POMELO_MSG_ID_MAX) {
      id = 1;
    }
    if (!pm_idmap_get(&cl->reqs, id)) {
      return id;
    }
    id++;
  }
}

void pm_client_set_next_id(pomelo_client *cl, uint32_t id) {
  cl->next_id = id;
}

/* ---------------------------------------------------------------------------------------------
 * Route dictionary and protos (spec 3, 4.4, 7, 10)
 * ------------------------------------------------------------------------------------------- */

/* JavaScript truthiness of a JSON value (absent is false). */
static int js_truthy(const pomelo_json_value *v) {
  size_t len;
  double n;
  switch (pomelo_json_typeof(v)) {
  case POMELO_JSON_BOOL:
    return pomelo_json_bool(v);
  case POMELO_JSON_NUMBER:
    n = pomelo_json_number(v);
    return n != 0.0 && n == n;
  case POMELO_JSON_STRING:
    pomelo_json_string(v, &len);
    return len > 0;
  case POMELO_JSON_ARRAY:
  case POMELO_JSON_OBJECT:
    return v != NULL;
  default:
    return 0;
  }
}

/* The dictionary part of an accepted handshake: with sys.useDict, a new dictionary when the
 * server sent one (pomelo_dict_from_handshake: routeToCode and codeToRoute, or dict alone),
 * else the cached one stays (the server omits it when our dictVersion matched); without
 * sys.useDict, or when what it sent is malformed, there is none (routes go as strings). */
static int dict_update(pomelo_client *cl, const pomelo_json_value *sys) {
  pomelo_dict *nd = NULL;
  int rc;
  if (!js_truthy(pomelo_json_get(sys, "useDict"))) {
    pomelo_dict_del(cl->dict);
    cl->dict = NULL;
    return 0;
  }
  rc = pomelo_dict_from_handshake(&nd, &cl->alloc, sys);
  if (rc == POMELO_ERR_NOT_FOUND) {
    return 0; /* nothing sent: the cached one stays */
  }
  if (rc == POMELO_ERR_NOMEM) {
    return rc;
  }
  pomelo_dict_del(cl->dict);
  cl->dict = rc ? NULL : nd;
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Connection events
 * ------------------------------------------------------------------------------------------- */

/* Deletes the connections replaced during a call, once no call into them runs. */
static void reap(pomelo_client *cl) {
  if (cl->depth == 0) {
    while (cl->nzombies) {
      pomelo_conn_del(cl->zombies[--cl->nzombies]);
    }
    if (cl->zombies) {
      pm_free(&cl->alloc, cl->zombies);
      cl->zombies = NULL;
      cl->zombies_cap = 0;
    }
  }
}

/* Plans the next reconnect attempt, or none. Returns when on_reconnect will fire. */
static uint64_t plan_reconnect(pomelo_client *cl, int reason) {
  const pomelo_reconnect_policy *p = &cl->set.reconnect;
  if (cl->no_reconnect || reason == POMELO_CLOSE_KICKED ||
      reason == POMELO_CLOSE_HANDSHAKE_FAILED || reason == POMELO_CLOSE_LOCAL || !p->enabled ||
      (p->max_attempts && cl->attempt >= p->max_attempts)) {
    cl->state = POMELO_CLIENT_IDLE;
    cl->reconnect_at = PM_NO_DEADLINE;
    cl->attempt = 0;
    return PM_NO_DEADLINE;
  }
  cl->attempt++;
  cl->state = POMELO_CLIENT_WAIT_RECONNECT;
  cl->reconnect_at = deadline_after(cl->now, pm_client_reconnect_delay(cl, cl->attempt));
  return cl->reconnect_at;
}

/* The current connection ended: plan what follows, tell the application, fail the requests. */
static void connection_ended(pomelo_client *cl, int reason) {
  pm_req *list = detach_requests(cl);
  uint64_t at = plan_reconnect(cl, reason);
  if (cl->cb.on_disconnect) {
    cl->cb.on_disconnect(cl, reason, at, cl->user_data);
  }
  fail_list(cl, list, POMELO_ERR_CLOSED);
}

static void conn_on_close(pomelo_conn *conn, int reason, void *ud) {
  pomelo_client *cl = ud;
  if (conn == cl->conn) {
    connection_ended(cl, reason);
  }
}

/* The protos part of an accepted handshake: a new set when the server sent one, else the
 * cached one stays (the server omits it when our protoVersion matched); without sys.useProto
 * the cache is dropped (as libpomelo2 does), and so is a set we cannot read. */
static int protos_update(pomelo_client *cl, const pomelo_json_value *sys) {
  const pomelo_json_value *p = pomelo_json_get(sys, "protos");
  pomelo_protos *np = NULL;
  int rc;
  if (!js_truthy(pomelo_json_get(sys, "useProto"))) {
    pomelo_protos_del(cl->protos);
    cl->protos = NULL;
    return 0;
  }
  if (pomelo_json_typeof(p) != POMELO_JSON_OBJECT) {
    return 0;
  }
  rc = pomelo_protos_from_handshake(&np, &cl->alloc, p, NULL, NULL);
  if (rc == POMELO_ERR_NOMEM) {
    return rc;
  }
  pomelo_protos_del(cl->protos);
  cl->protos = rc ? NULL : np;
  return 0;
}

static void conn_on_hs_response(pomelo_conn *conn, int code, const pomelo_json_value *resp,
                                void *ud) {
  pomelo_client *cl = ud;
  int rc;
  if (conn != cl->conn) {
    return;
  }
  if (code != 200) {
    cl->no_reconnect = 1; /* a refusal is final (libpomelo2, JS client) */
    if (cl->cb.on_handshake_error) {
      cl->cb.on_handshake_error(cl, code, cl->user_data);
    }
    return;
  }
  rc = dict_update(cl, pomelo_json_get(resp, "sys"));
  rc = rc ? rc : protos_update(cl, pomelo_json_get(resp, "sys"));
  if (rc) {
    pm_conn_abort(conn, POMELO_CLOSE_ERROR); /* on_close: connection_ended, a reconnect */
    return;
  }
  cl->state = POMELO_CLIENT_CONNECTED;
  cl->attempt = 0;
  if (cl->cb.on_connected) {
    cl->cb.on_connected(cl, resp, cl->user_data);
  }
}

static void conn_on_kick(pomelo_conn *conn, const char *reason, size_t len, void *ud) {
  pomelo_client *cl = ud;
  if (conn != cl->conn) {
    return;
  }
  cl->no_reconnect = 1;
  if (cl->cb.on_kick) {
    cl->cb.on_kick(cl, reason, len, cl->user_data);
  }
}

static void conn_on_output(pomelo_conn *conn, void *ud) {
  pomelo_client *cl = ud;
  if (conn != cl->conn) {
    return;
  }
  if (cl->defer_output) {
    cl->output_pending = 1;
  } else if (cl->cb.on_output) {
    cl->cb.on_output(cl, cl->user_data);
  }
}

/* The body of a received response or push for `route` as JSON text (decoded from protobuf
 * with the server proto of the route, inflated). `m` is copied into *out with that body. */
static int receive_body(pomelo_client *cl, const pomelo_msg *m, const char *route, size_t len,
                        pomelo_msg *out, pm_bytes *body, pomelo_json_writer **own, int *used) {
  const pomelo_pb_type *pb = pomelo_protos_find(cl->protos, POMELO_PROTOS_SERVER, route, len);
  pomelo_json_writer *w = NULL;
  int rc;
  *own = NULL;
  *used = 0;
  if (pb && !cl->scratch_busy) {
    if (!cl->scratch && (rc = pomelo_json_writer_new(&cl->scratch, &cl->alloc, 0)) != 0) {
      return rc;
    }
    w = cl->scratch;
    cl->scratch_busy = 1;
    *used = 1;
  } else if (pb) {
    /* A feed from inside a callback that still reads the scratch writer's text. */
    if ((rc = pomelo_json_writer_new(own, &cl->alloc, 0)) != 0) {
      return rc;
    }
    w = *own;
  }
  rc = pm_in_body(&cl->alloc, w, m, pb, 0, cl->set.conn.max_body, body, NULL);
  if (rc == 0) {
    *out = *m;
    out->body = body->p;
    out->body_len = body->len;
    out->gzip = 0;
  }
  return rc;
}

static void on_response(pomelo_client *cl, const pomelo_msg *m) {
  pm_req *r = pm_idmap_del(&cl->reqs, &cl->alloc, m->id);
  pomelo_json_writer *own;
  pomelo_msg in;
  pm_bytes body;
  int rc, used;
  if (!r) {
    return; /* timed out already, or never ours: ignored */
  }
  req_forget(cl, r);
  /* The body's proto is the request's route's (spec 7.3: the id -> route map). */
  rc = receive_body(cl, m, r->route, r->route_len, &in, &body, &own, &used);
  if (r->cb) {
    r->cb(cl, rc, r->route, r->route_len, rc ? NULL : &in, r->data);
  }
  if (rc == 0) {
    pm_bytes_fini(&body, &cl->alloc);
  }
  pomelo_json_writer_del(own);
  cl->scratch_busy = used ? 0 : cl->scratch_busy;
  pm_free(&cl->alloc, r);
}

static void on_push(pomelo_client *cl, const pomelo_msg *m) {
  char digits[8];
  const char *route = m->route;
  size_t len = m->route_len;
  const pm_strmap_ent *e;
  pomelo_push_cb cb = cl->cb.on_push;
  void *ud = cl->user_data;
  pomelo_json_writer *own;
  pomelo_msg in;
  pm_bytes body;
  int used;
  if (m->route_compressed) {
    route = pomelo_dict_route(cl->dict, m->route_code, &len);
    if (!route) {
      /* An unknown code: its decimal digits, as the JS client emits it. */
      len = (size_t)snprintf(digits, sizeof digits, "%u", (unsigned)m->route_code);
      route = digits;
    }
  }
  e = pm_strmap_get(&cl->handlers, route, len);
  if (e && e->fn) {
    cb = (pomelo_push_cb)e->fn;
    ud = e->ud;
  }
  /* A push whose body cannot be decoded is dropped (libpomelo2 would reconnect). */
  if (receive_body(cl, m, route, len, &in, &body, &own, &used) == 0) {
    if (cb) {
      cb(cl, route, len, &in, ud);
    }
    pm_bytes_fini(&body, &cl->alloc);
  }
  pomelo_json_writer_del(own);
  cl->scratch_busy = used ? 0 : cl->scratch_busy;
}

static void conn_on_message(pomelo_conn *conn, const pomelo_msg *m, void *ud) {
  pomelo_client *cl = ud;
  if (conn != cl->conn || cl->state != POMELO_CLIENT_CONNECTED) {
    return;
  }
  if (m->type == POMELO_MSG_RESPONSE) {
    on_response(cl, m);
  } else if (m->type == POMELO_MSG_PUSH) {
    on_push(cl, m);
  }
  /* requests and notifies from a server are ignored */
}

static uint32_t conn_random(pomelo_conn *conn, void *ud) {
  pomelo_client *cl = ud;
  (void)conn;
  return cl->set.random(cl->user_data);
}

/* check_client and on_handshake are the server role's; on_handshake_response(200) does what
 * on_ready would. */
static const pomelo_conn_callbacks conn_callbacks = {
    .on_handshake_response = conn_on_hs_response,
    .on_message = conn_on_message,
    .on_kick = conn_on_kick,
    .on_output = conn_on_output,
    .on_close = conn_on_close,
};

/* ---------------------------------------------------------------------------------------------
 * Lifecycle
 * ------------------------------------------------------------------------------------------- */

int pomelo_client_new(pomelo_client **out, const pomelo_client_settings *settings,
                      const pomelo_client_callbacks *callbacks, const pomelo_allocator *alloc,
                      void *user_data) {
  pomelo_allocator a;
  pomelo_client *cl;
  pomelo_client_settings s;
  pomelo_conn_callbacks ccb;
  int rc;
  if (!out) {
    return POMELO_ERR_INVALID_ARG;
  }
  *out = NULL;
  if (settings) {
    s = *settings;
  } else {
    pomelo_client_settings_default(&s);
  }
  s.conn.role = POMELO_ROLE_CLIENT;
  s.conn.cached_dict_version = NULL; /* the client sends the versions of what it holds */
  s.conn.cached_proto_version = NULL;
  if (s.gzip_min && !(pomelo_features() & POMELO_FEATURE_ZLIB)) {
    return POMELO_ERR_UNSUPPORTED;
  }
  pm_alloc_init(&a, alloc);
  cl = pm_calloc(&a, sizeof(*cl));
  if (!cl) {
    return POMELO_ERR_NOMEM;
  }
  ccb = conn_callbacks;
  if (s.random) {
    ccb.random = conn_random; /* WebSocket keys and masks */
  }
  rc = pm_conn_shared_new(&cl->sh, &s.conn, &ccb, &a);
  if (rc) {
    pm_free(&a, cl);
    return rc;
  }
  cl->alloc = a;
  cl->set = s;
  if (callbacks) {
    cl->cb = *callbacks;
  }
  cl->user_data = user_data;
  cl->state = POMELO_CLIENT_IDLE;
  cl->reconnect_at = PM_NO_DEADLINE;
  cl->next_id = 1;
  pm_idmap_init(&cl->reqs);
  pm_strmap_init(&cl->handlers);
  *out = cl;
  return 0;
}

void pomelo_client_del(pomelo_client *cl) {
  pomelo_allocator a;
  if (!cl) {
    return;
  }
  cl->deleting = 1;
  cl->state = POMELO_CLIENT_IDLE;
  cl->reconnect_at = PM_NO_DEADLINE;
  /* The callbacks may call client functions: with `deleting` set and the state IDLE, connect
   * and request refuse, so nothing new appears. */
  fail_list(cl, detach_requests(cl), POMELO_ERR_CLOSED);
  pomelo_conn_del(cl->conn);
  cl->depth = 0;
  reap(cl);
  pm_strmap_fini(&cl->handlers, &cl->alloc);
  pomelo_dict_del(cl->dict);
  pomelo_protos_del(cl->protos);
  pomelo_json_writer_del(cl->scratch);
  pm_conn_shared_unref(cl->sh);
  a = cl->alloc;
  pm_free(&a, cl);
}

void *pomelo_client_user_data(const pomelo_client *cl) {
  return cl->user_data;
}

pomelo_client_state pomelo_client_get_state(const pomelo_client *cl) {
  return (pomelo_client_state)cl->state;
}

int pomelo_client_connect(pomelo_client *cl, uint64_t now) {
  pomelo_conn *nc, *old = cl->conn;
  pm_req *list;
  int rc;
  if (cl->deleting) {
    return POMELO_ERR_STATE;
  }
  cl->now = now;
  /* The old connection may be running the callback that called us: then it cannot be deleted
   * before that call returns. Make room to park it first, so nothing fails after the switch. */
  if (old && cl->depth > 0 && cl->nzombies == cl->zombies_cap) {
    uint32_t ncap = cl->zombies_cap ? 2u * cl->zombies_cap : 2u;
    pomelo_conn **nz = pm_realloc(&cl->alloc, cl->zombies, (size_t)ncap * sizeof(*nz));
    if (!nz) {
      return POMELO_ERR_NOMEM;
    }
    cl->zombies = nz;
    cl->zombies_cap = ncap;
  }
  cl->sh->set.cached_dict_version =
      cl->dict && *pomelo_dict_version(cl->dict) ? pomelo_dict_version(cl->dict) : NULL;
  cl->sh->set.cached_proto_version = cl->protos ? pomelo_protos_version(cl->protos) : NULL;
  rc = pm_conn_new_shared(&nc, cl->sh, now, cl);
  cl->sh->set.cached_dict_version = NULL;
  cl->sh->set.cached_proto_version = NULL;
  if (rc) {
    return rc;
  }
  cl->conn = nc;
  cl->state = POMELO_CLIENT_CONNECTING;
  cl->no_reconnect = 0;
  cl->reconnect_at = PM_NO_DEADLINE;
  list = detach_requests(cl); /* requests of a connection still alive: dropped with it */
  if (old) {
    if (cl->depth > 0) {
      cl->zombies[cl->nzombies++] = old;
      pomelo_conn_peer_closed(old); /* stops its running call; its events are ignored */
    } else {
      pomelo_conn_del(old);
    }
  }
  fail_list(cl, list, POMELO_ERR_CLOSED);
  if (cl->conn == nc && pomelo_conn_out_len(nc) && cl->cb.on_output) {
    cl->cb.on_output(cl, cl->user_data); /* the handshake is queued */
  }
  reap(cl);
  return 0;
}

void pomelo_client_disconnect(pomelo_client *cl) {
  cl->reconnect_at = PM_NO_DEADLINE;
  cl->attempt = 0;
  if (cl->conn && pomelo_conn_get_state(cl->conn) < POMELO_CONN_CLOSING) {
    cl->no_reconnect = 1;
    cl->depth++;
    pomelo_conn_close(cl->conn, POMELO_CLOSE_LOCAL); /* on_close: connection_ended */
    cl->depth--;
  }
  cl->state = POMELO_CLIENT_IDLE;
  reap(cl);
}

/* ---------------------------------------------------------------------------------------------
 * I/O and time
 * ------------------------------------------------------------------------------------------- */

int pomelo_client_feed(pomelo_client *cl, const uint8_t *data, size_t len, uint64_t now) {
  int rc;
  if (!data && len) {
    return POMELO_ERR_INVALID_ARG;
  }
  cl->now = now;
  if (!cl->conn) {
    return 0;
  }
  cl->depth++;
  rc = pomelo_conn_feed(cl->conn, data, len, now);
  cl->depth--;
  reap(cl);
  return rc;
}

int pomelo_client_out_iov(const pomelo_client *cl, struct iovec *iov, int max) {
  return cl->conn ? pomelo_conn_out_iov(cl->conn, iov, max) : 0;
}

size_t pomelo_client_out_len(const pomelo_client *cl) {
  return cl->conn ? pomelo_conn_out_len(cl->conn) : 0;
}

void pomelo_client_out_consume(pomelo_client *cl, size_t n, uint64_t now) {
  cl->now = now;
  if (cl->conn) {
    pomelo_conn_out_consume(cl->conn, n, now);
  }
}

int pomelo_client_wants_close(const pomelo_client *cl) {
  return cl->conn ? pomelo_conn_wants_close(cl->conn) : 0;
}

void pomelo_client_peer_closed(pomelo_client *cl, uint64_t now) {
  cl->now = now;
  if (cl->conn && pomelo_conn_get_state(cl->conn) < POMELO_CONN_CLOSED) {
    cl->depth++;
    pomelo_conn_peer_closed(cl->conn); /* on_close (unless already closing): connection_ended */
    cl->depth--;
  } else if (cl->state == POMELO_CLIENT_WAIT_RECONNECT && cl->reconnect_at == PM_NO_DEADLINE) {
    /* on_reconnect fired and the new socket could not connect: plan the next attempt. */
    uint64_t at = plan_reconnect(cl, POMELO_CLOSE_PEER);
    if (cl->cb.on_disconnect) {
      cl->cb.on_disconnect(cl, POMELO_CLOSE_PEER, at, cl->user_data);
    }
  }
  reap(cl);
}

uint64_t pomelo_client_expiry(const pomelo_client *cl) {
  uint64_t t = cl->conn ? pomelo_conn_expiry(cl->conn) : PM_NO_DEADLINE;
  if (cl->heap_len) {
    t = PM_MIN(t, cl->heap[0]->deadline);
  }
  if (cl->state == POMELO_CLIENT_WAIT_RECONNECT) {
    t = PM_MIN(t, cl->reconnect_at);
  }
  return t;
}

int pomelo_client_handle_expiry(pomelo_client *cl, uint64_t now) {
  int rc = 0;
  cl->now = now;
  if (cl->conn) {
    cl->depth++;
    rc = pomelo_conn_handle_expiry(cl->conn, now); /* NOMEM: the connection closed itself */
    cl->depth--;
  }
  while (cl->heap_len && cl->heap[0]->deadline <= now) {
    pm_req *r = cl->heap[0];
    pm_idmap_del(&cl->reqs, &cl->alloc, r->id);
    req_forget(cl, r);
    if (r->cb) {
      r->cb(cl, POMELO_ERR_TIMEOUT, r->route, r->route_len, NULL, r->data);
    }
    pm_free(&cl->alloc, r);
  }
  if (cl->state == POMELO_CLIENT_WAIT_RECONNECT && cl->reconnect_at <= now) {
    cl->reconnect_at = PM_NO_DEADLINE;
    if (cl->cb.on_reconnect) {
      cl->cb.on_reconnect(cl, cl->attempt, cl->user_data);
    }
  }
  reap(cl);
  return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Requests, notifies, pushes
 * ------------------------------------------------------------------------------------------- */

/* Fills the route of `m`: the dictionary's code when it has the route, else the string. */
static void set_route(const pomelo_client *cl, pomelo_msg *m, const char *route, size_t len) {
  uint16_t code = pomelo_dict_code(cl->dict, route, len);
  if (code) {
    m->route_compressed = 1;
    m->route_code = code;
  } else {
    m->route = route;
    m->route_len = len;
  }
}

/* The body of a request or notify on `route` as it goes out: protobuf when the server's
 * client protos have the route (the JSON text parsed and encoded; errors returned), deflated
 * past gzip_min, else the bytes as given. */
static int send_body(pomelo_client *cl, const char *route, size_t route_len, const uint8_t *body,
                     size_t len, pomelo_msg *m, pm_bytes *out) {
  const pomelo_pb_type *pb = pomelo_protos_find(cl->protos, POMELO_PROTOS_CLIENT, route, route_len);
  int rc = 0;
  out->p = body;
  out->len = len;
  out->own = NULL;
  if (pb) {
    pomelo_json_doc *doc = NULL;
    size_t need = 0;
    rc = pomelo_json_parse(&doc, &cl->alloc, (const char *)(len ? body : (const uint8_t *)"{}"),
                           len ? len : 2, NULL, NULL);
    rc = rc ? rc : pomelo_pb_encode(pb, pomelo_json_root(doc), 0, NULL, 0, &need, NULL);
    if (rc == 0 && need) { /* measured: now the bytes */
      out->own = pm_malloc(&cl->alloc, need);
      rc = out->own ? pomelo_pb_encode(pb, pomelo_json_root(doc), 0, out->own, need, &need, NULL)
                    : POMELO_ERR_NOMEM;
    }
    pomelo_json_doc_del(doc);
    if (rc) {
      pm_bytes_fini(out, &cl->alloc);
      return rc;
    }
    out->p = out->own;
    out->len = need;
  }
  if (cl->set.gzip_min && out->len >= cl->set.gzip_min) {
    uint8_t *z;
    size_t zl;
    rc = pm_deflate(&cl->alloc, out->p, out->len, 0, &z, &zl);
    if (rc) {
      pm_bytes_fini(out, &cl->alloc);
      return rc;
    }
    pm_bytes_fini(out, &cl->alloc);
    out->p = z;
    out->own = z;
    out->len = zl;
    m->gzip = 1;
  }
  m->body = out->p;
  m->body_len = out->len;
  return 0;
}

static int check_send(const pomelo_client *cl, const char *route, const uint8_t *body,
                      size_t body_len) {
  if (!route || (!body && body_len)) {
    return POMELO_ERR_INVALID_ARG;
  }
  if (cl->state != POMELO_CLIENT_CONNECTED || !cl->conn ||
      pomelo_conn_get_state(cl->conn) != POMELO_CONN_WORKING) {
    return POMELO_ERR_STATE;
  }
  return 0;
}

/* Queues `m`, holding back on_output until the caller is done registering. */
static int send_msg(pomelo_client *cl, const pomelo_msg *m) {
  int rc;
  cl->depth++;
  cl->defer_output++;
  rc = pomelo_conn_send(cl->conn, m);
  cl->defer_output--;
  cl->depth--;
  return rc;
}

/* Runs an on_output held back by send_msg. */
static void flush_output_event(pomelo_client *cl) {
  if (cl->output_pending && !cl->defer_output) {
    cl->output_pending = 0;
    if (cl->cb.on_output) {
      cl->cb.on_output(cl, cl->user_data);
    }
  }
}

int pomelo_client_request(pomelo_client *cl, const char *route, const uint8_t *body,
                          size_t body_len, uint32_t timeout_ms, pomelo_response_cb cb,
                          void *req_data, uint64_t now, uint32_t *id_out) {
  pm_bytes sent;
  pomelo_msg m;
  pm_req *r;
  uint32_t id;
  size_t route_len;
  int rc = check_send(cl, route, body, body_len);
  if (rc) {
    return rc;
  }
  route_len = strlen(route);
  cl->now = now;
  if (cl->reqs.count >= POMELO_MSG_ID_MAX) {
    return POMELO_ERR_LIMIT; /* every id is waiting */
  }
  if (timeout_ms == 0) {
    timeout_ms = cl->set.request_timeout_ms;
  }
  /* Room first, so nothing can fail once the message is queued. */
  if ((rc = pm_idmap_reserve(&cl->reqs, &cl->alloc, 1)) != 0 ||
      (timeout_ms && (rc = heap_reserve(cl)) != 0)) {
    return rc;
  }
  if (route_len > SIZE_MAX - sizeof(*r) - 1u) {
    return POMELO_ERR_NOMEM;
  }
  r = pm_malloc(&cl->alloc, sizeof(*r) + route_len + 1u);
  if (!r) {
    return POMELO_ERR_NOMEM;
  }
  id = next_free_id(cl);
  memset(r, 0, sizeof(*r));
  r->id = id;
  r->deadline = timeout_ms ? deadline_after(now, timeout_ms) : PM_NO_DEADLINE;
  r->heap_idx = PM_REQ_NO_HEAP;
  r->cb = cb;
  r->data = req_data;
  r->route_len = route_len;
  if (route_len) {
    memcpy(r->route, route, route_len);
  }
  r->route[route_len] = '\0';

  memset(&m, 0, sizeof m);
  m.type = POMELO_MSG_REQUEST;
  m.id = id;
  set_route(cl, &m, r->route, route_len);
  rc = send_body(cl, r->route, route_len, body, body_len, &m, &sent);
  if (rc == 0) {
    rc = send_msg(cl, &m);
    pm_bytes_fini(&sent, &cl->alloc);
  }
  if (rc) {
    pm_free(&cl->alloc, r);
    reap(cl);
    return rc;
  }
  pm_idmap_put(&cl->reqs, id, r);
  if (r->deadline != PM_NO_DEADLINE) {
    heap_push(cl, r);
  }
  r->prev = cl->last;
  if (cl->last) {
    cl->last->next = r;
  } else {
    cl->first = r;
  }
  cl->last = r;
  cl->next_id = id + 1u; /* next_free_id wraps past POMELO_MSG_ID_MAX */
  if (id_out) {
    *id_out = id;
  }
  flush_output_event(cl);
  reap(cl);
  return 0;
}

int pomelo_client_notify(pomelo_client *cl, const char *route, const uint8_t *body,
                         size_t body_len) {
  pm_bytes sent;
  pomelo_msg m;
  int rc = check_send(cl, route, body, body_len);
  if (rc) {
    return rc;
  }
  memset(&m, 0, sizeof m);
  m.type = POMELO_MSG_NOTIFY;
  set_route(cl, &m, route, strlen(route));
  rc = send_body(cl, route, strlen(route), body, body_len, &m, &sent);
  if (rc == 0) {
    rc = send_msg(cl, &m);
    pm_bytes_fini(&sent, &cl->alloc);
  }
  if (rc == 0) {
    flush_output_event(cl);
  }
  reap(cl);
  return rc;
}

int pomelo_client_on(pomelo_client *cl, const char *route, pomelo_push_cb cb, void *user_data) {
  pm_strmap_ent *e;
  size_t route_len;
  if (!cl || !route) {
    return POMELO_ERR_INVALID_ARG;
  }
  route_len = strlen(route);
  if (!cb) {
    pm_strmap_del(&cl->handlers, &cl->alloc, route, route_len);
    return 0;
  }
  e = pm_strmap_upsert(&cl->handlers, &cl->alloc, route, route_len);
  if (!e) {
    return POMELO_ERR_NOMEM;
  }
  e->fn = (pm_fn)cb;
  e->ud = user_data;
  return 0;
}

size_t pomelo_client_pending(const pomelo_client *cl) {
  return cl->reqs.count;
}
