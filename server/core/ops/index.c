/* server/core/ops/index.c — the indexing family: gather, scatter, scatter_add, index_select,
** index_add, masked_fill, masked_select, nonzero, take, and torch's advanced indexing, index
** (x[i, :, j]) and index_put (x[i, :, j] = v, accumulate or not), with their backward rules and
** cost rules.
**
** Index tensors are int64 (int32 too where torch takes it: index_select), read through their
** strides; every index value is checked against its dim before anything is written through it,
** with torch 1.13's messages ("index 5 is out of bounds for dimension 0 with size 3"). Every
** walk goes element by element in C order (coordinates from the linear position), checking the
** current request's cancel every TD_CANCEL_CHUNK elements. Results and the in-place targets may
** have any strides. index and index_put share one plan (struct adv): which dims carry an index
** (OpArgs.index_mask), the index tensors' broadcast shape, and the result's shape by torch's
** rule (the broadcast dims stand where the indexed dims were when those are adjacent, first
** otherwise).
*/
#include <stdio.h>
#include <string.h>

#include "../../base/checked.h"
#include "../cancel.h"
#include "family.h"

/* ---- walking ---- */

static void unravel(int64_t lin, const int64_t *shape, int ndim, int64_t *c)
{
    for (int k = ndim - 1; k >= 0; k--) {
        int64_t n = shape[k] > 0 ? shape[k] : 1;
        c[k] = lin % n;
        lin /= n;
    }
}

/* Element offset (from td_tensor_data) of coordinates c in t. */
static int64_t off_c(const struct td_tensor *t, const int64_t *c)
{
    int64_t o = 0;
    for (int k = 0; k < t->ndim; k++) {
        o += c[k] * t->strides[k];
    }
    return o;
}

/* Element offset of the lin-th element of t in C order. */
static int64_t off_lin(const struct td_tensor *t, int64_t lin)
{
    int64_t c[TD_MAX_DIMS];
    unravel(lin, t->shape, t->ndim, c);
    return off_c(t, c);
}

/* Element offset of t broadcast (aligned right, size-1 dims repeated) to coordinates c of a
** shape of rank nd. */
static int64_t off_bcast(const struct td_tensor *t, const int64_t *c, int nd)
{
    int64_t o = 0;
    for (int k = 0; k < t->ndim; k++) {
        if (t->shape[k] != 1) {
            o += c[nd - t->ndim + k] * t->strides[k];
        }
    }
    return o;
}

static char *elem(const struct td_tensor *t, int64_t off)
{
    return (char *)td_tensor_data(t) + off * (int64_t)td_dtype_size(t->dtype);
}

static int64_t load_idx(const struct td_tensor *t, int64_t off)
{
    return td_elem_load_i64(elem(t, off), t->dtype);
}

/* *dst += *src (same dtype), or a plain copy when !add. */
static void put(char *dst, const char *src, enum td_dtype dt, bool add)
{
    if (!add) {
        memcpy(dst, src, td_dtype_size(dt));
    } else if (td_dtype_is_float(dt)) {
        td_elem_store_f64(dst, dt, td_elem_load_f64(dst, dt) + td_elem_load_f64(src, dt));
    } else if (dt == TD_DTYPE_I64) {
        *(int64_t *)(void *)dst = (int64_t)((uint64_t) * (int64_t *)(void *)dst +
                                            (uint64_t) * (const int64_t *)src);
    } else if (dt == TD_DTYPE_I32) {
        *(int32_t *)(void *)dst = (int32_t)((uint32_t) * (int32_t *)(void *)dst +
                                            (uint32_t) * (const int32_t *)src);
    } else {
        *(bool *)(void *)dst = *(bool *)(void *)dst || *(const bool *)src;
    }
}

/* One element of dt holding scalar s (torch's casts). */
static void scalar_bytes(struct td_scalar s, enum td_dtype dt, char *buf)
{
    if (td_dtype_is_float(dt) || dt == TD_DTYPE_BOOL) {
        td_elem_store_f64(buf, dt, td_scalar_to_double(s));
    } else if (dt == TD_DTYPE_I64) {
        int64_t v = td_scalar_to_int(s);
        memcpy(buf, &v, sizeof v);
    } else {
        int32_t v = (int32_t)(uint32_t)(uint64_t)td_scalar_to_int(s);
        memcpy(buf, &v, sizeof v);
    }
}

/* The cancel check every TD_CANCEL_CHUNK elements of a walk. */
static int tick(int64_t i, struct td_err *err)
{
    return (i & (TD_CANCEL_CHUNK - 1)) == TD_CANCEL_CHUNK - 1 ? td_cancel_check(err) : 0;
}

static int need_tensor(const struct td_operand *o, const char *op, const char *arg,
                       struct td_err *err)
{
    if (o->t == NULL) {
        return td_err_set(err, TD_EINVAL, "%s(): argument '%s' must be Tensor, not a number", op,
                          arg);
    }
    return 0;
}

static int oob(int64_t v, int64_t d, int64_t n, struct td_err *err)
{
    return td_err_set(err, TD_EINVAL,
                      "index %lld is out of bounds for dimension %lld with size %lld", (long long)v,
                      (long long)d, (long long)n);
}

/* zeros of shape like t, dtype dt */
static int zeros_as(const int64_t *shape, int ndim, enum td_dtype dt, struct td_quota *q,
                    struct td_tensor **out, struct td_err *err)
{
    return td_tensor_full(out, dt, shape, ndim, td_scalar_i(0), q, err);
}

/* ---- gather, scatter, scatter_add ---- */

