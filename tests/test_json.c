/* JSON: the strict reader (grammar, numbers, strings, UTF-8 and CESU-8, limits, offsets), the
 * writer (every call, misuse, escapes and doubles as JSON.stringify prints them), round trips,
 * the handshake body of a real server, and failing-allocator loops.
 * SPDX-License-Identifier: MIT
 */
#include <pomelo/json.h>

#include <float.h>
#include <locale.h>
#include <math.h>

#include "tap.h"
#include "testutil.h"

#define PM_ARRAY_LEN_(a) (sizeof(a) / sizeof((a)[0]))

/* ---------------------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------------------- */

/* A printable rendering of test input for test names (non-printables as \xNN, truncated). */
static const char *show(const char *s, size_t n) {
  static char buf[4][100];
  static int which;
  char *b = buf[which++ & 3];
  size_t i, o = 0;
  for (i = 0; i < n && o < sizeof(buf[0]) - 8; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c < 0x7F) {
      b[o++] = (char)c;
    } else {
      o += (size_t)snprintf(b + o, 5, "\\x%02x", c);
    }
  }
  if (i < n) {
    memcpy(b + o, "...", 3);
    o += 3;
  }
  b[o] = '\0';
  return b;
}

/* Parses a copy of the input in an exact-size heap block, so that reads past the end are caught
 * by sanitizers, then frees the copy (the document must not point into the input). */
static int parse_copy(const char *text, size_t len, const pomelo_json_options *opts,
                      const pomelo_allocator *alloc, pomelo_json_doc **doc, size_t *off) {
  char *copy = malloc(len ? len : 1);
  int rc;
  if (len) {
    memcpy(copy, text, len);
  }
  rc = pomelo_json_parse(doc, alloc, copy, len, opts, off);
  memset(copy, 'X', len); /* anything still pointing into the input would now see X */
  free(copy);
  return rc;
}

/* Writes `v` compactly with a fresh writer into buf (NUL-terminated); returns the write_value
 * result and the length in *len. */
static int write_to(const pomelo_json_value *v, char *buf, size_t cap, size_t *len) {
  pomelo_json_writer *w = NULL;
  const char *d;
  size_t n = 0;
  int rc = pomelo_json_writer_new(&w, NULL, 0);
  if (rc != 0) {
    return rc;
  }
  rc = pomelo_json_write_value(w, v);
  d = pomelo_json_writer_data(w, &n);
  if (n >= cap) {
    n = cap - 1;
  }
  memcpy(buf, d, n);
  buf[n] = '\0';
  *len = n;
  pomelo_json_writer_del(w);
  return rc;
}

static pomelo_json_options opts_mode(int strict) {
  pomelo_json_options o;
  pomelo_json_options_default(&o);
  o.utf8 = strict ? POMELO_JSON_UTF8_STRICT : POMELO_JSON_UTF8_REPAIR;
  return o;
}

/* ---------------------------------------------------------------------------------------------
 * The grammar table: y_ cases must parse (and write back as `out`), n_ cases must fail with
 * `rc` at offset `off`.
 * ------------------------------------------------------------------------------------------- */

enum { BOTH = 0, REPAIR = 1, STRICT = 2 };

typedef struct jcase {
  const char *text;
  size_t len;
  int mode; /* the UTF-8 modes the case applies to */
  int rc;
  long off; /* expected error offset */
  const char *out;
  size_t out_len;
} jcase;

#define L_(s) s, sizeof(s) - 1
#define Y(t)                                                                                       \
  { L_(t), BOTH, 0, -1, L_(t) } /* compact: writes back the same */
#define YW(t, o)                                                                                   \
  { L_(t), BOTH, 0, -1, L_(o) } /* writes back as o */
#define YM(m, t, o)                                                                                \
  { L_(t), m, 0, -1, L_(o) } /* only in mode m */
#define N(t, rc, off)                                                                              \
  { L_(t), BOTH, rc, off, NULL, 0 } /* fails in both modes */
#define NM(m, t, rc, off)                                                                          \
  { L_(t), m, rc, off, NULL, 0 } /* fails in mode m */
#define SYN POMELO_ERR_JSON_SYNTAX
#define U8 POMELO_ERR_JSON_UTF8

