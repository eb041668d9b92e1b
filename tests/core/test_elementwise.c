/* tests/core/test_elementwise.c — add, sub, mul, div: values, promotion, broadcasting, in place.
**
** Dtype expectations come from torch itself (promotion_cases.h, recorded by
** gen_promotion_cases.py); values are hand-derived; error texts are torch 1.13's.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>

#include "base/alloc.h"
#include "helpers.h"
#include "promotion_cases.h"

static int apply(enum td_op_id op, struct td_operand a, struct td_operand b, bool inplace,
                 struct td_tensor **out, struct td_err *err)
{
    struct td_operand in[2] = {a, b};
    return td_op_apply(op, in, 2, NULL, inplace, NULL, out, err);
}

static void test_promotion_matches_torch(void **state)
{
    (void)state;
    const int64_t s2[] = {2};
    const double ones[] = {1, 1};
    for (size_t i = 0; i < sizeof promo_cases / sizeof promo_cases[0]; i++) {
        const struct promo_case *c = &promo_cases[i];
        struct td_tensor *a = mk(c->a, s2, 1, ones);
        struct td_tensor *b = mk(c->b, s2, c->b_zero_dim ? 0 : 1, ones);
        struct td_tensor *r = NULL;
        struct td_err err;
        assert_int_equal(apply(TD_OP_ADD, tens(a), tens(b), false, &r, &err), 0);
        if ((int)r->dtype != c->add) {
            fail_msg("add %s + %s%s: got %s, torch %d", td_dtype_name(c->a), td_dtype_name(c->b),
                     c->b_zero_dim ? " (0-dim)" : "", td_dtype_name(r->dtype), c->add);
        }
        assert_true(at(r, 0) == (c->add == TD_DTYPE_BOOL ? 1 : 2));
        td_tensor_unref(r);
        assert_int_equal(apply(TD_OP_DIV, tens(a), tens(b), false, &r, &err), 0);
        assert_int_equal(r->dtype, c->div);
        assert_true(at(r, 0) == 1.0);
        td_tensor_unref(r);
        td_tensor_unref(a);
        td_tensor_unref(b);
    }
    for (size_t i = 0; i < sizeof promo_scalar_cases / sizeof promo_scalar_cases[0]; i++) {
        const struct promo_scalar_case *c = &promo_scalar_cases[i];
        struct td_tensor *a = mk(c->a, s2, 1, ones);
        struct td_tensor *r = NULL;
        assert_int_equal(apply(TD_OP_ADD, tens(a), num(c->s), false, &r, NULL), 0);
        assert_int_equal(r->dtype, c->add);
        td_tensor_unref(r);
        assert_int_equal(apply(TD_OP_DIV, tens(a), num(c->s), false, &r, NULL), 0);
        assert_int_equal(r->dtype, c->div);
        td_tensor_unref(r);
        td_tensor_unref(a);
    }
}

static void test_values(void **state)
{
    (void)state;
    const int64_t s4[] = {4};
    const double av[] = {1.5, -2.0, 3.25, 0.1}, bv[] = {0.5, 4.0, -1.0, 0.2};
    struct td_tensor *a = mk(TD_DTYPE_F32, s4, 1, av), *b = mk(TD_DTYPE_F32, s4, 1, bv), *r;
    /* float32 arithmetic, as torch does it: each result rounded to float */
    assert_int_equal(apply(TD_OP_ADD, tens(a), tens(b), false, &r, NULL), 0);
    for (int i = 0; i < 4; i++) {
        assert_true(at(r, i) == (double)((float)av[i] + (float)bv[i]));
    }
    td_tensor_unref(r);
    assert_int_equal(apply(TD_OP_SUB, tens(a), tens(b), false, &r, NULL), 0);
    for (int i = 0; i < 4; i++) {
        assert_true(at(r, i) == (double)((float)av[i] - (float)bv[i]));
    }
    td_tensor_unref(r);
    assert_int_equal(apply(TD_OP_MUL, tens(a), tens(b), false, &r, NULL), 0);
    for (int i = 0; i < 4; i++) {
        assert_true(at(r, i) == (double)((float)av[i] * (float)bv[i]));
    }
    td_tensor_unref(r);
    assert_int_equal(apply(TD_OP_DIV, tens(a), tens(b), false, &r, NULL), 0);
    for (int i = 0; i < 4; i++) {
        assert_true(at(r, i) == (double)((float)av[i] / (float)bv[i]));
    }
    td_tensor_unref(r);
    /* a scalar on the left: 3 - b */
    assert_int_equal(apply(TD_OP_SUB, num(td_scalar_i(3)), tens(b), false, &r, NULL), 0);
    assert_int_equal(r->dtype, TD_DTYPE_F32);
    assert_true(at(r, 1) == -1.0 && at(r, 2) == 4.0);
    td_tensor_unref(r);
    td_tensor_unref(a);
    td_tensor_unref(b);
    /* int / int: torch.tensor([7, -7, 1]) / torch.tensor([2, 2, 0]) = [3.5, -3.5, inf] */
    const int64_t s3[] = {3};
    const double iv[] = {7, -7, 1}, dv[] = {2, 2, 0};
    a = mk(TD_DTYPE_I64, s3, 1, iv);
    b = mk(TD_DTYPE_I64, s3, 1, dv);
    assert_int_equal(apply(TD_OP_DIV, tens(a), tens(b), false, &r, NULL), 0);
    assert_int_equal(r->dtype, TD_DTYPE_F32);
    assert_true(at(r, 0) == 3.5 && at(r, 1) == -3.5 && isinf(at(r, 2)));
    td_tensor_unref(r);
    td_tensor_unref(a);
    td_tensor_unref(b);
}

