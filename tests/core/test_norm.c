/* tests/core/test_norm.c — layer_norm, batch_norm, embedding, one_hot and pad through
** td_op_apply: values (every expected value worked out by hand in the comments, with inputs
** chosen so float64 gives them exactly), torch's error texts, batch_norm's in-place running
** statistics, embedding's padding_idx gradient, and the cost rules on absurd sizes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/autograd.h"
#include "helpers.h"

static struct td_tensor *runv(enum td_op_id op, struct td_tensor **ts, int n,
                              struct td_op_args *args, struct td_err *err, int *rc)
{
    struct td_operand in[6];
    for (int i = 0; i < n; i++) {
        in[i] = tens(ts[i]);
    }
    struct td_tensor *out = NULL;
    *rc = td_op_apply(op, in, n, args, false, NULL, &out, err);
    return out;
}

static void test_layer_norm(void **state)
{
    (void)state;
    int64_t s22[] = {2, 2}, s2[] = {2};
    /* rows [1, 3] (mean 2, var 1) and [0, 4] (mean 2, var 4): both normalise to [-1, 1] */
    struct td_tensor *x = mk(TD_DTYPE_F64, s22, 2, (double[]){1, 3, 0, 4});
    struct td_tensor *w = mk(TD_DTYPE_F64, s2, 1, (double[]){2, 0.5});
    struct td_tensor *b = mk(TD_DTYPE_F64, s2, 1, (double[]){1, 1});
    struct td_op_args a;
    td_op_args_init(&a);
    a.dims[0] = 2;
    a.ndims = 1;
    a.has_dims = true;
    struct td_err err;
    int rc;
    struct td_tensor *r = runv(TD_OP_LAYER_NORM, &x, 1, &a, &err, &rc);
    assert_int_equal(rc, 0);
    expect_values(r, TD_DTYPE_F64, 2, s22, (double[]){-1, 1, -1, 1});
    td_tensor_unref(r);
    /* * [2, 0.5] + [1, 1] = [-1, 1.5] per row */
    r = runv(TD_OP_LAYER_NORM, (struct td_tensor *[]){x, w, b}, 3, &a, &err, &rc);
    assert_int_equal(rc, 0);
    expect_values(r, TD_DTYPE_F64, 2, s22, (double[]){-1, 1.5, -1, 1.5});
    td_tensor_unref(r);
    /* bias alone (weight absent: bit 0): [-1, 1] + 1 = [0, 2] */
    a.absent = 1;
    r = runv(TD_OP_LAYER_NORM, (struct td_tensor *[]){x, b}, 2, &a, &err, &rc);
    assert_int_equal(rc, 0);
    expect_values(r, TD_DTYPE_F64, 2, s22, (double[]){0, 2, 0, 2});
    td_tensor_unref(r);
    a.absent = 0;
    /* torch's errors */
    a.dims[0] = 3;
    assert_null(runv(TD_OP_LAYER_NORM, &x, 1, &a, &err, &rc));
    assert_string_equal(err.msg, "Given normalized_shape=[3], expected input with shape [*, 3], "
                                 "but got input of size[2, 2]");
    a.ndims = 0;
    assert_null(runv(TD_OP_LAYER_NORM, &x, 1, &a, &err, &rc));
    assert_string_equal(err.msg, "Expected normalized_shape to be at least 1-dimensional, i.e., "
                                 "containing at least one element, but got normalized_shape = []");
    a.dims[0] = 2;
    a.ndims = 1;
    struct td_tensor *w3 = mk(TD_DTYPE_F64, (int64_t[]){3}, 1, (double[]){1, 1, 1});
    assert_null(runv(TD_OP_LAYER_NORM, (struct td_tensor *[]){x, w3}, 2, &a, &err, &rc));
    assert_string_equal(err.msg, "Expected weight to be of same shape as normalized_shape, but "
                                 "got weight of shape [3] and normalized_shape = [2]");
    struct td_tensor *xi = mk(TD_DTYPE_I64, s22, 2, (double[]){1, 3, 0, 4});
    assert_null(runv(TD_OP_LAYER_NORM, &xi, 1, &a, &err, &rc));
    assert_string_equal(err.msg, "\"LayerNormKernelImpl\" not implemented for 'Long'");
    /* more operands than the absent bits leave room for */
    a.absent = 3;
    assert_null(runv(TD_OP_LAYER_NORM, (struct td_tensor *[]){x, w}, 2, &a, &err, &rc));
    td_tensor_unref(x);
    td_tensor_unref(w);
    td_tensor_unref(b);
    td_tensor_unref(w3);
    td_tensor_unref(xi);
}

