/* MD5 (RFC 1321), used only for the route dictionary's and the proto set's versions, which the
 * real server computes as base64(md5(json)). Not for security.
 * SPDX-License-Identifier: MIT
 */
#include <string.h>

#include "transport/hash.h"

static uint32_t rol(uint32_t x, unsigned n) {
  return (x << n) | (x >> (32 - n));
}

/* Per-round shift amounts and the constants floor(abs(sin(i + 1)) * 2^32). */
static const uint8_t shifts[4][4] = {
    {7, 12, 17, 22}, {5, 9, 14, 20}, {4, 11, 16, 23}, {6, 10, 15, 21}};
static const uint32_t K[64] = {
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391};

static void block(pm_md5 *s, const uint8_t *p) {
  uint32_t m[16], a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3];
  int i;
  for (i = 0; i < 16; i++) {
    m[i] = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 |
           (uint32_t)p[4 * i + 3] << 24;
  }
  for (i = 0; i < 64; i++) {
    uint32_t f;
    int g, r = i / 16;
    if (r == 0) {
      f = (b & c) | (~b & d);
      g = i;
    } else if (r == 1) {
      f = (d & b) | (~d & c);
      g = (5 * i + 1) % 16;
    } else if (r == 2) {
      f = b ^ c ^ d;
      g = (3 * i + 5) % 16;
    } else {
      f = c ^ (b | ~d);
      g = (7 * i) % 16;
    }
    f += a + K[i] + m[g];
    a = d;
    d = c;
    c = b;
    b += rol(f, shifts[r][i % 4]);
  }
  s->h[0] += a;
  s->h[1] += b;
  s->h[2] += c;
  s->h[3] += d;
}

void pm_md5_init(pm_md5 *s) {
  s->h[0] = 0x67452301;
  s->h[1] = 0xefcdab89;
  s->h[2] = 0x98badcfe;
  s->h[3] = 0x10325476;
  s->len = 0;
  s->used = 0;
}

void pm_md5_update(pm_md5 *s, const void *data, size_t len) {
  const uint8_t *p = data;
  if (len == 0) {
    return;
  }
  s->len += len;
  if (s->used) {
    size_t take = 64 - s->used < len ? 64 - s->used : len;
    memcpy(s->buf + s->used, p, take);
    s->used += take;
    p += take;
    len -= take;
    if (s->used < 64) {
      return;
    }
    block(s, s->buf);
    s->used = 0;
  }
  for (; len >= 64; p += 64, len -= 64) {
    block(s, p);
  }
  if (len) {
    memcpy(s->buf, p, len);
    s->used = len;
  }
}

void pm_md5_final(pm_md5 *s, uint8_t out[16]) {
  uint64_t bits = s->len * 8;
  uint8_t pad[72] = {0x80};
  size_t padlen = (s->used < 56 ? 56 : 120) - s->used;
  int i;
  for (i = 0; i < 8; i++) {
    pad[padlen + (size_t)i] = (uint8_t)(bits >> (8 * i));
  }
  pm_md5_update(s, pad, padlen + 8);
  for (i = 0; i < 4; i++) {
    out[4 * i] = (uint8_t)s->h[i];
    out[4 * i + 1] = (uint8_t)(s->h[i] >> 8);
    out[4 * i + 2] = (uint8_t)(s->h[i] >> 16);
    out[4 * i + 3] = (uint8_t)(s->h[i] >> 24);
  }
}

size_t pm_md5_base64(const void *data, size_t len, char out[25]) {
  pm_md5 s;
  uint8_t d[16];
  pm_md5_init(&s);
  pm_md5_update(&s, data, len);
  pm_md5_final(&s, d);
  return pm_base64_encode(d, sizeof d, out);
}
