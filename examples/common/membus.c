/* An in-process bus for pomelo_cluster objects (membus.h).
 * SPDX-License-Identifier: MIT
 */
#include "membus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct sub { /* one subscription */
  pomelo_cluster *c;
  char *subject; /* a trailing ".*" matches one more token */
  struct sub *next;
} sub;

typedef struct msg {     /* one queued message */
  char *subject, *reply; /* reply NULL: none */
  uint8_t *data;
  size_t len;
  unsigned flags;
  pomelo_cluster *only; /* a no-responders notice: for this cluster only (else NULL) */
  struct msg *next;
} msg;

typedef struct counter { /* messages published per subject */
  char *subject;
  size_t n;
  struct counter *next;
} counter;

struct membus {
  sub *subs;
  msg *head, *tail;
  counter *counters;
  size_t published;
  size_t max_payload;
  int up;
};

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) {
    memcpy(d, s, n);
  }
  return d;
}

int membus_new(membus **out) {
  membus *b = calloc(1, sizeof *b);
  if (!b) {
    return ENOMEM;
  }
  b->up = 1;
  *out = b;
  return 0;
}

static void msg_free(msg *m) {
  free(m->subject);
  free(m->reply);
  free(m->data);
  free(m);
}

static void drop_queue(membus *b) {
  while (b->head) {
    msg *m = b->head;
    b->head = m->next;
    msg_free(m);
  }
  b->tail = NULL;
}

void membus_del(membus *b) {
  if (!b) {
    return;
  }
  drop_queue(b);
  while (b->subs) {
    sub *s = b->subs;
    b->subs = s->next;
    free(s->subject);
    free(s);
  }
  while (b->counters) {
    counter *k = b->counters;
    b->counters = k->next;
    free(k->subject);
    free(k);
  }
  free(b);
}

/* Does `pattern` (a trailing ".*": one more token) match `subject`? */
static int matches(const char *pattern, const char *subject) {
  size_t pl = strlen(pattern);
  if (pl >= 2 && strcmp(pattern + pl - 2, ".*") == 0) {
    return strncmp(pattern, subject, pl - 1) == 0 && subject[pl - 1] != '\0' &&
           strchr(subject + pl - 1, '.') == NULL;
  }
  return strcmp(pattern, subject) == 0;
}

static int has_subscriber(const membus *b, const char *subject) {
  const sub *s;
  for (s = b->subs; s; s = s->next) {
    if (matches(s->subject, subject)) {
      return 1;
    }
  }
  return 0;
}

static int enqueue(membus *b, const char *subject, const char *reply, const uint8_t *data,
                   size_t len, unsigned flags, pomelo_cluster *only) {
  msg *m = calloc(1, sizeof *m);
  if (!m) {
    return POMELO_ERR_NOMEM;
  }
  m->subject = dup_str(subject);
  m->reply = reply && *reply ? dup_str(reply) : NULL;
  m->data = malloc(len ? len : 1);
  if (!m->subject || (reply && *reply && !m->reply) || !m->data) {
    msg_free(m);
    return POMELO_ERR_NOMEM;
  }
  if (len) {
    memcpy(m->data, data, len);
  }
  m->len = len;
  m->flags = flags;
  m->only = only;
  if (b->tail) {
    b->tail->next = m;
  } else {
    b->head = m;
  }
  b->tail = m;
  return 0;
}

/* Counts a message under its subject, the last token of an inbox subject ("P/inbox/x.17")
 * dropped: every answer has its own. */
static void count(membus *b, const char *subject) {
  const char *dot = strrchr(subject, '.');
  size_t len = dot ? (size_t)(dot - subject) : strlen(subject);
  counter *k;
  b->published++;
  for (k = b->counters; k; k = k->next) {
    if (strlen(k->subject) == len && strncmp(k->subject, subject, len) == 0) {
      k->n++;
      return;
    }
  }
  k = calloc(1, sizeof *k);
  if (k && (k->subject = malloc(len + 1)) != NULL) {
    memcpy(k->subject, subject, len);
    k->subject[len] = 0;
    k->n = 1;
    k->next = b->counters;
    b->counters = k;
  } else {
    free(k);
  }
}

