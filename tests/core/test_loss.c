/* tests/core/test_loss.c — the nn losses and activations (ops/loss.c) through td_op_apply:
** values worked out by hand in the comments, torch's error texts, a hand-derived gradient, and
** the cost rules on operands no rule may trust. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/autograd.h"
#include "helpers.h"

/* op on up to 4 tensors (NULL ends the list), with args. */
static struct td_tensor *run(enum td_op_id op, struct td_op_args *args, struct td_err *err, int *rc,
                             struct td_tensor *a, struct td_tensor *b, struct td_tensor *c,
                             struct td_tensor *d)
{
    struct td_tensor *ts[4] = {a, b, c, d};
    struct td_operand in[4];
    int n = 0;
    while (n < 4 && ts[n] != NULL) {
        in[n] = tens(ts[n]);
        n++;
    }
    struct td_tensor *out = NULL;
    *rc = td_op_apply(op, in, n, args, false, NULL, &out, err);
    return out;
}

/* t has dtype dt, n elements, each within 1e-12 of v. */
static void expect_near(struct td_tensor *t, enum td_dtype dt, int64_t n, const double *v)
{
    assert_non_null(t);
    assert_int_equal(t->dtype, dt);
    assert_int_equal(t->numel, n);
    for (int64_t i = 0; i < n; i++) {
        if (!(fabs(at(t, i) - v[i]) <= 1e-12 * (1 + fabs(v[i])))) {
            fail_msg("element %lld: got %.17g, want %.17g", (long long)i, at(t, i), v[i]);
        }
    }
    td_tensor_unref(t);
}

static struct td_op_args red(int reduction)
{
    struct td_op_args a;
    td_op_args_init(&a);
    a.reduction = reduction;
    return a;
}

