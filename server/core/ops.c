/* server/core/ops.c — the op table, the shared shape and dtype rules, and td_op_apply.
**
** td_op_apply is the one path every op takes: cancel and work-budget checks, dtype rule, shape
** rule, output allocation (or the in-place checks), forward kernel. Family files provide the rules and kernels named in ops.def.
*/
#include "ops.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "autograd.h"
#include "cancel.h"
#include "base/checked.h"
#include "ops/family.h"

const struct td_op_def td_ops[TD_OP_COUNT] = {
#define OP(id, name_, nin_, inplace_, flags_, gname_, ghook_, sig_, shape_, dtype_, fwd_, make_,   \
           bwd_, cost_)                                                                            \
    [TD_OP_##id] = {.name = name_,                                                                 \
                    .flags = flags_,                                                               \
                    .grad_fn = gname_,                                                             \
                    .grad_fn_hook = ghook_,                                                        \
                    .sig = sig_,                                                                   \
                    .nin = nin_,                                                                   \
                    .has_inplace = inplace_,                                                       \
                    .shape = shape_,                                                               \
                    .dtype = dtype_,                                                               \
                    .forward = fwd_,                                                               \
                    .make = make_,                                                                 \
                    .backward = bwd_,                                                              \
                    .cost = cost_},
#include "ops.def"
#undef OP
};

int td_op_lookup(const char *name)
{
    for (int i = 0; i < TD_OP_COUNT; i++) {
        if (strcmp(td_ops[i].name, name) == 0) {
            return i;
        }
    }
    return -1;
}

/* ---- operands a number may stand for (ops.def's `:number`) ---- */

/* Operand i's parameter in op's signature: its name (nlen bytes), its position among torch's
** positional parameters (1-based, as torch's TypeError counts them), and whether it is marked
** `:number`: the first nin parameters without a field (or with `:number`) of a fixed-arity
** op (nin >= 0). False when the signature lists no operand i. */
static bool sig_operand(const char *sig, int nin, int i, const char **name, int *nlen, int *pos,
                        bool *number)
{
    int operands = 0, position = 0;
    for (const char *p = sig; *p != '\0';) {
        while (*p == ' ') {
            p++;
        }
        if (*p == '*' || (p[0] == '-' && p[1] == '>') || operands >= nin) {
            return false; /* keyword-only, *size or the outputs: past the operands */
        }
        const char *start = p, *colon = NULL;
        while (*p != '\0' && *p != ',' && *p != '=' && *p != ' ') {
            colon = colon == NULL && *p == ':' ? p : colon;
            p++;
        }
        const char *end = p;
        while (*p != '\0' && *p != ',') {
            p++;
        }
        p += *p == ',';
        position++;
        size_t flen = colon == NULL ? 0 : (size_t)(end - colon - 1);
        bool is_number = flen == 6 && memcmp(colon + 1, "number", 6) == 0;
        if (flen != 0 && !is_number) {
            continue; /* an OpArgs field (gather's dim:dim), not an operand */
        }
        if (operands++ == i) {
            *name = start;
            *nlen = (int)((colon != NULL ? colon : end) - start);
            *pos = position;
            *number = is_number;
            return true;
        }
    }
    return false;
}

/* Per op, read from its signature once (threads that race store the same value): bit k (k <
** 15) set, operand k takes a number; bit 16 + k set, the signature names operand k (a number
** for an operand it does not name is left to the op's own checks); bit 31, read. */
static _Atomic uint32_t number_mask[TD_OP_COUNT];

int td_op_check_number(enum td_op_id id, int i, struct td_scalar s, struct td_err *err)
{
    if ((int)id < 0 || id >= TD_OP_COUNT || i < 0) {
        return td_err_set(err, TD_EINVAL, "operand %d: no such operand", i);
    }
    const struct td_op_def *op = &td_ops[id];
    if (op->nin < 0) {
        /* list ops: a number may stand in for an absent tensor (binary_cross_entropy_with_
        ** logits' weight before a pos_weight) or be one of torch.normal's forms; their make
        ** functions check every operand */
        return 0;
    }
    uint32_t mask = atomic_load_explicit(&number_mask[id], memory_order_relaxed);
    if (mask == 0) {
        mask = UINT32_C(1) << 31;
        for (int k = 0; k < 15; k++) {
            const char *nm;
            int nl, pos;
            bool num = false;
            if (sig_operand(op->sig, op->nin, k, &nm, &nl, &pos, &num)) {
                mask |= (UINT32_C(1) << (16 + k)) | (num ? UINT32_C(1) << k : 0);
            }
        }
        atomic_store_explicit(&number_mask[id], mask, memory_order_relaxed);
    }
    if (i >= 15 || !((mask >> (16 + i)) & 1u) || ((mask >> i) & 1u)) {
        return 0;
    }
    const char *nm = "input";
    int nl = 5, pos = i + 1;
    bool num;
    (void)sig_operand(op->sig, op->nin, i, &nm, &nl, &pos, &num);
    return td_err_set(err, TD_EINVAL, "%s(): argument '%.*s' (position %d) must be Tensor, not %s",
                      op->name, nl, nm, pos, td_scalar_kind_name(s.kind));
}

