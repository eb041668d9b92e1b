/* server/core/ops/special.c — issue 16's "elementwise, comparison and linear algebra" family:
** the bitwise ops and shifts (bitwise_and/or/xor/not, bitwise_left_shift/right_shift), and the
** rounding and special functions trunc, frac, erf and erfinv (dtype rules, row kernels, backward
** rules; cost: the shared elementwise rule); isclose, addcmul, addcdiv, lerp, addmm and trace,
** composed of other ops (make functions, backward and cost rules).
**
** Kernels run through elementwise.c's driver (td_elementwise_rows: casting, broadcasting, merged
** dims, parallel chunks with cancel checks), so only the per-element expression lives here.
** The shifts follow torch 1.13's CPU kernels: a left shift is done in the unsigned type with the
** count taken modulo the width (what x86 does with torch's unchecked shift: 5 << 64 is 5), a
** right shift by a negative count or one past the width is a shift by width - 1 (the sign).
*/
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../../base/checked.h"
#include "../cancel.h"
#include "family.h"

/* ---- row kernels ---- */

#define DEF_ROW(name, T, EXPR)                                                                     \
    static void name(int64_t n, char *o_, int64_t so, const char *a_, int64_t sa, const char *b_,  \
                     int64_t sb)                                                                   \
    {                                                                                              \
        T *o = (T *)o_;                                                                            \
        const T *a = (const T *)a_, *b = (const T *)b_;                                            \
        if (so == 1 && sa == 1 && sb == 1) {                                                       \
            for (int64_t i = 0; i < n; i++) {                                                      \
                T x = a[i], y = b[i];                                                              \
                o[i] = (T)(EXPR);                                                                  \
            }                                                                                      \
        } else {                                                                                   \
            for (int64_t i = 0; i < n; i++) {                                                      \
                T x = a[i * sa], y = b[i * sb];                                                    \
                o[i * so] = (T)(EXPR);                                                             \
            }                                                                                      \
        }                                                                                          \
    }
#define DEF_UROW(name, T, EXPR) DEF_ROW(name, T, ((void)y, (EXPR)))

