/* pomelo-chat: the chat of NetEase's chatofpomelo example, in C, in one process (docs/chat.md).
 *   pomelo-chat [--host H] [--gate-port P] [--port P]     (default 127.0.0.1, 3014, 3050)
 *
 * The real chatofpomelo runs several Node.js processes (spec/protocol.md section 9):
 *   - a gate (port 3014, no heartbeat) that tells each client which connector to use;
 *   - connectors (port 3050, heartbeat 3 s) that hold the clients' sockets and their sessions;
 *   - chat servers (backends, no clients of their own) that run the chat routes; a connector
 *     forwards each "chat.*" request to one of them over RPC, and the chat server pushes to the
 *     room through its channel, which is again an RPC back to the connectors.
 * Here the same three roles are three pomelo_server objects driven by one poll() loop:
 *   gate       type "gate", listens on --host:--gate-port (TCP and WebSocket on one port);
 *   connector  type "connector", listens on --host:--port (TCP and WebSocket), heartbeat 3 s;
 *   chat       type "chat", no socket at all: the connector's on_forward hands it each chat
 *              route with pomelo_server_dispatch, and its answer comes back through a reply
 *              callback to pomelo_server_respond. In a real deployment the two ends of that
 *              hand-over would sit in two processes with a message bus between them; here the
 *              "bus" is a function call, which is enough to show the three ends to connect.
 *
 * Routes (bodies are JSON; no route dictionary and no protobuf are announced, so the browser
 * client sends routes as strings and receives every push as JSON):
 *   gate.gateHandler.queryEntry {uid}             -> {"code":200,"host":H,"port":connector port}
 *   connector.entryHandler.enter {username, rid}  -> {"users":[names in the room]}
 *   chat.chatHandler.send {rid, content, from, target}  -> {} and onChat pushes
 * Pushes: onAdd {"route":"onAdd","user":name} and onLeave {"route":"onLeave","user":name} to the
 * others in the room, onChat {"msg":content,"from":name,"target":target}.
 *
 * Like pomelo-echo, this file owns the sockets and the clock; libpomelo owns the protocol.
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <pomelo/pomelo.h>

#define MAX_CLIENTS 1024            /* over both servers; more wait in the listen backlog */
#define LIT(s) (s), (sizeof(s) - 1) /* a string literal and its length, as two arguments */

/* A server that clients connect to: the gate or the connector. */
typedef struct frontend {
  const char *name; /* "gate" or "connector", for the log */
  pomelo_server *srv;
  int lfd;       /* the listening socket */
  char port[16]; /* the port really bound (decimal), shown, and handed out by the gate */
} frontend;

static frontend gate = {.name = "gate", .lfd = -1};
static frontend connector = {.name = "connector", .lfd = -1};
static pomelo_server *chat;        /* the backend: no sockets, only handlers */
static const char *public_host;    /* what queryEntry answers as the connector's host */
static pomelo_json_writer *writer; /* builds every JSON body; one at a time, then reused */
static volatile sig_atomic_t stop;

/* Slots 0 and 1 watch the listening sockets; slot i >= 2 a client socket, the server that
 * accepted it and its session. */
static struct pollfd pfd[2 + MAX_CLIENTS];
static frontend *owner[2 + MAX_CLIENTS];
static pomelo_session *sess[2 + MAX_CLIENTS];
static nfds_t nfds = 2;

static void on_signal(int sig) {
  stop = sig;
}

/* The library wants milliseconds on a clock that never jumps. */
static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---------------------------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------------------------- */

/* The string member `key` of a request body, or NULL when it is absent, not a string or empty. */
static const char *body_string(pomelo_request *req, const char *key, size_t *len) {
  const char *s = pomelo_json_string(pomelo_json_get(pomelo_request_json(req), key), len);
  return s && *len > 0 ? s : NULL;
}

