/* The connection state machine, both roles, with time moved by hand (spec 4, 5, 6).
 * SPDX-License-Identifier: MIT
 */
#include <pomelo/conn.h>

#include "tap.h"
#include "testutil.h"

#define PM_MIN_(a, b) ((a) < (b) ? (a) : (b))

/* ---------------------------------------------------------------------------------------------
 * A recorder: every callback appends to an event log, output is drained into packages.
 * ------------------------------------------------------------------------------------------- */

typedef struct rec {
  char log[4096]; /* events, one per line */
  int ready, closes, close_reason, outputs, hs_code, kicks, messages;
  pomelo_msg last_msg;
  uint8_t last_body[1024];
  char kick_reason[128];
  int check_result; /* what check_client answers */
  int defer;        /* on_handshake set: do not answer */
  char hs_request[1024];
} rec;

/* Appends prefix, n bytes of s, and suffix to the event log. */
static void logf_(rec *r, const char *prefix, const char *s, size_t n, const char *suffix) {
  size_t len = strlen(r->log);
  snprintf(r->log + len, sizeof r->log - len, "%s%.*s%s", prefix, (int)n, s, suffix);
}

static int cb_check(pomelo_conn *c, const char *t, size_t tl, const char *v, size_t vl, void *ud) {
  rec *r = ud;
  (void)c;
  logf_(r, "check ", t, tl, "");
  logf_(r, "/", v, vl, "\n");
  return r->check_result;
}

static void cb_handshake(pomelo_conn *c, const pomelo_json_value *req, void *ud) {
  rec *r = ud;
  pomelo_json_writer *w;
  const char *s;
  size_t n;
  (void)c;
  pomelo_json_writer_new(&w, NULL, 0);
  pomelo_json_write_value(w, req);
  s = pomelo_json_writer_data(w, &n);
  snprintf(r->hs_request, sizeof r->hs_request, "%.*s", (int)n, s);
  pomelo_json_writer_del(w);
  logf_(r, "handshake", "", 0, "\n");
}

static void cb_hs_response(pomelo_conn *c, int code, const pomelo_json_value *resp, void *ud) {
  rec *r = ud;
  (void)c;
  (void)resp;
  r->hs_code = code;
  logf_(r, "response", "", 0, "\n");
}

static void cb_ready(pomelo_conn *c, void *ud) {
  rec *r = ud;
  (void)c;
  r->ready++;
  logf_(r, "ready", "", 0, "\n");
}

static void cb_message(pomelo_conn *c, const pomelo_msg *m, void *ud) {
  rec *r = ud;
  (void)c;
  r->messages++;
  r->last_msg = *m;
  memcpy(r->last_body, m->body, PM_MIN_(m->body_len, sizeof r->last_body));
  logf_(r, "message ", m->route, m->route_len, "\n");
}

static void cb_kick(pomelo_conn *c, const char *reason, size_t n, void *ud) {
  rec *r = ud;
  (void)c;
  r->kicks++;
  snprintf(r->kick_reason, sizeof r->kick_reason, "%.*s", (int)n, reason ? reason : "(null)");
  logf_(r, "kick ", reason ? reason : "(null)", reason ? n : 6, "\n");
}

static void cb_output(pomelo_conn *c, void *ud) {
  rec *r = ud;
  (void)c;
  r->outputs++;
}

static void cb_close(pomelo_conn *c, int reason, void *ud) {
  rec *r = ud;
  (void)c;
  r->closes++;
  r->close_reason = reason;
  logf_(r, "close ", pomelo_close_reason_name(reason), strlen(pomelo_close_reason_name(reason)),
        "\n");
}

static pomelo_conn_callbacks callbacks(int with_handshake) {
  pomelo_conn_callbacks cb;
  memset(&cb, 0, sizeof cb);
  cb.check_client = cb_check;
  cb.on_handshake = with_handshake ? cb_handshake : NULL;
  cb.on_handshake_response = cb_hs_response;
  cb.on_ready = cb_ready;
  cb.on_message = cb_message;
  cb.on_kick = cb_kick;
  cb.on_output = cb_output;
  cb.on_close = cb_close;
  return cb;
}

/* Drains all output into `out` (returns the byte count) and consumes it at `now`. */
static size_t drain(pomelo_conn *c, uint8_t *out, size_t cap, uint64_t now) {
  struct iovec iov[8];
  size_t total = 0;
  for (;;) {
    int i, n = pomelo_conn_out_iov(c, iov, 8);
    size_t got = 0;
    if (n == 0) {
      break;
    }
    for (i = 0; i < n; i++) {
      if (total + iov[i].iov_len <= cap) {
        memcpy(out + total, iov[i].iov_base, iov[i].iov_len);
        total += iov[i].iov_len;
      }
      got += iov[i].iov_len;
    }
    pomelo_conn_out_consume(c, got, now);
  }
  return total;
}

/* Drains output and returns it as "type:body|type:body|..." text (bodies as text). */
static const char *drain_text(pomelo_conn *c, uint64_t now) {
  static char text[8192];
  static uint8_t buf[8192];
  size_t n = drain(c, buf, sizeof buf, now), pos = 0, tl = 0;
  text[0] = 0;
  while (pos < n) {
    pomelo_pkg p;
    size_t used;
    if (pomelo_pkg_decode(buf + pos, n - pos, &p, &used) != 0) {
      snprintf(text + tl, sizeof text - tl, "BAD");
      break;
    }
    tl += (size_t)snprintf(text + tl, sizeof text - tl, "%s%d:%.*s", tl ? "|" : "", p.type,
                           (int)p.body_len, (const char *)p.body);
    pos += used;
  }
  return text;
}

static uint8_t pkt_buf[4096];

/* Builds one package; returns its bytes in a static buffer. */
static const uint8_t *pkt(int type, const char *body, size_t *len) {
  size_t blen = body ? strlen(body) : 0;
  pomelo_pkg_encode(pkt_buf, sizeof pkt_buf, type, (const uint8_t *)body, blen, len);
  return pkt_buf;
}

static int feed_pkg(pomelo_conn *c, int type, const char *body, uint64_t now) {
  size_t n;
  const uint8_t *p = pkt(type, body, &n);
  return pomelo_conn_feed(c, p, n, now);
}

static int feed_data(pomelo_conn *c, const pomelo_msg *m, uint64_t now) {
  uint8_t body[1024], whole[1100];
  size_t n, w;
  pomelo_msg_encode(body, sizeof body, m, &n);
  pomelo_pkg_encode(whole, sizeof whole, POMELO_PKG_DATA, body, n, &w);
  return pomelo_conn_feed(c, whole, w, now);
}

static const char *BROWSER_HS =
    "{\"sys\":{\"type\":\"js-websocket\",\"version\":\"0.0.1\",\"rsa\":{},\"protoVersion\":0}}";

