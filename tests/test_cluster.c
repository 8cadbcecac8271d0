/* The cluster core over an in-process bus (examples/common/membus.c): discovery, routing,
 * forwards and their failures, remote calls, session operations, cluster channels, bindings,
 * the envelopes against hostile bytes, and allocation failures.
 * SPDX-License-Identifier: MIT
 */
#include <pomelo/pomelo.h>

#include "../examples/common/membus.h"
#include "cluster/cluster_int.h"
#include "tap.h"
#include "testutil.h"

/* ---------------------------------------------------------------------------------------------
 * A little world: servers with clusters on one bus, clients as sessions fed by hand
 * ------------------------------------------------------------------------------------------- */

typedef struct node {
  pomelo_server *srv;
  pomelo_cluster *c;
} node;

static membus *bus;
static uint64_t now_ms = 1000;
static char events[4096]; /* on_server / on_member_lost, "join:id leave:id lost:uid@fid" */

static void ev_add(const char *what, const char *a, const char *b) {
  size_t l = strlen(events);
  snprintf(events + l, sizeof events - l, "%s%s:%s%s%s", l ? " " : "", what, a, b ? "@" : "",
           b ? b : "");
}

static void on_server(pomelo_cluster *c, const pomelo_cluster_server *s, pomelo_cluster_event e,
                      void *ud) {
  (void)c;
  (void)ud;
  if (e != POMELO_CLUSTER_UPDATE) {
    ev_add(e == POMELO_CLUSTER_JOIN ? "join" : "leave", s->id, NULL);
  }
}

static void on_member_lost(pomelo_cluster *c, pomelo_cluster_channel *ch, const char *uid,
                           size_t len, const char *fid, void *ud) {
  char u[64];
  (void)c;
  (void)ch;
  (void)ud;
  snprintf(u, sizeof u, "%.*s", (int)len, uid);
  ev_add("lost", u, fid);
}

static node make_node(const char *id, const char *type, uint16_t client_port,
                      pomelo_uid_policy policy, const pomelo_allocator *a) {
  pomelo_server_settings ss;
  pomelo_cluster_settings cs;
  pomelo_cluster_callbacks cb;
  node n = {NULL, NULL};
  static int runs;
  char inst[16];
  pomelo_server_settings_default(&ss);
  ss.server_id = id;
  ss.server_type = type;
  ss.uid_policy = policy;
  if (pomelo_server_new(&n.srv, &ss, NULL, a, NULL) != 0) {
    return n;
  }
  pomelo_cluster_settings_default(&cs);
  cs.client_host = "127.0.0.1";
  cs.client_port = client_port;
  cs.announce_ms = 1000;
  snprintf(inst, sizeof inst, "run%d", ++runs);
  cs.instance = inst;
  memset(&cb, 0, sizeof cb);
  cb.on_server = on_server;
  cb.on_member_lost = on_member_lost;
  if (pomelo_cluster_new(&n.c, n.srv, &cs, &cb, a, NULL) != 0 ||
      membus_attach(bus, n.c, now_ms) != 0) {
    pomelo_cluster_del(n.c);
    pomelo_server_del(n.srv);
    n.srv = NULL;
    n.c = NULL;
  }
  return n;
}

static void kill_node(node *n, int say_bye) {
  if (say_bye) {
    pomelo_cluster_del(n->c);
    membus_detach(bus, n->c);
  } else {
    membus_detach(bus, n->c); /* gone from the bus without a word (kill -9) */
    pomelo_cluster_set_bus(n->c, NULL, NULL);
    pomelo_cluster_del(n->c);
  }
  pomelo_server_del(n->srv);
  n->c = NULL;
  n->srv = NULL;
}

/* Runs the bus and the timers of every node until nothing moves, at time `t`. */
static void settle(node *nodes, size_t n, uint64_t t) {
  size_t i, rounds;
  now_ms = t;
  for (rounds = 0; rounds < 100; rounds++) {
    for (i = 0; i < n; i++) {
      if (nodes[i].srv && pomelo_server_expiry(nodes[i].srv) <= t) {
        pomelo_server_handle_expiry(nodes[i].srv, t);
      }
    }
    if (membus_run(bus, t) == 0) {
      break;
    }
  }
}

/* Moves time forward by `ms` in steps of 100 ms, as a loop would. */
static void advance(node *nodes, size_t n, uint64_t ms) {
  uint64_t end = now_ms + ms;
  while (now_ms < end) {
    settle(nodes, n, PM_MIN(now_ms + 100, end));
  }
}

static uint8_t scratch[1 << 16];

static int feed_pkg(pomelo_session *s, int type, const void *body, size_t len) {
  size_t n;
  pomelo_pkg_encode(scratch, sizeof scratch, type, body, len, &n);
  return pomelo_session_feed(s, scratch, n, now_ms);
}

