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

#endif
