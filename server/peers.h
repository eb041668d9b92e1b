/* server/peers.h — the peer poller: every --peer-interval, a NodeInfo to each other node.
**
** For each --peers entry (HOST:PORT, or dns:NAME:PORT: every address behind NAME, resolved
** again each round with uv_getaddrinfo, never blocking the loop) the poller keeps one
** connection, sends a NodeInfo on it each round and hands the answer to rpc
** (td_rpc_peer_answer), which checks it and records it in the peer table that Hello's
** redirects, NodeInfo and Stats read. A probe still unanswered (or a connect still pending) at
** the next round counts as a failure and the connection is dropped and made again. A peer's
** reply is bounded (PEER_MAX_REPLY); a frame over it, a data section, or garbage drops the
** connection. It knows libuv and rpc's codec, not protobuf: this is the top layer's glue, as
** glue.c is for the listening side. Loop thread only.
*/
#ifndef TD_PEERS_H
#define TD_PEERS_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "rpc/rpc.h"

struct td_poller;

/* Starts polling the --peers list `peers` (checked by config) every interval_ms on loop,
** recording into rpc's peer table (set here: rpc->peers). Returns NULL when out of memory. */
struct td_poller *td_poller_start(uv_loop_t *loop, struct td_rpc_server *rpc, const char *peers,
                                  uint64_t interval_ms);

/* Stops polling and closes its connections; the poller frees itself once its handles and
** lookups are done (the loop then ends normally). NULL is a no-op. */
void td_poller_stop(struct td_poller *pl);

#endif