/* A user's name is the part of the uid before the '*' ("alice*room1" -> "alice"). */
static size_t name_len(const char *uid, size_t len) {
  const char *star = memchr(uid, '*', len);
  return star ? (size_t)(star - uid) : len;
}

/* A new "name*rid" (NUL-terminated; the parts may hold NUL bytes, from \u0000), its length in
 * `*len`; NULL when out of memory. Free it with free(). */
static char *make_uid(const char *name, size_t nlen, const char *rid, size_t rlen, size_t *len) {
  char *uid = malloc(nlen + 1 + rlen + 1);
  if (uid) {
    memcpy(uid, name, nlen);
    uid[nlen] = '*';
    memcpy(uid + nlen + 1, rid, rlen);
    *len = nlen + 1 + rlen;
    uid[*len] = '\0';
  }
  return uid;
}

/* {"route":ROUTE,"user":NAME}: the body of onAdd and onLeave. The real server sends the whole
 * object, "route" included, because chatofpomelo pushes it with the legacy
 * channel.pushMessage(msg) that takes the route from the message (spec 8.5). */
static int write_user_event(const char *route, const char *name, size_t len) {
  int rc;
  pomelo_json_writer_reset(writer);
  rc = pomelo_json_write_begin_object(writer);
  rc = rc ? rc : pomelo_json_write_key(writer, LIT("route"));
  rc = rc ? rc : pomelo_json_write_string(writer, route, strlen(route));
  rc = rc ? rc : pomelo_json_write_key(writer, LIT("user"));
  rc = rc ? rc : pomelo_json_write_string(writer, name, len);
  return rc ? rc : pomelo_json_write_end_object(writer);
}

/* Pushes what the writer holds on `route` to every member of channel `ch`. */
static void push_written(pomelo_channel *ch, const char *route) {
  size_t len;
  const char *body = pomelo_json_writer_data(writer, &len);
  pomelo_channel_push(ch, route, strlen(route), body, len);
}

/* Answers `req` with what the writer holds, or with {"code":500} when writing failed. */
static void respond_written(pomelo_request *req, int write_rc) {
  size_t len;
  const char *body = pomelo_json_writer_data(writer, &len);
  if (write_rc) {
    pomelo_request_error(req, write_rc, NULL, 0);
  } else {
    pomelo_request_respond(req, body, len);
  }
}

/* ---------------------------------------------------------------------------------------------
 * The gate: gate.gateHandler.queryEntry
 * ------------------------------------------------------------------------------------------- */

/* JavaScript's truthiness, which the real handler tests (`if (!uid)`). */
static int js_truthy(const pomelo_json_value *v) {
  size_t len;
  switch (pomelo_json_typeof(v)) {
  case POMELO_JSON_NULL:
    return 0;
  case POMELO_JSON_BOOL:
    return pomelo_json_bool(v);
  case POMELO_JSON_NUMBER:
    return pomelo_json_number(v) != 0; /* JSON has no NaN */
  case POMELO_JSON_STRING:
    return pomelo_json_string(v, &len) && len > 0;
  default:
    return 1; /* arrays and objects, even empty ones */
  }
}

/* {uid} -> the connector to use. The real gate picks one of several connectors by a hash of the
 * uid; there is one here. Without a uid: {"code":500}. */
static void query_entry(pomelo_request *req, void *user_data) {
  int rc;
  (void)user_data;
  if (!js_truthy(pomelo_json_get(pomelo_request_json(req), "uid"))) {
    pomelo_request_respond(req, LIT("{\"code\":500}"));
    return;
  }
  pomelo_json_writer_reset(writer);
  rc = pomelo_json_write_begin_object(writer);
  rc = rc ? rc : pomelo_json_write_key(writer, LIT("code"));
  rc = rc ? rc : pomelo_json_write_int64(writer, 200);
  rc = rc ? rc : pomelo_json_write_key(writer, LIT("host"));
  rc = rc ? rc : pomelo_json_write_string(writer, public_host, strlen(public_host));
  rc = rc ? rc : pomelo_json_write_key(writer, LIT("port"));
  rc = rc ? rc : pomelo_json_write_int64(writer, atoi(connector.port));
  rc = rc ? rc : pomelo_json_write_end_object(writer);
  respond_written(req, rc);
}

