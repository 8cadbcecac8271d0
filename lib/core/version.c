/* Run-time version and features.
 * SPDX-License-Identifier: MIT
 */
#include "core/core.h"

const char *pomelo_version(void) {
  return POMELO_VERSION_STRING;
}

uint32_t pomelo_version_number(void) {
  return (uint32_t)POMELO_VERSION_NUMBER;
}

uint32_t pomelo_features(void) {
  uint32_t f = 0;
#if defined(POMELO_HAVE_ZLIB)
  f |= POMELO_FEATURE_ZLIB;
#endif
  return f;
}
