/* server/session/session.h — sessions, their handle tables, quotas, RNG and job queues.
**
** A session owns the tensors its client created, under client-chosen uint64 handles, plus the
** byte quota they are charged to, the seedable RNG, and a FIFO of work. It is named by a 128-bit
** token from getrandom and outlives its connections for an idle TTL. The store indexes
** sessions by token and expires idle ones.
**
** Work for one session runs strictly in order, one job at a time. A light job runs at once on the
** caller's (loop) thread; a heavy one is handed to the store's executor (main wires libuv's
** thread pool in), and the queue waits for it. So a session's objects are only ever touched by
** one thread at a time, and plain refcounts suffice. This layer knows core, not libuv, protobuf
** or sockets.
**
** Light jobs share a budget per loop turn (td_store_config.turn_work): once the jobs run inline
** in this turn have spent it, a session with more to run waits on the store's deferred list,
** and td_store_turn, which the owner calls once per loop turn, resumes those sessions in round
** robin. So no stream of cheap requests holds the loop, and other connections are served
** between turns, while a pipelining client still gets a budget's worth of work every turn.
**
** Every handle table entry is charged td_store_config.entry_bytes (TD_ENTRY_BYTES in the daemon)
** to its session's quota, whatever its tensor's storage costs: a table of a million views of one
** small tensor is not free.
**
** Named tensors (td_session_set_name ...): a session also maps names to tensor references, in
** the order the names were first set, as a Python dict holding tensors would. A name keeps its
** tensor alive after every handle naming it is freed, and goes with the session. Each name is
** charged entry_bytes plus its length; its tensor's storage is charged once, where it was made.
*/
#ifndef TD_SESSION_SESSION_H
#define TD_SESSION_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/alloc.h"
#include "base/err.h"
#include "base/map.h"
#include "base/node.h"
#include "core/autograd.h"
#include "core/cancel.h"
#include "core/rng.h"
#include "core/tensor.h"

#define TD_TOKEN_BYTES 16 /* a token's secret; also a whole token saved before scale-out */
#define TD_TOKEN_MAX TD_NODE_TOKEN_MAX /* "<node id>.<32 hex>" */

struct td_session;
struct td_job;

/* A unit of work in a session's FIFO. The submitter embeds it in its own struct. */
struct td_job {
    struct td_job *next;
    struct td_session *session; /* set by td_session_submit; holds a reference */
    /* Called on the loop thread just before the job runs, when every earlier job has finished:
    ** true sends run() to the executor. NULL means light. */
    bool (*is_heavy)(struct td_job *job);
    void (*run)(struct td_job *job);  /* the work; may run on a worker thread */
    void (*done)(struct td_job *job); /* loop thread, in FIFO order; may free the job.
                                            ** A cancelled job (td_session_cancel,
                                            ** td_store_cancel_all, td_store_stop) gets done()
                                            ** without run(), while no other job of the
                                            ** session runs: it must then have no effect. */
    struct td_cancel cancel;          /* armed by the submitter (reason NONE before
                                            ** td_session_submit; the deadline when run()
                                            ** starts); raised by td_session_cancel and
                                            ** td_store_cancel_all; the raised reason says
                                            ** why a dropped job was dropped */
    bool cancelled;                   /* dropped before it ran: done() without run() */
    int64_t work;                     /* its cost in work units (is_heavy may set it;
                                            ** 0 before): a job run inline spends this plus
                                            ** TD_JOB_BASE_WORK of the store's turn budget */
};

/* What every job run inline costs on top of its work (decoding, dispatch, the reply), so a
** stream of Pings spends the turn budget too: a Ping takes about 3 us end to end, and a work
** unit of a cheap kernel about 2 ns (20,000 sums of 60,000 elements took 4.3 s). */
#define TD_JOB_BASE_WORK 1024

