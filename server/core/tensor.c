/* server/core/tensor.c — buffers, storage, strided tensors and their construction. */
#include "tensor.h"

#include "autograd.h"
#include "cancel.h"
#include "../base/assert.h"
#include "../base/checked.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- shapes ---- */

int td_shape_check(const int64_t *shape, int ndim, enum td_dtype dt, int64_t *numel,
                   int64_t *nbytes, struct td_err *err)
{
    if (ndim < 0 || ndim > TD_MAX_DIMS) {
        return td_err_set(err, TD_EINVAL, "shape has %d dims; at most %d are supported", ndim,
                          TD_MAX_DIMS);
    }
    if (!td_dtype_is_valid(dt)) {
        return td_err_set(err, TD_EDTYPE, "unknown dtype %d", (int)dt);
    }
    /* The sizes other than 0 must multiply without overflow even when a 0 makes the tensor
    ** empty: contiguous strides are that product (td_tensor_new), and views compute with them. */
    int64_t n = 1;
    bool zero = false;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) {
            char sh[160];
            return td_err_set(err, TD_EINVAL,
                              "Trying to create tensor with negative dimension %" PRId64 ": %s",
                              shape[i], td_shape_str(sh, sizeof sh, shape, ndim));
        }
        if (shape[i] == 0) {
            zero = true;
        } else if (!td_mul_i64(n, shape[i], &n)) {
            return td_err_set(err, TD_ELIMIT,
                              "shape overflows: the element count at dim %d "
                              "exceeds 2^63",
                              i);
        }
    }
    if (zero) {
        n = 0;
    }
    int64_t es = (int64_t)td_dtype_size(dt), bytes;
    if (!td_mul_i64(n, es, &bytes)) {
        return td_err_set(err, TD_ELIMIT,
                          "shape overflows: %" PRId64 " elements of %s exceed "
                          "2^63 bytes",
                          n, td_dtype_name(dt));
    }
    if (numel != NULL) {
        *numel = n;
    }
    if (nbytes != NULL) {
        *nbytes = bytes;
    }
    return 0;
}

char *td_shape_str(char *buf, size_t cap, const int64_t *shape, int ndim)
{
    size_t k = 0;
    int w = snprintf(buf, cap, "[");
    k = w > 0 ? (size_t)w : 0;
    for (int i = 0; i < ndim && k < cap; i++) {
        w = snprintf(buf + k, cap - k, "%s%" PRId64, i ? ", " : "", shape[i]);
        k += w > 0 ? (size_t)w : 0;
    }
    if (k < cap) {
        snprintf(buf + k, cap - k, "]");
    }
    return buf;
}

/* ---- buffers ---- */

/* Tensors of at most this many bytes keep them in their buffer's allocation (with the 32-byte
** header, a block of td_malloc's small classes). */
#define BUFFER_INLINE_MAX 128
static_assert(sizeof(struct td_buffer) % 16 == 0, "inline bytes after a buffer stay 16-aligned");

static int buffer_new(struct td_buffer **out, void *data, size_t nbytes, struct td_quota *q,
                      struct td_err *err)
{
    struct td_buffer *b = td_malloc(sizeof *b);
    if (b == NULL) {
        return td_err_code(err, TD_ENOMEM);
    }
    atomic_init(&b->refs, 1);
    b->data = data;
    b->nbytes = nbytes;
    b->quota = q;
    *out = b;
    return 0;
}

void td_buffer_unref(struct td_buffer *b)
{
    if (b == NULL || atomic_fetch_sub(&b->refs, 1) != 1) {
        return;
    }
    td_quota_release(b->quota, (int64_t)b->nbytes);
    if (b->data != (void *)(b + 1)) {
        td_free(b->data); /* else the bytes are inline (tensor_alloc) */
    }
    td_free(b);
}

struct td_buffer *td_tensor_pin(const struct td_tensor *t)
{
    struct td_buffer *b = t->storage->buf;
    atomic_fetch_add(&b->refs, 1);
    return b;
}

/* ---- construction ---- */

static void set_contiguous(struct td_tensor *t, const int64_t *shape, int ndim, int64_t numel)
{
    t->ndim = ndim;
    int64_t stride = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        t->shape[i] = shape[i];
        t->strides[i] = stride;
        stride = td_sat_mul(stride, shape[i] > 0 ? shape[i] : 1);
    }
    t->offset = 0;
    t->numel = numel;
}