#define DEF_BITS(op, EXPR)                                                                         \
    DEF_ROW(op##_b, uint8_t, EXPR)                                                                 \
    DEF_ROW(op##_i32, int32_t, EXPR)                                                               \
    DEF_ROW(op##_i64, int64_t, EXPR)
DEF_BITS(band, x &y)
DEF_BITS(bor, x | y)
DEF_BITS(bxor, x ^ y)
DEF_UROW(bnot_b, uint8_t, !x)
DEF_UROW(bnot_i32, int32_t, ~x)
DEF_UROW(bnot_i64, int64_t, ~x)

static inline int32_t lshift_i32(int32_t x, int32_t y)
{
    return (int32_t)((uint32_t)x << ((uint32_t)y & 31u));
}
static inline int64_t lshift_i64(int64_t x, int64_t y)
{
    return (int64_t)((uint64_t)x << ((uint64_t)y & 63u));
}
/* >> of a negative value is arithmetic on every compiler torch runs on; done by hand so C's
** implementation-defined case never arises. */
static inline int32_t rshift_i32(int32_t x, int32_t y)
{
    int s = (y < 0 || y >= 31) ? 31 : (int)y;
    return x < 0 ? (int32_t) ~(~(uint32_t)x >> s) : (int32_t)((uint32_t)x >> s);
}
static inline int64_t rshift_i64(int64_t x, int64_t y)
{
    int s = (y < 0 || y >= 63) ? 63 : (int)y;
    return x < 0 ? (int64_t) ~(~(uint64_t)x >> s) : (int64_t)((uint64_t)x >> s);
}
DEF_ROW(lsh_i32, int32_t, lshift_i32(x, y))
DEF_ROW(lsh_i64, int64_t, lshift_i64(x, y))
DEF_ROW(rsh_i32, int32_t, rshift_i32(x, y))
DEF_ROW(rsh_i64, int64_t, rshift_i64(x, y))

DEF_UROW(copy_i32, int32_t, x)
DEF_UROW(copy_i64, int64_t, x)
DEF_UROW(trunc_f32, float, truncf(x))
DEF_UROW(trunc_f64, double, trunc(x))
DEF_UROW(frac_f32, float, x - truncf(x))
DEF_UROW(frac_f64, double, x - trunc(x))
DEF_UROW(erf_f32, float, erff(x))
DEF_UROW(erf_f64, double, erf(x))

/* erfinv: a first guess (Giles' single-precision approximation, "Approximating the erfinv
** function", GPU Computing Gems, 2011), then two Newton steps on erf(w) - x in double, which
** take it to double precision. erfinv(+-1) = +-inf, |x| > 1 and NaN give NaN, as torch's. */
static double erfinv_(double x)
{
    if (x != x || x < -1.0 || x > 1.0) {
        return NAN;
    }
    if (x == 1.0 || x == -1.0) {
        return copysign(INFINITY, x);
    }
    double w = -log((1.0 - x) * (1.0 + x)), p;
    if (w < 5.0) {
        w -= 2.5;
        p = 2.81022636e-08;
        p = 3.43273939e-07 + p * w;
        p = -3.5233877e-06 + p * w;
        p = -4.39150654e-06 + p * w;
        p = 0.00021858087 + p * w;
        p = -0.00125372503 + p * w;
        p = -0.00417768164 + p * w;
        p = 0.246640727 + p * w;
        p = 1.50140941 + p * w;
    } else {
        w = sqrt(w) - 3.0;
        p = -0.000200214257;
        p = 0.000100950558 + p * w;
        p = 0.00134934322 + p * w;
        p = -0.00367342844 + p * w;
        p = 0.00573950773 + p * w;
        p = -0.0076224613 + p * w;
        p = 0.00943887047 + p * w;
        p = 1.00167406 + p * w;
        p = 2.83297682 + p * w;
    }
    double r = p * x;
    for (int k = 0; k < 2; k++) {
        double e = erf(r) - x;
        r -= e / (M_2_SQRTPI * exp(-r * r));
    }
    return r;
}
DEF_UROW(erfinv_f32, float, (float)erfinv_((double)x))
DEF_UROW(erfinv_f64, double, erfinv_(x))

/* Kernels by op and compute dtype (bool, int32, int64, float32, float64); a NULL is refused by
** the dtype rule first, with torch's message. */
static td_row_fn *kernel(int op, enum td_dtype dt)
{
    static td_row_fn *const band[] = {band_b, band_i32, band_i64, NULL, NULL};
    static td_row_fn *const bor[] = {bor_b, bor_i32, bor_i64, NULL, NULL};
    static td_row_fn *const bxor[] = {bxor_b, bxor_i32, bxor_i64, NULL, NULL};
    static td_row_fn *const bnot[] = {bnot_b, bnot_i32, bnot_i64, NULL, NULL};
    static td_row_fn *const lsh[] = {NULL, lsh_i32, lsh_i64, NULL, NULL};
    static td_row_fn *const rsh[] = {NULL, rsh_i32, rsh_i64, NULL, NULL};
    static td_row_fn *const trn[] = {NULL, copy_i32, copy_i64, trunc_f32, trunc_f64};
    static td_row_fn *const frc[] = {NULL, NULL, NULL, frac_f32, frac_f64};
    static td_row_fn *const erf_[] = {NULL, NULL, NULL, erf_f32, erf_f64};
    static td_row_fn *const erfinv[] = {NULL, NULL, NULL, erfinv_f32, erfinv_f64};
    if ((int)dt < 0 || (int)dt >= TD_DTYPE_COUNT) {
        return NULL;
    }
    switch (op) {
    case TD_OP_BITWISE_AND: return band[dt];
    case TD_OP_BITWISE_OR: return bor[dt];
    case TD_OP_BITWISE_XOR: return bxor[dt];
    case TD_OP_BITWISE_NOT: return bnot[dt];
    case TD_OP_BITWISE_LEFT_SHIFT: return lsh[dt];
    case TD_OP_BITWISE_RIGHT_SHIFT: return rsh[dt];
    case TD_OP_TRUNC: return trn[dt];
    case TD_OP_FRAC: return frc[dt];
    case TD_OP_ERF: return erf_[dt];
    case TD_OP_ERFINV: return erfinv[dt];
    default: return NULL;
    }
}

/* torch's CPU kernel name, for "not implemented for" errors. */
static const char *kernel_name(int op)
{
    switch (op) {
    case TD_OP_BITWISE_AND: return "bitwise_and_cpu";
    case TD_OP_BITWISE_OR: return "bitwise_or_cpu";
    case TD_OP_BITWISE_XOR: return "bitwise_xor_cpu";
    case TD_OP_BITWISE_NOT: return "bitwise_not_cpu";
    case TD_OP_BITWISE_LEFT_SHIFT: return "lshift_cpu";
    case TD_OP_BITWISE_RIGHT_SHIFT: return "rshift_cpu";
    case TD_OP_TRUNC: return "trunc_vml_cpu";
    case TD_OP_FRAC: return "frac_cpu";
    default: return td_ops[op].name;
    }
}

static int not_implemented(int op, enum td_dtype dt, struct td_err *err)
{
    return td_err_set(err, TD_EDTYPE, "\"%s\" not implemented for '%s'", kernel_name(op),
                      td_dtype_cname(dt));
}

/* ---- dtype rules ---- */

/* Bitwise ops and shifts: the promoted type, integers and bool only (shifts: integers). */
int td_dtype_rule_bitwise(const struct td_operand *in, int nin, const struct td_op_args *a,
                          enum td_dtype *compute, enum td_dtype *result, struct td_err *err)
{
    if (in[0].t == NULL && (nin < 2 || in[1].t == NULL)) {
        return td_err_set(err, TD_EINVAL, "%s: expected a tensor operand", td_ops[a->op].name);
    }
    enum td_dtype dt = td_result_type(in, nin);
    if (a->inplace && in[0].t != NULL && !td_dtype_can_cast(dt, in[0].t->dtype)) {
        /* torch checks the in-place cast before the kernel's dtype (x.bitwise_and_(1.5)) */
        return td_err_set(err, TD_EDTYPE,
                          "result type %s can't be cast to the desired output type %s",
                          td_dtype_cname(dt), td_dtype_cname(in[0].t->dtype));
    }
    if (kernel(a->op, dt) == NULL) {
        return not_implemented(a->op, dt, err);
    }
    *compute = *result = dt;
    return 0;
}

/* trunc: self's dtype (integers unchanged), bool refused. frac: floats only. */
int td_dtype_rule_trunc_frac(const struct td_operand *in, int nin, const struct td_op_args *a,
                             enum td_dtype *compute, enum td_dtype *result, struct td_err *err)
{
    (void)nin;
    if (in[0].t == NULL) {
        return td_err_set(err, TD_EINVAL, "%s: expected a tensor operand", td_ops[a->op].name);
    }
    enum td_dtype dt = in[0].t->dtype;
    if (kernel(a->op, dt) == NULL) {
        return not_implemented(a->op, dt, err);
    }
    *compute = *result = dt;
    return 0;
}

/* ---- forward ---- */

int td_fwd_special(struct td_tensor *out, const struct td_operand *in, int nin,
                   const struct td_op_args *a, enum td_dtype compute, struct td_err *err)
{
    td_row_fn *k = kernel(a->op, compute);
    if (k == NULL) {
        return not_implemented(a->op, compute, err);
    }
    return td_elementwise_rows(k, out, in, nin, compute, compute, a->quota, err);
}

/* ---- backward ---- */

/* erf: g * 2/sqrt(pi) * exp(-x^2) */
int td_bw_erf(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
              struct td_quota *q, struct td_err *err)
{
    struct td_tensor *x2 = NULL, *e = NULL, *h = NULL;
    int rc = td_bw2(TD_OP_MUL, n->in[0], n->in[0], q, &x2, err);
    if (rc == 0) {
        rc = td_bw2(TD_OP_MUL, td_t(x2), td_s(td_scalar_f(-1.0)), q, &h, err);
    }
    if (rc == 0) {
        rc = td_bw1(TD_OP_EXP, td_t(h), NULL, q, &e, err);
    }
    td_tensor_unref(h);
    h = NULL;
    if (rc == 0) {
        rc = td_bw2(TD_OP_MUL, td_t(e), td_s(td_scalar_f(M_2_SQRTPI)), q, &h, err);
    }
    if (rc == 0) {
        rc = td_bw2(TD_OP_MUL, td_t(g), td_t(h), q, &gin[0], err);
    }
    td_tensor_unref(x2);
    td_tensor_unref(e);
    td_tensor_unref(h);
    return rc;
}

/* erfinv: g * sqrt(pi)/2 * exp(erfinv(x)^2), erfinv(x) recomputed from the saved x as torch
** does (derivatives.yaml: 0.5 * sqrt(M_PI) * exp(self.erfinv().pow(2)) * grad). */
int td_bw_erfinv(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                 struct td_quota *q, struct td_err *err)
{
    struct td_tensor *y = NULL, *y2 = NULL, *e = NULL, *h = NULL;
    int rc = td_bw1(TD_OP_ERFINV, n->in[0], NULL, q, &y, err);
    if (rc == 0) {
        rc = td_bw2(TD_OP_MUL, td_t(y), td_t(y), q, &y2, err);
    }
    if (rc == 0) {
        rc = td_bw1(TD_OP_EXP, td_t(y2), NULL, q, &e, err);
    }
    if (rc == 0) {
        rc = td_bw2(TD_OP_MUL, td_t(e), td_s(td_scalar_f(0.5 * sqrt(M_PI))), q, &h, err);
    }
    if (rc == 0) {
        rc = td_bw2(TD_OP_MUL, td_t(g), td_t(h), q, &gin[0], err);
    }
    td_tensor_unref(y);
    td_tensor_unref(y2);
    td_tensor_unref(e);
    td_tensor_unref(h);
    return rc;
}

/* ---- composed ops: isclose, addcmul, addcdiv, lerp, addmm, trace ----
** Each is built from other ops, run through td_op_apply without recording (their temporaries
** charged to q), the way torch's own composite kernels are written, so their values, dtypes
** and errors are those ops'. The node recorded is this op's, with its own backward rule. */

/* A scratch list of tensors an op builds, released together. */
struct scratch {
    struct td_tensor *t[16];
    int n;
};

static void scratch_free(struct scratch *s)
{
    for (int i = 0; i < s->n; i++) {
        td_tensor_unref(s->t[i]);
    }
    s->n = 0;
}

/* Runs op on operands a[, b] (args may be NULL), keeping the result in s; NULL on error. */
static struct td_tensor *run(struct scratch *s, enum td_op_id op, struct td_operand a,
                             const struct td_operand *b, const struct td_op_args *args,
                             struct td_quota *q, struct td_err *err)
{
    struct td_operand in[2] = {a, b != NULL ? *b : a};
    struct td_tensor *out = NULL;
    struct td_op_args local;
    if (args != NULL) {
        local = *args;
        local.grad_enabled = false;
        args = &local;
    }
    if (s->n >= (int)(sizeof s->t / sizeof s->t[0])) {
        td_err_set(err, TD_EINVAL, "internal: too many temporaries");
        return NULL;
    }
    if (td_op_apply(op, in, b != NULL ? 2 : 1, args, false, q, &out, err) != 0) {
        return NULL;
    }
    s->t[s->n++] = out;
    return out;
}
static struct td_tensor *run2(struct scratch *s, enum td_op_id op, struct td_operand a,
                              struct td_operand b, struct td_quota *q, struct td_err *err)
{
    return run(s, op, a, &b, NULL, q, err);
}
#define RUN2(op, x, y) run2(&s, op, x, y, q, err)
#define RUN1(op, x) run(&s, op, x, NULL, NULL, q, err)

/* Hands the last scratch tensor to *out (a new reference) and frees the rest. */
static int finish(struct scratch *s, struct td_tensor *r, struct td_tensor **out)
{
    *out = td_tensor_ref(r);
    scratch_free(s);
    return 0;
}

static int fail(struct scratch *s)
{
    scratch_free(s);
    return -1;
}

/* A copy of operand x in dtype dt (x itself, borrowed, when it already is). */
static struct td_operand as_dtype(struct scratch *s, struct td_operand x, enum td_dtype dt,
                                  struct td_quota *q, struct td_err *err, bool *ok)
{
    *ok = true;
    if (x.t == NULL || x.t->dtype == dt) {
        return x;
    }
    struct td_op_args a;
    td_op_args_init(&a);
    a.has_dtype = true;
    a.dtype = dt;
    struct td_tensor *c = run(s, TD_OP_TO, x, NULL, &a, q, err);
    *ok = c != NULL;
    return td_t(c);
}

static struct td_scalar scalar_or_one(bool has, struct td_scalar v)
{
    return has ? v : td_scalar_i(1);
}

/* A scalar as a value of dtype dt takes part in arithmetic: integral results truncate a float
** (torch's value.to<scalar_t>()). */
static struct td_scalar scalar_for(struct td_scalar v, enum td_dtype dt)
{
    if (!td_dtype_is_float(dt)) {
        return td_scalar_i(td_scalar_to_int(v));
    }
    return td_scalar_f(td_scalar_to_double(v));
}

static int need_tensor(const struct td_operand *in, int i, const char *fn, const char *name,
                       struct td_err *err)
{
    if (in[i].t == NULL) {
        const char *kind = in[i].s.kind == TD_SCALAR_FLOAT ? "float"
                           : in[i].s.kind == TD_SCALAR_INT ? "int"
                                                           : "bool";
        return td_err_set(err, TD_EINVAL,
                          "%s(): argument '%s' (position %d) must be Tensor, not %s", fn, name,
                          i + 1, kind);
    }
    return 0;
}

/* isclose: torch's composite (aten/src/ATen/native/TensorCompare.cpp), step by step:
** close = x == y, or both NaN when equal_nan; then |x - y| <= atol + |rtol * y| where finite. */
int td_make_isclose(struct td_tensor **out, const struct td_operand *in, int nin,
                    const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    if (need_tensor(in, 0, "isclose", "input", err) != 0 ||
        need_tensor(in, 1, "isclose", "other", err) != 0) {
        return -1;
    }
    enum td_dtype dx = in[0].t->dtype, dy = in[1].t->dtype;
    if (dx != dy) {
        return td_err_set(err, TD_EDTYPE, "%s did not match %s", td_dtype_cname(dx),
                          td_dtype_cname(dy));
    }
    if (!(a->rtol >= 0)) {
        return td_err_set(err, TD_EINVAL, "rtol must be greater than or equal to zero, but got %g",
                          a->rtol);
    }
    if (!(a->atol >= 0)) {
        return td_err_set(err, TD_EINVAL, "atol must be greater than or equal to zero, but got %g",
                          a->atol);
    }
    struct scratch s = {.n = 0};
    struct td_tensor *close = RUN2(TD_OP_EQ, in[0], in[1]);
    if (close == NULL) {
        return fail(&s);
    }
    if (a->equal_nan && td_dtype_is_float(dx)) {
        struct td_tensor *nx = RUN2(TD_OP_NE, in[0], in[0]);
        struct td_tensor *ny = nx ? RUN2(TD_OP_NE, in[1], in[1]) : NULL;
        struct td_tensor *both = ny ? RUN2(TD_OP_LOGICAL_AND, td_t(nx), td_t(ny)) : NULL;
        close = both ? RUN2(TD_OP_LOGICAL_OR, td_t(close), td_t(both)) : NULL;
        if (close == NULL) {
            return fail(&s);
        }
    }
    if (a->rtol == 0 && a->atol == 0) {
        return finish(&s, close, out);
    }
    bool ok1, ok2;
    struct td_operand x = as_dtype(&s, in[0], dx == TD_DTYPE_BOOL ? TD_DTYPE_DEFAULT_FLOAT : dx, q,
                                   err, &ok1);
    struct td_operand y = as_dtype(&s, in[1], dx == TD_DTYPE_BOOL ? TD_DTYPE_DEFAULT_FLOAT : dx, q,
                                   err, &ok2);
    if (!ok1 || !ok2) {
        return fail(&s);
    }
    struct td_tensor *ry = RUN2(TD_OP_MUL, y, td_s(td_scalar_f(a->rtol)));
    struct td_tensor *ary = ry ? RUN1(TD_OP_ABS, td_t(ry)) : NULL;
    struct td_tensor *allowed = ary ? RUN2(TD_OP_ADD, td_t(ary), td_s(td_scalar_f(a->atol))) : NULL;
    struct td_tensor *d = allowed ? RUN2(TD_OP_SUB, x, y) : NULL;
    struct td_tensor *actual = d ? RUN1(TD_OP_ABS, td_t(d)) : NULL;
    struct td_tensor *notnan = actual ? RUN2(TD_OP_EQ, td_t(actual), td_t(actual)) : NULL;
    struct td_tensor *notinf = notnan ? RUN2(TD_OP_NE, td_t(actual), td_s(td_scalar_f(INFINITY)))
                                      : NULL;
    struct td_tensor *finite = notinf ? RUN2(TD_OP_LOGICAL_AND, td_t(notnan), td_t(notinf)) : NULL;
    struct td_tensor *within = finite ? RUN2(TD_OP_LE, td_t(actual), td_t(allowed)) : NULL;
    struct td_tensor *both = within ? RUN2(TD_OP_LOGICAL_AND, td_t(finite), td_t(within)) : NULL;
    struct td_tensor *r = both ? RUN2(TD_OP_LOGICAL_OR, td_t(close), td_t(both)) : NULL;
    return r != NULL ? finish(&s, r, out) : fail(&s);
}

/* The promoted dtype of the tensor operands and the operands cast to it. */
static int promote_all(struct scratch *s, const struct td_operand *in, int nin,
                       struct td_operand *cast, enum td_dtype *dt, struct td_quota *q,
                       struct td_err *err)
{
    *dt = td_result_type(in, nin);
    for (int i = 0; i < nin; i++) {
        bool ok;
        cast[i] = as_dtype(s, in[i], *dt, q, err, &ok);
        if (!ok) {
            return -1;
        }
    }
    return 0;
}

/* addcmul's and addcdiv's operands: three tensors, input, tensor1, tensor2 (-1 and err set, or
** -1 alone when fewer than three came). */
static int need_addc(const struct td_operand *in, int nin, const char *op, struct td_err *err)
{
    for (int i = 0; i < 3; i++) {
        if (i >= nin || need_tensor(in, i, op,
                                    i == 0   ? "input"
                                    : i == 1 ? "tensor1"
                                             : "tensor2",
                                    err) != 0) {
            return -1;
        }
    }
    return 0;
}

/* addcmul: input + value * tensor1 * tensor2, in the promoted dtype (value truncated for
** integers, as torch's kernel casts it). */
static int make_addcmul(struct td_tensor **out, const struct td_operand *in, int nin,
                        const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    if (need_addc(in, nin, "addcmul", err) != 0) {
        return -1;
    }
    struct scratch s = {.n = 0};
    struct td_operand c[3];
    enum td_dtype dt;
    if (promote_all(&s, in, nin, c, &dt, q, err) != 0) {
        return fail(&s);
    }
    struct td_scalar v = scalar_for(scalar_or_one(a->has_value, a->value), dt);
    struct td_tensor *p = RUN2(TD_OP_MUL, c[1], c[2]);
    struct td_tensor *pv = p ? RUN2(TD_OP_MUL, td_s(v), td_t(p)) : NULL;
    struct td_tensor *r = pv ? RUN2(TD_OP_ADD, c[0], td_t(pv)) : NULL;
    return r != NULL ? finish(&s, r, out) : fail(&s);
}

/* torch's refusal of addcdiv on two integral tensors. */
static const char ADDCDIV_INT[] =
    "Integer division with addcdiv is no longer supported, and in a future  release addcdiv will "
    "perform a true division of tensor1 and tensor2. The historic addcdiv behavior can be "
    "implemented as (input + value * tensord.trunc(tensor1 / tensor2)).to(input.dtype) for integer "
    "inputs and as (input + value * tensor1 / tensor2) for float inputs. The future addcdiv "
    "behavior is just the latter implementation: (input + value * tensor1 / tensor2), for all "
    "dtypes.";

/* addcdiv: input + value * tensor1 / tensor2; two integral divisors are refused as torch
** refuses them. */
static int make_addcdiv(struct td_tensor **out, const struct td_operand *in, int nin,
                        const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    if (need_addc(in, nin, "addcdiv", err) != 0) {
        return -1;
    }
    if (!td_dtype_is_float(in[1].t->dtype) && !td_dtype_is_float(in[2].t->dtype)) {
        return td_err_set(err, TD_EINVAL, "%s", ADDCDIV_INT);
    }
    struct scratch s = {.n = 0};
    struct td_operand c[3];
    enum td_dtype dt;
    if (promote_all(&s, in, nin, c, &dt, q, err) != 0) {
        return fail(&s);
    }
    struct td_scalar v = scalar_for(scalar_or_one(a->has_value, a->value), dt);
    struct td_tensor *p = RUN2(TD_OP_MUL, td_s(v), c[1]);
    struct td_tensor *pv = p ? RUN2(TD_OP_DIV, td_t(p), c[2]) : NULL;
    struct td_tensor *r = pv ? RUN2(TD_OP_ADD, c[0], td_t(pv)) : NULL;
    return r != NULL ? finish(&s, r, out) : fail(&s);
}

/* torch's TypeMeta names, which lerp's dtype checks print. */
static const char *meta_name(enum td_dtype dt)
{
    switch (dt) {
    case TD_DTYPE_F32: return "float";
    case TD_DTYPE_F64: return "double";
    case TD_DTYPE_I32: return "int";
    case TD_DTYPE_I64: return "long int";
    default: return "bool";
    }
}

/* lerp: torch's formula, |w| < 0.5 ? input + w (end - input) : end - (end - input) (1 - w), in
** input's dtype (end and a tensor weight must share it); floats only. */
static int make_lerp(struct td_tensor **out, const struct td_operand *in, int nin,
                     const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    (void)a;
    if (need_tensor(in, 0, "lerp", "input", err) != 0 ||
        need_tensor(in, 1, "lerp", "end", err) != 0) {
        return -1;
    }
    enum td_dtype dt = in[0].t->dtype;
    if (in[1].t->dtype != dt) {
        return td_err_set(err, TD_EDTYPE, "expected dtype %s for `end` but got dtype %s",
                          meta_name(dt), meta_name(in[1].t->dtype));
    }
    bool wt = in[2].t != NULL;
    if (wt && in[2].t->dtype != dt) {
        return td_err_set(err, TD_EDTYPE, "expected dtype %s for `weight` but got dtype %s",
                          meta_name(dt), meta_name(in[2].t->dtype));
    }
    if (!td_dtype_is_float(dt)) {
        return td_err_set(err, TD_EDTYPE, "\"%s\" not implemented for '%s'",
                          wt ? "lerp_kernel_tensor" : "lerp_kernel_scalar", td_dtype_cname(dt));
    }
    struct scratch s = {.n = 0};
    struct td_tensor *diff = RUN2(TD_OP_SUB, in[1], in[0]);
    if (diff == NULL) {
        return fail(&s);
    }
    if (!wt) {
        double w = td_scalar_to_double(in[2].s);
        struct td_tensor *r;
        if (fabs(w) < 0.5) {
            struct td_tensor *p = RUN2(TD_OP_MUL, td_t(diff), td_s(td_scalar_f(w)));
            r = p ? RUN2(TD_OP_ADD, in[0], td_t(p)) : NULL;
        } else {
            double w1 = dt == TD_DTYPE_F32 ? (double)(1.0f - (float)w) : 1.0 - w;
            struct td_tensor *p = RUN2(TD_OP_MUL, td_t(diff), td_s(td_scalar_f(w1)));
            r = p ? RUN2(TD_OP_SUB, in[1], td_t(p)) : NULL;
        }
        return r != NULL ? finish(&s, r, out) : fail(&s);
    }
    struct td_tensor *p = RUN2(TD_OP_MUL, in[2], td_t(diff));
    struct td_tensor *lo = p ? RUN2(TD_OP_ADD, in[0], td_t(p)) : NULL;
    struct td_tensor *w1 = lo ? RUN2(TD_OP_SUB, td_s(td_scalar_i(1)), in[2]) : NULL;
    struct td_tensor *p2 = w1 ? RUN2(TD_OP_MUL, td_t(diff), td_t(w1)) : NULL;
    struct td_tensor *hi = p2 ? RUN2(TD_OP_SUB, in[1], td_t(p2)) : NULL;
    struct td_tensor *aw = hi ? RUN1(TD_OP_ABS, in[2]) : NULL;
    struct td_tensor *small = aw ? RUN2(TD_OP_LT, td_t(aw), td_s(td_scalar_f(0.5))) : NULL;
    struct td_tensor *r = NULL;
    if (small != NULL) {
        struct td_operand w3[3] = {td_t(small), td_t(lo), td_t(hi)};
        if (td_op_apply(TD_OP_WHERE, w3, 3, NULL, false, q, &r, err) != 0) {
            return fail(&s);
        }
        scratch_free(&s);
        *out = r;
        return 0;
    }
    return fail(&s);
}

/* addcmul, addcdiv, lerp run the standard path (so they also run in place: addcmul_, lerp_):
** their dtype rules check what the compositions above check, in torch's order, and the forward
** casts the composition's result into the output. */
int td_dtype_rule_addc(const struct td_operand *in, int nin, const struct td_op_args *a,
                       enum td_dtype *compute, enum td_dtype *result, struct td_err *err)
{
    bool div = a->op == TD_OP_ADDCDIV;
    if (need_addc(in, nin, div ? "addcdiv" : "addcmul", err) != 0) {
        return -1;
    }
    if (div && !td_dtype_is_float(in[1].t->dtype) && !td_dtype_is_float(in[2].t->dtype)) {
        return td_err_set(err, TD_EINVAL, "%s", ADDCDIV_INT);
    }
    *compute = *result = td_result_type(in, nin);
    return 0;
}

int td_dtype_rule_lerp(const struct td_operand *in, int nin, const struct td_op_args *a,
                       enum td_dtype *compute, enum td_dtype *result, struct td_err *err)
{
    (void)a;
    if (nin != 3 || need_tensor(in, 0, "lerp", "input", err) != 0 ||
        need_tensor(in, 1, "lerp", "end", err) != 0) {
        return -1;
    }
    enum td_dtype dt = in[0].t->dtype;
    if (in[1].t->dtype != dt) {
        return td_err_set(err, TD_EDTYPE, "expected dtype %s for `end` but got dtype %s",
                          meta_name(dt), meta_name(in[1].t->dtype));
    }
    if (in[2].t != NULL && in[2].t->dtype != dt) {
        return td_err_set(err, TD_EDTYPE, "expected dtype %s for `weight` but got dtype %s",
                          meta_name(dt), meta_name(in[2].t->dtype));
    }
    if (!td_dtype_is_float(dt)) {
        return td_err_set(err, TD_EDTYPE, "\"%s\" not implemented for '%s'",
                          in[2].t != NULL ? "lerp_kernel_tensor" : "lerp_kernel_scalar",
                          td_dtype_cname(dt));
    }
    *compute = *result = dt;
    return 0;
}

int td_fwd_composed(struct td_tensor *out, const struct td_operand *in, int nin,
                    const struct td_op_args *a, enum td_dtype compute, struct td_err *err)
{
    (void)compute;
    struct td_tensor *r = NULL;
    int rc = a->op == TD_OP_ADDCMUL   ? make_addcmul(&r, in, nin, a, a->quota, err)
             : a->op == TD_OP_ADDCDIV ? make_addcdiv(&r, in, nin, a, a->quota, err)
                                      : make_lerp(&r, in, nin, a, a->quota, err);
    if (rc == 0) {
        rc = td_cast_copy(out, r, err);
    }
    td_tensor_unref(r);
    return rc;
}

const char *td_grad_fn_lerp(const struct td_node *n)
{
    return n->in[2].t != NULL ? "LerpBackward1" : "LerpBackward0";
}

/* addmm / baddbmm: beta * input + alpha * (mat1 @ mat2) (bmm for baddbmm), input expanded to
** the product's shape (torch's expand error when it cannot be); beta = 0 ignores input's values
** (NaN included). */
int td_make_addmm(struct td_tensor **out, const struct td_operand *in, int nin,
                  const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    bool batched = a->op == TD_OP_BADDBMM;
    const char *fn = batched ? "baddbmm" : "addmm";
    for (int i = 0; i < 3; i++) {
        const char *name = i == 0    ? "input"
                           : batched ? (i == 1 ? "batch1" : "batch2")
                                     : (i == 1 ? "mat1" : "mat2");
        if (need_tensor(in, i, fn, name, err) != 0) {
            return -1;
        }
    }
    /* addmm's dtype checks, in torch's order (baddbmm casts input to the product's dtype) */
    if (!batched && in[0].t->dtype != in[2].t->dtype) {
        return td_err_set(err, TD_EDTYPE, "self and mat2 must have the same dtype");
    }
    if (!batched && in[1].t->dtype != in[2].t->dtype) {
        return td_err_set(err, TD_EDTYPE, "mat1 and mat2 must have the same dtype");
    }
    struct scratch s = {.n = 0};
    struct td_tensor *m = RUN2(batched ? TD_OP_BMM : TD_OP_MM, in[1], in[2]);
    if (m == NULL) {
        return fail(&s);
    }
    struct td_op_args ex;
    td_op_args_init(&ex);
    ex.has_dims = true;
    ex.ndims = m->ndim;
    for (int d = 0; d < m->ndim; d++) {
        ex.dims[d] = m->shape[d];
    }
    struct td_tensor *e = run(&s, TD_OP_EXPAND, in[0], NULL, &ex, q, err);
    if (e == NULL) {
        return fail(&s);
    }
    bool cast_ok;
    e = as_dtype(&s, td_t(e), m->dtype, q, err, &cast_ok).t;
    if (!cast_ok) {
        return fail(&s);
    }
    struct td_scalar alpha = scalar_or_one(a->has_alpha, a->alpha);
    struct td_scalar beta = scalar_or_one(a->has_beta, a->beta);
    struct td_tensor *am = td_scalar_to_double(alpha) == 1.0
                               ? m
                               : RUN2(TD_OP_MUL, td_t(m), td_s(scalar_for(alpha, m->dtype)));
    if (am == NULL) {
        return fail(&s);
    }
    struct td_tensor *r;
    if (td_scalar_to_double(beta) == 0.0) {
        r = RUN2(TD_OP_ADD, td_t(am), td_s(td_scalar_i(0)));
    } else {
        struct td_tensor *be = td_scalar_to_double(beta) == 1.0
                                   ? e
                                   : RUN2(TD_OP_MUL, td_t(e), td_s(scalar_for(beta, e->dtype)));
        r = be ? RUN2(TD_OP_ADD, td_t(be), td_t(am)) : NULL;
    }
    return r != NULL ? finish(&s, r, out) : fail(&s);
}

/* trace: the sum of the main diagonal of a matrix; integers sum in int64 (as torch's sum). */
int td_make_trace(struct td_tensor **out, const struct td_operand *in, int nin,
                  const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    (void)a;
    if (need_tensor(in, 0, "trace", "input", err) != 0) {
        return -1;
    }
    const struct td_tensor *x = in[0].t;
    if (x->ndim != 2) {
        return td_err_set(err, TD_ESHAPE, "trace: expected a matrix, but got tensor with dim %d",
                          x->ndim);
    }
    if (x->dtype == TD_DTYPE_BOOL) {
        return td_err_set(err, TD_EDTYPE, "\"trace\" not implemented for 'Bool'");
    }
    enum td_dtype dt = td_dtype_is_float(x->dtype) ? x->dtype : TD_DTYPE_I64;
    int rc = td_tensor_full(out, dt, NULL, 0, td_scalar_i(0), q, err);
    if (rc != 0) {
        return rc;
    }
    int64_t n = x->shape[0] < x->shape[1] ? x->shape[0] : x->shape[1];
    const char *base = td_tensor_data(x);
    size_t es = td_dtype_size(x->dtype);
    int64_t step = x->strides[0] + x->strides[1];
    if (dt == TD_DTYPE_I64) {
        uint64_t acc = 0; /* wraps like torch's int64 sum */
        for (int64_t i = 0; i < n; i++) {
            acc += (uint64_t)td_elem_load_i64(base + (size_t)(i * step) * es, x->dtype);
        }
        *(int64_t *)td_tensor_data(*out) = (int64_t)acc;
    } else {
        double acc = 0;
        for (int64_t i = 0; i < n; i++) {
            acc += td_elem_load_f64(base + (size_t)(i * step) * es, x->dtype);
        }
        td_elem_store_f64(td_tensor_data(*out), dt, acc);
    }
    return 0;
}

/* ---- their backward rules ---- */

/* A gradient of dtype g's, scaled by the scalar s (a new reference; g itself when s is 1). */
static int scale(struct td_tensor *g, struct td_scalar s, struct td_quota *q,
                 struct td_tensor **out, struct td_err *err)
{
    if (td_scalar_to_double(s) == 1.0) {
        *out = td_tensor_ref(g);
        return 0;
    }
    return td_bw2(TD_OP_MUL, td_t(g), td_s(td_scalar_f(td_scalar_to_double(s))), q, out, err);
}

static bool wants(const struct td_node *n, int i)
{
    return n->in[i].t != NULL && td_autograd_requires_grad(n->in[i].t);
}

/* addcmul: d input = g, d t1 = g value t2, d t2 = g value t1 */
int td_bw_addcmul(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                  struct td_quota *q, struct td_err *err)
{
    struct td_scalar v = scalar_or_one(n->args.has_value, n->args.value);
    struct td_tensor *gv = NULL;
    int rc = scale(g, v, q, &gv, err);
    gin[0] = rc == 0 ? td_tensor_ref(g) : NULL;
    for (int i = 1; i < 3 && rc == 0; i++) {
        if (wants(n, i)) {
            rc = td_bw2(TD_OP_MUL, td_t(gv), n->in[3 - i], q, &gin[i], err);
        }
    }
    td_tensor_unref(gv);
    return rc;
}

/* addcdiv: d input = g, d t1 = g value / t2, d t2 = -g value t1 / t2^2 */
int td_bw_addcdiv(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                  struct td_quota *q, struct td_err *err)
{
    struct td_scalar v = scalar_or_one(n->args.has_value, n->args.value);
    struct td_tensor *gv = NULL, *t = NULL, *t2 = NULL, *u = NULL;
    int rc = scale(g, v, q, &gv, err);
    gin[0] = rc == 0 ? td_tensor_ref(g) : NULL;
    if (rc == 0 && wants(n, 1)) {
        rc = td_bw2(TD_OP_DIV, td_t(gv), n->in[2], q, &gin[1], err);
    }
    if (rc == 0 && wants(n, 2)) {
        rc = td_bw2(TD_OP_MUL, td_t(gv), n->in[1], q, &t, err);
        if (rc == 0) {
            rc = td_bw2(TD_OP_MUL, n->in[2], n->in[2], q, &t2, err);
        }
        if (rc == 0) {
            rc = td_bw2(TD_OP_DIV, td_t(t), td_t(t2), q, &u, err);
        }
        if (rc == 0) {
            rc = td_bw1(TD_OP_NEG, td_t(u), NULL, q, &gin[2], err);
        }
    }
    td_tensor_unref(gv);
    td_tensor_unref(t);
    td_tensor_unref(t2);
    td_tensor_unref(u);
    return rc;
}

/* lerp: d input = g (1 - w), d end = g w, d weight = g (end - input) */
int td_bw_lerp(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
               struct td_quota *q, struct td_err *err)
{
    struct td_tensor *w1 = NULL, *d = NULL;
    int rc = 0;
    if (wants(n, 0) && n->in[2].t == NULL) {
        double w = td_scalar_to_double(n->in[2].s);
        rc = td_bw2(TD_OP_MUL, td_t(g), td_s(td_scalar_f(1.0 - w)), q, &gin[0], err);
    } else if (wants(n, 0)) {
        rc = td_bw2(TD_OP_SUB, td_s(td_scalar_i(1)), n->in[2], q, &w1, err);
        if (rc == 0) {
            rc = td_bw2(TD_OP_MUL, td_t(g), td_t(w1), q, &gin[0], err);
        }
    }
    if (rc == 0 && wants(n, 1)) {
        rc = td_bw2(TD_OP_MUL, td_t(g), n->in[2], q, &gin[1], err);
    }
    if (rc == 0 && wants(n, 2)) {
        rc = td_bw2(TD_OP_SUB, n->in[1], n->in[0], q, &d, err);
        if (rc == 0) {
            rc = td_bw2(TD_OP_MUL, td_t(g), td_t(d), q, &gin[2], err);
        }
    }
    td_tensor_unref(w1);
    td_tensor_unref(d);
    return rc;
}

/* addmm: d input = beta g, d mat1 = alpha g mat2^T, d mat2 = alpha mat1^T g (baddbmm: per
** batch, the last two dims transposed) */
static int transpose_last(struct td_operand x, bool batched, struct td_quota *q,
                          struct td_tensor **out, struct td_err *err)
{
    if (!batched) {
        return td_bw1(TD_OP_T, x, NULL, q, out, err);
    }
    struct td_op_args t;
    td_op_args_init(&t);
    t.dim = 1;
    t.dim2 = 2;
    return td_bw1(TD_OP_TRANSPOSE, x, &t, q, out, err);
}

int td_bw_addmm(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                struct td_quota *q, struct td_err *err)
{
    struct td_scalar alpha = scalar_or_one(n->args.has_alpha, n->args.alpha);
    struct td_scalar beta = scalar_or_one(n->args.has_beta, n->args.beta);
    struct td_tensor *ga = NULL, *tt = NULL;
    int rc = 0;
    if (wants(n, 0)) {
        rc = scale(g, beta, q, &gin[0], err);
    }
    if (rc == 0 && (wants(n, 1) || wants(n, 2))) {
        rc = scale(g, alpha, q, &ga, err);
    }
    bool batched = n->op == TD_OP_BADDBMM;
    enum td_op_id mm = batched ? TD_OP_BMM : TD_OP_MM;
    if (rc == 0 && wants(n, 1)) {
        rc = transpose_last(n->in[2], batched, q, &tt, err);
        if (rc == 0) {
            rc = td_bw2(mm, td_t(ga), td_t(tt), q, &gin[1], err);
        }
        td_tensor_unref(tt);
        tt = NULL;
    }
    if (rc == 0 && wants(n, 2)) {
        rc = transpose_last(n->in[1], batched, q, &tt, err);
        if (rc == 0) {
            rc = td_bw2(mm, td_t(tt), td_t(ga), q, &gin[2], err);
        }
    }
    td_tensor_unref(ga);
    td_tensor_unref(tt);
    return rc;
}

/* trace: g (a 0-dim) times the identity of input's shape */
int td_bw_trace(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                struct td_quota *q, struct td_err *err)
{
    struct td_op_args e;
    td_op_args_init(&e);
    e.has_dims = true;
    e.ndims = 2;
    e.dims[0] = n->in[0].t->shape[0];
    e.dims[1] = n->in[0].t->shape[1];
    e.has_dtype = true;
    e.dtype = g->dtype;
    struct td_tensor *eye = NULL;
    int rc = td_op_apply(TD_OP_EYE, NULL, 0, &e, false, q, &eye, err);
    if (rc == 0) {
        rc = td_bw2(TD_OP_MUL, td_t(eye), td_t(g), q, &gin[0], err);
    }
    td_tensor_unref(eye);
    return rc;
}

/* ---- cost of the composed ops: safe before validation ---- */

/* The broadcast shape of the tensor operands (scalars take no part); -1 when they do not
** broadcast or a required one is a number. */
static int bshape(const struct td_operand *in, int nin, int need, int64_t *shape, int *ndim)
{
    *ndim = 0;
    for (int i = 0; i < nin; i++) {
        if (in[i].t == NULL) {
            if (i < need) {
                return -1;
            }
            continue;
        }
        int64_t tmp[TD_MAX_DIMS];
        int nt;
        if (td_broadcast_shapes(shape, *ndim, in[i].t->shape, in[i].t->ndim, tmp, &nt, NULL) != 0) {
            return -1;
        }
        memcpy(shape, tmp, sizeof(int64_t) * (size_t)nt);
        *ndim = nt;
    }
    return 0;
}

static int64_t count(const int64_t *shape, int ndim)
{
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) {
        n = td_sat_mul(n, shape[d] < 0 ? 0 : shape[d]);
    }
    return n;
}

/* isclose, addcmul, addcdiv, lerp: about a dozen elementwise passes over the broadcast shape,
** each reading its operands and writing a temporary of 8-byte elements at most. */
int td_cost_composed(const struct td_operand *in, int nin, const struct td_op_args *a,
                     struct td_cost *c)
{
    int64_t shape[TD_MAX_DIMS];
    int ndim;
    int need = a->op == TD_OP_LERP ? 2 : nin;
    if (nin < 2 || nin > 3 || bshape(in, nin, need, shape, &ndim) != 0) {
        return -1;
    }
    int64_t n = count(shape, ndim), passes = a->op == TD_OP_ISCLOSE ? 12 : 8;
    c->read = td_sat_mul(n, td_sat_mul(passes, 2));
    c->written = td_sat_mul(n, passes);
    c->out_bytes = a->inplace ? 0 : td_sat_mul(n, 8);
    c->temp_bytes = td_sat_mul(td_sat_mul(n, 8), 4);
    return 0;
}

/* addmm / baddbmm: the products plus two elementwise passes over the product's shape. */
int td_cost_addmm(const struct td_operand *in, int nin, const struct td_op_args *a,
                  struct td_cost *c)
{
    int r = a->op == TD_OP_BADDBMM ? 3 : 2;
    if (nin != 3 || in[0].t == NULL || in[1].t == NULL || in[2].t == NULL || in[1].t->ndim != r ||
        in[2].t->ndim != r) {
        return -1;
    }
    struct td_operand mm[2] = {in[1], in[2]};
    if (td_cost_matmul(mm, 2, a, c) != 0) {
        return -1;
    }
    int64_t n = td_sat_mul(td_sat_mul(in[1].t->shape[0], in[1].t->shape[r - 2]),
                           in[2].t->shape[r - 1]);
    c->read = td_sat_add(c->read, td_sat_mul(n, 4));
    c->written = td_sat_add(c->written, td_sat_mul(n, 2));
    c->temp_bytes = td_sat_add(c->temp_bytes, td_sat_mul(n, 16));
    return 0;
}

/* trace: the diagonal read once. */
int td_cost_trace(const struct td_operand *in, int nin, const struct td_op_args *a,
                  struct td_cost *c)
{
    (void)a;
    if (nin != 1 || in[0].t == NULL || in[0].t->ndim != 2) {
        return -1;
    }
    const struct td_tensor *x = in[0].t;
    c->read = x->shape[0] < x->shape[1] ? x->shape[0] : x->shape[1];
    c->written = 1;
    c->out_bytes = 8;
    return 0;
}

/* ---- diagonal (a view), diag, roll, baddbmm, triu_indices / tril_indices, round's name ---- */

const char *td_grad_fn_round(const struct td_node *n)
{
    return n->args.decimals != 0 ? "RoundBackward1" : "RoundBackward0";
}

/* diagonal(offset in start, dim1 in dim, dim2): the two dims go, the diagonal's length becomes
** the last dim; a view of input's storage. */
int td_make_diagonal(struct td_tensor **out, const struct td_operand *in, int nin,
                     const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    (void)q;
    if (need_tensor(in, 0, "diagonal", "input", err) != 0) {
        return -1;
    }
    struct td_tensor *t = in[0].t;
    int64_t d1, d2;
    int rc;
    if ((rc = td_wrap_dim(a->dim, t->ndim, &d1, err)) != 0 ||
        (rc = td_wrap_dim(a->dim2, t->ndim, &d2, err)) != 0) {
        return rc;
    }
    if (d1 == d2) {
        return td_err_set(err, TD_EINVAL, "diagonal dimensions cannot be identical %lld, %lld",
                          (long long)a->dim, (long long)a->dim2);
    }
    int64_t off = a->start, s1 = t->shape[d1], s2 = t->shape[d2], len;
    if (off >= 0) {
        len = off >= s2 ? 0 : (s1 < s2 - off ? s1 : s2 - off);
    } else {
        len = off <= -s1 ? 0 : (s1 + off < s2 ? s1 + off : s2);
    }
    int64_t offset = t->offset;
    if (len > 0) {
        offset += off >= 0 ? off * t->strides[d2] : -off * t->strides[d1];
    }
    int64_t shape[TD_MAX_DIMS], strides[TD_MAX_DIMS];
    int n = 0;
    for (int d = 0; d < t->ndim; d++) {
        if (d != d1 && d != d2) {
            shape[n] = t->shape[d];
            strides[n++] = t->strides[d];
        }
    }
    shape[n] = len;
    strides[n++] = t->strides[d1] + t->strides[d2];
    return td_view_new(out, t, n, shape, strides, offset, err);
}

static void diagonal_args(struct td_op_args *d, int64_t offset)
{
    td_op_args_init(d);
    d->start = offset;
    d->dim = 0;
    d->dim2 = 1;
}

/* diag(diagonal in dim): a vector onto the diagonal of a square zero matrix, or a matrix's
** diagonal as a new vector. */
int td_make_diag(struct td_tensor **out, const struct td_operand *in, int nin,
                 const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    if (need_tensor(in, 0, "diag", "input", err) != 0) {
        return -1;
    }
    struct td_tensor *t = in[0].t, *view = NULL;
    struct td_op_args d;
    diagonal_args(&d, a->dim);
    int rc;
    if (t->ndim == 2) {
        if ((rc = td_make_diagonal(&view, in, 1, &d, q, err)) != 0) {
            return rc;
        }
        rc = td_bw1(TD_OP_CLONE, td_t(view), NULL, q, out, err);
        td_tensor_unref(view);
        return rc;
    }
    if (t->ndim != 1) {
        return td_err_set(err, TD_ESHAPE, "matrix or a vector expected");
    }
    int64_t k = a->dim == INT64_MIN ? INT64_MAX : a->dim < 0 ? -a->dim : a->dim;
    int64_t n = td_sat_add(t->shape[0], k);
    int64_t shape[2] = {n, n};
    struct td_tensor *z = NULL, *r = NULL;
    if ((rc = td_tensor_full(&z, t->dtype, shape, 2, td_scalar_i(0), q, err)) != 0) {
        return rc;
    }
    struct td_operand zo = td_t(z);
    if ((rc = td_make_diagonal(&view, &zo, 1, &d, q, err)) == 0) {
        struct td_operand cp[2] = {td_t(view), in[0]};
        rc = td_op_apply(TD_OP_COPY, cp, 2, NULL, true, q, &r, err);
    }
    td_tensor_unref(r);
    td_tensor_unref(view);
    if (rc != 0) {
        td_tensor_unref(z);
        return rc;
    }
    *out = z;
    return 0;
}

/* diag's backward: a vector input gets g's diagonal; a matrix input gets g on its diagonal. */
int td_bw_diag(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
               struct td_quota *q, struct td_err *err)
{
    struct td_op_args d;
    diagonal_args(&d, n->args.dim);
    const struct td_tensor *x = n->in[0].t;
    struct td_tensor *view = NULL, *z = NULL, *r = NULL;
    struct td_operand go = td_t(g);
    int rc;
    if (x->ndim == 1) {
        if ((rc = td_make_diagonal(&view, &go, 1, &d, q, err)) == 0) {
            rc = td_bw1(TD_OP_CLONE, td_t(view), NULL, q, &gin[0], err);
        }
        td_tensor_unref(view);
        return rc;
    }
    if ((rc = td_tensor_full(&z, g->dtype, x->shape, x->ndim, td_scalar_i(0), q, err)) != 0) {
        return rc;
    }
    struct td_operand zo = td_t(z);
    if ((rc = td_make_diagonal(&view, &zo, 1, &d, q, err)) == 0) {
        struct td_operand cp[2] = {td_t(view), go};
        rc = td_op_apply(TD_OP_COPY, cp, 2, NULL, true, q, &r, err);
    }
    td_tensor_unref(r);
    td_tensor_unref(view);
    if (rc != 0) {
        td_tensor_unref(z);
        return rc;
    }
    gin[0] = z;
    return 0;
}

/* roll(shifts, dims): per dim, the last `shift` slices move to the front (cat of two narrows);
** without dims, the flattened tensor rolls and takes input's shape back. */
static int roll(struct td_tensor *x, const int64_t *shifts, const int64_t *dims, int n, bool flat,
                struct td_quota *q, struct td_tensor **out, struct td_err *err)
{
    struct scratch s = {.n = 0};
    struct td_tensor *cur = x;
    int64_t one = 0;
    if (flat) {
        struct td_op_args f;
        td_op_args_init(&f);
        f.dim2 = -1;
        cur = run(&s, TD_OP_FLATTEN, td_t(x), NULL, &f, q, err);
        if (cur == NULL) {
            return fail(&s);
        }
        dims = &one;
    }
    for (int k = 0; k < n; k++) {
        int64_t d;
        if (td_wrap_dim(dims[k], cur->ndim, &d, err) != 0) {
            return fail(&s);
        }
        int64_t size = cur->ndim > 0 ? cur->shape[d] : 1;
        if (cur->ndim == 0 || size == 0) {
            continue;
        }
        int64_t sh = shifts[k] % size;
        sh = sh < 0 ? sh + size : sh;
        if (sh == 0) {
            continue;
        }
        struct td_op_args na;
        td_op_args_init(&na);
        na.dim = d;
        na.start = size - sh;
        na.end = sh;
        struct td_tensor *tail = run(&s, TD_OP_NARROW, td_t(cur), NULL, &na, q, err);
        na.start = 0;
        na.end = size - sh;
        struct td_tensor *head = tail ? run(&s, TD_OP_NARROW, td_t(cur), NULL, &na, q, err) : NULL;
        if (head == NULL) {
            return fail(&s);
        }
        struct td_operand parts[2] = {td_t(tail), td_t(head)};
        struct td_op_args ca;
        td_op_args_init(&ca);
        ca.dim = d;
        struct td_tensor *c = NULL;
        if (td_op_apply(TD_OP_CAT, parts, 2, &ca, false, q, &c, err) != 0 || s.n >= 15) {
            td_tensor_unref(c);
            return fail(&s);
        }
        s.t[s.n++] = c;
        cur = c;
    }
    if (flat) {
        struct td_op_args v;
        td_op_args_init(&v);
        v.has_dims = true;
        v.ndims = x->ndim;
        memcpy(v.dims, x->shape, sizeof(int64_t) * (size_t)x->ndim);
        cur = run(&s, TD_OP_RESHAPE, td_t(cur), NULL, &v, q, err);
        if (cur == NULL) {
            return fail(&s);
        }
    }
    if (cur == x) { /* nothing moved: still a new tensor, as torch's */
        scratch_free(&s);
        return td_bw1(TD_OP_CLONE, td_t(x), NULL, q, out, err);
    }
    return finish(&s, cur, out); /* the last cat's result (or its reshape) is the new tensor */
}

int td_make_roll(struct td_tensor **out, const struct td_operand *in, int nin,
                 const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    if (need_tensor(in, 0, "roll", "input", err) != 0) {
        return -1;
    }
    int nd = a->has_dims ? a->ndims : 0;
    if (a->nshifts == 0) {
        return td_err_set(err, TD_EINVAL, "`shifts` required");
    }
    if (nd == 0 && a->nshifts == 1) {
        return roll(in[0].t, a->shifts, NULL, 1, true, q, out, err);
    }
    if (a->nshifts != nd) {
        return td_err_set(err, TD_EINVAL, "shifts and dimensions must align. shifts: %d, dims:%d",
                          a->nshifts, nd);
    }
    return roll(in[0].t, a->shifts, a->dims, nd, false, q, out, err);
}

/* roll's backward: g rolled back. */
int td_bw_roll(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
               struct td_quota *q, struct td_err *err)
{
    int64_t back[TD_MAX_DIMS];
    for (int k = 0; k < n->args.nshifts && k < TD_MAX_DIMS; k++) {
        back[k] = n->args.shifts[k] == INT64_MIN ? 0 : -n->args.shifts[k];
    }
    int nd = n->args.has_dims ? n->args.ndims : 0;
    return roll(g, back, n->args.dims, n->args.nshifts, nd == 0, q, &gin[0], err);
}

/* triu_indices / tril_indices(row in dim, col in dim2, offset in start, dtype): the [2, N]
** coordinates of the upper (lower) triangle, row by row. */
/* a + b, clamped to int64's range (offsets may be anything the wire carries). */
static int64_t add_clamped(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r)) {
        return b > 0 ? INT64_MAX : INT64_MIN;
    }
    return r;
}