/* torch's checks of gather/scatter's index against self (and src): same rank (0-dim counts as
** 1), and index no larger than self apart from dim (and no larger than src anywhere). */
static int check_gs(const char *op, const struct td_tensor *x, const struct td_tensor *idx,
                    const struct td_tensor *src, int64_t dim, struct td_err *err)
{
    if (idx->dtype != TD_DTYPE_I64) {
        return td_err_set(err, TD_EDTYPE, "%s(): Expected dtype int64 for index", op);
    }
    int xn = x->ndim > 0 ? x->ndim : 1, in = idx->ndim > 0 ? idx->ndim : 1;
    if (xn != in && idx->numel != 0) {
        return td_err_set(err, TD_EINVAL,
                          "Index tensor must have the same number of dimensions as %s tensor",
                          strcmp(op, "gather") == 0 ? "input" : "self");
    }
    for (int k = 0; k < idx->ndim && idx->numel != 0; k++) {
        int64_t xs = x->ndim > 0 ? x->shape[k] : 1;
        char a[160], b[160], c[160];
        if ((k != dim && idx->shape[k] > xs) ||
            (src != NULL && src->ndim > 0 && idx->shape[k] > src->shape[k])) {
            if (src == NULL) {
                return td_err_set(err, TD_EINVAL,
                                  "Size does not match at dimension %d expected index %s to be "
                                  "smaller than self %s apart from dimension %lld",
                                  k, td_shape_str(a, sizeof a, idx->shape, idx->ndim),
                                  td_shape_str(b, sizeof b, x->shape, x->ndim), (long long)dim);
            }
            return td_err_set(err, TD_EINVAL,
                              "Expected index %s to be smaller than self %s apart from "
                              "dimension %lld and to be smaller size than src %s",
                              td_shape_str(a, sizeof a, idx->shape, idx->ndim),
                              td_shape_str(b, sizeof b, x->shape, x->ndim), (long long)dim,
                              td_shape_str(c, sizeof c, src->shape, src->ndim));
        }
    }
    return 0;
}

int td_make_gather(struct td_tensor **out, const struct td_operand *in, int nin,
                   const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    struct td_tensor *x = in[0].t, *idx = in[1].t;
    int64_t dim;
    int rc;
    if ((rc = need_tensor(&in[1], "gather", "index", err)) != 0 ||
        (rc = td_wrap_dim(a->dim, x->ndim, &dim, err)) != 0 ||
        (rc = check_gs("gather", x, idx, NULL, dim, err)) != 0) {
        return rc;
    }
    struct td_tensor *t = NULL;
    if ((rc = td_tensor_empty(&t, x->dtype, idx->shape, idx->ndim, q, err)) != 0) {
        return rc;
    }
    size_t es = td_dtype_size(x->dtype);
    int64_t n = x->ndim > 0 ? x->shape[dim] : 1;
    for (int64_t l = 0; l < idx->numel; l++) {
        int64_t c[TD_MAX_DIMS];
        unravel(l, idx->shape, idx->ndim, c);
        int64_t v = load_idx(idx, off_c(idx, c));
        if (v < 0 || v >= n) {
            td_tensor_unref(t);
            return oob(v, dim, n, err);
        }
        int64_t o = 0;
        for (int k = 0; k < x->ndim; k++) {
            o += (k == dim ? v : c[k]) * x->strides[k];
        }
        memcpy(elem(t, l), elem(x, o), es);
        if ((rc = tick(l, err)) != 0) {
            td_tensor_unref(t);
            return rc;
        }
    }
    *out = t;
    return 0;
}

/* The backward of the ops that read x at indices along args.dim (gather, index_select): zeros
** like x, then `op` (scatter_add, index_add) of g into them in place at the same indices. */
static int bw_add_at(enum td_op_id op, const struct td_node *n, struct td_tensor *g,
                     struct td_tensor **gin, struct td_quota *q, struct td_err *err)
{
    const struct td_tensor *x = n->in[0].t;
    struct td_tensor *z = NULL, *r = NULL;
    int rc = zeros_as(x->shape, x->ndim, g->dtype, q, &z, err);
    if (rc == 0) {
        struct td_op_args sa;
        td_op_args_init(&sa);
        sa.dim = n->args.dim;
        struct td_operand si[3] = {td_t(z), n->in[1], td_t(g)};
        rc = td_op_apply(op, si, 3, &sa, true, q, &r, err);
    }
    td_tensor_unref(r);
    if (rc == 0) {
        gin[0] = z;
    } else {
        td_tensor_unref(z);
    }
    return rc;
}

int td_bw_gather(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                 struct td_quota *q, struct td_err *err)
{
    return bw_add_at(TD_OP_SCATTER_ADD, n, g, gin, q, err);
}

/* The shape rule of the ops that write into (a copy of) self: checks everything the kernel
** will rely on; the result has self's shape. */
struct adv;
static int adv_plan(struct adv *p, const struct td_tensor *x, uint64_t mask,
                    struct td_tensor *const *idx, int nidx, struct td_err *err);

int td_shape_index_self(const struct td_operand *in, int nin, const struct td_op_args *a,
                        int64_t *shape, int *ndim, struct td_err *err);

int td_dtype_rule_index_self(const struct td_operand *in, int nin, const struct td_op_args *a,
                             enum td_dtype *compute, enum td_dtype *result, struct td_err *err)
{
    if (nin < 2 || in[0].t == NULL) {
        return td_err_set(err, TD_EINVAL, "%s(): argument 'input' must be Tensor, not a number",
                          td_ops[a->op].name);
    }
    const struct td_tensor *x = in[0].t;
    const struct td_tensor *v = in[nin - 1].t;
    switch (a->op) {
    case TD_OP_SCATTER:
    case TD_OP_SCATTER_ADD:
        if (v != NULL && v->dtype != x->dtype) {
            return td_err_set(err, TD_EDTYPE, "%s(): Expected self.dtype to be equal to src.dtype",
                              td_ops[a->op].name);
        }
        break;
    case TD_OP_INDEX_ADD:
        if (v == NULL) {
            return td_err_set(err, TD_EINVAL,
                              "index_add(): argument 'source' must be Tensor, not a number");
        }
        if (v->dtype != x->dtype) {
            return td_err_set(err, TD_EDTYPE,
                              "index_add_(): self (%s) and source (%s) must have the same scalar "
                              "type",
                              td_dtype_cname(x->dtype), td_dtype_cname(v->dtype));
        }
        break;
    case TD_OP_INDEX_PUT:
        if (v != NULL && v->dtype != x->dtype) {
            return td_err_set(err, TD_EDTYPE,
                              "Index put requires the source and destination dtypes match, got "
                              "%s for the destination and %s for the source.",
                              td_dtype_cname(x->dtype), td_dtype_cname(v->dtype));
        }
        break;
    default: break;
    }
    *compute = *result = x->dtype;
    return 0;
}

/* ---- the advanced-indexing plan ---- */

struct adv {
    int xnd;
    int64_t xshape[TD_MAX_DIMS];
    uint64_t mask;
    int nidx;
    struct td_tensor *const *idx;
    int bnd; /* the index tensors' broadcast shape */
    int64_t bshape[TD_MAX_DIMS];
    int first; /* where the broadcast dims stand in the result */
    int rnd;   /* the result */
    int64_t rshape[TD_MAX_DIMS];
    int64_t rnumel;
};

