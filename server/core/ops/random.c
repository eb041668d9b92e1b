/* server/core/ops/random.c — the random family: multinomial, bernoulli(_), randperm and
** torch.normal's call forms (normal_sample), with their cost rules and backward rules.
**
** Every draw comes from td_op_args.rng: the session's generator or a torch.Generator's stream,
** which rpc resolves from generator= (core never knows which). The generator is torch's CPU
** mt19937 (core/rng.h) and each kernel draws what torch 1.13's CPU kernel draws, in its order and
** width (aten/src/ATen/native/Distributions.cpp, cpu/MultinomialKernel.cpp, TensorFactories.cpp,
** cpu/DistributionTemplates.h, facts only), so a seed gives torch's values. Draws are sequential,
** on one thread; a failed draw's generator state is thrown away by the caller.
*/
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../base/checked.h"
#include "../cancel.h"
#include "../rng.h"
#include "family.h"

/* exponential_distribution<double>(1): one double uniform. */
static double exponential1(struct td_rng *r)
{
    double u = td_rng_uniform_f64(r, 0.0, 1.0);
    return -1.0 / 1.0 * log(1.0 - u);
}

static int no_generator(struct td_err *err)
{
    return td_err_set(err, TD_EINVAL, "no generator");
}

/* A contiguous float64 copy of t, charged to q (the kernels below read values by index). */
static int f64_copy(struct td_tensor **out, const struct td_tensor *t, struct td_quota *q,
                    struct td_err *err)
{
    int rc = td_tensor_empty(out, TD_DTYPE_F64, t->shape, t->ndim, q, err);
    if (rc == 0 && (rc = td_cast_copy(*out, t, err)) != 0) {
        td_tensor_unref(*out);
        *out = NULL;
    }
    return rc;
}

/* ---- multinomial(input, num_samples, replacement=False, *, generator=None) ---- */

struct keyed {
    double key;
    int64_t idx;
};

static int by_key_desc(const void *a, const void *b)
{
    double x = ((const struct keyed *)a)->key, y = ((const struct keyed *)b)->key;
    if (x != y) {
        return x > y ? -1 : 1;
    }
    int64_t i = ((const struct keyed *)a)->idx, j = ((const struct keyed *)b)->idx;
    return (i > j) - (i < j);
}

/* Sorts e[0..n) by by_key_desc (a total order, so the result is qsort's), a bottom-up merge
** through tmp (n entries) that checks cancellation every TD_CANCEL_CHUNK entries merged: one
** row may hold all of a large input. */
static int keyed_sort(struct keyed *e, struct keyed *tmp, int64_t n, struct td_err *err)
{
    struct keyed *src = e, *dst = tmp;
    int64_t done = 0;
    for (int64_t w = 1; w<n; w = w> n / 2 ? n : 2 * w) {
        for (int64_t lo = 0; lo < n; lo += 2 * w) {
            int64_t mid = w < n - lo ? lo + w : n, hi = 2 * w < n - lo ? lo + 2 * w : n;
            int64_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                dst[k++] = by_key_desc(&src[j], &src[i]) < 0 ? src[j++] : src[i++];
            }
            while (i < mid) {
                dst[k++] = src[i++];
            }
            while (j < hi) {
                dst[k++] = src[j++];
            }
            if ((done += hi - lo) >= TD_CANCEL_CHUNK) {
                done = 0;
                int rc = td_cancel_check(err);
                if (rc != 0) {
                    return rc;
                }
            }
        }
        struct keyed *t = src;
        src = dst;
        dst = t;
    }
    if (src != e) {
        memcpy(e, src, (size_t)n * sizeof *e);
    }
    return 0;
}

/* torch's checks, in torch's order (aten/src/ATen/native/Distributions.cpp). */
static int multinomial_check(const struct td_tensor *p, const struct td_op_args *a,
                             struct td_err *err)
{
    if (p->ndim < 1 || p->ndim > 2) {
        return td_err_set(err, TD_ESHAPE, "prob_dist must be 1 or 2 dim");
    }
    if (!td_dtype_is_float(p->dtype)) {
        return td_err_set(err, TD_EDTYPE,
                          "multinomial only supports floating-point dtypes for input, got: %s",
                          td_dtype_cname(p->dtype));
    }
    if (a->num_samples <= 0) {
        return td_err_set(err, TD_EINVAL, "cannot sample n_sample <= 0 samples");
    }
    int64_t k = p->shape[p->ndim - 1];
    if (!a->replacement && a->num_samples > k) {
        return td_err_set(err, TD_EINVAL,
                          "cannot sample n_sample > prob_dist.size(-1) samples without "
                          "replacement");
    }
    if (k > (int64_t)1 << 24) {
        return td_err_set(err, TD_EINVAL, "number of categories cannot exceed 2^24");
    }
    return 0;
}

