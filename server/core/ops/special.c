/* server/core/ops/special.c — issue 16's "elementwise, comparison and linear algebra" family:
** the bitwise ops and shifts (bitwise_and/or/xor/not, bitwise_left_shift/right_shift), and the
** rounding and special functions trunc, frac, erf and erfinv: their dtype rules, row kernels,
** backward rules and cost (the shared elementwise cost rule).
**
** Kernels run through elementwise.c's driver (td_elementwise_rows: casting, broadcasting, merged
** dims, parallel chunks with cancel checks), so only the per-element expression lives here.
** The shifts follow torch 1.13's CPU kernels: a left shift is done in the unsigned type with the
** count taken modulo the width (what x86 does with torch's unchecked shift: 5 << 64 is 5), a
** right shift by a negative count or one past the width is a shift by width - 1 (the sign).
*/
#include <math.h>
#include <stdio.h>

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
    return x < 0 ? (int32_t)~(~(uint32_t)x >> s) : (int32_t)((uint32_t)x >> s);
}
static inline int64_t rshift_i64(int64_t x, int64_t y)
{
    int s = (y < 0 || y >= 63) ? 63 : (int)y;
    return x < 0 ? (int64_t)~(~(uint64_t)x >> s) : (int64_t)((uint64_t)x >> s);
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
