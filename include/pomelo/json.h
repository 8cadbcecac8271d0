/* libpomelo: a strict RFC 8259 JSON reader and writer.
 *
 * Pomelo handshakes, kicks and most message bodies are JSON. The reader builds an immutable tree
 * in one arena owned by a document; the writer appends to a growable buffer. Both have limits
 * (depth, size), validate UTF-8, keep object key order, and report errors with a byte offset.
 * Numbers keep their source text, so a parsed document writes back the same number lexemes.
 *
 * Documents and writers are objects used by one thread at a time; distinct objects may be used
 * from distinct threads.
 * SPDX-License-Identifier: MIT
 */
#ifndef POMELO_JSON_H
#define POMELO_JSON_H

#include <pomelo/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/** JSON value types. */
typedef enum pomelo_json_type {
  POMELO_JSON_NULL = 0,
  POMELO_JSON_BOOL = 1,
  POMELO_JSON_NUMBER = 2,
  POMELO_JSON_STRING = 3,
  POMELO_JSON_ARRAY = 4,
  POMELO_JSON_OBJECT = 5
} pomelo_json_type;

/** What the reader does with surrogates, which are not valid in UTF-8 but are what browsers send
 * for characters outside the Basic Multilingual Plane (spec 7.4: CESU-8, each half encoded as a
 * 3-byte sequence ED A0..BF xx). */
typedef enum pomelo_json_utf8_mode {
  /** Default. A CESU-8 surrogate pair in string bytes is rewritten as the 4-byte UTF-8 of the
   * character it encodes; a lone surrogate (raw bytes, or a \uD800-\uDFFF escape without its
   * partner) becomes one U+FFFD. (Node.js gives one U+FFFD for a lone escape, but three for the
   * three raw bytes.) A raw half and an escaped half never pair. Any other invalid UTF-8 is an
   * error. */
  POMELO_JSON_UTF8_REPAIR = 0,
  /** Every surrogate, raw or escaped without its partner, is POMELO_ERR_JSON_UTF8. */
  POMELO_JSON_UTF8_STRICT = 1
} pomelo_json_utf8_mode;

/** Reader options. Fill with pomelo_json_options_default, then change fields. */
typedef struct pomelo_json_options {
  uint32_t max_depth;         /**< nesting of arrays and objects; default 64 (0: scalars only) */
  size_t max_size;            /**< input bytes; default 1 MiB (0: nothing is accepted) */
  pomelo_json_utf8_mode utf8; /**< default POMELO_JSON_UTF8_REPAIR */
} pomelo_json_options;

/** Fills `opts` with the defaults. */
POMELO_API void pomelo_json_options_default(pomelo_json_options *opts);

/* ---------------------------------------------------------------------------------------------
 * Reader
 * ------------------------------------------------------------------------------------------- */

typedef struct pomelo_json_doc pomelo_json_doc;
typedef struct pomelo_json_value pomelo_json_value;

/** Parses exactly one JSON value (RFC 8259; surrounding whitespace allowed, nothing else) from
 * the `len` bytes at `text` (not necessarily NUL-terminated; borrowed for the call only).
 * `alloc` and `opts` may be NULL (libc, defaults). On success returns 0 and stores a new document
 * in `*out`, which the caller deletes with pomelo_json_doc_del. On failure `*out` is NULL and
 * `*err_offset` (if not NULL) receives the byte offset where the input went wrong: the first
 * byte that cannot continue a valid text (`len` when the text ends too early), the backslash of
 * a bad escape, the first byte of an ill-formed UTF-8 sequence, the bracket that is too deep.
 * Errors:
 * - POMELO_ERR_JSON_SYNTAX: not JSON (including empty input and trailing bytes);
 * - POMELO_ERR_JSON_DEPTH: nesting deeper than max_depth;
 * - POMELO_ERR_JSON_TOO_LARGE: input longer than max_size (offset: max_size);
 * - POMELO_ERR_JSON_UTF8: invalid UTF-8, or a surrogate in strict mode;
 * - POMELO_ERR_INVALID_ARG: `out` NULL, `text` NULL with len > 0, or an unknown utf8 mode;
 * - POMELO_ERR_NOMEM.
 * Memory: one arena of a few blocks, sized from the bytes present (about 3 * len for a
 * first block), never from the limits. Nesting uses heap, not C stack. */
