/* tests/core/test_matmul.c — matmul in every rank combination, against hand-derived products and
** a naive float64 reference, with torch 1.13's error messages. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <cblas.h>
#include <math.h>

#include "base/alloc.h"
#include "core/parallel.h"
#include "helpers.h"

static int mm(struct td_tensor *a, struct td_tensor *b, struct td_tensor **out, struct td_err *err)
{
    struct td_operand in[2] = {tens(a), tens(b)};
    return td_op_apply(TD_OP_MATMUL, in, 2, NULL, false, NULL, out, err);
}

static void expect_shape(const struct td_tensor *t, int ndim, const int64_t *shape)
{
    assert_int_equal(t->ndim, ndim);
    for (int i = 0; i < ndim; i++) {
        assert_int_equal(t->shape[i], shape[i]);
    }
}

static void test_2d_values(void **state)
{
    (void)state;
    const int64_t s22[] = {2, 2};
    const double a[] = {1, 2, 3, 4}, b[] = {5, 6, 7, 8}, want[] = {19, 22, 43, 50};
    enum td_dtype dts[] = {TD_DTYPE_F32, TD_DTYPE_F64, TD_DTYPE_I32, TD_DTYPE_I64};
    for (int d = 0; d < 4; d++) {
        struct td_tensor *ta = mk(dts[d], s22, 2, a), *tb = mk(dts[d], s22, 2, b), *r;
        assert_int_equal(mm(ta, tb, &r, NULL), 0);
        assert_int_equal(r->dtype, dts[d]);
        expect_shape(r, 2, s22);
        for (int i = 0; i < 4; i++) {
            assert_true(at(r, i) == want[i]);
        }
        td_tensor_unref(r);
        td_tensor_unref(ta);
        td_tensor_unref(tb);
    }
}

static void test_vector_cases(void **state)
{
    (void)state;
    const int64_t s3[] = {3}, s23[] = {2, 3}, s32[] = {3, 2};
    const double v[] = {1, 2, 3}, m[] = {1, 2, 3, 4, 5, 6};
    struct td_tensor *tv = mk(TD_DTYPE_F32, s3, 1, v), *tm = mk(TD_DTYPE_F32, s23, 2, m);
    struct td_tensor *tm2 = mk(TD_DTYPE_F32, s32, 2, m), *r;
    /* dot: 1+4+9 = 14, a 0-dim result */
    assert_int_equal(mm(tv, tv, &r, NULL), 0);
    assert_int_equal(r->ndim, 0);
    assert_true(at(r, 0) == 14);
    td_tensor_unref(r);
    /* [2,3] @ [3] = [14, 32] */
    assert_int_equal(mm(tm, tv, &r, NULL), 0);
    const int64_t s2[] = {2};
    expect_shape(r, 1, s2);
    assert_true(at(r, 0) == 14 && at(r, 1) == 32);
    td_tensor_unref(r);
    /* [3] @ [3,2] = [1*1+2*3+3*5, 1*2+2*4+3*6] = [22, 28] */
    assert_int_equal(mm(tv, tm2, &r, NULL), 0);
    expect_shape(r, 1, s2);
    assert_true(at(r, 0) == 22 && at(r, 1) == 28);
    td_tensor_unref(r);
    td_tensor_unref(tv);
    td_tensor_unref(tm);
    td_tensor_unref(tm2);
}

