/* tests/core/test_special.c — issue 16's elementwise, comparison and linear algebra ops through
** td_op_apply (ops/special.c): values, dtypes and torch's error texts, with every expected value
** worked out by hand in the comments; gradients of the composed ops by autograd (hand-derived),
** and their cost rules on hostile operands. Also div's rounding_mode, add/sub's alpha, round's
** decimals, diagonal, diag, roll, the triangle indices, einsum and clamp_min / clamp_max. */
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

static struct td_tensor *apply(enum td_op_id op, struct td_operand *in, int nin,
                               struct td_op_args *args, struct td_err *err)
{
    struct td_tensor *out = NULL;
    if (td_op_apply(op, in, nin, args, false, NULL, &out, err) != 0) {
        return NULL;
    }
    return out;
}

static void expect(struct td_tensor *t, enum td_dtype dt, int ndim, const int64_t *shape,
                   const double *v)
{
    expect_meta(t, dt, ndim, shape);
    for (int64_t i = 0; i < t->numel; i++) {
        double g = at(t, i);
        bool same = (isnan(v[i]) && isnan(g)) || g == v[i] || fabs(g - v[i]) <= 1e-6 * fabs(v[i]);
        if (!same) {
            fail_msg("element %lld: got %.17g, want %.17g", (long long)i, g, v[i]);
        }
    }
    td_tensor_unref(t);
}

static void test_bitwise(void **state)
{
    (void)state;
    int64_t s4[] = {4};
    struct td_err err;
    struct td_tensor *a = mk(TD_DTYPE_I64, s4, 1, (double[]){5, -3, 12, 0});
    struct td_tensor *b = mk(TD_DTYPE_I64, s4, 1, (double[]){3, 1, -7, 9});
    struct td_tensor *a32 = mk(TD_DTYPE_I32, s4, 1, (double[]){5, -3, 12, 0});
    struct td_tensor *f = mk(TD_DTYPE_F32, s4, 1, (double[]){1, 2, 3, 4});
    struct td_tensor *bo = mk(TD_DTYPE_BOOL, s4, 1, (double[]){1, 0, 1, 0});
    /* 5 & 3 = 1; -3 (...11101) & 1 = 1; 12 (01100) & -7 (...11001) = 8; 0 & 9 = 0 */
    struct td_operand ab[2] = {tens(a), tens(b)};
    expect(apply(TD_OP_BITWISE_AND, ab, 2, NULL, &err), TD_DTYPE_I64, 1, s4,
           (double[]){1, 1, 8, 0});
    /* 5 | 3 = 7; -3 | 1 = -3; 12 | -7 = -3 (...11101); 0 | 9 = 9 */
    expect(apply(TD_OP_BITWISE_OR, ab, 2, NULL, &err), TD_DTYPE_I64, 1, s4,
           (double[]){7, -3, -3, 9});
    /* 5 ^ 3 = 6; -3 ^ 1 = -4; 12 ^ -7 = -11 (...10101); 0 ^ 9 = 9 */
    expect(apply(TD_OP_BITWISE_XOR, ab, 2, NULL, &err), TD_DTYPE_I64, 1, s4,
           (double[]){6, -4, -11, 9});
    /* ~x = -x - 1, in int32 */
    struct td_operand n32[1] = {tens(a32)};
    expect(apply(TD_OP_BITWISE_NOT, n32, 1, NULL, &err), TD_DTYPE_I32, 1, s4,
           (double[]){-6, 2, -13, -1});
    /* bool & bool stays bool; bool | int32 promotes to int32 */
    struct td_operand bb[2] = {tens(bo), tens(bo)};
    struct td_operand nb[1] = {tens(bo)};
    expect(apply(TD_OP_BITWISE_NOT, nb, 1, NULL, &err), TD_DTYPE_BOOL, 1, s4,
           (double[]){0, 1, 0, 1});
    expect(apply(TD_OP_BITWISE_XOR, bb, 2, NULL, &err), TD_DTYPE_BOOL, 1, s4,
           (double[]){0, 0, 0, 0});
    struct td_operand bi[2] = {tens(bo), tens(a32)};
    expect(apply(TD_OP_BITWISE_OR, bi, 2, NULL, &err), TD_DTYPE_I32, 1, s4,
           (double[]){5, -3, 13, 0});
    /* an int scalar keeps int32; a float operand is refused by torch's kernel name */
    struct td_operand as[2] = {tens(a32), num(td_scalar_i(6))};
    expect(apply(TD_OP_BITWISE_AND, as, 2, NULL, &err), TD_DTYPE_I32, 1, s4,
           (double[]){4, 4, 4, 0});
    struct td_operand af[2] = {tens(a), tens(f)};
    assert_null(apply(TD_OP_BITWISE_AND, af, 2, NULL, &err));
    assert_string_equal(err.msg, "\"bitwise_and_cpu\" not implemented for 'Float'");
    struct td_operand afs[2] = {tens(a), num(td_scalar_f(1.5))};
    assert_null(apply(TD_OP_BITWISE_XOR, afs, 2, NULL, &err));
    assert_string_equal(err.msg, "\"bitwise_xor_cpu\" not implemented for 'Float'");
    struct td_operand nf[1] = {tens(f)};
    assert_null(apply(TD_OP_BITWISE_NOT, nf, 1, NULL, &err));
    assert_string_equal(err.msg, "\"bitwise_not_cpu\" not implemented for 'Float'");
    /* in place: the cast check comes first, as torch's */
    struct td_tensor *r = NULL;
    assert_int_not_equal(td_op_apply(TD_OP_BITWISE_AND, af, 2, NULL, true, NULL, &r, &err), 0);
    assert_string_equal(err.msg, "result type Float can't be cast to the desired output type "
                                 "Long");
    assert_int_equal(td_op_apply(TD_OP_BITWISE_OR, ab, 2, NULL, true, NULL, &r, &err), 0);
    assert_ptr_equal(r, a);
    td_tensor_unref(r);
    expect(td_tensor_ref(a), TD_DTYPE_I64, 1, s4, (double[]){7, -3, -3, 9});
    td_tensor_unref(a);
    td_tensor_unref(b);
    td_tensor_unref(a32);
    td_tensor_unref(f);
    td_tensor_unref(bo);
}

