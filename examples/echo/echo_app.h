/* The echo server's logic, shared by every loop it runs on (docs/pomelo-echo.md): pomelo-echo
 * (epoll), pomelo-echo-uv (libuv), pomelo-echo-event (libevent) and pomelo-echo-tls (epoll and
 * OpenSSL). A request gets {"code":200,"route":<its route>,"echo":<its body>}; a notify is
 * pushed back to its sender on "onEcho" with the same body. With --dict and --server-protos /
 * --client-protos it announces a route dictionary and protos as a real server's config files
 * would (routes then travel as codes, bodies of routes with a proto as protobuf).
 * SPDX-License-Identifier: MIT
 */
#ifndef POMELO_EXAMPLES_ECHO_APP_H
#define POMELO_EXAMPLES_ECHO_APP_H

#include <stdint.h>

#include <pomelo/server.h>

/** The command line every echo server takes. */
typedef struct echo_options {
  const char *host;          /**< --host H (default 127.0.0.1) */
  const char *port;          /**< --port P (default 3010; 0 picks a free one) */
  uint32_t heartbeat_ms;     /**< --heartbeat SEC (default 3 s; 0: none) */
  const char *cert;          /**< --cert FILE (TLS servers only) */
  const char *key;           /**< --key FILE (TLS servers only) */
  const char *dict;          /**< --dict FILE: a JSON array of routes, numbered as the real server
                                  numbers its handler routes (sorted, from 1) */
  const char *server_protos; /**< --server-protos FILE (config/serverProtos.json's form) */
  const char *client_protos; /**< --client-protos FILE (config/clientProtos.json's form) */
} echo_options;

/** Parses argv into `o` (defaults first). `tls` accepts --cert and --key (both then required).
 * Prints the usage of `prog` and returns -1 on a bad command line, else 0. */
int echo_parse_args(int argc, char **argv, const char *prog, int tls, echo_options *o);

/** Creates the echo server (server type "connector", TCP and WebSocket on one port, the
 * heartbeat, dictionary and protos of `o`) with its default handler and the loop's callbacks
 * `cb` (may be NULL). Returns 0 or a libpomelo error code (a file that cannot be read or parsed
 * is reported on standard error). */
int echo_server_new(pomelo_server **out, const echo_options *o, const pomelo_server_callbacks *cb);

/** Frees a server made by echo_server_new (its sessions too). Accepts NULL. */
void echo_server_del(pomelo_server *srv);

/** Logs a finished session on standard error: "session 3: heartbeat_timeout". */
void echo_log_done(pomelo_session *s);

#endif /* POMELO_EXAMPLES_ECHO_APP_H */
