/* bench-sessions: what N sessions (a million by default) cost one server, in one process,
 * without sockets: memory, set-up time, heartbeat ticks, heartbeat timeouts, a channel push.
 *
 *   bench-sessions [--sessions N] [--reps R] [--intervals K]   (default: 1000000, 5, 2)
 *
 * Build it in a release build with benchmarks on (meson setup build-rel --buildtype=release
 * -Dbench=true; ninja -C build-rel bench/bench-sessions), run build-rel/bench/bench-sessions, or
 * `meson test -C build-rel --benchmark sessions`. At a million sessions it takes about 10 s and
 * 1 GiB of memory.
 *
 * One pomelo_server (public API only, heartbeat interval H = 3 s as in the real server's template
 * app, every allocation through bench/benchutil.h's counting allocator) on a simulated clock.
 *
 * 1. Set-up: N raw-TCP sessions, session i accepted at T0 + i*H/N (so that their heartbeats are
 *    spread evenly over H), each taken through the handshake and the ACK as a client would (the
 *    server's answers drained from the ready list), then bound to uid "u<i>", then added to one
 *    channel. Printed: the live heap bytes (and blocks) of the server's allocator per session,
 *    idle after the ACK and in total after bind and channel; the growth of VmRSS
 *    (/proc/self/status) per session; the wall time per session of each step.
 * 2. Heartbeat ticks: a timer tick every 50 ms. Each tick calls pomelo_server_handle_expiry(now)
 *    and drains the ready list; then every client whose heartbeat is due (N*50/3000 a tick) sends
 *    its HEARTBEAT (pomelo_session_feed: the server echoes it at once, as pomelo >= 1.1 does, and
 *    moves the session's deadline), and the ready list is drained again (out_iov + out_consume of
 *    each echo). One interval of warm-up ticks, then K intervals timed: wall and CPU time of the
 *    expiry call alone and of the whole tick, per tick and per due session. Also a tick where
 *    nothing is due (the expiry call and an empty ready list, repeated). Afterwards every session
 *    must still be working and stats.timeouts be 0, else exit 1.
 * 3. Channel push: pomelo_channel_push of a 100-byte JSON body on "onChat" to the N members, then
 *    a drain of every session the ready list gives (out_iov + out_consume, no system call), each
 *    timed; one warm-up push then R, medians. Allocator calls per push.
 * 4. Heartbeat timeouts: the clients go silent; the ticks go on, and each one's handle_expiry
 *    closes the N*50/3000 sessions whose deadline (their last heartbeat + 2H) passed; the loop
 *    releases them. Checked: each session closes in the tick its deadline falls in, with reason
 *    heartbeat_timeout, none early (else exit 1). Timed: the expiry call per tick and per closed
 *    session, and the release.
 *
 * Times from clock_gettime: CLOCK_MONOTONIC (wall) and CLOCK_PROCESS_CPUTIME_ID (CPU); the cost of
 * reading the clocks is printed, not subtracted. Lines starting with "@ sessions " are for
 * scripts: "@ sessions <key> <N> <value>". Any API error prints what failed and exits 1.
 * SPDX-License-Identifier: MIT
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>

#include <pomelo/pomelo.h>

#include "benchutil.h"
#include "procstat.h"

#define HB_MS 3000u      /* heartbeat interval H (sys.heartbeat 3) */
#define TICK_MS 50u      /* the loop's timer tick */
#define T0 1000000u      /* the simulated clock's start, ms */
#define IDLE_CALLS 10000 /* expiry calls timed for the tick where nothing is due */
#define UID_STRIDE 12u   /* "u" + up to 10 digits + NUL */
#define NIOV 16

static const char ROUTE[] = "onChat";
static const char BODY[] =
    "{\"from\":\"u1024\",\"target\":\"*\",\"msg\":\"hello everyone in this room, see you at the "
    "castle gate at 10!\"}";
_Static_assert(sizeof(BODY) - 1 == 100, "the push body is 100 bytes");

static const char HS_JSON[] = "{\"sys\":{\"type\":\"c-tcp\",\"version\":\"0.3.5\"},\"user\":{}}";

/* The client's bytes, built once: handshake, ACK and heartbeat packages (raw TCP). */
static uint8_t cl_hs[128], cl_ack[4], cl_hb[4];
static size_t cl_hs_len, cl_ack_len, cl_hb_len;

/* The server under test and the simulated clients. */
typedef struct bench {
  bench_alloc ta; /* the server's counting allocator */
  pomelo_server *srv;
  pomelo_channel *ch;
  size_t n;
  pomelo_session **sess;
  uint64_t *hb_at;  /* client i's next heartbeat (ms); sorted cyclically from `cursor` */
  size_t cursor;    /* the client whose heartbeat is due first */
  char *uid_text;   /* uid i at uid_text + i * UID_STRIDE */
  uint8_t *uid_len; /* uid i's length */
  uint64_t now;     /* the simulated clock, ms */
} bench;

