/* tests/core/test_cost.c — the cost model (td_op_cost and ops.def's cost rules), checked shape
** arithmetic, charged kernel temporaries and td_print_cost.
**
** Every expected number is derived by hand from the op's definition: a sum of
** tensor([1.]).expand(2**30, 2**30) reads 2^60 elements; matmul does b * n * m * k
** multiply-adds; repeat, outer and mm are sized by their output; linspace by its steps. The
** walk over td_ops[] feeds every rule valid and hostile operands and asserts only what must
** always hold: no crash, no negative field.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "base/alloc.h"
#include "base/checked.h"
#include "core/print.h"
#include "helpers.h"

#define P30 ((int64_t)1 << 30)

/* x.expand(shape): a stride-0 view (through the op, as a client makes it). */
static struct td_tensor *expanded(struct td_tensor *x, const int64_t *shape, int ndim)
{
    struct td_op_args a;
    td_op_args_init(&a);
    memcpy(a.dims, shape, sizeof(int64_t) * (size_t)ndim);
    a.ndims = ndim;
    a.has_dims = true;
    struct td_operand in[1] = {tens(x)};
    struct td_tensor *v;
    assert_int_equal(td_op_apply(TD_OP_EXPAND, in, 1, &a, false, NULL, &v, NULL), 0);
    return v;
}

static struct td_tensor *scalar1(enum td_dtype dt)
{
    const int64_t one[] = {1};
    const double v[] = {1};
    return mk(dt, one, 1, v);
}

static void cost_of(enum td_op_id id, const struct td_operand *in, int nin,
                    const struct td_op_args *a, struct td_cost *c)
{
    struct td_err err;
    int rc = td_op_cost(id, in, nin, a, c, &err);
    if (rc != 0) {
        fail_msg("td_op_cost(%s): %s", td_ops[id].name, err.msg);
    }
}

/* Finding 2: the sum of a 2^60-element expanded view is 1 element of output and 2^60 read. */
static void test_reduction_of_expanded_view_reads_logical_size(void **state)
{
    (void)state;
    struct td_tensor *one = scalar1(TD_DTYPE_F32);
    const int64_t big[] = {P30, P30};
    struct td_tensor *v = expanded(one, big, 2);
    struct td_operand in[1] = {tens(v)};
    struct td_cost c;
    cost_of(TD_OP_SUM, in, 1, NULL, &c);
    assert_int_equal(c.read, (int64_t)1 << 60);
    assert_int_equal(c.written, 1);
    assert_int_equal(c.flops, 0);
    assert_int_equal(c.out_bytes, 4);
    assert_true(td_cost_work(&c) > ((int64_t)1 << 60));
    /* with dim=1: the same read, 2^30 written */
    struct td_op_args a;
    td_op_args_init(&a);
    a.dims[0] = 1;
    a.ndims = 1;
    a.has_dims = true;
    cost_of(TD_OP_SUM, in, 1, &a, &c);
    assert_int_equal(c.read, (int64_t)1 << 60);
    assert_int_equal(c.written, P30);
    assert_int_equal(c.out_bytes, 4 * P30);
    /* std walks twice: 2^61 */
    cost_of(TD_OP_STD, in, 1, NULL, &c);
    assert_int_equal(c.read, (int64_t)1 << 61);
    /* max(dim=0) */
    td_op_args_init(&a);
    a.dim = 0;
    a.has_dim = true;
    cost_of(TD_OP_MAX, in, 1, &a, &c);
    assert_int_equal(c.read, (int64_t)1 << 60);
    assert_int_equal(c.written, P30);
    /* the view itself cost a constant */
    struct td_op_args ea;
    td_op_args_init(&ea);
    ea.dims[0] = P30;
    ea.dims[1] = P30;
    ea.ndims = 2;
    struct td_operand x[1] = {tens(one)};
    cost_of(TD_OP_EXPAND, x, 1, &ea, &c);
    assert_int_equal(c.read, 0);
    assert_int_equal(c.written, 1);
    assert_int_equal(c.out_bytes, 0);
    td_tensor_unref(v);
    td_tensor_unref(one);
}

