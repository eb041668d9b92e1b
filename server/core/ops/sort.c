/* server/core/ops/sort.c — sorting and selection: cumprod, sort, argsort, topk, kthvalue,
** median, mode, unique, amax, amin, var_mean, std_mean, count_nonzero; their backward and
** cost rules; and td_op_nout, the output count ops.def's `-> a, b` states.
**
** Every selection op runs on one primitive, sort_lines: a contiguous copy of the input, and for
** each line along the dim the permutation that sorts it (a stable merge sort, NaN above every
** number as torch orders it; descending reverses the order of keys, never of equal keys). sort,
** topk, kthvalue, median and mode then read values and indices off the permutation. Ops with
** more than one output (values and indices) return output 0 as the op's result and the others
** through td_op_args.more_out, when the caller asks (want_more); indices never require grad.
** Backward rules recompute the permutation from the saved input (TD_OPF_BW_SELF; torch saves
** the indices instead) and scatter g back through it (scatter_back, a kernel here: this family
** lands beside the indexing family's scatter, not after it); cumprod's rule is a kernel too,
** exact through zeros. amax/amin's and var_mean's are built from td_op_apply calls.
** Floats compare as double, integers as int64; temporaries are tensors charged to a->quota.
*/
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "../../base/checked.h"
#include "../cancel.h"
#include "family.h"

/* ---- output counts (ops.def's `-> a, b`) ---- */

/* Each op's count, once read from its signature (0: not yet). Threads that race store the same
** value. Every RunOp asks, so the signature is not scanned each time. */
static _Atomic signed char nout_known[TD_OP_COUNT];

int td_op_nout(enum td_op_id id)
{
    if ((int)id < 0 || id >= TD_OP_COUNT) {
        return 0;
    }
    int known = atomic_load_explicit(&nout_known[id], memory_order_relaxed);
    if (known != 0) {
        return known;
    }
    const char *arrow = strstr(td_ops[id].sig, "->");
    int n = 1;
    for (const char *p = arrow; p != NULL && *p != '\0'; p++) {
        n += *p == ',';
    }
    atomic_store_explicit(&nout_known[id], (signed char)n, memory_order_relaxed);
    return n;
}

/* ---- the primitive: sorted lines ---- */

/* A contiguous copy of x in its dtype, with lines of `len` elements `inner` apart: element
** (o, k, i) at (o * len + k) * inner + i. */
struct lines {
    struct td_tensor *xc;      /* contiguous copy of the input */
    struct td_tensor *perm;    /* I64, xc's shape: position k of a line holds the index along
                               ** the dim of its k-th element in sorted order */
    int64_t len, inner, count; /* elements per line, line stride, lines */
    bool fl;                   /* float keys */
};

static void lines_free(struct lines *l)
{
    td_tensor_unref(l->xc);
    td_tensor_unref(l->perm);
    l->xc = l->perm = NULL;
}

struct keyview {
    const char *base;
    enum td_dtype dt;
    size_t es;
    int64_t step; /* elements between neighbours of a line */
    bool fl, desc;
};

static double key_f(const struct keyview *v, int64_t k)
{
    return td_elem_load_f64(v->base + (size_t)(k * v->step) * v->es, v->dt);
}

static int64_t key_i(const struct keyview *v, int64_t k)
{
    return td_elem_load_i64(v->base + (size_t)(k * v->step) * v->es, v->dt);
}

/* <0, 0, >0 as element a sorts before, with, after b (NaN above every number). */
static int key_cmp(const struct keyview *v, int64_t a, int64_t b)
{
    int c;
    if (v->fl) {
        double x = key_f(v, a), y = key_f(v, b);
        bool nx = isnan(x), ny = isnan(y);
        c = nx || ny ? (int)nx - (int)ny : (x > y) - (x < y);
    } else {
        int64_t x = key_i(v, a), y = key_i(v, b);
        c = (x > y) - (x < y);
    }
    return v->desc ? -c : c;
}

/* Stable bottom-up merge sort of p[0..n) by key_cmp, with tmp[0..n) as scratch. */
static int merge_sort(const struct keyview *v, int64_t *p, int64_t *tmp, int64_t n,
                      struct td_err *err)
{
    int64_t *src = p, *dst = tmp, done = 0;
    for (int64_t w = 1; w<n; w = w> n / 2 ? n : 2 * w) {
        for (int64_t lo = 0; lo < n; lo += 2 * w) {
            int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int64_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                dst[k++] = key_cmp(v, src[j], src[i]) < 0 ? src[j++] : src[i++];
            }
            while (i < mid) {
                dst[k++] = src[i++];
            }
            while (j < hi) {
                dst[k++] = src[j++];
            }
            /* one line may be all of a large input: checked within a pass */
            if ((done += hi - lo) >= TD_CANCEL_CHUNK) {
                done = 0;
                int rc = td_cancel_check(err);
                if (rc != 0) {
                    return rc;
                }
            }
        }
        int64_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != p) {
        memcpy(p, src, (size_t)n * sizeof *p);
    }
    return 0;
}

