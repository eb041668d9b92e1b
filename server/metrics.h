/* server/metrics.h — what the daemon's HTTP listener answers: /metrics (Prometheus text),
** /healthz and /readyz.
**
** net/http.c is the responder and knows nothing of what it serves; this is the handler main
** points it at. It reads rpc's counters and the session store, which net must not know, so it
** lives in the wiring layer beside main.c. Loop thread only.
*/
#ifndef TD_METRICS_H
#define TD_METRICS_H

#include <stdbool.h>

#include "rpc/rpc.h"
#include "session/session.h"

/* What the pages read (all borrowed). */
struct td_metrics {
    const struct td_rpc_server *rpc; /* counters, start time and clock (rpc->now_ms) */
    const struct td_store *store;    /* sessions, tensors, bytes, the --max-bytes cap */
    const bool *stopping;            /* true once a shutdown began: /readyz says 503 */
};

/* A td_http_handler (net/http.h); `user` is a struct td_metrics. */
int td_metrics_http(void *user, const char *path, char **body, const char **content_type);

#endif
