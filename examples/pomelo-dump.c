/* pomelo-dump: print a captured Pomelo byte stream as one JSON object per package, and back.
 *
 * Uses only the public API of libpomelo: the stream decoder for raw streams, the message codec
 * for DATA bodies, the JSON writer for the output and the JSON reader for --encode input.
 * See docs/pomelo-dump.md or `pomelo-dump --help`.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <pomelo/pomelo.h>

#define PROG "pomelo-dump"
#define CHUNK (64u * 1024u)

enum { EXIT_OK = 0, EXIT_BAD_INPUT = 1, EXIT_USAGE = 2 };

enum { IN_RAW, IN_HEX, IN_TRACE };

static const char help_text[] =
    "NAME\n"
    "    pomelo-dump - print a captured Pomelo byte stream as JSON lines, and back\n"
    "\n"
    "SYNOPSIS\n"
    "    pomelo-dump [--hex | --trace] [--limit N] [-o FILE] [FILE]\n"
    "    pomelo-dump --encode [--hex] [--limit N] [-o FILE] [FILE]\n"
    "\n"
    "DESCRIPTION\n"
    "    Reads FILE (or standard input when FILE is absent or \"-\") and prints one JSON\n"
    "    object per Pomelo package on its own line, fields in this order:\n"
    "\n"
    "      offset      byte offset of the package in the stream (with --hex and --trace:\n"
    "                  in the concatenation of all the packages read so far)\n"
    "      package     handshake, handshake_ack, heartbeat, data or kick\n"
    "      message     DATA only: request, notify, response or push\n"
    "      id          requests and responses: the message id (1 to 2147483647)\n"
    "      route       requests, notifies and pushes with a string route (UTF-8 text);\n"
    "      route_hex   ... the same when the route bytes are not valid UTF-8;\n"
    "      route_code  ... or the 2-byte code of a compressed route (0 to 65535)\n"
    "      gzip        true when the message's gzip flag is set (absent otherwise)\n"
    "      body        the body as text when it is valid UTF-8 (\"\" when empty);\n"
    "      body_hex    ... otherwise the body in lower-case hex\n"
    "\n"
    "    For DATA packages \"body\" is the message body, after the message header.\n"
    "\n"
    "    By default the input is a raw byte stream as sent over TCP (or the payloads of\n"
    "    consecutive WebSocket frames): packages back to back, split anywhere.\n"
    "\n"
    "    With --encode the input is such JSON lines and the output is the bytes of the\n"
    "    packages they describe, so `pomelo-dump x.bin | pomelo-dump --encode` gives x.bin\n"
    "    back. \"offset\" may be omitted (its value is ignored); \"body\"/\"body_hex\" may be\n"
    "    omitted for an empty body and \"gzip\" when false; every other field is required\n"
    "    exactly when the package and message types have it. Unknown keys are an error.\n"
    "\n"
    "OPTIONS\n"
    "    --hex         The input (or, with --encode, the output) is one package per line\n"
    "                  in hex. Spaces and tabs may separate bytes; blank lines and lines\n"
    "                  starting with # are skipped. A line may also hold several packages\n"
    "                  back to back (a WebSocket frame of a batching server), never part\n"
    "                  of one.\n"
    "    --trace       Like --hex, for recorded trace files: the package is the last\n"
    "                  field of each line; lines whose last field is not hex (at least\n"
    "                  one 4-byte header) are skipped.\n"
    "    --encode      Read JSON lines, write package bytes (raw, or hex lines with --hex).\n"
    "    --limit N     The largest package body accepted, in bytes (1 to 16777215;\n"
    "                  default 16777215, the most the protocol can express).\n"
    "    -o, --output FILE\n"
    "                  Write to FILE instead of standard output.\n"
    "    -h, --help    Print this help and exit.\n"
    "    -V, --version Print the version and exit.\n"
    "\n"
    "EXIT STATUS\n"
    "    0  every package was read and written.\n"
    "    1  bad input: an unknown package or message type, a truncated package, a body over\n"
    "       the limit, bad hex, a bad JSON line, or a file that cannot be read or written.\n"
    "       The packages before the error are printed, then one line on standard error:\n"
    "           pomelo-dump: offset N: [line L[, column C]: ]REASON\n"
    "       where N is the byte offset in the stream of the package at fault.\n"
    "    2  usage error.\n"
    "\n"
    "EXAMPLES\n"
    "    pomelo-dump capture.bin\n"
    "    printf '05 00 00 11 7b22726561736f6e223a226b69636b227d\\n' | pomelo-dump --hex\n"
    "    pomelo-dump capture.bin | grep '\"route\"' | pomelo-dump --encode --hex\n";

typedef struct options {
  int input; /* IN_* */
  int encode;
  size_t limit;
  const char *in_path;  /* NULL or "-": stdin */
  const char *out_path; /* NULL: stdout */
} options;

