/* server/core/ops/elementwise.c — add, sub, mul, div, and the dtype cast they share.
**
** A binary op runs as: inputs whose dtype differs from the compute dtype are cast into temporary
** contiguous copies; Python scalars become one compute-dtype value with stride 0; every input gets
** broadcast strides over the output's shape (0 where it is broadcast); adjacent dims that are
** contiguous for every operand are merged, so contiguous tensors run as one flat loop; the
** innermost row goes to a typed kernel whose unit-stride and scalar cases the compiler
** vectorises. In place with a narrower self dtype, results go to a temporary and are cast in.
** Integer add/sub/mul wrap around like torch's (done in unsigned arithmetic, which C defines).
*/
#include <math.h>
#include <string.h>

#include "family.h"

typedef void row_fn(int64_t n, char *o, int64_t so, const char *a, int64_t sa, const char *b,
                    int64_t sb);

#define DEF_ROW(name, T, EXPR)                                                                     \
    static void name(int64_t n, char *o_, int64_t so, const char *a_, int64_t sa, const char *b_, \
                     int64_t sb)                                                                   \
    {                                                                                              \
        T *o = (T *)o_;                                                                            \
        const T *a = (const T *)a_, *b = (const T *)b_;                                            \
        if (so == 1 && sa == 1 && sb == 1) {                                                       \
            for (int64_t i = 0; i < n; i++) {                                                      \
                T x = a[i], y = b[i];                                                              \
                o[i] = (EXPR);                                                                     \
            }                                                                                      \
        } else if (so == 1 && sa == 1 && sb == 0) {                                                \
            const T y = b[0];                                                                      \
            for (int64_t i = 0; i < n; i++) {                                                      \
                T x = a[i];                                                                        \
                o[i] = (EXPR);                                                                     \
            }                                                                                      \
        } else if (so == 1 && sa == 0 && sb == 1) {                                                \
            const T x = a[0];                                                                      \
            for (int64_t i = 0; i < n; i++) {                                                      \
                T y = b[i];                                                                        \
                o[i] = (EXPR);                                                                     \
            }                                                                                      \
        } else {                                                                                   \
            for (int64_t i = 0; i < n; i++) {                                                      \
                T x = a[i * sa], y = b[i * sb];                                                    \
                o[i * so] = (EXPR);                                                                \
            }                                                                                      \
        }                                                                                          \
    }

/* Wrapping integer arithmetic through unsigned types. */
#define WRAP32(op) ((int32_t)(uint32_t)((uint32_t)x op (uint32_t)y))
#define WRAP64(op) ((int64_t)(uint64_t)((uint64_t)x op (uint64_t)y))

DEF_ROW(add_f32, float, x + y)
DEF_ROW(add_f64, double, x + y)
DEF_ROW(add_i32, int32_t, WRAP32(+))
DEF_ROW(add_i64, int64_t, WRAP64(+))
DEF_ROW(add_b, uint8_t, (uint8_t)(x | y))
DEF_ROW(sub_f32, float, x - y)
DEF_ROW(sub_f64, double, x - y)
DEF_ROW(sub_i32, int32_t, WRAP32(-))
DEF_ROW(sub_i64, int64_t, WRAP64(-))
DEF_ROW(mul_f32, float, x * y)
DEF_ROW(mul_f64, double, x * y)
DEF_ROW(mul_i32, int32_t, WRAP32(*))
DEF_ROW(mul_i64, int64_t, WRAP64(*))
DEF_ROW(mul_b, uint8_t, (uint8_t)(x & y))
DEF_ROW(div_f32, float, x / y)
DEF_ROW(div_f64, double, x / y)

enum { K_ADD, K_SUB, K_MUL, K_DIV };

/* Indexed by dtype: bool, int32, int64, float32, float64. NULL: never the compute dtype. */
static row_fn *const row_kernels[4][TD_DTYPE_COUNT] = {
    [K_ADD] = {add_b, add_i32, add_i64, add_f32, add_f64},
    [K_SUB] = {NULL, sub_i32, sub_i64, sub_f32, sub_f64},
    [K_MUL] = {mul_b, mul_i32, mul_i64, mul_f32, mul_f64},
    [K_DIV] = {NULL, NULL, NULL, div_f32, div_f64},
};

/* ---- casting ---- */

static double load_f(const char *p, enum td_dtype dt)
{
    switch (dt) {
    case TD_DTYPE_F32: return *(const float *)p;
    case TD_DTYPE_F64: return *(const double *)p;
    case TD_DTYPE_I32: return *(const int32_t *)p;
    case TD_DTYPE_I64: return (double)*(const int64_t *)p;
    default: return *(const uint8_t *)p != 0;
    }
}

