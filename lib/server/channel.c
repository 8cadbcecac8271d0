/* Pushes and channels: every push is encoded once into one frame shared by all recipients.
 * SPDX-License-Identifier: MIT
 */
#include "server/server_int.h"

/* Sets up the push of `route` with `body` (JSON text, or bytes on a binary route) or `tree`:
 * encoded on first use for each wire format among the recipients. */
static int push_init(pm_out *o, pomelo_server *srv, const char *route, const char *body, size_t len,
                     const pomelo_json_value *tree) {
  size_t rl;
  int binary;
  if (!route || (!body && len)) {
    return POMELO_ERR_INVALID_ARG;
  }
  rl = strlen(route);
  binary = pm_server_is_binary(srv, route, rl);
  return pm_out_init(
      o, &srv->alloc, POMELO_MSG_PUSH, 0, route, rl, srv->dict,
      binary ? NULL : pomelo_protos_find(srv->protos, POMELO_PROTOS_SERVER, route, rl),
      (const uint8_t *)body, body ? len : 0, body ? NULL : tree, binary, srv->set.gzip_min);
}

/* Queues the push for one session in its format. Returns 0, POMELO_ERR_STATE, POMELO_ERR_LIMIT,
 * a codec error, or POMELO_ERR_NOMEM (the session was closed). */
static int push_one(pm_out *o, pomelo_session *s) {
  pomelo_frame *f;
  int rc;
  if (!s->conn || pomelo_conn_get_state(s->conn) != POMELO_CONN_WORKING) {
    return POMELO_ERR_STATE;
  }
  rc = pm_out_frame(o, pm_session_push_fmt(s), &f);
  if (rc) {
    return pm_session_fail(s, rc);
  }
  return pm_session_queue_push(s, f);
}

/* push_one for one of many recipients: counts it in *reached when it got the push, keeps the
 * first error in *first. */
static void push_many(pm_out *o, pomelo_session *s, int *reached, int *first) {
  int rc = push_one(o, s);
  if (rc == 0 && *reached < INT32_MAX) {
    (*reached)++;
  }
  *first = *first ? *first : rc;
}

/* Counts what the push met: bodies sent empty for their proto. */
static void push_fini(pm_out *o, pomelo_server *srv) {
  if (o->pb_error) {
    srv->stats.encode_errors++;
  }
  pm_out_fini(o);
}

int pm_session_queue_push(pomelo_session *s, pomelo_frame *f) {
  pomelo_server *srv = s->srv;
  int rc;
  if (!s->conn || pomelo_conn_get_state(s->conn) != POMELO_CONN_WORKING) {
    return POMELO_ERR_STATE;
  }
  if (pomelo_conn_out_len(s->conn) + pomelo_frame_len(f) > srv->set.max_output) {
    if (srv->set.slow_policy == POMELO_SLOW_DISCONNECT) {
      pm_conn_abort(s->conn, POMELO_CLOSE_SLOW_CONSUMER);
      pm_session_touch(s);
    } else {
      srv->stats.push_drops++;
    }
    return POMELO_ERR_LIMIT;
  }
  rc = pomelo_conn_send_frame(s->conn, f);
  if (rc == 0) {
    srv->stats.pushes++;
  }
  return pm_session_fail(s, rc);
}

static int session_push(pomelo_session *s, const char *route, const char *body, size_t len,
                        const pomelo_json_value *tree) {
  pm_out o;
  int rc;
  if (!s->conn || pomelo_conn_get_state(s->conn) != POMELO_CONN_WORKING) {
    return POMELO_ERR_STATE;
  }
  rc = push_init(&o, s->srv, route, body, len, tree);
  if (rc) {
    return rc;
  }
  rc = push_one(&o, s);
  push_fini(&o, s->srv);
  return rc;
}

int pomelo_session_push(pomelo_session *s, const char *route, const char *body, size_t len) {
  if (!body && len) {
    return POMELO_ERR_INVALID_ARG;
  }
  return session_push(s, route, body ? body : "", body ? len : 0, NULL);
}

int pomelo_session_push_value(pomelo_session *s, const char *route,
                              const pomelo_json_value *value) {
  return value ? session_push(s, route, NULL, 0, value) : session_push(s, route, "", 0, NULL);
}

/* A push that reached `reached` sessions, or the error that stopped the first one before
 * anybody got it (an unusable body). */
