/* server/core/ops/family.h — the rules and kernels that ops.def names, by family file.
** Internal to core: only ops.c and the family files include it. */
#ifndef TD_CORE_OPS_FAMILY_H
#define TD_CORE_OPS_FAMILY_H

#include "../ops.h"

/* ops.c: shared rules */
enum td_dtype td_result_type(const struct td_operand *in, int nin);
td_dtype_fn td_dtype_rule_promote;
td_dtype_fn td_dtype_rule_true_div;
#define shape_broadcast td_shape_broadcast
#define dtype_promote td_dtype_rule_promote
#define dtype_true_div td_dtype_rule_true_div

/* elementwise.c */
td_fwd_fn td_fwd_add, td_fwd_sub, td_fwd_mul, td_fwd_div;
#define fwd_add td_fwd_add
#define fwd_sub td_fwd_sub
#define fwd_mul td_fwd_mul
#define fwd_div td_fwd_div

/* Copies src (any strides, any dtype) into dst (any strides, same shape), casting like torch's
** .to(): floats to ints truncate toward zero, anything to bool is != 0. */
void td_cast_copy(struct td_tensor *dst, const struct td_tensor *src);

/* matmul.c */
td_shape_fn td_shape_matmul;
td_dtype_fn td_dtype_rule_matmul;
td_fwd_fn td_fwd_matmul;
int64_t td_matmul_work(const struct td_operand *in);
#define shape_matmul td_shape_matmul
#define dtype_matmul td_dtype_rule_matmul
#define fwd_matmul td_fwd_matmul

#endif
