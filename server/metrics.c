/* server/metrics.c — /metrics (Prometheus text format 0.0.4), /healthz and /readyz.
**
** The text is built in a td_strbuf (base/strbuf.h) from rpc's counters (requests and errors by
** kind and by op, with latency histograms), the allocator and the store. It sits here, in the
** wiring layer beside main.c, rather than next to the responder in net/http.c, because net
** knows bytes, not sessions: the responder calls td_metrics_http through its handler pointer.
** A page that cannot be built (out of memory) is a 503 with no body.
*/
#include "metrics.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <string.h>

#include "base/alloc.h"
#include "base/strbuf.h"

/* One family's samples for a kind or an op: part 0 requests, 1 errors, 2 the latency histogram
** (seconds). A family's samples must be contiguous, so callers loop over parts outermost. */
static void metric_counter(struct td_strbuf *t, int part, const char *prefix, const char *label,
                           const char *name, const struct td_rpc_counter *c)
{
    if (part == 0) {
        td_strbuf_printf(t, "%s_requests_total{%s=\"%s\"} %" PRIu64 "\n", prefix, label, name,
                         c->count);
        return;
    }
    if (part == 1) {
        td_strbuf_printf(t, "%s_errors_total{%s=\"%s\"} %" PRIu64 "\n", prefix, label, name,
                         c->errors);
        return;
    }
    uint64_t cum = 0;
    for (int b = 0; b < TD_RPC_LAT_BUCKETS; b++) {
        cum += c->lat[b];
        if (b < TD_RPC_LAT_BUCKETS - 1) {
            td_strbuf_printf(t, "%s_duration_seconds_bucket{%s=\"%s\",le=\"%g\"} %" PRIu64 "\n",
                             prefix, label, name, (double)td_rpc_lat_bounds_us[b] / 1e6, cum);
        } else {
            td_strbuf_printf(t, "%s_duration_seconds_bucket{%s=\"%s\",le=\"+Inf\"} %" PRIu64 "\n",
                             prefix, label, name, cum);
        }
    }
    td_strbuf_printf(t, "%s_duration_seconds_sum{%s=\"%s\"} %.6f\n", prefix, label, name,
                     (double)c->sum_us / 1e6);
    td_strbuf_printf(t, "%s_duration_seconds_count{%s=\"%s\"} %" PRIu64 "\n", prefix, label, name,
                     c->count);
}

static const char *const family_help[3][2] = {
    {"requests_total", "counter"},
    {"errors_total", "counter"},
    {"duration_seconds", "histogram"},
};

