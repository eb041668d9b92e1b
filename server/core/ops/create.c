/* server/core/ops/create.c — creation ops and the in-place fills: empty, randint, linspace, eye,
** the *_like family, and fill_, zero_, copy_, uniform_, normal_.
**
** Random ops draw from the session's generator or a torch.Generator's, which rpc passes in
** td_op_args.rng, in torch's order with torch's CPU algorithms (core/rng.h), so a seed gives
** torch's values. Values and errors follow torch 1.13.
*/
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../cancel.h"
#include "../rng.h"
#include "family.h"

static enum td_dtype dtype_or(const struct td_op_args *a, enum td_dtype dflt)
{
    return a->has_dtype ? a->dtype : dflt;
}


/* empty(shape): torch leaves the bytes uninitialised; we hand out zeros. */
int td_make_empty(struct td_tensor **out, const struct td_operand *in, int nin,
                  const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)in;
    (void)nin;
    return td_tensor_full(out, dtype_or(a, TD_DTYPE_DEFAULT_FLOAT), a->dims, a->ndims,
                          td_scalar_i(0), q, err);
}

/* randint(low = min, high = max, shape): torch's empty(shape, dtype).random_(low, high), int64
** by default (random.c's random_ draws, checks and errors). */
int td_make_randint(struct td_tensor **out, const struct td_operand *in, int nin,
                    const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    enum td_dtype dt = dtype_or(a, TD_DTYPE_I64);
    if (a->rng == NULL || !a->has_max) {
        return td_err_set(err, TD_EINVAL, "randint needs a high bound and a generator");
    }
    int rc = td_tensor_empty(out, dt, a->dims, a->ndims, q, err);
    if (rc == 0 && (rc = td_fwd_random(*out, in, nin, a, dt, err)) != 0) {
        td_tensor_unref(*out);
        *out = NULL;
    }
    return rc;
}

/* linspace(start = min, end = max, steps = dim): torch's symmetric formula, in float for float
** results and double for integer ones. */
int td_make_linspace(struct td_tensor **out, const struct td_operand *in, int nin,
                     const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)in;
    (void)nin;
    enum td_dtype dt = dtype_or(a, TD_DTYPE_DEFAULT_FLOAT);
    int64_t steps = a->dim;
    if (steps < 0) {
        return td_err_set(err, TD_EINVAL, "number of steps must be non-negative");
    }
    int rc = td_tensor_empty(out, dt, &steps, 1, q, err);
    if (rc != 0) {
        return rc;
    }
    double s = td_scalar_to_double(a->min), e = td_scalar_to_double(a->max);
    char *d = td_tensor_data(*out);
    size_t es = td_dtype_size(dt);
    int64_t half = steps / 2;
    if (dt == TD_DTYPE_F32) {
        float fs = (float)s, fe = (float)e;
        float step = steps > 1 ? (fe - fs) / (float)(steps - 1) : 0.0f;
        for (int64_t i = 0; i < steps; i++) {
            ((float *)d)[i] = i < half || steps == 1 ? fs + step * (float)i
                                                     : fe - step * (float)(steps - i - 1);
        }
        return 0;
    }
    if (dt == TD_DTYPE_F64) {
        double step = steps > 1 ? (e - s) / (double)(steps - 1) : 0.0;
        for (int64_t i = 0; i < steps; i++) {
            ((double *)d)[i] = i < half || steps == 1 ? s + step * (double)i
                                                      : e - step * (double)(steps - i - 1);
        }
        return 0;
    }
    /* Integer results: the bounds are truncated first, then start + step * i in double. */
    double is = (double)td_scalar_to_int(a->min), ie = (double)td_scalar_to_int(a->max);
    double step = steps > 1 ? (ie - is) / (double)(steps - 1) : 0.0;
    for (int64_t i = 0; i < steps; i++) {
        td_elem_store_f64(d + (size_t)i * es, dt, is + step * (double)i);
    }
    return 0;
}

