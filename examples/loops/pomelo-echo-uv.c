/* pomelo-echo-uv: pomelo-echo on libuv (docs/loop-libuv.md).
 *   pomelo-echo-uv [--host H] [--port P] [--heartbeat SEC]     (default 127.0.0.1:3010, 3 s)
 * The same server as pomelo-echo (examples/echo/echo_app.c); only the loop differs. The whole
 * integration with libuv is here:
 *   accept    uv_listen -> on_connection: uv_accept, TCP_NODELAY, pomelo_server_accept
 *   read      uv_read_start -> on_read: pomelo_session_feed (EOF/error: peer_closed)
 *   write     the ready list, drained in a uv_prepare handle before the loop waits:
 *             POMELO_READY_WRITE -> uv_write of the session's iovecs (zero copy: the library
 *             keeps them valid until consumed), on_written: pomelo_session_out_consume
 *   timers    one uv_timer for the whole server, re-armed to pomelo_server_expiry
 *   close     POMELO_READY_CLOSE -> uv_close; on_closed (libuv is done with the socket and
 *             with the buffers of a write in flight, which the library keeps valid until the
 *             session is released): pomelo_server_release
 *   stop      SIGINT/SIGTERM (uv_signal): no new clients, KICK everyone, exit when all are gone
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "../echo/echo_app.h"

#define WRITE_IOV 64 /* iovecs per uv_write */
#define GRACE_MS 5000

typedef struct client {
  uv_tcp_t tcp; /* first: the handle's address is the client's */
  uv_write_t wr;
  pomelo_session *s;
  size_t writing; /* bytes of the uv_write in flight (0: none) */
  int closing;    /* uv_close called */
} client;

static uv_loop_t *loop;
static pomelo_server *srv;
static uv_tcp_t listener;
static uv_timer_t timer, grace;
static uv_prepare_t drainer;
static uv_signal_t sigint, sigterm;
static int stopping;

static uint64_t now_ms(void) {
  return uv_now(loop); /* libuv's cached monotonic clock, in ms */
}

static void on_closed(uv_handle_t *h) {
  client *c = (client *)h;
  pomelo_server_release(srv, c->s);
  free(c);
}

static void on_written(uv_write_t *req, int status);

/* Writes what the session has queued, one uv_write at a time. */
static void start_write(client *c) {
  uv_buf_t bufs[WRITE_IOV];
  struct iovec iov[WRITE_IOV];
  int i, n;
  if (c->writing || c->closing || pomelo_session_out_len(c->s) == 0) {
    return;
  }
  n = pomelo_session_out_iov(c->s, iov, WRITE_IOV);
  for (i = 0; i < n; i++) {
    bufs[i] = uv_buf_init(iov[i].iov_base, (unsigned)iov[i].iov_len);
    c->writing += iov[i].iov_len;
  }
  if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, bufs, (unsigned)n, on_written) != 0) {
    c->writing = 0;
    pomelo_session_peer_closed(c->s);
  }
}

static void on_written(uv_write_t *req, int status) {
  client *c = req->data;
  size_t n = c->writing;
  c->writing = 0;
  if (status < 0) {
    pomelo_session_peer_closed(c->s); /* ECONNRESET, EPIPE, or ECANCELED by uv_close */
    return;
  }
  pomelo_session_out_consume(c->s, n, now_ms());
  start_write(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  static char mem[64 * 1024]; /* one read at a time: the library copies what it keeps */
  (void)h;
  (void)suggested;
  *buf = uv_buf_init(mem, sizeof mem);
}

static void on_read(uv_stream_t *stream, ssize_t n, const uv_buf_t *buf) {
  client *c = (client *)stream;
  if (n > 0) {
    (void)pomelo_session_feed(c->s, (const uint8_t *)buf->base, (size_t)n, now_ms());
  } else if (n < 0) { /* UV_EOF or an error */
    uv_read_stop(stream);
    pomelo_session_peer_closed(c->s); /* a write in flight keeps its bytes until on_closed */
  }
}

static void on_connection(uv_stream_t *server, int status) {
  client *c;
  if (status < 0 || !(c = calloc(1, sizeof *c))) {
    return;
  }
  c->wr.data = c;
  if (uv_tcp_init(loop, &c->tcp) != 0) {
    free(c);
    return;
  }
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 || uv_tcp_nodelay(&c->tcp, 1) != 0 ||
      pomelo_server_accept(srv, now_ms(), c, &c->s) != 0) {
    c->s = NULL;
    uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free);
    return;
  }
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
    pomelo_session_peer_closed(c->s);
  }
}

static void on_timer(uv_timer_t *t) {
  (void)t;
  pomelo_server_handle_expiry(srv, now_ms()); /* the prepare handle drains what it did */
}

static void on_listener_closed(uv_handle_t *h) {
  (void)h;
}

