/* server/core/autograd.h — reverse-mode differentiation over a graph of nodes.
**
** When an op runs with grad mode on and a tensor input requires grad, td_op_apply records a node:
** the op, references to its tensor inputs (with their storage versions), and its arguments. The
** output holds the node as its grad_fn; a node never refers to its own output, so references
** form a DAG (handle table -> tensor -> grad_fn -> saved inputs) and dropping the last handle
** frees the graph. Backward walks the nodes from the root in reverse topological order, applies
** each op's backward rule (built from forward ops), reduces broadcast gradients to each input's
** shape, and accumulates into leaf tensors' .grad. Toposort, broadcast reduction, accumulation
** and version checks live here, once. Pure C.
*/
#ifndef TD_CORE_AUTOGRAD_H
#define TD_CORE_AUTOGRAD_H

#include <stdbool.h>

#include "ops.h"

#define TD_NODE_MAX_IN 8

struct td_node {
    int refs;
    struct td_node *dead_next; /* td_node_unref's list of nodes to free (refs 0) */
    enum td_op_id op;
    int nin;
    struct td_operand in[TD_NODE_MAX_IN]; /* tensor inputs referenced (saved), scalars kept */
    int64_t versions[TD_NODE_MAX_IN];     /* their storages' versions when saved; -1: unchecked */
    /* The edges backward follows, fixed when recorded as torch's are: in[i]'s grad_fn then (a
    ** reference; NULL for a leaf) and whether in[i] required grad then. An in-place op recorded
    ** later on in[i] (t.mul_(3)) or a requires_grad_() must not reroute this node's gradient. */
    struct td_node *next[TD_NODE_MAX_IN];
    bool edge[TD_NODE_MAX_IN];
    struct td_storage *out_storage; /* owned: the output's storage, when backward reads
                                            ** the output (TD_OPF_BW_OUT); never the output */
    int64_t out_version;            /* out_storage's version after the op wrote it */
    int64_t out_offset;             /* the output's layout in out_storage */
    int64_t out_strides[TD_MAX_DIMS];
    struct td_op_args args; /* rng cleared */
    int out_ndim;
    int64_t out_shape[TD_MAX_DIMS];
    enum td_dtype out_dtype;
    bool released;              /* saved tensors freed by a backward */
    const char *name;           /* grad_fn name (static), fixed when recorded */
    struct td_tensor *retained; /* weak: the output, when it retains its grad */
    int64_t graph_work;         /* what a backward from here may cost, in td_cost_work's units: this
                        ** node's share (td_autograd_node_work) plus its inputs' graph_work,
                        ** a shared part counted once per path to it (saturating) */
};

/* Work units one node adds to a backward's estimate beside its op's cost: the walk's
** bookkeeping, the rule's dispatch and its small temporaries (about a tiny op's). */
#define TD_AUTOGRAD_NODE_WORK 1024

/* What a backward from the roots t[0..n) may cost, in td_cost_work's units, before it is walked
** (rpc decides by it whether the loop may run it, as it does for an op): the roots' graph_work,
** or a leaf's size. An estimate from the ops' own cost rules: each node counts 3x its op's
** cost, 4x the elements of its result and of every input that requires grad (the gradients it
** makes and sums), and TD_AUTOGRAD_NODE_WORK; a step that costs more is still refused by
** --max-op-elements and stopped by the request's deadline wherever it runs. */
int64_t td_autograd_backward_work(struct td_tensor *const *t, int n);

/* The backward rules (td_bwd_fn) and grad_fn name hooks (td_grad_fn_hook) that read a node
** are typed in core/ops.h, beside the op table that names them. */

/* PyTorch's grad_fn class name for a node ("MulBackward0"). */
const char *td_node_name(const struct td_node *n);

void td_node_unref(struct td_node *n); /* NULL is a no-op */

/* For backward rules of TD_OPF_BW_OUT ops: the op's result as it was written (its values are
** checked by version before the rule runs), as a new reference to a tensor without history
** over the saved storage. Errors: TD_ENOMEM. */
int td_node_output(const struct td_node *n, struct td_tensor **out, struct td_err *err);

/* Called by td_op_apply after an op: records a node on `out` when grad mode is on and a tensor
** input requires grad. Errors: TD_ENOMEM. */
int td_autograd_record(enum td_op_id op, const struct td_operand *in, int nin,
                       const struct td_op_args *args, struct td_tensor *out, struct td_err *err);

/* Refuses in-place writes to leaves that require grad, with torch's message. */
int td_autograd_check_inplace(const struct td_tensor *t, bool grad_enabled, struct td_err *err);

/* Runs write(ctx), an in-place op on t, recording it in the graph when needed: t's previous
** history moves to a stand-in for its old value, and t gets a node for op. When the op's
** backward needs the old values, they are checked by version at backward time. */
int td_autograd_inplace(enum td_op_id op, struct td_tensor *t, const struct td_operand *in, int nin,
                        const struct td_op_args *args, int (*write)(void *ctx), void *ctx,
                        struct td_err *err);

