/* Route dispatch: handlers, filters, requests and their answers, forwarding (spec 8.1, 8.2).
 * SPDX-License-Identifier: MIT
 */
#include "server/server_int.h"
#include "cluster/cluster_int.h"

/* ---------------------------------------------------------------------------------------------
 * Registration
 * ------------------------------------------------------------------------------------------- */

/* Splits "type.handler.method": returns 1 with the type's length and the method's offset when
 * the route has exactly three non-empty parts, 0 otherwise; *dots receives the number of dots. */
static int split_route(const char *r, size_t len, size_t *type_len, size_t *method_off, int *dots) {
  size_t i, first = 0, second = 0;
  int n = 0;
  for (i = 0; i < len; i++) {
    if (r[i] == '.') {
      if (n == 0) {
        first = i;
      } else if (n == 1) {
        second = i;
      }
      n++;
    }
  }
  *dots = n;
  if (n != 2 || first == 0 || second == first + 1 || second + 1 == len) {
    return 0;
  }
  *type_len = first;
  *method_off = second + 1;
  return 1;
}

/* Checks a route given to pomelo_server_on / _before / _after: three parts, this server's
 * type, at most 255 bytes (the longest a message can carry). */
static int check_route(const pomelo_server *srv, const char *route, size_t len) {
  size_t tl, mo;
  int dots;
  if (len > POMELO_MSG_ROUTE_MAX || !split_route(route, len, &tl, &mo, &dots)) {
    return POMELO_ERR_ROUTE;
  }
  if (tl != srv->type_len || memcmp(route, srv->server_type, tl) != 0) {
    return POMELO_ERR_ROUTE_TYPE; /* only on_forward ever sees other types' routes */
  }
  return 0;
}

/* The entry of `route` in `map` (NULL: the default handler's), created on first use. */
static pm_route *route_entry(pomelo_server *srv, pm_strmap *map, const char *route, size_t len) {
  pm_strmap_ent *e;
  pm_route *r;
  if (!route) {
    if (!srv->fallback) {
      srv->fallback = pm_calloc(&srv->alloc, sizeof(*srv->fallback));
    }
    return srv->fallback;
  }
  e = pm_strmap_get(map, route, len);
  if (e) {
    return e->val;
  }
  r = pm_calloc(&srv->alloc, sizeof(*r));
  if (!r) {
    return NULL;
  }
  e = pm_strmap_upsert(map, &srv->alloc, route, len);
  if (!e) {
    pm_free(&srv->alloc, r);
    return NULL;
  }
  e->val = r;
  return r;
}

int pomelo_server_on(pomelo_server *srv, const char *route, pomelo_handler_fn fn, void *user_data) {
  size_t len = route ? strlen(route) : 0;
  pm_route *r;
  int rc;
  if (!fn) {
    return POMELO_ERR_INVALID_ARG;
  }
  if (route && (rc = check_route(srv, route, len)) != 0) {
    return rc;
  }
  r = route_entry(srv, &srv->routes, route, len);
  if (!r) {
    return POMELO_ERR_NOMEM;
  }
  r->fn = fn;
  r->ud = user_data;
  return 0;
}

int pm_server_on_remote(pomelo_server *srv, const char *route, pomelo_handler_fn fn, void *ud) {
  size_t len = route ? strlen(route) : 0;
  pm_route *r;
  int rc;
  if (!fn || !route) {
    return POMELO_ERR_INVALID_ARG;
  }
  if ((rc = check_route(srv, route, len)) != 0) {
    return rc;
  }
  r = route_entry(srv, &srv->remotes, route, len);
  if (!r) {
    return POMELO_ERR_NOMEM;
  }
  r->fn = fn;
  r->ud = ud;
  return 0;
}

static int add_filter(pomelo_server *srv, pm_filters *f, pm_fn fn, void *ud) {
  if (f->n == f->cap) {
    uint32_t cap = f->cap ? f->cap * 2 : 4;
    pm_filter *v = pm_realloc(&srv->alloc, f->v, cap * sizeof(*v));
    if (!v) {
      return POMELO_ERR_NOMEM;
    }
    f->v = v;
    f->cap = cap;
  }
  f->v[f->n].fn = fn;
  f->v[f->n].ud = ud;
  f->n++;
  return 0;
}

