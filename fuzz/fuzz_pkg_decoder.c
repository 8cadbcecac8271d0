/* Fuzz target: the streaming package decoder.
 *
 * Input: byte 0 picks the body limit and flags, byte 1 seeds the chunk sizes, the rest is the
 * stream. The stream is decoded fed whole and fed in chunks; both must yield the same packages
 * and the same final error, memory must stay bounded by the bytes fed, and nothing may leak.
 * SPDX-License-Identifier: MIT
 */
#include <pomelo/codec.h>

#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define MAX_PKGS 64

typedef struct seen {
  int n;
  int err;
  int type[MAX_PKGS];
  size_t len[MAX_PKGS];
  uint32_t sum[MAX_PKGS];
} seen;

static uint32_t checksum(const uint8_t *p, size_t n) {
  uint32_t h = 2166136261u;
  size_t i;
  for (i = 0; i < n; i++) {
    h = (h ^ p[i]) * 16777619u;
  }
  return h;
}

static void run(const uint8_t *data, size_t size, size_t limit, unsigned flags, uint32_t seed,
                seen *out) {
  test_alloc ta;
  pomelo_pkg_decoder *dec = NULL;
  size_t pos = 0;
  test_alloc_init(&ta, 0);
  memset(out, 0, sizeof(*out));
  if (pomelo_pkg_decoder_new(&dec, &ta.a, limit, flags) != 0) {
    abort();
  }
  while (pos < size && !out->err) {
    size_t chunk = size - pos, off = 0;
    if (seed) {
      seed = seed * 1103515245u + 12345u;
      chunk = (chunk < 1 + (seed >> 16) % 7 ? chunk : 1 + (seed >> 16) % 7);
    }
    while (off < chunk || (off == chunk && chunk == 0)) {
      pomelo_pkg pkg;
      size_t used = 0;
      int rc = pomelo_pkg_decoder_feed(dec, data + pos + off, chunk - off, &used, &pkg);
      if (used > chunk - off) {
        abort();
      }
      off += used;
      if (rc < 0) {
        out->err = rc;
        break;
      }
      if (rc == 1) {
        if (pkg.body_len > (limit ? limit : POMELO_PKG_DEFAULT_LIMIT) || !pkg.body) {
          abort();
        }
        if (out->n < MAX_PKGS) {
          out->type[out->n] = pkg.type;
          out->len[out->n] = pkg.body_len;
          out->sum[out->n] = checksum(pkg.body, pkg.body_len);
        }
        out->n++;
      } else if (off != chunk) {
        abort(); /* 0 means all input consumed */
      } else {
        break;
      }
    }
    pos += off;
    /* Memory follows the bytes that arrived: at most twice the fed bytes plus a small floor. */
    if (ta.bytes > 2 * (pos + 1) + 512) {
      abort();
    }
    if (out->err) {
      break;
    }
  }
  pomelo_pkg_decoder_del(dec);
  if (ta.live != 0) {
    abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const size_t limits[4] = {0, 16, 300, POMELO_PKG_BODY_MAX};
  seen whole, split;
  size_t limit;
  unsigned flags;
  uint32_t seed;
  int i;
  if (size < 2) {
    return 0;
  }
  limit = limits[data[0] & 3];
  flags = (data[0] & 4) ? POMELO_PKG_DECODER_ALLOW_UNKNOWN : 0;
  seed = data[1] | 1u;
  run(data + 2, size - 2, limit, flags, 0, &whole);
  run(data + 2, size - 2, limit, flags, seed, &split);
  if (whole.n != split.n || whole.err != split.err) {
    abort();
  }
  for (i = 0; i < whole.n && i < MAX_PKGS; i++) {
    if (whole.type[i] != split.type[i] || whole.len[i] != split.len[i] ||
        whole.sum[i] != split.sum[i]) {
      abort();
    }
  }
  return 0;
}
