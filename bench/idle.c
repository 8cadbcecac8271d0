/* bench-idle: what N idle, handshaken Pomelo clients cost a server (CPU and resident memory).
 *
 *   bench-idle --server-pid PID | --server-pgid PGID  [--host H] [--port P] [--ws] [-n N]
 *              [--seconds D] [--settle S] [--sources K] [--window W] [--ramp R]
 *              [--connect-timeout T]
 *
 * Opens N client connections to H:P (default 127.0.0.1:3010; raw TCP, or WebSocket with --ws),
 * non-blocking, on one epoll loop, each a libpomelo client-role pomelo_conn (public API only):
 * it sends the handshake and the ACK, then only its own heartbeats on the interval the server
 * announced, and closes when the server has been silent for twice that interval. The sockets
 * are bound before connect() to source addresses 127.0.0.1 .. 127.0.0.K in turn (when H is a
 * loopback address; default K: 4, or more if N does not fit half the ephemeral port range of
 * each), with IP_BIND_ADDRESS_NO_PORT so the port is picked per destination. At most W (default
 * 200) connections are in their TCP or Pomelo handshake at once (node's listen backlog is 511);
 * with a ramp, connection i starts no earlier than i x R / N seconds after the first, so that
 * with R = the heartbeat interval the heartbeats of the N clients are spread evenly over it, as
 * for clients that arrived over time (default R 0: as fast as the window allows, heartbeats
 * bunched).
 *
 * Measures from /proc (PID: that process; PGID: every process of the group, e.g. a pomelo
 * master and the connector it forks): the server's resident memory (VmRSS) before the first
 * connect and at the end, and its CPU time (utime + stime) over the idle period: once every
 * connection is ready, S seconds (default 1) to settle, then D seconds (default 20) in which
 * nothing but heartbeats flows. Also its own CPU over the same D seconds (flagged above 0.5
 * core, since generator and server share the machine), the CPU the rest of the machine used
 * meanwhile (from /proc/stat; flagged above 0.2 core: another program was running) and the
 * bytes that flowed.
 *
 * A connection lost after the handshake (closed by either side, a heartbeat timeout, ...) is
 * counted and makes the exit status 1. Exit status 1 as well when not every connection got
 * through its handshake within T seconds (default 120); 2 on a usage error. The last line,
 * starting with "@ idle", holds the figures for bench/idle.sh.
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE /* IP_BIND_ADDRESS_NO_PORT */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include <pomelo/pomelo.h>

#include "../examples/common/loop.h"
#include "procstat.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24 /* Linux >= 4.2 */
#endif

#define PROG "bench-idle"
#define READ_BUF (16 * 1024)
#define WRITE_IOV 16
#define MAX_EVENTS 512
#define FD_RESERVE 32       /* descriptors besides the sockets: stdio, epoll, /proc, ... */
#define SELF_CPU_WARN 0.5   /* cores */
#define OTHER_CPU_WARN 0.2  /* cores used by other processes during the measurement */
#define NO_KEY UINT64_MAX   /* not in the timer heap */
#define NO_POS ((size_t)-1) /* heap position of a connection not in it */

enum { PH_CONNECT = 0, PH_IDLE = 1, PH_SHUTDOWN = 2 };

typedef struct gconn {
  struct gen *g;
  pomelo_conn *pc;
  int fd;
  int connected; /* TCP connect completed */
  int ready;     /* on_ready seen */
  int done;      /* socket closed, conn deleted */
  size_t pos;    /* in the heap, or NO_POS */
  uint64_t key;  /* the deadline it is filed under */
} gconn;

typedef struct gen {
  /* options */
  const char *host, *port;
  int ws;
  size_t n;
  double seconds, settle, connect_timeout, ramp;
  long server_pid, server_pgid;
  unsigned sources;
  int sources_given;
  size_t window;
  /* state */
  struct sockaddr_in dst;
  char ws_host[300];
  pomelo_conn_settings set;
  pomelo_conn_callbacks cbs;
  int ep;
  gconn *conns;
  gconn **heap;
  size_t heap_len;
  uint8_t *buf;
  int phase;
  uint64_t t_start; /* ms: the connect phase began */
  uint64_t wake_at; /* ms: the next connection is due (ramp), or UINT64_MAX */
  size_t started, established, ready, failed_early, lost, closed;
  long lost_by_reason[16];
  long failed_by_reason[16];
  int first_errno; /* of a failed socket call, for the message */
  const char *first_errno_what;
  uint64_t bytes_in, bytes_out;
} gen;