/* Finding 1: three bool views of 6148914691236517206 elements sum to 2^64 + 2. cat and stack
** fail with a clear error, nothing is allocated, and the cost saturates instead of wrapping. */
static void test_cat_of_huge_views_fails_cleanly(void **state)
{
    (void)state;
    struct td_tensor *b = scalar1(TD_DTYPE_BOOL);
    const int64_t huge[] = {6148914691236517206LL};
    struct td_tensor *v = expanded(b, huge, 1);
    struct td_operand in[3] = {tens(v), tens(v), tens(v)};
    int64_t live = td_alloc_live_bytes();
    struct td_tensor *out = NULL;
    struct td_err err;
    assert_int_equal(td_op_apply(TD_OP_CAT, in, 3, NULL, false, NULL, &out, &err), TD_ELIMIT);
    assert_null(out);
    assert_non_null(strstr(err.msg, "exceeds 2^63"));
    assert_int_equal(td_op_apply(TD_OP_STACK, in, 3, NULL, false, NULL, &out, &err), TD_ELIMIT);
    assert_null(out);
    assert_int_equal(td_alloc_live_bytes(), live);
    struct td_cost c;
    cost_of(TD_OP_CAT, in, 3, NULL, &c);
    assert_int_equal(c.read, INT64_MAX);
    assert_int_equal(c.written, INT64_MAX);
    assert_int_equal(c.out_bytes, INT64_MAX);
    assert_int_equal(td_cost_work(&c), INT64_MAX);
    cost_of(TD_OP_STACK, in, 3, NULL, &c);
    assert_int_equal(c.written, INT64_MAX);
    /* one of them: its logical size exactly (a copy the op would then refuse to allocate) */
    cost_of(TD_OP_CAT, in, 1, NULL, &c);
    assert_int_equal(c.written, 6148914691236517206LL);
    struct td_quota q;
    td_quota_init(&q, "session memory", 1 << 20, NULL);
    assert_int_equal(td_op_apply(TD_OP_CAT, in, 1, NULL, false, &q, &out, &err), TD_EQUOTA);
    assert_null(out);
    assert_int_equal(atomic_load(&q.used), 0);
    td_tensor_unref(v);
    td_tensor_unref(b);
}

/* Finding 7: repeat, outer and mm by their output. */
static void test_repeat_outer_mm_by_output(void **state)
{
    (void)state;
    const int64_t s23[] = {2, 3};
    const double v6[] = {1, 2, 3, 4, 5, 6};
    struct td_tensor *x = mk(TD_DTYPE_F32, s23, 2, v6);
    struct td_op_args a;
    td_op_args_init(&a);
    a.dims[0] = 4;
    a.dims[1] = 5;
    a.dims[2] = 6;
    a.ndims = 3;
    a.has_dims = true;
    struct td_operand in[2] = {tens(x)};
    struct td_cost c;
    cost_of(TD_OP_REPEAT, in, 1, &a, &c);
    assert_int_equal(c.written, 4 * 10 * 18); /* [4, 5*2, 6*3] */
    assert_int_equal(c.out_bytes, 4 * 4 * 10 * 18);
    /* and the op agrees */
    struct td_tensor *r;
    assert_int_equal(td_op_apply(TD_OP_REPEAT, in, 1, &a, false, NULL, &r, NULL), 0);
    assert_int_equal(r->numel, c.written);
    td_tensor_unref(r);
    /* repeat of 2^31 x 2^31 saturates nothing yet: 2^62 * 6 does */
    a.dims[0] = (int64_t)1 << 31;
    a.dims[1] = (int64_t)1 << 31;
    cost_of(TD_OP_REPEAT, in, 1, &a, &c);
    assert_int_equal(c.written, INT64_MAX);

    /* outer of [1000] and [2000]: 2,000,000 written, one product each */
    struct td_tensor *one = scalar1(TD_DTYPE_F32);
    const int64_t n1[] = {1000}, n2[] = {2000};
    struct td_tensor *p = expanded(one, n1, 1), *q = expanded(one, n2, 1);
    in[0] = tens(p);
    in[1] = tens(q);
    cost_of(TD_OP_OUTER, in, 2, NULL, &c);
    assert_int_equal(c.written, 2000000);
    assert_int_equal(c.flops, 2000000);
    assert_int_equal(c.out_bytes, 8000000);

    /* a thin mm: [1, K] @ [K, 1] writes 1 element and does K products */
    const int64_t k = (int64_t)1 << 26;
    const int64_t s1k[] = {1, k}, sk1[] = {k, 1};
    struct td_tensor *one2 = mk(TD_DTYPE_F32, (const int64_t[]){1, 1}, 2, v6);
    struct td_tensor *ra = expanded(one2, s1k, 2), *cb = expanded(one2, sk1, 2);
    in[0] = tens(ra);
    in[1] = tens(cb);
    cost_of(TD_OP_MM, in, 2, NULL, &c);
    assert_int_equal(c.written, 1);
    assert_int_equal(c.flops, k);
    assert_int_equal(c.read, 2 * k);
    /* neither view is BLAS-readable: two copies of K floats */
    assert_int_equal(c.temp_bytes, 2 * 4 * k);
    /* and the wide one: [K, 1] @ [1, K] writes K * K */
    in[0] = tens(cb);
    in[1] = tens(ra);
    cost_of(TD_OP_MM, in, 2, NULL, &c);
    assert_int_equal(c.written, k * k);
    assert_int_equal(c.flops, k * k);
    td_tensor_unref(ra);
    td_tensor_unref(cb);
    td_tensor_unref(one2);
    td_tensor_unref(p);
    td_tensor_unref(q);
    td_tensor_unref(one);
    td_tensor_unref(x);
}