/* ---- shared rules ---- */

bool td_ops_fast = true;

void td_ops_set_fast_paths(bool on)
{
    td_ops_fast = on;
}

int td_broadcast_shapes(const int64_t *a, int na, const int64_t *b, int nb, int64_t *out, int *nout,
                        struct td_err *err)
{
    int n = na > nb ? na : nb;
    for (int i = n - 1; i >= 0; i--) {
        /* Align from the right; missing leading dims are 1. From the last dim, as torch's
        ** infer_size: the first mismatch it names is the trailing one. */
        int ia = i - (n - na), ib = i - (n - nb);
        int64_t da = ia >= 0 ? a[ia] : 1, db = ib >= 0 ? b[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            return td_err_set(err, TD_ESHAPE,
                              "The size of tensor a (%lld) must match the size "
                              "of tensor b (%lld) at non-singleton dimension %d",
                              (long long)da, (long long)db, i);
        }
        out[i] = da == 1 ? db : da;
    }
    *nout = n;
    return 0;
}

int td_shape_broadcast(const struct td_operand *in, int nin, const struct td_op_args *a,
                       int64_t *shape, int *ndim, struct td_err *err)
{
    (void)a;
    /* Tiny ops' fast path: operands of one shape (Python scalars aside) broadcast to it. Two
    ** tensors, the common case, are compared dim by dim here. */
    if (td_ops_fast && nin == 2 && in[0].t != NULL && in[1].t != NULL &&
        in[0].t->ndim == in[1].t->ndim) {
        const struct td_tensor *x = in[0].t, *y = in[1].t;
        int d = 0;
        while (d < x->ndim && x->shape[d] == y->shape[d]) {
            shape[d] = x->shape[d];
            d++;
        }
        if (d == x->ndim) {
            *ndim = d;
            return 0;
        }
    }
    const struct td_tensor *first = NULL;
    bool same = td_ops_fast;
    for (int i = 0; i < nin && same; i++) {
        const struct td_tensor *t = in[i].t;
        if (t == NULL) {
            continue;
        }
        if (first == NULL) {
            first = t;
        } else {
            same = t->ndim == first->ndim &&
                   memcmp(t->shape, first->shape, sizeof(int64_t) * (size_t)t->ndim) == 0;
        }
    }
    if (same && first != NULL) {
        memcpy(shape, first->shape, sizeof(int64_t) * (size_t)first->ndim);
        *ndim = first->ndim;
        return 0;
    }
    int n = 0;
    for (int i = 0; i < nin; i++) {
        if (in[i].t == NULL) {
            continue; /* Python scalars take no part in broadcasting */
        }
        int64_t tmp[TD_MAX_DIMS];
        int nt;
        int rc = td_broadcast_shapes(shape, n, in[i].t->shape, in[i].t->ndim, tmp, &nt, err);
        if (rc != 0) {
            return rc;
        }
        memcpy(shape, tmp, sizeof(int64_t) * (size_t)nt);
        n = nt;
    }
    *ndim = n;
    return 0;
}

