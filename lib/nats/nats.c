/* libpomelo-nats: a NATS connection on the caller's loop (include/pomelo/nats.h, docs/nats.md).
 *
 * libnats runs on an "external event loop" (natsOptions_SetEventLoop): it never reads or
 * writes the socket on its own threads once connected; it asks for read and write interest
 * through four callbacks (attach, read, write, detach), from whatever thread it is on (the
 * caller's inside natsConnection_Process*Event and publishes, its flusher, timer and reconnect
 * threads), and the loop calls natsConnection_ProcessReadEvent / ProcessWriteEvent. Here the
 * "loop" is an epoll set of our own holding the socket (interest changed under `mu`) and an
 * eventfd; the caller watches the epoll descriptor and calls pomelo_nats_process.
 *
 * Messages: synchronous subscriptions (natsSubscription_NextMsg(sub, 0), which does return at
 * once) cannot be used, because for a "no responders" answer NextMsg returns
 * NATS_NO_RESPONDERS without the message, so the reply subject (the request it answers) is
 * lost. So subscriptions are asynchronous, and their handler, on libnats' per-subscription
 * thread, only moves the message into a bounded ring (`q`) and signals the eventfd; it waits
 * while the ring is full, so that the backlog stays in libnats' pending list, where the
 * pending limits drop and count (natsSubscription_GetDropped). pomelo_nats_process takes a
 * batch out of the ring and delivers it on the caller's thread.
 *
 * Connection events (disconnected, reconnected, connected after a retried first connect,
 * closed) come on libnats' event thread: they update counters under `mu` and signal the
 * eventfd; pomelo_nats_process turns them into on_state.
 *
 * Lifetime: libnats threads hold `n` (the loop pointer, the callbacks' closures) until the
 * connection's closed callback has run (the last connection event), the subscriptions' "on
 * complete" callbacks have run (no handler can run after them) and the socket is detached;
 * pomelo_nats_del waits for those before freeing. Nothing of libnats' threads allocates through
 * the caller's allocator or runs a caller's callback. Never call libnats while holding `mu`:
 * libnats calls our callbacks with its own locks held.
 * SPDX-License-Identifier: MIT
 */
#include <pomelo/nats.h>

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

/* epoll data of the two descriptors of the set. */
#define TAG_EVENT 1u
#define TAG_SOCKET 2u

/* How long pomelo_nats_del waits for libnats' threads to let go, beyond close_timeout_ms. */
#define RELEASE_WAIT_MS 10000

/* Who a subscription delivers to. */
enum { OWNER_USER = 0, OWNER_CLUSTER = 1 };

typedef struct nsub {
  pomelo_nats *n;
  natsSubscription *ns; /* NULL once ended by us */
  char *subject;
  int owner;
  int has_complete; /* its on-complete callback is set (it will say when it is done) */
  /* Under n->mu: */
  int closing;  /* ended: its handler drops what comes, process skips its queued messages */
  int complete; /* libnats' on-complete ran: no handler will run again; the record may go */
} nsub;

typedef struct qent {
  natsMsg *m;
  nsub *s;
} qent;

struct pomelo_nats {
  pomelo_allocator alloc;
  pomelo_nats_callbacks cb;
  void *user_data;
  pomelo_nats_settings st; /* url and name point to our copies */
  char *url;
  char *name;

  natsConnection *nc;
  int epfd;
  int evfd;

  /* Subscriptions (caller's thread; the records' flags under mu). */
  nsub **subs;
  size_t nsubs, subs_cap;
  size_t ending; /* records ended and not yet freed (reap_subs has work) */

  /* The attached cluster (caller's thread). */
  pomelo_cluster *cluster;
  int cluster_sync; /* tell the cluster the state at the next process */

  /* State as reported to the caller (caller's thread). */
  int reported_up;
  int reported_closed;
  uint64_t down_seen, reconn_seen;
  size_t max_payload;
  natsStatus last_status;
  pomelo_nats_stats stats;
  uint64_t dropped_gone; /* drops of ended subscriptions */
  qent *batch;           /* process's snapshot of the ring (queue_msgs entries) */

  /* Shared with libnats' threads: everything below is under mu. */
  pthread_mutex_t mu;
  pthread_cond_t cv; /* ring space, releases (closed, complete, detach) */
  int closing;       /* pomelo_nats_del started */
  int signalled;     /* the eventfd was written since process last read it */
  /* The socket and its registration in epfd. */
  int sock;       /* libnats' socket, -1 when detached */
  dev_t sock_dev; /* its identity, to never register a reused descriptor number */
  ino_t sock_ino;
  int want_read, want_write;
  int reg_fd; /* the descriptor registered in epfd, -1 when none */
  int ever_attached, detached;
  /* Connection events. */
  uint64_t ev_down, ev_reconn;
  int ev_cur_up, ev_closed;
  /* The ring. */
  qent *q;
  size_t q_head, q_count, q_bytes;
};

/* ---------------------------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------------------------- */

static void *n_alloc(const pomelo_allocator *a, size_t size) {
  return a->malloc(size, a->user_data);
}

static void n_free(const pomelo_allocator *a, void *p) {
  a->free(p, a->user_data);
}

static char *n_strdup(const pomelo_allocator *a, const char *s) {
  size_t len = strlen(s);
  char *p = (char *)n_alloc(a, len + 1);
  if (p) {
    memcpy(p, s, len + 1);
  }
  return p;
}