static void test_nll_loss(void **state)
{
    (void)state;
    int64_t s23[] = {2, 3}, s2[] = {2}, s3[] = {3};
    struct td_tensor *x = mk(TD_DTYPE_F64, s23, 2, (double[]){-1, -2, -3, -4, -5, -6});
    struct td_tensor *t = mk(TD_DTYPE_I64, s2, 1, (double[]){2, 0});
    struct td_tensor *w = mk(TD_DTYPE_F64, s3, 1, (double[]){1, 2, 0.5});
    struct td_err err;
    int rc;
    struct td_op_args a = red(TD_REDUCTION_MEAN);
    /* picked -x[0][2] = 3, -x[1][0] = 4: mean 3.5, sum 7, none [3, 4] */
    expect_near(run(TD_OP_NLL_LOSS, &a, &err, &rc, x, t, NULL, NULL), TD_DTYPE_F64, 1,
                (double[]){3.5});
    a = red(TD_REDUCTION_SUM);
    expect_near(run(TD_OP_NLL_LOSS, &a, &err, &rc, x, t, NULL, NULL), TD_DTYPE_F64, 1,
                (double[]){7});
    a = red(TD_REDUCTION_NONE);
    expect_near(run(TD_OP_NLL_LOSS, &a, &err, &rc, x, t, NULL, NULL), TD_DTYPE_F64, 2,
                (double[]){3, 4});
    /* weighted mean: (0.5 * 3 + 1 * 4) / (0.5 + 1) = 11 / 3 */
    a = red(TD_REDUCTION_MEAN);
    expect_near(run(TD_OP_NLL_LOSS, &a, &err, &rc, x, t, w, NULL), TD_DTYPE_F64, 1,
                (double[]){11.0 / 3.0});
    /* ignore_index 0 drops the second row: 3 / 1 */
    a.ignore_index = 0;
    expect_near(run(TD_OP_NLL_LOSS, &a, &err, &rc, x, t, NULL, NULL), TD_DTYPE_F64, 1,
                (double[]){3});
    /* every row ignored: 0 / 0 */
    struct td_tensor *ti = mk(TD_DTYPE_I64, s2, 1, (double[]){0, 0});
    struct td_tensor *r = run(TD_OP_NLL_LOSS, &a, &err, &rc, x, ti, NULL, NULL);
    assert_int_equal(rc, 0);
    assert_true(isnan(at(r, 0)));
    td_tensor_unref(r);
    /* a transposed (strided) input: x.t() is [3, 2]; rows [-1, -4], [-2, -5], [-3, -6] */
    struct td_tensor *xt = transposed(x);
    struct td_tensor *t3 = mk(TD_DTYPE_I64, s3, 1, (double[]){1, 0, 1});
    a = red(TD_REDUCTION_SUM);
    /* 4 + 2 + 6 */
    expect_near(run(TD_OP_NLL_LOSS, &a, &err, &rc, xt, t3, NULL, NULL), TD_DTYPE_F64, 1,
                (double[]){12});
    /* torch's errors */
    struct td_tensor *tb = mk(TD_DTYPE_I64, s2, 1, (double[]){3, 0});
    assert_null(run(TD_OP_NLL_LOSS, &a, &err, &rc, x, tb, NULL, NULL));
    assert_string_equal(err.msg, "Target 3 is out of bounds.");
    assert_null(run(TD_OP_NLL_LOSS, &a, &err, &rc, x, t3, NULL, NULL));
    assert_string_equal(err.msg, "Expected input batch_size (2) to match target batch_size (3).");
    struct td_tensor *w2 = mk(TD_DTYPE_F64, s2, 1, (double[]){1, 1});
    assert_null(run(TD_OP_NLL_LOSS, &a, &err, &rc, x, t, w2, NULL));
    assert_string_equal(err.msg, "weight tensor should be defined either for all 3 classes or no "
                                 "classes but got weight tensor of shape: [2]");
    struct td_tensor *tf = mk(TD_DTYPE_F32, s2, 1, (double[]){1, 0});
    assert_null(run(TD_OP_NLL_LOSS, &a, &err, &rc, x, tf, NULL, NULL));
    assert_string_equal(err.msg, "expected scalar type Long but found Float");
    td_tensor_unref(x);
    td_tensor_unref(xt);
    td_tensor_unref(t);
    td_tensor_unref(ti);
    td_tensor_unref(t3);
    td_tensor_unref(tb);
    td_tensor_unref(tf);
    td_tensor_unref(w);
    td_tensor_unref(w2);
}

