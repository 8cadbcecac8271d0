/* Fuzz target: the message decoder.
 *
 * Any input either fails with a codec error or decodes to fields that re-encode to a message
 * that decodes to the same fields; canonical inputs re-encode to the same bytes.
 * SPDX-License-Identifier: MIT
 */
#include <pomelo/codec.h>

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pomelo_msg m, m2;
  uint8_t *out;
  size_t need = 0, len = 0;
  int rc = pomelo_msg_decode(data, size, &m);
  if (rc != 0) {
    if (rc != POMELO_ERR_MSG_TRUNCATED && rc != POMELO_ERR_MSG_TYPE && rc != POMELO_ERR_MSG_ID) {
      abort();
    }
    return 0;
  }
  /* Views stay inside the input. */
  if (m.body < data || m.body + m.body_len != data + size || m.route_len > 255 ||
      (m.route_len &&
       ((const uint8_t *)m.route < data || (const uint8_t *)m.route + m.route_len > m.body))) {
    abort();
  }
  if ((m.type == POMELO_MSG_REQUEST || m.type == POMELO_MSG_RESPONSE) &&
      (m.id == 0 || m.id > POMELO_MSG_ID_MAX)) {
    abort();
  }
  if (pomelo_msg_encode(NULL, 0, &m, &need) != POMELO_ERR_BUFFER_TOO_SMALL || need > size) {
    abort(); /* re-encoding is never longer: the decoder only accepts valid fields */
  }
  out = malloc(need ? need : 1);
  if (!out) {
    return 0;
  }
  if (pomelo_msg_encode(out, need, &m, &len) != 0 || len != need) {
    abort();
  }
  if (pomelo_msg_decode(out, len, &m2) != 0 || m2.type != m.type || m2.id != m.id ||
      m2.route_compressed != m.route_compressed || m2.route_code != m.route_code ||
      m2.gzip != m.gzip || m2.route_len != m.route_len || m2.body_len != m.body_len ||
      memcmp(m2.route, m.route, m.route_len) != 0 || memcmp(m2.body, m.body, m.body_len) != 0) {
    abort();
  }
  /* Same length and no ignored flag bits: the input was canonical, so the bytes match. */
  if (len == size && (data[0] & 0xE0) == 0 && memcmp(out, data, size) != 0) {
    abort();
  }
  free(out);
  return 0;
}
