/* Golden vectors: the codec against bytes produced by the real npm packages and recorded from a
 * real pomelo 2.2.7 server.
 *
 * Part 1 checks every package and message vector of spec Appendix A (pomelo-protocol@0.1.6
 * output): our encoders must produce exactly those bytes from the same inputs, and our decoders
 * must give the inputs back. The protobuf vectors (PB*, PARSED, DICTVER, PROTOVER) belong to the
 * protobuf module; FR1 (a DATA package around a protobuf body) is checked here as bytes.
 *
 * Part 2 reads the recorded traces named on the command line (the files under tests/data): every
 * package must decode whole with the type the trace names, DATA bodies must decode as messages,
 * and re-encoding must give the recorded bytes. Each connection's byte stream in each direction
 * is then fed to the stream decoder at every chunk size and split point.
 * SPDX-License-Identifier: MIT
 */
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pomelo/codec.h>

#include "tap.h"
#include "testutil.h"

/* ---------------------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------------------- */

/* Decodes a hex string into a new buffer (never NULL; *len receives the byte count). */
static uint8_t *hex_dup(const char *hex, size_t *len) {
  size_t cap = strlen(hex) / 2 + 1;
  uint8_t *p = malloc(cap);
  long n;
  if (!p) {
    abort();
  }
  n = test_hex_decode(hex, p, cap);
  if (n < 0) {
    fprintf(stderr, "bad hex in test: %s\n", hex);
    abort();
  }
  *len = (size_t)n;
  return p;
}

/* Encodes `msg` with pomelo_msg_encode into a new buffer; returns the error or 0. */
static int msg_encode_dup(const pomelo_msg *msg, uint8_t **out, size_t *len) {
  size_t need = 0;
  int rc = pomelo_msg_encode(NULL, 0, msg, &need);
  *out = NULL;
  *len = 0;
  if (rc != POMELO_ERR_BUFFER_TOO_SMALL) {
    return rc;
  }
  *out = malloc(need ? need : 1);
  if (!*out) {
    abort();
  }
  rc = pomelo_msg_encode(*out, need, msg, len);
  return rc;
}

static int lower_eq(const char *a, const char *b) {
  if (!a || !b) {
    return 0;
  }
  for (; *a && *b; a++, b++) {
    if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) {
      return 0;
    }
  }
  return *a == *b;
}

static int msg_fields_equal(const pomelo_msg *got, const pomelo_msg *want) {
  if (got->type != want->type || got->gzip != !!want->gzip) {
    return 0;
  }
  if ((want->type == POMELO_MSG_REQUEST || want->type == POMELO_MSG_RESPONSE) &&
      got->id != want->id) {
    return 0;
  }
  if (want->type != POMELO_MSG_RESPONSE) {
    if (!got->route_compressed != !want->route_compressed) {
      return 0;
    }
    if (want->route_compressed) {
      if (got->route_code != want->route_code) {
        return 0;
      }
    } else if (got->route_len != want->route_len ||
               (want->route_len && memcmp(got->route, want->route, want->route_len) != 0)) {
      return 0;
    }
  }
  return got->body_len == want->body_len &&
         (want->body_len == 0 || memcmp(got->body, want->body, want->body_len) == 0);
}

/* ---------------------------------------------------------------------------------------------
 * Part 1: spec Appendix A
 * ------------------------------------------------------------------------------------------- */

typedef struct pkg_vector {
  const char *tag;
  int type;
  const char *body; /* text, NULL for none */
  const char *hex;
} pkg_vector;

static const pkg_vector pkg_vectors[] = {
    {"PK1 handshake-ack", POMELO_PKG_HANDSHAKE_ACK, NULL, "02 00 00 00"},
    {"PK2 heartbeat", POMELO_PKG_HEARTBEAT, NULL, "03 00 00 00"},
    {"PK3 kick", POMELO_PKG_KICK, "{\"reason\":\"kick\"}",
     "05 00 00 11 7b 22 72 65 61 73 6f 6e 22 3a 22 6b 69 63 6b 22 7d"},
    {"PK4 handshake", POMELO_PKG_HANDSHAKE, "{\"sys\":{\"type\":\"c\",\"version\":\"1\"}}",
     "01 00 00 22 7b 22 73 79 73 22 3a 7b 22 74 79 70 65 22 3a 22 63 22 2c 22 76 65 72 73 69 6f "
     "6e 22 3a 22 31 22 7d 7d"},
    {"PK5 handshake-resp", POMELO_PKG_HANDSHAKE, "{\"code\":501}",
     "01 00 00 0c 7b 22 63 6f 64 65 22 3a 35 30 31 7d"},
};

