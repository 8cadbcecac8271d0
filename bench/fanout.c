/* bench-fanout: the cost of a channel push to N members, and the memory of an idle session.
 *
 *   bench-fanout [--reps R] [--sizes N1,N2,...]      (default: 21 reps; 1000,10000,100000)
 *
 * For each N, one pomelo_server (public API only, heartbeat 3 s) gets N sessions through the
 * handshake and ACK, half over raw TCP and half over WebSocket (HTTP upgrade, then masked client
 * frames), binds each to a uid and adds it to one channel. Then pomelo_channel_push of a 100-byte
 * body on "onChat", timed; the on_output callback collects the sessions to write (as an event
 * loop would arm write interest); then every such session is drained (pomelo_session_out_iov +
 * pomelo_session_out_consume, no system call), timed separately. The same for
 * pomelo_server_push_uids (what a frontend does with the uid list of a backend's channel push),
 * for TCP-only and WebSocket-only channels, and for bursts of 4 pushes between drains. A run is
 * ceil(20000 / N) such pushes (so that small N are not single short samples); the cases
 * alternate run by run, 3 warm-up runs then R; figures are medians of the R runs, times from
 * clock_gettime(CLOCK_MONOTONIC). Memory: the live bytes of the server's counting allocator at
 * each step of the set-up, minus the empty server, divided by the sessions of the step. Lines
 * starting with "@" are for bench/micro.sh.
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include <pomelo/pomelo.h>

#include "benchutil.h"

#define WARMUP 3
#define BURST 4
#define NCASES 5
/* A run pushes at least this many messages in all (several pushes when N is small). */
#define BATCH_MEMBERS 20000u

static const char ROUTE[] = "onChat";
static const char BODY[] =
    "{\"from\":\"u1024\",\"target\":\"*\",\"msg\":\"hello everyone in this room, see you at the "
    "castle gate at 10!\"}";
_Static_assert(sizeof(BODY) - 1 == 100, "the push body is 100 bytes");

static const char HS_JSON[] = "{\"sys\":{\"type\":\"js-websocket\",\"version\":\"0.0.1\"}}";
static const char UPGRADE[] =
    "GET / HTTP/1.1\r\nHost: bench.example\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n\r\n";

typedef struct bench {
  bench_alloc ta;
  pomelo_server *srv;
  pomelo_session **sess;
  size_t n;
  char *uid_text; /* "u0\0u1\0..." */
  const char **uids;
  size_t *uid_lens;
  uint64_t now; /* ms, moved on by each drain */
} bench;

/* The client's bytes, built once: raw TCP packages, and the same inside masked WS frames. */
static uint8_t tcp_hs[128], tcp_ack[4], ws_hs[160], ws_ack[16];
static size_t tcp_hs_len, tcp_ack_len, ws_hs_len, ws_ack_len;

static void die(const char *what, int rc) {
  fprintf(stderr, "bench-fanout: %s: %s\n", what, rc ? pomelo_strerror(rc) : "failed");
  exit(1);
}

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) {
    die("out of memory", 0);
  }
  return p;
}

/* A masked client frame (binary, FIN) around `len` bytes. */
static size_t ws_client_frame(uint8_t *out, const uint8_t *payload, size_t len) {
  static const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
  size_t hl = 2, i;
  out[0] = 0x82;
  if (len < 126) {
    out[1] = (uint8_t)(0x80 | len);
  } else {
    out[1] = 0x80 | 126;
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
    hl = 4;
  }
  memcpy(out + hl, mask, 4);
  hl += 4;
  for (i = 0; i < len; i++) {
    out[hl + i] = payload[i] ^ mask[i % 4];
  }
  return hl + len;
}

