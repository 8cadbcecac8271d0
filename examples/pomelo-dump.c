/* pomelo-dump: print a captured Pomelo byte stream as one JSON object per package, and back.
 *
 * Uses only the public API of libpomelo: the stream decoder for raw streams, the message codec
 * for DATA bodies, the JSON writer for the output and the JSON reader for --encode input.
 * See docs/pomelo-dump.md or `pomelo-dump --help`.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stddef.h>
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

/* The manual page, in parts (C99 compilers need only support string literals of 4095 bytes). */
static const char *const help_text[] = {
    "NAME\n"
    "    pomelo-dump - print a captured Pomelo byte stream as JSON lines, and back\n"
    "\n"
    "SYNOPSIS\n"
    "    pomelo-dump [--hex | --trace] [--limit N] [--handshake FILE] [--dict FILE]\n"
    "                [--server-protos FILE] [--client-protos FILE] [-o FILE] [FILE]\n"
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
    "      route_name  the route of route_code, when the dictionary has the code\n"
    "      gzip        true when the message's gzip flag is set (absent otherwise)\n"
    "      body        the body as text when it is valid UTF-8 (\"\" when empty);\n"
    "      body_hex    ... otherwise, or when the body is protobuf, in lower-case hex\n"
    "      json        a protobuf body decoded, as a JSON value (an object);\n"
    "      json_error  ... or why it could not be decoded: \"REASON at FIELD (byte N)\"\n"
    "\n"
    "    For DATA packages \"body\" is the message body, after the message header.\n"
    "\n",
    "    A body is protobuf when the proto set has a proto for its route: the server\n"
    "    protos for a push, the client protos for a request or notify, and for a\n"
    "    response the server protos of the route of the request with the same id seen\n"
    "    earlier in the input (as the JavaScript client maps ids to routes). Compressed\n"
    "    routes are looked up in the dictionary first.\n"
    "\n"
    "    The dictionary and the proto set come from --handshake, --dict and the\n"
    "    --*-protos files, and from the stream itself: a HANDSHAKE package whose body is\n"
    "    a server's answer carrying sys.dict (or routeToCode/codeToRoute) or sys.protos\n"
    "    replaces that part for the packages after it, so the capture of a whole session\n"
    "    decodes by itself. An answer without them (a client that had them cached) keeps\n"
    "    what is in use; one whose dictionary or protos are invalid changes nothing and\n"
    "    gets a warning on standard error.\n"
    "\n"
    "    By default the input is a raw byte stream as sent over TCP (or the payloads of\n"
    "    consecutive WebSocket frames): packages back to back, split anywhere.\n"
    "\n"
    "    With --encode the input is such JSON lines and the output is the bytes of the\n"
    "    packages they describe, so `pomelo-dump x.bin | pomelo-dump --encode` gives x.bin\n"
    "    back. \"offset\" may be omitted (its value is ignored); \"body\"/\"body_hex\" may be\n"
    "    omitted for an empty body and \"gzip\" when false; every other field is required\n"
    "    exactly when the package and message types have it. \"route_name\", \"json\" and\n"
    "    \"json_error\" are derived: they are accepted and ignored (edit body_hex, not\n"
    "    json). Unknown keys are an error.\n"
    "\n",
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
    "    --handshake FILE\n"
    "                  FILE holds a server's handshake answer, the JSON body of its\n"
    "                  HANDSHAKE package ({\"code\":200,\"sys\":{...}}): use its sys.dict\n"
    "                  (or sys.routeToCode/codeToRoute) and its sys.protos.\n"
    "    --dict FILE   The route dictionary: a JSON object {\"route\":code,...} (the\n"
    "                  handshake's \"dict\"), or a JSON array of the handler routes, which\n"
    "                  are sorted and numbered from 1 as the server does. Replaces the\n"
    "                  dictionary of --handshake.\n"
    "    --server-protos FILE, --client-protos FILE\n"
    "                  The server's config/serverProtos.json and clientProtos.json\n"
    "                  (\"required string msg\": 1 form). Either or both; a side not given\n"
    "                  is empty. Replace the protos of --handshake.\n"
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
    "       where N is the byte offset in the stream of the package at fault. A body that\n"
    "       does not decode with its proto is not an error (see json_error).\n"
    "    2  usage error, or a --handshake, --dict or --*-protos file that cannot be read\n"
    "       or used:\n"
    "           pomelo-dump: --OPTION FILE: [line L, column C: ]REASON\n"
    "\n"
    "EXAMPLES\n"
    "    pomelo-dump capture.bin\n"
    "    printf '05 00 00 11 7b22726561736f6e223a226b69636b227d\\n' | pomelo-dump --hex\n"
    "    pomelo-dump --server-protos config/serverProtos.json --dict dict.json c.bin\n"
    "    pomelo-dump capture.bin | grep '\"route\"' | pomelo-dump --encode --hex\n",
};

