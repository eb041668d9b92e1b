/* tests/core/test_cancel.c — long kernels stop when their request is cancelled or overdue.
**
** Each test arms a struct td_cancel with a 50 ms deadline, or raises a reason from another
** thread after 50 ms, makes it current, and runs a kernel that would walk for hours (a
** reduction or integer product over an expanded view of ~2^40 elements). The kernel must fail
** with TD_ELIMIT or TD_ECANCELED well within a generous bound (10 s: a 200x margin), free what
** it made, and leave the live-byte count where it was. Without a cancel, the chunked walks give
** the same results as before.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <string.h>
#include <time.h>

#include "base/alloc.h"
#include "core/cancel.h"
#include "core/parallel.h"
#include "core/print.h"
#include "helpers.h"

#define GENEROUS_MS 10000

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static struct td_tensor *expanded(struct td_tensor *x, const int64_t *shape, int ndim)
{
    struct td_op_args a;
    td_op_args_init(&a);
    memcpy(a.dims, shape, sizeof(int64_t) * (size_t)ndim);
    a.ndims = ndim;
    a.has_dims = true;
    struct td_operand in[1] = {tens(x)};
    struct td_tensor *v;
    assert_int_equal(td_op_apply(TD_OP_EXPAND, in, 1, &a, false, NULL, &v, NULL), 0);
    return v;
}

/* A [2^20, 2^20] view of one float: 2^40 elements backed by 4 bytes. */
static struct td_tensor *huge_view(enum td_dtype dt, struct td_tensor **base)
{
    const int64_t one[] = {1, 1};
    *base = mk(dt, one, 2, (const double[]){1});
    const int64_t big[] = {(int64_t)1 << 20, (int64_t)1 << 20};
    return expanded(*base, big, 2);
}

/* Runs op on in under cancel c (already armed); expects `want` within GENEROUS_MS, no result
** and no leak. */
static void expect_stopped(struct td_cancel *c, enum td_op_id op, struct td_operand *in, int nin,
                           const struct td_op_args *a, int want, const char *words)
{
    int64_t live = td_alloc_live_bytes();
    struct td_cancel *prev = td_cancel_enter(c);
    uint64_t t0 = now_ms();
    struct td_tensor *out = NULL;
    struct td_err err;
    int rc = td_op_apply(op, in, nin, a, false, NULL, &out, &err);
    uint64_t took = now_ms() - t0;
    td_cancel_leave(prev);
    if (rc != want) {
        fail_msg("%s: got %d (%s), want %d", td_ops[op].name, rc, rc ? err.msg : "", want);
    }
    assert_null(out);
    assert_non_null(strstr(err.msg, words));
    if (took > GENEROUS_MS) {
        fail_msg("%s took %llu ms to stop", td_ops[op].name, (unsigned long long)took);
    }
    assert_int_equal(td_alloc_live_bytes(), live);
}

/* Finding 2: sum/mean/max/std of a 2^40-element view, with and without dim, stop at the
** deadline with the limit's error. */
static void test_reductions_stop_at_the_deadline(void **state)
{
    (void)state;
    struct td_tensor *base, *v = huge_view(TD_DTYPE_F32, &base);
    struct td_operand in[1] = {tens(v)};
    enum td_op_id ops[] = {TD_OP_SUM, TD_OP_MEAN, TD_OP_MAX, TD_OP_STD};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        for (int with_dim = 0; with_dim < 2; with_dim++) {
            struct td_op_args a;
            td_op_args_init(&a);
            if (with_dim) {
                a.dims[0] = 1;
                a.ndims = 1;
                a.has_dims = true;
                a.dim = 1;
                a.has_dim = true;
            }
            struct td_cancel c;
            td_cancel_init(&c, 50);
            expect_stopped(&c, ops[i], in, 1, &a, TD_ELIMIT, "max_request_seconds 0.05");
        }
    }
    td_tensor_unref(v);
    td_tensor_unref(base);
}

struct raiser {
    struct td_cancel *c;
    enum td_cancel_reason reason;
};

static void *raise_later(void *arg)
{
    struct raiser *r = arg;
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
    td_cancel_raise(r->c, r->reason);
    return NULL;
}

/* A reason raised by another thread (the session closing) stops a running kernel. */
static void test_a_raised_reason_stops_a_running_kernel(void **state)
{
    (void)state;
    struct td_tensor *base, *v = huge_view(TD_DTYPE_F64, &base);
    struct td_operand in[1] = {tens(v)};
    struct td_cancel c;
    td_cancel_init(&c, 0);  /* no deadline */
    struct raiser r = {&c, TD_CANCEL_SESSION_CLOSED};
    pthread_t tid;
    assert_int_equal(pthread_create(&tid, NULL, raise_later, &r), 0);
    expect_stopped(&c, TD_OP_SUM, in, 1, NULL, TD_ECANCELED, "session was closed");
    pthread_join(tid, NULL);
    /* shutdown, before anything runs: the first check stops it */
    td_cancel_init(&c, 0);
    td_cancel_raise(&c, TD_CANCEL_SHUTDOWN);
    expect_stopped(&c, TD_OP_VAR, in, 1, NULL, TD_ECANCELED, "shutting down");
    td_tensor_unref(v);
    td_tensor_unref(base);
}

