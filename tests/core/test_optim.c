/* tests/core/test_optim.c — server/core/optim.c: one optimiser step of SGD, Adam, AdamW, RMSprop
** and Adagrad, the clip helpers, torch's constructor checks and the state checks, with every
** expected value worked out by hand in the comments (from torch 1.13's update rules, as
** torch/optim/<name>.py states them). Values are chosen so that most results are exact in binary;
** the others are written as the formula the hand derivation gives. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "core/optim.h"
#include "helpers.h"

static const int64_t S1[] = {1}, S2[] = {2};

static struct td_optim_hparams hp(void)
{
    struct td_optim_hparams h;
    memset(&h, 0, sizeof h);
    return h;
}

static void expect_near(const struct td_tensor *t, const double *want, int64_t n, double tol)
{
    for (int64_t i = 0; i < n; i++) {
        if (fabs(at(t, i) - want[i]) > tol) {
            fail_msg("element %lld: got %.17g, want %.17g", (long long)i, at(t, i), want[i]);
        }
    }
}

/* One step of p with gradient g; states made fresh (as rpc does on a first step) when NULL. */
static void step(enum td_optim_algo algo, const struct td_optim_hparams *h, struct td_tensor *p,
                 const struct td_tensor *g, struct td_tensor **st)
{
    struct td_err err;
    unsigned slots = td_optim_slots(algo, h), fresh = 0;
    for (int k = 0; k < TD_OPTIM_SLOTS; k++) {
        if ((slots & (1u << k)) && st[k] == NULL) {
            assert_int_equal(td_optim_state_new(k, h, p, NULL, &st[k], &err), 0);
            fresh |= 1u << k;
        }
    }
    assert_int_equal(td_optim_update(algo, h, p, g, st, fresh, &err), 0);
}

/* Releases the states (st is left empty for the next case) and the parameter p. */
static void release(struct td_tensor **st, struct td_tensor *p)
{
    for (int k = 0; k < TD_OPTIM_SLOTS; k++) {
        td_tensor_unref(st[k]);
        st[k] = NULL;
    }
    td_tensor_unref(p);
}

/* A fresh float64 parameter [1], where the scalar cases start. */
static struct td_tensor *scalar_param(void)
{
    return mk(TD_DTYPE_F64, S1, 1, (double[]){1});
}

/* The scalar parameter p holds want, to 1e-15. */
static void expect_p(const struct td_tensor *p, double want)
{
    expect_near(p, &want, 1, 1e-15);
}

/* The Adam cases' options: lr 0.1, betas (0.5, 0.75), no eps. */
static struct td_optim_hparams adam_hp(void)
{
    struct td_optim_hparams h = hp();
    h.lr = 0.1;
    h.beta1 = 0.5;
    h.beta2 = 0.75;
    return h;
}