/* Reference: out[b,i,j] = sum_k A[b?,i,k] B[b?,k,j] in double. */
static void test_batched_broadcast_against_reference(void **state)
{
    (void)state;
    const int64_t sa[] = {2, 1, 3, 4}, sb[] = {5, 4, 2};
    double av[24], bv[40];
    for (int i = 0; i < 24; i++) {
        av[i] = (i * 7 % 11) - 5;
    }
    for (int i = 0; i < 40; i++) {
        bv[i] = (i * 5 % 13) - 6;
    }
    struct td_tensor *a = mk(TD_DTYPE_F64, sa, 4, av), *b = mk(TD_DTYPE_F64, sb, 3, bv), *r;
    assert_int_equal(mm(a, b, &r, NULL), 0);
    const int64_t want_shape[] = {2, 5, 3, 2};
    expect_shape(r, 4, want_shape);
    for (int x = 0; x < 2; x++) {
        for (int y = 0; y < 5; y++) {
            for (int i = 0; i < 3; i++) {
                for (int j = 0; j < 2; j++) {
                    double s = 0;
                    for (int k = 0; k < 4; k++) {
                        s += av[(x * 3 + i) * 4 + k] * bv[(y * 4 + k) * 2 + j];
                    }
                    assert_true(at(r, ((x * 5 + y) * 3 + i) * 2 + j) == s);
                }
            }
        }
    }
    td_tensor_unref(r);
    /* the same with integer dtype (plain loop) */
    struct td_tensor *ai = mk(TD_DTYPE_I64, sa, 4, av), *bi = mk(TD_DTYPE_I64, sb, 3, bv);
    assert_int_equal(mm(ai, bi, &r, NULL), 0);
    struct td_tensor *rf;
    assert_int_equal(mm(a, b, &rf, NULL), 0);
    for (int64_t i = 0; i < r->numel; i++) {
        assert_true(at(r, i) == at(rf, i));
    }
    td_tensor_unref(rf);
    td_tensor_unref(r);
    /* batch @ matrix folds into one product: [2,3,4] @ [4,2] */
    const int64_t s234[] = {2, 3, 4}, s42[] = {4, 2};
    struct td_tensor *a3 = mk(TD_DTYPE_F32, s234, 3, av), *b2 = mk(TD_DTYPE_F32, s42, 2, bv);
    assert_int_equal(mm(a3, b2, &r, NULL), 0);
    for (int bt = 0; bt < 2; bt++) {
        for (int i = 0; i < 3; i++) {
            for (int j = 0; j < 2; j++) {
                double s = 0;
                for (int k = 0; k < 4; k++) {
                    s += av[(bt * 3 + i) * 4 + k] * bv[k * 2 + j];
                }
                assert_true(at(r, (bt * 3 + i) * 2 + j) == s);
            }
        }
    }
    td_tensor_unref(r);
    td_tensor_unref(a3);
    td_tensor_unref(b2);
    td_tensor_unref(ai);
    td_tensor_unref(bi);
    td_tensor_unref(a);
    td_tensor_unref(b);
}

static void test_transposed_operands(void **state)
{
    (void)state;
    const int64_t s23[] = {2, 3};
    const double m[] = {1, 2, 3, 4, 5, 6};
    struct td_tensor *a = mk(TD_DTYPE_F32, s23, 2, m), *at_ = transposed(a), *r;
    /* a^T @ a: [3,3], entry (i,j) = sum_k a[k,i] a[k,j] */
    assert_int_equal(mm(at_, a, &r, NULL), 0);
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 3; j++) {
            assert_true(at(r, i * 3 + j) == m[i] * m[j] + m[3 + i] * m[3 + j]);
        }
    }
    td_tensor_unref(r);
    /* a @ a^T: [2,2] */
    assert_int_equal(mm(a, at_, &r, NULL), 0);
    assert_true(at(r, 0) == 14 && at(r, 1) == 32 && at(r, 3) == 77);
    td_tensor_unref(r);
    td_tensor_unref(at_);
    td_tensor_unref(a);
}

static void test_zero_size(void **state)
{
    (void)state;
    const int64_t s20[] = {2, 0}, s03[] = {0, 3}, s23[] = {2, 3};
    const double v[] = {0};
    struct td_tensor *a = mk(TD_DTYPE_F32, s20, 2, v), *b = mk(TD_DTYPE_F32, s03, 2, v), *r;
    /* torch.ones(2, 0) @ torch.ones(0, 3) is a 2x3 of zeros */
    assert_int_equal(mm(a, b, &r, NULL), 0);
    expect_shape(r, 2, s23);
    for (int i = 0; i < 6; i++) {
        assert_true(at(r, i) == 0);
    }
    td_tensor_unref(r);
    td_tensor_unref(a);
    td_tensor_unref(b);
}

static void expect_error(const int64_t *sa, int na, enum td_dtype da, const int64_t *sb, int nb,
                         enum td_dtype db, const char *msg)
{
    double z[64] = {0};
    struct td_tensor *a = mk(da, sa, na, z), *b = mk(db, sb, nb, z), *r = NULL;
    struct td_err err;
    assert_int_not_equal(mm(a, b, &r, &err), 0);
    assert_null(r);
    assert_string_equal(err.msg, msg);
    td_tensor_unref(a);
    td_tensor_unref(b);
}