/* Integer matmul of expanded views: [1, 2^40] @ [2^40, 1] is 2^40 products in one element. */
static void test_integer_matmul_stops(void **state)
{
    (void)state;
    struct td_tensor *one = mk(TD_DTYPE_I64, (const int64_t[]){1, 1}, 2, (const double[]){3});
    struct td_tensor *w = expanded(one, (const int64_t[]){1, (int64_t)1 << 40}, 2);
    struct td_tensor *h = expanded(one, (const int64_t[]){(int64_t)1 << 40, 1}, 2);
    struct td_operand in[2] = {tens(w), tens(h)};
    struct td_cancel c;
    td_cancel_init(&c, 50);
    expect_stopped(&c, TD_OP_MATMUL, in, 2, NULL, TD_ELIMIT, "max_request_seconds");
    /* and a wide one: [2^20, 1] @ [1, 2^20] has 2^40 outputs of one product each... too big
    ** to allocate, so a batch of small products instead: [2^24, 2, 2] @ [2, 2] */
    struct td_tensor *one3 = mk(TD_DTYPE_I32, (const int64_t[]){1, 1, 1}, 3, (const double[]){1});
    struct td_tensor *b = expanded(one3, (const int64_t[]){(int64_t)1 << 24, 2, 2}, 3);
    struct td_tensor *m = mk(TD_DTYPE_I32, (const int64_t[]){2, 2}, 2,
                             (const double[]){1, 2, 3, 4});
    in[0] = tens(b);
    in[1] = tens(m);
    td_cancel_init(&c, 0);
    td_cancel_raise(&c, TD_CANCEL_CONN_LOST);
    expect_stopped(&c, TD_OP_MATMUL, in, 2, NULL, TD_ECANCELED, "connection was lost");
    td_tensor_unref(m);
    td_tensor_unref(b);
    td_tensor_unref(one3);
    td_tensor_unref(w);
    td_tensor_unref(h);
    td_tensor_unref(one);
}

/* Copies, elementwise kernels and random fills stop too (over real memory here: 2^24 floats). */
static void test_copies_and_elementwise_stop(void **state)
{
    (void)state;
    struct td_tensor *base, *v = huge_view(TD_DTYPE_F32, &base);
    struct td_tensor *col = expanded(base, (const int64_t[]){(int64_t)1 << 24, 1}, 2);
    struct td_operand in[2] = {tens(col), num(td_scalar_f(2))};
    struct td_cancel c;
    td_cancel_init(&c, 0);
    td_cancel_raise(&c, TD_CANCEL_SHUTDOWN);
    expect_stopped(&c, TD_OP_CLONE, in, 1, NULL, TD_ECANCELED, "shutting down");
    expect_stopped(&c, TD_OP_MUL, in, 2, NULL, TD_ECANCELED, "shutting down");
    expect_stopped(&c, TD_OP_EXP, in, 1, NULL, TD_ECANCELED, "shutting down");
    struct td_op_args a;
    td_op_args_init(&a);
    a.has_dtype = true;
    a.dtype = TD_DTYPE_F64;
    expect_stopped(&c, TD_OP_TO, in, 1, &a, TD_ECANCELED, "shutting down");
    struct td_operand two[2] = {tens(col), tens(col)};
    expect_stopped(&c, TD_OP_CAT, two, 2, NULL, TD_ECANCELED, "shutting down");
    struct td_rng rng = {0};
    td_op_args_init(&a);
    a.rng = &rng;
    expect_stopped(&c, TD_OP_RAND_LIKE, in, 1, &a, TD_ECANCELED, "shutting down");
    td_op_args_init(&a);
    a.dims[0] = 1;
    a.dims[1] = 2;
    a.ndims = 2;
    a.has_dims = true;
    expect_stopped(&c, TD_OP_REPEAT, in, 1, &a, TD_ECANCELED, "shutting down");
    td_op_args_init(&a);
    a.dim = 0;
    expect_stopped(&c, TD_OP_SOFTMAX, in, 1, &a, TD_ECANCELED, "shutting down");
    td_tensor_unref(col);
    td_tensor_unref(v);
    td_tensor_unref(base);
}

/* Format of an 8-dim view stops too. */
static void test_print_stops(void **state)
{
    (void)state;
    struct td_tensor *one = mk(TD_DTYPE_F32, (const int64_t[]){1, 1, 1, 1, 1, 1, 1, 1}, 8,
                               (const double[]){0.5});
    struct td_tensor *v = expanded(one, (const int64_t[]){9, 9, 9, 9, 9, 9, 9, 9}, 8);
    struct td_cancel c;
    td_cancel_init(&c, 0);
    td_cancel_raise(&c, TD_CANCEL_SESSION_CLOSED);
    struct td_cancel *prev = td_cancel_enter(&c);
    int64_t live = td_alloc_live_bytes();
    struct td_print_opts o;
    td_print_opts_default(&o);
    char *s = NULL;
    struct td_err err;
    assert_int_equal(td_tensor_repr(v, &o, &s, &err), TD_ECANCELED);
    assert_null(s);
    assert_int_equal(td_alloc_live_bytes(), live);
    td_cancel_leave(prev);
    td_tensor_unref(v);
    td_tensor_unref(one);
}

