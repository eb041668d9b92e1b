/* server/core/autograd.c — recording nodes, and the backward pass.
**
** The backward pass walks no elements itself: every sum to a shape, copy into .grad and
** accumulation is a td_op_apply call, so each meets the request's cancel and its work budget
** (--max-op-elements, core/cancel.h) like an op the client ran: a gradient summed from an
** expanded view of 2^60 elements is refused before it starts. The one tensor it makes directly
** is the implicit seed of a one-element root. */
#include "autograd.h"

#include <stdio.h>
#include <string.h>

#include "../base/assert.h"
#include "../base/checked.h"
#include "../base/map.h"
#include "cancel.h"

/* Nodes whose last reference went, freed by the outermost td_node_unref on this thread: a
** node's inputs hold their nodes, so freeing a chain by recursion would go as deep as the graph
** (a million-op chain overflowed the loop's stack); a list keeps the depth at one node's. */
static _Thread_local struct td_node *dead;
static _Thread_local bool freeing;

void td_node_unref(struct td_node *n)
{
    if (n == NULL) {
        return;
    }
    TD_ASSERT(n->refs > 0); /* an unref without its ref */
    if (--n->refs > 0) {
        return;
    }
    n->dead_next = dead;
    dead = n;
    if (freeing) {
        return; /* the loop below, further up this thread's stack, frees it */
    }
    freeing = true;
    while (dead != NULL) {
        n = dead;
        dead = n->dead_next;
        for (int i = 0; i < n->nin; i++) {
            td_tensor_unref(n->in[i].t); /* its grad_fn joins the list, not the stack */
            td_node_unref(n->next[i]);
        }
        td_storage_unref(n->out_storage);
        td_quota_release(n->args.quota, (int64_t)sizeof *n); /* charged by td_autograd_record */
        td_free(n);
    }
    freeing = false;
}

/* torch's grad_fn class name: the op's hook when its name depends on operands or arguments,
** else ops.def's grad_fn column. */
static const char *node_name(const struct td_node *n)
{
    const struct td_op_def *d = &td_ops[n->op];
    return d->grad_fn_hook != NULL ? d->grad_fn_hook(n) : d->grad_fn;
}

int td_node_output(const struct td_node *n, struct td_tensor **out, struct td_err *err)
{
    if (n->out_storage == NULL) {
        return td_err_set(err, TD_EINVAL, "%s saved no result", n->name);
    }
    struct td_tensor *t = td_calloc(1, sizeof *t);
    if (t == NULL) {
        return td_err_code(err, TD_ENOMEM);
    }
    t->refs = 1;
    t->dtype = n->out_dtype;
    t->ndim = n->out_ndim;
    t->numel = 1;
    for (int d = 0; d < n->out_ndim; d++) {
        t->shape[d] = n->out_shape[d];
        t->strides[d] = n->out_strides[d];
        t->numel *= n->out_shape[d]; /* the result's own count: it existed */
    }
    t->offset = n->out_offset;
    t->storage = n->out_storage;
    t->storage->refs++;
    *out = t;
    return 0;
}

const char *td_node_name(const struct td_node *n)
{
    return n->name;
}

int td_autograd_check_inplace(const struct td_tensor *t, bool grad_enabled, struct td_err *err)
{
    if (grad_enabled && t->requires_grad && t->grad_fn == NULL) {
        return td_err_set(err, TD_EINVAL,
                          "a leaf Variable that requires grad is being used in "
                          "an in-place operation.");
    }
    return 0;
}

/* Whether op's backward reads operand i's values (so an in-place write makes them stale, which
** backward must then refuse, as torch does), by ops.def's flags: TD_OPF_BW_SELF_FOR_OTHER, each
** operand when another requires grad (d/dy of x*y reads x); TD_OPF_BW_SELF, every operand
** (operand 0 is what torch's flag is about; the others of such ops are read too: pow's exponent,
** maximum's other, mse_loss's target, cross_entropy's classes). */
static bool needs_value(enum td_op_id op, const struct td_operand *in, int nin, int i)
{
    unsigned f = td_ops[op].flags;
    if (f & TD_OPF_BW_SELF_FOR_OTHER) {
        for (int k = 0; k < nin; k++) {
            if (k != i && in[k].t != NULL && in[k].t->requires_grad) {
                return true;
            }
        }
        return false;
    }
    return (f & TD_OPF_BW_SELF) != 0;
}