/* The rows' values: torch checks them for the whole input before it draws. */
static int multinomial_values(const double *v, int64_t rows, int64_t k, bool fast,
                              struct td_err *err)
{
    for (int64_t r = 0; r < rows; r++) {
        double sum = 0;
        for (int64_t j = 0; j < k; j++) {
            double x = v[r * k + j];
            if (fast) {
                if (!(x >= 0) || isinf(x)) {
                    return td_err_set(err, TD_EINVAL,
                                      "probability tensor contains either `inf`, `nan` or "
                                      "element < 0");
                }
            } else if (!(x >= 0)) {
                return td_err_set(err, TD_EINVAL,
                                  "invalid multinomial distribution "
                                  "(encountering probability entry < 0)");
            } else if (isinf(x)) {
                return td_err_set(err, TD_EINVAL,
                                  "invalid multinomial distribution (encountering probability "
                                  "entry = infinity or NaN)");
            }
            sum += x;
        }
        if (!(sum > 0)) {
            return td_err_set(err, TD_EINVAL,
                              "invalid multinomial distribution (sum of probabilities <= 0)");
        }
    }
    return 0;
}

/* x rounded to dt (float32 arithmetic done in double and rounded once is float32's own). */
static double in_dtype(enum td_dtype dt, double x)
{
    return dt == TD_DTYPE_F32 ? (double)(float)x : x;
}

struct expo_ctx {
    struct td_rng *rng;
    enum td_dtype dt;
};

/* v holds p (float64); becomes p / q with q = exponential(1), in p's dtype. */
static void expo_key(void *elem, void *ctx, int64_t i)
{
    (void)i;
    struct expo_ctx *c = ctx;
    double q = in_dtype(c->dt, exponential1(c->rng));
    *(double *)elem = in_dtype(c->dt, *(double *)elem / q);
}

/* Without replacement (and for one sample), torch's exponential trick: q = empty_like(input)
** .exponential_(1) (empty_like keeps input's dim order, so the draw walks input's layout), keys input / q in input's dtype, and the num_samples largest keys of a row, largest
** first (argmax for one sample). With replacement, torch's kernel: per row, the cumulative sums
** in input's dtype divided by their total, the last set to 1, then per sample a double uniform
** and a binary search for the first cumulative value not below it. */
int td_make_multinomial(struct td_tensor **out, const struct td_operand *in, int nin,
                        const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    const struct td_tensor *p = in[0].t;
    int rc;
    if ((rc = multinomial_check(p, a, err)) != 0) {
        return rc;
    }
    if (a->rng == NULL) {
        return no_generator(err);
    }
    int64_t k = p->shape[p->ndim - 1], rows = p->ndim == 2 ? p->shape[0] : 1;
    int64_t n = a->num_samples;
    int64_t shape[2] = {rows, n};
    if ((rc = td_tensor_empty(out, TD_DTYPE_I64, p->ndim == 2 ? shape : shape + 1, p->ndim, q,
                              err)) != 0) {
        return rc;
    }
    if (p->numel == 0) {
        memset(td_tensor_data(*out), 0, td_tensor_nbytes(*out));
        return 0;
    }
    struct td_tensor *v = NULL;
    if ((rc = f64_copy(&v, p, q, err)) != 0) {
        goto fail;
    }
    double *pv = td_tensor_data(v);
    bool fast = !a->replacement || n == 1;
    if ((rc = multinomial_values(pv, rows, k, fast, err)) != 0) {
        goto fail_v;
    }
    if (fast) {
        int perm[TD_MAX_DIMS];
        td_rng_walk_order(p, perm);
        struct td_tensor view = td_rng_permuted(v, perm);
        struct expo_ctx ec = {.rng = a->rng, .dt = p->dtype};
        if ((rc = td_tensor_each(&view, expo_key, &ec, err)) != 0) {
            goto fail_v;
        }
    }
    /* One row's scratch: k keyed entries and the merge's k more, or k cumulative sums. */
    int64_t scratch = td_sat_mul(k, fast ? 2 * (int64_t)sizeof(struct keyed)
                                         : (int64_t)sizeof(double));
    if ((rc = td_quota_charge_bytes(q, scratch, err)) != 0) {
        goto fail_v;
    }
    void *buf = td_malloc((size_t)scratch);
    if (buf == NULL) {
        rc = td_err_code(err, TD_ENOMEM);
        goto fail_charge;
    }
    int64_t *o = td_tensor_data(*out);
    enum td_dtype dt = p->dtype;
    for (int64_t r = 0; r < rows; r++) {
        const double *row = pv + r * k;
        if (fast) {
            struct keyed *e = buf;
            for (int64_t j = 0; j < k; j++) {
                e[j].key = row[j];
                e[j].idx = j;
            }
            if ((rc = keyed_sort(e, e + k, k, err)) != 0) {
                break;
            }
            for (int64_t s = 0; s < n; s++) {
                o[r * n + s] = e[s].idx;
            }
        } else {
            double *cum = buf, total = 0;
            for (int64_t j = 0; j < k; j++) {
                total = in_dtype(dt, total + row[j]);
                cum[j] = total;
            }
            for (int64_t j = 0; j < k; j++) {
                cum[j] = in_dtype(dt, cum[j] / total);
            }
            cum[k - 1] = 1;
            /* each sample a binary search: a chunk of them between two checks */
            for (int64_t c0 = 0; rc == 0 && c0 < n; c0 = td_cancel_chunk_end(c0, n)) {
                int64_t c1 = td_cancel_chunk_end(c0, n);
                for (int64_t s = c0; s < c1; s++) {
                    double x = td_rng_uniform_f64(a->rng, 0.0, 1.0);
                    int64_t lo = 0, hi = k; /* the first j with cum[j] >= x */
                    while (hi - lo > 0) {
                        int64_t mid = lo + (hi - lo) / 2;
                        if (cum[mid] < x) {
                            lo = mid + 1;
                        } else {
                            hi = mid;
                        }
                    }
                    o[r * n + s] = lo;
                }
                rc = td_cancel_check(err);
            }
            if (rc != 0) {
                break;
            }
        }
        if ((rc = td_cancel_check(err)) != 0) {
            break;
        }
    }
    td_free(buf);
    td_quota_release(q, scratch);
    td_tensor_unref(v);
    if (rc != 0) {
        goto fail;
    }
    return 0;
fail_charge:
    td_quota_release(q, scratch);
fail_v:
    td_tensor_unref(v);
fail:
    td_tensor_unref(*out);
    *out = NULL;
    return rc;
}

