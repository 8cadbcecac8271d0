/* libpomelo internal: the cluster (not installed).
 * SPDX-License-Identifier: MIT
 */
#ifndef POMELO_LIB_CLUSTER_INT_H
#define POMELO_LIB_CLUSTER_INT_H

#include <pomelo/cluster.h>

#include "core/core.h"
#include "core/map.h"

/* ---------------------------------------------------------------------------------------------
 * Envelopes (envelope.c): protobuf wire format with pitaya's field numbers.
 *   Request   {1 type, 2 Session session, 3 Msg msg, 4 frontendID, 5 metadata (skipped)}
 *   Session   {1 id, 2 uid, 3 data (JSON object of the settings)}
 *   Msg       {1 id, 2 route, 3 data, 4 reply (skipped), 5 type}
 *   Response  {1 data, 2 Error error}
 *   Error     {1 code (string), 2 msg, 3 metadata (skipped)}
 *   BindMsg   {1 uid, 2 fid}
 *   MultiPush {1 route, 2 data, 3 repeated uid, 4 repeated sid, 5 bound_only}   (ours)
 *   MultiKick {1 repeated uid, 2 repeated sid, 3 reason}                         (ours)
 * Decoded strings are views into the input. Unknown fields of any wire type are skipped.
 * ------------------------------------------------------------------------------------------- */

/* Request.type */
enum {
  PM_RQ_FORWARD = 0, /* a client's request or notify (pitaya's Sys) */
  PM_RQ_CALL = 1,    /* a remote call (pitaya's User) */
  PM_RQ_SESSION = 2  /* a session operation (ours): Msg.route names it */
};
/* Msg.type, pitaya's MsgType */
enum { PM_MT_REQUEST = 0, PM_MT_NOTIFY = 1, PM_MT_RESPONSE = 2, PM_MT_PUSH = 3 };

typedef struct pm_str {
  const char *p;
  size_t len;
} pm_str;

typedef struct pm_env_request {
  uint32_t type;
  int has_session;
  uint64_t sid;
  int has_uid;
  pm_str uid;
  pm_str settings; /* JSON object text, or empty */
  uint64_t msg_id;
  pm_str route;
  pm_str data;
  uint32_t msg_type;
  pm_str frontend;
} pm_env_request;

typedef struct pm_env_response {
  pm_str data;
  int has_error;
  pm_str code; /* pomelo_err_name of the error */
  pm_str msg;
} pm_env_response;

typedef struct pm_env_bind {
  pm_str uid, fid;
} pm_env_bind;

typedef struct pm_env_multi {
  pm_str route, data, reason;
  int bound_only;
  pm_str *uids;
  size_t nuids, cuids;
  uint64_t *sids;
  size_t nsids, csids;
} pm_env_multi;

/* Encoders: the exact size with dst NULL, else write that many bytes at dst. */
size_t pm_env_request_write(uint8_t *dst, const pm_env_request *r);
size_t pm_env_response_write(uint8_t *dst, const pm_env_response *r);
size_t pm_env_bind_write(uint8_t *dst, const pm_env_bind *b);
size_t pm_env_push_write(uint8_t *dst, const pm_env_multi *m);
size_t pm_env_kick_write(uint8_t *dst, const pm_env_multi *m);

/* Decoders: 0 or POMELO_ERR_CLUSTER_ENVELOPE (POMELO_ERR_NOMEM for the arrays of MultiPush and
 * MultiKick, which grow as elements arrive; free them with pm_env_multi_fini). */
int pm_env_request_read(const uint8_t *p, size_t len, pm_env_request *out);
int pm_env_response_read(const uint8_t *p, size_t len, pm_env_response *out);
int pm_env_bind_read(const uint8_t *p, size_t len, pm_env_bind *out);
int pm_env_push_read(const pomelo_allocator *a, const uint8_t *p, size_t len, pm_env_multi *out);
int pm_env_kick_read(const pomelo_allocator *a, const uint8_t *p, size_t len, pm_env_multi *out);
void pm_env_multi_fini(const pomelo_allocator *a, pm_env_multi *m);

/* ---------------------------------------------------------------------------------------------
 * Hooks the server calls (cluster.c)
 * ------------------------------------------------------------------------------------------- */

/* The next deadline of the cluster's timers, or UINT64_MAX. */
uint64_t pm_cluster_expiry(const pomelo_cluster *c);
/* Runs the timers due at `now`. */
void pm_cluster_handle_expiry(pomelo_cluster *c, uint64_t now);
/* A client's request or notify for another server type (from the server's forward path).
 * Returns 0 (answered or published) or a fatal error. */
int pm_cluster_forward(pomelo_cluster *c, pomelo_session *s, const pomelo_msg *m);
/* A local session was bound (pomelo_session_bind): announced to the other frontends. */
void pm_cluster_bound(pomelo_cluster *c, const pomelo_session *s);
/* A local session is being freed. */
void pm_cluster_session_gone(pomelo_cluster *c, uint64_t sid);
/* The server is being deleted before its cluster: the cluster forgets it. */
void pm_cluster_detach(pomelo_cluster *c);

/* cchannel.c */
/* Frees every cluster channel. */
void pm_cluster_channels_free(pomelo_cluster *c);
/* Removes every member of frontend `fid` from every channel (on_member_lost for each). */
void pm_cluster_channels_drop_frontend(pomelo_cluster *c, const char *fid);
/* The map of channels (name -> pomelo_cluster_channel) and the publishing of one MultiPush
 * (cluster.c), for cchannel.c. */
pm_strmap *pm_cluster_channel_map(pomelo_cluster *c);
const pomelo_allocator *pm_cluster_alloc(const pomelo_cluster *c);
int pm_cluster_push_group(pomelo_cluster *c, const char *fid, const pm_str *uids, size_t n,
                          const char *route, const char *body, size_t len);
void pm_cluster_member_lost(pomelo_cluster *c, pomelo_cluster_channel *ch, const char *uid,
                            size_t uid_len, const char *fid);

#endif /* POMELO_LIB_CLUSTER_INT_H */
