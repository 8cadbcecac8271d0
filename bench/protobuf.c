/* bench-protobuf: the pomelo-protobuf body codec (include/pomelo/protobuf.h), as
 * bench/protobuf.js does with the npm pomelo-protobuf 0.4.0 on the same messages.
 *
 *   bench-protobuf [--reps R] [--iters K]   (default: 21 runs; K = 10000 chat messages a run,
 *                                            K / 20 area messages)
 *
 * Proto set: chatofpomelo's config/serverProtos.json (onChat: three required strings) plus
 * onArea, a richer push (a global and a nested message type, repeated uInt32 of 100 elements,
 * repeated messages, doubles, strings, an sInt32). Messages: chat = {"msg":...,"from":"alice",
 * "target":"*"}, area = about 1 KB encoded; both written by the same loops in bench/protobuf.js,
 * which prints the hash of its JSON text so that micro.sh checks both sides had the same input.
 *
 * Cases per message, each run timed over K operations, in wall time (CLOCK_MONOTONIC) and in
 * CPU time of the process (CLOCK_PROCESS_CPUTIME_ID, as node's process.cpuUsage()):
 *   enc_tree  pomelo_pb_encode from an already parsed tree, as the library's server does: a
 *             measuring pass (NULL, 0), an allocation of that size, the encoding, the free;
 *   enc_text  pomelo_json_parse of the JSON text, then enc_tree, then pomelo_json_doc_del (the
 *             server gets JSON text from its handlers);
 *   enc_fixed one pass into a buffer that is large enough (C only, for scale);
 *   dec_text  pomelo_pb_decode of the encoded bytes into a pomelo_json_writer (reset, reused),
 *             i.e. to JSON text.
 * Every allocation goes through the counting allocator of benchutil.h (also while timing);
 * allocations per operation are printed. Runs of all cases alternate, after one warm-up run each;
 * each figure is the median of its runs. Before timing, each message is checked: encode then
 * decode gives back its JSON text byte for byte. Lines starting with "@" are for bench/micro.sh.
 * SPDX-License-Identifier: MIT
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pomelo/pomelo.h>

#include "benchutil.h"

/* chatofpomelo's onChat, then onArea with its nested Player; Pos and Stats are global types. */
static const char SERVER_PROTOS[] =
    "{\"onChat\":{\"required string msg\":1,\"required string from\":2,"
    "\"required string target\":3},"
    "\"onArea\":{"
    "\"message Player\":{\"required uInt32 id\":1,\"required string name\":2,"
    "\"required Pos pos\":3,\"optional sInt32 hp\":4,\"repeated uInt32 items\":5},"
    "\"required uInt32 areaId\":1,\"required string name\":2,\"optional double time\":3,"
    "\"required Pos center\":4,\"repeated uInt32 entities\":5,\"repeated Player players\":6,"
    "\"repeated string tags\":7,\"optional Stats stats\":8},"
    "\"message Pos\":{\"required double x\":1,\"required double y\":2},"
    "\"message Stats\":{\"required uInt32 kills\":1,\"required uInt32 deaths\":2,"
    "\"required double ratio\":3}}";

static const char CHAT_TEXT[] =
    "{\"msg\":\"hello everyone, see you at the castle gate at 10!\",\"from\":\"alice\","
    "\"target\":\"*\"}";

#define AREA_ENTITIES 100
#define AREA_PLAYERS 12

static volatile size_t sink;
static bench_alloc counter;

static void die(const char *what, int rc) {
  fprintf(stderr, "bench-protobuf: %s: %s\n", what, pomelo_strerror(rc));
  exit(1);
}

/* FNV-1a, printed so that micro.sh can check both sides saw and made the same bytes. */
static uint32_t fnv1a(const void *data, size_t n) {
  const uint8_t *p = data;
  uint32_t h = 2166136261u;
  size_t i;
  for (i = 0; i < n; i++) {
    h = (h ^ p[i]) * 16777619u;
  }
  return h;
}

