/* server/glue.c — net ↔ rpc: each connection of net is a peer of rpc (see glue.h).
**
** A connection opens: a peer is made for it (or, past --max-connections, made only to answer
** with the limit's error and close). Each frame goes to td_rpc_handle; once the peer has a
** session the connection counts as established for net's slow-peer clocks. Each reply goes out
** with td_conn_send, its data section zero-copy. Flow control: a connection stops being read
** while its peer has PEER_PAUSE_PENDING requests or PEER_PAUSE_BYTES queued, and is read again
** once a reply brings it under the resume marks; a data section rpc cannot charge yet pauses
** the connection until the peer's next reply.
*/
#include "glue.h"

#include <stdbool.h>
#include <stdio.h>

#include "base/alloc.h"
#include "base/log.h"

#define PEER_PAUSE_PENDING 1024 /* stop reading a connection with this many requests queued */
#define PEER_RESUME_PENDING 256
#define PEER_PAUSE_BYTES                                                                           \
    ((int64_t)16 << 20) /* ... or with this many bytes queued (decoded
                                               ** requests and data sections); resume at half */

struct glue_conn {
    struct td_conn *conn;
    struct td_rpc_peer *peer;
    bool paused;       /* td_conn_pause for PEER_PAUSE_PENDING queued requests
                                    ** or PEER_PAUSE_BYTES of them */
    bool data_waiting; /* glue_data_alloc said "later": net counts one pause, which
                                    ** the next reply lifts (each pause has its own resume) */
    int busy;          /* glue_frame / glue_reply on the stack */
    bool closed;       /* on_close came meanwhile: free when the last one returns */
};

/* A send or a close can close the connection at once (out of memory), and net calls on_close
** synchronously: while a glue callback is on the stack, glue_close only marks g, and the
** outermost callback frees it. */
static void glue_enter(struct glue_conn *g)
{
    g->busy++;
}

static void glue_leave(struct glue_conn *g)
{
    if (--g->busy == 0 && g->closed) {
        td_free(g);
    }
}

static void glue_reply(struct td_rpc_peer *p, struct td_rpc_reply *r, void *user)
{
    struct glue_conn *g = user;
    glue_enter(g);
    if (r->frame == NULL) {
        td_conn_close(g->conn);
        glue_leave(g);
        return;
    }
    /* The release frees the frame too: it goes on the last part, which is written last. */
    struct td_out parts[2] = {
        {r->frame, r->frame_len, NULL, NULL},
        {r->data, r->data_len, r->release, r->release_arg},
    };
    if (r->data_len == 0) {
        parts[0].release = r->release;
        parts[0].arg = r->release_arg;
    }
    td_conn_send(g->conn, parts, r->data_len > 0 ? 2 : 1);
    if (g->closed) {
        /* the send failed and closed the connection */
    } else if (r->close_after) {
        td_conn_close_after_flush(g->conn);
    } else {
        if (g->data_waiting) {
            /* A reply frees what the session's queued work held: ask rpc again (net does, in
            ** td_conn_resume, once no other pause is left). Cleared first: the retry may say
            ** "later" again and set it anew. */
            g->data_waiting = false;
            td_conn_resume(g->conn);
        }
        if (!g->closed && g->paused && p->pending <= PEER_RESUME_PENDING &&
            p->queued_bytes <= PEER_PAUSE_BYTES / 2) {
            g->paused = false;
            td_conn_resume(g->conn);
        }
    }
    glue_leave(g);
}

/* net asks for a frame's data section: rpc allocates it and charges it to the session (quota
** and --max-bytes), or says "later" (the session's queued work holds the quota: the connection
** pauses until this peer's next reply, glue_reply), or refuses (net discards the bytes and rpc
** answers the frame with its error). */
static int glue_data_alloc(struct td_conn *c, void *user, size_t len, void **out)
{
    struct glue_conn *g = user;
    (void)c;
    struct td_err err;
    td_err_clear(&err);
    int rc = td_rpc_data_alloc(g->peer, len, out, &err);
    if (rc == 0) {
        return 0;
    }
    /* TD_RPC_DATA_LATER shares its value with TD_EINVAL: "later" is the one answer that comes
    ** without an error record. */
    if (rc == TD_RPC_DATA_LATER && err.code == 0) {
        if (g->peer->pending == 0) {
            /* Nothing of this peer's is queued, so no reply would come to resume it: waiting
            ** would be for ever (another connection's work holds the session's quota). Refused
            ** now instead, rpc answers the frame with the quota's error. */
            return -1;
        }
        g->data_waiting = true;
        return TD_NET_DATA_LATER;
    }
    return rc == TD_NET_DATA_LATER ? -1 : rc; /* any refusal but "later" */
}

static void *glue_open(struct td_conn *c, void *user)
{
    struct td_glue *glue = user;
    struct glue_conn *g = td_calloc(1, sizeof *g);
    if (g == NULL) {
        return NULL;
    }
    g->conn = c;
    if (td_rpc_peer_new(&g->peer, glue->rpc, glue_reply, g) != 0) {
        td_free(g);
        return NULL;
    }
    td_rpc_peer_set_addr(g->peer, td_conn_peer(c), td_conn_id(c));
    if ((int64_t)glue->net->nconns > glue->max_connections) {
        /* Refused at once, with a reason, rather than left hanging. */
        char msg[96];
        snprintf(msg, sizeof msg, "connection limit reached: max_connections %lld",
                 (long long)glue->max_connections);
        td_log(TD_LOG_WARN, "conn_refused", "conn=%llu peer=%s reason=max_connections",
               (unsigned long long)td_conn_id(c), td_conn_peer(c));
        td_rpc_reply_error(g->peer, 0, TD_ELIMIT, msg, true);
    }
    return g;
}

static void glue_frame(struct td_conn *c, void *user, const uint8_t *meta, size_t meta_len,
                       void *data, size_t data_len)
{
    struct glue_conn *g = user;
    glue_enter(g);
    td_rpc_peer_read(g->peer, td_conn_read_seq(c)); /* frames of one read share an arrival time */
    td_rpc_handle(g->peer, meta, meta_len, data, data_len);
    if (g->closed) {
        glue_leave(g);
        return;
    }
    if (g->peer->session != NULL || g->peer->node_info_ok) {
        /* Past Hello, or a peer node's poller that passed NodeInfo's auth (as a Hello would
        ** have): it may idle between frames instead of being closed by --idle-timeout. */
        td_conn_established(c);
    }
    if (!g->paused &&
        (g->peer->pending >= PEER_PAUSE_PENDING || g->peer->queued_bytes > PEER_PAUSE_BYTES)) {
        g->paused = true;
        td_conn_pause(c);
    }
    glue_leave(g);
}

static void glue_frame_error(struct td_conn *c, void *user, int code, const char *msg)
{
    struct glue_conn *g = user;
    (void)c;
    td_rpc_reply_error(g->peer, 0, code, msg, true);
}

static void glue_close(struct td_conn *c, void *user)
{
    struct glue_conn *g = user;
    (void)c;
    td_rpc_peer_close(g->peer);
    g->closed = true;
    if (g->busy == 0) {
        td_free(g);
    }
}

void td_glue_callbacks(struct td_glue *g, struct td_net_callbacks *cb)
{
    *cb = (struct td_net_callbacks){
        .user = g,
        .on_open = glue_open,
        .on_frame = glue_frame,
        .on_data_alloc = glue_data_alloc,
        .on_frame_error = glue_frame_error,
        .on_close = glue_close,
    };
}
