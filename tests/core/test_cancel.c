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
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "base/alloc.h"
#include "core/autograd.h"
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
    td_cancel_init(&c, 0); /* no deadline */
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

/* td_parallel_blocks: each block runs exactly once, on one thread or several; a cancel raised
** before the call runs no block, one raised by a block stops the blocks not yet started. */
struct blocks {
    _Atomic int runs[64];
    int64_t raise_at; /* the block that raises the cancel, or -1 */
    struct td_cancel *cancel;
};

static void count_block(int64_t block, void *ctx)
{
    struct blocks *b = ctx;
    atomic_fetch_add(&b->runs[block], 1);
    if (block == b->raise_at) {
        td_cancel_raise(b->cancel, TD_CANCEL_SESSION_CLOSED);
    }
}

static void test_parallel_blocks_run_once_and_stop_on_cancel(void **state)
{
    (void)state;
    for (int threads = 1; threads <= 4; threads *= 2) {
        td_parallel_set_threads(threads);
        struct td_err err;
        for (int64_t n = 0; n <= 64; n = n == 0 ? 1 : n * 4) {
            struct blocks b = {.raise_at = -1};
            assert_int_equal(td_parallel_blocks(n, count_block, &b, &err), 0);
            for (int64_t i = 0; i < 64; i++) {
                assert_int_equal(atomic_load(&b.runs[i]), i < n ? 1 : 0);
            }
        }
        struct td_cancel c;
        td_cancel_init(&c, 0);
        td_cancel_raise(&c, TD_CANCEL_CONN_LOST);
        struct td_cancel *prev = td_cancel_enter(&c);
        struct blocks none = {.raise_at = -1};
        assert_int_equal(td_parallel_blocks(64, count_block, &none, &err), TD_ECANCELED);
        td_cancel_leave(prev);
        for (int64_t i = 0; i < 64; i++) {
            assert_int_equal(atomic_load(&none.runs[i]), 0);
        }
        /* raised by block 0: at most one block per thread starts after it (those already
        ** claimed), and none twice */
        td_cancel_init(&c, 0);
        prev = td_cancel_enter(&c);
        struct blocks some = {.raise_at = 0, .cancel = &c};
        assert_int_equal(td_parallel_blocks(64, count_block, &some, &err), TD_ECANCELED);
        td_cancel_leave(prev);
        int ran = 0;
        for (int64_t i = 0; i < 64; i++) {
            assert_true(atomic_load(&some.runs[i]) <= 1);
            ran += atomic_load(&some.runs[i]);
        }
        assert_int_equal(atomic_load(&some.runs[0]), 1);
        assert_true(ran < 64);
    }
    td_parallel_set_threads(1);
}

/* td_parallel_blocks wakes parked helpers; it does not start a thread per call (a thread
** started by a busy caller first ran ~2.3 ms later on the 2-vCPU bench machine, after the
** caller had run every block). Each call has two blocks, and whichever block starts first
** waits (up to 2 s) for the other to start, so a helper runs one block of a call unless none
** was idle when it began (one still on its way back from the previous call, or from the test
** before); over 12 calls the helpers' thread ids must repeat: at most as many as the helpers
** the largest thread count in this process needs (3, for 4 threads), and fewer than the blocks
** they ran. Started per call, every block a helper ran would be a new thread's. */
struct pair {
    _Atomic int started;
    _Atomic long tid[2];
};