/* Sorts every line of x along dim d (flat: x as one line of all its elements). */
static int sort_lines(struct lines *l, struct td_tensor *x, int64_t d, bool flat, bool desc,
                      struct td_quota *q, struct td_err *err)
{
    memset(l, 0, sizeof *l);
    int rc;
    if ((rc = td_tensor_empty(&l->xc, x->dtype, x->shape, x->ndim, q, err)) != 0 ||
        (rc = td_cast_copy(l->xc, x, err)) != 0 ||
        (rc = td_tensor_empty(&l->perm, TD_DTYPE_I64, x->shape, x->ndim, q, err)) != 0) {
        lines_free(l);
        return rc;
    }
    l->inner = 1;
    l->len = flat || x->ndim == 0 ? x->numel : x->shape[d];
    for (int k = (int)d + 1; !flat && k < x->ndim; k++) {
        l->inner *= x->shape[k]; /* a factor of numel, which fits */
    }
    l->count = l->len > 0 ? x->numel / l->len : 0;
    l->fl = td_dtype_is_float(x->dtype);
    struct td_tensor *scratch = NULL;
    int64_t n2 = l->len > 0 ? 2 * l->len : 1;
    if ((rc = td_tensor_empty(&scratch, TD_DTYPE_I64, &n2, 1, q, err)) != 0) {
        lines_free(l);
        return rc;
    }
    int64_t *p = td_tensor_data(scratch), *tmp = p + l->len, *perm = td_tensor_data(l->perm);
    struct keyview v = {.dt = x->dtype,
                        .es = td_dtype_size(x->dtype),
                        .step = l->inner,
                        .fl = l->fl,
                        .desc = desc};
    int64_t since_check = 0;
    for (int64_t line = 0; line < l->count; line++) {
        int64_t o = line / l->inner, i = line % l->inner;
        int64_t first = o * l->len * l->inner + i;
        v.base = (const char *)td_tensor_data(l->xc) + (size_t)first * v.es;
        for (int64_t k = 0; k < l->len; k++) {
            p[k] = k;
        }
        if ((rc = merge_sort(&v, p, tmp, l->len, err)) != 0) {
            td_tensor_unref(scratch);
            lines_free(l);
            return rc;
        }
        for (int64_t k = 0; k < l->len; k++) {
            perm[first + k * l->inner] = p[k];
        }
        if ((since_check += l->len) >= TD_CANCEL_CHUNK) {
            since_check = 0;
            if ((rc = td_cancel_check(err)) != 0) {
                td_tensor_unref(scratch);
                lines_free(l);
                return rc;
            }
        }
    }
    td_tensor_unref(scratch);
    return 0;
}

/* The element at sorted position k of line `line`: its index along the dim and its offset in
** xc (elements). */
static int64_t pick(const struct lines *l, int64_t line, int64_t k, int64_t *off)
{
    int64_t o = line / l->inner, i = line % l->inner;
    int64_t first = o * l->len * l->inner + i;
    int64_t idx = ((const int64_t *)td_tensor_data(l->perm))[first + k * l->inner];
    *off = first + idx * l->inner;
    return idx;
}

/* Output shape: x's with dim d of size `len` (keep), or without it. */
static void out_shape(const struct td_tensor *x, int64_t d, int64_t len, bool keep, int64_t *shape,
                      int *ndim)
{
    *ndim = 0;
    for (int k = 0; k < x->ndim; k++) {
        if (k != d) {
            shape[(*ndim)++] = x->shape[k];
        } else if (keep) {
            shape[(*ndim)++] = len;
        }
    }
}

/* Allocates values (x's dtype) and, when wanted, indices (I64) of one shape, and fills them
** with `per_line` positions of each line: for line and j < per_line, position at(line, j). */
typedef int64_t pos_fn(const struct lines *l, int64_t line, int64_t j, const void *ctx);

static int gather_out(const struct lines *l, const struct td_tensor *x, const int64_t *shape,
                      int ndim, int64_t per_line, pos_fn *at, const void *ctx,
                      const struct td_op_args *a, struct td_tensor **vals, struct td_quota *q,
                      struct td_err *err)
{
    struct td_tensor *v = NULL, *ix = NULL;
    bool want_idx = a->more_out != NULL && a->want_more[0];
    int rc;
    if ((rc = td_tensor_empty(&v, x->dtype, shape, ndim, q, err)) != 0 ||
        (want_idx && (rc = td_tensor_empty(&ix, TD_DTYPE_I64, shape, ndim, q, err)) != 0)) {
        td_tensor_unref(v);
        return rc;
    }
    size_t es = td_dtype_size(x->dtype);
    const char *src = td_tensor_data(l->xc);
    char *dst = td_tensor_data(v);
    int64_t *idst = ix != NULL ? td_tensor_data(ix) : NULL;
    /* the output is [outer, per_line, inner] in C order */
    int64_t since_check = 0;
    for (int64_t line = 0; line < l->count; line++) {
        int64_t o = line / l->inner, i = line % l->inner;
        for (int64_t j = 0; j < per_line; j++) {
            int64_t off, idx = pick(l, line, at(l, line, j, ctx), &off);
            int64_t w = (o * per_line + j) * l->inner + i;
            memcpy(dst + (size_t)w * es, src + (size_t)off * es, es);
            if (idst != NULL) {
                idst[w] = idx;
            }
        }
        /* pos_mode reads the whole line to choose one position */
        if ((since_check += l->len + per_line) >= TD_CANCEL_CHUNK) {
            since_check = 0;
            if ((rc = td_cancel_check(err)) != 0) {
                td_tensor_unref(v);
                td_tensor_unref(ix);
                return rc;
            }
        }
    }
    *vals = v;
    if (want_idx) {
        a->more_out[0] = ix;
    }
    return 0;
}

static int64_t pos_seq(const struct lines *l, int64_t line, int64_t j, const void *ctx)
{
    (void)l;
    (void)line;
    (void)ctx;
    return j;
}

static int64_t pos_fixed(const struct lines *l, int64_t line, int64_t j, const void *ctx)
{
    (void)l;
    (void)line;
    (void)j;
    return *(const int64_t *)ctx;
}

/* median: the lower median, or the first NaN of a line that has one (torch propagates NaN). */
static int64_t pos_median(const struct lines *l, int64_t line, int64_t j, const void *ctx)
{
    (void)j;
    (void)ctx;
    int64_t off;
    pick(l, line, l->len - 1, &off);
    if (l->fl && isnan(td_elem_load_f64((const char *)td_tensor_data(l->xc) +
                                            (size_t)off * td_dtype_size(l->xc->dtype),
                                        l->xc->dtype))) {
        /* NaNs sort last, stably: the first NaN is the one with the smallest index */
        int64_t k = l->len - 1;
        while (k > 0) {
            pick(l, line, k - 1, &off);
            if (!isnan(td_elem_load_f64((const char *)td_tensor_data(l->xc) +
                                            (size_t)off * td_dtype_size(l->xc->dtype),
                                        l->xc->dtype))) {
                break;
            }
            k--;
        }
        return k;
    }
    return (l->len - 1) / 2;
}

