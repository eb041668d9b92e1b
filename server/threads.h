/* server/threads.h — the heavy-work threads: libuv's pool as the sessions' executor, and the
** priority (--worker-nice) of every thread that runs heavy work (the pool's and OpenBLAS's).
**
** Session code hands heavy jobs to a `struct td_executor` and never sees libuv; this is the
** executor main gives it. Loop thread only, except where a comment says otherwise.
*/
#ifndef TD_THREADS_H
#define TD_THREADS_H

#include <uv.h>

#include "session/session.h"

/* Runs each job on libuv's pool and completes it (td_session_job_complete) on the loop. */
struct td_pool_executor {
    struct td_executor ex; /* what the store is given */
    uv_loop_t *loop;       /* borrowed */
};

void td_pool_executor_init(struct td_pool_executor *p, uv_loop_t *loop);

/* Before the loop's first use: sizes libuv's pool, OpenBLAS and td_parallel to `threads`
** (1 to TD_CFG_MAX_THREADS) and lowers the threads OpenBLAS has already started to `nice`. */
void td_threads_setup(int threads, int nice);

/* Once the loop exists: lowers each of the pool's threads to the nice value given to
** td_threads_setup (one work item per thread, queued now). */
void td_threads_lower_pool(uv_loop_t *loop, int threads);

#endif