/* td_parallel_for carries the caller's cancel to its helper threads: with the cancel raised,
** each thread runs at most one step, and the call returns the cancel's error. */
struct counter {
    _Atomic int64_t steps;
};

static void count_step(int64_t begin, int64_t end, void *ctx)
{
    (void)begin;
    (void)end;
    struct counter *k = ctx;
    atomic_fetch_add(&k->steps, 1);
}

static void test_parallel_for_carries_the_cancel(void **state)
{
    (void)state;
    for (int threads = 1; threads <= 4; threads *= 2) {
        td_parallel_set_threads(threads);
        struct counter k = {0};
        struct td_err err;
        /* no cancel current: every step runs */
        assert_int_equal(td_parallel_for(1000, 10, count_step, &k, &err), 0);
        assert_int_equal(atomic_load(&k.steps), 100);
        struct td_cancel c;
        td_cancel_init(&c, 0);
        td_cancel_raise(&c, TD_CANCEL_CONN_LOST);
        struct td_cancel *prev = td_cancel_enter(&c);
        atomic_store(&k.steps, 0);
        assert_int_equal(td_parallel_for(1000, 10, count_step, &k, &err), TD_ECANCELED);
        td_cancel_leave(prev);
        assert_true(atomic_load(&k.steps) <= threads);
    }
    td_parallel_set_threads(1);
}

/* Without a cancel the chunked walks give what they gave: hand-derived sums across chunk
** boundaries, on one thread and on two. */
static void test_results_unchanged_without_cancel(void **state)
{
    (void)state;
    for (int threads = 1; threads <= 2; threads++) {
        td_parallel_set_threads(threads);
        /* a contiguous 3 * 2^20 + 5 ones (the parallel full sum, many blocks per chunk) */
        int64_t n = 3 * ((int64_t)1 << 20) + 5;
        struct td_tensor *ones;
        assert_int_equal(td_tensor_full(&ones, TD_DTYPE_F32, &n, 1, td_scalar_f(1), NULL, NULL),
                         0);
        struct td_operand in[2] = {tens(ones)};
        struct td_tensor *r;
        assert_int_equal(td_op_apply(TD_OP_SUM, in, 1, NULL, false, NULL, &r, NULL), 0);
        assert_int_equal(at(r, 0), (double)n);
        td_tensor_unref(r);
        assert_int_equal(td_op_apply(TD_OP_NORM, in, 1, NULL, false, NULL, &r, NULL), 0);
        assert_true(at(r, 0) > 1773.6 && at(r, 0) < 1773.7);  /* sqrt(3145733) = 1773.62.. */
        td_tensor_unref(r);
        /* an expanded [3, 100003] view, summed whole and over dim 1 (the walker) */
        struct td_tensor *base = mk(TD_DTYPE_I64, (const int64_t[]){3, 1}, 2,
                                    (const double[]){1, 2, 3});
        struct td_tensor *v = expanded(base, (const int64_t[]){3, 100003}, 2);
        in[0] = tens(v);
        assert_int_equal(td_op_apply(TD_OP_SUM, in, 1, NULL, false, NULL, &r, NULL), 0);
        assert_int_equal(at(r, 0), 6.0 * 100003);
        td_tensor_unref(r);
        struct td_op_args a;
        td_op_args_init(&a);
        a.dims[0] = 1;
        a.ndims = 1;
        a.has_dims = true;
        assert_int_equal(td_op_apply(TD_OP_SUM, in, 1, &a, false, NULL, &r, NULL), 0);
        assert_int_equal(at(r, 2), 3.0 * 100003);
        td_tensor_unref(r);
        /* an elementwise op over 2^19 + 3 elements (several parallel steps) */
        int64_t m = ((int64_t)1 << 19) + 3;
        struct td_tensor *x;
        assert_int_equal(td_tensor_full(&x, TD_DTYPE_F64, &m, 1, td_scalar_f(1.5), NULL, NULL),
                         0);
        in[0] = tens(x);
        in[1] = num(td_scalar_i(2));
        assert_int_equal(td_op_apply(TD_OP_MUL, in, 2, NULL, false, NULL, &r, NULL), 0);
        assert_int_equal(at(r, 0), 3.0);
        assert_int_equal(at(r, m - 1), 3.0);
        td_tensor_unref(r);
        td_tensor_unref(x);
        td_tensor_unref(v);
        td_tensor_unref(base);
        td_tensor_unref(ones);
    }
    td_parallel_set_threads(1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reductions_stop_at_the_deadline),
        cmocka_unit_test(test_a_raised_reason_stops_a_running_kernel),
        cmocka_unit_test(test_integer_matmul_stops),
        cmocka_unit_test(test_copies_and_elementwise_stop),
        cmocka_unit_test(test_print_stops),
        cmocka_unit_test(test_parallel_for_carries_the_cancel),
        cmocka_unit_test(test_results_unchanged_without_cancel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