static void test_pkg_vectors(void) {
  size_t i;
  for (i = 0; i < sizeof(pkg_vectors) / sizeof(pkg_vectors[0]); i++) {
    const pkg_vector *v = &pkg_vectors[i];
    size_t want_len, body_len = v->body ? strlen(v->body) : 0, out_len = 0, consumed = 0;
    uint8_t *want = hex_dup(v->hex, &want_len);
    uint8_t buf[64];
    pomelo_frame *f = NULL;
    pomelo_pkg pkg;
    int rc;

    rc = pomelo_pkg_encode(buf, sizeof(buf), v->type, (const uint8_t *)v->body, body_len, &out_len);
    is_int(rc, 0, "%s: pomelo_pkg_encode", v->tag);
    is_mem(buf, out_len, want, want_len, "%s: encoded bytes", v->tag);

    rc = pomelo_pkg_encode_frame(&f, NULL, v->type, (const uint8_t *)v->body, body_len);
    is_int(rc, 0, "%s: pomelo_pkg_encode_frame", v->tag);
    if (f) {
      is_mem(pomelo_frame_data(f), pomelo_frame_len(f), want, want_len, "%s: frame bytes", v->tag);
      pomelo_frame_unref(f);
    }

    rc = pomelo_pkg_decode(want, want_len, &pkg, &consumed);
    is_int(rc, 0, "%s: pomelo_pkg_decode", v->tag);
    if (rc == 0) {
      is_int(consumed, want_len, "%s: decode consumes the whole package", v->tag);
      is_int(pkg.type, v->type, "%s: decoded type", v->tag);
      is_mem(pkg.body, pkg.body_len, v->body, body_len, "%s: decoded body", v->tag);
    }
    free(want);
  }
}

typedef struct msg_vector {
  const char *tag;
  pomelo_msg_type type;
  uint32_t id;
  int compressed;
  uint16_t code;
  const char *route; /* NULL: no route (RESPONSE) */
  const char *body;  /* text, NULL for none */
  int gzip;
  const char *hex;
} msg_vector;

#define ALICE_BODY "{\"username\":\"alice\",\"rid\":\"room1\"}"
#define ALICE_HEX                                                                                  \
  "7b 22 75 73 65 72 6e 61 6d 65 22 3a 22 61 6c 69 63 65 22 2c 22 72 69 64 22 3a 22 72 6f 6f 6d "  \
  "31 22 7d"

static const msg_vector msg_vectors[] = {
    {"MS1 request id=1 connector.entryHandler.enter", POMELO_MSG_REQUEST, 1, 0, 0,
     "connector.entryHandler.enter", ALICE_BODY, 0,
     "00 01 1c 63 6f 6e 6e 65 63 74 6f 72 2e 65 6e 74 72 79 48 61 6e 64 6c 65 72 2e 65 6e 74 65 "
     "72 " ALICE_HEX},
    {"MS2 request id=1 route-code 2", POMELO_MSG_REQUEST, 1, 1, 2, NULL, ALICE_BODY, 0,
     "01 01 00 02 " ALICE_HEX},
    {"MS3 request id=300 route-code 1 {}", POMELO_MSG_REQUEST, 300, 1, 1, NULL, "{}", 0,
     "01 ac 02 00 01 7b 7d"},
    {"MS4 notify chat.chatHandler.send {}", POMELO_MSG_NOTIFY, 0, 0, 0, "chat.chatHandler.send",
     "{}", 0, "02 15 63 68 61 74 2e 63 68 61 74 48 61 6e 64 6c 65 72 2e 73 65 6e 64 7b 7d"},
    {"MS5 response id=1 {\"code\":200}", POMELO_MSG_RESPONSE, 1, 0, 0, NULL, "{\"code\":200}", 0,
     "04 01 7b 22 63 6f 64 65 22 3a 32 30 30 7d"},
    {"MS6 push onAdd", POMELO_MSG_PUSH, 0, 0, 0, "onAdd", "{\"route\":\"onAdd\",\"user\":\"bob\"}",
     0,
     "06 05 6f 6e 41 64 64 7b 22 72 6f 75 74 65 22 3a 22 6f 6e 41 64 64 22 2c 22 75 73 65 72 22 "
     "3a 22 62 6f 62 22 7d"},
    {"MS7 push route-code 13 no body", POMELO_MSG_PUSH, 0, 1, 13, NULL, NULL, 0, "07 00 0d"},
    {"MS8 push onChat gzip bit, body x", POMELO_MSG_PUSH, 0, 0, 0, "onChat", "x", 1,
     "16 06 6f 6e 43 68 61 74 78"},
    {"MS9 request id=5 route \"\" no body", POMELO_MSG_REQUEST, 5, 0, 0, "", NULL, 0, "00 05 00"},
    {"ID request id=127", POMELO_MSG_REQUEST, 127, 0, 0, "", NULL, 0, "00 7f 00"},
    {"ID request id=128", POMELO_MSG_REQUEST, 128, 0, 0, "", NULL, 0, "00 80 01 00"},
    {"ID request id=16383", POMELO_MSG_REQUEST, 16383, 0, 0, "", NULL, 0, "00 ff 7f 00"},
    {"ID request id=16384", POMELO_MSG_REQUEST, 16384, 0, 0, "", NULL, 0, "00 80 80 01 00"},
    {"ID request id=2097152", POMELO_MSG_REQUEST, 2097152, 0, 0, "", NULL, 0, "00 80 80 80 01 00"},
    {"ID request id=268435456", POMELO_MSG_REQUEST, 268435456, 0, 0, "", NULL, 0,
     "00 80 80 80 80 01 00"},
    {"ID request id=2147483647", POMELO_MSG_REQUEST, 2147483647u, 0, 0, "", NULL, 0,
     "00 ff ff ff ff 07 00"},
};

