/* tests/core/test_sort.c — sorting and selection (server/core/ops/sort.c) through td_op_apply:
** values, indices, dtypes and torch's error texts, every expected value worked out by hand in
** the comments; gradients by autograd (hand-derived too); the second and third outputs
** (more_out) under allocation failure; the cost rules at logical sizes; td_op_nout. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "base/alloc.h"
#include "core/autograd.h"
#include "helpers.h"

/* Runs op on x with args; outputs 1 and 2 go to more[] when wanted. */
static int run(enum td_op_id op, struct td_tensor *x, struct td_op_args *a, struct td_tensor **out,
               struct td_tensor **more, bool want1, bool want2, struct td_err *err)
{
    struct td_operand in[1] = {tens(x)};
    if (more != NULL) {
        more[0] = more[1] = NULL;
        a->more_out = more;
        a->want_more[0] = want1;
        a->want_more[1] = want2;
    }
    *out = NULL;
    return td_op_apply(op, in, 1, a, false, NULL, out, err);
}

static void expect(const struct td_tensor *t, enum td_dtype dt, int ndim, const int64_t *shape,
                   const double *v)
{
    expect_meta(t, dt, ndim, shape);
    for (int64_t i = 0; i < t->numel; i++) {
        double g = at(t, i);
        if (!(g == v[i] || (isnan(g) && isnan(v[i])))) {
            fail_msg("element %lld: got %.17g, want %.17g", (long long)i, g, v[i]);
        }
    }
}

static void drop(struct td_tensor **ts, int n)
{
    for (int i = 0; i < n; i++) {
        td_tensor_unref(ts[i]);
        ts[i] = NULL;
    }
}

/* X = [[3, 1, 2], [1, 4, 5]] */
static struct td_tensor *X(enum td_dtype dt)
{
    return mk(dt, (int64_t[]){2, 3}, 2, (double[]){3, 1, 2, 1, 4, 5});
}

static void test_sort(void **state)
{
    (void)state;
    struct td_err err;
    struct td_op_args a;
    struct td_tensor *x = X(TD_DTYPE_F64), *v, *more[2];
    int64_t s23[] = {2, 3};
    /* rows ascending: [1, 2, 3] from [1, 2, 0]; [1, 4, 5] from [0, 1, 2] */
    td_op_args_init(&a);
    a.dim = -1;
    assert_int_equal(run(TD_OP_SORT, x, &a, &v, more, true, false, &err), 0);
    expect(v, TD_DTYPE_F64, 2, s23, (double[]){1, 2, 3, 1, 4, 5});
    expect(more[0], TD_DTYPE_I64, 2, s23, (double[]){1, 2, 0, 0, 1, 2});
    assert_null(more[1]);
    td_tensor_unref(v);
    td_tensor_unref(more[0]);
    /* columns descending: [3, 1], [4, 1] from [1, 0], [5, 2] from [1, 0] */
    td_op_args_init(&a);
    a.dim = 0;
    a.descending = true;
    assert_int_equal(run(TD_OP_SORT, x, &a, &v, more, true, false, &err), 0);
    expect(v, TD_DTYPE_F64, 2, s23, (double[]){3, 4, 5, 1, 1, 2});
    expect(more[0], TD_DTYPE_I64, 2, s23, (double[]){0, 1, 1, 1, 0, 0});
    td_tensor_unref(v);
    td_tensor_unref(more[0]);
    /* argsort of the transposed view [[3, 1], [1, 4], [2, 5]] along dim 1: [1, 0], [0, 1], [0, 1] */
    struct td_tensor *xt = transposed(x);
    td_op_args_init(&a);
    a.dim = 1;
    assert_int_equal(run(TD_OP_ARGSORT, xt, &a, &v, NULL, false, false, &err), 0);
    expect(v, TD_DTYPE_I64, 2, (int64_t[]){3, 2}, (double[]){1, 0, 0, 1, 0, 1});
    td_tensor_unref(v);
    td_tensor_unref(xt);
    /* NaN above every number: [2, nan, -1] -> [-1, 2, nan] from [2, 0, 1]; descending
    ** [nan, 2, -1] from [1, 0, 2] */
    struct td_tensor *n = mk(TD_DTYPE_F32, (int64_t[]){3}, 1, (double[]){2, NAN, -1});
    td_op_args_init(&a);
    a.dim = 0;
    assert_int_equal(run(TD_OP_SORT, n, &a, &v, more, true, false, &err), 0);
    expect(v, TD_DTYPE_F32, 1, (int64_t[]){3}, (double[]){-1, 2, NAN});
    expect(more[0], TD_DTYPE_I64, 1, (int64_t[]){3}, (double[]){2, 0, 1});
    drop(&v, 1);
    drop(more, 1);
    a.descending = true;
    assert_int_equal(run(TD_OP_SORT, n, &a, &v, more, true, false, &err), 0);
    expect(v, TD_DTYPE_F32, 1, (int64_t[]){3}, (double[]){NAN, 2, -1});
    expect(more[0], TD_DTYPE_I64, 1, (int64_t[]){3}, (double[]){1, 0, 2});
    drop(&v, 1);
    drop(more, 1);
    td_tensor_unref(n);
    /* stable ties: [3, 1, 3, 1, 2] -> [1, 1, 2, 3, 3] from [1, 3, 4, 0, 2]; descending
    ** [3, 3, 2, 1, 1] from [0, 2, 4, 1, 3] */
    struct td_tensor *t = mk(TD_DTYPE_I64, (int64_t[]){5}, 1, (double[]){3, 1, 3, 1, 2});
    td_op_args_init(&a);
    assert_int_equal(run(TD_OP_SORT, t, &a, &v, more, true, false, &err), 0);
    expect(v, TD_DTYPE_I64, 1, (int64_t[]){5}, (double[]){1, 1, 2, 3, 3});
    expect(more[0], TD_DTYPE_I64, 1, (int64_t[]){5}, (double[]){1, 3, 4, 0, 2});
    drop(&v, 1);
    drop(more, 1);
    a.descending = true;
    assert_int_equal(run(TD_OP_SORT, t, &a, &v, more, true, false, &err), 0);
    expect(more[0], TD_DTYPE_I64, 1, (int64_t[]){5}, (double[]){0, 2, 4, 1, 3});
    drop(&v, 1);
    drop(more, 1);
    td_tensor_unref(t);
    /* errors: torch's text */
    td_op_args_init(&a);
    a.dim = 2;
    assert_int_not_equal(run(TD_OP_SORT, x, &a, &v, NULL, false, false, &err), 0);
    assert_string_equal(err.msg,
                        "Dimension out of range (expected to be in range of [-2, 1], but got 2)");
    td_tensor_unref(x);
}

