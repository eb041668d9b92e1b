/* tests/core/test_grad.c — every backward rule in the op table against float64 central
** differences, on random inputs with broadcasting and a non-contiguous operand. The cases are a
** table keyed by op id (CASES): an op with a backward rule and no case fails the test. Ops
** without a rule are listed so the gap is visible. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/alloc.h"
#include "core/autograd.h"
#include "helpers.h"

/* L = sum(op(inputs) * w) with grad recording as asked. */
static double loss(enum td_op_id op, struct td_operand *in, int nin, struct td_op_args *args,
                   struct td_tensor *w, bool record, struct td_tensor **keep)
{
    struct td_err err;
    args->grad_enabled = record;
    struct td_tensor *y = NULL, *p = NULL, *s = NULL;
    if (td_op_apply(op, in, nin, args, false, NULL, &y, &err) != 0) {
        fail_msg("%s: %s", td_ops[op].name, err.msg);
    }
    struct td_op_args ga;
    td_op_args_init(&ga);
    ga.grad_enabled = record;
    struct td_operand m[2] = {tens(y), tens(w)};
    assert_int_equal(td_op_apply(TD_OP_MUL, m, 2, &ga, false, NULL, &p, &err), 0);
    struct td_operand sm[1] = {tens(p)};
    assert_int_equal(td_op_apply(TD_OP_SUM, sm, 1, &ga, false, NULL, &s, &err), 0);
    double v = at(s, 0);
    td_tensor_unref(y);
    td_tensor_unref(p);
    if (keep != NULL) {
        *keep = s;
    } else {
        td_tensor_unref(s);
    }
    return v;
}

static double rnd(void)
{
    return 0.5 + (double)rand() / RAND_MAX; /* (0.5, 1.5): safe for log, sqrt, pow */
}

/* The values of the case's integer (index) and bool (mask) operands, NULL for float ones. */
static const double *g_index_vals[3], *g_mask_vals[3];

static void check_op(enum td_op_id op, int64_t (*shapes)[3], const int *ndims, int nin,
                     struct td_op_args *args, bool transpose_first)
{
    struct td_tensor *x[3] = {NULL};
    struct td_operand in[3];
    for (int i = 0; i < nin; i++) {
        double v[128]; /* the largest case holds 70 elements */
        for (int k = 0; k < 128; k++) {
            v[k] = rnd();
        }
        if (op == TD_OP_WHERE && i == 0) {
            for (int k = 0; k < 128; k++) {
                v[k] = k % 2; /* a bool condition */
            }
            x[i] = mk(TD_DTYPE_BOOL, shapes[i], ndims[i], v);
            in[i] = tens(x[i]);
            continue;
        }
        if (g_index_vals[i] != NULL || g_mask_vals[i] != NULL) {
            x[i] = mk(g_index_vals[i] != NULL ? TD_DTYPE_I64 : TD_DTYPE_BOOL, shapes[i], ndims[i],
                      g_index_vals[i] != NULL ? g_index_vals[i] : g_mask_vals[i]);
            in[i] = tens(x[i]);
            continue;
        }
        if (op == TD_OP_CROSS_ENTROPY && i == 1 && ndims[1] < ndims[0]) {
            for (int k = 0; k < 128; k++) {
                v[k] = k % 3; /* class indices, no gradient */
            }
            x[i] = mk(TD_DTYPE_I64, shapes[i], ndims[i], v);
            in[i] = tens(x[i]);
            continue;
        }
        if (op == TD_OP_BINARY_CROSS_ENTROPY) {
            for (int k = 0; k < 128; k++) {
                v[k] = (v[k] - 0.5) * 0.8 + 0.1; /* probabilities: (0.1, 0.9) */
            }
        }
        if (i == 0 && (op == TD_OP_LEAKY_RELU || op == TD_OP_ELU || op == TD_OP_SILU ||
                       op == TD_OP_LOGSIGMOID || op == TD_OP_SOFTPLUS)) {
            for (int k = 0; k < 128; k++) {
                v[k] -= 1.0; /* both sides of the activation's bend: (-0.5, 0.5) */
            }
        }
        if (op == TD_OP_ERFINV) {
            for (int k = 0; k < 128; k++) {
                v[k] -= 1.0; /* erfinv's domain is (-1, 1) */
            }
        }
        x[i] = mk(TD_DTYPE_F64, shapes[i], ndims[i], v);
        if (i == 0 && transpose_first) {
            struct td_tensor *t = transposed(x[i]);
            td_tensor_unref(x[i]);
            x[i] = t;
        }
        x[i]->requires_grad = true;
        in[i] = tens(x[i]);
    }
    /* the output's shape, for the weights */
    struct td_tensor *y;
    args->grad_enabled = false;
    struct td_err yerr;
    if (td_op_apply(op, in, nin, args, false, NULL, &y, &yerr) != 0) {
        fail_msg("%s: %s", td_ops[op].name, yerr.msg);
    }
    double wv[64];
    for (int k = 0; k < 64; k++) {
        wv[k] = rnd() - 1.0;
    }
    struct td_tensor *w = mk(TD_DTYPE_F64, y->shape, y->ndim, wv);
    td_tensor_unref(y);
    struct td_tensor *root = NULL;
    loss(op, in, nin, args, w, true, &root);
    struct td_err err;
    if (td_autograd_backward(root, NULL, false, NULL, &err) != 0) {
        fail_msg("%s backward: %s", td_ops[op].name, err.msg);
    }
    td_tensor_unref(root);
    const double h = 1e-6;
    for (int i = 0; i < nin; i++) {
        if (!x[i]->requires_grad) {
            continue;
        }
        assert_non_null(x[i]->grad);
        struct td_tensor *g = x[i]->grad;
        int64_t idx[TD_MAX_DIMS] = {0};
        for (int64_t e = 0; e < x[i]->numel; e++) {
            int64_t off = x[i]->offset;
            for (int d = 0; d < x[i]->ndim; d++) {
                off += idx[d] * x[i]->strides[d];
            }
            double *p = (double *)x[i]->storage->buf->data + off;
            double orig = *p;
            *p = orig + h;
            double lp = loss(op, in, nin, args, w, false, NULL);
            *p = orig - h;
            double lm = loss(op, in, nin, args, w, false, NULL);
            *p = orig;
            double num = (lp - lm) / (2 * h);
            double ana = at(g, e); /* .grad is contiguous in C order */
            if (fabs(num - ana) > 1e-5 * (1 + fabs(num))) {
                fail_msg("%s input %d element %lld: analytic %.9g, numeric %.9g", td_ops[op].name,
                         i, (long long)e, ana, num);
            }
            for (int d = x[i]->ndim - 1; d >= 0; d--) {
                if (++idx[d] < x[i]->shape[d]) {
                    break;
                }
                idx[d] = 0;
            }
        }
    }
    for (int i = 0; i < nin; i++) {
        td_tensor_unref(x[i]);
    }
    td_tensor_unref(w);
}

