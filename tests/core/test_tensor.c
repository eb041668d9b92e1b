/* tests/core/test_tensor.c — shapes, construction (full, arange, adopt) and strided copies. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "base/alloc.h"
#include "helpers.h"

static void test_shape_check(void **state)
{
    (void)state;
    int64_t numel, nbytes;
    struct td_err err;
    const int64_t ok[] = {2, 3, 4};
    assert_int_equal(td_shape_check(ok, 3, TD_DTYPE_F64, &numel, &nbytes, &err), 0);
    assert_int_equal(numel, 24);
    assert_int_equal(nbytes, 192);
    const int64_t neg[] = {2, -3};
    assert_int_equal(td_shape_check(neg, 2, TD_DTYPE_F32, NULL, NULL, &err), TD_EINVAL);
    /* torch.zeros(2, -3) */
    assert_string_equal(err.msg, "Trying to create tensor with negative dimension -3: [2, -3]");
    const int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    assert_int_equal(td_shape_check(nine, 9, TD_DTYPE_F32, NULL, NULL, &err), TD_EINVAL);
    const int64_t over[] = {INT64_C(1) << 32, INT64_C(1) << 32};
    assert_int_equal(td_shape_check(over, 2, TD_DTYPE_BOOL, NULL, NULL, &err), TD_ELIMIT);
    const int64_t bytes_over[] = {INT64_C(1) << 61};  /* fits as a count, not as float64 bytes */
    assert_int_equal(td_shape_check(bytes_over, 1, TD_DTYPE_F64, NULL, NULL, &err), TD_ELIMIT);
    /* a zero dim makes the tensor empty, but the other sizes must still multiply within 2^63:
    ** contiguous strides are their product (an overflow there was UB, found by the hostile
    ** suite under UBSan) */
    const int64_t zero[] = {0, INT64_C(1) << 31, INT64_C(1) << 31};
    assert_int_equal(td_shape_check(zero, 3, TD_DTYPE_F64, &numel, &nbytes, &err), 0);
    assert_int_equal(numel, 0);
    const int64_t zero_over[] = {0, INT64_MAX, INT64_MAX};
    assert_int_equal(td_shape_check(zero_over, 3, TD_DTYPE_F64, &numel, &nbytes, &err),
                     TD_ELIMIT);
    /* 0-dim: one element */
    assert_int_equal(td_shape_check(ok, 0, TD_DTYPE_I32, &numel, &nbytes, &err), 0);
    assert_int_equal(numel, 1);
    assert_int_equal(nbytes, 4);
    char buf[64];
    assert_string_equal(td_shape_str(buf, sizeof buf, ok, 3), "[2, 3, 4]");
    assert_string_equal(td_shape_str(buf, sizeof buf, ok, 0), "[]");
}

static void test_full_casts_like_torch(void **state)
{
    (void)state;
    const int64_t s2[] = {2};
    struct td_tensor *t;
    /* torch.full((2,), 2.7, dtype=torch.int64) -> [2, 2]; torch.full((2,), -2.7, int32) -> -2 */
    assert_int_equal(td_tensor_full(&t, TD_DTYPE_I64, s2, 1, td_scalar_f(2.7), NULL, NULL), 0);
    assert_true(at(t, 0) == 2 && at(t, 1) == 2);
    td_tensor_unref(t);
    assert_int_equal(td_tensor_full(&t, TD_DTYPE_I32, s2, 1, td_scalar_f(-2.7), NULL, NULL), 0);
    assert_true(at(t, 0) == -2);
    td_tensor_unref(t);
    /* bool: nonzero is True */
    assert_int_equal(td_tensor_full(&t, TD_DTYPE_BOOL, s2, 1, td_scalar_f(0.5), NULL, NULL), 0);
    assert_true(at(t, 0) == 1);
    td_tensor_unref(t);
    assert_int_equal(td_tensor_full(&t, TD_DTYPE_F32, s2, 1, td_scalar_b(true), NULL, NULL), 0);
    assert_true(at(t, 1) == 1.0);
    td_tensor_unref(t);
    assert_int_equal(td_tensor_full(&t, TD_DTYPE_F64, s2, 0, td_scalar_i(-3), NULL, NULL), 0);
    assert_int_equal(t->ndim, 0);
    assert_true(at(t, 0) == -3.0);
    td_tensor_unref(t);
}