static void test_topk_kthvalue_median_mode(void **state)
{
    (void)state;
    struct td_err err;
    struct td_op_args a;
    struct td_tensor *x = X(TD_DTYPE_F32), *v, *more[2];
    /* topk 2 of each row: [3, 2] at [0, 2]; [5, 4] at [2, 1] */
    td_op_args_init(&a);
    a.k = 2;
    a.dim = -1;
    a.descending = true;
    assert_int_equal(run(TD_OP_TOPK, x, &a, &v, more, true, false, &err), 0);
    expect(v, TD_DTYPE_F32, 2, (int64_t[]){2, 2}, (double[]){3, 2, 5, 4});
    expect(more[0], TD_DTYPE_I64, 2, (int64_t[]){2, 2}, (double[]){0, 2, 2, 1});
    drop(&v, 1);
    drop(more, 1);
    /* smallest 1 of each column: [1, 1, 2] at [1, 0, 0], kept as [1, 3] */
    a.k = 1;
    a.dim = 0;
    a.descending = false;
    assert_int_equal(run(TD_OP_TOPK, x, &a, &v, more, true, false, &err), 0);
    expect(v, TD_DTYPE_F32, 2, (int64_t[]){1, 3}, (double[]){1, 1, 2});
    expect(more[0], TD_DTYPE_I64, 2, (int64_t[]){1, 3}, (double[]){1, 0, 0});
    drop(&v, 1);
    drop(more, 1);
    a.k = 4;
    a.dim = -1;
    assert_int_not_equal(run(TD_OP_TOPK, x, &a, &v, NULL, false, false, &err), 0);
    assert_string_equal(err.msg, "selected index k out of range");
    /* kthvalue k=2 along rows: 2 at 2; 4 at 1. keepdim gives [2, 1] */
    td_op_args_init(&a);
    a.k = 2;
    a.dim = 1;
    a.keepdim = true;
    assert_int_equal(run(TD_OP_KTHVALUE, x, &a, &v, more, true, false, &err), 0);
    expect(v, TD_DTYPE_F32, 2, (int64_t[]){2, 1}, (double[]){2, 4});
    expect(more[0], TD_DTYPE_I64, 2, (int64_t[]){2, 1}, (double[]){2, 1});
    drop(&v, 1);
    drop(more, 1);
    a.k = 0;
    assert_int_not_equal(run(TD_OP_KTHVALUE, x, &a, &v, NULL, false, false, &err), 0);
    assert_string_equal(err.msg, "kthvalue(): selected number k out of range for dimension 1");
    /* median of all: sorted [1, 1, 2, 3, 4, 5], the lower of the middle two is 2 */
    td_op_args_init(&a);
    assert_int_equal(run(TD_OP_MEDIAN, x, &a, &v, more, true, false, &err), 0);
    expect(v, TD_DTYPE_F32, 0, NULL, (double[]){2});
    assert_null(more[0]); /* no indices without a dim */
    drop(&v, 1);
    /* median per column: [3, 1] -> 1 at 1; [1, 4] -> 1 at 0; [2, 5] -> 2 at 0 */
    a.dim = 0;
    a.has_dim = true;
    assert_int_equal(run(TD_OP_MEDIAN, x, &a, &v, more, true, false, &err), 0);
    expect(v, TD_DTYPE_F32, 1, (int64_t[]){3}, (double[]){1, 1, 2});
    expect(more[0], TD_DTYPE_I64, 1, (int64_t[]){3}, (double[]){1, 0, 0});
    drop(&v, 1);
    drop(more, 1);
    /* a line with NaN has median NaN, at the NaN: [1, nan, 0] -> nan at 1 */
    struct td_tensor *n = mk(TD_DTYPE_F64, (int64_t[]){3}, 1, (double[]){1, NAN, 0});
    a.dim = 0;
    assert_int_equal(run(TD_OP_MEDIAN, n, &a, &v, more, true, false, &err), 0);
    expect(v, TD_DTYPE_F64, 0, NULL, (double[]){NAN});
    expect(more[0], TD_DTYPE_I64, 0, NULL, (double[]){1});
    drop(&v, 1);
    drop(more, 1);
    td_tensor_unref(n);
    /* empty dim: torch's text */
    struct td_tensor *e = mk(TD_DTYPE_F32, (int64_t[]){0, 3}, 2, NULL);
    assert_int_not_equal(run(TD_OP_MEDIAN, e, &a, &v, NULL, false, false, &err), 0);
    assert_string_equal(err.msg, "median(): Expected reduction dim 0 to have non-zero size.");
    td_tensor_unref(e);
    /* mode of [1, 2, 2, 3, 3, 1]: each twice, the smallest (1) wins, at its last index 5 */
    struct td_tensor *m = mk(TD_DTYPE_I64, (int64_t[]){6}, 1, (double[]){1, 2, 2, 3, 3, 1});
    td_op_args_init(&a);
    a.dim = -1;
    assert_int_equal(run(TD_OP_MODE, m, &a, &v, more, true, false, &err), 0);
    expect(v, TD_DTYPE_I64, 0, NULL, (double[]){1});
    expect(more[0], TD_DTYPE_I64, 0, NULL, (double[]){5});
    drop(&v, 1);
    drop(more, 1);
    td_tensor_unref(m);
    td_tensor_unref(x);
}

