/* tests/core/test_alloc_sweep.c — every op of the table, and backward through it, with the 1st,
** 2nd, 3rd ... allocation failing: each run must fail cleanly with TD_ENOMEM (never crash) and
** leave no byte allocated once its tensors are released; the sweep ends when a run gets through
** without reaching the armed allocation, and that run's result must equal the unfaulted one. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "base/alloc.h"
#include "core/autograd.h"
#include "core/rng.h"
#include "helpers.h"

struct call {
    enum td_op_id op;
    struct td_tensor *x[3];
    struct td_operand in[3];
    int nin;
    struct td_op_args a;
    bool inplace;
    bool grad; /* float inputs require grad: backward is swept too */
};

static struct td_rng rng;

/* Inputs and arguments that make op valid (the same choices as the gradient checks). */
static void setup(enum td_op_id op, struct call *c)
{
    memset(c, 0, sizeof *c);
    c->op = op;
    td_op_args_init(&c->a);
    c->a.rng = &rng;
    int64_t sh[3][3] = {{2, 3}, {2, 3}, {3}};
    int nd[3] = {2, 2, 1};
    enum td_dtype dt[3] = {TD_DTYPE_F64, TD_DTYPE_F64, TD_DTYPE_F64};
    int nin = td_ops[op].nin;
    struct td_op_args *a = &c->a;
    switch (op) {
    case TD_OP_MATMUL:
    case TD_OP_MM: sh[1][0] = 3, sh[1][1] = 4; break;
    case TD_OP_BMM:
        sh[0][0] = 2, sh[0][1] = 2, sh[0][2] = 3, nd[0] = 3;
        sh[1][0] = 2, sh[1][1] = 3, sh[1][2] = 2, nd[1] = 3;
        break;
    case TD_OP_OUTER: sh[0][0] = 3, nd[0] = 1, sh[1][0] = 4, nd[1] = 1; break;
    case TD_OP_DOT: sh[0][0] = 3, nd[0] = 1, sh[1][0] = 3, nd[1] = 1; break;
    case TD_OP_MV: sh[1][0] = 3, nd[1] = 1; break;
    case TD_OP_LINEAR: sh[1][0] = 4, sh[1][1] = 3, sh[2][0] = 4, nin = 3; break;
    case TD_OP_WHERE: dt[0] = TD_DTYPE_BOOL, nin = 3; break;
    case TD_OP_CROSS_ENTROPY:
    case TD_OP_NLL_LOSS:
    case TD_OP_LOSS_COEF: sh[1][0] = 2, nd[1] = 1, dt[1] = TD_DTYPE_I64, nin = 2; break;
    case TD_OP_BINARY_CROSS_ENTROPY:
    case TD_OP_BINARY_CROSS_ENTROPY_WITH_LOGITS: nin = 2; break;
    case TD_OP_CAT:
    case TD_OP_STACK: nin = 2; break;
    /* indexing: int64 index operands hold k % 3 (0, 1, 2, ...), along dim 1 of [2, 3] */
    case TD_OP_GATHER: dt[1] = TD_DTYPE_I64, a->dim = 1; break;
    case TD_OP_SCATTER:
    case TD_OP_SCATTER_ADD:
        dt[1] = TD_DTYPE_I64, sh[2][0] = 2, sh[2][1] = 3, nd[2] = 2, a->dim = 1;
        break;
    case TD_OP_INDEX_SELECT:
    case TD_OP_TAKE: dt[1] = TD_DTYPE_I64, sh[1][0] = 3, nd[1] = 1, a->dim = 1; break;
    case TD_OP_INDEX_ADD:
        dt[1] = TD_DTYPE_I64, sh[1][0] = 3, nd[1] = 1, sh[2][0] = 2, sh[2][1] = 3, nd[2] = 2;
        a->dim = 1;
        break;
    case TD_OP_MASKED_FILL: dt[1] = TD_DTYPE_BOOL, nd[2] = 0; break;
    case TD_OP_MASKED_SELECT: dt[1] = TD_DTYPE_BOOL; break;
    case TD_OP_INDEX:
        dt[1] = TD_DTYPE_I64, sh[1][0] = 3, nd[1] = 1, a->index_mask = 2, nin = 2;
        break;
    case TD_OP_INDEX_PUT:
        dt[1] = TD_DTYPE_I64, sh[1][0] = 3, nd[1] = 1, sh[2][0] = 2, sh[2][1] = 3, nd[2] = 2;
        a->index_mask = 2, nin = 3;
        break;
    case TD_OP_RESHAPE:
    case TD_OP_VIEW: a->dims[0] = 3, a->dims[1] = 2, a->ndims = 2, a->has_dims = true; break;
    case TD_OP_EXPAND:
        a->dims[0] = 4, a->dims[1] = 2, a->dims[2] = 3, a->ndims = 3, a->has_dims = true;
        break;
    case TD_OP_PERMUTE:
    case TD_OP_FLIP:
        a->dims[0] = 1, a->dims[1] = 0, a->ndims = op == TD_OP_FLIP ? 1 : 2;
        a->has_dims = true;
        break;
    case TD_OP_REPEAT: a->dims[0] = 2, a->dims[1] = 1, a->ndims = 2, a->has_dims = true; break;
    case TD_OP_TRANSPOSE: a->dim = 0, a->dim2 = 1; break;
    case TD_OP_SELECT: a->dim = 1, a->start = 1; break;
    case TD_OP_NARROW: a->dim = 1, a->start = 1, a->end = 2; break;
    case TD_OP_SLICE: a->dim = 1, a->start = 0, a->end = INT64_MAX, a->step = 2; break;
    case TD_OP_UNSQUEEZE: a->dim = 1; break;
    case TD_OP_SOFTMAX:
    case TD_OP_LOG_SOFTMAX: a->dim = -1; break;
    case TD_OP_MAX:
    case TD_OP_MIN: a->dim = 1, a->has_dim = true; break;
    case TD_OP_SUM:
    case TD_OP_MEAN:
    case TD_OP_STD:
    case TD_OP_VAR: a->dims[0] = 1, a->ndims = 1, a->has_dims = true, a->keepdim = true; break;
    case TD_OP_TOPK:
    case TD_OP_KTHVALUE: a->k = 2, a->dim = 1; break;
    case TD_OP_MEDIAN: a->dim = 1, a->has_dim = true; break;
    case TD_OP_CLAMP:
        a->has_min = a->has_max = true, a->min = td_scalar_f(0.8), a->max = td_scalar_f(1.2);
        break;
    case TD_OP_TO: a->has_dtype = true, a->dtype = TD_DTYPE_F32; break;
    case TD_OP_EMPTY:
    case TD_OP_RANDINT:
        a->dims[0] = 2, a->dims[1] = 3, a->ndims = 2, a->has_dims = true;
        a->min = td_scalar_i(0), a->max = td_scalar_i(5), a->has_min = a->has_max = true;
        break;
    case TD_OP_LINSPACE:
        a->min = td_scalar_f(0), a->max = td_scalar_f(1), a->has_min = a->has_max = true;
        a->dim = 5;
        break;
    case TD_OP_EYE: a->dims[0] = 3, a->dims[1] = 2, a->ndims = 2, a->has_dims = true; break;
    case TD_OP_FULL_LIKE: a->min = td_scalar_f(2.5), a->has_min = true; break;
    case TD_OP_MULTINOMIAL: a->num_samples = 2; break;
    case TD_OP_BERNOULLI: a->max = td_scalar_f(0.5), a->has_max = true; break;
    case TD_OP_RANDPERM: a->num_samples = 5; break;
    case TD_OP_NORMAL_SAMPLE: nin = 2; break;
    case TD_OP_BITWISE_AND:
    case TD_OP_BITWISE_OR:
    case TD_OP_BITWISE_XOR:
    case TD_OP_BITWISE_NOT:
    case TD_OP_BITWISE_LEFT_SHIFT:
    case TD_OP_BITWISE_RIGHT_SHIFT: dt[0] = dt[1] = TD_DTYPE_I64; break;
    case TD_OP_ADDMM:
        sh[0][1] = 2, sh[1][0] = 2, sh[1][1] = 3, sh[2][0] = 3, sh[2][1] = 2;
        nd[0] = nd[1] = nd[2] = 2;
        break;
    case TD_OP_BADDBMM:
        sh[0][0] = 2, nd[0] = 1;
        sh[1][0] = 2, sh[1][1] = 2, sh[1][2] = 3, nd[1] = 3;
        sh[2][0] = 2, sh[2][1] = 3, sh[2][2] = 2, nd[2] = 3;
        break;
    case TD_OP_DIAGONAL: a->dim2 = 1; break;
    case TD_OP_ROLL: a->shifts[0] = 1, a->nshifts = 1; break;
    case TD_OP_TRIU_INDICES:
    case TD_OP_TRIL_INDICES: a->dim = 3, a->dim2 = 4; break;
    case TD_OP_ROUND: a->decimals = 1; break;
    case TD_OP_EINSUM:
        nin = 2, sh[1][0] = 3, sh[1][1] = 4;
        strcpy(a->equation, "ij,jk->ik");
        break;
    /* nn normalisation, embedding, padding */
    case TD_OP_LAYER_NORM:
        nin = 3, sh[1][0] = 3, nd[1] = 1;
        a->dims[0] = 3, a->ndims = 1, a->has_dims = true, a->eps = 1e-5;
        break;
    case TD_OP_BATCH_NORM:
        nin = 3, sh[1][0] = 3, nd[1] = 1, sh[2][0] = 3;
        a->training = true, a->momentum = 0.1, a->eps = 1e-5;
        break;
    case TD_OP_EMBEDDING: dt[0] = TD_DTYPE_I64, sh[1][0] = 3, sh[1][1] = 2; break;
    case TD_OP_ONE_HOT: dt[0] = TD_DTYPE_I64, a->num_samples = -1; break;
    case TD_OP_PAD: a->dims[0] = 1, a->dims[1] = 2, a->ndims = 2, a->has_dims = true; break;
    case TD_OP_DROPOUT_NOISE: a->k = 2, a->max = td_scalar_f(0.5), a->has_max = true; break;
    case TD_OP_PAD_GATHER:
        a->dims[0] = 2, a->dims[1] = 1, a->ndims = 2, a->has_dims = true;
        a->pad_mode = TD_PAD_REFLECT;
        break;
    case TD_OP_CUSTOM_FUNCTION: nin = 2, strcpy(a->equation, "IdBackward"); break;
    case TD_OP_FILL:
    case TD_OP_ZERO:
    case TD_OP_COPY:
    case TD_OP_UNIFORM:
    case TD_OP_NORMAL:
        c->inplace = true; /* in place only */
        if (op == TD_OP_UNIFORM || op == TD_OP_NORMAL) {
            a->min = td_scalar_f(0), a->max = td_scalar_f(1), a->has_min = a->has_max = true;
        }
        break;
    default: break;
    }
    if (op == TD_OP_FILL) {
        nin = 1;
    }
    c->grad = !c->inplace && td_ops[op].backward != NULL && nin > 0;
    c->nin = nin;
    for (int i = 0; i < nin; i++) {
        double v[32];
        for (int k = 0; k < 32; k++) {
            v[k] = op == TD_OP_BINARY_CROSS_ENTROPY ? 0.1 + k * 0.1 /* probabilities */
                   : dt[i] == TD_DTYPE_F64 ? 0.5 + k * 0.125
                                           : k % (dt[i] == TD_DTYPE_BOOL ? 2 : 3);
        }
        c->x[i] = mk(dt[i], sh[i], nd[i], v);
        c->x[i]->requires_grad = c->grad && dt[i] == TD_DTYPE_F64;
        c->in[i] = tens(c->x[i]);
    }
    if (op == TD_OP_BATCH_NORM) { /* running statistics never require grad (torch refuses) */
        c->x[1]->requires_grad = c->x[2]->requires_grad = false;
    }
    if (op == TD_OP_FILL) {
        c->in[1].t = NULL;
        c->in[1].s = td_scalar_f(3);
        c->nin = 2;
    }
    c->a.grad_enabled = c->grad;
}