/* eye(n = dim, m = dim2 when has_dim... given as dims[0], dims[1]). */
int td_make_eye(struct td_tensor **out, const struct td_operand *in, int nin,
                const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)in;
    (void)nin;
    if (a->ndims < 1 || a->ndims > 2) {
        return td_err_set(err, TD_EINVAL, "eye(n, m=None) takes one or two sizes");
    }
    int64_t n = a->dims[0], m = a->ndims == 2 ? a->dims[1] : n;
    if (n < 0) {
        return td_err_set(err, TD_EINVAL, "n must be greater or equal to 0, got %lld",
                          (long long)n);
    }
    if (m < 0) {
        return td_err_set(err, TD_EINVAL, "m must be greater or equal to 0, got %lld",
                          (long long)m);
    }
    int64_t shape[2] = {n, m};
    enum td_dtype dt = dtype_or(a, TD_DTYPE_DEFAULT_FLOAT);
    int rc = td_tensor_full(out, dt, shape, 2, td_scalar_i(0), q, err);
    if (rc != 0) {
        return rc;
    }
    char *d = td_tensor_data(*out);
    size_t es = td_dtype_size(dt);
    for (int64_t i = 0; i < n && i < m; i++) {
        td_elem_store_f64(d + (size_t)(i * m + i) * es, dt, 1.0);
    }
    return 0;
}

/* ---- the *_like family: x's shape, x's dtype unless one is given ---- */

static int like(struct td_tensor **out, const struct td_tensor *x, const struct td_op_args *a,
                struct td_scalar v, struct td_quota *q, struct td_err *err)
{
    return td_tensor_full(out, dtype_or(a, x->dtype), x->shape, x->ndim, v, q, err);
}

int td_make_zeros_like(struct td_tensor **out, const struct td_operand *in, int nin,
                       const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    return like(out, in[0].t, a, td_scalar_i(0), q, err);
}

int td_make_ones_like(struct td_tensor **out, const struct td_operand *in, int nin,
                      const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    return like(out, in[0].t, a, td_scalar_i(1), q, err);
}

int td_make_empty_like(struct td_tensor **out, const struct td_operand *in, int nin,
                       const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    return td_make_zeros_like(out, in, nin, a, q, err);
}

/* full_like(x, value = min) */
int td_make_full_like(struct td_tensor **out, const struct td_operand *in, int nin,
                      const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    if (!a->has_min) {
        return td_err_set(err, TD_EINVAL, "full_like() missing required argument 'fill_value'");
    }
    return like(out, in[0].t, a, a->min, q, err);
}

/* rand_like / randn_like: torch fills empty_like(x), which keeps x's dim order (its strides',
** as torch's TensorIterator orders them) with dense strides; the draw walks that tensor's
** memory. The result here is contiguous, so the draw fills it through x's dim order, and a
** normal draw takes torch's element-by-element path unless that order is C order (then torch's
** tensor is contiguous too). */
static int rand_like_common(struct td_tensor **out, const struct td_operand *in,
                            const struct td_op_args *a, bool normal, struct td_quota *q,
                            struct td_err *err)
{
    const struct td_tensor *x = in[0].t;
    if (a->rng == NULL) {
        return td_err_set(err, TD_EINVAL, "no generator");
    }
    enum td_dtype dt = dtype_or(a, x->dtype);
    int perm[TD_MAX_DIMS], last = -1;
    bool c_order = true;
    td_rng_walk_order(x, perm);
    for (int i = 0; i < x->ndim; i++) {
        if (x->shape[perm[i]] != 1) {
            c_order = c_order && perm[i] > last;
            last = perm[i];
        }
    }
    if (c_order) {
        return normal ? td_tensor_randn(out, dt, x->shape, x->ndim, a->rng, q, err)
                      : td_tensor_rand(out, dt, x->shape, x->ndim, a->rng, q, err);
    }
    if (!td_dtype_is_float(dt)) {
        return td_err_set(err, TD_EDTYPE, "\"%s\" not implemented for '%s'",
                          normal ? "normal_kernel_cpu" : "check_uniform_bounds",
                          td_dtype_cname(dt));
    }
    int rc = td_tensor_empty(out, dt, x->shape, x->ndim, q, err);
    if (rc != 0) {
        return rc;
    }
    rc = normal ? td_rng_fill_normal(*out, perm, 0.0, 1.0, a->rng, err)
                : td_rng_fill_uniform(*out, perm, 0.0, 1.0, a->rng, err);
    if (rc != 0) {
        td_tensor_unref(*out);
        *out = NULL;
    }
    return rc;
}

