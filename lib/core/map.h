/* libpomelo internal: hash maps shared by the layers (not installed).
 *
 * pm_idmap: 64-bit keys (session ids, request ids, route codes) to pointers; pm_strmap: byte
 * string keys (routes, uids, channel names) to a small generic entry. Both use open addressing
 * with linear probing, a power-of-two table kept at most 3/4 full, deletion by backward shift
 * (no tombstones), and shrink when a quarter or less is used. Every allocation goes through the
 * owner's allocator; an empty map holds no memory.
 * SPDX-License-Identifier: MIT
 */
#ifndef POMELO_LIB_MAP_H
#define POMELO_LIB_MAP_H

#include "core/core.h"

/* ---------------------------------------------------------------------------------------------
 * 64-bit key -> pointer. Key 0 marks an empty slot, so 0 cannot be stored.
 * ------------------------------------------------------------------------------------------- */

typedef struct pm_idmap_slot {
  uint64_t key;
  void *val;
} pm_idmap_slot;

typedef struct pm_idmap {
  pm_idmap_slot *slots; /* NULL until the first reserve */
  uint32_t cap;         /* 0 or a power of two >= 8 */
  uint32_t count;
} pm_idmap;

void pm_idmap_init(pm_idmap *m);
/* Frees the table (not the values). */
void pm_idmap_fini(pm_idmap *m, const pomelo_allocator *a);
/* Makes room for `extra` more keys, so the next `extra` puts of new keys cannot fail. Returns 0
 * or POMELO_ERR_NOMEM (the map is unchanged). */
int pm_idmap_reserve(pm_idmap *m, const pomelo_allocator *a, uint32_t extra);
/* The value stored under `key`, or NULL. */
void *pm_idmap_get(const pm_idmap *m, uint64_t key);
/* Stores `val` under `key` (not 0), replacing and returning any earlier value (else NULL). A new
 * key needs room reserved first. */
void *pm_idmap_put(pm_idmap *m, uint64_t key, void *val);
/* Removes `key` and returns its value (NULL when absent). May shrink the table; a failed
 * shrink keeps the larger one. */
void *pm_idmap_del(pm_idmap *m, const pomelo_allocator *a, uint64_t key);

/* ---------------------------------------------------------------------------------------------
 * Byte string -> entry. Keys are copied (NUL-terminated).
 * ------------------------------------------------------------------------------------------- */

typedef void (*pm_fn)(void); /* a function pointer of any type, cast back by its user */

typedef struct pm_strmap_ent {
  char *key; /* owned copy, NUL-terminated; NULL marks an empty slot */
  size_t len;
  uint32_t hash;
  uint32_t code; /* free for the user: e.g. a route's dictionary code */
  void *val;     /* free for the user */
  pm_fn fn;      /* free for the user: e.g. a callback ... */
  void *ud;      /* ... and its user_data */
} pm_strmap_ent;

typedef struct pm_strmap {
  pm_strmap_ent *slots;
  uint32_t cap;
  uint32_t count;
} pm_strmap;

void pm_strmap_init(pm_strmap *m);
/* Frees the keys and the table (not what the entries point to). */
void pm_strmap_fini(pm_strmap *m, const pomelo_allocator *a);
/* The entry of `key`, or NULL. Entry pointers are valid until the map is next changed. */
pm_strmap_ent *pm_strmap_get(const pm_strmap *m, const char *key, size_t len);
/* Finds or adds `key`; a new entry has every user field zero. Returns NULL when out of memory
 * (the map is then unchanged, apart from possibly a larger table). */
pm_strmap_ent *pm_strmap_upsert(pm_strmap *m, const pomelo_allocator *a, const char *key,
                                size_t len);
/* Removes `key` if present. */
void pm_strmap_del(pm_strmap *m, const pomelo_allocator *a, const char *key, size_t len);
/* Iteration: the entries at slots 0..cap-1 with a non-NULL key. */
static inline pm_strmap_ent *pm_strmap_slot(const pm_strmap *m, uint32_t i) {
  return m->slots && m->slots[i].key ? &m->slots[i] : NULL;
}

#endif /* POMELO_LIB_MAP_H */
