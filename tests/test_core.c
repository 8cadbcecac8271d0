/* Core: error table, allocator, frames, version.
 * SPDX-License-Identifier: MIT
 */
#include <pomelo/common.h>

#include "tap.h"
#include "testutil.h"

static void test_errors(void) {
  /* Every code in the table has a distinct name and a description; unknown codes are named. */
  static const int codes[] = {
#define CODE_(name, value, text) value,
      POMELO_ERROR_LIST(CODE_)
#undef CODE_
  };
  size_t i, j;
  int distinct = 1;
  for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
    for (j = i + 1; j < sizeof(codes) / sizeof(codes[0]); j++) {
      if (codes[i] == codes[j] ||
          strcmp(pomelo_err_name(codes[i]), pomelo_err_name(codes[j])) == 0) {
        distinct = 0;
        diag("duplicate code %d / %d", codes[i], codes[j]);
      }
    }
    if (strcmp(pomelo_strerror(codes[i]), "unknown error") == 0) {
      distinct = 0;
    }
  }
  ok(distinct, "every error code has its own value, name and text");
  is_str(pomelo_err_name(POMELO_ERR_NOMEM), "ERR_NOMEM", "err_name(NOMEM)");
  is_str(pomelo_err_name(POMELO_OK), "OK", "err_name(OK)");
  is_str(pomelo_strerror(POMELO_ERR_PKG_TYPE), "unknown package type", "strerror(PKG_TYPE)");
  is_str(pomelo_err_name(-12345), "UNKNOWN", "unknown code has a name");
  is_str(pomelo_strerror(42), "application error", "a positive code is the application's");
  is_str(pomelo_err_name(42), "APP", "and named APP");
  ok(pomelo_err_is_app(1) && pomelo_err_is_app(42) && !pomelo_err_is_app(0) &&
         !pomelo_err_is_app(POMELO_ERR_STATE),
     "err_is_app: positive codes only");
  ok(pomelo_err_is_fatal(POMELO_ERR_NOMEM), "NOMEM is fatal");
  ok(pomelo_err_is_fatal(POMELO_ERR_INTERNAL), "INTERNAL is fatal");
  ok(!pomelo_err_is_fatal(POMELO_ERR_PKG_TYPE), "PKG_TYPE is not fatal");
  ok(!pomelo_err_is_fatal(POMELO_OK), "OK is not fatal");
  for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
    if (codes[i] > 0) {
      ok(0, "no positive error codes");
    }
  }
}

static void test_frames(void) {
  test_alloc ta;
  pomelo_frame *f = NULL;
  long n;
  test_alloc_init(&ta, 0);
  is_int(pomelo_frame_new(&f, &ta.a, "abc", 3), 0, "frame_new");
  is_mem(pomelo_frame_data(f), pomelo_frame_len(f), "abc", 3, "frame holds a copy");
  is_int(pomelo_frame_refcount(f), 1, "refcount starts at 1");
  ok(pomelo_frame_ref(f) == f, "ref returns the frame");
  is_int(pomelo_frame_refcount(f), 2, "refcount 2");
  pomelo_frame_unref(f);
  is_int(ta.live, 1, "still alive after one unref");
  pomelo_frame_unref(f);
  is_int(ta.live, 0, "freed by the last unref");
  pomelo_frame_unref(NULL);

  is_int(pomelo_frame_new(&f, &ta.a, NULL, 0), 0, "empty frame");
  is_int(pomelo_frame_len(f), 0, "empty frame has length 0");
  ok(pomelo_frame_data(f) != NULL, "empty frame data is not NULL");
  pomelo_frame_unref(f);
  is_int(pomelo_frame_new(&f, &ta.a, NULL, 1), POMELO_ERR_INVALID_ARG, "NULL data with length");
  is_int(pomelo_frame_new(NULL, &ta.a, "a", 1), POMELO_ERR_INVALID_ARG, "NULL out");

  for (n = 1; n < 3; n++) {
    test_alloc_init(&ta, n);
    f = NULL;
    int rc = pomelo_frame_new(&f, &ta.a, "abc", 3);
    if (ta.failed) {
      is_int(rc, POMELO_ERR_NOMEM, "frame_new with allocation %ld failing", n);
    } else {
      is_int(rc, 0, "frame_new succeeds without failure");
      pomelo_frame_unref(f);
    }
    is_int(ta.live, 0, "no leak with allocation %ld failing", n);
  }

  /* NULL allocator = libc; an incomplete allocator struct also falls back to libc. */
  {
    pomelo_allocator half = {0};
    is_int(pomelo_frame_new(&f, NULL, "x", 1), 0, "libc allocator");
    pomelo_frame_unref(f);
    is_int(pomelo_frame_new(&f, &half, "x", 1), 0, "incomplete allocator falls back to libc");
    pomelo_frame_unref(f);
  }
  {
    const pomelo_allocator *libc = pomelo_allocator_libc();
    void *p = libc->malloc(10, libc->user_data);
    ok(p != NULL, "libc allocator malloc");
    p = libc->realloc(p, 20, libc->user_data);
    ok(p != NULL, "libc allocator realloc");
    libc->free(p, libc->user_data);
  }
}

static void test_version(void) {
  char buf[32];
  snprintf(buf, sizeof buf, "%d.%d.%d", POMELO_VERSION_MAJOR, POMELO_VERSION_MINOR,
           POMELO_VERSION_PATCH);
  is_str(pomelo_version(), POMELO_VERSION_STRING, "run-time version matches the header");
  is_str(buf, POMELO_VERSION_STRING, "version macros agree with the string");
  is_int(pomelo_version_number(), POMELO_VERSION_NUMBER, "version number");
  is_int(POMELO_VERSION_NUMBER,
         (POMELO_VERSION_MAJOR << 16) | (POMELO_VERSION_MINOR << 8) | POMELO_VERSION_PATCH,
         "version number layout");
#if defined(POMELO_HAVE_ZLIB)
  ok(pomelo_features() & POMELO_FEATURE_ZLIB, "zlib feature reported");
#else
  ok(!(pomelo_features() & POMELO_FEATURE_ZLIB), "no zlib feature reported");
#endif
}

int main(void) {
  test_errors();
  test_frames();
  test_version();
  return done_testing();
}
