/* The server: sessions, dispatch (every row of spec 8.2), filters, forwarding, channels,
 * encode-once pushes, limits, timers and statistics.
 * SPDX-License-Identifier: MIT
 */
#include <pomelo/server.h>
#include <pomelo/dict.h>
#include <pomelo/protobuf.h>

#include "codec/codec_int.h"
#include "tap.h"
#include "testutil.h"

/* ---------------------------------------------------------------------------------------------
 * Harness: a server whose callbacks record events, and clients made of hand-built packages.
 * ------------------------------------------------------------------------------------------- */

typedef struct events {
  int list_calls, ready, closed, last_reason, forwards;
  uint64_t fwd_sid;
  uint32_t fwd_id;
  char fwd_json[512];
  char fwd_route[64];
  pomelo_request *held; /* a request a handler kept for later */
  int error_custom;     /* on_error writes a custom body */
  int last_error;       /* the err on_error saw */
  int callbacks;        /* every callback run */
} events;

static events ev;

static void on_ready_list(pomelo_server *srv, void *ud) {
  (void)srv;
  (void)ud;
  ev.list_calls++;
  ev.callbacks++;
}
static void on_ready(pomelo_server *srv, pomelo_session *s, void *ud) {
  (void)srv;
  (void)s;
  (void)ud;
  ev.ready++;
  ev.callbacks++;
}
static void on_forward(pomelo_server *srv, pomelo_session *s, const char *json, size_t len,
                       const pomelo_msg *m, void *ud) {
  (void)srv;
  (void)ud;
  ev.forwards++;
  ev.callbacks++;
  ev.fwd_sid = pomelo_session_id(s);
  ev.fwd_id = m->id;
  snprintf(ev.fwd_json, sizeof ev.fwd_json, "%.*s", (int)len, json);
  snprintf(ev.fwd_route, sizeof ev.fwd_route, "%.*s", (int)m->route_len, m->route);
}
static void on_error(pomelo_server *srv, pomelo_request *req, int err, pomelo_json_writer *w,
                     void *ud) {
  (void)srv;
  (void)req;
  (void)ud;
  ev.last_error = err;
  ev.callbacks++;
  if (ev.error_custom) {
    pomelo_json_write_begin_object(w);
    pomelo_json_write_key(w, "error", 5);
    pomelo_json_write_string(w, pomelo_err_name(err), strlen(pomelo_err_name(err)));
    pomelo_json_write_end_object(w);
  }
}

static pomelo_server_callbacks callbacks(int with_forward) {
  pomelo_server_callbacks cb;
  memset(&cb, 0, sizeof cb);
  cb.on_ready_list = on_ready_list;
  cb.on_session_ready = on_ready;
  cb.on_forward = with_forward ? on_forward : NULL;
  cb.on_error = on_error;
  return cb;
}

static pomelo_server *make_server(pomelo_server_settings *custom, const pomelo_allocator *a,
                                  int with_forward) {
  pomelo_server_settings s;
  pomelo_server_callbacks cb = callbacks(with_forward);
  pomelo_server *srv = NULL;
  if (custom) {
    s = *custom;
  } else {
    pomelo_server_settings_default(&s);
    s.conn.heartbeat_interval_ms = 3000;
  }
  memset(&ev, 0, sizeof ev);
  if (pomelo_server_new(&srv, &s, &cb, a, NULL) != 0) {
    return NULL;
  }
  return srv;
}

static uint8_t scratch[1 << 16];

static int feed_pkg(pomelo_session *s, int type, const void *body, size_t len, uint64_t now) {
  size_t n;
  pomelo_pkg_encode(scratch, sizeof scratch, type, body, len, &n);
  return pomelo_session_feed(s, scratch, n, now);
}

static int feed_msg(pomelo_session *s, int type, uint32_t id, const char *route, const char *body,
                    uint64_t now) {
  uint8_t m[4096];
  size_t n;
  pomelo_msg msg;
  memset(&msg, 0, sizeof msg);
  msg.type = (pomelo_msg_type)type;
  msg.id = id;
  msg.route = route;
  msg.route_len = route ? strlen(route) : 0;
  msg.body = (const uint8_t *)body;
  msg.body_len = body ? strlen(body) : 0;
  pomelo_msg_encode(m, sizeof m, &msg, &n);
  return feed_pkg(s, POMELO_PKG_DATA, m, n, now);
}

/* Writes out all of a session's output into `buf` (what fits of `cap` bytes) and returns its
 * length; `frame` (may be NULL) receives the first iovec's base (a push's shared frame). */
static size_t take_output(pomelo_session *s, uint64_t now, uint8_t *buf, size_t cap,
                          const void **frame) {
  struct iovec iov[32];
  size_t total = 0;
  int n, i;
  if (frame) {
    *frame = NULL;
  }
  while ((n = pomelo_session_out_iov(s, iov, 32)) > 0) {
    size_t got = 0;
    if (frame && !*frame) {
      *frame = iov[0].iov_base;
    }
    for (i = 0; i < n; i++) {
      if (total + iov[i].iov_len <= cap) {
        memcpy(buf + total, iov[i].iov_base, iov[i].iov_len);
        total += iov[i].iov_len;
      }
      got += iov[i].iov_len;
    }
    pomelo_session_out_consume(s, got, now);
  }
  return total;
}

/* Drains a session's output into a text: "type:body|..." with DATA shown as
 * "push <route> <body>" / "resp <id> <body>". */
static const char *drain(pomelo_session *s, uint64_t now) {
  static char text[1 << 16];
  static uint8_t buf[1 << 16];
  size_t total = take_output(s, now, buf, sizeof buf, NULL), tl = 0, pos = 0;
  text[0] = 0;
  while (pos < total) {
    pomelo_pkg p;
    size_t used;
    pomelo_msg m;
    if (pomelo_pkg_decode(buf + pos, total - pos, &p, &used) != 0) {
      break;
    }
    pos += used;
    if (p.type == POMELO_PKG_DATA && pomelo_msg_decode(p.body, p.body_len, &m) == 0) {
      if (m.type == POMELO_MSG_PUSH) {
        tl += (size_t)snprintf(text + tl, sizeof text - tl, "%spush %.*s %.*s", tl ? "|" : "",
                               (int)m.route_len, m.route, (int)m.body_len, m.body);
      } else {
        tl += (size_t)snprintf(text + tl, sizeof text - tl, "%sresp %u %.*s", tl ? "|" : "", m.id,
                               (int)m.body_len, m.body);
      }
    } else {
      tl += (size_t)snprintf(text + tl, sizeof text - tl, "%s%d:%.*s", tl ? "|" : "", p.type,
                             (int)p.body_len, p.body);
    }
  }
  return text;
}

/* Drains the ready list into a text "sid:write sid:close(reason) ..." (ev.closed and
 * ev.last_reason count the closes). */
static const char *ready(pomelo_server *srv) {
  static char text[4096];
  size_t tl = 0;
  pomelo_session *s;
  unsigned what;
  text[0] = 0;
  while ((s = pomelo_server_next_ready(srv, &what)) != NULL) {
    if (what == POMELO_READY_CLOSE) {
      ev.closed++;
      ev.last_reason = pomelo_session_close_reason(s);
      tl += (size_t)snprintf(text + tl, sizeof text - tl, "%s%llu:close(%s)", tl ? " " : "",
                             (unsigned long long)pomelo_session_id(s),
                             pomelo_close_reason_name(ev.last_reason));
    } else {
      tl += (size_t)snprintf(text + tl, sizeof text - tl, "%s%llu:%s", tl ? " " : "",
                             (unsigned long long)pomelo_session_id(s),
                             what == POMELO_READY_WRITE ? "write" : "?");
    }
    if (tl >= sizeof text) {
      tl = sizeof text - 1;
    }
  }
  return text;
}

static const char *HS = "{\"sys\":{\"type\":\"js-websocket\",\"version\":\"0.0.1\"}}";

/* Accepts a session and takes it through the handshake; its output is drained. */
static pomelo_session *join(pomelo_server *srv, uint64_t now) {
  pomelo_session *s = NULL;
  if (pomelo_server_accept(srv, now, NULL, &s) != 0) {
    return NULL;
  }
  feed_pkg(s, POMELO_PKG_HANDSHAKE, HS, strlen(HS), now);
  feed_pkg(s, POMELO_PKG_HANDSHAKE_ACK, NULL, 0, now);
  drain(s, now);
  return s;
}

/* ---------------------------------------------------------------------------------------------
 * Handlers used by the tests
 * ------------------------------------------------------------------------------------------- */

static void h_ok(pomelo_request *req, void *ud) {
  (void)ud;
  pomelo_request_respond(req, "{\"code\":200,\"msg\":\"ok\"}", 23);
}
/* The application's own error codes are positive. */
enum { APP_ERR_DENIED = 1, APP_ERR_OTHER = 7 };

static void h_error(pomelo_request *req, void *ud) {
  (void)ud;
  pomelo_request_error(req, APP_ERR_DENIED, NULL, 0);
}
static void h_error_code(pomelo_request *req, void *ud) {
  (void)ud;
  pomelo_request_error(req, APP_ERR_DENIED, "{\"code\":42,\"x\":1}", 17);
}
static void h_error_nocode(pomelo_request *req, void *ud) {
  (void)ud;
  pomelo_request_error(req, APP_ERR_OTHER, "{\"x\":1}", 7);
}
static void h_empty(pomelo_request *req, void *ud) {
  (void)ud;
  pomelo_request_respond(req, NULL, 0);
}
static void h_hold(pomelo_request *req, void *ud) {
  (void)ud;
  ev.held = req;
}
static void h_echo(pomelo_request *req, void *ud) {
  const pomelo_msg *m = pomelo_request_msg(req);
  const pomelo_json_value *v = pomelo_request_json(req);
  char out[512];
  size_t ul = 0;
  pomelo_session *s = pomelo_request_session(req);
  const char *uid = s ? pomelo_session_uid(s, &ul) : NULL;
  (void)ud;
  snprintf(out, sizeof out, "{\"route\":\"%.*s\",\"json\":%s,\"uid\":\"%.*s\"}", (int)m->route_len,
           m->route, v ? "true" : "false", (int)ul, uid ? uid : "");
  pomelo_request_respond(req, out, strlen(out));
}

