/* tests/core/test_dot_mv_cumsum.c — dot, mv and cumsum through td_op_apply: values, dtypes and
** torch's error texts, with every expected value worked out by hand in the comments; their
** gradients by autograd (hand-derived too), and their cost rules. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/autograd.h"
#include "helpers.h"

static struct td_tensor *run2(enum td_op_id op, struct td_tensor *a, struct td_tensor *b,
                              struct td_op_args *args, struct td_err *err, int *rc)
{
    struct td_operand in[2] = {tens(a), tens(b)};
    struct td_tensor *out = NULL;
    *rc = td_op_apply(op, in, b != NULL ? 2 : 1, args, false, NULL, &out, err);
    return out;
}

static void test_dot(void **state)
{
    (void)state;
    int64_t s3[] = {3}, s4[] = {4}, s23[] = {2, 3};
    struct td_tensor *a = mk(TD_DTYPE_F32, s3, 1, (double[]){1, 2, 3});
    struct td_tensor *b = mk(TD_DTYPE_F32, s3, 1, (double[]){4, 5, 6});
    struct td_err err;
    int rc;
    /* 1*4 + 2*5 + 3*6 = 32 */
    struct td_tensor *r = run2(TD_OP_DOT, a, b, NULL, &err, &rc);
    assert_int_equal(rc, 0);
    expect_values(r, TD_DTYPE_F32, 0, NULL, (double[]){32});
    td_tensor_unref(r);
    /* integers stay integers: 1*3 + 2*4 = 11 */
    struct td_tensor *i1 = mk(TD_DTYPE_I64, (int64_t[]){2}, 1, (double[]){1, 2});
    struct td_tensor *i2 = mk(TD_DTYPE_I64, (int64_t[]){2}, 1, (double[]){3, 4});
    r = run2(TD_OP_DOT, i1, i2, NULL, &err, &rc);
    assert_int_equal(rc, 0);
    expect_values(r, TD_DTYPE_I64, 0, NULL, (double[]){11});
    td_tensor_unref(r);
    /* torch's errors, in torch's order: ranks, dtypes, lengths, bool */
    struct td_tensor *m = mk(TD_DTYPE_F32, s23, 2, (double[]){1, 2, 3, 4, 5, 6});
    assert_null(run2(TD_OP_DOT, m, b, NULL, &err, &rc));
    assert_string_equal(err.msg, "1D tensors expected, but got 2D and 1D tensors");
    struct td_tensor *d = mk(TD_DTYPE_F64, s4, 1, (double[]){1, 1, 1, 1});
    assert_null(run2(TD_OP_DOT, a, d, NULL, &err, &rc));
    assert_string_equal(err.msg, "dot : expected both vectors to have same dtype, but found "
                                 "Float and Double");
    struct td_tensor *f4 = mk(TD_DTYPE_F32, s4, 1, (double[]){1, 1, 1, 1});
    assert_null(run2(TD_OP_DOT, a, f4, NULL, &err, &rc));
    assert_string_equal(err.msg, "inconsistent tensor size, expected tensor [3] and src [4] to "
                                 "have the same number of elements, but got 3 and 4 elements "
                                 "respectively");
    struct td_tensor *bo = mk(TD_DTYPE_BOOL, s3, 1, (double[]){1, 0, 1});
    assert_null(run2(TD_OP_DOT, bo, bo, NULL, &err, &rc));
    assert_string_equal(err.msg, "\"dot\" not implemented for 'Bool'");
    struct td_operand sc[2] = {tens(a), num(td_scalar_i(2))};
    assert_int_not_equal(td_op_apply(TD_OP_DOT, sc, 2, NULL, false, NULL, &r, &err), 0);
    assert_string_equal(err.msg, "dot(): argument 'tensor' (position 2) must be Tensor, not a "
                                 "number");
    struct td_tensor *ts[] = {a, b, i1, i2, m, d, f4, bo};
    for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) {
        td_tensor_unref(ts[k]);
    }
}

