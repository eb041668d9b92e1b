/* server/rpc/rpc.c — dispatch: decode, look the request kind up, run its handler, encode.
**
** Every request kind is a row of rpc/requests.def; this file expands it into the dispatch table
** (requests[], read through td_rpc_request_of) and holds the handlers of the tensor requests.
** The rest of rpc is split by concern: files.c (Save, Load), auth.c (the Hello's token, the
** penalty table), stats.c (the counters, Stats); rpc/internal.h is what they share.
**
** The story of a request: td_rpc_handle decodes the Request into its job's arena (the hot kinds
** by fastunpack.c, the rest by protobuf-c; what overflows the arena is td_malloc'd and counted;
** the job itself comes from a short list of freed ones), finds its row, answers a request that needs no session (Hello) at once when the
** connection has none yet, and otherwise wraps the request in a job on the session's FIFO. When
** its turn comes, is_heavy() decides from the row (may it run inline?) and the current handle
** table (its cost) whether the work goes to the executor; run() calls the row's handler, which
** validates every wire value (dtype range, rank, each dim, byte counts, handles) and calls core,
** and encodes the Response into a frame; done() hands the frame to the peer on the loop thread
** and frees the request where it was decoded. A failed request leaves a failure record under
** its row's output handle, so pipelined ops that use it fail with "input N failed: <cause>".
**
** Cost: job_cost sizes every request by what it really touches (td_op_cost for ops, expanded
** inputs at their logical size), when its turn comes; the same number sends it to the pool
** (above heavy_work: the loop never runs more) and refuses it (above max_op_elements, before
** anything is allocated).
**
** Cancellation: a request runs with its job's struct td_cancel current, armed with
** max_request_ms when it starts. Its connection closing cancels it (TD_CANCEL_CONN_LOST), a
** CloseSession cancels what its session runs and queues before it, SIGTERM cancels everything
** (td_store_cancel_all). A request dropped before it ran has no effect at all; one stopped
** while running is answered CANCELLED (LIMIT_EXCEEDED past its deadline) and leaves no failure
** record, since a client that resumes may send it again. An in-place op or a backward stopped
** mid-way may leave its tensors partly written: its client never got an acknowledgement.
**
** Sessions: a connection has one. A job runs against, and is costed on, the session whose FIFO
** it waits in (job.session), never whatever the connection points at when it runs; a Hello
** once the connection has a session is refused, even after CloseSession, and the jobs of a
** closed session fail at once ("session is closed"), inline, doing nothing (a Ping and a
** CloseSession succeed, doing nothing).
**
** Bytes: a decoded request is charged to its session from decode until its job is freed (what
** protobuf-c allocated past the job's arena, plus its meta bytes), and counted with its data
** section in the peer's queued_bytes, on which main stops reading the connection.
** A frame's data section is charged to the session from the moment net allocates it
** (td_rpc_data_alloc) until the request frees it or a Create's tensor takes the charge over;
** Get copies and Format text stay charged until their replies are written; every delivered
** reply counts in the peer's unsent bytes until written, and too many hold the session.
*/
#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/checked.h"
#include "base/log.h"
#include "core/autograd.h"
#include "core/cancel.h"
#include "core/ops.h"
#include "core/print.h"
#include "core/rng.h"
#include "rpc/fastpack.h"
#include "rpc/fastunpack.h"
#include "rpc/internal.h"

/* ---- protobuf-c allocation (the arena: rpc/internal.h) ---- */

static void *arena_alloc(void *ud, size_t n)
{
    struct pb_arena *a = ud;
    size_t need = (n + 15) & ~(size_t)15;
    if (n <= PB_ARENA_BYTES && need <= PB_ARENA_BYTES - a->used) {
        void *p = a->bytes + a->used;
        a->used += need;
        return p;
    }
    int64_t chunk = n > (size_t)INT64_MAX - 32
                        ? INT64_MAX
                        : (int64_t)((n + 15) & ~(size_t)15) + PB_MALLOC_OVERHEAD;
    a->overflow = td_sat_add(a->overflow, chunk);
    return td_malloc(n);
}

static void arena_free(void *ud, void *p)
{
    struct pb_arena *a = ud;
    uintptr_t q = (uintptr_t)p, lo = (uintptr_t)a->bytes;
    if (q >= lo && q < lo + PB_ARENA_BYTES) {
        return; /* released with the job */
    }
    td_free(p);
}

static void arena_init(struct pb_arena *a)
{
    a->allocator = (ProtobufCAllocator){.alloc = arena_alloc,
                                        .free = arena_free,
                                        .allocator_data = a};
    a->used = 0;
    a->overflow = 0;
}

/* ---- wire mappings, generated from the single lists ---- */

static Tensord__StatusCode wire_status(int code)
{
    switch (code) {
    case TD_OK: return TENSORD__STATUS_CODE__OK;
#define TD_ERR_WIRE(name, wire, msg)                                                               \
    case name: return TENSORD__STATUS_CODE__##wire;
        TD_ERRORS(TD_ERR_WIRE)
#undef TD_ERR_WIRE
    default: return TENSORD__STATUS_CODE__INTERNAL;
    }
}

int td_rpc_wire_op(int w, enum td_op_id *out)
{
    switch (w) {
#define OP(id, name, nin, inplace, flags, gname, ghook, sig, shape, dtype, fwd, make, bwd, cost)   \
    case TENSORD__OP__OP_##id:                                                                     \
        *out = TD_OP_##id;                                                                         \
        return 0;
#include "core/ops.def"
#undef OP
    default: return -1;
    }
}

/* Wire dtype -> core dtype. DTYPE_UNSPECIFIED yields `dflt` (pass -1 to make it an error). */
static int wire_dtype(int w, int dflt, enum td_dtype *out, struct td_err *err)
{
    switch (w) {
    case TENSORD__DTYPE__FLOAT32: *out = TD_DTYPE_F32; return 0;
    case TENSORD__DTYPE__FLOAT64: *out = TD_DTYPE_F64; return 0;
    case TENSORD__DTYPE__INT32: *out = TD_DTYPE_I32; return 0;
    case TENSORD__DTYPE__INT64: *out = TD_DTYPE_I64; return 0;
    case TENSORD__DTYPE__BOOL: *out = TD_DTYPE_BOOL; return 0;
    case TENSORD__DTYPE__DTYPE_UNSPECIFIED:
        if (dflt >= 0) {
            *out = (enum td_dtype)dflt;
            return 0;
        }
        return td_err_set(err, TD_EDTYPE, "dtype must be given");
    default: return td_err_set(err, TD_EDTYPE, "unknown dtype %d", w);
    }
}

static Tensord__DType dtype_wire(enum td_dtype dt)
{
    static const Tensord__DType map[TD_DTYPE_COUNT] = {
        [TD_DTYPE_BOOL] = TENSORD__DTYPE__BOOL,   [TD_DTYPE_I32] = TENSORD__DTYPE__INT32,
        [TD_DTYPE_I64] = TENSORD__DTYPE__INT64,   [TD_DTYPE_F32] = TENSORD__DTYPE__FLOAT32,
        [TD_DTYPE_F64] = TENSORD__DTYPE__FLOAT64,
    };
    return map[dt];
}

static int wire_scalar(const Tensord__Scalar *w, const char *what, struct td_scalar *out,
                       struct td_err *err)
{
    switch (w != NULL ? w->value_case : TENSORD__SCALAR__VALUE__NOT_SET) {
    case TENSORD__SCALAR__VALUE_F: *out = td_scalar_f(w->f); return 0;
    case TENSORD__SCALAR__VALUE_I: *out = td_scalar_i(w->i); return 0;
    case TENSORD__SCALAR__VALUE_B: *out = td_scalar_b(w->b != 0); return 0;
    default: return td_err_set(err, TD_EINVAL, "%s: a scalar needs a value (f, i or b)", what);
    }
}

/* Validates a shape from the wire into a local array. */
static int wire_shape(size_t n, const int64_t *dims, enum td_dtype dt, int64_t *shape, int *ndim,
                      int64_t *nbytes, struct td_err *err)
{
    if (n > TD_MAX_DIMS) {
        return td_err_set(err, TD_EINVAL, "shape has %zu dims; at most %d are supported", n,
                          TD_MAX_DIMS);
    }
    for (size_t i = 0; i < n; i++) {
        shape[i] = dims[i];
    }
    *ndim = (int)n;
    return td_shape_check(shape, (int)n, dt, NULL, nbytes, err);
}

void td_frame_header_put(uint8_t *dst, uint32_t meta_len, uint64_t data_len)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* Every reply passes here: two swapped stores instead of twelve shifted bytes. */
    uint32_t m = __builtin_bswap32(meta_len);
    uint64_t d = __builtin_bswap64(data_len);
    memcpy(dst, &m, sizeof m);
    memcpy(dst + 4, &d, sizeof d);
#else
    for (int i = 0; i < 4; i++) {
        dst[i] = (uint8_t)(meta_len >> (24 - 8 * i));
    }
    for (int i = 0; i < 8; i++) {
        dst[4 + i] = (uint8_t)(data_len >> (56 - 8 * i));
    }
#endif
}

void td_frame_header_get(const uint8_t *src, uint32_t *meta_len, uint64_t *data_len)
{
    uint32_t m = 0;
    uint64_t d = 0;
    for (int i = 0; i < 4; i++) {
        m = m << 8 | src[i];
    }
    for (int i = 4; i < 12; i++) {
        d = d << 8 | src[i];
    }
    *meta_len = m;
    *data_len = d;
}

/* One line per failed request (debug level: a hostile client must not flood the log), and per
** refused authentication (warn). */
static void log_failure(const struct td_rpc_peer *p, const Tensord__Request *req, int status,
                        const char *msg)
{
    const struct td_rpc_request *row = td_rpc_request_of((int)req->body_case);
    const char *kind = row != NULL ? row->name : NULL;
    if (status == TENSORD__STATUS_CODE__UNAUTHENTICATED) {
        td_log(TD_LOG_WARN, "auth_failed", "conn=%llu peer=%s req=%llu msg=\"%s\"",
               (unsigned long long)p->conn_id, p->addr[0] != '\0' ? p->addr : "-",
               (unsigned long long)req->id, msg);
    } else if (status != TENSORD__STATUS_CODE__OK && td_log_min_level <= TD_LOG_DEBUG) {
        td_log(TD_LOG_DEBUG, "request_failed",
               "conn=%llu session=%s req=%llu kind=%s "
               "status=%d msg=\"%s\"",
               (unsigned long long)p->conn_id, p->session != NULL ? p->session->token_tag : "-",
               (unsigned long long)req->id, kind != NULL ? kind : "?", status, msg);
    }
}


/* ---- the job cache ----
** A request's job (~1.1 KiB with its arena: too large for malloc's per-thread fast bins) is the
** one allocation every request makes. Freed jobs are kept on a list, at most JOB_CACHE_MAX (so
** at most ~36 KiB), and reused; the list empties when the last peer goes, so an idle daemon
** holds none, and at td_rpc_server_close. Cached jobs stay counted as allocated bytes (they
** are td_malloc'd), which is what a job's memory is until the list gives it back. Off under
** AddressSanitizer, so a use after free of a job is still caught. Loop thread only. */
#define JOB_CACHE_MAX 32
#define JOB_CACHE_ON TD_ALLOC_REUSE

static struct rpc_job *job_alloc(struct td_rpc_server *srv)
{
    if (srv->job_cache_n > 0) {
        struct rpc_job *j = srv->job_cache;
        srv->job_cache = *(void **)j;
        srv->job_cache_n--;
        return j;
    }
    return td_malloc(sizeof(struct rpc_job));
}

