/* tests/core/test_tensor.c — shapes, construction (full, arange, adopt) and strided copies, and
** every constructor (and copy on write) under allocation failure. */
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
    const int64_t bytes_over[] = {INT64_C(1) << 61}; /* fits as a count, not as float64 bytes */
    assert_int_equal(td_shape_check(bytes_over, 1, TD_DTYPE_F64, NULL, NULL, &err), TD_ELIMIT);
    /* a zero dim makes the tensor empty, but the other sizes must still multiply within 2^63:
    ** contiguous strides are their product (an overflow there was UB, found by the hostile
    ** suite under UBSan) */
    const int64_t zero[] = {0, INT64_C(1) << 31, INT64_C(1) << 31};
    assert_int_equal(td_shape_check(zero, 3, TD_DTYPE_F64, &numel, &nbytes, &err), 0);
    assert_int_equal(numel, 0);
    const int64_t zero_over[] = {0, INT64_MAX, INT64_MAX};
    assert_int_equal(td_shape_check(zero_over, 3, TD_DTYPE_F64, &numel, &nbytes, &err), TD_ELIMIT);
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
    assert_int_equal(td_tensor_arange(&t, dt, td_scalar_i(0), td_scalar_i(5), td_scalar_i(1), NULL,
                                      &err),
                     0);
    assert_int_equal(t->numel, 5);
    assert_true(at(t, 4) == 4);
    td_tensor_unref(t);
    /* torch.arange(0, 1, 0.1): float32, 10 elements, last 0.9 (as float) */
    dt = td_arange_dtype(td_scalar_i(0), td_scalar_i(1), td_scalar_f(0.1));
    assert_int_equal(dt, TD_DTYPE_F32);
    assert_int_equal(td_tensor_arange(&t, dt, td_scalar_i(0), td_scalar_i(1), td_scalar_f(0.1),
                                      NULL, &err),
                     0);
    assert_int_equal(t->numel, 10);
    assert_true(at(t, 9) == (double)(float)0.9);
    td_tensor_unref(t);
    /* torch.arange(10, 0, -3) -> [10, 7, 4, 1] */
    assert_int_equal(td_tensor_arange(&t, TD_DTYPE_I64, td_scalar_i(10), td_scalar_i(0),
                                      td_scalar_i(-3), NULL, &err),
                     0);
    assert_int_equal(t->numel, 4);
    assert_true(at(t, 0) == 10 && at(t, 3) == 1);
    td_tensor_unref(t);
    assert_int_equal(td_tensor_arange(&t, TD_DTYPE_I64, td_scalar_i(0), td_scalar_i(10),
                                      td_scalar_i(0), NULL, &err),
                     TD_EINVAL);
    assert_string_equal(err.msg, "step must be nonzero");
    assert_int_equal(td_tensor_arange(&t, TD_DTYPE_I64, td_scalar_i(10), td_scalar_i(0),
                                      td_scalar_i(1), NULL, &err),
                     TD_EINVAL);
    assert_string_equal(err.msg, "upper bound and larger bound inconsistent with step sign");
    assert_int_equal(td_tensor_arange(&t, TD_DTYPE_BOOL, td_scalar_i(0), td_scalar_i(10),
                                      td_scalar_i(1), NULL, &err),
                     TD_EDTYPE);
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
    assert_ptr_equal(td_tensor_data(t), data); /* adopted, not copied */
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
        int rc = td_tensor_arange(&t, TD_DTYPE_F64, td_scalar_i(0), td_scalar_i(3), td_scalar_i(1),
                                  NULL, &err);
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

/* ---- constructors under allocation failure ----
**
** Each constructor runs with its 1st, 2nd, 3rd ... allocation failing, charged to a quota. A run
** that fails must return TD_ENOMEM, leave no byte allocated and nothing charged; a run that
** succeeds must give the tensor the case expects (hand-derived), also when it succeeded past
** its armed allocation (a swallowed failure must not change the result). The sweep ends with the
** first run that reaches none of its armed allocations. */

struct ctor_case {
    const char *what;
    void (*prepare)(void *ctx); /* before the fault is armed: inputs, taken buffers */
    int (*make)(struct td_tensor **out, void *ctx, struct td_quota *q, struct td_err *err);
    enum td_dtype dtype;
    int ndim;
    int64_t shape[2];
    const double *want; /* values in C order; NULL: uninitialised contents */
};

