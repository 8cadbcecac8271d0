/* libpomelo: the umbrella header, including every layer.
 * SPDX-License-Identifier: MIT
 */
#ifndef POMELO_POMELO_H
#define POMELO_POMELO_H

#include <pomelo/common.h>
#include <pomelo/codec.h>
#include <pomelo/json.h>

#endif /* POMELO_POMELO_H */
