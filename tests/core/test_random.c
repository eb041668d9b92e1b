/* tests/core/test_random.c — the random family (server/core/ops/random.c) through td_op_apply:
** multinomial, bernoulli, randperm and normal_sample. Random values cannot be written down, so
** each test checks what holds for every draw (a permutation is a permutation, a zero-probability
** category never comes, std 0 gives the mean exactly), what a seed fixes (the same seed gives the
** same values, a draw advances the engine by torch's count of draws), and frequencies of many
** draws under a fixed seed, within bounds of several standard deviations (so they cannot fail
** by chance for any seed worth naming, and the seed is fixed anyway). Errors are torch 1.13's
** texts; grad_fn names torch's. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/autograd.h"
#include "core/rng.h"
#include "helpers.h"

static struct td_tensor *apply(enum td_op_id op, struct td_operand *in, int nin,
                               struct td_op_args *a, bool inplace, struct td_err *err, int *rc)
{
    struct td_tensor *out = NULL;
    *rc = td_op_apply(op, in, nin, a, inplace, NULL, &out, err);
    return out;
}

static void args_with(struct td_op_args *a, struct td_rng *r, uint64_t seed)
{
    td_op_args_init(a);
    td_rng_seed(r, seed);
    a->rng = r;
}

/* How many 32-bit draws r has made since td_rng_seed(seed) (at most 100000): the engine's
** position, compared with a fresh one stepped forward. */
static int64_t drawn(const struct td_rng *r, uint64_t seed)
{
    struct td_rng f;
    td_rng_seed(&f, seed);
    for (int64_t k = 0; k <= 100000; k++) {
        if (f.left == r->left && f.next == r->next &&
            memcmp(f.state, r->state, sizeof f.state) == 0) {
            return k;
        }
        (void)td_rng_u32(&f);
    }
    return -1;
}

static void expect_error(enum td_op_id op, struct td_operand *in, int nin, struct td_op_args *a,
                         const char *msg)
{
    struct td_err err;
    int rc;
    struct td_tensor *t = apply(op, in, nin, a, false, &err, &rc);
    assert_int_not_equal(rc, 0);
    assert_null(t);
    assert_string_equal(err.msg, msg);
}

/* ---- multinomial ---- */

