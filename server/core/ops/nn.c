/* server/core/ops/nn.c — linear algebra and network helpers: mm, bmm, outer, softmax,
** log_softmax, linear (the losses, mse_loss and cross_entropy among them, are in loss.c).
**
** Each checks its inputs the way torch 1.13 does (and says so in torch's words), then is built
** from the core's tested ops through td_op_apply: softmax is exp(x - max) / sum, linear is
** x @ W.T + b. Intermediates are charged
** to the caller's quota like any tensor.
*/
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "family.h"

/* td_op_apply on tensors a and (optionally) b, with args. */
static int run(enum td_op_id op, struct td_tensor *a, struct td_tensor *b,
               const struct td_op_args *args, struct td_quota *q, struct td_tensor **out,
               struct td_err *err)
{
    struct td_operand in[2] = {{.t = a}, {.t = b}};
    return td_op_apply(op, in, b != NULL ? 2 : 1, args, false, q, out, err);
}

int td_make_mm(struct td_tensor **out, const struct td_operand *in, int nin,
               const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    if (in[1].t == NULL || in[0].t->ndim != 2) {
        return td_err_set(err, TD_ESHAPE, "self must be a matrix");
    }
    if (in[1].t->ndim != 2) {
        return td_err_set(err, TD_ESHAPE, "mat2 must be a matrix");
    }
    return run(TD_OP_MATMUL, in[0].t, in[1].t, a, q, out, err);
}

int td_make_bmm(struct td_tensor **out, const struct td_operand *in, int nin,
                const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    const struct td_tensor *x = in[0].t, *y = in[1].t;
    if (x->ndim != 3) {
        return td_err_set(err, TD_ESHAPE, "batch1 must be a 3D tensor");
    }
    if (y == NULL || y->ndim != 3) {
        return td_err_set(err, TD_ESHAPE, "batch2 must be a 3D tensor");
    }
    if (y->shape[0] != x->shape[0] || y->shape[1] != x->shape[2]) {
        return td_err_set(err, TD_ESHAPE,
                          "Expected size for first two dimensions of batch2 "
                          "tensor to be: [%lld, %lld] but got: [%lld, %lld].",
                          (long long)x->shape[0], (long long)x->shape[2], (long long)y->shape[0],
                          (long long)y->shape[1]);
    }
    if (x->numel == 0 || y->numel == 0) {
        /* torch skips its kernel (and its dtype check) for empty batches: zeros, promoted. */
        int64_t shape[3] = {x->shape[0], x->shape[1], y->shape[2]};
        return td_tensor_full(out, td_dtype_promote(x->dtype, y->dtype), shape, 3, td_scalar_i(0),
                              q, err);
    }
    return run(TD_OP_MATMUL, in[0].t, in[1].t, a, q, out, err);
}

/* outer(a, b) = a[:, None] * b, promoted. */
int td_make_outer(struct td_tensor **out, const struct td_operand *in, int nin,
                  const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    (void)a;
    if (in[0].t->ndim != 1) {
        return td_err_set(err, TD_ESHAPE, "outer: Expected 1-D argument self, but got %d-D",
                          in[0].t->ndim);
    }
    if (in[1].t == NULL || in[1].t->ndim != 1) {
        return td_err_set(err, TD_ESHAPE, "outer: Expected 1-D argument vec2, but got %d-D",
                          in[1].t != NULL ? in[1].t->ndim : 0);
    }
    struct td_op_args ua;
    td_op_args_init(&ua);
    ua.dim = 1;
    struct td_tensor *col;
    int rc = td_make_unsqueeze(&col, in, 1, &ua, q, err);
    if (rc != 0) {
        return rc;
    }
    rc = run(TD_OP_MUL, col, in[1].t, NULL, q, out, err);
    td_tensor_unref(col);
    return rc;
}

/* softmax / log_softmax over `dim`: exp(x - max) / sum(exp(x - max)), or its log. */
static int softmax_common(struct td_tensor **out, struct td_tensor *x, int64_t dim, bool log_,
                          struct td_quota *q, struct td_err *err)
{
    int64_t d;
    int rc;
    if ((rc = td_wrap_dim(dim, x->ndim, &d, err)) != 0) {
        return rc;
    }
    if (x->numel == 0) {
        return td_tensor_empty(out, x->dtype, x->shape, x->ndim, q, err); /* no kernel runs */
    }
    if (!td_dtype_is_float(x->dtype)) {
        bool last = x->ndim == 0 || d == x->ndim - 1;
        return td_err_set(err, TD_EDTYPE, "\"%s\" not implemented for '%s'",
                          last ? (log_ ? "log_softmax_lastdim_kernel_impl"
                                       : "softmax_lastdim_kernel_impl")
                               : "softmax_kernel_impl",
                          td_dtype_cname(x->dtype));
    }
    struct td_op_args ma, sa;
    td_op_args_init(&ma);
    ma.dim = d;
    ma.has_dim = true;
    ma.keepdim = true;
    td_op_args_init(&sa);
    sa.dims[0] = d;
    sa.ndims = 1;
    sa.has_dims = true;
    sa.keepdim = true;
    struct td_tensor *m = NULL, *shifted = NULL, *e = NULL, *s = NULL, *ls = NULL;
    if ((rc = run(TD_OP_MAX, x, NULL, &ma, q, &m, err)) != 0 ||
        (rc = run(TD_OP_SUB, x, m, NULL, q, &shifted, err)) != 0 ||
        (rc = run(TD_OP_EXP, shifted, NULL, NULL, q, &e, err)) != 0 ||
        (rc = run(TD_OP_SUM, e, NULL, &sa, q, &s, err)) != 0) {
        goto out;
    }
    if (log_) {
        if ((rc = run(TD_OP_LOG, s, NULL, NULL, q, &ls, err)) == 0) {
            rc = run(TD_OP_SUB, shifted, ls, NULL, q, out, err);
        }
    } else {
        rc = run(TD_OP_DIV, e, s, NULL, q, out, err);
    }
out:
    td_tensor_unref(ls);
    td_tensor_unref(s);
    td_tensor_unref(e);
    td_tensor_unref(shifted);
    td_tensor_unref(m);
    return rc;
}

