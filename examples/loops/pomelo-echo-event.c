/* pomelo-echo-event: pomelo-echo on libevent 2 (docs/loop-libevent.md).
 *   pomelo-echo-event [--host H] [--port P] [--heartbeat SEC]     (default 127.0.0.1:3010, 3 s)
 * The same server as pomelo-echo (examples/echo/echo_app.c); only the loop differs. The whole
 * integration with libevent is here:
 *   accept    evconnlistener -> on_accept: TCP_NODELAY, pomelo_server_accept, one persistent
 *             edge-triggered event per socket (EV_READ | EV_WRITE | EV_ET)
 *   read      on_socket(EV_READ): read until EAGAIN, pomelo_session_feed (EOF: peer_closed)
 *   write     on_socket(EV_WRITE), and the ready list: the server's on_ready_list activates
 *             one drain event, which libevent runs after the callbacks of this iteration;
 *             POMELO_READY_WRITE -> writev of the session's iovecs until EAGAIN
 *   timers    one evtimer for the whole server, re-armed to pomelo_server_expiry
 *   close     POMELO_READY_CLOSE -> event_free, close, pomelo_server_release
 *   stop      SIGINT/SIGTERM (evsignal): no new clients, KICK everyone, exit when all are gone
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "../echo/echo_app.h"

#define WRITE_IOV 64
#define GRACE_MS 5000

typedef struct client {
  evutil_socket_t fd;
  struct event *ev;
  pomelo_session *s;
} client;

static struct event_base *base;
static pomelo_server *srv;
static struct evconnlistener *listener;
static struct event *drain_ev, *timer_ev, *grace_ev, *sig_ev[2];
static int stopping;

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts); /* the library wants a clock that never jumps */
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void do_write(client *c) {
  while (pomelo_session_out_len(c->s) > 0) {
    struct iovec iov[WRITE_IOV];
    ssize_t n = writev(c->fd, iov, pomelo_session_out_iov(c->s, iov, WRITE_IOV));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return; /* EV_WRITE (edge-triggered) says when to go on */
    }
    if (n < 0) {
      pomelo_session_peer_closed(c->s);
      return;
    }
    pomelo_session_out_consume(c->s, (size_t)n, now_ms());
  }
}

static void do_read(client *c) {
  static uint8_t buf[64 * 1024];
  while (pomelo_session_state(c->s) < POMELO_CONN_CLOSING) {
    ssize_t n = read(c->fd, buf, sizeof buf);
    if (n > 0) {
      (void)pomelo_session_feed(c->s, buf, (size_t)n, now_ms());
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return;
    } else {
      pomelo_session_peer_closed(c->s); /* end of file or a dead socket */
      return;
    }
  }
}

static void on_socket(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  if (what & EV_READ) {
    do_read(arg);
  }
  if (what & EV_WRITE) {
    do_write(arg);
  }
}

static void finish(client *c) {
  echo_log_done(c->s);
  event_free(c->ev);
  evutil_closesocket(c->fd);
  pomelo_server_release(srv, c->s);
  free(c);
}

static void rearm_timer(void) {
  uint64_t next = pomelo_server_expiry(srv), now = now_ms();
  if (next == UINT64_MAX) {
    evtimer_del(timer_ev);
  } else {
    uint64_t ms = next > now ? next - now : 0;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(timer_ev, &tv);
  }
}

/* The ready list: run once after the callbacks that filled it. */
static void on_drain(evutil_socket_t fd, short what, void *arg) {
  pomelo_session *s;
  unsigned ready;
  (void)fd;
  (void)what;
  (void)arg;
  while ((s = pomelo_server_next_ready(srv, &ready)) != NULL) {
    if (ready == POMELO_READY_WRITE) {
      do_write(pomelo_session_user_data(s));
    } else {
      finish(pomelo_session_user_data(s));
    }
  }
  rearm_timer();
  if (stopping && pomelo_server_session_count(srv) == 0) {
    event_base_loopbreak(base);
  }
}

/* Called by the library inside feed, a push, ...: only schedule the drain. */
static void on_ready_list(pomelo_server *server, void *ud) {
  (void)server;
  (void)ud;
  event_active(drain_ev, EV_TIMEOUT, 0);
}