/* The state of one run. */
typedef struct tool {
  options opt;
  FILE *in, *out;
  const char *out_name;
  pomelo_pkg_decoder *dec;
  pomelo_json_writer *w;
  uint64_t pkg_start; /* stream offset of the package being decoded / encoded next */
  uint8_t head[4];    /* the first bytes of the package at pkg_start */
  long line;          /* current input line (line modes), 0 otherwise */
  char *hexbuf;       /* output hex line (--encode --hex) */
  size_t hexcap;
} tool;

/* ---------------------------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------------------------- */

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static int
usage_error(const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, PROG ": ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\nTry '" PROG " --help' for more information.\n");
  return EXIT_USAGE;
}

/* Reports bad input at the current package (and line, column when known). Returns 1. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int
input_error(tool *t, long column, const char *fmt, ...) {
  va_list ap;
  if (t->out) {
    fflush(t->out);
  }
  fprintf(stderr, PROG ": offset %llu: ", (unsigned long long)t->pkg_start);
  if (t->line > 0 && column > 0) {
    fprintf(stderr, "line %ld, column %ld: ", t->line, column);
  } else if (t->line > 0) {
    fprintf(stderr, "line %ld: ", t->line);
  }
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  return EXIT_BAD_INPUT;
}

static int io_error(tool *t, const char *what, const char *name) {
  if (t->out) {
    fflush(t->out);
  }
  fprintf(stderr, PROG ": %s %s: %s\n", what, name, strerror(errno));
  return EXIT_BAD_INPUT;
}

static int write_bytes(tool *t, const void *p, size_t n) {
  if (n && fwrite(p, 1, n, t->out) != n) {
    return io_error(t, "cannot write", t->out_name);
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Dump: packages to JSON lines
 * ------------------------------------------------------------------------------------------- */

static const char hexdig[] = "0123456789abcdef";

/* Makes sure t->hexbuf holds at least `n` bytes. */
static int hexbuf_reserve(tool *t, size_t n) {
  char *p;
  if (n <= t->hexcap) {
    return 0;
  }
  p = realloc(t->hexbuf, n);
  if (!p) {
    return -1;
  }
  t->hexbuf = p;
  t->hexcap = n;
  return 0;
}

/* Writes `len` bytes as a JSON string of lower-case hex. */
static int write_hex_string(tool *t, const uint8_t *p, size_t len) {
  size_t i;
  if (hexbuf_reserve(t, 2 * len + 1)) {
    return POMELO_ERR_NOMEM;
  }
  for (i = 0; i < len; i++) {
    t->hexbuf[2 * i] = hexdig[p[i] >> 4];
    t->hexbuf[2 * i + 1] = hexdig[p[i] & 15];
  }
  return pomelo_json_write_string(t->w, t->hexbuf, 2 * len);
}

/* Writes "<key>":"text" when the bytes are valid UTF-8, else "<key>_hex":"hex". */
static int write_text_or_hex(tool *t, const char *key, const uint8_t *p, size_t len) {
  char hex_key[32];
  int rc;
  if (pomelo_utf8_valid(p, len, NULL)) {
    rc = pomelo_json_write_key(t->w, key, strlen(key));
    return rc ? rc : pomelo_json_write_string(t->w, (const char *)p, len);
  }
  snprintf(hex_key, sizeof(hex_key), "%s_hex", key);
  rc = pomelo_json_write_key(t->w, hex_key, strlen(hex_key));
  return rc ? rc : write_hex_string(t, p, len);
}

static int write_key(pomelo_json_writer *w, const char *key) {
  return pomelo_json_write_key(w, key, strlen(key));
}

/* Builds the JSON line of one package into the writer. Returns 0, a library error (negative), or
 * EXIT_BAD_INPUT after reporting a bad message. */