typedef struct options {
  int input; /* IN_* */
  int encode;
  size_t limit;
  const char *in_path;            /* NULL or "-": stdin */
  const char *out_path;           /* NULL: stdout */
  const char *handshake_path;     /* --handshake */
  const char *dict_path;          /* --dict */
  const char *server_protos_path; /* --server-protos */
  const char *client_protos_path; /* --client-protos */
} options;

/* The requests whose responses may be protobuf: id -> route (open addressing, linear probing,
 * backward-shift deletion; id 0 marks a free slot, as ids are 1..2^31-1). */
typedef struct id_slot {
  uint32_t id;
  size_t route_len;
  char *route;
} id_slot;

typedef struct id_map {
  id_slot *slots;
  size_t cap; /* 0 or a power of two */
  size_t count;
} id_map;

/* The state of one run. */
typedef struct tool {
  options opt;
  FILE *in, *out;
  const char *out_name;
  pomelo_pkg_decoder *dec;
  pomelo_json_writer *w;   /* the output line */
  pomelo_json_writer *pbw; /* a decoded protobuf body, before it goes into the line */
  pomelo_dict *dict;       /* the dictionary in use, or NULL */
  pomelo_protos *protos;   /* the proto set in use, or NULL */
  id_map ids;              /* requests seen, for the protos of their responses */
  uint64_t pkg_start;      /* stream offset of the package being decoded / encoded next */
  uint8_t head[4];         /* the first bytes of the package at pkg_start */
  long line;               /* current input line (line modes), 0 otherwise */
  char *hexbuf;            /* output hex line (--encode --hex) */
  size_t hexcap;
} tool;

/* Nesting allowed in a line: the line object, a decoded body (one object per nested message
 * and one array per repeated field: the proto depth limit is 32) and room to spare. */
#define LINE_DEPTH 128u
/* Nesting allowed in a handshake answer or a --dict file (parsed protos nest two levels per
 * message: "__messages" then the name). */
#define CONTEXT_DEPTH 512u
/* The largest --handshake, --dict or --*-protos file read. */
#define CONTEXT_FILE_MAX (64u * 1024u * 1024u)

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
 * Requests in flight: id -> route
 * ------------------------------------------------------------------------------------------- */

static size_t id_hash(uint32_t x, size_t mask) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x & mask;
}

static size_t id_find(const id_map *m, uint32_t id) {
  size_t mask = m->cap - 1, i = id_hash(id, mask);
  while (m->slots[i].id && m->slots[i].id != id) {
    i = (i + 1) & mask;
  }
  return i;
}

static int id_grow(id_map *m) {
  size_t cap = m->cap ? 2 * m->cap : 64, i;
  id_map n = {NULL, cap, m->count};
  n.slots = calloc(cap, sizeof(*n.slots));
  if (!n.slots) {
    return -1;
  }
  for (i = 0; i < m->cap; i++) {
    if (m->slots[i].id) {
      n.slots[id_find(&n, m->slots[i].id)] = m->slots[i];
    }
  }
  free(m->slots);
  *m = n;
  return 0;
}