static void metrics_text(struct td_strbuf *t, const struct td_metrics *m)
{
    const struct td_rpc_server *rpc = m->rpc;
    const struct td_rpc_stats *st = &rpc->stats;
    td_strbuf_printf(t,
                     "# HELP tensord_info The daemon's version and the BLAS behind matmul.\n"
                     "# TYPE tensord_info gauge\ntensord_info{version=\"%s\",blas=\"%s\"} 1\n",
                     TD_VERSION, td_blas_describe());
    td_strbuf_printf(t,
                     "# HELP tensord_uptime_seconds Time since start.\n"
                     "# TYPE tensord_uptime_seconds gauge\ntensord_uptime_seconds %.3f\n",
                     (double)(rpc->now_ms() - rpc->started_ms) / 1e3);
    td_strbuf_printf(t,
                     "# HELP tensord_allocated_bytes Memory held for tensors, frames being "
                     "received and replies in flight.\n# TYPE tensord_allocated_bytes gauge\n"
                     "tensord_allocated_bytes %" PRId64 "\n",
                     td_alloc_live_bytes());
    td_strbuf_printf(t,
                     "# HELP tensord_buffer_cache_bytes Freed large buffers kept for reuse.\n"
                     "# TYPE tensord_buffer_cache_bytes gauge\n"
                     "tensord_buffer_cache_bytes %zu\n",
                     td_alloc_cached_bytes());
    td_strbuf_printf(t, "# HELP tensord_loop_busy_seconds How long each event-loop turn held the "
                        "loop (its wall time less its wait for I/O, at most its CPU time).\n"
                        "# TYPE tensord_loop_busy_seconds histogram\n");
    for (int b = 0; b < TD_RPC_LOOP_BUCKETS; b++) {
        td_strbuf_printf(t, "tensord_loop_busy_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                         (double)td_rpc_loop_slow_ms[b] / 1e3, st->loop_turns - st->loop_slow[b]);
    }
    td_strbuf_printf(t,
                     "tensord_loop_busy_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n"
                     "tensord_loop_busy_seconds_sum %.6f\ntensord_loop_busy_seconds_count %" PRIu64
                     "\n",
                     st->loop_turns, (double)st->loop_busy_sum_us / 1e6, st->loop_turns);
    td_strbuf_printf(t,
                     "# HELP tensord_connections Open client connections.\n"
                     "# TYPE tensord_connections gauge\ntensord_connections %" PRIu64 "\n",
                     st->connections);
    td_strbuf_printf(t,
                     "# HELP tensord_connections_total Client connections accepted.\n"
                     "# TYPE tensord_connections_total counter\n"
                     "tensord_connections_total %" PRIu64 "\n",
                     st->connections_total);
    td_strbuf_printf(t,
                     "# HELP tensord_auth_failures_total Hellos refused for a bad auth token."
                     "\n# TYPE tensord_auth_failures_total counter\n"
                     "tensord_auth_failures_total %" PRIu64 "\n",
                     st->auth_failures);
    /* Scale-out. Label values are checked strings (node ids, host:port): nothing to escape. */
    td_strbuf_printf(t,
                     "# HELP tensord_node_info This node's id and the address it advertises.\n"
                     "# TYPE tensord_node_info gauge\ntensord_node_info{node=\"%s\","
                     "advertise=\"%s\"} 1\n",
                     rpc->node_id != NULL ? rpc->node_id : "",
                     rpc->advertise != NULL ? rpc->advertise : "");
    static const char *const hello_what[4][2] = {
        {"moved", "Hellos answered MOVED: the session is another node's."},
        {"refused_full", "New-session Hellos answered NODE_FULL."},
        {"redirected_full", "NODE_FULL answers that named a peer with room."},
        {"unknown_node", "Hellos answered UNKNOWN_NODE: a malformed token or an unknown owner."},
    };
    const uint64_t hello_n[4] = {st->moved, st->refused_full, st->redirected_full,
                                 st->unknown_node};
    for (int i = 0; i < 4; i++) {
        td_strbuf_printf(t,
                         "# HELP tensord_hello_%s_total %s\n# TYPE tensord_hello_%s_total "
                         "counter\ntensord_hello_%s_total %" PRIu64 "\n",
                         hello_what[i][0], hello_what[i][1], hello_what[i][0], hello_what[i][0],
                         hello_n[i]);
    }
    td_strbuf_printf(t, "# HELP tensord_peer_up Whether a peer answered its last NodeInfo.\n"
                        "# TYPE tensord_peer_up gauge\n");
    for (int i = 0; rpc->peers != NULL && i < TD_PEERS_MAX; i++) {
        const struct td_peer_state *ps = &rpc->peers->p[i];
        if (ps->in_use && !ps->self) {
            td_strbuf_printf(t, "tensord_peer_up{peer=\"%s\",peer_node=\"%s\"} %d\n",
                             ps->address, ps->node_id, ps->reachable ? 1 : 0);
        }
    }
    td_strbuf_printf(t,
                     "# HELP tensord_sessions Live sessions.\n# TYPE tensord_sessions gauge\n"
                     "tensord_sessions %zu\n",
                     td_store_count(m->store));
    td_strbuf_printf(t,
                     "# HELP tensord_tensors Handle table entries over all sessions.\n"
                     "# TYPE tensord_tensors gauge\ntensord_tensors %zu\n",
                     td_store_tensor_count(m->store));
    td_strbuf_printf(t,
                     "# HELP tensord_bytes Tensor bytes charged to all sessions.\n"
                     "# TYPE tensord_bytes gauge\ntensord_bytes %" PRId64 "\n",
                     (int64_t)atomic_load(&m->store->global.used));
    td_strbuf_printf(t,
                     "# HELP tensord_max_bytes The global memory cap (--max-bytes).\n"
                     "# TYPE tensord_max_bytes gauge\ntensord_max_bytes %" PRId64 "\n",
                     m->store->cfg.max_bytes);
    static const char *const what[3] = {"Requests", "Error replies",
                                        "Seconds from arrival to reply"};
    for (int part = 0; part < 3; part++) {
        td_strbuf_printf(t,
                         "# HELP tensord_request_%s %s, by request kind.\n"
                         "# TYPE tensord_request_%s %s\n",
                         family_help[part][0], what[part], family_help[part][0],
                         family_help[part][1]);
        for (int k = 0; k < TD_RPC_KINDS; k++) {
            const char *name = td_rpc_kind_name(k);
            if (name != NULL && st->kinds[k].count > 0) {
                metric_counter(t, part, "tensord_request", "kind", name, &st->kinds[k]);
            }
        }
    }
    for (int part = 0; part < 3; part++) {
        td_strbuf_printf(t, "# HELP tensord_op_%s %s, RunOp by op.\n# TYPE tensord_op_%s %s\n",
                         family_help[part][0], what[part], family_help[part][0],
                         family_help[part][1]);
        for (int i = 0; i < TD_OP_COUNT; i++) {
            if (rpc->op_counters[i].count > 0) {
                metric_counter(t, part, "tensord_op", "op", td_ops[i].name, &rpc->op_counters[i]);
            }
        }
    }
}

int td_metrics_http(void *user, const char *path, char **body, const char **content_type)
{
    const struct td_metrics *m = user;
    struct td_strbuf t;
    td_strbuf_init(&t, 0);
    int status = 200;
    if (strcmp(path, "/metrics") == 0) {
        *content_type = "text/plain; version=0.0.4; charset=utf-8";
        metrics_text(&t, m);
    } else if (strcmp(path, "/healthz") == 0) {
        td_strbuf_puts(&t, "ok\n");
    } else if (strcmp(path, "/readyz") == 0) {
        status = *m->stopping ? 503 : 200;
        td_strbuf_puts(&t, *m->stopping ? "stopping\n" : "ready\n");
    } else {
        status = 404;
        td_strbuf_puts(&t, "not found: try /metrics, /healthz or /readyz\n");
    }
    if (td_strbuf_failed(&t)) {
        td_strbuf_free(&t);
        *body = NULL;
        return 503;
    }
    *body = td_strbuf_take(&t, NULL);
    return status;
}