static pomelo_conn *server(rec *r, uint32_t hb_ms, int with_handshake,
                           pomelo_conn_settings *custom) {
  pomelo_conn_settings s;
  pomelo_conn_callbacks cb = callbacks(with_handshake);
  pomelo_conn *c = NULL;
  if (custom) {
    s = *custom;
  } else {
    pomelo_conn_settings_default(&s);
    s.heartbeat_interval_ms = hb_ms;
  }
  memset(r, 0, sizeof(*r));
  r->check_result = 1;
  if (pomelo_conn_new(&c, &s, &cb, NULL, 0, r) != 0) {
    return NULL;
  }
  return c;
}

/* ---------------------------------------------------------------------------------------------
 * Server role
 * ------------------------------------------------------------------------------------------- */

static void test_server_happy_path(void) {
  rec r;
  pomelo_conn *c = server(&r, 3000, 0, NULL);
  pomelo_msg m;
  ok(c != NULL, "server connection");
  is_int(pomelo_conn_get_state(c), POMELO_CONN_INIT, "starts in INIT");
  is_int(pomelo_conn_out_len(c), 0, "server says nothing first");
  is_int(feed_pkg(c, POMELO_PKG_HANDSHAKE, BROWSER_HS, 10), 0, "browser handshake");
  is_str(r.log, "check js-websocket/0.0.1\n", "check_client got type and version");
  is_int(pomelo_conn_get_state(c), POMELO_CONN_WAIT_ACK, "WAIT_ACK");
  is_int(r.outputs, 1, "output callback");
  is_str(drain_text(c, 11), "1:{\"code\":200,\"sys\":{\"heartbeat\":3}}",
         "handshake response: code, sys.heartbeat in seconds");
  is_int(feed_pkg(c, POMELO_PKG_HANDSHAKE_ACK, NULL, 50), 0, "ack");
  is_int(pomelo_conn_get_state(c), POMELO_CONN_WORKING, "WORKING");
  is_int(r.ready, 1, "on_ready");
  is_str(drain_text(c, 51), "3:", "heartbeat right after the ACK (spec 4.6)");
  is_int(pomelo_conn_expiry(c), 50 + 6000, "heartbeat timeout 2 x interval from our heartbeat");
  is_int(feed_pkg(c, POMELO_PKG_HEARTBEAT, NULL, 1300), 0, "client heartbeat");
  is_str(drain_text(c, 1301), "3:", "echoed at once");
  is_int(pomelo_conn_expiry(c), 1300 + 6000, "deadline re-armed from the echo");

  memset(&m, 0, sizeof m);
  m.type = POMELO_MSG_REQUEST;
  m.id = 7;
  m.route = "connector.entryHandler.enter";
  m.route_len = strlen(m.route);
  m.body = (const uint8_t *)"{\"a\":1}";
  m.body_len = 7;
  is_int(feed_data(c, &m, 1400), 0, "request");
  is_int(r.messages, 1, "on_message");
  ok(r.last_msg.type == POMELO_MSG_REQUEST && r.last_msg.id == 7 && r.last_msg.body_len == 7,
     "request fields delivered");
  is_int(pomelo_conn_expiry(c), 1300 + 6000, "DATA is not liveness by default (spec 5)");

  memset(&m, 0, sizeof m);
  m.type = POMELO_MSG_RESPONSE;
  m.id = 7;
  m.body = (const uint8_t *)"{\"code\":200}";
  m.body_len = 12;
  is_int(pomelo_conn_send(c, &m), 0, "respond");
  is_str(drain_text(c, 1500), "4:\x04\x07{\"code\":200}", "response package");
  m.type = POMELO_MSG_REQUEST;
  is_int(pomelo_conn_send(c, &m), POMELO_ERR_INVALID_ARG, "a server does not send requests");
  is_int(pomelo_conn_handle_expiry(c, 7299), 0, "before the deadline");
  is_int(pomelo_conn_get_state(c), POMELO_CONN_WORKING, "still working");
  is_int(pomelo_conn_handle_expiry(c, 7300), 0, "at the deadline");
  is_int(pomelo_conn_get_state(c), POMELO_CONN_CLOSED, "closed on heartbeat timeout");
  is_int(pomelo_conn_close_reason(c), POMELO_CLOSE_HEARTBEAT_TIMEOUT, "reason");
  ok(pomelo_conn_wants_close(c), "wants close");
  is_int(pomelo_conn_out_len(c), 0, "no KICK on timeout");
  is_int(r.closes, 1, "on_close once");
  is_int(pomelo_conn_expiry(c), UINT64_MAX, "no timers once closed");
  is_int(feed_pkg(c, POMELO_PKG_HEARTBEAT, NULL, 7400), 0, "input after close ignored");
  is_int(pomelo_conn_out_len(c), 0, "no output after close");
  pomelo_conn_del(c);
}

static void test_server_out_of_state(void) {
  rec r;
  pomelo_conn *c = server(&r, 3000, 0, NULL);
  pomelo_msg m;
  memset(&m, 0, sizeof m);
  m.type = POMELO_MSG_NOTIFY;
  m.route = "a.b.c";
  m.route_len = 5;
  feed_pkg(c, POMELO_PKG_HANDSHAKE_ACK, NULL, 1);
  feed_pkg(c, POMELO_PKG_HEARTBEAT, NULL, 1);
  feed_data(c, &m, 1);
  is_int(pomelo_conn_get_state(c), POMELO_CONN_INIT, "ACK, HEARTBEAT, DATA before handshake");
  is_int(pomelo_conn_out_len(c) + r.messages, 0, "... are ignored (spec 4.1)");
  feed_pkg(c, POMELO_PKG_HANDSHAKE, BROWSER_HS, 2);
  drain_text(c, 2);
  feed_pkg(c, POMELO_PKG_HANDSHAKE, BROWSER_HS, 3);
  feed_pkg(c, POMELO_PKG_HEARTBEAT, NULL, 3);
  feed_data(c, &m, 3);
  is_int(pomelo_conn_get_state(c), POMELO_CONN_WAIT_ACK, "HANDSHAKE, HEARTBEAT, DATA in WAIT_ACK");
  is_int(pomelo_conn_out_len(c) + r.messages, 0, "... are ignored");
  feed_pkg(c, POMELO_PKG_HANDSHAKE_ACK, NULL, 4);
  drain_text(c, 4);
  feed_pkg(c, POMELO_PKG_HANDSHAKE_ACK, NULL, 5);
  feed_pkg(c, POMELO_PKG_HANDSHAKE, BROWSER_HS, 5);
  is_int(pomelo_conn_out_len(c), 0, "second ACK and HANDSHAKE in WORKING ignored");
  is_int(r.ready, 1, "ready once");
  feed_data(c, &m, 6);
  is_int(r.messages, 1, "notify delivered in WORKING");
  pomelo_conn_del(c);

  /* A request with id 0 or a malformed message is dropped, the connection lives on. */
  c = server(&r, 0, 0, NULL);
  feed_pkg(c, POMELO_PKG_HANDSHAKE, BROWSER_HS, 0);
  feed_pkg(c, POMELO_PKG_HANDSHAKE_ACK, NULL, 0);
  {
    const uint8_t id0[] = {4, 0, 0, 3, 0x00, 0x00, 0x00};
    const uint8_t type5[] = {4, 0, 0, 2, 0x0a, 0x01};
    const uint8_t empty[] = {4, 0, 0, 0};
    is_int(pomelo_conn_feed(c, id0, sizeof id0, 1), 0, "request id 0");
    is_int(pomelo_conn_feed(c, type5, sizeof type5, 1), 0, "message type 5");
    is_int(pomelo_conn_feed(c, empty, sizeof empty, 1), 0, "empty DATA");
    is_int(r.messages, 0, "all dropped without reaching the handler");
    is_int(pomelo_conn_get_state(c), POMELO_CONN_WORKING, "connection still working");
  }
  pomelo_conn_del(c);
}

