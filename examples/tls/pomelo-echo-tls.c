/* pomelo-echo-tls: pomelo-echo over TLS, with OpenSSL memory BIOs (docs/tls.md).
 *   pomelo-echo-tls [--host H] [--port P] [--heartbeat SEC] --cert FILE --key FILE
 * The same server as pomelo-echo (examples/echo/echo_app.c) on the same epoll loop
 * (examples/common/server_loop.c), with TLS between the socket and the library: browsers
 * connect with wss://, native clients (libpomelo2's TLS transport) with TLS over raw TCP, both on
 * the one port, since the library sniffs the decrypted bytes as it sniffs a plain connection.
 *
 * libpomelo never touches a socket, so TLS is the loop's business: each connection has an SSL
 * object whose network side is two memory BIOs. Bytes read from the socket go into `in`;
 * SSL_read turns them into the plaintext the library is fed. The library's output goes through
 * SSL_write; what OpenSSL writes into `out` (records, and the handshake's own messages) goes to
 * the socket. That is all of it: four small functions for the loop (tls_open, tls_read,
 * tls_writev, tls_close), below.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "../echo/echo_epoll.h"

/* Plaintext handed to SSL_write while this much ciphertext is still waiting for the socket:
 * past it the loop waits for the socket, so a slow reader's backlog stays in the library's
 * output queue, where its max_output and slow-consumer policy see it. */
#define TLS_OUT_HIGH (64 * 1024)

typedef struct tls_conn {
  SSL *ssl;
  BIO *in;  /* socket -> OpenSSL (owned by ssl) */
  BIO *out; /* OpenSSL -> socket (owned by ssl) */
  int eof;  /* the stream ended (close_notify or end of file): read returns 0 from now on */
} tls_conn;

static void *tls_open(void *stream_data, int fd) {
  tls_conn *t = calloc(1, sizeof *t);
  (void)fd;
  if (!t || !(t->ssl = SSL_new(stream_data)) || !(t->in = BIO_new(BIO_s_mem())) ||
      !(t->out = BIO_new(BIO_s_mem()))) {
    if (t) {
      BIO_free(t->in);
      SSL_free(t->ssl);
      free(t);
    }
    return NULL;
  }
  BIO_set_mem_eof_return(t->in, -1); /* an empty `in` means "more to come", not end of file */
  SSL_set_bio(t->ssl, t->in, t->out);
  SSL_set_accept_state(t->ssl);
  return t;
}

/* Drops the first `n` bytes of a memory BIO (they were sent). */
static void drop_front(BIO *b, size_t n) {
  char scratch[4096];
  while (n > 0) {
    int k = BIO_read(b, scratch, (int)(n < sizeof scratch ? n : sizeof scratch));
    if (k <= 0) {
      return;
    }
    n -= (size_t)k;
  }
}

/* Writes what OpenSSL produced to the socket. Returns 0 when it is all out, -1 with errno
 * (EAGAIN: the rest waits in `out` for EPOLLOUT). */
static int flush_out(tls_conn *t, int fd) {
  char *p;
  long pending;
  while ((pending = BIO_get_mem_data(t->out, &p)) > 0) {
    ssize_t n = send(fd, p, (size_t)pending, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return -1;
    }
    drop_front(t->out, (size_t)n);
  }
  return 0;
}

/* An OpenSSL failure as errno, for the loop (it closes the connection). */
static ssize_t tls_failed(void) {
  ERR_clear_error(); /* a bad client is not the server's problem: nothing to keep */
  errno = EPROTO;
  return -1;
}

/* Plaintext for the library: as much as fits in `buf` or is there (the loop reads again only
 * when a read fills the buffer). */
