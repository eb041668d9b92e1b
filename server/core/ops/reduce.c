/* server/core/ops/reduce.c — reductions: sum, mean, prod, max, min, argmax, argmin, std, var,
** norm, logsumexp, all, any.
**
** One walker visits every input element once, in C order, and folds it into the accumulator of
** its output element (the input index with the reduced dims zeroed). Floats accumulate in double
** and integers in wrapping 64-bit arithmetic, then results are stored in the result dtype. std
** and var take two passes (mean first), as torch's two-pass algorithm does. Dtype rules and
** error messages follow torch 1.13: sum and prod of integers give int64, mean/std/var/norm refuse
** integers, max/min/argmax of an empty tensor need a dim, NaN wins max, min, argmax and argmin.
*/
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../../base/checked.h"
#include "../cancel.h"
#include "../parallel.h"
#include "family.h"

enum red_kind {
    R_SUM,
    R_MEAN,
    R_PROD,
    R_MAX,
    R_MIN,
    R_ARGMAX,
    R_ARGMIN,
    R_STD,
    R_VAR,
    R_NORM,
    R_LOGSUMEXP,
    R_ALL,
    R_ANY
};

static enum red_kind kind_of(int op)
{
    switch (op) {
    case TD_OP_SUM: return R_SUM;
    case TD_OP_MEAN: return R_MEAN;
    case TD_OP_PROD: return R_PROD;
    case TD_OP_MAX: return R_MAX;
    case TD_OP_MIN: return R_MIN;
    case TD_OP_ARGMAX: return R_ARGMAX;
    case TD_OP_ARGMIN: return R_ARGMIN;
    case TD_OP_STD: return R_STD;
    case TD_OP_VAR: return R_VAR;
    case TD_OP_NORM: return R_NORM;
    case TD_OP_LOGSUMEXP: return R_LOGSUMEXP;
    case TD_OP_ALL: return R_ALL;
    default: return R_ANY;
    }
}

/* Single-dim reductions take `dim` (has_dim); the rest a list in `dims` (none: all dims). */
static bool single_dim(enum red_kind k)
{
    return k == R_MAX || k == R_MIN || k == R_ARGMAX || k == R_ARGMIN || k == R_ALL || k == R_ANY;
}

/* Which dims are reduced; false when a dim is out of range or repeated (err set). */
static int reduced_dims(const struct td_tensor *t, const struct td_op_args *a, enum red_kind k,
                        bool *red, bool *all, struct td_err *err)
{
    memset(red, 0, sizeof(bool) * TD_MAX_DIMS);
    *all = false;
    if (single_dim(k) ? !a->has_dim : (!a->has_dims || a->ndims == 0)) {
        *all = true;
        for (int i = 0; i < t->ndim; i++) {
            red[i] = true;
        }
        return 0;
    }
    int n = single_dim(k) ? 1 : a->ndims;
    for (int i = 0; i < n; i++) {
        int64_t d;
        int rc = td_wrap_dim(single_dim(k) ? a->dim : a->dims[i], t->ndim, &d, err);
        if (rc != 0) {
            return rc;
        }
        if (t->ndim > 0 && red[d]) {
            return td_err_set(err, TD_EINVAL,
                              "dim %lld appears multiple times in the list of "
                              "dims",
                              (long long)d);
        }
        if (t->ndim > 0) {
            red[d] = true;
        }
    }
    return 0;
}

int td_shape_reduce(const struct td_operand *in, int nin, const struct td_op_args *a,
                    int64_t *shape, int *ndim, struct td_err *err)
{
    (void)nin;
    const struct td_tensor *t = in[0].t;
    enum red_kind k = kind_of(a->op);
    bool red[TD_MAX_DIMS], all;
    int rc;
    if (k == R_NORM && a->has_dims && a->ndims > 2) {
        return td_err_set(err, TD_EINVAL,
                          "Expected at most 2 dimensions, but got %d dimensions "
                          "instead.",
                          a->ndims);
    }
    if (k == R_NORM && a->ndims == 2) {
        int64_t d0, d1;
        if ((rc = td_wrap_dim(a->dims[0], t->ndim, &d0, err)) != 0 ||
            (rc = td_wrap_dim(a->dims[1], t->ndim, &d1, err)) != 0) {
            return rc;
        }
        if (d0 == d1) {
            char sh[64];
            return td_err_set(err, TD_EINVAL, "Expected dims to be different, got %s instead",
                              td_shape_str(sh, sizeof sh, a->dims, 2));
        }
    }
    if ((rc = reduced_dims(t, a, k, red, &all, err)) != 0) {
        return rc;
    }
    bool needs_elements = k == R_MAX || k == R_MIN || k == R_ARGMAX || k == R_ARGMIN;
    const char *name = td_ops[a->op].name;
    if (needs_elements && all && t->numel == 0) {
        return td_err_set(err, TD_EINVAL,
                          "%s(): Expected reduction dim to be specified for "
                          "input.numel() == 0.%s",
                          name,
                          k == R_MAX || k == R_MIN ? " Specify the reduction dim with the 'dim' "
                                                     "argument."
                                                   : "");
    }
    int n = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (needs_elements && red[i] && !all && t->shape[i] == 0) {
            return td_err_set(err, TD_EINVAL,
                              "%s(): Expected reduction dim %d to have non-zero "
                              "size.",
                              name, i);
        }
        if (!red[i]) {
            shape[n++] = t->shape[i];
        } else if (a->keepdim) {
            shape[n++] = 1;
        }
    }
    *ndim = n;
    return 0;
}