/* ---------------------------------------------------------------------------------------------
 * Tests
 * ------------------------------------------------------------------------------------------- */

static void test_dispatch_table(void) {
  pomelo_server *srv = make_server(NULL, NULL, 0);
  pomelo_session *s;
  pomelo_server_on(srv, "connector.h.ok", h_ok, NULL);
  pomelo_server_on(srv, "connector.h.error", h_error, NULL);
  pomelo_server_on(srv, "connector.h.code", h_error_code, NULL);
  pomelo_server_on(srv, "connector.h.nocode", h_error_nocode, NULL);
  pomelo_server_on(srv, "connector.h.empty", h_empty, NULL);
  s = join(srv, 0);
  ok(s != NULL && ev.ready == 1, "session through the handshake");

  feed_msg(s, POMELO_MSG_REQUEST, 1, "connector.h.ok", "{}", 1);
  is_str(drain(s, 1), "resp 1 {\"code\":200,\"msg\":\"ok\"}", "next(null, resp): that object");
  feed_msg(s, POMELO_MSG_REQUEST, 2, "connector.h.error", "{}", 1);
  is_str(drain(s, 1), "resp 2 {\"code\":500}", "next(err): {\"code\":500}");
  feed_msg(s, POMELO_MSG_REQUEST, 3, "connector.h.code", "{}", 1);
  is_str(drain(s, 1), "resp 3 {\"code\":42,\"x\":1}", "next(err, {code:42,x:1}): code kept");
  feed_msg(s, POMELO_MSG_REQUEST, 4, "connector.h.nocode", "{}", 1);
  is_str(drain(s, 1), "resp 4 {\"x\":1,\"code\":500}", "next(err, {x:1}): code 500 added last");
  feed_msg(s, POMELO_MSG_REQUEST, 5, "connector.h.empty", "{}", 1);
  is_str(drain(s, 1), "resp 5 {}", "next(): {}");
  feed_msg(s, POMELO_MSG_REQUEST, 6, "connector.h.nosuch", "{}", 1);
  is_str(drain(s, 1), "resp 6 {\"code\":500}", "unknown method of a known type: 500");
  feed_msg(s, POMELO_MSG_REQUEST, 7, "nosuch.h.m", "{}", 1);
  is_str(drain(s, 1), "resp 7 {\"code\":500}", "unknown server type (no forward hook): 500");
  feed_msg(s, POMELO_MSG_REQUEST, 8, "foo", "{}", 1);
  is_str(drain(s, 1), "", "route without a dot: no response");
  feed_msg(s, POMELO_MSG_REQUEST, 9, "connector.h", "{}", 1);
  is_str(drain(s, 1), "resp 9 {\"code\":500}", "two parts: 500");
  feed_msg(s, POMELO_MSG_REQUEST, 10, "connector.h.ok.x", "{}", 1);
  is_str(drain(s, 1), "resp 10 {\"code\":500}", "four parts: 500");
  {
    uint8_t m[16];
    size_t n;
    pomelo_msg msg;
    memset(&msg, 0, sizeof msg);
    msg.type = POMELO_MSG_REQUEST;
    msg.id = 11;
    msg.route_compressed = 1;
    msg.route_code = 2;
    pomelo_msg_encode(m, sizeof m, &msg, &n);
    feed_pkg(s, POMELO_PKG_DATA, m, n, 1);
    is_str(drain(s, 1), "", "compressed route without a dictionary: no response");
    feed_pkg(s, POMELO_PKG_DATA, "\x00\x00\x02h.", 5, 1);
    is_str(drain(s, 1), "", "request id 0: no response");
  }
  feed_msg(s, POMELO_MSG_NOTIFY, 0, "connector.h.ok", "{}", 1);
  is_str(drain(s, 1), "", "a notify whose handler answers: nothing sent");
  feed_msg(s, POMELO_MSG_REQUEST, 12, "connector.h.ok", "not json", 1);
  is_str(drain(s, 1), "resp 12 {\"code\":200,\"msg\":\"ok\"}",
         "invalid JSON body still dispatched (as the real server)");
  feed_msg(s, POMELO_MSG_REQUEST, 13, "connector.h.constructor", "{}", 1);
  is_str(drain(s, 1), "5:{\"reason\":\"attack\"}", "method 'constructor': kicked as an attack");
  ok(pomelo_session_wants_close(s), "closed after the kick");
  is_str(ready(srv), "1:close(kicked)", "on the ready list to close, reason kicked");
  {
    pomelo_server_stats st;
    pomelo_server_get_stats(srv, &st);
    is_int(st.requests, 13, "requests counted (the id-0 one is malformed: dropped before)");
    is_int(st.notifies, 1, "notifies counted");
    is_int(st.responses, 10, "responses counted");
    is_int(st.kicks, 1, "kicks counted");
    ok(st.dropped_messages >= 3, "dropped messages counted (%llu)",
       (unsigned long long)st.dropped_messages);
  }
  pomelo_server_release(srv, s);
  is_int(pomelo_server_session_count(srv), 0, "released");
  is_int(pomelo_server_on(srv, "connector.b", h_ok, NULL), POMELO_ERR_ROUTE, "route of 2 parts");
  is_int(pomelo_server_on(srv, "connector..c", h_ok, NULL), POMELO_ERR_ROUTE, "empty part");
  is_int(pomelo_server_on(srv, "connector.a.b.c", h_ok, NULL), POMELO_ERR_ROUTE, "four parts");
  is_int(pomelo_server_on(srv, "connector.h.ok", NULL, NULL), POMELO_ERR_INVALID_ARG, "no fn");
  pomelo_server_del(srv);
}

static int f_stop(pomelo_request *req, void *ud) {
  (void)req;
  return *(int *)ud;
}
static int after_calls;
static int f_after(pomelo_request *req, int err, const uint8_t *body, size_t len, void *ud) {
  (void)req;
  (void)err;
  (void)body;
  (void)len;
  after_calls++;
  return *(int *)ud;
}

static void test_filters_and_late_answers(void) {
  pomelo_server *srv = make_server(NULL, NULL, 0);
  pomelo_session *s;
  int stop_global = 0, stop_route = 0, after_err = 0;
  pomelo_server_on(srv, "connector.h.ok", h_ok, NULL);
  pomelo_server_on(srv, "connector.h.hold", h_hold, NULL);
  pomelo_server_on(srv, "connector.h.echo", h_echo, NULL);
  is_int(pomelo_server_before(srv, NULL, f_stop, &stop_global), 0, "global before filter");
  is_int(pomelo_server_before(srv, "connector.h.ok", f_stop, &stop_route), 0, "route filter");
  is_int(pomelo_server_after(srv, NULL, f_after, &after_err), 0, "global after filter");
  s = join(srv, 0);

  feed_msg(s, POMELO_MSG_REQUEST, 1, "connector.h.ok", "{}", 1);
  is_str(drain(s, 1), "resp 1 {\"code\":200,\"msg\":\"ok\"}", "filters let it through");
  is_int(after_calls, 1, "after filter ran");
  stop_route = POMELO_ERR_LIMIT;
  ev.error_custom = 1;
  feed_msg(s, POMELO_MSG_REQUEST, 2, "connector.h.ok", "{}", 1);
  is_str(drain(s, 1), "resp 2 {\"error\":\"ERR_LIMIT\",\"code\":500}",
         "route before-filter stops it; on_error builds the body, code added");
  ev.error_custom = 0;
  stop_route = 0;
  stop_global = POMELO_ERR_STATE;
  feed_msg(s, POMELO_MSG_REQUEST, 3, "connector.h.echo", "{}", 1);
  is_str(drain(s, 1), "resp 3 {\"code\":500}", "global before-filter stops any route");
  stop_global = 0;
  after_err = APP_ERR_OTHER;
  feed_msg(s, POMELO_MSG_REQUEST, 4, "connector.h.ok", "{}", 1);
  is_str(drain(s, 1), "resp 4 {\"code\":500}", "after-filter turns the answer into an error");
  after_err = 0;

  feed_msg(s, POMELO_MSG_REQUEST, 5, "connector.h.hold", "{\"k\":1}", 1);
  ok(ev.held != NULL, "handler kept the request");
  is_str(drain(s, 1), "", "nothing sent yet");
  {
    const pomelo_msg *m = pomelo_request_msg(ev.held);
    ok(m->id == 5 && m->body_len == 7 && memcmp(m->body, "{\"k\":1}", 7) == 0,
       "the held request's message is still readable");
    ok(pomelo_request_json(ev.held) != NULL, "body parsed on demand");
    is_int(pomelo_request_sid(ev.held), pomelo_session_id(s), "sid");
    is_int(pomelo_request_respond(ev.held, "{\"late\":true}", 13), 0, "answer later");
    is_str(drain(s, 2), "resp 5 {\"late\":true}", "late answer sent");
  }
  feed_msg(s, POMELO_MSG_REQUEST, 6, "connector.h.hold", "{}", 3);
  pomelo_session_peer_closed(s);
  pomelo_server_release(srv, s);
  ok(pomelo_request_session(ev.held) == NULL, "the session of a held request is gone");
  is_int(pomelo_request_respond(ev.held, "{}", 2), POMELO_ERR_CLOSED,
         "answering after release: POMELO_ERR_CLOSED (handle freed)");
  /* A held request at deletion time is freed by the server. */
  s = join(srv, 4);
  feed_msg(s, POMELO_MSG_REQUEST, 7, "connector.h.hold", "{}", 4);
  pomelo_server_del(srv);
  ok(1, "server deleted with a request still held (freed, no leak under ASan)");
}

