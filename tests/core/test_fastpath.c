/* tests/core/test_fastpath.c — tiny ops' fast paths give what the general paths give.
**
** td_shape_broadcast, td_result_type and td_elementwise_rows each skip their general plan for
** the common tiny case (operands of one shape, one dtype, dense). Every case here runs twice,
** fast paths on and off (td_ops_set_fast_paths), over random small shapes, dtypes, broadcasts,
** views, aliasing and in-place forms of the binary and unary elementwise ops: the status, the
** error text, the result's dtype, shape and bytes must be the same. A sweep that never took the
** fast path would prove nothing, so the cases that take it are counted and bounded below; a
** few hand-derived values pin the fast path itself. td_op_args_reset_call (the cheap reset of
** OpArgs rpc keeps per thread) must leave the struct as td_op_args_init does; an op run with
** the shape and dtypes its cost rule computed (td_op_apply_planned) must give what it gives
** without them.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "core/ops/family.h"
#include "helpers.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static int rnd_below(int n)
{
    return (int)(rnd() % (uint64_t)n);
}

/* Values that exercise the kernels' corners: zero, negatives, halves, NaN and infinities for
** floats (the ints and bools take them as C casts do; NaN and inf are not used for those). */
static double rnd_value(enum td_dtype dt)
{
    static const double fvals[] = {0.0,  -0.0, 1.0, -1.5,     2.5,       3.0,
                                   -7.0, 0.1,  NAN, INFINITY, -INFINITY, 1e30};
    static const double ivals[] = {0, 1, -1, 2, -3, 7, 100, -128};
    if (td_dtype_is_float(dt)) {
        return fvals[rnd_below((int)(sizeof fvals / sizeof fvals[0]))];
    }
    return ivals[rnd_below((int)(sizeof ivals / sizeof ivals[0]))];
}

static enum td_dtype rnd_dtype(void)
{
    static const enum td_dtype dts[] = {TD_DTYPE_BOOL, TD_DTYPE_I32, TD_DTYPE_I64, TD_DTYPE_F32,
                                        TD_DTYPE_F64};
    return dts[rnd_below(5)];
}

static struct td_tensor *rnd_tensor(enum td_dtype dt, const int64_t *shape, int ndim)
{
    double v[256];
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) {
        n *= shape[d];
    }
    assert_true(n <= 256);
    for (int64_t i = 0; i < n; i++) {
        v[i] = rnd_value(dt);
    }
    return mk(dt, shape, ndim, v);
}

/* A deep copy of t (contiguous, same values), so each path writes its own in-place operand. */
static struct td_tensor *clone(const struct td_tensor *t)
{
    struct td_tensor *c;
    assert_int_equal(td_tensor_empty(&c, t->dtype, t->shape, t->ndim, NULL, NULL), 0);
    assert_int_equal(td_cast_copy(c, t, NULL), 0);
    return c;
}

/* Whether two results are the same: both absent, or equal dtype, shape and bytes (C order). */
static void expect_same(const struct td_tensor *x, const struct td_tensor *y, const char *what)
{
    if (x == NULL || y == NULL) {
        if (x != y) {
            fail_msg("%s: one path gave a result, the other none", what);
        }
        return;
    }
    if (x->dtype != y->dtype || x->ndim != y->ndim ||
        memcmp(x->shape, y->shape, sizeof(int64_t) * (size_t)x->ndim) != 0) {
        fail_msg("%s: dtype or shape differ (%s/%d vs %s/%d)", what, td_dtype_name(x->dtype),
                 x->ndim, td_dtype_name(y->dtype), y->ndim);
    }
    struct td_tensor *cx = clone(x), *cy = clone(y);
    size_t nb = td_tensor_nbytes(cx);
    if (memcmp(td_tensor_data(cx), td_tensor_data(cy), nb) != 0) {
        fail_msg("%s: the bytes differ", what);
    }
    td_tensor_unref(cx);
    td_tensor_unref(cy);
}

