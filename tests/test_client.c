/* The client against a scripted server (hand-built packages, and a server-role connection of
 * ours), with time moved by hand: handshake, heartbeats, requests, timeouts, id wrap, pushes,
 * route dictionary, kick, reconnect policy, split input, failing allocators.
 * SPDX-License-Identifier: MIT
 */
#include <pomelo/client.h>

#include "client/client_int.h"

#include "tap.h"
#include "testutil.h"

/* The chatofpomelo connector's answer to a fresh client (spec 4.4). */
static const char CHAT_HS[] =
    "{\"code\":200,\"sys\":{\"heartbeat\":3,\"dict\":{\"chat.chatHandler.send\":1,"
    "\"connector.entryHandler.enter\":2,\"gate.gateHandler.queryEntry\":3},\"routeToCode\":{"
    "\"chat.chatHandler.send\":1,\"connector.entryHandler.enter\":2,\"gate.gateHandler."
    "queryEntry\":3},\"codeToRoute\":{\"1\":\"chat.chatHandler.send\",\"2\":\"connector."
    "entryHandler.enter\",\"3\":\"gate.gateHandler.queryEntry\"},\"dictVersion\":"
    "\"s2r1qfKDrbhWCkA6uf+PTA==\",\"useDict\":true,\"protos\":{\"server\":{\"onChat\":{\"msg\":{"
    "\"option\":\"required\",\"type\":\"string\",\"tag\":1},\"from\":{\"option\":\"required\","
    "\"type\":\"string\",\"tag\":2},\"target\":{\"option\":\"required\",\"type\":\"string\","
    "\"tag\":3},\"__messages\":{},\"__tags\":{\"1\":\"msg\",\"2\":\"from\",\"3\":\"target\"}}},"
    "\"client\":{},\"version\":\"2zWPnSlRsRxjqgcU215Uxg==\"},\"useProto\":true}}";
/* ... and to a client that sent the matching versions. */
static const char CHAT_HS_CACHED[] =
    "{\"code\":200,\"sys\":{\"heartbeat\":3,\"useDict\":true,\"useProto\":true}}";
static const char HS_OK[] = "{\"code\":200,\"sys\":{\"heartbeat\":3}}";

/* ---------------------------------------------------------------------------------------------
 * A recorder: every callback appends a line to a log.
 * ------------------------------------------------------------------------------------------- */

typedef struct rec {
  char log[16384];
  int outputs;
  int responses;           /* response callbacks of any status */
  int connect_in_response; /* reconnect from inside a response callback (reentrancy test) */
  int request_in_response; /* issue a request from inside a response callback */
  int disconnect_in_push;  /* disconnect from inside a push callback */
  uint32_t rnd;            /* the random callback's state */
  int rnd_mode;            /* 0: LCG, 1: always 0, 2: always UINT32_MAX */
} rec;

static rec R;

/* A string as callback data (the callbacks only read it). */
#define TAG(s) ((void *)(uintptr_t)(s))

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static void
logf_(const char *fmt, ...) {
  size_t len = strlen(R.log);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(R.log + len, sizeof R.log - len, fmt, ap);
  va_end(ap);
}

/* Returns the log and clears it. */
static const char *take_log(void) {
  static char copy[sizeof R.log];
  memcpy(copy, R.log, sizeof copy);
  R.log[0] = '\0';
  return copy;
}

static void cb_connected(pomelo_client *cl, const pomelo_json_value *resp, void *ud) {
  (void)cl;
  (void)ud;
  logf_("connected %d\n", pomelo_json_typeof(resp) == POMELO_JSON_OBJECT);
}

static void cb_hs_error(pomelo_client *cl, int code, void *ud) {
  (void)cl;
  (void)ud;
  logf_("handshake_error %d\n", code);
}

static void cb_push(pomelo_client *cl, const char *route, size_t len, const pomelo_msg *m,
                    void *ud) {
  logf_("push %s %.*s %.*s\n", ud ? (const char *)ud : "default", (int)len, route, (int)m->body_len,
        (const char *)m->body);
  if (R.disconnect_in_push) {
    pomelo_client_disconnect(cl);
  }
}

static void cb_kick(pomelo_client *cl, const char *reason, size_t len, void *ud) {
  (void)cl;
  (void)ud;
  logf_("kick %.*s\n", reason ? (int)len : 6, reason ? reason : "(null)");
}

static void cb_disconnect(pomelo_client *cl, int reason, uint64_t at, void *ud) {
  (void)cl;
  (void)ud;
  if (at == UINT64_MAX) {
    logf_("disconnect %s never\n", pomelo_close_reason_name(reason));
  } else {
    logf_("disconnect %s %llu\n", pomelo_close_reason_name(reason), (unsigned long long)at);
  }
}

static void cb_reconnect(pomelo_client *cl, uint32_t attempt, void *ud) {
  (void)cl;
  (void)ud;
  logf_("reconnect %u\n", (unsigned)attempt);
}

static void cb_output(pomelo_client *cl, void *ud) {
  (void)cl;
  (void)ud;
  R.outputs++;
}

static uint32_t cb_random(void *ud) {
  (void)ud;
  if (R.rnd_mode == 1) {
    return 0;
  }
  if (R.rnd_mode == 2) {
    return UINT32_MAX;
  }
  R.rnd = R.rnd * 1664525u + 1013904223u;
  return R.rnd;
}

static void cb_response(pomelo_client *cl, int status, const char *route, size_t len,
                        const pomelo_msg *resp, void *data) {
  R.responses++;
  if (status == 0) {
    logf_("response %s %.*s #%u %.*s\n", data ? (const char *)data : "-", (int)len, route,
          (unsigned)resp->id, (int)resp->body_len, (const char *)resp->body);
  } else {
    logf_("response %s %.*s %s\n", data ? (const char *)data : "-", (int)len, route,
          pomelo_err_name(status));
  }
  if (R.request_in_response && status == 0) {
    R.request_in_response = 0;
    pomelo_client_request(cl, "again", NULL, 0, 0, cb_response, TAG("again"), 0, NULL);
  }
  if (R.connect_in_response) {
    R.connect_in_response = 0;
    pomelo_client_connect(cl, 0);
  }
}

static pomelo_client_callbacks callbacks(void) {
  pomelo_client_callbacks cb;
  memset(&cb, 0, sizeof cb);
  cb.on_connected = cb_connected;
  cb.on_handshake_error = cb_hs_error;
  cb.on_push = cb_push;
  cb.on_kick = cb_kick;
  cb.on_disconnect = cb_disconnect;
  cb.on_reconnect = cb_reconnect;
  cb.on_output = cb_output;
  return cb;
}

/* ---------------------------------------------------------------------------------------------
 * The scripted server: output drained and described, packages built by hand.
 * ------------------------------------------------------------------------------------------- */

static size_t drain_bytes(pomelo_client *cl, uint8_t *out, size_t cap, uint64_t now) {
  struct iovec iov[8];
  size_t total = 0;
  for (;;) {
    int i, n = pomelo_client_out_iov(cl, iov, 8);
    size_t got = 0;
    if (n == 0) {
      break;
    }
    for (i = 0; i < n; i++) {
      if (out && total + iov[i].iov_len <= cap) {
        memcpy(out + total, iov[i].iov_base, iov[i].iov_len);
        total += iov[i].iov_len;
      }
      got += iov[i].iov_len;
    }
    pomelo_client_out_consume(cl, got, now);
  }
  return total;
}

/* Drains the output and describes it: "hs:{json}", "ack", "hb", "req#ID r=ROUTE BODY" or
 * "req#ID c=CODE BODY", "ntf r=ROUTE BODY", joined with '|'. */
static const char *drain(pomelo_client *cl, uint64_t now) {
  static char text[16384];
  static uint8_t buf[16384];
  size_t n = drain_bytes(cl, buf, sizeof buf, now), pos = 0, tl = 0;
  text[0] = '\0';
  while (pos < n) {
    pomelo_pkg p;
    pomelo_msg m;
    size_t used;
    const char *sep = tl ? "|" : "";
    if (pomelo_pkg_decode(buf + pos, n - pos, &p, &used) != 0) {
      snprintf(text + tl, sizeof text - tl, "%sBAD", sep);
      break;
    }
    pos += used;
    if (p.type == POMELO_PKG_HANDSHAKE) {
      tl += (size_t)snprintf(text + tl, sizeof text - tl, "%shs:%.*s", sep, (int)p.body_len,
                             (const char *)p.body);
    } else if (p.type == POMELO_PKG_HANDSHAKE_ACK) {
      tl += (size_t)snprintf(text + tl, sizeof text - tl, "%sack", sep);
    } else if (p.type == POMELO_PKG_HEARTBEAT) {
      tl += (size_t)snprintf(text + tl, sizeof text - tl, "%shb", sep);
    } else if (p.type == POMELO_PKG_DATA && pomelo_msg_decode(p.body, p.body_len, &m) == 0) {
      char route[300];
      if (m.route_compressed) {
        snprintf(route, sizeof route, "c=%u", (unsigned)m.route_code);
      } else {
        snprintf(route, sizeof route, "r=%.*s", (int)m.route_len, m.route);
      }
      if (m.type == POMELO_MSG_REQUEST) {
        tl += (size_t)snprintf(text + tl, sizeof text - tl, "%sreq#%u %s %.*s", sep, (unsigned)m.id,
                               route, (int)m.body_len, (const char *)m.body);
      } else {
        tl += (size_t)snprintf(text + tl, sizeof text - tl, "%sntf %s %.*s", sep, route,
                               (int)m.body_len, (const char *)m.body);
      }
    } else {
      tl += (size_t)snprintf(text + tl, sizeof text - tl, "%spkg%d", sep, p.type);
    }
  }
  return text;
}