static void build_client_bytes(void) {
  int rc = pomelo_pkg_encode(tcp_hs, sizeof tcp_hs, POMELO_PKG_HANDSHAKE, (const uint8_t *)HS_JSON,
                             strlen(HS_JSON), &tcp_hs_len);
  rc = rc ? rc
          : pomelo_pkg_encode(tcp_ack, sizeof tcp_ack, POMELO_PKG_HANDSHAKE_ACK, NULL, 0,
                              &tcp_ack_len);
  if (rc) {
    die("pomelo_pkg_encode", rc);
  }
  ws_hs_len = ws_client_frame(ws_hs, tcp_hs, tcp_hs_len);
  ws_ack_len = ws_client_frame(ws_ack, tcp_ack, tcp_ack_len);
}

/* Writes nothing anywhere: takes the session's whole output as a writev would, and consumes
 * it. Returns the bytes drained. */
static size_t drain_session(pomelo_session *s, uint64_t now) {
  struct iovec iov[16];
  size_t total = 0;
  int k, i;
  while (pomelo_session_out_len(s) > 0) {
    size_t got = 0;
    k = pomelo_session_out_iov(s, iov, 16);
    for (i = 0; i < k; i++) {
      got += iov[i].iov_len;
    }
    pomelo_session_out_consume(s, got, now);
    total += got;
  }
  return total;
}

static void feed(pomelo_session *s, const void *data, size_t len, uint64_t now) {
  int rc = pomelo_session_feed(s, data, len, now);
  if (rc) {
    die("pomelo_session_feed", rc);
  }
  drain_session(s, now);
}

/* Accepts a session and takes it through the handshake and the ACK, as a client would. */
static pomelo_session *join(bench *b, int ws) {
  pomelo_session *s;
  int rc = pomelo_server_accept(b->srv, b->now, NULL, &s);
  if (rc) {
    die("pomelo_server_accept", rc);
  }
  if (ws) {
    feed(s, UPGRADE, strlen(UPGRADE), b->now);
    feed(s, ws_hs, ws_hs_len, b->now);
    feed(s, ws_ack, ws_ack_len, b->now);
  } else {
    feed(s, tcp_hs, tcp_hs_len, b->now);
    feed(s, tcp_ack, tcp_ack_len, b->now);
  }
  if (pomelo_session_state(s) != POMELO_CONN_WORKING) {
    die("session not working after the handshake", 0);
  }
  return s;
}

/* ---------------------------------------------------------------------------------------------
 * Memory
 * ------------------------------------------------------------------------------------------- */

typedef struct snap {
  size_t bytes, small_bytes;
  long live;
  long *by_size;
} snap;

static void take(const bench *b, snap *s) {
  s->bytes = b->ta.bytes;
  s->small_bytes = b->ta.small_bytes;
  s->live = b->ta.live;
  if (!s->by_size) {
    s->by_size = xmalloc(BENCH_SMALL * sizeof(long));
  }
  memcpy(s->by_size, b->ta.by_size, BENCH_SMALL * sizeof(long));
}

/* One step of the set-up: bytes per session, split into small blocks (the per-session objects,
 * by size) and large ones (the server's tables: session map, timer heap, uid map, member
 * arrays, growing by doubling). */
static void print_step(const char *key, const char *what, const snap *a, const snap *z,
                       size_t count, size_t n) {
  double per = ((double)z->bytes - (double)a->bytes) / (double)count;
  double small = ((double)z->small_bytes - (double)a->small_bytes) / (double)count;
  double blocks = (double)(z->live - a->live) / (double)count;
  size_t sz, shown = 0;
  double other = 0;
  printf("  %-36s %8.1f B/session  (%.2f blocks; tables %.1f B)  small blocks:", what, per, blocks,
         per - small);
  for (sz = 0; sz < BENCH_SMALL; sz++) {
    long d = z->by_size[sz] - a->by_size[sz];
    if (d == 0) {
      continue;
    }
    if ((double)(d < 0 ? -d : d) >= 0.2 * (double)count && shown < 6) {
      printf("%s %.2f x %zu B", shown ? "," : "", (double)d / (double)count, sz);
      shown++;
    } else {
      other += (double)d * (double)sz;
    }
  }
  if (other != 0) {
    printf("%s %.1f B in other sizes", shown ? "," : "", other / (double)count);
  }
  printf("\n");
  printf("@ fanout c mem.%s %zu %.1f B/session\n", key, n, per);
}

