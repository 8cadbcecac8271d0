/* Hash maps: open addressing, linear probing, backward-shift deletion (map.h).
 * SPDX-License-Identifier: MIT
 */
#include "core/map.h"

#define PM_MAP_MIN_CAP 8u
#define PM_MAP_MAX_CAP (1u << 30)

/* Spreads a 32-bit hash over the table (Fibonacci multiplier, then the high half folded in, so
 * consecutive ids land far apart). */
static uint32_t slot_of(uint32_t hash, uint32_t cap) {
  uint32_t h = hash * 0x9E3779B1u;
  return (h ^ (h >> 16)) & (cap - 1u);
}

/* Whether an entry whose home slot is `home` may move back into the hole at `hole` when the
 * probe has reached `j`: it may unless its home lies cyclically in (hole, j]. */
static int may_fill(uint32_t hole, uint32_t j, uint32_t home) {
  if (hole <= j) {
    return home <= hole || home > j;
  }
  return home <= hole && home > j;
}

/* Whether n * size overflows size_t (a function, so the test is not constant-folded into a
 * warning on 64-bit targets). */
static int too_big(size_t n, size_t size) {
  return size && n > SIZE_MAX / size;
}

/* The capacity needed to hold `n` keys at most 3/4 full, or 0 when too large. */
static uint32_t cap_for(uint32_t cap, uint32_t n) {
  uint32_t c = cap ? cap : PM_MAP_MIN_CAP;
  while ((uint64_t)c * 3u / 4u < n) {
    if (c >= PM_MAP_MAX_CAP) {
      return 0;
    }
    c *= 2u;
  }
  return c;
}

/* A 64-bit key folded to the 32-bit hash slot_of spreads. */
static uint32_t id_hash(uint64_t key) {
  return (uint32_t)key ^ (uint32_t)(key >> 32) * 0x85EBCA6Bu;
}

/* ---------------------------------------------------------------------------------------------
 * pm_idmap
 * ------------------------------------------------------------------------------------------- */

void pm_idmap_init(pm_idmap *m) {
  m->slots = NULL;
  m->cap = 0;
  m->count = 0;
}

void pm_idmap_fini(pm_idmap *m, const pomelo_allocator *a) {
  pm_free(a, m->slots);
  pm_idmap_init(m);
}

static int id_rehash(pm_idmap *m, const pomelo_allocator *a, uint32_t ncap) {
  pm_idmap_slot *ns;
  uint32_t i;
  if (too_big(ncap, sizeof(*ns))) {
    return POMELO_ERR_NOMEM;
  }
  ns = pm_calloc(a, (size_t)ncap * sizeof(*ns));
  if (!ns) {
    return POMELO_ERR_NOMEM;
  }
  for (i = 0; i < m->cap; i++) {
    uint32_t j;
    if (!m->slots[i].key) {
      continue;
    }
    j = slot_of(id_hash(m->slots[i].key), ncap);
    while (ns[j].key) {
      j = (j + 1u) & (ncap - 1u);
    }
    ns[j] = m->slots[i];
  }
  pm_free(a, m->slots);
  m->slots = ns;
  m->cap = ncap;
  return 0;
}

int pm_idmap_reserve(pm_idmap *m, const pomelo_allocator *a, uint32_t extra) {
  uint32_t ncap;
  if (extra > UINT32_MAX - m->count) {
    return POMELO_ERR_NOMEM;
  }
  ncap = cap_for(m->cap, m->count + extra);
  if (ncap == 0) {
    return POMELO_ERR_NOMEM;
  }
  return ncap == m->cap ? 0 : id_rehash(m, a, ncap);
}

/* The slot holding `key`, or the empty slot where it would go. Needs cap > 0. */
static uint32_t id_find(const pm_idmap *m, uint64_t key) {
  uint32_t j = slot_of(id_hash(key), m->cap);
  while (m->slots[j].key && m->slots[j].key != key) {
    j = (j + 1u) & (m->cap - 1u);
  }
  return j;
}

void *pm_idmap_get(const pm_idmap *m, uint64_t key) {
  uint32_t j;
  if (!m->cap || !key) {
    return NULL;
  }
  j = id_find(m, key);
  return m->slots[j].key ? m->slots[j].val : NULL;
}

void *pm_idmap_put(pm_idmap *m, uint64_t key, void *val) {
  uint32_t j = id_find(m, key);
  void *old = NULL;
  if (m->slots[j].key) {
    old = m->slots[j].val;
  } else {
    m->slots[j].key = key;
    m->count++;
  }
  m->slots[j].val = val;
  return old;
}