static void test_shifts(void **state)
{
    (void)state;
    int64_t s2[] = {2};
    struct td_err err;
    struct td_tensor *a = mk(TD_DTYPE_I64, s2, 1, (double[]){5, -3});
    struct td_tensor *a32 = mk(TD_DTYPE_I32, s2, 1, (double[]){5, -3});
    struct td_tensor *bo = mk(TD_DTYPE_BOOL, s2, 1, (double[]){1, 0});
    struct td_operand in[2] = {tens(a), num(td_scalar_i(2))};
    /* 5 << 2 = 20, -3 << 2 = -12; 5 >> 1 = 2, -3 >> 1 = -2 (arithmetic: floor(-1.5)) */
    expect(apply(TD_OP_BITWISE_LEFT_SHIFT, in, 2, NULL, &err), TD_DTYPE_I64, 1, s2,
           (double[]){20, -12});
    in[1] = num(td_scalar_i(1));
    expect(apply(TD_OP_BITWISE_RIGHT_SHIFT, in, 2, NULL, &err), TD_DTYPE_I64, 1, s2,
           (double[]){2, -2});
    /* right shifts past the width, or negative, shift by 63: the sign */
    in[1] = num(td_scalar_i(70));
    expect(apply(TD_OP_BITWISE_RIGHT_SHIFT, in, 2, NULL, &err), TD_DTYPE_I64, 1, s2,
           (double[]){0, -1});
    in[1] = num(td_scalar_i(-1));
    expect(apply(TD_OP_BITWISE_RIGHT_SHIFT, in, 2, NULL, &err), TD_DTYPE_I64, 1, s2,
           (double[]){0, -1});
    /* left shifts count modulo 64 (torch 1.13 on x86): << 64 is << 0, << -1 is << 63, which
    ** leaves the low bit (1 for 5 and for -3) in the sign bit: INT64_MIN */
    in[1] = num(td_scalar_i(64));
    expect(apply(TD_OP_BITWISE_LEFT_SHIFT, in, 2, NULL, &err), TD_DTYPE_I64, 1, s2,
           (double[]){5, -3});
    in[1] = num(td_scalar_i(-1));
    expect(apply(TD_OP_BITWISE_LEFT_SHIFT, in, 2, NULL, &err), TD_DTYPE_I64, 1, s2,
           (double[]){-9223372036854775808.0, -9223372036854775808.0});
    /* int32 (an int scalar keeps it): << 33 is << 1; >> 40 is >> 31 */
    struct td_operand in32[2] = {tens(a32), num(td_scalar_i(33))};
    expect(apply(TD_OP_BITWISE_LEFT_SHIFT, in32, 2, NULL, &err), TD_DTYPE_I32, 1, s2,
           (double[]){10, -6});
    in32[1] = num(td_scalar_i(40));
    expect(apply(TD_OP_BITWISE_RIGHT_SHIFT, in32, 2, NULL, &err), TD_DTYPE_I32, 1, s2,
           (double[]){0, -1});
    /* bool << int is int64; bool >> bool has no kernel */
    struct td_operand bi[2] = {tens(bo), num(td_scalar_i(1))};
    expect(apply(TD_OP_BITWISE_LEFT_SHIFT, bi, 2, NULL, &err), TD_DTYPE_I64, 1, s2,
           (double[]){2, 0});
    struct td_operand bb[2] = {tens(bo), tens(bo)};
    assert_null(apply(TD_OP_BITWISE_RIGHT_SHIFT, bb, 2, NULL, &err));
    assert_string_equal(err.msg, "\"rshift_cpu\" not implemented for 'Bool'");
    struct td_operand af[2] = {tens(a), num(td_scalar_f(1.5))};
    assert_null(apply(TD_OP_BITWISE_LEFT_SHIFT, af, 2, NULL, &err));
    assert_string_equal(err.msg, "\"lshift_cpu\" not implemented for 'Float'");
    td_tensor_unref(a);
    td_tensor_unref(a32);
    td_tensor_unref(bo);
}