static void test_sgd(void **state)
{
    (void)state;
    struct td_tensor *st[TD_OPTIM_SLOTS] = {NULL};
    struct td_tensor *g = mk(TD_DTYPE_F64, S2, 1, (double[]){0.5, -1});
    struct td_optim_hparams h = hp();
    /* momentum 0.5, lr 0.5. Step 1: buf = g = [0.5, -1] (torch's clone of d_p);
    ** p = [1, 2] - 0.5 * buf = [0.75, 2.5]. Step 2: buf = 0.5 * buf + (1 - 0) * g
    ** = [0.75, -1.5]; p = [0.75 - 0.375, 2.5 + 0.75] = [0.375, 3.25]. */
    h.lr = 0.5;
    h.momentum = 0.5;
    struct td_tensor *p = mk(TD_DTYPE_F64, S2, 1, (double[]){1, 2});
    int64_t v0 = p->storage->version;
    step(TD_OPTIM_SGD, &h, p, g, st);
    expect_values(p, TD_DTYPE_F64, 1, S2, (double[]){0.75, 2.5});
    expect_values(st[TD_OPTIM_MOMENTUM_BUFFER], TD_DTYPE_F64, 1, S2, (double[]){0.5, -1});
    assert_true(p->storage->version > v0); /* an in-place write, as torch's add_ */
    step(TD_OPTIM_SGD, &h, p, g, st);
    expect_values(p, TD_DTYPE_F64, 1, S2, (double[]){0.375, 3.25});
    expect_values(st[TD_OPTIM_MOMENTUM_BUFFER], TD_DTYPE_F64, 1, S2, (double[]){0.75, -1.5});
    release(st, p);
    /* nesterov: buf = g; d = g + 0.5 * buf = [0.75, -1.5]; p = [1, 2] - 0.5 * d
    ** = [0.625, 2.75] */
    h.nesterov = true;
    p = mk(TD_DTYPE_F64, S2, 1, (double[]){1, 2});
    step(TD_OPTIM_SGD, &h, p, g, st);
    expect_values(p, TD_DTYPE_F64, 1, S2, (double[]){0.625, 2.75});
    release(st, p);
    /* dampening 0.5 (step 2 only: the first buf is d_p itself): buf = 0.5 * g + 0.5 * g = g;
    ** after [0.75, 2.5], p = [0.75 - 0.25, 2.5 + 0.5] = [0.5, 3] */
    h = hp();
    h.lr = 0.5;
    h.momentum = 0.5;
    h.dampening = 0.5;
    p = mk(TD_DTYPE_F64, S2, 1, (double[]){1, 2});
    step(TD_OPTIM_SGD, &h, p, g, st);
    step(TD_OPTIM_SGD, &h, p, g, st);
    expect_values(p, TD_DTYPE_F64, 1, S2, (double[]){0.5, 3});
    release(st, p);
    /* weight_decay 0.5, lr 1, no momentum (no state): d = g + 0.5 * p = [1, 0]; p = [0, 2] */
    h = hp();
    h.lr = 1;
    h.weight_decay = 0.5;
    assert_int_equal(td_optim_slots(TD_OPTIM_SGD, &h), 0);
    p = mk(TD_DTYPE_F64, S2, 1, (double[]){1, 2});
    step(TD_OPTIM_SGD, &h, p, g, st);
    expect_values(p, TD_DTYPE_F64, 1, S2, (double[]){0, 2});
    td_tensor_unref(p);
    /* maximize, lr 1: p = p + g = [1.5, 1]; float32 the same */
    h = hp();
    h.lr = 1;
    h.maximize = true;
    p = mk(TD_DTYPE_F32, S2, 1, (double[]){1, 2});
    struct td_tensor *g32 = mk(TD_DTYPE_F32, S2, 1, (double[]){0.5, -1});
    step(TD_OPTIM_SGD, &h, p, g32, st);
    expect_values(p, TD_DTYPE_F32, 1, S2, (double[]){1.5, 1});
    td_tensor_unref(p);
    td_tensor_unref(g32);
    td_tensor_unref(g);
}

/* A transposed (non-contiguous) parameter: each element meets its own gradient. */
static void test_sgd_strided(void **state)
{
    (void)state;
    struct td_tensor *st[TD_OPTIM_SLOTS] = {NULL};
    int64_t s22[] = {2, 2};
    struct td_tensor *base = mk(TD_DTYPE_F64, s22, 2, (double[]){1, 2, 3, 4});
    struct td_tensor *p = transposed(base); /* [[1, 3], [2, 4]] */
    struct td_tensor *g = mk(TD_DTYPE_F64, s22, 2, (double[]){10, 20, 30, 40});
    struct td_optim_hparams h = hp();
    h.lr = 0.5;
    /* p - 0.5 * g = [[1 - 5, 3 - 10], [2 - 15, 4 - 20]] = [[-4, -7], [-13, -16]]; the base
    ** holds the transpose: [[-4, -13], [-7, -16]] */
    step(TD_OPTIM_SGD, &h, p, g, st);
    expect_values(base, TD_DTYPE_F64, 2, s22, (double[]){-4, -13, -7, -16});
    td_tensor_unref(p);
    td_tensor_unref(base);
    td_tensor_unref(g);
}