/* Prints what failed (with the library's message for `rc` when not 0) and exits 1. */
static void die(const char *what, int rc) {
  fprintf(stderr, "bench-sessions: %s%s%s\n", what, rc ? ": " : "", rc ? pomelo_strerror(rc) : "");
  exit(1);
}

/* calloc that exits on failure. */
static void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p) {
    die("out of memory (bench arrays)", 0);
  }
  return p;
}

/* The CPU time of the process, ns. */
static uint64_t cpu_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A line of /proc/self/status ("VmRSS:", "VmHWM:") in bytes (bench/procstat.h), 0 when
 * unreadable. */
static uint64_t proc_status_bytes(const char *field) {
  unsigned long long kib = 0;
  return procstat_status_kib("self", field, &kib) == 0 ? (uint64_t)kib * 1024u : 0;
}

/* One machine-readable line: "@ sessions <key> <N> <value>". */
static void at(const char *key, size_t n, double v, int prec) {
  printf("@ sessions %s %zu %.*f\n", key, n, prec, v);
}

/* Encodes the client's packages. */
static void build_client_bytes(void) {
  int rc = pomelo_pkg_encode(cl_hs, sizeof cl_hs, POMELO_PKG_HANDSHAKE, (const uint8_t *)HS_JSON,
                             strlen(HS_JSON), &cl_hs_len);
  rc =
      rc ? rc
         : pomelo_pkg_encode(cl_ack, sizeof cl_ack, POMELO_PKG_HANDSHAKE_ACK, NULL, 0, &cl_ack_len);
  rc = rc ? rc : pomelo_pkg_encode(cl_hb, sizeof cl_hb, POMELO_PKG_HEARTBEAT, NULL, 0, &cl_hb_len);
  if (rc) {
    die("pomelo_pkg_encode", rc);
  }
}

/* Takes all of a session's output as a writev that writes everything would, and consumes it.
 * Returns the bytes. */
static size_t drain_session(pomelo_session *s, uint64_t now) {
  struct iovec iov[NIOV];
  size_t total = 0;
  while (pomelo_session_out_len(s) > 0) {
    size_t got = 0;
    int k = pomelo_session_out_iov(s, iov, NIOV), i;
    if (k <= 0) {
      die("pomelo_session_out_iov gave nothing while output is queued", 0);
    }
    for (i = 0; i < k; i++) {
      got += iov[i].iov_len;
    }
    pomelo_session_out_consume(s, got, now);
    total += got;
  }
  return total;
}

/* The index of a session (its socket_data). */
static size_t index_of(const pomelo_session *s) {
  return (size_t)(uintptr_t)pomelo_session_user_data(s);
}

/* Reports a session that closed when it should not have, and exits 1. */
static void unexpected_close(const bench *b, const pomelo_session *s) {
  fprintf(stderr, "bench-sessions: session %zu (sid %llu) closed at t=%llu ms: %s\n", index_of(s),
          (unsigned long long)pomelo_session_id(s), (unsigned long long)(b->now - T0),
          pomelo_close_reason_name(pomelo_session_close_reason(s)));
  exit(1);
}

/* Checks a session that a heartbeat timeout closed at b->now: the reason, and that its deadline
 * (its last heartbeat, hb_at - H, + 2H) passed within this tick. Returns 1 when right. */
static int timeout_is_right(const bench *b, const pomelo_session *s) {
  size_t i = index_of(s);
  uint64_t deadline = b->hb_at[i] + HB_MS;
  return pomelo_session_close_reason(s) == POMELO_CLOSE_HEARTBEAT_TIMEOUT && deadline <= b->now &&
         deadline + TICK_MS > b->now;
}

/* Drains the ready list as a loop does after a call into the server: writes every session that
 * has output. A session to close is an error unless `closed` is given: then it is checked as a
 * heartbeat timeout (a wrong one counted in *wrong), released, and counted in *closed. Returns
 * the sessions written; their bytes are added to *bytes when not NULL. */
static size_t drain_ready(bench *b, size_t *bytes, size_t *closed, size_t *wrong) {
  pomelo_session *s;
  unsigned what;
  size_t written = 0;
  while ((s = pomelo_server_next_ready(b->srv, &what)) != NULL) {
    if (what & POMELO_READY_CLOSE) {
      if (!closed) {
        unexpected_close(b, s);
      }
      if (!timeout_is_right(b, s)) {
        (*wrong)++;
      }
      b->sess[index_of(s)] = NULL;
      pomelo_server_release(b->srv, s);
      (*closed)++;
      continue;
    }
    {
      size_t got = drain_session(s, b->now);
      if (bytes) {
        *bytes += got;
      }
    }
    written++;
  }
  return written;
}