/* A tensor over buffer b (taken: on failure it is released, with its charge and bytes). */
static int tensor_on(struct td_tensor **out, enum td_dtype dt, const int64_t *shape, int ndim,
                     int64_t numel, struct td_buffer *b, struct td_err *err)
{
    struct td_storage *st;
    struct td_tensor *t;
    if ((st = td_malloc(sizeof *st)) == NULL) {
        td_buffer_unref(b);
        return td_err_code(err, TD_ENOMEM);
    }
    if ((t = td_malloc(sizeof *t)) == NULL) {
        td_free(st);
        td_buffer_unref(b);
        return td_err_code(err, TD_ENOMEM);
    }
    st->refs = 1;
    st->buf = b;
    st->version = 0;
    memset(t, 0, sizeof *t);
    t->refs = 1;
    t->dtype = dt;
    t->storage = st;
    set_contiguous(t, shape, ndim, numel);
    *out = t;
    return 0;
}

/* Wraps `data` (taken; already charged to q) in a new buffer, storage and tensor. */
static int tensor_wrap(struct td_tensor **out, enum td_dtype dt, const int64_t *shape, int ndim,
                       int64_t numel, void *data, size_t nbytes, struct td_quota *q,
                       struct td_err *err)
{
    struct td_buffer *b = NULL;
    int rc;
    if ((rc = buffer_new(&b, data, nbytes, q, err)) != 0) {
        td_quota_release(q, (int64_t)nbytes);
        td_free(data);
        return rc;
    }
    return tensor_on(out, dt, shape, ndim, numel, b, err);
}

static int tensor_alloc(struct td_tensor **out, enum td_dtype dt, const int64_t *shape, int ndim,
                        bool zero, struct td_quota *q, struct td_err *err)
{
    int64_t numel, nbytes;
    int rc;
    if ((rc = td_shape_check(shape, ndim, dt, &numel, &nbytes, err)) != 0) {
        return rc;
    }
    if ((uint64_t)nbytes > SIZE_MAX - 64) {
        return td_err_code(err, TD_ENOMEM);
    }
    if ((rc = td_quota_charge(q, nbytes, err)) != 0) {
        return rc;
    }
    /* One byte at least, so an empty tensor still has a distinct buffer. */
    size_t size = nbytes > 0 ? (size_t)nbytes : 1;
    if (size <= BUFFER_INLINE_MAX) {
        /* A small tensor's bytes follow its buffer's header: one allocation, not two. */
        struct td_buffer *b = zero ? td_calloc(1, sizeof *b + size) : td_malloc(sizeof *b + size);
        if (b == NULL) {
            td_quota_release(q, nbytes);
            return td_err_code(err, TD_ENOMEM);
        }
        atomic_init(&b->refs, 1);
        b->data = b + 1;
        b->nbytes = (size_t)nbytes;
        b->quota = q;
        return tensor_on(out, dt, shape, ndim, numel, b, err);
    }
    void *data = zero ? td_calloc(1, size) : td_malloc(size);
    if (data == NULL) {
        td_quota_release(q, nbytes);
        return td_err_code(err, TD_ENOMEM);
    }
    return tensor_wrap(out, dt, shape, ndim, numel, data, (size_t)nbytes, q, err);
}

int td_tensor_empty(struct td_tensor **out, enum td_dtype dt, const int64_t *shape, int ndim,
                    struct td_quota *q, struct td_err *err)
{
    return tensor_alloc(out, dt, shape, ndim, false, q, err);
}

int td_tensor_adopt(struct td_tensor **out, enum td_dtype dt, const int64_t *shape, int ndim,
                    void *data, size_t nbytes, struct td_quota *q, struct td_err *err)
{
    int64_t numel, want;
    int rc;
    if ((rc = td_shape_check(shape, ndim, dt, &numel, &want, err)) != 0) {
        td_free(data);
        return rc;
    }
    if ((uint64_t)want != nbytes) {
        char sh[128];
        td_free(data);
        return td_err_set(err, TD_EINVAL, "data has %zu bytes, but shape %s of %s needs %" PRId64,
                          nbytes, td_shape_str(sh, sizeof sh, shape, ndim), td_dtype_name(dt),
                          want);
    }
    if ((rc = td_quota_charge(q, want, err)) != 0) {
        td_free(data);
        return rc;
    }
    return tensor_wrap(out, dt, shape, ndim, numel, data, nbytes, q, err);
}