static void job_release(struct td_rpc_server *srv, struct rpc_job *j)
{
    if (JOB_CACHE_ON && srv->job_cache_n < JOB_CACHE_MAX) {
        *(void **)j = srv->job_cache;
        srv->job_cache = j;
        srv->job_cache_n++;
        return;
    }
    td_free(j);
}

void td_rpc_job_cache_empty(struct td_rpc_server *srv)
{
    while (srv->job_cache_n > 0) {
        void *j = srv->job_cache;
        srv->job_cache = *(void **)j;
        srv->job_cache_n--;
        td_free(j);
    }
    srv->job_cache = NULL;
}

int td_rpc_peer_new(struct td_rpc_peer **out, struct td_rpc_server *srv, td_rpc_reply_fn *reply,
                    void *user)
{
    struct td_rpc_peer *p = td_calloc(1, sizeof *p);
    if (p == NULL) {
        return TD_ENOMEM;
    }
    p->srv = srv;
    p->reply = reply;
    p->user = user;
    p->refs = 1;
    srv->peers_alive++;
    srv->stats.connections++;
    srv->stats.connections_total++;
    *out = p;
    return 0;
}

static void peer_unref(struct td_rpc_peer *p)
{
    if (--p->refs == 0) {
        struct td_rpc_server *srv = p->srv;
        td_session_unref(p->session);
        td_free(p);
        if (--srv->peers_alive == 0) {
            td_rpc_job_cache_empty(srv); /* nobody connected: give the memory back */
        }
    }
}

static void peer_set_session(struct td_rpc_peer *p, struct td_session *s)
{
    if (p->session != NULL) {
        td_session_detach(p->session, p->srv->now_ms());
        td_session_unref(p->session);
    }
    p->session = s;
    if (s != NULL) {
        td_session_attach(s);
    }
}

/* ---- backpressure: reply bytes not yet written ----
**
** Every reply frame rpc delivers carries a release (struct sent) that net runs once the frame
** and its data section are written or dropped. Until then its bytes count in the peer's
** unsent_bytes; past srv->peer_max_unsent_bytes the peer holds its session (no new job starts,
** so a client that sends and never reads cannot make the server render replies without end),
** and the hold ends when the backlog drains to half, or the peer closes. A Get's pinned bytes
** and a Format's text stay charged to the session's quota until the same moment. */

struct sent {
    struct td_rpc_peer *peer;   /* reference */
    int64_t bytes;              /* counted in peer->unsent_bytes */
    struct td_buffer *pin;      /* Get: the bytes the data section points into */
    struct td_session *session; /* reference, when pin or charge is set: keeps the
                                            ** quota they are charged to alive */
    int64_t charge;             /* reply bytes charged to session's quota (Format) */
};

static void peer_unhold(struct td_rpc_peer *p)
{
    struct td_session *s = p->held;
    if (s != NULL) {
        p->held = NULL;
        td_session_release(s); /* may start jobs, and deliver their replies, before returning */
        td_session_unref(s);
    }
}

static void peer_unsent_add(struct td_rpc_peer *p, int64_t n)
{
    int64_t max = p->srv->peer_max_unsent_bytes;
    p->unsent_bytes = td_sat_add(p->unsent_bytes, n);
    if (max > 0 && p->unsent_bytes > max && p->held == NULL && !p->closed && p->session != NULL) {
        p->held = td_session_ref(p->session);
        td_session_hold(p->held);
    }
}

static void peer_unsent_sub(struct td_rpc_peer *p, int64_t n)
{
    p->unsent_bytes -= n;
    if (p->held != NULL && p->unsent_bytes <= p->srv->peer_max_unsent_bytes / 2) {
        peer_unhold(p);
    }
}

/* Every frame encode_response makes has its struct sent in front of it, in the same block
** (one allocation per reply, not two): SENT_ROOM bytes, a multiple of 16 so the frame keeps
** td_malloc's alignment. Freeing the struct frees the frame. */
#define SENT_ROOM ((sizeof(struct sent) + 15) & ~(size_t)15)

static struct sent *frame_sent(const struct td_rpc_reply *r)
{
    return (struct sent *)(void *)(r->frame - SENT_ROOM);
}

/* Frees x's holdings (the pin, the quota charge) and its block (the frame with it) without
** touching a peer. */
static void sent_drop(struct sent *x)
{
    td_buffer_unref(x->pin);
    if (x->session != NULL) {
        td_quota_release(&x->session->quota, x->charge);
        td_session_unref(x->session);
    }
    td_free(x);
}

/* The reply's release: net has written (or dropped) its frame and data section. Frees the
** frame. */
static void sent_release(void *arg)
{
    struct sent *x = arg;
    struct td_rpc_peer *p = x->peer;
    int64_t bytes = x->bytes;
    sent_drop(x);
    peer_unsent_sub(p, bytes);
    peer_unref(p);
}

/* ---- reply frames ---- */

static void reply_release_data(struct td_rpc_reply *r)
{
    if (r->release != NULL) {
        r->release(r->release_arg);
        r->release = NULL;
    }
}

/* A frame for a Response of n bytes, after its struct sent (zeroed), or NULL. */
static uint8_t *frame_alloc(size_t n)
{
    if (n > SIZE_MAX - SENT_ROOM - TD_FRAME_HEADER_BYTES) {
        return NULL;
    }
    uint8_t *block = td_malloc(SENT_ROOM + TD_FRAME_HEADER_BYTES + n);
    if (block == NULL) {
        return NULL;
    }
    *(struct sent *)(void *)block = (struct sent){0};
    return block + SENT_ROOM;
}

/* Encodes resp (whose id and status the caller set) into r->frame. On allocation failure, tries
** once more with a bare "out of memory" status; if even that fails, the connection is closed. */
static void encode_response(Tensord__Response *resp, struct td_rpc_reply *r)
{
    struct td_fastpack_plan plan;
    bool fast = td_fastpack_plan(resp, &plan);
    size_t n = fast ? plan.total : tensord__response__get_packed_size(resp);
    uint8_t *buf = frame_alloc(n);
    if (buf == NULL) {
        Tensord__Status st = TENSORD__STATUS__INIT;
        st.code = TENSORD__STATUS_CODE__OUT_OF_MEMORY;
        st.message = "out of memory while encoding the reply";
        Tensord__Response bare = TENSORD__RESPONSE__INIT;
        bare.id = resp->id;
        bare.status = &st;
        reply_release_data(r);
        r->data = NULL;
        r->data_len = 0;
        n = tensord__response__get_packed_size(&bare);
        buf = frame_alloc(n);
        if (buf == NULL) {
            r->frame = NULL;
            r->frame_len = 0;
            r->close_after = true;
            return;
        }
        resp = &bare;
        tensord__response__pack(resp, buf + TD_FRAME_HEADER_BYTES);
    } else if (fast) {
        td_fastpack(resp, &plan, buf + TD_FRAME_HEADER_BYTES);
    } else {
        tensord__response__pack(resp, buf + TD_FRAME_HEADER_BYTES);
    }
    td_frame_header_put(buf, (uint32_t)n, r->data_len);
    r->frame = buf;
    r->frame_len = TD_FRAME_HEADER_BYTES + n;
}

/* Hands r (whose release is NULL; its frame from encode_response, or NULL) to the peer, with
** the frame's struct sent (whatever holdings the caller put there) as its release, its bytes
** counted as unsent until then; a NULL frame tells the connection to close. A peer that has
** gone gets nothing: the frame and its holdings are freed here. */
static void deliver(struct td_rpc_peer *p, struct td_rpc_reply *r)
{
    if (r->frame == NULL) {
        if (!p->closed) {
            p->reply(p, r, p->user);
        }
        return;
    }
    struct sent *x = frame_sent(r);
    if (p->closed) {
        sent_drop(x);
        r->frame = NULL;
        return;
    }
    x->peer = p;
    p->refs++;
    x->bytes = td_sat_add((int64_t)r->frame_len, (int64_t)r->data_len);
    r->release = sent_release;
    r->release_arg = x;
    peer_unsent_add(p, x->bytes);
    p->reply(p, r, p->user);
}

static void encode_status(Tensord__Response *resp, Tensord__Status *st, const struct td_err *err)
{
    st->code = wire_status(err->code);
    st->message = err->code != TD_OK ? (char *)err->msg : "";
    resp->status = st;
}

void td_rpc_reply_error(struct td_rpc_peer *p, uint64_t id, int code, const char *msg,
                        bool close_after)
{
    struct td_err err;
    td_err_set(&err, code, "%s", msg);
    Tensord__Response resp = TENSORD__RESPONSE__INIT;
    Tensord__Status st = TENSORD__STATUS__INIT;
    resp.id = id;
    encode_status(&resp, &st, &err);
    struct td_rpc_reply r = {.close_after = close_after};
    encode_response(&resp, &r);
    deliver(p, &r);
}

/* Puts a new tensor (taken) under `out` with its requires_grad flag, and describes it in res. */
static int publish(struct td_session *s, uint64_t out, struct td_tensor *t, bool requires_grad,
                   struct result *res, struct td_err *err)
{
    int rc;
    if ((rc = td_autograd_set_requires_grad(t, requires_grad, err)) != 0) {
        td_tensor_unref(t);
        return rc;
    }
    if ((rc = td_session_put(s, out, t, err)) != 0) {
        return rc;
    }
    res->tensor = t;
    res->handle = out;
    return 0;
}

int td_rpc_run_create(struct rpc_job *j, struct td_session *s, struct result *res,
                      struct td_err *err)
{
    const Tensord__Create *m = j->req->create;
    enum td_dtype dt = TD_DTYPE_F32;
    int64_t shape[TD_MAX_DIMS], nbytes;
    int ndim, rc;
    if ((rc = wire_dtype(m->dtype, -1, &dt, err)) != 0 ||
        (rc = wire_shape(m->n_shape, m->shape, dt, shape, &ndim, &nbytes, err)) != 0 ||
        (rc = td_session_check_out(s, m->out, err)) != 0) {
        return rc;
    }
    if ((uint64_t)nbytes != j->data_len) {
        char sh[128];
        return td_err_set(err, TD_EINVAL,
                          "data section has %zu bytes, but shape %s of %s needs %lld", j->data_len,
                          td_shape_str(sh, sizeof sh, shape, ndim), td_dtype_name(dt),
                          (long long)nbytes);
    }
    struct td_tensor *t = NULL;
    void *data = j->data;
    if (data == NULL) {
        /* An empty tensor's data section is empty; storage still wants a buffer. */
        data = td_malloc(1);
        if (data == NULL) {
            return td_err_code(err, TD_ENOMEM);
        }
    }
    j->data = NULL;
    /* Bytes td_rpc_data_alloc charged to this session are charged already: the tensor takes
    ** that charge over instead of charging them twice (a 64 MiB Create fits a 100 MiB quota). */
    bool charged = j->data_session == s && j->data_charge == (int64_t)j->data_len &&
                   j->data_len > 0;
    if ((rc = td_tensor_adopt(&t, dt, shape, ndim, data, j->data_len, charged ? NULL : &s->quota,
                              err)) != 0) {
        return rc; /* the data is freed; its charge goes with the job */
    }
    if (charged) {
        t->storage->buf->quota = &s->quota;
        j->data_charge = 0;
    }
    return publish(s, m->out, t, m->requires_grad, res, err);
}