static int64_t load_i(const char *p, enum td_dtype dt)
{
    switch (dt) {
    case TD_DTYPE_I32: return *(const int32_t *)p;
    case TD_DTYPE_I64: return *(const int64_t *)p;
    case TD_DTYPE_BOOL: return *(const uint8_t *)p != 0;
    default: {
        /* float -> int truncates toward zero; out-of-range values saturate instead of being
        ** undefined behaviour. */
        double v = load_f(p, dt);
        if (isnan(v)) {
            return 0;
        }
        if (v >= 9223372036854775807.0) {
            return INT64_MAX;
        }
        if (v <= -9223372036854775808.0) {
            return INT64_MIN;
        }
        return (int64_t)v;
    }
    }
}

static void store_cast(char *dst, enum td_dtype dd, const char *src, enum td_dtype sd)
{
    switch (dd) {
    case TD_DTYPE_F32: *(float *)dst = (float)load_f(src, sd); break;
    case TD_DTYPE_F64: *(double *)dst = load_f(src, sd); break;
    case TD_DTYPE_I32: *(int32_t *)dst = (int32_t)(uint32_t)(uint64_t)load_i(src, sd); break;
    case TD_DTYPE_I64: *(int64_t *)dst = load_i(src, sd); break;
    default: *(uint8_t *)dst = load_f(src, sd) != 0.0; break;
    }
}

void td_cast_copy(struct td_tensor *dst, const struct td_tensor *src)
{
    size_t des = td_dtype_size(dst->dtype), ses = td_dtype_size(src->dtype);
    char *db = dst->storage->buf->data;
    const char *sb = src->storage->buf->data;
    int64_t idx[TD_MAX_DIMS] = {0};
    int64_t doff = dst->offset, soff = src->offset;
    for (int64_t n = 0; n < dst->numel; n++) {
        store_cast(db + doff * (int64_t)des, dst->dtype, sb + soff * (int64_t)ses, src->dtype);
        for (int d = dst->ndim - 1; d >= 0; d--) {
            if (++idx[d] < dst->shape[d]) {
                doff += dst->strides[d];
                soff += src->strides[d];
                break;
            }
            doff -= (idx[d] - 1) * dst->strides[d];
            soff -= (idx[d] - 1) * src->strides[d];
            idx[d] = 0;
        }
    }
}

static void scalar_store(char *dst, enum td_dtype dt, struct td_scalar s)
{
    switch (s.kind) {
    case TD_SCALAR_FLOAT: store_cast(dst, dt, (const char *)&s.v.f, TD_DTYPE_F64); break;
    case TD_SCALAR_INT: store_cast(dst, dt, (const char *)&s.v.i, TD_DTYPE_I64); break;
    default: {
        uint8_t b = s.v.b;
        store_cast(dst, dt, (const char *)&b, TD_DTYPE_BOOL);
        break;
    }
    }
}

/* ---- the binary driver ---- */

struct operand_view {
    const char *base;                  /* element 0, in compute dtype */
    int64_t strides[TD_MAX_DIMS];      /* over the output's shape; 0 where broadcast */
    struct td_tensor *tmp;             /* a cast copy we own, or NULL */
    char scalar[8];                    /* a Python scalar in compute dtype */
};

static int view_operand(struct operand_view *v, const struct td_operand *in,
                        const struct td_tensor *out, enum td_dtype compute, struct td_err *err)
{
    memset(v, 0, sizeof *v);
    if (in->t == NULL) {
        scalar_store(v->scalar, compute, in->s);
        v->base = v->scalar;
        return 0;  /* all strides 0 */
    }
    const struct td_tensor *t = in->t;
    if (t->dtype != compute) {
        int rc = td_tensor_empty(&v->tmp, compute, t->shape, t->ndim, NULL, err);
        if (rc != 0) {
            return rc;
        }
        td_cast_copy(v->tmp, t);
        t = v->tmp;
    }
    v->base = td_tensor_data(t);
    int lead = out->ndim - t->ndim;
    for (int d = 0; d < t->ndim; d++) {
        v->strides[lead + d] = t->shape[d] == 1 ? 0 : t->strides[d];
    }
    return 0;
}