typedef struct text_buf {
  char *p;
  size_t len, cap;
} text_buf;

/* Appends to `b` as printf does (the text must fit). */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void
put(text_buf *b, const char *fmt, ...) {
  va_list ap;
  int n;
  va_start(ap, fmt);
  n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= b->cap - b->len) {
    fprintf(stderr, "bench-protobuf: area text too long\n");
    exit(1);
  }
  b->len += (size_t)n;
}

/* `v` / 100 as JavaScript prints it (12.75, 12.5, 12, -0.25): no trailing zeros. */
static void hundredths(char *out, size_t cap, long v) {
  unsigned long m = (unsigned long)(v < 0 ? -v : v);
  const char *sign = v < 0 ? "-" : "";
  if (m % 100u == 0) {
    snprintf(out, cap, "%s%lu", sign, m / 100u);
  } else if (m % 10u == 0) {
    snprintf(out, cap, "%s%lu.%lu", sign, m / 100u, (m % 100u) / 10u);
  } else {
    snprintf(out, cap, "%s%lu.%02lu", sign, m / 100u, m % 100u);
  }
}

/* The area message as compact JSON text, numbers as JavaScript prints them (so that decoding
 * its encoding writes the same text back). bench/protobuf.js builds the same text. */
static void area_text(text_buf *b) {
  unsigned i;
  put(b, "{\"areaId\":%u,\"name\":\"Castle gate \xe2\x80\x94 north\",\"time\":1700000000.123,",
      7021u);
  put(b, "\"center\":{\"x\":512.5,\"y\":-128.25},\"entities\":[");
  for (i = 0; i < AREA_ENTITIES; i++) {
    /* 1- to 5-byte varints: a 32-bit hash shifted by 0, 8, 16 or 24 bits */
    uint32_t v = (uint32_t)((i + 1u) * 2654435761u) >> ((i % 4u) * 8u);
    put(b, "%s%lu", i ? "," : "", (unsigned long)v);
  }
  put(b, "],\"players\":[");
  for (i = 0; i < AREA_PLAYERS; i++) {
    int hp = (int)(i * 17u) * (i % 2u ? -1 : 1);
    char xs[24], ys[24];
    hundredths(xs, sizeof xs, (long)(i * 1250u + 25u));   /* x = i * 12.5 + 0.25 */
    hundredths(ys, sizeof ys, 10000L - (long)(i * 375u)); /* y = 100 - i * 3.75 */
    put(b,
        "%s{\"id\":%u,\"name\":\"player-%02u\",\"pos\":{\"x\":%s,\"y\":%s},\"hp\":%d,"
        "\"items\":[%u,%u,%u,%u]}",
        i ? "," : "", 10000u + i * 37u, i, xs, ys, hp, i + 1u, i * 3u + 1u, i * 300u + 1u,
        70000u + i);
  }
  put(b, "],\"tags\":[\"pvp\",\"night\",\"rain\",\"event:harvest\"],");
  put(b, "\"stats\":{\"kills\":%u,\"deaths\":%u,\"ratio\":1.6180339887}}", 1234u, 763u);
}

/* The wall time (CLOCK_MONOTONIC) and the CPU time of the process (CLOCK_PROCESS_CPUTIME_ID, as
 * node's process.cpuUsage()) of one run: on a shared machine the second does not count the time
 * other processes held the core. */
typedef struct bench_span {
  uint64_t wall;
  struct timespec cpu;
} bench_span;

static bench_span span_start(void) {
  bench_span s;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &s.cpu);
  s.wall = bench_now_ns();
  return s;
}

/* Returns the wall ns per operation of the run, the CPU ns per operation in `*cpu`. */
static double span_stop(const bench_span *s, size_t iters, double *cpu) {
  uint64_t wall = bench_now_ns();
  struct timespec c;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c);
  *cpu = ((double)(c.tv_sec - s->cpu.tv_sec) * 1e9 + (double)(c.tv_nsec - s->cpu.tv_nsec)) /
         (double)iters;
  return (double)(wall - s->wall) / (double)iters;
}

