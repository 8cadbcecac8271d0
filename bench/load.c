/* bench-load: the load generator of libpomelo (docs/performance.md). Many Pomelo clients, each a
 * pomelo_client (the library's client role, public API only) over raw TCP or WebSocket, on one
 * epoll loop per process, playing chatofpomelo's users against any server that speaks its routes
 * (pomelo-chat, or the real chatofpomelo on pomelo 2.2.7):
 *
 *   gate.gateHandler.queryEntry {uid}              -> {"code":200,"host":H,"port":P}
 *   connector.entryHandler.enter {username, rid}   -> {"users":[...]}
 *   chat.chatHandler.send {rid, content, from, target:"*"}   -> a response, and onChat
 *                                                      {msg, from, target} to the whole room
 *
 * Chat mode (the default):
 *   bench-load --gate H:P [--users N] [--rooms R] [--senders S] [--window W | --rate X]
 *              [--seconds D] [--warmup S] [--procs P] [--transport tcp|ws|mixed]
 *              [--msg-bytes B] [--server-pgid G | --server-pid P] [--label L] [--hist FILE]
 *              [--churn K] [--churn-ms M] [--slow K] [--flood K] [--flood-rate X]
 *              [--max-server-rss-mib M] [--sources K] [--login-window L] [--timeout-ms T]
 * N users (spread over P processes, room by room) ask the gate for their connector, connect to
 * it and enter one of R rooms (user i in room i % R). When every user is in, the first S users
 * of each room send for D seconds: closed loop, W sends in flight per sender (default 4); or
 * open loop, X sends per second in all at fixed intervals per sender (latency is then measured
 * from the time a send was due, so a stalled server is not hidden: no coordinated omission).
 * Every onChat body carries "<room>.<sender>.<sequence>." and is checked by every member:
 * lost (a send answered without error whose onChat a member that stayed never got), duplicated
 * and out-of-order pushes, and pushes from another room, all of which must be 0 (else exit 1).
 * The first `warmup` seconds of the D are not measured.
 *
 * Figures: sends/s, pushes delivered/s, request latency (send -> response) and echo latency
 * (send -> the sender's own onChat) p50/p90/p99/p99.9/max from a log-linear histogram (1.6 %
 * resolution); the server's CPU seconds per million pushes (utime + stime of the server's
 * process, or of every process of its group, from /proc, over the measured window) and its
 * resident memory; the generator's own CPU per process, flagged "SATURATED" above 0.9 core
 * (then the throughput is the generator's, not the server's).
 *
 * The soak adds hostile and unsteady users (K of each, taken from the N, never senders):
 *   --churn K    leave (close) and come back (gate, connector, enter) every M ms (default 1000);
 *   --slow K     stop reading once in (their heartbeats still go out), read again at the end: a
 *                server's slow-consumer policy must drop their pushes or disconnect them (the
 *                figures say which: "slow: closed by the server" or gaps);
 *   --flood K    K more users, each alone in a room, sending X requests per second (default
 *                1000) without waiting: a rate limit shows as answers far below what was sent;
 *                each flooder must get exactly one onChat per answered send, no more.
 * Members that churn or are slow are not counted for "lost"; duplicates count for everyone.
 * --max-server-rss-mib M: exit 1 when the server's resident memory ever passes M MiB (sampled
 * every second).
 *
 * Handshake mode:
 *   bench-load --handshakes --connect H:P [--concurrency C] [--seconds D] [--transport ...]
 * C clients at a time (default 50) connect, do the handshake (a fresh client each time: no
 * cached dictionary or protos, a first visit; with --cached each of the C clients is kept and
 * sends the dictionary and protos versions it got, a returning visitor, so that the server
 * answers without them), send the ACK and close, again and again for D seconds: handshakes/s,
 * handshake latency (connect() to the response), server CPU per handshake.
 *
 * Sockets are bound to source addresses 127.0.0.1 .. 127.0.0.K in turn (K default 8) when the
 * target is a loopback address, so that N is not limited by one address's ephemeral ports. The
 * open-file limit is raised to its hard maximum; N + C per process must fit in it.
 *
 * Output: readable lines, then lines "@ load LABEL KEY VALUE" for scripts (bench/load.sh). Exit
 * status: 0, 1 when a check failed (a loss, a duplicate, a login that failed, a stayer's
 * connection lost, the flooder over its answers, the server's memory over the limit), 2 on a
 * usage error.
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE /* IP_BIND_ADDRESS_NO_PORT, accept4-era socket flags */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <pomelo/pomelo.h>

#include "procstat.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24 /* Linux >= 4.2 */
#endif

#define PROG "bench-load"
#define READ_BUF (64 * 1024)
#define WRITE_IOV 32
#define MAX_EVENTS 1024
#define TICK_MS 20         /* client timers (heartbeats, timeouts) are run this often */
#define RING 4096          /* sends in flight per sender, at most */
#define DRAIN_QUIET_MS 500 /* the end: no push for this long (and nothing in flight) */
#define DRAIN_MAX_MS 15000
#define SATURATED 0.9 /* cores */

/* ---------------------------------------------------------------------------------------------
 * Latency histogram: log-linear, values in microseconds; 0..127 exact, then 64 sub-buckets per
 * power of two (at most 1/64 off), up to 2^47 us.
 * ------------------------------------------------------------------------------------------- */

#define H_BUCKETS (128 + 40 * 64)

typedef struct hist {
  uint64_t n[H_BUCKETS];
  uint64_t count, max;
} hist;

static size_t h_index(uint64_t v) {
  int e, shift;
  size_t i;
  if (v < 128) {
    return (size_t)v;
  }
  e = 63 - __builtin_clzll(v);
  shift = e - 6;
  i = 128 + (size_t)(e - 7) * 64 + (size_t)((v >> shift) - 64);
  return i < H_BUCKETS ? i : H_BUCKETS - 1;
}

/* The middle of bucket i. */
static double h_value(size_t i) {
  size_t k;
  int e;
  if (i < 128) {
    return (double)i;
  }
  k = i - 128;
  e = (int)(k / 64) + 7;
  return ((double)(64 + k % 64) + 0.5) * (double)(1ull << (e - 6));
}

static void h_add(hist *h, uint64_t us) {
  h->n[h_index(us)]++;
  h->count++;
  if (us > h->max) {
    h->max = us;
  }
}

static void h_merge(hist *into, const hist *h) {
  size_t i;
  for (i = 0; i < H_BUCKETS; i++) {
    into->n[i] += h->n[i];
  }
  into->count += h->count;
  if (h->max > into->max) {
    into->max = h->max;
  }
}

/* The p-th percentile (0..100) in milliseconds; 0 for an empty histogram; p 100 = the maximum. */
static double h_pct(const hist *h, double p) {
  uint64_t want, seen = 0;
  size_t i;
  if (!h->count) {
    return 0;
  }
  if (p >= 100) {
    return (double)h->max / 1000.0;
  }
  want = (uint64_t)ceil(p / 100.0 * (double)h->count);
  if (want < 1) {
    want = 1;
  }
  for (i = 0; i < H_BUCKETS; i++) {
    seen += h->n[i];
    if (seen >= want) {
      double v = h_value(i);
      return (v > (double)h->max ? (double)h->max : v) / 1000.0;
    }
  }
  return (double)h->max / 1000.0;
}

/* ---------------------------------------------------------------------------------------------
 * State
 * ------------------------------------------------------------------------------------------- */

enum { K_STAY = 0, K_SLOW = 1, K_CHURN = 2, K_FLOOD = 3 };

enum {
  U_OUT = 0,   /* not connected (not yet, or between two visits of a churner) */
  U_GATE_TCP,  /* TCP connect to the gate under way */
  U_GATE,      /* handshake and queryEntry at the gate */
  U_GATE_DONE, /* the gate answered: connect to the connector once the gate socket is closed */
  U_CONN_TCP,  /* TCP connect to the connector */
  U_CONN,      /* handshake at the connector */
  U_ENTER,     /* enter sent */
  U_IN,        /* in the room */
  U_LEAVING,   /* closing on purpose (a churner, or the end) */
  U_FAILED,    /* gave up */
  U_HS_TCP,    /* handshake mode: TCP connect */
  U_HS         /* handshake mode: handshake under way */
};

/* Which sequence numbers of one sender were seen (a growable bitmap). */
typedef struct track {
  uint64_t *bits;
  uint32_t words;
  uint32_t count; /* bits set */
  uint32_t top;   /* highest sequence seen + 1 */
} track;

struct user;

/* One send in flight. */
typedef struct slot {
  struct user *u;
  uint64_t due; /* us: when it was sent (closed loop) or due (open loop) */
  uint32_t seq;
  int used;
} slot;

typedef struct room {
  char rid[48];
  struct user **members;
  uint32_t n, cap;
  struct user **senders;
  uint32_t nsenders;
  uint32_t index; /* global room number, in the onChat text */
} room;

typedef struct user {
  struct gen *g;
  room *rm;
  uint32_t gidx;
  int kind;
  int sender; /* index in rm->senders, or -1 */
  int ws;
  int phase;
  int fd;
  int no_read;  /* a slow consumer that stopped reading */
  int dirty;    /* on the flush list */
  int attempts; /* a churner's logins that failed in a row */
  int hs_ok;    /* handshake mode: this connection's handshake was answered */
  pomelo_client *cl;
  char name[48];
  struct sockaddr_in conn_addr;
  uint64_t next_at;        /* ms: a churner's next move, or a retry */
  uint64_t start_us;       /* handshake mode: connect() time */
  uint64_t login_deadline; /* ms */
  track *seen;             /* [rm->nsenders] */
  uint32_t nseen;
  /* a sender */
  uint32_t seq, inflight;
  slot *ring;
  track ok;
  uint64_t next_send_us; /* open loop: when the next send is due */
  uint64_t interval_us;
  struct user *dirty_next;
} user;

