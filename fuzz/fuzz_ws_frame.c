/* Fuzz target: the WebSocket frame decoder, both sides, after a valid upgrade.
 *
 * Byte 0: bit 0 picks the side (server reads masked frames, client unmasked), bit 1 a small
 * message limit, the rest seeds the split. The frames are fed whole and split; both runs must
 * give the same payload bytes, the same control answers and the same error.
 * SPDX-License-Identifier: MIT
 */
#include "ws_harness.h"

static const char upgrade[] = "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                              "Sec-WebSocket-Version: 13\r\n\r\n";
/* The 101 for the nonce 01..10 that the harness's client sends. */
static const char response[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                               "Connection: Upgrade\r\n"
                               "Sec-WebSocket-Accept: C/0nmHhBztSRGR1CwL6Tf4ZjwpY=\r\n\r\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ws_run whole, split;
  int client;
  uint64_t limit;
  const char *prefix;
  if (size < 1) {
    return 0;
  }
  client = data[0] & 1;
  limit = (data[0] & 2) ? 100 : 1 << 20;
  prefix = client ? response : upgrade;
  ws_run_input(client, (const uint8_t *)prefix, strlen(prefix), data + 1, size - 1, 0, limit,
               &whole);
  ws_run_input(client, (const uint8_t *)prefix, strlen(prefix), data + 1, size - 1, data[0] | 1u,
               limit, &split);
  ws_compare(&whole, &split);
  if (whole.opened != 1 || whole.payload_len > size) {
    abort();
  }
  return 0;
}
