/* server/core/optim.c — torch.optim's update rules (see optim.h): SGD, Adam, AdamW, RMSprop,
** Adagrad, as torch 1.13's single-tensor implementations compute them.
**
** Every rule is one pass over the parameter's elements, written once per element type (the
** KERNELS macro, for float and double) as a row function that walks n elements of the
** parameter, its gradient and its states, each with its own stride; walk() feeds it rows of
** any strided layout (one row when everything is contiguous) in chunks, checking the cancel
** between them. Python floats are cast to the element type where torch's kernels cast their
** Scalar arguments (`exp_avg.mul_(beta1)` multiplies by (float)beta1; `add_(g, alpha=1 - beta1)`
** computes 1 - beta1 in double first), and the operations keep torch's order
** (addcmul: self + value * t1 * t2; addcdiv: self + value * t1 / t2), so results agree with
** torch's to rounding. Scalars torch computes in Python (bias corrections, Adagrad's clr) are
** computed here in double, as Python does.
*/
#include "optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../base/checked.h"
#include "cancel.h"

static const char *const slot_names[TD_OPTIM_SLOTS] = {
    [TD_OPTIM_STEP] = "step",
    [TD_OPTIM_MOMENTUM_BUFFER] = "momentum_buffer",
    [TD_OPTIM_EXP_AVG] = "exp_avg",
    [TD_OPTIM_EXP_AVG_SQ] = "exp_avg_sq",
    [TD_OPTIM_MAX_EXP_AVG_SQ] = "max_exp_avg_sq",
    [TD_OPTIM_SQUARE_AVG] = "square_avg",
    [TD_OPTIM_GRAD_AVG] = "grad_avg",
    [TD_OPTIM_SUM] = "sum",
};

const char *td_optim_slot_name(enum td_optim_slot slot)
{
    return slot >= 0 && slot < TD_OPTIM_SLOTS ? slot_names[slot] : "?";
}

/* ---- options ---- */

/* A Python float as str() prints it, closely enough for a message: "-1.0", "nan", "1e-05". */
static const char *pyfloat(char *buf, size_t cap, double v)
{
    if (isnan(v)) {
        snprintf(buf, cap, "nan");
    } else if (isinf(v)) {
        snprintf(buf, cap, v < 0 ? "-inf" : "inf");
    } else if (v == floor(v) && fabs(v) < 1e16) {
        snprintf(buf, cap, "%.1f", v);
    } else {
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(buf, cap, "%.*g", prec, v);
            if (strtod(buf, NULL) == v) {
                break;
            }
        }
    }
    return buf;
}

/* `not 0.0 <= v` (true for NaN), torch's test for most options. */
static int need_nonneg(double v, const char *what, struct td_err *err)
{
    char b[40];
    if (!(0.0 <= v)) {
        return td_err_set(err, TD_EINVAL, "Invalid %s: %s", what, pyfloat(b, sizeof b, v));
    }
    return 0;
}

static int need_beta(double v, int index, struct td_err *err)
{
    char b[40];
    if (!(0.0 <= v && v < 1.0)) {
        return td_err_set(err, TD_EINVAL, "Invalid beta parameter at index %d: %s", index,
                          pyfloat(b, sizeof b, v));
    }
    return 0;
}

