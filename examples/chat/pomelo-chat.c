/* pomelo-chat: the chat of NetEase's chatofpomelo example, in C, as a cluster (docs/chat.md).
 *
 *   pomelo-chat [--host H] [--gate-port P] [--port P]
 *       every role in one process (default 127.0.0.1, 3014, 3050), the servers talking over an
 *       in-process bus (../common/membus.c); prints "gate on H:P, connector on H:P".
 *   pomelo-chat --role gate|connector|chat --nats URL --id ID [--host H] [--port P]
 *               [--announce-ms N] [--timeout-ms N]
 *       one role per process, the servers of the cluster talking over NATS (libpomelo-nats);
 *       any number of connectors and chat servers; prints "ready ID H:P" (gate, connector) or
 *       "ready ID" (chat) once it has joined the cluster. tools/cluster.sh starts a whole one.
 *   Connector limits, in both forms: --max-output BYTES (a session's queued output before the
 *   slow-consumer policy acts; default 1 MiB), --slow-policy drop|close (drop its pushes until
 *   it drains, the default, or close it), --rate-limit N and --rate-burst N (requests and
 *   notifies per second per session, over which they are dropped unanswered; default none),
 *   --sndbuf BYTES (SO_SNDBUF of client sockets; default the kernel's autotuning, up to 4 MiB
 *   per socket before max_output even starts to count). Each connector prints its counters
 *   (sessions, pushes, push drops, slow disconnects, rate limited, ...) on stderr at exit.
 *
 * The real chatofpomelo runs the same three roles as Node.js processes (spec/protocol.md
 * section 9), and so does this program:
 *   gate       type "gate", clients' first stop (port 3014, no heartbeat): queryEntry answers the
 *              connector for the user, Math.abs(crc32(uid)) % n over the connectors in id order,
 *              as chatofpomelo's dispatcher;
 *   connector  type "connector" (port 3050, heartbeat 3 s): holds the clients' sockets and
 *              sessions; entryHandler.enter binds the uid "name*rid" and asks the room's chat
 *              server to add the user (chat.chatRemote.add); chat.* requests are forwarded to
 *              the chat server of the session's room, Math.abs(crc32(rid)) % n, by the cluster;
 *              a session that ends tells the room's chat server (chat.chatRemote.kick);
 *   chat       type "chat", no socket: holds the rooms as cluster channels of (uid, connector
 *              id), runs chat.chatHandler.send, and pushes onAdd, onLeave and onChat: one bus
 *              message per connector, which encodes it once for all its users in the room.
 * When the chat servers change (one joins, leaves or restarts), each connector adds its users
 * again to the chat server that now owns their room, without onAdd, and chat servers forget the
 * rooms they no longer own: the rooms survive a chat server's restart. When a
 * connector leaves (it stopped, or was silent for three announcements), the chat servers remove its
 * users from their rooms and the others get onLeave.
 *
 * The wire is the real app's: the gate and the connectors announce chatofpomelo's protos (its
 * serverProtos.json: onChat is protobuf), the connectors also its route dictionary, so the
 * versions match the real server's and a browser that cached them there keeps working here.
 * Routes:
 *   gate.gateHandler.queryEntry {uid}             -> {"code":200,"host":H,"port":P}
 *   connector.entryHandler.enter {username, rid}  -> {"users":[names in the room]}
 *   chat.chatHandler.send {rid, content, from, target}  -> {} and onChat pushes
 * Pushes: onAdd {"route":"onAdd","user":name} and onLeave {"route":"onLeave","user":name} to the
 * others in the room, onChat {"msg":content,"from":name,"target":target}.
 *
 * The loop (../common/server_loop.c) owns the sockets, the clock and the NATS descriptor;
 * libpomelo owns the protocol and the cluster. SIGINT or SIGTERM: every client gets a KICK
 * "server shutting down", each server says bye to the cluster, then the process exits.
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <pomelo/pomelo.h>
#ifdef POMELO_CHAT_NATS
#include <pomelo/nats.h>
#endif

#include "../common/membus.h"
#include "../common/server_loop.h"

#define LIT(s) (s), (sizeof(s) - 1) /* a string literal and its length, as two arguments */

/* This application's error codes (positive, so they never clash with the library's). The
 * client sees the error body ({"code":500} unless one is given), as from the real chat. */
enum {
  CHAT_ERR_BAD_REQUEST = 1, /* a body without what the route needs */
  CHAT_ERR_DUPLICATE = 2,   /* the name is taken in that room */
  CHAT_ERR_NOT_ENTERED = 3, /* chat before entering a room */
  CHAT_ERR_NO_TARGET = 4,   /* a private message to someone not in the room */
  CHAT_ERR_INTERNAL = 5,    /* out of memory, or another library failure */
  CHAT_ERR_NO_ROOM = 6      /* the room's chat server could not be reached */
};

/* One server of this process: its pomelo_server, its cluster, its role. */
typedef struct chat_server {
  const char *id;
  pomelo_server *srv;
  pomelo_cluster *c;
  int role; /* ROLE_* */
#ifdef POMELO_CHAT_NATS
  pomelo_nats *nats;
#endif
} chat_server;

