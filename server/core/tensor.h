/* server/core/tensor.h — storage, buffers and strided tensors.
**
** A tensor is a strided view (shape, strides, offset, all in elements) of a storage. Views share
** the storage object, so a write through one is visible through all. The storage in turn points
** at a buffer: the bytes themselves, with an atomic reference count, so that a reply being
** written to a socket can keep the bytes alive ("pin" them) without copying. A tensor that is
** about to be written in place calls td_tensor_prepare_write(), which swaps in a private copy of
** the buffer when a pin still reads the old one (copy-on-write), so queued replies always carry
** the bytes as they were when the reply was made.
**
** Storage is charged to the td_quota its creator passes and released when the last buffer
** reference goes. Tensor and storage refcounts are plain ints: a session's objects are touched by
** one thread at a time. Pure C: no libuv, no protobuf.
*/
#ifndef TD_CORE_TENSOR_H
#define TD_CORE_TENSOR_H

#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../base/alloc.h"
#include "../base/checked.h"
#include "../base/err.h"
#include "dtype.h"

#define TD_MAX_DIMS 8

/* Bytes; refcounted atomically because pins are released on the loop thread. */
struct td_buffer {
    _Atomic int refs;
    void *data; /* td_malloc'd, owned */
    size_t nbytes;
    struct td_quota *quota; /* borrowed; charged nbytes, may be NULL */
};

struct td_storage {
    int refs;
    struct td_buffer *buf; /* owned reference */
    int64_t version;       /* bumped by every in-place write (autograd checks saved inputs) */
};

struct td_node;

struct td_tensor {
    int refs;
    enum td_dtype dtype;
    int ndim; /* 0..TD_MAX_DIMS; 0 is a scalar with one element */
    int64_t shape[TD_MAX_DIMS];
    int64_t strides[TD_MAX_DIMS]; /* in elements */
    int64_t offset;               /* in elements */
    int64_t numel;
    struct td_storage *storage; /* owned reference */
    bool requires_grad;
    bool retains_grad;       /* retain_grad(): a non-leaf keeps its .grad */
    struct td_tensor *grad;  /* owned reference: accumulated .grad, or NULL */
    struct td_node *grad_fn; /* owned reference: the node that made it, or NULL */
};

/* ---- shapes ---- */

/* Checks a shape from an untrusted source: 0 <= ndim <= TD_MAX_DIMS, every dim >= 0, and the
** element count and byte size fit in int64 without overflow. On success stores numel and
** nbytes (either out-param may be NULL). Errors: TD_EINVAL / TD_ELIMIT with a message naming
** the dim. */
int td_shape_check(const int64_t *shape, int ndim, enum td_dtype dt, int64_t *numel,
                   int64_t *nbytes, struct td_err *err);

/* Formats "[2, 3]" into buf (PyTorch's shape wording in messages). Returns buf. */
char *td_shape_str(char *buf, size_t cap, const int64_t *shape, int ndim);

/* ---- buffers ---- */

/* Pins t's current bytes: returns a new buffer reference; release with td_buffer_unref. */
struct td_buffer *td_tensor_pin(const struct td_tensor *t);
void td_buffer_unref(struct td_buffer *b); /* NULL is a no-op; thread-safe */

/* ---- construction ---- */

/* New contiguous tensor with uninitialised contents, charged to q (borrowed, may be NULL).
** Returns a new reference in *out. Errors: shape errors, TD_EQUOTA, TD_ENOMEM. */
int td_tensor_empty(struct td_tensor **out, enum td_dtype dt, const int64_t *shape, int ndim,
                    struct td_quota *q, struct td_err *err);

/* New contiguous tensor whose storage adopts `data` (taken: td_malloc'd, nbytes long, freed by
** the tensor — or freed here on failure). nbytes must equal numel * dtype size. */
int td_tensor_adopt(struct td_tensor **out, enum td_dtype dt, const int64_t *shape, int ndim,
                    void *data, size_t nbytes, struct td_quota *q, struct td_err *err);

/* New contiguous tensor filled with v converted to dt (PyTorch's cast rules). */
int td_tensor_full(struct td_tensor **out, enum td_dtype dt, const int64_t *shape, int ndim,
                   struct td_scalar v, struct td_quota *q, struct td_err *err);

/* torch.arange(start, end, step, dtype=dt). dt is the caller's choice; pass the result of
** td_arange_dtype() for PyTorch's inference (int64 unless any bound is a float). Errors use
** PyTorch's wording ("step must be nonzero", "upper bound and larger bound inconsistent with
** step sign"). */
enum td_dtype td_arange_dtype(struct td_scalar start, struct td_scalar end, struct td_scalar step);
int td_tensor_arange(struct td_tensor **out, enum td_dtype dt, struct td_scalar start,
                     struct td_scalar end, struct td_scalar step, struct td_quota *q,
                     struct td_err *err);

/* ---- references and access ---- */

