/* server/core/ops/matmul.c — torch.matmul in all of its rank combinations.
**
** Every case reduces to a batch of (n x k) @ (k x m) products: a 1-D left operand is a 1 x k row,
** a 1-D right operand a k x 1 column, leading dims are broadcast batch dims. Errors follow what
** torch 1.13 reports for each combination, which depends on how torch folds the operands
** (dot, mv, mm, or bmm after broadcasting). Float products go to cblas_sgemm/cblas_dgemm with
** whichever transpose flag lets BLAS read the operand in place; integer products use a plain
** loop with wrapping arithmetic.
*/
#include <cblas.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "../../base/checked.h"
#include "../cancel.h"
#include "../parallel.h"
#include "family.h"

const char *td_blas_describe(void)
{
    static _Thread_local char text[256];
    /* the threads a product runs on: the daemon's (large ones split by rows), each BLAS call
    ** on one (bench/run.py gives its torch anchors as many) */
    snprintf(text, sizeof text, "%s; core %s; %s per BLAS call; %d threads", openblas_get_config(),
             openblas_get_corename(), openblas_get_num_threads() == 1 ? "one thread" : "threads",
             td_parallel_threads());
    return text;
}

/* The matrix geometry of one operand: batch dims, rows, cols and their strides. */
struct mat {
    int nbatch;
    int64_t bshape[TD_MAX_DIMS], bstride[TD_MAX_DIMS];
    int64_t rows, cols, rs, cs;
};

static void as_matrix(const struct td_tensor *t, bool left, struct mat *m)
{
    if (t->ndim == 1) {
        m->nbatch = 0;
        if (left) {
            m->rows = 1, m->cols = t->shape[0], m->rs = 0, m->cs = t->strides[0];
        } else {
            m->rows = t->shape[0], m->cols = 1, m->rs = t->strides[0], m->cs = 0;
        }
        return;
    }
    m->nbatch = t->ndim - 2;
    for (int i = 0; i < m->nbatch; i++) {
        m->bshape[i] = t->shape[i];
        m->bstride[i] = t->strides[i];
    }
    m->rows = t->shape[t->ndim - 2];
    m->cols = t->shape[t->ndim - 1];
    m->rs = t->strides[t->ndim - 2];
    m->cs = t->strides[t->ndim - 1];
}

/* A product of sizes, saturating (error messages report batch sizes that may not fit). */
static int64_t prod(const int64_t *s, int n)
{
    int64_t p = 1;
    for (int i = 0; i < n; i++) {
        p = td_sat_mul(p, s[i]);
    }
    return p;
}