/* Reads the input (a float64 copy), writes rows * num_samples int64, sorts or searches rows. */
int td_cost_multinomial(const struct td_operand *in, int nin, const struct td_op_args *a,
                        struct td_cost *c)
{
    (void)nin;
    const struct td_tensor *p = in[0].t;
    if (p == NULL || p->ndim < 1 || p->ndim > 2 || a->num_samples <= 0) {
        return -1;
    }
    int64_t k = p->shape[p->ndim - 1], rows = p->ndim == 2 ? p->shape[0] : 1;
    int64_t out = td_sat_mul(rows, a->num_samples);
    c->read = p->numel;
    c->written = out;
    /* the sort: about k log2 k comparisons a row */
    int64_t lg = 1;
    while (lg < 63 && ((int64_t)1 << lg) < k) {
        lg++;
    }
    /* with replacement, a binary search of about log2 k steps a sample */
    c->flops = td_sat_add(td_sat_mul(p->numel, lg), td_sat_mul(out, lg));
    c->out_bytes = td_sat_mul(out, 8);
    c->temp_bytes = td_sat_add(td_sat_mul(p->numel, 8), td_sat_mul(k, 32));
    return 0;
}

/* ---- bernoulli(input, p=None, *, generator=None) and bernoulli_(p=0.5) ---- */

/* torch.bernoulli(x) draws with x's values as probabilities (BernoulliBackward0); x.bernoulli_(p)
** with the number p, 0.5 when none is given (BernoulliBackward2). torch.bernoulli(x, p) records
** nothing in torch; here it records BernoulliBackward0, with the same zero gradient. */
const char *td_grad_fn_bernoulli(const struct td_node *n)
{
    return n->args.inplace ? "BernoulliBackward2" : "BernoulliBackward0";
}

/* The result is input's dtype; drawing with input's values as probabilities needs floats. */
int td_dtype_rule_bernoulli(const struct td_operand *in, int nin, const struct td_op_args *a,
                            enum td_dtype *compute, enum td_dtype *result, struct td_err *err)
{
    (void)nin;
    const struct td_tensor *t = in[0].t;
    if (t == NULL) {
        return td_err_set(err, TD_EINVAL,
                          "bernoulli(): argument 'input' must be Tensor, not a "
                          "number");
    }
    if (!a->has_max && !a->inplace && !td_dtype_is_float(t->dtype)) {
        return td_err_set(err, TD_EDTYPE, "\"bernoulli_tensor_cpu_p_\" not implemented for '%s'",
                          td_dtype_cname(t->dtype));
    }
    *compute = *result = t->dtype;
    return 0;
}

struct bern_ctx {
    struct td_rng *rng;
    const double *prob; /* per element in C order, or NULL: p for all */
    bool prob_f32;      /* the probabilities are float32: bernoulli_distribution<float> */
    double p;
    enum td_dtype dt;
};