static void test_integer_wraparound(void **state)
{
    (void)state;
    /* torch.tensor([2147483647], dtype=torch.int32) + 1 == -2147483648 */
    const int64_t s1[] = {1};
    const double mx[] = {2147483647.0};
    struct td_tensor *a = mk(TD_DTYPE_I32, s1, 1, mx), *r;
    assert_int_equal(apply(TD_OP_ADD, tens(a), num(td_scalar_i(1)), false, &r, NULL), 0);
    assert_int_equal(r->dtype, TD_DTYPE_I32);
    assert_true(at(r, 0) == -2147483648.0);
    td_tensor_unref(r);
    assert_int_equal(apply(TD_OP_MUL, tens(a), tens(a), false, &r, NULL), 0);
    assert_true(at(r, 0) == 1.0); /* (2^31-1)^2 mod 2^32 = 1 */
    td_tensor_unref(r);
    td_tensor_unref(a);
}

static void test_bool_ops(void **state)
{
    (void)state;
    const int64_t s4[] = {4};
    const double p[] = {1, 1, 0, 0}, q[] = {1, 0, 1, 0};
    struct td_tensor *a = mk(TD_DTYPE_BOOL, s4, 1, p), *b = mk(TD_DTYPE_BOOL, s4, 1, q), *r;
    assert_int_equal(apply(TD_OP_ADD, tens(a), tens(b), false, &r, NULL), 0);
    assert_int_equal(r->dtype, TD_DTYPE_BOOL); /* logical or */
    assert_true(at(r, 0) == 1 && at(r, 1) == 1 && at(r, 2) == 1 && at(r, 3) == 0);
    td_tensor_unref(r);
    assert_int_equal(apply(TD_OP_MUL, tens(a), tens(b), false, &r, NULL), 0);
    assert_true(at(r, 0) == 1 && at(r, 1) == 0 && at(r, 2) == 0 && at(r, 3) == 0);
    td_tensor_unref(r);
    struct td_err err;
    assert_int_equal(apply(TD_OP_SUB, tens(a), tens(b), false, &r, &err), TD_EDTYPE);
    assert_string_equal(err.msg, "Subtraction, the `-` operator, with two bool tensors is not "
                                 "supported. Use the `^` or `logical_xor()` operator instead.");
    assert_int_equal(apply(TD_OP_SUB, tens(a), num(td_scalar_i(1)), false, &r, &err), TD_EDTYPE);
    assert_string_equal(err.msg, "Subtraction, the `-` operator, with a bool tensor is not "
                                 "supported. If you are trying to invert a mask, use the `~` or "
                                 "`logical_not()` operator instead.");
    td_tensor_unref(a);
    td_tensor_unref(b);
}