static void test_unique(void **state)
{
    (void)state;
    struct td_err err;
    struct td_op_args a;
    struct td_tensor *v, *more[2];
    /* [[3, 1], [2, 3]]: values [1, 2, 3]; inverse [[2, 0], [1, 2]]; counts [1, 1, 2] */
    struct td_tensor *x = mk(TD_DTYPE_I64, (int64_t[]){2, 2}, 2, (double[]){3, 1, 2, 3});
    td_op_args_init(&a);
    assert_int_equal(run(TD_OP_UNIQUE, x, &a, &v, more, true, true, &err), 0);
    expect(v, TD_DTYPE_I64, 1, (int64_t[]){3}, (double[]){1, 2, 3});
    expect(more[0], TD_DTYPE_I64, 2, (int64_t[]){2, 2}, (double[]){2, 0, 1, 2});
    expect(more[1], TD_DTYPE_I64, 1, (int64_t[]){3}, (double[]){1, 1, 2});
    drop(&v, 1);
    drop(more, 2);
    /* counts only */
    assert_int_equal(run(TD_OP_UNIQUE, x, &a, &v, more, false, true, &err), 0);
    assert_null(more[0]);
    expect(more[1], TD_DTYPE_I64, 1, (int64_t[]){3}, (double[]){1, 1, 2});
    drop(&v, 1);
    drop(more, 2);
    /* empty: no values, no counts */
    struct td_tensor *e = mk(TD_DTYPE_F32, (int64_t[]){0}, 1, NULL);
    assert_int_equal(run(TD_OP_UNIQUE, e, &a, &v, more, false, true, &err), 0);
    expect(v, TD_DTYPE_F32, 1, (int64_t[]){0}, NULL);
    expect(more[1], TD_DTYPE_I64, 1, (int64_t[]){0}, NULL);
    drop(&v, 1);
    drop(more, 2);
    td_tensor_unref(e);
    td_tensor_unref(x);
}