/* torch's bernoulli_distribution: a double uniform below p (a float32 one below a float32 p). */
static void bern_one(void *elem, void *ctx, int64_t i)
{
    struct bern_ctx *b = ctx;
    bool one;
    if (b->prob == NULL) {
        one = td_rng_uniform_f64(b->rng, 0.0, 1.0) < b->p;
    } else if (b->prob_f32) {
        one = td_rng_uniform_f32(b->rng, 0.0f, 1.0f) < (float)b->prob[i];
    } else {
        one = td_rng_uniform_f64(b->rng, 0.0, 1.0) < b->prob[i];
    }
    td_elem_store_f64(elem, b->dt, one ? 1.0 : 0.0);
}

/* The draw walks out in torch's order: C order for torch.bernoulli's new result, the strides'
** order for bernoulli_ in place. */
int td_fwd_bernoulli(struct td_tensor *out, const struct td_operand *in, int nin,
                     const struct td_op_args *a, enum td_dtype compute, struct td_err *err)
{
    (void)nin;
    (void)compute;
    struct bern_ctx b = {.rng = a->rng, .prob = NULL, .p = 0.5, .dt = out->dtype};
    struct td_tensor *v = NULL;
    int rc;
    if (a->has_max) {
        b.p = td_scalar_to_double(a->max);
        if (!(b.p >= 0 && b.p <= 1)) {
            return td_err_set(err, TD_EINVAL, "bernoulli_ expects p to be in [0, 1], but got p=%g",
                              b.p);
        }
    } else if (!a->inplace) {
        if ((rc = f64_copy(&v, in[0].t, a->quota, err)) != 0) {
            return rc;
        }
        b.prob = td_tensor_data(v);
        b.prob_f32 = in[0].t->dtype == TD_DTYPE_F32;
        for (int64_t i = 0; i < v->numel; i++) {
            if (!(b.prob[i] >= 0 && b.prob[i] <= 1)) {
                td_tensor_unref(v);
                return td_err_set(err, TD_EINVAL,
                                  "Expected p_in >= 0 && p_in <= 1 to be true, but got false.  "
                                  "(Could this error message be improved?  If so, please report "
                                  "an enhancement request to PyTorch.)");
            }
        }
    }
    if (a->rng == NULL) {
        td_tensor_unref(v);
        return no_generator(err);
    }
    if (b.prob != NULL) {
        rc = td_tensor_each(out, bern_one, &b, err); /* a new, contiguous result */
    } else {
        int perm[TD_MAX_DIMS];
        td_rng_walk_order(out, perm);
        struct td_tensor view = td_rng_permuted(out, perm);
        rc = td_tensor_each(&view, bern_one, &b, err);
    }
    td_tensor_unref(v);
    return rc;
}

/* ---- randperm(n, *, generator=None, dtype=torch.int64) ---- */

