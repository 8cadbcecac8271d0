/* WebSocket (RFC 6455): the HTTP upgrade and the frame layer, sans-IO.
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>

#include <pomelo/transport.h>

#include "core/core.h"
#include "transport/hash.h"
#include "transport/ws.h"

enum { PHASE_HTTP = 0, PHASE_OPEN = 1, PHASE_DONE = 2 };

struct pm_ws {
  uint8_t client;
  uint8_t phase;
  uint8_t close_sent;
  /* HTTP head, collected until the blank line. */
  char *http;
  uint32_t http_len, http_cap, http_limit;
  char accept[29]; /* client: the Sec-WebSocket-Accept we expect */
  /* Frame decoder. */
  uint8_t hdr[PM_WS_HEAD_MAX];
  uint8_t hdr_have;
  uint8_t opcode;           /* of the current frame */
  uint8_t fin;              /* of the current frame */
  uint8_t masked;           /* of the current frame */
  uint8_t msg_op;           /* opcode of the data message in progress (0: none) */
  uint8_t utf8_need;        /* text message: continuation bytes still expected */
  uint8_t utf8_lo, utf8_hi; /* text message: bounds of the next continuation byte */
  uint8_t mask[4];
  uint64_t left;    /* payload bytes of the current frame still to read */
  uint64_t pos;     /* payload bytes of the current frame read so far (mask offset) */
  uint64_t msg_len; /* bytes of the data message in progress */
  uint64_t max_message;
  uint8_t in_payload; /* reading the current frame's payload (else its header) */
  uint8_t ctl_len;
  uint8_t *ctl; /* payload of the control frame being read (125 bytes, only meanwhile) */
  const pomelo_allocator *alloc;
};

int pm_ws_new(pm_ws **out, const pomelo_allocator *a, int client, uint64_t max_message,
              uint32_t http_limit) {
  pm_ws *ws = pm_calloc(a, sizeof(*ws));
  if (!ws) {
    return POMELO_ERR_NOMEM;
  }
  ws->client = client ? 1 : 0;
  ws->alloc = a;
  ws->max_message = max_message;
  ws->http_limit = http_limit;
  *out = ws;
  return 0;
}

void pm_ws_del(pm_ws *ws, const pomelo_allocator *a) {
  if (ws) {
    pm_free(a, ws->http);
    pm_free(a, ws->ctl);
    pm_free(a, ws);
  }
}

int pm_ws_is_open(const pm_ws *ws) {
  return ws->phase == PHASE_OPEN;
}

/* ---------------------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------------------- */

void pm_ws_mask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t pos) {
  size_t i;
  for (i = 0; i < len; i++) {
    data[i] ^= mask[(pos + i) & 3];
  }
}

size_t pm_ws_frame_header(uint8_t *out, int opcode, uint64_t len, const uint8_t *mask) {
  size_t n = 2;
  out[0] = (uint8_t)(0x80 | (opcode & 0x0f));
  if (len < 126) {
    out[1] = (uint8_t)len;
  } else if (len <= 0xffff) {
    out[1] = 126;
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
    n = 4;
  } else {
    int i;
    out[1] = 127;
    for (i = 0; i < 8; i++) {
      out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    }
    n = 10;
  }
  if (mask) {
    out[1] |= 0x80;
    memcpy(out + n, mask, 4);
    n += 4;
  }
  return n;
}

void pm_ws_accept_key(const char *key, size_t key_len, char out[29]) {
  static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  pm_sha1 s;
  uint8_t digest[20];
  pm_sha1_init(&s);
  pm_sha1_update(&s, key, key_len);
  pm_sha1_update(&s, guid, sizeof guid - 1);
  pm_sha1_final(&s, digest);
  pm_base64_encode(digest, 20, out);
}