static void ctor_sweep(const struct ctor_case *c, void *ctx)
{
    int64_t base = td_alloc_live_bytes();
    for (int64_t k = 1; k < 100; k++) {
        struct td_quota q;
        td_quota_init(&q, "test", 0, NULL);
        if (c->prepare != NULL) {
            c->prepare(ctx);
        }
        struct td_tensor *t = NULL;
        struct td_err err;
        td_err_clear(&err);
        td_alloc_fail_at(k);
        int rc = c->make(&t, ctx, &q, &err);
        int64_t used = td_alloc_count();
        td_alloc_fail_at(0);
        if (rc == 0) {
            assert_int_equal(t->dtype, c->dtype);
            assert_int_equal(t->ndim, c->ndim);
            for (int i = 0; i < c->ndim; i++) {
                assert_int_equal(t->shape[i], c->shape[i]);
            }
            assert_true(td_tensor_is_contiguous(t));
            for (int64_t i = 0; c->want != NULL && i < t->numel; i++) {
                if (at(t, i) != c->want[i]) {
                    fail_msg("%s with allocation %lld armed: element %lld is %g, not %g", c->what,
                             (long long)k, (long long)i, at(t, i), c->want[i]);
                }
            }
            assert_int_equal(atomic_load(&q.used), (int64_t)td_tensor_nbytes(t));
            td_tensor_unref(t);
        } else if (rc != TD_ENOMEM || err.code != TD_ENOMEM) {
            fail_msg("%s with allocation %lld failing returned %d (%s), not TD_ENOMEM", c->what,
                     (long long)k, rc, err.msg);
        }
        assert_int_equal(atomic_load(&q.used), 0);
        if (td_alloc_live_bytes() != base) {
            fail_msg("%s with allocation %lld failing leaks %lld bytes", c->what, (long long)k,
                     (long long)(td_alloc_live_bytes() - base));
        }
        if (used < k) {
            assert_int_equal(rc, 0); /* the run that reached no armed allocation succeeded */
            assert_true(k > 1);      /* and every constructor allocates something */
            return;
        }
    }
    fail_msg("%s made more than 100 allocations", c->what);
}

static const int64_t S23[] = {2, 3};

static int make_full(struct td_tensor **out, void *ctx, struct td_quota *q, struct td_err *err)
{
    (void)ctx;
    return td_tensor_full(out, TD_DTYPE_I32, S23, 2, td_scalar_f(-2.7), q, err);
}

static int make_empty(struct td_tensor **out, void *ctx, struct td_quota *q, struct td_err *err)
{
    (void)ctx;
    return td_tensor_empty(out, TD_DTYPE_F64, S23, 2, q, err);
}

static int make_arange(struct td_tensor **out, void *ctx, struct td_quota *q, struct td_err *err)
{
    (void)ctx;
    return td_tensor_arange(out, TD_DTYPE_F64, td_scalar_i(0), td_scalar_i(3), td_scalar_i(1), q,
                            err);
}

/* adopt takes a buffer: a new one before each run (freed by the tensor, or by adopt on failure,
** which the leak check sees). */
static void prepare_adopt(void *ctx)
{
    int32_t *d = td_malloc(6 * sizeof *d);
    assert_non_null(d);
    for (int i = 0; i < 6; i++) {
        d[i] = 10 * (i + 1);
    }
    *(int32_t **)ctx = d;
}

static int make_adopt(struct td_tensor **out, void *ctx, struct td_quota *q, struct td_err *err)
{
    return td_tensor_adopt(out, TD_DTYPE_I32, S23, 2, *(int32_t **)ctx, 6 * sizeof(int32_t), q,
                           err);
}

/* contiguous() of a transposed view copies its elements into new storage. */
static int make_contiguous(struct td_tensor **out, void *ctx, struct td_quota *q,
                           struct td_err *err)
{
    struct td_operand in[1] = {tens(ctx)};
    struct td_op_args a;
    td_op_args_init(&a);
    return td_op_apply(TD_OP_CONTIGUOUS, in, 1, &a, false, q, out, err);
}