/* The arguments and shapes each op is checked with: one or more rows per op with a backward rule,
** keyed by op id. A row names its op's non-tensor arguments with an ARGS() setter (NULL: torch's
** defaults). An op with a rule and no row fails the test: a new ops.def row brings its row here. */
struct grad_case {
    enum td_op_id op;
    int nin;
    int ndim[3];
    int64_t shape[3][3];
    bool transpose_first; /* operand 0 is a transposed (non-contiguous) view */
    void (*args)(struct td_op_args *a);
    const char *skip;       /* not checked here, and why */
    const double *index[3]; /* an int64 operand's values (the indexing family) */
    const double *mask[3];  /* a bool operand's values */
};

#define ARGS(name, ...)                                                                            \
    static void name(struct td_op_args *a)                                                         \
    {                                                                                              \
        __VA_ARGS__;                                                                               \
    }
#define DIMS1(d0) (a->dims[0] = (d0), a->ndims = 1, a->has_dims = true)
#define DIMS2(d0, d1) (a->dims[0] = (d0), a->dims[1] = (d1), a->ndims = 2, a->has_dims = true)

ARGS(a_reshape, DIMS2(3, 2))
ARGS(a_dims1, DIMS1(1))
ARGS(a_dims1_keep, DIMS1(1); a->keepdim = true)
ARGS(a_dim1, a->dim = 1; a->has_dim = true)
ARGS(a_dim1_plain, a->dim = 1)
ARGS(a_dim_last, a->dim = -1)
ARGS(a_expand, a->dims[0] = 4, a->dims[1] = 2, a->dims[2] = 3, a->ndims = 3, a->has_dims = true)
ARGS(a_transpose, a->dim = 0, a->dim2 = 1)
ARGS(a_permute, DIMS2(1, 0))
ARGS(a_select, a->dim = 1, a->start = 1)
ARGS(a_narrow, a->dim = 1, a->start = 1, a->end = 2)
ARGS(a_slice, a->dim = 1, a->start = 0, a->end = INT64_MAX, a->step = 2)
ARGS(a_clamp, a->has_min = a->has_max = true, a->min = td_scalar_f(0.8), a->max = td_scalar_f(1.2))
ARGS(a_flip, DIMS1(1))
ARGS(a_repeat, DIMS2(2, 1))
ARGS(a_value, a->has_value = true, a->value = td_scalar_f(0.7))
ARGS(a_diag_offset, a->dim = -1)
ARGS(a_diagonal, a->dim = 1; a->dim2 = 0; a->start = 1)
ARGS(a_diagonal_default, a->dim2 = 1)
ARGS(a_roll, a->shifts[0] = 1, a->shifts[1] = -2, a->nshifts = 2; DIMS2(0, 1))
ARGS(a_roll_flat, a->shifts[0] = 4, a->nshifts = 1)
ARGS(a_decimals, a->decimals = 2)
ARGS(a_ein_mm, strcpy(a->equation, "ij,jk->ik"))
ARGS(a_ein_sum_only, strcpy(a->equation, "bij,j->i")) /* b: operand 0's alone, summed */
ARGS(a_ein_bcast, strcpy(a->equation, "ij,ij->i"))    /* operand 1's i is 1, broadcast */
ARGS(a_ein_one, strcpy(a->equation, "ij->j"))
ARGS(a_addmm, a->has_alpha = a->has_beta = true, a->alpha = td_scalar_i(3),
     a->beta = td_scalar_f(0.5))
