/* The connection's state machine (spec 4.1, 6): every decoded package by role and state, the
 * outcomes of the handshake, closing (soft, hard, for oversized input, kicks), and the
 * connection's life (settings, creation, deletion). Bytes reach it from conn_transport.c; the
 * handshake and heartbeat rules it applies live in the dialect (conn_handshake.c,
 * conn_heartbeat.c); what it sends goes out through conn_output.c (conn_int.h).
 * SPDX-License-Identifier: MIT
 */
#include "conn/conn_int.h"
#include "transport/ws.h"

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
  sh->dialect = &pm_dialect_pomelo;
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
 * Closing
 * ------------------------------------------------------------------------------------------- */

static void notify_close(pomelo_conn *c) {
  if (!c->close_notified) {
    c->close_notified = 1;
    if (c->sh->cb.on_close) {
      c->sh->cb.on_close(c, c->close_reason, c->user_data);
    }
  }
}

void pm_conn_enter_closed(pomelo_conn *c) {
  c->state = POMELO_CONN_CLOSED;
  if (c->sh->on_closed) {
    c->sh->on_closed(c, c->user_data);
  }
}

/* The WebSocket close code that goes with a close reason. */
static uint16_t ws_close_code(int reason) {
  return reason == POMELO_CLOSE_TOO_LARGE ? PM_WS_CLOSE_TOO_BIG : PM_WS_CLOSE_NORMAL;
}

void pm_conn_close_now(pomelo_conn *c, int reason) {
  int flush_close = 0;
  if (c->state == POMELO_CONN_CLOSED) {
    return;
  }
  if (c->close_reason == POMELO_CLOSE_NONE) {
    c->close_reason = (uint8_t)reason;
  }
  c->state = POMELO_CONN_CLOSING; /* no output is queued by anything but the close frame */
  if (c->q.count || c->q.dropped) {
    /* Queued output is dropped, but its bytes stay valid until pomelo_conn_del: the caller may
     * be writing them (an asynchronous write holds the iovecs). Nothing more can follow them on
     * the wire (a close frame after a partly written frame would be garbage). */
    pm_outq_drop(&c->q);
  } else if (reason != POMELO_CLOSE_PEER && c->ws && pm_ws_is_open(c->ws)) {
    flush_close = pm_conn_ws_close(c, ws_close_code(reason)) == 0 && c->q.bytes;
  }
  pm_pkg_decoder_fini(&c->dec);
  notify_close(c);
  if (!flush_close && c->state != POMELO_CONN_CLOSED) {
    pm_conn_enter_closed(c);
  }
}

void pm_conn_close_after_flush(pomelo_conn *c, int reason) {
  if (c->state >= POMELO_CONN_CLOSING) {
    return;
  }
  c->close_reason = (uint8_t)reason;
  c->state = POMELO_CONN_CLOSING;
  if (c->ws && pm_ws_is_open(c->ws)) {
    (void)pm_conn_ws_close(c, ws_close_code(reason)); /* no memory: closed without the frame */
  }
  pm_pkg_decoder_fini(&c->dec);
  notify_close(c);
  if (c->q.bytes == 0 && c->state != POMELO_CONN_CLOSED) {
    pm_conn_enter_closed(c);
  }
}

/* {"reason":...} */
static int build_kick(pomelo_conn *c, pomelo_json_writer *w, const void *arg) {
  const char *reason = arg;
  int rc = pomelo_json_write_begin_object(w);
  (void)c;
  rc = rc ? rc : pm_json_key_str(w, "reason", reason, strlen(reason));
  return rc ? rc : pomelo_json_write_end_object(w);
}