int td_autograd_inplace(enum td_op_id op, struct td_tensor *t, const struct td_operand *in, int nin,
                        const struct td_op_args *args, int (*write)(void *ctx), void *ctx,
                        struct td_err *err)
{
    bool track = args->grad_enabled && t->requires_grad;
    for (int i = 1; i < nin; i++) {
        track = track || (args->grad_enabled && in[i].t != NULL && in[i].t->requires_grad);
    }
    if (!track || !td_dtype_is_float(t->dtype)) {
        return write(ctx);
    }
    if (nin > TD_NODE_MAX_IN || td_ops[op].backward == NULL) {
        return td_err_set(err, TD_EUNSUP, "derivative for aten::%s_ is not implemented",
                          td_ops[op].name);
    }
    /* A view made by a view op shares its base's bytes: torch rebases the base's history
    ** (CopySlices); until that exists here, refuse rather than give wrong gradients. */
    const struct td_node *vn = t->grad_fn;
    bool view_op = vn != NULL && (td_ops[vn->op].flags & TD_OPF_VIEW) != 0;
    if (view_op && vn->in[0].t != NULL && vn->in[0].t->storage == t->storage) {
        if (vn->in[0].t->grad_fn == NULL && vn->in[0].t->requires_grad) {
            return td_err_set(err, TD_EINVAL,
                              "a view of a leaf Variable that requires grad is "
                              "being used in an in-place operation.");
        }
        return td_err_set(err, TD_EUNSUP,
                          "in-place operations on views of tensors in a graph "
                          "are not supported yet");
    }
    /* `old` stands for t's value before the write and takes over t's history; the new node
    ** hangs off t, so t -> node -> old -> old history: still a DAG. When the op's backward
    ** reads that value (sin_, mul_ by a tensor that requires grad), old keeps a private copy of
    ** it, as torch saves the original self: the write cannot make it stale. */
    bool keep = false;
    for (int i = 0; i < nin; i++) {
        keep = keep || (in[i].t == t && needs_value(op, in, nin, i));
    }
    struct td_tensor *copy = NULL;
    if (keep) {
        struct td_op_args ca;
        td_op_args_init(&ca);
        struct td_operand cin[1] = {{.t = t}};
        int crc = td_op_apply(TD_OP_CLONE, cin, 1, &ca, false, args->quota, &copy, err);
        if (crc != 0) {
            return crc;
        }
    }
    struct td_tensor *old = td_malloc(sizeof *old);
    if (old == NULL) {
        td_tensor_unref(copy);
        return td_err_code(err, TD_ENOMEM);
    }
    *old = *t;
    old->refs = 1;
    old->grad = NULL;
    old->retains_grad = false;
    if (copy != NULL) {
        old->storage = copy->storage;
        old->offset = copy->offset;
        memcpy(old->strides, copy->strides, sizeof old->strides);
    }
    old->storage->refs++;
    td_tensor_unref(copy);
    if (old->grad_fn != NULL && old->grad_fn->retained == t) {
        old->grad_fn->retained = NULL;
    }
    t->grad_fn = NULL;
    int rc = write(ctx);
    if (rc != 0) {
        t->grad_fn = old->grad_fn; /* nothing changed: give the history back */
        old->grad_fn = NULL;
        td_tensor_unref(old);
        return rc;
    }
    struct td_operand saved[TD_NODE_MAX_IN];
    for (int i = 0; i < nin; i++) {
        saved[i] = in[i];
        if (saved[i].t == t) {
            saved[i].t = old;
        }
    }
    struct td_op_args a = *args;
    rc = td_autograd_record(op, saved, nin, &a, t, err);
    if (rc == 0 && t->grad_fn != NULL && !keep) {
        /* old shares t's bytes, which the write changed: nothing may read them (-1) */
        for (int i = 0; i < nin; i++) {
            if (saved[i].t == old) {
                t->grad_fn->versions[i] = -1;
            }
        }
    }
    td_tensor_unref(old);
    return rc;
}

/* A new node's graph_work (autograd.h): its share, from its op's cost rule and the sizes of
** the gradients its rule makes, plus what backward may do beyond it (its inputs' graph_work). */
static int64_t node_work(enum td_op_id op, const struct td_operand *in, int nin,
                         const struct td_op_args *args, const struct td_tensor *out)
{
    struct td_cost c;
    struct td_err e;
    int64_t w = td_op_cost(op, in, nin, args, &c, &e) == 0 ? td_sat_mul(td_cost_work(&c), 3)
                                                           : INT64_MAX; /* unknown: not cheap */
    w = td_sat_add(w, TD_AUTOGRAD_NODE_WORK);
    w = td_sat_add(w, td_sat_mul(out->numel, 4));
    for (int i = 0; i < nin; i++) {
        const struct td_tensor *t = in[i].t;
        if (t != NULL && t->requires_grad) {
            w = td_sat_add(w, td_sat_mul(t->numel, 4));
            w = td_sat_add(w, t->grad_fn != NULL ? t->grad_fn->graph_work : 0);
        }
    }
    return w;
}

int64_t td_autograd_backward_work(struct td_tensor *const *t, int n)
{
    int64_t w = 0;
    for (int i = 0; i < n; i++) {
        if (t[i] != NULL) {
            w = td_sat_add(w, t[i]->grad_fn != NULL ? t[i]->grad_fn->graph_work
                                                    : td_sat_mul(t[i]->numel, 4));
        }
    }
    return w;
}