/* matmul: flops = batch * n * m * k, integer or float alike; broadcast batches count. */
static void test_matmul_flops(void **state)
{
    (void)state;
    struct td_tensor *one = mk(TD_DTYPE_I64, (const int64_t[]){1, 1, 1, 1}, 4, (const double[]){1});
    const int64_t sa[] = {2, 1, 4, 5}, sb[] = {3, 5, 6};
    struct td_tensor *a = expanded(one, sa, 4);
    struct td_tensor *one3 = mk(TD_DTYPE_I64, (const int64_t[]){1, 1, 1}, 3, (const double[]){1});
    struct td_tensor *b = expanded(one3, sb, 3);
    struct td_operand in[2] = {tens(a), tens(b)};
    struct td_cost c;
    cost_of(TD_OP_MATMUL, in, 2, NULL, &c);
    assert_int_equal(c.written, 2 * 3 * 4 * 6);
    assert_int_equal(c.flops, 2 * 3 * 4 * 6 * 5);
    assert_int_equal(c.out_bytes, 2 * 3 * 4 * 6 * 8);
    assert_int_equal(c.temp_bytes, 0); /* integers run in place */
    /* bmm: 3 x [4, 5] @ [5, 6] */
    const int64_t ba[] = {3, 4, 5};
    struct td_tensor *a3 = expanded(one3, ba, 3);
    in[0] = tens(a3);
    cost_of(TD_OP_BMM, in, 2, NULL, &c);
    assert_int_equal(c.flops, 3 * 4 * 6 * 5);
    /* integer matmul of huge expanded views: [1, 2^40] @ [2^40, 1] is 2^40 products */
    const int64_t w[] = {1, (int64_t)1 << 40}, h[] = {(int64_t)1 << 40, 1};
    struct td_tensor *one2 = mk(TD_DTYPE_I64, (const int64_t[]){1, 1}, 2, (const double[]){1});
    struct td_tensor *wv = expanded(one2, w, 2), *hv = expanded(one2, h, 2);
    in[0] = tens(wv);
    in[1] = tens(hv);
    cost_of(TD_OP_MATMUL, in, 2, NULL, &c);
    assert_int_equal(c.written, 1);
    assert_int_equal(c.flops, (int64_t)1 << 40);
    /* a shape mismatch is invalid operands, with a zero cost */
    in[1] = tens(wv);
    struct td_err err;
    assert_int_not_equal(td_op_cost(TD_OP_MATMUL, in, 2, NULL, &c, &err), 0);
    assert_int_equal(td_cost_work(&c), 0);
    td_tensor_unref(wv);
    td_tensor_unref(hv);
    td_tensor_unref(one2);
    td_tensor_unref(a3);
    td_tensor_unref(a);
    td_tensor_unref(b);
    td_tensor_unref(one);
    td_tensor_unref(one3);
}

/* Finding 7: linspace's size is its steps, which make_linspace reads from args.dim. */
static void test_linspace_by_steps(void **state)
{
    (void)state;
    struct td_op_args a;
    td_op_args_init(&a);
    a.dim = 1000;
    a.dims[0] = 5; /* not linspace's: the old estimate read this */
    a.ndims = 1;
    struct td_cost c;
    cost_of(TD_OP_LINSPACE, NULL, 0, &a, &c);
    assert_int_equal(c.written, 1000);
    assert_int_equal(c.out_bytes, 4000);
    struct td_tensor *t;
    assert_int_equal(td_op_apply(TD_OP_LINSPACE, NULL, 0, &a, false, NULL, &t, NULL), 0);
    assert_int_equal(t->numel, c.written);
    assert_int_equal((int64_t)td_tensor_nbytes(t), c.out_bytes);
    td_tensor_unref(t);
    a.dim = (int64_t)1 << 40;
    a.has_dtype = true;
    a.dtype = TD_DTYPE_F64;
    cost_of(TD_OP_LINSPACE, NULL, 0, &a, &c);
    assert_int_equal(c.written, (int64_t)1 << 40);
    assert_int_equal(c.out_bytes, (int64_t)8 << 40);
    a.dim = -1;
    struct td_err err;
    assert_int_not_equal(td_op_cost(TD_OP_LINSPACE, NULL, 0, &a, &c, &err), 0);
    /* empty: its shape */
    td_op_args_init(&a);
    a.dims[0] = 3;
    a.dims[1] = 7;
    a.ndims = 2;
    cost_of(TD_OP_EMPTY, NULL, 0, &a, &c);
    assert_int_equal(c.written, 21);
    assert_int_equal(c.out_bytes, 84);
    /* eye(4, 6) */
    a.dims[0] = 4;
    a.dims[1] = 6;
    cost_of(TD_OP_EYE, NULL, 0, &a, &c);
    assert_int_equal(c.written, 24);
}

/* Elementwise: each input at the output's (broadcast) size, casts counted as temporaries. */
static void test_elementwise_broadcast_and_casts(void **state)
{
    (void)state;
    struct td_tensor *one = scalar1(TD_DTYPE_I32);
    const int64_t s[] = {1000, 1000};
    struct td_tensor *v = expanded(one, s, 2);
    const double z[1000] = {0};
    struct td_tensor *row = mk(TD_DTYPE_F32, (const int64_t[]){1000}, 1, z);
    struct td_operand in[2] = {tens(v), tens(row)};
    struct td_cost c;
    cost_of(TD_OP_ADD, in, 2, NULL, &c);
    assert_int_equal(c.read, 2000000);
    assert_int_equal(c.written, 1000000);
    assert_int_equal(c.out_bytes, 4000000);
    /* the int32 view is cast to float32 at its logical size */
    assert_int_equal(c.temp_bytes, 4000000);
    /* a number takes no part */
    in[1] = num(td_scalar_i(2));
    cost_of(TD_OP_MUL, in, 2, NULL, &c);
    assert_int_equal(c.read, 1000000);
    assert_int_equal(c.temp_bytes, 0);
    /* in place: no new result */
    struct td_op_args a;
    td_op_args_init(&a);
    a.inplace = true;
    in[0] = tens(row);
    cost_of(TD_OP_MUL, in, 2, &a, &c);
    assert_int_equal(c.out_bytes, 0);
    assert_int_equal(c.written, 1000);
    td_tensor_unref(row);
    td_tensor_unref(v);
    td_tensor_unref(one);
}