static void test_rounding_and_special(void **state)
{
    (void)state;
    int64_t s4[] = {4}, s3[] = {3};
    struct td_err err;
    struct td_tensor *f = mk(TD_DTYPE_F32, s4, 1, (double[]){1.5, -2.5, 0.25, -0.75});
    struct td_tensor *l = mk(TD_DTYPE_I64, s3, 1, (double[]){5, -3, 0});
    struct td_tensor *bo = mk(TD_DTYPE_BOOL, s3, 1, (double[]){1, 0, 1});
    struct td_operand in[1] = {tens(f)};
    /* trunc rounds toward zero; frac = x - trunc(x) keeps x's sign */
    expect(apply(TD_OP_TRUNC, in, 1, NULL, &err), TD_DTYPE_F32, 1, s4, (double[]){1, -2, 0, -0});
    expect(apply(TD_OP_FRAC, in, 1, NULL, &err), TD_DTYPE_F32, 1, s4,
           (double[]){0.5, -0.5, 0.25, -0.75});
    in[0] = tens(l);
    expect(apply(TD_OP_TRUNC, in, 1, NULL, &err), TD_DTYPE_I64, 1, s3, (double[]){5, -3, 0});
    assert_null(apply(TD_OP_FRAC, in, 1, NULL, &err));
    assert_string_equal(err.msg, "\"frac_cpu\" not implemented for 'Long'");
    in[0] = tens(bo);
    assert_null(apply(TD_OP_TRUNC, in, 1, NULL, &err));
    assert_string_equal(err.msg, "\"trunc_vml_cpu\" not implemented for 'Bool'");
    /* erf of bool and long computes in float32: erf(1) = 0.8427007929497149 (A&S table) */
    expect(apply(TD_OP_ERF, in, 1, NULL, &err), TD_DTYPE_F32, 1, s3,
           (double[]){(float)0.8427007929497149, 0, (float)0.8427007929497149});
    /* erfinv(1) = inf, erfinv(0) = 0; erfinv(-3) and erfinv(5) are NaN (outside [-1, 1]) */
    expect(apply(TD_OP_ERFINV, in, 1, NULL, &err), TD_DTYPE_F32, 1, s3,
           (double[]){INFINITY, 0, INFINITY});
    in[0] = tens(l);
    expect(apply(TD_OP_ERFINV, in, 1, NULL, &err), TD_DTYPE_F32, 1, s3, (double[]){NAN, NAN, 0});
    /* float64: erf(0.5) = 0.5204998778130465; erfinv inverts it, and erfinv(-x) = -erfinv(x) */
    struct td_tensor *d = mk(TD_DTYPE_F64, s3, 1, (double[]){0.5204998778130465, -0.5, 1e-300});
    in[0] = tens(d);
    struct td_tensor *r = apply(TD_OP_ERFINV, in, 1, NULL, &err);
    assert_non_null(r);
    assert_true(fabs(at(r, 0) - 0.5) < 1e-15);
    /* erfinv(0.5) = 0.4769362762044699 (tables); tiny x: x sqrt(pi) / 2 */
    assert_true(fabs(at(r, 1) + 0.4769362762044699) < 1e-15);
    assert_true(fabs(at(r, 2) - 0.886226925452758e-300) < 1e-312);
    td_tensor_unref(r);
    td_tensor_unref(f);
    td_tensor_unref(l);
    td_tensor_unref(bo);
    td_tensor_unref(d);
}

static void test_isclose(void **state)
{
    (void)state;
    int64_t s3[] = {3}, s1[] = {1};
    struct td_err err;
    struct td_op_args a;
    td_op_args_init(&a);
    a.rtol = 1e-5;
    a.atol = 1e-8;
    struct td_tensor *x = mk(TD_DTYPE_F32, s3, 1, (double[]){1.0, NAN, INFINITY});
    struct td_tensor *y = mk(TD_DTYPE_F32, s3, 1, (double[]){1.000001, NAN, INFINITY});
    struct td_operand in[2] = {tens(x), tens(y)};
    /* |1 - 1.000001| ~ 1e-6 <= 1e-8 + 1e-5 * 1.000001; NaN is close only with equal_nan;
    ** inf == inf */
    expect(apply(TD_OP_ISCLOSE, in, 2, &a, &err), TD_DTYPE_BOOL, 1, s3, (double[]){1, 0, 1});
    a.equal_nan = true;
    expect(apply(TD_OP_ISCLOSE, in, 2, &a, &err), TD_DTYPE_BOOL, 1, s3, (double[]){1, 1, 1});
    /* integers: |100 - 101| = 1 <= 0.01 * 101 */
    a.rtol = 0.01;
    struct td_tensor *i = mk(TD_DTYPE_I64, s3, 1, (double[]){100, 5, 7});
    struct td_tensor *j = mk(TD_DTYPE_I64, s3, 1, (double[]){101, 5, 9});
    struct td_operand ij[2] = {tens(i), tens(j)};
    expect(apply(TD_OP_ISCLOSE, ij, 2, &a, &err), TD_DTYPE_BOOL, 1, s3, (double[]){1, 1, 0});
    /* torch's errors: dtypes, then negative tolerances, then a number for a tensor */
    struct td_tensor *d = mk(TD_DTYPE_F64, s1, 1, (double[]){1});
    struct td_operand xd[2] = {tens(x), tens(d)};
    assert_null(apply(TD_OP_ISCLOSE, xd, 2, &a, &err));
    assert_string_equal(err.msg, "Float did not match Double");
    a.rtol = -1;
    assert_null(apply(TD_OP_ISCLOSE, in, 2, &a, &err));
    assert_string_equal(err.msg, "rtol must be greater than or equal to zero, but got -1");
    a.rtol = 0;
    a.atol = -0.5;
    assert_null(apply(TD_OP_ISCLOSE, in, 2, &a, &err));
    assert_string_equal(err.msg, "atol must be greater than or equal to zero, but got -0.5");
    struct td_operand xs[2] = {tens(x), num(td_scalar_f(1.0))};
    assert_null(apply(TD_OP_ISCLOSE, xs, 2, &a, &err));
    assert_string_equal(err.msg, "isclose(): argument 'other' (position 2) must be Tensor, not "
                                 "float");
    td_tensor_unref(x);
    td_tensor_unref(y);
    td_tensor_unref(i);
    td_tensor_unref(j);
    td_tensor_unref(d);
}

