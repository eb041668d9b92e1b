/* tests/core/test_conv.c — the nn convolution and pooling family (ops/conv.c) through
** td_op_apply: conv1d/conv2d (stride, padding, 'same', groups, integers), max_pool2d with its
** indices, avg_pool2d (count_include_pad, divisor_override), adaptive_avg_pool2d, their
** gradients by autograd, torch's error texts and the cost rules. Every expected value is worked
** out by hand in the comments; conv2d's gradient (4-d operands, which test_grad.c's table
** cannot hold) is also checked against central differences here. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/autograd.h"
#include "helpers.h"

static const double X9[] = {1, 2, 3, 4, 5, 6, 7, 8, 9}; /* a 3 x 3 plane */

/* A zero-filled tensor (for shapes and errors). */
static struct td_tensor *zeros(enum td_dtype dt, const int64_t *shape, int ndim)
{
    struct td_tensor *t = NULL;
    assert_int_equal(td_tensor_full(&t, dt, shape, ndim, td_scalar_i(0), NULL, NULL), 0);
    return t;
}

static struct td_tensor *run(enum td_op_id op, struct td_tensor **ts, int n,
                             struct td_op_args *args, struct td_err *err)
{
    struct td_operand in[3];
    for (int i = 0; i < n; i++) {
        in[i] = tens(ts[i]);
    }
    struct td_tensor *out = NULL;
    if (td_op_apply(op, in, n, args, false, NULL, &out, err) != 0) {
        return NULL;
    }
    return out;
}

static struct td_tensor *sum_all(struct td_tensor *t)
{
    struct td_op_args a;
    td_op_args_init(&a);
    a.grad_enabled = true;
    struct td_err err;
    struct td_tensor *s = run(TD_OP_SUM, &t, 1, &a, &err);
    assert_non_null(s);
    return s;
}