static void test_server_protocol_errors(void) {
  rec r;
  int st;
  pomelo_conn *c;
  pomelo_conn_settings s;
  const uint8_t type7[] = {7, 0, 0, 0};
  const uint8_t ge[] = {'G', 'E'};

  for (st = 0; st < 3; st++) {
    c = server(&r, 3000, 0, NULL);
    if (st >= 1) {
      feed_pkg(c, POMELO_PKG_HANDSHAKE, BROWSER_HS, 0);
    }
    if (st >= 2) {
      feed_pkg(c, POMELO_PKG_HANDSHAKE_ACK, NULL, 0);
    }
    drain_text(c, 0);
    is_int(feed_pkg(c, POMELO_PKG_KICK, "{}", 1), 0, "KICK from a client (state %d)", st);
    is_int(pomelo_conn_close_reason(c), POMELO_CLOSE_PROTOCOL_ERROR, "closes (state %d)", st);
    ok(pomelo_conn_wants_close(c) && pomelo_conn_out_len(c) == 0, "at once, nothing sent");
    pomelo_conn_del(c);

    c = server(&r, 3000, 0, NULL);
    if (st >= 1) {
      feed_pkg(c, POMELO_PKG_HANDSHAKE, BROWSER_HS, 0);
    }
    is_int(pomelo_conn_feed(c, type7, sizeof type7, 1), POMELO_ERR_PKG_TYPE,
           "package type 7 (state %d)", st);
    is_int(pomelo_conn_close_reason(c), POMELO_CLOSE_PROTOCOL_ERROR, "closes the connection");
    ok(pomelo_conn_wants_close(c) && pomelo_conn_out_len(c) == 0, "at once, output dropped");
    pomelo_conn_del(c);
  }
  /* A raw-TCP connection that starts with "GE": not a package type. */
  pomelo_conn_settings_default(&s);
  s.transport = POMELO_TRANSPORT_TCP;
  c = server(&r, 0, 0, &s);
  is_int(pomelo_conn_feed(c, ge, 2, 0), 0, "two bytes are not a header yet");
  is_int(pomelo_conn_feed(c, (const uint8_t *)"T / HTTP/1.1\r\n", 14, 0), POMELO_ERR_PKG_TYPE,
         "then 'G' is a bad type on a TCP-only connection");
  pomelo_conn_del(c);

  /* A body over max_body: before the handshake, closed at once; once working, a KICK says
   * why (a client can tell it from a network failure), then the close. */
  pomelo_conn_settings_default(&s);
  s.max_body = 100;
  c = server(&r, 0, 0, &s);
  is_int(pomelo_conn_feed(c, (const uint8_t *)"\x01\x00\x00\x65", 4, 0), POMELO_ERR_PKG_TOO_LARGE,
         "a 101-byte handshake over a 100-byte limit");
  is_int(pomelo_conn_close_reason(c), POMELO_CLOSE_TOO_LARGE, "closes, reason too_large");
  ok(pomelo_conn_wants_close(c) && pomelo_conn_out_len(c) == 0,
     "at once before the handshake (nobody to tell)");
  pomelo_conn_del(c);
  c = server(&r, 0, 0, &s);
  feed_pkg(c, POMELO_PKG_HANDSHAKE, BROWSER_HS, 0);
  feed_pkg(c, POMELO_PKG_HANDSHAKE_ACK, NULL, 0);
  drain_text(c, 0);
  is_int(pomelo_conn_feed(c, (const uint8_t *)"\x04\x00\x00\x65xx", 6, 1), POMELO_ERR_PKG_TOO_LARGE,
         "a 101-byte DATA body once working");
  is_int(pomelo_conn_get_state(c), POMELO_CONN_CLOSING, "closing: a KICK is queued");
  is_int(r.close_reason, POMELO_CLOSE_TOO_LARGE, "on_close(too_large)");
  is_int(feed_pkg(c, POMELO_PKG_HEARTBEAT, NULL, 2), 0, "the rest of the input is ignored");
  is_str(drain_text(c, 2), "5:{\"reason\":\"message too large\"}", "KICK message too large");
  ok(pomelo_conn_wants_close(c), "closed once flushed");
  pomelo_conn_del(c);
}

static void test_server_handshake_errors(void) {
  static const struct {
    const char *body;
    const char *want;
    const char *name;
  } v[] = {
      {"{\"user\":{}}", "1:{\"code\":500}", "no sys: 500 (probe handshake-missing-sys)"},
      {"{not json", "1:{\"code\":500}", "invalid JSON: 500 (probe handshake-invalid-json)"},
      {"", "1:{\"code\":500}", "empty body: 500"},
      {"[1]", "1:{\"code\":500}", "array body: 500"},
      {"{\"sys\":null}", "1:{\"code\":500}", "sys null: 500"},
      {"{\"sys\":\"x\"}", "1:{\"code\":500}", "sys not an object: 500 (deliberate)"},
      {"{\"sys\":{}}", "1:{\"code\":200,\"sys\":{}}", "empty sys is accepted"},
  };
  size_t i;
  rec r;
  pomelo_conn *c;
  pomelo_conn_settings s;
  pomelo_conn_settings_default(&s);
  for (i = 0; i < sizeof v / sizeof v[0]; i++) {
    c = server(&r, 0, 0, &s);
    feed_pkg(c, POMELO_PKG_HANDSHAKE, v[i].body, 5);
    is_str(drain_text(c, 6), v[i].want, "%s", v[i].name);
    if (v[i].want[9] == '5') {
      is_int(pomelo_conn_close_reason(c), POMELO_CLOSE_HANDSHAKE_FAILED, "closed after the answer");
      ok(pomelo_conn_wants_close(c), "closed once flushed");
    }
    pomelo_conn_del(c);
  }
  c = server(&r, 0, 0, &s);
  r.check_result = 0;
  feed_pkg(c, POMELO_PKG_HANDSHAKE, BROWSER_HS, 0);
  is_int(pomelo_conn_get_state(c), POMELO_CONN_CLOSING, "closing while the answer is queued");
  is_str(drain_text(c, 1), "1:{\"code\":501}", "check_client refusal: 501");
  is_int(pomelo_conn_get_state(c), POMELO_CONN_CLOSED, "closed after the flush");
  is_int(r.close_reason, POMELO_CLOSE_HANDSHAKE_FAILED, "on_close reason");
  pomelo_conn_del(c);
}