int td_optim_check(enum td_optim_algo algo, const struct td_optim_hparams *h, struct td_err *err)
{
    char b[40];
    int rc = 0;
    switch (algo) {
    case TD_OPTIM_SGD:
        /* SGD tests `lr < 0.0`: a NaN passes, as in torch. */
        if (h->lr < 0.0) {
            return td_err_set(err, TD_EINVAL, "Invalid learning rate: %s",
                              pyfloat(b, sizeof b, h->lr));
        }
        if (h->momentum < 0.0) {
            return td_err_set(err, TD_EINVAL, "Invalid momentum value: %s",
                              pyfloat(b, sizeof b, h->momentum));
        }
        if (h->weight_decay < 0.0) {
            return td_err_set(err, TD_EINVAL, "Invalid weight_decay value: %s",
                              pyfloat(b, sizeof b, h->weight_decay));
        }
        if (h->nesterov && (h->momentum <= 0 || h->dampening != 0)) {
            return td_err_set(err, TD_EINVAL,
                              "Nesterov momentum requires a momentum and zero dampening");
        }
        return 0;
    case TD_OPTIM_ADAM:
    case TD_OPTIM_ADAMW:
        if ((rc = need_nonneg(h->lr, "learning rate", err)) != 0 ||
            (rc = need_nonneg(h->eps, "epsilon value", err)) != 0 ||
            (rc = need_beta(h->beta1, 0, err)) != 0 || (rc = need_beta(h->beta2, 1, err)) != 0 ||
            (rc = need_nonneg(h->weight_decay, "weight_decay value", err)) != 0) {
            return rc;
        }
        return 0;
    case TD_OPTIM_RMSPROP:
        if ((rc = need_nonneg(h->lr, "learning rate", err)) != 0 ||
            (rc = need_nonneg(h->eps, "epsilon value", err)) != 0 ||
            (rc = need_nonneg(h->momentum, "momentum value", err)) != 0 ||
            (rc = need_nonneg(h->weight_decay, "weight_decay value", err)) != 0 ||
            (rc = need_nonneg(h->alpha, "alpha value", err)) != 0) {
            return rc;
        }
        return 0;
    case TD_OPTIM_ADAGRAD:
        if ((rc = need_nonneg(h->lr, "learning rate", err)) != 0 ||
            (rc = need_nonneg(h->lr_decay, "lr_decay value", err)) != 0 ||
            (rc = need_nonneg(h->weight_decay, "weight_decay value", err)) != 0 ||
            (rc = need_nonneg(h->initial_accumulator_value, "initial_accumulator_value value",
                              err)) != 0 ||
            (rc = need_nonneg(h->eps, "epsilon value", err)) != 0) {
            return rc;
        }
        return 0;
    default: return td_err_set(err, TD_EINVAL, "unknown optimizer algorithm %d", (int)algo);
    }
}

#define BIT(slot) (1u << (slot))

unsigned td_optim_slots(enum td_optim_algo algo, const struct td_optim_hparams *h)
{
    switch (algo) {
    case TD_OPTIM_SGD: return h->momentum != 0 ? BIT(TD_OPTIM_MOMENTUM_BUFFER) : 0;
    case TD_OPTIM_ADAM:
    case TD_OPTIM_ADAMW:
        return BIT(TD_OPTIM_STEP) | BIT(TD_OPTIM_EXP_AVG) | BIT(TD_OPTIM_EXP_AVG_SQ) |
               (h->amsgrad ? BIT(TD_OPTIM_MAX_EXP_AVG_SQ) : 0);
    case TD_OPTIM_RMSPROP:
        return BIT(TD_OPTIM_SQUARE_AVG) | (h->momentum > 0 ? BIT(TD_OPTIM_MOMENTUM_BUFFER) : 0) |
               (h->centered ? BIT(TD_OPTIM_GRAD_AVG) : 0);
    case TD_OPTIM_ADAGRAD: return BIT(TD_OPTIM_STEP) | BIT(TD_OPTIM_SUM);
    default: return 0;
    }
}

int td_optim_passes(enum td_optim_algo algo)
{
    /* parameter read and written, gradient read, each state read and written */
    switch (algo) {
    case TD_OPTIM_SGD: return 5;
    case TD_OPTIM_ADAM:
    case TD_OPTIM_ADAMW: return 9;
    case TD_OPTIM_RMSPROP: return 9;
    case TD_OPTIM_ADAGRAD: return 5;
    default: return 9;
    }
}

/* ---- tensors ---- */

/* A dim of size > 1 with stride 0 would have one element written by several updates. */
static bool writes_twice(const struct td_tensor *t)
{
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] > 1 && t->strides[d] == 0) {
            return true;
        }
    }
    return false;
}

static bool is_float(enum td_dtype dt)
{
    return dt == TD_DTYPE_F32 || dt == TD_DTYPE_F64;
}

