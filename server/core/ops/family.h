/* server/core/ops/family.h — the rules and kernels that ops.def names, by family file.
** Internal to core: only ops.c and the family files include it. */
#ifndef TD_CORE_OPS_FAMILY_H
#define TD_CORE_OPS_FAMILY_H

#include "../autograd.h"
#include "../ops.h"

/* Backward helpers: td_op_apply with grad recording off (args NULL or without grad_enabled). */
static inline struct td_operand td_t(struct td_tensor *t)
{
    struct td_operand o = {.t = t};
    return o;
}
static inline struct td_operand td_s(struct td_scalar s)
{
    struct td_operand o = {.t = NULL, .s = s};
    return o;
}
static inline int td_bw1(enum td_op_id op, struct td_operand a, const struct td_op_args *args,
                         struct td_quota *q, struct td_tensor **out, struct td_err *err)
{
    return td_op_apply(op, &a, 1, args, false, q, out, err);
}
static inline int td_bw2(enum td_op_id op, struct td_operand a, struct td_operand b,
                         struct td_quota *q, struct td_tensor **out, struct td_err *err)
{
    struct td_operand in[2] = {a, b};
    return td_op_apply(op, in, 2, NULL, false, q, out, err);
}

/* ops.c: shared rules */
td_dtype_fn td_dtype_rule_promote, td_dtype_rule_true_div, td_dtype_rule_compare,
    td_dtype_rule_logical, td_dtype_rule_same, td_dtype_rule_float, td_dtype_rule_to_bool;
#define shape_broadcast td_shape_broadcast
#define dtype_promote td_dtype_rule_promote
#define dtype_true_div td_dtype_rule_true_div
#define dtype_compare td_dtype_rule_compare
#define dtype_logical td_dtype_rule_logical
#define dtype_same td_dtype_rule_same
#define dtype_float td_dtype_rule_float
#define dtype_to_bool td_dtype_rule_to_bool

/* elementwise.c */
td_dtype_fn td_dtype_rule_sub, td_dtype_rule_neg, td_dtype_rule_abs, td_dtype_rule_gelu, td_dtype_rule_relu,
    td_dtype_rule_rounding, td_dtype_rule_where, td_dtype_rule_clamp;
#define dtype_sub td_dtype_rule_sub
#define dtype_neg td_dtype_rule_neg
#define dtype_abs td_dtype_rule_abs
#define dtype_gelu td_dtype_rule_gelu
#define dtype_relu td_dtype_rule_relu
#define dtype_rounding td_dtype_rule_rounding
#define dtype_where td_dtype_rule_where
#define dtype_clamp td_dtype_rule_clamp
td_fwd_fn td_fwd_add, td_fwd_sub, td_fwd_mul, td_fwd_div, td_fwd_floor_divide, td_fwd_remainder,
    td_fwd_pow, td_fwd_maximum, td_fwd_minimum, td_fwd_eq, td_fwd_ne, td_fwd_lt, td_fwd_le,
    td_fwd_gt, td_fwd_ge, td_fwd_logical_and, td_fwd_logical_or, td_fwd_logical_xor,
    td_fwd_where, td_fwd_unary, td_fwd_clamp;
#define fwd_add td_fwd_add
#define fwd_sub td_fwd_sub
#define fwd_mul td_fwd_mul
#define fwd_div td_fwd_div
#define fwd_floor_divide td_fwd_floor_divide
#define fwd_remainder td_fwd_remainder
#define fwd_pow td_fwd_pow
#define fwd_maximum td_fwd_maximum
#define fwd_minimum td_fwd_minimum
#define fwd_eq td_fwd_eq
#define fwd_ne td_fwd_ne
#define fwd_lt td_fwd_lt
#define fwd_le td_fwd_le
#define fwd_gt td_fwd_gt
#define fwd_ge td_fwd_ge
#define fwd_logical_and td_fwd_logical_and
#define fwd_logical_or td_fwd_logical_or
#define fwd_logical_xor td_fwd_logical_xor
#define fwd_where td_fwd_where
#define fwd_unary td_fwd_unary
#define fwd_clamp td_fwd_clamp
td_make_fn td_make_to;
#define make_to td_make_to

