/* A tiny TAP producer for the test executables (run by `meson test` with protocol 'tap').
 * SPDX-License-Identifier: MIT
 */
#ifndef POMELO_TESTS_TAP_H
#define POMELO_TESTS_TAP_H

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_count_;
static int tap_failed_;

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static inline int
tap_ok_(int pass, const char *file, int line, const char *fmt, ...) {
  va_list ap;
  tap_count_++;
  printf("%s %d - ", pass ? "ok" : "not ok", tap_count_);
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  printf("\n");
  if (!pass) {
    tap_failed_++;
    printf("#   failed at %s:%d\n", file, line);
  }
  fflush(stdout);
  return pass;
}

/* ok(cond, "name %d", args...): one test point. */
#define ok(cond, ...) tap_ok_(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

/* is_int(got, want, "name"): integer equality, printing both on failure. */
#define is_int(got, want, ...)                                                                     \
  do {                                                                                             \
    long long tap_got_ = (long long)(got), tap_want_ = (long long)(want);                          \
    if (!tap_ok_(tap_got_ == tap_want_, __FILE__, __LINE__, __VA_ARGS__)) {                        \
      printf("#   got %lld, want %lld\n", tap_got_, tap_want_);                                    \
    }                                                                                              \
  } while (0)

/* is_mem(got, tap_got_len, want, tap_want_len, "name"): byte equality, printing both in hex. */
#define is_mem(got, glen, want, wlen, ...)                                                         \
  do {                                                                                             \
    const unsigned char *tap_g_ = (const unsigned char *)(got),                                    \
                        *tap_w_ = (const unsigned char *)(want);                                   \
    size_t tap_gl_ = (glen), tap_wl_ = (wlen);                                                     \
    int tap_same_ = tap_gl_ == tap_wl_ && (tap_gl_ == 0 || memcmp(tap_g_, tap_w_, tap_gl_) == 0);  \
    if (!tap_ok_(tap_same_, __FILE__, __LINE__, __VA_ARGS__)) {                                    \
      tap_hexdump_("got ", tap_g_, tap_gl_);                                                       \
      tap_hexdump_("want", tap_w_, tap_wl_);                                                       \
    }                                                                                              \
  } while (0)

/* is_str(got, want, "name"): NUL-terminated string equality (NULL-safe). */
#define is_str(got, want, ...)                                                                     \
  do {                                                                                             \
    const char *tap_gs_ = (got), *tap_ws_ = (want);                                                \
    int tap_same_ = (tap_gs_ && tap_ws_) ? strcmp(tap_gs_, tap_ws_) == 0 : tap_gs_ == tap_ws_;     \
    if (!tap_ok_(tap_same_, __FILE__, __LINE__, __VA_ARGS__)) {                                    \
      printf("#   got  \"%s\"\n#   want \"%s\"\n", tap_gs_ ? tap_gs_ : "(null)",                   \
             tap_ws_ ? tap_ws_ : "(null)");                                                        \
    }                                                                                              \
  } while (0)

static inline void tap_hexdump_(const char *tag, const unsigned char *p, size_t n) {
  size_t i;
  printf("#   %s (%zu):", tag, n);
  for (i = 0; i < n && i < 96; i++) {
    printf(" %02x", p[i]);
  }
  printf("%s\n", n > 96 ? " ..." : "");
}

/* diag("text %d", ...): a comment line. */
#define diag(...)                                                                                  \
  do {                                                                                             \
    printf("# ");                                                                                  \
    printf(__VA_ARGS__);                                                                           \
    printf("\n");                                                                                  \
  } while (0)

/* Ends the test: prints the plan, returns the process exit status. */
static inline int done_testing(void) {
  printf("1..%d\n", tap_count_);
  return tap_failed_ ? 1 : 0;
}

#endif /* POMELO_TESTS_TAP_H */