static int push_result(int reached, int first_err) {
  return reached == 0 && first_err && first_err != POMELO_ERR_STATE &&
                 first_err != POMELO_ERR_LIMIT && !pomelo_err_is_fatal(first_err)
             ? first_err
             : reached;
}

int pomelo_server_push_uids(pomelo_server *srv, const char *const *uids, const size_t *uid_lens,
                            size_t n, const char *route, const char *body, size_t len) {
  pm_out o;
  size_t i;
  int rc, reached = 0, first = 0;
  if ((!uids || !uid_lens) && n) {
    return POMELO_ERR_INVALID_ARG;
  }
  rc = push_init(&o, srv, route, body ? body : "", body ? len : 0, NULL);
  if (rc) {
    return rc;
  }
  for (i = 0; i < n; i++) {
    pm_strmap_ent *e = uids[i] ? pm_strmap_get(&srv->by_uid, uids[i], uid_lens[i]) : NULL;
    pomelo_session *s;
    for (s = e ? e->val : NULL; s; s = s->uid_next) {
      push_many(&o, s, &reached, &first);
    }
  }
  push_fini(&o, srv);
  return push_result(reached, first);
}

int pm_server_push_many(pomelo_server *srv, const uint64_t *sids, size_t n, const char *const *uids,
                        const size_t *uid_lens, size_t m, const char *route, const char *body,
                        size_t len) {
  pm_out o;
  size_t i;
  int rc, reached = 0, first = 0;
  rc = push_init(&o, srv, route, body ? body : "", body ? len : 0, NULL);
  if (rc) {
    return rc;
  }
  for (i = 0; i < n; i++) {
    pomelo_session *s = pomelo_server_session(srv, sids[i]);
    if (s) {
      push_many(&o, s, &reached, &first);
    }
  }
  for (i = 0; i < m; i++) {
    pm_strmap_ent *e = pm_strmap_get(&srv->by_uid, uids[i], uid_lens[i]);
    pomelo_session *s;
    for (s = e ? e->val : NULL; s; s = s->uid_next) {
      push_many(&o, s, &reached, &first);
    }
  }
  push_fini(&o, srv);
  return push_result(reached, first);
}

int pomelo_server_broadcast(pomelo_server *srv, int bound_only, const char *route, const char *body,
                            size_t len) {
  pomelo_session *s;
  pm_out o;
  int rc, reached = 0, first = 0;
  rc = push_init(&o, srv, route, body ? body : "", body ? len : 0, NULL);
  if (rc) {
    return rc;
  }
  for (s = srv->all; s; s = s->all_next) {
    if (!bound_only || s->uid) {
      push_many(&o, s, &reached, &first);
    }
  }
  push_fini(&o, srv);
  return push_result(reached, first);
}

/* ---------------------------------------------------------------------------------------------
 * Channels
 * ------------------------------------------------------------------------------------------- */

/* The member index key: the 8 bytes of the sid, then the uid. */
static char *member_key(const pomelo_allocator *a, uint64_t sid, const char *uid, size_t len,
                        char *stack, size_t stack_len) {
  char *k = len + 8 <= stack_len ? stack : pm_malloc(a, len + 8);
  if (k) {
    memcpy(k, &sid, 8);
    memcpy(k + 8, uid, len);
  }
  return k;
}

int pomelo_channel_new(pomelo_server *srv, const char *name, size_t len, pomelo_channel **out) {
  pm_strmap_ent *e;
  pomelo_channel *ch;
  if (!name || !out) {
    return POMELO_ERR_INVALID_ARG;
  }
  if (pm_strmap_get(&srv->channels, name, len)) {
    return POMELO_ERR_EXISTS;
  }
  ch = pm_calloc(&srv->alloc, sizeof(*ch));
  if (!ch) {
    return POMELO_ERR_NOMEM;
  }
  e = pm_strmap_upsert(&srv->channels, &srv->alloc, name, len);
  if (!e) {
    pm_free(&srv->alloc, ch);
    return POMELO_ERR_NOMEM;
  }
  ch->srv = srv;
  ch->name = e->key; /* stable: the map owns the key copy until the channel goes */
  ch->name_len = len;
  pm_strmap_init(&ch->index);
  e->val = ch;
  *out = ch;
  return 0;
}