static void test_addc_lerp(void **state)
{
    (void)state;
    int64_t s2[] = {2};
    struct td_err err;
    struct td_op_args a;
    td_op_args_init(&a);
    struct td_tensor *x = mk(TD_DTYPE_F32, s2, 1, (double[]){1, 2});
    struct td_tensor *t1 = mk(TD_DTYPE_F32, s2, 1, (double[]){3, 4});
    struct td_tensor *t2 = mk(TD_DTYPE_F32, s2, 1, (double[]){0.5, 2});
    struct td_operand in[3] = {tens(x), tens(t1), tens(t2)};
    /* value 1: 1 + 3 * 0.5 = 2.5, 2 + 4 * 2 = 10; addcdiv with value 2: 1 + 2 * 3 / 0.5 = 13,
    ** 2 + 2 * 4 / 2 = 6 */
    expect(apply(TD_OP_ADDCMUL, in, 3, &a, &err), TD_DTYPE_F32, 1, s2, (double[]){2.5, 10});
    a.has_value = true;
    a.value = td_scalar_i(2);
    expect(apply(TD_OP_ADDCDIV, in, 3, &a, &err), TD_DTYPE_F32, 1, s2, (double[]){13, 6});
    /* integers: value 0.5 truncates to 0, as torch casts it: the input comes back */
    struct td_tensor *l = mk(TD_DTYPE_I64, s2, 1, (double[]){1, 2});
    struct td_operand li[3] = {tens(l), tens(l), tens(l)};
    a.value = td_scalar_f(0.5);
    expect(apply(TD_OP_ADDCMUL, li, 3, &a, &err), TD_DTYPE_I64, 1, s2, (double[]){1, 2});
    assert_null(apply(TD_OP_ADDCDIV, li, 3, &a, &err));
    assert_true(strncmp(err.msg, "Integer division with addcdiv is no longer supported", 52) == 0);
    /* lerp: w = 0.25 < 0.5: 1 + 0.25 (3 - 1) = 1.5; w = 0.75: 4 - (4 - 2) 0.25 = 3.5 */
    struct td_operand ls[3] = {tens(x), tens(t1), num(td_scalar_f(0.25))};
    expect(apply(TD_OP_LERP, ls, 3, NULL, &err), TD_DTYPE_F32, 1, s2, (double[]){1.5, 2.5});
    struct td_tensor *w = mk(TD_DTYPE_F32, s2, 1, (double[]){0.25, 0.75});
    struct td_operand lt[3] = {tens(x), tens(t1), tens(w)};
    expect(apply(TD_OP_LERP, lt, 3, NULL, &err), TD_DTYPE_F32, 1, s2, (double[]){1.5, 3.5});
    struct td_tensor *d = mk(TD_DTYPE_F64, s2, 1, (double[]){1, 2});
    struct td_operand ld[3] = {tens(x), tens(d), num(td_scalar_f(0.5))};
    assert_null(apply(TD_OP_LERP, ld, 3, NULL, &err));
    assert_string_equal(err.msg, "expected dtype float for `end` but got dtype double");
    struct td_operand ll[3] = {tens(l), tens(l), num(td_scalar_f(0.5))};
    assert_null(apply(TD_OP_LERP, ll, 3, NULL, &err));
    assert_string_equal(err.msg, "\"lerp_kernel_scalar\" not implemented for 'Long'");
    td_tensor_unref(x);
    td_tensor_unref(t1);
    td_tensor_unref(t2);
    td_tensor_unref(l);
    td_tensor_unref(w);
    td_tensor_unref(d);
}

static void test_addmm_trace(void **state)
{
    (void)state;
    int64_t s2[] = {2}, s22[] = {2, 2}, s23[] = {2, 3}, s32[] = {3, 2}, s3[] = {3};
    struct td_err err;
    struct td_op_args a;
    td_op_args_init(&a);
    struct td_tensor *c = mk(TD_DTYPE_F32, s2, 1, (double[]){10, 20});
    struct td_tensor *m1 = mk(TD_DTYPE_F32, s23, 2, (double[]){1, 2, 3, 4, 5, 6});
    struct td_tensor *m2 = mk(TD_DTYPE_F32, s32, 2, (double[]){1, 0, 0, 1, 1, 1});
    struct td_operand in[3] = {tens(c), tens(m1), tens(m2)};
    /* m1 @ m2 = [[1 + 3, 2 + 3], [4 + 6, 5 + 6]] = [[4, 5], [10, 11]];
    ** beta 0.5, alpha 2: [[5 + 8, 10 + 10], [5 + 20, 10 + 22]] */
    a.has_alpha = a.has_beta = true;
    a.alpha = td_scalar_i(2);
    a.beta = td_scalar_f(0.5);
    expect(apply(TD_OP_ADDMM, in, 3, &a, &err), TD_DTYPE_F32, 2, s22, (double[]){13, 20, 25, 32});
    struct td_tensor *bad = mk(TD_DTYPE_F32, s3, 1, (double[]){1, 2, 3});
    in[0] = tens(bad);
    assert_null(apply(TD_OP_ADDMM, in, 3, &a, &err));
    assert_string_equal(err.msg, "The expanded size of the tensor (2) must match the existing "
                                 "size (3) at non-singleton dimension 1.  Target sizes: [2, 2].  "
                                 "Tensor sizes: [3]");
    /* trace of [[1, 2, 3], [4, 5, 6]]: 1 + 5; of its transpose too; int32 sums in int64 */
    struct td_operand t[1] = {tens(m1)};
    expect(apply(TD_OP_TRACE, t, 1, NULL, &err), TD_DTYPE_F32, 0, NULL, (double[]){6});
    struct td_tensor *mt = transposed(m1);
    t[0] = tens(mt);
    expect(apply(TD_OP_TRACE, t, 1, NULL, &err), TD_DTYPE_F32, 0, NULL, (double[]){6});
    struct td_tensor *i = mk(TD_DTYPE_I32, s22, 2, (double[]){7, 1, 1, -2});
    t[0] = tens(i);
    expect(apply(TD_OP_TRACE, t, 1, NULL, &err), TD_DTYPE_I64, 0, NULL, (double[]){5});
    t[0] = tens(bad);
    assert_null(apply(TD_OP_TRACE, t, 1, NULL, &err));
    assert_string_equal(err.msg, "trace: expected a matrix, but got tensor with dim 1");
    td_tensor_unref(c);
    td_tensor_unref(m1);
    td_tensor_unref(m2);
    td_tensor_unref(bad);
    td_tensor_unref(mt);
    td_tensor_unref(i);
}