static void msg_from_vector(const msg_vector *v, pomelo_msg *m) {
  memset(m, 0, sizeof(*m));
  m->type = v->type;
  m->id = v->id;
  m->route_compressed = v->compressed;
  m->route_code = v->code;
  m->route = v->route;
  m->route_len = v->route ? strlen(v->route) : 0;
  m->gzip = v->gzip;
  m->body = (const uint8_t *)v->body;
  m->body_len = v->body ? strlen(v->body) : 0;
}

static void test_msg_vectors(void) {
  size_t i;
  for (i = 0; i < sizeof(msg_vectors) / sizeof(msg_vectors[0]); i++) {
    const msg_vector *v = &msg_vectors[i];
    size_t want_len, got_len = 0;
    uint8_t *want = hex_dup(v->hex, &want_len), *got = NULL, *pkg_bytes;
    pomelo_msg in, out;
    pomelo_frame *f = NULL;
    int rc;

    msg_from_vector(v, &in);
    rc = msg_encode_dup(&in, &got, &got_len);
    is_int(rc, 0, "%s: pomelo_msg_encode", v->tag);
    is_mem(got, got_len, want, want_len, "%s: encoded bytes", v->tag);
    free(got);

    /* The same message in a DATA package. */
    pkg_bytes = malloc(want_len + 4);
    if (!pkg_bytes) {
      abort();
    }
    pkg_bytes[0] = POMELO_PKG_DATA;
    pkg_bytes[1] = (uint8_t)(want_len >> 16);
    pkg_bytes[2] = (uint8_t)(want_len >> 8);
    pkg_bytes[3] = (uint8_t)want_len;
    memcpy(pkg_bytes + 4, want, want_len);
    rc = pomelo_msg_encode_frame(&f, NULL, &in);
    is_int(rc, 0, "%s: pomelo_msg_encode_frame", v->tag);
    if (f) {
      is_mem(pomelo_frame_data(f), pomelo_frame_len(f), pkg_bytes, want_len + 4,
             "%s: DATA package bytes", v->tag);
      pomelo_frame_unref(f);
    }
    free(pkg_bytes);

    rc = pomelo_msg_decode(want, want_len, &out);
    is_int(rc, 0, "%s: pomelo_msg_decode", v->tag);
    ok(rc == 0 && msg_fields_equal(&out, &in), "%s: decoded fields equal the inputs", v->tag);
    if (rc == 0 && v->type != POMELO_MSG_REQUEST && v->type != POMELO_MSG_RESPONSE) {
      is_int(out.id, 0, "%s: no id decoded for this type", v->tag);
    }
    free(want);
  }
}

/* FR1: Pkg.encode(TYPE_DATA, Msg.encode(0, TYPE_PUSH, 0, 'onChat', PB1)). */
static void test_fr1(void) {
  static const char pb1_hex[] = "0a 02 68 69 12 05 61 6c 69 63 65 1a 01 2a";
  static const char fr1_hex[] =
      "04 00 00 16 06 06 6f 6e 43 68 61 74 0a 02 68 69 12 05 61 6c 69 63 65 1a 01 2a";
  size_t pb1_len, fr1_len, msg_len = 0, pkg_len = 0, consumed = 0;
  uint8_t *pb1 = hex_dup(pb1_hex, &pb1_len), *fr1 = hex_dup(fr1_hex, &fr1_len);
  uint8_t msg_buf[64], pkg_buf[64];
  pomelo_frame *f = NULL;
  pomelo_msg in, out;
  pomelo_pkg pkg;
  int rc;

  memset(&in, 0, sizeof(in));
  in.type = POMELO_MSG_PUSH;
  in.route = "onChat";
  in.route_len = 6;
  in.body = pb1;
  in.body_len = pb1_len;
  rc = pomelo_msg_encode(msg_buf, sizeof(msg_buf), &in, &msg_len);
  is_int(rc, 0, "FR1: pomelo_msg_encode");
  rc = pomelo_pkg_encode(pkg_buf, sizeof(pkg_buf), POMELO_PKG_DATA, msg_buf, msg_len, &pkg_len);
  is_int(rc, 0, "FR1: pomelo_pkg_encode");
  is_mem(pkg_buf, pkg_len, fr1, fr1_len, "FR1: package(message) bytes");
  rc = pomelo_msg_encode_frame(&f, NULL, &in);
  is_int(rc, 0, "FR1: pomelo_msg_encode_frame");
  if (f) {
    is_mem(pomelo_frame_data(f), pomelo_frame_len(f), fr1, fr1_len, "FR1: frame bytes");
    pomelo_frame_unref(f);
  }
  rc = pomelo_pkg_decode(fr1, fr1_len, &pkg, &consumed);
  ok(rc == 0 && consumed == fr1_len && pkg.type == POMELO_PKG_DATA, "FR1: package decodes");
  if (rc == 0) {
    rc = pomelo_msg_decode(pkg.body, pkg.body_len, &out);
    ok(rc == 0 && msg_fields_equal(&out, &in), "FR1: message decodes to the inputs");
  }
  free(pb1);
  free(fr1);
}

