/* tests/fuzz/fuzz_ops.c — libFuzzer target: op sequences through rpc, with a loop watchdog.
**
** fuzz_rpc feeds rpc raw protobuf, so most of its inputs die in validation. This target decodes
** its input as a *program* and builds every request itself, so the fuzzer spends its time on
** shapes and op sequences: expanded (stride-0) views with huge logical sizes (2^30 x 2^30, 2^62,
** three bool views summing to 2^64 + 2 elements), 0-size and 8-dim tensors, views of views,
** in-place ops, reductions with and without dim, the matmul family, cat/stack/repeat, Format and
** Get of views, Save/Load, backward. Each request goes through td_rpc_handle with a test peer, so
** rpc's cost rules, routing (loop or pool), limits and charging are what is exercised.
**
** The executor defers heavy jobs to a queue that the program runs when it says so (or when four
** are waiting, or at the end), on this thread, as the pool would. Everything else runs inline,
** as on the event loop. A watchdog thread measures the CPU time of this thread (CPU time, not
** wall time, so a loaded machine cannot fail a request that did little):
**   - a request run inline (inside td_rpc_handle or td_session_job_complete, i.e. on the loop)
**     that takes more than 100 ms fails the input, naming the request;
**   - a heavy job runs under srv.max_request_ms (1000 ms; FUZZ_OPS_MAX_REQUEST_MS) and
**     srv.max_op_elements (2^32; FUZZ_OPS_MAX_OP_ELEMENTS); one that runs more than 4 s fails.
** A wall-clock backstop (3 s inline, 30 s heavy) catches a request that blocks instead.
** After every loop callback the bytes td_malloc holds must stay within the store's max_bytes
** plus 16 MiB of bookkeeping (replies, decode arenas, jobs): every byte is charged.
** The reply checks are fuzz_rpc's: one well-formed reply per request, in request order, a status
** code in the closed set; and once the peer and the store close, every byte is returned.
**
** Program: byte 0 is flags (bit 0: run each heavy job as soon as it is queued; bit 1: hold each
** reply's pinned data until the next request); then instructions, each an opcode byte and its
** operand bytes (an input that ends early reads zeros). Handles are slots 1..12. The opcodes are
** the `enum insn` below; tests/fuzz/ops_seeds.py writes the seed programs in
** tests/fuzz/corpus/ops/.
*/
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/log.h"
#include "core/parallel.h"
#include "proto/tensord.pb-c.h"
#include "rpc/rpc.h"

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "fuzz_ops: " __VA_ARGS__);                                                 \
        fputc('\n', stderr);                                                                       \
        abort();                                                                                   \
    } while (0)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            FAIL("check failed at line %d: %s (request %s)", __LINE__, #cond, cur_label);          \
        }                                                                                          \
    } while (0)

void openblas_set_num_threads(int num_threads);

/* ---- limits of the test daemon ---- */

#define INLINE_LIMIT_NS (100 * 1000000ull) /* a request held the loop: fail */
#define HEAVY_LIMIT_NS (4000 * 1000000ull) /* a heavy job ran far past its deadline: fail */
#define INLINE_WALL_NS (3000 * 1000000ull) /* backstops for a request that blocks */
#define HEAVY_WALL_NS (30000 * 1000000ull)
#define HEAVY_BUDGET_NS (3000 * 1000000ull) /* per input: after this much heavy CPU, close */
#define MAX_BYTES (96 << 20)
#define BOOKKEEPING_SLACK (16 << 20)
#define SLOTS 12
#define MAX_OUTSTANDING 1024
#define MAX_DEFERRED 64
#define LABEL_LEN 112

/* ---- the watchdog ---- */

enum phase { PHASE_IDLE, PHASE_INLINE, PHASE_HEAVY };

static clockid_t main_cpu; /* this thread's CPU clock */
static _Atomic int phase;
static _Atomic uint64_t phase_cpu0, phase_wall0;
static char cur_label[LABEL_LEN] = "(none)"; /* the request running now, for messages */

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static _Atomic uint64_t phase_gen; /* bumped by every phase change */

static void phase_check(const char *when)
{
    /* The watchdog thread reads while this thread may start a new phase: the figures count only
    ** when no phase change happened around the reading (the start is read before the clock, so
    ** an elapsed time is never negative). */
    uint64_t gen = atomic_load(&phase_gen);
    int ph = atomic_load(&phase);
    uint64_t cpu0 = atomic_load(&phase_cpu0), wall0 = atomic_load(&phase_wall0);
    uint64_t cpu_now = clock_ns(main_cpu), wall_now = clock_ns(CLOCK_MONOTONIC);
    if (ph == PHASE_IDLE || atomic_load(&phase_gen) != gen || cpu_now < cpu0 || wall_now < wall0) {
        return;
    }
    uint64_t cpu = cpu_now - cpu0, wall = wall_now - wall0;
    if (ph == PHASE_INLINE && (cpu > INLINE_LIMIT_NS || wall > INLINE_WALL_NS)) {
        FAIL("%s: request %s held the loop for %.0f ms of CPU (%.0f ms wall); the limit is "
             "%llu ms",
             when, cur_label, (double)cpu / 1e6, (double)wall / 1e6, INLINE_LIMIT_NS / 1000000ull);
    }
    if (ph == PHASE_HEAVY && (cpu > HEAVY_LIMIT_NS || wall > HEAVY_WALL_NS)) {
        FAIL("%s: heavy request %s ran %.0f ms of CPU (%.0f ms wall), past its deadline; the "
             "limit is %llu ms",
             when, cur_label, (double)cpu / 1e6, (double)wall / 1e6, HEAVY_LIMIT_NS / 1000000ull);
    }
}

static void *watchdog_main(void *arg)
{
    (void)arg;
    for (;;) {
        struct timespec ts = {.tv_nsec = 10 * 1000000};
        nanosleep(&ts, NULL);
        phase_check("watchdog");
    }
    return NULL;
}

static void phase_enter(int ph)
{
    atomic_fetch_add(&phase_gen, 1);
    atomic_store(&phase_cpu0, clock_ns(main_cpu));
    atomic_store(&phase_wall0, clock_ns(CLOCK_MONOTONIC));
    atomic_store(&phase, ph);
    atomic_fetch_add(&phase_gen, 1);
}

/* Ends the phase, checking it; returns its CPU time. */
static uint64_t phase_leave(void)
{
    phase_check("after");
    uint64_t cpu = clock_ns(main_cpu) - atomic_load(&phase_cpu0);
    atomic_fetch_add(&phase_gen, 1);
    atomic_store(&phase, PHASE_IDLE);
    atomic_fetch_add(&phase_gen, 1);
    return cpu;
}

/* ---- the harness ---- */

struct held {
    struct td_rpc_reply r;
    uint8_t *copy; /* the data section as it was when queued */
};