static int bus_publish(void *bus, const char *subject, const char *reply, const uint8_t *data,
                       size_t len) {
  membus *b = bus;
  int rc;
  if (!b->up) {
    return POMELO_ERR_BUS_DOWN;
  }
  if (b->max_payload && len > b->max_payload) {
    return POMELO_ERR_PAYLOAD;
  }
  count(b, subject);
  rc = enqueue(b, subject, reply, data, len, 0, NULL);
  if (rc == 0 && reply && *reply && !has_subscriber(b, subject)) {
    /* NATS answers a request nobody listens to with a 503 status on its reply subject. */
    rc = enqueue(b, reply, NULL, NULL, 0, POMELO_CLUSTER_NO_RESPONDERS, NULL);
  }
  return rc;
}

int membus_attach(membus *b, pomelo_cluster *c, uint64_t now) {
  const char *subject;
  size_t i;
  for (i = 0; (subject = pomelo_cluster_subject(c, i)) != NULL; i++) {
    sub *s = calloc(1, sizeof *s);
    if (!s || (s->subject = dup_str(subject)) == NULL) {
      free(s);
      membus_detach(b, c);
      return ENOMEM;
    }
    s->c = c;
    s->next = b->subs;
    b->subs = s;
  }
  pomelo_cluster_set_bus(c, bus_publish, b);
  if (b->max_payload) {
    pomelo_cluster_set_max_payload(c, b->max_payload);
  }
  if (b->up) {
    pomelo_cluster_bus_up(c, 1, now);
  }
  return 0;
}

void membus_detach(membus *b, pomelo_cluster *c) {
  sub **p = &b->subs;
  msg **q = &b->head, *prev = NULL;
  while (*p) {
    if ((*p)->c == c) {
      sub *s = *p;
      *p = s->next;
      free(s->subject);
      free(s);
    } else {
      p = &(*p)->next;
    }
  }
  while (*q) { /* notices addressed to it */
    if ((*q)->only == c) {
      msg *m = *q;
      *q = m->next;
      if (b->tail == m) {
        b->tail = prev;
      }
      msg_free(m);
    } else {
      prev = *q;
      q = &(*q)->next;
    }
  }
}

size_t membus_run(membus *b, uint64_t now) {
  size_t delivered = 0;
  while (b->head) {
    msg *m = b->head;
    sub *s;
    size_t nsubs = 0, i;
    pomelo_cluster **targets;
    b->head = m->next;
    if (!b->head) {
      b->tail = NULL;
    }
    /* The subscribers now (a delivery may attach or detach clusters). */
    for (s = b->subs; s; s = s->next) {
      nsubs++;
    }
    targets = calloc(nsubs ? nsubs : 1, sizeof *targets);
    if (targets) {
      size_t n = 0;
      for (s = b->subs; s; s = s->next) {
        if ((!m->only || s->c == m->only) && matches(s->subject, m->subject)) {
          targets[n++] = s->c;
        }
      }
      for (i = 0; i < n; i++) {
        int attached = 0;
        for (s = b->subs; s && !attached; s = s->next) {
          attached = s->c == targets[i];
        }
        if (attached) {
          (void)pomelo_cluster_deliver(targets[i], m->subject, m->reply, m->data, m->len, m->flags,
                                       now);
          delivered++;
        }
      }
      free(targets);
    }
    msg_free(m);
  }
  return delivered;
}

void membus_set_up(membus *b, int up, uint64_t now) {
  sub *s;
  pomelo_cluster *last = NULL;
  b->up = up != 0;
  if (!b->up) {
    drop_queue(b);
  }
  /* Each cluster once (its subscriptions are adjacent: attach adds them together). */
  for (s = b->subs; s; s = s->next) {
    if (s->c != last) {
      pomelo_cluster_bus_up(s->c, b->up, now);
      last = s->c;
    }
  }
}

size_t membus_published(const membus *b, const char *suffix) {
  const counter *k;
  size_t n = 0, sl = suffix ? strlen(suffix) : 0;
  if (!suffix) {
    return b->published;
  }
  for (k = b->counters; k; k = k->next) {
    size_t l = strlen(k->subject);
    if (l >= sl && strcmp(k->subject + l - sl, suffix) == 0) {
      n += k->n;
    }
  }
  return n;
}

void membus_set_max_payload(membus *b, size_t max) {
  b->max_payload = max;
}

int membus_idle(const membus *b) {
  return b->head == NULL;
}