static void test_conv2d_values_and_grads(void **state)
{
    (void)state;
    struct td_err err;
    struct td_tensor *x = mk(TD_DTYPE_F32, (int64_t[]){1, 1, 3, 3}, 4, X9);
    struct td_tensor *w = mk(TD_DTYPE_F32, (int64_t[]){1, 1, 2, 2}, 4, (double[]){1, 2, 3, 4});
    struct td_tensor *b = mk(TD_DTYPE_F32, (int64_t[]){1}, 1, (double[]){1});
    x->requires_grad = w->requires_grad = b->requires_grad = true;
    struct td_op_args a;
    td_op_args_init(&a);
    a.grad_enabled = true;
    /* out[0,0] = 1*1 + 2*2 + 4*3 + 5*4 = 37, [0,1] = 2+6+15+24 = 47, [1,0] = 4+10+21+32 = 67,
    ** [1,1] = 5+12+24+36 = 77; plus the bias 1 */
    struct td_tensor *ops[3] = {x, w, b};
    struct td_tensor *y = run(TD_OP_CONV2D, ops, 3, &a, &err);
    assert_non_null(y);
    expect_values(y, TD_DTYPE_F32, 4, (int64_t[]){1, 1, 2, 2}, (double[]){38, 48, 68, 78});
    assert_string_equal(td_node_name(y->grad_fn), "ConvolutionBackward0");
    struct td_tensor *s = sum_all(y);
    assert_int_equal(td_autograd_backward(s, NULL, false, NULL, &err), 0);
    /* d/dx: the weights covering each pixel: corners 1, 2, 3, 4; edges 1+2, 1+3, 2+4, 3+4; the
    ** centre all four, 10 */
    expect_values(x->grad, TD_DTYPE_F32, 4, (int64_t[]){1, 1, 3, 3},
                  (double[]){1, 3, 2, 4, 10, 6, 3, 7, 4});
    /* d/dw[a][b]: the sum of the 2 x 2 block of x at offset (a, b): 1+2+4+5, 2+3+5+6, ... */
    expect_values(w->grad, TD_DTYPE_F32, 4, (int64_t[]){1, 1, 2, 2}, (double[]){12, 16, 24, 28});
    expect_values(b->grad, TD_DTYPE_F32, 1, (int64_t[]){1}, (double[]){4});
    td_tensor_unref(s);
    td_tensor_unref(y);

    /* padding 1, stride 2, a ones kernel in float64: the padded 5 x 5 walked by 2 gives 2 x 2:
    ** [x00, x01+x02, x10+x20, x11+x12+x21+x22] = [1, 5, 11, 28] */
    struct td_tensor *xd = mk(TD_DTYPE_F64, (int64_t[]){1, 1, 3, 3}, 4, X9);
    struct td_tensor *wd = mk(TD_DTYPE_F64, (int64_t[]){1, 1, 2, 2}, 4, (double[]){1, 1, 1, 1});
    td_op_args_init(&a);
    a.stride[0] = 2, a.nstride = 1, a.padding[0] = 1, a.npadding = 1;
    struct td_tensor *o2[2] = {xd, wd};
    y = run(TD_OP_CONV2D, o2, 2, &a, &err);
    assert_non_null(y);
    expect_values(y, TD_DTYPE_F64, 4, (int64_t[]){1, 1, 2, 2}, (double[]){1, 5, 11, 28});
    td_tensor_unref(y);

    /* integers convolve exactly, as torch's Long convolution: 37, 47, 67, 77 */
    struct td_tensor *xi = mk(TD_DTYPE_I64, (int64_t[]){1, 1, 3, 3}, 4, X9);
    struct td_tensor *wi = mk(TD_DTYPE_I64, (int64_t[]){1, 1, 2, 2}, 4, (double[]){1, 2, 3, 4});
    td_op_args_init(&a);
    struct td_tensor *o3[2] = {xi, wi};
    y = run(TD_OP_CONV2D, o3, 2, &a, &err);
    assert_non_null(y);
    expect_values(y, TD_DTYPE_I64, 4, (int64_t[]){1, 1, 2, 2}, (double[]){37, 47, 67, 77});
    td_tensor_unref(y);

    /* unbatched: [C, H, W] in, [Co, Ho, Wo] out; torch's grad_fn is the squeeze's */
    struct td_tensor *xu = mk(TD_DTYPE_F32, (int64_t[]){1, 3, 3}, 3, X9);
    xu->requires_grad = true;
    td_op_args_init(&a);
    a.grad_enabled = true;
    struct td_tensor *o4[2] = {xu, w};
    y = run(TD_OP_CONV2D, o4, 2, &a, &err);
    assert_non_null(y);
    expect_values(y, TD_DTYPE_F32, 3, (int64_t[]){1, 2, 2}, (double[]){37, 47, 67, 77});
    assert_string_equal(td_node_name(y->grad_fn), "SqueezeBackward1");
    td_tensor_unref(y);

    struct td_tensor *all[] = {x, w, b, xd, wd, xi, wi, xu};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        td_tensor_unref(all[i]);
    }
}

static void test_conv1d_groups_and_same(void **state)
{
    (void)state;
    struct td_err err;
    struct td_op_args a;
    /* groups 2: channel 0 by [1, 1] gives [1+2, 2+3]; channel 1 by [1, -1] gives [4-5, 5-6] */
    struct td_tensor *x = mk(TD_DTYPE_F32, (int64_t[]){1, 2, 3}, 3, (double[]){1, 2, 3, 4, 5, 6});
    struct td_tensor *w = mk(TD_DTYPE_F32, (int64_t[]){2, 1, 2}, 3, (double[]){1, 1, 1, -1});
    td_op_args_init(&a);
    a.groups = 2;
    struct td_tensor *o[2] = {x, w};
    struct td_tensor *y = run(TD_OP_CONV1D, o, 2, &a, &err);
    assert_non_null(y);
    expect_values(y, TD_DTYPE_F32, 3, (int64_t[]){1, 2, 2}, (double[]){3, 5, -1, -1});
    td_tensor_unref(y);
    /* 'same' with an even kernel pads 0 on the left and 1 on the right (torch's split):
    ** out[i] = x[i] + 10 x[i+1] = [1+20, 2+30, 3+40, 4+0] */
    struct td_tensor *x4 = mk(TD_DTYPE_F64, (int64_t[]){1, 1, 4}, 3, (double[]){1, 2, 3, 4});
    struct td_tensor *w2 = mk(TD_DTYPE_F64, (int64_t[]){1, 1, 2}, 3, (double[]){1, 10});
    td_op_args_init(&a);
    a.padding_mode = TD_PAD_SAME;
    struct td_tensor *o2[2] = {x4, w2};
    y = run(TD_OP_CONV1D, o2, 2, &a, &err);
    assert_non_null(y);
    expect_values(y, TD_DTYPE_F64, 3, (int64_t[]){1, 1, 4}, (double[]){21, 32, 43, 4});
    td_tensor_unref(y);
    /* 'same' with a stride is refused, as torch refuses it */
    a.stride[0] = 2, a.nstride = 1;
    assert_null(run(TD_OP_CONV1D, o2, 2, &a, &err));
    assert_string_equal(err.msg, "padding='same' is not supported for strided convolutions");
    td_tensor_unref(x);
    td_tensor_unref(w);
    td_tensor_unref(x4);
    td_tensor_unref(w2);
}

