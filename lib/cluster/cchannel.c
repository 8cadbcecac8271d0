/* Cluster channels: members (uid, frontend id) grouped by frontend, so that a push is one bus
 * message per frontend with that frontend's uids, and each frontend encodes its frame once.
 * SPDX-License-Identifier: MIT
 */
#include "cluster/cluster_int.h"

typedef struct pm_group {
  char *fid;
  pm_str *uids; /* owned copies (NUL-terminated) */
  size_t n, cap;
} pm_group;

struct pomelo_cluster_channel {
  pomelo_cluster *c;
  char *name;
  size_t name_len;
  pm_group *g;
  size_t ng, cg;
  size_t count;
  pm_strmap index; /* fid NUL uid -> code: position in its group + 1, val: its group's index */
};

/* The index key "fid\0uid" in a new allocation. */
static char *member_key(const pomelo_allocator *a, const char *fid, const char *uid, size_t len,
                        size_t *klen) {
  size_t fl = strlen(fid);
  char *k = pm_malloc(a, fl + 1 + len + 1);
  if (k) {
    memcpy(k, fid, fl + 1);
    memcpy(k + fl + 1, uid, len);
    k[fl + 1 + len] = 0;
    *klen = fl + 1 + len;
  }
  return k;
}

static pm_strmap_ent *index_get(const pomelo_cluster_channel *ch, const char *fid, const char *uid,
                                size_t len) {
  const pomelo_allocator *a = pm_cluster_alloc(ch->c);
  size_t kl;
  char *k = member_key(a, fid, uid, len, &kl);
  pm_strmap_ent *e = k ? pm_strmap_get(&ch->index, k, kl) : NULL;
  pm_free(a, k);
  return e;
}

static void index_set(pomelo_cluster_channel *ch, size_t gi, size_t pos) {
  pm_strmap_ent *e = index_get(ch, ch->g[gi].fid, ch->g[gi].uids[pos].p, ch->g[gi].uids[pos].len);
  if (e) {
    e->code = (uint32_t)(pos + 1);
    e->val = (void *)(uintptr_t)gi;
  }
}

int pomelo_cluster_channel_new(pomelo_cluster *c, const char *name, size_t len,
                               pomelo_cluster_channel **out) {
  const pomelo_allocator *a;
  pomelo_cluster_channel *ch;
  pm_strmap_ent *e;
  if (!c || !name || len == 0 || !out) {
    return POMELO_ERR_INVALID_ARG;
  }
  a = pm_cluster_alloc(c);
  if (pm_strmap_get(pm_cluster_channel_map(c), name, len)) {
    return POMELO_ERR_EXISTS;
  }
  ch = pm_calloc(a, sizeof(*ch));
  if (!ch) {
    return POMELO_ERR_NOMEM;
  }
  e = pm_strmap_upsert(pm_cluster_channel_map(c), a, name, len);
  if (!e) {
    pm_free(a, ch);
    return POMELO_ERR_NOMEM;
  }
  ch->c = c;
  ch->name = e->key;
  ch->name_len = len;
  pm_strmap_init(&ch->index);
  e->val = ch;
  *out = ch;
  return 0;
}

pomelo_cluster_channel *pomelo_cluster_channel_get(const pomelo_cluster *c, const char *name,
                                                   size_t len) {
  pm_strmap_ent *e;
  if (!c || !name) {
    return NULL;
  }
  e = pm_strmap_get(pm_cluster_channel_map((pomelo_cluster *)(uintptr_t)c), name, len);
  return e ? e->val : NULL;
}

static void group_free(const pomelo_allocator *a, pm_group *g) {
  size_t i;
  for (i = 0; i < g->n; i++) {
    pm_free(a, (char *)(uintptr_t)g->uids[i].p);
  }
  pm_free(a, g->uids);
  pm_free(a, g->fid);
}

static void channel_free(pomelo_cluster_channel *ch) {
  const pomelo_allocator *a = pm_cluster_alloc(ch->c);
  size_t i;
  for (i = 0; i < ch->ng; i++) {
    group_free(a, &ch->g[i]);
  }
  pm_free(a, ch->g);
  pm_strmap_fini(&ch->index, a);
  pm_free(a, ch);
}

