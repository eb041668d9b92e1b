/* server/core/ops/loss.c — torch.nn.functional's losses and activations: nll_loss,
** cross_entropy (class indices, weights, ignore_index, label smoothing, class probabilities),
** mse_loss, smooth_l1_loss, huber_loss, binary_cross_entropy(_with_logits), leaky_relu, silu,
** softplus, elu, hardtanh, logsigmoid, and their cost rules.
**
** Each op checks its inputs the way torch 1.13 does, in torch's words. The class losses run one
** loop over a dense float64 copy of their operands (charged to the caller's quota, checking the
** request's cancel between chunks); their backward rules run the internal op loss_coef, which
** gives d(loss)/d(log-probabilities) as a tensor of the input's shape, so nll_loss's gradient
** is -coef * g and cross_entropy's softmax(x) * sum(coef * g) - coef * g. The pointwise losses
** and the activations are built from the core's tested ops through td_op_apply (any strides and
** dtypes, cancellation and quota come with them); their backward rules likewise.
*/
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../../base/checked.h"
#include "../cancel.h"
#include "family.h"

/* ---- helpers ---- */

static int run1(enum td_op_id op, struct td_operand a, const struct td_op_args *args,
                struct td_quota *q, struct td_tensor **out, struct td_err *err)
{
    return td_op_apply(op, &a, 1, args, false, q, out, err);
}

static int run2(enum td_op_id op, struct td_operand a, struct td_operand b, struct td_quota *q,
                struct td_tensor **out, struct td_err *err)
{
    struct td_operand in[2] = {a, b};
    return td_op_apply(op, in, 2, NULL, false, q, out, err);
}

static int run3(enum td_op_id op, struct td_operand a, struct td_operand b, struct td_operand c,
                struct td_quota *q, struct td_tensor **out, struct td_err *err)
{
    struct td_operand in[3] = {a, b, c};
    return td_op_apply(op, in, 3, NULL, false, q, out, err);
}

static struct td_operand num(double v)
{
    return td_s(td_scalar_f(v));
}

/* A dense copy of t (any strides, any dtype) in dtype dt, charged to q. */
static int dense_as(const struct td_tensor *t, enum td_dtype dt, struct td_quota *q,
                    struct td_tensor **out, struct td_err *err)
{
    int rc = td_tensor_empty(out, dt, t->shape, t->ndim, q, err);
    if (rc == 0 && (rc = td_cast_copy(*out, t, err)) != 0) {
        td_tensor_unref(*out);
        *out = NULL;
    }
    return rc;
}

/* r (dense float64) as a new tensor of dtype dt (r itself when dt is float64). */
static int as_dtype(struct td_tensor *r, enum td_dtype dt, struct td_quota *q,
                    struct td_tensor **out, struct td_err *err)
{
    if (dt == TD_DTYPE_F64) {
        *out = td_tensor_ref(r);
        return 0;
    }
    int rc = td_tensor_empty(out, dt, r->shape, r->ndim, q, err);
    if (rc == 0 && (rc = td_cast_copy(*out, r, err)) != 0) {
        td_tensor_unref(*out);
        *out = NULL;
    }
    return rc;
}

/* sum or mean of t over every element (reduction "sum" / "mean"); "none": t itself. */
static int reduce(struct td_tensor *t, int reduction, struct td_quota *q, struct td_tensor **out,
                  struct td_err *err)
{
    if (reduction == TD_REDUCTION_NONE) {
        *out = td_tensor_ref(t);
        return 0;
    }
    return run1(reduction == TD_REDUCTION_SUM ? TD_OP_SUM : TD_OP_MEAN, td_t(t), NULL, q, out, err);
}

static const char *shape_text(char *buf, size_t cap, const struct td_tensor *t)
{
    return td_shape_str(buf, cap, t->shape, t->ndim);
}

/* torch records no derivative for a loss's weights: with grad mode on, a weight that requires
** grad is refused before the op runs. */
static int weight_no_grad(const struct td_tensor *w, const struct td_op_args *a, const char *fn,
                          const char *arg, struct td_err *err)
{
    if (w != NULL && a->grad_enabled && w->requires_grad) {
        return td_err_set(err, TD_EINVAL,
                          "The function '%s' is not differentiable with respect to argument "
                          "'%s'. This input cannot have requires_grad True.",
                          fn, arg);
    }
    return 0;
}

/* ---- nll_loss and cross_entropy ---- */

/* The class-loss problem, checked: input x as (n, c, d) blocks (a 1-D input is one row),
** target as class indices (n, d) or probabilities (x's shape), an optional weight [c]. */
struct cls {
    int64_t n, c, d;
    bool probs;     /* class-probability targets (x's shape, floating) */
    double ls;      /* label smoothing */
    int64_t ignore; /* ignore_index */
    int reduction;  /* TD_REDUCTION_* */
    int64_t out_shape[TD_MAX_DIMS];
    int out_ndim; /* "none": x's shape without the class dim */
};

static bool same_shape(const struct td_tensor *a, const struct td_tensor *b)
{
    return a->ndim == b->ndim && memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim) == 0;
}

/* torch's nll_loss_nd checks for class-index targets (nll_loss, nll_loss2d, the reshape of
** other ranks), then the dtypes. `ce`: called by cross_entropy (its weight message). */
static int check_index_target(const struct td_tensor *x, const struct td_tensor *t,
                              const struct td_tensor *w, bool ce, struct td_err *err)
{
    char sa[160], sb[160];
    if (x->ndim < 1) {
        return td_err_set(err, TD_EINVAL, "Expected 1 or more dimensions (got %d)", x->ndim);
    }
    if (x->ndim != 1 && (t->ndim < 1 || x->shape[0] != t->shape[0])) {
        if (t->ndim < 1) {
            return td_err_set(err, TD_ESHAPE,
                              "0D or 1D target tensor expected, multi-target not supported");
        }
        return td_err_set(err, TD_ESHAPE,
                          "Expected input batch_size (%lld) to match target batch_size (%lld).",
                          (long long)x->shape[0], (long long)t->shape[0]);
    }
    if (x->ndim <= 2) {
        if (t->ndim > 1) {
            return td_err_set(err, TD_ESHAPE,
                              "0D or 1D target tensor expected, multi-target not supported");
        }
        if (x->ndim == 1 && t->ndim != 0) {
            return td_err_set(err, TD_ESHAPE, "size mismatch (got input: %s, target: %s)",
                              shape_text(sa, sizeof sa, x), shape_text(sb, sizeof sb, t));
        }
    } else if (x->ndim == 4) {
        if (t->ndim != 3) {
            return td_err_set(err, TD_ESHAPE,
                              "only batches of spatial targets supported (3D tensors) but got "
                              "targets of dimension: %d",
                              t->ndim);
        }
        if (t->shape[1] != x->shape[2] || t->shape[2] != x->shape[3]) {
            return td_err_set(err, TD_ESHAPE, "size mismatch (got input: %s , target: %s",
                              shape_text(sa, sizeof sa, x), shape_text(sb, sizeof sb, t));
        }
    } else {
        int64_t want[TD_MAX_DIMS];
        int nw = x->ndim - 1;
        want[0] = x->shape[0];
        for (int i = 2; i < x->ndim; i++) {
            want[i - 1] = x->shape[i];
        }
        if (t->ndim != nw || memcmp(want, t->shape, sizeof(int64_t) * (size_t)nw) != 0) {
            return td_err_set(err, TD_ESHAPE, "Expected target size %s, got %s",
                              td_shape_str(sa, sizeof sa, want, nw), shape_text(sb, sizeof sb, t));
        }
    }
    if (t->dtype != TD_DTYPE_I64) {
        return td_err_set(err, TD_EDTYPE, "expected scalar type Long but found %s",
                          td_dtype_cname(t->dtype));
    }
    int64_t c = x->shape[x->ndim == 1 ? 0 : 1];
    if (w != NULL && w->numel != c) {
        return td_err_set(err, TD_ESHAPE,
                          "%sweight tensor should be defined either for all %lld classes or no "
                          "classes but got weight tensor of shape: %s",
                          ce ? "cross_entropy: " : "", (long long)c, shape_text(sa, sizeof sa, w));
    }
    if (!td_dtype_is_float(x->dtype)) {
        return td_err_set(err, TD_EDTYPE, "\"%s\" not implemented for '%s'",
                          x->ndim == 4 ? "nll_loss2d_forward_out_frame" : "nll_loss_out_frame",
                          td_dtype_cname(x->dtype));
    }
    if (w != NULL && w->dtype != x->dtype) {
        return td_err_set(err, TD_EDTYPE, "expected scalar type %s but found %s",
                          td_dtype_cname(x->dtype), td_dtype_cname(w->dtype));
    }
    return 0;
}

static int reduction_of(const struct td_op_args *a)
{
    return a->reduction;
}

