/* server/core/cancel.c — the current request's cancel flag and deadline (see cancel.h). */
#include "cancel.h"

#include <time.h>

static _Thread_local struct td_cancel *current;

static uint64_t now_ns(void)
{
    struct timespec ts;
    /* Coarse is a few milliseconds at worst, far below any deadline's scale, and costs no
    ** syscall. */
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void td_cancel_init(struct td_cancel *c, uint64_t limit_ms)
{
    atomic_store_explicit(&c->reason, TD_CANCEL_NONE, memory_order_relaxed);
    c->limit_ms = limit_ms;
    c->max_work = 0;
    c->deadline_ns = limit_ms == 0 ? 0 : now_ns() + limit_ms * 1000000u;
}

void td_cancel_raise(struct td_cancel *c, enum td_cancel_reason reason)
{
    int none = TD_CANCEL_NONE;
    atomic_compare_exchange_strong(&c->reason, &none, (int)reason);
}

struct td_cancel *td_cancel_enter(struct td_cancel *c)
{
    struct td_cancel *prev = current;
    current = c;
    return prev;
}

void td_cancel_leave(struct td_cancel *prev)
{
    current = prev;
}

struct td_cancel *td_cancel_current(void)
{
    return current;
}

bool td_cancel_pending(void)
{
    struct td_cancel *c = current;
    if (c == NULL) {
        return false;
    }
    if (atomic_load_explicit(&c->reason, memory_order_relaxed) != TD_CANCEL_NONE) {
        return true;
    }
    return c->deadline_ns != 0 && now_ns() >= c->deadline_ns;
}

int td_cancel_check(struct td_err *err)
{
    struct td_cancel *c = current;
    if (c == NULL) {
        return 0;
    }
    switch (atomic_load_explicit(&c->reason, memory_order_relaxed)) {
    case TD_CANCEL_NONE: break;
    case TD_CANCEL_SESSION_CLOSED:
        return td_err_set(err, TD_ECANCELED, "the request was cancelled: its session was closed");
    case TD_CANCEL_CONN_LOST:
        return td_err_set(err, TD_ECANCELED, "the request was cancelled: its connection was lost");
    default:
        return td_err_set(err, TD_ECANCELED,
                          "the request was cancelled: the server is shutting down");
    }
    if (c->deadline_ns != 0 && now_ns() >= c->deadline_ns) {
        if (c->limit_ms % 1000 == 0) {
            return td_err_set(err, TD_ELIMIT,
                              "the request ran longer than max_request_seconds "
                              "%llu",
                              (unsigned long long)(c->limit_ms / 1000));
        }
        return td_err_set(err, TD_ELIMIT, "the request ran longer than max_request_seconds %g",
                          (double)c->limit_ms / 1000.0);
    }
    return 0;
}