static void test_conv_errors(void **state)
{
    (void)state;
    struct td_err err;
    struct td_op_args a;
    td_op_args_init(&a);
    struct td_tensor *x = zeros(TD_DTYPE_F32, (int64_t[]){1, 2, 3, 3}, 4);
    struct td_tensor *w5 = zeros(TD_DTYPE_F32, (int64_t[]){3, 5, 2, 2}, 4);
    struct td_tensor *w = zeros(TD_DTYPE_F32, (int64_t[]){3, 2, 2, 2}, 4);
    struct td_tensor *wbig = zeros(TD_DTYPE_F32, (int64_t[]){3, 2, 4, 4}, 4);
    struct td_tensor *wd = zeros(TD_DTYPE_F64, (int64_t[]){3, 2, 2, 2}, 4);
    struct td_tensor *b2 = zeros(TD_DTYPE_F32, (int64_t[]){2}, 1);
    struct td_tensor *v = zeros(TD_DTYPE_F32, (int64_t[]){5}, 1);
    struct td_tensor *o[3] = {x, w5, NULL};
    assert_null(run(TD_OP_CONV2D, o, 2, &a, &err));
    assert_string_equal(err.msg, "Given groups=1, weight of size [3, 5, 2, 2], expected "
                                 "input[1, 2, 3, 3] to have 5 channels, but got 2 channels "
                                 "instead");
    o[0] = v, o[1] = w;
    assert_null(run(TD_OP_CONV2D, o, 2, &a, &err));
    assert_string_equal(err.msg, "Expected 3D (unbatched) or 4D (batched) input to conv2d, but "
                                 "got input of size: [5]");
    o[0] = x, o[1] = wbig;
    assert_null(run(TD_OP_CONV2D, o, 2, &a, &err));
    assert_string_equal(err.msg, "Calculated padded input size per channel: (3 x 3). Kernel "
                                 "size: (4 x 4). Kernel size can't be greater than actual input "
                                 "size");
    o[1] = wd;
    assert_null(run(TD_OP_CONV2D, o, 2, &a, &err));
    assert_string_equal(err.msg, "expected scalar type Float but found Double");
    o[1] = w, o[2] = b2;
    assert_null(run(TD_OP_CONV2D, o, 3, &a, &err));
    assert_string_equal(err.msg, "Given weight of size [3, 2, 2, 2], expected bias to be "
                                 "1-dimensional with 3 elements, but got bias of size [2] "
                                 "instead");
    a.groups = 2;
    assert_null(run(TD_OP_CONV2D, o, 2, &a, &err));
    assert_string_equal(err.msg, "Given groups=2, expected weight to be divisible by 2 at "
                                 "dimension 0, but got weight of size [[3, 2, 2, 2]] instead");
    td_op_args_init(&a);
    a.stride[0] = a.stride[1] = a.stride[2] = 1, a.nstride = 3;
    assert_null(run(TD_OP_CONV2D, o, 2, &a, &err));
    assert_string_equal(err.msg, "expected stride to be a single integer value or a list of 2 "
                                 "values to match the convolution dimensions, but got "
                                 "stride=[1, 1, 1]");
    td_op_args_init(&a);
    a.padding[0] = -1, a.npadding = 1;
    assert_null(run(TD_OP_CONV2D, o, 2, &a, &err));
    assert_string_equal(err.msg, "negative padding is not supported");
    struct td_tensor *all[] = {x, w5, w, wbig, wd, b2, v};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        td_tensor_unref(all[i]);
    }
}