/* What one process counted; summed over the processes by the parent. The counters from `users`
 * to `bytes_out` are uint64_t only, one after the other: sum() adds them as an array. */
typedef struct results {
  uint64_t users, logged_in, login_failed, login_retries, connect_errors;
  uint64_t sends, oks, errors, timeouts, closed_errors;
  uint64_t sends_window, pushes_window, pushes_total, others;
  uint64_t lost, dup, ooo, stranger, stay_lost_conns, kicks;
  uint64_t slow_n, slow_closed, slow_gaps, slow_pushes;
  uint64_t flood_n, flood_sent, flood_ok, flood_pushes, flood_errors;
  uint64_t churn_leaves, churn_joins;
  uint64_t hs_done, hs_failed;
  uint64_t bytes_in, bytes_out;
  double cpu_window; /* seconds of CPU over the measured window */
  double login_s;
  uint64_t drain_ms;
  hist req, echo, hs;
} results;

typedef struct gen {
  /* options */
  struct sockaddr_in gate, target;
  char host_text[64];
  uint32_t users, rooms, senders, window, procs, sources, login_window, msg_bytes;
  uint32_t churn, churn_ms, slow, flood, concurrency, timeout_ms;
  double rate, flood_rate, seconds, warmup;
  int transport; /* 0 tcp, 1 ws, 2 mixed */
  int handshakes;
  int hs_cached; /* handshake mode: one client per slot, sending the versions it cached */
  long server_pid, server_pgid;
  const char *label;
  const char *hist_file;
  double max_rss_mib;
  char tag[16];
  char *pad; /* msg_bytes of 'x' */
  /* this process */
  uint32_t proc;
  int ep, ctl_fd;
  room *rms;
  uint32_t nrooms; /* rooms of this process */
  user *us;
  uint32_t nus;
  user **senders_list;
  uint32_t nsenders_list;
  uint32_t nsenders_total; /* senders of every process, flooders not included */
  user *dirty;
  uint8_t *buf;
  uint32_t logging_in;
  uint32_t next_login; /* next user index to log in at the start */
  uint32_t src_next;
  uint64_t go_us, window_us, end_us; /* measured window: [window_us, end_us) */
  int running, draining, stopped;
  uint64_t last_push_ms;
  uint64_t rng;
  results r;
} gen;

static void die(const char *what, const char *detail) {
  fprintf(stderr, PROG ": %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
  exit(1);
}

static uint64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t now_ms(void) {
  return now_us() / 1000u;
}

/* xorshift64*: WebSocket keys and masks and jitter (a load generator needs no secrecy). */
static uint32_t rnd(gen *g) {
  g->rng ^= g->rng >> 12;
  g->rng ^= g->rng << 25;
  g->rng ^= g->rng >> 27;
  return (uint32_t)((g->rng * 2685821657736338717ull) >> 32);
}

/* pomelo_client_settings.random: gets the client's user_data, a user. */
static uint32_t rnd_cb(void *ud) {
  return rnd(((struct user *)ud)->g);
}

/* ---------------------------------------------------------------------------------------------
 * Sequence tracking
 * ------------------------------------------------------------------------------------------- */

/* Marks `seq`; returns 1 when it was already marked, 0 when new, -1 when out of memory. */
static int track_mark(track *t, uint32_t seq) {
  uint32_t w = seq / 64;
  uint64_t bit = 1ull << (seq % 64);
  if (w >= t->words) {
    uint32_t nw = t->words ? t->words : 16;
    uint64_t *nb;
    while (nw <= w) {
      nw *= 2;
    }
    nb = (uint64_t *)realloc(t->bits, (size_t)nw * sizeof *nb);
    if (!nb) {
      return -1;
    }
    memset(nb + t->words, 0, (size_t)(nw - t->words) * sizeof *nb);
    t->bits = nb;
    t->words = nw;
  }
  if (t->bits[w] & bit) {
    return 1;
  }
  t->bits[w] |= bit;
  t->count++;
  if (seq + 1 > t->top) {
    t->top = seq + 1;
  }
  return 0;
}

static int track_has(const track *t, uint32_t seq) {
  uint32_t w = seq / 64;
  return w < t->words && (t->bits[w] >> (seq % 64)) & 1;
}

static void track_reset(track *t) {
  if (t->bits) {
    memset(t->bits, 0, (size_t)t->words * sizeof *t->bits);
  }
  t->count = 0;
  t->top = 0;
}

/* ---------------------------------------------------------------------------------------------
 * Sockets
 * ------------------------------------------------------------------------------------------- */

static void flush(gen *g, user *u);
static void after(gen *g, user *u);
static void start_login(gen *g, user *u);
static void hs_start(gen *g, user *u);

static void mark_dirty(gen *g, user *u) {
  if (!u->dirty) {
    u->dirty = 1;
    u->dirty_next = g->dirty;
    g->dirty = u;
  }
}

static void close_fd(user *u) {
  if (u->fd >= 0) {
    close(u->fd); /* leaves the epoll set with it */
    u->fd = -1;
  }
}

/* Connects a non-blocking socket to `to`, bound to the next source address when `to` is a
 * loopback address. Returns 0 (u->fd set, connect under way) or an errno value. */
static int open_socket(gen *g, user *u, const struct sockaddr_in *to) {
  struct epoll_event ev;
  int one = 1, fd, rc;
  fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return errno;
  }
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if ((ntohl(to->sin_addr.s_addr) >> 24) == 127 && g->sources > 1) {
    struct sockaddr_in src;
    memset(&src, 0, sizeof src);
    src.sin_family = AF_INET;
    src.sin_addr.s_addr = htonl(0x7f000001u + g->src_next++ % g->sources);
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)&src, sizeof src) != 0) {
      rc = errno;
      close(fd);
      return rc;
    }
  }
  if (u->kind == K_SLOW) {
    /* A small window, and small segments: the server's kernel sizes its send buffer from the
     * segment size (64 KiB on loopback: megabytes of buffer), so that its own queue fills. */
    int small = 4096, mss = 536;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    setsockopt(fd, IPPROTO_TCP, TCP_MAXSEG, &mss, sizeof mss);
  }
  if (connect(fd, (const struct sockaddr *)to, sizeof *to) != 0 && errno != EINPROGRESS) {
    rc = errno;
    close(fd);
    return rc;
  }
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = u;
  if (epoll_ctl(g->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
    rc = errno;
    close(fd);
    return rc;
  }
  u->fd = fd;
  return 0;
}

static void flush(gen *g, user *u) {
  while (u->fd >= 0 && u->cl && pomelo_client_out_len(u->cl) > 0) {
    struct iovec iov[WRITE_IOV];
    int n = pomelo_client_out_iov(u->cl, iov, WRITE_IOV);
    ssize_t w = writev(u->fd, iov, n);
    if (w < 0 && errno == EINTR) {
      continue;
    }
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return; /* EPOLLOUT (edge-triggered) comes when there is room */
    }
    if (w < 0) {
      pomelo_client_peer_closed(u->cl, now_ms());
      return;
    }
    g->r.bytes_out += (uint64_t)w;
    pomelo_client_out_consume(u->cl, (size_t)w, now_ms());
  }
}

static void do_read(gen *g, user *u) {
  while (u->fd >= 0 && u->cl && !u->no_read && !pomelo_client_wants_close(u->cl)) {
    ssize_t n = read(u->fd, g->buf, READ_BUF);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return;
    }
    if (n <= 0) {
      pomelo_client_peer_closed(u->cl, now_ms());
      return;
    }
    g->r.bytes_in += (uint64_t)n;
    (void)pomelo_client_feed(u->cl, g->buf, (size_t)n, now_ms()); /* errors: on_disconnect */
    if (n < READ_BUF) {
      return;
    }
  }
}

/* ---------------------------------------------------------------------------------------------
 * The chat: login, enter, send, check
 * ------------------------------------------------------------------------------------------- */

/* Ends a visit on purpose: the client disconnects (its queued output still goes), the socket is
 * closed by after(). */
static void leave(gen *g, user *u) {
  (void)g;
  u->phase = U_LEAVING;
  if (u->cl) {
    pomelo_client_disconnect(u->cl);
  }
}

static void fail_user(gen *g, user *u, const char *why, const char *detail) {
  if (u->phase == U_FAILED) {
    return;
  }
  if (u->kind == K_CHURN && g->running && u->attempts < 20) {
    /* a churner retries (a server may not have seen its last visit end yet) */
    g->r.login_retries++;
    u->attempts++;
    if (u->phase >= U_GATE_TCP && u->phase <= U_ENTER) {
      g->logging_in--;
    }
    u->phase = U_LEAVING;
    if (u->cl) {
      pomelo_client_disconnect(u->cl);
    }
    u->next_at = now_ms() + 200;
    return;
  }
  if (g->r.login_failed < 5) {
    fprintf(stderr, PROG ": %s: %s%s%s\n", u->name, why, detail ? ": " : "", detail ? detail : "");
  }
  if (u->phase >= U_GATE_TCP && u->phase <= U_ENTER) {
    g->logging_in--;
  }
  g->r.login_failed++;
  u->phase = U_FAILED;
  if (u->cl) {
    pomelo_client_disconnect(u->cl);
  }
}

