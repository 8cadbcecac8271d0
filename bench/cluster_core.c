/* bench-cluster-core: what the cluster core costs, without sockets or a bus process: a
 * connector and a chat server in one process on the in-process bus (examples/common/membus.c).
 *   bench-cluster-core [--reps N] [--iters N]
 * Prints, as medians of N runs:
 *   - a forwarded request: a client's chat request through the connector's cluster (envelope
 *     out, routing, the flight), the chat server's (envelope in, the session imported, the
 *     handler, the answer out) and back to the client's output queue, in ns per request;
 *   - a room push from the chat server to 1,000 members spread over 3 connectors: one bus
 *     message per connector, each connector encoding once, in ns per member delivered (the
 *     members' output drained, as a loop would write it).
 * Both sides run in this process; over NATS add the bus's own cost (bench/cluster.sh measures
 * the whole thing end to end). Public API only.
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pomelo/pomelo.h>

#include "../examples/common/membus.h"
#include "benchutil.h"

#define MEMBERS 1000
#define CONNECTORS 3

typedef struct node {
  pomelo_server *srv;
  pomelo_cluster *c;
} node;

static membus *bus;
static uint64_t now_ms = 1000;

static void die(const char *what, int rc) {
  fprintf(stderr, "bench-cluster-core: %s: %s\n", what, pomelo_strerror(rc));
  exit(1);
}

static node make(const char *id, const char *type, uint16_t port) {
  pomelo_server_settings ss;
  pomelo_cluster_settings cs;
  node n;
  int rc;
  pomelo_server_settings_default(&ss);
  ss.server_id = id;
  ss.server_type = type;
  ss.max_output = (size_t)64 << 20;
  rc = pomelo_server_new(&n.srv, &ss, NULL, NULL, NULL);
  if (rc) {
    die("server", rc);
  }
  pomelo_cluster_settings_default(&cs);
  cs.client_port = port;
  cs.instance = id;
  rc = pomelo_cluster_new(&n.c, n.srv, &cs, NULL, NULL, NULL);
  if (rc || membus_attach(bus, n.c, now_ms) != 0) {
    die("cluster", rc ? rc : POMELO_ERR_NOMEM);
  }
  return n;
}

static void feed(pomelo_session *s, int type, const void *body, size_t len) {
  uint8_t pkg[512];
  size_t n;
  if (pomelo_pkg_encode(pkg, sizeof pkg, type, body, len, &n) != 0 ||
      pomelo_session_feed(s, pkg, n, now_ms) != 0) {
    die("feed", POMELO_ERR_INTERNAL);
  }
}

static pomelo_session *client(pomelo_server *srv, const char *uid) {
  static const char hs[] = "{\"sys\":{\"type\":\"bench\",\"version\":\"0\"}}";
  pomelo_session *s;
  int rc = pomelo_server_accept(srv, now_ms, NULL, &s);
  if (rc) {
    die("accept", rc);
  }
  feed(s, POMELO_PKG_HANDSHAKE, hs, sizeof hs - 1);
  feed(s, POMELO_PKG_HANDSHAKE_ACK, NULL, 0);
  if (uid) {
    pomelo_session_bind(s, uid, strlen(uid));
  }
  pomelo_session_set(s, "rid", 3, "room1", 5);
  return s;
}

/* Consumes a session's output as a loop would write it; returns the bytes. */
static size_t drain(pomelo_session *s) {
  struct iovec iov[64];
  size_t total = 0;
  int n, i;
  while ((n = pomelo_session_out_iov(s, iov, 64)) > 0) {
    size_t got = 0;
    for (i = 0; i < n; i++) {
      got += iov[i].iov_len;
    }
    pomelo_session_out_consume(s, got, now_ms);
    total += got;
  }
  return total;
}

static void h_send(pomelo_request *req, void *ud) {
  (void)ud;
  pomelo_request_respond(req, "{}", 2);
}