/* ---------------------------------------------------------------------------------------------
 * The connector: connector.entryHandler.enter, and leaving on close
 * ------------------------------------------------------------------------------------------- */

/* {username, rid}: binds the session to uid "username*rid", remembers the room in the session's
 * setting "rid", tells the room (channel `rid`) with onAdd, joins it, and answers the names of
 * everyone in the room, the newcomer included. A uid already in use on this connector gets
 * {"code":500,"error":true}, as in chatofpomelo. The real connector does the channel part through
 * an RPC to the chat server that owns the room; here the channels live on the connector, the
 * server that holds the sessions they push to. */
static void enter(pomelo_request *req, void *user_data) {
  pomelo_session *s = pomelo_request_session(req);
  pomelo_channel *ch;
  size_t ulen, rlen, uid_len, i;
  const char *username = body_string(req, "username", &ulen);
  const char *rid = body_string(req, "rid", &rlen);
  char *uid;
  int rc;
  (void)user_data;
  /* The real handler builds "undefined*undefined" from a body without them; refuse instead. A
   * '*' in the name would make the uid ambiguous. */
  if (!s || !username || !rid || memchr(username, '*', ulen)) {
    pomelo_request_error(req, POMELO_ERR_INVALID_ARG, NULL, 0);
    return;
  }
  uid = make_uid(username, ulen, rid, rlen, &uid_len);
  if (!uid) {
    pomelo_request_error(req, POMELO_ERR_NOMEM, NULL, 0);
    return;
  }

  /* A second "alice" in room1, or a session that already entered (bound to another uid). */
  if (pomelo_server_sessions_by_uid(connector.srv, uid, uid_len, NULL, 0) > 0 ||
      pomelo_session_bind(s, uid, uid_len) != 0) {
    pomelo_request_error(req, POMELO_ERR_EXISTS, LIT("{\"code\":500,\"error\":true}"));
    free(uid);
    return;
  }
  ch = pomelo_server_channel(connector.srv, rid, rlen);
  rc = ch ? 0 : pomelo_channel_new(connector.srv, rid, rlen, &ch);
  rc = rc ? rc : pomelo_session_set(s, LIT("rid"), rid, rlen);
  if (rc == 0) {
    /* The others first, then the newcomer joins: it gets no onAdd about itself. */
    if (write_user_event("onAdd", username, ulen) == 0) {
      push_written(ch, "onAdd");
    }
    rc = pomelo_channel_add(ch, uid, uid_len, pomelo_session_id(s));
  }
  if (rc) {
    pomelo_session_unbind(s);
    pomelo_session_remove(s, LIT("rid"));
    if (ch && pomelo_channel_count(ch) == 0) {
      pomelo_channel_destroy(ch);
    }
    pomelo_request_error(req, rc, NULL, 0);
    free(uid);
    return;
  }
  fprintf(stderr, "connector: %.*s entered %.*s (session %llu, %zu in the room)\n", (int)ulen,
          username, (int)rlen, rid, (unsigned long long)pomelo_session_id(s),
          pomelo_channel_count(ch));
  free(uid);

  /* {"users":["alice","bob"]} */
  pomelo_json_writer_reset(writer);
  rc = pomelo_json_write_begin_object(writer);
  rc = rc ? rc : pomelo_json_write_key(writer, LIT("users"));
  rc = rc ? rc : pomelo_json_write_begin_array(writer);
  for (i = 0; rc == 0 && i < pomelo_channel_count(ch); i++) {
    const char *member;
    size_t mlen;
    uint64_t sid;
    pomelo_channel_member(ch, i, &member, &mlen, &sid);
    rc = pomelo_json_write_string(writer, member, name_len(member, mlen));
  }
  rc = rc ? rc : pomelo_json_write_end_array(writer);
  rc = rc ? rc : pomelo_json_write_end_object(writer);
  respond_written(req, rc);
}

