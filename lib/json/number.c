/* JSON numbers: lexeme to double and to int64, double and integer formatting. None of this
 * depends on the locale: strtod only ever sees digits, 'e' and signs, and the output of
 * snprintf is only mined for its digits and exponent.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "json/json_int.h"

/* Exponents saturate here: beyond it every double is 0 or infinite whatever the digits are
 * (the digits of a lexeme are bounded by the memory that holds it). */
#define EXP_CAP 1000000000000000LL /* 1e15 */

/* Significant digits kept when converting to double. Every midpoint between two adjacent doubles
 * has at most 767 significant digits, so the first 780 digits plus one nonzero "sticky" digit for
 * a nonzero tail round exactly as the whole lexeme does. */
#define KEEP_DIGITS 780

static inline int is_digit(char c) {
  return c >= '0' && c <= '9';
}

static int64_t sat_add(int64_t a, int64_t b) {
  int64_t r = a + b; /* both operands are within +-4 * EXP_CAP: no overflow */
  return r > EXP_CAP ? EXP_CAP : r < -EXP_CAP ? -EXP_CAP : r;
}

static int64_t sat_count(size_t n) {
  return n > (size_t)EXP_CAP ? EXP_CAP : (int64_t)n;
}

/* The parts of a valid lexeme: -?int(.frac)?([eE][+-]?exp)? */
typedef struct lexeme {
  int neg;
  const char *ip; /* integer digits */
  size_t ni;
  const char *fp; /* fraction digits */
  size_t nf;
  int64_t exp; /* saturated at +-EXP_CAP */
} lexeme;

static void split(const char *s, size_t len, lexeme *lx) {
  const char *p = s, *e = s + len;
  memset(lx, 0, sizeof(*lx));
  if (p < e && *p == '-') {
    lx->neg = 1;
    p++;
  }
  lx->ip = p;
  while (p < e && is_digit(*p)) {
    p++;
  }
  lx->ni = (size_t)(p - lx->ip);
  lx->fp = p;
  if (p < e && *p == '.') {
    lx->fp = ++p;
    while (p < e && is_digit(*p)) {
      p++;
    }
    lx->nf = (size_t)(p - lx->fp);
  }
  if (p < e && (*p == 'e' || *p == 'E')) {
    int eneg = 0;
    int64_t x = 0;
    p++;
    if (p < e && (*p == '+' || *p == '-')) {
      eneg = *p == '-';
      p++;
    }
    for (; p < e && is_digit(*p); p++) {
      if (x < EXP_CAP) {
        x = x * 10 + (*p - '0');
      }
    }
    if (x > EXP_CAP) {
      x = EXP_CAP;
    }
    lx->exp = eneg ? -x : x;
  }
}

/* The i-th digit of int digits followed by fraction digits. */
static inline char digit_at(const lexeme *lx, size_t i) {
  return i < lx->ni ? lx->ip[i] : lx->fp[i - lx->ni];
}

/* Writes `v` in decimal with a '-' when negative. */
static size_t put_i64(char *out, int64_t v) {
  if (v < 0) {
    out[0] = '-';
    return 1 + pm_json_format_u64((uint64_t)0 - (uint64_t)v, out + 1);
  }
  return pm_json_format_u64((uint64_t)v, out);
}

static double read_double(const char *buf) {
  int saved = errno;
  double d = strtod(buf, NULL);
  errno = saved;
  return d;
}

