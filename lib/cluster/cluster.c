/* The cluster: the server table, the router, forwards and calls in flight, session operations,
 * discovery, and the bus's two ends (include/pomelo/cluster.h, docs/cluster.md).
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>

#include "cluster/cluster_int.h"
#include "server/server_int.h"

#define NO_HEAP UINT32_MAX
#define SUBJECT_MAX 512 /* prefix (128 at most) + type + id + the longest suffix */
#define PREFIX_MAX 128
#define REASON_MAX 256

/* A server of the table (heap object: flights and sticky routes point at it). */
typedef struct pm_peer {
  char *id, *type, *hostname, *client_host, *instance;
  uint16_t client_port;
  int frontend;
  uint32_t sessions;
  int is_static, self;
  uint64_t last_seen, ttl_ms;
  struct pm_flight *flights; /* in flight to it */
  uint32_t in_flight;
} pm_peer;

/* One server type: its servers in id order and its router. */
typedef struct pm_type {
  pm_peer **v;
  size_t n, cap;
  pomelo_route_mode mode;
  char *key; /* POMELO_ROUTE_HASH's session setting, or NULL (the uid) */
  size_t key_len;
  pomelo_router_fn fn;
  void *ud;
  uint64_t rr;
  pm_idmap sticky; /* sid -> pm_peer (POMELO_ROUTE_STICKY) */
} pm_type;

/* A forward or call awaiting its answer. */
typedef struct pm_flight {
  uint64_t corr;
  uint64_t deadline;
  uint32_t heap_idx;
  pm_peer *peer;
  struct pm_flight *pnext, *pprev;
  int forward;
  uint64_t sid; /* a forward's client session (0 for a call) */
  uint32_t msg_id;
  pomelo_cluster_done_fn done;
  void *arg;
  char route[]; /* a forward's route (it picks the response's proto) */
} pm_flight;

/* A request this server runs for another (its answer goes to `reply`). */
typedef struct pm_serving {
  pomelo_cluster *c;      /* NULL once the cluster is gone */
  pomelo_allocator alloc; /* frees it then */
  struct pm_serving *next, *prev;
  char reply[]; /* the reply subject */
} pm_serving;

enum { S_SELF, S_PUSH, S_BCAST, S_KICK, S_BIND, S_ANNOUNCE, S_BYE, S_QUERY, S_INBOX, S_COUNT };

struct pomelo_cluster {
  pomelo_allocator alloc;
  pomelo_server *srv;
  pomelo_cluster_settings set;
  char *prefix, *hostname, *client_host; /* owned copies of the settings' strings */
  pomelo_cluster_callbacks cb;
  void *user_data;
  pomelo_cluster_publish_fn publish;
  void *bus;
  int bus_up;
  char *subj[S_COUNT]; /* S_INBOX: "P/inbox/<id>.*" */
  size_t inbox_len;    /* "P/inbox/<id>" */
  char *instance;      /* this run's nonce, announced */
  pm_strmap peers;     /* id -> pm_peer */
  pm_strmap types;     /* type -> pm_type */
  pm_peer *self;
  pm_idmap flights; /* corr -> pm_flight */
  pm_flight **heap;
  uint32_t heap_len, heap_cap;
  pm_idmap per_session; /* sid -> forwards in flight (as a pointer-sized count) */
  uint64_t next_corr;
  uint64_t next_tick, next_announce, last_announce;
  pm_serving *serving;
  pm_strmap channels;
  pomelo_json_writer *w;
  pomelo_cluster_server *views; /* scratch for the router callback */
  size_t nviews;
  pomelo_cluster_stats stats;
  uint64_t now;
};

/* ---------------------------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------------------------- */

static char *dup_str(const pomelo_allocator *a, const char *s, size_t len) {
  char *d = pm_malloc(a, len + 1);
  if (d) {
    memcpy(d, s, len);
    d[len] = 0;
  }
  return d;
}

static int valid_name(const char *s, size_t len) {
  size_t i;
  if (len == 0 || len > POMELO_CLUSTER_NAME_MAX) {
    return 0;
  }
  for (i = 0; i < len; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch <= 0x20 || ch == 0x7f || ch == '.' || ch == '*' || ch == '>' || ch == '/') {
      return 0;
    }
  }
  return 1;
}

static int valid_instance(const char *s) {
  size_t i, n = s ? strlen(s) : 0;
  if (!s) {
    return 1;
  }
  if (n == 0 || n > 32) {
    return 0;
  }
  for (i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
          ch == '_' || ch == '-')) {
      return 0;
    }
  }
  return 1;
}

static int str_is(pm_str s, const char *z) {
  size_t n = strlen(z);
  return s.len == n && memcmp(s.p, z, n) == 0;
}

/* The error code whose pomelo_err_name is `name` (POMELO_ERR_INTERNAL when none). */
static int err_from_name(pm_str name) {
  int code;
  for (code = -1; code > -1000; code--) {
    if (str_is(name, pomelo_err_name(code)) && strcmp(pomelo_err_name(code), "UNKNOWN") != 0) {
      return code;
    }
  }
  return POMELO_ERR_INTERNAL;
}

/* ---------------------------------------------------------------------------------------------
 * Publishing
 * ------------------------------------------------------------------------------------------- */

enum { E_REQUEST, E_RESPONSE, E_BIND, E_PUSH, E_KICK };

static size_t env_write(uint8_t *dst, int kind, const void *env) {
  switch (kind) {
  case E_REQUEST:
    return pm_env_request_write(dst, env);
  case E_RESPONSE:
    return pm_env_response_write(dst, env);
  case E_BIND:
    return pm_env_bind_write(dst, env);
  case E_PUSH:
    return pm_env_push_write(dst, env);
  default:
    return pm_env_kick_write(dst, env);
  }
}

/* Encodes `env` into a frame and publishes it. Returns 0, POMELO_ERR_BUS_DOWN,
 * POMELO_ERR_PAYLOAD (both counted), POMELO_ERR_NOMEM, or the bus's error (counted). */
static int publish(pomelo_cluster *c, const char *subject, const char *reply, int kind,
                   const void *env) {
  size_t len = env_write(NULL, kind, env);
  pomelo_frame *f;
  uint8_t *data;
  int rc;
  if (!c->bus_up || !c->publish) {
    return POMELO_ERR_BUS_DOWN;
  }
  if (len > c->set.max_payload) {
    c->stats.too_large++;
    return POMELO_ERR_PAYLOAD;
  }
  rc = pm_frame_alloc(&f, &c->alloc, 0, len, &data);
  if (rc) {
    return rc;
  }
  env_write(data, kind, env);
  rc = c->publish(c->bus, subject, reply, pomelo_frame_data(f), len);
  pomelo_frame_unref(f);
  if (rc) {
    c->stats.publish_errors++;
    if (rc == POMELO_ERR_PAYLOAD) {
      c->stats.too_large++;
    }
  }
  return rc;
}

/* "P/servers/<type>/<id><suffix>" into buf. */
static void server_subject(const pomelo_cluster *c, char *buf, const char *type, const char *id,
                           const char *suffix) {
  snprintf(buf, SUBJECT_MAX, "%s/servers/%s/%s%s", c->prefix, type, id, suffix);
}

/* Publishes the answer `data` (or an error `err` != 0) to a reply subject. */
static void answer(pomelo_cluster *c, const char *reply, const char *data, size_t len, int err) {
  pm_env_response r;
  memset(&r, 0, sizeof r);
  if (!reply || !*reply) {
    return;
  }
  if (err) {
    r.has_error = 1;
    r.code.p = pomelo_err_name(err);
    r.code.len = strlen(r.code.p);
    r.msg.p = pomelo_strerror(err);
    r.msg.len = strlen(r.msg.p);
  } else {
    r.data.p = data;
    r.data.len = len;
  }
  if (publish(c, reply, NULL, E_RESPONSE, &r) == POMELO_ERR_PAYLOAD && !err) {
    answer(c, reply, NULL, 0, POMELO_ERR_PAYLOAD); /* too large: the caller fails at once */
  }
}

/* ---------------------------------------------------------------------------------------------
 * The table
 * ------------------------------------------------------------------------------------------- */

static pm_type *type_get(const pomelo_cluster *c, const char *type, size_t len) {
  pm_strmap_ent *e = pm_strmap_get(&c->types, type, len);
  return e ? e->val : NULL;
}

static pm_type *type_upsert(pomelo_cluster *c, const char *type, size_t len) {
  pm_strmap_ent *e = pm_strmap_get(&c->types, type, len);
  pm_type *t;
  if (e) {
    return e->val;
  }
  t = pm_calloc(&c->alloc, sizeof(*t));
  if (!t) {
    return NULL;
  }
  pm_idmap_init(&t->sticky);
  e = pm_strmap_upsert(&c->types, &c->alloc, type, len);
  if (!e) {
    pm_free(&c->alloc, t);
    return NULL;
  }
  e->val = t;
  return t;
}

static void type_free(pomelo_cluster *c, pm_type *t) {
  pm_idmap_fini(&t->sticky, &c->alloc);
  pm_free(&c->alloc, t->v);
  pm_free(&c->alloc, t->key);
  pm_free(&c->alloc, t);
}

static void view_of(const pm_peer *p, pomelo_cluster_server *v) {
  v->id = p->id;
  v->type = p->type;
  v->hostname = p->hostname;
  v->client_host = p->client_host;
  v->client_port = p->client_port;
  v->frontend = p->frontend;
  v->sessions = p->sessions;
  v->is_static = p->is_static;
  v->self = p->self;
}

static void peer_free(pomelo_cluster *c, pm_peer *p) {
  pm_free(&c->alloc, p->id);
  pm_free(&c->alloc, p->type);
  pm_free(&c->alloc, p->hostname);
  pm_free(&c->alloc, p->client_host);
  pm_free(&c->alloc, p->instance);
  pm_free(&c->alloc, p);
}

/* A new peer (not yet in the table). */
static pm_peer *peer_new(pomelo_cluster *c, const char *id, size_t idl, const char *type,
                         size_t tl) {
  pm_peer *p = pm_calloc(&c->alloc, sizeof(*p));
  if (!p) {
    return NULL;
  }
  p->id = dup_str(&c->alloc, id, idl);
  p->type = dup_str(&c->alloc, type, tl);
  p->hostname = dup_str(&c->alloc, "", 0);
  p->client_host = dup_str(&c->alloc, "", 0);
  p->instance = dup_str(&c->alloc, "", 0);
  if (!p->id || !p->type || !p->hostname || !p->client_host || !p->instance) {
    peer_free(c, p);
    return NULL;
  }
  return p;
}

