/* A program using libpomelo the way an outside project does: built against the installed library
 * through pkg-config, and as a meson subproject (tools/test.sh). Prints the version; exits 0 when
 * the library works and matches the headers.
 * SPDX-License-Identifier: MIT
 */
#include <pomelo/pomelo.h>

#include <stdio.h>
#include <string.h>

int main(void) {
  static const uint8_t body[] = {'{', '}'};
  uint8_t buf[16];
  size_t len = 0;
  pomelo_pkg pkg;
  size_t used = 0;
  int rc = pomelo_pkg_encode(buf, sizeof(buf), POMELO_PKG_DATA, body, sizeof(body), &len);

  if (rc == POMELO_OK) {
    rc = pomelo_pkg_decode(buf, len, &pkg, &used);
  }
  if (rc != POMELO_OK || used != len || pkg.body_len != sizeof(body)) {
    fprintf(stderr, "consumer: package round trip failed: %s\n", pomelo_strerror(rc));
    return 1;
  }
  if (strcmp(pomelo_version(), POMELO_VERSION_STRING) != 0) {
    fprintf(stderr, "consumer: library %s, headers %s\n", pomelo_version(), POMELO_VERSION_STRING);
    return 1;
  }
  printf("consumer: libpomelo %s works\n", pomelo_version());
  return 0;
}
