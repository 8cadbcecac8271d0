/* The JSON reader: a strict RFC 8259 parser building an immutable tree in an arena.
 *
 * The parser is iterative: open containers are placeholders on a value stack, their finished
 * children above them; closing a container moves its children into one arena array. Nothing
 * recurses, so nesting costs heap (bounded by max_depth and by the input), never C stack.
 * SPDX-License-Identifier: MIT
 */
#include "json/json_int.h"

/* ---------------------------------------------------------------------------------------------
 * Arena: a few large blocks, freed together.
 * ------------------------------------------------------------------------------------------- */

typedef struct pm_block {
  struct pm_block *prev;
  size_t cap;  /* data bytes after the header */
  size_t used; /* data bytes handed out */
} pm_block;

#define BLOCK_HDR ((sizeof(pm_block) + 15u) & ~(size_t)15u)
#define BLOCK_MIN 512u
#define BLOCK_MAX ((size_t)8 << 20)

typedef struct pm_arena {
  const pomelo_allocator *alloc;
  pm_block *head; /* the block being filled */
  size_t next;    /* data size of the next regular block */
} pm_arena;

static inline uint8_t *block_data(pm_block *b) {
  return (uint8_t *)b + BLOCK_HDR;
}

static void arena_free(const pomelo_allocator *alloc, pm_block *b) {
  while (b) {
    pm_block *prev = b->prev;
    pm_free(alloc, b);
    b = prev;
  }
}

/* Returns `n` bytes aligned to `align` (a power of two <= 16), or NULL. */
static void *arena_alloc(pm_arena *ar, size_t n, size_t align) {
  pm_block *b = ar->head, *nb;
  size_t size;
  if (b) {
    size_t off = (b->used + align - 1) & ~(align - 1);
    if (off <= b->cap && n <= b->cap - off) {
      b->used = off + n;
      return block_data(b) + off;
    }
  }
  if (n > SIZE_MAX - BLOCK_HDR) {
    return NULL;
  }
  size = n > ar->next ? n : ar->next;
  nb = pm_malloc(ar->alloc, BLOCK_HDR + size);
  if (!nb) {
    return NULL;
  }
  nb->cap = size;
  nb->used = n;
  if (b && n >= ar->next) {
    /* An oversized request gets its own block behind the head, which keeps its free space. */
    nb->prev = b->prev;
    b->prev = nb;
  } else {
    nb->prev = b;
    ar->head = nb;
    if (b) {
      ar->next = ar->next < BLOCK_MAX / 2 ? ar->next * 2 : BLOCK_MAX;
    }
  }
  return block_data(nb);
}

/* Shrinks the last allocation `p` of `old_n` bytes to `new_n` bytes, when it is at the head. */
static void arena_trim(pm_arena *ar, void *p, size_t old_n, size_t new_n) {
  pm_block *b = ar->head;
  if (b && (uint8_t *)p + old_n == block_data(b) + b->used) {
    b->used -= old_n - new_n;
  }
}

struct pomelo_json_doc {
  pomelo_allocator alloc;
  pm_block *blocks;
  pomelo_json_value root;
};

/* ---------------------------------------------------------------------------------------------
 * Parser
 * ------------------------------------------------------------------------------------------- */

#define STACK_INLINE 64
#define LEVELS_INLINE 64
#define NO_PARENT ((size_t)-1)

typedef struct parser {
  const uint8_t *begin, *end;
  const pomelo_allocator *alloc;
  int build;  /* 1: build a tree; 0: only validate */
  int strict; /* surrogates are errors */
  uint32_t max_depth;
  uint32_t depth;
  size_t err; /* error offset */
  pm_arena arena;
  /* build: the value stack. Open containers are placeholders whose tag length holds the index
   * of the enclosing placeholder + 1; `cur` is the innermost one. */
  pomelo_json_value *stk;
  size_t top, cap, cur;
  /* validate: the type of each open level (1 = object). */
  uint8_t *lv;
  size_t lv_cap;
  pomelo_json_value stk_inline[STACK_INLINE];
  uint8_t lv_inline[LEVELS_INLINE];
} parser;