/* What one handle table entry costs its session's quota, besides its tensor's storage: the
** tensor struct (about 190 bytes with 8 dims), the entry, its slots in a map that grows at 3/4
** load, and the allocator's headers; measured, a table of a million views used about 313 bytes
** of RSS each. The daemon sets td_store_config.entry_bytes to it. */
#define TD_ENTRY_BYTES 320

/* Runs heavy jobs somewhere else. submit() must arrange for run(job) to be called once, and
** then td_session_job_complete(job) on the loop thread. */
struct td_executor {
    void (*submit)(struct td_executor *ex, struct td_job *job);
};

/* An executor that runs jobs inline (for tests and single-threaded embedding). */
extern struct td_executor td_executor_inline;

/* The most work (files removed by on_expire) one td_store_sweep does before it leaves the rest
** for the next one. */
#define TD_STORE_SWEEP_MAX_WORK 4096

struct td_store_config {
    int64_t max_bytes;           /* all sessions together; <= 0 unlimited */
    int64_t session_max_bytes;   /* per session; <= 0 unlimited */
    int64_t max_tensor_bytes;    /* one tensor; <= 0 unlimited */
    int64_t max_sessions;        /* <= 0 unlimited */
    int64_t session_max_handles; /* handle table entries per session; <= 0 unlimited */
    uint64_t session_ttl_ms;     /* idle time with no connection before a session expires */
    int64_t turn_work;           /* inline work (td_job.work + TD_JOB_BASE_WORK each) per loop
                                ** turn before sessions wait for td_store_turn; <= 0 unlimited */
    int64_t entry_bytes;         /* charged per handle table entry (TD_ENTRY_BYTES); <= 0 none,
                                ** for tests that count tensor bytes exactly */
    const char *node_id;         /* borrowed: this node's id (td_node_id_valid); new tokens are
                                ** "<node_id>.<32 hex>". NULL: 16 raw bytes, as before
                                ** scale-out (embedding, and tests of this layer) */
};

struct td_store {
    struct td_map by_key;   /* first 8 bytes of the token's SHA-256 -> struct td_session* */
    struct td_quota global; /* parent of every session's quota */
    struct td_store_config cfg;
    struct td_executor *ex; /* borrowed */
    uint64_t next_id;       /* for log lines */
    bool closing;
    bool stopping; /* td_store_stop: queued jobs are dropped, not run */
    /* Called by td_store_sweep on the loop thread for each session that expires, just before
    ** it is closed, while no job of it runs (what lives outside the store, its Save files,
    ** goes with it); returns the work it did (files removed). One sweep stops expiring once
    ** that reaches TD_STORE_SWEEP_MAX_WORK: the rest expire at the next sweep, so sessions
    ** that all expire at once do not hold the loop. NULL: nothing. td_store_init sets it NULL;
    ** the owner sets it after. Not called by td_store_close: at shutdown sessions are
    ** snapshotted, not ended. */
    int (*on_expire)(struct td_session *s, void *arg);
    void *on_expire_arg; /* borrowed; passed to on_expire */
    int64_t turn_spent;  /* inline work run since the last td_store_turn */
    /* Sessions with jobs that wait for the next turn (the budget was spent), in FIFO order;
    ** each holds a reference while listed. */
    struct td_session *defer_head, *defer_tail;
};

/* A handle table slot's value: a tensor (an owned reference), or the error of the op that
** should have produced it (owned; the pointer with its low bit set, td_malloc's blocks being
** 16-aligned). No allocation of its own: a tiny op's result costs no entry struct. */
static inline bool td_entry_failed(const void *v)
{
    return ((uintptr_t)v & 1) != 0;
}

/* The slot's tensor, or NULL when it holds a failure. */
static inline struct td_tensor *td_entry_tensor(void *v)
{
    return td_entry_failed(v) ? NULL : (struct td_tensor *)v;
}

/* The slot's failure, or NULL when it holds a tensor. */
static inline struct td_err *td_entry_failure(void *v)
{
    return td_entry_failed(v) ? (struct td_err *)((uintptr_t)v & ~(uintptr_t)1) : NULL;
}