static int feed_msg(pomelo_session *s, int type, uint32_t id, const char *route, const char *body) {
  uint8_t m[8192];
  size_t n;
  pomelo_msg msg;
  memset(&msg, 0, sizeof msg);
  msg.type = (pomelo_msg_type)type;
  msg.id = id;
  msg.route = route;
  msg.route_len = strlen(route);
  msg.body = (const uint8_t *)body;
  msg.body_len = body ? strlen(body) : 0;
  if (pomelo_msg_encode(m, sizeof m, &msg, &n) != 0) {
    return -1;
  }
  return feed_pkg(s, POMELO_PKG_DATA, m, n);
}

/* The session's output as text "push <route> <body>|resp <id> <body>|<type>:<body>"; `frame`
 * (may be NULL) gets the first iovec's base. */
static const char *drain(pomelo_session *s, const void **frame) {
  static char text[1 << 15];
  static uint8_t buf[1 << 16];
  struct iovec iov[32];
  size_t total = 0, tl = 0, pos = 0;
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
      if (total + iov[i].iov_len <= sizeof buf) {
        memcpy(buf + total, iov[i].iov_base, iov[i].iov_len);
        total += iov[i].iov_len;
      }
      got += iov[i].iov_len;
    }
    pomelo_session_out_consume(s, got, now_ms);
  }
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

static const char *HS = "{\"sys\":{\"type\":\"pomelo-test\",\"version\":\"0.0.1\"}}";

static pomelo_session *join(pomelo_server *srv) {
  pomelo_session *s = NULL;
  if (pomelo_server_accept(srv, now_ms, NULL, &s) != 0) {
    return NULL;
  }
  feed_pkg(s, POMELO_PKG_HANDSHAKE, HS, strlen(HS));
  feed_pkg(s, POMELO_PKG_HANDSHAKE_ACK, NULL, 0);
  drain(s, NULL);
  return s;
}

/* ---------------------------------------------------------------------------------------------
 * Handlers
 * ------------------------------------------------------------------------------------------- */

static char ID_CHAT1[] = "chat-1", ID_CHAT2[] = "chat-2";

static pomelo_request *held[128];
static int nheld;

/* Answers {"by":server id,"uid":uid,"rid":setting rid,"fid":frontend id,"body":body}. */
static void h_who(pomelo_request *req, void *ud) {
  const pomelo_session *s = pomelo_request_session(req);
  const pomelo_msg *m = pomelo_request_msg(req);
  char body[1024];
  size_t ul = 0, rl = 0;
  const char *uid = s ? pomelo_session_uid(s, &ul) : NULL;
  const char *rid = s ? pomelo_session_get(s, "rid", 3, &rl) : NULL;
  snprintf(body, sizeof body,
           "{\"by\":\"%s\",\"uid\":\"%.*s\",\"rid\":\"%.*s\",\"fid\":\"%s\","
           "\"body\":%.*s}",
           (const char *)ud, (int)ul, uid ? uid : "", (int)rl, rid ? rid : "",
           s ? pomelo_session_frontend_id(s) : "", (int)m->body_len, (const char *)m->body);
  pomelo_request_respond(req, body, strlen(body));
}

static void h_hold(pomelo_request *req, void *ud) {
  (void)ud;
  if (nheld < 128) {
    held[nheld++] = req;
  } else {
    pomelo_request_drop(req);
  }
}

static void h_drop(pomelo_request *req, void *ud) {
  (void)ud;
  pomelo_request_drop(req);
}

static int done_calls, done_rc;
static char done_body[1024];
static void on_done(pomelo_cluster *c, int rc, const char *body, size_t len, void *arg) {
  (void)c;
  (void)arg;
  done_calls++;
  done_rc = rc;
  snprintf(done_body, sizeof done_body, "%.*s", (int)len, body ? body : "");
}

/* ---------------------------------------------------------------------------------------------
 * Tests
 * ------------------------------------------------------------------------------------------- */

static void test_crc32(void) {
  /* Values printed by the npm package crc@0.2.0 (require('crc').crc32(s)), which pomelo and
   * chatofpomelo use. */
  is_int(pomelo_cluster_crc32("alice", 5), 663665735, "crc32 alice");
  is_int(pomelo_cluster_crc32("1", 1), -2082672713, "crc32 1 (negative)");
  is_int(pomelo_cluster_crc32("\xc3\xa9", 2), 198489425, "crc32 of U+00E9 (one UTF-16 unit)");
  is_int(pomelo_cluster_crc32("\xf0\x9f\x98\x80", 4), 724654657, "crc32 of an emoji (two units)");
  is_int(pomelo_cluster_crc32("", 0), 0, "crc32 of the empty string");
}