struct deferred {
    struct td_job *job;
    char label[LABEL_LEN]; /* the request it runs */
};

struct harness {
    struct td_store store;
    struct td_rpc_server srv;
    struct td_rpc_peer *peer;
    uint64_t want[MAX_OUTSTANDING]; /* ids of requests not yet answered, in order */
    char labels[MAX_OUTSTANDING][LABEL_LEN];
    int nwant;
    struct deferred jobs[MAX_DEFERRED]; /* heavy jobs handed to the executor, oldest first */
    int njobs;
    bool eager;  /* run heavy jobs as soon as they are queued */
    bool closed; /* a reply said close_after */
    bool hold;
    struct held held[4];
    int nheld;
    uint8_t token[16];
    bool have_token;
    uint64_t next_id;
    uint64_t heavy_ns; /* CPU spent in heavy jobs this input */
    const uint8_t *in; /* the program */
    size_t at, size;
};

static struct harness hs;
static char files_dir[64];
static uint64_t fake_ms = 1000;
static int64_t base_live;
static bool debug; /* FUZZ_DEBUG=1: print every request and reply */

static uint64_t fake_now(void)
{
    return fake_ms;
}

static void defer_submit(struct td_executor *ex, struct td_job *job)
{
    (void)ex;
    CHECK(hs.njobs < MAX_DEFERRED);
    struct deferred *d = &hs.jobs[hs.njobs++];
    d->job = job;
    snprintf(d->label, sizeof d->label, "%s", cur_label);
}

static struct td_executor executor_deferred = {.submit = defer_submit};

static void check_memory(void)
{
    int64_t live = td_alloc_live_bytes() - base_live;
    if (live > (int64_t)MAX_BYTES + BOOKKEEPING_SLACK) {
        FAIL("after request %s the daemon holds %lld bytes, over max_bytes %d + %d", cur_label,
             (long long)live, MAX_BYTES, BOOKKEEPING_SLACK);
    }
}

/* The "worker" runs the oldest heavy job (marked heavy for the watchdog); its completion then
** comes back as the loop would see it, and the loop may run the jobs queued behind it. */
static void finish_one_job(struct harness *h)
{
    if (h->njobs == 0) {
        return;
    }
    struct deferred d = h->jobs[0];
    memmove(h->jobs, h->jobs + 1, (size_t)(h->njobs - 1) * sizeof h->jobs[0]);
    h->njobs--;
    snprintf(cur_label, sizeof cur_label, "%s", d.label);
    if (debug) {
        fprintf(stderr, "heavy   %s\n", cur_label);
    }
    phase_enter(PHASE_HEAVY);
    d.job->run(d.job);
    h->heavy_ns += phase_leave();
    phase_enter(PHASE_INLINE);
    td_session_job_complete(d.job);
    phase_leave();
    check_memory();
}

static void release_held(struct harness *h)
{
    for (int i = 0; i < h->nheld; i++) {
        struct held *x = &h->held[i];
        CHECK(x->r.data_len == 0 || memcmp(x->r.data, x->copy, x->r.data_len) == 0);
        if (x->r.release != NULL) {
            x->r.release(x->r.release_arg);
        }
        free(x->copy);
    }
    h->nheld = 0;
}

static void on_reply(struct td_rpc_peer *p, struct td_rpc_reply *r, void *user)
{
    struct harness *h = user;
    CHECK(p == h->peer);
    if (r->close_after) {
        h->closed = true;
    }
    if (r->frame == NULL) {
        CHECK(r->close_after);
        CHECK(r->release == NULL && r->data_len == 0);
        return;
    }
    CHECK(r->frame_len >= TD_FRAME_HEADER_BYTES);
    const uint8_t *f = r->frame;
    uint32_t ml = (uint32_t)f[0] << 24 | (uint32_t)f[1] << 16 | (uint32_t)f[2] << 8 | f[3];
    uint64_t dl = 0;
    for (int i = 0; i < 8; i++) {
        dl = dl << 8 | f[4 + i];
    }
    CHECK(ml == r->frame_len - TD_FRAME_HEADER_BYTES);
    CHECK(dl == r->data_len);
    CHECK(r->data_len == 0 || r->data != NULL);
    Tensord__Response *resp = tensord__response__unpack(NULL, ml, f + TD_FRAME_HEADER_BYTES);
    CHECK(resp != NULL);
    int code = resp->status != NULL ? (int)resp->status->code : 0;
    CHECK(h->nwant > 0);
    if (h->want[0] != resp->id) {
        FAIL("reply id %llu (status %d) arrived when %s was expected", (unsigned long long)resp->id,
             code, h->labels[0]);
    }
    if (debug) {
        fprintf(stderr, "reply   %s: code=%d %s%s\n", h->labels[0], code,
                code != 0 ? resp->status->message : "", r->data_len > 0 ? " +data" : "");
    }
    /* The request answered ran until now: its loop time is checked, and the next one's starts
    ** once this harness has done its own checks of the reply (reading a 16 MiB data section
    ** byte by byte under ASan is the harness's time, not the daemon's). */
    bool restart = false;
    if (atomic_load(&phase) == PHASE_INLINE) {
        phase_leave();
        restart = true;
    }
    memmove(h->want, h->want + 1, (size_t)(h->nwant - 1) * sizeof h->want[0]);
    memmove(h->labels, h->labels + 1, (size_t)(h->nwant - 1) * sizeof h->labels[0]);
    h->nwant--;
    snprintf(cur_label, sizeof cur_label, "%s", h->nwant > 0 ? h->labels[0] : "(none)");
    CHECK(code >= 0 && code <= TENSORD__STATUS_CODE__UNKNOWN_NODE); /* the last code */
    CHECK(code == 0 || (resp->status->message != NULL && resp->status->message[0] != '\0'));
    if (r->data_len > 0) {
        CHECK(code == 0);
        CHECK(resp->result_case == TENSORD__RESPONSE__RESULT_TENSOR);
        CHECK(resp->tensor->length == r->data_len);
        CHECK(resp->tensor->offset + resp->tensor->length <= resp->tensor->nbytes);
    }
    if (resp->result_case == TENSORD__RESPONSE__RESULT_TENSOR) {
        CHECK(resp->tensor->n_shape <= 8);
    }
    if (resp->result_case == TENSORD__RESPONSE__RESULT_HELLO && code == 0) {
        CHECK(resp->hello->session_token.len == sizeof h->token);
        memcpy(h->token, resp->hello->session_token.data, sizeof h->token);
        h->have_token = true;
    }
    tensord__response__free_unpacked(resp, NULL);
    CHECK(r->release != NULL); /* every frame has one, and it frees the frame */
    if (h->hold && r->data_len > 0 && h->nheld < (int)(sizeof h->held / sizeof h->held[0])) {
        struct held *x = &h->held[h->nheld++];
        x->r = *r;
        x->copy = malloc(r->data_len);
        CHECK(x->copy != NULL);
        memcpy(x->copy, r->data, r->data_len);
        if (restart) {
            phase_enter(PHASE_INLINE);
        }
        return;
    }
    volatile uint8_t sum = 0; /* read every byte, so a section pointing at freed memory shows */
    for (size_t i = 0; i < r->data_len; i++) {
        sum += ((const uint8_t *)r->data)[i];
    }
    (void)sum;
    if (restart) {
        phase_enter(PHASE_INLINE); /* the release is the daemon's work: it counts */
    }
    if (r->release != NULL) {
        r->release(r->release_arg);
    }
}