/* Fills the problem's layout from x and its checked target. */
static void cls_layout(struct cls *p, const struct td_tensor *x, bool probs,
                       const struct td_op_args *a)
{
    p->n = x->ndim == 1 ? 1 : x->shape[0];
    p->c = x->shape[x->ndim == 1 ? 0 : 1];
    p->d = 1;
    for (int i = 2; i < x->ndim; i++) {
        p->d = td_sat_mul(p->d, x->shape[i]);
    }
    p->probs = probs;
    p->ls = probs || a->op == TD_OP_CROSS_ENTROPY ? a->label_smoothing : 0.0;
    p->ignore = a->ignore_index;
    p->reduction = reduction_of(a);
    p->out_ndim = 0;
    if (x->ndim >= 2) {
        p->out_shape[p->out_ndim++] = x->shape[0];
        for (int i = 2; i < x->ndim; i++) {
            p->out_shape[p->out_ndim++] = x->shape[i];
        }
    }
}

/* The loss (lp: log-probabilities, dense float64) or, with `coef`, d(loss)/d(lp) in lp's shape:
** one pass over the dense operands. The result is dense float64. */
static int cls_run(const struct cls *p, struct td_tensor *lp, struct td_tensor *t,
                   struct td_tensor *w, bool coef, struct td_quota *q, struct td_tensor **out,
                   struct td_err *err)
{
    const double *x = td_tensor_data(lp), *wt = w != NULL ? td_tensor_data(w) : NULL;
    const double *tp = p->probs ? td_tensor_data(t) : NULL;
    const int64_t *ti = p->probs ? NULL : td_tensor_data(t);
    int64_t n = p->n, c = p->c, d = p->d, rows = td_sat_mul(n, d);
    int rc;
    struct td_tensor *r = NULL;
    if (coef) {
        rc = td_tensor_full(&r, TD_DTYPE_F64, lp->shape, lp->ndim, td_scalar_f(0), q, err);
    } else if (p->reduction == TD_REDUCTION_NONE) {
        rc = td_tensor_empty(&r, TD_DTYPE_F64, p->out_shape, p->out_ndim, q, err);
    } else {
        rc = td_tensor_empty(&r, TD_DTYPE_F64, NULL, 0, q, err);
    }
    if (rc != 0) {
        return rc;
    }
    double *o = td_tensor_data(r);
    /* first pass: bounds, and the mean's denominator (the weights of the counted targets) */
    double den = 0;
    if (p->probs) {
        den = (double)rows;
    } else {
        for (int64_t k0 = 0, end; k0 < rows; k0 = end) {
            end = td_cancel_chunk_end(k0, rows);
            for (int64_t k = k0; k < end; k++) {
                int64_t cls = ti[k];
                if (cls == p->ignore) {
                    continue;
                }
                if (cls < 0 || cls >= c) {
                    td_tensor_unref(r);
                    return td_err_set(err, TD_EINVAL, "Target %lld is out of bounds.",
                                      (long long)cls);
                }
                den += wt != NULL ? wt[cls] : 1.0;
            }
            if ((rc = td_cancel_check(err)) != 0) {
                td_tensor_unref(r);
                return rc;
            }
        }
    }
    bool mean = p->reduction == TD_REDUCTION_MEAN;
    double scale = coef && mean ? 1.0 / den : 1.0;
    double total = 0;
    for (int64_t k0 = 0, end; k0 < rows; k0 = end) {
        end = td_cancel_chunk_end(k0, rows);
        for (int64_t k = k0; k < end; k++) {
            int64_t i = k / d, j = k % d;
            const double *xr = x + i * c * d + j; /* element cl at xr[cl * d] */
            double *orow = coef ? o + i * c * d + j : NULL;
            double l = 0;
            if (p->probs) {
                for (int64_t cl = 0; cl < c; cl++) {
                    double tv = tp[i * c * d + cl * d + j];
                    if (p->ls > 0) {
                        tv = tv * (1 - p->ls) + p->ls / (double)c;
                    }
                    double cf = tv * (wt != NULL ? wt[cl] : 1.0);
                    if (coef) {
                        orow[cl * d] = cf * scale;
                    } else {
                        l -= cf * xr[cl * d];
                    }
                }
            } else {
                int64_t cls = ti[k];
                if (cls != p->ignore) {
                    double cf = (1 - p->ls) * (wt != NULL ? wt[cls] : 1.0);
                    if (coef) {
                        orow[cls * d] += cf * scale;
                    } else {
                        l -= cf * xr[cls * d];
                    }
                    if (p->ls > 0) {
                        for (int64_t cl = 0; cl < c; cl++) {
                            double sf = p->ls / (double)c * (wt != NULL ? wt[cl] : 1.0);
                            if (coef) {
                                orow[cl * d] += sf * scale;
                            } else {
                                l -= sf * xr[cl * d];
                            }
                        }
                    }
                }
            }
            if (!coef) {
                if (p->reduction == TD_REDUCTION_NONE) {
                    o[k] = l + 0.0; /* -0 as 0, as torch's ignored entries */
                } else {
                    total += l;
                }
            }
        }
        if ((rc = td_cancel_check(err)) != 0) {
            td_tensor_unref(r);
            return rc;
        }
    }
    if (!coef && p->reduction != TD_REDUCTION_NONE) {
        o[0] = mean ? total / den : total;
    }
    *out = r;
    return 0;
}

/* The class-loss operands: input, target, weight (or NULL) from a nin -1 op's list. */
static int cls_operands(const struct td_operand *in, int nin, const char *name,
                        struct td_tensor **x, struct td_tensor **t, struct td_tensor **w,
                        struct td_err *err)
{
    if (nin < 2 || nin > 3 || in[0].t == NULL || in[1].t == NULL || (nin == 3 && in[2].t == NULL)) {
        return td_err_set(err, TD_EINVAL,
                          "%s() takes input, target and an optional weight, all tensors", name);
    }
    *x = in[0].t;
    *t = in[1].t;
    *w = nin == 3 ? in[2].t : NULL;
    return 0;
}

static int check_reduction(const struct td_op_args *a, struct td_err *err)
{
    if (a->reduction < TD_REDUCTION_MEAN || a->reduction > TD_REDUCTION_NONE) {
        return td_err_set(err, TD_EINVAL, "invalid reduction");
    }
    return 0;
}

/* Checks the class loss and fills p; lp is the log-probabilities (x for nll_loss). */
static int cls_check(const struct td_tensor *x, const struct td_tensor *lp,
                     const struct td_tensor *t, const struct td_tensor *w,
                     const struct td_op_args *a, struct cls *p, struct td_err *err)
{
    int rc;
    char sa[160];
    if ((rc = check_reduction(a, err)) != 0) {
        return rc;
    }
    bool ce = a->op == TD_OP_CROSS_ENTROPY;
    bool probs = ce && same_shape(x, t);
    if (probs) {
        if (x->ndim == 0) {
            return td_err_set(err, TD_EINVAL,
                              "Dimension out of range (expected to be in range of [-1, 0], but "
                              "got 1)");
        }
        if (!td_dtype_is_float(t->dtype)) {
            return td_err_set(err, TD_EDTYPE,
                              "Expected floating point type for target with class probabilities, "
                              "got %s",
                              td_dtype_cname(t->dtype));
        }
        if (a->ignore_index >= 0) {
            return td_err_set(err, TD_EINVAL,
                              "ignore_index is not supported for floating point target");
        }
        int64_t c = x->shape[x->ndim == 1 ? 0 : 1];
        if (w != NULL && (w->ndim != 1 || w->numel != c)) {
            return td_err_set(err, TD_ESHAPE,
                              "cross_entropy: weight tensor should be defined either for all "
                              "%lld classes or no classes but got weight tensor of shape: %s",
                              (long long)c, shape_text(sa, sizeof sa, w));
        }
    } else if ((rc = check_index_target(lp, t, w, ce, err)) != 0) {
        return rc;
    }
    if (!probs && (rc = weight_no_grad(w, a, "nll_loss_forward", "weight", err)) != 0) {
        return rc;
    }
    cls_layout(p, x, probs, a);
    return 0;
}

static bool ls_bad(const struct td_op_args *a)
{
    return a->op == TD_OP_CROSS_ENTROPY && a->label_smoothing > 1.0;
}

static int ls_error(const struct td_op_args *a, struct td_err *err)
{
    return td_err_set(err, TD_EINVAL, "label_smoothing must be between 0.0 and 1.0. Got: %g",
                      a->label_smoothing);
}