static int tri_indices(bool upper, struct td_tensor **out, const struct td_op_args *a,
                       struct td_quota *q, struct td_err *err)
{
    int64_t row = a->dim, col = a->dim2, off = a->start;
    const char *name = upper ? "triu_indices" : "tril_indices";
    if (row < 0) {
        return td_err_set(err, TD_EINVAL, "row must be non-negative, got%lld", (long long)row);
    }
    if (col < 0) {
        return td_err_set(err, TD_EINVAL, "col must be non-negative, got%lld", (long long)col);
    }
    enum td_dtype dt = a->has_dtype ? a->dtype : TD_DTYPE_I64;
    if (dt != TD_DTYPE_I64 && dt != TD_DTYPE_I32) {
        return td_err_set(err, TD_EDTYPE, "\"%s\" not implemented for '%s'", name,
                          td_dtype_cname(dt));
    }
    /* count first: per row i, columns j with j >= i + off (upper) or j <= i + off (lower). Past
    ** row col - off (upper) or col - off - 1 (lower) every row has 0 (upper) or col (lower)
    ** columns, so only the rows before that are walked: the count costs at most col rows. */
    int64_t neg = upper ? (off == INT64_MIN ? INT64_MAX : -off) : -add_clamped(off, 1);
    int64_t count = 0, varying = add_clamped(col, neg);
    varying = varying < 0 ? 0 : varying > row ? row : varying;
    for (int64_t i = 0; i < varying; i++) {
        int64_t lo = upper ? add_clamped(i, off) : 0;
        int64_t hi = upper ? col : add_clamped(add_clamped(i, off), 1);
        lo = lo < 0 ? 0 : lo;
        hi = hi > col ? col : hi;
        count = td_sat_add(count, hi > lo ? hi - lo : 0);
        if ((i & 0xffff) == 0 && td_cancel_check(err) != 0) {
            return -1;
        }
    }
    if (!upper) {
        count = td_sat_add(count, td_sat_mul(row - varying, col));
    }
    int64_t shape[2] = {2, count};
    int rc = td_tensor_empty(out, dt, shape, 2, q, err);
    if (rc != 0) {
        return rc;
    }
    char *p = td_tensor_data(*out);
    int64_t k = 0;
    for (int64_t i = 0; i < row && k < count; i++) {
        int64_t lo = upper ? add_clamped(i, off) : 0;
        int64_t hi = upper ? col : add_clamped(add_clamped(i, off), 1);
        lo = lo < 0 ? 0 : lo;
        hi = hi > col ? col : hi;
        for (int64_t j = lo; j < hi; j++, k++) {
            if (dt == TD_DTYPE_I64) {
                ((int64_t *)p)[k] = i;
                ((int64_t *)p)[count + k] = j;
            } else {
                ((int32_t *)p)[k] = (int32_t)i;
                ((int32_t *)p)[count + k] = (int32_t)j;
            }
        }
        if ((i & 0xfff) == 0 && (rc = td_cancel_check(err)) != 0) {
            td_tensor_unref(*out);
            *out = NULL;
            return rc;
        }
    }
    return 0;
}

