/* server/core/cancel.h — stopping a running request at a chunk boundary.
**
** A request that runs long must be stoppable: its session closes, its connection is lost, the
** daemon shuts down, or it passes --max-request-seconds. Whoever runs a request arms a
** struct td_cancel (a deadline, and a reason flag any thread may raise) and makes it current on
** its thread (td_cancel_enter); long kernels call td_cancel_check at chunk boundaries (every
** few thousand elements, never per element) and return its error, unwinding like any other
** failure. td_parallel_for carries the caller's current cancel to its helper threads.
** With nothing current, td_cancel_check is a thread-local load and a compare.
** It also carries the request's per-op work budget (max_work), which td_op_apply enforces on
** every op it runs, so ops a request runs inside itself (a backward's) meet the same limit.
** Pure C: core and the layers above use it; it knows nothing of sessions or sockets.
*/
#ifndef TD_CORE_CANCEL_H
#define TD_CORE_CANCEL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"

enum td_cancel_reason {
    TD_CANCEL_NONE = 0,
    TD_CANCEL_SESSION_CLOSED, /* the session was closed or expired */
    TD_CANCEL_CONN_LOST,      /* the connection that sent it went away */
    TD_CANCEL_SHUTDOWN,       /* the daemon is shutting down */
};

struct td_cancel {
    _Atomic int reason;   /* enum td_cancel_reason; raised by any thread */
    uint64_t deadline_ns; /* CLOCK_MONOTONIC; 0: none */
    uint64_t limit_ms;    /* --max-request-seconds as given, for the message */
    int64_t max_work;     /* --max-op-elements: td_op_apply refuses any op (a backward's
                                ** steps included) whose td_cost_work is above it; 0: none */
};

/* Arms c: no reason raised, deadline `limit_ms` from now (0: none), no work budget (whoever
** runs the request sets max_work after this). */
void td_cancel_init(struct td_cancel *c, uint64_t limit_ms);

/* Raises a reason (the first one raised wins). Safe from any thread. */
void td_cancel_raise(struct td_cancel *c, enum td_cancel_reason reason);

/* Makes c (borrowed, may be NULL) the calling thread's current cancel and returns the previous
** one, to be restored with td_cancel_leave. */
struct td_cancel *td_cancel_enter(struct td_cancel *c);
void td_cancel_leave(struct td_cancel *prev);
struct td_cancel *td_cancel_current(void);

/* 0 while the current request may go on; otherwise fills err and returns TD_ECANCELED ("the
** request was cancelled: its session was closed" ...) or TD_ELIMIT ("the request ran longer
** than max_request_seconds 60"). Cheap: the clock is read at most once per call, coarse. */
int td_cancel_check(struct td_err *err);

/* Elements a kernel walks between two checks: a few hundred microseconds of the slowest walk,
** so a cancelled request stops within milliseconds, and a check's cost (a thread-local load, a
** coarse clock read) vanishes against the chunk's. */
#define TD_CANCEL_CHUNK ((int64_t)1 << 16)

/* The end of the chunk that starts at n, in a walk of `total` elements: loops take the form
**     for (int64_t c = 0; c < total; c = end) {
**         int64_t end = td_cancel_chunk_end(c, total);
**         for (int64_t n = c; n < end; n++) { ... }
**         if ((rc = td_cancel_check(err)) != 0) { goto fail; }
**     }
** so the inner loop carries no per-element cost. */
static inline int64_t td_cancel_chunk_end(int64_t n, int64_t total)
{
    return total - n > TD_CANCEL_CHUNK ? n + TD_CANCEL_CHUNK : total;
}

/* As td_cancel_check, without filling an error: for loops that cannot return one directly and
** stop early, leaving the caller to call td_cancel_check. */
bool td_cancel_pending(void);

#endif
