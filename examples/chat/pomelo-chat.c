/* pomelo-chat: the chat of NetEase's chatofpomelo example, in C, in one process (docs/chat.md).
 *   pomelo-chat [--host H] [--gate-port P] [--port P]     (default 127.0.0.1, 3014, 3050)
 *
 * The real chatofpomelo runs several Node.js processes (spec/protocol.md section 9):
 *   - a gate (port 3014, no heartbeat) that tells each client which connector to use;
 *   - connectors (port 3050, heartbeat 3 s) that hold the clients' sockets and their sessions;
 *   - chat servers (backends, no clients of their own) that run the chat routes; a connector
 *     forwards each "chat.*" request to one of them over RPC, and the chat server pushes to the
 *     room through its channel, which is again an RPC back to the connectors.
 * Here the same three roles are three pomelo_server objects driven by one epoll loop
 * (../common/server_loop.c):
 *   gate       type "gate", listens on --host:--gate-port (TCP and WebSocket on one port);
 *   connector  type "connector", listens on --host:--port (TCP and WebSocket), heartbeat 3 s;
 *   chat       type "chat", no socket at all: the connector's on_forward hands it each chat
 *              route with pomelo_server_dispatch, and its answer comes back through a reply
 *              callback to pomelo_server_respond. In a real deployment the two ends of that
 *              hand-over would sit in two processes with a message bus between them; here the
 *              "bus" is a function call, which is enough to show the three ends to connect.
 *
 * The wire is the real app's: the gate and the connector announce chatofpomelo's protos (its
 * serverProtos.json: onChat is protobuf), the connector also its route dictionary (the handler
 * routes of the three server types, numbered as the real server numbers them), so the versions
 * match the real server's and a browser that cached them there keeps working here; clients
 * then send the request routes as 2-byte codes. Bodies are JSON otherwise.
 * Routes:
 *   gate.gateHandler.queryEntry {uid}             -> {"code":200,"host":H,"port":connector port}
 *   connector.entryHandler.enter {username, rid}  -> {"users":[names in the room]}
 *   chat.chatHandler.send {rid, content, from, target}  -> {} and onChat pushes
 * Pushes: onAdd {"route":"onAdd","user":name} and onLeave {"route":"onLeave","user":name} to the
 * others in the room, onChat {"msg":content,"from":name,"target":target}.
 *
 * Like pomelo-echo, the loop owns the sockets and the clock; libpomelo owns the protocol.
 * SIGINT or SIGTERM: every client gets a KICK "server shutting down", then the process exits.
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pomelo/pomelo.h>

#include "../common/server_loop.h"

#define LIT(s) (s), (sizeof(s) - 1) /* a string literal and its length, as two arguments */

/* This application's error codes (positive, so they never clash with the library's). The
 * client sees the error body ({"code":500} unless one is given), as from the real chat. */
enum {
  CHAT_ERR_BAD_REQUEST = 1, /* a body without what the route needs */
  CHAT_ERR_DUPLICATE = 2,   /* the name is taken in that room */
  CHAT_ERR_NOT_ENTERED = 3, /* chat before entering a room */
  CHAT_ERR_NO_TARGET = 4,   /* a private message to someone not in the room */
  CHAT_ERR_INTERNAL = 5     /* out of memory, or another library failure */
};

static pomelo_server *gate, *connector; /* the frontends: clients connect to them */
static pomelo_server *chat;             /* the backend: no sockets, only handlers */
static char connector_port[16];         /* the port really bound, handed out by the gate */
static const char *public_host;         /* what queryEntry answers as the connector's host */
static pomelo_json_writer *writer;      /* builds every JSON body; one at a time, then reused */
static pomelo_dict *dict;               /* the connector's route dictionary */
static pomelo_protos *protos;           /* the frontends' protos */

/* The handler routes of every server type of the deployment: the real server numbers these,
 * sorted, from 1 (config/dictionary.json adds nothing in chatofpomelo). */
static const char *const handler_routes[] = {
    "gate.gateHandler.queryEntry", "connector.entryHandler.enter", "chat.chatHandler.send"};