static void pair_block(int64_t block, void *ctx)
{
    struct pair *p = ctx;
    atomic_store(&p->tid[block], (long)syscall(SYS_gettid));
    atomic_fetch_add(&p->started, 1);
    for (uint64_t t0 = now_ms(); atomic_load(&p->started) < 2 && now_ms() - t0 < 2000;) {
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
}

static void test_parallel_blocks_reuse_their_helpers(void **state)
{
    (void)state;
    td_parallel_set_threads(2);
    long self = (long)syscall(SYS_gettid), seen[12];
    int nseen = 0, helped = 0;
    for (int call = 0; call < 12; call++) {
        struct pair p = {0};
        struct td_err err;
        assert_int_equal(td_parallel_blocks(2, pair_block, &p, &err), 0);
        for (int b = 0; b < 2; b++) {
            long tid = atomic_load(&p.tid[b]);
            if (tid == self) {
                continue;
            }
            helped++;
            bool known = false;
            for (int i = 0; i < nseen; i++) {
                known = known || seen[i] == tid;
            }
            if (!known) {
                seen[nseen++] = tid;
            }
        }
    }
    td_parallel_set_threads(1);
    assert_true(helped >= 4);
    assert_true(nseen <= 3 && nseen < helped);
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
        assert_int_equal(td_tensor_full(&ones, TD_DTYPE_F32, &n, 1, td_scalar_f(1), NULL, NULL), 0);
        struct td_operand in[2] = {tens(ones)};
        struct td_tensor *r;
        assert_int_equal(td_op_apply(TD_OP_SUM, in, 1, NULL, false, NULL, &r, NULL), 0);
        assert_int_equal(at(r, 0), (double)n);
        td_tensor_unref(r);
        assert_int_equal(td_op_apply(TD_OP_NORM, in, 1, NULL, false, NULL, &r, NULL), 0);
        assert_true(at(r, 0) > 1773.6 && at(r, 0) < 1773.7); /* sqrt(3145733) = 1773.62.. */
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
        assert_int_equal(td_tensor_full(&x, TD_DTYPE_F64, &m, 1, td_scalar_f(1.5), NULL, NULL), 0);
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

/* The request's work budget (max_work, --max-op-elements) in a backward. */
static void run_backward(struct td_tensor *root, struct td_tensor *gradient, int64_t max_work,
                         int want, const char *words)
{
    int64_t live = td_alloc_live_bytes();
    struct td_cancel c;
    td_cancel_init(&c, GENEROUS_MS);
    c.max_work = max_work;
    struct td_cancel *prev = td_cancel_enter(&c);
    uint64_t t0 = now_ms();
    struct td_err err;
    td_err_clear(&err);
    int rc = td_autograd_backward(root, gradient, true, NULL, &err);
    uint64_t took = now_ms() - t0;
    td_cancel_leave(prev);
    if (rc != want) {
        fail_msg("backward: got %d (%s), want %d", rc, rc ? err.msg : "", want);
    }
    if (words != NULL && strstr(err.msg, words) == NULL) {
        fail_msg("backward: \"%s\" lacks \"%s\"", err.msg, words);
    }
    if (took > GENEROUS_MS / 2) {
        fail_msg("backward took %llu ms", (unsigned long long)took);
    }
    if (rc != 0) {
        assert_int_equal(td_alloc_live_bytes(), live); /* a refusal leaves nothing behind */
    }
}

/* Finding 6: y = x.expand(2^30, 2^30) with x requiring grad, backward with an expanded
** gradient of the same shape. Summing the gradient back to x's shape reads 2^60 elements: under
** a 2^40 budget it is refused at once with --max-op-elements' wording (the forward sum of y
** is refused the same way), before anything is allocated, and x.grad stays unset. The
** deadline (10 s) only bounds the test should the refusal be missing. */
static void test_backward_meets_the_work_budget(void **state)
{
    (void)state;
    const int64_t one[] = {1};
    const int64_t big[] = {(int64_t)1 << 30, (int64_t)1 << 30};
    const int64_t budget = (int64_t)1 << 40;
    struct td_tensor *x = mk(TD_DTYPE_F32, one, 1, (const double[]){2});
    x->requires_grad = true;
    struct td_op_args a;
    td_op_args_init(&a);
    memcpy(a.dims, big, sizeof big);
    a.ndims = 2;
    a.has_dims = true;
    a.grad_enabled = true;
    struct td_tensor *y = NULL;
    assert_int_equal(td_op_apply(TD_OP_EXPAND, (struct td_operand[1]){tens(x)}, 1, &a, false, NULL,
                                 &y, NULL),
                     0);
    assert_non_null(y->grad_fn);
    struct td_tensor *gbase = mk(TD_DTYPE_F32, one, 1, (const double[]){1});
    struct td_tensor *g = expanded(gbase, big, 2);

    /* the forward sum of the same view: refused by the same budget, in the same words */
    struct td_cancel c;
    td_cancel_init(&c, GENEROUS_MS);
    c.max_work = budget;
    struct td_cancel *prev = td_cancel_enter(&c);
    struct td_tensor *s = NULL;
    struct td_err err;
    assert_int_equal(td_op_apply(TD_OP_SUM, (struct td_operand[1]){tens(y)}, 1, NULL, false, NULL,
                                 &s, &err),
                     TD_ELIMIT);
    td_cancel_leave(prev);
    assert_null(s);
    assert_non_null(strstr(err.msg, "sum would touch "));
    assert_non_null(strstr(err.msg, " elements, above max_op_elements 1099511627776"));
    /* at least the 2^60 elements read */
    long long n = strtoll(err.msg + strlen("sum would touch "), NULL, 10);
    assert_true(n >= (long long)1 << 60);

    run_backward(y, g, budget, TD_ELIMIT, "sum would touch ");
    run_backward(y, g, budget, TD_ELIMIT, "above max_op_elements 1099511627776");
    assert_null(x->grad);

    /* with no budget (td_cancel_init's default), the same backward runs into the deadline
    ** instead: the budget is what refuses it, and only when set */
    td_cancel_init(&c, 50);
    assert_int_equal(c.max_work, 0);
    prev = td_cancel_enter(&c);
    uint64_t t0 = now_ms();
    assert_int_equal(td_autograd_backward(y, g, true, NULL, &err), TD_ELIMIT);
    uint64_t took = now_ms() - t0;
    td_cancel_leave(prev);
    assert_non_null(strstr(err.msg, "max_request_seconds 0.05"));
    assert_true(took < GENEROUS_MS);
    assert_null(x->grad);

    td_tensor_unref(g);
    td_tensor_unref(gbase);
    td_tensor_unref(y);
    td_tensor_unref(x);
}

/* A small backward under the default budget gives torch's gradient (d/dx sum(3 * x) = 3, and
** accumulating a second backward gives 6); under a budget of 1 element its first step is
** refused, leaving x.grad as it was. */
static void test_small_backward_within_the_budget(void **state)
{
    (void)state;
    int64_t live = td_alloc_live_bytes();
    const int64_t shape[] = {2, 3};
    struct td_tensor *x = mk(TD_DTYPE_F64, shape, 2, (const double[]){1, 2, 3, 4, 5, 6});
    x->requires_grad = true;
    struct td_op_args a;
    td_op_args_init(&a);
    a.grad_enabled = true;
    struct td_tensor *y = NULL, *s = NULL;
    assert_int_equal(td_op_apply(TD_OP_MUL, (struct td_operand[2]){tens(x), num(td_scalar_i(3))}, 2,
                                 &a, false, NULL, &y, NULL),
                     0);
    assert_int_equal(td_op_apply(TD_OP_SUM, (struct td_operand[1]){tens(y)}, 1, &a, false, NULL, &s,
                                 NULL),
                     0);
    run_backward(s, NULL, (int64_t)1 << 40, 0, NULL);
    assert_non_null(x->grad);
    for (int64_t i = 0; i < 6; i++) {
        assert_true(at(x->grad, i) == 3.0);
    }
    run_backward(s, NULL, 1, TD_ELIMIT, "above max_op_elements 1");
    for (int64_t i = 0; i < 6; i++) {
        assert_true(at(x->grad, i) == 3.0);
    }
    run_backward(s, NULL, 0, 0, NULL); /* 0: no budget */
    for (int64_t i = 0; i < 6; i++) {
        assert_true(at(x->grad, i) == 6.0);
    }
    td_tensor_unref(s);
    td_tensor_unref(y);
    td_tensor_unref(x);
    assert_int_equal(td_alloc_live_bytes(), live);
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
        cmocka_unit_test(test_parallel_blocks_run_once_and_stop_on_cancel),
        cmocka_unit_test(test_parallel_blocks_reuse_their_helpers),
        cmocka_unit_test(test_results_unchanged_without_cancel),
        cmocka_unit_test(test_backward_meets_the_work_budget),
        cmocka_unit_test(test_small_backward_within_the_budget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