/* The binary and unary ops whose kernels run through td_elementwise_rows (any that this build
** does not have are skipped by name). */
static const char *const binary_ops[] = {
    "add",         "sub",          "mul",         "div",        "maximum",
    "minimum",     "eq",           "ne",          "lt",         "le",
    "gt",          "ge",           "pow",         "atan2",      "fmod",
    "remainder",   "floor_divide", "logical_and", "logical_or", "logical_xor",
    "bitwise_and", "bitwise_or",   "bitwise_xor", "hypot",      "copysign",
};
static const char *const unary_ops[] = {"neg",   "abs",   "exp",        "log",         "sqrt",
                                        "sin",   "tanh",  "sigmoid",    "relu",        "floor",
                                        "ceil",  "sign",  "reciprocal", "logical_not", "square",
                                        "rsqrt", "trunc", "round"};

struct run {
    int rc;
    char msg[sizeof(((struct td_err *)0)->msg)];
    struct td_tensor *out;
};

static struct run run_op(int op, struct td_operand *in, int nin, bool inplace)
{
    struct run r = {0};
    struct td_err err;
    td_err_clear(&err);
    r.rc = td_op_apply((enum td_op_id)op, in, nin, NULL, inplace, NULL, &r.out, &err);
    if (r.rc != 0) {
        snprintf(r.msg, sizeof r.msg, "%s", err.msg);
        r.out = NULL;
    }
    return r;
}

/* A random shape of 0..3 dims of sizes 1..3; `like` (when not NULL) gives one that broadcasts
** with it: its trailing dims, each kept or made 1, maybe with a leading 1. */
static int rnd_shape(int64_t *shape, const int64_t *like, int like_ndim)
{
    if (like == NULL) {
        int nd = rnd_below(4);
        for (int d = 0; d < nd; d++) {
            shape[d] = 1 + rnd_below(3);
        }
        return nd;
    }
    int nd = like_ndim - rnd_below(like_ndim + 1);
    for (int d = 0; d < nd; d++) {
        int64_t s = like[like_ndim - nd + d];
        shape[d] = rnd_below(3) == 0 ? 1 : s;
    }
    if (nd < 3 && rnd_below(4) == 0) {
        memmove(shape + 1, shape, sizeof(int64_t) * (size_t)nd);
        shape[0] = 1;
        nd++;
    }
    return nd;
}

static int fast_cases; /* cases whose operands td_elementwise_dense takes */

/* One case: op over (a, b) (b unused for unary ops), out of place and, on fresh copies of a,
** in place; both paths, compared. */
static void compare_case(int op, int nin, struct td_tensor *a, struct td_operand b, bool inplace)
{
    char what[160];
    snprintf(what, sizeof what, "%s%s on %s[%d]", td_ops[op].name, inplace ? "_" : "",
             td_dtype_name(a->dtype), a->ndim);
    struct td_tensor *a1 = inplace ? clone(a) : td_tensor_ref(a);
    struct td_tensor *a2 = inplace ? clone(a) : td_tensor_ref(a);
    /* b aliasing a: in place, each path's b is its own a */
    bool alias = b.t == a;
    struct td_operand in1[2] = {tens(a1), alias ? tens(a1) : b};
    struct td_operand in2[2] = {tens(a2), alias ? tens(a2) : b};
    if (!inplace && nin == 2 && b.t != NULL && a->dtype == b.t->dtype && a->numel == b.t->numel &&
        td_tensor_is_contiguous(a) && td_tensor_is_contiguous(b.t) && a->numel > 0) {
        fast_cases++;
    }
    td_ops_set_fast_paths(true);
    struct run f = run_op(op, in1, nin, inplace);
    td_ops_set_fast_paths(false);
    struct run g = run_op(op, in2, nin, inplace);
    td_ops_set_fast_paths(true);
    if (f.rc != g.rc || strcmp(f.msg, g.msg) != 0) {
        fail_msg("%s: fast gave %d \"%s\", general %d \"%s\"", what, f.rc, f.msg, g.rc, g.msg);
    }
    expect_same(f.out, g.out, what);
    if (inplace) {
        expect_same(a1, a2, what); /* the written operand itself */
    }
    td_tensor_unref(f.out);
    td_tensor_unref(g.out);
    td_tensor_unref(a1);
    td_tensor_unref(a2);
}