int td_shape_matmul(const struct td_operand *in, int nin, const struct td_op_args *args,
                    int64_t *shape, int *ndim, struct td_err *err)
{
    (void)nin;
    (void)args;
    const struct td_tensor *a = in[0].t, *b = in[1].t;
    if (a == NULL || b == NULL) {
        return td_err_set(err, TD_EINVAL, "matmul(): argument must be a Tensor, not a number");
    }
    int da = a->ndim, db = b->ndim;
    if (da == 0 || db == 0) {
        return td_err_set(err, TD_ESHAPE,
                          "both arguments to matmul need to be at least 1D, but "
                          "they are %dD and %dD",
                          da, db);
    }
    int64_t ka = a->shape[da - 1], kb = db == 1 ? b->shape[0] : b->shape[db - 2];
    if (da == 1 && db == 1) {
        if (ka != kb) {
            return td_err_set(err, TD_ESHAPE,
                              "inconsistent tensor size, expected tensor [%lld] "
                              "and src [%lld] to have the same number of elements, but got %lld "
                              "and %lld elements respectively",
                              (long long)ka, (long long)kb, (long long)ka, (long long)kb);
        }
        *ndim = 0;
        return 0;
    }
    if (ka != kb) {
        int64_t rows_a = da == 1 ? 1 : prod(a->shape, da - 1);
        if (db == 1) { /* mv, with a's leading dims folded into its rows */
            return td_err_set(err, TD_ESHAPE, "size mismatch, got %lld, %lldx%lld,%lld",
                              (long long)rows_a, (long long)rows_a, (long long)ka, (long long)kb);
        }
        if (db == 2) { /* mm, likewise folded */
            return td_err_set(err, TD_ESHAPE,
                              "mat1 and mat2 shapes cannot be multiplied "
                              "(%lldx%lld and %lldx%lld)",
                              (long long)rows_a, (long long)ka, (long long)kb,
                              (long long)b->shape[1]);
        }
        if (da <= 2) { /* torch folds b's transpose instead: (b.mT @ a.mT).mT */
            int64_t bm = prod(b->shape, db - 2) * b->shape[db - 1];
            if (da == 1) {
                return td_err_set(err, TD_ESHAPE, "size mismatch, got %lld, %lldx%lld,%lld",
                                  (long long)bm, (long long)bm, (long long)kb, (long long)ka);
            }
            return td_err_set(err, TD_ESHAPE,
                              "mat1 and mat2 shapes cannot be multiplied "
                              "(%lldx%lld and %lldx%lld)",
                              (long long)bm, (long long)kb, (long long)ka, (long long)a->shape[0]);
        }
    }
    /* Batched: broadcast the batch dims (torch's message, over batch dims only). */
    int64_t batch[TD_MAX_DIMS];
    int nb = 0, rc;
    int nba = da > 2 ? da - 2 : 0, nbb = db > 2 ? db - 2 : 0;
    if ((rc = td_broadcast_shapes(a->shape, nba, b->shape, nbb, batch, &nb, err)) != 0) {
        return rc;
    }
    if (ka != kb) {
        long long bsz = (long long)prod(batch, nb);
        return td_err_set(err, TD_ESHAPE,
                          "Expected size for first two dimensions of batch2 "
                          "tensor to be: [%lld, %lld] but got: [%lld, %lld].",
                          bsz, (long long)ka, bsz, (long long)kb);
    }
    int n = 0;
    for (int i = 0; i < nb; i++) {
        shape[n++] = batch[i];
    }
    if (da > 1) {
        shape[n++] = a->shape[da - 2];
    }
    if (db > 1) {
        shape[n++] = b->shape[db - 1];
    }
    *ndim = n;
    return 0;
}

int td_dtype_rule_matmul(const struct td_operand *in, int nin, const struct td_op_args *args,
                         enum td_dtype *compute, enum td_dtype *result, struct td_err *err)
{
    /* torch checks shapes before dtypes. */
    int64_t shape[TD_MAX_DIMS];
    int ndim, rc;
    if ((rc = td_shape_matmul(in, nin, args, shape, &ndim, err)) != 0) {
        return rc;
    }
    const struct td_tensor *a = in[0].t, *b = in[1].t;
    int da = a->ndim, db = b->ndim;
    if (a->dtype != b->dtype) {
        if (da == 1 && db == 1) {
            return td_err_set(err, TD_EDTYPE,
                              "dot : expected both vectors to have same dtype, "
                              "but found %s and %s",
                              td_dtype_cname(a->dtype), td_dtype_cname(b->dtype));
        }
        /* With a 1-D or 2-D left operand and a batched right one, torch multiplies the
        ** transposes, so the right operand's dtype is the expected one. */
        bool swapped = da <= 2 && db >= 3;
        return td_err_set(err, TD_EDTYPE, "expected scalar type %s but found %s",
                          td_dtype_cname(swapped ? b->dtype : a->dtype),
                          td_dtype_cname(swapped ? a->dtype : b->dtype));
    }
    if (a->dtype == TD_DTYPE_BOOL) {
        const char *kernel = da == 1 && db == 1                ? "dot"
                             : db == 1 || (da == 1 && db >= 3) ? "addmv_impl_cpu"
                             : da >= 3 && db >= 3              ? "bmm"
                                                               : "addmm_impl_cpu_";
        return td_err_set(err, TD_EDTYPE, "\"%s\" not implemented for 'Bool'", kernel);
    }
    *compute = *result = a->dtype;
    return 0;
}

