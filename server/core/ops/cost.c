/* server/core/ops/cost.c — the cost rules that ops.def names: what one call of an op reads,
** writes, multiplies and allocates, judged from its operands before anything runs.
**
** The daemon once sized work by the output alone, and an expanded (stride-0) view made any
** input size free: the sum of tensor([1.]).expand(2**30, 2**30) was "one element" and walked
** 2^60 on the event loop. So here inputs count at their logical size (numel, whatever bytes back
** it), products count their multiply-adds, and copies count the temporaries the kernels make
** (matmul's contiguous operand copies, elementwise casts). rpc uses the numbers to choose inline
** or the pool, to refuse work over --max-op-elements, and to charge quotas.
**
** These rules run before any validation (td_op_cost checks only what td_op_apply checks first:
** the op, its input count, a tensor where one is needed, ranks), so each must take any operands
** without crashing: it returns -1 where the op would refuse them. Every sum and product goes
** through td_sat_add/td_sat_mul, so a cost can only saturate at INT64_MAX, never wrap.
*/
#include <string.h>

#include "../../base/checked.h"
#include "family.h"

static int64_t esize(enum td_dtype dt)
{
    return td_dtype_is_valid((int)dt) ? (int64_t)td_dtype_size(dt) : 8;
}

/* The element count of a shape, saturating (negative dims count as 0). */
static int64_t numel_of(const int64_t *shape, int ndim)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        n = td_sat_mul(n, shape[i]);
    }
    return n;
}

/* A fresh result of n elements of dt (none when written in place). */
static void new_result(struct td_cost *c, const struct td_op_args *a, int64_t n, enum td_dtype dt)
{
    c->out_bytes = a->inplace ? 0 : td_sat_mul(n, esize(dt));
}

/* A contiguous copy of t into dt: t read at its logical size, every element written. */
static void copy_of(struct td_cost *c, const struct td_op_args *a, const struct td_tensor *t,
                    enum td_dtype dt)
{
    c->read = t->numel;
    c->written = t->numel;
    new_result(c, a, t->numel, dt);
}

/* The standard path (shape rule, dtype rule, forward kernel): binary and unary elementwise ops,
** where, clamp and the in-place fills. Every tensor input is read once per output element (a
** broadcast input as often as the output asks for it); inputs not already in the compute dtype
** are cast into temporaries at their own logical size, and so is the result when it must be
** cast into self's narrower dtype. */
int td_cost_elementwise(const struct td_operand *in, int nin, const struct td_op_args *a,
                        struct td_cost *c)
{
    const struct td_op_def *op = &td_ops[a->op];
    int64_t shape[TD_MAX_DIMS];
    int ndim;
    enum td_dtype compute, result;
    if (op->shape(in, nin, a, shape, &ndim, NULL) != 0) {
        return -1;
    }
    struct td_op_args local;
    if (op->dtype == td_dtype_rule_self) {
        /* fill_, zero_, copy_, uniform_, normal_ exist only in place, whether or not the
        ** caller said so; their dtype is self's. */
        if (in[0].t == NULL) {
            return -1;
        }
        local = *a;
        local.inplace = true;
        a = &local;
        compute = result = in[0].t->dtype;
    } else if (op->dtype(in, nin, a, &compute, &result, NULL) != 0) {
        return -1;
    } else if (c->plan != NULL) {
        /* Both rules passed, as op_apply runs them (td_op_apply_planned). */
        struct td_op_plan *p = c->plan;
        p->op = a->op;
        p->ndim = ndim;
        p->compute = compute;
        p->result = result;
        memcpy(p->shape, shape, sizeof p->shape); /* whole: a fixed-size copy is inlined */
        p->ok = true;
    }
    int64_t n = numel_of(shape, ndim);
    for (int i = 0; i < nin; i++) {
        if (in[i].t == NULL) {
            continue;
        }
        c->read = td_sat_add(c->read, n);
        if (in[i].t->dtype != compute) {
            c->temp_bytes = td_sat_add(c->temp_bytes, td_sat_mul(in[i].t->numel, esize(compute)));
        }
    }
    c->written = n;
    new_result(c, a, n, result);
    if (a->inplace && in[0].t != NULL && in[0].t->dtype != compute) {
        c->temp_bytes = td_sat_add(c->temp_bytes, td_sat_mul(n, esize(compute)));
    }
    return 0;
}