/* Packs `req` (its id set here) and hands it to rpc as the loop would, timed. */
static void send_request(struct harness *h, Tensord__Request *req, const void *data, size_t dl,
                         uint64_t free_out, const char *label)
{
    if (h->closed) {
        return;
    }
    req->id = h->next_id++;
    /* Protocol 2's free_first frees the output slot just before the request runs, so slots
    ** can be reused without HANDLE_IN_USE. */
    uint64_t ff[1] = {free_out};
    if (free_out != 0 && req->n_free_first == 0) {
        req->free_first = ff;
        req->n_free_first = 1;
    }
    size_t ml = tensord__request__get_packed_size(req);
    uint8_t *m = malloc(ml > 0 ? ml : 1);
    CHECK(m != NULL);
    tensord__request__pack(req, m);
    CHECK(h->nwant < MAX_OUTSTANDING);
    h->want[h->nwant] = req->id;
    snprintf(h->labels[h->nwant], LABEL_LEN, "#%llu %s", (unsigned long long)req->id, label);
    h->nwant++;
    snprintf(cur_label, sizeof cur_label, "%s", h->labels[h->nwant - 1]);
    if (debug) {
        fprintf(stderr, "request %s\n", cur_label);
    }
    int before = h->nheld;
    /* The data section comes as net reads it: rpc allocates (and charges) it first; "later"
    ** means wait until a reply is delivered, so the oldest heavy job runs meanwhile. */
    void *d = NULL;
    if (dl > 0) {
        struct td_err err = {0};
        int rc;
        for (;;) {
            phase_enter(PHASE_INLINE);
            rc = td_rpc_data_alloc(h->peer, dl, &d, &err);
            phase_leave();
            if (rc != TD_RPC_DATA_LATER) {
                break;
            }
            if (h->njobs == 0 && h->nheld > 0) {
                release_held(h);
            } else if (h->njobs == 0) {
                FAIL("request %s: its data section is refused for later, with no job queued "
                     "that could free its way",
                     cur_label);
            } else {
                finish_one_job(h);
            }
        }
        snprintf(cur_label, sizeof cur_label, "%s", h->labels[h->nwant - 1]);
        if (rc == 0) {
            memcpy(d, data, dl);
        } else {
            d = NULL; /* refused: rpc answers with the error, the data is discarded */
        }
    }
    phase_enter(PHASE_INLINE);
    td_rpc_handle(h->peer, m, ml, d, dl);
    phase_leave();
    free(m);
    check_memory();
    if (before > 0) { /* pins taken before this request are checked and let go after it */
        struct held keep[4];
        int nkeep = h->nheld - before;
        memcpy(keep, h->held + before, (size_t)nkeep * sizeof keep[0]);
        h->nheld = before;
        release_held(h);
        memcpy(h->held, keep, (size_t)nkeep * sizeof keep[0]);
        h->nheld = nkeep;
    }
    while (h->njobs > 0 && (h->eager || h->njobs > 4)) {
        finish_one_job(h);
    }
}

static void send_hello(struct harness *h, bool resume)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Hello m = TENSORD__HELLO__INIT;
    m.min_version = 1;
    m.max_version = 2;
    m.auth_token = "";
    m.client_name = "fuzz_ops";
    if (resume && h->have_token) {
        m.session_token.data = h->token;
        m.session_token.len = sizeof h->token;
    }
    req.body_case = TENSORD__REQUEST__BODY_HELLO;
    req.hello = &m;
    send_request(h, &req, NULL, 0, 0, resume ? "hello (resume)" : "hello");
}

static void new_peer(struct harness *h)
{
    CHECK(td_rpc_peer_new(&h->peer, &h->srv, on_reply, h) == 0);
    td_rpc_peer_set_addr(h->peer, "127.0.0.1:4242", 1);
    h->closed = false;
    h->nwant = 0; /* the old connection's unanswered requests stay unanswered */
}

static void close_peer(struct harness *h)
{
    snprintf(cur_label, sizeof cur_label, "(connection close)");
    phase_enter(PHASE_INLINE);
    td_rpc_peer_close(h->peer);
    phase_leave();
    h->peer = NULL;
}

/* ---- reading the program ---- */

static uint8_t rd(struct harness *h)
{
    return h->at < h->size ? h->in[h->at++] : 0;
}

static uint64_t slot(struct harness *h)
{
    return 1 + rd(h) % SLOTS;
}

/* Sizes worth trying: small ones, 0, powers of two up to 2^62, the 2^64/3 that wrapped cat's sum,
** and negatives. */
static const int64_t dim_table[32] = {
    1,
    2,
    3,
    0,
    4,
    5,
    7,
    8,
    1,
    16,
    64,
    1000,
    1 << 16,
    1 << 20,
    1 << 26,
    1 << 28,
    1 << 30,
    INT64_C(1) << 31,
    INT64_C(1) << 32,
    INT64_C(1) << 40,
    INT64_C(1) << 62,
    INT64_C(6148914691236517206),
    INT64_MAX,
    -1,
    -2,
    2,
    1,
    3,
    1 << 10,
    1 << 14,
    1 << 24,
    9,
};

static int64_t dim_of(struct harness *h)
{
    return dim_table[rd(h) % 32];
}

/* A signed small number for dim, start, length, step: -9..9 mostly, sometimes a table size. */
static int64_t small_of(struct harness *h)
{
    uint8_t b = rd(h);
    return b < 224 ? (int64_t)(b % 19) - 9 : dim_table[b % 32];
}

static Tensord__Scalar scalars[4];
static int nscalar;

static Tensord__Scalar *scalar_of(struct harness *h)
{
    Tensord__Scalar *s = &scalars[nscalar++ % 4];
    *s = (Tensord__Scalar)TENSORD__SCALAR__INIT;
    static const double fv[8] = {0.0, 1.0, -1.5, 2.0, 0.5, 1e300, NAN, INFINITY};
    static const int64_t iv[8] = {0, 1, -1, 2, 3, INT64_MAX, INT64_MIN, 1 << 30};
    uint8_t b = rd(h);
    switch (b % 3) {
    case 0:
        s->value_case = TENSORD__SCALAR__VALUE_F;
        s->f = fv[(b / 3) % 8];
        break;
    case 1:
        s->value_case = TENSORD__SCALAR__VALUE_I;
        s->i = iv[(b / 3) % 8];
        break;
    default:
        s->value_case = TENSORD__SCALAR__VALUE_B;
        s->b = (b / 3) % 2;
        break;
    }
    return s;
}