/* Each message is what torch 1.13 prints for the same shapes and dtypes. */
static void test_errors_like_torch(void **state)
{
    (void)state;
    const int64_t s23[] = {2, 3}, s3[] = {3}, s2[] = {2}, s34[] = {3, 4}, s223[] = {2, 2, 3};
    const int64_t s22[] = {2, 2}, s42[] = {4, 2}, s5223[] = {5, 2, 2, 3}, s242[] = {2, 4, 2};
    const int64_t s222[] = {2, 2, 2};
    const enum td_dtype F = TD_DTYPE_F32, L = TD_DTYPE_I64;
    expect_error(s23, 2, F, s23, 2, F, "mat1 and mat2 shapes cannot be multiplied (2x3 and 2x3)");
    expect_error(s3, 1, F, s2, 1, F,
                 "inconsistent tensor size, expected tensor [3] and src [2] "
                 "to have the same number of elements, but got 3 and 2 elements respectively");
    expect_error(s23, 2, F, s2, 1, F, "size mismatch, got 2, 2x3,2");
    expect_error(s2, 1, F, s34, 2, F, "mat1 and mat2 shapes cannot be multiplied (1x2 and 3x4)");
    expect_error(s223, 3, F, s22, 2, F, "mat1 and mat2 shapes cannot be multiplied (4x3 and 2x2)");
    expect_error(s223, 3, F, s2, 1, F, "size mismatch, got 4, 4x3,2");
    expect_error(s223, 3, F, s42, 2, F, "mat1 and mat2 shapes cannot be multiplied (4x3 and 4x2)");
    expect_error(s3, 1, F, s223, 3, F, "size mismatch, got 6, 6x2,3");
    expect_error(s23, 2, F, s222, 3, F, "mat1 and mat2 shapes cannot be multiplied (4x2 and 3x2)");
    expect_error(s5223, 4, F, s242, 3, F,
                 "Expected size for first two dimensions of batch2 "
                 "tensor to be: [10, 3] but got: [10, 4].");
    expect_error(s223, 3, F, s223, 3, F,
                 "Expected size for first two dimensions of batch2 "
                 "tensor to be: [2, 3] but got: [2, 2].");
    expect_error(s22, 0, F, s22, 2, F,
                 "both arguments to matmul need to be at least 1D, but they are 0D and 2D");
    expect_error(s22, 2, L, s22, 2, F, "expected scalar type Long but found Float");
    expect_error(s22, 2, F, s22, 2, L, "expected scalar type Float but found Long");
    expect_error(s2, 1, L, s2, 1, F,
                 "dot : expected both vectors to have same dtype, but found Long and Float");
    expect_error(s22, 2, TD_DTYPE_BOOL, s22, 2, TD_DTYPE_BOOL,
                 "\"addmm_impl_cpu_\" not implemented for 'Bool'");
    expect_error(s2, 1, TD_DTYPE_BOOL, s2, 1, TD_DTYPE_BOOL, "\"dot\" not implemented for 'Bool'");
}

/* A product big enough for BLAS's blocked paths, against a naive double loop. */
static void test_large_float32_against_reference(void **state)
{
    (void)state;
    enum { N = 67, K = 129, M = 45 };
    static double av[N * K], bv[K * M];
    for (int i = 0; i < N * K; i++) {
        av[i] = ((i * 37) % 101) / 50.0 - 1.0;
    }
    for (int i = 0; i < K * M; i++) {
        bv[i] = ((i * 53) % 97) / 48.0 - 1.0;
    }
    const int64_t sa[] = {N, K}, sb[] = {K, M};
    struct td_tensor *a = mk(TD_DTYPE_F32, sa, 2, av), *b = mk(TD_DTYPE_F32, sb, 2, bv), *r;
    assert_int_equal(mm(a, b, &r, NULL), 0);
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < M; j++) {
            double s = 0, mag = 0;
            for (int k = 0; k < K; k++) {
                s += (double)(float)av[i * K + k] * (double)(float)bv[k * M + j];
                mag += fabs((double)(float)av[i * K + k] * (double)(float)bv[k * M + j]);
            }
            /* float32 accumulation: error bounded by K * eps * sum|terms| */
            assert_true(fabs(at(r, i * M + j) - s) <= K * 1.2e-7 * mag + 1e-6);
        }
    }
    td_tensor_unref(r);
    td_tensor_unref(a);
    td_tensor_unref(b);
}