int td_make_rand_like(struct td_tensor **out, const struct td_operand *in, int nin,
                      const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    return rand_like_common(out, in, a, false, q, err);
}

int td_make_randn_like(struct td_tensor **out, const struct td_operand *in, int nin,
                       const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    return rand_like_common(out, in, a, true, q, err);
}

/* ---- in-place fills (the out-of-place forms are refused: they are x.fill_() etc.) ---- */

/* The result dtype of a fill is self's: fill_ and copy_ cast whatever they are given. */
int td_dtype_rule_self(const struct td_operand *in, int nin, const struct td_op_args *a,
                       enum td_dtype *compute, enum td_dtype *result, struct td_err *err)
{
    (void)nin;
    if (!a->inplace) {
        return td_err_set(err, TD_EINVAL, "%s is only available in place: use %s_",
                          td_ops[a->op].name, td_ops[a->op].name);
    }
    *compute = *result = in[0].t->dtype;
    return 0;
}

struct fill_ctx {
    enum td_dtype dt;
    double v;
    int64_t iv;
    bool integral;
};

static void fill_one(void *p, void *ctx, int64_t i)
{
    (void)i;
    struct fill_ctx *f = ctx;
    if (f->integral && f->dt == TD_DTYPE_I64) {
        *(int64_t *)p = f->iv;
    } else {
        td_elem_store_f64(p, f->dt, f->v);
    }
}

/* grad_fn name: fill_(number) is FillBackward2, fill_(tensor) FillBackward3. */
const char *td_grad_fn_fill(const struct td_node *n)
{
    return n->in[1].t != NULL ? "FillBackward3" : "FillBackward2";
}

/* fill_(value): a number, or a 0-dim tensor's value. */
int td_fwd_fill(struct td_tensor *out, const struct td_operand *in, int nin,
                const struct td_op_args *a, enum td_dtype compute, struct td_err *err)
{
    (void)nin;
    (void)a;
    (void)compute;
    struct td_scalar v;
    if (in[1].t != NULL) {
        if (in[1].t->ndim != 0) {
            return td_err_set(err, TD_ESHAPE,
                              "fill_ only supports 0-dimension value tensor but "
                              "got tensor with %d dimensions.",
                              in[1].t->ndim);
        }
        const char *p = td_tensor_data(in[1].t);
        switch (in[1].t->dtype) {
        case TD_DTYPE_F32: v = td_scalar_f(*(const float *)p); break;
        case TD_DTYPE_F64: v = td_scalar_f(*(const double *)p); break;
        case TD_DTYPE_I32: v = td_scalar_i(*(const int32_t *)p); break;
        case TD_DTYPE_I64: v = td_scalar_i(*(const int64_t *)p); break;
        default: v = td_scalar_b(*(const uint8_t *)p != 0); break;
        }
    } else {
        v = in[1].s;
    }
    struct fill_ctx f = {.dt = out->dtype,
                         .v = td_scalar_to_double(v),
                         .iv = td_scalar_to_int(v),
                         .integral = v.kind != TD_SCALAR_FLOAT};
    if (out->dtype == TD_DTYPE_BOOL) {
        f.v = f.v != 0;
    }
    return td_tensor_each(out, fill_one, &f, err);
}

/* The shape rule of fill_: self's shape (the value was checked to be a scalar). */
int td_shape_self(const struct td_operand *in, int nin, const struct td_op_args *a, int64_t *shape,
                  int *ndim, struct td_err *err)
{
    (void)nin;
    (void)a;
    if (in[0].t == NULL) {
        /* fill is binary, so a number may stand first; td_op_cost asks before anything checks */
        return td_err_set(err, TD_EINVAL, "argument 'input' must be Tensor, not a number");
    }
    memcpy(shape, in[0].t->shape, sizeof(int64_t) * (size_t)in[0].t->ndim);
    *ndim = in[0].t->ndim;
    return 0;
}