int td_autograd_record(enum td_op_id op, const struct td_operand *in, int nin,
                       const struct td_op_args *args, struct td_tensor *out, struct td_err *err)
{
    bool needed = false;
    for (int i = 0; i < nin; i++) {
        needed = needed || (in[i].t != NULL && in[i].t->requires_grad);
    }
    /* Results that are not floats (comparisons, argmax, all, ...) and the like-family never
    ** require grad in torch. */
    bool nondiff = !td_dtype_is_float(out->dtype) || (td_ops[op].flags & TD_OPF_NODIFF) != 0;
    if (!args->grad_enabled || !needed || nondiff) {
        return 0;
    }
    if (nin > TD_NODE_MAX_IN) {
        return td_err_set(err, TD_EUNSUP, "autograd through %s is not implemented",
                          td_ops[op].name);
    }
    /* A node outlives the handles of the tensors it saves (a chain of a million ops on a
    ** 4-byte tensor keeps a million nodes): its bytes are charged to the quota the op ran under
    ** (args->quota, kept in n->args and released when the node goes), as storage is. */
    int crc = td_quota_charge_bytes(args->quota, (int64_t)sizeof(struct td_node), err);
    if (crc != 0) {
        return crc;
    }
    struct td_node *n = td_calloc(1, sizeof *n);
    if (n == NULL) {
        td_quota_release(args->quota, (int64_t)sizeof(struct td_node));
        return td_err_code(err, TD_ENOMEM);
    }
    n->refs = 1;
    n->op = op;
    n->nin = nin;
    for (int i = 0; i < nin; i++) {
        n->in[i] = in[i];
        n->versions[i] = -1;
        if (in[i].t != NULL) {
            td_tensor_ref(in[i].t);
            n->edge[i] = in[i].t->requires_grad;
            if ((n->next[i] = n->edge[i] ? in[i].t->grad_fn : NULL) != NULL) {
                n->next[i]->refs++;
            }
            if (needs_value(op, in, nin, i)) {
                n->versions[i] = in[i].t->storage->version;
            }
        }
    }
    n->args = *args;
    n->args.rng = NULL;
    n->args.more_out = NULL; /* the caller's outputs 1 and 2: gone once the op returns */
    n->out_ndim = out->ndim;
    memcpy(n->out_shape, out->shape, sizeof n->out_shape);
    n->out_dtype = out->dtype;
    if (td_ops[op].flags & TD_OPF_BW_OUT) {
        /* the storage, not the tensor: a node never refers to its own output (the DAG rule) */
        n->out_storage = out->storage;
        n->out_storage->refs++;
        n->out_version = out->storage->version;
        n->out_offset = out->offset;
        memcpy(n->out_strides, out->strides, sizeof n->out_strides);
    }
    n->name = node_name(n);
    n->graph_work = node_work(op, in, nin, args, out);
    td_node_unref(out->grad_fn);
    out->grad_fn = n;
    out->requires_grad = true;
    return 0;
}

int td_sum_to_shape(struct td_tensor *g, const int64_t *shape, int ndim, struct td_quota *q,
                    struct td_tensor **out, struct td_err *err)
{
    if (g->ndim == ndim && memcmp(g->shape, shape, sizeof(int64_t) * (size_t)ndim) == 0) {
        *out = td_tensor_ref(g);
        return 0;
    }
    struct td_op_args a;
    td_op_args_init(&a);
    a.has_dims = true;
    a.keepdim = true;
    int lead = g->ndim - ndim;
    for (int i = 0; i < g->ndim; i++) {
        if (i < lead || (shape[i - lead] == 1 && g->shape[i] != 1)) {
            a.dims[a.ndims++] = i;
        }
    }
    struct td_tensor *s = NULL;
    struct td_operand in[1] = {{.t = g}};
    int rc;
    if (a.ndims > 0) {
        rc = td_op_apply(TD_OP_SUM, in, 1, &a, false, q, &s, err);
    } else {
        s = td_tensor_ref(g);
        rc = 0;
    }
    if (rc != 0) {
        return rc;
    }
    struct td_op_args r;
    td_op_args_init(&r);
    memcpy(r.dims, shape, sizeof(int64_t) * (size_t)ndim);
    r.ndims = ndim;
    r.has_dims = true;
    struct td_operand sin[1] = {{.t = s}};
    rc = td_op_apply(TD_OP_RESHAPE, sin, 1, &r, false, q, out, err);
    td_tensor_unref(s);
    return rc;
}

/* torch's refusal of a saved value changed in place since it was saved ("which is output 0 of
** X": an input's grad_fn now, as torch's message has it; for a saved result, the node itself). */
static int stale(enum td_dtype dt, const int64_t *shape, int ndim, const char *fn, int64_t now,
                 int64_t saved, struct td_err *err)
{
    char sh[160];
    char which[96] = "";
    if (fn != NULL) {
        snprintf(which, sizeof which, ", which is output 0 of %s,", fn);
    }
    return td_err_set(err, TD_EINVAL,
                      "one of the variables needed for gradient "
                      "computation has been modified by an inplace operation: "
                      "[%s %s]%s is at version %lld; expected version %lld instead. "
                      "Hint: enable anomaly detection to find the operation that "
                      "failed to compute its gradient, with "
                      "tensord.autograd.set_detect_anomaly(True).",
                      td_dtype_legacy_name(dt), td_shape_str(sh, sizeof sh, shape, ndim), which,
                      (long long)now, (long long)saved);
}

/* The values node n's backward reads are still those it saved: its inputs' (by version, where
** it reads them) and, for TD_OPF_BW_OUT ops, its output's. */
static int check_versions(const struct td_node *n, struct td_err *err)
{
    for (int i = 0; i < n->nin; i++) {
        const struct td_tensor *t = n->in[i].t;
        if (t != NULL && n->versions[i] >= 0 && t->storage->version != n->versions[i]) {
            return stale(t->dtype, t->shape, t->ndim,
                         t->grad_fn != NULL ? td_node_name(t->grad_fn) : NULL, t->storage->version,
                         n->versions[i], err);
        }
    }
    if (n->out_storage != NULL && n->out_storage->version != n->out_version) {
        return stale(n->out_dtype, n->out_shape, n->out_ndim, n->name, n->out_storage->version,
                     n->out_version, err);
    }
    return 0;
}