static void test_cross_entropy(void **state)
{
    (void)state;
    int64_t s23[] = {2, 3}, s2[] = {2};
    const double ln3 = log(3.0);
    struct td_tensor *x = mk(TD_DTYPE_F32, s23, 2, (double[]){0, 0, 0, 0, 0, 0});
    struct td_tensor *t = mk(TD_DTYPE_I64, s2, 1, (double[]){1, 2});
    struct td_err err;
    int rc;
    /* equal logits: every log-probability is -ln 3, so the loss is ln 3 (as float32) */
    struct td_op_args a = red(TD_REDUCTION_MEAN);
    expect_near(run(TD_OP_CROSS_ENTROPY, &a, &err, &rc, x, t, NULL, NULL), TD_DTYPE_F32, 1,
                (double[]){(float)ln3});
    /* label smoothing 0.3: 0.7 ln 3 + 0.3 / 3 * (3 ln 3) = ln 3 again */
    a.label_smoothing = 0.3;
    expect_near(run(TD_OP_CROSS_ENTROPY, &a, &err, &rc, x, t, NULL, NULL), TD_DTYPE_F32, 1,
                (double[]){(float)ln3});
    a.label_smoothing = 1.5;
    assert_null(run(TD_OP_CROSS_ENTROPY, &a, &err, &rc, x, t, NULL, NULL));
    assert_string_equal(err.msg, "label_smoothing must be between 0.0 and 1.0. Got: 1.5");
    /* class probabilities (a float64 target promotes): each row's probabilities sum to 1, so
    ** each row's loss is ln 3; "sum" gives 2 ln 3 */
    struct td_tensor *p = mk(TD_DTYPE_F64, s23, 2, (double[]){0.5, 0.5, 0, 1, 0, 0});
    a = red(TD_REDUCTION_SUM);
    expect_near(run(TD_OP_CROSS_ENTROPY, &a, &err, &rc, x, p, NULL, NULL), TD_DTYPE_F64, 1,
                (double[]){(float)ln3 * 2.0});
    a = red(TD_REDUCTION_MEAN);
    a.ignore_index = 0;
    assert_null(run(TD_OP_CROSS_ENTROPY, &a, &err, &rc, x, p, NULL, NULL));
    assert_string_equal(err.msg, "ignore_index is not supported for floating point target");
    /* the gradient of the mean: (softmax - onehot) / 2 = row 0 [1/6, -1/3, 1/6],
    ** row 1 [1/6, 1/6, -1/3] */
    struct td_tensor *xg = mk(TD_DTYPE_F64, s23, 2, (double[]){0, 0, 0, 0, 0, 0});
    xg->requires_grad = true;
    a = red(TD_REDUCTION_MEAN);
    a.grad_enabled = true;
    struct td_tensor *l = run(TD_OP_CROSS_ENTROPY, &a, &err, &rc, xg, t, NULL, NULL);
    assert_int_equal(rc, 0);
    assert_string_equal(td_node_name(l->grad_fn), "NllLossBackward0");
    assert_int_equal(td_autograd_backward(l, NULL, false, NULL, &err), 0);
    expect_near(td_tensor_ref(xg->grad), TD_DTYPE_F64, 6,
                (double[]){1.0 / 6, -1.0 / 3, 1.0 / 6, 1.0 / 6, 1.0 / 6, -1.0 / 3});
    td_tensor_unref(l);
    td_tensor_unref(xg);
    td_tensor_unref(x);
    td_tensor_unref(t);
    td_tensor_unref(p);
}

static void test_pointwise_losses(void **state)
{
    (void)state;
    int64_t s3[] = {3}, s2[] = {2};
    struct td_tensor *x = mk(TD_DTYPE_F64, s3, 1, (double[]){0, 0.5, 3});
    struct td_tensor *z = mk(TD_DTYPE_F64, s3, 1, (double[]){0, 0, 0});
    struct td_err err;
    int rc;
    /* mse: 0 + 0.25 + 9 = 9.25, mean 9.25 / 3 */
    struct td_op_args a = red(TD_REDUCTION_SUM);
    expect_near(run(TD_OP_MSE_LOSS, &a, &err, &rc, x, z, NULL, NULL), TD_DTYPE_F64, 1,
                (double[]){9.25});
    a = red(TD_REDUCTION_MEAN);
    expect_near(run(TD_OP_MSE_LOSS, &a, &err, &rc, x, z, NULL, NULL), TD_DTYPE_F64, 1,
                (double[]){9.25 / 3});
    /* smooth_l1 (beta 1): 0, 0.5 * 0.25 = 0.125, 3 - 0.5 = 2.5 */
    a = red(TD_REDUCTION_NONE);
    expect_near(run(TD_OP_SMOOTH_L1_LOSS, &a, &err, &rc, x, z, NULL, NULL), TD_DTYPE_F64, 3,
                (double[]){0, 0.125, 2.5});
    /* huber (delta 2): 0, 0.125, 2 * (3 - 1) = 4 */
    a.has_beta = true;
    a.beta = td_scalar_f(2.0);
    expect_near(run(TD_OP_HUBER_LOSS, &a, &err, &rc, x, z, NULL, NULL), TD_DTYPE_F64, 3,
                (double[]){0, 0.125, 4});
    a.beta = td_scalar_f(-1.0);
    assert_null(run(TD_OP_SMOOTH_L1_LOSS, &a, &err, &rc, x, z, NULL, NULL));
    assert_string_equal(err.msg, "smooth_l1_loss does not support negative values for beta.");
    /* binary cross entropy at 0.5: ln 2 whatever the target */
    struct td_tensor *h = mk(TD_DTYPE_F64, s2, 1, (double[]){0.5, 0.5});
    struct td_tensor *y = mk(TD_DTYPE_F64, s2, 1, (double[]){1, 0});
    a = red(TD_REDUCTION_MEAN);
    expect_near(run(TD_OP_BINARY_CROSS_ENTROPY, &a, &err, &rc, h, y, NULL, NULL), TD_DTYPE_F64, 1,
                (double[]){log(2.0)});
    assert_null(run(TD_OP_BINARY_CROSS_ENTROPY, &a, &err, &rc, x, z, NULL, NULL));
    assert_string_equal(err.msg, "all elements of input should be between 0 and 1");
    /* with logits at 0: ln 2 each; pos_weight 3 triples the positive term: (3 ln 2 + ln 2) / 2 */
    struct td_tensor *l0 = mk(TD_DTYPE_F64, s2, 1, (double[]){0, 0});
    struct td_tensor *one = mk(TD_DTYPE_F64, s2, 1, (double[]){1, 1});
    struct td_tensor *pw = mk(TD_DTYPE_F64, s2, 1, (double[]){3, 3});
    expect_near(run(TD_OP_BINARY_CROSS_ENTROPY_WITH_LOGITS, &a, &err, &rc, l0, y, NULL, NULL),
                TD_DTYPE_F64, 1, (double[]){log(2.0)});
    expect_near(run(TD_OP_BINARY_CROSS_ENTROPY_WITH_LOGITS, &a, &err, &rc, l0, y, one, pw),
                TD_DTYPE_F64, 1, (double[]){2 * log(2.0)});
    td_tensor_unref(x);
    td_tensor_unref(z);
    td_tensor_unref(h);
    td_tensor_unref(y);
    td_tensor_unref(l0);
    td_tensor_unref(one);
    td_tensor_unref(pw);
}

