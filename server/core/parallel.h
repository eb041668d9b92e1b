/* server/core/parallel.h — splitting one large kernel across threads.
**
** A job already runs on one of the daemon's worker threads; for a kernel big enough to pay for
** it, td_parallel_for runs chunks of the index range on extra POSIX threads as well and joins
** them before returning. Elementwise results do not depend on the split. The thread count is
** set once at start (tensord --threads); 1, the default, keeps everything on the caller.
** Pure C (libc threads): no libuv.
*/
#ifndef TD_CORE_PARALLEL_H
#define TD_CORE_PARALLEL_H

#include <stdint.h>

void td_parallel_set_threads(int n);
int td_parallel_threads(void);

/* Calls fn(begin, end, ctx) over [0, n) in chunks of at least `grain`, concurrently when more
** than one thread is configured and n >= 2 * grain. Falls back to one call on failure. */
void td_parallel_for(int64_t n, int64_t grain, void (*fn)(int64_t begin, int64_t end, void *ctx),
                     void *ctx);

#endif