int td_rpc_run_full(struct rpc_job *j, struct td_session *s, struct result *res, struct td_err *err)
{
    const Tensord__Full *m = j->req->full;
    struct td_scalar v;
    enum td_dtype dt = TD_DTYPE_F32;
    int64_t shape[TD_MAX_DIMS];
    int ndim, rc;
    if ((rc = wire_scalar(m->value, "full value", &v, err)) != 0 ||
        (rc = wire_dtype(m->dtype, (int)td_scalar_dtype(v), &dt, err)) != 0 ||
        (rc = wire_shape(m->n_shape, m->shape, dt, shape, &ndim, NULL, err)) != 0 ||
        (rc = td_session_check_out(s, m->out, err)) != 0) {
        return rc;
    }
    struct td_tensor *t = NULL;
    if ((rc = td_tensor_full(&t, dt, shape, ndim, v, &s->quota, err)) != 0) {
        return rc;
    }
    return publish(s, m->out, t, m->requires_grad, res, err);
}

/* generator=: a torch.Generator's stream is an int64 tensor of TD_RNG_STATE_BYTES / 8 words
** under `handle` in the handle table, whose bytes are torch's CPU generator state (get_state's
** ByteTensor; the client creates it; so generators are charged, capped, freed and snapshotted
** as tensors are). Resolves it into *r, made writable first so that gen_store cannot fail after
** the op ran; handle 0 is the session's generator (*t NULL). */
static int gen_resolve(struct td_session *s, uint64_t handle, struct td_tensor **t,
                       struct td_rng *r, struct td_err *err)
{
    *t = NULL;
    if (handle == 0) {
        const struct td_rng *own = td_session_rng(s);
        if (own == NULL) {
            return td_err_code(err, TD_ENOMEM);
        }
        *r = *own;
        return 0;
    }
    struct td_tensor *g;
    int rc = td_session_lookup(s, handle, &g, err);
    if (rc != 0) {
        return rc;
    }
    if (g->dtype != TD_DTYPE_I64 || g->ndim != 1 || g->numel != TD_RNG_STATE_BYTES / 8 ||
        !td_tensor_is_contiguous(g)) {
        return td_err_set(err, TD_EINVAL,
                          "handle %llu is not a generator state (torch's %d-byte CPU generator "
                          "state as an int64 tensor of %d elements)",
                          (unsigned long long)handle, TD_RNG_STATE_BYTES, TD_RNG_STATE_BYTES / 8);
    }
    if ((rc = td_rng_set_state(r, td_tensor_data(g), TD_RNG_STATE_BYTES, err)) != 0 ||
        (rc = td_tensor_prepare_write(g, err)) != 0) {
        return rc;
    }
    *t = g;
    return 0;
}

/* Writes the stream's advanced state back where gen_resolve found it. */
static void gen_store(struct td_session *s, struct td_tensor *t, const struct td_rng *r)
{
    if (t == NULL) {
        *s->rng = *r; /* made by gen_resolve */
    } else {
        td_rng_get_state(r, td_tensor_data(t));
        t->storage->version++; /* a write, as Write's: a graph that saved it refuses backward */
    }
}

int td_rpc_run_rand(struct rpc_job *j, struct td_session *s, struct result *res, struct td_err *err)
{
    const Tensord__Rand *m = j->req->rand;
    enum td_dtype dt = TD_DTYPE_F32;
    int64_t shape[TD_MAX_DIMS];
    int ndim, rc;
    if ((rc = wire_dtype(m->dtype, TD_DTYPE_DEFAULT_FLOAT, &dt, err)) != 0 ||
        (rc = wire_shape(m->n_shape, m->shape, dt, shape, &ndim, NULL, err)) != 0 ||
        (rc = td_session_check_out(s, m->out, err)) != 0) {
        return rc;
    }
    struct td_tensor *t = NULL, *gen = NULL;
    struct td_rng rng;
    if ((rc = gen_resolve(s, m->generator, &gen, &rng, err)) != 0) {
        return rc;
    }
    if (m->distribution == TENSORD__DISTRIBUTION__UNIFORM) {
        rc = td_tensor_rand(&t, dt, shape, ndim, &rng, &s->quota, err);
    } else if (m->distribution == TENSORD__DISTRIBUTION__NORMAL) {
        rc = td_tensor_randn(&t, dt, shape, ndim, &rng, &s->quota, err);
    } else {
        rc = td_err_set(err, TD_EINVAL, "unknown distribution %d", (int)m->distribution);
    }
    if (rc != 0) {
        return rc;
    }
    gen_store(s, gen, &rng);
    return publish(s, m->out, t, m->requires_grad, res, err);
}

int td_rpc_run_arange(struct rpc_job *j, struct td_session *s, struct result *res,
                      struct td_err *err)
{
    const Tensord__Arange *m = j->req->arange;
    struct td_scalar start = td_scalar_i(0), end, step = td_scalar_i(1);
    enum td_dtype dt = TD_DTYPE_F32;
    int rc;
    if ((m->start != NULL && (rc = wire_scalar(m->start, "arange start", &start, err)) != 0) ||
        (rc = wire_scalar(m->end, "arange end", &end, err)) != 0 ||
        (m->step != NULL && (rc = wire_scalar(m->step, "arange step", &step, err)) != 0) ||
        (rc = wire_dtype(m->dtype, (int)td_arange_dtype(start, end, step), &dt, err)) != 0 ||
        (rc = td_session_check_out(s, m->out, err)) != 0) {
        return rc;
    }
    struct td_tensor *t = NULL;
    if ((rc = td_tensor_arange(&t, dt, start, end, step, &s->quota, err)) != 0) {
        return rc;
    }
    return publish(s, m->out, t, false, res, err);
}

/* Resolves RunOp's operands against the handle table. */
static int resolve_operands(const Tensord__RunOp *m, struct td_session *s, enum td_op_id *op,
                            struct td_operand *in, struct td_err *err)
{
    int rc;
    if (td_rpc_wire_op(m->op, op) != 0) {
        return td_err_set(err, TD_EOP, "unknown op code %d", (int)m->op);
    }
    const struct td_op_def *def = &td_ops[*op];
    if (def->nin >= 0 ? m->n_inputs != (size_t)def->nin : m->n_inputs > TD_OP_MAX_INPUTS) {
        return td_err_set(err, TD_EINVAL, "%s takes %d inputs, got %zu", def->name, def->nin,
                          m->n_inputs);
    }
    for (size_t i = 0; i < m->n_inputs; i++) {
        const Tensord__Operand *o = m->inputs[i];
        in[i].t = NULL;
        if (o->value_case == TENSORD__OPERAND__VALUE_HANDLE) {
            if ((rc = td_session_lookup(s, o->handle, &in[i].t, err)) != 0) {
                return rc;
            }
        } else if ((rc = wire_scalar(o->scalar, def->name, &in[i].s, err)) != 0 ||
                   (rc = td_op_check_number(*op, (int)i, in[i].s, err)) != 0) {
            return rc;
        }
    }
    return 0;
}

/* Refuses, before an op runs, the bytes its result and temporaries need when they cannot fit
** q or a parent as they stand (the charges would fail part way anyway, after the work).
** The message is the quota's own. */
static int check_room(const struct td_quota *q, int64_t need, struct td_err *err)
{
    for (const struct td_quota *c = q; need > 0 && c != NULL; c = c->parent) {
        if (c->limit > 0 && need > c->limit - atomic_load(&c->used)) {
            return td_err_set(err, TD_EQUOTA, "%s quota exceeded: %lld bytes", c->name,
                              (long long)c->limit);
        }
    }
    return 0;
}

/* OpArgs from the wire, validated. */
static int wire_args(const Tensord__OpArgs *w, struct td_op_args *a, struct td_err *err)
{
    td_op_args_init(a);
    if (w == NULL) {
        return 0;
    }
    int rc;
    if (w->n_dims > TD_MAX_DIMS) {
        return td_err_set(err, TD_EINVAL, "%zu dims given; at most %d are supported", w->n_dims,
                          TD_MAX_DIMS);
    }
    for (size_t i = 0; i < w->n_dims; i++) {
        a->dims[i] = w->dims[i];
    }
    a->ndims = (int)w->n_dims;
    a->has_dims = w->has_dims || w->n_dims > 0;
    a->keepdim = w->keepdim;
    a->dim = w->dim;
    a->dim2 = w->dim2;
    a->has_dim = w->has_dim;
    a->start = w->start;
    a->end = w->end;
    a->step = w->step;
    if (w->min != NULL) {
        if ((rc = wire_scalar(w->min, "min", &a->min, err)) != 0) {
            return rc;
        }
        a->has_min = true;
    }
    if (w->max != NULL) {
        if ((rc = wire_scalar(w->max, "max", &a->max, err)) != 0) {
            return rc;
        }
        a->has_max = true;
    }
    if (w->dtype != TENSORD__DTYPE__DTYPE_UNSPECIFIED) {
        if ((rc = wire_dtype(w->dtype, -1, &a->dtype, err)) != 0) {
            return rc;
        }
        a->has_dtype = true;
    }
    if (w->has_correction) {
        a->correction = w->correction;
    }
    a->index_mask = w->index_mask;
    a->accumulate = w->accumulate;
    a->num_samples = w->num_samples;
    a->replacement = w->replacement;
    a->k = w->k;
    a->descending = w->descending;
    a->sorted = w->sorted;
    a->stable = w->stable;
    a->rtol = w->rtol;
    a->atol = w->atol;
    a->equal_nan = w->equal_nan;
    const Tensord__Scalar *ws[3] = {w->value, w->alpha, w->beta};
    struct td_scalar *as[3] = {&a->value, &a->alpha, &a->beta};
    bool *has[3] = {&a->has_value, &a->has_alpha, &a->has_beta};
    for (int k = 0; k < 3; k++) {
        if (ws[k] != NULL) {
            if ((rc = wire_scalar(ws[k],
                                  k == 0   ? "value"
                                  : k == 1 ? "alpha"
                                           : "beta",
                                  as[k], err)) != 0) {
                return rc;
            }
            *has[k] = true;
        }
    }
    a->decimals = w->decimals;
    a->eps = w->eps;
    a->momentum = w->momentum;
    a->training = w->training;
    a->absent = w->absent;
    a->has_padding_idx = w->has_padding_idx;
    a->padding_idx = w->padding_idx;
    if (w->mode != NULL && w->mode[0] != '\0') {
        static const char *const modes[] = {"constant", "reflect", "replicate", "circular"};
        a->pad_mode = -1;
        for (int m = 0; m < 4; m++) {
            if (strcmp(w->mode, modes[m]) == 0) {
                a->pad_mode = m;
            }
        }
        if (a->pad_mode < 0) {
            return td_err_set(err, TD_EUNSUP, "Unrecognised padding mode %.64s", w->mode);
        }
    }
    if (w->equation != NULL) {
        size_t len = strlen(w->equation);
        if (len >= sizeof a->equation) {
            return td_err_set(err, TD_EINVAL,
                              "einsum(): the equation is %zu characters long; at most %zu are "
                              "supported",
                              len, sizeof a->equation - 1);
        }
        memcpy(a->equation, w->equation, len + 1);
    }
    if (w->function_name != NULL && w->function_name[0] != '\0') {
        size_t len = strlen(w->function_name);
        bool ok = len < sizeof a->equation;
        for (size_t i = 0; ok && i < len; i++) {
            char ch = w->function_name[i];
            ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                 ch == '_';
        }
        if (!ok) {
            return td_err_set(err, TD_EINVAL,
                              "a Function's name is 1 to %zu characters of [A-Za-z0-9_]",
                              sizeof a->equation - 1);
        }
        memcpy(a->equation, w->function_name, len + 1);
    }
    a->function_id = w->function_id;
    if (w->n_shifts > TD_MAX_DIMS) {
        return td_err_set(err, TD_EINVAL, "%zu shifts given; at most %d are supported", w->n_shifts,
                          TD_MAX_DIMS);
    }
    for (size_t i = 0; i < w->n_shifts; i++) {
        a->shifts[i] = w->shifts[i];
    }
    a->nshifts = (int)w->n_shifts;
    if (w->reduction != NULL && w->reduction[0] != '\0') {
        if (strcmp(w->reduction, "mean") == 0) {
            a->reduction = TD_REDUCTION_MEAN;
        } else if (strcmp(w->reduction, "sum") == 0) {
            a->reduction = TD_REDUCTION_SUM;
        } else if (strcmp(w->reduction, "none") == 0) {
            a->reduction = TD_REDUCTION_NONE;
        } else {
            return td_err_set(err, TD_EINVAL, "%.64s is not a valid value for reduction",
                              w->reduction);
        }
    }
    a->ignore_index = w->ignore_index;
    a->label_smoothing = w->label_smoothing;
    /* nn, convolution and pooling */
    const size_t nl[5] = {w->n_stride, w->n_padding, w->n_dilation, w->n_kernel_size,
                          w->n_output_size};
    const int64_t *wl[5] = {w->stride, w->padding, w->dilation, w->kernel_size, w->output_size};
    int64_t *al[5] = {a->stride, a->padding, a->dilation, a->kernel_size, a->output_size};
    int *an[5] = {&a->nstride, &a->npadding, &a->ndilation, &a->nkernel_size, &a->noutput_size};
    for (int k = 0; k < 5; k++) {
        if (nl[k] > TD_MAX_DIMS) {
            return td_err_set(err, TD_EINVAL, "%zu values in a size list; at most %d are supported",
                              nl[k], TD_MAX_DIMS);
        }
        for (size_t i = 0; i < nl[k]; i++) {
            al[k][i] = wl[k][i];
        }
        *an[k] = (int)nl[k];
    }
    a->groups = w->groups;
    a->ceil_mode = w->ceil_mode;
    a->count_include_pad = w->count_include_pad;
    a->divisor_override = w->divisor_override;
    if (w->padding_mode != NULL && w->padding_mode[0] != '\0') {
        if (strcmp(w->padding_mode, "valid") == 0) {
            a->padding_mode = TD_PAD_VALID;
        } else if (strcmp(w->padding_mode, "same") == 0) {
            a->padding_mode = TD_PAD_SAME;
        } else {
            return td_err_set(err, TD_EINVAL, "Invalid padding string: '%.64s'", w->padding_mode);
        }
    }
    if (w->rounding_mode != NULL && w->rounding_mode[0] != '\0') {
        if (strcmp(w->rounding_mode, "trunc") == 0) {
            a->rounding_mode = TD_ROUND_TRUNC;
        } else if (strcmp(w->rounding_mode, "floor") == 0) {
            a->rounding_mode = TD_ROUND_FLOOR;
        } else {
            return td_err_set(err, TD_EINVAL,
                              "div expected rounding_mode to be one of None, 'trunc', or 'floor' "
                              "but found '%.64s'",
                              w->rounding_mode);
        }
    }
    return 0;
}