static int add_route_filter(pomelo_server *srv, const char *route, int after, pm_fn fn, void *ud) {
  size_t len;
  pm_route *r;
  int rc;
  if (!fn) {
    return POMELO_ERR_INVALID_ARG;
  }
  if (!route) {
    return add_filter(srv, after ? &srv->after : &srv->before, fn, ud);
  }
  len = strlen(route);
  if ((rc = check_route(srv, route, len)) != 0) {
    return rc;
  }
  r = route_entry(srv, &srv->routes, route, len);
  if (!r) {
    return POMELO_ERR_NOMEM;
  }
  return add_filter(srv, after ? &r->after : &r->before, fn, ud);
}

int pomelo_server_before(pomelo_server *srv, const char *route, pomelo_before_fn fn,
                         void *user_data) {
  return add_route_filter(srv, route, 0, (pm_fn)fn, user_data);
}

int pomelo_server_after(pomelo_server *srv, const char *route, pomelo_after_fn fn,
                        void *user_data) {
  return add_route_filter(srv, route, 1, (pm_fn)fn, user_data);
}

/* ---------------------------------------------------------------------------------------------
 * Requests
 * ------------------------------------------------------------------------------------------- */

static pomelo_request *request_new(pomelo_server *srv, pomelo_session *s, const pomelo_msg *m,
                                   pm_route *route) {
  size_t body_len = m->body_len;
  pomelo_request *req;
  if (m->route_len > SIZE_MAX / 2 || body_len > SIZE_MAX / 2) {
    return NULL;
  }
  req = pm_malloc(&srv->alloc, sizeof(*req) + m->route_len + body_len + 2);
  if (!req) {
    return NULL;
  }
  memset(req, 0, sizeof(*req));
  req->srv = srv;
  req->sid = s->sid;
  req->imported = s->imported ? s : NULL;
  req->route = route;
  req->msg = *m;
  req->msg.route_compressed = 0;
  req->msg.route_code = 0;
  if (m->route_len) {
    memcpy(req->data, m->route, m->route_len);
  }
  req->data[m->route_len] = 0;
  if (body_len) {
    memcpy(req->data + m->route_len + 1, m->body, body_len);
  }
  req->data[m->route_len + 1 + body_len] = 0;
  req->msg.route = req->data;
  req->msg.body = (const uint8_t *)(req->data + m->route_len + 1);
  req->next = srv->reqs;
  if (srv->reqs) {
    srv->reqs->prev = req;
  }
  srv->reqs = req;
  return req;
}

static int is_notify(const pomelo_request *req);

static void request_free(pomelo_request *req) {
  pomelo_server *srv = req->srv;
  if (req->reply && !is_notify(req)) {
    /* Dropped, or the server is going: the backend's reply learns that no answer will come. */
    void (*reply)(const char *, size_t, void *) = req->reply;
    req->reply = NULL;
    reply(NULL, 0, req->reply_arg);
  }
  if (req->prev) {
    req->prev->next = req->next;
  } else {
    srv->reqs = req->next;
  }
  if (req->next) {
    req->next->prev = req->prev;
  }
  pomelo_json_doc_del(req->doc);
  if (req->imported) {
    pm_session_free_imported(req->imported);
  }
  pm_free(&srv->alloc, req);
}

void pm_server_release_requests(pomelo_server *srv) {
  while (srv->reqs) {
    request_free(srv->reqs);
  }
}

pomelo_session *pomelo_request_session(const pomelo_request *req) {
  return req->imported ? req->imported : pomelo_server_session(req->srv, req->sid);
}

uint64_t pomelo_request_sid(const pomelo_request *req) {
  return req->sid;
}

const pomelo_msg *pomelo_request_msg(const pomelo_request *req) {
  return &req->msg;
}