static bool same_at(const struct lines *l, int64_t line, int64_t k0, int64_t k1)
{
    int64_t o0, o1;
    pick(l, line, k0, &o0);
    pick(l, line, k1, &o1);
    size_t es = td_dtype_size(l->xc->dtype);
    const char *b = td_tensor_data(l->xc);
    if (l->fl) {
        double x = td_elem_load_f64(b + (size_t)o0 * es, l->xc->dtype);
        double y = td_elem_load_f64(b + (size_t)o1 * es, l->xc->dtype);
        return x == y || (isnan(x) && isnan(y));
    }
    return td_elem_load_i64(b + (size_t)o0 * es, l->xc->dtype) ==
           td_elem_load_i64(b + (size_t)o1 * es, l->xc->dtype);
}

/* mode: the most frequent value (the smallest among equally frequent ones), at the last of its
** positions in the sorted run (the largest index, as torch reports). */
static int64_t pos_mode(const struct lines *l, int64_t line, int64_t j, const void *ctx)
{
    (void)j;
    (void)ctx;
    int64_t best = 0, best_n = 0;
    for (int64_t k = 0; k < l->len;) {
        int64_t e = k + 1;
        while (e < l->len && same_at(l, line, k, e)) {
            e++;
        }
        if (e - k > best_n) {
            best_n = e - k;
            best = e - 1;
        }
        k = e;
    }
    return best;
}

/* ---- argument checks shared by the selection ops ---- */

static int line_dim(const struct td_tensor *x, const struct td_op_args *a, int64_t *d,
                    struct td_err *err)
{
    return td_wrap_dim(a->dim, x->ndim, d, err);
}

static int64_t dim_size(const struct td_tensor *x, int64_t d)
{
    return x->ndim > 0 ? x->shape[d] : 1;
}

static int need_nonempty(const char *name, const struct td_tensor *x, int64_t d, struct td_err *err)
{
    if (dim_size(x, d) == 0) {
        return td_err_set(err, TD_EINVAL,
                          "%s(): Expected reduction dim %lld to have non-zero size.", name,
                          (long long)d);
    }
    return 0;
}

static bool is_tensor(const struct td_operand *in, int nin)
{
    return nin >= 1 && in[0].t != NULL;
}

/* ---- sort, argsort, topk ---- */

/* sort(input, dim=-1, descending=False, *, stable=False) -> values, indices: every line along
** dim in order (stable, NaN last ascending and first descending, as torch). */
int td_make_sort(struct td_tensor **out, const struct td_operand *in, int nin,
                 const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    struct td_tensor *x = in[0].t;
    int64_t d, shape[TD_MAX_DIMS];
    int ndim, rc;
    if ((rc = line_dim(x, a, &d, err)) != 0) {
        return rc;
    }
    struct lines l;
    if ((rc = sort_lines(&l, x, d, false, a->descending, q, err)) != 0) {
        return rc;
    }
    out_shape(x, d, dim_size(x, d), true, shape, &ndim);
    rc = gather_out(&l, x, shape, ndim, l.len, pos_seq, NULL, a, out, q, err);
    lines_free(&l);
    return rc;
}

/* argsort(input, dim=-1, descending=False): sort's indices. */
int td_make_argsort(struct td_tensor **out, const struct td_operand *in, int nin,
                    const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    struct td_tensor *more[2] = {NULL, NULL};
    struct td_op_args sa = *a;
    sa.more_out = more;
    sa.want_more[0] = true;
    sa.want_more[1] = false;
    struct td_tensor *v = NULL;
    int rc = td_make_sort(&v, in, nin, &sa, q, err);
    td_tensor_unref(v);
    if (rc == 0) {
        *out = more[0];
    }
    return rc;
}

/* The selection ops' common end: x's lines along d sorted (descending or not), per_line values
** of each taken at `at`, into a result of x's shape with d of size per_line (kept or dropped). */
static int select_lines(struct td_tensor *x, int64_t d, bool desc, int64_t per_line, bool keep,
                        pos_fn *at, const void *ctx, const struct td_op_args *a,
                        struct td_tensor **out, struct td_quota *q, struct td_err *err)
{
    int64_t shape[TD_MAX_DIMS];
    int ndim, rc;
    struct lines l;
    if ((rc = sort_lines(&l, x, d, false, desc, q, err)) != 0) {
        return rc;
    }
    out_shape(x, d, per_line, keep, shape, &ndim);
    rc = gather_out(&l, x, shape, ndim, per_line, at, ctx, a, out, q, err);
    lines_free(&l);
    return rc;
}

/* topk(input, k, dim=-1, largest=True, sorted=True) -> values, indices: the k largest (or
** smallest) of every line, in order (sorted=False gives them in the same order). */
int td_make_topk(struct td_tensor **out, const struct td_operand *in, int nin,
                 const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    struct td_tensor *x = in[0].t;
    int64_t d;
    int rc;
    if ((rc = line_dim(x, a, &d, err)) != 0) {
        return rc;
    }
    if (a->k < 0 || a->k > dim_size(x, d)) {
        return td_err_set(err, TD_EINVAL, "selected index k out of range");
    }
    return select_lines(x, d, a->descending, a->k, true, pos_seq, NULL, a, out, q, err);
}

/* kthvalue(input, k, dim=-1, keepdim=False) -> values, indices: the k-th smallest. */
int td_make_kthvalue(struct td_tensor **out, const struct td_operand *in, int nin,
                     const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    struct td_tensor *x = in[0].t;
    int64_t d;
    int rc;
    if ((rc = line_dim(x, a, &d, err)) != 0) {
        return rc;
    }
    if (a->k < 1 || a->k > dim_size(x, d)) {
        if (dim_size(x, d) == 0) {
            return need_nonempty("kthvalue", x, d, err);
        }
        return td_err_set(err, TD_EINVAL,
                          "kthvalue(): selected number k out of range for dimension %lld",
                          (long long)d);
    }
    int64_t k = a->k - 1;
    return select_lines(x, d, false, 1, a->keepdim, pos_fixed, &k, a, out, q, err);
}