/* Whether leaf t's first gradient gi can become t->grad as it is, as torch's AccumulateGrad
** steals a new gradient nothing else refers to: the walk holds the only reference to gi and to
** its storage (no view, node or other gradient shares the bytes; a pinned reply buffer is
** copied on the first in-place write), it is dense from offset 0 over its whole buffer, in t's
** dtype and shape, and carries no autograd state of its own. Otherwise .grad is a copy. */
static bool can_steal(const struct td_tensor *t, const struct td_tensor *gi)
{
    return gi->refs == 1 && gi->storage->refs == 1 && gi->dtype == t->dtype &&
           gi->ndim == t->ndim &&
           memcmp(gi->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim) == 0 && gi->offset == 0 &&
           td_tensor_is_contiguous(gi) &&
           (int64_t)gi->storage->buf->nbytes == gi->numel * (int64_t)td_dtype_size(gi->dtype) &&
           !gi->requires_grad && gi->grad_fn == NULL && gi->grad == NULL;
}

/* Adds gi into leaf t's .grad (in place, so a handle bound to .grad sees it). */
static int accumulate_leaf(struct td_tensor *t, struct td_tensor *gi, struct td_quota *q,
                           struct td_err *err)
{
    struct td_operand in[2] = {{.t = t->grad}, {.t = gi}};
    if (t->grad == NULL && can_steal(t, gi)) {
        t->grad = td_tensor_ref(gi); /* the caller's reference goes; this one stays */
        return 0;
    }
    if (t->grad == NULL) {
        /* A private copy in t's dtype: gi may be shared with other inputs' gradients. */
        struct td_op_args a;
        td_op_args_init(&a);
        a.has_dtype = true;
        a.dtype = t->dtype;
        struct td_operand gin[1] = {{.t = gi}};
        struct td_tensor *c = NULL;
        int rc = td_op_apply(gi->dtype == t->dtype ? TD_OP_CLONE : TD_OP_TO, gin, 1, &a, false, q,
                             &c, err);
        if (rc == 0) {
            t->grad = c;
        }
        return rc;
    }
    struct td_tensor *r = NULL;
    int rc = td_op_apply(TD_OP_ADD, in, 2, NULL, true, q, &r, err);
    td_tensor_unref(r);
    return rc;
}

/* ---- backward: a walk over the graph that may stop at a custom Function ----
**
** td_backward_begin sorts the nodes reachable from the roots (depth-first post-order: every node
** after the nodes whose outputs it uses) and seeds the roots' gradients; td_backward_step then
** visits them in reverse, running each node's rule and passing the input gradients on (summing
** where paths meet), until every node is done or the next is a custom Function's node, whose
** rule is Python in the client: then it returns TD_BACKWARD_SUSPENDED with the node and its
** gradient available (td_backward_pending), and td_backward_give supplies the node's input
** gradients so a later step goes on. All the walk's state lives in struct td_backward, so a
** suspended walk costs nothing while its client computes. */

struct td_backward {
    struct td_map grads;     /* node -> the gradient flowing into its output (owned) */
    struct td_map needed;    /* with inputs: node -> non-NULL when its output leads to one */
    struct td_node **order;  /* post-order; the first nheld hold a reference each */
    size_t norder, next;     /* order[next - 1] is the next node to visit (next counts down) */
    size_t nheld;            /* a suspended walk outlives its request: the client may free its
                             ** roots, and a nested walk may release the shared graph, so the walk
                             ** holds every node it will visit (freed with the walk) */
    struct td_node *pending; /* suspended at this custom node (a reference), or NULL */
    struct td_tensor *pending_grad;
    struct td_tensor *inputs[TD_BACKWARD_MAX_INPUTS];  /* references */
    struct td_tensor *results[TD_BACKWARD_MAX_INPUTS]; /* their gradients, or NULL (unused) */
    int ninputs;
    bool retain_graph, accumulate, allow_unused;
};

static int add_into(struct td_tensor **slot, struct td_tensor *g, struct td_quota *q,
                    struct td_err *err)
{
    if (*slot == NULL) {
        *slot = td_tensor_ref(g);
        return 0;
    }
    struct td_operand sum[2] = {{.t = *slot}, {.t = g}};
    struct td_tensor *s = NULL;
    int rc = td_op_apply(TD_OP_ADD, sum, 2, NULL, false, q, &s, err);
    if (rc == 0) {
        td_tensor_unref(*slot);
        *slot = s;
    }
    return rc;
}

static int input_index(const struct td_backward *b, const struct td_tensor *t)
{
    for (int i = 0; i < b->ninputs; i++) {
        if (b->inputs[i] == t) {
            return i;
        }
    }
    return -1;
}

/* Gradient gi reaches leaf t: into its .grad (a backward), or into the result for t when t is
** one of the inputs asked for (autograd.grad; backward(inputs=) accumulates only into those). */
static int reach_leaf(struct td_backward *b, struct td_tensor *t, struct td_tensor *gi,
                      struct td_quota *q, struct td_err *err)
{
    int i = b->ninputs > 0 ? input_index(b, t) : -1;
    if (b->ninputs > 0 && i < 0) {
        return 0;
    }
    /* An input asked for twice (autograd.grad(y, [w, w])) gets the gradient in each place, as in
    ** torch; a backward accumulates into the leaf once. */
    for (int k = i; k >= 0 && k < b->ninputs; k++) {
        if (b->inputs[k] != t) {
            continue;
        }
        if (!b->accumulate) {
            int rc = add_into(&b->results[k], gi, q, err);
            if (rc != 0) {
                return rc;
            }
        } else if (b->results[k] == NULL) {
            b->results[k] = td_tensor_ref(gi); /* marks it used */
        }
    }
    return b->accumulate ? accumulate_leaf(t, gi, q, err) : 0;
}

