/* WebSocket transport: SHA-1, base64, the upgrade, frames, the hybrid sniffer, both roles.
 * SPDX-License-Identifier: MIT
 */
#include <pomelo/conn.h>

#include "tap.h"
#include "testutil.h"
#include "transport/hash.h"
#include "transport/ws.h"

#define MIN_(a, b) ((a) < (b) ? (a) : (b))

static void hex(const uint8_t *p, size_t n, char *out) {
  size_t i;
  for (i = 0; i < n; i++) {
    sprintf(out + 2 * i, "%02x", p[i]);
  }
}

static void test_sha1_base64(void) {
  static const struct {
    const char *in;
    const char *want;
  } v[] = {
      /* FIPS 180-2 appendix A and common vectors */
      {"abc", "a9993e364706816aba3e25717850c26c9cd0d89d"},
      {"", "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
      {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
       "84983e441c3bd26ebaae4aa1f95129e5e54670f1"},
      {"The quick brown fox jumps over the lazy dog", "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12"},
  };
  static const char *b64[][2] = {{"", ""},
                                 {"f", "Zg=="},
                                 {"fo", "Zm8="},
                                 {"foo", "Zm9v"},
                                 {"foob", "Zm9vYg=="},
                                 {"fooba", "Zm9vYmE="},
                                 {"foobar", "Zm9vYmFy"}};
  size_t i;
  uint8_t d[20], back[16];
  char h[41], e[64];
  pm_sha1 s;
  for (i = 0; i < sizeof v / sizeof v[0]; i++) {
    pm_sha1_init(&s);
    pm_sha1_update(&s, v[i].in, strlen(v[i].in));
    pm_sha1_final(&s, d);
    hex(d, 20, h);
    is_str(h, v[i].want, "sha1(\"%.20s\")", v[i].in);
  }
  pm_sha1_init(&s); /* one million 'a', fed in odd pieces */
  for (i = 0; i < 1000000;) {
    static const char a[97] =
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaa";
    size_t n = MIN_(1000000 - i, 96);
    pm_sha1_update(&s, a, n);
    i += n;
  }
  pm_sha1_final(&s, d);
  hex(d, 20, h);
  is_str(h, "34aa973cd4c4daa4f61eeb2bdbad27316534016f", "sha1 of a million 'a'");
  for (i = 0; i < sizeof b64 / sizeof b64[0]; i++) {
    long n;
    pm_base64_encode((const uint8_t *)b64[i][0], strlen(b64[i][0]), e);
    is_str(e, b64[i][1], "base64(\"%s\") (RFC 4648)", b64[i][0]);
    n = pm_base64_decode(b64[i][1], strlen(b64[i][1]), back, sizeof back);
    is_mem(back, (size_t)n, b64[i][0], strlen(b64[i][0]), "decode \"%s\"", b64[i][1]);
  }
  ok(pm_base64_decode("Zh==", 4, back, sizeof back) < 0, "non-zero trailing bits refused");
  ok(pm_base64_decode("Zg=", 3, back, sizeof back) < 0, "bad length refused");
  ok(pm_base64_decode("Z!==", 4, back, sizeof back) < 0, "bad character refused");
  ok(pm_base64_decode("Zm9vYmFy", 8, back, 5) < 0, "output over capacity refused");
  pm_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", 24, e);
  is_str(e, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "Sec-WebSocket-Accept of the RFC 6455 example");
}

static void test_sniff(void) {
  is_int(pm_sniff((const uint8_t *)"\x01\x00", 2), POMELO_TRANSPORT_TCP, "package type 1: TCP");
  is_int(pm_sniff((const uint8_t *)"G", 1), POMELO_TRANSPORT_AUTO, "G: wait");
  is_int(pm_sniff((const uint8_t *)"GE", 2), POMELO_TRANSPORT_AUTO, "GE: wait (real server: TCP)");
  is_int(pm_sniff((const uint8_t *)"GET", 3), POMELO_TRANSPORT_AUTO, "GET: wait");
  is_int(pm_sniff((const uint8_t *)"GET ", 4), POMELO_TRANSPORT_WS, "GET space: HTTP");
  is_int(pm_sniff((const uint8_t *)"GETX", 4), POMELO_TRANSPORT_TCP, "GETX: not a method");
  is_int(pm_sniff((const uint8_t *)"POST /", 6), POMELO_TRANSPORT_WS, "POST: HTTP");
  is_int(pm_sniff((const uint8_t *)"PU", 2), POMELO_TRANSPORT_AUTO, "PU: wait");
  is_int(pm_sniff((const uint8_t *)"DELETE", 6), POMELO_TRANSPORT_WS, "DELETE: HTTP");
  is_int(pm_sniff((const uint8_t *)"HEAD", 4), POMELO_TRANSPORT_WS, "HEAD: HTTP");
  is_int(pm_sniff((const uint8_t *)"Gx", 2), POMELO_TRANSPORT_TCP, "Gx: TCP");
}

/* ---------------------------------------------------------------------------------------------
 * A server connection over WebSocket, driven with hand-built client bytes.
 * ------------------------------------------------------------------------------------------- */

typedef struct rec {
  int messages, ready, closes, close_reason;
  char last_route[64];
} rec;

static void on_message(pomelo_conn *c, const pomelo_msg *m, void *ud) {
  rec *r = ud;
  (void)c;
  r->messages++;
  snprintf(r->last_route, sizeof r->last_route, "%.*s", (int)m->route_len, m->route);
}
static void on_ready(pomelo_conn *c, void *ud) {
  (void)c;
  ((rec *)ud)->ready++;
}
static void on_close(pomelo_conn *c, int reason, void *ud) {
  rec *r = ud;
  (void)c;
  r->closes++;
  r->close_reason = reason;
}
static uint32_t next_random(pomelo_conn *c, void *ud) {
  static uint32_t x = 0x12345678u;
  (void)c;
  (void)ud;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  return x;
}
static int check_path(pomelo_conn *c, const char *path, size_t n, const char *origin, size_t on,
                      void *ud) {
  (void)c;
  (void)ud;
  (void)origin;
  (void)on;
  return n == 7 && memcmp(path, "/secret", 7) == 0 ? 403 : 0;
}

static pomelo_conn_callbacks cbs(void) {
  pomelo_conn_callbacks cb;
  memset(&cb, 0, sizeof cb);
  cb.on_message = on_message;
  cb.on_ready = on_ready;
  cb.on_close = on_close;
  cb.random = next_random;
  cb.check_upgrade = check_path;
  return cb;
}

static pomelo_conn *ws_server(rec *r, uint32_t max_body) {
  pomelo_conn_settings s;
  pomelo_conn_callbacks cb = cbs();
  pomelo_conn *c = NULL;
  pomelo_conn_settings_default(&s);
  s.heartbeat_interval_ms = 3000;
  if (max_body) {
    s.max_body = max_body;
  }
  memset(r, 0, sizeof(*r));
  pomelo_conn_new(&c, &s, &cb, NULL, 0, r);
  return c;
}

static uint64_t drain_now; /* the time drain() reports writes at */

static size_t drain(pomelo_conn *c, uint8_t *out, size_t cap) {
  struct iovec iov[16];
  size_t total = 0;
  int i, n;
  while ((n = pomelo_conn_out_iov(c, iov, 16)) > 0) {
    size_t got = 0;
    for (i = 0; i < n; i++) {
      if (total + iov[i].iov_len <= cap) {
        memcpy(out + total, iov[i].iov_base, iov[i].iov_len);
        total += iov[i].iov_len;
      }
      got += iov[i].iov_len;
    }
    pomelo_conn_out_consume(c, got, drain_now);
  }
  return total;
}

/* Appends a masked client frame to `out`. */
static size_t cframe(uint8_t *out, int fin, int opcode, const void *payload, size_t len) {
  static const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
  size_t hl = pm_ws_frame_header(out, opcode, len, mask);
  if (!fin) {
    out[0] &= 0x7f;
  }
  memcpy(out + hl, payload, len);
  pm_ws_mask(out + hl, len, mask, 0);
  return hl + len;
}

static const char *UPGRADE =
    "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, "
    "superchat\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: "
    "permessage-deflate; client_max_window_bits\r\n\r\n";
static const char *RESP101 =
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
    "Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    "Sec-WebSocket-Protocol: chat\r\n\r\n";
static const char *HS = "{\"sys\":{\"type\":\"js-websocket\",\"version\":\"0.0.1\"}}";

/* The client side of a session: upgrade, handshake, ACK, heartbeat, a request (fragmented), a
 * ping, a text-frame notify, then a close. */
static size_t client_stream(uint8_t *s) {
  uint8_t pkg[256], msg[128];
  size_t n = 0, k, ml;
  pomelo_msg m;
  memcpy(s, UPGRADE, strlen(UPGRADE));
  n += strlen(UPGRADE);
  pomelo_pkg_encode(pkg, sizeof pkg, POMELO_PKG_HANDSHAKE, (const uint8_t *)HS, strlen(HS), &k);
  n += cframe(s + n, 1, PM_WS_OP_BINARY, pkg, k);
  n += cframe(s + n, 1, PM_WS_OP_BINARY, "\x02\x00\x00\x00", 4);
  n += cframe(s + n, 1, PM_WS_OP_BINARY, "\x03\x00\x00\x00", 4);
  memset(&m, 0, sizeof m);
  m.type = POMELO_MSG_REQUEST;
  m.id = 1;
  m.route = "connector.entryHandler.entry";
  m.route_len = strlen(m.route);
  m.body = (const uint8_t *)"{}";
  m.body_len = 2;
  pomelo_msg_encode(msg, sizeof msg, &m, &ml);
  pomelo_pkg_encode(pkg, sizeof pkg, POMELO_PKG_DATA, msg, ml, &k);
  n += cframe(s + n, 0, PM_WS_OP_BINARY, pkg, 10);        /* first fragment */
  n += cframe(s + n, 1, PM_WS_OP_PING, "hi", 2);          /* control frame in between */
  n += cframe(s + n, 0, PM_WS_OP_CONT, pkg + 10, 5);      /* continuation */
  n += cframe(s + n, 1, PM_WS_OP_CONT, pkg + 15, k - 15); /* final */
  m.type = POMELO_MSG_NOTIFY;
  m.route = "chat.chatHandler.send";
  m.route_len = strlen(m.route);
  pomelo_msg_encode(msg, sizeof msg, &m, &ml);
  pomelo_pkg_encode(pkg, sizeof pkg, POMELO_PKG_DATA, msg, ml, &k);
  n += cframe(s + n, 1, PM_WS_OP_TEXT, pkg, k); /* the real server accepts text frames */
  n += cframe(s + n, 1, PM_WS_OP_CLOSE,
              "\x03\xe8"
              "bye",
              5);
  return n;
}

static void test_server_session(void) {
  static uint8_t s[2048], out[8192];
  size_t n = client_stream(s), o;
  rec r;
  pomelo_conn *c = ws_server(&r, 0);
  char want[2048];
  size_t wl = 0, k;
  uint8_t pkg[1024];
  const char *resp = "{\"code\":200,\"sys\":{\"heartbeat\":3}}";

  is_int(pomelo_conn_feed(c, s, n, 0), 0, "whole client stream");
  is_int(pomelo_conn_get_transport(c), POMELO_TRANSPORT_WS, "sniffed as WebSocket");
  is_int(r.ready, 1, "handshake completed over WebSocket");
  is_int(r.messages, 2, "fragmented request and text-frame notify delivered");
  is_str(r.last_route, "chat.chatHandler.send", "last route");
  is_int(r.close_reason, POMELO_CLOSE_PEER, "the client's close frame closes the connection");
  is_int(pomelo_conn_get_state(c), POMELO_CONN_CLOSING, "closing while our close frame is queued");
  o = drain(c, out, sizeof out);
  ok(pomelo_conn_wants_close(c), "closed after the flush");

  /* Expected bytes: 101; the handshake response, heartbeat after ACK, heartbeat echo, all
   * unmasked binary frames; the pong; the close echo (1000). */
  memcpy(want, RESP101, strlen(RESP101));
  wl = strlen(RESP101);
  pomelo_pkg_encode(pkg, sizeof pkg, POMELO_PKG_HANDSHAKE, (const uint8_t *)resp, strlen(resp), &k);
  wl += pm_ws_frame_header((uint8_t *)want + wl, PM_WS_OP_BINARY, k, NULL);
  memcpy(want + wl, pkg, k);
  wl += k;
  memcpy(want + wl, "\x82\x04\x03\x00\x00\x00\x82\x04\x03\x00\x00\x00", 12);
  wl += 12;
  memcpy(want + wl, "\x8a\x02hi", 4);
  wl += 4;
  memcpy(want + wl, "\x88\x02\x03\xe8", 4);
  wl += 4;
  is_mem(out, o, want, wl, "server output: 101, frames, pong, close echo");
  pomelo_conn_del(c);

  /* Every split point and every chunk size give the same output. */
  {
    size_t cut, step, bad = 0;
    for (step = 1; step <= n; step++) {
      size_t pos = 0;
      c = ws_server(&r, 0);
      while (pos < n) {
        size_t len = MIN_(step, n - pos);
        pomelo_conn_feed(c, s + pos, len, 0);
        pos += len;
      }
      o = drain(c, out, sizeof out);
      if (!(o == wl && memcmp(out, want, wl) == 0 && r.messages == 2)) {
        bad++;
      }
      pomelo_conn_del(c);
    }
    ok(bad == 0, "same output at every chunk size 1..%zu (%zu differ)", n, bad);
    bad = 0;
    for (cut = 0; cut <= n; cut++) {
      c = ws_server(&r, 0);
      pomelo_conn_feed(c, s, cut, 0);
      pomelo_conn_feed(c, s + cut, n - cut, 0);
      o = drain(c, out, sizeof out);
      if (!(o == wl && memcmp(out, want, wl) == 0 && r.messages == 2)) {
        bad++;
      }
      pomelo_conn_del(c);
    }
    ok(bad == 0, "same output at every split point (%zu differ)", bad);
  }
}

/* Feeds upgrade + one frame (or raw bytes after the upgrade) and returns the output. */
static size_t after_upgrade(const uint8_t *frames, size_t flen, uint32_t max_body, rec *r,
                            uint8_t *out, size_t cap, int *rc) {
  pomelo_conn *c = ws_server(r, max_body);
  uint8_t pkg[64];
  uint8_t buf[4096];
  size_t n = strlen(UPGRADE), k, o;
  memcpy(buf, UPGRADE, n);
  pomelo_pkg_encode(pkg, sizeof pkg, POMELO_PKG_HANDSHAKE, (const uint8_t *)HS, strlen(HS), &k);
  n += cframe(buf + n, 1, PM_WS_OP_BINARY, pkg, k);
  n += cframe(buf + n, 1, PM_WS_OP_BINARY, "\x02\x00\x00\x00", 4);
  pomelo_conn_feed(c, buf, n, 0);
  drain(c, out, cap); /* 101, the handshake response, the first heartbeat */
  *rc = pomelo_conn_feed(c, frames, flen, 0);
  o = drain(c, out, cap);
  r->closes = pomelo_conn_wants_close(c);
  pomelo_conn_del(c);
  return o;
}

static void test_frame_errors(void) {
  uint8_t f[300000], out[256];
  size_t n, o;
  int rc;
  rec r;

  f[0] = 0x82;
  f[1] = 0x04;
  memcpy(f + 2, "\x03\x00\x00\x00", 4);
  o = after_upgrade(f, 6, 0, &r, out, sizeof out, &rc);
  is_int(rc, POMELO_ERR_WS_PROTOCOL, "an unmasked client frame");
  ok(r.closes, "connection closed");
  is_mem(out, o, "\x88\x02\x03\xea", 4, "closed with 1002");

  n = cframe(f, 1, PM_WS_OP_BINARY, "\x03\x00\x00\x00", 4);
  f[0] |= 0x40;
  o = after_upgrade(f, n, 0, &r, out, sizeof out, &rc);
  is_int(rc, POMELO_ERR_WS_PROTOCOL, "RSV1 set (no extension was agreed)");
  is_mem(out, o, "\x88\x02\x03\xea", 4, "1002");

  n = cframe(f, 1, 0x3, "x", 1);
  o = after_upgrade(f, n, 0, &r, out, sizeof out, &rc);
  is_int(rc, POMELO_ERR_WS_PROTOCOL, "reserved opcode 3");

  n = cframe(f, 1, PM_WS_OP_CONT, "x", 1);
  o = after_upgrade(f, n, 0, &r, out, sizeof out, &rc);
  is_int(rc, POMELO_ERR_WS_PROTOCOL, "continuation without a message");

  n = cframe(f, 0, PM_WS_OP_BINARY, "\x03\x00", 2);
  n += cframe(f + n, 1, PM_WS_OP_BINARY, "\x00\x00", 2);
  o = after_upgrade(f, n, 0, &r, out, sizeof out, &rc);
  is_int(rc, POMELO_ERR_WS_PROTOCOL, "a new message inside a fragmented one");

  n = cframe(f, 0, PM_WS_OP_PING, "x", 1);
  o = after_upgrade(f, n, 0, &r, out, sizeof out, &rc);
  is_int(rc, POMELO_ERR_WS_PROTOCOL, "fragmented control frame");

  memset(f + 200, 'p', 126);
  n = cframe(f, 1, PM_WS_OP_PING, f + 200, 126);
  o = after_upgrade(f, n, 0, &r, out, sizeof out, &rc);
  is_int(rc, POMELO_ERR_WS_PROTOCOL, "control frame over 125 bytes");

  n = cframe(f, 1, PM_WS_OP_TEXT, "\x03\x00\x00\x01\xff", 5);
  o = after_upgrade(f, n, 0, &r, out, sizeof out, &rc);
  is_int(rc, POMELO_ERR_WS_UTF8, "invalid UTF-8 in a text frame");
  is_mem(out, o, "\x88\x02\x03\xef", 4, "closed with 1007");

  n = cframe(f, 0, PM_WS_OP_TEXT, "\x03\x00\x00\x02\xc3", 5);
  n += cframe(f + n, 1, PM_WS_OP_CONT, "\xa9", 1);
  o = after_upgrade(f, n, 0, &r, out, sizeof out, &rc);
  is_int(rc, 0, "a UTF-8 character split across fragments is fine");

  n = cframe(f, 1, PM_WS_OP_TEXT, "\x03\x00\x00\x01\xc3", 5);
  o = after_upgrade(f, n, 0, &r, out, sizeof out, &rc);
  is_int(rc, POMELO_ERR_WS_UTF8, "text ending inside a character");

  /* 1009: a message over max_body + 4. */
  memset(f + 1000, 0, 200);
  n = cframe(f, 1, PM_WS_OP_BINARY, f + 1000, 105);
  o = after_upgrade(f, n, 100, &r, out, sizeof out, &rc);
  is_int(rc, POMELO_ERR_WS_TOO_LARGE, "message over max_body + 4");
  {
    /* Working: a KICK says why first (the browser client emits onKick), then the close 1009. */
    static const char kick_then_close[] = "\x82\x22\x05\x00\x00\x1e{\"reason\":\"message too "
                                          "large\"}\x88\x02\x03\xf1";
    is_mem(out, o, kick_then_close, sizeof kick_then_close - 1,
           "KICK {\"reason\":\"message too large\"}, then closed with 1009");
    n = cframe(f, 1, PM_WS_OP_BINARY, "\x04\x00\x00\x65xx", 6);
    o = after_upgrade(f, n, 100, &r, out, sizeof out, &rc);
    is_int(rc, POMELO_ERR_PKG_TOO_LARGE, "a small message whose package claims 101 bytes");
    is_mem(out, o, kick_then_close, sizeof kick_then_close - 1, "the same KICK, then 1009");
    ok(r.closes, "closed");
  }
  n = cframe(f, 1, PM_WS_OP_BINARY, "\x03\x00\x00\x00\x03\x00\x00\x00", 8);
  o = after_upgrade(f, n, 100, &r, out, sizeof out, &rc);
  is_int(rc, 0, "two heartbeats in one message are accepted (deliberately more tolerant)");
  ok(!r.closes, "still open");
  is_int((long)o, 12, "both echoed");

  /* A 64-bit length with the top bit set. */
  memcpy(f, "\x82\xff\x80\x00\x00\x00\x00\x00\x00\x00\x01\x02\x03\x04", 14);
  o = after_upgrade(f, 14, 0, &r, out, sizeof out, &rc);
  is_int(rc, POMELO_ERR_WS_PROTOCOL, "64-bit length with the most significant bit set");
  /* Close codes. */
  n = cframe(f, 1, PM_WS_OP_CLOSE, "\x03", 1);
  o = after_upgrade(f, n, 0, &r, out, sizeof out, &rc);
  is_int(rc, POMELO_ERR_WS_PROTOCOL, "close with a 1-byte payload");
  n = cframe(f, 1, PM_WS_OP_CLOSE, "\x03\xed", 2);
  o = after_upgrade(f, n, 0, &r, out, sizeof out, &rc);
  is_int(rc, POMELO_ERR_WS_PROTOCOL, "close code 1005 may not be sent");
  n = cframe(f, 1, PM_WS_OP_CLOSE, "\x0f\xa0", 2);
  o = after_upgrade(f, n, 0, &r, out, sizeof out, &rc);
  is_int(rc, 0, "close code 4000 (application range)");
  is_mem(out, o, "\x88\x02\x0f\xa0", 4, "echoed");
  n = cframe(f, 1, PM_WS_OP_CLOSE, "", 0);
  o = after_upgrade(f, n, 0, &r, out, sizeof out, &rc);
  is_mem(out, o, "\x88\x02\x03\xe8", 4, "an empty close is answered with 1000");
  n = cframe(f, 1, PM_WS_OP_CLOSE, "\x03\xe8\xff", 3);
  o = after_upgrade(f, n, 0, &r, out, sizeof out, &rc);
  is_int(rc, POMELO_ERR_WS_UTF8, "close reason not UTF-8");
  /* Pomelo-level protocol error inside WebSocket: closed with 1000, as the real server. */
  n = cframe(f, 1, PM_WS_OP_BINARY, "\x07\x00\x00\x00", 4);
  o = after_upgrade(f, n, 0, &r, out, sizeof out, &rc);
  is_int(rc, POMELO_ERR_PKG_TYPE, "package type 7 over WebSocket");
  is_mem(out, o, "\x88\x02\x03\xe8", 4, "closed with a 1000 close frame");
  /* A large binary message with a 64-bit length, split in frames. */
  {
    static uint8_t big[70000 + 4];
    size_t k;
    memset(big, 'x', sizeof big);
    pomelo_pkg_encode(f + 150000, 100000, POMELO_PKG_HEARTBEAT, NULL, 0, &k);
    big[0] = 4;
    big[1] = 0x01;
    big[2] = 0x11;
    big[3] = 0x70; /* 70000 */
    big[4] = 0x06; /* a push ... */
    big[5] = 0;    /* ... with an empty route */
    n = cframe(f, 1, PM_WS_OP_BINARY, big, sizeof big);
    ok(f[1] == (0x80 | 127), "64-bit length form used");
    o = after_upgrade(f, n, 100000, &r, out, sizeof out, &rc);
    is_int(rc, 0, "70 KB message with a 64-bit length");
    is_int(r.messages, 1, "delivered");
  }
}

static void test_bad_upgrades(void) {
  static const struct {
    const char *req;
    const char *status;
    const char *name;
  } v[] = {
      {"POST / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n", "HTTP/1.1 405", "POST"},
      {"GET / HTTP/1.0\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "
       "dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
       "HTTP/1.1 400", "HTTP/1.0"},
      {"GET / HTTP/1.1\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
       "Sec-WebSocket-Version: 13\r\n\r\n",
       "HTTP/1.1 400", "no Upgrade header"},
      {"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: keep-alive\r\nSec-WebSocket-Key: "
       "dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
       "HTTP/1.1 400", "Connection without upgrade"},
      {"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "
       "dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
       "HTTP/1.1 426", "version 8"},
      {"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "
       "c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n",
       "HTTP/1.1 400", "key not 16 bytes"},
      {"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n Sec-WebSocket-Key: "
       "x\r\n\r\n",
       "HTTP/1.1 400", "obsolete line folding"},
      {"GET /secret HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "
       "dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
       "HTTP/1.1 403", "refused by the check_upgrade hook"},
  };
  size_t i;
  uint8_t out[1024];
  rec r;
  for (i = 0; i < sizeof v / sizeof v[0]; i++) {
    pomelo_conn *c = ws_server(&r, 0);
    int rc = pomelo_conn_feed(c, (const uint8_t *)v[i].req, strlen(v[i].req), 0);
    size_t o = drain(c, out, sizeof out);
    ok(rc < 0 && o > 12 && memcmp(out, v[i].status, 12) == 0, "%s: answered %s", v[i].name,
       v[i].status);
    ok(pomelo_conn_wants_close(c), "%s: closed after the answer", v[i].name);
    pomelo_conn_del(c);
  }
  {
    /* The 8 KiB head limit: 431, and memory follows the bytes that arrived. */
    static char big[10000];
    test_alloc ta;
    pomelo_conn_settings s;
    pomelo_conn_callbacks cb = cbs();
    pomelo_conn *c;
    int rc;
    size_t o;
    memset(big, 'a', sizeof big);
    memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
    test_alloc_init(&ta, 0);
    pomelo_conn_settings_default(&s);
    pomelo_conn_new(&c, &s, &cb, &ta.a, 0, &r);
    rc = pomelo_conn_feed(c, (const uint8_t *)big, 100, 0);
    ok(rc == 0 && ta.bytes < 2048, "100 bytes of head cost little (%zu bytes)", ta.bytes);
    rc = pomelo_conn_feed(c, (const uint8_t *)big + 100, sizeof big - 100, 0);
    is_int(rc, POMELO_ERR_HTTP_TOO_LARGE, "head over 8 KiB");
    o = drain(c, out, sizeof out);
    ok(o > 12 && memcmp(out, "HTTP/1.1 431", 12) == 0, "answered 431");
    pomelo_conn_del(c);
    is_int(ta.live, 0, "no leak");
  }
}

/* A client connection over WebSocket against a server connection over WebSocket (ours, both:
 * the state machines; interop with real peers is tested with node). */
static void test_client_server(void) {
  rec rs, rc;
  pomelo_conn *s = ws_server(&rs, 0), *c = NULL;
  pomelo_conn_settings cs;
  pomelo_conn_callbacks cb = cbs();
  static uint8_t buf[65536];
  uint64_t now = 0;
  int round, i;
  pomelo_msg m;
  size_t n;
  pomelo_conn_settings_default(&cs);
  cs.role = POMELO_ROLE_CLIENT;
  cs.transport = POMELO_TRANSPORT_WS;
  cs.ws_host = "127.0.0.1:3010";
  memset(&rc, 0, sizeof rc);
  is_int(pomelo_conn_new(&c, &cs, &cb, NULL, 0, &rc), 0, "WebSocket client");
  n = drain(c, buf, sizeof buf);
  ok(n > 20 && memcmp(buf, "GET / HTTP/1.1\r\nHost: 127.0.0.1:3010\r\n", 38) == 0,
     "client starts with the upgrade request");
  pomelo_conn_feed(s, buf, n, now);
  for (round = 0; round < 30; round++) {
    /* Exchange until both are quiet, then jump to the next deadline. */
    int i2;
    for (i2 = 0; i2 < 4; i2++) {
      n = drain(s, buf, sizeof buf);
      pomelo_conn_feed(c, buf, n, now);
      n = drain(c, buf, sizeof buf);
      pomelo_conn_feed(s, buf, n, now);
    }
    now = MIN_(pomelo_conn_expiry(s), pomelo_conn_expiry(c));
    drain_now = now;
    pomelo_conn_handle_expiry(s, now);
    pomelo_conn_handle_expiry(c, now);
  }
  ok(pomelo_conn_get_state(c) == POMELO_CONN_WORKING && rs.ready == 1 && rc.ready == 1,
     "handshake over WebSocket; heartbeats kept both alive to t=%llu", (unsigned long long)now);
  memset(&m, 0, sizeof m);
  m.type = POMELO_MSG_REQUEST;
  m.route = "a.b.c";
  m.route_len = 5;
  for (i = 1; i <= 3; i++) {
    m.id = (uint32_t)i;
    pomelo_conn_send(c, &m);
  }
  n = drain(c, buf, sizeof buf);
  ok(n > 0 && (buf[1] & 0x80), "client frames are masked");
  pomelo_conn_feed(s, buf, n, now);
  is_int(rs.messages, 3, "three requests, one message each");
  {
    /* A frame of two packages from a client: two WebSocket messages (spec 1.3). */
    uint8_t two[64], body[32];
    size_t bl, k1, k2;
    pomelo_frame *f2;
    m.id = 4;
    pomelo_msg_encode(body, sizeof body, &m, &bl);
    pomelo_pkg_encode(two, sizeof two, POMELO_PKG_DATA, body, bl, &k1);
    pomelo_pkg_encode(two + k1, sizeof two - k1, POMELO_PKG_DATA, body, bl, &k2);
    pomelo_frame_new(&f2, NULL, two, k1 + k2);
    is_int(pomelo_conn_send_frame(c, f2), 0, "client sends a two-package frame");
    pomelo_frame_unref(f2);
    n = drain(c, buf, sizeof buf);
    ok(n == 2 * (2 + 4 + k1) && buf[0] == 0x82 && buf[2 + 4 + k1] == 0x82,
       "as two masked messages of one package each");
    pomelo_conn_feed(s, buf, n, now);
    is_int(rs.messages, 5, "both delivered");
  }
  m.type = POMELO_MSG_PUSH;
  m.route = "onPush";
  m.route_len = 6;
  pomelo_conn_send(s, &m);
  n = drain(s, buf, sizeof buf);
  ok(!(buf[1] & 0x80), "server frames are not masked");
  pomelo_conn_feed(c, buf, n, now);
  is_int(rc.messages, 1, "push received by the client");
  is_str(rc.last_route, "onPush", "push route");
  pomelo_conn_close(c, POMELO_CLOSE_LOCAL);
  n = drain(c, buf, sizeof buf);
  ok(n == 8 && buf[0] == 0x88 && buf[1] == 0x82, "client close: a masked close frame");
  pomelo_conn_feed(s, buf, n, now);
  n = drain(s, buf, sizeof buf);
  ok(n == 4 && buf[0] == 0x88, "server echoes the close");
  ok(pomelo_conn_wants_close(s) && rs.close_reason == POMELO_CLOSE_PEER, "server closed");
  pomelo_conn_del(s);
  pomelo_conn_del(c);

  /* A client that receives a bad 101. */
  memset(&rc, 0, sizeof rc);
  pomelo_conn_new(&c, &cs, &cb, NULL, 0, &rc);
  drain(c, buf, sizeof buf);
  {
    const char *bad = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
                      "Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    is_int(pomelo_conn_feed(c, (const uint8_t *)bad, strlen(bad), 0), POMELO_ERR_WS_HANDSHAKE,
           "wrong Sec-WebSocket-Accept refused");
    ok(pomelo_conn_wants_close(c), "closed");
  }
  pomelo_conn_del(c);
  cb.random = NULL;
  is_int(pomelo_conn_new(&c, &cs, &cb, NULL, 0, &rc), POMELO_ERR_INVALID_ARG,
         "a WebSocket client needs the random callback");
}

