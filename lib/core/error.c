/* Error strings, generated from the one table in common.h.
 * SPDX-License-Identifier: MIT
 */
#include "core/core.h"

const char *pomelo_strerror(int code) {
  switch (code) {
#define PM_ERR_TEXT_(name, value, text)                                                            \
  case value:                                                                                      \
    return text;
    POMELO_ERROR_LIST(PM_ERR_TEXT_)
#undef PM_ERR_TEXT_
  default:
    return code > 0 ? "application error" : "unknown error";
  }
}

const char *pomelo_err_name(int code) {
  switch (code) {
#define PM_ERR_NAME_(name, value, text)                                                            \
  case value:                                                                                      \
    return #name;
    POMELO_ERROR_LIST(PM_ERR_NAME_)
#undef PM_ERR_NAME_
  default:
    return code > 0 ? "APP" : "UNKNOWN";
  }
}

int pomelo_err_is_fatal(int code) {
  return code <= POMELO_ERR_FATAL;
}

int pomelo_err_is_app(int code) {
  return code > 0;
}