td_bwd_fn td_bw_add, td_bw_sub, td_bw_mul, td_bw_div, td_bw_pow, td_bw_neg, td_bw_exp,
    td_bw_log, td_bw_sqrt, td_bw_tanh, td_bw_sigmoid, td_bw_relu, td_bw_sum, td_bw_mean,
    td_bw_matmul, td_bw_reshape;
#define bw_add td_bw_add
#define bw_sub td_bw_sub
#define bw_mul td_bw_mul
#define bw_div td_bw_div
#define bw_pow td_bw_pow
#define bw_neg td_bw_neg
#define bw_exp td_bw_exp
#define bw_log td_bw_log
#define bw_sqrt td_bw_sqrt
#define bw_tanh td_bw_tanh
#define bw_sigmoid td_bw_sigmoid
#define bw_relu td_bw_relu
#define bw_sum td_bw_sum
#define bw_mean td_bw_mean
#define bw_matmul td_bw_matmul
#define bw_reshape td_bw_reshape
td_bwd_fn td_bw_identity, td_bw_transpose, td_bw_permute, td_bw_scatter_view, td_bw_softmax,
    td_bw_log_softmax, td_bw_mse_loss, td_bw_cross_entropy, td_bw_linear;
#define bw_identity td_bw_identity
#define bw_transpose td_bw_transpose
#define bw_permute td_bw_permute
#define bw_scatter_view td_bw_scatter_view
#define bw_softmax td_bw_softmax
#define bw_log_softmax td_bw_log_softmax
#define bw_mse_loss td_bw_mse_loss
#define bw_cross_entropy td_bw_cross_entropy
#define bw_linear td_bw_linear
td_bwd_fn td_bw_abs, td_bw_zero, td_bw_log1p, td_bw_expm1, td_bw_rsqrt, td_bw_sin, td_bw_cos,
    td_bw_tan, td_bw_gelu, td_bw_clamp, td_bw_maximum, td_bw_minimum, td_bw_where,
    td_bw_remainder, td_bw_prod, td_bw_extreme, td_bw_var_std, td_bw_norm_lse, td_bw_cat_stack,
    td_bw_same_op, td_bw_repeat, td_bw_outer, td_bw_copy;
#define bw_copy td_bw_copy
#define bw_abs td_bw_abs
#define bw_zero td_bw_zero
#define bw_log1p td_bw_log1p
#define bw_expm1 td_bw_expm1
#define bw_rsqrt td_bw_rsqrt
#define bw_sin td_bw_sin
#define bw_cos td_bw_cos
#define bw_tan td_bw_tan
#define bw_gelu td_bw_gelu
#define bw_clamp td_bw_clamp
#define bw_maximum td_bw_maximum
#define bw_minimum td_bw_minimum
#define bw_where td_bw_where
#define bw_remainder td_bw_remainder
#define bw_prod td_bw_prod
#define bw_extreme td_bw_extreme
#define bw_var_std td_bw_var_std
#define bw_norm_lse td_bw_norm_lse
#define bw_cat_stack td_bw_cat_stack
#define bw_same_op td_bw_same_op
#define bw_repeat td_bw_repeat
#define bw_outer td_bw_outer
td_make_fn td_make_detach;
#define make_detach td_make_detach

/* Copies src (any strides, any dtype) into dst (any strides, same shape), casting like torch's
** .to(): floats to ints truncate toward zero, anything to bool is != 0. Checks the current
** request's cancel between chunks: returns 0, or its error with dst partly written. */
int td_cast_copy(struct td_tensor *dst, const struct td_tensor *src, struct td_err *err);

/* shape.c */
/* Whether reshape/flatten (a->op) of t copies: 1, 0 (a view), or -1 (the op will refuse). */
int td_reshape_copies(const struct td_tensor *t, const struct td_op_args *a);
int td_wrap_dim(int64_t dim, int ndim, int64_t *out, struct td_err *err);
td_make_fn td_make_reshape, td_make_view, td_make_flatten, td_make_transpose, td_make_t,
    td_make_mt, td_make_permute, td_make_squeeze, td_make_unsqueeze, td_make_expand,
    td_make_narrow, td_make_select, td_make_slice, td_make_contiguous, td_make_clone,
    td_make_cat, td_make_stack, td_make_flip, td_make_repeat, td_make_tril, td_make_triu;
