/* libpomelo: pomelo-protobuf, the body codec of useProtobuf servers (spec 7.2 to 7.4).
 *
 * This is NOT standard protobuf: schemas are JSON ("required string msg": 1), int32 is zigzag,
 * repeated scalars are one key, an element count, then the elements; only uInt32, int32, sInt32,
 * float, double, string and message types exist. A proto set holds the server protos (pushes and
 * responses, keyed by route) and the client protos (requests and notifies), in the parsed form
 * the handshake carries ({"msg":{"option":"required","type":"string","tag":1},...,
 * "__messages":{},"__tags":{"1":"msg"}}), with the version the real server computes.
 *
 * Everything is pure and reentrant; a proto set is immutable once made and may be shared by
 * threads and by many servers and clients.
 * SPDX-License-Identifier: MIT
 */
#ifndef POMELO_PROTOBUF_H
#define POMELO_PROTOBUF_H

#include <pomelo/common.h>
#include <pomelo/json.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pomelo_protos pomelo_protos;
/** One message type of a proto set (a route's top-level message). Lives as long as its set. */
typedef struct pomelo_pb_type pomelo_pb_type;

/** Which half of a proto set. */
typedef enum pomelo_protos_side {
  POMELO_PROTOS_SERVER = 0, /**< serverProtos: pushes and responses (server to client) */
  POMELO_PROTOS_CLIENT = 1  /**< clientProtos: requests and notifies (client to server) */
} pomelo_protos_side;

/** Where an encode or decode or schema parse went wrong: `code` is the error returned (0 after
 * a success), `path` the field path ("pos.x", "rp[1].y"; for a schema the side and the keys,
 * "server/area.playerHandler.move/message Pos/required bool b"), NUL-terminated, truncated to
 * fit, empty when not about a field; `offset` the byte offset in the input (the protobuf bytes
 * for a decode, the schema JSON of the side named by `path` for a JSON error of a parse), 0 when
 * not meaningful. */
typedef struct pomelo_pb_error {
  int code;
  size_t offset;
  char path[128];
} pomelo_pb_error;

/** Limits. Fill with pomelo_pb_limits_default, then change fields. */
typedef struct pomelo_pb_limits {
  uint32_t max_depth;  /**< nested messages, in schemas and bodies (a route's message is level
                            1); default 32; 1..255 */
  size_t max_schema;   /**< bytes of one proto description JSON; default 1 MiB */
  uint32_t max_fields; /**< fields and message types in one set; default 65536 */
} pomelo_pb_limits;

/** Fills `lim` with the defaults. */
POMELO_API void pomelo_pb_limits_default(pomelo_pb_limits *lim);

/** Parses proto descriptions as the real server's pomelo-protobuf parser does (spec 7.2):
 * `server_json` and `client_json` are the contents of serverProtos.json and clientProtos.json
 * (either may be NULL or empty for {}). Keys with the wrong number of parts, keys whose first
 * word is neither a rule nor "message", and duplicate tags (after the first) are skipped as by
 * the real parser; "message X" keys define nested (inside a message) and global (top level)
 * types. `alloc`, `lim` and `err` may be NULL. Errors (`*out` NULL, `err` filled):
 * POMELO_ERR_JSON_* (not JSON), POMELO_ERR_PB_SCHEMA (not an object of objects; a field type
 * the codec does not have: neither uInt32, int32, sInt32, float, double, string nor a message
 * type that resolves, uInt64/sInt64 included; a tag that is not an integer 1..2^28-1; an empty
 * field name, "__proto__", "__messages" or "__tags"; two fields with one name),
 * POMELO_ERR_PB_DEPTH, POMELO_ERR_LIMIT (max_schema, max_fields), POMELO_ERR_INVALID_ARG
 * (also max_depth 0 or above 255), POMELO_ERR_NOMEM. The version is
 * base64(md5(JSON(parsed client) + JSON(parsed server))), as the real server's. */
POMELO_API int pomelo_protos_new(pomelo_protos **out, const pomelo_allocator *alloc,
                                 const char *server_json, size_t server_len,
                                 const char *client_json, size_t client_len,
                                 const pomelo_pb_limits *lim, pomelo_pb_error *err);

/** Makes a proto set from the parsed form a handshake carries (`protos` is sys.protos:
 * {"server":{...},"client":{...},"version":"..."}; a client uses it). The version is the one
 * given (computed when absent); pomelo_protos_json gives the value back in the real server's
 * form (for a value a real server sent: the same bytes). max_schema does not apply. Errors as
 * pomelo_protos_new (POMELO_ERR_PB_SCHEMA for a malformed parsed form: a field that is not
 * {"option":rule,"type":..,"tag":n}, a missing "__messages" or "__tags", "__tags" not exactly
 * the fields' tags, a duplicate tag, a version that is not a string). */
POMELO_API int pomelo_protos_from_handshake(pomelo_protos **out, const pomelo_allocator *alloc,
                                            const pomelo_json_value *protos,
                                            const pomelo_pb_limits *lim, pomelo_pb_error *err);

/** Frees a proto set. Accepts NULL. Nothing made from it may be used afterwards. */
POMELO_API void pomelo_protos_del(pomelo_protos *p);