/* Replaces *dst with a copy of (s, len). Returns 0 or POMELO_ERR_NOMEM (unchanged). */
static int set_str(pomelo_cluster *c, char **dst, const char *s, size_t len) {
  char *d;
  if (strlen(*dst) == len && memcmp(*dst, s, len) == 0) {
    return 0;
  }
  d = dup_str(&c->alloc, s, len);
  if (!d) {
    return POMELO_ERR_NOMEM;
  }
  pm_free(&c->alloc, *dst);
  *dst = d;
  return 0;
}

/* Adds `p` to the table and to its type's list, in id order. */
static int peer_insert(pomelo_cluster *c, pm_peer *p) {
  size_t idl = strlen(p->id), i;
  pm_type *t = type_upsert(c, p->type, strlen(p->type));
  pm_strmap_ent *e;
  if (!t) {
    return POMELO_ERR_NOMEM;
  }
  if (t->n == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 4;
    pm_peer **v = pm_realloc(&c->alloc, t->v, cap * sizeof(*v));
    if (!v) {
      return POMELO_ERR_NOMEM;
    }
    t->v = v;
    t->cap = cap;
  }
  e = pm_strmap_upsert(&c->peers, &c->alloc, p->id, idl);
  if (!e) {
    return POMELO_ERR_NOMEM;
  }
  e->val = p;
  for (i = t->n; i > 0 && strcmp(t->v[i - 1]->id, p->id) > 0; i--) {
    t->v[i] = t->v[i - 1];
  }
  t->v[i] = p;
  t->n++;
  c->stats.servers++;
  return 0;
}

static pm_peer *peer_get(const pomelo_cluster *c, const char *id, size_t len) {
  pm_strmap_ent *e = pm_strmap_get(&c->peers, id, len);
  return e ? e->val : NULL;
}

static void flight_fail(pomelo_cluster *c, pm_flight *f, int rc);

/* Removes `p` from the table: its flights fail with `why`, its channel members go, its sticky
 * sessions forget it, on_server LEAVE runs; then it is freed. */
static void peer_remove(pomelo_cluster *c, pm_peer *p, int why) {
  pm_type *t = type_get(c, p->type, strlen(p->type));
  pomelo_cluster_server v;
  size_t i;
  uint32_t k;
  pm_strmap_del(&c->peers, &c->alloc, p->id, strlen(p->id));
  if (t) {
    for (i = 0; i < t->n && t->v[i] != p; i++) {
    }
    if (i < t->n) {
      memmove(t->v + i, t->v + i + 1, (t->n - i - 1) * sizeof(*t->v));
      t->n--;
    }
    for (k = 0; k < t->sticky.cap; k++) {
      if (t->sticky.slots && t->sticky.slots[k].key && t->sticky.slots[k].val == p) {
        t->sticky.slots[k].val = NULL; /* chosen again on the next message */
      }
    }
  }
  c->stats.servers--;
  c->stats.leaves++;
  while (p->flights) {
    flight_fail(c, p->flights, why);
  }
  if (p->frontend) {
    pm_cluster_channels_drop_frontend(c, p->id);
  }
  if (c->cb.on_server) {
    view_of(p, &v);
    c->cb.on_server(c, &v, POMELO_CLUSTER_LEAVE, c->user_data);
  }
  peer_free(c, p);
}

static void peer_joined(pomelo_cluster *c, pm_peer *p) {
  pomelo_cluster_server v;
  c->stats.joins++;
  if (c->cb.on_server) {
    view_of(p, &v);
    c->cb.on_server(c, &v, POMELO_CLUSTER_JOIN, c->user_data);
  }
}

int pomelo_cluster_add_server(pomelo_cluster *c, const pomelo_cluster_server *rec) {
  pm_peer *p, *old;
  size_t idl, tl;
  int rc;
  if (!c || !rec || !rec->id || !rec->type) {
    return POMELO_ERR_INVALID_ARG;
  }
  idl = strlen(rec->id);
  tl = strlen(rec->type);
  if (!valid_name(rec->id, idl) || !valid_name(rec->type, tl) ||
      strcmp(rec->id, c->self->id) == 0) {
    return POMELO_ERR_INVALID_ARG;
  }
  p = peer_new(c, rec->id, idl, rec->type, tl);
  if (!p) {
    return POMELO_ERR_NOMEM;
  }
  rc = set_str(c, &p->hostname, rec->hostname ? rec->hostname : "",
               rec->hostname ? strlen(rec->hostname) : 0);
  rc = rc ? rc
          : set_str(c, &p->client_host, rec->client_host ? rec->client_host : "",
                    rec->client_host ? strlen(rec->client_host) : 0);
  if (rc) {
    peer_free(c, p);
    return rc;
  }
  p->client_port = rec->client_port;
  p->frontend = rec->frontend != 0;
  p->sessions = rec->sessions;
  p->is_static = 1;
  old = peer_get(c, rec->id, idl);
  if (old) {
    peer_remove(c, old, POMELO_ERR_SERVER_LEFT);
  }
  rc = peer_insert(c, p);
  if (rc) {
    peer_free(c, p);
    return rc;
  }
  peer_joined(c, p);
  return 0;
}

int pomelo_cluster_remove_server(pomelo_cluster *c, const char *id) {
  pm_peer *p = id ? peer_get(c, id, strlen(id)) : NULL;
  if (!p || p->self) {
    return POMELO_ERR_NOT_FOUND;
  }
  peer_remove(c, p, POMELO_ERR_SERVER_LEFT);
  return 0;
}

size_t pomelo_cluster_servers(const pomelo_cluster *c, const char *type, pomelo_cluster_server *out,
                              size_t max) {
  size_t n = 0, i;
  uint32_t k;
  if (type) {
    pm_type *t = type_get(c, type, strlen(type));
    for (i = 0; t && i < t->n; i++) {
      if (n < max) {
        view_of(t->v[i], &out[n]);
      }
      n++;
    }
    return n;
  }
  for (k = 0; k < c->types.cap; k++) {
    pm_strmap_ent *e = pm_strmap_slot(&c->types, k);
    pm_type *t = e ? e->val : NULL;
    for (i = 0; t && i < t->n; i++) {
      if (n < max) {
        view_of(t->v[i], &out[n]);
      }
      n++;
    }
  }
  return n;
}

