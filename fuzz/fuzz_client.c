/* Fuzz target: a connected client fed arbitrary server bytes and time steps, with requests,
 * notifies, reconnects and disconnects issued along the way.
 *
 * Input: byte 0 picks the handshake answer (with or without the chatofpomelo dictionary and
 * protos for a response, a push and a request), the
 * reconnect policy and what callbacks do re-entrantly (issue a request, reconnect, disconnect);
 * then a program of one-byte operations with their arguments (see run()). Invariants: no crash,
 * no leak (counting allocator), every accepted request's callback runs exactly once by the time
 * the client is deleted and never from inside pomelo_client_request, refused requests never.
 * SPDX-License-Identifier: MIT
 */
#include <pomelo/client.h>

#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define MAX_REQS 256

static const char HS_DICT[] =
    "{\"code\":200,\"sys\":{\"heartbeat\":3,\"routeToCode\":{\"chat.chatHandler.send\":1,"
    "\"connector.entryHandler.enter\":2,\"gate.gateHandler.queryEntry\":3},\"codeToRoute\":{"
    "\"1\":\"chat.chatHandler.send\",\"2\":\"connector.entryHandler.enter\",\"3\":\"gate."
    "gateHandler.queryEntry\"},\"dictVersion\":\"s2r1qfKDrbhWCkA6uf+PTA==\",\"useDict\":true,"
    "\"protos\":{\"server\":{\"connector.entryHandler.enter\":{\"code\":{\"option\":\"optional\","
    "\"type\":\"uInt32\",\"tag\":1},\"__messages\":{},\"__tags\":{\"1\":\"code\"}},\"onChat\":{"
    "\"msg\":{\"option\":\"required\",\"type\":\"string\",\"tag\":1},\"n\":{\"option\":"
    "\"repeated\",\"type\":\"double\",\"tag\":2},\"__messages\":{},\"__tags\":{\"1\":\"msg\","
    "\"2\":\"n\"}}},\"client\":{\"chat.chatHandler.send\":{\"c\":{\"option\":\"optional\","
    "\"type\":\"string\",\"tag\":1},\"__messages\":{},\"__tags\":{\"1\":\"c\"}}},\"version\":"
    "\"v1\"},\"useProto\":true}}";
static const char HS_PLAIN[] = "{\"code\":200,\"sys\":{\"heartbeat\":1}}";

static const char *const ROUTES[4] = {"connector.entryHandler.enter", "chat.chatHandler.send",
                                      "area.playerHandler.move", ""};

typedef struct state {
  pomelo_client *cl;
  int counts[MAX_REQS];
  int issued[MAX_REQS];
  int nreq;
  int in_request;
  int reentry; /* 0 none, 1 request from a response, 2 disconnect from a push, 3 reconnect */
  uint64_t now;
  uint32_t rnd;
} state;

static state S;

static void issue(const char *route, uint32_t timeout, uint64_t now);

static void on_response(pomelo_client *cl, int status, const char *route, size_t len,
                        const pomelo_msg *resp, void *data) {
  int *count = data;
  (void)cl;
  (void)route;
  (void)len;
  if (S.in_request || (status == 0) != (resp != NULL)) {
    abort();
  }
  /* A response that came but could not be decoded (protobuf, a compressed body) has its error. */
  if (status != 0 && status != POMELO_ERR_TIMEOUT && status != POMELO_ERR_CLOSED &&
      !(status <= POMELO_ERR_PB_SCHEMA && status > POMELO_ERR_PB_SCHEMA - 20) &&
      status != POMELO_ERR_GZIP && status != POMELO_ERR_GZIP_TOO_LARGE &&
      status != POMELO_ERR_UNSUPPORTED) {
    abort();
  }
  (*count)++;
  if (status == 0 && S.reentry == 1) {
    issue(ROUTES[S.nreq & 3], 0, S.now);
  } else if (status == 0 && S.reentry == 3 && (S.nreq & 1)) {
    pomelo_client_connect(S.cl, S.now);
  }
}

static void on_push(pomelo_client *cl, const char *route, size_t len, const pomelo_msg *m,
                    void *ud) {
  (void)route;
  (void)len;
  (void)m;
  (void)ud;
  if (S.reentry == 2) {
    pomelo_client_disconnect(cl);
  }
}

static uint32_t on_random(void *ud) {
  (void)ud;
  S.rnd = S.rnd * 1664525u + 1013904223u;
  return S.rnd;
}

static void issue(const char *route, uint32_t timeout, uint64_t now) {
  int i, rc;
  if (S.nreq >= MAX_REQS) {
    return;
  }
  i = S.nreq++;
  S.in_request++;
  rc = pomelo_client_request(S.cl, route, (const uint8_t *)"{}", 2, timeout, on_response,
                             &S.counts[i], now, NULL);
  S.in_request--;
  S.issued[i] = rc == 0;
}