static const char *op_name(int op)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(&tensord__op__descriptor,
                                                                       op);
    return v != NULL ? v->name + 3 : "?"; /* without "OP_" */
}

/* Appends the dims to a label. */
static void label_dims(char *buf, size_t cap, const int64_t *d, size_t n)
{
    size_t len = strlen(buf);
    len += (size_t)snprintf(buf + len, len < cap ? cap - len : 0, "[");
    for (size_t i = 0; i < n && len < cap; i++) {
        len += (size_t)snprintf(buf + len, cap - len, i > 0 ? ",%lld" : "%lld", (long long)d[i]);
    }
    if (len < cap) {
        snprintf(buf + len, cap - len, "]");
    }
}

/* ---- building requests ---- */

struct opreq {
    Tensord__RunOp m;
    Tensord__OpArgs args;
    Tensord__Operand ops[4];
    Tensord__Operand *opp[4];
    int64_t dims[9];
};

static void opreq_init(struct opreq *o, int op, uint64_t out)
{
    o->m = (Tensord__RunOp)TENSORD__RUN_OP__INIT;
    o->args = (Tensord__OpArgs)TENSORD__OP_ARGS__INIT;
    o->m.op = (Tensord__Op)op;
    o->m.out = out;
    o->m.args = &o->args;
    for (int i = 0; i < 4; i++) {
        o->ops[i] = (Tensord__Operand)TENSORD__OPERAND__INIT;
        o->opp[i] = &o->ops[i];
    }
    o->m.inputs = o->opp;
}

static void opreq_handle(struct opreq *o, uint64_t handle)
{
    Tensord__Operand *x = &o->ops[o->m.n_inputs++];
    x->value_case = TENSORD__OPERAND__VALUE_HANDLE;
    x->handle = handle;
}

static void opreq_dims(struct opreq *o, const int64_t *d, size_t n)
{
    memcpy(o->dims, d, n * sizeof d[0]);
    o->args.dims = o->dims;
    o->args.n_dims = n;
    o->args.has_dims = true;
}

static void opreq_send(struct harness *h, struct opreq *o)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    req.body_case = TENSORD__REQUEST__BODY_RUN_OP;
    req.run_op = &o->m;
    char label[LABEL_LEN];
    snprintf(label, sizeof label, "run_op %s%s out=%llu in=", op_name((int)o->m.op),
             o->m.inplace ? "_" : "", (unsigned long long)o->m.out);
    for (size_t i = 0; i < o->m.n_inputs; i++) {
        size_t len = strlen(label);
        if (o->ops[i].value_case == TENSORD__OPERAND__VALUE_HANDLE) {
            snprintf(label + len, sizeof label - len, "%s%llu", i > 0 ? "," : "",
                     (unsigned long long)o->ops[i].handle);
        } else {
            snprintf(label + len, sizeof label - len, "%s#", i > 0 ? "," : "");
        }
    }
    if (o->args.has_dims) {
        size_t len = strlen(label);
        snprintf(label + len, sizeof label - len, " dims=");
        label_dims(label, sizeof label, o->args.dims, o->args.n_dims);
    }
    if (o->args.has_dim) {
        size_t len = strlen(label);
        snprintf(label + len, sizeof label - len, " dim=%lld", (long long)o->args.dim);
    }
    send_request(h, &req, NULL, 0, o->m.inplace ? 0 : o->m.out, label);
}

static int dtype_of(struct harness *h)
{
    return rd(h) % 6; /* 0: unspecified */
}

/* Create: a small tensor (at most 4096 elements) of pattern bytes. */
static void do_create(struct harness *h)
{
    uint64_t out = slot(h);
    uint8_t b = rd(h);
    int dt = 1 + b % 5;
    int nd = rd(h) % 9;
    int64_t dims[8];
    int64_t n = 1;
    if (b & 0x80) { /* a large one: 2^10..2^20 elements, the pipelined-upload shape */
        nd = 1;
        dims[0] = INT64_C(1) << (10 + rd(h) % 11);
        n = dims[0];
    }
    for (int i = 0; i < nd && !(b & 0x80); i++) {
        dims[i] = rd(h) % 5;
        if (n * (dims[i] > 0 ? dims[i] : 1) > 4096) {
            dims[i] = 1;
        }
        n *= dims[i] > 0 ? dims[i] : 1;
    }
    for (int i = 0; i < nd && !(b & 0x80); i++) {
        if (dims[i] == 0) {
            n = 0;
        }
    }
    static const size_t esize[6] = {0, 4, 8, 4, 8, 1};
    size_t bytes = (size_t)n * esize[dt];
    uint8_t *data = malloc(bytes > 0 ? bytes : 1);
    CHECK(data != NULL);
    for (size_t i = 0; i < bytes; i++) {
        data[i] = dt == 5 ? (uint8_t)(i % 3 == 0) : (uint8_t)(i * 37 + 11);
    }
    if (dt == 1 || dt == 2) { /* finite floats: values 0..15 */
        for (int64_t i = 0; i < n; i++) {
            if (dt == 1) {
                ((float *)data)[i] = (float)(i % 16);
            } else {
                ((double *)data)[i] = (double)(i % 16) - 4;
            }
        }
    }
    Tensord__Create m = TENSORD__CREATE__INIT;
    m.out = out;
    m.dtype = (Tensord__DType)dt;
    m.shape = dims;
    m.n_shape = (size_t)nd;
    m.requires_grad = (rd(h) & 1) && (dt == 1 || dt == 2);
    Tensord__Request req = TENSORD__REQUEST__INIT;
    req.body_case = TENSORD__REQUEST__BODY_CREATE;
    req.create = &m;
    char label[LABEL_LEN];
    snprintf(label, sizeof label, "create out=%llu dtype=%d shape=", (unsigned long long)out, dt);
    label_dims(label, sizeof label, dims, (size_t)nd);
    send_request(h, &req, data, bytes, out, label);
    free(data);
}

