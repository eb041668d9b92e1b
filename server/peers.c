/* server/peers.c — the peer poller (peers.h): one kept connection per peer, a NodeInfo per round.
**
** Slots: the peer table's entry i and the connection c[i] belong together. A HOST:PORT entry
** of --peers has one slot, made at start (an IP literal) or at its first lookup (a name); a
** dns:NAME:PORT entry has one slot per address its last lookup returned: addresses that
** appear get a slot (and a probe at once), those that vanish lose theirs. A slot is reused
** only once its connection's handle is closed.
** A round (the timer): names are looked up again (uv_getaddrinfo, on libuv's pool), and each
** slot is probed: a connect or an answer still pending from the last round is a failure (the
** connection is dropped and made again next round); a connected slot is sent a NodeInfo.
** Answers are read into a fixed buffer of PEER_MAX_REPLY; a header announcing more, a data
** section, an answer nobody asked for or one rpc does not believe drops the connection.
*/
#include "peers.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "base/alloc.h"
#include "base/log.h"
#include "config.h"
#include "net/net.h"

#define PEER_MAX_REPLY (64u << 10) /* a NodeInfoResult of 64 peers is under 30 KiB */
#define PEER_OUT_BYTES 4224        /* a NodeInfo frame: the auth token (<= 4096) and a little */

struct spec {
    char host[TD_HOSTPORT_MAX + 1]; /* without brackets */
    char port[8];
    char text[TD_HOSTPORT_MAX + 1]; /* the entry as configured (without "dns:") */
    bool dns;                       /* every address behind the name */
    bool literal;                   /* an IP address: no lookup */
    bool resolving;
    uv_getaddrinfo_t gai;
    struct td_poller *pl;
};

struct pconn {
    struct td_poller *pl;
    int spec; /* the --peers entry owning the slot; -1 free */
    struct sockaddr_storage sa;
    bool have_sa, seen;
    uv_tcp_t tcp;
    bool live;    /* tcp initialised, its close callback not yet run */
    bool closing; /* uv_close called */
    bool connecting, connected, waiting, writing;
    uv_connect_t creq;
    uv_write_t wreq;
    uint8_t out[PEER_OUT_BYTES];
    uint8_t *in; /* PEER_MAX_REPLY bytes while connected */
    size_t in_len;
};

struct td_poller {
    uv_loop_t *loop;
    struct td_rpc_server *rpc; /* borrowed */
    struct td_peer_table table;
    struct pconn c[TD_PEERS_MAX];
    struct spec s[TD_CFG_MAX_PEERS];
    int nspecs;
    uv_timer_t timer;
    uint64_t interval_ms, next_id;
    bool stopping;
    bool warned_full; /* peers_too_many was logged */
    int pending;      /* handles and lookups not yet called back */
};

static void poller_maybe_free(struct td_poller *pl)
{
    if (pl->stopping && pl->pending == 0) {
        for (int i = 0; i < TD_PEERS_MAX; i++) {
            td_free(pl->c[i].in);
        }
        pthread_mutex_destroy(&pl->table.lock);
        td_free(pl);
    }
}

static void on_tcp_closed(uv_handle_t *h)
{
    struct pconn *c = h->data;
    c->live = false;
    c->closing = false;
    c->pl->pending--;
    poller_maybe_free(c->pl);
}

/* Ends the slot's connection; `failed` counts a failed probe. The slot may reconnect once the
** handle has closed. */
static void conn_drop(struct pconn *c, bool failed)
{
    struct td_poller *pl = c->pl;
    int i = (int)(c - pl->c);
    if (failed) {
        td_rpc_peer_failed(pl->rpc, &pl->table.p[i]);
    }
    c->connecting = c->connected = c->waiting = false;
    c->in_len = 0;
    if (c->live && !c->closing) {
        c->closing = true;
        uv_close((uv_handle_t *)&c->tcp, on_tcp_closed);
    }
}

static void on_write(uv_write_t *w, int status)
{
    struct pconn *c = w->data;
    c->writing = false;
    if (status < 0 && status != UV_ECANCELED && !c->closing) {
        conn_drop(c, true);
    }
}