static int adv_plan(struct adv *p, const struct td_tensor *x, uint64_t mask,
                    struct td_tensor *const *idx, int nidx, struct td_err *err)
{
    memset(p, 0, sizeof *p);
    p->xnd = x->ndim;
    memcpy(p->xshape, x->shape, sizeof p->xshape);
    p->mask = mask;
    p->idx = idx;
    p->nidx = nidx;
    int bits = 0, lo = -1, hi = -1;
    for (int d = 0; d < 64; d++) {
        if ((mask >> d) & 1) {
            if (d >= x->ndim) {
                return td_err_set(err, TD_EINVAL, "too many indices for tensor of dimension %d",
                                  x->ndim);
            }
            bits++;
            lo = lo < 0 ? d : lo;
            hi = d;
        }
    }
    if (bits != nidx || nidx == 0) {
        return td_err_set(err, TD_EINVAL,
                          "index: %d index tensors given for an index_mask naming %d dims", nidx,
                          bits);
    }
    for (int i = 0; i < nidx; i++) {
        if (idx[i] == NULL || idx[i]->dtype != TD_DTYPE_I64) {
            return td_err_set(err, TD_EINVAL,
                              "tensors used as indices must be long, byte or bool tensors");
        }
    }
    memcpy(p->bshape, idx[0]->shape, sizeof p->bshape);
    p->bnd = idx[0]->ndim;
    for (int i = 1; i < nidx; i++) {
        int64_t o[TD_MAX_DIMS];
        int on;
        if (td_broadcast_shapes(p->bshape, p->bnd, idx[i]->shape, idx[i]->ndim, o, &on, NULL) !=
            0) {
            char buf[1024];
            size_t len = 0;
            for (int j = 0; j < nidx && len < sizeof buf - 200; j++) {
                char s[160];
                len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s", j ? ", " : "",
                                        td_shape_str(s, sizeof s, idx[j]->shape, idx[j]->ndim));
            }
            return td_err_set(err, TD_EINVAL,
                              "shape mismatch: indexing tensors could not be broadcast together "
                              "with shapes %s",
                              buf);
        }
        memcpy(p->bshape, o, sizeof o);
        p->bnd = on;
    }
    bool adjacent = hi - lo + 1 == bits;
    int rest = x->ndim - bits;
    if (rest + p->bnd > TD_MAX_DIMS) {
        return td_err_set(err, TD_EINVAL, "index: the result would have more than %d dims",
                          TD_MAX_DIMS);
    }
    p->first = adjacent ? lo : 0;
    int r = 0;
    bool placed = false;
    for (int d = 0; d < x->ndim; d++) {
        bool indexed = (mask >> d) & 1;
        if ((indexed && adjacent && d == lo) || (!indexed && !adjacent && !placed)) {
            for (int k = 0; k < p->bnd; k++) {
                p->rshape[r++] = p->bshape[k];
            }
            placed = true;
        }
        if (!indexed) {
            p->rshape[r++] = x->shape[d];
        }
    }
    if (!placed) { /* every dim indexed */
        for (int k = 0; k < p->bnd; k++) {
            p->rshape[r++] = p->bshape[k];
        }
    }
    p->rnd = r;
    int64_t nbytes;
    return td_shape_check(p->rshape, p->rnd, TD_DTYPE_I64, &p->rnumel, &nbytes, err);
}

/* The offset in t (of the plan's input shape) that result coordinates rc name, index values
** checked against their dims. */
static int adv_offset(const struct adv *p, const struct td_tensor *t, const int64_t *rc,
                      int64_t *off, struct td_err *err)
{
    const int64_t *bc = rc + p->first;
    int64_t o = 0;
    int r = 0, i = 0;
    for (int d = 0; d < p->xnd; d++) {
        if (r == p->first) {
            r += p->bnd;
        }
        if ((p->mask >> d) & 1) {
            const struct td_tensor *it = p->idx[i++];
            int64_t v = load_idx(it, off_bcast(it, bc, p->bnd));
            int64_t n = p->xshape[d];
            if (v < -n || v >= n) {
                return oob(v, i - 1, n, err); /* torch counts the indexed dims only */
            }
            o += (v < 0 ? v + n : v) * t->strides[d];
        } else {
            o += rc[r++] * t->strides[d];
        }
    }
    *off = o;
    return 0;
}

/* index(input, indices...): the gathered copy. */
int td_make_index(struct td_tensor **out, const struct td_operand *in, int nin,
                  const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    if (nin < 2 || in[0].t == NULL) {
        return td_err_set(err, TD_EINVAL, "index takes a tensor and at least one index tensor");
    }
    struct td_tensor *idx[TD_OP_MAX_INPUTS];
    for (int i = 1; i < nin; i++) {
        idx[i - 1] = in[i].t;
    }
    struct td_tensor *x = in[0].t;
    struct adv p;
    int rc = adv_plan(&p, x, a->index_mask, idx, nin - 1, err);
    struct td_tensor *t = NULL;
    if (rc != 0 || (rc = td_tensor_empty(&t, x->dtype, p.rshape, p.rnd, q, err)) != 0) {
        return rc;
    }
    size_t es = td_dtype_size(x->dtype);
    for (int64_t l = 0; l < p.rnumel; l++) {
        int64_t c[TD_MAX_DIMS], o;
        unravel(l, p.rshape, p.rnd, c);
        if ((rc = adv_offset(&p, x, c, &o, err)) != 0 || (rc = tick(l, err)) != 0) {
            td_tensor_unref(t);
            return rc;
        }
        memcpy(elem(t, l), elem(x, o), es);
    }
    *out = t;
    return 0;
}

/* The in-place index_put of values (a tensor or a number, last of in) into t. */
static int index_put_into(struct td_tensor *t, const struct td_operand *in, int nin, bool acc,
                          uint64_t mask, struct td_err *err)
{
    struct td_tensor *idx[TD_OP_MAX_INPUTS];
    for (int i = 1; i < nin - 1; i++) {
        idx[i - 1] = in[i].t;
    }
    struct adv p;
    int rc = adv_plan(&p, t, mask, idx, nin - 2, err);
    if (rc != 0) {
        return rc;
    }
    const struct td_tensor *v = in[nin - 1].t;
    char sbuf[8];
    if (v == NULL) {
        scalar_bytes(in[nin - 1].s, t->dtype, sbuf);
    }
    for (int64_t l = 0; l < p.rnumel; l++) {
        int64_t c[TD_MAX_DIMS], o;
        unravel(l, p.rshape, p.rnd, c);
        if ((rc = adv_offset(&p, t, c, &o, err)) != 0 || (rc = tick(l, err)) != 0) {
            return rc;
        }
        put(elem(t, o), v == NULL ? sbuf : elem(v, off_bcast(v, c, p.rnd)), t->dtype, acc);
    }
    return 0;
}