/* Remembers the route of request `id` (a later request with the same id replaces it). */
static int id_put(id_map *m, uint32_t id, const char *route, size_t len) {
  char *copy;
  size_t i;
  if ((m->count + 1) * 4 > m->cap * 3 && id_grow(m)) {
    return -1;
  }
  copy = malloc(len + 1);
  if (!copy) {
    return -1;
  }
  memcpy(copy, route, len);
  copy[len] = 0;
  i = id_find(m, id);
  if (m->slots[i].id) {
    free(m->slots[i].route);
  } else {
    m->count++;
  }
  m->slots[i].id = id;
  m->slots[i].route = copy;
  m->slots[i].route_len = len;
  return 0;
}

/* Takes the route of request `id` out of the map (the caller frees it); NULL when unknown. */
static char *id_take(id_map *m, uint32_t id, size_t *len) {
  size_t mask = m->cap - 1, i, j;
  char *route;
  if (!m->cap) {
    return NULL;
  }
  i = id_find(m, id);
  if (!m->slots[i].id) {
    return NULL;
  }
  route = m->slots[i].route;
  *len = m->slots[i].route_len;
  m->count--;
  /* Backward-shift deletion: move up every later entry of the run whose home slot is not in
   * the cyclic range (i, j]. */
  for (j = (i + 1) & mask; m->slots[j].id; j = (j + 1) & mask) {
    size_t k = id_hash(m->slots[j].id, mask);
    if (i <= j ? (k <= i || k > j) : (k <= i && k > j)) {
      m->slots[i] = m->slots[j];
      i = j;
    }
  }
  m->slots[i].id = 0;
  m->slots[i].route = NULL;
  return route;
}

static void id_clear(id_map *m) {
  size_t i;
  for (i = 0; i < m->cap; i++) {
    free(m->slots[i].route);
  }
  free(m->slots);
  memset(m, 0, sizeof(*m));
}

/* ---------------------------------------------------------------------------------------------
 * The dictionary and the proto set: --handshake, --dict, --*-protos, handshakes in the stream
 * ------------------------------------------------------------------------------------------- */

/* Reports a --OPTION FILE that cannot be read or used. Returns EXIT_USAGE. */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int
context_error(const char *opt, const char *path, const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, PROG ": %s %s: ", opt, path);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  return EXIT_USAGE;
}

/* Reads a whole file (NUL-terminated). Returns 0, or EXIT_USAGE after reporting. */
static int read_context_file(const char *opt, const char *path, char **out, size_t *out_len) {
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  size_t len = 0, cap = 0;
  *out = NULL;
  if (!f) {
    return context_error(opt, path, "cannot open: %s", strerror(errno));
  }
  for (;;) {
    size_t n;
    if (cap - len < 4096) {
      char *p;
      cap = cap ? 2 * cap : 16384;
      if (cap > CONTEXT_FILE_MAX + 1) {
        cap = CONTEXT_FILE_MAX + 1;
      }
      if (cap - len == 0) {
        free(buf);
        fclose(f);
        return context_error(opt, path, "larger than %u bytes", (unsigned)CONTEXT_FILE_MAX);
      }
      p = realloc(buf, cap + 1);
      if (!p) {
        free(buf);
        fclose(f);
        return context_error(opt, path, "out of memory");
      }
      buf = p;
    }
    n = fread(buf + len, 1, cap - len, f);
    len += n;
    if (n == 0) {
      break;
    }
  }
  if (ferror(f)) {
    free(buf);
    fclose(f);
    return context_error(opt, path, "cannot read: %s", strerror(errno));
  }
  fclose(f);
  buf[len] = 0;
  *out = buf;
  *out_len = len;
  return 0;
}

