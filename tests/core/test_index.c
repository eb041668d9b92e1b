/* tests/core/test_index.c — the indexing family through td_op_apply: gather, scatter,
** scatter_add, index_select, index_add, masked_fill, masked_select, nonzero, take, index and
** index_put, with every expected value worked out by hand in the comments, torch 1.13's error
** texts, a strided (transposed) input, in-place forms, a gradient by autograd, and the cost
** rules (logical sizes; the data-dependent results bounded by the input). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/autograd.h"
#include "helpers.h"

static struct td_tensor *apply(enum td_op_id op, struct td_operand *in, int nin,
                               struct td_op_args *a, bool inplace, struct td_err *err, int *rc)
{
    struct td_tensor *out = NULL;
    *rc = td_op_apply(op, in, nin, a, inplace, NULL, &out, err);
    return *rc == 0 ? out : NULL;
}

/* x = [[1, 2, 3], [4, 5, 6]] (float32) */
static struct td_tensor *X23(void)
{
    return mk(TD_DTYPE_F32, (int64_t[]){2, 3}, 2, (double[]){1, 2, 3, 4, 5, 6});
}

static struct td_tensor *I64(const int64_t *shape, int ndim, const double *v)
{
    return mk(TD_DTYPE_I64, shape, ndim, v);
}

static void test_gather_scatter(void **state)
{
    (void)state;
    struct td_tensor *x = X23(), *r;
    struct td_tensor *idx = I64((int64_t[]){2, 2}, 2, (double[]){2, 0, 1, 1});
    struct td_op_args a;
    td_op_args_init(&a);
    a.dim = 1;
    struct td_err err;
    int rc;
    /* gather dim 1: row 0 takes cols 2, 0 -> 3, 1; row 1 cols 1, 1 -> 5, 5 */
    struct td_operand g[2] = {tens(x), tens(idx)};
    r = apply(TD_OP_GATHER, g, 2, &a, false, &err, &rc);
    expect_values(r, TD_DTYPE_F32, 2, (int64_t[]){2, 2}, (double[]){3, 1, 5, 5});
    td_tensor_unref(r);
    /* gather from the transposed x ([3, 2] = [[1, 4], [2, 5], [3, 6]]), dim 0 with
    ** [[2, 0], [1, 1]]: (0,0)=x.t[2][0]=3, (0,1)=x.t[0][1]=4, (1,0)=x.t[1][0]=2, (1,1)=5 */
    struct td_tensor *xt = transposed(x);
    a.dim = 0;
    struct td_operand gt[2] = {tens(xt), tens(idx)};
    r = apply(TD_OP_GATHER, gt, 2, &a, false, &err, &rc);
    expect_values(r, TD_DTYPE_F32, 2, (int64_t[]){2, 2}, (double[]){3, 4, 2, 5});
    td_tensor_unref(r);
    /* scatter dim 1 of src [[10, 20], [30, 40]]: row 0: col 2 <- 10, col 0 <- 20;
    ** row 1: col 1 <- 30 then 40 (the last write wins) */
    a.dim = 1;
    struct td_tensor *src = mk(TD_DTYPE_F32, (int64_t[]){2, 2}, 2, (double[]){10, 20, 30, 40});
    struct td_operand s[3] = {tens(x), tens(idx), tens(src)};
    r = apply(TD_OP_SCATTER, s, 3, &a, false, &err, &rc);
    expect_values(r, TD_DTYPE_F32, 2, (int64_t[]){2, 3}, (double[]){20, 2, 10, 4, 40, 6});
    td_tensor_unref(r);
    /* scatter_add: row 0: 1+20, 2, 3+10; row 1: 4, 5+30+40, 6 */
    r = apply(TD_OP_SCATTER_ADD, s, 3, &a, false, &err, &rc);
    expect_values(r, TD_DTYPE_F32, 2, (int64_t[]){2, 3}, (double[]){21, 2, 13, 4, 75, 6});
    td_tensor_unref(r);
    /* scatter of a value, in place: x itself changes */
    struct td_operand sv[3] = {tens(x), tens(idx), num(td_scalar_f(-1))};
    r = apply(TD_OP_SCATTER, sv, 3, &a, true, &err, &rc);
    assert_ptr_equal(r, x);
    expect_values(x, TD_DTYPE_F32, 2, (int64_t[]){2, 3}, (double[]){-1, 2, -1, 4, -1, 6});
    td_tensor_unref(r);
    /* torch's errors */
    struct td_tensor *big = I64((int64_t[]){1, 1}, 2, (double[]){3});
    struct td_operand gb[2] = {tens(x), tens(big)};
    assert_null(apply(TD_OP_GATHER, gb, 2, &a, false, &err, &rc));
    assert_string_equal(err.msg, "index 3 is out of bounds for dimension 1 with size 3");
    struct td_tensor *i32 = mk(TD_DTYPE_I32, (int64_t[]){1, 1}, 2, (double[]){0});
    struct td_operand g32[2] = {tens(x), tens(i32)};
    assert_null(apply(TD_OP_GATHER, g32, 2, &a, false, &err, &rc));
    assert_string_equal(err.msg, "gather(): Expected dtype int64 for index");
    struct td_tensor *i1 = I64((int64_t[]){2}, 1, (double[]){0, 1});
    struct td_operand g1[2] = {tens(x), tens(i1)};
    assert_null(apply(TD_OP_GATHER, g1, 2, &a, false, &err, &rc));
    assert_string_equal(err.msg,
                        "Index tensor must have the same number of dimensions as input tensor");
    struct td_tensor *srci = mk(TD_DTYPE_I64, (int64_t[]){2, 2}, 2, (double[]){1, 1, 1, 1});
    struct td_operand sd[3] = {tens(x), tens(idx), tens(srci)};
    assert_null(apply(TD_OP_SCATTER, sd, 3, &a, false, &err, &rc));
    assert_string_equal(err.msg, "scatter(): Expected self.dtype to be equal to src.dtype");
    td_tensor_unref(srci);
    td_tensor_unref(i1);
    td_tensor_unref(i32);
    td_tensor_unref(big);
    td_tensor_unref(src);
    td_tensor_unref(xt);
    td_tensor_unref(idx);
    td_tensor_unref(x);
}

