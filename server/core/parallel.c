/* server/core/parallel.c — td_parallel_for on short-lived POSIX threads. */
#include "parallel.h"

#include <pthread.h>
#include <stdatomic.h>

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