int pm_sniff(const uint8_t *data, size_t len) {
  static const char *const methods[] = {"GET ", "POST", "PUT ", "DELE", "HEAD"};
  size_t i, n = len < 4 ? len : 4;
  int prefix = 0;
  for (i = 0; i < PM_ARRAY_LEN(methods); i++) {
    if (memcmp(data, methods[i], n) == 0) {
      if (n == 4) {
        return POMELO_TRANSPORT_WS;
      }
      prefix = 1;
    }
  }
  return prefix && len > 0 ? POMELO_TRANSPORT_AUTO : POMELO_TRANSPORT_TCP;
}

static int lower(int c) {
  return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

static int ieq(const char *a, size_t alen, const char *b) {
  size_t i, blen = strlen(b);
  if (alen != blen) {
    return 0;
  }
  for (i = 0; i < alen; i++) {
    if (lower((unsigned char)a[i]) != lower((unsigned char)b[i])) {
      return 0;
    }
  }
  return 1;
}

/* Whether the comma-separated header value contains `token` (case-insensitive). */
static int has_token(const char *v, size_t len, const char *token) {
  size_t i = 0;
  while (i < len) {
    size_t start, end;
    while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) {
      i++;
    }
    start = i;
    while (i < len && v[i] != ',') {
      i++;
    }
    end = i;
    while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t')) {
      end--;
    }
    if (end > start && ieq(v + start, end - start, token)) {
      return 1;
    }
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * HTTP heads
 * ------------------------------------------------------------------------------------------- */

typedef struct head {
  const char *line; /* request or status line */
  size_t line_len;
  const char *upgrade, *connection, *key, *version, *origin, *accept, *extensions, *protocol;
  size_t upgrade_len, connection_len, key_len, version_len, origin_len, accept_len, ext_len,
      protocol_len;
  int dup; /* a header we care about appeared twice */
} head;

static void trim(const char **s, size_t *len) {
  while (*len && (**s == ' ' || **s == '\t')) {
    (*s)++;
    (*len)--;
  }
  while (*len && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t')) {
    (*len)--;
  }
}

static void set_header(head *h, const char **slot, size_t *slot_len, const char *v, size_t n) {
  if (*slot) {
    h->dup = 1;
  }
  *slot = v;
  *slot_len = n;
}

/* Splits the head (ending with the blank line) into the first line and the headers we use.
 * Returns 0, or -1 for a malformed head. */
static int parse_head(const char *p, size_t len, head *h) {
  size_t i = 0, eol;
  memset(h, 0, sizeof(*h));
  for (eol = 0; eol + 1 < len && !(p[eol] == '\r' && p[eol + 1] == '\n'); eol++) {
  }
  h->line = p;
  h->line_len = eol;
  i = eol + 2;
  while (i + 1 < len && !(p[i] == '\r' && p[i + 1] == '\n')) {
    size_t colon, end, j;
    const char *v;
    size_t vlen;
    for (end = i; end + 1 < len && !(p[end] == '\r' && p[end + 1] == '\n'); end++) {
      if (p[end] == '\0' || ((unsigned char)p[end] < 0x20 && p[end] != '\t') || p[end] == 0x7f) {
        return -1;
      }
    }
    if (p[i] == ' ' || p[i] == '\t') {
      return -1; /* obsolete line folding */
    }
    for (colon = i; colon < end && p[colon] != ':'; colon++) {
      if (p[colon] == ' ' || p[colon] == '\t') {
        return -1; /* no space before the colon (RFC 7230 3.2.4) */
      }
    }
    if (colon == end || colon == i) {
      return -1;
    }
    v = p + colon + 1;
    vlen = end - colon - 1;
    trim(&v, &vlen);
    j = colon - i;
    if (ieq(p + i, j, "upgrade")) {
      set_header(h, &h->upgrade, &h->upgrade_len, v, vlen);
    } else if (ieq(p + i, j, "connection")) {
      set_header(h, &h->connection, &h->connection_len, v, vlen);
    } else if (ieq(p + i, j, "sec-websocket-key")) {
      set_header(h, &h->key, &h->key_len, v, vlen);
    } else if (ieq(p + i, j, "sec-websocket-version")) {
      set_header(h, &h->version, &h->version_len, v, vlen);
    } else if (ieq(p + i, j, "origin")) {
      set_header(h, &h->origin, &h->origin_len, v, vlen);
    } else if (ieq(p + i, j, "sec-websocket-accept")) {
      set_header(h, &h->accept, &h->accept_len, v, vlen);
    } else if (ieq(p + i, j, "sec-websocket-protocol")) {
      if (!h->protocol) {
        h->protocol = v; /* the first offer; repeated headers only add later choices */
        h->protocol_len = vlen;
      }
    } else if (ieq(p + i, j, "sec-websocket-extensions")) {
      h->extensions = v; /* may repeat; only noted */
      h->ext_len = vlen;
    }
    i = end + 2;
  }
  return 0;
}

/* The length of the first comma-separated token of a header value, if it is a valid RFC 7230
 * token of at most 128 bytes; else 0. */
static size_t first_token(const char *v, size_t len) {
  size_t i;
  for (i = 0; i < len && v[i] != ',' && v[i] != ' ' && v[i] != '\t'; i++) {
    unsigned char ch = (unsigned char)v[i];
    if (ch <= 0x20 || ch >= 0x7f || strchr("\"(),/:;<=>?@[\\]{}", ch)) {
      return 0;
    }
  }
  return i <= 128 ? i : 0;
}

static int send_http_error(pm_ws *ws, const pm_ws_io *io, int status, const char *reason) {
  char buf[512];
  const char *text = status == 400   ? "Bad Request"
                     : status == 403 ? "Forbidden"
                     : status == 404 ? "Not Found"
                     : status == 405 ? "Method Not Allowed"
                     : status == 426 ? "Upgrade Required"
                     : status == 431 ? "Request Header Fields Too Large"
                                     : "Error";
  int n = snprintf(buf, sizeof buf,
                   "HTTP/1.1 %d %s\r\nConnection: close\r\n%sContent-Type: text/plain\r\n"
                   "Content-Length: %u\r\n\r\n%s\n",
                   status, text, status == 426 ? "Sec-WebSocket-Version: 13\r\n" : "",
                   (unsigned)strlen(reason) + 1, reason);
  ws->phase = PHASE_DONE;
  if (n < 0 || (size_t)n >= sizeof buf) {
    return POMELO_ERR_INTERNAL;
  }
  return io->send(io->ctx, (const uint8_t *)buf, (size_t)n);
}

/* Server: validates the upgrade request and answers 101 or an error. */
static int server_upgrade(pm_ws *ws, const char *p, size_t len, const pm_ws_io *io) {
  head h;
  const char *line, *path, *sp;
  size_t line_len, path_len;
  uint8_t nonce[16];
  char accept[29], resp[512];
  size_t proto_len;
  int n, rc;
  if (parse_head(p, len, &h) != 0) {
    send_http_error(ws, io, 400, "malformed HTTP request");
    return POMELO_ERR_HTTP;
  }
  line = h.line;
  line_len = h.line_len;
  /* "GET <path> HTTP/1.1" */
  if (line_len < 4 || memcmp(line, "GET ", 4) != 0) {
    send_http_error(ws, io, 405, "only GET upgrades to WebSocket");
    return POMELO_ERR_HTTP;
  }
  path = line + 4;
  sp = memchr(path, ' ', line_len - 4);
  if (!sp || sp == path || (size_t)(line + line_len - sp) != 9 ||
      memcmp(sp + 1, "HTTP/1.1", 8) != 0) {
    send_http_error(ws, io, 400, "expected GET <path> HTTP/1.1");
    return POMELO_ERR_HTTP;
  }
  path_len = (size_t)(sp - path);
  if (h.dup || !h.upgrade || !has_token(h.upgrade, h.upgrade_len, "websocket") || !h.connection ||
      !has_token(h.connection, h.connection_len, "upgrade")) {
    send_http_error(ws, io, 400,
                    "not a WebSocket upgrade (Upgrade: websocket, Connection: Upgrade)");
    return POMELO_ERR_HTTP;
  }
  if (!h.version || h.version_len != 2 || memcmp(h.version, "13", 2) != 0) {
    send_http_error(ws, io, 426, "Sec-WebSocket-Version must be 13");
    return POMELO_ERR_HTTP;
  }
  if (!h.key || pm_base64_decode(h.key, h.key_len, nonce, sizeof nonce) != 16) {
    send_http_error(ws, io, 400, "Sec-WebSocket-Key must be 16 bytes in base64");
    return POMELO_ERR_HTTP;
  }
  if (io->check) {
    int status = io->check(io->ctx, path, path_len, h.origin, h.origin_len);
    if (status != 0) {
      send_http_error(ws, io, status >= 400 && status <= 599 ? status : 403, "upgrade refused");
      return POMELO_ERR_HTTP;
    }
  }
  /* permessage-deflate and any other extension offered is declined by not answering it. */
  /* A subprotocol offer is answered with its first token, as the real server (ws 1.1.1) does:
   * RFC 6455 clients fail a connection whose 101 ignores the protocol they asked for. */
  proto_len = first_token(h.protocol, h.protocol_len);
  pm_ws_accept_key(h.key, h.key_len, accept);
  n = snprintf(resp, sizeof resp,
               "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
               "Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s%.*s%s\r\n",
               accept, proto_len ? "Sec-WebSocket-Protocol: " : "", (int)proto_len,
               proto_len ? h.protocol : "", proto_len ? "\r\n" : "");
  if (n < 0 || (size_t)n >= sizeof resp) {
    return POMELO_ERR_INTERNAL;
  }
  rc = io->send(io->ctx, (const uint8_t *)resp, (size_t)n);
  if (rc) {
    return rc;
  }
  ws->phase = PHASE_OPEN;
  if (io->open) {
    io->open(io->ctx);
  }
  return 0;
}

/* Client: checks the 101 response. */
static int client_upgrade(pm_ws *ws, const char *p, size_t len, const pm_ws_io *io) {
  head h;
  if (parse_head(p, len, &h) != 0 || h.line_len < 12 || memcmp(h.line, "HTTP/1.1 101", 12) != 0 ||
      (h.line_len > 12 && h.line[12] != ' ') || h.dup || !h.upgrade ||
      !has_token(h.upgrade, h.upgrade_len, "websocket") || !h.connection ||
      !has_token(h.connection, h.connection_len, "upgrade") || !h.accept || h.accept_len != 28 ||
      memcmp(h.accept, ws->accept, 28) != 0 || h.extensions) {
    ws->phase = PHASE_DONE;
    return POMELO_ERR_WS_HANDSHAKE;
  }
  ws->phase = PHASE_OPEN;
  if (io->open) {
    io->open(io->ctx);
  }
  return 0;
}

int pm_ws_client_start(pm_ws *ws, const char *host, const char *path, const uint8_t nonce[16],
                       const pm_ws_io *io) {
  char key[25], buf[1024];
  int n;
  pm_base64_encode(nonce, 16, key);
  pm_ws_accept_key(key, 24, ws->accept);
  n = snprintf(buf, sizeof buf,
               "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
               path && *path ? path : "/", host ? host : "localhost", key);
  if (n < 0 || (size_t)n >= sizeof buf) {
    return POMELO_ERR_INVALID_ARG;
  }
  return io->send(io->ctx, (const uint8_t *)buf, (size_t)n);
}

/* Collects the HTTP head; returns bytes consumed, or an error. Sets *done when complete. */
static long feed_http(pm_ws *ws, const pomelo_allocator *a, const uint8_t *in, size_t len,
                      const pm_ws_io *io, int *done) {
  size_t i;
  *done = 0;
  for (i = 0; i < len; i++) {
    if (ws->http_len == ws->http_cap) {
      uint32_t cap = ws->http_cap ? ws->http_cap * 2 : 512;
      char *p;
      if (cap > ws->http_limit) {
        cap = ws->http_limit;
      }
      if (ws->http_len >= cap) {
        if (!ws->client) {
          send_http_error(ws, io, 431, "request head too large");
        }
        ws->phase = PHASE_DONE;
        return ws->client ? POMELO_ERR_WS_HANDSHAKE : POMELO_ERR_HTTP_TOO_LARGE;
      }
      p = pm_realloc(a, ws->http, cap);
      if (!p) {
        return POMELO_ERR_NOMEM;
      }
      ws->http = p;
      ws->http_cap = cap;
    }
    ws->http[ws->http_len++] = (char)in[i];
    if (ws->http_len >= 4 && memcmp(ws->http + ws->http_len - 4, "\r\n\r\n", 4) == 0) {
      *done = 1;
      return (long)(i + 1);
    }
  }
  return (long)len;
}

/* ---------------------------------------------------------------------------------------------
 * Frames
 * ------------------------------------------------------------------------------------------- */

int pm_ws_send_close(pm_ws *ws, uint16_t code, const pm_ws_io *io) {
  uint8_t payload[2];
  if (ws->close_sent) {
    return 0;
  }
  ws->close_sent = 1;
  payload[0] = (uint8_t)(code >> 8);
  payload[1] = (uint8_t)code;
  return io->control(io->ctx, PM_WS_OP_CLOSE, payload, 2);
}

/* Fails the connection with a close code; returns `err`. */
static int fail(pm_ws *ws, const pm_ws_io *io, uint16_t code, int err) {
  int rc = pm_ws_send_close(ws, code, io);
  ws->phase = PHASE_DONE;
  return rc ? rc : err;
}

/* Incremental UTF-8 check of text-message bytes (RFC 3629). Returns how many bytes passed: n,
 * or the offset of the first invalid byte. */
static size_t utf8_step(pm_ws *ws, const uint8_t *p, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    uint8_t b = p[i];
    if (ws->utf8_need) {
      if (b < ws->utf8_lo || b > ws->utf8_hi) {
        return i;
      }
      ws->utf8_need--;
      ws->utf8_lo = 0x80;
      ws->utf8_hi = 0xbf;
      continue;
    }
    if (b < 0x80) {
      continue;
    }
    ws->utf8_lo = 0x80;
    ws->utf8_hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) {
      ws->utf8_need = 1;
    } else if (b >= 0xe0 && b <= 0xef) {
      ws->utf8_need = 2;
      if (b == 0xe0) {
        ws->utf8_lo = 0xa0;
      } else if (b == 0xed) {
        ws->utf8_hi = 0x9f;
      }
    } else if (b >= 0xf0 && b <= 0xf4) {
      ws->utf8_need = 3;
      if (b == 0xf0) {
        ws->utf8_lo = 0x90;
      } else if (b == 0xf4) {
        ws->utf8_hi = 0x8f;
      }
    } else {
      return i;
    }
  }
  return n;
}

