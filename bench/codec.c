/* bench-codec: encode and decode of typical messages, as bench/codec.js does with the npm
 * pomelo-protocol.
 *
 *   bench-codec [--reps R] [--iters K]       (default: 21 runs of 50000 messages)
 *
 * Messages: a request (id 1234, a 30-byte route, a 60-byte JSON body), a push ("onChat", a
 * 100-byte body) and a response (id 1234, a 60-byte body). Encode = pomelo_msg_encode into a
 * buffer, then pomelo_pkg_encode of it into another (the DATA package as it goes on the wire).
 * Decode = pomelo_pkg_decode of that package, then pomelo_msg_decode of its body (both zero-copy:
 * views into the input). Each run times K messages with clock_gettime(CLOCK_MONOTONIC); runs of
 * the six cases alternate, and each figure is the median of its runs. Lines starting with "@" are
 * for bench/micro.sh. SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pomelo/pomelo.h>

#include "benchutil.h"

static const char REQ_ROUTE[] = "chat.chatHandler.sendToChannel";
static const char REQ_BODY[] =
    "{\"rid\":\"room-42\",\"content\":\"hello everyone in the room!!!!\"}";
static const char PUSH_BODY[] =
    "{\"from\":\"u1024\",\"target\":\"*\",\"msg\":\"hello everyone in this room, see you at the "
    "castle gate at 10!\"}";
static const char RESP_BODY[] =
    "{\"code\":200,\"msg\":{\"uid\":\"u1024\",\"room\":\"room-42\",\"seq\":90}}";
_Static_assert(sizeof(REQ_ROUTE) - 1 == 30, "30-byte route");
_Static_assert(sizeof(REQ_BODY) - 1 == 60, "60-byte request body");
_Static_assert(sizeof(PUSH_BODY) - 1 == 100, "100-byte push body");
_Static_assert(sizeof(RESP_BODY) - 1 == 60, "60-byte response body");

static volatile size_t sink;

static void die(const char *what, int rc) {
  fprintf(stderr, "bench-codec: %s: %s\n", what, pomelo_strerror(rc));
  exit(1);
}

/* FNV-1a of the package bytes, printed so that micro.sh can check both sides made the same. */
static uint32_t fnv1a(const uint8_t *p, size_t n) {
  uint32_t h = 2166136261u;
  size_t i;
  for (i = 0; i < n; i++) {
    h = (h ^ p[i]) * 16777619u;
  }
  return h;
}

static double encode_run(const pomelo_msg *m, size_t iters) {
  uint8_t mbuf[512], pbuf[512];
  size_t i, ml, pl, acc = 0;
  uint64_t t0 = bench_now_ns(), t1;
  for (i = 0; i < iters; i++) {
    int rc = pomelo_msg_encode(mbuf, sizeof mbuf, m, &ml);
    rc |= pomelo_pkg_encode(pbuf, sizeof pbuf, POMELO_PKG_DATA, mbuf, ml, &pl);
    acc += pl + (size_t)rc + pbuf[pl - 1];
  }
  t1 = bench_now_ns();
  sink += acc;
  return (double)(t1 - t0) / (double)iters;
}

static double decode_run(const uint8_t *pkg, size_t len, size_t iters) {
  size_t i, acc = 0;
  uint64_t t0 = bench_now_ns(), t1;
  for (i = 0; i < iters; i++) {
    pomelo_pkg p;
    pomelo_msg m;
    size_t used;
    int rc = pomelo_pkg_decode(pkg, len, &p, &used);
    rc |= pomelo_msg_decode(p.body, p.body_len, &m);
    acc += m.body_len + m.route_len + m.id + (size_t)rc;
  }
  t1 = bench_now_ns();
  sink += acc;
  return (double)(t1 - t0) / (double)iters;
}

typedef struct codec_case {
  const char *name;
  const pomelo_msg *m;
  uint8_t pkg[512]; /* the encoded package, input of the decode runs */
  size_t len;
  double *enc, *dec; /* ns per message of each run */
} codec_case;