static const jcase cases[] = {
    /* structure */
    Y("[]"),
    Y("{}"),
    Y("[[]]"),
    Y("[{}]"),
    Y("{\"a\":[]}"),
    Y("{\"a\":{}}"),
    Y("[1,2,3]"),
    Y("{\"a\":1,\"b\":2}"),
    Y("[null,true,false]"),
    Y("{\"\":0}"),
    Y("[[[[[[]]]]]]"),
    Y("[[],{},[{}],{\"x\":[[]]}]"),
    Y("{\"b\":1,\"a\":[true,false,null,\"x\\ny\"],\"\":{}}"), /* JSON.stringify's output */
    Y("{\"a\":1,\"a\":2}"),
    YW(" [ 1 , 2 ] ", "[1,2]"),
    YW("\t\n\r [\n]\r\n", "[]"),
    YW("{ \"a\" : 1 , \"b\" : [ ] }", "{\"a\":1,\"b\":[]}"),
    YW("[ ]", "[]"),
    YW("{ }", "{}"),
    YW("\n{\n\"k\"\n:\n\"v\"\n}\n", "{\"k\":\"v\"}"),
    /* scalars at the top */
    Y("1"),
    Y("-1"),
    Y("0"),
    Y("\"s\""),
    Y("true"),
    Y("false"),
    Y("null"),
    YW(" 1 ", "1"),
    YW(" null\n", "null"),
    /* numbers: the lexeme is kept */
    Y("-0"),
    Y("1E5"),
    Y("1e5"),
    Y("1e+5"),
    Y("1E-5"),
    Y("1.5"),
    Y("-1.5e-10"),
    Y("0.0"),
    Y("0e0"),
    Y("-0.0e-0"),
    Y("1e400"),
    Y("-1e400"),
    Y("1e-400"),
    Y("123456789012345678901234567890"),
    Y("1.7976931348623157e308"),
    Y("5e-324"),
    Y("2.2250738585072014e-308"),
    Y("0.000000000000000000000000000001"),
    Y("9223372036854775807"),
    Y("-9223372036854775808"),
    Y("18446744073709551616"),
    Y("1.0"),
    Y("[0,-0,0.5,-0.5,10,1e1,1E+1,1e-1]"),
    Y("1e999999999999999999999999"),
    /* strings */
    Y("\"\""),
    Y("\"abc\""),
    YW("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\\"\\\\/\\b\\f\\n\\r\\t\""),
    Y("\"\\u0000\""),
    Y("\"a\\u0000b\""),
    YW("\"\\u0041\"", "\"A\""),
    YW("\"\\u00e9\\u00E9\"", "\"\xc3\xa9\xc3\xa9\""),
    YW("\"\\u20ac\"", "\"\xe2\x82\xac\""),
    YW("\"\\uffff\"", "\"\xef\xbf\xbf\""),
    YW("\"\\uD83D\\uDE00\"", "\"\xf0\x9f\x98\x80\""),
    YW("\"\\ud83d\\ude00\"", "\"\xf0\x9f\x98\x80\""),
    YW("\"\\uDBFF\\uDFFF\"", "\"\xf4\x8f\xbf\xbf\""),
    YW("\"\\uD800\\uDC00\"", "\"\xf0\x90\x80\x80\""),
    YW("\"\\u001F\"", "\"\\u001f\""),
    Y("\"\\u001f\""),
    YW("\"\\u0008\\u000C\"", "\"\\b\\f\""),
    YW("\"\\u007f\"", "\"\x7f\""),
    Y("\"\x7f\""),
    YW("\"\\u2028\"", "\"\xe2\x80\xa8\""),
    Y("\"/\""),
    Y("\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\""),
    Y("\"\xc2\x80\xdf\xbf\""),
    Y("\"\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbf\""),
    Y("\"\xf0\x90\x80\x80\xf4\x8f\xbf\xbf\""),
    Y("\"\xef\xbb\xbf\""), /* a BOM inside a string is just U+FEFF */
    Y("[\"a\",\"b\"]"),
    Y("{\"\xc3\xa9\":\"\xe2\x82\xac\"}"),
    /* surrogates, REPAIR: CESU-8 pairs combine, lone halves become U+FFFD */
    YM(REPAIR, "\"\xed\xa0\xbd\xed\xb8\x80\"", "\"\xf0\x9f\x98\x80\""),
    YM(REPAIR, "\"a\xed\xa0\xbd\xed\xb8\x80z\"", "\"a\xf0\x9f\x98\x80z\""),
    YM(REPAIR, "\"\xed\xaf\xbf\xed\xbf\xbf\"", "\"\xf4\x8f\xbf\xbf\""),
    YM(REPAIR, "\"\xed\xa0\x80\"", "\"\xef\xbf\xbd\""),
    YM(REPAIR, "\"\xed\xb0\x80x\"", "\"\xef\xbf\xbdx\""),
    YM(REPAIR, "\"\xed\xb8\x80\xed\xa0\xbd\"", "\"\xef\xbf\xbd\xef\xbf\xbd\""),
    YM(REPAIR, "\"\xed\xa0\x80\xed\xa0\xbd\xed\xb8\x80\"", "\"\xef\xbf\xbd\xf0\x9f\x98\x80\""),
    YM(REPAIR, "\"\xed\xa0\x80\xed\x9f\xbf\"", "\"\xef\xbf\xbd\xed\x9f\xbf\""),
    YM(REPAIR, "\"\\ud800\"", "\"\xef\xbf\xbd\""),
    YM(REPAIR, "\"\\udc00\"", "\"\xef\xbf\xbd\""),
    YM(REPAIR, "\"\\udfff\\udbff\"", "\"\xef\xbf\xbd\xef\xbf\xbd\""),
    YM(REPAIR, "\"\\ud800\\u0041\"",
       "\"\xef\xbf\xbd"
       "A\""),
    YM(REPAIR, "\"\\ud800\\ud800\\udc00\"", "\"\xef\xbf\xbd\xf0\x90\x80\x80\""),
    YM(REPAIR, "\"\\ud800x\"", "\"\xef\xbf\xbdx\""),
    YM(REPAIR, "\"\\ud800\\\"\"", "\"\xef\xbf\xbd\\\"\""),
    YM(REPAIR, "\"\\ud800\\n\"", "\"\xef\xbf\xbd\\n\""),
    /* a raw half next to an escaped half is not a pair */
    YM(REPAIR, "\"\xed\xa0\xbd\\ude00\"", "\"\xef\xbf\xbd\xef\xbf\xbd\""),
    YM(REPAIR, "\"\\ud83d\xed\xb8\x80\"", "\"\xef\xbf\xbd\xef\xbf\xbd\""),
    YM(REPAIR, "{\"\xed\xa0\xbd\xed\xb8\x80\":1}", "{\"\xf0\x9f\x98\x80\":1}"),
    /* surrogates, STRICT */
    NM(STRICT, "\"\xed\xa0\xbd\xed\xb8\x80\"", U8, 1),
    NM(STRICT, "\"a\xed\xa0\x80\"", U8, 2),
    NM(STRICT, "\"\xed\xbf\xbf\"", U8, 1),
    NM(STRICT, "\"\\ud800\"", U8, 1),
    NM(STRICT, "\"ab\\udc00\"", U8, 3),
    NM(STRICT, "\"\\ud800\\u0041\"", U8, 1),
    NM(STRICT, "\"\\ud800\\uzzzz\"", U8, 1),
    NM(STRICT, "[\"ok\",\"\\ud83d\\ude00\",\"\\udc00\"]", U8, 22),
    NM(STRICT, "{\"\\ud800\":1}", U8, 2),
    NM(REPAIR, "\"\\ud800\\uzzzz\"", SYN, 7),
    /* structure errors */
    N("", SYN, 0),
    N(" ", SYN, 1),
    N("\n\t", SYN, 2),
    N("[", SYN, 1),
    N("]", SYN, 0),
    N("{", SYN, 1),
    N("}", SYN, 0),
    N("[1", SYN, 2),
    N("[1,", SYN, 3),
    N("[1,]", SYN, 3),
    N("[,1]", SYN, 1),
    N("[,]", SYN, 1),
    N("[1,,2]", SYN, 3),
    N("[1 2]", SYN, 3),
    N("{\"a\":1,}", SYN, 7),
    N("{,}", SYN, 1),
    N("{\"a\"}", SYN, 4),
    N("{\"a\":}", SYN, 5),
    N("{\"a\" 1}", SYN, 5),
    N("{\"a\"::1}", SYN, 5),
    N("{\"a\":1 \"b\":2}", SYN, 7),
    N("{\"a\":1", SYN, 6),
    N("{\"a\"", SYN, 4),
    N("{1:1}", SYN, 1),
    N("{a:1}", SYN, 1),
    N("{null:1}", SYN, 1),
    N("{'a':1}", SYN, 1),
    N("['a']", SYN, 1),
    N("[1]]", SYN, 3),
    N("[1]x", SYN, 3),
    N("1 2", SYN, 2),
    N("{}{}", SYN, 2),
    N("[][]", SYN, 2),
    N("[}", SYN, 1),
    N("{]", SYN, 1),
    N("[1}", SYN, 2),
    N("{\"a\":1]", SYN, 6),
    N("[[]", SYN, 3),
    N("\xef\xbb\xbf[]", SYN, 0),
    N("/*c*/[]", SYN, 0),
    N("[]//c", SYN, 2),
    N("[1]#", SYN, 3),
    N("[1,/**/2]", SYN, 3),
    N("\f[]", SYN, 0),
    N("[\v]", SYN, 1),
    N("[\f]", SYN, 1),
    N("\x00", SYN, 0),
    N("[]\x00", SYN, 2),
    N("\xc2\xa0[]", SYN, 0),
    N("\xc3\xa9", SYN, 0),
    N("[1]\xe3\x80\x80", SYN, 3),
    N("(1)", SYN, 0),
    N("<>", SYN, 0),
    /* literals */
    N("tru", SYN, 3),
    N("t", SYN, 1),
    N("True", SYN, 0),
    N("TRUE", SYN, 0),
    N("nul", SYN, 3),
    N("nulll", SYN, 4),
    N("falsy", SYN, 4),
    N("fals", SYN, 4),
    N("[t]", SYN, 2),
    N("[truex]", SYN, 5),
    N("NaN", SYN, 0),
    N("nan", SYN, 1),
    N("Infinity", SYN, 0),
    N("-Infinity", SYN, 1),
    N("[-NaN]", SYN, 2),
    N("undefined", SYN, 0),
    /* numbers */
    N("01", SYN, 1),
    N("-01", SYN, 2),
    N("00", SYN, 1),
    N("[00]", SYN, 2),
    N("+1", SYN, 0),
    N("[+1]", SYN, 1),
    N(".5", SYN, 0),
    N("-.5", SYN, 1),
    N("5.", SYN, 2),
    N("[5.]", SYN, 3),
    N("1.e5", SYN, 2),
    N("0.e1", SYN, 2),
    N("1e", SYN, 2),
    N("1e+", SYN, 3),
    N("1E-", SYN, 3),
    N("1ee5", SYN, 2),
    N("1e5e5", SYN, 3),
    N("1e5.5", SYN, 3),
    N("1.5.5", SYN, 3),
    N("-", SYN, 1),
    N("--1", SYN, 1),
    N("- 1", SYN, 1),
    N("[-]", SYN, 2),
    N("0x10", SYN, 1),
    N("0X1", SYN, 1),
    N("1_000", SYN, 1),
    N("1,000", SYN, 1),
    N("[1.]", SYN, 3),
    N("[.5]", SYN, 1),
    N("[01]", SYN, 2),
    N("\xd9\xa1", SYN, 0),
    N("1\x00", SYN, 1),
    /* strings */
    N("\"abc", SYN, 4),
    N("\"", SYN, 1),
    N("[\"a]", SYN, 4),
    N("\"\\", SYN, 1),
    N("\"ab\\", SYN, 3),
    N("\"\\\"", SYN, 3),
    N("\"\\x\"", SYN, 1),
    N("\"\\u12\"", SYN, 1),
    N("\"\\u12", SYN, 1),
    N("\"\\u12G4\"", SYN, 1),
    N("\"\\U0041\"", SYN, 1),
    N("\"\\'\"", SYN, 1),
    N("\"\\a\"", SYN, 1),
    N("\"\\0\"", SYN, 1),
    N("\"\\u-123\"", SYN, 1),
    N("\"\\u 123\"", SYN, 1),
    N("\"a\x01"
      "b\"",
      SYN, 2),
    N("\"\x00\"", SYN, 1),
    N("\"\t\"", SYN, 1),
    N("\"\n\"", SYN, 1),
    N("\"\r\"", SYN, 1),
    N("\"\x1f\"", SYN, 1),
    N("'abc'", SYN, 0),
    N("[\"a\" \"b\"]", SYN, 5),
    N("[\"a\":1]", SYN, 4),
    N("\"\x01", SYN, 1),
    /* invalid UTF-8 in strings: the offset of the ill-formed sequence */
    N("\"\x80\"", U8, 1),
    N("\"\xbf\"", U8, 1),
    N("\"a\x80\x80\"", U8, 2),
    N("\"\xc0\x80\"", U8, 1),
    N("\"\xc1\xbf\"", U8, 1),
    N("\"\xe0\x80\x80\"", U8, 1),
    N("\"\xe0\x9f\xbf\"", U8, 1),
    N("\"\xf0\x80\x80\x80\"", U8, 1),
    N("\"\xf0\x8f\xbf\xbf\"", U8, 1),
    N("\"\xf4\x90\x80\x80\"", U8, 1),
    N("\"\xf5\x80\x80\x80\"", U8, 1),
    N("\"\xf7\xbf\xbf\xbf\"", U8, 1),
    N("\"\xf8\x88\x80\x80\x80\"", U8, 1),
    N("\"\xfc\x84\x80\x80\x80\x80\"", U8, 1),
    N("\"\xfe\"", U8, 1),
    N("\"\xff\"", U8, 1),
    N("\"\xc3\"", U8, 1),
    N("\"\xe2\x82\"", U8, 1),
    N("\"\xf0\x9f\x98\"", U8, 1),
    N("\"\xc3(\"", U8, 1),
    N("\"\xe2(\xa1\"", U8, 1),
    N("\"\xe2\x82(\"", U8, 1),
    N("\"\xf0\x9f\x98(\"", U8, 1),
    N("\"ab\xe2\x82", U8, 3),
    N("\"\xc3", U8, 1),
    N("{\"\xc0\xaf\":1}", U8, 2),
    N("[\"ok\",\"\xa0\xa1\"]", U8, 7),
    /* CESU-8 halves that are cut short are invalid UTF-8 in both modes */
    N("\"\xed\xa0\"", U8, 1),
    NM(REPAIR, "\"\xed\xa0\xbd\xed\xb8\"", U8, 4),
    NM(STRICT, "\"\xed\xa0\xbd\xed\xb8\"", U8, 1),
};

static void test_table(void) {
  size_t i;
  for (i = 0; i < PM_ARRAY_LEN_(cases); i++) {
    const jcase *c = &cases[i];
    int strict;
    for (strict = 0; strict <= 1; strict++) {
      pomelo_json_options o = opts_mode(strict);
      pomelo_json_doc *doc = (pomelo_json_doc *)&o; /* must be reset to NULL on failure */
      size_t off = 12345;
      int rc;
      const char *mname = strict ? "strict" : "repair";
      if ((c->mode == REPAIR && strict) || (c->mode == STRICT && !strict)) {
        continue;
      }
      rc = parse_copy(c->text, c->len, &o, NULL, &doc, &off);
      if (c->rc == 0) {
        if (rc != 0) {
          is_int(rc, 0, "y %s [%s] parses", show(c->text, c->len), mname);
          diag("error offset %zu", off);
          continue;
        }
        {
          char buf[512];
          size_t n = 0;
          int wrc = write_to(pomelo_json_root(doc), buf, sizeof buf, &n);
          if (wrc != 0 || n != c->out_len || memcmp(buf, c->out, n) != 0) {
            is_int(wrc, 0, "y %s [%s] writes", show(c->text, c->len), mname);
            is_mem(buf, n, c->out, c->out_len, "y %s [%s] writes back", show(c->text, c->len),
                   mname);
          } else {
            ok(1, "y %s [%s] -> %s", show(c->text, c->len), mname, show(buf, n));
          }
        }
        pomelo_json_doc_del(doc);
      } else {
        int good = rc == c->rc && doc == NULL && (c->off < 0 || (long)off == c->off);
        ok(good, "n %s [%s] fails with %s at %ld", show(c->text, c->len), mname,
           pomelo_err_name(c->rc), c->off);
        if (!good) {
          diag("got %s at %zu", pomelo_err_name(rc), off);
          if (rc == 0) {
            pomelo_json_doc_del(doc);
          }
        }
        ok(off <= c->len, "n %s [%s] offset within the input", show(c->text, c->len), mname);
      }
    }
  }
}