static void test_index_select_add_take(void **state)
{
    (void)state;
    struct td_tensor *x = X23(), *r;
    struct td_tensor *idx = I64((int64_t[]){3}, 1, (double[]){2, 0, 2});
    struct td_op_args a;
    td_op_args_init(&a);
    a.dim = 1;
    struct td_err err;
    int rc;
    /* index_select dim 1 [2, 0, 2]: [[3, 1, 3], [6, 4, 6]] */
    struct td_operand in[2] = {tens(x), tens(idx)};
    r = apply(TD_OP_INDEX_SELECT, in, 2, &a, false, &err, &rc);
    expect_values(r, TD_DTYPE_F32, 2, (int64_t[]){2, 3}, (double[]){3, 1, 3, 6, 4, 6});
    td_tensor_unref(r);
    /* index_add dim 1 of ones [2, 3] at [2, 0, 2]: col 2 += 2, col 0 += 1 */
    struct td_tensor *ones = mk(TD_DTYPE_F32, (int64_t[]){2, 3}, 2, (double[]){1, 1, 1, 1, 1, 1});
    struct td_operand ia[3] = {tens(x), tens(idx), tens(ones)};
    r = apply(TD_OP_INDEX_ADD, ia, 3, &a, false, &err, &rc);
    expect_values(r, TD_DTYPE_F32, 2, (int64_t[]){2, 3}, (double[]){2, 2, 5, 5, 5, 8});
    td_tensor_unref(r);
    /* take [5, -2, 0] of x flattened: 6, 5, 1; of x.t() ([1, 4, 2, 5, 3, 6]): 6, 3, 1 */
    struct td_tensor *ti = I64((int64_t[]){3}, 1, (double[]){5, -2, 0});
    struct td_operand tk[2] = {tens(x), tens(ti)};
    r = apply(TD_OP_TAKE, tk, 2, NULL, false, &err, &rc);
    expect_values(r, TD_DTYPE_F32, 1, (int64_t[]){3}, (double[]){6, 5, 1});
    td_tensor_unref(r);
    struct td_tensor *xt = transposed(x);
    struct td_operand tkt[2] = {tens(xt), tens(ti)};
    r = apply(TD_OP_TAKE, tkt, 2, NULL, false, &err, &rc);
    expect_values(r, TD_DTYPE_F32, 1, (int64_t[]){3}, (double[]){6, 3, 1});
    td_tensor_unref(r);
    /* errors */
    struct td_tensor *oob = I64((int64_t[]){1}, 1, (double[]){3});
    struct td_operand so[2] = {tens(x), tens(oob)};
    assert_null(apply(TD_OP_INDEX_SELECT, so, 2, &a, false, &err, &rc));
    assert_string_equal(err.msg, "index out of range in self");
    struct td_tensor *t6 = I64((int64_t[]){1}, 1, (double[]){6});
    struct td_operand to[2] = {tens(x), tens(t6)};
    assert_null(apply(TD_OP_TAKE, to, 2, NULL, false, &err, &rc));
    assert_string_equal(err.msg,
                        "out of range: tried to access index 6 on a tensor of 6 elements.");
    struct td_operand iad[3] = {tens(x), tens(oob), tens(ones)};
    assert_null(apply(TD_OP_INDEX_ADD, iad, 3, &a, false, &err, &rc));
    assert_string_equal(err.msg, "index_add_(): Number of indices (1) should be equal to "
                                 "source.size(dim): (3), for dim: 1");
    td_tensor_unref(t6);
    td_tensor_unref(oob);
    td_tensor_unref(xt);
    td_tensor_unref(ti);
    td_tensor_unref(ones);
    td_tensor_unref(idx);
    td_tensor_unref(x);
}

