/* A connection's bytes in, the first step of the data flow (conn_int.h): the hybrid port's
 * sniffer (spec 1.4), the WebSocket transport (spec 1.3, lib/transport/ws.c) and the package
 * decoder; each complete package goes to the state machine (pm_conn_package in conn.c).
 * SPDX-License-Identifier: MIT
 */
#include "conn/conn_int.h"
#include "transport/ws.h"

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
      pm_conn_close_too_large(c);
      return rc;
    }
    if (rc < 0) {
      if (!pomelo_err_is_fatal(rc)) {
        pm_conn_close_now(c, POMELO_CLOSE_PROTOCOL_ERROR);
      }
      return rc;
    }
    if (c->sh->counters) {
      c->sh->counters->packages_in++;
    }
    rc = pm_conn_package(c, &p, now);
    if (rc < 0) {
      return rc;
    }
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * WebSocket: the ws layer's callbacks during a feed
 * ------------------------------------------------------------------------------------------- */

typedef struct ws_feed_ctx {
  pomelo_conn *c;
  uint64_t now;
} ws_feed_ctx;

static int ws_payload(void *ctx, const uint8_t *data, size_t len) {
  ws_feed_ctx *x = ctx;
  return feed_packages(x->c, data, len, x->now);
}

static int ws_fwd_send(void *ctx, const uint8_t *data, size_t len) {
  return pm_conn_ws_send(((ws_feed_ctx *)ctx)->c, data, len);
}

static int ws_fwd_control(void *ctx, int opcode, const uint8_t *payload, size_t len) {
  return pm_conn_ws_control(((ws_feed_ctx *)ctx)->c, opcode, payload, len);
}

/* A WebSocket message over the limit: the KICK goes out before the ws layer's close 1009. */
static void ws_too_large(void *ctx) {
  pm_conn_close_too_large(((ws_feed_ctx *)ctx)->c);
}

static int ws_check(void *ctx, const char *path, size_t path_len, const char *origin,
                    size_t origin_len) {
  pomelo_conn *c = ((ws_feed_ctx *)ctx)->c;
  return c->sh->cb.check_upgrade
             ? c->sh->cb.check_upgrade(c, path, path_len, origin, origin_len, c->user_data)
             : 0;
}

/* The upgrade is done: a client's Pomelo handshake follows the 101. */
static void ws_open(void *ctx) {
  pomelo_conn *c = ((ws_feed_ctx *)ctx)->c;
  if (c->role == POMELO_ROLE_CLIENT) {
    (void)c->sh->dialect->client_request(c); /* no memory: surfaces as a handshake timeout */
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
    pm_conn_close_after_flush(c, POMELO_CLOSE_PEER); /* our close frame is queued */
    return 0;
  }
  if (rc < 0 && c->state < POMELO_CONN_CLOSING) {
    /* The upgrade or a frame was bad: the HTTP error or close frame is queued; flush it. */
    if (pomelo_err_is_fatal(rc)) {
      return rc;
    }
    pm_conn_close_after_flush(c, POMELO_CLOSE_PROTOCOL_ERROR);
  }
  return rc;
}

int pm_conn_start_ws(pomelo_conn *c) {
  const pomelo_conn_settings *s = &c->sh->set;
  uint64_t max = c->role == POMELO_ROLE_SERVER ? (uint64_t)s->max_body + POMELO_PKG_HEAD_LEN
                                               : (uint64_t)1 << 30;
  int rc = pm_ws_new(&c->ws, &c->sh->alloc, c->role == POMELO_ROLE_CLIENT, max, s->http_max_head);
  if (rc) {
    return rc;
  }
  c->transport = POMELO_TRANSPORT_WS;
  if (c->role == POMELO_ROLE_CLIENT) {
    /* The upgrade first; the Pomelo handshake follows the 101 (ws_open). */
    uint8_t nonce[16];
    uint32_t r;
    size_t i;
    pm_ws_io io;
    for (i = 0; i < 16; i += 4) {
      r = pm_conn_random32(c);
      memcpy(nonce + i, &r, 4);
    }
    memset(&io, 0, sizeof io);
    io.ctx = c;
    io.send = pm_conn_ws_send;
    rc = pm_ws_client_start(c->ws, s->ws_host, s->ws_path, nonce, &io);
  }
  return rc;
}

/* ---------------------------------------------------------------------------------------------
 * The entry point
 * ------------------------------------------------------------------------------------------- */

static int feed_any(pomelo_conn *c, const uint8_t *data, size_t len, uint64_t now) {
  c->idle_at = pm_after(now, c->sh->set.idle_timeout_ms);
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
      rc = pm_conn_start_ws(c);
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
    pm_conn_close_now(c, POMELO_CLOSE_ERROR);
  }
  return rc;
}