static void test_batch_norm(void **state)
{
    (void)state;
    int64_t s22[] = {2, 2}, s2[] = {2};
    struct td_op_args a;
    td_op_args_init(&a);
    struct td_err err;
    int rc;
    /* evaluation: (x - [1, 2]) / sqrt([4, 1]) over [[1, 2], [3, 4]] = [[0, 0], [1, 2]] */
    struct td_tensor *x = mk(TD_DTYPE_F64, s22, 2, (double[]){1, 2, 3, 4});
    struct td_tensor *rm = mk(TD_DTYPE_F64, s2, 1, (double[]){1, 2});
    struct td_tensor *rv = mk(TD_DTYPE_F64, s2, 1, (double[]){4, 1});
    struct td_tensor *r = runv(TD_OP_BATCH_NORM, (struct td_tensor *[]){x, rm, rv}, 3, &a, &err,
                               &rc);
    assert_int_equal(rc, 0);
    expect_values(r, TD_DTYPE_F64, 2, s22, (double[]){0, 0, 1, 2});
    td_tensor_unref(r);
    td_tensor_unref(x);
    /* training on [[1, 2], [3, 6]]: channel 0 is [1, 3] (mean 2, biased var 1, unbiased 2),
    ** channel 1 [2, 6] (mean 4, biased var 4, unbiased 8): both normalise to [-1, 1]. With
    ** momentum 0.5 from [0, 0] and [1, 1]: running_mean [1, 2], running_var [1.5, 4.5]. */
    x = mk(TD_DTYPE_F64, s22, 2, (double[]){1, 2, 3, 6});
    struct td_tensor *m0 = mk(TD_DTYPE_F64, s2, 1, (double[]){0, 0});
    struct td_tensor *v1 = mk(TD_DTYPE_F64, s2, 1, (double[]){1, 1});
    a.training = true;
    a.momentum = 0.5;
    r = runv(TD_OP_BATCH_NORM, (struct td_tensor *[]){x, m0, v1}, 3, &a, &err, &rc);
    assert_int_equal(rc, 0);
    expect_values(r, TD_DTYPE_F64, 2, s22, (double[]){-1, -1, 1, 1});
    expect_values(m0, TD_DTYPE_F64, 1, s2, (double[]){1, 2});
    expect_values(v1, TD_DTYPE_F64, 1, s2, (double[]){1.5, 4.5});
    td_tensor_unref(r);
    /* no running statistics (bits 0 and 1 absent), weight [2, 3]: [[-2, -3], [2, 3]] */
    struct td_tensor *w = mk(TD_DTYPE_F64, s2, 1, (double[]){2, 3});
    a.absent = 3 | 8;
    r = runv(TD_OP_BATCH_NORM, (struct td_tensor *[]){x, w}, 2, &a, &err, &rc);
    assert_int_equal(rc, 0);
    expect_values(r, TD_DTYPE_F64, 2, s22, (double[]){-2, -3, 2, 3});
    td_tensor_unref(r);
    /* torch's errors */
    a.training = false;
    assert_null(runv(TD_OP_BATCH_NORM, (struct td_tensor *[]){x, w}, 2, &a, &err, &rc));
    assert_string_equal(err.msg, "running_mean must be defined in evaluation mode");
    a.absent = 0;
    struct td_tensor *m3 = mk(TD_DTYPE_F64, (int64_t[]){3}, 1, (double[]){0, 0, 0});
    assert_null(runv(TD_OP_BATCH_NORM, (struct td_tensor *[]){x, m3, rv}, 3, &a, &err, &rc));
    assert_string_equal(err.msg, "running_mean should contain 2 elements not 3");
    struct td_tensor *one = mk(TD_DTYPE_F64, (int64_t[]){1, 2}, 2, (double[]){1, 2});
    a.training = true;
    assert_null(runv(TD_OP_BATCH_NORM, (struct td_tensor *[]){one, rm, rv}, 3, &a, &err, &rc));
    assert_string_equal(err.msg, "Expected more than 1 value per channel when training, got "
                                 "input size torch.Size([1, 2])");
    struct td_tensor *f = mk(TD_DTYPE_F32, s22, 2, (double[]){1, 2, 3, 4});
    a.training = false;
    assert_null(runv(TD_OP_BATCH_NORM, (struct td_tensor *[]){f, rm, rv}, 3, &a, &err, &rc));
    assert_string_equal(err.msg, "mixed dtype (CPU): expect parameter to have scalar type of "
                                 "Float");
    td_tensor_unref(x);
    td_tensor_unref(rm);
    td_tensor_unref(rv);
    td_tensor_unref(m0);
    td_tensor_unref(v1);
    td_tensor_unref(w);
    td_tensor_unref(m3);
    td_tensor_unref(one);
    td_tensor_unref(f);
}