/* conv2d's gradients against central differences of L = sum(conv2d(x, w, b) * m) in float64,
** with stride, padding, dilation and groups. */
static void test_conv2d_grad_finite_differences(void **state)
{
    (void)state;
    struct td_err err;
    int64_t xs[] = {2, 4, 5, 6}, ws[] = {6, 2, 3, 2}, bs[] = {6};
    double xv[240], wv[72], bv[6];
    for (int i = 0; i < 240; i++) {
        xv[i] = sin(0.37 * i) + 0.1 * (i % 7);
    }
    for (int i = 0; i < 72; i++) {
        wv[i] = cos(0.53 * i);
    }
    for (int i = 0; i < 6; i++) {
        bv[i] = 0.25 * i;
    }
    struct td_tensor *x = mk(TD_DTYPE_F64, xs, 4, xv);
    struct td_tensor *w = mk(TD_DTYPE_F64, ws, 4, wv);
    struct td_tensor *b = mk(TD_DTYPE_F64, bs, 1, bv);
    struct td_op_args a;
    td_op_args_init(&a);
    a.stride[0] = 2, a.stride[1] = 1, a.nstride = 2;
    a.padding[0] = 1, a.padding[1] = 2, a.npadding = 2;
    a.dilation[0] = 1, a.dilation[1] = 2, a.ndilation = 2;
    a.groups = 2;
    struct td_tensor *ops[3] = {x, w, b};
    /* the weights m of the loss: a fixed pattern over the output */
    struct td_tensor *y = run(TD_OP_CONV2D, ops, 3, &a, &err);
    assert_non_null(y);
    int64_t yn = y->numel;
    double mv[512];
    assert_true(yn <= 512);
    for (int64_t i = 0; i < yn; i++) {
        mv[i] = 0.5 + 0.01 * (double)(i % 13);
    }
    struct td_tensor *m = mk(TD_DTYPE_F64, y->shape, y->ndim, mv);
    td_tensor_unref(y);
    x->requires_grad = w->requires_grad = b->requires_grad = true;
    a.grad_enabled = true;
    y = run(TD_OP_CONV2D, ops, 3, &a, &err);
    assert_non_null(y);
    struct td_tensor *pm[2] = {y, m};
    struct td_op_args ga;
    td_op_args_init(&ga);
    ga.grad_enabled = true;
    struct td_tensor *p = run(TD_OP_MUL, pm, 2, &ga, &err);
    struct td_tensor *s = sum_all(p);
    assert_int_equal(td_autograd_backward(s, NULL, false, NULL, &err), 0);
    td_tensor_unref(s);
    td_tensor_unref(p);
    td_tensor_unref(y);
    a.grad_enabled = false;
    for (int which = 0; which < 3; which++) {
        struct td_tensor *t = ops[which];
        double *d = td_tensor_data(t);
        for (int64_t i = 0; i < t->numel; i += which == 0 ? 7 : 3) {
            double keep = d[i], h = 1e-6, f[2];
            for (int k = 0; k < 2; k++) {
                d[i] = keep + (k == 0 ? h : -h);
                struct td_tensor *yy = run(TD_OP_CONV2D, ops, 3, &a, &err);
                double acc = 0;
                for (int64_t j = 0; j < yn; j++) {
                    acc += at(yy, j) * mv[j];
                }
                f[k] = acc;
                td_tensor_unref(yy);
            }
            d[i] = keep;
            double want = (f[0] - f[1]) / (2 * h);
            double got = at(t->grad, i);
            if (fabs(want - got) > 1e-5 * (1 + fabs(want))) {
                fail_msg("operand %d element %lld: autograd %g, finite differences %g", which,
                         (long long)i, got, want);
            }
        }
    }
    td_tensor_unref(m);
    td_tensor_unref(x);
    td_tensor_unref(w);
    td_tensor_unref(b);
}