/* Appends one package to out (at *len). */
static void put_pkg(uint8_t *out, size_t *len, int type, const void *body, size_t body_len) {
  /* By hand, so that unknown types can be built too. */
  out += *len;
  out[0] = (uint8_t)type;
  out[1] = (uint8_t)(body_len >> 16);
  out[2] = (uint8_t)(body_len >> 8);
  out[3] = (uint8_t)body_len;
  if (body_len) {
    memcpy(out + 4, body, body_len);
  }
  *len += 4 + body_len;
}

static void put_msg(uint8_t *out, size_t *len, const pomelo_msg *m) {
  uint8_t body[4096];
  size_t n;
  pomelo_msg_encode(body, sizeof body, m, &n);
  put_pkg(out, len, POMELO_PKG_DATA, body, n);
}

static void put_response(uint8_t *out, size_t *len, uint32_t id, const char *body) {
  pomelo_msg m;
  memset(&m, 0, sizeof m);
  m.type = POMELO_MSG_RESPONSE;
  m.id = id;
  m.body = (const uint8_t *)body;
  m.body_len = strlen(body);
  put_msg(out, len, &m);
}

static void put_push(uint8_t *out, size_t *len, const char *route, int code, const char *body) {
  pomelo_msg m;
  memset(&m, 0, sizeof m);
  m.type = POMELO_MSG_PUSH;
  if (route) {
    m.route = route;
    m.route_len = strlen(route);
  } else {
    m.route_compressed = 1;
    m.route_code = (uint16_t)code;
  }
  m.body = (const uint8_t *)body;
  m.body_len = strlen(body);
  put_msg(out, len, &m);
}

static int feed_pkg(pomelo_client *cl, int type, const char *body, uint64_t now) {
  uint8_t buf[4096];
  size_t n = 0;
  put_pkg(buf, &n, type, body, body ? strlen(body) : 0);
  return pomelo_client_feed(cl, buf, n, now);
}

static int feed_response(pomelo_client *cl, uint32_t id, const char *body, uint64_t now) {
  uint8_t buf[4096];
  size_t n = 0;
  put_response(buf, &n, id, body);
  return pomelo_client_feed(cl, buf, n, now);
}

static int feed_push(pomelo_client *cl, const char *route, int code, const char *body,
                     uint64_t now) {
  uint8_t buf[4096];
  size_t n = 0;
  put_push(buf, &n, route, code, body);
  return pomelo_client_feed(cl, buf, n, now);
}

static int request(pomelo_client *cl, const char *route, const char *body, uint32_t timeout,
                   const char *tag, uint64_t now, uint32_t *id) {
  return pomelo_client_request(cl, route, (const uint8_t *)body, body ? strlen(body) : 0, timeout,
                               cb_response, TAG(tag), now, id);
}

static pomelo_client *new_client(const pomelo_client_settings *s, const pomelo_allocator *a) {
  pomelo_client_callbacks cb = callbacks();
  pomelo_client *cl = NULL;
  memset(&R, 0, sizeof R);
  R.rnd = 12345;
  if (pomelo_client_new(&cl, s, &cb, a, NULL) != 0) {
    return NULL;
  }
  return cl;
}

/* A client connected at t=1000 with the answer `hs` (HS_OK when NULL); log and output drained. */
static pomelo_client *connected(const pomelo_client_settings *s, const char *hs) {
  pomelo_client *cl = new_client(s, NULL);
  pomelo_client_connect(cl, 1000);
  drain(cl, 1000);
  feed_pkg(cl, POMELO_PKG_HANDSHAKE, hs ? hs : HS_OK, 1000);
  drain(cl, 1000);
  take_log();
  return cl;
}

/* ---------------------------------------------------------------------------------------------
 * Handshake, heartbeats, liveness
 * ------------------------------------------------------------------------------------------- */

static void test_handshake(void) {
  pomelo_client_settings s;
  pomelo_client *cl;
  char want[256];

  cl = new_client(NULL, NULL);
  is_int(pomelo_client_get_state(cl), POMELO_CLIENT_IDLE, "new client is idle");
  is_int(pomelo_client_expiry(cl), UINT64_MAX, "no timer before connect");
  is_int(pomelo_client_request(cl, "a.b.c", NULL, 0, 0, NULL, NULL, 0, NULL), POMELO_ERR_STATE,
         "request before connect");
  is_int(pomelo_client_notify(cl, "a.b.c", NULL, 0), POMELO_ERR_STATE, "notify before connect");
  is_int(pomelo_client_connect(cl, 1000), 0, "connect");
  is_int(R.outputs, 1, "on_output for the handshake");
  is_int(pomelo_client_get_state(cl), POMELO_CLIENT_CONNECTING, "connecting");
  snprintf(want, sizeof want, "hs:{\"sys\":{\"type\":\"libpomelo\",\"version\":\"%s\"}}",
           POMELO_VERSION_STRING);
  is_str(drain(cl, 1000), want, "handshake request: type, version, no cached versions");
  is_int(pomelo_client_expiry(cl), 11000, "handshake deadline");
  is_int(pomelo_client_request(cl, "a.b.c", NULL, 0, 0, NULL, NULL, 0, NULL), POMELO_ERR_STATE,
         "request while connecting");
  feed_pkg(cl, POMELO_PKG_HANDSHAKE, HS_OK, 1100);
  is_str(take_log(), "connected 1\n", "on_connected with the response");
  is_int(pomelo_client_get_state(cl), POMELO_CLIENT_CONNECTED, "connected");
  is_str(drain(cl, 1100), "ack", "ACK sent");
  is_int(pomelo_client_expiry(cl), 4100, "heartbeat due one interval later");
  pomelo_client_handle_expiry(cl, 4100);
  is_str(drain(cl, 4100), "hb", "heartbeat sent");
  feed_pkg(cl, POMELO_PKG_HEARTBEAT, NULL, 4120);
  pomelo_client_handle_expiry(cl, 7100);
  is_str(drain(cl, 7100), "hb", "second heartbeat");
  /* A DATA package counts as liveness too (the last package: 9000). */
  feed_push(cl, "onX", 0, "{}", 9000);
  take_log();
  pomelo_client_handle_expiry(cl, 10100);
  drain(cl, 10100);
  is_int(pomelo_client_expiry(cl), 13100, "next heartbeat");
  pomelo_client_handle_expiry(cl, 13100);
  drain(cl, 13100);
  is_int(pomelo_client_expiry(cl), 15000, "liveness: 2 x interval after the last package");
  pomelo_client_handle_expiry(cl, 14999);
  is_int(pomelo_client_get_state(cl), POMELO_CLIENT_CONNECTED, "alive just before");
  pomelo_client_handle_expiry(cl, 15000);
  is_str(take_log(), "disconnect heartbeat_timeout 17000\n",
         "silent server: lost, reconnect in 2 s");
  is_int(pomelo_client_get_state(cl), POMELO_CLIENT_WAIT_RECONNECT, "waiting to reconnect");
  is_int(pomelo_client_wants_close(cl), 1, "close the socket");
  pomelo_client_del(cl);

  /* User object, client type and version in the handshake. */
  pomelo_client_settings_default(&s);
  s.conn.user_json = "{\"uid\":\"alice\"}";
  s.conn.client_type = "bot";
  s.conn.client_version = "1.2";
  s.conn.cached_dict_version = "ignored";
  cl = new_client(&s, NULL);
  pomelo_client_connect(cl, 0);
  is_str(drain(cl, 0),
         "hs:{\"sys\":{\"type\":\"bot\",\"version\":\"1.2\"},\"user\":{\"uid\":\"alice\"}}",
         "handshake with user, type and version");
  /* Handshake timeout: lost, reconnect planned (libpomelo2 reconnects on a connect timeout). */
  pomelo_client_handle_expiry(cl, 10000);
  is_str(take_log(), "disconnect handshake_timeout 12000\n", "handshake timeout");
  pomelo_client_del(cl);
}

