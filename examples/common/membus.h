/* An in-process bus for pomelo_cluster objects: several servers of a cluster in one process
 * (pomelo-chat without --nats, and the cluster's tests), with NATS' semantics where the
 * cluster relies on them: a subject ending in ".*" matches one more token, every subscriber of
 * a subject gets a copy, a request (a message with a reply subject) that nobody is subscribed
 * to comes back at once to its reply subject flagged POMELO_CLUSTER_NO_RESPONDERS, and delivery
 * is at most once, in publish order.
 *
 * Publishing only queues a copy: nothing is delivered inside a publish (as over a real bus,
 * a handler never runs inside the call that sent to it). membus_run delivers what is queued,
 * and what that delivery publishes, until the queue is empty. Single-threaded; only the public
 * API of libpomelo is used.
 * SPDX-License-Identifier: MIT
 */
#ifndef POMELO_EXAMPLES_MEMBUS_H
#define POMELO_EXAMPLES_MEMBUS_H

#include <stddef.h>
#include <stdint.h>

#include <pomelo/cluster.h>

typedef struct membus membus;

/** Creates an empty bus, up. Returns 0 or ENOMEM. */
int membus_new(membus **out);

/** Frees the bus and what is still queued (the clusters stay the caller's: detach or delete
 * them first, or after: the bus keeps no pointer into them once freed). Accepts NULL. */
void membus_del(membus *b);

/** Connects a cluster: its publish function becomes this bus, it is subscribed to every
 * subject it lists, and told the bus is up at `now`. Returns 0 or ENOMEM. */
int membus_attach(membus *b, pomelo_cluster *c, uint64_t now);

/** Disconnects a cluster: its subscriptions go (requests to it now find no responders) and
 * what is queued for it is dropped. Call it before pomelo_cluster_del when the cluster should
 * still say bye, after it otherwise. */
void membus_detach(membus *b, pomelo_cluster *c);

/** Delivers everything queued at `now` (and what that publishes), then returns the number of
 * messages delivered. */
size_t membus_run(membus *b, uint64_t now);

/** Takes the bus down (up 0: every attached cluster is told, publishes fail with
 * POMELO_ERR_BUS_DOWN, the queue is dropped) or back up (1). */
void membus_set_up(membus *b, int up, uint64_t now);

/** Messages published (counted at publish) on subjects that end with `suffix` (NULL: all); an
 * inbox subject counts without its last token ("P/inbox/<id>/<run>"). */
size_t membus_published(const membus *b, const char *suffix);

/** The largest message the bus takes (0: no limit, the default); larger publishes fail with
 * POMELO_ERR_PAYLOAD. Applies to the clusters attached after the call. */
void membus_set_max_payload(membus *b, size_t max);

/** 1 when nothing is queued. */
int membus_idle(const membus *b);

#endif /* POMELO_EXAMPLES_MEMBUS_H */
