/* server/core/ops.h — the op table and the one entry point that runs an op.
**
** Every op is a row of ops.def. Running an op is always the same four steps, done once here:
** the dtype rule picks the compute and result dtypes (PyTorch's promotion), the shape rule
** picks the result shape (broadcasting, matmul shapes), the output is allocated (or, in place,
** checked: same shape as self, result castable to self's dtype), and the forward kernel fills
** it. Kernels live in their family file (ops/elementwise.c, ops/matmul.c). Pure C + CBLAS.
*/
#ifndef TD_CORE_OPS_H
#define TD_CORE_OPS_H

#include <stdbool.h>

#include "rng.h"
#include "tensor.h"

enum td_op_id {
#define OP(id, name, nin, inplace, flags, gname, ghook, sig, shape, dtype, fwd, make, bwd, cost)   \
    TD_OP_##id,
#include "ops.def"
#undef OP
    TD_OP_COUNT
};

/* An input: a tensor (borrowed) or, when t is NULL, a Python-number scalar. */
struct td_operand {
    struct td_tensor *t;
    struct td_scalar s;
};

#define TD_OP_MAX_INPUTS 64 /* cat and stack take lists */

/* An op's non-tensor arguments, PyTorch's keyword arguments. Each op reads the ones it takes. */
struct td_op_args {
    int64_t dims[TD_MAX_DIMS]; /* reduction dims, permute order, a shape for reshape/expand */
    int ndims;
    bool has_dims; /* dims given (an empty list differs from none) */
    bool keepdim;
    int64_t dim, dim2; /* transpose, select, narrow, squeeze, unsqueeze, softmax ... */
    bool has_dim;
    int64_t start, end, step; /* narrow (start, length in end), slicing */
    bool has_min, has_max;    /* clamp */
    struct td_scalar min, max;
    bool has_dtype; /* to() */
    enum td_dtype dtype;
    double correction;   /* std / var; 1 unless given */
    uint64_t index_mask; /* index, index_put: bit d when dim d has an index tensor */
    bool accumulate;     /* index_put: add instead of write */
    struct td_rng *rng;  /* the session's generator, or a torch.Generator's (rpc resolves
                            ** generator=), for random ops (borrowed) */
    int64_t num_samples; /* multinomial's num_samples, randperm's n */
    bool replacement;    /* multinomial */
    /* sorting and selection */
    int64_t k;       /* topk, kthvalue */
    bool descending; /* sort, argsort; topk's largest */
    bool sorted;     /* topk, unique (both always give sorted results) */
    bool stable;     /* sort, argsort (always stable) */
    /* Ops with more than one output (ops.def's `-> a, b`): output 0 is the op's result; output
    ** i + 1 is stored as a new reference in more_out[i] when want_more[i] (more_out: an array
    ** of 2 owned by the caller, NULL when only output 0 is wanted). The caller releases
    ** whatever more_out holds afterwards, on failure too. Indices never require grad. */
    struct td_tensor **more_out;
    bool want_more[2];
    double rtol, atol; /* isclose (as given: the clients send torch's defaults) */
    bool equal_nan;
    bool has_value, has_alpha, has_beta; /* addcmul/addcdiv value, addmm alpha and beta */
    struct td_scalar value, alpha, beta; /* (absent: 1, torch's default); alpha also add/sub */
    int rounding_mode;                   /* div: TD_ROUND_NONE, TD_ROUND_TRUNC or TD_ROUND_FLOOR */
    int64_t decimals;                    /* round */
    int64_t shifts[TD_MAX_DIMS];         /* roll */
    int nshifts;
    char equation[64];    /* einsum; custom_function's grad_fn name; NUL-terminated */
    uint64_t function_id; /* custom_function: the client's id for its Function's context */
    /* nn normalisation, dropout, embedding, padding */
    double eps, momentum; /* layer_norm, batch_norm (as given: the clients send torch's
                            ** defaults) */
    bool training;        /* batch_norm: batch statistics, running ones updated in place */
    uint64_t absent;      /* optional tensor operands given as None: bit k for the op's
                            ** optional operand k; the present ones follow in order */
    int64_t padding_idx;  /* embedding, when has_padding_idx */
    bool has_padding_idx;
    int pad_mode; /* pad: TD_PAD_CONSTANT ... */
    /* nn, losses and activations */
    int reduction;          /* TD_REDUCTION_MEAN (the default), _SUM or _NONE */
    int64_t ignore_index;   /* nll_loss, cross_entropy (-100 unless given) */
    double label_smoothing; /* cross_entropy */
    /* nn, convolution and pooling (ops/conv.c): lists of 0 (the default), 1 (every spatial dim)
    ** or one value per spatial dim, as given */
    int64_t stride[TD_MAX_DIMS], padding[TD_MAX_DIMS], dilation[TD_MAX_DIMS];
    int64_t kernel_size[TD_MAX_DIMS], output_size[TD_MAX_DIMS]; /* output_size -1: None */
    int nstride, npadding, ndilation, nkernel_size, noutput_size;
    int64_t groups;           /* conv (0: 1) */
    int padding_mode;         /* conv: TD_PAD_LIST, TD_PAD_VALID or TD_PAD_SAME */
    bool ceil_mode;           /* pools */
    bool count_include_pad;   /* avg_pool2d */
    int64_t divisor_override; /* avg_pool2d (0: None) */
    bool grad_enabled;        /* record autograd nodes (the session's no_grad switch) */
    int op;                   /* set by td_op_apply: the op being run (enum td_op_id) */
    bool inplace;             /* set by td_op_apply (td_op_cost reads it: no new result) */
    struct td_quota *quota;   /* set by td_op_apply: where kernels charge their temporaries */
};