pomelo_channel *pomelo_server_channel(const pomelo_server *srv, const char *name, size_t len) {
  pm_strmap_ent *e = name ? pm_strmap_get(&srv->channels, name, len) : NULL;
  return e ? e->val : NULL;
}

const char *pomelo_channel_name(const pomelo_channel *ch, size_t *len) {
  if (len) {
    *len = ch->name_len;
  }
  return ch->name;
}

size_t pomelo_channel_count(const pomelo_channel *ch) {
  return ch->n;
}

int pomelo_channel_member(const pomelo_channel *ch, size_t i, const char **uid, size_t *uid_len,
                          uint64_t *sid) {
  if (i >= ch->n) {
    return POMELO_ERR_NOT_FOUND;
  }
  if (uid) {
    *uid = ch->m[i].uid;
  }
  if (uid_len) {
    *uid_len = ch->m[i].uid_len;
  }
  if (sid) {
    *sid = ch->m[i].sid;
  }
  return 0;
}

/* The session side of a membership. */
static int session_join(pomelo_session *s, pomelo_channel *ch, const pm_member *m) {
  const pomelo_allocator *a = &s->srv->alloc;
  if (s->nchannels == s->cchannels) {
    uint32_t cap = s->cchannels ? s->cchannels * 2 : 2;
    pm_membership *v = pm_realloc(a, s->channels, cap * sizeof(*v));
    if (!v) {
      return POMELO_ERR_NOMEM;
    }
    s->channels = v;
    s->cchannels = cap;
  }
  s->channels[s->nchannels].ch = ch;
  s->channels[s->nchannels].uid = m->uid;
  s->channels[s->nchannels].uid_len = m->uid_len;
  s->nchannels++;
  return 0;
}

static void session_part(pomelo_session *s, const pomelo_channel *ch, const char *uid) {
  uint32_t i;
  for (i = 0; i < s->nchannels; i++) {
    if (s->channels[i].ch == ch && s->channels[i].uid == uid) {
      s->channels[i] = s->channels[--s->nchannels];
      return;
    }
  }
}

int pomelo_channel_add(pomelo_channel *ch, const char *uid, size_t len, uint64_t sid) {
  pomelo_server *srv = ch->srv;
  const pomelo_allocator *a = &srv->alloc;
  pomelo_session *s = pomelo_server_session(srv, sid);
  char stack[128], *key;
  pm_strmap_ent *e;
  pm_member m;
  int rc = 0;
  if (!uid || len == 0 || sid == 0 || len > SIZE_MAX - 8) {
    return POMELO_ERR_INVALID_ARG;
  }
  if (ch->n == UINT32_MAX) {
    return POMELO_ERR_LIMIT;
  }
  key = member_key(a, sid, uid, len, stack, sizeof stack);
  if (!key) {
    return POMELO_ERR_NOMEM;
  }
  if (pm_strmap_get(&ch->index, key, len + 8)) {
    rc = POMELO_ERR_EXISTS;
    goto out;
  }
  if (ch->n == ch->cap) {
    uint32_t cap = ch->cap ? (ch->cap > UINT32_MAX / 2 ? UINT32_MAX : ch->cap * 2) : 8;
    pm_member *v = pm_realloc(a, ch->m, (size_t)cap * sizeof(*v));
    if (!v) {
      rc = POMELO_ERR_NOMEM;
      goto out;
    }
    ch->m = v;
    ch->cap = cap;
  }
  m.sid = sid;
  m.s = s;
  m.uid_len = len;
  m.uid = pm_malloc(a, len + 1);
  if (!m.uid) {
    rc = POMELO_ERR_NOMEM;
    goto out;
  }
  memcpy(m.uid, uid, len);
  m.uid[len] = 0;
  e = pm_strmap_upsert(&ch->index, a, key, len + 8);
  if (!e || (s && session_join(s, ch, &m) != 0)) {
    if (e) {
      pm_strmap_del(&ch->index, a, key, len + 8);
    }
    pm_free(a, m.uid);
    rc = POMELO_ERR_NOMEM;
    goto out;
  }
  e->code = ch->n;
  ch->m[ch->n++] = m;
out:
  if (key != stack) {
    pm_free(a, key);
  }
  return rc;
}