/* torch's randperm_cpu on an int64 scratch: below 2^32 / 20, for i in [0, n - 1) swap i with
** i + random() % (n - i); from there the inside-out shuffle with random64() % (i + 1). The result
** is cast to dtype when that is not int64. */
int td_make_randperm(struct td_tensor **out, const struct td_operand *in, int nin,
                     const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)in;
    (void)nin;
    enum td_dtype dt = a->has_dtype ? a->dtype : TD_DTYPE_I64;
    int64_t n = a->num_samples;
    int rc;
    if (n < 0) {
        return td_err_set(err, TD_EINVAL,
                          "Trying to create tensor with negative dimension %lld: [%lld]",
                          (long long)n, (long long)n);
    }
    if (dt == TD_DTYPE_BOOL) {
        return td_err_set(err, TD_EDTYPE, "\"randperm\" not implemented for 'Bool'");
    }
    if (dt == TD_DTYPE_F32 && n > ((int64_t)1 << 24) + 1) {
        return td_err_set(err, TD_EINVAL, "n cannot be greater than 2^24+1 for Float type.");
    }
    if (a->rng == NULL) {
        return no_generator(err);
    }
    struct td_tensor *perm = NULL;
    if ((rc = td_tensor_empty(&perm, TD_DTYPE_I64, &n, 1, q, err)) != 0) {
        return rc;
    }
    int64_t *v = td_tensor_data(perm);
    bool small = n < (int64_t)(UINT32_MAX / 20);
    if (small) {
        for (int64_t i = 0; i < n; i++) {
            v[i] = i;
        }
    }
    for (int64_t c = 0, end; c < n; c = end) {
        end = td_cancel_chunk_end(c, n);
        for (int64_t i = c; i < end; i++) {
            if (small) {
                if (i < n - 1) {
                    int64_t z = (int64_t)(td_rng_u32(a->rng) % (uint64_t)(n - i));
                    int64_t t = v[i];
                    v[i] = v[z + i];
                    v[z + i] = t;
                }
            } else {
                int64_t z = (int64_t)(td_rng_u64(a->rng) % (uint64_t)(i + 1));
                v[i] = i;
                v[i] = v[z];
                v[z] = i;
            }
        }
        if ((rc = td_cancel_check(err)) != 0) {
            td_tensor_unref(perm);
            return rc;
        }
    }
    if (dt == TD_DTYPE_I64) {
        *out = perm;
    } else {
        rc = td_tensor_empty(out, dt, &n, 1, q, err);
        if (rc == 0 && (rc = td_cast_copy(*out, perm, err)) != 0) {
            td_tensor_unref(*out);
            *out = NULL;
        }
        td_tensor_unref(perm);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

int td_cost_randperm(const struct td_operand *in, int nin, const struct td_op_args *a,
                     struct td_cost *c)
{
    (void)in;
    (void)nin;
    if (a->num_samples < 0) {
        return -1;
    }
    int64_t n = a->num_samples;
    c->written = td_sat_mul(n, 2);
    c->read = n;
    c->out_bytes = td_sat_mul(n, 8);
    c->temp_bytes = td_sat_mul(n, 8);
    return 0;
}

/* ---- torch.normal(mean, std, size=None, *, generator=None, dtype=None) ---- */

/* normal(Tensor, float) is NormalBackward1, normal(float, Tensor) NormalBackward2,
** normal(Tensor, Tensor) NormalBackward3. */
const char *td_grad_fn_normal_sample(const struct td_node *n)
{
    if (n->in[0].t != NULL && n->in[1].t != NULL) {
        return "NormalBackward3";
    }
    return n->in[0].t != NULL ? "NormalBackward1" : "NormalBackward2";
}

/* The result's dtype (mean's when it is a tensor, else std's, else dtype= or float32: a float)
** and shape (the tensors' broadcast shape, else size). */
static int normal_plan(const struct td_operand *in, int nin, const struct td_op_args *a,
                       enum td_dtype *dt, int64_t *shape, int *ndim, struct td_err *err)
{
    if (nin != 2) {
        return td_err_set(err, TD_EINVAL, "normal takes mean and std, got %d inputs", nin);
    }
    const struct td_tensor *m = in[0].t, *s = in[1].t;
    *dt = m != NULL   ? m->dtype
          : s != NULL ? s->dtype
                      : (a->has_dtype ? a->dtype : TD_DTYPE_DEFAULT_FLOAT);
    if (m != NULL && s != NULL) {
        return td_broadcast_shapes(m->shape, m->ndim, s->shape, s->ndim, shape, ndim, err);
    }
    if (m != NULL || s != NULL) {
        const struct td_tensor *t = m != NULL ? m : s;
        memcpy(shape, t->shape, sizeof(int64_t) * (size_t)t->ndim);
        *ndim = t->ndim;
        return 0;
    }
    if (!a->has_dims) {
        return td_err_set(err, TD_EINVAL, "normal(float mean, float std) needs a size");
    }
    memcpy(shape, a->dims, sizeof(int64_t) * (size_t)a->ndims);
    *ndim = a->ndims;
    return 0;
}

/* torch's draws and arithmetic through the tested broadcasting mul and add; each step's result
** comes back to the result's dtype, as torch's in-place mul_ and add_ do. */
int td_make_normal_sample(struct td_tensor **out, const struct td_operand *in, int nin,
                          const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    enum td_dtype dt;
    int64_t shape[TD_MAX_DIMS];
    int ndim, rc;
    if ((rc = normal_plan(in, nin, a, &dt, shape, &ndim, err)) != 0) {
        return rc;
    }
    if (in[1].t == NULL && !(td_scalar_to_double(in[1].s) >= 0)) { /* NaN too, as torch's */
        return td_err_set(err, TD_EINVAL, "normal expects std >= 0.0, but found std %g",
                          td_scalar_to_double(in[1].s));
    }
    if (!td_dtype_is_float(dt)) {
        return td_err_set(err, TD_EDTYPE, "\"normal_kernel_cpu\" not implemented for '%s'",
                          td_dtype_cname(dt));
    }
    if (in[1].t != NULL) {
        struct td_tensor *sv = NULL;
        if ((rc = f64_copy(&sv, in[1].t, q, err)) != 0) {
            return rc;
        }
        const double *d = td_tensor_data(sv);
        for (int64_t i = 0; i < sv->numel; i++) {
            if (!(d[i] >= 0)) {
                td_tensor_unref(sv);
                return td_err_set(err, TD_EINVAL, "normal expects all elements of std >= 0.0");
            }
        }
        td_tensor_unref(sv);
    }
    if (a->rng == NULL) {
        return no_generator(err);
    }
    /* torch: normal(m, s_float) draws with std s then adds m; the other tensor forms draw
    ** standard normals, multiply by std then add mean (in the result's dtype, in place);
    ** normal(m_float, s_float, size) draws with both. */
    const struct td_tensor *mt = in[0].t, *st = in[1].t;
    double zmean = mt == NULL && st == NULL ? td_scalar_to_double(in[0].s) : 0.0;
    double zstd = st == NULL ? td_scalar_to_double(in[1].s) : 1.0;
    struct td_tensor *z = NULL;
    if ((rc = td_tensor_empty(&z, dt, shape, ndim, q, err)) != 0) {
        return rc;
    }
    if ((rc = td_rng_fill_normal(z, NULL, zmean, zstd, a->rng, err)) != 0) {
        td_tensor_unref(z);
        return rc;
    }
    for (int step = 0; step < 2 && rc == 0; step++) {
        struct td_tensor *r = NULL;
        if (step == 0 && st == NULL) {
            continue;
        }
        if (step == 1 && mt == NULL && st == NULL) {
            continue;
        }
        rc = td_bw2(step == 0 ? TD_OP_MUL : TD_OP_ADD, td_t(z), in[step == 0 ? 1 : 0], q, &r, err);
        if (rc == 0 && r->dtype != dt) {
            struct td_tensor *cast = NULL;
            rc = td_tensor_empty(&cast, dt, r->shape, r->ndim, q, err);
            if (rc == 0 && (rc = td_cast_copy(cast, r, err)) != 0) {
                td_tensor_unref(cast);
            }
            td_tensor_unref(r);
            r = rc == 0 ? cast : NULL;
        }
        td_tensor_unref(z);
        z = r;
    }
    if (rc != 0) {
        td_tensor_unref(z);
        return rc;
    }
    *out = z;
    return 0;
}

/* torch's derivative of every normal form is zero for mean and for std. */
int td_bw_normal_sample(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                        struct td_quota *q, struct td_err *err)
{
    for (int i = 0; i < 2 && i < n->nin; i++) {
        int rc;
        if (n->in[i].t != NULL &&
            (rc = td_bw2(TD_OP_MUL, td_t(g), td_s(td_scalar_i(0)), q, &gin[i], err)) != 0) {
            return rc;
        }
    }
    return 0;
}

/* The result's n elements written three times (z, std * z, + mean), every tensor input read once
** per element, two temporaries of n. */
int td_cost_normal_sample(const struct td_operand *in, int nin, const struct td_op_args *a,
                          struct td_cost *c)
{
    enum td_dtype dt;
    int64_t shape[TD_MAX_DIMS];
    int ndim;
    if (normal_plan(in, nin, a, &dt, shape, &ndim, NULL) != 0 ||
        td_shape_check(shape, ndim, td_dtype_is_valid((int)dt) ? dt : TD_DTYPE_F64, NULL, NULL,
                       NULL) != 0) {
        return -1;
    }
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        n = td_sat_mul(n, shape[i]);
    }
    for (int i = 0; i < 2; i++) {
        if (in[i].t != NULL) {
            c->read = td_sat_add(c->read, td_sat_add(n, in[i].t->numel));
        }
    }
    c->written = td_sat_mul(n, 3);
    c->out_bytes = td_sat_mul(n, 8);
    c->temp_bytes = td_sat_add(td_sat_mul(n, 16), 0);
    return 0;
}