/* "line L, column C" of byte `off` of `text` (1-based; the column counts bytes). */
static void text_position(const char *text, size_t len, size_t off, char *buf, size_t n) {
  size_t i, line = 1, col = 1;
  for (i = 0; i < off && i < len; i++) {
    if (text[i] == '\n') {
      line++;
      col = 1;
    } else {
      col++;
    }
  }
  snprintf(buf, n, "line %zu, column %zu", line, col);
}

/* Parses a whole --handshake or --dict file as JSON. Returns 0, or EXIT_USAGE after reporting. */
static int parse_context_json(const char *opt, const char *path, const char *text, size_t len,
                              pomelo_json_doc **doc) {
  pomelo_json_options jo;
  size_t err_off = 0;
  int rc;
  pomelo_json_options_default(&jo);
  jo.max_depth = CONTEXT_DEPTH;
  jo.max_size = len;
  rc = pomelo_json_parse(doc, NULL, text, len, &jo, &err_off);
  if (rc) {
    char pos[64];
    text_position(text, len, err_off, pos, sizeof(pos));
    return context_error(opt, path, "%s: %s", pos, pomelo_strerror(rc));
  }
  return 0;
}

/* "REASON at PATH" for a proto set error, with " (byte N)" when `with_offset`. */
static void pb_error_text(char *buf, size_t n, int rc, const pomelo_pb_error *e, int with_offset) {
  int k = snprintf(buf, n, "%s", pomelo_strerror(rc));
  if (k >= 0 && (size_t)k < n && e->path[0]) {
    k += snprintf(buf + k, n - (size_t)k, " at %s", e->path);
  }
  if (k >= 0 && (size_t)k < n && with_offset) {
    snprintf(buf + k, n - (size_t)k, " (byte %zu)", e->offset);
  }
}

/* Builds the dictionary and the proto set a server's handshake answer `root` carries. Returns 1
 * when it has at least one of them (each of *d, *p NULL when absent), 0 when it has neither, -1
 * when one is there but cannot be used (`why` filled, nothing returned). */
static int handshake_parts(const pomelo_json_value *root, pomelo_dict **d, pomelo_protos **p,
                           char *why, size_t why_len) {
  const pomelo_json_value *sys = pomelo_json_get(root, "sys"), *protos;
  pomelo_pb_error pe;
  int rc;
  *d = NULL;
  *p = NULL;
  if (pomelo_json_typeof(sys) != POMELO_JSON_OBJECT) {
    snprintf(why, why_len, "no \"sys\" object (not a server's handshake answer)");
    return 0;
  }
  if (pomelo_json_get(sys, "dict") || pomelo_json_get(sys, "routeToCode") ||
      pomelo_json_get(sys, "codeToRoute")) {
    rc = pomelo_dict_from_handshake(d, NULL, sys);
    if (rc) {
      snprintf(why, why_len, "sys.dict: %s", pomelo_strerror(rc));
      return -1;
    }
  }
  protos = pomelo_json_get(sys, "protos");
  if (protos) {
    memset(&pe, 0, sizeof(pe));
    rc = pomelo_protos_from_handshake(p, NULL, protos, NULL, &pe);
    if (rc) {
      char text[256];
      pb_error_text(text, sizeof(text), rc, &pe, 0);
      snprintf(why, why_len, "sys.protos: %s", text);
      pomelo_dict_del(*d);
      *d = NULL;
      return -1;
    }
  }
  if (!*d && !*p) {
    snprintf(why, why_len, "neither sys.dict (nor routeToCode, codeToRoute) nor sys.protos");
    return 0;
  }
  return 1;
}

/* Replaces the parts of the context that are not NULL. */
static void use_parts(tool *t, pomelo_dict *d, pomelo_protos *p) {
  if (d) {
    pomelo_dict_del(t->dict);
    t->dict = d;
  }
  if (p) {
    pomelo_protos_del(t->protos);
    t->protos = p;
  }
}

