/* server/core/optim.h — torch.optim's update rules: one optimiser step of one parameter.
**
** The math of torch 1.13's single-tensor (for-loop) implementations of SGD, Adam, AdamW, RMSprop
** and Adagrad, in the parameter's dtype (float32 or float64), with each Python float option cast
** to that dtype where torch's kernels cast it, and the operations in torch's order, so a step
** agrees with torch's to float rounding. A step writes the parameter and its state tensors in
** place under no-grad semantics: nothing is recorded, and every written storage's version moves
** (a graph that saved the old values refuses to backward through them, as torch's does).
**
** Which state a parameter keeps, what a new state holds (torch's lazy initialisation) and which
** options torch's constructors refuse are decided here too, so rpc (server/rpc/optim.c) only
** resolves handles and calls in. Core knows nothing of handles or sessions: tensors come in
** borrowed, and new state tensors are charged to the quota the caller passes. Pure C.
*/
#ifndef TD_CORE_OPTIM_H
#define TD_CORE_OPTIM_H

#include <stdbool.h>

#include "tensor.h"

enum td_optim_algo {
    TD_OPTIM_SGD,
    TD_OPTIM_ADAM,
    TD_OPTIM_ADAMW,
    TD_OPTIM_RMSPROP,
    TD_OPTIM_ADAGRAD,
    TD_OPTIM_ALGOS
};

/* A parameter's state tensors, torch's state keys. */
enum td_optim_slot {
    TD_OPTIM_STEP,            /* Adam, AdamW, Adagrad: one float element (torch.tensor(0.)) */
    TD_OPTIM_MOMENTUM_BUFFER, /* SGD (momentum != 0), RMSprop (momentum > 0) */
    TD_OPTIM_EXP_AVG,         /* Adam, AdamW */
    TD_OPTIM_EXP_AVG_SQ,      /* Adam, AdamW */
    TD_OPTIM_MAX_EXP_AVG_SQ,  /* Adam, AdamW with amsgrad */
    TD_OPTIM_SQUARE_AVG,      /* RMSprop */
    TD_OPTIM_GRAD_AVG,        /* RMSprop, centered */
    TD_OPTIM_SUM,             /* Adagrad */
    TD_OPTIM_SLOTS
};

/* One param group's options, torch's names; each algorithm reads the ones it takes. */
struct td_optim_hparams {
    double lr, momentum, dampening, weight_decay;
    bool nesterov, maximize;
    double beta1, beta2, eps; /* Adam, AdamW (eps also RMSprop, Adagrad) */
    bool amsgrad;
    double alpha; /* RMSprop */
    bool centered;
    double lr_decay, initial_accumulator_value; /* Adagrad */
};

/* torch's state key for a slot ("exp_avg"). */
const char *td_optim_slot_name(enum td_optim_slot slot);

/* Checks the options as torch's constructor for `algo` does, with its words: TD_EINVAL
** "Invalid learning rate: -1.0", "Invalid beta parameter at index 0: 1.0", "Nesterov momentum
** requires a momentum and zero dampening" ... (a NaN fails where torch's `not 0.0 <= x` does). */
int td_optim_check(enum td_optim_algo algo, const struct td_optim_hparams *h, struct td_err *err);

/* The slots a parameter keeps under `algo` with these options: bit (1u << slot) for each. */
unsigned td_optim_slots(enum td_optim_algo algo, const struct td_optim_hparams *h);

/* Elements an update reads and writes per parameter element (the cost model's factor). */
int td_optim_passes(enum td_optim_algo algo);

/* Checks that `p` (borrowed) can be stepped: float32 or float64, and no element written twice
** (a dim of size > 1 with stride 0). `what` names it in the message. TD_EDTYPE / TD_EINVAL. */
int td_optim_check_param(const struct td_tensor *p, const char *what, struct td_err *err);