/* write_raw validates with the same code: it must agree with strict parsing on every case. */
static void test_table_raw(void) {
  size_t i;
  int agree = 1;
  for (i = 0; i < PM_ARRAY_LEN_(cases); i++) {
    const jcase *c = &cases[i];
    pomelo_json_writer *w = NULL;
    pomelo_json_options o = opts_mode(1);
    pomelo_json_doc *doc = NULL;
    int prc, wrc;
    char *copy = malloc(c->len ? c->len : 1);
    memcpy(copy, c->text, c->len);
    prc = pomelo_json_parse(&doc, NULL, copy, c->len, &o, NULL);
    pomelo_json_doc_del(doc);
    pomelo_json_writer_new(&w, NULL, 0);
    wrc = pomelo_json_write_raw(w, copy, c->len);
    if (wrc != prc) {
      agree = 0;
      diag("raw %s: parse %s, write_raw %s", show(c->text, c->len), pomelo_err_name(prc),
           pomelo_err_name(wrc));
    } else if (wrc == 0) {
      size_t n, a = 0, b = c->len;
      const char *d = pomelo_json_writer_data(w, &n);
      while (a < b && strchr(" \t\r\n", c->text[a])) {
        a++;
      }
      while (b > a && strchr(" \t\r\n", c->text[b - 1])) {
        b--;
      }
      if (n != b - a || memcmp(d, c->text + a, n) != 0) {
        agree = 0;
        diag("raw %s: wrote %s", show(c->text, c->len), show(d, n));
      }
    }
    pomelo_json_writer_del(w);
    free(copy);
  }
  ok(agree, "write_raw accepts and rejects exactly what strict parsing does (%zu cases)",
     PM_ARRAY_LEN_(cases));
}

/* ---------------------------------------------------------------------------------------------
 * Numbers
 * ------------------------------------------------------------------------------------------- */

typedef struct ncase {
  const char *text;
  double d;
  int irc; /* pomelo_json_int64 result */
  int64_t i;
} ncase;

static void test_numbers(void) {
  static const ncase nc[] = {
      {"0", 0.0, 0, 0},
      {"-0", -0.0, 0, 0},
      {"-0.0e-5", -0.0, 0, 0},
      {"0e999999999999999999999", 0.0, 0, 0},
      {"1e3", 1000.0, 0, 1000},
      {"1E5", 100000.0, 0, 100000},
      {"2.0", 2.0, 0, 2},
      {"-2.000", -2.0, 0, -2},
      {"0.5e1", 5.0, 0, 5},
      {"10e-1", 1.0, 0, 1},
      {"100e-2", 1.0, 0, 1},
      {"1200e-2", 12.0, 0, 12},
      {"123e-2", 1.23, POMELO_ERR_JSON_TYPE, 0},
      {"2.5", 2.5, POMELO_ERR_JSON_TYPE, 0},
      {"-2.5", -2.5, POMELO_ERR_JSON_TYPE, 0},
      {"0.1", 0.1, POMELO_ERR_JSON_TYPE, 0},
      {"1e-400", 0.0, POMELO_ERR_JSON_TYPE, 0},
      {"-1e-400", -0.0, POMELO_ERR_JSON_TYPE, 0},
      {"1e400", HUGE_VAL, POMELO_ERR_JSON_TYPE, 0},
      {"-1e400", -HUGE_VAL, POMELO_ERR_JSON_TYPE, 0},
      {"1e999999999999999999999999", HUGE_VAL, POMELO_ERR_JSON_TYPE, 0},
      {"1e18", 1e18, 0, 1000000000000000000},
      {"1e19", 1e19, POMELO_ERR_JSON_TYPE, 0},
      {"9223372036854775807", 9223372036854775807.0, 0, INT64_MAX},
      {"9223372036854775807.0", 9223372036854775807.0, 0, INT64_MAX},
      {"922337203685477580.7e1", 9223372036854775807.0, 0, INT64_MAX},
      {"9223372036854775808", 9223372036854775808.0, POMELO_ERR_JSON_TYPE, 0},
      {"-9223372036854775808", -9223372036854775808.0, 0, INT64_MIN},
      {"-9223372036854775809", -9223372036854775808.0, POMELO_ERR_JSON_TYPE, 0},
      {"18446744073709551616", 18446744073709551616.0, POMELO_ERR_JSON_TYPE, 0},
      {"123456789012345678901234567890", 123456789012345678901234567890.0, POMELO_ERR_JSON_TYPE, 0},
      {"1.7976931348623157e308", DBL_MAX, POMELO_ERR_JSON_TYPE, 0},
      {"1.7976931348623159e308", HUGE_VAL, POMELO_ERR_JSON_TYPE, 0},
      {"2.2250738585072014e-308", DBL_MIN, POMELO_ERR_JSON_TYPE, 0},
      {"5e-324", 4.9406564584124654e-324, POMELO_ERR_JSON_TYPE, 0},
      {"4.9e-324", 4.9406564584124654e-324, POMELO_ERR_JSON_TYPE, 0},
      {"2e-324", 0.0, POMELO_ERR_JSON_TYPE, 0},
      {"0.1000000000000000055511151231257827021181583404541015625", 0.1, POMELO_ERR_JSON_TYPE, 0},
      {"9007199254740993", 9007199254740992.0, 0, 9007199254740993},
      {"9007199254740995", 9007199254740996.0, 0, 9007199254740995},
      {"-1.5e-10", -1.5e-10, POMELO_ERR_JSON_TYPE, 0},
      {"1E+2", 100.0, 0, 100},
  };
  size_t i;
  for (i = 0; i < PM_ARRAY_LEN_(nc); i++) {
    const ncase *c = &nc[i];
    pomelo_json_doc *doc = NULL;
    const pomelo_json_value *v;
    size_t n = 0;
    int64_t iv = -7;
    double d;
    int rc;
    rc = parse_copy(c->text, strlen(c->text), NULL, NULL, &doc, NULL);
    if (rc != 0) {
      is_int(rc, 0, "number %s parses", c->text);
      continue;
    }
    v = pomelo_json_root(doc);
    is_int(pomelo_json_typeof(v), POMELO_JSON_NUMBER, "%s is a number", c->text);
    d = pomelo_json_number(v);
    ok(memcmp(&d, &c->d, sizeof d) == 0, "%s reads as %.17g", c->text, c->d);
    if (memcmp(&d, &c->d, sizeof d) != 0) {
      diag("got %.17g", d);
    }
    rc = pomelo_json_int64(v, &iv);
    if (c->irc == 0) {
      ok(rc == 0 && iv == c->i, "int64(%s) = %" PRId64, c->text, c->i);
    } else {
      ok(rc == c->irc && iv == -7, "int64(%s) is not an int64 and leaves *out alone", c->text);
    }
    is_mem(pomelo_json_number_text(v, &n), n, c->text, strlen(c->text), "number_text(%s)", c->text);
    pomelo_json_doc_del(doc);
  }
}

/* Long lexemes: the conversion keeps 780 significant digits and a sticky digit for the rest. */
static void test_long_numbers(void) {
  static char buf[4096];
  pomelo_json_doc *doc = NULL;
  size_t n;
  int64_t iv;
  /* 1 followed by 1000 zeros, e-1000: exactly 1 */
  buf[0] = '1';
  memset(buf + 1, '0', 1000);
  n = 1001 + (size_t)sprintf(buf + 1001, "e-1000");
  is_int(parse_copy(buf, n, NULL, NULL, &doc, NULL), 0, "1000-digit number parses");
  ok(pomelo_json_number(pomelo_json_root(doc)) == 1.0, "1[000...]e-1000 is 1.0");
  ok(pomelo_json_int64(pomelo_json_root(doc), &iv) == 0 && iv == 1, "... and the integer 1");
  pomelo_json_doc_del(doc);
  /* 2^53 + 1 is the midpoint between 2^53 and 2^53 + 2: ties go to even (2^53)... */
  memcpy(buf, "9007199254740993", 16);
  memset(buf + 16, '0', 800);
  n = 816 + (size_t)sprintf(buf + 816, "e-800");
  is_int(parse_copy(buf, n, NULL, NULL, &doc, NULL), 0, "midpoint with 800 zeros parses");
  ok(pomelo_json_number(pomelo_json_root(doc)) == 9007199254740992.0, "exact midpoint: to even");
  pomelo_json_doc_del(doc);
  /* ... but a 1 far beyond the kept digits puts it above the midpoint. */
  memcpy(buf, "9007199254740993", 16);
  memset(buf + 16, '0', 800);
  buf[816] = '1';
  n = 817 + (size_t)sprintf(buf + 817, "e-801");
  is_int(parse_copy(buf, n, NULL, NULL, &doc, NULL), 0, "midpoint plus a far tail parses");
  ok(pomelo_json_number(pomelo_json_root(doc)) == 9007199254740994.0,
     "a nonzero digit 817 places down rounds up (sticky digit)");
  ok(pomelo_json_int64(pomelo_json_root(doc), &iv) == POMELO_ERR_JSON_TYPE, "not an integer");
  pomelo_json_doc_del(doc);
  /* the same below the midpoint, with fraction digits */
  memcpy(buf, "9007199254740992.", 17);
  memset(buf + 17, '9', 900);
  n = 917;
  is_int(parse_copy(buf, n, NULL, NULL, &doc, NULL), 0, "900 fraction digits parse");
  ok(pomelo_json_number(pomelo_json_root(doc)) == 9007199254740992.0,
     "2^53 + 0.999... rounds down to 2^53");
  pomelo_json_doc_del(doc);
  /* 0.000...0001 with 2000 zeros underflows; 1 with 400 zeros overflows */
  memcpy(buf, "0.", 2);
  memset(buf + 2, '0', 2000);
  buf[2002] = '1';
  is_int(parse_copy(buf, 2003, NULL, NULL, &doc, NULL), 0, "2000 leading zeros parse");
  ok(pomelo_json_number(pomelo_json_root(doc)) == 0.0, "underflows to 0");
  pomelo_json_doc_del(doc);
  buf[0] = '-';
  buf[1] = '1';
  memset(buf + 2, '0', 400);
  is_int(parse_copy(buf, 402, NULL, NULL, &doc, NULL), 0, "401-digit integer parses");
  ok(pomelo_json_number(pomelo_json_root(doc)) == -HUGE_VAL, "overflows to -HUGE_VAL");
  ok(pomelo_json_int64(pomelo_json_root(doc), &iv) == POMELO_ERR_JSON_TYPE, "not an int64");
  pomelo_json_doc_del(doc);
}

/* ---------------------------------------------------------------------------------------------
 * Accessors and decoded strings
 * ------------------------------------------------------------------------------------------- */