/* One run: the op, and when it has a gradient, sum(y).backward(). Returns 0 or the error code;
** *out gets y's values (as doubles, up to 64) for comparing runs. */
static int run(struct call *c, double *vals, int *nvals)
{
    struct td_err err;
    struct td_tensor *y = NULL, *s = NULL;
    int rc = td_op_apply(c->op, c->in, c->nin, &c->a, c->inplace, NULL, &y, &err);
    if (rc != 0) {
        y = NULL; /* a failed op promises nothing about *out */
    }
    if (rc == 0 && c->grad) {
        struct td_op_args ga;
        td_op_args_init(&ga);
        ga.grad_enabled = true;
        struct td_operand sm[1] = {tens(y)};
        rc = td_op_apply(TD_OP_SUM, sm, 1, &ga, false, NULL, &s, &err);
        if (rc != 0) {
            s = NULL;
        }
        if (rc == 0 && s->requires_grad) {
            rc = td_autograd_backward(s, NULL, false, NULL, &err);
        }
    }
    if (rc == 0) {
        *nvals = 0;
        struct td_tensor *flat = y;
        if (y->dtype != TD_DTYPE_F64 || !td_tensor_is_contiguous(y)) {
            struct td_op_args ta;
            td_op_args_init(&ta);
            ta.has_dtype = true;
            ta.dtype = TD_DTYPE_F64;
            struct td_operand ti[1] = {tens(y)};
            td_alloc_fail_at(0);
            assert_int_equal(td_op_apply(TD_OP_TO, ti, 1, &ta, false, NULL, &flat, NULL), 0);
            struct td_operand ci[1] = {tens(flat)};
            struct td_tensor *cont;
            assert_int_equal(td_op_apply(TD_OP_CONTIGUOUS, ci, 1, &ta, false, NULL, &cont, NULL),
                             0);
            td_tensor_unref(flat);
            flat = cont;
        }
        for (int64_t i = 0; i < flat->numel && i < 64; i++) {
            vals[(*nvals)++] = at(flat, i);
        }
        if (flat != y) {
            td_tensor_unref(flat);
        }
    } else if (err.code != TD_ENOMEM) {
        fail_msg("%s failed with %d (%s), not TD_ENOMEM", td_ops[c->op].name, err.code, err.msg);
    }
    td_tensor_unref(y);
    td_tensor_unref(s);
    for (int i = 0; i < c->nin; i++) {
        if (c->x[i] != NULL) { /* grads from this run go, so the next starts afresh */
            td_tensor_unref(c->x[i]->grad);
            c->x[i]->grad = NULL;
        }
    }
    return rc;
}

