/* server/core/ops/custom.c — custom_function: the node of a torch.autograd.Function.
**
** The client runs a Function's forward as ordinary ops (outside the graph), then this op: its
** result is a view of the forward's output (operand 0), and td_autograd_record gives it a node
** over all operands, flagged TD_OPF_CUSTOM, named by the client (args->equation, e.g.
** "MyReLUBackward") and carrying the client's id for the Function's context
** (args->function_id). td_backward_step stops at such a node and the client supplies its
** input gradients (td_backward_give). No values are read or written: the cost is a view's.
*/
#include <string.h>

#include "family.h"

int td_make_custom_function(struct td_tensor **out, const struct td_operand *in, int nin,
                            const struct td_op_args *a, struct td_quota *q, struct td_err *err)
{
    (void)q;
    if (nin < 2 || nin > TD_NODE_MAX_IN) {
        return td_err_set(err, TD_EINVAL,
                          "custom_function takes its forward's output and 1 to %d tensor inputs",
                          TD_NODE_MAX_IN - 1);
    }
    for (int i = 0; i < nin; i++) {
        if (in[i].t == NULL) {
            return td_err_set(err, TD_EINVAL, "custom_function's operands are tensors");
        }
    }
    if (a->equation[0] == '\0') {
        return td_err_set(err, TD_EINVAL, "custom_function needs the Function's name");
    }
    struct td_tensor *t = in[0].t;
    return td_view_new(out, t, t->ndim, t->shape, t->strides, t->offset, err);
}

/* torch names a Function's node after its class: "<Class>Backward", as the client sent it. */
const char *td_grad_fn_custom_function(const struct td_node *n)
{
    return n->args.equation;
}