static int valid_close_code(unsigned code) {
  if (code >= 3000 && code <= 4999) {
    return 1;
  }
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011);
}

/* A complete control frame. Returns 0, PM_WS_PEER_CLOSED or an error. */
static int control_frame(pm_ws *ws, const pm_ws_io *io) {
  if (ws->opcode == PM_WS_OP_PING) {
    return ws->close_sent ? 0 : io->control(io->ctx, PM_WS_OP_PONG, ws->ctl, ws->ctl_len);
  }
  if (ws->opcode == PM_WS_OP_PONG) {
    return 0;
  }
  /* Close: validate, answer with the same code, done. */
  if (ws->ctl_len == 1) {
    return fail(ws, io, PM_WS_CLOSE_PROTOCOL, POMELO_ERR_WS_PROTOCOL);
  }
  if (ws->ctl_len >= 2) {
    unsigned code = (unsigned)ws->ctl[0] << 8 | ws->ctl[1];
    pm_ws tmp;
    if (!valid_close_code(code)) {
      return fail(ws, io, PM_WS_CLOSE_PROTOCOL, POMELO_ERR_WS_PROTOCOL);
    }
    memset(&tmp, 0, sizeof tmp);
    if (utf8_step(&tmp, ws->ctl + 2, ws->ctl_len - 2u) != ws->ctl_len - 2u || tmp.utf8_need) {
      return fail(ws, io, PM_WS_CLOSE_INVALID_DATA, POMELO_ERR_WS_UTF8);
    }
    pm_ws_send_close(ws, (uint16_t)code, io);
  } else {
    pm_ws_send_close(ws, PM_WS_CLOSE_NORMAL, io);
  }
  ws->phase = PHASE_DONE;
  return PM_WS_PEER_CLOSED;
}