/* Node n's input gradients gin (one per input, NULL where none; references, released here)
** flow on: reduced to each input's shape, then to its node or, for a leaf, reach_leaf. */
static int flow(struct td_backward *b, struct td_node *n, struct td_tensor **gin,
                struct td_quota *q, struct td_err *err)
{
    int rc = 0;
    for (int i = 0; i < n->nin && rc == 0; i++) {
        struct td_tensor *t = n->in[i].t;
        struct td_node *next = n->next[i]; /* the edge as recorded, not t's grad_fn now */
        if (gin[i] == NULL || t == NULL || !n->edge[i] || (next == NULL && !t->requires_grad)) {
            continue;
        }
        struct td_tensor *gi = NULL;
        if ((rc = td_sum_to_shape(gin[i], t->shape, t->ndim, q, &gi, err)) != 0) {
            break;
        }
        if (next == NULL) {
            /* Let go of gin[i] first: when gi is gin[i] itself, the walk's reference is then
            ** the only one and accumulate_leaf may take gi as .grad without a copy. */
            td_tensor_unref(gin[i]);
            gin[i] = NULL;
            rc = reach_leaf(b, t, gi, q, err);
            td_tensor_unref(gi);
            continue;
        }
        if (b->ninputs > 0 && td_map_get(&b->needed, (uint64_t)(uintptr_t)next) == NULL) {
            td_tensor_unref(gi);
            continue;
        }
        uint64_t key = (uint64_t)(uintptr_t)next;
        struct td_tensor *prev = td_map_get(&b->grads, key);
        if (prev == NULL) {
            if ((rc = td_map_put(&b->grads, key, gi)) != 0) {
                td_tensor_unref(gi);
                td_err_code(err, rc);
            }
            continue;
        }
        struct td_operand sum[2] = {{.t = prev}, {.t = gi}};
        struct td_tensor *sm = NULL;
        rc = td_op_apply(TD_OP_ADD, sum, 2, NULL, false, q, &sm, err);
        td_tensor_unref(gi);
        if (rc == 0) {
            td_map_put(&b->grads, key, sm); /* replaces prev in place: no allocation */
            td_tensor_unref(prev);
        }
    }
    for (int i = 0; i < n->nin; i++) {
        td_tensor_unref(gin[i]);
        gin[i] = NULL;
    }
    return rc;
}

/* Depth-first post-order of the nodes reachable from `from`, appended to b->order (seen: the
** nodes already placed, shared across roots so the order stays topological). */
static int sort_from(struct td_backward *b, struct td_node *from, struct td_map *seen, size_t *cap,
                     struct td_err *err)
{
    if (td_map_get(seen, (uint64_t)(uintptr_t)from) != NULL) {
        return 0;
    }
    size_t scap = 64, nstack = 0;
    struct td_node **stack = td_malloc(scap * sizeof *stack);
    int *next = td_malloc(scap * sizeof *next);
    int rc = 0;
    if (stack == NULL || next == NULL) {
        rc = td_err_code(err, TD_ENOMEM);
        goto out;
    }
    if ((rc = td_map_put(seen, (uint64_t)(uintptr_t)from, from)) != 0) {
        td_err_code(err, rc);
        goto out;
    }
    stack[nstack] = from;
    next[nstack++] = 0;
    while (nstack > 0) {
        struct td_node *n = stack[nstack - 1];
        int i = next[nstack - 1]++;
        if (i < n->nin) {
            struct td_node *c = n->next[i];
            if (c == NULL || td_map_get(seen, (uint64_t)(uintptr_t)c) != NULL) {
                continue;
            }
            if (nstack == scap) {
                struct td_node **s2 = td_realloc(stack, scap * 2 * sizeof *s2);
                int *n2 = s2 ? td_realloc(next, scap * 2 * sizeof *n2) : NULL;
                if (s2) {
                    stack = s2;
                }
                if (n2 == NULL) {
                    rc = td_err_code(err, TD_ENOMEM);
                    goto out;
                }
                next = n2;
                scap *= 2;
            }
            if ((rc = td_map_put(seen, (uint64_t)(uintptr_t)c, c)) != 0) {
                td_err_code(err, rc);
                goto out;
            }
            stack[nstack] = c;
            next[nstack++] = 0;
            continue;
        }
        if (b->norder == *cap) {
            struct td_node **o2 = td_realloc(b->order, *cap * 2 * sizeof *o2);
            if (o2 == NULL) {
                rc = td_err_code(err, TD_ENOMEM);
                goto out;
            }
            b->order = o2;
            *cap *= 2;
        }
        b->order[b->norder++] = n;
        nstack--;
    }
out:
    td_free(stack);
    td_free(next);
    return rc;
}

/* With inputs: marks the nodes whose outputs lead to an input (post-order: a node's producers
** are decided before it), so the walk runs only those, as torch's engine does. */
static int mark_needed(struct td_backward *b, struct td_err *err)
{
    for (size_t k = 0; k < b->norder; k++) {
        struct td_node *n = b->order[k];
        bool need = false;
        for (int i = 0; i < b->ninputs && !need; i++) {
            need = b->inputs[i]->grad_fn == n;
        }
        for (int i = 0; i < n->nin && !need; i++) {
            struct td_tensor *t = n->in[i].t;
            need = t != NULL && n->edge[i] &&
                   (input_index(b, t) >= 0 ||
                    (n->next[i] != NULL &&
                     td_map_get(&b->needed, (uint64_t)(uintptr_t)n->next[i])));
        }
        int rc;
        if (need && (rc = td_map_put(&b->needed, (uint64_t)(uintptr_t)n, n)) != 0) {
            return td_err_code(err, rc);
        }
    }
    return 0;
}