static void test_forwarding(void) {
  pomelo_server *front = make_server(NULL, NULL, 1), *back;
  pomelo_server_settings bs;
  pomelo_session *s;
  pomelo_msg m;
  events saved;
  s = join(front, 0);
  pomelo_session_bind(s, "alice", 5);
  pomelo_session_set(s, "rid", 3, "room1", 5);
  feed_msg(s, POMELO_MSG_REQUEST, 9, "chat.chatHandler.send", "{\"content\":\"hi\"}", 1);
  is_int(ev.forwards, 1, "a route of another server type goes to on_forward");
  is_str(ev.fwd_route, "chat.chatHandler.send", "with the message");
  {
    char want[256];
    snprintf(want, sizeof want,
             "{\"id\":%llu,\"frontendId\":\"connector-server-1\",\"uid\":\"alice\",\"settings\":"
             "{\"rid\":\"room1\"}}",
             (unsigned long long)pomelo_session_id(s));
    is_str(ev.fwd_json, want, "and the exported session (the real session.export() shape)");
  }
  is_str(drain(s, 1), "", "no answer until the backend replies");

  /* The backend: a server of type chat runs the handler on the imported session. */
  saved = ev;
  pomelo_server_settings_default(&bs);
  bs.server_id = "chat-server-1";
  bs.server_type = "chat";
  back = make_server(&bs, NULL, 0);
  ev = saved;
  pomelo_server_on(back, "chat.chatHandler.send", h_echo, NULL);
  memset(&m, 0, sizeof m);
  m.type = POMELO_MSG_REQUEST;
  m.id = ev.fwd_id;
  m.route = "chat.chatHandler.send";
  m.route_len = 21;
  m.body = (const uint8_t *)"{\"content\":\"hi\"}";
  m.body_len = 16;
  is_int(pomelo_server_dispatch(back, ev.fwd_json, strlen(ev.fwd_json), &m, NULL, NULL),
         POMELO_ERR_INVALID_ARG, "dispatch needs a reply callback");
  pomelo_server_del(back);
  pomelo_server_del(front);
}

static char backend_reply[512];
static void take_reply(const char *body, size_t len, void *arg) {
  (void)arg;
  snprintf(backend_reply, sizeof backend_reply, "%.*s", (int)len, body);
}

static void test_forward_roundtrip(void) {
  pomelo_server *front = make_server(NULL, NULL, 1), *back;
  pomelo_server_settings bs;
  pomelo_session *s;
  pomelo_msg m;
  events saved;
  char json[512];
  uint64_t sid;
  uint32_t id;
  s = join(front, 0);
  pomelo_session_bind(s, "bob", 3);
  feed_msg(s, POMELO_MSG_REQUEST, 21, "chat.chatHandler.send", "{\"a\":1}", 1);
  snprintf(json, sizeof json, "%s", ev.fwd_json);
  sid = ev.fwd_sid;
  id = ev.fwd_id;
  saved = ev;
  pomelo_server_settings_default(&bs);
  bs.server_id = "chat-server-1";
  bs.server_type = "chat";
  back = make_server(&bs, NULL, 0);
  ev = saved;
  pomelo_server_on(back, "chat.chatHandler.send", h_echo, NULL);
  memset(&m, 0, sizeof m);
  m.type = POMELO_MSG_REQUEST;
  m.id = id;
  m.route = "chat.chatHandler.send";
  m.route_len = 21;
  m.body = (const uint8_t *)"{\"a\":1}";
  m.body_len = 7;
  is_int(pomelo_server_dispatch(back, json, strlen(json), &m, take_reply, NULL), 0,
         "backend dispatch");
  is_str(backend_reply, "{\"route\":\"chat.chatHandler.send\",\"json\":true,\"uid\":\"bob\"}",
         "the handler ran on the imported session (uid bob)");
  is_int(pomelo_server_respond(front, sid, id, NULL, backend_reply, strlen(backend_reply)), 0,
         "the frontend sends the backend's answer");
  is_str(drain(s, 2), "resp 21 {\"route\":\"chat.chatHandler.send\",\"json\":true,\"uid\":\"bob\"}",
         "the client gets it under its request id");
  m.route = "chat.chatHandler.nosuch";
  m.route_len = strlen(m.route);
  backend_reply[0] = 0;
  pomelo_server_dispatch(back, json, strlen(json), &m, take_reply, NULL);
  is_str(backend_reply, "{\"code\":500}", "backend: unknown route answers 500");
  m.type = POMELO_MSG_NOTIFY;
  m.route = "chat.chatHandler.send";
  m.route_len = 21;
  backend_reply[0] = 0;
  pomelo_server_dispatch(back, json, strlen(json), &m, take_reply, NULL);
  is_str(backend_reply, "", "backend: a notify never replies");
  is_int(pomelo_server_dispatch(back, "{\"id\":\"x\"}", 10, &m, take_reply, NULL),
         POMELO_ERR_INVALID_ARG, "bad session JSON refused");
  is_int(pomelo_server_dispatch(back, "{", 1, &m, take_reply, NULL), POMELO_ERR_JSON_SYNTAX,
         "unparsable session JSON refused");
  is_int(pomelo_server_respond(front, 999, 1, NULL, "{}", 2), POMELO_ERR_NOT_FOUND,
         "respond to a session that is gone");
  pomelo_server_del(back);
  pomelo_server_del(front);
}

static void test_sessions(void) {
  pomelo_server_settings st;
  pomelo_server *srv = make_server(NULL, NULL, 0);
  pomelo_session *a = join(srv, 0), *b = join(srv, 0), *c = join(srv, 0), *list[4];
  char buf[256];
  size_t n;
  const char *v;
  ok(pomelo_session_id(a) == 1 && pomelo_session_id(b) == 2 && pomelo_session_id(c) == 3,
     "sids 1, 2, 3");
  ok(pomelo_server_session(srv, 2) == b && pomelo_server_session(srv, 9) == NULL, "lookup by sid");
  is_int(pomelo_session_bind(a, "u1", 2), 0, "bind");
  is_int(pomelo_session_bind(a, "u1", 2), 0, "bind the same uid again");
  is_int(pomelo_session_bind(a, "u2", 2), POMELO_ERR_EXISTS, "bind another uid");
  is_int(pomelo_session_bind(b, "u1", 2), 0, "many sessions per uid by default");
  is_int(pomelo_server_sessions_by_uid(srv, "u1", 2, list, 4), 2, "two sessions of u1");
  is_int(pomelo_server_bound_count(srv), 2, "bound count");
  is_int(pomelo_session_bind(c, "", 0), POMELO_ERR_INVALID_ARG, "empty uid");
  is_int(pomelo_session_unbind(a), 0, "unbind");
  is_int(pomelo_session_unbind(a), POMELO_ERR_STATE, "unbind twice");
  is_int(pomelo_server_sessions_by_uid(srv, "u1", 2, list, 4), 1, "one left");
  ok(list[0] == b, "it is b");
  is_int(pomelo_session_set(a, "k", 1, "v1", 2), 0, "set");
  is_int(pomelo_session_set(a, "k", 1, "v2", 2), 0, "overwrite");
  v = pomelo_session_get(a, "k", 1, &n);
  ok(v && n == 2 && memcmp(v, "v2", 2) == 0, "get");
  is_int(pomelo_session_remove(a, "k", 1), 0, "remove");
  ok(pomelo_session_get(a, "k", 1, &n) == NULL, "gone");
  is_int(pomelo_session_remove(a, "k", 1), POMELO_ERR_NOT_FOUND, "remove twice");
  pomelo_session_set(a, "q\"", 2, "x\ny", 3);
  is_int(pomelo_session_export(a, buf, sizeof buf, &n), 0, "export");
  is_mem(
      buf, n,
      "{\"id\":1,\"frontendId\":\"connector-server-1\",\"uid\":null,\"settings\":{\"q\\\"\":"
      "\"x\\ny\"}}",
      strlen("{\"id\":1,\"frontendId\":\"connector-server-1\",\"uid\":null,\"settings\":{\"q\\\"\":"
             "\"x\\ny\"}}"),
      "export escapes keys and values, uid null when unbound");
  is_int(pomelo_session_export(a, buf, 10, &n), POMELO_ERR_BUFFER_TOO_SMALL, "export measures");
  pomelo_session_bind(c, "u1", 2);
  is_int(pomelo_server_kick_uid(srv, "u1", 2, "bye"), 2, "kick by uid reaches both");
  is_str(drain(b, 1), "5:{\"reason\":\"bye\"}", "KICK with the reason");
  is_str(drain(c, 1), "5:{\"reason\":\"bye\"}", "to each session");
  ok(pomelo_session_wants_close(b) && pomelo_session_wants_close(c), "both closed");
  is_int(pomelo_session_kick(a, NULL), 0, "kick by sid without a reason");
  is_str(drain(a, 1), "", "no KICK package");
  pomelo_server_release(srv, a);
  pomelo_server_release(srv, b);
  pomelo_server_release(srv, c);
  is_int(pomelo_server_session_count(srv) + pomelo_server_bound_count(srv), 0, "all gone");
  pomelo_server_del(srv);

  /* Single-session policies. */
  pomelo_server_settings_default(&st);
  st.uid_policy = POMELO_UID_REJECT;
  srv = make_server(&st, NULL, 0);
  a = join(srv, 0);
  b = join(srv, 0);
  pomelo_session_bind(a, "u", 1);
  is_int(pomelo_session_bind(b, "u", 1), POMELO_ERR_EXISTS, "REJECT: the second bind fails");
  pomelo_server_del(srv);
  st.uid_policy = POMELO_UID_KICK_OLDER;
  srv = make_server(&st, NULL, 0);
  a = join(srv, 0);
  b = join(srv, 0);
  pomelo_session_bind(a, "u", 1);
  is_int(pomelo_session_bind(b, "u", 1), 0, "KICK_OLDER: the second bind succeeds");
  is_str(drain(a, 1), "5:{\"reason\":\"replaced\"}", "the older session is kicked");
  ok(!pomelo_session_wants_close(b), "the new one stays");
  pomelo_server_del(srv);
}

static int count_fn(pomelo_session *s, void *arg) {
  (void)s;
  return ++*(int *)arg >= 2;
}