const pomelo_json_value *pomelo_request_json(pomelo_request *req) {
  if (!req->parsed) {
    req->parsed = 1;
    if (pm_server_is_binary(req->srv, req->msg.route, req->msg.route_len)) {
      return NULL;
    }
    if (pomelo_json_parse(&req->doc, &req->srv->alloc, (const char *)req->msg.body,
                          req->msg.body_len, NULL, NULL) != 0) {
      req->doc = NULL;
    }
  }
  return req->doc ? pomelo_json_root(req->doc) : NULL;
}

/* A notify's handle belongs to the dispatch that made it: answers do nothing, and the handle
 * is freed when its handler returns. */
static int is_notify(const pomelo_request *req) {
  return req->msg.type != POMELO_MSG_REQUEST;
}

void pomelo_request_drop(pomelo_request *req) {
  if (req && !is_notify(req)) {
    request_free(req);
  }
}

/* Sends response `id` for a request on `route` (NULL: JSON) to a working session, in its
 * format: `body`/`len` JSON text (or bytes on a binary route), or `tree` when body is NULL.
 * Returns 0, a POMELO_ERR_PB_* code (sent with an empty body), or an error after which the
 * session is closed (rather than leave its client waiting). */
static int send_response(pomelo_session *s, uint32_t id, const char *route, const char *body,
                         size_t len, const pomelo_json_value *tree) {
  pomelo_server *srv = s->srv;
  size_t rl = route ? strlen(route) : 0;
  int binary = route && pm_server_is_binary(srv, route, rl);
  const pomelo_pb_type *pb =
      route ? pomelo_protos_find(srv->protos, POMELO_PROTOS_SERVER, route, rl) : NULL;
  pomelo_frame *f;
  pm_out o;
  int rc = pm_out_init(&o, &srv->alloc, POMELO_MSG_RESPONSE, id, NULL, 0, NULL, pb,
                       (const uint8_t *)body, body ? len : 0, tree, binary, srv->set.gzip_min);
  rc = rc ? rc : pm_out_frame(&o, pm_session_response_fmt(s), &f);
  if (rc == 0) {
    rc = pomelo_conn_send_frame(s->conn, f);
  }
  if (rc == 0) {
    srv->stats.responses++;
    if (o.pb_error) {
      srv->stats.encode_errors++;
      rc = o.pb_error;
    }
  }
  pm_out_fini(&o);
  return pm_session_fail(s, rc);
}

/* Sends the final body of a request (or hands it to the backend reply) and frees it. */
static int deliver_answer(pomelo_request *req, const char *body, size_t len,
                          const pomelo_json_value *tree) {
  pomelo_server *srv = req->srv;
  pomelo_json_writer *w = NULL;
  int rc = 0;
  if (req->reply) {
    if (!body) {
      rc = pomelo_json_writer_new(&w, &srv->alloc, 0);
      rc = rc ? rc : pomelo_json_write_value(w, tree);
      if (rc) {
        pomelo_json_writer_del(w);
        request_free(req);
        return rc;
      }
      body = pomelo_json_writer_data(w, &len);
    }
    {
      void (*reply)(const char *, size_t, void *) = req->reply;
      req->reply = NULL; /* answered: request_free must not report a drop */
      reply(body, len, req->reply_arg);
    }
    pomelo_json_writer_del(w);
  } else {
    pomelo_session *s = pomelo_server_session(srv, req->sid);
    if (!s || pomelo_conn_get_state(s->conn) != POMELO_CONN_WORKING) {
      rc = POMELO_ERR_CLOSED;
    } else {
      rc = send_response(s, req->msg.id, req->msg.route, body, len, tree);
    }
  }
  request_free(req);
  return rc;
}

/* A request that cannot be answered for lack of memory: its session is closed, the handle
 * freed. */
static int answer_failed(pomelo_request *req, int rc) {
  pomelo_session *s = req->reply ? NULL : pomelo_server_session(req->srv, req->sid);
  if (s) {
    pm_session_fail(s, rc);
  }
  request_free(req);
  return rc;
}

/* The error body: what on_error wrote, else `body`, with "code":500 appended to an object that
 * has no "code" (as the real server's resp.code = 500); anything unusable gives {"code":500}.
 * Leaves the text in `out`. */