static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Writes the eventfd unless it is already signalled. Under mu. */
static void signal_locked(pomelo_nats *n) {
  uint64_t one = 1;
  if (!n->signalled) {
    n->signalled = 1;
    /* Non-blocking; it fails only when the counter is near 2^64, i.e. already readable. */
    if (write(n->evfd, &one, sizeof(one)) < 0) {
      (void)0;
    }
  }
}

/* The error for a failed libnats call, remembered for pomelo_nats_last_error. */
static int map_status(pomelo_nats *n, natsStatus s) {
  if (n) {
    n->last_status = s;
  }
  switch (s) {
  case NATS_OK:
    return 0;
  case NATS_NO_MEMORY:
    return POMELO_ERR_NOMEM;
  case NATS_INVALID_ARG:
  case NATS_INVALID_SUBJECT:
  case NATS_ADDRESS_MISSING:
    return POMELO_ERR_INVALID_ARG;
  case NATS_MAX_PAYLOAD:
    return POMELO_ERR_PAYLOAD;
  case NATS_CONNECTION_CLOSED:
    return POMELO_ERR_CLOSED;
  case NATS_INSUFFICIENT_BUFFER:
  case NATS_NO_SERVER:
  case NATS_CONNECTION_DISCONNECTED:
  case NATS_CONNECTION_AUTH_FAILED:
  case NATS_NOT_PERMITTED:
  case NATS_STALE_CONNECTION:
  case NATS_SECURE_CONNECTION_WANTED:
  case NATS_SECURE_CONNECTION_REQUIRED:
  case NATS_IO_ERROR:
  case NATS_TIMEOUT:
    return POMELO_ERR_BUS_DOWN;
  default:
    return POMELO_ERR_INTERNAL;
  }
}

/* ---------------------------------------------------------------------------------------------
 * The socket in the epoll set (libnats' event loop callbacks; any thread)
 * ------------------------------------------------------------------------------------------- */

/* Makes the registration of the socket match want_read / want_write. Under mu. libnats closes
 * the socket itself (before detach, and on a loss before reconnecting), which removes it from
 * the set behind our back, and the number may then be reused: so a failed MOD falls back to
 * ADD, and nothing is ADDed unless the descriptor is still the socket libnats attached. */
static int reg_update_locked(pomelo_nats *n) {
  struct epoll_event ev;
  struct stat sb;
  uint32_t events = (n->want_read ? EPOLLIN : 0u) | (n->want_write ? EPOLLOUT : 0u);

  if (n->reg_fd >= 0 && (n->reg_fd != n->sock || events == 0)) {
    (void)epoll_ctl(n->epfd, EPOLL_CTL_DEL, n->reg_fd, NULL); /* ENOENT when closed: fine */
    n->reg_fd = -1;
  }
  if (n->sock < 0 || events == 0) {
    return 0;
  }
  memset(&ev, 0, sizeof(ev));
  ev.events = events;
  ev.data.u32 = TAG_SOCKET;
  if (n->reg_fd == n->sock) {
    if (epoll_ctl(n->epfd, EPOLL_CTL_MOD, n->sock, &ev) == 0) {
      return 0;
    }
    n->reg_fd = -1;
    if (errno != ENOENT) {
      return -1;
    }
  }
  if (fstat(n->sock, &sb) != 0 || sb.st_dev != n->sock_dev || sb.st_ino != n->sock_ino) {
    return 0; /* closed by libnats: nothing to watch until the next attach */
  }
  if (epoll_ctl(n->epfd, EPOLL_CTL_ADD, n->sock, &ev) != 0) {
    if (errno != EEXIST || epoll_ctl(n->epfd, EPOLL_CTL_MOD, n->sock, &ev) != 0) {
      return -1;
    }
  }
  n->reg_fd = n->sock;
  return 0;
}

static natsStatus ev_attach(void **user_data, void *loop, natsConnection *nc, natsSock sock) {
  pomelo_nats *n = (pomelo_nats *)loop;
  struct stat sb;
  int rc;
  (void)nc;
  pthread_mutex_lock(&n->mu);
  n->sock = (int)sock;
  if (fstat(n->sock, &sb) == 0) {
    n->sock_dev = sb.st_dev;
    n->sock_ino = sb.st_ino;
  }
  n->want_read = 1; /* attached means polled for reads (libnats calls no read(true) then) */
  n->want_write = 0;
  n->ever_attached = 1;
  n->detached = 0;
  rc = reg_update_locked(n);
  pthread_mutex_unlock(&n->mu);
  *user_data = n;
  return rc == 0 ? NATS_OK : NATS_SYS_ERROR;
}

static natsStatus ev_read(void *user_data, bool add) {
  pomelo_nats *n = (pomelo_nats *)user_data;
  int rc;
  pthread_mutex_lock(&n->mu);
  n->want_read = add ? 1 : 0;
  rc = reg_update_locked(n);
  pthread_mutex_unlock(&n->mu);
  return rc == 0 ? NATS_OK : NATS_SYS_ERROR;
}

static natsStatus ev_write(void *user_data, bool add) {
  pomelo_nats *n = (pomelo_nats *)user_data;
  int rc;
  pthread_mutex_lock(&n->mu);
  n->want_write = add ? 1 : 0;
  rc = reg_update_locked(n);
  pthread_mutex_unlock(&n->mu);
  return rc == 0 ? NATS_OK : NATS_SYS_ERROR;
}

