/* Packaging check: the public headers compile as strict C99 (-std=c99 -pedantic-errors) and the
 * shared library exports what they declare. Prints the version of the running library.
 * SPDX-License-Identifier: MIT
 */
#include <pomelo/pomelo.h>

#include <stdio.h>
#include <string.h>

int main(void) {
  uint8_t buf[POMELO_PKG_HEAD_LEN];
  size_t len = 0;
  int rc = pomelo_pkg_encode(buf, sizeof(buf), POMELO_PKG_HEARTBEAT, NULL, 0, &len);

  printf("libpomelo %s (headers %s), features 0x%x\n", pomelo_version(), POMELO_VERSION_STRING,
         (unsigned)pomelo_features());
  if (strcmp(pomelo_version(), POMELO_VERSION_STRING) != 0 ||
      pomelo_version_number() != POMELO_VERSION_NUMBER) {
    fprintf(stderr, "version mismatch between the headers and the library\n");
    return 1;
  }
  if (rc != POMELO_OK || len != POMELO_PKG_HEAD_LEN || buf[0] != POMELO_PKG_HEARTBEAT) {
    fprintf(stderr, "pomelo_pkg_encode: %s\n", pomelo_strerror(rc));
    return 1;
  }
  return 0;
}