int td_make_triu_indices(struct td_tensor **out, const struct td_operand *in, int nin,
                         const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)in;
    (void)nin;
    return tri_indices(true, out, a, q, err);
}

int td_make_tril_indices(struct td_tensor **out, const struct td_operand *in, int nin,
                         const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)in;
    (void)nin;
    return tri_indices(false, out, a, q, err);
}

/* ---- costs ---- */

/* diagonal: a view; diag: at most a square of the vector's length plus its copy. */
int td_cost_diag(const struct td_operand *in, int nin, const struct td_op_args *a,
                 struct td_cost *c)
{
    if (nin != 1 || in[0].t == NULL) {
        return -1;
    }
    const struct td_tensor *x = in[0].t;
    if (a->op == TD_OP_DIAGONAL) {
        return x->ndim >= 2 ? 0 : -1;
    }
    if (x->ndim == 2) {
        int64_t n = x->shape[0] < x->shape[1] ? x->shape[0] : x->shape[1];
        c->read = c->written = n;
        c->out_bytes = td_sat_mul(n, 8);
        return 0;
    }
    if (x->ndim != 1) {
        return -1;
    }
    int64_t k = a->dim == INT64_MIN ? INT64_MAX : a->dim < 0 ? -a->dim : a->dim;
    int64_t n = td_sat_add(x->shape[0], k), nn = td_sat_mul(n, n);
    c->read = x->shape[0];
    c->written = nn;
    c->out_bytes = td_sat_mul(nn, 8);
    return 0;
}