static int seed_root(struct td_backward *b, int k, struct td_tensor *root,
                     struct td_tensor *gradient, struct td_quota *q, struct td_err *err)
{
    if (!root->requires_grad) {
        return td_err_set(err, TD_EINVAL,
                          "element %d of tensors does not require grad and does not have a "
                          "grad_fn",
                          k);
    }
    struct td_tensor *seed = NULL;
    int rc;
    if (gradient == NULL) {
        if (root->numel != 1) {
            return td_err_set(err, TD_EINVAL,
                              "grad can be implicitly created only for scalar outputs");
        }
        /* one element (checked above): nothing for the work budget to weigh */
        if ((rc = td_tensor_full(&seed, root->dtype, root->shape, root->ndim, td_scalar_i(1), q,
                                 err)) != 0) {
            return rc;
        }
    } else {
        if (gradient->ndim != root->ndim ||
            memcmp(gradient->shape, root->shape, sizeof(int64_t) * (size_t)root->ndim) != 0) {
            char a[160], c[160];
            return td_err_set(err, TD_ESHAPE,
                              "Mismatch in shape: grad_output[%d] has a shape of "
                              "tensord.Size(%s) and output[%d] has a shape of tensord.Size(%s).",
                              k, td_shape_str(a, sizeof a, gradient->shape, gradient->ndim), k,
                              td_shape_str(c, sizeof c, root->shape, root->ndim));
        }
        seed = td_tensor_ref(gradient);
    }
    if (root->grad_fn == NULL) {
        rc = reach_leaf(b, root, seed, q, err);
        td_tensor_unref(seed);
        return rc;
    }
    if (b->ninputs > 0 && td_map_get(&b->needed, (uint64_t)(uintptr_t)root->grad_fn) == NULL) {
        td_tensor_unref(seed);
        return 0;
    }
    uint64_t key = (uint64_t)(uintptr_t)root->grad_fn;
    struct td_tensor *prev = td_map_get(&b->grads, key);
    if (prev == NULL) {
        if ((rc = td_map_put(&b->grads, key, seed)) != 0) {
            td_tensor_unref(seed);
            return td_err_code(err, rc);
        }
        return 0;
    }
    rc = add_into(&prev, seed, q, err);
    td_tensor_unref(seed);
    if (rc == 0) {
        td_map_put(&b->grads, key, prev);
    }
    return rc;
}

void td_backward_free(struct td_backward *b)
{
    if (b == NULL) {
        return;
    }
    uint64_t key;
    void *val;
    for (size_t it = 0; td_map_next(&b->grads, &it, &key, &val);) {
        td_tensor_unref(val);
    }
    td_map_close(&b->grads);
    td_map_close(&b->needed);
    for (int i = 0; i < b->ninputs; i++) {
        td_tensor_unref(b->inputs[i]);
        td_tensor_unref(b->results[i]);
    }
    td_node_unref(b->pending);
    td_tensor_unref(b->pending_grad);
    for (size_t k = 0; k < b->nheld; k++) {
        td_node_unref(b->order[k]);
    }
    td_free(b->order);
    td_free(b);
}

int td_backward_begin(const struct td_backward_req *r, struct td_quota *q, struct td_backward **out,
                      struct td_err *err)
{
    *out = NULL;
    if (r->nroots < 1 || r->nroots > TD_BACKWARD_MAX_ROOTS || r->ninputs < 0 ||
        r->ninputs > TD_BACKWARD_MAX_INPUTS || (!r->accumulate && r->ninputs == 0)) {
        return td_err_set(err, TD_EINVAL, "backward takes 1 to %d outputs and at most %d inputs",
                          TD_BACKWARD_MAX_ROOTS, TD_BACKWARD_MAX_INPUTS);
    }
    struct td_backward *b = td_calloc(1, sizeof *b);
    size_t cap = 64;
    if (b == NULL || (b->order = td_malloc(cap * sizeof *b->order)) == NULL) {
        td_free(b);
        return td_err_code(err, TD_ENOMEM);
    }
    td_map_init(&b->grads);
    td_map_init(&b->needed);
    b->retain_graph = r->retain_graph;
    b->accumulate = r->accumulate;
    b->allow_unused = r->allow_unused;
    int rc = 0;
    for (int i = 0; i < r->ninputs; i++) {
        if (!r->inputs[i]->requires_grad) {
            rc = td_err_set(err, TD_EINVAL,
                            "One of the differentiated Tensors does not require "
                            "grad");
            goto fail;
        }
        b->inputs[b->ninputs++] = td_tensor_ref(r->inputs[i]);
    }
    struct td_map seen;
    td_map_init(&seen);
    for (int k = 0; k < r->nroots && rc == 0; k++) {
        if (r->roots[k]->grad_fn != NULL) {
            rc = sort_from(b, r->roots[k]->grad_fn, &seen, &cap, err);
        }
    }
    td_map_close(&seen);
    for (size_t k = 0; rc == 0 && k < b->norder; k++) {
        b->order[k]->refs++;
    }
    b->nheld = rc == 0 ? b->norder : 0;
    if (rc == 0 && b->ninputs > 0) {
        rc = mark_needed(b, err);
    }
    for (int k = 0; k < r->nroots && rc == 0; k++) {
        rc = seed_root(b, k, r->roots[k], r->grads[k], q, err);
    }
    if (rc != 0) {
        goto fail;
    }
    b->next = b->norder;
    *out = b;
    return 0;
fail:
    td_backward_free(b);
    return rc;
}