/* ---- random_(from=None, to=None, *, generator=None) ---- */

struct random_ctx {
    struct td_rng *rng;
    enum td_dtype dt;
    int kind;       /* 0: random_(); 1: [from, from + range); 2: the full int64 range */
    uint64_t range; /* kind 1 */
    int64_t from;
};

/* torch's uniform_int_distribution (kind 0), uniform_int_from_to_distribution (1) and
** uniform_int_full_range_distribution (2): random64() for int64 and float64 results (and, for
** a range of 2^32 or more, float32), else random(). */
static void random_one(void *elem, void *ctx, int64_t i)
{
    (void)i;
    struct random_ctx *c = ctx;
    bool wide = c->kind == 2 ||
                (c->kind == 0 ? c->dt == TD_DTYPE_I64 || c->dt == TD_DTYPE_F64
                              : c->range >= ((uint64_t)1 << 32) && c->dt != TD_DTYPE_I32 &&
                                    c->dt != TD_DTYPE_BOOL);
    uint64_t w = wide ? td_rng_u64(c->rng) : td_rng_u32(c->rng);
    int64_t v;
    if (c->kind == 1) {
        v = (int64_t)(w % c->range + (uint64_t)c->from);
    } else if (c->kind == 2) {
        v = (int64_t)w;
    } else {
        switch (c->dt) {
        case TD_DTYPE_BOOL: v = (int64_t)(w & 1); break;
        case TD_DTYPE_I32: v = (int64_t)(w % ((uint64_t)INT32_MAX + 1)); break;
        case TD_DTYPE_I64: v = (int64_t)(w % ((uint64_t)INT64_MAX + 1)); break;
        case TD_DTYPE_F32: v = (int64_t)(w % (((uint64_t)1 << 24) + 1)); break;
        default: v = (int64_t)(w % (((uint64_t)1 << 53) + 1)); break;
        }
    }
    if (c->dt == TD_DTYPE_I64) {
        *(int64_t *)elem = v;
    } else {
        td_elem_store_f64(elem, c->dt, (double)v);
    }
}