static void test_server_deferred_handshake(void) {
  rec r;
  pomelo_conn *c = server(&r, 3000, 1, NULL);
  feed_pkg(c, POMELO_PKG_HANDSHAKE,
           "{\"sys\":{\"type\":\"t\",\"version\":\"1\"},\"user\":{\"token\":\"abc\"}}", 0);
  is_str(r.hs_request, "{\"sys\":{\"type\":\"t\",\"version\":\"1\"},\"user\":{\"token\":\"abc\"}}",
         "on_handshake sees the request");
  is_int(pomelo_conn_out_len(c), 0, "nothing sent until the reply");
  is_int(pomelo_conn_get_state(c), POMELO_CONN_INIT, "still INIT");
  feed_pkg(c, POMELO_PKG_HANDSHAKE, BROWSER_HS, 1);
  is_int(pomelo_conn_out_len(c), 0, "a second handshake while pending is ignored");
  is_int(pomelo_conn_handshake_reply(c, 200, "{bad", 4), POMELO_ERR_JSON_SYNTAX,
         "invalid user JSON refused");
  is_int(pomelo_conn_out_len(c), 0, "nothing sent");
  is_int(pomelo_conn_handshake_reply(c, 200, "{\"uid\":42}", 10), 0, "reply later");
  is_str(drain_text(c, 2), "1:{\"code\":200,\"sys\":{\"heartbeat\":3},\"user\":{\"uid\":42}}",
         "user object after sys");
  is_int(pomelo_conn_handshake_reply(c, 200, NULL, 0), POMELO_ERR_STATE, "only one reply");
  pomelo_conn_del(c);

  c = server(&r, 3000, 1, NULL);
  feed_pkg(c, POMELO_PKG_HANDSHAKE, BROWSER_HS, 0);
  is_int(pomelo_conn_handshake_reply(c, 500, NULL, 0), 0, "user handshake error");
  is_str(drain_text(c, 1), "1:{\"code\":500}", "answered 500 (spec 4.3 step 8)");
  ok(pomelo_conn_wants_close(c), "then closed");
  pomelo_conn_del(c);

  c = server(&r, 3000, 1, NULL);
  is_int(pomelo_conn_handshake_reply(c, 200, NULL, 0), POMELO_ERR_STATE, "no pending handshake");
  feed_pkg(c, POMELO_PKG_HANDSHAKE, BROWSER_HS, 0);
  is_int(pomelo_conn_handle_expiry(c, 10000), 0, "handshake deadline");
  is_int(pomelo_conn_close_reason(c), POMELO_CLOSE_HANDSHAKE_TIMEOUT, "a pending reply times out");
  pomelo_conn_del(c);
}

/* The real connector's answers, byte for byte (spec 4.4, traces/handshake-responses.hex): the
 * dictionary and protos built from chatofpomelo's handler routes and serverProtos.json, as the
 * real server builds them, must give the answer it sent. */
static void test_server_dict_protos(void) {
  static const char *const routes[] = {"gate.gateHandler.queryEntry",
                                       "connector.entryHandler.enter", "chat.chatHandler.send"};
  static const char *server_protos =
      "{\"onChat\":{\"required string msg\":1,\"required string from\":2,\"required string "
      "target\":3}}";
  pomelo_dict *dict = NULL;
  pomelo_protos *protos = NULL;
  static const char *conn733 =
      "1:{\"code\":200,\"sys\":{\"heartbeat\":3,\"dict\":{\"chat.chatHandler.send\":1,\"connector."
      "entryHandler.enter\":2,\"gate.gateHandler.queryEntry\":3},\"routeToCode\":{\"chat."
      "chatHandler.send\":1,\"connector.entryHandler.enter\":2,\"gate.gateHandler.queryEntry\":3},"
      "\"codeToRoute\":{\"1\":\"chat.chatHandler.send\",\"2\":\"connector.entryHandler.enter\","
      "\"3\":\"gate.gateHandler.queryEntry\"},\"dictVersion\":\"s2r1qfKDrbhWCkA6uf+PTA==\","
      "\"useDict\":true,\"protos\":{\"server\":{\"onChat\":{\"msg\":{\"option\":\"required\","
      "\"type\":\"string\",\"tag\":1},\"from\":{\"option\":\"required\",\"type\":\"string\","
      "\"tag\":2},\"target\":{\"option\":\"required\",\"type\":\"string\",\"tag\":3},"
      "\"__messages\":{},\"__tags\":{\"1\":\"msg\",\"2\":\"from\",\"3\":\"target\"}}},\"client\":"
      "{},\"version\":\"2zWPnSlRsRxjqgcU215Uxg==\"},\"useProto\":true}}";
  rec r;
  pomelo_conn *c;
  pomelo_conn_settings s;
  char want[2048];
  pomelo_conn_settings_default(&s);
  s.heartbeat_interval_ms = 3000;
  is_int(pomelo_dict_new(&dict, NULL, routes, 3, NULL, 0), 0, "chatofpomelo's dictionary");
  is_int(
      pomelo_protos_new(&protos, NULL, server_protos, strlen(server_protos), "{}", 2, NULL, NULL),
      0, "chatofpomelo's protos");
  s.dict = dict;
  s.protos = protos;

  c = server(&r, 0, 0, &s);
  feed_pkg(c, POMELO_PKG_HANDSHAKE, BROWSER_HS, 0);
  is_str(drain_text(c, 0), conn733, "fresh browser client: the real server's 733-byte answer");
  pomelo_conn_del(c);

  c = server(&r, 0, 0, &s);
  feed_pkg(c, POMELO_PKG_HANDSHAKE,
           "{\"sys\":{\"type\":\"js-websocket\",\"version\":\"0.0.1\",\"rsa\":{},\"protoVersion\":"
           "\"2zWPnSlRsRxjqgcU215Uxg==\"}}",
           0);
  /* CONN430: the protos are left out when the client's protoVersion matches. */
  snprintf(want, sizeof want, "%.*s,\"useProto\":true}}",
           (int)(strstr(conn733, ",\"protos\"") - conn733), conn733);
  is_str(drain_text(c, 0), want, "cached protoVersion: protos omitted (CONN430)");
  pomelo_conn_del(c);

  c = server(&r, 0, 0, &s);
  feed_pkg(c, POMELO_PKG_HANDSHAKE,
           "{\"sys\":{\"protoVersion\":\"2zWPnSlRsRxjqgcU215Uxg==\",\"dictVersion\":"
           "\"s2r1qfKDrbhWCkA6uf+PTA==\",\"type\":\"desktop\",\"version\":\"0.3.5-release\"}}",
           0);
  is_str(drain_text(c, 0),
         "1:{\"code\":200,\"sys\":{\"heartbeat\":3,\"useDict\":true,\"useProto\":true}}",
         "both versions cached (libpomelo2): the short answer of spec 4.4");
  pomelo_conn_del(c);

  c = server(&r, 0, 0, &s);
  feed_pkg(c, POMELO_PKG_HANDSHAKE, "{\"sys\":{\"protoVersion\":1,\"dictVersion\":\"other\"}}", 0);
  ok(strstr(drain_text(c, 0), "\"dict\":") && strstr(conn733, "\"protos\":"),
     "a different or non-string version gets the full answer");
  pomelo_conn_del(c);

  /* No protos: a client that cached another server's protos gets an empty set (with its own
   * version) so that it stops using them; one with none (0, absent) gets nothing. */
  s.protos = NULL;
  c = server(&r, 0, 0, &s);
  feed_pkg(c, POMELO_PKG_HANDSHAKE,
           "{\"sys\":{\"type\":\"js-websocket\",\"version\":\"0.0.1\",\"rsa\":{},\"protoVersion\":"
           "\"2zWPnSlRsRxjqgcU215Uxg==\",\"dictVersion\":\"s2r1qfKDrbhWCkA6uf+PTA==\"}}",
           0);
  is_str(drain_text(c, 0),
         "1:{\"code\":200,\"sys\":{\"heartbeat\":3,\"useDict\":true,\"protos\":{\"server\":{},"
         "\"client\":{},\"version\":\"xT9OvpsqULwrUv2IpdUD4Q==\"},\"useProto\":true}}",
         "stale protoVersion, no protos: the empty set replaces the cache");
  pomelo_conn_del(c);
  c = server(&r, 0, 0, &s);
  feed_pkg(c, POMELO_PKG_HANDSHAKE, BROWSER_HS, 0);
  ok(!strstr(drain_text(c, 0), "proto"), "protoVersion 0, no protos: nothing about protos");
  pomelo_conn_del(c);
  c = server(&r, 0, 0, &s);
  feed_pkg(c, POMELO_PKG_HANDSHAKE,
           "{\"sys\":{\"protoVersion\":\"xT9OvpsqULwrUv2IpdUD4Q==\",\"dictVersion\":"
           "\"s2r1qfKDrbhWCkA6uf+PTA==\"}}",
           0);
  is_str(drain_text(c, 0), "1:{\"code\":200,\"sys\":{\"heartbeat\":3,\"useDict\":true}}",
         "the empty set's version cached: nothing to resend");
  pomelo_conn_del(c);
  pomelo_dict_del(dict);
  pomelo_protos_del(protos);
}