static int fail(parser *ps, int rc, const uint8_t *at) {
  ps->err = (size_t)(at - ps->begin);
  return rc;
}

static pomelo_json_value *push(parser *ps) {
  if (ps->top == ps->cap) {
    pomelo_json_value *ns;
    size_t ncap;
    if (ps->cap > SIZE_MAX / 2 / sizeof(*ns)) {
      return NULL;
    }
    ncap = ps->cap * 2;
    if (ps->stk == ps->stk_inline) {
      ns = pm_malloc(ps->alloc, ncap * sizeof(*ns));
      if (ns) {
        memcpy(ns, ps->stk, ps->top * sizeof(*ns));
      }
    } else {
      ns = pm_realloc(ps->alloc, ps->stk, ncap * sizeof(*ns));
    }
    if (!ns) {
      return NULL;
    }
    ps->stk = ns;
    ps->cap = ncap;
  }
  return &ps->stk[ps->top++];
}

static int top_is_object(const parser *ps) {
  if (ps->build) {
    return pm_json_type(&ps->stk[ps->cur]) == POMELO_JSON_OBJECT;
  }
  return ps->lv[ps->depth - 1];
}

/* Opens an array or object at `at`. */
static int open_level(parser *ps, const uint8_t *at, int object) {
  if (ps->depth >= ps->max_depth) {
    return fail(ps, POMELO_ERR_JSON_DEPTH, at);
  }
  if (ps->build) {
    pomelo_json_value *v = push(ps);
    if (!v) {
      return fail(ps, POMELO_ERR_NOMEM, at);
    }
    v->tag = pm_json_tag(object ? POMELO_JSON_OBJECT : POMELO_JSON_ARRAY,
                         ps->cur == NO_PARENT ? 0 : ps->cur + 1);
    v->u.kids = NULL;
    v->num = 0;
    ps->cur = ps->top - 1;
  } else {
    if (ps->depth == ps->lv_cap) {
      uint8_t *nl;
      size_t ncap = ps->lv_cap * 2;
      if (ps->lv == ps->lv_inline) {
        nl = pm_malloc(ps->alloc, ncap);
        if (nl) {
          memcpy(nl, ps->lv, ps->lv_cap);
        }
      } else {
        nl = pm_realloc(ps->alloc, ps->lv, ncap);
      }
      if (!nl) {
        return fail(ps, POMELO_ERR_NOMEM, at);
      }
      ps->lv = nl;
      ps->lv_cap = ncap;
    }
    ps->lv[ps->depth] = (uint8_t)object;
  }
  ps->depth++;
  return 0;
}

/* Closes the innermost level, whose closing bracket is at `at`. */
static int close_level(parser *ps, const uint8_t *at) {
  ps->depth--;
  if (ps->build) {
    pomelo_json_value *c = &ps->stk[ps->cur];
    size_t n = ps->top - ps->cur - 1;
    size_t parent = pm_json_len(c);
    pomelo_json_value *kids = NULL;
    if (n > 0) {
      kids = arena_alloc(&ps->arena, n * sizeof(*kids), _Alignof(pomelo_json_value));
      if (!kids) {
        return fail(ps, POMELO_ERR_NOMEM, at);
      }
      memcpy(kids, c + 1, n * sizeof(*kids));
    }
    c->u.kids = kids;
    if (pm_json_type(c) == POMELO_JSON_OBJECT) {
      n /= 2;
    }
    c->tag = pm_json_tag(pm_json_type(c), n);
    ps->top = ps->cur + 1;
    ps->cur = parent ? parent - 1 : NO_PARENT;
  }
  return 0;
}