/* The OpArgs cost_op decoded last on this thread, for td_rpc_run_op of the same job when
** nothing ran between (j->pre_ok): a tiny op then fills the 944-byte struct once, not twice.
** Per thread, not per job: a job holds no 944 bytes while it waits in a queue. */
static _Thread_local struct {
    const struct rpc_job *job; /* whose args these are, or NULL */
    bool defaults; /* args were filled by td_op_args_init (a request without OpArgs) and are
                   ** written since only where td_op_args_reset_call resets them */
    struct td_op_args args;
    struct td_op_plan plan; /* the cost rule's shape and dtypes for job (td_op_apply_planned) */
} pre_args;

int td_rpc_run_op(struct rpc_job *j, struct td_session *s, struct result *res, struct td_err *err)
{
    const Tensord__RunOp *m = j->req->run_op;
    struct td_operand in[TD_OP_MAX_INPUTS];
    enum td_op_id op;
    int rc;
    if (m->n_inputs > TD_OP_MAX_INPUTS) {
        return td_err_set(err, TD_EINVAL, "too many inputs: %zu", m->n_inputs);
    }
    if (j->pre_ok) {
        /* Resolved by cost_op just before, on this thread, with nothing run between. */
        op = j->pre_op;
        memcpy(in, j->pre_in, sizeof in[0] * m->n_inputs);
    } else if ((rc = resolve_operands(m, s, &op, in, err)) != 0) {
        return rc;
    }
    uint64_t out = m->out;
    if (m->inplace) {
        if (!td_ops[op].has_inplace) {
            return td_err_set(err, TD_EINVAL, "%s has no in-place form", td_ops[op].name);
        }
        if (m->n_inputs == 0 || m->inputs[0]->value_case != TENSORD__OPERAND__VALUE_HANDLE) {
            return td_err_set(err, TD_EINVAL, "%s_: the first input must be a tensor handle",
                              td_ops[op].name);
        }
        if (out != 0 && out != m->inputs[0]->handle) {
            return td_err_set(err, TD_EINVAL, "%s_: out must be 0 or the first input's handle",
                              td_ops[op].name);
        }
        out = m->inputs[0]->handle;
    } else if ((rc = td_session_check_out(s, out, err)) != 0) {
        return rc;
    }
    /* cost_op's, when it decoded them for this job just before on this thread (pre_ok: nothing
    ** ran between); else decoded here. Either way they are this request's alone until it
    ** returns, and no longer cost_op's. */
    struct td_op_args local_args;
    struct td_op_args *ap = &local_args;
    const struct td_op_plan *plan = NULL;
    if (j->pre_ok && pre_args.job == j) {
        ap = &pre_args.args;
        plan = &pre_args.plan;
    } else if ((rc = wire_args(m->args, ap, err)) != 0) {
        return rc;
    }
    pre_args.job = NULL;
    /* Only an op that draws gets a generator (ops.def's TD_OPF_RANDOM): resolving one copies
    ** its 2.5 KiB state. A generator= given to another op is still checked. */
    struct td_rng rng;
    struct td_tensor *gen = NULL;
    uint64_t gen_handle = m->args != NULL ? m->args->generator : 0;
    bool draws = (td_ops[op].flags & TD_OPF_RANDOM) != 0;
    if ((draws || gen_handle != 0) && (rc = gen_resolve(s, gen_handle, &gen, &rng, err)) != 0) {
        return rc;
    }
    /* A generator's state is written after the op ran: one that shares memory with an operand
    ** (bernoulli_ on the state itself, or on a view of it) would be overwritten by it. */
    for (size_t i = 0; gen != NULL && i < m->n_inputs; i++) {
        if (in[i].t != NULL && in[i].t->storage == gen->storage) {
            return td_err_set(err, TD_EINVAL,
                              "generator handle %llu shares memory with input %zu of %s",
                              (unsigned long long)m->args->generator, i, td_ops[op].name);
        }
    }
    ap->rng = draws ? &rng : NULL;
    ap->grad_enabled = !s->no_grad;
    if ((rc = check_room(&s->quota, j->need_bytes, err)) != 0) {
        return rc;
    }
    /* Outputs beyond the first (ops.def's `-> a, b`) go to out2 and out3 when asked for. */
    uint64_t outs[2] = {m->out2, m->out3};
    struct td_tensor *more[2] = {NULL, NULL};
    bool multi = td_op_nout(op) > 1;
    for (int i = 0; i < 2; i++) {
        if (outs[i] == 0) {
            continue;
        }
        if (i + 2 > td_op_nout(op) && !(i == 0 && (op == TD_OP_MAX || op == TD_OP_MIN))) {
            return td_err_set(err, TD_EINVAL, "%s has no output %d", td_ops[op].name, i + 2);
        }
        if (outs[i] == out || (i == 1 && outs[1] == outs[0])) {
            /* Checked here: `out` is not in the table yet, so check_out cannot see the clash. */
            return td_err_set(err, TD_EEXIST,
                              "handle %llu is already in use: out%d must differ "
                              "from out%s",
                              (unsigned long long)outs[i], i + 2, i == 1 ? " and out2" : "");
        }
        if ((rc = td_session_check_out(s, outs[i], err)) != 0) {
            return rc;
        }
        ap->want_more[i] = multi;
    }
    if (multi) {
        ap->more_out = more;
    }
    /* What op_apply would set in its private copy: with them set here it needs none. */
    ap->op = (int)op;
    ap->inplace = m->inplace;
    ap->quota = &s->quota;
    struct td_tensor *t = NULL;
    /* costed: job_cost sized this call and check_work_limit held it to --max-op-elements */
    if ((rc = td_op_apply_planned(op, in, (int)m->n_inputs, ap, m->inplace, &s->quota, plan, &t,
                                  err)) != 0) {
        td_tensor_unref(more[0]);
        td_tensor_unref(more[1]);
        return rc;
    }
    if (draws) {
        gen_store(s, gen, &rng);
    }
    /* max(dim) / min(dim) also give indices, as torch's (values, indices) pair, when asked. */
    if (m->out2 != 0 && !multi) {
        if (!ap->has_dim) {
            td_tensor_unref(t);
            return td_err_set(err, TD_EINVAL, "out2 is only for max and min with a dim");
        }
        if ((rc = td_op_apply(op == TD_OP_MAX ? TD_OP_ARGMAX : TD_OP_ARGMIN, in, 1, ap, false,
                              &s->quota, &more[0], err)) != 0) {
            td_tensor_unref(t);
            return rc;
        }
    }
    if (m->inplace) {
        td_tensor_unref(t); /* the table already holds self */
    } else if ((rc = td_session_put(s, out, t, err)) != 0) {
        td_tensor_unref(more[0]);
        td_tensor_unref(more[1]);
        return rc;
    }
    /* An output the op did not make (median without a dim has no indices) is refused, all or
    ** nothing, as a failed put is. */
    for (int i = 0; i < 2; i++) {
        if (outs[i] == 0) {
            td_tensor_unref(more[i]);
            continue;
        }
        if (more[i] == NULL) {
            rc = td_err_set(err, TD_EINVAL, "%s gives no output %d for these arguments",
                            td_ops[op].name, i + 2);
        } else if (rc == 0) {
            rc = td_session_put(s, outs[i], more[i], err);
            more[i] = NULL;
        }
        td_tensor_unref(more[i]);
    }
    if (rc != 0) {
        for (int i = 0; i < 2; i++) {
            if (outs[i] != 0) {
                td_session_free_handle(s, outs[i]);
            }
        }
        if (!m->inplace) {
            td_session_free_handle(s, out); /* all or nothing */
        }
        return rc;
    }
    res->tensor = t;
    res->handle = out;
    return 0;
}