/* torch's result_type over three tiers: dimensioned tensors, zero-dim tensors, Python scalars
** (whose float kind counts as the default float dtype). */
enum td_dtype td_result_type(const struct td_operand *in, int nin)
{
    /* Tiny ops' fast path: tensors of one dtype, whatever their ranks, give it (each tier
    ** holds it or nothing, and a dtype promoted with itself is itself). */
    if (td_ops_fast && nin == 2 && in[0].t != NULL && in[1].t != NULL &&
        in[0].t->dtype == in[1].t->dtype) {
        return in[0].t->dtype;
    }
    int dim = -1, zero = -1, wrapped = -1;
    for (int i = 0; i < nin; i++) {
        int *slot;
        enum td_dtype dt;
        if (in[i].t == NULL) {
            slot = &wrapped;
            dt = td_scalar_dtype(in[i].s);
        } else {
            slot = in[i].t->ndim == 0 ? &zero : &dim;
            dt = in[i].t->dtype;
        }
        *slot = *slot < 0 ? (int)dt : (int)td_dtype_promote((enum td_dtype) * slot, dt);
    }
    /* combine_categories(higher, lower) */
    int lower = wrapped;
    for (int pass = 0; pass < 2; pass++) {
        int higher = pass == 0 ? zero : dim;
        int r;
        if (higher >= 0 && td_dtype_is_float((enum td_dtype)higher)) {
            r = higher;
        } else if (higher >= 0 && lower >= 0 &&
                   (higher == TD_DTYPE_BOOL || td_dtype_is_float((enum td_dtype)lower))) {
            r = (int)td_dtype_promote((enum td_dtype)higher, (enum td_dtype)lower);
        } else if (higher >= 0) {
            r = higher;
        } else {
            r = lower;
        }
        lower = r;
    }
    return lower >= 0 ? (enum td_dtype)lower : TD_DTYPE_DEFAULT_FLOAT;
}

int td_dtype_rule_promote(const struct td_operand *in, int nin, const struct td_op_args *a,
                          enum td_dtype *compute, enum td_dtype *result, struct td_err *err)
{
    (void)a;
    (void)err;
    *compute = *result = td_result_type(in, nin);
    return 0;
}

/* Comparisons compare in the promoted type and give bool. */
int td_dtype_rule_compare(const struct td_operand *in, int nin, const struct td_op_args *a,
                          enum td_dtype *compute, enum td_dtype *result, struct td_err *err)
{
    (void)a;
    (void)err;
    *compute = td_result_type(in, nin);
    *result = TD_DTYPE_BOOL;
    return 0;
}

/* logical_*: every input read as truth values, bool out. */
int td_dtype_rule_logical(const struct td_operand *in, int nin, const struct td_op_args *a,
                          enum td_dtype *compute, enum td_dtype *result, struct td_err *err)
{
    (void)in;
    (void)nin;
    (void)a;
    (void)err;
    *compute = *result = TD_DTYPE_BOOL;
    return 0;
}

/* Unary ops that keep their input's dtype. */
int td_dtype_rule_same(const struct td_operand *in, int nin, const struct td_op_args *a,
                       enum td_dtype *compute, enum td_dtype *result, struct td_err *err)
{
    (void)nin;
    (void)a;
    (void)err;
    *compute = *result = in[0].t->dtype;
    return 0;
}

/* Unary float functions: integers and bools compute in the default float dtype. */
int td_dtype_rule_float(const struct td_operand *in, int nin, const struct td_op_args *a,
                        enum td_dtype *compute, enum td_dtype *result, struct td_err *err)
{
    (void)nin;
    (void)a;
    (void)err;
    enum td_dtype dt = in[0].t->dtype;
    *compute = *result = td_dtype_is_float(dt) ? dt : TD_DTYPE_DEFAULT_FLOAT;
    return 0;
}

/* logical_not: reads any dtype, gives bool. */
int td_dtype_rule_to_bool(const struct td_operand *in, int nin, const struct td_op_args *a,
                          enum td_dtype *compute, enum td_dtype *result, struct td_err *err)
{
    (void)nin;
    (void)a;
    (void)err;
    *compute = in[0].t->dtype;
    *result = TD_DTYPE_BOOL;
    return 0;
}

void td_op_args_init(struct td_op_args *a)
{
    memset(a, 0, sizeof *a);
    a->correction = 1.0;
    a->ignore_index = -100;
}

void td_op_args_reset_call(struct td_op_args *a)
{
    a->rng = NULL;
    a->more_out = NULL;
    a->want_more[0] = false;
    a->want_more[1] = false;
    a->grad_enabled = false;
    a->op = 0;
    a->inplace = false;
    a->quota = NULL;
}

/* ---- the driver ---- */

/* The in-place write itself, run inside td_autograd_inplace. */
struct inplace_write {
    const struct td_op_def *op;
    struct td_tensor *t;
    const struct td_operand *in;
    int nin;
    const struct td_op_args *args;
    enum td_dtype compute;
    struct td_err *err;
};