int td_make_softmax(struct td_tensor **out, const struct td_operand *in, int nin,
                    const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    return softmax_common(out, in[0].t, a->dim, false, q, err);
}

int td_make_log_softmax(struct td_tensor **out, const struct td_operand *in, int nin,
                        const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    return softmax_common(out, in[0].t, a->dim, true, q, err);
}

/* linear(x, W[, b]) = x @ W.T (+ b); the bias must expand to the product's shape. */
int td_make_linear(struct td_tensor **out, const struct td_operand *in, int nin,
                   const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)a;
    if (nin < 2 || nin > 3) {
        return td_err_set(err, TD_EINVAL, "linear(input, weight, bias=None) takes 2 or 3 tensors");
    }
    static const char *const names[] = {"input", "weight", "bias"};
    for (int i = 0; i < nin; i++) {
        if (in[i].t == NULL) { /* a number: torch's linear takes tensors only */
            return td_err_set(err, TD_EINVAL,
                              "linear(): argument '%s' (position %d) must be Tensor, not %s",
                              names[i], i + 1, td_scalar_kind_name(in[i].s.kind));
        }
    }
    /* With a bias and a batch of rows, torch's linear is addmm(b, x, W.T) and checks dtypes as
    ** addmm does (a 1-D input takes matmul + add, which promotes). */
    if (nin == 3 && in[0].t->ndim >= 2) {
        if (in[2].t->dtype != in[1].t->dtype) {
            return td_err_set(err, TD_EDTYPE, "self and mat2 must have the same dtype");
        }
        if (in[0].t->dtype != in[1].t->dtype) {
            return td_err_set(err, TD_EDTYPE, "mat1 and mat2 must have the same dtype");
        }
    }
    if (nin == 3) {
        int fused = td_linear_addmm(out, in[0].t, in[1].t, in[2].t, q, err);
        if (fused <= 0) {
            return fused;
        }
    }
    struct td_tensor *wt = NULL, *prod = NULL, *bias = NULL;
    struct td_op_args ta;
    td_op_args_init(&ta);
    int rc;
    if (in[1].t->ndim == 2) {
        rc = td_make_t(&wt, &in[1], 1, &ta, q, err);
    } else {
        wt = td_tensor_ref(in[1].t);
        rc = 0;
    }
    if (rc != 0 || (rc = run(TD_OP_MATMUL, in[0].t, wt, NULL, q, &prod, err)) != 0) {
        goto out;
    }
    if (nin == 2) {
        *out = td_tensor_ref(prod);
        goto out;
    }
    struct td_op_args ea;
    td_op_args_init(&ea);
    for (int i = 0; i < prod->ndim; i++) {
        ea.dims[i] = prod->shape[i];
    }
    ea.ndims = prod->ndim;
    ea.has_dims = true;
    if ((rc = td_make_expand(&bias, &in[2], 1, &ea, q, err)) == 0) {
        if (in[0].t->ndim == 1) {
            /* torch's 1-D linear adds the bias in place: the product's dtype stays (a bias of a
            ** higher kind is refused with add_'s cast error) */
            struct td_operand sum[2] = {{.t = prod}, {.t = bias}};
            rc = td_op_apply(TD_OP_ADD, sum, 2, NULL, true, q, out, err);
        } else {
            rc = run(TD_OP_ADD, prod, bias, NULL, q, out, err);
        }
    }
out:
    td_tensor_unref(bias);
    td_tensor_unref(prod);
    td_tensor_unref(wt);
    return rc;
}

/* ---- backward rules ---- */

static int reduce_keep(enum td_op_id op, struct td_tensor *x, int64_t dim, struct td_quota *q,
                       struct td_tensor **out, struct td_err *err)
{
    struct td_op_args a;
    td_op_args_init(&a);
    a.dims[0] = dim;
    a.ndims = 1;
    a.has_dims = true;
    a.keepdim = true;
    return td_bw1(op, td_t(x), &a, q, out, err);
}