/* The largest value random_ may give a dtype: its max, or 2^digits for floats. */
static int64_t random_top(enum td_dtype dt)
{
    switch (dt) {
    case TD_DTYPE_BOOL: return 1;
    case TD_DTYPE_I32: return INT32_MAX;
    case TD_DTYPE_F32: return (int64_t)1 << 24;
    case TD_DTYPE_F64: return (int64_t)1 << 53;
    default: return INT64_MAX;
    }
}

/* torch's check_from_to_in_range: integer bounds name the dtype as its TypeMeta does; floats
** are only held to their finite range, which an int64 never leaves. */
static int random_bounds(int64_t v, const char *name, enum td_dtype dt, struct td_err *err)
{
    if (td_dtype_is_float(dt)) {
        return 0;
    }
    int64_t top = random_top(dt), bottom = dt == TD_DTYPE_BOOL  ? 0
                                           : dt == TD_DTYPE_I32 ? INT32_MIN
                                                                : INT64_MIN;
    if (v < bottom || v > top) {
        return td_err_set(err, TD_EINVAL, "%s is out of bounds for %s", name,
                          dt == TD_DTYPE_BOOL  ? "bool"
                          : dt == TD_DTYPE_I32 ? "int"
                                               : "long int");
    }
    return 0;
}

/* The float value nearest below, as torch's update_from / update_to move a bound the dtype
** cannot hold: from up to the next value it can, to down below the value to - 1 rounds to. */
static double float_round(enum td_dtype dt, int64_t v)
{
    return dt == TD_DTYPE_F32 ? (double)(float)v : (double)v;
}

static int64_t update_bound(enum td_dtype dt, int64_t v, bool is_from)
{
    int digits = dt == TD_DTYPE_F32 ? 24 : 53;
    int64_t near = is_from ? v + 1 : v - 1;
    double r = float_round(dt, near);
    int64_t rounded = r >= 9223372036854775807.0 ? INT64_MAX : (int64_t)r;
    if (is_from ? rounded < v : rounded >= v) {
        uint64_t m = near < 0 ? (uint64_t)0 - (uint64_t)near : (uint64_t)near;
        int n = 0;
        while (m >>= 1) {
            n++;
        }
        int64_t step = n - digits + 1 >= 0 ? (int64_t)1 << (n - digits + 1) : 0;
        v = is_from ? rounded + step : rounded - step;
    }
    return v;
}