/* Prints "bench-idle: WHAT[: DETAIL]" and exits with status 1. */
static void die(const char *what, const char *detail) {
  fprintf(stderr, PROG ": %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
  exit(1);
}

/* ---------------------------------------------------------------------------------------------
 * The server's processes, from /proc
 * ------------------------------------------------------------------------------------------- */

/* The server now: one process, or every process of a group (bench/procstat.h). Exits when none
 * is found. */
static void sample_server(const gen *g, proc_sample *out) {
  if (procstat_sample(g->server_pid, g->server_pgid, out) != 0) {
    char id[32];
    snprintf(id, sizeof id, "%ld", g->server_pid > 0 ? g->server_pid : g->server_pgid);
    die(g->server_pid > 0 ? "the server is gone: no process"
                          : "no process left in the server's process group",
        id);
  }
}

static unsigned long long machine_busy_ticks(void) {
  unsigned long long busy = procstat_machine_busy();
  if (!busy) {
    die("cannot read /proc/stat", NULL);
  }
  return busy;
}

/* ---------------------------------------------------------------------------------------------
 * Timers: one binary min-heap of connections by their pomelo_conn_expiry
 * ------------------------------------------------------------------------------------------- */

static void heap_set(gen *g, size_t i, gconn *c) {
  g->heap[i] = c;
  c->pos = i;
}

static void heap_up(gen *g, size_t i) {
  gconn *c = g->heap[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (g->heap[parent]->key <= c->key) {
      break;
    }
    heap_set(g, i, g->heap[parent]);
    i = parent;
  }
  heap_set(g, i, c);
}

static void heap_down(gen *g, size_t i) {
  gconn *c = g->heap[i];
  for (;;) {
    size_t l = 2 * i + 1, m = i;
    uint64_t best = c->key;
    if (l < g->heap_len && g->heap[l]->key < best) {
      m = l;
      best = g->heap[l]->key;
    }
    if (l + 1 < g->heap_len && g->heap[l + 1]->key < best) {
      m = l + 1;
    }
    if (m == i) {
      break;
    }
    heap_set(g, i, g->heap[m]);
    i = m;
  }
  heap_set(g, i, c);
}

static void heap_remove(gen *g, gconn *c) {
  size_t i = c->pos;
  gconn *last;
  if (i == NO_POS) {
    return;
  }
  c->pos = NO_POS;
  c->key = NO_KEY;
  last = g->heap[--g->heap_len];
  if (last != c) {
    heap_set(g, i, last);
    heap_up(g, i);
    heap_down(g, last->pos);
  }
}

/* Files the connection under `key` (NO_KEY: takes it out). */
static void heap_update(gen *g, gconn *c, uint64_t key) {
  if (key == NO_KEY) {
    heap_remove(g, c);
    return;
  }
  if (c->pos == NO_POS) {
    c->key = key;
    heap_set(g, g->heap_len++, c); /* the heap has room for every connection */
    heap_up(g, c->pos);
  } else if (key != c->key) {
    uint64_t old = c->key;
    c->key = key;
    if (key < old) {
      heap_up(g, c->pos);
    } else {
      heap_down(g, c->pos);
    }
  }
}

/* ---------------------------------------------------------------------------------------------
 * Connections
 * ------------------------------------------------------------------------------------------- */

static uint32_t on_random(pomelo_conn *pc, void *ud) {
  (void)pc;
  (void)ud;
  return loop_random32(NULL);
}

static void on_ready(pomelo_conn *pc, void *ud) {
  gconn *c = ud;
  (void)pc;
  c->ready = 1;
  c->g->ready++;
}

static void on_close(pomelo_conn *pc, int reason, void *ud) {
  gconn *c = ud;
  gen *g = c->g;
  unsigned r = reason >= 0 && reason < 16 ? (unsigned)reason : 15;
  (void)pc;
  if (g->phase == PH_SHUTDOWN) {
    return;
  }
  if (c->ready) {
    g->lost++;
    g->lost_by_reason[r]++;
  } else {
    g->failed_by_reason[r]++;
  }
}

static void note_errno(gen *g, const char *what, int err) {
  if (!g->first_errno) {
    g->first_errno = err;
    g->first_errno_what = what;
  }
}

/* Closes the socket and deletes the connection (never from inside one of its callbacks). */
static void finish(gen *g, gconn *c) {
  if (c->done) {
    return;
  }
  heap_remove(g, c);
  if (c->fd >= 0 && close(c->fd) != 0 && g->phase != PH_SHUTDOWN) {
    note_errno(g, "close", errno);
  }
  c->fd = -1;
  if (!c->ready && g->phase != PH_SHUTDOWN) {
    g->failed_early++;
  }
  pomelo_conn_del(c->pc);
  c->pc = NULL;
  c->done = 1;
  g->closed++;
}

/* Writes what is queued until it is all out or the socket would block (then EPOLLOUT,
 * edge-triggered, says when to go on). */
static void flush(gen *g, gconn *c) {
  while (c->connected && pomelo_conn_out_len(c->pc) > 0) {
    struct iovec iov[WRITE_IOV];
    struct msghdr mh;
    ssize_t n;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = iov;
    mh.msg_iovlen = (size_t)pomelo_conn_out_iov(c->pc, iov, WRITE_IOV);
    n = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
    if (n > 0) {
      g->bytes_out += (uint64_t)n;
      pomelo_conn_out_consume(c->pc, (size_t)n, loop_now_ms());
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return;
    } else {
      if (n < 0) {
        note_errno(g, "sendmsg", errno);
      }
      pomelo_conn_peer_closed(c->pc);
      return;
    }
  }
}

/* After every call on a connection: write, close, or file its next deadline. */
static void after(gen *g, gconn *c) {
  uint64_t e;
  flush(g, c);
  if (pomelo_conn_wants_close(c->pc)) {
    finish(g, c);
    return;
  }
  e = pomelo_conn_expiry(c->pc);
  heap_update(g, c, e == UINT64_MAX ? NO_KEY : e);
}

static void do_read(gen *g, gconn *c) {
  while (pomelo_conn_get_state(c->pc) < POMELO_CONN_CLOSING) {
    ssize_t n = read(c->fd, g->buf, READ_BUF);
    if (n > 0) {
      g->bytes_in += (uint64_t)n;
      /* An error closes the connection (counted by on_close). */
      (void)pomelo_conn_feed(c->pc, g->buf, (size_t)n, loop_now_ms());
      continue;
    }
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return;
    }
    if (n < 0) {
      note_errno(g, "read", errno);
    }
    pomelo_conn_peer_closed(c->pc); /* end of file or a dead socket */
    return;
  }
}