int td_fwd_index_put(struct td_tensor *out, const struct td_operand *in, int nin,
                     const struct td_op_args *a, enum td_dtype compute, struct td_err *err)
{
    (void)compute;
    int rc;
    if (out != in[0].t && (rc = td_cast_copy(out, in[0].t, err)) != 0) {
        return rc;
    }
    return index_put_into(out, in, nin, a->accumulate, a->index_mask, err);
}

int td_bw_index(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                struct td_quota *q, struct td_err *err)
{
    const struct td_tensor *x = n->in[0].t;
    struct td_tensor *z = NULL, *r = NULL;
    int rc = zeros_as(x->shape, x->ndim, g->dtype, q, &z, err);
    if (rc == 0) {
        struct td_operand pi[TD_NODE_MAX_IN + 1];
        pi[0] = td_t(z);
        for (int i = 1; i < n->nin; i++) {
            pi[i] = n->in[i];
        }
        pi[n->nin] = td_t(g);
        struct td_op_args pa;
        td_op_args_init(&pa);
        pa.index_mask = n->args.index_mask;
        pa.accumulate = true;
        rc = td_op_apply(TD_OP_INDEX_PUT, pi, n->nin + 1, &pa, true, q, &r, err);
    }
    td_tensor_unref(r);
    if (rc == 0) {
        gin[0] = z;
    } else {
        td_tensor_unref(z);
    }
    return rc;
}

int td_bw_index_put(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                    struct td_quota *q, struct td_err *err)
{
    int rc = 0;
    int nv = n->nin - 1;
    if (n->args.accumulate) {
        gin[0] = td_tensor_ref(g);
    } else {
        struct td_operand pi[TD_NODE_MAX_IN];
        for (int i = 0; i < n->nin; i++) {
            pi[i] = n->in[i];
        }
        pi[0] = td_t(g);
        pi[nv] = td_s(td_scalar_i(0));
        struct td_op_args pa;
        td_op_args_init(&pa);
        pa.index_mask = n->args.index_mask;
        rc = td_op_apply(TD_OP_INDEX_PUT, pi, n->nin, &pa, false, q, &gin[0], err);
    }
    if (rc == 0 && n->in[nv].t != NULL) {
        struct td_operand pi[TD_NODE_MAX_IN];
        pi[0] = td_t(g);
        for (int i = 1; i < nv; i++) {
            pi[i] = n->in[i];
        }
        struct td_op_args pa;
        td_op_args_init(&pa);
        pa.index_mask = n->args.index_mask;
        rc = td_op_apply(TD_OP_INDEX, pi, nv, &pa, false, q, &gin[nv], err);
    }
    return rc;
}

/* ---- the shape rule of the write-into-self ops ---- */

static int index_vector(const char *op, const struct td_tensor *idx, bool int32_ok,
                        struct td_err *err)
{
    if (idx->dtype != TD_DTYPE_I64 && !(int32_ok && idx->dtype == TD_DTYPE_I32)) {
        return td_err_set(err, TD_EDTYPE,
                          int32_ok ? "%s(): Expected dtype int32 or int64 for index"
                                   : "%s(): Expected dtype int64 for index",
                          op);
    }
    if (idx->ndim > 1) {
        return td_err_set(err, TD_EINVAL, "%s(): Index is supposed to be a vector", op);
    }
    return 0;
}

int td_shape_index_self(const struct td_operand *in, int nin, const struct td_op_args *a,
                        int64_t *shape, int *ndim, struct td_err *err)
{
    const struct td_tensor *x = in[0].t;
    int64_t dim = 0;
    int rc = 0;
    switch (a->op) {
    case TD_OP_SCATTER:
    case TD_OP_SCATTER_ADD:
        if ((rc = need_tensor(&in[1], td_ops[a->op].name, "index", err)) != 0 ||
            (a->op == TD_OP_SCATTER_ADD &&
             (rc = need_tensor(&in[2], "scatter_add", "src", err)) != 0) ||
            (rc = td_wrap_dim(a->dim, x->ndim, &dim, err)) != 0 ||
            (rc = check_gs(td_ops[a->op].name, x, in[1].t, in[2].t, dim, err)) != 0) {
            return rc;
        }
        break;
    case TD_OP_INDEX_ADD: {
        const struct td_tensor *idx = in[1].t, *src = in[2].t;
        if ((rc = need_tensor(&in[1], "index_add", "index", err)) != 0 ||
            (rc = td_wrap_dim(a->dim, x->ndim, &dim, err)) != 0 ||
            (rc = index_vector("index_add_", idx, true, err)) != 0) {
            return rc;
        }
        int64_t ssz = src->ndim > 0 ? src->shape[dim < src->ndim ? dim : 0] : 1;
        if (idx->numel != ssz) {
            return td_err_set(err, TD_EINVAL,
                              "index_add_(): Number of indices (%lld) should be equal to "
                              "source.size(dim): (%lld), for dim: %lld",
                              (long long)idx->numel, (long long)ssz, (long long)dim);
        }
        bool same = src->ndim == x->ndim || (src->ndim <= 1 && x->ndim <= 1);
        for (int k = 0; same && k < x->ndim && k < src->ndim; k++) {
            same = k == dim || src->shape[k] == x->shape[k];
        }
        if (!same) {
            char sa[160], sb[160];
            return td_err_set(err, TD_EINVAL,
                              "source tensor shape must match self tensor shape, excluding the "
                              "specified dimension. Got self.shape = %s source.shape = %s",
                              td_shape_str(sa, sizeof sa, x->shape, x->ndim),
                              td_shape_str(sb, sizeof sb, src->shape, src->ndim));
        }
        break;
    }
    case TD_OP_MASKED_FILL: {
        if ((rc = need_tensor(&in[1], "masked_fill", "mask", err)) != 0) {
            return rc;
        }
        if (in[1].t->dtype != TD_DTYPE_BOOL) {
            return td_err_set(err, TD_EDTYPE,
                              "masked_fill_ only supports boolean masks, but got mask with dtype "
                              "%s",
                              td_dtype_name(in[1].t->dtype));
        }
        if (in[2].t != NULL && in[2].t->ndim != 0) {
            return td_err_set(err, TD_EINVAL,
                              "masked_fill_ only supports a 0-dimensional value tensor, but got "
                              "tensor with %d dimension(s).",
                              in[2].t->ndim);
        }
        int64_t o[TD_MAX_DIMS];
        int on;
        /* torch names the mask first out of place (expand_outplace(mask, self)), self first in
        ** place */
        const struct td_tensor *b0 = a->inplace ? x : in[1].t, *b1 = a->inplace ? in[1].t : x;
        if ((rc = td_broadcast_shapes(b0->shape, b0->ndim, b1->shape, b1->ndim, o, &on, err)) !=
            0) {
            return rc;
        }
        /* torch's out-of-place masked_fill broadcasts self with the mask; in place, td_op_apply
        ** refuses a result shape other than self's with torch's text */
        memcpy(shape, o, sizeof(int64_t) * (size_t)on);
        *ndim = on;
        return 0;
    }
    case TD_OP_INDEX_PUT: {
        if (nin < 3) {
            return td_err_set(err, TD_EINVAL, "index_put takes a tensor, indices and values");
        }
        struct td_tensor *idx[TD_OP_MAX_INPUTS];
        for (int i = 1; i < nin - 1; i++) {
            idx[i - 1] = in[i].t;
        }
        struct adv p;
        if ((rc = adv_plan(&p, x, a->index_mask, idx, nin - 2, err)) != 0) {
            return rc;
        }
        const struct td_tensor *v = in[nin - 1].t;
        int64_t o[TD_MAX_DIMS];
        int on;
        if (v != NULL &&
            (td_broadcast_shapes(p.rshape, p.rnd, v->shape, v->ndim, o, &on, NULL) != 0 ||
             on != p.rnd || memcmp(o, p.rshape, sizeof(int64_t) * (size_t)on) != 0)) {
            char sa[160], sb[160];
            return td_err_set(err, TD_ESHAPE,
                              "shape mismatch: value tensor of shape %s cannot be broadcast to "
                              "indexing result of shape %s",
                              td_shape_str(sa, sizeof sa, v->shape, v->ndim),
                              td_shape_str(sb, sizeof sb, p.rshape, p.rnd));
        }
        break;
    }
    default: return td_err_set(err, TD_EINVAL, "%s: not an indexing op", td_ops[a->op].name);
    }
    memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    *ndim = x->ndim;
    return 0;
}

