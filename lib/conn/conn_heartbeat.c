/* Heartbeats and every timer of a connection (spec 5): the server's heartbeat (sent after the
 * ACK and in answer to each client heartbeat, by the dialect's rules), the client's own
 * heartbeat timer, the liveness deadline, the handshake deadline and the idle timeout, all
 * behind one expiry (pomelo_conn_expiry) the caller's loop waits for.
 * SPDX-License-Identifier: MIT
 */
#include "conn/conn_int.h"

int pm_conn_heartbeat(pomelo_conn *c, uint64_t now) {
  if (!c->hb_interval) {
    return 0; /* no heartbeat configured: the real server ignores them */
  }
  c->hb_deadline = pm_after(now, c->hb_timeout);
  return pm_conn_queue_control(c, POMELO_PKG_HEARTBEAT);
}

void pm_conn_heartbeat_start(pomelo_conn *c, uint32_t hb_ms, uint64_t now) {
  c->hb_interval = hb_ms;
  c->hb_timeout = c->sh->set.heartbeat_timeout_ms ? c->sh->set.heartbeat_timeout_ms : 2 * hb_ms;
  c->hb_send_at = now + c->hb_interval;
  c->hb_deadline = now + c->hb_timeout;
}

void pm_conn_alive(pomelo_conn *c, uint64_t now) {
  if (c->hb_interval) {
    c->hb_deadline = now + c->hb_timeout;
  }
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
    pm_conn_close_now(c, POMELO_CLOSE_HANDSHAKE_TIMEOUT);
    return 0;
  }
  if (now >= c->idle_at) {
    pm_conn_close_now(c, POMELO_CLOSE_IDLE_TIMEOUT);
    return 0;
  }
  if (c->state != POMELO_CONN_WORKING) {
    return 0;
  }
  if (now >= c->hb_deadline) {
    pm_conn_close_now(c, POMELO_CLOSE_HEARTBEAT_TIMEOUT); /* no KICK, as the real server */
    return 0;
  }
  if (now >= c->hb_send_at) { /* the client's own heartbeat (as libpomelo2) */
    int rc;
    c->hb_send_at = now + c->hb_interval;
    rc = pm_conn_queue_control(c, POMELO_PKG_HEARTBEAT);
    if (rc) {
      pm_conn_close_now(c, POMELO_CLOSE_ERROR);
    }
    return rc;
  }
  return 0;
}