/* How BLAS can read a rows x cols operand with strides (rs, cs) in place: row-major as is
** (unit column stride) or transposed (unit row stride), with a valid leading dimension. */
static bool blas_layout(int64_t rows, int64_t cols, int64_t rs, int64_t cs, CBLAS_TRANSPOSE *tr,
                        int64_t *ld)
{
    if ((cs == 1 || cols == 1) && (rows == 1 || rs >= (cols > 1 ? cols : 1))) {
        *tr = CblasNoTrans;
        *ld = rows == 1 ? (cols > 1 ? cols : 1) : rs;
        return true;
    }
    if ((rs == 1 || rows == 1) && (cols == 1 || cs >= (rows > 1 ? rows : 1))) {
        *tr = CblasTrans;
        *ld = cols == 1 ? (rows > 1 ? rows : 1) : cs;
        return true;
    }
    return false;
}

/* Multiply-adds per BLAS call between two cancel checks: tens of milliseconds at BLAS speed,
** and large enough that products up to 1024^3 stay one call. */
#define GEMM_BLOCK_FLOPS ((int64_t)1 << 30)

/* BLAS runs one thread in the daemon (OpenBLAS 0.3.21 has no per-call thread count, and its
** workers' hand-over stalls on a loaded machine); a product of at least this many
** multiply-adds is split into blocks of rows of c, one single-threaded BLAS call each, across
** the daemon's compute threads (td_parallel_blocks). Smaller ones stay one call on the calling
** thread. See docs/performance.md, issue 19, third round. */
#ifndef TD_GEMM_SPLIT_MACS
#define TD_GEMM_SPLIT_MACS ((int64_t)1 << 25)
#endif

/* Blocks of rows start at multiples of this. OpenBLAS's kernels round differently in the
** narrow tail of a call than in its full-width groups (rows of a row-major c are its columns,
** taken in groups of 12 floats on this Zen core, 2 doubles), so a block of rows is the same
** bits as those rows of one call only when it starts at a multiple of the group; 48 covers
** 4, 6, 8, 12, 16 and 24. Blocks of columns never give one call's bits in float32 (its column
** blocking depends on the call's width), so columns are never split, nor is k. */
#define GEMM_SPLIT_ROWS 48

/* Each block is its own BLAS call, and each call packs all of b again (OpenBLAS packs the
** operand it streams once per call): for 4096^3, blocks of 96 rows spent 22 % of the kernel's
** time on it again (perf: sgemm_itcopy 9.7 % of the daemon's samples against the kernel's
** 44 %), the cost falling as 1/rows. So a split block has at least this many rows (~7 % at
** 4096^3), as the unsplit path's blocks do (they had 256), even when that passes
** GEMM_BLOCK_FLOPS:
** 288 x 4096 x 4096 is ~0.13 s of one core here between cancel checks. See docs/performance.md,
** issue 19, fourth round. */
#define GEMM_SPLIT_MIN_ROWS 288

/* One BLAS call: `rows` rows of c from row r0, the whole k and m. */
static void gemm_call(enum td_dtype dt, int64_t r0, int64_t rows, int64_t k, int64_t m,
                      const char *a, int64_t ars, int64_t acs, const char *b, int64_t brs,
                      int64_t bcs, char *c, double beta)
{
    int64_t es = (int64_t)td_dtype_size(dt);
    CBLAS_TRANSPOSE ta = CblasNoTrans, tb = CblasNoTrans;
    int64_t lda = 1, ldb = 1;
    const char *ar = a + r0 * ars * es;
    blas_layout(rows, k, ars, acs, &ta, &lda);
    blas_layout(k, m, brs, bcs, &tb, &ldb);
    char *cp = c + r0 * m * es;
    if (dt == TD_DTYPE_F32) {
        cblas_sgemm(CblasRowMajor, ta, tb, (int)rows, (int)m, (int)k, 1.0f, (const float *)ar,
                    (int)lda, (const float *)b, (int)ldb, (float)beta, (float *)cp, (int)m);
    } else {
        cblas_dgemm(CblasRowMajor, ta, tb, (int)rows, (int)m, (int)k, 1.0, (const double *)ar,
                    (int)lda, (const double *)b, (int)ldb, beta, (double *)cp, (int)m);
    }
}

struct gemm_split {
    enum td_dtype dt;
    int64_t n, k, m, step; /* step: rows per block */
    const char *a, *b;
    int64_t ars, acs, brs, bcs;
    char *c;
    double beta;
};