enum { ENC_TREE, ENC_TEXT, ENC_FIXED, DEC_TEXT, NKINDS };
static const char *const KIND_NAMES[NKINDS] = {"enc_tree", "enc_text", "enc_fixed", "dec_text"};

typedef struct pb_case {
  const char *name; /* "chat", "area" */
  const char *route;
  const pomelo_pb_type *type;
  const char *text;
  size_t text_len;
  pomelo_json_doc *doc; /* the parsed text, input of enc_tree */
  uint8_t *bytes;       /* its encoding, input of dec_text */
  size_t len;
  size_t iters;
  double *wall[NKINDS], *cpu[NKINDS]; /* ns per operation of each run */
  double allocs[NKINDS];              /* allocations per operation, in the last run */
} pb_case;

/* One encode as the library's server does it: measure, allocate, encode, free. */
static size_t encode_once(const pomelo_pb_type *t, const pomelo_json_value *v) {
  size_t need = 0, acc;
  uint8_t *buf;
  int rc = pomelo_pb_encode(t, v, 0, NULL, 0, &need, NULL);
  buf = counter.a.malloc(need ? need : 1, counter.a.user_data);
  if (!buf) {
    die("malloc", POMELO_ERR_NOMEM);
  }
  rc |= pomelo_pb_encode(t, v, 0, buf, need, &need, NULL);
  acc = need + (size_t)rc + buf[need - 1];
  counter.a.free(buf, counter.a.user_data);
  return acc;
}

static double enc_tree_run(pb_case *c, double *cpu, double *allocs) {
  const pomelo_json_value *v = pomelo_json_root(c->doc);
  size_t i, acc = 0;
  long calls = counter.calls;
  bench_span sp = span_start();
  for (i = 0; i < c->iters; i++) {
    acc += encode_once(c->type, v);
  }
  *allocs = (double)(counter.calls - calls) / (double)c->iters;
  sink += acc;
  return span_stop(&sp, c->iters, cpu);
}

static double enc_text_run(pb_case *c, double *cpu, double *allocs) {
  size_t i, acc = 0;
  long calls = counter.calls;
  bench_span sp = span_start();
  for (i = 0; i < c->iters; i++) {
    pomelo_json_doc *doc;
    int rc = pomelo_json_parse(&doc, &counter.a, c->text, c->text_len, NULL, NULL);
    if (rc) {
      die("pomelo_json_parse", rc);
    }
    acc += encode_once(c->type, pomelo_json_root(doc));
    pomelo_json_doc_del(doc);
  }
  *allocs = (double)(counter.calls - calls) / (double)c->iters;
  sink += acc;
  return span_stop(&sp, c->iters, cpu);
}

static double enc_fixed_run(pb_case *c, double *cpu, double *allocs) {
  static uint8_t buf[8192];
  const pomelo_json_value *v = pomelo_json_root(c->doc);
  size_t i, len, acc = 0;
  long calls = counter.calls;
  bench_span sp = span_start();
  for (i = 0; i < c->iters; i++) {
    int rc = pomelo_pb_encode(c->type, v, 0, buf, sizeof buf, &len, NULL);
    acc += len + (size_t)rc + buf[len - 1];
  }
  *allocs = (double)(counter.calls - calls) / (double)c->iters;
  sink += acc;
  return span_stop(&sp, c->iters, cpu);
}

static double dec_text_run(pb_case *c, pomelo_json_writer *w, double *cpu, double *allocs) {
  size_t i, len, acc = 0;
  long calls = counter.calls;
  bench_span sp = span_start();
  for (i = 0; i < c->iters; i++) {
    const char *d;
    int rc;
    pomelo_json_writer_reset(w);
    rc = pomelo_pb_decode(c->type, c->bytes, c->len, w, NULL);
    d = pomelo_json_writer_data(w, &len);
    acc += len + (size_t)rc + (unsigned char)d[len - 1];
  }
  *allocs = (double)(counter.calls - calls) / (double)c->iters;
  sink += acc;
  return span_stop(&sp, c->iters, cpu);
}