static natsStatus ev_detach(void *user_data) {
  pomelo_nats *n = (pomelo_nats *)user_data;
  pthread_mutex_lock(&n->mu);
  n->want_read = n->want_write = 0;
  n->sock = -1;
  (void)reg_update_locked(n);
  n->detached = 1;
  pthread_cond_broadcast(&n->cv);
  pthread_mutex_unlock(&n->mu);
  return NATS_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Connection events (libnats' event thread)
 * ------------------------------------------------------------------------------------------- */

static void on_nats_connected(natsConnection *nc, void *closure) {
  pomelo_nats *n = (pomelo_nats *)closure;
  (void)nc;
  pthread_mutex_lock(&n->mu);
  n->ev_cur_up = 1;
  signal_locked(n);
  pthread_mutex_unlock(&n->mu);
}

static void on_nats_reconnected(natsConnection *nc, void *closure) {
  pomelo_nats *n = (pomelo_nats *)closure;
  (void)nc;
  pthread_mutex_lock(&n->mu);
  n->ev_reconn++;
  n->ev_cur_up = 1;
  signal_locked(n);
  pthread_mutex_unlock(&n->mu);
}

static void on_nats_disconnected(natsConnection *nc, void *closure) {
  pomelo_nats *n = (pomelo_nats *)closure;
  (void)nc;
  pthread_mutex_lock(&n->mu);
  n->ev_down++;
  n->ev_cur_up = 0;
  signal_locked(n);
  pthread_mutex_unlock(&n->mu);
}

static void on_nats_closed(natsConnection *nc, void *closure) {
  pomelo_nats *n = (pomelo_nats *)closure;
  (void)nc;
  pthread_mutex_lock(&n->mu);
  n->ev_cur_up = 0;
  n->ev_closed = 1;
  signal_locked(n);
  pthread_cond_broadcast(&n->cv);
  pthread_mutex_unlock(&n->mu);
}

/* ---------------------------------------------------------------------------------------------
 * Messages (libnats' subscription threads)
 * ------------------------------------------------------------------------------------------- */

static int ring_full_locked(const pomelo_nats *n, size_t bytes) {
  return n->q_count >= n->st.queue_msgs ||
         (n->q_count > 0 && n->q_bytes + bytes > n->st.queue_bytes);
}

static void on_nats_msg(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure) {
  nsub *s = (nsub *)closure;
  pomelo_nats *n = s->n;
  int len = natsMsg_GetDataLength(m);
  size_t bytes = len > 0 ? (size_t)len : 0;
  (void)nc;
  (void)sub;
  pthread_mutex_lock(&n->mu);
  /* Waiting here keeps the backlog in libnats' pending list, where its limits apply. */
  while (!n->closing && !s->closing && ring_full_locked(n, bytes)) {
    pthread_cond_wait(&n->cv, &n->mu);
  }
  if (n->closing || s->closing) {
    pthread_mutex_unlock(&n->mu);
    natsMsg_Destroy(m);
    return;
  }
  {
    size_t at = (n->q_head + n->q_count) % n->st.queue_msgs;
    n->q[at].m = m;
    n->q[at].s = s;
    n->q_count++;
    n->q_bytes += bytes;
  }
  signal_locked(n);
  pthread_mutex_unlock(&n->mu);
}

static void on_nats_sub_complete(void *closure) {
  nsub *s = (nsub *)closure;
  pomelo_nats *n = s->n;
  pthread_mutex_lock(&n->mu);
  s->complete = 1;
  pthread_cond_broadcast(&n->cv);
  pthread_mutex_unlock(&n->mu);
}

/* ---------------------------------------------------------------------------------------------
 * Settings and creation
 * ------------------------------------------------------------------------------------------- */

void pomelo_nats_settings_default(pomelo_nats_settings *s) {
  if (!s) {
    return;
  }
  memset(s, 0, sizeof(*s));
  s->url = "nats://127.0.0.1:4222";
  s->name = NULL;
  s->connect_timeout_ms = 2000;
  s->retry_connect = 1;
  s->reconnect_wait_ms = 2000;
  s->max_reconnects = -1;
  s->reconnect_buffer = 8u * 1024 * 1024;
  s->pending_msgs = 65536;
  s->pending_bytes = 64 * 1024 * 1024;
  s->queue_msgs = 1024;
  s->queue_bytes = 8u * 1024 * 1024;
  s->ping_interval_ms = 120000;
  s->close_timeout_ms = 1000;
}

static int settings_valid(const pomelo_nats_settings *s) {
  return s->url && s->url[0] && s->connect_timeout_ms > 0 && s->max_reconnects >= -1 &&
         s->reconnect_buffer > 0 && s->reconnect_buffer <= INT_MAX &&
         (s->pending_msgs > 0 || s->pending_msgs == -1) &&
         (s->pending_bytes > 0 || s->pending_bytes == -1) && s->pending_bytes <= INT_MAX &&
         s->queue_msgs > 0 && s->queue_msgs <= 1u << 24 && s->queue_bytes > 0 &&
         s->ping_interval_ms > 0;
}

/* Splits the comma-separated URL list (in place, in n->url) into natsOptions_SetServers. */
static int set_servers(pomelo_nats *n, natsOptions *opts) {
  const char **list;
  size_t count = 1, i = 0;
  char *p, *start;
  natsStatus s;
  int rc = 0;

  for (p = n->url; *p; p++) {
    count += *p == ',';
  }
  if (count > INT_MAX) {
    return POMELO_ERR_INVALID_ARG;
  }
  list = (const char **)n_alloc(&n->alloc, count * sizeof(*list));
  if (!list) {
    return POMELO_ERR_NOMEM;
  }
  start = n->url;
  for (;;) {
    char *end = strchr(start, ',');
    char *last;
    if (end) {
      *end = '\0';
    }
    while (*start == ' ' || *start == '\t') {
      start++;
    }
    last = start + strlen(start);
    while (last > start && (last[-1] == ' ' || last[-1] == '\t')) {
      *--last = '\0';
    }
    if (!*start) {
      rc = POMELO_ERR_INVALID_ARG;
      break;
    }
    list[i++] = start;
    if (!end) {
      break;
    }
    start = end + 1;
  }
  if (rc == 0) {
    s = natsOptions_SetServers(opts, list, (int)i);
    if (s != NATS_OK) {
      n->last_status = s;
      rc = s == NATS_NO_MEMORY ? POMELO_ERR_NOMEM : POMELO_ERR_INVALID_ARG;
    }
  }
  n_free(&n->alloc, (void *)list);
  return rc;
}

static int make_options(pomelo_nats *n, natsOptions **out) {
  natsOptions *opts = NULL;
  natsStatus s;
  int rc;
  const pomelo_nats_settings *st = &n->st;

  s = natsOptions_Create(&opts);
  if (s != NATS_OK) {
    return map_status(n, s);
  }
  rc = set_servers(n, opts);
  if (rc != 0) {
    natsOptions_Destroy(opts);
    return rc;
  }
  s = NATS_OK;
  if (n->name) {
    s = natsOptions_SetName(opts, n->name);
  }
  if (s == NATS_OK) {
    s = natsOptions_SetTimeout(opts, (int64_t)st->connect_timeout_ms);
  }
  if (s == NATS_OK) {
    s = natsOptions_SetAllowReconnect(opts, true);
  }
  if (s == NATS_OK) {
    s = natsOptions_SetMaxReconnect(opts, st->max_reconnects);
  }
  if (s == NATS_OK) {
    s = natsOptions_SetReconnectWait(opts, (int64_t)st->reconnect_wait_ms);
  }
  if (s == NATS_OK) {
    s = natsOptions_SetReconnectBufSize(opts, (int)st->reconnect_buffer);
  }
  if (s == NATS_OK) {
    s = natsOptions_SetPingInterval(opts, (int64_t)st->ping_interval_ms);
  }
  if (s == NATS_OK) {
    s = natsOptions_SetEventLoop(opts, n, ev_attach, ev_read, ev_write, ev_detach);
  }
  if (s == NATS_OK) {
    s = natsOptions_SetDisconnectedCB(opts, on_nats_disconnected, n);
  }
  if (s == NATS_OK) {
    s = natsOptions_SetReconnectedCB(opts, on_nats_reconnected, n);
  }
  if (s == NATS_OK) {
    s = natsOptions_SetClosedCB(opts, on_nats_closed, n);
  }
  if (s == NATS_OK) {
    s = natsOptions_SetRetryOnFailedConnect(opts, st->retry_connect ? true : false,
                                            st->retry_connect ? on_nats_connected : NULL, n);
  }
  if (s != NATS_OK) {
    natsOptions_Destroy(opts);
    return map_status(n, s);
  }
  *out = opts;
  return 0;
}

/* Frees what pomelo_nats_new made before the connection (and the ring's leftovers). */
static void free_shell(pomelo_nats *n) {
  size_t i;
  for (i = 0; i < n->q_count; i++) {
    natsMsg_Destroy(n->q[(n->q_head + i) % n->st.queue_msgs].m);
  }
  if (n->epfd >= 0) {
    close(n->epfd);
  }
  if (n->evfd >= 0) {
    close(n->evfd);
  }
  pthread_cond_destroy(&n->cv);
  pthread_mutex_destroy(&n->mu);
  n_free(&n->alloc, n->q);
  n_free(&n->alloc, n->batch);
  n_free(&n->alloc, n->subs);
  n_free(&n->alloc, n->url);
  n_free(&n->alloc, n->name);
  n_free(&n->alloc, n);
}

/* The last status of pomelo_nats_new in this thread (pomelo_nats_last_error(NULL)). */
static _Thread_local natsStatus new_status;

int pomelo_nats_new(pomelo_nats **out, const pomelo_nats_settings *settings,
                    const pomelo_nats_callbacks *callbacks, const pomelo_allocator *alloc,
                    void *user_data) {
  pomelo_nats_settings defaults;
  pomelo_nats *n;
  pthread_condattr_t ca;
  natsOptions *opts = NULL;
  natsStatus s;
  struct epoll_event ev;
  int rc;

  if (!out) {
    return POMELO_ERR_INVALID_ARG;
  }
  *out = NULL;
  new_status = NATS_OK;
  if (!settings) {
    pomelo_nats_settings_default(&defaults);
    settings = &defaults;
  }
  if (!settings_valid(settings)) {
    return POMELO_ERR_INVALID_ARG;
  }
  if (!alloc) {
    alloc = pomelo_allocator_libc();
  }
  n = (pomelo_nats *)alloc->malloc(sizeof(*n), alloc->user_data);
  if (!n) {
    return POMELO_ERR_NOMEM;
  }
  memset(n, 0, sizeof(*n));
  n->alloc = *alloc;
  if (callbacks) {
    n->cb = *callbacks;
  }
  n->user_data = user_data;
  n->st = *settings;
  n->epfd = n->evfd = -1;
  n->sock = n->reg_fd = -1;
  n->max_payload = 1024u * 1024u;
  if (pthread_mutex_init(&n->mu, NULL) != 0) {
    n_free(&n->alloc, n);
    return POMELO_ERR_INTERNAL;
  }
  /* The condition waits in pomelo_nats_del are timed on the monotonic clock. */
  if (pthread_condattr_init(&ca) != 0) {
    pthread_mutex_destroy(&n->mu);
    n_free(&n->alloc, n);
    return POMELO_ERR_INTERNAL;
  }
  rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  if (rc == 0) {
    rc = pthread_cond_init(&n->cv, &ca);
  }
  pthread_condattr_destroy(&ca);
  if (rc != 0) {
    pthread_mutex_destroy(&n->mu);
    n_free(&n->alloc, n);
    return POMELO_ERR_INTERNAL;
  }

  n->url = n_strdup(&n->alloc, settings->url);
  n->name = settings->name ? n_strdup(&n->alloc, settings->name) : NULL;
  n->q = (qent *)n_alloc(&n->alloc, settings->queue_msgs * sizeof(qent));
  n->batch = (qent *)n_alloc(&n->alloc, settings->queue_msgs * sizeof(qent));
  if (!n->url || (settings->name && !n->name) || !n->q || !n->batch) {
    free_shell(n);
    return POMELO_ERR_NOMEM;
  }
  n->st.url = n->url;
  n->st.name = n->name;

  n->epfd = epoll_create1(EPOLL_CLOEXEC);
  n->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (n->epfd < 0 || n->evfd < 0) {
    free_shell(n);
    return POMELO_ERR_INTERNAL;
  }
  memset(&ev, 0, sizeof(ev));
  ev.events = EPOLLIN;
  ev.data.u32 = TAG_EVENT;
  if (epoll_ctl(n->epfd, EPOLL_CTL_ADD, n->evfd, &ev) != 0) {
    free_shell(n);
    return POMELO_ERR_INTERNAL;
  }

  rc = make_options(n, &opts);
  if (rc != 0) {
    new_status = n->last_status;
    free_shell(n);
    return rc;
  }
  s = natsConnection_Connect(&n->nc, opts);
  natsOptions_Destroy(opts);
  if (s == NATS_OK) {
    /* Connected inside the call: reported up by the first pomelo_nats_process. */
    pthread_mutex_lock(&n->mu);
    n->ev_cur_up = 1;
    signal_locked(n);
    pthread_mutex_unlock(&n->mu);
  } else if (s != NATS_NOT_YET_CONNECTED) {
    /* No connection object: libnats holds nothing of ours. */
    new_status = s;
    rc = map_status(n, s);
    if (rc == POMELO_ERR_INTERNAL && s == NATS_ERR) {
      rc = POMELO_ERR_BUS_DOWN;
    }
    n->nc = NULL;
    free_shell(n);
    return rc;
  }
  {
    int64_t mp = natsConnection_GetMaxPayload(n->nc);
    if (mp > 0) {
      n->max_payload = (size_t)mp;
    }
  }
  *out = n;
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Subscriptions
 * ------------------------------------------------------------------------------------------- */

static nsub *find_sub(const pomelo_nats *n, const char *subject, int owner) {
  size_t i;
  for (i = 0; i < n->nsubs; i++) {
    nsub *s = n->subs[i];
    if (s->ns && s->owner == owner && strcmp(s->subject, subject) == 0) {
      return s;
    }
  }
  return NULL;
}

static int subscribe_as(pomelo_nats *n, const char *subject, int owner) {
  nsub *s;
  natsStatus st;

  if (!n || !subject || !subject[0]) {
    return POMELO_ERR_INVALID_ARG;
  }
  if (find_sub(n, subject, owner)) {
    return POMELO_ERR_EXISTS;
  }
  if (n->nsubs == n->subs_cap) {
    size_t cap = n->subs_cap ? n->subs_cap * 2 : 8;
    nsub **grown = (nsub **)n->alloc.realloc(n->subs, cap * sizeof(*grown), n->alloc.user_data);
    if (!grown) {
      return POMELO_ERR_NOMEM;
    }
    n->subs = grown;
    n->subs_cap = cap;
  }
  s = (nsub *)n_alloc(&n->alloc, sizeof(*s));
  if (!s) {
    return POMELO_ERR_NOMEM;
  }
  memset(s, 0, sizeof(*s));
  s->n = n;
  s->owner = owner;
  s->subject = n_strdup(&n->alloc, subject);
  if (!s->subject) {
    n_free(&n->alloc, s);
    return POMELO_ERR_NOMEM;
  }
  st = natsConnection_Subscribe(&s->ns, n->nc, subject, on_nats_msg, s);
  if (st != NATS_OK) {
    n_free(&n->alloc, s->subject);
    n_free(&n->alloc, s);
    return map_status(n, st);
  }
  st = natsSubscription_SetOnCompleteCB(s->ns, on_nats_sub_complete, s);
  if (st != NATS_OK) {
    /* The subscription closed in between (the connection closed): a handler may still run
     * for it and we would never learn when it is done, so the record is kept (not freed)
     * until pomelo_nats_del, which frees it only after the connection's release. */
    natsSubscription_Destroy(s->ns);
    s->ns = NULL;
    pthread_mutex_lock(&n->mu);
    s->closing = 1;
    pthread_mutex_unlock(&n->mu);
    n->subs[n->nsubs++] = s;
    return POMELO_ERR_CLOSED;
  }
  s->has_complete = 1;
  st = natsSubscription_SetPendingLimits(s->ns, n->st.pending_msgs, (int)n->st.pending_bytes);
  (void)st; /* the limits are valid (settings_valid): it fails only on a closed subscription */
  n->subs[n->nsubs++] = s;
  return 0;
}

/* Drops the messages of `s` still in the ring (no new ones come once it is closing). Under
 * mu; natsMsg_Destroy takes none of libnats' connection locks. */
static void purge_locked(pomelo_nats *n, const nsub *s) {
  size_t i, kept = 0, cap = n->st.queue_msgs;
  for (i = 0; i < n->q_count; i++) {
    qent e = n->q[(n->q_head + i) % cap];
    if (e.s == s) {
      int len = natsMsg_GetDataLength(e.m);
      n->q_bytes -= len > 0 ? (size_t)len : 0;
      natsMsg_Destroy(e.m);
    } else {
      n->q[(n->q_head + kept) % cap] = e;
      kept++;
    }
  }
  n->q_count = kept;
}

/* Ends a subscription: the record stays until libnats says its handler is done. */
static void end_sub(pomelo_nats *n, nsub *s) {
  int64_t dropped = 0;
  if (!s->ns) {
    return;
  }
  if (natsSubscription_GetDropped(s->ns, &dropped) == NATS_OK && dropped > 0) {
    n->dropped_gone += (uint64_t)dropped;
  }
  pthread_mutex_lock(&n->mu);
  s->closing = 1;
  purge_locked(n, s);             /* the record may be freed before the next batch */
  pthread_cond_broadcast(&n->cv); /* its handler may wait for room in the ring */
  pthread_mutex_unlock(&n->mu);
  (void)natsSubscription_Unsubscribe(s->ns);
  natsSubscription_Destroy(s->ns);
  s->ns = NULL;
  n->ending++;
}

/* Frees the records of ended subscriptions whose handlers are done. Only where no batch of
 * process still points to them. */
static void reap_subs(pomelo_nats *n) {
  size_t i = 0;
  while (n->ending > 0 && i < n->nsubs) {
    nsub *s = n->subs[i];
    int done;
    pthread_mutex_lock(&n->mu);
    done = s->closing && s->complete;
    pthread_mutex_unlock(&n->mu);
    if (done) {
      n_free(&n->alloc, s->subject);
      n_free(&n->alloc, s);
      n->subs[i] = n->subs[--n->nsubs];
      n->ending--;
    } else {
      i++;
    }
  }
}

int pomelo_nats_subscribe(pomelo_nats *n, const char *subject) {
  return subscribe_as(n, subject, OWNER_USER);
}

int pomelo_nats_unsubscribe(pomelo_nats *n, const char *subject) {
  nsub *s;
  if (!n || !subject) {
    return POMELO_ERR_INVALID_ARG;
  }
  s = find_sub(n, subject, OWNER_USER);
  if (!s) {
    return POMELO_ERR_NOT_FOUND;
  }
  end_sub(n, s);
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Publishing
 * ------------------------------------------------------------------------------------------- */

int pomelo_nats_publish(pomelo_nats *n, const char *subject, const char *reply, const uint8_t *data,
                        size_t len) {
  natsStatus s;
  int rc;
  if (!n) {
    return POMELO_ERR_INVALID_ARG;
  }
  if (!subject || !subject[0] || (!data && len > 0)) {
    n->stats.publish_errors++;
    return POMELO_ERR_INVALID_ARG;
  }
  if (len > n->max_payload || len > INT_MAX) {
    n->stats.too_large++;
    return POMELO_ERR_PAYLOAD;
  }
  if (reply && reply[0]) {
    s = natsConnection_PublishRequest(n->nc, subject, reply, data, (int)len);
  } else {
    s = natsConnection_Publish(n->nc, subject, data, (int)len);
  }
  if (s == NATS_OK) {
    n->stats.published++;
    n->stats.published_bytes += len;
    return 0;
  }
  rc = map_status(n, s);
  if (rc == POMELO_ERR_PAYLOAD) {
    n->stats.too_large++; /* a server with a smaller limit than the one we knew */
  } else {
    n->stats.publish_errors++;
  }
  return rc;
}

/* ---------------------------------------------------------------------------------------------
 * The loop
 * ------------------------------------------------------------------------------------------- */

/* The cluster's side of a state change (glue). */
static void cluster_state(pomelo_nats *n, int up, uint64_t now);
/* A message of a cluster subscription (glue). */
static void cluster_deliver(pomelo_nats *n, const char *subject, const char *reply,
                            const uint8_t *data, size_t len, unsigned flags, uint64_t now);

static void report_state(pomelo_nats *n, int up, uint64_t now) {
  n->reported_up = up;
  if (up) {
    int64_t mp = natsConnection_GetMaxPayload(n->nc);
    if (mp > 0) {
      n->max_payload = (size_t)mp;
    }
  }
  if (n->cluster) {
    n->cluster_sync = 0;
    cluster_state(n, up, now);
  }
  if (n->cb.on_state) {
    n->cb.on_state(n, up, n->user_data);
  }
}

static void process_state(pomelo_nats *n, uint64_t now) {
  uint64_t down, reconn;
  int cur_up, closed;

  pthread_mutex_lock(&n->mu);
  down = n->ev_down;
  reconn = n->ev_reconn;
  cur_up = n->ev_cur_up;
  closed = n->ev_closed;
  pthread_mutex_unlock(&n->mu);

  n->stats.disconnects += down - n->down_seen;
  n->stats.reconnects += reconn - n->reconn_seen;
  if ((down != n->down_seen || closed) && n->reported_up) {
    report_state(n, 0, now);
  }
  n->down_seen = down;
  n->reconn_seen = reconn;
  if (closed) {
    if (!n->reported_closed) {
      n->reported_closed = 1;
      if (n->cb.on_closed) {
        n->cb.on_closed(n, n->user_data);
      }
    }
  } else if (cur_up && !n->reported_up) {
    report_state(n, 1, now);
  }
  if (n->cluster_sync && n->cluster) {
    /* Attached since the last call: a cluster starts down, so only an up is news. */
    n->cluster_sync = 0;
    if (n->reported_up) {
      cluster_state(n, 1, now);
    }
  }
}

static void deliver_batch(pomelo_nats *n, uint64_t now) {
  size_t k, i;

  pthread_mutex_lock(&n->mu);
  k = n->q_count;
  for (i = 0; i < k; i++) {
    n->batch[i] = n->q[(n->q_head + i) % n->st.queue_msgs];
  }
  n->q_head = 0;
  n->q_count = 0;
  n->q_bytes = 0;
  if (k > 0) {
    pthread_cond_broadcast(&n->cv); /* room in the ring */
  }
  pthread_mutex_unlock(&n->mu);

  for (i = 0; i < k; i++) {
    natsMsg *m = n->batch[i].m;
    nsub *s = n->batch[i].s;
    /* `closing` is written only on this thread (under mu, for the handlers): ended by a
     * callback of this batch, or the cluster detached. */
    if (!s->closing && !n->closing) {
      const char *subject = natsMsg_GetSubject(m);
      const char *reply = natsMsg_GetReply(m);
      int len = natsMsg_GetDataLength(m);
      size_t ulen = len > 0 ? (size_t)len : 0;
      const uint8_t *data = ulen ? (const uint8_t *)natsMsg_GetData(m) : NULL;
      unsigned flags = natsMsg_IsNoResponders(m) ? POMELO_CLUSTER_NO_RESPONDERS : 0u;
      if (reply && !reply[0]) {
        reply = NULL;
      }
      n->stats.received++;
      n->stats.received_bytes += ulen;
      if (s->owner == OWNER_CLUSTER) {
        cluster_deliver(n, subject, reply, data, ulen, flags, now);
      } else if (n->cb.on_message) {
        n->cb.on_message(n, subject, reply, data, ulen, flags, n->user_data);
      }
    }
    natsMsg_Destroy(m);
  }
}

int pomelo_nats_process(pomelo_nats *n, uint64_t now) {
  struct epoll_event evs[4];
  int k, i, rd = 0, wr = 0, left;

  if (!n) {
    return POMELO_ERR_INVALID_ARG;
  }
  reap_subs(n);
  k = epoll_wait(n->epfd, evs, 4, 0);
  for (i = 0; i < k; i++) {
    if (evs[i].data.u32 == TAG_EVENT) {
      uint64_t v;
      pthread_mutex_lock(&n->mu);
      n->signalled = 0;
      if (read(n->evfd, &v, sizeof(v)) < 0) {
        (void)0; /* EAGAIN: nothing pending */
      }
      pthread_mutex_unlock(&n->mu);
    } else {
      rd |= (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0;
      wr |= (evs[i].events & EPOLLOUT) != 0;
    }
  }
  /* libnats takes its own lock and checks its socket: a late event is harmless. */
  if (rd) {
    natsConnection_ProcessReadEvent(n->nc);
  }
  if (wr) {
    natsConnection_ProcessWriteEvent(n->nc);
  }
  /* Messages received before a state change are delivered before it is reported. */
  deliver_batch(n, now);
  process_state(n, now);

  pthread_mutex_lock(&n->mu);
  if (n->q_count > 0) {
    signal_locked(n);
  }
  pthread_mutex_unlock(&n->mu);
  left = epoll_wait(n->epfd, evs, 1, 0);
  return left > 0 ? 1 : 0;
}

/* ---------------------------------------------------------------------------------------------
 * Queries
 * ------------------------------------------------------------------------------------------- */

void *pomelo_nats_user_data(const pomelo_nats *n) {
  return n ? n->user_data : NULL;
}

int pomelo_nats_fd(const pomelo_nats *n) {
  return n ? n->epfd : -1;
}

size_t pomelo_nats_max_payload(const pomelo_nats *n) {
  return n ? n->max_payload : 0;
}

int pomelo_nats_is_up(const pomelo_nats *n) {
  return n ? n->reported_up : 0;
}

int pomelo_nats_is_closed(const pomelo_nats *n) {
  return n ? n->reported_closed : 0;
}

const char *pomelo_nats_last_error(const pomelo_nats *n) {
  natsStatus s = n ? n->last_status : new_status;
  return s == NATS_OK ? "" : natsStatus_GetText(s);
}

void pomelo_nats_get_stats(const pomelo_nats *n, pomelo_nats_stats *out) {
  size_t i;
  if (!out) {
    return;
  }
  memset(out, 0, sizeof(*out));
  if (!n) {
    return;
  }
  *out = n->stats;
  out->dropped = n->dropped_gone;
  out->subscriptions = 0;
  for (i = 0; i < n->nsubs; i++) {
    int64_t d = 0;
    if (!n->subs[i]->ns) {
      continue;
    }
    out->subscriptions++;
    if (natsSubscription_GetDropped(n->subs[i]->ns, &d) == NATS_OK && d > 0) {
      out->dropped += (uint64_t)d;
    }
  }
}

/* ---------------------------------------------------------------------------------------------
 * Deletion
 * ------------------------------------------------------------------------------------------- */

/* Writes what libnats has buffered, for up to close_timeout_ms. */
static void flush_out(pomelo_nats *n) {
  uint64_t deadline = mono_ms() + n->st.close_timeout_ms;
  while (n->st.close_timeout_ms > 0 && natsConnection_Status(n->nc) == NATS_CONN_STATUS_CONNECTED &&
         natsConnection_Buffered(n->nc) > 0) {
    struct pollfd p;
    uint64_t t = mono_ms();
    int sock;
    if (t >= deadline) {
      break;
    }
    pthread_mutex_lock(&n->mu);
    sock = n->sock;
    pthread_mutex_unlock(&n->mu);
    if (sock < 0) {
      break;
    }
    p.fd = sock;
    p.events = POLLOUT;
    p.revents = 0;
    if (poll(&p, 1, (int)(deadline - t)) <= 0 || (p.revents & (POLLERR | POLLHUP | POLLNVAL))) {
      break;
    }
    natsConnection_ProcessWriteEvent(n->nc);
  }
}

/* Waits until libnats' threads are done with `n`. Returns 0, or -1 when they were not done in
 * time (then `n` must not be freed). */
static int wait_released(pomelo_nats *n) {
  struct timespec until;
  size_t i;
  int ok = 0;

  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += RELEASE_WAIT_MS / 1000;
  pthread_mutex_lock(&n->mu);
  for (;;) {
    ok = n->ev_closed && (!n->ever_attached || n->detached);
    for (i = 0; ok && i < n->nsubs; i++) {
      /* A record whose on-complete could not be set (subscribe_as) has no way to say: it
       * is taken as done once the connection has closed. */
      ok = n->subs[i]->complete || !n->subs[i]->has_complete;
    }
    if (ok || pthread_cond_timedwait(&n->cv, &n->mu, &until) == ETIMEDOUT) {
      break;
    }
  }
  pthread_mutex_unlock(&n->mu);
  return ok ? 0 : -1;
}

void pomelo_nats_del(pomelo_nats *n) {
  size_t i;
  if (!n) {
    return;
  }
  n->cluster = NULL;
  flush_out(n);
  pthread_mutex_lock(&n->mu);
  n->closing = 1;
  for (i = 0; i < n->nsubs; i++) {
    n->subs[i]->closing = 1;
  }
  pthread_cond_broadcast(&n->cv); /* handlers waiting for room drop their message */
  pthread_mutex_unlock(&n->mu);
  /* The connection first: its close ends every subscription at once. Ending them one by one
   * before would queue an UNSUB each, and libnats' close waits (500 ms) for unwritten data,
   * which nobody writes on an external loop. */
  natsConnection_Destroy(n->nc);
  n->nc = NULL;
  for (i = 0; i < n->nsubs; i++) {
    if (n->subs[i]->ns) {
      natsSubscription_Destroy(n->subs[i]->ns);
      n->subs[i]->ns = NULL;
    }
  }
  if (wait_released(n) != 0) {
    /* libnats still holds pointers into `n`: leaking it is the only safe choice. */
    return;
  }
  for (i = 0; i < n->nsubs; i++) {
    n_free(&n->alloc, n->subs[i]->subject);
    n_free(&n->alloc, n->subs[i]);
  }
  n->nsubs = 0;
  free_shell(n);
}

/* ---------------------------------------------------------------------------------------------
 * The cluster glue
 * ------------------------------------------------------------------------------------------- */

static int glue_publish(void *bus, const char *subject, const char *reply, const uint8_t *data,
                        size_t len) {
  return pomelo_nats_publish((pomelo_nats *)bus, subject, reply, data, len);
}

static void cluster_state(pomelo_nats *n, int up, uint64_t now) {
  if (up) {
    pomelo_cluster_set_max_payload(n->cluster, n->max_payload);
  }
  pomelo_cluster_bus_up(n->cluster, up, now);
}

static void cluster_deliver(pomelo_nats *n, const char *subject, const char *reply,
                            const uint8_t *data, size_t len, unsigned flags, uint64_t now) {
  if (n->cluster) {
    (void)pomelo_cluster_deliver(n->cluster, subject, reply, data, len, flags, now);
  }
}

static void end_cluster_subs(pomelo_nats *n) {
  size_t i;
  for (i = 0; i < n->nsubs; i++) {
    if (n->subs[i]->owner == OWNER_CLUSTER) {
      end_sub(n, n->subs[i]);
    }
  }
}

int pomelo_nats_attach(pomelo_nats *n, pomelo_cluster *c) {
  const char *subject;
  size_t i;
  int rc;

  if (!n || !c) {
    return POMELO_ERR_INVALID_ARG;
  }
  if (n->cluster) {
    return POMELO_ERR_EXISTS;
  }
  for (i = 0; (subject = pomelo_cluster_subject(c, i)) != NULL; i++) {
    rc = subscribe_as(n, subject, OWNER_CLUSTER);
    if (rc != 0 && rc != POMELO_ERR_EXISTS) {
      end_cluster_subs(n);
      return rc;
    }
  }
  n->cluster = c;
  pomelo_cluster_set_bus(c, glue_publish, n);
  pomelo_cluster_set_max_payload(c, n->max_payload);
  /* bus_up needs `now`: the next process tells the cluster. */
  n->cluster_sync = 1;
  pthread_mutex_lock(&n->mu);
  signal_locked(n);
  pthread_mutex_unlock(&n->mu);
  return 0;
}

void pomelo_nats_detach(pomelo_nats *n) {
  if (!n || !n->cluster) {
    return;
  }
  end_cluster_subs(n);
  n->cluster = NULL;
  n->cluster_sync = 0;
}
