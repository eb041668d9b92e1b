/* server/core/ops/elementwise.c — every elementwise op (unary, binary, comparison, logical,
** where, clamp), their dtype rules, and the dtype cast they share.
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

#include "../../base/checked.h"
#include "../cancel.h"
#include "../parallel.h"
#include "family.h"

#include <stdio.h>

typedef td_row_fn row_fn;

/* A row kernel: o[i] = EXPR(x = a[i], y = b[i]) over n elements with element strides; the
** unit-stride and scalar cases are separate loops so the compiler can vectorise them. TO is the
** output element type (T, or uint8_t for comparisons). */
#define DEF_ROW2(name, T, TO, EXPR)                                                                \
    static void name(int64_t n, char *o_, int64_t so, const char *a_, int64_t sa, const char *b_,  \
                     int64_t sb)                                                                   \
    {                                                                                              \
        TO *o = (TO *)o_;                                                                          \
        const T *a = (const T *)a_, *b = (const T *)b_;                                            \
        if (so == 1 && sa == 1 && sb == 1) {                                                       \
            for (int64_t i = 0; i < n; i++) {                                                      \
                T x = a[i], y = b[i];                                                              \
                o[i] = (TO)(EXPR);                                                                 \
            }                                                                                      \
        } else if (so == 1 && sa == 1 && sb == 0) {                                                \
            const T y = b[0];                                                                      \
            for (int64_t i = 0; i < n; i++) {                                                      \
                T x = a[i];                                                                        \
                o[i] = (TO)(EXPR);                                                                 \
            }                                                                                      \
        } else if (so == 1 && sa == 0 && sb == 1) {                                                \
            const T x = a[0];                                                                      \
            for (int64_t i = 0; i < n; i++) {                                                      \
                T y = b[i];                                                                        \
                o[i] = (TO)(EXPR);                                                                 \
            }                                                                                      \
        } else {                                                                                   \
            for (int64_t i = 0; i < n; i++) {                                                      \
                T x = a[i * sa], y = b[i * sb];                                                    \
                o[i * so] = (TO)(EXPR);                                                            \
            }                                                                                      \
        }                                                                                          \
    }
#define DEF_ROW(name, T, EXPR) DEF_ROW2(name, T, T, EXPR)

/* Unary row kernels ignore b. */
#define DEF_UROW2(name, T, TO, EXPR)                                                               \
    static void name(int64_t n, char *o_, int64_t so, const char *a_, int64_t sa, const char *b_,  \
                     int64_t sb)                                                                   \
    {                                                                                              \
        (void)b_;                                                                                  \
        (void)sb;                                                                                  \
        TO *o = (TO *)o_;                                                                          \
        const T *a = (const T *)a_;                                                                \
        if (so == 1 && sa == 1) {                                                                  \
            for (int64_t i = 0; i < n; i++) {                                                      \
                T x = a[i];                                                                        \
                o[i] = (TO)(EXPR);                                                                 \
            }                                                                                      \
        } else {                                                                                   \
            for (int64_t i = 0; i < n; i++) {                                                      \
                T x = a[i * sa];                                                                   \
                o[i * so] = (TO)(EXPR);                                                            \
            }                                                                                      \
        }                                                                                          \
    }
#define DEF_UROW(name, T, EXPR) DEF_UROW2(name, T, T, EXPR)

/* Wrapping integer arithmetic through unsigned types, which C defines. */
#define WRAP32(op) ((int32_t)(uint32_t)((uint32_t)x op(uint32_t) y))
#define WRAP64(op) ((int64_t)(uint64_t)((uint64_t)x op(uint64_t) y))

/* Python's floor division and modulo for integers (divisors were checked to be nonzero). The
** INT_MIN / -1 case wraps like torch instead of trapping. */
#define IFLOORDIV(T, UT, MIN)                                                                      \
    static inline T floordiv_##T(T x, T y)                                                         \
    {                                                                                              \
        if (y == -1) {                                                                             \
            return (T)(UT)(0 - (UT)x);                                                             \
        }                                                                                          \
        T q = x / y;                                                                               \
        return (x % y != 0 && ((x < 0) != (y < 0))) ? q - 1 : q;                                   \
    }                                                                                              \
    static inline T mod_##T(T x, T y)                                                              \
    {                                                                                              \
        if (y == -1) {                                                                             \
            return 0;                                                                              \
        }                                                                                          \
        T r = x % y;                                                                               \
        return (r != 0 && ((r < 0) != (y < 0))) ? r + y : r;                                       \
    }                                                                                              \
    static inline T ipow_##T(T x, T y)                                                             \
    {                                                                                              \
        if (y < 0) {                                                                               \
            return x == 1 ? 1 : x == -1 ? ((y & 1) ? -1 : 1) : 0;                                  \
        }                                                                                          \
        UT r = 1, b = (UT)x;                                                                       \
        for (T e = y; e > 0; e >>= 1) {                                                            \
            if (e & 1) {                                                                           \
                r *= b;                                                                            \
            }                                                                                      \
            b *= b;                                                                                \
        }                                                                                          \
        return (T)r;                                                                               \
    }
IFLOORDIV(int32_t, uint32_t, INT32_MIN)
IFLOORDIV(int64_t, uint64_t, INT64_MIN)

/* torch's floor division for floats (div_floor_floating). */
#define FFLOORDIV(T, FMOD, FLOOR, COPYSIGN)                                                        \
    static inline T ffloordiv_##T(T x, T y)                                                        \
    {                                                                                              \
        if (y == 0) {                                                                              \
            return x / y;                                                                          \
        }                                                                                          \
        T mod = FMOD(x, y);                                                                        \
        T div = (x - mod) / y;                                                                     \
        if (mod != 0 && (y < 0) != (mod < 0)) {                                                    \
            div -= 1;                                                                              \
        }                                                                                          \
        T fl;                                                                                      \
        if (div != 0) {                                                                            \
            fl = FLOOR(div);                                                                       \
            if (div - fl > (T)0.5) {                                                               \
                fl += 1;                                                                           \
            }                                                                                      \
        } else {                                                                                   \
            fl = COPYSIGN((T)0, x / y);                                                            \
        }                                                                                          \
        return fl;                                                                                 \
    }                                                                                              \
    static inline T fmod_py_##T(T x, T y)                                                          \
    {                                                                                              \
        T m = FMOD(x, y);                                                                          \
        return (m != 0 && ((y < 0) != (m < 0))) ? m + y : m;                                       \
    }
FFLOORDIV(float, fmodf, floorf, copysignf)
FFLOORDIV(double, fmod, floor, copysign)

#define NAN_MAX(x, y) ((x) != (x) ? (x) : (y) != (y) ? (y) : (x) > (y) ? (x) : (y))
#define NAN_MIN(x, y) ((x) != (x) ? (x) : (y) != (y) ? (y) : (x) < (y) ? (x) : (y))

/* binary arithmetic */
DEF_ROW(add_b, uint8_t, x | y)
DEF_ROW(add_i32, int32_t, WRAP32(+))
DEF_ROW(add_i64, int64_t, WRAP64(+))
DEF_ROW(add_f32, float, x + y)
DEF_ROW(add_f64, double, x + y)
DEF_ROW(sub_i32, int32_t, WRAP32(-))
DEF_ROW(sub_i64, int64_t, WRAP64(-))
DEF_ROW(sub_f32, float, x - y)
DEF_ROW(sub_f64, double, x - y)
DEF_ROW(mul_b, uint8_t, x &y)
DEF_ROW(mul_i32, int32_t, WRAP32(*))
DEF_ROW(mul_i64, int64_t, WRAP64(*))
DEF_ROW(mul_f32, float, x *y)
DEF_ROW(mul_f64, double, x *y)
DEF_ROW(div_f32, float, x / y)
DEF_ROW(div_f64, double, x / y)
DEF_ROW(fdiv_i32, int32_t, floordiv_int32_t(x, y))
DEF_ROW(fdiv_i64, int64_t, floordiv_int64_t(x, y))
DEF_ROW(fdiv_f32, float, ffloordiv_float(x, y))
DEF_ROW(fdiv_f64, double, ffloordiv_double(x, y))
DEF_ROW(rem_i32, int32_t, mod_int32_t(x, y))
DEF_ROW(rem_i64, int64_t, mod_int64_t(x, y))
DEF_ROW(rem_f32, float, fmod_py_float(x, y))
DEF_ROW(rem_f64, double, fmod_py_double(x, y))
DEF_ROW(pow_i32, int32_t, ipow_int32_t(x, y))
DEF_ROW(pow_i64, int64_t, ipow_int64_t(x, y))
DEF_ROW(pow_f32, float, powf(x, y))
DEF_ROW(pow_f64, double, pow(x, y))
DEF_ROW(max_b, uint8_t, x | y)
DEF_ROW(max_i32, int32_t, x > y ? x : y)
DEF_ROW(max_i64, int64_t, x > y ? x : y)
DEF_ROW(max_f32, float, NAN_MAX(x, y))
DEF_ROW(max_f64, double, NAN_MAX(x, y))
DEF_ROW(min_b, uint8_t, x &y)
DEF_ROW(min_i32, int32_t, x < y ? x : y)
DEF_ROW(min_i64, int64_t, x < y ? x : y)
DEF_ROW(min_f32, float, NAN_MIN(x, y))
DEF_ROW(min_f64, double, NAN_MIN(x, y))