/* Stores v (already converted by PyTorch's rules) into n elements of dtype dt at dst. */
static void fill_value(void *dst, enum td_dtype dt, int64_t n, struct td_scalar v)
{
    switch (dt) {
    case TD_DTYPE_F32: {
        float x = (float)td_scalar_to_double(v);
        for (int64_t i = 0; i < n; i++) {
            ((float *)dst)[i] = x;
        }
        break;
    }
    case TD_DTYPE_F64: {
        double x = td_scalar_to_double(v);
        for (int64_t i = 0; i < n; i++) {
            ((double *)dst)[i] = x;
        }
        break;
    }
    case TD_DTYPE_I32: {
        int32_t x = (int32_t)(uint32_t)(uint64_t)td_scalar_to_int(v);
        for (int64_t i = 0; i < n; i++) {
            ((int32_t *)dst)[i] = x;
        }
        break;
    }
    case TD_DTYPE_I64: {
        int64_t x = td_scalar_to_int(v);
        for (int64_t i = 0; i < n; i++) {
            ((int64_t *)dst)[i] = x;
        }
        break;
    }
    default: memset(dst, td_scalar_to_double(v) != 0.0, (size_t)n); break;
    }
}

int td_tensor_full(struct td_tensor **out, enum td_dtype dt, const int64_t *shape, int ndim,
                   struct td_scalar v, struct td_quota *q, struct td_err *err)
{
    int rc;
    /* Zero (not -0.0) is all-zero bits in every dtype: calloc'd memory already holds it. */
    bool zero = v.kind == TD_SCALAR_FLOAT ? v.v.f == 0 && !signbit(v.v.f)
                                          : td_scalar_to_double(v) == 0;
    if ((rc = tensor_alloc(out, dt, shape, ndim, zero, q, err)) != 0) {
        return rc;
    }
    if (!zero) {
        fill_value(td_tensor_data(*out), dt, (*out)->numel, v);
    }
    return 0;
}

enum td_dtype td_arange_dtype(struct td_scalar start, struct td_scalar end, struct td_scalar step)
{
    if (start.kind == TD_SCALAR_FLOAT || end.kind == TD_SCALAR_FLOAT ||
        step.kind == TD_SCALAR_FLOAT) {
        return TD_DTYPE_DEFAULT_FLOAT;
    }
    return TD_DTYPE_I64;
}

int td_tensor_arange(struct td_tensor **out, enum td_dtype dt, struct td_scalar start,
                     struct td_scalar end, struct td_scalar step, struct td_quota *q,
                     struct td_err *err)
{
    double s = td_scalar_to_double(start), e = td_scalar_to_double(end);
    double st = td_scalar_to_double(step);
    if (dt == TD_DTYPE_BOOL) {
        return td_err_set(err, TD_EDTYPE, "\"arange_cpu\" not implemented for 'Bool'");
    }
    if (st == 0) {
        return td_err_set(err, TD_EINVAL, "step must be nonzero");
    }
    if (!isfinite(s) || !isfinite(e)) {
        return td_err_set(err, TD_EINVAL, "unsupported range: %g -> %g", s, e);
    }
    if ((st > 0 && e < s) || (st < 0 && e > s)) {
        return td_err_set(err, TD_EINVAL,
                          "upper bound and larger bound inconsistent with step "
                          "sign");
    }
    /* Every element lies between start and end, so when both fit the integer dtype every
    ** element does, and the conversions below stay defined. */
    double lo = dt == TD_DTYPE_I32 ? -2147483648.0 : -9223372036854775808.0;
    double hi = dt == TD_DTYPE_I32 ? 2147483648.0 : 9223372036854775808.0;
    if (!td_dtype_is_float(dt) && (s < lo || s >= hi || e < lo - 1.0 || e > hi)) {
        return td_err_set(err, TD_EINVAL, "arange: the range %g -> %g does not fit in %s", s, e,
                          td_dtype_cname(dt));
    }
    double nd = ceil((e - s) / st);
    if (!(nd >= 0) || nd > 9.0e18) {
        return td_err_set(err, TD_ELIMIT, "arange would have too many elements");
    }
    int64_t n = (int64_t)nd;
    int rc;
    if ((rc = td_tensor_empty(out, dt, &n, 1, q, err)) != 0) {
        return rc;
    }
    void *d = td_tensor_data(*out);
    bool ints = !td_dtype_is_float(dt) && start.kind != TD_SCALAR_FLOAT &&
                step.kind != TD_SCALAR_FLOAT;
    int64_t si = td_scalar_to_int(start), sti = td_scalar_to_int(step);
    for (int64_t i = 0; i < n; i++) {
        switch (dt) {
        case TD_DTYPE_F32: ((float *)d)[i] = (float)(s + (double)i * st); break;
        case TD_DTYPE_F64: ((double *)d)[i] = s + (double)i * st; break;
        case TD_DTYPE_I32:
            ((int32_t *)d)[i] = ints ? (int32_t)((uint64_t)si + (uint64_t)i * (uint64_t)sti)
                                     : (int32_t)fmin(fmax(s + (double)i * st, lo), 2147483647.0);
            break;
        default:
            /* unsigned: the true value fits, but si + i * sti may pass through more than 2^63 */
            ((int64_t *)d)[i] = ints ? (int64_t)((uint64_t)si + (uint64_t)i * (uint64_t)sti)
                                     : (int64_t)fmin(fmax(s + (double)i * st, lo),
                                                     9223372036854774784.0);
            break;
        }
    }
    return 0;
}