/* One named tensor: a node of its session's first-set-order list and of a hash chain. */
struct td_name {
    struct td_name *prev, *next; /* the session's names in first-set order */
    struct td_name *chain;       /* the next name whose hash is the same map key */
    uint64_t key;                /* the map key its hash gives (never 0 or UINT64_MAX) */
    struct td_tensor *t;         /* owned reference */
    size_t len;                  /* bytes of name, without the NUL */
    char name[];                 /* len bytes and a NUL */
};

#define TD_NAME_MAX_BYTES 255 /* a name's longest length */
#define TD_SESSION_MAX_NAMES                                                                       \
    65536 /* names one session may hold (ListNames' reply is bounded
                                   ** by this times TD_NAME_MAX_BYTES plus 3 bytes each) */

#define TD_SESSION_MAX_WALKS 8 /* nested backwards a session may hold suspended */

struct td_session {
    int refs;                    /* the store's, connections', queued jobs' */
    uint64_t id;                 /* small number for logs; never the token */
    uint8_t token[TD_TOKEN_MAX]; /* token_len bytes: "<node>.<hex>", or 16 raw (legacy) */
    uint8_t token_len;           /* 0 while restored: only token_sha is known */
    char token_tag[9];           /* 8 hex digits of a hash of the token, safe to log */
    struct td_store *store;      /* borrowed; NULL once closed */
    struct td_map handles;       /* handle -> a tensor or a failure (td_entry_*) */
    struct td_quota quota;       /* parent: store->global */
    int64_t entry_bytes;         /* each handle table entry's charge (the store's, at open) */
    /* The generator, made on first use (td_session_rng): 2.5 KiB most sessions never touch.
    ** Until then rng_seed is what it starts from. */
    struct td_rng *rng;
    uint64_t rng_seed;
    int nconns;                 /* attached connections; TTL counts only at 0 */
    uint64_t idle_since_ms;     /* when nconns last dropped to 0 */
    bool closed;                /* CloseSession or expiry; tensors are gone */
    bool restored;              /* from a snapshot, not yet resumed: only token_sha is known */
    uint8_t token_sha[32];      /* SHA-256 of the token (its by_key is the first 8 bytes) */
    bool no_grad;               /* torch.no_grad(): ops record no autograd graph */
    bool running;               /* a heavy job is out on the executor */
    int holds;                  /* td_session_hold: no new job starts while > 0 */
    struct td_job *current;     /* the job running now (inline or on the executor), or NULL */
    struct td_job *head, *tail; /* FIFO of jobs not yet started */
    bool deferred;              /* on its store's deferred list (which holds a reference) */
    struct td_session *defer_next;
    /* Backwards waiting for a custom Function's gradients from their client, innermost last
    ** (a Function's backward may itself call backward). Only the session's jobs (one at a
    ** time) touch them; freed with the session. */
    struct td_walk {
        struct td_backward *b;
        uint64_t conn_id;  /* the connection that runs the Functions' backwards */
        bool results_only; /* autograd.grad: put the inputs' gradients in outs */
        int nouts;
        uint64_t outs[TD_BACKWARD_MAX_INPUTS];
    } * walks; /* TD_SESSION_MAX_WALKS of them, allocated by the first suspension (4 KiB) */
    int nwalks;
    /* Named tensors: key (a keyed hash of the name) -> the first struct td_name of its chain;
    ** the list in first-set order; their count and the sum of their lengths. */
    struct td_map names;
    struct td_name *names_head, *names_tail;
    size_t nnames;
    int64_t names_len;
};

/* ---- store ---- */

void td_store_init(struct td_store *st, const struct td_store_config *cfg, struct td_executor *ex);

/* Closes every session and frees the index. Jobs must have drained. */
void td_store_close(struct td_store *st);