static void test_server_heartbeat_variants(void) {
  rec r;
  pomelo_conn *c;
  pomelo_conn_settings s;
  pomelo_msg m;

  /* Gate: no heartbeat at all. */
  c = server(&r, 0, 0, NULL);
  feed_pkg(c, POMELO_PKG_HANDSHAKE, BROWSER_HS, 0);
  is_str(drain_text(c, 0), "1:{\"code\":200,\"sys\":{}}", "no heartbeat key without an interval");
  feed_pkg(c, POMELO_PKG_HANDSHAKE_ACK, NULL, 10);
  is_int(pomelo_conn_out_len(c), 0, "no heartbeat after the ACK");
  feed_pkg(c, POMELO_PKG_HEARTBEAT, NULL, 20);
  is_int(pomelo_conn_out_len(c), 0, "client heartbeats not echoed");
  is_int(pomelo_conn_expiry(c), 20 + 90000, "only the idle timeout runs");
  is_int(pomelo_conn_handle_expiry(c, 90019), 0, "just before idle");
  is_int(pomelo_conn_get_state(c), POMELO_CONN_WORKING, "alive");
  pomelo_conn_handle_expiry(c, 90020);
  is_int(pomelo_conn_close_reason(c), POMELO_CLOSE_IDLE_TIMEOUT, "idle timeout");
  pomelo_conn_del(c);

  /* DATA as liveness, and an explicit timeout. */
  pomelo_conn_settings_default(&s);
  s.heartbeat_interval_ms = 1500;
  s.heartbeat_timeout_ms = 4000;
  s.data_is_liveness = 1;
  c = server(&r, 0, 0, &s);
  feed_pkg(c, POMELO_PKG_HANDSHAKE, BROWSER_HS, 0);
  is_str(drain_text(c, 0), "1:{\"code\":200,\"sys\":{\"heartbeat\":1.5}}",
         "fractional seconds are written as a number");
  feed_pkg(c, POMELO_PKG_HANDSHAKE_ACK, NULL, 0);
  drain_text(c, 0);
  is_int(pomelo_conn_expiry(c), 4000, "explicit heartbeat timeout");
  memset(&m, 0, sizeof m);
  m.type = POMELO_MSG_NOTIFY;
  m.route = "a.b.c";
  m.route_len = 5;
  feed_data(c, &m, 3000);
  is_int(pomelo_conn_expiry(c), 7000, "DATA re-arms the deadline when it counts as liveness");
  pomelo_conn_del(c);

  /* Handshake deadline: handshake sent, never acked. */
  c = server(&r, 3000, 0, NULL);
  feed_pkg(c, POMELO_PKG_HANDSHAKE, BROWSER_HS, 0);
  is_int(pomelo_conn_expiry(c), 10000, "handshake deadline 10 s by default");
  pomelo_conn_handle_expiry(c, 9999);
  is_int(pomelo_conn_get_state(c), POMELO_CONN_WAIT_ACK, "not yet");
  pomelo_conn_handle_expiry(c, 10000);
  is_int(pomelo_conn_close_reason(c), POMELO_CLOSE_HANDSHAKE_TIMEOUT, "no ACK in 10 s");
  pomelo_conn_del(c);

  pomelo_conn_settings_default(&s);
  s.handshake_timeout_ms = 0;
  s.idle_timeout_ms = 0;
  c = server(&r, 0, 0, &s);
  is_int(pomelo_conn_expiry(c), UINT64_MAX, "no deadline when both are disabled");
  pomelo_conn_del(c);
}