static ssize_t tls_read(void *st, int fd, uint8_t *buf, size_t cap) {
  tls_conn *t = st;
  size_t got = 0;
  if (t->eof) {
    return 0;
  }
  while (got < cap) {
    size_t want = cap - got;
    int n = SSL_read(t->ssl, buf + got, want > INT32_MAX ? INT32_MAX : (int)want), err;
    if (n > 0) {
      got += (size_t)n;
      continue;
    }
    err = SSL_get_error(t->ssl, n);
    if (err == SSL_ERROR_ZERO_RETURN) { /* close_notify: the end of the stream */
      t->eof = 1;
      break;
    }
    if (err != SSL_ERROR_WANT_READ) {
      return got ? (ssize_t)got : tls_failed();
    }
    /* OpenSSL wants more: answer what it has to say (the handshake), then read the socket. */
    if (flush_out(t, fd) < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      return got ? (ssize_t)got : -1;
    }
    {
      char raw[16 * 1024];
      ssize_t r = read(fd, raw, sizeof raw);
      if (r == 0) {
        t->eof = 1; /* the peer closed without close_notify */
        break;
      }
      if (r < 0) {
        if (got) {
          break; /* EAGAIN with plaintext in hand: a short read, as the loop expects */
        }
        return -1; /* EAGAIN (EPOLLIN will come) or an error */
      }
      if (BIO_write(t->in, raw, (int)r) != (int)r) {
        return tls_failed();
      }
    }
  }
  flush_out(t, fd); /* a TLS 1.3 ticket or a key update may be waiting; EAGAIN is fine */
  return got ? (ssize_t)got : 0;
}

static ssize_t tls_writev(void *st, int fd, const struct iovec *iov, int n) {
  tls_conn *t = st;
  char record[16 * 1024]; /* small pushes go out as one TLS record, not one record each */
  size_t taken = 0;
  int i = 0;
  size_t off = 0; /* into iov[i] */
  if (flush_out(t, fd) < 0) {
    return -1; /* the socket is full: nothing more goes into OpenSSL meanwhile */
  }
  while (i < n && BIO_ctrl_pending(t->out) < TLS_OUT_HIGH) {
    size_t len = 0;
    int w;
    while (i < n && len < sizeof record) {
      size_t k = iov[i].iov_len - off;
      if (k > sizeof record - len) {
        k = sizeof record - len;
      }
      memcpy(record + len, (const char *)iov[i].iov_base + off, k);
      len += k;
      off += k;
      if (off == iov[i].iov_len) {
        i++;
        off = 0;
      }
    }
    w = SSL_write(t->ssl, record, (int)len);
    if (w <= 0) {
      if (SSL_get_error(t->ssl, w) == SSL_ERROR_WANT_READ) {
        break; /* the handshake is not over yet: these bytes go later */
      }
      return tls_failed();
    }
    taken += len; /* SSL_write into a memory BIO takes the whole buffer */
  }
  if (flush_out(t, fd) < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
    return -1;
  }
  if (taken == 0 && n > 0) {
    errno = EAGAIN;
    return -1;
  }
  return (ssize_t)taken;
}

static void tls_close(void *st, int fd) {
  tls_conn *t = st;
  if (SSL_is_init_finished(t->ssl)) {
    SSL_shutdown(t->ssl); /* close_notify, sent if the socket takes it now */
    flush_out(t, fd);
  }
  SSL_free(t->ssl); /* and both BIOs */
  ERR_clear_error();
  free(t);
}

int main(int argc, char **argv) {
  echo_options o;
  server_loop_stream tls = {tls_open, tls_read, tls_writev, tls_close, NULL};
  SSL_CTX *ctx;
  int rc;
  if (echo_parse_args(argc, argv, "pomelo-echo-tls", 1, &o) != 0) {
    return 2;
  }
  ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
      SSL_CTX_use_certificate_chain_file(ctx, o.cert) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, o.key, SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    fprintf(stderr, "pomelo-echo-tls: cannot use %s and %s:\n", o.cert, o.key);
    ERR_print_errors_fp(stderr);
    SSL_CTX_free(ctx);
    return 1;
  }
  /* Writes of whole buffers to a memory BIO; the library's iovecs move between calls. */
  SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
  tls.stream_data = ctx;
  rc = echo_serve_epoll(&o, "pomelo-echo-tls", &tls);
  SSL_CTX_free(ctx);
  return rc;
}