/* A connector session ended (the browser tab closed, a heartbeat timeout, ...): if it had entered
 * a room, it leaves the channel and the others get onLeave. An empty room is destroyed. */
static void on_connector_closed(pomelo_server *srv, pomelo_session *s, int reason, void *ud) {
  size_t uid_len, rlen;
  const char *uid = pomelo_session_uid(s, &uid_len);
  const char *rid = pomelo_session_get(s, LIT("rid"), &rlen);
  pomelo_channel *ch = rid ? pomelo_server_channel(srv, rid, rlen) : NULL;
  (void)ud;
  if (!uid || !ch || pomelo_channel_leave(ch, uid, uid_len, pomelo_session_id(s)) != 0) {
    return;
  }
  fprintf(stderr, "connector: %.*s left %.*s (%s)\n", (int)name_len(uid, uid_len), uid, (int)rlen,
          rid, pomelo_close_reason_name(reason));
  if (pomelo_channel_count(ch) == 0) {
    pomelo_channel_destroy(ch);
  } else if (write_user_event("onLeave", uid, name_len(uid, uid_len)) == 0) {
    push_written(ch, "onLeave");
  }
}

/* ---------------------------------------------------------------------------------------------
 * Forwarding: connector -> chat backend -> connector
 * ------------------------------------------------------------------------------------------- */

/* Where the backend's answer must go: the session and the request id, as a real connector keeps
 * them while its RPC is in flight. */
typedef struct pending {
  uint64_t sid;
  uint32_t id;
} pending;

/* The backend answered a forwarded request: the connector sends it to the client, if the client
 * is still there (pomelo_server_respond returns POMELO_ERR_NOT_FOUND otherwise). */
static void forward_reply(const char *body, size_t len, void *arg) {
  pending *p = arg;
  pomelo_server_respond(connector.srv, p->sid, p->id, body, len);
  free(p);
}

/* The connector received a route of another server type. The session travels as JSON (the shape
 * of the real session.export()), as it would over a bus; the chat server imports it, runs its
 * handler and gives the answer to forward_reply, now or later. */
static void on_forward(pomelo_server *srv, pomelo_session *s, const char *session_json,
                       size_t session_json_len, const pomelo_msg *msg, void *ud) {
  pending *p;
  (void)ud;
  if (msg->route_len > 5 && memcmp(msg->route, "chat.", 5) == 0) {
    if (msg->type == POMELO_MSG_NOTIFY) { /* a notify is never answered: nothing to remember */
      pomelo_server_dispatch(chat, session_json, session_json_len, msg, forward_reply, NULL);
      return;
    }
    p = malloc(sizeof *p);
    if (p) {
      p->sid = pomelo_session_id(s);
      p->id = msg->id;
      if (pomelo_server_dispatch(chat, session_json, session_json_len, msg, forward_reply, p) ==
          0) {
        return; /* forward_reply answers and frees p */
      }
      free(p);
    }
  }
  /* A server type nobody runs here (or no memory): the real server answers {"code":500}. */
  if (msg->type == POMELO_MSG_REQUEST) {
    pomelo_server_respond(srv, pomelo_session_id(s), msg->id, LIT("{\"code\":500}"));
  }
}

/* ---------------------------------------------------------------------------------------------
 * The chat backend: chat.chatHandler.send
 * ------------------------------------------------------------------------------------------- */

/* Is `uid` a member of channel `ch`? */
static int channel_has(const pomelo_channel *ch, const char *uid, size_t len) {
  size_t i;
  for (i = 0; i < pomelo_channel_count(ch); i++) {
    const char *member;
    size_t mlen;
    uint64_t sid;
    if (pomelo_channel_member(ch, i, &member, &mlen, &sid) == 0 && mlen == len &&
        memcmp(member, uid, len) == 0) {
      return 1;
    }
  }
  return 0;
}

