/* tests/core/test_families.c — views, reductions and network helpers in C: 8-dim tensors,
** stride-0 (expanded) inputs, 0-dim scalars, writes through views, and allocation failures in
** composed ops. Values are hand-derived; the Python conformance suite compares with torch. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>

#include "base/alloc.h"
#include "core/parallel.h"
#include "helpers.h"

static struct td_tensor *apply1(enum td_op_id op, struct td_tensor *a,
                                const struct td_op_args *args)
{
    struct td_operand in[1] = {tens(a)};
    struct td_tensor *r = NULL;
    struct td_err err;
    if (td_op_apply(op, in, 1, args, false, NULL, &r, &err) != 0) {
        fail_msg("%s: %s", td_ops[op].name, err.msg);
    }
    return r;
}

static struct td_op_args dims_args(int n, const int64_t *dims, bool keepdim)
{
    struct td_op_args a;
    td_op_args_init(&a);
    for (int i = 0; i < n; i++) {
        a.dims[i] = dims[i];
    }
    a.ndims = n;
    a.has_dims = true;
    a.keepdim = keepdim;
    return a;
}

static void test_eight_dims(void **state)
{
    (void)state;
    const int64_t shape[8] = {1, 2, 1, 2, 1, 2, 1, 2};
    double v[16];
    for (int i = 0; i < 16; i++) {
        v[i] = i;
    }
    struct td_tensor *t = mk(TD_DTYPE_F64, shape, 8, v);
    struct td_tensor *s = apply1(TD_OP_SUM, t, NULL);
    assert_int_equal(s->ndim, 0);
    assert_true(at(s, 0) == 120); /* 0 + 1 + ... + 15 */
    td_tensor_unref(s);
    /* sum over dims 1 and 3, keepdim: out[a,b] sums i = 8*d1 + 4*d3 + 2*x + y over d1, d3 */
    const int64_t d13[] = {1, 3};
    struct td_op_args a = dims_args(2, d13, true);
    s = apply1(TD_OP_SUM, t, &a);
    assert_int_equal(s->ndim, 8);
    assert_int_equal(s->numel, 4);
    for (int x = 0; x < 2; x++) {
        for (int y = 0; y < 2; y++) {
            assert_true(at(s, x * 2 + y) == 4 * (2 * x + y) + 8 + 4 + 8 + 4);
        }
    }
    td_tensor_unref(s);
    /* an 8-dim contiguous tensor reshapes to 1-D as a view */
    const int64_t flat[] = {16};
    struct td_op_args r = dims_args(1, flat, false);
    struct td_tensor *f = apply1(TD_OP_RESHAPE, t, &r);
    assert_ptr_equal(f->storage, t->storage);
    td_tensor_unref(f);
    /* unsqueeze beyond 8 dims is refused */
    struct td_op_args u;
    td_op_args_init(&u);
    struct td_operand in[1] = {tens(t)};
    struct td_err err;
    assert_int_equal(td_op_apply(TD_OP_UNSQUEEZE, in, 1, &u, false, NULL, &f, &err), TD_ELIMIT);
    td_tensor_unref(t);
}

static void test_stride_zero_inputs(void **state)
{
    (void)state;
    const int64_t s31[] = {3, 1}, s34[] = {3, 4};
    const double v[] = {1, 2, 3};
    struct td_tensor *col = mk(TD_DTYPE_I64, s31, 2, v);
    struct td_op_args e = dims_args(2, s34, false);
    struct td_tensor *x = apply1(TD_OP_EXPAND, col, &e);
    assert_int_equal(x->strides[1], 0);
    assert_ptr_equal(x->storage, col->storage);
    const int64_t d1[] = {1};
    struct td_op_args s = dims_args(1, d1, false);
    struct td_tensor *sum = apply1(TD_OP_SUM, x, &s);
    assert_true(at(sum, 0) == 4 && at(sum, 1) == 8 && at(sum, 2) == 12);
    td_tensor_unref(sum);
    /* an elementwise op reads the stride-0 operand correctly */
    struct td_operand in[2] = {tens(x), tens(x)};
    struct td_tensor *p;
    assert_int_equal(td_op_apply(TD_OP_MUL, in, 2, NULL, false, NULL, &p, NULL), 0);
    assert_true(at(p, 0) == 1 && at(p, 4) == 4 && at(p, 11) == 9);
    /* copy_ from the expanded view into a fresh tensor */
    struct td_operand cp[2] = {tens(p), tens(x)};
    struct td_tensor *same;
    assert_int_equal(td_op_apply(TD_OP_COPY, cp, 2, NULL, true, NULL, &same, NULL), 0);
    assert_true(at(p, 0) == 1 && at(p, 5) == 2 && at(p, 11) == 3);
    td_tensor_unref(same);
    td_tensor_unref(p);
    td_tensor_unref(x);
    td_tensor_unref(col);
}

