/* Fuzz target: a server-role connection fed arbitrary bytes, time steps and application calls.
 *
 * Input: byte 0 picks the settings (heartbeat, liveness, transport, body limit, deferred
 * handshake); then a script of operations: feed the next bytes, move time and run the timers,
 * write some output, or call the application API (push, kick, close, handshake reply).
 * Invariants: no crash, no leak, no output once closed, memory bounded, and after
 * handle_expiry(now) the next deadline lies in the future.
 * SPDX-License-Identifier: MIT
 */
#include <pomelo/conn.h>

#include <stdlib.h>

#include "testutil.h"

typedef struct state {
  int deferred;
  int closes;
} state;

static void on_handshake(pomelo_conn *c, const pomelo_json_value *req, void *ud) {
  (void)c;
  (void)req;
  ((state *)ud)->deferred = 1;
}

static void on_message(pomelo_conn *c, const pomelo_msg *m, void *ud) {
  (void)ud;
  if (m->type == POMELO_MSG_REQUEST) {
    pomelo_msg r;
    memset(&r, 0, sizeof r);
    r.type = POMELO_MSG_RESPONSE;
    r.id = m->id;
    r.body = m->body;
    r.body_len = m->body_len < 64 ? m->body_len : 64;
    pomelo_conn_send(c, &r);
  }
}

static void on_close(pomelo_conn *c, int reason, void *ud) {
  (void)c;
  (void)reason;
  ((state *)ud)->closes++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  test_alloc ta;
  pomelo_conn_settings s;
  pomelo_conn_callbacks cb;
  pomelo_conn *c = NULL;
  state st;
  uint64_t now = 1000;
  size_t i = 1;
  uint8_t cfg;
  if (size < 1) {
    return 0;
  }
  cfg = data[0];
  memset(&st, 0, sizeof st);
  memset(&cb, 0, sizeof cb);
  cb.on_message = on_message;
  cb.on_close = on_close;
  if (cfg & 0x10) {
    cb.on_handshake = on_handshake;
  }
  pomelo_conn_settings_default(&s);
  s.heartbeat_interval_ms = (cfg & 1) ? 3000 : 0;
  s.data_is_liveness = (cfg >> 1) & 1;
  s.transport = (cfg & 4) ? POMELO_TRANSPORT_TCP : POMELO_TRANSPORT_AUTO;
  s.max_body = (cfg & 8) ? 64 : 0;
  test_alloc_init(&ta, 0);
  if (pomelo_conn_new(&c, &s, &cb, &ta.a, now, &st) != 0) {
    abort();
  }
  while (i < size) {
    uint8_t op = data[i++];
    switch (op & 3) {
    case 0: { /* feed */
      size_t n = (size_t)(op >> 2) + 1;
      int was_closed = pomelo_conn_wants_close(c);
      if (n > size - i) {
        n = size - i;
      }
      pomelo_conn_feed(c, data + i, n, now);
      i += n;
      if (was_closed && pomelo_conn_out_len(c) != 0) {
        abort(); /* output after close */
      }
      break;
    }
    case 1: { /* time */
      now += (uint64_t)(op >> 2) * 250;
      pomelo_conn_handle_expiry(c, now);
      if (pomelo_conn_get_state(c) != POMELO_CONN_CLOSED && pomelo_conn_expiry(c) <= now &&
          pomelo_conn_get_state(c) != POMELO_CONN_CLOSING) {
        abort(); /* a due timer was not handled */
      }
      break;
    }
    case 2: { /* write some output */
      struct iovec iov[4];
      int k = pomelo_conn_out_iov(c, iov, 4);
      size_t total = 0;
      while (k-- > 0) {
        total += iov[k].iov_len;
      }
      if (total != 0 || pomelo_conn_out_len(c) == 0) {
        size_t n = (size_t)(op >> 2) * 16 + 1;
        pomelo_conn_out_consume(c, n < total ? n : total, now);
      } else {
        abort(); /* bytes queued but no iovec */
      }
      break;
    }
    default: { /* application */
      pomelo_msg m;
      switch ((op >> 2) & 7) {
      case 0:
      case 1:
        memset(&m, 0, sizeof m);
        m.type = POMELO_MSG_PUSH;
        m.route = "onPush";
        m.route_len = 6;
        pomelo_conn_send(c, &m);
        break;
      case 2:
        pomelo_conn_kick(c, "bye");
        break;
      case 3:
        pomelo_conn_close(c, POMELO_CLOSE_SHUTDOWN);
        break;
      case 4:
        pomelo_conn_handshake_reply(c, 200, "{\"u\":1}", 7);
        break;
      case 5:
        pomelo_conn_handshake_reply(c, 500, NULL, 0);
        break;
      case 6:
        pomelo_conn_peer_closed(c);
        break;
      default:
        pomelo_conn_kick(c, NULL);
        break;
      }
      break;
    }
    }
    /* Memory: the body limit, the upgrade head, and queued output are bounded here. */
    if (ta.bytes > (size_t)4 << 20) {
      abort();
    }
    if (st.closes > 1) {
      abort(); /* on_close runs once */
    }
  }
  pomelo_conn_del(c);
  if (ta.live != 0) {
    abort();
  }
  return 0;
}