static void on_enter(pomelo_client *cl, int status, const char *route, size_t route_len,
                     const pomelo_msg *resp, void *req_data) {
  user *u = (user *)req_data;
  gen *g = u->g;
  (void)cl;
  (void)route;
  (void)route_len;
  if (u->phase != U_ENTER) {
    return;
  }
  if (status != 0 || !resp || !memmem(resp->body, resp->body_len, "\"users\"", 7)) {
    char b[160];
    snprintf(b, sizeof b, "%.*s", resp ? (int)(resp->body_len < 120 ? resp->body_len : 120) : 0,
             resp ? (const char *)resp->body : "");
    fail_user(g, u, status ? pomelo_strerror(status) : "enter refused", b);
    return;
  }
  u->phase = U_IN;
  u->attempts = 0;
  g->logging_in--;
  if (g->running) {
    g->r.churn_joins++;
  } else {
    g->r.logged_in++;
  }
  if (u->kind == K_CHURN && g->running) {
    u->next_at = now_ms() + g->churn_ms;
  }
}

static void on_query(pomelo_client *cl, int status, const char *route, size_t route_len,
                     const pomelo_msg *resp, void *req_data) {
  user *u = (user *)req_data;
  gen *g = u->g;
  pomelo_json_doc *doc = NULL;
  const pomelo_json_value *root, *host, *port;
  const char *h;
  size_t hl;
  char hostbuf[64];
  (void)route;
  (void)route_len;
  if (u->phase != U_GATE) {
    return;
  }
  if (status != 0 || !resp ||
      pomelo_json_parse(&doc, NULL, (const char *)resp->body, resp->body_len, NULL, NULL) != 0) {
    fail_user(g, u, "queryEntry", status ? pomelo_strerror(status) : "no JSON answer");
    return;
  }
  root = pomelo_json_root(doc);
  host = pomelo_json_get(root, "host");
  port = pomelo_json_get(root, "port");
  h = host ? pomelo_json_string(host, &hl) : NULL;
  if (!h || !port || pomelo_json_typeof(port) != POMELO_JSON_NUMBER || hl >= sizeof hostbuf) {
    pomelo_json_doc_del(doc);
    fail_user(g, u, "queryEntry answered no host and port", NULL);
    return;
  }
  memcpy(hostbuf, h, hl);
  hostbuf[hl] = '\0';
  memset(&u->conn_addr, 0, sizeof u->conn_addr);
  u->conn_addr.sin_family = AF_INET;
  u->conn_addr.sin_port = htons((uint16_t)pomelo_json_number(port));
  if (inet_pton(AF_INET, hostbuf, &u->conn_addr.sin_addr) != 1) {
    u->conn_addr.sin_addr = g->gate.sin_addr; /* a name: the gate's machine */
  }
  pomelo_json_doc_del(doc);
  u->phase = U_GATE_DONE;
  pomelo_client_disconnect(cl); /* after() closes the socket and goes on to the connector */
}

/* One onChat: which room, sender and sequence its msg says. Returns 0 or -1 (not ours). */
static int parse_msg(const pomelo_msg *m, uint32_t *room_i, uint32_t *sender, uint32_t *seq) {
  const char *b = (const char *)m->body, *end = b + m->body_len, *p;
  unsigned long v[3];
  int i;
  p = (const char *)memmem(b, m->body_len, "\"msg\":\"", 7);
  if (!p) {
    return -1;
  }
  p += 7;
  for (i = 0; i < 3; i++) {
    unsigned long x = 0;
    const char *s = p;
    while (p < end && *p >= '0' && *p <= '9') {
      x = x * 10 + (unsigned long)(*p - '0');
      p++;
    }
    if (p == s || p >= end || *p != '.' || x > UINT32_MAX) {
      return -1;
    }
    p++;
    v[i] = x;
  }
  *room_i = (uint32_t)v[0];
  *sender = (uint32_t)v[1];
  *seq = (uint32_t)v[2];
  return 0;
}

static void on_chat(pomelo_client *cl, const char *route, size_t route_len, const pomelo_msg *push,
                    void *user_data) {
  user *u = (user *)pomelo_client_user_data(cl);
  gen *g = u->g;
  uint64_t t = now_us();
  uint32_t ri, si, seq;
  int dup;
  (void)route;
  (void)route_len;
  (void)user_data;
  g->r.pushes_total++;
  g->last_push_ms = t / 1000;
  if (t >= g->window_us && t < g->end_us) {
    g->r.pushes_window++;
  }
  if (parse_msg(push, &ri, &si, &seq) != 0 || ri != u->rm->index || si >= u->nseen) {
    g->r.stranger++;
    return;
  }
  if (u->kind == K_SLOW) {
    g->r.slow_pushes++;
  }
  if (u->kind == K_FLOOD) {
    g->r.flood_pushes++;
  }
  if (seq < u->seen[si].top && !track_has(&u->seen[si], seq)) {
    if (u->kind == K_STAY) {
      g->r.ooo++;
    }
  }
  dup = track_mark(&u->seen[si], seq);
  if (dup < 0) {
    die("out of memory", NULL);
  }
  if (dup) {
    g->r.dup++;
  }
  /* the sender's own push: echo latency */
  if (!dup && u->sender == (int)si && u->ring) {
    slot *s = &u->ring[seq % RING];
    if (s->seq == seq && s->due >= g->window_us && t < g->end_us) {
      h_add(&g->r.echo, t - s->due);
    }
  }
}

static void on_other_push(pomelo_client *cl, const char *route, size_t route_len,
                          const pomelo_msg *push, void *user_data) {
  user *u = (user *)pomelo_client_user_data(cl);
  (void)route;
  (void)route_len;
  (void)push;
  (void)user_data;
  u->g->r.others++; /* onAdd, onLeave */
}

static void send_one(gen *g, user *u, uint64_t due);

static void on_sent(pomelo_client *cl, int status, const char *route, size_t route_len,
                    const pomelo_msg *resp, void *req_data) {
  slot *s = (slot *)req_data;
  user *u = s->u;
  gen *g = u->g;
  uint64_t t = now_us();
  int ok = status == 0 && resp && !memmem(resp->body, resp->body_len, "\"code\":500", 10) &&
           !memmem(resp->body, resp->body_len, "\"error\"", 7);
  (void)cl;
  (void)route;
  (void)route_len;
  s->used = 0;
  u->inflight--;
  if (ok) {
    g->r.oks++;
    if (track_mark(&u->ok, s->seq) < 0) {
      die("out of memory", NULL);
    }
    if (u->kind == K_FLOOD) {
      g->r.flood_ok++;
    }
    if (s->due >= g->window_us && t < g->end_us && u->kind != K_FLOOD) {
      h_add(&g->r.req, t - s->due);
    }
  } else {
    g->r.errors++;
    if (status == POMELO_ERR_TIMEOUT) {
      g->r.timeouts++;
    } else if (status == POMELO_ERR_CLOSED) {
      g->r.closed_errors++;
    }
    if (u->kind == K_FLOOD) {
      g->r.flood_errors++;
    }
  }
  if (g->running && !g->draining && g->rate <= 0 && u->kind != K_FLOOD) {
    while (u->inflight < g->window && u->phase == U_IN) { /* closed loop: refill the window */
      uint32_t before = u->inflight;
      send_one(g, u, now_us());
      if (u->inflight == before) {
        break;
      }
    }
  }
}

static void send_one(gen *g, user *u, uint64_t due) {
  char body[2048];
  int len, pad, rc;
  slot *s;
  if (u->phase != U_IN || u->inflight >= RING || !u->cl) {
    return;
  }
  s = &u->ring[u->seq % RING];
  if (s->used) {
    return; /* its slot still waits for an answer: try later */
  }
  pad = (int)g->msg_bytes; /* the padding after "<room>.<sender>.<seq>." */
  len = snprintf(body, sizeof body,
                 "{\"rid\":\"%s\",\"content\":\"%u.%u.%u.%.*s\",\"from\":\"%s\",\"target\":\"*\"}",
                 u->rm->rid, u->rm->index, (unsigned)u->sender, u->seq, pad, g->pad, u->name);
  if (len < 0 || (size_t)len >= sizeof body) {
    die("message too long", NULL);
  }
  s->u = u;
  s->seq = u->seq;
  s->due = due;
  s->used = 1;
  rc = pomelo_client_request(u->cl, "chat.chatHandler.send", (const uint8_t *)body, (size_t)len,
                             u->kind == K_FLOOD ? 2000 : g->timeout_ms, on_sent, s, now_ms(), NULL);
  if (rc != 0) {
    s->used = 0;
    g->r.errors++;
    return;
  }
  u->seq++;
  u->inflight++;
  g->r.sends++;
  if (u->kind == K_FLOOD) {
    g->r.flood_sent++;
  }
  if (due >= g->window_us && due < g->end_us && u->kind != K_FLOOD) {
    g->r.sends_window++;
  }
  mark_dirty(g, u);
}

/* ---------------------------------------------------------------------------------------------
 * Client callbacks and the connection steps
 * ------------------------------------------------------------------------------------------- */

