/* libpomelo internal: WebSocket (RFC 6455), sans-IO, server and client side (not installed).
 *
 * pm_ws_feed() consumes raw bytes: first the HTTP upgrade (a request on the server side, the
 * 101 response on the client side), then frames. Data-message payload bytes come out, unmasked,
 * through pm_ws_io.payload, in order and split anywhere (a fragmented message is simply more
 * bytes); what the protocol must answer (the 101 or an HTTP error, pongs, close frames) goes out
 * through pm_ws_io.send. Frames of our own data are built with pm_ws_frame_header.
 * SPDX-License-Identifier: MIT
 */
#ifndef POMELO_LIB_WS_H
#define POMELO_LIB_WS_H

#include <pomelo/common.h>

/* WebSocket opcodes and close codes. */
#define PM_WS_OP_CONT 0x0
#define PM_WS_OP_TEXT 0x1
#define PM_WS_OP_BINARY 0x2
#define PM_WS_OP_CLOSE 0x8
#define PM_WS_OP_PING 0x9
#define PM_WS_OP_PONG 0xA

#define PM_WS_CLOSE_NORMAL 1000
#define PM_WS_CLOSE_PROTOCOL 1002
#define PM_WS_CLOSE_INVALID_DATA 1007
#define PM_WS_CLOSE_TOO_BIG 1009

/* The largest frame header: 2 + 8 length bytes + 4 mask bytes. */
#define PM_WS_HEAD_MAX 14u

typedef struct pm_ws_io {
  void *ctx;
  /* Payload bytes of data messages, unmasked. Returns 0 or an error that stops the feed. */
  int (*payload)(void *ctx, const uint8_t *data, size_t len);
  /* Bytes to send as they are (the HTTP upgrade request or response). Returns 0 or an error. */
  int (*send)(void *ctx, const uint8_t *data, size_t len);
  /* A control frame to send (pong, close) with its payload: the owner frames it, masked on the
   * client side. Returns 0 or an error. */
  int (*control)(void *ctx, int opcode, const uint8_t *payload, size_t len);
  /* Server: may refuse an upgrade by path and Origin (NULL when absent): return 0 to accept or
   * an HTTP status (e.g. 403, 404). May be NULL. */
  int (*check)(void *ctx, const char *path, size_t path_len, const char *origin, size_t origin_len);
  /* The handshake completed (server: 101 sent; client: 101 verified). May be NULL. */
  void (*open)(void *ctx);
  /* A data message passed max_message: called before the close frame 1009 is sent, so the owner
   * may queue a last message (a KICK). May be NULL. */
  void (*too_large)(void *ctx);
} pm_ws_io;

typedef struct pm_ws pm_ws;

/* Creates the state of one WebSocket. `max_message` bounds a data message (1009 above it);
 * `http_limit` bounds the upgrade request or response head. */
int pm_ws_new(pm_ws **out, const pomelo_allocator *a, int client, uint64_t max_message,
              uint32_t http_limit);
void pm_ws_del(pm_ws *ws, const pomelo_allocator *a);

/* Feeds received bytes. Returns:
 * - 0: everything consumed;
 * - PM_WS_PEER_CLOSED (1): the peer sent a close frame; ours was sent in reply (io.control);
 *   the rest of the input is ignored; the socket should close after the flush;
 * - a negative code: the connection failed; what the peer should see (an HTTP error response
 *   through io.send, or a close frame with 1002/1007/1009 through io.control) was sent, and
 *   nothing more is read:
 *   POMELO_ERR_HTTP (bad upgrade request), POMELO_ERR_HTTP_TOO_LARGE, POMELO_ERR_WS_HANDSHAKE
 *   (client: bad 101), POMELO_ERR_WS_PROTOCOL, POMELO_ERR_WS_UTF8, POMELO_ERR_WS_TOO_LARGE,
 *   POMELO_ERR_NOMEM, or an error returned by an io callback. */
#define PM_WS_PEER_CLOSED 1
int pm_ws_feed(pm_ws *ws, const uint8_t *in, size_t len, const pm_ws_io *io,
               const pomelo_allocator *a);

/* 1 once the opening handshake is done (data frames may be sent). */
int pm_ws_is_open(const pm_ws *ws);

/* Client: writes the upgrade request for `host` and `path` with the 16-byte `nonce` into a new
 * string sent through io.send, and remembers the key to check the 101. */
int pm_ws_client_start(pm_ws *ws, const char *host, const char *path, const uint8_t nonce[16],
                       const pm_ws_io *io);

/* Sends a close frame with `code` through io.control, once (no-op after the first). */
int pm_ws_send_close(pm_ws *ws, uint16_t code, const pm_ws_io *io);

/* Writes a final frame header for a payload of `len` bytes into `out` (PM_WS_HEAD_MAX bytes);
 * with `mask` (4 bytes) the header carries it (the caller masks the payload). Returns the
 * header length. */
size_t pm_ws_frame_header(uint8_t *out, int opcode, uint64_t len, const uint8_t *mask);

/* XORs `len` bytes with the 4-byte mask starting at mask offset `pos` (in place). */
void pm_ws_mask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t pos);

/* Computes Sec-WebSocket-Accept for a key (28 characters + NUL into out). */
void pm_ws_accept_key(const char *key, size_t key_len, char out[29]);

/* The hybrid port's sniffer (spec 1.4): given the first bytes of a connection, returns
 * POMELO_TRANSPORT_WS for an HTTP request (GET, POST, PUT, DELETE, HEAD), POMELO_TRANSPORT_TCP
 * for anything else, or POMELO_TRANSPORT_AUTO when the bytes are still a prefix of a method and
 * more are needed (so "GE" then "T /" is WebSocket). */
int pm_sniff(const uint8_t *data, size_t len);

#endif /* POMELO_LIB_WS_H */
