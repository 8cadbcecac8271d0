/* pomelo-echo: the smallest useful Pomelo server, on epoll (docs/pomelo-echo.md).
 *   pomelo-echo [--host H] [--port P] [--heartbeat SEC]     (default 127.0.0.1:3010, 3 s)
 * A request gets the response {"code":200,"route":<its route>,"echo":<its body>}; a notify is
 * pushed back to its sender on the route "onEcho" with the same body. TCP and WebSocket clients
 * share the port. SIGINT or SIGTERM: every client gets a KICK "server shutting down", then the
 * server exits (status 0).
 * libpomelo is sans-IO: the loop (../common/server_loop.c) owns the sockets and the clock, the
 * library owns the protocol (handshake, heartbeats, timeouts, what to send, when to close).
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <string.h>

#include "../common/server_loop.h"
#include "echo_app.h"

static void on_session_done(server_loop *l, pomelo_server *srv, pomelo_session *s, void *ud) {
  (void)l;
  (void)srv;
  (void)ud;
  echo_log_done(s);
}

int main(int argc, char **argv) {
  echo_options o;
  pomelo_server *srv = NULL;
  server_loop *l = NULL;
  server_loop_callbacks cb = {.on_session_done = on_session_done};
  char port[16];
  int rc, sig;
  if (echo_parse_args(argc, argv, "pomelo-echo", 0, &o) != 0) {
    return 2;
  }
  rc = echo_server_new(&srv, &o, NULL);
  if (rc) {
    fprintf(stderr, "pomelo-echo: %s\n", pomelo_strerror(rc));
    return 1;
  }
  rc = server_loop_new(&l, &cb, NULL);
  if (rc == 0) {
    rc = server_loop_add(l, srv, o.host, o.port, NULL, port, sizeof port);
  }
  if (rc) {
    fprintf(stderr, "pomelo-echo: cannot listen on %s:%s: %s\n", o.host, o.port, strerror(rc));
    server_loop_del(l);
    echo_server_del(srv);
    return 1;
  }
  printf("listening on %s:%s\n", o.host, port); /* tests wait for this line */
  fflush(stdout);
  sig = server_loop_run(l, "server shutting down", 5000);
  server_loop_del(l);
  echo_server_del(srv);
  if (sig < 0) {
    perror("pomelo-echo: epoll_wait");
    return 1;
  }
  fprintf(stderr, "pomelo-echo: stopped by signal %d\n", sig);
  return 0;
}