/* log_softmax over the class dim (cross_entropy), or x itself (nll_loss). */
static int log_probs(struct td_tensor *x, const struct td_op_args *a, struct td_quota *q,
                     struct td_tensor **out, struct td_err *err)
{
    if (a->op != TD_OP_CROSS_ENTROPY && a->op != TD_OP_LOSS_COEF) {
        *out = td_tensor_ref(x);
        return 0;
    }
    struct td_op_args sa;
    td_op_args_init(&sa);
    sa.dim = x->ndim <= 1 ? 0 : 1;
    return run1(TD_OP_LOG_SOFTMAX, td_t(x), &sa, q, out, err);
}

/* nll_loss / cross_entropy forward, or (coef) loss_coef's. */
static int cls_make(struct td_tensor **out, const struct td_operand *in, int nin,
                    const struct td_op_args *a, bool coef, bool softmax, struct td_quota *q,
                    struct td_err *err)
{
    struct td_tensor *x = NULL, *t = NULL, *w = NULL;
    const char *name = td_ops[a->op].name;
    int rc = cls_operands(in, nin, name, &x, &t, &w, err);
    if (rc != 0) {
        return rc;
    }
    if (softmax && ls_bad(a)) {
        return ls_error(a, err);
    }
    struct td_tensor *lp = NULL, *dl = NULL, *dt = NULL, *dw = NULL, *r = NULL;
    struct cls p;
    if (softmax && !coef) {
        if ((rc = log_probs(x, a, q, &lp, err)) != 0) {
            return rc;
        }
    } else {
        lp = td_tensor_ref(x);
    }
    if ((rc = cls_check(x, lp, t, w, a, &p, err)) != 0) {
        goto out;
    }
    enum td_dtype rdt = p.probs ? td_dtype_promote(x->dtype, t->dtype) : x->dtype;
    if (x->numel == 0 && !coef && p.reduction == TD_REDUCTION_NONE) {
        rc = td_tensor_empty(out, rdt, p.out_shape, p.out_ndim, q, err);
        goto out;
    }
    if ((rc = dense_as(lp, TD_DTYPE_F64, q, &dl, err)) != 0 ||
        (rc = dense_as(t, p.probs ? TD_DTYPE_F64 : TD_DTYPE_I64, q, &dt, err)) != 0 ||
        (w != NULL && (rc = dense_as(w, TD_DTYPE_F64, q, &dw, err)) != 0)) {
        goto out;
    }
    if (p.probs && p.reduction == TD_REDUCTION_MEAN && x->numel == 0) {
        /* torch: the empty mean is NaN (it fills the sum) */
        if ((rc = td_tensor_full(&r, TD_DTYPE_F64, NULL, 0, td_scalar_f(NAN), q, err)) != 0) {
            goto out;
        }
    } else if ((rc = cls_run(&p, dl, dt, dw, coef, q, &r, err)) != 0) {
        goto out;
    }
    rc = as_dtype(r, coef ? x->dtype : rdt, q, out, err);
out:
    td_tensor_unref(lp);
    td_tensor_unref(dl);
    td_tensor_unref(dt);
    td_tensor_unref(dw);
    td_tensor_unref(r);
    return rc;
}

int td_make_nll_loss(struct td_tensor **out, const struct td_operand *in, int nin,
                     const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    return cls_make(out, in, nin, a, false, false, q, err);
}

int td_make_cross_entropy(struct td_tensor **out, const struct td_operand *in, int nin,
                          const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    return cls_make(out, in, nin, a, false, true, q, err);
}

/* loss_coef(input, target[, weight]): d(loss)/d(log-probabilities) of nll_loss (args.op_of is
** 0) or cross_entropy (label_smoothing and probability targets), for a unit output gradient;
** "none" gives the per-element coefficients. Internal: backward rules run it. */
int td_make_loss_coef(struct td_tensor **out, const struct td_operand *in, int nin,
                      const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    struct td_op_args local = *a;
    /* loss_coef's label_smoothing and probability targets are cross_entropy's */
    local.op = TD_OP_CROSS_ENTROPY;
    return cls_make(out, in, nin, &local, true, false, q, err);
}

/* The output gradient g shaped to broadcast against the input: a 0-d g as it is; a "none"
** gradient [n, d1, ...] with the class dim put back as size 1. */
static int g_classwise(const struct td_node *n, struct td_tensor *g, struct td_quota *q,
                       struct td_tensor **out, struct td_err *err)
{
    if (n->args.reduction != TD_REDUCTION_NONE || n->in[0].t->ndim <= 1) {
        *out = td_tensor_ref(g);
        return 0;
    }
    struct td_op_args ua;
    td_op_args_init(&ua);
    ua.dim = 1;
    return run1(TD_OP_UNSQUEEZE, td_t(g), &ua, q, out, err);
}

static int coef_of(const struct td_node *n, struct td_quota *q, struct td_tensor **out,
                   struct td_err *err)
{
    struct td_op_args ca = n->args;
    ca.grad_enabled = false;
    if (n->op == TD_OP_NLL_LOSS) {
        ca.label_smoothing = 0;
    }
    struct td_operand in[3];
    int nin = n->nin < 3 ? n->nin : 3;
    for (int i = 0; i < nin; i++) {
        in[i] = n->in[i];
    }
    return td_op_apply(TD_OP_LOSS_COEF, in, nin, &ca, false, q, out, err);
}

/* nll_loss: -coef * g */
int td_bw_nll_loss(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                   struct td_quota *q, struct td_err *err)
{
    struct td_tensor *cf = NULL, *gg = NULL, *m = NULL;
    int rc;
    if ((rc = coef_of(n, q, &cf, err)) == 0 && (rc = g_classwise(n, g, q, &gg, err)) == 0 &&
        (rc = run2(TD_OP_MUL, td_t(cf), td_t(gg), q, &m, err)) == 0) {
        rc = run1(TD_OP_NEG, td_t(m), NULL, q, &gin[0], err);
    }
    td_tensor_unref(cf);
    td_tensor_unref(gg);
    td_tensor_unref(m);
    return rc;
}

/* cross_entropy with probabilities, d/d(target) = -(1 - ls) w log_softmax(x) g (/ rows for the
** mean), w viewed along the class dim */
static int ce_target_grad(const struct td_node *n, struct td_tensor *g, struct td_tensor **out,
                          struct td_quota *q, struct td_err *err)
{
    struct td_tensor *x = n->in[0].t, *w = n->nin > 2 ? n->in[2].t : NULL;
    struct td_tensor *lp = NULL, *wv = NULL, *lw = NULL, *gg = NULL, *gs = NULL, *m = NULL;
    struct td_op_args ra;
    td_op_args_init(&ra);
    ra.ndims = x->ndim <= 1 ? 1 : x->ndim - 1;
    ra.has_dims = true;
    for (int i = 0; i < ra.ndims; i++) {
        ra.dims[i] = i == 0 ? -1 : 1;
    }
    int64_t c = x->shape[x->ndim <= 1 ? 0 : 1];
    double scale = -(1 - n->args.label_smoothing);
    int rc = log_probs(x, &n->args, q, &lp, err);
    if (rc == 0) {
        if (w != NULL) {
            if ((rc = run1(TD_OP_RESHAPE, td_t(w), &ra, q, &wv, err)) == 0) {
                rc = run2(TD_OP_MUL, td_t(lp), td_t(wv), q, &lw, err);
            }
        } else {
            lw = td_tensor_ref(lp);
        }
    }
    if (rc == 0 && (rc = g_classwise(n, g, q, &gg, err)) == 0) {
        if (n->args.reduction == TD_REDUCTION_MEAN && c > 0) {
            scale /= (double)(x->numel / c);
        }
        if ((rc = run2(TD_OP_MUL, td_t(gg), num(scale), q, &gs, err)) == 0) {
            rc = run2(TD_OP_MUL, td_t(lw), td_t(gs), q, out, err);
        }
    }
    td_tensor_unref(lp);
    td_tensor_unref(wv);
    td_tensor_unref(lw);
    td_tensor_unref(gg);
    td_tensor_unref(gs);
    td_tensor_unref(m);
    return rc;
}

