/* server/rpc/optim.c — OptimStep: torch.optim's step, Optimizer.zero_grad and
** torch.nn.utils' clip_grad_norm_ / clip_grad_value_, each as one request over a list of
** parameters (the modes of proto/tensord.proto's OptimStep).
**
** The handler resolves every wire value against the session's handle table and hands the math
** to core (core/optim.c), in three phases so that a refused step changes nothing:
**   1. validate: the algorithm, each group's options (torch's constructor checks), each
**      parameter (a float tensor in the table, not an expanded view), its .grad (None: the
**      parameter is skipped, its states untouched), and for a parameter with a .grad every
**      state its algorithm keeps: a handle in use must hold a tensor of the parameter's shape
**      and dtype, a handle not in use is made on this step (torch's lazy state); no two of the
**      parameters and states may share memory, and no new handle may be named twice;
**   2. make the new states and put them in the table, and make every written tensor private
**      (td_tensor_prepare_write) — the last things that can fail for memory or quota;
**   3. update each parameter in turn (td_optim_update), which fails only when the request is
**      cancelled (then the parameters stepped so far stay stepped, as any in-place write
**      stopped part way does, and the states this step made are dropped again).
** The reply's text says which parameters were stepped, one character each ('1', or '0' for a
** parameter without .grad), charged to the session until it is written; the Python client reads
** it only when asked for optimizer.state, so a training step never waits for it.
** The other modes resolve every parameter and its .grad first too, then write: ZERO_GRAD sets
** each .grad to None or zeroes it; CLIP_GRAD_VALUE clamps each; CLIP_GRAD_NORM puts its result
** (the total norm, 0-dim) under `out` first, then scales (core's td_optim_clip_grad_norm).
** Cost (td_rpc_cost_optim_step): the parameters' elements times the algorithm's passes over
** them, plus a fixed amount per parameter; it decides inline or pool, and --max-op-elements.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/checked.h"
#include "core/autograd.h"
#include "core/optim.h"
#include "rpc/internal.h"

#define OPTIM_MAX_PARAMS 65536 /* parameters of one step, over all its groups */

/* One parameter of the request, resolved. */
struct item {
    uint64_t handle;                      /* the parameter's */
    struct td_tensor *p;                  /* borrowed from the table */
    struct td_tensor *g;                  /* borrowed: p's .grad, NULL when None (skipped) */
    int group;                            /* its index in m->groups */
    uint64_t h[TD_OPTIM_SLOTS];           /* state handles the request names */
    struct td_tensor *st[TD_OPTIM_SLOTS]; /* the states the update uses (borrowed) */
    unsigned make;                        /* slots whose state this step makes */
    unsigned made;                        /* ... and has put in the table */
};

/* A storage and the handle that names it, to find memory two written tensors share. */
struct owner {
    const void *storage;
    uint64_t handle;
};

