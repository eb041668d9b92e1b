/* server/core/ops/norm.c — torch.nn.functional's normalisation, embedding, padding and
** feature-dropout ops: layer_norm, batch_norm, embedding, one_hot, pad (constant), pad_gather
** (pad's reflect, replicate and circular modes) and dropout_noise (dropout1d/2d/3d's channel
** mask); their backward rules, grad_fn hook and cost rules.
**
** Each checks its inputs the way torch 1.13 does (and says so in torch's words), then is built
** from the core's tested ops through td_op_apply, so every step handles any strides and dtypes,
** checks cancellation and charges its intermediates to the caller's quota: layer_norm is
** (x - mean) * rsqrt(var + eps) * w + b over the trailing dims, batch_norm the same per channel
** (updating running_mean / running_var in place when training, as torch), embedding an
** index_select of weight's rows, one_hot a comparison with arange, pad a full tensor with the
** input copied into its middle, pad_gather an index_select per padded dim, dropout_noise
** bernoulli_ and div_ on a [N, C, 1, ...] tensor. Optional tensor operands (weight=None ...)
** travel as the given ones in order; td_op_args.absent has bit k set for optional operand k
** that is None. dropout, normalize, cosine_similarity, pairwise_distance and bilinear are
** composites in the Python client (nn/_f_misc.py), as torch composes them.
*/
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../../base/checked.h"
#include "../cancel.h"
#include "family.h"

static int64_t esize_of(enum td_dtype dt)
{
    return td_dtype_is_valid((int)dt) ? (int64_t)td_dtype_size(dt) : 8;
}

static int64_t esize(const struct td_tensor *t)
{
    return esize_of(t->dtype);
}

/* td_op_apply out of place on one or two tensors, no grad recorded. */
static int run(enum td_op_id op, struct td_tensor *a, struct td_tensor *b,
               const struct td_op_args *args, struct td_quota *q, struct td_tensor **out,
               struct td_err *err)
{
    struct td_operand in[2] = {{.t = a}, {.t = b}};
    return td_op_apply(op, in, b != NULL ? 2 : 1, args, false, q, out, err);
}

/* a <op> number */
static int run_s(enum td_op_id op, struct td_tensor *a, double s, struct td_quota *q,
                 struct td_tensor **out, struct td_err *err)
{
    struct td_operand in[2] = {{.t = a}, {.t = NULL, .s = td_scalar_f(s)}};
    return td_op_apply(op, in, 2, NULL, false, q, out, err);
}

/* A reduction over dims[0..n) with keepdim (sum, mean, or var with correction 0). */
static int reduce(enum td_op_id op, struct td_tensor *x, const int64_t *dims, int n,
                  struct td_quota *q, struct td_tensor **out, struct td_err *err)
{
    struct td_op_args a;
    td_op_args_init(&a);
    memcpy(a.dims, dims, (size_t)n * sizeof *dims);
    a.ndims = n;
    a.has_dims = true;
    a.keepdim = true;
    a.correction = 0;
    return run(op, x, NULL, &a, q, out, err);
}

/* x viewed (or copied) as shape[0..n). */
static int reshape(struct td_tensor *x, const int64_t *shape, int n, struct td_quota *q,
                   struct td_tensor **out, struct td_err *err)
{
    struct td_op_args a;
    td_op_args_init(&a);
    memcpy(a.dims, shape, (size_t)n * sizeof *shape);
    a.ndims = n;
    a.has_dims = true;
    return run(TD_OP_RESHAPE, x, NULL, &a, q, out, err);
}

/* "[2, 3]" into buf */
static const char *shape_text(const int64_t *shape, int n, char *buf, size_t cap)
{
    size_t len = 0;
    buf[len++] = '[';
    buf[len] = '\0';
    for (int i = 0; i < n && len < cap; i++) {
        len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? ", " : "", (long long)shape[i]);
    }
    if (len + 2 <= cap) {
        buf[len++] = ']';
        buf[len] = '\0';
    }
    return buf;
}

/* Binds the optional operands: the first `fixed` operands are required; then `nopt` optional
** ones, each present unless its bit in `absent` is set, the present ones in order. slot[k] is
** the operand index of optional k, or -1. */
static int bind_optional(const char *name, const struct td_operand *in, int nin, int fixed,
                         int nopt, uint64_t absent, int *slot, struct td_err *err)
{
    int next = fixed;
    for (int k = 0; k < nopt; k++) {
        slot[k] = -1;
        if (!(absent & ((uint64_t)1 << k)) && next < nin) {
            slot[k] = next++;
        }
    }
    if (nin < fixed || next != nin) {
        return td_err_set(err, TD_EINVAL, "%s() got %d tensors, which its arguments do not name",
                          name, nin);
    }
    for (int i = 0; i < nin; i++) {
        if (in[i].t == NULL) {
            return td_err_set(err, TD_EINVAL, "%s(): every operand must be a Tensor, not a number",
                              name);
        }
    }
    return 0;
}

static struct td_tensor *opt(const struct td_operand *in, const int *slot, int k)
{
    return slot[k] >= 0 ? in[slot[k]].t : NULL;
}

/* ---- layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5) ---- */

enum { LN_W, LN_B };

static int layer_norm_check(const struct td_operand *in, int nin, const struct td_op_args *a,
                            int *slot, struct td_err *err)
{
    int rc;
    if ((rc = bind_optional("layer_norm", in, nin, 1, 2, a->absent, slot, err)) != 0) {
        return rc;
    }
    const struct td_tensor *x = in[0].t;
    char b1[256], b2[256];
    int k = a->ndims;
    if (k < 1) {
        return td_err_set(err, TD_ESHAPE,
                          "Expected normalized_shape to be at least 1-dimensional, i.e., "
                          "containing at least one element, but got normalized_shape = []");
    }
    const char *names[2] = {"weight", "bias"};
    for (int j = 0; j < 2; j++) {
        const struct td_tensor *p = opt(in, slot, j);
        if (p != NULL && (p->ndim != k || memcmp(p->shape, a->dims, (size_t)k * 8) != 0)) {
            return td_err_set(err, TD_ESHAPE,
                              "Expected %s to be of same shape as normalized_shape, but got %s "
                              "of shape %s and normalized_shape = %s",
                              names[j], names[j], shape_text(p->shape, p->ndim, b1, sizeof b1),
                              shape_text(a->dims, k, b2, sizeof b2));
        }
    }
    bool fits = x->ndim >= k;
    for (int i = 0; fits && i < k; i++) {
        fits = x->shape[x->ndim - k + i] == a->dims[i];
    }
    if (!fits) {
        char b3[256];
        return td_err_set(err, TD_ESHAPE,
                          "Given normalized_shape=%s, expected input with shape [*, %s, but got "
                          "input of size%s",
                          shape_text(a->dims, k, b1, sizeof b1),
                          shape_text(a->dims, k, b2, sizeof b2) + 1,
                          shape_text(x->shape, x->ndim, b3, sizeof b3));
    }
    return 0;
}

/* The trailing k dims of an n-dim tensor, as a dims list. */
static int trailing(int n, int k, int64_t *dims)
{
    for (int i = 0; i < k; i++) {
        dims[i] = n - k + i;
    }
    return k;
}