void *pm_idmap_del(pm_idmap *m, const pomelo_allocator *a, uint64_t key) {
  uint32_t hole, j, mask;
  void *val;
  if (!m->cap || !key) {
    return NULL;
  }
  hole = id_find(m, key);
  if (!m->slots[hole].key) {
    return NULL;
  }
  val = m->slots[hole].val;
  mask = m->cap - 1u;
  for (j = (hole + 1u) & mask; m->slots[j].key; j = (j + 1u) & mask) {
    if (may_fill(hole, j, slot_of(id_hash(m->slots[j].key), m->cap))) {
      m->slots[hole] = m->slots[j];
      hole = j;
    }
  }
  m->slots[hole].key = 0;
  m->slots[hole].val = NULL;
  m->count--;
  if (m->cap > PM_MAP_MIN_CAP && m->count <= m->cap / 4u) {
    (void)id_rehash(m, a, m->cap / 2u); /* on failure the larger table stays */
  }
  return val;
}

/* ---------------------------------------------------------------------------------------------
 * pm_strmap
 * ------------------------------------------------------------------------------------------- */

static uint32_t str_hash(const char *s, size_t len) {
  uint32_t h = 2166136261u; /* FNV-1a */
  size_t i;
  for (i = 0; i < len; i++) {
    h = (h ^ (uint8_t)s[i]) * 16777619u;
  }
  return h;
}

void pm_strmap_init(pm_strmap *m) {
  m->slots = NULL;
  m->cap = 0;
  m->count = 0;
}

void pm_strmap_fini(pm_strmap *m, const pomelo_allocator *a) {
  uint32_t i;
  for (i = 0; i < m->cap; i++) {
    pm_free(a, m->slots[i].key);
  }
  pm_free(a, m->slots);
  pm_strmap_init(m);
}

static int str_rehash(pm_strmap *m, const pomelo_allocator *a, uint32_t ncap) {
  pm_strmap_ent *ns;
  uint32_t i;
  if (too_big(ncap, sizeof(*ns))) {
    return POMELO_ERR_NOMEM;
  }
  ns = pm_calloc(a, (size_t)ncap * sizeof(*ns));
  if (!ns) {
    return POMELO_ERR_NOMEM;
  }
  for (i = 0; i < m->cap; i++) {
    uint32_t j;
    if (!m->slots[i].key) {
      continue;
    }
    j = slot_of(m->slots[i].hash, ncap);
    while (ns[j].key) {
      j = (j + 1u) & (ncap - 1u);
    }
    ns[j] = m->slots[i];
  }
  pm_free(a, m->slots);
  m->slots = ns;
  m->cap = ncap;
  return 0;
}

static uint32_t str_find(const pm_strmap *m, const char *key, size_t len, uint32_t hash) {
  uint32_t j = slot_of(hash, m->cap);
  for (;;) {
    const pm_strmap_ent *e = &m->slots[j];
    if (!e->key ||
        (e->hash == hash && e->len == len && (len == 0 || memcmp(e->key, key, len) == 0))) {
      return j;
    }
    j = (j + 1u) & (m->cap - 1u);
  }
}

pm_strmap_ent *pm_strmap_get(const pm_strmap *m, const char *key, size_t len) {
  uint32_t j;
  if (!m->cap) {
    return NULL;
  }
  j = str_find(m, key, len, str_hash(key, len));
  return m->slots[j].key ? &m->slots[j] : NULL;
}

pm_strmap_ent *pm_strmap_upsert(pm_strmap *m, const pomelo_allocator *a, const char *key,
                                size_t len) {
  uint32_t hash = str_hash(key, len), j, ncap;
  pm_strmap_ent *e;
  char *copy;
  if (m->cap) {
    j = str_find(m, key, len, hash);
    if (m->slots[j].key) {
      return &m->slots[j];
    }
  }
  if (m->count == UINT32_MAX || len == SIZE_MAX) {
    return NULL;
  }
  ncap = cap_for(m->cap, m->count + 1u);
  if (ncap == 0 || (ncap != m->cap && str_rehash(m, a, ncap) != 0)) {
    return NULL;
  }
  copy = pm_malloc(a, len + 1u);
  if (!copy) {
    return NULL;
  }
  if (len) {
    memcpy(copy, key, len);
  }
  copy[len] = '\0';
  j = str_find(m, key, len, hash);
  e = &m->slots[j];
  memset(e, 0, sizeof(*e));
  e->key = copy;
  e->len = len;
  e->hash = hash;
  m->count++;
  return e;
}

void pm_strmap_del(pm_strmap *m, const pomelo_allocator *a, const char *key, size_t len) {
  uint32_t hole, j, mask;
  if (!m->cap) {
    return;
  }
  hole = str_find(m, key, len, str_hash(key, len));
  if (!m->slots[hole].key) {
    return;
  }
  pm_free(a, m->slots[hole].key);
  mask = m->cap - 1u;
  for (j = (hole + 1u) & mask; m->slots[j].key; j = (j + 1u) & mask) {
    if (may_fill(hole, j, slot_of(m->slots[j].hash, m->cap))) {
      m->slots[hole] = m->slots[j];
      hole = j;
    }
  }
  memset(&m->slots[hole], 0, sizeof(m->slots[hole]));
  m->count--;
  if (m->count == 0) {
    pm_strmap_fini(m, a); /* empty: no table */
  } else if (m->cap > PM_MAP_MIN_CAP && m->count <= m->cap / 4u) {
    (void)str_rehash(m, a, m->cap / 2u);
  }
}
