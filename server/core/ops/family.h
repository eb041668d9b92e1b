/* server/core/ops/family.h — the rules and kernels that ops.def names: their prototypes come from
** ops.def itself (one expansion below), plus the few helpers family files share.
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

/* Every function ops.def names, declared from ops.def itself with its column's type: a row is
** the op's whole contract and its functions need no other declaration. A NULL column declares
** nothing: `TD_NULLP_##x` pastes before NULL could expand, giving TD_NULLP_NULL (two arguments,
** the second 1) for NULL and an unknown name (the probe's default, 0) for a function. */
#define TD_NULLP_NULL ~, 1
#define TD_PROBE_2_(a, b, ...) b
#define TD_PROBE_(...) TD_PROBE_2_(__VA_ARGS__)
#define TD_CAT_(a, b) a##b
#define TD_CAT(a, b) TD_CAT_(a, b)
#define TD_DECL_0(type, fn) type fn;
#define TD_DECL_1(type, fn)
#define TD_DECL(probe, type, fn) TD_CAT(TD_DECL_, TD_PROBE_(probe, 0, ~))(type, fn)
#define OP(id, name, nin, inplace, flags, gname, ghook, sig, shape, dtype, fwd, make, bwd, cost)   \
    TD_DECL(TD_NULLP_##ghook, td_grad_fn_hook, ghook)                                              \
    TD_DECL(TD_NULLP_##shape, td_shape_fn, shape)                                                  \
    TD_DECL(TD_NULLP_##dtype, td_dtype_fn, dtype)                                                  \
    TD_DECL(TD_NULLP_##fwd, td_fwd_fn, fwd)                                                        \
    TD_DECL(TD_NULLP_##make, td_make_fn, make)                                                     \
    TD_DECL(TD_NULLP_##bwd, td_bwd_fn, bwd)                                                        \
    TD_DECL(TD_NULLP_##cost, td_cost_fn, cost)
#include "../ops.def"
#undef OP

/* elementwise.c */
/* Copies src (any strides, any dtype) into dst (any strides, same shape), casting like torch's
** .to(): floats to ints truncate toward zero, anything to bool is != 0. Checks the current
** request's cancel between chunks: returns 0, or its error with dst partly written. */
int td_cast_copy(struct td_tensor *dst, const struct td_tensor *src, struct td_err *err);
/* A row kernel: o[i] = f(a[i], b[i]) over n elements with element strides (b unused by unary
** ones). td_elementwise_rows runs one over out = f(in[0][, in[1]]) as elementwise.c's ops run:
** operands cast to `compute` and broadcast over out's shape, the kernel writing dtype `kout`
** (cast into out when out's dtype differs), in parallel chunks with cancel checks. */
typedef void td_row_fn(int64_t n, char *o, int64_t so, const char *a, int64_t sa, const char *b,
                       int64_t sb);
int td_elementwise_rows(td_row_fn *k, struct td_tensor *out, const struct td_operand *in, int nin,
                        enum td_dtype compute, enum td_dtype kout, struct td_quota *q,
                        struct td_err *err);
/* Whether td_elementwise_rows takes its fast path for these operands (besides out->dtype ==
** kout and at most one chunk of elements): one or two tensor operands, all of dtype `compute`,
** contiguous, with out's element count (so none broadcasts), and out contiguous. Each element
** is then at the same index in every operand; tests compare both paths. */
extern bool td_ops_fast; /* td_ops_set_fast_paths */
bool td_elementwise_dense(const struct td_operand *in, int nin, const struct td_tensor *out,
                          enum td_dtype compute);

/* shape.c */
/* Whether reshape/flatten (a->op) of t copies: 1, 0 (a view), or -1 (the op will refuse). */
int td_reshape_copies(const struct td_tensor *t, const struct td_op_args *a);
int td_wrap_dim(int64_t dim, int ndim, int64_t *out, struct td_err *err);
/* A new view of base's storage (shape checked: negative dims or sizes past 2^63 refused). */
int td_view_new(struct td_tensor **out, struct td_tensor *base, int ndim, const int64_t *shape,
                const int64_t *strides, int64_t offset, struct td_err *err);

/* matmul.c */
/* Bytes of the contiguous copies matmul makes of operands BLAS cannot read in place. */
int64_t td_matmul_temp_bytes(const struct td_tensor *a, const struct td_tensor *b);
/* linear(x, W, b) for a 2-D x, 2-D W and 1-D b of one float dtype whose operands BLAS reads in
** place, as torch's addmm: out's rows start as b and BLAS adds x @ W.T onto them (beta = 1), so
** there is no separate product tensor and no pass to add the bias. Returns 1, having done
** nothing, when the operands are not that case (the caller runs the general path), else 0 or an
** error. The result is charged to q. */
int td_linear_addmm(struct td_tensor **out, const struct td_tensor *x, const struct td_tensor *w,
                    const struct td_tensor *b, struct td_quota *q, struct td_err *err);

#endif