/* xhat = (x - mean) * rstd, with mean and rstd over dims (rstd = rsqrt(var + eps)). */
static int normalise(struct td_tensor *x, const int64_t *dims, int nd, double eps,
                     struct td_quota *q, struct td_tensor **xhat, struct td_tensor **rstd_out,
                     struct td_err *err)
{
    struct td_tensor *mean = NULL, *var = NULL, *ve = NULL, *rstd = NULL, *xc = NULL;
    int rc;
    if ((rc = reduce(TD_OP_MEAN, x, dims, nd, q, &mean, err)) == 0 &&
        (rc = reduce(TD_OP_VAR, x, dims, nd, q, &var, err)) == 0 &&
        (rc = run_s(TD_OP_ADD, var, eps, q, &ve, err)) == 0 &&
        (rc = run(TD_OP_RSQRT, ve, NULL, NULL, q, &rstd, err)) == 0 &&
        (rc = run(TD_OP_SUB, x, mean, NULL, q, &xc, err)) == 0) {
        rc = run(TD_OP_MUL, xc, rstd, NULL, q, xhat, err);
    }
    if (rc == 0 && rstd_out != NULL) {
        *rstd_out = td_tensor_ref(rstd);
    }
    td_tensor_unref(mean);
    td_tensor_unref(var);
    td_tensor_unref(ve);
    td_tensor_unref(rstd);
    td_tensor_unref(xc);
    return rc;
}

/* y * w + b, each optional (w and b already shaped to broadcast against y). Takes y. */
static int affine(struct td_tensor *y, struct td_tensor *w, struct td_tensor *b, struct td_quota *q,
                  struct td_tensor **out, struct td_err *err)
{
    struct td_tensor *t = NULL;
    int rc = 0;
    if (w != NULL) {
        rc = run(TD_OP_MUL, y, w, NULL, q, &t, err);
        td_tensor_unref(y);
        y = t;
        if (rc != 0) {
            return rc;
        }
    }
    if (b != NULL) {
        rc = run(TD_OP_ADD, y, b, NULL, q, &t, err);
        td_tensor_unref(y);
        y = t;
        if (rc != 0) {
            return rc;
        }
    }
    *out = y;
    return 0;
}

int td_make_layer_norm(struct td_tensor **out, const struct td_operand *in, int nin,
                       const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    int slot[2], rc;
    if ((rc = layer_norm_check(in, nin, a, slot, err)) != 0) {
        return rc;
    }
    struct td_tensor *x = in[0].t;
    if (!td_dtype_is_float(x->dtype)) {
        return td_err_set(err, TD_EDTYPE, "\"LayerNormKernelImpl\" not implemented for '%s'",
                          td_dtype_cname(x->dtype));
    }
    for (int j = 0; j < 2; j++) {
        const struct td_tensor *p = opt(in, slot, j);
        if (p != NULL && p->dtype != x->dtype) {
            return td_err_set(err, TD_EDTYPE, "expected scalar type %s but found %s",
                              td_dtype_cname(x->dtype), td_dtype_cname(p->dtype));
        }
    }
    if (x->numel == 0) {
        return td_tensor_empty(out, x->dtype, x->shape, x->ndim, q, err);
    }
    int64_t dims[TD_MAX_DIMS];
    int nd = trailing(x->ndim, a->ndims, dims);
    struct td_tensor *y = NULL;
    if ((rc = normalise(x, dims, nd, a->eps, q, &y, NULL, err)) != 0) {
        return rc;
    }
    return affine(y, opt(in, slot, LN_W), opt(in, slot, LN_B), q, out, err);
}

/* dx = rstd * (gh - mean(gh) - xhat * mean(gh * xhat)) over the normalised dims, gh = g * w;
** the caller gets gx in x's shape. */
static int norm_dx(struct td_tensor *g, struct td_tensor *w, struct td_tensor *xhat,
                   struct td_tensor *rstd, const int64_t *dims, int nd, struct td_quota *q,
                   struct td_tensor **gx, struct td_err *err)
{
    struct td_tensor *gh = NULL, *m1 = NULL, *gx2 = NULL, *m2 = NULL, *t1 = NULL, *t2 = NULL;
    struct td_tensor *t3 = NULL;
    int rc;
    if (w != NULL) {
        rc = run(TD_OP_MUL, g, w, NULL, q, &gh, err);
    } else {
        gh = td_tensor_ref(g);
        rc = 0;
    }
    if (rc == 0 && (rc = reduce(TD_OP_MEAN, gh, dims, nd, q, &m1, err)) == 0 &&
        (rc = run(TD_OP_MUL, gh, xhat, NULL, q, &gx2, err)) == 0 &&
        (rc = reduce(TD_OP_MEAN, gx2, dims, nd, q, &m2, err)) == 0 &&
        (rc = run(TD_OP_SUB, gh, m1, NULL, q, &t1, err)) == 0 &&
        (rc = run(TD_OP_MUL, xhat, m2, NULL, q, &t2, err)) == 0 &&
        (rc = run(TD_OP_SUB, t1, t2, NULL, q, &t3, err)) == 0) {
        rc = run(TD_OP_MUL, t3, rstd, NULL, q, gx, err);
    }
    td_tensor_unref(gh);
    td_tensor_unref(m1);
    td_tensor_unref(gx2);
    td_tensor_unref(m2);
    td_tensor_unref(t1);
    td_tensor_unref(t2);
    td_tensor_unref(t3);
    return rc;
}

static bool wants(const struct td_node *n, int i)
{
    return i >= 0 && i < n->nin && n->in[i].t != NULL && n->in[i].t->requires_grad;
}

/* layer_norm: dx as norm_dx; dw = g * xhat and db = g, summed over the leading dims by
** autograd (weight and bias have the trailing shape). */
int td_bw_layer_norm(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                     struct td_quota *q, struct td_err *err)
{
    int slot[2];
    uint64_t absent = n->args.absent;
    int next = 1;
    for (int k = 0; k < 2; k++) {
        slot[k] = (!(absent & ((uint64_t)1 << k)) && next < n->nin) ? next++ : -1;
    }
    struct td_tensor *x = n->in[0].t, *w = opt(n->in, slot, LN_W);
    int64_t dims[TD_MAX_DIMS];
    int nd = trailing(x->ndim, n->args.ndims, dims);
    struct td_tensor *xhat = NULL, *rstd = NULL;
    int rc;
    if ((rc = normalise(x, dims, nd, n->args.eps, q, &xhat, &rstd, err)) != 0) {
        return rc;
    }
    if (wants(n, 0)) {
        rc = norm_dx(g, w, xhat, rstd, dims, nd, q, &gin[0], err);
    }
    if (rc == 0 && wants(n, slot[LN_W])) {
        rc = run(TD_OP_MUL, g, xhat, NULL, q, &gin[slot[LN_W]], err);
    }
    if (rc == 0 && wants(n, slot[LN_B])) {
        gin[slot[LN_B]] = td_tensor_ref(g);
    }
    td_tensor_unref(xhat);
    td_tensor_unref(rstd);
    return rc;
}

/* ---- batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
** momentum=0.1, eps=1e-5) ---- */