POMELO_API int pomelo_json_parse(pomelo_json_doc **out, const pomelo_allocator *alloc,
                                 const char *text, size_t len, const pomelo_json_options *opts,
                                 size_t *err_offset);

/** Frees a document and every value in it. Accepts NULL. */
POMELO_API void pomelo_json_doc_del(pomelo_json_doc *doc);

/** The root value of a document (never NULL for a parsed document). Values live as long as their
 * document. */
POMELO_API const pomelo_json_value *pomelo_json_root(const pomelo_json_doc *doc);

/* Every accessor below accepts NULL for `v` and then answers as for a value of another type, so
 * lookups chain: pomelo_json_get(pomelo_json_get(root, "sys"), "heartbeat"). */

/** The type of `v`. */
POMELO_API pomelo_json_type pomelo_json_typeof(const pomelo_json_value *v);

/** The value of a boolean (0 or 1); 0 for any other type. */
POMELO_API int pomelo_json_bool(const pomelo_json_value *v);

/** The value of a number as a double (the nearest one, rounded as the C library's strtod rounds,
 * whatever the locale; +-HUGE_VAL when out of range; -0 for "-0"); 0 for any other type. */
POMELO_API double pomelo_json_number(const pomelo_json_value *v);

/** Stores the number `v` in `*out` if it is an integer that int64_t holds exactly, judged on the
 * decimal text, not on the double (1e3, 2.0 and 10e-1 are integers; 2.5, 1e-400 and
 * 9223372036854775808 are not; -0 gives 0). Returns 0 or POMELO_ERR_JSON_TYPE (not a number, not
 * integral, or out of range), leaving `*out` untouched then. */
POMELO_API int pomelo_json_int64(const pomelo_json_value *v, int64_t *out);

/** The source text of a number (as it appeared in the input); NULL for other types. `*len`
 * receives its length (if `len` is not NULL). */
POMELO_API const char *pomelo_json_number_text(const pomelo_json_value *v, size_t *len);

/** The decoded UTF-8 bytes of a string (escapes resolved), NUL-terminated; the string may itself
 * contain NUL bytes (from \u0000), so use `*len`. NULL for other types. */
POMELO_API const char *pomelo_json_string(const pomelo_json_value *v, size_t *len);

/** The number of elements of an array or members of an object; 0 for other types. */
POMELO_API size_t pomelo_json_len(const pomelo_json_value *v);

/** The i-th element of an array, or the value of the i-th member of an object (in input
 * order); NULL when out of range or for other types. */
POMELO_API const pomelo_json_value *pomelo_json_at(const pomelo_json_value *v, size_t i);

/** The key of the i-th member of an object (decoded, NUL-terminated, length in `*len`); NULL
 * when out of range or not an object. */
POMELO_API const char *pomelo_json_key_at(const pomelo_json_value *v, size_t i, size_t *len);

/** The value of the member named `key` (NUL-terminated) in object `v`. With duplicate keys the
 * last one wins, as in JavaScript. NULL if absent or `v` is not an object. A linear search. */
POMELO_API const pomelo_json_value *pomelo_json_get(const pomelo_json_value *v, const char *key);

/** As pomelo_json_get, with a key of `key_len` bytes. */
POMELO_API const pomelo_json_value *pomelo_json_get_n(const pomelo_json_value *v, const char *key,
                                                      size_t key_len);

/* ---------------------------------------------------------------------------------------------
 * Writer
 *
 * Appends compact JSON (no spaces, like JSON.stringify) to a growable buffer. Commas and colons
 * are inserted automatically; calls must form one valid value: inside an object, each value is
 * preceded by pomelo_json_write_key. A misuse returns POMELO_ERR_STATE; after any error the writer
 * is failed and every later call returns that error until reset (the failing call writes
 * nothing: the data is what the calls before it wrote). Strings are escaped as
 * JSON.stringify does ("\"", "\\", \b \f \n \r \t, other control bytes as \u00XX) and must be
 * valid UTF-8 (POMELO_ERR_JSON_UTF8 otherwise).
 * ------------------------------------------------------------------------------------------- */

