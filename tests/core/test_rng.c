/* tests/core/test_rng.c — mt19937 known answers, torch's values and state bytes,
** reproducibility, ranges and moments. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>

#include "core/rng.h"
#include "helpers.h"

/* mt19937's published outputs for the default seed 5489 (the first five, and the 10000th, which
** C++'s std::mt19937 requires to be 4123659995). */
static void test_mt19937_known_answers(void **state)
{
    (void)state;
    struct td_rng r;
    td_rng_seed(&r, 5489);
    const uint32_t first[] = {3499211612u, 581869302u, 3890346734u, 3586334585u, 545404204u};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(td_rng_u32(&r), first[i]);
    }
    for (int i = 5; i < 9999; i++) {
        (void)td_rng_u32(&r);
    }
    assert_int_equal(td_rng_u32(&r), 4123659995u);
    /* torch seeds with the low 32 bits and remembers all 64 */
    struct td_rng r2;
    td_rng_seed(&r2, ((uint64_t)7 << 32) | 5489);
    assert_int_equal(td_rng_u32(&r2), 3499211612u);
    assert_true(r2.seed == (((uint64_t)7 << 32) | 5489));
    /* random64 is (first << 32) | second */
    td_rng_seed(&r2, 5489);
    assert_true(td_rng_u64(&r2) == (((uint64_t)3499211612u << 32) | 581869302u));
}

/* Values printed by torch 1.13 after torch.manual_seed(0): torch.rand(1) is 0.49625658988952637
** (float32), torch.randn(2, dtype=torch.float64) is [1.5409961082440433, -0.2934289057609464]
** (the second the cached sine sample); and after manual_seed(5489),
** torch.empty(3, dtype=torch.int32).random_(0, 2**31) is [1351727964, 581869302, 1742863086]. */
static void test_torch_values(void **state)
{
    (void)state;
    struct td_rng r;
    td_rng_seed(&r, 0);
    assert_true(td_rng_uniform_f32(&r, 0.0f, 1.0f) == 0.49625658988952637f);
    td_rng_seed(&r, 0);
    assert_true(td_rng_normal_f64(&r, 0.0, 1.0) == 1.5409961082440433);
    assert_true(r.has_double_normal);
    assert_true(td_rng_normal_f64(&r, 0.0, 1.0) == -0.2934289057609464);
    assert_false(r.has_double_normal);
    td_rng_seed(&r, 5489);
    const uint32_t want[] = {1351727964u, 581869302u, 1742863086u};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(td_rng_u32(&r) % 2147483648u, want[i]);
    }
}

/* get_state: torch's 5056-byte layout (the seed at 0, left at 8, seeded at 12, next at 16, the
** 624 words as uint64 from 24, the double normal sample at 5024 with its flag at 5040);
** set_state takes it back, refuses other sizes and an invalid engine with torch's words. */
static void test_state_bytes(void **state)
{
    (void)state;
    struct td_rng r, r2;
    td_rng_seed(&r, 42);
    (void)td_rng_normal_f64(&r, 0.0, 1.0);
    uint8_t b[TD_RNG_STATE_BYTES];
    td_rng_get_state(&r, b);
    assert_int_equal(b[0], 42);
    /* four 32-bit draws (two double uniforms): the first twisted (left 624), then 3 more */
    assert_int_equal(b[8] | b[9] << 8, 621);
    assert_int_equal(b[12], 1);
    assert_int_equal(b[16], 4);
    assert_int_equal(b[5040], 1);
    uint64_t w0 = 0;
    for (int i = 7; i >= 0; i--) {
        w0 = w0 << 8 | b[24 + i];
    }
    assert_true(w0 == r.state[0]);
    assert_int_equal(td_rng_set_state(&r2, b, sizeof b, NULL), 0);
    assert_true(td_rng_normal_f64(&r2, 0.0, 1.0) == td_rng_normal_f64(&r, 0.0, 1.0));
    assert_true(td_rng_u32(&r2) == td_rng_u32(&r));
    struct td_err err;
    assert_int_equal(td_rng_set_state(&r2, b, 10, &err), TD_EINVAL);
    assert_string_equal(err.msg, "Expected either a CPUGeneratorImplStateLegacy of size 5048 or a "
                                 "CPUGeneratorImplState of size 5056 but found the input RNG "
                                 "state size to be 10");
    b[12] = 0;
    assert_int_equal(td_rng_set_state(&r2, b, sizeof b, &err), TD_EINVAL);
    assert_string_equal(err.msg, "Invalid mt19937 state");
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
        cmocka_unit_test(test_mt19937_known_answers),
        cmocka_unit_test(test_torch_values),
        cmocka_unit_test(test_state_bytes),
        cmocka_unit_test(test_seeded_sequences_repeat),
        cmocka_unit_test(test_uniform_range_and_moments),
        cmocka_unit_test(test_normal_moments),
        cmocka_unit_test(test_integer_dtypes_refused_like_torch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