/* Parses a frame header once enough bytes are in ws->hdr. Returns 1 when complete, 0 when more
 * bytes are needed, or an error. */
static int frame_header(pm_ws *ws, const pm_ws_io *io) {
  uint8_t b0, b1, op;
  size_t need = 2, lenbytes;
  uint64_t len;
  if (ws->hdr_have < 2) {
    return 0;
  }
  b0 = ws->hdr[0];
  b1 = ws->hdr[1];
  lenbytes = (b1 & 0x7f) == 126 ? 2 : (b1 & 0x7f) == 127 ? 8 : 0;
  need += lenbytes + ((b1 & 0x80) ? 4 : 0);
  if (ws->hdr_have < need) {
    return 0;
  }
  op = b0 & 0x0f;
  if (b0 & 0x70) {
    return fail(ws, io, PM_WS_CLOSE_PROTOCOL, POMELO_ERR_WS_PROTOCOL); /* no extensions */
  }
  if ((b1 & 0x80) != (ws->client ? 0 : 0x80)) {
    /* clients must mask, servers must not */
    return fail(ws, io, PM_WS_CLOSE_PROTOCOL, POMELO_ERR_WS_PROTOCOL);
  }
  if (lenbytes == 0) {
    len = b1 & 0x7f;
  } else {
    size_t i;
    len = 0;
    for (i = 0; i < lenbytes; i++) {
      len = len << 8 | ws->hdr[2 + i];
    }
    if (len >> 63) {
      return fail(ws, io, PM_WS_CLOSE_PROTOCOL, POMELO_ERR_WS_PROTOCOL);
    }
  }
  if (op >= PM_WS_OP_CLOSE) {
    if (op > PM_WS_OP_PONG || !(b0 & 0x80) || len > 125) {
      return fail(ws, io, PM_WS_CLOSE_PROTOCOL, POMELO_ERR_WS_PROTOCOL);
    }
    if (!ws->ctl) {
      ws->ctl = pm_malloc(ws->alloc, 125); /* control frames are rare: no buffer kept */
      if (!ws->ctl) {
        return POMELO_ERR_NOMEM;
      }
    }
    ws->ctl_len = 0;
  } else if (op == PM_WS_OP_CONT) {
    if (!ws->msg_op) {
      return fail(ws, io, PM_WS_CLOSE_PROTOCOL, POMELO_ERR_WS_PROTOCOL);
    }
  } else if (op == PM_WS_OP_TEXT || op == PM_WS_OP_BINARY) {
    if (ws->msg_op) {
      return fail(ws, io, PM_WS_CLOSE_PROTOCOL, POMELO_ERR_WS_PROTOCOL);
    }
    ws->msg_op = op;
    ws->msg_len = 0;
    ws->utf8_need = 0;
  } else {
    return fail(ws, io, PM_WS_CLOSE_PROTOCOL, POMELO_ERR_WS_PROTOCOL);
  }
  if (op < PM_WS_OP_CLOSE) {
    if (len > ws->max_message - ws->msg_len) {
      if (io->too_large) {
        io->too_large(io->ctx);
      }
      return fail(ws, io, PM_WS_CLOSE_TOO_BIG, POMELO_ERR_WS_TOO_LARGE);
    }
    ws->msg_len += len;
  }
  ws->opcode = op;
  ws->fin = (b0 & 0x80) != 0;
  ws->masked = (b1 & 0x80) != 0;
  if (ws->masked) {
    memcpy(ws->mask, ws->hdr + 2 + lenbytes, 4);
  }
  ws->left = len;
  ws->pos = 0;
  ws->hdr_have = 0;
  return 1;
}