static void test_random_binary_and_unary(void **state)
{
    (void)state;
    int64_t before = td_alloc_live_bytes();
    for (int iter = 0; iter < 3000; iter++) {
        int64_t sa[TD_MAX_DIMS], sb[TD_MAX_DIMS];
        int na = rnd_shape(sa, NULL, 0);
        int kind = rnd_below(8);
        int nb = kind < 5 ? (memcpy(sb, sa, sizeof sa), na) : rnd_shape(sb, sa, na);
        enum td_dtype da = rnd_dtype(), db = rnd_below(3) == 0 ? rnd_dtype() : da;
        struct td_tensor *a = rnd_tensor(da, sa, na);
        struct td_tensor *b = rnd_tensor(db, sb, nb);
        struct td_tensor *tb = NULL;
        if (kind == 4 && nb == 2) {
            tb = transposed(b); /* a view: same values in another layout, never dense */
        }
        bool unary = rnd_below(4) == 0;
        const char *name = unary ? unary_ops[rnd_below((int)(sizeof unary_ops / sizeof(char *)))]
                                 : binary_ops[rnd_below((int)(sizeof binary_ops / sizeof(char *)))];
        int op = td_op_lookup(name);
        if (op >= 0) {
            int nin = unary ? 1 : 2;
            struct td_operand ob = tens(tb != NULL ? tb : b);
            if (kind == 7) {
                ob = num(td_scalar_f(rnd_value(TD_DTYPE_F64))); /* a Python number */
            } else if (kind == 6) {
                ob = tens(a); /* x op x */
            }
            if (td_ops[op].nin == nin || (td_ops[op].nin < 0 && nin <= TD_OP_MAX_INPUTS)) {
                compare_case(op, nin, a, ob, false);
                if (td_ops[op].has_inplace) {
                    compare_case(op, nin, a, ob, true);
                }
            }
        }
        td_tensor_unref(tb);
        td_tensor_unref(a);
        td_tensor_unref(b);
    }
    /* About half the binary cases have one shape and dtype: the fast path must have run. */
    assert_true(fast_cases > 300);
    assert_int_equal(td_alloc_live_bytes(), before);
}

/* The fast path's own results, derived by hand (float32 rounding as torch's). */
static void test_fast_path_values(void **state)
{
    (void)state;
    const int64_t s[] = {2, 2};
    const double av[] = {1.5, -2.0, 3.25, 0.1}, bv[] = {0.5, 4.0, -1.0, 0.2};
    struct td_tensor *a = mk(TD_DTYPE_F32, s, 2, av), *b = mk(TD_DTYPE_F32, s, 2, bv), *r = NULL;
    struct td_operand in[2] = {tens(a), tens(b)};
    assert_true(td_elementwise_dense(in, 2, a, TD_DTYPE_F32));
    assert_int_equal(td_op_apply(TD_OP_MUL, in, 2, NULL, false, NULL, &r, NULL), 0);
    double want[4];
    for (int i = 0; i < 4; i++) {
        want[i] = (double)((float)av[i] * (float)bv[i]);
    }
    expect_values(r, TD_DTYPE_F32, 2, s, want);
    td_tensor_unref(r);
    /* one element, every dim 1 */
    const int64_t one[] = {1, 1};
    struct td_tensor *x = mk(TD_DTYPE_I64, one, 2, (const double[]){-6});
    struct td_tensor *y = mk(TD_DTYPE_I64, one, 2, (const double[]){7});
    struct td_operand xy[2] = {tens(x), tens(y)};
    assert_int_equal(td_op_apply(TD_OP_MUL, xy, 2, NULL, false, NULL, &r, NULL), 0);
    expect_values(r, TD_DTYPE_I64, 2, one, (const double[]){-42});
    td_tensor_unref(r);
    td_tensor_unref(x);
    td_tensor_unref(y);
    td_tensor_unref(a);
    td_tensor_unref(b);
}