static void test_accessors(void) {
  static const char text[] =
      "{\"b\":1,\"a\":[true,false,null,\"s\"],\"b\":3,\"k\\u0000z\":\"x\\u0000y\",\"\":{}}";
  pomelo_json_doc *doc = NULL;
  const pomelo_json_value *r, *a, *v;
  size_t n = 99;
  const char *s;
  int64_t iv;
  char out[256];
  is_int(parse_copy(text, sizeof text - 1, NULL, NULL, &doc, NULL), 0, "object parses");
  r = pomelo_json_root(doc);
  is_int(pomelo_json_typeof(r), POMELO_JSON_OBJECT, "root is an object");
  is_int(pomelo_json_len(r), 5, "5 members, duplicates included");
  is_str(pomelo_json_key_at(r, 0, &n), "b", "key 0 is b");
  is_str(pomelo_json_key_at(r, 1, NULL), "a", "key 1 is a");
  is_str(pomelo_json_key_at(r, 2, NULL), "b", "key 2 is b again");
  ok(pomelo_json_key_at(r, 5, NULL) == NULL, "key_at out of range");
  ok(pomelo_json_int64(pomelo_json_at(r, 0), &iv) == 0 && iv == 1, "at(0) is the first b (1)");
  ok(pomelo_json_int64(pomelo_json_get(r, "b"), &iv) == 0 && iv == 3, "get(b): the last wins");
  ok(pomelo_json_get(r, "c") == NULL, "get(c) is absent");
  ok(pomelo_json_get(r, "k") == NULL, "get(k) does not match a key with a NUL in it");
  v = pomelo_json_get_n(r, "k\0z", 3);
  s = pomelo_json_string(v, &n);
  ok(s && n == 3 && memcmp(s, "x\0y", 4) == 0, "get_n with a NUL; string with a NUL and a NUL end");
  s = pomelo_json_key_at(r, 3, &n);
  ok(s && n == 3 && memcmp(s, "k\0z", 4) == 0, "key with a NUL keeps its length");
  v = pomelo_json_get(r, "");
  is_int(pomelo_json_typeof(v), POMELO_JSON_OBJECT, "empty key found");
  is_int(pomelo_json_len(v), 0, "empty object");
  ok(pomelo_json_at(v, 0) == NULL, "empty object has no member 0");
  a = pomelo_json_get(r, "a");
  is_int(pomelo_json_typeof(a), POMELO_JSON_ARRAY, "a is an array");
  is_int(pomelo_json_len(a), 4, "4 elements");
  is_int(pomelo_json_typeof(pomelo_json_at(a, 0)), POMELO_JSON_BOOL, "bool");
  is_int(pomelo_json_bool(pomelo_json_at(a, 0)), 1, "true");
  is_int(pomelo_json_bool(pomelo_json_at(a, 1)), 0, "false");
  is_int(pomelo_json_typeof(pomelo_json_at(a, 2)), POMELO_JSON_NULL, "null");
  is_str(pomelo_json_string(pomelo_json_at(a, 3), NULL), "s", "string element");
  ok(pomelo_json_at(a, 4) == NULL, "at out of range");
  ok(pomelo_json_key_at(a, 0, NULL) == NULL, "key_at on an array");
  ok(pomelo_json_get(a, "0") == NULL, "get on an array");
  /* other-type answers */
  v = pomelo_json_at(a, 3);
  ok(pomelo_json_number(v) == 0.0 && pomelo_json_number_text(v, NULL) == NULL,
     "number of a string");
  ok(pomelo_json_int64(v, &iv) == POMELO_ERR_JSON_TYPE, "int64 of a string");
  ok(pomelo_json_bool(v) == 0 && pomelo_json_len(v) == 0, "bool and len of a string");
  ok(pomelo_json_string(a, NULL) == NULL, "string of an array");
  ok(pomelo_json_at(v, 0) == NULL, "at on a string");
  /* NULL is accepted everywhere */
  ok(pomelo_json_root(NULL) == NULL, "root(NULL)");
  ok(pomelo_json_typeof(NULL) == POMELO_JSON_NULL && pomelo_json_bool(NULL) == 0 &&
         pomelo_json_number(NULL) == 0.0 && pomelo_json_int64(NULL, &iv) == POMELO_ERR_JSON_TYPE &&
         pomelo_json_number_text(NULL, NULL) == NULL && pomelo_json_string(NULL, NULL) == NULL &&
         pomelo_json_len(NULL) == 0 && pomelo_json_at(NULL, 0) == NULL &&
         pomelo_json_key_at(NULL, 0, NULL) == NULL && pomelo_json_get(NULL, "a") == NULL &&
         pomelo_json_get(r, NULL) == NULL && pomelo_json_get_n(r, NULL, 1) == NULL,
     "accessors accept NULL");
  ok(pomelo_json_get(pomelo_json_get(r, "nope"), "x") == NULL, "lookups chain through NULL");
  /* written back: key order and duplicates kept, escapes canonical */
  is_int(write_to(r, out, sizeof out, &n), 0, "write_value");
  is_str(out, "{\"b\":1,\"a\":[true,false,null,\"s\"],\"b\":3,\"k\\u0000z\":\"x\\u0000y\",\"\":{}}",
         "written back with the same key order and duplicates");
  pomelo_json_doc_del(doc);
  pomelo_json_doc_del(NULL);
}

static void test_strings(void) {
  static const struct {
    const char *text;
    const char *want;
    size_t want_len;
  } sc[] = {
      {"\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t", 8},
      {"\"\\u0000\"", "\0", 1},
      {"\"\\u0041\\u00e9\\u20AC\"", "A\xc3\xa9\xe2\x82\xac", 6},
      {"\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80", 4},
      {"\"\xed\xa0\xbd\xed\xb8\x80\"", "\xf0\x9f\x98\x80", 4},
      {"\"\xed\xa0\x80\"", "\xef\xbf\xbd", 3},
      {"\"\\udc00\"", "\xef\xbf\xbd", 3},
      {"\"a b\"", "a b", 3},
  };
  size_t i;
  for (i = 0; i < PM_ARRAY_LEN_(sc); i++) {
    pomelo_json_doc *doc = NULL;
    size_t n = 0;
    const char *s;
    is_int(parse_copy(sc[i].text, strlen(sc[i].text), NULL, NULL, &doc, NULL), 0, "%s parses",
           show(sc[i].text, strlen(sc[i].text)));
    s = pomelo_json_string(pomelo_json_root(doc), &n);
    is_mem(s, n, sc[i].want, sc[i].want_len, "%s decodes", show(sc[i].text, strlen(sc[i].text)));
    ok(s && s[n] == '\0', "NUL-terminated");
    ok(s && pomelo_utf8_valid((const uint8_t *)s, n, NULL), "decoded string is valid UTF-8");
    pomelo_json_doc_del(doc);
  }
}

/* ---------------------------------------------------------------------------------------------
 * Limits: depth and size
 * ------------------------------------------------------------------------------------------- */

static char *nested(size_t depth, const char *inner) {
  size_t il = strlen(inner);
  char *s = malloc(2 * depth + il + 1);
  memset(s, '[', depth);
  memcpy(s + depth, inner, il);
  memset(s + depth + il, ']', depth);
  s[2 * depth + il] = '\0';
  return s;
}

static void test_limits(void) {
  pomelo_json_options o;
  pomelo_json_doc *doc = NULL;
  size_t off = 0;
  char *s;
  const pomelo_json_value *v;
  size_t d;

  s = nested(64, "");
  is_int(parse_copy(s, 128, NULL, NULL, &doc, &off), 0, "64 levels: accepted by default");
  for (v = pomelo_json_root(doc), d = 1; pomelo_json_len(v) == 1; v = pomelo_json_at(v, 0)) {
    d++;
  }
  is_int(d, 64, "64 levels in the tree");
  pomelo_json_doc_del(doc);
  free(s);
  s = nested(65, "");
  is_int(parse_copy(s, 130, NULL, NULL, &doc, &off), POMELO_ERR_JSON_DEPTH, "65 levels: DEPTH");
  is_int(off, 64, "at the 65th bracket");
  ok(doc == NULL, "no document");
  free(s);
  s = nested(63, "{\"a\":{}}");
  is_int(parse_copy(s, strlen(s), NULL, NULL, &doc, &off), POMELO_ERR_JSON_DEPTH,
         "objects count too");
  is_int(off, 68, "at the inner object");
  free(s);
  s = nested(63, "{\"a\":1}");
  is_int(parse_copy(s, strlen(s), NULL, NULL, &doc, &off), 0, "63 arrays and an object: 64");
  pomelo_json_doc_del(doc);
  free(s);

  pomelo_json_options_default(&o);
  is_int(o.max_depth, 64, "default max_depth 64");
  is_int(o.max_size, 1 << 20, "default max_size 1 MiB");
  is_int(o.utf8, POMELO_JSON_UTF8_REPAIR, "default REPAIR");
  pomelo_json_options_default(NULL);

  o.max_depth = 1;
  is_int(parse_copy("[1,{}]", 6, &o, NULL, &doc, &off), POMELO_ERR_JSON_DEPTH, "max_depth 1");
  is_int(off, 3, "at the object");
  is_int(parse_copy("[1,2]", 5, &o, NULL, &doc, &off), 0, "one level with max_depth 1");
  pomelo_json_doc_del(doc);
  o.max_depth = 0;
  is_int(parse_copy("[]", 2, &o, NULL, &doc, &off), POMELO_ERR_JSON_DEPTH, "max_depth 0: []");
  is_int(off, 0, "at 0");
  is_int(parse_copy("\"x\"", 3, &o, NULL, &doc, &off), 0, "max_depth 0: scalars only");
  pomelo_json_doc_del(doc);
  /* a depth error wins over a later syntax error, a syntax error over a later depth one */
  o.max_depth = 2;
  is_int(parse_copy("[[[x", 4, &o, NULL, &doc, &off), POMELO_ERR_JSON_DEPTH, "depth first");
  is_int(off, 2, "at the third bracket");
  is_int(parse_copy("[x[[", 4, &o, NULL, &doc, &off), POMELO_ERR_JSON_SYNTAX, "syntax first");
  is_int(off, 1, "at x");

  pomelo_json_options_default(&o);
  o.max_size = 3;
  is_int(parse_copy("[1]", 3, &o, NULL, &doc, &off), 0, "size at the limit");
  pomelo_json_doc_del(doc);
  is_int(parse_copy("[12]", 4, &o, NULL, &doc, &off), POMELO_ERR_JSON_TOO_LARGE,
         "size over the limit");
  is_int(off, 3, "offset: the first byte over the limit");
  ok(doc == NULL, "no document");
  is_int(parse_copy("[1] ", 4, &o, NULL, &doc, &off), POMELO_ERR_JSON_TOO_LARGE,
         "whitespace counts");
  o.max_size = 0;
  is_int(parse_copy("", 0, &o, NULL, &doc, &off), POMELO_ERR_JSON_SYNTAX, "max_size 0, empty");
  is_int(parse_copy("1", 1, &o, NULL, &doc, &off), POMELO_ERR_JSON_TOO_LARGE, "max_size 0, 1");
  is_int(off, 0, "offset 0");

  /* arguments */
  is_int(pomelo_json_parse(NULL, NULL, "1", 1, NULL, NULL), POMELO_ERR_INVALID_ARG, "out NULL");
  doc = (pomelo_json_doc *)&o;
  is_int(pomelo_json_parse(&doc, NULL, NULL, 1, NULL, &off), POMELO_ERR_INVALID_ARG,
         "text NULL with a length");
  ok(doc == NULL, "*out cleared");
  is_int(pomelo_json_parse(&doc, NULL, NULL, 0, NULL, &off), POMELO_ERR_JSON_SYNTAX,
         "text NULL, length 0: empty input");
  pomelo_json_options_default(&o);
  o.utf8 = (pomelo_json_utf8_mode)7;
  is_int(pomelo_json_parse(&doc, NULL, "1", 1, &o, NULL), POMELO_ERR_INVALID_ARG, "bad mode");
}

