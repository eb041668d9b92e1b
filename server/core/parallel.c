/* server/core/parallel.c — td_parallel_for on short-lived POSIX threads; td_parallel_blocks on
** parked helper threads. */
#define _GNU_SOURCE /* sched_getcpu, sched_setaffinity (Linux) */
#include "parallel.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cancel.h"

#define MAX_THREADS 64

static _Atomic int threads = 1;

void td_parallel_set_threads(int n)
{
    atomic_store(&threads, n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : n);
}

int td_parallel_threads(void)
{
    return atomic_load(&threads);
}

struct chunk {
    void (*fn)(int64_t begin, int64_t end, void *ctx);
    void *ctx;
    int64_t begin, end, grain;
    struct td_cancel *cancel; /* the caller's current cancel (borrowed), made current here */
};

/* Runs one thread's range in grain steps, stopping early once the request is cancelled. */
static void chunk_steps(struct chunk *c)
{
    for (int64_t b = c->begin; b < c->end;) {
        int64_t e = c->end - b > c->grain ? b + c->grain : c->end;
        c->fn(b, e, c->ctx);
        b = e;
        if (b < c->end && td_cancel_pending()) {
            return;
        }
    }
}

static void *chunk_run(void *arg)
{
    struct chunk *c = arg;
    struct td_cancel *prev = td_cancel_enter(c->cancel);
    chunk_steps(c);
    td_cancel_leave(prev);
    return NULL;
}