static void test_constructor_allocation_sweeps(void **state)
{
    (void)state;
    /* torch.full((2, 3), -2.7, dtype=torch.int32): truncation toward zero */
    static const double full_want[] = {-2, -2, -2, -2, -2, -2};
    static const double adopt_want[] = {10, 20, 30, 40, 50, 60};
    static const double arange_want[] = {0, 1, 2};
    /* [[1, 2, 3], [4, 5, 6]].t() in C order */
    static const double contig_want[] = {1, 4, 2, 5, 3, 6};
    const struct ctor_case full = {"full", NULL, make_full, TD_DTYPE_I32, 2, {2, 3}, full_want};
    const struct ctor_case empty = {"empty", NULL, make_empty, TD_DTYPE_F64, 2, {2, 3}, NULL};
    const struct ctor_case arange = {"arange", NULL,   make_arange, TD_DTYPE_F64,
                                     1,        {3, 0}, arange_want};
    const struct ctor_case adopt = {"adopt", prepare_adopt, make_adopt, TD_DTYPE_I32,
                                    2,       {2, 3},        adopt_want};
    const struct ctor_case contig = {"contiguous", NULL,       make_contiguous, TD_DTYPE_F64, 2,
                                     {3, 2},       contig_want};
    ctor_sweep(&full, NULL);
    ctor_sweep(&empty, NULL);
    ctor_sweep(&arange, NULL);
    int32_t *adopt_buf = NULL;
    ctor_sweep(&adopt, &adopt_buf);
    const double v[] = {1, 2, 3, 4, 5, 6};
    struct td_tensor *x = mk(TD_DTYPE_F64, S23, 2, v);
    struct td_tensor *xt = transposed(x);
    assert_false(td_tensor_is_contiguous(xt));
    ctor_sweep(&contig, xt);
    td_tensor_unref(xt);
    td_tensor_unref(x);
}

/* Copy on write under allocation failure: with the tensor's bytes pinned (a queued Get reply),
** prepare_write must copy them first. A failed copy leaves the tensor exactly as it was (its
** bytes, its buffer, nothing charged); a successful one gives a private buffer holding the same
** bytes while the pin keeps the old ones. */
static void test_prepare_write_allocation_sweep(void **state)
{
    (void)state;
    const double v[] = {1, 2, 3, 4, 5, 6};
    for (int64_t k = 1; k < 100; k++) {
        struct td_quota q;
        td_quota_init(&q, "test", 0, NULL);
        struct td_tensor *t;
        assert_int_equal(td_tensor_empty(&t, TD_DTYPE_F64, S23, 2, &q, NULL), 0);
        memcpy(td_tensor_data(t), v, sizeof v);
        int64_t charged = atomic_load(&q.used);
        int64_t base = td_alloc_live_bytes();
        struct td_buffer *pin = td_tensor_pin(t);
        void *before = td_tensor_data(t);
        struct td_err err;
        td_alloc_fail_at(k);
        int rc = td_tensor_prepare_write(t, &err);
        int64_t used = td_alloc_count();
        td_alloc_fail_at(0);
        if (rc == 0) {
            assert_ptr_not_equal(td_tensor_data(t), before); /* a private copy */
        } else {
            if (rc != TD_ENOMEM) {
                fail_msg("prepare_write with allocation %lld failing returned %d (%s)",
                         (long long)k, rc, err.msg);
            }
            assert_ptr_equal(td_tensor_data(t), before);
            assert_int_equal(atomic_load(&q.used), charged);
        }
        assert_memory_equal(td_tensor_data(t), v, sizeof v);
        assert_memory_equal(before, v, sizeof v); /* the pinned bytes are untouched */
        td_buffer_unref(pin);
        if (rc != 0 && td_alloc_live_bytes() != base) {
            fail_msg("prepare_write with allocation %lld failing leaks %lld bytes", (long long)k,
                     (long long)(td_alloc_live_bytes() - base));
        }
        td_tensor_unref(t);
        assert_int_equal(atomic_load(&q.used), 0);
        if (used < k) {
            assert_int_equal(rc, 0);
            assert_true(k > 1);
            return;
        }
    }
    fail_msg("prepare_write made more than 100 allocations");
}