int td_optim_check_param(const struct td_tensor *p, const char *what, struct td_err *err)
{
    if (!is_float(p->dtype)) {
        return td_err_set(err, TD_EDTYPE,
                          "%s is %s: an optimizer steps only float32 and float64 parameters", what,
                          td_dtype_name(p->dtype));
    }
    if (writes_twice(p)) {
        return td_err_set(err, TD_EINVAL,
                          "%s is an expanded view (several elements share one memory "
                          "location): it cannot be updated in place",
                          what);
    }
    return 0;
}

int td_optim_check_state(enum td_optim_slot slot, const struct td_tensor *p,
                         const struct td_tensor *st, const char *what, struct td_err *err)
{
    char a[128], b[128];
    if (slot == TD_OPTIM_STEP) {
        if (!is_float(st->dtype) || st->numel != 1) {
            return td_err_set(err, TD_EINVAL,
                              "%s (state 'step') must be one float32 or float64 element, "
                              "not %s of shape %s",
                              what, td_dtype_name(st->dtype),
                              td_shape_str(a, sizeof a, st->shape, st->ndim));
        }
        return 0;
    }
    if (st->dtype != p->dtype) {
        return td_err_set(err, TD_EDTYPE, "%s (state '%s') is %s, but its parameter is %s", what,
                          td_optim_slot_name(slot), td_dtype_name(st->dtype),
                          td_dtype_name(p->dtype));
    }
    bool same = st->ndim == p->ndim;
    for (int d = 0; same && d < p->ndim; d++) {
        same = st->shape[d] == p->shape[d];
    }
    if (!same) {
        return td_err_set(err, TD_ESHAPE,
                          "%s (state '%s') has shape %s, but its parameter has shape %s", what,
                          td_optim_slot_name(slot), td_shape_str(a, sizeof a, st->shape, st->ndim),
                          td_shape_str(b, sizeof b, p->shape, p->ndim));
    }
    if (writes_twice(st)) {
        return td_err_set(err, TD_EINVAL,
                          "%s (state '%s') is an expanded view: it cannot be updated in place",
                          what, td_optim_slot_name(slot));
    }
    return 0;
}

int td_optim_state_new(enum td_optim_slot slot, const struct td_optim_hparams *h,
                       const struct td_tensor *p, struct td_quota *q, struct td_tensor **out,
                       struct td_err *err)
{
    if (slot == TD_OPTIM_STEP) {
        return td_tensor_full(out, TD_DTYPE_F32, NULL, 0, td_scalar_f(0.0), q, err);
    }
    double v = slot == TD_OPTIM_SUM ? h->initial_accumulator_value : 0.0;
    return td_tensor_full(out, p->dtype, p->shape, p->ndim, td_scalar_f(v), q, err);
}

/* ---- the walk ---- */

#define WALK_MAX 6 /* parameter, gradient and up to 4 states (Adam's three; RMSprop's three) */

/* What a row function needs: the options, cast where torch casts them, per element type. */
struct kctx {
    bool maximize, nesterov, amsgrad, centered;
    bool has_wd, has_momentum, fresh_buf;
    double wd, momentum, one_minus_damp, neg_lr;          /* SGD; RMSprop momentum, -lr */
    double beta1, one_minus_b1, beta2, one_minus_b2, eps; /* Adam */
    double adamw_decay;                                   /* AdamW: 1 - lr * weight_decay */
    double bc2_sqrt, neg_step_size;                       /* Adam; Adagrad: -clr */
    double alpha, one_minus_alpha;                        /* RMSprop */
    double p, acc; /* norm: its order and the running sum (or max, min, count) */
    double lo, hi; /* clamp; lo also the scale's factor */
    bool nan;      /* norm: a NaN was seen (max and min propagate it) */
};

/* n elements of each walked tensor: ptr[k] its first element, st[k] its stride in elements. */
typedef void row_fn(struct kctx *c, int64_t n, char *const *ptr, const int64_t *st);