/* cross_entropy with probabilities, d/d(weight)[c] = -sum over all but the class dim of
** log_softmax(x) (t (1 - ls) + ls / C) g (/ rows for the mean) */
static int ce_weight_grad(const struct td_node *n, struct td_tensor *g, struct td_tensor **out,
                          struct td_quota *q, struct td_err *err)
{
    struct td_tensor *x = n->in[0].t, *t = n->in[1].t;
    struct td_tensor *lp = NULL, *ts = NULL, *tt = NULL, *pr = NULL, *gg = NULL, *gs = NULL;
    struct td_tensor *m = NULL;
    int64_t c = x->shape[x->ndim <= 1 ? 0 : 1];
    double ls = n->args.label_smoothing, scale = -1.0;
    if (n->args.reduction == TD_REDUCTION_MEAN && c > 0) {
        scale /= (double)(x->numel / c);
    }
    struct td_op_args ra;
    td_op_args_init(&ra);
    for (int i = 0; i < x->ndim; i++) {
        if (i != 1) {
            ra.dims[ra.ndims++] = i;
        }
    }
    ra.has_dims = true;
    int rc;
    if ((rc = log_probs(x, &n->args, q, &lp, err)) == 0 &&
        (rc = run2(TD_OP_MUL, td_t(t), num(ls > 0 ? 1 - ls : 1.0), q, &ts, err)) == 0 &&
        (rc = run2(TD_OP_ADD, td_t(ts), num(ls > 0 ? ls / (double)c : 0.0), q, &tt, err)) == 0 &&
        (rc = run2(TD_OP_MUL, td_t(lp), td_t(tt), q, &pr, err)) == 0 &&
        (rc = g_classwise(n, g, q, &gg, err)) == 0 &&
        (rc = run2(TD_OP_MUL, td_t(gg), num(scale), q, &gs, err)) == 0 &&
        (rc = run2(TD_OP_MUL, td_t(pr), td_t(gs), q, &m, err)) == 0) {
        if (x->ndim <= 1) {
            *out = td_tensor_ref(m);
        } else {
            rc = run1(TD_OP_SUM, td_t(m), &ra, q, out, err);
        }
    }
    td_tensor_unref(lp);
    td_tensor_unref(ts);
    td_tensor_unref(tt);
    td_tensor_unref(pr);
    td_tensor_unref(gg);
    td_tensor_unref(gs);
    td_tensor_unref(m);
    return rc;
}

/* cross_entropy: softmax(x) * sum(coef * g, class dim) - coef * g */
int td_bw_cross_entropy(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                        struct td_quota *q, struct td_err *err)
{
    struct td_tensor *x = n->in[0].t;
    struct td_tensor *cf = NULL, *gg = NULL, *cg = NULL, *s = NULL, *sm = NULL, *ps = NULL;
    struct td_op_args sa, ra;
    td_op_args_init(&sa);
    sa.dim = x->ndim <= 1 ? 0 : 1;
    td_op_args_init(&ra);
    ra.dims[0] = sa.dim;
    ra.ndims = 1;
    ra.has_dims = true;
    ra.keepdim = true;
    int rc;
    if ((rc = coef_of(n, q, &cf, err)) == 0 && (rc = g_classwise(n, g, q, &gg, err)) == 0 &&
        (rc = run2(TD_OP_MUL, td_t(cf), td_t(gg), q, &cg, err)) == 0 &&
        (rc = run1(TD_OP_SUM, td_t(cg), &ra, q, &s, err)) == 0 &&
        (rc = run1(TD_OP_SOFTMAX, td_t(x), &sa, q, &sm, err)) == 0 &&
        (rc = run2(TD_OP_MUL, td_t(sm), td_t(s), q, &ps, err)) == 0) {
        rc = run2(TD_OP_SUB, td_t(ps), td_t(cg), q, &gin[0], err);
    }
    struct td_tensor *t = n->in[1].t;
    if (rc == 0 && t->requires_grad && same_shape(x, t)) {
        rc = ce_target_grad(n, g, &gin[1], q, err);
    }
    if (rc == 0 && n->nin > 2 && n->in[2].t->requires_grad && same_shape(x, t)) {
        rc = ce_weight_grad(n, g, &gin[2], q, err);
    }
    td_tensor_unref(cf);
    td_tensor_unref(gg);
    td_tensor_unref(cg);
    td_tensor_unref(s);
    td_tensor_unref(sm);
    td_tensor_unref(ps);
    return rc;
}

/* torch's nll_loss_nd runs inputs of 3 or more dims as nll_loss2d, viewing a "none" result of
** other than 4 dims back to the target's shape. */
const char *td_grad_fn_nll_loss(const struct td_node *n)
{
    const struct td_tensor *x = n->in[0].t;
    if (x == NULL || x->ndim < 3) {
        return "NllLossBackward0";
    }
    return n->args.reduction == TD_REDUCTION_NONE && x->ndim != 4 ? "ViewBackward0"
                                                                  : "NllLoss2DBackward0";
}

/* torch composes cross_entropy: class indices give nll_loss's node; label smoothing adds the
** smoothing term last; probability targets end with a division (mean) or a negation. */
const char *td_grad_fn_cross_entropy(const struct td_node *n)
{
    const struct td_tensor *x = n->in[0].t, *t = n->in[1].t;
    if (x != NULL && t != NULL && same_shape(x, t)) {
        return n->args.reduction == TD_REDUCTION_MEAN ? "DivBackward1" : "NegBackward0";
    }
    return n->args.label_smoothing > 0 ? "AddBackward0" : td_grad_fn_nll_loss(n);
}

/* Reads and writes of a class loss: the input, target and weight, a log_softmax and the dense
** copies (temporaries), one loss per row. */
int td_cost_nll_loss(const struct td_operand *in, int nin, const struct td_op_args *a,
                     struct td_cost *c)
{
    (void)a;
    if (nin < 2 || nin > 3) {
        return -1;
    }
    for (int i = 0; i < nin; i++) {
        if (in[i].t == NULL) {
            return -1;
        }
    }
    int64_t nx = in[0].t->numel, nt = in[1].t->numel, nw = nin == 3 ? in[2].t->numel : 0;
    c->read = td_sat_add(td_sat_add(td_sat_mul(nx, 4), td_sat_mul(nt, 2)), nw);
    c->written = td_sat_add(td_sat_mul(nx, 3), nt);
    c->flops = td_sat_mul(nx, 4);
    c->out_bytes = td_sat_mul(td_sat_add(nt, 1), 8);
    c->temp_bytes = td_sat_mul(td_sat_add(td_sat_add(td_sat_mul(nx, 3), nt), nw), 8);
    return 0;
}

/* ---- pointwise losses: mse, smooth_l1, huber, binary_cross_entropy(_with_logits) ---- */

static int g_scaled(const struct td_node *n, struct td_tensor *g, int64_t terms, struct td_quota *q,
                    struct td_tensor **out, struct td_err *err);

static double beta_of(const struct td_op_args *a)
{
    return a->has_beta ? td_scalar_to_double(a->beta) : 1.0;
}