static int build_line(tool *t, const pomelo_pkg *pkg) {
  pomelo_json_writer *w = t->w;
  const uint8_t *body = pkg->body;
  size_t body_len = pkg->body_len;
  int rc;

  pomelo_json_writer_reset(w);
  if ((rc = pomelo_json_write_begin_object(w)) || (rc = write_key(w, "offset")) ||
      (rc = pomelo_json_write_uint64(w, t->pkg_start)) || (rc = write_key(w, "package"))) {
    return rc;
  }
  rc = pomelo_json_write_string(w, pomelo_pkg_type_name(pkg->type),
                                strlen(pomelo_pkg_type_name(pkg->type)));
  if (rc) {
    return rc;
  }
  if (pkg->type == POMELO_PKG_DATA) {
    pomelo_msg m;
    const char *name;
    rc = pomelo_msg_decode(pkg->body, pkg->body_len, &m);
    if (rc) {
      return input_error(t, 0, "bad message in a data package: %s", pomelo_strerror(rc));
    }
    name = pomelo_msg_type_name(m.type);
    if ((rc = write_key(w, "message")) || (rc = pomelo_json_write_string(w, name, strlen(name)))) {
      return rc;
    }
    if (m.type == POMELO_MSG_REQUEST || m.type == POMELO_MSG_RESPONSE) {
      if ((rc = write_key(w, "id")) || (rc = pomelo_json_write_uint64(w, m.id))) {
        return rc;
      }
    }
    if (m.type != POMELO_MSG_RESPONSE) {
      if (m.route_compressed) {
        rc = write_key(w, "route_code");
        rc = rc ? rc : pomelo_json_write_uint64(w, m.route_code);
      } else {
        rc = write_text_or_hex(t, "route", (const uint8_t *)m.route, m.route_len);
      }
      if (rc) {
        return rc;
      }
    }
    if (m.gzip) {
      if ((rc = write_key(w, "gzip")) || (rc = pomelo_json_write_bool(w, 1))) {
        return rc;
      }
    }
    body = m.body;
    body_len = m.body_len;
  }
  if ((rc = write_text_or_hex(t, "body", body, body_len))) {
    return rc;
  }
  return pomelo_json_write_end_object(w);
}

static int print_package(tool *t, const pomelo_pkg *pkg) {
  const char *text;
  size_t len;
  int rc = build_line(t, pkg);
  if (rc == EXIT_BAD_INPUT) {
    return rc; /* already reported */
  }
  if (rc) {
    return input_error(t, 0, "cannot print the package: %s", pomelo_strerror(rc));
  }
  text = pomelo_json_writer_data(t->w, &len);
  if ((rc = write_bytes(t, text, len)) || (rc = write_bytes(t, "\n", 1))) {
    return rc;
  }
  return 0;
}

/* Remembers the header bytes of the current package: `p` holds `n` bytes at stream offset
 * `at` (never before pkg_start). */
static void track_head(tool *t, const uint8_t *p, size_t n, uint64_t at) {
  size_t i;
  for (i = 0; i < n && at + i < t->pkg_start + 4; i++) {
    t->head[at + i - t->pkg_start] = p[i];
  }
}

static unsigned long head_body_len(const tool *t) {
  return (unsigned long)t->head[1] << 16 | (unsigned long)t->head[2] << 8 | t->head[3];
}

/* Feeds `n` bytes at stream offset *at through the decoder, printing every complete package. */
static int feed(tool *t, const uint8_t *p, size_t n, uint64_t *at) {
  while (n > 0) {
    size_t used = 0;
    pomelo_pkg pkg;
    int rc = pomelo_pkg_decoder_feed(t->dec, p, n, &used, &pkg);
    if (used > n) {
      used = n;
    }
    track_head(t, p, used, *at);
    if (rc == POMELO_ERR_PKG_TYPE) {
      return input_error(t, 0, "unknown package type 0x%02x (the types are 1 to 5)", t->head[0]);
    }
    if (rc == POMELO_ERR_PKG_TOO_LARGE) {
      return input_error(t, 0,
                         "%s package declares a body of %lu bytes, over the limit of %zu "
                         "(see --limit)",
                         pomelo_pkg_type_name(t->head[0]), head_body_len(t), t->opt.limit);
    }
    if (rc < 0) {
      return input_error(t, 0, "%s", pomelo_strerror(rc));
    }
    p += used;
    n -= used;
    *at += used;
    if (rc == 1) {
      rc = print_package(t, &pkg);
      if (rc) {
        return rc;
      }
      t->pkg_start = *at;
    } else if (used == 0) {
      return input_error(t, 0, "internal error: the decoder made no progress");
    }
  }
  return 0;
}