/* chatofpomelo's config/serverProtos.json (its clientProtos.json is {}). */
static const char server_protos[] =
    "{\"onChat\":{\"required string msg\":1,\"required string from\":2,"
    "\"required string target\":3}}";

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

/* Pushes what the writer holds on `route` to every member of channel `ch`. A member that cannot
 * take it (a slow consumer, or no memory for it) is dropped or closed by the library's policy;
 * the others get it. */
static void push_written(pomelo_channel *ch, const char *route) {
  size_t len;
  const char *body = pomelo_json_writer_data(writer, &len);
  if (pomelo_channel_push(ch, route, body, len) < 0) {
    fprintf(stderr, "chat: cannot push %s: out of memory\n", route);
  }
}

/* Answers `req` with what the writer holds, or as an internal error when writing failed. An
 * answer fails only when the client is gone (nothing to do) or for lack of memory (the library
 * then closes that session). */
static void respond_written(pomelo_request *req, int write_rc) {
  size_t len;
  const char *body = pomelo_json_writer_data(writer, &len);
  if (write_rc) {
    (void)pomelo_request_error(req, CHAT_ERR_INTERNAL, NULL, 0);
  } else {
    (void)pomelo_request_respond(req, body, len);
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
    (void)pomelo_request_respond(req, LIT("{\"code\":500}"));
    return;
  }
  pomelo_json_writer_reset(writer);
  rc = pomelo_json_write_begin_object(writer);
  rc = rc ? rc : pomelo_json_write_key(writer, LIT("code"));
  rc = rc ? rc : pomelo_json_write_int64(writer, 200);
  rc = rc ? rc : pomelo_json_write_key(writer, LIT("host"));
  rc = rc ? rc : pomelo_json_write_string(writer, public_host, strlen(public_host));
  rc = rc ? rc : pomelo_json_write_key(writer, LIT("port"));
  rc = rc ? rc : pomelo_json_write_int64(writer, atoi(connector_port));
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
    (void)pomelo_request_error(req, CHAT_ERR_BAD_REQUEST, NULL, 0);
    return;
  }
  uid = make_uid(username, ulen, rid, rlen, &uid_len);
  if (!uid) {
    (void)pomelo_request_error(req, CHAT_ERR_INTERNAL, NULL, 0);
    return;
  }

  /* A second "alice" in room1, or a session that already entered (bound to another uid). */
  if (pomelo_server_sessions_by_uid(connector, uid, uid_len, NULL, 0) > 0 ||
      pomelo_session_bind(s, uid, uid_len) != 0) {
    (void)pomelo_request_error(req, CHAT_ERR_DUPLICATE, LIT("{\"code\":500,\"error\":true}"));
    free(uid);
    return;
  }
  ch = pomelo_server_channel(connector, rid, rlen);
  rc = ch ? 0 : pomelo_channel_new(connector, rid, rlen, &ch);
  rc = rc ? rc : pomelo_session_set(s, LIT("rid"), rid, rlen);
  if (rc == 0) {
    /* The others first, then the newcomer joins: it gets no onAdd about itself. */
    if (write_user_event("onAdd", username, ulen) == 0) {
      push_written(ch, "onAdd");
    }
    rc = pomelo_channel_add(ch, uid, uid_len, pomelo_session_id(s));
  }
  if (rc) { /* out of memory: undo what was done */
    (void)pomelo_session_unbind(s);
    (void)pomelo_session_remove(s, LIT("rid"));
    if (ch && pomelo_channel_count(ch) == 0) {
      pomelo_channel_destroy(ch);
    }
    (void)pomelo_request_error(req, CHAT_ERR_INTERNAL, NULL, 0);
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

/* A session is finished (the browser tab closed, a heartbeat timeout, ...; the loop calls this
 * before it closes the socket and releases the session): a connector session that had entered a
 * room leaves the channel and the others get onLeave. An empty room is destroyed. */
static void on_session_done(server_loop *l, pomelo_server *srv, pomelo_session *s, void *ud) {
  size_t uid_len, rlen;
  const char *uid = pomelo_session_uid(s, &uid_len);
  const char *rid = pomelo_session_get(s, LIT("rid"), &rlen);
  pomelo_channel *ch = rid ? pomelo_server_channel(srv, rid, rlen) : NULL;
  (void)l;
  (void)ud;
  if (srv != connector || !uid || !ch ||
      pomelo_channel_leave(ch, uid, uid_len, pomelo_session_id(s)) != 0) {
    return;
  }
  fprintf(stderr, "connector: %.*s left %.*s (%s)\n", (int)name_len(uid, uid_len), uid, (int)rlen,
          rid, pomelo_close_reason_name(pomelo_session_close_reason(s)));
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
  char route[POMELO_MSG_ROUTE_MAX + 1]; /* the request's route: it picks the response's proto */
} pending;

/* The backend answered a forwarded request: the connector sends it to the client, if the client
 * is still there (pomelo_server_respond returns POMELO_ERR_NOT_FOUND otherwise). */
static void forward_reply(const char *body, size_t len, void *arg) {
  pending *p = arg;
  (void)pomelo_server_respond(connector, p->sid, p->id, p->route, body, len); /* NOT_FOUND: gone */
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
      if (pomelo_server_dispatch(chat, session_json, session_json_len, msg, forward_reply, NULL) !=
          0) {
        fprintf(stderr, "connector: a notify could not be dispatched\n");
      }
      return;
    }
    p = malloc(sizeof *p);
    if (p) {
      p->sid = pomelo_session_id(s);
      p->id = msg->id;
      memcpy(p->route, msg->route, msg->route_len); /* at most POMELO_MSG_ROUTE_MAX bytes */
      p->route[msg->route_len] = 0;
      if (pomelo_server_dispatch(chat, session_json, session_json_len, msg, forward_reply, p) ==
          0) {
        return; /* forward_reply answers and frees p */
      }
      free(p);
    }
  }
  /* A server type nobody runs here (or no memory): the real server answers {"code":500}. */
  if (msg->type == POMELO_MSG_REQUEST) {
    (void)pomelo_server_respond(srv, pomelo_session_id(s), msg->id, NULL, LIT("{\"code\":500}"));
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
  pomelo_channel *ch = rid ? pomelo_server_channel(connector, rid, rlen) : NULL;
  size_t body_len;
  const char *body;
  int rc;
  (void)user_data;
  if (!uid || !ch) {
    (void)pomelo_request_error(req, CHAT_ERR_NOT_ENTERED, NULL, 0);
    return;
  }
  if (!target || !content) {
    (void)pomelo_request_error(req, CHAT_ERR_BAD_REQUEST, NULL, 0);
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
    (void)pomelo_request_error(req, CHAT_ERR_INTERNAL, NULL, 0);
    return;
  }
  body = pomelo_json_writer_data(writer, &body_len);
  if (tlen == 1 && target[0] == '*') {
    if (pomelo_channel_push(ch, "onChat", body, body_len) < 0) {
      (void)pomelo_request_error(req, CHAT_ERR_INTERNAL, NULL, 0);
      return;
    }
  } else {
    /* The target's uid in this room; someone who is not in it is an error (the real handler
     * fails on the missing channel member). */
    size_t tuid_len;
    char *tuid = make_uid(target, tlen, rid, rlen, &tuid_len);
    const char *uids[1];
    if (!tuid) {
      (void)pomelo_request_error(req, CHAT_ERR_INTERNAL, NULL, 0);
      return;
    }
    if (!channel_has(ch, tuid, tuid_len)) {
      free(tuid);
      (void)pomelo_request_error(req, CHAT_ERR_NO_TARGET, NULL, 0);
      return;
    }
    uids[0] = tuid;
    rc = pomelo_server_push_uids(connector, uids, &tuid_len, 1, "onChat", body, body_len);
    free(tuid);
    if (rc < 0) {
      (void)pomelo_request_error(req, CHAT_ERR_INTERNAL, NULL, 0);
      return;
    }
  }
  (void)pomelo_request_respond(req, NULL, 0); /* {} */
}