/* The loss's elementwise terms, then the reduction. */
static int pointwise_make(struct td_tensor **out, const struct td_operand *in, int nin,
                          const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    int rc;
    if ((rc = check_reduction(a, err)) != 0) {
        return rc;
    }
    struct td_tensor *x = in[0].t, *y = nin > 1 ? in[1].t : NULL;
    if (x == NULL || y == NULL) {
        return td_err_set(err, TD_EINVAL, "%s(): argument 'target' must be Tensor",
                          td_ops[a->op].name);
    }
    struct td_tensor *tmp[8] = {NULL};
    struct td_tensor *l = NULL;
    char sa[160], sb[160];
    enum td_dtype dt = td_dtype_promote(x->dtype, y->dtype);
    if (a->op == TD_OP_SMOOTH_L1_LOSS || a->op == TD_OP_HUBER_LOSS) {
        bool huber = a->op == TD_OP_HUBER_LOSS;
        double b = beta_of(a);
        if (!huber && b < 0) {
            return td_err_set(err, TD_EINVAL,
                              "smooth_l1_loss does not support negative values for beta.");
        }
        if (huber && !(b > 0)) {
            return td_err_set(err, TD_EINVAL,
                              "huber_loss does not support non-positive values for delta.");
        }
        /* d = x - y (broadcast, checked first as torch's iterator does) */
        if ((rc = run2(TD_OP_SUB, td_t(x), td_t(y), q, &tmp[0], err)) != 0) {
            goto out;
        }
        if (!td_dtype_is_float(dt)) {
            rc = td_err_set(err, TD_EDTYPE, "\"%s\" not implemented for '%s'",
                            huber ? "huber_cpu" : "smooth_l1_cpu", td_dtype_cname(dt));
            goto out;
        }
        /* |d| < b ? 0.5 d^2 / b : |d| - 0.5 b   (huber: 0.5 d^2 : b (|d| - 0.5 b)) */
        double lin = huber ? b : 1.0, quad = huber ? 0.5 : (b > 0 ? 0.5 / b : 0);
        if ((rc = run1(TD_OP_ABS, td_t(tmp[0]), NULL, q, &tmp[1], err)) != 0 ||
            (rc = run2(TD_OP_LT, td_t(tmp[1]), num(b), q, &tmp[2], err)) != 0 ||
            (rc = run2(TD_OP_MUL, td_t(tmp[0]), td_t(tmp[0]), q, &tmp[3], err)) != 0 ||
            (rc = run2(TD_OP_MUL, td_t(tmp[3]), num(quad), q, &tmp[4], err)) != 0 ||
            (rc = run2(TD_OP_SUB, td_t(tmp[1]), num(0.5 * b), q, &tmp[5], err)) != 0 ||
            (rc = run2(TD_OP_MUL, td_t(tmp[5]), num(lin), q, &tmp[6], err)) != 0 ||
            (rc = run3(TD_OP_WHERE, td_t(tmp[2]), td_t(tmp[4]), td_t(tmp[6]), q, &l, err)) != 0) {
            goto out;
        }
    } else {
        struct td_tensor *w = nin > 2 ? in[2].t : NULL;
        bool logits = a->op == TD_OP_BINARY_CROSS_ENTROPY_WITH_LOGITS;
        const char *fn = logits ? "binary_cross_entropy_with_logits" : "binary_cross_entropy";
        if ((rc = weight_no_grad(w, a, fn, "weight", err)) != 0 ||
            (rc = weight_no_grad(nin > 3 ? in[3].t : NULL, a, fn, "pos_weight", err)) != 0) {
            return rc;
        }
        if (logits) {
            if (!same_shape(x, y)) {
                return td_err_set(err, TD_ESHAPE,
                                  "Target size (torch.Size(%s)) must be the same as input size "
                                  "(torch.Size(%s))",
                                  shape_text(sa, sizeof sa, y), shape_text(sb, sizeof sb, x));
            }
            /* (1 - y) x + log_weight * (log1p(exp(-|x|)) + max(-x, 0)),
            ** log_weight = (pos_weight - 1) y + 1 */
            struct td_tensor *pw = nin > 3 ? in[3].t : NULL;
            struct td_tensor *lw = NULL;
            if ((rc = run2(TD_OP_SUB, num(1.0), td_t(y), q, &tmp[0], err)) != 0 ||
                (rc = run2(TD_OP_MUL, td_t(tmp[0]), td_t(x), q, &tmp[1], err)) != 0 ||
                (rc = run1(TD_OP_ABS, td_t(x), NULL, q, &tmp[2], err)) != 0 ||
                (rc = run1(TD_OP_NEG, td_t(tmp[2]), NULL, q, &tmp[3], err)) != 0 ||
                (rc = run1(TD_OP_EXP, td_t(tmp[3]), NULL, q, &tmp[4], err)) != 0 ||
                (rc = run1(TD_OP_LOG1P, td_t(tmp[4]), NULL, q, &tmp[5], err)) != 0) {
                goto out;
            }
            td_tensor_unref(tmp[2]);
            td_tensor_unref(tmp[3]);
            td_tensor_unref(tmp[4]);
            tmp[2] = tmp[3] = tmp[4] = NULL;
            if ((rc = run1(TD_OP_NEG, td_t(x), NULL, q, &tmp[2], err)) != 0 ||
                (rc = run2(TD_OP_MAXIMUM, td_t(tmp[2]), num(0.0), q, &tmp[3], err)) != 0 ||
                (rc = run2(TD_OP_ADD, td_t(tmp[5]), td_t(tmp[3]), q, &tmp[4], err)) != 0) {
                goto out;
            }
            if (pw != NULL) {
                struct td_tensor *pm = NULL, *pmy = NULL;
                if ((rc = run2(TD_OP_SUB, td_t(pw), num(1.0), q, &pm, err)) == 0 &&
                    (rc = run2(TD_OP_MUL, td_t(pm), td_t(y), q, &pmy, err)) == 0) {
                    rc = run2(TD_OP_ADD, td_t(pmy), num(1.0), q, &lw, err);
                }
                td_tensor_unref(pm);
                td_tensor_unref(pmy);
                if (rc != 0) {
                    goto out;
                }
                td_tensor_unref(tmp[6]);
                tmp[6] = NULL;
                rc = run2(TD_OP_MUL, td_t(lw), td_t(tmp[4]), q, &tmp[6], err);
                td_tensor_unref(lw);
                if (rc != 0) {
                    goto out;
                }
            } else {
                tmp[6] = td_tensor_ref(tmp[4]);
            }
            if ((rc = run2(TD_OP_ADD, td_t(tmp[1]), td_t(tmp[6]), q, &l, err)) != 0) {
                goto out;
            }
        } else {
            if (!same_shape(x, y)) {
                /* torch's Python wrapper refuses before the kernel */
                td_shape_str(sa, sizeof sa, y->shape, y->ndim);
                td_shape_str(sb, sizeof sb, x->shape, x->ndim);
                return td_err_set(err, TD_ESHAPE,
                                  "Using a target size (torch.Size(%s)) that is different to the "
                                  "input size (torch.Size(%s)) is deprecated. Please ensure they "
                                  "have the same size.",
                                  sa, sb);
            }
            if (y->dtype != x->dtype) {
                return td_err_set(err, TD_EDTYPE, "Found dtype %s but expected %s",
                                  td_dtype_cname(y->dtype), td_dtype_cname(x->dtype));
            }
            if (!td_dtype_is_float(x->dtype)) {
                return td_err_set(err, TD_EDTYPE,
                                  "\"binary_cross_entropy\" not implemented for '%s'",
                                  td_dtype_cname(x->dtype));
            }
            /* every input in [0, 1] */
            struct td_tensor *lo = NULL, *hi = NULL;
            if ((rc = run1(TD_OP_MIN, td_t(x), NULL, q, &lo, err)) == 0 &&
                (rc = run1(TD_OP_MAX, td_t(x), NULL, q, &hi, err)) == 0 && x->numel > 0) {
                double vlo = td_elem_load_f64(td_tensor_data(lo), lo->dtype);
                double vhi = td_elem_load_f64(td_tensor_data(hi), hi->dtype);
                if (!(vlo >= 0 && vhi <= 1)) {
                    rc = td_err_set(err, TD_EINVAL,
                                    "all elements of input should be between 0 and 1");
                }
            }
            td_tensor_unref(lo);
            td_tensor_unref(hi);
            if (rc != 0) {
                return rc;
            }
            /* -(y max(log x, -100) + (1 - y) max(log(1 - x), -100)) */
            if ((rc = run1(TD_OP_LOG, td_t(x), NULL, q, &tmp[0], err)) != 0 ||
                (rc = run2(TD_OP_MAXIMUM, td_t(tmp[0]), num(-100.0), q, &tmp[1], err)) != 0 ||
                (rc = run2(TD_OP_SUB, num(1.0), td_t(x), q, &tmp[2], err)) != 0 ||
                (rc = run1(TD_OP_LOG, td_t(tmp[2]), NULL, q, &tmp[3], err)) != 0 ||
                (rc = run2(TD_OP_MAXIMUM, td_t(tmp[3]), num(-100.0), q, &tmp[4], err)) != 0 ||
                (rc = run2(TD_OP_MUL, td_t(y), td_t(tmp[1]), q, &tmp[5], err)) != 0 ||
                (rc = run2(TD_OP_SUB, num(1.0), td_t(y), q, &tmp[6], err)) != 0) {
                goto out;
            }
            struct td_tensor *b2 = NULL, *s = NULL;
            if ((rc = run2(TD_OP_MUL, td_t(tmp[6]), td_t(tmp[4]), q, &b2, err)) == 0 &&
                (rc = run2(TD_OP_ADD, td_t(tmp[5]), td_t(b2), q, &s, err)) == 0) {
                rc = run1(TD_OP_NEG, td_t(s), NULL, q, &l, err);
            }
            td_tensor_unref(b2);
            td_tensor_unref(s);
            if (rc != 0) {
                goto out;
            }
        }
        if (w != NULL) {
            struct td_tensor *lw = NULL;
            if (w->numel > 0 && !logits) {
                /* the weight must broadcast to the input's shape, not beyond it */
                int64_t bs[TD_MAX_DIMS];
                int bn;
                if ((rc = td_broadcast_shapes(x->shape, x->ndim, w->shape, w->ndim, bs, &bn,
                                              err)) != 0) {
                    goto out;
                }
            }
            if ((rc = run2(TD_OP_MUL, td_t(l), td_t(w), q, &lw, err)) != 0) {
                goto out;
            }
            td_tensor_unref(l);
            l = lw;
        }
    }
    rc = reduce(l, a->reduction, q, out, err);
out:
    for (int i = 0; i < 8; i++) {
        td_tensor_unref(tmp[i]);
    }
    td_tensor_unref(l);
    return rc;
}

/* mse_loss(input, target) = (input - target)^2, broadcast and promoted, then reduced. */
int td_make_mse_loss(struct td_tensor **out, const struct td_operand *in, int nin,
                     const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    int rc;
    if ((rc = check_reduction(a, err)) != 0) {
        return rc;
    }
    if (in[1].t == NULL) {
        return td_err_set(err, TD_EINVAL, "mse_loss(): argument 'target' must be Tensor");
    }
    enum td_dtype dt = td_result_type(in, 2);
    if (!td_dtype_is_float(dt)) {
        return td_err_set(err, TD_EDTYPE, "\"mse_cpu\" not implemented for '%s'",
                          td_dtype_cname(dt));
    }
    struct td_tensor *diff = NULL, *sq = NULL;
    if ((rc = run2(TD_OP_SUB, in[0], in[1], q, &diff, err)) == 0 &&
        (rc = run2(TD_OP_MUL, td_t(diff), td_t(diff), q, &sq, err)) == 0) {
        rc = reduce(sq, a->reduction, q, out, err);
    }
    td_tensor_unref(sq);
    td_tensor_unref(diff);
    return rc;
}