/* Feeds bytes to a session at b->now, as the loop does when its socket is readable. */
static void feed(bench *b, pomelo_session *s, const uint8_t *data, size_t len) {
  int rc = pomelo_session_feed(s, data, len, b->now);
  if (rc) {
    die("pomelo_session_feed", rc);
  }
}

/* Accepts session i at b->now and takes it through the handshake and the ACK as a client would;
 * its first heartbeat is due H after the server's (sent right after the ACK). */
static void join(bench *b, size_t i) {
  pomelo_session *s;
  int rc = pomelo_server_accept(b->srv, b->now, (void *)(uintptr_t)i, &s);
  if (rc) {
    die("pomelo_server_accept", rc);
  }
  feed(b, s, cl_hs, cl_hs_len);
  drain_ready(b, NULL, NULL, NULL);
  feed(b, s, cl_ack, cl_ack_len);
  drain_ready(b, NULL, NULL, NULL);
  if (pomelo_session_state(s) != POMELO_CONN_WORKING) {
    die("a session is not working after the handshake and the ACK", 0);
  }
  b->sess[i] = s;
  b->hb_at[i] = b->now + HB_MS;
}

/* ---------------------------------------------------------------------------------------------
 * 1. Set-up and memory
 * ------------------------------------------------------------------------------------------- */

/* What the counting allocator holds at one step. */
typedef struct mem_snap {
  size_t bytes;
  long live, calls;
  long *by_size; /* copy of the live blocks per small size */
  uint64_t rss;
} mem_snap;

/* Records the allocator's state and VmRSS into *m. */
static void snap_take(const bench *b, mem_snap *m) {
  m->bytes = b->ta.bytes;
  m->live = b->ta.live;
  m->calls = b->ta.calls;
  if (!m->by_size) {
    m->by_size = xcalloc(BENCH_SMALL, sizeof(long));
  }
  memcpy(m->by_size, b->ta.by_size, BENCH_SMALL * sizeof(long));
  m->rss = proc_status_bytes("VmRSS:");
}

/* Prints one step: heap bytes and blocks per session between two snapshots. */
static void print_mem(const char *what, const char *key, const mem_snap *a, const mem_snap *z,
                      size_t n) {
  double per = ((double)z->bytes - (double)a->bytes) / (double)n;
  double blocks = (double)(z->live - a->live) / (double)n;
  char k[64];
  printf("  %-34s %8.1f B/session  %5.2f blocks/session\n", what, per, blocks);
  snprintf(k, sizeof k, "mem.%s_bytes", key);
  at(k, n, per, 1);
  snprintf(k, sizeof k, "mem.%s_blocks", key);
  at(k, n, blocks, 2);
}

/* Lists the small block sizes that make up the memory added between two snapshots (those with
 * at least 0.2 blocks per session), and the rest as shared tables. */
static void print_blocks(const mem_snap *a, const mem_snap *z, size_t n) {
  double small = 0, total = ((double)z->bytes - (double)a->bytes) / (double)n;
  size_t sz;
  printf("  by block size (bytes asked for, per session):");
  for (sz = 0; sz < BENCH_SMALL; sz++) {
    double d = (double)(z->by_size[sz] - a->by_size[sz]) / (double)n;
    small += d * (double)sz;
    if (d >= 0.2) {
      printf(" %.2fx%zu", d, sz);
    }
  }
  printf("; tables (blocks >= %u B) %.1f B\n", BENCH_SMALL, total - small);
}