static void test_discovery_and_forward(void) {
  node n[4];
  pomelo_cluster_server v[8];
  pomelo_cluster_stats st;
  pomelo_session *s;
  char want[512];
  size_t i;
  const char *out;
  events[0] = 0;
  n[0] = make_node("gate-1", "gate", 3014, POMELO_UID_MANY, NULL);
  n[1] = make_node("connector-1", "connector", 3050, POMELO_UID_MANY, NULL);
  n[2] = make_node("chat-1", "chat", 0, POMELO_UID_MANY, NULL);
  n[3] = make_node("chat-2", "chat", 0, POMELO_UID_MANY, NULL);
  ok(n[0].c && n[1].c && n[2].c && n[3].c, "four servers with clusters");
  settle(n, 4, now_ms);
  for (i = 0; i < 4; i++) {
    is_int(pomelo_cluster_servers(n[i].c, NULL, v, 8), 4, "server %zu sees the four", i);
  }
  is_int(pomelo_cluster_servers(n[1].c, "chat", v, 8), 2, "two chat servers");
  is_str(v[0].id, "chat-1", "in id order");
  is_int(v[0].frontend, 0, "a backend");
  is_int(pomelo_cluster_find(n[0].c, "connector-1", v), 0, "the gate finds the connector");
  is_int(v[0].client_port, 3050, "with its client port");
  is_str(v[0].client_host, "127.0.0.1", "and host");
  is_int(pomelo_cluster_pick(n[0].c, "connector", "alice", 5, v), 0, "the gate picks for alice");
  is_str(v[0].id, "connector-1", "the only connector");

  /* A client's chat request routed by crc32 of its session's rid. */
  is_int(pomelo_cluster_set_router(n[1].c, "chat", POMELO_ROUTE_HASH, "rid", NULL, NULL), 0,
         "route chat by rid");
  pomelo_server_on(n[2].srv, "chat.chatHandler.send", h_who, ID_CHAT1);
  pomelo_server_on(n[3].srv, "chat.chatHandler.send", h_who, ID_CHAT2);
  s = join(n[1].srv);
  pomelo_session_bind(s, "alice*room1", 11);
  pomelo_session_set(s, "rid", 3, "room1", 5);
  feed_msg(s, POMELO_MSG_REQUEST, 7, "chat.chatHandler.send", "{\"content\":\"hi\"}");
  settle(n, 4, now_ms);
  snprintf(want, sizeof want,
           "resp 7 {\"by\":\"chat-%d\",\"uid\":\"alice*room1\",\"rid\":\"room1\","
           "\"fid\":\"connector-1\",\"body\":{\"content\":\"hi\"}}",
           (int)((pomelo_cluster_crc32("room1", 5) < 0 ? -(int64_t)pomelo_cluster_crc32("room1", 5)
                                                       : pomelo_cluster_crc32("room1", 5)) %
                 2) +
               1);
  out = drain(s, NULL);
  is_str(out, want, "answered by the chat server of crc32(rid) %% 2, session and body intact");
  pomelo_session_set(s, "rid", 3, "room2", 5);
  feed_msg(s, POMELO_MSG_REQUEST, 8, "chat.chatHandler.send", "{}");
  settle(n, 4, now_ms);
  out = drain(s, NULL);
  ok(strstr(out, "resp 8 {\"by\":\"chat-") != NULL, "another room: answered too");
  pomelo_cluster_get_stats(n[1].c, &st);
  is_int(st.forwards, 2, "two forwards");
  is_int(st.forward_answers, 2, "two answers delivered");
  is_int(st.in_flight, 0, "nothing in flight");

  /* A notify: published, never answered. */
  feed_msg(s, POMELO_MSG_NOTIFY, 0, "chat.chatHandler.send", "{}");
  settle(n, 4, now_ms);
  is_str(drain(s, NULL), "", "a forwarded notify gets no answer");
  pomelo_cluster_get_stats(n[1].c, &st);
  is_int(st.forwards, 3, "counted as a forward");

  /* A type nobody runs: {"code":500} at once. */
  feed_msg(s, POMELO_MSG_REQUEST, 9, "area.areaHandler.move", "{}");
  is_str(drain(s, NULL), "resp 9 {\"code\":500}", "no server of the type: 500 at once");

  /* A remote route is not reachable by clients. */
  pomelo_cluster_on(n[2].c, "chat.chatRemote.add", h_who, ID_CHAT1);
  pomelo_cluster_on(n[3].c, "chat.chatRemote.add", h_who, ID_CHAT2);
  pomelo_cluster_set_router(n[1].c, "chat", POMELO_ROUTE_ROUND_ROBIN, NULL, NULL, NULL);
  feed_msg(s, POMELO_MSG_REQUEST, 10, "chat.chatRemote.add", "{}");
  feed_msg(s, POMELO_MSG_REQUEST, 11, "chat.chatRemote.add", "{}");
  settle(n, 4, now_ms);
  is_str(drain(s, NULL), "resp 10 {\"code\":500}|resp 11 {\"code\":500}",
         "clients cannot call remote routes (on either server)");

  /* Remote calls: by id, and by the router. */
  done_calls = 0;
  is_int(pomelo_cluster_call(n[1].c, "chat-2", s, "chat.chatRemote.add", "{\"x\":1}", 7, on_done,
                             NULL),
         0, "call chat-2");
  is_int(done_calls, 0, "done never runs inside the call");
  settle(n, 4, now_ms);
  is_int(done_calls, 1, "answered");
  is_int(done_rc, 0, "rc 0");
  is_str(done_body,
         "{\"by\":\"chat-2\",\"uid\":\"alice*room1\",\"rid\":\"room2\",\"fid\":\"connector-1\","
         "\"body\":{\"x\":1}}",
         "with the caller's session");
  is_int(pomelo_cluster_call(n[1].c, NULL, NULL, "chat.chatRemote.add", NULL, 0, on_done, NULL), 0,
         "call without a session");
  settle(n, 4, now_ms);
  is_int(done_calls, 2, "answered");
  ok(strstr(done_body, "\"uid\":\"\",\"rid\":\"\",\"fid\":\"\",\"body\":{}") != NULL,
     "an empty session and {}");
  is_int(pomelo_cluster_call(n[1].c, "nosuch", NULL, "chat.chatRemote.add", NULL, 0, on_done, NULL),
         POMELO_ERR_NOT_FOUND, "call to an unknown server");
  is_int(pomelo_cluster_call(n[1].c, NULL, NULL, "nodots", NULL, 0, on_done, NULL),
         POMELO_ERR_ROUTE, "call to a route without a type");
  is_int(
      pomelo_cluster_call(n[1].c, "chat-1", NULL, "chat.chatRemote.nosuch", NULL, 0, on_done, NULL),
      0, "call of an unknown remote route");
  settle(n, 4, now_ms);
  is_str(done_body, "{\"code\":500}", "its answer is the dialect's error");

  /* Join and leave events: chat-2 says bye. */
  events[0] = 0;
  kill_node(&n[3], 1);
  settle(n, 3, now_ms);
  is_str(events, "leave:chat-2 leave:chat-2 leave:chat-2", "everyone saw chat-2 leave");
  is_int(pomelo_cluster_servers(n[1].c, "chat", v, 8), 1, "one chat server left");
  for (i = 0; i < 3; i++) {
    kill_node(&n[i], 1);
  }
  membus_run(bus, now_ms);
  ok(membus_idle(bus), "bus idle");
}