static void test_server_kick(void) {
  rec r;
  pomelo_conn *c = server(&r, 3000, 0, NULL);
  feed_pkg(c, POMELO_PKG_HANDSHAKE, BROWSER_HS, 0);
  feed_pkg(c, POMELO_PKG_HANDSHAKE_ACK, NULL, 0);
  drain_text(c, 0);
  is_int(pomelo_conn_kick(c, "bye \"you\""), 0, "kick");
  is_int(pomelo_conn_get_state(c), POMELO_CONN_CLOSING, "closing while the KICK is queued");
  is_int(r.close_reason, POMELO_CLOSE_KICKED, "on_close(KICKED)");
  is_int(pomelo_conn_kick(c, "x"), POMELO_ERR_STATE, "no second kick");
  is_int(feed_pkg(c, POMELO_PKG_HEARTBEAT, NULL, 1), 0, "input while closing");
  is_str(drain_text(c, 1), "5:{\"reason\":\"bye \\\"you\\\"\"}", "KICK body, reason escaped");
  is_int(pomelo_conn_get_state(c), POMELO_CONN_CLOSED, "closed after the flush");
  pomelo_conn_del(c);

  c = server(&r, 3000, 0, NULL);
  feed_pkg(c, POMELO_PKG_HANDSHAKE, BROWSER_HS, 0);
  feed_pkg(c, POMELO_PKG_HANDSHAKE_ACK, NULL, 0);
  drain_text(c, 0);
  is_int(pomelo_conn_kick(c, NULL), 0, "kick without a reason");
  is_int(pomelo_conn_out_len(c), 0, "no KICK package (spec 6: kick(uid) with no reason)");
  ok(pomelo_conn_wants_close(c), "closed at once");
  pomelo_conn_del(c);

  c = server(&r, 3000, 0, NULL);
  feed_pkg(c, POMELO_PKG_HANDSHAKE, BROWSER_HS, 0);
  is_int(pomelo_conn_kick(c, "early"), 0, "kick before WORKING");
  is_str(drain_text(c, 0), "1:{\"code\":200,\"sys\":{\"heartbeat\":3}}",
         "no KICK package before WORKING; queued bytes still flushed");
  ok(pomelo_conn_wants_close(c), "then closed");
  pomelo_conn_del(c);

  c = server(&r, 3000, 0, NULL);
  feed_pkg(c, POMELO_PKG_HANDSHAKE, BROWSER_HS, 0);
  feed_pkg(c, POMELO_PKG_HANDSHAKE_ACK, NULL, 0);
  drain_text(c, 0);
  is_int(pomelo_conn_kick(c, "\xff"), POMELO_ERR_INVALID_ARG, "reason must be UTF-8");
  is_int(pomelo_conn_get_state(c), POMELO_CONN_WORKING, "nothing happened");
  is_int(pomelo_conn_close(c, POMELO_CLOSE_SHUTDOWN), 0, "close");
  ok(pomelo_conn_wants_close(c), "closed with nothing to flush");
  is_int(pomelo_conn_close_reason(c), POMELO_CLOSE_SHUTDOWN, "reason kept");
  is_int(pomelo_conn_close(c, POMELO_CLOSE_LOCAL), POMELO_ERR_STATE, "close twice");
  pomelo_conn_del(c);

  c = server(&r, 3000, 0, NULL);
  feed_pkg(c, POMELO_PKG_HANDSHAKE, BROWSER_HS, 0);
  pomelo_conn_peer_closed(c);
  ok(pomelo_conn_wants_close(c) && pomelo_conn_out_len(c) == 0, "peer closed: output dropped");
  is_int(r.close_reason, POMELO_CLOSE_PEER, "reason peer");
  pomelo_conn_del(c);
}

static void test_output_queue(void) {
  rec r;
  pomelo_conn *c = server(&r, 0, 0, NULL);
  pomelo_frame *f;
  pomelo_msg m;
  struct iovec iov[4];
  int i, n;
  feed_pkg(c, POMELO_PKG_HANDSHAKE, BROWSER_HS, 0);
  feed_pkg(c, POMELO_PKG_HANDSHAKE_ACK, NULL, 0);
  drain_text(c, 0);
  memset(&m, 0, sizeof m);
  m.type = POMELO_MSG_PUSH;
  m.route = "onChat";
  m.route_len = 6;
  m.body = (const uint8_t *)"hi";
  m.body_len = 2;
  pomelo_msg_encode_frame(&f, NULL, &m);
  r.outputs = 0;
  for (i = 0; i < 10; i++) {
    is_int(pomelo_conn_send_frame(c, f), 0, "send frame %d", i);
  }
  is_int(r.outputs, 1, "on_output only when the queue becomes non-empty");
  is_int(pomelo_frame_refcount(f), 11, "the queue holds a reference per entry");
  is_int(pomelo_conn_out_len(c), 10 * 14, "queued bytes");
  n = pomelo_conn_out_iov(c, iov, 4);
  is_int(n, 4, "iov limited to max");
  pomelo_conn_out_consume(c, 20, 1);
  n = pomelo_conn_out_iov(c, iov, 4);
  ok(iov[0].iov_len == 8 && (const uint8_t *)iov[0].iov_base == pomelo_frame_data(f) + 6,
     "partial write: the first iovec starts mid-frame");
  is_int(pomelo_frame_refcount(f), 10, "a fully written entry drops its reference");
  pomelo_conn_out_consume(c, 1000, 2);
  is_int(pomelo_conn_out_len(c), 0, "over-consume clamps");
  is_int(pomelo_frame_refcount(f), 1, "all references dropped");
  is_int(pomelo_conn_out_iov(c, iov, 4), 0, "empty");
  for (i = 0; i < 3; i++) {
    pomelo_conn_send_frame(c, f);
  }
  pomelo_conn_del(c);
  is_int(pomelo_frame_refcount(f), 1, "del drops queued references");
  pomelo_frame_unref(f);

  c = server(&r, 0, 0, NULL);
  is_int(pomelo_conn_send(c, &m), POMELO_ERR_STATE, "no push before WORKING (real server drops)");
  is_int(pomelo_conn_send_frame(c, NULL), POMELO_ERR_INVALID_ARG, "NULL frame");
  pomelo_conn_del(c);
}

/* The whole client stream at every split point gives the same output and events. */
static void test_server_splits(void) {
  uint8_t stream[512], body[64];
  size_t n = 0, k, cut, bl;
  char want_out[1024], want_log[sizeof(((rec *)0)->log)];
  pomelo_msg m;
  int same = 1;
  pomelo_pkg_encode(stream, sizeof stream, POMELO_PKG_HANDSHAKE, (const uint8_t *)BROWSER_HS,
                    strlen(BROWSER_HS), &k);
  n += k;
  pomelo_pkg_encode(stream + n, sizeof stream - n, POMELO_PKG_HANDSHAKE_ACK, NULL, 0, &k);
  n += k;
  pomelo_pkg_encode(stream + n, sizeof stream - n, POMELO_PKG_HEARTBEAT, NULL, 0, &k);
  n += k;
  memset(&m, 0, sizeof m);
  m.type = POMELO_MSG_REQUEST;
  m.id = 300;
  m.route_compressed = 1;
  m.route_code = 2;
  m.body = (const uint8_t *)"{}";
  m.body_len = 2;
  pomelo_msg_encode(body, sizeof body, &m, &bl);
  pomelo_pkg_encode(stream + n, sizeof stream - n, POMELO_PKG_DATA, body, bl, &k);
  n += k;

  for (cut = 0; cut <= n; cut++) {
    size_t step;
    for (step = 1; step <= (cut == 0 ? n : 1); step++) {
      rec r;
      pomelo_conn *c = server(&r, 3000, 0, NULL);
      char out[1024];
      size_t pos = 0;
      if (cut == 0) {
        while (pos < n) { /* chunks of `step` bytes */
          size_t len = PM_MIN_(step, n - pos);
          pomelo_conn_feed(c, stream + pos, len, 1);
          pos += len;
        }
      } else {
        pomelo_conn_feed(c, stream, cut, 1);
        pomelo_conn_feed(c, stream + cut, n - cut, 1);
      }
      snprintf(out, sizeof out, "%s", drain_text(c, 1));
      if (cut == 0 && step == 1) {
        snprintf(want_out, sizeof want_out, "%s", out);
        snprintf(want_log, sizeof want_log, "%s", r.log);
      } else if (strcmp(out, want_out) != 0 || strcmp(r.log, want_log) != 0 ||
                 r.last_msg.id != 300) {
        same = 0;
        diag("cut %zu step %zu differs", cut, step);
      }
      pomelo_conn_del(c);
    }
  }
  ok(same, "same events and output for every chunk size and split point (%zu bytes)", n);
  ok(strstr(want_log, "ready") && strstr(want_log, "message"), "the stream reached a message");
}