/* Creates the N sessions, binds them and adds them to the channel; prints memory and times. */
static void phase_setup(bench *b) {
  mem_snap s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
  uint64_t w0, w1, w2, w3, c0, c1;
  size_t i, n = b->n;
  int rc;
  snap_take(b, &s0);
  w0 = bench_now_ns();
  c0 = cpu_now_ns();
  for (i = 0; i < n; i++) {
    b->now = T0 + (uint64_t)i * HB_MS / n;
    join(b, i);
  }
  c1 = cpu_now_ns();
  w1 = bench_now_ns();
  snap_take(b, &s1);
  for (i = 0; i < n; i++) {
    rc = pomelo_session_bind(b->sess[i], b->uid_text + i * UID_STRIDE, b->uid_len[i]);
    if (rc) {
      die("pomelo_session_bind", rc);
    }
  }
  w2 = bench_now_ns();
  snap_take(b, &s2);
  for (i = 0; i < n; i++) {
    rc = pomelo_channel_add(b->ch, b->uid_text + i * UID_STRIDE, b->uid_len[i],
                            pomelo_session_id(b->sess[i]));
    if (rc) {
      die("pomelo_channel_add", rc);
    }
  }
  w3 = bench_now_ns();
  snap_take(b, &s3);
  if (pomelo_server_session_count(b->srv) != n || pomelo_server_bound_count(b->srv) != n ||
      pomelo_channel_count(b->ch) != n) {
    die("session, bound or member count is not N after the set-up", 0);
  }

  printf("set-up of %zu raw-TCP sessions (accepted over %u ms of simulated time):\n", n, HB_MS);
  printf("  accept + handshake + ACK (+ drains) %8.1f ns/session wall, %.1f ns CPU  (%.2f s)\n",
         (double)(w1 - w0) / (double)n, (double)(c1 - c0) / (double)n, (double)(w1 - w0) / 1e9);
  printf("  bind to a uid                       %8.1f ns/session\n", (double)(w2 - w1) / (double)n);
  printf("  channel add                         %8.1f ns/session\n", (double)(w3 - w2) / (double)n);
  at("time.create_ns", n, (double)(w1 - w0) / (double)n, 1);
  at("time.create_cpu_ns", n, (double)(c1 - c0) / (double)n, 1);
  at("time.bind_ns", n, (double)(w2 - w1) / (double)n, 1);
  at("time.channel_add_ns", n, (double)(w3 - w2) / (double)n, 1);
  at("alloc.create_calls", n, (double)(s1.calls - s0.calls) / (double)n, 2);

  printf("memory (live bytes asked of the server's allocator, minus the empty server):\n");
  print_mem("idle session (after the ACK)", "idle", &s0, &s1, n);
  print_mem("+ bound to a uid", "bind", &s1, &s2, n);
  print_mem("+ member of one channel", "channel", &s2, &s3, n);
  print_mem("total", "total", &s0, &s3, n);
  print_blocks(&s0, &s3, n);
  printf("  process RSS growth: idle %.1f B/session, total %.1f B/session (VmRSS %.1f -> %.1f "
         "MiB; includes malloc's own overhead and the counting allocator's 16-byte headers)\n",
         ((double)s1.rss - (double)s0.rss) / (double)n,
         ((double)s3.rss - (double)s0.rss) / (double)n, (double)s0.rss / 1048576.0,
         (double)s3.rss / 1048576.0);
  at("rss.idle_bytes", n, ((double)s1.rss - (double)s0.rss) / (double)n, 1);
  at("rss.total_bytes", n, ((double)s3.rss - (double)s0.rss) / (double)n, 1);
  free(s0.by_size);
  free(s1.by_size);
  free(s2.by_size);
  free(s3.by_size);
}

/* ---------------------------------------------------------------------------------------------
 * 2. Heartbeat ticks
 * ------------------------------------------------------------------------------------------- */

/* Every client whose heartbeat is due at b->now sends it (the echo is drained later, at the same
 * time, so its next one is due H from now). Returns how many. */
static size_t feed_due_heartbeats(bench *b) {
  size_t due = 0;
  while (due < b->n && b->hb_at[b->cursor] <= b->now) {
    size_t i = b->cursor;
    feed(b, b->sess[i], cl_hb, cl_hb_len);
    b->hb_at[i] = b->now + HB_MS;
    b->cursor = i + 1 == b->n ? 0 : i + 1;
    due++;
  }
  return due;
}

/* Statistics of per-tick samples: mean, median, max. */
typedef struct samples {
  double *v;
  size_t n;
  double sum;
} samples;

/* Adds one sample. */
static void sample_add(samples *s, double x) {
  s->v[s->n++] = x;
  s->sum += x;
}

/* The mean of the samples (0 when none). */
static double sample_mean(const samples *s) {
  return s->n ? s->sum / (double)s->n : 0;
}

/* Sorts the samples and returns their median, the max in *max. */
static double sample_median(samples *s, double *max) {
  double m = bench_median(s->v, s->n);
  *max = s->v[s->n - 1];
  return m;
}

/* Runs the heartbeat ticks: one interval of warm-up, then `intervals` timed; then the tick with
 * nothing due; then checks that every session is still working. */
