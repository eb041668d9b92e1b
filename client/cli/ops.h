/* ops.h — tensorctl's view of the daemon's ops: the table generated from server/core/ops.def
** (tools/gen_cli_ops.py writes build/gen/cli_ops.h) and the questions the interpreter asks it.
**
** An op is found by torch's name ("log_softmax", "mT"); its wire name goes to libtensord, which
** maps it to the proto's Op enum. Its parameters are torch's, in torch's order, each with the
** OpArgs field it travels in, so a call is parsed from the signature alone: a row added to
** ops.def is a function and a Tensor method here with no edit to this directory. The table is
** static data owned by ops.c; every pointer returned here stays valid for the program's life.
*/
#ifndef TENSORCTL_OPS_H
#define TENSORCTL_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* One of torch's parameters (ops.def's `name[:field][=default]`). */
struct tdx_param {
    const char *name;      /* torch's name ("dim0") */
    const char *field;     /* the OpArgs field ("dim"); an operand's: "", "tensor", "tensors" */
    const char *deflt;     /* the default as a Python literal, or NULL when required */
    unsigned char operand; /* a tensor operand (or a number standing for one), in wire order */
    unsigned char varargs; /* *name: takes the remaining positional arguments */
    unsigned char kwonly;  /* after a lone `*` */
    unsigned char outsel;  /* only chooses outputs (unique's return_counts): no OpArgs field */
};

struct tdx_opdef {
    const char *name;    /* torch's ("mT") */
    const char *wire;    /* libtensord's ("mt": the proto's OP_MT) */
    int nin;             /* operands; -1: marked `:tensor` / `:tensors` in the parameters */
    const char *inplace; /* "add_" when the in-place form exists, else NULL */
    unsigned flags;      /* TDX_OPF_* (cli_ops.h), ops.def's TD_OPF_* */
    int param0, nparams; /* its parameters: tdx_op_param(op, 0 .. nparams-1) */
    int nout;            /* outputs (ops.def's `-> a, b`): 1, 2 or 3 */
    unsigned char named; /* torch.return_types.<name> (values, indices), not a plain tuple */
    signed char when[3]; /* output i exists only when parameter when[i] is given as neither
                         ** None nor False; -1: always */
};

/* The op torch calls `name`, or NULL. */
const struct tdx_opdef *tdx_op_find(const char *name);

/* The i-th op in ops.def's order, or NULL past the last. */
const struct tdx_opdef *tdx_op_at(size_t i);

/* op's i-th parameter (0 <= i < op->nparams). */
const struct tdx_param *tdx_op_param(const struct tdx_opdef *op, int i);

/* The parameter of op that torch calls `name`, or NULL. */
const struct tdx_param *tdx_op_param_named(const struct tdx_opdef *op, const char *name);

/* Whether op's result never requires grad (comparisons, argmax, *_like, detach ...). */
bool tdx_op_nodiff(const struct tdx_opdef *op);

/* Whether op `name` is a function here (torch.name, torch.nn.functional.name, torch.fill). */
bool tdx_op_is_function(const char *name);
/* Whether torch takes call forms the op's signature cannot state (ops.def: TD_OPF_OVERLOADED). */
bool tdx_op_overloaded(const char *name);

/* Whether torch has op `name` as a Tensor method: x.name(...), or with `inplace` x.name_(...). */
bool tdx_op_is_method(const char *name, bool inplace);

/* Writes the ops list of `:help ops`: torch's function and method names, wrapped to lines of
** at most `width` columns, each indented by two spaces; then the in-place-only methods. */
void tdx_op_help(FILE *out, int width);

#endif
