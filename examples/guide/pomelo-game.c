/* pomelo-game: the server docs/getting-started.md builds, step by step.
 *   pomelo-game [--host H] [--port P]     (default 127.0.0.1:3010; TCP and WebSocket)
 * Routes:
 *   connector.entryHandler.login {name}   request: binds the session to uid `name`, joins the
 *                                          channel "world", answers {"code":200,"players":N};
 *                                          the others get onJoin {"name"}
 *   connector.playerHandler.move {x, y}   notify: everyone in "world" gets onMove
 *                                          {"name","x","y"}
 * Every second the world gets onTick {"tick":N}. A player who leaves (closes, times out) is
 * announced with onLeave {"name"}. SIGINT/SIGTERM: KICK "server shutting down", then exit.
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pomelo/pomelo.h>

#include "../common/server_loop.h"

/* This game's own error codes: positive, so they never clash with the library's. */
enum { GAME_ERR_BAD_REQUEST = 1, GAME_ERR_NAME_TAKEN = 2, GAME_ERR_NOT_LOGGED_IN = 3 };

typedef struct game {
  pomelo_server *srv;
  pomelo_channel *world;
  pomelo_json_writer *w; /* builds every body, reused */
  uint64_t ticks;
} game;

/* Pushes what the writer holds to the whole world. */
static void push_world(game *g, const char *route) {
  size_t len;
  const char *body = pomelo_json_writer_data(g->w, &len);
  if (pomelo_channel_push(g->world, route, body, len) < 0) {
    fprintf(stderr, "game: %s not sent: out of memory\n", route);
  }
}

/* {"name":...} into the writer. */
static int write_name(game *g, const char *name, size_t len) {
  int rc;
  pomelo_json_writer_reset(g->w);
  rc = pomelo_json_write_begin_object(g->w);
  rc = rc ? rc : pomelo_json_write_key(g->w, "name", 4);
  rc = rc ? rc : pomelo_json_write_string(g->w, name, len);
  return rc ? rc : pomelo_json_write_end_object(g->w);
}

/* connector.entryHandler.login {name} */
static void login(pomelo_request *req, void *ud) {
  game *g = ud;
  pomelo_session *s = pomelo_request_session(req);
  size_t len;
  const char *name = pomelo_json_string(pomelo_json_get(pomelo_request_json(req), "name"), &len);
  char body[64];
  int rc;
  if (!s || !name || len == 0) {
    (void)pomelo_request_error(req, GAME_ERR_BAD_REQUEST, NULL, 0); /* {"code":500} */
    return;
  }
  rc = pomelo_session_bind(s, name, len); /* the server's policy: one session per uid */
  if (rc == POMELO_ERR_EXISTS) {
    (void)pomelo_request_error(req, GAME_ERR_NAME_TAKEN, "{\"code\":409}", 12);
    return;
  }
  if (rc == 0 && write_name(g, name, len) == 0) {
    push_world(g, "onJoin"); /* the others: the newcomer is not in the channel yet */
  }
  rc = rc ? rc : pomelo_channel_add(g->world, name, len, pomelo_session_id(s));
  if (rc) {
    (void)pomelo_session_unbind(s);
    (void)pomelo_request_error(req, rc, NULL, 0); /* out of memory: a library code */
    return;
  }
  snprintf(body, sizeof body, "{\"code\":200,\"players\":%zu}", pomelo_channel_count(g->world));
  (void)pomelo_request_respond(req, body, strlen(body));
}