/* ---- references and access ---- */

struct td_tensor *td_tensor_ref(struct td_tensor *t)
{
    t->refs++;
    return t;
}

void td_tensor_unref(struct td_tensor *t)
{
    if (t == NULL) {
        return;
    }
    TD_ASSERT(t->refs > 0); /* an unref without its ref */
    if (--t->refs > 0) {
        return;
    }
    td_tensor_unref(t->grad);
    if (t->grad_fn != NULL && t->grad_fn->retained == t) {
        t->grad_fn->retained = NULL; /* the weak pointer must not outlive the tensor */
    }
    td_node_unref(t->grad_fn);
    td_storage_unref(t->storage);
    td_free(t);
}

void td_storage_unref(struct td_storage *st)
{
    if (st == NULL) {
        return;
    }
    TD_ASSERT(st->refs > 0);
    if (--st->refs == 0) {
        td_buffer_unref(st->buf);
        td_free(st);
    }
}

size_t td_tensor_nbytes(const struct td_tensor *t)
{
    return (size_t)t->numel * td_dtype_size(t->dtype);
}

bool td_tensor_is_dense(const struct td_tensor *t)
{
    if (td_tensor_is_contiguous(t)) {
        return true;
    }
    /* Dims of size > 1 by stride, smallest first (insertion sort of at most 8); each stride
    ** must then be the product of the sizes before it. */
    int perm[TD_MAX_DIMS], n = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] > 1) {
            int j = n++;
            while (j > 0 && t->strides[perm[j - 1]] > t->strides[i]) {
                perm[j] = perm[j - 1];
                j--;
            }
            perm[j] = i;
        }
    }
    int64_t expect = 1;
    for (int k = 0; k < n; k++) {
        if (t->strides[perm[k]] != expect) {
            return false;
        }
        expect = td_sat_mul(expect, t->shape[perm[k]]);
    }
    return true;
}

bool td_tensor_internal_overlap(const struct td_tensor *t)
{
    for (int i = 0; i < t->ndim; i++) {
        if (t->strides[i] == 0 && t->shape[i] > 1) {
            return true;
        }
    }
    return false;
}

enum td_overlap td_tensor_overlap(const struct td_tensor *a, const struct td_tensor *b)
{
    if (a == b) {
        return TD_OVERLAP_FULL;
    }
    /* Different storages first (torch asks about density first; either way nothing is
    ** refused): the common case costs one compare. */
    if (a->storage != b->storage || a->numel == 0 || b->numel == 0) {
        return TD_OVERLAP_NO;
    }
    if (!td_tensor_is_dense(a) || !td_tensor_is_dense(b)) {
        return TD_OVERLAP_TOO_HARD;
    }
    /* Byte offsets within the storage: views of different dtypes compare too. A dense view's
    ** elements lie in [begin, begin + numel * size); both fit the storage, so no overflow. */
    int64_t sa = (int64_t)td_dtype_size(a->dtype), sb = (int64_t)td_dtype_size(b->dtype);
    int64_t a0 = a->offset * sa, a1 = a0 + a->numel * sa;
    int64_t b0 = b->offset * sb, b1 = b0 + b->numel * sb;
    if (a0 == b0 && a1 == b1) {
        bool same = a->ndim == b->ndim;
        for (int i = 0; same && i < a->ndim; i++) {
            same = a->strides[i] == b->strides[i];
        }
        return same ? TD_OVERLAP_FULL : TD_OVERLAP_PARTIAL;
    }
    return a0 < b1 && b0 < a1 ? TD_OVERLAP_PARTIAL : TD_OVERLAP_NO;
}

