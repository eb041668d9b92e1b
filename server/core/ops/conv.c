/* server/core/ops/conv.c — nn convolution and pooling: conv1d, conv2d, max_pool2d, avg_pool2d,
** adaptive_avg_pool2d, their backward kernels (internal ops the backward rules run) and their
** cost rules.
**
** Everything is 2-D inside: conv1d is conv2d over a height of 1. Convolution is im2col + GEMM
** (cblas_sgemm for float32, cblas_dgemm for the rest, computed in double and cast back), one
** sample and group at a time, with a cancel check after each; the column buffer and the
** operands' contiguous copies are tensors charged to the op's quota. Unbatched inputs (no N
** dim) run as a batch of one. The pools walk each plane's windows the same way (float32 in
** float32, the rest in double), checking the cancel per chunk of windows read. Errors are torch
** 1.13's texts, in its order of checks; the cost rules count logical sizes (an expanded input
** costs its full size) and are safe before validation (they run the same geometry checks).
*/
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../../base/checked.h"
#include "../cancel.h"
#include "family.h"

/* ---- geometry ---- */

/* One 2-D window walk: input H x W, kernel kh x kw, strides, dilations, the top / left padding
** and the output size (conv's 'same' may pad one more at the bottom / right). */
struct geom {
    int nsp;      /* spatial dims as given: 1 or 2 */
    bool batched; /* the input had its N dim */
    int64_t n, c; /* batch, input channels */
    int64_t h, w; /* input spatial size (h 1 for 1-D) */
    int64_t co;   /* conv: output channels */
    int64_t g;    /* conv: groups */
    int64_t kh, kw, sh, sw, dh, dw, ph, pw, ho, wo;
};

static char *shape_str(char *buf, size_t cap, const int64_t *s, int n)
{
    return td_shape_str(buf, cap, s, n);
}

/* One of conv's lists for nsp spatial dims: empty is dflt, one value stands for each.
** Fills out[0..1] as (h, w). Returns -1 (with torch's text) for another count. */
static int conv_list(const int64_t *v, int n, int nsp, int64_t dflt, const char *name, int64_t *out,
                     struct td_err *err)
{
    if (n != 0 && n != 1 && n != nsp) {
        char buf[160];
        int len = snprintf(buf, sizeof buf, "[");
        for (int i = 0; i < n && len < (int)sizeof buf - 24; i++) {
            len += snprintf(buf + len, sizeof buf - (size_t)len, "%s%lld", i ? ", " : "",
                            (long long)v[i]);
        }
        snprintf(buf + len, sizeof buf - (size_t)len, "]");
        return td_err_set(err, TD_EINVAL,
                          "expected %s to be a single integer value or a list of %d values to "
                          "match the convolution dimensions, but got %s=%s",
                          name, nsp, name, buf);
    }
    int64_t a = n == 0 ? dflt : v[0];
    int64_t b = n == 0 ? dflt : v[n - 1];
    out[0] = nsp == 1 ? (name[0] == 'p' ? 0 : 1) : a;
    out[1] = b;
    return 0;
}

static const char *cname_lower(enum td_dtype dt)
{
    static const char *const n[TD_DTYPE_COUNT] = {"bool", "int", "long", "float", "double"};
    return td_dtype_is_valid((int)dt) ? n[dt] : "?";
}

/* conv's checks, in torch's order, from the input's shape (xs, xn dims), the weight's and
** whether a bias of shape bs/bn is given; fills g. op: TD_OP_CONV1D or TD_OP_CONV2D. */
static int conv_geom(int op, const int64_t *xs, int xn, const int64_t *ws, int wn,
                     const struct td_tensor *b, const struct td_op_args *a, struct geom *g,
                     struct td_err *err)
{
    int nsp = op == TD_OP_CONV1D ? 1 : 2;
    char s1[128], s2[128];
    if (xn != nsp + 1 && xn != nsp + 2) {
        return td_err_set(err, TD_ESHAPE,
                          "Expected %dD (unbatched) or %dD (batched) input to conv%dd, but got "
                          "input of size: %s",
                          nsp + 1, nsp + 2, nsp, shape_str(s1, sizeof s1, xs, xn));
    }
    int64_t bx[TD_MAX_DIMS];
    int bn = 0;
    g->batched = xn == nsp + 2;
    if (!g->batched) {
        bx[bn++] = 1;
    }
    for (int i = 0; i < xn; i++) {
        bx[bn++] = xs[i];
    }
    if (a->padding_mode == TD_PAD_SAME) {
        for (int i = 0; i < a->nstride; i++) {
            if (a->stride[i] != 1) {
                return td_err_set(err, TD_EINVAL,
                                  "padding='same' is not supported for strided convolutions");
            }
        }
    }
    int dim = wn - 2;
    if (dim <= 0) {
        return td_err_set(err, TD_ESHAPE, "weight should have at least three dimensions");
    }
    int64_t st[2], pd[2], dl[2];
    if (conv_list(a->stride, a->nstride, dim, 1, "stride", st, err) != 0 ||
        conv_list(a->padding, a->npadding, dim, 0, "padding", pd, err) != 0 ||
        conv_list(a->dilation, a->ndilation, dim, 1, "dilation", dl, err) != 0) {
        return -1;
    }
    if (dim != nsp || bn != dim + 2) {
        return td_err_set(err, TD_ESHAPE,
                          "Expected %d-dimensional input for %d-dimensional weight %s, but got "
                          "%d-dimensional input of size %s instead",
                          wn, wn, shape_str(s1, sizeof s1, ws, wn), bn,
                          shape_str(s2, sizeof s2, bx, bn));
    }
    if (a->padding_mode == TD_PAD_LIST && (pd[0] < 0 || pd[1] < 0)) {
        return td_err_set(err, TD_EINVAL, "negative padding is not supported");
    }
    if (st[0] <= 0 || st[1] <= 0) {
        return td_err_set(err, TD_EINVAL, "non-positive stride is not supported");
    }
    if (dl[0] <= 0 || dl[1] <= 0) {
        int64_t shown[TD_MAX_DIMS];
        for (int i = 0; i < dim; i++) {
            shown[i] = a->ndilation == 0 ? 1 : a->dilation[a->ndilation == 1 ? 0 : i];
        }
        return td_err_set(err, TD_EINVAL, "dilation should be greater than zero, but got %s",
                          shape_str(s1, sizeof s1, shown, dim));
    }
    int64_t groups = a->groups == 0 ? 1 : a->groups;
    if (groups <= 0) {
        return td_err_set(err, TD_EINVAL, "non-positive groups is not supported");
    }
    if (ws[0] % groups != 0) {
        return td_err_set(err, TD_ESHAPE,
                          "Given groups=%lld, expected weight to be divisible by %lld at "
                          "dimension 0, but got weight of size [%s] instead",
                          (long long)groups, (long long)groups, shape_str(s1, sizeof s1, ws, wn));
    }
    int64_t cin;
    if (!td_mul_i64(ws[1], groups, &cin) || bx[1] != cin) {
        return td_err_set(err, TD_ESHAPE,
                          "Given groups=%lld, weight of size %s, expected input%s to have %lld "
                          "channels, but got %lld channels instead",
                          (long long)groups, shape_str(s1, sizeof s1, ws, wn),
                          shape_str(s2, sizeof s2, bx, bn), (long long)cin, (long long)bx[1]);
    }
    if (b != NULL && (b->ndim != 1 || b->shape[0] != ws[0])) {
        return td_err_set(err, TD_ESHAPE,
                          "Given weight of size %s, expected bias to be 1-dimensional with %lld "
                          "elements, but got bias of size %s instead",
                          shape_str(s1, sizeof s1, ws, wn), (long long)ws[0],
                          shape_str(s2, sizeof s2, b->shape, b->ndim));
    }
    g->nsp = nsp;
    g->n = bx[0];
    g->c = bx[1];
    g->h = nsp == 1 ? 1 : bx[2];
    g->w = bx[bn - 1];
    g->co = ws[0];
    g->g = groups;
    g->kh = nsp == 1 ? 1 : ws[2];
    g->kw = ws[wn - 1];
    g->sh = st[0], g->sw = st[1], g->dh = dl[0], g->dw = dl[1];
    /* effective kernel extents (checked: huge dilations must not overflow) */
    int64_t eh, ew;
    if (!td_mul_i64(g->dh, g->kh - 1, &eh) || !td_mul_i64(g->dw, g->kw - 1, &ew) ||
        eh > INT64_MAX / 4 || ew > INT64_MAX / 4) {
        return td_err_set(err, TD_ELIMIT, "convolution: the dilated kernel is too large");
    }
    eh += 1, ew += 1;
    if (a->padding_mode == TD_PAD_SAME) {
        g->ph = (eh - 1) / 2, g->pw = (ew - 1) / 2;
    } else if (a->padding_mode == TD_PAD_VALID) {
        g->ph = g->pw = 0;
    } else {
        g->ph = pd[0], g->pw = pd[1];
    }
    if (g->ph > INT64_MAX / 4 || g->pw > INT64_MAX / 4 || g->h > INT64_MAX / 4 ||
        g->w > INT64_MAX / 4) {
        return td_err_set(err, TD_ELIMIT, "convolution: the padding is too large");
    }
    int64_t ih = g->h + 2 * g->ph, iw = g->w + 2 * g->pw;
    if (a->padding_mode == TD_PAD_SAME) {
        ih = g->h + eh - 1, iw = g->w + ew - 1;
    }
    if (ih < eh || iw < ew) {
        int64_t ps[2] = {ih, iw}, ks[2] = {eh, ew};
        char p1[64] = "", k1[64] = "";
        if (nsp == 1) {
            snprintf(p1, sizeof p1, "(%lld)", (long long)ps[1]);
            snprintf(k1, sizeof k1, "(%lld)", (long long)ks[1]);
        } else {
            snprintf(p1, sizeof p1, "(%lld x %lld)", (long long)ps[0], (long long)ps[1]);
            snprintf(k1, sizeof k1, "(%lld x %lld)", (long long)ks[0], (long long)ks[1]);
        }
        return td_err_set(err, TD_ESHAPE,
                          "Calculated padded input size per channel: %s. Kernel size: %s. Kernel "
                          "size can't be greater than actual input size",
                          p1, k1);
    }
    g->ho = (ih - eh) / g->sh + 1;
    g->wo = (iw - ew) / g->sw + 1;
    return 0;
}

