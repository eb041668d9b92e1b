/* server/core/ops/shape.c — views and shape ops: reshape/view, flatten, transpose, t, T, mT,
** permute, squeeze, unsqueeze, expand, narrow, select, slice, contiguous, and the copying ops cat,
** stack, repeat, flip, tril, triu, clone.
**
** A view is a new td_tensor over the same storage with its own shape, strides and offset, so a
** write through it is visible in its base (x.select(0, 0).fill_(7) changes x). Views never copy;
** reshape copies only when torch's stride rule (computeStride) says no view exists. Dims wrap
** like Python indices, and every error is worded as torch 1.13 words it.
*/
#include <stdio.h>
#include <string.h>

#include "../../base/checked.h"
#include "../cancel.h"
#include "family.h"

/* ---- helpers ---- */

/* Wraps a possibly negative dim into [0, ndim) (a 0-dim tensor counts as 1-dim, as in torch). */
int td_wrap_dim(int64_t dim, int ndim, int64_t *out, struct td_err *err)
{
    int64_t n = ndim > 0 ? ndim : 1;
    if (dim < -n || dim >= n) {
        return td_err_set(err, TD_EINVAL,
                          "Dimension out of range (expected to be in range of "
                          "[%lld, %lld], but got %lld)",
                          (long long)-n, (long long)(n - 1), (long long)dim);
    }
    *out = dim < 0 ? dim + n : dim;
    return 0;
}

/* A new view of base's storage. */
int td_view_new(struct td_tensor **out, struct td_tensor *base, int ndim, const int64_t *shape,
                const int64_t *strides, int64_t offset, struct td_err *err)
{
    /* A view's shape is unchecked so far (expand and view take any sizes): refuse negative dims
    ** and element or byte counts past 2^63 here, before numel overflows. */
    int64_t numel;
    int rc = td_shape_check(shape, ndim, base->dtype, &numel, NULL, err);
    if (rc != 0) {
        return rc;
    }
    struct td_tensor *v = td_malloc(sizeof *v);
    if (v == NULL) {
        return td_err_code(err, TD_ENOMEM);
    }
    memset(v, 0, sizeof *v);
    v->refs = 1;
    v->dtype = base->dtype;
    v->ndim = ndim;
    v->numel = numel;
    for (int i = 0; i < ndim; i++) {
        v->shape[i] = shape[i];
        v->strides[i] = strides[i];
    }
    v->offset = offset;
    v->storage = base->storage;
    v->storage->refs++;
    *out = v;
    return 0;
}

/* A fresh contiguous copy of t (its own storage). */
static int copy_contiguous(struct td_tensor **out, const struct td_tensor *t, struct td_quota *q,
                           struct td_err *err)
{
    int rc = td_tensor_empty(out, t->dtype, t->shape, t->ndim, q, err);
    if (rc == 0 && (rc = td_cast_copy(*out, t, err)) != 0) {
        td_tensor_unref(*out);
        *out = NULL;
    }
    return rc;
}

/* ---- reshape / view ---- */

/* Resolves a requested shape with at most one -1 against numel. */
static int infer_shape(const struct td_op_args *a, int64_t numel, int64_t *shape,
                       struct td_err *err)
{
    int infer = -1;
    int64_t known = 1;
    char sh[200];
    for (int i = 0; i < a->ndims; i++) {
        if (a->dims[i] == -1) {
            if (infer >= 0) {
                return td_err_set(err, TD_EINVAL, "only one dimension can be inferred");
            }
            infer = i;
        } else if (a->dims[i] < 0) {
            return td_err_set(err, TD_EINVAL, "invalid shape dimension %lld",
                              (long long)a->dims[i]);
        } else {
            known = a->dims[i] != 0 && known > INT64_MAX / a->dims[i] ? INT64_MAX
                                                                      : known * a->dims[i];
        }
        shape[i] = a->dims[i];
    }
    if (infer >= 0 && known != 0 && numel % known == 0) {
        shape[infer] = numel / known;
        return 0;
    }
    if (infer < 0 && known == numel) {
        return 0;
    }
    return td_err_set(err, TD_ESHAPE, "shape '%s' is invalid for input of size %lld",
                      td_shape_str(sh, sizeof sh, a->dims, a->ndims), (long long)numel);
}