static void test_mv(void **state)
{
    (void)state;
    int64_t s23[] = {2, 3}, s3[] = {3}, s4[] = {4};
    struct td_tensor *m = mk(TD_DTYPE_F64, s23, 2, (double[]){1, 2, 3, 4, 5, 6});
    struct td_tensor *v = mk(TD_DTYPE_F64, s3, 1, (double[]){1, 0, -1});
    struct td_err err;
    int rc;
    /* [1-3, 4-6] = [-2, -2] */
    struct td_tensor *r = run2(TD_OP_MV, m, v, NULL, &err, &rc);
    assert_int_equal(rc, 0);
    expect_values(r, TD_DTYPE_F64, 1, (int64_t[]){2}, (double[]){-2, -2});
    td_tensor_unref(r);
    /* a transposed (non-contiguous) matrix: [[1, 4], [2, 5], [3, 6]] @ [1, 2] = [9, 12, 15] */
    struct td_tensor *mt = transposed(m);
    struct td_tensor *v2 = mk(TD_DTYPE_F64, (int64_t[]){2}, 1, (double[]){1, 2});
    r = run2(TD_OP_MV, mt, v2, NULL, &err, &rc);
    assert_int_equal(rc, 0);
    expect_values(r, TD_DTYPE_F64, 1, s3, (double[]){9, 12, 15});
    td_tensor_unref(r);
    /* errors: ranks, sizes, dtypes, bool */
    assert_null(run2(TD_OP_MV, v, v, NULL, &err, &rc));
    assert_string_equal(err.msg, "vector + matrix @ vector expected, got 1, 1, 1");
    struct td_tensor *v4 = mk(TD_DTYPE_F64, s4, 1, (double[]){1, 1, 1, 1});
    assert_null(run2(TD_OP_MV, m, v4, NULL, &err, &rc));
    assert_string_equal(err.msg, "size mismatch, got 2, 2x3,4");
    struct td_tensor *vf = mk(TD_DTYPE_F32, s3, 1, (double[]){1, 1, 1});
    assert_null(run2(TD_OP_MV, m, vf, NULL, &err, &rc));
    assert_string_equal(err.msg, "expected scalar type Double but found Float");
    struct td_tensor *mb = mk(TD_DTYPE_BOOL, s23, 2, (double[]){1, 0, 1, 0, 1, 0});
    struct td_tensor *vb = mk(TD_DTYPE_BOOL, s3, 1, (double[]){1, 1, 1});
    assert_null(run2(TD_OP_MV, mb, vb, NULL, &err, &rc));
    assert_string_equal(err.msg, "\"addmv_impl_cpu\" not implemented for 'Bool'");
    struct td_tensor *ts[] = {m, v, mt, v2, v4, vf, mb, vb};
    for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) {
        td_tensor_unref(ts[k]);
    }
}