/* ---------------------------------------------------------------------------------------------
 * Start-up
 * ------------------------------------------------------------------------------------------- */

/* Creates a server with its id, type, heartbeat interval (0: none), dictionary and protos (NULL:
 * none) and callbacks. */
static int make_server(pomelo_server **out, const char *id, const char *type, uint32_t heartbeat_ms,
                       const pomelo_dict *d, const pomelo_protos *p,
                       const pomelo_server_callbacks *cb) {
  pomelo_server_settings st;
  pomelo_server_settings_default(&st); /* transport AUTO: TCP and WebSocket on one port */
  st.server_id = id;
  st.server_type = type;
  st.conn.heartbeat_interval_ms = heartbeat_ms;
  st.conn.dict = d;
  st.conn.protos = p;
  return pomelo_server_new(out, &st, cb, NULL, NULL);
}

/* The servers, their handlers and the loop; prints what went wrong. */
static int start(server_loop **loop, const char *host, const char *gate_port, const char *conn_port,
                 char *gate_bound, size_t gate_bound_len) {
  pomelo_server_callbacks conn_cb = {0};
  server_loop_callbacks loop_cb = {0};
  pomelo_pb_error perr;
  int rc;
  conn_cb.on_forward = on_forward; /* chat routes go to the backend */
  loop_cb.on_session_done = on_session_done;
  rc = pomelo_json_writer_new(&writer, NULL, 0);
  rc = rc ? rc
          : pomelo_dict_new(&dict, NULL, handler_routes,
                            sizeof handler_routes / sizeof handler_routes[0], NULL, 0);
  if (rc == 0) {
    rc = pomelo_protos_new(&protos, NULL, LIT(server_protos), LIT("{}"), NULL, &perr);
    if (rc) {
      fprintf(stderr, "pomelo-chat: protos: %s at %s\n", pomelo_strerror(rc), perr.path);
      return -1;
    }
  }
  /* As chatofpomelo: the gate has protos but no dictionary and no heartbeat. */
  rc = rc ? rc : make_server(&gate, "gate-server-1", "gate", 0, NULL, protos, NULL);
  rc =
      rc ? rc
         : make_server(&connector, "connector-server-1", "connector", 3000, dict, protos, &conn_cb);
  rc = rc ? rc : make_server(&chat, "chat-server-1", "chat", 0, NULL, NULL, NULL);
  rc = rc ? rc : pomelo_server_on(gate, "gate.gateHandler.queryEntry", query_entry, NULL);
  rc = rc ? rc : pomelo_server_on(connector, "connector.entryHandler.enter", enter, NULL);
  rc = rc ? rc : pomelo_server_on(chat, "chat.chatHandler.send", send_chat, NULL);
  if (rc) {
    fprintf(stderr, "pomelo-chat: %s\n", pomelo_strerror(rc));
    return -1;
  }
  rc = server_loop_new(loop, &loop_cb, NULL);
  rc = rc ? rc : server_loop_add(*loop, gate, host, gate_port, NULL, gate_bound, gate_bound_len);
  rc = rc ? rc
          : server_loop_add(*loop, connector, host, conn_port, NULL, connector_port,
                            sizeof connector_port);
  if (rc) {
    fprintf(stderr, "pomelo-chat: cannot listen on %s:%s and %s:%s: %s\n", host, gate_port, host,
            conn_port, strerror(rc));
    return -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *gate_port = "3014", *conn_port = "3050";
  server_loop *loop = NULL;
  char gate_bound[16];
  int i, sig = 0, status = 1;

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
  if (start(&loop, host, gate_port, conn_port, gate_bound, sizeof gate_bound) == 0) {
    printf("gate on %s:%s, connector on %s:%s\n", host, gate_bound, host, connector_port);
    fflush(stdout); /* tests and tools/demo.sh wait for this line */
    sig = server_loop_run(loop, "server shutting down", 5000);
    status = sig < 0 ? 1 : 0;
    if (sig < 0) {
      perror("pomelo-chat: epoll_wait");
    }
  }
  server_loop_del(loop); /* closes every socket; the servers go after it */
  pomelo_server_del(gate);
  pomelo_server_del(connector);
  pomelo_server_del(chat);
  pomelo_json_writer_del(writer);
  pomelo_protos_del(protos);
  pomelo_dict_del(dict);
  if (status == 0) {
    fprintf(stderr, "pomelo-chat: stopped by signal %d\n", sig);
  }
  return status;
}