enum { BN_RM, BN_RV, BN_W, BN_B };

/* Every dim but 1 (the channels), and a [1, C, 1, ...] shape for per-channel parameters. */
static int channel_dims(const struct td_tensor *x, int64_t *dims, int64_t *pshape)
{
    int nd = 0;
    for (int i = 0; i < x->ndim; i++) {
        pshape[i] = i == 1 ? x->shape[1] : 1;
        if (i != 1) {
            dims[nd++] = i;
        }
    }
    return nd;
}

static int batch_norm_check(const struct td_operand *in, int nin, const struct td_op_args *a,
                            int *slot, struct td_err *err)
{
    int rc;
    if ((rc = bind_optional("batch_norm", in, nin, 1, 4, a->absent, slot, err)) != 0) {
        return rc;
    }
    const struct td_tensor *x = in[0].t;
    int64_t c = x->ndim > 1 ? x->shape[1] : 0;
    if (a->training) {
        int64_t per = x->ndim > 0 ? x->shape[0] : 1;
        for (int i = 2; i < x->ndim; i++) {
            per = td_sat_mul(per, x->shape[i]);
        }
        if (per == 1) {
            char b[256];
            return td_err_set(err, TD_EINVAL,
                              "Expected more than 1 value per channel when training, got input "
                              "size torch.Size(%s)",
                              shape_text(x->shape, x->ndim, b, sizeof b));
        }
    }
    if (!td_dtype_is_float(x->dtype)) {
        return td_err_set(err, TD_EDTYPE, "\"batch_norm\" not implemented for '%s'",
                          td_dtype_cname(x->dtype));
    }
    if (x->numel == 0) {
        return 0;
    }
    const char *names[4] = {"running_mean", "running_var", "weight", "bias"};
    for (int k = 0; k < 4; k++) {
        const struct td_tensor *p = opt(in, slot, k);
        if (p == NULL) {
            if (k < 2 && !a->training) {
                return td_err_set(err, TD_EINVAL, "%s must be defined in evaluation mode",
                                  names[k]);
            }
            continue;
        }
        if (k < 2 && p->requires_grad && a->grad_enabled) {
            return td_err_set(err, TD_EINVAL,
                              "The function 'native_batch_norm' is not differentiable with "
                              "respect to argument '%s'. This input cannot have requires_grad "
                              "True.",
                              names[k]);
        }
        if (p->numel != c) {
            return td_err_set(err, TD_ESHAPE, "%s should contain %lld elements not %lld", names[k],
                              (long long)c, (long long)p->numel);
        }
    }
    for (int k = 0; k < 4; k++) {
        const struct td_tensor *p = opt(in, slot, k);
        if (p != NULL && p->dtype != x->dtype) {
            if (x->dtype == TD_DTYPE_F32) {
                return td_err_set(err, TD_EDTYPE,
                                  "mixed dtype (CPU): expect parameter to have scalar type of "
                                  "Float");
            }
            return td_err_set(err, TD_EDTYPE,
                              "mixed dtype (CPU): expect input to have scalar type of BFloat16");
        }
    }
    return 0;
}

/* A per-channel tensor p (C elements, any shape) as [1, C, 1, ...]; NULL stays NULL. */
static int per_channel(struct td_tensor *p, const struct td_tensor *x, struct td_quota *q,
                       struct td_tensor **out, struct td_err *err)
{
    *out = NULL;
    if (p == NULL) {
        return 0;
    }
    int64_t dims[TD_MAX_DIMS], pshape[TD_MAX_DIMS];
    channel_dims(x, dims, pshape);
    return reshape(p, pshape, x->ndim, q, out, err);
}

/* running = (1 - momentum) * running + momentum * stat, in double, written in place. */
static int update_running(struct td_tensor *running, struct td_tensor *stat, double scale,
                          double momentum, struct td_quota *q, struct td_err *err)
{
    struct td_op_args ta;
    td_op_args_init(&ta);
    ta.has_dtype = true;
    ta.dtype = TD_DTYPE_F64;
    struct td_tensor *s = NULL, *s64 = NULL, *r64 = NULL, *a = NULL, *b = NULL, *sum = NULL;
    int rc;
    if ((rc = reshape(stat, running->shape, running->ndim, q, &s, err)) == 0 &&
        (rc = run(TD_OP_TO, s, NULL, &ta, q, &s64, err)) == 0 &&
        (rc = run(TD_OP_TO, running, NULL, &ta, q, &r64, err)) == 0 &&
        (rc = run_s(TD_OP_MUL, s64, momentum * scale, q, &a, err)) == 0 &&
        (rc = run_s(TD_OP_MUL, r64, 1.0 - momentum, q, &b, err)) == 0 &&
        (rc = run(TD_OP_ADD, a, b, NULL, q, &sum, err)) == 0) {
        struct td_operand cin[2] = {{.t = running}, {.t = sum}};
        struct td_tensor *res = NULL;
        rc = td_op_apply(TD_OP_COPY, cin, 2, NULL, true, q, &res, err);
        td_tensor_unref(res);
    }
    td_tensor_unref(s);
    td_tensor_unref(s64);
    td_tensor_unref(r64);
    td_tensor_unref(a);
    td_tensor_unref(b);
    td_tensor_unref(sum);
    return rc;
}

/* The statistics batch_norm normalises with: xhat and invstd ([1, C, 1, ...]); in training
** also the batch mean and biased variance (for the running update) when asked. */
static int bn_stats(struct td_tensor *x, struct td_tensor *rm, struct td_tensor *rv, bool training,
                    double eps, struct td_quota *q, struct td_tensor **xhat,
                    struct td_tensor **invstd, struct td_tensor **mean_out,
                    struct td_tensor **var_out, struct td_err *err)
{
    int64_t dims[TD_MAX_DIMS], pshape[TD_MAX_DIMS];
    int nd = channel_dims(x, dims, pshape);
    struct td_tensor *mean = NULL, *var = NULL, *ve = NULL, *xc = NULL;
    int rc;
    if (training) {
        rc = reduce(TD_OP_MEAN, x, dims, nd, q, &mean, err);
        if (rc == 0) {
            rc = reduce(TD_OP_VAR, x, dims, nd, q, &var, err);
        }
    } else {
        rc = per_channel(rm, x, q, &mean, err);
        if (rc == 0) {
            rc = per_channel(rv, x, q, &var, err);
        }
    }
    if (rc == 0 && (rc = run_s(TD_OP_ADD, var, eps, q, &ve, err)) == 0 &&
        (rc = run(TD_OP_RSQRT, ve, NULL, NULL, q, invstd, err)) == 0 &&
        (rc = run(TD_OP_SUB, x, mean, NULL, q, &xc, err)) == 0) {
        rc = run(TD_OP_MUL, xc, *invstd, NULL, q, xhat, err);
    }
    if (rc == 0 && mean_out != NULL) {
        *mean_out = td_tensor_ref(mean);
        *var_out = td_tensor_ref(var);
    }
    if (rc != 0) {
        td_tensor_unref(*invstd);
        *invstd = NULL;
    }
    td_tensor_unref(mean);
    td_tensor_unref(var);
    td_tensor_unref(ve);
    td_tensor_unref(xc);
    return rc;
}