/* Reductions read every input element (std, var and logsumexp twice: two passes) and keep four
** accumulators per output element. */
int td_cost_reduce(const struct td_operand *in, int nin, const struct td_op_args *a,
                   struct td_cost *c)
{
    int64_t shape[TD_MAX_DIMS];
    int ndim;
    enum td_dtype compute, result;
    if (td_shape_reduce(in, nin, a, shape, &ndim, NULL) != 0 ||
        td_dtype_rule_reduce(in, nin, a, &compute, &result, NULL) != 0) {
        return -1;
    }
    int64_t nout = numel_of(shape, ndim);
    bool two_pass = a->op == TD_OP_STD || a->op == TD_OP_VAR || a->op == TD_OP_LOGSUMEXP;
    c->read = td_sat_mul(in[0].t->numel, two_pass ? 2 : 1);
    c->written = nout;
    new_result(c, a, nout, result);
    c->temp_bytes = td_sat_mul(nout > 0 ? nout : 1, 4 * 8);
    return 0;
}

/* matmul, mm, bmm: by the output and its products, b * n * m * k multiply-adds, never by the
** inputs alone (a thin [1, K] @ [K, 1] is K products into one element). Integer products cost
** the same as float ones. */
int td_cost_matmul(const struct td_operand *in, int nin, const struct td_op_args *a,
                   struct td_cost *c)
{
    (void)nin;
    int64_t shape[TD_MAX_DIMS];
    int ndim;
    if (in[0].t == NULL || in[1].t == NULL || td_shape_matmul(in, 2, a, shape, &ndim, NULL) != 0) {
        return -1;
    }
    const struct td_tensor *x = in[0].t, *y = in[1].t;
    int64_t n = numel_of(shape, ndim), k = x->shape[x->ndim - 1];
    c->read = td_sat_add(x->numel, y->numel);
    c->written = n;
    c->flops = td_sat_mul(n, k);
    new_result(c, a, n, td_dtype_promote(x->dtype, y->dtype));
    c->temp_bytes = td_matmul_temp_bytes(x, y);
    return 0;
}

/* dot and mv: matmul's cost, for the ranks they take (anything else they refuse). */
int td_cost_dot(const struct td_operand *in, int nin, const struct td_op_args *a, struct td_cost *c)
{
    if (in[0].t == NULL || in[1].t == NULL || in[0].t->ndim != 1 || in[1].t->ndim != 1) {
        return -1;
    }
    return td_cost_matmul(in, nin, a, c);
}

int td_cost_mv(const struct td_operand *in, int nin, const struct td_op_args *a, struct td_cost *c)
{
    if (in[0].t == NULL || in[1].t == NULL || in[0].t->ndim != 2 || in[1].t->ndim != 1) {
        return -1;
    }
    return td_cost_matmul(in, nin, a, c);
}

/* cumsum: every element read (as cast into the result) and written once, with one add each;
** the cast copy is the result itself. */
int td_cost_cumsum(const struct td_operand *in, int nin, const struct td_op_args *a,
                   struct td_cost *c)
{
    (void)nin;
    const struct td_tensor *x = in[0].t;
    int64_t n = x->ndim > 0 ? x->ndim : 1;
    if (a->dim < -n || a->dim >= n ||
        (a->has_dtype && (!td_dtype_is_valid((int)a->dtype) || a->dtype == TD_DTYPE_BOOL))) {
        return -1;
    }
    enum td_dtype dt = a->has_dtype                  ? a->dtype
                       : td_dtype_is_float(x->dtype) ? x->dtype
                                                     : TD_DTYPE_I64;
    c->read = x->numel;
    c->written = x->numel;
    c->flops = x->numel;
    new_result(c, a, x->numel, dt);
    return 0;
}

/* outer(a, b): a[:, None] * b, by its output. */
int td_cost_outer(const struct td_operand *in, int nin, const struct td_op_args *a,
                  struct td_cost *c)
{
    (void)nin;
    const struct td_tensor *x = in[0].t, *y = in[1].t;
    if (x == NULL || y == NULL || x->ndim != 1 || y->ndim != 1) {
        return -1;
    }
    int64_t n = td_sat_mul(x->numel, y->numel);
    enum td_dtype dt = td_dtype_promote(x->dtype, y->dtype);
    c->read = td_sat_mul(n, 2);
    c->written = n;
    c->flops = n;
    new_result(c, a, n, dt);
    if (x->dtype != y->dtype) {
        c->temp_bytes = td_sat_mul(td_sat_add(x->numel, y->numel), esize(dt));
    }
    return 0;
}

