/* The handshake of the Pomelo dialect (pomelo 2.x, pinus), both roles (spec 4): the request the
 * client sends, how the server checks it and the answer it sends back (in the real server's key
 * order, with the dictionary and protos parts compared by version), and how the client reads that
 * answer. The state machine (conn.c) reaches it only through pm_dialect_pomelo, so another
 * dialect (nano, pitaya) is another table of the same functions.
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>

#include "conn/conn_int.h"

/* The empty proto set a server without protos sends to a client that cached another server's:
 * version base64(md5("{}" "{}")), as the real server would compute it. */
#define PM_EMPTY_PROTOS_VERSION "xT9OvpsqULwrUv2IpdUD4Q=="
#define PM_EMPTY_PROTOS_JSON                                                                       \
  "{\"server\":{},\"client\":{},\"version\":\"" PM_EMPTY_PROTOS_VERSION "\"}"

/* ---------------------------------------------------------------------------------------------
 * Server role (spec 4.3)
 * ------------------------------------------------------------------------------------------- */

/* {"code":N}: the real server's refusal (500 for a bad request, 501 for checkClient). */
static int server_refusal(pomelo_conn *c, int code) {
  char body[32];
  int n = snprintf(body, sizeof body, "{\"code\":%d}", code);
  return pm_conn_queue_pkg(c, POMELO_PKG_HANDSHAKE, (const uint8_t *)body, (size_t)n);
}

typedef struct user_arg {
  const char *json;
  size_t len;
} user_arg;

/* The success answer, keys in the real server's order:
 * code, sys{heartbeat, dict, routeToCode, codeToRoute, dictVersion, useDict, protos, useProto},
 * user. */
static int build_answer(pomelo_conn *c, pomelo_json_writer *w, const void *arg) {
  const pomelo_conn_settings *s = &c->sh->set;
  const user_arg *user = arg;
  int rc = pomelo_json_write_begin_object(w);
  rc = rc ? rc : pomelo_json_write_key(w, "code", 4);
  rc = rc ? rc : pomelo_json_write_int64(w, 200);
  rc = rc ? rc : pomelo_json_write_key(w, "sys", 3);
  rc = rc ? rc : pomelo_json_write_begin_object(w);
  if (!rc && c->hb_interval) {
    rc = pomelo_json_write_key(w, "heartbeat", 9);
    if (!rc && c->hb_interval % 1000 == 0) {
      rc = pomelo_json_write_int64(w, c->hb_interval / 1000);
    } else if (!rc) {
      rc = pomelo_json_write_double(w, c->hb_interval / 1000.0);
    }
  }
  if (!rc && s->dict) {
    if (c->hs_need_dict) {
      const char *v = pomelo_dict_version(s->dict);
      rc = pm_json_key_raw(w, "dict", pomelo_dict_json(s->dict, NULL));
      rc = rc ? rc : pm_json_key_raw(w, "routeToCode", pomelo_dict_json(s->dict, NULL));
      rc = rc ? rc
              : pm_json_key_raw(w, "codeToRoute", pomelo_dict_code_to_route_json(s->dict, NULL));
      rc = rc ? rc : pm_json_key_str(w, "dictVersion", v, strlen(v));
    }
    rc = rc ? rc : pomelo_json_write_key(w, "useDict", 7);
    rc = rc ? rc : pomelo_json_write_bool(w, 1);
  }
  if (!rc && (s->protos || c->hs_need_protos)) {
    if (c->hs_need_protos) {
      rc = pm_json_key_raw(w, "protos",
                           s->protos ? pomelo_protos_json(s->protos, NULL) : PM_EMPTY_PROTOS_JSON);
    }
    rc = rc ? rc : pomelo_json_write_key(w, "useProto", 8);
    rc = rc ? rc : pomelo_json_write_bool(w, 1);
  }
  rc = rc ? rc : pomelo_json_write_end_object(w);
  if (!rc && user->json) {
    rc = pomelo_json_write_key(w, "user", 4);
    rc = rc ? rc : pomelo_json_write_raw(w, user->json, user->len);
  }
  return rc ? rc : pomelo_json_write_end_object(w);
}

static int server_answer(pomelo_conn *c, const char *user, size_t user_len) {
  user_arg u;
  u.json = user;
  u.len = user_len;
  return pm_conn_queue_json(c, POMELO_PKG_HANDSHAKE, build_answer, &u);
}

/* Whether a client's cached version (absent, a string, or anything else) equals ours: the real
 * server compares with !==, so only an identical string matches. */
static int same_version(const pomelo_json_value *v, const char *ours) {
  size_t len;
  const char *s;
  if (!v || !ours || pomelo_json_typeof(v) != POMELO_JSON_STRING) {
    return 0;
  }
  s = pomelo_json_string(v, &len);
  return len == strlen(ours) && memcmp(s, ours, len) == 0;
}

/* Whether a client announced a cached version at all: JavaScript-truthy (the JS client sends 0
 * for none). */
static int announced(const pomelo_json_value *v) {
  switch (pomelo_json_typeof(v)) {
  case POMELO_JSON_STRING: {
    size_t len = 0;
    pomelo_json_string(v, &len);
    return len > 0;
  }
  case POMELO_JSON_NUMBER:
    return pomelo_json_number(v) != 0;
  case POMELO_JSON_BOOL:
    return pomelo_json_bool(v);
  case POMELO_JSON_NULL:
    return 0;
  default:
    return v != NULL;
  }
}