/* [2,1,3] + [4,1] -> [2,4,3], out[i,j,k] = a[i,0,k] + b[j,0] */
static void test_broadcasting(void **state)
{
    (void)state;
    const int64_t sa[] = {2, 1, 3}, sb[] = {4, 1};
    double av[6], bv[4];
    for (int i = 0; i < 6; i++) {
        av[i] = i * 10;
    }
    for (int i = 0; i < 4; i++) {
        bv[i] = i;
    }
    struct td_tensor *a = mk(TD_DTYPE_I64, sa, 3, av), *b = mk(TD_DTYPE_I64, sb, 2, bv), *r;
    assert_int_equal(apply(TD_OP_ADD, tens(a), tens(b), false, &r, NULL), 0);
    assert_int_equal(r->ndim, 3);
    assert_int_equal(r->shape[0], 2);
    assert_int_equal(r->shape[1], 4);
    assert_int_equal(r->shape[2], 3);
    for (int i = 0; i < 2; i++) {
        for (int j = 0; j < 4; j++) {
            for (int k = 0; k < 3; k++) {
                assert_true(at(r, (i * 4 + j) * 3 + k) == av[i * 3 + k] + bv[j]);
            }
        }
    }
    td_tensor_unref(r);
    /* a 0-dim tensor broadcasts everywhere */
    const double five[] = {5};
    struct td_tensor *z = mk(TD_DTYPE_I64, sa, 0, five);
    assert_int_equal(apply(TD_OP_MUL, tens(z), tens(a), false, &r, NULL), 0);
    assert_int_equal(r->ndim, 3);
    assert_true(at(r, 5) == 250);
    td_tensor_unref(r);
    /* 0-dim with 0-dim gives 0-dim */
    assert_int_equal(apply(TD_OP_MUL, tens(z), tens(z), false, &r, NULL), 0);
    assert_int_equal(r->ndim, 0);
    assert_true(at(r, 0) == 25);
    td_tensor_unref(r);
    td_tensor_unref(z);
    /* mismatch, torch's words */
    const int64_t s23[] = {2, 3}, s2[] = {2};
    struct td_tensor *m = mk(TD_DTYPE_F32, s23, 2, av), *v = mk(TD_DTYPE_F32, s2, 1, bv);
    struct td_err err;
    assert_int_equal(apply(TD_OP_ADD, tens(m), tens(v), false, &r, &err), TD_ESHAPE);
    assert_string_equal(err.msg, "The size of tensor a (3) must match the size of tensor b (2) "
                                 "at non-singleton dimension 1");
    td_tensor_unref(m);
    td_tensor_unref(v);
    td_tensor_unref(a);
    td_tensor_unref(b);
}

static void test_zero_size(void **state)
{
    (void)state;
    const int64_t s03[] = {0, 3}, s3[] = {3}, s0[] = {0}, s2[] = {2};
    const double v[] = {1, 2, 3};
    struct td_tensor *e = mk(TD_DTYPE_F32, s03, 2, v), *t = mk(TD_DTYPE_F32, s3, 1, v), *r;
    assert_int_equal(apply(TD_OP_ADD, tens(e), tens(t), false, &r, NULL), 0);
    assert_int_equal(r->ndim, 2);
    assert_int_equal(r->shape[0], 0);
    assert_int_equal(r->numel, 0);
    td_tensor_unref(r);
    /* [0] + [2]: torch says "The size of tensor a (0) must match the size of tensor b (2) at
    ** non-singleton dimension 0" */
    struct td_tensor *z = mk(TD_DTYPE_F32, s0, 1, v), *two = mk(TD_DTYPE_F32, s2, 1, v);
    struct td_err err;
    assert_int_equal(apply(TD_OP_ADD, tens(z), tens(two), false, &r, &err), TD_ESHAPE);
    assert_string_equal(err.msg, "The size of tensor a (0) must match the size of tensor b (2) "
                                 "at non-singleton dimension 0");
    td_tensor_unref(z);
    td_tensor_unref(two);
    td_tensor_unref(e);
    td_tensor_unref(t);
}

static void test_non_contiguous_input(void **state)
{
    (void)state;
    const int64_t s23[] = {2, 3}, s32[] = {3, 2};
    const double v[] = {1, 2, 3, 4, 5, 6}, w[] = {10, 20, 30, 40, 50, 60};
    struct td_tensor *a = mk(TD_DTYPE_F64, s23, 2, v),
                     *at_ = transposed(a); /* [[1,4],[2,5],[3,6]] */
    struct td_tensor *b = mk(TD_DTYPE_F64, s32, 2, w), *r;
    assert_int_equal(apply(TD_OP_ADD, tens(at_), tens(b), false, &r, NULL), 0);
    const double want[] = {11, 24, 32, 45, 53, 66};
    for (int i = 0; i < 6; i++) {
        assert_true(at(r, i) == want[i]);
    }
    td_tensor_unref(r);
    /* a transposed int view, cast on the way (int64 view * float64) */
    struct td_tensor *ai = mk(TD_DTYPE_I64, s23, 2, v), *ait = transposed(ai);
    assert_int_equal(apply(TD_OP_MUL, tens(ait), tens(b), false, &r, NULL), 0);
    assert_int_equal(r->dtype, TD_DTYPE_F64);
    const double prod[] = {10, 80, 60, 200, 150, 360};
    for (int i = 0; i < 6; i++) {
        assert_true(at(r, i) == prod[i]);
    }
    td_tensor_unref(r);
    td_tensor_unref(ait);
    td_tensor_unref(ai);
    td_tensor_unref(at_);
    td_tensor_unref(a);
    td_tensor_unref(b);
}

