/* The echo server on the epoll loop: what pomelo-echo and pomelo-echo-tls run (docs/loop-epoll.md).
 * SPDX-License-Identifier: MIT
 */
#ifndef POMELO_EXAMPLES_ECHO_EPOLL_H
#define POMELO_EXAMPLES_ECHO_EPOLL_H

#include "../common/server_loop.h"
#include "echo_app.h"

/** Serves the echo server of `o` on the epoll loop, its sockets carried by `stream` (NULL:
 * plain TCP), until SIGINT or SIGTERM, then shuts it down gracefully (every client gets a KICK
 * "server shutting down", 5 s of grace). Prints "listening on H:P" on standard output once it
 * listens, one line per finished session and the stopping signal on standard error, errors
 * prefixed with `prog`. Returns the exit status: 0 after a signal, 1 when it could not start. */
int echo_serve_epoll(const echo_options *o, const char *prog, const server_loop_stream *stream);

#endif /* POMELO_EXAMPLES_ECHO_EPOLL_H */
