/* server/threads.c — the heavy-work threads: libuv's pool as the sessions' executor, and their
** priority.
**
** Heavy work runs at a lower priority than the event loop (--worker-nice): on a busy core the
** scheduler then picks the loop thread as soon as a tiny request wakes it, instead of letting it
** queue behind BLAS time slices. Linux keeps a nice value per thread (the id setpriority takes
** for PRIO_PROCESS may be a thread id), and threads inherit it from the thread that creates
** them, so the kernels' short-lived helper threads follow. The loop thread keeps the daemon's
** priority. It knows sessions only as jobs to run and complete.
*/
#include "threads.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "base/alloc.h"
#include "base/log.h"
#include "config.h"
#include "core/parallel.h"

void openblas_set_num_threads(int num_threads);
/* An OpenBLAS internal (weak, so a BLAS without it links): stops its worker threads. */
int blas_thread_shutdown_(void) __attribute__((weak));

static int worker_nice; /* --worker-nice; set once, before any worker thread reads it */
static int worker_prio; /* the nice value heavy threads get: the loop's plus worker_nice */

static void lower_priority(pid_t tid)
{
    if (worker_nice > 0 && setpriority(PRIO_PROCESS, (id_t)tid, worker_prio) != 0) {
        td_log(TD_LOG_WARN, "worker_nice", "tid=%d err=\"%s\"", (int)tid, strerror(errno));
    }
}

/* Lower every thread started before main but the loop's (this one): OpenBLAS's workers when a
** BLAS without blas_thread_shutdown_ keeps them (blas_one_thread). */
static void lower_blas_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    if (d == NULL) {
        return;
    }
    pid_t self = (pid_t)syscall(SYS_gettid);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        pid_t tid = (pid_t)atoi(e->d_name);
        if (tid > 0 && tid != self) {
            lower_priority(tid);
        }
    }
    closedir(d);
}

/* OpenBLAS runs one thread in the daemon: 0.3.21 has no per-call thread count, and on a shared
** machine its two-thread GEMMs stalled (the caller waits for the worker's half while the worker
** waits for a vCPU: 22-29 ms MLP steps at load 7-9), while small GEMMs paid the hand-over for
** nothing. The daemon splits large products itself (core/ops/matmul.c, td_parallel_blocks),
** where a helper that starts late costs nothing. OpenBLAS started its workers when it loaded,
** before main: with one thread they would only sleep, so they are stopped (as OpenBLAS does
** before a fork; weak symbol: a BLAS without it keeps its idle workers). Nothing calls
** openblas_set_num_threads again, so they are never restarted. */
static void blas_one_thread(void)
{
    openblas_set_num_threads(1);
    if (blas_thread_shutdown_ != NULL) {
        blas_thread_shutdown_();
    }
}

void td_threads_setup(int threads, int nice)
{
    /* libuv reads the pool size once, at its first use. */
    char pool[16];
    snprintf(pool, sizeof pool, "%d", threads);
    setenv("UV_THREADPOOL_SIZE", pool, 1);
    blas_one_thread();
    td_parallel_set_threads(threads);
    worker_nice = nice;
    /* Relative to the daemon's own priority (a unit's Nice=, a `nice tensord`): the workers stay
    ** `nice` levels below the loop, never above it. getpriority may return -1 as a value. */
    errno = 0;
    int base = getpriority(PRIO_PROCESS, 0);
    if (base == -1 && errno != 0) {
        base = 0;
    }
    worker_prio = base + nice > 19 ? 19 : base + nice;
    if (nice > 0) {
        td_alloc_helper_priority(worker_prio); /* the releaser and the cache's decay too */
    }
    lower_blas_threads();
}

/* At start, one work item per pool thread lowers that thread: each waits until all have
** arrived, so no thread takes two (bounded: if the pool were smaller, they give up after 2 s). */
static struct {
    uv_mutex_t mu;
    uv_cond_t cond;
    int arrived, expected;
    uv_work_t reqs[TD_CFG_MAX_THREADS];
} nice_start;

static void nice_start_run(uv_work_t *req) /* on a pool thread */
{
    (void)req;
    lower_priority((pid_t)syscall(SYS_gettid));
    uv_mutex_lock(&nice_start.mu);
    nice_start.arrived++;
    uv_cond_broadcast(&nice_start.cond);
    uint64_t deadline = uv_hrtime() + 2000000000u;
    while (nice_start.arrived < nice_start.expected && uv_hrtime() < deadline) {
        (void)uv_cond_timedwait(&nice_start.cond, &nice_start.mu, 100000000u);
    }
    uv_mutex_unlock(&nice_start.mu);
}

static void nice_start_after(uv_work_t *req, int status)
{
    (void)req;
    (void)status;
}

void td_threads_lower_pool(uv_loop_t *loop, int threads)
{
    if (worker_nice == 0 || uv_mutex_init(&nice_start.mu) != 0) {
        return;
    }
    if (uv_cond_init(&nice_start.cond) != 0) {
        uv_mutex_destroy(&nice_start.mu);
        return;
    }
    uv_mutex_lock(&nice_start.mu);
    nice_start.expected = threads < TD_CFG_MAX_THREADS ? threads : TD_CFG_MAX_THREADS;
    for (int i = 0; i < nice_start.expected; i++) {
        if (uv_queue_work(loop, &nice_start.reqs[i], nice_start_run, nice_start_after) != 0) {
            nice_start.expected = i; /* those queued stop waiting for the rest */
            break;
        }
    }
    uv_mutex_unlock(&nice_start.mu);
}

/* ---- the executor ---- */

struct pool_work {
    uv_work_t req;
    struct td_job *job;
};

static void pool_run(uv_work_t *req) /* on a pool thread */
{
    static _Thread_local bool named;
    if (!named) { /* libuv made the thread: named at its first job, for top -H and /proc */
        named = true;
        (void)prctl(PR_SET_NAME, "td-pool");
    }
    struct pool_work *w = req->data;
    w->job->run(w->job);
}

static void pool_after(uv_work_t *req, int status)
{
    struct pool_work *w = req->data;
    (void)status;
    struct td_job *job = w->job;
    td_free(w);
    td_session_job_complete(job);
}

static void pool_submit(struct td_executor *ex, struct td_job *job)
{
    struct td_pool_executor *p = (struct td_pool_executor *)ex; /* ex is its first member */
    struct pool_work *w = td_malloc(sizeof *w);
    if (w != NULL) {
        /* Filled before queueing: a worker may pick the item up at once. */
        w->req.data = w;
        w->job = job;
    }
    if (w == NULL || uv_queue_work(p->loop, &w->req, pool_run, pool_after) != 0) {
        /* No memory for the work item: run it here rather than lose it. */
        td_free(w);
        job->run(job);
        td_session_job_complete(job);
    }
}

void td_pool_executor_init(struct td_pool_executor *p, uv_loop_t *loop)
{
    p->ex.submit = pool_submit;
    p->loop = loop;
}