static int error_body(pomelo_request *req, int err, const char *body, size_t len,
                      pomelo_json_writer *out) {
  pomelo_server *srv = req->srv;
  pomelo_json_doc *doc = NULL;
  const pomelo_json_value *root;
  const char *text = body;
  size_t tlen = len, i;
  int rc;
  if (srv->cb.on_error) {
    srv->cb.on_error(srv, req, err, out, srv->user_data);
    if (pomelo_json_writer_complete(out)) {
      text = pomelo_json_writer_data(out, &tlen);
    }
  }
  rc = text && tlen ? pomelo_json_parse(&doc, &srv->alloc, text, tlen, NULL, NULL)
                    : POMELO_ERR_JSON_SYNTAX;
  if (rc == POMELO_ERR_NOMEM) {
    return rc;
  }
  root = rc == 0 ? pomelo_json_root(doc) : NULL;
  pomelo_json_writer_reset(out);
  rc = pomelo_json_write_begin_object(out);
  if (root && pomelo_json_typeof(root) == POMELO_JSON_OBJECT) {
    for (i = 0; !rc && i < pomelo_json_len(root); i++) {
      size_t kl;
      const char *k = pomelo_json_key_at(root, i, &kl);
      rc = pomelo_json_write_key(out, k, kl);
      rc = rc ? rc : pomelo_json_write_value(out, pomelo_json_at(root, i));
    }
  }
  if (!rc && !(root && pomelo_json_get(root, "code"))) {
    rc = pomelo_json_write_key(out, "code", 4);
    rc = rc ? rc : pomelo_json_write_int64(out, 500);
  }
  rc = rc ? rc : pomelo_json_write_end_object(out);
  pomelo_json_doc_del(doc);
  return rc;
}

/* Runs the after-filters (global, then the route's); returns the first error one returns. */
static int run_after(pomelo_request *req, int err, const char *body, size_t len) {
  const pm_filters *lists[2];
  int i, first = 0;
  uint32_t j;
  lists[0] = &req->srv->after;
  lists[1] = req->route ? &req->route->after : NULL;
  for (i = 0; i < 2; i++) {
    for (j = 0; lists[i] && j < lists[i]->n; j++) {
      pomelo_after_fn fn = (pomelo_after_fn)lists[i]->v[j].fn;
      int rc = fn(req, first ? first : err, (const uint8_t *)body, len, lists[i]->v[j].ud);
      if (rc && !err && !first) {
        first = rc;
      }
    }
  }
  return first;
}

/* Answers a request as error `err` (never 0) and frees it. */
static int answer_error(pomelo_request *req, int err, const char *body, size_t len,
                        int run_filters) {
  pomelo_json_writer *w;
  const char *text;
  size_t tlen;
  int rc = pomelo_json_writer_new(&w, &req->srv->alloc, 0);
  if (rc) {
    return answer_failed(req, rc);
  }
  rc = error_body(req, err, body, len, w);
  if (rc) {
    pomelo_json_writer_del(w);
    return answer_failed(req, rc);
  }
  text = pomelo_json_writer_data(w, &tlen);
  if (run_filters) {
    run_after(req, err, text, tlen);
  }
  rc = deliver_answer(req, text, tlen, NULL);
  pomelo_json_writer_del(w);
  return rc;
}

int pomelo_request_respond(pomelo_request *req, const char *body, size_t len) {
  int err;
  if (!req || (!body && len)) {
    return POMELO_ERR_INVALID_ARG;
  }
  if (is_notify(req)) {
    return 0;
  }
  if (!body || len == 0) {
    body = "{}";
    len = 2;
  }
  err = run_after(req, 0, body, len);
  if (err) {
    return answer_error(req, err, NULL, 0, 0);
  }
  return deliver_answer(req, body, len, NULL);
}

