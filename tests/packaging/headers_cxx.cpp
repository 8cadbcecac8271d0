/* Packaging check: the public headers compile as C++11 (-std=c++11 -pedantic-errors) and link
 * from C++ (extern "C"). Prints the version of the running library.
 * SPDX-License-Identifier: MIT
 */
#include <pomelo/pomelo.h>

#include <cstdio>
#include <cstring>

int main() {
  pomelo_frame *frame = nullptr;
  int rc = pomelo_pkg_encode_frame(&frame, nullptr, POMELO_PKG_HEARTBEAT, nullptr, 0);

  std::printf("libpomelo %s (headers %s) from C++\n", pomelo_version(), POMELO_VERSION_STRING);
  if (std::strcmp(pomelo_version(), POMELO_VERSION_STRING) != 0) {
    std::fprintf(stderr, "version mismatch between the headers and the library\n");
    return 1;
  }
  if (rc != POMELO_OK || pomelo_frame_len(frame) != POMELO_PKG_HEAD_LEN) {
    std::fprintf(stderr, "pomelo_pkg_encode_frame: %s\n", pomelo_strerror(rc));
    return 1;
  }
  pomelo_frame_unref(frame);
  return 0;
}