/* Runs row kernel k over out[...] = a[...] op b[...] with the given element strides. */
static void run_rows(row_fn *k, size_t es, int ndim, const int64_t *shape, char *o,
                     const int64_t *so, const char *a, const int64_t *sa, const char *b,
                     const int64_t *sb)
{
    /* Drop size-1 dims, then merge a dim into the one before it when every operand steps
    ** through the pair as through one dim (the outer stride is the inner stride times size). */
    int64_t sh[TD_MAX_DIMS + 1], s0[TD_MAX_DIMS + 1], s1[TD_MAX_DIMS + 1], s2[TD_MAX_DIMS + 1];
    int n = 0;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] == 1) {
            continue;
        }
        sh[n] = shape[d];
        s0[n] = so[d];
        s1[n] = sa[d];
        s2[n] = sb[d];
        n++;
    }
    int m = 0;
    for (int d = 0; d < n; d++) {
        if (m > 0 && s0[m - 1] == s0[d] * sh[d] && s1[m - 1] == s1[d] * sh[d] &&
            s2[m - 1] == s2[d] * sh[d]) {
            sh[m - 1] *= sh[d];
            s0[m - 1] = s0[d];
            s1[m - 1] = s1[d];
            s2[m - 1] = s2[d];
        } else {
            sh[m] = sh[d];
            s0[m] = s0[d];
            s1[m] = s1[d];
            s2[m] = s2[d];
            m++;
        }
    }
    if (m == 0) {
        k(1, o, 0, a, 0, b, 0);
        return;
    }
    int64_t rows = 1;
    for (int d = 0; d < m - 1; d++) {
        rows *= sh[d];
    }
    int64_t idx[TD_MAX_DIMS] = {0};
    int64_t oo = 0, ao = 0, bo = 0;
    int64_t e = (int64_t)es;
    for (int64_t r = 0; r < rows; r++) {
        k(sh[m - 1], o + oo * e, s0[m - 1], a + ao * e, s1[m - 1], b + bo * e, s2[m - 1]);
        for (int d = m - 2; d >= 0; d--) {
            if (++idx[d] < sh[d]) {
                oo += s0[d];
                ao += s1[d];
                bo += s2[d];
                break;
            }
            oo -= (idx[d] - 1) * s0[d];
            ao -= (idx[d] - 1) * s1[d];
            bo -= (idx[d] - 1) * s2[d];
            idx[d] = 0;
        }
    }
}

static int binary(int kind, struct td_tensor *out, const struct td_operand *in,
                  enum td_dtype compute, struct td_err *err)
{
    row_fn *k = row_kernels[kind][compute];
    if (k == NULL) {
        return td_err_set(err, TD_EDTYPE, "no kernel for %s", td_dtype_name(compute));
    }
    if (out->numel == 0) {
        return 0;
    }
    struct operand_view va, vb;
    struct td_tensor *dst = out;
    int rc;
    if ((rc = view_operand(&va, &in[0], out, compute, err)) != 0) {
        goto fail;
    }
    if ((rc = view_operand(&vb, &in[1], out, compute, err)) != 0) {
        goto fail_a;
    }
    if (out->dtype != compute &&
        (rc = td_tensor_empty(&dst, compute, out->shape, out->ndim, NULL, err)) != 0) {
        goto fail_b;
    }
    run_rows(k, td_dtype_size(compute), out->ndim, out->shape, td_tensor_data(dst), dst->strides,
             va.base, va.strides, vb.base, vb.strides);
    if (dst != out) {
        td_cast_copy(out, dst);
        td_tensor_unref(dst);
    }
fail_b:
    td_tensor_unref(vb.tmp);
fail_a:
    td_tensor_unref(va.tmp);
fail:
    return rc;
}

static bool operand_is_bool(const struct td_operand *o)
{
    return o->t != NULL ? o->t->dtype == TD_DTYPE_BOOL : o->s.kind == TD_SCALAR_BOOL;
}

/* add: out = a + b, broadcast and promoted; bool + bool is logical or, as in torch. */
int td_fwd_add(struct td_tensor *out, const struct td_operand *in, int nin, enum td_dtype compute,
               struct td_err *err)
{
    (void)nin;
    return binary(K_ADD, out, in, compute, err);
}

/* sub: out = a - b; torch refuses any bool operand. */
int td_fwd_sub(struct td_tensor *out, const struct td_operand *in, int nin, enum td_dtype compute,
               struct td_err *err)
{
    (void)nin;
    bool ba = operand_is_bool(&in[0]), bb = operand_is_bool(&in[1]);
    if (ba && bb) {
        return td_err_set(err, TD_EDTYPE, "Subtraction, the `-` operator, with two bool tensors "
                          "is not supported. Use the `^` or `logical_xor()` operator instead.");
    }
    if (ba || bb) {
        return td_err_set(err, TD_EDTYPE, "Subtraction, the `-` operator, with a bool tensor is "
                          "not supported. If you are trying to invert a mask, use the `~` or "
                          "`logical_not()` operator instead.");
    }
    return binary(K_SUB, out, in, compute, err);
}

/* mul: out = a * b; bool * bool is logical and. */
int td_fwd_mul(struct td_tensor *out, const struct td_operand *in, int nin, enum td_dtype compute,
               struct td_err *err)
{
    (void)nin;
    return binary(K_MUL, out, in, compute, err);
}

/* div: true division; the dtype rule has already made the compute dtype a float. */
int td_fwd_div(struct td_tensor *out, const struct td_operand *in, int nin, enum td_dtype compute,
               struct td_err *err)
{
    (void)nin;
    return binary(K_DIV, out, in, compute, err);
}