static int cmp_owner(const void *a, const void *b)
{
    const struct owner *x = a, *y = b;
    if (x->storage != y->storage) {
        return (uintptr_t)x->storage < (uintptr_t)y->storage ? -1 : 1;
    }
    return x->handle < y->handle ? -1 : x->handle > y->handle;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int wire_algo(int w, enum td_optim_algo *out, struct td_err *err)
{
    switch (w) {
    case TENSORD__OPTIM_STEP__ALGORITHM__SGD: *out = TD_OPTIM_SGD; return 0;
    case TENSORD__OPTIM_STEP__ALGORITHM__ADAM: *out = TD_OPTIM_ADAM; return 0;
    case TENSORD__OPTIM_STEP__ALGORITHM__ADAMW: *out = TD_OPTIM_ADAMW; return 0;
    case TENSORD__OPTIM_STEP__ALGORITHM__RMSPROP: *out = TD_OPTIM_RMSPROP; return 0;
    case TENSORD__OPTIM_STEP__ALGORITHM__ADAGRAD: *out = TD_OPTIM_ADAGRAD; return 0;
    default: return td_err_set(err, TD_EINVAL, "unknown optimizer algorithm %d", w);
    }
}

static void wire_hparams(const Tensord__OptimGroup *g, struct td_optim_hparams *h)
{
    h->lr = g->lr;
    h->momentum = g->momentum;
    h->dampening = g->dampening;
    h->weight_decay = g->weight_decay;
    h->nesterov = g->nesterov;
    h->maximize = g->maximize;
    h->beta1 = g->beta1;
    h->beta2 = g->beta2;
    h->eps = g->eps;
    h->amsgrad = g->amsgrad;
    h->alpha = g->alpha;
    h->centered = g->centered;
    h->lr_decay = g->lr_decay;
    h->initial_accumulator_value = g->initial_accumulator_value;
}

static void wire_handles(const Tensord__OptimParam *w, uint64_t *h)
{
    h[TD_OPTIM_STEP] = w->step;
    h[TD_OPTIM_MOMENTUM_BUFFER] = w->momentum_buffer;
    h[TD_OPTIM_EXP_AVG] = w->exp_avg;
    h[TD_OPTIM_EXP_AVG_SQ] = w->exp_avg_sq;
    h[TD_OPTIM_MAX_EXP_AVG_SQ] = w->max_exp_avg_sq;
    h[TD_OPTIM_SQUARE_AVG] = w->square_avg;
    h[TD_OPTIM_GRAD_AVG] = w->grad_avg;
    h[TD_OPTIM_SUM] = w->sum;
}

/* The parameters of all groups, counted (at most OPTIM_MAX_PARAMS). */
static int count_params(const Tensord__OptimStep *m, size_t *n, struct td_err *err)
{
    size_t total = 0;
    if (m->n_groups > OPTIM_MAX_PARAMS) {
        return td_err_set(err, TD_ELIMIT, "an optimizer step takes at most %d param groups",
                          OPTIM_MAX_PARAMS);
    }
    for (size_t gi = 0; gi < m->n_groups; gi++) {
        size_t k = m->groups[gi]->n_params;
        if (k > OPTIM_MAX_PARAMS || total + k > OPTIM_MAX_PARAMS) {
            return td_err_set(err, TD_ELIMIT,
                              "an optimizer step takes at most %d parameters in all its groups",
                              OPTIM_MAX_PARAMS);
        }
        total += k;
    }
    *n = total;
    return 0;
}

/* Drops the states this step put in the table (a step refused or stopped leaves none). */
static void unmake(struct td_session *s, struct item *it, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (int k = 0; k < TD_OPTIM_SLOTS; k++) {
            if (it[i].made & (1u << k)) {
                td_session_free_handle(s, it[i].h[k]);
            }
        }
        it[i].made = 0;
    }
}