static int load_handshake_file(tool *t, const char *path) {
  char *text = NULL, why[300];
  size_t len = 0;
  pomelo_json_doc *doc = NULL;
  pomelo_dict *d;
  pomelo_protos *p;
  int rc = read_context_file("--handshake", path, &text, &len);
  if (!rc) {
    rc = parse_context_json("--handshake", path, text, len, &doc);
  }
  if (!rc) {
    switch (handshake_parts(pomelo_json_root(doc), &d, &p, why, sizeof(why))) {
    case 1:
      use_parts(t, d, p);
      break;
    default:
      rc = context_error("--handshake", path, "%s", why);
    }
  }
  pomelo_json_doc_del(doc);
  free(text);
  return rc;
}

static int load_dict_file(tool *t, const char *path) {
  static const char opt[] = "--dict";
  char *text = NULL, *wrapped = NULL;
  size_t len = 0, i, n;
  pomelo_json_doc *doc = NULL, *wdoc = NULL;
  const pomelo_json_value *root;
  const char **routes = NULL;
  pomelo_dict *d = NULL;
  int rc = read_context_file(opt, path, &text, &len);
  if (!rc) {
    rc = parse_context_json(opt, path, text, len, &doc);
  }
  if (rc) {
    goto out;
  }
  root = pomelo_json_root(doc);
  if (pomelo_json_typeof(root) == POMELO_JSON_ARRAY) {
    /* Handler routes: sorted and numbered from 1 by pomelo_dict_new. */
    n = pomelo_json_len(root);
    routes = malloc((n ? n : 1) * sizeof(*routes));
    if (!routes) {
      rc = context_error(opt, path, "out of memory");
      goto out;
    }
    for (i = 0; i < n; i++) {
      size_t rl = 0;
      const pomelo_json_value *v = pomelo_json_at(root, i);
      routes[i] = pomelo_json_string(v, &rl);
      if (!routes[i] || strlen(routes[i]) != rl) {
        rc = context_error(opt, path, "element %zu is not a route string", i);
        goto out;
      }
    }
    rc = pomelo_dict_new(&d, NULL, routes, n, NULL, 0);
  } else if (pomelo_json_typeof(root) == POMELO_JSON_OBJECT) {
    /* {"route":code,...}: read as the "dict" of a handshake's sys. */
    wrapped = malloc(len + 16);
    if (!wrapped) {
      rc = context_error(opt, path, "out of memory");
      goto out;
    }
    n = (size_t)snprintf(wrapped, 16, "{\"dict\":");
    memcpy(wrapped + n, text, len);
    wrapped[n + len] = '}';
    rc = parse_context_json(opt, path, wrapped, n + len + 1, &wdoc);
    if (rc) {
      goto out;
    }
    rc = pomelo_dict_from_handshake(&d, NULL, pomelo_json_root(wdoc));
  } else {
    rc = context_error(opt, path,
                       "neither an object {\"route\":code,...} nor an array of handler routes");
    goto out;
  }
  if (rc) {
    rc = context_error(opt, path, "%s", pomelo_strerror(rc));
    goto out;
  }
  use_parts(t, d, NULL);
out:
  pomelo_json_doc_del(wdoc);
  pomelo_json_doc_del(doc);
  free(wrapped);
  free((void *)routes);
  free(text);
  return rc;
}

/* Reports a proto file that pomelo_protos_new refused. */
static int protos_file_error(const char *opt, const char *path, const char *text, size_t len,
                             int rc, const pomelo_pb_error *e) {
  char what[256];
  if (rc <= POMELO_ERR_JSON_SYNTAX && rc >= POMELO_ERR_JSON_NUMBER) {
    /* Not JSON: the position says where, the path would only name the side. */
    text_position(text, len, e->offset, what, sizeof(what));
    return context_error(opt, path, "%s: %s", what, pomelo_strerror(rc));
  }
  pb_error_text(what, sizeof(what), rc, e, 0);
  return context_error(opt, path, "%s", what);
}