static void drain(size_t limit) {
  struct iovec iov[4];
  int i, n = pomelo_client_out_iov(S.cl, iov, 4);
  size_t total = 0;
  for (i = 0; i < n; i++) {
    total += iov[i].iov_len;
  }
  if (total > pomelo_client_out_len(S.cl)) {
    abort();
  }
  pomelo_client_out_consume(S.cl, total < limit ? total : limit, S.now);
}

static void feed_pkg(int type, const char *body) {
  uint8_t buf[1024];
  size_t len = strlen(body);
  buf[0] = (uint8_t)type;
  buf[1] = 0;
  buf[2] = (uint8_t)(len >> 8);
  buf[3] = (uint8_t)len;
  memcpy(buf + 4, body, len);
  pomelo_client_feed(S.cl, buf, len + 4, S.now);
}

static void run(const uint8_t *data, size_t size) {
  size_t pos = 1;
  uint8_t mode = data[0];
  while (pos < size) {
    uint8_t op = data[pos++];
    uint8_t arg = pos < size ? data[pos] : 0;
    switch (op & 15) {
    case 0:
    case 1:
    case 2: { /* feed the next 1..64 bytes (more often than anything else) */
      size_t n = (size_t)(op >> 4) * 4u + 1u;
      if (n > size - pos) {
        n = size - pos;
      }
      pomelo_client_feed(S.cl, data + pos, n, S.now);
      pos += n;
      break;
    }
    case 3: /* time passes */
      S.now += (uint64_t)arg * (op >> 4 ? 97u : 7u);
      pos++;
      pomelo_client_handle_expiry(S.cl, S.now);
      break;
    case 4: /* jump to the next deadline */
      if (pomelo_client_expiry(S.cl) != UINT64_MAX) {
        if (pomelo_client_expiry(S.cl) > S.now) {
          S.now = pomelo_client_expiry(S.cl);
        }
        pomelo_client_handle_expiry(S.cl, S.now);
      }
      break;
    case 5:
    case 6: /* a request, with a timeout from 0 (default) to 15 * 50 ms */
      issue(ROUTES[op >> 6], (uint32_t)((op >> 2) & 15u) * 50u, S.now);
      break;
    case 7:
      pomelo_client_notify(S.cl, ROUTES[op >> 6], NULL, 0);
      break;
    case 8: /* write some or all of the output */
      drain(op >> 4 ? (size_t)-1 : (size_t)arg);
      pos += op >> 4 ? 0 : 1;
      break;
    case 9:
      pomelo_client_peer_closed(S.cl, S.now);
      break;
    case 10: /* a new socket: connect and, usually, a good handshake answer */
      if (pomelo_client_connect(S.cl, S.now) == 0 && (op >> 4) < 12) {
        drain((size_t)-1);
        feed_pkg(1, (mode & 1) ? HS_DICT : HS_PLAIN);
      }
      break;
    case 11:
      if ((op >> 4) == 0) {
        pomelo_client_disconnect(S.cl);
      }
      break;
    case 12:
      pomelo_client_on(S.cl, ROUTES[op >> 6], (op & 0x20) ? on_push : NULL, NULL);
      break;
    default: /* 13..15: a complete server package of a few kinds */
      switch (arg & 3) {
      case 0:
        feed_pkg(3, "");
        break;
      case 1:
        feed_pkg(5, "{\"reason\":\"x\"}");
        break;
      default: {
        uint8_t m[8] = {4, 0, 0, 4, 0x04, (uint8_t)(1 + ((arg >> 2) & 63)), '{', '}'};
        pomelo_client_feed(S.cl, m, sizeof m, S.now);
        break;
      }
      }
      pos++;
      break;
    }
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  test_alloc ta;
  pomelo_client_settings s;
  pomelo_client_callbacks cb;
  int i;
  if (size < 1) {
    return 0;
  }
  memset(&S, 0, sizeof S);
  S.now = 1000;
  S.rnd = 1;
  S.reentry = (data[0] >> 4) & 3;
  test_alloc_init(&ta, 0);
  pomelo_client_settings_default(&s);
  s.reconnect.enabled = (data[0] & 2) != 0;
  s.reconnect.max_attempts = (data[0] & 4) ? 3 : 0;
  s.random = (data[0] & 8) ? on_random : NULL;
  s.request_timeout_ms = (data[0] & 0x40) ? 0 : 500;
  s.conn.max_body = 4096;
  memset(&cb, 0, sizeof cb);
  cb.on_push = on_push;
  if (pomelo_client_new(&S.cl, &s, &cb, &ta.a, NULL) != 0) {
    abort();
  }
  if (pomelo_client_connect(S.cl, S.now) != 0) {
    abort();
  }
  drain((size_t)-1);
  feed_pkg(1, (data[0] & 1) ? HS_DICT : HS_PLAIN);
  drain((size_t)-1);
  if (pomelo_client_get_state(S.cl) != POMELO_CLIENT_CONNECTED) {
    abort();
  }
  run(data, size);
  pomelo_client_del(S.cl);
  for (i = 0; i < S.nreq; i++) {
    if (S.counts[i] != S.issued[i]) {
      abort();
    }
  }
  if (ta.live != 0) {
    abort();
  }
  return 0;
}