static void test_handshake_refused(void) {
  static const int codes[] = {500, 501};
  size_t i;
  pomelo_client *cl;
  for (i = 0; i < 2; i++) {
    char body[32], want[128];
    cl = new_client(NULL, NULL);
    pomelo_client_connect(cl, 0);
    drain(cl, 0);
    snprintf(body, sizeof body, "{\"code\":%d}", codes[i]);
    feed_pkg(cl, POMELO_PKG_HANDSHAKE, body, 5);
    snprintf(want, sizeof want, "handshake_error %d\ndisconnect handshake_failed never\n",
             codes[i]);
    is_str(take_log(), want, "code %d: refused, no reconnect", codes[i]);
    is_str(drain(cl, 5), "", "code %d: no ACK", codes[i]);
    is_int(pomelo_client_get_state(cl), POMELO_CLIENT_IDLE, "code %d: idle", codes[i]);
    is_int(pomelo_client_wants_close(cl), 1, "code %d: close the socket", codes[i]);
    is_int(pomelo_client_expiry(cl), UINT64_MAX, "code %d: no timer", codes[i]);
    pomelo_client_del(cl);
  }
  cl = new_client(NULL, NULL);
  pomelo_client_connect(cl, 0);
  feed_pkg(cl, POMELO_PKG_HANDSHAKE, "not json", 5);
  is_str(take_log(), "handshake_error -1\ndisconnect handshake_failed never\n",
         "unreadable answer: -1");
  pomelo_client_del(cl);
}

/* ---------------------------------------------------------------------------------------------
 * Requests
 * ------------------------------------------------------------------------------------------- */

static void test_requests(void) {
  pomelo_client *cl = connected(NULL, NULL);
  uint32_t id = 0;
  int outputs = R.outputs;
  is_int(request(cl, "a.b.one", "{\"n\":1}", 0, "A", 2000, &id), 0, "request 1");
  is_int(id, 1, "ids start at 1");
  is_int(R.outputs, outputs + 1, "on_output after the request");
  request(cl, "a.b.two", "{\"n\":2}", 0, "B", 2000, &id);
  is_int(id, 2, "second id");
  request(cl, "a.b.three", "", 0, "C", 2000, &id);
  is_int(id, 3, "third id");
  is_str(drain(cl, 2000), "req#1 r=a.b.one {\"n\":1}|req#2 r=a.b.two {\"n\":2}|req#3 r=a.b.three ",
         "requests on the wire");
  is_int(pomelo_client_pending(cl), 3, "3 waiting");
  is_str(take_log(), "", "no callback from inside request()");
  /* Out of order, and an id nobody waits for. */
  feed_response(cl, 3, "{\"r\":3}", 2100);
  feed_response(cl, 99, "{\"r\":99}", 2100);
  feed_response(cl, 1, "{\"r\":1}", 2100);
  feed_response(cl, 1, "{\"again\":1}", 2100);
  feed_response(cl, 2, "{\"r\":2}", 2100);
  is_str(take_log(),
         "response C a.b.three #3 {\"r\":3}\nresponse A a.b.one #1 {\"r\":1}\n"
         "response B a.b.two #2 {\"r\":2}\n",
         "responses matched by id, out of order; unknown and repeated ids ignored");
  is_int(pomelo_client_pending(cl), 0, "none waiting");
  is_int(pomelo_client_expiry(cl), 4000, "only the heartbeat timer");

  /* Notify: sent, never waited for. */
  is_int(pomelo_client_notify(cl, "chat.chatHandler.send", (const uint8_t *)"{}", 2), 0, "notify");
  is_str(drain(cl, 2200), "ntf r=chat.chatHandler.send {}", "notify on the wire");
  is_int(pomelo_client_pending(cl), 0, "a notify waits for nothing");

  /* Argument and codec errors: nothing sent, no callback. */
  is_int(pomelo_client_request(cl, NULL, NULL, 0, 0, cb_response, NULL, 2200, NULL),
         POMELO_ERR_INVALID_ARG, "NULL route");
  is_int(pomelo_client_request(cl, "a", NULL, 3, 0, cb_response, NULL, 2200, NULL),
         POMELO_ERR_INVALID_ARG, "NULL body with a length");
  {
    char longroute[257];
    memset(longroute, 'x', 256);
    longroute[256] = '\0';
    is_int(pomelo_client_request(cl, longroute, NULL, 0, 0, cb_response, NULL, 2200, NULL),
           POMELO_ERR_ROUTE_TOO_LONG, "route over 255 bytes");
    is_int(pomelo_client_notify(cl, longroute, NULL, 0), POMELO_ERR_ROUTE_TOO_LONG,
           "notify route over 255 bytes");
  }
  is_str(drain(cl, 2200), "", "nothing sent");
  is_int(R.responses, 3, "no callback for refused requests");
  request(cl, "a.b.next", NULL, 0, "N", 2200, &id);
  is_int(id, 4, "an id is used only when the request went out");
  drain(cl, 2200);

  /* A request issued from inside a response callback. */
  R.request_in_response = 1;
  feed_response(cl, 4, "{}", 2300);
  is_str(drain(cl, 2300), "req#5 r=again ", "request from a response callback");
  is_int(pomelo_client_pending(cl), 1, "it waits");
  take_log();
  pomelo_client_del(cl);
  is_str(take_log(), "response again again ERR_CLOSED\n", "del fails what still waits");
}

static void test_request_timeouts(void) {
  pomelo_client_settings s;
  pomelo_client *cl;
  uint32_t id;
  int i, in_order = 1, all = 1;
  uint64_t last = 0;

  pomelo_client_settings_default(&s);
  s.conn.idle_timeout_ms = 0;
  cl = connected(&s, "{\"code\":200,\"sys\":{}}"); /* no heartbeat: only request timers */
  request(cl, "r.default", NULL, 0, "D", 1000, &id);
  request(cl, "r.short", NULL, 500, "S", 1000, &id);
  is_int(pomelo_client_expiry(cl), 1500, "the earliest request deadline");
  pomelo_client_handle_expiry(cl, 1499);
  is_str(take_log(), "", "nothing before it");
  pomelo_client_handle_expiry(cl, 1500);
  is_str(take_log(), "response S r.short ERR_TIMEOUT\n", "short request timed out");
  feed_response(cl, 2, "{}", 1600);
  is_str(take_log(), "", "a late response is ignored");
  is_int(pomelo_client_expiry(cl), 11000, "default timeout: 10 s");
  pomelo_client_handle_expiry(cl, 11000);
  is_str(take_log(), "response D r.default ERR_TIMEOUT\n", "default timeout");
  is_int(pomelo_client_get_state(cl), POMELO_CLIENT_CONNECTED, "a timeout keeps the connection");

  /* Many requests with scattered timeouts expire in deadline order, one heap pop each. */
  for (i = 0; i < 500; i++) {
    uint32_t t = 1u + (uint32_t)((i * 7919) % 1000);
    char tag[16];
    (void)tag;
    pomelo_client_request(cl, "r.many", NULL, 0, t, NULL, NULL, 20000, NULL);
  }
  /* Answer every third one. */
  for (i = 0; i < 500; i += 3) {
    feed_response(cl, (uint32_t)(3 + i), "{}", 20000);
  }
  is_int(pomelo_client_pending(cl), 500 - 167, "answered ones left the map");
  for (i = 0; i < 1100 && pomelo_client_pending(cl); i++) {
    uint64_t t = pomelo_client_expiry(cl);
    size_t before = pomelo_client_pending(cl);
    if (t < last) {
      in_order = 0;
    }
    last = t;
    pomelo_client_handle_expiry(cl, t);
    if (pomelo_client_pending(cl) >= before) {
      all = 0;
    }
  }
  ok(in_order && all && pomelo_client_pending(cl) == 0,
     "500 requests: deadlines come in order, each expiry fails at least one");
  is_int(cl->heap_cap <= 16, 1, "the heap gave its memory back");
  pomelo_client_del(cl);
}

static void test_id_wrap(void) {
  pomelo_client *cl = connected(NULL, NULL);
  uint32_t id;
  request(cl, "r.one", NULL, 0, "1", 1000, &id);
  request(cl, "r.two", NULL, 0, "2", 1000, &id);
  request(cl, "r.three", NULL, 0, "3", 1000, &id);
  feed_response(cl, 2, "{}", 1000); /* 1 and 3 still wait */
  take_log();
  pm_client_set_next_id(cl, POMELO_MSG_ID_MAX - 1u);
  request(cl, "r.a", NULL, 0, "a", 1000, &id);
  is_int(id, POMELO_MSG_ID_MAX - 1u, "2^31-2");
  request(cl, "r.b", NULL, 0, "b", 1000, &id);
  is_int(id, POMELO_MSG_ID_MAX, "2^31-1, the largest id");
  request(cl, "r.c", NULL, 0, "c", 1000, &id);
  is_int(id, 2, "wraps to 1, skips 1 (waiting), never 0: 2");
  request(cl, "r.d", NULL, 0, "d", 1000, &id);
  is_int(id, 4, "skips 3 (waiting): 4");
  is_str(drain(cl, 1000),
         "req#1 r=r.one |req#2 r=r.two |req#3 r=r.three |req#2147483646 r=r.a |"
         "req#2147483647 r=r.b |req#2 r=r.c |req#4 r=r.d ",
         "ids on the wire");
  feed_response(cl, POMELO_MSG_ID_MAX, "{}", 1000);
  feed_response(cl, 2, "{}", 1000);
  is_str(take_log(), "response b r.b #2147483647 {}\nresponse c r.c #2 {}\n",
         "responses to wrapped ids");
  pm_client_set_next_id(cl, 0);
  request(cl, "r.e", NULL, 0, "e", 1000, &id);
  is_int(id, 2, "next id 0 means 1, skipping waiting ones");
  pomelo_client_del(cl);
}