static void test_failures(void) {
  node n[3];
  pomelo_cluster_stats st;
  pomelo_session *s;
  char big[3000];
  int i;
  n[0] = make_node("connector-1", "connector", 3050, POMELO_UID_MANY, NULL);
  n[1] = make_node("chat-1", "chat", 0, POMELO_UID_MANY, NULL);
  settle(n, 2, now_ms);
  pomelo_server_on(n[1].srv, "chat.chatHandler.hold", h_hold, NULL);
  pomelo_server_on(n[1].srv, "chat.chatHandler.drop", h_drop, NULL);
  pomelo_server_on(n[1].srv, "chat.chatHandler.who", h_who, ID_CHAT1);
  s = join(n[0].srv);
  nheld = 0;

  /* Timeout after 5 s (the default), then a late answer is dropped. */
  feed_msg(s, POMELO_MSG_REQUEST, 1, "chat.chatHandler.hold", "{}");
  settle(n, 2, now_ms);
  is_int(nheld, 1, "the backend holds the request");
  is_int(pomelo_server_expiry(n[0].srv) <= now_ms + 5000, 1, "its deadline is in the timers");
  advance(n, 2, 4999);
  is_str(drain(s, NULL), "", "no answer before the deadline");
  advance(n, 2, 1);
  is_str(drain(s, NULL), "resp 1 {\"code\":500}", "timed out: {\"code\":500}");
  pomelo_cluster_get_stats(n[0].c, &st);
  is_int(st.timeouts, 1, "counted");
  pomelo_request_respond(held[0], "{\"late\":1}", 10);
  settle(n, 2, now_ms);
  is_str(drain(s, NULL), "", "the late answer does not reach the client");
  pomelo_cluster_get_stats(n[0].c, &st);
  is_int(st.late_answers, 1, "late answers counted");

  /* A handler that drops the request: the frontend hears at once. */
  feed_msg(s, POMELO_MSG_REQUEST, 2, "chat.chatHandler.drop", "{}");
  settle(n, 2, now_ms);
  is_str(drain(s, NULL), "resp 2 {\"code\":500}", "a dropped request fails at once");

  /* Over max_payload: refused at the connector. */
  pomelo_cluster_set_max_payload(n[0].c, 2048);
  memset(big, 'a', sizeof big);
  memcpy(big, "{\"s\":\"", 6);
  memcpy(big + sizeof big - 3, "\"}", 3);
  feed_msg(s, POMELO_MSG_REQUEST, 3, "chat.chatHandler.who", big);
  is_str(drain(s, NULL), "resp 3 {\"code\":500}", "a body past max_payload: 500 at once");
  pomelo_cluster_get_stats(n[0].c, &st);
  is_int(st.too_large, 1, "counted as too large");
  pomelo_cluster_set_max_payload(n[0].c, 1 << 20);

  /* In flight per session: 64 by default; the 65th fails at once. */
  nheld = 0;
  for (i = 0; i < 65; i++) {
    feed_msg(s, POMELO_MSG_REQUEST, (uint32_t)(100 + i), "chat.chatHandler.hold", "{}");
  }
  is_str(drain(s, NULL), "resp 164 {\"code\":500}", "the 65th in flight fails at once");
  pomelo_cluster_get_stats(n[0].c, &st);
  is_int(st.limited, 1, "limited counted");
  is_int(st.in_flight, 64, "64 in flight");

  /* The target dies (kill -9: gone from the bus): new requests find no responders. */
  settle(n, 2, now_ms);
  kill_node(&n[1], 0);
  feed_msg(s, POMELO_MSG_REQUEST, 4, "chat.chatHandler.who", "{}");
  settle(n, 1, now_ms);
  is_str(drain(s, NULL), "resp 4 {\"code\":500}", "no responders: 500 at once");
  pomelo_cluster_get_stats(n[0].c, &st);
  is_int(st.in_flight, 64, "the 64 held ones still wait");
  /* Silent for its ttl (3 announcements): it leaves, its flights fail at once. */
  advance(n, 1, 3100);
  pomelo_cluster_get_stats(n[0].c, &st);
  is_int(st.in_flight, 0, "its flights failed when it left");
  ok(strlen(drain(s, NULL)) > 64 * 10, "their clients got answers");
  is_int(pomelo_cluster_servers(n[0].c, "chat", NULL, 0), 0, "chat-1 left the table");

  /* A restart (same id, another run) takes over. */
  n[1] = make_node("chat-1", "chat", 0, POMELO_UID_MANY, NULL);
  pomelo_server_on(n[1].srv, "chat.chatHandler.who", h_who, ID_CHAT1);
  settle(n, 2, now_ms);
  feed_msg(s, POMELO_MSG_REQUEST, 5, "chat.chatHandler.who", "{}");
  settle(n, 2, now_ms);
  ok(strstr(drain(s, NULL), "resp 5 {\"by\":\"chat-1\"") != NULL, "the restarted server answers");

  /* A restart within the ttl: the new run replaces the old record (leave, then join). */
  events[0] = 0;
  kill_node(&n[1], 0);
  n[1] = make_node("chat-1", "chat", 0, POMELO_UID_MANY, NULL);
  settle(n, 2, now_ms);
  is_str(events, "leave:chat-1 join:chat-1 join:connector-1",
         "a new run of chat-1: leave then join (and it hears of connector-1)");

  /* The bus goes down: flights fail at once, new forwards fail fast. */
  pomelo_server_on(n[1].srv, "chat.chatHandler.hold", h_hold, NULL);
  nheld = 0;
  feed_msg(s, POMELO_MSG_REQUEST, 6, "chat.chatHandler.hold", "{}");
  settle(n, 2, now_ms);
  membus_set_up(bus, 0, now_ms);
  is_str(drain(s, NULL), "resp 6 {\"code\":500}", "bus down: the flight fails at once");
  feed_msg(s, POMELO_MSG_REQUEST, 7, "chat.chatHandler.hold", "{}");
  is_str(drain(s, NULL), "resp 7 {\"code\":500}", "bus down: a new forward fails fast");
  advance(n, 2, 60000);
  is_int(pomelo_cluster_servers(n[0].c, "chat", NULL, 0), 1, "no one expires while it is down");
  membus_set_up(bus, 1, now_ms);
  settle(n, 2, now_ms);
  pomelo_server_on(n[1].srv, "chat.chatHandler.who", h_who, ID_CHAT1);
  feed_msg(s, POMELO_MSG_REQUEST, 8, "chat.chatHandler.who", "{}");
  settle(n, 2, now_ms);
  ok(strstr(drain(s, NULL), "resp 8 {\"by\":\"chat-1\"") != NULL, "back up: answered");
  for (i = 0; i < nheld; i++) {
    pomelo_request_drop(held[i]);
  }
  /* Deleting the cluster fails what is in flight. */
  feed_msg(s, POMELO_MSG_REQUEST, 9, "chat.chatHandler.hold", "{}");
  settle(n, 2, now_ms);
  kill_node(&n[0], 1);
  kill_node(&n[1], 1);
  membus_run(bus, now_ms);
  ok(membus_idle(bus), "bus idle");
}