/* Phase 1 for one parameter: resolve it, its .grad and the states it needs. */
static int resolve_param(struct td_session *s, const Tensord__OptimParam *w, int group,
                         unsigned slots, struct item *it, struct td_err *err)
{
    char what[64], sh[2][128];
    int rc;
    it->handle = w->param;
    it->group = group;
    wire_handles(w, it->h);
    snprintf(what, sizeof what, "parameter %llu", (unsigned long long)w->param);
    if ((rc = td_session_lookup(s, w->param, &it->p, err)) != 0 ||
        (rc = td_optim_check_param(it->p, what, err)) != 0) {
        return rc;
    }
    it->g = td_autograd_grad(it->p);
    if (it->g == NULL) {
        return 0; /* torch skips a parameter whose .grad is None */
    }
    const struct td_tensor *p = it->p, *g = it->g;
    bool same = g->ndim == p->ndim && g->dtype == p->dtype;
    for (int d = 0; same && d < p->ndim; d++) {
        same = g->shape[d] == p->shape[d];
    }
    if (!same) {
        return td_err_set(err, TD_ESHAPE,
                          "the .grad of %s is %s of shape %s, but the parameter is %s of "
                          "shape %s",
                          what, td_dtype_name(g->dtype),
                          td_shape_str(sh[0], sizeof sh[0], g->shape, g->ndim),
                          td_dtype_name(p->dtype),
                          td_shape_str(sh[1], sizeof sh[1], p->shape, p->ndim));
    }
    for (int k = 0; k < TD_OPTIM_SLOTS; k++) {
        if (!(slots & (1u << k))) {
            continue;
        }
        uint64_t h = it->h[k];
        if (h == 0) {
            return td_err_set(err, TD_EINVAL, "%s needs a handle for its state '%s'", what,
                              td_optim_slot_name((enum td_optim_slot)k));
        }
        struct td_err lerr;
        rc = td_session_lookup(s, h, &it->st[k], &lerr);
        if (rc == TD_EHANDLE) {
            /* not in use yet: this step makes it (torch's lazy state initialisation) */
            if ((rc = td_session_check_out(s, h, err)) != 0) {
                return rc;
            }
            it->make |= 1u << k;
            it->st[k] = NULL;
            continue;
        }
        if (rc != 0) {
            *err = lerr;
            return rc;
        }
        char swhat[96];
        snprintf(swhat, sizeof swhat, "handle %llu", (unsigned long long)h);
        if ((rc = td_optim_check_state((enum td_optim_slot)k, p, it->st[k], swhat, err)) != 0) {
            return rc;
        }
    }
    return 0;
}

/* No two of the tensors a step touches (parameters, their .grads, kept states) share a storage,
** and no new handle is named twice: either would make one update overwrite another's input. */
static int check_distinct(const struct item *it, size_t n, struct td_err *err)
{
    size_t cap = n * (2 + TD_OPTIM_SLOTS); /* n <= OPTIM_MAX_PARAMS: no overflow */
    struct owner *o = td_malloc((cap > 0 ? cap : 1) * sizeof *o);
    uint64_t *fresh = td_malloc((cap > 0 ? cap : 1) * sizeof *fresh);
    if (o == NULL || fresh == NULL) {
        td_free(o);
        td_free(fresh);
        return td_err_code(err, TD_ENOMEM);
    }
    size_t no = 0, nf = 0;
    for (size_t i = 0; i < n; i++) {
        o[no++] = (struct owner){it[i].p->storage, it[i].handle};
        if (it[i].g != NULL) {
            /* read, not written; but a state or parameter over it would change it mid-step */
            o[no++] = (struct owner){it[i].g->storage, it[i].handle};
        }
        for (int k = 0; k < TD_OPTIM_SLOTS; k++) {
            if (it[i].make & (1u << k)) {
                fresh[nf++] = it[i].h[k];
            } else if (it[i].st[k] != NULL) {
                o[no++] = (struct owner){it[i].st[k]->storage, it[i].h[k]};
            }
        }
    }
    qsort(o, no, sizeof *o, cmp_owner);
    qsort(fresh, nf, sizeof *fresh, cmp_u64);
    int rc = 0;
    for (size_t i = 1; i < no && rc == 0; i++) {
        if (o[i].storage == o[i - 1].storage) {
            rc = o[i].handle == o[i - 1].handle
                     ? td_err_set(err, TD_EINVAL,
                                  "handle %llu appears twice among the parameters and states "
                                  "of an optimizer step",
                                  (unsigned long long)o[i].handle)
                     : td_err_set(err, TD_EINVAL,
                                  "handles %llu and %llu share memory: the parameters and "
                                  "states of an optimizer step must not",
                                  (unsigned long long)o[i - 1].handle,
                                  (unsigned long long)o[i].handle);
        }
    }
    for (size_t i = 1; i < nf && rc == 0; i++) {
        if (fresh[i] == fresh[i - 1]) {
            rc = td_err_set(err, TD_EINVAL,
                            "handle %llu is named for two states of an optimizer step",
                            (unsigned long long)fresh[i]);
        }
    }
    td_free(o);
    td_free(fresh);
    return rc;
}