static void test_arange_like_torch(void **state)
{
    (void)state;
    struct td_tensor *t;
    struct td_err err;
    /* torch.arange(5) -> int64 [0..4] */
    enum td_dtype dt = td_arange_dtype(td_scalar_i(0), td_scalar_i(5), td_scalar_i(1));
    assert_int_equal(dt, TD_DTYPE_I64);
    assert_int_equal(td_tensor_arange(&t, dt, td_scalar_i(0), td_scalar_i(5), td_scalar_i(1),
                                      NULL, &err), 0);
    assert_int_equal(t->numel, 5);
    assert_true(at(t, 4) == 4);
    td_tensor_unref(t);
    /* torch.arange(0, 1, 0.1): float32, 10 elements, last 0.9 (as float) */
    dt = td_arange_dtype(td_scalar_i(0), td_scalar_i(1), td_scalar_f(0.1));
    assert_int_equal(dt, TD_DTYPE_F32);
    assert_int_equal(td_tensor_arange(&t, dt, td_scalar_i(0), td_scalar_i(1), td_scalar_f(0.1),
                                      NULL, &err), 0);
    assert_int_equal(t->numel, 10);
    assert_true(at(t, 9) == (double)(float)0.9);
    td_tensor_unref(t);
    /* torch.arange(10, 0, -3) -> [10, 7, 4, 1] */
    assert_int_equal(td_tensor_arange(&t, TD_DTYPE_I64, td_scalar_i(10), td_scalar_i(0),
                                      td_scalar_i(-3), NULL, &err), 0);
    assert_int_equal(t->numel, 4);
    assert_true(at(t, 0) == 10 && at(t, 3) == 1);
    td_tensor_unref(t);
    assert_int_equal(td_tensor_arange(&t, TD_DTYPE_I64, td_scalar_i(0), td_scalar_i(10),
                                      td_scalar_i(0), NULL, &err), TD_EINVAL);
    assert_string_equal(err.msg, "step must be nonzero");
    assert_int_equal(td_tensor_arange(&t, TD_DTYPE_I64, td_scalar_i(10), td_scalar_i(0),
                                      td_scalar_i(1), NULL, &err), TD_EINVAL);
    assert_string_equal(err.msg, "upper bound and larger bound inconsistent with step sign");
    assert_int_equal(td_tensor_arange(&t, TD_DTYPE_BOOL, td_scalar_i(0), td_scalar_i(10),
                                      td_scalar_i(1), NULL, &err), TD_EDTYPE);
    assert_string_equal(err.msg, "\"arange_cpu\" not implemented for 'Bool'");
}

static void test_adopt_and_copy_out(void **state)
{
    (void)state;
    const int64_t s23[] = {2, 3};
    int32_t *data = td_malloc(24);
    for (int i = 0; i < 6; i++) {
        data[i] = i + 1;
    }
    struct td_tensor *t;
    struct td_err err;
    assert_int_equal(td_tensor_adopt(&t, TD_DTYPE_I32, s23, 2, data, 24, NULL, &err), 0);
    assert_ptr_equal(td_tensor_data(t), data);  /* adopted, not copied */
    assert_true(td_tensor_is_contiguous(t));
    struct td_tensor *v = transposed(t);
    assert_false(td_tensor_is_contiguous(v));
    int32_t out[6];
    td_tensor_copy_out(v, out);
    const int32_t want[] = {1, 4, 2, 5, 3, 6};
    assert_memory_equal(out, want, sizeof want);
    td_tensor_unref(v);
    td_tensor_unref(t);
    /* a length mismatch frees the data it was given */
    int64_t base = td_alloc_live_bytes();
    void *d2 = td_malloc(20);
    assert_int_equal(td_tensor_adopt(&t, TD_DTYPE_I32, s23, 2, d2, 20, NULL, &err), TD_EINVAL);
    assert_int_equal(td_alloc_live_bytes(), base);
}

static void test_constructor_allocation_failures(void **state)
{
    (void)state;
    const int64_t s3[] = {3};
    int64_t base = td_alloc_live_bytes();
    for (int64_t k = 1; k < 20; k++) {
        struct td_tensor *t = NULL;
        struct td_err err;
        td_alloc_fail_at(k);
        int rc = td_tensor_arange(&t, TD_DTYPE_F64, td_scalar_i(0), td_scalar_i(3),
                                  td_scalar_i(1), NULL, &err);
        int64_t used = td_alloc_count();
        td_alloc_fail_at(0);
        if (rc == 0) {
            td_tensor_unref(t);
        } else {
            assert_int_equal(rc, TD_ENOMEM);
        }
        assert_int_equal(td_alloc_live_bytes(), base);
        if (used < k) {
            return;
        }
    }
    fail_msg("arange made more than 20 allocations");
    (void)s3;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shape_check),
        cmocka_unit_test(test_full_casts_like_torch),
        cmocka_unit_test(test_arange_like_torch),
        cmocka_unit_test(test_adopt_and_copy_out),
        cmocka_unit_test(test_constructor_allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