int td_make_batch_norm(struct td_tensor **out, const struct td_operand *in, int nin,
                       const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    int slot[4], rc;
    if ((rc = batch_norm_check(in, nin, a, slot, err)) != 0) {
        return rc;
    }
    struct td_tensor *x = in[0].t;
    if (x->numel == 0) {
        return run(TD_OP_CLONE, x, NULL, NULL, q, out, err);
    }
    struct td_tensor *rm = opt(in, slot, BN_RM), *rv = opt(in, slot, BN_RV);
    struct td_tensor *xhat = NULL, *invstd = NULL, *mean = NULL, *var = NULL, *w = NULL, *b = NULL;
    if ((rc = bn_stats(x, rm, rv, a->training, a->eps, q, &xhat, &invstd, &mean, &var, err)) != 0) {
        return rc;
    }
    if (a->training) {
        int64_t per = x->ndim > 1 ? x->numel / x->shape[1] : x->numel; /* values per channel */
        if (rm != NULL) {
            rc = update_running(rm, mean, 1.0, a->momentum, q, err);
        }
        if (rc == 0 && rv != NULL) {
            rc = update_running(rv, var, (double)per / (double)(per - 1), a->momentum, q, err);
        }
    }
    if (rc == 0 && (rc = per_channel(opt(in, slot, BN_W), x, q, &w, err)) == 0 &&
        (rc = per_channel(opt(in, slot, BN_B), x, q, &b, err)) == 0) {
        rc = affine(td_tensor_ref(xhat), w, b, q, out, err);
    }
    td_tensor_unref(xhat);
    td_tensor_unref(invstd);
    td_tensor_unref(mean);
    td_tensor_unref(var);
    td_tensor_unref(w);
    td_tensor_unref(b);
    return rc;
}

/* t summed over dims (keepdim), reshaped to like's shape. */
static int sum_like(struct td_tensor *t, const int64_t *dims, int nd, const struct td_tensor *like,
                    struct td_quota *q, struct td_tensor **out, struct td_err *err)
{
    struct td_tensor *s = NULL;
    int rc = reduce(TD_OP_SUM, t, dims, nd, q, &s, err);
    if (rc == 0) {
        rc = reshape(s, like->shape, like->ndim, q, out, err);
    }
    td_tensor_unref(s);
    return rc;
}

/* batch_norm: in training dx as norm_dx over every dim but the channels; in evaluation
** dx = g * w * invstd; dw = sum(g * xhat), db = sum(g) per channel. */
int td_bw_batch_norm(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                     struct td_quota *q, struct td_err *err)
{
    int slot[4];
    uint64_t absent = n->args.absent;
    int next = 1;
    for (int k = 0; k < 4; k++) {
        slot[k] = (!(absent & ((uint64_t)1 << k)) && next < n->nin) ? next++ : -1;
    }
    struct td_tensor *x = n->in[0].t;
    if (x->numel == 0) {
        return 0;
    }
    int64_t dims[TD_MAX_DIMS], pshape[TD_MAX_DIMS];
    int nd = channel_dims(x, dims, pshape);
    struct td_tensor *xhat = NULL, *invstd = NULL, *w = NULL, *gxh = NULL, *t = NULL;
    int rc = bn_stats(x, opt(n->in, slot, BN_RM), opt(n->in, slot, BN_RV), n->args.training,
                      n->args.eps, q, &xhat, &invstd, NULL, NULL, err);
    if (rc == 0) {
        rc = per_channel(opt(n->in, slot, BN_W), x, q, &w, err);
    }
    if (rc == 0 && wants(n, 0)) {
        if (n->args.training) {
            rc = norm_dx(g, w, xhat, invstd, dims, nd, q, &gin[0], err);
        } else if (w != NULL) {
            if ((rc = run(TD_OP_MUL, g, w, NULL, q, &t, err)) == 0) {
                rc = run(TD_OP_MUL, t, invstd, NULL, q, &gin[0], err);
            }
        } else {
            rc = run(TD_OP_MUL, g, invstd, NULL, q, &gin[0], err);
        }
    }
    if (rc == 0 && wants(n, slot[BN_W]) &&
        (rc = run(TD_OP_MUL, g, xhat, NULL, q, &gxh, err)) == 0) {
        rc = sum_like(gxh, dims, nd, n->in[slot[BN_W]].t, q, &gin[slot[BN_W]], err);
    }
    if (rc == 0 && wants(n, slot[BN_B])) {
        rc = sum_like(g, dims, nd, n->in[slot[BN_B]].t, q, &gin[slot[BN_B]], err);
    }
    td_tensor_unref(xhat);
    td_tensor_unref(invstd);
    td_tensor_unref(w);
    td_tensor_unref(gxh);
    td_tensor_unref(t);
    return rc;
}

/* ---- embedding(input, weight, padding_idx=None) ---- */

/* padding_idx wrapped into [0, num_embeddings), or -1 for none; torch's assertion text. */
static int padding_row(const struct td_op_args *a, int64_t rows, int64_t *out, struct td_err *err)
{
    *out = -1;
    if (!a->has_padding_idx) {
        return 0;
    }
    int64_t p = a->padding_idx;
    if ((p > 0 && p >= rows) || (p < 0 && p < -rows)) {
        return td_err_set(err, TD_EINVAL, "Padding_idx must be within num_embeddings");
    }
    *out = p < 0 ? p + rows : p;
    return 0;
}

int td_make_embedding(struct td_tensor **out, const struct td_operand *in, int nin,
                      const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    struct td_tensor *idx = in[0].t, *w = in[1].t;
    if (w == NULL) {
        return td_err_set(err, TD_EINVAL, "embedding(): argument 'weight' must be Tensor");
    }
    int64_t pad;
    int rc;
    if ((rc = padding_row(a, w->ndim > 0 ? w->shape[0] : 1, &pad, err)) != 0) {
        return rc;
    }
    if (w->ndim != 2) {
        return td_err_set(err, TD_ESHAPE, "'weight' must be 2-D");
    }
    if (idx->dtype != TD_DTYPE_I64 && idx->dtype != TD_DTYPE_I32) {
        return td_err_set(err, TD_EDTYPE,
                          "Expected tensor for argument #1 'indices' to have one of the following "
                          "scalar types: Long, Int; but got torch.%sTensor instead (while checking "
                          "arguments for embedding)",
                          td_dtype_cname(idx->dtype));
    }
    if (idx->ndim + 1 > TD_MAX_DIMS) {
        return td_err_set(err, TD_ESHAPE, "embedding: at most %d dims are supported", TD_MAX_DIMS);
    }
    int64_t flat = -1, shape[TD_MAX_DIMS];
    struct td_tensor *fi = NULL, *rows = NULL;
    struct td_op_args sa;
    td_op_args_init(&sa);
    sa.dim = 0;
    if ((rc = reshape(idx, &flat, 1, q, &fi, err)) == 0 &&
        (rc = run(TD_OP_INDEX_SELECT, w, fi, &sa, q, &rows, err)) == 0) {
        memcpy(shape, idx->shape, (size_t)idx->ndim * sizeof *shape);
        shape[idx->ndim] = w->shape[1];
        rc = reshape(rows, shape, idx->ndim + 1, q, out, err);
    }
    td_tensor_unref(fi);
    td_tensor_unref(rows);
    return rc;
}

