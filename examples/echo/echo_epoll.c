/* The echo server on the epoll loop (echo_epoll.h).
 * SPDX-License-Identifier: MIT
 */
#include "echo_epoll.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static void on_session_done(server_loop *l, pomelo_server *srv, pomelo_session *s, void *ud) {
  (void)l;
  (void)srv;
  (void)ud;
  echo_log_done(s);
}

int echo_serve_epoll(const echo_options *o, const char *prog, const server_loop_stream *stream) {
  pomelo_server *srv = NULL;
  server_loop *l = NULL;
  server_loop_callbacks cb = {.on_session_done = on_session_done};
  char port[16];
  int rc, sig;
  rc = echo_server_new(&srv, o, NULL);
  if (rc) {
    fprintf(stderr, "%s: %s\n", prog, pomelo_strerror(rc));
    return 1;
  }
  rc = server_loop_new(&l, &cb, NULL);
  if (rc == 0) {
    rc = server_loop_add(l, srv, o->host, o->port, stream, port, sizeof port);
  }
  if (rc) {
    fprintf(stderr, "%s: cannot listen on %s:%s: %s\n", prog, o->host, o->port, strerror(rc));
    server_loop_del(l);
    echo_server_del(srv);
    return 1;
  }
  printf("listening on %s:%s\n", o->host, port); /* tests wait for this line */
  fflush(stdout);
  sig = server_loop_run(l, "server shutting down", 5000);
  server_loop_del(l);
  echo_server_del(srv);
  if (sig < 0) {
    fprintf(stderr, "%s: epoll_wait: %s\n", prog, strerror(errno));
    return 1;
  }
  fprintf(stderr, "%s: stopped by signal %d\n", prog, sig);
  return 0;
}