/* ---------------------------------------------------------------------------------------------
 * Timing
 * ------------------------------------------------------------------------------------------- */

typedef struct push_case {
  const char *key;    /* for the "@" lines */
  const char *name;   /* for the table */
  pomelo_channel *ch; /* NULL: pomelo_server_push_uids over every uid */
  size_t members;
  int burst;                     /* pushes between drains */
  double *push, *drain, *allocs; /* per run: ns per member per push, ns per member per drain,
                                    allocator calls per push */
  size_t bytes_per_member;       /* drained per member per drain */
} push_case;

static int do_push(bench *b, const push_case *pc) {
  if (pc->ch) {
    return pomelo_channel_push(pc->ch, ROUTE, BODY, strlen(BODY));
  }
  return pomelo_server_push_uids(b->srv, b->uids, b->uid_lens, b->n, ROUTE, BODY, strlen(BODY));
}

/* The pushes of one run for `members`. */
static int batch_for(size_t members) {
  return members >= BATCH_MEMBERS ? 1 : (int)((BATCH_MEMBERS + members - 1) / members);
}

/* One run of a case: `batch` times, push (timed) then drain every session the ready list gives
 * (timed apart), as an event loop does. Run r < 0 is a warm-up, not recorded. */
static void run_case(bench *b, push_case *pc, int r, int batch) {
  uint64_t tpush = 0, tdrain = 0;
  long calls = 0;
  size_t drained = 0;
  int j, k;
  for (j = 0; j < batch; j++) {
    uint64_t t0, t1, t2, t3;
    long c0;
    size_t nready;
    pomelo_session *s;
    unsigned what;
    c0 = b->ta.calls;
    t0 = bench_now_ns();
    for (k = 0; k < pc->burst; k++) {
      int reached = do_push(b, pc);
      if (reached != (int)pc->members) {
        fprintf(stderr, "bench-fanout: %s reached %d of %zu\n", pc->name, reached, pc->members);
        exit(1);
      }
    }
    t1 = bench_now_ns();
    calls += b->ta.calls - c0;
    nready = pomelo_server_ready_count(b->srv);
    if (nready != pc->members) {
      fprintf(stderr, "bench-fanout: %zu sessions to write, %zu expected\n", nready, pc->members);
      exit(1);
    }
    b->now++;
    t2 = bench_now_ns();
    while ((s = pomelo_server_next_ready(b->srv, &what)) != NULL) {
      drained += drain_session(s, b->now);
    }
    t3 = bench_now_ns();
    tpush += t1 - t0;
    tdrain += t3 - t2;
  }
  if (r < 0) {
    return;
  }
  pc->push[r] = (double)tpush / (double)pc->members / pc->burst / batch;
  pc->drain[r] = (double)tdrain / (double)pc->members / batch;
  pc->allocs[r] = (double)calls / pc->burst / batch;
  pc->bytes_per_member = drained / pc->members / (size_t)batch;
}

static void report_case(push_case *pc, size_t n, int reps) {
  double push = bench_median(pc->push, (size_t)reps); /* sorts: [0] is the min, [reps-1] the max */
  double drain = bench_median(pc->drain, (size_t)reps);
  double allocs = bench_median(pc->allocs, (size_t)reps);
  printf("  %-24s %8zu %9.1f  %7.1f..%-7.1f %9.1f %9.2f %10.2f %8zu\n", pc->name, pc->members, push,
         pc->push[0], pc->push[reps - 1], drain, allocs, allocs / (double)pc->members,
         pc->bytes_per_member);
  printf("@ fanout c push.%s %zu %.2f ns/member\n", pc->key, n, push);
  printf("@ fanout c drain.%s %zu %.2f ns/member\n", pc->key, n, drain);
  printf("@ fanout c allocs.%s %zu %.2f allocs/push\n", pc->key, n, allocs);
  free(pc->push);
  free(pc->drain);
  free(pc->allocs);
}