static void prepare(pb_case *c, const pomelo_protos *protos, pomelo_json_writer *w, int reps) {
  pomelo_pb_error e;
  size_t need = 0, len;
  const char *back;
  int rc, k;
  c->text_len = strlen(c->text);
  c->type = pomelo_protos_find(protos, POMELO_PROTOS_SERVER, c->route, strlen(c->route));
  if (!c->type) {
    fprintf(stderr, "bench-protobuf: no proto for %s\n", c->route);
    exit(1);
  }
  rc = pomelo_json_parse(&c->doc, &counter.a, c->text, c->text_len, NULL, NULL);
  if (rc) {
    die("pomelo_json_parse", rc);
  }
  rc = pomelo_pb_encode(c->type, pomelo_json_root(c->doc), 0, NULL, 0, &need, &e);
  if (rc) {
    fprintf(stderr, "bench-protobuf: %s: encode: %s at %s\n", c->name, pomelo_strerror(rc), e.path);
    exit(1);
  }
  c->bytes = malloc(need);
  if (!c->bytes) {
    die("malloc", POMELO_ERR_NOMEM);
  }
  rc = pomelo_pb_encode(c->type, pomelo_json_root(c->doc), 0, c->bytes, need, &c->len, &e);
  if (rc) {
    die("encode", rc);
  }
  pomelo_json_writer_reset(w);
  rc = pomelo_pb_decode(c->type, c->bytes, c->len, w, &e);
  if (rc) {
    fprintf(stderr, "bench-protobuf: %s: decode: %s at %s, offset %zu\n", c->name,
            pomelo_strerror(rc), e.path, e.offset);
    exit(1);
  }
  back = pomelo_json_writer_data(w, &len);
  if (len != c->text_len || memcmp(back, c->text, len) != 0) {
    fprintf(stderr, "bench-protobuf: %s does not decode back to its text\n  in:  %s\n  out: %.*s\n",
            c->name, c->text, (int)len, back);
    exit(1);
  }
  for (k = 0; k < NKINDS; k++) {
    c->wall[k] = malloc((size_t)reps * sizeof(double));
    c->cpu[k] = malloc((size_t)reps * sizeof(double));
    if (!c->wall[k] || !c->cpu[k]) {
      die("malloc", POMELO_ERR_NOMEM);
    }
  }
}

/* Runs case `c` of kind `k` once: stores its figures for run `r` (r < 0: a warm-up). */
static void run_one(pb_case *c, int k, pomelo_json_writer *w, int r) {
  double wall, cpu;
  switch (k) {
  case ENC_TREE:
    wall = enc_tree_run(c, &cpu, &c->allocs[k]);
    break;
  case ENC_TEXT:
    wall = enc_text_run(c, &cpu, &c->allocs[k]);
    break;
  case ENC_FIXED:
    wall = enc_fixed_run(c, &cpu, &c->allocs[k]);
    break;
  default:
    wall = dec_text_run(c, w, &cpu, &c->allocs[k]);
    break;
  }
  if (r >= 0) {
    c->wall[k][r] = wall;
    c->cpu[k][r] = cpu;
  }
}