/* Deep nesting costs heap, not C stack: 100000 levels with the limits raised. */
static void test_deep(void) {
  enum { DEEP = 100000 };
  pomelo_json_options o;
  pomelo_json_doc *doc = NULL;
  pomelo_json_writer *w = NULL;
  char *s = nested(DEEP, "{\"k\":[1]}");
  size_t len = strlen(s), n = 0, off = 0;
  const char *d;
  pomelo_json_options_default(&o);
  o.max_depth = DEEP + 2;
  is_int(parse_copy(s, len, &o, NULL, &doc, &off), 0, "100002 levels parse");
  is_int(pomelo_json_writer_new(&w, NULL, DEEP + 2), 0, "deep writer");
  is_int(pomelo_json_write_value(w, pomelo_json_root(doc)), 0, "100002 levels write_value");
  d = pomelo_json_writer_data(w, &n);
  ok(n == len && memcmp(d, s, n) == 0, "written back identically");
  pomelo_json_writer_reset(w);
  is_int(pomelo_json_write_raw(w, s, len), 0, "write_raw validates 100002 levels");
  pomelo_json_writer_del(w);
  is_int(pomelo_json_writer_new(&w, NULL, DEEP + 1), 0, "writer one level short");
  is_int(pomelo_json_write_value(w, pomelo_json_root(doc)), POMELO_ERR_JSON_DEPTH,
         "write_value: DEPTH");
  pomelo_json_writer_reset(w);
  is_int(pomelo_json_write_raw(w, s, len), POMELO_ERR_JSON_DEPTH, "write_raw: DEPTH");
  pomelo_json_writer_del(w);
  pomelo_json_doc_del(doc);
  o.max_depth = DEEP;
  is_int(parse_copy(s, len, &o, NULL, &doc, &off), POMELO_ERR_JSON_DEPTH, "over the limit");
  is_int(off, DEEP, "at the bracket over the limit");
  free(s);
  /* unclosed: the error is at the end, after 1 MiB of brackets */
  s = malloc(1 << 20);
  memset(s, '[', 1 << 20);
  o.max_depth = 1u << 21;
  is_int(parse_copy(s, 1 << 20, &o, NULL, &doc, &off), POMELO_ERR_JSON_SYNTAX,
         "1 MiB of open brackets");
  is_int(off, 1 << 20, "at the end");
  free(s);
}

/* ---------------------------------------------------------------------------------------------
 * Round trips, and the handshake body a real pomelo 2.2.7 connector sent (trace CONN733)
 * ------------------------------------------------------------------------------------------- */

static const char conn733[] =
    "{\"code\":200,\"sys\":{\"heartbeat\":3,\"dict\":{\"chat.chatHandler.send\":1,\"connector."
    "entryHandler.enter\":2,\"gate.gateHandler.queryEntry\":3},\"routeToCode\":{\"chat."
    "chatHandler.send\":1,\"connector.entryHandler.enter\":2,\"gate.gateHandler.queryEntry\":3},"
    "\"codeToRoute\":{\"1\":\"chat.chatHandler.send\",\"2\":\"connector.entryHandler.enter\","
    "\"3\":\"gate.gateHandler.queryEntry\"},\"dictVersion\":\"s2r1qfKDrbhWCkA6uf+PTA==\","
    "\"useDict\":true,\"protos\":{\"server\":{\"onChat\":{\"msg\":{\"option\":\"required\","
    "\"type\":\"string\",\"tag\":1},\"from\":{\"option\":\"required\",\"type\":\"string\","
    "\"tag\":2},\"target\":{\"option\":\"required\",\"type\":\"string\",\"tag\":3},"
    "\"__messages\":{},\"__tags\":{\"1\":\"msg\",\"2\":\"from\",\"3\":\"target\"}}},"
    "\"client\":{},\"version\":\"2zWPnSlRsRxjqgcU215Uxg==\"},\"useProto\":true}}";

static void test_handshake(void) {
  pomelo_json_doc *doc = NULL;
  const pomelo_json_value *r, *sys;
  char out[1024];
  size_t n = 0;
  int64_t iv = 0;
  is_int(sizeof conn733 - 1, 0x2d9, "the vector is as long as its package header says (0x2d9)");
  is_int(parse_copy(conn733, sizeof conn733 - 1, NULL, NULL, &doc, NULL), 0,
         "CONN733 handshake parses");
  r = pomelo_json_root(doc);
  ok(pomelo_json_int64(pomelo_json_get(r, "code"), &iv) == 0 && iv == 200, "code 200");
  sys = pomelo_json_get(r, "sys");
  ok(pomelo_json_int64(pomelo_json_get(sys, "heartbeat"), &iv) == 0 && iv == 3, "heartbeat 3");
  is_str(pomelo_json_key_at(sys, 0, NULL), "heartbeat", "sys key order: heartbeat first");
  is_str(pomelo_json_key_at(sys, 7, NULL), "useProto", "... useProto last");
  is_str(pomelo_json_string(pomelo_json_get(sys, "dictVersion"), NULL),
         "s2r1qfKDrbhWCkA6uf+PTA==", "dictVersion");
  is_int(pomelo_json_bool(pomelo_json_get(sys, "useDict")), 1, "useDict");
  is_int(write_to(r, out, sizeof out, &n), 0, "write_value");
  is_mem(out, n, conn733, sizeof conn733 - 1, "CONN733 round-trips byte for byte");
  pomelo_json_doc_del(doc);
}

/* Parse, write, parse again, write again: the second output equals the first. */
static void test_idempotent(void) {
  static const char *inputs[] = {
      " { \"a\" : [ 1 , 2.50 , -0 , 1E+3 ] , \"b\" : \"\\u0041\\/\\ud83d\\ude00\" } ",
      "[\"\xed\xa0\xbd\xed\xb8\x80\",\"\xed\xa0\x80\",\"\\udc00\",\"\\u001F\\u007F\"]",
      "{\"x\":{\"x\":{\"x\":[[],{},\"\"]}},\"x\":null}",
  };
  size_t i;
  for (i = 0; i < PM_ARRAY_LEN_(inputs); i++) {
    pomelo_json_doc *d1 = NULL, *d2 = NULL;
    char o1[512], o2[512];
    size_t n1 = 0, n2 = 0;
    int rc = parse_copy(inputs[i], strlen(inputs[i]), NULL, NULL, &d1, NULL);
    rc = rc ? rc : write_to(pomelo_json_root(d1), o1, sizeof o1, &n1);
    rc = rc ? rc : parse_copy(o1, n1, NULL, NULL, &d2, NULL);
    rc = rc ? rc : write_to(pomelo_json_root(d2), o2, sizeof o2, &n2);
    is_int(rc, 0, "input %zu: parse/write/parse/write", i);
    is_mem(o2, n2, o1, n1, "input %zu: the output is a fixed point", i);
    ok(pomelo_utf8_valid((const uint8_t *)o1, n1, NULL), "input %zu: output is UTF-8", i);
    pomelo_json_doc_del(d1);
    pomelo_json_doc_del(d2);
  }
}

/* Values live in the document: the input buffer can go away (parse_copy already overwrites
 * and frees it), and so can other documents. */
static void test_lifetime(void) {
  pomelo_json_doc *a = NULL, *b = NULL;
  size_t n = 0;
  const char *s;
  is_int(parse_copy("{\"k\":\"value\",\"n\":12.5e1}", 24, NULL, NULL, &a, NULL), 0, "parses");
  parse_copy("[1]", 3, NULL, NULL, &b, NULL);
  pomelo_json_doc_del(b);
  s = pomelo_json_string(pomelo_json_get(pomelo_json_root(a), "k"), &n);
  is_mem(s, n, "value", 5, "string survives its input");
  s = pomelo_json_number_text(pomelo_json_get(pomelo_json_root(a), "n"), &n);
  is_mem(s, n, "12.5e1", 6, "number text survives its input");
  ok(s && s[n] == '\0', "number text is NUL-terminated");
  pomelo_json_doc_del(a);
}

/* ---------------------------------------------------------------------------------------------
 * Writer
 * ------------------------------------------------------------------------------------------- */

#define W_IS(w, want, ...)                                                                         \
  do {                                                                                             \
    size_t wl_ = 0;                                                                                \
    const char *wd_ = pomelo_json_writer_data((w), &wl_);                                          \
    is_mem(wd_, wl_, (want), strlen(want), __VA_ARGS__);                                           \
  } while (0)

static void test_writer_basic(void) {
  pomelo_json_writer *w = NULL;
  size_t n = 7;
  const char *d;
  is_int(pomelo_json_writer_new(NULL, NULL, 0), POMELO_ERR_INVALID_ARG, "writer_new(NULL)");
  is_int(pomelo_json_writer_new(&w, NULL, 0), 0, "writer_new");
  d = pomelo_json_writer_data(w, &n);
  ok(d && d[0] == '\0' && n == 0, "a new writer holds \"\"");
  is_int(pomelo_json_writer_complete(w), 0, "not complete when empty");
  is_int(pomelo_json_write_begin_object(w), 0, "begin_object");
  is_int(pomelo_json_write_key(w, "code", 4), 0, "key");
  is_int(pomelo_json_write_int64(w, 200), 0, "int64");
  is_int(pomelo_json_write_key(w, "a", 1), 0, "key");
  is_int(pomelo_json_write_begin_array(w), 0, "begin_array");
  is_int(pomelo_json_writer_complete(w), 0, "not complete inside");
  is_int(pomelo_json_write_null(w), 0, "null");
  is_int(pomelo_json_write_bool(w, 1), 0, "true");
  is_int(pomelo_json_write_bool(w, 0), 0, "false");
  is_int(pomelo_json_write_bool(w, 42), 0, "nonzero is true");
  is_int(pomelo_json_write_uint64(w, 7), 0, "uint64");
  is_int(pomelo_json_write_double(w, 1.5), 0, "double");
  is_int(pomelo_json_write_string(w, "s", 1), 0, "string");
  is_int(pomelo_json_write_string(w, NULL, 0), 0, "empty string from NULL");
  is_int(pomelo_json_write_begin_object(w), 0, "empty object");
  is_int(pomelo_json_write_end_object(w), 0, "end it");
  is_int(pomelo_json_write_begin_array(w), 0, "empty array");
  is_int(pomelo_json_write_end_array(w), 0, "end it");
  is_int(pomelo_json_write_raw(w, " {\"r\": [1, 2]}\n", 15), 0, "raw object");
  is_int(pomelo_json_write_end_array(w), 0, "end_array");
  is_int(pomelo_json_write_key(w, "", 0), 0, "empty key");
  is_int(pomelo_json_write_string(w, "\xf0\x9f\x98\x80", 4), 0, "non-BMP string");
  is_int(pomelo_json_write_end_object(w), 0, "end_object");
  is_int(pomelo_json_writer_complete(w), 1, "complete");
  W_IS(w,
       "{\"code\":200,\"a\":[null,true,false,true,7,1.5,\"s\",\"\",{},[],{\"r\": [1, "
       "2]}],\"\":\"\xf0\x9f\x98\x80\"}",
       "compact output, raw value inner whitespace kept, outer dropped");
  d = pomelo_json_writer_data(w, &n);
  ok(d[n] == '\0', "data is NUL-terminated");
  ok(pomelo_json_writer_data(w, NULL) == d, "len may be NULL");
  pomelo_json_writer_reset(w);
  d = pomelo_json_writer_data(w, &n);
  ok(n == 0 && d[0] == '\0', "reset empties");
  is_int(pomelo_json_writer_complete(w), 0, "reset: not complete");
  is_int(pomelo_json_write_string(w, "top", 3), 0, "a string at the top");
  is_int(pomelo_json_writer_complete(w), 1, "a scalar is a complete value");
  W_IS(w, "\"top\"", "scalar document");
  pomelo_json_writer_del(w);
  pomelo_json_writer_del(NULL);

  /* NULL writer */
  ok(pomelo_json_write_null(NULL) == POMELO_ERR_INVALID_ARG &&
         pomelo_json_write_value(NULL, NULL) == POMELO_ERR_INVALID_ARG &&
         pomelo_json_write_raw(NULL, "1", 1) == POMELO_ERR_INVALID_ARG &&
         pomelo_json_writer_complete(NULL) == 0,
     "NULL writer: INVALID_ARG");
  pomelo_json_writer_reset(NULL);
  d = pomelo_json_writer_data(NULL, &n);
  ok(d && n == 0, "data(NULL) is empty");
}