struct td_tensor *td_tensor_ref(struct td_tensor *t); /* returns t */
void td_tensor_unref(struct td_tensor *t);            /* NULL is a no-op */
/* Drops one reference to a storage (a tensor holds one, an autograd node one to the output it
** must not see modified); the last frees its buffer reference. NULL is a no-op. */
void td_storage_unref(struct td_storage *st);

/* Row-major with no gaps (dims of size 1 may have any stride; an empty tensor always is).
** Inline, as td_tensor_data: a tiny op asks both for each operand. */
static inline bool td_tensor_is_contiguous(const struct td_tensor *t)
{
    int64_t expect = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->strides[i] != expect) {
            return t->numel == 0;
        }
        expect = td_sat_mul(expect, t->shape[i]);
    }
    return true;
}
size_t td_tensor_nbytes(const struct td_tensor *t); /* numel * element size */

/* Address of element 0 of the view (storage data + offset). */
static inline void *td_tensor_data(const struct td_tensor *t)
{
    return (char *)t->storage->buf->data + t->offset * (int64_t)td_dtype_size(t->dtype);
}

/* ---- memory overlap (torch's ATen/MemoryOverlap rules, for the in-place writes) ---- */

/* True when t's elements occupy numel distinct, gap-free slots of its storage in some order of
** its dims (torch's is_non_overlapping_and_dense: contiguous, a transpose, a permute). Dims of
** size 1 are ignored. O(ndim^2), ndim <= TD_MAX_DIMS. */
bool td_tensor_is_dense(const struct td_tensor *t);

/* Whether writing t would write one memory location through more than one element: a dim of
** size > 1 with stride 0 (an expanded view). Conservative as torch's: other repeating
** layouts (as_strided-like) are not detected. O(ndim). */
bool td_tensor_internal_overlap(const struct td_tensor *t);

enum td_overlap {
    TD_OVERLAP_NO,       /* disjoint memory, or either empty, or different storages */
    TD_OVERLAP_FULL,     /* the very same elements: same byte range and same strides */
    TD_OVERLAP_PARTIAL,  /* both dense, same storage, byte ranges intersect otherwise */
    TD_OVERLAP_TOO_HARD, /* either is not dense: torch does not decide, and neither do we */
};

/* torch's get_overlap_status(a, b), by byte ranges of the two views of one storage. O(ndim^2). */
enum td_overlap td_tensor_overlap(const struct td_tensor *a, const struct td_tensor *b);

/* Makes t's buffer private before an in-place write (copy-on-write when pinned). Errors:
** TD_EQUOTA, TD_ENOMEM (t unchanged). */
int td_tensor_prepare_write(struct td_tensor *t, struct td_err *err);

/* One element of any dtype, read or written as a double or an int64 with C's conversions
** (float to int truncates toward zero, saturating instead of overflowing; bool is != 0). */
double td_elem_load_f64(const void *p, enum td_dtype dt);
int64_t td_elem_load_i64(const void *p, enum td_dtype dt);
/* A double as td_elem_load_i64 reads it: NaN to 0, out-of-range values saturated. */
static inline int64_t td_f64_to_i64(double v)
{
    if (isnan(v)) {
        return 0;
    }
    if (v >= 9223372036854775807.0) {
        return INT64_MAX;
    }
    if (v <= -9223372036854775808.0) {
        return INT64_MIN;
    }
    return (int64_t)v;
}
void td_elem_store_f64(void *p, enum td_dtype dt, double v);
/* A float cast to an integer dtype (x.to(torch.int64), copy_ into an int tensor) as torch on
** x86-64 gives it, by the CPU's cvttsd2si: truncation toward zero, and NaN or any value out of
** the destination's range is its smallest value (INT64_MIN, INT32_MIN). torch's contiguous,
** strided and 0-dim paths all agree on that (tests/python/test_cast_range.py). */
static inline int64_t td_f64_cvt_i64(double v)
{
    if (!(v >= -9223372036854775808.0 && v < 9223372036854775808.0)) {
        return INT64_MIN;
    }
    return (int64_t)v;
}
static inline int32_t td_f64_cvt_i32(double v)
{
    if (!(v > -2147483649.0 && v < 2147483648.0)) {
        return INT32_MIN;
    }
    return (int32_t)v;
}


/* Calls fn(element, ctx, i) for every element of t (borrowed) in C order, any strides. Checks
** the current request's cancel between chunks (core/cancel.h): returns 0, or its error with
** the walk stopped part way. */
int td_tensor_each(const struct td_tensor *t, void (*fn)(void *elem, void *ctx, int64_t i),
                   void *ctx, struct td_err *err);

/* Copies t's elements, in C order, into dst (nbytes == td_tensor_nbytes(t)). Handles any strides. */
void td_tensor_copy_out(const struct td_tensor *t, void *dst);

/* Copies elements [first, first + count) of t, counted in C order, into dst (count elements).
** Handles any strides; a chunk of a view costs its own size, not the view's. */
void td_tensor_copy_out_range(const struct td_tensor *t, int64_t first, int64_t count, void *dst);

#endif
