/* pomelo-echo: the smallest useful Pomelo server, one poll() loop (docs/pomelo-echo.md).
 *   pomelo-echo [--host H] [--port P] [--heartbeat SEC]     (default 127.0.0.1:3010, 3 s)
 * A request gets the response {"code":200,"route":<its route>,"echo":<its body>}; a notify is
 * pushed back to its sender on the route "onEcho" with the same body.
 * libpomelo is sans-IO: this file owns the sockets and the clock, the library owns the protocol
 * (handshake, heartbeats, timeouts, what to send, when to close). One pomelo_conn per socket; the
 * loop below only carries bytes and time between the two.
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <pomelo/pomelo.h>

#define MAX_CLIENTS 1024 /* more wait in the listen backlog */
/* Slot 0 watches the listening socket, slot i > 0 a client socket and its connection conns[i]. */
static struct pollfd pfd[MAX_CLIENTS + 1];
static pomelo_conn *conns[MAX_CLIENTS + 1];
static nfds_t nfds = 1;
static pomelo_json_writer *writer; /* builds every response body, reused */
static volatile sig_atomic_t stop;

static void on_signal(int sig) {
  stop = sig;
}

/* The library wants milliseconds on a clock that never jumps. */
static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* {"code":200,"route":...,"echo":...}, the body as JSON (`how` 0), as a JSON string when it is not
 * JSON (1), or null when it is not even UTF-8 text (2). A route code (compressed route) cannot be
 * echoed by name: we announce no dictionary, so clients should not send one; if one does, we still
 * answer, with "route":null (the real server drops such a request without an answer). */
static int write_echo(const pomelo_msg *m, int how) {
  int (*put)(pomelo_json_writer *, const char *, size_t) =
      how ? pomelo_json_write_string : pomelo_json_write_raw;
  const char *body = (const char *)m->body;
  int rc;
  pomelo_json_writer_reset(writer);
  rc = pomelo_json_write_begin_object(writer);
  rc = rc ? rc : pomelo_json_write_key(writer, "code", 4);
  rc = rc ? rc : pomelo_json_write_int64(writer, 200);
  rc = rc ? rc : pomelo_json_write_key(writer, "route", 5);
  if (!rc) {
    rc = m->route_compressed ? pomelo_json_write_null(writer)
                             : pomelo_json_write_string(writer, m->route, m->route_len);
  }
  rc = rc ? rc : pomelo_json_write_key(writer, "echo", 4);
  rc = rc ? rc : how == 2 ? pomelo_json_write_null(writer) : put(writer, body, m->body_len);
  return rc ? rc : pomelo_json_write_end_object(writer);
}

/* Runs inside pomelo_conn_feed, for each DATA message once the handshake is done. */
static void on_message(pomelo_conn *conn, const pomelo_msg *m, void *user_data) {
  /* A notify is never answered, so we push its body back on "onEcho". */
  pomelo_msg out = {.type = POMELO_MSG_PUSH, .route = "onEcho", .route_len = 6};
  out.body = m->body;
  out.body_len = m->body_len;
  if (m->type == POMELO_MSG_REQUEST) {
    if (write_echo(m, 0) && write_echo(m, 1) && write_echo(m, 2)) {
      return; /* out of memory: no answer */
    }
    out.type = POMELO_MSG_RESPONSE;
    out.id = m->id; /* the client matches the response to its request by id */
    out.body = (const uint8_t *)pomelo_json_writer_data(writer, &out.body_len);
  }
  pomelo_conn_send(conn, &out); /* only queued: the loop writes it */
}