int td_tensor_prepare_write(struct td_tensor *t, struct td_err *err)
{
    t->storage->version++;
    struct td_buffer *old = t->storage->buf;
    if (atomic_load(&old->refs) == 1) {
        return 0;
    }
    /* A queued reply still reads these bytes: give the storage a private copy. */
    int rc;
    if ((rc = td_quota_charge(old->quota, (int64_t)old->nbytes, err)) != 0) {
        return rc;
    }
    void *data = td_malloc(old->nbytes > 0 ? old->nbytes : 1);
    struct td_buffer *b = NULL;
    if (data == NULL || buffer_new(&b, data, old->nbytes, old->quota, err) != 0) {
        td_free(data);
        td_quota_release(old->quota, (int64_t)old->nbytes);
        return td_err_code(err, TD_ENOMEM);
    }
    memcpy(data, old->data, old->nbytes);
    t->storage->buf = b;
    td_buffer_unref(old);
    return 0;
}

double td_elem_load_f64(const void *p, enum td_dtype dt)
{
    switch (dt) {
    case TD_DTYPE_F32: return *(const float *)p;
    case TD_DTYPE_F64: return *(const double *)p;
    case TD_DTYPE_I32: return *(const int32_t *)p;
    case TD_DTYPE_I64: return (double)*(const int64_t *)p;
    default: return *(const uint8_t *)p != 0;
    }
}

int64_t td_elem_load_i64(const void *p, enum td_dtype dt)
{
    switch (dt) {
    case TD_DTYPE_I32: return *(const int32_t *)p;
    case TD_DTYPE_I64: return *(const int64_t *)p;
    case TD_DTYPE_BOOL: return *(const uint8_t *)p != 0;
    default: return td_f64_to_i64(td_elem_load_f64(p, dt));
    }
}

void td_elem_store_f64(void *p, enum td_dtype dt, double v)
{
    switch (dt) {
    case TD_DTYPE_F32: *(float *)p = (float)v; break;
    case TD_DTYPE_F64: *(double *)p = v; break;
    case TD_DTYPE_BOOL: *(uint8_t *)p = v != 0; break;
    default: {
        int64_t i = td_elem_load_i64(&v, TD_DTYPE_F64);
        if (dt == TD_DTYPE_I32) {
            *(int32_t *)p = (int32_t)(uint32_t)(uint64_t)i;
        } else {
            *(int64_t *)p = i;
        }
        break;
    }
    }
}

/* Steps a C-order index (and the element offset it stands for) to the next element of t. */
static inline void next_index(const struct td_tensor *t, int64_t *idx, int64_t *off)
{
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (++idx[d] < t->shape[d]) {
            *off += t->strides[d];
            return;
        }
        *off -= (idx[d] - 1) * t->strides[d];
        idx[d] = 0;
    }
}

int td_tensor_each(const struct td_tensor *t, void (*fn)(void *elem, void *ctx, int64_t i),
                   void *ctx, struct td_err *err)
{
    int64_t es = (int64_t)td_dtype_size(t->dtype);
    char *base = t->storage->buf->data;
    int64_t idx[TD_MAX_DIMS] = {0}, off = t->offset;
    for (int64_t c = 0, end; c < t->numel; c = end) {
        end = td_cancel_chunk_end(c, t->numel);
        for (int64_t n = c; n < end; n++) {
            fn(base + off * es, ctx, n);
            next_index(t, idx, &off);
        }
        int rc = td_cancel_check(err);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

void td_tensor_copy_out_range(const struct td_tensor *t, int64_t first, int64_t count, void *dst)
{
    size_t es = td_dtype_size(t->dtype);
    const char *base = (const char *)t->storage->buf->data;
    if (td_tensor_is_contiguous(t)) {
        memcpy(dst, base + (size_t)(t->offset + first) * es, (size_t)count * es);
        return;
    }
    int64_t idx[TD_MAX_DIMS] = {0}, off = t->offset, rest = first;
    for (int d = t->ndim - 1; d >= 0 && count > 0; d--) {
        idx[d] = rest % t->shape[d];
        rest /= t->shape[d];
        off += idx[d] * t->strides[d];
    }
    char *out = dst;
    for (int64_t n = 0; n < count; n++) {
        memcpy(out + (size_t)n * es, base + off * (int64_t)es, es);
        next_index(t, idx, &off);
    }
}

void td_tensor_copy_out(const struct td_tensor *t, void *dst)
{
    td_tensor_copy_out_range(t, 0, t->numel, dst);
}