static void on_connected(pomelo_client *cl, const pomelo_json_value *response, void *ud) {
  user *u = (user *)ud;
  gen *g = u->g;
  char body[160];
  int n, rc;
  (void)response;
  if (u->phase == U_HS) {
    uint64_t t = now_us();
    if (t >= g->window_us && t < g->end_us) {
      g->r.hs_done++;
      h_add(&g->r.hs, t - u->start_us);
    }
    u->hs_ok = 1;
    pomelo_client_disconnect(cl); /* the ACK is queued: it goes out, then the socket closes */
    return;
  }
  if (u->phase == U_GATE) {
    n = snprintf(body, sizeof body, "{\"uid\":\"%s\"}", u->name);
    rc = pomelo_client_request(cl, "gate.gateHandler.queryEntry", (const uint8_t *)body, (size_t)n,
                               g->timeout_ms, on_query, u, now_ms(), NULL);
  } else if (u->phase == U_CONN) {
    n = snprintf(body, sizeof body, "{\"username\":\"%s\",\"rid\":\"%s\"}", u->name, u->rm->rid);
    rc = pomelo_client_request(cl, "connector.entryHandler.enter", (const uint8_t *)body, (size_t)n,
                               g->timeout_ms, on_enter, u, now_ms(), NULL);
    u->phase = U_ENTER;
  } else {
    return;
  }
  if (rc != 0) {
    fail_user(g, u, "request", pomelo_strerror(rc));
  }
}

static void on_handshake_error(pomelo_client *cl, int code, void *ud) {
  user *u = (user *)ud;
  char c[16];
  (void)cl;
  snprintf(c, sizeof c, "%d", code);
  if (u->phase == U_HS) {
    u->g->r.hs_failed++;
    return;
  }
  fail_user(u->g, u, "handshake refused", c);
}

static void on_kick(pomelo_client *cl, const char *reason, size_t reason_len, void *ud) {
  user *u = (user *)ud;
  (void)cl;
  u->g->r.kicks++;
  if (u->g->r.kicks <= 3 && !u->g->stopped) {
    fprintf(stderr, PROG ": %s kicked: %.*s\n", u->name, (int)reason_len, reason ? reason : "");
  }
}

static void on_disconnect(pomelo_client *cl, int reason, uint64_t reconnect_at, void *ud) {
  user *u = (user *)ud;
  gen *g = u->g;
  (void)cl;
  (void)reconnect_at;
  switch (u->phase) {
  case U_IN:
    if (u->kind == K_SLOW) {
      g->r.slow_closed++; /* the server's slow-consumer policy (or its heartbeat timeout) */
    } else if (u->kind == K_STAY || u->kind == K_FLOOD || !g->running) {
      if (!g->stopped) {
        g->r.stay_lost_conns++;
        if (g->r.stay_lost_conns <= 3) {
          fprintf(stderr, PROG ": %s lost its connection (%s)\n", u->name,
                  pomelo_close_reason_name(reason));
        }
      }
    } else {
      g->r.churn_leaves++; /* a churner lost while in: it comes back like the others */
      u->next_at = now_ms() + g->churn_ms;
    }
    u->phase = U_OUT;
    break;
  case U_GATE:
  case U_GATE_TCP:
  case U_CONN:
  case U_CONN_TCP:
  case U_ENTER: {
    char r[16];
    snprintf(r, sizeof r, "%d", reason);
    fail_user(g, u, "connection lost while logging in, close reason", r);
    break;
  }
  case U_HS:
    break; /* handshake mode: counted on the next start */
  default:
    break; /* U_GATE_DONE, U_LEAVING, U_FAILED: expected */
  }
}

static void on_output(pomelo_client *cl, void *ud) {
  user *u = (user *)ud;
  (void)cl;
  mark_dirty(u->g, u);
}

static int make_client(const gen *g, user *u) {
  pomelo_client_settings s;
  pomelo_client_callbacks cb;
  int rc;
  pomelo_client_settings_default(&s);
  s.conn.transport = u->ws ? POMELO_TRANSPORT_WS : POMELO_TRANSPORT_TCP;
  s.conn.ws_host = g->host_text;
  s.conn.client_type = "bench-load";
  s.conn.max_body = 1 << 20;
  s.request_timeout_ms = g->timeout_ms;
  s.reconnect.enabled = 0;
  s.random = rnd_cb;
  if (u->kind == K_SLOW) {
    s.conn.heartbeat_timeout_ms = 3600000; /* it reads nothing on purpose: never time out */
    s.conn.idle_timeout_ms = 0;
  }
  memset(&cb, 0, sizeof cb);
  cb.on_connected = on_connected;
  cb.on_handshake_error = on_handshake_error;
  cb.on_push = on_other_push;
  cb.on_kick = on_kick;
  cb.on_disconnect = on_disconnect;
  cb.on_output = on_output;
  rc = pomelo_client_new(&u->cl, &s, &cb, NULL, u);
  if (rc == 0) {
    rc = pomelo_client_on(u->cl, "onChat", on_chat, NULL);
  }
  return rc;
}

/* Runs after every call into a client: closes the socket when the client wants it, and takes
 * the next step of a login that was waiting for that. */
static void after(gen *g, user *u) {
  if (u->phase == U_GATE_TCP || u->phase == U_CONN_TCP || u->phase == U_HS_TCP) {
    return; /* a new socket: wants_close is about the old one until pomelo_client_connect */
  }
  if (u->fd >= 0 && u->cl && pomelo_client_wants_close(u->cl) &&
      pomelo_client_out_len(u->cl) == 0) {
    close_fd(u);
  } else if (u->fd >= 0 && u->cl && pomelo_client_wants_close(u->cl)) {
    flush(g, u);
    if (pomelo_client_out_len(u->cl) == 0) {
      close_fd(u);
    }
  }
  if (u->fd >= 0) {
    return;
  }
  if (u->phase == U_GATE_DONE) {
    int rc = open_socket(g, u, &u->conn_addr);
    if (rc != 0) {
      g->r.connect_errors++;
      fail_user(g, u, "connect to the connector", strerror(rc));
      return;
    }
    u->phase = U_CONN_TCP;
  } else if (u->phase == U_LEAVING) {
    u->phase = U_OUT;
  } else if (u->phase == U_HS || u->phase == U_HS_TCP) {
    if (!u->hs_ok && g->running && !g->draining) {
      g->r.hs_failed++; /* closed before the handshake was done */
    }
    if (!g->hs_cached) {
      pomelo_client_del(u->cl);
      u->cl = NULL;
    }
    u->phase = U_OUT;
    if (g->running && !g->draining) {
      hs_start(g, u);
    }
  }
}

static void start_login(gen *g, user *u) {
  int rc;
  uint32_t i;
  if (!u->cl && make_client(g, u) != 0) {
    die("cannot create a client", NULL);
  }
  for (i = 0; i < u->nseen; i++) {
    track_reset(&u->seen[i]); /* a new visit: its pushes start again */
  }
  rc = open_socket(g, u, &g->gate);
  g->logging_in++;
  u->login_deadline = now_ms() + 2 * (uint64_t)g->timeout_ms;
  u->phase = U_GATE_TCP;
  if (rc != 0) {
    g->r.connect_errors++;
    fail_user(g, u, "connect to the gate", strerror(rc));
  }
}

/* Handshake mode: one more connection. */
static void hs_start(gen *g, user *u) {
  int rc;
  if (!u->cl && make_client(g, u) != 0) {
    die("cannot create a client", NULL);
  }
  u->start_us = now_us();
  u->hs_ok = 0;
  rc = open_socket(g, u, &g->target);
  if (rc != 0) {
    g->r.connect_errors++;
    pomelo_client_del(u->cl);
    u->cl = NULL;
    u->phase = U_OUT;
    u->next_at = now_ms() + 10; /* retried by the timer */
    return;
  }
  u->phase = U_HS_TCP;
}

/* The TCP connect of `u` completed (or failed). */
static void connected(gen *g, user *u) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(u->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
    err = errno;
  }
  if (err == EINPROGRESS || err == EALREADY) {
    return;
  }
  if (err != 0) {
    g->r.connect_errors++;
    close_fd(u);
    if (u->phase == U_HS_TCP) {
      g->r.hs_failed++;
      pomelo_client_del(u->cl);
      u->cl = NULL;
      u->phase = U_OUT;
      u->next_at = now_ms() + 10;
      return;
    }
    fail_user(g, u, "connect", strerror(err));
    return;
  }
  u->phase = u->phase == U_GATE_TCP ? U_GATE : u->phase == U_CONN_TCP ? U_CONN : U_HS;
  if (pomelo_client_connect(u->cl, now_ms()) != 0) {
    fail_user(g, u, "pomelo_client_connect", NULL);
  }
}

static void on_event(gen *g, user *u, uint32_t ev) {
  if (u->fd < 0) {
    return;
  }
  if (u->phase == U_GATE_TCP || u->phase == U_CONN_TCP || u->phase == U_HS_TCP) {
    if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
      return;
    }
    connected(g, u);
    if (u->fd < 0) {
      return;
    }
  }
  if (u->no_read) {
    if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
      /* the server closed the connection of a consumer that reads nothing */
      u->no_read = 0;
      pomelo_client_peer_closed(u->cl, now_ms());
      close_fd(u);
    } else if (ev & EPOLLOUT) {
      flush(g, u);
    }
    return;
  }
  if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    do_read(g, u);
  }
  if (u->fd >= 0 && (ev & EPOLLOUT)) {
    flush(g, u);
  }
  after(g, u);
}

static void flush_dirty(gen *g) {
  while (g->dirty) {
    user *u = g->dirty;
    g->dirty = u->dirty_next;
    u->dirty = 0;
    flush(g, u);
    after(g, u);
  }
}

/* ---------------------------------------------------------------------------------------------
 * Timers: client expiries, churn, open-loop sends, the login window
 * ------------------------------------------------------------------------------------------- */