static void test_pools(void **state)
{
    (void)state;
    struct td_err err;
    struct td_op_args a;
    double v16[16];
    for (int i = 0; i < 16; i++) {
        v16[i] = i + 1;
    }
    struct td_tensor *x = mk(TD_DTYPE_F32, (int64_t[]){1, 4, 4}, 3, v16);
    x->requires_grad = true;
    /* max over 2 x 2 blocks of 1..16: 6, 8, 14, 16 at flat indices 5, 7, 13, 15 */
    td_op_args_init(&a);
    a.kernel_size[0] = 2, a.nkernel_size = 1;
    a.grad_enabled = true;
    struct td_tensor *more[2] = {NULL, NULL};
    a.more_out = more;
    a.want_more[0] = true;
    struct td_tensor *y = run(TD_OP_MAX_POOL2D, &x, 1, &a, &err);
    assert_non_null(y);
    expect_values(y, TD_DTYPE_F32, 3, (int64_t[]){1, 2, 2}, (double[]){6, 8, 14, 16});
    expect_values(more[0], TD_DTYPE_I64, 3, (int64_t[]){1, 2, 2}, (double[]){5, 7, 13, 15});
    assert_string_equal(td_node_name(y->grad_fn), "MaxPool2DWithIndicesBackward0");
    struct td_tensor *s = sum_all(y);
    assert_int_equal(td_autograd_backward(s, NULL, false, NULL, &err), 0);
    expect_values(x->grad, TD_DTYPE_F32, 3, (int64_t[]){1, 4, 4},
                  (double[]){0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1});
    td_tensor_unref(more[0]);
    td_tensor_unref(s);
    td_tensor_unref(y);

    /* avg over 2 x 2 blocks: (1+2+5+6)/4 = 3.5, 5.5, 11.5, 13.5; divisor_override 1: sums */
    td_op_args_init(&a);
    a.kernel_size[0] = 2, a.nkernel_size = 1, a.count_include_pad = true;
    y = run(TD_OP_AVG_POOL2D, &x, 1, &a, &err);
    assert_non_null(y);
    expect_values(y, TD_DTYPE_F32, 3, (int64_t[]){1, 2, 2}, (double[]){3.5, 5.5, 11.5, 13.5});
    td_tensor_unref(y);
    a.divisor_override = 1;
    y = run(TD_OP_AVG_POOL2D, &x, 1, &a, &err);
    assert_non_null(y);
    expect_values(y, TD_DTYPE_F32, 3, (int64_t[]){1, 2, 2}, (double[]){14, 22, 46, 54});
    td_tensor_unref(y);
    /* padding 1, stride 2 on the 4 x 4: 3 x 3 out; cell [0][0] sees only x00 = 1 and cell
    ** [0][1] x01 + x02 = 5: counting the padding divides by 4, not counting it by 1 and 2 */
    td_op_args_init(&a);
    a.kernel_size[0] = 2, a.nkernel_size = 1, a.padding[0] = 1, a.npadding = 1;
    a.count_include_pad = true;
    y = run(TD_OP_AVG_POOL2D, &x, 1, &a, &err);
    assert_non_null(y);
    assert_int_equal(y->shape[1], 3);
    assert_true(at(y, 0) == 0.25 && at(y, 1) == 1.25);
    td_tensor_unref(y);
    a.count_include_pad = false;
    y = run(TD_OP_AVG_POOL2D, &x, 1, &a, &err);
    assert_non_null(y);
    assert_true(at(y, 0) == 1 && at(y, 1) == 2.5);
    td_tensor_unref(y);

    /* adaptive 3 x 3 -> 2 x 2: windows rows/cols [0, 2) and [1, 3): means 3, 4, 6, 7; the
    ** gradient of the sum: 1/4 per covering window (corners 1, edges 2, the centre 4) */
    struct td_tensor *x9 = mk(TD_DTYPE_F64, (int64_t[]){1, 3, 3}, 3, X9);
    x9->requires_grad = true;
    td_op_args_init(&a);
    a.output_size[0] = 2, a.noutput_size = 1, a.grad_enabled = true;
    y = run(TD_OP_ADAPTIVE_AVG_POOL2D, &x9, 1, &a, &err);
    assert_non_null(y);
    expect_values(y, TD_DTYPE_F64, 3, (int64_t[]){1, 2, 2}, (double[]){3, 4, 6, 7});
    assert_string_equal(td_node_name(y->grad_fn), "AdaptiveAvgPool2DBackward0");
    s = sum_all(y);
    assert_int_equal(td_autograd_backward(s, NULL, false, NULL, &err), 0);
    expect_values(x9->grad, TD_DTYPE_F64, 3, (int64_t[]){1, 3, 3},
                  (double[]){0.25, 0.5, 0.25, 0.5, 1, 0.5, 0.25, 0.5, 0.25});
    td_tensor_unref(s);
    td_tensor_unref(y);

    /* torch's errors */
    td_op_args_init(&a);
    a.kernel_size[0] = 5, a.nkernel_size = 1;
    assert_null(run(TD_OP_MAX_POOL2D, &x, 1, &a, &err));
    assert_string_equal(err.msg, "Given input size: (1x4x4). Calculated output size: (1x0x0). "
                                 "Output size is too small");
    a.kernel_size[0] = 2, a.padding[0] = 2, a.npadding = 1;
    assert_null(run(TD_OP_AVG_POOL2D, &x, 1, &a, &err));
    assert_string_equal(err.msg, "pad should be at most half of kernel size, but got pad=2 and "
                                 "kernel_size=2");
    struct td_tensor *xi = mk(TD_DTYPE_I64, (int64_t[]){1, 4, 4}, 3, v16);
    td_op_args_init(&a);
    a.kernel_size[0] = 2, a.nkernel_size = 1;
    assert_null(run(TD_OP_MAX_POOL2D, &xi, 1, &a, &err));
    assert_string_equal(err.msg, "\"max_pool2d\" not implemented for 'Long'");
    td_tensor_unref(xi);
    td_tensor_unref(x9);
    td_tensor_unref(x);
}