int pomelo_cluster_find(const pomelo_cluster *c, const char *id, pomelo_cluster_server *out) {
  pm_peer *p = id ? peer_get(c, id, strlen(id)) : NULL;
  if (!p) {
    return POMELO_ERR_NOT_FOUND;
  }
  if (out) {
    view_of(p, out);
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Discovery: P/sd/announce, bye, query
 * ------------------------------------------------------------------------------------------- */

/* This server's record:
 * {"id","type","frontend","hostname","metadata":{"clientHost","clientPort","sessions","ttlMs",
 *  "instance"}} (pitaya's etcd value shape). */
static int write_record(pomelo_cluster *c) {
  pomelo_json_writer *w = c->w;
  const pm_peer *p = c->self;
  int rc;
  pomelo_json_writer_reset(w);
  rc = pomelo_json_write_begin_object(w);
  rc = rc ? rc : pomelo_json_write_key(w, "id", 2);
  rc = rc ? rc : pomelo_json_write_string(w, p->id, strlen(p->id));
  rc = rc ? rc : pomelo_json_write_key(w, "type", 4);
  rc = rc ? rc : pomelo_json_write_string(w, p->type, strlen(p->type));
  rc = rc ? rc : pomelo_json_write_key(w, "frontend", 8);
  rc = rc ? rc : pomelo_json_write_bool(w, p->frontend);
  rc = rc ? rc : pomelo_json_write_key(w, "hostname", 8);
  rc = rc ? rc : pomelo_json_write_string(w, c->hostname, strlen(c->hostname));
  rc = rc ? rc : pomelo_json_write_key(w, "metadata", 8);
  rc = rc ? rc : pomelo_json_write_begin_object(w);
  rc = rc ? rc : pomelo_json_write_key(w, "clientHost", 10);
  rc = rc ? rc : pomelo_json_write_string(w, c->client_host, strlen(c->client_host));
  rc = rc ? rc : pomelo_json_write_key(w, "clientPort", 10);
  rc = rc ? rc : pomelo_json_write_int64(w, c->set.client_port);
  rc = rc ? rc : pomelo_json_write_key(w, "sessions", 8);
  rc = rc ? rc : pomelo_json_write_uint64(w, pomelo_server_session_count(c->srv));
  rc = rc ? rc : pomelo_json_write_key(w, "ttlMs", 5);
  rc = rc ? rc : pomelo_json_write_uint64(w, (uint64_t)c->set.announce_ms * 3);
  rc = rc ? rc : pomelo_json_write_key(w, "instance", 8);
  rc = rc ? rc : pomelo_json_write_string(w, c->instance, strlen(c->instance));
  rc = rc ? rc : pomelo_json_write_end_object(w);
  return rc ? rc : pomelo_json_write_end_object(w);
}

/* Publishes raw JSON text (announcements are JSON, not envelopes). */
static int publish_raw(pomelo_cluster *c, const char *subject, const char *data, size_t len) {
  int rc;
  if (!c->bus_up || !c->publish) {
    return POMELO_ERR_BUS_DOWN;
  }
  rc = c->publish(c->bus, subject, NULL, (const uint8_t *)data, len);
  if (rc) {
    c->stats.publish_errors++;
  }
  return rc;
}

static void announce(pomelo_cluster *c, const char *subject) {
  size_t len;
  const char *data;
  if (c->set.announce_ms == 0 || write_record(c) != 0) {
    return;
  }
  data = pomelo_json_writer_data(c->w, &len);
  (void)publish_raw(c, subject, data, len);
  c->last_announce = c->now;
}

static const char *json_str(const pomelo_json_value *v, const char *key, size_t *len) {
  const char *s = pomelo_json_string(pomelo_json_get(v, key), len);
  if (!s) {
    *len = 0;
    return "";
  }
  return s;
}

/* An announcement (bye 0) or a bye (1) of another server. */
static int on_record(pomelo_cluster *c, const uint8_t *data, size_t len, int bye) {
  pomelo_json_doc *doc = NULL;
  const pomelo_json_value *root, *meta;
  size_t idl, tl, hl, chl, il;
  const char *id, *type, *host, *chost, *inst;
  int64_t port = 0, sessions = 0, ttl = 0;
  pm_peer *p;
  int rc = pomelo_json_parse(&doc, &c->alloc, (const char *)data, len, NULL, NULL);
  if (rc) {
    return pomelo_err_is_fatal(rc) ? rc : POMELO_ERR_CLUSTER_ENVELOPE;
  }
  root = pomelo_json_root(doc);
  id = json_str(root, "id", &idl);
  type = json_str(root, "type", &tl);
  if (!valid_name(id, idl) || (!bye && !valid_name(type, tl))) {
    pomelo_json_doc_del(doc);
    return POMELO_ERR_CLUSTER_ENVELOPE;
  }
  if (idl == strlen(c->self->id) && memcmp(id, c->self->id, idl) == 0) {
    pomelo_json_doc_del(doc); /* our own, echoed by the bus */
    return 0;
  }
  p = peer_get(c, id, idl);
  if (bye) {
    pomelo_json_doc_del(doc);
    if (p && !p->is_static) {
      peer_remove(c, p, POMELO_ERR_SERVER_LEFT);
    }
    return 0;
  }
  meta = pomelo_json_get(root, "metadata");
  host = json_str(root, "hostname", &hl);
  chost = json_str(meta, "clientHost", &chl);
  inst = json_str(meta, "instance", &il);
  (void)pomelo_json_int64(pomelo_json_get(meta, "clientPort"), &port);
  (void)pomelo_json_int64(pomelo_json_get(meta, "sessions"), &sessions);
  (void)pomelo_json_int64(pomelo_json_get(meta, "ttlMs"), &ttl);
  if (port < 0 || port > 65535) {
    port = 0;
  }
  if (ttl <= 0 || ttl > 86400000) {
    ttl = 15000; /* pitaya-like default when the record says nothing sensible */
  }
  if (p && !p->is_static &&
      (strcmp(p->type, "") == 0 || strlen(p->type) != tl || memcmp(p->type, type, tl) != 0 ||
       strlen(p->instance) != il || memcmp(p->instance, inst, il) != 0)) {
    /* Another run of the same id (a restart), or another type: the old one has left. */
    peer_remove(c, p, POMELO_ERR_SERVER_LEFT);
    p = NULL;
  }
  if (p && p->is_static) {
    pomelo_json_doc_del(doc);
    return 0; /* the static list wins */
  }
  if (!p) {
    p = peer_new(c, id, idl, type, tl);
    rc = p ? 0 : POMELO_ERR_NOMEM;
    rc = rc ? rc : set_str(c, &p->instance, inst, il);
    rc = rc ? rc : set_str(c, &p->hostname, host, hl);
    rc = rc ? rc : set_str(c, &p->client_host, chost, chl);
    if (rc == 0) {
      p->client_port = (uint16_t)port;
      p->frontend = pomelo_json_bool(pomelo_json_get(root, "frontend"));
      p->sessions = sessions < 0 ? 0 : (uint32_t)PM_MIN(sessions, (int64_t)UINT32_MAX);
      p->ttl_ms = (uint64_t)ttl;
      p->last_seen = c->now;
      rc = peer_insert(c, p);
    }
    pomelo_json_doc_del(doc);
    if (rc) {
      if (p) {
        peer_free(c, p);
      }
      return rc;
    }
    peer_joined(c, p);
    return 0;
  }
  {
    int changed = p->client_port != (uint16_t)port || strlen(p->client_host) != chl ||
                  memcmp(p->client_host, chost, chl) != 0;
    rc = set_str(c, &p->client_host, chost, chl);
    rc = rc ? rc : set_str(c, &p->hostname, host, hl);
    p->client_port = (uint16_t)port;
    p->sessions = sessions < 0 ? 0 : (uint32_t)PM_MIN(sessions, (int64_t)UINT32_MAX);
    p->ttl_ms = (uint64_t)ttl;
    p->last_seen = c->now;
    pomelo_json_doc_del(doc);
    if (changed && rc == 0 && c->cb.on_server) {
      pomelo_cluster_server v;
      view_of(p, &v);
      c->cb.on_server(c, &v, POMELO_CLUSTER_UPDATE, c->user_data);
    }
    return rc;
  }
}

/* ---------------------------------------------------------------------------------------------
 * Flights: forwards and calls awaiting answers, with a deadline heap
 * ------------------------------------------------------------------------------------------- */

static void fheap_set(pomelo_cluster *c, uint32_t i, pm_flight *f) {
  c->heap[i] = f;
  f->heap_idx = i;
}

static void fheap_up(pomelo_cluster *c, uint32_t i) {
  pm_flight *f = c->heap[i];
  while (i > 0) {
    uint32_t p = (i - 1) / 2;
    if (c->heap[p]->deadline <= f->deadline) {
      break;
    }
    fheap_set(c, i, c->heap[p]);
    i = p;
  }
  fheap_set(c, i, f);
}

static void fheap_down(pomelo_cluster *c, uint32_t i) {
  pm_flight *f = c->heap[i];
  for (;;) {
    uint32_t ch = 2 * i + 1;
    if (ch >= c->heap_len) {
      break;
    }
    if (ch + 1 < c->heap_len && c->heap[ch + 1]->deadline < c->heap[ch]->deadline) {
      ch++;
    }
    if (c->heap[ch]->deadline >= f->deadline) {
      break;
    }
    fheap_set(c, i, c->heap[ch]);
    i = ch;
  }
  fheap_set(c, i, f);
}

static void fheap_remove(pomelo_cluster *c, pm_flight *f) {
  uint32_t i = f->heap_idx;
  pm_flight *last;
  if (i == NO_HEAP) {
    return;
  }
  f->heap_idx = NO_HEAP;
  last = c->heap[--c->heap_len];
  if (last != f) {
    fheap_set(c, i, last);
    fheap_up(c, i);
    fheap_down(c, last->heap_idx);
  }
}

static void session_count(pomelo_cluster *c, uint64_t sid, int delta) {
  uintptr_t n = (uintptr_t)pm_idmap_get(&c->per_session, sid);
  if (delta > 0) {
    pm_idmap_put(&c->per_session, sid, (void *)(n + 1)); /* room reserved by the caller */
  } else if (n <= 1) {
    pm_idmap_del(&c->per_session, &c->alloc, sid);
  } else {
    pm_idmap_put(&c->per_session, sid, (void *)(n - 1));
  }
}

/* Takes `f` out of every index (not freed). */
static void flight_unlink(pomelo_cluster *c, pm_flight *f) {
  fheap_remove(c, f);
  pm_idmap_del(&c->flights, &c->alloc, f->corr);
  if (f->pprev) {
    f->pprev->pnext = f->pnext;
  } else if (f->peer) {
    f->peer->flights = f->pnext;
  }
  if (f->pnext) {
    f->pnext->pprev = f->pprev;
  }
  if (f->peer) {
    f->peer->in_flight--;
  }
  if (f->forward && f->sid) {
    session_count(c, f->sid, -1);
  }
  c->stats.in_flight--;
}

/* The client of a forward that failed gets the real server's answer to a failed forward. */
static void forward_failed(pomelo_cluster *c, uint64_t sid, uint32_t id, const char *route) {
  if (c->srv) {
    (void)pomelo_server_respond(c->srv, sid, id, route, "{\"code\":500}", 12);
  }
}

/* Ends a flight without an answer: the client gets {"code":500}, or done gets `rc`. */
static void flight_fail(pomelo_cluster *c, pm_flight *f, int rc) {
  flight_unlink(c, f);
  if (rc == POMELO_ERR_TIMEOUT) {
    c->stats.timeouts++;
  } else {
    c->stats.failed_fast++;
  }
  if (f->forward) {
    forward_failed(c, f->sid, f->msg_id, f->route);
  } else if (f->done) {
    f->done(c, rc, NULL, 0, f->arg);
  }
  pm_free(&c->alloc, f);
}

static void fail_all(pomelo_cluster *c, int rc) {
  while (c->heap_len) {
    flight_fail(c, c->heap[0], rc);
  }
}

/* Checks the in-flight limits for a new flight to `p` (of session sid, 0 for none). */
static int flight_room(pomelo_cluster *c, const pm_peer *p, uint64_t sid) {
  if (c->stats.in_flight >= c->set.max_in_flight || p->in_flight >= c->set.max_in_flight_peer ||
      (sid && (uintptr_t)pm_idmap_get(&c->per_session, sid) >= c->set.max_in_flight_session)) {
    c->stats.limited++;
    return POMELO_ERR_LIMIT;
  }
  return 0;
}

/* A flight record for the next correlation id, not yet linked. */
static pm_flight *flight_new(pomelo_cluster *c, pm_peer *p, const char *route, size_t rl) {
  pm_flight *f = pm_calloc(&c->alloc, sizeof(*f) + rl + 1);
  if (!f) {
    return NULL;
  }
  if (c->heap_len == c->heap_cap) {
    uint32_t cap = c->heap_cap ? c->heap_cap * 2 : 64;
    pm_flight **h = pm_realloc(&c->alloc, c->heap, cap * sizeof(*h));
    if (!h) {
      pm_free(&c->alloc, f);
      return NULL;
    }
    c->heap = h;
    c->heap_cap = cap;
  }
  if (pm_idmap_reserve(&c->flights, &c->alloc, 1) != 0 ||
      pm_idmap_reserve(&c->per_session, &c->alloc, 1) != 0) {
    pm_free(&c->alloc, f);
    return NULL;
  }
  f->corr = ++c->next_corr;
  f->peer = p;
  f->heap_idx = NO_HEAP;
  memcpy(f->route, route, rl);
  f->route[rl] = 0;
  return f;
}

/* Links a published flight into every index. */
static void flight_link(pomelo_cluster *c, pm_flight *f) {
  f->deadline = c->now + c->set.timeout_ms;
  pm_idmap_put(&c->flights, f->corr, f);
  fheap_set(c, c->heap_len++, f);
  fheap_up(c, f->heap_idx);
  f->pnext = f->peer->flights;
  f->pprev = NULL;
  if (f->pnext) {
    f->pnext->pprev = f;
  }
  f->peer->flights = f;
  f->peer->in_flight++;
  if (f->forward && f->sid) {
    session_count(c, f->sid, +1);
  }
  c->stats.in_flight++;
}

/* "P/inbox/<id>.<corr>" */
static void reply_subject(const pomelo_cluster *c, char *buf, uint64_t corr) {
  snprintf(buf, SUBJECT_MAX, "%.*s.%llu", (int)c->inbox_len, c->subj[S_INBOX],
           (unsigned long long)corr);
}

/* ---------------------------------------------------------------------------------------------
 * Routing
 * ------------------------------------------------------------------------------------------- */

int32_t pomelo_cluster_crc32(const char *s, size_t len) {
  static uint32_t table[256];
  static int ready;
  const unsigned char *p = (const unsigned char *)s;
  uint32_t crc = 0xffffffffu;
  size_t i = 0;
  if (!ready) { /* idempotent: concurrent first calls write the same values */
    uint32_t n, k, v;
    for (n = 0; n < 256; n++) {
      v = n;
      for (k = 0; k < 8; k++) {
        v = (v & 1) ? 0xedb88320u ^ (v >> 1) : v >> 1;
      }
      table[n] = v;
    }
    ready = 1;
  }
  while (i < len) {
    /* The string's UTF-16 code units, of which JavaScript's crc takes the low byte. */
    uint32_t cp = p[i];
    size_t need = 0, k, n = 1;
    if (cp >= 0xc2 && cp <= 0xdf) {
      need = 1;
    } else if (cp >= 0xe0 && cp <= 0xef) {
      need = 2;
    } else if (cp >= 0xf0 && cp <= 0xf4) {
      need = 3;
    }
    if (need) {
      uint32_t v = cp & (0x3fu >> need);
      for (k = 1; k <= need && i + k < len && (p[i + k] & 0xc0) == 0x80; k++) {
        v = (v << 6) | (p[i + k] & 0x3f);
      }
      if (k == need + 1) {
        cp = v;
        n = need + 1;
      }
    }
    if (cp >= 0x10000) {
      cp -= 0x10000;
      crc = table[(crc ^ (0xd800 + (cp >> 10))) & 0xff] ^ (crc >> 8);
      crc = table[(crc ^ (0xdc00 + (cp & 0x3ff))) & 0xff] ^ (crc >> 8);
    } else {
      crc = table[(crc ^ cp) & 0xff] ^ (crc >> 8);
    }
    i += n;
  }
  return (int32_t)(crc ^ 0xffffffffu);
}

/* Math.abs(crc32(key)) % n */
static size_t hash_index(const char *key, size_t len, size_t n) {
  int64_t h = pomelo_cluster_crc32(key, len);
  return (size_t)((uint64_t)(h < 0 ? -h : h) % n);
}

int pomelo_cluster_pick(const pomelo_cluster *c, const char *type, const char *key, size_t key_len,
                        pomelo_cluster_server *out) {
  pm_type *t = type ? type_get(c, type, strlen(type)) : NULL;
  if (!t || t->n == 0) {
    return POMELO_ERR_NOT_FOUND;
  }
  if (out) {
    view_of(t->v[hash_index(key ? key : "", key ? key_len : 0, t->n)], out);
  }
  return 0;
}

int pomelo_cluster_set_router(pomelo_cluster *c, const char *type, pomelo_route_mode mode,
                              const char *key, pomelo_router_fn fn, void *user_data) {
  pm_type *t;
  char *k = NULL;
  if (!c || !type || !valid_name(type, strlen(type)) || mode > POMELO_ROUTE_CALLBACK ||
      (mode == POMELO_ROUTE_CALLBACK && !fn)) {
    return POMELO_ERR_INVALID_ARG;
  }
  if (key) {
    k = dup_str(&c->alloc, key, strlen(key));
    if (!k) {
      return POMELO_ERR_NOMEM;
    }
  }
  t = type_upsert(c, type, strlen(type));
  if (!t) {
    pm_free(&c->alloc, k);
    return POMELO_ERR_NOMEM;
  }
  pm_free(&c->alloc, t->key);
  t->key = k;
  t->key_len = k ? strlen(k) : 0;
  t->mode = mode;
  t->fn = fn;
  t->ud = user_data;
  return 0;
}

/* The server of `t` for a message of session `s` (may be NULL), or NULL (refused). */
static pm_peer *route_pick(pomelo_cluster *c, const char *type, pm_type *t, const pomelo_session *s,
                           const pomelo_msg *m) {
  size_t i;
  if (t->n == 0) {
    return NULL;
  }
  switch (t->mode) {
  case POMELO_ROUTE_ROUND_ROBIN:
    return t->v[t->rr++ % t->n];
  case POMELO_ROUTE_STICKY: {
    pm_peer *p = s ? pm_idmap_get(&t->sticky, pomelo_session_id(s)) : NULL;
    if (p) {
      return p;
    }
    p = t->v[t->rr++ % t->n];
    if (s && pomelo_session_id(s) && !s->imported &&
        pm_idmap_reserve(&t->sticky, &c->alloc, 1) == 0) {
      pm_idmap_put(&t->sticky, pomelo_session_id(s), p);
    }
    return p;
  }
  case POMELO_ROUTE_CALLBACK: {
    int idx;
    if (c->nviews < t->n) {
      pomelo_cluster_server *v = pm_realloc(&c->alloc, c->views, t->n * sizeof(*v));
      if (!v) {
        return NULL;
      }
      c->views = v;
      c->nviews = t->n;
    }
    for (i = 0; i < t->n; i++) {
      view_of(t->v[i], &c->views[i]);
    }
    idx = t->fn(c, type, s, m, c->views, t->n, t->ud);
    return idx >= 0 && (size_t)idx < t->n ? t->v[idx] : NULL;
  }
  default: {
    size_t kl = 0;
    const char *key = NULL;
    if (s) {
      key = t->key ? pomelo_session_get(s, t->key, t->key_len, &kl) : pomelo_session_uid(s, &kl);
    }
    return t->v[hash_index(key ? key : "", key ? kl : 0, t->n)];
  }
  }
}

/* The type part of a route ("chat" of "chat.chatHandler.send"), or 0 when it has no dot. */
static size_t route_type(const char *route, size_t len) {
  const char *dot = memchr(route, '.', len);
  return dot ? (size_t)(dot - route) : 0;
}

/* ---------------------------------------------------------------------------------------------
 * Sending requests: forwards, calls, session operations
 * ------------------------------------------------------------------------------------------- */

/* The session's settings as a JSON object, in c->w. */
static int write_settings(pomelo_cluster *c, const pomelo_session *s) {
  uint32_t i;
  int rc;
  pomelo_json_writer_reset(c->w);
  rc = pomelo_json_write_begin_object(c->w);
  for (i = 0; s && rc == 0 && i < s->nsettings; i++) {
    rc = pomelo_json_write_key(c->w, s->settings[i].key, s->settings[i].klen);
    rc = rc ? rc : pomelo_json_write_string(c->w, s->settings[i].val, s->settings[i].vlen);
  }
  return rc ? rc : pomelo_json_write_end_object(c->w);
}

/* Fills the session part of a request from `s` (NULL: none). */
static int fill_session(pomelo_cluster *c, pm_env_request *r, const pomelo_session *s) {
  int rc;
  if (!s) {
    return 0;
  }
  rc = write_settings(c, s);
  if (rc) {
    return rc;
  }
  r->has_session = 1;
  r->sid = pomelo_session_id(s);
  r->uid.p = pomelo_session_uid(s, &r->uid.len);
  r->has_uid = r->uid.p != NULL;
  r->settings.p = pomelo_json_writer_data(c->w, &r->settings.len);
  r->frontend.p = pomelo_session_frontend_id(s);
  r->frontend.len = strlen(r->frontend.p);
  return 0;
}

/* Publishes request `r` to `p`; with a flight `f` (its answer awaited) linked on success. */
static int send_request(pomelo_cluster *c, pm_peer *p, pm_env_request *r, pm_flight *f) {
  char subject[SUBJECT_MAX], reply[SUBJECT_MAX];
  int rc;
  server_subject(c, subject, p->type, p->id, "");
  if (f) {
    reply_subject(c, reply, f->corr);
  }
  rc = publish(c, subject, f ? reply : NULL, E_REQUEST, r);
  if (rc == 0 && f) {
    flight_link(c, f);
  }
  return rc;
}

/* The latest time: the cluster's, or its server's when that is later. */
static void sync_now(pomelo_cluster *c) {
  if (c->srv) {
    c->now = PM_MAX(c->now, c->srv->now);
  }
}

int pm_cluster_forward(pomelo_cluster *c, pomelo_session *s, const pomelo_msg *m) {
  size_t tl = route_type(m->route, m->route_len);
  int request = m->type == POMELO_MSG_REQUEST;
  pm_type *t = type_get(c, m->route, tl);
  pm_flight *f = NULL;
  pm_env_request r;
  pm_peer *p;
  char type[POMELO_CLUSTER_NAME_MAX + 1];
  int rc = 0;
  sync_now(c);
  if (tl > POMELO_CLUSTER_NAME_MAX) {
    t = NULL;
  } else {
    memcpy(type, m->route, tl);
    type[tl] = 0;
  }
  p = !c->bus_up ? NULL : t ? route_pick(c, type, t, s, m) : NULL;
  if (!p) {
    rc = c->bus_up ? POMELO_ERR_NOT_FOUND : POMELO_ERR_BUS_DOWN;
  } else if (request) {
    rc = flight_room(c, p, pomelo_session_id(s));
    if (rc == 0) {
      f = flight_new(c, p, m->route, m->route_len);
      rc = f ? 0 : POMELO_ERR_NOMEM;
    }
  }
  if (rc == 0) {
    memset(&r, 0, sizeof r);
    r.type = PM_RQ_FORWARD;
    rc = fill_session(c, &r, s);
    r.msg_id = m->id;
    r.route.p = m->route;
    r.route.len = m->route_len;
    r.data.p = (const char *)m->body;
    r.data.len = m->body_len;
    r.msg_type = request ? PM_MT_REQUEST : PM_MT_NOTIFY;
    if (f) {
      f->forward = 1;
      f->sid = pomelo_session_id(s);
      f->msg_id = m->id;
    }
    rc = rc ? rc : send_request(c, p, &r, f);
  }
  if (rc == 0) {
    c->stats.forwards++;
    return 0;
  }
  pm_free(&c->alloc, f);
  if (rc != POMELO_ERR_LIMIT && rc != POMELO_ERR_PAYLOAD) {
    c->stats.failed_fast++;
  }
  if (pomelo_err_is_fatal(rc) && rc != POMELO_ERR_NOMEM) {
    return rc;
  }
  if (request) {
    char route[POMELO_MSG_ROUTE_MAX + 1];
    memcpy(route, m->route, m->route_len);
    route[m->route_len] = 0;
    forward_failed(c, pomelo_session_id(s), m->id, route);
  }
  return 0;
}

/* The checks before a call, session operation or acknowledged push to `p`, and its flight
 * (`*out`; NULL when `p` is NULL: nothing to await). Returns 0, POMELO_ERR_BUS_DOWN,
 * POMELO_ERR_LIMIT or POMELO_ERR_NOMEM. */
static int flight_start(pomelo_cluster *c, pm_peer *p, pomelo_cluster_done_fn done, void *arg,
                        pm_flight **out) {
  int rc;
  *out = NULL;
  sync_now(c);
  if (!c->bus_up) {
    c->stats.failed_fast++;
    return POMELO_ERR_BUS_DOWN;
  }
  if (!p) {
    return 0;
  }
  rc = flight_room(c, p, 0);
  if (rc) {
    return rc;
  }
  *out = flight_new(c, p, "", 0);
  if (!*out) {
    return POMELO_ERR_NOMEM;
  }
  (*out)->done = done;
  (*out)->arg = arg;
  return 0;
}

/* A call or session operation to `p` (request `r` filled but for the flight). */
static int start_call(pomelo_cluster *c, pm_peer *p, pm_env_request *r, pomelo_cluster_done_fn done,
                      void *arg) {
  pm_flight *f = NULL;
  int rc;
  rc = flight_start(c, done ? p : NULL, done, arg, &f);
  if (rc) {
    return rc;
  }
  rc = send_request(c, p, r, f);
  if (rc) {
    pm_free(&c->alloc, f);
    return rc;
  }
  c->stats.calls++;
  return 0;
}

int pomelo_cluster_call(pomelo_cluster *c, const char *server_id, const pomelo_session *s,
                        const char *route, const char *body, size_t len,
                        pomelo_cluster_done_fn done, void *arg) {
  size_t rl, tl;
  pm_env_request r;
  pm_peer *p;
  int rc;
  if (!c || !c->srv || !route || (!body && len)) {
    return POMELO_ERR_INVALID_ARG;
  }
  rl = strlen(route);
  tl = route_type(route, rl);
  if (tl == 0 || rl > POMELO_MSG_ROUTE_MAX) {
    return POMELO_ERR_ROUTE;
  }
  if (server_id) {
    p = peer_get(c, server_id, strlen(server_id));
  } else {
    char type[POMELO_CLUSTER_NAME_MAX + 1];
    pm_type *t = NULL;
    if (tl <= POMELO_CLUSTER_NAME_MAX) {
      memcpy(type, route, tl);
      type[tl] = 0;
      t = type_get(c, type, tl);
    }
    p = t ? route_pick(c, type, t, s, NULL) : NULL;
  }
  if (!p) {
    return POMELO_ERR_NOT_FOUND;
  }
  memset(&r, 0, sizeof r);
  r.type = PM_RQ_CALL;
  rc = fill_session(c, &r, s);
  if (rc) {
    return rc;
  }
  r.msg_id = 1;
  r.route.p = route;
  r.route.len = rl;
  r.data.p = body && len ? body : "{}";
  r.data.len = body && len ? len : 2;
  r.msg_type = done ? PM_MT_REQUEST : PM_MT_NOTIFY;
  return start_call(c, p, &r, done, arg);
}

/* A session operation `op` on session `sid` of frontend `fid`. */
static int session_op(pomelo_cluster *c, const char *fid, uint64_t sid, const char *op,
                      const char *uid, size_t uid_len, const char *data, size_t len,
                      pomelo_cluster_done_fn done, void *arg) {
  pm_peer *p = c && fid ? peer_get(c, fid, strlen(fid)) : NULL;
  pm_env_request r;
  if (!c || !fid || sid == 0) {
    return POMELO_ERR_INVALID_ARG;
  }
  if (!p || !p->frontend) {
    return POMELO_ERR_NOT_FOUND;
  }
  memset(&r, 0, sizeof r);
  r.type = PM_RQ_SESSION;
  r.has_session = 1;
  r.sid = sid;
  r.uid.p = uid;
  r.uid.len = uid_len;
  r.has_uid = uid != NULL;
  r.route.p = op;
  r.route.len = strlen(op);
  r.data.p = data;
  r.data.len = len;
  r.frontend.p = c->self->id;
  r.frontend.len = strlen(c->self->id);
  return start_call(c, p, &r, done, arg);
}

int pomelo_cluster_bind(pomelo_cluster *c, const char *frontend_id, uint64_t sid, const char *uid,
                        size_t uid_len, pomelo_cluster_done_fn done, void *arg) {
  if (!uid || uid_len == 0) {
    return POMELO_ERR_INVALID_ARG;
  }
  return session_op(c, frontend_id, sid, "bind", uid, uid_len, NULL, 0, done, arg);
}

int pomelo_cluster_unbind(pomelo_cluster *c, const char *frontend_id, uint64_t sid,
                          pomelo_cluster_done_fn done, void *arg) {
  return session_op(c, frontend_id, sid, "unbind", NULL, 0, NULL, 0, done, arg);
}

int pomelo_cluster_set(pomelo_cluster *c, const char *frontend_id, uint64_t sid, const char *key,
                       size_t key_len, const char *value, size_t value_len,
                       pomelo_cluster_done_fn done, void *arg) {
  const char *data;
  size_t len;
  int rc;
  if (!c || !key || key_len == 0 || (!value && value_len)) {
    return POMELO_ERR_INVALID_ARG;
  }
  /* {"key":"value"} or {"key":null} */
  pomelo_json_writer_reset(c->w);
  rc = pomelo_json_write_begin_object(c->w);
  rc = rc ? rc : pomelo_json_write_key(c->w, key, key_len);
  if (rc == 0) {
    rc = value ? pomelo_json_write_string(c->w, value, value_len) : pomelo_json_write_null(c->w);
  }
  rc = rc ? rc : pomelo_json_write_end_object(c->w);
  if (rc) {
    return rc;
  }
  data = pomelo_json_writer_data(c->w, &len);
  return session_op(c, frontend_id, sid, "set", NULL, 0, data, len, done, arg);
}

int pomelo_cluster_kick(pomelo_cluster *c, const char *frontend_id, uint64_t sid, const char *uid,
                        size_t uid_len, const char *reason, pomelo_cluster_done_fn done,
                        void *arg) {
  if ((uid != NULL) == (sid != 0) || (uid && uid_len == 0)) {
    return POMELO_ERR_INVALID_ARG; /* one of them */
  }
  return session_op(c, frontend_id, uid ? 1 : sid, uid ? "kickuid" : "kick", uid, uid_len,
                    reason ? reason : "", reason ? strlen(reason) : 0, done, arg);
}

/* A MultiPush or MultiKick to `subject`, acknowledged to `done` when not NULL (the frontend
 * `p` then bounds it as a flight). */
static int send_multi(pomelo_cluster *c, const char *subject, pm_peer *p, int kind,
                      const pm_env_multi *m, pomelo_cluster_done_fn done, void *arg) {
  char reply[SUBJECT_MAX];
  pm_flight *f = NULL;
  int rc;
  rc = flight_start(c, done ? p : NULL, done, arg, &f);
  if (rc) {
    return rc;
  }
  if (f) {
    reply_subject(c, reply, f->corr);
  }
  rc = publish(c, subject, f ? reply : NULL, kind, m);
  if (rc) {
    pm_free(&c->alloc, f);
    return rc;
  }
  if (f) {
    flight_link(c, f);
  }
  if (kind == E_PUSH) {
    c->stats.pushes_out++;
  }
  return 0;
}

int pomelo_cluster_push(pomelo_cluster *c, const char *frontend_id, const uint64_t *sids, size_t n,
                        const char *const *uids, const size_t *uid_lens, size_t m,
                        const char *route, const char *body, size_t len,
                        pomelo_cluster_done_fn done, void *arg) {
  char subject[SUBJECT_MAX];
  pm_peer *p = c && frontend_id ? peer_get(c, frontend_id, strlen(frontend_id)) : NULL;
  pm_env_multi mp;
  size_t i;
  int rc;
  if (!c || !frontend_id || !route || (n && !sids) || (m && (!uids || !uid_lens)) ||
      (!body && len) || strlen(route) > POMELO_MSG_ROUTE_MAX) {
    return POMELO_ERR_INVALID_ARG;
  }
  if (!p || !p->frontend) {
    return POMELO_ERR_NOT_FOUND;
  }
  memset(&mp, 0, sizeof mp);
  mp.route.p = route;
  mp.route.len = strlen(route);
  mp.data.p = body && len ? body : "{}";
  mp.data.len = body && len ? len : 2;
  mp.sids = (uint64_t *)(uintptr_t)sids;
  mp.nsids = n;
  if (m) {
    mp.uids = pm_malloc(&c->alloc, m * sizeof(*mp.uids));
    if (!mp.uids) {
      return POMELO_ERR_NOMEM;
    }
    for (i = 0; i < m; i++) {
      mp.uids[i].p = uids[i];
      mp.uids[i].len = uid_lens[i];
    }
    mp.nuids = m;
  }
  server_subject(c, subject, p->type, p->id, "/push");
  rc = send_multi(c, subject, p, E_PUSH, &mp, done, arg);
  pm_free(&c->alloc, mp.uids);
  return rc;
}

int pm_cluster_push_group(pomelo_cluster *c, const char *fid, const pm_str *uids, size_t n,
                          const char *route, const char *body, size_t len) {
  char subject[SUBJECT_MAX];
  pm_peer *p = peer_get(c, fid, strlen(fid));
  pm_env_multi mp;
  if (p && p->self && c->srv) { /* members on this very frontend */
    const char **v = pm_malloc(&c->alloc, n * sizeof(*v) + 1);
    size_t *l = pm_malloc(&c->alloc, n * sizeof(*l) + 1);
    size_t i;
    int rc = v && l ? 0 : POMELO_ERR_NOMEM;
    for (i = 0; rc == 0 && i < n; i++) {
      v[i] = uids[i].p;
      l[i] = uids[i].len;
    }
    rc = rc ? rc : pomelo_server_push_uids(c->srv, v, l, n, route, body, len);
    pm_free(&c->alloc, v);
    pm_free(&c->alloc, l);
    return rc < 0 ? rc : 0;
  }
  if (!p) {
    c->stats.failed_fast++;
    return POMELO_ERR_NOT_FOUND;
  }
  memset(&mp, 0, sizeof mp);
  mp.route.p = route;
  mp.route.len = strlen(route);
  mp.data.p = body;
  mp.data.len = len;
  mp.uids = (pm_str *)(uintptr_t)uids;
  mp.nuids = n;
  if (n > 1 && pm_env_push_write(NULL, &mp) > c->set.max_payload) {
    /* Too many members for one bus message: halves, each encoded once by the frontend. */
    int rc = pm_cluster_push_group(c, fid, uids, n / 2, route, body, len);
    int rc2 = pm_cluster_push_group(c, fid, uids + n / 2, n - n / 2, route, body, len);
    return rc ? rc : rc2;
  }
  server_subject(c, subject, p->type, p->id, "/push");
  return send_multi(c, subject, NULL, E_PUSH, &mp, NULL, NULL);
}

int pomelo_cluster_kick_uid(pomelo_cluster *c, const char *frontend_type, const char *uid,
                            size_t uid_len, const char *reason) {
  char subject[SUBJECT_MAX];
  pm_env_multi mk;
  pm_str u;
  if (!c || !frontend_type || !valid_name(frontend_type, strlen(frontend_type)) || !uid ||
      uid_len == 0) {
    return POMELO_ERR_INVALID_ARG;
  }
  memset(&mk, 0, sizeof mk);
  u.p = uid;
  u.len = uid_len;
  mk.uids = &u;
  mk.nuids = 1;
  mk.reason.p = reason ? reason : "";
  mk.reason.len = reason ? strlen(reason) : 0;
  snprintf(subject, sizeof subject, "%s/%s/kick", c->prefix, frontend_type);
  return send_multi(c, subject, NULL, E_KICK, &mk, NULL, NULL);
}

int pomelo_cluster_broadcast(pomelo_cluster *c, const char *frontend_type, int bound_only,
                             const char *route, const char *body, size_t len) {
  char subject[SUBJECT_MAX];
  pm_env_multi mp;
  if (!c || !frontend_type || !valid_name(frontend_type, strlen(frontend_type)) || !route ||
      (!body && len) || strlen(route) > POMELO_MSG_ROUTE_MAX) {
    return POMELO_ERR_INVALID_ARG;
  }
  memset(&mp, 0, sizeof mp);
  mp.route.p = route;
  mp.route.len = strlen(route);
  mp.data.p = body && len ? body : "{}";
  mp.data.len = body && len ? len : 2;
  mp.bound_only = bound_only != 0;
  snprintf(subject, sizeof subject, "%s/%s/broadcast", c->prefix, frontend_type);
  return send_multi(c, subject, NULL, E_PUSH, &mp, NULL, NULL);
}

void pm_cluster_bound(pomelo_cluster *c, const pomelo_session *s) {
  pm_env_bind b;
  if (!c->self->frontend || !c->bus_up) {
    return;
  }
  b.uid.p = pomelo_session_uid(s, &b.uid.len);
  b.fid.p = c->self->id;
  b.fid.len = strlen(c->self->id);
  (void)publish(c, c->subj[S_BIND], NULL, E_BIND, &b);
}

/* ---------------------------------------------------------------------------------------------
 * Serving what others send
 * ------------------------------------------------------------------------------------------- */

static void serving_free(pm_serving *sv) {
  pomelo_cluster *c = sv->c;
  if (sv->prev) {
    sv->prev->next = sv->next;
  } else if (c) {
    c->serving = sv->next;
  }
  if (sv->next) {
    sv->next->prev = sv->prev;
  }
  pm_free(&sv->alloc, sv);
}

/* The handler answered a forward or call (body NULL: it dropped it). */
static void serving_reply(const char *body, size_t len, void *arg) {
  pm_serving *sv = arg;
  if (sv->c) {
    answer(sv->c, sv->reply, body, len, body ? 0 : POMELO_ERR_CLOSED);
  }
  serving_free(sv);
}

static void noop_reply(const char *body, size_t len, void *arg) {
  (void)body;
  (void)len;
  (void)arg;
}

/* {"id":sid,"frontendId":..,"uid":..|null,"settings":{..}} of a request, in c->w. */
static int write_session_json(pomelo_cluster *c, const pm_env_request *r) {
  int rc;
  pomelo_json_writer_reset(c->w);
  rc = pomelo_json_write_begin_object(c->w);
  rc = rc ? rc : pomelo_json_write_key(c->w, "id", 2);
  rc = rc ? rc : pomelo_json_write_uint64(c->w, r->has_session ? r->sid : 0);
  rc = rc ? rc : pomelo_json_write_key(c->w, "frontendId", 10);
  rc =
      rc ? rc : pomelo_json_write_string(c->w, r->frontend.p ? r->frontend.p : "", r->frontend.len);
  rc = rc ? rc : pomelo_json_write_key(c->w, "uid", 3);
  if (rc == 0) {
    rc = r->has_uid ? pomelo_json_write_string(c->w, r->uid.p ? r->uid.p : "", r->uid.len)
                    : pomelo_json_write_null(c->w);
  }
  rc = rc ? rc : pomelo_json_write_key(c->w, "settings", 8);
  if (rc == 0) {
    rc = r->settings.len ? pomelo_json_write_raw(c->w, r->settings.p, r->settings.len)
                         : pomelo_json_write_raw(c->w, "{}", 2);
  }
  return rc ? rc : pomelo_json_write_end_object(c->w);
}

/* A forward or call for this server: dispatched to its handlers, answered on `reply`. */
static int serve_dispatch(pomelo_cluster *c, const pm_env_request *r, const char *reply) {
  int request = r->msg_type == PM_MT_REQUEST && reply && *reply;
  pm_serving *sv = NULL;
  pomelo_msg m;
  const char *json;
  char *copy;
  size_t jl, rl = reply ? strlen(reply) : 0;
  int rc;
  if (r->route.len == 0 || r->route.len > POMELO_MSG_ROUTE_MAX ||
      (r->msg_type != PM_MT_REQUEST && r->msg_type != PM_MT_NOTIFY)) {
    answer(c, reply, NULL, 0, POMELO_ERR_CLUSTER_ENVELOPE);
    return POMELO_ERR_CLUSTER_ENVELOPE;
  }
  rc = write_session_json(c, r);
  if (rc) {
    answer(c, reply, NULL, 0, rc);
    return rc;
  }
  json = pomelo_json_writer_data(c->w, &jl);
  copy = dup_str(&c->alloc, json, jl); /* the writer is reused by handlers' calls */
  if (request) {
    sv = pm_malloc(&c->alloc, sizeof(*sv) + rl + 1);
  }
  if (!copy || (request && !sv)) {
    pm_free(&c->alloc, copy);
    pm_free(&c->alloc, sv);
    answer(c, reply, NULL, 0, POMELO_ERR_NOMEM);
    return POMELO_ERR_NOMEM;
  }
  if (sv) {
    sv->c = c;
    sv->alloc = c->alloc;
    memcpy(sv->reply, reply, rl + 1);
    sv->prev = NULL;
    sv->next = c->serving;
    if (sv->next) {
      sv->next->prev = sv;
    }
    c->serving = sv;
  }
  memset(&m, 0, sizeof m);
  m.type = request ? POMELO_MSG_REQUEST : POMELO_MSG_NOTIFY;
  m.id = request ? (uint32_t)(r->msg_id ? r->msg_id & 0x7fffffff : 1) : 0;
  if (request && m.id == 0) {
    m.id = 1;
  }
  m.route = r->route.p;
  m.route_len = r->route.len;
  m.body = (const uint8_t *)r->data.p;
  m.body_len = r->data.len;
  c->stats.served++;
  rc = pm_server_dispatch_ex(c->srv, copy, jl, &m, request ? serving_reply : noop_reply,
                             request ? (void *)sv : NULL, r->type == PM_RQ_CALL);
  pm_free(&c->alloc, copy);
  if (rc && sv) {
    /* Not dispatched: reply was not called. */
    answer(c, reply, NULL, 0, rc);
    serving_free(sv);
  }
  return rc && pomelo_err_is_fatal(rc) ? rc : 0;
}

/* A session operation for a session of this frontend. */
static int serve_session_op(pomelo_cluster *c, const pm_env_request *r, const char *reply) {
  pomelo_session *s = r->has_session ? pomelo_server_session(c->srv, r->sid) : NULL;
  int rc;
  if (str_is(r->route, "kickuid")) { /* every session of a uid here */
    char reason[REASON_MAX + 1], ack[32];
    size_t n = PM_MIN(r->data.len, (size_t)REASON_MAX), kicked;
    memcpy(reason, r->data.p ? r->data.p : "", n);
    reason[n] = 0;
    c->stats.served++;
    kicked = r->has_uid && r->uid.len
                 ? pomelo_server_kick_uid(c->srv, r->uid.p, r->uid.len, n ? reason : NULL)
                 : 0;
    snprintf(ack, sizeof ack, "{\"reached\":%zu}", kicked);
    answer(c, reply, ack, strlen(ack), 0);
    return 0;
  }
  if (!s || pomelo_session_state(s) >= POMELO_CONN_CLOSING) {
    answer(c, reply, NULL, 0, POMELO_ERR_NOT_FOUND);
    return 0;
  }
  c->stats.served++;
  if (str_is(r->route, "bind")) {
    rc = r->has_uid ? pomelo_session_bind(s, r->uid.p, r->uid.len) : POMELO_ERR_INVALID_ARG;
  } else if (str_is(r->route, "unbind")) {
    rc = pomelo_session_unbind(s);
  } else if (str_is(r->route, "kick")) {
    char reason[REASON_MAX + 1];
    size_t n = PM_MIN(r->data.len, (size_t)REASON_MAX);
    memcpy(reason, r->data.p ? r->data.p : "", n);
    reason[n] = 0;
    rc = pomelo_session_kick(s, n ? reason : NULL);
  } else if (str_is(r->route, "set")) {
    pomelo_json_doc *doc = NULL;
    const pomelo_json_value *root;
    size_t i;
    rc = pomelo_json_parse(&doc, &c->alloc, r->data.p ? r->data.p : "", r->data.len, NULL, NULL);
    root = rc ? NULL : pomelo_json_root(doc);
    if (rc == 0 && pomelo_json_typeof(root) != POMELO_JSON_OBJECT) {
      rc = POMELO_ERR_INVALID_ARG;
    }
    for (i = 0; rc == 0 && i < pomelo_json_len(root); i++) {
      size_t kl, vl;
      const char *k = pomelo_json_key_at(root, i, &kl);
      const pomelo_json_value *v = pomelo_json_at(root, i);
      const char *str = pomelo_json_string(v, &vl);
      if (str) {
        rc = pomelo_session_set(s, k, kl, str, vl);
      } else if (pomelo_json_typeof(v) == POMELO_JSON_NULL) {
        (void)pomelo_session_remove(s, k, kl);
      } else {
        rc = POMELO_ERR_INVALID_ARG;
      }
    }
    pomelo_json_doc_del(doc);
  } else {
    rc = POMELO_ERR_CLUSTER_ENVELOPE;
  }
  if (rc) {
    answer(c, reply, NULL, 0, rc);
  } else {
    answer(c, reply, "{\"reached\":1}", 13, 0);
  }
  return pomelo_err_is_fatal(rc) ? rc : 0;
}

static int on_request(pomelo_cluster *c, const uint8_t *data, size_t len, const char *reply) {
  pm_env_request r;
  int rc = pm_env_request_read(data, len, &r);
  if (rc) {
    answer(c, reply, NULL, 0, rc);
    return rc;
  }
  if (r.type == PM_RQ_SESSION) {
    return serve_session_op(c, &r, reply);
  }
  return serve_dispatch(c, &r, reply);
}

/* A MultiPush (broadcast: on the type's broadcast subject) for this frontend. */
static int on_push(pomelo_cluster *c, const uint8_t *data, size_t len, const char *reply,
                   int broadcast) {
  char route[POMELO_MSG_ROUTE_MAX + 1];
  char ack[32];
  pm_env_multi mp;
  int rc = pm_env_push_read(&c->alloc, data, len, &mp), reached;
  if (rc) {
    answer(c, reply, NULL, 0, rc);
    return rc;
  }
  if (mp.route.len == 0 || mp.route.len > POMELO_MSG_ROUTE_MAX ||
      memchr(mp.route.p, 0, mp.route.len)) {
    pm_env_multi_fini(&c->alloc, &mp);
    answer(c, reply, NULL, 0, POMELO_ERR_CLUSTER_ENVELOPE);
    return POMELO_ERR_CLUSTER_ENVELOPE;
  }
  memcpy(route, mp.route.p, mp.route.len);
  route[mp.route.len] = 0;
  c->stats.pushes_in++;
  if (broadcast && mp.nuids == 0 && mp.nsids == 0) {
    rc = pomelo_server_broadcast(c->srv, mp.bound_only, route, mp.data.p, mp.data.len);
  } else {
    const char **v = pm_malloc(&c->alloc, mp.nuids * sizeof(*v) + 1);
    size_t *l = pm_malloc(&c->alloc, mp.nuids * sizeof(*l) + 1);
    size_t i;
    rc = v && l ? 0 : POMELO_ERR_NOMEM;
    for (i = 0; rc == 0 && i < mp.nuids; i++) {
      v[i] = mp.uids[i].p;
      l[i] = mp.uids[i].len;
    }
    rc = rc ? rc
            : pm_server_push_many(c->srv, mp.sids, mp.nsids, v, l, mp.nuids, route, mp.data.p,
                                  mp.data.len);
    pm_free(&c->alloc, v);
    pm_free(&c->alloc, l);
  }
  reached = rc > 0 ? rc : 0;
  pm_env_multi_fini(&c->alloc, &mp);
  if (rc < 0) {
    answer(c, reply, NULL, 0, rc);
    return pomelo_err_is_fatal(rc) ? rc : 0;
  }
  snprintf(ack, sizeof ack, "{\"reached\":%d}", reached);
  answer(c, reply, ack, strlen(ack), 0);
  return 0;
}

static int on_kick(pomelo_cluster *c, const uint8_t *data, size_t len) {
  char reason[REASON_MAX + 1];
  pm_env_multi mk;
  size_t i, n;
  int rc = pm_env_kick_read(&c->alloc, data, len, &mk);
  if (rc) {
    return rc;
  }
  n = PM_MIN(mk.reason.len, (size_t)REASON_MAX);
  memcpy(reason, mk.reason.p ? mk.reason.p : "", n);
  reason[n] = 0;
  for (i = 0; i < mk.nuids; i++) {
    (void)pomelo_server_kick_uid(c->srv, mk.uids[i].p, mk.uids[i].len, n ? reason : NULL);
  }
  for (i = 0; i < mk.nsids; i++) {
    pomelo_session *s = pomelo_server_session(c->srv, mk.sids[i]);
    if (s) {
      (void)pomelo_session_kick(s, n ? reason : NULL);
    }
  }
  pm_env_multi_fini(&c->alloc, &mk);
  return 0;
}

/* Another frontend bound a uid: under KICK_OLDER our sessions of that uid are older. */
static int on_bind(pomelo_cluster *c, const uint8_t *data, size_t len) {
  pm_env_bind b;
  int rc = pm_env_bind_read(data, len, &b);
  pomelo_session *s[16];
  size_t n, i;
  if (rc) {
    return rc;
  }
  if (str_is(b.fid, c->self->id) || b.uid.len == 0 ||
      c->srv->set.uid_policy != POMELO_UID_KICK_OLDER) {
    return 0;
  }
  do {
    n = pomelo_server_sessions_by_uid(c->srv, b.uid.p, b.uid.len, s, PM_ARRAY_LEN(s));
    for (i = 0; i < PM_MIN(n, PM_ARRAY_LEN(s)); i++) {
      if (pomelo_session_state(s[i]) < POMELO_CONN_CLOSING) {
        pomelo_session_kick(s[i], "replaced");
        c->stats.binds_kicked++;
      }
      (void)pomelo_session_unbind(s[i]); /* so the next round finds the others */
    }
  } while (n > PM_ARRAY_LEN(s));
  return 0;
}

/* An answer on our inbox: "<inbox>.<corr>". */
static int on_answer(pomelo_cluster *c, const char *subject, const uint8_t *data, size_t len,
                     unsigned flags) {
  const char *p = subject + c->inbox_len + 1;
  uint64_t corr = 0;
  pm_env_response r;
  pm_flight *f;
  int rc;
  if (!*p) {
    return POMELO_ERR_NOT_FOUND;
  }
  for (; *p; p++) {
    if (*p < '0' || *p > '9' || corr > (UINT64_MAX - 9) / 10) {
      return POMELO_ERR_NOT_FOUND;
    }
    corr = corr * 10 + (uint64_t)(*p - '0');
  }
  f = corr ? pm_idmap_get(&c->flights, corr) : NULL;
  if (!f) {
    c->stats.late_answers++;
    return POMELO_ERR_NOT_FOUND;
  }
  if (flags & POMELO_CLUSTER_NO_RESPONDERS) {
    flight_fail(c, f, POMELO_ERR_NO_RESPONDERS);
    return 0;
  }
  rc = pm_env_response_read(data, len, &r);
  if (rc) {
    c->stats.bad_messages++;
    flight_fail(c, f, rc);
    return rc;
  }
  flight_unlink(c, f);
  if (f->forward) {
    int sent = POMELO_ERR_NOT_FOUND;
    if (!r.has_error && c->srv) {
      sent = pomelo_server_respond(c->srv, f->sid, f->msg_id, f->route, r.data.p ? r.data.p : "",
                                   r.data.len);
    } else {
      forward_failed(c, f->sid, f->msg_id, f->route);
    }
    if (sent == POMELO_ERR_NOT_FOUND || sent == POMELO_ERR_STATE) {
      c->stats.forward_orphans++;
    } else {
      c->stats.forward_answers++;
    }
  } else if (f->done) {
    int code = r.has_error ? err_from_name(r.code) : 0;
    f->done(c, code, r.data.p ? r.data.p : "", r.data.len, f->arg);
  }
  pm_free(&c->alloc, f);
  return 0;
}

int pomelo_cluster_deliver(pomelo_cluster *c, const char *subject, const char *reply,
                           const uint8_t *data, size_t len, unsigned flags, uint64_t now) {
  int rc, i;
  if (!c || !subject || (!data && len)) {
    return POMELO_ERR_INVALID_ARG;
  }
  if (!c->srv) {
    return POMELO_ERR_STATE;
  }
  if (!data) {
    data = (const uint8_t *)"";
  }
  c->now = PM_MAX(c->now, now);
  if (strncmp(subject, c->subj[S_INBOX], c->inbox_len) == 0 && subject[c->inbox_len] == '.') {
    rc = on_answer(c, subject, data, len, flags);
    return rc;
  }
  for (i = 0; i < S_INBOX && (!c->subj[i] || strcmp(subject, c->subj[i]) != 0); i++) {
  }
  switch (i) {
  case S_SELF:
    rc = on_request(c, data, len, reply);
    break;
  case S_PUSH:
    rc = on_push(c, data, len, reply, 0);
    break;
  case S_BCAST:
    rc = on_push(c, data, len, reply, 1);
    break;
  case S_KICK:
    rc = on_kick(c, data, len);
    break;
  case S_BIND:
    rc = on_bind(c, data, len);
    break;
  case S_ANNOUNCE:
    rc = on_record(c, data, len, 0);
    break;
  case S_BYE:
    rc = on_record(c, data, len, 1);
    break;
  case S_QUERY:
    /* Always: a server that just came up may have missed our last announcement. Queries come
     * only when a bus comes up, so this cannot storm. */
    announce(c, c->subj[S_ANNOUNCE]);
    return 0;
  default:
    return POMELO_ERR_NOT_FOUND;
  }
  if (rc == POMELO_ERR_CLUSTER_ENVELOPE) {
    c->stats.bad_messages++;
  }
  return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Timers
 * ------------------------------------------------------------------------------------------- */

uint64_t pm_cluster_expiry(const pomelo_cluster *c) {
  uint64_t e = c->heap_len ? c->heap[0]->deadline : UINT64_MAX;
  if (c->bus_up && c->set.announce_ms) {
    e = PM_MIN(e, c->next_tick);
  }
  return e;
}

void pm_cluster_handle_expiry(pomelo_cluster *c, uint64_t now) {
  c->now = PM_MAX(c->now, now);
  while (c->heap_len && c->heap[0]->deadline <= now) {
    flight_fail(c, c->heap[0], POMELO_ERR_TIMEOUT);
  }
  if (c->bus_up && c->set.announce_ms && c->next_tick <= now) {
    uint32_t k;
    int again = 1;
    if (c->next_announce <= now) {
      announce(c, c->subj[S_ANNOUNCE]);
      c->next_announce = now + c->set.announce_ms;
    }
    /* Servers silent for their ttl have left (one at a time: the callbacks may change the
     * table). */
    while (again) {
      again = 0;
      for (k = 0; k < c->peers.cap; k++) {
        pm_strmap_ent *e = pm_strmap_slot(&c->peers, k);
        pm_peer *p = e ? e->val : NULL;
        if (p && !p->self && !p->is_static && p->last_seen + p->ttl_ms <= now) {
          peer_remove(c, p, POMELO_ERR_SERVER_LEFT);
          again = 1;
          break;
        }
      }
    }
    c->next_tick = now + PM_MAX(c->set.announce_ms / 2, 10u);
    c->next_tick = PM_MIN(c->next_tick, c->next_announce);
  }
}

/* ---------------------------------------------------------------------------------------------
 * The bus ends
 * ------------------------------------------------------------------------------------------- */

void pomelo_cluster_set_bus(pomelo_cluster *c, pomelo_cluster_publish_fn publish_fn, void *bus) {
  c->publish = publish_fn;
  c->bus = bus;
}

const char *pomelo_cluster_subject(const pomelo_cluster *c, size_t i) {
  size_t k, n = 0;
  for (k = 0; k < S_COUNT; k++) {
    if (!c->subj[k]) {
      continue;
    }
    if ((k == S_ANNOUNCE || k == S_BYE || k == S_QUERY) && c->set.announce_ms == 0) {
      continue;
    }
    if (n++ == i) {
      return c->subj[k];
    }
  }
  return NULL;
}

void pomelo_cluster_bus_up(pomelo_cluster *c, int up, uint64_t now) {
  uint32_t k;
  c->now = PM_MAX(c->now, now);
  up = up != 0;
  if (up == c->bus_up) {
    return;
  }
  c->bus_up = up;
  if (up) {
    for (k = 0; k < c->peers.cap; k++) {
      pm_strmap_ent *e = pm_strmap_slot(&c->peers, k);
      pm_peer *p = e ? e->val : NULL;
      if (p) {
        p->last_seen = c->now; /* not heard while the bus was down: give them a ttl */
      }
    }
    if (c->set.announce_ms) {
      announce(c, c->subj[S_ANNOUNCE]);
      (void)publish_raw(c, c->subj[S_QUERY], "{}", 2);
      c->next_announce = c->now + c->set.announce_ms;
      c->next_tick = c->now + PM_MAX(c->set.announce_ms / 2, 10u);
    }
  } else {
    fail_all(c, POMELO_ERR_BUS_DOWN);
  }
  if (c->cb.on_bus) {
    c->cb.on_bus(c, up, c->user_data);
  }
}

void pomelo_cluster_set_max_payload(pomelo_cluster *c, size_t max_payload) {
  if (max_payload) {
    c->set.max_payload = max_payload;
  }
}

/* ---------------------------------------------------------------------------------------------
 * Life cycle
 * ------------------------------------------------------------------------------------------- */

void pomelo_cluster_settings_default(pomelo_cluster_settings *s) {
  memset(s, 0, sizeof *s);
  s->prefix = "pomelo";
  s->hostname = "";
  s->client_host = "";
  s->frontend = -1; /* "1 if client_port": resolved at _new */
  s->announce_ms = 5000;
  s->timeout_ms = 5000;
  s->max_in_flight = 65536;
  s->max_in_flight_peer = 10000;
  s->max_in_flight_session = 64;
  s->max_payload = 1024 * 1024;
}

/* prefix + a + b + d (each may be ""), in a new allocation. */
static char *make_subject(pomelo_cluster *c, const char *a, const char *b, const char *d) {
  size_t lp = strlen(c->prefix), la = strlen(a), lb = strlen(b), ld = strlen(d);
  char *s = pm_malloc(&c->alloc, lp + la + lb + ld + 1);
  if (s) {
    memcpy(s, c->prefix, lp);
    memcpy(s + lp, a, la);
    memcpy(s + lp + la, b, lb);
    memcpy(s + lp + la + lb, d, ld + 1);
  }
  return s;
}

int pomelo_cluster_new(pomelo_cluster **out, pomelo_server *srv,
                       const pomelo_cluster_settings *settings,
                       const pomelo_cluster_callbacks *callbacks, const pomelo_allocator *alloc,
                       void *user_data) {
  pomelo_cluster_settings def;
  pomelo_cluster *c;
  pomelo_allocator a;
  int rc = 0, i;
  if (!out || !srv) {
    return POMELO_ERR_INVALID_ARG;
  }
  *out = NULL;
  if (!settings) {
    pomelo_cluster_settings_default(&def);
    settings = &def;
  }
  if (!valid_name(srv->server_id, srv->id_len) || !valid_name(srv->server_type, srv->type_len) ||
      !settings->prefix || strlen(settings->prefix) == 0 || strlen(settings->prefix) > PREFIX_MAX ||
      strpbrk(settings->prefix, " *>") || settings->timeout_ms == 0 || settings->max_payload == 0 ||
      !valid_instance(settings->instance)) {
    return POMELO_ERR_INVALID_ARG;
  }
  if (srv->cluster) {
    return POMELO_ERR_EXISTS;
  }
  pm_alloc_init(&a, alloc);
  c = pm_calloc(&a, sizeof(*c));
  if (!c) {
    return POMELO_ERR_NOMEM;
  }
  c->alloc = a;
  c->srv = srv;
  c->set = *settings;
  if (c->set.frontend < 0) {
    c->set.frontend = c->set.client_port != 0;
  }
  if (callbacks) {
    c->cb = *callbacks;
  }
  c->user_data = user_data;
  pm_strmap_init(&c->peers);
  pm_strmap_init(&c->types);
  pm_strmap_init(&c->channels);
  pm_idmap_init(&c->flights);
  pm_idmap_init(&c->per_session);
  c->prefix = dup_str(&a, settings->prefix, strlen(settings->prefix));
  c->hostname = dup_str(&a, settings->hostname ? settings->hostname : "",
                        settings->hostname ? strlen(settings->hostname) : 0);
  c->client_host = dup_str(&a, settings->client_host ? settings->client_host : "",
                           settings->client_host ? strlen(settings->client_host) : 0);
  rc = c->prefix && c->hostname && c->client_host ? 0 : POMELO_ERR_NOMEM;
  rc = rc ? rc : pomelo_json_writer_new(&c->w, &a, 0);
  if (rc == 0) {
    char inst[64];
    if (settings->instance) {
      snprintf(inst, sizeof inst, "%s", settings->instance);
    } else {
      snprintf(inst, sizeof inst, "%llx", (unsigned long long)(uintptr_t)c);
    }
    c->instance = dup_str(&a, inst, strlen(inst));
    rc = c->instance ? 0 : POMELO_ERR_NOMEM;
  }
  if (rc == 0) {
    char self[SUBJECT_MAX], inbox[SUBJECT_MAX];
    snprintf(self, sizeof self, "/servers/%s/%s", srv->server_type, srv->server_id);
    snprintf(inbox, sizeof inbox, "/inbox/%s/%s.*", srv->server_id, c->instance);
    c->subj[S_SELF] = make_subject(c, self, "", "");
    c->subj[S_ANNOUNCE] = make_subject(c, "/sd/announce", "", "");
    c->subj[S_BYE] = make_subject(c, "/sd/bye", "", "");
    c->subj[S_QUERY] = make_subject(c, "/sd/query", "", "");
    c->subj[S_INBOX] = make_subject(c, inbox, "", "");
    if (c->set.frontend) {
      c->subj[S_PUSH] = make_subject(c, self, "/push", "");
      c->subj[S_BCAST] = make_subject(c, "/", srv->server_type, "/broadcast");
      c->subj[S_KICK] = make_subject(c, "/", srv->server_type, "/kick");
      c->subj[S_BIND] = make_subject(c, "/", srv->server_type, "/bindings");
    }
    for (i = 0; i < S_COUNT; i++) {
      int needed = c->set.frontend || (i != S_PUSH && i != S_BCAST && i != S_KICK && i != S_BIND);
      if (needed && !c->subj[i]) {
        rc = POMELO_ERR_NOMEM;
      }
    }
  }
  if (rc == 0) {
    c->inbox_len = strlen(c->subj[S_INBOX]) - 2; /* without ".*" */
    c->self = peer_new(c, srv->server_id, srv->id_len, srv->server_type, srv->type_len);
    rc = c->self ? 0 : POMELO_ERR_NOMEM;
    if (rc == 0) {
      c->self->self = 1;
      c->self->frontend = c->set.frontend != 0;
      c->self->client_port = c->set.client_port;
      rc = set_str(c, &c->self->client_host, c->client_host, strlen(c->client_host));
      rc = rc ? rc : set_str(c, &c->self->hostname, c->hostname, strlen(c->hostname));
      rc = rc ? rc : set_str(c, &c->self->instance, c->instance, strlen(c->instance));
      rc = rc ? rc : peer_insert(c, c->self);
      if (rc) {
        peer_free(c, c->self);
        c->self = NULL;
      }
    }
  }
  if (rc) {
    c->srv = NULL;
    pomelo_cluster_del(c);
    return rc;
  }
  srv->cluster = c;
  *out = c;
  return 0;
}

void pm_cluster_session_gone(pomelo_cluster *c, uint64_t sid) {
  uint32_t k;
  for (k = 0; k < c->types.cap; k++) {
    pm_strmap_ent *e = pm_strmap_slot(&c->types, k);
    pm_type *t = e ? e->val : NULL;
    if (t && t->sticky.count) {
      pm_idmap_del(&t->sticky, &c->alloc, sid);
    }
  }
}

void pm_cluster_detach(pomelo_cluster *c) {
  pm_serving *sv;
  fail_all(c, POMELO_ERR_CLOSED);
  while ((sv = c->serving) != NULL) { /* they stay the requests' until answered */
    c->serving = sv->next;
    sv->c = NULL;
    sv->next = sv->prev = NULL;
  }
  if (c->srv) {
    c->srv->cluster = NULL;
  }
  c->srv = NULL;
}

void pomelo_cluster_del(pomelo_cluster *c) {
  pomelo_allocator a;
  uint32_t k;
  int i;
  if (!c) {
    return;
  }
  a = c->alloc;
  if (c->srv && c->bus_up && c->set.announce_ms && write_record(c) == 0) {
    size_t len;
    const char *data = pomelo_json_writer_data(c->w, &len);
    (void)publish_raw(c, c->subj[S_BYE], data, len);
  }
  if (c->srv) {
    pm_cluster_detach(c);
  } else {
    fail_all(c, POMELO_ERR_CLOSED);
  }
  pm_cluster_channels_free(c);
  for (k = 0; k < c->peers.cap; k++) {
    pm_strmap_ent *e = pm_strmap_slot(&c->peers, k);
    if (e) {
      peer_free(c, e->val);
    }
  }
  for (k = 0; k < c->types.cap; k++) {
    pm_strmap_ent *e = pm_strmap_slot(&c->types, k);
    if (e) {
      type_free(c, e->val);
    }
  }
  pm_strmap_fini(&c->peers, &a);
  pm_strmap_fini(&c->types, &a);
  pm_strmap_fini(&c->channels, &a);
  pm_idmap_fini(&c->flights, &a);
  pm_idmap_fini(&c->per_session, &a);
  pm_free(&a, c->heap);
  pm_free(&a, c->views);
  for (i = 0; i < S_COUNT; i++) {
    pm_free(&a, c->subj[i]);
  }
  pm_free(&a, c->prefix);
  pm_free(&a, c->hostname);
  pm_free(&a, c->client_host);
  pm_free(&a, c->instance);
  pomelo_json_writer_del(c->w);
  pm_free(&a, c);
}

void *pomelo_cluster_user_data(const pomelo_cluster *c) {
  return c->user_data;
}

pomelo_server *pomelo_cluster_server_of(const pomelo_cluster *c) {
  return c->srv;
}

int pomelo_cluster_on(pomelo_cluster *c, const char *route, pomelo_handler_fn fn, void *user_data) {
  if (!c || !c->srv) {
    return POMELO_ERR_INVALID_ARG;
  }
  return pm_server_on_remote(c->srv, route, fn, user_data);
}

void pomelo_cluster_get_stats(const pomelo_cluster *c, pomelo_cluster_stats *out) {
  *out = c->stats;
}

pm_strmap *pm_cluster_channel_map(pomelo_cluster *c) {
  return &c->channels;
}

const pomelo_allocator *pm_cluster_alloc(const pomelo_cluster *c) {
  return &c->alloc;
}

void pm_cluster_member_lost(pomelo_cluster *c, pomelo_cluster_channel *ch, const char *uid,
                            size_t uid_len, const char *fid) {
  if (c->cb.on_member_lost) {
    c->cb.on_member_lost(c, ch, uid, uid_len, fid, c->user_data);
  }
}