/* {rid, content, from, target}: pushes onChat {"msg":content,"from":name,"target":target} to the
 * whole room (the sender included) when target is "*", else to the user `target` of the room
 * only (the sender's page shows its own private message itself), and answers {}, as the real
 * handler does (its {route: msg.route} has an undefined route).
 * Like the real handler it takes the room and the sender's name from the session, not from the
 * body: a client cannot speak in another room or under another name. The session here is the
 * one imported from the connector's JSON: read-only, with the uid and the settings. Pushing
 * goes back to the connector's channel (the real chat server's channelService makes an RPC to
 * the connector for that). */
static void send_chat(pomelo_request *req, void *user_data) {
  const pomelo_session *s = pomelo_request_session(req);
  size_t uid_len = 0, rlen = 0, tlen;
  const char *uid = s ? pomelo_session_uid(s, &uid_len) : NULL;
  const char *rid = s ? pomelo_session_get(s, LIT("rid"), &rlen) : NULL;
  const char *target = body_string(req, "target", &tlen);
  const pomelo_json_value *content = pomelo_json_get(pomelo_request_json(req), "content");
  pomelo_channel *ch = rid ? pomelo_server_channel(connector.srv, rid, rlen) : NULL;
  size_t body_len;
  const char *body;
  int rc;
  (void)user_data;
  if (!uid || !ch || !target || !content) { /* not entered yet, or a malformed body */
    pomelo_request_error(req, POMELO_ERR_INVALID_ARG, NULL, 0);
    return;
  }
  pomelo_json_writer_reset(writer);
  rc = pomelo_json_write_begin_object(writer);
  rc = rc ? rc : pomelo_json_write_key(writer, LIT("msg"));
  rc = rc ? rc : pomelo_json_write_value(writer, content); /* any JSON value, as in JavaScript */
  rc = rc ? rc : pomelo_json_write_key(writer, LIT("from"));
  rc = rc ? rc : pomelo_json_write_string(writer, uid, name_len(uid, uid_len));
  rc = rc ? rc : pomelo_json_write_key(writer, LIT("target"));
  rc = rc ? rc : pomelo_json_write_string(writer, target, tlen);
  rc = rc ? rc : pomelo_json_write_end_object(writer);
  if (rc) {
    pomelo_request_error(req, rc, NULL, 0);
    return;
  }
  body = pomelo_json_writer_data(writer, &body_len);
  if (tlen == 1 && target[0] == '*') {
    pomelo_channel_push(ch, LIT("onChat"), body, body_len);
  } else {
    /* The target's uid in this room; someone who is not in it is an error (the real handler
     * fails on the missing channel member). */
    size_t tuid_len;
    char *tuid = make_uid(target, tlen, rid, rlen, &tuid_len);
    const char *uids[1];
    if (!tuid) {
      pomelo_request_error(req, POMELO_ERR_NOMEM, NULL, 0);
      return;
    }
    if (!channel_has(ch, tuid, tuid_len)) {
      free(tuid);
      pomelo_request_error(req, POMELO_ERR_NOT_FOUND, NULL, 0);
      return;
    }
    uids[0] = tuid;
    pomelo_server_push_uids(connector.srv, uids, &tuid_len, 1, LIT("onChat"), body, body_len);
    free(tuid);
  }
  pomelo_request_respond(req, NULL, 0); /* {} */
}

/* ---------------------------------------------------------------------------------------------
 * Sockets and the loop
 * ------------------------------------------------------------------------------------------- */