/* Escapes exactly as JSON.stringify: the expected bytes were printed by node 20 for
 * JSON.stringify(<the 32 control characters> + "\x7f\"\\/ é€😀\u2028"). */
static void test_writer_escapes(void) {
  static const char in_hex[] =
      "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f7f225c2f20c3a9e282acf09f9880"
      "e280a8";
  static const char want_hex[] =
      "225c75303030305c75303030315c75303030325c75303030335c75303030345c75303030355c75303030365c75"
      "303030375c625c745c6e5c75303030625c665c725c75303030655c75303030665c75303031305c75303031315c"
      "75303031325c75303031335c75303031345c75303031355c75303031365c75303031375c75303031385c753030"
      "31395c75303031615c75303031625c75303031635c75303031645c75303031655c75303031667f5c225c5c2f20"
      "c3a9e282acf09f9880e280a822";
  uint8_t in[64], want[256];
  long in_len = test_hex_decode(in_hex, in, sizeof in);
  long want_len = test_hex_decode(want_hex, want, sizeof want);
  pomelo_json_writer *w = NULL;
  size_t n;
  const char *d;
  pomelo_json_writer_new(&w, NULL, 0);
  is_int(pomelo_json_write_string(w, (const char *)in, (size_t)in_len), 0, "write_string");
  d = pomelo_json_writer_data(w, &n);
  is_mem(d, n, want, (size_t)want_len, "escapes byte-exact with JSON.stringify");
  pomelo_json_writer_reset(w);
  /* keys are escaped the same way */
  pomelo_json_write_begin_object(w);
  pomelo_json_write_key(w, (const char *)in, (size_t)in_len);
  pomelo_json_write_int64(w, 1);
  pomelo_json_write_end_object(w);
  d = pomelo_json_writer_data(w, &n);
  ok(n == (size_t)want_len + 4 && d[0] == '{' && memcmp(d + 1, want, (size_t)want_len) == 0 &&
         memcmp(d + 1 + want_len, ":1}", 3) == 0,
     "keys escaped the same way");
  pomelo_json_writer_del(w);
}

static void test_writer_numbers(void) {
  /* Expected strings printed by node 20: String(x) / JSON.stringify(x). */
  static const struct {
    double d;
    const char *js;
  } dc[] = {
      {0.1, "0.1"},
      {1.5, "1.5"},
      {1e21, "1e+21"},
      {1e20, "100000000000000000000"},
      {5e-324, "5e-324"},
      {1.7976931348623157e308, "1.7976931348623157e+308"},
      {-0.0, "0"},
      {0.0, "0"},
      {100.0, "100"},
      {-100.0, "-100"},
      {123456789012345680000.0, "123456789012345680000"},
      {1e-7, "1e-7"},
      {1.5e-7, "1.5e-7"},
      {0.000001, "0.000001"},
      {0.0000015, "0.0000015"},
      {9007199254740992.0, "9007199254740992"},
      {9007199254740994.0, "9007199254740994"},
      {-1.25e-10, "-1.25e-10"},
      {0.30000000000000004, "0.30000000000000004"},
      {1.0 / 3.0, "0.3333333333333333"},
      {2.2250738585072014e-308, "2.2250738585072014e-308"},
      {2.225073858507201e-308, "2.225073858507201e-308"},
      {1e300, "1e+300"},
      {1.5e300, "1.5e+300"},
      {123.456, "123.456"},
      {-1.23456e-98, "-1.23456e-98"},
      {4.35, "4.35"},
      {0.3, "0.3"},
      {1e22, "1e+22"},
      {999999999999999900000.0, "999999999999999900000"},
      {0.00001, "0.00001"},
      {5e-7, "5e-7"},
      {25.0, "25"},
      {1234567890123456800.0, "1234567890123456800"},
      {9223372036854775808.0, "9223372036854776000"},
      {-9223372036854775808.0, "-9223372036854776000"},
      {1e23, "1e+23"},
      {8.41e21, "8.41e+21"},
      {1e-323, "1e-323"},
      {5.992310449541053e+307, "5.992310449541053e+307"},
      {3.14159, "3.14159"},
      {299792458.0, "299792458"},
  };
  pomelo_json_writer *w = NULL;
  size_t i;
  pomelo_json_writer_new(&w, NULL, 0);
  for (i = 0; i < PM_ARRAY_LEN_(dc); i++) {
    pomelo_json_writer_reset(w);
    is_int(pomelo_json_write_double(w, dc[i].d), 0, "write_double(%.17g)", dc[i].d);
    W_IS(w, dc[i].js, "write_double(%.17g) is %s as in JavaScript", dc[i].d, dc[i].js);
  }
  pomelo_json_writer_reset(w);
  is_int(pomelo_json_write_double(w, (double)NAN), POMELO_ERR_JSON_NUMBER, "NaN");
  is_int(pomelo_json_write_null(w), POMELO_ERR_JSON_NUMBER, "the error is sticky");
  W_IS(w, "", "nothing written");
  pomelo_json_writer_reset(w);
  is_int(pomelo_json_write_double(w, HUGE_VAL), POMELO_ERR_JSON_NUMBER, "+inf");
  pomelo_json_writer_reset(w);
  is_int(pomelo_json_write_double(w, -HUGE_VAL), POMELO_ERR_JSON_NUMBER, "-inf");
  pomelo_json_writer_reset(w);
  pomelo_json_write_begin_array(w);
  pomelo_json_write_int64(w, INT64_MIN);
  pomelo_json_write_int64(w, INT64_MAX);
  pomelo_json_write_int64(w, 0);
  pomelo_json_write_int64(w, -1);
  pomelo_json_write_uint64(w, UINT64_MAX);
  pomelo_json_write_uint64(w, 0);
  is_int(pomelo_json_write_end_array(w), 0, "integers");
  W_IS(w, "[-9223372036854775808,9223372036854775807,0,-1,18446744073709551615,0]",
       "int64 and uint64 extremes");
  pomelo_json_writer_del(w);

  /* every double written reads back as itself: a sweep over bit patterns */
  {
    uint64_t bits = 0x0123456789abcdefu;
    int bad = 0, k;
    pomelo_json_writer_new(&w, NULL, 0);
    for (k = 0; k < 20000; k++) {
      double d, back;
      const char *s;
      size_t n;
      pomelo_json_doc *doc = NULL;
      bits = bits * 6364136223846793005u + 1442695040888963407u;
      memcpy(&d, &bits, sizeof d);
      if (k % 4 == 1) {
        d = (double)(int64_t)(bits >> 11) / 1024.0; /* short decimals */
      } else if (k % 4 == 2) {
        uint64_t sub = bits >> 12; /* subnormals */
        memcpy(&d, &sub, sizeof d);
      }
      if (!isfinite(d)) {
        continue;
      }
      pomelo_json_writer_reset(w);
      if (pomelo_json_write_double(w, d) != 0) {
        bad++;
        continue;
      }
      s = pomelo_json_writer_data(w, &n);
      if (pomelo_json_parse(&doc, NULL, s, n, NULL, NULL) != 0) {
        bad++;
        continue;
      }
      back = pomelo_json_number(pomelo_json_root(doc));
      if (back != d && !(d == 0 && back == 0)) {
        if (bad++ < 5) {
          diag("%.17g wrote %s", d, s);
        }
      }
      pomelo_json_doc_del(doc);
    }
    ok(bad == 0, "20000 doubles written then parsed read back exactly");
    pomelo_json_writer_del(w);
  }
}