/* Where we deliberately differ from pomelo-protocol 0.1.6 (spec 2.1, 2.2, 12). */
static void test_deliberate_differences(void) {
  pomelo_msg m, out;
  uint8_t buf[16];
  size_t len = 0, n;
  uint8_t *b;

  /* ID line id=0: node encodes 00 00 00; we refuse to encode and to decode it. */
  memset(&m, 0, sizeof(m));
  m.type = POMELO_MSG_REQUEST;
  m.route = "";
  is_int(pomelo_msg_encode(buf, sizeof(buf), &m, &len), POMELO_ERR_MSG_ID,
         "ID request id=0: encode refused (node writes 00 00 00)");
  b = hex_dup("00 00 00", &n);
  is_int(pomelo_msg_decode(b, n, &out), POMELO_ERR_MSG_ID,
         "ID request id=0: decode of 00 00 00 refused");
  free(b);
  m.type = POMELO_MSG_RESPONSE;
  is_int(pomelo_msg_encode(buf, sizeof(buf), &m, &len), POMELO_ERR_MSG_ID,
         "response id=0: encode refused");

  /* id 2^31: node writes a truncated 00 80 80; we refuse. */
  m.type = POMELO_MSG_REQUEST;
  m.id = 0x80000000u;
  is_int(pomelo_msg_encode(buf, sizeof(buf), &m, &len), POMELO_ERR_MSG_ID,
         "id 2^31: encode refused (node writes a truncated 00 80 80)");
  b = hex_dup("00 80 80 80 80 08 00", &n);
  is_int(pomelo_msg_decode(b, n, &out), POMELO_ERR_MSG_ID,
         "id 2^31 (80 80 80 80 08): decode refused (node gives -2147483648)");
  free(b);
  b = hex_dup("00 80 80 80 80 80 01 00", &n);
  is_int(pomelo_msg_decode(b, n, &out), POMELO_ERR_MSG_ID,
         "6-byte varint id: decode refused (node wraps)");
  free(b);

  /* Message types 4..7: node decodes 08 01 02 as type 4 with body 01 02; we refuse. */
  b = hex_dup("08 01 02", &n);
  is_int(pomelo_msg_decode(b, n, &out), POMELO_ERR_MSG_TYPE, "flag 08 (type 4): decode refused");
  free(b);
  m.type = (pomelo_msg_type)4;
  m.id = 1;
  is_int(pomelo_msg_encode(buf, sizeof(buf), &m, &len), POMELO_ERR_MSG_TYPE,
         "type 4: encode refused (node throws too)");
}

/* ---------------------------------------------------------------------------------------------
 * Part 2: recorded traces
 * ------------------------------------------------------------------------------------------- */

typedef struct record {
  char conn[64];       /* connection label ("alice@gate ws"), or the file's name */
  char dir[8];         /* "c2s", "s2c" or "" */
  char type_name[32];  /* the type column, "" if absent */
  long declared_total; /* the length column, -1 if absent */
  uint8_t *bytes;
  size_t len;
  int truncated; /* the hex is a prefix of the package (the recorder cut it short) */
  int line;
} record;

typedef struct trace {
  const char *path;
  record *recs;
  size_t n, cap;
} trace;

static char *read_file(const char *path, size_t *len) {
  FILE *fp = fopen(path, "rb");
  char *buf = NULL;
  size_t cap = 0, n = 0;
  if (!fp) {
    return NULL;
  }
  for (;;) {
    size_t got;
    if (cap - n < 4096) {
      char *p = realloc(buf, cap * 2 + 8192);
      if (!p) {
        abort();
      }
      buf = p;
      cap = cap * 2 + 8192;
    }
    got = fread(buf + n, 1, cap - n - 1, fp);
    n += got;
    if (got == 0) {
      break;
    }
  }
  fclose(fp);
  buf[n] = 0;
  *len = n;
  return buf;
}