double pm_json_lexeme_to_double(const char *s, size_t len, char *scratch) {
  lexeme lx;
  size_t i, n, kept = 0, dropped = 0;
  int sticky = 0;
  char *o = scratch;
  int64_t e;
  uint64_t mant = 0;
  split(s, len, &lx);
  if (lx.neg) {
    *o++ = '-';
  }
  n = lx.ni + lx.nf;
  for (i = 0; i < n; i++) {
    char c = digit_at(&lx, i);
    if (kept == 0 && c == '0') {
      continue; /* leading zeros change nothing */
    }
    if (kept < KEEP_DIGITS) {
      *o++ = c;
      kept++;
      if (kept <= 15) {
        mant = mant * 10u + (uint64_t)(c - '0');
      }
    } else {
      dropped++;
      sticky |= c != '0';
    }
  }
  if (kept == 0) {
    *o++ = '0';
  }
  /* value = kept digits * 10^(exp - nf + dropped) */
  e = sat_add(sat_add(lx.exp, -sat_count(lx.nf)), sat_count(dropped));
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0
  /* Clinger's fast path: at most 15 digits are exact in a double, and so are 10^0..10^22; one
   * IEEE multiplication or division of two exact values is correctly rounded. */
  if (kept <= 15 && e >= -22 && e <= 22) {
    static const double p10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                 1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    double d = (double)mant;
    d = e < 0 ? d / p10[-e] : d * p10[e];
    return lx.neg ? -d : d;
  }
#endif
  if (sticky) {
    *o++ = '1';
    e = sat_add(e, -1);
  }
  *o++ = 'e';
  o += put_i64(o, e);
  *o = '\0';
  return read_double(scratch);
}

int pm_json_lexeme_to_int64(const char *s, size_t len, int64_t *out) {
  static const uint64_t pow10[] = {1u,
                                   10u,
                                   100u,
                                   1000u,
                                   10000u,
                                   100000u,
                                   1000000u,
                                   10000000u,
                                   100000000u,
                                   1000000000u,
                                   10000000000u,
                                   100000000000u,
                                   1000000000000u,
                                   10000000000000u,
                                   100000000000000u,
                                   1000000000000000u,
                                   10000000000000000u,
                                   100000000000000000u,
                                   1000000000000000000u,
                                   10000000000000000000u};
  lexeme lx;
  size_t n, first, last, i;
  int64_t scale;
  uint64_t u = 0, limit;
  split(s, len, &lx);
  n = lx.ni + lx.nf;
  for (first = 0; first < n && digit_at(&lx, first) == '0'; first++) {
  }
  if (first == n) {
    *out = 0; /* any zero, -0 included, is the integer 0 */
    return 0;
  }
  for (last = n - 1; digit_at(&lx, last) == '0'; last--) {
  }
  /* value = digits[first..last] * 10^scale */
  scale = sat_add(sat_add(lx.exp, -sat_count(lx.nf)), sat_count(n - 1 - last));
  if (scale < 0 || last - first + 1 > 19 || (int64_t)(last - first + 1) + scale > 19) {
    return POMELO_ERR_JSON_TYPE;
  }
  for (i = first; i <= last; i++) {
    u = u * 10u + (uint64_t)(digit_at(&lx, i) - '0'); /* at most 19 digits: no overflow */
  }
  if (u > UINT64_MAX / pow10[scale]) {
    return POMELO_ERR_JSON_TYPE;
  }
  u *= pow10[scale];
  limit = lx.neg ? (uint64_t)INT64_MAX + 1u : (uint64_t)INT64_MAX;
  if (u > limit) {
    return POMELO_ERR_JSON_TYPE;
  }
  *out = lx.neg ? (int64_t)(0 - u) : (int64_t)u;
  return 0;
}

size_t pm_json_format_u64(uint64_t v, char *out) {
  char tmp[20];
  size_t n = 0, i;
  do {
    tmp[n++] = (char)('0' + (int)(v % 10u));
    v /= 10u;
  } while (v);
  for (i = 0; i < n; i++) {
    out[i] = tmp[n - 1 - i];
  }
  return n;
}

size_t pm_json_format_i64(int64_t v, char *out) {
  return put_i64(out, v);
}

/* Rounds |v| to `prec` significant digits: digits (no trailing zeros) in `dig`, their count in
 * *nd and the decimal exponent of the first digit in *e10. The digits come from snprintf's %e,
 * read without assuming the locale's decimal point. */