static void run_timers(gen *g, uint64_t ms) {
  uint32_t i;
  for (i = 0; i < g->nus; i++) {
    user *u = &g->us[i];
    if (u->cl && u->fd >= 0 && pomelo_client_expiry(u->cl) <= ms) {
      (void)pomelo_client_handle_expiry(u->cl, ms);
      mark_dirty(g, u);
    }
    if (u->phase >= U_GATE_TCP && u->phase <= U_ENTER && ms > u->login_deadline) {
      fail_user(g, u, "login timed out", NULL);
      mark_dirty(g, u);
    }
    if (g->handshakes) {
      if (u->phase == U_OUT && g->running && !g->draining && u->next_at <= ms) {
        hs_start(g, u);
      }
      continue;
    }
    if (u->kind == K_CHURN && g->running && !g->draining && u->next_at <= ms) {
      if (u->phase == U_IN) {
        g->r.churn_leaves++;
        leave(g, u);
        u->next_at = ms + g->churn_ms;
        mark_dirty(g, u);
      } else if (u->phase == U_OUT && u->fd < 0) {
        start_login(g, u);
      }
    }
  }
  /* the start: at most login_window users logging in at once */
  while (!g->handshakes && g->next_login < g->nus && g->logging_in < g->login_window) {
    start_login(g, &g->us[g->next_login++]);
  }
}

/* Open loop: every sender whose time has come sends (as many as are due). Returns the next due
 * time in us (UINT64_MAX: none). */
static uint64_t run_senders(gen *g, uint64_t us) {
  uint64_t next = UINT64_MAX;
  uint32_t i;
  for (i = 0; i < g->nsenders_list; i++) {
    user *u = g->senders_list[i];
    if (u->phase != U_IN || !u->interval_us) {
      continue;
    }
    while (u->next_send_us <= us && u->next_send_us < g->end_us) {
      uint32_t before = u->seq;
      send_one(g, u, u->next_send_us); /* latency counts from when it was due */
      if (u->seq == before) {
        break; /* its window is full: it sends later, still counted from its due time */
      }
      u->next_send_us += u->interval_us;
    }
    if (u->next_send_us < next) {
      next = u->next_send_us;
    }
  }
  return next;
}

/* Runs the loop until `until_ms` or until stop(g) says so. Returns 1 when the control pipe
 * became readable (the parent said go, or quit). */
static int run_until(gen *g, uint64_t until_ms, int (*stop)(gen *)) {
  struct epoll_event evs[MAX_EVENTS];
  uint64_t next_tick = now_ms();
  for (;;) {
    uint64_t ms = now_ms(), next_send = UINT64_MAX, wake;
    int n, i, wait, ctl = 0;
    if (ms >= next_tick) {
      run_timers(g, ms);
      next_tick = ms + TICK_MS;
    }
    if (g->running && !g->draining && (g->rate > 0 || g->flood)) {
      next_send = run_senders(g, now_us());
    }
    flush_dirty(g);
    if (stop && stop(g)) {
      return 0;
    }
    ms = now_ms();
    if (ms >= until_ms) {
      return 0;
    }
    wake = next_tick < until_ms ? next_tick : until_ms;
    if (next_send != UINT64_MAX && next_send / 1000 < wake) {
      wake = next_send / 1000;
    }
    wait = wake > ms ? (int)(wake - ms) : 0;
    n = epoll_wait(g->ep, evs, MAX_EVENTS, wait);
    if (n < 0 && errno != EINTR) {
      die("epoll_wait", strerror(errno));
    }
    for (i = 0; i < n; i++) {
      if (evs[i].data.ptr == NULL) {
        ctl = 1;
        continue;
      }
      on_event(g, (user *)evs[i].data.ptr, evs[i].events);
    }
    flush_dirty(g);
    if (ctl) {
      return 1;
    }
  }
}

static int all_in(gen *g) {
  return g->next_login == g->nus && g->logging_in == 0;
}

static int drained(gen *g) {
  uint32_t i;
  if (now_ms() < g->last_push_ms + DRAIN_QUIET_MS) {
    return 0;
  }
  for (i = 0; i < g->nsenders_list; i++) {
    if (g->senders_list[i]->inflight && g->senders_list[i]->phase == U_IN) {
      return 0;
    }
  }
  return 1;
}

/* ---------------------------------------------------------------------------------------------
 * One process's share
 * ------------------------------------------------------------------------------------------- */

static void add_member(room *rm, user *u) {
  if (rm->n == rm->cap) {
    uint32_t nc = rm->cap ? rm->cap * 2 : 8;
    user **nm = (user **)realloc(rm->members, nc * sizeof *nm);
    if (!nm) {
      die("out of memory", NULL);
    }
    rm->members = nm;
    rm->cap = nc;
  }
  rm->members[rm->n++] = u;
}

/* Builds this process's rooms and users: room r (of R) belongs to process r % P; user i (of N)
 * is in room i % R; flooders each get a room of their own. */
static void plan(gen *g) {
  uint32_t r, i, k, nflood = 0, nslow = 0, nchurn = 0;
  uint32_t total_rooms = g->rooms + g->flood;
  room **by_index = (room **)calloc(total_rooms, sizeof *by_index);
  g->rms = (room *)calloc(total_rooms, sizeof *g->rms);
  g->us = (user *)calloc((size_t)g->users + g->flood + 1, sizeof *g->us);
  g->senders_list = (user **)calloc((size_t)g->users + g->flood + 1, sizeof *g->senders_list);
  if (!by_index || !g->rms || !g->us || !g->senders_list) {
    die("out of memory", NULL);
  }
  for (r = 0; r < total_rooms; r++) {
    if (r % g->procs != g->proc) {
      continue;
    }
    by_index[r] = &g->rms[g->nrooms++];
    by_index[r]->index = r;
    snprintf(by_index[r]->rid, sizeof by_index[r]->rid, "%s%s%u", g->tag,
             r < g->rooms ? "room" : "flood", r);
  }
  for (i = 0; i < g->users + g->flood; i++) {
    room *rm = i < g->users ? by_index[i % g->rooms] : by_index[g->rooms + (i - g->users)];
    user *u;
    if (!rm) {
      continue;
    }
    u = &g->us[g->nus++];
    u->g = g;
    u->gidx = i;
    u->rm = rm;
    u->fd = -1;
    u->sender = -1;
    snprintf(u->name, sizeof u->name, "%su%u", g->tag, i);
    u->ws = g->transport == 1 || (g->transport == 2 && (i / g->rooms) % 2 == 1);
    add_member(rm, u);
  }
  /* roles: senders first in each room, then slow consumers and churners taken round robin over
   * the rooms (globally numbered, so that P processes pick the same users as one would) */
  for (k = 0; k < g->nrooms; k++) {
    room *rm = &g->rms[k];
    uint32_t s = rm->index < g->rooms ? (g->senders < rm->n ? g->senders : rm->n) : 1;
    rm->senders = rm->members;
    rm->nsenders = s;
    for (i = 0; i < s; i++) {
      user *u = rm->members[i];
      u->sender = (int)i;
      u->kind = rm->index < g->rooms ? K_STAY : K_FLOOD;
      g->senders_list[g->nsenders_list++] = u;
    }
  }
  for (k = 0; k < g->nrooms; k++) {
    room *rm = &g->rms[k];
    uint32_t j = rm->nsenders;
    if (rm->index >= g->rooms) {
      nflood++;
      continue;
    }
    /* the m-th slow consumer overall is in room m % R, at the first free slot */
    for (i = rm->index; i < g->slow && j < rm->n; i += g->rooms) {
      rm->members[j++]->kind = K_SLOW;
      nslow++;
    }
    for (i = rm->index; i < g->churn && j < rm->n; i += g->rooms) {
      rm->members[j++]->kind = K_CHURN;
      nchurn++;
    }
  }
  for (i = 0; i < g->nus; i++) {
    user *u = &g->us[i];
    u->nseen = u->rm->nsenders;
    u->seen = (track *)calloc(u->nseen ? u->nseen : 1, sizeof *u->seen);
    if (!u->seen) {
      die("out of memory", NULL);
    }
    if (u->sender >= 0) {
      u->ring = (slot *)calloc(RING, sizeof *u->ring);
      if (!u->ring) {
        die("out of memory", NULL);
      }
    }
  }
  g->r.users = g->nus;
  g->r.slow_n = nslow;
  g->r.flood_n = nflood;
  free(by_index);
}

/* The checks at the end: every answered send of a sender reached every member that stayed. */
static void check(gen *g) {
  uint32_t k, i, j, q;
  for (k = 0; k < g->nrooms; k++) {
    room *rm = &g->rms[k];
    for (i = 0; i < rm->n; i++) {
      user *m = rm->members[i];
      if (m->kind != K_STAY && m->kind != K_SLOW) {
        continue;
      }
      for (j = 0; j < rm->nsenders; j++) {
        const track *ok = &rm->senders[j]->ok;
        const track *seen = &m->seen[j];
        for (q = 0; q < ok->top; q++) {
          if (track_has(ok, q) && !track_has(seen, q)) {
            if (m->kind == K_STAY) {
              g->r.lost++;
            } else {
              g->r.slow_gaps++;
            }
          }
        }
      }
    }
  }
  for (i = 0; i < g->nus; i++) {
    user *u = &g->us[i];
    if (u->kind == K_FLOOD && u->seen[0].count != u->ok.count) {
      /* a flooder alone in its room: one onChat per answered send */
      g->r.lost += u->ok.count > u->seen[0].count ? u->ok.count - u->seen[0].count : 0;
    }
  }
}

static void write_all(int fd, const void *p, size_t n) {
  const char *c = (const char *)p;
  while (n) {
    ssize_t w = write(fd, c, n);
    if (w < 0 && errno == EINTR) {
      continue;
    }
    if (w <= 0) {
      die("write to the parent", strerror(errno));
    }
    c += w;
    n -= (size_t)w;
  }
}