/* scatter's and index_add's start: out is self (in place) or a copy of it, and *dim args.dim
** wrapped against out. */
static int into_self(struct td_tensor *out, const struct td_operand *in, const struct td_op_args *a,
                     int64_t *dim, struct td_err *err)
{
    int rc;
    if (out != in[0].t && (rc = td_cast_copy(out, in[0].t, err)) != 0) {
        return rc;
    }
    return td_wrap_dim(a->dim, out->ndim, dim, err);
}

/* scatter / scatter_add: out (a copy of self, or self) gets src (or the value) at index along
** dim. */
int td_fwd_scatter(struct td_tensor *out, const struct td_operand *in, int nin,
                   const struct td_op_args *a, enum td_dtype compute, struct td_err *err)
{
    (void)nin;
    (void)compute;
    const struct td_tensor *idx = in[1].t, *src = in[2].t;
    int64_t dim;
    int rc = into_self(out, in, a, &dim, err);
    if (rc != 0) {
        return rc;
    }
    bool add = a->op == TD_OP_SCATTER_ADD;
    char sbuf[8];
    if (src == NULL) {
        scalar_bytes(in[2].s, out->dtype, sbuf);
    }
    int64_t n = out->ndim > 0 ? out->shape[dim] : 1;
    for (int64_t l = 0; l < idx->numel; l++) {
        int64_t c[TD_MAX_DIMS];
        unravel(l, idx->shape, idx->ndim, c);
        int64_t v = load_idx(idx, off_c(idx, c));
        if (v < 0 || v >= n) {
            return oob(v, dim, n, err);
        }
        int64_t o = 0;
        for (int k = 0; k < out->ndim; k++) {
            o += (k == dim ? v : c[k]) * out->strides[k];
        }
        put(elem(out, o), src == NULL ? sbuf : elem(src, src->ndim > 0 ? off_c(src, c) : 0),
            out->dtype, add);
        if ((rc = tick(l, err)) != 0) {
            return rc;
        }
    }
    return 0;
}

const char *td_grad_fn_scatter(const struct td_node *n)
{
    return n->in[2].t != NULL ? "ScatterBackward0" : "ScatterBackward1";
}

int td_bw_scatter(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                  struct td_quota *q, struct td_err *err)
{
    struct td_op_args da;
    td_op_args_init(&da);
    da.dim = n->args.dim;
    int rc = 0;
    if (n->op == TD_OP_SCATTER_ADD) {
        gin[0] = td_tensor_ref(g);
    } else {
        struct td_operand si[3] = {td_t(g), n->in[1], td_s(td_scalar_i(0))};
        rc = td_op_apply(TD_OP_SCATTER, si, 3, &da, false, q, &gin[0], err);
    }
    if (rc == 0 && n->in[2].t != NULL) {
        struct td_operand gi[2] = {td_t(g), n->in[1]};
        rc = td_op_apply(TD_OP_GATHER, gi, 2, &da, false, q, &gin[2], err);
    }
    return rc;
}

/* ---- index_select, index_add ---- */

