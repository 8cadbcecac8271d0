/* A connection's bytes out: packages framed for the transport (as they are on raw TCP, one
 * binary message each on WebSocket) into the output queue (outq.c), and the caller's side of it
 * (out_iov, out_consume, send). The last step of the data flow (conn_int.h).
 * SPDX-License-Identifier: MIT
 */
#include "conn/conn_int.h"
#include "transport/ws.h"

/* Control packages are static bytes: no allocation for a heartbeat or an ACK. */
static const uint8_t PKG_HEARTBEAT[4] = {POMELO_PKG_HEARTBEAT, 0, 0, 0};
static const uint8_t PKG_ACK[4] = {POMELO_PKG_HANDSHAKE_ACK, 0, 0, 0};
/* The server's heartbeat over WebSocket, frame header included. */
static const uint8_t WS_HEARTBEAT[6] = {0x80 | PM_WS_OP_BINARY, 4, POMELO_PKG_HEARTBEAT, 0, 0, 0};

int pm_conn_enqueue_raw(pomelo_conn *c, pomelo_frame *f, const uint8_t *data, size_t len) {
  int was_empty = c->q.count == 0;
  int rc = pm_outq_push(&c->q, &c->sh->alloc, f, data, len);
  if (rc == 0 && was_empty && c->sh->cb.on_output) {
    c->sh->cb.on_output(c, c->user_data);
  }
  return rc;
}

uint32_t pm_conn_random32(pomelo_conn *c) {
  return c->sh->cb.random(c, c->user_data);
}

/* Client side: one masked frame, in a new frame buffer. */
static int enqueue_masked(pomelo_conn *c, int opcode, const uint8_t *data, size_t len) {
  uint8_t mask[4], *p;
  uint32_t r = pm_conn_random32(c);
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
  rc = pm_conn_enqueue_raw(c, f, p, hl + len);
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
    return pm_conn_enqueue_raw(c, f, data, len);
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
    return pm_conn_enqueue_raw(c, f, data - hl, len + hl);
  }
  if (!f && data == PKG_HEARTBEAT) {
    return pm_conn_enqueue_raw(c, NULL, WS_HEARTBEAT, sizeof WS_HEARTBEAT);
  }
  rc = pm_frame_alloc(&nf, &c->sh->alloc, 0, hl + len, &p);
  if (rc) {
    return rc;
  }
  memcpy(p, h, hl);
  memcpy(p + hl, data, len);
  rc = pm_conn_enqueue_raw(c, nf, p, hl + len);
  pomelo_frame_unref(nf);
  return rc;
}

int pm_conn_enqueue(pomelo_conn *c, pomelo_frame *f, const uint8_t *data, size_t len) {
  int rc = enqueue_framed(c, f, data, len);
  if (rc == 0 && c->sh->counters) {
    c->sh->counters->packages_out++;
  }
  return rc;
}

int pm_conn_queue_control(pomelo_conn *c, int type) {
  return pm_conn_enqueue(c, NULL, type == POMELO_PKG_HEARTBEAT ? PKG_HEARTBEAT : PKG_ACK, 4);
}

int pm_conn_queue_pkg(pomelo_conn *c, int type, const uint8_t *body, size_t len) {
  pomelo_frame *f;
  int rc = pomelo_pkg_encode_frame(&f, &c->sh->alloc, type, body, len);
  if (rc) {
    return rc;
  }
  rc = pm_conn_enqueue(c, f, pomelo_frame_data(f), pomelo_frame_len(f));
  pomelo_frame_unref(f);
  return rc;
}

int pm_conn_queue_json(pomelo_conn *c, int type, pm_json_build_fn build, const void *arg) {
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
    rc = pm_conn_queue_pkg(c, type, (const uint8_t *)json, len);
  }
  pomelo_json_writer_del(w);
  return rc;
}

int pm_json_key_raw(pomelo_json_writer *w, const char *key, const char *json) {
  int rc = pomelo_json_write_key(w, key, strlen(key));
  return rc ? rc : pomelo_json_write_raw(w, json, strlen(json));
}

int pm_json_key_str(pomelo_json_writer *w, const char *key, const char *str, size_t len) {
  int rc = pomelo_json_write_key(w, key, strlen(key));
  return rc ? rc : pomelo_json_write_string(w, str, len);
}

/* ---------------------------------------------------------------------------------------------
 * WebSocket output of the transport itself: the upgrade, pongs, close frames
 * ------------------------------------------------------------------------------------------- */

int pm_conn_ws_send(void *conn, const uint8_t *data, size_t len) {
  pomelo_conn *c = conn;
  pomelo_frame *f;
  int rc = pomelo_frame_new(&f, &c->sh->alloc, data, len);
  if (rc) {
    return rc;
  }
  rc = pm_conn_enqueue_raw(c, f, pomelo_frame_data(f), len);
  pomelo_frame_unref(f);
  return rc;
}

int pm_conn_ws_control(void *conn, int opcode, const uint8_t *payload, size_t len) {
  pomelo_conn *c = conn;
  uint8_t frame[2 + 125];
  if (c->role == POMELO_ROLE_CLIENT) {
    return enqueue_masked(c, opcode, payload, len);
  }
  pm_ws_frame_header(frame, opcode, len, NULL);
  memcpy(frame + 2, payload, len);
  return pm_conn_ws_send(c, frame, 2 + len);
}

int pm_conn_ws_close(pomelo_conn *c, uint16_t code) {
  pm_ws_io io;
  memset(&io, 0, sizeof io);
  io.ctx = c;
  io.send = pm_conn_ws_send;
  io.control = pm_conn_ws_control;
  return pm_ws_send_close(c->ws, code, &io);
}

/* ---------------------------------------------------------------------------------------------
 * The caller's side
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
    c->idle_at = pm_after(now, c->sh->set.idle_timeout_ms);
  }
  if (c->state == POMELO_CONN_CLOSING && c->q.bytes == 0) {
    pm_conn_enter_closed(c); /* all flushed */
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
  rc = pm_conn_enqueue(c, f, pomelo_frame_data(f), pomelo_frame_len(f));
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
  return pm_conn_enqueue(c, f, pomelo_frame_data(f), pomelo_frame_len(f));
}