/* A view: a constant, whatever its logical size (it shares storage). */
int td_cost_view(const struct td_operand *in, int nin, const struct td_op_args *a,
                 struct td_cost *c)
{
    (void)in;
    (void)nin;
    (void)a;
    c->written = 1;
    return 0;
}

/* reshape and flatten: a view when the strides allow one, else a copy. */
int td_cost_reshape(const struct td_operand *in, int nin, const struct td_op_args *a,
                    struct td_cost *c)
{
    int copies = td_reshape_copies(in[0].t, a);
    if (copies < 0) {
        return -1;
    }
    if (copies == 0) {
        return td_cost_view(in, nin, a, c);
    }
    copy_of(c, a, in[0].t, in[0].t->dtype);
    return 0;
}

/* contiguous(): itself when contiguous, else a copy. */
int td_cost_contiguous(const struct td_operand *in, int nin, const struct td_op_args *a,
                       struct td_cost *c)
{
    if (td_tensor_is_contiguous(in[0].t)) {
        return td_cost_view(in, nin, a, c);
    }
    copy_of(c, a, in[0].t, in[0].t->dtype);
    return 0;
}

/* clone, flip, tril, triu: a contiguous copy of the input at its logical size. */
int td_cost_copy(const struct td_operand *in, int nin, const struct td_op_args *a,
                 struct td_cost *c)
{
    (void)nin;
    copy_of(c, a, in[0].t, in[0].t->dtype);
    return 0;
}

/* to(dtype): itself in its own dtype, else a casting copy. */
int td_cost_to(const struct td_operand *in, int nin, const struct td_op_args *a, struct td_cost *c)
{
    if (!a->has_dtype || !td_dtype_is_valid((int)a->dtype)) {
        return -1;
    }
    if (in[0].t->dtype == a->dtype) {
        return td_cost_view(in, nin, a, c);
    }
    copy_of(c, a, in[0].t, a->dtype);
    return 0;
}

/* cat and stack: every input copied once into the result, in the promoted dtype. */
int td_cost_cat(const struct td_operand *in, int nin, const struct td_op_args *a, struct td_cost *c)
{
    if (nin == 0) {
        return -1;
    }
    int64_t n = 0, es = 1;
    for (int i = 0; i < nin; i++) {
        if (in[i].t == NULL) {
            return -1;
        }
        n = td_sat_add(n, in[i].t->numel);
        es = esize(in[i].t->dtype) > es ? esize(in[i].t->dtype) : es;
    }
    c->read = n;
    c->written = n;
    c->out_bytes = td_sat_mul(n, es);
    return 0;
}

/* repeat(sizes): by its output, each size times the input's size there. */
int td_cost_repeat(const struct td_operand *in, int nin, const struct td_op_args *a,
                   struct td_cost *c)
{
    (void)nin;
    const struct td_tensor *t = in[0].t;
    if (a->ndims < t->ndim) {
        return -1;
    }
    int lead = a->ndims - t->ndim;
    int64_t n = 1;
    for (int i = 0; i < a->ndims; i++) {
        if (a->dims[i] < 0) {
            return -1;
        }
        n = td_sat_mul(n, td_sat_mul(a->dims[i], i < lead ? 1 : t->shape[i - lead]));
    }
    c->read = n;
    c->written = n;
    new_result(c, a, n, t->dtype);
    return 0;
}

/* softmax and log_softmax run as max, sub, exp, sum, div (log, sub): six reads and four writes
** of the input's size, with three intermediates of that size. */
int td_cost_softmax(const struct td_operand *in, int nin, const struct td_op_args *a,
                    struct td_cost *c)
{
    (void)nin;
    int64_t n = in[0].t->numel, es = esize(in[0].t->dtype);
    c->read = td_sat_mul(n, 6);
    c->written = td_sat_mul(n, 4);
    new_result(c, a, n, in[0].t->dtype);
    c->temp_bytes = td_sat_mul(td_sat_mul(n, 3), es);
    return 0;
}