/* The .grads of the request's parameters (NULL where None; borrowed), in request order. Every
** parameter must be in the table; with `prepare`, each .grad is made private for writing. */
static int resolve_grads(struct td_session *s, const Tensord__OptimStep *m, size_t n,
                         struct td_tensor ***out, bool prepare, struct td_err *err)
{
    struct td_tensor **g = td_calloc(n > 0 ? n : 1, sizeof *g);
    if (g == NULL) {
        return td_err_code(err, TD_ENOMEM);
    }
    int rc = 0;
    size_t k = 0;
    for (size_t gi = 0; gi < m->n_groups && rc == 0; gi++) {
        const Tensord__OptimGroup *grp = m->groups[gi];
        for (size_t i = 0; i < grp->n_params && rc == 0; i++, k++) {
            struct td_tensor *p;
            if ((rc = td_session_lookup(s, grp->params[i]->param, &p, err)) != 0) {
                break;
            }
            g[k] = td_autograd_grad(p);
            if (g[k] != NULL && g[k]->dtype != TD_DTYPE_F32 && g[k]->dtype != TD_DTYPE_F64) {
                rc = td_err_set(err, TD_EDTYPE, "the .grad of parameter %llu is %s",
                                (unsigned long long)grp->params[i]->param,
                                td_dtype_name(g[k]->dtype));
            }
        }
    }
    for (size_t i = 0; i < n && rc == 0 && prepare; i++) {
        if (g[i] != NULL) {
            rc = td_tensor_prepare_write(g[i], err);
        }
    }
    if (rc != 0) {
        td_free(g);
        return rc;
    }
    *out = g;
    return 0;
}

/* zero_grad(set_to_none): every parameter is checked before any .grad changes. */
static int zero_grad(struct td_session *s, const Tensord__OptimStep *m, size_t n,
                     struct td_err *err)
{
    struct td_tensor **g;
    int rc = resolve_grads(s, m, n, &g, !m->set_to_none, err);
    if (rc != 0) {
        return rc;
    }
    size_t k = 0;
    for (size_t gi = 0; gi < m->n_groups && rc == 0; gi++) {
        const Tensord__OptimGroup *grp = m->groups[gi];
        for (size_t i = 0; i < grp->n_params && rc == 0; i++, k++) {
            if (g[k] == NULL) {
                continue;
            }
            if (m->set_to_none) {
                struct td_tensor *p;
                if (td_session_lookup(s, grp->params[i]->param, &p, NULL) == 0) {
                    td_autograd_set_grad(p, NULL); /* releases g[k] (and any duplicate's) */
                }
            } else {
                rc = td_optim_zero(g[k], err);
            }
        }
    }
    td_free(g);
    return rc;
}

/* clip_grad_value_: every .grad clamped to [-clip_value, clip_value] in place. */
static int clip_value(struct td_session *s, const Tensord__OptimStep *m, size_t n,
                      struct td_err *err)
{
    struct td_tensor **g;
    int rc = resolve_grads(s, m, n, &g, true, err);
    if (rc != 0) {
        return rc;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (g[i] != NULL) {
            rc = td_optim_clamp(g[i], -m->clip_value, m->clip_value, err);
        }
    }
    td_free(g);
    return rc;
}