static void conn_send(struct pconn *c)
{
    struct td_poller *pl = c->pl;
    size_t n = td_rpc_node_info_frame(pl->rpc, ++pl->next_id, c->out, sizeof c->out);
    if (n == 0 || c->writing) {
        conn_drop(c, true);
        return;
    }
    uv_buf_t b = uv_buf_init((char *)c->out, (unsigned)n);
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
        conn_drop(c, true);
        return;
    }
    c->writing = true;
    c->waiting = true;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct pconn *c = h->data;
    *buf = uv_buf_init((char *)c->in + c->in_len, (unsigned)(PEER_MAX_REPLY - c->in_len));
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    struct pconn *c = st->data;
    struct td_poller *pl = c->pl;
    int i = (int)(c - pl->c);
    if (nread < 0) {
        conn_drop(c, c->waiting); /* closed between probes: reconnect quietly next round */
        return;
    }
    c->in_len += (size_t)nread;
    while (c->in_len >= TD_FRAME_HEADER_BYTES) {
        uint32_t meta;
        uint64_t data;
        td_frame_header_get(c->in, &meta, &data);
        if (data != 0 || meta > PEER_MAX_REPLY - TD_FRAME_HEADER_BYTES || !c->waiting) {
            td_log(TD_LOG_WARN, "peer_frame_refused", "peer=%s meta_len=%u data_len=%llu",
                   pl->table.p[i].address, meta, (unsigned long long)data);
            conn_drop(c, true);
            return;
        }
        size_t whole = TD_FRAME_HEADER_BYTES + (size_t)meta;
        if (c->in_len < whole) {
            return; /* the rest is still on its way */
        }
        c->waiting = false;
        if (td_rpc_peer_answer(pl->rpc, &pl->table.p[i], c->in + TD_FRAME_HEADER_BYTES, meta) !=
            0) {
            conn_drop(c, false); /* rpc counted the failure (or found it is us) */
            return;
        }
        memmove(c->in, c->in + whole, c->in_len - whole);
        c->in_len -= whole;
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    struct pconn *c = req->data;
    if (status == UV_ECANCELED || c->closing) {
        return;
    }
    c->connecting = false;
    if (status < 0) {
        conn_drop(c, true);
        return;
    }
    if (c->in == NULL && (c->in = td_malloc(PEER_MAX_REPLY)) == NULL) {
        conn_drop(c, true);
        return;
    }
    c->connected = true;
    c->in_len = 0;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
        conn_drop(c, true);
        return;
    }
    conn_send(c);
}

/* One round for one slot. */
static void conn_probe(struct pconn *c)
{
    struct td_poller *pl = c->pl;
    if (pl->stopping || c->spec < 0 || !c->have_sa || c->closing || pl->table.p[c - pl->c].self) {
        return; /* an address of this very node is asked once */
    }
    if (c->connecting || c->waiting) {
        conn_drop(c, true); /* a whole round without a connection or an answer */
        return;
    }
    if (c->connected) {
        conn_send(c);
        return;
    }
    if (uv_tcp_init(pl->loop, &c->tcp) != 0) {
        td_rpc_peer_failed(pl->rpc, &pl->table.p[c - pl->c]);
        return;
    }
    c->tcp.data = c;
    c->live = true;
    pl->pending++;
    c->creq.data = c;
    c->connecting = true;
    if (uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&c->sa, on_connect) != 0) {
        conn_drop(c, true);
    }
}

/* A free slot (no owner, handle closed) for spec k at address text, or NULL when all 64 are
** taken. */
static struct pconn *slot_new(struct td_poller *pl, int k, const char *text,
                              const struct sockaddr *sa, size_t salen)
{
    for (int i = 0; i < TD_PEERS_MAX; i++) {
        struct pconn *c = &pl->c[i];
        if (c->spec < 0 && !c->live) {
            struct td_peer_state *ps = &pl->table.p[i];
            pthread_mutex_lock(&pl->table.lock);
            memset(ps, 0, sizeof *ps);
            ps->in_use = true;
            snprintf(ps->address, sizeof ps->address, "%s", text);
            pthread_mutex_unlock(&pl->table.lock);
            c->spec = k;
            memset(&c->sa, 0, sizeof c->sa);
            memcpy(&c->sa, sa, salen <= sizeof c->sa ? salen : sizeof c->sa);
            c->have_sa = true;
            c->seen = true;
            return c;
        }
    }
    if (!pl->warned_full) {
        pl->warned_full = true; /* once: a large Service would say it every round */
        td_log(TD_LOG_WARN, "peers_too_many", "max=%d msg=\"addresses past the limit are ignored\"",
               TD_PEERS_MAX);
    }
    return NULL;
}

static void slot_free(struct pconn *c)
{
    conn_drop(c, false);
    c->spec = -1;
    c->have_sa = false;
    pthread_mutex_lock(&c->pl->table.lock);
    c->pl->table.p[c - c->pl->c].in_use = false;
    pthread_mutex_unlock(&c->pl->table.lock);
}