/* Gradients by hand: L = sum(op(...)). addcmul(x, a, b, value 3): dL/dx = 1, dL/da = 3 b,
** dL/db = 3 a. trace of a [2, 3]: the identity pattern [[1, 0, 0], [0, 1, 0]]. */
static void test_grads(void **state)
{
    (void)state;
    int64_t s2[] = {2}, s23[] = {2, 3};
    struct td_err err;
    struct td_tensor *x = mk(TD_DTYPE_F64, s2, 1, (double[]){1, 2});
    struct td_tensor *p = mk(TD_DTYPE_F64, s2, 1, (double[]){3, 4});
    struct td_tensor *q = mk(TD_DTYPE_F64, s2, 1, (double[]){5, 6});
    x->requires_grad = p->requires_grad = q->requires_grad = true;
    struct td_op_args a;
    td_op_args_init(&a);
    a.grad_enabled = true;
    a.has_value = true;
    a.value = td_scalar_i(3);
    struct td_operand in[3] = {tens(x), tens(p), tens(q)};
    struct td_tensor *y = apply(TD_OP_ADDCMUL, in, 3, &a, &err);
    assert_non_null(y);
    struct td_op_args sa;
    td_op_args_init(&sa);
    sa.grad_enabled = true;
    struct td_operand ys[1] = {tens(y)};
    struct td_tensor *s = apply(TD_OP_SUM, ys, 1, &sa, &err);
    assert_int_equal(td_autograd_backward(s, NULL, false, NULL, &err), 0);
    expect(td_tensor_ref(x->grad), TD_DTYPE_F64, 1, s2, (double[]){1, 1});
    expect(td_tensor_ref(p->grad), TD_DTYPE_F64, 1, s2, (double[]){15, 18});
    expect(td_tensor_ref(q->grad), TD_DTYPE_F64, 1, s2, (double[]){9, 12});
    td_tensor_unref(y);
    td_tensor_unref(s);
    struct td_tensor *m = mk(TD_DTYPE_F64, s23, 2, (double[]){1, 2, 3, 4, 5, 6});
    m->requires_grad = true;
    struct td_operand mt[1] = {tens(m)};
    y = apply(TD_OP_TRACE, mt, 1, &sa, &err);
    assert_non_null(y);
    assert_string_equal(td_autograd_grad_fn_name(y), "TraceBackward0");
    assert_int_equal(td_autograd_backward(y, NULL, false, NULL, &err), 0);
    expect(td_tensor_ref(m->grad), TD_DTYPE_F64, 2, s23, (double[]){1, 0, 0, 0, 1, 0});
    td_tensor_unref(y);
    td_tensor_unref(x);
    td_tensor_unref(p);
    td_tensor_unref(q);
    td_tensor_unref(m);
}

/* Cost rules take anything before validation: numbers where tensors go, too few operands,
** and an expanded view's logical size (2^62 elements) counts in full, saturating. */
static void test_costs(void **state)
{
    (void)state;
    struct td_cost c;
    struct td_err err;
    struct td_op_args a;
    td_op_args_init(&a);
    int64_t s23[] = {2, 3};
    struct td_tensor *m = mk(TD_DTYPE_F32, s23, 2, (double[]){1, 2, 3, 4, 5, 6});
    struct td_operand nums[3] = {num(td_scalar_i(1)), num(td_scalar_i(2)), num(td_scalar_i(3))};
    enum td_op_id ops[] = {TD_OP_ISCLOSE, TD_OP_ADDCMUL, TD_OP_ADDCDIV,
                           TD_OP_LERP,    TD_OP_ADDMM,   TD_OP_TRACE};
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
        for (int n = 0; n <= 3; n++) {
            assert_int_not_equal(td_op_cost(ops[k], nums, n, &a, &c, &err), 0);
        }
    }
    /* trace of [2, 3]: two diagonal elements read */
    struct td_operand t[1] = {tens(m)};
    assert_int_equal(td_op_cost(TD_OP_TRACE, t, 1, &a, &c, &err), 0);
    assert_int_equal(c.read, 2);
    assert_int_equal(c.written, 1);
    /* addmm [2, 3] @ [3, 2] into [2, 2]: 12 products at least */
    struct td_tensor *m2 = transposed(m);
    struct td_operand mm[3] = {tens(m), tens(m), tens(m2)};
    assert_int_equal(td_op_cost(TD_OP_ADDMM, mm, 3, &a, &c, &err), 0);
    assert_true(c.flops >= 12);
    /* an expanded [2^31, 2^31] view: the count saturates rather than wrapping */
    struct td_tensor *huge = transposed(m);
    huge->shape[0] = huge->shape[1] = (int64_t)1 << 31;
    huge->strides[0] = huge->strides[1] = 0;
    struct td_operand hh[3] = {tens(huge), tens(huge), num(td_scalar_f(0.5))};
    assert_int_equal(td_op_cost(TD_OP_LERP, hh, 3, &a, &c, &err), 0);
    assert_true(c.read >= ((int64_t)1 << 62));
    assert_true(c.out_bytes > 0);
    huge->shape[0] = huge->shape[1] = 2; /* restored before the view is freed */
    td_tensor_unref(huge);
    td_tensor_unref(m2);
    td_tensor_unref(m);
}