static void phase_heartbeats(bench *b, int intervals) {
  size_t per = HB_MS / TICK_MS, warm = per, ticks = per * (size_t)intervals, k, n = b->n, i;
  samples exp_wall = {0}, exp_cpu = {0}, tick_wall = {0}, tick_cpu = {0};
  uint64_t feed_ns = 0, drain_ns = 0, due_total = 0, t_first;
  double med, mx, emed, emx;
  pomelo_server_stats st;
  exp_wall.v = xcalloc(ticks, sizeof(double));
  exp_cpu.v = xcalloc(ticks, sizeof(double));
  tick_wall.v = xcalloc(ticks, sizeof(double));
  tick_cpu.v = xcalloc(ticks, sizeof(double));
  t_first = b->now - b->now % TICK_MS + TICK_MS;
  for (k = 0; k < warm + ticks; k++) {
    uint64_t w0, w1, w2, w3, c0, c1, c2;
    size_t due, bytes = 0;
    b->now = t_first + k * TICK_MS;
    c0 = cpu_now_ns();
    w0 = bench_now_ns();
    pomelo_server_handle_expiry(b->srv, b->now);
    w1 = bench_now_ns();
    c1 = cpu_now_ns();
    drain_ready(b, NULL, NULL, NULL);
    due = feed_due_heartbeats(b);
    w2 = bench_now_ns();
    if (drain_ready(b, &bytes, NULL, NULL) != due || bytes != due * cl_hb_len) {
      die("the heartbeat echoes are not what was due", 0);
    }
    w3 = bench_now_ns();
    c2 = cpu_now_ns();
    if (k < warm) {
      continue;
    }
    sample_add(&exp_wall, (double)(w1 - w0));
    sample_add(&exp_cpu, (double)(c1 - c0));
    sample_add(&tick_wall, (double)(w3 - w0));
    sample_add(&tick_cpu, (double)(c2 - c0));
    feed_ns += w2 - w1;
    drain_ns += w3 - w2;
    due_total += due;
  }
  printf("heartbeat ticks (H %u ms, a tick every %u ms, %zu warm-up ticks then %zu timed; the "
         "server echoes each client heartbeat at once inside pomelo_session_feed, so its "
         "handle_expiry only looks for timeouts, and none is due: deadlines are the last "
         "heartbeat + 2H):\n",
         HB_MS, TICK_MS, warm, ticks);
  printf("  due heartbeats per tick             %8.1f (N*%u/%u = %.1f)\n",
         (double)due_total / (double)ticks, TICK_MS, HB_MS, (double)n * TICK_MS / HB_MS);
  emed = sample_median(&exp_wall, &emx);
  printf("  handle_expiry per tick              %8.1f ns wall mean (median %.1f, max %.1f), "
         "%.1f ns CPU mean (one CPU clock read included)\n",
         sample_mean(&exp_wall), emed, emx, sample_mean(&exp_cpu));
  printf("  whole tick (expiry, drain, feeds of the due heartbeats, drain of the echoes):\n");
  med = sample_median(&tick_wall, &mx);
  printf("                                      %8.1f us wall mean (median %.1f, max %.1f), "
         "%.1f us CPU mean\n",
         sample_mean(&tick_wall) / 1e3, med / 1e3, mx / 1e3, sample_mean(&tick_cpu) / 1e3);
  printf("  per due session: tick %.1f ns wall (%.1f CPU) = feed %.1f + drain of the echo %.1f\n",
         tick_wall.sum / (double)due_total, tick_cpu.sum / (double)due_total,
         (double)feed_ns / (double)due_total, (double)drain_ns / (double)due_total);
  at("hb.due_per_tick", n, (double)due_total / (double)ticks, 1);
  at("hb.expiry_ns", n, sample_mean(&exp_wall), 1);
  at("hb.expiry_cpu_ns", n, sample_mean(&exp_cpu), 1);
  at("hb.expiry_max_ns", n, emx, 1);
  at("hb.tick_ns", n, sample_mean(&tick_wall), 1);
  at("hb.tick_cpu_ns", n, sample_mean(&tick_cpu), 1);
  at("hb.tick_median_ns", n, med, 1);
  at("hb.tick_max_ns", n, mx, 1);
  at("hb.tick_ns_per_due", n, tick_wall.sum / (double)due_total, 1);
  at("hb.tick_cpu_ns_per_due", n, tick_cpu.sum / (double)due_total, 1);
  at("hb.feed_ns_per_due", n, (double)feed_ns / (double)due_total, 1);
  at("hb.drain_ns_per_due", n, (double)drain_ns / (double)due_total, 1);

  /* The tick where nothing is due: the same call again at the same time, many times. */
  {
    uint64_t next = pomelo_server_expiry(b->srv), w0, w1, c0, c1;
    int j;
    if (next <= b->now) {
      die("a deadline is due right after a tick", 0);
    }
    c0 = cpu_now_ns();
    w0 = bench_now_ns();
    for (j = 0; j < IDLE_CALLS; j++) {
      pomelo_server_handle_expiry(b->srv, b->now);
      drain_ready(b, NULL, NULL, NULL);
    }
    w1 = bench_now_ns();
    c1 = cpu_now_ns();
    printf("  tick with nothing due (expiry + empty ready list) %.1f ns wall, %.1f ns CPU; the "
           "next deadline is %.0f ms away\n",
           (double)(w1 - w0) / IDLE_CALLS, (double)(c1 - c0) / IDLE_CALLS, (double)(next - b->now));
    at("hb.idle_tick_ns", n, (double)(w1 - w0) / IDLE_CALLS, 1);
    at("hb.idle_tick_cpu_ns", n, (double)(c1 - c0) / IDLE_CALLS, 1);
  }

  /* Nobody may have timed out. */
  pomelo_server_get_stats(b->srv, &st);
  for (i = 0; i < n; i++) {
    if (pomelo_session_state(b->sess[i]) != POMELO_CONN_WORKING) {
      unexpected_close(b, b->sess[i]);
    }
  }
  printf("  alive after the ticks: %zu of %zu sessions, %llu timeouts\n",
         pomelo_server_session_count(b->srv), n, (unsigned long long)st.timeouts);
  at("hb.alive", n, (double)pomelo_server_session_count(b->srv), 0);
  if (pomelo_server_session_count(b->srv) != n || st.connections != n || st.timeouts != 0) {
    die("sessions were wrongly timed out during the heartbeat ticks", 0);
  }
  free(exp_wall.v);
  free(exp_cpu.v);
  free(tick_wall.v);
  free(tick_cpu.v);
}