static void test_adam(void **state)
{
    (void)state;
    struct td_tensor *st[TD_OPTIM_SLOTS] = {NULL};
    struct td_tensor *g = mk(TD_DTYPE_F64, S1, 1, (double[]){2});
    struct td_tensor *g0 = mk(TD_DTYPE_F64, S1, 1, (double[]){0});
    struct td_optim_hparams h = adam_hp();
    /* Step 1: m = 0.5 * 2 = 1; v = 0.25 * 4 = 1; bias corrections 1 - 0.5 = 0.5 and
    ** 1 - 0.75 = 0.25; step_size = 0.1 / 0.5 = 0.2; denom = sqrt(1) / sqrt(0.25) + 0 = 2;
    ** p = 1 - 0.2 * 1 / 2 = 0.9.
    ** Step 2: m = 0.5 + 0.5 * 2 = 1.5; v = 0.75 + 0.25 * 4 = 1.75; corrections 0.75 and
    ** 0.4375; denom = sqrt(1.75) / sqrt(0.4375) = sqrt(4) = 2; p = 0.9 - (0.1 / 0.75) * 1.5 / 2
    ** = 0.9 - 0.1 = 0.8. */
    struct td_tensor *p = scalar_param();
    step(TD_OPTIM_ADAM, &h, p, g, st);
    expect_p(p, 0.9);
    expect_values(st[TD_OPTIM_STEP], TD_DTYPE_F32, 0, NULL, (double[]){1});
    expect_values(st[TD_OPTIM_EXP_AVG], TD_DTYPE_F64, 1, S1, (double[]){1});
    expect_values(st[TD_OPTIM_EXP_AVG_SQ], TD_DTYPE_F64, 1, S1, (double[]){1});
    assert_null(st[TD_OPTIM_MAX_EXP_AVG_SQ]);
    step(TD_OPTIM_ADAM, &h, p, g, st);
    expect_p(p, 0.8);
    expect_values(st[TD_OPTIM_STEP], TD_DTYPE_F32, 0, NULL, (double[]){2});
    release(st, p);
    /* amsgrad: step 1 as above (max_exp_avg_sq = max(0, 1) = 1); step 2 with g = 0: m = 0.5,
    ** v = 0.75, max stays 1; denom = 1 / sqrt(0.4375); p = 0.9 - (0.1 / 0.75) * 0.5 *
    ** sqrt(0.4375) */
    h.amsgrad = true;
    p = scalar_param();
    step(TD_OPTIM_ADAM, &h, p, g, st);
    step(TD_OPTIM_ADAM, &h, p, g0, st);
    expect_p(p, 0.9 - (0.1 / 0.75) * 0.5 * sqrt(0.4375));
    expect_values(st[TD_OPTIM_MAX_EXP_AVG_SQ], TD_DTYPE_F64, 1, S1, (double[]){1});
    release(st, p);
    /* weight_decay 0.5 (Adam: L2 in the gradient): d = 2 + 0.5 * 1 = 2.5; the first step
    ** still moves by lr: m = 1.25, v = 1.5625, denom = 1.25 / 0.5 = 2.5, p = 1 - 0.2 * 0.5
    ** = 0.9 */
    h = adam_hp();
    h.weight_decay = 0.5;
    p = scalar_param();
    step(TD_OPTIM_ADAM, &h, p, g, st);
    expect_p(p, 0.9);
    expect_values(st[TD_OPTIM_EXP_AVG], TD_DTYPE_F64, 1, S1, (double[]){1.25});
    release(st, p);
    /* AdamW, weight_decay 0.5: p = 1 * (1 - 0.1 * 0.5) = 0.95 first, then the Adam step of
    ** -0.1: 0.85 */
    p = scalar_param();
    step(TD_OPTIM_ADAMW, &h, p, g, st);
    expect_p(p, 0.85);
    expect_values(st[TD_OPTIM_EXP_AVG], TD_DTYPE_F64, 1, S1, (double[]){1});
    release(st, p);
    /* maximize: the step goes up by lr: 1.1 */
    h = adam_hp();
    h.maximize = true;
    p = mk(TD_DTYPE_F32, S1, 1, (double[]){1});
    struct td_tensor *g32 = mk(TD_DTYPE_F32, S1, 1, (double[]){2});
    step(TD_OPTIM_ADAM, &h, p, g32, st);
    expect_near(p, (double[]){1.1}, 1, 1e-7);
    release(st, p);
    td_tensor_unref(g32);
    td_tensor_unref(g);
    td_tensor_unref(g0);
}

