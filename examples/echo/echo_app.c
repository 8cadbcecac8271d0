/* The echo server's logic (echo_app.h).
 * SPDX-License-Identifier: MIT
 */
#include "echo_app.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What the server's user_data holds. */
typedef struct echo_app {
  pomelo_json_writer *w; /* builds every response, reused */
  pomelo_dict *dict;
  pomelo_protos *protos;
} echo_app;

/* {"code":200,"route":...,"echo":...}: the body as JSON (`how` 0), as a JSON string when it is
 * not JSON (1), or null when it is not even UTF-8 text (2). */
static int write_echo(pomelo_json_writer *w, const pomelo_msg *m, int how) {
  const char *body = (const char *)m->body;
  int rc;
  pomelo_json_writer_reset(w);
  rc = pomelo_json_write_begin_object(w);
  rc = rc ? rc : pomelo_json_write_key(w, "code", 4);
  rc = rc ? rc : pomelo_json_write_int64(w, 200);
  rc = rc ? rc : pomelo_json_write_key(w, "route", 5);
  rc = rc ? rc : pomelo_json_write_string(w, m->route, m->route_len);
  rc = rc ? rc : pomelo_json_write_key(w, "echo", 4);
  if (!rc) {
    rc = how == 0   ? pomelo_json_write_raw(w, body, m->body_len)
         : how == 1 ? pomelo_json_write_string(w, body, m->body_len)
                    : pomelo_json_write_null(w);
  }
  return rc ? rc : pomelo_json_write_end_object(w);
}

/* The default handler: every route reaches it (this server registers no other). */
static void on_any(pomelo_request *req, void *user_data) {
  pomelo_json_writer *w = ((echo_app *)user_data)->w;
  const pomelo_msg *m = pomelo_request_msg(req);
  const char *body;
  size_t len;
  int rc;
  if (m->type == POMELO_MSG_NOTIFY) {
    /* A notify is never answered: its body goes back as a push. A session that is closing or
     * whose queue is full (the slow-consumer policy) simply misses it. */
    pomelo_session *s = pomelo_request_session(req);
    if (s) {
      (void)pomelo_session_push(s, "onEcho", (const char *)m->body, m->body_len);
    }
    return; /* a notify's handle ends with this call */
  }
  rc = write_echo(w, m, 0);
  if (rc) {
    rc = write_echo(w, m, 1); /* not JSON */
  }
  if (rc) {
    rc = write_echo(w, m, 2); /* not even UTF-8 */
  }
  if (rc) {
    /* Out of memory: an error answer (this app's code 1), so the client is not left waiting. */
    (void)pomelo_request_error(req, 1, NULL, 0);
    return;
  }
  body = pomelo_json_writer_data(w, &len);
  /* Fails only when the client is gone (nothing to do) or for lack of memory (the library then
   * closes the session rather than leave its client waiting). */
  (void)pomelo_request_respond(req, body, len);
}

/* Reads a whole file into a new NUL-terminated buffer; NULL (reported) when it cannot. */
static char *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  size_t cap = 0, n = 0;
  if (!f) {
    fprintf(stderr, "pomelo-echo: %s: %s\n", path, strerror(errno));
    return NULL;
  }
  for (;;) {
    size_t got;
    if (cap - n < 4096) {
      char *nb = realloc(buf, cap ? cap * 2 : 8192);
      if (!nb) {
        break;
      }
      buf = nb;
      cap = cap ? cap * 2 : 8192;
    }
    got = fread(buf + n, 1, cap - n - 1, f);
    n += got;
    if (got == 0) {
      break;
    }
  }
  if (ferror(f) || !buf || !feof(f)) {
    fprintf(stderr, "pomelo-echo: %s: cannot read it\n", path);
    free(buf);
    buf = NULL;
  } else {
    buf[n] = 0;
    *len = n;
  }
  fclose(f);
  return buf;
}

/* The dictionary of --dict: a JSON array of route strings. */
static int load_dict(echo_app *app, const char *path) {
  size_t len, i, n;
  char *text = read_file(path, &len);
  pomelo_json_doc *doc = NULL;
  const pomelo_json_value *root;
  const char **routes = NULL;
  int rc;
  if (!text) {
    return POMELO_ERR_INVALID_ARG;
  }
  rc = pomelo_json_parse(&doc, NULL, text, len, NULL, NULL);
  root = rc ? NULL : pomelo_json_root(doc);
  if (rc == 0 && pomelo_json_typeof(root) != POMELO_JSON_ARRAY) {
    rc = POMELO_ERR_JSON_TYPE;
  }
  n = pomelo_json_len(root);
  if (rc == 0 && n && !(routes = calloc(n, sizeof *routes))) {
    rc = POMELO_ERR_NOMEM;
  }
  for (i = 0; rc == 0 && i < n; i++) {
    routes[i] = pomelo_json_string(pomelo_json_at(root, i), NULL);
    if (!routes[i]) {
      rc = POMELO_ERR_JSON_TYPE;
    }
  }
  rc = rc ? rc : pomelo_dict_new(&app->dict, NULL, routes, n, NULL, 0);
  if (rc) {
    fprintf(stderr, "pomelo-echo: %s: not a JSON array of routes (%s)\n", path,
            pomelo_strerror(rc));
  }
  free(routes);
  pomelo_json_doc_del(doc);
  free(text);
  return rc;
}