/* ---------------------------------------------------------------------------------------------
 * Pushes and the route dictionary
 * ------------------------------------------------------------------------------------------- */

static void test_pushes(void) {
  pomelo_client *cl = connected(NULL, NULL);
  is_int(pomelo_client_on(cl, "onChat", cb_push, TAG("chat")), 0, "handler for onChat");
  is_int(pomelo_client_on(cl, "onAdd", cb_push, TAG("add")), 0, "handler for onAdd");
  is_int(pomelo_client_on(cl, NULL, cb_push, NULL), POMELO_ERR_INVALID_ARG, "NULL route");
  feed_push(cl, "onChat", 0, "{\"msg\":\"hi\"}", 1100);
  feed_push(cl, "onAdd", 0, "{\"user\":\"bob\"}", 1100);
  feed_push(cl, "onLeave", 0, "{}", 1100);
  feed_push(cl, NULL, 7, "{}", 1100);
  is_str(take_log(),
         "push chat onChat {\"msg\":\"hi\"}\npush add onAdd {\"user\":\"bob\"}\n"
         "push default onLeave {}\npush default 7 {}\n",
         "pushes by route, others to on_push; a code with no dictionary: its digits");
  is_int(pomelo_client_on(cl, "onChat", cb_push, TAG("chat2")), 0, "replace a handler");
  is_int(pomelo_client_on(cl, "onAdd", NULL, NULL), 0, "remove a handler");
  is_int(pomelo_client_on(cl, "onNothing", NULL, NULL), 0, "removing an absent one is fine");
  feed_push(cl, "onChat", 0, "1", 1100);
  feed_push(cl, "onAdd", 0, "2", 1100);
  is_str(take_log(), "push chat2 onChat 1\npush default onAdd 2\n", "replaced and removed");
  pomelo_client_on(cl, "onChat", NULL, NULL);
  is_int(cl->handlers.cap, 0, "no handlers, no table");
  pomelo_client_del(cl);

  /* Without a default handler, an unhandled push is dropped. */
  {
    pomelo_client_callbacks cb = callbacks();
    cb.on_push = NULL;
    cl = NULL;
    pomelo_client_new(&cl, NULL, &cb, NULL, NULL);
    pomelo_client_connect(cl, 0);
    feed_pkg(cl, POMELO_PKG_HANDSHAKE, HS_OK, 0);
    take_log();
    feed_push(cl, "onX", 0, "{}", 0);
    is_str(take_log(), "", "no default: dropped");
    pomelo_client_del(cl);
  }
}

static void test_dictionary(void) {
  pomelo_client *cl = connected(NULL, CHAT_HS);
  uint32_t id;
  char want[512];
  is_int(pomelo_dict_count(cl->dict), 3, "the chatofpomelo dictionary");
  is_str(pomelo_dict_version(cl->dict), "s2r1qfKDrbhWCkA6uf+PTA==", "its version");
  request(cl, "connector.entryHandler.enter", "{\"username\":\"alice\",\"rid\":\"room1\"}", 0, "E",
          1000, &id);
  request(cl, "gate.gateHandler.queryEntry", "{}", 0, "Q", 1000, &id);
  request(cl, "chat.chatHandler.other", "{}", 0, "O", 1000, &id);
  pomelo_client_notify(cl, "chat.chatHandler.send", (const uint8_t *)"{}", 2);
  pomelo_client_notify(cl, "onChat", (const uint8_t *)"{}", 2);
  is_str(drain(cl, 1000),
         "req#1 c=2 {\"username\":\"alice\",\"rid\":\"room1\"}|req#2 c=3 {}|"
         "req#3 r=chat.chatHandler.other {}|ntf c=1 {}|ntf r=onChat {}",
         "routes in the dictionary are compressed, others are not");
  feed_response(cl, 1, "{\"code\":200}", 1000);
  is_str(take_log(), "response E connector.entryHandler.enter #1 {\"code\":200}\n",
         "the response carries the request's route");
  pomelo_client_on(cl, "chat.chatHandler.send", cb_push, TAG("send"));
  feed_push(cl, NULL, 1, "{}", 1000);
  feed_push(cl, NULL, 3, "{}", 1000);
  feed_push(cl, NULL, 13, "{}", 1000);
  feed_push(cl, NULL, 0, "{}", 1000);
  feed_push(cl, "onChat", 0, "{}", 1000); /* onChat has a proto: "{}" is no protobuf body */
  feed_push(cl, "onChat", 0, "", 1000);
  is_str(take_log(),
         "push send chat.chatHandler.send {}\npush default gate.gateHandler.queryEntry {}\n"
         "push default 13 {}\npush default 0 {}\npush default onChat {}\n",
         "compressed pushes resolved; unknown codes as digits; an undecodable push dropped");

  /* Connection lost, reconnect: the handshake sends the dictVersion; the server omits the
   * dictionary, and the cached one keeps working. */
  pomelo_client_peer_closed(cl, 5000);
  take_log();
  pomelo_client_handle_expiry(cl, 7000);
  is_str(take_log(), "reconnect 1\n", "reconnect time");
  pomelo_client_connect(cl, 7000);
  snprintf(want, sizeof want,
           "hs:{\"sys\":{\"type\":\"libpomelo\",\"version\":\"%s\",\"protoVersion\":"
           "\"2zWPnSlRsRxjqgcU215Uxg==\",\"dictVersion\":\"s2r1qfKDrbhWCkA6uf+PTA==\"}}",
           POMELO_VERSION_STRING);
  is_str(drain(cl, 7000), want, "second handshake sends sys.protoVersion and sys.dictVersion");
  feed_pkg(cl, POMELO_PKG_HANDSHAKE, CHAT_HS_CACHED, 7000);
  drain(cl, 7000);
  request(cl, "connector.entryHandler.enter", "{}", 0, "E", 7000, &id);
  is_int(id, 4, "ids go on across connections");
  is_str(drain(cl, 7000), "req#4 c=2 {}", "the cached dictionary still compresses");
  feed_push(cl, NULL, 2, "{}", 7000);
  is_str(take_log(), "connected 1\npush default connector.entryHandler.enter {}\n", "and resolves");

  /* A handshake without useDict drops the cache (libpomelo2). */
  pomelo_client_connect(cl, 8000);
  take_log();
  drain(cl, 8000);
  feed_pkg(cl, POMELO_PKG_HANDSHAKE, HS_OK, 8000);
  drain(cl, 8000);
  ok(!cl->dict, "dictionary dropped");
  request(cl, "connector.entryHandler.enter", "{}", 0, "E", 8000, &id);
  is_str(drain(cl, 8000), "req#5 r=connector.entryHandler.enter {}", "no compression");
  pomelo_client_connect(cl, 9000);
  snprintf(want, sizeof want, "hs:{\"sys\":{\"type\":\"libpomelo\",\"version\":\"%s\"}}",
           POMELO_VERSION_STRING);
  is_str(drain(cl, 9000), want, "no dictVersion any more");
  take_log();
  pomelo_client_del(cl);

  /* The JS client's form: only "dict" (inverted for pushes), no version. */
  cl = connected(NULL, "{\"code\":200,\"sys\":{\"dict\":{\"a.b.c\":7,\"x.y.z\":300},"
                       "\"useDict\":1}}");
  is_int(pomelo_dict_count(cl->dict), 2, "dict only: read (pomelo_dict_from_handshake)");
  pomelo_client_notify(cl, "x.y.z", NULL, 0);
  is_str(drain(cl, 1000), "ntf c=300 ", "compressed with a code > 255");
  feed_push(cl, NULL, 7, "{}", 1000);
  is_str(take_log(), "push default a.b.c {}\n", "inverted dict resolves pushes");
  pomelo_client_connect(cl, 2000);
  snprintf(want, sizeof want, "hs:{\"sys\":{\"type\":\"libpomelo\",\"version\":\"%s\"}}",
           POMELO_VERSION_STRING);
  is_str(drain(cl, 2000), want, "no version: none sent");
  pomelo_client_del(cl);

  /* useDict with nothing cached and no dictionary sent: plain routes. */
  cl = connected(NULL, "{\"code\":200,\"sys\":{\"useDict\":true,\"codeToRoute\":{\"1\":\"a\"}}}");
  ok(!cl->dict, "useDict with half a dictionary: none");
  pomelo_client_del(cl);
  /* A malformed dictionary (bad codes, odd keys) is not used at all: routes go as strings and
   * pushes' codes stay unresolved, rather than guessing which half of the server's table is
   * right. */
  cl = connected(NULL, "{\"code\":200,\"sys\":{\"useDict\":true,\"routeToCode\":{\"a\":1},"
                       "\"codeToRoute\":{\"1\":\"a\",\"x\":\"b\",\"0\":\"c\"}}}");
  ok(!cl->dict, "a malformed dictionary: none");
  feed_push(cl, NULL, 1, "{}", 1000);
  is_str(take_log(), "push default 1 {}\n", "its codes stay digits");
  pomelo_client_notify(cl, "a", NULL, 0);
  is_str(drain(cl, 1000), "ntf r=a ", "and routes go as strings");
  pomelo_client_del(cl);
  cl = connected(NULL, "{\"code\":200,\"sys\":{\"dict\":{\"a.b.c\":7,\"bad\":0,\"big\":70000},"
                       "\"useDict\":1}}");
  ok(!cl->dict, "dict with codes outside 1..65535: none");
  pomelo_client_del(cl);
}