static void test_writes_through_views(void **state)
{
    (void)state;
    const int64_t s23[] = {2, 3};
    const double v[] = {0, 1, 2, 3, 4, 5};
    struct td_tensor *t = mk(TD_DTYPE_F32, s23, 2, v);
    struct td_op_args sel;
    td_op_args_init(&sel);
    sel.dim = 1;
    sel.start = -1; /* t[:, -1] */
    struct td_tensor *last = apply1(TD_OP_SELECT, t, &sel);
    struct td_operand in[2] = {tens(last), num(td_scalar_f(9))};
    struct td_tensor *r;
    assert_int_equal(td_op_apply(TD_OP_FILL, in, 2, NULL, true, NULL, &r, NULL), 0);
    td_tensor_unref(r);
    assert_true(at(t, 2) == 9 && at(t, 5) == 9 && at(t, 1) == 1);
    td_tensor_unref(last);
    td_tensor_unref(t);
}

static void test_scalars(void **state)
{
    (void)state;
    const double v[] = {2.5};
    struct td_tensor *s = mk(TD_DTYPE_F32, NULL, 0, v);
    struct td_tensor *sum = apply1(TD_OP_SUM, s, NULL);
    assert_int_equal(sum->ndim, 0);
    assert_true(at(sum, 0) == 2.5);
    struct td_op_args d;
    td_op_args_init(&d);
    d.dim = -1;
    struct td_tensor *sm = apply1(TD_OP_SOFTMAX, s, &d);
    assert_true(at(sm, 0) == 1.0);
    td_tensor_unref(sm);
    td_tensor_unref(sum);
    td_tensor_unref(s);
}

/* Composed ops (softmax builds on max, sub, exp, sum, div) fail cleanly at every allocation. */
static void test_composed_ops_allocation_failures(void **state)
{
    (void)state;
    const int64_t s23[] = {2, 3};
    const double v[] = {0.5, 1, 2, 3, -4, 5};
    struct td_tensor *t = mk(TD_DTYPE_F32, s23, 2, v);
    struct td_tensor *tt = transposed(t);
    const enum td_op_id ops[] = {TD_OP_SOFTMAX, TD_OP_LOG_SOFTMAX, TD_OP_RESHAPE, TD_OP_STD,
                                 TD_OP_CAT};
    int64_t base = td_alloc_live_bytes();
    for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++) {
        struct td_op_args a;
        td_op_args_init(&a);
        a.dims[0] = 6;
        a.ndims = ops[o] == TD_OP_RESHAPE ? 1 : 0;
        a.has_dims = ops[o] == TD_OP_RESHAPE;
        struct td_operand in[2] = {tens(ops[o] == TD_OP_RESHAPE ? tt : t), tens(t)};
        int nin = ops[o] == TD_OP_CAT ? 2 : 1;
        bool done = false;
        for (int64_t k = 1; k < 200 && !done; k++) {
            struct td_tensor *r = NULL;
            struct td_err err;
            td_alloc_fail_at(k);
            int rc = td_op_apply(ops[o], in, nin, &a, false, NULL, &r, &err);
            int64_t used = td_alloc_count();
            td_alloc_fail_at(0);
            if (rc == 0) {
                td_tensor_unref(r);
            } else {
                assert_int_equal(rc, TD_ENOMEM);
            }
            if (td_alloc_live_bytes() != base) {
                fail_msg("%s leaked with allocation %lld failing", td_ops[ops[o]].name,
                         (long long)k);
            }
            done = used < k;
        }
        assert_true(done);
    }
    td_tensor_unref(tt);
    td_tensor_unref(t);
}

/* A kernel split across threads gives the same elements as one thread: a long contiguous row,
** and a broadcast [rows, cols] + [cols] case split by rows. */
static void test_parallel_split_matches_serial(void **state)
{
    (void)state;
    enum { N = (1 << 20) + 7, R = 1031, C = 1029 };
    const int64_t sn[] = {N}, src[] = {R, C}, sc[] = {C};
    static double v[(int64_t)R * C + C]; /* more than N, and enough for the matrix */
    for (int64_t i = 0; i < (int64_t)R * C + C; i++) {
        v[i] = (i % 1000) * 0.25 - 7;
    }
    struct td_tensor *a = mk(TD_DTYPE_F32, sn, 1, v), *m = mk(TD_DTYPE_F64, src, 2, v);
    struct td_tensor *row = mk(TD_DTYPE_F64, sc, 1, v + 5);
    struct td_tensor *r1, *r4, *b1, *b4;
    struct td_operand ina[2] = {tens(a), num(td_scalar_f(1.5))}, inb[2] = {tens(m), tens(row)};
    td_parallel_set_threads(1);
    assert_int_equal(td_op_apply(TD_OP_MUL, ina, 2, NULL, false, NULL, &r1, NULL), 0);
    assert_int_equal(td_op_apply(TD_OP_SUB, inb, 2, NULL, false, NULL, &b1, NULL), 0);
    td_parallel_set_threads(4);
    assert_int_equal(td_op_apply(TD_OP_MUL, ina, 2, NULL, false, NULL, &r4, NULL), 0);
    assert_int_equal(td_op_apply(TD_OP_SUB, inb, 2, NULL, false, NULL, &b4, NULL), 0);
    td_parallel_set_threads(1);
    assert_memory_equal(td_tensor_data(r1), td_tensor_data(r4), td_tensor_nbytes(r1));
    assert_memory_equal(td_tensor_data(b1), td_tensor_data(b4), td_tensor_nbytes(b1));
    assert_true(at(r4, N - 1) == (double)((float)v[N - 1] * 1.5f));
    assert_true(at(b4, (int64_t)R * C - 1) == v[(int64_t)R * C - 1] - v[5 + C - 1]);
    td_tensor_unref(r1);
    td_tensor_unref(r4);
    td_tensor_unref(b1);
    td_tensor_unref(b4);
    td_tensor_unref(a);
    td_tensor_unref(m);
    td_tensor_unref(row);
}