static void gemm_block(int64_t block, void *ctx)
{
    const struct gemm_split *s = ctx;
    int64_t r0 = block * s->step, rows = s->n - r0 < s->step ? s->n - r0 : s->step;
    gemm_call(s->dt, r0, rows, s->k, s->m, s->a, s->ars, s->acs, s->b, s->brs, s->bcs, s->c,
              s->beta);
}

/* One (n x k) @ (k x m) product into a contiguous n x m block; blas_layout accepted both. A BLAS
** call cannot be interrupted, so a large product runs as blocks of rows of a, with a cancel
** check between blocks (each row of c depends only on its row of a). */
static int gemm_float_beta(enum td_dtype dt, int64_t n, int64_t k, int64_t m, const char *a,
                           int64_t ars, int64_t acs, const char *b, int64_t brs, int64_t bcs,
                           char *c, double beta, struct td_err *err)
{
    int64_t macs = td_sat_mul(td_sat_mul(n, k), m);
    int threads = td_parallel_threads();
    if (threads > 1 && macs >= TD_GEMM_SPLIT_MACS && n >= 2 * GEMM_SPLIT_ROWS) {
        /* As many blocks as threads, or a multiple of it when one block would pass the cancel
        ** granularity; each a whole number of GEMM_SPLIT_ROWS rows but the last, and at least
        ** GEMM_SPLIT_MIN_ROWS unless that would leave a thread without a block. */
        int64_t per = GEMM_BLOCK_FLOPS * threads;
        int64_t nblocks = threads * (macs / per + (macs % per != 0));
        int64_t step = n / nblocks + (n % nblocks != 0);
        int64_t most = n / threads + (n % threads != 0); /* rows per block with one per thread */
        step = step < GEMM_SPLIT_MIN_ROWS ? GEMM_SPLIT_MIN_ROWS : step;
        step = step > most ? most : step;
        step = (step + GEMM_SPLIT_ROWS - 1) / GEMM_SPLIT_ROWS * GEMM_SPLIT_ROWS;
        struct gemm_split s = {.dt = dt,
                               .n = n,
                               .k = k,
                               .m = m,
                               .step = step,
                               .a = a,
                               .b = b,
                               .ars = ars,
                               .acs = acs,
                               .brs = brs,
                               .bcs = bcs,
                               .c = c,
                               .beta = beta};
        return td_parallel_blocks(n / step + (n % step != 0), gemm_block, &s, err);
    }
    /* Blocks for the cancel checks, at multiples of GEMM_SPLIT_ROWS rows as the split's are, so
    ** that a product over 2^30 multiply-adds is one call's bits here too (blocks of 256 rows
    ** were not: rows 252-255 ended a call in OpenBLAS's narrow tail). */
    int64_t per_row = td_sat_mul(k, m), block = GEMM_BLOCK_FLOPS / (per_row > 0 ? per_row : 1);
    block = block / GEMM_SPLIT_ROWS * GEMM_SPLIT_ROWS;
    block = block < GEMM_SPLIT_MIN_ROWS ? GEMM_SPLIT_MIN_ROWS : block;
    for (int64_t r = 0; r < n; r += block) {
        int64_t rows = n - r < block ? n - r : block;
        gemm_call(dt, r, rows, k, m, a, ars, acs, b, brs, bcs, c, beta);
        if (r + rows < n) {
            int rc = td_cancel_check(err);
            if (rc != 0) {
                return rc;
            }
        }
    }
    return 0;
}

/* c = a @ b (c's contents are not read). */
static int gemm_float(enum td_dtype dt, int64_t n, int64_t k, int64_t m, const char *a, int64_t ars,
                      int64_t acs, const char *b, int64_t brs, int64_t bcs, char *c,
                      struct td_err *err)
{
    return gemm_float_beta(dt, n, k, m, a, ars, acs, b, brs, bcs, c, 0.0, err);
}

