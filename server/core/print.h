/* server/core/print.h — a tensor's text, exactly as PyTorch's repr() renders it.
**
** PyTorch's printed text is part of our specification: the same values, dtype and shape must
** print byte for byte what torch prints, with the word "torch" in dtype names replaced by
** "tensord". This follows torch's _tensor_str: a formatter chosen from the (summarized) values
** (integer mode, fixed or scientific notation, one width for all elements), lines wrapped at
** linewidth, summarization with "..." above `threshold` elements, and suffixes (dtype, size,
** requires_grad, grad_fn) wrapped the same way. Pure C.
*/
#ifndef TD_CORE_PRINT_H
#define TD_CORE_PRINT_H

#include <stdbool.h>
#include <stdint.h>

#include "tensor.h"

/* td_tensor_repr calls it once, after its formatter has measured the values and before it
** allocates any text, with an upper bound on the length of the text it will return (tight: the
** formatter's real width, so within a few bytes per row of the real length). A nonzero return
** (with err set) stops td_tensor_repr, which returns that code. */
typedef int td_print_reserve_fn(void *arg, int64_t text_bound, struct td_err *err);

struct td_print_opts {
    int precision;                /* digits after the point (torch: 4) */
    int64_t threshold;            /* summarize above this many elements (torch: 1000) */
    int edgeitems;                /* items kept at each end when summarizing (torch: 3) */
    int linewidth;                /* torch: 80 */
    int sci_mode;                 /* -1 automatic, 0 never, 1 always */
    bool requires_grad;           /* adds "requires_grad=True" unless grad_fn is set */
    const char *grad_fn;          /* borrowed; adds "grad_fn=<MulBackward0>" when not NULL */
    td_print_reserve_fn *reserve; /* NULL: none (the default) */
    void *reserve_arg;            /* borrowed; passed to reserve */
};

/* torch's defaults (set_printoptions(profile="default")). */
void td_print_opts_default(struct td_print_opts *o);

/* Renders repr(t) into a new NUL-terminated string (*out, td_malloc'd; the caller td_frees it).
** `t` is borrowed; any strides. Errors: TD_ENOMEM. */
int td_tensor_repr(const struct td_tensor *t, const struct td_print_opts *o, char **out,
                   struct td_err *err);

/* An upper bound on what td_tensor_repr(t, default options) does, before it runs, without
** reading a value: *elements, the element reads its walks make (each printed element is read
** three times: two formatter passes and the render), and *text_bytes, the length of the text it
** returns (exact layout, each value at the widest its dtype can print: with torch's
** summarization above 1000 elements, 3 edge items per dim, an 8-dim int64 view still prints
** about 1.7 million values, over 30 MB). The reserve hook of td_print_opts gets the tighter
** bound that the measured width gives. Saturating arithmetic: at most INT64_MAX, never negative.
** `t` is borrowed and may be any view. Returns 0, or TD_EINVAL (both outputs 0) for a
** malformed tensor. td_tensor_repr itself checks the current request's cancel as it walks. */
int td_print_cost(const struct td_tensor *t, int64_t *elements, int64_t *text_bytes);

#endif