static void test_writer_misuse(void) {
  pomelo_json_writer *w = NULL;
  pomelo_json_writer_new(&w, NULL, 0);

#define MISUSE(setup, call, name)                                                                  \
  do {                                                                                             \
    pomelo_json_writer_reset(w);                                                                   \
    setup;                                                                                         \
    is_int(call, POMELO_ERR_STATE, name);                                                          \
    is_int(pomelo_json_write_null(w), POMELO_ERR_STATE, name ": sticky");                          \
  } while (0)

  MISUSE((void)0, pomelo_json_write_key(w, "a", 1), "key at the top");
  MISUSE(pomelo_json_write_begin_array(w), pomelo_json_write_key(w, "a", 1), "key in an array");
  MISUSE(pomelo_json_write_begin_object(w), pomelo_json_write_null(w), "value without a key");
  MISUSE(pomelo_json_write_begin_object(w), pomelo_json_write_begin_array(w),
         "array without a key");
  MISUSE(pomelo_json_write_begin_object(w), pomelo_json_write_raw(w, "1", 1), "raw without key");
  MISUSE(pomelo_json_write_begin_object(w), pomelo_json_write_end_array(w),
         "end_array in an object");
  MISUSE(pomelo_json_write_begin_array(w), pomelo_json_write_end_object(w),
         "end_object in an array");
  MISUSE((void)0, pomelo_json_write_end_array(w), "end_array at the top");
  MISUSE((void)0, pomelo_json_write_end_object(w), "end_object at the top");
  MISUSE(pomelo_json_write_null(w), pomelo_json_write_null(w), "second top-level value");
  MISUSE((pomelo_json_write_begin_array(w), pomelo_json_write_end_array(w)),
         pomelo_json_write_begin_object(w), "second top-level container");
  MISUSE(pomelo_json_write_int64(w, 1), pomelo_json_write_raw(w, "2", 1), "second raw value");
  MISUSE((pomelo_json_write_begin_object(w), pomelo_json_write_key(w, "a", 1)),
         pomelo_json_write_end_object(w), "end_object after a key");
  MISUSE((pomelo_json_write_begin_object(w), pomelo_json_write_key(w, "a", 1)),
         pomelo_json_write_key(w, "b", 1), "two keys in a row");

  /* the failing call leaves nothing behind; data keeps what came before */
  pomelo_json_writer_reset(w);
  pomelo_json_write_begin_array(w);
  pomelo_json_write_int64(w, 1);
  is_int(pomelo_json_write_key(w, "k", 1), POMELO_ERR_STATE, "misuse after a value");
  W_IS(w, "[1", "data holds the bytes before the failing call");
  is_int(pomelo_json_writer_complete(w), 0, "a failed writer is not complete");
  pomelo_json_writer_reset(w);
  is_int(pomelo_json_write_int64(w, 5), 0, "reset clears the failed state");
  W_IS(w, "5", "fresh output");

  /* bad text */
  pomelo_json_writer_reset(w);
  is_int(pomelo_json_write_string(w, "\xc0\x80", 2), POMELO_ERR_JSON_UTF8, "overlong string");
  is_int(pomelo_json_write_int64(w, 1), POMELO_ERR_JSON_UTF8, "sticky UTF8 error");
  pomelo_json_writer_reset(w);
  is_int(pomelo_json_write_string(w, "\xed\xa0\x80", 3), POMELO_ERR_JSON_UTF8,
         "surrogate in a string");
  pomelo_json_writer_reset(w);
  pomelo_json_write_begin_object(w);
  is_int(pomelo_json_write_key(w, "a\xff", 2), POMELO_ERR_JSON_UTF8, "bad key");
  W_IS(w, "{", "nothing of the key written");
  pomelo_json_writer_reset(w);
  is_int(pomelo_json_write_string(w, NULL, 1), POMELO_ERR_INVALID_ARG, "NULL string");
  pomelo_json_writer_reset(w);
  is_int(pomelo_json_write_value(w, NULL), POMELO_ERR_INVALID_ARG, "NULL value");
  pomelo_json_writer_reset(w);
  is_int(pomelo_json_write_raw(w, NULL, 1), POMELO_ERR_INVALID_ARG, "NULL raw");
  pomelo_json_writer_reset(w);
  is_int(pomelo_json_write_raw(w, NULL, 0), POMELO_ERR_JSON_SYNTAX, "empty raw");
  pomelo_json_writer_reset(w);
  pomelo_json_write_begin_array(w);
  pomelo_json_write_int64(w, 1);
  is_int(pomelo_json_write_raw(w, "[1,]", 4), POMELO_ERR_JSON_SYNTAX, "bad raw");
  W_IS(w, "[1", "no comma left behind");
  pomelo_json_writer_reset(w);
  is_int(pomelo_json_write_raw(w, "\"\xed\xa0\xbd\xed\xb8\x80\"", 8), POMELO_ERR_JSON_UTF8,
         "raw CESU-8 is not UTF-8");
  pomelo_json_writer_reset(w);
  is_int(pomelo_json_write_raw(w, "\"\\ud800\"", 8), POMELO_ERR_JSON_UTF8,
         "raw lone escaped surrogate");
  pomelo_json_writer_reset(w);
  is_int(pomelo_json_write_raw(w, "1 2", 3), POMELO_ERR_JSON_SYNTAX, "two raw values");
  pomelo_json_writer_reset(w);
  is_int(pomelo_json_write_raw(w, "\"\\ud83d\\ude00\"", 14), 0, "raw escaped pair");
  W_IS(w, "\"\\ud83d\\ude00\"", "kept verbatim");
  pomelo_json_writer_del(w);
}

static void test_writer_depth(void) {
  pomelo_json_writer *w = NULL;
  int i, rc = 0;
  pomelo_json_doc *doc = NULL;
  pomelo_json_writer_new(&w, NULL, 2);
  is_int(pomelo_json_write_begin_array(w), 0, "depth 1");
  is_int(pomelo_json_write_begin_object(w), 0, "depth 2");
  pomelo_json_write_key(w, "a", 1);
  is_int(pomelo_json_write_begin_array(w), POMELO_ERR_JSON_DEPTH, "depth 3 with max 2");
  is_int(pomelo_json_write_end_object(w), POMELO_ERR_JSON_DEPTH, "sticky");
  W_IS(w, "[{\"a\":", "nothing of the failed call");
  pomelo_json_writer_reset(w);
  pomelo_json_write_begin_array(w);
  is_int(pomelo_json_write_raw(w, "[1]", 3), 0, "raw at depth 2");
  is_int(pomelo_json_write_raw(w, "[[1]]", 5), POMELO_ERR_JSON_DEPTH, "raw at depth 3");
  pomelo_json_writer_reset(w);
  parse_copy("[[[]]]", 6, NULL, NULL, &doc, NULL);
  is_int(pomelo_json_write_value(w, pomelo_json_root(doc)), POMELO_ERR_JSON_DEPTH,
         "write_value deeper than the writer allows");
  W_IS(w, "", "nothing left behind");
  pomelo_json_doc_del(doc);
  pomelo_json_writer_del(w);

  pomelo_json_writer_new(&w, NULL, 0);
  for (i = 0; i < 64 && rc == 0; i++) {
    rc = pomelo_json_write_begin_array(w);
  }
  is_int(rc, 0, "max_depth 0 means 64: 64 levels");
  is_int(pomelo_json_write_begin_array(w), POMELO_ERR_JSON_DEPTH, "65th level");
  pomelo_json_writer_del(w);

  pomelo_json_writer_new(&w, NULL, 1000);
  for (i = 0; i < 1000 && rc == 0; i++) {
    rc = pomelo_json_write_begin_object(w);
    rc = rc ? rc : pomelo_json_write_key(w, "k", 1);
  }
  rc = rc ? rc : pomelo_json_write_null(w);
  for (i = 0; i < 1000 && rc == 0; i++) {
    rc = pomelo_json_write_end_object(w);
  }
  is_int(rc, 0, "1000 nested objects");
  is_int(pomelo_json_writer_complete(w), 1, "complete");
  pomelo_json_writer_del(w);
}

/* ---------------------------------------------------------------------------------------------
 * Failing allocations: every allocation, in turn, fails; the call reports NOMEM and nothing
 * leaks.
 * ------------------------------------------------------------------------------------------- */

static char *big_text(size_t *len) {
  /* many values (the value stack grows), long strings (several arena blocks), deep enough for the
   * writer's level stack to leave its inline storage */
  size_t cap = 200000, n = 0, i;
  char *s = malloc(cap);
  n += (size_t)sprintf(s + n, "{\"list\":[");
  for (i = 0; i < 300; i++) {
    n += (size_t)sprintf(s + n, "%s{\"id\":%zu,\"name\":\"item \\u00e9 %zu\",\"v\":%zu.5e-1}",
                         i ? "," : "", i, i, i);
  }
  n += (size_t)sprintf(s + n, "],\"long\":\"");
  for (i = 0; i < 5000; i++) {
    s[n++] = (char)('a' + i % 26);
  }
  n += (size_t)sprintf(s + n, "\",\"deep\":");
  for (i = 0; i < 100; i++) {
    s[n++] = '[';
  }
  for (i = 0; i < 100; i++) {
    s[n++] = ']';
  }
  n += (size_t)sprintf(s + n, "}");
  *len = n;
  return s;
}

static void test_alloc_parse(const char *name, const char *text, size_t len, int want) {
  pomelo_json_options o;
  test_alloc ta;
  long n;
  int bad = 0, rounds = 0;
  pomelo_json_options_default(&o);
  o.max_depth = 200;
  for (n = 1; n < 10000; n++) {
    pomelo_json_doc *doc = NULL;
    int rc;
    test_alloc_init(&ta, n);
    rc = pomelo_json_parse(&doc, &ta.a, text, len, &o, NULL);
    rounds++;
    if (ta.failed) {
      if (rc != POMELO_ERR_NOMEM || doc != NULL) {
        bad++;
        diag("%s: allocation %ld failing gave %s", name, n, pomelo_err_name(rc));
      }
    } else if (rc != want) {
      bad++;
      diag("%s: %s without failures", name, pomelo_err_name(rc));
    }
    pomelo_json_doc_del(doc);
    if (ta.live != 0) {
      bad++;
      diag("%s: allocation %ld failing leaks %ld blocks", name, n, ta.live);
    }
    if (!ta.failed) {
      break;
    }
  }
  ok(bad == 0, "parse %s: NOMEM and no leak with each of %d allocations failing", name, rounds - 1);
}

/* Builds a document through every writer call; returns the first error. */
static int writer_script(pomelo_json_writer *w, const pomelo_json_value *tree, const char *raw,
                         size_t raw_len) {
  int i, rc = 0;
  rc = rc ? rc : pomelo_json_write_begin_object(w);
  rc = rc ? rc : pomelo_json_write_key(w, "tree", 4);
  rc = rc ? rc : pomelo_json_write_value(w, tree);
  rc = rc ? rc : pomelo_json_write_key(w, "raw", 3);
  rc = rc ? rc : pomelo_json_write_raw(w, raw, raw_len);
  rc = rc ? rc : pomelo_json_write_key(w, "deep", 4);
  for (i = 0; i < 100 && rc == 0; i++) {
    rc = pomelo_json_write_begin_array(w);
  }
  rc = rc ? rc : pomelo_json_write_null(w);
  rc = rc ? rc : pomelo_json_write_bool(w, 1);
  rc = rc ? rc : pomelo_json_write_int64(w, -5);
  rc = rc ? rc : pomelo_json_write_uint64(w, 5);
  rc = rc ? rc : pomelo_json_write_double(w, 0.25);
  rc = rc ? rc : pomelo_json_write_string(w, "str\n", 4);
  for (i = 0; i < 100 && rc == 0; i++) {
    rc = pomelo_json_write_end_array(w);
  }
  rc = rc ? rc : pomelo_json_write_end_object(w);
  return rc;
}

