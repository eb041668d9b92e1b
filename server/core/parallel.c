/* server/core/parallel.c — td_parallel_for on short-lived POSIX threads. */
#include "parallel.h"

#include <pthread.h>
#include <stdatomic.h>

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
    int64_t begin, end;
};

static void *chunk_run(void *arg)
{
    struct chunk *c = arg;
    c->fn(c->begin, c->end, c->ctx);
    return NULL;
}

void td_parallel_for(int64_t n, int64_t grain, void (*fn)(int64_t begin, int64_t end, void *ctx),
                     void *ctx)
{
    int64_t t = td_parallel_threads();
    if (grain < 1) {
        grain = 1;
    }
    if (n / grain < t) {
        t = n / grain;
    }
    if (t <= 1) {
        fn(0, n, ctx);
        return;
    }
    struct chunk chunks[MAX_THREADS];
    pthread_t tids[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    for (int64_t i = 0; i < t; i++) {
        chunks[i] = (struct chunk){fn, ctx, n * i / t, n * (i + 1) / t};
    }
    /* chunk 0 runs here; the others on threads, or here too if a thread cannot start */
    for (int64_t i = 1; i < t; i++) {
        started[i] = pthread_create(&tids[i], NULL, chunk_run, &chunks[i]) == 0;
    }
    chunk_run(&chunks[0]);
    for (int64_t i = 1; i < t; i++) {
        if (started[i]) {
            pthread_join(tids[i], NULL);
        } else {
            chunk_run(&chunks[i]);
        }
    }
}