static int hex4(const uint8_t *p, uint32_t *out) {
  uint32_t v = 0;
  int i;
  for (i = 0; i < 4; i++) {
    uint8_t c = p[i];
    v <<= 4;
    if (c >= '0' && c <= '9') {
      v |= (uint32_t)(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      v |= (uint32_t)(c - 'a' + 10);
    } else if (c >= 'A' && c <= 'F') {
      v |= (uint32_t)(c - 'A' + 10);
    } else {
      return 0;
    }
  }
  *out = v;
  return 1;
}

/* Decodes the string body starting at `p` (just after the opening quote) up to its closing
 * quote, writing the UTF-8 result to `out` (NULL: validate only). Never writes more bytes than
 * it reads. On success *olen is the decoded length and *next points after the closing quote. */
static int string_body(parser *ps, const uint8_t *p, const uint8_t *end, uint8_t *out, size_t *olen,
                       const uint8_t **next) {
  static const uint8_t fffd[3] = {0xEF, 0xBF, 0xBD};
  size_t o = 0;
  while (p < end) {
    uint8_t c = *p;
    if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
      if (out) {
        out[o] = c;
      }
      o++;
      p++;
      continue;
    }
    if (c == '"') {
      *olen = o;
      *next = p + 1;
      return 0;
    }
    if (c == '\\') {
      const uint8_t *esc = p;
      uint8_t ch;
      if (end - p < 2) {
        return fail(ps, POMELO_ERR_JSON_SYNTAX, esc);
      }
      switch (p[1]) {
      case '"':
      case '\\':
      case '/':
        ch = p[1];
        break;
      case 'b':
        ch = '\b';
        break;
      case 'f':
        ch = '\f';
        break;
      case 'n':
        ch = '\n';
        break;
      case 'r':
        ch = '\r';
        break;
      case 't':
        ch = '\t';
        break;
      case 'u': {
        uint32_t cp, lo;
        uint8_t tmp[4];
        size_t n;
        if (end - p < 6 || !hex4(p + 2, &cp)) {
          return fail(ps, POMELO_ERR_JSON_SYNTAX, esc);
        }
        p += 6;
        if (cp >= 0xD800u && cp <= 0xDFFFu) {
          if (cp <= 0xDBFFu && end - p >= 6 && p[0] == '\\' && p[1] == 'u' && hex4(p + 2, &lo) &&
              lo >= 0xDC00u && lo <= 0xDFFFu) {
            cp = 0x10000u + ((cp - 0xD800u) << 10) + (lo - 0xDC00u);
            p += 6;
          } else if (ps->strict) {
            return fail(ps, POMELO_ERR_JSON_UTF8, esc);
          } else {
            cp = 0xFFFDu;
          }
        }
        n = pm_utf8_put(tmp, cp);
        if (out) {
          memcpy(out + o, tmp, n);
        }
        o += n;
        continue;
      }
      default:
        return fail(ps, POMELO_ERR_JSON_SYNTAX, esc);
      }
      if (out) {
        out[o] = ch;
      }
      o++;
      p += 2;
      continue;
    }
    if (c < 0x20) {
      return fail(ps, POMELO_ERR_JSON_SYNTAX, p); /* control characters must be escaped */
    }
    {
      uint32_t cp, lo;
      int n = pm_utf8_seq(p, (size_t)(end - p), &cp);
      if (n > 0) {
        if (out) {
          memcpy(out + o, p, (size_t)n);
        }
        o += (size_t)n;
        p += n;
        continue;
      }
      if (n != PM_UTF8_SURROGATE || ps->strict) {
        return fail(ps, POMELO_ERR_JSON_UTF8, p);
      }
      /* CESU-8: a high half followed by a low half is one character; a lone half is U+FFFD. */
      if (cp <= 0xDBFFu && end - p >= 6 &&
          pm_utf8_seq(p + 3, (size_t)(end - p - 3), &lo) == PM_UTF8_SURROGATE && lo >= 0xDC00u) {
        uint8_t tmp[4];
        pm_utf8_put(tmp, 0x10000u + ((cp - 0xD800u) << 10) + (lo - 0xDC00u));
        if (out) {
          memcpy(out + o, tmp, 4);
        }
        o += 4;
        p += 6;
      } else {
        if (out) {
          memcpy(out + o, fffd, 3);
        }
        o += 3;
        p += 3;
      }
    }
  }
  return fail(ps, POMELO_ERR_JSON_SYNTAX, end); /* unterminated */
}