static int inplace_write_run(void *ctx)
{
    struct inplace_write *w = ctx;
    int rc = td_tensor_prepare_write(w->t, w->err);
    return rc != 0 ? rc : w->op->forward(w->t, w->in, w->nin, w->args, w->compute, w->err);
}

/* Records the autograd node for a fresh result (an op that hands back one of its inputs, like
** x.to(x.dtype), shares that input's history instead). On failure the result is dropped. */
static int record(enum td_op_id id, const struct td_operand *in, int nin,
                  const struct td_op_args *args, struct td_tensor **out, struct td_err *err)
{
    for (int i = 0; i < nin; i++) {
        if (in[i].t == *out) {
            return 0;
        }
    }
    if (id == TD_OP_DETACH) {
        return 0; /* the point of detach */
    }
    int rc = td_autograd_record(id, in, nin, args, *out, err);
    if (rc != 0) {
        td_tensor_unref(*out);
        *out = NULL;
    }
    return rc;
}

/* The current request's --max-op-elements (core/cancel.h max_work): an op whose work is above
** it is refused before anything is allocated, with the wording rpc uses for a RunOp, whoever
** runs it (a backward's sums and adds, a composed op's steps). Costed only when a budget is
** set; operands the cost rule calls invalid pass, and the op refuses them itself. */
static int check_work_budget(enum td_op_id id, const struct td_operand *in, int nin,
                             const struct td_op_args *args, struct td_err *err)
{
    const struct td_cancel *c = td_cancel_current();
    if (c == NULL || c->max_work <= 0) {
        return 0;
    }
    struct td_cost cost;
    if (td_op_cost(id, in, nin, args, &cost, NULL) != 0) {
        return 0;
    }
    int64_t work = td_cost_work(&cost);
    if (work > c->max_work) {
        return td_err_set(err, TD_ELIMIT,
                          "%s would touch %lld elements, above "
                          "max_op_elements %lld",
                          td_ops[id].name, (long long)work, (long long)c->max_work);
    }
    return 0;
}

static int op_apply(enum td_op_id id, const struct td_operand *in, int nin,
                    const struct td_op_args *args, bool inplace, bool costed, struct td_quota *q,
                    const struct td_op_plan *plan, struct td_tensor **out, struct td_err *err);

int td_op_apply(enum td_op_id id, const struct td_operand *in, int nin,
                const struct td_op_args *args, bool inplace, struct td_quota *q,
                struct td_tensor **out, struct td_err *err)
{
    return op_apply(id, in, nin, args, inplace, false, q, NULL, out, err);
}

int td_op_apply_costed(enum td_op_id id, const struct td_operand *in, int nin,
                       const struct td_op_args *args, bool inplace, struct td_quota *q,
                       struct td_tensor **out, struct td_err *err)
{
    return op_apply(id, in, nin, args, inplace, true, q, NULL, out, err);
}

int td_op_apply_planned(enum td_op_id id, const struct td_operand *in, int nin,
                        const struct td_op_args *args, bool inplace, struct td_quota *q,
                        const struct td_op_plan *plan, struct td_tensor **out, struct td_err *err)
{
    return op_apply(id, in, nin, args, inplace, true, q, plan, out, err);
}

/* torch's memory-overlap checks for an in-place write of t (in[0]) from in[1..]: what its
** TensorIterator asserts for the elementwise ops and copy_ (no internal overlap in t, no
** partial overlap with any input; the same elements, as in x.add_(x), are fine), and what
** the indexing ops assert instead. fill_ and zero_ check nothing (writing one value twice is
** harmless); masked_fill_ and index_put_ allow an expanded t (torch only warns). scatter_,
** scatter_add_, index_add_ and index_put_ refuse even the same elements in an index or source.
** O(nin * ndim^2): byte ranges of dense views, never the elements. */
static int check_inplace_overlap(enum td_op_id id, const struct td_tensor *t,
                                 const struct td_operand *in, int nin, struct td_err *err)
{
    bool internal = true, any = false; /* any: refuse FULL overlap too */
    int first = 1, last = nin;         /* inputs [first, last) are checked */
    switch (id) {
    case TD_OP_FILL:
    case TD_OP_ZERO: return 0;
    case TD_OP_MASKED_FILL:
        internal = false;
        last = 2; /* the mask; a tensor value is read once, as a number */
        break;
    case TD_OP_INDEX_PUT:
        internal = false;
        any = true;
        break;
    case TD_OP_SCATTER:
    case TD_OP_SCATTER_ADD:
    case TD_OP_INDEX_ADD: any = true; break;
    default: break;
    }
    if (internal && td_tensor_internal_overlap(t)) {
        return td_err_set(err, TD_EINVAL,
                          "unsupported operation: more than one element of the written-to "
                          "tensor refers to a single memory location. Please clone() the "
                          "tensor before performing the operation.");
    }
    for (int i = first; i < last; i++) {
        if (in[i].t == NULL) {
            continue;
        }
        enum td_overlap o = td_tensor_overlap(t, in[i].t);
        if (o == TD_OVERLAP_PARTIAL || (any && o == TD_OVERLAP_FULL)) {
            return td_err_set(err, TD_EINVAL,
                              "unsupported operation: some elements of the input tensor and the "
                              "written-to tensor refer to a single memory location. Please "
                              "clone() the tensor before performing the operation.");
        }
    }
    return 0;
}

