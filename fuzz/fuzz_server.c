/* Fuzz target: a server with several connections fed arbitrary bytes, time steps and
 * application calls (pushes, channels, binds, kicks, late answers, releases).
 *
 * Invariants: no crash, no leak, the session count matches, after handle_expiry(now) no timer is
 * left due, and the ready list is exact: a session taken off it to write has output, one taken
 * off to close wants its socket closed and is told so once, and no session wants its socket
 * closed without having been told.
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

/* Drains the ready list and checks what it says; closed sessions are released when `release`
 * (else they stay, told once). */
static void drain_ready(pomelo_server *srv, int release) {
  pomelo_session *s;
  unsigned what;
  int k;
  while ((s = pomelo_server_next_ready(srv, &what)) != NULL) {
    int i = slot_of(s);
    if (i < 0) {
      abort(); /* a released session on the list */
    }
    if (what == POMELO_READY_CLOSE) {
      if (!pomelo_session_wants_close(s) || ++cur->closed[i] > 1) {
        abort();
      }
      if (release) {
        pomelo_server_release(srv, s);
        cur->s[i] = NULL;
        cur->closed[i] = 0;
      }
    } else if (what != POMELO_READY_WRITE || pomelo_session_out_len(s) == 0) {
      abort();
    }
  }
  for (k = 0; k < MAX_S; k++) {
    if (cur->s[k] && pomelo_session_wants_close(cur->s[k]) && cur->closed[k] != 1) {
      abort(); /* wants a close nobody was told about */
    }
  }
}

static void h_now(pomelo_request *req, void *ud) {
  (void)ud;
  pomelo_request_respond(req, "{\"ok\":1}", 8);
}

/* Keeps a request for later (a notify's handle ends with this call: only its id-less answer
 * is tried, which does nothing). */
static void h_later(pomelo_request *req, void *ud) {
  (void)ud;
  if (pomelo_request_msg(req)->type != POMELO_MSG_REQUEST) {
    pomelo_request_respond(req, "{}", 2);
    return;
  }
  if (cur->held) {
    pomelo_request_error(cur->held, 3, "{\"x\":1}", 7);
  }
  cur->held = req;
}

static void h_default(pomelo_request *req, void *ud) {
  (void)ud;
  pomelo_request_error(req, POMELO_ERR_NO_HANDLER, NULL, 0);
}

static void on_forward(pomelo_server *srv, pomelo_session *s, const char *json, size_t len,
                       const pomelo_msg *m, void *ud) {
  (void)ud;
  (void)json;
  (void)len;
  if (m->type == POMELO_MSG_REQUEST) {
    pomelo_server_respond(srv, pomelo_session_id(s), m->id, NULL, "{}", 2);
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
  cb.on_forward = (data[0] & 0x80) ? on_forward : NULL;
  test_alloc_init(&ta, 0);
  if (pomelo_server_new(&srv, &st, &cb, &ta.a, NULL) != 0) {
    abort();
  }
  pomelo_server_on(srv, "connector.h.now", h_now, NULL);
  pomelo_server_on(srv, "connector.h.later", h_later, NULL);
  if (data[0] & 0x10) {
    pomelo_server_on(srv, NULL, h_default, NULL);
  }
  pomelo_channel_new(srv, "c", 1, &ch);
  while (i < size) {
    uint8_t op = data[i++];
    int slot = op & 3;
    pomelo_session *s = state.s[slot];
    switch ((op >> 2) & 7) {
    case 0: /* accept */
      if (!s) {
        state.closed[slot] = 0;
        if (pomelo_server_accept(srv, now, NULL, &state.s[slot]) != 0) {
          state.s[slot] = NULL;
        }
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
        state.closed[slot] = 0;
      } else if (op & 0x40) {
        pomelo_server_shutdown(srv, (op & 0x20) ? "maintenance" : NULL);
      }
      break;
    case 6: /* pushes and channels */
      if (s) {
        char uid[2] = {(char)('a' + (op >> 5)), 0};
        pomelo_session_bind(s, uid, 1);
        pomelo_channel_add(ch, uid, 1, pomelo_session_id(s));
      }
      pomelo_channel_push(ch, "onChat", "{\"m\":1}", 7);
      break;
    default: /* kicks, broadcasts, late answers */
      if (op & 0x20) {
        pomelo_server_broadcast(srv, op & 0x40, "onAll", NULL, 0);
      } else if (op & 0x40) {
        pomelo_server_kick_uid(srv, "a", 1, "bye");
      } else if (state.held) {
        pomelo_request_respond(state.held, NULL, 0);
        state.held = NULL;
      } else if (s) {
        pomelo_channel_leave(ch, "a", 1, pomelo_session_id(s));
      }
      break;
    }
    drain_ready(srv, (op & 0x80) != 0);
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