/* embedding: dW = zeros.index_add(0, input, g rows), rows of padding_idx left zero. */
int td_bw_embedding(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                    struct td_quota *q, struct td_err *err)
{
    struct td_tensor *idx = n->in[0].t, *w = n->in[1].t;
    if (!wants(n, 1)) {
        return 0;
    }
    int64_t pad, flat = -1, g2shape[2] = {-1, w->shape[1]};
    int rc = padding_row(&n->args, w->shape[0], &pad, err);
    struct td_tensor *fi = NULL, *g2 = NULL, *m = NULL, *mu = NULL, *gm = NULL, *z = NULL;
    if (rc == 0 && (rc = reshape(idx, &flat, 1, q, &fi, err)) == 0 &&
        (rc = reshape(g, g2shape, 2, q, &g2, err)) == 0 &&
        (rc = td_tensor_full(&z, g->dtype, w->shape, 2, td_scalar_i(0), q, err)) == 0) {
        if (pad >= 0) {
            struct td_op_args ua;
            td_op_args_init(&ua);
            ua.dim = 1;
            struct td_operand mf[3] = {{.t = g2}, {.t = NULL}, {.t = NULL, .s = td_scalar_i(0)}};
            struct td_operand eq[2] = {{.t = fi}, {.t = NULL, .s = td_scalar_i(pad)}};
            if ((rc = td_op_apply(TD_OP_EQ, eq, 2, NULL, false, q, &m, err)) == 0 &&
                (rc = run(TD_OP_UNSQUEEZE, m, NULL, &ua, q, &mu, err)) == 0) {
                mf[1].t = mu;
                rc = td_op_apply(TD_OP_MASKED_FILL, mf, 3, NULL, false, q, &gm, err);
            }
        } else {
            gm = td_tensor_ref(g2);
        }
        if (rc == 0) {
            struct td_op_args ia;
            td_op_args_init(&ia);
            ia.dim = 0;
            struct td_operand ai[3] = {{.t = z}, {.t = fi}, {.t = gm}};
            rc = td_op_apply(TD_OP_INDEX_ADD, ai, 3, &ia, false, q, &gin[1], err);
        }
    }
    td_tensor_unref(fi);
    td_tensor_unref(g2);
    td_tensor_unref(m);
    td_tensor_unref(mu);
    td_tensor_unref(gm);
    td_tensor_unref(z);
    return rc;
}

/* ---- one_hot(tensor, num_classes=-1): int64, a trailing dim of num_classes ---- */

static int scalar_of(enum td_op_id op, struct td_tensor *x, struct td_quota *q, int64_t *v,
                     struct td_err *err)
{
    struct td_tensor *r = NULL;
    int rc = run(op, x, NULL, NULL, q, &r, err);
    if (rc == 0) {
        *v = td_elem_load_i64(td_tensor_data(r), r->dtype);
    }
    td_tensor_unref(r);
    return rc;
}

int td_make_one_hot(struct td_tensor **out, const struct td_operand *in, int nin,
                    const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    struct td_tensor *x = in[0].t;
    int64_t nc = a->num_samples, shape[TD_MAX_DIMS];
    if (x->dtype != TD_DTYPE_I64) {
        return td_err_set(err, TD_EDTYPE, "one_hot is only applicable to index tensor.");
    }
    if (x->ndim + 1 > TD_MAX_DIMS) {
        return td_err_set(err, TD_ESHAPE, "one_hot: at most %d dims are supported", TD_MAX_DIMS);
    }
    memcpy(shape, x->shape, (size_t)x->ndim * sizeof *shape);
    if (x->numel == 0) {
        if (nc <= 0) {
            return td_err_set(err, TD_EINVAL,
                              "Can not infer total number of classes from empty tensor.");
        }
        shape[x->ndim] = nc;
        return td_tensor_empty(out, TD_DTYPE_I64, shape, x->ndim + 1, q, err);
    }
    int64_t lo, hi;
    int rc;
    if ((rc = scalar_of(TD_OP_MIN, x, q, &lo, err)) != 0 ||
        (rc = scalar_of(TD_OP_MAX, x, q, &hi, err)) != 0) {
        return rc;
    }
    if (lo < 0) {
        return td_err_set(err, TD_EINVAL, "Class values must be non-negative.");
    }
    if (nc == -1) {
        nc = hi + 1;
    } else if (nc <= hi) {
        return td_err_set(err, TD_EINVAL, "Class values must be smaller than num_classes.");
    }
    int64_t total;
    if (!td_mul_i64(x->numel, nc, &total)) {
        return td_err_set(err, TD_ELIMIT, "one_hot: %lld x %lld elements is too many",
                          (long long)x->numel, (long long)nc);
    }
    struct td_op_args ua, ta;
    td_op_args_init(&ua);
    ua.dim = -1;
    td_op_args_init(&ta);
    ta.has_dtype = true;
    ta.dtype = TD_DTYPE_I64;
    struct td_tensor *cls = NULL, *xu = NULL, *eq = NULL;
    if ((rc = td_tensor_arange(&cls, TD_DTYPE_I64, td_scalar_i(0), td_scalar_i(nc), td_scalar_i(1),
                               q, err)) == 0 &&
        (rc = run(TD_OP_UNSQUEEZE, x, NULL, &ua, q, &xu, err)) == 0 &&
        (rc = run(TD_OP_EQ, xu, cls, NULL, q, &eq, err)) == 0) {
        rc = run(TD_OP_TO, eq, NULL, &ta, q, out, err);
    }
    td_tensor_unref(cls);
    td_tensor_unref(xu);
    td_tensor_unref(eq);
    return rc;
}

/* ---- pad(input, pad, mode='constant', value=None): pad[2i], pad[2i+1] widen dim -1-i at its
** start and end (negative: crop). constant fills; reflect, replicate and circular gather each
** padded dim through an index vector (index_select), and their backward adds back along it ---- */

static int pad_check_constant(const struct td_tensor *x, const struct td_op_args *a, int64_t *shape,
                              struct td_err *err)
{
    if (a->ndims % 2 != 0) {
        return td_err_set(err, TD_EINVAL, "Padding length must be divisible by 2");
    }
    if (a->ndims / 2 > x->ndim) {
        return td_err_set(err, TD_EINVAL, "Padding length too large");
    }
    memcpy(shape, x->shape, (size_t)x->ndim * sizeof *shape);
    for (int i = 0; i < a->ndims / 2; i++) {
        int d = x->ndim - 1 - i;
        int64_t s;
        /* a crop past the whole dim is refused before any width is negated */
        if (a->dims[2 * i] < -x->shape[d] || a->dims[2 * i + 1] < -x->shape[d] ||
            !td_add_i64(x->shape[d], a->dims[2 * i], &s) ||
            !td_add_i64(s, a->dims[2 * i + 1], &s) || s < 0) {
            return td_err_set(err, TD_EINVAL,
                              "The input size %lld, plus negative padding %lld and %lld resulted "
                              "in a negative output size, which is invalid. Check dimension %d of "
                              "your input.",
                              (long long)x->shape[d], (long long)a->dims[2 * i],
                              (long long)a->dims[2 * i + 1], d);
        }
        shape[d] = s;
    }
    return 0;
}