/* connector.playerHandler.move {x, y}: a notify, so the handle ends with this call. */
static void move(pomelo_request *req, void *ud) {
  game *g = ud;
  const pomelo_json_value *b = pomelo_request_json(req);
  const pomelo_session *s = pomelo_request_session(req);
  size_t len;
  const char *name = s ? pomelo_session_uid(s, &len) : NULL;
  const pomelo_json_value *x = pomelo_json_get(b, "x"), *y = pomelo_json_get(b, "y");
  int rc;
  if (!name || pomelo_json_typeof(x) != POMELO_JSON_NUMBER ||
      pomelo_json_typeof(y) != POMELO_JSON_NUMBER) {
    return; /* not logged in, or a bad body: a notify has nobody to answer */
  }
  pomelo_json_writer_reset(g->w); /* {"name":..,"x":..,"y":..} */
  rc = pomelo_json_write_begin_object(g->w);
  rc = rc ? rc : pomelo_json_write_key(g->w, "name", 4);
  rc = rc ? rc : pomelo_json_write_string(g->w, name, len);
  rc = rc ? rc : pomelo_json_write_key(g->w, "x", 1);
  rc = rc ? rc : pomelo_json_write_value(g->w, x);
  rc = rc ? rc : pomelo_json_write_key(g->w, "y", 1);
  rc = rc ? rc : pomelo_json_write_value(g->w, y);
  rc = rc ? rc : pomelo_json_write_end_object(g->w);
  if (rc == 0) {
    push_world(g, "onMove");
  }
}

/* Every second: onTick to the world. */
static void on_tick(server_loop *l, uint64_t now, void *ud) {
  game *g = ud;
  char body[48];
  (void)l;
  (void)now;
  snprintf(body, sizeof body, "{\"tick\":%llu}", (unsigned long long)++g->ticks);
  if (pomelo_channel_push(g->world, "onTick", body, strlen(body)) < 0) {
    fprintf(stderr, "game: onTick not sent: out of memory\n");
  }
}

/* A session is finished: the others hear of it. Its uid and channel membership are still
 * there; release (by the loop, next) removes both. */
static void on_done(server_loop *l, pomelo_server *srv, pomelo_session *s, void *ud) {
  game *g = ud;
  size_t len;
  const char *name = pomelo_session_uid(s, &len);
  (void)l;
  (void)srv;
  if (name && pomelo_channel_leave(g->world, name, len, pomelo_session_id(s)) == 0 &&
      write_name(g, name, len) == 0) {
    push_world(g, "onLeave");
  }
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *port = "3010";
  pomelo_server_settings st;
  server_loop_callbacks lcb = {.on_session_done = on_done, .on_tick = on_tick, .tick_ms = 1000};
  server_loop *l = NULL;
  game g;
  char bound[16];
  int i, rc, sig;
  for (i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--host") == 0) {
      host = argv[i + 1];
    } else if (strcmp(argv[i], "--port") == 0) {
      port = argv[i + 1];
    } else {
      break;
    }
  }
  if (i != argc) {
    fprintf(stderr, "usage: pomelo-game [--host H] [--port P]\n");
    return 2;
  }
  memset(&g, 0, sizeof g);
  pomelo_server_settings_default(&st);
  st.conn.heartbeat_interval_ms = 3000; /* clients heartbeat; silent ones go after 6 s */
  st.uid_policy = POMELO_UID_REJECT;    /* a name is taken while its player is on */
  rc = pomelo_json_writer_new(&g.w, NULL, 0);
  rc = rc ? rc : pomelo_server_new(&g.srv, &st, NULL, NULL, &g);
  rc = rc ? rc : pomelo_channel_new(g.srv, "world", 5, &g.world);
  rc = rc ? rc : pomelo_server_on(g.srv, "connector.entryHandler.login", login, &g);
  rc = rc ? rc : pomelo_server_on(g.srv, "connector.playerHandler.move", move, &g);
  if (rc) {
    fprintf(stderr, "pomelo-game: %s\n", pomelo_strerror(rc));
    return 1;
  }
  rc = server_loop_new(&l, &lcb, &g);
  rc = rc ? rc : server_loop_add(l, g.srv, host, port, NULL, bound, sizeof bound);
  if (rc) {
    fprintf(stderr, "pomelo-game: cannot listen on %s:%s: %s\n", host, port, strerror(rc));
    return 1;
  }
  printf("listening on %s:%s\n", host, bound);
  fflush(stdout);
  sig = server_loop_run(l, "server shutting down", 5000);
  server_loop_del(l);
  pomelo_server_del(g.srv); /* its channel and sessions too */
  pomelo_json_writer_del(g.w);
  fprintf(stderr, "pomelo-game: stopped by signal %d\n", sig);
  return sig < 0 ? 1 : 0;
}