/* One frame shared by TCP and WebSocket members: the WebSocket header sits in the headroom. */
static void test_shared_frame(void) {
  rec r1, r2, r3;
  pomelo_conn *w1 = ws_server(&r1, 0), *w2 = ws_server(&r2, 0), *t;
  pomelo_conn_settings s;
  pomelo_conn_callbacks cb = cbs();
  pomelo_frame *f;
  pomelo_msg m;
  uint8_t buf[4096], pkg[64], o1[256], o2[256], o3[256];
  size_t n = strlen(UPGRADE), k, l1, l2, l3;
  memcpy(buf, UPGRADE, n);
  pomelo_pkg_encode(pkg, sizeof pkg, POMELO_PKG_HANDSHAKE, (const uint8_t *)HS, strlen(HS), &k);
  n += cframe(buf + n, 1, PM_WS_OP_BINARY, pkg, k);
  n += cframe(buf + n, 1, PM_WS_OP_BINARY, "\x02\x00\x00\x00", 4);
  pomelo_conn_feed(w1, buf, n, 0);
  pomelo_conn_feed(w2, buf, n, 0);
  pomelo_conn_settings_default(&s);
  memset(&r3, 0, sizeof r3);
  pomelo_conn_new(&t, &s, &cb, NULL, 0, &r3);
  pomelo_pkg_encode(pkg, sizeof pkg, POMELO_PKG_HANDSHAKE, (const uint8_t *)HS, strlen(HS), &k);
  pomelo_conn_feed(t, pkg, k, 0);
  pomelo_conn_feed(t, (const uint8_t *)"\x02\x00\x00\x00", 4, 0);
  drain(w1, o1, sizeof o1);
  drain(w2, o2, sizeof o2);
  drain(t, o3, sizeof o3);
  memset(&m, 0, sizeof m);
  m.type = POMELO_MSG_PUSH;
  m.route = "onChat";
  m.route_len = 6;
  m.body = (const uint8_t *)"hello";
  m.body_len = 5;
  pomelo_msg_encode_frame(&f, NULL, &m);
  pomelo_conn_send_frame(w1, f);
  pomelo_conn_send_frame(t, f);
  pomelo_conn_send_frame(w2, f);
  is_int(pomelo_frame_refcount(f), 4, "one frame, three queues");
  l1 = drain(w1, o1, sizeof o1);
  l2 = drain(w2, o2, sizeof o2);
  l3 = drain(t, o3, sizeof o3);
  is_mem(o3, l3, pomelo_frame_data(f), pomelo_frame_len(f), "TCP member gets the package");
  ok(l1 == l3 + 2 && o1[0] == 0x82 && o1[1] == l3 && memcmp(o1 + 2, o3, l3) == 0,
     "WebSocket member gets header + the same package bytes");
  is_mem(o1, l1, o2, l2, "both WebSocket members get identical bytes");
  pomelo_frame_unref(f);
  pomelo_conn_del(w1);
  pomelo_conn_del(w2);
  pomelo_conn_del(t);
}