static void test_channels_and_pushes(void) {
  pomelo_server *srv = make_server(NULL, NULL, 0);
  pomelo_session *a = join(srv, 0), *b = join(srv, 0), *c = join(srv, 0);
  pomelo_channel *ch, *ch2;
  const char *uid;
  size_t ul;
  uint64_t sid;
  int calls = 0;
  const char *uids[2] = {"ua", "nobody"};
  size_t lens[2] = {2, 6};
  is_int(pomelo_channel_new(srv, "room1", 5, &ch), 0, "channel");
  is_int(pomelo_channel_new(srv, "room1", 5, &ch2), POMELO_ERR_EXISTS, "same name twice");
  ok(pomelo_server_channel(srv, "room1", 5) == ch, "get by name");
  pomelo_session_bind(a, "ua", 2);
  pomelo_session_bind(b, "ub", 2);
  is_int(pomelo_channel_add(ch, "ua", 2, pomelo_session_id(a)), 0, "add a");
  is_int(pomelo_channel_add(ch, "ub", 2, pomelo_session_id(b)), 0, "add b");
  is_int(pomelo_channel_add(ch, "ub", 2, pomelo_session_id(b)), POMELO_ERR_EXISTS,
         "adding a member twice is refused (the real server would deliver twice)");
  is_int(pomelo_channel_add(ch, "uc", 2, pomelo_session_id(c)), 0, "add c");
  is_int(pomelo_channel_count(ch), 3, "3 members");
  is_int(pomelo_channel_member(ch, 1, &uid, &ul, &sid), 0, "member 1");
  ok(ul == 2 && memcmp(uid, "ub", 2) == 0 && sid == 2, "member 1 is (ub, 2)");
  is_int(pomelo_channel_push(ch, "onChat", "{\"msg\":\"hi\"}", 12), 3, "push reaches 3");
  is_str(drain(a, 1), "push onChat {\"msg\":\"hi\"}", "a got it");
  is_str(drain(b, 1), "push onChat {\"msg\":\"hi\"}", "b got it");
  is_str(drain(c, 1), "push onChat {\"msg\":\"hi\"}", "c got it");
  is_int(pomelo_channel_leave(ch, "ub", 2, 2), 0, "b leaves");
  is_int(pomelo_channel_leave(ch, "ub", 2, 2), POMELO_ERR_NOT_FOUND, "leave twice");
  pomelo_session_peer_closed(c);
  pomelo_server_release(srv, c);
  is_int(pomelo_channel_count(ch), 1, "a released session leaves its channels");
  is_int(pomelo_channel_push(ch, "onChat", NULL, 0), 1, "push to the one left");
  is_str(drain(a, 1), "push onChat {}", "an empty body is {}");
  is_int(pomelo_server_push_uids(srv, uids, lens, 2, "onPm", "{}", 2), 1,
         "push to uids: unknown uids skipped");
  is_str(drain(a, 1), "push onPm {}", "a got the uid push");
  is_int(pomelo_server_broadcast(srv, 1, "onAll", "{}", 2), 2, "broadcast to bound sessions");
  is_int(pomelo_server_broadcast(srv, 0, "onAll", "{}", 2), 2, "broadcast to all");
  is_int(pomelo_session_push(b, "one", "{}", 2), 0, "push to one session");
  is_str(drain(b, 1), "push onAll {}|push onAll {}|push one {}",
         "b got the broadcasts and its own");
  pomelo_server_foreach(srv, count_fn, &calls);
  is_int(calls, 2, "foreach stops when told");
  {
    size_t nl;
    ok(strcmp(pomelo_channel_name(ch, &nl), "room1") == 0 && nl == 5, "name");
  }
  pomelo_channel_add(ch, "ub", 2, pomelo_session_id(b));
  pomelo_channel_destroy(ch);
  ok(pomelo_server_channel(srv, "room1", 5) == NULL, "destroyed");
  pomelo_session_peer_closed(b);
  pomelo_server_release(srv, b); /* its membership record is gone with the channel */
  pomelo_server_del(srv);
}

/* A push to 10,000 members builds one frame: allocations do not grow with the member count. */
static void test_fanout_allocations(void) {
  test_alloc ta;
  pomelo_server_settings st;
  pomelo_server *srv;
  pomelo_channel *ch;
  long before;
  int i, reached;
  test_alloc_init(&ta, 0);
  pomelo_server_settings_default(&st);
  srv = make_server(&st, &ta.a, 0);
  pomelo_channel_new(srv, "all", 3, &ch);
  for (i = 0; i < 10000; i++) {
    pomelo_session *s = join(srv, 0);
    char uid[16];
    snprintf(uid, sizeof uid, "u%d", i);
    pomelo_channel_add(ch, uid, strlen(uid), pomelo_session_id(s));
  }
  before = ta.calls;
  reached = pomelo_channel_push(ch, "onChat", "{\"msg\":\"hello\"}", 15);
  is_int(reached, 10000, "push reached 10,000 members");
  is_int(ta.calls - before, 1, "one allocation for the whole push (the frame)");
  before = ta.calls;
  reached = pomelo_channel_push(ch, "onChat", "{\"msg\":\"again\"}", 15);
  is_int(ta.calls - before, 1, "a second push: still one (two frames queued per member inline)");
  pomelo_server_del(srv);
  is_int(ta.live, 0, "no leak");
}

static void test_limits(void) {
  pomelo_server_settings st;
  pomelo_server *srv;
  pomelo_session *a, *b, *x;
  pomelo_server_stats stats;
  int i;

  pomelo_server_settings_default(&st);
  st.max_connections = 2;
  srv = make_server(&st, NULL, 0);
  a = join(srv, 0);
  b = join(srv, 0);
  is_int(pomelo_server_accept(srv, 0, NULL, &x), POMELO_ERR_LIMIT, "third connection refused");
  pomelo_server_get_stats(srv, &stats);
  is_int(stats.connections_rejected, 1, "counted");
  is_int(stats.connections, 2, "2 connections");
  pomelo_server_shutdown(srv, "maintenance");
  is_str(drain(a, 1), "5:{\"reason\":\"maintenance\"}", "shutdown kicks with the reason");
  drain(b, 1);
  ok(pomelo_session_wants_close(a) && pomelo_session_wants_close(b), "and closes every session");
  is_int(pomelo_server_accept(srv, 0, NULL, &x), POMELO_ERR_STATE, "no accept after shutdown");
  pomelo_server_del(srv);

  /* Slow consumers. */
  pomelo_server_settings_default(&st);
  st.max_output = 100;
  srv = make_server(&st, NULL, 0);
  a = join(srv, 0);
  for (i = 0; i < 10; i++) {
    pomelo_session_push(a, "r", "{\"pad\":\"0123456789\"}", 20);
  }
  pomelo_server_get_stats(srv, &stats);
  ok(stats.pushes == 3 && stats.push_drops == 7, "DROP: 3 pushes fit in 100 bytes, 7 dropped");
  ok(!pomelo_session_wants_close(a), "still connected");
  drain(a, 1);
  is_int(pomelo_session_push(a, "r", "{}", 2), 0, "pushes flow again once drained");
  pomelo_server_del(srv);
  st.slow_policy = POMELO_SLOW_DISCONNECT;
  srv = make_server(&st, NULL, 0);
  a = join(srv, 0);
  for (i = 0; i < 10; i++) {
    pomelo_session_push(a, "r", "{\"pad\":\"0123456789\"}", 20);
  }
  ok(pomelo_session_wants_close(a), "DISCONNECT: the slow session is closed");
  is_str(ready(srv), "1:close(slow_consumer)", "on the ready list, reason slow_consumer");
  pomelo_server_get_stats(srv, &stats);
  is_int(stats.slow_disconnects, 1, "counted");
  pomelo_server_del(srv);

  /* A slow consumer closed in the middle of a channel push: no callback runs inside the push;
   * the session is on the ready list once it returns, and its handler may then destroy the
   * channel. */
  srv = make_server(&st, NULL, 0);
  {
    pomelo_channel *room;
    pomelo_session *m[3];
    int reached, calls;
    pomelo_channel_new(srv, "room", 4, &room);
    for (i = 0; i < 3; i++) {
      char uid[4] = {'u', (char)('0' + i), 0, 0};
      m[i] = join(srv, 0);
      pomelo_channel_add(room, uid, 2, pomelo_session_id(m[i]));
    }
    ready(srv);
    for (i = 0; i < 3; i++) {
      pomelo_session_push(m[0], "r", "{\"pad\":\"0123456789\"}", 20); /* 81 of 100 bytes */
    }
    drain(m[1], 1);
    ready(srv);
    calls = ev.callbacks;
    reached = pomelo_channel_push(room, "r", "{\"pad\":\"0123456789\"}", 20);
    is_int(reached, 2, "the push reached the two others");
    is_int(ev.callbacks - calls, 1, "only on_ready_list ran during the push");
    is_str(ready(srv), "1:close(slow_consumer) 2:write 3:write",
           "the slow one to close, the others to write, in order");
    pomelo_channel_destroy(room);
    ok(pomelo_server_channel(srv, "room", 4) == NULL, "the loop may destroy the channel then");
  }
  pomelo_server_del(srv);

  /* Rate limit: 2 per second, burst 2. */
  pomelo_server_settings_default(&st);
  st.rate_limit = 2;
  srv = make_server(&st, NULL, 0);
  pomelo_server_on(srv, "connector.h.ok", h_ok, NULL);
  a = join(srv, 0);
  for (i = 1; i <= 3; i++) {
    feed_msg(a, POMELO_MSG_REQUEST, (uint32_t)i, "connector.h.ok", "{}", 10);
  }
  is_str(drain(a, 10), "resp 1 {\"code\":200,\"msg\":\"ok\"}|resp 2 {\"code\":200,\"msg\":\"ok\"}",
         "two pass, the third is dropped");
  feed_msg(a, POMELO_MSG_REQUEST, 4, "connector.h.ok", "{}", 510);
  is_str(drain(a, 510), "resp 4 {\"code\":200,\"msg\":\"ok\"}", "a token refills in 500 ms");
  pomelo_server_get_stats(srv, &stats);
  is_int(stats.rate_limited, 1, "counted");
  pomelo_server_del(srv);
  st.rate_policy = POMELO_RATE_KICK;
  srv = make_server(&st, NULL, 0);
  a = join(srv, 0);
  for (i = 1; i <= 3; i++) {
    feed_msg(a, POMELO_MSG_NOTIFY, 0, "connector.h.ok", "{}", 10);
  }
  is_str(drain(a, 10), "5:{\"reason\":\"rate limit\"}", "KICK policy");
  pomelo_server_del(srv);
}

