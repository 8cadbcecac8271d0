/* libpomelo: transports under the packages: raw TCP and WebSocket on one port (spec 1.2-1.4).
 *
 * The transport layer is driven by the connection (conn.h): a connection is created with a
 * transport, or with POMELO_TRANSPORT_AUTO to let the first bytes decide, as the real server's
 * hybrid connector does.
 * SPDX-License-Identifier: MIT
 */
#ifndef POMELO_TRANSPORT_H
#define POMELO_TRANSPORT_H

#include <pomelo/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The byte framing under the packages. */
typedef enum pomelo_transport {
  /** Server role: decide from the first bytes (an HTTP request means WebSocket, anything else
   * raw TCP), as the real server's hybrid connector does. Client role: same as TCP. */
  POMELO_TRANSPORT_AUTO = 0,
  POMELO_TRANSPORT_TCP = 1, /**< packages straight on the byte stream */
  POMELO_TRANSPORT_WS = 2   /**< packages inside WebSocket binary messages */
} pomelo_transport;

#ifdef __cplusplus
}
#endif

#endif /* POMELO_TRANSPORT_H */
