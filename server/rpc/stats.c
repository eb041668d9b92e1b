/* server/rpc/stats.c — the request counters and the Stats request.
**
** rpc counts every answered request by kind (requests.def's rows) and every RunOp by op, each
** with its errors and a latency histogram from arrival to reply (queueing included); Stats
** returns them with the server's and the session's sizes, and main.c's /metrics reads the same
** struct td_rpc_stats. Counters live on the loop thread: no atomics.
*/
#include <string.h>
#include <time.h>

#include "base/alloc.h"
#include "core/ops.h"
#include "rpc/internal.h"

const uint64_t td_rpc_lat_bounds_us[TD_RPC_LAT_BUCKETS - 1] = {
    10, 100, 1000, 10000, 100000, 1000000, 10000000,
};

uint64_t td_rpc_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void counter_add(struct td_rpc_counter *c, bool failed, uint64_t us)
{
    int b = 0;
    while (b < TD_RPC_LAT_BUCKETS - 1 && us > td_rpc_lat_bounds_us[b]) {
        b++;
    }
    c->count++;
    c->errors += failed;
    c->sum_us += us;
    c->lat[b]++;
}

void td_rpc_stats_record(struct td_rpc_server *srv, int kind, int op, int status, uint64_t t0_us)
{
    uint64_t us = td_rpc_now_us() - t0_us;
    bool failed = status != TENSORD__STATUS_CODE__OK;
    if (kind >= 0 && kind < TD_RPC_KINDS) {
        counter_add(&srv->stats.kinds[kind], failed, us);
    }
    if (op >= 0 && op < TD_OP_COUNT) {
        counter_add(&srv->op_counters[op], failed, us);
    }
    if (status == TENSORD__STATUS_CODE__UNAUTHENTICATED) {
        srv->stats.auth_failures++;
    }
}

/* Stats: the server's counters and this session's numbers. res->mem (freed after encoding)
** holds what the counters point to. */
const uint64_t td_rpc_loop_slow_ms[TD_RPC_LOOP_BUCKETS] = {1, 10, 100, 1000};

void td_rpc_stats_turn(struct td_rpc_server *srv, uint64_t busy_us)
{
    struct td_rpc_stats *st = &srv->stats;
    st->loop_turns++;
    st->loop_busy_sum_us += busy_us;
    if (busy_us > st->loop_busy_max_us) {
        st->loop_busy_max_us = busy_us;
    }
    for (int i = 0; i < TD_RPC_LOOP_BUCKETS && busy_us > td_rpc_loop_slow_ms[i] * 1000u; i++) {
        st->loop_slow[i]++;
    }
}

int td_rpc_run_stats(struct rpc_job *j, struct td_session *s, struct result *res,
                     struct td_err *err)
{
    struct td_rpc_server *srv = j->peer->srv;
    Tensord__StatsResult *st = &res->stats_msg;
    tensord__stats_result__init(st);
    st->session_bytes = (uint64_t)td_session_bytes(s);
    st->session_tensors = td_session_count(s);
    st->sessions = s->store != NULL ? td_store_count(s->store) : 0;
    st->server_bytes = s->store != NULL ? (uint64_t)atomic_load(&s->store->global.used) : 0;
    st->server_tensors = s->store != NULL ? td_store_tensor_count(s->store) : 0;
    st->uptime_ms = srv->now_ms() - srv->started_ms;
    st->connections = srv->stats.connections;
    st->connections_total = srv->stats.connections_total;
    st->auth_failures = srv->stats.auth_failures;
    st->blas = (char *)td_blas_describe();
    st->allocated_bytes = (uint64_t)td_alloc_live_bytes();
    st->cached_bytes = td_alloc_cached_bytes();
    st->loop_turns = srv->stats.loop_turns;
    st->loop_busy_max_us = srv->stats.loop_busy_max_us;
    st->loop_busy_sum_us = srv->stats.loop_busy_sum_us;
    st->node_id = srv->node_id != NULL ? (char *)srv->node_id : "";
    st->moved = srv->stats.moved;
    st->refused_full = srv->stats.refused_full;
    st->redirected_full = srv->stats.redirected_full;
    enum { N = TD_RPC_KINDS + TD_OP_COUNT };
    struct block {
        Tensord__PeerInfo peer_infos[TD_PEERS_MAX];
        Tensord__PeerInfo *peer_ptrs[TD_PEERS_MAX];
        struct td_peer_strings peer_strs;
        Tensord__Counter c[N];
        Tensord__Counter *ptr[N];
        uint64_t lat[N][TD_RPC_LAT_BUCKETS];
        uint64_t loop_slow[TD_RPC_LOOP_BUCKETS];
    } *b = td_malloc(sizeof *b);
    if (b == NULL) {
        return td_err_code(err, TD_ENOMEM);
    }
    res->mem = b;
    st->n_peers = td_rpc_peer_infos(srv, b->peer_infos, b->peer_ptrs, &b->peer_strs);
    st->peers = b->peer_ptrs;
    memcpy(b->loop_slow, srv->stats.loop_slow, sizeof b->loop_slow);
    st->loop_slow_turns = b->loop_slow;
    st->n_loop_slow_turns = TD_RPC_LOOP_BUCKETS;
    size_t used = 0;
    st->requests = b->ptr;
    for (int k = 0; k < TD_RPC_KINDS + TD_OP_COUNT; k++) {
        bool is_op = k >= TD_RPC_KINDS;
        const struct td_rpc_counter *c = is_op ? &srv->op_counters[k - TD_RPC_KINDS]
                                               : &srv->stats.kinds[k];
        const char *name = is_op ? td_ops[k - TD_RPC_KINDS].name : td_rpc_kind_name(k);
        if (c->count == 0 || name == NULL) {
            continue;
        }
        if (is_op && st->ops == NULL) {
            st->n_requests = used;
            st->ops = b->ptr + used;
        }
        Tensord__Counter *w = &b->c[used];
        tensord__counter__init(w);
        w->name = (char *)name;
        w->count = c->count;
        w->errors = c->errors;
        w->latency_sum_us = c->sum_us;
        memcpy(b->lat[used], c->lat, sizeof c->lat);
        w->latency_buckets = b->lat[used];
        w->n_latency_buckets = TD_RPC_LAT_BUCKETS;
        b->ptr[used++] = w;
        if (is_op) {
            st->n_ops++;
        }
    }
    if (st->ops == NULL) {
        st->n_requests = used;
    }
    res->stats = st;
    return 0;
}
