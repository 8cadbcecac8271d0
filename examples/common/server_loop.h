/* An epoll loop for pomelo_server objects: the loop of pomelo-echo and pomelo-chat
 * (docs/loop-epoll.md).
 *
 * It does what the server's I/O contract asks of the caller (include/pomelo/server.h), the
 * fastest way Linux offers: edge-triggered sockets (one epoll_ctl per connection, never one per
 * write), TCP_NODELAY on every accepted socket, one timer for all sessions of all servers (the
 * epoll_wait timeout), and after every batch of events a drain of each server's ready list, so
 * a wake-up costs nothing for the connections that have nothing to do. SIGINT and SIGTERM (a
 * signalfd) start a graceful shutdown: listeners close, every client gets a KICK with the
 * shutdown reason, the loop runs until every session is gone or the grace period ends.
 *
 * Only the public API of libpomelo is used. Linux (epoll, signalfd, accept4).
 * SPDX-License-Identifier: MIT
 */
#ifndef POMELO_EXAMPLES_SERVER_LOOP_H
#define POMELO_EXAMPLES_SERVER_LOOP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <pomelo/server.h>

typedef struct server_loop server_loop;

/** The loop's callbacks; each may be NULL and receives the loop's user_data last. */
typedef struct server_loop_callbacks {
  /** A session is finished (the ready list said POMELO_READY_CLOSE, or the loop gave up on it at
   * the end of a shutdown): its uid, settings and channels are still there. The loop then
   * closes its socket and releases it. */
  void (*on_session_done)(server_loop *l, pomelo_server *srv, pomelo_session *s, void *user_data);
  /** The application's own timer: runs every `tick_ms` (0: never) with the loop's `now`; its
   * pushes are written in the same pass. */
  void (*on_tick)(server_loop *l, uint64_t now, void *user_data);
  uint32_t tick_ms;
  /** Runs once per pass of the loop, before it writes what the servers queued and again just
   * before it waits (an in-process bus delivers its queue here: examples/common/membus.c). */
  void (*on_pass)(server_loop *l, uint64_t now, void *user_data);
  /** SO_SNDBUF of every accepted socket, in bytes (0: the kernel's autotuning, which grows a
   * socket's buffer up to net.ipv4.tcp_wmem's maximum, 4 MiB by default, even for a client that
   * reads nothing). A client that stops reading holds this much in the kernel before the
   * server's own queue (pomelo_server_settings.max_output and its slow-consumer policy) starts
   * to count; a cap makes that policy act within bounded memory per connection. */
  int sndbuf;
} server_loop_callbacks;

/** How a server's sockets carry bytes, for a layer between the socket and the library (TLS:
 * examples/tls/pomelo-echo-tls.c). NULL in server_loop_add: plain TCP (read, sendmsg). Each
 * function gets the per-connection state `open` returned and the socket (non-blocking). */
typedef struct server_loop_stream {
  /** A socket was accepted: returns its state, or NULL to refuse it (the socket is closed). */
  void *(*open)(void *stream_data, int fd);
  /** Reads up to `cap` bytes for the library into `buf`: returns > 0 bytes (fewer than `cap`
   * only when nothing more can be read now: the loop then waits for the next EPOLLIN), 0 at
   * the end of the stream, or -1 with errno set (EAGAIN/EWOULDBLOCK: nothing now). */
  ssize_t (*read)(void *st, int fd, uint8_t *buf, size_t cap);
  /** Writes the library's bytes in `iov` (`n` of them; n 0: only flush what it still holds):
   * returns how many bytes of `iov` it took (> 0, or 0 when n is 0 and all is flushed), or -1
   * with errno (EAGAIN: the socket is full, EPOLLOUT will come). */
  ssize_t (*writev)(void *st, int fd, const struct iovec *iov, int n);
  /** The connection ends; the socket is closed after it. */
  void (*close)(void *st, int fd);
  void *stream_data; /**< given to open */
} server_loop_stream;

/** Creates a loop; SIGINT and SIGTERM are blocked in the calling thread and read through a
 * signalfd, SIGPIPE is ignored, the open-file limit is raised to its hard maximum. Returns 0 or an
 * errno value. */
int server_loop_new(server_loop **out, const server_loop_callbacks *cb, void *user_data);

/** Frees the loop, closing every socket it holds (the servers are the caller's: delete them
 * after). Accepts NULL. */
void server_loop_del(server_loop *l);

/** Adds `srv` to the loop (its timers and its ready list are driven from now on) and, when
 * `port` is not NULL, listens for it on host:port (numeric or a name; port "0" picks a free
 * one), its connections carried by `stream` (NULL: plain TCP; copied). The port really bound is
 * written to `bound` (a buffer of `bound_len` bytes, may be NULL). A server may be added once.
 * Returns 0 or an errno value (EADDRINUSE, ...); a name that does not resolve gives
 * EADDRNOTAVAIL. */
int server_loop_add(server_loop *l, pomelo_server *srv, const char *host, const char *port,
                    const server_loop_stream *stream, char *bound, size_t bound_len);

/** Watches another descriptor (level-triggered, for reading): `fn` runs with `arg` and the
 * loop's `now` whenever it is readable, and what it queued on the servers is written in the
 * same pass (a NATS connection: pomelo_nats_fd and pomelo_nats_process). The descriptor stays
 * the caller's; unwatch it before closing it. Returns 0 or an errno value. */
int server_loop_watch(server_loop *l, int fd, void (*fn)(void *arg, uint64_t now), void *arg);

/** Stops watching `fd`. */
void server_loop_unwatch(server_loop *l, int fd);

/** Runs until SIGINT or SIGTERM, then shuts down gracefully: the listeners close, every server
 * is shut down with `shutdown_reason` (each client past its handshake gets a KICK with it), and
 * the loop goes on until every session is gone or `grace_ms` passed (then the rest are
 * released). Returns the signal number, or -1 when epoll_wait failed (errno set). */
int server_loop_run(server_loop *l, const char *shutdown_reason, uint32_t grace_ms);

/** Milliseconds of CLOCK_MONOTONIC, the clock the loop gives the library. */
uint64_t server_loop_now(void);

/** The loop's user_data. */
void *server_loop_user_data(const server_loop *l);

#endif /* POMELO_EXAMPLES_SERVER_LOOP_H */