/* Integer products: a plain loop in wrapping arithmetic. An expanded operand can make k huge
** with no memory behind it, so the inner sum runs in chunks with a cancel check between
** chunks once enough products have been done. */
#define GEMM_INT(T, UT)                                                                            \
    static int gemm_##T(int64_t n, int64_t k, int64_t m, const T *a, int64_t ars, int64_t acs,     \
                        const T *b, int64_t brs, int64_t bcs, T *c, struct td_err *err)            \
    {                                                                                              \
        int64_t since_check = 0;                                                                   \
        for (int64_t i = 0; i < n; i++) {                                                          \
            for (int64_t j = 0; j < m; j++) {                                                      \
                UT acc = 0;                                                                        \
                for (int64_t p0 = 0, pend; p0 < k; p0 = pend) {                                    \
                    pend = td_cancel_chunk_end(p0, k);                                             \
                    for (int64_t p = p0; p < pend; p++) {                                          \
                        acc += (UT)a[i * ars + p * acs] * (UT)b[p * brs + j * bcs];                \
                    }                                                                              \
                    if ((since_check += pend - p0 + 1) >= TD_CANCEL_CHUNK) {                       \
                        since_check = 0;                                                           \
                        int rc = td_cancel_check(err);                                             \
                        if (rc != 0) {                                                             \
                            return rc;                                                             \
                        }                                                                          \
                    }                                                                              \
                }                                                                                  \
                c[i * m + j] = (T)acc;                                                             \
            }                                                                                      \
        }                                                                                          \
        return 0;                                                                                  \
    }
GEMM_INT(int32_t, uint32_t)
GEMM_INT(int64_t, uint64_t)

static bool blas_ok(int64_t rows, int64_t cols, int64_t rs, int64_t cs)
{
    CBLAS_TRANSPOSE tr;
    int64_t ld;
    return blas_layout(rows, cols, rs, cs, &tr, &ld);
}

int64_t td_matmul_temp_bytes(const struct td_tensor *a, const struct td_tensor *b)
{
    if (a->ndim < 1 || b->ndim < 1 || !td_dtype_is_float(a->dtype) || a->dtype != b->dtype) {
        return 0;
    }
    struct mat A, B;
    as_matrix(a, true, &A);
    as_matrix(b, false, &B);
    int64_t es = (int64_t)td_dtype_size(a->dtype), n = 0;
    if (!blas_ok(A.rows, A.cols, A.rs, A.cs)) {
        n = td_sat_add(n, a->numel);
    }
    if (!blas_ok(B.rows, B.cols, B.rs, B.cs)) {
        n = td_sat_add(n, b->numel);
    }
    return td_sat_mul(n, es);
}