/* The protos of --server-protos and --client-protos (either may be absent: {}). */
static int load_protos(echo_app *app, const char *server_path, const char *client_path) {
  size_t sl = 0, cl = 0;
  char *st = server_path ? read_file(server_path, &sl) : NULL;
  char *ct = client_path ? read_file(client_path, &cl) : NULL;
  pomelo_pb_error err;
  int rc = POMELO_ERR_INVALID_ARG;
  memset(&err, 0, sizeof err);
  if ((!server_path || st) && (!client_path || ct)) {
    rc = pomelo_protos_new(&app->protos, NULL, st, sl, ct, cl, NULL, &err);
    if (rc) {
      fprintf(stderr, "pomelo-echo: protos: %s%s%s\n", pomelo_strerror(rc),
              err.path[0] ? " at " : "", err.path);
    }
  }
  free(st);
  free(ct);
  return rc;
}

static void app_del(echo_app *app) {
  if (app) {
    pomelo_json_writer_del(app->w);
    pomelo_dict_del(app->dict);
    pomelo_protos_del(app->protos);
    free(app);
  }
}

int echo_server_new(pomelo_server **out, const echo_options *o, const pomelo_server_callbacks *cb) {
  pomelo_server_settings st;
  echo_app *app = calloc(1, sizeof *app);
  int rc = app ? pomelo_json_writer_new(&app->w, NULL, 0) : POMELO_ERR_NOMEM;
  if (rc == 0 && o->dict) {
    rc = load_dict(app, o->dict);
  }
  if (rc == 0 && (o->server_protos || o->client_protos)) {
    rc = load_protos(app, o->server_protos, o->client_protos);
  }
  if (rc) {
    app_del(app);
    return rc;
  }
  pomelo_server_settings_default(&st); /* type "connector", TCP and WebSocket on one port */
  st.conn.heartbeat_interval_ms = o->heartbeat_ms; /* silent clients go after 2 intervals */
  st.conn.dict = app->dict;
  st.conn.protos = app->protos;
  rc = pomelo_server_new(out, &st, cb, NULL, app);
  if (rc == 0) {
    rc = pomelo_server_on(*out, NULL, on_any, app);
    if (rc) {
      pomelo_server_del(*out);
    }
  }
  if (rc) {
    app_del(app);
  }
  return rc;
}

void echo_server_del(pomelo_server *srv) {
  if (srv) {
    echo_app *app = pomelo_server_user_data(srv);
    pomelo_server_del(srv);
    app_del(app);
  }
}

void echo_log_done(pomelo_session *s) {
  fprintf(stderr, "session %llu: %s\n", (unsigned long long)pomelo_session_id(s),
          pomelo_close_reason_name(pomelo_session_close_reason(s)));
}

int echo_parse_args(int argc, char **argv, const char *prog, int tls, echo_options *o) {
  int i;
  memset(o, 0, sizeof *o);
  o->host = "127.0.0.1";
  o->port = "3010";
  o->heartbeat_ms = 3000;
  for (i = 1; i + 1 < argc; i += 2) {
    const char *v = argv[i + 1];
    if (strcmp(argv[i], "--host") == 0) {
      o->host = v;
    } else if (strcmp(argv[i], "--port") == 0) {
      o->port = v;
    } else if (strcmp(argv[i], "--heartbeat") == 0) {
      char *end;
      unsigned long sec = strtoul(v, &end, 10);
      if (*v == '\0' || *end != '\0' || sec > 86400) {
        break;
      }
      o->heartbeat_ms = (uint32_t)sec * 1000u;
    } else if (strcmp(argv[i], "--dict") == 0) {
      o->dict = v;
    } else if (strcmp(argv[i], "--server-protos") == 0) {
      o->server_protos = v;
    } else if (strcmp(argv[i], "--client-protos") == 0) {
      o->client_protos = v;
    } else if (tls && strcmp(argv[i], "--cert") == 0) {
      o->cert = v;
    } else if (tls && strcmp(argv[i], "--key") == 0) {
      o->key = v;
    } else {
      break;
    }
  }
  if (i != argc || (tls && (!o->cert || !o->key))) {
    fprintf(stderr,
            "usage: %s [--host H] [--port P] [--heartbeat SEC] [--dict FILE]\n"
            "       [--server-protos FILE] [--client-protos FILE]%s\n",
            prog, tls ? " --cert FILE --key FILE" : "");
    return -1;
  }
  return 0;
}