int pomelo_request_respond_value(pomelo_request *req, const pomelo_json_value *value) {
  pomelo_json_writer *w;
  const char *text;
  size_t len;
  int rc, err;
  if (!req) {
    return POMELO_ERR_INVALID_ARG;
  }
  if (is_notify(req)) {
    return 0;
  }
  if (!value) {
    return pomelo_request_respond(req, NULL, 0);
  }
  if (req->srv->after.n == 0 && (!req->route || req->route->after.n == 0)) {
    return deliver_answer(req, NULL, 0, value); /* no filter to show the text to */
  }
  rc = pomelo_json_writer_new(&w, &req->srv->alloc, 0);
  rc = rc ? rc : pomelo_json_write_value(w, value);
  if (rc) {
    pomelo_json_writer_del(w);
    return answer_failed(req, rc);
  }
  text = pomelo_json_writer_data(w, &len);
  err = run_after(req, 0, text, len);
  rc = err ? answer_error(req, err, NULL, 0, 0) : deliver_answer(req, NULL, 0, value);
  pomelo_json_writer_del(w);
  return rc;
}

int pomelo_request_error(pomelo_request *req, int err, const char *body, size_t len) {
  if (!req || (!body && len) || err == 0) {
    return POMELO_ERR_INVALID_ARG;
  }
  if (is_notify(req)) {
    return 0;
  }
  return answer_error(req, err, body, len, 1);
}

int pomelo_server_respond(pomelo_server *srv, uint64_t sid, uint32_t id, const char *route,
                          const char *body, size_t len) {
  pomelo_session *s = pomelo_server_session(srv, sid);
  if (!s) {
    return POMELO_ERR_NOT_FOUND;
  }
  if (!body && len) {
    return POMELO_ERR_INVALID_ARG;
  }
  if (!s->conn || pomelo_conn_get_state(s->conn) != POMELO_CONN_WORKING) {
    return POMELO_ERR_STATE;
  }
  return send_response(s, id, route, body, len, NULL);
}

/* ---------------------------------------------------------------------------------------------
 * Dispatch
 * ------------------------------------------------------------------------------------------- */

/* Token bucket: returns 1 when the message may pass. */
static int rate_ok(pomelo_session *s) {
  pomelo_server *srv = s->srv;
  int64_t burst = (int64_t)(srv->set.rate_burst ? srv->set.rate_burst : srv->set.rate_limit) * 1000;
  uint64_t now = srv->now;
  if (!srv->set.rate_limit) {
    return 1;
  }
  if (now > s->tokens_at) {
    uint64_t add = (now - s->tokens_at) * srv->set.rate_limit; /* ms x per-second = milli */
    s->tokens = add >= (uint64_t)burst ? burst : PM_MIN(burst, s->tokens + (int64_t)add);
    s->tokens_at = now;
  }
  if (s->tokens < 1000) {
    return 0;
  }
  s->tokens -= 1000;
  return 1;
}

/* Where a dispatched message's answer goes: to the session's client, or to a backend reply. */
typedef struct dispatch_to {
  void (*reply)(const char *body, size_t len, void *arg);
  void *arg;
  int owned;  /* set when a request took over the (imported) session */
  int remote; /* a remote call (pomelo_cluster_call): the remote routes, no filters */
} dispatch_to;

/* Makes the request handle of `m` for `route` (NULL: none); it takes over an imported session. */
static int make_request(pomelo_session *s, const pomelo_msg *m, pm_route *route, dispatch_to *to,
                        pomelo_request **out) {
  pomelo_request *req = request_new(s->srv, s, m, route);
  if (!req) {
    return POMELO_ERR_NOMEM; /* the imported session stays the caller's */
  }
  req->reply = to->reply;
  req->reply_arg = to->arg;
  to->owned = req->imported != NULL;
  *out = req;
  return 0;
}

/* A message nothing can route: a request gets the real server's {"code":500} through the error
 * path (`err` tells on_error why); a notify is dropped. */
static int refuse(pomelo_session *s, const pomelo_msg *m, int err, dispatch_to *to) {
  pomelo_request *req;
  int rc;
  if (m->type != POMELO_MSG_REQUEST) {
    s->srv->stats.dropped_messages++;
    return 0;
  }
  rc = make_request(s, m, NULL, to, &req);
  return rc ? rc : answer_error(req, err, NULL, 0, 1);
}