int td_fwd_matmul(struct td_tensor *out, const struct td_operand *in, int nin,
                  const struct td_op_args *args, enum td_dtype compute, struct td_err *err)
{
    (void)nin;
    struct td_quota *q = args != NULL ? args->quota : NULL;
    struct td_tensor *ta = in[0].t, *tb = in[1].t, *ca = NULL, *cb = NULL;
    int rc = 0;
    if (out->numel == 0) {
        return 0;
    }
    struct mat A, B;
    as_matrix(ta, true, &A);
    as_matrix(tb, false, &B);
    int64_t n = A.rows, k = A.cols, m = B.cols;
    if (k == 0) {
        memset(td_tensor_data(out), 0, td_tensor_nbytes(out));
        return 0;
    }
    bool fl = td_dtype_is_float(compute);
    /* Copy an operand BLAS cannot read in place to a contiguous one. The copy is the operand's
    ** logical size (an expanded [1, 2^28] view is a GiB of floats), so it is charged to the
    ** caller's quota while it lives, like any tensor. */
    if (fl && !blas_ok(A.rows, A.cols, A.rs, A.cs)) {
        if ((rc = td_tensor_empty(&ca, compute, ta->shape, ta->ndim, q, err)) != 0 ||
            (rc = td_cast_copy(ca, ta, err)) != 0) {
            goto out;
        }
        ta = ca;
        as_matrix(ta, true, &A);
    }
    if (fl && !blas_ok(B.rows, B.cols, B.rs, B.cs)) {
        if ((rc = td_tensor_empty(&cb, compute, tb->shape, tb->ndim, q, err)) != 0 ||
            (rc = td_cast_copy(cb, tb, err)) != 0) {
            goto out;
        }
        tb = cb;
        as_matrix(tb, false, &B);
    }
    size_t es = td_dtype_size(compute);
    const char *abase = td_tensor_data(ta), *bbase = td_tensor_data(tb);
    char *cbase = td_tensor_data(out);
    /* Batch dims of the output: everything before its matrix dims. */
    int nb = out->ndim - (ta->ndim > 1) - (tb->ndim > 1);
    int64_t nbatch = prod(out->shape, nb);
    /* a's rows fold into one big product when b has no batch dims and a's batches are evenly
    ** strided rows (the common batch @ weight case). */
    if (B.nbatch == 0 && A.nbatch > 0 && A.cs == 1 && td_tensor_is_contiguous(ta)) {
        n = td_sat_mul(n, nbatch);
        A.rs = k;
        nbatch = 1;
    }
    int64_t idx[TD_MAX_DIMS] = {0}, since_check = 0;
    for (int64_t bi = 0; bi < nbatch && rc == 0; bi++) {
        int64_t aoff = 0, boff = 0;
        for (int d = 0; d < nb; d++) {
            int la = d - (nb - A.nbatch), lb = d - (nb - B.nbatch);
            if (la >= 0 && A.bshape[la] != 1) {
                aoff += idx[d] * A.bstride[la];
            }
            if (lb >= 0 && B.bshape[lb] != 1) {
                boff += idx[d] * B.bstride[lb];
            }
        }
        const char *ap = abase + aoff * (int64_t)es, *bp = bbase + boff * (int64_t)es;
        char *cp = cbase + bi * n * m * (int64_t)es;
        switch (compute) {
        case TD_DTYPE_F32:
        case TD_DTYPE_F64:
            rc = gemm_float(compute, n, k, m, ap, A.rs, A.cs, bp, B.rs, B.cs, cp, err);
            break;
        case TD_DTYPE_I32:
            rc = gemm_int32_t(n, k, m, (const int32_t *)ap, A.rs, A.cs, (const int32_t *)bp, B.rs,
                              B.cs, (int32_t *)cp, err);
            break;
        default:
            rc = gemm_int64_t(n, k, m, (const int64_t *)ap, A.rs, A.cs, (const int64_t *)bp, B.rs,
                              B.cs, (int64_t *)cp, err);
            break;
        }
        /* Many small products: a check per chunk of work, not per product. */
        since_check = td_sat_add(since_check, td_sat_mul(td_sat_mul(n, m), k));
        if (rc == 0 && since_check >= TD_CANCEL_CHUNK) {
            since_check = 0;
            rc = td_cancel_check(err);
        }
        for (int d = nb - 1; d >= 0; d--) {
            if (++idx[d] < out->shape[d]) {
                break;
            }
            idx[d] = 0;
        }
    }
out:
    td_tensor_unref(ca);
    td_tensor_unref(cb);
    return rc;
}

int td_linear_addmm(struct td_tensor **out, const struct td_tensor *x, const struct td_tensor *w,
                    const struct td_tensor *b, struct td_quota *q, struct td_err *err)
{
    enum td_dtype dt = x->dtype;
    if ((dt != TD_DTYPE_F32 && dt != TD_DTYPE_F64) || w->dtype != dt || b->dtype != dt ||
        x->ndim != 2 || w->ndim != 2 || b->ndim != 1) {
        return 1;
    }
    int64_t n = x->shape[0], k = x->shape[1], m = w->shape[0];
    if (w->shape[1] != k || b->shape[0] != m || n <= 0 || k <= 0 || m <= 0 || n > INT_MAX ||
        k > INT_MAX || m > INT_MAX) {
        return 1; /* shape errors and empty products: the general path's words and results */
    }
    /* x is n x k as is; W.T is k x m with W's strides swapped. */
    CBLAS_TRANSPOSE tr;
    int64_t lda, ldb;
    if (!blas_layout(n, k, x->strides[0], x->strides[1], &tr, &lda) ||
        !blas_layout(k, m, w->strides[1], w->strides[0], &tr, &ldb) || lda > INT_MAX ||
        ldb > INT_MAX) {
        return 1;
    }
    int64_t shape[2] = {n, m};
    struct td_tensor *o = NULL;
    int rc = td_tensor_empty(&o, dt, shape, 2, q, err);
    if (rc != 0) {
        return rc;
    }
    size_t es = td_dtype_size(dt);
    char *c = td_tensor_data(o);
    const char *bp = (const char *)td_tensor_data(b);
    /* Row 0 from b (any stride), then every other row a copy of row 0. */
    if (b->strides[0] == 1) {
        memcpy(c, bp, (size_t)m * es);
    } else {
        for (int64_t j = 0; j < m; j++) {
            memcpy(c + (size_t)j * es, bp + (size_t)(j * b->strides[0]) * es, es);
        }
    }
    for (int64_t i = 1; i < n; i++) {
        memcpy(c + (size_t)(i * m) * es, c, (size_t)m * es);
    }
    rc = gemm_float_beta(dt, n, k, m, td_tensor_data(x), x->strides[0], x->strides[1],
                         td_tensor_data(w), w->strides[1], w->strides[0], c, 1.0, err);
    if (rc != 0) {
        td_tensor_unref(o);
        return rc;
    }
    *out = o;
    return 0;
}