/* root.backward(gradient, retain_graph). gradient (borrowed) may be NULL for a one-element root.
** Gradients accumulate into leaves' .grad (charged to q). Errors use torch's wording. */
int td_autograd_backward(struct td_tensor *root, struct td_tensor *gradient, bool retain_graph,
                         struct td_quota *q, struct td_err *err);

/* ---- a backward that may stop at a custom Function (autograd.grad, torch.autograd.Function)
** td_autograd_backward above is this for one root with no custom node in its graph. */

#define TD_BACKWARD_MAX_ROOTS 64
#define TD_BACKWARD_MAX_INPUTS 64
/* td_backward_step: waiting for a custom Function's gradients (neither 0, a TD_E* code, nor
** the -1 some helpers return) */
#define TD_BACKWARD_SUSPENDED 1000

struct td_backward; /* a walk over the graph, between steps (autograd.c) */

struct td_backward_req {
    struct td_tensor *const *roots; /* the outputs differentiated (borrowed) */
    struct td_tensor *const *grads; /* each root's gradient, or NULL for a one-element root */
    int nroots;
    struct td_tensor *const *inputs; /* autograd.grad's inputs / backward(inputs=); may be 0 */
    int ninputs;
    bool retain_graph;
    bool accumulate;   /* true: into .grad (backward); false: results only (autograd.grad) */
    bool allow_unused; /* autograd.grad: an input no path reaches gets no result, not an error */
};

/* Validates the request (torch's messages), sorts the graph and seeds the roots' gradients.
** With inputs, only the nodes on a path to one run. *out is freed with td_backward_free. */
int td_backward_begin(const struct td_backward_req *r, struct td_quota *q, struct td_backward **out,
                      struct td_err *err);

/* Runs nodes until the walk is done (0), reaches a custom Function's node
** (TD_BACKWARD_SUSPENDED: td_backward_pending tells which, td_backward_give goes on) or fails
** (a TD_E* code; the walk cannot go on, free it). */
int td_backward_step(struct td_backward *b, struct td_quota *q, struct td_err *err);

/* While suspended: the node's grad_fn name (NULL when not suspended), its Function id, the
** gradient of its output (borrowed) and how many inputs it takes gradients for. */
const char *td_backward_pending(const struct td_backward *b, uint64_t *function_id,
                                struct td_tensor **grad_output, int *ninputs);
bool td_backward_needs_input_grad(const struct td_backward *b, int i);

/* The suspended node's input gradients (n of them, in order; NULL: None), checked as torch
** checks a Function's: their number, and shapes that sum down to the inputs' (a different
** dtype is cast). Borrowed. */
int td_backward_give(struct td_backward *b, struct td_tensor *const *grads, int n,
                     struct td_quota *q, struct td_err *err);

/* After a done walk without accumulate: input i's gradient (borrowed) in *out, 1; 0 when no
** path reached it. */
int td_backward_result(const struct td_backward *b, int i, struct td_tensor **out);

void td_backward_free(struct td_backward *b); /* NULL is a no-op */

/* Sums g over broadcast dims down to `shape` (a new reference). */
int td_sum_to_shape(struct td_tensor *g, const int64_t *shape, int ndim, struct td_quota *q,
                    struct td_tensor **out, struct td_err *err);

/* ---- a tensor's autograd state, for the layers above core ----
** rpc and session read and change a tensor's requires_grad, retains_grad, .grad and grad_fn
** only through these, so torch's rules about them, and torch's messages, live in core, once.
** Every tensor is borrowed. */

/* t.requires_grad_(value): only a floating point tensor may require grad (TD_EDTYPE), and only
** a leaf's flag may be turned off (TD_EINVAL); torch's messages. */
int td_autograd_set_requires_grad(struct td_tensor *t, bool value, struct td_err *err);

/* t.retain_grad(): a non-leaf keeps its .grad after a backward (a leaf does anyway: no-op).
** TD_EINVAL, torch's message, when t does not require grad. */
int td_autograd_retain_grad(struct td_tensor *t, struct td_err *err);

/* The flags of a leaf just read back from a file, as the file lists them. A file cannot make
** a tensor that is not floating point require grad: that flag is dropped, not refused. */
void td_autograd_restore_flags(struct td_tensor *t, bool requires_grad, bool retains_grad);

bool td_autograd_requires_grad(const struct td_tensor *t);
bool td_autograd_retains_grad(const struct td_tensor *t);
bool td_autograd_is_leaf(const struct td_tensor *t); /* no grad_fn */

/* torch's grad_fn class name ("MulBackward0"), or NULL for a leaf. */
const char *td_autograd_grad_fn_name(const struct td_tensor *t);

/* t.grad: borrowed, or NULL when it is None. */
struct td_tensor *td_autograd_grad(const struct td_tensor *t);

/* t.grad = g (taken; NULL: None). The previous .grad is released. */
void td_autograd_set_grad(struct td_tensor *t, struct td_tensor *g);

#endif