/* Fails a connection whose socket could not be set up (counted as failed, not lost). */
static void fail_setup(gen *g, gconn *c, const char *what, int err) {
  note_errno(g, what, err);
  if (c->pc) {
    pomelo_conn_peer_closed(c->pc);
  }
  finish(g, c);
}

static void start_one(gen *g, size_t i) {
  gconn *c = &g->conns[i];
  struct epoll_event ev;
  int one = 1, rc;
  c->g = g;
  c->fd = -1;
  c->pos = NO_POS;
  c->key = NO_KEY;
  g->started++;
  rc = pomelo_conn_new(&c->pc, &g->set, &g->cbs, NULL, loop_now_ms(), c);
  if (rc) {
    fprintf(stderr, PROG ": pomelo_conn_new: %s\n", pomelo_strerror(rc));
    exit(1);
  }
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0) {
    fail_setup(g, c, "socket", errno);
    return;
  }
  if (setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) {
    fail_setup(g, c, "setsockopt TCP_NODELAY", errno);
    return;
  }
  if (g->sources > 0) {
    struct sockaddr_in src;
    memset(&src, 0, sizeof src);
    src.sin_family = AF_INET;
    src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)(i % g->sources));
    /* The port is then picked by connect(), per destination (no port held for the bind). */
    if (setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) != 0 &&
        errno != ENOPROTOOPT) {
      fail_setup(g, c, "setsockopt IP_BIND_ADDRESS_NO_PORT", errno);
      return;
    }
    if (bind(c->fd, (const struct sockaddr *)&src, sizeof src) != 0) {
      fail_setup(g, c, "bind", errno);
      return;
    }
  }
  if (connect(c->fd, (const struct sockaddr *)&g->dst, sizeof g->dst) != 0 &&
      errno != EINPROGRESS) {
    fail_setup(g, c, "connect", errno);
    return;
  }
  memset(&ev, 0, sizeof ev);
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET; /* once, for the socket's life */
  ev.data.ptr = c;
  if (epoll_ctl(g->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
    fail_setup(g, c, "epoll_ctl", errno);
    return;
  }
  after(g, c); /* files the handshake deadline; writes nothing before the connect is done */
}