/* ---------------------------------------------------------------------------------------------
 * 3. Channel push
 * ------------------------------------------------------------------------------------------- */

/* One warm-up push then `reps` timed: push, then drain of every session the ready list gives. */
static void phase_push(bench *b, int reps) {
  double *push = xcalloc((size_t)reps, sizeof(double)),
         *pcpu = xcalloc((size_t)reps, sizeof(double));
  double *drain = xcalloc((size_t)reps, sizeof(double)),
         *dcpu = xcalloc((size_t)reps, sizeof(double));
  double *allocs = xcalloc((size_t)reps, sizeof(double)),
         *held = xcalloc((size_t)reps, sizeof(double));
  size_t n = b->n, bytes_per = 0;
  int r;
  for (r = -1; r < reps; r++) {
    uint64_t w0, w1, w2, w3, c0, c1, c2, c3;
    size_t mem0 = b->ta.bytes, bytes = 0, written;
    long calls0 = b->ta.calls, calls;
    int reached;
    c0 = cpu_now_ns();
    w0 = bench_now_ns();
    reached = pomelo_channel_push(b->ch, ROUTE, BODY, strlen(BODY));
    w1 = bench_now_ns();
    c1 = cpu_now_ns();
    calls = b->ta.calls - calls0;
    if (reached < 0) {
      die("pomelo_channel_push", reached);
    }
    if ((size_t)reached != n || pomelo_server_ready_count(b->srv) != n) {
      fprintf(stderr, "bench-sessions: the push reached %d sessions, %zu to write, of %zu\n",
              reached, pomelo_server_ready_count(b->srv), n);
      exit(1);
    }
    if (r >= 0) {
      held[r] = ((double)b->ta.bytes - (double)mem0) / (double)n;
    }
    c2 = cpu_now_ns();
    w2 = bench_now_ns();
    written = drain_ready(b, &bytes, NULL, NULL);
    w3 = bench_now_ns();
    c3 = cpu_now_ns();
    if (written != n || bytes % n != 0 || b->ta.bytes != mem0) {
      die("the drain after the push did not write the push to every member once", 0);
    }
    if (r < 0) {
      continue;
    }
    bytes_per = bytes / n;
    push[r] = (double)(w1 - w0) / (double)n;
    pcpu[r] = (double)(c1 - c0) / (double)n;
    drain[r] = (double)(w3 - w2) / (double)n;
    dcpu[r] = (double)(c3 - c2) / (double)n;
    allocs[r] = (double)calls;
  }
  {
    double mp = bench_median(push, (size_t)reps), mpc = bench_median(pcpu, (size_t)reps);
    double md = bench_median(drain, (size_t)reps), mdc = bench_median(dcpu, (size_t)reps);
    double ma = bench_median(allocs, (size_t)reps), mh = bench_median(held, (size_t)reps);
    printf("channel push of %zu bytes on \"%s\" to %zu members (median of %d, after 1 warm-up; "
           "%zu bytes per member on the wire):\n",
           strlen(BODY), ROUTE, n, reps, bytes_per);
    printf("  pomelo_channel_push                 %8.2f ns/member wall (min %.2f, max %.2f), "
           "%.2f CPU; %.1f ms in all\n",
           mp, push[0], push[reps - 1], mpc, mp * (double)n / 1e6);
    printf("  drain (out_iov + out_consume)       %8.2f ns/member wall (min %.2f, max %.2f), "
           "%.2f CPU; %.1f ms in all\n",
           md, drain[0], drain[reps - 1], mdc, md * (double)n / 1e6);
    printf("  allocator calls per push %.0f; heap held while queued %.2f B/member\n", ma, mh);
    at("push.ns_per_member", n, mp, 2);
    at("push.cpu_ns_per_member", n, mpc, 2);
    at("push.drain_ns_per_member", n, md, 2);
    at("push.drain_cpu_ns_per_member", n, mdc, 2);
    at("push.allocs", n, ma, 0);
    at("push.queued_bytes_per_member", n, mh, 2);
  }
  free(push);
  free(pcpu);
  free(drain);
  free(dcpu);
  free(allocs);
  free(held);
}