/* roll: every element read and written once per rolled dim, plus the final copy. */
int td_cost_roll(const struct td_operand *in, int nin, const struct td_op_args *a,
                 struct td_cost *c)
{
    if (nin != 1 || in[0].t == NULL || a->nshifts < 0 || a->nshifts > TD_MAX_DIMS) {
        return -1;
    }
    int64_t n = in[0].t->numel, passes = a->nshifts + 1;
    c->read = td_sat_mul(n, passes);
    c->written = td_sat_mul(n, passes);
    c->out_bytes = td_sat_mul(n, 8);
    c->temp_bytes = td_sat_mul(td_sat_mul(n, 8), passes);
    return 0;
}

/* triu_indices / tril_indices: up to row * col pairs. */
int td_cost_tri_indices(const struct td_operand *in, int nin, const struct td_op_args *a,
                        struct td_cost *c)
{
    (void)in;
    (void)nin;
    if (a->dim < 0 || a->dim2 < 0) {
        return -1;
    }
    /* the rows that can hold an upper-triangle element: those before col - offset */
    int64_t rows = a->dim;
    if (a->op == TD_OP_TRIU_INDICES) {
        int64_t neg = a->start == INT64_MIN ? INT64_MAX : -a->start;
        int64_t lim = add_clamped(a->dim2, neg);
        rows = lim < 0 ? 0 : lim < rows ? lim : rows;
    }
    int64_t n = td_sat_mul(rows, a->dim2);
    c->read = rows;
    c->written = td_sat_mul(n, 2);
    c->out_bytes = td_sat_mul(n, 16);
    return 0;
}