static void test_costs(void **state)
{
    (void)state;
    struct td_err err;
    struct td_op_args a;
    td_op_args_init(&a);
    struct td_cost c;
    /* conv2d [2, 3, 8, 8] by [4, 3, 3, 3]: out [2, 4, 6, 6] = 288 elements, each 27 products */
    struct td_tensor *x = zeros(TD_DTYPE_F32, (int64_t[]){2, 3, 8, 8}, 4);
    struct td_tensor *w = zeros(TD_DTYPE_F32, (int64_t[]){4, 3, 3, 3}, 4);
    struct td_operand in[2] = {tens(x), tens(w)};
    assert_int_equal(td_op_cost(TD_OP_CONV2D, in, 2, &a, &c, &err), 0);
    assert_int_equal(c.flops, 288 * 27);
    assert_int_equal(c.written, 288);
    assert_int_equal(c.out_bytes, 288 * 4);
    assert_int_equal(c.read, 384 + 108);
    assert_true(c.temp_bytes >= 27 * 36 * 4); /* at least one sample's column buffer */
    /* an expanded input of 2^60 logical elements costs 2^60, whatever backs it */
    struct td_tensor *one = mk(TD_DTYPE_F32, (int64_t[]){1, 1, 1, 1}, 4, (double[]){1});
    struct td_op_args ex;
    td_op_args_init(&ex);
    ex.has_dims = true, ex.ndims = 4;
    ex.dims[0] = (int64_t)1 << 30, ex.dims[1] = 1, ex.dims[2] = ex.dims[3] = (int64_t)1 << 15;
    struct td_tensor *big = run(TD_OP_EXPAND, &one, 1, &ex, &err);
    assert_non_null(big);
    struct td_tensor *w1 = mk(TD_DTYPE_F32, (int64_t[]){1, 1, 1, 1}, 4, (double[]){2});
    struct td_operand bi[2] = {tens(big), tens(w1)};
    assert_int_equal(td_op_cost(TD_OP_CONV2D, bi, 2, &a, &c, &err), 0);
    assert_true(c.read >= (int64_t)1 << 60);
    assert_true(c.written >= (int64_t)1 << 60);
    assert_true(c.temp_bytes >= (int64_t)1 << 60);
    struct td_operand bp[1] = {tens(big)};
    td_op_args_init(&a);
    a.kernel_size[0] = 2, a.nkernel_size = 1;
    assert_int_equal(td_op_cost(TD_OP_MAX_POOL2D, bp, 1, &a, &c, &err), 0);
    assert_true(c.read >= (int64_t)1 << 60);
    /* refused operands cost nothing and report it: a number where the weight goes */
    struct td_operand bad[2] = {tens(x), num(td_scalar_i(1))};
    assert_int_not_equal(td_op_cost(TD_OP_CONV2D, bad, 2, &a, &c, &err), 0);
    td_tensor_unref(x);
    td_tensor_unref(w);
    td_tensor_unref(one);
    td_tensor_unref(big);
    td_tensor_unref(w1);
}