/* ---------------------------------------------------------------------------------------------
 * 4. Heartbeat timeouts
 * ------------------------------------------------------------------------------------------- */

/* The clients stop sending heartbeats; ticks go on until every session has timed out and been
 * released. Checks each close; times the expiry calls and the releases. */
static void phase_timeouts(bench *b) {
  size_t n = b->n, closed_total = 0, wrong = 0, ticks = 0, busy = 0, expect_cursor = b->cursor;
  size_t max_ticks = 3 * HB_MS / TICK_MS + 2;
  uint64_t exp_ns = 0, exp_cpu = 0, rel_ns = 0, exp_max = 0, t = b->now;
  pomelo_server_stats st;
  while (pomelo_server_session_count(b->srv) > 0) {
    uint64_t w0, w1, w2, c0, c1;
    size_t closed = 0, expected = 0;
    if (ticks++ > max_ticks) {
      die("sessions did not time out within 3 heartbeat intervals of silence", 0);
    }
    t += TICK_MS;
    b->now = t;
    /* The sessions whose deadline (last heartbeat + 2H) is at or before now. */
    while (expected + closed_total < n && b->hb_at[expect_cursor] + HB_MS <= t) {
      expect_cursor = expect_cursor + 1 == n ? 0 : expect_cursor + 1;
      expected++;
    }
    c0 = cpu_now_ns();
    w0 = bench_now_ns();
    pomelo_server_handle_expiry(b->srv, t);
    w1 = bench_now_ns();
    c1 = cpu_now_ns();
    drain_ready(b, NULL, &closed, &wrong);
    w2 = bench_now_ns();
    if (closed != expected) {
      fprintf(stderr, "bench-sessions: %zu sessions timed out at t=%llu ms, %zu expected\n", closed,
              (unsigned long long)(t - T0), expected);
      exit(1);
    }
    if (closed) {
      busy++;
      exp_ns += w1 - w0;
      exp_cpu += c1 - c0;
      exp_max = w1 - w0 > exp_max ? w1 - w0 : exp_max;
      rel_ns += w2 - w1;
    }
    closed_total += closed;
  }
  pomelo_server_get_stats(b->srv, &st);
  if (wrong || st.timeouts != n || closed_total != n) {
    fprintf(stderr,
            "bench-sessions: %zu timeouts at the wrong time or for a wrong reason; %llu "
            "timeouts counted of %zu\n",
            wrong, (unsigned long long)st.timeouts, n);
    exit(1);
  }
  printf("heartbeat timeouts (clients silent; %zu ticks closed sessions, %.1f per tick; every "
         "one closed in its tick as heartbeat_timeout):\n",
         busy, (double)n / (double)busy);
  printf("  handle_expiry per tick              %8.1f us wall mean (max %.1f), %.1f us CPU; "
         "%.1f ns wall per closed session\n",
         (double)exp_ns / (double)busy / 1e3, (double)exp_max / 1e3,
         (double)exp_cpu / (double)busy / 1e3, (double)exp_ns / (double)n);
  printf("  pomelo_server_release (from the ready list) %.1f ns/session\n",
         (double)rel_ns / (double)n);
  at("timeout.expiry_ns", n, (double)exp_ns / (double)busy, 1);
  at("timeout.expiry_cpu_ns", n, (double)exp_cpu / (double)busy, 1);
  at("timeout.expiry_ns_per_due", n, (double)exp_ns / (double)n, 1);
  at("timeout.release_ns", n, (double)rel_ns / (double)n, 1);
}

/* ---------------------------------------------------------------------------------------------
 * Main
 * ------------------------------------------------------------------------------------------- */

/* Keeps the clock reads of print_clock_cost from being optimised away. */
static volatile uint64_t clock_sink;