/* After the last node: the graph's saved values go (unless retain_graph), and autograd.grad's
** inputs that no path reached are refused unless allow_unused. */
static int finish(struct td_backward *b, struct td_err *err)
{
    if (!b->retain_graph) {
        /* Free what the graph saved: memory goes back now, and a second backward is refused. */
        for (size_t k = 0; k < b->norder; k++) {
            struct td_node *n = b->order[k];
            for (int i = 0; i < n->nin; i++) {
                td_tensor_unref(n->in[i].t);
                n->in[i].t = NULL;
                td_node_unref(n->next[i]);
                n->next[i] = NULL;
            }
            td_storage_unref(n->out_storage);
            n->out_storage = NULL;
            n->released = true;
        }
        b->norder = 0;
    }
    for (int i = 0; i < b->ninputs && !b->accumulate; i++) {
        if (b->results[i] == NULL && !b->allow_unused) {
            return td_err_set(err, TD_EINVAL,
                              "One of the differentiated Tensors appears to not have been used "
                              "in the graph. Set allow_unused=True if this is the desired "
                              "behavior.");
        }
    }
    return 0;
}

static int released_error(struct td_err *err)
{
    return td_err_set(err, TD_EINVAL,
                      "Trying to backward through the graph a second time "
                      "(or directly access saved tensors after they have already been "
                      "freed). Saved intermediate values of the graph are freed when you "
                      "call .backward() or autograd.grad(). Specify retain_graph=True if "
                      "you need to backward through the graph a second time or if you "
                      "need to access saved tensors after calling backward.");
}

/* A failure's code for a walk's caller: some families' rules and make functions fail with -1
** (err filled); only a walk with a node pending is suspended, and every failure reaches the
** caller as a TD_E* code (rpc would otherwise put a NULL gradient under grad_output). */
static int failed(int rc, struct td_err *err)
{
    if (rc >= 0) {
        return rc;
    }
    if (err != NULL && err->code > 0) {
        return err->code;
    }
    return td_err_set(err, TD_EINTERNAL, "backward failed");
}

static int step(struct td_backward *b, struct td_quota *q, struct td_err *err);

int td_backward_step(struct td_backward *b, struct td_quota *q, struct td_err *err)
{
    int rc = step(b, q, err);
    return rc == TD_BACKWARD_SUSPENDED && b->pending != NULL ? rc : failed(rc, err);
}

static int step(struct td_backward *b, struct td_quota *q, struct td_err *err)
{
    if (b->pending != NULL) {
        return td_err_set(err, TD_EINVAL, "a custom Function's gradients are still awaited");
    }
    while (b->next > 0) {
        struct td_node *n = b->order[--b->next];
        struct td_tensor *g = td_map_del(&b->grads, (uint64_t)(uintptr_t)n);
        if (g == NULL) {
            continue;
        }
        int rc;
        /* Between nodes: a long backward stops when its request is cancelled (each node's
        ** kernels check within themselves too). */
        if ((rc = td_cancel_check(err)) != 0 || (n->released && (rc = released_error(err))) ||
            (rc = check_versions(n, err)) != 0) {
            td_tensor_unref(g);
            return rc;
        }
        for (int i = 0; i < b->ninputs; i++) {
            if (b->inputs[i]->grad_fn == n) {
                rc = b->accumulate ? accumulate_leaf(b->inputs[i], g, q, err)
                                   : add_into(&b->results[i], g, q, err);
                if (rc == 0 && b->accumulate && b->results[i] == NULL) {
                    b->results[i] = td_tensor_ref(g);
                }
                if (rc != 0) {
                    td_tensor_unref(g);
                    return rc;
                }
            }
        }
        if (b->accumulate && b->ninputs == 0 && n->retained != NULL &&
            (rc = accumulate_leaf(n->retained, g, q, err)) != 0) {
            td_tensor_unref(g);
            return rc;
        }
        if (td_ops[n->op].flags & TD_OPF_CUSTOM) {
            b->pending = n;
            n->refs++;
            b->pending_grad = g;
            return TD_BACKWARD_SUSPENDED;
        }
        td_bwd_fn *rule = td_ops[n->op].backward;
        if (rule == NULL) {
            td_tensor_unref(g);
            return td_err_set(err, TD_EUNSUP, "derivative for aten::%s is not implemented",
                              td_ops[n->op].name);
        }
        struct td_tensor *gin[TD_NODE_MAX_IN] = {NULL};
        rc = rule(n, g, gin, q, err);
        td_tensor_unref(g);
        if (rc != 0) {
            for (int i = 0; i < n->nin; i++) {
                td_tensor_unref(gin[i]);
            }
            return rc;
        }
        if ((rc = flow(b, n, gin, q, err)) != 0) {
            return rc;
        }
    }
    return finish(b, err);
}

const char *td_backward_pending(const struct td_backward *b, uint64_t *function_id,
                                struct td_tensor **grad_output, int *ninputs)
{
    if (b->pending == NULL) {
        return NULL;
    }
    *function_id = b->pending->args.function_id;
    *grad_output = b->pending_grad;
    *ninputs = b->pending->nin - 1;
    return td_node_name(b->pending);
}

bool td_backward_needs_input_grad(const struct td_backward *b, int i)
{
    const struct td_node *n = b->pending;
    if (n == NULL || i < 0 || i + 1 >= n->nin) {
        return false;
    }
    const struct td_tensor *t = n->in[i + 1].t;
    return t != NULL && n->edge[i + 1] && t->requires_grad;
}