/* median(input) / median(input, dim, keepdim=False) -> values, indices: the lower median (of
** all elements, a 0-dim result without indices, when no dim is given); NaN when a line has one. */
int td_make_median(struct td_tensor **out, const struct td_operand *in, int nin,
                   const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    struct td_tensor *x = in[0].t;
    int64_t d = 0;
    int rc;
    struct lines l;
    if (!a->has_dim) {
        if (x->numel == 0) {
            struct td_scalar nan = td_scalar_f(NAN);
            return td_tensor_full(out, x->dtype, NULL, 0, nan, q, err);
        }
        if ((rc = sort_lines(&l, x, 0, true, false, q, err)) != 0) {
            return rc;
        }
        struct td_op_args na = *a;
        na.more_out = NULL; /* no indices without a dim */
        rc = gather_out(&l, x, NULL, 0, 1, pos_median, NULL, &na, out, q, err);
        lines_free(&l);
        return rc;
    }
    if ((rc = line_dim(x, a, &d, err)) != 0 || (rc = need_nonempty("median", x, d, err)) != 0) {
        return rc;
    }
    return select_lines(x, d, false, 1, a->keepdim, pos_median, NULL, a, out, q, err);
}

/* median's grad_fn: MedianBackward0 over all elements, MedianBackward1 along a dim. */
const char *td_grad_fn_median(const struct td_node *n)
{
    return n->args.has_dim ? "MedianBackward1" : "MedianBackward0";
}

/* mode(input, dim=-1, keepdim=False) -> values, indices: the most frequent value of each line. */
int td_make_mode(struct td_tensor **out, const struct td_operand *in, int nin,
                 const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    struct td_tensor *x = in[0].t;
    int64_t d;
    int rc;
    if ((rc = line_dim(x, a, &d, err)) != 0 || (rc = need_nonempty("mode", x, d, err)) != 0) {
        return rc;
    }
    return select_lines(x, d, false, 1, a->keepdim, pos_mode, NULL, a, out, q, err);
}

/* ---- backward of the selection ops: g scattered back through the indices ---- */

/* gin = zeros like x, with gin[..., idx[j], ...] += g[..., j, ...] along dim d; g and idx share
** a shape that is x's with dim d of size `per` (keepdim: otherwise d is missing in both). */
static int scatter_back(const struct td_tensor *x, int64_t d, bool kept, struct td_tensor *g,
                        struct td_tensor *idx, struct td_quota *q, struct td_tensor **out,
                        struct td_err *err)
{
    struct td_tensor *gin = NULL, *gc = NULL;
    enum td_dtype dt = g->dtype;
    int rc;
    if ((rc = td_tensor_full(&gin, dt, x->shape, x->ndim, td_scalar_f(0), q, err)) != 0 ||
        (rc = td_tensor_empty(&gc, dt, g->shape, g->ndim, q, err)) != 0 ||
        (rc = td_cast_copy(gc, g, err)) != 0) {
        td_tensor_unref(gin);
        td_tensor_unref(gc);
        return rc;
    }
    int64_t len = dim_size(x, d), inner = 1, per = 1;
    for (int k = (int)d + 1; k < x->ndim; k++) {
        inner *= x->shape[k];
    }
    if (kept && g->ndim > 0 && x->ndim > 0) {
        per = g->shape[d];
    }
    const int64_t *ix = td_tensor_data(idx);
    size_t es = td_dtype_size(dt);
    char *dst = td_tensor_data(gin);
    const char *src = td_tensor_data(gc);
    int64_t outer = len > 0 && inner > 0 ? x->numel / (len * inner) : 0;
    int64_t since_check = 0;
    for (int64_t o = 0; o < outer && rc == 0; o++) {
        for (int64_t j = 0; j < per && rc == 0; j++) {
            for (int64_t i = 0; i < inner; i++) {
                int64_t w = (o * per + j) * inner + i, k = ix[w];
                if (k < 0 || k >= len) {
                    continue;
                }
                char *p = dst + (size_t)((o * len + k) * inner + i) * es;
                td_elem_store_f64(p, dt,
                                  td_elem_load_f64(p, dt) +
                                      td_elem_load_f64(src + (size_t)w * es, dt));
            }
            if ((since_check += inner) >= TD_CANCEL_CHUNK) {
                since_check = 0;
                rc = td_cancel_check(err);
            }
        }
    }
    td_tensor_unref(gc);
    if (rc != 0) {
        td_tensor_unref(gin);
        return rc;
    }
    *out = gin;
    return 0;
}

/* sort, topk, kthvalue, median (with a dim), mode: the indices recomputed from the saved input,
** then g put back where each value came from. median of all: g to the median's position. */
int td_bw_select(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                 struct td_quota *q, struct td_err *err)
{
    struct td_tensor *x = n->in[0].t, *v = NULL, *more[2] = {NULL, NULL};
    struct td_op_args a = n->args;
    a.grad_enabled = false;
    a.more_out = more;
    a.want_more[0] = true;
    a.want_more[1] = false;
    int rc;
    if (n->op == TD_OP_MEDIAN && !n->args.has_dim) {
        /* the median's flat position, as an index into a flat view of x */
        struct lines l;
        if (x->numel == 0) {
            return td_tensor_full(&gin[0], g->dtype, x->shape, x->ndim, td_scalar_f(0), q, err);
        }
        if ((rc = sort_lines(&l, x, 0, true, false, q, err)) != 0) {
            return rc;
        }
        int64_t off;
        pick(&l, 0, pos_median(&l, 0, 0, NULL), &off);
        lines_free(&l);
        if ((rc = td_tensor_full(&gin[0], g->dtype, x->shape, x->ndim, td_scalar_f(0), q, err)) !=
            0) {
            return rc;
        }
        size_t es = td_dtype_size(g->dtype);
        td_elem_store_f64((char *)td_tensor_data(gin[0]) + (size_t)off * es, g->dtype,
                          td_elem_load_f64(td_tensor_data(g), g->dtype));
        return 0;
    }
    if ((rc = td_op_apply(n->op, n->in, 1, &a, false, q, &v, err)) != 0) {
        return rc;
    }
    td_tensor_unref(v);
    int64_t d;
    if ((rc = td_wrap_dim(n->args.dim, x->ndim, &d, err)) == 0) {
        bool kept = n->op == TD_OP_SORT || n->op == TD_OP_TOPK || n->args.keepdim;
        rc = scatter_back(x, d, kept, g, more[0], q, &gin[0], err);
    }
    td_tensor_unref(more[0]);
    return rc;
}