/* Reports a package the input ended inside of. */
static int truncated(tool *t, uint64_t at) {
  uint64_t have = at - t->pkg_start;
  if (have < 4) {
    return input_error(t, 0,
                       "truncated package: the input ends inside the 4-byte header (%llu of "
                       "4 bytes)",
                       (unsigned long long)have);
  }
  return input_error(t, 0, "truncated %s package: the input ends after %llu of its %lu bytes",
                     pomelo_pkg_type_name(t->head[0]), (unsigned long long)have,
                     4 + head_body_len(t));
}

static int dump_raw(tool *t) {
  uint8_t *buf = malloc(CHUNK);
  uint64_t at = 0;
  int rc = 0;
  if (!buf) {
    return input_error(t, 0, "out of memory");
  }
  for (;;) {
    size_t n = fread(buf, 1, CHUNK, t->in);
    if (n == 0) {
      if (ferror(t->in)) {
        rc = io_error(t, "cannot read", t->opt.in_path ? t->opt.in_path : "standard input");
      }
      break;
    }
    rc = feed(t, buf, n, &at);
    if (rc) {
      break;
    }
  }
  if (!rc && pomelo_pkg_decoder_pending(t->dec)) {
    rc = truncated(t, at);
  }
  free(buf);
  return rc;
}

/* Reads one line into *line (getline buffer), strips the line end. Returns its length, or -1 at
 * the end of the input (-2 on a read error, reported). */
