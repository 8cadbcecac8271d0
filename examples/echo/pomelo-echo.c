/* pomelo-echo: the smallest useful Pomelo server, on epoll (docs/pomelo-echo.md).
 *   pomelo-echo [--host H] [--port P] [--heartbeat SEC]     (default 127.0.0.1:3010, 3 s)
 * A request gets the response {"code":200,"route":<its route>,"echo":<its body>}; a notify is
 * pushed back to its sender on the route "onEcho" with the same body. TCP and WebSocket clients
 * share the port. SIGINT or SIGTERM: every client gets a KICK "server shutting down", then the
 * server exits (status 0).
 * libpomelo is sans-IO: the loop (../common/server_loop.c, driven from echo_epoll.c) owns the
 * sockets and the clock, the library owns the protocol (handshake, heartbeats, timeouts, what to
 * send, when to close). SPDX-License-Identifier: MIT
 */
#include "echo_epoll.h"

int main(int argc, char **argv) {
  echo_options o;
  if (echo_parse_args(argc, argv, "pomelo-echo", 0, &o) != 0) {
    return 2;
  }
  return echo_serve_epoll(&o, "pomelo-echo", NULL);
}