/* Parses a string whose opening quote is at `p`. */
static int string_value(parser *ps, const uint8_t *p, const uint8_t **next) {
  const uint8_t *s = p + 1, *q = s;
  pomelo_json_value *v;
  uint8_t *buf;
  size_t raw, olen;
  int rc;
  if (!ps->build) {
    return string_body(ps, s, ps->end, NULL, &olen, next);
  }
  /* Find the closing quote first: the decoded string is never longer than the raw one. */
  while (q < ps->end && *q != '"') {
    if (*q == '\\' && ps->end - q >= 2) {
      q += 2;
    } else {
      q++;
    }
  }
  if (q == ps->end) {
    return string_body(ps, s, ps->end, NULL, &olen, next); /* reports the first error */
  }
  raw = (size_t)(q - s);
  buf = arena_alloc(&ps->arena, raw + 1, 1);
  if (!buf) {
    return fail(ps, POMELO_ERR_NOMEM, p);
  }
  rc = string_body(ps, s, q + 1, buf, &olen, next);
  if (rc != 0) {
    return rc;
  }
  buf[olen] = '\0';
  arena_trim(&ps->arena, buf, raw + 1, olen + 1);
  v = push(ps);
  if (!v) {
    return fail(ps, POMELO_ERR_NOMEM, p);
  }
  v->tag = pm_json_tag(POMELO_JSON_STRING, olen);
  v->u.s = (const char *)buf;
  v->num = 0;
  return 0;
}

static inline int is_digit(uint8_t c) {
  return c >= '0' && c <= '9';
}

/* Parses a number starting at `p`: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int number_value(parser *ps, const uint8_t *p, const uint8_t **next) {
  const uint8_t *s = p, *end = ps->end;
  pomelo_json_value *v;
  char *lex;
  size_t n;
  if (*p == '-') {
    p++;
  }
  if (p < end && *p == '0') {
    p++;
  } else if (p < end && *p >= '1' && *p <= '9') {
    while (++p < end && is_digit(*p)) {
    }
  } else {
    return fail(ps, POMELO_ERR_JSON_SYNTAX, p);
  }
  if (p < end && *p == '.') {
    p++;
    if (p == end || !is_digit(*p)) {
      return fail(ps, POMELO_ERR_JSON_SYNTAX, p);
    }
    while (++p < end && is_digit(*p)) {
    }
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    p++;
    if (p < end && (*p == '+' || *p == '-')) {
      p++;
    }
    if (p == end || !is_digit(*p)) {
      return fail(ps, POMELO_ERR_JSON_SYNTAX, p);
    }
    while (++p < end && is_digit(*p)) {
    }
  }
  *next = p;
  if (!ps->build) {
    return 0;
  }
  n = (size_t)(p - s);
  lex = arena_alloc(&ps->arena, n + 1, 1);
  if (!lex) {
    return fail(ps, POMELO_ERR_NOMEM, s);
  }
  memcpy(lex, s, n);
  lex[n] = '\0';
  v = push(ps);
  if (!v) {
    return fail(ps, POMELO_ERR_NOMEM, s);
  }
  v->tag = pm_json_tag(POMELO_JSON_NUMBER, n);
  v->u.s = lex;
  {
    char scratch[PM_JSON_NUM_SCRATCH];
    v->num = pm_json_lexeme_to_double(lex, n, scratch);
  }
  return 0;
}

/* Parses `true`, `false` or `null` at `p`. */
static int literal_value(parser *ps, const uint8_t *p, const uint8_t **next) {
  const char *lit;
  size_t n, i;
  pomelo_json_value *v;
  uint64_t tag;
  switch (*p) {
  case 't':
    lit = "true";
    tag = POMELO_JSON_BOOL | PM_JSON_TAG_TRUE;
    break;
  case 'f':
    lit = "false";
    tag = POMELO_JSON_BOOL;
    break;
  default:
    lit = "null";
    tag = POMELO_JSON_NULL;
    break;
  }
  n = strlen(lit);
  for (i = 0; i < n; i++) {
    if (p + i == ps->end || p[i] != (uint8_t)lit[i]) {
      return fail(ps, POMELO_ERR_JSON_SYNTAX, p + i);
    }
  }
  *next = p + n;
  if (ps->build) {
    v = push(ps);
    if (!v) {
      return fail(ps, POMELO_ERR_NOMEM, p);
    }
    v->tag = tag;
    v->u.s = NULL;
    v->num = 0;
  }
  return 0;
}