ARGS(a_to_f32, a->has_dtype = true; a->dtype = TD_DTYPE_F32)
ARGS(a_mask_d1, a->index_mask = 2)
ARGS(a_mask_d01, a->index_mask = 3)
ARGS(a_mask_d1_acc, a->index_mask = 2; a->accumulate = true)

ARGS(a_loss_sum, a->reduction = TD_REDUCTION_SUM)
ARGS(a_loss_none, a->reduction = TD_REDUCTION_NONE)
ARGS(a_ce_smooth, a->label_smoothing = 0.2; a->ignore_index = 1)
ARGS(a_beta03, a->has_beta = true; a->beta = td_scalar_f(0.3); a->reduction = TD_REDUCTION_SUM)
ARGS(a_slope, a->has_value = true; a->value = td_scalar_f(0.2))
ARGS(a_softplus, a->has_beta = true; a->beta = td_scalar_f(2.0); a->has_value = true;
     a->value = td_scalar_f(0.5))

/* class indices of the loss family */
static const double I_CLS2[] = {2, 0};       /* [2] for [2, 3] */
static const double I_CLS4[] = {2, 0, 1, 2}; /* [2, 2] for [2, 3, 2] */

/* index operands of the indexing family */
static const double I_GATHER[] = {2, 0, 2, 1, 1, 0}; /* [2, 3] along dim 1 of [2, 3] */
static const double I_SCATTER[] = {2, 0, 1, 2};      /* [2, 2], unique in each row */
static const double I_SELECT[] = {2, 0, 2, 1};       /* [4] */
static const double I_ADD[] = {2, 0};                /* [2] */
static const double I_TAKE[] = {5, -1, 0, 2};        /* [4], negative wraps */
static const double I_ROWS[] = {1, 0};               /* [2] */
static const double I_COLS[] = {2, 2};               /* [2] */
static const double M_COLS[] = {1, 0, 1};            /* [3] bool */
/* nn normalisation, embedding, padding */
ARGS(a_ln3, DIMS1(3); a->eps = 1e-5)
ARGS(a_ln23_nobias, DIMS2(2, 3); a->eps = 1e-3; a->absent = 2)
ARGS(a_bn_train, a->training = true; a->eps = 1e-5; a->absent = 3)      /* no running stats */
ARGS(a_bn_train_nob, a->training = true; a->eps = 1e-3; a->absent = 11) /* weight only */
ARGS(a_emb_pad, a->has_padding_idx = true; a->padding_idx = -1)         /* row 3: no gradient */
ARGS(a_pad, DIMS2(1, 2); a->has_value = true; a->value = td_scalar_f(0.5))
ARGS(a_pad_crop, a->dims[0] = -1, a->dims[1] = 1, a->dims[2] = 1, a->dims[3] = 0, a->ndims = 4,
     a->has_dims = true)
ARGS(a_pad_reflect, DIMS2(2, -1); a->pad_mode = TD_PAD_REFLECT)
ARGS(a_pad_replicate, a->dims[0] = 1, a->dims[1] = 2, a->dims[2] = 0, a->dims[3] = 1, a->ndims = 4,
     a->has_dims = true, a->pad_mode = TD_PAD_REPLICATE)
ARGS(a_pad_circular, DIMS2(1, 2); a->pad_mode = TD_PAD_CIRCULAR)
static const double I_EMB[] = {2, 0, 2, 1, 3, 2}; /* [2, 3] rows of a [4, 2] weight */
static const double I_EMB_NO3[] = {2, 0, 2, 1,
                                   0, 2}; /* the padding row is not picked: the
                                                       ** forward uses it, its gradient is 0 */