static void test_masks_and_nonzero(void **state)
{
    (void)state;
    struct td_tensor *x = X23(), *r;
    struct td_tensor *m = mk(TD_DTYPE_BOOL, (int64_t[]){3}, 1, (double[]){1, 0, 1});
    struct td_err err;
    int rc;
    /* masked_fill, the mask broadcast over rows: cols 0 and 2 become 0.5 */
    struct td_operand mf[3] = {tens(x), tens(m), num(td_scalar_f(0.5))};
    r = apply(TD_OP_MASKED_FILL, mf, 3, NULL, false, &err, &rc);
    expect_values(r, TD_DTYPE_F32, 2, (int64_t[]){2, 3}, (double[]){0.5, 2, 0.5, 0.5, 5, 0.5});
    td_tensor_unref(r);
    /* masked_select: 1, 3, 4, 6 */
    struct td_operand ms[2] = {tens(x), tens(m)};
    r = apply(TD_OP_MASKED_SELECT, ms, 2, NULL, false, &err, &rc);
    expect_values(r, TD_DTYPE_F32, 1, (int64_t[]){4}, (double[]){1, 3, 4, 6});
    td_tensor_unref(r);
    /* nonzero of [[0, 2], [3, 0]]: (0, 1), (1, 0) */
    struct td_tensor *z = mk(TD_DTYPE_I32, (int64_t[]){2, 2}, 2, (double[]){0, 2, 3, 0});
    struct td_operand nz[1] = {tens(z)};
    r = apply(TD_OP_NONZERO, nz, 1, NULL, false, &err, &rc);
    expect_values(r, TD_DTYPE_I64, 2, (int64_t[]){2, 2}, (double[]){0, 1, 1, 0});
    td_tensor_unref(r);
    /* errors: a 1-dim value tensor, a non-bool mask */
    struct td_tensor *v1 = mk(TD_DTYPE_F32, (int64_t[]){1}, 1, (double[]){1});
    struct td_operand mfv[3] = {tens(x), tens(m), tens(v1)};
    assert_null(apply(TD_OP_MASKED_FILL, mfv, 3, NULL, false, &err, &rc));
    assert_string_equal(err.msg, "masked_fill_ only supports a 0-dimensional value tensor, but "
                                 "got tensor with 1 dimension(s).");
    struct td_operand msz[2] = {tens(x), tens(z)};
    assert_null(apply(TD_OP_MASKED_SELECT, msz, 2, NULL, false, &err, &rc));
    assert_string_equal(err.msg, "masked_select: expected BoolTensor or ByteTensor for mask");
    td_tensor_unref(v1);
    td_tensor_unref(z);
    td_tensor_unref(m);
    td_tensor_unref(x);
}