static int load_protos_files(tool *t, const char *server_path, const char *client_path) {
  char *st = NULL, *ct = NULL;
  size_t sl = 0, cl = 0;
  pomelo_protos *p = NULL;
  pomelo_pb_error e;
  int rc = 0;
  /* Each side alone first, so that an error names its file. */
  if (server_path) {
    rc = read_context_file("--server-protos", server_path, &st, &sl);
    if (!rc) {
      memset(&e, 0, sizeof(e));
      if ((rc = pomelo_protos_new(&p, NULL, st, sl, NULL, 0, NULL, &e)) != 0) {
        rc = protos_file_error("--server-protos", server_path, st, sl, rc, &e);
      }
      pomelo_protos_del(p);
      p = NULL;
    }
  }
  if (!rc && client_path) {
    rc = read_context_file("--client-protos", client_path, &ct, &cl);
    if (!rc) {
      memset(&e, 0, sizeof(e));
      if ((rc = pomelo_protos_new(&p, NULL, NULL, 0, ct, cl, NULL, &e)) != 0) {
        rc = protos_file_error("--client-protos", client_path, ct, cl, rc, &e);
      }
      pomelo_protos_del(p);
      p = NULL;
    }
  }
  if (!rc) {
    memset(&e, 0, sizeof(e));
    rc = pomelo_protos_new(&p, NULL, st, sl, ct, cl, NULL, &e);
    if (rc) {
      char what[256];
      pb_error_text(what, sizeof(what), rc, &e, 0);
      rc = context_error(server_path ? "--server-protos" : "--client-protos",
                         server_path ? server_path : client_path, "%s", what);
    } else {
      use_parts(t, NULL, p);
    }
  }
  free(st);
  free(ct);
  return rc;
}

/* Loads what the options give, in this order: --handshake, then --dict and the proto files,
 * which replace its parts. Returns 0 or EXIT_USAGE (reported). */
static int load_context(tool *t) {
  int rc = 0;
  if (t->opt.handshake_path) {
    rc = load_handshake_file(t, t->opt.handshake_path);
  }
  if (!rc && t->opt.dict_path) {
    rc = load_dict_file(t, t->opt.dict_path);
  }
  if (!rc && (t->opt.server_protos_path || t->opt.client_protos_path)) {
    rc = load_protos_files(t, t->opt.server_protos_path, t->opt.client_protos_path);
  }
  return rc;
}

/* A HANDSHAKE package of the stream: when its body is a server's answer with a dictionary or
 * protos, they replace the ones in use for the packages after it. A body that is not such an
 * answer (a client's request, an error answer) changes nothing; an answer whose parts cannot be
 * used gets a warning and changes nothing. */