static inline const uint8_t *skip_ws(const uint8_t *p, const uint8_t *end) {
  while (p < end && pm_json_is_ws(*p)) {
    p++;
  }
  return p;
}

/* Parses the whole input: exactly one value with optional whitespace around it. */
static int parse_text(parser *ps) {
  const uint8_t *p = ps->begin, *end = ps->end;
  int rc;

value:
  p = skip_ws(p, end);
  if (p == end) {
    return fail(ps, POMELO_ERR_JSON_SYNTAX, p);
  }
  switch (*p) {
  case '{':
  case '[': {
    int object = *p == '{';
    rc = open_level(ps, p, object);
    if (rc != 0) {
      return rc;
    }
    p = skip_ws(p + 1, end);
    if (p < end && *p == (object ? '}' : ']')) {
      rc = close_level(ps, p);
      if (rc != 0) {
        return rc;
      }
      p++;
      goto after;
    }
    if (object) {
      goto key;
    }
    goto value;
  }
  case '"':
    rc = string_value(ps, p, &p);
    break;
  case '-':
  case '0':
  case '1':
  case '2':
  case '3':
  case '4':
  case '5':
  case '6':
  case '7':
  case '8':
  case '9':
    rc = number_value(ps, p, &p);
    break;
  case 't':
  case 'f':
  case 'n':
    rc = literal_value(ps, p, &p);
    break;
  default:
    return fail(ps, POMELO_ERR_JSON_SYNTAX, p);
  }
  if (rc != 0) {
    return rc;
  }
  goto after;

key: /* p is at a non-whitespace byte or the end */
  if (p == end || *p != '"') {
    return fail(ps, POMELO_ERR_JSON_SYNTAX, p);
  }
  rc = string_value(ps, p, &p);
  if (rc != 0) {
    return rc;
  }
  p = skip_ws(p, end);
  if (p == end || *p != ':') {
    return fail(ps, POMELO_ERR_JSON_SYNTAX, p);
  }
  p++;
  goto value;

after: /* a value just ended */
  p = skip_ws(p, end);
  if (ps->depth == 0) {
    if (p != end) {
      return fail(ps, POMELO_ERR_JSON_SYNTAX, p); /* trailing bytes */
    }
    return 0;
  }
  if (p == end) {
    return fail(ps, POMELO_ERR_JSON_SYNTAX, p);
  }
  if (*p == ',') {
    p = skip_ws(p + 1, end);
    if (top_is_object(ps)) {
      goto key;
    }
    goto value;
  }
  if (*p == (top_is_object(ps) ? '}' : ']')) {
    rc = close_level(ps, p);
    if (rc != 0) {
      return rc;
    }
    p++;
    goto after;
  }
  return fail(ps, POMELO_ERR_JSON_SYNTAX, p);
}

