/* libpomelo internal: SHA-1 and base64 for the WebSocket upgrade, MD5 for the versions of the
 * route dictionary and of proto sets (not installed).
 * SPDX-License-Identifier: MIT
 */
#ifndef POMELO_LIB_HASH_H
#define POMELO_LIB_HASH_H

#include <stddef.h>
#include <stdint.h>

typedef struct pm_sha1 {
  uint32_t h[5];
  uint64_t len; /* bytes hashed so far */
  uint8_t buf[64];
  size_t used; /* bytes in buf */
} pm_sha1;

void pm_sha1_init(pm_sha1 *s);
void pm_sha1_update(pm_sha1 *s, const void *data, size_t len);
void pm_sha1_final(pm_sha1 *s, uint8_t out[20]);

typedef struct pm_md5 {
  uint32_t h[4];
  uint64_t len; /* bytes hashed so far */
  uint8_t buf[64];
  size_t used; /* bytes in buf */
} pm_md5;

void pm_md5_init(pm_md5 *s);
void pm_md5_update(pm_md5 *s, const void *data, size_t len);
void pm_md5_final(pm_md5 *s, uint8_t out[16]);
/* base64(md5(data)), as the real server's dictVersion and protos version: 24 characters and a
 * NUL into `out`; returns 24. */
size_t pm_md5_base64(const void *data, size_t len, char out[25]);

/* Base64 (RFC 4648, standard alphabet, with padding). The encoder writes 4*ceil(len/3) bytes
 * plus a NUL and returns the length without it. */
size_t pm_base64_encode(const uint8_t *in, size_t len, char *out);
/* Decodes canonical padded base64; returns the byte count or -1 on any malformed input
 * (bad character, bad padding, non-zero trailing bits, output longer than cap). */
long pm_base64_decode(const char *in, size_t len, uint8_t *out, size_t cap);

#endif /* POMELO_LIB_HASH_H */