int pm_conn_kick_as(pomelo_conn *c, const char *reason, int close_reason) {
  if (c->role != POMELO_ROLE_SERVER) {
    return POMELO_ERR_INVALID_ARG;
  }
  if (c->state >= POMELO_CONN_CLOSING) {
    return POMELO_ERR_STATE;
  }
  if (reason && c->state == POMELO_CONN_WORKING) {
    int rc = pm_conn_queue_json(c, POMELO_PKG_KICK, build_kick, reason);
    if (rc == POMELO_ERR_JSON_UTF8) {
      return POMELO_ERR_INVALID_ARG;
    }
    if (rc) {
      pm_conn_close_now(c, POMELO_CLOSE_ERROR);
      return rc;
    }
  }
  pm_conn_close_after_flush(c, close_reason);
  return 0;
}

int pomelo_conn_kick(pomelo_conn *c, const char *reason) {
  return pm_conn_kick_as(c, reason, POMELO_CLOSE_KICKED);
}

void pm_conn_close_too_large(pomelo_conn *c) {
  if (c->state >= POMELO_CONN_CLOSING) {
    return;
  }
  if (c->sh->counters) {
    c->sh->counters->too_large++;
  }
  /* A working client is told why (it can then tell this from a network failure); before the
   * handshake is done there is nobody to tell. */
  if (c->role == POMELO_ROLE_SERVER && c->state == POMELO_CONN_WORKING &&
      pm_conn_kick_as(c, PM_KICK_TOO_LARGE, POMELO_CLOSE_TOO_LARGE) == 0) {
    return;
  }
  pm_conn_close_now(c, POMELO_CLOSE_TOO_LARGE);
}

void pm_conn_abort(pomelo_conn *c, int reason) {
  pm_conn_close_now(c, reason);
}

void pomelo_conn_peer_closed(pomelo_conn *c) {
  pm_conn_close_now(c, POMELO_CLOSE_PEER);
}

int pomelo_conn_close(pomelo_conn *c, int reason) {
  if (c->state >= POMELO_CONN_CLOSING) {
    return POMELO_ERR_STATE;
  }
  pm_conn_close_after_flush(c, reason);
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Packages by role and state
 * ------------------------------------------------------------------------------------------- */

/* A DATA package in the WORKING state: its message goes to on_message. */
static int data_to_message(pomelo_conn *c, const pomelo_pkg *p) {
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
  const pm_dialect *d = c->sh->dialect;
  if (p->type == POMELO_PKG_KICK) {
    pm_conn_close_now(c, POMELO_CLOSE_PROTOCOL_ERROR); /* a client never kicks: the real server
                                                           closes */
    return 0;
  }
  switch (c->state) {
  case POMELO_CONN_INIT:
    if (p->type == POMELO_PKG_HANDSHAKE && !c->hs_pending) {
      return d->server_handshake(c, p->body, p->body_len);
    }
    return 0; /* anything else before the handshake is ignored (spec 4.1) */
  case POMELO_CONN_WAIT_ACK:
    if (p->type == POMELO_PKG_HANDSHAKE_ACK) {
      int rc;
      c->state = POMELO_CONN_WORKING;
      c->hs_deadline = PM_NO_DEADLINE;
      rc = d->server_working(c, now);
      if (rc == 0 && c->sh->cb.on_ready) {
        c->sh->cb.on_ready(c, c->user_data);
      }
      return rc;
    }
    return 0;
  case POMELO_CONN_WORKING:
    if (p->type == POMELO_PKG_HEARTBEAT) {
      return d->server_heartbeat_in(c, now);
    }
    if (p->type == POMELO_PKG_DATA) {
      if (c->sh->set.data_is_liveness) {
        pm_conn_alive(c, now);
      }
      return data_to_message(c, p);
    }
    return 0; /* handshake and ACK again: ignored */
  default:
    return 0;
  }
}

/* A KICK from the server: on_kick with its reason, then closed. */
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
  pm_conn_close_now(c, POMELO_CLOSE_KICKED);
}