enum { ROLE_GATE = 1, ROLE_CONNECTOR = 2, ROLE_CHAT = 4 };

static chat_server servers[3];
static size_t nservers;
static pomelo_json_writer *writer; /* builds every JSON body; one at a time, then reused */
static pomelo_dict *dict;          /* the connectors' route dictionary */
static pomelo_protos *protos;      /* the frontends' protos */
static membus *bus;                /* the in-process bus (without --nats) */

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

/* Pushes what the writer holds on `route` to every member of room `ch`: one bus message per
 * connector with its members, each connector encoding the push once for all of them. A
 * member that cannot take it (a slow consumer) is dropped or closed by its connector's policy;
 * the others get it. */
static void push_written(pomelo_cluster_channel *ch, const char *route) {
  size_t len;
  const char *body = pomelo_json_writer_data(writer, &len);
  int rc = pomelo_cluster_channel_push(ch, route, body, len);
  if (rc < 0) {
    fprintf(stderr, "chat: cannot push %s: %s\n", route, pomelo_strerror(rc));
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

/* The server of a pomelo_server (handlers get theirs as user_data). */
static chat_server *server_of(const pomelo_server *srv) {
  size_t i;
  for (i = 0; i < nservers; i++) {
    if (servers[i].srv == srv) {
      return &servers[i];
    }
  }
  return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * The gate: gate.gateHandler.queryEntry
 * ------------------------------------------------------------------------------------------- */

/* {uid} -> the connector for this user: Math.abs(crc32(uid)) % n over the connectors in id
 * order, as chatofpomelo's dispatcher. Without a uid, or without connectors: {"code":500}. */
static void query_entry(pomelo_request *req, void *user_data) {
  const pomelo_json_value *uid = pomelo_json_get(pomelo_request_json(req), "uid");
  pomelo_cluster_server conn;
  const char *key;
  size_t klen = 0;
  int rc;
  if (!js_truthy(uid)) {
    (void)pomelo_request_respond(req, LIT("{\"code\":500}"));
    return;
  }
  key = pomelo_json_string(uid, &klen);
  if (!key) { /* a number: JavaScript's crc32 would hash its text */
    key = pomelo_json_number_text(uid, &klen);
  }
  if (!key ||
      pomelo_cluster_pick(((chat_server *)user_data)->c, "connector", key, klen, &conn) != 0) {
    (void)pomelo_request_respond(req, LIT("{\"code\":500}"));
    return;
  }
  pomelo_json_writer_reset(writer);
  rc = pomelo_json_write_begin_object(writer);
  rc = rc ? rc : pomelo_json_write_key(writer, LIT("code"));
  rc = rc ? rc : pomelo_json_write_int64(writer, 200);
  rc = rc ? rc : pomelo_json_write_key(writer, LIT("host"));
  rc = rc ? rc : pomelo_json_write_string(writer, conn.client_host, strlen(conn.client_host));
  rc = rc ? rc : pomelo_json_write_key(writer, LIT("port"));
  rc = rc ? rc : pomelo_json_write_int64(writer, conn.client_port);
  rc = rc ? rc : pomelo_json_write_end_object(writer);
  respond_written(req, rc);
}

/* ---------------------------------------------------------------------------------------------
 * The connector: connector.entryHandler.enter, leaving, and keeping the rooms' servers told
 * ------------------------------------------------------------------------------------------- */

/* The chat server answered chat.chatRemote.add for an enter request: its answer ({"users":
 * [...]}) goes to the client as is; a chat server that could not be reached is an error, and
 * the session is unbound so that the user may try again. */
static void entered(pomelo_cluster *c, int rc, const char *body, size_t len, void *arg) {
  pomelo_request *req = arg;
  pomelo_session *s = pomelo_request_session(req);
  (void)c;
  if (rc != 0 || len == 0 || strstr(body, "\"users\"") == NULL) {
    if (s) {
      (void)pomelo_session_unbind(s);
      (void)pomelo_session_remove(s, LIT("rid"));
    }
    fprintf(stderr, "connector: a room's chat server did not add a user: %s\n",
            rc ? pomelo_strerror(rc) : "refused");
    (void)pomelo_request_error(req, CHAT_ERR_NO_ROOM, NULL, 0);
    return;
  }
  (void)pomelo_request_respond(req, body, len);
}

/* {username, rid}: binds the session to uid "username*rid", remembers the room in the session's
 * setting "rid" and asks the room's chat server to add the user (chatofpomelo's
 * chatRemote.add), which tells the room with onAdd and answers the names in the room. A uid
 * already in use on this connector gets {"code":500,"error":true}, as in chatofpomelo. */
static void enter(pomelo_request *req, void *user_data) {
  pomelo_session *s = pomelo_request_session(req);
  size_t ulen, rlen, uid_len;
  const char *username = body_string(req, "username", &ulen);
  const char *rid = body_string(req, "rid", &rlen);
  pomelo_server *srv = ((chat_server *)user_data)->srv;
  char *uid;
  int rc;
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
  if (pomelo_server_sessions_by_uid(srv, uid, uid_len, NULL, 0) > 0 ||
      pomelo_session_bind(s, uid, uid_len) != 0) {
    (void)pomelo_request_error(req, CHAT_ERR_DUPLICATE, LIT("{\"code\":500,\"error\":true}"));
    free(uid);
    return;
  }
  free(uid);
  rc = pomelo_session_set(s, LIT("rid"), rid, rlen);
  /* The session (uid, rid, frontend id) travels with the call; the router picks the chat
   * server of the room. `entered` answers the client. */
  rc = rc ? rc
          : pomelo_cluster_call(((chat_server *)user_data)->c, NULL, s, "chat.chatRemote.add", NULL,
                                0, entered, req);
  if (rc) {
    (void)pomelo_session_unbind(s);
    (void)pomelo_session_remove(s, LIT("rid"));
    fprintf(stderr, "connector: cannot reach the room's chat server: %s\n", pomelo_strerror(rc));
    (void)pomelo_request_error(req, CHAT_ERR_NO_ROOM, NULL, 0);
  }
}

/* A session is finished (the browser tab closed, a heartbeat timeout, ...; the loop calls this
 * before it closes the socket and releases the session): a session that had entered a room
 * tells the room's chat server, which pushes onLeave to the others (chatofpomelo's
 * chatRemote.kick, a notify here: nothing waits for it). */
static void on_session_done(server_loop *l, pomelo_server *srv, pomelo_session *s, void *ud) {
  chat_server *cs = server_of(srv);
  size_t rlen;
  (void)l;
  (void)ud;
  if (!cs || cs->role != ROLE_CONNECTOR || !pomelo_session_uid(s, NULL) ||
      !pomelo_session_get(s, LIT("rid"), &rlen)) {
    return;
  }
  if (pomelo_cluster_call(cs->c, NULL, s, "chat.chatRemote.kick", NULL, 0, NULL, NULL) != 0) {
    fprintf(stderr, "connector: could not tell the room that a user left\n");
  }
}

/* Adds every user of this connector who is in a room again to the room's chat server, without
 * onAdd: after the chat servers changed, a room may live on another one, or on a restarted one
 * that lost it. */
static int readd(pomelo_session *s, void *arg) {
  size_t rlen;
  if (pomelo_session_uid(s, NULL) && pomelo_session_get(s, LIT("rid"), &rlen) &&
      pomelo_session_state(s) == POMELO_CONN_WORKING) {
    (void)pomelo_cluster_call(arg, NULL, s, "chat.chatRemote.add", LIT("{\"silent\":true}"), NULL,
                              NULL);
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The chat server: rooms, chat.chatRemote.add / kick, chat.chatHandler.send
 * ------------------------------------------------------------------------------------------- */

/* The room `rid` of this chat server, created when `create`. */
static pomelo_cluster_channel *room(pomelo_cluster *c, const char *rid, size_t rlen, int create) {
  pomelo_cluster_channel *ch = pomelo_cluster_channel_get(c, rid, rlen);
  if (!ch && create && pomelo_cluster_channel_new(c, rid, rlen, &ch) != 0) {
    return NULL;
  }
  return ch;
}

/* The caller's uid, room and connector, from the session that came with the request; 0 when
 * it has not entered. */
static int caller(pomelo_request *req, const char **uid, size_t *ulen, const char **rid,
                  size_t *rlen, const char **fid) {
  const pomelo_session *s = pomelo_request_session(req);
  *uid = s ? pomelo_session_uid(s, ulen) : NULL;
  *rid = s ? pomelo_session_get(s, LIT("rid"), rlen) : NULL;
  *fid = s ? pomelo_session_frontend_id(s) : "";
  return *uid && *rid && **fid;
}

/* {"users":["alice","bob"]} of room `ch`. */
static int write_users(const pomelo_cluster_channel *ch) {
  size_t i;
  int rc;
  pomelo_json_writer_reset(writer);
  rc = pomelo_json_write_begin_object(writer);
  rc = rc ? rc : pomelo_json_write_key(writer, LIT("users"));
  rc = rc ? rc : pomelo_json_write_begin_array(writer);
  for (i = 0; rc == 0 && i < pomelo_cluster_channel_count(ch); i++) {
    const char *member, *fid;
    size_t mlen;
    pomelo_cluster_channel_member(ch, i, &member, &mlen, &fid);
    rc = pomelo_json_write_string(writer, member, name_len(member, mlen));
  }
  rc = rc ? rc : pomelo_json_write_end_array(writer);
  return rc ? rc : pomelo_json_write_end_object(writer);
}

/* chat.chatRemote.add {silent?}: the caller's user joins its room, the others get onAdd first
 * (not when silent: a connector adding its users again); answers the names in the room. */
static void remote_add(pomelo_request *req, void *user_data) {
  const char *uid, *rid, *fid;
  size_t ulen, rlen;
  pomelo_cluster_channel *ch;
  int rc, silent = pomelo_json_bool(pomelo_json_get(pomelo_request_json(req), "silent"));
  if (!caller(req, &uid, &ulen, &rid, &rlen, &fid)) {
    (void)pomelo_request_error(req, CHAT_ERR_BAD_REQUEST, NULL, 0);
    return;
  }
  ch = room(((chat_server *)user_data)->c, rid, rlen, 1);
  if (!ch) {
    (void)pomelo_request_error(req, CHAT_ERR_INTERNAL, NULL, 0);
    return;
  }
  if (!silent && !pomelo_cluster_channel_has(ch, uid, ulen) &&
      write_user_event("onAdd", uid, name_len(uid, ulen)) == 0) {
    push_written(ch, "onAdd"); /* the others first: the newcomer gets no onAdd about itself */
  }
  rc = pomelo_cluster_channel_add(ch, uid, ulen, fid);
  if (rc != 0 && rc != POMELO_ERR_EXISTS) {
    (void)pomelo_request_error(req, CHAT_ERR_INTERNAL, NULL, 0);
    return;
  }
  if (!silent) {
    fprintf(stderr, "chat: %.*s entered %.*s on %s (%zu in the room)\n", (int)name_len(uid, ulen),
            uid, (int)rlen, rid, fid, pomelo_cluster_channel_count(ch));
  }
  respond_written(req, write_users(ch));
}

/* A user left room `ch`: the others get onLeave; an empty room goes. */
static void left(pomelo_cluster_channel *ch, const char *uid, size_t ulen, int destroy) {
  if (pomelo_cluster_channel_count(ch) == 0) {
    if (destroy) {
      pomelo_cluster_channel_destroy(ch);
    }
  } else if (write_user_event("onLeave", uid, name_len(uid, ulen)) == 0) {
    push_written(ch, "onLeave");
  }
}

/* chat.chatRemote.kick (a notify): the caller's user leaves its room. */
static void remote_kick(pomelo_request *req, void *user_data) {
  const char *uid, *rid, *fid;
  size_t ulen, rlen;
  pomelo_cluster_channel *ch;
  if (!caller(req, &uid, &ulen, &rid, &rlen, &fid)) {
    return;
  }
  ch = room(((chat_server *)user_data)->c, rid, rlen, 0);
  if (ch && pomelo_cluster_channel_leave(ch, uid, ulen, fid) == 0) {
    fprintf(stderr, "chat: %.*s left %.*s\n", (int)name_len(uid, ulen), uid, (int)rlen, rid);
    left(ch, uid, ulen, 1);
  }
}

/* {rid, content, from, target}: pushes onChat {"msg":content,"from":name,"target":target} to the
 * whole room (the sender included) when target is "*", else to the user `target` of the room
 * only (the sender's page shows its own private message itself), and answers {}, as the real
 * handler does. Like the real handler it takes the room and the sender's name from the session,
 * not from the body: a client cannot speak in another room or under another name. A sender
 * this server does not know in its room (it restarted) is added again first. */
static void send_chat(pomelo_request *req, void *user_data) {
  pomelo_cluster *c = ((chat_server *)user_data)->c;
  const char *uid, *rid, *fid;
  size_t ulen, rlen, tlen, body_len, i;
  const char *target = body_string(req, "target", &tlen);
  const pomelo_json_value *content = pomelo_json_get(pomelo_request_json(req), "content");
  pomelo_cluster_channel *ch;
  const char *body;
  int rc;
  if (!caller(req, &uid, &ulen, &rid, &rlen, &fid)) {
    (void)pomelo_request_error(req, CHAT_ERR_NOT_ENTERED, NULL, 0);
    return;
  }
  if (!target || !content) {
    (void)pomelo_request_error(req, CHAT_ERR_BAD_REQUEST, NULL, 0);
    return;
  }
  ch = room(c, rid, rlen, 1);
  if (!ch) {
    (void)pomelo_request_error(req, CHAT_ERR_INTERNAL, NULL, 0);
    return;
  }
  if (!pomelo_cluster_channel_has(ch, uid, ulen)) {
    (void)pomelo_cluster_channel_add(ch, uid, ulen, fid);
  }
  pomelo_json_writer_reset(writer);
  rc = pomelo_json_write_begin_object(writer);
  rc = rc ? rc : pomelo_json_write_key(writer, LIT("msg"));
  rc = rc ? rc : pomelo_json_write_value(writer, content); /* any JSON value, as in JavaScript */
  rc = rc ? rc : pomelo_json_write_key(writer, LIT("from"));
  rc = rc ? rc : pomelo_json_write_string(writer, uid, name_len(uid, ulen));
  rc = rc ? rc : pomelo_json_write_key(writer, LIT("target"));
  rc = rc ? rc : pomelo_json_write_string(writer, target, tlen);
  rc = rc ? rc : pomelo_json_write_end_object(writer);
  if (rc) {
    (void)pomelo_request_error(req, CHAT_ERR_INTERNAL, NULL, 0);
    return;
  }
  body = pomelo_json_writer_data(writer, &body_len);
  if (tlen == 1 && target[0] == '*') {
    rc = pomelo_cluster_channel_push(ch, "onChat", body, body_len);
  } else {
    /* The target "name*rid" in this room, on its connector; someone who is not in it is an
     * error (the real handler fails on the missing channel member). */
    size_t tuid_len;
    char *tuid = make_uid(target, tlen, rid, rlen, &tuid_len);
    const char *tfid = NULL;
    for (i = 0; tuid && i < pomelo_cluster_channel_count(ch); i++) {
      const char *m, *f;
      size_t ml;
      if (pomelo_cluster_channel_member(ch, i, &m, &ml, &f) == 0 && ml == tuid_len &&
          memcmp(m, tuid, ml) == 0) {
        tfid = f;
        break;
      }
    }
    if (!tuid || !tfid) {
      free(tuid);
      (void)pomelo_request_error(req, tuid ? CHAT_ERR_NO_TARGET : CHAT_ERR_INTERNAL, NULL, 0);
      return;
    }
    {
      const char *uids[1];
      uids[0] = tuid;
      rc = pomelo_cluster_push(c, tfid, NULL, 0, uids, &tuid_len, 1, "onChat", body, body_len, NULL,
                               NULL);
    }
    free(tuid);
  }
  if (rc < 0) {
    fprintf(stderr, "chat: cannot push onChat: %s\n", pomelo_strerror(rc));
    (void)pomelo_request_error(req, CHAT_ERR_INTERNAL, NULL, 0);
    return;
  }
  (void)pomelo_request_respond(req, NULL, 0); /* {} */
}

static int settled; /* the table is known: this server has been up a moment (on_tick) */

/* Rooms emptied by a connector's leaving, destroyed once its LEAVE event ran (channels cannot
 * be destroyed inside on_member_lost). */
static char **emptied;
static size_t nemptied, cemptied;

/* A connector left: its users are gone from the rooms; the others get onLeave. */
static void on_member_lost(pomelo_cluster *c, pomelo_cluster_channel *ch, const char *uid,
                           size_t ulen, const char *fid, void *ud) {
  size_t nl;
  const char *name = pomelo_cluster_channel_name(ch, &nl);
  (void)c;
  (void)ud;
  fprintf(stderr, "chat: %.*s lost with %s\n", (int)name_len(uid, ulen), uid, fid);
  left(ch, uid, ulen, 0);
  if (pomelo_cluster_channel_count(ch) == 0) {
    if (nemptied == cemptied) {
      size_t cap = cemptied ? cemptied * 2 : 8;
      char **v = realloc(emptied, cap * sizeof(*v));
      if (!v) {
        return; /* the empty room stays: harmless */
      }
      emptied = v;
      cemptied = cap;
    }
    emptied[nemptied] = malloc(nl + 1);
    if (emptied[nemptied]) {
      memcpy(emptied[nemptied], name, nl);
      emptied[nemptied][nl] = 0;
      nemptied++;
    }
  }
}

/* The chat servers changed: the rooms this one no longer owns are forgotten (their connectors
 * add their users to the new owner), so that a room coming back later starts from what the
 * connectors know, not from an old copy. */
static void forget_moved_rooms(chat_server *cs) {
  pomelo_cluster_channel **v;
  size_t n = pomelo_cluster_channels(cs->c, NULL, 0), i, got;
  if (n == 0 || (v = malloc(n * sizeof(*v))) == NULL) {
    return;
  }
  got = pomelo_cluster_channels(cs->c, v, n);
  for (i = 0; i < got && i < n; i++) {
    size_t nl;
    const char *name = pomelo_cluster_channel_name(v[i], &nl);
    pomelo_cluster_server owner;
    if (pomelo_cluster_pick(cs->c, "chat", name, nl, &owner) == 0 && !owner.self) {
      pomelo_cluster_channel_destroy(v[i]);
    }
  }
  free(v);
}

/* The table changed. */
static void on_server(pomelo_cluster *c, const pomelo_cluster_server *s, pomelo_cluster_event event,
                      void *ud) {
  chat_server *cs = ud;
  size_t i;
  if (event == POMELO_CLUSTER_UPDATE || s->self) {
    return;
  }
  fprintf(stderr, "cluster: %s %s (%s)\n", s->id, event == POMELO_CLUSTER_JOIN ? "joined" : "left",
          s->type);
  if (cs->role == ROLE_CONNECTOR && strcmp(s->type, "chat") == 0) {
    (void)pomelo_server_foreach(cs->srv, readd, c);
  }
  if (cs->role == ROLE_CHAT && strcmp(s->type, "chat") == 0 && settled) {
    /* Not while this server is still learning the table (the others' answers to its query):
     * a room added meanwhile would seem to belong elsewhere. */
    forget_moved_rooms(cs);
  }
  for (i = 0; i < nemptied; i++) {
    pomelo_cluster_channel *ch = pomelo_cluster_channel_get(c, emptied[i], strlen(emptied[i]));
    if (ch && pomelo_cluster_channel_count(ch) == 0) {
      pomelo_cluster_channel_destroy(ch);
    }
    free(emptied[i]);
  }
  nemptied = 0;
}

/* ---------------------------------------------------------------------------------------------
 * Start-up
 * ------------------------------------------------------------------------------------------- */

typedef struct options {
  const char *role, *nats, *id, *host, *port, *gate_port;
  uint32_t announce_ms, timeout_ms;
  /* connectors: the slow-consumer and rate policies (0: the library's defaults) */
  size_t max_output;
  int slow_disconnect;
  uint32_t rate_limit, rate_burst;
  int sndbuf; /* SO_SNDBUF of client sockets (0: the kernel's) */
} options;

static char ready_line[256]; /* printed once the server has joined the cluster */
static uint64_t ready_at;    /* when (0: not yet up) */

/* The bus came up: "ready" a little later, once the others answered the query. */
static void on_bus(pomelo_cluster *c, int up, void *ud) {
  (void)c;
  (void)ud;
  if (up && ready_line[0] && !ready_at) {
    ready_at = server_loop_now() + 300;
  }
  fprintf(stderr, "cluster: bus %s\n", up ? "up" : "down");
}

static void on_tick(server_loop *l, uint64_t now, void *ud) {
  (void)l;
  (void)ud;
  if (ready_at && now >= ready_at) {
    settled = 1;
  }
  if (ready_at && now >= ready_at && ready_line[0]) {
    printf("%s\n", ready_line);
    fflush(stdout); /* tests and tools/cluster.sh wait for this line */
    ready_line[0] = 0;
  }
}

static void on_pass(server_loop *l, uint64_t now, void *ud) {
  (void)l;
  (void)ud;
  if (bus) {
    membus_run(bus, now);
  }
}

#ifdef POMELO_CHAT_NATS
static void nats_ready(void *arg, uint64_t now) {
  (void)pomelo_nats_process(arg, now); /* level-triggered: called again while work is left */
}
#endif

/* Creates server `id` of `role` with its cluster; `port` NULL: no clients (a chat server). */
static int make_server(server_loop *loop, const options *o, int role, const char *id,
                       const char *port, char *bound, size_t bound_len) {
  static const char *const types[] = {"", "gate", "connector", "", "chat"};
  chat_server *cs = &servers[nservers];
  pomelo_server_settings st;
  pomelo_cluster_settings cst;
  pomelo_cluster_callbacks ccb = {0};
  char instance[40];
  int rc;
  pomelo_server_settings_default(&st); /* transport AUTO: TCP and WebSocket on one port */
  st.server_id = id;
  st.server_type = types[role];
  if (role == ROLE_CONNECTOR) {
    st.conn.heartbeat_interval_ms = 3000;
    st.conn.dict = dict;
    if (o->max_output) {
      st.max_output = o->max_output;
    }
    st.slow_policy = o->slow_disconnect ? POMELO_SLOW_DISCONNECT : POMELO_SLOW_DROP;
    st.rate_limit = o->rate_limit;
    st.rate_burst = o->rate_burst;
  }
  if (role != ROLE_CHAT) {
    st.conn.protos = protos; /* as chatofpomelo: the gate has protos, no dictionary */
  }
  cs->role = role;
  cs->id = id;
  rc = pomelo_server_new(&cs->srv, &st, NULL, NULL, NULL);
  if (rc) {
    fprintf(stderr, "pomelo-chat: %s: %s\n", id, pomelo_strerror(rc));
    return -1;
  }
  nservers++;
  if (port) {
    rc = server_loop_add(loop, cs->srv, o->host, port, NULL, bound, bound_len);
  } else {
    rc = server_loop_add(loop, cs->srv, NULL, NULL, NULL, NULL, 0);
  }
  if (rc) {
    fprintf(stderr, "pomelo-chat: %s cannot listen on %s:%s: %s\n", id, o->host, port,
            strerror(rc));
    return -1;
  }
  pomelo_cluster_settings_default(&cst);
  cst.client_host = o->host;
  cst.client_port = port ? (uint16_t)atoi(bound) : 0;
  cst.announce_ms = o->announce_ms;
  cst.timeout_ms = o->timeout_ms;
  snprintf(instance, sizeof instance, "%ld-%lld", (long)getpid(), (long long)time(NULL));
  cst.instance = instance;
  ccb.on_server = on_server;
  ccb.on_member_lost = on_member_lost;
  ccb.on_bus = on_bus;
  rc = pomelo_cluster_new(&cs->c, cs->srv, &cst, &ccb, NULL, cs);
  /* chat.* goes to the chat server of the session's room (chatofpomelo's chatRoute). */
  rc = rc ? rc : pomelo_cluster_set_router(cs->c, "chat", POMELO_ROUTE_HASH, "rid", NULL, NULL);
  if (rc == 0 && role == ROLE_GATE) {
    rc = pomelo_server_on(cs->srv, "gate.gateHandler.queryEntry", query_entry, cs);
  } else if (rc == 0 && role == ROLE_CONNECTOR) {
    rc = pomelo_server_on(cs->srv, "connector.entryHandler.enter", enter, cs);
  } else if (rc == 0) {
    rc = pomelo_server_on(cs->srv, "chat.chatHandler.send", send_chat, cs);
    rc = rc ? rc : pomelo_cluster_on(cs->c, "chat.chatRemote.add", remote_add, cs);
    rc = rc ? rc : pomelo_cluster_on(cs->c, "chat.chatRemote.kick", remote_kick, cs);
  }
  if (rc) {
    fprintf(stderr, "pomelo-chat: %s: %s\n", id, pomelo_strerror(rc));
    return -1;
  }
  if (!o->nats) {
    rc = membus_attach(bus, cs->c, server_loop_now());
    if (rc) {
      fprintf(stderr, "pomelo-chat: %s: %s\n", id, strerror(rc));
      return -1;
    }
    return 0;
  }
#ifdef POMELO_CHAT_NATS
  {
    pomelo_nats_settings ns;
    pomelo_nats_settings_default(&ns);
    ns.url = o->nats;
    ns.name = id;
    ns.reconnect_wait_ms = 500; /* back within half a second of a bus restart */
    rc = pomelo_nats_new(&cs->nats, &ns, NULL, NULL, NULL);
    rc = rc ? rc : pomelo_nats_attach(cs->nats, cs->c);
    if (rc) {
      fprintf(stderr, "pomelo-chat: %s: NATS %s: %s (%s)\n", id, o->nats, pomelo_strerror(rc),
              cs->nats ? pomelo_nats_last_error(cs->nats) : "");
      return -1;
    }
    rc = server_loop_watch(loop, pomelo_nats_fd(cs->nats), nats_ready, cs->nats);
    if (rc) {
      fprintf(stderr, "pomelo-chat: %s: %s\n", id, strerror(rc));
      return -1;
    }
  }
  return 0;
#else
  fprintf(stderr, "pomelo-chat: built without libpomelo-nats (libnats-dev): no --nats\n");
  return -1;
#endif
}

static void usage(void) {
  fprintf(stderr,
          "usage: pomelo-chat [--host H] [--gate-port P] [--port P]\n"
          "       pomelo-chat --role gate|connector|chat --nats URL --id ID [--host H] [--port P]\n"
          "                   [--announce-ms N] [--timeout-ms N]\n"
          "   connector options, both forms: [--max-output BYTES] [--slow-policy drop|close]\n"
          "                   [--rate-limit N] [--rate-burst N] [--sndbuf BYTES]\n");
}

static int parse(int argc, char **argv, options *o) {
  int i;
  memset(o, 0, sizeof *o);
  o->host = "127.0.0.1";
  o->announce_ms = 5000;
  o->timeout_ms = 5000;
  for (i = 1; i + 1 < argc; i += 2) {
    const char *k = argv[i], *v = argv[i + 1];
    if (strcmp(k, "--host") == 0) {
      o->host = v;
    } else if (strcmp(k, "--gate-port") == 0) {
      o->gate_port = v; /* 0: any free port (printed) */
    } else if (strcmp(k, "--port") == 0) {
      o->port = v;
    } else if (strcmp(k, "--role") == 0) {
      o->role = v;
    } else if (strcmp(k, "--nats") == 0) {
      o->nats = v;
    } else if (strcmp(k, "--id") == 0) {
      o->id = v;
    } else if (strcmp(k, "--announce-ms") == 0 && atoi(v) > 0) {
      o->announce_ms = (uint32_t)atoi(v);
    } else if (strcmp(k, "--timeout-ms") == 0 && atoi(v) > 0) {
      o->timeout_ms = (uint32_t)atoi(v);
    } else if (strcmp(k, "--max-output") == 0 && atol(v) > 0) {
      o->max_output = (size_t)atol(v);
    } else if (strcmp(k, "--slow-policy") == 0 &&
               (strcmp(v, "drop") == 0 || strcmp(v, "close") == 0)) {
      o->slow_disconnect = strcmp(v, "close") == 0;
    } else if (strcmp(k, "--rate-limit") == 0 && atoi(v) > 0) {
      o->rate_limit = (uint32_t)atoi(v);
    } else if (strcmp(k, "--rate-burst") == 0 && atoi(v) > 0) {
      o->rate_burst = (uint32_t)atoi(v);
    } else if (strcmp(k, "--sndbuf") == 0 && atoi(v) > 0) {
      o->sndbuf = atoi(v);
    } else {
      return -1;
    }
  }
  if (i != argc) {
    return -1;
  }
  if (o->role) { /* one role, over NATS */
    if (!o->nats || !o->id || o->gate_port ||
        (strcmp(o->role, "gate") && strcmp(o->role, "connector") && strcmp(o->role, "chat"))) {
      return -1;
    }
    if (!o->port) {
      o->port = strcmp(o->role, "gate") == 0 ? "3014" : "3050";
    }
  } else if (o->nats || o->id) {
    return -1;
  } else {
    o->gate_port = o->gate_port ? o->gate_port : "3014";
    o->port = o->port ? o->port : "3050";
  }
  return 0;
}

static int start(server_loop *loop, const options *o) {
  pomelo_pb_error perr;
  char gate_bound[16], conn_bound[16];
  int rc = pomelo_json_writer_new(&writer, NULL, 0);
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
  if (rc) {
    fprintf(stderr, "pomelo-chat: %s\n", pomelo_strerror(rc));
    return -1;
  }
  if (!o->role) { /* every role, one process, the in-process bus */
    if (membus_new(&bus) != 0 ||
        make_server(loop, o, ROLE_GATE, "gate-server-1", o->gate_port, gate_bound,
                    sizeof gate_bound) != 0 ||
        make_server(loop, o, ROLE_CONNECTOR, "connector-server-1", o->port, conn_bound,
                    sizeof conn_bound) != 0 ||
        make_server(loop, o, ROLE_CHAT, "chat-server-1", NULL, NULL, 0) != 0) {
      return -1;
    }
    membus_run(bus, server_loop_now()); /* they know each other before the first client */
    printf("gate on %s:%s, connector on %s:%s\n", o->host, gate_bound, o->host, conn_bound);
    fflush(stdout); /* tests and tools/demo.sh wait for this line */
    return 0;
  }
  if (strcmp(o->role, "chat") == 0) {
    snprintf(ready_line, sizeof ready_line, "ready %s", o->id);
    return make_server(loop, o, ROLE_CHAT, o->id, NULL, NULL, 0);
  }
  rc = make_server(loop, o, strcmp(o->role, "gate") == 0 ? ROLE_GATE : ROLE_CONNECTOR, o->id,
                   o->port, conn_bound, sizeof conn_bound);
  snprintf(ready_line, sizeof ready_line, "ready %s %s:%s", o->id, o->host, conn_bound);
  return rc;
}

int main(int argc, char **argv) {
  server_loop_callbacks loop_cb = {0};
  server_loop *loop = NULL;
  options o;
  size_t i;
  int sig = 0, status = 1;
  if (parse(argc, argv, &o) != 0) {
    usage();
    return 2;
  }
  loop_cb.on_session_done = on_session_done;
  loop_cb.on_tick = on_tick;
  loop_cb.tick_ms = 50;
  loop_cb.on_pass = on_pass;
  loop_cb.sndbuf = o.sndbuf;
  if (server_loop_new(&loop, &loop_cb, NULL) != 0) {
    perror("pomelo-chat: cannot start the loop");
    return 1;
  }
  if (start(loop, &o) == 0) {
    sig = server_loop_run(loop, "server shutting down", 5000);
    status = sig < 0 ? 1 : 0;
    if (sig < 0) {
      perror("pomelo-chat: epoll_wait");
    }
  }
  /* Each server says bye to the cluster (the NATS adapter writes it out), then goes. */
  for (i = 0; i < nservers; i++) {
    pomelo_cluster_stats cst;
    if (servers[i].role == ROLE_CONNECTOR) {
      pomelo_server_stats ss;
      pomelo_server_get_stats(servers[i].srv, &ss);
      fprintf(stderr,
              "pomelo-chat: %s: sessions %llu, pushes %llu, push drops %llu, slow disconnects "
              "%llu, rate limited %llu, kicks %llu, timeouts %llu, protocol errors %llu\n",
              servers[i].id, (unsigned long long)ss.connections_total,
              (unsigned long long)ss.pushes, (unsigned long long)ss.push_drops,
              (unsigned long long)ss.slow_disconnects, (unsigned long long)ss.rate_limited,
              (unsigned long long)ss.kicks, (unsigned long long)ss.timeouts,
              (unsigned long long)ss.protocol_errors);
    }
    if (servers[i].c) {
      pomelo_cluster_get_stats(servers[i].c, &cst);
      fprintf(stderr,
              "pomelo-chat: %s: forwards %llu, answers %llu, calls %llu, served %llu, "
              "timeouts %llu, failed fast %llu, too large %llu, limited %llu, late %llu, "
              "bad %llu\n",
              servers[i].id, (unsigned long long)cst.forwards,
              (unsigned long long)cst.forward_answers, (unsigned long long)cst.calls,
              (unsigned long long)cst.served, (unsigned long long)cst.timeouts,
              (unsigned long long)cst.failed_fast, (unsigned long long)cst.too_large,
              (unsigned long long)cst.limited, (unsigned long long)cst.late_answers,
              (unsigned long long)cst.bad_messages);
    }
#ifdef POMELO_CHAT_NATS
    if (servers[i].nats) {
      server_loop_unwatch(loop, pomelo_nats_fd(servers[i].nats));
    }
#endif
    pomelo_cluster_del(servers[i].c); /* its bye is queued on the bus (or written by NATS) */
    if (bus) {
      membus_detach(bus, servers[i].c); /* by address only: nothing is delivered to it now */
    }
#ifdef POMELO_CHAT_NATS
    pomelo_nats_del(servers[i].nats);
#endif
  }
  if (bus) {
    membus_run(bus, server_loop_now());
  }
  server_loop_del(loop); /* closes every socket; the servers go after it */
  for (i = 0; i < nservers; i++) {
    pomelo_server_del(servers[i].srv);
  }
  membus_del(bus);
  pomelo_json_writer_del(writer);
  pomelo_protos_del(protos);
  pomelo_dict_del(dict);
  for (i = 0; i < nemptied; i++) {
    free(emptied[i]);
  }
  free(emptied);
  if (status == 0) {
    fprintf(stderr, "pomelo-chat: stopped by signal %d\n", sig);
  }
  return status;
}