/* Full or Rand on any shape from the table, rank 0..9. */
static void do_full(struct harness *h, bool rand)
{
    uint64_t out = slot(h);
    int dt = dtype_of(h);
    size_t nd = rd(h) % 10;
    int64_t dims[9];
    for (size_t i = 0; i < nd; i++) {
        dims[i] = dim_of(h);
    }
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Full f = TENSORD__FULL__INIT;
    Tensord__Rand r = TENSORD__RAND__INIT;
    char label[LABEL_LEN];
    if (rand) {
        r.out = out;
        r.dtype = (Tensord__DType)dt;
        r.shape = dims;
        r.n_shape = nd;
        r.distribution = rd(h) & 1 ? TENSORD__DISTRIBUTION__NORMAL : TENSORD__DISTRIBUTION__UNIFORM;
        req.body_case = TENSORD__REQUEST__BODY_RAND;
        req.rand = &r;
    } else {
        f.out = out;
        f.dtype = (Tensord__DType)dt;
        f.shape = dims;
        f.n_shape = nd;
        f.value = scalar_of(h);
        f.requires_grad = rd(h) & 1;
        req.body_case = TENSORD__REQUEST__BODY_FULL;
        req.full = &f;
    }
    snprintf(label, sizeof label, "%s out=%llu shape=", rand ? "rand" : "full",
             (unsigned long long)out);
    label_dims(label, sizeof label, dims, nd);
    send_request(h, &req, NULL, 0, out, label);
}

static void do_arange(struct harness *h)
{
    Tensord__Arange m = TENSORD__ARANGE__INIT;
    m.out = slot(h);
    m.dtype = (Tensord__DType)dtype_of(h);
    m.start = scalar_of(h);
    m.end = scalar_of(h);
    uint8_t b = rd(h);
    m.step = b & 1 ? scalar_of(h) : NULL;
    Tensord__Request req = TENSORD__REQUEST__INIT;
    req.body_case = TENSORD__REQUEST__BODY_ARANGE;
    req.arange = &m;
    send_request(h, &req, NULL, 0, m.out, "arange");
}

/* Any op, any operands, any arguments. */
static void do_runop(struct harness *h)
{
    struct opreq o;
    /* every op the wire has (their values have gaps: one range per family), and now and then
    ** a value it does not have */
    const ProtobufCEnumDescriptor *ops = &tensord__op__descriptor;
    uint8_t pick = rd(h);
    int op = pick == 255 ? (int)rd(h) : ops->values[1 + pick % (ops->n_values - 1)].value;
    opreq_init(&o, op, slot(h));
    int nin = rd(h) % 5;
    for (int i = 0; i < nin; i++) {
        uint8_t b = rd(h);
        if (b < 200) {
            opreq_handle(&o, 1 + b % SLOTS);
        } else {
            Tensord__Operand *x = &o.ops[o.m.n_inputs++];
            x->value_case = TENSORD__OPERAND__VALUE_SCALAR;
            x->scalar = scalar_of(h);
        }
    }
    uint8_t f = rd(h);
    o.m.inplace = f & 1;
    if (f & 2) {
        size_t nd = rd(h) % 10;
        int64_t d[9];
        for (size_t i = 0; i < nd; i++) {
            d[i] = f & 4 ? dim_of(h) : small_of(h);
        }
        opreq_dims(&o, d, nd);
    }
    o.args.keepdim = (f & 8) != 0;
    if (f & 16) {
        o.args.has_dim = true;
        o.args.dim = small_of(h);
        o.args.dim2 = small_of(h);
    }
    if (f & 32) {
        o.args.start = small_of(h);
        o.args.end = small_of(h);
        o.args.step = small_of(h);
    }
    if (f & 64) {
        o.args.min = scalar_of(h);
        o.args.max = rd(h) & 1 ? scalar_of(h) : NULL;
        o.args.dtype = (Tensord__DType)dtype_of(h);
    }
    if (f & 128) {
        o.args.has_correction = true;
        o.args.correction = (double)(rd(h) % 3);
        o.m.out2 = slot(h);
    }
    uint8_t g = rd(h); /* the arguments of the indexing, sorting and random families */
    if (g & 1) {
        o.args.index_mask = (uint64_t)rd(h) | (g & 2 ? (uint64_t)rd(h) << 56 : 0);
        o.args.accumulate = (g & 4) != 0;
    }
    if (g & 8) {
        o.args.k = small_of(h);
        o.args.descending = (g & 16) != 0;
        o.args.sorted = (g & 32) != 0;
        o.args.stable = (g & 16) == 0;
        o.m.out3 = slot(h);
    }
    if (g & 64) {
        o.args.num_samples = small_of(h);
        o.args.replacement = (g & 2) != 0;
    }
    if (g & 128) {
        o.args.generator = slot(h); /* any handle: a generator state, a tensor, nothing */
    }
    opreq_send(h, &o);
}

/* out = in.expand(dims): stride-0 views of any logical size. */
static void do_expand(struct harness *h)
{
    struct opreq o;
    opreq_init(&o, TENSORD__OP__OP_EXPAND, slot(h));
    opreq_handle(&o, slot(h));
    size_t nd = 1 + rd(h) % 8;
    int64_t d[8];
    for (size_t i = 0; i < nd; i++) {
        d[i] = dim_of(h);
    }
    opreq_dims(&o, d, nd);
    opreq_send(h, &o);
}

/* out = full([1]*k, 1, dtype).expand(dims): a huge view in one instruction. */
static void do_huge(struct harness *h)
{
    uint64_t out = slot(h);
    int dt = 1 + rd(h) % 5;
    size_t nd = 1 + rd(h) % 8;
    int64_t ones[8] = {1, 1, 1, 1, 1, 1, 1, 1}, d[8];
    for (size_t i = 0; i < nd; i++) {
        d[i] = dim_of(h);
    }
    Tensord__Full f = TENSORD__FULL__INIT;
    Tensord__Scalar one = TENSORD__SCALAR__INIT;
    one.value_case = TENSORD__SCALAR__VALUE_F;
    one.f = 1.0;
    f.out = out;
    f.dtype = (Tensord__DType)dt;
    f.shape = ones;
    f.n_shape = nd;
    f.value = &one;
    f.requires_grad = (rd(h) & 1) && (dt == 1 || dt == 2);
    Tensord__Request req = TENSORD__REQUEST__INIT;
    req.body_case = TENSORD__REQUEST__BODY_FULL;
    req.full = &f;
    uint64_t view = 1 + out % SLOTS; /* the next slot */
    send_request(h, &req, NULL, 0, out, "full ones for a huge view");
    struct opreq o;
    opreq_init(&o, TENSORD__OP__OP_EXPAND, view);
    opreq_handle(&o, out);
    opreq_dims(&o, d, nd);
    opreq_send(h, &o);
}

