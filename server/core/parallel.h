/* server/core/parallel.h — splitting one large kernel across threads.
**
** A job already runs on one of the daemon's worker threads; for a kernel big enough to pay for
** it, td_parallel_for runs chunks of the index range on extra POSIX threads as well and joins
** them before returning. Elementwise results do not depend on the split. The thread count is
** set once at start (tensord --threads); 1, the default, keeps everything on the caller.
** Every range is walked in steps of `grain` with a cancel check between steps (core/cancel.h),
** on the caller's thread and on the helpers, which carry the caller's current cancel, so a
** cancelled or overdue request stops within one step. Pure C (libc threads): no libuv.
*/
#ifndef TD_CORE_PARALLEL_H
#define TD_CORE_PARALLEL_H

#include <stdint.h>

#include "base/err.h"

void td_parallel_set_threads(int n);
int td_parallel_threads(void);

/* Calls fn(begin, end, ctx) over [0, n) in steps of `grain` indices (at least 1), concurrently
** when more than one thread is configured and n >= 2 * grain (one call per thread's range
** falls back to the caller when a thread cannot start). Between steps it checks the caller's
** cancel (td_cancel_current): once that is raised or overdue, no further step starts, and
** td_parallel_for returns td_cancel_check's error (TD_ECANCELED or TD_ELIMIT, in err) with the
** range partly done; otherwise 0. `grain` is also the cancel granularity: pass a step of at
** most a few milliseconds of fn's work. */
int td_parallel_for(int64_t n, int64_t grain, void (*fn)(int64_t begin, int64_t end, void *ctx),
                    void *ctx, struct td_err *err);

/* Calls fn(block, ctx) once for each block in [0, nblocks), the blocks claimed one at a time
** (an atomic counter) by the caller and by up to threads - 1 helper threads: threads started
** on first use and parked between calls (woken, not started, per call), each helping one call at
** a time (a call takes only idle ones) and woken on a CPU other than the caller's. The caller
** never waits for a helper the scheduler has not run yet (on a loaded machine it runs every
** block itself, and a late helper finds nothing left and goes back to sleep without touching fn
** or ctx), only for blocks a helper is running. Before each block the caller's cancel is
** checked (helpers carry it while they hold a block); once it is raised or overdue, no further
** block runs and the call returns td_cancel_check's error (TD_ECANCELED or TD_ELIMIT, in err)
** with some blocks not run; otherwise 0. fn and ctx are used only until the call returns. A
** block should be at most ~0.1 s of work (the cancel granularity; matmul's have up to 288
** rows). With one thread configured, or no helper idle or able to start, all blocks run on the
** caller. */
int td_parallel_blocks(int64_t nblocks, void (*fn)(int64_t block, void *ctx), void *ctx,
                       struct td_err *err);

#endif