int td_parallel_for(int64_t n, int64_t grain, void (*fn)(int64_t begin, int64_t end, void *ctx),
                    void *ctx, struct td_err *err)
{
    int64_t t = td_parallel_threads();
    if (grain < 1) {
        grain = 1;
    }
    if (n / grain < t) {
        t = n / grain;
    }
    struct td_cancel *cancel = td_cancel_current();
    if (t <= 1) {
        struct chunk c = {fn, ctx, 0, n, grain, cancel};
        chunk_steps(&c);
        return td_cancel_check(err);
    }
    struct chunk chunks[MAX_THREADS];
    pthread_t tids[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    for (int64_t i = 0; i < t; i++) {
        /* n * i / t without overflow (n may be near 2^63): (q t + r) i / t = q i + r i / t */
        int64_t q = n / t, r = n % t;
        int64_t b = q * i + r * i / t, e = q * (i + 1) + r * (i + 1) / t;
        chunks[i] = (struct chunk){fn, ctx, b, e, grain, cancel};
    }
    /* chunk 0 runs here; the others on threads, or here too if a thread cannot start */
    for (int64_t i = 1; i < t; i++) {
        started[i] = pthread_create(&tids[i], NULL, chunk_run, &chunks[i]) == 0;
    }
    chunk_steps(&chunks[0]);
    for (int64_t i = 1; i < t; i++) {
        if (started[i]) {
            pthread_join(tids[i], NULL);
        } else {
            chunk_steps(&chunks[i]);
        }
    }
    return td_cancel_check(err);
}

/* ---- td_parallel_blocks: claimed blocks, detached helpers ---- */

/* Shared by the caller and its helpers; freed by whoever drops the last reference, since a
** helper may start after the caller has returned. */
struct claim_job {
    _Atomic int64_t next; /* the next block to claim; >= nblocks: none left */
    _Atomic int64_t done; /* blocks finished (run, or skipped after a cancel) */
    _Atomic bool stop;    /* the request was cancelled: claimed blocks are skipped */
    _Atomic int refs;     /* the caller and each started helper */
    pthread_mutex_t mu;   /* with `all_done`: the caller sleeps until the last block ends */
    pthread_cond_t all_done;
    int64_t nblocks;
    void (*fn)(int64_t block, void *ctx); /* valid only while a block is held */
    void *ctx;
    struct td_cancel *cancel; /* the caller's (borrowed): alive while a block is held */
};

static void claim_job_unref(struct claim_job *j)
{
    if (atomic_fetch_sub_explicit(&j->refs, 1, memory_order_acq_rel) == 1) {
        pthread_cond_destroy(&j->all_done);
        pthread_mutex_destroy(&j->mu);
        free(j); /* plain malloc: a helper may free it after the request's accounting ended */
    }
}

/* Claims and runs blocks until none is left. While a block is held, done < nblocks, so the
** caller is still waiting and fn, ctx and the cancel are alive. */
static void claim_loop(struct claim_job *j)
{
    for (;;) {
        int64_t b = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (b >= j->nblocks) {
            return;
        }
        struct td_cancel *prev = td_cancel_enter(j->cancel);
        if (atomic_load_explicit(&j->stop, memory_order_relaxed) || td_cancel_pending()) {
            atomic_store_explicit(&j->stop, true, memory_order_relaxed);
        } else {
            j->fn(b, j->ctx);
        }
        td_cancel_leave(prev);
        if (atomic_fetch_add_explicit(&j->done, 1, memory_order_acq_rel) + 1 == j->nblocks) {
            pthread_mutex_lock(&j->mu);
            pthread_cond_broadcast(&j->all_done);
            pthread_mutex_unlock(&j->mu);
        }
    }
}

/* ---- the helpers: started once, then parked between products ----
**
** A thread started for each product was late on this 2-vCPU VM (docs/performance.md, issue 19,
** fourth round): a new thread created by a busy thread waits ~2.3 ms (p10-p90 2.2-2.4 ms) before
** it first runs, almost always on its creator's vCPU, so the caller ran every block itself and
** a split product was one core's work plus a thread start. A parked thread woken through its
** condition variable starts in ~40 us. The helpers are started on first use (by the caller, so
** they inherit its priority: --worker-nice), live as long as the process, and serve one product
** at a time; a caller takes only helpers that are idle, so two concurrent products never queue
** behind each other's helpers. */
#define MAX_HELPERS (MAX_THREADS - 1)

struct helper {
    pthread_mutex_t mu;
    pthread_cond_t wake;
    struct claim_job *job; /* handed over under mu; NULL while there is none */
    _Atomic bool busy;     /* taken by a caller until the helper has finished with its job */
    _Atomic int tid;       /* the kernel's id, for the CPU steering below (0: not known yet) */
#ifdef __linux__
    bool steered; /* its affinity excludes the caller's CPU until it runs (under mu's hand-over) */
    cpu_set_t allowed; /* the CPUs it may use otherwise */
#endif
};

static struct helper helpers[MAX_HELPERS];
static pthread_mutex_t helpers_start_mu = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int helpers_started; /* helpers[0, helpers_started) are running */

static void helper_unsteer(struct helper *h);

static void *helper_main(void *arg)
{
    struct helper *h = arg;
    atomic_store(&h->tid, (int)syscall(SYS_gettid));
    for (;;) {
        pthread_mutex_lock(&h->mu);
        while (h->job == NULL) {
            pthread_cond_wait(&h->wake, &h->mu);
        }
        struct claim_job *j = h->job;
        h->job = NULL;
        pthread_mutex_unlock(&h->mu);
        helper_unsteer(h);
        claim_loop(j);
        claim_job_unref(j);
        atomic_store_explicit(&h->busy, false, memory_order_release);
    }
    return NULL;
}

/* Starts helpers until `want` are running (or one cannot start); returns how many run. */
static int helpers_ensure(int want)
{
    want = want > MAX_HELPERS ? MAX_HELPERS : want;
    int n = atomic_load_explicit(&helpers_started, memory_order_acquire);
    if (n >= want) {
        return n;
    }
    pthread_mutex_lock(&helpers_start_mu);
    n = atomic_load_explicit(&helpers_started, memory_order_relaxed);
    pthread_attr_t attr;
    if (n < want && pthread_attr_init(&attr) == 0) {
        if (pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED) == 0) {
            for (; n < want; n++) {
                struct helper *h = &helpers[n];
                if (pthread_mutex_init(&h->mu, NULL) != 0) {
                    break;
                }
                if (pthread_cond_init(&h->wake, NULL) != 0) {
                    pthread_mutex_destroy(&h->mu);
                    break;
                }
                h->job = NULL;
#ifdef __linux__
                h->steered = false;
#endif
                atomic_init(&h->busy, false);
                atomic_init(&h->tid, 0);
                pthread_t tid;
                if (pthread_create(&tid, &attr, helper_main, h) != 0) {
                    pthread_cond_destroy(&h->wake);
                    pthread_mutex_destroy(&h->mu);
                    break;
                }
            }
        }
        pthread_attr_destroy(&attr);
    }
    atomic_store_explicit(&helpers_started, n, memory_order_release);
    pthread_mutex_unlock(&helpers_start_mu);
    return n;
}

