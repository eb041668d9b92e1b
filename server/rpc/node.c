/* node.c — this node in a set of daemons (docs/DESIGN.md, "Many daemons"): NodeInfo, the
** routing of a Hello (MOVED, NODE_FULL, UNKNOWN_NODE), and the codec of the peer poller.
**
** The peer table (struct td_peer_table, rpc.h) is filled by the top layer's poller (peers.c),
** which moves the bytes; this file encodes its NodeInfo requests and decodes and checks the
** answers, because only rpc sees protobuf. A token's node part is only ever compared with ids
** the table learned from the peers' own answers: it is never used as an address. Loop thread.
*/
#include <stdatomic.h>
#include <string.h>

#include "base/log.h"
#include "rpc/internal.h"
#include "session/session.h"

/* ---- load and room ---- */

bool td_rpc_accepting(const struct td_rpc_server *srv)
{
    if (srv->draining || srv->store == NULL) {
        return false;
    }
    const struct td_store *st = srv->store;
    if (st->cfg.max_sessions > 0 && (int64_t)td_store_count(st) >= st->cfg.max_sessions) {
        return false;
    }
    int64_t limit = st->global.limit;
    return limit <= 0 || atomic_load(&st->global.used) < limit;
}

/* A peer we may send clients to: it answered as a node other than us, and it has room. */
static bool peer_usable(const struct td_rpc_server *srv, const struct td_peer_state *ps)
{
    return ps->in_use && !ps->self && ps->reachable && ps->accepting && !ps->draining &&
           ps->node_id[0] != '\0' && (srv->node_id == NULL || strcmp(ps->node_id, srv->node_id));
}

static uint64_t sub0(uint64_t a, uint64_t b)
{
    return a > b ? a - b : 0;
}

/* The usable peer with the most free session slots (ties: the most free bytes), or NULL. */
static const struct td_peer_state *peer_with_room(const struct td_rpc_server *srv)
{
    const struct td_peer_state *best = NULL;
    for (int i = 0; srv->peers != NULL && i < TD_PEERS_MAX; i++) {
        const struct td_peer_state *ps = &srv->peers->p[i];
        if (!peer_usable(srv, ps)) {
            continue;
        }
        uint64_t slots = sub0(ps->max_sessions, ps->sessions);
        uint64_t bytes = ps->max_bytes != 0 ? sub0(ps->max_bytes, ps->bytes) : UINT64_MAX;
        if (best == NULL || slots > sub0(best->max_sessions, best->sessions) ||
            (slots == sub0(best->max_sessions, best->sessions) &&
             bytes > (best->max_bytes != 0 ? sub0(best->max_bytes, best->bytes) : UINT64_MAX))) {
            best = ps;
        }
    }
    return best;
}

/* Where clients reach a peer: what it advertises, else the address it was dialled at. */
static const char *peer_address(const struct td_peer_state *ps)
{
    return ps->advertise[0] != '\0' ? ps->advertise : ps->address;
}

/* The peer answering as id: the reachable one when there is one (td_rpc_peer_answer lets only
** one reachable entry hold an id), else the last known. An entry keeps the id it last answered
** with after it goes down, so a dead address (or one that claimed the id while its owner was
** away) must not win over the address answering as that node now. */
static const struct td_peer_state *peer_by_id(const struct td_rpc_server *srv, const char *id)
{
    const struct td_peer_state *known = NULL;
    for (int i = 0; srv->peers != NULL && i < TD_PEERS_MAX; i++) {
        const struct td_peer_state *ps = &srv->peers->p[i];
        if (ps->in_use && !ps->self && ps->node_id[0] != '\0' && strcmp(ps->node_id, id) == 0) {
            if (ps->reachable) {
                return ps;
            }
            if (known == NULL) {
                known = ps;
            }
        }
    }
    return known;
}

/* ---- Hello's routing ---- */

