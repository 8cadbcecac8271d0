/* Fuzz target: the cluster's bus messages (lib/cluster/envelope.c, cluster.c).
 *
 * A connector and a chat server, each with its cluster, on the in-process bus
 * (examples/common/membus.c), a client session on the connector. The input is a script of
 * records: [op][a][len lo][len hi][len bytes]. op % 4 == 0 delivers the bytes to the connector
 * (a) or the chat server on one of its subjects (a picks it, an inbox subject gets a
 * correlation id; a's high bit sets NO_RESPONDERS and a reply subject); 1 sends them as the
 * body of a client request to the chat server (forwarded); 2 moves time by a * 40 ms; 3 runs
 * the envelope decoders on them directly and checks that a decoded request re-encodes to bytes
 * that decode to the same fields. The bus runs after each record. Nothing may crash or leak,
 * and the connector's table must still hold both servers unless time let them expire.
 * SPDX-License-Identifier: MIT
 */
#include <pomelo/pomelo.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../examples/common/membus.h"
#include "cluster/cluster_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                                   \
  do {                                                                                             \
    if (!(x)) {                                                                                    \
      abort();                                                                                     \
    }                                                                                              \
  } while (0)

typedef struct node {
  pomelo_server *srv;
  pomelo_cluster *c;
} node;

static void h_echo(pomelo_request *req, void *ud) {
  const pomelo_msg *m = pomelo_request_msg(req);
  (void)ud;
  if (m->body_len & 1) {
    pomelo_request_drop(req);
  } else {
    pomelo_request_respond(req, (const char *)m->body, m->body_len);
  }
}

static node make(membus *bus, const char *id, const char *type, uint16_t port, uint64_t now) {
  pomelo_server_settings ss;
  pomelo_cluster_settings cs;
  node n = {NULL, NULL};
  pomelo_server_settings_default(&ss);
  ss.server_id = id;
  ss.server_type = type;
  ss.uid_policy = POMELO_UID_KICK_OLDER;
  CHECK(pomelo_server_new(&n.srv, &ss, NULL, NULL, NULL) == 0);
  pomelo_cluster_settings_default(&cs);
  cs.client_port = port;
  cs.announce_ms = 1000;
  cs.instance = id;
  CHECK(pomelo_cluster_new(&n.c, n.srv, &cs, NULL, NULL, NULL) == 0);
  CHECK(membus_attach(bus, n.c, now) == 0);
  return n;
}

