/* pomelo-client: a curl for Pomelo servers, on libpomelo's own client and a small poll loop.
 *
 * Uses only the public API of libpomelo (pomelo_client, the JSON reader and writer) and the
 * loop in common/loop.c. See docs/pomelo-client.md or `pomelo-client --help`.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <pomelo/pomelo.h>

#include "common/loop.h"

#define PROG "pomelo-client"
#define MAX_BUFFERED_PUSHES 10000u

enum {
  EXIT_OK = 0,
  EXIT_ERROR = 1,
  EXIT_USAGE = 2,
  EXIT_CONNECT = 3,
  EXIT_REFUSED = 4,
  EXIT_TIMEOUT = 5,
  EXIT_KICKED = 6,
  EXIT_LOST = 7
};

static const char help_text[] =
    "NAME\n"
    "    pomelo-client - send requests to a Pomelo server and read its pushes\n"
    "\n"
    "SYNOPSIS\n"
    "    pomelo-client [OPTIONS] request ROUTE [JSON]\n"
    "    pomelo-client [OPTIONS] notify ROUTE [JSON]\n"
    "    pomelo-client [OPTIONS] listen [SEC]\n"
    "    pomelo-client [OPTIONS] script < COMMANDS\n"
    "\n"
    "DESCRIPTION\n"
    "    Connects to a Pomelo server (the handshake, its ACK and heartbeats are done by\n"
    "    libpomelo's client), then:\n"
    "\n"
    "    request ROUTE [JSON]  sends a request (body JSON, default {}) and prints the\n"
    "                          response body as one line of compact JSON.\n"
    "    notify ROUTE [JSON]   sends a notify and exits once its bytes are written.\n"
    "    listen [SEC]          prints each push as {\"route\":...,\"body\":...} on its own\n"
    "                          line, for SEC seconds (default: until the connection ends).\n"
    "    script                reads one command per line from standard input:\n"
    "        connect HOST PORT [tcp|ws]  close any connection and connect there (the\n"
    "                                    dictionary and protos received so far stay\n"
    "                                    cached: the handshake sends their versions)\n"
    "        request ROUTE [JSON]        print the response body (one line)\n"
    "        notify ROUTE [JSON]         send, wait until written\n"
    "        wait ROUTE [SEC]            print the next push on ROUTE (one line, as\n"
    "                                    listen prints it); SEC defaults to --timeout\n"
    "        sleep SEC                   keep the connection (heartbeats) for SEC seconds\n"
    "        close                       close the connection\n"
    "    Blank lines and lines starting with # are skipped. request, notify and wait\n"
    "    connect to --host/--port first when no connection was made yet. Pushes that\n"
    "    arrive while the script does something else are kept (up to 10000, oldest\n"
    "    dropped first) until a wait for their route takes them, in arrival order, so a\n"
    "    push that came before its wait is not lost; connect clears them.\n"
    "\n"
    "    Bodies are printed compactly: a JSON body re-serialised by libpomelo's writer,\n"
    "    an empty body as {}, any other body as a JSON string (bytes that are not UTF-8\n"
    "    as U+FFFD). A response is printed whatever it says ({\"code\":500} included).\n"
    "\n"
    "OPTIONS\n"
    "    --host H        server host name or address (default 127.0.0.1)\n"
    "    --port P        server port (default 3010)\n"
    "    --tcp           raw TCP framing (default)\n"
    "    --ws            WebSocket framing (when the library supports it)\n"
    "    --timeout SEC   limit on the TCP connect, the handshake, each request, each\n"
    "                    notify's write and each wait; decimals allowed; 0 = no limit\n"
    "                    (default 10)\n"
    "    --user JSON     the handshake's user object\n"
    "    -v, --verbose   print protocol events on standard error\n"
    "    -h, --help      print this help and exit\n"
    "    -V, --version   print the version and exit\n"
    "\n"
    "EXIT STATUS\n"
    "    0  done\n"
    "    1  an internal error (out of memory, standard output unwritable)\n"
    "    2  usage error (bad option or command, invalid JSON, unsupported transport;\n"
    "       in a script: the line number is printed)\n"
    "    3  cannot connect (name resolution, refused, TCP connect timed out)\n"
    "    4  handshake refused (the code is printed: 500, 501, or -1 when unreadable)\n"
    "    5  timeout (handshake, request, notify write, wait)\n"
    "    6  kicked by the server (the reason is printed)\n"
    "    7  connection lost (closed by the server, heartbeat timeout, protocol error)\n"
    "    Errors are reported on standard error as \"pomelo-client: ...\".\n"
    "\n"
    "EXAMPLES\n"
    "    pomelo-client --port 3014 request gate.gateHandler.queryEntry '{\"uid\":\"alice\"}'\n"
    "    pomelo-client --port 3010 listen 60\n"
    "    printf 'request connector.entryHandler.enter {\"username\":\"alice\",\"rid\":\"r1\"}\\n"
    "wait onAdd 5\\n' | pomelo-client --port 3010 script\n";

/* A push kept for a later wait. */
typedef struct pushed {
  char *route; /* NUL-terminated */
  size_t route_len;
  char *line; /* the output line, NUL-terminated */
} pushed;