static void test_session_ops_and_channels(void) {
  node n[3];
  pomelo_session *a, *b, *b2;
  pomelo_cluster_channel *ch;
  pomelo_cluster_stats st;
  const void *f1, *f2;
  const char *uids[1] = {"bob"};
  size_t lens[1] = {3};
  uint64_t sids[1];
  char body[256];
  n[0] = make_node("connector-1", "connector", 3050, POMELO_UID_KICK_OLDER, NULL);
  n[1] = make_node("connector-2", "connector", 3051, POMELO_UID_KICK_OLDER, NULL);
  n[2] = make_node("chat-1", "chat", 0, POMELO_UID_MANY, NULL);
  settle(n, 3, now_ms);
  a = join(n[0].srv);
  b = join(n[1].srv);
  b2 = join(n[1].srv);

  /* bind, set, push, kick, each acknowledged. */
  done_calls = 0;
  is_int(
      pomelo_cluster_bind(n[2].c, "connector-1", pomelo_session_id(a), "alice", 5, on_done, NULL),
      0, "bind alice on connector-1");
  settle(n, 3, now_ms);
  is_int(done_rc, 0, "acknowledged");
  is_str(pomelo_session_uid(a, NULL), "alice", "the session is bound");
  pomelo_cluster_set(n[2].c, "connector-1", pomelo_session_id(a), "rid", 3, "r1", 2, on_done, NULL);
  settle(n, 3, now_ms);
  is_str(pomelo_session_get(a, "rid", 3, NULL), "r1", "setting set");
  pomelo_cluster_set(n[2].c, "connector-1", pomelo_session_id(a), "rid", 3, NULL, 0, on_done, NULL);
  settle(n, 3, now_ms);
  ok(pomelo_session_get(a, "rid", 3, NULL) == NULL, "setting removed");
  pomelo_cluster_bind(n[2].c, "connector-1", 999, "x", 1, on_done, NULL);
  settle(n, 3, now_ms);
  is_int(done_rc, POMELO_ERR_NOT_FOUND, "an operation on a session that is gone: NOT_FOUND");
  is_int(pomelo_cluster_bind(n[2].c, "chat-1", 1, "x", 1, on_done, NULL), POMELO_ERR_NOT_FOUND,
         "session operations go to frontends only");
  pomelo_session_bind(b, "bob", 3);
  sids[0] = pomelo_session_id(b2);
  pomelo_cluster_push(n[2].c, "connector-2", sids, 1, uids, lens, 1, "onHi", "{\"x\":1}", 7,
                      on_done, NULL);
  settle(n, 3, now_ms);
  is_str(done_body, "{\"reached\":2}", "a push to one sid and one uid reached two sessions");
  is_str(drain(b, &f1), "push onHi {\"x\":1}", "bob got it");
  is_str(drain(b2, &f2), "push onHi {\"x\":1}", "the sid got it");
  ok(f1 == f2, "one frame for both (encoded once on the frontend)");

  /* A channel over two frontends: one bus message per frontend. */
  pomelo_session_bind(b2, "carol", 5);
  is_int(pomelo_cluster_channel_new(n[2].c, "room", 4, &ch), 0, "channel");
  pomelo_cluster_channel_add(ch, "alice", 5, "connector-1");
  pomelo_cluster_channel_add(ch, "bob", 3, "connector-2");
  pomelo_cluster_channel_add(ch, "carol", 5, "connector-2");
  is_int(pomelo_cluster_channel_add(ch, "bob", 3, "connector-2"), POMELO_ERR_EXISTS,
         "a member twice");
  is_int(pomelo_cluster_channel_count(ch), 3, "three members");
  {
    pomelo_cluster_channel *all[4];
    is_int(pomelo_cluster_channels(n[2].c, all, 4), 1, "one channel listed");
    ok(all[0] == ch, "it is the room");
  }
  ok(pomelo_cluster_channel_has(ch, "carol", 5) && !pomelo_cluster_channel_has(ch, "dave", 4),
     "has");
  {
    size_t before = membus_published(bus, "/push");
    is_int(pomelo_cluster_channel_push(ch, "onChat", "{\"m\":\"yo\"}", 10), 2,
           "pushed to two frontends");
    is_int(membus_published(bus, "/push") - before, 2, "two bus messages for three members");
  }
  settle(n, 3, now_ms);
  is_str(drain(a, NULL), "push onChat {\"m\":\"yo\"}", "alice (connector-1)");
  is_str(drain(b, &f1), "push onChat {\"m\":\"yo\"}", "bob (connector-2)");
  is_str(drain(b2, &f2), "push onChat {\"m\":\"yo\"}", "carol (connector-2)");
  ok(f1 == f2, "bob and carol share one frame");
  {
    /* A bus too small for all the members in one message: split, everyone still gets it. */
    size_t before = membus_published(bus, "/push");
    pomelo_cluster_set_max_payload(n[2].c, 30);
    is_int(pomelo_cluster_channel_push(ch, "onChat", "{\"m\":\"yo\"}", 10), 2,
           "pushed with a small max_payload");
    is_int(membus_published(bus, "/push") - before, 3, "connector-2's two members in two messages");
    settle(n, 3, now_ms);
    ok(strlen(drain(a, NULL)) && strlen(drain(b, NULL)) && strlen(drain(b2, NULL)),
       "all three got it");
    pomelo_cluster_set_max_payload(n[2].c, 1 << 20);
  }
  is_int(pomelo_cluster_channel_leave(ch, "bob", 3, "connector-2"), 0, "bob leaves");
  is_int(pomelo_cluster_channel_leave(ch, "bob", 3, "connector-2"), POMELO_ERR_NOT_FOUND,
         "not twice");

  /* KICK_OLDER across frontends: alice binds on connector-2 too. */
  pomelo_session_bind(b, "alice", 5) == POMELO_ERR_EXISTS ? (void)0 : (void)0;
  {
    pomelo_session *a2 = join(n[1].srv);
    pomelo_session_bind(a2, "alice", 5);
    settle(n, 3, now_ms);
    snprintf(body, sizeof body, "%s", drain(a, NULL));
    is_str(body, "5:{\"reason\":\"replaced\"}", "the older alice on connector-1 was kicked");
    pomelo_cluster_get_stats(n[0].c, &st);
    is_int(st.binds_kicked, 1, "counted");
    is_int(pomelo_session_state(a2), POMELO_CONN_WORKING, "the new one works");
  }

  /* Kick by sid (acknowledged) and by uid (broadcast). */
  pomelo_cluster_broadcast(n[2].c, "connector", 1, "onAll", "{}", 2);
  pomelo_cluster_kick(n[2].c, "connector-2", pomelo_session_id(b), NULL, 0, "bye", on_done, NULL);
  pomelo_cluster_kick_uid(n[2].c, "connector", "carol", 5, "gone");
  settle(n, 3, now_ms);
  is_str(drain(b, NULL), "push onAll {}|5:{\"reason\":\"bye\"}", "bob: broadcast, then kicked");
  is_str(done_body, "{\"reached\":1}", "the kick by sid was acknowledged");
  ok(strstr(drain(b2, NULL), "5:{\"reason\":\"gone\"}") != NULL, "carol kicked by uid");
  {
    pomelo_session *d1 = join(n[1].srv), *d2 = join(n[1].srv);
    pomelo_session_bind(d1, "dave", 4);
    pomelo_session_bind(d2, "dave", 4);
    is_int(pomelo_cluster_kick(n[2].c, "connector-2", 0, "dave", 4, NULL, on_done, NULL), 0,
           "kick a uid on one frontend");
    settle(n, 3, now_ms);
    /* connector-2 is KICK_OLDER: binding d2 already replaced d1, so one session is kicked. */
    is_str(done_body, "{\"reached\":1}", "acknowledged with the count");
    is_int(pomelo_session_state(d1) >= POMELO_CONN_CLOSING &&
               pomelo_session_state(d2) >= POMELO_CONN_CLOSING,
           1, "both closing");
    is_int(pomelo_cluster_kick(n[2].c, "connector-2", 5, "dave", 4, NULL, on_done, NULL),
           POMELO_ERR_INVALID_ARG, "a sid or a uid, not both");
  }

  /* connector-1 dies: its members leave the channels (on_member_lost). */
  events[0] = 0;
  kill_node(&n[0], 0);
  advance(n + 1, 2, 3500);
  ok(strstr(events, "lost:alice@connector-1") != NULL, "alice lost with connector-1 (%s)", events);
  is_int(pomelo_cluster_channel_count(ch), 1, "carol stays");
  pomelo_cluster_channel_destroy(ch);
  ok(pomelo_cluster_channel_get(n[2].c, "room", 4) == NULL, "destroyed");
  kill_node(&n[1], 1);
  kill_node(&n[2], 1);
}