/* torch's random_impl and random_from_to_impl: random_() gives [0, top] (top: the dtype's max,
** 2^24 / 2^53 for floats); random_(from, to) gives [from, to); random_(from, None)
** [from, top] (from = int64's min: every int64). The draw walks self in torch's order. */
int td_fwd_random(struct td_tensor *out, const struct td_operand *in, int nin,
                  const struct td_op_args *a, enum td_dtype compute, struct td_err *err)
{
    (void)in;
    (void)nin;
    (void)compute;
    enum td_dtype dt = out->dtype;
    struct random_ctx c = {.rng = a->rng, .dt = dt, .kind = 0};
    int rc;
    if (a->has_max) {
        int64_t from = a->has_min ? td_scalar_to_int(a->min) : 0, to = td_scalar_to_int(a->max);
        if (from >= to) {
            return td_err_set(err, TD_EINVAL,
                              "random_ expects 'from' to be less than 'to', but got from=%lld "
                              ">= to=%lld",
                              (long long)from, (long long)to);
        }
        if (td_dtype_is_float(dt)) {
            from = update_bound(dt, from, true);
            to = update_bound(dt, to, false);
            if (from >= to) {
                return td_err_set(err, TD_EINVAL,
                                  "random_ expects 'from' casted to dtype to be less than 'to' "
                                  "casted to dtype, but got from=%lld >= to=%lld",
                                  (long long)from, (long long)to);
            }
        }
        if ((rc = random_bounds(from, "from", dt, err)) != 0 ||
            (rc = random_bounds(to - 1, "to - 1", dt, err)) != 0) {
            return rc;
        }
        c.kind = 1;
        c.from = from;
        c.range = (uint64_t)to - (uint64_t)from;
    } else if (a->has_min) {
        int64_t from = td_scalar_to_int(a->min);
        if (from == INT64_MIN) {
            if (dt != TD_DTYPE_I64 && !td_dtype_is_float(dt)) {
                return td_err_set(err, TD_EINVAL,
                                  "random_full_64_bits_range_kernel_cpu handles only int64, "
                                  "double, float and bfloat16");
            }
            c.kind = 2;
        } else {
            int64_t top = random_top(dt);
            if (td_dtype_is_float(dt)) {
                from = update_bound(dt, from, true);
            }
            if (td_dtype_is_float(dt) && !(from < top)) {
                return td_err_set(err, TD_EINVAL,
                                  "random_ expects 'from' casted to dtype to be less than or "
                                  "equal to 'to_inc' casted to dtype, but got from=%lld > "
                                  "to_inc=%lld",
                                  (long long)from, (long long)top);
            }
            if ((rc = random_bounds(from, "from", dt, err)) != 0 ||
                (rc = random_bounds(top, "to - 1", dt, err)) != 0) {
                return rc;
            }
            c.kind = 1;
            c.from = from;
            c.range = (uint64_t)top - (uint64_t)from + 1;
        }
    }
    if (a->rng == NULL) {
        return no_generator(err);
    }
    int perm[TD_MAX_DIMS];
    td_rng_walk_order(out, perm);
    struct td_tensor view = td_rng_permuted(out, perm);
    return td_tensor_each(&view, random_one, &c, err);
}

/* ---- rng_state(*, generator=None) and set_rng_state(new_state, *, generator=None) ---- */

/* The generator's state: torch's TD_RNG_STATE_BYTES of get_state() as an int64 tensor of
** TD_RNG_STATE_BYTES / 8 words (tensord has no uint8; the bytes are torch's). */
static int state_tensor(struct td_tensor **out, const struct td_rng *r, struct td_quota *q,
                        struct td_err *err)
{
    int64_t n = TD_RNG_STATE_BYTES / 8;
    int rc = td_tensor_empty(out, TD_DTYPE_I64, &n, 1, q, err);
    if (rc == 0) {
        td_rng_get_state(r, td_tensor_data(*out));
    }
    return rc;
}

/* With seed (OpArgs min, an int64 standing for the uint64 seed): the state of a generator
** freshly seeded with it, which a client stores as a new Generator's (no generator changes). */
int td_make_rng_state(struct td_tensor **out, const struct td_operand *in, int nin,
                      const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)in;
    (void)nin;
    if (a->has_min) {
        struct td_rng fresh;
        td_rng_seed(&fresh, (uint64_t)td_scalar_to_int(a->min));
        return state_tensor(out, &fresh, q, err);
    }
    if (a->rng == NULL) {
        return no_generator(err);
    }
    return state_tensor(out, a->rng, q, err);
}

/* Replaces the generator's state with new_state's (an int64 tensor of the state's words, any
** strides), with torch's checks; the result is the state as rng_state gives it. */
int td_make_set_rng_state(struct td_tensor **out, const struct td_operand *in, int nin,
                          const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    const struct td_tensor *t = in[0].t;
    if (t == NULL || t->dtype != TD_DTYPE_I64 || t->ndim != 1 ||
        t->numel != TD_RNG_STATE_BYTES / 8) {
        return td_err_set(err, TD_EINVAL,
                          "set_rng_state expects a generator state (torch's %d-byte CPU "
                          "generator state as an int64 tensor of %d elements)",
                          TD_RNG_STATE_BYTES, TD_RNG_STATE_BYTES / 8);
    }
    if (a->rng == NULL) {
        return no_generator(err);
    }
    int64_t words[TD_RNG_STATE_BYTES / 8];
    td_tensor_copy_out_range(t, 0, t->numel, words);
    struct td_rng next;
    int rc = td_rng_set_state(&next, (const uint8_t *)words, TD_RNG_STATE_BYTES, err);
    if (rc != 0 || (rc = state_tensor(out, &next, q, err)) != 0) {
        return rc;
    }
    *a->rng = next;
    return 0;
}

/* Writes (and reads) the state's words. */
int td_cost_rng_state(const struct td_operand *in, int nin, const struct td_op_args *a,
                      struct td_cost *c)
{
    (void)in;
    (void)nin;
    (void)a;
    c->read = TD_RNG_STATE_BYTES / 8;
    c->written = TD_RNG_STATE_BYTES / 8;
    c->out_bytes = TD_RNG_STATE_BYTES;
    return 0;
}