int td_dtype_rule_reduce(const struct td_operand *in, int nin, const struct td_op_args *a,
                         enum td_dtype *compute, enum td_dtype *result, struct td_err *err)
{
    /* torch checks the dims (and emptiness) before the dtype, except for mean, std and var. */
    int64_t shape[TD_MAX_DIMS];
    int ndim;
    enum red_kind k = kind_of(a->op);
    int rc;
    enum td_dtype dt = in[0].t->dtype;
    bool dtype_first = (k == R_MEAN || k == R_STD || k == R_VAR) && !td_dtype_is_float(dt);
    if (!dtype_first && (rc = td_shape_reduce(in, nin, a, shape, &ndim, err)) != 0) {
        return rc;
    }
    bool fl = td_dtype_is_float(dt);
    *compute = dt;
    switch (k) {
    case R_SUM:
    case R_PROD: *result = fl ? dt : TD_DTYPE_I64; return 0;
    case R_MEAN:
        if (!fl) {
            return td_err_set(err, TD_EDTYPE,
                              "mean(): could not infer output dtype. Input dtype "
                              "must be either a floating point or complex dtype. Got: %s",
                              td_dtype_cname(dt));
        }
        break;
    case R_STD:
    case R_VAR:
        if (!fl) {
            return td_err_set(err, TD_EDTYPE,
                              "std and var only support floating point and "
                              "complex dtypes");
        }
        break;
    case R_NORM:
        if (!fl) {
            return td_err_set(err, TD_EDTYPE,
                              "norm(): input dtype should be either floating "
                              "point or complex. Got %s instead.",
                              td_dtype_cname(dt));
        }
        break;
    case R_LOGSUMEXP: *result = fl ? dt : TD_DTYPE_DEFAULT_FLOAT; return 0;
    case R_ARGMAX:
    case R_ARGMIN:
        /* torch has no bool kernel, but skips it when nothing is to be compared: an empty
        ** result, or a reduced dim of size 1. */
        if (dt == TD_DTYPE_BOOL) {
            int64_t d = 0, numel = 1;
            for (int i = 0; i < ndim; i++) {
                numel = td_sat_mul(numel, shape[i]);
            }
            bool skip = a->has_dim && in[0].t->ndim > 0 &&
                        td_wrap_dim(a->dim, in[0].t->ndim, &d, NULL) == 0 &&
                        (numel == 0 || in[0].t->shape[d] == 1);
            if (!skip) {
                return td_err_set(err, TD_EDTYPE, "\"%s_cpu\" not implemented for 'Bool'",
                                  td_ops[a->op].name);
            }
        }
        *result = TD_DTYPE_I64;
        return 0;
    case R_ALL:
    case R_ANY: *result = TD_DTYPE_BOOL; return 0;
    default: break;
    }
    *result = dt;
    return 0;
}


/* Calls visit(acc index, element pointer, index along the reduced dims) for every element. */
struct walk {
    const struct td_tensor *t;
    int64_t ostride[TD_MAX_DIMS]; /* output element stride per input dim; 0 when reduced */
    int64_t rstride[TD_MAX_DIMS]; /* position stride among reduced elements */
};

static void walk_init(struct walk *w, const struct td_tensor *t, const bool *red)
{
    w->t = t;
    int64_t os = 1, rs = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        w->ostride[i] = red[i] ? 0 : os;
        w->rstride[i] = red[i] ? rs : 0;
        if (red[i]) {
            rs = td_sat_mul(rs, t->shape[i]);
        } else {
            os = td_sat_mul(os, t->shape[i]);
        }
    }
}

/* A float sum over some dims (a bias's gradient: g summed over the batch), as the element walk
** in td_fwd_reduce does it, a row of the last dim at a time: each output's double accumulator
** takes the same elements in the same (C) order, so the sums are the same to the bit. */
#define SUM_ROW(T)                                                                                 \
    do {                                                                                           \
        const T *x = (const T *)p;                                                                 \
        if (os == 0) {                                                                             \
            double s = acc[o];                                                                     \
            for (int64_t i = i0; i < i1; i++) {                                                    \
                s += (double)x[i * xs];                                                            \
            }                                                                                      \
            acc[o] = s;                                                                            \
        } else {                                                                                   \
            for (int64_t i = i0; i < i1; i++) {                                                    \
                acc[o + i * os] += (double)x[i * xs];                                              \
            }                                                                                      \
        }                                                                                          \
    } while (0)