static int forward(pomelo_session *s, const pomelo_msg *m) {
  pomelo_server *srv = s->srv;
  size_t len = 0;
  char *json;
  int rc;
  if (!srv->cb.on_forward) {
    /* The cluster carries the session's fields in its own envelope: no JSON export. */
    srv->stats.forwarded++;
    return pm_cluster_forward(srv->cluster, s, m);
  }
  rc = pomelo_session_export(s, NULL, 0, &len);
  if (rc != POMELO_ERR_BUFFER_TOO_SMALL) {
    return rc;
  }
  json = pm_malloc(&srv->alloc, len + 1);
  if (!json) {
    return POMELO_ERR_NOMEM;
  }
  rc = pomelo_session_export(s, json, len, &len);
  if (rc == 0) {
    json[len] = 0;
    srv->stats.forwarded++;
    srv->cb.on_forward(srv, s, json, len, m, srv->user_data);
  }
  pm_free(&srv->alloc, json);
  return rc;
}

/* Runs the before-filters, then the handler. A notify's handle is freed here once the handler
 * returns; a request's lives until it is answered. */
static int run_handler(pomelo_session *s, const pomelo_msg *m, pm_route *route, dispatch_to *to) {
  pomelo_server *srv = s->srv;
  const pm_filters *lists[2];
  pomelo_request *req;
  uint32_t j;
  int i, rc = make_request(s, m, route, to, &req);
  if (rc) {
    return rc;
  }
  lists[0] = &srv->before;
  lists[1] = &route->before;
  for (i = to->remote ? 2 : 0; i < 2; i++) {
    for (j = 0; j < lists[i]->n; j++) {
      pomelo_before_fn fn = (pomelo_before_fn)lists[i]->v[j].fn;
      int err = fn(req, lists[i]->v[j].ud);
      if (err) {
        if (m->type == POMELO_MSG_REQUEST) {
          return answer_error(req, err, NULL, 0, 1);
        }
        srv->stats.dropped_messages++;
        request_free(req);
        return 0;
      }
    }
  }
  route->fn(req, route->ud);
  if (m->type != POMELO_MSG_REQUEST) {
    request_free(req);
  }
  return 0;
}

/* Routes one message for session `s` (a connected session, or an imported one with a reply).
 * Returns 0 or a fatal error. */
static int route_msg(pomelo_session *s, const pomelo_msg *m, dispatch_to *to) {
  pomelo_server *srv = s->srv;
  size_t type_len, method_off;
  int dots, err;
  pm_strmap_ent *e;
  pm_route *route;

  if (!split_route(m->route, m->route_len, &type_len, &method_off, &dots)) {
    if (dots == 0) {
      srv->stats.dropped_messages++;
      return 0;
    }
    err = POMELO_ERR_ROUTE; /* 2 or 4+ parts: {"code":500} */
  } else if (m->route_len - method_off == 11 &&
             memcmp(m->route + method_off, "constructor", 11) == 0) {
    /* The 2019 guard of the real server: a method named "constructor" is an attack. */
    if (s->conn) {
      pomelo_session_kick(s, "attack");
      return 0;
    }
    err = POMELO_ERR_ROUTE;
  } else if (type_len != srv->type_len || memcmp(m->route, srv->server_type, type_len) != 0) {
    if (s->conn && (srv->cb.on_forward || srv->cluster)) {
      return forward(s, m);
    }
    err = POMELO_ERR_ROUTE_TYPE;
  } else {
    e = pm_strmap_get(to->remote ? &srv->remotes : &srv->routes, m->route, m->route_len);
    route = e ? e->val : NULL;
    if (route && route->fn) {
      return run_handler(s, m, route, to);
    }
    err = POMELO_ERR_NO_HANDLER;
  }
  if (srv->fallback && srv->fallback->fn && !to->remote) {
    return run_handler(s, m, srv->fallback, to);
  }
  return refuse(s, m, err, to);
}

int pm_server_refuse(pomelo_session *s, const pomelo_msg *m, int err) {
  dispatch_to to;
  if (m->type == POMELO_MSG_REQUEST) {
    s->srv->stats.requests++;
  } else {
    s->srv->stats.notifies++;
  }
  memset(&to, 0, sizeof to);
  return refuse(s, m, err, &to);
}