static void test_timers(void) {
  pomelo_server *srv = make_server(NULL, NULL, 0);
  pomelo_session *a, *b, *c;
  pomelo_server_stats stats;
  a = join(srv, 0);                          /* heartbeat deadline 6000 */
  b = join(srv, 1000);                       /* 7000 */
  pomelo_server_accept(srv, 2000, NULL, &c); /* handshake deadline 12000 */
  is_int(pomelo_server_expiry(srv), 6000, "next deadline over all sessions");
  feed_pkg(a, POMELO_PKG_HEARTBEAT, NULL, 0, 2500);
  drain(a, 2500);
  is_int(pomelo_server_expiry(srv), 7000, "a's heartbeat moved it; b is next");
  ready(srv);
  pomelo_server_handle_expiry(srv, 7000);
  ok(pomelo_session_wants_close(b) && !pomelo_session_wants_close(a), "b timed out, a did not");
  is_str(ready(srv), "2:close(heartbeat_timeout)", "only b is on the ready list");
  is_int(pomelo_server_expiry(srv), 8500, "then a at 2500 + 6000");
  pomelo_server_handle_expiry(srv, 20000);
  ok(pomelo_session_wants_close(a) && pomelo_session_wants_close(c), "all timed out by 20 s");
  pomelo_server_get_stats(srv, &stats);
  is_int(stats.timeouts, 3, "three timeouts");
  is_int(stats.handshakes_failed, 1, "the handshake timeout counts as a failed handshake");
  is_int(pomelo_server_expiry(srv), UINT64_MAX, "no timers left");
  pomelo_server_release(srv, a);
  pomelo_server_release(srv, b);
  pomelo_server_release(srv, c);
  pomelo_server_del(srv);
}

static void test_batching(void) {
  pomelo_server_settings st;
  pomelo_server *srv;
  pomelo_session *a;
  pomelo_server_settings_default(&st);
  st.conn.heartbeat_interval_ms = 0;
  st.flush_interval_ms = 20;
  srv = make_server(&st, NULL, 0);
  a = join(srv, 100);
  ready(srv);
  pomelo_session_push(a, "r", "{}", 2);
  pomelo_session_push(a, "r", "{}", 2);
  is_int(pomelo_server_ready_count(srv), 0, "output held while batching");
  is_int(pomelo_server_expiry(srv), 120, "flush due 20 ms later");
  pomelo_server_handle_expiry(srv, 119);
  is_str(ready(srv), "", "not before");
  pomelo_server_handle_expiry(srv, 120);
  is_str(ready(srv), "1:write", "one ready entry for both pushes");
  is_str(drain(a, 120), "push r {}|push r {}", "both queued");
  pomelo_server_del(srv);
}

static void test_stats_bytes(void) {
  pomelo_server *srv = make_server(NULL, NULL, 0);
  pomelo_session *a;
  pomelo_server_stats st;
  pomelo_server_on(srv, "connector.h.ok", h_ok, NULL);
  a = join(srv, 0);
  feed_msg(a, POMELO_MSG_REQUEST, 1, "connector.h.ok", "{}", 1);
  drain(a, 1);
  pomelo_server_get_stats(srv, &st);
  is_int(st.handshakes_ok, 1, "handshakes_ok");
  is_int(st.packages_in, 3, "packages in: handshake, ack, request");
  is_int(st.packages_out, 3, "packages out: handshake, heartbeat, response");
  ok(st.bytes_in == 4 + strlen(HS) + 4 + 4 + 1 + 1 + 1 + 14 + 2, "bytes in (%llu)",
     (unsigned long long)st.bytes_in);
  ok(st.bytes_out > 40, "bytes out counted (%llu)", (unsigned long long)st.bytes_out);
  is_int(st.connections_total, 1, "connections_total");
  pomelo_server_del(srv);
}

/* Every notify's handle is freed when its handler returns, answered or not: 1,000 notifies
 * leave nothing behind (before, each lived until pomelo_server_del). */
static int notify_seen;
static pomelo_request *notify_last;
static void h_notify_ignore(pomelo_request *req, void *ud) {
  (void)ud;
  notify_seen++;
  notify_last = req;
}
static void h_notify_answer(pomelo_request *req, void *ud) {
  (void)ud;
  notify_seen++;
  if (pomelo_request_respond(req, "{\"x\":1}", 7) != 0 ||
      pomelo_request_error(req, APP_ERR_DENIED, NULL, 0) != 0) {
    notify_seen = -1000000; /* answers to a notify do nothing and succeed */
  }
  pomelo_request_drop(req); /* also nothing: the handle is still valid here */
  if (pomelo_request_msg(req)->type != POMELO_MSG_NOTIFY) {
    notify_seen = -1000000;
  }
}

static void test_notify_lifetime(void) {
  test_alloc ta;
  pomelo_server *srv;
  pomelo_session *s;
  long live;
  int i, stop = 0;
  test_alloc_init(&ta, 0);
  srv = make_server(NULL, &ta.a, 0);
  pomelo_server_on(srv, "connector.h.ignore", h_notify_ignore, NULL);
  pomelo_server_on(srv, "connector.h.answer", h_notify_answer, NULL);
  pomelo_server_before(srv, "connector.h.answer", f_stop, &stop);
  s = join(srv, 0);
  feed_msg(s, POMELO_MSG_NOTIFY, 0, "connector.h.ignore", "{}", 1); /* warm the tables */
  ready(srv);
  live = ta.live;
  notify_seen = 0;
  for (i = 0; i < 1000; i++) {
    feed_msg(s, POMELO_MSG_NOTIFY, 0, "connector.h.ignore", "{\"n\":1}", 1);
  }
  is_int(notify_seen, 1000, "1,000 notifies reached a handler that does not answer");
  is_int(ta.live - live, 0, "and left no allocation behind (each handle freed on return)");
  notify_seen = 0;
  for (i = 0; i < 10; i++) {
    feed_msg(s, POMELO_MSG_NOTIFY, 0, "connector.h.answer", "{}", 1);
  }
  is_int(notify_seen, 10, "a handler that answers, errors and drops a notify: all no-ops");
  is_str(drain(s, 1), "", "nothing sent for a notify");
  is_int(ta.live - live, 0, "still nothing left behind");
  stop = APP_ERR_DENIED;
  feed_msg(s, POMELO_MSG_NOTIFY, 0, "connector.h.answer", "{}", 1);
  is_int(notify_seen, 10, "a before-filter stops a notify");
  is_int(ta.live - live, 0, "and its handle is freed too");
  (void)notify_last;
  pomelo_server_del(srv);
  is_int(ta.live, 0, "no leak");
}

/* Routes of another server type never reach this server's handlers, so registering one is an
 * error, not a silent {"code":500} for every request. The default handler takes what no
 * handler takes. */
static void h_default(pomelo_request *req, void *ud) {
  const pomelo_msg *m = pomelo_request_msg(req);
  char out[300];
  (void)ud;
  snprintf(out, sizeof out, "{\"default\":\"%.*s\"}", (int)m->route_len, m->route);
  pomelo_request_respond(req, out, strlen(out));
}

static void test_routes_reachable(void) {
  pomelo_server *srv = make_server(NULL, NULL, 0);
  pomelo_session *s;
  char longroute[300];
  is_int(pomelo_server_on(srv, "area.playerHandler.move", h_ok, NULL), POMELO_ERR_ROUTE_TYPE,
         "a route of another server type (the default type is connector) is refused");
  is_int(pomelo_server_before(srv, "area.playerHandler.move", f_stop, &(int){0}),
         POMELO_ERR_ROUTE_TYPE, "so is a filter on one");
  is_int(pomelo_server_after(srv, "connector.x", f_after, &(int){0}), POMELO_ERR_ROUTE,
         "a filter on a malformed route");
  memcpy(longroute, "connector.h.", 12);
  memset(longroute + 12, 'm', 250);
  longroute[262] = 0;
  is_int(pomelo_server_on(srv, longroute, h_ok, NULL), POMELO_ERR_ROUTE,
         "a route over 255 bytes can never arrive");
  is_int(pomelo_server_on(srv, "connector.playerHandler.move", h_ok, NULL), 0,
         "this server's type is fine");
  s = join(srv, 0);
  feed_msg(s, POMELO_MSG_REQUEST, 1, "area.playerHandler.move", "{}", 1);
  is_str(drain(s, 1), "resp 1 {\"code\":500}", "another type, no forward hook: 500");
  is_int(ev.last_error, POMELO_ERR_ROUTE_TYPE, "on_error was told why: ROUTE_TYPE");
  feed_msg(s, POMELO_MSG_REQUEST, 2, "connector.playerHandler.nope", "{}", 1);
  is_str(drain(s, 1), "resp 2 {\"code\":500}", "no such handler: 500");
  is_int(ev.last_error, POMELO_ERR_NO_HANDLER, "on_error: NO_HANDLER");
  feed_msg(s, POMELO_MSG_REQUEST, 3, "connector.playerHandler", "{}", 1);
  is_str(drain(s, 1), "resp 3 {\"code\":500}", "two parts: 500");
  is_int(ev.last_error, POMELO_ERR_ROUTE, "on_error: ROUTE");

  is_int(pomelo_server_on(srv, NULL, h_default, NULL), 0, "the default handler");
  feed_msg(s, POMELO_MSG_REQUEST, 4, "area.playerHandler.move", "{}", 1);
  is_str(drain(s, 1), "resp 4 {\"default\":\"area.playerHandler.move\"}",
         "it takes another type's route when nothing forwards it");
  feed_msg(s, POMELO_MSG_REQUEST, 5, "connector.playerHandler.nope", "{}", 1);
  is_str(drain(s, 1), "resp 5 {\"default\":\"connector.playerHandler.nope\"}",
         "an unknown method of this type");
  feed_msg(s, POMELO_MSG_REQUEST, 6, "room.chat", "{}", 1);
  is_str(drain(s, 1), "resp 6 {\"default\":\"room.chat\"}", "a route of two parts");
  feed_msg(s, POMELO_MSG_REQUEST, 7, "connector.playerHandler.move", "{}", 1);
  is_str(drain(s, 1), "resp 7 {\"code\":200,\"msg\":\"ok\"}", "not a route that has a handler");
  feed_msg(s, POMELO_MSG_REQUEST, 8, "nodot", "{}", 1);
  is_str(drain(s, 1), "", "nor a route without a dot (dropped, as the real server)");
  feed_msg(s, POMELO_MSG_REQUEST, 9, "connector.h.constructor", "{}", 1);
  is_str(drain(s, 1), "5:{\"reason\":\"attack\"}", "nor the constructor attack");
  pomelo_server_del(srv);

  srv = make_server(NULL, NULL, 1);
  pomelo_server_on(srv, NULL, h_default, NULL);
  s = join(srv, 0);
  feed_msg(s, POMELO_MSG_REQUEST, 1, "chat.chatHandler.send", "{}", 1);
  ok(ev.forwards == 1 && strcmp(drain(s, 1), "") == 0,
     "with on_forward, other types are forwarded, not given to the default handler");
  pomelo_server_del(srv);
}