static void round_digits(double v, int prec, char *dig, int *nd, int *e10) {
  char buf[64];
  const char *p = buf;
  int n = 0, eneg = 0, x = 0;
  snprintf(buf, sizeof buf, "%.*e", prec - 1, v < 0 ? -v : v);
  for (; *p && *p != 'e' && *p != 'E'; p++) {
    if (is_digit(*p) && n < 17) {
      dig[n++] = *p;
    }
  }
  if (*p) {
    p++;
    if (*p == '+' || *p == '-') {
      eneg = *p == '-';
      p++;
    }
    for (; is_digit(*p); p++) {
      x = x * 10 + (*p - '0');
    }
  }
  while (n > 1 && dig[n - 1] == '0') {
    n--;
  }
  *nd = n;
  *e10 = eneg ? -x : x;
}

/* Reads digits * 10^(e10 - nd + 1) back, with the sign of `v`. */
static double reread(double v, const char *dig, int nd, int e10) {
  char buf[64];
  size_t n = 0;
  if (v < 0) {
    buf[n++] = '-';
  }
  memcpy(buf + n, dig, (size_t)nd);
  n += (size_t)nd;
  buf[n++] = 'e';
  n += put_i64(buf + n, (int64_t)e10 - nd + 1);
  buf[n] = '\0';
  return read_double(buf);
}

size_t pm_json_format_double(double v, char *out) {
  char dig[17];
  int nd = 0, e10 = 0, prec, k, n, i;
  size_t o = 0;
  if (!isfinite(v)) {
    return 0;
  }
  if (v == 0) {
    out[0] = '0'; /* -0 too, as JavaScript prints it */
    return 1;
  }
  /* Integers below 2^53 are exact, their neighbours 1 or less apart: no shorter digits read
   * back as the same double, so JavaScript prints their plain decimal digits. */
  if (v > -9007199254740992.0 && v < 9007199254740992.0 && v == (double)(int64_t)v) {
    return put_i64(out, (int64_t)v);
  }
  /* For normal doubles, 15 digits are enough to find any shorter representation (at most one
   * 15-digit decimal lies within half an ulp); subnormals have fewer bits, so search from 1. */
  prec = (v < 0 ? -v : v) < DBL_MIN ? 1 : 15;
  for (; prec <= 17; prec++) {
    round_digits(v, prec, dig, &nd, &e10);
    if (reread(v, dig, nd, e10) == v) {
      break;
    }
  }
  /* Number.prototype.toString: k digits, value = 0.d1..dk * 10^n. */
  k = nd;
  n = e10 + 1;
  if (v < 0) {
    out[o++] = '-';
  }
  if (k <= n && n <= 21) {
    memcpy(out + o, dig, (size_t)k);
    o += (size_t)k;
    for (i = k; i < n; i++) {
      out[o++] = '0';
    }
  } else if (0 < n && n <= 21) {
    memcpy(out + o, dig, (size_t)n);
    o += (size_t)n;
    out[o++] = '.';
    memcpy(out + o, dig + n, (size_t)(k - n));
    o += (size_t)(k - n);
  } else if (-6 < n && n <= 0) {
    out[o++] = '0';
    out[o++] = '.';
    for (i = n; i < 0; i++) {
      out[o++] = '0';
    }
    memcpy(out + o, dig, (size_t)k);
    o += (size_t)k;
  } else {
    out[o++] = dig[0];
    if (k > 1) {
      out[o++] = '.';
      memcpy(out + o, dig + 1, (size_t)(k - 1));
      o += (size_t)(k - 1);
    }
    out[o++] = 'e';
    out[o++] = n - 1 < 0 ? '-' : '+';
    o += pm_json_format_u64((uint64_t)(n - 1 < 0 ? 1 - n : n - 1), out + o);
  }
  return o;
}