/* Rows are walked in pieces of at most TD_CANCEL_CHUNK elements with a cancel check once a
** chunk's worth is done: an expanded row (stride 0) may be long with no memory behind it. */
static int sum_rows(const struct td_tensor *t, const struct walk *w, double *acc,
                    struct td_err *err)
{
    int last = t->ndim - 1;
    int64_t len = t->shape[last], xs = t->strides[last], os = w->ostride[last];
    int64_t rows = t->numel / len, es = (int64_t)td_dtype_size(t->dtype);
    int64_t idx[TD_MAX_DIMS] = {0}, off = t->offset, o = 0, since = 0;
    const char *base = t->storage->buf->data;
    for (int64_t r = 0; r < rows; r++) {
        const char *p = base + off * es;
        for (int64_t i0 = 0, i1; i0 < len; i0 = i1) {
            i1 = td_cancel_chunk_end(i0, len);
            if (t->dtype == TD_DTYPE_F32) {
                SUM_ROW(float);
            } else {
                SUM_ROW(double);
            }
            if ((since += i1 - i0) >= TD_CANCEL_CHUNK) {
                since = 0;
                int rc = td_cancel_check(err);
                if (rc != 0) {
                    return rc;
                }
            }
        }
        for (int d = last - 1; d >= 0; d--) {
            if (++idx[d] < t->shape[d]) {
                off += t->strides[d];
                o += w->ostride[d];
                break;
            }
            off -= (idx[d] - 1) * t->strides[d];
            o -= (idx[d] - 1) * w->ostride[d];
            idx[d] = 0;
        }
    }
    return td_cancel_check(err);
}

/* A sum, mean or 2-norm of a whole contiguous float tensor, split across threads when large: each
** chunk sums into its own partial (in double), then the partials are added in order, so the
** result depends on the thread count but not on scheduling. */
struct partial_sum {
    const void *data;
    enum td_dtype dt;
    int64_t n, chunks;
    bool squares;
    double part[64];
};

/* Sums x[lo, hi) (or its squares) in double with 8 independent accumulators, folded pairwise at
** the end: one running total is a chain of dependent adds (one element per add latency); eight
** lanes let the compiler use two 4-wide vector adds per step and keep the loads streaming. The
** order of additions is fixed by the bounds alone, so results do not depend on scheduling. */
#define LANE_STEP(T, OP)                                                                           \
    a0 += OP(x[i]);                                                                                \
    a1 += OP(x[i + 1]);                                                                            \
    a2 += OP(x[i + 2]);                                                                            \
    a3 += OP(x[i + 3]);                                                                            \
    a4 += OP(x[i + 4]);                                                                            \
    a5 += OP(x[i + 5]);                                                                            \
    a6 += OP(x[i + 6]);                                                                            \
    a7 += OP(x[i + 7])
#define LANE_VALUE(v) ((double)(v))
#define LANE_SQUARE(v) ((double)(v) * (double)(v))
#define DEF_LANE_SUM(NAME, T)                                                                      \
    static void NAME(const T *x, int64_t lo, int64_t hi, bool squares, double *acc)                \
    {                                                                                              \
        double a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];                                 \
        double a4 = acc[4], a5 = acc[5], a6 = acc[6], a7 = acc[7];                                 \
        int64_t i = lo;                                                                            \
        if (squares) {                                                                             \
            for (; i + 8 <= hi; i += 8) {                                                          \
                LANE_STEP(T, LANE_SQUARE);                                                         \
            }                                                                                      \
        } else {                                                                                   \
            for (; i + 8 <= hi; i += 8) {                                                          \
                LANE_STEP(T, LANE_VALUE);                                                          \
            }                                                                                      \
        }                                                                                          \
        for (; i < hi; i++) {                                                                      \
            a0 += squares ? LANE_SQUARE(x[i]) : LANE_VALUE(x[i]);                                  \
        }                                                                                          \
        acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;                                        \
        acc[4] = a4, acc[5] = a5, acc[6] = a6, acc[7] = a7;                                        \
    }
DEF_LANE_SUM(lane_sum_f32, float)
DEF_LANE_SUM(lane_sum_f64, double)

/* Each chunk's lanes run in blocks of TD_CANCEL_CHUNK elements (a multiple of 8, so the lanes
** carry over from block to block and the sum is exactly the unblocked one), with a cancel check
** between blocks. */
static void partial_sum_run(int64_t begin, int64_t end, void *ctx)
{
    struct partial_sum *p = ctx;
    for (int64_t c = begin; c < end; c++) {
        /* n * c / chunks without overflow: chunks <= 64 */
        int64_t q = p->n / p->chunks, r = p->n % p->chunks;
        int64_t lo = q * c + r * c / p->chunks, hi = q * (c + 1) + r * (c + 1) / p->chunks;
        double acc[8] = {0};
        for (int64_t b = lo, e; b < hi; b = e) {
            e = td_cancel_chunk_end(b, hi);
            if (p->dt == TD_DTYPE_F32) {
                lane_sum_f32(p->data, b, e, p->squares, acc);
            } else {
                lane_sum_f64(p->data, b, e, p->squares, acc);
            }
            if (e < hi && td_cancel_pending()) {
                return; /* td_parallel_for reports it */
            }
        }
        p->part[c] = ((acc[0] + acc[4]) + (acc[2] + acc[6])) +
                     ((acc[1] + acc[5]) + (acc[3] + acc[7]));
    }
}