/* A view of base's storage made by hand (a stack copy: never referenced or freed). */
static struct td_tensor view_of(const struct td_tensor *base, int ndim, const int64_t *shape,
                                const int64_t *strides, int64_t offset)
{
    struct td_tensor v = *base;
    v.ndim = ndim;
    v.numel = 1;
    for (int i = 0; i < ndim; i++) {
        v.shape[i] = shape[i];
        v.strides[i] = strides[i];
        v.numel *= shape[i];
    }
    v.offset = offset;
    return v;
}

/* ATen/MemoryOverlap's facts, as torch answers them (tests/python/test_overlap_writes.py runs
** the ops against torch): a[1:] and a[:-1] partially overlap; a 3x3 view and its transpose
** cover the same bytes with other strides (partial); a[1::2] and a[::2] are not dense (too hard
** to say); disjoint halves do not overlap; an expanded dim repeats memory. */
static void test_overlap_rules(void **state)
{
    (void)state;
    struct td_tensor *a, *b;
    const int64_t s10[] = {10}, s9[] = {9}, s5[] = {5}, s33[] = {3, 3};
    assert_int_equal(td_tensor_full(&a, TD_DTYPE_F32, s10, 1, (struct td_scalar){0}, NULL, NULL),
                     0);
    assert_int_equal(td_tensor_full(&b, TD_DTYPE_F32, s10, 1, (struct td_scalar){0}, NULL, NULL),
                     0);
    const int64_t one[] = {1}, two[] = {2}, zero[] = {0}, r33[] = {3, 1}, c33[] = {1, 3};
    struct td_tensor tail = view_of(a, 1, s9, one, 1), head = view_of(a, 1, s9, one, 0);
    assert_int_equal(td_tensor_overlap(&tail, &head), TD_OVERLAP_PARTIAL);
    assert_int_equal(td_tensor_overlap(&head, &head), TD_OVERLAP_FULL);
    struct td_tensor head2 = view_of(a, 1, s9, one, 0);
    assert_int_equal(td_tensor_overlap(&head, &head2), TD_OVERLAP_FULL);
    struct td_tensor lo = view_of(a, 1, s5, one, 0), hi = view_of(a, 1, s5, one, 5);
    assert_int_equal(td_tensor_overlap(&lo, &hi), TD_OVERLAP_NO);
    struct td_tensor other = view_of(b, 1, s9, one, 0);
    assert_int_equal(td_tensor_overlap(&head, &other), TD_OVERLAP_NO);
    struct td_tensor odd = view_of(a, 1, s5, two, 1), even = view_of(a, 1, s5, two, 0);
    assert_false(td_tensor_is_dense(&odd));
    assert_int_equal(td_tensor_overlap(&odd, &even), TD_OVERLAP_TOO_HARD);
    struct td_tensor m = view_of(a, 2, s33, r33, 0), mt = view_of(a, 2, s33, c33, 0);
    assert_true(td_tensor_is_dense(&mt));
    assert_int_equal(td_tensor_overlap(&m, &mt), TD_OVERLAP_PARTIAL);
    struct td_tensor empty = view_of(a, 1, zero, one, 3);
    assert_int_equal(td_tensor_overlap(&empty, &head), TD_OVERLAP_NO);
    const int64_t s3[] = {3}, s1[] = {1};
    struct td_tensor expanded = view_of(a, 1, s3, zero, 0), single = view_of(a, 1, s1, zero, 0);
    assert_true(td_tensor_internal_overlap(&expanded));
    assert_false(td_tensor_internal_overlap(&single)); /* a size-1 dim may have any stride */
    assert_false(td_tensor_internal_overlap(&head));
    td_tensor_unref(a);
    td_tensor_unref(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shape_check),
        cmocka_unit_test(test_overlap_rules),
        cmocka_unit_test(test_full_casts_like_torch),
        cmocka_unit_test(test_arange_like_torch),
        cmocka_unit_test(test_adopt_and_copy_out),
        cmocka_unit_test(test_constructor_allocation_failures),
        cmocka_unit_test(test_constructor_allocation_sweeps),
        cmocka_unit_test(test_prepare_write_allocation_sweep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