static void release(struct call *c)
{
    for (int i = 0; i < 3; i++) {
        td_tensor_unref(c->x[i]);
    }
}

static void test_every_op_under_allocation_failure(void **state)
{
    (void)state;
    int ops = 0, faults = 0;
    for (int op = 0; op < TD_OP_COUNT; op++) {
        struct call c;
        td_rng_seed(&rng, 42);
        setup((enum td_op_id)op, &c);
        double want[64], got[64];
        int nwant = 0, ngot = 0;
        int64_t base = td_alloc_live_bytes();
        if (run(&c, want, &nwant) != 0) {
            fail_msg("%s fails without faults", td_ops[op].name);
        }
        assert_int_equal(td_alloc_live_bytes(), base);
        if (op == TD_OP_RANDINT || op == TD_OP_UNIFORM || op == TD_OP_NORMAL ||
            op == TD_OP_RAND_LIKE || op == TD_OP_RANDN_LIKE || op == TD_OP_EMPTY ||
            op == TD_OP_EMPTY_LIKE) {
            nwant = -1; /* values differ per run (random or uninitialised) */
        }
        for (int64_t k = 1;; k++) {
            td_rng_seed(&rng, 42);
            if (c.inplace) { /* the in-place target starts from the same values each run */
                release(&c);
                setup((enum td_op_id)op, &c);
                base = td_alloc_live_bytes();
            }
            td_alloc_fail_at(k);
            int rc = run(&c, got, &ngot);
            int64_t used = td_alloc_count();
            td_alloc_fail_at(0);
            if (td_alloc_live_bytes() != base) {
                fail_msg("%s with allocation %lld failing leaks %lld bytes", td_ops[op].name,
                         (long long)k, (long long)(td_alloc_live_bytes() - base));
            }
            if (rc == 0 && used < k) {
                if (nwant >= 0) { /* got through: the same answer as without faults */
                    assert_int_equal(ngot, nwant);
                    assert_memory_equal(got, want, sizeof got[0] * (size_t)ngot);
                }
                break;
            }
            faults++;
            if (k > 10000) {
                fail_msg("%s: sweep does not end", td_ops[op].name);
            }
        }
        release(&c);
        ops++;
    }
    print_message("ops swept: %d, failing runs checked: %d\n", ops, faults);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_op_under_allocation_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