/* What td_elementwise_dense refuses: a broadcast, a dtype to cast, a view with gaps, a Python
** number; each then takes the general path. */
static void test_dense_refuses(void **state)
{
    (void)state;
    const int64_t s22[] = {2, 2}, s2[] = {2};
    const double v[] = {1, 2, 3, 4};
    struct td_tensor *a = mk(TD_DTYPE_F32, s22, 2, v), *row = mk(TD_DTYPE_F32, s2, 1, v);
    struct td_tensor *d = mk(TD_DTYPE_F64, s22, 2, v), *t = transposed(a);
    struct td_operand bc[2] = {tens(a), tens(row)}, cast[2] = {tens(a), tens(d)};
    struct td_operand view[2] = {tens(a), tens(t)}, sc[2] = {tens(a), num(td_scalar_f(2))};
    assert_false(td_elementwise_dense(bc, 2, a, TD_DTYPE_F32));
    assert_false(td_elementwise_dense(cast, 2, a, TD_DTYPE_F32));
    assert_false(td_elementwise_dense(view, 2, a, TD_DTYPE_F32));
    assert_false(td_elementwise_dense(sc, 2, a, TD_DTYPE_F32));
    /* a transposed view's values, general path: a + a^T = [[2, 5], [5, 8]] */
    struct td_tensor *r = NULL;
    assert_int_equal(td_op_apply(TD_OP_ADD, view, 2, NULL, false, NULL, &r, NULL), 0);
    expect_values(r, TD_DTYPE_F32, 2, s22, (const double[]){2, 5, 5, 8});
    td_tensor_unref(r);
    td_tensor_unref(t);
    td_tensor_unref(a);
    td_tensor_unref(row);
    td_tensor_unref(d);
}

/* The shape and dtype rules' fast paths: the same answers and errors as the general rules,
** and torch's wording for a mismatch (which only the general rule sees). */
static void test_rules(void **state)
{
    (void)state;
    for (int iter = 0; iter < 2000; iter++) {
        int64_t sa[TD_MAX_DIMS], sb[TD_MAX_DIMS];
        int na = rnd_shape(sa, NULL, 0);
        int nb = rnd_below(2) == 0 ? (memcpy(sb, sa, sizeof sa), na) : rnd_shape(sb, NULL, 0);
        enum td_dtype da = rnd_dtype(), db = rnd_below(2) == 0 ? da : rnd_dtype();
        struct td_tensor *a = rnd_tensor(da, sa, na), *b = rnd_tensor(db, sb, nb);
        struct td_operand in[3] = {tens(a), tens(b), num(td_scalar_f(0.5))};
        for (int nin = 1; nin <= 3; nin++) {
            int64_t s1[TD_MAX_DIMS], s2[TD_MAX_DIMS];
            int n1 = -1, n2 = -1;
            struct td_err e1, e2;
            td_err_clear(&e1);
            td_err_clear(&e2);
            td_ops_set_fast_paths(true);
            int r1 = td_shape_broadcast(in, nin, NULL, s1, &n1, &e1);
            enum td_dtype t1 = td_result_type(in, nin);
            td_ops_set_fast_paths(false);
            int r2 = td_shape_broadcast(in, nin, NULL, s2, &n2, &e2);
            enum td_dtype t2 = td_result_type(in, nin);
            td_ops_set_fast_paths(true);
            assert_int_equal(r1, r2);
            assert_int_equal(t1, t2);
            if (r1 == 0) {
                assert_int_equal(n1, n2);
                assert_memory_equal(s1, s2, sizeof(int64_t) * (size_t)n1);
            } else {
                assert_string_equal(e1.msg, e2.msg);
            }
        }
        td_tensor_unref(a);
        td_tensor_unref(b);
    }
    const int64_t s3[] = {2, 3}, s2[] = {2, 2};
    const double v[] = {0, 0, 0, 0, 0, 0};
    struct td_tensor *a = mk(TD_DTYPE_F32, s3, 2, v), *b = mk(TD_DTYPE_F32, s2, 2, v);
    struct td_operand in[2] = {tens(a), tens(b)};
    int64_t s[TD_MAX_DIMS];
    int n;
    struct td_err err;
    assert_int_equal(td_shape_broadcast(in, 2, NULL, s, &n, &err), TD_ESHAPE);
    assert_string_equal(err.msg, "The size of tensor a (3) must match the size of tensor b (2) "
                                 "at non-singleton dimension 1");
    td_tensor_unref(a);
    td_tensor_unref(b);
}