/* Sums a whole contiguous float tensor into *sum and sets *done, when it qualifies. */
static int parallel_full_sum(const struct td_tensor *t, enum red_kind k, double *sum, bool *done,
                             struct td_err *err)
{
    *done = false;
    if (t->numel < 64 || !td_dtype_is_float(t->dtype) || !td_tensor_is_contiguous(t) ||
        (k != R_SUM && k != R_MEAN && k != R_NORM)) {
        return 0;
    }
    int threads = td_parallel_threads();
    int64_t chunks = t->numel < ((int64_t)1 << 20) ? 1 : threads > 64 ? 64 : threads;
    struct partial_sum p = {.data = td_tensor_data(t),
                            .dt = t->dtype,
                            .n = t->numel,
                            .chunks = chunks,
                            .squares = k == R_NORM};
    int rc = td_parallel_for(p.chunks, 1, partial_sum_run, &p, err);
    if (rc != 0) {
        return rc;
    }
    double s = 0;
    for (int64_t c = 0; c < p.chunks; c++) {
        s += p.part[c];
    }
    *sum = s;
    *done = true;
    return 0;
}

int td_fwd_reduce(struct td_tensor *out, const struct td_operand *in, int nin,
                  const struct td_op_args *a, enum td_dtype compute, struct td_err *err)
{
    (void)nin;
    const struct td_tensor *t = in[0].t;
    enum red_kind k = kind_of(a->op);
    bool red[TD_MAX_DIMS], all;
    int rc = reduced_dims(t, a, k, red, &all, err);
    if (rc != 0) {
        return rc;
    }
    int64_t nout = out->numel, group = nout > 0 ? t->numel / nout : 0;
    if (t->numel == 0) {
        group = 0;
        for (int i = 0, first = 1; i < t->ndim; i++) {
            if (red[i]) {
                group = first ? t->shape[i] : group * t->shape[i];
                first = 0;
            }
        }
    }
    /* Four accumulators per output element: temporaries, charged to the caller's quota. */
    int64_t scratch = td_sat_mul(nout > 0 ? nout : 1, 4 * 8);
    double *acc = NULL, *aux = NULL;
    int64_t *iacc = NULL, *ival = NULL;
    if ((rc = td_quota_charge(a->quota, scratch, err)) != 0) {
        return rc;
    }
    acc = td_calloc((size_t)(nout > 0 ? nout : 1), sizeof *acc);
    iacc = td_calloc((size_t)(nout > 0 ? nout : 1), sizeof *iacc);
    aux = td_calloc((size_t)(nout > 0 ? nout : 1), sizeof *aux);
    ival = td_calloc((size_t)(nout > 0 ? nout : 1), sizeof *ival);
    if (acc == NULL || iacc == NULL || aux == NULL || ival == NULL) {
        rc = td_err_code(err, TD_ENOMEM);
        goto out;
    }
    bool fl = td_dtype_is_float(compute);
    /* initial values */
    for (int64_t o = 0; o < nout; o++) {
        switch (k) {
        case R_PROD:
            acc[o] = 1;
            iacc[o] = 1;
            break;
        case R_ALL: iacc[o] = 1; break;
        case R_MAX:
        case R_MIN:
        case R_ARGMAX:
        case R_ARGMIN:
        case R_LOGSUMEXP:
            acc[o] = NAN;
            iacc[o] = -1;
            aux[o] = -INFINITY;
            break;
        default: break;
        }
    }
    double psum;
    bool summed = false;
    if (all && nout == 1 && (rc = parallel_full_sum(t, k, &psum, &summed, err)) != 0) {
        goto out;
    }
    if (summed) {
        acc[0] = psum;
        goto store;
    }
    struct walk w;
    walk_init(&w, t, red);
    if ((k == R_SUM || k == R_MEAN) && (t->dtype == TD_DTYPE_F32 || t->dtype == TD_DTYPE_F64) &&
        t->ndim > 0 && t->numel > 0) {
        if ((rc = sum_rows(t, &w, acc, err)) != 0) {
            goto out;
        }
        goto store;
    }
    size_t es = td_dtype_size(t->dtype);
    const char *base = t->storage->buf->data;
    for (int pass = 0; pass < ((k == R_STD || k == R_VAR || k == R_LOGSUMEXP) ? 2 : 1); pass++) {
        int64_t idx[TD_MAX_DIMS] = {0}, off = t->offset, o = 0, r = 0;
        for (int64_t c = 0, end; c < t->numel; c = end) {
            end = td_cancel_chunk_end(c, t->numel);
            for (int64_t n = c; n < end; n++) {
                const char *p = base + off * (int64_t)es;
                switch (k) {
                case R_SUM:
                case R_MEAN:
                    if (fl) {
                        acc[o] += td_elem_load_f64(p, t->dtype);
                    } else {
                        iacc[o] = (int64_t)((uint64_t)iacc[o] +
                                            (uint64_t)td_elem_load_i64(p, t->dtype));
                    }
                    break;
                case R_PROD:
                    if (fl) {
                        acc[o] *= td_elem_load_f64(p, t->dtype);
                    } else {
                        iacc[o] = (int64_t)((uint64_t)iacc[o] *
                                            (uint64_t)td_elem_load_i64(p, t->dtype));
                    }
                    break;
                case R_NORM: {
                    double v = td_elem_load_f64(p, t->dtype);
                    acc[o] += v * v;
                    break;
                }
                case R_ALL: iacc[o] &= td_elem_load_f64(p, t->dtype) != 0; break;
                case R_ANY: iacc[o] |= td_elem_load_f64(p, t->dtype) != 0; break;
                case R_STD:
                case R_VAR:
                    if (pass == 0) {
                        acc[o] += td_elem_load_f64(p, t->dtype);
                    } else {
                        double dv = td_elem_load_f64(p, t->dtype) - acc[o] / (double)group;
                        aux[o] += dv * dv;
                    }
                    break;
                case R_LOGSUMEXP: {
                    double v = td_elem_load_f64(p, t->dtype);
                    if (pass == 0) {
                        aux[o] = (v > aux[o] || isnan(v)) ? v : aux[o];
                    } else {
                        double m = isinf(aux[o]) ? 0 : aux[o];
                        acc[o] = (isnan(acc[o]) ? 0 : acc[o]) + exp(v - m);
                    }
                    break;
                }
                default: { /* max, min, argmax, argmin: the first NaN wins, else the first max */
                    bool take, hi = k == R_MAX || k == R_ARGMAX;
                    if (fl) {
                        double v = td_elem_load_f64(p, t->dtype);
                        take = iacc[o] < 0 ||
                               (!isnan(acc[o]) && (isnan(v) || (hi ? v > acc[o] : v < acc[o])));
                        if (take) {
                            acc[o] = v;
                        }
                    } else {
                        /* integers compare exactly; the best value is kept in ival */
                        int64_t v = td_elem_load_i64(p, t->dtype);
                        take = iacc[o] < 0 || (hi ? v > ival[o] : v < ival[o]);
                        if (take) {
                            ival[o] = v;
                        }
                    }
                    if (take) {
                        iacc[o] = r;
                    }
                    break;
                }
                }
                for (int d = t->ndim - 1; d >= 0; d--) {
                    if (++idx[d] < t->shape[d]) {
                        off += t->strides[d];
                        o += w.ostride[d];
                        r += w.rstride[d];
                        break;
                    }
                    off -= (idx[d] - 1) * t->strides[d];
                    o -= (idx[d] - 1) * w.ostride[d];
                    r -= (idx[d] - 1) * w.rstride[d];
                    idx[d] = 0;
                }
            }
            if ((rc = td_cancel_check(err)) != 0) {
                goto out;
            }
        }
    }
store:;
    char *ob = out->storage->buf->data;
    size_t oes = td_dtype_size(out->dtype);
    int64_t oidx[TD_MAX_DIMS] = {0}, ooff = out->offset;
    for (int64_t o = 0; o < nout; o++) {
        char *dst = ob + ooff * (int64_t)oes;
        double v = 0;
        int64_t iv = 0;
        bool use_int = false;
        switch (k) {
        case R_SUM:
        case R_PROD:
            if (fl) {
                v = acc[o];
            } else {
                iv = iacc[o];
                use_int = true;
            }
            break;
        case R_MEAN: v = group > 0 ? acc[o] / (double)group : NAN; break;
        case R_NORM: v = sqrt(acc[o]); break;
        case R_STD:
        case R_VAR: {
            /* torch divides by max(0, N - correction): 0/0 is NaN, x/0 is inf. */
            double den = (double)group - a->correction;
            double var = group == 0 ? NAN : aux[o] / (den > 0 ? den : 0.0);
            v = k == R_STD ? sqrt(var) : var;
            break;
        }
        case R_LOGSUMEXP:
            if (group == 0) {
                v = -INFINITY;
            } else {
                double m = isinf(aux[o]) ? 0 : aux[o];
                v = isnan(aux[o]) ? NAN : m + log(acc[o]);
            }
            break;
        case R_ALL:
        case R_ANY:
            iv = iacc[o];
            use_int = true;
            break;
        case R_ARGMAX:
        case R_ARGMIN:
            iv = iacc[o] < 0 ? 0 : iacc[o];
            use_int = true;
            break;
        default: /* max / min keep the input dtype, exactly */
            if (fl) {
                v = acc[o];
            } else {
                iv = ival[o];
                use_int = true;
            }
            break;
        }
        if (use_int) {
            switch (out->dtype) {
            case TD_DTYPE_I64: *(int64_t *)dst = iv; break;
            case TD_DTYPE_I32: *(int32_t *)dst = (int32_t)iv; break;
            case TD_DTYPE_BOOL: *(uint8_t *)dst = iv != 0; break;
            case TD_DTYPE_F32: *(float *)dst = (float)iv; break;
            default: *(double *)dst = (double)iv; break;
            }
        } else {
            switch (out->dtype) {
            case TD_DTYPE_F32: *(float *)dst = (float)v; break;
            case TD_DTYPE_F64: *(double *)dst = v; break;
            case TD_DTYPE_I64: *(int64_t *)dst = (int64_t)v; break;
            case TD_DTYPE_I32: *(int32_t *)dst = (int32_t)v; break;
            default: *(uint8_t *)dst = v != 0; break;
            }
        }
        for (int d = out->ndim - 1; d >= 0; d--) {
            if (++oidx[d] < out->shape[d]) {
                ooff += out->strides[d];
                break;
            }
            ooff -= (oidx[d] - 1) * out->strides[d];
            oidx[d] = 0;
        }
    }
out:
    td_free(acc);
    td_free(iacc);
    td_free(aux);
    td_free(ival);
    td_quota_release(a->quota, scratch);
    return rc;
}

