/* An epoll loop for pomelo_server objects (server_loop.h, docs/loop-epoll.md).
 * SPDX-License-Identifier: MIT
 */
#define _GNU_SOURCE /* accept4 */
#include "server_loop.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define READ_BUF (64 * 1024) /* one read: the library copies partial packages itself */
#define WRITE_IOV 64         /* iovecs per sendmsg */
#define MAX_EVENTS 256       /* epoll events per wake-up (more simply wait for the next one) */

/* What an epoll event points at: every such struct starts with its kind. */
enum { KIND_LISTENER = 1, KIND_CLIENT = 2, KIND_SIGNAL = 3, KIND_WATCH = 4 };

typedef struct watch { /* a descriptor watched for the caller (server_loop_watch) */
  int kind;            /* KIND_WATCH */
  int fd;
  void (*fn)(void *arg, uint64_t now);
  void *arg;
  struct watch *next;
} watch;

typedef struct entry { /* one server of the loop, and its listening socket */
  int kind;            /* KIND_LISTENER */
  int lfd;             /* -1 when it does not listen (or no longer) */
  pomelo_server *srv;
  server_loop_stream stream; /* how its sockets carry bytes */
  struct entry *next;
} entry;

typedef struct client { /* one accepted socket and its session */
  int kind;             /* KIND_CLIENT */
  int fd;
  entry *owner;
  pomelo_session *s;
  void *st; /* the stream's state */
} client;

/* Plain TCP: the socket as it is. */
static int plain_state; /* its "state": any non-NULL pointer */

static void *plain_open(void *stream_data, int fd) {
  (void)fd;
  return stream_data;
}

static ssize_t plain_read(void *st, int fd, uint8_t *buf, size_t cap) {
  (void)st;
  return read(fd, buf, cap);
}

static ssize_t plain_writev(void *st, int fd, const struct iovec *iov, int n) {
  struct msghdr mh;
  (void)st;
  if (n == 0) {
    return 0;
  }
  memset(&mh, 0, sizeof mh);
  mh.msg_iov = (struct iovec *)(uintptr_t)iov;
  mh.msg_iovlen = (size_t)n;
  return sendmsg(fd, &mh, MSG_NOSIGNAL); /* EPIPE rather than SIGPIPE */
}

static void plain_close(void *st, int fd) {
  (void)st;
  (void)fd;
}

static const server_loop_stream plain = {plain_open, plain_read, plain_writev, plain_close,
                                         &plain_state};

struct server_loop {
  int ep;
  int sig_kind; /* KIND_SIGNAL: what the signalfd's event points at */
  int sigfd;
  int spare_fd; /* held open so an accept can still be refused politely at the fd limit */
  sigset_t old_mask;
  entry *servers;
  watch *watches;
  server_loop_callbacks cb;
  uint64_t tick_at; /* the next on_tick (0: not started) */
  void *user_data;
  uint8_t *buf;
};

uint64_t server_loop_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void *server_loop_user_data(const server_loop *l) {
  return l->user_data;
}

int server_loop_new(server_loop **out, const server_loop_callbacks *cb, void *user_data) {
  server_loop *l = calloc(1, sizeof *l);
  sigset_t mask;
  int err;
  struct epoll_event ev;
  if (!l) {
    return ENOMEM;
  }
  l->ep = l->sigfd = l->spare_fd = -1;
  l->sig_kind = KIND_SIGNAL;
  l->user_data = user_data;
  if (cb) {
    l->cb = *cb;
  }
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  /* A write to a socket the peer closed is an EPIPE error (sendmsg has MSG_NOSIGNAL), but other
   * code of the program may write to pipes: ignore SIGPIPE as every server does. */
  if (signal(SIGPIPE, SIG_IGN) == SIG_ERR || sigprocmask(SIG_BLOCK, &mask, &l->old_mask) != 0) {
    free(l);
    return errno;
  }
  {
    /* One descriptor per client: take all the process may have (the soft limit is often 1024). */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
      rl.rlim_cur = rl.rlim_max;
      (void)setrlimit(RLIMIT_NOFILE, &rl); /* best effort: the old limit still works */
    }
  }
  l->buf = malloc(READ_BUF);
  l->ep = epoll_create1(EPOLL_CLOEXEC);
  l->sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  memset(&ev, 0, sizeof ev);
  ev.events = EPOLLIN;
  ev.data.ptr = &l->sig_kind;
  if (!l->buf || l->ep < 0 || l->sigfd < 0 || l->spare_fd < 0 ||
      epoll_ctl(l->ep, EPOLL_CTL_ADD, l->sigfd, &ev) != 0) {
    err = l->buf ? errno : ENOMEM;
    server_loop_del(l);
    return err;
  }
  *out = l;
  return 0;
}