static void test_embedding(void **state)
{
    (void)state;
    int64_t s32[] = {3, 2}, s2[] = {2}, s22[] = {2, 2};
    struct td_tensor *w = mk(TD_DTYPE_F64, s32, 2, (double[]){1, 2, 3, 4, 5, 6});
    struct td_tensor *idx = mk(TD_DTYPE_I64, s2, 1, (double[]){2, 0});
    struct td_op_args a;
    td_op_args_init(&a);
    a.has_padding_idx = true;
    a.padding_idx = 0;
    a.grad_enabled = true;
    w->requires_grad = true;
    struct td_err err;
    int rc;
    /* rows 2 and 0: [[5, 6], [1, 2]] */
    struct td_tensor *r = runv(TD_OP_EMBEDDING, (struct td_tensor *[]){idx, w}, 2, &a, &err, &rc);
    assert_int_equal(rc, 0);
    expect_values(r, TD_DTYPE_F64, 2, s22, (double[]){5, 6, 1, 2});
    /* backward of the sum: row 2 gets ones, row 0 is padding_idx and gets nothing */
    struct td_tensor *s = NULL;
    struct td_op_args sa;
    td_op_args_init(&sa);
    sa.grad_enabled = true;
    struct td_operand sin[1] = {tens(r)};
    assert_int_equal(td_op_apply(TD_OP_SUM, sin, 1, &sa, false, NULL, &s, &err), 0);
    assert_int_equal(td_autograd_backward(s, NULL, false, NULL, &err), 0);
    expect_values(w->grad, TD_DTYPE_F64, 2, s32, (double[]){0, 0, 0, 0, 1, 1});
    td_tensor_unref(s);
    td_tensor_unref(r);
    /* torch's errors */
    a.grad_enabled = false;
    a.padding_idx = 3;
    assert_null(runv(TD_OP_EMBEDDING, (struct td_tensor *[]){idx, w}, 2, &a, &err, &rc));
    assert_string_equal(err.msg, "Padding_idx must be within num_embeddings");
    a.has_padding_idx = false;
    struct td_tensor *bad = mk(TD_DTYPE_I64, s2, 1, (double[]){3, 0});
    assert_null(runv(TD_OP_EMBEDDING, (struct td_tensor *[]){bad, w}, 2, &a, &err, &rc));
    assert_string_equal(err.msg, "index out of range in self");
    struct td_tensor *fi = mk(TD_DTYPE_F32, s2, 1, (double[]){1, 0});
    assert_null(runv(TD_OP_EMBEDDING, (struct td_tensor *[]){fi, w}, 2, &a, &err, &rc));
    assert_string_equal(err.msg, "Expected tensor for argument #1 'indices' to have one of the "
                                 "following scalar types: Long, Int; but got torch.FloatTensor "
                                 "instead (while checking arguments for embedding)");
    td_tensor_unref(w);
    td_tensor_unref(idx);
    td_tensor_unref(bad);
    td_tensor_unref(fi);
}