static int is_hex_token(const char *t, size_t n) {
  size_t i;
  if (n < 8 || n % 2) {
    return 0;
  }
  for (i = 0; i < n; i++) {
    if (!isxdigit((unsigned char)t[i])) {
      return 0;
    }
  }
  return 1;
}

static int is_dir_token(const char *t) {
  return strcmp(t, "c2s") == 0 || strcmp(t, "s2c") == 0;
}

#define MAX_TOKENS 8

/* The length at which the recorder of tmpl-ws.txt cut the packages it printed (120 hex digits). */
#define RECORDER_CUT 60u

/* Splits `line` (modified in place) at blanks; returns the token count, or MAX_TOKENS + 1 when
 * there are more. */
static int tokenize(char *line, char **tok) {
  int n = 0;
  char *p = line;
  for (;;) {
    while (*p == ' ' || *p == '\t' || *p == '\r') {
      p++;
    }
    if (!*p) {
      return n;
    }
    if (n == MAX_TOKENS) {
      return MAX_TOKENS + 1;
    }
    tok[n++] = p;
    while (*p && *p != ' ' && *p != '\t' && *p != '\r') {
      p++;
    }
    if (*p) {
      *p++ = 0;
    }
  }
}

static record *trace_add(trace *t) {
  if (t->n == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 32;
    record *r = realloc(t->recs, cap * sizeof(*r));
    if (!r) {
      abort();
    }
    t->recs = r;
    t->cap = cap;
  }
  memset(&t->recs[t->n], 0, sizeof(record));
  t->recs[t->n].declared_total = -1;
  return &t->recs[t->n++];
}

