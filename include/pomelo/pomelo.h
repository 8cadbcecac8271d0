/* libpomelo: the umbrella header, including every layer.
 * SPDX-License-Identifier: MIT
 */
#ifndef POMELO_POMELO_H
#define POMELO_POMELO_H

#include <pomelo/common.h>
#include <pomelo/codec.h>
#include <pomelo/json.h>
#include <pomelo/dict.h>
#include <pomelo/protobuf.h>
#include <pomelo/transport.h>
#include <pomelo/conn.h>
#include <pomelo/server.h>
#include <pomelo/cluster.h>
#include <pomelo/client.h>

#endif /* POMELO_POMELO_H */