/* torch's computeStride: strides giving `shape` as a view of t, or false. */
static bool view_strides(const struct td_tensor *t, const int64_t *shape, int ndim,
                         int64_t *strides)
{
    int64_t oshape[TD_MAX_DIMS], ostride[TD_MAX_DIMS];
    int on = t->ndim;
    for (int i = 0; i < on; i++) {
        oshape[i] = t->shape[i];
        ostride[i] = t->strides[i];
    }
    if (on == 0) {
        oshape[0] = 1;
        ostride[0] = 1;
        on = 1;
    }
    if (t->numel == 0) {
        int64_t s = 1;
        for (int i = ndim - 1; i >= 0; i--) {
            strides[i] = s;
            s = td_sat_mul(s, shape[i] > 1 ? shape[i] : 1); /* sizes past a 0 may not fit */
        }
        return true;
    }
    int view_d = ndim - 1;
    int64_t chunk = ostride[on - 1], tensor_numel = 1, view_numel = 1;
    for (int d = on - 1; d >= 0; d--) {
        tensor_numel = td_sat_mul(tensor_numel, oshape[d]);
        if (d == 0 || (oshape[d - 1] != 1 && ostride[d - 1] != tensor_numel * chunk)) {
            while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
                strides[view_d] = view_numel * chunk;
                view_numel = td_sat_mul(view_numel, shape[view_d]);
                view_d--;
            }
            if (view_numel != tensor_numel) {
                return false;
            }
            if (d > 0) {
                chunk = ostride[d - 1];
                tensor_numel = 1;
                view_numel = 1;
            }
        }
    }
    return view_d == -1;
}

static int reshape_common(struct td_tensor **out, struct td_tensor *t, const struct td_op_args *a,
                          bool must_view, struct td_quota *q, struct td_err *err)
{
    int64_t shape[TD_MAX_DIMS], strides[TD_MAX_DIMS];
    int rc;
    if ((rc = infer_shape(a, t->numel, shape, err)) != 0) {
        return rc;
    }
    if (view_strides(t, shape, a->ndims, strides)) {
        return td_view_new(out, t, a->ndims, shape, strides, t->offset, err);
    }
    if (must_view) {
        return td_err_set(err, TD_ESHAPE,
                          "view size is not compatible with input tensor's size "
                          "and stride (at least one dimension spans across two contiguous "
                          "subspaces). Use .reshape(...) instead.");
    }
    struct td_tensor *c;
    if ((rc = copy_contiguous(&c, t, q, err)) != 0) {
        return rc;
    }
    view_strides(c, shape, a->ndims, strides);
    rc = td_view_new(out, c, a->ndims, shape, strides, 0, err);
    td_tensor_unref(c);
    return rc;
}

/* reshape(shape): a view when the strides allow one, else a copy. */
int td_make_reshape(struct td_tensor **out, const struct td_operand *in, int nin,
                    const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    return reshape_common(out, in[0].t, a, false, q, err);
}

/* view(shape): always a view, or torch's error. */
int td_make_view(struct td_tensor **out, const struct td_operand *in, int nin,
                 const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    return reshape_common(out, in[0].t, a, true, q, err);
}

/* flatten's target shape, as reshape arguments in *r: dims start_dim (dim) .. end_dim (dim2)
** merged into one. */
static int flatten_target(const struct td_tensor *t, const struct td_op_args *a,
                          struct td_op_args *r, struct td_err *err)
{
    int64_t s, e;
    int rc;
    if ((rc = td_wrap_dim(a->dim, t->ndim, &s, err)) != 0 ||
        (rc = td_wrap_dim(a->has_dim ? a->dim2 : -1, t->ndim, &e, err)) != 0) {
        return rc;
    }
    if (s > e) {
        return td_err_set(err, TD_EINVAL,
                          "flatten() has invalid args: start_dim cannot come "
                          "after end_dim");
    }
    td_op_args_init(r);
    if (t->ndim == 0) {
        r->dims[r->ndims++] = 1;
    }
    for (int i = 0; i < t->ndim; i++) {
        if (i > s && i <= e) {
            /* Sizes past a zero dim can multiply past 2^63. */
            if (!td_mul_i64(r->dims[r->ndims - 1], t->shape[i], &r->dims[r->ndims - 1])) {
                return td_err_set(err, TD_ELIMIT,
                                  "shape overflows: flatten's merged size "
                                  "exceeds 2^63");
            }
        } else {
            r->dims[r->ndims++] = t->shape[i];
        }
    }
    return 0;
}

/* flatten(start_dim = dim, end_dim = dim2) */
int td_make_flatten(struct td_tensor **out, const struct td_operand *in, int nin,
                    const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    struct td_op_args r;
    int rc = flatten_target(in[0].t, a, &r, err);
    return rc != 0 ? rc : reshape_common(out, in[0].t, &r, false, q, err);
}

int td_reshape_copies(const struct td_tensor *t, const struct td_op_args *a)
{
    struct td_op_args r;
    int64_t shape[TD_MAX_DIMS], strides[TD_MAX_DIMS];
    if (a->op == TD_OP_FLATTEN) {
        if (flatten_target(t, a, &r, NULL) != 0) {
            return -1;
        }
        a = &r;
    }
    if (a->ndims < 0 || a->ndims > TD_MAX_DIMS || infer_shape(a, t->numel, shape, NULL) != 0) {
        return -1;
    }
    return view_strides(t, shape, a->ndims, strides) ? 0 : 1;
}

/* ---- dim shuffles ---- */