/* Views cost a constant; reshape costs a copy only when no view exists. */
static void test_views_and_reshape(void **state)
{
    (void)state;
    struct td_tensor *one = scalar1(TD_DTYPE_F32);
    const int64_t s[] = {P30, P30};
    struct td_tensor *v = expanded(one, s, 2);
    struct td_operand in[1] = {tens(v)};
    struct td_op_args a;
    td_op_args_init(&a);
    a.dim = 0;
    a.dim2 = 1;
    struct td_cost c;
    cost_of(TD_OP_TRANSPOSE, in, 1, &a, &c);
    assert_int_equal(td_cost_work(&c), 1);
    cost_of(TD_OP_CLONE, in, 1, NULL, &c);
    assert_int_equal(c.written, (int64_t)1 << 60);
    assert_int_equal(c.out_bytes, (int64_t)4 << 60);
    cost_of(TD_OP_CONTIGUOUS, in, 1, NULL, &c);
    assert_int_equal(c.written, (int64_t)1 << 60);
    /* reshape to [2^60]: all strides are 0, which torch's stride rule flattens as a view */
    a.dims[0] = (int64_t)1 << 60;
    a.ndims = 1;
    a.has_dims = true;
    cost_of(TD_OP_RESHAPE, in, 1, &a, &c);
    assert_int_equal(c.written, 1);
    /* [2, 1] expanded to [2, 2^30] has strides (1, 0): flattening it needs a copy */
    struct td_tensor *col = mk(TD_DTYPE_F32, (const int64_t[]){2, 1}, 2, (const double[]){1, 2});
    struct td_tensor *wide = expanded(col, (const int64_t[]){2, P30}, 2);
    struct td_operand w[1] = {tens(wide)};
    a.dims[0] = 2 * P30;
    cost_of(TD_OP_RESHAPE, w, 1, &a, &c);
    assert_int_equal(c.written, 2 * P30);
    assert_int_equal(c.out_bytes, 8 * P30);
    struct td_op_args fa;
    td_op_args_init(&fa);
    cost_of(TD_OP_FLATTEN, w, 1, &fa, &c);
    assert_int_equal(c.written, 2 * P30);
    cost_of(TD_OP_VIEW, w, 1, &a, &c); /* view never copies (it fails instead) */
    assert_int_equal(c.written, 1);
    td_tensor_unref(wide);
    td_tensor_unref(col);
    /* reshape to [1, 2^30, 2^30]: a view */
    a.dims[0] = 1;
    a.dims[1] = P30;
    a.dims[2] = P30;
    a.ndims = 3;
    cost_of(TD_OP_RESHAPE, in, 1, &a, &c);
    assert_int_equal(c.written, 1);
    assert_int_equal(c.out_bytes, 0);
    /* to() its own dtype: itself */
    a.has_dtype = true;
    a.dtype = TD_DTYPE_F32;
    cost_of(TD_OP_TO, in, 1, &a, &c);
    assert_int_equal(c.written, 1);
    a.dtype = TD_DTYPE_F64; /* 2^63 bytes: saturates */
    cost_of(TD_OP_TO, in, 1, &a, &c);
    assert_int_equal(c.written, (int64_t)1 << 60);
    assert_int_equal(c.out_bytes, INT64_MAX);
    td_tensor_unref(v);
    td_tensor_unref(one);
}

