/* SHA-1 (FIPS 180-4), used only to compute Sec-WebSocket-Accept.
 * SPDX-License-Identifier: MIT
 */
#include <string.h>

#include "transport/hash.h"

static uint32_t rol(uint32_t x, unsigned n) {
  return (x << n) | (x >> (32 - n));
}

static void block(pm_sha1 *s, const uint8_t *p) {
  uint32_t w[80], a, b, c, d, e, t;
  int i;
  for (i = 0; i < 16; i++) {
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
           (uint32_t)p[4 * i + 3];
  }
  for (i = 16; i < 80; i++) {
    w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
  }
  a = s->h[0];
  b = s->h[1];
  c = s->h[2];
  d = s->h[3];
  e = s->h[4];
  for (i = 0; i < 80; i++) {
    uint32_t f, k;
    if (i < 20) {
      f = (b & c) | (~b & d);
      k = 0x5A827999u;
    } else if (i < 40) {
      f = b ^ c ^ d;
      k = 0x6ED9EBA1u;
    } else if (i < 60) {
      f = (b & c) | (b & d) | (c & d);
      k = 0x8F1BBCDCu;
    } else {
      f = b ^ c ^ d;
      k = 0xCA62C1D6u;
    }
    t = rol(a, 5) + f + e + k + w[i];
    e = d;
    d = c;
    c = rol(b, 30);
    b = a;
    a = t;
  }
  s->h[0] += a;
  s->h[1] += b;
  s->h[2] += c;
  s->h[3] += d;
  s->h[4] += e;
}

void pm_sha1_init(pm_sha1 *s) {
  s->h[0] = 0x67452301u;
  s->h[1] = 0xEFCDAB89u;
  s->h[2] = 0x98BADCFEu;
  s->h[3] = 0x10325476u;
  s->h[4] = 0xC3D2E1F0u;
  s->len = 0;
  s->used = 0;
}

void pm_sha1_update(pm_sha1 *s, const void *data, size_t len) {
  const uint8_t *p = data;
  s->len += len;
  while (len > 0) {
    size_t take = 64 - s->used;
    if (take > len) {
      take = len;
    }
    memcpy(s->buf + s->used, p, take);
    s->used += take;
    p += take;
    len -= take;
    if (s->used == 64) {
      block(s, s->buf);
      s->used = 0;
    }
  }
}

void pm_sha1_final(pm_sha1 *s, uint8_t out[20]) {
  uint64_t bits = s->len * 8;
  uint8_t pad = 0x80;
  uint8_t lenbuf[8];
  int i;
  pm_sha1_update(s, &pad, 1);
  pad = 0;
  while (s->used != 56) {
    pm_sha1_update(s, &pad, 1);
  }
  for (i = 0; i < 8; i++) {
    lenbuf[i] = (uint8_t)(bits >> (56 - 8 * i));
  }
  pm_sha1_update(s, lenbuf, 8);
  for (i = 0; i < 20; i++) {
    out[i] = (uint8_t)(s->h[i / 4] >> (24 - 8 * (i % 4)));
  }
}