/* Frees a client whose session is finished: the application's last look, then the socket and
 * the session go. */
static void finish(server_loop *l, client *c) {
  if (l->cb.on_session_done) {
    l->cb.on_session_done(l, c->owner->srv, c->s, l->user_data);
  }
  c->owner->stream.close(c->st, c->fd);
  close(c->fd); /* also removes it from the epoll set */
  pomelo_server_release(c->owner->srv, c->s);
  free(c);
}

/* Releases every session of every server (the end of a shutdown, or the loop's deletion). */
static int mark_closed(pomelo_session *s, void *arg) {
  (void)arg;
  pomelo_session_peer_closed(s); /* puts it on the ready list, to close */
  return 0;
}

static void drain(server_loop *l);

static void finish_all(server_loop *l) {
  entry *e;
  for (e = l->servers; e; e = e->next) {
    pomelo_server_foreach(e->srv, mark_closed, NULL);
  }
  drain(l);
}

void server_loop_del(server_loop *l) {
  entry *e;
  if (!l) {
    return;
  }
  finish_all(l);
  while (l->watches) {
    watch *w = l->watches;
    l->watches = w->next;
    free(w);
  }
  while ((e = l->servers) != NULL) {
    l->servers = e->next;
    if (e->lfd >= 0) {
      close(e->lfd);
    }
    free(e);
  }
  if (l->ep >= 0) {
    close(l->ep);
  }
  if (l->sigfd >= 0) {
    close(l->sigfd);
  }
  if (l->spare_fd >= 0) {
    close(l->spare_fd);
  }
  sigprocmask(SIG_SETMASK, &l->old_mask, NULL);
  free(l->buf);
  free(l);
}

/* A listening socket on host:port, non-blocking; the port bound goes to `bound`. */
static int listen_on(const char *host, const char *port, char *bound, size_t bound_len, int *out) {
  struct addrinfo hints, *ai = NULL;
  struct sockaddr_storage sa;
  socklen_t salen = sizeof sa;
  int fd, one = 1, err;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  if (getaddrinfo(host, port, &hints, &ai) != 0) {
    return EADDRNOTAVAIL;
  }
  fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &salen) != 0) {
    err = errno;
    if (fd >= 0) {
      close(fd);
    }
    freeaddrinfo(ai);
    return err;
  }
  freeaddrinfo(ai);
  if (bound && bound_len &&
      getnameinfo((struct sockaddr *)&sa, salen, NULL, 0, bound, (socklen_t)bound_len,
                  NI_NUMERICSERV) != 0) {
    bound[0] = '\0';
  }
  *out = fd;
  return 0;
}

int server_loop_add(server_loop *l, pomelo_server *srv, const char *host, const char *port,
                    const server_loop_stream *stream, char *bound, size_t bound_len) {
  entry *e = calloc(1, sizeof *e);
  int err;
  if (!e) {
    return ENOMEM;
  }
  e->kind = KIND_LISTENER;
  e->lfd = -1;
  e->srv = srv;
  e->stream = stream ? *stream : plain;
  if (port) {
    struct epoll_event ev;
    err = listen_on(host, port, bound, bound_len, &e->lfd);
    if (err) {
      free(e);
      return err;
    }
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN; /* level-triggered: accept() until EAGAIN anyway */
    ev.data.ptr = e;
    if (epoll_ctl(l->ep, EPOLL_CTL_ADD, e->lfd, &ev) != 0) {
      err = errno;
      close(e->lfd);
      free(e);
      return err;
    }
  }
  e->next = l->servers;
  l->servers = e;
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Sockets
 * ------------------------------------------------------------------------------------------- */

/* Writes what the session has queued until it is all out or the socket would block (then
 * EPOLLOUT, edge-triggered, says when to go on); first whatever the stream still holds. */
static void do_write(client *c) {
  const server_loop_stream *io = &c->owner->stream;
  ssize_t n = io->writev(c->st, c->fd, NULL, 0);
  while (n >= 0 && pomelo_session_out_len(c->s) > 0) {
    struct iovec iov[WRITE_IOV];
    n = io->writev(c->st, c->fd, iov, pomelo_session_out_iov(c->s, iov, WRITE_IOV));
    if (n > 0) {
      pomelo_session_out_consume(c->s, (size_t)n, server_loop_now());
    }
  }
  if (n < 0 && errno == EINTR) {
    do_write(c);
  } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
    pomelo_session_peer_closed(c->s); /* ECONNRESET, EPIPE: the peer is gone */
  }
}