static void prepare(codec_case *c, int reps) {
  uint8_t mbuf[512];
  size_t ml, used;
  pomelo_pkg p;
  pomelo_msg back;
  int rc = pomelo_msg_encode(mbuf, sizeof mbuf, c->m, &ml);
  rc = rc ? rc : pomelo_pkg_encode(c->pkg, sizeof c->pkg, POMELO_PKG_DATA, mbuf, ml, &c->len);
  rc = rc ? rc : pomelo_pkg_decode(c->pkg, c->len, &p, &used);
  rc = rc ? rc : pomelo_msg_decode(p.body, p.body_len, &back);
  if (rc) {
    die(c->name, rc);
  }
  if (back.type != c->m->type || back.id != c->m->id || back.body_len != c->m->body_len ||
      back.route_len != c->m->route_len) {
    fprintf(stderr, "bench-codec: %s does not decode back\n", c->name);
    exit(1);
  }
  c->enc = malloc((size_t)reps * sizeof(double));
  c->dec = malloc((size_t)reps * sizeof(double));
  if (!c->enc || !c->dec) {
    die("malloc", POMELO_ERR_NOMEM);
  }
}

static void report(codec_case *c, int reps) {
  double e = bench_median(c->enc, (size_t)reps), d = bench_median(c->dec, (size_t)reps);
  printf("  %-9s %6zu %10.1f %9.2f %10.1f %9.2f\n", c->name, c->len, e, 1e3 / e, d, 1e3 / d);
  printf("@ codec c encode.%s %zu %.2f ns/msg\n", c->name, c->len, e);
  printf("@ codec c decode.%s %zu %.2f ns/msg\n", c->name, c->len, d);
  printf("@ codec c check.%s %zu %lu fnv1a\n", c->name, c->len,
         (unsigned long)fnv1a(c->pkg, c->len));
  free(c->enc);
  free(c->dec);
}

int main(int argc, char **argv) {
  int reps = 21, r, i;
  size_t iters = 50000;
  pomelo_msg req, push, resp;
  codec_case cases[3];
  if (bench_reps_iters(argc, argv, "bench-codec", &reps, &iters, 10) != 0) {
    return 2;
  }
  memset(&req, 0, sizeof req);
  req.type = POMELO_MSG_REQUEST;
  req.id = 1234;
  req.route = REQ_ROUTE;
  req.route_len = strlen(REQ_ROUTE);
  req.body = (const uint8_t *)REQ_BODY;
  req.body_len = strlen(REQ_BODY);
  memset(&push, 0, sizeof push);
  push.type = POMELO_MSG_PUSH;
  push.route = "onChat";
  push.route_len = 6;
  push.body = (const uint8_t *)PUSH_BODY;
  push.body_len = strlen(PUSH_BODY);
  memset(&resp, 0, sizeof resp);
  memset(cases, 0, sizeof cases);
  resp.type = POMELO_MSG_RESPONSE;
  resp.id = 1234;
  resp.body = (const uint8_t *)RESP_BODY;
  resp.body_len = strlen(RESP_BODY);

  cases[0].name = "request";
  cases[0].m = &req;
  cases[1].name = "push";
  cases[1].m = &push;
  cases[2].name = "response";
  cases[2].m = &resp;
  for (i = 0; i < 3; i++) {
    prepare(&cases[i], reps);
    encode_run(cases[i].m, iters); /* warm-up */
    decode_run(cases[i].pkg, cases[i].len, iters);
  }
  /* Round-robin: every run of every case samples the same stretch of machine noise. */
  for (r = 0; r < reps; r++) {
    for (i = 0; i < 3; i++) {
      cases[i].enc[r] = encode_run(cases[i].m, iters);
      cases[i].dec[r] = decode_run(cases[i].pkg, cases[i].len, iters);
    }
  }
  printf("libpomelo %s codec benchmark (C; median of %d runs of %zu messages, cases "
         "interleaved)\n",
         pomelo_version(), reps, iters);
  printf("  encode = pomelo_msg_encode + pomelo_pkg_encode; decode = pomelo_pkg_decode + "
         "pomelo_msg_decode\n");
  printf("  %-9s %6s %10s %9s %10s %9s\n", "message", "bytes", "enc ns", "enc M/s", "dec ns",
         "dec M/s");
  for (i = 0; i < 3; i++) {
    report(&cases[i], reps);
  }
  return 0;
}
