/* Message codec: flag, varint id, route, body (spec 2).
 * SPDX-License-Identifier: MIT
 */
#include "codec/codec_int.h"

#define FLAG_ROUTE_COMPRESSED 0x01u
#define FLAG_GZIP 0x10u
#define VARINT_MAX_BYTES 5u

const char *pomelo_msg_type_name(int type) {
  switch (type) {
  case POMELO_MSG_REQUEST:
    return "request";
  case POMELO_MSG_NOTIFY:
    return "notify";
  case POMELO_MSG_RESPONSE:
    return "response";
  case POMELO_MSG_PUSH:
    return "push";
  default:
    return NULL;
  }
}

static int has_id(int type) {
  return type == POMELO_MSG_REQUEST || type == POMELO_MSG_RESPONSE;
}

static int has_route(int type) {
  return type != POMELO_MSG_RESPONSE;
}

size_t pm_varint_len(uint32_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

size_t pm_varint_put(uint8_t *p, uint32_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    p[n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  p[n++] = (uint8_t)v;
  return n;
}

/* Validates `msg` and computes its encoded size. */
static int measure(const pomelo_msg *msg, size_t *size) {
  size_t n = 1;
  if ((unsigned)msg->type > POMELO_MSG_PUSH) {
    return POMELO_ERR_MSG_TYPE;
  }
  if (has_id(msg->type)) {
    if (msg->id == 0 || msg->id > POMELO_MSG_ID_MAX) {
      return POMELO_ERR_MSG_ID;
    }
    n += pm_varint_len(msg->id);
  }
  if (has_route(msg->type)) {
    if (msg->route_compressed) {
      n += 2;
    } else {
      if (msg->route_len > POMELO_MSG_ROUTE_MAX) {
        return POMELO_ERR_ROUTE_TOO_LONG;
      }
      if (!msg->route && msg->route_len > 0) {
        return POMELO_ERR_INVALID_ARG;
      }
      n += 1 + msg->route_len;
    }
  }
  if (!msg->body && msg->body_len > 0) {
    return POMELO_ERR_INVALID_ARG;
  }
  if (msg->body_len > SIZE_MAX - n) {
    return POMELO_ERR_PKG_TOO_LARGE;
  }
  *size = n + msg->body_len;
  return 0;
}

/* Writes a validated message of `size` bytes at p. */
static void write_msg(uint8_t *p, const pomelo_msg *msg) {
  uint8_t flag = (uint8_t)(msg->type << 1);
  if (msg->route_compressed) {
    flag |= FLAG_ROUTE_COMPRESSED;
  }
  if (msg->gzip) {
    flag |= FLAG_GZIP;
  }
  *p++ = flag;
  if (has_id(msg->type)) {
    p += pm_varint_put(p, msg->id);
  }
  if (has_route(msg->type)) {
    if (msg->route_compressed) {
      *p++ = (uint8_t)(msg->route_code >> 8);
      *p++ = (uint8_t)msg->route_code;
    } else {
      *p++ = (uint8_t)msg->route_len;
      if (msg->route_len) {
        memcpy(p, msg->route, msg->route_len);
        p += msg->route_len;
      }
    }
  }
  if (msg->body_len) {
    memcpy(p, msg->body, msg->body_len);
  }
}

int pomelo_msg_encode(uint8_t *buf, size_t cap, const pomelo_msg *msg, size_t *out_len) {
  size_t size;
  int rc;
  if (!msg || !out_len) {
    return POMELO_ERR_INVALID_ARG;
  }
  rc = measure(msg, &size);
  if (rc) {
    return rc;
  }
  *out_len = size;
  if (!buf || cap < size) {
    return POMELO_ERR_BUFFER_TOO_SMALL;
  }
  write_msg(buf, msg);
  return 0;
}

int pomelo_msg_encode_frame(pomelo_frame **out, const pomelo_allocator *alloc,
                            const pomelo_msg *msg) {
  size_t size;
  uint8_t *p;
  int rc;
  if (!out || !msg) {
    return POMELO_ERR_INVALID_ARG;
  }
  rc = measure(msg, &size);
  if (rc) {
    return rc;
  }
  if (size > POMELO_PKG_BODY_MAX) {
    return POMELO_ERR_PKG_TOO_LARGE;
  }
  rc = pm_frame_alloc(out, alloc, PM_FRAME_HEADROOM, POMELO_PKG_HEAD_LEN + size, &p);
  if (rc) {
    return rc;
  }
  pm_pkg_put_head(p, POMELO_PKG_DATA, size);
  write_msg(p + POMELO_PKG_HEAD_LEN, msg);
  return 0;
}

int pomelo_msg_decode(const uint8_t *data, size_t len, pomelo_msg *msg) {
  size_t pos = 1;
  unsigned type;
  uint8_t flag;
  if (!msg || (!data && len > 0)) {
    return POMELO_ERR_INVALID_ARG;
  }
  if (len < 1) {
    return POMELO_ERR_MSG_TRUNCATED;
  }
  flag = data[0];
  type = (flag >> 1) & 7u;
  if (type > POMELO_MSG_PUSH) {
    return POMELO_ERR_MSG_TYPE;
  }
  msg->type = (pomelo_msg_type)type;
  msg->route_compressed = flag & FLAG_ROUTE_COMPRESSED;
  msg->gzip = (flag & FLAG_GZIP) != 0;
  msg->id = 0;
  msg->route_code = 0;
  msg->route = (const char *)pm_empty;
  msg->route_len = 0;

  if (has_id((int)type)) {
    uint64_t id = 0;
    unsigned shift = 0;
    for (;;) {
      uint8_t b;
      if (shift >= 7 * VARINT_MAX_BYTES) {
        return POMELO_ERR_MSG_ID; /* a sixth byte */
      }
      if (pos >= len) {
        return POMELO_ERR_MSG_TRUNCATED;
      }
      b = data[pos++];
      id |= (uint64_t)(b & 0x7fu) << shift;
      shift += 7;
      if (!(b & 0x80u)) {
        break;
      }
    }
    if (id == 0 || id > POMELO_MSG_ID_MAX) {
      return POMELO_ERR_MSG_ID;
    }
    msg->id = (uint32_t)id;
  }

  if (has_route((int)type)) {
    if (msg->route_compressed) {
      if (len - pos < 2) {
        return POMELO_ERR_MSG_TRUNCATED;
      }
      msg->route_code = (uint16_t)((data[pos] << 8) | data[pos + 1]);
      pos += 2;
    } else {
      size_t rlen;
      if (pos >= len) {
        return POMELO_ERR_MSG_TRUNCATED;
      }
      rlen = data[pos++];
      if (len - pos < rlen) {
        return POMELO_ERR_MSG_TRUNCATED;
      }
      msg->route = (const char *)(data + pos);
      msg->route_len = rlen;
      pos += rlen;
    }
  }
  msg->body = data + pos;
  msg->body_len = len - pos;
  return 0;
}