/* ---------------------------------------------------------------------------------------------
 * Kick, lost connections, reconnect policy, disconnect
 * ------------------------------------------------------------------------------------------- */

static void test_kick(void) {
  pomelo_client *cl = connected(NULL, NULL);
  uint32_t id;
  request(cl, "r.a", NULL, 0, "A", 1000, &id);
  feed_pkg(cl, POMELO_PKG_KICK, "{\"reason\":\"bye\"}", 1500);
  is_str(take_log(), "kick bye\ndisconnect kicked never\nresponse A r.a ERR_CLOSED\n",
         "kick: reason, no reconnect, pending request fails");
  is_int(pomelo_client_get_state(cl), POMELO_CLIENT_IDLE, "idle");
  is_int(pomelo_client_wants_close(cl), 1, "close the socket");
  is_int(pomelo_client_expiry(cl), UINT64_MAX, "no timer");
  pomelo_client_handle_expiry(cl, 1000000);
  is_str(take_log(), "", "never reconnects");
  pomelo_client_del(cl);

  cl = connected(NULL, NULL);
  feed_pkg(cl, POMELO_PKG_KICK, "", 1500);
  is_str(take_log(), "kick (null)\ndisconnect kicked never\n", "kick without a reason");
  pomelo_client_del(cl);
}

static void test_lost_and_reconnect(void) {
  static const uint64_t want[] = {2000, 4000, 8000, 16000, 30000, 30000, 30000};
  pomelo_client_settings s;
  pomelo_client *cl = connected(NULL, NULL);
  uint64_t now = 2000, prev;
  uint32_t id;
  size_t i;
  int good = 1, jitter_ok = 1;

  request(cl, "r.a", NULL, 0, "A", 1000, &id);
  request(cl, "r.b", NULL, 0, "B", 1000, &id);
  pomelo_client_peer_closed(cl, now);
  is_str(take_log(), "disconnect peer 4000\nresponse A r.a ERR_CLOSED\nresponse B r.b ERR_CLOSED\n",
         "lost: reconnect planned, pending requests fail in issue order");
  is_int(pomelo_client_pending(cl), 0, "none waiting");
  is_int(pomelo_client_get_state(cl), POMELO_CLIENT_WAIT_RECONNECT, "waiting");
  is_int(pomelo_client_expiry(cl), 4000, "expiry is the reconnect time");
  /* Each attempt fails before its handshake completes: the delays double up to the cap. */
  for (i = 0; i < PM_ARRAY_LEN(want); i++) {
    uint64_t at = pomelo_client_expiry(cl);
    char line[64];
    if (i > 0) {
      snprintf(line, sizeof line, "disconnect peer %llu\n", (unsigned long long)(now + want[i]));
      if (strcmp(take_log(), line) != 0 || at != now + want[i]) {
        good = 0;
        diag("attempt %zu: at %llu, want %llu", i + 1, (unsigned long long)at,
             (unsigned long long)(now + want[i]));
      }
    } else {
      good &= at == now + want[0];
    }
    pomelo_client_handle_expiry(cl, at - 1);
    good &= R.log[0] == '\0';
    pomelo_client_handle_expiry(cl, at);
    snprintf(line, sizeof line, "reconnect %zu\n", i + 1);
    good &= strcmp(take_log(), line) == 0;
    now = at;
    if (i % 2) {
      pomelo_client_connect(cl, now); /* the socket connected, the handshake did not */
      drain(cl, now);
      pomelo_client_peer_closed(cl, now);
    } else {
      pomelo_client_peer_closed(cl, now); /* the socket did not even connect */
    }
  }
  ok(good, "delays 2000, 4000, 8000, 16000, 30000 (cap), 30000, 30000");
  /* A successful handshake resets the count. */
  take_log();
  now = pomelo_client_expiry(cl);
  pomelo_client_handle_expiry(cl, now);
  pomelo_client_connect(cl, now);
  feed_pkg(cl, POMELO_PKG_HANDSHAKE, HS_OK, now);
  pomelo_client_peer_closed(cl, now + 10);
  take_log();
  is_int(pomelo_client_expiry(cl), now + 10 + 2000, "after a success: 2000 again");
  /* disconnect() cancels a planned reconnect. */
  pomelo_client_disconnect(cl);
  is_int(pomelo_client_get_state(cl), POMELO_CLIENT_IDLE, "idle");
  is_int(pomelo_client_expiry(cl), UINT64_MAX, "nothing planned");
  pomelo_client_handle_expiry(cl, now + 100000);
  is_str(take_log(), "", "no reconnect after disconnect");
  pomelo_client_del(cl);

  /* Not exponential, limited attempts, jitter from the caller's randomness. */
  pomelo_client_settings_default(&s);
  s.reconnect.exponential = 0;
  s.reconnect.delay_ms = 1000;
  s.reconnect.max_attempts = 3;
  cl = connected(&s, NULL);
  now = 1000;
  pomelo_client_peer_closed(cl, now);
  for (i = 0; i < 3; i++) {
    char line[64];
    snprintf(line, sizeof line, "disconnect peer %llu\n", (unsigned long long)(now + 1000));
    is_str(take_log(), line, "constant delay, attempt %zu", i + 1);
    now += 1000;
    pomelo_client_handle_expiry(cl, now);
    take_log();
    pomelo_client_peer_closed(cl, now);
  }
  is_str(take_log(), "disconnect peer never\n", "max_attempts: gives up");
  is_int(pomelo_client_get_state(cl), POMELO_CLIENT_IDLE, "idle after giving up");
  pomelo_client_del(cl);

  pomelo_client_settings_default(&s);
  s.random = cb_random;
  s.reconnect.max_delay_ms = 0; /* no cap */
  cl = connected(&s, NULL);
  R.rnd_mode = 1;
  is_int(pm_client_reconnect_delay(cl, 1), 1000, "jitter: random 0 gives d/2");
  R.rnd_mode = 2;
  is_int(pm_client_reconnect_delay(cl, 1), 2999, "jitter: random 2^32-1 gives 3d/2 - 1");
  is_int(pm_client_reconnect_delay(cl, 3), 11999, "attempt 3, d = 8000");
  is_int(pm_client_reconnect_delay(cl, 40), (uint64_t)UINT32_MAX / 2u + UINT32_MAX - 1u,
         "no cap: the delay saturates at 2^32-1 ms");
  R.rnd_mode = 0;
  for (i = 1; i <= 10000; i++) {
    uint32_t attempt = 1u + (uint32_t)(i % 6);
    uint64_t d = 2000ull << (attempt - 1), got = pm_client_reconnect_delay(cl, attempt);
    if (got < d / 2 || got >= d + d / 2) {
      jitter_ok = 0;
    }
  }
  ok(jitter_ok, "10000 jittered delays all in [d/2, 3d/2)");
  pomelo_client_peer_closed(cl, 5000);
  prev = pomelo_client_expiry(cl);
  ok(prev >= 5000 + 1000 && prev < 5000 + 3000, "the planned time is jittered (%llu)",
     (unsigned long long)prev);
  pomelo_client_del(cl);

  /* Reconnect disabled. */
  pomelo_client_settings_default(&s);
  s.reconnect.enabled = 0;
  cl = connected(&s, NULL);
  pomelo_client_peer_closed(cl, 5000);
  is_str(take_log(), "disconnect peer never\n", "disabled: no reconnect");
  pomelo_client_del(cl);

  /* A protocol error is a lost connection too (libpomelo2 reconnects on decode errors). */
  cl = connected(NULL, NULL);
  is_int(pomelo_client_feed(cl, (const uint8_t *)"\x04\xff\xff\xff", 4, 3000),
         POMELO_ERR_PKG_TOO_LARGE, "a package over the limit");
  is_str(take_log(), "disconnect too_large 5000\n", "lost (too_large), reconnect planned");
  is_int(pomelo_client_feed(cl, (const uint8_t *)"\x03\0\0\0", 4, 3000), 0,
         "bytes after that are ignored");
  pomelo_client_del(cl);
}