/* ---- dot and mv: matmul's kernel (BLAS for floats) behind torch's own checks ---- */

static int vec_product(struct td_tensor **out, struct td_tensor *a, struct td_tensor *b,
                       const struct td_op_args *args, struct td_quota *q, struct td_err *err)
{
    struct td_operand in[2] = {{.t = a}, {.t = b}};
    struct td_op_args local = *args;
    local.grad_enabled = false; /* dot / mv records its own node, not matmul's */
    return td_op_apply(TD_OP_MATMUL, in, 2, &local, false, q, out, err);
}

/* dot(input, tensor): two 1-D tensors of one dtype and length, with torch's checks in torch's
** order (ranks, dtypes, lengths, then the kernel's dtype). */
int td_make_dot(struct td_tensor **out, const struct td_operand *in, int nin,
                const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    struct td_tensor *x = in[0].t, *y = in[1].t;
    if (y == NULL) {
        return td_err_set(err, TD_EINVAL,
                          "dot(): argument 'tensor' (position 2) must be "
                          "Tensor, not a number");
    }
    if (x->ndim != 1 || y->ndim != 1) {
        return td_err_set(err, TD_ESHAPE, "1D tensors expected, but got %dD and %dD tensors",
                          x->ndim, y->ndim);
    }
    if (x->dtype != y->dtype) {
        return td_err_set(err, TD_EDTYPE,
                          "dot : expected both vectors to have same dtype, but "
                          "found %s and %s",
                          td_dtype_cname(x->dtype), td_dtype_cname(y->dtype));
    }
    if (x->numel != y->numel) {
        return td_err_set(err, TD_ESHAPE,
                          "inconsistent tensor size, expected tensor [%lld] and "
                          "src [%lld] to have the same number of elements, but got %lld and %lld "
                          "elements respectively",
                          (long long)x->numel, (long long)y->numel, (long long)x->numel,
                          (long long)y->numel);
    }
    if (x->dtype == TD_DTYPE_BOOL) {
        return td_err_set(err, TD_EDTYPE, "\"dot\" not implemented for 'Bool'");
    }
    return vec_product(out, x, y, a, q, err);
}

/* mv(input, vec): a matrix times a vector of its dtype. */
int td_make_mv(struct td_tensor **out, const struct td_operand *in, int nin,
               const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)nin;
    struct td_tensor *m = in[0].t, *v = in[1].t;
    if (v == NULL) {
        return td_err_set(err, TD_EINVAL,
                          "mv(): argument 'vec' (position 2) must be Tensor, "
                          "not a number");
    }
    if (m->ndim != 2 || v->ndim != 1) {
        return td_err_set(err, TD_ESHAPE, "vector + matrix @ vector expected, got 1, %d, %d",
                          m->ndim, v->ndim);
    }
    if (m->shape[1] != v->shape[0]) {
        return td_err_set(err, TD_ESHAPE, "size mismatch, got %lld, %lldx%lld,%lld",
                          (long long)m->shape[0], (long long)m->shape[0], (long long)m->shape[1],
                          (long long)v->shape[0]);
    }
    if (m->dtype != v->dtype) {
        return td_err_set(err, TD_EDTYPE, "expected scalar type %s but found %s",
                          td_dtype_cname(m->dtype), td_dtype_cname(v->dtype));
    }
    if (m->dtype == TD_DTYPE_BOOL) {
        return td_err_set(err, TD_EDTYPE, "\"addmv_impl_cpu\" not implemented for 'Bool'");
    }
    return vec_product(out, m, v, a, q, err);
}