/* Reads until the socket would block (edge-triggered: all of it, now), feeding each chunk. */
static void do_read(server_loop *l, client *c, int hup) {
  while (pomelo_session_state(c->s) < POMELO_CONN_CLOSING) {
    ssize_t n = c->owner->stream.read(c->st, c->fd, l->buf, READ_BUF);
    if (n > 0) {
      /* Handlers run inside. An error closed the session (the library sends what the peer
       * should see first); it comes back on the ready list. */
      (void)pomelo_session_feed(c->s, l->buf, (size_t)n, server_loop_now());
      if ((size_t)n < READ_BUF && !hup) {
        return; /* a short read emptied the socket: no read just to hear EAGAIN */
      }
      continue;
    }
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return;
    }
    pomelo_session_peer_closed(c->s); /* end of file, or a dead socket */
    return;
  }
}

/* Accepts every pending connection of a listener. */
static void do_accept(server_loop *l, entry *e) {
  for (;;) {
    struct epoll_event ev;
    client *c;
    int one = 1, rc;
    int fd = accept4(e->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) {
        continue;
      }
      if ((errno == EMFILE || errno == ENFILE) && l->spare_fd >= 0) {
        /* Out of file descriptors: take the connection with the spare one and close it at
         * once, rather than leave it in the backlog, where it would wake us up forever. */
        close(l->spare_fd);
        fd = accept(e->lfd, NULL, NULL);
        if (fd >= 0) {
          close(fd);
        }
        l->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        fprintf(stderr, "server_loop: out of file descriptors: a connection was refused\n");
        continue;
      }
      return; /* EAGAIN: all taken; anything else: try again on the next event */
    }
    /* Small writes (a response, a push) leave at once: without this a push waits for the
     * previous one's ACK (Nagle), which made the chat's echo p99 44 ms instead of 7.4 ms. */
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 ||
        (l->cb.sndbuf > 0 &&
         setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &l->cb.sndbuf, sizeof l->cb.sndbuf) != 0) ||
        (c = calloc(1, sizeof *c)) == NULL) {
      close(fd);
      continue;
    }
    c->kind = KIND_CLIENT;
    c->fd = fd;
    c->owner = e;
    c->st = e->stream.open(e->stream.stream_data, fd);
    rc = c->st ? pomelo_server_accept(e->srv, server_loop_now(), c, &c->s) : POMELO_ERR_NOMEM;
    if (rc != 0) { /* POMELO_ERR_LIMIT (full), _STATE (shutting down), _NOMEM */
      if (c->st) {
        e->stream.close(c->st, fd);
      }
      close(fd);
      free(c);
      continue;
    }
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET; /* once, for the socket's life */
    ev.data.ptr = c;
    if (epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
      e->stream.close(c->st, fd);
      close(fd);
      pomelo_server_release(e->srv, c->s);
      free(c);
    }
  }
}

/* ---------------------------------------------------------------------------------------------
 * The loop
 * ------------------------------------------------------------------------------------------- */

/* Takes every server's ready list until all are empty (a session's last words may push to
 * sessions of another server): writes what has output, finishes what wants its socket closed.
 * Only these sessions are touched. */
static void drain(server_loop *l) {
  int again = 1;
  while (again) {
    entry *e;
    again = 0;
    for (e = l->servers; e; e = e->next) {
      pomelo_session *s;
      unsigned what;
      while ((s = pomelo_server_next_ready(e->srv, &what)) != NULL) {
        client *c = pomelo_session_user_data(s);
        again = 1;
        if (what & POMELO_READY_WRITE) {
          do_write(c); /* may finish a closing session: it comes back to close */
        } else {
          finish(l, c);
        }
      }
    }
  }
}