static void test_activations(void **state)
{
    (void)state;
    int64_t s3[] = {3};
    const double ln2 = log(2.0);
    struct td_tensor *x = mk(TD_DTYPE_F64, s3, 1, (double[]){-2, 0, 3});
    struct td_err err;
    int rc;
    struct td_op_args a;
    td_op_args_init(&a);
    /* leaky_relu, slope 0.5: -1, 0, 3 */
    a.has_value = true;
    a.value = td_scalar_f(0.5);
    expect_near(run(TD_OP_LEAKY_RELU, &a, &err, &rc, x, NULL, NULL, NULL), TD_DTYPE_F64, 3,
                (double[]){-1, 0, 3});
    /* hardtanh [-1, 1]: -1, 0, 1 */
    td_op_args_init(&a);
    expect_near(run(TD_OP_HARDTANH, &a, &err, &rc, x, NULL, NULL, NULL), TD_DTYPE_F64, 3,
                (double[]){-1, 0, 1});
    /* elu at -ln 2: exp(-ln 2) - 1 = -0.5 */
    struct td_tensor *e = mk(TD_DTYPE_F64, s3, 1, (double[]){-ln2, 0, 1});
    expect_near(run(TD_OP_ELU, &a, &err, &rc, e, NULL, NULL, NULL), TD_DTYPE_F64, 3,
                (double[]){-0.5, 0, 1});
    /* silu(x) = x sigmoid(x): silu(0) = 0, silu(ln 2) = ln 2 * 2/3 */
    struct td_tensor *s = mk(TD_DTYPE_F64, s3, 1, (double[]){0, ln2, -ln2});
    expect_near(run(TD_OP_SILU, &a, &err, &rc, s, NULL, NULL, NULL), TD_DTYPE_F64, 3,
                (double[]){0, ln2 * 2 / 3, -ln2 / 3});
    /* softplus(0) = ln 2; logsigmoid(0) = -ln 2; logsigmoid(ln 2) = ln(2/3) */
    expect_near(run(TD_OP_SOFTPLUS, &a, &err, &rc, s, NULL, NULL, NULL), TD_DTYPE_F64, 3,
                (double[]){ln2, log(3.0), log(1.5)});
    expect_near(run(TD_OP_LOGSIGMOID, &a, &err, &rc, s, NULL, NULL, NULL), TD_DTYPE_F64, 3,
                (double[]){-ln2, log(2.0 / 3), log(1.0 / 3)});
    /* softplus with beta 2, threshold 1: 2 * 3 > 1 is linear (3); at 0, ln 2 / 2 */
    a.has_beta = true;
    a.beta = td_scalar_f(2.0);
    a.has_value = true;
    a.value = td_scalar_f(1.0);
    expect_near(run(TD_OP_SOFTPLUS, &a, &err, &rc, x, NULL, NULL, NULL), TD_DTYPE_F64, 3,
                (double[]){log1p(exp(-4.0)) / 2, ln2 / 2, 3});
    /* integers are refused as torch refuses them */
    struct td_tensor *i = mk(TD_DTYPE_I64, s3, 1, (double[]){1, 2, 3});
    td_op_args_init(&a);
    assert_null(run(TD_OP_SILU, &a, &err, &rc, i, NULL, NULL, NULL));
    assert_string_equal(err.msg, "\"silu_cpu\" not implemented for 'Long'");
    /* in place: leaky_relu_ writes x */
    struct td_tensor *y = mk(TD_DTYPE_F32, s3, 1, (double[]){-2, 0, 3});
    struct td_operand in = tens(y);
    struct td_tensor *out = NULL;
    assert_int_equal(td_op_apply(TD_OP_LEAKY_RELU, &in, 1, &a, true, NULL, &out, &err), 0);
    assert_ptr_equal(out, y);
    td_tensor_unref(out);
    expect_near(td_tensor_ref(y), TD_DTYPE_F32, 3, (double[]){(float)-0.02, 0, 3});
    td_tensor_unref(y);
    td_tensor_unref(i);
    td_tensor_unref(x);
    td_tensor_unref(e);
    td_tensor_unref(s);
}