enum { TD_ROUND_NONE, TD_ROUND_TRUNC, TD_ROUND_FLOOR }; /* div's rounding_mode */
enum { TD_PAD_CONSTANT, TD_PAD_REFLECT, TD_PAD_REPLICATE, TD_PAD_CIRCULAR }; /* pad's mode */
enum { TD_REDUCTION_MEAN, TD_REDUCTION_SUM, TD_REDUCTION_NONE };             /* losses' reduction */
enum { TD_PAD_LIST, TD_PAD_VALID, TD_PAD_SAME }; /* conv's padding_mode */

/* torch's defaults: no dims, dim 0, correction 1. */
void td_op_args_init(struct td_op_args *a);
/* Back to td_op_args_init's values, for a struct that was so initialised and since written only
** in the fields a caller of td_op_apply sets per call (rng, more_out, want_more, grad_enabled,
** op, inplace, quota): a few stores instead of the 944-byte fill. */
void td_op_args_reset_call(struct td_op_args *a);

/* Shape rule: the result shape of the op for these inputs, or PyTorch's error. */
typedef int td_shape_fn(const struct td_operand *in, int nin, const struct td_op_args *a,
                        int64_t *shape, int *ndim, struct td_err *err);
/* Dtype rule: the dtype the kernel computes in and the dtype of the result. */
typedef int td_dtype_fn(const struct td_operand *in, int nin, const struct td_op_args *a,
                        enum td_dtype *compute, enum td_dtype *result, struct td_err *err);
/* Forward kernel: fills `out` (already of the result shape; its dtype may differ from the result
** dtype for in-place ops, where values are cast on store). `out` may be in[0].t (in place). */
typedef int td_fwd_fn(struct td_tensor *out, const struct td_operand *in, int nin,
                      const struct td_op_args *a, enum td_dtype compute, struct td_err *err);
/* Make: an op that builds its own result (views share storage; copies like cat size their
** output themselves). */
typedef int td_make_fn(struct td_tensor **out, const struct td_operand *in, int nin,
                       const struct td_op_args *a, struct td_quota *q, struct td_err *err);

/* What one op really costs, before it runs. Inputs count at their logical size: an expanded
** (stride-0) view of 2^60 elements costs 2^60 elements to read, however few bytes back it.
** All fields saturate at INT64_MAX; none is ever negative. */
struct td_cost {
    int64_t read;       /* elements read (broadcast and expanded inputs at their logical size) */
    int64_t written;    /* elements written */
    int64_t flops;      /* multiply-adds of products (BLAS or not), each counted once */
    int64_t out_bytes;  /* bytes of the result's new storage (0 for a view) */
    int64_t temp_bytes; /* bytes of temporaries beyond the result (operand copies, casts) */
    struct td_op_plan *plan; /* td_op_cost_planned's, else NULL: where a rule that computes the
                             ** op's shape and dtype rules (td_cost_elementwise) leaves them */
};

