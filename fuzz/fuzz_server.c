/* Fuzz target: a server with several connections fed arbitrary bytes, time steps and
 * application calls (pushes, channels, binds, kicks, late answers, releases).
 *
 * Invariants: no crash, no leak, on_session_closed at most once per session, the session count
 * matches, and after handle_expiry(now) no timer is left due.
 * SPDX-License-Identifier: MIT
 */
#include <pomelo/server.h>

#include <stdlib.h>

#include "testutil.h"

#define MAX_S 4

typedef struct fz {
  pomelo_session *s[MAX_S];
  int closed[MAX_S];
  pomelo_request *held;
} fz;

static fz *cur;

static int slot_of(pomelo_session *s) {
  int i;
  for (i = 0; i < MAX_S; i++) {
    if (cur->s[i] == s) {
      return i;
    }
  }
  return -1;
}

static void on_closed(pomelo_server *srv, pomelo_session *s, int reason, void *ud) {
  int i = slot_of(s);
  (void)srv;
  (void)reason;
  (void)ud;
  if (i >= 0 && ++cur->closed[i] > 1) {
    abort();
  }
}

static void h_now(pomelo_request *req, void *ud) {
  (void)ud;
  pomelo_request_respond(req, "{\"ok\":1}", 8);
}

static void h_later(pomelo_request *req, void *ud) {
  (void)ud;
  if (cur->held) {
    pomelo_request_error(cur->held, POMELO_ERR_CALLBACK, "{\"x\":1}", 7);
  }
  cur->held = req;
}

static void on_forward(pomelo_server *srv, pomelo_session *s, const char *json, size_t len,
                       const pomelo_msg *m, void *ud) {
  (void)ud;
  (void)json;
  (void)len;
  if (m->type == POMELO_MSG_REQUEST) {
    pomelo_server_respond(srv, pomelo_session_id(s), m->id, "{}", 2);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  test_alloc ta;
  pomelo_server_settings st;
  pomelo_server_callbacks cb;
  pomelo_server *srv;
  pomelo_channel *ch = NULL;
  fz state;
  uint64_t now = 1000;
  size_t i = 1;
  int k;
  if (size < 1) {
    return 0;
  }
  memset(&state, 0, sizeof state);
  cur = &state;
  pomelo_server_settings_default(&st);
  st.conn.heartbeat_interval_ms = (data[0] & 1) ? 2000 : 0;
  st.conn.max_body = 256;
  st.max_output = (data[0] & 2) ? 200 : 0;
  st.slow_policy = (data[0] & 4) ? POMELO_SLOW_DISCONNECT : POMELO_SLOW_DROP;
  st.rate_limit = (data[0] & 8) ? 3 : 0;
  st.uid_policy = (pomelo_uid_policy)((data[0] >> 4) % 3);
  st.flush_interval_ms = (data[0] & 0x40) ? 20 : 0;
  st.max_connections = 3;
  memset(&cb, 0, sizeof cb);
  cb.on_session_closed = on_closed;
  cb.on_forward = (data[0] & 0x80) ? on_forward : NULL;
  test_alloc_init(&ta, 0);
  if (pomelo_server_new(&srv, &st, &cb, &ta.a, NULL) != 0) {
    abort();
  }
  pomelo_server_on(srv, "connector.h.now", 15, h_now, NULL);
  pomelo_server_on(srv, "connector.h.later", 17, h_later, NULL);
  pomelo_channel_new(srv, "c", 1, &ch);
  while (i < size) {
    uint8_t op = data[i++];
    int slot = op & 3;
    pomelo_session *s = state.s[slot];
    switch ((op >> 2) & 7) {
    case 0: /* accept */
      if (!s && pomelo_server_accept(srv, now, NULL, &state.s[slot]) == 0) {
        state.closed[slot] = 0;
      }
      break;
    case 1:
    case 2: { /* feed */
      size_t n = i < size ? (size_t)data[i++] % 48 + 1 : 0;
      if (n > size - i) {
        n = size - i;
      }
      if (s) {
        pomelo_session_feed(s, data + i, n, now);
      }
      i += n;
      break;
    }
    case 3: /* time */
      now += (uint64_t)(op >> 5) * 700 + 1;
      pomelo_server_handle_expiry(srv, now);
      if (pomelo_server_expiry(srv) <= now) {
        abort();
      }
      break;
    case 4: /* write some output */
      if (s) {
        struct iovec iov[4];
        int n = pomelo_session_out_iov(s, iov, 4);
        pomelo_session_out_consume(s, n > 0 ? iov[0].iov_len / 2 + 1 : 0, now);
      }
      break;
    case 5: /* release a closed (or any, when op says so) session */
      if (s && (pomelo_session_wants_close(s) || (op & 0x80))) {
        pomelo_server_release(srv, s);
        state.s[slot] = NULL;
      }
      break;
    case 6: /* pushes and channels */
      if (s) {
        char uid[2] = {(char)('a' + (op >> 5)), 0};
        pomelo_session_bind(s, uid, 1);
        pomelo_channel_add(ch, uid, 1, pomelo_session_id(s));
      }
      pomelo_channel_push(ch, "onChat", 6, "{\"m\":1}", 7);
      break;
    default: /* kicks, broadcasts, late answers */
      if (op & 0x20) {
        pomelo_server_broadcast(srv, op & 0x40, "onAll", 5, NULL, 0);
      } else if (op & 0x40) {
        pomelo_server_kick_uid(srv, "a", 1, "bye", 3);
      } else if (state.held) {
        pomelo_request_respond(state.held, NULL, 0);
        state.held = NULL;
      } else if (s) {
        pomelo_channel_leave(ch, "a", 1, pomelo_session_id(s));
      }
      break;
    }
    {
      pomelo_server_stats stats;
      size_t live = 0;
      for (k = 0; k < MAX_S; k++) {
        live += state.s[k] != NULL;
      }
      pomelo_server_get_stats(srv, &stats);
      if (stats.connections != live || pomelo_server_session_count(srv) != live) {
        abort();
      }
    }
    if (ta.bytes > (size_t)8 << 20) {
      abort();
    }
  }
  if (state.held) {
    pomelo_request_drop(state.held);
  }
  pomelo_server_del(srv);
  if (ta.live != 0) {
    abort();
  }
  return 0;
}