int td_rpc_route_resume(struct rpc_job *j, const uint8_t *token, size_t len, struct td_err *err)
{
    struct td_rpc_server *srv = j->peer->srv;
    char node[TD_NODE_ID_MAX + 1];
    enum td_token_form form = td_token_split(token, len, node);
    if (form == TD_TOKEN_LEGACY) {
        return 0; /* saved before scale-out: only the node holding it can know it */
    }
    if (form == TD_TOKEN_NODE && srv->node_id != NULL && strcmp(node, srv->node_id) == 0) {
        return 0;
    }
    const struct td_peer_state *ps = form == TD_TOKEN_NODE ? peer_by_id(srv, node) : NULL;
    if (ps != NULL) {
        srv->stats.moved++;
        memcpy(j->status_node, ps->node_id, sizeof j->status_node);
        j->status_address = peer_address(ps);
        return td_err_set(err, TD_EMOVED, "the session is owned by node %s at %s: resume it there",
                          ps->node_id, j->status_address);
    }
    srv->stats.unknown_node++;
    memcpy(j->status_node, node, sizeof j->status_node); /* "" unless well formed */
    if (form == TD_TOKEN_BAD) {
        return td_err_set(err, TD_ENODE,
                          "malformed session token: want \"<node id>.<32 lowercase hex "
                          "digits>\" as HelloResult.session_token gave it");
    }
    return td_err_set(err, TD_ENODE,
                      "the session token names node %s, which this node (%s) does not know "
                      "among its peers",
                      node, srv->node_id != NULL ? srv->node_id : "-");
}

int td_rpc_check_room(struct rpc_job *j, struct td_err *err)
{
    struct td_rpc_server *srv = j->peer->srv;
    if (td_rpc_accepting(srv)) {
        return 0;
    }
    srv->stats.refused_full++;
    const char *why = srv->draining ? "is shutting down" : "is at its session or memory limit";
    const struct td_peer_state *ps = peer_with_room(srv);
    if (ps == NULL) {
        return td_err_set(err, TD_EFULL,
                          "node %s %s and knows no peer with room: retry later or elsewhere",
                          srv->node_id != NULL ? srv->node_id : "-", why);
    }
    srv->stats.redirected_full++;
    memcpy(j->status_node, ps->node_id, sizeof j->status_node);
    j->status_address = peer_address(ps);
    return td_err_set(err, TD_EFULL, "node %s %s: open the session on node %s at %s",
                      srv->node_id != NULL ? srv->node_id : "-", why, ps->node_id,
                      j->status_address);
}

/* ---- NodeInfo ---- */

/* Copies src (a NUL-terminated string of at most cap - 1 bytes, or one being rewritten) into
** dst[cap]: never more than cap - 1 bytes, always terminated. */
static void copy_bounded(char *dst, const char *src, size_t cap)
{
    size_t i = 0;
    for (; i + 1 < cap && src[i] != '\0'; i++) {
        dst[i] = src[i];
    }
    dst[i] = '\0';
}

size_t td_rpc_peer_infos(const struct td_rpc_server *srv, Tensord__PeerInfo *infos,
                         Tensord__PeerInfo **ptrs, struct td_peer_strings *strs)
{
    size_t n = 0;
    uint64_t now = srv->now_ms();
    struct td_peer_table *t = srv->peers;
    if (t == NULL) {
        return 0;
    }
    pthread_mutex_lock(&t->lock); /* a Stats may run here on a worker while the loop writes */
    for (int i = 0; i < TD_PEERS_MAX; i++) {
        const struct td_peer_state *ps = &t->p[i];
        if (!ps->in_use || ps->self) {
            continue; /* a node is never its own peer */
        }
        Tensord__PeerInfo *w = &infos[n];
        tensord__peer_info__init(w);
        copy_bounded(strs->node_id[n], ps->node_id, sizeof strs->node_id[n]);
        copy_bounded(strs->address[n], peer_address(ps), sizeof strs->address[n]);
        w->node_id = strs->node_id[n];
        w->address = strs->address[n];
        w->reachable = ps->reachable;
        w->last_seen_ms = ps->last_seen_ms != 0 ? sub0(now, ps->last_seen_ms) : 0;
        if (ps->last_seen_ms != 0 && w->last_seen_ms == 0) {
            w->last_seen_ms = 1; /* answered this very millisecond: not "never" */
        }
        w->sessions = ps->sessions;
        w->max_sessions = ps->max_sessions;
        w->bytes = ps->bytes;
        w->max_bytes = ps->max_bytes;
        w->accepting = ps->accepting;
        w->failures = ps->failures;
        ptrs[n++] = w;
    }
    pthread_mutex_unlock(&t->lock);
    return n;
}