static void test_amax_amin_count_cumprod_var_mean(void **state)
{
    (void)state;
    struct td_err err;
    struct td_op_args a;
    struct td_tensor *x = X(TD_DTYPE_F32), *v, *more[2];
    /* amax of all: 5; per column [3, 4, 5]; amin per row kept [[1], [1]] */
    td_op_args_init(&a);
    a.has_dims = true;
    assert_int_equal(run(TD_OP_AMAX, x, &a, &v, NULL, false, false, &err), 0);
    expect(v, TD_DTYPE_F32, 0, NULL, (double[]){5});
    drop(&v, 1);
    a.dims[0] = 0;
    a.ndims = 1;
    assert_int_equal(run(TD_OP_AMAX, x, &a, &v, NULL, false, false, &err), 0);
    expect(v, TD_DTYPE_F32, 1, (int64_t[]){3}, (double[]){3, 4, 5});
    drop(&v, 1);
    a.dims[0] = -1;
    a.keepdim = true;
    assert_int_equal(run(TD_OP_AMIN, x, &a, &v, NULL, false, false, &err), 0);
    expect(v, TD_DTYPE_F32, 2, (int64_t[]){2, 1}, (double[]){1, 1});
    drop(&v, 1);
    a.dims[0] = a.dims[1] = 0;
    a.ndims = 2;
    assert_int_not_equal(run(TD_OP_AMAX, x, &a, &v, NULL, false, false, &err), 0);
    assert_string_equal(err.msg, "dim 0 appears multiple times in the list of dims");
    /* count_nonzero of [[0, 1, 2], [0, 0, 3]] per column: [0, 1, 2] */
    struct td_tensor *z = mk(TD_DTYPE_I32, (int64_t[]){2, 3}, 2, (double[]){0, 1, 2, 0, 0, 3});
    td_op_args_init(&a);
    a.dims[0] = 0;
    a.ndims = 1;
    a.has_dims = true;
    assert_int_equal(run(TD_OP_COUNT_NONZERO, z, &a, &v, NULL, false, false, &err), 0);
    expect(v, TD_DTYPE_I64, 1, (int64_t[]){3}, (double[]){0, 1, 2});
    drop(&v, 1);
    td_tensor_unref(z);
    /* cumprod of int32 [1, 2, 3, 4]: int64 [1, 2, 6, 24] */
    struct td_tensor *c = mk(TD_DTYPE_I32, (int64_t[]){4}, 1, (double[]){1, 2, 3, 4});
    td_op_args_init(&a);
    assert_int_equal(run(TD_OP_CUMPROD, c, &a, &v, NULL, false, false, &err), 0);
    expect(v, TD_DTYPE_I64, 1, (int64_t[]){4}, (double[]){1, 2, 6, 24});
    drop(&v, 1);
    td_tensor_unref(c);
    /* var_mean of [1, 2, 3, 4]: mean 2.5; var (2.25 + .25 + .25 + 2.25) / 3 = 5/3 */
    struct td_tensor *w = mk(TD_DTYPE_F64, (int64_t[]){4}, 1, (double[]){1, 2, 3, 4});
    td_op_args_init(&a);
    assert_int_equal(run(TD_OP_VAR_MEAN, w, &a, &v, more, true, false, &err), 0);
    expect(v, TD_DTYPE_F64, 0, NULL, (double[]){5.0 / 3.0});
    expect(more[0], TD_DTYPE_F64, 0, NULL, (double[]){2.5});
    drop(&v, 1);
    drop(more, 1);
    td_tensor_unref(w);
    td_tensor_unref(x);
}