/* Checks a state tensor `st` (borrowed) already kept for `slot` of parameter `p`: `step` is one
** float32 or float64 element; every other slot has p's shape and dtype and no element written
** twice. TD_ESHAPE / TD_EDTYPE / TD_EINVAL naming `what`. */
int td_optim_check_state(enum td_optim_slot slot, const struct td_tensor *p,
                         const struct td_tensor *st, const char *what, struct td_err *err);

/* A new state tensor for `slot` of parameter p (borrowed), as torch's lazy initialisation
** makes it: step a float32 0-dim 0, Adagrad's sum filled with initial_accumulator_value, the
** rest zeros of p's shape and dtype (SGD's momentum_buffer is overwritten by its first update:
** torch's clone of the first d_p). A new reference in *out, charged to q. Errors: TD_EQUOTA,
** TD_ENOMEM. */
int td_optim_state_new(enum td_optim_slot slot, const struct td_optim_hparams *h,
                       const struct td_tensor *p, struct td_quota *q, struct td_tensor **out,
                       struct td_err *err);

/* One step of parameter p with gradient g (same shape and dtype, checked by the caller with
** td_optim_check_param / check_state; any strides), state[slot] for each slot of td_optim_slots
** (the others NULL; all borrowed). `fresh` has bit (1u << slot) for each state made by
** td_optim_state_new for this step (SGD's first momentum_buffer is the update itself). p and the
** states are written in place: the caller has called td_tensor_prepare_write on each (so this
** cannot fail for memory), and every written storage's version moves. Checks the current
** request's cancel between chunks: returns 0, or its error with p partly written. */
int td_optim_update(enum td_optim_algo algo, const struct td_optim_hparams *h, struct td_tensor *p,
                    const struct td_tensor *g, struct td_tensor *const state[TD_OPTIM_SLOTS],
                    unsigned fresh, struct td_err *err);

/* Optimizer.zero_grad(set_to_none=False)'s zero_() of a gradient g (borrowed, any strides,
** prepared for writing by the caller): every element 0, its version moved. Checks the cancel. */
int td_optim_zero(struct td_tensor *g, struct td_err *err);

/* ---- torch.nn.utils.clip_grad_norm_ and clip_grad_value_ ----
** On float32 / float64 gradients (borrowed, any strides); the writers need the caller's
** td_tensor_prepare_write and move the version. Each checks the cancel between chunks. */

/* torch.norm(g, p) in *out (accumulated in double, rounded to g's dtype as torch's result is):
** p = inf: max |x|; -inf: min |x|; 0: the count of nonzero elements; otherwise
** (sum |x|^p)^(1/p). A NaN element makes the max/min NaN, as torch's. */
int td_optim_norm(const struct td_tensor *g, double p, double *out, struct td_err *err);

/* The same norm of n values (the per-gradient norms), rounded to float32 when f32. */
double td_optim_norm_of(const double *v, int64_t n, double p, bool f32);

/* g *= coef, coef cast to g's dtype (g.mul_(clip_coef)). */
int td_optim_scale(struct td_tensor *g, double coef, struct td_err *err);

/* g.clamp_(min=lo, max=hi), bounds cast to g's dtype; NaN stays NaN. */
int td_optim_clamp(struct td_tensor *g, double lo, double hi, struct td_err *err);

/* clip_grad_norm_ over n gradients (n >= 1, each prepared for writing): the total norm of
** order p (the norm of the per-gradient norms) in *total, rounded to float32 when every
** gradient is float32 (*f32 says which, the dtype of torch's result); then each gradient is
** multiplied by min(max_norm / (total + 1e-6), 1) computed in that dtype. With
** error_if_nonfinite, a NaN or infinite total is refused before anything is written, with
** torch's message ("The total norm of order 2.0 for gradients from `parameters` is
** non-finite, so it cannot be clipped. ..."). Errors: that, TD_ENOMEM, the cancel's. */
int td_optim_clip_grad_norm(struct td_tensor *const *g, int64_t n, double max_norm, double p,
                            bool error_if_nonfinite, double *total, bool *f32, struct td_err *err);

#endif