static void test_index_and_index_put(void **state)
{
    (void)state;
    /* y = arange(24).reshape(2, 3, 4): y[i][j][k] = 12i + 4j + k */
    double v[24];
    for (int i = 0; i < 24; i++) {
        v[i] = i;
    }
    struct td_tensor *y = mk(TD_DTYPE_F64, (int64_t[]){2, 3, 4}, 3, v), *r;
    struct td_tensor *i0 = I64((int64_t[]){2}, 1, (double[]){0, 1});
    struct td_tensor *i2 = I64((int64_t[]){2}, 1, (double[]){1, -1});
    struct td_op_args a;
    td_op_args_init(&a);
    struct td_err err;
    int rc;
    /* y[[0, 1], :, [1, -1]]: dims 0 and 2 not adjacent -> the broadcast dim goes first:
    ** shape [2, 3]; row b: y[i0[b], j, i2[b]]: b=0: 1, 5, 9; b=1: 12+3=15, 19, 23 */
    a.index_mask = 5;
    struct td_operand in[3] = {tens(y), tens(i0), tens(i2)};
    r = apply(TD_OP_INDEX, in, 3, &a, false, &err, &rc);
    expect_values(r, TD_DTYPE_F64, 2, (int64_t[]){2, 3}, (double[]){1, 5, 9, 15, 19, 23});
    td_tensor_unref(r);
    /* y[:, [0, 1], [1, -1]]: adjacent -> stays in place: shape [2, 2]: y[i][0][1], y[i][1][3]
    ** = 1, 7; 13, 19 */
    a.index_mask = 6;
    r = apply(TD_OP_INDEX, in, 3, &a, false, &err, &rc);
    expect_values(r, TD_DTYPE_F64, 2, (int64_t[]){2, 2}, (double[]){1, 7, 13, 19});
    td_tensor_unref(r);
    /* y[:, :, [[1], [2]]] (index [2, 1]): shape [2, 3, 2, 1] */
    struct td_tensor *col = I64((int64_t[]){2, 1}, 2, (double[]){1, 2});
    a.index_mask = 4;
    struct td_operand ic[2] = {tens(y), tens(col)};
    r = apply(TD_OP_INDEX, ic, 2, &a, false, &err, &rc);
    expect_values(r, TD_DTYPE_F64, 4, (int64_t[]){2, 3, 2, 1},
                  (double[]){1, 2, 5, 6, 9, 10, 13, 14, 17, 18, 21, 22});
    td_tensor_unref(r);
    /* index_put_ accumulate on x = zeros(3) at [0, 2, 0] of 1, 2, 3: [4, 0, 2] */
    struct td_tensor *x = mk(TD_DTYPE_F32, (int64_t[]){3}, 1, (double[]){0, 0, 0});
    struct td_tensor *ia = I64((int64_t[]){3}, 1, (double[]){0, 2, 0});
    struct td_tensor *vals = mk(TD_DTYPE_F32, (int64_t[]){3}, 1, (double[]){1, 2, 3});
    a.index_mask = 1;
    a.accumulate = true;
    struct td_operand pu[3] = {tens(x), tens(ia), tens(vals)};
    r = apply(TD_OP_INDEX_PUT, pu, 3, &a, true, &err, &rc);
    expect_values(x, TD_DTYPE_F32, 1, (int64_t[]){3}, (double[]){4, 0, 2});
    td_tensor_unref(r);
    /* without accumulate, a number broadcast: [7, 0, 7] */
    a.accumulate = false;
    struct td_operand pn[3] = {tens(x), tens(ia), num(td_scalar_i(7))};
    r = apply(TD_OP_INDEX_PUT, pn, 3, &a, true, &err, &rc);
    expect_values(x, TD_DTYPE_F32, 1, (int64_t[]){3}, (double[]){7, 0, 7});
    td_tensor_unref(r);
    /* torch's errors: bounds (the dim counted among the indexed ones), broadcast, dtype */
    struct td_tensor *bad = I64((int64_t[]){1}, 1, (double[]){-5});
    a.index_mask = 4;
    struct td_operand ib[2] = {tens(y), tens(bad)};
    assert_null(apply(TD_OP_INDEX, ib, 2, &a, false, &err, &rc));
    assert_string_equal(err.msg, "index -5 is out of bounds for dimension 0 with size 4");
    struct td_tensor *three = I64((int64_t[]){3}, 1, (double[]){0, 0, 0});
    a.index_mask = 3;
    struct td_operand bb[3] = {tens(y), tens(i0), tens(three)};
    assert_null(apply(TD_OP_INDEX, bb, 3, &a, false, &err, &rc));
    assert_string_equal(err.msg, "shape mismatch: indexing tensors could not be broadcast "
                                 "together with shapes [2], [3]");
    struct td_tensor *lv = mk(TD_DTYPE_I64, (int64_t[]){3}, 1, (double[]){1, 2, 3});
    a.index_mask = 1;
    struct td_operand pd[3] = {tens(x), tens(ia), tens(lv)};
    assert_null(apply(TD_OP_INDEX_PUT, pd, 3, &a, true, &err, &rc));
    assert_string_equal(err.msg, "Index put requires the source and destination dtypes match, "
                                 "got Float for the destination and Long for the source.");
    struct td_tensor *v2 = mk(TD_DTYPE_F32, (int64_t[]){2}, 1, (double[]){1, 2});
    struct td_operand pv[3] = {tens(x), tens(ia), tens(v2)};
    assert_null(apply(TD_OP_INDEX_PUT, pv, 3, &a, true, &err, &rc));
    assert_string_equal(err.msg, "shape mismatch: value tensor of shape [2] cannot be broadcast "
                                 "to indexing result of shape [3]");
    td_tensor_unref(v2);
    td_tensor_unref(lv);
    td_tensor_unref(three);
    td_tensor_unref(bad);
    td_tensor_unref(vals);
    td_tensor_unref(ia);
    td_tensor_unref(x);
    td_tensor_unref(col);
    td_tensor_unref(i2);
    td_tensor_unref(i0);
    td_tensor_unref(y);
}