/* An op's result shape and dtypes as its cost rule computed them, for td_op_apply_planned:
** valid (ok) only for the same op, operands and arguments, with nothing changed between. */
struct td_op_plan {
    bool ok;
    int op;
    int ndim;
    enum td_dtype compute, result;
    int64_t shape[TD_MAX_DIMS];
};

/* Cost rule: fills c (zeroed by the caller) for these operands. Runs before any validation, so
** it must take anything: numbers where tensors go, bad dims, absurd sizes. Returns 0, or -1 when
** the op would refuse these operands (td_op_cost then reports them invalid). Saturating
** arithmetic only (base/checked.h). */
typedef int td_cost_fn(const struct td_operand *in, int nin, const struct td_op_args *a,
                       struct td_cost *c);

struct td_node; /* core/autograd.h: a recorded op, what backward rules and hooks read */

/* Backward rule: gradients for each input (gin[i], new references, in the output's broadcast
** shape or the input's; NULL where the input needs none) from the output gradient g. */
typedef int td_bwd_fn(const struct td_node *n, struct td_tensor *g, struct td_tensor **gin,
                      struct td_quota *q, struct td_err *err);

/* grad_fn name hook: torch's grad_fn class name for a node whose name depends on its operands or
** arguments (torch.sum(x) is SumBackward0, x.sum(0) SumBackward1). A static string. */
typedef const char *td_grad_fn_hook(const struct td_node *n);

/* ops.def's flags column (what autograd needs to know about an op; core/autograd.c reads them:
** which in-place writes to refuse, which results never require grad, which values a node
** checks by version before its backward runs). */
enum {
    TD_OPF_VIEW = 1 << 0,              /* the result is a view of operand 0 */
    TD_OPF_NODIFF = 1 << 1,            /* the result never requires grad */
    TD_OPF_BW_SELF = 1 << 2,           /* backward reads operand 0's values (and the others') */
    TD_OPF_BW_SELF_FOR_OTHER = 1 << 3, /* backward reads each operand's values only when another
                                       ** operand requires grad (d/dy of x*y reads x) */
    TD_OPF_BW_OUT = 1 << 4,            /* backward reads the result's values (td_node_output) */
    /* where torch spells the op (ops.def; for the clients' generated tables, core ignores them) */
    TD_OPF_NO_METHOD = 1 << 5,    /* torch.name only, no Tensor method */
    TD_OPF_FUNCTIONAL = 1 << 6,   /* torch.nn.functional.name only */
    TD_OPF_INPLACE_ONLY = 1 << 7, /* only the in-place method name_ */
    TD_OPF_INTERNAL = 1 << 8,     /* no torch spelling (slice, mT) */
    TD_OPF_OVERLOADED = 1 << 9,   /* torch has call forms beyond the signature */
    TD_OPF_ALSO_F = 1 << 10,      /* torch.nn.functional.name as well as torch.name */
    TD_OPF_CUSTOM = 1 << 11,      /* a custom autograd Function's node: its backward runs in the
                                  ** client (td_backward_step suspends there) */
    TD_OPF_RANDOM = 1 << 12,      /* draws from td_op_args.rng: only these get a generator (the
                                  ** caller's copy of 2.5 KiB of state costs the others nothing) */
};

struct td_op_def {
    const char *name;
    unsigned flags;                /* TD_OPF_* */
    const char *grad_fn;           /* torch's grad_fn name; NULL: never records one */
    td_grad_fn_hook *grad_fn_hook; /* NULL, or what names the node instead of grad_fn */
    const char *sig;               /* torch's signature, in ops.def's notation */
    int nin;
    bool has_inplace;
    td_shape_fn *shape; /* with dtype and forward: the standard path */
    td_dtype_fn *dtype;
    td_fwd_fn *forward;
    td_make_fn *make;    /* instead of the three above */
    td_bwd_fn *backward; /* autograd rule; NULL: backward reports "not implemented" */
    td_cost_fn *cost;    /* what a call costs (td_op_cost) */
};

extern const struct td_op_def td_ops[TD_OP_COUNT];

/* How many outputs op `id` has: 1, or the count its ops.def signature states after `->`
** (sort's `-> values, indices` is 2). 0 for an unknown id. */
int td_op_nout(enum td_op_id id);

/* A number s given for operand i of op id: 0 when ops.def marks that operand `:number` (torch
** takes a Python number there: add's other, where's input, fill's value ...), else torch's
** TypeError wording ("matmul(): argument 'other' (position 2) must be Tensor, not float").
** List ops (nin -1) leave the check to their make functions. Reads the signature once per op. */
int td_op_check_number(enum td_op_id id, int i, struct td_scalar s, struct td_err *err);