/* Backward reads the saved input and weight (ConvolutionBackward0 saves both, as the pools
** save their input): changing either in place before backward is refused, as torch refuses. */
static void test_saved_values_are_checked(void **state)
{
    (void)state;
    struct td_err err;
    for (int which = 0; which < 3; which++) {
        struct td_tensor *leaf = mk(TD_DTYPE_F32, (int64_t[]){1, 1, 3, 3}, 4, X9);
        struct td_tensor *w = mk(TD_DTYPE_F32, (int64_t[]){1, 1, 2, 2}, 4, (double[]){1, 2, 3, 4});
        leaf->requires_grad = true;
        struct td_op_args a;
        td_op_args_init(&a);
        a.grad_enabled = true;
        struct td_operand m1[2] = {tens(leaf), num(td_scalar_i(1))};
        struct td_tensor *x = NULL, *y = NULL, *t = NULL;
        assert_int_equal(td_op_apply(TD_OP_MUL, m1, 2, &a, false, NULL, &x, &err), 0);
        struct td_tensor *ops[2] = {x, w};
        if (which < 2) {
            y = run(TD_OP_CONV2D, ops, 2, &a, &err);
        } else {
            a.kernel_size[0] = 2, a.nkernel_size = 1;
            y = run(TD_OP_MAX_POOL2D, &x, 1, &a, &err);
        }
        assert_non_null(y);
        struct td_operand add[2] = {tens(which == 1 ? w : x), num(td_scalar_i(1))};
        td_op_args_init(&a);
        assert_int_equal(td_op_apply(TD_OP_ADD, add, 2, &a, true, NULL, &t, &err), 0);
        td_tensor_unref(t);
        struct td_tensor *s = sum_all(y);
        assert_int_not_equal(td_autograd_backward(s, NULL, false, NULL, &err), 0);
        assert_non_null(strstr(err.msg, "one of the variables needed for gradient computation "
                                        "has been modified by an inplace operation"));
        td_tensor_unref(s);
        td_tensor_unref(y);
        td_tensor_unref(x);
        td_tensor_unref(w);
        td_tensor_unref(leaf);
    }
}

/* The kernels' temporaries (operand copies, the column buffer) are charged to the op's quota
** while they live: a limit the result fits in but the column buffer does not refuses the op,
** and nothing stays charged afterwards. */
static void test_temporaries_are_charged(void **state)
{
    (void)state;
    struct td_err err;
    /* x [1, 1, 3, 40] in float64 (a copy: it is a transposed view), w [1, 1, 3, 3]: the result
    ** [1, 1, 1, 38] is 304 bytes; the column buffer 9 x 38 doubles is 2736 */
    struct td_tensor *base = zeros(TD_DTYPE_F64, (int64_t[]){1, 1, 40, 3}, 4);
    struct td_op_args tr;
    td_op_args_init(&tr);
    tr.dim = 2, tr.dim2 = 3;
    struct td_tensor *x = run(TD_OP_TRANSPOSE, &base, 1, &tr, &err);
    assert_non_null(x);
    struct td_tensor *w = zeros(TD_DTYPE_F64, (int64_t[]){1, 1, 3, 3}, 4);
    struct td_quota q;
    td_quota_init(&q, "session memory", 2000, NULL);
    struct td_operand in[2] = {tens(x), tens(w)};
    struct td_tensor *y = NULL;
    assert_int_equal(td_op_apply(TD_OP_CONV2D, in, 2, NULL, false, &q, &y, &err), TD_EQUOTA);
    assert_null(y);
    assert_int_equal(atomic_load(&q.used), 0);
    td_quota_init(&q, "session memory", 8000, NULL);
    assert_int_equal(td_op_apply(TD_OP_CONV2D, in, 2, NULL, false, &q, &y, &err), 0);
    assert_int_equal(atomic_load(&q.used), 38 * 8); /* only the result stays */
    td_tensor_unref(y);
    assert_int_equal(atomic_load(&q.used), 0);
    td_tensor_unref(x);
    td_tensor_unref(w);
    td_tensor_unref(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv2d_values_and_grads),
        cmocka_unit_test(test_conv1d_groups_and_same),
        cmocka_unit_test(test_conv_errors),
        cmocka_unit_test(test_conv2d_grad_finite_differences),
        cmocka_unit_test(test_pools),
        cmocka_unit_test(test_costs),
        cmocka_unit_test(test_saved_values_are_checked),
        cmocka_unit_test(test_temporaries_are_charged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