typedef struct pomelo_json_writer pomelo_json_writer;

/** Creates a writer. `alloc` may be NULL. `max_depth` bounds nesting (0 = 64). Returns 0,
 * POMELO_ERR_INVALID_ARG or POMELO_ERR_NOMEM. */
POMELO_API int pomelo_json_writer_new(pomelo_json_writer **out, const pomelo_allocator *alloc,
                                      uint32_t max_depth);

/** Frees a writer and its buffer. Accepts NULL. */
POMELO_API void pomelo_json_writer_del(pomelo_json_writer *w);

/** Empties the buffer and clears a failed state (keeps the allocated memory). */
POMELO_API void pomelo_json_writer_reset(pomelo_json_writer *w);

/** The bytes written so far (NUL-terminated for convenience; not counted in `*len`). Valid until
 * the next call on `w`. */
POMELO_API const char *pomelo_json_writer_data(const pomelo_json_writer *w, size_t *len);

/** Returns 1 when the calls so far form exactly one complete value, else 0. */
POMELO_API int pomelo_json_writer_complete(const pomelo_json_writer *w);

/* Each of these returns 0, POMELO_ERR_STATE (misplaced call, or a value after a complete one),
 * POMELO_ERR_JSON_DEPTH, POMELO_ERR_NOMEM, or the writer's earlier error. */
POMELO_API int pomelo_json_write_null(pomelo_json_writer *w);
POMELO_API int pomelo_json_write_bool(pomelo_json_writer *w, int value);
POMELO_API int pomelo_json_write_int64(pomelo_json_writer *w, int64_t value);
POMELO_API int pomelo_json_write_uint64(pomelo_json_writer *w, uint64_t value);
/** Writes the shortest text that reads back as the same double, formatted as JavaScript's
 * Number.prototype.toString (100, 1.5, 1e+21, 1e-7, 100000000000000000000; -0 gives "0"),
 * whatever the locale; NaN and infinities are POMELO_ERR_JSON_NUMBER. */
POMELO_API int pomelo_json_write_double(pomelo_json_writer *w, double value);
/** Writes a string of `len` bytes (escaped as described above; POMELO_ERR_JSON_UTF8 when it is
 * not valid UTF-8). */
POMELO_API int pomelo_json_write_string(pomelo_json_writer *w, const char *s, size_t len);
/** Writes an object key (inside an object, before each value). */
POMELO_API int pomelo_json_write_key(pomelo_json_writer *w, const char *key, size_t len);
POMELO_API int pomelo_json_write_begin_object(pomelo_json_writer *w);
POMELO_API int pomelo_json_write_end_object(pomelo_json_writer *w);
POMELO_API int pomelo_json_write_begin_array(pomelo_json_writer *w);
POMELO_API int pomelo_json_write_end_array(pomelo_json_writer *w);
/** Writes `len` bytes of JSON text verbatim as one value, after checking that they are exactly
 * one valid JSON value (POMELO_ERR_JSON_SYNTAX / _DEPTH / _UTF8 otherwise), as the reader does in
 * strict UTF-8 mode, without building a tree; its nesting counts towards the writer's depth
 * limit. Whitespace around the value is dropped. Useful to embed a body received from a peer. */
POMELO_API int pomelo_json_write_raw(pomelo_json_writer *w, const char *json, size_t len);
/** Writes a parsed value and everything under it, keys in their input order (duplicates kept),
 * numbers as their source text, strings re-escaped (so a compact text that uses only the escapes
 * JSON.stringify uses writes back byte for byte). Iterative: deep trees cost heap. */
POMELO_API int pomelo_json_write_value(pomelo_json_writer *w, const pomelo_json_value *v);

/* ---------------------------------------------------------------------------------------------
 * UTF-8
 * ------------------------------------------------------------------------------------------- */

/** Returns 1 if the `len` bytes at `s` are valid UTF-8 (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF), else 0 and, if `bad_offset` is not NULL, the offset of the first
 * byte of the first ill-formed sequence in `*bad_offset`. `s` may be NULL when `len` is 0. */
POMELO_API int pomelo_utf8_valid(const uint8_t *s, size_t len, size_t *bad_offset);

#ifdef __cplusplus
}
#endif

#endif /* POMELO_JSON_H */