/* ---- einsum: one or two operands, letters only (no '...', no repeated letter in a term) ----
** Parsed into subscripts, then run as sums over the letters only one operand has, a permute and
** reshape of each operand to [batch, kept, contracted] and [batch, contracted, kept], one bmm, a
** reshape and a permute to the output's order: the compositions torch's own einsum makes. */

struct ein {
    int n;                        /* operands: 1 or 2 */
    char sub[2][TD_MAX_DIMS + 1]; /* each operand's letters */
    int nsub[2];
    char out[TD_MAX_DIMS + 1]; /* the output's letters */
    int nout;
    int64_t size[128]; /* a letter's size (the broadcast of its operands') */
};

static bool ein_letter(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int ein_find(const char *s, int n, char c)
{
    for (int i = 0; i < n; i++) {
        if (s[i] == c) {
            return i;
        }
    }
    return -1;
}

/* torch's parse, with its messages, of the subset supported here. */
static int ein_parse(const char *eq, const struct td_operand *in, int nin, struct ein *e,
                     struct td_err *err)
{
    memset(e, 0, sizeof *e);
    int term = 0;
    bool arrow = false;
    for (int i = 0; eq[i] != '\0'; i++) {
        char c = eq[i];
        if (c == ' ') {
            continue;
        }
        if (c == '.') {
            return td_err_set(err, TD_EINVAL,
                              "einsum(): '...' (ellipsis) is not supported by "
                              "tensord");
        }
        if (!arrow && c == '-' && eq[i + 1] == '>') {
            arrow = true;
            i++;
            continue;
        }
        if (!arrow && c == ',') {
            if (++term >= 2) {
                return td_err_set(err, TD_EINVAL,
                                  "einsum(): tensord supports one or two operands, not %d",
                                  term + 1);
            }
            continue;
        }
        if (!ein_letter(c)) {
            return td_err_set(err, TD_EINVAL,
                              "einsum(): invalid subscript given at index %d in the equation "
                              "string, subscripts must be in [a-zA-Z]",
                              i);
        }
        if (arrow) {
            if (e->nout >= TD_MAX_DIMS) {
                return td_err_set(err, TD_EINVAL, "einsum(): too many output subscripts");
            }
            if (ein_find(e->out, e->nout, c) >= 0) {
                return td_err_set(err, TD_EINVAL,
                                  "einsum(): output subscript %c appears more than once in the "
                                  "output",
                                  c);
            }
            e->out[e->nout++] = c;
            continue;
        }
        if (e->nsub[term] >= TD_MAX_DIMS) {
            return td_err_set(err, TD_EINVAL, "einsum(): too many subscripts for operand %d", term);
        }
        if (ein_find(e->sub[term], e->nsub[term], c) >= 0) {
            return td_err_set(err, TD_EINVAL,
                              "einsum(): subscript %c is repeated for operand %d: diagonals are "
                              "not supported by tensord",
                              c, term);
        }
        e->sub[term][e->nsub[term]++] = c;
    }
    e->n = term + 1;
    if (e->n > nin) {
        return td_err_set(err, TD_EINVAL,
                          "einsum(): fewer operands were provided than specified in the equation");
    }
    if (e->n < nin) {
        return td_err_set(err, TD_EINVAL,
                          "einsum(): more operands were provided than specified in the equation");
    }
    for (int k = 0; k < e->n; k++) {
        if (in[k].t == NULL) {
            return td_err_set(err, TD_EINVAL,
                              "expected Tensor as element %d in argument 1, but got %s", k,
                              in[k].s.kind == TD_SCALAR_FLOAT ? "float"
                              : in[k].s.kind == TD_SCALAR_INT ? "int"
                                                              : "bool");
        }
        const struct td_tensor *t = in[k].t;
        if (t->ndim != e->nsub[k]) {
            return td_err_set(err, TD_ESHAPE,
                              "einsum(): the number of subscripts in the equation (%d) does not "
                              "match the number of dimensions (%d) for operand %d and no "
                              "ellipsis was given",
                              e->nsub[k], t->ndim, k);
        }
        for (int d = 0; d < t->ndim; d++) {
            int64_t *sz = &e->size[(unsigned char)e->sub[k][d]]; /* size + 1; 0: unseen */
            int64_t s = t->shape[d];
            if (*sz == 0 || *sz == 2) { /* unseen, or seen as 1: s broadcasts with it */
                *sz = (*sz == 2 && s == 1) ? 2 : td_sat_add(s, 1);
            } else if (s != 1 && s != *sz - 1) {
                return td_err_set(err, TD_ESHAPE,
                                  "einsum(): subscript %c has size %lld for operand %d which "
                                  "does not broadcast with previously seen size %lld",
                                  e->sub[k][d], (long long)t->shape[d], k, (long long)(*sz - 1));
            }
        }
    }
    if (arrow) {
        for (int i = 0; i < e->nout; i++) {
            if (e->size[(unsigned char)e->out[i]] == 0) {
                return td_err_set(err, TD_EINVAL,
                                  "einsum(): output subscript %c does not appear in the equation "
                                  "for any input operand",
                                  e->out[i]);
            }
        }
    } else { /* the letters seen once, in order (A-Z, then a-z) */
        for (int c = 'A'; c <= 'z'; c++) {
            int seen = 0;
            for (int k = 0; k < e->n; k++) {
                seen += ein_find(e->sub[k], e->nsub[k], (char)c) >= 0;
            }
            if (seen == 1 && ein_letter((char)c)) {
                if (e->nout >= TD_MAX_DIMS) {
                    return td_err_set(err, TD_EINVAL,
                                      "einsum(): the output would have more than %d dims",
                                      TD_MAX_DIMS);
                }
                e->out[e->nout++] = (char)c;
            }
        }
    }
    return 0;
}

/* sizes are stored plus one (0: unseen) */
static int64_t ein_size(const struct ein *e, char c)
{
    return e->size[(unsigned char)c] - 1;
}

static struct td_tensor *ein_dims_op(struct scratch *s, enum td_op_id op, struct td_tensor *x,
                                     const int64_t *dims, int n, struct td_quota *q,
                                     struct td_err *err)
{
    struct td_op_args a;
    td_op_args_init(&a);
    a.has_dims = true;
    a.ndims = n;
    memcpy(a.dims, dims, sizeof(int64_t) * (size_t)n);
    return run(s, op, td_t(x), NULL, &a, q, err);
}

/* Runs parsed einsum e on tensors x[0..e->n-1]; *out a new tensor. */
static int ein_run(const struct ein *e0, struct td_tensor *const *x, struct td_quota *q,
                   struct td_tensor **out, struct td_err *err)
{
    struct ein e = *e0;
    struct scratch s = {.n = 0};
    struct td_tensor *t[2] = {x[0], e.n > 1 ? x[1] : NULL};
    int64_t dims[TD_MAX_DIMS];
    for (int k = 0; k < e.n; k++) {
        /* broadcast size-1 dims to the letter's size */
        bool expand = false;
        for (int d = 0; d < e.nsub[k]; d++) {
            dims[d] = ein_size(&e, e.sub[k][d]);
            expand |= dims[d] != t[k]->shape[d];
        }
        if (expand &&
            (t[k] = ein_dims_op(&s, TD_OP_EXPAND, t[k], dims, e.nsub[k], q, err)) == NULL) {
            return fail(&s);
        }
        /* sum the letters no other term has */
        int nd = 0;
        char keep[TD_MAX_DIMS + 1];
        int nkeep = 0;
        for (int d = 0; d < e.nsub[k]; d++) {
            char c = e.sub[k][d];
            bool other = e.n > 1 && ein_find(e.sub[1 - k], e.nsub[1 - k], c) >= 0;
            if (!other && ein_find(e.out, e.nout, c) < 0) {
                dims[nd++] = d;
            } else {
                keep[nkeep++] = c;
            }
        }
        if (nd > 0) {
            if ((t[k] = ein_dims_op(&s, TD_OP_SUM, t[k], dims, nd, q, err)) == NULL) {
                return fail(&s);
            }
            memcpy(e.sub[k], keep, (size_t)nkeep);
            e.nsub[k] = nkeep;
        }
    }
    struct td_tensor *r;
    char order[TD_MAX_DIMS + 1]; /* r's letters */
    int nr = 0;
    if (e.n == 1) {
        r = t[0];
        memcpy(order, e.sub[0], (size_t)e.nsub[0]);
        nr = e.nsub[0];
    } else {
        char batch[TD_MAX_DIMS], kept[2][TD_MAX_DIMS], con[TD_MAX_DIMS];
        int nb = 0, nk[2] = {0, 0}, nc = 0;
        int64_t B = 1, M[2] = {1, 1}, K = 1;
        for (int d = 0; d < e.nsub[0]; d++) {
            char c = e.sub[0][d];
            bool in1 = ein_find(e.sub[1], e.nsub[1], c) >= 0;
            bool inout = ein_find(e.out, e.nout, c) >= 0;
            if (in1 && inout) {
                batch[nb++] = c;
                B = td_sat_mul(B, ein_size(&e, c));
            } else if (in1) {
                con[nc++] = c;
                K = td_sat_mul(K, ein_size(&e, c));
            } else {
                kept[0][nk[0]++] = c;
                M[0] = td_sat_mul(M[0], ein_size(&e, c));
            }
        }
        for (int d = 0; d < e.nsub[1]; d++) {
            char c = e.sub[1][d];
            if (ein_find(e.sub[0], e.nsub[0], c) < 0) {
                kept[1][nk[1]++] = c;
                M[1] = td_sat_mul(M[1], ein_size(&e, c));
            }
        }
        struct td_tensor *m[2];
        for (int k = 0; k < 2; k++) {
            /* operand 0 as [batch, kept, con], operand 1 as [batch, con, kept] */
            char want[TD_MAX_DIMS];
            int nw = 0;
            memcpy(want + nw, batch, (size_t)nb);
            nw += nb;
            if (k == 0) {
                memcpy(want + nw, kept[0], (size_t)nk[0]);
                nw += nk[0];
                memcpy(want + nw, con, (size_t)nc);
                nw += nc;
            } else {
                memcpy(want + nw, con, (size_t)nc);
                nw += nc;
                memcpy(want + nw, kept[1], (size_t)nk[1]);
                nw += nk[1];
            }
            for (int i = 0; i < nw; i++) {
                dims[i] = ein_find(e.sub[k], e.nsub[k], want[i]);
            }
            struct td_tensor *p = ein_dims_op(&s, TD_OP_PERMUTE, t[k], dims, nw, q, err);
            int64_t shape3[3] = {B, k == 0 ? M[0] : K, k == 0 ? K : M[1]};
            m[k] = p ? ein_dims_op(&s, TD_OP_RESHAPE, p, shape3, 3, q, err) : NULL;
            if (m[k] == NULL) {
                return fail(&s);
            }
        }
        struct td_tensor *prod = RUN2(TD_OP_BMM, td_t(m[0]), td_t(m[1]));
        if (prod == NULL) {
            return fail(&s);
        }
        memcpy(order, batch, (size_t)nb);
        memcpy(order + nb, kept[0], (size_t)nk[0]);
        memcpy(order + nb + nk[0], kept[1], (size_t)nk[1]);
        nr = nb + nk[0] + nk[1];
        for (int i = 0; i < nr; i++) {
            dims[i] = ein_size(&e, order[i]);
        }
        if ((r = ein_dims_op(&s, TD_OP_RESHAPE, prod, dims, nr, q, err)) == NULL) {
            return fail(&s);
        }
    }
    /* to the output's order, as a tensor of its own */
    for (int i = 0; i < e.nout; i++) {
        dims[i] = ein_find(order, nr, e.out[i]);
    }
    struct td_tensor *p = ein_dims_op(&s, TD_OP_PERMUTE, r, dims, e.nout, q, err);
    struct td_tensor *c = p ? RUN1(TD_OP_CLONE, td_t(p)) : NULL;
    return c != NULL ? finish(&s, c, out) : fail(&s);
}

int td_make_einsum(struct td_tensor **out, const struct td_operand *in, int nin,
                   const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    struct ein e;
    int rc = ein_parse(a->equation, in, nin, &e, err);
    if (rc != 0) {
        return rc;
    }
    struct td_tensor *x[2] = {in[0].t, e.n > 1 ? in[1].t : NULL};
    return ein_run(&e, x, q, out, err);
}

/* torch's einsum is a composite: its grad_fn is its last step's. */
const char *td_grad_fn_einsum(const struct td_node *n)
{
    if (n->nin == 2) {
        return "ViewBackward0";
    }
    const char *eq = n->args.equation;
    return strchr(eq, '>') != NULL && strchr(eq, '>')[1] == '\0' ? "SumBackward1"
                                                                 : "PermuteBackward0";
}

/* einsum's backward: d operand k = einsum(g and the other operand -> operand k's letters that
** they have), then reshaped and expanded over the letters only operand k had (summed away). */
int td_bw_einsum(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                 struct td_quota *q, struct td_err *err)
{
    struct ein e;
    int rc = ein_parse(n->args.equation, n->in, n->nin, &e, err);
    for (int k = 0; k < e.n && rc == 0; k++) {
        if (!wants(n, k)) {
            continue;
        }
        struct ein b;
        memset(&b, 0, sizeof b);
        b.n = e.n;
        memcpy(b.sub[0], e.out, (size_t)e.nout);
        b.nsub[0] = e.nout;
        if (e.n == 2) {
            memcpy(b.sub[1], e.sub[1 - k], (size_t)e.nsub[1 - k]);
            b.nsub[1] = e.nsub[1 - k];
        }
        int64_t full[TD_MAX_DIMS], part[TD_MAX_DIMS];
        bool missing = false;
        for (int d = 0; d < e.nsub[k]; d++) {
            char c = e.sub[k][d];
            bool have = ein_find(b.sub[0], b.nsub[0], c) >= 0 ||
                        (e.n == 2 && ein_find(b.sub[1], b.nsub[1], c) >= 0);
            full[d] = n->in[k].t->shape[d];
            part[d] = have ? ein_size(&e, c) : 1;
            missing |= !have;
            if (have) {
                b.out[b.nout++] = c;
            }
        }
        memcpy(b.size, e.size, sizeof b.size);
        struct td_tensor *x[2] = {g, e.n == 2 ? n->in[1 - k].t : NULL};
        struct td_tensor *r = NULL;
        if ((rc = ein_run(&b, x, q, &r, err)) != 0) {
            break;
        }
        /* back to operand k's shape: summed letters return as broadcast dims, and letters that
        ** were broadcast from size 1 sum back to it */
        struct scratch s = {.n = 0};
        struct td_tensor *cur = r;
        if (missing) {
            cur = ein_dims_op(&s, TD_OP_RESHAPE, r, part, e.nsub[k], q, err);
            cur = cur ? ein_dims_op(&s, TD_OP_EXPAND, cur, full, e.nsub[k], q, err) : NULL;
        }
        if (cur == NULL) {
            td_tensor_unref(r);
            fail(&s);
            rc = -1;
            break;
        }
        rc = td_sum_to_shape(cur, full, e.nsub[k], q, &gin[k], err);
        scratch_free(&s);
        td_tensor_unref(r);
    }
    return rc;
}

/* einsum: the bmm's products over the letters' sizes, and a few passes over each operand and the
** result. */
int td_cost_einsum(const struct td_operand *in, int nin, const struct td_op_args *a,
                   struct td_cost *c)
{
    struct ein e;
    if (nin < 1 || nin > 2 || ein_parse(a->equation, in, nin, &e, NULL) != 0) {
        return -1;
    }
    int64_t all = 1, outn = 1;
    for (int ch = 0; ch < 128; ch++) {
        if (e.size[ch] > 0) {
            all = td_sat_mul(all, e.size[ch] - 1);
        }
    }
    for (int i = 0; i < e.nout; i++) {
        outn = td_sat_mul(outn, ein_size(&e, e.out[i]));
    }
    for (int k = 0; k < nin; k++) {
        c->read = td_sat_add(c->read, td_sat_mul(in[k].t->numel, 3));
        c->temp_bytes = td_sat_add(c->temp_bytes, td_sat_mul(in[k].t->numel, 16));
    }
    c->flops = all;
    c->written = td_sat_mul(outn, 3);
    c->out_bytes = td_sat_mul(outn, 8);
    c->temp_bytes = td_sat_add(c->temp_bytes, td_sat_mul(outn, 16));
    return 0;
}

/* ---- clamp_min / clamp_max (a tensor or a number bound; clamp with tensor bounds is these two,
** composed by the clients): torch's maximum / minimum forward, NaN of either side propagating,
** and clamp's backward (ties go to input). ---- */

const char *td_grad_fn_clamp_bound(const struct td_node *n)
{
    bool t = n->in[1].t != NULL;
    if (n->op == TD_OP_CLAMP_MIN) {
        return t ? "ClampMinBackward1" : "ClampMinBackward0";
    }
    return t ? "ClampMaxBackward1" : "ClampMaxBackward0";
}

/* d input = g where input is inside the bound (x >= min, x <= max), d bound = g elsewhere */
int td_bw_clamp_bound(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                      struct td_quota *q, struct td_err *err)
{
    bool lower = n->op == TD_OP_CLAMP_MIN;
    struct td_tensor *in_mask = NULL, *out_mask = NULL;
    int rc = 0;
    if (wants(n, 0)) {
        rc = td_bw2(lower ? TD_OP_GE : TD_OP_LE, n->in[0], n->in[1], q, &in_mask, err);
        if (rc == 0) {
            rc = td_bw2(TD_OP_MUL, td_t(g), td_t(in_mask), q, &gin[0], err);
        }
    }
    if (rc == 0 && wants(n, 1)) {
        rc = td_bw2(lower ? TD_OP_LT : TD_OP_GT, n->in[0], n->in[1], q, &out_mask, err);
        if (rc == 0) {
            rc = td_bw2(TD_OP_MUL, td_t(g), td_t(out_mask), q, &gin[1], err);
        }
    }
    td_tensor_unref(in_mask);
    td_tensor_unref(out_mask);
    return rc;
}
