/* The connection state machine: handshake, ACK, heartbeat, kick, timeouts (spec 4, 5, 6).
 *
 * Bytes come in through pomelo_conn_feed, become packages (pkg_decoder), and each package is
 * handled by the role's state table below. Output goes through the queue in outq.c.
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>

#include "conn/conn_int.h"
#include "transport/ws.h"

/* Control packages are static bytes: no allocation for a heartbeat. */
static const uint8_t PKG_HEARTBEAT[4] = {POMELO_PKG_HEARTBEAT, 0, 0, 0};
static const uint8_t PKG_ACK[4] = {POMELO_PKG_HANDSHAKE_ACK, 0, 0, 0};

const char *pomelo_close_reason_name(int reason) {
  static const char *const names[] = {"none",
                                      "peer",
                                      "heartbeat_timeout",
                                      "handshake_timeout",
                                      "idle_timeout",
                                      "kicked",
                                      "handshake_failed",
                                      "protocol_error",
                                      "shutdown",
                                      "local",
                                      "slow_consumer",
                                      "rate_limit",
                                      "max_connections",
                                      "error",
                                      "too_large"};
  if (reason < 0 || (size_t)reason >= PM_ARRAY_LEN(names)) {
    return "unknown";
  }
  return names[reason];
}

void pomelo_conn_settings_default(pomelo_conn_settings *s) {
  memset(s, 0, sizeof(*s));
  s->role = POMELO_ROLE_SERVER;
  s->transport = POMELO_TRANSPORT_AUTO;
  s->handshake_timeout_ms = 10000;
  s->idle_timeout_ms = 90000;
  s->max_body = POMELO_PKG_DEFAULT_LIMIT;
  s->http_max_head = 8192;
  s->ws_path = "/";
}

/* ---------------------------------------------------------------------------------------------
 * Shared settings
 * ------------------------------------------------------------------------------------------- */

int pm_conn_shared_new(pm_conn_shared **out, const pomelo_conn_settings *settings,
                       const pomelo_conn_callbacks *callbacks, const pomelo_allocator *alloc) {
  pomelo_allocator a;
  pm_conn_shared *sh;
  pomelo_conn_settings s;
  if (settings) {
    s = *settings;
  } else {
    pomelo_conn_settings_default(&s);
  }
  if ((unsigned)s.role > POMELO_ROLE_CLIENT || (unsigned)s.transport > POMELO_TRANSPORT_WS ||
      s.max_body > POMELO_PKG_BODY_MAX) {
    return POMELO_ERR_INVALID_ARG;
  }
  if (s.role == POMELO_ROLE_CLIENT && s.transport == POMELO_TRANSPORT_WS &&
      (!callbacks || !callbacks->random)) {
    return POMELO_ERR_INVALID_ARG; /* WebSocket keys and masks need the caller's randomness */
  }
  if (s.http_max_head == 0) {
    s.http_max_head = 8192;
  }
  if (s.max_body == 0) {
    s.max_body = POMELO_PKG_DEFAULT_LIMIT;
  }
  if (!s.client_type) {
    s.client_type = "libpomelo";
  }
  if (!s.client_version) {
    s.client_version = POMELO_VERSION_STRING;
  }
  pm_alloc_init(&a, alloc);
  sh = pm_calloc(&a, sizeof(*sh));
  if (!sh) {
    return POMELO_ERR_NOMEM;
  }
  sh->set = s;
  if (callbacks) {
    sh->cb = *callbacks;
  }
  sh->alloc = a;
  sh->refs = 1;
  *out = sh;
  return 0;
}

void pm_conn_shared_unref(pm_conn_shared *sh) {
  if (sh && --sh->refs == 0) {
    pomelo_allocator a = sh->alloc;
    pm_free(&a, sh);
  }
}

/* ---------------------------------------------------------------------------------------------
 * Output and closing
 * ------------------------------------------------------------------------------------------- */

static void notify_close(pomelo_conn *c) {
  if (!c->close_notified) {
    c->close_notified = 1;
    if (c->sh->cb.on_close) {
      c->sh->cb.on_close(c, c->close_reason, c->user_data);
    }
  }
}

static int ws_close_frame(pomelo_conn *c, uint16_t code);

/* The connection is done: the caller must close the socket now. */
static void enter_closed(pomelo_conn *c) {
  c->state = POMELO_CONN_CLOSED;
  if (c->sh->on_closed) {
    c->sh->on_closed(c, c->user_data);
  }
}

/* The WebSocket close code that goes with a close reason. */
static uint16_t ws_close_code(int reason) {
  return reason == POMELO_CLOSE_TOO_LARGE ? PM_WS_CLOSE_TOO_BIG : PM_WS_CLOSE_NORMAL;
}

/* Hard close: queued output is dropped and the caller closes the socket now. Over WebSocket,
 * when the socket is still alive, a close frame (1000) is flushed first. */
static void close_now(pomelo_conn *c, int reason) {
  int flush_close;
  if (c->state == POMELO_CONN_CLOSED) {
    return;
  }
  if (c->close_reason == POMELO_CLOSE_NONE) {
    c->close_reason = (uint8_t)reason;
  }
  pm_outq_clear(&c->q, &c->sh->alloc);
  c->state = POMELO_CONN_CLOSING; /* no output is queued by anything but the close frame */
  flush_close = reason != POMELO_CLOSE_PEER && c->ws && pm_ws_is_open(c->ws) &&
                ws_close_frame(c, ws_close_code(reason)) == 0 && c->q.bytes;
  pm_pkg_decoder_fini(&c->dec);
  notify_close(c);
  if (!flush_close && c->state != POMELO_CONN_CLOSED) {
    enter_closed(c);
  }
}