/* Removes member i (swap with the last one). */
static void remove_at(pomelo_channel *ch, uint32_t i) {
  pomelo_server *srv = ch->srv;
  const pomelo_allocator *a = &srv->alloc;
  pm_member gone = ch->m[i];
  char stack[128], *key;
  pomelo_session *s = gone.s;
  if (s) {
    session_part(s, ch, gone.uid);
  }
  key = member_key(a, gone.sid, gone.uid, gone.uid_len, stack, sizeof stack);
  if (key) {
    pm_strmap_del(&ch->index, a, key, gone.uid_len + 8);
  }
  if (key && key != stack) {
    pm_free(a, key);
  }
  ch->n--;
  if (i != ch->n) {
    pm_member *last = &ch->m[ch->n];
    char *lk;
    ch->m[i] = *last;
    lk = member_key(a, last->sid, last->uid, last->uid_len, stack, sizeof stack);
    if (lk) {
      pm_strmap_ent *e = pm_strmap_get(&ch->index, lk, last->uid_len + 8);
      if (e) {
        e->code = i;
      }
      if (lk != stack) {
        pm_free(a, lk);
      }
    }
  }
  pm_free(a, gone.uid);
}

int pomelo_channel_leave(pomelo_channel *ch, const char *uid, size_t len, uint64_t sid) {
  const pomelo_allocator *a = &ch->srv->alloc;
  char stack[128], *key;
  pm_strmap_ent *e;
  if (!uid || len > SIZE_MAX - 8) {
    return POMELO_ERR_INVALID_ARG;
  }
  key = member_key(a, sid, uid, len, stack, sizeof stack);
  if (!key) {
    return POMELO_ERR_NOMEM;
  }
  e = pm_strmap_get(&ch->index, key, len + 8);
  if (key != stack) {
    pm_free(a, key);
  }
  if (!e) {
    return POMELO_ERR_NOT_FOUND;
  }
  remove_at(ch, e->code);
  return 0;
}

void pm_session_leave_channels(pomelo_session *s) {
  while (s->nchannels) {
    pm_membership *mb = &s->channels[s->nchannels - 1];
    uint32_t before = s->nchannels;
    pomelo_channel_leave(mb->ch, mb->uid, mb->uid_len, s->sid);
    if (s->nchannels == before) {
      s->nchannels--; /* the key could not be built (no memory): drop the record anyway */
    }
  }
}

void pm_channel_free(pomelo_channel *ch) {
  pomelo_server *srv = ch->srv;
  uint32_t i;
  for (i = 0; i < ch->n; i++) {
    if (ch->m[i].s) {
      session_part(ch->m[i].s, ch, ch->m[i].uid);
    }
    pm_free(&srv->alloc, ch->m[i].uid);
  }
  pm_free(&srv->alloc, ch->m);
  pm_strmap_fini(&ch->index, &srv->alloc);
  pm_free(&srv->alloc, ch);
}

void pomelo_channel_destroy(pomelo_channel *ch) {
  pomelo_server *srv;
  char *name;
  size_t len;
  if (!ch) {
    return;
  }
  srv = ch->srv;
  name = ch->name;
  len = ch->name_len;
  pm_channel_free(ch);
  pm_strmap_del(&srv->channels, &srv->alloc, name, len); /* frees the name */
}

static int channel_push(pomelo_channel *ch, const char *route, const char *body, size_t len,
                        const pomelo_json_value *tree) {
  pomelo_server *srv = ch->srv;
  pm_out o;
  uint32_t i;
  int rc, reached = 0, first = 0;
  rc = push_init(&o, srv, route, body, len, tree);
  if (rc) {
    return rc;
  }
  for (i = 0; i < ch->n; i++) {
    /* The member keeps its session pointer: sessions leave their channels when released. */
    pomelo_session *s = ch->m[i].s;
    if (s) {
      push_many(&o, s, &reached, &first);
    }
  }
  push_fini(&o, srv);
  return push_result(reached, first);
}

int pomelo_channel_push(pomelo_channel *ch, const char *route, const char *body, size_t len) {
  if (!body && len) {
    return POMELO_ERR_INVALID_ARG;
  }
  return channel_push(ch, route, body ? body : "", body ? len : 0, NULL);
}

int pomelo_channel_push_value(pomelo_channel *ch, const char *route,
                              const pomelo_json_value *value) {
  return value ? channel_push(ch, route, NULL, 0, value) : channel_push(ch, route, "", 0, NULL);
}