int td_rpc_run_get(struct rpc_job *j, struct td_session *s, struct result *res, struct td_err *err)
{
    const Tensord__Get *m = j->req->get;
    struct td_tensor *t = NULL;
    int rc;
    if ((rc = td_session_lookup(s, m->handle, &t, err)) != 0) {
        return rc;
    }
    res->tensor = t;
    res->handle = m->handle;
    if (m->meta_only) {
        return 0;
    }
    uint64_t nbytes = td_tensor_nbytes(t);
    if (m->offset > nbytes) {
        return td_err_set(err, TD_EINVAL, "byte offset %llu is outside the tensor's %llu bytes",
                          (unsigned long long)m->offset, (unsigned long long)nbytes);
    }
    /* A length past the end reads to the end, so a client can ask for "the first chunk"
    ** before it knows the size. */
    res->offset = m->offset;
    res->length = m->length != 0 && m->length < nbytes - m->offset ? m->length : nbytes - m->offset;
    if (res->length == 0) {
        return 0;
    }
    if (td_tensor_is_contiguous(t)) {
        /* Zero copy: the reply points into the tensor's buffer, pinned until written. */
        j->pin = td_tensor_pin(t);
        j->reply.data = (const uint8_t *)td_tensor_data(t) + res->offset;
    } else {
        /* A view is gathered element by element, only the elements the chunk touches (chunks
        ** need not be element-aligned), into a tensor charged to the session's quota until the
        ** reply is written: an expanded view cannot make the server allocate outside every
        ** quota, and neither can a pipeline of such Gets whose replies nobody reads. */
        uint64_t es = td_dtype_size(t->dtype);
        uint64_t first = res->offset / es, end = (res->offset + res->length + es - 1) / es;
        int64_t n = (int64_t)(end - first);
        struct td_tensor *copy = NULL;
        if ((rc = td_tensor_empty(&copy, t->dtype, &n, 1, &s->quota, err)) != 0) {
            return rc;
        }
        td_tensor_copy_out_range(t, (int64_t)first, n, td_tensor_data(copy));
        j->pin = td_tensor_pin(copy);
        j->reply.data = (const uint8_t *)td_tensor_data(copy) + (res->offset - first * es);
        td_tensor_unref(copy);
    }
    j->reply.data_len = res->length;
    return 0;
}

int td_rpc_run_write(struct rpc_job *j, struct td_session *s, struct result *res,
                     struct td_err *err)
{
    const Tensord__Write *m = j->req->write;
    struct td_tensor *t = NULL;
    int rc;
    if ((rc = td_session_lookup(s, m->handle, &t, err)) != 0) {
        return rc;
    }
    uint64_t nbytes = td_tensor_nbytes(t);
    if (m->offset > nbytes || j->data_len > nbytes - m->offset) {
        return td_err_set(err, TD_EINVAL,
                          "write of %zu bytes at offset %llu is outside the tensor's %llu bytes",
                          j->data_len, (unsigned long long)m->offset, (unsigned long long)nbytes);
    }
    if (!td_tensor_is_contiguous(t)) {
        return td_err_set(err, TD_EINVAL,
                          "write needs a contiguous tensor; call contiguous() "
                          "first");
    }
    if (j->data_len != 0) {
        if ((rc = td_tensor_prepare_write(t, err)) != 0) {
            return rc;
        }
        memcpy((uint8_t *)td_tensor_data(t) + m->offset, j->data, j->data_len);
        /* Copied: the data section and its charge go now, not when the reply is written. */
        td_free(j->data);
        j->data = NULL;
        if (j->data_session != NULL) {
            td_quota_release(&j->data_session->quota, j->data_charge);
            j->data_charge = 0;
        }
    }
    res->tensor = t;
    res->handle = m->handle;
    return 0;
}

/* A Format's text charge: made by td_tensor_repr's reserve hook, at the bound its measured
** width gives, before any text is allocated. */
struct text_charge {
    struct td_quota *q;
    int64_t charged;
};

static int reserve_text(void *arg, int64_t text_bound, struct td_err *err)
{
    struct text_charge *c = arg;
    int rc = td_quota_charge_bytes(c->q, text_bound, err);
    if (rc == 0) {
        c->charged = text_bound;
    }
    return rc;
}

/* The text is charged to the session's quota from before it is rendered (at the bound the
** formatter's measured width gives, so rendering cannot take memory the quota does not have,
** and an honest Format is not refused for text it will not produce) until its reply is written
** (at its length): replies nobody reads stay inside the quota. */
int td_rpc_run_format(struct rpc_job *j, struct td_session *s, struct result *res,
                      struct td_err *err)
{
    struct td_tensor *t;
    int rc;
    if ((rc = td_session_lookup(s, j->req->format->handle, &t, err)) != 0) {
        return rc;
    }
    struct td_print_opts o;
    td_print_opts_default(&o);
    o.requires_grad = td_autograd_requires_grad(t);
    o.grad_fn = td_autograd_grad_fn_name(t);
    struct text_charge c = {&j->job.session->quota, 0};
    o.reserve = reserve_text;
    o.reserve_arg = &c;
    if ((rc = td_tensor_repr(t, &o, &res->text, err)) != 0) {
        td_quota_release(c.q, c.charged);
        return rc;
    }
    int64_t len = (int64_t)strlen(res->text);
    if (len <= c.charged) {
        td_quota_release(c.q, c.charged - len);
    } else if ((rc = td_quota_charge_bytes(c.q, len - c.charged, err)) != 0) {
        td_quota_release(c.q, c.charged);
        td_free(res->text);
        res->text = NULL;
        return rc;
    }
    j->reply_charge = len;
    return 0;
}

int td_rpc_run_grad(struct rpc_job *j, struct td_session *s, struct result *res, struct td_err *err)
{
    const Tensord__Grad *m = j->req->grad;
    struct td_tensor *t;
    int rc;
    if ((rc = td_session_lookup(s, m->handle, &t, err)) != 0) {
        return rc;
    }
    struct td_tensor *g = td_autograd_grad(t);
    if (g == NULL) {
        return 0; /* .grad is None: no tensor in the reply */
    }
    if ((rc = td_session_check_out(s, m->out, err)) != 0 ||
        (rc = td_session_put(s, m->out, td_tensor_ref(g), err)) != 0) {
        return rc;
    }
    res->tensor = g;
    res->handle = m->out;
    return 0;
}

int td_rpc_run_set_grad(struct rpc_job *j, struct td_session *s, struct result *res,
                        struct td_err *err)
{
    const Tensord__SetGrad *m = j->req->set_grad;
    struct td_tensor *t;
    int rc;
    if ((rc = td_session_lookup(s, m->handle, &t, err)) != 0) {
        return rc;
    }
    if (m->clear_grad) {
        td_autograd_set_grad(t, NULL);
    } else if (m->retain_grad) {
        if ((rc = td_autograd_retain_grad(t, err)) != 0) {
            return rc;
        }
    } else if ((rc = td_autograd_set_requires_grad(t, m->requires_grad, err)) != 0) {
        return rc;
    }
    res->tensor = t;
    res->handle = m->handle;
    return 0;
}

int td_rpc_run_free(struct rpc_job *j, struct td_session *s, struct result *res, struct td_err *err)
{
    const Tensord__Free *m = j->req->free;
    if (s->closed) {
        return td_err_set(err, TD_ESESSION, "session is closed");
    }
    for (size_t i = 0; i < m->n_handles; i++) {
        td_session_free_handle(s, m->handles[i]);
    }
    return 0;
}

/* Hello: version negotiation, auth (auth.c), open or resume. Runs on the loop thread (never
** heavy); `s` is not used: the session is the one it opens. */
int td_rpc_run_hello(struct rpc_job *j, struct td_session *s_unused, struct result *res,
                     struct td_err *err)
{
    struct td_rpc_peer *p = j->peer;
    struct td_rpc_server *srv = p->srv;
    const Tensord__Hello *m = j->req->hello;
    Tensord__HelloResult *hr = &res->hello_msg;
    uint32_t cmin = m->min_version != 0 ? m->min_version : 1;
    uint32_t cmax = m->max_version != 0 ? m->max_version : cmin;
    if (cmax < cmin || cmax < TD_PROTOCOL_MIN || cmin > TD_PROTOCOL_MAX) {
        return td_err_set(err, TD_EVERSION,
                          "no common protocol version: client speaks %u..%u, server %d..%d", cmin,
                          cmax, TD_PROTOCOL_MIN, TD_PROTOCOL_MAX);
    }
    int arc = td_rpc_auth_check(srv, p->addr_key, m->auth_token, j->hello_token_len, err);
    if (arc != 0) {
        return arc;
    }
    if (p->session != NULL) {
        /* One session per connection. Switching a connection to another session would leave
        ** its later requests ordered by the old session's FIFO while they ran against the new
        ** session's table, alongside that session's own jobs. */
        return p->session->closed
                   ? td_err_set(err, TD_EPROTO,
                                "this connection's session was closed: open a "
                                "new connection to start or resume one")
                   : td_err_set(err, TD_EPROTO, "Hello was already accepted on this connection");
    }
    struct td_session *s;
    int rc;
    bool resumed = m->session_token.len != 0;
    if (resumed) {
        /* Routed first: a token naming another node is answered MOVED or UNKNOWN_NODE. */
        rc = td_rpc_route_resume(j, m->session_token.data, m->session_token.len, err);
        if (rc == 0) {
            rc = td_store_resume(srv->store, m->session_token.data, m->session_token.len, &s, err);
        }
    } else {
        rc = td_rpc_check_room(j, err);
        if (rc == 0) {
            rc = td_store_open(srv->store, &s, err);
        }
    }
    if (rc != 0) {
        return rc;
    }
    peer_set_session(p, s);
    td_log(TD_LOG_INFO, resumed ? "session_resumed" : "session_opened",
           "conn=%llu session=%s req=%llu sessions=%zu", (unsigned long long)p->conn_id,
           s->token_tag, (unsigned long long)j->req->id, td_store_count(srv->store));
    tensord__hello_result__init(hr);
    hr->version = cmax < TD_PROTOCOL_MAX ? cmax : TD_PROTOCOL_MAX;
    hr->server_min_version = TD_PROTOCOL_MIN;
    hr->server_max_version = TD_PROTOCOL_MAX;
    hr->server_version = "tensord " TD_VERSION;
    hr->instance_id.data = srv->instance_id;
    hr->instance_id.len = sizeof srv->instance_id;
    hr->session_token.data = s->token;
    hr->session_token.len = s->token_len;
    hr->resumed = resumed;
    hr->node_id = srv->node_id != NULL ? (char *)srv->node_id : "";
    hr->advertise = srv->advertise != NULL ? (char *)srv->advertise : "";
    res->hello = hr;
    return 0;
}

int td_rpc_run_manual_seed(struct rpc_job *j, struct td_session *s, struct result *res,
                           struct td_err *err)
{
    td_session_seed(s, j->req->manual_seed->seed);
    return 0;
}

int td_rpc_run_close_session(struct rpc_job *j, struct td_session *s, struct result *res,
                             struct td_err *err)
{
    if (s->closed) {
        return 0; /* closed already (by another of its connections): done */
    }
    td_log(TD_LOG_INFO, "session_closed", "conn=%llu session=%s req=%llu",
           (unsigned long long)j->peer->conn_id, s->token_tag, (unsigned long long)j->req->id);
    td_rpc_remove_session_files(j->peer->srv, s);
    td_session_close(s);
    return 0;
}

int td_rpc_run_ping(struct rpc_job *j, struct td_session *s, struct result *res, struct td_err *err)
{
    return 0;
}

int td_rpc_run_set_grad_enabled(struct rpc_job *j, struct td_session *s, struct result *res,
                                struct td_err *err)
{
    s->no_grad = !j->req->set_grad_enabled->enabled;
    return 0;
}

/* ---- requests.def's out column: where a result goes, and a failure is recorded ---- */

static uint64_t out_create(const Tensord__Request *req)
{
    return req->create->out;
}

static uint64_t out_full(const Tensord__Request *req)
{
    return req->full->out;
}

static uint64_t out_rand(const Tensord__Request *req)
{
    return req->rand->out;
}

static uint64_t out_arange(const Tensord__Request *req)
{
    return req->arange->out;
}

static uint64_t out_run_op(const Tensord__Request *req)
{
    return req->run_op->inplace ? 0 : req->run_op->out; /* in place: the input stays */
}

static uint64_t out_grad(const Tensord__Request *req)
{
    return req->grad->out;
}