/* Cost rules run before validation: numbers where tensors go are refused, logical sizes count. */
static void test_costs(void **state)
{
    (void)state;
    struct td_operand nums[2] = {{.t = NULL, .s = td_scalar_f(1)}, {.t = NULL}};
    struct td_cost c;
    struct td_err err;
    struct td_op_args a;
    td_op_args_init(&a);
    assert_int_not_equal(td_op_cost(TD_OP_NLL_LOSS, nums, 2, &a, &c, &err), 0);
    assert_int_not_equal(td_op_cost(TD_OP_SMOOTH_L1_LOSS, nums, 2, &a, &c, &err), 0);
    assert_int_not_equal(td_op_cost(TD_OP_SILU, nums, 1, &a, &c, &err), 0);
    /* an expanded [2^40, 3] view costs 2^40 * 3 elements, however few bytes back it */
    int64_t s3[] = {3};
    struct td_tensor *x = mk(TD_DTYPE_F32, s3, 1, (double[]){1, 2, 3});
    struct td_tensor v = *x;
    v.ndim = 2;
    v.shape[0] = (int64_t)1 << 40;
    v.shape[1] = 3;
    v.strides[0] = 0;
    v.strides[1] = 1;
    v.numel = v.shape[0] * 3;
    struct td_operand in[2] = {{.t = &v}, {.t = &v}};
    assert_int_equal(td_op_cost(TD_OP_SILU, in, 1, &a, &c, &err), 0);
    assert_true(c.read >= v.numel);
    assert_int_equal(td_op_cost(TD_OP_HUBER_LOSS, in, 2, &a, &c, &err), 0);
    assert_true(c.read >= v.numel);
    td_tensor_unref(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nll_loss),
        cmocka_unit_test(test_cross_entropy),
        cmocka_unit_test(test_pointwise_losses),
        cmocka_unit_test(test_activations),
        cmocka_unit_test(test_costs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