static int server_handshake(pomelo_conn *c, const uint8_t *body, size_t len) {
  const pm_conn_shared *sh = c->sh;
  pomelo_json_doc *doc = NULL;
  const pomelo_json_value *root, *sys, *v;
  const char *type = "", *version = "";
  size_t type_len = 0, version_len = 0;
  int rc;

  /* Bad JSON, or no sys object: 500 (spec 4.3 steps 1-2). */
  rc = pomelo_json_parse(&doc, &c->sh->alloc, (const char *)body, len, NULL, NULL);
  if (rc == POMELO_ERR_NOMEM) {
    return rc;
  }
  root = rc == 0 ? pomelo_json_root(doc) : NULL;
  sys = root ? pomelo_json_get(root, "sys") : NULL;
  if (!sys || pomelo_json_typeof(sys) != POMELO_JSON_OBJECT) {
    pomelo_json_doc_del(doc);
    return pm_conn_server_refuse(c, 500);
  }
  v = pomelo_json_get(sys, "type");
  if (v && pomelo_json_typeof(v) == POMELO_JSON_STRING) {
    type = pomelo_json_string(v, &type_len);
  }
  v = pomelo_json_get(sys, "version");
  if (v && pomelo_json_typeof(v) == POMELO_JSON_STRING) {
    version = pomelo_json_string(v, &version_len);
  }
  if (sh->cb.check_client &&
      !sh->cb.check_client(c, type, type_len, version, version_len, c->user_data)) {
    pomelo_json_doc_del(doc);
    return pm_conn_server_refuse(c, 501);
  }
  c->hs_need_dict = sh->set.dict && !same_version(pomelo_json_get(sys, "dictVersion"),
                                                  pomelo_dict_version(sh->set.dict));
  v = pomelo_json_get(sys, "protoVersion");
  if (sh->set.protos) {
    c->hs_need_protos = !same_version(v, pomelo_protos_version(sh->set.protos));
  } else {
    /* No protos: only a client holding another server's schemas needs to hear so. */
    c->hs_need_protos = announced(v) && !same_version(v, PM_EMPTY_PROTOS_VERSION);
  }
  c->hs_pending = 1;
  if (sh->cb.on_handshake) {
    sh->cb.on_handshake(c, root, c->user_data); /* answers through pomelo_conn_handshake_reply */
    rc = 0;
  } else {
    rc = pm_conn_server_accept(c, NULL, 0);
  }
  pomelo_json_doc_del(doc);
  return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Client role (spec 4.2, 4.5)
 * ------------------------------------------------------------------------------------------- */

static int build_request(pomelo_conn *c, pomelo_json_writer *w, const void *arg) {
  const pomelo_conn_settings *s = &c->sh->set;
  int rc = pomelo_json_write_begin_object(w);
  (void)arg;
  rc = rc ? rc : pomelo_json_write_key(w, "sys", 3);
  rc = rc ? rc : pomelo_json_write_begin_object(w);
  rc = rc ? rc : pm_json_key_str(w, "type", s->client_type, strlen(s->client_type));
  rc = rc ? rc : pm_json_key_str(w, "version", s->client_version, strlen(s->client_version));
  if (!rc && s->cached_proto_version) {
    rc = pm_json_key_str(w, "protoVersion", s->cached_proto_version,
                         strlen(s->cached_proto_version));
  }
  if (!rc && s->cached_dict_version) {
    rc = pm_json_key_str(w, "dictVersion", s->cached_dict_version, strlen(s->cached_dict_version));
  }
  rc = rc ? rc : pomelo_json_write_end_object(w);
  if (!rc && s->user_json) {
    rc = pm_json_key_raw(w, "user", s->user_json);
  }
  return rc ? rc : pomelo_json_write_end_object(w);
}

static int client_request(pomelo_conn *c) {
  return pm_conn_queue_json(c, POMELO_PKG_HANDSHAKE, build_request, NULL);
}

static int client_response(pomelo_conn *c, const uint8_t *body, size_t len, uint64_t now) {
  pomelo_json_doc *doc = NULL;
  const pomelo_json_value *root = NULL, *v;
  int64_t code = -1;
  int rc = pomelo_json_parse(&doc, &c->sh->alloc, (const char *)body, len, NULL, NULL);
  if (rc == POMELO_ERR_NOMEM) {
    return rc;
  }
  if (rc == 0) {
    root = pomelo_json_root(doc);
    v = pomelo_json_get(root, "code");
    if (!v || pomelo_json_int64(v, &code) != 0 || code < INT32_MIN || code > INT32_MAX) {
      code = -1;
    }
  }
  rc = 0;
  if (code == 200) {
    const pomelo_json_value *sys = pomelo_json_get(root, "sys");
    uint32_t hb_ms = 0;
    double hb = 0;
    v = sys ? pomelo_json_get(sys, "heartbeat") : NULL;
    if (v && pomelo_json_typeof(v) == POMELO_JSON_NUMBER) {
      hb = pomelo_json_number(v);
    }
    /* A positive number of seconds enables heartbeats (libpomelo2 requires a number > 0). */
    if (hb > 0 && hb * 1000.0 < 86400000.0) {
      hb_ms = (uint32_t)(hb * 1000.0 + 0.5);
      hb_ms = hb_ms ? hb_ms : 1;
    }
    rc = pm_conn_client_accepted(c, hb_ms, root, now);
  } else {
    pm_conn_client_refused(c, (int)code, root);
  }
  pomelo_json_doc_del(doc);
  return rc;
}

const pm_dialect pm_dialect_pomelo = {
    "pomelo",          server_handshake, server_answer,     server_refusal,
    client_request,    client_response,  pm_conn_heartbeat, /* server_working: the JS client only
                                                               heartbeats in reply to ours */
    pm_conn_heartbeat, /* server_heartbeat_in: echoed at once (pomelo >= 1.1) */
};