static int read_all(int fd, void *p, size_t n) {
  char *c = (char *)p;
  while (n) {
    ssize_t r = read(fd, c, n);
    if (r < 0 && errno == EINTR) {
      continue;
    }
    if (r <= 0) {
      return -1;
    }
    c += r;
    n -= (size_t)r;
  }
  return 0;
}

/* A child: logs its users in, says 'R', waits for the start time, runs, drains, checks, and
 * writes its results. */
static void child(gen *g, int ctl_fd, int res_fd) {
  struct epoll_event ev;
  uint64_t t0;
  double c0;
  uint32_t i;
  g->rng = ((uint64_t)getpid() << 32) ^ now_us() ^ 0x9e3779b97f4a7c15ull;
  if (getrandom(&g->rng, sizeof g->rng, 0) != (ssize_t)sizeof g->rng || g->rng == 0) {
    g->rng |= 1;
  }
  g->ep = epoll_create1(EPOLL_CLOEXEC);
  g->buf = (uint8_t *)malloc(READ_BUF);
  if (g->ep < 0 || !g->buf) {
    die("epoll_create1", strerror(errno));
  }
  ev.events = EPOLLIN;
  ev.data.ptr = NULL;
  if (epoll_ctl(g->ep, EPOLL_CTL_ADD, ctl_fd, &ev) != 0) {
    die("epoll_ctl", strerror(errno));
  }
  g->window_us = g->end_us = UINT64_MAX;
  if (!g->handshakes) {
    plan(g);
    t0 = now_us();
    run_until(g, now_ms() + 600000, all_in);
    g->r.login_s = (double)(now_us() - t0) / 1e6;
  } else {
    g->nus = g->concurrency / g->procs + (g->proc < g->concurrency % g->procs ? 1 : 0);
    g->us = (user *)calloc(g->nus ? g->nus : 1, sizeof *g->us);
    if (!g->us) {
      die("out of memory", NULL);
    }
    for (i = 0; i < g->nus; i++) {
      g->us[i].g = g;
      g->us[i].fd = -1;
      g->us[i].kind = K_STAY;
      g->us[i].ws = g->transport == 1 || (g->transport == 2 && (i + g->proc) % 2);
      snprintf(g->us[i].name, sizeof g->us[i].name, "hs%u", i);
    }
  }
  write_all(res_fd, "R", 1);
  /* wait for the start time (keeping heartbeats going) */
  for (;;) {
    if (run_until(g, UINT64_MAX, NULL) == 1) {
      break;
    }
  }
  if (read_all(ctl_fd, &g->go_us, sizeof g->go_us) != 0) {
    exit(1); /* the parent is gone */
  }
  g->window_us = g->go_us + (uint64_t)(g->warmup * 1e6);
  g->end_us = g->go_us + (uint64_t)(g->seconds * 1e6);
  /* sleep to the start on the loop */
  while (now_us() < g->go_us) {
    run_until(g, g->go_us / 1000, NULL);
  }
  g->running = 1;
  for (i = 0; i < g->nsenders_list; i++) {
    user *u = g->senders_list[i];
    if (u->kind == K_FLOOD) {
      u->interval_us = (uint64_t)(1e6 / g->flood_rate);
      u->next_send_us = g->go_us;
    } else if (g->rate > 0) {
      /* evenly spread: sender i of M starts at i/M of the interval */
      u->interval_us = (uint64_t)(1e6 * (double)(g->nsenders_total) / g->rate);
      u->next_send_us = g->go_us + u->interval_us * i / (g->nsenders_list ? g->nsenders_list : 1);
    } else {
      uint32_t w;
      for (w = 0; w < g->window; w++) {
        send_one(g, u, now_us());
      }
    }
  }
  for (i = 0; i < g->nus; i++) {
    user *u = &g->us[i];
    if (u->kind == K_SLOW && u->phase == U_IN) {
      u->no_read = 1;
    }
    if (u->kind == K_CHURN) {
      u->next_at = now_ms() + (uint64_t)(rnd(g) % (g->churn_ms + 1)); /* spread the first moves */
    }
    if (g->handshakes) {
      hs_start(g, u);
    }
  }
  flush_dirty(g);
  run_until(g, g->window_us / 1000, NULL);
  c0 = procstat_self_cpu();
  run_until(g, g->end_us / 1000, NULL);
  g->r.cpu_window = procstat_self_cpu() - c0;
  /* the end: no more sends; slow consumers read again; wait for the rest */
  g->draining = 1;
  t0 = now_ms();
  for (i = 0; i < g->nus; i++) {
    user *u = &g->us[i];
    if (u->no_read) {
      u->no_read = 0;
      if (u->fd >= 0) {
        do_read(g, u);
        after(g, u);
      }
    }
  }
  if (!g->handshakes) {
    run_until(g, now_ms() + DRAIN_MAX_MS, drained);
  }
  g->r.drain_ms = now_ms() - t0;
  g->stopped = 1;
  check(g);
  for (i = 0; i < g->nus; i++) { /* goodbye: closes cleanly */
    user *u = &g->us[i];
    if (u->cl && u->fd >= 0) {
      leave(g, u);
    }
  }
  run_until(g, now_ms() + 300, NULL);
  write_all(res_fd, &g->r, sizeof g->r);
  for (i = 0; i < g->nus; i++) {
    user *u = &g->us[i];
    uint32_t j;
    close_fd(u);
    pomelo_client_del(u->cl);
    for (j = 0; j < u->nseen; j++) {
      free(u->seen[j].bits);
    }
    free(u->seen);
    free(u->ring);
    free(u->ok.bits);
  }
  for (i = 0; i < g->nrooms; i++) {
    free(g->rms[i].members);
  }
  free(g->rms);
  free(g->us);
  free(g->senders_list);
  free(g->buf);
  free(g->pad);
  close(g->ep);
  exit(0);
}

/* ---------------------------------------------------------------------------------------------
 * The parent: options, processes, the server's /proc, the report
 * ------------------------------------------------------------------------------------------- */

static void usage(void) {
  fprintf(stderr,
          "usage: " PROG
          " --gate H:P [--users N] [--rooms R] [--senders S] [--window W | --rate X]\n"
          "          [--seconds D] [--warmup S] [--procs P] [--transport tcp|ws|mixed]\n"
          "          [--msg-bytes B] [--server-pgid G | --server-pid P] [--label L] [--hist F]\n"
          "          [--churn K] [--churn-ms M] [--slow K] [--flood K] [--flood-rate X]\n"
          "          [--max-server-rss-mib M] [--sources K] [--login-window L] [--timeout-ms T]\n"
          "       " PROG
          " --handshakes --connect H:P [--cached] [--concurrency C] [--seconds D] ...\n");
  exit(2);
}

static double num(const char *opt, const char *v, double lo, double hi) {
  char *end;
  double d = strtod(v, &end);
  if (end == v || *end || !(d >= lo && d <= hi)) {
    fprintf(stderr, PROG ": %s: not a number in [%g, %g]: %s\n", opt, lo, hi, v);
    exit(2);
  }
  return d;
}

static void addr(const char *opt, const char *v, struct sockaddr_in *out, char *text, size_t tl) {
  char host[64];
  const char *colon = strrchr(v, ':');
  long port;
  if (!colon || (size_t)(colon - v) >= sizeof host) {
    fprintf(stderr, PROG ": %s: want HOST:PORT (numeric IPv4), got %s\n", opt, v);
    exit(2);
  }
  memcpy(host, v, (size_t)(colon - v));
  host[colon - v] = '\0';
  port = strtol(colon + 1, NULL, 10);
  memset(out, 0, sizeof *out);
  out->sin_family = AF_INET;
  out->sin_port = htons((uint16_t)port);
  if (port <= 0 || port > 65535 || inet_pton(AF_INET, host, &out->sin_addr) != 1) {
    fprintf(stderr, PROG ": %s: want HOST:PORT (numeric IPv4), got %s\n", opt, v);
    exit(2);
  }
  if (text) {
    snprintf(text, tl, "%s", v);
  }
}