/* Creates a server with its id, type, heartbeat interval (0: none) and callbacks. */
static int make_server(pomelo_server **out, const char *id, const char *type, uint32_t heartbeat_ms,
                       const pomelo_server_callbacks *cb) {
  pomelo_server_settings st;
  pomelo_server_settings_default(&st); /* transport AUTO: TCP and WebSocket on one port */
  st.server_id = id;
  st.server_type = type;
  st.conn.heartbeat_interval_ms = heartbeat_ms;
  return pomelo_server_new(out, &st, cb, NULL, NULL);
}

/* Opens the listening socket of `fe` on host:port and records the port really bound. */
static int listen_on(frontend *fe, const char *host, const char *port) {
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
  struct sockaddr_storage sa;
  socklen_t salen = sizeof sa;
  int one = 1;
  if (getaddrinfo(host, port, &hints, &ai) != 0) {
    return -1;
  }
  fe->lfd = socket(ai->ai_family, SOCK_STREAM, 0);
  if (fe->lfd < 0 || setsockopt(fe->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      bind(fe->lfd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fe->lfd, 128) != 0 ||
      fcntl(fe->lfd, F_SETFL, O_NONBLOCK) != 0 ||
      getsockname(fe->lfd, (struct sockaddr *)&sa, &salen) != 0 ||
      getnameinfo((struct sockaddr *)&sa, salen, NULL, 0, fe->port, sizeof fe->port,
                  NI_NUMERICSERV) != 0) {
    freeaddrinfo(ai);
    return -1;
  }
  freeaddrinfo(ai);
  return 0;
}

/* Writes as much of a session's queued output as its socket takes (it is non-blocking). */
static void flush(int fd, pomelo_session *s, uint64_t now) {
  struct iovec iov[16];
  int n;
  while ((n = pomelo_session_out_iov(s, iov, 16)) > 0) {
    ssize_t w = writev(fd, iov, n);
    if (w < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        pomelo_session_peer_closed(s); /* the socket is dead: drop the rest */
      }
      return;
    }
    pomelo_session_out_consume(s, (size_t)w, now);
  }
}