/* Prints how long reading each clock takes (not subtracted from the figures). */
static void print_clock_cost(size_t n) {
  uint64_t w0, w1, c0, c1;
  int j;
  w0 = bench_now_ns();
  for (j = 0; j < 10000; j++) {
    clock_sink += bench_now_ns();
  }
  w1 = bench_now_ns();
  c0 = bench_now_ns();
  for (j = 0; j < 10000; j++) {
    clock_sink += cpu_now_ns();
  }
  c1 = bench_now_ns();
  printf("clock reads: wall %.1f ns, CPU %.1f ns (not subtracted)\n", (double)(w1 - w0) / 1e4,
         (double)(c1 - c0) / 1e4);
  at("clock.wall_ns", n, (double)(w1 - w0) / 1e4, 1);
  at("clock.cpu_ns", n, (double)(c1 - c0) / 1e4, 1);
}

/* Parses a positive count option value; exits 2 on a bad one. */
static unsigned long parse_count(const char *opt, const char *v, unsigned long max) {
  char *end;
  unsigned long x = strtoul(v, &end, 10);
  if (*v == '\0' || *end != '\0' || x < 1 || x > max) {
    fprintf(stderr, "bench-sessions: bad %s %s (1 to %lu)\n", opt, v, max);
    exit(2);
  }
  return x;
}

/* Runs the four phases on one server of N sessions. */
int main(int argc, char **argv) {
  bench b;
  pomelo_server_settings set;
  pomelo_server_callbacks cb;
  size_t n = 1000000, i;
  int reps = 5, intervals = 2, a, rc;
  uint64_t w0 = bench_now_ns();
  for (a = 1; a < argc; a++) {
    if (strcmp(argv[a], "--sessions") == 0 && a + 1 < argc) {
      n = parse_count("--sessions", argv[++a], 100000000ul);
    } else if (strcmp(argv[a], "--reps") == 0 && a + 1 < argc) {
      reps = (int)parse_count("--reps", argv[++a], 1000);
    } else if (strcmp(argv[a], "--intervals") == 0 && a + 1 < argc) {
      intervals = (int)parse_count("--intervals", argv[++a], 1000);
    } else {
      fprintf(stderr, "usage: %s [--sessions N] [--reps R] [--intervals K]\n", argv[0]);
      return 2;
    }
  }
  build_client_bytes();
  printf("libpomelo %s sessions benchmark: N = %zu (C, public API, one process, no sockets)\n",
         pomelo_version(), n);
  print_clock_cost(n);

  memset(&b, 0, sizeof b);
  bench_alloc_init(&b.ta);
  b.n = n;
  /* The bench's own arrays, written now so that they are resident before the first VmRSS. */
  b.sess = xcalloc(n, sizeof(*b.sess));
  b.hb_at = xcalloc(n, sizeof(*b.hb_at));
  b.uid_text = xcalloc(n, UID_STRIDE);
  b.uid_len = xcalloc(n, 1);
  for (i = 0; i < n; i++) {
    b.uid_len[i] = (uint8_t)snprintf(b.uid_text + i * UID_STRIDE, UID_STRIDE, "u%zu", i);
    b.sess[i] = NULL;
    b.hb_at[i] = 0;
  }
  pomelo_server_settings_default(&set);
  set.conn.heartbeat_interval_ms = HB_MS;
  memset(&cb, 0, sizeof cb);
  rc = pomelo_server_new(&b.srv, &set, &cb, &b.ta.a, &b);
  if (rc) {
    die("pomelo_server_new", rc);
  }
  rc = pomelo_channel_new(b.srv, "area", 4, &b.ch);
  if (rc) {
    die("pomelo_channel_new", rc);
  }

  phase_setup(&b);
  phase_heartbeats(&b, intervals);
  phase_push(&b, reps);
  phase_timeouts(&b);

  pomelo_server_del(b.srv);
  if (b.ta.live != 0) {
    fprintf(stderr, "bench-sessions: %ld blocks (%zu bytes) still live after pomelo_server_del\n",
            b.ta.live, b.ta.bytes);
    return 1;
  }
  printf("peak RSS %.1f MiB; the whole run took %.1f s\n",
         (double)proc_status_bytes("VmHWM:") / 1048576.0, (double)(bench_now_ns() - w0) / 1e9);
  at("rss.peak_mib", n, (double)proc_status_bytes("VmHWM:") / 1048576.0, 1);
  at("run.seconds", n, (double)(bench_now_ns() - w0) / 1e9, 1);
  bench_alloc_fini(&b.ta);
  free(b.sess);
  free(b.hb_at);
  free(b.uid_text);
  free(b.uid_len);
  return 0;
}