int td_make_transpose(struct td_tensor **out, const struct td_operand *in, int nin,
                      const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    (void)q;
    struct td_tensor *t = in[0].t;
    int64_t d0, d1;
    int rc;
    if ((rc = td_wrap_dim(a->dim, t->ndim, &d0, err)) != 0 ||
        (rc = td_wrap_dim(a->dim2, t->ndim, &d1, err)) != 0) {
        return rc;
    }
    int64_t shape[TD_MAX_DIMS], strides[TD_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    memcpy(strides, t->strides, sizeof strides);
    if (t->ndim > 0) {
        shape[d0] = t->shape[d1];
        shape[d1] = t->shape[d0];
        strides[d0] = t->strides[d1];
        strides[d1] = t->strides[d0];
    }
    return td_view_new(out, t, t->ndim, shape, strides, t->offset, err);
}

/* t(): transpose of a matrix; vectors and scalars come back as they are. */
int td_make_t(struct td_tensor **out, const struct td_operand *in, int nin,
              const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)a;
    struct td_tensor *t = in[0].t;
    if (t->ndim > 2) {
        return td_err_set(err, TD_EINVAL,
                          "t() expects a tensor with <= 2 dimensions, but self "
                          "is %dD",
                          t->ndim);
    }
    struct td_op_args r;
    td_op_args_init(&r);
    r.dim = 0;
    r.dim2 = t->ndim == 2 ? 1 : 0;
    return td_make_transpose(out, in, nin, &r, q, err);
}

/* mT: the last two dims swapped. */
int td_make_mt(struct td_tensor **out, const struct td_operand *in, int nin,
               const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)a;
    struct td_tensor *t = in[0].t;
    if (t->ndim == 0) {
        *out = td_tensor_ref(t); /* torch lets a scalar through unchanged */
        return 0;
    }
    if (t->ndim < 2) {
        return td_err_set(err, TD_EINVAL,
                          "tensor.mT is only supported on matrices or batches of "
                          "matrices. Got %d-D tensor.",
                          t->ndim);
    }
    struct td_op_args r;
    td_op_args_init(&r);
    r.dim = -2;
    r.dim2 = -1;
    return td_make_transpose(out, in, nin, &r, q, err);
}

int td_make_permute(struct td_tensor **out, const struct td_operand *in, int nin,
                    const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    (void)q;
    struct td_tensor *t = in[0].t;
    if (a->ndims != t->ndim) {
        return td_err_set(err, TD_EINVAL,
                          "permute(sparse_coo): number of dimensions in the "
                          "tensor input does not match the length of the desired ordering of "
                          "dimensions i.e. input.dim() = %d is not equal to len(dims) = %d",
                          t->ndim, a->ndims);
    }
    int64_t shape[TD_MAX_DIMS], strides[TD_MAX_DIMS];
    bool seen[TD_MAX_DIMS] = {false};
    for (int i = 0; i < a->ndims; i++) {
        int64_t d;
        int rc = td_wrap_dim(a->dims[i], t->ndim, &d, err);
        if (rc != 0) {
            return rc;
        }
        if (seen[d]) {
            return td_err_set(err, TD_EINVAL, "permute(): duplicate dims are not allowed.");
        }
        seen[d] = true;
        shape[i] = t->shape[d];
        strides[i] = t->strides[d];
    }
    return td_view_new(out, t, t->ndim, shape, strides, t->offset, err);
}

/* grad_fn name: squeeze(dim) is SqueezeBackward1, squeeze() SqueezeBackward0. */
const char *td_grad_fn_squeeze(const struct td_node *n)
{
    return n->args.has_dim ? "SqueezeBackward1" : "SqueezeBackward0";
}

/* squeeze(): drops every size-1 dim, or only `dim` when given. */
int td_make_squeeze(struct td_tensor **out, const struct td_operand *in, int nin,
                    const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    (void)q;
    struct td_tensor *t = in[0].t;
    int64_t only = -1;
    int rc;
    if (a->has_dim && (rc = td_wrap_dim(a->dim, t->ndim, &only, err)) != 0) {
        return rc;
    }
    int64_t shape[TD_MAX_DIMS], strides[TD_MAX_DIMS];
    int n = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] == 1 && (only < 0 || only == i)) {
            continue;
        }
        shape[n] = t->shape[i];
        strides[n++] = t->strides[i];
    }
    return td_view_new(out, t, n, shape, strides, t->offset, err);
}

int td_make_unsqueeze(struct td_tensor **out, const struct td_operand *in, int nin,
                      const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    (void)q;
    struct td_tensor *t = in[0].t;
    if (t->ndim == TD_MAX_DIMS) {
        return td_err_set(err, TD_ELIMIT,
                          "unsqueeze would give %d dims; at most %d are "
                          "supported",
                          TD_MAX_DIMS + 1, TD_MAX_DIMS);
    }
    int64_t d;
    int rc = td_wrap_dim(a->dim, t->ndim + 1, &d, err);
    if (rc != 0) {
        return rc;
    }
    int64_t shape[TD_MAX_DIMS], strides[TD_MAX_DIMS];
    int n = 0;
    for (int i = 0; i <= t->ndim; i++) {
        if (i == d) {
            shape[n] = 1;
            strides[n++] = i < t->ndim ? t->shape[i] * t->strides[i] : 1;
        }
        if (i < t->ndim) {
            shape[n] = t->shape[i];
            strides[n++] = t->strides[i];
        }
    }
    return td_view_new(out, t, n, shape, strides, t->offset, err);
}