/* mse_loss: d/da = 2 (a - b) g (/ N for the mean), d/db = -that */
int td_bw_mse_loss(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                   struct td_quota *q, struct td_err *err)
{
    struct td_tensor *d = NULL, *s = NULL, *gs = NULL, *ga = NULL;
    int rc;
    if ((rc = run2(TD_OP_SUB, n->in[0], n->in[1], q, &d, err)) != 0) {
        return rc;
    }
    if ((rc = run2(TD_OP_MUL, td_t(d), num(2.0), q, &s, err)) == 0 &&
        (rc = g_scaled(n, g, d->numel, q, &gs, err)) == 0 &&
        (rc = run2(TD_OP_MUL, td_t(s), td_t(gs), q, &ga, err)) == 0) {
        gin[0] = td_tensor_ref(ga);
        rc = run1(TD_OP_NEG, td_t(ga), NULL, q, &gin[1], err);
    }
    td_tensor_unref(d);
    td_tensor_unref(s);
    td_tensor_unref(gs);
    td_tensor_unref(ga);
    return rc;
}

int td_make_smooth_l1_loss(struct td_tensor **out, const struct td_operand *in, int nin,
                           const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    return pointwise_make(out, in, nin, a, q, err);
}

int td_make_huber_loss(struct td_tensor **out, const struct td_operand *in, int nin,
                       const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    return pointwise_make(out, in, nin, a, q, err);
}

int td_make_binary_cross_entropy(struct td_tensor **out, const struct td_operand *in, int nin,
                                 const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    if (nin < 2 || nin > 3 || in[0].t == NULL || in[1].t == NULL || (nin == 3 && in[2].t == NULL)) {
        return td_err_set(err, TD_EINVAL,
                          "binary_cross_entropy() takes input, target and an optional weight, "
                          "all tensors");
    }
    return pointwise_make(out, in, nin, a, q, err);
}

/* Operands: input, target, weight, pos_weight; a number stands for an absent weight. */
int td_make_binary_cross_entropy_with_logits(struct td_tensor **out, const struct td_operand *in,
                                             int nin, const struct td_op_args *a,
                                             struct td_quota *q, struct td_err *err)
{
    if (nin < 2 || nin > 4 || in[0].t == NULL || in[1].t == NULL || (nin == 4 && in[3].t == NULL)) {
        return td_err_set(err, TD_EINVAL,
                          "binary_cross_entropy_with_logits() takes input, target, weight and "
                          "pos_weight (a number for an absent weight)");
    }
    struct td_operand local[4] = {in[0], in[1], {0}, {0}};
    int ln = 2;
    if (nin > 2) {
        if (in[2].t == NULL) {
            /* no weight: a pos_weight alone keeps its place with a number before it */
            struct td_tensor *one = NULL;
            int rc = td_tensor_full(&one, in[0].t->dtype, NULL, 0, td_scalar_f(1.0), q, err);
            if (rc != 0) {
                return rc;
            }
            local[2] = td_t(one);
            local[3] = nin > 3 ? in[3] : td_t(NULL);
            rc = pointwise_make(out, local, nin, a, q, err);
            td_tensor_unref(one);
            return rc;
        }
        local[ln++] = in[2];
        if (nin > 3) {
            local[ln++] = in[3];
        }
    }
    return pointwise_make(out, local, ln, a, q, err);
}

/* g shaped for the loss's elementwise terms: g / N for "mean" (N the terms), else g. */
static int g_scaled(const struct td_node *n, struct td_tensor *g, int64_t terms, struct td_quota *q,
                    struct td_tensor **out, struct td_err *err)
{
    if (n->args.reduction == TD_REDUCTION_MEAN) {
        return run2(TD_OP_DIV, td_t(g), num((double)terms), q, out, err);
    }
    *out = td_tensor_ref(g);
    return 0;
}

/* g_scaled's g times the weight w when there is one (the binary cross entropies). */
static int g_weighted(const struct td_node *n, struct td_tensor *g, int64_t terms,
                      struct td_tensor *w, struct td_quota *q, struct td_tensor **out,
                      struct td_err *err)
{
    struct td_tensor *gx = NULL;
    int rc;
    if ((rc = g_scaled(n, g, terms, q, &gx, err)) != 0) {
        return rc;
    }
    if (w != NULL) {
        struct td_tensor *gw = NULL;
        if ((rc = run2(TD_OP_MUL, td_t(gx), td_t(w), q, &gw, err)) != 0) {
            td_tensor_unref(gx);
            return rc;
        }
        td_tensor_unref(gx);
        gx = gw;
    }
    *out = gx;
    return 0;
}

static int64_t bcast_numel(const struct td_tensor *x, const struct td_tensor *y)
{
    int64_t s[TD_MAX_DIMS];
    int nd;
    if (td_broadcast_shapes(x->shape, x->ndim, y->shape, y->ndim, s, &nd, NULL) != 0) {
        return x->numel;
    }
    int64_t k = 1;
    for (int i = 0; i < nd; i++) {
        k = td_sat_mul(k, s[i]);
    }
    return k;
}

/* smooth_l1 / huber: d/dx = (|d| < b ? d * quad2 : lin * sign(d)) g, d/dy = -that */
static int bw_l1ish(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                    struct td_quota *q, struct td_err *err)
{
    bool huber = n->op == TD_OP_HUBER_LOSS;
    double b = beta_of(&n->args);
    double lin = huber ? b : 1.0, quad = huber ? 1.0 : (b > 0 ? 1.0 / b : 0);
    struct td_tensor *t[7] = {NULL}, *gx = NULL;
    int rc;
    if ((rc = run2(TD_OP_SUB, n->in[0], n->in[1], q, &t[0], err)) == 0 &&
        (rc = run1(TD_OP_ABS, td_t(t[0]), NULL, q, &t[1], err)) == 0 &&
        (rc = run2(TD_OP_LT, td_t(t[1]), num(b), q, &t[2], err)) == 0 &&
        (rc = run2(TD_OP_MUL, td_t(t[0]), num(quad), q, &t[3], err)) == 0 &&
        (rc = run1(TD_OP_SIGN, td_t(t[0]), NULL, q, &t[4], err)) == 0 &&
        (rc = run2(TD_OP_MUL, td_t(t[4]), num(lin), q, &t[5], err)) == 0 &&
        (rc = run3(TD_OP_WHERE, td_t(t[2]), td_t(t[3]), td_t(t[5]), q, &t[6], err)) == 0 &&
        (rc = g_scaled(n, g, t[0]->numel, q, &gx, err)) == 0) {
        struct td_tensor *r = NULL;
        if ((rc = run2(TD_OP_MUL, td_t(t[6]), td_t(gx), q, &r, err)) == 0) {
            gin[0] = td_tensor_ref(r);
            rc = run1(TD_OP_NEG, td_t(r), NULL, q, &gin[1], err);
        }
        td_tensor_unref(r);
    }
    for (int i = 0; i < 7; i++) {
        td_tensor_unref(t[i]);
    }
    td_tensor_unref(gx);
    return rc;
}

int td_bw_smooth_l1_loss(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                         struct td_quota *q, struct td_err *err)
{
    return bw_l1ish(n, g, gin, q, err);
}

int td_bw_huber_loss(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                     struct td_quota *q, struct td_err *err)
{
    return bw_l1ish(n, g, gin, q, err);
}