static int op_apply(enum td_op_id id, const struct td_operand *in, int nin,
                    const struct td_op_args *args, bool inplace, bool costed, struct td_quota *q,
                    const struct td_op_plan *plan, struct td_tensor **out, struct td_err *err)
{
    if ((int)id < 0 || id >= TD_OP_COUNT) {
        return td_err_set(err, TD_EOP, "unknown op %d", (int)id);
    }
    const struct td_op_def *op = &td_ops[id];
    /* A cancelled request runs no further op: composed ops (softmax, losses, backward rules)
    ** stop between their steps as well as inside them. */
    int crc = td_cancel_check(err);
    if (crc != 0) {
        return crc;
    }
    if (op->nin >= 0 ? nin != op->nin : nin > TD_OP_MAX_INPUTS) {
        return td_err_set(err, TD_EINVAL, "%s takes %d inputs, got %d", op->name, op->nin, nin);
    }
    for (int i = 0; i < nin && op->nin >= 0; i++) {
        /* Only binary elementwise ops take a Python number in any position; the rest need
        ** their first input to be a tensor (torch's Tensor.op form). */
        if (i == 0 && in[i].t == NULL && (op->make != NULL || op->nin != 2)) {
            return td_err_set(err, TD_EINVAL,
                              "%s(): argument 'input' must be Tensor, not a "
                              "number",
                              op->name);
        }
    }
    /* The kernels learn which op they run, in place or not and on which quota, from args: a
    ** private copy with those set, unless the caller's already says exactly that (RunOp's,
    ** which td_rpc_run_op fills so: a tiny op skips copying 944 bytes). */
    struct td_op_args local;
    if (args == NULL || args->op != (int)id || args->inplace != inplace || args->quota != q) {
        if (args != NULL) {
            local = *args;
        } else {
            td_op_args_init(&local);
        }
        local.op = (int)id;
        local.inplace = inplace;
        local.quota = q;
        args = &local;
    }
    if (!costed && (crc = check_work_budget(id, in, nin, args, err)) != 0) {
        return crc;
    }
    if (op->make != NULL) {
        if (inplace) {
            return td_err_set(err, TD_EINVAL, "%s has no in-place form", op->name);
        }
        int mrc = op->make(out, in, nin, args, q, err);
        return mrc != 0 ? mrc : record(id, in, nin, args, out, err);
    }
    bool any_tensor = false;
    for (int i = 0; i < nin; i++) {
        any_tensor = any_tensor || in[i].t != NULL;
    }
    if (!any_tensor) {
        return td_err_set(err, TD_EINVAL, "%s needs at least one tensor input", op->name);
    }
    int64_t shape[TD_MAX_DIMS];
    int ndim, rc;
    enum td_dtype compute, result;
    if (plan != NULL && plan->ok && plan->op == (int)id) {
        /* The cost rule ran both rules on these operands and arguments, and both passed. */
        compute = plan->compute;
        result = plan->result;
        ndim = plan->ndim;
        memcpy(shape, plan->shape, sizeof shape); /* whole: a fixed-size copy is inlined */
    } else if ((rc = op->dtype(in, nin, args, &compute, &result, err)) != 0 ||
               (rc = op->shape(in, nin, args, shape, &ndim, err)) != 0) {
        return rc;
    }
    struct td_tensor *t;
    if (inplace) {
        t = in[0].t;
        if (!op->has_inplace || t == NULL) {
            return td_err_set(err, TD_EINVAL, "%s has no in-place form on this input", op->name);
        }
        /* torch checks the shape first, then the dtype. */
        if (ndim != t->ndim || memcmp(shape, t->shape, sizeof(int64_t) * (size_t)ndim) != 0) {
            char sa[160], sb[160];
            return td_err_set(err, TD_ESHAPE,
                              "output with shape %s doesn't match the "
                              "broadcast shape %s",
                              td_shape_str(sa, sizeof sa, t->shape, t->ndim),
                              td_shape_str(sb, sizeof sb, shape, ndim));
        }
        if (!td_dtype_can_cast(result, t->dtype)) {
            return td_err_set(err, TD_EDTYPE,
                              "result type %s can't be cast to the desired "
                              "output type %s",
                              td_dtype_cname(result), td_dtype_cname(t->dtype));
        }
        if ((rc = check_inplace_overlap(id, t, in, nin, err)) != 0) {
            return rc;
        }
        if ((rc = td_autograd_check_inplace(t, args->grad_enabled, err)) != 0) {
            return rc;
        }
        struct inplace_write w = {op, t, in, nin, args, compute, err};
        if ((rc = td_autograd_inplace(id, t, in, nin, args, inplace_write_run, &w, err)) != 0) {
            return rc;
        }
        *out = td_tensor_ref(t);
        return 0;
    }
    if ((rc = td_tensor_empty(&t, result, shape, ndim, q, err)) != 0) {
        return rc;
    }
    if ((rc = op->forward(t, in, nin, args, compute, err)) != 0) {
        td_tensor_unref(t);
        return rc;
    }
    *out = t;
    return record(id, in, nin, args, out, err);
}

