/* Base64 (RFC 4648), for WebSocket keys.
 * SPDX-License-Identifier: MIT
 */
#include "transport/hash.h"

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t pm_base64_encode(const uint8_t *in, size_t len, char *out) {
  size_t i, n = 0;
  for (i = 0; i + 2 < len; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
    out[n++] = alphabet[v >> 18];
    out[n++] = alphabet[(v >> 12) & 63];
    out[n++] = alphabet[(v >> 6) & 63];
    out[n++] = alphabet[v & 63];
  }
  if (i < len) {
    uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0);
    out[n++] = alphabet[v >> 18];
    out[n++] = alphabet[(v >> 12) & 63];
    out[n++] = i + 1 < len ? alphabet[(v >> 6) & 63] : '=';
    out[n++] = '=';
  }
  out[n] = 0;
  return n;
}

static int value(char c) {
  if (c >= 'A' && c <= 'Z') {
    return c - 'A';
  }
  if (c >= 'a' && c <= 'z') {
    return c - 'a' + 26;
  }
  if (c >= '0' && c <= '9') {
    return c - '0' + 52;
  }
  if (c == '+') {
    return 62;
  }
  if (c == '/') {
    return 63;
  }
  return -1;
}

long pm_base64_decode(const char *in, size_t len, uint8_t *out, size_t cap) {
  size_t i, n = 0;
  if (len % 4 != 0) {
    return -1;
  }
  for (i = 0; i < len; i += 4) {
    int a = value(in[i]), b = value(in[i + 1]), c, d;
    int last = i + 4 == len;
    int pad2 = last && in[i + 2] == '=' && in[i + 3] == '=';
    int pad1 = last && !pad2 && in[i + 3] == '=';
    c = pad2 ? 0 : value(in[i + 2]);
    d = pad1 || pad2 ? 0 : value(in[i + 3]);
    if (a < 0 || b < 0 || c < 0 || d < 0) {
      return -1;
    }
    if ((pad2 && (b & 15)) || (pad1 && (c & 3))) {
      return -1; /* non-canonical: bits after the last byte must be zero */
    }
    if (n + 3 - (size_t)pad1 - 2u * (size_t)pad2 > cap) {
      return -1;
    }
    out[n++] = (uint8_t)(a << 2 | b >> 4);
    if (!pad2) {
      out[n++] = (uint8_t)((b & 15) << 4 | c >> 2);
    }
    if (!pad1 && !pad2) {
      out[n++] = (uint8_t)((c & 3) << 6 | d);
    }
  }
  return (long)n;
}