/* Accepts one client on `fe` into the next free slot. */
static void accept_client(frontend *fe, uint64_t now) {
  int fd = accept(fe->lfd, NULL, NULL);
  if (fd < 0) {
    return;
  }
  if (nfds >= 2 + MAX_CLIENTS || fcntl(fd, F_SETFL, O_NONBLOCK) != 0 ||
      pomelo_server_accept(fe->srv, now, NULL, &sess[nfds]) != 0) {
    close(fd);
    return;
  }
  pfd[nfds].fd = fd;
  owner[nfds++] = fe;
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *gate_port = "3014", *conn_port = "3050";
  pomelo_server_callbacks gate_cb = {0}, conn_cb = {0}, chat_cb = {0};
  frontend *fronts[2] = {&gate, &connector};
  int i;

  for (i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--host") == 0) {
      host = argv[i + 1];
    } else if (strcmp(argv[i], "--gate-port") == 0) {
      gate_port = argv[i + 1]; /* 0: any free port (printed below) */
    } else if (strcmp(argv[i], "--port") == 0) {
      conn_port = argv[i + 1];
    } else {
      break;
    }
  }
  if (i != argc) {
    fprintf(stderr, "usage: pomelo-chat [--host H] [--gate-port P] [--port P]\n");
    return 2;
  }
  public_host = host;

  /* The three servers. The connector forwards chat routes and tells us when sessions end. */
  conn_cb.on_forward = on_forward;
  conn_cb.on_session_closed = on_connector_closed;
  if (pomelo_json_writer_new(&writer, NULL, 0) != 0 ||
      make_server(&gate.srv, "gate-server-1", "gate", 0, &gate_cb) != 0 ||
      make_server(&connector.srv, "connector-server-1", "connector", 3000, &conn_cb) != 0 ||
      make_server(&chat, "chat-server-1", "chat", 0, &chat_cb) != 0 ||
      pomelo_server_on(gate.srv, LIT("gate.gateHandler.queryEntry"), query_entry, NULL) != 0 ||
      pomelo_server_on(connector.srv, LIT("connector.entryHandler.enter"), enter, NULL) != 0 ||
      pomelo_server_on(chat, LIT("chat.chatHandler.send"), send_chat, NULL) != 0) {
    fprintf(stderr, "pomelo-chat: out of memory\n");
    return 1;
  }
  if (listen_on(&gate, host, gate_port) != 0 || listen_on(&connector, host, conn_port) != 0) {
    fprintf(stderr, "pomelo-chat: cannot listen on %s:%s and %s:%s\n", host, gate_port, host,
            conn_port);
    return 1;
  }
  signal(SIGPIPE, SIG_IGN); /* writing to a closed socket: EPIPE rather than death */
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  printf("gate on %s:%s, connector on %s:%s\n", host, gate.port, host, connector.port);
  fflush(stdout); /* tests and tools/demo.sh wait for this line */

  pfd[0].fd = gate.lfd;
  pfd[1].fd = connector.lfd;
  owner[0] = &gate;
  owner[1] = &connector;
  while (!stop) {
    /* One deadline per server covers all of its sessions (heartbeats, timeouts). */
    uint64_t now = now_ms(), next = now + 60000;
    int f;
    for (f = 0; f < 2; f++) {
      uint64_t e = pomelo_server_expiry(fronts[f]->srv);
      next = e < next ? e : next;
      pfd[f].events = nfds < 2 + MAX_CLIENTS ? POLLIN : 0;
    }
    for (i = 2; i < (int)nfds; i++) { /* ask for writability only while output is queued */
      pfd[i].events = POLLIN | (pomelo_session_out_len(sess[i]) ? POLLOUT : 0);
    }
    if (poll(pfd, nfds, next > now ? (int)(next - now) : 0) < 0) {
      continue; /* EINTR: a signal; the loop condition checks `stop` */
    }
    now = now_ms();

    /* 1. Input. A request may push to any session (a chat message to the whole room). */
    for (i = 2; i < (int)nfds; i++) {
      if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) {
        static uint8_t buf[65536];
        ssize_t n = read(pfd[i].fd, buf, sizeof buf);
        if (n > 0) {
          pomelo_session_feed(sess[i], buf, (size_t)n, now); /* runs the handlers */
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
          pomelo_session_peer_closed(sess[i]); /* end of file or a dead socket */
        }
      }
    }
    /* 2. Timers. */
    for (f = 0; f < 2; f++) {
      if (pomelo_server_expiry(fronts[f]->srv) <= now) {
        pomelo_server_handle_expiry(fronts[f]->srv, now);
      }
    }
    /* 3. Output, to every session (pushes reach sessions that sent nothing), and closes: the
     * library says when. Backwards, so that removing a client (the last one takes its slot)
     * skips nobody. Releasing a session may push onLeave to others: a session already passed
     * here is written on the next turn, at once since poll() then sees it writable. */
    for (i = (int)nfds - 1; i >= 2; i--) {
      flush(pfd[i].fd, sess[i], now);
      if (pomelo_session_wants_close(sess[i])) {
        close(pfd[i].fd);
        pomelo_server_release(owner[i]->srv, sess[i]);
        nfds--;
        pfd[i] = pfd[nfds];
        owner[i] = owner[nfds];
        sess[i] = sess[nfds];
      }
    }
    /* 4. New clients. */
    for (f = 0; f < 2; f++) {
      if (pfd[f].revents & POLLIN) {
        accept_client(fronts[f], now);
      }
    }
  }

  /* SIGINT or SIGTERM: close every socket and free everything. */
  for (i = 0; i < (int)nfds; i++) {
    close(pfd[i].fd);
  }
  pomelo_server_del(gate.srv); /* frees its sessions too */
  pomelo_server_del(connector.srv);
  pomelo_server_del(chat);
  pomelo_json_writer_del(writer);
  fprintf(stderr, "pomelo-chat: stopped by signal %d\n", (int)stop);
  return 0;
}