/* The ready list: only the sessions that need the loop, and no callback inside
 * peer_closed or release. */
static int walk_count(pomelo_session *s, void *arg) {
  (void)s;
  ++*(size_t *)arg;
  return 0;
}

static void test_ready_list(void) {
  pomelo_server *srv = make_server(NULL, NULL, 0);
  pomelo_session **all, *s, *a, *b;
  pomelo_channel *ch;
  unsigned what;
  size_t i, n = 100000, walked = 0;
  int calls;
  all = malloc(n * sizeof *all);
  pomelo_channel_new(srv, "few", 3, &ch);
  for (i = 0; i < n; i++) {
    all[i] = join(srv, i < 3 ? 1000 : 0); /* 3 sessions join later: their deadline is later */
  }
  is_int(pomelo_server_ready_count(srv), n, "every handshake answer made a session ready");
  is_str(ready(srv), "", "all of it already written: the drain skips them");
  is_int(pomelo_server_ready_count(srv), 0, "the list is empty");
  is_int(pomelo_session_push(all[500], "r", "{}", 2), 0, "a push to one of 100,000 sessions");
  is_int(pomelo_server_ready_count(srv), 1, "one session on the ready list");
  s = pomelo_server_next_ready(srv, &what);
  ok(s == all[500] && what == POMELO_READY_WRITE, "it is that session, to write");
  ok(pomelo_server_next_ready(srv, &what) == NULL && what == 0, "and nothing else");
  drain(all[500], 1);
  pomelo_channel_add(ch, "a", 1, pomelo_session_id(all[7]));
  pomelo_channel_add(ch, "b", 1, pomelo_session_id(all[99999]));
  pomelo_channel_push(ch, "r", "{}", 2);
  pomelo_channel_push(ch, "r", "{}", 2);
  ok(pomelo_server_ready_count(srv) == 2, "a channel push of 2 members: 2 ready, once each");
  ready(srv);
  drain(all[7], 1);
  drain(all[99999], 1);

  /* Timers: every session's heartbeat deadline is at 6000 except the 3 that joined at 1000. */
  pomelo_server_handle_expiry(srv, 5999);
  is_int(pomelo_server_ready_count(srv), 0, "nothing due, nothing ready");
  for (i = 3; i < n; i++) {
    feed_pkg(all[i], POMELO_PKG_HEARTBEAT, NULL, 0, 5000); /* all but 3 stay alive */
  }
  ready(srv);
  for (i = 3; i < n; i++) {
    drain(all[i], 5000);
  }
  pomelo_server_handle_expiry(srv, 7000);
  is_int(pomelo_server_ready_count(srv), 3, "a timer pass puts 3 sessions on the list");
  {
    const char *t = ready(srv);
    ok(strlen(t) == 3 * strlen("1:close(heartbeat_timeout)") + 2 &&
           strstr(t, "1:close(heartbeat_timeout)") && strstr(t, "2:close(heartbeat_timeout)") &&
           strstr(t, "3:close(heartbeat_timeout)"),
       "exactly the 3 that timed out (%s)", t);
  }

  /* Closing runs no callback, and release leaves the ready list. */
  a = all[10];
  b = all[11];
  calls = ev.callbacks;
  pomelo_session_peer_closed(a);
  pomelo_session_peer_closed(b);
  is_int(ev.callbacks - calls, 1, "peer_closed runs no callback (only on_ready_list)");
  is_int(pomelo_session_close_reason(a), POMELO_CLOSE_PEER, "reason peer");
  pomelo_server_release(srv, a); /* released while on the ready list */
  is_int(ev.callbacks - calls, 1, "release runs no callback either");
  is_str(ready(srv), "12:close(peer)", "a released session left the ready list");
  pomelo_server_release(srv, b);
  is_int(pomelo_session_kick(all[12], "bye"), 0, "kick");
  s = pomelo_server_next_ready(srv, &what);
  ok(s == all[12] && what == POMELO_READY_WRITE, "a kicked session: its KICK to write first");
  drain(s, 7001);
  s = pomelo_server_next_ready(srv, &what);
  ok(s == all[12] && what == POMELO_READY_CLOSE, "then, written, it comes back to close");
  pomelo_server_release(srv, s);
  pomelo_server_foreach(srv, walk_count, &walked);
  is_int(walked, n - 3, "the others are still there");
  pomelo_server_del(srv);
  free(all);
}

/* Error codes: the application's are positive and reach on_error; 0 is not an error. */
static void h_error_zero(pomelo_request *req, void *ud) {
  (void)ud;
  if (pomelo_request_error(req, 0, NULL, 0) == POMELO_ERR_INVALID_ARG) {
    pomelo_request_respond(req, "{\"zero\":\"refused\"}", 18); /* the handle is still valid */
  }
}

static void test_error_codes(void) {
  pomelo_server *srv = make_server(NULL, NULL, 0);
  pomelo_session *s;
  pomelo_server_on(srv, "connector.h.error", h_error, NULL);
  pomelo_server_on(srv, "connector.h.zero", h_error_zero, NULL);
  s = join(srv, 0);
  ev.error_custom = 1;
  feed_msg(s, POMELO_MSG_REQUEST, 1, "connector.h.error", "{}", 1);
  is_int(ev.last_error, APP_ERR_DENIED, "on_error gets the application's own code");
  is_str(drain(s, 1), "resp 1 {\"error\":\"APP\",\"code\":500}", "err_name says APP");
  ok(pomelo_err_is_app(ev.last_error) && !pomelo_err_is_fatal(ev.last_error),
     "an application code is not a library or fatal code");
  ev.error_custom = 0;
  feed_msg(s, POMELO_MSG_REQUEST, 2, "connector.h.zero", "{}", 1);
  is_str(drain(s, 1), "resp 2 {\"zero\":\"refused\"}",
         "pomelo_request_error(req, 0): INVALID_ARG, the handle stays valid");
  pomelo_server_del(srv);
}

/* A body over max_body: the client is told with a KICK, the others are unaffected. */
static void test_too_large(void) {
  pomelo_server_settings st;
  pomelo_server *srv;
  pomelo_session *a, *b;
  pomelo_server_stats stats;
  char big[200];
  pomelo_server_settings_default(&st);
  st.conn.heartbeat_interval_ms = 3000;
  st.conn.max_body = 100;
  srv = make_server(&st, NULL, 0);
  pomelo_server_on(srv, "connector.h.ok", h_ok, NULL);
  a = join(srv, 0);
  b = join(srv, 0);
  ready(srv);
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = 0;
  is_int(feed_msg(a, POMELO_MSG_REQUEST, 1, "connector.h.ok", big, 1), POMELO_ERR_PKG_TOO_LARGE,
         "a 200-byte request over a 100-byte limit");
  is_str(drain(a, 1), "5:{\"reason\":\"message too large\"}", "KICK message too large");
  is_str(ready(srv), "1:close(too_large)", "then closed, reason too_large");
  feed_msg(b, POMELO_MSG_REQUEST, 2, "connector.h.ok", "{}", 1);
  is_str(drain(b, 1), "resp 2 {\"code\":200,\"msg\":\"ok\"}", "the other session goes on");
  pomelo_server_get_stats(srv, &stats);
  ok(stats.too_large == 1 && stats.kicks == 0, "counted as too_large, not as a kick");
  pomelo_server_del(srv);
}