/* ---- unique ---- */

/* unique(input, sorted=True, return_inverse=False, return_counts=False, dim=None)
** -> output, inverse_indices, counts: the distinct values in ascending order (sorted=False
** gives the same order), where each element went (input's shape), and how often each came. */
int td_make_unique(struct td_tensor **out, const struct td_operand *in, int nin,
                   const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    struct td_tensor *x = in[0].t;
    struct lines l;
    int rc;
    if (a->has_dims) {
        return td_err_set(err, TD_EINVAL, "unique with dim= is not supported yet");
    }
    if ((rc = sort_lines(&l, x, 0, true, false, q, err)) != 0) {
        return rc;
    }
    int64_t n = x->numel, nu = 0;
    for (int64_t k0 = 0, k1; k0 < n; k0 = k1) {
        k1 = td_cancel_chunk_end(k0, n);
        for (int64_t k = k0; k < k1; k++) {
            nu += k == 0 || !same_at(&l, 0, k - 1, k);
        }
        if ((rc = td_cancel_check(err)) != 0) {
            lines_free(&l);
            return rc;
        }
    }
    struct td_tensor *u = NULL, *inv = NULL, *cnt = NULL;
    bool want_inv = a->more_out != NULL && a->want_more[0];
    bool want_cnt = a->more_out != NULL && a->want_more[1];
    if ((rc = td_tensor_empty(&u, x->dtype, &nu, 1, q, err)) != 0 ||
        (want_inv && (rc = td_tensor_empty(&inv, TD_DTYPE_I64, x->shape, x->ndim, q, err)) != 0) ||
        (want_cnt &&
         (rc = td_tensor_full(&cnt, TD_DTYPE_I64, &nu, 1, td_scalar_i(0), q, err)) != 0)) {
        goto fail;
    }
    size_t es = td_dtype_size(x->dtype);
    const char *src = td_tensor_data(l.xc);
    int64_t j = -1;
    for (int64_t k = 0; k < n; k++) {
        if ((k + 1) % TD_CANCEL_CHUNK == 0 && (rc = td_cancel_check(err)) != 0) {
            goto fail;
        }
        int64_t off, idx = pick(&l, 0, k, &off);
        if (k == 0 || !same_at(&l, 0, k - 1, k)) {
            j++;
            memcpy((char *)td_tensor_data(u) + (size_t)j * es, src + (size_t)off * es, es);
        }
        if (inv != NULL) {
            ((int64_t *)td_tensor_data(inv))[idx] = j;
        }
        if (cnt != NULL) {
            ((int64_t *)td_tensor_data(cnt))[j]++;
        }
    }
    lines_free(&l);
    *out = u;
    if (want_inv) {
        a->more_out[0] = inv;
    }
    if (want_cnt) {
        a->more_out[1] = cnt;
    }
    return 0;
fail:
    lines_free(&l);
    td_tensor_unref(u);
    td_tensor_unref(inv);
    td_tensor_unref(cnt);
    return rc;
}

/* ---- cumprod ---- */

/* cumprod(input, dim, *, dtype=None): running products along dim, in dtype= when given, else
** the input's for floats and int64 for integers and bools (as torch). */
int td_make_cumprod(struct td_tensor **out, const struct td_operand *in, int nin,
                    const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    struct td_tensor *x = in[0].t;
    int64_t d;
    int rc;
    if ((rc = td_wrap_dim(a->dim, x->ndim, &d, err)) != 0) {
        return rc;
    }
    enum td_dtype dt = a->has_dtype                  ? a->dtype
                       : td_dtype_is_float(x->dtype) ? x->dtype
                                                     : TD_DTYPE_I64;
    if (!td_dtype_is_valid((int)dt)) {
        return td_err_set(err, TD_EDTYPE, "cumprod: unknown dtype");
    }
    struct td_tensor *t = NULL;
    if ((rc = td_tensor_empty(&t, dt, x->shape, x->ndim, q, err)) != 0) {
        return rc;
    }
    if ((rc = td_cast_copy(t, x, err)) != 0) {
        td_tensor_unref(t);
        return rc;
    }
    int64_t len = dim_size(x, d), inner = 1;
    for (int k = (int)d + 1; k < x->ndim; k++) {
        inner *= x->shape[k];
    }
    int64_t lines = len > 0 ? t->numel / len : 0;
    char *base = td_tensor_data(t);
    size_t es = td_dtype_size(dt);
    bool fl = td_dtype_is_float(dt);
    int64_t since_check = 0;
    for (int64_t line = 0; line < lines; line++) {
        int64_t o = line / inner, i = line % inner;
        char *p = base + (size_t)((o * len) * inner + i) * es;
        size_t step = (size_t)inner * es;
        double facc = 1;
        uint64_t iacc = 1;
        for (int64_t k = 0; k < len; k++, p += step) {
            if (fl) {
                facc *= td_elem_load_f64(p, dt);
                td_elem_store_f64(p, dt, facc);
            } else if (dt == TD_DTYPE_BOOL) {
                iacc = iacc && *(bool *)(void *)p;
                *(bool *)(void *)p = iacc != 0;
            } else {
                iacc *= (uint64_t)td_elem_load_i64(p, dt); /* wraps, as torch's */
                if (dt == TD_DTYPE_I64) {
                    *(int64_t *)(void *)p = (int64_t)iacc;
                } else {
                    *(int32_t *)(void *)p = (int32_t)(uint32_t)iacc;
                }
            }
            /* one line may be all of a large input: checked within it too */
            if ((k & (TD_CANCEL_CHUNK - 1)) == TD_CANCEL_CHUNK - 1 &&
                (rc = td_cancel_check(err)) != 0) {
                td_tensor_unref(t);
                return rc;
            }
        }
        if ((since_check += len) >= TD_CANCEL_CHUNK) {
            since_check = 0;
            if ((rc = td_cancel_check(err)) != 0) {
                td_tensor_unref(t);
                return rc;
            }
        }
    }
    *out = t;
    return 0;
}