static void test_index_gradient(void **state)
{
    (void)state;
    /* x[[0, 2, 0]] * [1, 2, 3], summed: d/dx = [1 + 3, 0, 2] */
    struct td_tensor *x = mk(TD_DTYPE_F64, (int64_t[]){3}, 1, (double[]){5, 6, 7});
    x->requires_grad = true;
    struct td_tensor *ia = I64((int64_t[]){3}, 1, (double[]){0, 2, 0});
    struct td_tensor *w = mk(TD_DTYPE_F64, (int64_t[]){3}, 1, (double[]){1, 2, 3});
    struct td_op_args a;
    td_op_args_init(&a);
    a.index_mask = 1;
    a.grad_enabled = true;
    struct td_err err;
    int rc;
    struct td_operand in[2] = {tens(x), tens(ia)};
    struct td_tensor *y = apply(TD_OP_INDEX, in, 2, &a, false, &err, &rc), *p = NULL, *s = NULL;
    assert_int_equal(rc, 0);
    assert_string_equal(td_node_name(y->grad_fn), "IndexBackward0");
    struct td_op_args ga;
    td_op_args_init(&ga);
    ga.grad_enabled = true;
    struct td_operand mw[2] = {tens(y), tens(w)};
    assert_int_equal(td_op_apply(TD_OP_MUL, mw, 2, &ga, false, NULL, &p, &err), 0);
    struct td_operand sm[1] = {tens(p)};
    assert_int_equal(td_op_apply(TD_OP_SUM, sm, 1, &ga, false, NULL, &s, &err), 0);
    assert_int_equal(td_autograd_backward(s, NULL, false, NULL, &err), 0);
    expect_values(x->grad, TD_DTYPE_F64, 1, (int64_t[]){3}, (double[]){4, 0, 2});
    td_tensor_unref(s);
    td_tensor_unref(p);
    td_tensor_unref(y);
    td_tensor_unref(w);
    td_tensor_unref(ia);
    td_tensor_unref(x);
}