static void on_event(gen *g, gconn *c, uint32_t events) {
  if (c->done) {
    return;
  }
  if (!c->connected && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
      err = errno;
    }
    if (err) {
      fail_setup(g, c, "connect", err);
      return;
    }
    c->connected = 1;
    g->established++;
  }
  if (c->connected && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
    do_read(g, c);
  }
  after(g, c); /* EPOLLOUT or not: whatever is queued goes out */
}

static void run_timers(gen *g, uint64_t now) {
  while (g->heap_len > 0 && g->heap[0]->key <= now) {
    gconn *c = g->heap[0];
    int rc = pomelo_conn_handle_expiry(c->pc, now);
    if (rc && rc != POMELO_ERR_NOMEM) {
      fprintf(stderr, PROG ": pomelo_conn_handle_expiry: %s\n", pomelo_strerror(rc));
    }
    after(g, c);
    if (!c->done && c->pos != NO_POS && c->key <= now) {
      heap_update(g, c, now + 1); /* never spin on a deadline that did not move */
    }
  }
}

/* Runs the loop until `until` (ms) or, when `stop` is given, until it returns non-zero. */
static void run_until(gen *g, uint64_t until, int (*stop)(gen *)) {
  struct epoll_event evs[MAX_EVENTS];
  for (;;) {
    uint64_t now = loop_now_ms(), next = until;
    int n, i, wait;
    run_timers(g, now);
    if (stop && stop(g)) {
      return;
    }
    now = loop_now_ms();
    if (now >= until) {
      return;
    }
    if (g->heap_len > 0 && g->heap[0]->key < next) {
      next = g->heap[0]->key;
    }
    if (stop && g->wake_at < next) {
      next = g->wake_at;
    }
    wait = next <= now ? 0 : next - now > INT_MAX ? INT_MAX : (int)(next - now);
    n = epoll_wait(g->ep, evs, MAX_EVENTS, wait);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      die("epoll_wait", strerror(errno));
    }
    for (i = 0; i < n; i++) {
      on_event(g, evs[i].data.ptr, evs[i].events);
    }
  }
}

/* The connect phase: starts connections while fewer than `window` are in a handshake and, with
 * a ramp, no earlier than their share of it (connection i at t_start + i x ramp / N). */
static int connect_phase_done(gen *g) {
  uint64_t now = loop_now_ms();
  g->wake_at = UINT64_MAX;
  while (g->started < g->n && g->started - g->ready - g->failed_early < g->window) {
    uint64_t due = g->t_start + (uint64_t)((double)g->started * g->ramp * 1000 / (double)g->n);
    if (due > now) {
      g->wake_at = due;
      break;
    }
    start_one(g, g->started);
  }
  return g->ready + g->failed_early >= g->n;
}

/* ---------------------------------------------------------------------------------------------
 * Options and set-up
 * ------------------------------------------------------------------------------------------- */

static void usage(void) {
  fprintf(stderr,
          "usage: " PROG " (--server-pid PID | --server-pgid PGID) [--host H] [--port P] [--ws]\n"
          "       [-n N] [--seconds D] [--settle S] [--sources K] [--window W] [--ramp R]\n"
          "       [--connect-timeout T]\n"
          "  defaults: 127.0.0.1:3010, raw TCP, N 5000, D 20 s, S 1 s, K 4 (more if N needs),\n"
          "  W 200 handshakes at once, R 0 s, T 120 s (after the ramp)\n");
  exit(2);
}