/* expand(sizes): size-1 dims stretch with stride 0; -1 keeps a size. */
int td_make_expand(struct td_tensor **out, const struct td_operand *in, int nin,
                   const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    (void)q;
    struct td_tensor *t = in[0].t;
    char s1[200], s2[200];
    if (a->ndims < t->ndim) {
        return td_err_set(err, TD_EINVAL,
                          "expand(%s{%s}, size=%s): the number of sizes provided "
                          "(%d) must be greater or equal to the number of dimensions in the "
                          "tensor (%d)",
                          td_dtype_legacy_name(t->dtype),
                          td_shape_str(s1, sizeof s1, t->shape, t->ndim),
                          td_shape_str(s2, sizeof s2, a->dims, a->ndims), a->ndims, t->ndim);
    }
    int64_t shape[TD_MAX_DIMS], strides[TD_MAX_DIMS];
    int lead = a->ndims - t->ndim;
    /* torch walks the dims from the last one, so it reports the last mismatch. */
    for (int i = a->ndims - 1; i >= 0; i--) {
        int64_t want = a->dims[i];
        if (i < lead) {
            if (want < 0) {
                return td_err_set(err, TD_EINVAL,
                                  "The expanded size of the tensor (%lld) isn't "
                                  "allowed in a leading, non-existing dimension %d",
                                  (long long)want, i);
            }
            shape[i] = want;
            strides[i] = 0;
            continue;
        }
        int64_t have = t->shape[i - lead];
        if (want == -1) {
            want = have;
        }
        if (want != have && have != 1) {
            return td_err_set(err, TD_ESHAPE,
                              "The expanded size of the tensor (%lld) must match "
                              "the existing size (%lld) at non-singleton dimension %d.  Target "
                              "sizes: %s.  Tensor sizes: %s",
                              (long long)want, (long long)have, i,
                              td_shape_str(s2, sizeof s2, a->dims, a->ndims),
                              td_shape_str(s1, sizeof s1, t->shape, t->ndim));
        }
        if (want < 0) {
            return td_err_set(err, TD_EINVAL, "invalid shape dimension %lld", (long long)want);
        }
        shape[i] = want;
        strides[i] = want == have ? t->strides[i - lead] : 0;
    }
    return td_view_new(out, t, a->ndims, shape, strides, t->offset, err);
}

/* narrow(dim, start, length = end) */
int td_make_narrow(struct td_tensor **out, const struct td_operand *in, int nin,
                   const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    (void)q;
    struct td_tensor *t = in[0].t;
    int64_t d;
    int rc;
    if (t->ndim == 0) {
        return td_err_set(err, TD_EINVAL, "narrow() cannot be applied to a 0-dim tensor.");
    }
    if ((rc = td_wrap_dim(a->dim, t->ndim, &d, err)) != 0) {
        return rc;
    }
    int64_t size = t->shape[d], start = a->start, len = a->end;
    /* torch 1.13 wraps start like a dim index over the dim's size, with that message. */
    if (start != size &&
        (rc = td_wrap_dim(start, (int)(size < INT32_MAX ? size : INT32_MAX), &start, err)) != 0) {
        return rc;
    }
    if (len < 0) {
        return td_err_set(err, TD_EINVAL, "narrow(): length must be non-negative.");
    }
    if (start > size - len) {
        return td_err_set(err, TD_EINVAL,
                          "start (%lld) + length (%lld) exceeds dimension size "
                          "(%lld).",
                          (long long)start, (long long)len, (long long)size);
    }
    int64_t shape[TD_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    shape[d] = len;
    return td_view_new(out, t, t->ndim, shape, t->strides, t->offset + start * t->strides[d], err);
}

/* select(dim, index = start): drops the dim. */
int td_make_select(struct td_tensor **out, const struct td_operand *in, int nin,
                   const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    (void)q;
    struct td_tensor *t = in[0].t;
    int64_t d;
    int rc;
    if (t->ndim == 0) {
        return td_err_set(err, TD_EINVAL, "select() cannot be applied to a 0-dim tensor.");
    }
    if ((rc = td_wrap_dim(a->dim, t->ndim, &d, err)) != 0) {
        return rc;
    }
    int64_t size = t->shape[d], idx = a->start;
    if (idx < -size || idx >= size) {
        char sh[200];
        return td_err_set(err, TD_EINVAL,
                          "select(): index %lld out of range for tensor of size "
                          "%s at dimension %lld",
                          (long long)idx, td_shape_str(sh, sizeof sh, t->shape, t->ndim),
                          (long long)d);
    }
    if (idx < 0) {
        idx += size;
    }
    int64_t shape[TD_MAX_DIMS], strides[TD_MAX_DIMS];
    int n = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (i != d) {
            shape[n] = t->shape[i];
            strides[n++] = t->strides[i];
        }
    }
    return td_view_new(out, t, n, shape, strides, t->offset + idx * t->strides[d], err);
}

