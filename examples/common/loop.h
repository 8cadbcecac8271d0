/* A tiny poll(2) loop that runs one pomelo_client over one socket, for the examples and tools.
 *
 * It does what the client's I/O contract asks of the caller (include/pomelo/client.h): read and
 * feed, writev and consume, pass the time of CLOCK_MONOTONIC, run the expiry handler, close the
 * socket when the client says so. Only the public API of libpomelo is used. POSIX; the caller
 * should ignore SIGPIPE (signal(SIGPIPE, SIG_IGN)) so a write to a dead socket is an error, not
 * a signal.
 * SPDX-License-Identifier: MIT
 */
#ifndef POMELO_EXAMPLES_LOOP_H
#define POMELO_EXAMPLES_LOOP_H

#include <stddef.h>
#include <stdint.h>

#include <pomelo/client.h>

/** One client and its socket. */
typedef struct loop {
  pomelo_client *cl;
  int fd;       /**< the socket, or -1 (closed by loop_run when the client wants it closed) */
  int watch_fd; /**< another fd to watch for input (stdin, say), or -1 */
  int error;    /**< the errno of a failed poll() when loop_run returned LOOP_ERROR */
} loop;

/** What loop_run stopped on. */
enum {
  LOOP_ERROR = -1,   /**< poll() failed (errno in `error`) */
  LOOP_DEADLINE = 0, /**< the deadline passed */
  LOOP_DONE = 1,     /**< done() returned non-zero */
  LOOP_WATCH = 2     /**< watch_fd is readable (or at end of file) */
};

/** Milliseconds of CLOCK_MONOTONIC. */
uint64_t loop_now_ms(void);

/** 32 random bits from /dev/urandom (falling back to a clock-seeded generator); `user_data` is
 * unused. Usable as pomelo_client_settings.random. */
uint32_t loop_random32(void *user_data);

/** Connects a TCP socket to `host`:`port` (a name or a number; every address getaddrinfo gives
 * is tried in turn) within `timeout_ms` in all (0: the system's own timeout). Returns the socket,
 * non-blocking with TCP_NODELAY, or -1 with a message in `err`. */
int loop_tcp_connect(const char *host, const char *port, uint32_t timeout_ms, char *err,
                     size_t err_len);

/** Runs the client's I/O and timers until done(arg) returns non-zero (checked before waiting
 * and after every event; done may be NULL), `deadline` (ms on loop_now_ms's clock; UINT64_MAX
 * for none) passes, or watch_fd becomes readable. Returns one of the LOOP_* values. End of file
 * and errors on the socket are reported to the client (pomelo_client_peer_closed); the socket
 * is closed as soon as pomelo_client_wants_close() says so. */
int loop_run(loop *l, uint64_t deadline, int (*done)(void *arg), void *arg);

/** Closes the socket if it is open. */
void loop_close(loop *l);

#endif /* POMELO_EXAMPLES_LOOP_H */