static double parse_num(const char *opt, const char *s, double lo, double hi) {
  char *end;
  double v;
  errno = 0;
  v = strtod(s, &end);
  if (errno || end == s || *end || !(v >= lo && v <= hi)) {
    fprintf(stderr, PROG ": bad value for %s: %s\n", opt, s);
    exit(2);
  }
  return v;
}

static void parse_args(gen *g, int argc, char **argv) {
  int a;
  long sources = -1;
  g->host = "127.0.0.1";
  g->port = "3010";
  g->n = 5000;
  g->seconds = 20;
  g->settle = 1;
  g->connect_timeout = 120;
  g->window = 200;
  for (a = 1; a < argc; a++) {
    const char *o = argv[a];
    const char *v = a + 1 < argc ? argv[a + 1] : NULL;
    if (strcmp(o, "--ws") == 0) {
      g->ws = 1;
      continue;
    }
    if (strcmp(o, "--tcp") == 0) {
      g->ws = 0;
      continue;
    }
    if (strcmp(o, "-h") == 0 || strcmp(o, "--help") == 0 || !v) {
      usage();
    }
    a++;
    if (strcmp(o, "--host") == 0) {
      g->host = v;
    } else if (strcmp(o, "--port") == 0) {
      g->port = v;
    } else if (strcmp(o, "-n") == 0) {
      g->n = (size_t)parse_num(o, v, 1, 1e9);
    } else if (strcmp(o, "--seconds") == 0) {
      g->seconds = parse_num(o, v, 0.1, 86400);
    } else if (strcmp(o, "--settle") == 0) {
      g->settle = parse_num(o, v, 0, 3600);
    } else if (strcmp(o, "--connect-timeout") == 0) {
      g->connect_timeout = parse_num(o, v, 1, 86400);
    } else if (strcmp(o, "--ramp") == 0) {
      g->ramp = parse_num(o, v, 0, 3600);
    } else if (strcmp(o, "--window") == 0) {
      g->window = (size_t)parse_num(o, v, 1, 1e9);
    } else if (strcmp(o, "--sources") == 0) {
      sources = (long)parse_num(o, v, 0, 254);
    } else if (strcmp(o, "--server-pid") == 0) {
      g->server_pid = (long)parse_num(o, v, 1, 4194304);
    } else if (strcmp(o, "--server-pgid") == 0) {
      g->server_pgid = (long)parse_num(o, v, 1, 4194304);
    } else {
      usage();
    }
  }
  if ((g->server_pid > 0) == (g->server_pgid > 0)) {
    fprintf(stderr, PROG ": give one of --server-pid and --server-pgid\n");
    usage();
  }
  g->sources_given = sources >= 0;
  g->sources = sources < 0 ? 0 : (unsigned)sources; /* not given: see plan_sources */
}

/* The destination, IPv4 (a name is resolved). */
static void resolve(gen *g) {
  struct addrinfo hints, *ai = NULL;
  int rc;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  rc = getaddrinfo(g->host, g->port, &hints, &ai);
  if (rc != 0 || !ai) {
    fprintf(stderr, PROG ": cannot resolve %s:%s: %s\n", g->host, g->port, gai_strerror(rc));
    exit(1);
  }
  memcpy(&g->dst, ai->ai_addr, sizeof g->dst);
  freeaddrinfo(ai);
}

/* Source addresses: 4, or as many as N needs to fit in half of each address's ephemeral range
 * (connect() searches ports of one parity first). Only for a loopback destination. */
static void plan_sources(gen *g) {
  unsigned lo = 32768, hi = 60999;
  size_t per, need;
  int loopback = (ntohl(g->dst.sin_addr.s_addr) >> 24) == 127;
  FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
  if (f) {
    if (fscanf(f, "%u %u", &lo, &hi) != 2 || hi < lo) {
      lo = 32768;
      hi = 60999;
    }
    fclose(f);
  }
  per = (size_t)(hi - lo + 1);
  need = (g->n + per / 2 - 1) / (per / 2);
  if (!g->sources_given) {
    need = need < 4 ? 4 : need;
    g->sources = loopback ? (unsigned)(need < 254 ? need : 254) : 0;
  }
  if (g->sources > 0 && !loopback) {
    fprintf(stderr, PROG ": --sources needs a loopback destination (127.x.x.x), not %s\n", g->host);
    exit(2);
  }
  if ((g->sources > 0 && g->n > (size_t)g->sources * per) || (g->sources == 0 && g->n > per)) {
    fprintf(stderr,
            PROG ": %zu connections do not fit %u source address(es) x %zu ephemeral ports "
                 "(%u-%u): raise --sources\n",
            g->n, g->sources ? g->sources : 1, per, lo, hi);
    exit(2);
  }
}