/* Every row of td_ops[] with assorted valid and hostile operands: never a crash, never a
** negative field, and a zero cost whenever td_op_cost reports the operands invalid. */
static void test_every_rule_takes_anything(void **state)
{
    (void)state;
    const double v[16] = {1, -2, 3, 0, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
    struct td_tensor *f23 = mk(TD_DTYPE_F32, (const int64_t[]){2, 3}, 2, v);
    struct td_tensor *i3 = mk(TD_DTYPE_I64, (const int64_t[]){3}, 1, v);
    struct td_tensor *b0 = mk(TD_DTYPE_BOOL, NULL, 0, v);
    struct td_tensor *e03 = mk(TD_DTYPE_F64, (const int64_t[]){0, 3}, 2, v);
    struct td_tensor *d8 = mk(TD_DTYPE_F32, (const int64_t[]){1, 1, 1, 1, 1, 1, 1, 2}, 8, v);
    struct td_tensor *one = scalar1(TD_DTYPE_F32);
    struct td_tensor *huge = expanded(one, (const int64_t[]){P30, 2, P30 / 2}, 3);
    /* a tensor no core function would make: 9 dims (the guard must refuse it unread) */
    struct td_tensor bad = *f23;
    bad.ndim = 9;
    struct td_tensor *pool[] = {f23, i3, b0, e03, d8, huge, &bad, NULL};
    const int npool = (int)(sizeof pool / sizeof pool[0]);

    struct td_op_args args[6];
    for (int i = 0; i < 6; i++) {
        td_op_args_init(&args[i]);
    }
    args[1].dims[0] = 1; /* a dims list */
    args[1].dims[1] = -1;
    args[1].ndims = 2;
    args[1].has_dims = true;
    args[1].dim = 1;
    args[1].has_dim = true;
    args[2].ndims = 9; /* too many dims */
    args[2].has_dims = true;
    args[3].dims[0] = INT64_MAX; /* absurd sizes */
    args[3].dims[1] = INT64_MAX;
    args[3].dims[2] = -5;
    args[3].ndims = 3;
    args[3].has_dims = true;
    args[3].dim = INT64_MAX;
    args[3].dim2 = INT64_MIN;
    args[3].has_dim = true;
    args[4].has_dtype = true; /* an invalid dtype */
    args[4].dtype = (enum td_dtype)99;
    args[4].dim = -3;
    args[5].has_dtype = true;
    args[5].dtype = TD_DTYPE_I32;
    args[5].inplace = true;
    args[5].has_min = args[5].has_max = true;
    args[5].min = td_scalar_i(0);
    args[5].max = td_scalar_i(1);

    int64_t calls = 0, valid = 0;
    for (int id = 0; id < TD_OP_COUNT; id++) {
        for (int nin = 0; nin <= 3; nin++) {
            /* operand i picks pool entry (pick / npool^i) % npool; NULL is a number */
            int combos = 1;
            for (int i = 0; i < nin; i++) {
                combos *= npool;
            }
            for (int pick = 0; pick < combos; pick++) {
                struct td_operand in[3];
                memset(in, 0, sizeof in);
                for (int i = 0, p = pick; i < nin; i++, p /= npool) {
                    in[i].t = pool[p % npool];
                    in[i].s = td_scalar_f(2.5);
                }
                for (int ai = 0; ai < 6; ai++) {
                    struct td_cost c;
                    int rc = td_op_cost((enum td_op_id)id, in, nin, &args[ai], &c, NULL);
                    calls++;
                    assert_true(c.read >= 0 && c.written >= 0 && c.flops >= 0 && c.out_bytes >= 0 &&
                                c.temp_bytes >= 0);
                    if (rc != 0) {
                        assert_int_equal(td_cost_work(&c), 0);
                        assert_int_equal(c.out_bytes + c.temp_bytes, 0);
                    } else {
                        valid++;
                    }
                }
            }
        }
    }
    /* hostile counts and ids */
    struct td_cost c;
    assert_int_not_equal(td_op_cost(TD_OP_CAT, NULL, -1, NULL, &c, NULL), 0);
    assert_int_not_equal(td_op_cost(TD_OP_CAT, NULL, TD_OP_MAX_INPUTS + 1, NULL, &c, NULL), 0);
    assert_int_not_equal(td_op_cost((enum td_op_id)TD_OP_COUNT, NULL, 0, NULL, &c, NULL), 0);
    assert_int_not_equal(td_op_cost((enum td_op_id) - 1, NULL, 0, NULL, &c, NULL), 0);
    assert_true(valid > 0 && valid < calls);
    td_tensor_unref(huge);
    td_tensor_unref(one);
    td_tensor_unref(d8);
    td_tensor_unref(e03);
    td_tensor_unref(b0);
    td_tensor_unref(i3);
    td_tensor_unref(f23);
}

/* Finding 3c: matmul's copies of operands BLAS cannot read are charged to the caller's quota,
** so [1, K] @ [K, 1] of expanded views fails under a small quota instead of allocating. */
static void test_matmul_temporaries_are_charged(void **state)
{
    (void)state;
    struct td_quota q;
    td_quota_init(&q, "session memory", 1 << 20, NULL);
    const int64_t k = (int64_t)1 << 20;
    struct td_tensor *one2 = mk(TD_DTYPE_F32, (const int64_t[]){1, 1}, 2, (const double[]){2});
    struct td_tensor *ra = expanded(one2, (const int64_t[]){1, k}, 2);
    struct td_tensor *cb = expanded(one2, (const int64_t[]){k, 1}, 2);
    struct td_operand in[2] = {tens(ra), tens(cb)};
    int64_t live = td_alloc_live_bytes();
    struct td_tensor *out = NULL;
    struct td_err err;
    assert_int_equal(td_op_apply(TD_OP_MATMUL, in, 2, NULL, false, &q, &out, &err), TD_EQUOTA);
    assert_null(out);
    assert_non_null(strstr(err.msg, "session memory"));
    assert_int_equal(atomic_load(&q.used), 0);
    assert_int_equal(td_alloc_live_bytes(), live);
    /* the cost said so beforehand: 2 * 4 MiB of temporaries */
    struct td_cost c;
    cost_of(TD_OP_MATMUL, in, 2, NULL, &c);
    assert_int_equal(c.temp_bytes, 8 * k);
    /* with room for them it runs, and afterwards only the result stays charged */
    td_quota_init(&q, "session memory", 16 << 20, NULL);
    assert_int_equal(td_op_apply(TD_OP_MATMUL, in, 2, NULL, false, &q, &out, &err), 0);
    assert_int_equal(at(out, 0), 4.0 * (double)k);
    assert_int_equal(atomic_load(&q.used), 4);
    td_tensor_unref(out);
    assert_int_equal(atomic_load(&q.used), 0);
    /* elementwise casts are charged too: int32 view + float number */
    struct td_tensor *i1 = scalar1(TD_DTYPE_I32);
    struct td_tensor *iv = expanded(i1, (const int64_t[]){k}, 1);
    /* 4 MiB of result and 4 MiB of int32 view cast to float32 at its logical size */
    td_quota_init(&q, "session memory", 9 << 20, NULL);
    struct td_operand add[2] = {tens(iv), tens(ra)};
    assert_int_equal(td_op_apply(TD_OP_ADD, add, 2, NULL, false, &q, &out, &err), 0);
    td_tensor_unref(out);
    assert_int_equal(atomic_load(&q.used), 0);
    td_quota_init(&q, "session memory", 7 << 20, NULL); /* the result fits, not the cast too */
    assert_int_equal(td_op_apply(TD_OP_ADD, add, 2, NULL, false, &q, &out, &err), TD_EQUOTA);
    assert_int_equal(atomic_load(&q.used), 0);
    td_tensor_unref(iv);
    td_tensor_unref(i1);
    td_tensor_unref(ra);
    td_tensor_unref(cb);
    td_tensor_unref(one2);
}

/* Reductions charge their accumulators. */
static void test_reduction_scratch_is_charged(void **state)
{
    (void)state;
    struct td_quota q;
    const int64_t n = 1 << 16;
    struct td_tensor *one = scalar1(TD_DTYPE_F32);
    struct td_tensor *v = expanded(one, (const int64_t[]){n, 4}, 2);
    struct td_op_args a;
    td_op_args_init(&a);
    a.dims[0] = 1;
    a.ndims = 1;
    a.has_dims = true;
    struct td_operand in[1] = {tens(v)};
    struct td_tensor *out = NULL;
    struct td_err err;
    /* the result (256 KiB) fits; its 2 MiB of accumulators do not */
    td_quota_init(&q, "session memory", 1 << 20, NULL);
    assert_int_equal(td_op_apply(TD_OP_SUM, in, 1, &a, false, &q, &out, &err), TD_EQUOTA);
    assert_int_equal(atomic_load(&q.used), 0);
    td_quota_init(&q, "session memory", 4 << 20, NULL);
    assert_int_equal(td_op_apply(TD_OP_SUM, in, 1, &a, false, &q, &out, &err), 0);
    assert_int_equal(at(out, n - 1), 4.0);
    td_tensor_unref(out);
    assert_int_equal(atomic_load(&q.used), 0);
    td_tensor_unref(v);
    td_tensor_unref(one);
}

/* Checked shape arithmetic elsewhere: repeat and flatten past 2^63 fail with a clear error. */
static void test_shape_overflow_errors(void **state)
{
    (void)state;
    struct td_tensor *x = mk(TD_DTYPE_F32, (const int64_t[]){4}, 1, (const double[]){1, 2, 3, 4});
    struct td_op_args a;
    td_op_args_init(&a);
    a.dims[0] = INT64_MAX / 2;
    a.ndims = 1;
    a.has_dims = true;
    struct td_operand in[1] = {tens(x)};
    struct td_tensor *out = NULL;
    struct td_err err;
    assert_int_equal(td_op_apply(TD_OP_REPEAT, in, 1, &a, false, NULL, &out, &err), TD_ELIMIT);
    assert_non_null(strstr(err.msg, "2^63"));
    /* flatten of [0, 2^40, 2^40]: a zero dim lets the others multiply past 2^63 */
    struct td_tensor *e = NULL;
    const int64_t es[] = {0, (int64_t)1 << 40, (int64_t)1 << 40};
    /* td_shape_check refuses it as a shape: nonzero sizes must multiply within 2^63 */
    assert_int_equal(td_tensor_empty(&e, TD_DTYPE_F32, es, 3, NULL, &err), TD_ELIMIT);
    /* [0, 2^31, 2^31] is a valid empty tensor; flattening it merges 2^62 (fine) */
    const int64_t ok[] = {0, (int64_t)1 << 31, (int64_t)1 << 31};
    assert_int_equal(td_tensor_empty(&e, TD_DTYPE_F32, ok, 3, NULL, &err), 0);
    td_op_args_init(&a);
    a.dim = 1;
    a.dim2 = 2;
    a.has_dim = true;
    in[0] = tens(e);
    assert_int_equal(td_op_apply(TD_OP_FLATTEN, in, 1, &a, false, NULL, &out, &err), 0);
    assert_int_equal(out->ndim, 2);
    assert_int_equal(out->shape[1], (int64_t)1 << 62);
    td_tensor_unref(out);
    td_tensor_unref(e);
    td_tensor_unref(x);
}

/* The reserve hook's bound, the one rpc charges before the text exists. */
static int keep_bound(void *arg, int64_t text_bound, struct td_err *err)
{
    (void)err;
    *(int64_t *)arg = text_bound;
    return 0;
}

/* td_print_cost bounds what td_tensor_repr visits and returns. */
static void check_print_bound(struct td_tensor *t, int64_t want_elements)
{
    int64_t elements, text;
    assert_int_equal(td_print_cost(t, &elements, &text), 0);
    assert_int_equal(elements, want_elements);
    struct td_print_opts o;
    td_print_opts_default(&o);
    char *s = NULL, *s2 = NULL;
    assert_int_equal(td_tensor_repr(t, &o, &s, NULL), 0);
    int64_t len = (int64_t)strlen(s);
    if (len > text) {
        fail_msg("text of %lld bytes over the bound %lld", (long long)len, (long long)text);
    }
    /* a bound, not a fantasy: within 8x (plus the fixed allowance) of the real text */
    assert_true(text <= 8 * len + 1024);
    int64_t hook = -1;
    o.reserve = keep_bound;
    o.reserve_arg = &hook;
    assert_int_equal(td_tensor_repr(t, &o, &s2, NULL), 0);
    assert_int_equal((int64_t)strlen(s2), len);
    assert_true(hook >= len && hook <= 2 * len);
    td_free(s2);
    td_free(s);
}

static void test_print_cost_bounds_format(void **state)
{
    (void)state;
    double v[64];
    for (int i = 0; i < 64; i++) {
        v[i] = (i - 20) * 1234.5678;
    }
    struct td_tensor *small = mk(TD_DTYPE_F64, (const int64_t[]){4, 16}, 2, v);
    check_print_bound(small, 3 * 64);
    struct td_tensor *s0 = mk(TD_DTYPE_I64, NULL, 0, v);
    check_print_bound(s0, 3);
    struct td_tensor *empty = mk(TD_DTYPE_F32, (const int64_t[]){0, 3}, 2, v);
    check_print_bound(empty, 0);
    /* summarized: [40, 40] shows 6 x 6 */
    struct td_tensor *one = mk(TD_DTYPE_F32, (const int64_t[]){1, 1}, 2, (const double[]){-0.125});
    struct td_tensor *sq = expanded(one, (const int64_t[]){40, 40}, 2);
    check_print_bound(sq, 3 * 36);
    /* the 8-dim view: 7^8 elements, 6^8 shown (a 2^60-element view prints no more) */
    struct td_tensor *one8 = mk(TD_DTYPE_I64, (const int64_t[]){1, 1, 1, 1, 1, 1, 1, 1}, 8,
                                (const double[]){-123456789});
    struct td_tensor *v8 = expanded(one8, (const int64_t[]){7, 7, 7, 7, 7, 7, 7, 7}, 8);
    check_print_bound(v8, 3 * 1679616);
    struct td_tensor *h8 = expanded(one8,
                                    (const int64_t[]){1 << 7, 1 << 7, 1 << 7, 1 << 7, 1 << 7,
                                                      1 << 7, 1 << 7, 1 << 7},
                                    8);
    int64_t elements, text;
    assert_int_equal(td_print_cost(h8, &elements, &text), 0);
    assert_int_equal(elements, 3 * 1679616);
    assert_true(text > 30 * 1000 * 1000);
    td_tensor_unref(h8);
    td_tensor_unref(v8);
    td_tensor_unref(one8);
    td_tensor_unref(sq);
    td_tensor_unref(one);
    td_tensor_unref(empty);
    td_tensor_unref(s0);
    td_tensor_unref(small);
}

/* Values of one kind for element i of n. */
static double pattern_value(int kind, int64_t i)
{
    switch (kind) {
    case 0: return (double)(i % 10);                                   /* small non-negative ints */
    case 1: return -0.5 + (double)(i % 7) * 0.125;                     /* negative and fractional */
    case 2: return (i % 2 ? -1.0 : 1.0) * 3.0e9 * (double)(i % 5 + 1); /* large */
    case 3: { /* zeros, nan, inf among values */
        static const double odd[] = {0.0, -0.0, 1.0 / 0.0, -1.0 / 0.0, 0.0 / 0.0, 0.25};
        return odd[i % 6];
    }
    default: return 0.0; /* all zero */
    }
}

/* For many shapes (1 to 8 dims, summarized and not), dtypes and values: td_print_cost's text
** bound and the reserve hook's are at least the real text, and the hook's is within 2x of it
** (it is the one rpc charges: an honest Format must fit the quota its text fits). */
static void test_print_bound_is_tight(void **state)
{
    (void)state;
    static const int64_t shapes[][9] = {
        /* ndim, sizes */
        {1, 5},
        {1, 1000},
        {1, 1001},
        {1, 100000},
        {2, 3, 4},
        {2, 40, 40},
        {2, 1, 3000},
        {3, 2, 3, 4},
        {3, 10, 10, 11},
        {4, 2, 3, 4, 5},
        {5, 7, 7, 7, 7, 7},
        {6, 2, 2, 2, 2, 2, 40},
        {7, 7, 7, 7, 7, 7, 7, 7},
        {8, 2, 2, 2, 2, 2, 2, 2, 2},
        {8, 3, 3, 3, 3, 3, 3, 3, 3},
        {8, 1, 1, 1, 1, 1, 1, 1, 2000},
    };
    static const enum td_dtype dts[] = {TD_DTYPE_F32, TD_DTYPE_F64, TD_DTYPE_I32, TD_DTYPE_I64,
                                        TD_DTYPE_BOOL};
    double worst = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int ndim = (int)shapes[si][0];
        int64_t numel = 1;
        for (int d = 0; d < ndim; d++) {
            numel *= shapes[si][1 + d];
        }
        double *v = td_malloc(sizeof(double) * (size_t)numel);
        assert_non_null(v);
        for (size_t di = 0; di < sizeof dts / sizeof dts[0]; di++) {
            bool floating = dts[di] == TD_DTYPE_F32 || dts[di] == TD_DTYPE_F64;
            for (int kind = 0; kind < 5; kind++) {
                if (!floating && (kind == 1 || kind == 3)) {
                    continue; /* a cast of nan or a fraction is not an int test */
                }
                for (int64_t i = 0; i < numel; i++) {
                    v[i] = pattern_value(kind, i);
                    if (dts[di] == TD_DTYPE_I32 && kind == 2) {
                        v[i] = (i % 2 ? -1.0 : 1.0) * 2.0e9;
                    }
                }
                struct td_tensor *t = mk(dts[di], shapes[si] + 1, ndim, v);
                for (int sci = -1; sci <= 1; sci++) {
                    struct td_print_opts o;
                    td_print_opts_default(&o);
                    o.sci_mode = sci;
                    int64_t hook = -1, elements, cost;
                    o.reserve = keep_bound;
                    o.reserve_arg = &hook;
                    char *s = NULL;
                    assert_int_equal(td_tensor_repr(t, &o, &s, NULL), 0);
                    int64_t len = (int64_t)strlen(s);
                    td_free(s);
                    if (hook < len) {
                        fail_msg("shape %zu dtype %zu kind %d sci %d: %lld bytes over the "
                                 "hook's bound %lld",
                                 si, di, kind, sci, (long long)len, (long long)hook);
                    }
                    if (sci != -1) {
                        continue; /* a forced notation: a bound only */
                    }
                    if (hook > 2 * len) {
                        fail_msg("shape %zu dtype %zu kind %d: bound %lld for %lld bytes", si, di,
                                 kind, (long long)hook, (long long)len);
                    }
                    worst = (double)hook / (double)len > worst ? (double)hook / (double)len : worst;
                    assert_int_equal(td_print_cost(t, &elements, &cost), 0);
                    if (cost < len || cost > 8 * len + 1024) {
                        fail_msg("shape %zu dtype %zu kind %d: td_print_cost %lld for %lld "
                                 "bytes",
                                 si, di, kind, (long long)cost, (long long)len);
                    }
                }
                td_tensor_unref(t);
            }
        }
        td_free(v);
    }
    print_message("worst hook bound / text: %.3f\n", worst);
}

