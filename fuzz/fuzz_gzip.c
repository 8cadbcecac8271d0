/* Fuzz target: inflating compressed bodies (gzip.c).
 *
 * Every input is inflated under a small cap and under caps derived from the result. A failure is
 * POMELO_ERR_GZIP or POMELO_ERR_GZIP_TOO_LARGE with nothing returned; a success is at most the
 * cap, and deflating it then inflating that gives the same bytes back. The cap is exact: the
 * output fits a cap of its length and not one byte less, and a too-large input stays too large
 * under every smaller cap. No allocation is larger than the cap plus zlib's state, a failing
 * allocation gives POMELO_ERR_NOMEM, and nothing leaks. Built without zlib, both calls must
 * return POMELO_ERR_UNSUPPORTED.
 * SPDX-License-Identifier: MIT
 */
#include <stdlib.h>

#include "codec/codec_int.h"
#include "testutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                                   \
  do {                                                                                             \
    if (!(x)) {                                                                                    \
      abort();                                                                                     \
    }                                                                                              \
  } while (0)

#define CAP (64u * 1024u)

#if defined(POMELO_HAVE_ZLIB)

static int inflate_rc(const uint8_t *data, size_t size, size_t cap, test_alloc *ta, uint8_t **out,
                      size_t *out_len) {
  int rc;
  *out = (uint8_t *)ta; /* must come back NULL on failure */
  *out_len = 77;
  rc = pm_inflate(&ta->a, data, size, cap, out, out_len);
  if (rc) {
    CHECK(*out == NULL && *out_len == 0);
  } else {
    CHECK(*out_len <= cap);
    CHECK((*out == NULL) == (*out_len == 0));
  }
  return rc;
}

static void fuzz_inflate(const uint8_t *data, size_t size) {
  test_alloc ta;
  uint8_t *out = NULL, *o2 = NULL, *z = NULL;
  size_t len = 0, l2 = 0, zl = 0;
  int rc, rc2;

  test_alloc_init(&ta, 0);
  rc = inflate_rc(data, size, CAP, &ta, &out, &len);
  CHECK(rc == 0 || rc == POMELO_ERR_GZIP || rc == POMELO_ERR_GZIP_TOO_LARGE);
  CHECK(ta.peak <= CAP + 48u * 1024u);

  if (rc == 0) {
    /* exact caps */
    rc2 = inflate_rc(data, size, len, &ta, &o2, &l2);
    CHECK(rc2 == 0 && l2 == len && (len == 0 || memcmp(o2, out, len) == 0));
    pm_free(&ta.a, o2);
    if (len > 0) {
      CHECK(inflate_rc(data, size, len - 1, &ta, &o2, &l2) == POMELO_ERR_GZIP_TOO_LARGE);
      CHECK(inflate_rc(data, size, len / 2, &ta, &o2, &l2) == POMELO_ERR_GZIP_TOO_LARGE);
    }
    /* deflate and inflate again */
    CHECK(pm_deflate(&ta.a, out, len, size % 11, &z, &zl) == 0);
    rc2 = inflate_rc(z + size % 11, zl, len, &ta, &o2, &l2);
    CHECK(rc2 == 0 && l2 == len && (len == 0 || memcmp(o2, out, len) == 0));
    pm_free(&ta.a, o2);
    /* trailing bytes after a good stream */
    {
      uint8_t *t = malloc(zl + 1);
      CHECK(t != NULL);
      memcpy(t, z + size % 11, zl);
      t[zl] = size > 0 ? data[0] : 0;
      CHECK(inflate_rc(t, zl + 1, CAP, &ta, &o2, &l2) == POMELO_ERR_GZIP);
      free(t);
    }
    pm_free(&ta.a, z);
    pm_free(&ta.a, out);
  } else if (rc == POMELO_ERR_GZIP_TOO_LARGE) {
    /* too large stays too large under any smaller cap */
    CHECK(inflate_rc(data, size, size % CAP, &ta, &o2, &l2) == POMELO_ERR_GZIP_TOO_LARGE);
    CHECK(inflate_rc(data, size, 0, &ta, &o2, &l2) == POMELO_ERR_GZIP_TOO_LARGE);
  } else {
    /* a bad stream is bad or too large under a smaller cap, never good */
    rc2 = inflate_rc(data, size, size % 1024u, &ta, &o2, &l2);
    CHECK(rc2 == POMELO_ERR_GZIP || rc2 == POMELO_ERR_GZIP_TOO_LARGE);
  }
  CHECK(ta.live == 0);

  /* one allocation failing, chosen from the input */
  if (size > 0) {
    test_alloc tf;
    test_alloc_init(&tf, 1 + data[size - 1] % 6);
    rc2 = inflate_rc(data, size, CAP, &tf, &o2, &l2);
    CHECK(tf.failed ? rc2 == POMELO_ERR_NOMEM : rc2 == rc);
    if (rc2 == 0) {
      pm_free(&tf.a, o2);
    }
    CHECK(tf.live == 0);
  }
}

#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
#if defined(POMELO_HAVE_ZLIB)
  fuzz_inflate(data, size);
#else
  test_alloc ta;
  uint8_t *out = NULL, *z = NULL;
  size_t len = 0, zl = 0;
  test_alloc_init(&ta, 0);
  CHECK(pm_inflate(&ta.a, data, size, CAP, &out, &len) == POMELO_ERR_UNSUPPORTED);
  CHECK(pm_deflate(&ta.a, data, size, 3, &z, &zl) == POMELO_ERR_UNSUPPORTED);
  CHECK(out == NULL && z == NULL && ta.calls == 0);
#endif
  return 0;
}