/* Gradients by hand. cumprod of x = [2, 0, 3] weighted by w = [1, 10, 100]:
** L = x0 + 10 x0 x1 + 100 x0 x1 x2, so dL/dx = [1 + 10 x1 + 100 x1 x2, 10 x0 + 100 x0 x2,
** 100 x0 x1] = [1, 620, 0] (exact through the zero). amax of [1, 3, 3]: the two tied 3s share
** the gradient, [0, 0.5, 0.5]. sort of [3, 1, 2] weighted by [1, 10, 100] (sorted [1, 2, 3]
** from [1, 2, 0]): dL/dx = [100, 1, 10]. */
static void test_grads(void **state)
{
    (void)state;
    struct td_err err;
    struct td_op_args a;
    int64_t s3[] = {3};
    struct td_tensor *x = mk(TD_DTYPE_F64, s3, 1, (double[]){2, 0, 3});
    struct td_tensor *w = mk(TD_DTYPE_F64, s3, 1, (double[]){1, 10, 100});
    x->requires_grad = true;
    struct td_tensor *y, *p, *s, *more[2];
    td_op_args_init(&a);
    a.grad_enabled = true;
    assert_int_equal(run(TD_OP_CUMPROD, x, &a, &y, NULL, false, false, &err), 0);
    assert_string_equal(td_node_name(y->grad_fn), "CumprodBackward0");
    struct td_operand pw[2] = {tens(y), tens(w)};
    assert_int_equal(td_op_apply(TD_OP_MUL, pw, 2, &a, false, NULL, &p, &err), 0);
    assert_int_equal(run(TD_OP_SUM, p, &a, &s, NULL, false, false, &err), 0);
    assert_int_equal(td_autograd_backward(s, NULL, false, NULL, &err), 0);
    expect(x->grad, TD_DTYPE_F64, 1, s3, (double[]){1, 620, 0});
    drop((struct td_tensor *[]){y, p, s}, 3);

    struct td_tensor *t = mk(TD_DTYPE_F64, s3, 1, (double[]){1, 3, 3});
    t->requires_grad = true;
    td_op_args_init(&a);
    a.grad_enabled = true;
    assert_int_equal(run(TD_OP_AMAX, t, &a, &y, NULL, false, false, &err), 0);
    assert_string_equal(td_node_name(y->grad_fn), "AmaxBackward0");
    assert_int_equal(td_autograd_backward(y, NULL, false, NULL, &err), 0);
    expect(t->grad, TD_DTYPE_F64, 1, s3, (double[]){0, 0.5, 0.5});
    td_tensor_unref(y);

    struct td_tensor *u = mk(TD_DTYPE_F64, s3, 1, (double[]){3, 1, 2});
    u->requires_grad = true;
    td_op_args_init(&a);
    a.grad_enabled = true;
    a.dim = -1;
    assert_int_equal(run(TD_OP_SORT, u, &a, &y, more, true, false, &err), 0);
    assert_string_equal(td_node_name(y->grad_fn), "SortBackward0");
    assert_null(more[0]->grad_fn); /* indices never require grad */
    assert_false(more[0]->requires_grad);
    td_op_args_init(&a);
    a.grad_enabled = true;
    struct td_operand uw[2] = {tens(y), tens(w)};
    assert_int_equal(td_op_apply(TD_OP_MUL, uw, 2, &a, false, NULL, &p, &err), 0);
    assert_int_equal(run(TD_OP_SUM, p, &a, &s, NULL, false, false, &err), 0);
    assert_int_equal(td_autograd_backward(s, NULL, false, NULL, &err), 0);
    expect(u->grad, TD_DTYPE_F64, 1, s3, (double[]){100, 1, 10});
    drop((struct td_tensor *[]){y, p, s, more[0], x, w, t, u}, 8);
}