static void test_one_hot_and_pad(void **state)
{
    (void)state;
    struct td_op_args a;
    td_op_args_init(&a);
    a.num_samples = -1;
    struct td_err err;
    int rc;
    /* [1, 0]: two classes inferred, [[0, 1], [1, 0]]; with 3: [[0, 1, 0], [1, 0, 0]] */
    struct td_tensor *i = mk(TD_DTYPE_I64, (int64_t[]){2}, 1, (double[]){1, 0});
    struct td_tensor *r = runv(TD_OP_ONE_HOT, &i, 1, &a, &err, &rc);
    assert_int_equal(rc, 0);
    expect_values(r, TD_DTYPE_I64, 2, (int64_t[]){2, 2}, (double[]){0, 1, 1, 0});
    td_tensor_unref(r);
    a.num_samples = 3;
    r = runv(TD_OP_ONE_HOT, &i, 1, &a, &err, &rc);
    assert_int_equal(rc, 0);
    expect_values(r, TD_DTYPE_I64, 2, (int64_t[]){2, 3}, (double[]){0, 1, 0, 1, 0, 0});
    td_tensor_unref(r);
    a.num_samples = 1;
    assert_null(runv(TD_OP_ONE_HOT, &i, 1, &a, &err, &rc));
    assert_string_equal(err.msg, "Class values must be smaller than num_classes.");
    /* pad [[1, 2]] by (1, -1) with 7: [[7, 1]]; by (0, 0, 1, 0): [[0, 0], [1, 2]] */
    struct td_tensor *x = mk(TD_DTYPE_F32, (int64_t[]){1, 2}, 2, (double[]){1, 2});
    struct td_op_args p;
    td_op_args_init(&p);
    p.dims[0] = 1;
    p.dims[1] = -1;
    p.ndims = 2;
    p.has_dims = true;
    p.has_value = true;
    p.value = td_scalar_i(7);
    r = runv(TD_OP_PAD, &x, 1, &p, &err, &rc);
    assert_int_equal(rc, 0);
    expect_values(r, TD_DTYPE_F32, 2, (int64_t[]){1, 2}, (double[]){7, 1});
    td_tensor_unref(r);
    p.has_value = false;
    p.dims[0] = 0;
    p.dims[1] = 0;
    p.dims[2] = 1;
    p.dims[3] = 0;
    p.ndims = 4;
    r = runv(TD_OP_PAD, &x, 1, &p, &err, &rc);
    assert_int_equal(rc, 0);
    expect_values(r, TD_DTYPE_F32, 2, (int64_t[]){2, 2}, (double[]){0, 0, 1, 2});
    td_tensor_unref(r);
    p.ndims = 3;
    assert_null(runv(TD_OP_PAD, &x, 1, &p, &err, &rc));
    assert_string_equal(err.msg, "Padding length must be divisible by 2");
    p.ndims = 6;
    assert_null(runv(TD_OP_PAD, &x, 1, &p, &err, &rc));
    assert_string_equal(err.msg, "Padding length too large");
    td_tensor_unref(i);
    td_tensor_unref(x);
}

/* Cost rules on absurd sizes: an expanded 2^62-element input, widths near INT64_MAX, a class
** count of 2^62. Every field saturates, none goes negative, nothing is allocated. */
static void test_costs_saturate(void **state)
{
    (void)state;
    struct td_tensor *one = mk(TD_DTYPE_F32, (int64_t[]){1, 1}, 2, (double[]){1});
    struct td_tensor big = *one;
    big.shape[0] = big.shape[1] = (int64_t)1 << 31;
    big.strides[0] = big.strides[1] = 0;
    big.numel = (int64_t)1 << 62;
    struct td_tensor bigi = big;
    bigi.dtype = TD_DTYPE_I64;
    struct td_op_args a;
    td_op_args_init(&a);
    a.dims[0] = INT64_MAX;
    a.dims[1] = INT64_MAX;
    a.ndims = 2;
    a.num_samples = (int64_t)1 << 62;
    struct td_cost c;
    struct td_err err;
    struct {
        enum td_op_id op;
        struct td_operand in[2];
        int nin;
    } cases[] = {
        {TD_OP_LAYER_NORM, {tens(&big), tens(&big)}, 2},
        {TD_OP_BATCH_NORM, {tens(&big)}, 1},
        {TD_OP_EMBEDDING, {tens(&bigi), tens(&big)}, 2},
        {TD_OP_ONE_HOT, {tens(&bigi)}, 1},
        {TD_OP_PAD, {tens(&big)}, 1},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        assert_int_equal(td_op_cost(cases[k].op, cases[k].in, cases[k].nin, &a, &c, &err), 0);
        assert_true(c.read > 0 && c.written > 0 && c.out_bytes >= 0 && c.temp_bytes >= 0);
        assert_true(td_cost_work(&c) >= ((int64_t)1 << 62));
    }
    /* a number where a tensor goes is invalid, not a crash */
    struct td_operand num[2] = {tens(one), {.t = NULL, .s = td_scalar_i(1)}};
    assert_int_not_equal(td_op_cost(TD_OP_LAYER_NORM, num, 2, &a, &c, &err), 0);
    td_tensor_unref(one);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layer_norm),     cmocka_unit_test(test_batch_norm),
        cmocka_unit_test(test_embedding),      cmocka_unit_test(test_one_hot_and_pad),
        cmocka_unit_test(test_costs_saturate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
