/* server/glue.h — net ↔ rpc: each connection of net is a peer of rpc.
**
** net passes frames up through callbacks and never includes an rpc header; rpc answers through
** a peer's reply callback and never includes a net header. This is the one place that joins
** them: a connection's frames go to its peer, the peer's replies go back to the connection, and
** the flow control between the two (pausing a connection while its peer has too much queued,
** data sections charged to the session before they are read) lives here. Loop thread only.
*/
#ifndef TD_GLUE_H
#define TD_GLUE_H

#include <stdint.h>

#include "net/net.h"
#include "rpc/rpc.h"

struct td_glue {
    struct td_rpc_server *rpc; /* borrowed */
    struct td_net *net;        /* borrowed: its count of open connections */
    int64_t max_connections;   /* --max-connections: more are refused with a reason */
};

/* Fills *cb with the callbacks that join net's connections to g's rpc peers (cb->user = g). */
void td_glue_callbacks(struct td_glue *g, struct td_net_callbacks *cb);

#endif
