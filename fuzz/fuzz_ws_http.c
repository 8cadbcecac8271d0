/* Fuzz target: the WebSocket upgrade parsers (server request, client 101 response).
 *
 * Byte 0: bit 0 picks the side, the rest seeds the split. The input is fed whole and split; both
 * must give the same answer, memory stays under the head limit, and nothing leaks.
 * SPDX-License-Identifier: MIT
 */
#include "ws_harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ws_run whole, split;
  int client;
  if (size < 1) {
    return 0;
  }
  client = data[0] & 1;
  ws_run_input(client, NULL, 0, data + 1, size - 1, 0, 1 << 20, &whole);
  ws_run_input(client, NULL, 0, data + 1, size - 1, data[0] | 1u, 1 << 20, &split);
  ws_compare(&whole, &split);
  if (!client && whole.out_len > 0 && memcmp(whole.out, "HTTP/1.1 ", 9) != 0) {
    abort(); /* a server's first answer is an HTTP status line */
  }
  if (!client && whole.opened && memcmp(whole.out, "HTTP/1.1 101 ", 13) != 0) {
    abort();
  }
  return 0;
}