static void parse(gen *g, int argc, char **argv) {
  int i, have_target = 0;
  g->users = 100;
  g->rooms = 1;
  g->senders = 4;
  g->window = 4;
  g->seconds = 15;
  g->warmup = 2;
  g->procs = 1;
  g->sources = 8;
  g->login_window = 100;
  g->msg_bytes = 32;
  g->churn_ms = 1000;
  g->flood_rate = 1000;
  g->concurrency = 50;
  g->timeout_ms = 10000;
  g->label = "run";
  for (i = 1; i < argc; i++) {
    const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(k, "--handshakes") == 0) {
      g->handshakes = 1;
      continue;
    }
    if (strcmp(k, "--cached") == 0) {
      g->hs_cached = 1;
      continue;
    }
    if (!v) {
      usage();
    }
    i++;
    if (strcmp(k, "--gate") == 0) {
      addr(k, v, &g->gate, g->host_text, sizeof g->host_text);
      have_target |= 1;
    } else if (strcmp(k, "--connect") == 0) {
      addr(k, v, &g->target, g->host_text, sizeof g->host_text);
      have_target |= 2;
    } else if (strcmp(k, "--users") == 0) {
      g->users = (uint32_t)num(k, v, 1, 1e7);
    } else if (strcmp(k, "--rooms") == 0) {
      g->rooms = (uint32_t)num(k, v, 1, 1e6);
    } else if (strcmp(k, "--senders") == 0) {
      g->senders = (uint32_t)num(k, v, 0, 1e6);
    } else if (strcmp(k, "--window") == 0) {
      g->window = (uint32_t)num(k, v, 1, RING);
    } else if (strcmp(k, "--rate") == 0) {
      g->rate = num(k, v, 0, 1e8);
    } else if (strcmp(k, "--seconds") == 0) {
      g->seconds = num(k, v, 0.1, 1e6);
    } else if (strcmp(k, "--warmup") == 0) {
      g->warmup = num(k, v, 0, 1e6);
    } else if (strcmp(k, "--procs") == 0) {
      g->procs = (uint32_t)num(k, v, 1, 256);
    } else if (strcmp(k, "--transport") == 0) {
      g->transport = strcmp(v, "tcp") == 0     ? 0
                     : strcmp(v, "ws") == 0    ? 1
                     : strcmp(v, "mixed") == 0 ? 2
                                               : -1;
      if (g->transport < 0) {
        usage();
      }
    } else if (strcmp(k, "--msg-bytes") == 0) {
      g->msg_bytes = (uint32_t)num(k, v, 0, 1500);
    } else if (strcmp(k, "--server-pgid") == 0) {
      g->server_pgid = (long)num(k, v, 1, 1e9);
    } else if (strcmp(k, "--server-pid") == 0) {
      g->server_pid = (long)num(k, v, 1, 1e9);
    } else if (strcmp(k, "--label") == 0) {
      g->label = v;
    } else if (strcmp(k, "--hist") == 0) {
      g->hist_file = v;
    } else if (strcmp(k, "--churn") == 0) {
      g->churn = (uint32_t)num(k, v, 0, 1e7);
    } else if (strcmp(k, "--churn-ms") == 0) {
      g->churn_ms = (uint32_t)num(k, v, 10, 1e7);
    } else if (strcmp(k, "--slow") == 0) {
      g->slow = (uint32_t)num(k, v, 0, 1e7);
    } else if (strcmp(k, "--flood") == 0) {
      g->flood = (uint32_t)num(k, v, 0, 1e4);
    } else if (strcmp(k, "--flood-rate") == 0) {
      g->flood_rate = num(k, v, 1, 1e6);
    } else if (strcmp(k, "--max-server-rss-mib") == 0) {
      g->max_rss_mib = num(k, v, 1, 1e7);
    } else if (strcmp(k, "--sources") == 0) {
      g->sources = (uint32_t)num(k, v, 1, 250);
    } else if (strcmp(k, "--login-window") == 0) {
      g->login_window = (uint32_t)num(k, v, 1, 1e6);
    } else if (strcmp(k, "--timeout-ms") == 0) {
      g->timeout_ms = (uint32_t)num(k, v, 1, 1e7);
    } else if (strcmp(k, "--concurrency") == 0) {
      g->concurrency = (uint32_t)num(k, v, 1, 1e6);
    } else {
      usage();
    }
  }
  if (g->handshakes ? !(have_target & 2) : !(have_target & 1)) {
    usage();
  }
  if (g->warmup >= g->seconds) {
    fprintf(stderr, PROG ": --warmup must be shorter than --seconds\n");
    exit(2);
  }
  if (g->procs > (g->handshakes ? g->concurrency : g->rooms + g->flood)) {
    g->procs = g->handshakes ? g->concurrency : g->rooms + g->flood; /* a room is one process's */
  }
  {
    uint32_t r;
    for (r = 0; r < g->rooms; r++) {
      uint32_t size = g->users / g->rooms + (r < g->users % g->rooms ? 1 : 0);
      g->nsenders_total += g->senders < size ? g->senders : size;
    }
  }
  g->pad = (char *)malloc(g->msg_bytes + 1);
  if (!g->pad) {
    die("out of memory", NULL);
  }
  memset(g->pad, 'x', g->msg_bytes);
  g->pad[g->msg_bytes] = '\0';
  /* names unique to this run, so that runs against one server do not meet */
  snprintf(g->tag, sizeof g->tag, "%x",
           (unsigned)(now_us() ^ ((uint64_t)getpid() << 20)) & 0xfffff);
}

static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

static void sleep_until_us(uint64_t t) {
  struct timespec ts;
  ts.tv_sec = (time_t)(t / 1000000u);
  ts.tv_nsec = (long)(t % 1000000u) * 1000;
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
}

static int have_server(const gen *g) {
  return g->server_pid > 0 || g->server_pgid > 0;
}

static void sample(const gen *g, proc_sample *s) {
  if (have_server(g) && procstat_sample(g->server_pid, g->server_pgid, s) != 0) {
    die("the server is gone (no process to sample)", NULL);
  }
}

static void sum(results *a, const results *b) {
  const uint64_t *x = &b->users;
  uint64_t *y = &a->users;
  size_t i, n = (size_t)((const char *)&b->cpu_window - (const char *)&b->users) / sizeof(uint64_t);
  for (i = 0; i < n; i++) {
    y[i] += x[i];
  }
  a->cpu_window += b->cpu_window;
  if (b->login_s > a->login_s) {
    a->login_s = b->login_s;
  }
  if (b->drain_ms > a->drain_ms) {
    a->drain_ms = b->drain_ms;
  }
  h_merge(&a->req, &b->req);
  h_merge(&a->echo, &b->echo);
  h_merge(&a->hs, &b->hs);
}

static void out(const gen *g, const char *key, double v) {
  printf("@ load %s %s %.6g\n", g->label, key, v);
}

static void print_hist(const gen *g, const char *name, const hist *h) {
  static const double ps[] = {50, 90, 99, 99.9};
  static const char *const keys[] = {"p50", "p90", "p99", "p999"};
  char k[64];
  size_t i;
  printf("%-8s %9" PRIu64 " samples: p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f ms\n", name,
         h->count, h_pct(h, 50), h_pct(h, 90), h_pct(h, 99), h_pct(h, 99.9), h_pct(h, 100));
  for (i = 0; i < 4; i++) {
    snprintf(k, sizeof k, "%s_%s_ms", name, keys[i]);
    out(g, k, h_pct(h, ps[i]));
  }
  snprintf(k, sizeof k, "%s_max_ms", name);
  out(g, k, h_pct(h, 100));
}

static void write_hist_file(const gen *g, const hist *h) {
  static const double ps[] = {0,  10, 20,   30, 40,   50,    60,   70,    75,    80,    85,
                              90, 95, 97.5, 99, 99.5, 99.75, 99.9, 99.95, 99.99, 99.999};
  FILE *f;
  size_t i;
  if (!g->hist_file || !h->count) {
    return;
  }
  f = fopen(g->hist_file, "a");
  if (!f) {
    fprintf(stderr, PROG ": %s: %s\n", g->hist_file, strerror(errno));
    return;
  }
  for (i = 0; i < sizeof ps / sizeof ps[0]; i++) {
    if (ps[i] == 0 || h->count * (100 - ps[i]) >= 100) { /* only percentiles the count supports */
      fprintf(f, "%s\t%g\t%.4f\n", g->label, ps[i],
              ps[i] == 0 ? h_pct(h, 0.0001) : h_pct(h, ps[i]));
    }
  }
  fprintf(f, "%s\t100\t%.4f\n", g->label, h_pct(h, 100));
  fclose(f);
}

