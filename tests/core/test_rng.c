/* tests/core/test_rng.c — Philox known answers, reproducibility, ranges and moments. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>

#include "core/rng.h"
#include "helpers.h"

/* Random123's known-answer vector for philox4x32_10: counter 0, key 0. */
static void test_philox_known_answer(void **state)
{
    (void)state;
    uint32_t out[4];
    td_philox(0, 0, out);
    assert_int_equal(out[0], 0x6627e8d5u);
    assert_int_equal(out[1], 0xe169c58du);
    assert_int_equal(out[2], 0xbc57ac4cu);
    assert_int_equal(out[3], 0x9b00dbd8u);
}

static void test_seeded_sequences_repeat(void **state)
{
    (void)state;
    const int64_t s[] = {1000};
    struct td_rng r;
    struct td_tensor *a, *b, *c;
    td_rng_seed(&r, 42);
    assert_int_equal(td_tensor_rand(&a, TD_DTYPE_F32, s, 1, &r, NULL, NULL), 0);
    assert_int_equal(td_tensor_rand(&c, TD_DTYPE_F32, s, 1, &r, NULL, NULL), 0);
    td_rng_seed(&r, 42);
    assert_int_equal(td_tensor_rand(&b, TD_DTYPE_F32, s, 1, &r, NULL, NULL), 0);
    int same_next = 0;
    for (int i = 0; i < 1000; i++) {
        assert_true(at(a, i) == at(b, i)); /* manual_seed restarts the sequence */
        same_next += at(a, i) == at(c, i);
    }
    assert_true(same_next < 5); /* the next draw continues, it does not repeat */
    td_tensor_unref(a);
    td_tensor_unref(b);
    td_tensor_unref(c);
}

static void test_uniform_range_and_moments(void **state)
{
    (void)state;
    const int64_t s[] = {200000};
    struct td_rng r;
    td_rng_seed(&r, 7);
    enum td_dtype dts[] = {TD_DTYPE_F32, TD_DTYPE_F64};
    for (int d = 0; d < 2; d++) {
        struct td_tensor *t;
        assert_int_equal(td_tensor_rand(&t, dts[d], s, 1, &r, NULL, NULL), 0);
        double sum = 0, sq = 0;
        for (int64_t i = 0; i < t->numel; i++) {
            double v = at(t, i);
            assert_true(v >= 0.0 && v < 1.0);
            sum += v;
            sq += v * v;
        }
        double mean = sum / (double)t->numel, var = sq / (double)t->numel - mean * mean;
        /* U[0,1): mean 1/2, variance 1/12; 6 standard errors of slack */
        assert_true(fabs(mean - 0.5) < 6 * sqrt(1.0 / 12 / (double)t->numel));
        assert_true(fabs(var - 1.0 / 12) < 0.002);
        td_tensor_unref(t);
    }
}

static void test_normal_moments(void **state)
{
    (void)state;
    const int64_t s[] = {200000};
    struct td_rng r;
    td_rng_seed(&r, 11);
    struct td_tensor *t;
    assert_int_equal(td_tensor_randn(&t, TD_DTYPE_F64, s, 1, &r, NULL, NULL), 0);
    double sum = 0, sq = 0;
    int64_t beyond3 = 0;
    for (int64_t i = 0; i < t->numel; i++) {
        double v = at(t, i);
        assert_true(isfinite(v));
        sum += v;
        sq += v * v;
        beyond3 += fabs(v) > 3;
    }
    double n = (double)t->numel, mean = sum / n, var = sq / n - mean * mean;
    assert_true(fabs(mean) < 6 / sqrt(n));
    assert_true(fabs(var - 1.0) < 0.02);
    /* P(|Z| > 3) = 0.0027 */
    assert_true(beyond3 > 0.0015 * n && beyond3 < 0.004 * n);
    td_tensor_unref(t);
}

static void test_integer_dtypes_refused_like_torch(void **state)
{
    (void)state;
    const int64_t s[] = {2};
    struct td_rng r;
    td_rng_seed(&r, 1);
    struct td_tensor *t;
    struct td_err err;
    assert_int_equal(td_tensor_rand(&t, TD_DTYPE_I64, s, 1, &r, NULL, &err), TD_EDTYPE);
    assert_string_equal(err.msg, "\"check_uniform_bounds\" not implemented for 'Long'");
    assert_int_equal(td_tensor_randn(&t, TD_DTYPE_I64, s, 1, &r, NULL, &err), TD_EDTYPE);
    assert_string_equal(err.msg, "\"normal_kernel_cpu\" not implemented for 'Long'");
    assert_int_equal(td_tensor_rand(&t, TD_DTYPE_BOOL, s, 1, &r, NULL, &err), TD_EDTYPE);
    assert_string_equal(err.msg, "\"check_uniform_bounds\" not implemented for 'Bool'");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_philox_known_answer),
        cmocka_unit_test(test_seeded_sequences_repeat),
        cmocka_unit_test(test_uniform_range_and_moments),
        cmocka_unit_test(test_normal_moments),
        cmocka_unit_test(test_integer_dtypes_refused_like_torch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