static void test_server_nomem(void) {
  long n;
  int clean = 1, saw = 0;
  for (n = 1; n < 200; n++) {
    test_alloc ta;
    pomelo_conn *c = NULL;
    pomelo_conn_callbacks cb = callbacks(0);
    pomelo_conn_settings s;
    rec r;
    int rc;
    memset(&r, 0, sizeof r);
    r.check_result = 1;
    test_alloc_init(&ta, n);
    pomelo_conn_settings_default(&s);
    s.heartbeat_interval_ms = 3000;
    rc = pomelo_conn_new(&c, &s, &cb, &ta.a, 0, &r);
    if (rc == 0) {
      pomelo_msg m;
      memset(&m, 0, sizeof m);
      feed_pkg(c, POMELO_PKG_HANDSHAKE, BROWSER_HS, 0);
      feed_pkg(c, POMELO_PKG_HANDSHAKE_ACK, NULL, 0);
      m.type = POMELO_MSG_PUSH;
      m.route = "r";
      m.route_len = 1;
      pomelo_conn_send(c, &m);
      rc = feed_pkg(c, POMELO_PKG_HEARTBEAT, NULL, 1);
      if (rc == POMELO_ERR_NOMEM &&
          (pomelo_conn_close_reason(c) != POMELO_CLOSE_ERROR || !pomelo_conn_wants_close(c))) {
        clean = 0;
        diag("allocation %ld failing: a failed feed left the connection open", n);
      }
      rc = pomelo_conn_kick(c, "k");
      if (rc == POMELO_ERR_NOMEM && pomelo_conn_close_reason(c) != POMELO_CLOSE_ERROR) {
        clean = 0;
        diag("allocation %ld failing: a failed kick did not close with POMELO_CLOSE_ERROR", n);
      }
      drain_text(c, 1);
      pomelo_conn_del(c);
    } else if (rc != POMELO_ERR_NOMEM) {
      clean = 0;
    }
    saw |= ta.failed > 0;
    if (ta.live != 0) {
      clean = 0;
      diag("leak with allocation %ld failing", n);
    }
    if (!ta.failed) {
      break;
    }
  }
  ok(saw && clean, "every failing allocation on the server path: no crash, no leak (%ld runs)", n);
}

/* Bytes handed out by out_iov stay valid until consumed or deleted, even across a hard close: an
 * asynchronous write (libuv) may still be sending them. */
static void test_iov_survives_close(void) {
  static const int reasons[] = {0, 1, 2}; /* peer closed, heartbeat timeout, protocol error */
  size_t k;
  for (k = 0; k < sizeof reasons / sizeof reasons[0]; k++) {
    test_alloc ta;
    pomelo_conn *c = NULL;
    pomelo_conn_callbacks cb = callbacks(0);
    pomelo_conn_settings s;
    struct iovec iov[8];
    uint8_t copy[256];
    size_t total = 0;
    long live;
    int i, n;
    pomelo_msg m;
    rec r;
    memset(&r, 0, sizeof r);
    r.check_result = 1;
    test_alloc_init(&ta, 0);
    pomelo_conn_settings_default(&s);
    s.heartbeat_interval_ms = 3000;
    pomelo_conn_new(&c, &s, &cb, &ta.a, 0, &r);
    feed_pkg(c, POMELO_PKG_HANDSHAKE, BROWSER_HS, 0);
    feed_pkg(c, POMELO_PKG_HANDSHAKE_ACK, NULL, 0);
    memset(&m, 0, sizeof m);
    m.type = POMELO_MSG_PUSH;
    m.route = "onChat";
    m.route_len = 6;
    m.body = (const uint8_t *)"{\"msg\":\"still here\"}";
    m.body_len = 20;
    pomelo_conn_send(c, &m);
    n = pomelo_conn_out_iov(c, iov, 8); /* handed to an asynchronous write */
    for (i = 0; i < n; i++) {
      memcpy(copy + total, iov[i].iov_base, iov[i].iov_len);
      total += iov[i].iov_len;
    }
    live = ta.live;
    if (reasons[k] == 0) {
      pomelo_conn_peer_closed(c);
    } else if (reasons[k] == 1) {
      pomelo_conn_handle_expiry(c, 60000);
    } else {
      pomelo_conn_feed(c, (const uint8_t *)"\x07\x00\x00\x00", 4, 1);
    }
    ok(pomelo_conn_wants_close(c) && pomelo_conn_out_len(c) == 0 &&
           pomelo_conn_out_iov(c, iov + 4, 4) == 0,
       "hard close %zu: nothing is reported any more", k);
    is_int(ta.live, live, "hard close %zu: but nothing was freed", k);
    {
      size_t pos = 0;
      int same = 1;
      for (i = 0; i < n; i++) {
        same &= memcmp(copy + pos, iov[i].iov_base, iov[i].iov_len) == 0;
        pos += iov[i].iov_len;
      }
      ok(same && pos == total, "hard close %zu: the handed-out bytes are intact", k);
    }
    pomelo_conn_out_consume(c, total, 2); /* the write completes later: harmless */
    pomelo_conn_del(c);
    is_int(ta.live, 0, "hard close %zu: freed by pomelo_conn_del", k);
  }
}

/* ---------------------------------------------------------------------------------------------
 * Client role
 * ------------------------------------------------------------------------------------------- */

static pomelo_conn *client(rec *r, pomelo_conn_settings *custom) {
  pomelo_conn_settings s;
  pomelo_conn_callbacks cb = callbacks(0);
  pomelo_conn *c = NULL;
  if (custom) {
    s = *custom;
  } else {
    pomelo_conn_settings_default(&s);
  }
  s.role = POMELO_ROLE_CLIENT;
  memset(r, 0, sizeof(*r));
  if (pomelo_conn_new(&c, &s, &cb, NULL, 1000, r) != 0) {
    return NULL;
  }
  return c;
}

