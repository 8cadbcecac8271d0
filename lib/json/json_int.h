/* libpomelo internal: JSON reader, writer and UTF-8 helpers (not installed).
 * SPDX-License-Identifier: MIT
 */
#ifndef POMELO_LIB_JSON_INT_H
#define POMELO_LIB_JSON_INT_H

#include <pomelo/json.h>

#include "core/core.h"

/* A value of a parsed tree: 24 bytes on 64-bit targets. `tag` holds the type in bits 0..2, the
 * boolean in bit 3, and above bit 4 the length: bytes of a string or of a number's lexeme,
 * elements of an array, members of an object. An array's kids are its elements; an object's
 * kids are 2n values, key (a string) then value, in input order. */
struct pomelo_json_value {
  uint64_t tag;
  union {
    const char *s;                 /* string bytes or number lexeme, NUL-terminated */
    const pomelo_json_value *kids; /* array elements or object key/value pairs */
  } u;
  double num; /* numbers: the nearest double */
};

#define PM_JSON_TAG_TYPE 0x7u
#define PM_JSON_TAG_TRUE 0x8u
#define PM_JSON_TAG_SHIFT 4

static inline pomelo_json_type pm_json_type(const pomelo_json_value *v) {
  return (pomelo_json_type)(v->tag & PM_JSON_TAG_TYPE);
}
static inline size_t pm_json_len(const pomelo_json_value *v) {
  return (size_t)(v->tag >> PM_JSON_TAG_SHIFT);
}
static inline uint64_t pm_json_tag(pomelo_json_type t, size_t len) {
  return (uint64_t)t | ((uint64_t)len << PM_JSON_TAG_SHIFT);
}

/* Whitespace per RFC 8259: space, tab, LF, CR. */
static inline int pm_json_is_ws(uint8_t c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* --- UTF-8 (utf8.c) ------------------------------------------------------------------------ */

/* Sequence classes returned by pm_utf8_seq. */
#define PM_UTF8_BAD 0        /* ill-formed (overlong, truncated, out of range, stray byte) */
#define PM_UTF8_SURROGATE -1 /* a 3-byte encoding of U+D800..U+DFFF (CESU-8 half) */

/* Classifies the sequence at `p` (n > 0 bytes available, p[0] >= 0x80): returns its length
 * (2..4) for a well-formed RFC 3629 sequence, PM_UTF8_SURROGATE for ED A0..BF 80..BF (with the
 * code unit in *cp), or PM_UTF8_BAD. *cp receives the code point of a well-formed sequence. */
int pm_utf8_seq(const uint8_t *p, size_t n, uint32_t *cp);

/* Encodes code point `cp` (not a surrogate, <= 0x10FFFF) at `out`; returns the byte count. */
size_t pm_utf8_put(uint8_t *out, uint32_t cp);

/* --- Reader internals (reader.c) ----------------------------------------------------------- */

/* Checks that the `len` bytes at `text` are exactly one JSON value (surrounding whitespace
 * allowed) without building a tree; strings must be strict UTF-8 (no surrogates, raw or lone
 * escaped). The level stack beyond a small inline one is allocated through `alloc`. Returns 0,
 * POMELO_ERR_JSON_SYNTAX, _DEPTH, _UTF8 or POMELO_ERR_NOMEM; *err_offset (if not NULL) receives
 * the error's byte offset. */
int pm_json_validate(const pomelo_allocator *alloc, const char *text, size_t len,
                     uint32_t max_depth, size_t *err_offset);

/* --- Numbers (number.c) -------------------------------------------------------------------- */

/* Converts a valid JSON number lexeme (`len` bytes at `s`, not necessarily NUL-terminated) to
 * the nearest double without depending on the locale: the lexeme is rewritten without its
 * decimal point ("12.5e3" -> "125e2", at most 780 significant digits and a sticky digit) into
 * `scratch` (PM_JSON_NUM_SCRATCH bytes) and read by strtod. errno is preserved. */
#define PM_JSON_NUM_SCRATCH 832
double pm_json_lexeme_to_double(const char *s, size_t len, char *scratch);

/* pomelo_json_int64 on a valid lexeme: 0 and *out, or POMELO_ERR_JSON_TYPE. */
int pm_json_lexeme_to_int64(const char *s, size_t len, int64_t *out);

/* Formats a finite double as JavaScript's Number.prototype.toString does (shortest digits that
 * read back as the same double; -0 gives "0"). `out` holds at least PM_JSON_DOUBLE_MAX bytes;
 * returns the length written (no NUL), or 0 for NaN and infinities. */
#define PM_JSON_DOUBLE_MAX 40
size_t pm_json_format_double(double value, char *out);

/* Formats integers in decimal (no locale); `out` holds at least 21 bytes. Returns the length. */
size_t pm_json_format_u64(uint64_t v, char *out);
size_t pm_json_format_i64(int64_t v, char *out);

#endif /* POMELO_LIB_JSON_INT_H */