static void test_cumsum(void **state)
{
    (void)state;
    int64_t s23[] = {2, 3};
    struct td_tensor *x = mk(TD_DTYPE_I32, s23, 2, (double[]){1, 2, 3, 4, 5, 6});
    struct td_err err;
    int rc;
    struct td_op_args a;
    td_op_args_init(&a);
    /* dim 0: [[1, 2, 3], [1+4, 2+5, 3+6]]; int32 promotes to int64 */
    a.dim = 0;
    struct td_tensor *r = run2(TD_OP_CUMSUM, x, NULL, &a, &err, &rc);
    assert_int_equal(rc, 0);
    expect_values(r, TD_DTYPE_I64, 2, s23, (double[]){1, 2, 3, 5, 7, 9});
    td_tensor_unref(r);
    /* dim -1 = 1: [[1, 3, 6], [4, 9, 15]] */
    a.dim = -1;
    r = run2(TD_OP_CUMSUM, x, NULL, &a, &err, &rc);
    assert_int_equal(rc, 0);
    expect_values(r, TD_DTYPE_I64, 2, s23, (double[]){1, 3, 6, 4, 9, 15});
    td_tensor_unref(r);
    /* dtype=float64 casts first */
    a.has_dtype = true;
    a.dtype = TD_DTYPE_F64;
    r = run2(TD_OP_CUMSUM, x, NULL, &a, &err, &rc);
    assert_int_equal(rc, 0);
    expect_values(r, TD_DTYPE_F64, 2, s23, (double[]){1, 3, 6, 4, 9, 15});
    td_tensor_unref(r);
    a.dtype = TD_DTYPE_BOOL;
    assert_null(run2(TD_OP_CUMSUM, x, NULL, &a, &err, &rc));
    assert_string_equal(err.msg, "\"cumsum_out_cpu\" not implemented for 'Bool'");
    a.has_dtype = false;
    /* a transposed float view along its dim 1: rows of [[1, 4], [2, 5], [3, 6]] -> [1, 5],
    ** [2, 7], [3, 9]; float stays float */
    struct td_tensor *f = mk(TD_DTYPE_F32, s23, 2, (double[]){1, 2, 3, 4, 5, 6});
    struct td_tensor *ft = transposed(f);
    a.dim = 1;
    r = run2(TD_OP_CUMSUM, ft, NULL, &a, &err, &rc);
    assert_int_equal(rc, 0);
    expect_values(r, TD_DTYPE_F32, 2, (int64_t[]){3, 2}, (double[]){1, 5, 2, 7, 3, 9});
    td_tensor_unref(r);
    /* bool sums as 0/1 in int64: [1, 0, 1] -> [1, 1, 2] */
    struct td_tensor *b = mk(TD_DTYPE_BOOL, (int64_t[]){3}, 1, (double[]){1, 0, 1});
    a.dim = 0;
    r = run2(TD_OP_CUMSUM, b, NULL, &a, &err, &rc);
    assert_int_equal(rc, 0);
    expect_values(r, TD_DTYPE_I64, 1, (int64_t[]){3}, (double[]){1, 1, 2});
    td_tensor_unref(r);
    /* a 0-dim tensor takes dim 0 or -1 and is its own sum; dim 1 is out of range */
    struct td_tensor *z = mk(TD_DTYPE_F64, NULL, 0, (double[]){5});
    a.dim = -1;
    r = run2(TD_OP_CUMSUM, z, NULL, &a, &err, &rc);
    assert_int_equal(rc, 0);
    expect_values(r, TD_DTYPE_F64, 0, NULL, (double[]){5});
    td_tensor_unref(r);
    a.dim = 1;
    assert_null(run2(TD_OP_CUMSUM, z, NULL, &a, &err, &rc));
    assert_string_equal(err.msg, "Dimension out of range (expected to be in range of [-1, 0], "
                                 "but got 1)");
    a.dim = 2;
    assert_null(run2(TD_OP_CUMSUM, x, NULL, &a, &err, &rc));
    assert_string_equal(err.msg, "Dimension out of range (expected to be in range of [-2, 1], "
                                 "but got 2)");
    /* int64 wraps like torch's two's complement: INT64_MAX + 1 -> INT64_MIN */
    struct td_tensor *big;
    assert_int_equal(td_tensor_empty(&big, TD_DTYPE_I64, (int64_t[]){2}, 1, NULL, NULL), 0);
    ((int64_t *)td_tensor_data(big))[0] = INT64_MAX;
    ((int64_t *)td_tensor_data(big))[1] = 1;
    a.dim = 0;
    r = run2(TD_OP_CUMSUM, big, NULL, &a, &err, &rc);
    assert_int_equal(rc, 0);
    assert_true(((int64_t *)td_tensor_data(r))[1] == INT64_MIN);
    td_tensor_unref(r);
    struct td_tensor *ts[] = {x, f, ft, b, z, big};
    for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) {
        td_tensor_unref(ts[k]);
    }
}