/* Runs the timers that are due; returns the ms to the next deadline (-1: none). */
static int run_timers(server_loop *l, uint64_t until) {
  uint64_t now = server_loop_now(), next = until;
  entry *e;
  if (l->cb.on_tick && l->cb.tick_ms) {
    if (l->tick_at == 0) {
      l->tick_at = now + l->cb.tick_ms;
    } else if (now >= l->tick_at) {
      l->tick_at = now + l->cb.tick_ms;
      l->cb.on_tick(l, now, l->user_data);
    }
    next = l->tick_at < next ? l->tick_at : next;
  }
  for (e = l->servers; e; e = e->next) {
    if (pomelo_server_expiry(e->srv) <= now) {
      pomelo_server_handle_expiry(e->srv, now);
    }
    if (pomelo_server_expiry(e->srv) < next) {
      next = pomelo_server_expiry(e->srv);
    }
  }
  if (next == UINT64_MAX) {
    return -1;
  }
  return next <= now ? 0 : next - now > INT_MAX ? INT_MAX : (int)(next - now);
}

static size_t sessions_left(const server_loop *l) {
  size_t n = 0;
  const entry *e;
  for (e = l->servers; e; e = e->next) {
    n += pomelo_server_session_count(e->srv);
  }
  return n;
}

/* SIGINT or SIGTERM: no new clients, every one kicked with the reason. */
static void start_shutdown(server_loop *l, const char *reason) {
  entry *e;
  for (e = l->servers; e; e = e->next) {
    if (e->lfd >= 0) {
      close(e->lfd);
      e->lfd = -1;
    }
    pomelo_server_shutdown(e->srv, reason);
  }
}

int server_loop_watch(server_loop *l, int fd, void (*fn)(void *arg, uint64_t now), void *arg) {
  struct epoll_event ev;
  watch *w = calloc(1, sizeof *w);
  if (!w) {
    return ENOMEM;
  }
  w->kind = KIND_WATCH;
  w->fd = fd;
  w->fn = fn;
  w->arg = arg;
  memset(&ev, 0, sizeof ev);
  ev.events = EPOLLIN; /* level-triggered: fn runs again while there is work */
  ev.data.ptr = w;
  if (epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
    int err = errno;
    free(w);
    return err;
  }
  w->next = l->watches;
  l->watches = w;
  return 0;
}

void server_loop_unwatch(server_loop *l, int fd) {
  watch **p = &l->watches;
  while (*p) {
    if ((*p)->fd == fd) {
      watch *w = *p;
      *p = w->next;
      (void)epoll_ctl(l->ep, EPOLL_CTL_DEL, fd, NULL);
      free(w);
      return;
    }
    p = &(*p)->next;
  }
}

/* The caller's per-pass hook. */
static void pass(server_loop *l) {
  if (l->cb.on_pass) {
    l->cb.on_pass(l, server_loop_now(), l->user_data);
  }
}

int server_loop_run(server_loop *l, const char *shutdown_reason, uint32_t grace_ms) {
  struct epoll_event evs[MAX_EVENTS];
  uint64_t stop_at = UINT64_MAX;
  int sig = 0;
  for (;;) {
    int i, n, wait;
    pass(l);
    drain(l);
    if (sig && sessions_left(l) == 0) {
      break;
    }
    if (sig && server_loop_now() >= stop_at) {
      finish_all(l); /* peers that did not read their KICK in time */
      break;
    }
    wait = run_timers(l, stop_at);
    pass(l);
    drain(l); /* what the timers closed or flushed */
    if (wait == 0) {
      continue;
    }
    n = epoll_wait(l->ep, evs, MAX_EVENTS, wait);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return -1;
    }
    for (i = 0; i < n; i++) {
      int kind = *(int *)evs[i].data.ptr;
      if (kind == KIND_CLIENT) {
        client *c = evs[i].data.ptr;
        if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
          do_read(l, c, (evs[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0);
        }
        if (evs[i].events & EPOLLOUT) {
          do_write(c);
        }
      } else if (kind == KIND_LISTENER) {
        do_accept(l, evs[i].data.ptr);
      } else if (kind == KIND_WATCH) {
        watch *w = evs[i].data.ptr;
        w->fn(w->arg, server_loop_now());
      } else {
        struct signalfd_siginfo si;
        while (read(l->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
          if (!sig) {
            sig = (int)si.ssi_signo;
            stop_at = server_loop_now() + grace_ms;
            start_shutdown(l, shutdown_reason);
          }
        }
      }
    }
  }
  return sig;
}