/* Wakes a helper off the caller's CPU. On this VM's scheduler a woken thread is often placed on
** its waker's vCPU, where it only time-shares with the caller (measured: 89 of 200 wake-ups in
** one run, 6 in another); excluding the caller's CPU from the helper's affinity while it is
** woken sent all 200 to the other one. Within the CPUs the process may use (a caller whose CPU
** is the only one allowed leaves the helper as it is); the helper restores its affinity as soon
** as it runs (helper_unsteer), so it is pinned only for its wake-up: two syscalls a product of
** at least 2^25 multiply-adds. The caller stays free to move. */
#ifndef TD_PARALLEL_STEER
#define TD_PARALLEL_STEER 1
#endif

static void helper_steer(struct helper *h)
{
#if TD_PARALLEL_STEER && defined(__linux__)
    int cpu = sched_getcpu(), tid = atomic_load(&h->tid);
    if (cpu < 0 || cpu >= CPU_SETSIZE || tid <= 0) {
        return;
    }
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) {
        return;
    }
    h->allowed = allowed;
    CPU_CLR(cpu, &allowed);
    if (CPU_COUNT(&allowed) > 0 && sched_setaffinity(tid, sizeof allowed, &allowed) == 0) {
        h->steered = true; /* only the caller that holds the helper (busy) writes this */
    }
#else
    (void)h;
#endif
}

/* Once running, the helper lets the scheduler move it again: pinned for its whole block, a
** helper at --worker-nice on a vCPU that another process keeps busy would get a fraction of it
** while the caller waits for its block, and could not be moved to the caller's vCPU once that
** is free. (The wall-clock A/B of the two at load ~2.7 was inside the noise.) */
static void helper_unsteer(struct helper *h)
{
#if TD_PARALLEL_STEER && defined(__linux__)
    if (h->steered) {
        h->steered = false;
        (void)sched_setaffinity(0, sizeof h->allowed, &h->allowed);
    }
#else
    (void)h;
#endif
}

/* Hands j to up to `want` idle helpers; returns how many took it. */
static int helpers_give(struct claim_job *j, int want)
{
    int n = helpers_ensure(want), given = 0;
    for (int i = 0; i < n && given < want; i++) {
        struct helper *h = &helpers[i];
        bool idle = false;
        if (!atomic_compare_exchange_strong_explicit(&h->busy, &idle, true, memory_order_acquire,
                                                     memory_order_relaxed)) {
            continue; /* helping another product */
        }
        helper_steer(h);
        atomic_fetch_add_explicit(&j->refs, 1, memory_order_relaxed);
        pthread_mutex_lock(&h->mu);
        h->job = j;
        pthread_cond_signal(&h->wake);
        pthread_mutex_unlock(&h->mu);
        given++;
    }
    return given;
}

int td_parallel_blocks(int64_t nblocks, void (*fn)(int64_t block, void *ctx), void *ctx,
                       struct td_err *err)
{
    if (nblocks <= 0) {
        return td_cancel_check(err);
    }
    int64_t t = td_parallel_threads();
    t = t < nblocks ? t : nblocks;
    struct claim_job *j = t > 1 ? malloc(sizeof *j) : NULL;
    if (j != NULL && pthread_mutex_init(&j->mu, NULL) != 0) {
        free(j);
        j = NULL;
    } else if (j != NULL && pthread_cond_init(&j->all_done, NULL) != 0) {
        pthread_mutex_destroy(&j->mu);
        free(j);
        j = NULL;
    }
    if (j == NULL) {
        /* One thread (or no memory for the shared record): every block here, in order. */
        for (int64_t b = 0; b < nblocks; b++) {
            int rc = td_cancel_check(err);
            if (rc != 0) {
                return rc;
            }
            fn(b, ctx);
        }
        return td_cancel_check(err);
    }
    atomic_init(&j->next, 0);
    atomic_init(&j->done, 0);
    atomic_init(&j->stop, false);
    atomic_init(&j->refs, 1);
    j->nblocks = nblocks;
    j->fn = fn;
    j->ctx = ctx;
    j->cancel = td_cancel_current();
    (void)helpers_give(j, (int)t - 1); /* the caller runs what no helper takes */
    claim_loop(j);
    /* Every block is claimed; wait only for those a helper is still running (at most one
    ** block's work per helper). */
    pthread_mutex_lock(&j->mu);
    while (atomic_load_explicit(&j->done, memory_order_acquire) < nblocks) {
        pthread_cond_wait(&j->all_done, &j->mu);
    }
    pthread_mutex_unlock(&j->mu);
    bool stopped = atomic_load_explicit(&j->stop, memory_order_relaxed);
    claim_job_unref(j);
    return stopped ? td_cancel_check(err) : 0;
}