/* div(rounding_mode=), add/sub(alpha=), round(decimals=) */
static void test_div_alpha_round(void **state)
{
    (void)state;
    int64_t s2[] = {2}, s3[] = {3};
    struct td_err err;
    struct td_op_args a;
    td_op_args_init(&a);
    struct td_tensor *f = mk(TD_DTYPE_F32, s2, 1, (double[]){7, -7.5});
    struct td_tensor *l = mk(TD_DTYPE_I64, s2, 1, (double[]){7, -7});
    struct td_operand fl[2] = {tens(f), num(td_scalar_i(2))};
    /* 7 / 2 = 3.5, -7.5 / 2 = -3.75: toward zero 3, -3; down 3, -4 */
    a.rounding_mode = TD_ROUND_TRUNC;
    expect(apply(TD_OP_DIV, fl, 2, &a, &err), TD_DTYPE_F32, 1, s2, (double[]){3, -3});
    a.rounding_mode = TD_ROUND_FLOOR;
    expect(apply(TD_OP_DIV, fl, 2, &a, &err), TD_DTYPE_F32, 1, s2, (double[]){3, -4});
    /* integers stay integers: -7 / 2 is -3 (trunc) or -4 (floor) */
    struct td_operand ll[2] = {tens(l), num(td_scalar_i(2))};
    expect(apply(TD_OP_DIV, ll, 2, &a, &err), TD_DTYPE_I64, 1, s2, (double[]){3, -4});
    a.rounding_mode = TD_ROUND_TRUNC;
    expect(apply(TD_OP_DIV, ll, 2, &a, &err), TD_DTYPE_I64, 1, s2, (double[]){3, -3});
    ll[1] = num(td_scalar_i(0));
    assert_null(apply(TD_OP_DIV, ll, 2, &a, &err));
    assert_string_equal(err.msg, "ZeroDivisionError");
    /* alpha: 7 + 2 * 7 = 21, -7 + 2 * -7 = -21; sub with alpha 3: 7 - 21, -7 + 21 */
    td_op_args_init(&a);
    a.has_alpha = true;
    a.alpha = td_scalar_i(2);
    struct td_operand lll[2] = {tens(l), tens(l)};
    expect(apply(TD_OP_ADD, lll, 2, &a, &err), TD_DTYPE_I64, 1, s2, (double[]){21, -21});
    a.alpha = td_scalar_i(3);
    expect(apply(TD_OP_SUB, lll, 2, &a, &err), TD_DTYPE_I64, 1, s2, (double[]){-14, 14});
    a.alpha = td_scalar_f(2.5);
    assert_null(apply(TD_OP_ADD, lll, 2, &a, &err));
    assert_string_equal(err.msg, "For integral input tensors, argument alpha must not be a "
                                 "floating point number.");
    a.alpha = td_scalar_b(true);
    assert_null(apply(TD_OP_ADD, lll, 2, &a, &err));
    assert_string_equal(err.msg, "Boolean alpha only supported for Boolean results.");
    /* float + alpha * scalar: 7 + 0.5 * 3 = 8.5, -7.5 + 1.5 = -6 */
    a.alpha = td_scalar_f(0.5);
    struct td_operand fs[2] = {tens(f), num(td_scalar_i(3))};
    expect(apply(TD_OP_ADD, fs, 2, &a, &err), TD_DTYPE_F32, 1, s2, (double[]){8.5, -6});
    /* round to 2 decimals: 1.2345 -> 1.23; -2.5 stays; decimals -1: 1234.5 -> 1230, 155 -> 160
    ** (half to even: 15.5 -> 16) */
    td_op_args_init(&a);
    a.decimals = -1;
    struct td_tensor *r = mk(TD_DTYPE_F64, s3, 1, (double[]){1234.5, -2.5, 155});
    struct td_operand ro[1] = {tens(r)};
    expect(apply(TD_OP_ROUND, ro, 1, &a, &err), TD_DTYPE_F64, 1, s3, (double[]){1230, -0.0, 160});
    a.decimals = 2;
    struct td_tensor *r2 = mk(TD_DTYPE_F64, s3, 1, (double[]){1.2345, -2.5, 0.125});
    ro[0] = tens(r2);
    expect(apply(TD_OP_ROUND, ro, 1, &a, &err), TD_DTYPE_F64, 1, s3, (double[]){1.23, -2.5, 0.12});
    ro[0] = tens(l);
    assert_null(apply(TD_OP_ROUND, ro, 1, &a, &err));
    assert_string_equal(err.msg, "\"round_cpu\" not implemented for 'Long'");
    td_tensor_unref(f);
    td_tensor_unref(l);
    td_tensor_unref(r);
    td_tensor_unref(r2);
}