static void test_nomem(void) {
  long n;
  int clean = 1, saw = 0;
  for (n = 1; n < 400; n++) {
    test_alloc ta;
    pomelo_server *srv;
    pomelo_session *a = NULL, *b = NULL;
    pomelo_channel *ch = NULL;
    test_alloc_init(&ta, n);
    srv = make_server(NULL, &ta.a, 1);
    if (srv) {
      pomelo_server_on(srv, "connector.h.ok", h_ok, NULL);
      pomelo_server_on(srv, "connector.h.hold", h_hold, NULL);
      pomelo_server_before(srv, NULL, f_stop, &(int){0});
      a = join(srv, 0);
      b = join(srv, 0);
      if (a && b) {
        int rc;
        pomelo_session_bind(a, "ua", 2);
        pomelo_session_set(a, "k", 1, "v", 1);
        feed_msg(a, POMELO_MSG_REQUEST, 1, "connector.h.ok", "{}", 1);
        rc = feed_msg(a, POMELO_MSG_REQUEST, 2, "chat.h.m", "{}", 1);
        if (rc == POMELO_ERR_NOMEM) {
          /* Only this session is closed: its client is not left waiting, the other one and
           * the server go on. */
          if (!pomelo_session_wants_close(a) ||
              pomelo_session_close_reason(a) != POMELO_CLOSE_ERROR ||
              pomelo_session_state(b) != POMELO_CONN_WORKING) {
            clean = 0;
            diag("allocation %ld failing: the failed feed did not close just its session", n);
          }
        } else if (rc != 0) {
          clean = 0;
          diag("allocation %ld failing: feed returned %s", n, pomelo_err_name(rc));
        }
        feed_msg(b, POMELO_MSG_REQUEST, 3, "connector.h.hold", "{}", 1);
        if (pomelo_channel_new(srv, "c", 1, &ch) == 0) {
          pomelo_channel_add(ch, "ua", 2, pomelo_session_id(a));
          pomelo_channel_add(ch, "ub", 2, pomelo_session_id(b));
          pomelo_channel_push(ch, "r", "{}", 2);
        }
        drain(a, 2);
        drain(b, 2);
        pomelo_server_release(srv, a);
      }
      pomelo_server_del(srv);
    }
    saw |= ta.failed > 0;
    if (ta.live) {
      clean = 0;
      diag("leak with allocation %ld failing (%ld blocks)", n, ta.live);
    }
    if (!ta.failed) {
      break;
    }
  }
  ok(saw && clean,
     "every failing allocation over a server scenario: no crash, no leak, a failure closes "
     "only its session (%ld)",
     n);
}

/* ---------------------------------------------------------------------------------------------
 * The wire: dictionary, protobuf, compression, text (spec 3, 7, 12.19)
 * ------------------------------------------------------------------------------------------- */

/* Drains a session's DATA output as "push #code|route hex" / "resp id hex" (the flag's gzip bit
 * shown as a trailing " gz"), '|' between messages; `frame` receives the first iovec's base (the
 * shared frame of a push). */
static const char *drain_hex(pomelo_session *s, uint64_t now, const void **frame) {
  static char text[1 << 14];
  static uint8_t buf[1 << 14];
  size_t total = take_output(s, now, buf, sizeof buf, frame), tl = 0, pos = 0, i;
  text[0] = 0;
  while (pos < total && tl < sizeof text - 64) {
    pomelo_pkg p;
    size_t used;
    pomelo_msg m;
    if (pomelo_pkg_decode(buf + pos, total - pos, &p, &used) != 0) {
      break;
    }
    pos += used;
    if (p.type != POMELO_PKG_DATA || pomelo_msg_decode(p.body, p.body_len, &m) != 0) {
      continue;
    }
    if (m.type == POMELO_MSG_PUSH && m.route_compressed) {
      tl +=
          (size_t)snprintf(text + tl, sizeof text - tl, "%spush #%u ", tl ? "|" : "", m.route_code);
    } else if (m.type == POMELO_MSG_PUSH) {
      tl += (size_t)snprintf(text + tl, sizeof text - tl, "%spush %.*s ", tl ? "|" : "",
                             (int)m.route_len, m.route);
    } else {
      tl += (size_t)snprintf(text + tl, sizeof text - tl, "%sresp %u ", tl ? "|" : "", m.id);
    }
    for (i = 0; i < m.body_len && tl + 3 < sizeof text; i++) {
      tl += (size_t)snprintf(text + tl, sizeof text - tl, "%02x", m.body[i]);
    }
    if (m.gzip) {
      tl += (size_t)snprintf(text + tl, sizeof text - tl, " gz");
    }
  }
  return text;
}

static char last_body[4096];
static void h_record(pomelo_request *req, void *ud) {
  const pomelo_msg *m = pomelo_request_msg(req);
  (void)ud;
  snprintf(last_body, sizeof last_body, "%.*s", (int)m->body_len, (const char *)m->body);
  pomelo_request_respond(req, (const char *)m->body, m->body_len);
}

/* Joins with a given handshake body. */
static pomelo_session *join_as(pomelo_server *srv, const char *hs, uint64_t now) {
  pomelo_session *s = NULL;
  if (pomelo_server_accept(srv, now, NULL, &s) != 0) {
    return NULL;
  }
  feed_pkg(s, POMELO_PKG_HANDSHAKE, hs, strlen(hs), now);
  feed_pkg(s, POMELO_PKG_HANDSHAKE_ACK, NULL, 0, now);
  drain(s, now);
  return s;
}

static int feed_raw_msg(pomelo_session *s, const pomelo_msg *msg, uint64_t now) {
  uint8_t m[4096];
  size_t n;
  pomelo_msg_encode(m, sizeof m, msg, &n);
  return feed_pkg(s, POMELO_PKG_DATA, m, n, now);
}

static const char *UTF8_HS = "{\"sys\":{\"type\":\"desktop\",\"version\":\"0.3.5-release\"}}";

static void test_wire_formats(void) {
  static const char *const routes[] = {"connector.entryHandler.enter", "connector.h.pb",
                                       "chat.chatHandler.send"};
  static const char *const extra[] = {"onAdd"};
  static const char sp[] = "{\"onChat\":{\"required string msg\":1,\"required string from\":2,"
                           "\"required string target\":3},\"connector.h.pb\":{\"required uInt32 "
                           "code\":1,\"optional string msg\":2}}";
  static const char cp[] = "{\"connector.h.pb\":{\"required string name\":1,\"optional sInt32 "
                           "n\":2}}";
  pomelo_dict *dict = NULL;
  pomelo_protos *protos = NULL;
  pomelo_server_settings st;
  pomelo_server *srv;
  pomelo_session *br, *lp, *lp2;
  pomelo_channel *ch;
  pomelo_msg m;
  pomelo_server_stats stats;
  const void *f1, *f2, *f3;
  char want[512];

  if (pomelo_dict_new(&dict, NULL, routes, 3, extra, 1) != 0 ||
      pomelo_protos_new(&protos, NULL, sp, strlen(sp), cp, strlen(cp), NULL, NULL) != 0) {
    ok(0, "dictionary and protos");
    return;
  }
  pomelo_server_settings_default(&st);
  st.conn.heartbeat_interval_ms = 3000;
  st.conn.dict = dict;
  st.conn.protos = protos;
  srv = make_server(&st, NULL, 0);
  pomelo_server_on(srv, "connector.entryHandler.enter", h_record, NULL);
  pomelo_server_on(srv, "connector.h.pb", h_record, NULL);
  br = join(srv, 0); /* the browser client: sys.type js-websocket */
  lp = join_as(srv, UTF8_HS, 0);
  lp2 = join_as(srv, UTF8_HS, 0);
  is_int(pomelo_session_format(br),
         POMELO_FORMAT_PROTOBUF | POMELO_FORMAT_PROTOBUF_RESPONSES | POMELO_FORMAT_CESU8,
         "browser: protobuf, protobuf responses, CESU-8");
  is_int(pomelo_session_format(lp), POMELO_FORMAT_PROTOBUF | POMELO_FORMAT_PROTOBUF_RESPONSES,
         "libpomelo2: protobuf and UTF-8");

  /* A compressed request (code 2: connector.entryHandler.enter; chat.chatHandler.send sorts
   * first). */
  memset(&m, 0, sizeof m);
  m.type = POMELO_MSG_REQUEST;
  m.id = 5;
  m.route_compressed = 1;
  m.route_code = 2;
  m.body = (const uint8_t *)"{\"a\":1}";
  m.body_len = 7;
  feed_raw_msg(lp, &m, 1);
  is_str(last_body, "{\"a\":1}", "code 2 resolved to its route: the handler ran");
  is_str(drain_hex(lp, 1, NULL), "resp 5 7b2261223a317d", "and answered in JSON (no proto)");
  m.route_code = 77;
  last_body[0] = 0;
  pomelo_server_get_stats(srv, &stats);
  feed_raw_msg(lp, &m, 1);
  is_str(last_body, "", "an unknown code is dropped (spec 2.5)");
  is_str(drain_hex(lp, 1, NULL), "", "with no answer");
  {
    pomelo_server_stats s2;
    pomelo_server_get_stats(srv, &s2);
    is_int(s2.dropped_messages, stats.dropped_messages + 1, "counted as dropped");
  }

  /* A protobuf request (client proto) reaches the handler as JSON; the response is protobuf
   * (server proto of the request's route). */
  memset(&m, 0, sizeof m);
  m.type = POMELO_MSG_REQUEST;
  m.id = 6;
  m.route = "connector.h.pb";
  m.route_len = strlen(m.route);
  m.body = (const uint8_t *)"\x0a\x03"
                            "bob\x10\x03";
  m.body_len = 7;
  feed_raw_msg(lp, &m, 1);
  is_str(last_body, "{\"name\":\"bob\",\"n\":-2}", "protobuf request decoded to JSON");
  /* h_record answers with the body it got: {"name":"bob","n":-2} has no required "code". */
  is_str(drain_hex(lp, 1, NULL), "resp 6 ", "a body that does not fit: sent empty (real server)");
  pomelo_server_get_stats(srv, &stats);
  is_int(stats.encode_errors, 1, "counted");
  /* The browser encoder's varints with wire type 2 are read too. */
  m.body = (const uint8_t *)"\x0a\x03"
                            "bob\x12\x03";
  feed_raw_msg(br, &m, 1);
  is_str(last_body, "{\"name\":\"bob\",\"n\":-2}", "wire type ignored on decode");
  drain(br, 1);
  m.body = (const uint8_t *)"\x0a\x09"
                            "bo";
  m.body_len = 4;
  last_body[0] = 0;
  feed_raw_msg(lp, &m, 1);
  is_str(last_body, "", "a truncated protobuf body does not reach the handler");
  is_str(drain_hex(lp, 1, NULL), "resp 6 08f403",
         "the request is answered {\"code\":500}, in its route's proto");
  is_int(ev.last_error, POMELO_ERR_PB_TRUNCATED, "on_error learns why");
  pomelo_server_get_stats(srv, &stats);
  is_int(stats.decode_errors, 1, "decode errors counted");

  /* Responses in protobuf, or JSON when the session does not take protobuf responses. */
  pomelo_server_on(srv, "connector.h.pb", h_ok, NULL); /* {"code":200,"msg":"ok"} */
  m.body = (const uint8_t *)"\x0a\x01x";
  m.body_len = 3;
  feed_raw_msg(lp, &m, 1);
  is_str(drain_hex(lp, 1, NULL), "resp 6 08c80112026f6b", "protobuf response (spec 7.3 vector)");
  is_int(pomelo_session_set_format(lp, POMELO_FORMAT_PROTOBUF), 0, "responses as JSON");
  feed_raw_msg(lp, &m, 1);
  is_str(drain(lp, 1), "resp 6 {\"code\":200,\"msg\":\"ok\"}", "JSON response (libpomelo2)");
  is_int(pomelo_session_set_format(lp, 0x100), POMELO_ERR_INVALID_ARG, "unknown format bit");

  /* Pushes: protobuf for protobuf sessions, JSON for the others; one frame per format. */
  pomelo_session_set_format(lp2, 0); /* JSON only */
  pomelo_channel_new(srv, "r", 1, &ch);
  pomelo_channel_add(ch, "a", 1, pomelo_session_id(lp));
  pomelo_channel_add(ch, "b", 1, pomelo_session_id(br));
  pomelo_channel_add(ch, "c", 1, pomelo_session_id(lp2));
  is_int(
      pomelo_channel_push(ch, "onChat", "{\"msg\":\"hi\",\"from\":\"alice\",\"target\":\"*\"}", 40),
      3, "push to 3");
  is_str(drain_hex(lp, 2, &f1), "push onChat 0a0268691205616c6963651a012a",
         "protobuf session: the spec 7.4 bytes");
  is_str(drain_hex(br, 2, &f2), "push onChat 0a0268691205616c6963651a012a", "browser: the same");
  is_str(drain_hex(lp2, 2, &f3),
         "push onChat "
         "7b226d7367223a226869222c2266726f6d223a22616c696365222c22746172676574223a222a227d",
         "JSON session: JSON");
  ok(f1 == f2 && f1 != f3, "the two protobuf members share one frame; JSON has its own");
  pomelo_channel_push(ch, "onAdd", "{\"user\":\"x\"}", 12);
  is_str(drain_hex(lp2, 2, NULL), "push #4 7b2275736572223a2278227d",
         "a push route in the dictionary goes out as its code (extra routes after handlers)");
  drain(lp, 2);
  drain(br, 2);

  /* Text outside the BMP: real UTF-8 for UTF-8 clients; escapes (JSON) or CESU-8 (protobuf)
   * for the browser. */
  pomelo_channel_push(ch, "onX", "{\"t\":\"\xf0\x9f\x98\x80\"}", 12);
  is_str(drain(lp, 3), "push onX {\"t\":\"\xf0\x9f\x98\x80\"}", "UTF-8 client: 4-byte UTF-8");
  is_str(drain(br, 3), "push onX {\"t\":\"\\ud83d\\ude00\"}", "browser: JSON escapes");
  drain(lp2, 3);
  {
    const char *b = "{\"msg\":\"\xf0\x9f\x98\x80\",\"from\":\"a\",\"target\":\"*\"}";
    pomelo_channel_push(ch, "onChat", b, strlen(b));
  }
  is_str(drain_hex(br, 3, NULL), "push onChat 0a06eda0bdedb8801201611a012a",
         "browser: a protobuf string in CESU-8");
  is_str(drain_hex(lp, 3, NULL), "push onChat 0a04f09f98801201611a012a",
         "UTF-8 client: a protobuf string in UTF-8");
  drain(lp2, 3);
  /* A browser sends CESU-8; handlers get UTF-8. */
  feed_msg(br, POMELO_MSG_REQUEST, 9, "connector.entryHandler.enter",
           "{\"t\":\"\xed\xa0\xbd\xed\xb8\x80\"}", 3);
  is_str(last_body, "{\"t\":\"\xf0\x9f\x98\x80\"}",
         "CESU-8 from the browser reaches handlers as UTF-8");
  is_str(drain(br, 3), "resp 9 {\"t\":\"\\ud83d\\ude00\"}", "and goes back readable to it");

  /* Binary routes pass untouched. */
  is_int(pomelo_server_binary_route(srv, "connector.entryHandler.enter"), 0, "binary route");
  feed_msg(br, POMELO_MSG_REQUEST, 10, "connector.entryHandler.enter", "\xed\xa0\xbd raw", 3);
  is_str(last_body, "\xed\xa0\xbd raw", "binary request bytes untouched");
  is_str(drain(br, 3), "resp 10 \xed\xa0\xbd raw", "binary response untouched");
  (void)want;
  pomelo_server_del(srv);
  pomelo_dict_del(dict);
  pomelo_protos_del(protos);
}