/* clip_grad_norm_: the total norm under m->out (a 0-dim tensor), every .grad scaled in place.
** The result is in the table before any .grad is scaled, so a failure after that is only the
** cancel's (or a non-finite norm refused before scaling), and then the result goes again. */
static int clip_norm(struct td_session *s, const Tensord__OptimStep *m, size_t n,
                     struct result *res, struct td_err *err)
{
    struct td_tensor **g, *t = NULL;
    int rc;
    if ((rc = td_session_check_out(s, m->out, err)) != 0 ||
        (rc = resolve_grads(s, m, n, &g, true, err)) != 0) {
        return rc;
    }
    /* The gradients that exist, in order (a parameter named twice counts, and is scaled,
    ** twice, as in torch's loop); the result is float32 unless one is float64. */
    size_t k = 0;
    bool f32 = true;
    for (size_t i = 0; i < n; i++) {
        if (g[i] != NULL) {
            f32 = f32 && g[i]->dtype == TD_DTYPE_F32;
            g[k++] = g[i];
        }
    }
    if ((rc = td_tensor_full(&t, f32 ? TD_DTYPE_F32 : TD_DTYPE_F64, NULL, 0, td_scalar_f(0.0),
                             &s->quota, err)) != 0 ||
        (rc = td_session_put(s, m->out, t, err)) != 0) {
        td_free(g);
        return rc;
    }
    double total = 0; /* torch.tensor(0.) without any .grad */
    if (k > 0) {
        rc = td_optim_clip_grad_norm(g, (int64_t)k, m->max_norm, m->norm_type,
                                     m->error_if_nonfinite, &total, &f32, err);
    }
    td_free(g);
    if (rc != 0) {
        td_session_free_handle(s, m->out);
        return rc;
    }
    td_elem_store_f64(td_tensor_data(t), t->dtype, total);
    res->tensor = t;
    res->handle = m->out;
    return 0;
}