/* ---- backward ---- */

/* grad_fn names: sum, mean, prod over everything Backward0, over dims Backward1; max/min over
** everything Backward1, along a dim Backward0. */
const char *td_grad_fn_sum(const struct td_node *n)
{
    return n->args.has_dims && n->args.ndims > 0 ? "SumBackward1" : "SumBackward0";
}

const char *td_grad_fn_mean(const struct td_node *n)
{
    return n->args.has_dims && n->args.ndims > 0 ? "MeanBackward1" : "MeanBackward0";
}

const char *td_grad_fn_prod(const struct td_node *n)
{
    return n->args.has_dims && n->args.ndims > 0 ? "ProdBackward1" : "ProdBackward0";
}

const char *td_grad_fn_max_min(const struct td_node *n)
{
    if (n->op == TD_OP_MAX) {
        return n->args.has_dim ? "MaxBackward0" : "MaxBackward1";
    }
    return n->args.has_dim ? "MinBackward0" : "MinBackward1";
}

/* sum: g broadcast back over the reduced dims (as a stride-0 view). */
int td_bw_sum(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
              struct td_quota *q, struct td_err *err)
{
    const struct td_tensor *x = n->in[0].t;
    bool red[TD_MAX_DIMS], all;
    int rc = reduced_dims(x, &n->args, kind_of(n->op), red, &all, err);
    if (rc != 0) {
        return rc;
    }
    struct td_op_args r, e;
    td_op_args_init(&r);
    td_op_args_init(&e);
    r.has_dims = e.has_dims = true;
    for (int i = 0; i < x->ndim; i++) {
        r.dims[i] = red[i] ? 1 : x->shape[i];
        e.dims[i] = x->shape[i];
    }
    r.ndims = e.ndims = x->ndim;
    struct td_tensor *k = NULL;
    if ((rc = td_bw1(TD_OP_RESHAPE, td_t(g), &r, q, &k, err)) == 0) {
        rc = td_bw1(TD_OP_EXPAND, td_t(k), &e, q, &gin[0], err);
    }
    td_tensor_unref(k);
    return rc;
}