/* Opens a new session with a fresh token; *out is a new reference for the caller (a connection).
** Errors: TD_ELIMIT (max_sessions), TD_ENOMEM, TD_EIO (no randomness). */
int td_store_open(struct td_store *st, struct td_session **out, struct td_err *err);

/* Finds the live session with this token, of either form (compared in constant time; looked up
** by its SHA-256, so a restored session is found the same way and then learns its token);
** *out is a new reference. Errors: TD_ESESSION. Routing by the token's node is rpc's. */
int td_store_resume(struct td_store *st, const uint8_t *token, size_t len, struct td_session **out,
                    struct td_err *err);

/* Expires sessions with no connection, no pending work and idle for longer than the TTL (up to
** TD_STORE_SWEEP_MAX_WORK of on_expire's work; the rest at the next call). Returns how many
** expired. */
int td_store_sweep(struct td_store *st, uint64_t now_ms);

size_t td_store_count(const struct td_store *st);
size_t td_store_tensor_count(const struct td_store *st);

/* The daemon is going away: jobs still queued are finished without running, now for idle
** sessions and for busy ones when their running job completes (which it does, unless
** cancelled). Jobs submitted later are dropped too. Used when a shutdown stops waiting for
** in-flight work. */
void td_store_stop(struct td_store *st);

/* Cancels every session's work (SIGTERM): queued jobs are dropped (done() without run()), a
** running one has TD_CANCEL_SHUTDOWN raised and stops at its next chunk boundary. */
void td_store_cancel_all(struct td_store *st);

/* True while any session has jobs queued or running. */
bool td_store_busy(const struct td_store *st);

/* Once per loop turn (before the loop waits for I/O): refills the turn budget and runs the
** deferred sessions' jobs, round robin, one session after another until the budget is spent
** again; sessions not reached keep their places at the front of the list. Jobs' done() runs
** from here. Loop thread. */
void td_store_turn(struct td_store *st);

/* True while a session waits for the next td_store_turn: the loop must not block in poll. */
bool td_store_has_deferred(const struct td_store *st);

/* A session brought back from a snapshot, known by the SHA-256 of its token until a client
** resumes it with the token itself; *out is borrowed (the store holds it). */
int td_store_add_restored(struct td_store *st, const uint8_t sha[32], struct td_session **out,
                          struct td_err *err); /* handle table entries, all sessions */

/* ---- session references and connections ---- */

struct td_session *td_session_ref(struct td_session *s);
void td_session_unref(struct td_session *s); /* NULL is a no-op */

/* The session's generator (torch's default CPU generator), made and seeded from s->rng_seed on
** first use; NULL when memory is short. */
struct td_rng *td_session_rng(struct td_session *s);

/* Sets the generator's seed (torch.manual_seed) without making it when it was never used. */
void td_session_seed(struct td_session *s, uint64_t seed);

/* A connection attaches after Hello and detaches when it goes; the TTL clock runs while none is
** attached. */
void td_session_attach(struct td_session *s);
void td_session_detach(struct td_session *s, uint64_t now_ms);

/* Frees every tensor and removes the session from its store (CloseSession, expiry). Later
** lookups fail with TD_ESESSION. Call only from a job or when no job runs; called from
** outside a job, it first drops whatever is still queued (TD_CANCEL_SESSION_CLOSED). */
void td_session_close(struct td_session *s);

/* ---- handle table (call only from the session's running job) ---- */

/* The live tensor under `handle` (borrowed). Errors: TD_EHANDLE ("unknown handle 7"),
** TD_EINPUT ("input 7 failed: <original message>"), TD_ESESSION when closed. */
int td_session_lookup(struct td_session *s, uint64_t handle, struct td_tensor **t,
                      struct td_err *err);

/* Checks that `handle` may receive a new result: nonzero and unused, and the table has room.
** Errors: TD_EINVAL, TD_EEXIST ("handle 7 is already in use"), TD_ELIMIT. */
int td_session_check_out(struct td_session *s, uint64_t handle, struct td_err *err);