/* Hostile bytes on every subject: dropped and counted, nothing else happens. */
static void test_hostile(void) {
  node n[2];
  const char *subjects[16];
  pomelo_cluster_stats st;
  size_t i, ns = 0, k;
  uint32_t seed = 1;
  uint8_t buf[64];
  n[0] = make_node("connector-1", "connector", 3050, POMELO_UID_MANY, NULL);
  n[1] = make_node("chat-1", "chat", 0, POMELO_UID_MANY, NULL);
  settle(n, 2, now_ms);
  while (ns < 16 && (subjects[ns] = pomelo_cluster_subject(n[0].c, ns)) != NULL) {
    ns++;
  }
  ok(ns >= 8, "the connector lists its subjects (%zu)", ns);
  for (k = 0; k < 20000; k++) {
    size_t len;
    char subject[256];
    seed = seed * 1103515245u + 12345u;
    len = (seed >> 8) % sizeof buf;
    for (i = 0; i < len; i++) {
      seed = seed * 1103515245u + 12345u;
      buf[i] = (uint8_t)(seed >> 16);
    }
    i = (seed >> 4) % ns;
    snprintf(subject, sizeof subject, "%s", subjects[i]);
    if (strstr(subject, ".*")) {
      strcpy(strstr(subject, ".*"), (seed & 1) ? ".1" : ".x9");
    }
    (void)pomelo_cluster_deliver(n[0].c, subject, (seed & 2) ? "pomelo/inbox/x.1" : NULL, buf, len,
                                 (seed & 4) ? POMELO_CLUSTER_NO_RESPONDERS : 0, now_ms);
    membus_run(bus, now_ms);
  }
  pomelo_cluster_get_stats(n[0].c, &st);
  ok(st.bad_messages > 0, "bad messages counted (%llu)", (unsigned long long)st.bad_messages);
  is_int(pomelo_cluster_servers(n[0].c, NULL, NULL, 0) >= 2, 1, "the table survived");
  kill_node(&n[0], 1);
  kill_node(&n[1], 1);
}