/* reflect, replicate, circular: torch's checks (in its order and words) and the result shape. */
static int pad_check_gather(const struct td_tensor *x, const struct td_op_args *a, int64_t *shape,
                            struct td_err *err)
{
    static const char *const mode_name[] = {"constant", "reflect", "replicate", "circular"};
    static const char *const kernel[2][3] = {{"reflection_pad1d", "reflection_pad2d",
                                              "reflection_pad3d_cpu"},
                                             {"replication_pad1d_cpu", "replication_pad2d_cpu",
                                              "replication_pad3d_cpu"}};
    int mode = a->pad_mode, k = a->ndims / 2;
    if (a->ndims % 2 != 0) {
        return td_err_set(err, TD_EINVAL, "Padding length must be divisible by 2");
    }
    if (a->ndims / 2 > x->ndim) {
        return td_err_set(err, TD_EINVAL, "Padding length too large");
    }
    if (a->has_value && td_scalar_to_double(a->value) != 0) {
        return td_err_set(err, TD_EINVAL, "Padding mode \"%s\" doesn't take in value argument",
                          mode_name[mode]);
    }
    if (k < 1 || k > 3 || x->ndim < k + 1 || x->ndim > k + 2) {
        return td_err_set(err, TD_EUNSUP,
                          "Only 2D, 3D, 4D, 5D padding with non-constant padding are supported "
                          "for now");
    }
    if (mode == TD_PAD_CIRCULAR && a->ndims != 2 * (x->ndim - 2)) {
        return td_err_set(err, TD_EINVAL, "Invalid padding size, expected %d but got %d",
                          2 * (x->ndim - 2), a->ndims);
    }
    if (mode != TD_PAD_CIRCULAR && !td_dtype_is_float(x->dtype)) {
        return td_err_set(err, TD_EDTYPE, "\"%s\" not implemented for '%s'",
                          kernel[mode == TD_PAD_REPLICATE][k - 1], td_dtype_cname(x->dtype));
    }
    memcpy(shape, x->shape, (size_t)x->ndim * sizeof *shape);
    for (int i = 0; i < k; i++) {
        int d = x->ndim - 1 - i;
        int64_t n = x->shape[d], lo = a->dims[2 * i], hi = a->dims[2 * i + 1], s;
        if (mode == TD_PAD_REFLECT && (lo >= n || hi >= n)) {
            char b[256];
            if (k == 2) {
                snprintf(b, sizeof b, "%d", x->ndim);
            } else {
                shape_text(x->shape, x->ndim, b, sizeof b);
            }
            return td_err_set(err, TD_EINVAL,
                              "Argument #%d: Padding size should be less than the corresponding "
                              "input dimension, but got: padding (%lld, %lld) at dimension %d of "
                              "input %s",
                              4 + 2 * i, (long long)lo, (long long)hi, d, b);
        }
        if (mode == TD_PAD_CIRCULAR && (lo > n || hi > n)) {
            return td_err_set(err, TD_EINVAL,
                              "Padding value causes wrapping around more than once.");
        }
        /* lo, hi >= -n before anything negates them */
        bool empty_kept = lo < -n || hi < -n ||
                          (mode == TD_PAD_CIRCULAR && (lo < 0 ? -lo : 0) + (hi < 0 ? -hi : 0) >= n);
        if (empty_kept || !td_add_i64(n, lo, &s) || !td_add_i64(s, hi, &s) || s < 1) {
            if (mode == TD_PAD_CIRCULAR) {
                return td_err_set(err, TD_EINVAL,
                                  "Negative padding value is resulting in an empty dimension");
            }
            return td_err_set(err, TD_EINVAL,
                              "input (W: %lld) is too small. Calculated output "
                              "W: %lld",
                              (long long)n, (long long)(n + lo + hi));
        }
        if (n == 0) {
            return td_err_set(err, TD_EINVAL, "pad: cannot pad an empty dimension");
        }
        shape[d] = s;
    }
    return 0;
}

static int pad_check(const struct td_tensor *x, const struct td_op_args *a, int64_t *shape,
                     struct td_err *err)
{
    if (a->pad_mode < TD_PAD_CONSTANT || a->pad_mode > TD_PAD_CIRCULAR) {
        return td_err_set(err, TD_EINVAL, "pad: unknown mode %d", a->pad_mode);
    }
    return a->pad_mode == TD_PAD_CONSTANT ? pad_check_constant(x, a, shape, err)
                                          : pad_check_gather(x, a, shape, err);
}

/* t narrowed by `lo` at the start and `hi` at the end of dim d (both >= 0), in place of *t. */
static int crop(struct td_tensor **t, int d, int64_t lo, int64_t hi, struct td_quota *q,
                struct td_err *err)
{
    if (lo == 0 && hi == 0) {
        return 0;
    }
    struct td_op_args na;
    td_op_args_init(&na);
    na.dim = d;
    na.start = lo;
    na.end = (*t)->shape[d] - lo - hi;
    struct td_tensor *v = NULL;
    int rc = run(TD_OP_NARROW, *t, NULL, &na, q, &v, err);
    td_tensor_unref(*t);
    *t = v;
    return rc;
}

/* The source position of each of out_n positions along a dim of n, padded by lo in front and
** hi behind (pad_check_gather has checked them against n). */
static int pad_index(int mode, int64_t n, int64_t lo, int64_t hi, int64_t out_n, struct td_quota *q,
                     struct td_tensor **out, struct td_err *err)
{
    int rc = td_tensor_empty(out, TD_DTYPE_I64, &out_n, 1, q, err);
    if (rc != 0) {
        return rc;
    }
    int64_t *p = td_tensor_data(*out);
    for (int64_t c = 0; c < out_n;) {
        int64_t end = td_cancel_chunk_end(c, out_n);
        for (int64_t i = c; i < end; i++) {
            int64_t j = i - lo;
            if (mode == TD_PAD_REFLECT) {
                j = j < 0 ? -j : j >= n ? 2 * (n - 1) - j : j;
            } else if (mode == TD_PAD_REPLICATE) {
                j = j < 0 ? 0 : j >= n ? n - 1 : j;
            } else { /* circular wraps within the kept (cropped) part, as torch's */
                int64_t first = lo < 0 ? -lo : 0, kept = n - first - (hi < 0 ? -hi : 0);
                int64_t k = i - (lo > 0 ? lo : 0);
                j = first + ((k % kept) + kept) % kept;
            }
            p[i] = j;
        }
        c = end;
        if ((rc = td_cancel_check(err)) != 0) {
            td_tensor_unref(*out);
            *out = NULL;
            return rc;
        }
    }
    return 0;
}