/* ---------------------------------------------------------------------------------------------
 * One size
 * ------------------------------------------------------------------------------------------- */

static void run_size(size_t n, int reps) {
  bench b;
  pomelo_server_settings st;
  pomelo_server_callbacks cb;
  pomelo_channel *all, *tcp, *ws;
  snap s0 = {0}, sa = {0}, sb = {0}, sc = {0}, sd = {0};
  size_t i, half = n / 2, pos = 0;
  uint64_t t0, t1;
  int rc;
  push_case cases[NCASES];
  int k, r, batch = batch_for(n);
  memset(&b, 0, sizeof b);
  bench_alloc_init(&b.ta);
  pomelo_server_settings_default(&st);
  st.conn.heartbeat_interval_ms = 3000;
  memset(&cb, 0, sizeof cb);
  rc = pomelo_server_new(&b.srv, &st, &cb, &b.ta.a, &b);
  if (rc) {
    die("pomelo_server_new", rc);
  }
  rc = pomelo_channel_new(b.srv, "all", 3, &all);
  if (rc) {
    die("pomelo_channel_new", rc);
  }
  b.n = n;
  b.sess = xmalloc(n * sizeof(*b.sess));
  b.uids = xmalloc(n * sizeof(*b.uids));
  b.uid_lens = xmalloc(n * sizeof(*b.uid_lens));
  b.uid_text = xmalloc(n * 12);
  for (i = 0; i < n; i++) {
    int len = snprintf(b.uid_text + pos, 12, "u%zu", i);
    b.uids[i] = b.uid_text + pos;
    b.uid_lens[i] = (size_t)len;
    pos += (size_t)len + 1;
  }

  printf("\nN = %zu sessions (%zu raw TCP, %zu WebSocket)\n", n, half, n - half);
  t0 = bench_now_ns();
  take(&b, &s0);
  for (i = 0; i < half; i++) {
    b.sess[i] = join(&b, 0);
  }
  take(&b, &sa);
  for (i = half; i < n; i++) {
    b.sess[i] = join(&b, 1);
  }
  take(&b, &sb);
  for (i = 0; i < n; i++) {
    rc = pomelo_session_bind(b.sess[i], b.uids[i], b.uid_lens[i]);
    if (rc) {
      die("pomelo_session_bind", rc);
    }
  }
  take(&b, &sc);
  /* Members interleaved: TCP, WS, TCP, WS, ... */
  for (i = 0; i < n; i++) {
    size_t t = i / 2, w = half + i / 2, j = i % 2 ? w : t;
    if (j >= (i % 2 ? n : half)) {
      j = i % 2 ? t : w; /* one side is longer (odd N) */
    }
    rc = pomelo_channel_add(all, b.uids[j], b.uid_lens[j], pomelo_session_id(b.sess[j]));
    if (rc) {
      die("pomelo_channel_add", rc);
    }
  }
  take(&b, &sd);
  while (pomelo_server_next_ready(b.srv, NULL) != NULL) {
    /* the handshake answers were drained as they came: nothing is left to write */
  }
  t1 = bench_now_ns();
  printf("set-up: %.0f ms (%.1f us per session: accept, handshake, ACK, bind, channel add)\n",
         (double)(t1 - t0) / 1e6, (double)(t1 - t0) / 1e3 / (double)n);

  printf("memory (live heap bytes of the server's allocator, minus the empty server, per "
         "session):\n");
  print_step("idle_tcp", "idle raw TCP session (after ACK)", &s0, &sa, half, n);
  print_step("idle_ws", "idle WebSocket session (after ACK)", &sa, &sb, n - half, n);
  print_step("idle", "idle session, average", &s0, &sb, n, n);
  print_step("bind", "+ bound to a uid", &sb, &sc, n, n);
  print_step("channel", "+ member of one channel", &sc, &sd, n, n);
  print_step("total", "total", &s0, &sd, n, n);

  /* Channels of one transport each, for the split (memberships added after the memory steps). */
  rc = pomelo_channel_new(b.srv, "tcp", 3, &tcp);
  rc = rc ? rc : pomelo_channel_new(b.srv, "ws", 2, &ws);
  for (i = 0; !rc && i < n; i++) {
    rc = pomelo_channel_add(i < half ? tcp : ws, b.uids[i], b.uid_lens[i],
                            pomelo_session_id(b.sess[i]));
  }
  if (rc) {
    die("channels", rc);
  }

  cases[0] = (push_case){"channel.mixed", "channel_push mixed", all, n, 1, 0, 0, 0, 0};
  cases[1] = (push_case){"channel.tcp", "channel_push tcp-only", tcp, half, 1, 0, 0, 0, 0};
  cases[2] = (push_case){"channel.ws", "channel_push ws-only", ws, n - half, 1, 0, 0, 0, 0};
  cases[3] = (push_case){"uids.mixed", "push_uids mixed", NULL, n, 1, 0, 0, 0, 0};
  cases[4] = (push_case){"channel.burst4", "channel_push burst of 4", all, n, BURST, 0, 0, 0, 0};
  for (k = 0; k < NCASES; k++) {
    cases[k].push = xmalloc((size_t)reps * sizeof(double));
    cases[k].drain = xmalloc((size_t)reps * sizeof(double));
    cases[k].allocs = xmalloc((size_t)reps * sizeof(double));
  }
  /* Round-robin: the runs of every case sample the same stretch of machine noise. */
  for (r = -WARMUP; r < reps; r++) {
    for (k = 0; k < NCASES; k++) {
      run_case(&b, &cases[k], r, batch_for(cases[k].members));
    }
  }
  printf("push of %zu bytes on \"%s\" (median of %d runs of %d push%s for N members; ns per member "
         "per push; "
         "drain = out_iov + out_consume of everything queued, ns per member):\n",
         strlen(BODY), ROUTE, reps, batch, batch > 1 ? "es" : "");
  printf("  %-24s %8s %9s  %-16s %9s %9s %10s %8s\n", "case", "members", "push ns", "(min..max)",
         "drain ns", "allocs", "allocs/mbr", "B/member");
  for (k = 0; k < NCASES; k++) {
    report_case(&cases[k], n, reps);
  }

  pomelo_server_del(b.srv);
  if (b.ta.live != 0) {
    printf("warning: %ld blocks still live after pomelo_server_del\n", b.ta.live);
  }
  bench_alloc_fini(&b.ta);
  free(s0.by_size);
  free(sa.by_size);
  free(sb.by_size);
  free(sc.by_size);
  free(sd.by_size);
  free(b.sess);
  free(b.uids);
  free(b.uid_lens);
  free(b.uid_text);
}

