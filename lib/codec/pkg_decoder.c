/* The streaming package decoder (spec 1.2): bytes split anywhere in, packages out.
 * SPDX-License-Identifier: MIT
 */
#include "codec/codec_int.h"

const uint8_t pm_empty[1] = {0};

/* Buffers up to this size are kept between packages; larger ones are freed once their package
 * has been handed out, so an idle connection holds no large buffer. */
#define PM_PKG_KEEP_BUF 1024u

void pm_pkg_decoder_init(pomelo_pkg_decoder *dec, const pomelo_allocator *alloc, uint32_t limit,
                         unsigned flags) {
  memset(dec, 0, sizeof(*dec));
  dec->alloc = alloc;
  dec->limit = limit;
  dec->flags = (uint8_t)flags;
}

void pm_pkg_decoder_fini(pomelo_pkg_decoder *dec) {
  pm_free(dec->alloc, dec->buf);
  dec->buf = NULL;
  dec->cap = 0;
  dec->have = 0;
}

/* The public object: the decoder plus its own allocator copy. */
typedef struct pm_pkg_decoder_box {
  pomelo_pkg_decoder dec; /* first: the public pointer is the box */
  pomelo_allocator alloc;
} pm_pkg_decoder_box;

int pomelo_pkg_decoder_new(pomelo_pkg_decoder **out, const pomelo_allocator *alloc,
                           size_t body_limit, unsigned flags) {
  pomelo_allocator a;
  pm_pkg_decoder_box *box;
  if (!out || body_limit > POMELO_PKG_BODY_MAX || (flags & ~POMELO_PKG_DECODER_ALLOW_UNKNOWN)) {
    return POMELO_ERR_INVALID_ARG;
  }
  pm_alloc_init(&a, alloc);
  box = pm_malloc(&a, sizeof(*box));
  if (!box) {
    return POMELO_ERR_NOMEM;
  }
  box->alloc = a;
  pm_pkg_decoder_init(&box->dec, &box->alloc,
                      body_limit ? (uint32_t)body_limit : POMELO_PKG_DEFAULT_LIMIT, flags);
  *out = &box->dec;
  return 0;
}

void pomelo_pkg_decoder_del(pomelo_pkg_decoder *dec) {
  pm_pkg_decoder_box *box = (pm_pkg_decoder_box *)dec;
  pomelo_allocator a;
  if (!dec) {
    return;
  }
  a = box->alloc;
  pm_pkg_decoder_fini(dec);
  pm_free(&a, box);
}

void pomelo_pkg_decoder_reset(pomelo_pkg_decoder *dec) {
  if (dec->cap > PM_PKG_KEEP_BUF) {
    pm_free(dec->alloc, dec->buf);
    dec->buf = NULL;
    dec->cap = 0;
  }
  dec->have = 0;
  dec->error = 0;
}

size_t pomelo_pkg_decoder_pending(const pomelo_pkg_decoder *dec) {
  return dec->have;
}

/* Checks a complete header; returns 0 or the error that fails the decoder. */
static int check_head(const pomelo_pkg_decoder *dec, const uint8_t *h, uint32_t *body_len) {
  if (!pm_pkg_type_valid(h[0]) && !(dec->flags & POMELO_PKG_DECODER_ALLOW_UNKNOWN)) {
    return POMELO_ERR_PKG_TYPE;
  }
  *body_len = pm_be24(h + 1);
  if (*body_len > dec->limit) {
    return POMELO_ERR_PKG_TOO_LARGE;
  }
  return 0;
}

/* Makes room for `need` body bytes; the capacity at most doubles per call and never exceeds
 * the declared body length, so memory follows the bytes that actually arrived. */
static int reserve(pomelo_pkg_decoder *dec, uint32_t need, uint32_t body_len) {
  uint32_t cap;
  uint8_t *p;
  if (need <= dec->cap) {
    return 0;
  }
  cap = dec->cap < 128 ? 128 : dec->cap * 2;
  if (cap < need) {
    cap = need;
  }
  if (cap > body_len) {
    cap = body_len;
  }
  p = pm_realloc(dec->alloc, dec->buf, cap);
  if (!p) {
    return POMELO_ERR_NOMEM;
  }
  dec->buf = p;
  dec->cap = cap;
  return 0;
}

static int fail(pomelo_pkg_decoder *dec, int rc) {
  dec->error = (int16_t)rc;
  return rc;
}

int pomelo_pkg_decoder_feed(pomelo_pkg_decoder *dec, const uint8_t *in, size_t in_len,
                            size_t *consumed, pomelo_pkg *pkg) {
  size_t pos = 0;
  uint32_t body_len;
  int rc;

  *consumed = 0;
  if (dec->error) {
    return dec->error;
  }
  if (dec->have == 0 && dec->cap > PM_PKG_KEEP_BUF) {
    pm_free(dec->alloc, dec->buf); /* the last package was large: do not keep its buffer */
    dec->buf = NULL;
    dec->cap = 0;
  }

  /* Fast path: a whole package at the start of the input is returned in place. */
  if (dec->have == 0 && in_len >= POMELO_PKG_HEAD_LEN) {
    rc = check_head(dec, in, &body_len);
    if (rc) {
      *consumed = POMELO_PKG_HEAD_LEN;
      return fail(dec, rc);
    }
    if (in_len - POMELO_PKG_HEAD_LEN >= body_len) {
      pkg->type = in[0];
      pkg->body = body_len ? in + POMELO_PKG_HEAD_LEN : pm_empty;
      pkg->body_len = body_len;
      *consumed = POMELO_PKG_HEAD_LEN + body_len;
      return 1;
    }
  }

  /* Header bytes. */
  while (dec->have < POMELO_PKG_HEAD_LEN && pos < in_len) {
    dec->hdr[dec->have++] = in[pos++];
  }
  if (dec->have < POMELO_PKG_HEAD_LEN) {
    *consumed = pos;
    return 0;
  }
  rc = check_head(dec, dec->hdr, &body_len);
  if (rc) {
    *consumed = pos;
    return fail(dec, rc);
  }

  /* Body bytes, into the reassembly buffer. */
  {
    uint32_t got = dec->have - POMELO_PKG_HEAD_LEN;
    size_t avail = in_len - pos;
    uint32_t take = (uint32_t)PM_MIN((size_t)(body_len - got), avail);
    if (take) {
      rc = reserve(dec, got + take, body_len);
      if (rc) {
        *consumed = pos;
        return fail(dec, rc);
      }
      memcpy(dec->buf + got, in + pos, take);
      pos += take;
      got += take;
      dec->have += take;
    }
    *consumed = pos;
    if (got < body_len) {
      return 0;
    }
  }
  pkg->type = dec->hdr[0];
  pkg->body = body_len ? dec->buf : pm_empty;
  pkg->body_len = body_len;
  dec->have = 0;
  return 1;
}