void pomelo_cluster_channel_destroy(pomelo_cluster_channel *ch) {
  pomelo_cluster *c;
  size_t len;
  if (!ch) {
    return;
  }
  c = ch->c;
  len = ch->name_len;
  {
    /* The map owns the name: delete the entry after the channel is gone. */
    char buf[256], *name = len < sizeof buf ? buf : pm_malloc(pm_cluster_alloc(c), len);
    if (!name) {
      pm_strmap_ent *e = pm_strmap_get(pm_cluster_channel_map(c), ch->name, len);
      if (e) {
        e->val = NULL; /* out of memory: leave an empty entry rather than a dangling one */
      }
      channel_free(ch);
      return;
    }
    memcpy(name, ch->name, len);
    channel_free(ch);
    pm_strmap_del(pm_cluster_channel_map(c), pm_cluster_alloc(c), name, len);
    if (name != buf) {
      pm_free(pm_cluster_alloc(c), name);
    }
  }
}

size_t pomelo_cluster_channels(const pomelo_cluster *c, pomelo_cluster_channel **out, size_t max) {
  pm_strmap *m = pm_cluster_channel_map((pomelo_cluster *)(uintptr_t)c);
  size_t n = 0;
  uint32_t k;
  for (k = 0; k < m->cap; k++) {
    pm_strmap_ent *e = pm_strmap_slot(m, k);
    if (e && e->val) {
      if (n < max) {
        out[n] = e->val;
      }
      n++;
    }
  }
  return n;
}

void pm_cluster_channels_free(pomelo_cluster *c) {
  pm_strmap *m = pm_cluster_channel_map(c);
  uint32_t k;
  for (k = 0; k < m->cap; k++) {
    pm_strmap_ent *e = pm_strmap_slot(m, k);
    if (e && e->val) {
      channel_free(e->val);
    }
  }
}

int pomelo_cluster_channel_add(pomelo_cluster_channel *ch, const char *uid, size_t len,
                               const char *frontend_id) {
  const pomelo_allocator *a;
  pm_strmap_ent *e;
  pm_group *g = NULL;
  size_t i, kl;
  char *k, *u;
  if (!ch || !uid || len == 0 || !frontend_id || !*frontend_id) {
    return POMELO_ERR_INVALID_ARG;
  }
  a = pm_cluster_alloc(ch->c);
  for (i = 0; i < ch->ng; i++) {
    if (strcmp(ch->g[i].fid, frontend_id) == 0) {
      g = &ch->g[i];
      break;
    }
  }
  if (g && index_get(ch, frontend_id, uid, len)) {
    return POMELO_ERR_EXISTS;
  }
  if (!g) {
    if (ch->ng == ch->cg) {
      size_t cap = ch->cg ? ch->cg * 2 : 4;
      pm_group *v = pm_realloc(a, ch->g, cap * sizeof(*v));
      if (!v) {
        return POMELO_ERR_NOMEM;
      }
      ch->g = v;
      ch->cg = cap;
    }
    g = &ch->g[ch->ng];
    memset(g, 0, sizeof *g);
    g->fid = pm_malloc(a, strlen(frontend_id) + 1);
    if (!g->fid) {
      return POMELO_ERR_NOMEM;
    }
    memcpy(g->fid, frontend_id, strlen(frontend_id) + 1);
    ch->ng++;
    i = ch->ng - 1;
  }
  if (g->n == g->cap) {
    size_t cap = g->cap ? g->cap * 2 : 8;
    pm_str *v = pm_realloc(a, g->uids, cap * sizeof(*v));
    if (!v) {
      return POMELO_ERR_NOMEM; /* an empty group stays: harmless */
    }
    g->uids = v;
    g->cap = cap;
  }
  k = member_key(a, frontend_id, uid, len, &kl);
  u = pm_malloc(a, len + 1);
  e = k && u ? pm_strmap_upsert(&ch->index, a, k, kl) : NULL;
  pm_free(a, k);
  if (!e) {
    pm_free(a, u);
    return POMELO_ERR_NOMEM;
  }
  memcpy(u, uid, len);
  u[len] = 0;
  g->uids[g->n].p = u;
  g->uids[g->n].len = len;
  g->n++;
  e->code = (uint32_t)g->n;
  e->val = (void *)(uintptr_t)i;
  ch->count++;
  return 0;
}

/* Removes member `pos` of group `gi` (its index entry is already gone). */
static void remove_at(pomelo_cluster_channel *ch, size_t gi, size_t pos) {
  const pomelo_allocator *a = pm_cluster_alloc(ch->c);
  pm_group *g = &ch->g[gi];
  pm_free(a, (char *)(uintptr_t)g->uids[pos].p);
  g->n--;
  ch->count--;
  if (pos != g->n) {
    g->uids[pos] = g->uids[g->n];
    index_set(ch, gi, pos);
  }
}