static void test_costs(void **state)
{
    (void)state;
    /* a [2^30, 2^30] expanded view: masked_select and nonzero are bounded by its logical
    ** size (2^60 elements), never by its one stored element */
    struct td_tensor *one = mk(TD_DTYPE_F32, (int64_t[]){1}, 1, (double[]){1});
    struct td_tensor big = *one;
    big.ndim = 2;
    big.shape[0] = big.shape[1] = (int64_t)1 << 30;
    big.strides[0] = big.strides[1] = 0;
    big.numel = (int64_t)1 << 60;
    struct td_tensor *m = mk(TD_DTYPE_BOOL, (int64_t[]){1}, 1, (double[]){1});
    struct td_cost c;
    struct td_err err;
    struct td_operand nz[1] = {tens(&big)};
    assert_int_equal(td_op_cost(TD_OP_NONZERO, nz, 1, NULL, &c, &err), 0);
    assert_int_equal(c.read, (int64_t)1 << 61);
    assert_true(c.out_bytes == INT64_MAX); /* 2^61 int64s: saturated */
    struct td_operand ms[2] = {tens(&big), tens(m)};
    assert_int_equal(td_op_cost(TD_OP_MASKED_SELECT, ms, 2, NULL, &c, &err), 0);
    assert_int_equal(c.written, (int64_t)1 << 60);
    assert_int_equal(c.out_bytes, (int64_t)1 << 62); /* 2^60 float32s */
    /* index: [3] indices over dim 1 of [2, 3]: a [2, 3] result */
    struct td_tensor *x = X23();
    struct td_tensor *ia = I64((int64_t[]){3}, 1, (double[]){0, 2, 0});
    struct td_op_args a;
    td_op_args_init(&a);
    a.index_mask = 2;
    struct td_operand ix[2] = {tens(x), tens(ia)};
    assert_int_equal(td_op_cost(TD_OP_INDEX, ix, 2, &a, &c, &err), 0);
    assert_int_equal(c.written, 6);
    assert_int_equal(c.out_bytes, 24);
    /* a bad mask is refused before anything runs */
    a.index_mask = 1 << 5;
    assert_int_not_equal(td_op_cost(TD_OP_INDEX, ix, 2, &a, &c, &err), 0);
    td_tensor_unref(ia);
    td_tensor_unref(x);
    td_tensor_unref(m);
    td_tensor_unref(one);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gather_scatter),    cmocka_unit_test(test_index_select_add_take),
        cmocka_unit_test(test_masks_and_nonzero), cmocka_unit_test(test_index_and_index_put),
        cmocka_unit_test(test_index_gradient),    cmocka_unit_test(test_costs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