static const char *base_name(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

/* A text line "<words>: {JSON}" holding a whole handshake body: if a HANDSHAKE record of the
 * trace was cut short by the recorder and this text continues it with the declared length, the
 * record is completed from it; otherwise some recorded HANDSHAKE must carry exactly this body. */
static void handshake_text_line(trace *t, const char *text, int line) {
  size_t tl = strlen(text), i;
  for (i = 0; i < t->n; i++) {
    record *r = &t->recs[i];
    size_t declared;
    if (r->len < 4 || r->bytes[0] != POMELO_PKG_HANDSHAKE) {
      continue;
    }
    declared = (size_t)r->bytes[1] << 16 | (size_t)r->bytes[2] << 8 | r->bytes[3];
    if (r->truncated && declared == tl && memcmp(r->bytes + 4, text, r->len - 4) == 0) {
      uint8_t *p = malloc(4 + tl);
      if (!p) {
        abort();
      }
      memcpy(p, r->bytes, 4);
      memcpy(p + 4, text, tl);
      free(r->bytes);
      r->bytes = p;
      r->len = 4 + tl;
      r->truncated = 0;
      ok(1, "%s:%d: handshake text completes the cut-short package of line %d", base_name(t->path),
         line, r->line);
      return;
    }
    if (!r->truncated && r->len - 4 == tl && memcmp(r->bytes + 4, text, tl) == 0) {
      ok(1, "%s:%d: handshake text equals the package of line %d", base_name(t->path), line,
         r->line);
      return;
    }
  }
  ok(0, "%s:%d: handshake text matches no recorded HANDSHAKE package", base_name(t->path), line);
}

/* Reads a trace. Package lines end with the package in hex and have one of the forms
 *   <user@server> <ws|tcp> <c2s|s2c> <total length> <TYPE> <hex>   (chat-*.txt)
 *   <c2s|s2c> <hex>                                                 (tmpl-ws.txt)
 *   <LABEL> <hex>                                                   (handshake-responses.hex)
 * Lines starting with '#' and other lines (the recorder's log output) are not packages. */
static int trace_load(trace *t, const char *path) {
  size_t len, pos = 0;
  char *text = read_file(path, &len);
  int line = 0;
  memset(t, 0, sizeof(*t));
  t->path = path;
  if (!text) {
    return -1;
  }
  while (pos < len) {
    char *start = text + pos, *nl = memchr(start, '\n', len - pos), *tok[MAX_TOKENS];
    size_t line_len = nl ? (size_t)(nl - start) : len - pos;
    char *colon;
    int nt;
    pos += line_len + (nl ? 1 : 0);
    start[line_len] = 0;
    line++;
    if (start[0] == '#') {
      continue;
    }
    colon = strstr(start, ": {\"");
    if (colon) {
      *colon = 0; /* the words before the colon must name a handshake */
      if (!strstr(start, "handshake")) {
        continue;
      }
      char *json = colon + 2;
      size_t jl = strlen(json);
      while (jl && (json[jl - 1] == '\r' || json[jl - 1] == ' ')) {
        json[--jl] = 0;
      }
      handshake_text_line(t, json, line);
      continue;
    }
    nt = tokenize(start, tok);
    if (nt < 2 || nt > MAX_TOKENS || !is_hex_token(tok[nt - 1], strlen(tok[nt - 1]))) {
      continue;
    }
    {
      record *r = trace_add(t);
      r->line = line;
      r->bytes = hex_dup(tok[nt - 1], &r->len);
      if (nt == 6) {
        char *end;
        snprintf(r->conn, sizeof(r->conn), "%s %s", tok[0], tok[1]);
        snprintf(r->dir, sizeof(r->dir), "%s", tok[2]);
        errno = 0;
        r->declared_total = strtol(tok[3], &end, 10);
        if (errno || *end) {
          r->declared_total = -2;
        }
        snprintf(r->type_name, sizeof(r->type_name), "%s", tok[4]);
      } else if (nt == 2 && is_dir_token(tok[0])) {
        snprintf(r->conn, sizeof(r->conn), "%s", base_name(path));
        snprintf(r->dir, sizeof(r->dir), "%s", tok[0]);
      } else if (nt == 2) {
        snprintf(r->conn, sizeof(r->conn), "%s", tok[0]);
      } else {
        ok(0, "%s:%d: unrecognised package line", base_name(path), line);
      }
      /* tmpl-ws.txt's recorder printed only the first RECORDER_CUT bytes of long packages;
       * nothing else may be short (a wrong length is a failure of check_record). */
      if (r->len == RECORDER_CUT && r->declared_total == -1) {
        size_t declared = (size_t)r->bytes[1] << 16 | (size_t)r->bytes[2] << 8 | r->bytes[3];
        r->truncated = r->len < 4 + declared;
      }
    }
  }
  free(text);
  return 0;
}

static void trace_free(trace *t) {
  size_t i;
  for (i = 0; i < t->n; i++) {
    free(t->recs[i].bytes);
  }
  free(t->recs);
}

/* Checks one complete package record: decode, type, message, re-encode. */
static void check_record(const trace *t, const record *r, size_t *n_data) {
  const char *file = base_name(t->path);
  pomelo_pkg pkg;
  size_t consumed = 0, out_len = 0;
  uint8_t *re;
  int rc;

  if (r->declared_total >= 0 || r->declared_total == -2) {
    is_int(r->declared_total, r->len, "%s:%d: length column equals the package length", file,
           r->line);
  }
  rc = pomelo_pkg_decode(r->bytes, r->len, &pkg, &consumed);
  is_int(rc, 0, "%s:%d: %s %s package decodes", file, r->line, r->conn, r->dir);
  if (rc != 0) {
    return;
  }
  is_int(consumed, r->len, "%s:%d: decode consumes exactly the line", file, r->line);
  if (r->type_name[0]) {
    ok(lower_eq(pomelo_pkg_type_name(pkg.type), r->type_name), "%s:%d: type %s", file, r->line,
       r->type_name);
  }

  re = malloc(r->len);
  if (!re) {
    abort();
  }
  rc = pomelo_pkg_encode(re, r->len, pkg.type, pkg.body, pkg.body_len, &out_len);
  ok(rc == 0 && out_len == r->len && memcmp(re, r->bytes, r->len) == 0,
     "%s:%d: package re-encodes to the recorded bytes", file, r->line);
  free(re);

  if (pkg.type == POMELO_PKG_DATA) {
    pomelo_msg m;
    uint8_t *mb = NULL;
    size_t ml = 0;
    pomelo_frame *f = NULL;
    (*n_data)++;
    rc = pomelo_msg_decode(pkg.body, pkg.body_len, &m);
    is_int(rc, 0, "%s:%d: DATA body decodes as a message", file, r->line);
    if (rc != 0) {
      return;
    }
    if (strcmp(r->dir, "c2s") == 0) {
      ok(m.type == POMELO_MSG_REQUEST || m.type == POMELO_MSG_NOTIFY,
         "%s:%d: client sends a request or notify (%s)", file, r->line,
         pomelo_msg_type_name(m.type));
    } else if (strcmp(r->dir, "s2c") == 0) {
      ok(m.type == POMELO_MSG_RESPONSE || m.type == POMELO_MSG_PUSH,
         "%s:%d: server sends a response or push (%s)", file, r->line,
         pomelo_msg_type_name(m.type));
    }
    rc = msg_encode_dup(&m, &mb, &ml);
    ok(rc == 0 && ml == pkg.body_len && memcmp(mb, pkg.body, ml) == 0,
       "%s:%d: message re-encodes to the recorded body", file, r->line);
    free(mb);
    rc = pomelo_msg_encode_frame(&f, NULL, &m);
    ok(rc == 0 && pomelo_frame_len(f) == r->len &&
           memcmp(pomelo_frame_data(f), r->bytes, r->len) == 0,
       "%s:%d: pomelo_msg_encode_frame gives the recorded package", file, r->line);
    pomelo_frame_unref(f);
  }
}

/* Cut-short records: the header declares more than the line holds. */
static void check_truncated_record(const trace *t, const record *r) {
  const char *file = base_name(t->path);
  size_t declared = (size_t)r->bytes[1] << 16 | (size_t)r->bytes[2] << 8 | r->bytes[3];
  size_t consumed = 0, used = 0;
  pomelo_pkg pkg;
  pomelo_pkg_decoder *dec = NULL;
  int rc;

  diag("%s:%d: the recorder cut this package short (%zu of %zu bytes); checked as a prefix", file,
       r->line, r->len, 4 + declared);
  rc = pomelo_pkg_decode(r->bytes, r->len, &pkg, &consumed);
  ok(rc == POMELO_ERR_PKG_TRUNCATED && consumed == 4 + declared,
     "%s:%d: cut-short package: PKG_TRUNCATED, needs %zu bytes", file, r->line, 4 + declared);
  if (pomelo_pkg_decoder_new(&dec, NULL, POMELO_PKG_BODY_MAX, 0) != 0) {
    abort();
  }
  rc = pomelo_pkg_decoder_feed(dec, r->bytes, r->len, &used, &pkg);
  ok(rc == 0 && used == r->len && pomelo_pkg_decoder_pending(dec) == r->len,
     "%s:%d: cut-short package: the stream decoder waits for more", file, r->line);
  pomelo_pkg_decoder_del(dec);
}

/* A direction of one connection: its packages in order and their concatenation. */
typedef struct stream {
  const record **recs;
  size_t n;
  uint8_t *bytes;
  size_t len;
} stream;

typedef struct feed_state {
  const stream *s;
  size_t next; /* index of the next expected package */
  int bad;
} feed_state;

static void feed_chunk(pomelo_pkg_decoder *dec, feed_state *st, const uint8_t *src, size_t n) {
  uint8_t *chunk = malloc(n ? n : 1); /* exact size: an over-read trips the sanitizers */
  const uint8_t *p = chunk;
  if (!chunk) {
    abort();
  }
  if (n) {
    memcpy(chunk, src, n);
  }
  while (n > 0 && !st->bad) {
    size_t used = 0;
    pomelo_pkg pkg;
    int rc = pomelo_pkg_decoder_feed(dec, p, n, &used, &pkg);
    if (rc < 0 || used > n) {
      st->bad = 1;
      break;
    }
    p += used;
    n -= used;
    if (rc == 1) {
      const record *r;
      if (st->next >= st->s->n) {
        st->bad = 1;
        break;
      }
      r = st->s->recs[st->next++];
      if (pkg.type != r->bytes[0] || pkg.body_len != r->len - 4 ||
          (pkg.body_len && memcmp(pkg.body, r->bytes + 4, pkg.body_len) != 0)) {
        st->bad = 1;
      }
    } else if (n != 0) {
      st->bad = 1; /* 0 must mean: everything consumed */
    }
  }
  free(chunk);
}

/* Feeds the stream cut at the given offsets (sorted, each in 0..len); returns 1 if the same
 * packages came out and nothing is left pending. */
static int feed_split(const stream *s, const size_t *cuts, size_t ncuts) {
  pomelo_pkg_decoder *dec = NULL;
  feed_state st = {s, 0, 0};
  size_t prev = 0, i;
  int good;
  if (pomelo_pkg_decoder_new(&dec, NULL, POMELO_PKG_BODY_MAX, 0) != 0) {
    abort();
  }
  for (i = 0; i <= ncuts && !st.bad; i++) {
    size_t end = i < ncuts ? cuts[i] : s->len;
    feed_chunk(dec, &st, s->bytes + prev, end - prev);
    prev = end;
  }
  good = !st.bad && st.next == s->n && pomelo_pkg_decoder_pending(dec) == 0;
  pomelo_pkg_decoder_del(dec);
  return good;
}

static int feed_chunked(const stream *s, size_t size) {
  pomelo_pkg_decoder *dec = NULL;
  feed_state st = {s, 0, 0};
  size_t off;
  int good;
  if (pomelo_pkg_decoder_new(&dec, NULL, POMELO_PKG_BODY_MAX, 0) != 0) {
    abort();
  }
  for (off = 0; off < s->len && !st.bad; off += size) {
    size_t n = s->len - off < size ? s->len - off : size;
    feed_chunk(dec, &st, s->bytes + off, n);
  }
  good = !st.bad && st.next == s->n && pomelo_pkg_decoder_pending(dec) == 0;
  pomelo_pkg_decoder_del(dec);
  return good;
}

/* Streams at most this long are also cut at every pair of split points. */
#define SMALL_STREAM 160u

static void check_stream(const char *file, const char *conn, const char *dir, const stream *s) {
  size_t k, bad_size = 0, bad_cut = 0, bad_pair = 0, pairs = 0, off = 0, i;
  size_t cut[2];
  int whole = 1;

  /* One-shot decoding of the whole stream, package by package. */
  for (i = 0; i < s->n; i++) {
    pomelo_pkg pkg;
    size_t consumed = 0;
    if (pomelo_pkg_decode(s->bytes + off, s->len - off, &pkg, &consumed) != 0 ||
        consumed != s->recs[i]->len) {
      whole = 0;
      break;
    }
    off += consumed;
  }
  ok(whole && off == s->len, "%s: %s %s: %zu packages, %zu bytes, pomelo_pkg_decode walks them",
     file, conn, dir, s->n, s->len);

  for (k = 1; k <= s->len; k++) {
    if (!feed_chunked(s, k) && !bad_size) {
      bad_size = k;
    }
  }
  ok(!bad_size, "%s: %s %s: stream decoder, chunk sizes 1..%zu", file, conn, dir, s->len);
  if (bad_size) {
    diag("first failing chunk size: %zu", bad_size);
  }

  for (k = 0; k <= s->len; k++) {
    cut[0] = k;
    if (!feed_split(s, cut, 1) && !bad_cut) {
      bad_cut = k + 1;
    }
  }
  ok(!bad_cut, "%s: %s %s: stream decoder, every split point 0..%zu", file, conn, dir, s->len);
  if (bad_cut) {
    diag("first failing split point: %zu", bad_cut - 1);
  }

  if (s->len <= SMALL_STREAM) {
    for (cut[0] = 0; cut[0] <= s->len; cut[0]++) {
      for (cut[1] = cut[0]; cut[1] <= s->len; cut[1]++) {
        pairs++;
        if (!feed_split(s, cut, 2) && !bad_pair) {
          bad_pair = pairs;
          diag("first failing split pair: %zu %zu", cut[0], cut[1]);
        }
      }
    }
    ok(!bad_pair, "%s: %s %s: stream decoder, every pair of split points (%zu)", file, conn, dir,
       pairs);
  }
}

static void check_trace(const char *path, size_t *n_pkgs, size_t *n_data, size_t *n_streams) {
  trace t;
  const char *file = base_name(path);
  size_t i, j;
  char *done;

  if (trace_load(&t, path) != 0) {
    ok(0, "%s: cannot read %s", file, path);
    return;
  }
  ok(t.n > 0, "%s: %zu package lines", file, t.n);
  for (i = 0; i < t.n; i++) {
    if (t.recs[i].len < 4) {
      ok(0, "%s:%d: package shorter than its header", file, t.recs[i].line);
    } else if (t.recs[i].truncated) {
      check_truncated_record(&t, &t.recs[i]);
    } else {
      check_record(&t, &t.recs[i], n_data);
      (*n_pkgs)++;
    }
  }

  /* Streams: the whole packages of each (connection, direction), in trace order. */
  done = calloc(t.n ? t.n : 1, 1);
  if (!done) {
    abort();
  }
  for (i = 0; i < t.n; i++) {
    stream s = {NULL, 0, NULL, 0};
    size_t skipped = 0;
    if (done[i]) {
      continue;
    }
    s.recs = malloc(t.n * sizeof(*s.recs));
    if (!s.recs) {
      abort();
    }
    for (j = i; j < t.n; j++) {
      const record *r = &t.recs[j];
      if (done[j] || strcmp(r->conn, t.recs[i].conn) != 0 || strcmp(r->dir, t.recs[i].dir) != 0) {
        continue;
      }
      done[j] = 1;
      if (r->truncated || r->len < 4) {
        skipped++;
        continue;
      }
      s.recs[s.n++] = r;
      s.len += r->len;
    }
    if (skipped) {
      diag("%s: %s %s: %zu cut-short package(s) left out of the stream", file, t.recs[i].conn,
           t.recs[i].dir, skipped);
    }
    s.bytes = malloc(s.len ? s.len : 1);
    if (!s.bytes) {
      abort();
    }
    for (j = 0, s.len = 0; j < s.n; j++) {
      memcpy(s.bytes + s.len, s.recs[j]->bytes, s.recs[j]->len);
      s.len += s.recs[j]->len;
    }
    if (s.n) {
      check_stream(file, t.recs[i].conn, t.recs[i].dir[0] ? t.recs[i].dir : "-", &s);
      (*n_streams)++;
    }
    free(s.bytes);
    free(s.recs);
  }
  free(done);
  trace_free(&t);
}

int main(int argc, char **argv) {
  size_t n_pkgs = 0, n_data = 0, n_streams = 0;
  int i;

  test_pkg_vectors();
  test_msg_vectors();
  test_fr1();
  test_deliberate_differences();

  ok(argc > 1, "trace files given on the command line (%d)", argc - 1);
  for (i = 1; i < argc; i++) {
    check_trace(argv[i], &n_pkgs, &n_data, &n_streams);
  }
  diag("traces: %zu packages (%zu DATA) in %zu streams", n_pkgs, n_data, n_streams);
  return done_testing();
}