static int make_pad_gather(struct td_tensor **out, struct td_tensor *x, const struct td_op_args *a,
                           const int64_t *shape, struct td_quota *q, struct td_err *err)
{
    struct td_tensor *cur = td_tensor_ref(x);
    int rc = 0;
    for (int i = 0; rc == 0 && i < a->ndims / 2; i++) {
        int d = x->ndim - 1 - i;
        struct td_tensor *idx = NULL, *next = NULL;
        struct td_op_args sa;
        td_op_args_init(&sa);
        sa.dim = d;
        if ((rc = pad_index(a->pad_mode, x->shape[d], a->dims[2 * i], a->dims[2 * i + 1], shape[d],
                            q, &idx, err)) == 0 &&
            (rc = run(TD_OP_INDEX_SELECT, cur, idx, &sa, q, &next, err)) == 0) {
            td_tensor_unref(cur);
            cur = next;
        }
        td_tensor_unref(idx);
    }
    if (rc != 0) {
        td_tensor_unref(cur);
        return rc;
    }
    *out = cur;
    return 0;
}

int td_make_pad(struct td_tensor **out, const struct td_operand *in, int nin,
                const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    struct td_tensor *x = in[0].t;
    int64_t shape[TD_MAX_DIMS];
    int rc;
    if ((rc = pad_check(x, a, shape, err)) != 0) {
        return rc;
    }
    if (a->pad_mode != TD_PAD_CONSTANT) {
        return make_pad_gather(out, x, a, shape, q, err);
    }
    struct td_scalar v = a->has_value ? a->value : td_scalar_i(0);
    struct td_tensor *r = NULL, *src = td_tensor_ref(x), *dst = NULL;
    if ((rc = td_tensor_full(&r, x->dtype, shape, x->ndim, v, q, err)) != 0) {
        td_tensor_unref(src);
        return rc;
    }
    dst = td_tensor_ref(r);
    for (int i = 0; rc == 0 && i < a->ndims / 2; i++) {
        int d = x->ndim - 1 - i;
        int64_t lo = a->dims[2 * i], hi = a->dims[2 * i + 1];
        if ((rc = crop(&src, d, lo < 0 ? -lo : 0, hi < 0 ? -hi : 0, q, err)) == 0) {
            rc = crop(&dst, d, lo > 0 ? lo : 0, hi > 0 ? hi : 0, q, err);
        }
    }
    if (rc == 0 && src->numel > 0) {
        struct td_operand cin[2] = {{.t = dst}, {.t = src}};
        struct td_tensor *res = NULL;
        rc = td_op_apply(TD_OP_COPY, cin, 2, NULL, true, q, &res, err);
        td_tensor_unref(res);
    }
    td_tensor_unref(src);
    td_tensor_unref(dst);
    if (rc != 0) {
        td_tensor_unref(r);
        return rc;
    }
    *out = r;
    return 0;
}

/* The gather modes' backward: from the last dim gathered back to the first, the gradient is
** added into zeros of the shape before that step along the same index vector. */
static int bw_pad_gather(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                         struct td_quota *q, struct td_err *err)
{
    const struct td_tensor *x = n->in[0].t;
    const struct td_op_args *a = &n->args;
    int64_t shape[TD_MAX_DIMS];
    int rc;
    if ((rc = pad_check(x, a, shape, err)) != 0) {
        return rc;
    }
    struct td_tensor *cur = td_tensor_ref(g);
    for (int i = a->ndims / 2 - 1; rc == 0 && i >= 0; i--) {
        int d = x->ndim - 1 - i;
        int64_t before[TD_MAX_DIMS];
        memcpy(before, shape, sizeof before);
        before[d] = x->shape[d]; /* dims 0 .. i-1 of the pad list are still padded here */
        struct td_tensor *idx = NULL, *z = NULL, *next = NULL;
        struct td_op_args ia;
        td_op_args_init(&ia);
        ia.dim = d;
        if ((rc = pad_index(a->pad_mode, x->shape[d], a->dims[2 * i], a->dims[2 * i + 1], shape[d],
                            q, &idx, err)) == 0 &&
            (rc = td_tensor_full(&z, g->dtype, before, x->ndim, td_scalar_i(0), q, err)) == 0) {
            struct td_operand ai[3] = {{.t = z}, {.t = idx}, {.t = cur}};
            if ((rc = td_op_apply(TD_OP_INDEX_ADD, ai, 3, &ia, false, q, &next, err)) == 0) {
                td_tensor_unref(cur);
                cur = next;
            }
        }
        td_tensor_unref(idx);
        td_tensor_unref(z);
        shape[d] = x->shape[d];
    }
    if (rc != 0) {
        td_tensor_unref(cur);
        return rc;
    }
    gin[0] = cur;
    return 0;
}

/* pad: constant's gradient is g padded by the negated widths (cropped back). */
int td_bw_pad(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
              struct td_quota *q, struct td_err *err)
{
    if (n->args.pad_mode != TD_PAD_CONSTANT) {
        return bw_pad_gather(n, g, gin, q, err);
    }
    struct td_op_args pa = n->args;
    for (int i = 0; i < pa.ndims; i++) {
        if (pa.dims[i] == INT64_MIN) {
            return td_err_set(err, TD_EINVAL, "pad: width out of range");
        }
        pa.dims[i] = -pa.dims[i];
    }
    pa.has_value = false;
    pa.grad_enabled = false;
    return run(TD_OP_PAD, g, NULL, &pa, q, &gin[0], err);
}

/* pad's grad_fn: ConstantPadNdBackward0, or the mode's kernel by the count of padded dims. */
const char *td_grad_fn_pad(const struct td_node *n)
{
    static const char *const names[2][3] =
        {{"ReflectionPad1DBackward0", "ReflectionPad2DBackward0", "ReflectionPad3DBackward0"},
         {"ReplicationPad1DBackward0", "ReplicationPad2DBackward0", "ReplicationPad3DBackward0"}};
    int k = n->args.ndims / 2;
    switch (n->args.pad_mode) {
    case TD_PAD_REFLECT:
    case TD_PAD_REPLICATE:
        return k >= 1 && k <= 3 ? names[n->args.pad_mode == TD_PAD_REPLICATE][k - 1]
                                : "ConstantPadNdBackward0";
    case TD_PAD_CIRCULAR: return "CopySlices";
    default: return "ConstantPadNdBackward0";
    }
}

/* ---- dropout_noise(input, p, kind): the mask dropout1d/2d/3d multiply by (torch's
** make_feature_noise): one Bernoulli(1 - p) draw / (1 - p) per channel, shaped
** [N, C, 1, ...] for a batched input and [C, 1, ...] for an unbatched one ---- */

/* The noise shape for kind 1, 2, 3 (dropout1d, 2d, 3d) and x's rank, or torch's error. */
static int noise_shape(const struct td_tensor *x, int64_t kind, int64_t *shape, struct td_err *err)
{
    int nd = x->ndim;
    if (kind < 1 || kind > 3) {
        return td_err_set(err, TD_EINVAL, "dropout_noise: kind must be 1, 2 or 3, not %lld",
                          (long long)kind);
    }
    if (kind == 1 && nd != 2 && nd != 3) {
        return td_err_set(err, TD_ESHAPE,
                          "dropout1d: Expected 2D or 3D input, but received a %dD input. Note "
                          "that dropout1d exists to provide channel-wise dropout on inputs with 1 "
                          "spatial dimension, a channel dimension, and an optional batch "
                          "dimension (i.e. 2D or 3D inputs).",
                          nd);
    }
    /* dropout2d treats every input as batched; 1d and 3d add a batch dim when there is none */
    bool batched = kind == 1 ? nd == 3 : kind == 2 ? true : nd == 5;
    int lead = batched ? 2 : 1;
    if (nd < lead || nd + (batched ? 0 : 1) < 2) {
        return td_err_set(err, TD_ESHAPE,
                          "Feature dropout requires at least 2 dimensions in the input");
    }
    for (int i = 0; i < nd; i++) {
        shape[i] = i < lead ? x->shape[i] : 1;
    }
    return 0;
}