static void test_disconnect(void) {
  pomelo_client *cl = connected(NULL, NULL);
  uint32_t id;
  request(cl, "r.a", NULL, 0, "A", 1000, &id);
  drain(cl, 1000);
  pomelo_client_disconnect(cl);
  is_str(take_log(), "disconnect local never\nresponse A r.a ERR_CLOSED\n",
         "disconnect: no reconnect, pending fail");
  is_int(pomelo_client_wants_close(cl), 1, "nothing queued: close now");
  is_int(pomelo_client_get_state(cl), POMELO_CLIENT_IDLE, "idle");
  pomelo_client_disconnect(cl);
  is_str(take_log(), "", "a second disconnect does nothing");
  pomelo_client_del(cl);

  /* Queued output is flushed first: a notify then disconnect still sends the notify. */
  cl = connected(NULL, NULL);
  pomelo_client_notify(cl, "a.b.c", (const uint8_t *)"{}", 2);
  pomelo_client_disconnect(cl);
  is_int(pomelo_client_wants_close(cl), 0, "output pending: not yet");
  is_str(drain(cl, 1000), "ntf r=a.b.c {}", "the notify goes out");
  is_int(pomelo_client_wants_close(cl), 1, "then close");
  pomelo_client_peer_closed(cl, 1000);
  is_str(take_log(), "disconnect local never\n", "peer_closed after that: nothing more");
  /* Reconnecting on purpose works after a disconnect. */
  is_int(pomelo_client_connect(cl, 2000), 0, "connect again");
  is_int(pomelo_client_wants_close(cl), 0, "new socket");
  feed_pkg(cl, POMELO_PKG_HANDSHAKE, HS_OK, 2000);
  is_str(take_log(), "connected 1\n", "connected again");
  /* connect() while connected drops the old connection and its requests, quietly. */
  request(cl, "r.b", NULL, 0, "B", 2000, &id);
  pomelo_client_connect(cl, 2100);
  is_str(take_log(), "response B r.b ERR_CLOSED\n", "old requests fail, no on_disconnect");
  is_int(pomelo_client_get_state(cl), POMELO_CLIENT_CONNECTING, "connecting");
  pomelo_client_del(cl);
}

/* Callbacks that reconnect or disconnect while the connection is mid-call. */
static void test_reentrancy(void) {
  pomelo_client *cl = connected(NULL, NULL);
  uint8_t buf[1024];
  size_t n = 0;
  uint32_t id;
  request(cl, "r.a", NULL, 0, "A", 1000, &id);
  request(cl, "r.b", NULL, 0, "B", 1000, &id);
  drain(cl, 1000);
  put_response(buf, &n, 1, "{}");
  put_response(buf, &n, 2, "{}");
  put_push(buf, &n, "onX", 0, "{}");
  R.connect_in_response = 1;
  is_int(pomelo_client_feed(cl, buf, n, 1100), 0, "feed");
  is_str(take_log(), "response A r.a #1 {}\nresponse B r.b ERR_CLOSED\n",
         "connect() from a response callback: the rest of the old stream is dropped");
  is_int(pomelo_client_get_state(cl), POMELO_CLIENT_CONNECTING, "the new connection handshakes");
  ok(strncmp(drain(cl, 1100), "hs:", 3) == 0, "its handshake is queued");
  is_int(cl->nzombies, 0, "the old connection was deleted after the call");
  feed_pkg(cl, POMELO_PKG_HANDSHAKE, HS_OK, 1200);
  take_log();
  R.disconnect_in_push = 1;
  n = 0;
  put_push(buf, &n, "onX", 0, "1");
  put_push(buf, &n, "onX", 0, "2");
  pomelo_client_feed(cl, buf, n, 1300);
  is_str(take_log(), "push default onX 1\ndisconnect local never\n",
         "disconnect() from a push callback stops the stream");
  R.disconnect_in_push = 0;
  pomelo_client_del(cl);
}

/* ---------------------------------------------------------------------------------------------
 * One server stream at every split point
 * ------------------------------------------------------------------------------------------- */

static void cb_connected_requests(pomelo_client *cl, const pomelo_json_value *resp, void *ud) {
  cb_connected(cl, resp, ud);
  request(cl, "connector.entryHandler.enter", "{\"u\":1}", 0, "E", 0, NULL);
  request(cl, "chat.chatHandler.send", "{}", 0, "S", 0, NULL);
  request(cl, "x.y.z", "{}", 0, "X", 0, NULL);
}

static size_t split_stream(uint8_t *buf) {
  size_t n = 0;
  put_pkg(buf, &n, POMELO_PKG_HANDSHAKE, CHAT_HS, strlen(CHAT_HS));
  put_pkg(buf, &n, POMELO_PKG_HEARTBEAT, NULL, 0);
  put_push(buf, &n, "onAdd", 0, "{\"user\":\"bob\"}");
  put_response(buf, &n, 2, "{\"code\":200}");
  put_push(buf, &n, NULL, 3, "{}");
  put_pkg(buf, &n, POMELO_PKG_HEARTBEAT, NULL, 0);
  put_response(buf, &n, 1, "{\"users\":[\"alice\",\"bob\"]}");
  put_push(buf, &n, NULL, 99, "");
  put_pkg(buf, &n, 9, "?", 1); /* an unknown package type: ignored by a client */
  put_response(buf, &n, 3, "");
  put_push(buf, &n, "onLeave", 0, "{\"user\":\"bob\"}");
  return n;
}

static void run_split(const uint8_t *buf, size_t n, size_t first, size_t chunk, char *log,
                      char *out) {
  pomelo_client_callbacks cb = callbacks();
  pomelo_client *cl = NULL;
  size_t pos = 0;
  cb.on_connected = cb_connected_requests;
  memset(&R, 0, sizeof R);
  pomelo_client_new(&cl, NULL, &cb, NULL, NULL);
  pomelo_client_connect(cl, 0);
  drain(cl, 0);
  out[0] = '\0';
  while (pos < n) {
    size_t len = pos == 0 && first ? first : chunk;
    if (len > n - pos) {
      len = n - pos;
    }
    pomelo_client_feed(cl, buf + pos, len, 0);
    strcat(out, drain(cl, 0));
    strcat(out, ";");
    pos += len;
  }
  /* Output per chunk depends on the split; what matters is the concatenation. */
  {
    char *p, *q;
    for (p = q = out; *p; p++) {
      if (*p != ';') {
        *q++ = *p;
      }
    }
    *q = '\0';
  }
  strcpy(log, take_log());
  pomelo_client_del(cl);
}

static void test_splits(void) {
  static uint8_t buf[4096];
  static char want_log[sizeof R.log], want_out[8192], log[sizeof R.log], out[8192];
  size_t n = split_stream(buf), i;
  int same = 1;
  run_split(buf, n, 0, n, want_log, want_out);
  is_str(want_log,
         "connected 1\npush default onAdd {\"user\":\"bob\"}\n"
         "response S chat.chatHandler.send #2 {\"code\":200}\n"
         "push default gate.gateHandler.queryEntry {}\n"
         "response E connector.entryHandler.enter #1 {\"users\":[\"alice\",\"bob\"]}\n"
         "push default 99 \nresponse X x.y.z #3 \npush default onLeave {\"user\":\"bob\"}\n",
         "the whole stream at once");
  is_str(want_out, "ack|req#1 c=2 {\"u\":1}|req#2 c=1 {}|req#3 r=x.y.z {}",
         "ACK then the requests (issued from on_connected), compressed");
  for (i = 1; i < n; i++) {
    run_split(buf, n, i, n, log, out);
    if (strcmp(log, want_log) != 0 || strcmp(out, want_out) != 0) {
      same = 0;
      diag("split at %zu differs", i);
      break;
    }
  }
  ok(same, "split in two at each of the %zu points: same events and output", n - 1);
  same = 1;
  for (i = 1; i < 64; i++) {
    run_split(buf, n, 0, i, log, out);
    if (strcmp(log, want_log) != 0 || strcmp(out, want_out) != 0) {
      same = 0;
      diag("chunks of %zu differ", i);
      break;
    }
  }
  ok(same, "fed in chunks of 1..63 bytes: same events and output");
}

/* ---------------------------------------------------------------------------------------------
 * Against a server-role connection of ours
 * ------------------------------------------------------------------------------------------- */