/* ---- requests.def's cost column ----
**
** What the request costs, from the handle table as it is when its turn comes (the same numbers
** decide inline versus the pool, and max_op_elements): j->work is td_cost_work — an op's
** elements read and written and its flops (expanded inputs at their logical size), a
** creation's elements, a gathered Get chunk's, a Write's bytes (a memcpy), a Format's element
** reads (td_print_cost), TD_RPC_FREE_WORK per handle a Free frees — and j->cost_name what a
** limit message names (NULL: not limited). A request whose operands are invalid costs only its
** frees: it fails before it touches anything else. Kinds without a cost function (Create adopts
** its data section; Grad, SetGrad, Ping, Stats and the rest touch a few words) cost only their
** free_first; Backward, Save and Load never run inline (requests.def). */

/* torch.arange's length for these bounds (as td_tensor_arange computes it), saturating; 0 when
** the arguments are invalid (the request then fails before it allocates). */
static int64_t arange_numel(const Tensord__Arange *m)
{
    struct td_scalar start = td_scalar_i(0), end, step = td_scalar_i(1);
    if ((m->start != NULL && wire_scalar(m->start, "", &start, NULL) != 0) ||
        wire_scalar(m->end, "", &end, NULL) != 0 ||
        (m->step != NULL && wire_scalar(m->step, "", &step, NULL) != 0)) {
        return 0;
    }
    double s = td_scalar_to_double(start), e = td_scalar_to_double(end);
    double st = td_scalar_to_double(step);
    if (st == 0 || !isfinite(s) || !isfinite(e) || !isfinite(st)) {
        return 0;
    }
    double n = ceil((e - s) / st);
    if (!(n >= 0)) {
        return 0;
    }
    return n >= 9.0e18 ? INT64_MAX : (int64_t)n;
}

/* wire_args into pre_args. A request without OpArgs (most tiny ops) after another such one
** resets the per-call fields only, not the whole struct. */
static int pre_wire_args(const Tensord__OpArgs *w)
{
    if (w == NULL && pre_args.defaults) {
        td_op_args_reset_call(&pre_args.args);
        return 0;
    }
    int rc = wire_args(w, &pre_args.args, NULL);
    pre_args.defaults = w == NULL && rc == 0;
    return rc;
}

static void cost_op(struct rpc_job *j, struct td_session *s)
{
    const Tensord__RunOp *m = j->req->run_op;
    struct td_operand in[TD_OP_MAX_INPUTS];
    enum td_op_id op;
    struct td_op_args *args = &pre_args.args;
    struct td_cost cost;
    pre_args.job = NULL;
    pre_args.plan.ok = false;
    if (s != NULL && m->n_inputs <= TD_OP_MAX_INPUTS &&
        resolve_operands(m, s, &op, in, NULL) == 0 && pre_wire_args(m->args) == 0) {
        args->op = (int)op; /* td_op_cost then reads args in place, without a copy */
        args->inplace = m->inplace;
        if (td_op_cost_planned(op, in, (int)m->n_inputs, args, &cost, &pre_args.plan, NULL) == 0) {
            j->work = td_cost_work(&cost);
            j->need_bytes = td_sat_add(cost.out_bytes, cost.temp_bytes);
        }
        j->cost_name = td_ops[op].name;
        /* Kept for td_rpc_run_op, which then need not look the handles up again. Valid only
        ** while the table is as it is now: job_is_heavy drops it when the job leaves the loop,
        ** job_execute when free_first will change the table first. */
        if (m->n_inputs <= PRE_N) {
            j->pre_ok = true;
            j->pre_op = op;
            memcpy(j->pre_in, in, sizeof in[0] * m->n_inputs);
            pre_args.job = j;
        }
    }
}

/* Full and Rand: the elements they fill. */
static void cost_fill(struct rpc_job *j, struct td_session *s)
{
    const Tensord__Request *req = j->req;
    bool full = req->body_case == TENSORD__REQUEST__BODY_FULL;
    size_t n = full ? req->full->n_shape : req->rand->n_shape;
    const int64_t *dims = full ? req->full->shape : req->rand->shape;
    struct td_scalar v;
    enum td_dtype dt = TD_DTYPE_F32;
    int64_t numel;
    /* With the dtype the request will have: a shape whose bytes overflow is refused by its own
    ** check, which says so. */
    bool typed = full ? wire_scalar(req->full->value, "", &v, NULL) == 0 &&
                            wire_dtype(req->full->dtype, (int)td_scalar_dtype(v), &dt, NULL) == 0
                      : wire_dtype(req->rand->dtype, TD_DTYPE_DEFAULT_FLOAT, &dt, NULL) == 0;
    if (typed && n <= TD_MAX_DIMS && td_shape_check(dims, (int)n, dt, &numel, NULL, NULL) == 0) {
        j->work = numel;
    }
    j->cost_name = full                                                       ? "full"
                   : req->rand->distribution == TENSORD__DISTRIBUTION__NORMAL ? "randn"
                                                                              : "rand";
}

static void cost_arange(struct rpc_job *j, struct td_session *s)
{
    j->work = arange_numel(j->req->arange);
    j->cost_name = "arange";
}

static void cost_format(struct rpc_job *j, struct td_session *s)
{
    struct td_tensor *t;
    int64_t text;
    if (s != NULL && td_session_lookup(s, j->req->format->handle, &t, NULL) == 0 &&
        td_print_cost(t, &j->work, &text) != 0) {
        j->work = 0;
    }
    j->cost_name = "format";
}

/* Gathering a view's chunk touches each element; a contiguous Get copies nothing. */
static void cost_get(struct rpc_job *j, struct td_session *s)
{
    struct td_tensor *t;
    const Tensord__Get *m = j->req->get;
    if (s != NULL && !m->meta_only && td_session_lookup(s, m->handle, &t, NULL) == 0 &&
        !td_tensor_is_contiguous(t)) {
        /* the bytes td_rpc_run_get will gather: to the end, or the length when it is shorter */
        uint64_t nbytes = td_tensor_nbytes(t);
        uint64_t avail = m->offset <= nbytes ? nbytes - m->offset : 0;
        uint64_t bytes = m->length != 0 && m->length < avail ? m->length : avail;
        j->work = (int64_t)(bytes / td_dtype_size(t->dtype));
    }
}

static void cost_write(struct rpc_job *j, struct td_session *s)
{
    j->work = j->data_len > INT64_MAX ? INT64_MAX : (int64_t)j->data_len;
}

/* Each handle freed is a map delete and maybe a tensor's teardown: a large Free goes to the
** pool instead of holding the loop. */
static void cost_free(struct rpc_job *j, struct td_session *s)
{
    if (j->req->free != NULL) {
        size_t n = j->req->free->n_handles;
        j->work = td_sat_mul(n > (size_t)INT64_MAX ? INT64_MAX : (int64_t)n, TD_RPC_FREE_WORK);
    }
}

/* ---- the table ---- */