/* Raises the soft descriptor limit to the hard one; N sockets must fit. */
static void raise_nofile(const gen *g) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
    die("getrlimit", strerror(errno));
  }
  if (rl.rlim_cur != rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
      die("setrlimit RLIMIT_NOFILE", strerror(errno));
    }
  }
  if (rl.rlim_cur != RLIM_INFINITY && g->n + FD_RESERVE > (size_t)rl.rlim_cur) {
    fprintf(stderr,
            PROG ": %zu connections need %zu file descriptors, the hard limit is %llu "
                 "(ulimit -Hn): use a smaller -n\n",
            g->n, g->n + FD_RESERVE, (unsigned long long)rl.rlim_cur);
    exit(2);
  }
}

static void print_reasons(const char *what, const long *by) {
  int r;
  for (r = 0; r < 16; r++) {
    if (by[r]) {
      printf("  %s: %ld x %s\n", what, by[r], pomelo_close_reason_name(r));
    }
  }
}

int main(int argc, char **argv) {
  gen g;
  proc_sample base, s0, s1;
  double self0, self1, cores, sys_cores, other_cores, self_cores, rss_per, idle_s;
  unsigned long long busy0, busy1;
  uint64_t t_start, t_idle0, t_idle1, t_ready, bin0, bout0;
  size_t i, lost_idle, lost_before;
  long hz = sysconf(_SC_CLK_TCK);
  int status = 0;

  memset(&g, 0, sizeof g);
  parse_args(&g, argc, argv);
  if (hz <= 0) {
    die("sysconf(_SC_CLK_TCK) failed", NULL);
  }
  if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
    die("signal", strerror(errno));
  }
  raise_nofile(&g);
  resolve(&g);
  plan_sources(&g);

  pomelo_conn_settings_default(&g.set);
  g.set.role = POMELO_ROLE_CLIENT;
  g.set.transport = g.ws ? POMELO_TRANSPORT_WS : POMELO_TRANSPORT_TCP;
  g.set.client_type = "bench-idle";
  snprintf(g.ws_host, sizeof g.ws_host, "%s:%s", g.host, g.port);
  g.set.ws_host = g.ws_host;
  g.set.ws_path = "/";
  g.cbs.on_ready = on_ready;
  g.cbs.on_close = on_close;
  g.cbs.random = on_random;

  g.conns = calloc(g.n, sizeof *g.conns);
  g.heap = calloc(g.n, sizeof *g.heap);
  g.buf = malloc(READ_BUF);
  if (!g.conns || !g.heap || !g.buf) {
    die("out of memory", NULL);
  }
  g.ep = epoll_create1(EPOLL_CLOEXEC);
  if (g.ep < 0) {
    die("epoll_create1", strerror(errno));
  }

  sample_server(&g, &base);
  printf("libpomelo %s idle benchmark: %zu %s connections to %s:%s from %u source "
         "address(es), server %s %ld (%d process%s), baseline RSS %llu KiB\n",
         pomelo_version(), g.n, g.ws ? "WebSocket" : "raw TCP", g.host, g.port,
         g.sources ? g.sources : 1, g.server_pid > 0 ? "pid" : "pgid",
         g.server_pid > 0 ? g.server_pid : g.server_pgid, base.procs, base.procs == 1 ? "" : "es",
         base.rss_kib);
  fflush(stdout);

  /* Connect and handshake, at most `window` at a time. */
  g.phase = PH_CONNECT;
  t_start = g.t_start = loop_now_ms();
  run_until(&g, t_start + (uint64_t)((g.ramp + g.connect_timeout) * 1000), connect_phase_done);
  t_ready = loop_now_ms();
  printf("connect phase: %.1f s: %zu started, %zu established, %zu handshakes, %zu failed\n",
         (double)(t_ready - t_start) / 1e3, g.started, g.established, g.ready, g.failed_early);
  print_reasons("failed before ready", g.failed_by_reason);
  if (g.first_errno) {
    printf("  first socket error: %s: %s\n", g.first_errno_what, strerror(g.first_errno));
  }
  if (g.ready < g.n) {
    printf("not every connection got through its handshake%s: no idle measurement\n",
           g.ready + g.failed_early < g.n ? " in time (--connect-timeout)" : "");
    status = 1;
  } else {
    /* Idle: nothing but heartbeats both ways. */
    g.phase = PH_IDLE;
    lost_before = g.lost; /* ready, then lost while others were still connecting */
    run_until(&g, loop_now_ms() + (uint64_t)(g.settle * 1000), NULL);
    sample_server(&g, &s0);
    busy0 = machine_busy_ticks();
    self0 = procstat_self_cpu();
    bin0 = g.bytes_in;
    bout0 = g.bytes_out;
    t_idle0 = loop_now_ms();
    run_until(&g, t_idle0 + (uint64_t)(g.seconds * 1000), NULL);
    t_idle1 = loop_now_ms();
    self1 = procstat_self_cpu();
    busy1 = machine_busy_ticks();
    sample_server(&g, &s1);
    lost_idle = g.lost - lost_before;
    idle_s = (double)(t_idle1 - t_idle0) / 1e3;
    if (s1.procs != s0.procs || s1.ticks < s0.ticks || s1.sys_ticks < s0.sys_ticks) {
      die("a server process came or went during the idle period: no CPU figure", NULL);
    }
    cores = (double)(s1.ticks - s0.ticks) / (double)hz / idle_s;
    sys_cores = (double)(s1.sys_ticks - s0.sys_ticks) / (double)hz / idle_s;
    self_cores = (self1 - self0) / idle_s;
    other_cores = (double)(busy1 - busy0) / (double)hz / idle_s - cores - self_cores;
    other_cores = other_cores < 0 ? 0 : other_cores;
    rss_per = ((double)s1.rss_kib - (double)base.rss_kib) / (double)g.n;
    printf("idle %.1f s (after %.1f s to settle): %zu lost during it, %zu before it%s\n", idle_s,
           g.settle, lost_idle, lost_before, g.lost ? " (heartbeats failed?)" : "");
    print_reasons("lost", g.lost_by_reason);
    printf("  bytes per connection per second: %.2f in, %.2f out\n",
           (double)(g.bytes_in - bin0) / (double)g.n / idle_s,
           (double)(g.bytes_out - bout0) / (double)g.n / idle_s);
    printf("  server CPU: %.4f cores (%.2f s in %.1f s, %d process%s; user %.4f, system %.4f)\n",
           cores, (double)(s1.ticks - s0.ticks) / (double)hz, idle_s, s1.procs,
           s1.procs == 1 ? "" : "es", cores - sys_cores, sys_cores);
    printf("  server RSS: %llu KiB -> %llu KiB: %.2f KiB per connection\n", base.rss_kib,
           s1.rss_kib, rss_per);
    printf("  generator CPU: %.4f cores%s\n", self_cores,
           self_cores > SELF_CPU_WARN ? " (WARNING: the generator is busy; figures distorted)"
                                      : "");
    printf("  rest of the machine: %.4f cores%s\n", other_cores,
           other_cores > OTHER_CPU_WARN ? " (WARNING: something else is running; figures distorted)"
                                        : "");
    printf("@ idle n=%zu established=%zu handshakes=%zu lost=%zu lost_before=%zu server_cores=%.4f "
           "rss_kib_per_conn=%.3f self_cores=%.4f rss_base_kib=%llu rss_end_kib=%llu "
           "server_sys_cores=%.4f other_cores=%.4f\n",
           g.n, g.established, g.ready, lost_idle, lost_before, cores, rss_per, self_cores,
           base.rss_kib, s1.rss_kib, sys_cores, other_cores);
    if (g.lost) {
      status = 1;
    }
  }
  fflush(stdout);

  /* Shut down: every socket closed, every connection deleted. */
  g.phase = PH_SHUTDOWN;
  for (i = 0; i < g.started; i++) {
    finish(&g, &g.conns[i]);
  }
  close(g.ep);
  free(g.conns);
  free(g.heap);
  free(g.buf);
  return status;
}