static void report(pb_case *c, int reps) {
  double wall[NKINDS], cpu[NKINDS];
  int k;
  printf("  %-5s %5zu %6zu", c->name, c->text_len, c->len);
  for (k = 0; k < NKINDS; k++) {
    char cell[48];
    wall[k] = bench_median(c->wall[k], (size_t)reps);
    cpu[k] = bench_median(c->cpu[k], (size_t)reps);
    snprintf(cell, sizeof cell, "%.1f (%.1f)", wall[k], cpu[k]);
    printf(" %19s", cell);
  }
  printf("   %.0f %.0f %.0f %.0f\n", c->allocs[0], c->allocs[1], c->allocs[2], c->allocs[3]);
  for (k = 0; k < NKINDS; k++) {
    printf("@ protobuf c %s.%s %zu %.2f ns/op\n", KIND_NAMES[k], c->name, c->len, wall[k]);
    printf("@ protobuf c cpu_%s.%s %zu %.2f ns/op\n", KIND_NAMES[k], c->name, c->len, cpu[k]);
    printf("@ protobuf c allocs_%s.%s %zu %.2f allocs/op\n", KIND_NAMES[k], c->name, c->len,
           c->allocs[k]);
  }
  printf("@ protobuf c check.%s %zu %lu fnv1a\n", c->name, c->len,
         (unsigned long)fnv1a(c->bytes, c->len));
  printf("@ protobuf c input.%s %zu %lu fnv1a\n", c->name, c->text_len,
         (unsigned long)fnv1a(c->text, c->text_len));
}

int main(int argc, char **argv) {
  int reps = 21, r, i, k;
  size_t iters = 10000;
  char area[8192];
  text_buf tb = {area, 0, sizeof area};
  pomelo_protos *protos;
  pomelo_json_writer *w;
  pomelo_pb_error e;
  pb_case cases[2];
  int rc;
  if (bench_reps_iters(argc, argv, "bench-protobuf", &reps, &iters, 20) != 0) {
    return 2;
  }
  bench_alloc_init(&counter);
  rc = pomelo_protos_new(&protos, &counter.a, SERVER_PROTOS, strlen(SERVER_PROTOS), NULL, 0, NULL,
                         &e);
  if (rc) {
    fprintf(stderr, "bench-protobuf: protos: %s at %s\n", pomelo_strerror(rc), e.path);
    return 1;
  }
  rc = pomelo_json_writer_new(&w, &counter.a, 0);
  if (rc) {
    die("pomelo_json_writer_new", rc);
  }
  area_text(&tb);

  memset(cases, 0, sizeof cases);
  cases[0].name = "chat";
  cases[0].route = "onChat";
  cases[0].text = CHAT_TEXT;
  cases[0].iters = iters;
  cases[1].name = "area";
  cases[1].route = "onArea";
  cases[1].text = area;
  cases[1].iters = iters / 20;
  for (i = 0; i < 2; i++) {
    prepare(&cases[i], protos, w, reps);
    for (k = 0; k < NKINDS; k++) {
      run_one(&cases[i], k, w, -1); /* warm-up */
    }
  }
  /* Round-robin: every run of every case samples the same stretch of machine noise. */
  for (r = 0; r < reps; r++) {
    for (i = 0; i < 2; i++) {
      for (k = 0; k < NKINDS; k++) {
        run_one(&cases[i], k, w, r);
      }
    }
  }
  printf("libpomelo %s pomelo-protobuf benchmark (C; median of %d runs of %zu chat / %zu area "
         "operations, cases interleaved)\n",
         pomelo_version(), reps, cases[0].iters, cases[1].iters);
  printf("  enc_tree = measure + allocate + pomelo_pb_encode from a parsed tree; enc_text = "
         "pomelo_json_parse + enc_tree;\n  enc_fixed = one pomelo_pb_encode into a large buffer; "
         "dec_text = pomelo_pb_decode to JSON text\n");
  printf("  wall ns/op (cpu ns/op), then allocations per operation\n");
  printf("  %-5s %5s %6s %19s %19s %19s %19s   %s\n", "msg", "json", "bytes", "enc_tree",
         "enc_text", "enc_fixed", "dec_text", "allocs/op");
  for (i = 0; i < 2; i++) {
    report(&cases[i], reps);
  }
  for (i = 0; i < 2; i++) {
    pomelo_json_doc_del(cases[i].doc);
    free(cases[i].bytes);
    for (k = 0; k < NKINDS; k++) {
      free(cases[i].wall[k]);
      free(cases[i].cpu[k]);
    }
  }
  pomelo_json_writer_del(w);
  pomelo_protos_del(protos);
  bench_alloc_fini(&counter);
  return 0;
}