/* mse_loss: sub, mul, mean over the broadcast shape; cross_entropy: log_softmax of the input,
** then one pick per row. */
int td_cost_loss(const struct td_operand *in, int nin, const struct td_op_args *a,
                 struct td_cost *c)
{
    const struct td_tensor *x = in[0].t, *y = in[1].t;
    if (y == NULL) {
        return -1;
    }
    if (a->op == TD_OP_CROSS_ENTROPY) {
        if (td_cost_softmax(in, nin, a, c) != 0) {
            return -1;
        }
        c->read = td_sat_add(c->read, y->numel);
        c->out_bytes = 8;
        return 0;
    }
    int64_t shape[TD_MAX_DIMS];
    int ndim;
    if (td_broadcast_shapes(x->shape, x->ndim, y->shape, y->ndim, shape, &ndim, NULL) != 0) {
        return -1;
    }
    int64_t n = numel_of(shape, ndim);
    enum td_dtype dt = td_dtype_promote(x->dtype, y->dtype);
    c->read = td_sat_mul(n, 5);
    c->written = td_sat_add(td_sat_mul(n, 2), 1);
    c->out_bytes = esize(dt);
    c->temp_bytes = td_sat_mul(td_sat_mul(n, 2), esize(dt));
    if (x->dtype != dt || y->dtype != dt) {
        c->temp_bytes = td_sat_add(c->temp_bytes,
                                   td_sat_mul(td_sat_add(x->numel, y->numel), esize(dt)));
    }
    return 0;
}

/* linear(x, W[, b]) = x @ W.T (+ b): matmul's cost, plus the bias add into a second result. */
int td_cost_linear(const struct td_operand *in, int nin, const struct td_op_args *a,
                   struct td_cost *c)
{
    if (nin < 2 || nin > 3 || in[0].t == NULL || in[1].t == NULL || (nin == 3 && in[2].t == NULL)) {
        return -1;
    }
    struct td_tensor wt = *in[1].t;
    if (wt.ndim == 2) {
        wt.shape[0] = in[1].t->shape[1];
        wt.shape[1] = in[1].t->shape[0];
        wt.strides[0] = in[1].t->strides[1];
        wt.strides[1] = in[1].t->strides[0];
    }
    struct td_operand mm[2] = {{.t = in[0].t}, {.t = &wt}};
    if (td_cost_matmul(mm, 2, a, c) != 0) {
        return -1;
    }
    if (nin == 3) {
        c->read = td_sat_add(c->read, td_sat_mul(c->written, 2));
        c->temp_bytes = td_sat_add(c->temp_bytes, c->out_bytes);
        c->written = td_sat_mul(c->written, 2);
    }
    return 0;
}

static enum td_dtype dtype_or(const struct td_op_args *a, enum td_dtype dflt)
{
    return a->has_dtype && td_dtype_is_valid((int)a->dtype) ? a->dtype : dflt;
}

/* empty and randint: the requested shape, in dims. */
int td_cost_create(const struct td_operand *in, int nin, const struct td_op_args *a,
                   struct td_cost *c)
{
    (void)in;
    (void)nin;
    enum td_dtype dt = dtype_or(a, a->op == TD_OP_RANDINT ? TD_DTYPE_I64 : TD_DTYPE_DEFAULT_FLOAT);
    int64_t n;
    if (td_shape_check(a->dims, a->ndims, dt, &n, NULL, NULL) != 0) {
        return -1;
    }
    c->written = n;
    c->out_bytes = td_sat_mul(n, esize(dt));
    return 0;
}

/* linspace: `steps` elements, which make_linspace takes from args.dim (not dims). */
int td_cost_linspace(const struct td_operand *in, int nin, const struct td_op_args *a,
                     struct td_cost *c)
{
    (void)in;
    (void)nin;
    if (a->dim < 0) {
        return -1;
    }
    c->written = a->dim;
    c->out_bytes = td_sat_mul(a->dim, esize(dtype_or(a, TD_DTYPE_DEFAULT_FLOAT)));
    return 0;
}

/* eye(n[, m]): n * m elements. */
int td_cost_eye(const struct td_operand *in, int nin, const struct td_op_args *a, struct td_cost *c)
{
    (void)in;
    (void)nin;
    if (a->ndims < 1 || a->ndims > 2 || a->dims[0] < 0 || (a->ndims == 2 && a->dims[1] < 0)) {
        return -1;
    }
    int64_t n = td_sat_mul(a->dims[0], a->ndims == 2 ? a->dims[1] : a->dims[0]);
    c->written = n;
    c->out_bytes = td_sat_mul(n, esize(dtype_or(a, TD_DTYPE_DEFAULT_FLOAT)));
    return 0;
}

/* The *_like family: the input's shape, filled. */
int td_cost_like(const struct td_operand *in, int nin, const struct td_op_args *a,
                 struct td_cost *c)
{
    (void)nin;
    int64_t n = in[0].t->numel;
    c->written = n;
    c->out_bytes = td_sat_mul(n, esize(dtype_or(a, in[0].t->dtype)));
    return 0;
}

int64_t td_cost_work(const struct td_cost *c)
{
    return td_sat_add(td_sat_add(c->read, c->written), c->flops);
}
