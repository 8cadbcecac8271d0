/* UTF-8 validation (RFC 3629) and encoding.
 * SPDX-License-Identifier: MIT
 */
#include "json/json_int.h"

static inline int is_cont(uint8_t c) {
  return (c & 0xC0u) == 0x80u;
}

int pm_utf8_seq(const uint8_t *p, size_t n, uint32_t *cp) {
  uint8_t c = p[0];
  if (c < 0xC2u) {
    return PM_UTF8_BAD; /* ASCII is not handled here; 80..BF stray, C0/C1 overlong */
  }
  if (c < 0xE0u) {
    if (n < 2 || !is_cont(p[1])) {
      return PM_UTF8_BAD;
    }
    *cp = ((uint32_t)(c & 0x1Fu) << 6) | (p[1] & 0x3Fu);
    return 2;
  }
  if (c < 0xF0u) {
    uint8_t lo = 0x80u, hi = 0xBFu;
    if (c == 0xE0u) {
      lo = 0xA0u; /* below: overlong */
    }
    if (n < 3 || p[1] < lo || p[1] > hi || !is_cont(p[2])) {
      return PM_UTF8_BAD;
    }
    *cp = ((uint32_t)(c & 0x0Fu) << 12) | ((uint32_t)(p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu);
    if (c == 0xEDu && p[1] >= 0xA0u) {
      return PM_UTF8_SURROGATE; /* U+D800..U+DFFF */
    }
    return 3;
  }
  if (c < 0xF5u) {
    uint8_t lo = 0x80u, hi = 0xBFu;
    if (c == 0xF0u) {
      lo = 0x90u; /* below: overlong */
    } else if (c == 0xF4u) {
      hi = 0x8Fu; /* above: beyond U+10FFFF */
    }
    if (n < 4 || p[1] < lo || p[1] > hi || !is_cont(p[2]) || !is_cont(p[3])) {
      return PM_UTF8_BAD;
    }
    *cp = ((uint32_t)(c & 0x07u) << 18) | ((uint32_t)(p[1] & 0x3Fu) << 12) |
          ((uint32_t)(p[2] & 0x3Fu) << 6) | (p[3] & 0x3Fu);
    return 4;
  }
  return PM_UTF8_BAD; /* F5..FF */
}

size_t pm_utf8_put(uint8_t *out, uint32_t cp) {
  if (cp < 0x80u) {
    out[0] = (uint8_t)cp;
    return 1;
  }
  if (cp < 0x800u) {
    out[0] = (uint8_t)(0xC0u | (cp >> 6));
    out[1] = (uint8_t)(0x80u | (cp & 0x3Fu));
    return 2;
  }
  if (cp < 0x10000u) {
    out[0] = (uint8_t)(0xE0u | (cp >> 12));
    out[1] = (uint8_t)(0x80u | ((cp >> 6) & 0x3Fu));
    out[2] = (uint8_t)(0x80u | (cp & 0x3Fu));
    return 3;
  }
  out[0] = (uint8_t)(0xF0u | (cp >> 18));
  out[1] = (uint8_t)(0x80u | ((cp >> 12) & 0x3Fu));
  out[2] = (uint8_t)(0x80u | ((cp >> 6) & 0x3Fu));
  out[3] = (uint8_t)(0x80u | (cp & 0x3Fu));
  return 4;
}

int pomelo_utf8_valid(const uint8_t *s, size_t len, size_t *bad_offset) {
  size_t i = 0;
  if (!s && len > 0) {
    if (bad_offset) {
      *bad_offset = 0;
    }
    return 0;
  }
  while (i < len) {
    uint32_t cp;
    int n;
    if (s[i] < 0x80u) {
      i++;
      continue;
    }
    n = pm_utf8_seq(s + i, len - i, &cp);
    if (n <= 0) {
      if (bad_offset) {
        *bad_offset = i;
      }
      return 0;
    }
    i += (size_t)n;
  }
  return 1;
}