int pm_server_dispatch_msg(pomelo_session *s, const pomelo_msg *m) {
  pomelo_server *srv = s->srv;
  dispatch_to to;
  if (m->type == POMELO_MSG_REQUEST) {
    srv->stats.requests++;
  } else if (m->type == POMELO_MSG_NOTIFY) {
    srv->stats.notifies++;
  } else {
    srv->stats.dropped_messages++; /* a client does not send responses or pushes */
    return 0;
  }
  if (!rate_ok(s)) {
    srv->stats.rate_limited++;
    if (srv->set.rate_policy == POMELO_RATE_KICK) {
      pomelo_session_kick(s, "rate limit");
    }
    return 0;
  }
  memset(&to, 0, sizeof to);
  return route_msg(s, m, &to);
}

/* The message as handlers see it: the string route, the body as JSON text in UTF-8 (or the
 * bytes of a binary route). Spec 2.5: an unknown route code is dropped with no answer. */
int pm_server_receive(pomelo_session *s, const pomelo_msg *m) {
  pomelo_server *srv = s->srv;
  char rbuf[POMELO_MSG_ROUTE_MAX + 1];
  pomelo_json_writer *w = srv->scratch, *own = NULL;
  const pomelo_pb_type *pb = NULL;
  pomelo_msg in = *m;
  pm_bytes body;
  int rc, binary;
  if (m->type != POMELO_MSG_REQUEST && m->type != POMELO_MSG_NOTIFY) {
    return pm_server_dispatch_msg(s, m);
  }
  if (pm_in_route(srv->dict, m, rbuf, &in.route, &in.route_len) != 0) {
    if (m->type == POMELO_MSG_REQUEST) {
      srv->stats.requests++;
    } else {
      srv->stats.notifies++;
    }
    srv->stats.dropped_messages++;
    return 0;
  }
  in.route_compressed = 0;
  in.route_code = 0;
  binary = pm_server_is_binary(srv, in.route, in.route_len);
  if (!binary && (s->format & POMELO_FORMAT_PROTOBUF)) {
    pb = pomelo_protos_find(srv->protos, POMELO_PROTOS_CLIENT, in.route, in.route_len);
  }
  if (pb && srv->scratch_busy) {
    rc = pomelo_json_writer_new(&own, &srv->alloc, 0); /* a feed from inside a handler */
    if (rc) {
      return rc;
    }
    w = own;
  }
  srv->scratch_busy += w == srv->scratch;
  rc = pm_in_body(&srv->alloc, w, m, pb, binary, srv->set.conn.max_body, &body, NULL);
  if (rc == 0) {
    in.body = body.p;
    in.body_len = body.len;
    in.gzip = 0;
    rc = pm_server_dispatch_msg(s, &in);
    pm_bytes_fini(&body, &srv->alloc);
  } else if (rc == POMELO_ERR_GZIP_TOO_LARGE) {
    srv->stats.gzip_bombs++;
    srv->stats.too_large++;
    pm_conn_close_too_large(s->conn); /* as a package over max_body */
    rc = 0;
  } else if (!pomelo_err_is_fatal(rc)) {
    /* Undecodable (bad protobuf, bad stream, no zlib): counted; a request is answered
     * {"code":500} through on_error, which learns why. */
    srv->stats.decode_errors++;
    in.body = NULL;
    in.body_len = 0;
    in.gzip = 0;
    rc = pm_server_refuse(s, &in, rc);
  }
  srv->scratch_busy -= w == srv->scratch;
  pomelo_json_writer_del(own);
  return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Backend dispatch of forwarded messages
 * ------------------------------------------------------------------------------------------- */

static int import_session(pomelo_server *srv, const char *json, size_t len, int remote,
                          pomelo_session **out) {
  pomelo_json_doc *doc = NULL;
  const pomelo_json_value *root, *v, *settings;
  pomelo_session *s;
  int64_t id;
  size_t i;
  int rc = pomelo_json_parse(&doc, &srv->alloc, json, len, NULL, NULL);
  if (rc) {
    return rc;
  }
  root = pomelo_json_root(doc);
  v = pomelo_json_get(root, "id");
  if (pomelo_json_typeof(root) != POMELO_JSON_OBJECT || pomelo_json_int64(v, &id) != 0 ||
      id < (remote ? 0 : 1)) {
    pomelo_json_doc_del(doc);
    return POMELO_ERR_INVALID_ARG;
  }
  s = pm_calloc(&srv->alloc, sizeof(*s));
  if (!s) {
    pomelo_json_doc_del(doc);
    return POMELO_ERR_NOMEM;
  }
  s->srv = srv;
  s->sid = (uint64_t)id;
  s->imported = 1;
  s->heap_idx = PM_NO_HEAP;
  s->flush_at = PM_NO_DEADLINE;
  v = pomelo_json_get(root, "frontendId");
  if (pomelo_json_typeof(v) == POMELO_JSON_STRING) {
    size_t fl;
    const char *f = pomelo_json_string(v, &fl);
    s->frontend_id = pm_malloc(&srv->alloc, fl + 1);
    if (!s->frontend_id) {
      rc = POMELO_ERR_NOMEM;
    } else {
      memcpy(s->frontend_id, f, fl + 1);
    }
  }
  v = pomelo_json_get(root, "uid");
  if (rc == 0 && pomelo_json_typeof(v) == POMELO_JSON_STRING) {
    size_t ul;
    const char *u = pomelo_json_string(v, &ul);
    s->uid = pm_malloc(&srv->alloc, ul + 1);
    if (!s->uid) {
      rc = POMELO_ERR_NOMEM;
    } else {
      memcpy(s->uid, u, ul + 1);
      s->uid_len = ul;
    }
  }
  settings = pomelo_json_get(root, "settings");
  for (i = 0; rc == 0 && i < pomelo_json_len(settings); i++) {
    size_t kl, vl;
    const char *k = pomelo_json_key_at(settings, i, &kl);
    const pomelo_json_value *sv = pomelo_json_at(settings, i);
    if (pomelo_json_typeof(sv) == POMELO_JSON_STRING) {
      const char *str = pomelo_json_string(sv, &vl);
      rc = pomelo_session_set(s, k, kl, str, vl);
    } else {
      /* Non-string values (the real server allows any) are kept as their JSON text. */
      pomelo_json_writer *w;
      rc = pomelo_json_writer_new(&w, &srv->alloc, 0);
      if (rc == 0) {
        const char *text;
        rc = pomelo_json_write_value(w, sv);
        text = pomelo_json_writer_data(w, &vl);
        rc = rc ? rc : pomelo_session_set(s, k, kl, text, vl);
        pomelo_json_writer_del(w);
      }
    }
  }
  pomelo_json_doc_del(doc);
  if (rc) {
    pm_session_free_imported(s);
    return rc;
  }
  *out = s;
  return 0;
}

int pomelo_server_dispatch(pomelo_server *srv, const char *session_json, size_t session_json_len,
                           const pomelo_msg *msg,
                           void (*reply)(const char *body, size_t len, void *arg), void *arg) {
  return pm_server_dispatch_ex(srv, session_json, session_json_len, msg, reply, arg, 0);
}

int pm_server_dispatch_ex(pomelo_server *srv, const char *session_json, size_t session_json_len,
                          const pomelo_msg *msg,
                          void (*reply)(const char *body, size_t len, void *arg), void *arg,
                          int remote) {
  pomelo_session *s;
  dispatch_to to;
  int rc;
  if (!session_json || !msg || !reply ||
      (msg->type != POMELO_MSG_REQUEST && msg->type != POMELO_MSG_NOTIFY) ||
      msg->route_compressed) {
    return POMELO_ERR_INVALID_ARG;
  }
  rc = import_session(srv, session_json, session_json_len, remote, &s);
  if (rc) {
    return rc;
  }
  if (msg->type == POMELO_MSG_REQUEST) {
    srv->stats.requests++;
  } else {
    srv->stats.notifies++;
  }
  to.reply = reply;
  to.arg = arg;
  to.owned = 0;
  to.remote = remote;
  rc = route_msg(s, msg, &to);
  if (!to.owned) {
    pm_session_free_imported(s); /* no request took it over */
  }
  return rc;
}