static void test_nomem(void) {
  static uint8_t s[2048], out[8192];
  size_t n = client_stream(s);
  long i;
  int clean = 1, saw = 0;
  for (i = 1; i < 400; i++) {
    test_alloc ta;
    pomelo_conn_settings st;
    pomelo_conn_callbacks cb = cbs();
    pomelo_conn *c = NULL;
    rec r;
    size_t pos;
    memset(&r, 0, sizeof r);
    test_alloc_init(&ta, i);
    pomelo_conn_settings_default(&st);
    st.heartbeat_interval_ms = 3000;
    if (pomelo_conn_new(&c, &st, &cb, &ta.a, 0, &r) == 0) {
      for (pos = 0; pos < n; pos += 7) {
        pomelo_conn_feed(c, s + pos, MIN_(7, n - pos), 0);
        drain(c, out, sizeof out);
      }
      pomelo_conn_del(c);
    }
    saw |= ta.failed > 0;
    if (ta.live) {
      clean = 0;
      diag("leak with allocation %ld failing", i);
    }
    if (!ta.failed) {
      break;
    }
  }
  ok(saw && clean, "WebSocket session with each allocation failing: no crash, no leak (%ld)", i);
}

int main(void) {
  test_sha1_base64();
  test_sniff();
  test_server_session();
  test_frame_errors();
  test_bad_upgrades();
  test_client_server();
  test_shared_frame();
  test_nomem();
  return done_testing();
}