/* Whether a's shape broadcasts to b's (torch's is_expandable_to(a, b)). */
static bool expandable(const struct td_tensor *a, const struct td_tensor *b)
{
    if (a->ndim > b->ndim) {
        return false;
    }
    for (int d = 1; d <= a->ndim; d++) {
        int64_t x = a->shape[a->ndim - d], y = b->shape[b->ndim - d];
        if (x != y && x != 1) {
            return false;
        }
    }
    return true;
}

int td_backward_give(struct td_backward *b, struct td_tensor *const *grads, int n,
                     struct td_quota *q, struct td_err *err)
{
    struct td_node *node = b->pending;
    if (node == NULL) {
        return td_err_set(err, TD_EINVAL, "no custom Function is awaiting its gradients");
    }
    const char *name = td_node_name(node);
    if (n != node->nin - 1) {
        return td_err_set(err, TD_EINVAL,
                          "function %s returned an incorrect number of gradients (expected %d, "
                          "got %d)",
                          name, node->nin - 1, n);
    }
    if (node->released) {
        return released_error(err);
    }
    struct td_tensor *gin[TD_NODE_MAX_IN] = {NULL};
    for (int i = 0; i < n; i++) {
        const struct td_tensor *t = node->in[i + 1].t;
        struct td_tensor *g = grads[i];
        if (g == NULL || t == NULL) {
            continue;
        }
        int rc = 0;
        if (!expandable(t, g)) {
            char a[160], c[160];
            rc = td_err_set(err, TD_ESHAPE,
                            "Function %s returned an invalid gradient at index %d - got %s but "
                            "expected shape compatible with %s",
                            name, i, td_shape_str(a, sizeof a, g->shape, g->ndim),
                            td_shape_str(c, sizeof c, t->shape, t->ndim));
        } else if (g->dtype != t->dtype) { /* torch casts a gradient to its input's dtype */
            struct td_op_args a;
            td_op_args_init(&a);
            a.has_dtype = true;
            a.dtype = t->dtype;
            struct td_operand in[1] = {{.t = g}};
            rc = td_op_apply(TD_OP_TO, in, 1, &a, false, q, &gin[i + 1], err);
        } else {
            gin[i + 1] = td_tensor_ref(g);
        }
        if (rc != 0) {
            for (int j = 0; j < TD_NODE_MAX_IN; j++) {
                td_tensor_unref(gin[j]);
            }
            return rc;
        }
    }
    int rc = failed(flow(b, node, gin, q, err), err);
    td_node_unref(b->pending);
    td_tensor_unref(b->pending_grad);
    b->pending = NULL;
    b->pending_grad = NULL;
    return rc;
}

int td_backward_result(const struct td_backward *b, int i, struct td_tensor **out)
{
    *out = i >= 0 && i < b->ninputs ? b->results[i] : NULL;
    return *out != NULL;
}

int td_autograd_backward(struct td_tensor *root, struct td_tensor *gradient, bool retain_graph,
                         struct td_quota *q, struct td_err *err)
{
    struct td_backward_req r = {.roots = &root,
                                .grads = &gradient,
                                .nroots = 1,
                                .retain_graph = retain_graph,
                                .accumulate = true};
    struct td_backward *b;
    int rc = td_backward_begin(&r, q, &b, err);
    if (rc != 0) {
        return rc;
    }
    rc = td_backward_step(b, q, err);
    td_backward_free(b);
    if (rc == TD_BACKWARD_SUSPENDED) {
        rc = td_err_set(err, TD_EUNSUP,
                        "this backward reaches a custom autograd Function, whose backward runs "
                        "in the client that defined it");
    }
    return rc;
}

/* ---- a tensor's autograd state, for the layers above core ---- */

int td_autograd_set_requires_grad(struct td_tensor *t, bool value, struct td_err *err)
{
    if (value && !td_dtype_is_float(t->dtype)) {
        return td_err_set(err, TD_EDTYPE,
                          "Only Tensors of floating point and complex dtype can "
                          "require gradients");
    }
    if (!value && t->grad_fn != NULL) {
        return td_err_set(err, TD_EINVAL,
                          "you can only change requires_grad flags of leaf "
                          "variables. If you want to use a computed variable in a subgraph that "
                          "doesn't require differentiation use var_no_grad = var.detach().");
    }
    t->requires_grad = value;
    return 0;
}

int td_autograd_retain_grad(struct td_tensor *t, struct td_err *err)
{
    if (!t->requires_grad) {
        return td_err_set(err, TD_EINVAL,
                          "can't retain_grad on Tensor that has "
                          "requires_grad=False");
    }
    if (t->grad_fn != NULL) {
        t->retains_grad = true;
        t->grad_fn->retained = t; /* weak; cleared when t is freed */
    }
    return 0;
}

void td_autograd_restore_flags(struct td_tensor *t, bool requires_grad, bool retains_grad)
{
    t->requires_grad = requires_grad && td_dtype_is_float(t->dtype);
    t->retains_grad = retains_grad;
}

bool td_autograd_requires_grad(const struct td_tensor *t)
{
    return t->requires_grad;
}

bool td_autograd_retains_grad(const struct td_tensor *t)
{
    return t->retains_grad;
}

bool td_autograd_is_leaf(const struct td_tensor *t)
{
    return t->grad_fn == NULL;
}

const char *td_autograd_grad_fn_name(const struct td_tensor *t)
{
    return t->grad_fn != NULL ? td_node_name(t->grad_fn) : NULL;
}

struct td_tensor *td_autograd_grad(const struct td_tensor *t)
{
    return t->grad;
}

void td_autograd_set_grad(struct td_tensor *t, struct td_tensor *g)
{
    td_tensor_unref(t->grad);
    t->grad = g;
}