/* slice(dim, start, end, step): Python slicing x[start:end:step] on one dim; out-of-range
** bounds clamp, as in Python. */
int td_make_slice(struct td_tensor **out, const struct td_operand *in, int nin,
                  const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    (void)q;
    struct td_tensor *t = in[0].t;
    int64_t d;
    int rc;
    if (t->ndim == 0) {
        return td_err_set(err, TD_EINVAL,
                          "invalid index of a 0-dim tensor. Use `tensor.item()` "
                          "in Python or `tensor.item<T>()` in C++ to convert a 0-dim tensor to a "
                          "number");
    }
    if ((rc = td_wrap_dim(a->dim, t->ndim, &d, err)) != 0) {
        return rc;
    }
    int64_t step = a->step == 0 ? 1 : a->step;
    if (step < 0) {
        return td_err_set(err, TD_EINVAL, "step must be greater than zero");
    }
    int64_t size = t->shape[d], start = a->start, end = a->end;
    if (start < 0) {
        start = start < -size ? 0 : start + size;
    }
    if (end < 0) {
        end = end < -size ? 0 : end + size;
    }
    start = start > size ? size : start;
    end = end > size ? size : end;
    /* ceil((end - start) / step) without overflow for steps near 2^63. */
    int64_t len = end > start ? (end - start - 1) / step + 1 : 0;
    int64_t shape[TD_MAX_DIMS], strides[TD_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    memcpy(strides, t->strides, sizeof strides);
    shape[d] = len;
    /* With at most one element the stride is never used; keep it from overflowing. */
    strides[d] = len > 1 ? t->strides[d] * step : t->strides[d];
    return td_view_new(out, t, t->ndim, shape, strides, t->offset + start * t->strides[d], err);
}

/* contiguous(): self when already contiguous, else a contiguous copy. */
int td_make_contiguous(struct td_tensor **out, const struct td_operand *in, int nin,
                       const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    (void)a;
    if (td_tensor_is_contiguous(in[0].t)) {
        *out = td_tensor_ref(in[0].t);
        return 0;
    }
    return copy_contiguous(out, in[0].t, q, err);
}

/* clone(): always a copy. */
int td_make_clone(struct td_tensor **out, const struct td_operand *in, int nin,
                  const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    (void)a;
    return copy_contiguous(out, in[0].t, q, err);
}

/* ---- cat / stack ---- */

/* cat(tensors, dim): promoted dtype; legacy empty 1-D tensors are skipped like torch. */
int td_make_cat(struct td_tensor **out, const struct td_operand *in, int nin,
                const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    if (nin == 0) {
        return td_err_set(err, TD_EINVAL, "tensord.cat(): expected a non-empty list of Tensors");
    }
    const struct td_tensor *ref = NULL;
    for (int i = 0; i < nin; i++) {
        if (in[i].t == NULL) {
            return td_err_set(err, TD_EINVAL,
                              "expected Tensor as element %d in argument 0, but "
                              "got a number",
                              i);
        }
        bool legacy_empty = in[i].t->ndim == 1 && in[i].t->shape[0] == 0;
        if (ref == NULL && !legacy_empty) {
            ref = in[i].t;
        }
    }
    enum td_dtype dt = in[0].t->dtype;
    for (int i = 1; i < nin; i++) {
        dt = td_dtype_promote(dt, in[i].t->dtype);
    }
    if (ref == NULL) {
        int64_t zero = 0;
        return td_tensor_empty(out, dt, &zero, 1, q, err);
    }
    int64_t d;
    int rc;
    if (ref->ndim == 0) {
        return td_err_set(err, TD_EINVAL,
                          "zero-dimensional tensor (at position 0) cannot be "
                          "concatenated");
    }
    if ((rc = td_wrap_dim(a->dim, ref->ndim, &d, err)) != 0) {
        return rc;
    }
    int64_t shape[TD_MAX_DIMS];
    memcpy(shape, ref->shape, sizeof shape);
    shape[d] = 0;
    for (int i = 0; i < nin; i++) {
        const struct td_tensor *t = in[i].t;
        if (t->ndim == 1 && t->shape[0] == 0) {
            continue;
        }
        if (t->ndim != ref->ndim) {
            return td_err_set(err, TD_ESHAPE,
                              "Tensors must have same number of dimensions: got "
                              "%d and %d",
                              ref->ndim, t->ndim);
        }
        for (int k = 0; k < t->ndim; k++) {
            if (k != d && t->shape[k] != ref->shape[k]) {
                return td_err_set(err, TD_ESHAPE,
                                  "Sizes of tensors must match except in "
                                  "dimension %lld. Expected size %lld but got size %lld for "
                                  "tensor number %d in the list.",
                                  (long long)d, (long long)ref->shape[k], (long long)t->shape[k],
                                  i);
            }
        }
        /* Checked: three bool views of 6148914691236517206 elements sum to 2^64 + 2, which
        ** wrapped to a 2-byte result that the copies below then overran. */
        if (!td_add_i64(shape[d], t->shape[d], &shape[d])) {
            return td_err_set(err, TD_ELIMIT,
                              "shape overflows: the concatenated size at dim "
                              "%lld exceeds 2^63",
                              (long long)d);
        }
    }
    struct td_tensor *res;
    if ((rc = td_tensor_empty(&res, dt, shape, ref->ndim, q, err)) != 0) {
        return rc;
    }
    int64_t at = 0;
    for (int i = 0; i < nin; i++) {
        const struct td_tensor *t = in[i].t;
        if ((t->ndim == 1 && t->shape[0] == 0) || t->shape[d] == 0) {
            continue;
        }
        /* A view of res's slab for input i, filled with a casting copy. */
        struct td_tensor slab = *res;
        slab.shape[d] = t->shape[d];
        slab.offset = res->offset + at * res->strides[d];
        slab.numel = t->numel;
        if ((rc = td_cast_copy(&slab, t, err)) != 0) {
            td_tensor_unref(res);
            return rc;
        }
        at += t->shape[d];
    }
    *out = res;
    return 0;
}

/* stack(tensors, dim): unsqueeze each at dim, then cat. */
int td_make_stack(struct td_tensor **out, const struct td_operand *in, int nin,
                  const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    if (nin == 0) {
        return td_err_set(err, TD_EINVAL, "stack expects a non-empty TensorList");
    }
    char s1[200], s2[200];
    int64_t wrapped;
    int wrc;
    if (in[0].t != NULL && (wrc = td_wrap_dim(a->dim, in[0].t->ndim + 1, &wrapped, err)) != 0) {
        return wrc; /* torch checks the dim first */
    }
    for (int i = 0; i < nin; i++) {
        if (in[i].t == NULL) {
            return td_err_set(err, TD_EINVAL,
                              "expected Tensor as element %d in argument 0, but "
                              "got a number",
                              i);
        }
        const struct td_tensor *t = in[i].t, *f = in[0].t;
        if (t->ndim != f->ndim || memcmp(t->shape, f->shape, sizeof(int64_t) * t->ndim) != 0) {
            return td_err_set(err, TD_ESHAPE,
                              "stack expects each tensor to be equal size, but "
                              "got %s at entry 0 and %s at entry %d",
                              td_shape_str(s1, sizeof s1, f->shape, f->ndim),
                              td_shape_str(s2, sizeof s2, t->shape, t->ndim), i);
        }
    }
    struct td_operand *views = td_calloc((size_t)nin, sizeof *views);
    if (views == NULL) {
        return td_err_code(err, TD_ENOMEM);
    }
    struct td_op_args ua;
    td_op_args_init(&ua);
    ua.dim = a->dim;
    int rc = 0, made = 0;
    for (; made < nin && rc == 0; made++) {
        rc = td_make_unsqueeze(&views[made].t, &in[made], 1, &ua, q, err);
    }
    if (rc == 0) {
        struct td_op_args ca;
        td_op_args_init(&ca);
        int64_t d;
        rc = td_wrap_dim(a->dim, in[0].t->ndim + 1, &d, err);
        ca.dim = d;
        if (rc == 0) {
            rc = td_make_cat(out, views, nin, &ca, q, err);
        }
    }
    for (int i = 0; i < nin; i++) {
        td_tensor_unref(views[i].t);
    }
    td_free(views);
    return rc;
}

/* ---- flip, repeat, tril, triu ---- */

int td_make_flip(struct td_tensor **out, const struct td_operand *in, int nin,
                 const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    struct td_tensor *t = in[0].t;
    bool flip[TD_MAX_DIMS] = {false};
    for (int i = 0; i < a->ndims; i++) {
        int64_t d;
        int rc = td_wrap_dim(a->dims[i], t->ndim, &d, err);
        if (rc != 0) {
            return rc;
        }
        if (flip[d]) {
            return td_err_set(err, TD_EINVAL,
                              "dim %lld appears multiple times in the list of "
                              "dims",
                              (long long)d);
        }
        flip[d] = true;
    }
    /* A reversed view (negative strides), copied out contiguous. */
    struct td_tensor rev = *t;
    for (int i = 0; i < t->ndim; i++) {
        if (flip[i] && t->shape[i] > 0) {
            rev.offset += (t->shape[i] - 1) * t->strides[i];
            rev.strides[i] = -t->strides[i];
        }
    }
    return copy_contiguous(out, &rev, q, err);
}

int td_make_repeat(struct td_tensor **out, const struct td_operand *in, int nin,
                   const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    struct td_tensor *t = in[0].t;
    if (a->ndims < t->ndim) {
        return td_err_set(err, TD_EINVAL,
                          "Number of dimensions of repeat dims can not be smaller "
                          "than number of dimensions of tensor");
    }
    int lead = a->ndims - t->ndim;
    int64_t shape[TD_MAX_DIMS];
    for (int i = 0; i < a->ndims; i++) {
        if (a->dims[i] < 0) {
            return td_err_set(err, TD_EINVAL,
                              "Trying to create tensor with negative dimension "
                              "%lld: [%lld]",
                              (long long)a->dims[i], (long long)a->dims[i]);
        }
        int64_t base = i < lead ? 1 : t->shape[i - lead];
        if (!td_mul_i64(base, a->dims[i], &shape[i])) {
            return td_err_set(err, TD_ELIMIT,
                              "shape overflows: repeat size at dim %d exceeds "
                              "2^63",
                              i);
        }
    }
    struct td_tensor *res;
    int rc = td_tensor_empty(&res, t->dtype, shape, a->ndims, q, err);
    if (rc != 0) {
        return rc;
    }
    if (res->numel == 0) {
        *out = res;
        return 0;
    }
    /* View res as [r0, s0, r1, s1, ...] and copy t broadcast over the r dims... done as one
    ** strided source per output element: source index = output index mod input size. */
    size_t es = td_dtype_size(t->dtype);
    char *o = td_tensor_data(res);
    const char *src = t->storage->buf->data;
    int64_t idx[TD_MAX_DIMS] = {0};
    for (int64_t c = 0, end; c < res->numel; c = end) {
        end = td_cancel_chunk_end(c, res->numel);
        for (int64_t n = c; n < end; n++) {
            int64_t off = t->offset;
            for (int i = lead; i < a->ndims; i++) {
                off += (idx[i] % t->shape[i - lead]) * t->strides[i - lead];
            }
            memcpy(o + (size_t)n * es, src + off * (int64_t)es, es);
            for (int d = a->ndims - 1; d >= 0; d--) {
                if (++idx[d] < shape[d]) {
                    break;
                }
                idx[d] = 0;
            }
        }
        if ((rc = td_cancel_check(err)) != 0) {
            td_tensor_unref(res);
            return rc;
        }
    }
    *out = res;
    return 0;
}

/* tril/triu(diagonal = dim): zero above / below the diagonal of the last two dims. */
static int tri(struct td_tensor **out, const struct td_operand *in, const struct td_op_args *a,
               bool lower, struct td_quota *q, struct td_err *err)
{
    struct td_tensor *t = in[0].t;
    int64_t unused;
    int rc;
    if (t->ndim == 0) {
        return td_err_set(err, TD_EINVAL,
                          "Dimension specified as -2 but tensor has no "
                          "dimensions");
    }
    if ((rc = td_wrap_dim(-2, t->ndim, &unused, err)) != 0) {
        return rc; /* torch's words for a 1-D input */
    }
    (void)lower;
    rc = copy_contiguous(out, t, q, err);
    if (rc != 0) {
        return rc;
    }
    struct td_tensor *r = *out;
    int64_t rows = r->shape[r->ndim - 2], cols = r->shape[r->ndim - 1];
    int64_t mats = rows * cols > 0 ? r->numel / (rows * cols) : 0, k = a->dim;
    size_t es = td_dtype_size(r->dtype);
    char *base = td_tensor_data(r);
    int64_t since_check = 0;
    for (int64_t m = 0; m < mats; m++) {
        for (int64_t i = 0; i < rows; i++) {
            for (int64_t j = 0; j < cols; j++) {
                bool zero = lower ? j - i > k : j - i < k;
                if (zero) {
                    memset(base + (size_t)((m * rows + i) * cols + j) * es, 0, es);
                }
            }
            /* a cancel check per chunk of rows, never per element */
            if ((since_check += cols + 1) >= TD_CANCEL_CHUNK) {
                since_check = 0;
                if ((rc = td_cancel_check(err)) != 0) {
                    td_tensor_unref(r);
                    *out = NULL;
                    return rc;
                }
            }
        }
    }
    return 0;
}

int td_make_tril(struct td_tensor **out, const struct td_operand *in, int nin,
                 const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    return tri(out, in, a, true, q, err);
}

int td_make_triu(struct td_tensor **out, const struct td_operand *in, int nin,
                 const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    return tri(out, in, a, false, q, err);
}

/* reshape / view backward: the gradient reshaped to the input's shape. */
int td_bw_reshape(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                  struct td_quota *q, struct td_err *err)
{
    const struct td_tensor *x = n->in[0].t;
    struct td_op_args r;
    td_op_args_init(&r);
    memcpy(r.dims, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    r.ndims = x->ndim;
    r.has_dims = true;
    return td_bw1(TD_OP_RESHAPE, td_t(g), &r, q, &gin[0], err);
}

/* detach(): the same bytes, outside the graph. */
int td_make_detach(struct td_tensor **out, const struct td_operand *in, int nin,
                   const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    (void)a;
    (void)q;
    struct td_tensor *t = in[0].t;
    return td_view_new(out, t, t->ndim, t->shape, t->strides, t->offset, err);
}

/* ---- backward rules for views and copies ---- */

/* clone, contiguous, to, expand: the gradient itself (autograd sums expanded dims away and
** casts into the input's dtype). */
int td_bw_identity(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                   struct td_quota *q, struct td_err *err)
{
    (void)n;
    (void)q;
    (void)err;
    gin[0] = td_tensor_ref(g);
    return 0;
}

/* transpose, t and mT undo themselves. */
int td_bw_transpose(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                    struct td_quota *q, struct td_err *err)
{
    return td_bw1(n->op, td_t(g), &n->args, q, &gin[0], err);
}

/* permute: the inverse permutation. */
int td_bw_permute(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                  struct td_quota *q, struct td_err *err)
{
    struct td_op_args inv;
    td_op_args_init(&inv);
    inv.ndims = n->args.ndims;
    inv.has_dims = true;
    for (int i = 0; i < n->args.ndims; i++) {
        int64_t d;
        int rc = td_wrap_dim(n->args.dims[i], n->args.ndims, &d, err);
        if (rc != 0) {
            return rc;
        }
        inv.dims[d] = i;
    }
    return td_bw1(TD_OP_PERMUTE, td_t(g), &inv, q, &gin[0], err);
}

/* select, narrow, slice: the gradient written into the same view of a zero tensor. */
int td_bw_scatter_view(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                       struct td_quota *q, struct td_err *err)
{
    const struct td_tensor *x = n->in[0].t;
    struct td_tensor *z = NULL, *v = NULL, *r = NULL;
    int rc;
    if ((rc = td_tensor_full(&z, g->dtype, x->shape, x->ndim, td_scalar_i(0), q, err)) != 0) {
        return rc;
    }
    if ((rc = td_bw1(n->op, td_t(z), &n->args, q, &v, err)) == 0 &&
        (rc = td_op_apply(TD_OP_COPY, (struct td_operand[2]){td_t(v), td_t(g)}, 2, NULL, true, q,
                          &r, err)) == 0) {
        gin[0] = td_tensor_ref(z);
    }
    td_tensor_unref(r);
    td_tensor_unref(v);
    td_tensor_unref(z);
    return rc;
}

/* cat: each input gets its slab of g; stack: each its index along the new dim. */
int td_bw_cat_stack(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                    struct td_quota *q, struct td_err *err)
{
    int64_t at = 0, d;
    int rc = td_wrap_dim(n->args.dim, g->ndim, &d, err);
    for (int i = 0; i < n->nin && rc == 0; i++) {
        const struct td_tensor *t = n->in[i].t;
        struct td_op_args a;
        td_op_args_init(&a);
        a.dim = d;
        if (n->op == TD_OP_STACK) {
            a.start = i;
            rc = td_bw1(TD_OP_SELECT, td_t(g), &a, q, &gin[i], err);
            continue;
        }
        if (t->ndim == 1 && t->shape[0] == 0) {
            continue; /* skipped by cat, like torch */
        }
        a.start = at;
        a.end = t->shape[d];
        at += t->shape[d];
        rc = td_bw1(TD_OP_NARROW, td_t(g), &a, q, &gin[i], err);
    }
    return rc;
}

/* flip is its own inverse; tril/triu keep the same triangle of g. */
int td_bw_same_op(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                  struct td_quota *q, struct td_err *err)
{
    return td_bw1(n->op, td_t(g), &n->args, q, &gin[0], err);
}

/* repeat: the tiles of g summed back onto the input: g viewed as [r0, s0, r1, s1, ...] and
** summed over the r dims. */
int td_bw_repeat(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                 struct td_quota *q, struct td_err *err)
{
    const struct td_tensor *x = n->in[0].t;
    int nd = n->args.ndims, lead = nd - x->ndim;
    if (2 * nd > TD_MAX_DIMS) {
        return td_err_set(err, TD_EUNSUP, "repeat backward supports up to 4 dims");
    }
    struct td_op_args r, s;
    td_op_args_init(&r);
    td_op_args_init(&s);
    r.has_dims = s.has_dims = true;
    for (int i = 0; i < nd; i++) {
        int64_t base = i < lead ? 1 : x->shape[i - lead];
        r.dims[r.ndims++] = n->args.dims[i];
        r.dims[r.ndims++] = base;
        s.dims[s.ndims++] = 2 * i;
    }
    struct td_tensor *v = NULL, *sum = NULL;
    int rc;
    if ((rc = td_bw1(TD_OP_RESHAPE, td_t(g), &r, q, &v, err)) == 0 &&
        (rc = td_bw1(TD_OP_SUM, td_t(v), &s, q, &sum, err)) == 0) {
        gin[0] = td_tensor_ref(sum); /* autograd reshapes leading 1s away via sum_to_shape */
    }
    td_tensor_unref(v);
    td_tensor_unref(sum);
    return rc;
}