/* softmax: s * (g - sum(g * s, dim)), s the saved result */
int td_bw_softmax(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                  struct td_quota *q, struct td_err *err)
{
    struct td_tensor *s = NULL, *gs = NULL, *sum = NULL, *d = NULL;
    int rc;
    if ((rc = td_node_output(n, &s, err)) == 0 &&
        (rc = td_bw2(TD_OP_MUL, td_t(g), td_t(s), q, &gs, err)) == 0 &&
        (rc = reduce_keep(TD_OP_SUM, gs, n->args.dim, q, &sum, err)) == 0 &&
        (rc = td_bw2(TD_OP_SUB, td_t(g), td_t(sum), q, &d, err)) == 0) {
        rc = td_bw2(TD_OP_MUL, td_t(s), td_t(d), q, &gin[0], err);
    }
    td_tensor_unref(s);
    td_tensor_unref(gs);
    td_tensor_unref(sum);
    td_tensor_unref(d);
    return rc;
}

/* log_softmax: g - exp(y) * sum(g, dim), y the saved result */
int td_bw_log_softmax(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                      struct td_quota *q, struct td_err *err)
{
    struct td_tensor *y = NULL, *s = NULL, *sum = NULL, *m = NULL;
    int rc;
    if ((rc = td_node_output(n, &y, err)) == 0 &&
        (rc = td_bw1(TD_OP_EXP, td_t(y), NULL, q, &s, err)) == 0 &&
        (rc = reduce_keep(TD_OP_SUM, g, n->args.dim, q, &sum, err)) == 0 &&
        (rc = td_bw2(TD_OP_MUL, td_t(s), td_t(sum), q, &m, err)) == 0) {
        rc = td_bw2(TD_OP_SUB, td_t(g), td_t(m), q, &gin[0], err);
    }
    td_tensor_unref(y);
    td_tensor_unref(s);
    td_tensor_unref(sum);
    td_tensor_unref(m);
    return rc;
}

/* grad_fn name: a 2-D input with a bias is one addmm; otherwise the product is last. */
const char *td_grad_fn_linear(const struct td_node *n)
{
    return n->nin == 3 && n->in[0].t->ndim == 2 ? "AddmmBackward0" : "MmBackward0";
}

/* linear: dx = g @ W, dW = g^T @ x (batch rows folded), db = g (summed to b's shape). Like
** torch, only for the inputs that require grad (the autograd walk passes on no other): a
** network's first layer takes data that does not, and its dx would be a product as large as
** the forward's. */
int td_bw_linear(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                 struct td_quota *q, struct td_err *err)
{
    struct td_tensor *x = n->in[0].t, *w = n->in[1].t;
    struct td_tensor *g2 = NULL, *x2 = NULL, *gt = NULL;
    struct td_op_args none;
    td_op_args_init(&none);
    int rc;
    if (x->requires_grad && (rc = td_bw2(TD_OP_MATMUL, td_t(g), td_t(w), q, &gin[0], err)) != 0) {
        return rc;
    }
    if (!w->requires_grad) {
        if (n->nin == 3) {
            gin[2] = td_tensor_ref(g);
        }
        return 0;
    }
    /* fold every batch dim of g and x into rows */
    struct td_op_args rg, rx;
    td_op_args_init(&rg);
    td_op_args_init(&rx);
    rg.dims[0] = rx.dims[0] = -1;
    rg.dims[1] = g->ndim > 0 ? g->shape[g->ndim - 1] : 1;
    rx.dims[1] = x->shape[x->ndim - 1];
    rg.ndims = rx.ndims = 2;
    rg.has_dims = rx.has_dims = true;
    if ((rc = td_bw1(TD_OP_RESHAPE, td_t(g), &rg, q, &g2, err)) == 0 &&
        (rc = td_bw1(TD_OP_RESHAPE, td_t(x), &rx, q, &x2, err)) == 0 &&
        (rc = td_bw1(TD_OP_T, td_t(g2), &none, q, &gt, err)) == 0 &&
        (rc = td_bw2(TD_OP_MATMUL, td_t(gt), td_t(x2), q, &gin[1], err)) == 0 && n->nin == 3) {
        gin[2] = td_tensor_ref(g);
    }
    td_tensor_unref(g2);
    td_tensor_unref(x2);
    td_tensor_unref(gt);
    return rc;
}

/* outer: d/da = g @ b, d/db = g^T @ a */
int td_bw_outer(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                struct td_quota *q, struct td_err *err)
{
    struct td_tensor *gt = NULL;
    struct td_op_args none;
    td_op_args_init(&none);
    int rc;
    if ((rc = td_bw2(TD_OP_MATMUL, td_t(g), n->in[1], q, &gin[0], err)) == 0 &&
        (rc = td_bw1(TD_OP_T, td_t(g), &none, q, &gt, err)) == 0) {
        rc = td_bw2(TD_OP_MATMUL, td_t(gt), n->in[0], q, &gin[1], err);
    }
    td_tensor_unref(gt);
    return rc;
}