static void test_client(void) {
  rec r;
  pomelo_conn_settings s;
  pomelo_conn *c = client(&r, NULL);
  char want[256];
  snprintf(want, sizeof want, "1:{\"sys\":{\"type\":\"libpomelo\",\"version\":\"%s\"}}",
           POMELO_VERSION_STRING);
  is_str(drain_text(c, 1000), want, "client handshake request");
  is_int(pomelo_conn_expiry(c), 11000, "client handshake deadline");
  pomelo_conn_feed(c, (const uint8_t *)"\x09\x00\x00\x01x", 5, 1100);
  is_int(pomelo_conn_get_state(c), POMELO_CONN_INIT, "unknown package type ignored by a client");
  feed_pkg(c, POMELO_PKG_HANDSHAKE, "{\"code\":200,\"sys\":{\"heartbeat\":3}}", 1200);
  is_int(r.hs_code, 200, "on_handshake_response(200)");
  is_int(r.ready, 1, "ready");
  is_int(pomelo_conn_heartbeat_interval(c), 3000, "server's interval");
  is_str(drain_text(c, 1200), "2:", "ACK sent");
  is_int(pomelo_conn_expiry(c), 4200, "next heartbeat in one interval");
  pomelo_conn_handle_expiry(c, 4200);
  is_str(drain_text(c, 4200), "3:", "heartbeat sent on our own timer");
  feed_pkg(c, POMELO_PKG_HEARTBEAT, NULL, 4210);
  is_int(pomelo_conn_expiry(c), 7200, "next send");
  pomelo_conn_handle_expiry(c, 7200);
  drain_text(c, 7200);
  /* Liveness: last package at 4210 -> timeout at 4210 + 6000. */
  is_int(pomelo_conn_expiry(c), 10200, "send due before the liveness deadline");
  pomelo_conn_handle_expiry(c, 10200);
  drain_text(c, 10200);
  is_int(pomelo_conn_expiry(c), 10210, "liveness deadline 2 x interval after the last package");
  pomelo_conn_handle_expiry(c, 10210);
  is_int(pomelo_conn_close_reason(c), POMELO_CLOSE_HEARTBEAT_TIMEOUT, "server went silent");
  pomelo_conn_del(c);

  pomelo_conn_settings_default(&s);
  s.user_json = "{\"token\":\"x\"}";
  s.cached_dict_version = "dv";
  s.cached_proto_version = "pv";
  s.client_type = "bot";
  s.client_version = "9";
  c = client(&r, &s);
  is_str(drain_text(c, 1000),
         "1:{\"sys\":{\"type\":\"bot\",\"version\":\"9\",\"protoVersion\":\"pv\",\"dictVersion\":"
         "\"dv\"},\"user\":{\"token\":\"x\"}}",
         "request with cached versions and user");
  feed_pkg(c, POMELO_PKG_HANDSHAKE, "{\"code\":501}", 1100);
  is_int(r.hs_code, 501, "501 reported");
  is_int(pomelo_conn_close_reason(c), POMELO_CLOSE_HANDSHAKE_FAILED, "closed");
  is_int(pomelo_conn_out_len(c), 0, "no ACK after a refusal");
  pomelo_conn_del(c);

  c = client(&r, NULL);
  feed_pkg(c, POMELO_PKG_HANDSHAKE, "not json", 1100);
  is_int(r.hs_code, -1, "unreadable response: code -1");
  is_int(pomelo_conn_close_reason(c), POMELO_CLOSE_HANDSHAKE_FAILED, "closed");
  pomelo_conn_del(c);

  c = client(&r, NULL);
  feed_pkg(c, POMELO_PKG_HANDSHAKE, "{\"code\":200,\"sys\":{}}", 1100);
  drain_text(c, 1100);
  is_int(pomelo_conn_heartbeat_interval(c), 0, "gate: no heartbeat");
  is_int(pomelo_conn_expiry(c), 1100 + 90000, "only idle");
  {
    pomelo_msg m;
    memset(&m, 0, sizeof m);
    m.type = POMELO_MSG_REQUEST;
    m.id = 1;
    m.route = "gate.gateHandler.queryEntry";
    m.route_len = strlen(m.route);
    m.body = (const uint8_t *)"{\"uid\":\"alice\"}";
    m.body_len = strlen((const char *)m.body);
    is_int(pomelo_conn_send(c, &m), 0, "request");
    is_str(drain_text(c, 1200), "4:\x00\x01\x1bgate.gateHandler.queryEntry{\"uid\":\"alice\"}",
           "request package (as the chat trace)");
    m.type = POMELO_MSG_PUSH;
    is_int(pomelo_conn_send(c, &m), POMELO_ERR_INVALID_ARG, "a client does not push");
  }
  feed_pkg(c, POMELO_PKG_KICK, "{\"reason\":\"bye\"}", 1300);
  is_str(r.kick_reason, "bye", "kick reason");
  is_int(pomelo_conn_close_reason(c), POMELO_CLOSE_KICKED, "kicked");
  is_int(pomelo_conn_kick(c, "x"), POMELO_ERR_INVALID_ARG, "a client cannot kick");
  pomelo_conn_del(c);
}

/* A client and a server of ours, wired back to back (state machines only; interop is tested
 * against the real peers elsewhere). */
static void test_back_to_back(void) {
  rec rs, rc;
  pomelo_conn *s = server(&rs, 2000, 0, NULL);
  pomelo_conn *c = client(&rc, NULL);
  uint64_t now = 1000;
  uint8_t buf[4096];
  int round;
  for (round = 0; round < 40; round++) {
    size_t n = drain(c, buf, sizeof buf, now);
    pomelo_conn_feed(s, buf, n, now);
    n = drain(s, buf, sizeof buf, now);
    pomelo_conn_feed(c, buf, n, now);
    now = PM_MIN_(pomelo_conn_expiry(s), pomelo_conn_expiry(c));
    pomelo_conn_handle_expiry(s, now);
    pomelo_conn_handle_expiry(c, now);
  }
  ok(pomelo_conn_get_state(s) == POMELO_CONN_WORKING &&
         pomelo_conn_get_state(c) == POMELO_CONN_WORKING,
     "client heartbeats keep the server alive over many intervals (t=%llu)",
     (unsigned long long)now);
  ok(now > 30000, "time advanced past 15 intervals");
  pomelo_conn_del(s);
  pomelo_conn_del(c);
}

int main(void) {
  test_server_happy_path();
  test_server_out_of_state();
  test_server_protocol_errors();
  test_server_handshake_errors();
  test_server_deferred_handshake();
  test_server_dict_protos();
  test_server_heartbeat_variants();
  test_server_kick();
  test_output_queue();
  test_server_splits();
  test_server_nomem();
  test_iov_survives_close();
  test_client();
  test_back_to_back();
  is_str(pomelo_close_reason_name(POMELO_CLOSE_HEARTBEAT_TIMEOUT), "heartbeat_timeout", "name");
  is_str(pomelo_close_reason_name(99), "unknown", "unknown name");
  return done_testing();
}