typedef struct srv_rec {
  char routes[512];
} srv_rec;

static void srv_on_message(pomelo_conn *c, const pomelo_msg *m, void *ud) {
  srv_rec *sr = ud;
  pomelo_msg resp;
  size_t len = strlen(sr->routes);
  if (m->route_compressed) {
    snprintf(sr->routes + len, sizeof sr->routes - len, "%u,", (unsigned)m->route_code);
  } else {
    snprintf(sr->routes + len, sizeof sr->routes - len, "%.*s,", (int)m->route_len, m->route);
  }
  if (m->type == POMELO_MSG_REQUEST) {
    memset(&resp, 0, sizeof resp);
    resp.type = POMELO_MSG_RESPONSE;
    resp.id = m->id;
    resp.body = (const uint8_t *)"{\"code\":200}";
    resp.body_len = 12;
    pomelo_conn_send(c, &resp);
  }
}

static size_t conn_drain(pomelo_conn *c, uint8_t *out, size_t cap, uint64_t now) {
  struct iovec iov[8];
  size_t total = 0;
  int i, n;
  while ((n = pomelo_conn_out_iov(c, iov, 8)) > 0) {
    size_t got = 0;
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

/* Moves bytes both ways until both sides are quiet. */
static void pump(pomelo_client *cl, pomelo_conn *sv, uint64_t now) {
  uint8_t buf[8192];
  int round;
  for (round = 0; round < 8; round++) {
    size_t n = drain_bytes(cl, buf, sizeof buf, now);
    pomelo_conn_feed(sv, buf, n, now);
    n = conn_drain(sv, buf, sizeof buf, now);
    pomelo_client_feed(cl, buf, n, now);
  }
}

/* `ws`: over WebSocket (the server sniffs the upgrade, as the real hybrid connector does). */
static void test_against_our_server(int ws) {
  static const char *const routes[] = {"chat.chatHandler.send", "connector.entryHandler.enter",
                                       "gate.gateHandler.queryEntry"};
  pomelo_dict *dict = NULL;
  pomelo_conn_settings ss;
  pomelo_conn_callbacks scb;
  pomelo_conn *sv = NULL;
  pomelo_client_settings cs;
  pomelo_client *cl;
  const char *tr = ws ? "ws" : "tcp";
  srv_rec sr;
  uint64_t now = 0;
  int k, alive = 1;

  pomelo_client_settings_default(&cs);
  if (ws) {
    cs.conn.transport = POMELO_TRANSPORT_WS;
    cs.random = cb_random;
  }
  cl = new_client(&cs, NULL);
  if (!cl) {
    ok(ws, "%s: a client (WebSocket unsupported by this build)", tr);
    return;
  }
  memset(&sr, 0, sizeof sr);
  memset(&scb, 0, sizeof scb);
  scb.on_message = srv_on_message;
  pomelo_conn_settings_default(&ss);
  ss.heartbeat_interval_ms = 2000;
  if (pomelo_dict_new(&dict, NULL, routes, 3, NULL, 0) != 0) {
    ok(0, "%s: a dictionary", tr);
    pomelo_client_del(cl);
    return;
  }
  ss.dict = dict;
  for (k = 0; k < 2; k++) {
    char want[256];
    pomelo_conn_new(&sv, &ss, &scb, NULL, now, &sr);
    pomelo_client_connect(cl, now);
    pump(cl, sv, now);
    is_int(pomelo_client_get_state(cl), POMELO_CLIENT_CONNECTED, "%s connect %d: connected", tr,
           k + 1);
    is_int(pomelo_conn_get_state(sv), POMELO_CONN_WORKING, "%s connect %d: server working", tr,
           k + 1);
    request(cl, "connector.entryHandler.enter", "{}", 0, "E", now, NULL);
    request(cl, "area.playerHandler.move", "{}", 0, "M", now, NULL);
    pump(cl, sv, now);
    snprintf(want, sizeof want,
             "connected 1\nresponse E connector.entryHandler.enter #%d {\"code\":200}\n"
             "response M area.playerHandler.move #%d {\"code\":200}\n",
             2 * k + 1, 2 * k + 2);
    is_str(take_log(), want, "%s connect %d: both answered", tr, k + 1);
    is_str(sr.routes, "2,area.playerHandler.move,", "%s connect %d: the server got code 2", tr,
           k + 1);
    sr.routes[0] = '\0';
    if (k == 0) {
      pomelo_conn_del(sv);
      pomelo_client_peer_closed(cl, now);
      take_log();
      now = pomelo_client_expiry(cl);
      pomelo_client_handle_expiry(cl, now);
      take_log();
    }
  }
  /* Heartbeats keep both sides alive for a long time. */
  while (now < 60000) {
    uint64_t t = PM_MIN(pomelo_client_expiry(cl), pomelo_conn_expiry(sv));
    now = t;
    pomelo_client_handle_expiry(cl, now);
    pomelo_conn_handle_expiry(sv, now);
    pump(cl, sv, now);
    if (pomelo_client_get_state(cl) != POMELO_CLIENT_CONNECTED ||
        pomelo_conn_get_state(sv) != POMELO_CONN_WORKING) {
      alive = 0;
      break;
    }
  }
  ok(alive, "%s: heartbeats keep both alive for a minute", tr);
  is_str(take_log(), "", "%s: no events meanwhile", tr);
  pomelo_conn_del(sv);
  pomelo_client_del(cl);
  pomelo_dict_del(dict);
}

/* ---------------------------------------------------------------------------------------------
 * Settings, transports, failing allocators
 * ------------------------------------------------------------------------------------------- */

static void test_settings(void) {
  pomelo_client_settings s;
  pomelo_client *cl = NULL;
  int rc;
  pomelo_client_settings_default(&s);
  is_int(s.request_timeout_ms, 10000, "default request timeout");
  ok(s.reconnect.enabled && s.reconnect.delay_ms == 2000 && s.reconnect.max_delay_ms == 30000 &&
         s.reconnect.exponential && s.reconnect.max_attempts == 0,
     "default reconnect policy (libpomelo2's)");
  is_int(s.conn.role, POMELO_ROLE_CLIENT, "client role");
  is_int(pomelo_client_new(NULL, NULL, NULL, NULL, NULL), POMELO_ERR_INVALID_ARG, "out NULL");
  s.conn.max_body = POMELO_PKG_BODY_MAX + 1u;
  is_int(pomelo_client_new(&cl, &s, NULL, NULL, NULL), POMELO_ERR_INVALID_ARG, "bad conn setting");
  ok(cl == NULL, "nothing made");
  pomelo_client_settings_default(&s);
  s.conn.role = POMELO_ROLE_SERVER;
  is_int(pomelo_client_new(&cl, &s, NULL, NULL, (void *)&s), 0, "role forced to client");
  ok(pomelo_client_user_data(cl) == (void *)&s, "user_data");
  pomelo_client_del(cl);
  pomelo_client_del(NULL);
  cl = NULL;
  /* WebSocket: needs randomness; the connection reports what the build can do. */
  pomelo_client_settings_default(&s);
  s.conn.transport = POMELO_TRANSPORT_WS;
  rc = pomelo_client_new(&cl, &s, NULL, NULL, NULL);
  ok(rc == POMELO_ERR_INVALID_ARG || rc == POMELO_ERR_UNSUPPORTED,
     "WebSocket without a random callback: %s", pomelo_err_name(rc));
  s.random = cb_random;
  rc = pomelo_client_new(&cl, &s, NULL, NULL, NULL);
  ok(rc == 0 || rc == POMELO_ERR_UNSUPPORTED, "WebSocket with one: %s", pomelo_err_name(rc));
  if (rc == 0) {
    uint8_t buf[1024];
    size_t n;
    pomelo_client_connect(cl, 0);
    n = drain_bytes(cl, buf, sizeof buf, 0);
    ok(n > 4 && memcmp(buf, "GET ", 4) == 0, "over WebSocket the client starts with an upgrade");
    pomelo_client_del(cl);
  }
}

/* Every allocation failing in turn over connect, handshake with a dictionary, requests,
 * responses, pushes and del: no crash, no leak, every request callback exactly once. */
static int nomem_calls;
static void cb_count(pomelo_client *cl, int status, const char *route, size_t len,
                     const pomelo_msg *m, void *data) {
  (void)cl;
  (void)status;
  (void)route;
  (void)len;
  (void)m;
  (*(int *)data)++;
  nomem_calls++;
}

static void test_nomem(void) {
  long n;
  int clean = 1, saw = 0, once = 1;
  for (n = 1; n < 1000; n++) {
    test_alloc ta;
    pomelo_client *cl = NULL;
    pomelo_client_callbacks cb = callbacks();
    int counts[7], issued[7], i, rc;
    uint8_t buf[4096];
    size_t len = 0;
    memset(counts, 0, sizeof counts);
    memset(issued, 0, sizeof issued);
    memset(&R, 0, sizeof R);
    test_alloc_init(&ta, n);
    rc = pomelo_client_new(&cl, NULL, &cb, &ta.a, NULL);
    if (rc == 0) {
      pomelo_client_on(cl, "onAdd", cb_push, TAG("add"));
      pomelo_client_connect(cl, 0);
      drain_bytes(cl, NULL, 0, 0);
      feed_pkg(cl, POMELO_PKG_HANDSHAKE, CHAT_HS, 0);
      for (i = 0; i < 6; i++) {
        static const char *const routes[] = {"connector.entryHandler.enter", "a.b.c",
                                             "chat.chatHandler.send"};
        const char *r = routes[i % 3];
        issued[i] = pomelo_client_request(cl, r, (const uint8_t *)"{}", 2, i == 5 ? 10 : 0,
                                          cb_count, &counts[i], 0, NULL) == 0;
      }
      pomelo_client_notify(cl, "chat.chatHandler.send", NULL, 0);
      drain_bytes(cl, NULL, 0, 0);
      put_response(buf, &len, 2, "{}");
      put_push(buf, &len, NULL, 1, "{}");
      put_push(buf, &len, "onAdd", 0, "{}");
      put_response(buf, &len, 1, "{}");
      rc = pomelo_client_feed(cl, buf, len, 5);
      if (rc == POMELO_ERR_NOMEM && !strstr(R.log, "disconnect error")) {
        clean = 0;
        diag("allocation %ld failing: a failed feed did not lose the connection (error)", n);
      }
      pomelo_client_handle_expiry(cl, 20);
      pomelo_client_peer_closed(cl, 30);
      pomelo_client_handle_expiry(cl, 5000);
      pomelo_client_connect(cl, 5000);
      feed_pkg(cl, POMELO_PKG_HANDSHAKE, CHAT_HS_CACHED, 5000);
      issued[6] =
          pomelo_client_request(cl, "a.b.c", NULL, 0, 0, cb_count, &counts[6], 5000, NULL) == 0;
      pomelo_client_del(cl);
      for (i = 0; i < 7; i++) {
        if (counts[i] != issued[i]) {
          once = 0;
          diag("allocation %ld failing: request %d called %d times (issued %d)", n, i, counts[i],
               issued[i]);
        }
      }
    } else if (rc != POMELO_ERR_NOMEM) {
      clean = 0;
    }
    saw |= ta.failed > 0;
    if (ta.live != 0) {
      clean = 0;
      diag("leak with allocation %ld failing (%ld blocks)", n, ta.live);
    }
    if (!ta.failed) {
      break;
    }
  }
  ok(saw && clean,
     "every failing allocation: no crash, no leak, a failed feed only loses the connection (%ld "
     "runs)",
     n);
  ok(once, "every issued request's callback ran exactly once");
}

/* Protobuf against a server connection with protos: requests encoded with the client protos,
 * responses decoded by the request's route, pushes by theirs; the set is cached across a
 * reconnect and its version sent, and a server that then leaves it out does not lose it. */
typedef struct pb_srv {
  char body_hex[256];
  char hs[512];
} pb_srv;

static void pb_srv_message(pomelo_conn *c, const pomelo_msg *m, void *ud) {
  pb_srv *ps = ud;
  size_t i, n = 0;
  pomelo_msg resp;
  for (i = 0; i < m->body_len && n + 3 < sizeof ps->body_hex; i++) {
    n += (size_t)snprintf(ps->body_hex + n, sizeof ps->body_hex - n, "%02x", m->body[i]);
  }
  ps->body_hex[n] = 0;
  if (m->type == POMELO_MSG_REQUEST) {
    memset(&resp, 0, sizeof resp);
    resp.type = POMELO_MSG_RESPONSE;
    resp.id = m->id;
    resp.body = (const uint8_t *)"\x08\xc8\x01\x12\x02ok"; /* {"code":200,"msg":"ok"} */
    resp.body_len = 7;
    pomelo_conn_send(c, &resp);
    memset(&resp, 0, sizeof resp);
    resp.type = POMELO_MSG_PUSH;
    resp.route = "onChat";
    resp.route_len = 6;
    resp.body = (const uint8_t *)"\x0a\x02hi\x12\x05"
                                 "alice\x1a\x01*";
    resp.body_len = 14;
    pomelo_conn_send(c, &resp);
  }
}

static void pb_srv_handshake(pomelo_conn *c, const pomelo_json_value *req, void *ud) {
  pb_srv *ps = ud;
  pomelo_json_writer *w;
  const char *t;
  size_t n;
  pomelo_json_writer_new(&w, NULL, 0);
  pomelo_json_write_value(w, pomelo_json_get(req, "sys"));
  t = pomelo_json_writer_data(w, &n);
  snprintf(ps->hs, sizeof ps->hs, "%.*s", (int)n, t);
  pomelo_json_writer_del(w);
  pomelo_conn_handshake_reply(c, 200, NULL, 0);
}

static void test_protobuf(void) {
  static const char sp[] = "{\"onChat\":{\"required string msg\":1,\"required string from\":2,"
                           "\"required string target\":3},\"connector.h.pb\":{\"required uInt32 "
                           "code\":1,\"optional string msg\":2}}";
  static const char cp[] = "{\"connector.h.pb\":{\"required string name\":1,\"optional sInt32 "
                           "n\":2}}";
  pomelo_protos *protos = NULL;
  pomelo_conn_settings ss;
  pomelo_conn_callbacks scb;
  pomelo_conn *sv = NULL;
  pomelo_client *cl;
  pb_srv ps;
  int k;
  cl = new_client(NULL, NULL);
  if (!cl || pomelo_protos_new(&protos, NULL, sp, strlen(sp), cp, strlen(cp), NULL, NULL) != 0) {
    ok(0, "protobuf: client and protos");
    pomelo_client_del(cl);
    return;
  }
  memset(&ps, 0, sizeof ps);
  memset(&scb, 0, sizeof scb);
  scb.on_message = pb_srv_message;
  scb.on_handshake = pb_srv_handshake;
  pomelo_conn_settings_default(&ss);
  ss.protos = protos;
  for (k = 0; k < 2; k++) {
    pomelo_conn_new(&sv, &ss, &scb, NULL, 0, &ps);
    pomelo_client_connect(cl, 0);
    pump(cl, sv, 0);
    take_log();
    if (k == 0) {
      ok(!strstr(ps.hs, "protoVersion"), "first handshake: no protoVersion");
    } else {
      char want[128];
      snprintf(want, sizeof want, "\"protoVersion\":\"%s\"", pomelo_protos_version(protos));
      ok(strstr(ps.hs, want) != NULL, "second handshake: the cached protoVersion (%s)", ps.hs);
    }
    is_int(request(cl, "connector.h.pb", "{\"name\":\"bob\",\"n\":-2,\"x\":1}", 0, "P", 0, NULL), 0,
           "connect %d: a protobuf request", k + 1);
    pump(cl, sv, 0);
    is_str(ps.body_hex, "0a03626f621003", "connect %d: sent as protobuf, unknown key dropped",
           k + 1);
    is_str(take_log(),
           k == 0 ? "response P connector.h.pb #1 {\"code\":200,\"msg\":\"ok\"}\n"
                    "push default onChat {\"msg\":\"hi\",\"from\":\"alice\",\"target\":\"*\"}\n"
                  : "response P connector.h.pb #3 {\"code\":200,\"msg\":\"ok\"}\n"
                    "push default onChat {\"msg\":\"hi\",\"from\":\"alice\",\"target\":\"*\"}\n",
           "connect %d: protobuf response and push read as JSON", k + 1);
    is_int(request(cl, "connector.h.pb", "{\"n\":1}", 0, "P", 0, NULL), POMELO_ERR_PB_REQUIRED,
           "connect %d: a body without a required field is refused", k + 1);
    is_int(request(cl, "connector.h.pb", "not json", 0, "P", 0, NULL), POMELO_ERR_JSON_SYNTAX,
           "connect %d: so is one that is not JSON", k + 1);
    is_int(request(cl, "other", "raw", 0, "R", 0, NULL), 0, "connect %d: other routes as given",
           k + 1);
    pump(cl, sv, 0);
    is_str(ps.body_hex, "726177", "connect %d: untouched", k + 1);
    take_log();
    pomelo_conn_del(sv);
    sv = NULL;
  }
  pomelo_client_del(cl);
  pomelo_protos_del(protos);
}

int main(void) {
  test_handshake();
  test_handshake_refused();
  test_requests();
  test_request_timeouts();
  test_id_wrap();
  test_pushes();
  test_dictionary();
  test_kick();
  test_lost_and_reconnect();
  test_disconnect();
  test_reentrancy();
  test_splits();
  test_against_our_server(0);
  test_against_our_server(1);
  test_settings();
  test_nomem();
  test_protobuf();
  return done_testing();
}