/* Flagged (bit 4) bodies: inflated for handlers with zlib, a clear error without; a bomb closes
 * the session as a package over the limit; gzip_min deflates what goes out. */
static void test_gzip_bodies(void) {
  const pomelo_allocator *libc = pomelo_allocator_libc();
  int have_zlib = (pomelo_features() & POMELO_FEATURE_ZLIB) != 0;
  static const char body[] = "{\"text\":\"hello hello hello hello hello hello hello\"}";
  pomelo_server_settings st;
  pomelo_server *srv;
  pomelo_session *s;
  pomelo_server_stats stats;
  pomelo_msg m;
  uint8_t *z = NULL, *zeros;
  size_t zl = 0;

  pomelo_server_settings_default(&st);
  st.conn.heartbeat_interval_ms = 3000;
  st.gzip_min = 16;
  srv = make_server(&st, NULL, 0);
  if (!have_zlib) {
    ok(srv == NULL, "no zlib: gzip_min refused");
    st.gzip_min = 0;
    srv = make_server(&st, NULL, 0);
  }
  pomelo_server_on(srv, "connector.entryHandler.enter", h_record, NULL);
  s = join_as(srv, UTF8_HS, 0);
  memset(&m, 0, sizeof m);
  m.type = POMELO_MSG_REQUEST;
  m.id = 3;
  m.route = "connector.entryHandler.enter";
  m.route_len = strlen(m.route);
  m.gzip = 1;
  last_body[0] = 0;
  if (have_zlib) {
    is_int(pm_deflate(libc, (const uint8_t *)body, strlen(body), 0, &z, &zl), 0, "deflate");
    m.body = z;
    m.body_len = zl;
    feed_raw_msg(s, &m, 1);
    is_str(last_body, body, "a flagged request reaches the handler inflated");
    {
      struct iovec iov[4];
      pomelo_pkg p;
      pomelo_msg r;
      size_t used, il = 0;
      uint8_t *inflated = NULL;
      int n = pomelo_session_out_iov(s, iov, 4);
      ok(n == 1 && pomelo_pkg_decode(iov[0].iov_base, iov[0].iov_len, &p, &used) == 0 &&
             pomelo_msg_decode(p.body, p.body_len, &r) == 0 && r.gzip && r.id == 3,
         "gzip_min: the response is flagged");
      ok(n == 1 && pm_inflate(libc, r.body, r.body_len, 1 << 16, &inflated, &il) == 0 &&
             il == strlen(body) && memcmp(inflated, body, il) == 0,
         "and inflates to the answer");
      free(inflated);
      drain(s, 1);
    }
  } else {
    m.body = (const uint8_t *)"x\x9c\x03\x00\x00\x00\x00\x01";
    m.body_len = 8;
    feed_raw_msg(s, &m, 1);
    is_str(last_body, "", "no zlib: a flagged request does not reach the handler");
    is_str(drain(s, 1), "resp 3 {\"code\":500}", "it is answered {\"code\":500}");
    is_int(ev.last_error, POMELO_ERR_UNSUPPORTED, "on_error learns why");
  }
  pomelo_server_get_stats(srv, &stats);
  is_int(stats.decode_errors, have_zlib ? 0 : 1, "decode errors");
  if (have_zlib) {
    /* A broken stream: answered 500, counted. */
    m.body = (const uint8_t *)"\x78\x9c\xff\xff";
    m.body_len = 4;
    feed_raw_msg(s, &m, 1);
    is_str(drain(s, 1), "resp 3 {\"code\":500}", "a broken stream: {\"code\":500}");
    is_int(ev.last_error, POMELO_ERR_GZIP, "POMELO_ERR_GZIP");
    /* A bomb: 16 MiB of zeros in a few KiB; max_body is 64 KiB. */
    zeros = calloc(1, (size_t)16 << 20);
    free(z);
    z = NULL;
    if (zeros && pm_deflate(libc, zeros, (size_t)16 << 20, 0, &z, &zl) == 0 && zl < 60000) {
      uint8_t *pkg = malloc(zl + 64);
      size_t n = 0;
      m.body = z;
      m.body_len = zl;
      if (pkg && pomelo_msg_encode(pkg, zl + 64, &m, &n) == 0) {
        feed_pkg(s, POMELO_PKG_DATA, pkg, n, 2);
      }
      free(pkg);
      pomelo_server_get_stats(srv, &stats);
      is_int(stats.gzip_bombs, 1, "a compression bomb is counted");
      is_int(pomelo_session_close_reason(s), POMELO_CLOSE_TOO_LARGE,
             "and closes the session as too large");
      ok(strstr(drain(s, 2), "message too large") != NULL, "with the KICK of a package too large");
    } else {
      ok(0, "a bomb to feed");
    }
    free(zeros);
  }
  pomelo_server_del(srv);
  free(z);
}

int main(void) {
  test_dispatch_table();
  test_filters_and_late_answers();
  test_forwarding();
  test_forward_roundtrip();
  test_sessions();
  test_channels_and_pushes();
  test_fanout_allocations();
  test_limits();
  test_timers();
  test_batching();
  test_stats_bytes();
  test_notify_lifetime();
  test_routes_reachable();
  test_ready_list();
  test_error_codes();
  test_too_large();
  test_nomem();
  test_wire_formats();
  test_gzip_bodies();
  return done_testing();
}