/* A view of a view: transpose, narrow, select, permute, flip, squeeze, unsqueeze, slice, t, mT. */
static void do_view(struct harness *h)
{
    static const int ops[] = {TENSORD__OP__OP_TRANSPOSE, TENSORD__OP__OP_NARROW,
                              TENSORD__OP__OP_SELECT,    TENSORD__OP__OP_PERMUTE,
                              TENSORD__OP__OP_FLIP,      TENSORD__OP__OP_SQUEEZE,
                              TENSORD__OP__OP_UNSQUEEZE, TENSORD__OP__OP_SLICE,
                              TENSORD__OP__OP_T,         TENSORD__OP__OP_MT,
                              TENSORD__OP__OP_RESHAPE,   TENSORD__OP__OP_FLATTEN};
    struct opreq o;
    int op = ops[rd(h) % 12];
    opreq_init(&o, op, slot(h));
    opreq_handle(&o, slot(h));
    o.args.has_dim = true;
    o.args.dim = (int64_t)(rd(h) % 10) - 2;
    o.args.dim2 = (int64_t)(rd(h) % 10) - 2;
    o.args.start = (int64_t)(rd(h) % 4);
    o.args.end = small_of(h);
    o.args.step = 1 + rd(h) % 3;
    if (op == TENSORD__OP__OP_PERMUTE || op == TENSORD__OP__OP_FLIP ||
        op == TENSORD__OP__OP_RESHAPE) {
        size_t nd = rd(h) % 9;
        int64_t d[8];
        uint8_t b = rd(h);
        for (size_t i = 0; i < nd; i++) {
            d[i] = op == TENSORD__OP__OP_RESHAPE ? (i == 0 ? -1 : dim_of(h))
                                                 : (int64_t)((b + i * 5) % nd);
        }
        opreq_dims(&o, d, nd);
    }
    opreq_send(h, &o);
}

/* Reductions, with and without dim. */
static void do_reduce(struct harness *h)
{
    static const int ops[] = {
        TENSORD__OP__OP_SUM,        TENSORD__OP__OP_MEAN,      TENSORD__OP__OP_PROD,
        TENSORD__OP__OP_MAX,        TENSORD__OP__OP_MIN,       TENSORD__OP__OP_ARGMAX,
        TENSORD__OP__OP_ARGMIN,     TENSORD__OP__OP_STD,       TENSORD__OP__OP_VAR,
        TENSORD__OP__OP_NORM,       TENSORD__OP__OP_LOGSUMEXP, TENSORD__OP__OP_ALL,
        TENSORD__OP__OP_ANY,        TENSORD__OP__OP_SOFTMAX,   TENSORD__OP__OP_LOG_SOFTMAX,
        TENSORD__OP__OP_CONTIGUOUS,
    };
    struct opreq o;
    int op = ops[rd(h) % 16];
    opreq_init(&o, op, slot(h));
    opreq_handle(&o, slot(h));
    uint8_t f = rd(h);
    if (f & 1) {
        o.args.has_dim = true;
        o.args.dim = (int64_t)(rd(h) % 9) - 1;
    }
    if (f & 2) {
        int64_t d[2] = {0, (int64_t)(rd(h) % 8) - 1};
        opreq_dims(&o, d, 1 + (f >> 2 & 1));
    }
    o.args.keepdim = (f & 8) != 0;
    if ((op == TENSORD__OP__OP_MAX || op == TENSORD__OP__OP_MIN) && (f & 16)) {
        o.m.out2 = slot(h);
    }
    opreq_send(h, &o);
}

/* matmul, mm, bmm, outer, linear, mse_loss, cross_entropy, where, on any slots. */
static void do_matmul(struct harness *h)
{
    static const int ops[] = {TENSORD__OP__OP_MATMUL,        TENSORD__OP__OP_MM,
                              TENSORD__OP__OP_BMM,           TENSORD__OP__OP_OUTER,
                              TENSORD__OP__OP_LINEAR,        TENSORD__OP__OP_MSE_LOSS,
                              TENSORD__OP__OP_CROSS_ENTROPY, TENSORD__OP__OP_WHERE};
    struct opreq o;
    int op = ops[rd(h) % 8];
    opreq_init(&o, op, slot(h));
    opreq_handle(&o, slot(h));
    opreq_handle(&o, slot(h));
    if (op == TENSORD__OP__OP_WHERE || (op == TENSORD__OP__OP_LINEAR && (rd(h) & 1))) {
        opreq_handle(&o, slot(h));
    }
    opreq_send(h, &o);
}

/* cat / stack / repeat of 1..4 slots (the same one repeated is the finding's shape). */
static void do_cat(struct harness *h)
{
    uint8_t b = rd(h);
    struct opreq o;
    if (b % 3 == 2) {
        opreq_init(&o, TENSORD__OP__OP_REPEAT, slot(h));
        opreq_handle(&o, slot(h));
        size_t nd = 1 + rd(h) % 8;
        int64_t d[8];
        for (size_t i = 0; i < nd; i++) {
            d[i] = dim_of(h);
        }
        opreq_dims(&o, d, nd);
    } else {
        opreq_init(&o, b % 3 == 0 ? TENSORD__OP__OP_CAT : TENSORD__OP__OP_STACK, slot(h));
        int n = 1 + (b >> 2) % 4;
        for (int i = 0; i < n; i++) {
            opreq_handle(&o, slot(h));
        }
        o.args.has_dim = true;
        o.args.dim = (int64_t)(rd(h) % 5) - 1;
    }
    opreq_send(h, &o);
}

/* An in-place op on a slot (fill_, zero_, add_, mul_, copy_, clamp_, neg_, uniform_ ...). */
static void do_inplace(struct harness *h)
{
    static const int ops[] = {TENSORD__OP__OP_ADD,  TENSORD__OP__OP_MUL,     TENSORD__OP__OP_FILL,
                              TENSORD__OP__OP_ZERO, TENSORD__OP__OP_COPY,    TENSORD__OP__OP_CLAMP,
                              TENSORD__OP__OP_NEG,  TENSORD__OP__OP_UNIFORM, TENSORD__OP__OP_DIV,
                              TENSORD__OP__OP_POW,  TENSORD__OP__OP_EXP,     TENSORD__OP__OP_SUB};
    struct opreq o;
    int op = ops[rd(h) % 12];
    uint64_t target = slot(h);
    opreq_init(&o, op, target);
    o.m.inplace = true;
    opreq_handle(&o, target);
    uint8_t b = rd(h);
    if (op != TENSORD__OP__OP_ZERO && op != TENSORD__OP__OP_NEG && op != TENSORD__OP__OP_EXP &&
        op != TENSORD__OP__OP_UNIFORM && op != TENSORD__OP__OP_CLAMP) {
        if (b & 1) {
            opreq_handle(&o, slot(h));
        } else {
            Tensord__Operand *x = &o.ops[o.m.n_inputs++];
            x->value_case = TENSORD__OPERAND__VALUE_SCALAR;
            x->scalar = scalar_of(h);
        }
    }
    if (op == TENSORD__OP__OP_CLAMP) {
        o.args.min = scalar_of(h);
    }
    opreq_send(h, &o);
}