int td_fwd_zero(struct td_tensor *out, const struct td_operand *in, int nin,
                const struct td_op_args *a, enum td_dtype compute, struct td_err *err)
{
    (void)in;
    (void)nin;
    (void)a;
    (void)compute;
    struct fill_ctx f = {.dt = out->dtype, .v = 0, .iv = 0, .integral = true};
    return td_tensor_each(out, fill_one, &f, err);
}

/* copy_(src): src broadcast to self's shape (the driver checked it) and cast to self's dtype. A
** src that shares self's bytes is copied first, so overlapping views read old values. */
int td_fwd_copy(struct td_tensor *out, const struct td_operand *in, int nin,
                const struct td_op_args *a, enum td_dtype compute, struct td_err *err)
{
    (void)nin;
    (void)a;
    (void)compute;
    const struct td_tensor *src = in[1].t;
    if (src == NULL) {
        return td_fwd_fill(out, in, 2, a, compute, err);
    }
    struct td_tensor *tmp = NULL;
    if (src->storage->buf == out->storage->buf) {
        int rc = td_tensor_empty(&tmp, src->dtype, src->shape, src->ndim, a->quota, err);
        if (rc == 0 && (rc = td_cast_copy(tmp, src, err)) != 0) {
            td_tensor_unref(tmp);
        }
        if (rc != 0) {
            return rc;
        }
        src = tmp;
    }
    /* a broadcast view of src over out's shape */
    struct td_tensor b = *src;
    int lead = out->ndim - src->ndim;
    b.ndim = out->ndim;
    b.numel = out->numel;
    for (int i = out->ndim - 1; i >= 0; i--) {
        int j = i - lead;
        b.shape[i] = out->shape[i];
        b.strides[i] = j >= 0 && src->shape[j] != 1 ? src->strides[j] : 0;
    }
    int rc = td_cast_copy(out, &b, err);
    td_tensor_unref(tmp);
    return rc;
}

/* uniform_(from = min, to = max) and normal_(mean = min, std = max) */
static int fill_random(struct td_tensor *out, const struct td_op_args *a, bool normal,
                       struct td_err *err)
{
    if (!td_dtype_is_float(out->dtype)) {
        return td_err_set(err, TD_EDTYPE, "\"%s\" not implemented for '%s'",
                          normal ? "normal_kernel_cpu" : "check_uniform_bounds",
                          td_dtype_cname(out->dtype));
    }
    double p0 = a->has_min ? td_scalar_to_double(a->min) : 0.0;
    double p1 = a->has_max ? td_scalar_to_double(a->max) : 1.0;
    if (!normal && p0 > p1) {
        return td_err_set(err, TD_EINVAL,
                          "uniform_ expects to return a [from, to) range, but "
                          "found from=%g > to=%g",
                          p0, p1);
    }
    if (normal && p1 < 0) {
        return td_err_set(err, TD_EINVAL, "normal expects std >= 0.0, but found std %g", p1);
    }
    if (a->rng == NULL) {
        return td_err_set(err, TD_EINVAL, "no generator");
    }
    return normal ? td_rng_fill_normal(out, NULL, p0, p1, a->rng, err)
                  : td_rng_fill_uniform(out, NULL, p0, p1, a->rng, err);
}

int td_fwd_uniform(struct td_tensor *out, const struct td_operand *in, int nin,
                   const struct td_op_args *a, enum td_dtype compute, struct td_err *err)
{
    (void)in;
    (void)nin;
    (void)compute;
    return fill_random(out, a, false, err);
}

int td_fwd_normal(struct td_tensor *out, const struct td_operand *in, int nin,
                  const struct td_op_args *a, enum td_dtype compute, struct td_err *err)
{
    (void)in;
    (void)nin;
    (void)compute;
    return fill_random(out, a, true, err);
}

/* copy_(src): the old value gets no gradient, src gets g (summed to its shape by autograd). */
int td_bw_copy(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
               struct td_quota *q, struct td_err *err)
{
    int rc = td_bw2(TD_OP_MUL, td_t(g), td_s(td_scalar_i(0)), q, &gin[0], err);
    if (rc == 0 && n->in[1].t != NULL) {
        gin[1] = td_tensor_ref(g);
    }
    return rc;
}