/* A product the daemon splits across threads (2^25 multiply-adds and more: blocks of rows, or
** of columns when c has fewer rows than columns) is bit for bit the product of one BLAS call:
** only rows and columns of c are split, never k. Transposed operands, one row, one column,
** float32 and float64, and linear's fused bias (beta = 1). */
static struct td_tensor *filled(enum td_dtype dt, int64_t r, int64_t c, unsigned seed)
{
    const int64_t shape[] = {r, c};
    struct td_tensor *t = NULL;
    /* r = 0: the 1-D tensor of c elements */
    assert_int_equal(td_tensor_empty(&t, dt, r == 0 ? shape + 1 : shape, r == 0 ? 1 : 2, NULL,
                                     NULL),
                     0);
    r = r == 0 ? 1 : r;
    uint32_t x = seed * 2654435761u + 1;
    for (int64_t i = 0; i < r * c; i++) {
        x = x * 1664525u + 1013904223u;
        double v = (double)(x >> 8) / (double)(1u << 24) - 0.5;
        if (dt == TD_DTYPE_F32) {
            ((float *)td_tensor_data(t))[i] = (float)v;
        } else {
            ((double *)td_tensor_data(t))[i] = v;
        }
    }
    return t;
}

static struct td_tensor *product(int threads, struct td_tensor *a, struct td_tensor *b,
                                 struct td_tensor *bias)
{
    td_parallel_set_threads(threads);
    struct td_tensor *r = NULL;
    if (bias != NULL) {
        struct td_operand in[3] = {tens(a), tens(b), tens(bias)};
        assert_int_equal(td_op_apply(TD_OP_LINEAR, in, 3, NULL, false, NULL, &r, NULL), 0);
    } else {
        assert_int_equal(mm(a, b, &r, NULL), 0);
    }
    td_parallel_set_threads(1);
    return r;
}

static void test_split_products_are_one_calls_bits(void **state)
{
    (void)state;
    openblas_set_num_threads(1); /* as the daemon runs it (server/threads.c) */
    const struct {
        enum td_dtype dt;
        int64_t n, k, m;
        bool ta, tb, linear;
    } cases[] = {
        {TD_DTYPE_F32, 256, 512, 256, false, false, false},
        {TD_DTYPE_F64, 257, 513, 255, true, false, false},
        {TD_DTYPE_F32, 300, 512, 301, false, true, false},
        {TD_DTYPE_F32, 1, 1 << 15, 1 << 10, false, false, false},
        {TD_DTYPE_F32, 1 << 10, 1 << 15, 1, true, true, false},
        {TD_DTYPE_F32, 3, 1 << 13, 1 << 11, false, false, false},
        {TD_DTYPE_F32, 301, 512, 256, false, false, true},
        {TD_DTYPE_F64, 256, 512, 257, false, false, true},
        /* 8.4G multiply-adds: eight blocks by the cancel granularity, four by the row floor */
        {TD_DTYPE_F32, 1000, 2048, 4096, false, false, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        enum td_dtype dt = cases[i].dt;
        int64_t n = cases[i].n, k = cases[i].k, m = cases[i].m;
        struct td_tensor *a = NULL, *b = NULL, *bias = NULL, *base;
        /* a transposed operand is the transpose view of a filled k x n (m x k) tensor */
        base = cases[i].ta ? filled(dt, k, n, 1) : filled(dt, n, k, 1);
        if (cases[i].ta) {
            a = transposed(base);
            td_tensor_unref(base);
        } else {
            a = base;
        }
        if (cases[i].linear) { /* linear(x, W, bias): W is m x k, read as its transpose */
            b = filled(dt, m, k, 2);
            bias = filled(dt, 0, m, 3);
        } else {
            base = cases[i].tb ? filled(dt, m, k, 2) : filled(dt, k, m, 2);
            if (cases[i].tb) {
                b = transposed(base);
                td_tensor_unref(base);
            } else {
                b = base;
            }
        }
        struct td_tensor *one = product(1, a, b, bias), *split = product(2, a, b, bias);
        assert_int_equal(one->numel, n * m);
        assert_int_equal(td_tensor_nbytes(one), td_tensor_nbytes(split));
        assert_memory_equal(td_tensor_data(one), td_tensor_data(split), td_tensor_nbytes(one));
        td_tensor_unref(one);
        td_tensor_unref(split);
        td_tensor_unref(a);
        td_tensor_unref(b);
        td_tensor_unref(bias);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_2d_values),
        cmocka_unit_test(test_vector_cases),
        cmocka_unit_test(test_batched_broadcast_against_reference),
        cmocka_unit_test(test_transposed_operands),
        cmocka_unit_test(test_zero_size),
        cmocka_unit_test(test_errors_like_torch),
        cmocka_unit_test(test_large_float32_against_reference),
        cmocka_unit_test(test_split_products_are_one_calls_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