static void do_get(struct harness *h)
{
    Tensord__Get m = TENSORD__GET__INIT;
    m.handle = slot(h);
    uint8_t b = rd(h);
    m.meta_only = b & 1;
    if (b & 2) {
        m.offset = (uint64_t)dim_of(h);
        m.length = (uint64_t)dim_of(h);
    }
    Tensord__Request req = TENSORD__REQUEST__INIT;
    req.body_case = TENSORD__REQUEST__BODY_GET;
    req.get = &m;
    char label[LABEL_LEN];
    snprintf(label, sizeof label, "get %llu offset=%llu length=%llu%s",
             (unsigned long long)m.handle, (unsigned long long)m.offset,
             (unsigned long long)m.length, m.meta_only ? " meta" : "");
    send_request(h, &req, NULL, 0, 0, label);
}

static void do_format(struct harness *h)
{
    Tensord__Format m = TENSORD__FORMAT__INIT;
    m.handle = slot(h);
    Tensord__Request req = TENSORD__REQUEST__INIT;
    req.body_case = TENSORD__REQUEST__BODY_FORMAT;
    req.format = &m;
    char label[LABEL_LEN];
    snprintf(label, sizeof label, "format %llu", (unsigned long long)m.handle);
    send_request(h, &req, NULL, 0, 0, label);
}

static void do_free(struct harness *h)
{
    uint64_t hd[3];
    Tensord__Free m = TENSORD__FREE__INIT;
    m.n_handles = 1 + rd(h) % 3;
    for (size_t i = 0; i < m.n_handles; i++) {
        hd[i] = slot(h);
    }
    m.handles = hd;
    Tensord__Request req = TENSORD__REQUEST__INIT;
    req.body_case = TENSORD__REQUEST__BODY_FREE;
    req.free = &m;
    send_request(h, &req, NULL, 0, 0, "free");
}

static void do_autograd(struct harness *h)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Backward bw = TENSORD__BACKWARD__INIT;
    Tensord__Grad g = TENSORD__GRAD__INIT;
    Tensord__SetGrad sg = TENSORD__SET_GRAD__INIT;
    uint8_t b = rd(h);
    const char *label;
    switch (b % 3) {
    case 0:
        bw.handle = slot(h);
        bw.gradient = b & 4 ? slot(h) : 0;
        bw.retain_graph = (b & 8) != 0;
        req.body_case = TENSORD__REQUEST__BODY_BACKWARD;
        req.backward = &bw;
        label = "backward";
        break;
    case 1:
        g.handle = slot(h);
        g.out = slot(h);
        req.body_case = TENSORD__REQUEST__BODY_GRAD;
        req.grad = &g;
        label = "grad";
        break;
    default:
        sg.handle = slot(h);
        sg.requires_grad = (b & 4) == 0;
        sg.clear_grad = (b & 8) != 0;
        sg.retain_grad = (b & 16) != 0;
        req.body_case = TENSORD__REQUEST__BODY_SET_GRAD;
        req.set_grad = &sg;
        label = "set_grad";
        break;
    }
    send_request(h, &req, NULL, 0, 0, label);
}

/* Save or Load: 1..4 (name, handle) pairs, a handle possibly repeated under several names. */
static void do_persist(struct harness *h)
{
    static const char *files[4] = {"a", "b", "model.v1", "a"};
    static const char *names[4] = {"w", "x", "y", "z"};
    uint8_t b = rd(h);
    Tensord__NamedTensor nt[4], *ntp[4];
    size_t n = (b >> 1) % 5;
    for (size_t i = 0; i < n; i++) {
        nt[i] = (Tensord__NamedTensor)TENSORD__NAMED_TENSOR__INIT;
        nt[i].name = (char *)names[b & 0x40 ? 0 : (i + (b >> 4)) % 4]; /* 0x40: one name */
        nt[i].handle = slot(h);
        ntp[i] = &nt[i];
    }
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Save sv = TENSORD__SAVE__INIT;
    Tensord__Load ld = TENSORD__LOAD__INIT;
    const char *file = files[rd(h) % 4];
    if (b & 1) {
        ld.file = (char *)file;
        ld.tensors = ntp;
        ld.n_tensors = n;
        req.body_case = TENSORD__REQUEST__BODY_LOAD;
        req.load = &ld;
    } else {
        sv.file = (char *)file;
        sv.tensors = ntp;
        sv.n_tensors = n;
        req.body_case = TENSORD__REQUEST__BODY_SAVE;
        req.save = &sv;
    }
    send_request(h, &req, NULL, 0, 0, b & 1 ? "load" : "save");
}

static void do_write(struct harness *h)
{
    Tensord__Write m = TENSORD__WRITE__INIT;
    m.handle = slot(h);
    m.offset = (uint64_t)(rd(h) % 64);
    uint8_t data[64];
    size_t n = rd(h) % 65;
    for (size_t i = 0; i < n; i++) {
        data[i] = (uint8_t)(i * 7);
    }
    Tensord__Request req = TENSORD__REQUEST__INIT;
    req.body_case = TENSORD__REQUEST__BODY_WRITE;
    req.write = &m;
    send_request(h, &req, data, n, 0, "write");
}

static void do_misc(struct harness *h)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Ping ping = TENSORD__PING__INIT;
    Tensord__Stats stats = TENSORD__STATS__INIT;
    Tensord__ManualSeed seed = TENSORD__MANUAL_SEED__INIT;
    Tensord__SetGradEnabled ge = TENSORD__SET_GRAD_ENABLED__INIT;
    uint8_t b = rd(h);
    const char *label;
    switch (b % 4) {
    case 0:
        req.body_case = TENSORD__REQUEST__BODY_PING;
        req.ping = &ping;
        label = "ping";
        break;
    case 1:
        req.body_case = TENSORD__REQUEST__BODY_STATS;
        req.stats = &stats;
        label = "stats";
        break;
    case 2:
        seed.seed = b;
        req.body_case = TENSORD__REQUEST__BODY_MANUAL_SEED;
        req.manual_seed = &seed;
        label = "manual_seed";
        break;
    default:
        ge.enabled = (b & 4) == 0;
        req.body_case = TENSORD__REQUEST__BODY_SET_GRAD_ENABLED;
        req.set_grad_enabled = &ge;
        label = "set_grad_enabled";
        break;
    }
    send_request(h, &req, NULL, 0, 0, label);
}

/* linspace, eye, randint, empty: ops with no tensor input, sized by their arguments. */
static void do_factory(struct harness *h)
{
    static const int ops[] = {TENSORD__OP__OP_LINSPACE, TENSORD__OP__OP_EYE,
                              TENSORD__OP__OP_RANDINT, TENSORD__OP__OP_EMPTY};
    struct opreq o;
    int op = ops[rd(h) % 4];
    opreq_init(&o, op, slot(h));
    size_t nd = rd(h) % 4;
    int64_t d[3];
    for (size_t i = 0; i < nd; i++) {
        d[i] = dim_of(h);
    }
    opreq_dims(&o, d, nd);
    o.args.has_dim = true;
    o.args.dim = dim_of(h);
    o.args.start = small_of(h);
    o.args.end = dim_of(h);
    o.args.step = dim_of(h);
    o.args.min = scalar_of(h);
    o.args.max = scalar_of(h);
    opreq_send(h, &o);
}