/** The set's version (NUL-terminated; for an empty set, the version of {} and {}). */
POMELO_API const char *pomelo_protos_version(const pomelo_protos *p);

/** The handshake's "protos" value, {"server":{...},"client":{...},"version":"..."}, byte for
 * byte as the real server sends it (NUL-terminated; length in `*len` if not NULL). */
POMELO_API const char *pomelo_protos_json(const pomelo_protos *p, size_t *len);

/** The parsed form of one side alone ({"onChat":{...}}; NUL-terminated; length in `*len`). */
POMELO_API const char *pomelo_protos_side_json(const pomelo_protos *p, pomelo_protos_side side,
                                               size_t *len);

/** The number of routes (top-level messages, global "message X" types not counted) in a side. */
POMELO_API size_t pomelo_protos_count(const pomelo_protos *p, pomelo_protos_side side);

/** The message type of `route` (`len` bytes) in one side, or NULL when the route has none (its
 * bodies are JSON). `p` may be NULL (then NULL). A global type is found by its key
 * ("message Item"), as the real encoder would find it. */
POMELO_API const pomelo_pb_type *pomelo_protos_find(const pomelo_protos *p, pomelo_protos_side side,
                                                    const char *route, size_t len);

/** Flags of pomelo_pb_encode. */
#define POMELO_PB_CESU8                                                                            \
  0x1u /**< strings: characters outside the BMP as CESU-8 (two 3-byte                              \
            surrogate sequences), for clients whose decoder reads only                             \
            1- to 3-byte UTF-8 (the browser client) */

/** Encodes the JSON object `value` as message type `t` (spec 7.4), as the real server's encoder
 * does: fields in the object's key order as JavaScript sees it (array-index keys such as "7"
 * first, ascending; a duplicate key: the last value, at the first key's place), keys not in the
 * message dropped, an empty (or null) repeated field omitted; uInt32 from an integral number
 * 0..2^53 (or a string of ASCII digits, as parseInt reads it), int32/sInt32 zigzag from an
 * integral number -2^52..2^52 (or such a string with an optional '-'), float/double
 * little-endian from a number, strings as UTF-8 (POMELO_PB_CESU8: see above). Writes into `buf`
 * of `cap` bytes and stores the length in `*out_len`; (NULL, 0) measures: it returns 0 with the
 * size in `*out_len` (or the encode error), writing nothing. An empty result (no
 * field present) is 0 bytes, which decodes as {}. Time and work are linear in the output,
 * whatever the nesting. Errors (`err` filled, NULL allowed):
 * POMELO_ERR_PB_REQUIRED (a required field absent: the real server then sends an empty body),
 * POMELO_ERR_PB_TYPE (a value of the wrong JSON type, null included; a negative or non-integral
 * integer; a number out of the type's range), POMELO_ERR_PB_DEPTH, POMELO_ERR_INVALID_ARG (t,
 * value or out_len NULL, value not an object, buf NULL with cap > 0),
 * POMELO_ERR_BUFFER_TOO_SMALL (`*out_len` = size needed), POMELO_ERR_NOMEM (only for messages
 * nested with hundreds of fields: a table per message level beyond 2 KiB of stack comes from
 * the set's allocator). */
POMELO_API int pomelo_pb_encode(const pomelo_pb_type *t, const pomelo_json_value *value,
                                unsigned flags, uint8_t *buf, size_t cap, size_t *out_len,
                                pomelo_pb_error *err);

/** Decodes `len` bytes of message type `t` and writes the object as one JSON value to `w`,
 * as the real decoder does: the wire type is ignored (the browser sends varints with wire type
 * 2), values are read by the schema's type, a repeated field becomes an array and a field seen
 * twice keeps its last value (keys in order of first appearance, array-index names first as in
 * a JavaScript object); numbers written as JavaScript prints the double its decoder computes
 * (a uInt32 above 2^53 rounded: 2^64-1 prints 18446744073709552000; NaN and infinities as
 * null, like JSON.stringify); strings: a CESU-8 surrogate pair becomes the 4-byte UTF-8 of its
 * character, a lone surrogate U+FFFD. Empty input gives {}. Memory grows only with the input
 * (an element count is checked against the bytes left), from the set's allocator; `len` must
 * be below 4 GiB. Errors (`err` filled, NULL allowed):
 * POMELO_ERR_PB_TRUNCATED (input ends inside a key or value, or a value crosses the end of
 * the message holding it), POMELO_ERR_PB_TAG (a tag the message does not have: the real server
 * throws), POMELO_ERR_PB_VARINT (over 10 bytes or 64 bits), POMELO_ERR_PB_UTF8 (a string that
 * is not UTF-8 nor CESU-8), POMELO_ERR_PB_DEPTH, the writer's errors (POMELO_ERR_JSON_DEPTH
 * when `w` is shallower than the body), POMELO_ERR_NOMEM, POMELO_ERR_INVALID_ARG (t or w NULL,
 * data NULL with len > 0). Required fields are not checked (the real decoder does not). On
 * error, what `w` holds is unspecified (reset it). */
POMELO_API int pomelo_pb_decode(const pomelo_pb_type *t, const uint8_t *data, size_t len,
                                pomelo_json_writer *w, pomelo_pb_error *err);

#ifdef __cplusplus
}
#endif

#endif /* POMELO_PROTOBUF_H */