/* mean: the sum's gradient over the number of reduced elements. */
int td_bw_mean(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
               struct td_quota *q, struct td_err *err)
{
    const struct td_tensor *x = n->in[0].t;
    int64_t outn = 1;
    for (int i = 0; i < n->out_ndim; i++) {
        outn = td_sat_mul(outn, n->out_shape[i]);
    }
    double count = outn > 0 ? (double)x->numel / (double)outn : 0.0;
    struct td_tensor *s = NULL;
    int rc = td_bw_sum(n, g, &s, q, err);
    if (rc == 0) {
        rc = td_bw2(TD_OP_DIV, td_t(s), td_s(td_scalar_f(count)), q, &gin[0], err);
    }
    td_tensor_unref(s);
    return rc;
}

/* The input-shaped gradient of a keepdim-style broadcast: g reshaped with the reduced dims as 1
** and expanded over them (what sum's rule does), so rules below can work elementwise. */
static int spread(const struct td_node *n, struct td_tensor *g, struct td_quota *q,
                  struct td_tensor **out, struct td_err *err)
{
    struct td_node tmp = *n;
    tmp.op = kind_of(n->op) == R_MAX || kind_of(n->op) == R_MIN ? TD_OP_MAX : n->op;
    if (single_dim(kind_of(n->op)) && n->args.has_dim) {
        tmp.args.dims[0] = n->args.dim;
        tmp.args.ndims = 1;
        tmp.args.has_dims = true;
    } else if (single_dim(kind_of(n->op))) {
        tmp.args.ndims = 0;
        tmp.args.has_dims = false;
    }
    tmp.op = TD_OP_SUM;
    return td_bw_sum(&tmp, g, out, q, err);
}

/* The reduction's own result, recomputed with keepdim so it broadcasts against x. */
static int result_keep(const struct td_node *n, struct td_quota *q, struct td_tensor **out,
                       struct td_err *err)
{
    struct td_op_args a = n->args;
    a.keepdim = true;
    a.grad_enabled = false;
    return td_bw1(n->op, n->in[0], &a, q, out, err);
}

/* prod: g * prod / x (inputs with zeros give NaN where torch is exact: known gap) */
int td_bw_prod(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
               struct td_quota *q, struct td_err *err)
{
    struct td_tensor *gs = NULL, *p = NULL, *r = NULL, *m = NULL;
    int rc;
    if ((rc = spread(n, g, q, &gs, err)) == 0 && (rc = result_keep(n, q, &p, err)) == 0 &&
        (rc = td_bw2(TD_OP_DIV, td_t(p), n->in[0], q, &r, err)) == 0) {
        rc = td_bw2(TD_OP_MUL, td_t(gs), td_t(r), q, &gin[0], err);
    }
    td_tensor_unref(gs);
    td_tensor_unref(p);
    td_tensor_unref(r);
    td_tensor_unref(m);
    return rc;
}