int main(int argc, char **argv) {
  int reps = 11, iters = 20000, i, r;
  double fwd[64], push[64];
  node conn[CONNECTORS], chat;
  pomelo_session *s, **members;
  pomelo_cluster_channel *ch;
  uint8_t msg[256];
  size_t ml, k;
  pomelo_msg m;
  for (i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--reps") == 0) {
      reps = atoi(argv[i + 1]);
    } else if (strcmp(argv[i], "--iters") == 0) {
      iters = atoi(argv[i + 1]);
    }
  }
  if (reps < 1 || reps > 64 || iters < 1) {
    fprintf(stderr, "usage: bench-cluster-core [--reps 1..64] [--iters N]\n");
    return 2;
  }
  if (membus_new(&bus) != 0) {
    return 1;
  }
  for (k = 0; k < CONNECTORS; k++) {
    char id[32];
    static char ids[CONNECTORS][32];
    snprintf(id, sizeof id, "connector-%zu", k + 1);
    memcpy(ids[k], id, sizeof id);
    conn[k] = make(ids[k], "connector", (uint16_t)(3050 + k));
  }
  chat = make("chat-1", "chat", 0);
  pomelo_server_on(chat.srv, "chat.chatHandler.send", h_send, NULL);
  membus_run(bus, now_ms);

  /* The forwarded request. */
  s = client(conn[0].srv, "alice*room1");
  memset(&m, 0, sizeof m);
  m.type = POMELO_MSG_REQUEST;
  m.route = "chat.chatHandler.send";
  m.route_len = strlen(m.route);
  m.body = (const uint8_t *)"{\"rid\":\"room1\",\"content\":\"hello\",\"target\":\"*\"}";
  m.body_len = strlen((const char *)m.body);
  for (r = 0; r < reps; r++) {
    uint64_t t0 = bench_now_ns();
    for (i = 0; i < iters; i++) {
      m.id = (uint32_t)(i % 1000000 + 1);
      if (pomelo_msg_encode(msg, sizeof msg, &m, &ml) != 0) {
        die("encode", POMELO_ERR_INTERNAL);
      }
      feed(s, POMELO_PKG_DATA, msg, ml);
      membus_run(bus, now_ms);
      if (drain(s) == 0) {
        die("no answer", POMELO_ERR_INTERNAL);
      }
    }
    fwd[r] = (double)(bench_now_ns() - t0) / iters;
  }

  /* The room push. */
  members = calloc(MEMBERS, sizeof *members);
  if (!members || pomelo_cluster_channel_new(chat.c, "room1", 5, &ch) != 0) {
    return 1;
  }
  for (k = 0; k < MEMBERS; k++) {
    char uid[32];
    snprintf(uid, sizeof uid, "u%zu*room1", k);
    members[k] = client(conn[k % CONNECTORS].srv, uid);
    pomelo_cluster_channel_add(ch, uid, strlen(uid),
                               k % CONNECTORS == 0   ? "connector-1"
                               : k % CONNECTORS == 1 ? "connector-2"
                                                     : "connector-3");
  }
  for (r = 0; r < reps; r++) {
    int rounds = iters / 200 > 0 ? iters / 200 : 1, j;
    uint64_t t0 = bench_now_ns();
    for (j = 0; j < rounds; j++) {
      size_t got = 0;
      if (pomelo_cluster_channel_push(ch, "onChat", "{\"msg\":\"hello\",\"from\":\"alice\"}", 31) !=
          CONNECTORS) {
        die("push", POMELO_ERR_INTERNAL);
      }
      membus_run(bus, now_ms);
      for (k = 0; k < MEMBERS; k++) {
        got += drain(members[k]) != 0;
      }
      if (got != MEMBERS) {
        die("a member missed the push", POMELO_ERR_INTERNAL);
      }
    }
    push[r] = (double)(bench_now_ns() - t0) / ((double)rounds * MEMBERS);
  }
  printf("cluster core, in one process (connector + chat server on the in-process bus):\n");
  printf("  forwarded request round trip   %8.0f ns per request (median of %d x %d)\n",
         bench_median(fwd, (size_t)reps), reps, iters);
  printf("  room push, %d members on %d connectors  %6.1f ns per member delivered\n", MEMBERS,
         CONNECTORS, bench_median(push, (size_t)reps));
  for (k = 0; k < CONNECTORS; k++) {
    pomelo_cluster_del(conn[k].c);
    membus_detach(bus, conn[k].c);
  }
  pomelo_cluster_del(chat.c);
  membus_detach(bus, chat.c);
  membus_run(bus, now_ms);
  membus_del(bus);
  for (k = 0; k < CONNECTORS; k++) {
    pomelo_server_del(conn[k].srv);
  }
  pomelo_server_del(chat.srv);
  free(members);
  return 0;
}