/* Envelopes: encode, decode, every truncation refused or read within bounds. */
static void test_envelopes(void) {
  pm_env_request r, d;
  uint8_t buf[512];
  size_t len, cut;
  memset(&r, 0, sizeof r);
  r.type = PM_RQ_CALL;
  r.has_session = 1;
  r.sid = 300;
  r.has_uid = 1;
  r.uid.p = "u";
  r.uid.len = 1;
  r.settings.p = "{\"a\":\"b\"}";
  r.settings.len = 9;
  r.msg_id = 5;
  r.route.p = "chat.x.y";
  r.route.len = 8;
  r.data.p = "{}";
  r.data.len = 2;
  r.msg_type = PM_MT_NOTIFY;
  r.frontend.p = "connector-1";
  r.frontend.len = 11;
  len = pm_env_request_write(NULL, &r);
  ok(len < sizeof buf && pm_env_request_write(buf, &r) == len, "request size then bytes");
  is_int(pm_env_request_read(buf, len, &d), 0, "decodes");
  ok(d.type == 1 && d.sid == 300 && d.has_uid && d.uid.len == 1 && d.msg_id == 5 &&
         d.msg_type == PM_MT_NOTIFY && d.frontend.len == 11 && d.settings.len == 9,
     "fields intact");
  for (cut = 0; cut < len; cut++) {
    int rc = pm_env_request_read(buf, cut, &d);
    if (rc != 0 && rc != POMELO_ERR_CLUSTER_ENVELOPE) {
      break;
    }
  }
  is_int(cut, len, "every truncation decodes or is refused");
  /* Known bytes: pitaya's Request{type:1} = 08 01, then an empty Msg 1a 00. */
  {
    pm_env_request z;
    memset(&z, 0, sizeof z);
    z.type = 1;
    is_int(pm_env_request_write(buf, &z), 4, "minimal request is 4 bytes");
    is_mem(buf, 4, "\x08\x01\x1a\x00", 4, "08 01 1a 00");
  }
  {
    static const uint8_t groups[] = {0x0b, 0x00};
    static const uint8_t longv[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff,
                                    0xff, 0xff, 0xff, 0xff, 0x7f};
    is_int(pm_env_request_read(groups, sizeof groups, &d), POMELO_ERR_CLUSTER_ENVELOPE,
           "group wire type refused");
    is_int(pm_env_request_read(longv, sizeof longv, &d), POMELO_ERR_CLUSTER_ENVELOPE,
           "varint past 64 bits refused");
  }
}

