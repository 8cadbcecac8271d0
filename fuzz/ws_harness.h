/* Shared by the WebSocket fuzz targets: runs pm_ws_feed over an input, whole or split, and
 * records everything the WebSocket layer emitted.
 * SPDX-License-Identifier: MIT
 */
#ifndef POMELO_FUZZ_WS_HARNESS_H
#define POMELO_FUZZ_WS_HARNESS_H

#include <stdlib.h>

#include "testutil.h"
#include "transport/ws.h"

typedef struct ws_run {
  uint8_t out[4096]; /* what was sent (HTTP, control frames: opcode byte then payload) */
  size_t out_len;
  uint32_t payload_sum; /* a checksum of the payload bytes, in order */
  uint64_t payload_len;
  int opened;
  int rc; /* the first non-zero return of pm_ws_feed */
} ws_run;

static uint32_t ws_sum(uint32_t h, const uint8_t *p, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    h = (h ^ p[i]) * 16777619u;
  }
  return h;
}

static void ws_out(ws_run *r, const uint8_t *p, size_t n) {
  size_t take = n < sizeof r->out - r->out_len ? n : sizeof r->out - r->out_len;
  memcpy(r->out + r->out_len, p, take);
  r->out_len += take;
}

static int h_payload(void *ctx, const uint8_t *p, size_t n) {
  ws_run *r = ctx;
  r->payload_sum = ws_sum(r->payload_sum, p, n);
  r->payload_len += n;
  return 0;
}

static int h_send(void *ctx, const uint8_t *p, size_t n) {
  ws_out(ctx, p, n);
  return 0;
}

static int h_control(void *ctx, int opcode, const uint8_t *p, size_t n) {
  uint8_t op = (uint8_t)opcode;
  if (n > 125) {
    abort(); /* control payloads are bounded */
  }
  ws_out(ctx, &op, 1);
  ws_out(ctx, p, n);
  return 0;
}

static void h_open(void *ctx) {
  ((ws_run *)ctx)->opened++;
}

/* Feeds `prefix` then `data` to a new pm_ws (server or client), in pieces whose sizes come from
 * `seed` (0: whole), and checks memory and leaks. */
static void ws_run_input(int client, const uint8_t *prefix, size_t plen, const uint8_t *data,
                         size_t size, uint32_t seed, uint64_t max_message, ws_run *r) {
  test_alloc ta;
  pm_ws *ws;
  pm_ws_io io;
  size_t pos = 0;
  memset(r, 0, sizeof(*r));
  r->payload_sum = 2166136261u;
  test_alloc_init(&ta, 0);
  memset(&io, 0, sizeof io);
  io.ctx = r;
  io.payload = h_payload;
  io.send = h_send;
  io.control = h_control;
  io.open = h_open;
  if (pm_ws_new(&ws, &ta.a, client, max_message, 1024) != 0) {
    abort();
  }
  if (client) {
    static const uint8_t nonce[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    static ws_run scratch;
    memset(&scratch, 0, sizeof scratch);
    io.ctx = &scratch;
    pm_ws_client_start(ws, "h", "/", nonce, &io); /* the request is not part of the record */
    io.ctx = r;
  }
  if (plen && pm_ws_feed(ws, prefix, plen, &io, &ta.a) != 0) {
    abort(); /* the prefix is a valid upgrade */
  }
  while (pos < size && r->rc == 0) {
    size_t n = size - pos;
    int rc;
    if (seed) {
      seed = seed * 1103515245u + 12345u;
      n = n < 1 + (seed >> 16) % 9 ? n : 1 + (seed >> 16) % 9;
    }
    rc = pm_ws_feed(ws, data + pos, n, &io, &ta.a);
    pos += n;
    if (rc != 0) {
      r->rc = rc;
    }
    if (ta.bytes > 4096) {
      abort(); /* the HTTP head limit (1024 here) bounds memory; frames allocate nothing */
    }
  }
  if (r->rc < 0 && r->rc != POMELO_ERR_HTTP && r->rc != POMELO_ERR_HTTP_TOO_LARGE &&
      r->rc != POMELO_ERR_WS_HANDSHAKE && r->rc != POMELO_ERR_WS_PROTOCOL &&
      r->rc != POMELO_ERR_WS_UTF8 && r->rc != POMELO_ERR_WS_TOO_LARGE) {
    abort();
  }
  if (r->payload_len > max_message * 1000 + size) {
    abort();
  }
  pm_ws_del(ws, &ta.a);
  if (ta.live != 0) {
    abort();
  }
}

static void ws_compare(const ws_run *a, const ws_run *b) {
  if (a->rc != b->rc || a->opened != b->opened || a->payload_len != b->payload_len ||
      a->payload_sum != b->payload_sum || a->out_len != b->out_len ||
      memcmp(a->out, b->out, a->out_len) != 0) {
    abort(); /* the split changed the outcome */
  }
}

#endif /* POMELO_FUZZ_WS_HARNESS_H */