/* Every allocation of sort (with indices) and unique (with inverse and counts) failing in turn:
** a clean TD_ENOMEM, nothing left allocated, the extra outputs released by the caller. */
static void test_alloc_failure(void **state)
{
    (void)state;
    enum td_op_id ops[] = {TD_OP_SORT, TD_OP_UNIQUE, TD_OP_VAR_MEAN, TD_OP_TOPK};
    struct td_tensor *x = X(TD_DTYPE_F64);
    for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++) {
        int64_t base = td_alloc_live_bytes();
        for (int64_t k = 1;; k++) {
            struct td_err err;
            struct td_op_args a;
            struct td_tensor *v = NULL, *more[2];
            td_op_args_init(&a);
            a.k = 1;
            a.dim = -1;
            td_alloc_fail_at(k);
            int rc = run(ops[o], x, &a, &v, more, true, ops[o] == TD_OP_UNIQUE, &err);
            int64_t used = td_alloc_count();
            td_alloc_fail_at(0);
            if (rc != 0) {
                assert_int_equal(rc, TD_ENOMEM);
                assert_null(v);
            } else {
                assert_non_null(more[0]);
            }
            drop(&v, 1);
            drop(more, 2);
            if (td_alloc_live_bytes() != base) {
                fail_msg("%s with allocation %lld failing leaks %lld bytes", td_ops[ops[o]].name,
                         (long long)k, (long long)(td_alloc_live_bytes() - base));
            }
            if (rc == 0 && used < k) {
                break;
            }
        }
    }
    td_tensor_unref(x);
}

/* Cost rules count logical sizes: sort of a [2^20, 2^20] expanded view of one float32 reads
** 2^40 elements and would produce 2^40 values (4 bytes) and indices (8 bytes); unique's three
** outputs are bounded by the input's numel (4 + 16 bytes an element). A bad dim is invalid. */
static void test_costs(void **state)
{
    (void)state;
    struct td_err err;
    struct td_cost c;
    struct td_op_args a;
    struct td_tensor *one = mk(TD_DTYPE_F32, (int64_t[]){1, 1}, 2, (double[]){1});
    struct td_tensor *big = NULL;
    struct td_operand in[1] = {tens(one)};
    td_op_args_init(&a);
    a.has_dims = true;
    a.dims[0] = a.dims[1] = (int64_t)1 << 20;
    a.ndims = 2;
    assert_int_equal(td_op_apply(TD_OP_EXPAND, in, 1, &a, false, NULL, &big, &err), 0);
    int64_t n = (int64_t)1 << 40;
    struct td_operand bin[1] = {tens(big)};
    td_op_args_init(&a);
    a.dim = -1;
    memset(&c, 0, sizeof c);
    assert_int_equal(td_op_cost(TD_OP_SORT, bin, 1, &a, &c, &err), 0);
    assert_int_equal(c.read, n);
    assert_int_equal(c.out_bytes, n * 12);
    memset(&c, 0, sizeof c);
    assert_int_equal(td_op_cost(TD_OP_UNIQUE, bin, 1, &a, &c, &err), 0);
    assert_int_equal(c.read, n);
    assert_int_equal(c.out_bytes, n * 20);
    memset(&c, 0, sizeof c);
    assert_int_equal(td_op_cost(TD_OP_AMAX, bin, 1, &a, &c, &err), 0);
    assert_int_equal(c.read, n);
    a.dim = 5;
    assert_int_not_equal(td_op_cost(TD_OP_CUMPROD, bin, 1, &a, &c, &err), 0);
    /* a number where the tensor goes is invalid, not a crash */
    struct td_operand num1[1] = {num(td_scalar_i(1))};
    assert_int_not_equal(td_op_cost(TD_OP_SORT, num1, 1, &a, &c, &err), 0);
    td_tensor_unref(big);
    td_tensor_unref(one);
}

/* td_op_nout reads ops.def's `-> a, b`. */
static void test_nout(void **state)
{
    (void)state;
    assert_int_equal(td_op_nout(TD_OP_SORT), 2);
    assert_int_equal(td_op_nout(TD_OP_MEDIAN), 2);
    assert_int_equal(td_op_nout(TD_OP_UNIQUE), 3);
    assert_int_equal(td_op_nout(TD_OP_VAR_MEAN), 2);
    assert_int_equal(td_op_nout(TD_OP_ARGSORT), 1);
    assert_int_equal(td_op_nout(TD_OP_ADD), 1);
    assert_int_equal(td_op_nout((enum td_op_id) - 1), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sort),   cmocka_unit_test(test_topk_kthvalue_median_mode),
        cmocka_unit_test(test_unique), cmocka_unit_test(test_amax_amin_count_cumprod_var_mean),
        cmocka_unit_test(test_grads),  cmocka_unit_test(test_alloc_failure),
        cmocka_unit_test(test_costs),  cmocka_unit_test(test_nout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