/* Every allocation of a forward's round trip fails in turn: no leak, no crash. */
static void test_alloc_failures(void) {
  long k;
  int completed = 0;
  for (k = 1; k < 4000 && !completed; k++) {
    test_alloc ta;
    node n[2];
    pomelo_session *s;
    const char *out;
    test_alloc_init(&ta, k);
    n[0] = make_node("connector-1", "connector", 3050, POMELO_UID_MANY, &ta.a);
    n[1] = make_node("chat-1", "chat", 0, POMELO_UID_MANY, &ta.a);
    if (n[0].c && n[1].c) {
      settle(n, 2, now_ms);
      pomelo_server_on(n[1].srv, "chat.chatHandler.who", h_who, ID_CHAT1);
      s = join(n[0].srv);
      if (s) {
        pomelo_session_bind(s, "u", 1);
        feed_msg(s, POMELO_MSG_REQUEST, 1, "chat.chatHandler.who", "{}");
        settle(n, 2, now_ms);
        out = drain(s, NULL);
        completed = ta.failed == 0 && strstr(out, "resp 1 {\"by\"") != NULL;
      }
    }
    if (n[0].srv) {
      kill_node(&n[0], 1);
    }
    if (n[1].srv) {
      kill_node(&n[1], 1);
    }
    membus_run(bus, now_ms);
    if (ta.live != 0) {
      ok(0, "allocation %ld failed: %ld blocks leaked", k, ta.live);
      return;
    }
  }
  ok(completed, "every one of %ld allocations failed in turn, no leak", k - 1);
}

int main(void) {
  if (membus_new(&bus) != 0) {
    return 1;
  }
  test_crc32();
  test_discovery_and_forward();
  test_failures();
  test_session_ops_and_channels();
  test_hostile();
  test_envelopes();
  test_alloc_failures();
  membus_del(bus);
  return done_testing();
}