/* Stores t (taken) under a handle that td_session_check_out accepted, charging the entry
** (cfg.entry_bytes) to the session's quota. Errors: TD_ENOMEM, TD_EQUOTA (t is released). */
int td_session_put(struct td_session *s, uint64_t handle, struct td_tensor *t, struct td_err *err);

/* Records that the op meant to produce `handle` failed with `cause`, so later ops naming it fail
** with TD_EINPUT. Does nothing if the handle is in use or 0, or memory or quota is short (the
** entry is charged cfg.entry_bytes). */
void td_session_put_failure(struct td_session *s, uint64_t handle, const struct td_err *cause);

/* Drops whatever is under `handle` (tensor or failure) and its entry charge. Unknown handles
** are ignored. */
void td_session_free_handle(struct td_session *s, uint64_t handle);

size_t td_session_count(const struct td_session *s);  /* handle table entries */
int64_t td_session_bytes(const struct td_session *s); /* bytes charged to its quota */

/* ---- named tensors (call only from the session's running job) ---- */

/* Checks a name from the wire (len bytes at name, which may hold NULs): 1 to
** TD_NAME_MAX_BYTES bytes of [A-Za-z0-9_.:/-]. TD_EINVAL with the reason. */
int td_session_name_check(const char *name, size_t len, struct td_err *err);

/* Binds a checked name to t (borrowed: the table takes its own reference). Rebinding a name
** keeps its place in the order; a new name goes last and is charged entry_bytes plus its
** length to the session's quota. Errors: TD_ESESSION (closed), TD_ELIMIT (the session holds
** TD_SESSION_MAX_NAMES names), TD_EQUOTA, TD_ENOMEM; nothing changes on failure. */
int td_session_set_name(struct td_session *s, const char *name, size_t len, struct td_tensor *t,
                        struct td_err *err);

/* The tensor bound to a checked name (borrowed). Errors: TD_ESESSION, TD_EHANDLE with Python's
** words for a missing dict key ("KeyError: 'w1'"). */
int td_session_get_name(struct td_session *s, const char *name, size_t len, struct td_tensor **t,
                        struct td_err *err);

/* Unbinds a checked name and gives back its charge; the tensor lives on while handles hold it.
** Errors: those of td_session_get_name. */
int td_session_del_name(struct td_session *s, const char *name, size_t len, struct td_err *err);

/* The first name in first-set order (follow ->next), or NULL; borrowed, valid until the table
** changes. */
const struct td_name *td_session_names(const struct td_session *s);

size_t td_session_name_count(const struct td_session *s);

/* ---- the job queue ---- */

/* Appends job to s's FIFO and runs what can run. The job holds a session reference until done. */
void td_session_submit(struct td_session *s, struct td_job *job);

/* The executor reports that a heavy job's run() finished (loop thread). */
void td_session_job_complete(struct td_job *job);

/* True while jobs are queued or running. */
bool td_session_busy(const struct td_session *s);

/* Cancels s's jobs for which match(job, arg) is true (every job when match is NULL): queued ones
** are marked cancelled and get done() without run(), in FIFO order — at once when nothing runs,
** else after the running job's done(), so replies keep request order; the running one (inline
** or on the executor) has `reason` raised on its td_cancel and stops at its next chunk
** boundary. A job cancelled mid-way may leave an in-place result partly written (its client
** never got an acknowledgement); one that finished anyway keeps its effect. May call done()
** of the dropped jobs before returning. Loop thread. */
void td_session_cancel(struct td_session *s, bool (*match)(struct td_job *job, void *arg),
                       void *arg, enum td_cancel_reason reason);

/* Backpressure: while holds > 0 the queue starts no new job (the running one finishes;
** cancelled jobs are still finished, unrun). Calls nest; each hold needs one release, and the
** last release starts what can run (done() callbacks may run before it returns). Loop
** thread. */
void td_session_hold(struct td_session *s);
void td_session_release(struct td_session *s);

#endif