/* A large full sum split across threads agrees with one thread (to rounding). */
static void test_parallel_sum(void **state)
{
    (void)state;
    enum { N = (1 << 21) + 3 };
    const int64_t sn[] = {N};
    static double v[N];
    for (int i = 0; i < N; i++) {
        v[i] = (((int64_t)i * 7919) % 1000) * 0.001 - 0.25;
    }
    struct td_tensor *a = mk(TD_DTYPE_F32, sn, 1, v);
    struct td_operand in[1] = {tens(a)};
    struct td_tensor *s1, *s4, *n4;
    td_parallel_set_threads(1);
    assert_int_equal(td_op_apply(TD_OP_SUM, in, 1, NULL, false, NULL, &s1, NULL), 0);
    td_parallel_set_threads(4);
    assert_int_equal(td_op_apply(TD_OP_SUM, in, 1, NULL, false, NULL, &s4, NULL), 0);
    assert_int_equal(td_op_apply(TD_OP_NORM, in, 1, NULL, false, NULL, &n4, NULL), 0);
    td_parallel_set_threads(1);
    double exact = 0, sq = 0;
    for (int i = 0; i < N; i++) {
        exact += (double)(float)v[i];
        sq += (double)(float)v[i] * (float)v[i];
    }
    assert_true(fabs(at(s1, 0) - exact) <= 1e-6 * fabs(exact) + 1e-3);
    assert_true(fabs(at(s4, 0) - exact) <= 1e-6 * fabs(exact) + 1e-3);
    assert_true(fabs(at(n4, 0) - sqrt(sq)) <= 1e-6 * sqrt(sq));
    td_tensor_unref(s1);
    td_tensor_unref(s4);
    td_tensor_unref(n4);
    td_tensor_unref(a);
}

/* gelu(x) = x (1 + erf(x / sqrt 2)) / 2, torch's definition, far into the negative tail where
** 1 + erf cancels: float32 must not lose more than its own rounding. References: the formula
** in double from Python's math module, to 10 digits. */
static void test_gelu_negative_tail(void **state)
{
    (void)state;
    const int64_t shape[] = {4};
    const double x[] = {-3.0, -4.1, -5.5, -8.0};
    /* -4.1 is not a float: its float32 neighbour -4.0999999046 has its own reference */
    const double want[2][4] = {{-4.0496940949e-03, -8.4695811273e-05, -1.0444259363e-07,
                                -4.8849813084e-15},
                               {-4.0496940949e-03, -8.4695778341e-05, -1.0444259363e-07,
                                -4.8849813084e-15}};
    for (int k = 0; k < 2; k++) {
        enum td_dtype dt = k == 0 ? TD_DTYPE_F32 : TD_DTYPE_F64;
        struct td_tensor *t = mk(dt, shape, 1, x);
        struct td_tensor *g = apply1(TD_OP_GELU, t, NULL);
        for (int i = 0; i < 4; i++) {
            double rel = fabs(at(g, i) - want[k][i]) / fabs(want[k][i]);
            if (rel > (dt == TD_DTYPE_F32 ? 2e-6 : 1e-9)) {
                fail_msg("gelu(%g) = %.10g, want %.10g (rel %g)", x[i], at(g, i), want[k][i], rel);
            }
        }
        td_tensor_unref(g);
        td_tensor_unref(t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_eight_dims),
        cmocka_unit_test(test_gelu_negative_tail),
        cmocka_unit_test(test_stride_zero_inputs),
        cmocka_unit_test(test_writes_through_views),
        cmocka_unit_test(test_scalars),
        cmocka_unit_test(test_composed_ops_allocation_failures),
        cmocka_unit_test(test_parallel_split_matches_serial),
        cmocka_unit_test(test_parallel_sum),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