ARGS(a_sort_desc0, a->dim = 0; a->descending = true)
ARGS(a_topk2, a->k = 2; a->dim = -1; a->descending = true; a->sorted = true)
ARGS(a_kth2, a->k = 2; a->dim = 1; a->keepdim = true)
ARGS(a_median0, a->dim = 0; a->has_dim = true)
/* nn convolution and pooling */
ARGS(a_conv1d, a->stride[0] = 2; a->nstride = 1; a->padding[0] = 1; a->npadding = 1;
     a->dilation[0] = 2; a->ndilation = 1; a->groups = 2)
ARGS(a_conv1d_same, a->padding_mode = TD_PAD_SAME; a->groups = 1)
ARGS(a_maxpool, a->kernel_size[0] = 2; a->kernel_size[1] = 3; a->nkernel_size = 2; a->stride[0] = 2;
     a->nstride = 1; a->padding[0] = 1; a->npadding = 1; a->ceil_mode = true)
ARGS(a_maxpool_dil, a->kernel_size[0] = 2; a->nkernel_size = 1; a->dilation[0] = 2;
     a->ndilation = 1)
ARGS(a_avgpool, a->kernel_size[0] = 3; a->nkernel_size = 1; a->stride[0] = 2; a->nstride = 1;
     a->padding[0] = 1; a->npadding = 1; a->count_include_pad = false)
ARGS(a_avgpool_div, a->kernel_size[0] = 2; a->nkernel_size = 1; a->count_include_pad = true;
     a->ceil_mode = true; a->divisor_override = 3)
ARGS(a_adaptive, a->output_size[0] = 3; a->output_size[1] = 4; a->noutput_size = 2)
ARGS(a_adaptive_one, a->output_size[0] = 1; a->noutput_size = 1)

/* shapes */
#define M23                                                                                        \
    {                                                                                              \
        2, 3                                                                                       \
    }
#define U(op_)                                                                                     \
    {                                                                                              \
        .op = TD_OP_##op_, .nin = 1, .ndim = {2}, .shape = { M23 }                                 \
    }
#define UA(op_, fn)                                                                                \
    {                                                                                              \
        .op = TD_OP_##op_, .nin = 1, .ndim = {2}, .shape = {M23}, .args = fn                       \
    }
/* binary ops broadcast [2, 3] (a transposed [3, 2]) with [3] */
#define BIN(op_)                                                                                   \
    {                                                                                              \
        .op = TD_OP_##op_, .nin = 2, .ndim = {2, 1}, .shape = {{3, 2}, {3}},                       \
        .transpose_first = true                                                                    \
    }