/* NodeInfo runs without a session, like Hello, and is authenticated like it (the same
** penalty table). Its reply is bounded: at most TD_PEERS_MAX peers of short strings. */
int td_rpc_run_node_info(struct rpc_job *j, struct td_session *s, struct result *res,
                         struct td_err *err)
{
    struct td_rpc_server *srv = j->peer->srv;
    int arc = td_rpc_auth_check(srv, j->peer->addr_key, j->req->node_info->auth_token,
                                j->hello_token_len, err);
    if (arc != 0) {
        return arc;
    }
    if (s != NULL || j->peer->session != NULL) {
        return td_err_set(err, TD_EPROTO,
                          "NodeInfo runs only on a connection without a session (before Hello)");
    }
    struct block {
        Tensord__PeerInfo infos[TD_PEERS_MAX];
        Tensord__PeerInfo *ptrs[TD_PEERS_MAX];
        struct td_peer_strings strs;
    } *b = td_malloc(sizeof *b);
    if (b == NULL) {
        return td_err_code(err, TD_ENOMEM);
    }
    res->mem = b;
    Tensord__NodeInfoResult *m = &res->node_info_msg;
    tensord__node_info_result__init(m);
    m->node_id = srv->node_id != NULL ? (char *)srv->node_id : "";
    m->advertise = srv->advertise != NULL ? (char *)srv->advertise : "";
    m->server_version = "tensord " TD_VERSION;
    const struct td_store *st = srv->store;
    m->sessions = td_store_count(st);
    m->max_sessions = st->cfg.max_sessions > 0 ? (uint64_t)st->cfg.max_sessions : 0;
    int64_t used = atomic_load(&st->global.used);
    m->bytes = used > 0 ? (uint64_t)used : 0;
    m->max_bytes = st->global.limit > 0 ? (uint64_t)st->global.limit : 0;
    m->accepting = td_rpc_accepting(srv);
    m->draining = srv->draining;
    m->n_peers = td_rpc_peer_infos(srv, b->infos, b->ptrs, &b->strs);
    m->peers = b->ptrs;
    res->node_info = m;
    j->peer->node_info_ok = true;
    return 0;
}

/* ---- the poller's codec ---- */

size_t td_rpc_node_info_frame(const struct td_rpc_server *srv, uint64_t id, uint8_t *buf,
                              size_t cap)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__NodeInfo ni = TENSORD__NODE_INFO__INIT;
    ni.auth_token = srv->auth_token != NULL ? (char *)srv->auth_token : "";
    req.id = id;
    req.body_case = TENSORD__REQUEST__BODY_NODE_INFO;
    req.node_info = &ni;
    size_t n = tensord__request__get_packed_size(&req);
    if (cap < TD_FRAME_HEADER_BYTES || n > cap - TD_FRAME_HEADER_BYTES || n > UINT32_MAX) {
        return 0;
    }
    tensord__request__pack(&req, buf + TD_FRAME_HEADER_BYTES);
    td_frame_header_put(buf, (uint32_t)n, 0);
    return TD_FRAME_HEADER_BYTES + n;
}

static void *pb_alloc(void *data, size_t n)
{
    (void)data;
    return td_malloc(n);
}

static void pb_free(void *data, void *p)
{
    (void)data;
    td_free(p);
}

static ProtobufCAllocator pb_heap = {.alloc = pb_alloc, .free = pb_free};

/* Copies a peer's string into dst[cap] when it is short enough; false when it is not. */
static bool copy_short(char *dst, size_t cap, const char *src)
{
    size_t n = src != NULL ? strlen(src) : 0;
    if (n >= cap) {
        return false;
    }
    memcpy(dst, src != NULL ? src : "", n + 1);
    return true;
}

/* The writers below hold the table's lock while they change an entry (td_rpc_peer_infos reads
** it off the loop); srv->peers is NULL in tests that hand an entry of their own. */
static void peers_lock(struct td_rpc_server *srv)
{
    if (srv->peers != NULL) {
        pthread_mutex_lock(&srv->peers->lock);
    }
}