/* max/min: over all elements the gradient is shared evenly by every extreme element; with a
** dim it goes to the first one (the index torch returns). */
int td_bw_extreme(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                  struct td_quota *q, struct td_err *err)
{
    struct td_tensor *gs = NULL, *v = NULL, *mask = NULL, *cnt = NULL, *w = NULL, *idx = NULL;
    struct td_tensor *pos = NULL, *shaped = NULL;
    const struct td_tensor *x = n->in[0].t;
    int rc;
    if ((rc = spread(n, g, q, &gs, err)) != 0) {
        goto out;
    }
    if (!n->args.has_dim) {
        if ((rc = result_keep(n, q, &v, err)) == 0 &&
            (rc = td_bw2(TD_OP_EQ, n->in[0], td_t(v), q, &mask, err)) == 0 &&
            (rc = td_bw1(TD_OP_SUM, td_t(mask), NULL, q, &cnt, err)) == 0 &&
            (rc = td_bw2(TD_OP_DIV, td_t(mask), td_t(cnt), q, &w, err)) == 0) {
            rc = td_bw2(TD_OP_MUL, td_t(gs), td_t(w), q, &gin[0], err);
        }
        goto out;
    }
    /* mask = (position along dim == argmax/argmin, kept) */
    struct td_op_args ia = n->args;
    ia.keepdim = true;
    int64_t d;
    if ((rc = td_wrap_dim(n->args.dim, x->ndim, &d, err)) != 0 ||
        (rc = td_bw1(n->op == TD_OP_MAX ? TD_OP_ARGMAX : TD_OP_ARGMIN, n->in[0], &ia, q, &idx,
                     err)) != 0) {
        goto out;
    }
    int64_t size = x->ndim > 0 ? x->shape[d] : 1;
    if ((rc = td_tensor_arange(&pos, TD_DTYPE_I64, td_scalar_i(0), td_scalar_i(size),
                               td_scalar_i(1), q, err)) != 0) {
        goto out;
    }
    struct td_op_args ra;
    td_op_args_init(&ra);
    ra.has_dims = true;
    ra.ndims = x->ndim;
    for (int i = 0; i < x->ndim; i++) {
        ra.dims[i] = i == d ? size : 1;
    }
    if ((rc = td_bw1(TD_OP_RESHAPE, td_t(pos), &ra, q, &shaped, err)) == 0 &&
        (rc = td_bw2(TD_OP_EQ, td_t(shaped), td_t(idx), q, &mask, err)) == 0) {
        rc = td_bw2(TD_OP_MUL, td_t(gs), td_t(mask), q, &gin[0], err);
    }
out:
    td_tensor_unref(gs);
    td_tensor_unref(v);
    td_tensor_unref(mask);
    td_tensor_unref(cnt);
    td_tensor_unref(w);
    td_tensor_unref(idx);
    td_tensor_unref(pos);
    td_tensor_unref(shaped);
    return rc;
}

/* var: g * 2 (x - mean) / (N - correction); std: var's gradient / (2 std) */
int td_bw_var_std(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                  struct td_quota *q, struct td_err *err)
{
    const struct td_tensor *x = n->in[0].t;
    struct td_tensor *gs = NULL, *mean = NULL, *dev = NULL, *h = NULL, *sd = NULL, *r = NULL;
    int64_t outn = 1;
    for (int i = 0; i < n->out_ndim; i++) {
        outn = td_sat_mul(outn, n->out_shape[i]);
    }
    double count = outn > 0 ? (double)x->numel / (double)outn : 0.0;
    double scale = 2.0 / (count - n->args.correction);
    struct td_op_args ma = n->args;
    ma.keepdim = true;
    ma.grad_enabled = false;
    int rc;
    if ((rc = spread(n, g, q, &gs, err)) != 0 ||
        (rc = td_bw1(TD_OP_MEAN, n->in[0], &ma, q, &mean, err)) != 0 ||
        (rc = td_bw2(TD_OP_SUB, n->in[0], td_t(mean), q, &dev, err)) != 0 ||
        (rc = td_bw2(TD_OP_MUL, td_t(dev), td_s(td_scalar_f(scale)), q, &h, err)) != 0) {
        goto out;
    }
    if (n->op == TD_OP_STD) {
        if ((rc = result_keep(n, q, &sd, err)) != 0 ||
            (rc = td_bw2(TD_OP_MUL, td_t(sd), td_s(td_scalar_f(2.0)), q, &r, err)) != 0) {
            goto out;
        }
        struct td_tensor *h2 = NULL;
        if ((rc = td_bw2(TD_OP_DIV, td_t(h), td_t(r), q, &h2, err)) != 0) {
            goto out;
        }
        td_tensor_unref(h);
        h = h2;
    }
    rc = td_bw2(TD_OP_MUL, td_t(gs), td_t(h), q, &gin[0], err);
out:
    td_tensor_unref(gs);
    td_tensor_unref(mean);
    td_tensor_unref(dev);
    td_tensor_unref(h);
    td_tensor_unref(sd);
    td_tensor_unref(r);
    return rc;
}

/* norm (p = 2): g * x / norm; logsumexp: g * exp(x - logsumexp) */
int td_bw_norm_lse(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                   struct td_quota *q, struct td_err *err)
{
    struct td_tensor *gs = NULL, *r = NULL, *h = NULL, *e = NULL;
    int rc;
    if ((rc = spread(n, g, q, &gs, err)) != 0 || (rc = result_keep(n, q, &r, err)) != 0) {
        goto out;
    }
    if (n->op == TD_OP_NORM) {
        rc = td_bw2(TD_OP_DIV, n->in[0], td_t(r), q, &h, err);
    } else if ((rc = td_bw2(TD_OP_SUB, n->in[0], td_t(r), q, &e, err)) == 0) {
        rc = td_bw1(TD_OP_EXP, td_t(e), NULL, q, &h, err);
    }
    if (rc == 0) {
        rc = td_bw2(TD_OP_MUL, td_t(gs), td_t(h), q, &gin[0], err);
    }
out:
    td_tensor_unref(gs);
    td_tensor_unref(r);
    td_tensor_unref(h);
    td_tensor_unref(e);
    return rc;
}