/* Every row's oneof case and Request member exist: a row without a wire counterpart does not
** compile. */
#define REQ(id, name, inl, idempotent, auth, data, handler, cost, out)                             \
    static_assert(TENSORD__REQUEST__BODY_##id > 0,                                                 \
                  "requests.def: " #id " is a Request oneof case");                                \
    static_assert(sizeof(((Tensord__Request *)0)->name) == sizeof(void *),                         \
                  "requests.def: Request." #name " is a message");
#include "rpc/requests.def"
#undef REQ

static const struct td_rpc_request requests[] = {
#define REQ(id, name, inl, idempotent, auth, data, handler, cost, out)                             \
    [TD_RPC_##id] = {#name,                                                                        \
                     TENSORD__REQUEST__BODY_##id,                                                  \
                     handler,                                                                      \
                     cost,                                                                         \
                     out,                                                                          \
                     inl,                                                                          \
                     TD_RPC_IDEM_##idempotent,                                                     \
                     TD_RPC_AUTH_##auth,                                                           \
                     data},
#include "rpc/requests.def"
#undef REQ
};
static_assert(sizeof requests / sizeof requests[0] == TD_RPC_KINDS,
              "TD_RPC_KINDS is requests.def's row count");

/* Oneof case -> 1 + its kind (0: no row), sized by the largest case. */
static const uint8_t kind_by_case[] = {
#define REQ(id, name, inl, idempotent, auth, data, handler, cost, out)                             \
    [TENSORD__REQUEST__BODY_##id] = TD_RPC_##id + 1,
#include "rpc/requests.def"
#undef REQ
};
static_assert(TD_RPC_KINDS < UINT8_MAX, "kind_by_case holds a kind in a byte");

const struct td_rpc_request *td_rpc_request_of(int body_case)
{
    if (body_case <= 0 || (size_t)body_case >= sizeof kind_by_case ||
        kind_by_case[body_case] == 0) {
        return NULL;
    }
    return &requests[kind_by_case[body_case] - 1];
}

const char *td_rpc_kind_name(int k)
{
    return k >= 0 && k < TD_RPC_KINDS ? requests[k].name : NULL;
}

/* The job's request's kind (enum td_rpc_kind), or -1. */
static int request_kind(const struct rpc_job *j)
{
    return j->row != NULL ? (int)(j->row - requests) : -1;
}

/* Sizes j's request (its row's cost function, plus TD_RPC_FREE_WORK per free_first handle). */
static void job_cost(struct rpc_job *j, struct td_session *s)
{
    const Tensord__Request *req = j->req;
    const struct td_rpc_request *row = j->row;
    j->costed = true;
    j->pre_ok = false;
    j->work = 0;
    j->need_bytes = 0;
    j->cost_name = NULL;
    if (row != NULL && row->cost != NULL) {
        row->cost(j, s);
    }
    int64_t frees = req->n_free_first > (size_t)INT64_MAX ? INT64_MAX : (int64_t)req->n_free_first;
    j->work = td_sat_add(j->work, td_sat_mul(frees, TD_RPC_FREE_WORK));
}

/* --max-op-elements: refused before anything is allocated or run. */
static int check_work_limit(const struct rpc_job *j, struct td_err *err)
{
    int64_t max = j->peer->srv->max_op_elements;
    if (max > 0 && j->cost_name != NULL && j->work > max) {
        return td_err_set(err, TD_ELIMIT,
                          "%s would touch %lld elements, above "
                          "max_op_elements %lld",
                          j->cost_name, (long long)j->work, (long long)max);
    }
    return 0;
}

/* Counts j's request, answered with j->status, in the server's counters (stats.c). */
static void record_stats(const struct rpc_job *j)
{
    enum td_op_id op;
    int opi = -1;
    if (j->req->body_case == TENSORD__REQUEST__BODY_RUN_OP &&
        td_rpc_wire_op((int)j->req->run_op->op, &op) == 0) {
        opi = (int)op;
    }
    td_rpc_stats_record(j->peer->srv, request_kind(j), opi, j->status, j->t0_us);
}

/* Requests that still succeed, doing nothing, once their session is closed (auth ANY: a Ping,
** and a CloseSession: the session is closed, as asked; several connections may each close it). */
static bool noop_when_closed(const struct td_rpc_request *row)
{
    return row != NULL && row->auth == TD_RPC_AUTH_ANY;
}

/* Requests that run without a session (auth NONE: Hello, NodeInfo): at once, before any queue,
** costing nothing but their (bounded) handler. */
static bool needs_no_session(const struct td_rpc_request *row)
{
    return row != NULL && row->auth == TD_RPC_AUTH_NONE;
}

/* Runs the request in j against s, filling the status and result, then encodes the reply. */
static void job_execute(struct rpc_job *j)
{
    j->ran = true;
    struct td_rpc_peer *p = j->peer;
    /* The session the job was queued on, never p->session: a job runs against, and only
    ** against, the table of the session whose FIFO ordered it (NULL: a Hello answered before
    ** the connection had one). */
    struct td_session *s = j->job.session;
    const struct td_rpc_request *row = j->row;
    struct td_err err;
    td_err_clear(&err);
    struct result res;
    RESULT_CLEAR(&res);
    Tensord__Limits limits = TENSORD__LIMITS__INIT;
    uint64_t out_handle = row != NULL && row->out != NULL ? row->out(j->req) : 0;
    /* Cancelled between its dispatch and now: it has not started, so it does nothing. */
    int rc = td_cancel_check(&err);
    bool hello = needs_no_session(row);

    if (rc == 0 && !hello && s != NULL && s->closed && !noop_when_closed(row)) {
        /* Queued behind its session's CloseSession: it fails at once and touches nothing. */
        rc = td_err_set(&err, TD_ESESSION, "session is closed");
    }
    if (rc == 0 && !hello && !j->costed) {
        job_cost(j, s); /* before free_first changes the table: what decided its thread */
    }
    if (j->req->n_free_first != 0) {
        j->pre_ok = false; /* the frees may take an operand: run_op looks them up again */
    }
    if (rc == 0 && s != NULL && !s->closed) {
        for (size_t i = 0; i < j->req->n_free_first; i++) {
            td_session_free_handle(s, j->req->free_first[i]);
        }
    }
    if (rc == 0 && !hello) {
        rc = check_work_limit(j, &err);
    }
    if (rc == 0) {
        /* Else it was cancelled, its session closed, or it is over a limit: err says which. */
        rc = row != NULL ? row->run(j, s, &res, &err)
                         : td_err_set(&err, TD_EOP, "unknown request kind (field %d)",
                                      (int)j->req->body_case);
    }
    if (rc != 0) {
        /* Pipelined ops naming this output must learn why it is missing — unless it was
        ** cancelled: then it is as if it never ran, and a client that resumes may send it
        ** again under the same handle. */
        if (out_handle != 0 && s != NULL && err.code != TD_EEXIST && err.code != TD_ECANCELED) {
            td_session_put_failure(s, out_handle, &err);
        }
        td_free(res.text);
        td_free(res.mem);
        RESULT_CLEAR(&res);
        if (j->pin == NULL) {
            reply_release_data(&j->reply);
        }
        j->reply.data = NULL;
        j->reply.data_len = 0;
    }

    Tensord__Response resp = TENSORD__RESPONSE__INIT;
    Tensord__Status st = TENSORD__STATUS__INIT;
    Tensord__TensorInfo info = TENSORD__TENSOR_INFO__INIT;
    int64_t shape[TD_MAX_DIMS];
    resp.id = j->req->id;
    encode_status(&resp, &st, &err);
    j->status = (int)st.code;
    if (rc != 0) {
        log_failure(p, j->req, j->status, err.msg);
        if (j->status_node[0] != '\0') {
            st.node = j->status_node; /* MOVED, NODE_FULL, UNKNOWN_NODE: who is meant */
        }
        if (j->status_address != NULL) {
            st.address = (char *)j->status_address;
        }
    }
    if (res.tensor != NULL) {
        const struct td_tensor *t = res.tensor;
        for (int i = 0; i < t->ndim; i++) {
            shape[i] = t->shape[i];
        }
        info.handle = res.handle;
        info.dtype = dtype_wire(t->dtype);
        info.n_shape = (size_t)t->ndim;
        info.shape = shape;
        info.nbytes = td_tensor_nbytes(t);
        info.offset = res.offset;
        info.length = res.length;
        const char *grad_fn = td_autograd_grad_fn_name(t);
        info.requires_grad = td_autograd_requires_grad(t);
        info.is_leaf = td_autograd_is_leaf(t);
        info.grad_fn = grad_fn != NULL ? (char *)grad_fn : "";
        if (j->req->body_case == TENSORD__REQUEST__BODY_GET && j->req->get->meta_only) {
            info.n_strides = (size_t)t->ndim; /* the view's layout (Tensor.stride()) */
            info.strides = (int64_t *)t->strides;
            info.storage_offset = t->offset;
        }
        resp.result_case = TENSORD__RESPONSE__RESULT_TENSOR;
        resp.tensor = &info;
    } else if (res.text != NULL) {
        resp.result_case = TENSORD__RESPONSE__RESULT_TEXT;
        resp.text = res.text;
    } else if (res.backward != NULL) {
        resp.result_case = TENSORD__RESPONSE__RESULT_BACKWARD;
        resp.backward = res.backward;
    } else if (res.stats != NULL) {
        resp.result_case = TENSORD__RESPONSE__RESULT_STATS;
        resp.stats = res.stats;
    } else if (res.names != NULL) {
        resp.result_case = TENSORD__RESPONSE__RESULT_NAMES;
        resp.names = res.names;
    } else if (res.node_info != NULL) {
        resp.result_case = TENSORD__RESPONSE__RESULT_NODE_INFO;
        resp.node_info = res.node_info;
    } else if (res.hello != NULL) {
        limits.max_frame_bytes = p->srv->max_frame_bytes;
        limits.max_tensor_bytes = (uint64_t)p->srv->store->cfg.max_tensor_bytes;
        limits.session_max_bytes = (uint64_t)p->srv->store->cfg.session_max_bytes;
        limits.max_dims = TD_MAX_DIMS;
        res.hello->limits = &limits;
        resp.result_case = TENSORD__RESPONSE__RESULT_HELLO;
        resp.hello = res.hello;
    }
    if (rc != 0 && (err.code == TD_EAUTH)) {
        j->reply.close_after = true;
    }
    encode_response(&resp, &j->reply);
    td_free(res.text);
    td_free(res.mem);
}

/* Frees the job and whatever it still holds: its request, its data section and that data's
** charge, a Get pin and a Format charge whose reply never went out. Loop thread. */
static void job_free(struct rpc_job *j, struct td_rpc_server *srv)
{
    if (j->fast_decoded) {
        td_fastunpack_free(j->req, &j->arena.allocator);
    } else {
        tensord__request__free_unpacked(j->req, &j->arena.allocator);
    }
    td_free(j->data);
    if (j->data_session != NULL) {
        td_quota_release(&j->data_session->quota, j->data_charge);
        td_session_unref(j->data_session);
    }
    td_buffer_unref(j->pin);
    if (j->reply_charge > 0) {
        td_quota_release(&j->job.session->quota, j->reply_charge);
    }
    if (j->req_charge > 0) {
        td_quota_release(&j->job.session->quota, j->req_charge);
    }
    job_release(srv, j);
}

/* Called on the loop thread when the job's turn comes, with the handle table as earlier jobs
** left it. The loop runs nothing whose cost is above heavy_work. */
static bool job_is_heavy(struct td_job *job)
{
    struct rpc_job *j = (struct rpc_job *)job;
    if (job->session->closed) {
        return false; /* it fails at once ("session is closed"), touching nothing */
    }
    const struct td_rpc_request *row = j->row;
    if (row != NULL && !row->may_inline) {
        return true; /* files block: off the loop */
    }
    job_cost(j, job->session);
    job->work = j->work; /* spends the turn's budget (free_first included) */
    if (check_work_limit(j, NULL) != 0) {
        job->work = td_sat_mul((int64_t)j->req->n_free_first, TD_RPC_FREE_WORK);
        return false; /* refused before it touches anything: no need to leave the loop */
    }
    if (j->work > j->peer->srv->heavy_work) {
        j->pre_ok = false; /* it runs later, elsewhere: the table may change meanwhile */
        return true;
    }
    return false;
}

/* Runs on whichever thread the session chose. The request's deadline starts now: its running
** time counts, not its wait in the queue. The reason flag was armed at submission, so a cancel
** raised since then is not lost. */
static void job_run(struct td_job *job)
{
    struct rpc_job *j = (struct rpc_job *)job;
    struct td_cancel armed;
    td_cancel_init(&armed, j->peer->srv->max_request_ms);
    job->cancel.deadline_ns = armed.deadline_ns;
    job->cancel.limit_ms = armed.limit_ms;
    /* Every op the request runs obeys --max-op-elements, a backward's steps included. */
    int64_t max = j->peer->srv->max_op_elements;
    job->cancel.max_work = max > 0 ? max : 0;
    struct td_cancel *prev = td_cancel_enter(&job->cancel);
    job_execute(j);
    td_cancel_leave(prev);
}

/* The error a dropped job is answered with: core's wording for the reason raised on it. */
static void dropped_error(struct td_job *job, struct td_err *err)
{
    struct td_cancel *prev = td_cancel_enter(&job->cancel);
    if (td_cancel_check(err) == 0) {
        td_err_set(err, TD_ECANCELED, "the request was cancelled");
    }
    td_cancel_leave(prev);
}

static void job_done(struct td_job *job)
{
    struct rpc_job *j = (struct rpc_job *)job;
    struct td_rpc_peer *p = j->peer;
    /* No longer pending once its reply is out: the reply's delivery may resume the connection,
    ** and net then asks td_rpc_data_alloc again at once, which must not see this request as
    ** one still to be answered (it would say "later" again, with no reply left to come). */
    p->pending--;
    p->queued_bytes -= j->queued;
    if (job->cancelled) {
        /* Dropped before it ran: no effect at all (not even its free_first: a client that
        ** resumes re-sends it, and requests before it may still name those handles), and an
        ** error reply in its place in line if anyone is listening. */
        if (!p->closed) {
            struct td_err err;
            dropped_error(job, &err);
            td_rpc_reply_error(p, j->req->id, err.code, err.msg, false);
        }
        goto out;
    }
    if ((j->pin != NULL || j->reply_charge > 0) && !p->closed && j->reply.frame != NULL) {
        /* The pin and the Format charge stay until the reply is written; their release needs
        ** the session (its quota) alive: take the reference here, on the loop thread, where
        ** session refcounts live. */
        struct sent *x = frame_sent(&j->reply);
        x->pin = j->pin;
        x->session = td_session_ref(job->session);
        x->charge = j->reply_charge;
        j->pin = NULL;
        j->reply_charge = 0;
    }
    if (j->reply.frame == NULL && !p->closed) {
        /* Not even an error reply could be encoded: give up on the connection. */
        j->reply.close_after = true;
    }
    deliver(p, &j->reply);
out:
    if (j->ran) {
        record_stats(j);
    }
    job_free(j, p->srv);
    peer_unref(p);
}

/* An error found before a request could be queued (an empty, undecodable or misframed one, or
** one whose data section was refused). It still waits its turn in the session's FIFO when
** earlier requests of this connection are queued or running, so its reply cannot overtake
** theirs: replies come back in request order. */
struct error_job {
    struct td_job job;
    struct td_rpc_peer *peer; /* reference */
    uint64_t id;
    struct td_err err;
};

static void error_job_run(struct td_job *job)
{
    (void)job;
}

static void error_job_done(struct td_job *job)
{
    struct error_job *e = (struct error_job *)job;
    struct td_rpc_peer *p = e->peer;
    p->pending--; /* before the reply, as in job_done */
    td_rpc_reply_error(p, e->id, e->err.code, e->err.msg, false);
    td_free(e);
    peer_unref(p);
}

static void reply_early_error(struct td_rpc_peer *p, uint64_t id, int code, const char *msg)
{
    if (p->session == NULL || p->pending == 0) {
        td_rpc_reply_error(p, id, code, msg, false); /* nothing queued to overtake */
        return;
    }
    struct error_job *e = td_calloc(1, sizeof *e);
    if (e == NULL) {
        /* Replying now would overtake queued replies; closing is the honest answer. */
        struct td_rpc_reply r = {.close_after = true};
        p->reply(p, &r, p->user);
        return;
    }
    e->peer = p;
    e->id = id;
    td_err_set(&e->err, code, "%s", msg);
    p->refs++;
    p->pending++;
    e->job.run = error_job_run;
    e->job.done = error_job_done;
    td_session_submit(p->session, &e->job);
}

/* A data section and the charge td_rpc_data_alloc made for it. */
struct frame_data {
    void *data;                 /* owned, or NULL */
    struct td_session *session; /* reference: charge is charged to its quota */
    int64_t charge;
};

static void frame_data_free(struct frame_data *d)
{
    td_free(d->data);
    if (d->session != NULL) {
        td_quota_release(&d->session->quota, d->charge);
        td_session_unref(d->session);
    }
    *d = (struct frame_data){0};
}

void td_rpc_peer_read(struct td_rpc_peer *p, uint64_t seq)
{
    p->read_seq = seq;
}

/* When the frame being handled arrived: the clock read once per read of the connection (see
** td_rpc_peer_read), or per frame without read numbers. */
static uint64_t arrival_us(struct td_rpc_peer *p)
{
    if (p->read_seq == 0 || p->read_seq != p->arrival_seq) {
        p->arrival_us = td_rpc_now_us();
        p->arrival_seq = p->read_seq;
    }
    return p->arrival_us;
}

void td_rpc_handle(struct td_rpc_peer *p, const uint8_t *meta, size_t meta_len, void *data,
                   size_t data_len)
{
    struct frame_data fd = {.data = data};
    if (data != NULL && data == p->data_buf) {
        fd.session = p->data_session; /* the charge moves to the request */
        fd.charge = p->data_charge;
        p->data_buf = NULL;
        p->data_session = NULL;
        p->data_charge = 0;
    }
    if (meta_len == 0) {
        frame_data_free(&fd);
        reply_early_error(p, 0, TD_EPROTO, "empty request: the frame has no protobuf section");
        return;
    }
    struct rpc_job *j = job_alloc(p->srv);
    if (j == NULL) {
        /* Replying now could overtake queued replies; closing is the honest answer. */
        frame_data_free(&fd);
        struct td_rpc_reply r = {.close_after = true};
        p->reply(p, &r, p->user);
        return;
    }
    memset(j, 0, offsetof(struct rpc_job, pre_in));
    j->status_node[0] = '\0';
    arena_init(&j->arena);
    /* The hot requests' direct decoder first; anything it does not take goes to protobuf-c. */
    Tensord__Request *req = td_fastunpack_request(&j->arena.allocator, meta_len, meta);
    j->fast_decoded = req != NULL;
    if (req == NULL) {
        arena_init(&j->arena); /* a failed block allocation may have counted an overflow */
        req = tensord__request__unpack(&j->arena.allocator, meta_len, meta);
    }
    if (req == NULL) {
        job_release(p->srv, j);
        frame_data_free(&fd);
        reply_early_error(p, 0, TD_EPROTO, "malformed request: not a valid Request message");
        return;
    }
    j->req = req;
    const struct td_rpc_request *row = td_rpc_request_of((int)req->body_case);
    j->row = row;
    if (req->body_case == TENSORD__REQUEST__BODY_HELLO) {
        j->hello_token_len = td_rpc_string_wire_len(meta, meta_len, TENSORD__REQUEST__BODY_HELLO,
                                                    3 /* Hello.auth_token */);
    } else if (req->body_case == TENSORD__REQUEST__BODY_NODE_INFO) {
        j->hello_token_len = td_rpc_string_wire_len(meta, meta_len,
                                                    TENSORD__REQUEST__BODY_NODE_INFO,
                                                    1 /* NodeInfo.auth_token */);
    } else if (req->body_case == TENSORD__REQUEST__BODY_SET_NAME ||
               req->body_case == TENSORD__REQUEST__BODY_GET_NAME ||
               req->body_case == TENSORD__REQUEST__BODY_DEL_NAME) {
        /* name is field 1 of each; protobuf-c's copy stops at a NUL, this length does not */
        j->name_wire_len = td_rpc_string_wire_len(meta, meta_len, req->body_case, 1);
    }
    if ((row == NULL || !row->data) && data_len != 0) {
        uint64_t id = req->id;
        job_free(j, p->srv);
        frame_data_free(&fd);
        reply_early_error(p, id, TD_EPROTO, "only Create and Write requests carry a data section");
        return;
    }
    if (p->session == NULL) {
        if (needs_no_session(row)) {
            /* No session, so no queue to wait behind: answer now. */
            j->peer = p;
            j->t0_us = arrival_us(p);
            job_execute(j);
            record_stats(j);
            deliver(p, &j->reply); /* a NULL frame tells the connection to close */
        } else {
            td_rpc_reply_error(p, req->id, TD_ENOSESSION, "no session: send Hello first", false);
        }
        job_free(j, p->srv);
        frame_data_free(&fd);
        return;
    }
    if (fd.data == NULL && data_len != 0) {
        /* td_rpc_data_alloc refused the section and net discarded it: answer with why. */
        uint64_t id = req->id;
        job_free(j, p->srv);
        if (p->data_err.code == TD_OK) {
            td_err_set(&p->data_err, TD_ENOMEM, "the data section could not be stored");
        }
        struct td_err why = p->data_err;
        td_err_clear(&p->data_err);
        reply_early_error(p, id, why.code, why.msg);
        return;
    }
    if (p->session->closed && !noop_when_closed(row)) {
        /* CloseSession has run: nothing more is done on this connection (a Hello would switch
        ** it to another session under the closed one's FIFO). */
        uint64_t id = req->id;
        bool is_hello = needs_no_session(row);
        job_free(j, p->srv);
        frame_data_free(&fd);
        reply_early_error(p, id, is_hello ? TD_EPROTO : TD_ESESSION,
                          is_hello ? "this connection's session was closed: open a new "
                                     "connection to start or resume one"
                                   : "session is closed");
        return;
    }
    if (req->n_free_first > TD_RPC_MAX_FREE_FIRST) {
        uint64_t id = req->id;
        char msg[128];
        snprintf(msg, sizeof msg,
                 "free_first lists %zu handles; at most %d are allowed per "
                 "request (send a Free for more)",
                 req->n_free_first, TD_RPC_MAX_FREE_FIRST);
        job_free(j, p->srv);
        frame_data_free(&fd);
        reply_early_error(p, id, TD_ELIMIT, msg);
        return;
    }
    /* The decoded request lives until its job is freed: charged like any bytes a client makes
    ** the server hold. One that fits the arena is not, and neither is a Free: freeing must work
    ** at a full quota (as Redis serves DEL at maxmemory), and a Free decodes to at most 8 bytes
    ** per wire byte, which the peer's queued bytes (PEER_PAUSE_BYTES) still bound. */
    int64_t charge = 0, decoded = 0;
    if (j->arena.overflow > 0) {
        decoded = td_sat_add(j->arena.overflow, (int64_t)meta_len);
    }
    if (decoded > 0 && req->body_case != TENSORD__REQUEST__BODY_FREE) {
        struct td_err qe;
        charge = decoded;
        if (td_quota_charge_bytes(&p->session->quota, charge, &qe) != 0) {
            uint64_t id = req->id;
            char msg[sizeof qe.msg + 64];
            snprintf(msg, sizeof msg, "the request decodes to %lld bytes: %s", (long long)charge,
                     qe.msg);
            job_free(j, p->srv);
            frame_data_free(&fd);
            reply_early_error(p, id, qe.code, msg);
            return;
        }
    }
    if (req->body_case == TENSORD__REQUEST__BODY_CLOSE_SESSION) {
        /* The session is going away: what it runs and what waits before the close is wasted
        ** work. Cancelled now, on arrival, not when the close's turn comes. */
        td_session_cancel(p->session, NULL, NULL, TD_CANCEL_SESSION_CLOSED);
    }
    j->peer = p;
    j->t0_us = arrival_us(p);
    p->refs++;
    p->pending++;
    j->data = fd.data;
    j->data_len = data_len;
    j->data_session = fd.session;
    j->data_charge = fd.charge;
    j->req_charge = charge; /* released by job_free against job.session, the same session */
    j->queued = td_sat_add(decoded, data_len > (size_t)INT64_MAX ? INT64_MAX : (int64_t)data_len);
    p->queued_bytes = td_sat_add(p->queued_bytes, j->queued);
    td_cancel_init(&j->job.cancel, 0); /* no reason raised; the deadline is armed in job_run */
    j->job.is_heavy = job_is_heavy;
    j->job.run = job_run;
    j->job.done = job_done;
    td_session_submit(p->session, &j->job);
}

int td_rpc_data_alloc(struct td_rpc_peer *p, size_t len, void **out, struct td_err *err)
{
    struct td_err local;
    struct td_err *e = err != NULL ? err : &local;
    int rc;
    *out = NULL;
    td_err_clear(&p->data_err);
    if (p->session == NULL) {
        rc = td_err_set(e, TD_ENOSESSION, "no session: send Hello first");
    } else if (p->session->closed) {
        rc = td_err_set(e, TD_ESESSION, "session is closed");
    } else if (len > (size_t)INT64_MAX) {
        rc = td_err_set(e, TD_ELIMIT, "data section of %zu bytes is too large", len);
    } else if ((rc = td_quota_charge(&p->session->quota, (int64_t)len, e)) != 0) {
        /* The quota is full. With requests of this peer queued or running, their replies may
        ** free some (a Get's copy, a Format's text, a Free): wait for one rather than fail. */
        if (rc == TD_EQUOTA && p->pending > 0) {
            td_err_clear(e); /* not an error: no record */
            return TD_RPC_DATA_LATER;
        }
    } else if ((*out = td_malloc(len)) == NULL) {
        td_quota_release(&p->session->quota, (int64_t)len);
        rc = td_err_code(e, TD_ENOMEM);
    } else {
        /* Only one data section is read at a time per connection: the next td_rpc_handle
        ** receives this buffer, and takes the charge over. */
        p->data_buf = *out;
        p->data_charge = (int64_t)len;
        p->data_session = td_session_ref(p->session);
        return 0;
    }
    p->data_err = *e;
    return rc;
}

/* ---- closing a peer ---- */

/* The peer a job belongs to: request jobs and early error replies are ours. */
static struct td_rpc_peer *job_peer(struct td_job *job)
{
    if (job->done == job_done) {
        return ((struct rpc_job *)job)->peer;
    }
    if (job->done == error_job_done) {
        return ((struct error_job *)job)->peer;
    }
    return NULL;
}

static bool job_of_peer(struct td_job *job, void *arg)
{
    return job_peer(job) == arg;
}

void td_rpc_peer_close(struct td_rpc_peer *p)
{
    if (p == NULL) {
        return;
    }
    p->closed = true;
    p->srv->stats.connections--;
    if (p->data_session != NULL) {
        /* A data section was being read when the connection went; net frees the bytes. */
        td_quota_release(&p->data_session->quota, p->data_charge);
        td_session_unref(p->data_session);
        p->data_session = NULL;
        p->data_buf = NULL;
        p->data_charge = 0;
    }
    if (p->session != NULL) {
        /* Nobody will read the replies: queued requests are dropped (no effect; a client that
        ** resumes re-sends what it needs), a running one is told to stop. */
        td_session_cancel(p->session, job_of_peer, p, TD_CANCEL_CONN_LOST);
    }
    peer_unhold(p); /* after the cancel: the jobs it lets start are other peers' */
    if (p->session != NULL) {
        td_session_detach(p->session, p->srv->now_ms());
    }
    peer_unref(p);
}