/* binary_cross_entropy: d/dx = w g (x - y) / max((1 - x) x, 1e-12);
** d/dy = w g (log(1 - x) - log(x)) (torch's target gradient, without the -100 clamp) */
int td_bw_binary_cross_entropy(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                               struct td_quota *q, struct td_err *err)
{
    struct td_tensor *x = n->in[0].t, *y = n->in[1].t;
    struct td_tensor *w = n->nin > 2 ? n->in[2].t : NULL;
    struct td_tensor *t[9] = {NULL}, *gx = NULL;
    int rc;
    if ((rc = g_weighted(n, g, x->numel, w, q, &gx, err)) != 0) {
        return rc;
    }
    if ((rc = run2(TD_OP_SUB, num(1.0), td_t(x), q, &t[0], err)) == 0 &&
        (rc = run2(TD_OP_MUL, td_t(t[0]), td_t(x), q, &t[1], err)) == 0 &&
        (rc = run2(TD_OP_MAXIMUM, td_t(t[1]), num(1e-12), q, &t[2], err)) == 0 &&
        (rc = run2(TD_OP_SUB, td_t(x), td_t(y), q, &t[3], err)) == 0 &&
        (rc = run2(TD_OP_DIV, td_t(t[3]), td_t(t[2]), q, &t[4], err)) == 0) {
        rc = run2(TD_OP_MUL, td_t(t[4]), td_t(gx), q, &gin[0], err);
    }
    if (rc == 0 && y->requires_grad) {
        if ((rc = run1(TD_OP_LOG, td_t(t[0]), NULL, q, &t[5], err)) == 0 &&
            (rc = run1(TD_OP_LOG, td_t(x), NULL, q, &t[6], err)) == 0 &&
            (rc = run2(TD_OP_SUB, td_t(t[5]), td_t(t[6]), q, &t[7], err)) == 0) {
            rc = run2(TD_OP_MUL, td_t(t[7]), td_t(gx), q, &gin[1], err);
        }
    }
    for (int i = 0; i < 9; i++) {
        td_tensor_unref(t[i]);
    }
    td_tensor_unref(gx);
    return rc;
}

/* binary_cross_entropy_with_logits: d/dx = w g ((p y + 1 - y) sigmoid(x) - p y) (p: pos_weight,
** 1 when absent); d/dy = w g (log_weight' ...): torch's -w g (x + (p - 1) ... ) simplified to
** w g ((1 - p) log_sigmoid... ) — here  d/dy = -w g (x + (p - 1) * (-logsigmoid(x)))... */
int td_bw_binary_cross_entropy_with_logits(const struct td_node *n, struct td_tensor *g,
                                           struct td_tensor **gin, struct td_quota *q,
                                           struct td_err *err)
{
    struct td_tensor *x = n->in[0].t, *y = n->in[1].t;
    struct td_tensor *w = n->nin > 2 ? n->in[2].t : NULL;
    struct td_tensor *pw = n->nin > 3 ? n->in[3].t : NULL;
    struct td_tensor *t[10] = {NULL}, *gx = NULL;
    int rc;
    if ((rc = g_weighted(n, g, bcast_numel(x, y), w, q, &gx, err)) != 0) {
        return rc;
    }
    /* s = sigmoid(x); py = p y (y when no pos_weight) */
    if ((rc = run1(TD_OP_SIGMOID, td_t(x), NULL, q, &t[0], err)) != 0) {
        goto out;
    }
    if (pw != NULL) {
        rc = run2(TD_OP_MUL, td_t(pw), td_t(y), q, &t[1], err);
    } else {
        t[1] = td_tensor_ref(y);
    }
    /* d/dx = ((py + 1 - y) s - py) g */
    if (rc != 0 || (rc = run2(TD_OP_SUB, td_t(t[1]), td_t(y), q, &t[2], err)) != 0 ||
        (rc = run2(TD_OP_ADD, td_t(t[2]), num(1.0), q, &t[3], err)) != 0 ||
        (rc = run2(TD_OP_MUL, td_t(t[3]), td_t(t[0]), q, &t[4], err)) != 0 ||
        (rc = run2(TD_OP_SUB, td_t(t[4]), td_t(t[1]), q, &t[5], err)) != 0 ||
        (rc = run2(TD_OP_MUL, td_t(t[5]), td_t(gx), q, &gin[0], err)) != 0) {
        goto out;
    }
    if (y->requires_grad) {
        /* d/dy = -(x + (p - 1) log(sigmoid(x)))... torch: (1 - p) log_sigmoid(x) - x; without
        ** pos_weight: -x */
        if (pw != NULL) {
            if ((rc = run1(TD_OP_LOG, td_t(t[0]), NULL, q, &t[6], err)) != 0 ||
                (rc = run2(TD_OP_SUB, num(1.0), td_t(pw), q, &t[7], err)) != 0 ||
                (rc = run2(TD_OP_MUL, td_t(t[7]), td_t(t[6]), q, &t[8], err)) != 0 ||
                (rc = run2(TD_OP_SUB, td_t(t[8]), td_t(x), q, &t[9], err)) != 0) {
                goto out;
            }
        } else if ((rc = run1(TD_OP_NEG, td_t(x), NULL, q, &t[9], err)) != 0) {
            goto out;
        }
        rc = run2(TD_OP_MUL, td_t(t[9]), td_t(gx), q, &gin[1], err);
    }
out:
    for (int i = 0; i < 10; i++) {
        td_tensor_unref(t[i]);
    }
    td_tensor_unref(gx);
    return rc;
}

/* Reads and writes of a pointwise loss: its operands at their broadcast size, about eight
** elementwise passes, as many temporaries. */
int td_cost_pointwise_loss(const struct td_operand *in, int nin, const struct td_op_args *a,
                           struct td_cost *c)
{
    (void)a;
    if (nin < 2 || in[0].t == NULL) {
        return -1;
    }
    int64_t n = in[0].t->numel;
    for (int i = 1; i < nin; i++) {
        if (in[i].t != NULL) {
            int64_t s[TD_MAX_DIMS];
            int nd;
            const struct td_tensor *o = in[i].t;
            if (td_broadcast_shapes(in[0].t->shape, in[0].t->ndim, o->shape, o->ndim, s, &nd,
                                    NULL) != 0) {
                return -1;
            }
            int64_t k = 1;
            for (int d = 0; d < nd; d++) {
                k = td_sat_mul(k, s[d]);
            }
            n = k > n ? k : n;
        }
    }
    c->read = td_sat_mul(n, 12);
    c->written = td_sat_mul(n, 8);
    c->flops = td_sat_mul(n, 8);
    c->out_bytes = td_sat_mul(n, 8);
    c->temp_bytes = td_sat_mul(n, 64);
    return 0;
}

/* ---- activations ---- */

int td_dtype_rule_activation(const struct td_operand *in, int nin, const struct td_op_args *a,
                             enum td_dtype *compute, enum td_dtype *result, struct td_err *err)
{
    (void)nin;
    const struct td_tensor *x = in[0].t;
    if (x == NULL) {
        return td_err_set(err, TD_EINVAL, "%s(): argument 'input' must be Tensor",
                          td_ops[a->op].name);
    }
    if (a->op == TD_OP_HARDTANH) {
        if (x->dtype == TD_DTYPE_BOOL) {
            return td_err_set(err, TD_EDTYPE, "\"clamp_scalar_cpu\" not implemented for 'Bool'");
        }
    } else if (!td_dtype_is_float(x->dtype)) {
        const char *k = a->op == TD_OP_LOGSIGMOID   ? "log_sigmoid_cpu"
                        : a->op == TD_OP_LEAKY_RELU ? "leaky_relu_cpu"
                        : a->op == TD_OP_SILU       ? "silu_cpu"
                        : a->op == TD_OP_SOFTPLUS   ? "softplus_cpu"
                                                    : "elu_cpu";
        return td_err_set(err, TD_EDTYPE, "\"%s\" not implemented for '%s'", k,
                          td_dtype_cname(x->dtype));
    }
    *compute = *result = x->dtype;
    return 0;
}

static double scalar_or(bool has, struct td_scalar s, double dflt)
{
    return has ? td_scalar_to_double(s) : dflt;
}