static void parser_init(parser *ps, const pomelo_allocator *alloc, const char *text, size_t len) {
  ps->begin = (const uint8_t *)text;
  ps->end = ps->begin + len;
  ps->alloc = alloc;
  ps->depth = 0;
  ps->err = 0;
  ps->arena.alloc = alloc;
  ps->arena.head = NULL;
  ps->arena.next = BLOCK_MIN;
  ps->stk = ps->stk_inline;
  ps->top = 0;
  ps->cap = STACK_INLINE;
  ps->cur = NO_PARENT;
  ps->lv = ps->lv_inline;
  ps->lv_cap = LEVELS_INLINE;
}

static void parser_fini(parser *ps) {
  if (ps->stk != ps->stk_inline) {
    pm_free(ps->alloc, ps->stk);
  }
  if (ps->lv != ps->lv_inline) {
    pm_free(ps->alloc, ps->lv);
  }
}

void pomelo_json_options_default(pomelo_json_options *opts) {
  if (opts) {
    opts->max_depth = 64;
    opts->max_size = (size_t)1 << 20;
    opts->utf8 = POMELO_JSON_UTF8_REPAIR;
  }
}

int pomelo_json_parse(pomelo_json_doc **out, const pomelo_allocator *alloc, const char *text,
                      size_t len, const pomelo_json_options *opts, size_t *err_offset) {
  pomelo_json_options o;
  pomelo_allocator a;
  pomelo_json_doc *doc;
  parser ps;
  int rc;
  if (err_offset) {
    *err_offset = 0;
  }
  if (!out) {
    return POMELO_ERR_INVALID_ARG;
  }
  *out = NULL;
  if (!text && len > 0) {
    return POMELO_ERR_INVALID_ARG;
  }
  if (opts) {
    o = *opts;
    if (o.utf8 != POMELO_JSON_UTF8_REPAIR && o.utf8 != POMELO_JSON_UTF8_STRICT) {
      return POMELO_ERR_INVALID_ARG;
    }
  } else {
    pomelo_json_options_default(&o);
  }
  if (len > o.max_size) {
    if (err_offset) {
      *err_offset = o.max_size;
    }
    return POMELO_ERR_JSON_TOO_LARGE;
  }
  pm_alloc_init(&a, alloc);
  parser_init(&ps, &a, text ? text : "", len);
  ps.build = 1;
  ps.strict = o.utf8 == POMELO_JSON_UTF8_STRICT;
  ps.max_depth = o.max_depth;
  /* The first block is sized from the input: values take 24 bytes, strings no more than their
   * source, and 3 bytes per input byte hold typical bodies (a handshake) in one block. Later
   * blocks double, up to BLOCK_MAX. */
  if (len < (BLOCK_MAX - BLOCK_MIN) / 3) {
    ps.arena.next = PM_MAX(BLOCK_MIN, 3 * len + BLOCK_MIN);
  } else {
    ps.arena.next = BLOCK_MAX;
  }
  doc = arena_alloc(&ps.arena, sizeof(*doc), _Alignof(pomelo_json_doc));
  if (!doc) {
    rc = POMELO_ERR_NOMEM;
  } else {
    rc = parse_text(&ps);
  }
  if (rc == 0) {
    doc->alloc = a;
    doc->blocks = ps.arena.head;
    doc->root = ps.stk[0];
    *out = doc;
  } else {
    arena_free(&a, ps.arena.head);
    if (err_offset) {
      *err_offset = ps.err;
    }
  }
  parser_fini(&ps);
  return rc;
}

int pm_json_validate(const pomelo_allocator *alloc, const char *text, size_t len,
                     uint32_t max_depth, size_t *err_offset) {
  parser ps;
  int rc;
  parser_init(&ps, alloc, text ? text : "", len);
  ps.build = 0;
  ps.strict = 1;
  ps.max_depth = max_depth;
  rc = parse_text(&ps);
  if (rc != 0 && err_offset) {
    *err_offset = ps.err;
  }
  parser_fini(&ps);
  return rc;
}