/* cumprod: d out_j / d x_k = prod_{i <= j, i != k} x_i for j >= k. Per line in double: with no
** zero, gin_k = (sum_{j >= k} g_j out_j) / x_k; with a first zero at z, that formula holds for
** k < z over j < z, gin_z = sum_{j >= z} g_j * out_{z-1} * prod_{z < i <= j} x_i, and the rest
** get 0 (exact where inputs have zeros, as torch's rule is). */
int td_bw_cumprod(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                  struct td_quota *q, struct td_err *err)
{
    struct td_tensor *x = n->in[0].t, *xc = NULL, *gc = NULL, *r = NULL;
    enum td_dtype dt = g->dtype;
    int64_t d;
    int rc;
    if ((rc = td_wrap_dim(n->args.dim, x->ndim, &d, err)) != 0 ||
        (rc = td_tensor_empty(&xc, TD_DTYPE_F64, x->shape, x->ndim, q, err)) != 0 ||
        (rc = td_cast_copy(xc, x, err)) != 0 ||
        (rc = td_tensor_empty(&gc, TD_DTYPE_F64, x->shape, x->ndim, q, err)) != 0 ||
        (rc = td_cast_copy(gc, g, err)) != 0 ||
        (rc = td_tensor_empty(&r, dt, x->shape, x->ndim, q, err)) != 0) {
        goto out;
    }
    int64_t len = dim_size(x, d), inner = 1;
    for (int k = (int)d + 1; k < x->ndim; k++) {
        inner *= x->shape[k];
    }
    int64_t lines = len > 0 ? x->numel / len : 0;
    const double *xv = td_tensor_data(xc), *gv = td_tensor_data(gc);
    char *rv = td_tensor_data(r);
    size_t es = td_dtype_size(dt);
    int64_t since_check = 0;
    for (int64_t line = 0; line < lines; line++) {
        int64_t o = line / inner, i = line % inner, first = o * len * inner + i;
#define AT(k) (first + (k)*inner)
        int64_t z = len;
        for (int64_t k = 0; k < len; k++) {
            if (xv[AT(k)] == 0) {
                z = k;
                break;
            }
        }
        /* k < z: suffix sums of g_j out_j over j < z, divided by x_k */
        double acc = 0, prod_before_z = 1;
        for (int64_t k = 0; k < z; k++) {
            prod_before_z *= xv[AT(k)];
        }
        double outj = prod_before_z;
        for (int64_t k = z - 1; k >= 0; k--) {
            acc += gv[AT(k)] * outj;
            outj = xv[AT(k)] != 0 ? outj / xv[AT(k)] : 0;
            td_elem_store_f64(rv + (size_t)AT(k) * es, dt, acc / xv[AT(k)]);
        }
        if (z < len) {
            double s = 0, run = prod_before_z;
            for (int64_t j = z; j < len; j++) {
                if (j > z) {
                    run *= xv[AT(j)];
                }
                s += gv[AT(j)] * run;
            }
            td_elem_store_f64(rv + (size_t)AT(z) * es, dt, s);
            for (int64_t k = z + 1; k < len; k++) {
                td_elem_store_f64(rv + (size_t)AT(k) * es, dt, 0);
            }
        }
#undef AT
        if ((since_check += len) >= TD_CANCEL_CHUNK) {
            since_check = 0;
            if ((rc = td_cancel_check(err)) != 0) {
                goto out;
            }
        }
    }
    gin[0] = r;
    r = NULL;
out:
    td_tensor_unref(xc);
    td_tensor_unref(gc);
    td_tensor_unref(r);
    return rc;
}

/* ---- amax, amin, count_nonzero: reductions over a set of dims ---- */

/* The dims `a` reduces (dims; none or an empty list: all), refused as torch refuses them, and
** the result shape (keepdim: reduced dims kept as 1). */
static int reduce_set(const struct td_tensor *x, const struct td_op_args *a, bool keepdim,
                      bool *red, int64_t *shape, int *ndim, struct td_err *err)
{
    bool all = !a->has_dims || a->ndims == 0;
    for (int k = 0; k < TD_MAX_DIMS; k++) {
        red[k] = all;
    }
    for (int j = 0; !all && j < a->ndims; j++) {
        int64_t d;
        int rc = td_wrap_dim(a->dims[j], x->ndim, &d, err);
        if (rc != 0) {
            return rc;
        }
        if (red[d]) {
            return td_err_set(err, TD_EINVAL, "dim %lld appears multiple times in the list of dims",
                              (long long)d);
        }
        red[d] = true;
    }
    *ndim = 0;
    for (int k = 0; k < x->ndim; k++) {
        if (!red[k]) {
            shape[(*ndim)++] = x->shape[k];
        } else if (keepdim) {
            shape[(*ndim)++] = 1;
        }
    }
    return 0;
}

/* Calls fold(ctx, out_index, element) for every element of x, in C order, where out_index is
** the element's position in the reduced result. Checks cancel between chunks. */
static int walk_reduce(const struct td_tensor *x, const bool *red,
                       void (*fold)(void *ctx, int64_t o, const char *elem), void *ctx,
                       struct td_err *err)
{
    int64_t idx[TD_MAX_DIMS] = {0}, ostride[TD_MAX_DIMS];
    int64_t s = 1;
    for (int k = x->ndim - 1; k >= 0; k--) {
        ostride[k] = red[k] ? 0 : s;
        s *= red[k] ? 1 : x->shape[k];
    }
    const char *base = (const char *)td_tensor_data(x);
    size_t es = td_dtype_size(x->dtype);
    int64_t xoff = 0, ooff = 0;
    for (int64_t n = 0; n < x->numel; n++) {
        fold(ctx, ooff, base + xoff * (int64_t)es);
        for (int k = x->ndim - 1; k >= 0; k--) {
            idx[k]++;
            xoff += x->strides[k];
            ooff += ostride[k];
            if (idx[k] < x->shape[k]) {
                break;
            }
            xoff -= x->strides[k] * x->shape[k];
            ooff -= ostride[k] * x->shape[k];
            idx[k] = 0;
        }
        if ((n + 1) % TD_CANCEL_CHUNK == 0) {
            int rc = td_cancel_check(err);
            if (rc != 0) {
                return rc;
            }
        }
    }
    return 0;
}