int td_rpc_run_optim_step(struct rpc_job *j, struct td_session *s, struct result *res,
                          struct td_err *err)
{
    const Tensord__OptimStep *m = j->req->optim_step;
    enum td_optim_algo algo;
    size_t n = 0;
    int rc;
    if ((rc = count_params(m, &n, err)) != 0) {
        return rc;
    }
    switch (m->mode) {
    case TENSORD__OPTIM_STEP__MODE__STEP: break;
    case TENSORD__OPTIM_STEP__MODE__ZERO_GRAD: return zero_grad(s, m, n, err);
    case TENSORD__OPTIM_STEP__MODE__CLIP_GRAD_NORM: return clip_norm(s, m, n, res, err);
    case TENSORD__OPTIM_STEP__MODE__CLIP_GRAD_VALUE: return clip_value(s, m, n, err);
    default: return td_err_set(err, TD_EINVAL, "unknown optimizer request mode %d", (int)m->mode);
    }
    if ((rc = wire_algo(m->algorithm, &algo, err)) != 0) {
        return rc;
    }
    /* The resolved parameters, and the reply's text, are charged while they live. */
    int64_t charge = td_sat_add(td_sat_mul((int64_t)n, (int64_t)sizeof(struct item)),
                                td_sat_mul((int64_t)n, (2 + TD_OPTIM_SLOTS) *
                                                           (int64_t)(sizeof(struct owner) + 8)));
    charge = td_sat_add(charge, td_sat_mul((int64_t)m->n_groups,
                                           (int64_t)(sizeof(struct td_optim_hparams) + 8)));
    if ((rc = td_quota_charge_bytes(&s->quota, charge, err)) != 0) {
        return rc;
    }
    struct item *it = td_calloc(n > 0 ? n : 1, sizeof *it);
    if (it == NULL) {
        rc = td_err_code(err, TD_ENOMEM);
        goto out_charge;
    }
    struct td_optim_hparams *hp = td_calloc(m->n_groups > 0 ? m->n_groups : 1, sizeof *hp);
    unsigned *slots = td_calloc(m->n_groups > 0 ? m->n_groups : 1, sizeof *slots);
    if (hp == NULL || slots == NULL) {
        rc = td_err_code(err, TD_ENOMEM);
        goto out;
    }
    /* 1: validate */
    size_t k = 0;
    for (size_t gi = 0; gi < m->n_groups; gi++) {
        const Tensord__OptimGroup *g = m->groups[gi];
        wire_hparams(g, &hp[gi]);
        if ((rc = td_optim_check(algo, &hp[gi], err)) != 0) {
            goto out;
        }
        slots[gi] = td_optim_slots(algo, &hp[gi]);
        for (size_t i = 0; i < g->n_params; i++, k++) {
            if ((rc = resolve_param(s, g->params[i], (int)gi, slots[gi], &it[k], err)) != 0) {
                goto out;
            }
        }
    }
    if ((rc = check_distinct(it, n, err)) != 0) {
        goto out;
    }
    /* 2: new states into the table; every written tensor made private */
    for (size_t i = 0; i < n; i++) {
        for (int sl = 0; sl < TD_OPTIM_SLOTS && it[i].g != NULL; sl++) {
            if (!(it[i].make & (1u << sl))) {
                continue;
            }
            struct td_tensor *t = NULL;
            if ((rc = td_optim_state_new((enum td_optim_slot)sl, &hp[it[i].group], it[i].p,
                                         &s->quota, &t, err)) != 0 ||
                (rc = td_session_put(s, it[i].h[sl], t, err)) != 0) {
                goto out_unmake;
            }
            it[i].made |= 1u << sl;
            it[i].st[sl] = t;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (it[i].g == NULL) {
            continue;
        }
        if ((rc = td_tensor_prepare_write(it[i].p, err)) != 0) {
            goto out_unmake;
        }
        for (int sl = 0; sl < TD_OPTIM_SLOTS; sl++) {
            if (it[i].st[sl] != NULL && (rc = td_tensor_prepare_write(it[i].st[sl], err)) != 0) {
                goto out_unmake;
            }
        }
    }
    /* The reply: which parameters were stepped. */
    if ((rc = td_quota_charge_bytes(&s->quota, (int64_t)n + 1, err)) != 0) {
        goto out_unmake;
    }
    res->text = td_malloc(n + 1);
    if (res->text == NULL) {
        td_quota_release(&s->quota, (int64_t)n + 1);
        rc = td_err_code(err, TD_ENOMEM);
        goto out_unmake;
    }
    j->reply_charge = (int64_t)n + 1;
    for (size_t i = 0; i < n; i++) {
        res->text[i] = it[i].g != NULL ? '1' : '0';
    }
    res->text[n] = '\0';
    /* 3: the updates */
    for (size_t i = 0; i < n; i++) {
        if (it[i].g == NULL) {
            continue;
        }
        if ((rc = td_optim_update(algo, &hp[it[i].group], it[i].p, it[i].g, it[i].st, it[i].make,
                                  err)) != 0) {
            goto out_unmake; /* cancelled: the dispatcher drops the text and its charge */
        }
    }
    rc = 0;
    goto out;
out_unmake:
    unmake(s, it, n);
out:
    td_free(hp);
    td_free(slots);
    td_free(it);
out_charge:
    td_quota_release(&s->quota, charge);
    return rc;
}

void td_rpc_cost_optim_step(struct rpc_job *j, struct td_session *s)
{
    const Tensord__OptimStep *m = j->req->optim_step;
    enum td_optim_algo algo;
    j->cost_name = "optimizer step";
    if (m == NULL || s == NULL) {
        return;
    }
    int64_t passes = m->mode == TENSORD__OPTIM_STEP__MODE__STEP
                         ? (wire_algo(m->algorithm, &algo, NULL) == 0 ? td_optim_passes(algo) : 0)
                         : 3; /* zero: 1 write; clips: a read for the norm, a read and a write */
    int64_t work = 0;
    for (size_t gi = 0; gi < m->n_groups; gi++) {
        const Tensord__OptimGroup *g = m->groups[gi];
        for (size_t i = 0; i < g->n_params; i++) {
            struct td_tensor *p;
            work = td_sat_add(work, TD_RPC_FREE_WORK);
            if (td_session_lookup(s, g->params[i]->param, &p, NULL) == 0) {
                work = td_sat_add(work, td_sat_mul(p->numel, passes));
            }
        }
    }
    j->work = work;
}

uint64_t td_rpc_out_optim_step(const Tensord__Request *req)
{
    const Tensord__OptimStep *m = req->optim_step;
    return m != NULL && m->mode == TENSORD__OPTIM_STEP__MODE__CLIP_GRAD_NORM ? m->out : 0;
}