int td_make_index_select(struct td_tensor **out, const struct td_operand *in, int nin,
                         const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    struct td_tensor *x = in[0].t, *idx = in[1].t;
    int64_t dim;
    int rc;
    if ((rc = need_tensor(&in[1], "index_select", "index", err)) != 0 ||
        (rc = td_wrap_dim(a->dim, x->ndim, &dim, err)) != 0 ||
        (rc = index_vector("index_select", idx, true, err)) != 0) {
        return rc;
    }
    int64_t shape[TD_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    if (x->ndim > 0) {
        shape[dim] = idx->numel;
    }
    int64_t n = x->ndim > 0 ? x->shape[dim] : 1;
    struct td_tensor *t = NULL;
    if ((rc = td_tensor_empty(&t, x->dtype, shape, x->ndim, q, err)) != 0) {
        return rc;
    }
    size_t es = td_dtype_size(x->dtype);
    for (int64_t l = 0; l < t->numel; l++) {
        int64_t c[TD_MAX_DIMS];
        unravel(l, shape, x->ndim, c);
        int64_t k = x->ndim > 0 ? c[dim] : 0;
        int64_t v = load_idx(idx, idx->ndim > 0 ? k * idx->strides[0] : 0);
        if (v < 0 || v >= n) {
            td_tensor_unref(t);
            return td_err_set(err, TD_EINVAL, "index out of range in self");
        }
        if (x->ndim > 0) {
            c[dim] = v;
        }
        memcpy(elem(t, l), elem(x, off_c(x, c)), es);
        if ((rc = tick(l, err)) != 0) {
            td_tensor_unref(t);
            return rc;
        }
    }
    *out = t;
    return 0;
}

int td_bw_index_select(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                       struct td_quota *q, struct td_err *err)
{
    return bw_add_at(TD_OP_INDEX_ADD, n, g, gin, q, err);
}

int td_fwd_index_add(struct td_tensor *out, const struct td_operand *in, int nin,
                     const struct td_op_args *a, enum td_dtype compute, struct td_err *err)
{
    (void)nin;
    (void)compute;
    const struct td_tensor *idx = in[1].t, *src = in[2].t;
    int64_t dim;
    int rc = into_self(out, in, a, &dim, err);
    if (rc != 0) {
        return rc;
    }
    int64_t n = out->ndim > 0 ? out->shape[dim] : 1;
    for (int64_t l = 0; l < src->numel; l++) {
        int64_t c[TD_MAX_DIMS];
        unravel(l, src->shape, src->ndim, c);
        int64_t k = src->ndim > 0 ? c[dim] : 0;
        int64_t v = load_idx(idx, idx->ndim > 0 ? k * idx->strides[0] : 0);
        if (v < -n || v >= n) {
            return td_err_set(err, TD_EINVAL, "index out of range in self");
        }
        v = v < 0 ? v + n : v;
        int64_t so = off_c(src, c);
        if (out->ndim > 0) {
            c[dim] = v;
        }
        put(elem(out, out->ndim > 0 ? off_c(out, c) : 0), elem(src, so), out->dtype, true);
        if ((rc = tick(l, err)) != 0) {
            return rc;
        }
    }
    return 0;
}

int td_bw_index_add(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                    struct td_quota *q, struct td_err *err)
{
    gin[0] = td_tensor_ref(g);
    if (n->in[2].t == NULL || !n->in[2].t->requires_grad) {
        return 0;
    }
    struct td_op_args sa;
    td_op_args_init(&sa);
    sa.dim = n->args.dim;
    struct td_operand si[2] = {td_t(g), n->in[1]};
    return td_op_apply(TD_OP_INDEX_SELECT, si, 2, &sa, false, q, &gin[2], err);
}

/* ---- masked_fill, masked_select ---- */

int td_fwd_masked_fill(struct td_tensor *out, const struct td_operand *in, int nin,
                       const struct td_op_args *a, enum td_dtype compute, struct td_err *err)
{
    (void)nin;
    (void)a;
    (void)compute;
    int rc;
    if (out != in[0].t) {
        /* self broadcast to the result's shape: a borrowed stride-0 view, read only */
        const struct td_tensor *x = in[0].t;
        struct td_tensor xv = *x;
        int lead = out->ndim - x->ndim;
        for (int d = 0; d < out->ndim; d++) {
            int k = d - lead;
            xv.shape[d] = out->shape[d];
            xv.strides[d] = k < 0 || x->shape[k] != out->shape[d] ? 0 : x->strides[k];
        }
        xv.ndim = out->ndim;
        xv.numel = out->numel;
        if ((rc = td_cast_copy(out, &xv, err)) != 0) {
            return rc;
        }
    }
    const struct td_tensor *m = in[1].t, *v = in[2].t;
    char sbuf[8];
    if (v == NULL) {
        scalar_bytes(in[2].s, out->dtype, sbuf);
    } else if (td_dtype_is_float(out->dtype) || out->dtype == TD_DTYPE_BOOL) {
        td_elem_store_f64(sbuf, out->dtype, td_elem_load_f64(td_tensor_data(v), v->dtype));
    } else {
        scalar_bytes(td_scalar_i(td_elem_load_i64(td_tensor_data(v), v->dtype)), out->dtype, sbuf);
    }
    for (int64_t l = 0; l < out->numel; l++) {
        int64_t c[TD_MAX_DIMS];
        unravel(l, out->shape, out->ndim, c);
        if (*(const bool *)elem(m, off_bcast(m, c, out->ndim))) {
            memcpy(elem(out, off_c(out, c)), sbuf, td_dtype_size(out->dtype));
        }
        if ((rc = tick(l, err)) != 0) {
            return rc;
        }
    }
    return 0;
}

const char *td_grad_fn_masked_fill(const struct td_node *n)
{
    return n->in[2].t != NULL ? "MaskedFillBackward1" : "MaskedFillBackward0";
}

int td_bw_masked_fill(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                      struct td_quota *q, struct td_err *err)
{
    struct td_operand fi[3] = {td_t(g), n->in[1], td_s(td_scalar_i(0))};
    int rc = td_op_apply(TD_OP_MASKED_FILL, fi, 3, NULL, false, q, &gin[0], err);
    if (rc == 0 && n->in[2].t != NULL && n->in[2].t->requires_grad) {
        struct td_tensor *s = NULL;
        struct td_operand si[2] = {td_t(g), n->in[1]};
        if ((rc = td_op_apply(TD_OP_MASKED_SELECT, si, 2, NULL, false, q, &s, err)) == 0) {
            rc = td_bw1(TD_OP_SUM, td_t(s), NULL, q, &gin[2], err);
        }
        td_tensor_unref(s);
    }
    return rc;
}

/* The broadcast shape of x and mask, for masked_select. */
static int ms_shape(const struct td_tensor *x, const struct td_tensor *m, int64_t *b, int *bn,
                    struct td_err *err)
{
    if (m->dtype != TD_DTYPE_BOOL) {
        return td_err_set(err, TD_EDTYPE,
                          "masked_select: expected BoolTensor or ByteTensor for mask");
    }
    return td_broadcast_shapes(x->shape, x->ndim, m->shape, m->ndim, b, bn, err);
}

int td_make_masked_select(struct td_tensor **out, const struct td_operand *in, int nin,
                          const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    (void)a;
    struct td_tensor *x = in[0].t, *m = in[1].t;
    int64_t b[TD_MAX_DIMS], bnum = 1;
    int bn, rc;
    if ((rc = need_tensor(&in[1], "masked_select", "mask", err)) != 0 ||
        (rc = ms_shape(x, m, b, &bn, err)) != 0) {
        return rc;
    }
    for (int k = 0; k < bn; k++) {
        bnum *= b[k]; /* td_broadcast_shapes checked it */
    }
    int64_t cnt = 0;
    for (int64_t l = 0; l < bnum; l++) {
        int64_t c[TD_MAX_DIMS];
        unravel(l, b, bn, c);
        cnt += *(const bool *)elem(m, off_bcast(m, c, bn)) ? 1 : 0;
        if ((rc = tick(l, err)) != 0) {
            return rc;
        }
    }
    struct td_tensor *t = NULL;
    if ((rc = td_tensor_empty(&t, x->dtype, &cnt, 1, q, err)) != 0) {
        return rc;
    }
    size_t es = td_dtype_size(x->dtype);
    for (int64_t l = 0, j = 0; l < bnum; l++) {
        int64_t c[TD_MAX_DIMS];
        unravel(l, b, bn, c);
        if (*(const bool *)elem(m, off_bcast(m, c, bn))) {
            memcpy(elem(t, j++), elem(x, off_bcast(x, c, bn)), es);
        }
        if ((rc = tick(l, err)) != 0) {
            td_tensor_unref(t);
            return rc;
        }
    }
    *out = t;
    return 0;
}

/* masked_select: g goes back to the selected places of the broadcast shape (autograd sums it
** down to the input's). */
int td_bw_masked_select(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                        struct td_quota *q, struct td_err *err)
{
    const struct td_tensor *x = n->in[0].t, *m = n->in[1].t;
    int64_t b[TD_MAX_DIMS];
    int bn;
    struct td_tensor *z = NULL;
    int rc = ms_shape(x, m, b, &bn, err);
    if (rc != 0 || (rc = zeros_as(b, bn, g->dtype, q, &z, err)) != 0) {
        return rc;
    }
    size_t es = td_dtype_size(g->dtype);
    for (int64_t l = 0, j = 0; l < z->numel; l++) {
        int64_t c[TD_MAX_DIMS];
        unravel(l, b, bn, c);
        if (*(const bool *)elem(m, off_bcast(m, c, bn)) && j < g->numel) {
            memcpy(elem(z, l), elem(g, off_lin(g, j++)), es);
        }
        if ((rc = tick(l, err)) != 0) {
            td_tensor_unref(z);
            return rc;
        }
    }
    gin[0] = z;
    return 0;
}

/* ---- nonzero, take ---- */

int td_make_nonzero(struct td_tensor **out, const struct td_operand *in, int nin,
                    const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    (void)a;
    struct td_tensor *x = in[0].t;
    int64_t cnt = 0;
    int rc;
    for (int64_t l = 0; l < x->numel; l++) {
        cnt += td_elem_load_f64(elem(x, off_lin(x, l)), x->dtype) != 0 ? 1 : 0;
        if ((rc = tick(l, err)) != 0) {
            return rc;
        }
    }
    int64_t shape[2] = {cnt, x->ndim};
    struct td_tensor *t = NULL;
    if ((rc = td_tensor_empty(&t, TD_DTYPE_I64, shape, 2, q, err)) != 0) {
        return rc;
    }
    int64_t *p = td_tensor_data(t);
    for (int64_t l = 0; l < x->numel; l++) {
        int64_t c[TD_MAX_DIMS];
        unravel(l, x->shape, x->ndim, c);
        if (td_elem_load_f64(elem(x, off_c(x, c)), x->dtype) != 0) {
            memcpy(p, c, sizeof(int64_t) * (size_t)x->ndim);
            p += x->ndim;
        }
        if ((rc = tick(l, err)) != 0) {
            td_tensor_unref(t);
            return rc;
        }
    }
    *out = t;
    return 0;
}

static int take_check(const struct td_tensor *idx, struct td_err *err)
{
    if (idx->dtype != TD_DTYPE_I64) {
        return td_err_set(err, TD_EDTYPE, "take(): Expected a long tensor for index, but got %s",
                          td_dtype_cname(idx->dtype));
    }
    return 0;
}

int td_make_take(struct td_tensor **out, const struct td_operand *in, int nin,
                 const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    (void)a;
    struct td_tensor *x = in[0].t, *idx = in[1].t, *t = NULL;
    int rc;
    if ((rc = need_tensor(&in[1], "take", "index", err)) != 0 || (rc = take_check(idx, err)) != 0) {
        return rc;
    }
    if (x->numel == 0 && idx->numel != 0) {
        return td_err_set(err, TD_EINVAL, "take(): tried to take from an empty tensor");
    }
    if ((rc = td_tensor_empty(&t, x->dtype, idx->shape, idx->ndim, q, err)) != 0) {
        return rc;
    }
    size_t es = td_dtype_size(x->dtype);
    for (int64_t l = 0; l < idx->numel; l++) {
        int64_t v = load_idx(idx, off_lin(idx, l));
        if (v < -x->numel || v >= x->numel) {
            td_tensor_unref(t);
            return td_err_set(err, TD_EINVAL,
                              "out of range: tried to access index %lld on a tensor of %lld "
                              "elements.",
                              (long long)v, (long long)x->numel);
        }
        memcpy(elem(t, l), elem(x, off_lin(x, v < 0 ? v + x->numel : v)), es);
        if ((rc = tick(l, err)) != 0) {
            td_tensor_unref(t);
            return rc;
        }
    }
    *out = t;
    return 0;
}

int td_bw_take(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
               struct td_quota *q, struct td_err *err)
{
    const struct td_tensor *x = n->in[0].t, *idx = n->in[1].t;
    struct td_tensor *z = NULL;
    int rc = zeros_as(x->shape, x->ndim, g->dtype, q, &z, err);
    if (rc != 0) {
        return rc;
    }
    for (int64_t l = 0; l < idx->numel; l++) {
        int64_t v = load_idx(idx, off_lin(idx, l));
        if (v < -x->numel || v >= x->numel) {
            continue; /* the forward refused it */
        }
        put(elem(z, v < 0 ? v + x->numel : v), elem(g, off_lin(g, l)), g->dtype, true);
        if ((rc = tick(l, err)) != 0) {
            td_tensor_unref(z);
            return rc;
        }
    }
    gin[0] = z;
    return 0;
}

/* ---- cost rules: safe before validation, logical sizes, saturating ---- */

static int64_t esz(const struct td_tensor *t)
{
    return td_dtype_is_valid((int)t->dtype) ? (int64_t)td_dtype_size(t->dtype) : 8;
}

/* gather: each index element read with its source element, one written. */
int td_cost_gather(const struct td_operand *in, int nin, const struct td_op_args *a,
                   struct td_cost *c)
{
    (void)a;
    if (nin != 2 || in[0].t == NULL || in[1].t == NULL) {
        return -1;
    }
    int64_t n = in[1].t->numel;
    c->read = td_sat_mul(n, 2);
    c->written = n;
    c->out_bytes = td_sat_mul(n, esz(in[0].t));
    return 0;
}

/* scatter, scatter_add, index_add, masked_fill: self copied (unless in place), then every
** index/source (or mask) element read and one element written for each. */
int td_cost_scatter(const struct td_operand *in, int nin, const struct td_op_args *a,
                    struct td_cost *c)
{
    if (nin != 3 || in[0].t == NULL) {
        return -1;
    }
    const struct td_tensor *x = in[0].t;
    int64_t n = x->numel; /* the result's size: masked_fill's broadcasts self with the mask */
    if (a->op == TD_OP_MASKED_FILL && in[1].t != NULL) {
        int64_t shape[TD_MAX_DIMS];
        int nd;
        if (td_broadcast_shapes(x->shape, x->ndim, in[1].t->shape, in[1].t->ndim, shape, &nd,
                                NULL) != 0) {
            return -1;
        }
        n = 1;
        for (int d = 0; d < nd; d++) {
            n = td_sat_mul(n, shape[d]);
        }
    }
    int64_t work = n;
    for (int i = 1; i < 3; i++) {
        if (in[i].t != NULL) {
            work = td_sat_add(work, in[i].t->numel);
        }
    }
    c->read = a->inplace ? work : td_sat_add(work, x->numel);
    c->written = a->inplace ? work : td_sat_add(work, n);
    c->out_bytes = a->inplace ? 0 : td_sat_mul(n, esz(x));
    return 0;
}

int td_cost_index_select(const struct td_operand *in, int nin, const struct td_op_args *a,
                         struct td_cost *c)
{
    if (nin != 2 || in[0].t == NULL || in[1].t == NULL) {
        return -1;
    }
    const struct td_tensor *x = in[0].t;
    int64_t n = x->ndim > 0 ? x->ndim : 1;
    if (a->dim < -n || a->dim >= n) {
        return -1;
    }
    int64_t d = a->dim < 0 ? a->dim + n : a->dim;
    int64_t out = in[1].t->numel;
    for (int k = 0; k < x->ndim; k++) {
        out = k == d ? out : td_sat_mul(out, x->shape[k]);
    }
    c->read = td_sat_mul(out, 2);
    c->written = out;
    c->out_bytes = td_sat_mul(out, esz(x));
    return 0;
}

/* masked_select: the output's size depends on the data; it is bounded by the broadcast
** (logical) size of input and mask, which is what this counts: the mask read twice (count,
** then select). */
int td_cost_masked_select(const struct td_operand *in, int nin, const struct td_op_args *a,
                          struct td_cost *c)
{
    (void)a;
    if (nin != 2 || in[0].t == NULL || in[1].t == NULL) {
        return -1;
    }
    int64_t shape[TD_MAX_DIMS], n = 1;
    int nd;
    if (td_broadcast_shapes(in[0].t->shape, in[0].t->ndim, in[1].t->shape, in[1].t->ndim, shape,
                            &nd, NULL) != 0) {
        return -1;
    }
    for (int d = 0; d < nd; d++) {
        n = td_sat_mul(n, shape[d]);
    }
    c->read = td_sat_mul(n, 3);
    c->written = n;
    c->out_bytes = td_sat_mul(n, esz(in[0].t));
    return 0;
}

/* nonzero: bounded by every element nonzero, ndim int64s each. */
int td_cost_nonzero(const struct td_operand *in, int nin, const struct td_op_args *a,
                    struct td_cost *c)
{
    (void)a;
    if (nin != 1 || in[0].t == NULL) {
        return -1;
    }
    int64_t n = in[0].t->numel, nd = in[0].t->ndim > 0 ? in[0].t->ndim : 1;
    c->read = td_sat_mul(n, 2);
    c->written = td_sat_mul(n, nd);
    c->out_bytes = td_sat_mul(c->written, 8);
    return 0;
}

int td_cost_take(const struct td_operand *in, int nin, const struct td_op_args *a,
                 struct td_cost *c)
{
    return td_cost_gather(in, nin, a, c);
}

/* index: the result's size is the index tensors' broadcast size times the dims taken whole;
** each result element reads one element and every index tensor once. */
int td_cost_index(const struct td_operand *in, int nin, const struct td_op_args *a,
                  struct td_cost *c)
{
    if (nin < 2 || nin > TD_MAX_DIMS + 1 || in[0].t == NULL) {
        return -1;
    }
    struct td_tensor *idx[TD_MAX_DIMS];
    for (int i = 1; i < nin; i++) {
        if (in[i].t == NULL) {
            return -1;
        }
        idx[i - 1] = in[i].t;
    }
    struct adv p;
    if (adv_plan(&p, in[0].t, a->index_mask, idx, nin - 1, NULL) != 0) {
        return -1;
    }
    c->read = td_sat_mul(p.rnumel, nin);
    c->written = p.rnumel;
    c->out_bytes = td_sat_mul(p.rnumel, esz(in[0].t));
    return 0;
}

/* index_put: the write-side twin of index (self copied first out of place). */
int td_cost_index_put(const struct td_operand *in, int nin, const struct td_op_args *a,
                      struct td_cost *c)
{
    if (nin < 3 || nin > TD_MAX_DIMS + 2 || in[0].t == NULL) {
        return -1;
    }
    struct td_tensor *idx[TD_MAX_DIMS];
    for (int i = 1; i < nin - 1; i++) {
        if (in[i].t == NULL) {
            return -1;
        }
        idx[i - 1] = in[i].t;
    }
    struct adv p;
    if (adv_plan(&p, in[0].t, a->index_mask, idx, nin - 2, NULL) != 0) {
        return -1;
    }
    const struct td_tensor *x = in[0].t;
    c->read = td_sat_mul(p.rnumel, nin);
    c->written = p.rnumel;
    if (!a->inplace) {
        c->read = td_sat_add(c->read, x->numel);
        c->written = td_sat_add(c->written, x->numel);
        c->out_bytes = td_sat_mul(x->numel, esz(x));
    }
    return 0;
}