static void peers_unlock(struct td_rpc_server *srv)
{
    if (srv->peers != NULL) {
        pthread_mutex_unlock(&srv->peers->lock);
    }
}

int td_rpc_peer_answer(struct td_rpc_server *srv, struct td_peer_state *ps, const uint8_t *meta,
                       size_t len)
{
    Tensord__Response *r = tensord__response__unpack(&pb_heap, len, meta);
    const Tensord__NodeInfoResult *m = r != NULL &&
                                               r->result_case ==
                                                   TENSORD__RESPONSE__RESULT_NODE_INFO &&
                                               (r->status == NULL || r->status->code == 0)
                                           ? r->node_info
                                           : NULL;
    const char *why = NULL;
    if (m == NULL) {
        why = r == NULL ? "garbage" : "not a NodeInfo answer";
    } else if (m->node_id == NULL || !td_node_id_valid(m->node_id, strlen(m->node_id))) {
        why = "no valid node id";
    } else if (m->advertise != NULL && m->advertise[0] != '\0' &&
               !td_hostport_parse(m->advertise, false, NULL, 0, NULL)) {
        why = "an invalid advertised address";
    } else if (srv->node_id != NULL && strcmp(m->node_id, srv->node_id) == 0) {
        if (!ps->self) {
            td_log(TD_LOG_INFO, "peer_is_self", "node=%s peer=%s", srv->node_id, ps->address);
        }
        peers_lock(srv);
        ps->self = true; /* a dns: name that resolves to us too: not a peer */
        ps->reachable = false;
        peers_unlock(srv);
        tensord__response__free_unpacked(r, &pb_heap);
        return -1;
    } else {
        /* Another entry already answers as this id (two addresses of one node, or a liar):
        ** the first keeps it, so a token's owner has one address. */
        for (int i = 0; srv->peers != NULL && i < TD_PEERS_MAX; i++) {
            const struct td_peer_state *o = &srv->peers->p[i];
            if (o != ps && o->in_use && !o->self && o->reachable &&
                strcmp(o->node_id, m->node_id) == 0) {
                why = "the node id of another peer";
            }
        }
    }
    if (why != NULL) {
        td_log(TD_LOG_WARN, "peer_answer_refused", "node=%s peer=%s reason=\"%s\"",
               srv->node_id != NULL ? srv->node_id : "-", ps->address, why);
        tensord__response__free_unpacked(r, &pb_heap);
        td_rpc_peer_failed(srv, ps);
        return -1;
    }
    if (!ps->reachable || strcmp(ps->node_id, m->node_id) != 0) {
        td_log(TD_LOG_INFO, "peer_up", "node=%s peer=%s peer_node=%s",
               srv->node_id != NULL ? srv->node_id : "-", ps->address, m->node_id);
    }
    peers_lock(srv);
    copy_short(ps->node_id, sizeof ps->node_id, m->node_id);
    if (!copy_short(ps->advertise, sizeof ps->advertise, m->advertise)) {
        ps->advertise[0] = '\0';
    }
    ps->self = false;
    ps->reachable = true;
    ps->accepting = m->accepting && !m->draining;
    ps->draining = m->draining;
    ps->sessions = m->sessions;
    ps->max_sessions = m->max_sessions;
    ps->bytes = m->bytes;
    ps->max_bytes = m->max_bytes;
    ps->failures = 0;
    ps->last_seen_ms = srv->now_ms();
    if (ps->last_seen_ms == 0) {
        ps->last_seen_ms = 1;
    }
    peers_unlock(srv);
    tensord__response__free_unpacked(r, &pb_heap);
    return 0;
}

void td_rpc_peer_failed(struct td_rpc_server *srv, struct td_peer_state *ps)
{
    if (ps->reachable) {
        td_log(TD_LOG_WARN, "peer_down", "node=%s peer=%s peer_node=%s",
               srv->node_id != NULL ? srv->node_id : "-", ps->address,
               ps->node_id[0] != '\0' ? ps->node_id : "-");
    }
    peers_lock(srv);
    ps->reachable = false;
    ps->accepting = false;
    if (ps->failures < UINT64_MAX) {
        ps->failures++;
    }
    peers_unlock(srv);
}