struct extreme_ctx {
    struct td_tensor *out;
    enum td_dtype dt;
    size_t es;
    bool max;
    bool *seen;
};

static void fold_extreme(void *vctx, int64_t o, const char *elem)
{
    struct extreme_ctx *c = vctx;
    char *p = (char *)td_tensor_data(c->out) + o * (int64_t)c->es;
    if (!c->seen[o]) {
        c->seen[o] = true;
        memcpy(p, elem, c->es);
        return;
    }
    bool take;
    if (td_dtype_is_float(c->dt)) {
        double v = td_elem_load_f64(elem, c->dt), cur = td_elem_load_f64(p, c->dt);
        take = !isnan(cur) && (isnan(v) || (c->max ? v > cur : v < cur));
    } else {
        int64_t v = td_elem_load_i64(elem, c->dt), cur = td_elem_load_i64(p, c->dt);
        take = c->max ? v > cur : v < cur;
    }
    if (take) {
        memcpy(p, elem, c->es);
    }
}

/* amax / amin(input, dim=(), keepdim=False): the largest / smallest over dims (all when none),
** NaN winning, in the input's dtype. */
int td_make_amax_amin(struct td_tensor **out, const struct td_operand *in, int nin,
                      const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    struct td_tensor *x = in[0].t;
    const char *name = a->op == TD_OP_AMAX ? "amax" : "amin";
    bool red[TD_MAX_DIMS];
    int64_t shape[TD_MAX_DIMS];
    int ndim, rc;
    if ((rc = reduce_set(x, a, a->keepdim, red, shape, &ndim, err)) != 0) {
        return rc;
    }
    if (x->numel == 0) {
        if (!a->has_dims || a->ndims == 0) {
            return td_err_set(err, TD_EINVAL,
                              "%s(): Expected reduction dim to be specified for input.numel() "
                              "== 0. Specify the reduction dim with the 'dim' argument.",
                              name);
        }
        for (int k = 0; k < x->ndim; k++) {
            if (red[k] && x->shape[k] == 0) {
                return td_err_set(err, TD_EINVAL,
                                  "%s(): Expected reduction dim %d to have non-zero size.", name,
                                  k);
            }
        }
    }
    struct td_tensor *t = NULL, *seen = NULL;
    if ((rc = td_tensor_empty(&t, x->dtype, shape, ndim, q, err)) != 0) {
        return rc;
    }
    int64_t ns = t->numel > 0 ? t->numel : 1;
    if ((rc = td_tensor_full(&seen, TD_DTYPE_BOOL, &ns, 1, td_scalar_b(false), q, err)) != 0) {
        td_tensor_unref(t);
        return rc;
    }
    struct extreme_ctx c = {t, x->dtype, td_dtype_size(x->dtype), a->op == TD_OP_AMAX,
                            td_tensor_data(seen)};
    rc = walk_reduce(x, red, fold_extreme, &c, err);
    td_tensor_unref(seen);
    if (rc != 0) {
        td_tensor_unref(t);
        return rc;
    }
    *out = t;
    return 0;
}

/* amax / amin: g shared evenly among the elements equal to the result (torch's rule for ties):
** g * (x == r) / count(x == r), broadcast back over the reduced dims. */
int td_bw_amax_amin(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                    struct td_quota *q, struct td_err *err)
{
    struct td_tensor *gs = NULL, *r = NULL, *mask = NULL, *cnt = NULL, *w = NULL;
    struct td_node tmp = *n;
    tmp.op = TD_OP_SUM;
    if (tmp.args.ndims == 0) {
        tmp.args.has_dims = false;
    }
    struct td_op_args ka = n->args, sa = n->args;
    ka.keepdim = true;
    ka.grad_enabled = false;
    ka.more_out = NULL;
    sa = ka;
    sa.has_dims = n->args.ndims > 0;
    int rc;
    if ((rc = td_bw_sum(&tmp, g, &gs, q, err)) == 0 &&
        (rc = td_bw1(n->op, n->in[0], &ka, q, &r, err)) == 0 &&
        (rc = td_bw2(TD_OP_EQ, n->in[0], td_t(r), q, &mask, err)) == 0 &&
        (rc = td_bw1(TD_OP_SUM, td_t(mask), &sa, q, &cnt, err)) == 0 &&
        (rc = td_bw2(TD_OP_DIV, td_t(mask), td_t(cnt), q, &w, err)) == 0) {
        rc = td_bw2(TD_OP_MUL, td_t(gs), td_t(w), q, &gin[0], err);
    }
    td_tensor_unref(gs);
    td_tensor_unref(r);
    td_tensor_unref(mask);
    td_tensor_unref(cnt);
    td_tensor_unref(w);
    return rc;
}

static void fold_nonzero(void *vctx, int64_t o, const char *elem)
{
    struct extreme_ctx *c = vctx;
    bool nz = td_dtype_is_float(c->dt) ? td_elem_load_f64(elem, c->dt) != 0
                                       : td_elem_load_i64(elem, c->dt) != 0;
    ((int64_t *)td_tensor_data(c->out))[o] += nz;
}

/* count_nonzero(input, dim=None): how many elements are not zero, over dims (all when none),
** as int64. */
int td_make_count_nonzero(struct td_tensor **out, const struct td_operand *in, int nin,
                          const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    struct td_tensor *x = in[0].t;
    bool red[TD_MAX_DIMS];
    int64_t shape[TD_MAX_DIMS];
    int ndim, rc;
    struct td_tensor *t = NULL;
    if ((rc = reduce_set(x, a, false, red, shape, &ndim, err)) != 0 ||
        (rc = td_tensor_full(&t, TD_DTYPE_I64, shape, ndim, td_scalar_i(0), q, err)) != 0) {
        return rc;
    }
    struct extreme_ctx c = {t, x->dtype, td_dtype_size(x->dtype), false, NULL};
    if ((rc = walk_reduce(x, red, fold_nonzero, &c, err)) != 0) {
        td_tensor_unref(t);
        return rc;
    }
    *out = t;
    return 0;
}