static void test_inplace_rules(void **state)
{
    (void)state;
    const int64_t s3[] = {3}, s23[] = {2, 3};
    const double v[] = {1, 2, 3, 4, 5, 6};
    struct td_tensor *l = mk(TD_DTYPE_I64, s3, 1, v), *r;
    struct td_err err;
    /* torch.tensor([1, 2, 3]).add_(1.5) */
    assert_int_equal(apply(TD_OP_ADD, tens(l), num(td_scalar_f(1.5)), true, &r, &err), TD_EDTYPE);
    assert_string_equal(err.msg, "result type Float can't be cast to the desired output type Long");
    /* .div_(2) */
    assert_int_equal(apply(TD_OP_DIV, tens(l), num(td_scalar_i(2)), true, &r, &err), TD_EDTYPE);
    assert_string_equal(err.msg, "result type Float can't be cast to the desired output type Long");
    assert_true(at(l, 0) == 1 && at(l, 2) == 3); /* untouched */
    /* add_(5) works in place and returns self */
    assert_int_equal(apply(TD_OP_ADD, tens(l), num(td_scalar_i(5)), true, &r, NULL), 0);
    assert_ptr_equal(r, l);
    td_tensor_unref(r);
    assert_true(at(l, 0) == 6 && at(l, 2) == 8);
    /* bool.add_(1): result type Long can't be cast to the desired output type Bool */
    struct td_tensor *bt = mk(TD_DTYPE_BOOL, s3, 1, v);
    assert_int_equal(apply(TD_OP_ADD, tens(bt), num(td_scalar_i(1)), true, &r, &err), TD_EDTYPE);
    assert_string_equal(err.msg, "result type Long can't be cast to the desired output type Bool");
    td_tensor_unref(bt);
    /* torch.ones(3).add_(torch.ones(2, 3)) */
    struct td_tensor *f = mk(TD_DTYPE_F32, s3, 1, v), *big = mk(TD_DTYPE_F32, s23, 2, v);
    assert_int_equal(apply(TD_OP_ADD, tens(f), tens(big), true, &r, &err), TD_ESHAPE);
    assert_string_equal(err.msg, "output with shape [3] doesn't match the broadcast shape [2, 3]");
    /* int32.add_(int64 tensor): computed in int64, stored as int32 */
    struct td_tensor *i32 = mk(TD_DTYPE_I32, s3, 1, v);
    assert_int_equal(apply(TD_OP_ADD, tens(i32), tens(l), true, &r, NULL), 0);
    assert_int_equal(i32->dtype, TD_DTYPE_I32);
    assert_true(at(i32, 0) == 7 && at(i32, 2) == 11);
    td_tensor_unref(r);
    /* float.mul_(broadcast row) */
    assert_int_equal(apply(TD_OP_MUL, tens(big), tens(f), true, &r, NULL), 0);
    assert_true(at(big, 0) == 1 && at(big, 4) == 10 && at(big, 5) == 18);
    td_tensor_unref(r);
    td_tensor_unref(i32);
    td_tensor_unref(f);
    td_tensor_unref(big);
    td_tensor_unref(l);
}

/* A pinned buffer (a reply being written) keeps its bytes when the tensor is written in place. */
static void test_copy_on_write(void **state)
{
    (void)state;
    const int64_t s2[] = {2};
    const double v[] = {1, 2};
    struct td_quota q;
    td_quota_init(&q, "session memory", 0, NULL);
    struct td_tensor *t;
    assert_int_equal(td_tensor_empty(&t, TD_DTYPE_I64, s2, 1, &q, NULL), 0);
    ((int64_t *)td_tensor_data(t))[0] = 1;
    ((int64_t *)td_tensor_data(t))[1] = 2;
    assert_int_equal(atomic_load(&q.used), 16);
    struct td_buffer *pin = td_tensor_pin(t), *r = NULL;
    struct td_tensor *res;
    assert_int_equal(apply(TD_OP_MUL, tens(t), num(td_scalar_i(10)), true, &res, NULL), 0);
    td_tensor_unref(res);
    assert_int_equal(((int64_t *)pin->data)[0], 1);
    assert_int_equal(((int64_t *)pin->data)[1], 2);
    assert_true(at(t, 0) == 10 && at(t, 1) == 20);
    assert_int_equal(atomic_load(&q.used), 32); /* both copies are charged while both live */
    td_buffer_unref(pin);
    assert_int_equal(atomic_load(&q.used), 16);
    /* unpinned: written in place, no copy */
    void *before = td_tensor_data(t);
    assert_int_equal(apply(TD_OP_ADD, tens(t), num(td_scalar_i(1)), true, &res, NULL), 0);
    td_tensor_unref(res);
    assert_ptr_equal(td_tensor_data(t), before);
    td_tensor_unref(t);
    assert_int_equal(atomic_load(&q.used), 0);
    (void)r;
    (void)v;
}