/* diagonal (a view), diag, roll, triu_indices, tril_indices */
static void test_diag_roll_indices(void **state)
{
    (void)state;
    int64_t s34[] = {3, 4}, s2[] = {2}, s3[] = {3}, s33[] = {3, 3};
    struct td_err err;
    struct td_op_args a;
    double v[12];
    for (int i = 0; i < 12; i++) {
        v[i] = i;
    }
    struct td_tensor *m = mk(TD_DTYPE_F32, s34, 2, v); /* [[0..3], [4..7], [8..11]] */
    struct td_operand in[1] = {tens(m)};
    td_op_args_init(&a);
    a.dim2 = 1;
    /* main diagonal 0, 5, 10; offset 1: 1, 6, 11; offset -1: 4, 9; a view of m's storage */
    struct td_tensor *d = apply(TD_OP_DIAGONAL, in, 1, &a, &err);
    assert_non_null(d);
    assert_ptr_equal(d->storage, m->storage);
    assert_int_equal(d->strides[0], 5);
    td_tensor_unref(d);
    a.start = -1;
    d = apply(TD_OP_DIAGONAL, in, 1, &a, &err);
    assert_int_equal(d->shape[0], 2);
    assert_int_equal(d->offset, 4);
    td_tensor_unref(d);
    a.dim2 = 0;
    assert_null(apply(TD_OP_DIAGONAL, in, 1, &a, &err));
    assert_string_equal(err.msg, "diagonal dimensions cannot be identical 0, 0");
    /* diag of a matrix copies; of a vector [1, 2] with diagonal 1: [[0, 1, 0], [0, 0, 2],
    ** [0, 0, 0]] */
    td_op_args_init(&a);
    a.dim = 1;
    expect(apply(TD_OP_DIAG, in, 1, &a, &err), TD_DTYPE_F32, 1, s3, (double[]){1, 6, 11});
    struct td_tensor *vec = mk(TD_DTYPE_I64, s2, 1, (double[]){1, 2});
    struct td_operand vi[1] = {tens(vec)};
    expect(apply(TD_OP_DIAG, vi, 1, &a, &err), TD_DTYPE_I64, 2, s33,
           (double[]){0, 1, 0, 0, 0, 2, 0, 0, 0});
    /* roll by 1 along dim 1: each row's last element first; flattened by -13 = -1 mod 12 */
    td_op_args_init(&a);
    a.shifts[0] = 1;
    a.nshifts = 1;
    a.dims[0] = 1;
    a.ndims = 1;
    a.has_dims = true;
    expect(apply(TD_OP_ROLL, in, 1, &a, &err), TD_DTYPE_F32, 2, s34,
           (double[]){3, 0, 1, 2, 7, 4, 5, 6, 11, 8, 9, 10});
    td_op_args_init(&a);
    a.shifts[0] = -13;
    a.nshifts = 1;
    expect(apply(TD_OP_ROLL, in, 1, &a, &err), TD_DTYPE_F32, 2, s34,
           (double[]){1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0});
    a.shifts[1] = 2;
    a.nshifts = 2;
    assert_null(apply(TD_OP_ROLL, in, 1, &a, &err));
    assert_string_equal(err.msg, "shifts and dimensions must align. shifts: 2, dims:0");
    /* triu_indices(3, 3): (0,0) (0,1) (0,2) (1,1) (1,2) (2,2); tril_indices(3, 3, -1): (1,0)
    ** (2,0) (2,1) */
    td_op_args_init(&a);
    a.dim = 3;
    a.dim2 = 3;
    int64_t s26[] = {2, 6}, s23[] = {2, 3};
    expect(apply(TD_OP_TRIU_INDICES, NULL, 0, &a, &err), TD_DTYPE_I64, 2, s26,
           (double[]){0, 0, 0, 1, 1, 2, 0, 1, 2, 1, 2, 2});
    a.start = -1;
    expect(apply(TD_OP_TRIL_INDICES, NULL, 0, &a, &err), TD_DTYPE_I64, 2, s23,
           (double[]){1, 2, 2, 0, 0, 1});
    a.dim = -1;
    assert_null(apply(TD_OP_TRIU_INDICES, NULL, 0, &a, &err));
    assert_string_equal(err.msg, "row must be non-negative, got-1");
    td_tensor_unref(m);
    td_tensor_unref(vec);
}