/* ---- var_mean, std_mean ---- */

/* var_mean / std_mean(input, dim=None, unbiased=True, keepdim=False, *, correction=None)
** -> (var or std, mean): var's (std's) result, and mean over the same dims as output 1, which
** records its own mean node (named as torch's shared node) when it requires grad. */
int td_make_var_std_mean(struct td_tensor **out, const struct td_operand *in, int nin,
                         const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    if (!td_dtype_is_float(in[0].t->dtype)) {
        return td_err_set(err, TD_EDTYPE, "%s only support floating point and complex dtypes",
                          td_ops[a->op].name);
    }
    struct td_op_args va = *a;
    va.grad_enabled = false; /* td_op_apply records output 0 as var_mean's own node */
    va.more_out = NULL;
    int rc = td_op_apply(a->op == TD_OP_STD_MEAN ? TD_OP_STD : TD_OP_VAR, in, nin, &va, false, q,
                         out, err);
    if (rc != 0 || a->more_out == NULL || !a->want_more[0]) {
        return rc;
    }
    struct td_op_args ma = *a;
    ma.more_out = NULL;
    if ((rc = td_op_apply(TD_OP_MEAN, in, nin, &ma, false, q, &a->more_out[0], err)) != 0) {
        td_tensor_unref(*out);
        *out = NULL;
        return rc;
    }
    /* torch records one node for both outputs: the mean's own (new, and only its) node takes
    ** that node's name, so both print grad_fn=<VarMeanBackward0>. */
    if (a->more_out[0]->grad_fn != NULL) {
        a->more_out[0]->grad_fn->name = td_ops[a->op].grad_fn;
    }
    return 0;
}

/* var_mean / std_mean: output 0's gradient is var's (std's). */
int td_bw_var_std_mean(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                       struct td_quota *q, struct td_err *err)
{
    struct td_node tmp = *n;
    tmp.op = n->op == TD_OP_STD_MEAN ? TD_OP_STD : TD_OP_VAR;
    return td_bw_var_std(&tmp, g, gin, q, err);
}

/* ---- cost rules ---- */

static int64_t esz(enum td_dtype dt)
{
    return td_dtype_is_valid((int)dt) ? (int64_t)td_dtype_size(dt) : 8;
}

static bool one_tensor(const struct td_operand *in, int nin)
{
    return is_tensor(in, nin) && td_dtype_is_valid((int)in[0].t->dtype);
}

/* The selection ops and unique: a contiguous copy, a permutation and merge-sort scratch (three
** int64 per element), n log2 n comparisons, and results of at most numel values and numel
** indices (unique's three outputs together are bounded by numel values and 2 numel int64, its
** logical size: an expanded view counts at its full numel). */
int td_cost_sort(const struct td_operand *in, int nin, const struct td_op_args *a,
                 struct td_cost *c)
{
    if (!one_tensor(in, nin)) {
        return -1;
    }
    const struct td_tensor *x = in[0].t;
    int64_t n = x->numel, logn = 1;
    for (int64_t m = n; m > 1; m >>= 1) {
        logn++;
    }
    int64_t es = esz(x->dtype);
    c->read = n;
    c->flops = td_sat_mul(n, logn);
    c->written = td_sat_mul(n, a->op == TD_OP_UNIQUE ? 3 : 2);
    c->out_bytes = td_sat_add(td_sat_mul(n, es), td_sat_mul(n, a->op == TD_OP_UNIQUE ? 16 : 8));
    c->temp_bytes = td_sat_add(td_sat_mul(n, es), td_sat_mul(n, 3 * 8));
    return 0;
}

/* cumprod: like cumsum, one multiply per element into a cast copy that is the result. */
int td_cost_cumprod(const struct td_operand *in, int nin, const struct td_op_args *a,
                    struct td_cost *c)
{
    if (!one_tensor(in, nin) || (a->has_dtype && !td_dtype_is_valid((int)a->dtype))) {
        return -1;
    }
    const struct td_tensor *x = in[0].t;
    int64_t nd = x->ndim > 0 ? x->ndim : 1;
    if (a->dim < -nd || a->dim >= nd) {
        return -1;
    }
    enum td_dtype dt = a->has_dtype                  ? a->dtype
                       : td_dtype_is_float(x->dtype) ? x->dtype
                                                     : TD_DTYPE_I64;
    c->read = x->numel;
    c->written = x->numel;
    c->flops = x->numel;
    c->out_bytes = td_sat_mul(x->numel, esz(dt));
    return 0;
}

/* amax, amin, count_nonzero: every element read once (a strided walk, no copy), a result of at
** most numel elements and a flag per result element. */
int td_cost_amax(const struct td_operand *in, int nin, const struct td_op_args *a,
                 struct td_cost *c)
{
    (void)a;
    if (!one_tensor(in, nin)) {
        return -1;
    }
    const struct td_tensor *x = in[0].t;
    c->read = x->numel;
    c->written = x->numel;
    c->out_bytes = td_sat_mul(x->numel, 8);
    c->temp_bytes = x->numel;
    return 0;
}

/* var_mean, std_mean: var's (std's) cost and mean's. */
int td_cost_var_mean(const struct td_operand *in, int nin, const struct td_op_args *a,
                     struct td_cost *c)
{
    struct td_op_args va = *a;
    struct td_cost m = {0};
    va.op = a->op == TD_OP_STD_MEAN ? TD_OP_STD : TD_OP_VAR;
    if (td_cost_reduce(in, nin, &va, c) != 0) {
        return -1;
    }
    va.op = TD_OP_MEAN;
    if (td_cost_reduce(in, nin, &va, &m) != 0) {
        return -1;
    }
    c->read = td_sat_add(c->read, m.read);
    c->written = td_sat_add(c->written, m.written);
    c->out_bytes = td_sat_add(c->out_bytes, m.out_bytes);
    c->temp_bytes = td_sat_add(c->temp_bytes, m.temp_bytes);
    return 0;
}