static void stream_handshake(tool *t, const pomelo_pkg *pkg) {
  pomelo_json_options jo;
  pomelo_json_doc *doc = NULL;
  pomelo_dict *d;
  pomelo_protos *p;
  char why[300];
  pomelo_json_options_default(&jo);
  jo.max_depth = CONTEXT_DEPTH;
  jo.max_size = pkg->body_len;
  if (pomelo_json_parse(&doc, NULL, (const char *)pkg->body, pkg->body_len, &jo, NULL) != 0) {
    return;
  }
  switch (handshake_parts(pomelo_json_root(doc), &d, &p, why, sizeof(why))) {
  case 1:
    use_parts(t, d, p);
    break;
  case -1:
    fflush(t->out);
    fprintf(stderr,
            PROG ": offset %llu: warning: the dictionary and protos of this handshake are not "
                 "used: %s\n",
            (unsigned long long)t->pkg_start, why);
    break;
  default:
    break;
  }
  pomelo_json_doc_del(doc);
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

/* Finds the proto of a DATA message's body (its route: `route`, `route_len`; NULL for a
 * response or an unknown route code), remembering requests for their responses. Returns the
 * message type, or NULL when the body is not protobuf. */
static const pomelo_pb_type *find_proto(tool *t, const pomelo_msg *m, const char *route,
                                        size_t route_len, int *nomem) {
  const pomelo_pb_type *type = NULL;
  char *req_route;
  size_t req_len = 0;
  *nomem = 0;
  switch (m->type) {
  case POMELO_MSG_PUSH:
    return route ? pomelo_protos_find(t->protos, POMELO_PROTOS_SERVER, route, route_len) : NULL;
  case POMELO_MSG_REQUEST:
    /* Its response is protobuf when the server protos have its route (spec 7.3). */
    if (route && pomelo_protos_find(t->protos, POMELO_PROTOS_SERVER, route, route_len)) {
      *nomem = id_put(&t->ids, m->id, route, route_len);
    } else {
      free(id_take(&t->ids, m->id, &req_len)); /* an older request with this id is answered */
    }
    return route ? pomelo_protos_find(t->protos, POMELO_PROTOS_CLIENT, route, route_len) : NULL;
  case POMELO_MSG_NOTIFY:
    return route ? pomelo_protos_find(t->protos, POMELO_PROTOS_CLIENT, route, route_len) : NULL;
  case POMELO_MSG_RESPONSE:
    req_route = id_take(&t->ids, m->id, &req_len);
    if (req_route) {
      type = pomelo_protos_find(t->protos, POMELO_PROTOS_SERVER, req_route, req_len);
      free(req_route);
    }
    return type;
  }
  return NULL;
}

/* Writes "json" (the body decoded with `type`) or "json_error". */
static int write_decoded(tool *t, const pomelo_pb_type *type, const pomelo_msg *m) {
  pomelo_json_writer *w = t->w;
  pomelo_pb_error e;
  char why[300];
  int rc;
  if (m->gzip) {
    snprintf(why, sizeof(why), "not decoded: the body is compressed (gzip flag)");
  } else {
    memset(&e, 0, sizeof(e));
    pomelo_json_writer_reset(t->pbw);
    rc = pomelo_pb_decode(type, m->body, m->body_len, t->pbw, &e);
    if (rc == POMELO_ERR_NOMEM) {
      return rc;
    }
    if (rc == 0) {
      size_t len;
      const char *json = pomelo_json_writer_data(t->pbw, &len);
      if ((rc = write_key(w, "json"))) {
        return rc;
      }
      return pomelo_json_write_raw(w, json, len);
    }
    pb_error_text(why, sizeof(why), rc, &e, 1);
  }
  rc = write_key(w, "json_error");
  return rc ? rc : pomelo_json_write_string(w, why, strlen(why));
}

/* Builds the JSON line of one package into the writer. Returns 0, a library error (negative), or
 * EXIT_BAD_INPUT after reporting a bad message. */
static int build_line(tool *t, const pomelo_pkg *pkg) {
  pomelo_json_writer *w = t->w;
  const uint8_t *body = pkg->body;
  size_t body_len = pkg->body_len;
  const pomelo_pb_type *type = NULL;
  pomelo_msg m;
  int rc;

  memset(&m, 0, sizeof(m));
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
    const char *name, *route = NULL;
    size_t route_len = 0;
    int nomem;
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
        route = pomelo_dict_route(t->dict, m.route_code, &route_len);
        if (!rc && route) {
          rc = write_key(w, "route_name");
          rc = rc ? rc : pomelo_json_write_string(w, route, route_len);
        }
      } else {
        route = m.route;
        route_len = m.route_len;
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
    type = find_proto(t, &m, route, route_len, &nomem);
    if (nomem) {
      return POMELO_ERR_NOMEM;
    }
    body = m.body;
    body_len = m.body_len;
  }
  if (type) {
    /* A protobuf body is binary: always hex, whatever its bytes happen to look like. */
    rc = write_key(w, "body_hex");
    rc = rc ? rc : write_hex_string(t, body, body_len);
    rc = rc ? rc : write_decoded(t, type, &m);
  } else {
    rc = write_text_or_hex(t, "body", body, body_len);
  }
  if (rc) {
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
  if (pkg->type == POMELO_PKG_HANDSHAKE) {
    stream_handshake(t, pkg);
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
  /* Derived from the others and the dictionary and protos: accepted, then ignored. */
  K_ROUTE_NAME,
  K_JSON,
  K_JSON_ERROR,
  K_COUNT
};

static const char *const key_names[K_COUNT] = {
    "offset", "package", "message",  "id",         "route", "route_hex",  "route_code",
    "gzip",   "body",    "body_hex", "route_name", "json",  "json_error",
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
  for (i = K_ROUTE_NAME; i < K_COUNT; i++) {
    if (i != K_JSON && f[i] && pomelo_json_typeof(f[i]) != POMELO_JSON_STRING) {
      return input_error(t, 0, "\"%s\" must be a string", key_names[i]);
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
  jo.max_depth = LINE_DEPTH;
  /* A line may carry a derived "json" of any size beside its body, which is checked against
   * --limit once parsed. */
  jo.max_size = SIZE_MAX;

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

/* The options that name a file of the dictionary and protos. */
static const struct {
  const char *name;
  size_t field; /* offset of the path in options */
} file_opts[] = {
    {"--handshake", offsetof(options, handshake_path)},
    {"--dict", offsetof(options, dict_path)},
    {"--server-protos", offsetof(options, server_protos_path)},
    {"--client-protos", offsetof(options, client_protos_path)},
};

/* Matches one of file_opts. Returns 0 (no match), 1, or EXIT_USAGE (reported). */
static int match_file_opt(char **argv, int argc, int *i, options *o) {
  size_t k;
  for (k = 0; k < sizeof(file_opts) / sizeof(file_opts[0]); k++) {
    const char *val = NULL;
    const char **slot = (const char **)(void *)((char *)o + file_opts[k].field);
    int m = match_opt(argv, argc, i, file_opts[k].name, NULL, &val);
    if (m < 0) {
      return usage_error("%s needs a file name", file_opts[k].name);
    }
    if (m > 0) {
      if (*slot) {
        return usage_error("%s may be given only once", file_opts[k].name);
      }
      *slot = val;
      return 1;
    }
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
      size_t k;
      for (k = 0; k < sizeof(help_text) / sizeof(help_text[0]); k++) {
        fputs(help_text[k], stdout);
      }
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
    } else if ((m = match_file_opt(argv, argc, &i, o)) != 0) {
      if (m == EXIT_USAGE) {
        return m;
      }
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
  if (o->encode &&
      (o->handshake_path || o->dict_path || o->server_protos_path || o->client_protos_path)) {
    return usage_error("--handshake, --dict and the --*-protos files are for dumping, not for "
                       "--encode (it ignores route_name and json)");
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
  if (!t.opt.encode && (rc = load_context(&t)) != 0) {
    goto out;
  }
  if (t.opt.in_path && strcmp(t.opt.in_path, "-") != 0) {
    t.in = fopen(t.opt.in_path, t.opt.input == IN_RAW && !t.opt.encode ? "rb" : "r");
    if (!t.in) {
      rc = io_error(&t, "cannot open", t.opt.in_path);
      goto out;
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
      rc = pomelo_json_writer_new(&t.w, NULL, LINE_DEPTH);
    }
    if (rc == 0) {
      rc = pomelo_json_writer_new(&t.pbw, NULL, LINE_DEPTH - 1);
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
  pomelo_json_writer_del(t.pbw);
  pomelo_dict_del(t.dict);
  pomelo_protos_del(t.protos);
  id_clear(&t.ids);
  free(t.hexbuf);
  return rc;
}