/* Before the loop waits for I/O (so after every callback of an iteration: reads, timers): the
 * ready list, then the one timer, then whether to stop. */
static void on_prepare(uv_prepare_t *h) {
  pomelo_session *s;
  unsigned what;
  uint64_t next;
  (void)h;
  while ((s = pomelo_server_next_ready(srv, &what)) != NULL) {
    client *c = pomelo_session_user_data(s);
    if (what == POMELO_READY_WRITE) {
      start_write(c);
    } else if (!c->closing) {
      echo_log_done(s);
      c->closing = 1;
      uv_close((uv_handle_t *)&c->tcp, on_closed); /* cancels a write in flight first */
    }
  }
  next = pomelo_server_expiry(srv);
  if (next != UINT64_MAX) {
    uv_timer_start(&timer, on_timer, next > now_ms() ? next - now_ms() : 0, 0);
  } else {
    uv_timer_stop(&timer);
  }
  if (stopping && pomelo_server_session_count(srv) == 0) {
    uv_stop(loop);
  }
}

static void force_close(uv_handle_t *h, void *arg) {
  (void)arg;
  if (h->type == UV_TCP && h != (uv_handle_t *)&listener && !uv_is_closing(h)) {
    client *c = (client *)h;
    c->closing = 1;
    uv_close(h, on_closed);
  }
}

static void on_grace_over(uv_timer_t *t) {
  (void)t;
  uv_walk(loop, force_close, NULL); /* clients that did not read their KICK in time */
}

static void on_signal(uv_signal_t *sig, int signum) {
  (void)sig;
  if (stopping) {
    return;
  }
  stopping = signum;
  uv_close((uv_handle_t *)&listener, on_listener_closed);
  pomelo_server_shutdown(srv, "server shutting down");
  uv_timer_start(&grace, on_grace_over, GRACE_MS, 0);
}

int main(int argc, char **argv) {
  echo_options o;
  struct sockaddr_storage sa;
  int salen = sizeof sa, rc;
  char port[16];
  if (echo_parse_args(argc, argv, "pomelo-echo-uv", 0, &o) != 0) {
    return 2;
  }
  loop = uv_default_loop();
  rc = echo_server_new(&srv, &o, NULL);
  if (rc) {
    fprintf(stderr, "pomelo-echo-uv: %s\n", pomelo_strerror(rc));
    return 1;
  }
  if ((rc = uv_ip4_addr(o.host, atoi(o.port), (struct sockaddr_in *)&sa)) != 0 &&
      (rc = uv_ip6_addr(o.host, atoi(o.port), (struct sockaddr_in6 *)&sa)) != 0) {
    fprintf(stderr, "pomelo-echo-uv: %s is not a numeric address\n", o.host);
    return 1;
  }
  if ((rc = uv_tcp_init(loop, &listener)) != 0 ||
      (rc = uv_tcp_bind(&listener, (struct sockaddr *)&sa, 0)) != 0 ||
      (rc = uv_listen((uv_stream_t *)&listener, SOMAXCONN, on_connection)) != 0 ||
      (rc = uv_tcp_getsockname(&listener, (struct sockaddr *)&sa, &salen)) != 0 ||
      (rc = uv_timer_init(loop, &timer)) != 0 || (rc = uv_timer_init(loop, &grace)) != 0 ||
      (rc = uv_prepare_init(loop, &drainer)) != 0 ||
      (rc = uv_prepare_start(&drainer, on_prepare)) != 0 ||
      (rc = uv_signal_init(loop, &sigint)) != 0 ||
      (rc = uv_signal_start(&sigint, on_signal, SIGINT)) != 0 ||
      (rc = uv_signal_init(loop, &sigterm)) != 0 ||
      (rc = uv_signal_start(&sigterm, on_signal, SIGTERM)) != 0) {
    fprintf(stderr, "pomelo-echo-uv: cannot listen on %s:%s: %s\n", o.host, o.port,
            uv_strerror(rc));
    return 1;
  }
  snprintf(port, sizeof port, "%u",
           (unsigned)ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
                                                    : ((struct sockaddr_in *)&sa)->sin_port));
  printf("listening on %s:%s\n", o.host, port);
  fflush(stdout);
  uv_run(loop, UV_RUN_DEFAULT);
  /* Stopped: close what is left (the handles above) and let libuv finish with them. */
  uv_walk(loop, force_close, NULL);
  uv_close((uv_handle_t *)&timer, NULL);
  uv_close((uv_handle_t *)&grace, NULL);
  uv_close((uv_handle_t *)&drainer, NULL);
  uv_close((uv_handle_t *)&sigint, NULL);
  uv_close((uv_handle_t *)&sigterm, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  echo_server_del(srv);
  rc = uv_loop_close(loop);
  fprintf(stderr, "pomelo-echo-uv: stopped by signal %d\n", stopping);
  return rc == 0 ? 0 : 1;
}