/* ---- cumsum ---- */

/* The dtype cumsum gives: dtype= when given, else the input's for floats and int64 for the
** rest (bool and int32 promote, as torch's integral inputs do). */
static int cumsum_dtype(const struct td_tensor *x, const struct td_op_args *a, enum td_dtype *out,
                        struct td_err *err)
{
    if (a->has_dtype) {
        if (!td_dtype_is_valid((int)a->dtype)) {
            return td_err_set(err, TD_EDTYPE, "cumsum: unknown dtype");
        }
        if (a->dtype == TD_DTYPE_BOOL) {
            return td_err_set(err, TD_EDTYPE, "\"cumsum_out_cpu\" not implemented for 'Bool'");
        }
        *out = a->dtype;
    } else {
        *out = td_dtype_is_float(x->dtype) ? x->dtype : TD_DTYPE_I64;
    }
    return 0;
}

/* cumsum(input, dim, *, dtype=None): running sums along dim. The input is cast into the result
** first (dtype= casts before summing, as in torch), then each line along dim is scanned in
** place: floats accumulate in double and store each partial sum in the result's dtype, ints in
** int64 (wrapping like torch's two's complement). Cancel is checked every TD_CANCEL_CHUNK
** elements. */
int td_make_cumsum(struct td_tensor **out, const struct td_operand *in, int nin,
                   const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    struct td_tensor *x = in[0].t;
    int64_t d;
    enum td_dtype dt = TD_DTYPE_I64;
    int rc;
    if ((rc = td_wrap_dim(a->dim, x->ndim, &d, err)) != 0 ||
        (rc = cumsum_dtype(x, a, &dt, err)) != 0) {
        return rc;
    }
    struct td_tensor *t = NULL;
    if ((rc = td_tensor_empty(&t, dt, x->shape, x->ndim, q, err)) != 0) {
        return rc;
    }
    if ((rc = td_cast_copy(t, x, err)) != 0) {
        td_tensor_unref(t);
        return rc;
    }
    /* contiguous [outer, len, inner]: element (o, k, i) at (o * len + k) * inner + i */
    int64_t len = x->ndim > 0 ? x->shape[d] : 1, inner = 1;
    for (int k = (int)d + 1; k < x->ndim; k++) {
        inner *= x->shape[k]; /* a factor of numel, which fits */
    }
    int64_t lines = len > 0 ? t->numel / len : 0; /* outer * inner */
    char *base = td_tensor_data(t);
    size_t es = td_dtype_size(dt);
    bool fl = td_dtype_is_float(dt);
    int64_t since_check = 0;
    for (int64_t line = 0; line < lines; line++) {
        int64_t o = line / inner, i = line % inner;
        char *p = base + (size_t)((o * len) * inner + i) * es;
        size_t step = (size_t)inner * es;
        double facc = 0;
        uint64_t iacc = 0;
        for (int64_t k0 = 0, k1; k0 < len; k0 = k1) {
            k1 = td_cancel_chunk_end(k0, len);
            for (int64_t k = k0; k < k1; k++, p += step) {
                if (fl) {
                    facc += td_elem_load_f64(p, dt);
                    td_elem_store_f64(p, dt, facc);
                } else if (dt == TD_DTYPE_I64) {
                    iacc += (uint64_t) * (int64_t *)(void *)p;
                    *(int64_t *)(void *)p = (int64_t)iacc;
                } else {
                    iacc += (uint64_t)(int64_t) * (int32_t *)(void *)p;
                    *(int32_t *)(void *)p = (int32_t)(uint32_t)iacc;
                }
            }
            if ((since_check += k1 - k0) >= TD_CANCEL_CHUNK) {
                since_check = 0;
                if ((rc = td_cancel_check(err)) != 0) {
                    td_tensor_unref(t);
                    return rc;
                }
            }
        }
    }
    *out = t;
    return 0;
}

/* cumsum: the gradient of a running sum is the reversed running sum of g along dim
** (flip, cumsum, flip), in g's dtype. */
int td_bw_cumsum(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                 struct td_quota *q, struct td_err *err)
{
    if (n->out_ndim == 0) {
        gin[0] = td_tensor_ref(g);
        return 0;
    }
    int64_t d;
    int rc = td_wrap_dim(n->args.dim, n->out_ndim, &d, err);
    if (rc != 0) {
        return rc;
    }
    struct td_op_args fa, ca;
    td_op_args_init(&fa);
    fa.dims[0] = d;
    fa.ndims = 1;
    fa.has_dims = true;
    td_op_args_init(&ca);
    ca.dim = d;
    struct td_tensor *f = NULL, *c = NULL;
    if ((rc = td_bw1(TD_OP_FLIP, td_t(g), &fa, q, &f, err)) == 0 &&
        (rc = td_bw1(TD_OP_CUMSUM, td_t(f), &ca, q, &c, err)) == 0) {
        rc = td_bw1(TD_OP_FLIP, td_t(c), &fa, q, &gin[0], err);
    }
    td_tensor_unref(f);
    td_tensor_unref(c);
    return rc;
}