#define RED(op_)                                                                                   \
    {.op = TD_OP_##op_, .nin = 1, .ndim = {2}, .shape = {M23}, .transpose_first = true},           \
        UA(op_, a_dims1), UA(op_, a_dims1_keep)
#define INPLACE_ONLY(op_)                                                                          \
    {                                                                                              \
        .op = TD_OP_##op_, .skip = "in place only: checked through the "                           \
                                   "protocol in test_autograd.py"                                  \
    }

static const struct grad_case CASES[] = {
    BIN(ADD),
    BIN(SUB),
    BIN(MUL),
    BIN(DIV),
    BIN(REMAINDER),
    BIN(POW),
    BIN(MAXIMUM),
    BIN(MINIMUM),
    {.op = TD_OP_MATMUL, .nin = 2, .ndim = {2, 2}, .shape = {M23, {3, 4}}},
    {.op = TD_OP_MATMUL, .nin = 2, .ndim = {1, 1}, .shape = {{3}, {3}}},          /* dot */
    {.op = TD_OP_MATMUL, .nin = 2, .ndim = {3, 2}, .shape = {{2, 2, 3}, {3, 2}}}, /* batched */
    {.op = TD_OP_WHERE, .nin = 3, .ndim = {2, 2, 1}, .shape = {M23, M23, {3}}},
    U(NEG),
    U(ABS),
    U(SIGN),
    U(EXP),
    U(LOG),
    U(LOG1P),
    U(EXPM1),
    U(SQRT),
    U(RSQRT),
    U(SIN),
    U(COS),
    U(TAN),
    U(TANH),
    U(SIGMOID),
    U(GELU),
    U(RELU),
    U(FLOOR),
    U(CEIL),
    U(ROUND),
    UA(CLAMP, a_clamp),
    {.op = TD_OP_TO,
     .args = a_to_f32,
     .skip = "a float32 result is too coarse for central "
             "differences; its rule is the identity, exercised by the Python suite"},
    {.op = TD_OP_RESHAPE,
     .nin = 1,
     .ndim = {2},
     .shape = {M23},
     .transpose_first = true,
     .args = a_reshape},
    UA(VIEW, a_reshape),
    U(FLATTEN),
    UA(TRANSPOSE, a_transpose),
    U(T),
    U(MT),
    UA(PERMUTE, a_permute),
    U(SQUEEZE),
    UA(UNSQUEEZE, a_dim1_plain),
    UA(EXPAND, a_expand),
    UA(NARROW, a_narrow),
    UA(SELECT, a_select),
    UA(SLICE, a_slice),
    U(CONTIGUOUS),
    U(CLONE),
    {.op = TD_OP_CAT, .nin = 2, .ndim = {2, 2}, .shape = {M23, M23}},
    {.op = TD_OP_STACK, .nin = 2, .ndim = {2, 2}, .shape = {M23, M23}},
    UA(FLIP, a_flip),
    UA(REPEAT, a_repeat),
    U(TRIL),
    U(TRIU),
    RED(SUM),
    RED(MEAN),
    RED(PROD),
    RED(STD),
    RED(VAR),
    RED(NORM),
    RED(LOGSUMEXP),
    {.op = TD_OP_MAX, .nin = 1, .ndim = {2}, .shape = {M23}, .transpose_first = true},
    UA(MAX, a_dim1),
    {.op = TD_OP_MIN, .nin = 1, .ndim = {2}, .shape = {M23}, .transpose_first = true},
    UA(MIN, a_dim1),
    {.op = TD_OP_MM, .nin = 2, .ndim = {2, 2}, .shape = {M23, {3, 4}}},
    {.op = TD_OP_BMM, .nin = 2, .ndim = {3, 3}, .shape = {{2, 2, 3}, {2, 3, 2}}},
    {.op = TD_OP_OUTER, .nin = 2, .ndim = {1, 1}, .shape = {{3}, {4}}},
    {.op = TD_OP_DOT, .nin = 2, .ndim = {1, 1}, .shape = {{3}, {3}}},
    {.op = TD_OP_MV, .nin = 2, .ndim = {2, 1}, .shape = {{3, 2}, {3}}, .transpose_first = true},
    UA(CUMSUM, a_dim1_plain),
    {.op = TD_OP_CUMSUM, .nin = 1, .ndim = {2}, .shape = {M23}, .transpose_first = true},
    UA(CUMPROD, a_dim1_plain),
    {.op = TD_OP_CUMPROD, .nin = 1, .ndim = {2}, .shape = {M23}, .transpose_first = true},
    UA(SORT, a_dim_last),
    {.op = TD_OP_SORT,
     .nin = 1,
     .ndim = {2},
     .shape = {M23},
     .transpose_first = true,
     .args = a_sort_desc0},
    UA(TOPK, a_topk2),
    UA(KTHVALUE, a_kth2),
    U(MEDIAN),
    UA(MEDIAN, a_median0),
    UA(MODE, a_dim_last),
    RED(AMAX),
    RED(AMIN),
    RED(VAR_MEAN),
    RED(STD_MEAN),
    UA(SOFTMAX, a_dim_last),
    UA(LOG_SOFTMAX, a_dim_last),
    {.op = TD_OP_MSE_LOSS, .nin = 2, .ndim = {2, 2}, .shape = {M23, M23}},
    {.op = TD_OP_CROSS_ENTROPY, .nin = 2, .ndim = {2, 1}, .shape = {M23, {2}}},
    /* nn, losses and activations */
    {.op = TD_OP_MSE_LOSS, .nin = 2, .ndim = {2, 1}, .shape = {M23, {3}}, .args = a_loss_none},
    {.op = TD_OP_CROSS_ENTROPY,
     .nin = 2,
     .ndim = {2, 1},
     .shape = {{3, 2}, {2}},
     .transpose_first = true,
     .args = a_ce_smooth,
     .index = {NULL, I_CLS2}},
    {.op = TD_OP_CROSS_ENTROPY,
     .nin = 2,
     .ndim = {3, 2},
     .shape = {{2, 3, 2}, {2, 2}},
     .args = a_loss_none,
     .index = {NULL, I_CLS4}},
    {.op = TD_OP_CROSS_ENTROPY, .nin = 2, .ndim = {2, 2}, .shape = {M23, M23}}, /* probabilities */
    {.op = TD_OP_NLL_LOSS, .nin = 2, .ndim = {2, 1}, .shape = {M23, {2}}, .index = {NULL, I_CLS2}},
    {.op = TD_OP_NLL_LOSS,
     .nin = 2,
     .ndim = {3, 2},
     .shape = {{2, 3, 2}, {2, 2}},
     .args = a_loss_none,
     .index = {NULL, I_CLS4}},
    {.op = TD_OP_SMOOTH_L1_LOSS, .nin = 2, .ndim = {2, 2}, .shape = {M23, M23}, .args = a_beta03},
    {.op = TD_OP_HUBER_LOSS, .nin = 2, .ndim = {2, 2}, .shape = {M23, M23}, .args = a_beta03},
    {.op = TD_OP_BINARY_CROSS_ENTROPY, .nin = 2, .ndim = {2, 2}, .shape = {M23, M23}},
    {.op = TD_OP_BINARY_CROSS_ENTROPY_WITH_LOGITS,
     .nin = 2,
     .ndim = {2, 2},
     .shape = {M23, M23},
     .args = a_loss_sum},
    UA(LEAKY_RELU, a_slope),
    U(SILU),
    UA(SOFTPLUS, a_softplus),
    U(ELU),
    UA(HARDTANH, a_clamp),
    U(LOGSIGMOID),
    {.op = TD_OP_LINEAR, .nin = 3, .ndim = {2, 2, 1}, .shape = {M23, {4, 3}, {4}}},
    {.op = TD_OP_LINEAR, .nin = 2, .ndim = {2, 2}, .shape = {M23, {4, 3}}},
    {.op = TD_OP_GATHER,
     .nin = 2,
     .ndim = {2, 2},
     .shape = {{3, 2}, M23},
     .args = a_dim1_plain,
     .index = {NULL, I_GATHER},
     .transpose_first = true},
    {.op = TD_OP_SCATTER,
     .nin = 3,
     .ndim = {2, 2, 2},
     .shape = {M23, {2, 2}, {2, 2}},
     .args = a_dim1_plain,
     .index = {NULL, I_SCATTER}},
    {.op = TD_OP_SCATTER_ADD,
     .nin = 3,
     .ndim = {2, 2, 2},
     .shape = {{2, 4}, {2, 2}, {2, 2}},
     .args = a_dim1_plain,
     .index = {NULL, I_SCATTER}},
    {.op = TD_OP_INDEX_SELECT,
     .nin = 2,
     .ndim = {2, 1},
     .shape = {{3, 2}, {4}},
     .args = a_dim1_plain,
     .index = {NULL, I_SELECT},
     .transpose_first = true},
    {.op = TD_OP_INDEX_ADD,
     .nin = 3,
     .ndim = {2, 1, 2},
     .shape = {M23, {2}, {2, 2}},
     .args = a_dim1_plain,
     .index = {NULL, I_ADD}},
    {.op = TD_OP_MASKED_FILL,
     .nin = 3,
     .ndim = {2, 1, 0},
     .shape = {M23, {3}, {0}},
     .mask = {NULL, M_COLS}},
    {.op = TD_OP_MASKED_SELECT,
     .nin = 2,
     .ndim = {2, 1},
     .shape = {{3, 2}, {3}},
     .mask = {NULL, M_COLS},
     .transpose_first = true},
    {.op = TD_OP_TAKE,
     .nin = 2,
     .ndim = {2, 1},
     .shape = {{3, 2}, {4}},
     .index = {NULL, I_TAKE},
     .transpose_first = true},
    {.op = TD_OP_INDEX,
     .nin = 3,
     .ndim = {2, 1, 1},
     .shape = {M23, {2}, {2}},
     .args = a_mask_d01,
     .index = {NULL, I_ROWS, I_COLS}},
    {.op = TD_OP_INDEX,
     .nin = 2,
     .ndim = {2, 1},
     .shape = {{3, 2}, {4}},
     .args = a_mask_d1,
     .index = {NULL, I_SELECT},
     .transpose_first = true},
    {.op = TD_OP_INDEX_PUT,
     .nin = 3,
     .ndim = {2, 1, 1},
     .shape = {M23, {2}, {2}},
     .args = a_mask_d1,
     .index = {NULL, I_ADD}},
    {.op = TD_OP_INDEX_PUT,
     .nin = 3,
     .ndim = {2, 1, 1},
     .shape = {M23, {2}, {2}},
     .args = a_mask_d1_acc,
     .index = {NULL, I_COLS}},
    INPLACE_ONLY(FILL),
    INPLACE_ONLY(ZERO),
    INPLACE_ONLY(COPY),
    INPLACE_ONLY(UNIFORM),
    INPLACE_ONLY(NORMAL),
    /* random: torch defines their derivatives as zero (not the draw's derivative), which finite
    ** differences cannot check; tests/python/test_conf_random.py compares grads with torch's */
    {.op = TD_OP_BERNOULLI, .skip = "random, zero gradient: test_conf_random.py"},
    {.op = TD_OP_NORMAL_SAMPLE, .skip = "random, zero gradient: test_conf_random.py"},
    INPLACE_ONLY(RANDOM),
    /* issue 16: elementwise, comparison and linear algebra */
    U(TRUNC),
    U(FRAC),
    U(ERF),
    U(ERFINV), /* inputs shifted into (-0.5, 0.5) by check_op */
    {.op = TD_OP_ADDCMUL,
     .nin = 3,
     .ndim = {2, 1, 2},
     .shape = {{3, 2}, {3}, {2, 3}},
     .transpose_first = true,
     .args = a_value},
    {.op = TD_OP_ADDCDIV,
     .nin = 3,
     .ndim = {1, 2, 2},
     .shape = {{2}, {3, 2}, {3, 2}},
     .args = a_value},
    {.op = TD_OP_LERP,
     .nin = 3,
     .ndim = {2, 2, 1},
     .shape = {{3, 2}, {2, 3}, {3}},
     .transpose_first = true},
    {.op = TD_OP_ADDMM,
     .nin = 3,
     .ndim = {1, 2, 2},
     .shape = {{2}, {2, 3}, {3, 2}},
     .args = a_addmm},
    {.op = TD_OP_ADDMM,
     .nin = 3,
     .ndim = {2, 2, 2},
     .shape = {{3, 3}, {3, 2}, {2, 3}},
     .transpose_first = true},
    U(TRACE),
    {.op = TD_OP_TRACE, .nin = 1, .ndim = {2}, .shape = {{3, 2}}, .transpose_first = true},
    {.op = TD_OP_BADDBMM,
     .nin = 3,
     .ndim = {1, 3, 3},
     .shape = {{2}, {2, 2, 3}, {2, 3, 2}},
     .args = a_addmm},
    UA(DIAGONAL, a_diagonal_default),
    UA(DIAGONAL, a_diagonal),
    {.op = TD_OP_DIAG,
     .nin = 1,
     .ndim = {2},
     .shape = {{3, 2}},
     .transpose_first = true,
     .args = a_diag_offset},
    {.op = TD_OP_DIAG, .nin = 1, .ndim = {1}, .shape = {{3}}, .args = a_diag_offset},
    UA(ROLL, a_roll),
    UA(ROLL, a_roll_flat),
    UA(ROUND, a_decimals),
    {.op = TD_OP_EINSUM,
     .nin = 2,
     .ndim = {2, 2},
     .shape = {{3, 2}, {3, 4}},
     .transpose_first = true,
     .args = a_ein_mm},
    {.op = TD_OP_EINSUM,
     .nin = 2,
     .ndim = {3, 1},
     .shape = {{2, 2, 3}, {3}},
     .args = a_ein_sum_only},
    {.op = TD_OP_EINSUM, .nin = 2, .ndim = {2, 2}, .shape = {M23, {1, 3}}, .args = a_ein_bcast},
    UA(EINSUM, a_ein_one),
    BIN(CLAMP_MIN),
    BIN(CLAMP_MAX),
    {.op = TD_OP_LAYER_NORM,
     .nin = 3,
     .ndim = {2, 1, 1},
     .shape = {{3, 2}, {3}, {3}},
     .transpose_first = true,
     .args = a_ln3},
    {.op = TD_OP_LAYER_NORM,
     .nin = 2,
     .ndim = {3, 2},
     .shape = {{2, 2, 3}, {2, 3}},
     .args = a_ln23_nobias},
    {.op = TD_OP_BATCH_NORM,
     .nin = 3,
     .ndim = {2, 1, 1},
     .shape = {{3, 2}, {3}, {3}},
     .transpose_first = true,
     .args = a_bn_train},
    {.op = TD_OP_BATCH_NORM,
     .nin = 2,
     .ndim = {3, 1},
     .shape = {{2, 3, 2}, {3}},
     .args = a_bn_train_nob},
    {.op = TD_OP_EMBEDDING,
     .nin = 2,
     .ndim = {2, 2},
     .shape = {M23, {4, 2}},
     .index = {I_EMB, NULL}},
    {.op = TD_OP_EMBEDDING,
     .nin = 2,
     .ndim = {2, 2},
     .shape = {M23, {4, 2}},
     .index = {I_EMB_NO3, NULL},
     .args = a_emb_pad},
    {.op = TD_OP_PAD,
     .nin = 1,
     .ndim = {2},
     .shape = {{3, 2}},
     .transpose_first = true,
     .args = a_pad},
    UA(PAD, a_pad_crop),
    {.op = TD_OP_PAD_GATHER,
     .nin = 1,
     .ndim = {2},
     .shape = {{4, 2}},
     .transpose_first = true,
     .args = a_pad_reflect},
    {.op = TD_OP_PAD_GATHER, .nin = 1, .ndim = {3}, .shape = {{2, 2, 3}}, .args = a_pad_replicate},
    {.op = TD_OP_PAD_GATHER, .nin = 1, .ndim = {3}, .shape = {{2, 2, 3}}, .args = a_pad_circular},
    /* nn convolution and pooling (unbatched 2-d inputs: the table holds up to 3 dims) */
    {.op = TD_OP_CONV1D,
     .nin = 3,
     .ndim = {3, 3, 1},
     .shape = {{2, 4, 7}, {6, 2, 3}, {6}},
     .args = a_conv1d},
    {.op = TD_OP_CONV1D, .nin = 2, .ndim = {2, 3}, .shape = {{4, 7}, {6, 2, 3}}, .args = a_conv1d},
    {.op = TD_OP_CONV1D,
     .nin = 2,
     .ndim = {3, 3},
     .shape = {{1, 2, 5}, {3, 2, 4}},
     .args = a_conv1d_same},
    {.op = TD_OP_CONV2D,
     .skip = "4-d weights: tests/core/test_conv.c checks conv2d's backward "
             "by finite differences"},
    {.op = TD_OP_MAX_POOL2D, .nin = 1, .ndim = {3}, .shape = {{2, 5, 6}}, .args = a_maxpool},
    {.op = TD_OP_MAX_POOL2D, .nin = 1, .ndim = {3}, .shape = {{1, 5, 5}}, .args = a_maxpool_dil},
    {.op = TD_OP_AVG_POOL2D, .nin = 1, .ndim = {3}, .shape = {{2, 5, 6}}, .args = a_avgpool},
    {.op = TD_OP_AVG_POOL2D, .nin = 1, .ndim = {3}, .shape = {{2, 5, 5}}, .args = a_avgpool_div},
    {.op = TD_OP_ADAPTIVE_AVG_POOL2D,
     .nin = 1,
     .ndim = {3},
     .shape = {{2, 5, 7}},
     .args = a_adaptive},
    {.op = TD_OP_ADAPTIVE_AVG_POOL2D,
     .nin = 1,
     .ndim = {3},
     .shape = {{2, 3, 4}},
     .args = a_adaptive_one},
};

static void test_every_rule_against_finite_differences(void **state)
{
    (void)state;
    srand(12345);
    int checked = 0, rows = 0;
    char uncovered[4096] = "", missing[4096] = "";
    for (int op = 0; op < TD_OP_COUNT; op++) {
        const struct td_op_def *d = &td_ops[op];
        bool covered = false;
        for (size_t k = 0; k < sizeof CASES / sizeof CASES[0]; k++) {
            const struct grad_case *c = &CASES[k];
            if ((int)c->op != op) {
                continue;
            }
            covered = true;
            if (c->skip != NULL) {
                continue;
            }
            struct td_op_args a;
            td_op_args_init(&a);
            if (c->args != NULL) {
                c->args(&a);
            }
            int64_t shapes[3][3];
            memcpy(shapes, c->shape, sizeof shapes);
            memcpy(g_index_vals, c->index, sizeof g_index_vals);
            memcpy(g_mask_vals, c->mask, sizeof g_mask_vals);
            check_op(c->op, shapes, c->ndim, c->nin, &a, c->transpose_first);
            rows++;
        }
        if (d->backward == NULL) {
            if (covered) {
                fail_msg("%s has a grad case but no backward rule", d->name);
            }
            snprintf(missing + strlen(missing), sizeof missing - strlen(missing), " %s", d->name);
            continue;
        }
        if (!covered) {
            snprintf(uncovered + strlen(uncovered), sizeof uncovered - strlen(uncovered), " %s",
                     d->name);
            continue;
        }
        checked++;
    }
    print_message("backward rules checked: %d (%d cases); ops without a rule:%s\n", checked, rows,
                  missing);
    if (uncovered[0] != '\0') {
        fail_msg("ops with a backward rule and no grad case in CASES:%s", uncovered);
    }
    for (size_t k = 0; k < sizeof CASES / sizeof CASES[0]; k++) {
        for (size_t m = 0; m < k; m++) {
            /* two rows of one op must differ: a duplicated row is a copy-paste slip */
            assert_false(memcmp(&CASES[k], &CASES[m], sizeof CASES[k]) == 0);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_rule_against_finite_differences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
