/* A tiny poll(2) loop for one pomelo_client (loop.h).
 * SPDX-License-Identifier: MIT
 */
#include "loop.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define LOOP_READ_BUF 65536
#define LOOP_IOV 16

uint64_t loop_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint32_t loop_random32(void *user_data) {
  static int fd = -2;
  static uint64_t state;
  uint32_t v;
  (void)user_data;
  if (fd == -2) {
    fd = open("/dev/urandom", O_RDONLY);
  }
  if (fd >= 0 && read(fd, &v, sizeof v) == (ssize_t)sizeof v) {
    return v;
  }
  if (state == 0) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    state = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid() ^ 1u;
  }
  state ^= state << 13; /* xorshift64 */
  state ^= state >> 7;
  state ^= state << 17;
  return (uint32_t)(state >> 32);
}

static int set_nonblocking(int fd) {
  int flags = fcntl(fd, F_GETFL, 0);
  return flags < 0 ? -1 : fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

/* Waits until a non-blocking connect finishes; returns 0 or an errno value. */
static int wait_connected(int fd, uint64_t deadline) {
  for (;;) {
    struct pollfd p;
    uint64_t now = loop_now_ms();
    int wait = -1, n, soerr = 0;
    socklen_t len = sizeof soerr;
    if (deadline != UINT64_MAX) {
      if (now >= deadline) {
        return ETIMEDOUT;
      }
      wait = deadline - now > INT_MAX ? INT_MAX : (int)(deadline - now);
    }
    p.fd = fd;
    p.events = POLLOUT;
    p.revents = 0;
    n = poll(&p, 1, wait);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return errno;
    }
    if (n == 0) {
      continue; /* the deadline check above ends it */
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0) {
      return errno;
    }
    return soerr;
  }
}

int loop_tcp_connect(const char *host, const char *port, uint32_t timeout_ms, char *err,
                     size_t err_len) {
  struct addrinfo hints, *res = NULL, *ai;
  uint64_t deadline = timeout_ms ? loop_now_ms() + timeout_ms : UINT64_MAX;
  int rc, last = 0;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  rc = getaddrinfo(host, port, &hints, &res);
  if (rc != 0) {
    snprintf(err, err_len, "%s", gai_strerror(rc));
    return -1;
  }
  for (ai = res; ai; ai = ai->ai_next) {
    int one = 1;
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0) {
      last = errno;
      continue;
    }
    if (set_nonblocking(fd) != 0) {
      last = errno;
      close(fd);
      continue;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      last = errno == EINPROGRESS ? wait_connected(fd, deadline) : errno;
      if (last != 0) {
        close(fd);
        if (last == ETIMEDOUT) {
          break;
        }
        continue;
      }
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    freeaddrinfo(res);
    return fd;
  }
  freeaddrinfo(res);
  snprintf(err, err_len, "%s", last == ETIMEDOUT ? "timed out" : strerror(last));
  return -1;
}

void loop_close(loop *l) {
  if (l->fd >= 0) {
    close(l->fd);
    l->fd = -1;
  }
}

/* Writes what the client has queued, as far as the socket takes it. */
static void do_write(loop *l) {
  while (l->fd >= 0 && pomelo_client_out_len(l->cl) > 0) {
    struct iovec iov[LOOP_IOV];
    int n = pomelo_client_out_iov(l->cl, iov, LOOP_IOV);
    ssize_t w = writev(l->fd, iov, n);
    if (w < 0 && errno == EINTR) {
      continue;
    }
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return;
    }
    if (w < 0) {
      pomelo_client_peer_closed(l->cl, loop_now_ms());
      return;
    }
    pomelo_client_out_consume(l->cl, (size_t)w, loop_now_ms());
  }
}

/* Reads what the socket has and feeds it. */
static void do_read(loop *l) {
  static uint8_t buf[LOOP_READ_BUF];
  while (l->fd >= 0 && !pomelo_client_wants_close(l->cl)) {
    ssize_t n = read(l->fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return;
    }
    if (n <= 0) {
      pomelo_client_peer_closed(l->cl, loop_now_ms()); /* end of file or an error */
      return;
    }
    /* An error here broke the connection: the client reports it (on_disconnect) and
     * pomelo_client_wants_close() is then true. */
    (void)pomelo_client_feed(l->cl, buf, (size_t)n, loop_now_ms());
    if ((size_t)n < sizeof buf) {
      return;
    }
  }
}

int loop_run(loop *l, uint64_t deadline, int (*done)(void *arg), void *arg) {
  for (;;) {
    struct pollfd p[2];
    nfds_t np = 0;
    uint64_t now, next;
    int wait, n, sock = -1, watch = -1;

    if (done && done(arg)) {
      return LOOP_DONE;
    }
    do_write(l);
    if (l->fd >= 0 && pomelo_client_wants_close(l->cl)) {
      loop_close(l);
      continue; /* done() may now be true */
    }
    now = loop_now_ms();
    next = pomelo_client_expiry(l->cl);
    if (next <= now) {
      (void)pomelo_client_handle_expiry(l->cl, now); /* a failure closes the connection */
      continue;
    }
    if (now >= deadline) {
      return LOOP_DEADLINE;
    }
    if (deadline < next) {
      next = deadline;
    }
    wait = next == UINT64_MAX ? -1 : (next - now > INT_MAX ? INT_MAX : (int)(next - now));
    if (l->fd >= 0) {
      p[np].fd = l->fd;
      p[np].events = (short)(POLLIN | (pomelo_client_out_len(l->cl) ? POLLOUT : 0));
      p[np].revents = 0;
      sock = (int)np++;
    }
    if (l->watch_fd >= 0) {
      p[np].fd = l->watch_fd;
      p[np].events = POLLIN;
      p[np].revents = 0;
      watch = (int)np++;
    }
    if (np == 0 && wait < 0) {
      return LOOP_DEADLINE; /* no socket, no timer, no deadline: nothing can happen */
    }
    n = poll(p, np, wait);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      l->error = errno;
      return LOOP_ERROR;
    }
    if (sock >= 0 && (p[sock].revents & (POLLIN | POLLHUP | POLLERR))) {
      do_read(l);
    }
    if (sock >= 0 && (p[sock].revents & POLLOUT)) {
      do_write(l);
    }
    if (watch >= 0 && p[watch].revents) {
      return LOOP_WATCH;
    }
  }
}
