/* Fuzz target: a server with several connections fed arbitrary bytes, time steps and
 * application calls (pushes, channels, binds, kicks, late answers, releases, wire formats),
 * with a route dictionary and protos, so compressed routes, protobuf requests, responses and
 * pushes, gzip-flagged bodies and CESU-8 text all run.
 *
 * Invariants: no crash, no leak, the session count matches, after handle_expiry(now) no timer is
 * left due, and the ready list is exact: a session taken off it to write has output, one taken
 * off to close wants its socket closed and is told so once, and no session wants its socket
 * closed without having been told.
 * SPDX-License-Identifier: MIT
 */
#include <pomelo/dict.h>
#include <pomelo/protobuf.h>
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

/* The dictionary and protos, made once (immutable, shared by every run). */
static const pomelo_dict *fz_dict;
static const pomelo_protos *fz_protos;

static void make_wire(void) {
  static const char *const routes[] = {"connector.h.now", "connector.h.later", "chat.c.send"};
  static const char *const extra[] = {"onChat", "onAll"};
  static const char sp[] = "{\"connector.h.now\":{\"optional uInt32 ok\":1},\"onChat\":{"
                           "\"required uInt32 m\":1,\"optional string t\":2}}";
  static const char cp[] = "{\"connector.h.now\":{\"optional string s\":1,\"repeated sInt32 "
                           "r\":2,\"optional Sub sub\":3,\"message Sub\":{\"optional double "
                           "d\":1,\"repeated float f\":2,\"optional Sub2 x\":3,\"message Sub2\":"
                           "{\"optional int32 i\":1}}},\"connector.h.later\":{\"required string "
                           "q\":1}}";
  pomelo_dict *d = NULL;
  pomelo_protos *p = NULL;
  if (fz_dict) {
    return;
  }
  if (pomelo_dict_new(&d, NULL, routes, 3, extra, 2) != 0 ||
      pomelo_protos_new(&p, NULL, sp, sizeof sp - 1, cp, sizeof cp - 1, NULL, NULL) != 0) {
    abort();
  }
  fz_dict = d;
  fz_protos = p;
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
  make_wire();
  pomelo_server_settings_default(&st);
  st.conn.dict = fz_dict;
  st.conn.protos = fz_protos;
  st.gzip_min = (data[0] & 0x20) && (pomelo_features() & POMELO_FEATURE_ZLIB) ? 8 : 0;
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
      if (op & 0x80) {
        pomelo_channel_push(ch, "onChat", "{\"m\":1,\"t\":\"\xf0\x9f\x98\x80\"}", 18);
      } else {
        pomelo_channel_push(ch, "onChat", "{\"m\":1}", 7);
      }
      if (s && (op & 0x40)) {
        pomelo_session_set_format(s, (unsigned)(op >> 2) & 0xFu);
      }
      break;
    default: /* kicks, broadcasts, late answers */
      if (op & 0x20) {
        pomelo_server_broadcast(srv, op & 0x40, "onAll", "{\"t\":\"\xf0\x9f\x98\x80\"}", 12);
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