#define KERNELS(T, SQRT, SFX)                                                                      \
    /* The gradient a rule steps on: negated under maximize, plus wd * p under weight decay. */    \
    static inline T grad_in_##SFX(const struct kctx *c, T d, T wd, T p)                            \
    {                                                                                              \
        if (c->maximize) {                                                                         \
            d = -d;                                                                                \
        }                                                                                          \
        if (c->has_wd) {                                                                           \
            d = d + wd * p;                                                                        \
        }                                                                                          \
        return d;                                                                                  \
    }                                                                                              \
                                                                                                   \
    static void sgd_row_##SFX(struct kctx *c, int64_t n, char *const *ptr, const int64_t *st)      \
    {                                                                                              \
        T *p = (T *)ptr[0], *b = c->has_momentum ? (T *)ptr[2] : NULL;                             \
        const T *g = (const T *)ptr[1];                                                            \
        const T wd = (T)c->wd, mom = (T)c->momentum, omd = (T)c->one_minus_damp;                   \
        const T neg_lr = (T)c->neg_lr;                                                             \
        if (!c->has_momentum && !c->maximize && !c->has_wd && st[0] == 1 && st[1] == 1) {          \
            /* plain SGD on contiguous rows: the loop below without its branches (vectorised) */   \
            for (int64_t i = 0; i < n; i++) {                                                      \
                p[i] = p[i] + neg_lr * g[i];                                                       \
            }                                                                                      \
            return;                                                                                \
        }                                                                                          \
        for (int64_t i = 0; i < n; i++) {                                                          \
            T *pi = p + i * st[0];                                                                 \
            T d = grad_in_##SFX(c, g[i * st[1]], wd, *pi);                                         \
            if (c->has_momentum) {                                                                 \
                T *bi = b + i * st[2];                                                             \
                *bi = c->fresh_buf ? d : *bi * mom + omd * d;                                      \
                d = c->nesterov ? d + mom * *bi : *bi;                                             \
            }                                                                                      \
            *pi = *pi + neg_lr * d;                                                                \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    static void adam_row_##SFX(struct kctx *c, int64_t n, char *const *ptr, const int64_t *st)     \
    {                                                                                              \
        T *p = (T *)ptr[0], *m = (T *)ptr[2], *v = (T *)ptr[3];                                    \
        T *vmax = c->amsgrad ? (T *)ptr[4] : NULL;                                                 \
        const T *g = (const T *)ptr[1];                                                            \
        const T wd = (T)c->wd, b1 = (T)c->beta1, omb1 = (T)c->one_minus_b1;                        \
        const T b2 = (T)c->beta2, omb2 = (T)c->one_minus_b2, eps = (T)c->eps;                      \
        const T decay = (T)c->adamw_decay, bc2 = (T)c->bc2_sqrt, nss = (T)c->neg_step_size;        \
        for (int64_t i = 0; i < n; i++) {                                                          \
            T *pi = p + i * st[0], *mi = m + i * st[2], *vi = v + i * st[3];                       \
            T d = g[i * st[1]];                                                                    \
            if (c->maximize) {                                                                     \
                d = -d;                                                                            \
            }                                                                                      \
            if (c->adamw_decay != 1.0) {                                                           \
                *pi = *pi * decay;                                                                 \
            } else if (c->has_wd) {                                                                \
                d = d + wd * *pi;                                                                  \
            }                                                                                      \
            *mi = *mi * b1 + omb1 * d;                                                             \
            *vi = *vi * b2 + omb2 * d * d;                                                         \
            T s = *vi;                                                                             \
            if (c->amsgrad) {                                                                      \
                T *xi = vmax + i * st[4];                                                          \
                *xi = (isnan(*xi) || isnan(s)) ? (T)NAN : (s > *xi ? s : *xi);                     \
                s = *xi;                                                                           \
            }                                                                                      \
            T denom = SQRT(s) / bc2 + eps;                                                         \
            *pi = *pi + nss * *mi / denom;                                                         \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    static void rmsprop_row_##SFX(struct kctx *c, int64_t n, char *const *ptr, const int64_t *st)  \
    {                                                                                              \
        T *p = (T *)ptr[0], *sq = (T *)ptr[2];                                                     \
        T *b = c->has_momentum ? (T *)ptr[3] : NULL;                                               \
        T *ga = c->centered ? (T *)ptr[c->has_momentum ? 4 : 3] : NULL;                            \
        int64_t sga = c->centered ? st[c->has_momentum ? 4 : 3] : 0;                               \
        const T *g = (const T *)ptr[1];                                                            \
        const T wd = (T)c->wd, al = (T)c->alpha, oma = (T)c->one_minus_alpha, eps = (T)c->eps;     \
        const T mom = (T)c->momentum, neg_lr = (T)c->neg_lr;                                       \
        for (int64_t i = 0; i < n; i++) {                                                          \
            T *pi = p + i * st[0], *si = sq + i * st[2];                                           \
            T d = grad_in_##SFX(c, g[i * st[1]], wd, *pi);                                         \
            *si = *si * al + oma * d * d;                                                          \
            T avg;                                                                                 \
            if (c->centered) {                                                                     \
                T *gi = ga + i * sga;                                                              \
                *gi = *gi * al + oma * d;                                                          \
                avg = SQRT(*si + (T)-1 * *gi * *gi);                                               \
            } else {                                                                               \
                avg = SQRT(*si);                                                                   \
            }                                                                                      \
            avg = avg + eps;                                                                       \
            if (c->has_momentum) {                                                                 \
                T *bi = b + i * st[3];                                                             \
                *bi = *bi * mom + (T)1 * d / avg;                                                  \
                *pi = *pi + neg_lr * *bi;                                                          \
            } else {                                                                               \
                *pi = *pi + neg_lr * d / avg;                                                      \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    static void adagrad_row_##SFX(struct kctx *c, int64_t n, char *const *ptr, const int64_t *st)  \
    {                                                                                              \
        T *p = (T *)ptr[0], *sum = (T *)ptr[2];                                                    \
        const T *g = (const T *)ptr[1];                                                            \
        const T wd = (T)c->wd, eps = (T)c->eps, nclr = (T)c->neg_step_size;                        \
        for (int64_t i = 0; i < n; i++) {                                                          \
            T *pi = p + i * st[0], *si = sum + i * st[2];                                          \
            T d = grad_in_##SFX(c, g[i * st[1]], wd, *pi);                                         \
            *si = *si + (T)1 * d * d;                                                              \
            T std = SQRT(*si) + eps;                                                               \
            *pi = *pi + nclr * d / std;                                                            \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    static void norm_row_##SFX(struct kctx *c, int64_t n, char *const *ptr, const int64_t *st)     \
    {                                                                                              \
        const T *g = (const T *)ptr[0];                                                            \
        double acc = c->acc;                                                                       \
        for (int64_t i = 0; i < n; i++) {                                                          \
            double a = fabs((double)g[i * st[0]]);                                                 \
            if (isnan(a)) {                                                                        \
                c->nan = true;                                                                     \
            } else if (c->p == INFINITY) {                                                         \
                acc = a > acc ? a : acc;                                                           \
            } else if (c->p == -INFINITY) {                                                        \
                acc = a < acc ? a : acc;                                                           \
            } else if (c->p == 0) {                                                                \
                acc += a != 0;                                                                     \
            } else if (c->p == 1) {                                                                \
                acc += a;                                                                          \
            } else if (c->p == 2) {                                                                \
                acc += a * a;                                                                      \
            } else {                                                                               \
                acc += pow(a, c->p);                                                               \
            }                                                                                      \
        }                                                                                          \
        c->acc = acc;                                                                              \
    }                                                                                              \
                                                                                                   \
    static void scale_row_##SFX(struct kctx *c, int64_t n, char *const *ptr, const int64_t *st)    \
    {                                                                                              \
        T *g = (T *)ptr[0];                                                                        \
        const T k = (T)c->lo;                                                                      \
        for (int64_t i = 0; i < n; i++) {                                                          \
            g[i * st[0]] = g[i * st[0]] * k;                                                       \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    static void clamp_row_##SFX(struct kctx *c, int64_t n, char *const *ptr, const int64_t *st)    \
    {                                                                                              \
        T *g = (T *)ptr[0];                                                                        \
        const T lo = (T)c->lo, hi = (T)c->hi;                                                      \
        for (int64_t i = 0; i < n; i++) {                                                          \
            T x = g[i * st[0]];                                                                    \
            if (!isnan(x)) {                                                                       \
                x = x < lo ? lo : x;                                                               \
                x = x > hi ? hi : x;                                                               \
            }                                                                                      \
            g[i * st[0]] = x;                                                                      \
        }                                                                                          \
    }                                                                                              \
                                                                                                   \
    static void zero_row_##SFX(struct kctx *c, int64_t n, char *const *ptr, const int64_t *st)     \
    {                                                                                              \
        (void)c;                                                                                   \
        T *p = (T *)ptr[0];                                                                        \
        for (int64_t i = 0; i < n; i++) {                                                          \
            p[i * st[0]] = 0;                                                                      \
        }                                                                                          \
    }

KERNELS(float, sqrtf, f32)
KERNELS(double, sqrt, f64)

/* Walks nt tensors of one shape (t[0]'s) row by row, in chunks of TD_CANCEL_CHUNK elements. */
static int walk(struct kctx *c, row_fn *row, int nt, const struct td_tensor *const *t,
                struct td_err *err)
{
    const struct td_tensor *p = t[0];
    int64_t numel = p->numel;
    if (numel == 0) {
        return 0;
    }
    size_t es = td_dtype_size(p->dtype);
    bool contiguous = true;
    for (int k = 0; k < nt; k++) {
        contiguous = contiguous && td_tensor_is_contiguous(t[k]);
    }
    int nd = p->ndim;
    int64_t rowlen = contiguous || nd == 0 ? numel : p->shape[nd - 1];
    int outer = contiguous ? 0 : nd - 1; /* dims walked by the odometer */
    int64_t idx[TD_MAX_DIMS] = {0};
    int64_t st[WALK_MAX];
    char *base[WALK_MAX];
    for (int k = 0; k < nt; k++) {
        st[k] = contiguous || nd == 0 ? 1 : t[k]->strides[nd - 1];
        base[k] = td_tensor_data(t[k]);
    }
    int64_t rows = numel / rowlen;
    int rc;
    for (int64_t r = 0; r < rows; r++) {
        char *ptr[WALK_MAX];
        for (int k = 0; k < nt; k++) {
            int64_t off = 0;
            for (int d = 0; d < outer; d++) {
                off += idx[d] * t[k]->strides[d];
            }
            ptr[k] = base[k] + off * (int64_t)es;
        }
        for (int64_t i = 0; i < rowlen;) {
            int64_t end = td_cancel_chunk_end(i, rowlen);
            char *q[WALK_MAX];
            for (int k = 0; k < nt; k++) {
                q[k] = ptr[k] + i * st[k] * (int64_t)es;
            }
            row(c, end - i, q, st);
            i = end;
            if ((rc = td_cancel_check(err)) != 0) {
                return rc;
            }
        }
        for (int d = outer - 1; d >= 0; d--) {
            if (++idx[d] < p->shape[d]) {
                break;
            }
            idx[d] = 0;
        }
    }
    return 0;
}

/* step += 1 in the step tensor's dtype; returns the new value as Python's item() reads it. */
static double bump_step(struct td_tensor *s)
{
    void *e = td_tensor_data(s);
    td_elem_store_f64(e, s->dtype, td_elem_load_f64(e, s->dtype) + 1.0);
    s->storage->version++;
    return td_elem_load_f64(e, s->dtype);
}

int td_optim_update(enum td_optim_algo algo, const struct td_optim_hparams *h, struct td_tensor *p,
                    const struct td_tensor *g, struct td_tensor *const state[TD_OPTIM_SLOTS],
                    unsigned fresh, struct td_err *err)
{
    struct kctx c = {0};
    c.maximize = h->maximize;
    c.has_wd = h->weight_decay != 0;
    c.wd = h->weight_decay;
    c.eps = h->eps;
    c.neg_lr = -h->lr;
    c.adamw_decay = 1.0;
    const struct td_tensor *t[WALK_MAX] = {p, g};
    int nt = 2;
    bool f32 = p->dtype == TD_DTYPE_F32;
    row_fn *row = NULL;
    switch (algo) {
    case TD_OPTIM_SGD:
        c.has_momentum = h->momentum != 0;
        c.momentum = h->momentum;
        c.one_minus_damp = 1 - h->dampening;
        c.nesterov = h->nesterov;
        c.fresh_buf = (fresh & BIT(TD_OPTIM_MOMENTUM_BUFFER)) != 0;
        if (c.has_momentum) {
            t[nt++] = state[TD_OPTIM_MOMENTUM_BUFFER];
        }
        row = f32 ? sgd_row_f32 : sgd_row_f64;
        break;
    case TD_OPTIM_ADAM:
    case TD_OPTIM_ADAMW: {
        double step = bump_step(state[TD_OPTIM_STEP]);
        if (algo == TD_OPTIM_ADAMW) {
            c.adamw_decay = 1 - h->lr * h->weight_decay;
            c.has_wd = false;
        }
        c.beta1 = h->beta1;
        c.one_minus_b1 = 1 - h->beta1;
        c.beta2 = h->beta2;
        c.one_minus_b2 = 1 - h->beta2;
        c.amsgrad = h->amsgrad;
        double bc1 = 1 - pow(h->beta1, step), bc2 = 1 - pow(h->beta2, step);
        c.neg_step_size = -(h->lr / bc1);
        c.bc2_sqrt = sqrt(bc2);
        t[nt++] = state[TD_OPTIM_EXP_AVG];
        t[nt++] = state[TD_OPTIM_EXP_AVG_SQ];
        if (c.amsgrad) {
            t[nt++] = state[TD_OPTIM_MAX_EXP_AVG_SQ];
        }
        row = f32 ? adam_row_f32 : adam_row_f64;
        break;
    }
    case TD_OPTIM_RMSPROP:
        c.alpha = h->alpha;
        c.one_minus_alpha = 1 - h->alpha;
        c.has_momentum = h->momentum > 0;
        c.momentum = h->momentum;
        c.centered = h->centered;
        t[nt++] = state[TD_OPTIM_SQUARE_AVG];
        if (c.has_momentum) {
            t[nt++] = state[TD_OPTIM_MOMENTUM_BUFFER];
        }
        if (c.centered) {
            t[nt++] = state[TD_OPTIM_GRAD_AVG];
        }
        row = f32 ? rmsprop_row_f32 : rmsprop_row_f64;
        break;
    case TD_OPTIM_ADAGRAD: {
        double step = bump_step(state[TD_OPTIM_STEP]);
        c.neg_step_size = -(h->lr / (1 + (step - 1) * h->lr_decay));
        t[nt++] = state[TD_OPTIM_SUM];
        row = f32 ? adagrad_row_f32 : adagrad_row_f64;
        break;
    }
    default: return td_err_set(err, TD_EINVAL, "unknown optimizer algorithm %d", (int)algo);
    }
    /* Versions move first: a step stopped part way has written them all the same. */
    p->storage->version++;
    for (int k = 2; k < nt; k++) {
        t[k]->storage->version++;
    }
    return walk(&c, row, nt, t, err);
}

int td_optim_zero(struct td_tensor *g, struct td_err *err)
{
    if (!is_float(g->dtype)) {
        return td_err_set(err, TD_EDTYPE, "a gradient of dtype %s cannot be zeroed here",
                          td_dtype_name(g->dtype));
    }
    struct kctx c = {0};
    const struct td_tensor *t[1] = {g};
    g->storage->version++;
    return walk(&c, g->dtype == TD_DTYPE_F32 ? zero_row_f32 : zero_row_f64, 1, t, err);
}

/* The norm's final step from the accumulated sum (or max, min, count). */
static double norm_finish(double acc, double p, bool nan)
{
    if (nan) {
        return NAN;
    }
    if (p == INFINITY || p == -INFINITY || p == 0 || p == 1) {
        return acc;
    }
    return p == 2 ? sqrt(acc) : pow(acc, 1.0 / p);
}

static double norm_start(double p)
{
    return p == -INFINITY ? INFINITY : 0.0;
}

int td_optim_norm(const struct td_tensor *g, double p, double *out, struct td_err *err)
{
    if (!is_float(g->dtype)) {
        return td_err_set(err, TD_EDTYPE, "the norm of a %s gradient", td_dtype_name(g->dtype));
    }
    struct kctx c = {0};
    c.p = p;
    c.acc = norm_start(p);
    const struct td_tensor *t[1] = {g};
    int rc = walk(&c, g->dtype == TD_DTYPE_F32 ? norm_row_f32 : norm_row_f64, 1, t, err);
    if (rc != 0) {
        return rc;
    }
    double v = norm_finish(c.acc, p, c.nan);
    *out = g->dtype == TD_DTYPE_F32 ? (double)(float)v : v;
    return 0;
}

double td_optim_norm_of(const double *v, int64_t n, double p, bool f32)
{
    double acc = norm_start(p);
    bool nan = false;
    for (int64_t i = 0; i < n; i++) {
        double a = fabs(v[i]);
        if (isnan(a)) {
            nan = true;
        } else if (p == INFINITY) {
            acc = a > acc ? a : acc;
        } else if (p == -INFINITY) {
            acc = a < acc ? a : acc;
        } else if (p == 0) {
            acc += a != 0;
        } else if (p == 1) {
            acc += a;
        } else if (p == 2) {
            acc += a * a;
        } else {
            acc += pow(a, p);
        }
    }
    double r = norm_finish(acc, p, nan);
    return f32 ? (double)(float)r : r;
}

int td_optim_scale(struct td_tensor *g, double coef, struct td_err *err)
{
    if (!is_float(g->dtype)) {
        return td_err_set(err, TD_EDTYPE, "a %s gradient cannot be scaled here",
                          td_dtype_name(g->dtype));
    }
    struct kctx c = {0};
    c.lo = coef;
    const struct td_tensor *t[1] = {g};
    g->storage->version++;
    return walk(&c, g->dtype == TD_DTYPE_F32 ? scale_row_f32 : scale_row_f64, 1, t, err);
}

int td_optim_clamp(struct td_tensor *g, double lo, double hi, struct td_err *err)
{
    if (!is_float(g->dtype)) {
        return td_err_set(err, TD_EDTYPE, "a %s gradient cannot be clamped here",
                          td_dtype_name(g->dtype));
    }
    struct kctx c = {0};
    c.lo = lo;
    c.hi = hi;
    const struct td_tensor *t[1] = {g};
    g->storage->version++;
    return walk(&c, g->dtype == TD_DTYPE_F32 ? clamp_row_f32 : clamp_row_f64, 1, t, err);
}

int td_optim_clip_grad_norm(struct td_tensor *const *g, int64_t n, double max_norm, double p,
                            bool error_if_nonfinite, double *total, bool *f32, struct td_err *err)
{
    int64_t bytes;
    if (n <= 0 || !td_mul_i64(n, (int64_t)sizeof(double), &bytes)) {
        return td_err_set(err, TD_EINVAL, "clip_grad_norm_ needs 1 to 2^60 gradients");
    }
    double *norms = td_malloc((size_t)bytes);
    if (norms == NULL) {
        return td_err_code(err, TD_ENOMEM);
    }
    bool all32 = true;
    int rc = 0;
    for (int64_t i = 0; i < n && rc == 0; i++) {
        all32 = all32 && g[i]->dtype == TD_DTYPE_F32;
        rc = td_optim_norm(g[i], p, &norms[i], err);
    }
    double t = rc == 0 ? td_optim_norm_of(norms, n, p, all32) : 0;
    td_free(norms);
    if (rc != 0) {
        return rc;
    }
    *total = t;
    *f32 = all32;
    if (error_if_nonfinite && !isfinite(t)) {
        char b[40];
        return td_err_set(err, TD_EINVAL,
                          "The total norm of order %s for gradients from `parameters` is "
                          "non-finite, so it cannot be clipped. To disable this error and scale "
                          "the gradients by the non-finite norm anyway, set "
                          "`error_if_nonfinite=False`",
                          pyfloat(b, sizeof b, p));
    }
    double coef;
    if (all32) {
        float c = (float)max_norm / ((float)t + (float)1e-6);
        coef = c > 1.0f ? 1.0 : (double)c; /* clamp(max=1.0); NaN stays NaN */
    } else {
        double c = max_norm / (t + 1e-6);
        coef = c > 1.0 ? 1.0 : c;
    }
    for (int64_t i = 0; i < n && rc == 0; i++) {
        rc = td_optim_scale(g[i], coef, err);
    }
    return rc;
}