/* The checks td_op_apply makes before any rule runs, so that no cost rule ever sees operands
** it could misread: a known op, its count of inputs, a tensor first where the op needs one,
** at least one tensor for the standard path, and sane ranks and argument lists. */
static bool cost_operands_ok(enum td_op_id id, const struct td_operand *in, int nin,
                             const struct td_op_args *a)
{
    const struct td_op_def *op = &td_ops[id];
    if (op->nin >= 0 ? nin != op->nin : (nin < 0 || nin > TD_OP_MAX_INPUTS)) {
        return false;
    }
    if (nin > 0 && in == NULL) {
        return false;
    }
    if (a->ndims < 0 || a->ndims > TD_MAX_DIMS) {
        return false;
    }
    bool any_tensor = false;
    for (int i = 0; i < nin; i++) {
        const struct td_tensor *t = in[i].t;
        if (t != NULL && (t->ndim < 0 || t->ndim > TD_MAX_DIMS || t->numel < 0)) {
            return false;
        }
        any_tensor = any_tensor || t != NULL;
    }
    if (op->nin > 0 && in[0].t == NULL && (op->make != NULL || op->nin != 2)) {
        return false;
    }
    return op->make != NULL || any_tensor;
}

int td_op_cost(enum td_op_id id, const struct td_operand *in, int nin,
               const struct td_op_args *args, struct td_cost *out, struct td_err *err)
{
    return td_op_cost_planned(id, in, nin, args, out, NULL, err);
}

int td_op_cost_planned(enum td_op_id id, const struct td_operand *in, int nin,
                       const struct td_op_args *args, struct td_cost *out, struct td_op_plan *plan,
                       struct td_err *err)
{
    memset(out, 0, sizeof *out);
    if (plan != NULL) {
        plan->ok = false;
    }
    if ((int)id < 0 || id >= TD_OP_COUNT) {
        return td_err_set(err, TD_EOP, "unknown op %d", (int)id);
    }
    /* The rules read the op from args: a copy with it set, unless it is set already. */
    struct td_op_args local;
    if (args == NULL || args->op != (int)id) {
        if (args != NULL) {
            local = *args;
        } else {
            td_op_args_init(&local);
        }
        local.op = (int)id;
        args = &local;
    }
    out->plan = plan;
    int crc = !cost_operands_ok(id, in, nin, args) ? -1 : td_ops[id].cost(in, nin, args, out);
    out->plan = NULL;
    if (crc != 0) {
        memset(out, 0, sizeof *out);
        if (plan != NULL) {
            plan->ok = false;
        }
        return td_err_set(err, TD_EINVAL, "%s: invalid operands", td_ops[id].name);
    }
    /* No rule may hand back a negative field, whatever it computed. */
    int64_t *f[] = {&out->read, &out->written, &out->flops, &out->out_bytes, &out->temp_bytes};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        *f[i] = *f[i] < 0 ? 0 : *f[i];
    }
    return 0;
}