/* Writes as much queued output as the socket takes (it is non-blocking). */
static void flush(int fd, pomelo_conn *conn, uint64_t now) {
  struct iovec iov[16];
  int n;
  while ((n = pomelo_conn_out_iov(conn, iov, 16)) > 0) {
    ssize_t w = writev(fd, iov, n);
    if (w < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        pomelo_conn_peer_closed(conn); /* the socket is dead: drop the rest */
      }
      return;
    }
    pomelo_conn_out_consume(conn, (size_t)w, now);
  }
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *port = "3010";
  pomelo_conn_settings set;
  pomelo_conn_callbacks cb = {.on_message = on_message}; /* the other callbacks: unused */
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
  struct sockaddr_storage sa;
  socklen_t salen = sizeof sa;
  char shown_host[64], shown_port[16];
  int lfd = -1, i, one = 1;

  pomelo_conn_settings_default(&set); /* server role, transport AUTO, 10 s handshake deadline */
  set.heartbeat_interval_ms = 3000;   /* clients heartbeat every 3 s; silent ones go after 6 s */
  for (i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--host") == 0) {
      host = argv[i + 1];
    } else if (strcmp(argv[i], "--port") == 0) {
      port = argv[i + 1]; /* 0: any free port (printed below) */
    } else if (strcmp(argv[i], "--heartbeat") == 0) {
      set.heartbeat_interval_ms = (uint32_t)atoi(argv[i + 1]) * 1000u; /* 0: no heartbeats */
    } else {
      break;
    }
  }
  if (i != argc) {
    fprintf(stderr, "usage: pomelo-echo [--host H] [--port P] [--heartbeat SEC]\n");
    return 2;
  }
  if (getaddrinfo(host, port, &hints, &ai) != 0 ||
      (lfd = socket(ai->ai_family, SOCK_STREAM, 0)) < 0 ||
      setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      bind(lfd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(lfd, 128) != 0 ||
      fcntl(lfd, F_SETFL, O_NONBLOCK) != 0 || pomelo_json_writer_new(&writer, NULL, 0) != 0) {
    fprintf(stderr, "pomelo-echo: cannot listen on %s:%s\n", host, port);
    return 1;
  }
  freeaddrinfo(ai);
  signal(SIGPIPE, SIG_IGN); /* writing to a closed socket: EPIPE rather than death */
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  getsockname(lfd, (struct sockaddr *)&sa, &salen); /* the real port when --port 0 */
  getnameinfo((struct sockaddr *)&sa, salen, shown_host, sizeof shown_host, shown_port,
              sizeof shown_port, NI_NUMERICHOST | NI_NUMERICSERV);
  printf("listening on %s:%s\n", shown_host, shown_port); /* tests wait for this line */
  fflush(stdout);

  pfd[0].fd = lfd;
  while (!stop) {
    /* One timer for all connections: sleep until the earliest deadline (a minute at most). */
    uint64_t now = now_ms(), next = now + 60000;
    for (i = 1; i < (int)nfds; i++) {
      uint64_t e = pomelo_conn_expiry(conns[i]);
      next = e < next ? e : next; /* ask for writability only while output is queued: */
      pfd[i].events = POLLIN | (pomelo_conn_out_len(conns[i]) ? POLLOUT : 0);
    }
    pfd[0].events = nfds <= MAX_CLIENTS ? POLLIN : 0;
    if (poll(pfd, nfds, next > now ? (int)(next - now) : 0) < 0) {
      continue; /* EINTR: a signal; the loop condition checks `stop` */
    }
    now = now_ms();
    /* Backwards, so that removing a client (the last one takes its slot) skips nobody. */
    for (i = (int)nfds - 1; i > 0; i--) {
      if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) {
        static uint8_t buf[65536];
        ssize_t n = read(pfd[i].fd, buf, sizeof buf);
        if (n > 0) {
          pomelo_conn_feed(conns[i], buf, (size_t)n, now); /* runs on_message: replies queued */
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
          pomelo_conn_peer_closed(conns[i]); /* end of file or a dead socket */
        }
      }
      pomelo_conn_handle_expiry(conns[i], now); /* heartbeat and handshake deadlines */
      flush(pfd[i].fd, conns[i], now);
      if (pomelo_conn_wants_close(conns[i])) { /* the library decides when a socket closes */
        int why = pomelo_conn_close_reason(conns[i]);
        fprintf(stderr, "client %d: %s\n", pfd[i].fd, pomelo_close_reason_name(why));
        close(pfd[i].fd);
        pomelo_conn_del(conns[i]);
        pfd[i] = pfd[--nfds];
        conns[i] = conns[nfds];
      }
    }
    if (pfd[0].revents & POLLIN) {
      int fd = accept(lfd, NULL, NULL);
      if (fd >= 0 && fcntl(fd, F_SETFL, O_NONBLOCK) == 0 &&
          pomelo_conn_new(&conns[nfds], &set, &cb, NULL, now, NULL) == 0) {
        pfd[nfds++].fd = fd;
      } else if (fd >= 0) {
        close(fd);
      }
    }
  }
  /* SIGINT or SIGTERM: close everything (slot 0 has no connection; _del accepts NULL). */
  for (i = 0; i < (int)nfds; i++) {
    close(pfd[i].fd);
    pomelo_conn_del(conns[i]);
  }
  pomelo_json_writer_del(writer);
  fprintf(stderr, "pomelo-echo: stopped by signal %d\n", (int)stop);
  return 0;
}