/* Soft close: flush what is queued (then a WebSocket close frame), then CLOSED. */
static void close_after_flush(pomelo_conn *c, int reason) {
  if (c->state >= POMELO_CONN_CLOSING) {
    return;
  }
  c->close_reason = (uint8_t)reason;
  c->state = POMELO_CONN_CLOSING;
  if (c->ws && pm_ws_is_open(c->ws)) {
    ws_close_frame(c, ws_close_code(reason));
  }
  pm_pkg_decoder_fini(&c->dec);
  notify_close(c);
  if (c->q.bytes == 0 && c->state != POMELO_CONN_CLOSED) {
    enter_closed(c);
  }
}

/* Queues bytes exactly as they go on the wire. */
static int enqueue_raw(pomelo_conn *c, pomelo_frame *f, const uint8_t *data, size_t len) {
  int was_empty = c->q.count == 0;
  int rc = pm_outq_push(&c->q, &c->sh->alloc, f, data, len);
  if (rc == 0 && was_empty && c->sh->cb.on_output) {
    c->sh->cb.on_output(c, c->user_data);
  }
  return rc;
}

static uint32_t random32(pomelo_conn *c) {
  return c->sh->cb.random(c, c->user_data);
}

/* Client side: one masked frame, in a new frame buffer. */
static int enqueue_masked(pomelo_conn *c, int opcode, const uint8_t *data, size_t len) {
  uint8_t mask[4], *p;
  uint32_t r = random32(c);
  pomelo_frame *f;
  size_t hl;
  int rc;
  mask[0] = (uint8_t)(r >> 24);
  mask[1] = (uint8_t)(r >> 16);
  mask[2] = (uint8_t)(r >> 8);
  mask[3] = (uint8_t)r;
  rc = pm_frame_alloc(&f, &c->sh->alloc, 0, PM_WS_HEAD_MAX + len, &p);
  if (rc) {
    return rc;
  }
  hl = pm_ws_frame_header(p, opcode, len, mask);
  if (len) {
    memcpy(p + hl, data, len);
    pm_ws_mask(p + hl, len, mask, 0);
  }
  rc = enqueue_raw(c, f, p, hl + len);
  pomelo_frame_unref(f);
  return rc;
}

/* Queues one or more whole packages (`data` inside frame `f`, or static bytes when f is NULL)
 * in the connection's transport: as they are on TCP, as one binary message on WebSocket. A
 * server-side WebSocket header goes into the frame's headroom, so a frame shared by many
 * WebSocket connections carries one header for all of them. */
static int enqueue_framed(pomelo_conn *c, pomelo_frame *f, const uint8_t *data, size_t len) {
  uint8_t h[PM_WS_HEAD_MAX], *p;
  size_t hl;
  pomelo_frame *nf;
  int rc;
  if (c->transport != POMELO_TRANSPORT_WS) {
    return enqueue_raw(c, f, data, len);
  }
  if (c->role == POMELO_ROLE_CLIENT) {
    /* One package per message: the real server disconnects a client that sends two in one
     * (spec 1.3), so a frame of several packages becomes several messages. */
    while (len >= POMELO_PKG_HEAD_LEN) {
      size_t n = PM_MIN(len, POMELO_PKG_HEAD_LEN + (size_t)pm_be24(data + 1));
      rc = enqueue_masked(c, PM_WS_OP_BINARY, data, n);
      if (rc) {
        return rc;
      }
      data += n;
      len -= n;
    }
    return len ? enqueue_masked(c, PM_WS_OP_BINARY, data, len) : 0;
  }
  hl = pm_ws_frame_header(h, PM_WS_OP_BINARY, len, NULL);
  if (f && data == pomelo_frame_data(f) && f->head >= hl) {
    memcpy(pm_frame_mut(f) - hl, h, hl); /* the same bytes for every sharer */
    return enqueue_raw(c, f, data - hl, len + hl);
  }
  if (!f && len == 4 && memcmp(data, PKG_HEARTBEAT, 4) == 0) {
    static const uint8_t WS_HEARTBEAT[6] = {
        0x80 | PM_WS_OP_BINARY, 4, POMELO_PKG_HEARTBEAT, 0, 0, 0};
    return enqueue_raw(c, NULL, WS_HEARTBEAT, sizeof WS_HEARTBEAT);
  }
  rc = pm_frame_alloc(&nf, &c->sh->alloc, 0, hl + len, &p);
  if (rc) {
    return rc;
  }
  memcpy(p, h, hl);
  memcpy(p + hl, data, len);
  rc = enqueue_raw(c, nf, p, hl + len);
  pomelo_frame_unref(nf);
  return rc;
}

static int enqueue(pomelo_conn *c, pomelo_frame *f, const uint8_t *data, size_t len) {
  int rc = enqueue_framed(c, f, data, len);
  if (rc == 0 && c->sh->counters) {
    c->sh->counters->packages_out++;
  }
  return rc;
}

static int enqueue_static(pomelo_conn *c, const uint8_t pkg[4]) {
  return enqueue(c, NULL, pkg, 4);
}

/* pm_ws_io callbacks: raw bytes (HTTP) and control frames (pong, close) to send. */
static int ws_send(void *ctx, const uint8_t *data, size_t len) {
  pomelo_conn *c = ctx;
  pomelo_frame *f;
  int rc = pomelo_frame_new(&f, &c->sh->alloc, data, len);
  if (rc) {
    return rc;
  }
  rc = enqueue_raw(c, f, pomelo_frame_data(f), len);
  pomelo_frame_unref(f);
  return rc;
}

