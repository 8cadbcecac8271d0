/* pbtool: libpomelo's pomelo-protobuf codec driven line by line from standard input, for the
 * differential test protobuf-diff.js (one process for thousands of cases). Test-only; not
 * installed.
 *
 * Commands (one per line; fields separated by one tab; answers one line each, in order):
 *   S<TAB>serverProtos<TAB>clientProtos   make the current set from two proto descriptions
 *                                         -> ok<TAB>version<TAB>protos JSON
 *   H<TAB>protos JSON                     make the current set from a handshake's "protos"
 *                                         -> ok<TAB>version<TAB>protos JSON
 *   E<TAB>side<TAB>flags<TAB>route<TAB>json   encode (side 0 server, 1 client; flags 1 CESU-8)
 *                                         -> ok<TAB>hex (empty for no bytes)
 *   D<TAB>side<TAB>route<TAB>hex           decode -> ok<TAB>json
 * Failures answer err<TAB>ERR_NAME<TAB>path; an unknown route err<TAB>NOROUTE<TAB>.
 * SPDX-License-Identifier: MIT
 */
#include <pomelo/protobuf.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pomelo_protos *cur;

/* Splits `s` in place at tabs into at most `max` fields; returns how many. */
static int split(char *s, char **f, int max) {
  int n = 0;
  f[n++] = s;
  while (n < max) {
    char *t = strchr(f[n - 1], '\t');
    if (!t) {
      break;
    }
    *t = '\0';
    f[n++] = t + 1;
  }
  return n;
}

static void answer_err(int rc, const pomelo_pb_error *err) {
  printf("err\t%s\t%s\n", pomelo_err_name(rc), err ? err->path : "");
}

static void answer_set(void) {
  printf("ok\t%s\t%s\n", pomelo_protos_version(cur), pomelo_protos_json(cur, NULL));
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

static void cmd_set(char **f, int n) {
  pomelo_pb_error err;
  pomelo_protos *p = NULL;
  int rc;
  if (n != 3) {
    puts("err\tUSAGE\t");
    return;
  }
  rc = pomelo_protos_new(&p, NULL, f[1], strlen(f[1]), f[2], strlen(f[2]), NULL, &err);
  pomelo_protos_del(cur);
  cur = p;
  if (rc) {
    answer_err(rc, &err);
    return;
  }
  answer_set();
}

static void cmd_handshake(char **f, int n) {
  pomelo_pb_error err;
  pomelo_json_doc *doc = NULL;
  pomelo_protos *p = NULL;
  int rc;
  if (n != 2) {
    puts("err\tUSAGE\t");
    return;
  }
  rc = pomelo_json_parse(&doc, NULL, f[1], strlen(f[1]), NULL, NULL);
  if (rc == 0) {
    rc = pomelo_protos_from_handshake(&p, NULL, pomelo_json_root(doc), NULL, &err);
  } else {
    err.path[0] = '\0';
  }
  pomelo_json_doc_del(doc);
  pomelo_protos_del(cur);
  cur = p;
  if (rc) {
    answer_err(rc, &err);
    return;
  }
  answer_set();
}

static void cmd_encode(char **f, int n) {
  pomelo_pb_error err;
  pomelo_json_doc *doc = NULL;
  const pomelo_pb_type *t;
  uint8_t *buf;
  size_t need = 0, len = 0, i;
  int rc;
  if (n != 5) {
    puts("err\tUSAGE\t");
    return;
  }
  t = pomelo_protos_find(cur, (pomelo_protos_side)atoi(f[1]), f[3], strlen(f[3]));
  if (!t) {
    puts("err\tNOROUTE\t");
    return;
  }
  rc = pomelo_json_parse(&doc, NULL, f[4], strlen(f[4]), NULL, NULL);
  if (rc) {
    answer_err(rc, NULL);
    return;
  }
  rc = pomelo_pb_encode(t, pomelo_json_root(doc), (unsigned)atoi(f[2]), NULL, 0, &need, &err);
  if (rc) {
    pomelo_json_doc_del(doc);
    answer_err(rc, &err);
    return;
  }
  buf = malloc(need ? need : 1);
  if (!buf) {
    pomelo_json_doc_del(doc);
    puts("err\tERR_NOMEM\t");
    return;
  }
  rc = pomelo_pb_encode(t, pomelo_json_root(doc), (unsigned)atoi(f[2]), buf, need, &len, &err);
  pomelo_json_doc_del(doc);
  if (rc || len != need) {
    free(buf);
    answer_err(rc ? rc : POMELO_ERR_INTERNAL, &err);
    return;
  }
  fputs("ok\t", stdout);
  for (i = 0; i < len; i++) {
    printf("%02x", buf[i]);
  }
  putchar('\n');
  free(buf);
}

static void cmd_decode(char **f, int n, pomelo_json_writer *w) {
  pomelo_pb_error err;
  const pomelo_pb_type *t;
  size_t hl, i;
  uint8_t *buf;
  int rc;
  if (n != 4) {
    puts("err\tUSAGE\t");
    return;
  }
  t = pomelo_protos_find(cur, (pomelo_protos_side)atoi(f[1]), f[2], strlen(f[2]));
  if (!t) {
    puts("err\tNOROUTE\t");
    return;
  }
  hl = strlen(f[3]);
  buf = malloc(hl / 2 + 1);
  if (!buf || hl % 2) {
    free(buf);
    puts("err\tUSAGE\t");
    return;
  }
  for (i = 0; i < hl / 2; i++) {
    int hi = hexval(f[3][2 * i]), lo = hexval(f[3][2 * i + 1]);
    if (hi < 0 || lo < 0) {
      free(buf);
      puts("err\tUSAGE\t");
      return;
    }
    buf[i] = (uint8_t)(hi << 4 | lo);
  }
  pomelo_json_writer_reset(w);
  rc = pomelo_pb_decode(t, buf, hl / 2, w, &err);
  free(buf);
  if (rc) {
    answer_err(rc, &err);
    return;
  }
  printf("ok\t%s\n", pomelo_json_writer_data(w, NULL));
}

int main(void) {
  char *line = NULL;
  size_t cap = 0;
  ssize_t got;
  pomelo_json_writer *w = NULL;
  if (pomelo_json_writer_new(&w, NULL, 0) != 0) {
    return 1;
  }
  while ((got = getline(&line, &cap, stdin)) >= 0) {
    char *f[6];
    int n;
    while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) {
      line[--got] = '\0';
    }
    n = split(line, f, 6);
    switch (f[0][0]) {
    case 'S':
      cmd_set(f, n);
      break;
    case 'H':
      cmd_handshake(f, n);
      break;
    case 'E':
      cmd_encode(f, n);
      break;
    case 'D':
      cmd_decode(f, n, w);
      break;
    default:
      puts("err\tUSAGE\t");
      break;
    }
  }
  free(line);
  pomelo_json_writer_del(w);
  pomelo_protos_del(cur);
  return fflush(stdout) == 0 ? 0 : 1;
}