/* Gradients by hand. L = sum(w * cumsum(x)) with w = [1, 10, 100]: dL/dx_k = sum_{j>=k} w_j =
** [111, 110, 100]. L = dot(a, b): dL/da = b, dL/db = a. L = sum(mv(M, v)): dL/dM[i][j] = v[j],
** dL/dv[j] = sum_i M[i][j]. Names as torch's. */
static void test_grads(void **state)
{
    (void)state;
    struct td_err err;
    int rc;
    struct td_op_args ga;
    td_op_args_init(&ga);
    ga.grad_enabled = true;
    int64_t s3[] = {3}, s23[] = {2, 3};
    struct td_tensor *x = mk(TD_DTYPE_F64, s3, 1, (double[]){1, 2, 3});
    x->requires_grad = true;
    struct td_tensor *w = mk(TD_DTYPE_F64, s3, 1, (double[]){1, 10, 100});
    ga.dim = 0;
    struct td_tensor *c = run2(TD_OP_CUMSUM, x, NULL, &ga, &err, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(td_node_name(c->grad_fn), "CumsumBackward0");
    td_op_args_init(&ga);
    ga.grad_enabled = true;
    struct td_tensor *p = run2(TD_OP_MUL, c, w, &ga, &err, &rc);
    struct td_tensor *s = run2(TD_OP_SUM, p, NULL, &ga, &err, &rc);
    assert_int_equal(td_autograd_backward(s, NULL, false, NULL, &err), 0);
    expect_values(x->grad, TD_DTYPE_F64, 1, s3, (double[]){111, 110, 100});
    td_tensor_unref(c);
    td_tensor_unref(p);
    td_tensor_unref(s);

    struct td_tensor *a = mk(TD_DTYPE_F64, s3, 1, (double[]){1, 2, 3});
    struct td_tensor *b = mk(TD_DTYPE_F64, s3, 1, (double[]){4, 5, 6});
    a->requires_grad = b->requires_grad = true;
    struct td_tensor *dt = run2(TD_OP_DOT, a, b, &ga, &err, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(td_node_name(dt->grad_fn), "DotBackward0");
    assert_int_equal(td_autograd_backward(dt, NULL, false, NULL, &err), 0);
    expect_values(a->grad, TD_DTYPE_F64, 1, s3, (double[]){4, 5, 6});
    expect_values(b->grad, TD_DTYPE_F64, 1, s3, (double[]){1, 2, 3});
    td_tensor_unref(dt);

    struct td_tensor *m = mk(TD_DTYPE_F64, s23, 2, (double[]){1, 2, 3, 4, 5, 6});
    struct td_tensor *v = mk(TD_DTYPE_F64, s3, 1, (double[]){1, 0, -1});
    m->requires_grad = v->requires_grad = true;
    struct td_tensor *mv = run2(TD_OP_MV, m, v, &ga, &err, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(td_node_name(mv->grad_fn), "MvBackward0");
    s = run2(TD_OP_SUM, mv, NULL, &ga, &err, &rc);
    assert_int_equal(td_autograd_backward(s, NULL, false, NULL, &err), 0);
    expect_values(m->grad, TD_DTYPE_F64, 2, s23, (double[]){1, 0, -1, 1, 0, -1});
    expect_values(v->grad, TD_DTYPE_F64, 1, s3, (double[]){5, 7, 9});
    td_tensor_unref(mv);
    td_tensor_unref(s);
    struct td_tensor *ts[] = {x, w, a, b, m, v};
    for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) {
        td_tensor_unref(ts[k]);
    }
}

/* Cost rules: logical sizes. dot of two float32 [3]: reads 6, writes 1, 3 products, a 4-byte
** result. mv [2, 3] @ [3]: reads 9, writes 2, 6 products, 8 bytes. cumsum of [2, 3] int32:
** reads 6, writes 6, an int64 result of 48 bytes. */
static void test_costs(void **state)
{
    (void)state;
    struct td_cost c;
    struct td_err err;
    int64_t s3[] = {3}, s23[] = {2, 3};
    struct td_tensor *a = mk(TD_DTYPE_F32, s3, 1, (double[]){1, 2, 3});
    struct td_tensor *m = mk(TD_DTYPE_F32, s23, 2, (double[]){1, 2, 3, 4, 5, 6});
    struct td_tensor *x = mk(TD_DTYPE_I32, s23, 2, (double[]){1, 2, 3, 4, 5, 6});
    struct td_op_args args;
    td_op_args_init(&args);
    struct td_operand dd[2] = {tens(a), tens(a)};
    assert_int_equal(td_op_cost(TD_OP_DOT, dd, 2, &args, &c, &err), 0);
    assert_int_equal(c.read, 6);
    assert_int_equal(c.written, 1);
    assert_int_equal(c.flops, 3);
    assert_int_equal(c.out_bytes, 4);
    struct td_operand mvv[2] = {tens(m), tens(a)};
    assert_int_equal(td_op_cost(TD_OP_MV, mvv, 2, &args, &c, &err), 0);
    assert_int_equal(c.read, 9);
    assert_int_equal(c.written, 2);
    assert_int_equal(c.flops, 6);
    assert_int_equal(c.out_bytes, 8);
    /* the wrong ranks are invalid operands */
    assert_int_not_equal(td_op_cost(TD_OP_DOT, mvv, 2, &args, &c, &err), 0);
    assert_int_not_equal(td_op_cost(TD_OP_MV, dd, 2, &args, &c, &err), 0);
    struct td_operand cx[1] = {tens(x)};
    args.dim = 1;
    assert_int_equal(td_op_cost(TD_OP_CUMSUM, cx, 1, &args, &c, &err), 0);
    assert_int_equal(c.read, 6);
    assert_int_equal(c.written, 6);
    assert_int_equal(c.out_bytes, 48);
    args.dim = 2;
    assert_int_not_equal(td_op_cost(TD_OP_CUMSUM, cx, 1, &args, &c, &err), 0);
    td_tensor_unref(a);
    td_tensor_unref(m);
    td_tensor_unref(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dot),   cmocka_unit_test(test_mv),    cmocka_unit_test(test_cumsum),
        cmocka_unit_test(test_grads), cmocka_unit_test(test_costs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