/* The 7-dim view of the report: 6^7 values shown. Its text is about 2.3 MB; both bounds stay
** far below 16 MB (the old one was over 16 MB, so --session-max-bytes 16M refused it). */
static void test_print_bound_of_7dim_view(void **state)
{
    (void)state;
    struct td_tensor *one = mk(TD_DTYPE_F32, (const int64_t[]){1, 1, 1, 1, 1, 1, 1}, 7,
                               (const double[]){0.5});
    struct td_tensor *v7 = expanded(one, (const int64_t[]){64, 64, 64, 64, 64, 64, 64}, 7);
    struct td_print_opts o;
    td_print_opts_default(&o);
    int64_t hook = -1, elements, cost;
    o.reserve = keep_bound;
    o.reserve_arg = &hook;
    char *s = NULL;
    assert_int_equal(td_tensor_repr(v7, &o, &s, NULL), 0);
    int64_t len = (int64_t)strlen(s);
    td_free(s);
    assert_int_equal(td_print_cost(v7, &elements, &cost), 0);
    assert_int_equal(elements, 3 * 279936);
    /* 279936 values of "0.5000" (6 bytes) and ", ": at least 8 bytes a value */
    assert_true(len >= 8 * 279936);
    assert_true(hook >= len && hook <= len + len / 4);
    assert_true(cost >= len && cost < 8 * 1000 * 1000);
    td_tensor_unref(v7);
    td_tensor_unref(one);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reduction_of_expanded_view_reads_logical_size),
        cmocka_unit_test(test_cat_of_huge_views_fails_cleanly),
        cmocka_unit_test(test_repeat_outer_mm_by_output),
        cmocka_unit_test(test_matmul_flops),
        cmocka_unit_test(test_linspace_by_steps),
        cmocka_unit_test(test_elementwise_broadcast_and_casts),
        cmocka_unit_test(test_views_and_reshape),
        cmocka_unit_test(test_every_rule_takes_anything),
        cmocka_unit_test(test_matmul_temporaries_are_charged),
        cmocka_unit_test(test_reduction_scratch_is_charged),
        cmocka_unit_test(test_shape_overflow_errors),
        cmocka_unit_test(test_print_cost_bounds_format),
        cmocka_unit_test(test_print_bound_is_tight),
        cmocka_unit_test(test_print_bound_of_7dim_view),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
