/* The echo server's logic (echo_app.h).
 * SPDX-License-Identifier: MIT
 */
#include "echo_app.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
  pomelo_json_writer *w = user_data;
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

int echo_server_new(pomelo_server **out, const echo_options *o, const pomelo_server_callbacks *cb) {
  pomelo_server_settings st;
  pomelo_json_writer *w;
  int rc = pomelo_json_writer_new(&w, NULL, 0); /* builds every response, reused */
  if (rc) {
    return rc;
  }
  pomelo_server_settings_default(&st); /* type "connector", TCP and WebSocket on one port */
  st.conn.heartbeat_interval_ms = o->heartbeat_ms; /* silent clients go after 2 intervals */
  rc = pomelo_server_new(out, &st, cb, NULL, w);
  if (rc == 0) {
    rc = pomelo_server_on(*out, NULL, on_any, w);
    if (rc) {
      pomelo_server_del(*out);
    }
  }
  if (rc) {
    pomelo_json_writer_del(w);
  }
  return rc;
}

void echo_server_del(pomelo_server *srv) {
  if (srv) {
    pomelo_json_writer *w = pomelo_server_user_data(srv);
    pomelo_server_del(srv);
    pomelo_json_writer_del(w);
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
    } else if (tls && strcmp(argv[i], "--cert") == 0) {
      o->cert = v;
    } else if (tls && strcmp(argv[i], "--key") == 0) {
      o->key = v;
    } else {
      break;
    }
  }
  if (i != argc || (tls && (!o->cert || !o->key))) {
    fprintf(stderr, "usage: %s [--host H] [--port P] [--heartbeat SEC]%s\n", prog,
            tls ? " --cert FILE --key FILE" : "");
    return -1;
  }
  return 0;
}