static void check_request_roundtrip(const uint8_t *p, size_t len) {
  pm_env_request a, b;
  uint8_t *buf;
  size_t n;
  if (pm_env_request_read(p, len, &a) != 0) {
    return;
  }
  n = pm_env_request_write(NULL, &a);
  buf = malloc(n ? n : 1);
  CHECK(buf != NULL);
  CHECK(pm_env_request_write(buf, &a) == n);
  CHECK(pm_env_request_read(buf, n, &b) == 0);
  CHECK(a.type == b.type && a.sid == b.sid && a.msg_id == b.msg_id && a.msg_type == b.msg_type);
  CHECK(a.route.len == b.route.len &&
        (a.route.len == 0 || !memcmp(a.route.p, b.route.p, a.route.len)));
  CHECK(a.data.len == b.data.len && (a.data.len == 0 || !memcmp(a.data.p, b.data.p, a.data.len)));
  CHECK(a.uid.len == b.uid.len && a.has_uid == b.has_uid && a.frontend.len == b.frontend.len);
  free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  membus *bus;
  node n[2];
  pomelo_session *s = NULL;
  uint64_t now = 1000;
  uint32_t id = 1;
  size_t pos = 0;
  CHECK(membus_new(&bus) == 0);
  n[0] = make(bus, "connector-1", "connector", 3050, now);
  n[1] = make(bus, "chat-1", "chat", 0, now);
  pomelo_server_on(n[1].srv, "chat.chatHandler.send", h_echo, NULL);
  pomelo_cluster_on(n[1].c, "chat.chatRemote.add", h_echo, NULL);
  membus_run(bus, now);
  CHECK(pomelo_server_accept(n[0].srv, now, NULL, &s) == 0);
  {
    static const char hs[] = "{\"sys\":{\"type\":\"fuzz\",\"version\":\"0\"}}";
    uint8_t pkg[128];
    size_t pl;
    CHECK(pomelo_pkg_encode(pkg, sizeof pkg, POMELO_PKG_HANDSHAKE, (const uint8_t *)hs,
                            sizeof hs - 1, &pl) == 0);
    pomelo_session_feed(s, pkg, pl, now);
    CHECK(pomelo_pkg_encode(pkg, sizeof pkg, POMELO_PKG_HANDSHAKE_ACK, NULL, 0, &pl) == 0);
    pomelo_session_feed(s, pkg, pl, now);
    pomelo_session_bind(s, "u", 1);
  }
  while (pos + 4 <= size) {
    uint8_t op = data[pos], a = data[pos + 1];
    size_t len = (size_t)data[pos + 2] | ((size_t)data[pos + 3] << 8);
    const uint8_t *p = data + pos + 4;
    pos += 4;
    if (len > size - pos) {
      len = size - pos;
    }
    pos += len;
    switch (op % 4) {
    case 0: {
      node *t = &n[(a >> 6) & 1];
      const char *subject;
      char buf[600];
      size_t count = 0, k;
      while (pomelo_cluster_subject(t->c, count)) {
        count++;
      }
      k = (a & 0x3f) % count;
      subject = pomelo_cluster_subject(t->c, k);
      snprintf(buf, sizeof buf, "%s", subject);
      if (strlen(buf) > 2 && strcmp(buf + strlen(buf) - 2, ".*") == 0) {
        snprintf(buf + strlen(buf) - 1, sizeof buf - strlen(buf) + 1, "%u", (unsigned)(a & 7));
      }
      (void)pomelo_cluster_deliver(t->c, buf, (a & 0x80) ? "pomelo/inbox/x/y.1" : NULL, p, len,
                                   (a & 0x80) ? POMELO_CLUSTER_NO_RESPONDERS : 0, now);
      break;
    }
    case 1: {
      uint8_t msg[70000], pkg[70010];
      size_t ml, pl;
      pomelo_msg m;
      memset(&m, 0, sizeof m);
      m.type = (a & 1) ? POMELO_MSG_NOTIFY : POMELO_MSG_REQUEST;
      m.id = (a & 1) ? 0 : id++;
      m.route = (a & 2) ? "chat.chatHandler.send" : "chat.chatRemote.add";
      m.route_len = strlen(m.route);
      m.body = p;
      m.body_len = len;
      if (pomelo_msg_encode(msg, sizeof msg, &m, &ml) == 0 &&
          pomelo_pkg_encode(pkg, sizeof pkg, POMELO_PKG_DATA, msg, ml, &pl) == 0 &&
          pomelo_server_session(n[0].srv, 1)) {
        pomelo_session_feed(s, pkg, pl, now);
      }
      break;
    }
    case 2:
      now += (uint64_t)a * 40;
      pomelo_server_handle_expiry(n[0].srv, now);
      pomelo_server_handle_expiry(n[1].srv, now);
      break;
    default: {
      pm_env_response r;
      pm_env_bind b;
      pm_env_multi m;
      check_request_roundtrip(p, len);
      (void)pm_env_response_read(p, len, &r);
      (void)pm_env_bind_read(p, len, &b);
      if (pm_env_push_read(pm_cluster_alloc(n[0].c), p, len, &m) == 0) {
        CHECK(m.nuids <= len && m.nsids <= len);
        pm_env_multi_fini(pm_cluster_alloc(n[0].c), &m);
      }
      if (pm_env_kick_read(pm_cluster_alloc(n[0].c), p, len, &m) == 0) {
        pm_env_multi_fini(pm_cluster_alloc(n[0].c), &m);
      }
      break;
    }
    }
    membus_run(bus, now);
    if (pomelo_server_session(n[0].srv, 1)) {
      struct iovec iov[16];
      int k;
      while ((k = pomelo_session_out_iov(s, iov, 16)) > 0) {
        size_t got = 0;
        int i;
        for (i = 0; i < k; i++) {
          got += iov[i].iov_len;
        }
        pomelo_session_out_consume(s, got, now);
      }
    }
  }
  pomelo_cluster_del(n[0].c);
  membus_detach(bus, n[0].c); /* by address only: it is gone */
  pomelo_cluster_del(n[1].c);
  membus_detach(bus, n[1].c);
  membus_run(bus, now);
  membus_del(bus);
  pomelo_server_del(n[0].srv);
  pomelo_server_del(n[1].srv);
  return 0;
}
