/* server/base/checked.h — size arithmetic that cannot wrap.
**
** Every size a client can influence (element counts, byte counts, costs) is added and multiplied
** through these helpers, never with a raw `+=` or `*=`: a wrapped size is a heap overflow
** (three expanded views of 6148914691236517206 elements sum to 2^64 + 2, which wraps to 2).
** Two families: the checked ones report overflow and leave the caller to fail the request; the
** saturating ones clamp at INT64_MAX, for costs, where "too big" is the only answer needed.
** Header only; depends on nothing.
*/
#ifndef TD_BASE_CHECKED_H
#define TD_BASE_CHECKED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* *out = a + b; returns false (and leaves *out unspecified) on overflow. */
static inline bool td_add_i64(int64_t a, int64_t b, int64_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

/* *out = a * b; returns false on overflow. */
static inline bool td_mul_i64(int64_t a, int64_t b, int64_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

static inline bool td_add_size(size_t a, size_t b, size_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

static inline bool td_mul_size(size_t a, size_t b, size_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

static inline bool td_add_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

static inline bool td_mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}

/* Saturating: non-negative operands, the result clamped to INT64_MAX (negative operands count
** as 0, so a bad input can only make a cost look larger, never smaller). */
static inline int64_t td_sat_add(int64_t a, int64_t b)
{
    int64_t r;
    a = a < 0 ? 0 : a;
    b = b < 0 ? 0 : b;
    return __builtin_add_overflow(a, b, &r) ? INT64_MAX : r;
}

static inline int64_t td_sat_mul(int64_t a, int64_t b)
{
    int64_t r;
    a = a < 0 ? 0 : a;
    b = b < 0 ? 0 : b;
    return __builtin_mul_overflow(a, b, &r) ? INT64_MAX : r;
}

#endif