/* op through td_op_cost_planned then td_op_apply_planned, as rpc's RunOp runs it. */
static struct run run_planned(int op, struct td_operand *in, int nin, bool inplace, int *planned)
{
    struct run r = {0};
    struct td_err err;
    td_err_clear(&err);
    struct td_op_args args;
    td_op_args_init(&args);
    args.op = op;
    args.inplace = inplace;
    struct td_cost cost;
    struct td_op_plan plan;
    memset(&plan, 0xa5, sizeof plan); /* whatever was there before: the cost sets ok itself */
    (void)td_op_cost_planned((enum td_op_id)op, in, nin, &args, &cost, &plan, NULL);
    assert_null(cost.plan);
    *planned += plan.ok;
    r.rc = td_op_apply_planned((enum td_op_id)op, in, nin, &args, inplace, NULL, &plan, &r.out,
                               &err);
    if (r.rc != 0) {
        snprintf(r.msg, sizeof r.msg, "%s", err.msg);
        r.out = NULL;
    }
    return r;
}

/* The cost rule's shape and dtypes handed to op_apply (td_op_apply_planned) give what
** td_op_apply gives without them: the status, the error text, the result's dtype, shape and
** bytes, over random operands (broadcasts, dtype mixes, numbers, aliasing, in place). */
static void test_planned_like_unplanned(void **state)
{
    (void)state;
    int64_t before = td_alloc_live_bytes();
    int planned = 0, cases = 0;
    for (int iter = 0; iter < 3000; iter++) {
        int64_t sa[TD_MAX_DIMS], sb[TD_MAX_DIMS];
        int na = rnd_shape(sa, NULL, 0);
        int kind = rnd_below(8);
        int nb = kind < 4 ? (memcpy(sb, sa, sizeof sa), na)
                          : rnd_shape(sb, kind == 5 ? NULL : sa, na);
        enum td_dtype da = rnd_dtype(), db = rnd_below(3) == 0 ? rnd_dtype() : da;
        struct td_tensor *a = rnd_tensor(da, sa, na), *b = rnd_tensor(db, sb, nb);
        bool unary = rnd_below(4) == 0;
        const char *name = unary ? unary_ops[rnd_below((int)(sizeof unary_ops / sizeof(char *)))]
                                 : binary_ops[rnd_below((int)(sizeof binary_ops / sizeof(char *)))];
        int op = td_op_lookup(name);
        int nin = unary ? 1 : 2;
        if (op >= 0 && (td_ops[op].nin == nin || td_ops[op].nin < 0)) {
            struct td_operand ob = kind == 7   ? num(td_scalar_f(rnd_value(TD_DTYPE_F64)))
                                   : kind == 6 ? tens(a)
                                               : tens(b);
            for (int inplace = 0; inplace <= (td_ops[op].has_inplace ? 1 : 0); inplace++) {
                struct td_tensor *a1 = inplace ? clone(a) : td_tensor_ref(a);
                struct td_tensor *a2 = inplace ? clone(a) : td_tensor_ref(a);
                bool alias = ob.t == a;
                struct td_operand in1[2] = {tens(a1), alias ? tens(a1) : ob};
                struct td_operand in2[2] = {tens(a2), alias ? tens(a2) : ob};
                struct run f = run_planned(op, in1, nin, inplace, &planned);
                struct run g = run_op(op, in2, nin, inplace);
                char what[160];
                snprintf(what, sizeof what, "%s%s on %s[%d]", name, inplace ? "_" : "",
                         td_dtype_name(da), na);
                if (f.rc != g.rc || strcmp(f.msg, g.msg) != 0) {
                    fail_msg("%s: planned gave %d \"%s\", unplanned %d \"%s\"", what, f.rc, f.msg,
                             g.rc, g.msg);
                }
                expect_same(f.out, g.out, what);
                if (inplace) {
                    expect_same(a1, a2, what);
                }
                cases++;
                td_tensor_unref(f.out);
                td_tensor_unref(g.out);
                td_tensor_unref(a1);
                td_tensor_unref(a2);
            }
        }
        td_tensor_unref(a);
        td_tensor_unref(b);
    }
    /* Most cases are planned (the elementwise rules passed); a sweep that never was would
    ** prove nothing, and one that always was would not have met a refusal. */
    assert_true(planned > cases / 2);
    assert_true(planned < cases);
    /* A plan made for another op is not used: mul's plan (float) handed to eq (bool). */
    const int64_t s2[] = {2};
    const double v[] = {1, 2};
    struct td_tensor *x = mk(TD_DTYPE_F32, s2, 1, v);
    struct td_operand in[2] = {tens(x), tens(x)};
    struct td_op_args args;
    td_op_args_init(&args);
    args.op = td_op_lookup("mul");
    struct td_cost cost;
    struct td_op_plan plan;
    assert_int_equal(td_op_cost_planned(TD_OP_MUL, in, 2, &args, &cost, &plan, NULL), 0);
    assert_true(plan.ok);
    assert_int_equal(plan.result, TD_DTYPE_F32);
    assert_int_equal(plan.ndim, 1);
    struct td_tensor *e = NULL;
    struct td_err err;
    assert_int_equal(td_op_apply_planned((enum td_op_id)td_op_lookup("eq"), in, 2, NULL, false,
                                         NULL, &plan, &e, &err),
                     0);
    assert_int_equal(e->dtype, TD_DTYPE_BOOL);
    td_tensor_unref(e);
    td_tensor_unref(x);
    assert_int_equal(td_alloc_live_bytes(), before);
}

/* td_op_args_reset_call (rpc's per-thread OpArgs for requests without OpArgs) gives back, byte
** for byte, what td_op_args_init gives, after every per-call field was written. */
static void test_args_reset_call(void **state)
{
    (void)state;
    struct td_op_args fresh, a;
    td_op_args_init(&fresh);
    td_op_args_init(&a);
    struct td_tensor *more[2] = {NULL, NULL};
    struct td_quota q;
    a.rng = (struct td_rng *)&q; /* any non-null pointer: never read here */
    a.more_out = more;
    a.want_more[0] = true;
    a.want_more[1] = true;
    a.grad_enabled = true;
    a.op = 7;
    a.inplace = true;
    a.quota = &q;
    assert_true(memcmp(&a, &fresh, sizeof a) != 0);
    td_op_args_reset_call(&a);
    assert_memory_equal(&a, &fresh, sizeof a);
    assert_true(a.correction == 1.0);
    assert_int_equal(a.ignore_index, -100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_binary_and_unary),
        cmocka_unit_test(test_fast_path_values),
        cmocka_unit_test(test_dense_refuses),
        cmocka_unit_test(test_rules),
        cmocka_unit_test(test_args_reset_call),
        cmocka_unit_test(test_planned_like_unplanned),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