static void test_alloc_writer(const char *text, size_t len) {
  pomelo_json_options o;
  pomelo_json_doc *doc = NULL;
  pomelo_json_writer *ref = NULL;
  const char *want;
  size_t want_len;
  test_alloc ta;
  long n;
  int bad = 0, rounds = 0;
  pomelo_json_options_default(&o);
  o.max_depth = 200;
  pomelo_json_parse(&doc, NULL, text, len, &o, NULL);
  pomelo_json_writer_new(&ref, NULL, 300);
  is_int(writer_script(ref, pomelo_json_root(doc), text, len), 0, "writer script");
  want = pomelo_json_writer_data(ref, &want_len);
  for (n = 1; n < 10000; n++) {
    pomelo_json_writer *w = NULL;
    int rc;
    test_alloc_init(&ta, n);
    rc = pomelo_json_writer_new(&w, &ta.a, 300);
    if (rc == 0) {
      rc = writer_script(w, pomelo_json_root(doc), text, len);
      if (rc == 0) {
        size_t got_len;
        const char *got = pomelo_json_writer_data(w, &got_len);
        if (got_len != want_len || memcmp(got, want, got_len) != 0) {
          bad++;
        }
      } else if (pomelo_json_write_null(w) != rc) {
        bad++; /* sticky */
      }
    }
    rounds++;
    if ((ta.failed && rc != POMELO_ERR_NOMEM) || (!ta.failed && rc != 0)) {
      bad++;
      diag("writer: allocation %ld failing gave %s", n, pomelo_err_name(rc));
    }
    pomelo_json_writer_del(w);
    if (ta.live != 0) {
      bad++;
      diag("writer: allocation %ld failing leaks %ld blocks", n, ta.live);
    }
    if (!ta.failed) {
      break;
    }
  }
  ok(bad == 0, "writer: NOMEM, sticky, no leak with each of %d allocations failing", rounds - 1);
  pomelo_json_writer_del(ref);
  pomelo_json_doc_del(doc);
}

static void test_alloc_loops(void) {
  size_t len;
  char *big = big_text(&len);
  test_alloc ta;
  pomelo_json_doc *doc = NULL;
  test_alloc_parse("handshake", conn733, sizeof conn733 - 1, 0);
  test_alloc_parse("big document", big, len, 0);
  test_alloc_parse("syntax error", "[1,2,{\"a\":[3,]}]", 16, POMELO_ERR_JSON_SYNTAX);
  test_alloc_writer(big, len);
  {
    /* 10000 elements: their array (240 KB) is larger than any block so far and gets a block of
     * its own, behind the block being filled */
    char *wide = malloc(20001);
    size_t i;
    pomelo_json_doc *d = NULL;
    char out[64];
    size_t on = 0;
    for (i = 0; i < 10000; i++) {
      wide[2 * i] = i ? ',' : '[';
      wide[2 * i + 1] = (char)('0' + i % 10);
    }
    wide[20000] = ']';
    test_alloc_parse("wide array", wide, 20001, 0);
    is_int(parse_copy(wide, 20001, NULL, NULL, &d, NULL), 0, "wide array parses");
    is_int(pomelo_json_len(pomelo_json_root(d)), 10000, "10000 elements");
    ok(pomelo_json_number(pomelo_json_at(pomelo_json_root(d), 9999)) == 9.0, "the last one is 9");
    is_int(write_to(pomelo_json_at(pomelo_json_root(d), 1234), out, sizeof out, &on), 0,
           "write one element");
    is_str(out, "4", "element 1234 is 4");
    pomelo_json_doc_del(d);
    free(wide);
  }
  /* small inputs cost little: memory follows the bytes present, not the limits */
  test_alloc_init(&ta, 0);
  is_int(pomelo_json_parse(&doc, &ta.a, "[1]", 3, NULL, NULL), 0, "[1] parses");
  ok(ta.calls == 1 && ta.peak <= 1024, "[1]: one allocation of %zu bytes", ta.peak);
  pomelo_json_doc_del(doc);
  is_int(ta.live, 0, "freed");
  test_alloc_init(&ta, 0);
  is_int(pomelo_json_parse(&doc, &ta.a, conn733, sizeof conn733 - 1, NULL, NULL), 0,
         "handshake parses");
  ok(ta.calls == 1, "handshake: %ld allocations, %zu bytes at peak", ta.calls, ta.peak);
  pomelo_json_doc_del(doc);
  free(big);
}

/* ---------------------------------------------------------------------------------------------
 * UTF-8 validation
 * ------------------------------------------------------------------------------------------- */

static void test_utf8_valid(void) {
  static const struct {
    const char *s;
    size_t len;
    long bad; /* -1: valid */
  } uc[] = {
      {L_(""), -1},
      {L_("abc"), -1},
      {L_("a\0b"), -1},
      {L_("\x7f"), -1},
      {L_("\xc2\x80"), -1},
      {L_("\xdf\xbf"), -1},
      {L_("\xe0\xa0\x80"), -1},
      {L_("\xed\x9f\xbf"), -1},
      {L_("\xee\x80\x80"), -1},
      {L_("\xef\xbf\xbf"), -1},
      {L_("\xf0\x90\x80\x80"), -1},
      {L_("\xf4\x8f\xbf\xbf"), -1},
      {L_("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"), -1},
      {L_("\x80"), 0},
      {L_("ab\xbf"), 2},
      {L_("\xc0\x80"), 0},
      {L_("\xc1\xbf"), 0},
      {L_("\xe0\x80\x80"), 0},
      {L_("\xe0\x9f\xbf"), 0},
      {L_("\xed\xa0\x80"), 0},
      {L_("\xed\xbf\xbf"), 0},
      {L_("\xed\xa0\xbd\xed\xb8\x80"), 0},
      {L_("\xf0\x80\x80\x80"), 0},
      {L_("\xf0\x8f\xbf\xbf"), 0},
      {L_("\xf4\x90\x80\x80"), 0},
      {L_("\xf5\x80\x80\x80"), 0},
      {L_("\xf8\x88\x80\x80\x80"), 0},
      {L_("\xfe"), 0},
      {L_("\xff"), 0},
      {L_("x\xc3"), 1},
      {L_("xy\xe2\x82"), 2},
      {L_("\xf0\x9f\x98"), 0},
      {L_("\xc3\x28"), 0},
      {L_("\xe2\x28\xa1"), 0},
      {L_("\xf0\x9f\x28\x80"), 0},
      {L_("ok\xc3\xa9\xc3"), 4},
  };
  size_t i;
  for (i = 0; i < PM_ARRAY_LEN_(uc); i++) {
    size_t off = 999;
    int v = pomelo_utf8_valid((const uint8_t *)uc[i].s, uc[i].len, &off);
    if (uc[i].bad < 0) {
      ok(v == 1 && off == 999, "utf8_valid(%s)", show(uc[i].s, uc[i].len));
    } else {
      ok(v == 0 && (long)off == uc[i].bad, "utf8_valid(%s) is 0, bad at %ld",
         show(uc[i].s, uc[i].len), uc[i].bad);
    }
  }
  ok(pomelo_utf8_valid(NULL, 0, NULL) == 1, "NULL, 0 is valid");
  ok(pomelo_utf8_valid(NULL, 1, NULL) == 0, "NULL with a length is not");
  ok(pomelo_utf8_valid((const uint8_t *)"\xff", 1, NULL) == 0, "bad_offset may be NULL");
  /* every 2-byte and 3-byte sequence against the definition */
  {
    int bad = 0;
    uint32_t a, b, c;
    for (a = 0x80; a < 0x100; a++) {
      for (b = 0; b < 0x100; b++) {
        uint8_t s[2] = {(uint8_t)a, (uint8_t)b};
        int want = a >= 0xC2 && a <= 0xDF && b >= 0x80 && b <= 0xBF;
        bad += pomelo_utf8_valid(s, 2, NULL) != want;
      }
    }
    for (a = 0xE0; a < 0xF0; a++) {
      for (b = 0x80; b < 0xC0; b++) {
        for (c = 0; c < 0x100; c++) {
          uint8_t s[3] = {(uint8_t)a, (uint8_t)b, (uint8_t)c};
          uint32_t cp = ((a & 0xF) << 12) | ((b & 0x3F) << 6) | (c & 0x3F);
          int want = c >= 0x80 && c <= 0xBF && cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF);
          bad += pomelo_utf8_valid(s, 3, NULL) != want;
        }
      }
    }
    for (a = 0xF0; a < 0xF8; a++) {
      for (b = 0x80; b < 0xC0; b++) {
        uint8_t s[4] = {(uint8_t)a, (uint8_t)b, 0x80, 0xBF};
        uint32_t cp = ((a & 7) << 18) | ((b & 0x3F) << 12) | 0x3F;
        int want = cp >= 0x10000 && cp <= 0x10FFFF;
        bad += pomelo_utf8_valid(s, 4, NULL) != want;
      }
    }
    ok(bad == 0, "exhaustive 2- and 3-byte, and 4-byte lead checks");
  }
}

/* ---------------------------------------------------------------------------------------------
 * Locale: a decimal comma must change nothing
 * ------------------------------------------------------------------------------------------- */

static void test_locale(void) {
  static const char *names[] = {"de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8",
                                "fr_FR.utf8",  "de_DE",      "ru_RU.UTF-8"};
  const char *got = NULL;
  size_t i;
  for (i = 0; i < PM_ARRAY_LEN_(names) && !got; i++) {
    got = setlocale(LC_NUMERIC, names[i]);
  }
  if (!got || strcmp(localeconv()->decimal_point, ".") == 0) {
    ok(1, "# SKIP no locale with a decimal comma installed");
  } else {
    pomelo_json_doc *doc = NULL;
    pomelo_json_writer *w = NULL;
    diag("locale %s, decimal point '%s'", got, localeconv()->decimal_point);
    is_int(pomelo_json_parse(&doc, NULL, "[1.5,-0.25e1]", 13, NULL, NULL), 0, "parses");
    ok(pomelo_json_number(pomelo_json_at(pomelo_json_root(doc), 0)) == 1.5 &&
           pomelo_json_number(pomelo_json_at(pomelo_json_root(doc), 1)) == -2.5,
       "1.5 and -0.25e1 read right under %s", got);
    pomelo_json_writer_new(&w, NULL, 0);
    pomelo_json_write_begin_array(w);
    pomelo_json_write_double(w, 1.5);
    pomelo_json_write_double(w, 0.001);
    pomelo_json_write_double(w, 1.25e-20);
    pomelo_json_write_double(w, 5e-324);
    pomelo_json_write_end_array(w);
    W_IS(w, "[1.5,0.001,1.25e-20,5e-324]", "doubles written with '.' under %s", got);
    pomelo_json_writer_del(w);
    pomelo_json_doc_del(doc);
  }
  setlocale(LC_NUMERIC, "C");
}

int main(void) {
  test_table();
  test_table_raw();
  test_numbers();
  test_long_numbers();
  test_accessors();
  test_strings();
  test_limits();
  test_deep();
  test_handshake();
  test_idempotent();
  test_lifetime();
  test_writer_basic();
  test_writer_escapes();
  test_writer_numbers();
  test_writer_misuse();
  test_writer_depth();
  test_alloc_loops();
  test_utf8_valid();
  test_locale();
  return done_testing();
}