static void addr_text(const struct sockaddr *sa, char *out, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
        snprintf(out, cap, "[%s]:%u", ip, ntohs(a->sin6_port));
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        snprintf(out, cap, "%s:%u", ip, ntohs(a->sin_port));
    }
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct spec *s = req->data;
    struct td_poller *pl = s->pl;
    int k = (int)(s - pl->s);
    s->resolving = false;
    pl->pending--;
    if (pl->stopping || status < 0) {
        if (!pl->stopping) {
            td_log(TD_LOG_WARN, "peer_resolve_failed", "peer=%s%s err=\"%s\"", s->dns ? "dns:" : "",
                   s->text, uv_strerror(status));
            for (int i = 0; i < TD_PEERS_MAX; i++) {
                if (pl->c[i].spec == k && !s->dns) {
                    td_rpc_peer_failed(pl->rpc, &pl->table.p[i]);
                }
            }
        }
        uv_freeaddrinfo(res);
        poller_maybe_free(pl);
        return;
    }
    for (int i = 0; i < TD_PEERS_MAX; i++) {
        pl->c[i].seen = pl->c[i].spec != k;
    }
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) {
            continue;
        }
        char text[TD_HOSTPORT_MAX + 1];
        if (s->dns) {
            addr_text(ai->ai_addr, text, sizeof text);
        } else {
            snprintf(text, sizeof text, "%s", s->text); /* a name: clients use the name */
        }
        struct pconn *c = NULL;
        for (int i = 0; i < TD_PEERS_MAX && c == NULL; i++) {
            if (pl->c[i].spec == k && strcmp(pl->table.p[i].address, text) == 0) {
                c = &pl->c[i];
            }
        }
        if (c != NULL) {
            if (!s->dns && !c->seen && memcmp(&c->sa, ai->ai_addr, ai->ai_addrlen) != 0) {
                conn_drop(c, false); /* the name moved: the next round dials the new address */
                memset(&c->sa, 0, sizeof c->sa);
                memcpy(&c->sa, ai->ai_addr, ai->ai_addrlen);
            }
            c->seen = true;
        } else if ((c = slot_new(pl, k, text, ai->ai_addr, ai->ai_addrlen)) != NULL) {
            conn_probe(c); /* new: asked at once, not a round later */
        }
        if (!s->dns) {
            break; /* one address per HOST:PORT entry */
        }
    }
    for (int i = 0; i < TD_PEERS_MAX; i++) {
        if (!pl->c[i].seen) {
            slot_free(&pl->c[i]); /* gone from the name */
        }
    }
    uv_freeaddrinfo(res);
}

static void on_round(uv_timer_t *t)
{
    struct td_poller *pl = t->data;
    for (int k = 0; k < pl->nspecs; k++) {
        struct spec *s = &pl->s[k];
        if (s->literal || s->resolving) {
            continue;
        }
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        s->gai.data = s;
        if (uv_getaddrinfo(pl->loop, &s->gai, on_resolved, s->host, s->port, &hints) == 0) {
            s->resolving = true;
            pl->pending++;
        }
    }
    for (int i = 0; i < TD_PEERS_MAX; i++) {
        conn_probe(&pl->c[i]);
    }
}

struct td_poller *td_poller_start(uv_loop_t *loop, struct td_rpc_server *rpc, const char *peers,
                                  uint64_t interval_ms)
{
    struct td_poller *pl = td_calloc(1, sizeof *pl);
    if (pl == NULL) {
        return NULL;
    }
    pthread_mutex_init(&pl->table.lock, NULL);
    pl->loop = loop;
    pl->rpc = rpc;
    pl->interval_ms = interval_ms;
    for (int i = 0; i < TD_PEERS_MAX; i++) {
        pl->c[i].pl = pl;
        pl->c[i].spec = -1;
    }
    size_t pos = 0;
    char e[TD_HOSTPORT_MAX + 8];
    while (pl->nspecs < TD_CFG_MAX_PEERS && td_cfg_peers_next(peers, &pos, e, sizeof e)) {
        struct spec *s = &pl->s[pl->nspecs];
        s->pl = pl;
        s->dns = strncmp(e, "dns:", 4) == 0;
        const char *hp = e + (s->dns ? 4 : 0);
        size_t hn = strlen(hp);
        uint16_t port;
        if (hn >= sizeof s->text) {
            continue; /* config refused it */
        }
        memcpy(s->text, hp, hn + 1);
        if (!td_hostport_parse(s->text, false, s->host, sizeof s->host, &port)) {
            continue; /* config checked it; never trust twice-parsed text blindly */
        }
        snprintf(s->port, sizeof s->port, "%u", port);
        struct sockaddr_storage ss;
        struct td_err err;
        s->literal = !s->dns && td_net_sockaddr(s->text, &ss, &err) == 0;
        int k = pl->nspecs++;
        if (s->literal) {
            slot_new(pl, k, s->text, (const struct sockaddr *)&ss, sizeof ss);
        }
    }
    rpc->peers = &pl->table;
    uv_timer_init(loop, &pl->timer);
    pl->timer.data = pl;
    pl->pending++;
    uv_timer_start(&pl->timer, on_round, 0, interval_ms);
    td_log(TD_LOG_INFO, "peers", "node=%s entries=%d interval_ms=%llu",
           rpc->node_id != NULL ? rpc->node_id : "-", pl->nspecs, (unsigned long long)interval_ms);
    return pl;
}

static void on_timer_closed(uv_handle_t *h)
{
    struct td_poller *pl = h->data;
    pl->pending--;
    poller_maybe_free(pl);
}

void td_poller_stop(struct td_poller *pl)
{
    if (pl == NULL || pl->stopping) {
        return;
    }
    pl->stopping = true;
    pl->rpc->peers = NULL;
    uv_close((uv_handle_t *)&pl->timer, on_timer_closed);
    for (int i = 0; i < TD_PEERS_MAX; i++) {
        conn_drop(&pl->c[i], false);
    }
    for (int k = 0; k < pl->nspecs; k++) {
        if (pl->s[k].resolving) {
            uv_cancel((uv_req_t *)&pl->s[k].gai);
        }
    }
}