/* einsum's two-operand and one-operand forms, and its parse errors */
static void test_einsum(void **state)
{
    (void)state;
    int64_t s23[] = {2, 3}, s32[] = {3, 2}, s22[] = {2, 2}, s2[] = {2};
    struct td_err err;
    struct td_op_args a;
    td_op_args_init(&a);
    struct td_tensor *x = mk(TD_DTYPE_F64, s23, 2, (double[]){1, 2, 3, 4, 5, 6});
    struct td_tensor *y = mk(TD_DTYPE_F64, s32, 2, (double[]){1, 0, 0, 1, 1, 1});
    struct td_operand in[2] = {tens(x), tens(y)};
    /* x @ y = [[1 + 3, 2 + 3], [4 + 6, 5 + 6]] */
    strcpy(a.equation, "ij,jk->ik");
    expect(apply(TD_OP_EINSUM, in, 2, &a, &err), TD_DTYPE_F64, 2, s22, (double[]){4, 5, 10, 11});
    /* implicit output: j summed, i and k in alphabetical order */
    strcpy(a.equation, "ij,jk");
    expect(apply(TD_OP_EINSUM, in, 2, &a, &err), TD_DTYPE_F64, 2, s22, (double[]){4, 5, 10, 11});
    /* (x @ y)^T */
    strcpy(a.equation, "ij,jk->ki");
    expect(apply(TD_OP_EINSUM, in, 2, &a, &err), TD_DTYPE_F64, 2, s22, (double[]){4, 10, 5, 11});
    /* row sums of x: 6, 15; all of x: 21; rowwise dot of x with itself: 14, 77 */
    strcpy(a.equation, "ij->i");
    expect(apply(TD_OP_EINSUM, in, 1, &a, &err), TD_DTYPE_F64, 1, s2, (double[]){6, 15});
    strcpy(a.equation, "ij->");
    expect(apply(TD_OP_EINSUM, in, 1, &a, &err), TD_DTYPE_F64, 0, NULL, (double[]){21});
    struct td_operand xx[2] = {tens(x), tens(x)};
    strcpy(a.equation, "bi,bi->b");
    expect(apply(TD_OP_EINSUM, xx, 2, &a, &err), TD_DTYPE_F64, 1, s2, (double[]){14, 77});
    /* errors, torch's words */
    strcpy(a.equation, "ij,jk->ik");
    assert_null(apply(TD_OP_EINSUM, in, 1, &a, &err));
    assert_string_equal(err.msg,
                        "einsum(): fewer operands were provided than specified in the equation");
    strcpy(a.equation, "ij->ik");
    assert_null(apply(TD_OP_EINSUM, in, 1, &a, &err));
    assert_string_equal(err.msg, "einsum(): output subscript k does not appear in the equation "
                                 "for any input operand");
    strcpy(a.equation, "ij,jk->ik");
    assert_null(apply(TD_OP_EINSUM, xx, 2, &a, &err));
    assert_string_equal(err.msg, "einsum(): subscript j has size 2 for operand 1 which does not "
                                 "broadcast with previously seen size 3");
    strcpy(a.equation, "...ij->ji");
    assert_null(apply(TD_OP_EINSUM, in, 1, &a, &err));
    assert_string_equal(err.msg, "einsum(): '...' (ellipsis) is not supported by tensord");
    strcpy(a.equation, "i,j,k->ijk");
    assert_null(apply(TD_OP_EINSUM, in, 2, &a, &err));
    assert_string_equal(err.msg, "einsum(): tensord supports one or two operands, not 3");
    td_tensor_unref(x);
    td_tensor_unref(y);
}

/* clamp_min / clamp_max: a tensor bound broadcasts, NaN propagates; the backward sends ties to
** the input */
static void test_clamp_bounds(void **state)
{
    (void)state;
    int64_t s3[] = {3};
    struct td_err err;
    struct td_tensor *x = mk(TD_DTYPE_F64, s3, 1, (double[]){1, 5, -3});
    struct td_tensor *lo = mk(TD_DTYPE_F64, s3, 1, (double[]){1, 6, NAN});
    struct td_operand in[2] = {tens(x), tens(lo)};
    expect(apply(TD_OP_CLAMP_MIN, in, 2, NULL, &err), TD_DTYPE_F64, 1, s3, (double[]){1, 6, NAN});
    in[1] = num(td_scalar_i(2));
    expect(apply(TD_OP_CLAMP_MAX, in, 2, NULL, &err), TD_DTYPE_F64, 1, s3, (double[]){1, 2, -3});
    /* grads of sum(clamp_min(x, lo)) with lo = [1, 6, 0]: x gets 1 where x >= lo (1 >= 1,
    ** -3 < 0: [1, 0, 0]); lo gets the rest [0, 1, 1] */
    struct td_tensor *lo2 = mk(TD_DTYPE_F64, s3, 1, (double[]){1, 6, 0});
    x->requires_grad = lo2->requires_grad = true;
    struct td_op_args g;
    td_op_args_init(&g);
    g.grad_enabled = true;
    struct td_operand in2[2] = {tens(x), tens(lo2)};
    struct td_tensor *y = apply(TD_OP_CLAMP_MIN, in2, 2, &g, &err);
    assert_string_equal(td_autograd_grad_fn_name(y), "ClampMinBackward1");
    struct td_operand ys[1] = {tens(y)};
    struct td_tensor *s = apply(TD_OP_SUM, ys, 1, &g, &err);
    assert_int_equal(td_autograd_backward(s, NULL, false, NULL, &err), 0);
    expect(td_tensor_ref(x->grad), TD_DTYPE_F64, 1, s3, (double[]){1, 0, 0});
    expect(td_tensor_ref(lo2->grad), TD_DTYPE_F64, 1, s3, (double[]){0, 1, 1});
    td_tensor_unref(y);
    td_tensor_unref(s);
    td_tensor_unref(x);
    td_tensor_unref(lo);
    td_tensor_unref(lo2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bitwise),
        cmocka_unit_test(test_shifts),
        cmocka_unit_test(test_rounding_and_special),
        cmocka_unit_test(test_isclose),
        cmocka_unit_test(test_addc_lerp),
        cmocka_unit_test(test_addmm_trace),
        cmocka_unit_test(test_grads),
        cmocka_unit_test(test_costs),
        cmocka_unit_test(test_div_alpha_round),
        cmocka_unit_test(test_diag_roll_indices),
        cmocka_unit_test(test_einsum),
        cmocka_unit_test(test_clamp_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
