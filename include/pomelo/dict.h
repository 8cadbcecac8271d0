/* libpomelo: the route dictionary (spec 3), which lets routes travel as 2-byte codes.
 *
 * Built as the real server's dictionary component builds it: the handler routes sorted as
 * JavaScript sorts strings (UTF-16 code units; byte order for ASCII) and numbered from 1, then the
 * user's extra routes (push routes such as "onChat") in order; its version is
 * base64(md5(JSON.stringify(dict))), so a client that cached the real server's dictionary sees the
 * same version here. A dictionary is immutable once made and may be shared by threads and by many
 * servers and clients.
 * SPDX-License-Identifier: MIT
 */
#ifndef POMELO_DICT_H
#define POMELO_DICT_H

#include <pomelo/common.h>
#include <pomelo/json.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pomelo_dict pomelo_dict;

/** The most codes a dictionary holds: codes are 2 bytes and 0 never resolves. */
#define POMELO_DICT_MAX 65535u

/** Builds a dictionary. `routes` are the `n` handler routes of every server type of the
 * deployment (NUL-terminated UTF-8, any order; duplicates count once): sorted as JavaScript's
 * default sort does (UTF-16 code-unit order, which is byte order for ASCII) and numbered 1..N.
 * `extra` are `m` more routes numbered N+1.. in order; one already present gets the new code
 * for route -> code while both codes keep resolving (code -> route), and keeps its place in
 * the dictionary JSON, as the real server does. Either list may be empty (NULL with 0).
 * `alloc` may be NULL. Errors: POMELO_ERR_INVALID_ARG (out NULL, a NULL route or one that is not
 * UTF-8, a list NULL with a count), POMELO_ERR_ROUTE_TOO_LONG (a route over 255 bytes),
 * POMELO_ERR_LIMIT (more than POMELO_DICT_MAX codes), POMELO_ERR_NOMEM. */
POMELO_API int pomelo_dict_new(pomelo_dict **out, const pomelo_allocator *alloc,
                               const char *const *routes, size_t n, const char *const *extra,
                               size_t m);

/** Makes a dictionary from a handshake response's `sys` object (a client uses it): from
 * "routeToCode" and "codeToRoute" (what libpomelo2 reads), or from "dict" when those are
 * absent (what the JS client reads; pomelo 1.0.x's "version" string inside it is taken as the
 * version, not a route); the version is sys.dictVersion (empty when absent). Strict: errors are
 * POMELO_ERR_NOT_FOUND (none of them present, or only one of routeToCode and codeToRoute),
 * POMELO_ERR_JSON_TYPE (a value of the wrong type, a code that is not an integer 1..65535, a
 * route or code given twice, the two maps disagreeing), POMELO_ERR_ROUTE_TOO_LONG,
 * POMELO_ERR_LIMIT, POMELO_ERR_INVALID_ARG, POMELO_ERR_NOMEM. */
POMELO_API int pomelo_dict_from_handshake(pomelo_dict **out, const pomelo_allocator *alloc,
                                          const pomelo_json_value *sys);

/** Frees a dictionary. Accepts NULL. */
POMELO_API void pomelo_dict_del(pomelo_dict *d);

/** The version (NUL-terminated). */
POMELO_API const char *pomelo_dict_version(const pomelo_dict *d);

/** The dictionary as the handshake's "dict" and "routeToCode" carry it, {"route":code,...} in
 * the real server's order (NUL-terminated; length in `*len` if not NULL). */
POMELO_API const char *pomelo_dict_json(const pomelo_dict *d, size_t *len);

/** The handshake's "codeToRoute", {"1":"route",...} in ascending code order. */
POMELO_API const char *pomelo_dict_code_to_route_json(const pomelo_dict *d, size_t *len);

/** The number of codes. */
POMELO_API size_t pomelo_dict_count(const pomelo_dict *d);

/** The code of `route` (`len` bytes), or 0 when it has none. `d` may be NULL (then 0). O(1). */
POMELO_API uint16_t pomelo_dict_code(const pomelo_dict *d, const char *route, size_t len);

/** The route of `code` (NUL-terminated; length in `*len` if not NULL), or NULL when the code is
 * unknown. `d` may be NULL (then NULL). O(1). */
POMELO_API const char *pomelo_dict_route(const pomelo_dict *d, uint16_t code, size_t *len);

#ifdef __cplusplus
}
#endif

#endif /* POMELO_DICT_H */