int main(int argc, char **argv) {
  gen g;
  pid_t *pids;
  int *ctl, *res, status = 0;
  uint32_t p;
  results total;
  proc_sample s0, sa, sb, sx;
  double max_rss_kib = 0, win, hz = procstat_hz(), busy0, busy1;
  uint64_t go, t;
  memset(&g, 0, sizeof g);
  parse(&g, argc, argv);
  raise_nofile();
  signal(SIGPIPE, SIG_IGN);
  pids = (pid_t *)calloc(g.procs, sizeof *pids);
  ctl = (int *)calloc(g.procs, sizeof *ctl);
  res = (int *)calloc(g.procs, sizeof *res);
  if (!pids || !ctl || !res) {
    die("out of memory", NULL);
  }
  memset(&s0, 0, sizeof s0);
  sample(&g, &s0);
  fflush(stdout);
  for (p = 0; p < g.procs; p++) {
    int a[2], b[2];
    if (pipe2(a, O_CLOEXEC) != 0 || pipe2(b, O_CLOEXEC) != 0) {
      die("pipe", strerror(errno));
    }
    pids[p] = fork();
    if (pids[p] < 0) {
      die("fork", strerror(errno));
    }
    if (pids[p] == 0) {
      close(a[1]);
      close(b[0]);
      g.proc = p;
      child(&g, a[0], b[1]);
    }
    close(a[0]);
    close(b[1]);
    ctl[p] = a[1];
    res[p] = b[0];
  }
  for (p = 0; p < g.procs; p++) { /* every process logged its users in */
    char c;
    if (read_all(res[p], &c, 1) != 0) {
      fprintf(stderr, PROG ": process %u died while logging in\n", p);
      status = 1;
    }
  }
  if (status) {
    for (p = 0; p < g.procs; p++) {
      kill(pids[p], SIGKILL);
      waitpid(pids[p], NULL, 0);
    }
    return 1;
  }
  go = now_us() + 100000;
  for (p = 0; p < g.procs; p++) {
    write_all(ctl[p], &go, sizeof go);
  }
  sleep_until_us(go + (uint64_t)(g.warmup * 1e6));
  memset(&sa, 0, sizeof sa);
  sample(&g, &sa);
  busy0 = (double)procstat_machine_busy();
  max_rss_kib = (double)sa.rss_kib;
  for (t = go + (uint64_t)(g.warmup * 1e6) + 1000000; t < go + (uint64_t)(g.seconds * 1e6);
       t += 1000000) {
    sleep_until_us(t);
    sample(&g, &sx);
    if ((double)sx.rss_kib > max_rss_kib) {
      max_rss_kib = (double)sx.rss_kib;
    }
  }
  sleep_until_us(go + (uint64_t)(g.seconds * 1e6));
  memset(&sb, 0, sizeof sb);
  sample(&g, &sb);
  busy1 = (double)procstat_machine_busy();
  if ((double)sb.rss_kib > max_rss_kib) {
    max_rss_kib = (double)sb.rss_kib;
  }
  memset(&total, 0, sizeof total);
  for (p = 0; p < g.procs; p++) {
    results *r = (results *)malloc(sizeof *r);
    int ws;
    if (!r) {
      die("out of memory", NULL);
    }
    if (read_all(res[p], r, sizeof *r) != 0) {
      fprintf(stderr, PROG ": process %u died\n", p);
      status = 1;
    } else {
      sum(&total, r);
    }
    free(r);
    if (waitpid(pids[p], &ws, 0) < 0 || !WIFEXITED(ws) || WEXITSTATUS(ws) != 0) {
      fprintf(stderr, PROG ": process %u ended badly\n", p);
      status = 1;
    }
  }
  if (have_server(&g)) { /* after the drain: what the server holds now */
    sample(&g, &sx);
    if ((double)sx.rss_kib > max_rss_kib) {
      max_rss_kib = (double)sx.rss_kib;
    }
  }
  win = g.seconds - g.warmup;

  printf("== %s: %s, %s ==\n", g.label, g.handshakes ? "handshakes" : "chat",
         g.transport == 0   ? "tcp"
         : g.transport == 1 ? "ws"
                            : "mixed tcp/ws");
  if (g.handshakes) {
    printf("concurrency %u over %u processes, %.1f s measured (after %.1f s)\n", g.concurrency,
           g.procs, win, g.warmup);
    printf("handshakes %.0f/s (%" PRIu64 " done, %" PRIu64 " failed, %" PRIu64 " connect errors)\n",
           (double)total.hs_done / win, total.hs_done, total.hs_failed, total.connect_errors);
    out(&g, "handshakes_per_s", (double)total.hs_done / win);
    out(&g, "hs_failed", (double)total.hs_failed);
    print_hist(&g, "hs", &total.hs);
  } else {
    printf("users %u in %u rooms (%" PRIu64 " logged in, %" PRIu64 " failed, login %.2f s), "
           "%u processes; %u senders (%s); %.1f s measured after %.1f s\n",
           g.users, g.rooms, total.logged_in, total.login_failed, total.login_s, g.procs,
           g.nsenders_total, g.rate > 0 ? "open loop" : "closed loop", win, g.warmup);
    if (g.rate > 0) {
      printf("open loop: %.0f sends/s asked\n", g.rate);
    } else {
      printf("closed loop: %u in flight per sender\n", g.window);
    }
    printf("sends %.0f/s, pushes delivered %.0f/s; answers %" PRIu64 " ok, %" PRIu64
           " errors (%" PRIu64 " timeouts, %" PRIu64 " on closed connections)\n",
           (double)total.sends_window / win, (double)total.pushes_window / win, total.oks,
           total.errors, total.timeouts, total.closed_errors);
    printf("checks: lost %" PRIu64 ", duplicated %" PRIu64 ", out of order %" PRIu64
           ", from another room %" PRIu64 ", stayers' connections lost %" PRIu64 "\n",
           total.lost, total.dup, total.ooo, total.stranger, total.stay_lost_conns);
    out(&g, "users", g.users);
    out(&g, "logged_in", (double)total.logged_in);
    out(&g, "login_failed", (double)total.login_failed);
    out(&g, "login_s", total.login_s);
    out(&g, "sends_per_s", (double)total.sends_window / win);
    out(&g, "pushes_per_s", (double)total.pushes_window / win);
    out(&g, "errors", (double)total.errors);
    out(&g, "lost", (double)total.lost);
    out(&g, "dup", (double)total.dup);
    out(&g, "ooo", (double)total.ooo);
    out(&g, "stranger", (double)total.stranger);
    out(&g, "stay_lost_conns", (double)total.stay_lost_conns);
    printf("traffic: %.1f MB in, %.1f MB out; %" PRIu64 " onAdd/onLeave pushes, %" PRIu64
           " kicks; the end drained in %" PRIu64 " ms\n",
           (double)total.bytes_in / 1e6, (double)total.bytes_out / 1e6, total.others, total.kicks,
           total.drain_ms);
    out(&g, "bytes_in", (double)total.bytes_in);
    out(&g, "bytes_out", (double)total.bytes_out);
    out(&g, "kicks", (double)total.kicks);
    print_hist(&g, "request", &total.req);
    print_hist(&g, "echo", &total.echo);
    write_hist_file(&g, &total.echo);
    if (g.churn) {
      printf("churn: %" PRIu64 " leaves, %" PRIu64 " joins, %" PRIu64 " retried logins\n",
             total.churn_leaves, total.churn_joins, total.login_retries);
      out(&g, "churn_leaves", (double)total.churn_leaves);
      out(&g, "churn_joins", (double)total.churn_joins);
    }
    if (g.slow) {
      printf("slow consumers: %" PRIu64 ", closed by the server %" PRIu64
             ", pushes they got %" PRIu64 ", pushes they missed %" PRIu64 "\n",
             total.slow_n, total.slow_closed, total.slow_pushes, total.slow_gaps);
      out(&g, "slow_n", (double)total.slow_n);
      out(&g, "slow_closed", (double)total.slow_closed);
      out(&g, "slow_missed", (double)total.slow_gaps);
    }
    if (g.flood) {
      printf("flooders: %" PRIu64 ", sent %" PRIu64 " (%.0f/s), answered %" PRIu64 " (%.1f/s), "
             "no answer %" PRIu64 ", their pushes %" PRIu64 "\n",
             total.flood_n, total.flood_sent, (double)total.flood_sent / g.seconds, total.flood_ok,
             (double)total.flood_ok / g.seconds, total.flood_errors, total.flood_pushes);
      out(&g, "flood_sent", (double)total.flood_sent);
      out(&g, "flood_ok", (double)total.flood_ok);
      out(&g, "flood_ok_per_s", (double)total.flood_ok / g.seconds);
    }
  }
  printf("generator: %.2f cores over the window (%u processes, busiest counted as the sum / P = "
         "%.2f)%s\n",
         total.cpu_window / win, g.procs, total.cpu_window / win / g.procs,
         total.cpu_window / win / g.procs > SATURATED ? "  SATURATED: figures are the generator's"
                                                      : "");
  out(&g, "gen_cores", total.cpu_window / win);
  out(&g, "gen_saturated", total.cpu_window / win / g.procs > SATURATED);
  if (have_server(&g)) {
    double cpu = (double)(sb.ticks - sa.ticks) / hz;
    char comm[64];
    procstat_comm(sb.max_pid, comm, sizeof comm);
    printf("server: %d processes, %.2f cores over the window (%.0f %% in the kernel; busiest: %s, "
           "pid %ld), RSS %.1f MiB before, %.1f MiB max, %.1f MiB at the end\n",
           sb.procs, cpu / win,
           sb.ticks > sa.ticks
               ? 100.0 * (double)(sb.sys_ticks - sa.sys_ticks) / (double)(sb.ticks - sa.ticks)
               : 0.0,
           comm, sb.max_pid, (double)s0.rss_kib / 1024, max_rss_kib / 1024,
           (double)sx.rss_kib / 1024);
    out(&g, "server_cores", cpu / win);
    out(&g, "server_sys_fraction",
        sb.ticks > sa.ticks ? (double)(sb.sys_ticks - sa.sys_ticks) / (double)(sb.ticks - sa.ticks)
                            : 0);
    out(&g, "server_rss_max_mib", max_rss_kib / 1024);
    out(&g, "server_rss_start_mib", (double)s0.rss_kib / 1024);
    if (!g.handshakes && total.pushes_window) {
      printf("server CPU per million pushes delivered: %.3f s\n",
             cpu / (double)total.pushes_window * 1e6);
      out(&g, "server_cpu_s_per_mpush", cpu / (double)total.pushes_window * 1e6);
    }
    if (g.handshakes && total.hs_done) {
      printf("server CPU per handshake: %.1f us\n", cpu / (double)total.hs_done * 1e6);
      out(&g, "server_cpu_us_per_hs", cpu / (double)total.hs_done * 1e6);
    }
    printf("machine: %.2f cores busy over the window\n", (busy1 - busy0) / hz / win);
    out(&g, "machine_cores", (busy1 - busy0) / hz / win);
    if (g.max_rss_mib > 0 && max_rss_kib / 1024 > g.max_rss_mib) {
      printf("FAIL: the server's RSS reached %.1f MiB (limit %.1f)\n", max_rss_kib / 1024,
             g.max_rss_mib);
      status = 1;
    }
  }
  if (!g.handshakes) {
    if (total.login_failed || total.logged_in != total.users || total.lost || total.dup ||
        total.ooo || total.stranger || total.stay_lost_conns) {
      printf("FAIL: a login failed or a push was lost, doubled, out of order or strange\n");
      status = 1;
    }
    if (g.flood && total.flood_pushes != total.flood_ok) {
      printf("FAIL: flooders got %" PRIu64 " pushes for %" PRIu64 " answered sends\n",
             total.flood_pushes, total.flood_ok);
      status = 1;
    }
  }
  printf("%s\n", status ? "result: FAILED" : "result: ok");
  fflush(stdout);
  for (p = 0; p < g.procs; p++) {
    close(ctl[p]);
    close(res[p]);
  }
  free(pids);
  free(ctl);
  free(res);
  free(g.pad);
  return status;
}