static int ws_control(void *ctx, int opcode, const uint8_t *payload, size_t len) {
  pomelo_conn *c = ctx;
  uint8_t frame[2 + 125];
  if (c->role == POMELO_ROLE_CLIENT) {
    return enqueue_masked(c, opcode, payload, len);
  }
  pm_ws_frame_header(frame, opcode, len, NULL);
  memcpy(frame + 2, payload, len);
  return ws_send(c, frame, 2 + len);
}

/* Queues a WebSocket close frame (once). */
static int ws_close_frame(pomelo_conn *c, uint16_t code) {
  pm_ws_io io;
  memset(&io, 0, sizeof io);
  io.ctx = c;
  io.send = ws_send;
  io.control = ws_control;
  return pm_ws_send_close(c->ws, code, &io);
}

/* Queues one package built from `body`, in a new frame. */
static int enqueue_pkg(pomelo_conn *c, int type, const uint8_t *body, size_t len) {
  pomelo_frame *f;
  int rc = pomelo_pkg_encode_frame(&f, &c->sh->alloc, type, body, len);
  if (rc) {
    return rc;
  }
  rc = enqueue(c, f, pomelo_frame_data(f), pomelo_frame_len(f));
  pomelo_frame_unref(f);
  return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Lifecycle
 * ------------------------------------------------------------------------------------------- */

static uint64_t after(uint64_t now, uint32_t ms) {
  return ms ? now + ms : PM_NO_DEADLINE;
}

static int client_send_handshake(pomelo_conn *c);
static int start_ws(pomelo_conn *c);

int pm_conn_new_shared(pomelo_conn **out, pm_conn_shared *sh, uint64_t now, void *user_data) {
  const pomelo_conn_settings *s = &sh->set;
  pomelo_conn *c = pm_calloc(&sh->alloc, sizeof(*c));
  int rc;
  if (!c) {
    return POMELO_ERR_NOMEM;
  }
  sh->refs++;
  c->sh = sh;
  c->user_data = user_data;
  c->role = (uint8_t)s->role;
  c->state = POMELO_CONN_INIT;
  c->transport = (uint8_t)(s->role == POMELO_ROLE_CLIENT && s->transport == POMELO_TRANSPORT_AUTO
                               ? POMELO_TRANSPORT_TCP
                               : s->transport);
  if (s->role == POMELO_ROLE_SERVER) {
    c->hb_interval = s->heartbeat_interval_ms;
    c->hb_timeout =
        s->heartbeat_timeout_ms ? s->heartbeat_timeout_ms : 2 * s->heartbeat_interval_ms;
  }
  c->hs_deadline = after(now, s->handshake_timeout_ms);
  c->hb_deadline = PM_NO_DEADLINE;
  c->hb_send_at = PM_NO_DEADLINE;
  c->idle_at = after(now, s->idle_timeout_ms);
  pm_pkg_decoder_init(&c->dec, &sh->alloc, s->max_body,
                      s->role == POMELO_ROLE_CLIENT ? POMELO_PKG_DECODER_ALLOW_UNKNOWN : 0);
  pm_outq_init(&c->q);
  rc = 0;
  if (c->transport == POMELO_TRANSPORT_WS) {
    rc = start_ws(c);
    if (rc == 0 && s->role == POMELO_ROLE_CLIENT) {
      /* The upgrade first; the Pomelo handshake follows the 101 (ws_open). */
      uint8_t nonce[16];
      uint32_t r;
      size_t i;
      pm_ws_io io;
      for (i = 0; i < 16; i += 4) {
        r = random32(c);
        memcpy(nonce + i, &r, 4);
      }
      memset(&io, 0, sizeof io);
      io.ctx = c;
      io.send = ws_send;
      rc = pm_ws_client_start(c->ws, s->ws_host, s->ws_path, nonce, &io);
    }
  } else if (s->role == POMELO_ROLE_CLIENT) {
    rc = client_send_handshake(c);
  }
  if (rc) {
    pomelo_conn_del(c);
    return rc;
  }
  *out = c;
  return 0;
}

int pomelo_conn_new(pomelo_conn **out, const pomelo_conn_settings *settings,
                    const pomelo_conn_callbacks *callbacks, const pomelo_allocator *alloc,
                    uint64_t now, void *user_data) {
  pm_conn_shared *sh;
  int rc;
  if (!out) {
    return POMELO_ERR_INVALID_ARG;
  }
  rc = pm_conn_shared_new(&sh, settings, callbacks, alloc);
  if (rc) {
    return rc;
  }
  rc = pm_conn_new_shared(out, sh, now, user_data);
  pm_conn_shared_unref(sh); /* the connection holds its own reference */
  return rc;
}

void pomelo_conn_del(pomelo_conn *c) {
  pm_conn_shared *sh;
  if (!c) {
    return;
  }
  sh = c->sh;
  pm_outq_clear(&c->q, &sh->alloc);
  pm_pkg_decoder_fini(&c->dec);
  pm_ws_del(c->ws, &sh->alloc);
  pm_free(&sh->alloc, c);
  pm_conn_shared_unref(sh);
}

void *pomelo_conn_user_data(const pomelo_conn *c) {
  return c->user_data;
}

pomelo_conn_state pomelo_conn_get_state(const pomelo_conn *c) {
  return (pomelo_conn_state)c->state;
}

pomelo_transport pomelo_conn_get_transport(const pomelo_conn *c) {
  return (pomelo_transport)c->transport;
}

int pomelo_conn_wants_close(const pomelo_conn *c) {
  return c->state == POMELO_CONN_CLOSED;
}

int pomelo_conn_close_reason(const pomelo_conn *c) {
  return c->close_reason;
}

uint32_t pomelo_conn_heartbeat_interval(const pomelo_conn *c) {
  return c->hb_interval;
}

void pm_conn_abort(pomelo_conn *c, int reason) {
  close_now(c, reason);
}

void pomelo_conn_peer_closed(pomelo_conn *c) {
  close_now(c, POMELO_CLOSE_PEER);
}

int pomelo_conn_close(pomelo_conn *c, int reason) {
  if (c->state >= POMELO_CONN_CLOSING) {
    return POMELO_ERR_STATE;
  }
  close_after_flush(c, reason);
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Output
 * ------------------------------------------------------------------------------------------- */

int pomelo_conn_out_iov(const pomelo_conn *c, struct iovec *iov, int max) {
  if (!iov || max <= 0) {
    return 0;
  }
  return pm_outq_iov(&c->q, iov, max);
}

size_t pomelo_conn_out_len(const pomelo_conn *c) {
  return c->q.bytes;
}

void pomelo_conn_out_consume(pomelo_conn *c, size_t n, uint64_t now) {
  if (n == 0) {
    return;
  }
  pm_outq_consume(&c->q, &c->sh->alloc, n);
  if (c->state < POMELO_CONN_CLOSED) {
    c->idle_at = after(now, c->sh->set.idle_timeout_ms);
  }
  if (c->state == POMELO_CONN_CLOSING && c->q.bytes == 0) {
    enter_closed(c);
  }
}

static int send_allowed(const pomelo_conn *c, int type) {
  if (c->role == POMELO_ROLE_SERVER) {
    return type == POMELO_MSG_RESPONSE || type == POMELO_MSG_PUSH;
  }
  return type == POMELO_MSG_REQUEST || type == POMELO_MSG_NOTIFY;
}

int pomelo_conn_send(pomelo_conn *c, const pomelo_msg *msg) {
  pomelo_frame *f;
  int rc;
  if (!msg || !send_allowed(c, msg->type)) {
    return msg && (unsigned)msg->type > POMELO_MSG_PUSH ? POMELO_ERR_MSG_TYPE
                                                        : POMELO_ERR_INVALID_ARG;
  }
  if (c->state != POMELO_CONN_WORKING) {
    return POMELO_ERR_STATE;
  }
  rc = pomelo_msg_encode_frame(&f, &c->sh->alloc, msg);
  if (rc) {
    return rc;
  }
  rc = enqueue(c, f, pomelo_frame_data(f), pomelo_frame_len(f));
  pomelo_frame_unref(f);
  return rc;
}

int pomelo_conn_send_frame(pomelo_conn *c, pomelo_frame *f) {
  if (!f) {
    return POMELO_ERR_INVALID_ARG;
  }
  if (c->state != POMELO_CONN_WORKING) {
    return POMELO_ERR_STATE;
  }
  return enqueue(c, f, pomelo_frame_data(f), pomelo_frame_len(f));
}

/* ---------------------------------------------------------------------------------------------
 * Server role: handshake (spec 4.3), ACK, heartbeat (spec 5), kick (spec 6)
 * ------------------------------------------------------------------------------------------- */

/* An error answer: {"code":N}, flushed, then the connection closes. */
static int server_reject(pomelo_conn *c, int code) {
  char body[32];
  int n = snprintf(body, sizeof body, "{\"code\":%d}", code);
  int rc = enqueue_pkg(c, POMELO_PKG_HANDSHAKE, (const uint8_t *)body, (size_t)n);
  c->hs_pending = 0;
  close_after_flush(c, POMELO_CLOSE_HANDSHAKE_FAILED);
  return rc;
}

static int write_raw_key(pomelo_json_writer *w, const char *key, const char *json) {
  int rc = pomelo_json_write_key(w, key, strlen(key));
  return rc ? rc : pomelo_json_write_raw(w, json, strlen(json));
}

static int write_str_key(pomelo_json_writer *w, const char *key, const char *str, size_t len) {
  int rc = pomelo_json_write_key(w, key, strlen(key));
  return rc ? rc : pomelo_json_write_string(w, str, len);
}

/* Builds a JSON body with `build` and queues it as one package of `type`. */
typedef int (*json_build_fn)(pomelo_conn *c, pomelo_json_writer *w, const void *arg);

static int send_json_pkg(pomelo_conn *c, int type, json_build_fn build, const void *arg) {
  pomelo_json_writer *w;
  const char *json;
  size_t len;
  int rc = pomelo_json_writer_new(&w, &c->sh->alloc, 0);
  if (rc) {
    return rc;
  }
  rc = build(c, w, arg);
  if (!rc) {
    json = pomelo_json_writer_data(w, &len);
    rc = enqueue_pkg(c, type, (const uint8_t *)json, len);
  }
  pomelo_json_writer_del(w);
  return rc;
}

typedef struct user_arg {
  const char *json;
  size_t len;
} user_arg;

/* The success answer, keys in the real server's order:
 * code, sys{heartbeat, dict, routeToCode, codeToRoute, dictVersion, useDict, protos, useProto},
 * user. */
static int build_accept(pomelo_conn *c, pomelo_json_writer *w, const void *arg) {
  const pomelo_conn_settings *s = &c->sh->set;
  const user_arg *user = arg;
  int rc = pomelo_json_write_begin_object(w);
  rc = rc ? rc : pomelo_json_write_key(w, "code", 4);
  rc = rc ? rc : pomelo_json_write_int64(w, 200);
  rc = rc ? rc : pomelo_json_write_key(w, "sys", 3);
  rc = rc ? rc : pomelo_json_write_begin_object(w);
  if (!rc && c->hb_interval) {
    rc = pomelo_json_write_key(w, "heartbeat", 9);
    if (!rc && c->hb_interval % 1000 == 0) {
      rc = pomelo_json_write_int64(w, c->hb_interval / 1000);
    } else if (!rc) {
      rc = pomelo_json_write_double(w, c->hb_interval / 1000.0);
    }
  }
  if (!rc && s->dict_json) {
    if (c->hs_need_dict) {
      rc = write_raw_key(w, "dict", s->dict_json);
      rc = rc ? rc : write_raw_key(w, "routeToCode", s->dict_json);
      if (!rc && s->code_to_route_json) {
        rc = write_raw_key(w, "codeToRoute", s->code_to_route_json);
      }
      if (!rc && s->dict_version) {
        rc = write_str_key(w, "dictVersion", s->dict_version, strlen(s->dict_version));
      }
    }
    rc = rc ? rc : pomelo_json_write_key(w, "useDict", 7);
    rc = rc ? rc : pomelo_json_write_bool(w, 1);
  }
  if (!rc && s->protos_json) {
    if (c->hs_need_protos) {
      rc = write_raw_key(w, "protos", s->protos_json);
    }
    rc = rc ? rc : pomelo_json_write_key(w, "useProto", 8);
    rc = rc ? rc : pomelo_json_write_bool(w, 1);
  }
  rc = rc ? rc : pomelo_json_write_end_object(w);
  if (!rc && user->json) {
    rc = pomelo_json_write_key(w, "user", 4);
    rc = rc ? rc : pomelo_json_write_raw(w, user->json, user->len);
  }
  return rc ? rc : pomelo_json_write_end_object(w);
}

static int server_accept(pomelo_conn *c, const char *user, size_t user_len) {
  user_arg u;
  int rc;
  u.json = user;
  u.len = user_len;
  rc = send_json_pkg(c, POMELO_PKG_HANDSHAKE, build_accept, &u);
  if (rc == 0) {
    c->hs_pending = 0;
    c->state = POMELO_CONN_WAIT_ACK;
  }
  return rc;
}

int pomelo_conn_handshake_reply(pomelo_conn *c, int code, const char *user_json,
                                size_t user_json_len) {
  if (c->role != POMELO_ROLE_SERVER || !c->hs_pending || c->state != POMELO_CONN_INIT) {
    return POMELO_ERR_STATE;
  }
  if (code != 200) {
    return server_reject(c, code);
  }
  if (!user_json && user_json_len) {
    return POMELO_ERR_INVALID_ARG;
  }
  return server_accept(c, user_json, user_json_len);
}

/* Whether a client's cached version (absent, a string, or anything else) equals ours: the real
 * server compares with !==, so only an identical string matches. */
static int same_version(const pomelo_json_value *v, const char *ours) {
  size_t len;
  const char *s;
  if (!v || !ours || pomelo_json_typeof(v) != POMELO_JSON_STRING) {
    return 0;
  }
  s = pomelo_json_string(v, &len);
  return len == strlen(ours) && memcmp(s, ours, len) == 0;
}

static int server_handshake(pomelo_conn *c, const uint8_t *body, size_t len) {
  const pm_conn_shared *sh = c->sh;
  pomelo_json_doc *doc = NULL;
  const pomelo_json_value *root, *sys, *v;
  const char *type = "", *version = "";
  size_t type_len = 0, version_len = 0;
  int rc;

  /* Bad JSON, or no sys object: 500 (spec 4.3 steps 1-2). */
  rc = pomelo_json_parse(&doc, &c->sh->alloc, (const char *)body, len, NULL, NULL);
  if (rc == POMELO_ERR_NOMEM) {
    return rc;
  }
  root = rc == 0 ? pomelo_json_root(doc) : NULL;
  sys = root ? pomelo_json_get(root, "sys") : NULL;
  if (!sys || pomelo_json_typeof(sys) != POMELO_JSON_OBJECT) {
    pomelo_json_doc_del(doc);
    return server_reject(c, 500);
  }
  v = pomelo_json_get(sys, "type");
  if (v && pomelo_json_typeof(v) == POMELO_JSON_STRING) {
    type = pomelo_json_string(v, &type_len);
  }
  v = pomelo_json_get(sys, "version");
  if (v && pomelo_json_typeof(v) == POMELO_JSON_STRING) {
    version = pomelo_json_string(v, &version_len);
  }
  if (sh->cb.check_client &&
      !sh->cb.check_client(c, type, type_len, version, version_len, c->user_data)) {
    pomelo_json_doc_del(doc);
    return server_reject(c, 501);
  }
  c->hs_need_dict = !same_version(pomelo_json_get(sys, "dictVersion"), sh->set.dict_version);
  c->hs_need_protos = !same_version(pomelo_json_get(sys, "protoVersion"), sh->set.proto_version);
  c->hs_pending = 1;
  if (sh->cb.on_handshake) {
    sh->cb.on_handshake(c, root, c->user_data);
    rc = 0;
  } else {
    rc = server_accept(c, NULL, 0);
  }
  pomelo_json_doc_del(doc);
  return rc;
}

static int server_heartbeat(pomelo_conn *c, uint64_t now) {
  if (!c->hb_interval) {
    return 0; /* no heartbeat configured: the real server ignores them */
  }
  c->hb_deadline = after(now, c->hb_timeout);
  return enqueue_static(c, PKG_HEARTBEAT);
}

static int deliver(pomelo_conn *c, const pomelo_pkg *p) {
  pomelo_msg m;
  if (pomelo_msg_decode(p->body, p->body_len, &m) != 0) {
    if (c->sh->counters) {
      c->sh->counters->messages_dropped++;
    }
    return 0; /* a malformed message is dropped, like a request the real server cannot route */
  }
  if (c->sh->cb.on_message) {
    c->sh->cb.on_message(c, &m, c->user_data);
  }
  return 0;
}

static int server_package(pomelo_conn *c, const pomelo_pkg *p, uint64_t now) {
  if (p->type == POMELO_PKG_KICK) {
    close_now(c, POMELO_CLOSE_PROTOCOL_ERROR); /* a client never kicks: the real server closes */
    return 0;
  }
  switch (c->state) {
  case POMELO_CONN_INIT:
    if (p->type == POMELO_PKG_HANDSHAKE && !c->hs_pending) {
      return server_handshake(c, p->body, p->body_len);
    }
    return 0; /* anything else before the handshake is ignored (spec 4.1) */
  case POMELO_CONN_WAIT_ACK:
    if (p->type == POMELO_PKG_HANDSHAKE_ACK) {
      int rc = 0;
      c->state = POMELO_CONN_WORKING;
      c->hs_deadline = PM_NO_DEADLINE;
      if (c->hb_interval) {
        rc = server_heartbeat(c, now); /* the JS client only heartbeats in reply to ours */
      }
      if (rc == 0 && c->sh->cb.on_ready) {
        c->sh->cb.on_ready(c, c->user_data);
      }
      return rc;
    }
    return 0;
  case POMELO_CONN_WORKING:
    if (p->type == POMELO_PKG_HEARTBEAT) {
      return server_heartbeat(c, now);
    }
    if (p->type == POMELO_PKG_DATA) {
      if (c->sh->set.data_is_liveness && c->hb_interval) {
        c->hb_deadline = after(now, c->hb_timeout);
      }
      return deliver(c, p);
    }
    return 0; /* handshake and ACK again: ignored */
  default:
    return 0;
  }
}

/* {"reason":...} */
static int build_kick(pomelo_conn *c, pomelo_json_writer *w, const void *arg) {
  const user_arg *r = arg;
  int rc = pomelo_json_write_begin_object(w);
  (void)c;
  rc = rc ? rc : write_str_key(w, "reason", r->json, r->len);
  return rc ? rc : pomelo_json_write_end_object(w);
}

int pm_conn_kick_as(pomelo_conn *c, const char *reason, int close_reason) {
  int rc = 0;
  if (c->role != POMELO_ROLE_SERVER) {
    return POMELO_ERR_INVALID_ARG;
  }
  if (c->state >= POMELO_CONN_CLOSING) {
    return POMELO_ERR_STATE;
  }
  if (reason && c->state == POMELO_CONN_WORKING) {
    user_arg r;
    r.json = reason;
    r.len = strlen(reason);
    rc = send_json_pkg(c, POMELO_PKG_KICK, build_kick, &r);
    if (rc == POMELO_ERR_JSON_UTF8) {
      return POMELO_ERR_INVALID_ARG;
    }
    if (rc) {
      close_now(c, POMELO_CLOSE_ERROR);
      return rc;
    }
  }
  close_after_flush(c, close_reason);
  return 0;
}

int pomelo_conn_kick(pomelo_conn *c, const char *reason) {
  return pm_conn_kick_as(c, reason, POMELO_CLOSE_KICKED);
}

/* ---------------------------------------------------------------------------------------------
 * Client role (spec 4.2, 4.5, 5, 6)
 * ------------------------------------------------------------------------------------------- */

static int build_client_handshake(pomelo_conn *c, pomelo_json_writer *w, const void *arg) {
  const pomelo_conn_settings *s = &c->sh->set;
  int rc = pomelo_json_write_begin_object(w);
  (void)arg;
  rc = rc ? rc : pomelo_json_write_key(w, "sys", 3);
  rc = rc ? rc : pomelo_json_write_begin_object(w);
  rc = rc ? rc : write_str_key(w, "type", s->client_type, strlen(s->client_type));
  rc = rc ? rc : write_str_key(w, "version", s->client_version, strlen(s->client_version));
  if (!rc && s->cached_proto_version) {
    rc = write_str_key(w, "protoVersion", s->cached_proto_version, strlen(s->cached_proto_version));
  }
  if (!rc && s->cached_dict_version) {
    rc = write_str_key(w, "dictVersion", s->cached_dict_version, strlen(s->cached_dict_version));
  }
  rc = rc ? rc : pomelo_json_write_end_object(w);
  if (!rc && s->user_json) {
    rc = write_raw_key(w, "user", s->user_json);
  }
  return rc ? rc : pomelo_json_write_end_object(w);
}

static int client_send_handshake(pomelo_conn *c) {
  return send_json_pkg(c, POMELO_PKG_HANDSHAKE, build_client_handshake, NULL);
}

static int client_handshake_response(pomelo_conn *c, const pomelo_pkg *p, uint64_t now) {
  pomelo_json_doc *doc = NULL;
  const pomelo_json_value *root = NULL, *v;
  int64_t code = -1;
  int rc = pomelo_json_parse(&doc, &c->sh->alloc, (const char *)p->body, p->body_len, NULL, NULL);
  if (rc == POMELO_ERR_NOMEM) {
    return rc;
  }
  if (rc == 0) {
    root = pomelo_json_root(doc);
    v = pomelo_json_get(root, "code");
    if (!v || pomelo_json_int64(v, &code) != 0 || code < INT32_MIN || code > INT32_MAX) {
      code = -1;
    }
  }
  if (code == 200) {
    const pomelo_json_value *sys = pomelo_json_get(root, "sys");
    double hb = 0;
    v = sys ? pomelo_json_get(sys, "heartbeat") : NULL;
    if (v && pomelo_json_typeof(v) == POMELO_JSON_NUMBER) {
      hb = pomelo_json_number(v);
    }
    /* A positive number of seconds enables heartbeats (libpomelo2 requires a number > 0). */
    if (hb > 0 && hb * 1000.0 < 86400000.0) {
      c->hb_interval = (uint32_t)(hb * 1000.0 + 0.5);
      if (c->hb_interval == 0) {
        c->hb_interval = 1;
      }
      c->hb_timeout =
          c->sh->set.heartbeat_timeout_ms ? c->sh->set.heartbeat_timeout_ms : 2 * c->hb_interval;
      c->hb_send_at = now + c->hb_interval;
      c->hb_deadline = now + c->hb_timeout;
    }
    rc = enqueue_static(c, PKG_ACK);
    if (rc == 0) {
      c->state = POMELO_CONN_WORKING;
      c->hs_deadline = PM_NO_DEADLINE;
      if (c->sh->cb.on_handshake_response) {
        c->sh->cb.on_handshake_response(c, 200, root, c->user_data);
      }
      if (c->state == POMELO_CONN_WORKING && c->sh->cb.on_ready) {
        c->sh->cb.on_ready(c, c->user_data);
      }
    }
  } else {
    if (c->sh->cb.on_handshake_response) {
      c->sh->cb.on_handshake_response(c, (int)code, root, c->user_data);
    }
    close_now(c, POMELO_CLOSE_HANDSHAKE_FAILED);
    rc = 0;
  }
  pomelo_json_doc_del(doc);
  return rc;
}

static void client_kicked(pomelo_conn *c, const pomelo_pkg *p) {
  pomelo_json_doc *doc = NULL;
  const char *reason = NULL;
  size_t reason_len = 0;
  if (pomelo_json_parse(&doc, &c->sh->alloc, (const char *)p->body, p->body_len, NULL, NULL) == 0) {
    const pomelo_json_value *v = pomelo_json_get(pomelo_json_root(doc), "reason");
    if (v && pomelo_json_typeof(v) == POMELO_JSON_STRING) {
      reason = pomelo_json_string(v, &reason_len);
    }
  }
  if (c->sh->cb.on_kick) {
    c->sh->cb.on_kick(c, reason, reason_len, c->user_data);
  }
  pomelo_json_doc_del(doc);
  close_now(c, POMELO_CLOSE_KICKED);
}

static int client_package(pomelo_conn *c, const pomelo_pkg *p, uint64_t now) {
  if (c->hb_interval) {
    c->hb_deadline = now + c->hb_timeout; /* any package is liveness, as in the JS client */
  }
  if (p->type == POMELO_PKG_KICK) {
    client_kicked(c, p);
    return 0;
  }
  if (c->state == POMELO_CONN_INIT) {
    return p->type == POMELO_PKG_HANDSHAKE ? client_handshake_response(c, p, now) : 0;
  }
  if (c->state == POMELO_CONN_WORKING && p->type == POMELO_PKG_DATA) {
    return deliver(c, p);
  }
  return 0; /* heartbeats only count as liveness; unknown types are ignored */
}

/* ---------------------------------------------------------------------------------------------
 * Input and timers
 * ------------------------------------------------------------------------------------------- */

/* The peer sent a package or message over max_body. A server tells a working client why with a
 * KICK before it closes (a client can then tell it from a network failure); before the
 * handshake is done there is nobody to tell. */
static void close_too_large(pomelo_conn *c) {
  if (c->state >= POMELO_CONN_CLOSING) {
    return;
  }
  if (c->sh->counters) {
    c->sh->counters->too_large++;
  }
  if (c->role == POMELO_ROLE_SERVER && c->state == POMELO_CONN_WORKING) {
    if (pm_conn_kick_as(c, PM_KICK_TOO_LARGE, POMELO_CLOSE_TOO_LARGE) == 0) {
      return;
    }
  }
  close_now(c, POMELO_CLOSE_TOO_LARGE);
}

/* Packages from the byte stream (raw TCP, or the payload of WebSocket messages). */
static int feed_packages(pomelo_conn *c, const uint8_t *data, size_t len, uint64_t now) {
  size_t pos = 0;
  while (pos < len && c->state < POMELO_CONN_CLOSING) {
    pomelo_pkg p;
    size_t used;
    int rc = pomelo_pkg_decoder_feed(&c->dec, data + pos, len - pos, &used, &p);
    pos += used;
    if (rc == 0) {
      break;
    }
    if (rc == POMELO_ERR_PKG_TOO_LARGE) {
      close_too_large(c);
      return rc;
    }
    if (rc < 0) {
      if (!pomelo_err_is_fatal(rc)) {
        close_now(c, POMELO_CLOSE_PROTOCOL_ERROR);
      }
      return rc;
    }
    if (c->sh->counters) {
      c->sh->counters->packages_in++;
    }
    rc = c->role == POMELO_ROLE_SERVER ? server_package(c, &p, now) : client_package(c, &p, now);
    if (rc < 0) {
      return rc;
    }
  }
  return 0;
}

typedef struct ws_feed_ctx {
  pomelo_conn *c;
  uint64_t now;
} ws_feed_ctx;

static int ws_payload(void *ctx, const uint8_t *data, size_t len) {
  ws_feed_ctx *x = ctx;
  return feed_packages(x->c, data, len, x->now);
}

static int ws_fwd_send(void *ctx, const uint8_t *data, size_t len) {
  return ws_send(((ws_feed_ctx *)ctx)->c, data, len);
}

static int ws_fwd_control(void *ctx, int opcode, const uint8_t *payload, size_t len) {
  return ws_control(((ws_feed_ctx *)ctx)->c, opcode, payload, len);
}

/* A WebSocket message over the limit: the KICK goes out before the ws layer's close 1009. */
static void ws_too_large(void *ctx) {
  close_too_large(((ws_feed_ctx *)ctx)->c);
}

static int ws_check(void *ctx, const char *path, size_t path_len, const char *origin,
                    size_t origin_len) {
  pomelo_conn *c = ((ws_feed_ctx *)ctx)->c;
  return c->sh->cb.check_upgrade
             ? c->sh->cb.check_upgrade(c, path, path_len, origin, origin_len, c->user_data)
             : 0;
}

static void ws_open(void *ctx) {
  pomelo_conn *c = ((ws_feed_ctx *)ctx)->c;
  if (c->role == POMELO_ROLE_CLIENT) {
    client_send_handshake(c); /* a failure (no memory) surfaces as a handshake timeout */
  }
}

static int feed_ws(pomelo_conn *c, const uint8_t *data, size_t len, uint64_t now) {
  ws_feed_ctx x;
  pm_ws_io io;
  int rc;
  x.c = c;
  x.now = now;
  io.ctx = &x;
  io.payload = ws_payload;
  io.send = ws_fwd_send;
  io.control = ws_fwd_control;
  io.check = ws_check;
  io.open = ws_open;
  io.too_large = ws_too_large;
  rc = pm_ws_feed(c->ws, data, len, &io, &c->sh->alloc);
  if (rc == POMELO_ERR_WS_TOO_LARGE) {
    return rc; /* ws_too_large closed the connection */
  }
  if (rc == PM_WS_PEER_CLOSED) {
    close_after_flush(c, POMELO_CLOSE_PEER); /* our close frame is queued */
    return 0;
  }
  if (rc < 0 && c->state < POMELO_CONN_CLOSING) {
    /* The upgrade or a frame was bad: the HTTP error or close frame is queued; flush it. */
    if (pomelo_err_is_fatal(rc)) {
      return rc;
    }
    close_after_flush(c, POMELO_CLOSE_PROTOCOL_ERROR);
  }
  return rc;
}

static int start_ws(pomelo_conn *c) {
  const pomelo_conn_settings *s = &c->sh->set;
  uint64_t max = c->role == POMELO_ROLE_SERVER ? (uint64_t)s->max_body + POMELO_PKG_HEAD_LEN
                                               : (uint64_t)1 << 30;
  int rc = pm_ws_new(&c->ws, &c->sh->alloc, c->role == POMELO_ROLE_CLIENT, max, s->http_max_head);
  if (rc == 0) {
    c->transport = POMELO_TRANSPORT_WS;
  }
  return rc;
}

static int feed_any(pomelo_conn *c, const uint8_t *data, size_t len, uint64_t now) {
  c->idle_at = after(now, c->sh->set.idle_timeout_ms);
  if (c->transport == POMELO_TRANSPORT_AUTO) {
    /* The hybrid port: the first bytes say HTTP (WebSocket) or raw TCP (spec 1.4); a method
     * split across reads ("GE" then "T /") is held until it is complete. */
    uint8_t head[4];
    size_t n = c->sniff_len, take = PM_MIN(len, sizeof head - n);
    int t, rc;
    memcpy(head, c->sniff, n);
    memcpy(head + n, data, take);
    t = pm_sniff(head, n + take);
    if (t == POMELO_TRANSPORT_AUTO) {
      memcpy(c->sniff + n, data, take); /* n + take < 4 here */
      c->sniff_len = (uint8_t)(n + take);
      return 0;
    }
    if (t == POMELO_TRANSPORT_WS) {
      rc = start_ws(c);
      if (rc) {
        return rc;
      }
    } else {
      c->transport = POMELO_TRANSPORT_TCP;
    }
    c->sniff_len = 0;
    if (n) {
      rc = feed_any(c, head, n, now); /* the held bytes first */
      if (rc || c->state >= POMELO_CONN_CLOSING) {
        return rc;
      }
    }
  }
  if (c->transport == POMELO_TRANSPORT_WS) {
    return feed_ws(c, data, len, now);
  }
  return feed_packages(c, data, len, now);
}

int pomelo_conn_feed(pomelo_conn *c, const uint8_t *data, size_t len, uint64_t now) {
  int rc;
  if (c->state >= POMELO_CONN_CLOSING || len == 0) {
    return 0;
  }
  if (!data) {
    return POMELO_ERR_INVALID_ARG;
  }
  rc = feed_any(c, data, len, now);
  if (pomelo_err_is_fatal(rc)) {
    close_now(c, POMELO_CLOSE_ERROR);
  }
  return rc;
}

uint64_t pomelo_conn_expiry(const pomelo_conn *c) {
  uint64_t t;
  if (c->state >= POMELO_CONN_CLOSED) {
    return PM_NO_DEADLINE;
  }
  t = PM_MIN(c->hs_deadline, c->idle_at);
  if (c->state == POMELO_CONN_WORKING) {
    t = PM_MIN(t, c->hb_deadline);
    t = PM_MIN(t, c->hb_send_at);
  }
  return t;
}

int pomelo_conn_handle_expiry(pomelo_conn *c, uint64_t now) {
  if (c->state >= POMELO_CONN_CLOSED) {
    return 0;
  }
  if (now >= c->hs_deadline) {
    close_now(c, POMELO_CLOSE_HANDSHAKE_TIMEOUT);
    return 0;
  }
  if (now >= c->idle_at) {
    close_now(c, POMELO_CLOSE_IDLE_TIMEOUT);
    return 0;
  }
  if (c->state != POMELO_CONN_WORKING) {
    return 0;
  }
  if (now >= c->hb_deadline) {
    close_now(c, POMELO_CLOSE_HEARTBEAT_TIMEOUT); /* no KICK, as the real server */
    return 0;
  }
  if (now >= c->hb_send_at) {
    int rc;
    c->hb_send_at = now + c->hb_interval;
    rc = enqueue_static(c, PKG_HEARTBEAT);
    if (rc) {
      close_now(c, POMELO_CLOSE_ERROR);
    }
    return rc;
  }
  return 0;
}