/* The end of the current frame's payload. */
static int frame_end(pm_ws *ws, const pm_ws_io *io) {
  if (ws->opcode >= PM_WS_OP_CLOSE) {
    int rc = control_frame(ws, io);
    pm_free(ws->alloc, ws->ctl);
    ws->ctl = NULL;
    return rc;
  }
  if (ws->fin) {
    if (ws->msg_op == PM_WS_OP_TEXT && ws->utf8_need) {
      return fail(ws, io, PM_WS_CLOSE_INVALID_DATA, POMELO_ERR_WS_UTF8);
    }
    ws->msg_op = 0;
  }
  return 0;
}

/* Hands data-message bytes on; in a text message only the bytes before the first invalid UTF-8
 * byte, then the connection fails with 1007 (the same bytes however the input was split). */
static int emit_payload(pm_ws *ws, const pm_ws_io *io, const uint8_t *p, size_t n) {
  size_t ok = ws->msg_op == PM_WS_OP_TEXT ? utf8_step(ws, p, n) : n;
  int rc = ok ? io->payload(io->ctx, p, ok) : 0;
  if (rc) {
    return rc;
  }
  return ok < n ? fail(ws, io, PM_WS_CLOSE_INVALID_DATA, POMELO_ERR_WS_UTF8) : 0;
}