/* ---- backward ---- */

static int unsq(struct td_tensor *t, int64_t dim, struct td_quota *q, struct td_tensor **out,
                struct td_err *err)
{
    struct td_op_args a;
    td_op_args_init(&a);
    a.dim = dim;
    return td_bw1(TD_OP_UNSQUEEZE, td_t(t), &a, q, out, err);
}

/* grad_fn name: the op torch's matmul dispatches to for these ranks. */
const char *td_grad_fn_matmul(const struct td_node *n)
{
    int da = n->in[0].t->ndim, db = n->in[1].t->ndim;
    return da == 1 && db == 1   ? "DotBackward0"
           : da == 2 && db == 1 ? "MvBackward0"
           : da <= 2 && db == 2 ? "MmBackward0"
                                : "UnsafeViewBackward0";
}

/* matmul: with 1-D operands promoted to matrices (a as a row, b as a column),
** d/da = g @ b^T and d/db = a^T @ g; the promoted dims are squeezed away again and autograd
** sums broadcast batch dims back to each input's shape. */
int td_bw_matmul(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                 struct td_quota *q, struct td_err *err)
{
    struct td_tensor *a = n->in[0].t, *b = n->in[1].t;
    struct td_tensor *a2 = NULL, *b2 = NULL, *g2 = NULL, *g1 = NULL, *bt = NULL, *at = NULL;
    struct td_tensor *ga = NULL, *gb = NULL;
    struct td_op_args none, sq;
    td_op_args_init(&none);
    td_op_args_init(&sq);
    sq.has_dim = true;
    int rc;
    a2 = a->ndim == 1 ? NULL : td_tensor_ref(a);
    b2 = b->ndim == 1 ? NULL : td_tensor_ref(b);
    if ((a2 == NULL && (rc = unsq(a, 0, q, &a2, err)) != 0) ||
        (b2 == NULL && (rc = unsq(b, 1, q, &b2, err)) != 0)) {
        goto out;
    }
    g1 = td_tensor_ref(g);
    if (a->ndim == 1) {
        if ((rc = unsq(g1, b->ndim == 1 ? 0 : -2, q, &g2, err)) != 0) {
            goto out;
        }
        td_tensor_unref(g1);
        g1 = g2;
        g2 = NULL;
    }
    if (b->ndim == 1) {
        if ((rc = unsq(g1, -1, q, &g2, err)) != 0) {
            goto out;
        }
        td_tensor_unref(g1);
        g1 = g2;
        g2 = NULL;
    }
    if ((rc = td_bw1(TD_OP_MT, td_t(b2), &none, q, &bt, err)) != 0 ||
        (rc = td_bw1(TD_OP_MT, td_t(a2), &none, q, &at, err)) != 0 ||
        (rc = td_bw2(TD_OP_MATMUL, td_t(g1), td_t(bt), q, &ga, err)) != 0 ||
        (rc = td_bw2(TD_OP_MATMUL, td_t(at), td_t(g1), q, &gb, err)) != 0) {
        goto out;
    }
    if (a->ndim == 1) {
        sq.dim = -2;
        rc = td_bw1(TD_OP_SQUEEZE, td_t(ga), &sq, q, &gin[0], err);
    } else {
        gin[0] = td_tensor_ref(ga);
    }
    if (rc == 0 && b->ndim == 1) {
        sq.dim = -1;
        rc = td_bw1(TD_OP_SQUEEZE, td_t(gb), &sq, q, &gin[1], err);
    } else if (rc == 0) {
        gin[1] = td_tensor_ref(gb);
    }
out:
    td_tensor_unref(a2);
    td_tensor_unref(b2);
    td_tensor_unref(g1);
    td_tensor_unref(g2);
    td_tensor_unref(bt);
    td_tensor_unref(at);
    td_tensor_unref(ga);
    td_tensor_unref(gb);
    return rc;
}