static void test_rmsprop(void **state)
{
    (void)state;
    struct td_tensor *st[TD_OPTIM_SLOTS] = {NULL};
    struct td_tensor *g = mk(TD_DTYPE_F64, S1, 1, (double[]){2});
    struct td_optim_hparams h = hp();
    h.lr = 0.1;
    h.alpha = 0.75;
    /* square_avg = 0.25 * 4 = 1; avg = sqrt(1) + 0 = 1; p = 1 - 0.1 * 2 / 1 = 0.8 */
    struct td_tensor *p = scalar_param();
    step(TD_OPTIM_RMSPROP, &h, p, g, st);
    expect_p(p, 0.8);
    expect_values(st[TD_OPTIM_SQUARE_AVG], TD_DTYPE_F64, 1, S1, (double[]){1});
    release(st, p);
    /* centered: grad_avg = 0.25 * 2 = 0.5; avg = sqrt(1 - 0.5^2) = sqrt(0.75);
    ** p = 1 - 0.2 / sqrt(0.75) */
    h.centered = true;
    p = scalar_param();
    step(TD_OPTIM_RMSPROP, &h, p, g, st);
    expect_p(p, 1 - 0.2 / sqrt(0.75));
    expect_values(st[TD_OPTIM_GRAD_AVG], TD_DTYPE_F64, 1, S1, (double[]){0.5});
    release(st, p);
    /* momentum 0.5: step 1 buf = 0 + 2 / 1 = 2, p = 1 - 0.1 * 2 = 0.8; step 2: square_avg =
    ** 0.75 + 1 = 1.75, buf = 0.5 * 2 + 2 / sqrt(1.75), p = 0.8 - 0.1 * buf */
    h.centered = false;
    h.momentum = 0.5;
    p = scalar_param();
    step(TD_OPTIM_RMSPROP, &h, p, g, st);
    expect_p(p, 0.8);
    step(TD_OPTIM_RMSPROP, &h, p, g, st);
    expect_p(p, 0.8 - 0.1 * (1 + 2 / sqrt(1.75)));
    release(st, p);
    td_tensor_unref(g);
}

static void test_adagrad(void **state)
{
    (void)state;
    struct td_tensor *st[TD_OPTIM_SLOTS] = {NULL};
    struct td_tensor *g = mk(TD_DTYPE_F64, S1, 1, (double[]){2});
    struct td_optim_hparams h = hp();
    h.lr = 0.5;
    h.lr_decay = 1;
    h.initial_accumulator_value = 0.25;
    /* the new sum holds initial_accumulator_value */
    struct td_tensor *p = scalar_param();
    struct td_err err;
    assert_int_equal(td_optim_state_new(TD_OPTIM_SUM, &h, p, NULL, &st[TD_OPTIM_SUM], &err), 0);
    expect_values(st[TD_OPTIM_SUM], TD_DTYPE_F64, 1, S1, (double[]){0.25});
    /* step 1: clr = 0.5 / (1 + 0 * 1) = 0.5; sum = 0.25 + 4 = 4.25; p = 1 - 0.5 * 2 /
    ** sqrt(4.25). Step 2: clr = 0.5 / 2 = 0.25; sum = 8.25; p -= 0.25 * 2 / sqrt(8.25). */
    step(TD_OPTIM_ADAGRAD, &h, p, g, st);
    double want = 1 - 1 / sqrt(4.25);
    expect_p(p, want);
    step(TD_OPTIM_ADAGRAD, &h, p, g, st);
    want -= 0.5 / sqrt(8.25);
    expect_p(p, want);
    expect_values(st[TD_OPTIM_STEP], TD_DTYPE_F32, 0, NULL, (double[]){2});
    expect_values(st[TD_OPTIM_SUM], TD_DTYPE_F64, 1, S1, (double[]){8.25});
    release(st, p);
    td_tensor_unref(g);
}