static long read_line(tool *t, char **line, size_t *cap) {
  ssize_t n;
  errno = 0;
  n = getline(line, cap, t->in);
  if (n < 0) {
    if (ferror(t->in)) {
      io_error(t, "cannot read", t->opt.in_path ? t->opt.in_path : "standard input");
      return -2;
    }
    return -1;
  }
  t->line++;
  while (n > 0 && ((*line)[n - 1] == '\n' || (*line)[n - 1] == '\r')) {
    (*line)[--n] = 0;
  }
  return (long)n;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

static int is_blank(int c) {
  return c == ' ' || c == '\t';
}

/* Decodes the hex of s[0..len) into out (at least len/2 bytes), allowing blanks between
 * bytes. Returns the byte count, or -1 - (column of the fault, 0-based) with *why set. */
static long hex_decode(const char *s, size_t len, uint8_t *out, const char **why) {
  size_t i = 0, n = 0;
  while (i < len) {
    int hi, lo;
    if (is_blank((unsigned char)s[i])) {
      i++;
      continue;
    }
    hi = hexval((unsigned char)s[i]);
    if (hi < 0) {
      *why = "not a hex digit";
      return -1 - (long)i;
    }
    if (i + 1 >= len || is_blank((unsigned char)s[i + 1])) {
      *why = "odd number of hex digits (a byte is two digits)";
      return -1 - (long)i;
    }
    lo = hexval((unsigned char)s[i + 1]);
    if (lo < 0) {
      *why = "not a hex digit";
      return -1 - (long)(i + 1);
    }
    out[n++] = (uint8_t)(hi << 4 | lo);
    i += 2;
  }
  return (long)n;
}

/* The last blank-separated field of a trace line, if it is hex of at least one header. */
static const char *trace_field(const char *s, size_t len, size_t *field_len) {
  size_t end = len, start, i;
  while (end > 0 && is_blank((unsigned char)s[end - 1])) {
    end--;
  }
  start = end;
  while (start > 0 && !is_blank((unsigned char)s[start - 1])) {
    start--;
  }
  if (end - start < 8 || (end - start) % 2) {
    return NULL;
  }
  for (i = start; i < end; i++) {
    if (hexval((unsigned char)s[i]) < 0) {
      return NULL;
    }
  }
  *field_len = end - start;
  return s + start;
}

static int dump_lines(tool *t) {
  char *line = NULL;
  size_t cap = 0;
  uint8_t *bytes = NULL;
  size_t bytes_cap = 0;
  uint64_t at = 0;
  int rc = 0;
  long n;

  while ((n = read_line(t, &line, &cap)) >= 0) {
    const char *s = line;
    size_t len = (size_t)n, col0 = 0;
    const char *why = NULL;
    long got;
    while (len > 0 && is_blank((unsigned char)s[0])) {
      s++;
      len--;
      col0++;
    }
    if (len == 0 || s[0] == '#') {
      continue;
    }
    if (t->opt.input == IN_TRACE) {
      size_t flen = 0;
      const char *f = trace_field(s, len, &flen);
      if (!f) {
        continue;
      }
      col0 += (size_t)(f - s);
      s = f;
      len = flen;
    }
    if (len / 2 + 1 > bytes_cap) {
      uint8_t *p = realloc(bytes, len / 2 + 1);
      if (!p) {
        rc = input_error(t, 0, "out of memory");
        break;
      }
      bytes = p;
      bytes_cap = len / 2 + 1;
    }
    got = hex_decode(s, len, bytes, &why);
    if (got < 0) {
      rc = input_error(t, (long)col0 + (-got - 1) + 1, "bad hex: %s", why);
      break;
    }
    rc = feed(t, bytes, (size_t)got, &at);
    if (rc) {
      break;
    }
    if (pomelo_pkg_decoder_pending(t->dec)) {
      rc = truncated(t, at); /* a package never continues on the next line */
      break;
    }
  }
  if (n == -2) {
    rc = EXIT_BAD_INPUT;
  }
  free(line);
  free(bytes);
  return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Encode: JSON lines to packages
 * ------------------------------------------------------------------------------------------- */

enum {
  K_OFFSET,
  K_PACKAGE,
  K_MESSAGE,
  K_ID,
  K_ROUTE,
  K_ROUTE_HEX,
  K_ROUTE_CODE,
  K_GZIP,
  K_BODY,
  K_BODY_HEX,
  K_COUNT
};

static const char *const key_names[K_COUNT] = {
    "offset",    "package",    "message", "id",   "route",
    "route_hex", "route_code", "gzip",    "body", "body_hex",
};

static int key_index(const char *k, size_t len) {
  int i;
  for (i = 0; i < K_COUNT; i++) {
    if (strlen(key_names[i]) == len && memcmp(key_names[i], k, len) == 0) {
      return i;
    }
  }
  return -1;
}

/* A string field's bytes, or an error. */
static int get_string(tool *t, const pomelo_json_value *v, const char *key, const char **s,
                      size_t *len) {
  *s = "";
  *len = 0;
  if (pomelo_json_typeof(v) != POMELO_JSON_STRING) {
    return input_error(t, 0, "\"%s\" must be a string", key);
  }
  *s = pomelo_json_string(v, len);
  return 0;
}

/* Decodes a hex string field (no blanks) into a new buffer. */
static int get_hex(tool *t, const pomelo_json_value *v, const char *key, uint8_t **out,
                   size_t *out_len) {
  const char *s, *why = NULL;
  size_t len, i;
  long got;
  int rc = get_string(t, v, key, &s, &len);
  if (rc) {
    return rc;
  }
  for (i = 0; i < len; i++) {
    if (is_blank((unsigned char)s[i])) {
      return input_error(t, 0, "\"%s\": blanks are not allowed in hex", key);
    }
  }
  *out = malloc(len / 2 + 1);
  if (!*out) {
    return input_error(t, 0, "out of memory");
  }
  got = hex_decode(s, len, *out, &why);
  if (got < 0) {
    free(*out);
    *out = NULL;
    return input_error(t, 0, "\"%s\": bad hex at character %ld: %s", key, -got, why);
  }
  *out_len = (size_t)got;
  return 0;
}

static int get_uint(tool *t, const pomelo_json_value *v, const char *key, int64_t max, int64_t min,
                    int64_t *out) {
  if (pomelo_json_typeof(v) != POMELO_JSON_NUMBER || pomelo_json_int64(v, out) != 0 || *out < min ||
      *out > max) {
    return input_error(t, 0, "\"%s\" must be an integer from %lld to %lld", key, (long long)min,
                       (long long)max);
  }
  return 0;
}

/* Writes one encoded package. */
static int emit(tool *t, const uint8_t *p, size_t n) {
  size_t i;
  int rc;
  if (t->opt.input != IN_HEX) {
    return write_bytes(t, p, n);
  }
  if (hexbuf_reserve(t, 2 * n + 1)) {
    return input_error(t, 0, "out of memory");
  }
  for (i = 0; i < n; i++) {
    t->hexbuf[2 * i] = hexdig[p[i] >> 4];
    t->hexbuf[2 * i + 1] = hexdig[p[i] & 15];
  }
  t->hexbuf[2 * n] = '\n';
  rc = write_bytes(t, t->hexbuf, 2 * n + 1);
  return rc;
}

/* Encodes the package the object `root` describes. */
static int encode_object(tool *t, const pomelo_json_value *root) {
  const pomelo_json_value *f[K_COUNT] = {0};
  const char *s;
  size_t len, i, n = pomelo_json_len(root), body_len = 0;
  uint8_t *body_buf = NULL;
  const uint8_t *body = NULL;
  pomelo_frame *frame = NULL;
  int type = 0, rc;

  if (pomelo_json_typeof(root) != POMELO_JSON_OBJECT) {
    return input_error(t, 0, "a line must be a JSON object");
  }
  for (i = 0; i < n; i++) {
    const char *k = pomelo_json_key_at(root, i, &len);
    int ki = key_index(k, len);
    if (ki < 0) {
      return input_error(t, 0, "unknown key \"%.*s\"", (int)(len > 64 ? 64 : len), k);
    }
    if (f[ki]) {
      return input_error(t, 0, "duplicate key \"%s\"", key_names[ki]);
    }
    f[ki] = pomelo_json_at(root, i);
  }
  if (f[K_OFFSET]) {
    int64_t ignored;
    if ((rc = get_uint(t, f[K_OFFSET], "offset", INT64_MAX, 0, &ignored))) {
      return rc;
    }
  }
  if (!f[K_PACKAGE]) {
    return input_error(t, 0, "missing \"package\"");
  }
  if ((rc = get_string(t, f[K_PACKAGE], "package", &s, &len))) {
    return rc;
  }
  for (i = POMELO_PKG_HANDSHAKE; i <= POMELO_PKG_KICK; i++) {
    const char *name = pomelo_pkg_type_name((int)i);
    if (strlen(name) == len && memcmp(name, s, len) == 0) {
      type = (int)i;
    }
  }
  if (!type) {
    return input_error(t, 0,
                       "unknown package type \"%.*s\" (handshake, handshake_ack, heartbeat, "
                       "data or kick)",
                       (int)(len > 64 ? 64 : len), s);
  }
  if (f[K_BODY] && f[K_BODY_HEX]) {
    return input_error(t, 0, "both \"body\" and \"body_hex\"");
  }
  if (f[K_BODY]) {
    const char *b;
    if ((rc = get_string(t, f[K_BODY], "body", &b, &body_len))) {
      return rc;
    }
    body = (const uint8_t *)b;
  } else if (f[K_BODY_HEX]) {
    if ((rc = get_hex(t, f[K_BODY_HEX], "body_hex", &body_buf, &body_len))) {
      return rc;
    }
    body = body_buf;
  }
  if (body_len > t->opt.limit) {
    rc = input_error(t, 0, "a body of %zu bytes is over the limit of %zu (see --limit)", body_len,
                     t->opt.limit);
    goto out;
  }

  if (type != POMELO_PKG_DATA) {
    for (i = K_MESSAGE; i <= K_GZIP; i++) {
      if (f[i]) {
        rc = input_error(t, 0, "\"%s\" is only for data packages", key_names[i]);
        goto out;
      }
    }
    rc = pomelo_pkg_encode_frame(&frame, NULL, type, body, body_len);
  } else {
    pomelo_msg m;
    uint8_t *route_buf = NULL;
    int has_id, has_route, routes = !!f[K_ROUTE] + !!f[K_ROUTE_HEX] + !!f[K_ROUTE_CODE];
    memset(&m, 0, sizeof(m));
    if (!f[K_MESSAGE]) {
      rc = input_error(t, 0, "missing \"message\" (request, notify, response or push)");
      goto out;
    }
    if ((rc = get_string(t, f[K_MESSAGE], "message", &s, &len))) {
      goto out;
    }
    for (i = 0; i < 4; i++) {
      const char *name = pomelo_msg_type_name((int)i);
      if (strlen(name) == len && memcmp(name, s, len) == 0) {
        break;
      }
    }
    if (i == 4) {
      rc = input_error(t, 0, "unknown message type \"%.*s\" (request, notify, response or push)",
                       (int)(len > 64 ? 64 : len), s);
      goto out;
    }
    m.type = (pomelo_msg_type)i;
    has_id = m.type == POMELO_MSG_REQUEST || m.type == POMELO_MSG_RESPONSE;
    has_route = m.type != POMELO_MSG_RESPONSE;
    if (has_id && !f[K_ID]) {
      rc = input_error(t, 0, "missing \"id\": a %s has one", pomelo_msg_type_name(m.type));
      goto out;
    }
    if (!has_id && f[K_ID]) {
      rc = input_error(t, 0, "a %s has no \"id\"", pomelo_msg_type_name(m.type));
      goto out;
    }
    if (has_id) {
      int64_t id;
      if ((rc = get_uint(t, f[K_ID], "id", POMELO_MSG_ID_MAX, 1, &id))) {
        goto out;
      }
      m.id = (uint32_t)id;
    }
    if (!has_route && routes) {
      rc = input_error(t, 0, "a response has no route");
      goto out;
    }
    if (has_route && routes != 1) {
      rc = input_error(t, 0, "a %s needs exactly one of \"route\", \"route_hex\", \"route_code\"",
                       pomelo_msg_type_name(m.type));
      goto out;
    }
    if (f[K_ROUTE_CODE]) {
      int64_t code;
      if ((rc = get_uint(t, f[K_ROUTE_CODE], "route_code", 65535, 0, &code))) {
        goto out;
      }
      m.route_compressed = 1;
      m.route_code = (uint16_t)code;
    } else if (f[K_ROUTE]) {
      if ((rc = get_string(t, f[K_ROUTE], "route", &m.route, &m.route_len))) {
        goto out;
      }
    } else if (f[K_ROUTE_HEX]) {
      size_t rl = 0;
      if ((rc = get_hex(t, f[K_ROUTE_HEX], "route_hex", &route_buf, &rl))) {
        goto out;
      }
      m.route = (const char *)route_buf;
      m.route_len = rl;
    }
    if (f[K_GZIP]) {
      if (pomelo_json_typeof(f[K_GZIP]) != POMELO_JSON_BOOL) {
        free(route_buf);
        rc = input_error(t, 0, "\"gzip\" must be true or false");
        goto out;
      }
      m.gzip = pomelo_json_bool(f[K_GZIP]);
    }
    m.body = body;
    m.body_len = body_len;
    rc = pomelo_msg_encode_frame(&frame, NULL, &m);
    free(route_buf);
    if (rc == 0 && pomelo_frame_len(frame) - 4 > t->opt.limit) {
      rc = input_error(t, 0, "the message is %zu bytes, over the limit of %zu (see --limit)",
                       pomelo_frame_len(frame) - 4, t->opt.limit);
      goto out;
    }
  }
  if (rc) {
    rc = input_error(t, 0, "cannot encode: %s", pomelo_strerror(rc));
    goto out;
  }
  rc = emit(t, pomelo_frame_data(frame), pomelo_frame_len(frame));
  if (!rc) {
    t->pkg_start += pomelo_frame_len(frame);
  }
out:
  pomelo_frame_unref(frame);
  free(body_buf);
  return rc;
}

static int encode_lines(tool *t) {
  char *line = NULL;
  size_t cap = 0;
  int rc = 0;
  long n;
  pomelo_json_options jo;

  pomelo_json_options_default(&jo);
  jo.utf8 = POMELO_JSON_UTF8_STRICT;
  jo.max_depth = 4;
  /* Room for a body at the limit in hex, or as text escaped as \u00XX at worst. */
  jo.max_size = 6 * t->opt.limit + 4096;

  while ((n = read_line(t, &line, &cap)) >= 0) {
    const char *s = line;
    size_t len = (size_t)n, err_off = 0;
    pomelo_json_doc *doc = NULL;
    while (len > 0 && is_blank((unsigned char)s[0])) {
      s++;
      len--;
    }
    if (len == 0 || s[0] == '#') {
      continue;
    }
    rc = pomelo_json_parse(&doc, NULL, s, len, &jo, &err_off);
    if (rc) {
      rc = input_error(t, (long)(err_off + (size_t)(s - line)) + 1, "bad JSON: %s",
                       pomelo_strerror(rc));
      break;
    }
    rc = encode_object(t, pomelo_json_root(doc));
    pomelo_json_doc_del(doc);
    if (rc) {
      break;
    }
  }
  if (n == -2) {
    rc = EXIT_BAD_INPUT;
  }
  free(line);
  return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Command line
 * ------------------------------------------------------------------------------------------- */

/* Matches "--name" or "--name=value"; for options with a value, takes it from `=` or the next
 * argument. Returns 1 on a match (value in *val), 0 otherwise, -1 when the value is missing. */
static int match_opt(char **argv, int argc, int *i, const char *lng, const char *shrt,
                     const char **val) {
  const char *a = argv[*i];
  size_t ll = strlen(lng);
  if (strncmp(a, lng, ll) == 0 && a[ll] == '=') {
    *val = a + ll + 1;
    return 1;
  }
  if (strcmp(a, lng) == 0 || (shrt && strcmp(a, shrt) == 0)) {
    if (*i + 1 >= argc) {
      return -1;
    }
    *val = argv[++*i];
    return 1;
  }
  return 0;
}

static int parse_args(int argc, char **argv, options *o, int *done) {
  int i, end_of_opts = 0;
  memset(o, 0, sizeof(*o));
  o->input = IN_RAW;
  o->limit = POMELO_PKG_BODY_MAX;
  *done = 0;
  for (i = 1; i < argc; i++) {
    const char *a = argv[i], *val = NULL;
    int m;
    if (end_of_opts || a[0] != '-' || strcmp(a, "-") == 0) {
      if (o->in_path) {
        return usage_error("only one input file may be given ('%s' and '%s')", o->in_path, a);
      }
      o->in_path = a;
      continue;
    }
    if (strcmp(a, "--") == 0) {
      end_of_opts = 1;
    } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      fputs(help_text, stdout);
      *done = 1;
      return 0;
    } else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
      printf(PROG " (libpomelo) %s\n", pomelo_version());
      *done = 1;
      return 0;
    } else if (strcmp(a, "--hex") == 0) {
      if (o->input == IN_TRACE) {
        return usage_error("--hex and --trace exclude each other");
      }
      o->input = IN_HEX;
    } else if (strcmp(a, "--trace") == 0) {
      if (o->input == IN_HEX) {
        return usage_error("--hex and --trace exclude each other");
      }
      o->input = IN_TRACE;
    } else if (strcmp(a, "--encode") == 0) {
      o->encode = 1;
    } else if ((m = match_opt(argv, argc, &i, "--limit", NULL, &val)) != 0) {
      char *endp;
      unsigned long long v;
      if (m < 0) {
        return usage_error("--limit needs a value");
      }
      errno = 0;
      v = strtoull(val, &endp, 10);
      if (errno || endp == val || *endp || val[0] == '-' || v < 1 || v > POMELO_PKG_BODY_MAX) {
        return usage_error("--limit: '%s' is not a number from 1 to %u", val,
                           (unsigned)POMELO_PKG_BODY_MAX);
      }
      o->limit = (size_t)v;
    } else if ((m = match_opt(argv, argc, &i, "--output", "-o", &val)) != 0) {
      if (m < 0) {
        return usage_error("%s needs a file name", a);
      }
      if (o->out_path) {
        return usage_error("only one output file may be given");
      }
      o->out_path = val;
    } else {
      return usage_error("unknown option '%s'", a);
    }
  }
  if (o->encode && o->input == IN_TRACE) {
    return usage_error("--trace is for reading packages, not for --encode");
  }
  return 0;
}

int main(int argc, char **argv) {
  tool t;
  int rc, done;

  memset(&t, 0, sizeof(t));
  rc = parse_args(argc, argv, &t.opt, &done);
  if (rc || done) {
    return rc;
  }
  if (t.opt.in_path && strcmp(t.opt.in_path, "-") != 0) {
    t.in = fopen(t.opt.in_path, t.opt.input == IN_RAW && !t.opt.encode ? "rb" : "r");
    if (!t.in) {
      return io_error(&t, "cannot open", t.opt.in_path);
    }
  } else {
    t.in = stdin;
  }
  if (t.opt.out_path) {
    t.out = fopen(t.opt.out_path, "wb");
    t.out_name = t.opt.out_path;
    if (!t.out) {
      rc = io_error(&t, "cannot create", t.opt.out_path);
      goto out;
    }
  } else {
    t.out = stdout;
    t.out_name = "standard output";
  }

  if (t.opt.encode) {
    rc = encode_lines(&t);
  } else {
    rc = pomelo_pkg_decoder_new(&t.dec, NULL, t.opt.limit, 0);
    if (rc == 0) {
      rc = pomelo_json_writer_new(&t.w, NULL, 4);
    }
    if (rc) {
      rc = input_error(&t, 0, "%s", pomelo_strerror(rc));
    } else {
      rc = t.opt.input == IN_RAW ? dump_raw(&t) : dump_lines(&t);
    }
  }
  if (fflush(t.out) != 0 && !rc) {
    rc = io_error(&t, "cannot write", t.out_name);
  }

out:
  if (t.out && t.out != stdout && fclose(t.out) != 0 && !rc) {
    rc = io_error(&t, "cannot write", t.out_name);
  }
  if (t.in && t.in != stdin) {
    fclose(t.in);
  }
  pomelo_pkg_decoder_del(t.dec);
  pomelo_json_writer_del(t.w);
  free(t.hexbuf);
  return rc;
}