static void test_quota(void **state)
{
    (void)state;
    struct td_quota global, session;
    td_quota_init(&global, "server memory", 100, NULL);
    td_quota_init(&session, "session memory", 64, &global);
    session.max_charge = 40;
    const int64_t s4[] = {4}, s6[] = {6};
    struct td_tensor *a, *b;
    struct td_err err;
    assert_int_equal(td_tensor_empty(&a, TD_DTYPE_I64, s4, 1, &session, &err), 0); /* 32 */
    assert_int_equal(td_tensor_empty(&b, TD_DTYPE_I64, s6, 1, &session, &err), TD_ELIMIT);
    assert_string_equal(err.msg, "tensor of 48 bytes exceeds max_tensor_bytes 40");
    assert_int_equal(td_tensor_empty(&b, TD_DTYPE_I64, s4, 1, &session, &err), 0); /* 64 */
    struct td_tensor *c;
    assert_int_equal(td_tensor_empty(&c, TD_DTYPE_BOOL, s4, 1, &session, &err), TD_EQUOTA);
    assert_string_equal(err.msg, "session memory quota exceeded: 64 bytes");
    assert_int_equal(atomic_load(&global.used), 64);
    struct td_operand in[2] = {tens(a), tens(b)};
    assert_int_equal(td_op_apply(TD_OP_ADD, in, 2, NULL, false, &session, &c, &err), TD_EQUOTA);
    td_tensor_unref(a);
    td_tensor_unref(b);
    assert_int_equal(atomic_load(&session.used), 0);
    assert_int_equal(atomic_load(&global.used), 0);
}

/* The 1st, 2nd, 3rd ... allocation fails: a clean error, nothing leaked. */
static void test_allocation_failure_sweep(void **state)
{
    (void)state;
    const int64_t s23[] = {2, 3}, s3[] = {3};
    const double v[] = {1, 2, 3, 4, 5, 6};
    struct td_tensor *a = mk(TD_DTYPE_I32, s23, 2, v), *b = mk(TD_DTYPE_F64, s3, 1, v);
    struct td_tensor *pinned = mk(TD_DTYPE_F64, s3, 1, v);
    int64_t base = td_alloc_live_bytes();
    for (int variant = 0; variant < 3; variant++) {
        bool done = false;
        for (int64_t k = 1; k < 100 && !done; k++) {
            struct td_tensor *r = NULL;
            struct td_err err;
            struct td_buffer *pin = variant == 2 ? td_tensor_pin(pinned) : NULL;
            td_alloc_fail_at(k);
            int rc;
            if (variant == 0) { /* promotion: int32 cast to float64 into a new tensor */
                rc = apply(TD_OP_MUL, tens(a), tens(b), false, &r, &err);
            } else if (variant == 1) { /* a constructor */
                rc = td_tensor_full(&r, TD_DTYPE_F32, s23, 2, td_scalar_f(1.0), NULL, &err);
            } else { /* copy-on-write in place */
                rc = apply(TD_OP_ADD, tens(pinned), num(td_scalar_f(1.0)), true, &r, &err);
            }
            int64_t used = td_alloc_count();
            td_alloc_fail_at(0);
            if (rc == 0) {
                td_tensor_unref(r);
            } else {
                assert_int_equal(rc, TD_ENOMEM);
            }
            td_buffer_unref(pin);
            if (variant != 2) {
                assert_int_equal(td_alloc_live_bytes(), base);
            }
            done = used < k;
        }
        assert_true(done);
    }
    td_tensor_unref(pinned);
    td_tensor_unref(a);
    td_tensor_unref(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_promotion_matches_torch),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_integer_wraparound),
        cmocka_unit_test(test_bool_ops),
        cmocka_unit_test(test_broadcasting),
        cmocka_unit_test(test_zero_size),
        cmocka_unit_test(test_non_contiguous_input),
        cmocka_unit_test(test_inplace_rules),
        cmocka_unit_test(test_copy_on_write),
        cmocka_unit_test(test_quota),
        cmocka_unit_test(test_allocation_failure_sweep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