/* ---- im2col / col2im, in float and in double ---- */

#define TD_CONV_KERNELS(T, SUF)                                                                    \
    /* col[(c*kh + i)*kw + j][oh*wo + ow] = x[c][oh*sh - ph + i*dh][ow*sw - pw + j*dw] */          \
    static void im2col_##SUF(const T *x, int64_t c, const struct geom *g, T *col)                  \
    {                                                                                              \
        int64_t hw = g->ho * g->wo;                                                                \
        for (int64_t ch = 0; ch < c; ch++) {                                                       \
            for (int64_t i = 0; i < g->kh; i++) {                                                  \
                for (int64_t j = 0; j < g->kw; j++) {                                              \
                    T *row = col + ((ch * g->kh + i) * g->kw + j) * hw;                            \
                    for (int64_t oh = 0; oh < g->ho; oh++) {                                       \
                        int64_t ih = oh * g->sh - g->ph + i * g->dh;                               \
                        T *r = row + oh * g->wo;                                                   \
                        if (ih < 0 || ih >= g->h) {                                                \
                            memset(r, 0, sizeof(T) * (size_t)g->wo);                               \
                            continue;                                                              \
                        }                                                                          \
                        const T *xr = x + (ch * g->h + ih) * g->w;                                 \
                        for (int64_t ow = 0; ow < g->wo; ow++) {                                   \
                            int64_t iw = ow * g->sw - g->pw + j * g->dw;                           \
                            r[ow] = iw < 0 || iw >= g->w ? (T)0 : xr[iw];                          \
                        }                                                                          \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
    static void col2im_##SUF(const T *col, int64_t c, const struct geom *g, T *x)                  \
    {                                                                                              \
        int64_t hw = g->ho * g->wo;                                                                \
        for (int64_t ch = 0; ch < c; ch++) {                                                       \
            for (int64_t i = 0; i < g->kh; i++) {                                                  \
                for (int64_t j = 0; j < g->kw; j++) {                                              \
                    const T *row = col + ((ch * g->kh + i) * g->kw + j) * hw;                      \
                    for (int64_t oh = 0; oh < g->ho; oh++) {                                       \
                        int64_t ih = oh * g->sh - g->ph + i * g->dh;                               \
                        if (ih < 0 || ih >= g->h) {                                                \
                            continue;                                                              \
                        }                                                                          \
                        T *xr = x + (ch * g->h + ih) * g->w;                                       \
                        const T *r = row + oh * g->wo;                                             \
                        for (int64_t ow = 0; ow < g->wo; ow++) {                                   \
                            int64_t iw = ow * g->sw - g->pw + j * g->dw;                           \
                            if (iw >= 0 && iw < g->w) {                                            \
                                xr[iw] += r[ow];                                                   \
                            }                                                                      \
                        }                                                                          \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

TD_CONV_KERNELS(float, f)
TD_CONV_KERNELS(double, d)

static void gemm(bool f32, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const void *a,
                 int64_t lda, const void *b, int64_t ldb, double beta, void *c, int64_t ldc)
{
    if (m == 0 || n == 0) {
        return;
    }
    if (f32) {
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    (int)m, (int)n, (int)k, 1.0f, a, (int)lda, b, (int)ldb, (float)beta, c,
                    (int)ldc);
    } else {
        cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    (int)m, (int)n, (int)k, 1.0, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
    }
}

/* A contiguous copy of t in dtype dt (a new tensor charged to q), or a new reference to t when
** it already is one. */
static int contig(struct td_tensor *t, enum td_dtype dt, struct td_quota *q, struct td_tensor **out,
                  struct td_err *err)
{
    if (t->dtype == dt && td_tensor_is_contiguous(t)) {
        *out = td_tensor_ref(t);
        return 0;
    }
    int rc = td_tensor_empty(out, dt, t->shape, t->ndim, q, err);
    if (rc == 0 && (rc = td_cast_copy(*out, t, err)) != 0) {
        td_tensor_unref(*out);
        *out = NULL;
    }
    return rc;
}

/* The result: `res` (computed in dtype of buf) cast into a new tensor of dtype dt, or res. */
static int finish_as(struct td_tensor *res, enum td_dtype dt, const int64_t *shape, int ndim,
                     struct td_quota *q, struct td_tensor **out, struct td_err *err)
{
    struct td_tensor *r = NULL;
    int rc = td_tensor_empty(&r, dt, shape, ndim, q, err);
    if (rc == 0) {
        struct td_tensor view = *res; /* same elements, the result's shape */
        view.ndim = ndim;
        int64_t st = 1;
        for (int d = ndim - 1; d >= 0; d--) {
            view.shape[d] = shape[d];
            view.strides[d] = st;
            st *= shape[d] > 0 ? shape[d] : 1;
        }
        rc = td_cast_copy(r, &view, err);
    }
    if (rc != 0) {
        td_tensor_unref(r);
        return rc;
    }
    *out = r;
    return 0;
}

static enum td_dtype compute_of(enum td_dtype dt)
{
    return dt == TD_DTYPE_F32 ? TD_DTYPE_F32 : TD_DTYPE_F64;
}

/* The direction one conv kernel runs: forward (out = W * x), the input's gradient
** (gx = W^T * g) or the weight's (gw = g * x^T). */
enum conv_dir { CONV_FWD, CONV_BWD_INPUT, CONV_BWD_WEIGHT };

/* Runs one conv direction over contiguous compute-dtype buffers: x [N, C, H, W], w [Co, C/G, kh,
** kw], y [N, Co, Ho, Wo]; writes y (FWD), x (BWD_INPUT, zeroed first) or w (BWD_WEIGHT). */
static int conv_run(enum conv_dir dir, const struct geom *g, bool f32, char *x, char *w, char *y,
                    struct td_quota *q, struct td_err *err)
{
    size_t es = f32 ? sizeof(float) : sizeof(double);
    int64_t cg = g->c / g->g, cog = g->co / g->g;
    int64_t k = cg * g->kh * g->kw, hw = g->ho * g->wo;
    int64_t cs[2] = {k, hw};
    if (k > INT32_MAX || hw > INT32_MAX || cog > INT32_MAX) {
        return td_err_set(err, TD_ELIMIT, "convolution: a matrix side above 2^31 is not supported");
    }
    struct td_tensor *colt = NULL;
    int rc = td_tensor_empty(&colt, f32 ? TD_DTYPE_F32 : TD_DTYPE_F64, cs, 2, q, err);
    if (rc != 0) {
        return rc;
    }
    char *col = td_tensor_data(colt);
    int64_t xplane = g->c * g->h * g->w, yplane = g->co * hw;
    if (dir == CONV_BWD_INPUT) {
        memset(x, 0, (size_t)(g->n * xplane) * es);
    }
    if (dir == CONV_BWD_WEIGHT) {
        memset(w, 0, (size_t)(g->co * k) * es);
    }
    for (int64_t n = 0; n < g->n && rc == 0; n++) {
        for (int64_t gi = 0; gi < g->g && rc == 0; gi++) {
            char *xs = x + (size_t)(n * xplane + gi * cg * g->h * g->w) * es;
            char *ws = w + (size_t)(gi * cog * k) * es;
            char *ys = y + (size_t)(n * yplane + gi * cog * hw) * es;
            if (dir == CONV_BWD_INPUT) {
                gemm(f32, true, false, k, hw, cog, ws, k, ys, hw, 0.0, col, hw);
                if (f32) {
                    col2im_f((float *)col, cg, g, (float *)xs);
                } else {
                    col2im_d((double *)col, cg, g, (double *)xs);
                }
            } else {
                if (f32) {
                    im2col_f((const float *)xs, cg, g, (float *)col);
                } else {
                    im2col_d((const double *)xs, cg, g, (double *)col);
                }
                if (dir == CONV_FWD) {
                    gemm(f32, false, false, cog, hw, k, ws, k, col, hw, 0.0, ys, hw);
                } else {
                    gemm(f32, false, true, cog, k, hw, ys, hw, col, hw, 1.0, ws, k);
                }
            }
            rc = td_cancel_check(err);
        }
    }
    td_tensor_unref(colt);
    return rc;
}

static int need_tensor(const struct td_operand *in, int i, const char *fn, const char *name,
                       struct td_err *err)
{
    if (in[i].t == NULL) {
        return td_err_set(err, TD_EINVAL, "%s(): argument '%s' must be Tensor, not a number", fn,
                          name);
    }
    return 0;
}

/* conv1d / conv2d (input, weight[, bias]) */
int td_make_conv(struct td_tensor **out, const struct td_operand *in, int nin,
                 const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    const char *fn = a->op == TD_OP_CONV1D ? "conv1d" : "conv2d";
    if (nin < 2 || nin > 3) {
        return td_err_set(err, TD_EINVAL,
                          "%s(input, weight, bias=None, ...) takes 2 or 3 tensors, got %d", fn,
                          nin);
    }
    for (int i = 0; i < nin; i++) {
        if (need_tensor(in, i, fn, i == 0 ? "input" : i == 1 ? "weight" : "bias", err) != 0) {
            return -1;
        }
    }
    struct td_tensor *x = in[0].t, *w = in[1].t, *b = nin == 3 ? in[2].t : NULL;
    struct geom g;
    int rc;
    if (x->ndim == (a->op == TD_OP_CONV1D ? 2 : 3) || x->ndim == (a->op == TD_OP_CONV1D ? 3 : 4)) {
        if (b != NULL && b->dtype != x->dtype) {
            return td_err_set(err, TD_EDTYPE,
                              "Input type (%s) and bias type (%s) should be the same",
                              cname_lower(x->dtype), cname_lower(b->dtype));
        }
    }
    if ((rc = conv_geom(a->op, x->shape, x->ndim, w->shape, w->ndim, b, a, &g, err)) != 0) {
        return rc;
    }
    if (w->dtype != x->dtype) {
        return td_err_set(err, TD_EDTYPE, "expected scalar type %s but found %s",
                          td_dtype_cname(x->dtype), td_dtype_cname(w->dtype));
    }
    if (x->dtype == TD_DTYPE_BOOL) {
        return td_err_set(err, TD_EDTYPE, "\"slow_conv2d_cpu\" not implemented for 'Bool'");
    }
    enum td_dtype cd = compute_of(x->dtype);
    bool f32 = cd == TD_DTYPE_F32;
    int64_t ys[4] = {g.n, g.co, g.ho, g.wo};
    struct td_tensor *xc = NULL, *wc = NULL, *y = NULL;
    if ((rc = contig(x, cd, q, &xc, err)) == 0 && (rc = contig(w, cd, q, &wc, err)) == 0 &&
        (rc = td_tensor_empty(&y, cd, ys, 4, q, err)) == 0) {
        rc = conv_run(CONV_FWD, &g, f32, td_tensor_data(xc), td_tensor_data(wc), td_tensor_data(y),
                      q, err);
    }
    if (rc == 0 && b != NULL) {
        struct td_tensor *bc = NULL;
        if ((rc = contig(b, cd, q, &bc, err)) == 0) {
            int64_t hw = g.ho * g.wo;
            char *yd = td_tensor_data(y), *bd = td_tensor_data(bc);
            for (int64_t n = 0; n < g.n; n++) {
                for (int64_t c = 0; c < g.co; c++) {
                    if (f32) {
                        float *r = (float *)yd + (n * g.co + c) * hw, v = ((float *)bd)[c];
                        for (int64_t i = 0; i < hw; i++) {
                            r[i] += v;
                        }
                    } else {
                        double *r = (double *)yd + (n * g.co + c) * hw, v = ((double *)bd)[c];
                        for (int64_t i = 0; i < hw; i++) {
                            r[i] += v;
                        }
                    }
                }
            }
            td_tensor_unref(bc);
        }
    }
    td_tensor_unref(xc);
    td_tensor_unref(wc);
    if (rc == 0) {
        int64_t os[4];
        int on = 0;
        if (g.batched) {
            os[on++] = g.n;
        }
        os[on++] = g.co;
        if (g.nsp == 2) {
            os[on++] = g.ho;
        }
        os[on++] = g.wo;
        if (cd == x->dtype) {
            struct td_tensor *r = NULL;
            struct td_op_args ra;
            td_op_args_init(&ra);
            ra.has_dims = true;
            ra.ndims = on;
            memcpy(ra.dims, os, sizeof(int64_t) * (size_t)on);
            rc = td_bw1(TD_OP_RESHAPE, td_t(y), &ra, q, &r, err);
            if (rc == 0) {
                *out = r;
            }
        } else {
            rc = finish_as(y, x->dtype, os, on, q, out, err);
        }
    }
    td_tensor_unref(y);
    return rc;
}

/* convolution_backward_input (g, weight; dims: input shape) and _weight (g, input; dims: weight
** shape), a->op telling which; the conv's own args, a->dim the conv's op (1 or 2 spatial dims is
** read from the weight's rank). */
int td_make_conv_backward(struct td_tensor **out, const struct td_operand *in, int nin,
                          const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    bool for_input = a->op == TD_OP_CONVOLUTION_BACKWARD_INPUT;
    const char *fn = for_input ? "convolution_backward_input" : "convolution_backward_weight";
    if (nin != 2 || need_tensor(in, 0, fn, "grad", err) != 0 ||
        need_tensor(in, 1, fn, for_input ? "weight" : "input", err) != 0) {
        return nin != 2 ? td_err_set(err, TD_EINVAL, "%s takes 2 tensors", fn) : -1;
    }
    struct td_tensor *gy = in[0].t, *other = in[1].t;
    if (!td_dtype_is_float(gy->dtype) || other->dtype != gy->dtype) {
        return td_err_set(err, TD_EDTYPE, "%s: expected float tensors of one dtype", fn);
    }
    const int64_t *xs = for_input ? a->dims : other->shape;
    int xn = for_input ? a->ndims : other->ndim;
    const int64_t *ws = for_input ? other->shape : a->dims;
    int wn = for_input ? other->ndim : a->ndims;
    if (wn < 3 || wn > 4) {
        return td_err_set(err, TD_ESHAPE, "%s: the weight must have 3 or 4 dims", fn);
    }
    struct geom g;
    int rc = conv_geom(wn == 3 ? TD_OP_CONV1D : TD_OP_CONV2D, xs, xn, ws, wn, NULL, a, &g, err);
    if (rc != 0) {
        return rc;
    }
    int64_t want = (g.batched ? g.n : 1) * g.co * g.ho * g.wo;
    if (gy->numel != want) {
        return td_err_set(err, TD_ESHAPE, "%s: the gradient has %lld elements, expected %lld", fn,
                          (long long)gy->numel, (long long)want);
    }
    enum td_dtype cd = gy->dtype;
    bool f32 = cd == TD_DTYPE_F32;
    struct td_tensor *gc = NULL, *oc = NULL, *r = NULL;
    if ((rc = contig(gy, cd, q, &gc, err)) == 0 && (rc = contig(other, cd, q, &oc, err)) == 0 &&
        (rc = td_tensor_empty(&r, cd, xs == a->dims ? a->dims : ws, for_input ? xn : wn, q, err)) ==
            0) {
        if (for_input) {
            rc = conv_run(CONV_BWD_INPUT, &g, f32, td_tensor_data(r), td_tensor_data(oc),
                          td_tensor_data(gc), q, err);
        } else {
            rc = conv_run(CONV_BWD_WEIGHT, &g, f32, td_tensor_data(oc), td_tensor_data(r),
                          td_tensor_data(gc), q, err);
        }
    }
    td_tensor_unref(gc);
    td_tensor_unref(oc);
    if (rc != 0) {
        td_tensor_unref(r);
        return rc;
    }
    *out = r;
    return 0;
}

/* Unbatched convolutions: torch unsqueezes, convolves and squeezes, so the result's grad_fn is
** the squeeze's. */
const char *td_grad_fn_conv(const struct td_node *n)
{
    int nsp = n->op == TD_OP_CONV1D ? 1 : 2;
    const struct td_tensor *x = n->in[0].t;
    return x != NULL && x->ndim == nsp + 1 ? "SqueezeBackward1" : "ConvolutionBackward0";
}

static void copy_conv_args(struct td_op_args *d, const struct td_op_args *s)
{
    td_op_args_init(d);
    memcpy(d->stride, s->stride, sizeof d->stride);
    memcpy(d->padding, s->padding, sizeof d->padding);
    memcpy(d->dilation, s->dilation, sizeof d->dilation);
    memcpy(d->kernel_size, s->kernel_size, sizeof d->kernel_size);
    memcpy(d->output_size, s->output_size, sizeof d->output_size);
    d->nstride = s->nstride, d->npadding = s->npadding, d->ndilation = s->ndilation;
    d->nkernel_size = s->nkernel_size, d->noutput_size = s->noutput_size;
    d->groups = s->groups;
    d->padding_mode = s->padding_mode;
    d->ceil_mode = s->ceil_mode;
    d->count_include_pad = s->count_include_pad;
    d->divisor_override = s->divisor_override;
}

/* conv: dx = conv_backward_input(g, W), dW = conv_backward_weight(g, x), db = g summed over
** every dim but the channels. */
int td_bw_conv(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
               struct td_quota *q, struct td_err *err)
{
    struct td_tensor *x = n->in[0].t, *w = n->in[1].t;
    struct td_op_args ca;
    int rc = 0;
    copy_conv_args(&ca, &n->args);
    struct td_operand ops[2];
    if (x->requires_grad) {
        ca.has_dims = true;
        ca.ndims = x->ndim;
        memcpy(ca.dims, x->shape, sizeof(int64_t) * (size_t)x->ndim);
        ops[0] = td_t(g), ops[1] = td_t(w);
        rc = td_op_apply(TD_OP_CONVOLUTION_BACKWARD_INPUT, ops, 2, &ca, false, q, &gin[0], err);
    }
    if (rc == 0 && w->requires_grad) {
        ca.has_dims = true;
        ca.ndims = w->ndim;
        memcpy(ca.dims, w->shape, sizeof(int64_t) * (size_t)w->ndim);
        ops[0] = td_t(g), ops[1] = td_t(x);
        rc = td_op_apply(TD_OP_CONVOLUTION_BACKWARD_WEIGHT, ops, 2, &ca, false, q, &gin[1], err);
    }
    if (rc == 0 && n->nin == 3 && n->in[2].t->requires_grad) {
        struct td_op_args sa;
        td_op_args_init(&sa);
        sa.has_dims = true;
        int nsp = n->op == TD_OP_CONV1D ? 1 : 2;
        bool batched = g->ndim == nsp + 2;
        int cdim = batched ? 1 : 0;
        for (int d = 0; d < g->ndim; d++) {
            if (d != cdim) {
                sa.dims[sa.ndims++] = d;
            }
        }
        rc = td_bw1(TD_OP_SUM, td_t(g), &sa, q, &gin[2], err);
    }
    return rc;
}

/* ---- pooling ---- */

static const char *pool_name(int op)
{
    switch (op) {
    case TD_OP_MAX_POOL2D:
    case TD_OP_MAX_POOL2D_BACKWARD: return "max_pool2d";
    case TD_OP_AVG_POOL2D:
    case TD_OP_AVG_POOL2D_BACKWARD: return "avg_pool2d";
    default: return "adaptive_avg_pool2d";
    }
}

static bool is_max(int op)
{
    return op == TD_OP_MAX_POOL2D || op == TD_OP_MAX_POOL2D_BACKWARD;
}

static bool is_adaptive(int op)
{
    return op == TD_OP_ADAPTIVE_AVG_POOL2D || op == TD_OP_ADAPTIVE_AVG_POOL2D_BACKWARD;
}

/* pooling_output_shape: torch's output size of one dim */
static int64_t pool_out(int64_t in, int64_t k, int64_t pad, int64_t stride, int64_t dil, bool ceil)
{
    int64_t num = in + 2 * pad - dil * (k - 1) - 1 + (ceil ? stride - 1 : 0);
    int64_t o = (num >= 0 ? num / stride : -((-num + stride - 1) / stride)) + 1;
    if (ceil && (o - 1) * stride >= in + pad) {
        o--;
    }
    return o;
}

/* The pools' checks in torch's order, from the input x; fills g (g->c: the planes' channel
** count, g->n the batch). */
static int pool_geom(int op, const struct td_tensor *x, const struct td_op_args *a, struct geom *g,
                     struct td_err *err)
{
    const char *fn = pool_name(op);
    char s1[128];
    memset(g, 0, sizeof *g);
    if (is_adaptive(op)) {
        if (a->noutput_size != 2 && a->noutput_size != 1) {
            return td_err_set(err, TD_EINVAL, "adaptive_avg_pool2d: output_size must be 2");
        }
        int64_t oh = a->output_size[0], ow = a->output_size[a->noutput_size - 1];
        if (x->ndim != 3 && x->ndim != 4) {
            return td_err_set(err, TD_ESHAPE,
                              "adaptive_avg_pool2d(): Expected 3D or 4D tensor, but got %s",
                              shape_str(s1, sizeof s1, x->shape, x->ndim));
        }
        oh = oh == -1 ? x->shape[x->ndim - 2] : oh;
        ow = ow == -1 ? x->shape[x->ndim - 1] : ow;
        if (oh < 0 || ow < 0) {
            return td_err_set(err, TD_EINVAL,
                              "adaptive_avg_pool2d: elements of output_size must be greater than "
                              "or equal to 0 but received {%lld, %lld}",
                              (long long)oh, (long long)ow);
        }
        for (int d = x->ndim - 2; d < x->ndim; d++) {
            if (x->shape[d] == 0) {
                return td_err_set(err, TD_ESHAPE,
                                  "adaptive_avg_pool2d(): Expected input to have non-zero size for "
                                  "non-batch dimensions, but input has sizes %s with dimension %d "
                                  "being empty",
                                  shape_str(s1, sizeof s1, x->shape, x->ndim), d);
            }
        }
        if (x->dtype != TD_DTYPE_F32 && x->dtype != TD_DTYPE_F64) {
            return td_err_set(err, TD_EDTYPE, "\"adaptive_avg_pool2d\" not implemented for '%s'",
                              td_dtype_cname(x->dtype));
        }
        g->ho = oh, g->wo = ow;
    } else {
        bool mx = is_max(op);
        if (a->nkernel_size != 1 && a->nkernel_size != 2) {
            return td_err_set(err, TD_EINVAL,
                              "%s: kernel_size must either be a single int, or a tuple of two ints",
                              fn);
        }
        if (a->nstride != 0 && a->nstride != 1 && a->nstride != 2) {
            return td_err_set(err, TD_EINVAL,
                              "%s: stride must either be omitted, a single int, or a tuple of two "
                              "ints",
                              fn);
        }
        if (a->npadding != 0 && a->npadding != 1 && a->npadding != 2) {
            return td_err_set(err, TD_EINVAL,
                              "%s: padding must %sbe a single int, or a tuple of two ints", fn,
                              mx ? "be either " : "either ");
        }
        if (mx && a->ndilation != 0 && a->ndilation != 1 && a->ndilation != 2) {
            return td_err_set(err, TD_EINVAL,
                              "max_pool2d: dilation must be either a single int, or a tuple of two "
                              "ints");
        }
        g->kh = a->kernel_size[0], g->kw = a->kernel_size[a->nkernel_size - 1];
        g->sh = a->nstride == 0 ? g->kh : a->stride[0];
        g->sw = a->nstride == 0 ? g->kw : a->stride[a->nstride - 1];
        g->ph = a->npadding == 0 ? 0 : a->padding[0];
        g->pw = a->npadding == 0 ? 0 : a->padding[a->npadding - 1];
        g->dh = !mx || a->ndilation == 0 ? 1 : a->dilation[0];
        g->dw = !mx || a->ndilation == 0 ? 1 : a->dilation[a->ndilation - 1];
        if (x->ndim != 3 && x->ndim != 4) {
            if (mx) {
                return td_err_set(err, TD_ESHAPE,
                                  "non-empty 3D or 4D (batch mode) tensor expected for input");
            }
            if (x->ndim < 3) {
                return td_err_set(err, TD_EINVAL,
                                  "Dimension out of range (expected to be in range of [%d, %d], "
                                  "but got -3)",
                                  x->ndim == 0 ? -1 : -x->ndim, x->ndim == 0 ? 0 : x->ndim - 1);
            }
            return td_err_set(err, TD_ESHAPE,
                              "Expected 3D or 4D (batch mode) tensor with optional 0 dim batch "
                              "size for input, but got:%s",
                              shape_str(s1, sizeof s1, x->shape, x->ndim));
        }
        /* huge values would overflow the output-size arithmetic: refused first */
        const int64_t big = (int64_t)1 << 30; /* products of two stay below 2^60 */
        if (g->kh > big || g->kw > big || g->sh > big || g->sw > big || g->ph > big ||
            g->pw > big || g->dh > big || g->dw > big || g->kh < -big || g->kw < -big ||
            g->sh < -big || g->sw < -big || g->ph < -big || g->pw < -big || g->dh < -big ||
            g->dw < -big) {
            return td_err_set(err, TD_ELIMIT, "%s: a size argument is too large", fn);
        }
        /* pooling_output_shape's checks, height then width */
        const int64_t ks[2] = {g->kh, g->kw}, ss[2] = {g->sh, g->sw}, ps[2] = {g->ph, g->pw};
        for (int d = 0; d < 2; d++) {
            if (ss[d] == 0) {
                return td_err_set(err, TD_EINVAL, "stride should not be zero");
            }
            if (ps[d] < 0) {
                return td_err_set(err, TD_EINVAL, "pad must be non-negative, but got pad: %lld",
                                  (long long)ps[d]);
            }
            if (ps[d] > ks[d] / 2) {
                return td_err_set(err, TD_EINVAL,
                                  "pad should be at most half of kernel size, but got pad=%lld "
                                  "and kernel_size=%lld",
                                  (long long)ps[d], (long long)ks[d]);
            }
        }
        int64_t ih = x->shape[x->ndim - 2], iw = x->shape[x->ndim - 1];
        g->ho = pool_out(ih, g->kh, g->ph, g->sh, g->dh, a->ceil_mode);
        g->wo = pool_out(iw, g->kw, g->pw, g->sw, g->dw, a->ceil_mode);
        if (g->kh <= 0 || g->kw <= 0) {
            return td_err_set(err, TD_EINVAL,
                              "kernel size should be greater than zero, but got kH: %lld kW: %lld",
                              (long long)g->kh, (long long)g->kw);
        }
        if (g->sh < 0 || g->sw < 0) {
            return td_err_set(err, TD_EINVAL,
                              "stride should be greater than zero, but got dH: %lld dW: %lld",
                              (long long)g->sh, (long long)g->sw);
        }
        if (g->dh <= 0 || g->dw <= 0) {
            return td_err_set(err, TD_EINVAL,
                              "dilation should be greater than zero, but got dilationH: %lld "
                              "dilationW: %lld",
                              (long long)g->dh, (long long)g->dw);
        }
        for (int d = x->ndim == 3 ? 0 : 1; d < x->ndim; d++) {
            if (x->shape[d] == 0) {
                return td_err_set(err, TD_ESHAPE,
                                  "Expected 3D or 4D (batch mode) tensor with optional 0 dim batch "
                                  "size for input, but got:%s",
                                  shape_str(s1, sizeof s1, x->shape, x->ndim));
            }
        }
        if (g->ho < 1 || g->wo < 1) {
            int64_t c = x->shape[x->ndim - 3];
            return td_err_set(err, TD_ESHAPE,
                              "Given input size: (%lldx%lldx%lld). Calculated output size: "
                              "(%lldx%lldx%lld). Output size is too small",
                              (long long)c, (long long)ih, (long long)iw, (long long)c,
                              (long long)g->ho, (long long)g->wo);
        }
        if (mx && x->dtype != TD_DTYPE_F32 && x->dtype != TD_DTYPE_F64) {
            return td_err_set(err, TD_EDTYPE, "\"max_pool2d\" not implemented for '%s'",
                              td_dtype_cname(x->dtype));
        }
        if (!mx && x->dtype != TD_DTYPE_F32 && x->dtype != TD_DTYPE_F64 &&
            x->dtype != TD_DTYPE_I64) {
            return td_err_set(err, TD_EDTYPE, "\"avg_pool2d\" not implemented for '%s'",
                              td_dtype_cname(x->dtype));
        }
    }
    g->batched = x->ndim == 4;
    g->n = g->batched ? x->shape[0] : 1;
    g->c = x->shape[x->ndim - 3];
    g->h = x->shape[x->ndim - 2];
    g->w = x->shape[x->ndim - 1];
    return 0;
}

/* One output cell's window: [h0, h1) x [w0, w1) over the input (clipped), and avg's divisor. */
static void avg_window(const struct geom *g, const struct td_op_args *a, int op, int64_t oh,
                       int64_t ow, int64_t *h0, int64_t *h1, int64_t *w0, int64_t *w1, double *div)
{
    if (is_adaptive(op)) {
        *h0 = (oh * g->h) / g->ho;
        *h1 = ((oh + 1) * g->h + g->ho - 1) / g->ho;
        *w0 = (ow * g->w) / g->wo;
        *w1 = ((ow + 1) * g->w + g->wo - 1) / g->wo;
        *div = (double)((*h1 - *h0) * (*w1 - *w0));
        return;
    }
    int64_t hs = oh * g->sh - g->ph, ws = ow * g->sw - g->pw;
    int64_t he = hs + g->kh, we = ws + g->kw;
    if (he > g->h + g->ph) {
        he = g->h + g->ph;
    }
    if (we > g->w + g->pw) {
        we = g->w + g->pw;
    }
    int64_t pool = (he - hs) * (we - ws);
    hs = hs < 0 ? 0 : hs, ws = ws < 0 ? 0 : ws;
    he = he > g->h ? g->h : he, we = we > g->w ? g->w : we;
    *h0 = hs, *h1 = he, *w0 = ws, *w1 = we;
    if (a->divisor_override != 0) {
        *div = (double)a->divisor_override;
    } else if (a->count_include_pad) {
        *div = (double)pool;
    } else {
        *div = (double)((he - hs) * (we - ws));
    }
}

/* The pool kernels over one plane, in float and in double: max's window gives its argmax (flat
** h * W + w) with NaN winning as torch's; avg's sums its clipped window and divides (integers
** run in double and truncate, as torch's integer division). The backward adds each output's
** gradient to its argmax, or spreads it over its window. */
#define TD_POOL_KERNELS(T, SUF)                                                                    \
    static int64_t max_window_##SUF(const struct geom *g, const T *x, int64_t oh, int64_t ow,      \
                                    T *best)                                                       \
    {                                                                                              \
        int64_t hs = oh * g->sh - g->ph, ws = ow * g->sw - g->pw;                                  \
        int64_t he = hs + (g->kh - 1) * g->dh + 1, we = ws + (g->kw - 1) * g->dw + 1;              \
        he = he > g->h ? g->h : he;                                                                \
        we = we > g->w ? g->w : we;                                                                \
        while (hs < 0) {                                                                           \
            hs += g->dh;                                                                           \
        }                                                                                          \
        while (ws < 0) {                                                                           \
            ws += g->dw;                                                                           \
        }                                                                                          \
        int64_t arg = hs * g->w + ws;                                                              \
        T m = (T)-INFINITY;                                                                        \
        for (int64_t h = hs; h < he; h += g->dh) {                                                 \
            for (int64_t w = ws; w < we; w += g->dw) {                                             \
                T v = x[h * g->w + w];                                                             \
                if (v > m || isnan(v)) {                                                           \
                    m = v;                                                                         \
                    arg = h * g->w + w;                                                            \
                    if (isnan(v)) {                                                                \
                        *best = v;                                                                 \
                        return arg;                                                                \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        *best = m;                                                                                 \
        return arg;                                                                                \
    }                                                                                              \
    static void pool_plane_##SUF(const struct geom *g, const struct td_op_args *a, const T *x,     \
                                 T *y, int64_t *idx, bool ints)                                    \
    {                                                                                              \
        for (int64_t oh = 0; oh < g->ho; oh++) {                                                   \
            for (int64_t ow = 0; ow < g->wo; ow++) {                                               \
                T v;                                                                               \
                if (is_max(a->op)) {                                                               \
                    int64_t arg = max_window_##SUF(g, x, oh, ow, &v);                              \
                    if (idx != NULL) {                                                             \
                        idx[oh * g->wo + ow] = arg;                                                \
                    }                                                                              \
                } else {                                                                           \
                    int64_t h0, h1, w0, w1;                                                        \
                    double div, sum = 0;                                                           \
                    avg_window(g, a, a->op, oh, ow, &h0, &h1, &w0, &w1, &div);                     \
                    for (int64_t h = h0; h < h1; h++) {                                            \
                        for (int64_t w = w0; w < w1; w++) {                                        \
                            sum += x[h * g->w + w];                                                \
                        }                                                                          \
                    }                                                                              \
                    v = (T)(ints ? trunc(sum / div) : sum / div);                                  \
                }                                                                                  \
                y[oh * g->wo + ow] = v;                                                            \
            }                                                                                      \
        }                                                                                          \
    }                                                                                              \
    static void pool_plane_bw_##SUF(const struct geom *g, const struct td_op_args *a, const T *gy, \
                                    const T *x, T *gx)                                             \
    {                                                                                              \
        memset(gx, 0, sizeof(T) * (size_t)(g->h * g->w));                                          \
        for (int64_t oh = 0; oh < g->ho; oh++) {                                                   \
            for (int64_t ow = 0; ow < g->wo; ow++) {                                               \
                T gv = gy[oh * g->wo + ow], best;                                                  \
                if (is_max(a->op)) {                                                               \
                    gx[max_window_##SUF(g, x, oh, ow, &best)] += gv;                               \
                    continue;                                                                      \
                }                                                                                  \
                int64_t h0, h1, w0, w1;                                                            \
                double div;                                                                        \
                avg_window(g, a, a->op, oh, ow, &h0, &h1, &w0, &w1, &div);                         \
                T share = (T)(gv / div);                                                           \
                for (int64_t h = h0; h < h1; h++) {                                                \
                    for (int64_t w = w0; w < w1; w++) {                                            \
                        gx[h * g->w + w] += share;                                                 \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
    }

TD_POOL_KERNELS(float, f)
TD_POOL_KERNELS(double, d)

/* Elements a pool walks per plane: each output's window (adaptive windows about their share). */
static int64_t pool_window(const struct geom *g, int op)
{
    if (is_adaptive(op)) {
        return td_sat_add(1, td_sat_mul(g->h / (g->ho > 0 ? g->ho : 1) + 1,
                                        g->w / (g->wo > 0 ? g->wo : 1) + 1));
    }
    return g->kh * g->kw;
}

/* max_pool2d, avg_pool2d, adaptive_avg_pool2d: float32 in float32, the rest in double (over a
** contiguous copy when the input is not one already), cast back for integers. */
int td_make_pool(struct td_tensor **out, const struct td_operand *in, int nin,
                 const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    const char *fn = pool_name(a->op);
    if (nin != 1 || need_tensor(in, 0, fn, "input", err) != 0) {
        return nin != 1 ? td_err_set(err, TD_EINVAL, "%s takes 1 tensor", fn) : -1;
    }
    struct td_tensor *x = in[0].t;
    struct geom g;
    int rc;
    if ((rc = pool_geom(a->op, x, a, &g, err)) != 0) {
        return rc;
    }
    int64_t os[4];
    int on = 0;
    if (g.batched) {
        os[on++] = g.n;
    }
    os[on++] = g.c;
    os[on++] = g.ho;
    os[on++] = g.wo;
    enum td_dtype cd = compute_of(x->dtype);
    bool f32 = cd == TD_DTYPE_F32;
    size_t es = f32 ? sizeof(float) : sizeof(double);
    struct td_tensor *xc = NULL, *yd = NULL, *ix = NULL;
    bool want_idx = is_max(a->op) && a->more_out != NULL && a->want_more[0];
    if ((rc = contig(x, cd, q, &xc, err)) == 0 &&
        (rc = td_tensor_empty(&yd, cd, os, on, q, err)) == 0 && want_idx) {
        rc = td_tensor_empty(&ix, TD_DTYPE_I64, os, on, q, err);
    }
    if (rc == 0) {
        const char *xp = td_tensor_data(xc);
        char *yp = td_tensor_data(yd);
        int64_t *ip = ix != NULL ? td_tensor_data(ix) : NULL;
        int64_t planes = g.n * g.c, ohw = g.ho * g.wo, ihw = g.h * g.w, work = 0;
        int64_t win = pool_window(&g, a->op);
        bool ints = !td_dtype_is_float(x->dtype);
        for (int64_t p = 0; p < planes && rc == 0; p++) {
            const char *xpl = xp + (size_t)(p * ihw) * es;
            char *ypl = yp + (size_t)(p * ohw) * es;
            int64_t *ipl = ip != NULL ? ip + p * ohw : NULL;
            if (f32) {
                pool_plane_f(&g, a, (const float *)xpl, (float *)ypl, ipl, ints);
            } else {
                pool_plane_d(&g, a, (const double *)xpl, (double *)ypl, ipl, ints);
            }
            /* a check per chunk of work (windows read), whatever the planes' size */
            work = td_sat_add(work, td_sat_mul(ohw, win));
            if (work >= TD_CANCEL_CHUNK || p == planes - 1) {
                work = 0;
                rc = td_cancel_check(err);
            }
        }
    }
    td_tensor_unref(xc);
    if (rc == 0) {
        if (cd == x->dtype) {
            *out = yd;
            yd = NULL;
        } else {
            rc = finish_as(yd, x->dtype, os, on, q, out, err);
        }
    }
    td_tensor_unref(yd);
    if (rc == 0 && ix != NULL) {
        a->more_out[0] = ix;
        ix = NULL;
    }
    td_tensor_unref(ix);
    return rc;
}

/* The pools' backward kernels: (g, input) -> the input's gradient, in g's dtype. */
int td_make_pool_backward(struct td_tensor **out, const struct td_operand *in, int nin,
                          const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    const char *fn = pool_name(a->op);
    if (nin != 2 || need_tensor(in, 0, fn, "grad", err) != 0 ||
        need_tensor(in, 1, fn, "input", err) != 0) {
        return nin != 2 ? td_err_set(err, TD_EINVAL, "%s_backward takes 2 tensors", fn) : -1;
    }
    struct td_tensor *gy = in[0].t, *x = in[1].t;
    struct geom g;
    int fwd = is_max(a->op)        ? TD_OP_MAX_POOL2D
              : is_adaptive(a->op) ? TD_OP_ADAPTIVE_AVG_POOL2D
                                   : TD_OP_AVG_POOL2D;
    int rc = pool_geom(fwd, x, a, &g, err);
    if (rc != 0) {
        return rc;
    }
    if (!td_dtype_is_float(gy->dtype) || gy->numel != g.n * g.c * g.ho * g.wo) {
        return td_err_set(err, TD_ESHAPE, "%s_backward: the gradient does not fit the input", fn);
    }
    enum td_dtype cd = gy->dtype;
    bool f32 = cd == TD_DTYPE_F32;
    size_t es = f32 ? sizeof(float) : sizeof(double);
    struct td_tensor *gc = NULL, *xc = NULL, *r = NULL;
    if ((rc = contig(gy, cd, q, &gc, err)) == 0 &&
        (!is_max(a->op) || (rc = contig(x, cd, q, &xc, err)) == 0) &&
        (rc = td_tensor_empty(&r, cd, x->shape, x->ndim, q, err)) == 0) {
        const char *gp = td_tensor_data(gc);
        const char *xp = xc != NULL ? td_tensor_data(xc) : NULL;
        char *rp = td_tensor_data(r);
        int64_t planes = g.n * g.c, ohw = g.ho * g.wo, ihw = g.h * g.w, work = 0;
        int64_t win = pool_window(&g, a->op);
        for (int64_t p = 0; p < planes && rc == 0; p++) {
            const char *gpl = gp + (size_t)(p * ohw) * es;
            const char *xpl = xp != NULL ? xp + (size_t)(p * ihw) * es : NULL;
            char *rpl = rp + (size_t)(p * ihw) * es;
            if (f32) {
                pool_plane_bw_f(&g, a, (const float *)gpl, (const float *)xpl, (float *)rpl);
            } else {
                pool_plane_bw_d(&g, a, (const double *)gpl, (const double *)xpl, (double *)rpl);
            }
            work = td_sat_add(work, td_sat_add(ihw, td_sat_mul(ohw, win)));
            if (work >= TD_CANCEL_CHUNK || p == planes - 1) {
                work = 0;
                rc = td_cancel_check(err);
            }
        }
    }
    td_tensor_unref(gc);
    td_tensor_unref(xc);
    if (rc != 0) {
        td_tensor_unref(r);
        return rc;
    }
    *out = r;
    return 0;
}

/* adaptive_avg_pool2d to 1 x 1: torch takes the mean over the last two dims. */
const char *td_grad_fn_adaptive(const struct td_node *n)
{
    const struct td_op_args *a = &n->args;
    const struct td_tensor *x = n->in[0].t;
    if (a->noutput_size < 1 || x == NULL || x->ndim < 2) {
        return "AdaptiveAvgPool2DBackward0";
    }
    int64_t oh = a->output_size[0], ow = a->output_size[a->noutput_size - 1];
    oh = oh == -1 ? x->shape[x->ndim - 2] : oh; /* None: the input's size */
    ow = ow == -1 ? x->shape[x->ndim - 1] : ow;
    return oh == 1 && ow == 1 ? "MeanBackward1" : "AdaptiveAvgPool2DBackward0";
}

int td_bw_pool(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
               struct td_quota *q, struct td_err *err)
{
    int op = n->op == TD_OP_MAX_POOL2D   ? TD_OP_MAX_POOL2D_BACKWARD
             : n->op == TD_OP_AVG_POOL2D ? TD_OP_AVG_POOL2D_BACKWARD
                                         : TD_OP_ADAPTIVE_AVG_POOL2D_BACKWARD;
    struct td_op_args pa;
    copy_conv_args(&pa, &n->args);
    struct td_operand ops[2] = {td_t(g), n->in[0]};
    return td_op_apply(op, ops, 2, &pa, false, q, &gin[0], err);
}

/* ---- cost rules: logical sizes, saturating; safe before validation ---- */

static int64_t numel_sat(const struct td_tensor *t)
{
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) {
        n = td_sat_mul(n, t->shape[d] < 0 ? 0 : t->shape[d]);
    }
    return n;
}

static void conv_cost(const struct geom *g, int64_t read, size_t es, struct td_cost *c)
{
    int64_t cg = g->c / (g->g > 0 ? g->g : 1);
    int64_t k = td_sat_mul(td_sat_mul(cg, g->kh), g->kw);
    int64_t hw = td_sat_mul(g->ho, g->wo);
    int64_t outn = td_sat_mul(td_sat_mul(g->n, g->co), hw);
    c->read = read;
    c->written = outn;
    c->flops = td_sat_mul(outn, k);
    c->out_bytes = td_sat_mul(outn, (int64_t)es);
    /* the column buffer, the operands' compute copies and the compute-dtype result */
    c->temp_bytes = td_sat_add(td_sat_mul(td_sat_mul(k, hw), 8),
                               td_sat_mul(td_sat_add(read, outn), 8));
}

int td_cost_conv(const struct td_operand *in, int nin, const struct td_op_args *a,
                 struct td_cost *c)
{
    if (nin < 2 || nin > 3 || in[0].t == NULL || in[1].t == NULL || (nin == 3 && in[2].t == NULL)) {
        return -1;
    }
    struct geom g;
    const struct td_tensor *x = in[0].t, *w = in[1].t;
    if (conv_geom(a->op, x->shape, x->ndim, w->shape, w->ndim, nin == 3 ? in[2].t : NULL, a, &g,
                  NULL) != 0) {
        return -1;
    }
    int64_t read = td_sat_add(numel_sat(x), numel_sat(w));
    conv_cost(&g, nin == 3 ? td_sat_add(read, numel_sat(in[2].t)) : read,
              td_dtype_is_valid((int)x->dtype) ? td_dtype_size(x->dtype) : 8, c);
    return 0;
}

int td_cost_conv_backward(const struct td_operand *in, int nin, const struct td_op_args *a,
                          struct td_cost *c)
{
    if (nin != 2 || in[0].t == NULL || in[1].t == NULL || a->ndims < 2) {
        return -1;
    }
    bool for_input = a->op == TD_OP_CONVOLUTION_BACKWARD_INPUT;
    const struct td_tensor *o = in[1].t;
    const int64_t *xs = for_input ? a->dims : o->shape;
    int xn = for_input ? a->ndims : o->ndim;
    const int64_t *ws = for_input ? o->shape : a->dims;
    int wn = for_input ? o->ndim : a->ndims;
    struct geom g;
    if ((wn != 3 && wn != 4) ||
        conv_geom(wn == 3 ? TD_OP_CONV1D : TD_OP_CONV2D, xs, xn, ws, wn, NULL, a, &g, NULL) != 0) {
        return -1;
    }
    conv_cost(&g, td_sat_add(numel_sat(in[0].t), numel_sat(o)), 8, c);
    int64_t outn = 1;
    const int64_t *rs = for_input ? xs : ws;
    for (int d = 0; d < (for_input ? xn : wn); d++) {
        outn = td_sat_mul(outn, rs[d] < 0 ? 0 : rs[d]);
    }
    c->written = outn;
    c->out_bytes = td_sat_mul(outn, 8);
    return 0;
}

int td_cost_pool(const struct td_operand *in, int nin, const struct td_op_args *a,
                 struct td_cost *c)
{
    bool bwd = nin == 2;
    if ((nin != 1 && nin != 2) || in[0].t == NULL || (bwd && in[1].t == NULL)) {
        return -1;
    }
    const struct td_tensor *x = in[nin - 1].t;
    int fwd = is_max(a->op)        ? TD_OP_MAX_POOL2D
              : is_adaptive(a->op) ? TD_OP_ADAPTIVE_AVG_POOL2D
                                   : TD_OP_AVG_POOL2D;
    struct geom g;
    if (pool_geom(fwd, x, a, &g, NULL) != 0) {
        return -1;
    }
    int64_t xn = numel_sat(x);
    int64_t outn = td_sat_mul(td_sat_mul(g.n, g.c), td_sat_mul(g.ho, g.wo));
    /* each output reads its window (kh * kw; an adaptive window its share of the input) */
    int64_t win = td_sat_mul(outn, pool_window(&g, fwd));
    c->read = td_sat_add(win, bwd ? td_sat_add(numel_sat(in[0].t), xn) : xn);
    c->written = bwd ? xn : td_sat_mul(outn, 2);
    c->flops = 0;
    size_t es = td_dtype_is_valid((int)x->dtype) ? td_dtype_size(x->dtype) : 8;
    c->out_bytes = td_sat_mul(bwd ? xn : outn, (int64_t)es);
    /* double copies of the operands and the result, and max's indices */
    c->temp_bytes = td_sat_mul(td_sat_add(td_sat_add(xn, outn), bwd ? xn : outn), 8);
    return 0;
}