/* The activation of x, computed out of place from core ops. */
static int activation(const struct td_op_args *a, struct td_tensor *x, struct td_quota *q,
                      struct td_tensor **out, struct td_err *err)
{
    struct td_tensor *t[6] = {NULL};
    int rc;
    switch (a->op) {
    case TD_OP_LEAKY_RELU: { /* x > 0 ? x : x * slope */
        double slope = scalar_or(a->has_value, a->value, 0.01);
        if ((rc = run2(TD_OP_GT, td_t(x), num(0), q, &t[0], err)) == 0 &&
            (rc = run2(TD_OP_MUL, td_t(x), num(slope), q, &t[1], err)) == 0) {
            rc = run3(TD_OP_WHERE, td_t(t[0]), td_t(x), td_t(t[1]), q, out, err);
        }
        break;
    }
    case TD_OP_SILU: /* x * sigmoid(x) */
        if ((rc = run1(TD_OP_SIGMOID, td_t(x), NULL, q, &t[0], err)) == 0) {
            rc = run2(TD_OP_MUL, td_t(x), td_t(t[0]), q, out, err);
        }
        break;
    case TD_OP_SOFTPLUS: { /* x * beta > threshold ? x : log1p(exp(x * beta)) / beta */
        double beta = scalar_or(a->has_beta, a->beta, 1.0);
        double thr = scalar_or(a->has_value, a->value, 20.0);
        if ((rc = run2(TD_OP_MUL, td_t(x), num(beta), q, &t[0], err)) == 0 &&
            (rc = run2(TD_OP_GT, td_t(t[0]), num(thr), q, &t[1], err)) == 0 &&
            (rc = run1(TD_OP_EXP, td_t(t[0]), NULL, q, &t[2], err)) == 0 &&
            (rc = run1(TD_OP_LOG1P, td_t(t[2]), NULL, q, &t[3], err)) == 0 &&
            (rc = run2(TD_OP_DIV, td_t(t[3]), num(beta), q, &t[4], err)) == 0) {
            rc = run3(TD_OP_WHERE, td_t(t[1]), td_t(x), td_t(t[4]), q, out, err);
        }
        break;
    }
    case TD_OP_ELU: { /* x > 0 ? x : alpha * expm1(x) */
        double alpha = scalar_or(a->has_alpha, a->alpha, 1.0);
        if ((rc = run2(TD_OP_GT, td_t(x), num(0), q, &t[0], err)) == 0 &&
            (rc = run1(TD_OP_EXPM1, td_t(x), NULL, q, &t[1], err)) == 0 &&
            (rc = run2(TD_OP_MUL, td_t(t[1]), num(alpha), q, &t[2], err)) == 0) {
            rc = run3(TD_OP_WHERE, td_t(t[0]), td_t(x), td_t(t[2]), q, out, err);
        }
        break;
    }
    case TD_OP_HARDTANH: {
        struct td_op_args ca;
        td_op_args_init(&ca);
        ca.has_min = ca.has_max = true;
        ca.min = a->has_min ? a->min : td_scalar_f(-1.0);
        ca.max = a->has_max ? a->max : td_scalar_f(1.0);
        rc = run1(TD_OP_CLAMP, td_t(x), &ca, q, out, err);
        break;
    }
    default: /* logsigmoid: min(x, 0) - log1p(exp(-|x|)) */
        if ((rc = run2(TD_OP_MINIMUM, td_t(x), num(0), q, &t[0], err)) == 0 &&
            (rc = run1(TD_OP_ABS, td_t(x), NULL, q, &t[1], err)) == 0 &&
            (rc = run1(TD_OP_NEG, td_t(t[1]), NULL, q, &t[2], err)) == 0 &&
            (rc = run1(TD_OP_EXP, td_t(t[2]), NULL, q, &t[3], err)) == 0 &&
            (rc = run1(TD_OP_LOG1P, td_t(t[3]), NULL, q, &t[4], err)) == 0) {
            rc = run2(TD_OP_SUB, td_t(t[0]), td_t(t[4]), q, out, err);
        }
        break;
    }
    for (int i = 0; i < 6; i++) {
        td_tensor_unref(t[i]);
    }
    return rc;
}

/* Forward kernel: the activation of in[0] into out (in[0] itself in place). */
int td_fwd_activation(struct td_tensor *out, const struct td_operand *in, int nin,
                      const struct td_op_args *a, enum td_dtype compute, struct td_err *err)
{
    (void)nin;
    (void)compute;
    struct td_tensor *r = NULL;
    int rc = activation(a, in[0].t, a->quota, &r, err);
    if (rc == 0) {
        rc = td_cast_copy(out, r, err);
    }
    td_tensor_unref(r);
    return rc;
}

/* The in-place forms of leaky_relu and elu are torch's *Backward1 nodes. */
const char *td_grad_fn_activation(const struct td_node *n)
{
    if (n->op == TD_OP_LEAKY_RELU) {
        return n->args.inplace ? "LeakyReluBackward1" : "LeakyReluBackward0";
    }
    return n->args.inplace ? "EluBackward1" : "EluBackward0";
}

/* Backward: g times the activation's derivative at the saved input. */
int td_bw_activation(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                     struct td_quota *q, struct td_err *err)
{
    const struct td_op_args *a = &n->args;
    struct td_operand x = n->in[0];
    struct td_tensor *t[6] = {NULL}, *d = NULL;
    int rc;
    switch (n->op) {
    case TD_OP_LEAKY_RELU: /* x > 0 ? 1 : slope */
        if ((rc = run2(TD_OP_GT, x, num(0), q, &t[0], err)) == 0) {
            rc = run3(TD_OP_WHERE, td_t(t[0]), num(1.0),
                      num(scalar_or(a->has_value, a->value, 0.01)), q, &t[1], err);
        }
        if (rc == 0) {
            rc = run2(TD_OP_MUL, td_t(t[1]), td_t(g), q, &gin[0], err);
        }
        break;
    case TD_OP_SILU: /* s (1 + x (1 - s)) */
        if ((rc = run1(TD_OP_SIGMOID, x, NULL, q, &t[0], err)) == 0 &&
            (rc = run2(TD_OP_SUB, num(1.0), td_t(t[0]), q, &t[1], err)) == 0 &&
            (rc = run2(TD_OP_MUL, x, td_t(t[1]), q, &t[2], err)) == 0 &&
            (rc = run2(TD_OP_ADD, td_t(t[2]), num(1.0), q, &t[3], err)) == 0 &&
            (rc = run2(TD_OP_MUL, td_t(t[0]), td_t(t[3]), q, &d, err)) == 0) {
            rc = run2(TD_OP_MUL, td_t(d), td_t(g), q, &gin[0], err);
        }
        break;
    case TD_OP_SOFTPLUS: { /* x beta > threshold ? 1 : sigmoid(x beta) */
        double beta = scalar_or(a->has_beta, a->beta, 1.0);
        double thr = scalar_or(a->has_value, a->value, 20.0);
        if ((rc = run2(TD_OP_MUL, x, num(beta), q, &t[0], err)) == 0 &&
            (rc = run2(TD_OP_GT, td_t(t[0]), num(thr), q, &t[1], err)) == 0 &&
            (rc = run1(TD_OP_SIGMOID, td_t(t[0]), NULL, q, &t[2], err)) == 0 &&
            (rc = run3(TD_OP_WHERE, td_t(t[1]), num(1.0), td_t(t[2]), q, &d, err)) == 0) {
            rc = run2(TD_OP_MUL, td_t(d), td_t(g), q, &gin[0], err);
        }
        break;
    }
    case TD_OP_ELU: { /* x > 0 ? 1 : alpha exp(x) */
        double alpha = scalar_or(a->has_alpha, a->alpha, 1.0);
        if ((rc = run2(TD_OP_GT, x, num(0), q, &t[0], err)) == 0 &&
            (rc = run1(TD_OP_EXP, x, NULL, q, &t[1], err)) == 0 &&
            (rc = run2(TD_OP_MUL, td_t(t[1]), num(alpha), q, &t[2], err)) == 0 &&
            (rc = run3(TD_OP_WHERE, td_t(t[0]), num(1.0), td_t(t[2]), q, &d, err)) == 0) {
            rc = run2(TD_OP_MUL, td_t(d), td_t(g), q, &gin[0], err);
        }
        break;
    }
    case TD_OP_HARDTANH: { /* min < x < max ? 1 : 0 */
        double lo = scalar_or(a->has_min, a->min, -1.0), hi = scalar_or(a->has_max, a->max, 1.0);
        if ((rc = run2(TD_OP_GT, x, num(lo), q, &t[0], err)) == 0 &&
            (rc = run2(TD_OP_LT, x, num(hi), q, &t[1], err)) == 0 &&
            (rc = run2(TD_OP_LOGICAL_AND, td_t(t[0]), td_t(t[1]), q, &t[2], err)) == 0) {
            rc = run3(TD_OP_WHERE, td_t(t[2]), td_t(g), num(0.0), q, &gin[0], err);
        }
        break;
    }
    default: /* logsigmoid: sigmoid(-x) */
        if ((rc = run1(TD_OP_NEG, x, NULL, q, &t[0], err)) == 0 &&
            (rc = run1(TD_OP_SIGMOID, td_t(t[0]), NULL, q, &d, err)) == 0) {
            rc = run2(TD_OP_MUL, td_t(d), td_t(g), q, &gin[0], err);
        }
        break;
    }
    for (int i = 0; i < 6; i++) {
        td_tensor_unref(t[i]);
    }
    td_tensor_unref(d);
    return rc;
}

/* An activation: about six elementwise passes over the input, as many temporaries. */
int td_cost_activation(const struct td_operand *in, int nin, const struct td_op_args *a,
                       struct td_cost *c)
{
    if (nin != 1 || in[0].t == NULL) {
        return -1;
    }
    int64_t n = in[0].t->numel;
    enum td_dtype dt = in[0].t->dtype;
    int64_t es = (int64_t)td_dtype_size(dt);
    c->read = td_sat_mul(n, 8);
    c->written = td_sat_mul(n, 7);
    c->flops = td_sat_mul(n, 6);
    c->out_bytes = a->inplace ? 0 : td_sat_mul(n, es);
    c->temp_bytes = td_sat_mul(td_sat_mul(n, 6), es);
    return 0;
}