#define make_reshape td_make_reshape
#define make_view td_make_view
#define make_flatten td_make_flatten
#define make_transpose td_make_transpose
#define make_t td_make_t
#define make_mt td_make_mt
#define make_permute td_make_permute
#define make_squeeze td_make_squeeze
#define make_unsqueeze td_make_unsqueeze
#define make_expand td_make_expand
#define make_narrow td_make_narrow
#define make_select td_make_select
#define make_slice td_make_slice
#define make_contiguous td_make_contiguous
#define make_clone td_make_clone
#define make_cat td_make_cat
#define make_stack td_make_stack
#define make_flip td_make_flip
#define make_repeat td_make_repeat
#define make_tril td_make_tril
#define make_triu td_make_triu

/* reduce.c */
td_shape_fn td_shape_reduce;
td_dtype_fn td_dtype_rule_reduce;
td_fwd_fn td_fwd_reduce;
#define shape_reduce td_shape_reduce
#define dtype_reduce td_dtype_rule_reduce
#define fwd_reduce td_fwd_reduce

/* nn.c */
td_make_fn td_make_mm, td_make_bmm, td_make_outer, td_make_softmax, td_make_log_softmax,
    td_make_mse_loss, td_make_cross_entropy, td_make_linear;
#define make_mm td_make_mm
#define make_bmm td_make_bmm
#define make_outer td_make_outer
#define make_softmax td_make_softmax
#define make_log_softmax td_make_log_softmax
#define make_mse_loss td_make_mse_loss
#define make_cross_entropy td_make_cross_entropy
#define make_linear td_make_linear

/* create.c */
td_make_fn td_make_empty, td_make_randint, td_make_linspace, td_make_eye, td_make_zeros_like,
    td_make_ones_like, td_make_empty_like, td_make_full_like, td_make_rand_like,
    td_make_randn_like;
td_dtype_fn td_dtype_rule_self;
td_shape_fn td_shape_self;
td_fwd_fn td_fwd_fill, td_fwd_zero, td_fwd_copy, td_fwd_uniform, td_fwd_normal;
#define make_empty td_make_empty
#define make_randint td_make_randint
#define make_linspace td_make_linspace
#define make_eye td_make_eye
#define make_zeros_like td_make_zeros_like
#define make_ones_like td_make_ones_like
#define make_empty_like td_make_empty_like
#define make_full_like td_make_full_like
#define make_rand_like td_make_rand_like
#define make_randn_like td_make_randn_like
#define dtype_self td_dtype_rule_self
#define shape_self td_shape_self
#define fwd_fill td_fwd_fill
#define fwd_zero td_fwd_zero
#define fwd_copy td_fwd_copy
#define fwd_uniform td_fwd_uniform
#define fwd_normal td_fwd_normal

/* matmul.c */
td_shape_fn td_shape_matmul;
td_dtype_fn td_dtype_rule_matmul;
td_fwd_fn td_fwd_matmul;
/* Bytes of the contiguous copies matmul makes of operands BLAS cannot read in place. */
int64_t td_matmul_temp_bytes(const struct td_tensor *a, const struct td_tensor *b);
#define shape_matmul td_shape_matmul
#define dtype_matmul td_dtype_rule_matmul
#define fwd_matmul td_fwd_matmul

/* cost.c: the cost rules of ops.def */
td_cost_fn td_cost_elementwise, td_cost_reduce, td_cost_matmul, td_cost_outer, td_cost_view,
    td_cost_reshape, td_cost_contiguous, td_cost_copy, td_cost_to, td_cost_cat, td_cost_repeat,
    td_cost_softmax, td_cost_loss, td_cost_linear, td_cost_create, td_cost_linspace, td_cost_eye,
    td_cost_like;
#define cost_elementwise td_cost_elementwise
#define cost_reduce td_cost_reduce
#define cost_matmul td_cost_matmul
#define cost_outer td_cost_outer
#define cost_view td_cost_view
#define cost_reshape td_cost_reshape
#define cost_contiguous td_cost_contiguous
#define cost_copy td_cost_copy
#define cost_to td_cost_to
#define cost_cat td_cost_cat
#define cost_repeat td_cost_repeat
#define cost_softmax td_cost_softmax
#define cost_loss td_cost_loss
#define cost_linear td_cost_linear
#define cost_create td_cost_create
#define cost_linspace td_cost_linspace
#define cost_eye td_cost_eye
#define cost_like td_cost_like

#endif