/* torch's constructor checks, torch's words. */
static void test_checks(void **state)
{
    (void)state;
    struct td_err err;
    struct td_optim_hparams h = hp();
    h.lr = -1;
    assert_int_equal(td_optim_check(TD_OPTIM_SGD, &h, &err), TD_EINVAL);
    assert_string_equal(err.msg, "Invalid learning rate: -1.0");
    h.lr = NAN; /* SGD tests lr < 0.0: a NaN passes; Adam's `not 0.0 <= lr` refuses it */
    assert_int_equal(td_optim_check(TD_OPTIM_SGD, &h, &err), 0);
    assert_int_equal(td_optim_check(TD_OPTIM_ADAM, &h, &err), TD_EINVAL);
    assert_string_equal(err.msg, "Invalid learning rate: nan");
    h = hp();
    h.lr = 0.1;
    h.nesterov = true;
    assert_int_equal(td_optim_check(TD_OPTIM_SGD, &h, &err), TD_EINVAL);
    assert_string_equal(err.msg, "Nesterov momentum requires a momentum and zero dampening");
    h.nesterov = false;
    h.beta1 = 1.0;
    assert_int_equal(td_optim_check(TD_OPTIM_ADAMW, &h, &err), TD_EINVAL);
    assert_string_equal(err.msg, "Invalid beta parameter at index 0: 1.0");
    h.beta1 = 0.9;
    h.beta2 = -0.5;
    assert_int_equal(td_optim_check(TD_OPTIM_ADAM, &h, &err), TD_EINVAL);
    assert_string_equal(err.msg, "Invalid beta parameter at index 1: -0.5");
    h.beta2 = 0.999;
    h.eps = -1e-05;
    assert_int_equal(td_optim_check(TD_OPTIM_ADAM, &h, &err), TD_EINVAL);
    assert_string_equal(err.msg, "Invalid epsilon value: -1e-05");
    h.eps = 0;
    h.alpha = -0.25;
    assert_int_equal(td_optim_check(TD_OPTIM_RMSPROP, &h, &err), TD_EINVAL);
    assert_string_equal(err.msg, "Invalid alpha value: -0.25");
    h.alpha = 0;
    h.initial_accumulator_value = -2;
    assert_int_equal(td_optim_check(TD_OPTIM_ADAGRAD, &h, &err), TD_EINVAL);
    assert_string_equal(err.msg, "Invalid initial_accumulator_value value: -2.0");
    assert_int_equal(td_optim_check(TD_OPTIM_ALGOS, &h, &err), TD_EINVAL);
}

/* Parameters and states that cannot be stepped are refused, naming what is wrong. */
static void test_state_checks(void **state)
{
    (void)state;
    struct td_err err;
    int64_t s3[] = {3};
    struct td_tensor *p = mk(TD_DTYPE_F32, S2, 1, (double[]){1, 2});
    struct td_tensor *i = mk(TD_DTYPE_I64, S2, 1, (double[]){1, 2});
    struct td_tensor *d = mk(TD_DTYPE_F64, S2, 1, (double[]){1, 2});
    struct td_tensor *l3 = mk(TD_DTYPE_F32, s3, 1, (double[]){1, 2, 3});
    struct td_tensor *one = mk(TD_DTYPE_F32, NULL, 0, (double[]){0});
    assert_int_equal(td_optim_check_param(p, "parameter 1", &err), 0);
    assert_int_equal(td_optim_check_param(i, "parameter 1", &err), TD_EDTYPE);
    assert_int_equal(td_optim_check_state(TD_OPTIM_EXP_AVG, p, p, "handle 2", &err), 0);
    assert_int_equal(td_optim_check_state(TD_OPTIM_EXP_AVG, p, d, "handle 2", &err), TD_EDTYPE);
    assert_string_equal(err.msg, "handle 2 (state 'exp_avg') is float64, but its parameter is "
                                 "float32");
    assert_int_equal(td_optim_check_state(TD_OPTIM_SUM, p, l3, "handle 2", &err), TD_ESHAPE);
    assert_string_equal(err.msg, "handle 2 (state 'sum') has shape [3], but its parameter has "
                                 "shape [2]");
    assert_int_equal(td_optim_check_state(TD_OPTIM_STEP, p, one, "handle 2", &err), 0);
    assert_int_equal(td_optim_check_state(TD_OPTIM_STEP, p, l3, "handle 2", &err), TD_EINVAL);
    /* an expanded view would be written several times per element */
    struct td_tensor *x = mk(TD_DTYPE_F32, S1, 1, (double[]){1});
    x->shape[0] = 4;
    x->strides[0] = 0;
    x->numel = 4;
    assert_int_equal(td_optim_check_param(x, "parameter 1", &err), TD_EINVAL);
    x->shape[0] = 1;
    x->numel = 1;
    td_tensor_unref(x);
    td_tensor_unref(p);
    td_tensor_unref(i);
    td_tensor_unref(d);
    td_tensor_unref(l3);
    td_tensor_unref(one);
}