static void test_multinomial_support_and_shape(void **state)
{
    (void)state;
    struct td_rng r;
    struct td_op_args a;
    struct td_err err;
    int rc;
    /* [[0, 0, 5, 0], [1, 0, 0, 1]]: row 0 can only give 2; row 1 only 0 or 3. */
    int64_t s24[] = {2, 4};
    struct td_tensor *p = mk(TD_DTYPE_F32, s24, 2, (double[]){0, 0, 5, 0, 1, 0, 0, 1});
    struct td_operand in[1] = {tens(p)};
    args_with(&a, &r, 7);
    a.num_samples = 50;
    a.replacement = true;
    struct td_tensor *t = apply(TD_OP_MULTINOMIAL, in, 1, &a, false, &err, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(t->dtype, TD_DTYPE_I64);
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->shape[0], 2);
    assert_int_equal(t->shape[1], 50);
    int seen0 = 0, seen3 = 0;
    for (int i = 0; i < 50; i++) {
        assert_true(at(t, i) == 2);
        double v = at(t, 50 + i);
        assert_true(v == 0 || v == 3);
        seen0 += v == 0;
        seen3 += v == 3;
    }
    /* 50 fair coin flips: both sides come up (the chance of not is 2^-49) */
    assert_true(seen0 > 0 && seen3 > 0);
    /* with replacement, one double uniform (two 32-bit draws) per sample: 2 rows * 50 */
    assert_int_equal(drawn(&r, 7), 200);
    td_tensor_unref(t);

    /* Without replacement: row 1 has two possible categories, so 2 samples are {0, 3} in some
    ** order; a 1-D input gives a 1-D result. */
    int64_t s4[] = {4};
    struct td_tensor *q = mk(TD_DTYPE_F64, s4, 1, (double[]){1, 0, 0, 1});
    in[0] = tens(q);
    args_with(&a, &r, 7);
    a.num_samples = 2;
    t = apply(TD_OP_MULTINOMIAL, in, 1, &a, false, &err, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(t->ndim, 1);
    assert_int_equal(t->shape[0], 2);
    assert_true(at(t, 0) + at(t, 1) == 3 && at(t, 0) * at(t, 1) == 0);
    /* the exponential trick draws one double uniform per category: 4 */
    assert_int_equal(drawn(&r, 7), 8);
    td_tensor_unref(t);

    /* Without replacement and num_samples == categories: a permutation of 0..3. */
    struct td_tensor *u = mk(TD_DTYPE_F32, s4, 1, (double[]){1, 2, 3, 4});
    in[0] = tens(u);
    args_with(&a, &r, 11);
    a.num_samples = 4;
    t = apply(TD_OP_MULTINOMIAL, in, 1, &a, false, &err, &rc);
    assert_int_equal(rc, 0);
    int seen[4] = {0};
    for (int i = 0; i < 4; i++) {
        seen[(int)at(t, i)]++;
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(seen[i], 1);
    }
    td_tensor_unref(t);
    td_tensor_unref(p);
    td_tensor_unref(q);
    td_tensor_unref(u);
}

/* Frequencies of 40000 draws with replacement from weights 1:2:3:4 (probabilities 0.1..0.4):
** a count's standard deviation is sqrt(40000 * p * (1 - p)) <= 98, so 6 sigma is 590. */
static void test_multinomial_frequencies(void **state)
{
    (void)state;
    struct td_rng r;
    struct td_op_args a;
    struct td_err err;
    int rc;
    int64_t s4[] = {4};
    struct td_tensor *p = mk(TD_DTYPE_F32, s4, 1, (double[]){1, 2, 3, 4});
    struct td_operand in[1] = {tens(p)};
    args_with(&a, &r, 2024);
    a.num_samples = 40000;
    a.replacement = true;
    struct td_tensor *t = apply(TD_OP_MULTINOMIAL, in, 1, &a, false, &err, &rc);
    assert_int_equal(rc, 0);
    int64_t count[4] = {0};
    for (int64_t i = 0; i < t->numel; i++) {
        count[(int)at(t, i)]++;
    }
    for (int c = 0; c < 4; c++) {
        double want = 40000 * (c + 1) / 10.0;
        if (fabs((double)count[c] - want) > 590) {
            fail_msg("category %d: %lld draws, want %.0f +- 590", c, (long long)count[c], want);
        }
    }
    td_tensor_unref(t);

    /* Without replacement, one sample: the first pick is category c with probability
    ** (c + 1) / 10 too (the exponential trick's first key). 20000 single draws, 6 sigma 420. */
    int64_t first[4] = {0};
    args_with(&a, &r, 99);
    a.num_samples = 1;
    for (int k = 0; k < 20000; k++) {
        t = apply(TD_OP_MULTINOMIAL, in, 1, &a, false, &err, &rc);
        assert_int_equal(rc, 0);
        first[(int)at(t, 0)]++;
        td_tensor_unref(t);
    }
    for (int c = 0; c < 4; c++) {
        double want = 20000 * (c + 1) / 10.0;
        if (fabs((double)first[c] - want) > 420) {
            fail_msg("first pick %d: %lld, want %.0f +- 420", c, (long long)first[c], want);
        }
    }
    td_tensor_unref(p);
}

static void test_multinomial_same_seed_same_values(void **state)
{
    (void)state;
    struct td_rng r;
    struct td_op_args a;
    struct td_err err;
    int rc;
    int64_t s5[] = {5};
    struct td_tensor *p = mk(TD_DTYPE_F64, s5, 1, (double[]){1, 1, 1, 1, 1});
    struct td_operand in[1] = {tens(p)};
    args_with(&a, &r, 5);
    a.num_samples = 5;
    struct td_tensor *x = apply(TD_OP_MULTINOMIAL, in, 1, &a, false, &err, &rc);
    args_with(&a, &r, 5);
    a.num_samples = 5;
    struct td_tensor *y = apply(TD_OP_MULTINOMIAL, in, 1, &a, false, &err, &rc);
    struct td_tensor *z = apply(TD_OP_MULTINOMIAL, in, 1, &a, false, &err, &rc);
    bool differs = false;
    for (int i = 0; i < 5; i++) {
        assert_true(at(x, i) == at(y, i));
        differs = differs || at(y, i) != at(z, i);
    }
    /* the stream moved on: a second draw is another permutation (1/120 to repeat; seed fixed) */
    assert_true(differs);
    td_tensor_unref(x);
    td_tensor_unref(y);
    td_tensor_unref(z);
    td_tensor_unref(p);
}

static void test_multinomial_errors(void **state)
{
    (void)state;
    struct td_rng r;
    struct td_op_args a;
    int64_t s2[] = {2}, s111[] = {1, 1, 1}, s0[] = {0};
    struct td_tensor *f = mk(TD_DTYPE_F32, s2, 1, (double[]){1, 2});
    struct td_tensor *l = mk(TD_DTYPE_I64, s2, 1, (double[]){1, 2});
    struct td_tensor *d3 = mk(TD_DTYPE_F32, s111, 3, (double[]){1});
    struct td_tensor *neg = mk(TD_DTYPE_F32, s2, 1, (double[]){-1, 2});
    struct td_tensor *inf = mk(TD_DTYPE_F32, s2, 1, (double[]){INFINITY, 2});
    struct td_tensor *zero = mk(TD_DTYPE_F32, s2, 1, (double[]){0, 0});
    struct td_tensor *empty = mk(TD_DTYPE_F32, s0, 1, NULL);
    struct td_operand in[1];
    args_with(&a, &r, 1);
    a.num_samples = 1;
    in[0] = tens(d3);
    expect_error(TD_OP_MULTINOMIAL, in, 1, &a, "prob_dist must be 1 or 2 dim");
    in[0] = tens(l);
    expect_error(TD_OP_MULTINOMIAL, in, 1, &a,
                 "multinomial only supports floating-point dtypes for input, got: Long");
    in[0] = tens(f);
    a.num_samples = 0;
    expect_error(TD_OP_MULTINOMIAL, in, 1, &a, "cannot sample n_sample <= 0 samples");
    a.num_samples = 3;
    expect_error(TD_OP_MULTINOMIAL, in, 1, &a,
                 "cannot sample n_sample > prob_dist.size(-1) samples without replacement");
    in[0] = tens(empty);
    a.num_samples = 1;
    expect_error(TD_OP_MULTINOMIAL, in, 1, &a,
                 "cannot sample n_sample > prob_dist.size(-1) samples without replacement");
    in[0] = tens(neg);
    expect_error(TD_OP_MULTINOMIAL, in, 1, &a,
                 "probability tensor contains either `inf`, `nan` or element < 0");
    in[0] = tens(zero);
    expect_error(TD_OP_MULTINOMIAL, in, 1, &a,
                 "invalid multinomial distribution (sum of probabilities <= 0)");
    a.replacement = true;
    a.num_samples = 3;
    in[0] = tens(neg);
    expect_error(TD_OP_MULTINOMIAL, in, 1, &a,
                 "invalid multinomial distribution (encountering probability entry < 0)");
    in[0] = tens(inf);
    expect_error(TD_OP_MULTINOMIAL, in, 1, &a,
                 "invalid multinomial distribution (encountering probability entry = infinity "
                 "or NaN)");
    in[0] = tens(zero);
    expect_error(TD_OP_MULTINOMIAL, in, 1, &a,
                 "invalid multinomial distribution (sum of probabilities <= 0)");
    assert_int_equal(drawn(&r, 1), 0); /* failed draws draw nothing */
    td_tensor_unref(f);
    td_tensor_unref(l);
    td_tensor_unref(d3);
    td_tensor_unref(neg);
    td_tensor_unref(inf);
    td_tensor_unref(zero);
    td_tensor_unref(empty);
}

/* ---- bernoulli ---- */

static void test_bernoulli_values(void **state)
{
    (void)state;
    struct td_rng r;
    struct td_op_args a;
    struct td_err err;
    int rc;
    /* probabilities 0 and 1 are certain: [0, 1, 1, 0] exactly, through a transposed view */
    int64_t s22[] = {2, 2};
    struct td_tensor *p = mk(TD_DTYPE_F64, s22, 2, (double[]){0, 1, 1, 0});
    struct td_tensor *pt = transposed(p); /* [[0, 1], [1, 0]] again */
    struct td_operand in[1] = {tens(pt)};
    args_with(&a, &r, 3);
    struct td_tensor *t = apply(TD_OP_BERNOULLI, in, 1, &a, false, &err, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(t->dtype, TD_DTYPE_F64);
    double want[] = {0, 1, 1, 0};
    for (int i = 0; i < 4; i++) {
        assert_true(at(t, i) == want[i]);
    }
    assert_int_equal(drawn(&r, 3), 8); /* a double uniform per element */
    td_tensor_unref(t);

    /* p = 0.25 as a number, over an int64 input of 40000: the result is int64, about 10000
    ** ones (sd sqrt(40000 * 0.25 * 0.75) = 86.6, 6 sigma 520). */
    int64_t n = 40000;
    struct td_tensor *z;
    assert_int_equal(td_tensor_full(&z, TD_DTYPE_I64, &n, 1, td_scalar_i(7), NULL, NULL), 0);
    in[0] = tens(z);
    args_with(&a, &r, 4);
    a.has_max = true;
    a.max = td_scalar_f(0.25);
    t = apply(TD_OP_BERNOULLI, in, 1, &a, false, &err, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(t->dtype, TD_DTYPE_I64);
    double ones = 0;
    for (int64_t i = 0; i < n; i++) {
        assert_true(at(t, i) == 0 || at(t, i) == 1);
        ones += at(t, i);
    }
    assert_true(fabs(ones - 10000) <= 520);
    td_tensor_unref(t);

    /* in place, no p: torch's bernoulli_ default p = 0.5 (20000 more draws, sd 70.7) */
    args_with(&a, &r, 5);
    struct td_operand self[1] = {tens(z)};
    t = apply(TD_OP_BERNOULLI, self, 1, &a, true, &err, &rc);
    assert_int_equal(rc, 0);
    assert_ptr_equal(t, z);
    ones = 0;
    for (int64_t i = 0; i < n; i++) {
        ones += at(z, i);
    }
    assert_true(fabs(ones - 20000) <= 6 * 100);
    td_tensor_unref(t);
    td_tensor_unref(z);
    td_tensor_unref(pt);
    td_tensor_unref(p);
}

static void test_bernoulli_errors(void **state)
{
    (void)state;
    struct td_rng r;
    struct td_op_args a;
    int64_t s2[] = {2};
    struct td_tensor *l = mk(TD_DTYPE_I64, s2, 1, (double[]){0, 1});
    struct td_tensor *bad = mk(TD_DTYPE_F32, s2, 1, (double[]){0, 1.5});
    struct td_operand in[1] = {tens(l)};
    args_with(&a, &r, 1);
    expect_error(TD_OP_BERNOULLI, in, 1, &a,
                 "\"bernoulli_tensor_cpu_p_\" not implemented for "
                 "'Long'");
    in[0] = tens(bad);
    expect_error(TD_OP_BERNOULLI, in, 1, &a,
                 "Expected p_in >= 0 && p_in <= 1 to be true, but got false.  (Could this error "
                 "message be improved?  If so, please report an enhancement request to "
                 "PyTorch.)");
    a.has_max = true;
    a.max = td_scalar_f(1.5);
    expect_error(TD_OP_BERNOULLI, in, 1, &a, "bernoulli_ expects p to be in [0, 1], but got p=1.5");
    td_tensor_unref(l);
    td_tensor_unref(bad);
}

/* ---- randperm ---- */

static void test_randperm(void **state)
{
    (void)state;
    struct td_rng r;
    struct td_op_args a;
    struct td_err err;
    int rc;
    args_with(&a, &r, 9);
    a.num_samples = 1000;
    struct td_tensor *t = apply(TD_OP_RANDPERM, NULL, 0, &a, false, &err, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(t->dtype, TD_DTYPE_I64);
    assert_int_equal(t->shape[0], 1000);
    static int seen[1000];
    memset(seen, 0, sizeof seen);
    int fixed = 0;
    for (int i = 0; i < 1000; i++) {
        seen[(int)at(t, i)]++;
        fixed += at(t, i) == i;
    }
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(seen[i], 1);
    }
    /* a uniform permutation has on average 1 fixed point (Poisson(1): P(>= 10) < 1e-7) */
    assert_true(fixed < 10);
    assert_int_equal(drawn(&r, 9), 999); /* torch's randperm: one random() per step */
    td_tensor_unref(t);

    /* the same seed, as float64: the same permutation */
    struct td_rng r2;
    args_with(&a, &r2, 9);
    a.num_samples = 1000;
    a.has_dtype = true;
    a.dtype = TD_DTYPE_F64;
    struct td_tensor *u = apply(TD_OP_RANDPERM, NULL, 0, &a, false, &err, &rc);
    args_with(&a, &r, 9);
    a.num_samples = 1000;
    t = apply(TD_OP_RANDPERM, NULL, 0, &a, false, &err, &rc);
    assert_int_equal(u->dtype, TD_DTYPE_F64);
    for (int i = 0; i < 1000; i++) {
        assert_true(at(t, i) == at(u, i));
    }
    td_tensor_unref(t);
    td_tensor_unref(u);

    args_with(&a, &r, 9);
    a.num_samples = 0;
    t = apply(TD_OP_RANDPERM, NULL, 0, &a, false, &err, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(t->numel, 0);
    td_tensor_unref(t);

    a.num_samples = -1;
    expect_error(TD_OP_RANDPERM, NULL, 0, &a,
                 "Trying to create tensor with negative dimension -1: [-1]");
    a.num_samples = 3;
    a.has_dtype = true;
    a.dtype = TD_DTYPE_BOOL;
    expect_error(TD_OP_RANDPERM, NULL, 0, &a, "\"randperm\" not implemented for 'Bool'");
    a.dtype = TD_DTYPE_F32;
    a.num_samples = (1 << 24) + 2;
    expect_error(TD_OP_RANDPERM, NULL, 0, &a, "n cannot be greater than 2^24+1 for Float type.");
}

/* ---- normal_sample: torch.normal's forms ---- */

static void test_normal_forms(void **state)
{
    (void)state;
    struct td_rng r;
    struct td_op_args a;
    struct td_err err;
    int rc;
    /* std 0: exactly the mean, broadcast: mean [2, 1] against std [3] gives [2, 3] */
    int64_t s21[] = {2, 1}, s3[] = {3};
    struct td_tensor *m = mk(TD_DTYPE_F32, s21, 2, (double[]){1.5, -2});
    struct td_tensor *s0 = mk(TD_DTYPE_F64, s3, 1, (double[]){0, 0, 0});
    struct td_operand in[2] = {tens(m), tens(s0)};
    args_with(&a, &r, 1);
    struct td_tensor *t = apply(TD_OP_NORMAL_SAMPLE, in, 2, &a, false, &err, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(t->dtype, TD_DTYPE_F32); /* mean's dtype, as torch */
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->shape[0], 2);
    assert_int_equal(t->shape[1], 3);
    double want[] = {1.5, 1.5, 1.5, -2, -2, -2};
    for (int i = 0; i < 6; i++) {
        assert_true(at(t, i) == want[i]);
    }
    assert_int_equal(drawn(&r, 1), 12); /* 3 Box-Muller pairs of double uniforms */
    td_tensor_unref(t);

    /* normal(2.0, 3.0, size [20000]), float64: mean within 6 * 3 / sqrt(20000) = 0.127, the
    ** sample variance within 6 * 9 * sqrt(2 / 20000) = 0.54 of 9 */
    struct td_operand nn[2] = {num(td_scalar_f(2)), num(td_scalar_f(3))};
    args_with(&a, &r, 77);
    a.dims[0] = 20000;
    a.ndims = 1;
    a.has_dims = true;
    a.has_dtype = true;
    a.dtype = TD_DTYPE_F64;
    t = apply(TD_OP_NORMAL_SAMPLE, nn, 2, &a, false, &err, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(t->dtype, TD_DTYPE_F64);
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < t->numel; i++) {
        sum += at(t, i);
    }
    double mean = sum / 20000;
    for (int64_t i = 0; i < t->numel; i++) {
        sq += (at(t, i) - mean) * (at(t, i) - mean);
    }
    assert_true(fabs(mean - 2) < 0.127);
    assert_true(fabs(sq / 19999 - 9) < 0.54);
    td_tensor_unref(t);

    /* normal(0.0, std tensor [0, 0]): std's dtype and shape, zeros */
    struct td_tensor *s2 = mk(TD_DTYPE_F32, (int64_t[]){2}, 1, (double[]){0, 0});
    struct td_operand ns[2] = {num(td_scalar_f(0)), tens(s2)};
    args_with(&a, &r, 1);
    t = apply(TD_OP_NORMAL_SAMPLE, ns, 2, &a, false, &err, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(t->dtype, TD_DTYPE_F32);
    assert_true(at(t, 0) == 0 && at(t, 1) == 0);
    td_tensor_unref(t);

    /* errors */
    struct td_tensor *neg = mk(TD_DTYPE_F32, (int64_t[]){2}, 1, (double[]){-1, 1});
    struct td_tensor *li = mk(TD_DTYPE_I64, (int64_t[]){2}, 1, (double[]){1, 2});
    struct td_operand e1[2] = {tens(m), num(td_scalar_f(-1))};
    expect_error(TD_OP_NORMAL_SAMPLE, e1, 2, &a, "normal expects std >= 0.0, but found std -1");
    struct td_operand e2[2] = {tens(m), tens(neg)};
    expect_error(TD_OP_NORMAL_SAMPLE, e2, 2, &a, "normal expects all elements of std >= 0.0");
    struct td_operand e3[2] = {tens(li), num(td_scalar_f(1))};
    expect_error(TD_OP_NORMAL_SAMPLE, e3, 2, &a,
                 "\"normal_kernel_cpu\" not implemented for 'Long'");
    td_tensor_unref(neg);
    td_tensor_unref(li);
    td_tensor_unref(s2);
    td_tensor_unref(m);
    td_tensor_unref(s0);
}

/* torch's names and zero gradients: normal(Tensor, float) NormalBackward1, normal(float, Tensor)
** NormalBackward2, normal(Tensor, Tensor) NormalBackward3; bernoulli(Tensor) BernoulliBackward0. */
static void test_grad_fn_names_and_zero_grads(void **state)
{
    (void)state;
    struct td_rng r;
    struct td_op_args a;
    struct td_err err;
    int rc;
    int64_t s2[] = {2};
    struct td_tensor *m = mk(TD_DTYPE_F64, s2, 1, (double[]){1, 2});
    struct td_tensor *s = mk(TD_DTYPE_F64, s2, 1, (double[]){0.5, 0.5});
    m->requires_grad = s->requires_grad = true;
    const char *names[3] = {"NormalBackward1", "NormalBackward2", "NormalBackward3"};
    struct td_operand forms[3][2] = {{tens(m), num(td_scalar_f(1))},
                                     {num(td_scalar_f(1)), tens(s)},
                                     {tens(m), tens(s)}};
    for (int k = 0; k < 3; k++) {
        args_with(&a, &r, 1);
        a.grad_enabled = true;
        struct td_tensor *t = apply(TD_OP_NORMAL_SAMPLE, forms[k], 2, &a, false, &err, &rc);
        assert_int_equal(rc, 0);
        assert_string_equal(td_autograd_grad_fn_name(t), names[k]);
        struct td_tensor *sum = NULL;
        struct td_operand si[1] = {tens(t)};
        assert_int_equal(td_op_apply(TD_OP_SUM, si, 1, &a, false, NULL, &sum, &err), 0);
        assert_int_equal(td_autograd_backward(sum, NULL, false, NULL, &err), 0);
        td_tensor_unref(sum);
        td_tensor_unref(t);
    }
    /* mean was used twice, std twice: every gradient element is 0 */
    for (int i = 0; i < 2; i++) {
        assert_true(at(m->grad, i) == 0);
        assert_true(at(s->grad, i) == 0);
    }
    struct td_operand b[1] = {tens(s)};
    args_with(&a, &r, 1);
    a.grad_enabled = true;
    struct td_tensor *t = apply(TD_OP_BERNOULLI, b, 1, &a, false, &err, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(td_autograd_grad_fn_name(t), "BernoulliBackward0");
    td_tensor_unref(t);
    td_tensor_unref(m);
    td_tensor_unref(s);
}

/* Cost rules: safe on any operands (a number where the tensor goes, bad counts), logical sizes. */
static void test_costs(void **state)
{
    (void)state;
    struct td_op_args a;
    td_op_args_init(&a);
    struct td_cost c;
    struct td_err err;
    int64_t s1[] = {1};
    struct td_tensor *one = mk(TD_DTYPE_F32, s1, 1, (double[]){1});
    /* a [2^30, 2^30] expanded view of one element: 2^60 elements read */
    struct td_tensor *big = td_malloc(sizeof *big);
    *big = *one;
    big->refs = 1;
    one->storage->refs++;
    big->ndim = 2;
    big->shape[0] = big->shape[1] = (int64_t)1 << 30;
    big->strides[0] = big->strides[1] = 0;
    big->numel = (int64_t)1 << 60;
    big->grad = NULL;
    struct td_operand in[1] = {tens(big)};
    a.num_samples = 1;
    assert_int_equal(td_op_cost(TD_OP_MULTINOMIAL, in, 1, &a, &c, &err), 0);
    assert_true(c.read >= (int64_t)1 << 60);
    a.num_samples = 0;
    assert_int_not_equal(td_op_cost(TD_OP_MULTINOMIAL, in, 1, &a, &c, &err), 0);
    struct td_operand n1[1] = {num(td_scalar_f(1))};
    assert_int_not_equal(td_op_cost(TD_OP_MULTINOMIAL, n1, 1, &a, &c, &err), 0);
    a.num_samples = (int64_t)1 << 40;
    assert_int_equal(td_op_cost(TD_OP_RANDPERM, NULL, 0, &a, &c, &err), 0);
    assert_true(c.written >= (int64_t)1 << 40);
    a.num_samples = -5;
    assert_int_not_equal(td_op_cost(TD_OP_RANDPERM, NULL, 0, &a, &c, &err), 0);
    struct td_operand nb[2] = {tens(big), num(td_scalar_f(1))};
    assert_int_equal(td_op_cost(TD_OP_NORMAL_SAMPLE, nb, 2, &a, &c, &err), 0);
    assert_true(c.written >= (int64_t)1 << 60);
    struct td_operand nn[2] = {num(td_scalar_f(0)), num(td_scalar_f(1))};
    assert_int_not_equal(td_op_cost(TD_OP_NORMAL_SAMPLE, nn, 2, &a, &c, &err), 0); /* no size */
    assert_int_not_equal(td_op_cost(TD_OP_NORMAL_SAMPLE, nn, 1, &a, &c, &err), 0);
    assert_int_equal(td_op_cost(TD_OP_BERNOULLI, in, 1, &a, &c, &err), 0);
    assert_true(c.written >= (int64_t)1 << 60);
    td_tensor_unref(big);
    td_tensor_unref(one);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_multinomial_support_and_shape),
        cmocka_unit_test(test_multinomial_frequencies),
        cmocka_unit_test(test_multinomial_same_seed_same_values),
        cmocka_unit_test(test_multinomial_errors),
        cmocka_unit_test(test_bernoulli_values),
        cmocka_unit_test(test_bernoulli_errors),
        cmocka_unit_test(test_randperm),
        cmocka_unit_test(test_normal_forms),
        cmocka_unit_test(test_grad_fn_names_and_zero_grads),
        cmocka_unit_test(test_costs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