static int client_package(pomelo_conn *c, const pomelo_pkg *p, uint64_t now) {
  pm_conn_alive(c, now); /* any package is liveness, as in the JS client */
  if (p->type == POMELO_PKG_KICK) {
    client_kicked(c, p);
    return 0;
  }
  if (c->state == POMELO_CONN_INIT) {
    return p->type == POMELO_PKG_HANDSHAKE
               ? c->sh->dialect->client_response(c, p->body, p->body_len, now)
               : 0;
  }
  if (c->state == POMELO_CONN_WORKING && p->type == POMELO_PKG_DATA) {
    return data_to_message(c, p);
  }
  return 0; /* heartbeats only count as liveness; unknown types are ignored */
}

int pm_conn_package(pomelo_conn *c, const pomelo_pkg *p, uint64_t now) {
  return c->role == POMELO_ROLE_SERVER ? server_package(c, p, now) : client_package(c, p, now);
}

/* ---------------------------------------------------------------------------------------------
 * Outcomes of the handshake
 * ------------------------------------------------------------------------------------------- */

int pm_conn_server_accept(pomelo_conn *c, const char *user, size_t user_len) {
  int rc = c->sh->dialect->server_answer(c, user, user_len);
  if (rc == 0) {
    c->hs_pending = 0;
    c->state = POMELO_CONN_WAIT_ACK;
  }
  return rc;
}

int pm_conn_server_refuse(pomelo_conn *c, int code) {
  int rc = c->sh->dialect->server_refusal(c, code);
  c->hs_pending = 0;
  pm_conn_close_after_flush(c, POMELO_CLOSE_HANDSHAKE_FAILED);
  return rc;
}

int pomelo_conn_handshake_reply(pomelo_conn *c, int code, const char *user_json,
                                size_t user_json_len) {
  if (c->role != POMELO_ROLE_SERVER || !c->hs_pending || c->state != POMELO_CONN_INIT) {
    return POMELO_ERR_STATE;
  }
  if (code != 200) {
    return pm_conn_server_refuse(c, code);
  }
  if (!user_json && user_json_len) {
    return POMELO_ERR_INVALID_ARG;
  }
  return pm_conn_server_accept(c, user_json, user_json_len);
}

int pm_conn_client_accepted(pomelo_conn *c, uint32_t hb_ms, const pomelo_json_value *response,
                            uint64_t now) {
  int rc;
  if (hb_ms) {
    pm_conn_heartbeat_start(c, hb_ms, now);
  }
  rc = pm_conn_queue_control(c, POMELO_PKG_HANDSHAKE_ACK);
  if (rc) {
    return rc;
  }
  c->state = POMELO_CONN_WORKING;
  c->hs_deadline = PM_NO_DEADLINE;
  if (c->sh->cb.on_handshake_response) {
    c->sh->cb.on_handshake_response(c, 200, response, c->user_data);
  }
  if (c->state == POMELO_CONN_WORKING && c->sh->cb.on_ready) {
    c->sh->cb.on_ready(c, c->user_data);
  }
  return 0;
}

void pm_conn_client_refused(pomelo_conn *c, int code, const pomelo_json_value *response) {
  if (c->sh->cb.on_handshake_response) {
    c->sh->cb.on_handshake_response(c, code, response, c->user_data);
  }
  pm_conn_close_now(c, POMELO_CLOSE_HANDSHAKE_FAILED);
}

/* ---------------------------------------------------------------------------------------------
 * Lifecycle
 * ------------------------------------------------------------------------------------------- */

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
  c->hs_deadline = pm_after(now, s->handshake_timeout_ms);
  c->hb_deadline = PM_NO_DEADLINE;
  c->hb_send_at = PM_NO_DEADLINE;
  c->idle_at = pm_after(now, s->idle_timeout_ms);
  pm_pkg_decoder_init(&c->dec, &sh->alloc, s->max_body,
                      s->role == POMELO_ROLE_CLIENT ? POMELO_PKG_DECODER_ALLOW_UNKNOWN : 0);
  pm_outq_init(&c->q);
  rc = 0;
  if (c->transport == POMELO_TRANSPORT_WS) {
    rc = pm_conn_start_ws(c); /* a client queues its upgrade request */
  } else if (s->role == POMELO_ROLE_CLIENT) {
    rc = sh->dialect->client_request(c);
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