enum insn {
    I_CREATE,
    I_FULL,
    I_RAND,
    I_ARANGE,
    I_RUNOP,
    I_EXPAND,
    I_HUGE,
    I_VIEW,
    I_REDUCE,
    I_MATMUL,
    I_CAT,
    I_INPLACE,
    I_GET,
    I_FORMAT,
    I_FREE,
    I_AUTOGRAD,
    I_PERSIST,
    I_WRITE,
    I_MISC,
    I_FACTORY,
    I_RUN_HEAVY,
    I_RECONNECT,
    I_CLOSE_SESSION,
    I_COUNT
};

static void run_program(struct harness *h)
{
    while (h->at < h->size && !h->closed) {
        if (h->heavy_ns > HEAVY_BUDGET_NS) {
            break; /* enough work for one input: the connection goes (cancelling the rest) */
        }
        switch (rd(h) % I_COUNT) {
        case I_CREATE: do_create(h); break;
        case I_FULL: do_full(h, false); break;
        case I_RAND: do_full(h, true); break;
        case I_ARANGE: do_arange(h); break;
        case I_RUNOP: do_runop(h); break;
        case I_EXPAND: do_expand(h); break;
        case I_HUGE: do_huge(h); break;
        case I_VIEW: do_view(h); break;
        case I_REDUCE: do_reduce(h); break;
        case I_MATMUL: do_matmul(h); break;
        case I_CAT: do_cat(h); break;
        case I_INPLACE: do_inplace(h); break;
        case I_GET: do_get(h); break;
        case I_FORMAT: do_format(h); break;
        case I_FREE: do_free(h); break;
        case I_AUTOGRAD: do_autograd(h); break;
        case I_PERSIST: do_persist(h); break;
        case I_WRITE: do_write(h); break;
        case I_MISC: do_misc(h); break;
        case I_FACTORY: do_factory(h); break;
        case I_RUN_HEAVY: finish_one_job(h); break;
        case I_RECONNECT: {
            /* The connection goes away mid-work (its queued and running work is cancelled);
            ** a new one resumes the session by its token. */
            close_peer(h);
            new_peer(h);
            send_hello(h, true);
            break;
        }
        case I_CLOSE_SESSION: {
            Tensord__Request req = TENSORD__REQUEST__INIT;
            Tensord__CloseSession cs = TENSORD__CLOSE_SESSION__INIT;
            req.body_case = TENSORD__REQUEST__BODY_CLOSE_SESSION;
            req.close_session = &cs;
            send_request(h, &req, NULL, 0, 0, "close_session");
            close_peer(h);
            new_peer(h);
            send_hello(h, false);
            break;
        }
        default: break;
        }
    }
}

static void clear_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        return;
    }
    struct dirent *e;
    char path[512];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) {
            continue;
        }
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) != 0) {
            clear_files(path); /* a per-session directory */
            rmdir(path);
        }
    }
    closedir(d);
}

static void remove_files_dir(void)
{
    clear_files(files_dir);
    rmdir(files_dir);
}

static int64_t env_i64(const char *name, int64_t dflt)
{
    const char *v = getenv(name);
    return v != NULL && *v != '\0' ? strtoll(v, NULL, 0) : dflt;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    td_log_min_level = TD_LOG_OFF;
    debug = getenv("FUZZ_DEBUG") != NULL;
    openblas_set_num_threads(1);
    td_parallel_set_threads(1); /* every kernel on this thread, so its CPU clock sees them */
    snprintf(files_dir, sizeof files_dir, "/tmp/td_fuzz_ops.XXXXXX");
    CHECK(mkdtemp(files_dir) != NULL);
    atexit(remove_files_dir);
    CHECK(pthread_getcpuclockid(pthread_self(), &main_cpu) == 0);
    pthread_t wd;
    CHECK(pthread_create(&wd, NULL, watchdog_main, NULL) == 0);
    pthread_detach(wd);
    td_alloc_cache_limit(32 << 20);
    base_live = td_alloc_live_bytes();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    struct harness *h = &hs;
    memset(h, 0, sizeof *h);
    h->in = data;
    h->size = size;
    h->at = 1;
    h->eager = (data[0] & 1) != 0;
    h->hold = (data[0] & 2) != 0;
    h->next_id = 1;
    fake_ms = 1000;
    struct td_store_config cfg = {
        .max_bytes = MAX_BYTES,
        .session_max_bytes = 64 << 20, /* room for a misjudged op to show on the clock */
        .max_tensor_bytes = 64 << 20,
        .max_sessions = 4,
        .session_max_handles = 256,
        .session_ttl_ms = 60000,
    };
    td_store_init(&h->store, &cfg, &executor_deferred);
    h->srv.store = &h->store;
    h->srv.max_frame_bytes = 1u << 20;
    h->srv.heavy_work = 1 << 16; /* the daemon's threshold (server/main.c) */
    h->srv.max_op_elements = env_i64("FUZZ_OPS_MAX_OP_ELEMENTS", INT64_C(1) << 32);
    h->srv.max_request_ms = (uint64_t)env_i64("FUZZ_OPS_MAX_REQUEST_MS", 1000);
    h->srv.session_max_disk_bytes = 24 << 20;
    h->srv.max_disk_bytes = 40 << 20;
    h->srv.peer_max_unsent_bytes = 4 << 20;
    h->srv.now_ms = fake_now;
    h->srv.started_ms = fake_ms;
    h->srv.files_dir = files_dir;
    h->srv.auth_token = NULL;
    memset(h->srv.instance_id, 7, sizeof h->srv.instance_id);
    td_map_init(&h->srv.auth_penalty);
    new_peer(h);
    send_hello(h, false);

    run_program(h);

    /* The end: queued heavy jobs run and every request is answered; past the heavy budget the
    ** connection goes first instead, which cancels what is queued. */
    if (h->heavy_ns <= HEAVY_BUDGET_NS) {
        release_held(h); /* held replies count as unsent and may hold the session */
        while (h->njobs > 0) {
            finish_one_job(h);
            release_held(h);
        }
        if (!h->closed && h->nwant > 0) {
            FAIL("request %s was never answered", h->labels[0]);
        }
    }
    release_held(h);
    close_peer(h);
    while (h->njobs > 0) {
        finish_one_job(h);
    }
    CHECK(!td_store_busy(&h->store));
    td_store_close(&h->store);
    td_rpc_server_close(&h->srv);
    clear_files(files_dir);
    snprintf(cur_label, sizeof cur_label, "(end of input)");
    int64_t leaked = td_alloc_live_bytes() - base_live;
    if (leaked != 0) {
        FAIL("%lld bytes still held after the store closed", (long long)leaked);
    }
    return 0;
}