static void on_timer(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  (void)arg;
  pomelo_server_handle_expiry(srv, now_ms());
  rearm_timer(); /* on_drain also runs when the timers filled the ready list */
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg) {
  int one = 1;
  client *c = calloc(1, sizeof *c);
  (void)l;
  (void)sa;
  (void)salen;
  (void)arg;
  if (!c || setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 ||
      pomelo_server_accept(srv, now_ms(), c, &c->s) != 0) {
    free(c);
    evutil_closesocket(fd);
    return;
  }
  c->fd = fd;
  c->ev = event_new(base, fd, EV_READ | EV_WRITE | EV_PERSIST | EV_ET, on_socket, c);
  if (!c->ev || event_add(c->ev, NULL) != 0) {
    pomelo_session_peer_closed(c->s); /* finished by the drain; event_free accepts NULL */
  }
  rearm_timer();
}

static void on_grace_over(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  (void)arg;
  event_base_loopbreak(base); /* clients that did not read their KICK in time */
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
  struct timeval grace = {GRACE_MS / 1000, 0};
  (void)what;
  (void)arg;
  if (stopping) {
    return;
  }
  stopping = (int)sig;
  evconnlistener_disable(listener);
  pomelo_server_shutdown(srv, "server shutting down");
  evtimer_add(grace_ev, &grace);
  event_active(drain_ev, EV_TIMEOUT, 0); /* sessions with nothing to flush close at once */
}

static int close_rest(pomelo_session *s, void *arg) {
  (void)arg;
  pomelo_session_peer_closed(s); /* to the ready list, finished by one more drain */
  return 0;
}

int main(int argc, char **argv) {
  echo_options o;
  pomelo_server_callbacks cb = {.on_ready_list = on_ready_list};
  struct event_config *cfg;
  struct sockaddr_storage sa;
  int salen = sizeof sa, rc;
  socklen_t len = sizeof sa;
  struct addrinfo hints, *ai;
  char port[16];
  if (echo_parse_args(argc, argv, "pomelo-echo-event", 0, &o) != 0) {
    return 2;
  }
  cfg = event_config_new();
  if (!cfg || event_config_require_features(cfg, EV_FEATURE_ET) != 0 ||
      event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER) != 0 ||
      !(base = event_base_new_with_config(cfg))) {
    fprintf(stderr, "pomelo-echo-event: no libevent backend with edge-triggered events\n");
    return 1;
  }
  event_config_free(cfg);
  rc = echo_server_new(&srv, &o, &cb);
  if (rc) {
    fprintf(stderr, "pomelo-echo-event: %s\n", pomelo_strerror(rc));
    return 1;
  }
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
  if (getaddrinfo(o.host, o.port, &hints, &ai) != 0) {
    fprintf(stderr, "pomelo-echo-event: %s:%s is not a numeric address and port\n", o.host, o.port);
    return 1;
  }
  memcpy(&sa, ai->ai_addr, ai->ai_addrlen);
  salen = (int)ai->ai_addrlen;
  freeaddrinfo(ai);
  listener = evconnlistener_new_bind(
      base, on_accept, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
      SOMAXCONN, (struct sockaddr *)&sa, salen);
  drain_ev = event_new(base, -1, 0, on_drain, NULL);
  timer_ev = evtimer_new(base, on_timer, NULL);
  grace_ev = evtimer_new(base, on_grace_over, NULL);
  sig_ev[0] = evsignal_new(base, SIGINT, on_signal, NULL);
  sig_ev[1] = evsignal_new(base, SIGTERM, on_signal, NULL);
  if (!listener || !drain_ev || !timer_ev || !grace_ev || !sig_ev[0] || !sig_ev[1] ||
      event_add(sig_ev[0], NULL) != 0 || event_add(sig_ev[1], NULL) != 0 ||
      getsockname(evconnlistener_get_fd(listener), (struct sockaddr *)&sa, &len) != 0) {
    fprintf(stderr, "pomelo-echo-event: cannot listen on %s:%s: %s\n", o.host, o.port,
            strerror(errno));
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  snprintf(port, sizeof port, "%u",
           (unsigned)ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
                                                    : ((struct sockaddr_in *)&sa)->sin_port));
  printf("listening on %s:%s\n", o.host, port);
  fflush(stdout);
  event_base_dispatch(base);
  pomelo_server_foreach(srv, close_rest, NULL);
  on_drain(-1, 0, NULL);
  evconnlistener_free(listener);
  event_free(drain_ev);
  event_free(timer_ev);
  event_free(grace_ev);
  event_free(sig_ev[0]);
  event_free(sig_ev[1]);
  echo_server_del(srv);
  event_base_free(base);
  fprintf(stderr, "pomelo-echo-event: stopped by signal %d\n", stopping);
  return 0;
}