static int feed_frames(pm_ws *ws, const uint8_t *in, size_t len, const pm_ws_io *io) {
  size_t i = 0;
  int rc;
  while (ws->phase == PHASE_OPEN && i < len) {
    size_t take;
    if (!ws->in_payload) {
      ws->hdr[ws->hdr_have++] = in[i++];
      rc = frame_header(ws, io);
      if (rc <= 0) {
        if (rc < 0) {
          return rc;
        }
        continue;
      }
      ws->in_payload = 1;
    } else {
      take = (size_t)PM_MIN((uint64_t)(len - i), ws->left);
      if (ws->opcode >= PM_WS_OP_CLOSE) {
        memcpy(ws->ctl + ws->ctl_len, in + i, take);
        if (ws->masked) {
          pm_ws_mask(ws->ctl + ws->ctl_len, take, ws->mask, ws->pos);
        }
        ws->ctl_len = (uint8_t)(ws->ctl_len + take);
      } else if (!ws->masked) {
        rc = emit_payload(ws, io, in + i, take);
        if (rc) {
          return rc;
        }
      } else {
        /* Unmask through a stack buffer: the input is borrowed and read-only. */
        size_t done = 0;
        uint8_t chunk[4096];
        while (done < take) {
          size_t n = PM_MIN(take - done, sizeof chunk);
          memcpy(chunk, in + i + done, n);
          pm_ws_mask(chunk, n, ws->mask, ws->pos + done);
          rc = emit_payload(ws, io, chunk, n);
          if (rc) {
            return rc;
          }
          done += n;
        }
      }
      i += take;
      ws->left -= take;
      ws->pos += take;
    }
    if (ws->in_payload && ws->left == 0) {
      ws->in_payload = 0;
      rc = frame_end(ws, io);
      if (rc) {
        return rc;
      }
    }
  }
  return 0;
}

int pm_ws_feed(pm_ws *ws, const uint8_t *in, size_t len, const pm_ws_io *io,
               const pomelo_allocator *a) {
  size_t pos = 0;
  while (pos < len) {
    if (ws->phase == PHASE_DONE) {
      return 0; /* after a close or a failure nothing more is read */
    }
    if (ws->phase == PHASE_HTTP) {
      int done, rc;
      long used = feed_http(ws, a, in + pos, len - pos, io, &done);
      if (used < 0) {
        return (int)used;
      }
      pos += (size_t)used;
      if (!done) {
        return 0;
      }
      rc = ws->client ? client_upgrade(ws, ws->http, ws->http_len, io)
                      : server_upgrade(ws, ws->http, ws->http_len, io);
      pm_free(a, ws->http);
      ws->http = NULL;
      ws->http_len = ws->http_cap = 0;
      if (rc) {
        return rc;
      }
      continue;
    }
    return feed_frames(ws, in + pos, len - pos, io);
  }
  return 0;
}