int pomelo_cluster_channel_leave(pomelo_cluster_channel *ch, const char *uid, size_t len,
                                 const char *frontend_id) {
  const pomelo_allocator *a;
  pm_strmap_ent *e;
  size_t gi, pos, kl;
  char *k;
  if (!ch || !uid || !frontend_id) {
    return POMELO_ERR_INVALID_ARG;
  }
  a = pm_cluster_alloc(ch->c);
  e = index_get(ch, frontend_id, uid, len);
  if (!e) {
    return POMELO_ERR_NOT_FOUND;
  }
  gi = (size_t)(uintptr_t)e->val;
  pos = e->code - 1;
  k = member_key(a, frontend_id, uid, len, &kl);
  if (!k) {
    return POMELO_ERR_NOMEM;
  }
  pm_strmap_del(&ch->index, a, k, kl);
  pm_free(a, k);
  remove_at(ch, gi, pos);
  return 0;
}

size_t pomelo_cluster_channel_count(const pomelo_cluster_channel *ch) {
  return ch ? ch->count : 0;
}

int pomelo_cluster_channel_member(const pomelo_cluster_channel *ch, size_t i, const char **uid,
                                  size_t *uid_len, const char **frontend_id) {
  size_t gi;
  if (!ch) {
    return POMELO_ERR_NOT_FOUND;
  }
  for (gi = 0; gi < ch->ng; gi++) {
    if (i < ch->g[gi].n) {
      if (uid) {
        *uid = ch->g[gi].uids[i].p;
      }
      if (uid_len) {
        *uid_len = ch->g[gi].uids[i].len;
      }
      if (frontend_id) {
        *frontend_id = ch->g[gi].fid;
      }
      return 0;
    }
    i -= ch->g[gi].n;
  }
  return POMELO_ERR_NOT_FOUND;
}

int pomelo_cluster_channel_has(const pomelo_cluster_channel *ch, const char *uid, size_t len) {
  size_t gi;
  for (gi = 0; ch && uid && gi < ch->ng; gi++) {
    if (ch->g[gi].n && index_get(ch, ch->g[gi].fid, uid, len)) {
      return 1;
    }
  }
  return 0;
}

const char *pomelo_cluster_channel_name(const pomelo_cluster_channel *ch, size_t *len) {
  if (len) {
    *len = ch->name_len;
  }
  return ch->name;
}

int pomelo_cluster_channel_push(pomelo_cluster_channel *ch, const char *route, const char *body,
                                size_t len) {
  size_t gi;
  int sent = 0, first = 0;
  if (!ch || !route || (!body && len) || strlen(route) > POMELO_MSG_ROUTE_MAX) {
    return POMELO_ERR_INVALID_ARG;
  }
  if (!body || !len) {
    body = "{}";
    len = 2;
  }
  for (gi = 0; gi < ch->ng; gi++) {
    int rc;
    if (ch->g[gi].n == 0) {
      continue;
    }
    rc = pm_cluster_push_group(ch->c, ch->g[gi].fid, ch->g[gi].uids, ch->g[gi].n, route, body, len);
    if (rc == 0) {
      sent++;
    } else if (!first) {
      first = rc;
    }
  }
  return sent == 0 && first ? first : sent;
}

void pm_cluster_channels_drop_frontend(pomelo_cluster *c, const char *fid) {
  pm_strmap *m = pm_cluster_channel_map(c);
  const pomelo_allocator *a = pm_cluster_alloc(c);
  uint32_t k;
  for (k = 0; k < m->cap; k++) {
    pm_strmap_ent *e = pm_strmap_slot(m, k);
    pomelo_cluster_channel *ch = e ? e->val : NULL;
    size_t gi;
    if (!ch) {
      continue;
    }
    for (gi = 0; gi < ch->ng && strcmp(ch->g[gi].fid, fid) != 0; gi++) {
    }
    if (gi == ch->ng) {
      continue;
    }
    /* Empty the group member by member (the callback may look at the channel and push to it). */
    while (ch->g[gi].n) {
      pm_group *g = &ch->g[gi];
      size_t pos = g->n - 1, kl, ul = g->uids[pos].len;
      char *uid = (char *)(uintptr_t)g->uids[pos].p;
      char *key = member_key(a, g->fid, uid, ul, &kl);
      if (key) {
        pm_strmap_del(&ch->index, a, key, kl);
        pm_free(a, key);
      }
      g->n--;
      ch->count--;
      pm_cluster_member_lost(c, ch, uid, ul, fid); /* it must not destroy channels */
      pm_free(a, uid);
    }
  }
}