/* Looks an op up by PyTorch name ("add"); returns -1 when unknown. */
int td_op_lookup(const char *name);

/* Runs op `id` on `in` (nin operands, borrowed) with `args` (NULL: defaults). Out of place: *out is a new tensor charged to q.
** In place (`inplace`, only for ops with has_inplace): in[0] must be a tensor; it is written
** (after td_tensor_prepare_write) and *out is a new reference to it. Errors carry PyTorch's
** wording, e.g. "result type Float can't be cast to the desired output type Long",
** "output with shape [3] doesn't match the broadcast shape [2, 3]". Kernels' temporaries are
** charged to q while they live. When the thread's current request (core/cancel.h) is
** cancelled or overdue, fails with td_cancel_check's error, before starting or at the next
** chunk boundary, with nothing left allocated. When that request has a work budget (its
** max_work), an op whose td_cost_work is above it fails with TD_ELIMIT ("sum would touch N
** elements, above max_op_elements M") before anything is allocated. */
int td_op_apply(enum td_op_id id, const struct td_operand *in, int nin,
                const struct td_op_args *args, bool inplace, struct td_quota *q,
                struct td_tensor **out, struct td_err *err);

/* td_op_apply for a caller that has already checked this call's cost against the request's
** budget (rpc's RunOp: --max-op-elements, with the same operands and arguments): the op is not
** costed again. The steps it runs (composed ops, backward rules) are checked as always. */
int td_op_apply_costed(enum td_op_id id, const struct td_operand *in, int nin,
                       const struct td_op_args *args, bool inplace, struct td_quota *q,
                       struct td_tensor **out, struct td_err *err);

/* td_op_apply_costed with the plan td_op_cost_planned made for this very call (same op,
** operands and arguments, the operands unchanged since): the op's shape and dtype rules are
** not run again when the plan holds them (plan->ok). NULL or a plan without them: as
** td_op_apply_costed. */
int td_op_apply_planned(enum td_op_id id, const struct td_operand *in, int nin,
                        const struct td_op_args *args, bool inplace, struct td_quota *q,
                        const struct td_op_plan *plan, struct td_tensor **out, struct td_err *err);

/* The op's cost for these operands and arguments, from its ops.def cost rule. Safe before any
** validation (numbers where tensors go, any nin, any args). Set args->inplace for an in-place
** call (no result bytes; the fill family is always costed in place). Returns 0, or TD_EOP /
** TD_EINVAL when the operands are invalid (the op would fail fast anyway; *out is then zero). */
int td_op_cost(enum td_op_id id, const struct td_operand *in, int nin,
               const struct td_op_args *args, struct td_cost *out, struct td_err *err);

/* td_op_cost that also fills *plan (plan->ok when the op's rule computed its shape and dtypes:
** the elementwise ops), for td_op_apply_planned. */
int td_op_cost_planned(enum td_op_id id, const struct td_operand *in, int nin,
                       const struct td_op_args *args, struct td_cost *out, struct td_op_plan *plan,
                       struct td_err *err);

/* One number for "how much work": read + written + flops, saturating. What --max-op-elements
** limits, and what decides inline versus the worker pool. */
int64_t td_cost_work(const struct td_cost *c);

/* The BLAS that float products run on, as it describes itself: version and build options, the
** kernel chosen for this CPU, one thread per BLAS call, and the threads a product runs on (the
** daemon's; large ones are split by rows) (for Stats and /metrics: a benchmark figure means
** little without it). The text lives in a per-thread buffer until the next call. */
const char *td_blas_describe(void);

/* Shared rules, exported so ops/ family files and tests can use them. */
td_shape_fn td_shape_broadcast;
enum td_dtype td_result_type(const struct td_operand *in, int nin);

/* Tiny ops' fast paths (td_shape_broadcast and td_result_type for operands of one shape or
** dtype, td_elementwise_rows for dense same-dtype operands): on unless a test turns them off
** to check that they give what the general paths give. Set it before ops run, not while. */
void td_ops_set_fast_paths(bool on);
int td_broadcast_shapes(const int64_t *a, int na, const int64_t *b, int nb, int64_t *out, int *nout,
                        struct td_err *err);

#endif