int main(int argc, char **argv) {
  size_t sizes[16] = {1000, 10000, 100000}, nsizes = 3, i;
  int reps = 21, a;
  for (a = 1; a < argc; a++) {
    if (strcmp(argv[a], "--reps") == 0 && a + 1 < argc) {
      reps = atoi(argv[++a]);
    } else if (strcmp(argv[a], "--sizes") == 0 && a + 1 < argc) {
      char *p = argv[++a];
      nsizes = 0;
      while (*p && nsizes < 16) {
        sizes[nsizes++] = (size_t)strtoul(p, &p, 10);
        if (*p == ',') {
          p++;
        }
      }
    } else {
      fprintf(stderr, "usage: %s [--reps R] [--sizes N1,N2,...]\n", argv[0]);
      return 2;
    }
  }
  if (reps < 1 || nsizes == 0) {
    fprintf(stderr, "bench-fanout: bad --reps or --sizes\n");
    return 2;
  }
  for (i = 0; i < nsizes; i++) {
    if (sizes[i] < 2) {
      fprintf(stderr, "bench-fanout: sizes must be at least 2\n");
      return 2;
    }
  }
  build_client_bytes();
  printf("libpomelo %s fanout benchmark (C, public API, allocator counting every call)\n",
         pomelo_version());
  for (i = 0; i < nsizes; i++) {
    run_size(sizes[i], reps);
  }
  return 0;
}