/* comparisons: every dtype in, bool out */
#define DEF_CMP(op, EXPR)                                                                          \
    DEF_ROW2(op##_b, uint8_t, uint8_t, EXPR)                                                       \
    DEF_ROW2(op##_i32, int32_t, uint8_t, EXPR)                                                     \
    DEF_ROW2(op##_i64, int64_t, uint8_t, EXPR)                                                     \
    DEF_ROW2(op##_f32, float, uint8_t, EXPR)                                                       \
    DEF_ROW2(op##_f64, double, uint8_t, EXPR)
DEF_CMP(eq, x == y)
DEF_CMP(ne, x != y)
DEF_CMP(lt, x < y)
DEF_CMP(le, x <= y)
DEF_CMP(gt, x > y)
DEF_CMP(ge, x >= y)
DEF_ROW(land_b, uint8_t, x &&y)
DEF_ROW(lor_b, uint8_t, x || y)
DEF_ROW(lxor_b, uint8_t, (x != 0) != (y != 0))

/* unary */
static inline float sigmoidf_(float x)
{
    return 1.0f / (1.0f + expf(-x));
}
static inline double sigmoid_(double x)
{
    return 1.0 / (1.0 + exp(-x));
}
#define DEF_UF(op, EXPR_F, EXPR_D)                                                                 \
    DEF_UROW(op##_f32, float, EXPR_F)                                                              \
    DEF_UROW(op##_f64, double, EXPR_D)
DEF_UF(exp, expf(x), exp(x))
DEF_UF(log, logf(x), log(x))
DEF_UF(log1p, log1pf(x), log1p(x))
DEF_UF(expm1, expm1f(x), expm1(x))
DEF_UF(sqrt, sqrtf(x), sqrt(x))
DEF_UF(rsqrt, 1.0f / sqrtf(x), 1.0 / sqrt(x))
DEF_UF(sin, sinf(x), sin(x))
DEF_UF(cos, cosf(x), cos(x))
DEF_UF(tan, tanf(x), tan(x))
DEF_UF(tanh, tanhf(x), tanh(x))
DEF_UF(sigmoid, sigmoidf_(x), sigmoid_(x))
/* torch's definition, x (1 + erf(x / sqrt 2)) / 2, for float64 exactly as torch computes it. For
** float32 it is evaluated in double and rounded: in float, 1 + erf cancels for x < -3 (gelu(-4.1)
** lost three digits), where in double it holds to about x = -8, below which both give 0 as
** torch does. torch's own float32 kernel uses an approximate erf (gelu(-4.1) = -8.4800e-05,
** true -8.4696e-05); that difference is documented. */
DEF_UF(gelu, (float)(0.5 * (double)x * (1.0 + erf((double)x * M_SQRT1_2))),
       0.5 * x * (1.0 + erf(x * M_SQRT1_2)))
DEF_UF(floor, floorf(x), floor(x))
DEF_UF(ceil, ceilf(x), ceil(x))
DEF_UF(round, nearbyintf(x), nearbyint(x))
DEF_UF(neg, -x, -x)
DEF_UF(abs, fabsf(x), fabs(x))
/* relu keeps NaN and -0.0 as they are, as torch's clamp_min(x, 0) does (max(-0.0, 0) is -0.0) */
DEF_UF(relu, (x != x || x >= 0) ? x : 0.0f, (x != x || x >= 0) ? x : 0.0)
DEF_UF(sign, (float)((0 < x) - (x < 0)), (double)((0 < x) - (x < 0)))
DEF_UROW(neg_i32, int32_t, (int32_t)(uint32_t)(0u - (uint32_t)x))
DEF_UROW(neg_i64, int64_t, (int64_t)(uint64_t)(0u - (uint64_t)x))
DEF_UROW(abs_i32, int32_t, x < 0 ? (int32_t)(uint32_t)(0u - (uint32_t)x) : x)
DEF_UROW(abs_i64, int64_t, x < 0 ? (int64_t)(uint64_t)(0u - (uint64_t)x) : x)
DEF_UROW(relu_i32, int32_t, x > 0 ? x : 0)
DEF_UROW(relu_i64, int64_t, x > 0 ? x : 0)
DEF_UROW(sign_b, uint8_t, x)
DEF_UROW(sign_i32, int32_t, (0 < x) - (x < 0))
DEF_UROW(sign_i64, int64_t, (0 < x) - (x < 0))
DEF_UROW(copy_i32, int32_t, x)
DEF_UROW(copy_i64, int64_t, x)
DEF_UROW2(lnot_b, uint8_t, uint8_t, x == 0)
DEF_UROW2(lnot_i32, int32_t, uint8_t, x == 0)
DEF_UROW2(lnot_i64, int64_t, uint8_t, x == 0)
DEF_UROW2(lnot_f32, float, uint8_t, x == 0)
DEF_UROW2(lnot_f64, double, uint8_t, x == 0)

/* Row kernels by op and compute dtype (bool, int32, int64, float32, float64); NULL: torch has
** no kernel for that dtype (the dtype rules refuse it first, with torch's message). */
static row_fn *const row_kernels[TD_OP_COUNT][TD_DTYPE_COUNT] = {
    [TD_OP_ADD] = {add_b, add_i32, add_i64, add_f32, add_f64},
    [TD_OP_SUB] = {NULL, sub_i32, sub_i64, sub_f32, sub_f64},
    [TD_OP_MUL] = {mul_b, mul_i32, mul_i64, mul_f32, mul_f64},
    [TD_OP_DIV] = {NULL, NULL, NULL, div_f32, div_f64},
    [TD_OP_FLOOR_DIVIDE] = {NULL, fdiv_i32, fdiv_i64, fdiv_f32, fdiv_f64},
    [TD_OP_REMAINDER] = {NULL, rem_i32, rem_i64, rem_f32, rem_f64},
    [TD_OP_POW] = {NULL, pow_i32, pow_i64, pow_f32, pow_f64},
    [TD_OP_MAXIMUM] = {max_b, max_i32, max_i64, max_f32, max_f64},
    [TD_OP_MINIMUM] = {min_b, min_i32, min_i64, min_f32, min_f64},
    [TD_OP_EQ] = {eq_b, eq_i32, eq_i64, eq_f32, eq_f64},
    [TD_OP_NE] = {ne_b, ne_i32, ne_i64, ne_f32, ne_f64},
    [TD_OP_LT] = {lt_b, lt_i32, lt_i64, lt_f32, lt_f64},
    [TD_OP_LE] = {le_b, le_i32, le_i64, le_f32, le_f64},
    [TD_OP_GT] = {gt_b, gt_i32, gt_i64, gt_f32, gt_f64},
    [TD_OP_GE] = {ge_b, ge_i32, ge_i64, ge_f32, ge_f64},
    [TD_OP_LOGICAL_AND] = {land_b},
    [TD_OP_LOGICAL_OR] = {lor_b},
    [TD_OP_LOGICAL_XOR] = {lxor_b},
    [TD_OP_NEG] = {NULL, neg_i32, neg_i64, neg_f32, neg_f64},
    [TD_OP_ABS] = {NULL, abs_i32, abs_i64, abs_f32, abs_f64},
    [TD_OP_SIGN] = {sign_b, sign_i32, sign_i64, sign_f32, sign_f64},
    [TD_OP_EXP] = {NULL, NULL, NULL, exp_f32, exp_f64},
    [TD_OP_LOG] = {NULL, NULL, NULL, log_f32, log_f64},
    [TD_OP_LOG1P] = {NULL, NULL, NULL, log1p_f32, log1p_f64},
    [TD_OP_EXPM1] = {NULL, NULL, NULL, expm1_f32, expm1_f64},
    [TD_OP_SQRT] = {NULL, NULL, NULL, sqrt_f32, sqrt_f64},
    [TD_OP_RSQRT] = {NULL, NULL, NULL, rsqrt_f32, rsqrt_f64},
    [TD_OP_SIN] = {NULL, NULL, NULL, sin_f32, sin_f64},
    [TD_OP_COS] = {NULL, NULL, NULL, cos_f32, cos_f64},
    [TD_OP_TAN] = {NULL, NULL, NULL, tan_f32, tan_f64},
    [TD_OP_TANH] = {NULL, NULL, NULL, tanh_f32, tanh_f64},
    [TD_OP_SIGMOID] = {NULL, NULL, NULL, sigmoid_f32, sigmoid_f64},
    [TD_OP_GELU] = {NULL, NULL, NULL, gelu_f32, gelu_f64},
    [TD_OP_RELU] = {NULL, relu_i32, relu_i64, relu_f32, relu_f64},
    [TD_OP_FLOOR] = {NULL, copy_i32, copy_i64, floor_f32, floor_f64},
    [TD_OP_CEIL] = {NULL, copy_i32, copy_i64, ceil_f32, ceil_f64},
    [TD_OP_ROUND] = {NULL, copy_i32, copy_i64, round_f32, round_f64},
    [TD_OP_LOGICAL_NOT] = {lnot_b, lnot_i32, lnot_i64, lnot_f32, lnot_f64},
};

/* ---- casting ---- */


static void store_cast(char *dst, enum td_dtype dd, const char *src, enum td_dtype sd)
{
    switch (dd) {
    case TD_DTYPE_F32: *(float *)dst = (float)td_elem_load_f64(src, sd); break;
    case TD_DTYPE_F64: *(double *)dst = td_elem_load_f64(src, sd); break;
    case TD_DTYPE_I32:
        *(int32_t *)dst = td_dtype_is_float(sd)
                              ? td_f64_cvt_i32(td_elem_load_f64(src, sd))
                              : (int32_t)(uint32_t)(uint64_t)td_elem_load_i64(src, sd);
        break;
    case TD_DTYPE_I64:
        *(int64_t *)dst = td_dtype_is_float(sd) ? td_f64_cvt_i64(td_elem_load_f64(src, sd))
                                                : td_elem_load_i64(src, sd);
        break;
    default: *(uint8_t *)dst = td_elem_load_f64(src, sd) != 0.0; break;
    }
}

/* Typed rows for td_cast_copy: o[i] = CONV(x = a[i]), each CONV exactly store_cast's conversion
** for that pair (through double where store_cast goes through double), so a row gives the same
** bytes as store_cast element by element. Same-dtype rows copy the bytes (the one difference
** from store_cast: a signalling NaN keeps its bits, as in torch's copy, instead of being
** quieted by a round trip through double). */
#define DEF_CAST(name, TO, TI, CONV) DEF_UROW2(name, TI, TO, CONV)


static void cast_same(int64_t n, char *o, int64_t so, const char *a, int64_t sa, const char *b,
                      int64_t sb, size_t es)
{
    (void)b;
    (void)sb;
    if (so == 1 && sa == 1) {
        memcpy(o, a, (size_t)n * es);
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        memcpy(o + i * so * (int64_t)es, a + i * sa * (int64_t)es, es);
    }
}
static void cast_same4(int64_t n, char *o, int64_t so, const char *a, int64_t sa, const char *b,
                       int64_t sb)
{
    cast_same(n, o, so, a, sa, b, sb, 4);
}
static void cast_same8(int64_t n, char *o, int64_t so, const char *a, int64_t sa, const char *b,
                       int64_t sb)
{
    cast_same(n, o, so, a, sa, b, sb, 8);
}
DEF_CAST(cast_b_b, uint8_t, uint8_t, x != 0)
DEF_CAST(cast_b_i32, uint8_t, int32_t, (double)x != 0.0)
DEF_CAST(cast_b_i64, uint8_t, int64_t, (double)x != 0.0)
DEF_CAST(cast_b_f32, uint8_t, float, (double)x != 0.0)
DEF_CAST(cast_b_f64, uint8_t, double, x != 0.0)
DEF_CAST(cast_i32_b, int32_t, uint8_t, x != 0)
DEF_CAST(cast_i32_i64, int32_t, int64_t, (uint32_t)(uint64_t)x)
DEF_CAST(cast_i32_f32, int32_t, float, td_f64_cvt_i32((double)x))
DEF_CAST(cast_i32_f64, int32_t, double, td_f64_cvt_i32(x))
DEF_CAST(cast_i64_b, int64_t, uint8_t, x != 0)
DEF_CAST(cast_i64_i32, int64_t, int32_t, x)
DEF_CAST(cast_i64_f32, int64_t, float, td_f64_cvt_i64((double)x))
DEF_CAST(cast_i64_f64, int64_t, double, td_f64_cvt_i64(x))
DEF_CAST(cast_f32_b, float, uint8_t, x != 0)
DEF_CAST(cast_f32_i32, float, int32_t, (double)x)
DEF_CAST(cast_f32_i64, float, int64_t, (double)x)
DEF_CAST(cast_f32_f64, float, double, x)
DEF_CAST(cast_f64_b, double, uint8_t, x != 0)
DEF_CAST(cast_f64_i32, double, int32_t, x)
DEF_CAST(cast_f64_i64, double, int64_t, x)
DEF_CAST(cast_f64_f32, double, float, x)

/* [dst dtype][src dtype] */
static row_fn *const cast_rows[TD_DTYPE_COUNT][TD_DTYPE_COUNT] = {
    [TD_DTYPE_BOOL] = {cast_b_b, cast_b_i32, cast_b_i64, cast_b_f32, cast_b_f64},
    [TD_DTYPE_I32] = {cast_i32_b, cast_same4, cast_i32_i64, cast_i32_f32, cast_i32_f64},
    [TD_DTYPE_I64] = {cast_i64_b, cast_i64_i32, cast_same8, cast_i64_f32, cast_i64_f64},
    [TD_DTYPE_F32] = {cast_f32_b, cast_f32_i32, cast_f32_i64, cast_same4, cast_f32_f64},
    [TD_DTYPE_F64] = {cast_f64_b, cast_f64_i32, cast_f64_i64, cast_f64_f32, cast_same8},
};

static int run_rows(row_fn *k, size_t es, size_t eo, int ndim, const int64_t *shape, char *o,
                    const int64_t *so, const char *a, const int64_t *sa, const char *b,
                    const int64_t *sb, struct td_err *err);

/* The element-by-element walk: any strides, any overlap, in C order. */
static int cast_copy_elems(struct td_tensor *dst, const struct td_tensor *src, struct td_err *err)
{
    size_t des = td_dtype_size(dst->dtype), ses = td_dtype_size(src->dtype);
    char *db = dst->storage->buf->data;
    const char *sb = src->storage->buf->data;
    int64_t idx[TD_MAX_DIMS] = {0};
    int64_t doff = dst->offset, soff = src->offset;
    for (int64_t c = 0, end; c < dst->numel; c = end) {
        end = td_cancel_chunk_end(c, dst->numel);
        for (int64_t n = c; n < end; n++) {
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
        int rc = td_cancel_check(err);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

/* Typed rows over merged dims, as the elementwise ops run (split across threads when large),
** unless dst and src share a buffer (an overlapping copy keeps the element walk's C order) or
** dst repeats elements (a zero stride: the walk's last write wins, and its rows are checked for
** cancellation however long, where dst's own memory bounds the rows otherwise). */
int td_cast_copy(struct td_tensor *dst, const struct td_tensor *src, struct td_err *err)
{
    if (dst->numel == 0) {
        return 0;
    }
    bool walk = dst->storage->buf == src->storage->buf || dst->ndim != src->ndim ||
                (unsigned)dst->dtype >= TD_DTYPE_COUNT || (unsigned)src->dtype >= TD_DTYPE_COUNT;
    for (int d = 0; d < dst->ndim && !walk; d++) {
        walk = dst->strides[d] == 0 && dst->shape[d] > 1;
    }
    if (walk) {
        return cast_copy_elems(dst, src, err);
    }
    const char *sd = td_tensor_data(src);
    return run_rows(cast_rows[dst->dtype][src->dtype], td_dtype_size(src->dtype),
                    td_dtype_size(dst->dtype), dst->ndim, dst->shape, td_tensor_data(dst),
                    dst->strides, sd, src->strides, sd, src->strides, err);
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
    const char *base;             /* element 0, in compute dtype */
    int64_t strides[TD_MAX_DIMS]; /* over the output's shape; 0 where broadcast */
    struct td_tensor *tmp;        /* a cast copy we own, or NULL */
    char scalar[8];               /* a Python scalar in compute dtype */
};

/* Views in[0] over out's shape in the compute dtype; a cast copy is charged to q (the caller's
** quota: a temporary counts like any tensor while it lives). */
static int view_operand(struct operand_view *v, const struct td_operand *in,
                        const struct td_tensor *out, enum td_dtype compute, struct td_quota *q,
                        struct td_err *err)
{
    memset(v, 0, sizeof *v);
    if (in->t == NULL) {
        scalar_store(v->scalar, compute, in->s);
        v->base = v->scalar;
        return 0; /* all strides 0 */
    }
    const struct td_tensor *t = in->t;
    if (t->dtype != compute) {
        int rc = td_tensor_empty(&v->tmp, compute, t->shape, t->ndim, q, err);
        if (rc == 0) {
            rc = td_cast_copy(v->tmp, t, err);
        }
        if (rc != 0) {
            td_tensor_unref(v->tmp);
            v->tmp = NULL;
            return rc;
        }
        t = v->tmp;
    }
    v->base = td_tensor_data(t);
    int lead = out->ndim - t->ndim;
    for (int d = 0; d < t->ndim; d++) {
        v->strides[lead + d] = t->shape[d] == 1 ? 0 : t->strides[d];
    }
    return 0;
}

/* Elements per thread below which splitting a kernel costs more than it saves; also the step
** between cancel checks (a fraction of a millisecond of the cheapest row kernel). */
#define PARALLEL_GRAIN ((int64_t)1 << 18)

/* A merged iteration space: m dims (the last is the row), strides per operand. */
struct rows_job {
    row_fn *k;
    int64_t e, f; /* input and output element sizes */
    int m;
    char *o;
    const char *a, *b;
    int64_t sh[TD_MAX_DIMS + 1], s0[TD_MAX_DIMS + 1], s1[TD_MAX_DIMS + 1], s2[TD_MAX_DIMS + 1];
};

/* Elements [begin, end) of a single merged row. */
static void run_range(int64_t begin, int64_t end, void *ctx)
{
    const struct rows_job *j = ctx;
    j->k(end - begin, j->o + begin * j->s0[0] * j->f, j->s0[0], j->a + begin * j->s1[0] * j->e,
         j->s1[0], j->b + begin * j->s2[0] * j->e, j->s2[0]);
}

/* Rows [begin, end) of the merged space: the start index is rebuilt from the row number. */
static void run_row_range(int64_t begin, int64_t end, void *ctx)
{
    const struct rows_job *j = ctx;
    int m = j->m;
    int64_t idx[TD_MAX_DIMS + 1] = {0}, oo = 0, ao = 0, bo = 0, rest = begin;
    for (int d = m - 2; d >= 0; d--) {
        idx[d] = rest % j->sh[d];
        rest /= j->sh[d];
        oo += idx[d] * j->s0[d];
        ao += idx[d] * j->s1[d];
        bo += idx[d] * j->s2[d];
    }
    for (int64_t r = begin; r < end; r++) {
        j->k(j->sh[m - 1], j->o + oo * j->f, j->s0[m - 1], j->a + ao * j->e, j->s1[m - 1],
             j->b + bo * j->e, j->s2[m - 1]);
        for (int d = m - 2; d >= 0; d--) {
            if (++idx[d] < j->sh[d]) {
                oo += j->s0[d];
                ao += j->s1[d];
                bo += j->s2[d];
                break;
            }
            oo -= (idx[d] - 1) * j->s0[d];
            ao -= (idx[d] - 1) * j->s1[d];
            bo -= (idx[d] - 1) * j->s2[d];
            idx[d] = 0;
        }
    }
}

/* Runs row kernel k over out[...] = a[...] op b[...] with the given element strides. */
static int run_rows(row_fn *k, size_t es, size_t eo, int ndim, const int64_t *shape, char *o,
                    const int64_t *so, const char *a, const int64_t *sa, const char *b,
                    const int64_t *sb, struct td_err *err)
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
            sh[m - 1] = td_sat_mul(sh[m - 1], sh[d]);
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
        return 0;
    }
    struct rows_job job =
        {.k = k, .e = (int64_t)es, .f = (int64_t)eo, .m = m, .o = o, .a = a, .b = b};
    memcpy(job.sh, sh, sizeof(int64_t) * (size_t)m);
    memcpy(job.s0, s0, sizeof(int64_t) * (size_t)m);
    memcpy(job.s1, s1, sizeof(int64_t) * (size_t)m);
    memcpy(job.s2, s2, sizeof(int64_t) * (size_t)m);
    int64_t total = 1;
    for (int d = 0; d < m; d++) {
        total = td_sat_mul(total, sh[d]);
    }
    if (m == 1) {
        /* One long row: split it into ranges. */
        return td_parallel_for(sh[0], PARALLEL_GRAIN, run_range, &job, err);
    }
    int64_t rows = total / sh[m - 1];
    return td_parallel_for(rows, (PARALLEL_GRAIN + sh[m - 1] - 1) / sh[m - 1], run_row_range, &job,
                           err);
}

/* Runs op's row kernel over out = op(in[0][, in[1]]): inputs cast to `compute`, the kernel's
** output of dtype `kout` (compute, or bool for comparisons) cast into out when they differ. */
static int elementwise(enum td_op_id op, struct td_tensor *out, const struct td_operand *in,
                       int nin, enum td_dtype compute, enum td_dtype kout, struct td_quota *q,
                       struct td_err *err)
{
    row_fn *k = row_kernels[op][compute];
    if (k == NULL) {
        return td_err_set(err, TD_EDTYPE, "\"%s\" not implemented for '%s'", td_ops[op].name,
                          td_dtype_cname(compute));
    }
    return td_elementwise_rows(k, out, in, nin, compute, kout, q, err);
}

bool td_elementwise_dense(const struct td_operand *in, int nin, const struct td_tensor *out,
                          enum td_dtype compute)
{
    if (nin < 1 || nin > 2 || !td_tensor_is_contiguous(out)) {
        return false;
    }
    for (int i = 0; i < nin; i++) {
        const struct td_tensor *t = in[i].t;
        /* Equal counts: an operand that broadcasts into out has every dim of out's that is
        ** not 1 (else it would have fewer elements), so contiguous, it steps as out does. */
        if (t == NULL || t->dtype != compute || t->numel != out->numel ||
            !td_tensor_is_contiguous(t)) {
            return false;
        }
    }
    return true;
}

int td_elementwise_rows(td_row_fn *k, struct td_tensor *out, const struct td_operand *in, int nin,
                        enum td_dtype compute, enum td_dtype kout, struct td_quota *q,
                        struct td_err *err)
{
    if (out->numel == 0) {
        return 0;
    }
    if (td_ops_fast && out->numel <= PARALLEL_GRAIN && out->dtype == kout &&
        td_elementwise_dense(in, nin, out, compute)) {
        /* Tiny ops' fast path: what run_rows would do for these operands (no cast, no
        ** broadcast: one merged row of stride 1, run by one td_parallel_for chunk, or the
        ** single-element call when every dim is 1), without building the plan. */
        const struct td_tensor *b = in[nin > 1 ? 1 : 0].t;
        if (out->numel == 1) {
            k(1, td_tensor_data(out), 0, td_tensor_data(in[0].t), 0, td_tensor_data(b), 0);
            return 0;
        }
        k(out->numel, td_tensor_data(out), 1, td_tensor_data(in[0].t), 1, td_tensor_data(b), 1);
        return td_cancel_check(err);
    }
    struct operand_view va, vb;
    struct td_tensor *dst = out;
    int rc;
    if ((rc = view_operand(&va, &in[0], out, compute, q, err)) != 0) {
        goto fail;
    }
    if ((rc = view_operand(&vb, &in[nin > 1 ? 1 : 0], out, compute, q, err)) != 0) {
        goto fail_a;
    }
    if (out->dtype != kout &&
        (rc = td_tensor_empty(&dst, kout, out->shape, out->ndim, q, err)) != 0) {
        goto fail_b;
    }
    /* Strides are in elements, so one element size must serve every operand: the kernel's
    ** input and output sizes differ only for bool-out kernels, where run_rows steps by bytes of
    ** each separately. */
    rc = run_rows(k, td_dtype_size(compute), td_dtype_size(kout), out->ndim, out->shape,
                  td_tensor_data(dst), dst->strides, va.base, va.strides, vb.base, vb.strides, err);
    if (dst != out) {
        if (rc == 0) {
            rc = td_cast_copy(out, dst, err);
        }
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

static void note_zero(void *elem, void *ctx, int64_t i)
{
    (void)i;
    struct {
        enum td_dtype dt;
        bool zero;
    } *z = ctx;
    z->zero = z->zero || td_elem_load_f64(elem, z->dt) == 0.0;
}

/* Whether a divisor operand holds a zero (integer floor_divide and remainder refuse it). */
static int has_zero(const struct td_operand *o, bool *zero, struct td_err *err)
{
    if (o->t == NULL) {
        *zero = td_scalar_to_double(o->s) == 0.0;
        return 0;
    }
    struct {
        enum td_dtype dt;
        bool zero;
    } z = {o->t->dtype, false};
    int rc = td_tensor_each(o->t, note_zero, &z, err);
    *zero = z.zero;
    return rc;
}

#define BINARY(fn, OP)                                                                             \
    int td_fwd_##fn(struct td_tensor *out, const struct td_operand *in, int nin,                   \
                    const struct td_op_args *a, enum td_dtype compute, struct td_err *err)         \
    {                                                                                              \
        (void)a;                                                                                   \
        return elementwise(OP, out, in, nin, compute, compute, a->quota, err);                     \
    }
/* add: a + b; bool + bool is logical or. mul: bool * bool is logical and. div: true division
** (the dtype rule made the compute dtype a float). maximum/minimum propagate NaN. */
BINARY(mul, TD_OP_MUL)
BINARY(maximum, TD_OP_MAXIMUM)
BINARY(minimum, TD_OP_MINIMUM)

/* add/sub's alpha= (torch's alpha_check): a bool alpha only for a bool result, a float one only
** for a float result. */
static int check_alpha(const struct td_op_args *a, enum td_dtype result, struct td_err *err)
{
    if (!a->has_alpha) {
        return 0;
    }
    if (a->alpha.kind == TD_SCALAR_BOOL && result != TD_DTYPE_BOOL) {
        return td_err_set(err, TD_EDTYPE, "Boolean alpha only supported for Boolean results.");
    }
    if (a->alpha.kind == TD_SCALAR_FLOAT && !td_dtype_is_float(result)) {
        return td_err_set(err, TD_EDTYPE,
                          "For integral input tensors, argument alpha must not be a floating "
                          "point number.");
    }
    return 0;
}

int td_dtype_rule_add(const struct td_operand *in, int nin, const struct td_op_args *a,
                      enum td_dtype *compute, enum td_dtype *result, struct td_err *err)
{
    int rc = td_dtype_rule_promote(in, nin, a, compute, result, err);
    return rc != 0 ? rc : check_alpha(a, *result, err);
}

/* out = in[0] op alpha * in[1] (op add or sub): alpha * in[1] is formed in the compute dtype
** first (a temporary charged to the quota for a tensor, one number for a Python scalar). */
static int add_alpha(enum td_op_id op, struct td_tensor *out, const struct td_operand *in,
                     const struct td_op_args *a, enum td_dtype compute, struct td_err *err)
{
    struct td_scalar al = a->alpha;
    bool one = !a->has_alpha || (al.kind == TD_SCALAR_INT && al.v.i == 1) ||
               (al.kind == TD_SCALAR_FLOAT && al.v.f == 1.0) ||
               (al.kind == TD_SCALAR_BOOL && al.v.b && compute == TD_DTYPE_BOOL);
    if (one) {
        return elementwise(op, out, in, 2, compute, compute, a->quota, err);
    }
    struct td_operand b[2] = {in[0], in[1]};
    struct td_tensor *cast = NULL, *scaled = NULL;
    int rc = 0;
    if (compute == TD_DTYPE_BOOL) {
        al = td_scalar_b(td_scalar_to_double(al) != 0);
    } else if (!td_dtype_is_float(compute)) {
        al = td_scalar_i(td_scalar_to_int(al));
    } else {
        al = td_scalar_f(td_scalar_to_double(al));
    }
    if (in[1].t == NULL) {
        struct td_scalar s = in[1].s;
        if (compute == TD_DTYPE_BOOL) {
            b[1].s = td_scalar_b(td_scalar_to_double(s) != 0 && al.v.b);
        } else if (!td_dtype_is_float(compute)) {
            b[1].s = td_scalar_i((int64_t)((uint64_t)td_scalar_to_int(s) * (uint64_t)al.v.i));
        } else if (compute == TD_DTYPE_F32) {
            b[1].s = td_scalar_f((double)((float)td_scalar_to_double(s) * (float)al.v.f));
        } else {
            b[1].s = td_scalar_f(td_scalar_to_double(s) * al.v.f);
        }
    } else {
        struct td_tensor *t = in[1].t;
        if (t->dtype != compute) {
            rc = td_tensor_empty(&cast, compute, t->shape, t->ndim, a->quota, err);
            if (rc == 0) {
                rc = td_cast_copy(cast, t, err);
            }
            t = cast;
        }
        if (rc == 0) {
            rc = td_bw2(TD_OP_MUL, td_t(t), td_s(al), a->quota, &scaled, err);
        }
        b[1] = td_t(scaled);
    }
    if (rc == 0) {
        rc = elementwise(op, out, b, 2, compute, compute, a->quota, err);
    }
    td_tensor_unref(cast);
    td_tensor_unref(scaled);
    return rc;
}

int td_fwd_add(struct td_tensor *out, const struct td_operand *in, int nin,
               const struct td_op_args *a, enum td_dtype compute, struct td_err *err)
{
    (void)nin;
    return add_alpha(TD_OP_ADD, out, in, a, compute, err);
}

/* sub: a - b. torch refuses any bool operand, before it looks at shapes. */
int td_dtype_rule_sub(const struct td_operand *in, int nin, const struct td_op_args *a,
                      enum td_dtype *compute, enum td_dtype *result, struct td_err *err)
{
    bool ba = operand_is_bool(&in[0]), bb = operand_is_bool(&in[1]);
    if (ba && bb) {
        return td_err_set(err, TD_EDTYPE,
                          "Subtraction, the `-` operator, with two bool tensors "
                          "is not supported. Use the `^` or `logical_xor()` operator instead.");
    }
    if (ba || bb) {
        return td_err_set(err, TD_EDTYPE,
                          "Subtraction, the `-` operator, with a bool tensor is "
                          "not supported. If you are trying to invert a mask, use the `~` or "
                          "`logical_not()` operator instead.");
    }
    int rc = td_dtype_rule_promote(in, nin, a, compute, result, err);
    return rc != 0 ? rc : check_alpha(a, *result, err);
}

int td_fwd_sub(struct td_tensor *out, const struct td_operand *in, int nin,
               const struct td_op_args *a, enum td_dtype compute, struct td_err *err)
{
    (void)nin;
    return add_alpha(TD_OP_SUB, out, in, a, compute, err);
}

/* floor_divide and remainder: Python's rounding (toward -inf, the divisor's sign); integer
** division by zero is torch's "ZeroDivisionError". */
static int divmod_op(enum td_op_id op, struct td_tensor *out, const struct td_operand *in,
                     enum td_dtype compute, struct td_quota *q, struct td_err *err)
{
    if (compute == TD_DTYPE_BOOL) {
        return td_err_set(err, TD_EDTYPE, "\"%s\" not implemented for 'Bool'",
                          op == TD_OP_REMAINDER ? "remainder_cpu" : "div_floor_cpu");
    }
    if (out->numel > 0 && !td_dtype_is_float(compute)) {
        bool zero;
        int rc = has_zero(&in[1], &zero, err);
        if (rc != 0) {
            return rc;
        }
        if (zero) {
            return td_err_set(err, TD_EINVAL, "ZeroDivisionError");
        }
    }
    return elementwise(op, out, in, 2, compute, compute, q, err);
}

/* div: true division, the promoted type made a float (int / int is float32); with rounding_mode
** the promoted dtype, rounded toward zero ("trunc") or down ("floor", floor_divide's kernel). */
int td_dtype_rule_div(const struct td_operand *in, int nin, const struct td_op_args *a,
                      enum td_dtype *compute, enum td_dtype *result, struct td_err *err)
{
    if (a->rounding_mode != TD_ROUND_NONE) {
        return td_dtype_rule_promote(in, nin, a, compute, result, err);
    }
    enum td_dtype dt = td_result_type(in, nin);
    *compute = *result = td_dtype_is_float(dt) ? dt : TD_DTYPE_DEFAULT_FLOAT;
    return 0;
}

/* C's integer division truncates; INT_MIN / -1 wraps like torch instead of trapping. */
#define ITRUNCDIV(T, UT)                                                                           \
    static inline T truncdiv_##T(T x, T y)                                                         \
    {                                                                                              \
        return y == -1 ? (T)(UT)(0 - (UT)x) : x / y;                                               \
    }
ITRUNCDIV(int32_t, uint32_t)
ITRUNCDIV(int64_t, uint64_t)
DEF_ROW(tdiv_i32, int32_t, truncdiv_int32_t(x, y))
DEF_ROW(tdiv_i64, int64_t, truncdiv_int64_t(x, y))
DEF_ROW(tdiv_f32, float, truncf(x / y))
DEF_ROW(tdiv_f64, double, trunc(x / y))

int td_fwd_div(struct td_tensor *out, const struct td_operand *in, int nin,
               const struct td_op_args *a, enum td_dtype compute, struct td_err *err)
{
    if (a->rounding_mode == TD_ROUND_FLOOR) {
        return divmod_op(TD_OP_FLOOR_DIVIDE, out, in, compute, a->quota, err);
    }
    if (a->rounding_mode != TD_ROUND_TRUNC) {
        return elementwise(TD_OP_DIV, out, in, nin, compute, compute, a->quota, err);
    }
    row_fn *const k[TD_DTYPE_COUNT] = {NULL, tdiv_i32, tdiv_i64, tdiv_f32, tdiv_f64};
    if (compute == TD_DTYPE_BOOL) {
        return td_err_set(err, TD_EDTYPE, "\"div_trunc_cpu\" not implemented for 'Bool'");
    }
    if (out->numel > 0 && !td_dtype_is_float(compute)) {
        bool zero;
        int rc = has_zero(&in[1], &zero, err);
        if (rc != 0) {
            return rc;
        }
        if (zero) {
            return td_err_set(err, TD_EINVAL, "ZeroDivisionError");
        }
    }
    return td_elementwise_rows(k[compute], out, in, 2, compute, compute, a->quota, err);
}

int td_fwd_floor_divide(struct td_tensor *out, const struct td_operand *in, int nin,
                        const struct td_op_args *a, enum td_dtype compute, struct td_err *err)
{
    (void)nin;
    return divmod_op(TD_OP_FLOOR_DIVIDE, out, in, compute, a->quota, err);
}

int td_fwd_remainder(struct td_tensor *out, const struct td_operand *in, int nin,
                     const struct td_op_args *a, enum td_dtype compute, struct td_err *err)
{
    (void)nin;
    return divmod_op(TD_OP_REMAINDER, out, in, compute, a->quota, err);
}

/* pow: integer bases with a negative integer scalar exponent are refused like torch; with a
** tensor exponent they give 0 (or +-1 for bases +-1). */
int td_fwd_pow(struct td_tensor *out, const struct td_operand *in, int nin,
               const struct td_op_args *a, enum td_dtype compute, struct td_err *err)
{
    (void)a;
    if (!td_dtype_is_float(compute) && compute != TD_DTYPE_BOOL && in[1].t == NULL &&
        td_scalar_to_double(in[1].s) < 0) {
        return td_err_set(err, TD_EINVAL, "Integers to negative integer powers are not allowed.");
    }
    return elementwise(TD_OP_POW, out, in, nin, compute, compute, a->quota, err);
}

#define COMPARE(fn, OP)                                                                            \
    int td_fwd_##fn(struct td_tensor *out, const struct td_operand *in, int nin,                   \
                    const struct td_op_args *a, enum td_dtype compute, struct td_err *err)         \
    {                                                                                              \
        (void)a;                                                                                   \
        return elementwise(OP, out, in, nin, compute, TD_DTYPE_BOOL, a->quota, err);               \
    }
COMPARE(eq, TD_OP_EQ)
COMPARE(ne, TD_OP_NE)
COMPARE(lt, TD_OP_LT)
COMPARE(le, TD_OP_LE)
COMPARE(gt, TD_OP_GT)
COMPARE(ge, TD_OP_GE)
COMPARE(logical_and, TD_OP_LOGICAL_AND)
COMPARE(logical_or, TD_OP_LOGICAL_OR)
COMPARE(logical_xor, TD_OP_LOGICAL_XOR)

/* ---- unary ---- */

int td_dtype_rule_neg(const struct td_operand *in, int nin, const struct td_op_args *a,
                      enum td_dtype *compute, enum td_dtype *result, struct td_err *err)
{
    if (in[0].t->dtype == TD_DTYPE_BOOL) {
        return td_err_set(err, TD_EDTYPE,
                          "Negation, the `-` operator, on a bool tensor is not "
                          "supported. If you are trying to invert a mask, use the `~` or "
                          "`logical_not()` operator instead.");
    }
    return td_dtype_rule_same(in, nin, a, compute, result, err);
}

static int refuse_bool(const struct td_operand *in, const char *kernel, struct td_err *err)
{
    if (in[0].t->dtype == TD_DTYPE_BOOL) {
        return td_err_set(err, TD_EDTYPE, "\"%s\" not implemented for 'Bool'", kernel);
    }
    return 0;
}

int td_dtype_rule_abs(const struct td_operand *in, int nin, const struct td_op_args *a,
                      enum td_dtype *compute, enum td_dtype *result, struct td_err *err)
{
    int rc = refuse_bool(in, "abs_cpu", err);
    return rc != 0 ? rc : td_dtype_rule_same(in, nin, a, compute, result, err);
}

int td_dtype_rule_rounding(const struct td_operand *in, int nin, const struct td_op_args *a,
                           enum td_dtype *compute, enum td_dtype *result, struct td_err *err)
{
    char kernel[32];
    if (a->op == TD_OP_ROUND && a->decimals != 0 && !td_dtype_is_float(in[0].t->dtype)) {
        return td_err_set(err, TD_EDTYPE, "\"round_cpu\" not implemented for '%s'",
                          td_dtype_cname(in[0].t->dtype));
    }
    snprintf(kernel, sizeof kernel, "%s_vml_cpu", td_ops[a->op].name); /* floor_vml_cpu ... */
    int rc = refuse_bool(in, kernel, err);
    return rc != 0 ? rc : td_dtype_rule_same(in, nin, a, compute, result, err);
}

int td_dtype_rule_relu(const struct td_operand *in, int nin, const struct td_op_args *a,
                       enum td_dtype *compute, enum td_dtype *result, struct td_err *err)
{
    if (in[0].t->dtype == TD_DTYPE_BOOL) {
        return td_err_set(err, TD_EDTYPE, "Boolean inputs not supported for relu");
    }
    return td_dtype_rule_same(in, nin, a, compute, result, err);
}

int td_dtype_rule_gelu(const struct td_operand *in, int nin, const struct td_op_args *a,
                       enum td_dtype *compute, enum td_dtype *result, struct td_err *err)
{
    if (!td_dtype_is_float(in[0].t->dtype)) {
        return td_err_set(err, TD_EDTYPE, "\"GeluKernelImpl\" not implemented for '%s'",
                          td_dtype_cname(in[0].t->dtype));
    }
    return td_dtype_rule_same(in, nin, a, compute, result, err);
}

/* round(decimals=d), torch's way in the compute dtype: nearbyint(x * 10^d) / 10^d, or for d < 0
** nearbyint(x / 10^-d) * 10^-d. */
static int round_decimals(struct td_tensor *out, const struct td_operand *in,
                          const struct td_op_args *a, enum td_dtype compute, struct td_err *err)
{
    bool neg = a->decimals < 0;
    double p = pow(10.0, neg ? -(double)a->decimals : (double)a->decimals); /* no -INT64_MIN */
    if (compute == TD_DTYPE_F32) {
        p = (double)(float)p;
    }
    struct td_tensor *s = NULL, *r = NULL, *d = NULL;
    int rc = td_bw2(neg ? TD_OP_DIV : TD_OP_MUL, in[0], td_s(td_scalar_f(p)), a->quota, &s, err);
    if (rc == 0) {
        rc = td_bw1(TD_OP_ROUND, td_t(s), NULL, a->quota, &r, err);
    }
    if (rc == 0) {
        rc = td_bw2(neg ? TD_OP_MUL : TD_OP_DIV, td_t(r), td_s(td_scalar_f(p)), a->quota, &d, err);
    }
    if (rc == 0) {
        rc = td_cast_copy(out, d, err);
    }
    td_tensor_unref(s);
    td_tensor_unref(r);
    td_tensor_unref(d);
    return rc;
}

int td_fwd_unary(struct td_tensor *out, const struct td_operand *in, int nin,
                 const struct td_op_args *a, enum td_dtype compute, struct td_err *err)
{
    if (a->op == TD_OP_ROUND && a->decimals != 0) {
        return round_decimals(out, in, a, compute, err);
    }
    enum td_dtype kout = a->op == TD_OP_LOGICAL_NOT ? TD_DTYPE_BOOL : compute;
    return elementwise((enum td_op_id)a->op, out, in, nin, compute, kout, a->quota, err);
}

/* ---- where ---- */

int td_dtype_rule_where(const struct td_operand *in, int nin, const struct td_op_args *a,
                        enum td_dtype *compute, enum td_dtype *result, struct td_err *err)
{
    (void)nin;
    (void)a;
    if (in[0].t == NULL || in[0].t->dtype != TD_DTYPE_BOOL) {
        return td_err_set(err, TD_EDTYPE,
                          "where expected condition to be a boolean tensor, but "
                          "got a tensor with dtype %s",
                          in[0].t != NULL ? td_dtype_cname(in[0].t->dtype) : "Double");
    }
    *compute = *result = td_result_type(in + 1, 2);
    return 0;
}

/* where(cond, x, y): both branches cast to the result dtype, then picked element by element. */
int td_fwd_where(struct td_tensor *out, const struct td_operand *in, int nin,
                 const struct td_op_args *a, enum td_dtype compute, struct td_err *err)
{
    (void)nin;
    (void)a;
    if (out->numel == 0) {
        return 0;
    }
    struct operand_view vc, vx, vy;
    struct td_tensor *dst = out;
    int rc;
    if ((rc = view_operand(&vc, &in[0], out, TD_DTYPE_BOOL, a->quota, err)) != 0) {
        goto fail;
    }
    if ((rc = view_operand(&vx, &in[1], out, compute, a->quota, err)) != 0) {
        goto fail_c;
    }
    if ((rc = view_operand(&vy, &in[2], out, compute, a->quota, err)) != 0) {
        goto fail_x;
    }
    if (out->dtype != compute &&
        (rc = td_tensor_empty(&dst, compute, out->shape, out->ndim, a->quota, err)) != 0) {
        goto fail_y;
    }
    int64_t es = (int64_t)td_dtype_size(compute);
    char *o = td_tensor_data(dst);
    int64_t idx[TD_MAX_DIMS] = {0}, oo = 0, co = 0, xo = 0, yo = 0;
    for (int64_t c = 0, end; c < out->numel && rc == 0; c = end) {
        end = td_cancel_chunk_end(c, out->numel);
        for (int64_t n = c; n < end; n++) {
            const char *src = vc.base[co] ? vx.base + xo * es : vy.base + yo * es;
            memcpy(o + oo * es, src, (size_t)es);
            for (int d = out->ndim - 1; d >= 0; d--) {
                if (++idx[d] < out->shape[d]) {
                    oo += dst->strides[d];
                    co += vc.strides[d];
                    xo += vx.strides[d];
                    yo += vy.strides[d];
                    break;
                }
                oo -= (idx[d] - 1) * dst->strides[d];
                co -= (idx[d] - 1) * vc.strides[d];
                xo -= (idx[d] - 1) * vx.strides[d];
                yo -= (idx[d] - 1) * vy.strides[d];
                idx[d] = 0;
            }
        }
        rc = td_cancel_check(err);
    }
    if (dst != out) {
        if (rc == 0) {
            rc = td_cast_copy(out, dst, err);
        }
        td_tensor_unref(dst);
    }
fail_y:
    td_tensor_unref(vy.tmp);
fail_x:
    td_tensor_unref(vx.tmp);
fail_c:
    td_tensor_unref(vc.tmp);
fail:
    return rc;
}

/* ---- clamp ---- */

int td_dtype_rule_clamp(const struct td_operand *in, int nin, const struct td_op_args *a,
                        enum td_dtype *compute, enum td_dtype *result, struct td_err *err)
{
    (void)nin;
    if (!a->has_min && !a->has_max) {
        return td_err_set(err, TD_EINVAL,
                          "tensord.clamp: At least one of 'min' or 'max' must not "
                          "be None");
    }
    struct td_operand all[3] = {in[0]};
    int n = 1;
    if (a->has_min) {
        all[n++] = (struct td_operand){.t = NULL, .s = a->min};
    }
    if (a->has_max) {
        all[n++] = (struct td_operand){.t = NULL, .s = a->max};
    }
    *compute = *result = td_result_type(all, n);
    return 0;
}

/* clamp(min, max) = min(max(x, lo), hi), so lo > hi gives hi everywhere; NaN stays NaN. */
int td_fwd_clamp(struct td_tensor *out, const struct td_operand *in, int nin,
                 const struct td_op_args *a, enum td_dtype compute, struct td_err *err)
{
    (void)nin;
    struct td_tensor *dst = out, *src = in[0].t, *tmp = NULL;
    int rc = 0;
    if (out->numel == 0) {
        return 0;
    }
    if (src->dtype != compute) {
        if ((rc = td_tensor_empty(&tmp, compute, src->shape, src->ndim, a->quota, err)) != 0) {
            return rc;
        }
        if ((rc = td_cast_copy(tmp, src, err)) != 0) {
            td_tensor_unref(tmp);
            return rc;
        }
        src = tmp;
    }
    if (out->dtype != compute || out != in[0].t) {
        if (out->dtype != compute) {
            if ((rc = td_tensor_empty(&dst, compute, out->shape, out->ndim, a->quota, err)) != 0) {
                td_tensor_unref(tmp);
                return rc;
            }
        }
        if ((rc = td_cast_copy(dst, src, err)) != 0) {
            goto done;
        }
    }
    /* dst now holds x in the compute dtype, contiguous or self's layout; clamp it in place. */
    size_t es = td_dtype_size(compute);
    char *base = dst->storage->buf->data;
    int64_t idx[TD_MAX_DIMS] = {0}, off = dst->offset;
    bool fl = td_dtype_is_float(compute);
    double lo = a->has_min ? td_scalar_to_double(a->min) : 0,
           hi = a->has_max ? td_scalar_to_double(a->max) : 0;
    int64_t ilo = a->has_min ? td_scalar_to_int(a->min) : 0,
            ihi = a->has_max ? td_scalar_to_int(a->max) : 0;
    for (int64_t c = 0, end; c < dst->numel && rc == 0; c = end) {
        end = td_cancel_chunk_end(c, dst->numel);
        for (int64_t n = c; n < end; n++) {
            char *p = base + off * (int64_t)es;
            if (fl) {
                double v = td_elem_load_f64(p, compute);
                if (a->has_min && v < lo) {
                    v = lo;
                }
                if (a->has_max && v > hi) {
                    v = hi;
                }
                store_cast(p, compute, (const char *)&v, TD_DTYPE_F64);
            } else {
                int64_t v = td_elem_load_i64(p, compute);
                if (a->has_min && v < ilo) {
                    v = ilo;
                }
                if (a->has_max && v > ihi) {
                    v = ihi;
                }
                store_cast(p, compute, (const char *)&v, TD_DTYPE_I64);
            }
            for (int d = dst->ndim - 1; d >= 0; d--) {
                if (++idx[d] < dst->shape[d]) {
                    off += dst->strides[d];
                    break;
                }
                off -= (idx[d] - 1) * dst->strides[d];
                idx[d] = 0;
            }
        }
        rc = td_cancel_check(err);
    }
    if (dst != out && rc == 0) {
        rc = td_cast_copy(out, dst, err);
    }
done:
    if (dst != out) {
        td_tensor_unref(dst);
    }
    td_tensor_unref(tmp);
    return rc;
}

/* ---- to(dtype) ---- */

/* x.to(dtype): a new tensor in the new dtype, or x itself when the dtype is already right
** (torch returns self then, so writes through either are shared). */
int td_make_to(struct td_tensor **out, const struct td_operand *in, int nin,
               const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    if (!a->has_dtype || !td_dtype_is_valid((int)a->dtype)) {
        return td_err_set(err, TD_EDTYPE, "to() needs a dtype");
    }
    struct td_tensor *t = in[0].t;
    if (t->dtype == a->dtype) {
        *out = td_tensor_ref(t);
        return 0;
    }
    int rc = td_tensor_empty(out, a->dtype, t->shape, t->ndim, q, err);
    if (rc == 0 && (rc = td_cast_copy(*out, t, err)) != 0) {
        td_tensor_unref(*out);
        *out = NULL;
    }
    return rc;
}

/* ---- backward rules (gradients in the output's shape; autograd reduces broadcasting) ---- */

#define X0 (n->in[0])
#define X1 (n->in[1])

/* add: d/da = g, d/db = g. */
int td_bw_add(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
              struct td_quota *q, struct td_err *err)
{
    gin[0] = X0.t != NULL ? td_tensor_ref(g) : NULL;
    if (X1.t == NULL) {
        return 0;
    }
    if (!n->args.has_alpha) {
        gin[1] = td_tensor_ref(g);
        return 0;
    }
    /* alpha=: d/db = alpha g */
    return td_bw2(TD_OP_MUL, td_t(g), td_s(n->args.alpha), q, &gin[1], err);
}

/* grad_fn names: a number minus a tensor is torch's rsub; a number over a tensor is recorded by
** torch as a multiplication by the reciprocal; a tensor divisor (remainder) or exponent (pow) is
** Backward1. */
const char *td_grad_fn_sub(const struct td_node *n)
{
    return n->in[0].t == NULL ? "RsubBackward1" : "SubBackward0";
}

const char *td_grad_fn_div(const struct td_node *n)
{
    if (n->args.rounding_mode != TD_ROUND_NONE) {
        return "DivBackward2";
    }
    return n->in[0].t == NULL ? "MulBackward0" : "DivBackward0";
}

const char *td_grad_fn_remainder(const struct td_node *n)
{
    return n->in[1].t != NULL ? "RemainderBackward1" : "RemainderBackward0";
}

const char *td_grad_fn_pow(const struct td_node *n)
{
    return n->in[1].t != NULL ? "PowBackward1" : "PowBackward0";
}

/* sub: d/da = g, d/db = -g. */
int td_bw_sub(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
              struct td_quota *q, struct td_err *err)
{
    gin[0] = X0.t != NULL ? td_tensor_ref(g) : NULL;
    if (X1.t != NULL && n->args.has_alpha) { /* alpha=: d/db = -alpha g */
        double al = td_scalar_to_double(n->args.alpha);
        return td_bw2(TD_OP_MUL, td_t(g), td_s(td_scalar_f(-al)), q, &gin[1], err);
    }
    return X1.t != NULL ? td_bw1(TD_OP_NEG, td_t(g), NULL, q, &gin[1], err) : 0;
}

/* mul: d/da = g*b, d/db = g*a. */
int td_bw_mul(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
              struct td_quota *q, struct td_err *err)
{
    int rc = 0;
    if (X0.t != NULL) {
        rc = td_bw2(TD_OP_MUL, td_t(g), X1, q, &gin[0], err);
    }
    if (rc == 0 && X1.t != NULL) {
        rc = td_bw2(TD_OP_MUL, td_t(g), X0, q, &gin[1], err);
    }
    return rc;
}

/* div: d/da = g/b, d/db = -g*a/b^2. */
int td_bw_div(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
              struct td_quota *q, struct td_err *err)
{
    int rc = 0;
    if (n->args.rounding_mode != TD_ROUND_NONE) { /* rounded: zero almost everywhere */
        for (int i = 0; i < 2 && rc == 0; i++) {
            if (n->in[i].t != NULL) {
                rc = td_bw2(TD_OP_MUL, td_t(g), td_s(td_scalar_i(0)), q, &gin[i], err);
            }
        }
        return rc;
    }
    if (X0.t != NULL) {
        rc = td_bw2(TD_OP_DIV, td_t(g), X1, q, &gin[0], err);
    }
    if (rc == 0 && X1.t != NULL) {
        struct td_tensor *q1 = NULL, *q2 = NULL, *q3 = NULL;
        if ((rc = td_bw2(TD_OP_DIV, X0, X1, q, &q1, err)) == 0 &&
            (rc = td_bw2(TD_OP_DIV, td_t(q1), X1, q, &q2, err)) == 0 &&
            (rc = td_bw2(TD_OP_MUL, td_t(g), td_t(q2), q, &q3, err)) == 0) {
            rc = td_bw1(TD_OP_NEG, td_t(q3), NULL, q, &gin[1], err);
        }
        td_tensor_unref(q1);
        td_tensor_unref(q2);
        td_tensor_unref(q3);
    }
    return rc;
}

/* pow: d/da = g * b * a^(b-1); d/db = g * a^b * log(a). */
int td_bw_pow(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
              struct td_quota *q, struct td_err *err)
{
    int rc = 0;
    struct td_tensor *bm1 = NULL, *p = NULL, *t1 = NULL;
    if (X0.t != NULL) {
        if (X1.t == NULL) {
            /* a number exponent e: g * e * a^(e-1), with e - 1 a number too */
            double e = td_scalar_to_double(X1.s);
            if (e == 0.0) {
                rc = td_bw2(TD_OP_MUL, td_t(g), td_s(td_scalar_i(0)), q, &gin[0], err);
            } else if ((rc = td_bw2(TD_OP_POW, X0, td_s(td_scalar_f(e - 1)), q, &p, err)) == 0 &&
                       (rc = td_bw2(TD_OP_MUL, td_t(p), td_s(td_scalar_f(e)), q, &t1, err)) == 0) {
                rc = td_bw2(TD_OP_MUL, td_t(g), td_t(t1), q, &gin[0], err);
            }
        } else if ((rc = td_bw2(TD_OP_SUB, X1, td_s(td_scalar_i(1)), q, &bm1, err)) == 0 &&
                   (rc = td_bw2(TD_OP_POW, X0, td_t(bm1), q, &p, err)) == 0 &&
                   (rc = td_bw2(TD_OP_MUL, td_t(p), X1, q, &t1, err)) == 0) {
            rc = td_bw2(TD_OP_MUL, td_t(g), td_t(t1), q, &gin[0], err);
        }
    }
    td_tensor_unref(bm1);
    td_tensor_unref(p);
    td_tensor_unref(t1);
    if (rc == 0 && X1.t != NULL) {
        struct td_tensor *ab = NULL, *la = NULL, *m = NULL;
        struct td_operand base = X0.t != NULL ? X0 : td_s(td_scalar_f(td_scalar_to_double(X0.s)));
        if ((rc = td_bw2(TD_OP_POW, base, X1, q, &ab, err)) == 0) {
            if (X0.t != NULL) {
                rc = td_bw1(TD_OP_LOG, X0, NULL, q, &la, err);
            } else {
                rc = td_tensor_full(&la, TD_DTYPE_F64, NULL, 0,
                                    td_scalar_f(log(td_scalar_to_double(X0.s))), q, err);
            }
        }
        if (rc == 0 && (rc = td_bw2(TD_OP_MUL, td_t(ab), td_t(la), q, &m, err)) == 0) {
            rc = td_bw2(TD_OP_MUL, td_t(g), td_t(m), q, &gin[1], err);
        }
        td_tensor_unref(ab);
        td_tensor_unref(la);
        td_tensor_unref(m);
    }
    return rc;
}

/* neg: -g */
int td_bw_neg(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
              struct td_quota *q, struct td_err *err)
{
    (void)n;
    return td_bw1(TD_OP_NEG, td_t(g), NULL, q, &gin[0], err);
}

/* g * f(x) for a unary f, and g / f(x). */
static int times_f(enum td_op_id f, const struct td_node *n, struct td_tensor *g, bool divide,
                   struct td_tensor **out, struct td_quota *q, struct td_err *err)
{
    struct td_tensor *fx = NULL;
    int rc = f == TD_OP_COUNT ? (fx = td_tensor_ref(X0.t), 0) : td_bw1(f, X0, NULL, q, &fx, err);
    if (rc == 0) {
        rc = td_bw2(divide ? TD_OP_DIV : TD_OP_MUL, td_t(g), td_t(fx), q, out, err);
    }
    td_tensor_unref(fx);
    return rc;
}

/* g * h(y), y the op's saved result (TD_OPF_BW_OUT): h is `scale * y^pow + add` for pow 1,
** 2 or 3 (pow 0: the constant `add`). */
static int times_out(const struct td_node *n, struct td_tensor *g, int pow, double scale,
                     double add, struct td_tensor **out, struct td_quota *q, struct td_err *err)
{
    struct td_tensor *y = NULL, *p = NULL, *h = NULL, *h2 = NULL;
    int rc = td_node_output(n, &y, err);
    if (rc == 0) {
        p = td_tensor_ref(y);
        for (int k = 1; k < pow && rc == 0; k++) {
            struct td_tensor *next = NULL;
            rc = td_bw2(TD_OP_MUL, td_t(p), td_t(y), q, &next, err);
            td_tensor_unref(p);
            p = next;
        }
    }
    if (rc == 0) {
        rc = td_bw2(TD_OP_MUL, td_t(p), td_s(td_scalar_f(scale)), q, &h, err);
    }
    if (rc == 0) {
        rc = td_bw2(TD_OP_ADD, td_t(h), td_s(td_scalar_f(add)), q, &h2, err);
    }
    if (rc == 0) {
        rc = td_bw2(TD_OP_MUL, td_t(g), td_t(h2), q, out, err);
    }
    td_tensor_unref(y);
    td_tensor_unref(p);
    td_tensor_unref(h);
    td_tensor_unref(h2);
    return rc;
}

/* exp: g * y (the saved result, y = exp(x)) */
int td_bw_exp(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
              struct td_quota *q, struct td_err *err)
{
    return times_out(n, g, 1, 1.0, 0.0, &gin[0], q, err);
}

/* log: g / x */
int td_bw_log(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
              struct td_quota *q, struct td_err *err)
{
    return times_f(TD_OP_COUNT, n, g, true, &gin[0], q, err);
}

/* sqrt: g / (2 y), y = sqrt(x) saved */
int td_bw_sqrt(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
               struct td_quota *q, struct td_err *err)
{
    struct td_tensor *h = NULL, *y = NULL;
    int rc = td_bw2(TD_OP_MUL, td_t(g), td_s(td_scalar_f(0.5)), q, &h, err);
    if (rc == 0 && (rc = td_node_output(n, &y, err)) == 0) {
        rc = td_bw2(TD_OP_DIV, td_t(h), td_t(y), q, &gin[0], err);
    }
    td_tensor_unref(h);
    td_tensor_unref(y);
    return rc;
}

/* tanh: g * (1 - y^2); sigmoid: g * y * (1 - y), y the saved result */
static int squash_bw(enum td_op_id f, const struct td_node *n, struct td_tensor *g,
                     struct td_tensor **gin, struct td_quota *q, struct td_err *err)
{
    struct td_tensor *y = NULL, *a = NULL, *b = NULL;
    int rc;
    if ((rc = td_node_output(n, &y, err)) == 0) {
        if (f == TD_OP_TANH) {
            if ((rc = td_bw2(TD_OP_MUL, td_t(y), td_t(y), q, &a, err)) == 0) {
                rc = td_bw2(TD_OP_SUB, td_s(td_scalar_i(1)), td_t(a), q, &b, err);
            }
        } else if ((rc = td_bw2(TD_OP_SUB, td_s(td_scalar_i(1)), td_t(y), q, &a, err)) == 0) {
            rc = td_bw2(TD_OP_MUL, td_t(y), td_t(a), q, &b, err);
        }
    }
    if (rc == 0) {
        rc = td_bw2(TD_OP_MUL, td_t(g), td_t(b), q, &gin[0], err);
    }
    td_tensor_unref(y);
    td_tensor_unref(a);
    td_tensor_unref(b);
    return rc;
}

int td_bw_tanh(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
               struct td_quota *q, struct td_err *err)
{
    return squash_bw(TD_OP_TANH, n, g, gin, q, err);
}

int td_bw_sigmoid(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                  struct td_quota *q, struct td_err *err)
{
    return squash_bw(TD_OP_SIGMOID, n, g, gin, q, err);
}

/* relu: g where y > 0 (y = relu(x) saved, > 0 exactly where x is), else 0 */
/* relu's backward row: o = y <= 0 ? 0 : g (x = y, the saved output; y = g, the gradient) */
DEF_ROW2(relu_bw_f32, float, float, x <= 0 ? 0.0f : y)
DEF_ROW2(relu_bw_f64, double, double, x <= 0 ? 0.0 : y)
static row_fn *const relu_bw_rows[TD_DTYPE_COUNT] =
    {[TD_DTYPE_F32] = relu_bw_f32, [TD_DTYPE_F64] = relu_bw_f64};

int td_bw_relu(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
               struct td_quota *q, struct td_err *err)
{
    /* torch's threshold_backward: y <= 0 ? 0 : g, so a masked gradient is +0 (g * mask would
    ** give -0 for a negative g) and a NaN output passes g through. One pass of a row kernel
    ** for float gradients (the forward relu already paid for as many elements); other dtypes
    ** through the ops. */
    struct td_tensor *mask = NULL, *y = NULL;
    int rc = td_node_output(n, &y, err);
    row_fn *k = (unsigned)g->dtype < TD_DTYPE_COUNT ? relu_bw_rows[g->dtype] : NULL;
    if (rc == 0 && k != NULL && y->dtype == g->dtype && y->ndim == g->ndim &&
        memcmp(y->shape, g->shape, sizeof(int64_t) * (size_t)g->ndim) == 0) {
        struct td_operand in[2] = {td_t(y), td_t(g)};
        if ((rc = td_tensor_empty(&gin[0], g->dtype, g->shape, g->ndim, q, err)) == 0) {
            rc = td_elementwise_rows(k, gin[0], in, 2, g->dtype, g->dtype, q, err);
        }
    } else if (rc == 0 &&
               (rc = td_bw2(TD_OP_LE, td_t(y), td_s(td_scalar_i(0)), q, &mask, err)) == 0) {
        struct td_operand in[3] = {td_t(mask), td_s(td_scalar_i(0)), td_t(g)};
        rc = td_op_apply(TD_OP_WHERE, in, 3, NULL, false, q, &gin[0], err);
    }
    td_tensor_unref(mask);
    td_tensor_unref(y);
    return rc;
}

/* g * h(x) where h is built from forward ops by the caller-supplied steps. */
static int mul_g(struct td_tensor *g, struct td_tensor *h, struct td_tensor **out,
                 struct td_quota *q, struct td_err *err)
{
    return td_bw2(TD_OP_MUL, td_t(g), td_t(h), q, out, err);
}

/* abs: g * sign(x) */
int td_bw_abs(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
              struct td_quota *q, struct td_err *err)
{
    return times_f(TD_OP_SIGN, n, g, false, &gin[0], q, err);
}

/* sign, floor, ceil, round: zero almost everywhere */
int td_bw_zero(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
               struct td_quota *q, struct td_err *err)
{
    (void)n;
    return td_bw2(TD_OP_MUL, td_t(g), td_s(td_scalar_i(0)), q, &gin[0], err);
}

/* log1p: g / (1 + x) */
int td_bw_log1p(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                struct td_quota *q, struct td_err *err)
{
    struct td_tensor *d = NULL;
    int rc = td_bw2(TD_OP_ADD, X0, td_s(td_scalar_i(1)), q, &d, err);
    if (rc == 0) {
        rc = td_bw2(TD_OP_DIV, td_t(g), td_t(d), q, &gin[0], err);
    }
    td_tensor_unref(d);
    return rc;
}

/* expm1: g * exp(x) = g * (y + 1), y saved */
int td_bw_expm1(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                struct td_quota *q, struct td_err *err)
{
    return times_out(n, g, 1, 1.0, 1.0, &gin[0], q, err);
}

/* rsqrt: -g / 2 * x^(-3/2) = -g / 2 * y^3, y saved */
int td_bw_rsqrt(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                struct td_quota *q, struct td_err *err)
{
    return times_out(n, g, 3, -0.5, 0.0, &gin[0], q, err);
}

/* sin: g cos(x); cos: -g sin(x); tan: g (1 + tan(x)^2) */
int td_bw_sin(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
              struct td_quota *q, struct td_err *err)
{
    return times_f(TD_OP_COS, n, g, false, &gin[0], q, err);
}

int td_bw_cos(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
              struct td_quota *q, struct td_err *err)
{
    struct td_tensor *m = NULL;
    int rc = times_f(TD_OP_SIN, n, g, false, &m, q, err);
    if (rc == 0) {
        rc = td_bw1(TD_OP_NEG, td_t(m), NULL, q, &gin[0], err);
    }
    td_tensor_unref(m);
    return rc;
}

int td_bw_tan(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
              struct td_quota *q, struct td_err *err)
{
    return times_out(n, g, 2, 1.0, 1.0, &gin[0], q, err); /* y = tan(x) saved */
}

struct gelu_ctx {
    enum td_dtype dt;
};

static void gelu_grad_one(void *p, void *ctx, int64_t i)
{
    (void)i;
    struct gelu_ctx *c = ctx;
    double x = td_elem_load_f64(p, c->dt);
    /* d/dx x Phi(x) = Phi(x) + x phi(x) */
    double v = 0.5 * (1.0 + erf(x * M_SQRT1_2)) + x * exp(-0.5 * x * x) * 0.3989422804014327;
    td_elem_store_f64(p, c->dt, v);
}

/* gelu: g * (Phi(x) + x phi(x)), computed elementwise on a copy of x */
int td_bw_gelu(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
               struct td_quota *q, struct td_err *err)
{
    struct td_tensor *d = NULL;
    int rc = td_bw1(TD_OP_CLONE, X0, NULL, q, &d, err);
    if (rc == 0) {
        struct gelu_ctx c = {d->dtype};
        if ((rc = td_tensor_each(d, gelu_grad_one, &c, err)) == 0) {
            rc = mul_g(g, d, &gin[0], q, err);
        }
    }
    td_tensor_unref(d);
    return rc;
}

/* clamp: g where min <= x <= max (inclusive, as torch), else 0 */
int td_bw_clamp(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                struct td_quota *q, struct td_err *err)
{
    struct td_tensor *lo = NULL, *hi = NULL, *m = NULL;
    int rc = 0;
    if (n->args.has_min) {
        rc = td_bw2(TD_OP_GE, X0, td_s(n->args.min), q, &lo, err);
    }
    if (rc == 0 && n->args.has_max) {
        rc = td_bw2(TD_OP_LE, X0, td_s(n->args.max), q, &hi, err);
    }
    if (rc == 0) {
        if (lo != NULL && hi != NULL) {
            rc = td_bw2(TD_OP_LOGICAL_AND, td_t(lo), td_t(hi), q, &m, err);
        } else {
            m = td_tensor_ref(lo != NULL ? lo : hi);
        }
    }
    if (rc == 0) {
        rc = td_bw2(TD_OP_MUL, td_t(g), td_t(m), q, &gin[0], err);
    }
    td_tensor_unref(lo);
    td_tensor_unref(hi);
    td_tensor_unref(m);
    return rc;
}

/* maximum/minimum: the gradient goes to the larger (smaller) input; ties split it in half. */
static int extremum_bw(enum td_op_id win, const struct td_node *n, struct td_tensor *g,
                       struct td_tensor **gin, struct td_quota *q, struct td_err *err)
{
    struct td_tensor *half = NULL, *eq = NULL, *wa = NULL, *wb = NULL, *tie = NULL;
    int rc;
    if ((rc = td_bw2(TD_OP_MUL, td_t(g), td_s(td_scalar_f(0.5)), q, &half, err)) != 0 ||
        (rc = td_bw2(TD_OP_EQ, X0, X1, q, &eq, err)) != 0 ||
        (rc = td_bw2(win, X0, X1, q, &wa, err)) != 0 ||
        (rc = td_bw2(win, X1, X0, q, &wb, err)) != 0 ||
        (rc = td_bw2(TD_OP_MUL, td_t(half), td_t(eq), q, &tie, err)) != 0) {
        goto out;
    }
    struct td_tensor *ga = NULL, *gb = NULL;
    if (X0.t != NULL && (rc = td_bw2(TD_OP_MUL, td_t(g), td_t(wa), q, &ga, err)) == 0) {
        rc = td_bw2(TD_OP_ADD, td_t(ga), td_t(tie), q, &gin[0], err);
    }
    if (rc == 0 && X1.t != NULL && (rc = td_bw2(TD_OP_MUL, td_t(g), td_t(wb), q, &gb, err)) == 0) {
        rc = td_bw2(TD_OP_ADD, td_t(gb), td_t(tie), q, &gin[1], err);
    }
    td_tensor_unref(ga);
    td_tensor_unref(gb);
out:
    td_tensor_unref(half);
    td_tensor_unref(eq);
    td_tensor_unref(wa);
    td_tensor_unref(wb);
    td_tensor_unref(tie);
    return rc;
}

int td_bw_maximum(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                  struct td_quota *q, struct td_err *err)
{
    return extremum_bw(TD_OP_GT, n, g, gin, q, err);
}

int td_bw_minimum(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                  struct td_quota *q, struct td_err *err)
{
    return extremum_bw(TD_OP_LT, n, g, gin, q, err);
}

/* where(c, x, y): g where c to x, elsewhere to y */
int td_bw_where(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                struct td_quota *q, struct td_err *err)
{
    struct td_operand zero = td_s(td_scalar_i(0));
    struct td_operand a[3] = {n->in[0], td_t(g), zero}, b[3] = {n->in[0], zero, td_t(g)};
    int rc = 0;
    if (n->in[1].t != NULL) {
        rc = td_op_apply(TD_OP_WHERE, a, 3, NULL, false, q, &gin[1], err);
    }
    if (rc == 0 && n->in[2].t != NULL) {
        rc = td_op_apply(TD_OP_WHERE, b, 3, NULL, false, q, &gin[2], err);
    }
    return rc;
}

/* remainder: d/da = g, d/db = -g * floor_divide(a, b) */
int td_bw_remainder(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                    struct td_quota *q, struct td_err *err)
{
    int rc = 0;
    gin[0] = X0.t != NULL ? td_tensor_ref(g) : NULL;
    if (X1.t != NULL) {
        struct td_tensor *f = NULL, *m = NULL;
        if ((rc = td_bw2(TD_OP_FLOOR_DIVIDE, X0, X1, q, &f, err)) == 0 &&
            (rc = td_bw2(TD_OP_MUL, td_t(g), td_t(f), q, &m, err)) == 0) {
            rc = td_bw1(TD_OP_NEG, td_t(m), NULL, q, &gin[1], err);
        }
        td_tensor_unref(f);
        td_tensor_unref(m);
    }
    return rc;
}