static void test_clip(void **state)
{
    (void)state;
    struct td_err err;
    struct td_tensor *a = mk(TD_DTYPE_F64, S2, 1, (double[]){3, 4});
    struct td_tensor *b = mk(TD_DTYPE_F64, S1, 1, (double[]){-12});
    double n;
    /* norms of [3, 4]: 2-norm 5, 1-norm 7, inf-norm 4, 0-norm 2 (nonzero count), 3-norm
    ** (27 + 64)^(1/3) */
    assert_int_equal(td_optim_norm(a, 2, &n, &err), 0);
    assert_true(n == 5);
    assert_int_equal(td_optim_norm(a, 1, &n, &err), 0);
    assert_true(n == 7);
    assert_int_equal(td_optim_norm(a, INFINITY, &n, &err), 0);
    assert_true(n == 4);
    assert_int_equal(td_optim_norm(a, -INFINITY, &n, &err), 0);
    assert_true(n == 3);
    assert_int_equal(td_optim_norm(a, 0, &n, &err), 0);
    assert_true(n == 2);
    assert_int_equal(td_optim_norm(a, 3, &n, &err), 0);
    assert_true(fabs(n - cbrt(91)) < 1e-12);
    /* clip_grad_norm_: total = norm([5, 12]) = 13; coef = 6.5 / (13 + 1e-6), ~0.5 */
    struct td_tensor *g[] = {a, b};
    double total;
    bool f32;
    assert_int_equal(td_optim_clip_grad_norm(g, 2, 6.5, 2, false, &total, &f32, &err), 0);
    assert_true(total == 13);
    assert_false(f32);
    double c = 6.5 / (13 + 1e-6);
    expect_near(a, (double[]){3 * c, 4 * c}, 2, 1e-15);
    expect_near(b, (double[]){-12 * c}, 1, 1e-15);
    /* a coef above 1 is clamped to 1: nothing changes */
    assert_int_equal(td_optim_clip_grad_norm(g, 2, 100, 2, false, &total, &f32, &err), 0);
    expect_near(b, (double[]){-12 * c}, 1, 1e-15);
    /* clip_grad_value_: clamp to [-1, 1] */
    assert_int_equal(td_optim_clamp(b, -1, 1, &err), 0);
    expect_values(b, TD_DTYPE_F64, 1, S1, (double[]){-1});
    /* a non-finite total, with error_if_nonfinite: refused before anything is written */
    struct td_tensor *inf = mk(TD_DTYPE_F32, S1, 1, (double[]){INFINITY});
    struct td_tensor *h[] = {inf};
    assert_int_equal(td_optim_clip_grad_norm(h, 1, 1, 2, true, &total, &f32, &err), TD_EINVAL);
    assert_string_equal(err.msg, "The total norm of order 2.0 for gradients from `parameters` is "
                                 "non-finite, so it cannot be clipped. To disable this error and "
                                 "scale the gradients by the non-finite norm anyway, set "
                                 "`error_if_nonfinite=False`");
    assert_true(isinf(at(inf, 0)));
    td_tensor_unref(inf);
    td_tensor_unref(a);
    td_tensor_unref(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgd),          cmocka_unit_test(test_sgd_strided),
        cmocka_unit_test(test_adam),         cmocka_unit_test(test_rmsprop),
        cmocka_unit_test(test_adagrad),      cmocka_unit_test(test_checks),
        cmocka_unit_test(test_state_checks), cmocka_unit_test(test_clip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
