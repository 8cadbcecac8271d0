/* Package codec: the 4-byte header and one-shot encode/decode (spec 1.1).
 * SPDX-License-Identifier: MIT
 */
#include "codec/codec_int.h"

const char *pomelo_pkg_type_name(int type) {
  switch (type) {
  case POMELO_PKG_HANDSHAKE:
    return "handshake";
  case POMELO_PKG_HANDSHAKE_ACK:
    return "handshake_ack";
  case POMELO_PKG_HEARTBEAT:
    return "heartbeat";
  case POMELO_PKG_DATA:
    return "data";
  case POMELO_PKG_KICK:
    return "kick";
  default:
    return NULL;
  }
}

int pomelo_pkg_encode(uint8_t *buf, size_t cap, int type, const uint8_t *body, size_t body_len,
                      size_t *out_len) {
  if (!out_len || !pm_pkg_type_valid(type) || (!body && body_len > 0)) {
    return POMELO_ERR_INVALID_ARG;
  }
  if (body_len > POMELO_PKG_BODY_MAX) {
    return POMELO_ERR_PKG_TOO_LARGE;
  }
  *out_len = POMELO_PKG_HEAD_LEN + body_len;
  if (!buf || cap < *out_len) {
    return POMELO_ERR_BUFFER_TOO_SMALL;
  }
  pm_pkg_put_head(buf, type, body_len);
  if (body_len) {
    memcpy(buf + POMELO_PKG_HEAD_LEN, body, body_len);
  }
  return 0;
}

int pomelo_pkg_encode_frame(pomelo_frame **out, const pomelo_allocator *alloc, int type,
                            const uint8_t *body, size_t body_len) {
  uint8_t *p;
  int rc;
  if (!out || !pm_pkg_type_valid(type) || (!body && body_len > 0)) {
    return POMELO_ERR_INVALID_ARG;
  }
  if (body_len > POMELO_PKG_BODY_MAX) {
    return POMELO_ERR_PKG_TOO_LARGE;
  }
  rc = pm_frame_alloc(out, alloc, PM_FRAME_HEADROOM, POMELO_PKG_HEAD_LEN + body_len, &p);
  if (rc) {
    return rc;
  }
  pm_pkg_put_head(p, type, body_len);
  if (body_len) {
    memcpy(p + POMELO_PKG_HEAD_LEN, body, body_len);
  }
  return 0;
}

int pomelo_pkg_decode(const uint8_t *data, size_t len, pomelo_pkg *pkg, size_t *consumed) {
  size_t body_len;
  if (!pkg || !consumed || (!data && len > 0)) {
    return POMELO_ERR_INVALID_ARG;
  }
  if (len < POMELO_PKG_HEAD_LEN) {
    *consumed = POMELO_PKG_HEAD_LEN;
    return POMELO_ERR_PKG_TRUNCATED;
  }
  if (!pm_pkg_type_valid(data[0])) {
    *consumed = 0;
    return POMELO_ERR_PKG_TYPE;
  }
  body_len = pm_be24(data + 1);
  *consumed = POMELO_PKG_HEAD_LEN + body_len;
  if (len - POMELO_PKG_HEAD_LEN < body_len) {
    return POMELO_ERR_PKG_TRUNCATED;
  }
  pkg->type = data[0];
  pkg->body = data + POMELO_PKG_HEAD_LEN;
  pkg->body_len = body_len;
  return 0;
}