void pomelo_json_doc_del(pomelo_json_doc *doc) {
  if (doc) {
    pomelo_allocator a = doc->alloc;
    arena_free(&a, doc->blocks); /* the document lives in its first block */
  }
}

/* ---------------------------------------------------------------------------------------------
 * Accessors: all accept NULL and then return the "other type" answer.
 * ------------------------------------------------------------------------------------------- */

const pomelo_json_value *pomelo_json_root(const pomelo_json_doc *doc) {
  return doc ? &doc->root : NULL;
}

pomelo_json_type pomelo_json_typeof(const pomelo_json_value *v) {
  return v ? pm_json_type(v) : POMELO_JSON_NULL;
}

int pomelo_json_bool(const pomelo_json_value *v) {
  return v && pm_json_type(v) == POMELO_JSON_BOOL && (v->tag & PM_JSON_TAG_TRUE) != 0;
}

double pomelo_json_number(const pomelo_json_value *v) {
  return v && pm_json_type(v) == POMELO_JSON_NUMBER ? v->num : 0.0;
}

int pomelo_json_int64(const pomelo_json_value *v, int64_t *out) {
  int64_t x;
  int rc;
  if (!v || pm_json_type(v) != POMELO_JSON_NUMBER) {
    return POMELO_ERR_JSON_TYPE;
  }
  rc = pm_json_lexeme_to_int64(v->u.s, pm_json_len(v), &x);
  if (rc == 0 && out) {
    *out = x;
  }
  return rc;
}

const char *pomelo_json_number_text(const pomelo_json_value *v, size_t *len) {
  if (!v || pm_json_type(v) != POMELO_JSON_NUMBER) {
    return NULL;
  }
  if (len) {
    *len = pm_json_len(v);
  }
  return v->u.s;
}

const char *pomelo_json_string(const pomelo_json_value *v, size_t *len) {
  if (!v || pm_json_type(v) != POMELO_JSON_STRING) {
    return NULL;
  }
  if (len) {
    *len = pm_json_len(v);
  }
  return v->u.s;
}

size_t pomelo_json_len(const pomelo_json_value *v) {
  if (!v || (pm_json_type(v) != POMELO_JSON_ARRAY && pm_json_type(v) != POMELO_JSON_OBJECT)) {
    return 0;
  }
  return pm_json_len(v);
}

const pomelo_json_value *pomelo_json_at(const pomelo_json_value *v, size_t i) {
  if (!v || i >= pomelo_json_len(v)) {
    return NULL;
  }
  return pm_json_type(v) == POMELO_JSON_OBJECT ? &v->u.kids[2 * i + 1] : &v->u.kids[i];
}

const char *pomelo_json_key_at(const pomelo_json_value *v, size_t i, size_t *len) {
  if (!v || pm_json_type(v) != POMELO_JSON_OBJECT || i >= pm_json_len(v)) {
    return NULL;
  }
  return pomelo_json_string(&v->u.kids[2 * i], len);
}

const pomelo_json_value *pomelo_json_get_n(const pomelo_json_value *v, const char *key,
                                           size_t key_len) {
  size_t i;
  if (!v || pm_json_type(v) != POMELO_JSON_OBJECT || (!key && key_len > 0)) {
    return NULL;
  }
  for (i = pm_json_len(v); i-- > 0;) { /* from the end: the last duplicate wins */
    const pomelo_json_value *k = &v->u.kids[2 * i];
    if (pm_json_len(k) == key_len && (key_len == 0 || memcmp(k->u.s, key, key_len) == 0)) {
      return &v->u.kids[2 * i + 1];
    }
  }
  return NULL;
}

const pomelo_json_value *pomelo_json_get(const pomelo_json_value *v, const char *key) {
  if (!key) {
    return NULL;
  }
  return pomelo_json_get_n(v, key, strlen(key));
}