int td_make_dropout_noise(struct td_tensor **out, const struct td_operand *in, int nin,
                          const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    struct td_tensor *x = in[0].t, *noise = NULL, *r = NULL;
    int64_t shape[TD_MAX_DIMS];
    int rc;
    if ((rc = noise_shape(x, a->k, shape, err)) != 0) {
        return rc;
    }
    double keep = 1.0 - (a->has_max ? td_scalar_to_double(a->max) : 0.5);
    if ((rc = td_tensor_empty(&noise, x->dtype, shape, x->ndim, q, err)) != 0) {
        return rc;
    }
    struct td_op_args ba;
    td_op_args_init(&ba);
    ba.rng = a->rng;
    ba.has_max = true;
    ba.max = td_scalar_f(keep);
    struct td_operand bin[1] = {{.t = noise}};
    struct td_operand din[2] = {{.t = noise}, {.t = NULL, .s = td_scalar_f(keep)}};
    if ((rc = td_op_apply(TD_OP_BERNOULLI, bin, 1, &ba, true, q, &r, err)) == 0) {
        td_tensor_unref(r);
        r = NULL;
        rc = td_op_apply(TD_OP_DIV, din, 2, NULL, true, q, &r, err);
        td_tensor_unref(r);
    }
    if (rc != 0) {
        td_tensor_unref(noise);
        return rc;
    }
    *out = noise;
    return 0;
}

/* dropout_noise: one draw and one division per element of the noise. */
int td_cost_dropout_noise(const struct td_operand *in, int nin, const struct td_op_args *a,
                          struct td_cost *c)
{
    (void)nin;
    const struct td_tensor *x = in[0].t;
    int64_t n = 1;
    for (int i = 0; i < x->ndim && i < 2; i++) {
        n = td_sat_mul(n, x->shape[i]);
    }
    (void)a;
    c->read = n;
    c->written = td_sat_mul(n, 2);
    c->out_bytes = td_sat_mul(n, esize_of(x->dtype));
    return 0;
}

/* ---- cost rules (safe before validation: saturating, any operands) ---- */


/* layer_norm and batch_norm: about a dozen passes over the input (mean, var, centre, scale,
** affine, and batch_norm's running updates), with four input-sized intermediates. */
int td_cost_norm(const struct td_operand *in, int nin, const struct td_op_args *a,
                 struct td_cost *c)
{
    if (nin < 1 || in[0].t == NULL) {
        return -1;
    }
    int64_t n = in[0].t->numel, es = esize(in[0].t), extra = 0;
    for (int i = 1; i < nin; i++) {
        if (in[i].t == NULL) {
            return -1;
        }
        extra = td_sat_add(extra, in[i].t->numel);
    }
    c->read = td_sat_add(td_sat_mul(n, 8), td_sat_mul(extra, 4));
    c->written = td_sat_add(td_sat_mul(n, 6), td_sat_mul(extra, 4));
    c->out_bytes = a->inplace ? 0 : td_sat_mul(n, es);
    c->temp_bytes = td_sat_add(td_sat_mul(td_sat_mul(n, 4), es), td_sat_mul(extra, 48));
    return 0;
}

/* embedding: one row of weight copied per index (with a flat copy of the indices). */
int td_cost_embedding(const struct td_operand *in, int nin, const struct td_op_args *a,
                      struct td_cost *c)
{
    (void)a;
    if (nin != 2 || in[0].t == NULL || in[1].t == NULL) {
        return -1;
    }
    const struct td_tensor *idx = in[0].t, *w = in[1].t;
    int64_t d = w->ndim == 2 ? w->shape[1] : 1;
    int64_t n = td_sat_mul(idx->numel, d);
    c->read = td_sat_add(n, idx->numel);
    c->written = td_sat_add(n, idx->numel);
    c->out_bytes = td_sat_mul(n, esize(w));
    c->temp_bytes = td_sat_mul(idx->numel, 8);
    return 0;
}

/* one_hot: min and max over the input, then numel * num_classes compared and cast (the
** class count is judged from num_classes; -1 counts one class per element). With -1 the real
** count is the data's largest value plus one, unknown here and unbounded by numel (one element
** of value 2^26 makes 2^26 classes), so the work also counts ONE_HOT_INFERRED, more than the
** loop thread ever runs: such a one_hot goes to the pool, where every step it runs still meets
** the work budget and the quota. */
#define ONE_HOT_INFERRED ((int64_t)1 << 20)

int td_cost_one_hot(const struct td_operand *in, int nin, const struct td_op_args *a,
                    struct td_cost *c)
{
    (void)nin;
    int64_t n = in[0].t->numel;
    int64_t nc = a->num_samples > 0 ? a->num_samples : (n > 0 ? n : 1);
    int64_t total = td_sat_mul(n, nc);
    c->read = td_sat_add(td_sat_mul(n, 2), td_sat_mul(total, 2));
    if (a->num_samples <= 0 && n > 0) {
        c->read = td_sat_add(c->read, ONE_HOT_INFERRED);
    }
    c->written = td_sat_mul(total, 2);
    c->out_bytes = td_sat_mul(total, 8);
    c->temp_bytes = td_sat_add(total, td_sat_mul(nc, 8));
    return 0;
}

/* pad: the result filled, then the kept input copied in. */
int td_cost_pad(const struct td_operand *in, int nin, const struct td_op_args *a, struct td_cost *c)
{
    (void)nin;
    const struct td_tensor *x = in[0].t;
    if (a->ndims < 0 || a->ndims > 2 * x->ndim) {
        return -1;
    }
    int64_t out = 1;
    for (int d = 0; d < x->ndim; d++) {
        int64_t s = x->shape[d];
        int i = x->ndim - 1 - d;
        if (2 * i + 1 < a->ndims) {
            s = td_sat_add(td_sat_add(s, a->dims[2 * i]), a->dims[2 * i + 1]);
        }
        out = td_sat_mul(out, s > 0 ? s : 0);
    }
    c->read = x->numel;
    c->written = td_sat_add(out, x->numel);
    c->out_bytes = td_sat_mul(out, esize(x));
    if (a->pad_mode != TD_PAD_CONSTANT) { /* one gather (and an index vector) per padded dim */
        int64_t k = a->ndims / 2 > 0 ? a->ndims / 2 : 1;
        c->read = td_sat_mul(td_sat_add(out, x->numel), k);
        c->written = td_sat_mul(out, k);
        c->temp_bytes = td_sat_add(td_sat_mul(td_sat_mul(out, esize(x)), k - 1), 8);
    }
    return 0;
}