typedef struct app {
  /* options */
  const char *host, *port;
  int ws;
  int cl_ws;           /* the transport `cl` was made for */
  uint32_t timeout_ms; /* 0: none */
  char *user_json;     /* compact, or NULL */
  int verbose;
  /* the connection */
  pomelo_client *cl;
  loop lp;
  int connected_once;
  int closing; /* we disconnect: its on_disconnect is not an error */
  /* what happened */
  int end_code; /* non-zero: the program must end with it (reported already) */
  int connected;
  /* the request being waited for */
  int resp_done, resp_status;
  char *resp_line;
  /* pushes */
  int listening;          /* print pushes as they come */
  const char *wait_route; /* a wait in progress */
  size_t wait_route_len;
  char *wait_line;
  pushed *q; /* FIFO ring of kept pushes */
  size_t q_head, q_len, q_cap;
  /* output */
  pomelo_json_writer *w;
  /* script input */
  char *in;
  size_t in_len, in_cap;
  int in_eof;
  char *line; /* the script line being run */
  long line_no;
} app;

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static void
say(const char *fmt, ...) {
  va_list ap;
  fflush(stdout);
  fprintf(stderr, PROG ": ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void
verbose(const app *a, const char *fmt, ...) {
  va_list ap;
  if (!a->verbose) {
    return;
  }
  fprintf(stderr, PROG ": ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static int
usage_error(const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, PROG ": ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\nTry '" PROG " --help' for more information.\n");
  return EXIT_USAGE;
}

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) {
    fprintf(stderr, PROG ": out of memory\n");
    exit(EXIT_ERROR);
  }
  return p;
}

static char *xstrndup(const char *s, size_t n) {
  char *p = xmalloc(n + 1);
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

/* ---------------------------------------------------------------------------------------------
 * JSON output
 * ------------------------------------------------------------------------------------------- */

/* Writes bytes as a JSON string, each byte that is not part of valid UTF-8 as U+FFFD. */
static int write_text(pomelo_json_writer *w, const char *s, size_t len) {
  char *buf;
  size_t pos = 0, out = 0;
  int rc;
  if (pomelo_utf8_valid((const uint8_t *)s, len, NULL)) {
    return pomelo_json_write_string(w, s, len);
  }
  buf = xmalloc(3 * len + 1);
  while (pos < len) {
    size_t bad;
    if (pomelo_utf8_valid((const uint8_t *)s + pos, len - pos, &bad)) {
      bad = len - pos;
    }
    memcpy(buf + out, s + pos, bad);
    out += bad;
    pos += bad;
    if (pos < len) {
      memcpy(buf + out, "\xEF\xBF\xBD", 3);
      out += 3;
      pos++;
    }
  }
  rc = pomelo_json_write_string(w, buf, out);
  free(buf);
  return rc;
}

/* Writes a body: re-serialised JSON, {} when empty, else a JSON string. */
static int write_body(pomelo_json_writer *w, const uint8_t *body, size_t len) {
  pomelo_json_doc *doc = NULL;
  int rc;
  if (len == 0) {
    rc = pomelo_json_write_begin_object(w);
    return rc ? rc : pomelo_json_write_end_object(w);
  }
  if (pomelo_json_parse(&doc, NULL, (const char *)body, len, NULL, NULL) == 0) {
    rc = pomelo_json_write_value(w, pomelo_json_root(doc));
    pomelo_json_doc_del(doc);
    return rc;
  }
  return write_text(w, (const char *)body, len);
}

/* The writer's text as a new string. */
static char *writer_line(app *a, int rc) {
  const char *s;
  size_t n;
  if (rc) {
    say("cannot format the output: %s", pomelo_strerror(rc));
    exit(EXIT_ERROR);
  }
  s = pomelo_json_writer_data(a->w, &n);
  return xstrndup(s, n);
}

static char *body_line(app *a, const uint8_t *body, size_t len) {
  pomelo_json_writer_reset(a->w);
  return writer_line(a, write_body(a->w, body, len));
}

static char *push_line(app *a, const char *route, size_t route_len, const pomelo_msg *m) {
  int rc;
  pomelo_json_writer_reset(a->w);
  rc = pomelo_json_write_begin_object(a->w);
  rc = rc ? rc : pomelo_json_write_key(a->w, "route", 5);
  rc = rc ? rc : write_text(a->w, route, route_len);
  rc = rc ? rc : pomelo_json_write_key(a->w, "body", 4);
  rc = rc ? rc : write_body(a->w, m->body, m->body_len);
  rc = rc ? rc : pomelo_json_write_end_object(a->w);
  return writer_line(a, rc);
}

static void print_line(const char *line) {
  if (fputs(line, stdout) == EOF || fputc('\n', stdout) == EOF || fflush(stdout) != 0) {
    fprintf(stderr, PROG ": cannot write to standard output: %s\n", strerror(errno));
    exit(EXIT_ERROR);
  }
}

/* Parses JSON text given by the user and returns it compact (a new string), or NULL. */
static char *compact_json(app *a, const char *text, const char *what) {
  pomelo_json_doc *doc = NULL;
  size_t off = 0;
  int rc = pomelo_json_parse(&doc, NULL, text, strlen(text), NULL, &off);
  char *out;
  if (rc) {
    say("%s is not valid JSON (byte %zu: %s)", what, off, pomelo_strerror(rc));
    return NULL;
  }
  pomelo_json_writer_reset(a->w);
  rc = pomelo_json_write_value(a->w, pomelo_json_root(doc));
  pomelo_json_doc_del(doc);
  out = writer_line(a, rc);
  return out;
}

/* ---------------------------------------------------------------------------------------------
 * Kept pushes
 * ------------------------------------------------------------------------------------------- */

static void queue_clear(app *a) {
  while (a->q_len) {
    pushed *p = &a->q[a->q_head];
    free(p->route);
    free(p->line);
    a->q_head = (a->q_head + 1) % a->q_cap;
    a->q_len--;
  }
  a->q_head = 0;
}

static void queue_push(app *a, const char *route, size_t route_len, char *line) {
  pushed *p;
  if (a->q_len == MAX_BUFFERED_PUSHES) {
    p = &a->q[a->q_head];
    verbose(a, "too many pushes kept: dropping the oldest (%s)", p->route);
    free(p->route);
    free(p->line);
    a->q_head = (a->q_head + 1) % a->q_cap;
    a->q_len--;
  }
  if (a->q_len == a->q_cap) {
    size_t ncap = a->q_cap ? 2 * a->q_cap : 16, i;
    pushed *nq = xmalloc(ncap * sizeof(*nq));
    for (i = 0; i < a->q_len; i++) {
      nq[i] = a->q[(a->q_head + i) % a->q_cap];
    }
    free(a->q);
    a->q = nq;
    a->q_cap = ncap;
    a->q_head = 0;
  }
  p = &a->q[(a->q_head + a->q_len) % a->q_cap];
  p->route = xstrndup(route, route_len);
  p->route_len = route_len;
  p->line = line;
  a->q_len++;
}

/* Takes the oldest kept push on `route`; returns its line (the caller frees it) or NULL. */
static char *queue_take(app *a, const char *route, size_t route_len) {
  size_t i;
  for (i = 0; i < a->q_len; i++) {
    size_t k = (a->q_head + i) % a->q_cap, j;
    pushed *p = &a->q[k];
    char *line;
    if (p->route_len != route_len || memcmp(p->route, route, route_len) != 0) {
      continue;
    }
    line = p->line;
    free(p->route);
    /* Close the gap, keeping the order. */
    for (j = i; j + 1 < a->q_len; j++) {
      a->q[(a->q_head + j) % a->q_cap] = a->q[(a->q_head + j + 1) % a->q_cap];
    }
    a->q_len--;
    return line;
  }
  return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Client callbacks
 * ------------------------------------------------------------------------------------------- */

static void on_connected(pomelo_client *cl, const pomelo_json_value *resp, void *ud) {
  app *a = ud;
  (void)cl;
  a->connected = 1;
  if (a->verbose) {
    pomelo_json_writer_reset(a->w);
    if (pomelo_json_write_value(a->w, resp) == 0) {
      verbose(a, "handshake accepted: %s", pomelo_json_writer_data(a->w, NULL));
    }
  }
}

static void on_handshake_error(pomelo_client *cl, int code, void *ud) {
  app *a = ud;
  (void)cl;
  if (!a->end_code) {
    say("handshake refused: code %d", code);
    a->end_code = EXIT_REFUSED;
  }
}

static void on_kick(pomelo_client *cl, const char *reason, size_t len, void *ud) {
  app *a = ud;
  (void)cl;
  if (!a->end_code) {
    if (reason) {
      say("kicked: %.*s", (int)len, reason);
    } else {
      say("kicked (no reason given)");
    }
    a->end_code = EXIT_KICKED;
  }
}

static void on_disconnect(pomelo_client *cl, int reason, uint64_t at, void *ud) {
  app *a = ud;
  (void)cl;
  (void)at;
  verbose(a, "disconnected: %s", pomelo_close_reason_name(reason));
  a->connected = 0;
  if (a->closing || a->end_code) {
    return;
  }
  if (reason == POMELO_CLOSE_HANDSHAKE_TIMEOUT) {
    say("no handshake answer in time");
    a->end_code = EXIT_TIMEOUT;
  } else {
    say("connection lost: %s", pomelo_close_reason_name(reason));
    a->end_code = EXIT_LOST;
  }
}

static void on_push(pomelo_client *cl, const char *route, size_t route_len, const pomelo_msg *m,
                    void *ud) {
  app *a = ud;
  char *line;
  (void)cl;
  verbose(a, "push %.*s (%zu bytes)", (int)route_len, route, m->body_len);
  line = push_line(a, route, route_len, m);
  if (a->listening) {
    print_line(line);
    free(line);
  } else if (a->wait_route && !a->wait_line && route_len == a->wait_route_len &&
             memcmp(route, a->wait_route, route_len) == 0) {
    a->wait_line = line;
  } else {
    queue_push(a, route, route_len, line);
  }
}

static void on_response(pomelo_client *cl, int status, const char *route, size_t route_len,
                        const pomelo_msg *resp, void *data) {
  app *a = data;
  (void)cl;
  a->resp_done = 1;
  a->resp_status = status;
  if (status == 0) {
    verbose(a, "response #%u to %.*s (%zu bytes)", (unsigned)resp->id, (int)route_len, route,
            resp->body_len);
    a->resp_line = body_line(a, resp->body, resp->body_len);
  }
}

/* ---------------------------------------------------------------------------------------------
 * Connection
 * ------------------------------------------------------------------------------------------- */

static int socket_closed(void *arg) {
  return ((loop *)arg)->fd < 0;
}

/* Ends the current connection: flush what is queued (bounded by the timeout), close. The client
 * object goes too, unless `keep`: a script's next `connect` reuses it, so that the dictionary
 * and protos of this handshake stay cached and the next handshake announces their versions, as
 * a real client does on its reconnects. */
static void close_connection_keep(app *a, int keep);
static void close_connection(app *a) {
  close_connection_keep(a, 0);
}
static void close_connection_keep(app *a, int keep) {
  if (!a->cl) {
    return;
  }
  a->closing = 1;
  pomelo_client_disconnect(a->cl);
  if (a->lp.fd >= 0) {
    uint64_t deadline = a->timeout_ms ? loop_now_ms() + a->timeout_ms : UINT64_MAX;
    loop_run(&a->lp, deadline, socket_closed, &a->lp);
  }
  loop_close(&a->lp);
  if (!keep) {
    pomelo_client_del(a->cl);
    a->cl = NULL;
    a->lp.cl = NULL;
  }
  a->closing = 0;
  a->connected = 0;
}

static int is_connected(void *arg) {
  app *a = arg;
  return a->connected || a->end_code;
}

/* The Host header of WebSocket upgrades (the client settings borrow it). */
static char ws_host[300];
static void set_ws_host(const char *host, const char *port) {
  snprintf(ws_host, sizeof ws_host, "%s:%s", host, port);
}

static int make_client(app *a, int ws, const char *host, const char *port, pomelo_client **out) {
  pomelo_client_settings s;
  pomelo_client_callbacks cb;
  int rc;
  pomelo_client_settings_default(&s);
  s.conn.transport = ws ? POMELO_TRANSPORT_WS : POMELO_TRANSPORT_TCP;
  s.conn.user_json = a->user_json;
  s.conn.client_type = "pomelo-client";
  s.conn.handshake_timeout_ms = a->timeout_ms;
  s.conn.idle_timeout_ms = 0;
  s.request_timeout_ms = a->timeout_ms;
  s.reconnect.enabled = 0; /* a lost connection ends the program */
  s.random = loop_random32;
  set_ws_host(host, port);
  s.conn.ws_host = ws_host;
  memset(&cb, 0, sizeof cb);
  cb.on_connected = on_connected;
  cb.on_handshake_error = on_handshake_error;
  cb.on_push = on_push;
  cb.on_kick = on_kick;
  cb.on_disconnect = on_disconnect;
  rc = pomelo_client_new(out, &s, &cb, NULL, a);
  if (rc == POMELO_ERR_UNSUPPORTED && ws) {
    say("WebSocket is not supported yet by this build of libpomelo (use --tcp)");
    return EXIT_USAGE;
  }
  if (rc) {
    say("cannot create the client: %s", pomelo_strerror(rc));
    return rc == POMELO_ERR_INVALID_ARG ? EXIT_USAGE : EXIT_ERROR;
  }
  return 0;
}

/* Connects and handshakes. Returns 0 or an exit code (reported). */
static int open_connection(app *a, const char *host, const char *port, int ws) {
  char err[256];
  pomelo_client *cl;
  int fd, rc, reuse = a->cl && a->cl_ws == ws;
  close_connection_keep(a, reuse);
  queue_clear(a);
  a->connected_once = 1;
  if (reuse) {
    cl = a->cl;
    set_ws_host(host, port);
  } else if ((rc = make_client(a, ws, host, port, &cl)) != 0) {
    return rc;
  }
  a->cl_ws = ws;
  verbose(a, "connecting to %s port %s (%s)", host, port, ws ? "ws" : "tcp");
  fd = loop_tcp_connect(host, port, a->timeout_ms, err, sizeof err);
  if (fd < 0) {
    say("cannot connect to %s port %s: %s", host, port, err);
    pomelo_client_del(cl);
    a->cl = NULL;
    a->lp.cl = NULL;
    return EXIT_CONNECT;
  }
  a->cl = cl;
  a->lp.cl = cl;
  a->lp.fd = fd;
  a->lp.error = 0;
  rc = pomelo_client_connect(cl, loop_now_ms());
  if (rc) {
    say("cannot start the handshake: %s", pomelo_strerror(rc));
    return EXIT_ERROR;
  }
  if (loop_run(&a->lp, UINT64_MAX, is_connected, a) == LOOP_ERROR) {
    say("internal error: poll: %s", strerror(a->lp.error));
    return EXIT_ERROR;
  }
  if (a->end_code) {
    return a->end_code;
  }
  verbose(a, "connected");
  return 0;
}

/* The connection for a command that needs one: the current one, or --host/--port before the
 * first connection. */
static int need_connection(app *a) {
  if (a->cl && a->connected) {
    return 0;
  }
  if (a->end_code) {
    return a->end_code;
  }
  if (!a->connected_once) {
    return open_connection(a, a->host, a->port, a->ws);
  }
  say("line %ld: not connected (use connect)", a->line_no);
  return EXIT_USAGE;
}

static int run_result(app *a, int r) {
  if (r == LOOP_ERROR) {
    say("internal error: poll: %s", strerror(a->lp.error));
    return EXIT_ERROR;
  }
  return a->end_code;
}

/* ---------------------------------------------------------------------------------------------
 * Commands
 * ------------------------------------------------------------------------------------------- */

static int resp_done(void *arg) {
  app *a = arg;
  return a->resp_done || a->end_code;
}

/* The exit status for a request or notify the library refused to send: the caller's input was
 * wrong (a route too long, a body that does not fit the route's proto), or the library failed. */
static int send_error_exit(int rc) {
  int pb = rc <= POMELO_ERR_PB_SCHEMA && rc > POMELO_ERR_PB_SCHEMA - 20;
  return rc == POMELO_ERR_ROUTE_TOO_LONG || rc == POMELO_ERR_JSON_SYNTAX || pb ? EXIT_USAGE
                                                                               : EXIT_ERROR;
}

static int cmd_request(app *a, const char *route, const char *json) {
  uint32_t id = 0;
  int rc = need_connection(a), r;
  if (rc) {
    return rc;
  }
  a->resp_done = 0;
  a->resp_line = NULL;
  rc = pomelo_client_request(a->cl, route, (const uint8_t *)json, strlen(json), 0, on_response, a,
                             loop_now_ms(), &id);
  if (rc) {
    say("cannot send the request: %s", pomelo_strerror(rc));
    return send_error_exit(rc);
  }
  verbose(a, "request #%u to %s", (unsigned)id, route);
  r = loop_run(&a->lp, UINT64_MAX, resp_done, a);
  if ((rc = run_result(a, r)) != 0) {
    return rc;
  }
  if (a->resp_status == POMELO_ERR_TIMEOUT) {
    say("no response to %s in time", route);
    return EXIT_TIMEOUT;
  }
  if (a->resp_status != 0) {
    say("request failed: %s", pomelo_strerror(a->resp_status));
    return a->end_code ? a->end_code : EXIT_LOST;
  }
  print_line(a->resp_line);
  free(a->resp_line);
  a->resp_line = NULL;
  return 0;
}

static int written(void *arg) {
  app *a = arg;
  return pomelo_client_out_len(a->cl) == 0 || a->end_code;
}

static int cmd_notify(app *a, const char *route, const char *json) {
  uint64_t deadline;
  int rc = need_connection(a), r;
  if (rc) {
    return rc;
  }
  rc = pomelo_client_notify(a->cl, route, (const uint8_t *)json, strlen(json));
  if (rc) {
    say("cannot send the notify: %s", pomelo_strerror(rc));
    return send_error_exit(rc);
  }
  verbose(a, "notify to %s", route);
  deadline = a->timeout_ms ? loop_now_ms() + a->timeout_ms : UINT64_MAX;
  r = loop_run(&a->lp, deadline, written, a);
  if ((rc = run_result(a, r)) != 0) {
    return rc;
  }
  if (r == LOOP_DEADLINE) {
    say("the notify could not be written in time");
    return EXIT_TIMEOUT;
  }
  return 0;
}

static int wait_done(void *arg) {
  app *a = arg;
  return a->wait_line != NULL || a->end_code;
}

static int cmd_wait(app *a, const char *route, uint32_t timeout_ms) {
  uint64_t deadline;
  char *line = queue_take(a, route, strlen(route));
  int rc, r;
  if (line) {
    print_line(line);
    free(line);
    return 0;
  }
  if ((rc = need_connection(a)) != 0) {
    return rc;
  }
  a->wait_route = route;
  a->wait_route_len = strlen(route);
  a->wait_line = NULL;
  deadline = timeout_ms ? loop_now_ms() + timeout_ms : UINT64_MAX;
  r = loop_run(&a->lp, deadline, wait_done, a);
  a->wait_route = NULL;
  if (a->wait_line) {
    print_line(a->wait_line);
    free(a->wait_line);
    a->wait_line = NULL;
    return 0;
  }
  if ((rc = run_result(a, r)) != 0) {
    return rc;
  }
  say("no push on %s in time", route);
  return EXIT_TIMEOUT;
}

static int end_only(void *arg) {
  return ((app *)arg)->end_code;
}

/* Keeps the connection running (heartbeats, pushes) until `deadline`. */
static int keep_running(app *a, uint64_t deadline) {
  int r;
  if (!a->cl) {
    uint64_t now = loop_now_ms();
    while (deadline != UINT64_MAX && deadline > now) {
      struct timespec ts;
      ts.tv_sec = (time_t)((deadline - now) / 1000u);
      ts.tv_nsec = (long)((deadline - now) % 1000u) * 1000000L;
      nanosleep(&ts, NULL);
      now = loop_now_ms();
    }
    return 0;
  }
  r = loop_run(&a->lp, deadline, end_only, a);
  return run_result(a, r);
}

static int cmd_listen(app *a, uint32_t ms) {
  int rc = need_connection(a);
  if (rc) {
    return rc;
  }
  a->listening = 1;
  rc = keep_running(a, ms ? loop_now_ms() + ms : UINT64_MAX);
  a->listening = 0;
  return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Arguments and script lines
 * ------------------------------------------------------------------------------------------- */

/* Parses seconds (decimals allowed) into ms. Returns 0 or -1. */
static int parse_seconds(const char *s, uint32_t *ms) {
  char *end;
  double v;
  errno = 0;
  v = strtod(s, &end);
  if (errno || end == s || *end || !(v >= 0.0) || v > 4000000.0) {
    return -1;
  }
  *ms = (uint32_t)ceil(v * 1000.0);
  return 0;
}

static int parse_port(const char *s) {
  char *end;
  long v;
  errno = 0;
  v = strtol(s, &end, 10);
  return !errno && end != s && !*end && s[0] != '-' && s[0] != '+' && v >= 1 && v <= 65535;
}

static char *trim(char *s) {
  char *e;
  while (*s == ' ' || *s == '\t' || *s == '\r') {
    s++;
  }
  e = s + strlen(s);
  while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n')) {
    *--e = '\0';
  }
  return s;
}

/* Splits off the next word of *s (NUL-terminating it); NULL when none is left. */
static char *next_word(char **s) {
  char *w = *s, *e;
  while (*w == ' ' || *w == '\t') {
    w++;
  }
  if (!*w) {
    *s = w;
    return NULL;
  }
  e = w;
  while (*e && *e != ' ' && *e != '\t') {
    e++;
  }
  if (*e) {
    *e++ = '\0';
  }
  *s = e;
  return w;
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static int
script_error(const app *a, const char *fmt, ...) {
  va_list ap;
  fflush(stdout);
  fprintf(stderr, PROG ": line %ld: ", a->line_no);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  return EXIT_USAGE;
}

static int stdin_has_line(const app *a) {
  return a->in_len && memchr(a->in, '\n', a->in_len) != NULL;
}

/* Reads the next line of standard input while the connection keeps running. Returns 1 with a
 * line in *out (valid until the next call), 0 at the end of the input, or -exit code. */
static int read_line(app *a, char **out) {
  char *nl;
  size_t n;
  free(a->line);
  a->line = NULL;
  while (!stdin_has_line(a) && !a->in_eof) {
    ssize_t got;
    if (a->cl && a->lp.fd >= 0) {
      int r;
      a->lp.watch_fd = 0;
      r = loop_run(&a->lp, UINT64_MAX, end_only, a);
      a->lp.watch_fd = -1;
      if (r != LOOP_WATCH) {
        int rc = run_result(a, r);
        return -(rc ? rc : EXIT_ERROR);
      }
    }
    if (a->in_cap - a->in_len < 4096) {
      char *nb;
      a->in_cap = a->in_cap ? 2 * a->in_cap : 8192;
      nb = realloc(a->in, a->in_cap);
      if (!nb) {
        say("out of memory");
        return -EXIT_ERROR;
      }
      a->in = nb;
    }
    got = read(0, a->in + a->in_len, a->in_cap - a->in_len);
    if (got < 0 && errno == EINTR) {
      continue;
    }
    if (got <= 0) {
      a->in_eof = 1;
    } else {
      a->in_len += (size_t)got;
    }
  }
  if (a->in_len == 0) {
    return 0;
  }
  nl = memchr(a->in, '\n', a->in_len);
  n = nl ? (size_t)(nl - a->in) + 1 : a->in_len;
  a->line = xstrndup(a->in, n);
  memmove(a->in, a->in + n, a->in_len - n);
  a->in_len -= n;
  *out = a->line;
  return 1;
}

/* Runs one script line. Returns 0 or an exit code. */
static int script_line(app *a, char *text) {
  char *s = trim(text), *cmd, *arg1, *arg2, *rest;
  uint32_t ms;
  if (!*s || *s == '#') {
    return 0;
  }
  cmd = next_word(&s);
  if (strcmp(cmd, "request") == 0 || strcmp(cmd, "notify") == 0) {
    char *json;
    int rc;
    arg1 = next_word(&s);
    rest = trim(s);
    if (!arg1) {
      return script_error(a, "%s needs a route", cmd);
    }
    json = compact_json(a, *rest ? rest : "{}", "the body");
    if (!json) {
      return script_error(a, "bad JSON body");
    }
    rc = cmd[0] == 'r' ? cmd_request(a, arg1, json) : cmd_notify(a, arg1, json);
    free(json);
    return rc;
  }
  if (strcmp(cmd, "wait") == 0) {
    arg1 = next_word(&s);
    arg2 = next_word(&s);
    ms = a->timeout_ms;
    if (!arg1 || next_word(&s) || (arg2 && parse_seconds(arg2, &ms) != 0)) {
      return script_error(a, "usage: wait ROUTE [SEC]");
    }
    return cmd_wait(a, arg1, ms);
  }
  if (strcmp(cmd, "sleep") == 0) {
    arg1 = next_word(&s);
    if (!arg1 || next_word(&s) || parse_seconds(arg1, &ms) != 0) {
      return script_error(a, "usage: sleep SEC");
    }
    return keep_running(a, loop_now_ms() + ms);
  }
  if (strcmp(cmd, "connect") == 0) {
    int ws = a->ws;
    char *tr;
    arg1 = next_word(&s);
    arg2 = next_word(&s);
    tr = next_word(&s);
    if (!arg1 || !arg2 || next_word(&s)) {
      return script_error(a, "usage: connect HOST PORT [tcp|ws]");
    }
    if (!parse_port(arg2)) {
      return script_error(a, "'%s' is not a port number (1 to 65535)", arg2);
    }
    if (tr && strcmp(tr, "tcp") == 0) {
      ws = 0;
    } else if (tr && strcmp(tr, "ws") == 0) {
      ws = 1;
    } else if (tr) {
      return script_error(a, "unknown transport '%s' (tcp or ws)", tr);
    }
    return open_connection(a, arg1, arg2, ws);
  }
  if (strcmp(cmd, "close") == 0) {
    if (next_word(&s)) {
      return script_error(a, "close takes no argument");
    }
    close_connection(a);
    return 0;
  }
  return script_error(a, "unknown command '%s'", cmd);
}

static int run_script(app *a) {
  for (;;) {
    char *line = NULL;
    int rc = read_line(a, &line);
    if (rc < 0) {
      return -rc;
    }
    if (rc == 0) {
      return 0;
    }
    a->line_no++;
    if ((rc = script_line(a, line)) != 0) {
      return rc;
    }
  }
}

static int match_opt(char **argv, int argc, int *i, const char *name, const char **val) {
  size_t n = strlen(name);
  const char *a = argv[*i];
  if (strncmp(a, name, n) != 0) {
    return 0;
  }
  if (a[n] == '=') {
    *val = a + n + 1;
    return 1;
  }
  if (a[n] != '\0') {
    return 0;
  }
  if (*i + 1 >= argc) {
    return -1;
  }
  *val = argv[++*i];
  return 1;
}

/* Parses the command line and runs the command. Returns the exit code. */
static int run(app *a, int argc, char **argv) {
  int i, rc = 0, m;
  const char *val, *cmd;
  uint32_t ms = 0;

  for (i = 1; i < argc && argv[i][0] == '-'; i++) {
    const char *opt = argv[i];
    if (strcmp(opt, "--") == 0) {
      i++;
      break;
    } else if (strcmp(opt, "-h") == 0 || strcmp(opt, "--help") == 0) {
      fputs(help_text, stdout);
      return EXIT_OK;
    } else if (strcmp(opt, "-V") == 0 || strcmp(opt, "--version") == 0) {
      printf(PROG " (libpomelo) %s\n", pomelo_version());
      return EXIT_OK;
    } else if (strcmp(opt, "-v") == 0 || strcmp(opt, "--verbose") == 0) {
      a->verbose = 1;
    } else if (strcmp(opt, "--tcp") == 0) {
      a->ws = 0;
    } else if (strcmp(opt, "--ws") == 0) {
      a->ws = 1;
    } else if ((m = match_opt(argv, argc, &i, "--host", &val)) != 0) {
      if (m < 0 || !*val) {
        return usage_error("--host needs a host name");
      }
      a->host = val;
    } else if ((m = match_opt(argv, argc, &i, "--port", &val)) != 0) {
      if (m < 0 || !parse_port(val)) {
        return usage_error("--port needs a port number (1 to 65535)");
      }
      a->port = val;
    } else if ((m = match_opt(argv, argc, &i, "--timeout", &val)) != 0) {
      if (m < 0 || parse_seconds(val, &a->timeout_ms) != 0) {
        return usage_error("--timeout needs a number of seconds");
      }
    } else if ((m = match_opt(argv, argc, &i, "--user", &val)) != 0) {
      if (m < 0) {
        return usage_error("--user needs a JSON value");
      }
      free(a->user_json);
      a->user_json = compact_json(a, val, "--user");
      if (!a->user_json) {
        return EXIT_USAGE;
      }
    } else {
      return usage_error("unknown option '%s'", opt);
    }
  }
  if (i >= argc) {
    return usage_error("a command is needed: request, notify, listen or script");
  }
  cmd = argv[i++];

  /* Check the command line completely before connecting. */
  if (strcmp(cmd, "request") == 0 || strcmp(cmd, "notify") == 0) {
    char *json;
    if (i >= argc || i + 2 < argc) {
      return usage_error("usage: %s ROUTE [JSON]", cmd);
    }
    json = compact_json(a, i + 1 < argc ? argv[i + 1] : "{}", "the body");
    if (!json) {
      return EXIT_USAGE;
    }
    rc = make_client(a, a->ws, a->host, a->port, &a->cl); /* is the transport supported? */
    pomelo_client_del(a->cl);
    a->cl = NULL;
    if (rc == 0) {
      rc = cmd[0] == 'r' ? cmd_request(a, argv[i], json) : cmd_notify(a, argv[i], json);
    }
    free(json);
  } else if (strcmp(cmd, "listen") == 0) {
    if (i + 1 < argc || (i < argc && parse_seconds(argv[i], &ms) != 0)) {
      return usage_error("usage: listen [SEC]");
    }
    rc = make_client(a, a->ws, a->host, a->port, &a->cl);
    pomelo_client_del(a->cl);
    a->cl = NULL;
    if (rc == 0) {
      rc = cmd_listen(a, ms);
    }
  } else if (strcmp(cmd, "script") == 0) {
    if (i < argc) {
      return usage_error("script reads its commands from standard input");
    }
    rc = make_client(a, a->ws, a->host, a->port, &a->cl);
    pomelo_client_del(a->cl);
    a->cl = NULL;
    if (rc == 0) {
      rc = run_script(a);
    }
  } else {
    return usage_error("unknown command '%s'", cmd);
  }

  return rc;
}

int main(int argc, char **argv) {
  app a;
  int rc;
  memset(&a, 0, sizeof a);
  a.host = "127.0.0.1";
  a.port = "3010";
  a.timeout_ms = 10000;
  a.lp.fd = -1;
  a.lp.watch_fd = -1;
  signal(SIGPIPE, SIG_IGN);
  if (pomelo_json_writer_new(&a.w, NULL, 0) != 0) {
    fprintf(stderr, PROG ": out of memory\n");
    return EXIT_ERROR;
  }
  rc = run(&a, argc, argv);
  if (rc == 0) {
    close_connection(&a); /* flush, then close */
  } else {
    loop_close(&a.lp);
    pomelo_client_del(a.cl);
  }
  queue_clear(&a);
  free(a.q);
  free(a.in);
  free(a.line);
  free(a.user_json);
  pomelo_json_writer_del(a.w);
  return rc;
}
