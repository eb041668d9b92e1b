/* server/rpc/backward.c — Backward and ResumeBackward: a backward, and the protocol step that
** lets a client run a custom autograd Function's backward in the middle of one.
**
** A Backward without `custom` runs its whole walk (core/autograd.h); one that meets a custom
** Function's node fails, since this client cannot run its Python. With `custom`, the walk
** stops there: the node's output gradient goes under the request's grad_output handle, the
** reply says `suspended` with the Function's id, and the walk waits in the session
** (td_session.walks, innermost last: the Function's own backward may run backwards too). The
** client computes the input gradients with ordinary requests, then ResumeBackward gives them
** (checked as torch checks a Function's: their number and shapes); the walk goes on to the
** next custom node or to its end. ResumeBackward with `abort` drops the walk (the Function's
** backward raised: gradients already accumulated stay, as in torch). A walk belongs to the
** connection that started it: a connection that closed cannot resume it, and the next Backward
** on the session drops such walks. A walk holds only what a backward holds while it runs
** (charged to the session's quota); at most TD_SESSION_MAX_WALKS wait per session.
*/
#include <string.h>

#include "rpc/internal.h"

#define MAX_GRADS (TD_NODE_MAX_IN - 1)

/* Drops the walks of connections other than conn_id (their client is gone). */
static void drop_stale_walks(struct td_session *s, uint64_t conn_id)
{
    int keep = 0;
    for (int i = 0; i < s->nwalks; i++) {
        if (s->walks[i].conn_id == conn_id) {
            s->walks[keep++] = s->walks[i];
        } else {
            td_backward_free(s->walks[i].b);
        }
    }
    s->nwalks = keep;
}

/* The reply for walk w after a step that returned rc: suspended (its output gradient under
** grad_output, the walk kept) or done (autograd.grad's results under the outs). Takes w->b:
** on every path but a suspension it is freed. */
static int after_step(struct td_session *s, struct td_walk *w, int rc, bool custom,
                      uint64_t grad_output, struct result *res, struct td_err *err)
{
    Tensord__BackwardResult *br = &res->backward_msg;
    tensord__backward_result__init(br);
    if (rc == TD_BACKWARD_SUSPENDED) {
        if (!custom) {
            td_backward_free(w->b);
            return td_err_set(err, TD_EUNSUP,
                              "this backward reaches a custom autograd Function, whose backward "
                              "runs in the client that defined it");
        }
        uint64_t id = 0;
        struct td_tensor *g = NULL;
        int n = 0;
        const char *name = td_backward_pending(w->b, &id, &g, &n);
        if (s->walks == NULL &&
            (s->walks = td_calloc(TD_SESSION_MAX_WALKS, sizeof *s->walks)) == NULL) {
            td_backward_free(w->b);
            return td_err_code(err, TD_ENOMEM);
        }
        if (s->nwalks == TD_SESSION_MAX_WALKS) {
            td_backward_free(w->b);
            return td_err_set(err, TD_ELIMIT,
                              "%d backwards are already waiting for custom Functions' gradients "
                              "in this session",
                              TD_SESSION_MAX_WALKS);
        }
        if ((rc = td_session_check_out(s, grad_output, err)) != 0 ||
            (rc = td_session_put(s, grad_output, td_tensor_ref(g), err)) != 0) {
            td_backward_free(w->b);
            return rc;
        }
        for (int i = 0; i < n && i < TD_BACKWARD_MAX_INPUTS; i++) {
            res->flags[i] = td_backward_needs_input_grad(w->b, i);
        }
        br->suspended = true;
        br->function_id = id;
        br->grad_fn = (char *)name; /* the node lives in the walk, kept below */
        br->n_needs_input_grad = (size_t)n;
        br->needs_input_grad = res->flags;
        s->walks[s->nwalks++] = *w;
        res->backward = br;
        return 0;
    }
    if (rc != 0) {
        td_backward_free(w->b);
        return rc;
    }
    if (w->results_only) {
        /* The outs were free when the walk began; a walk that suspended may find them taken
        ** since (its grad_output, the Function's own requests): a put would replace that entry
        ** and leak it with its charge. */
        for (int i = 0; i < w->nouts && rc == 0; i++) {
            rc = td_session_check_out(s, w->outs[i], err);
        }
        for (int i = 0; i < w->nouts && rc == 0; i++) {
            struct td_tensor *g = NULL;
            res->flags[i] = td_backward_result(w->b, i, &g) != 0;
            if (res->flags[i]) {
                rc = td_session_put(s, w->outs[i], td_tensor_ref(g), err);
            }
        }
        br->n_defined = (size_t)w->nouts;
        br->defined = res->flags;
    }
    td_backward_free(w->b);
    res->backward = br;
    return rc;
}

void td_rpc_cost_backward(struct rpc_job *j, struct td_session *s)
{
    const Tensord__Backward *m = j->req->backward;
    if (s == NULL || m == NULL || m->n_more_handles >= TD_BACKWARD_MAX_ROOTS) {
        return; /* refused at once by td_rpc_run_backward */
    }
    struct td_tensor *roots[TD_BACKWARD_MAX_ROOTS];
    int n = 0;
    int64_t grads = 0;
    for (size_t k = 0; k <= m->n_more_handles; k++) {
        uint64_t h = k == 0 ? m->handle : m->more_handles[k - 1];
        uint64_t gh = k == 0 ? m->gradient
                             : (k - 1 < m->n_more_gradients ? m->more_gradients[k - 1] : 0);
        struct td_tensor *t;
        if (td_session_lookup(s, h, &t, NULL) == 0) {
            roots[n++] = t;
        }
        if (gh != 0 && td_session_lookup(s, gh, &t, NULL) == 0) {
            grads = td_sat_add(grads, td_sat_mul(t->numel, 4)); /* read, maybe copied */
        }
    }
    j->work = td_sat_add(td_autograd_backward_work(roots, n), grads);
}

int td_rpc_run_backward(struct rpc_job *j, struct td_session *s, struct result *res,
                        struct td_err *err)
{
    const Tensord__Backward *m = j->req->backward;
    struct td_tensor *roots[TD_BACKWARD_MAX_ROOTS], *grads[TD_BACKWARD_MAX_ROOTS];
    struct td_tensor *inputs[TD_BACKWARD_MAX_INPUTS];
    int rc;
    if (m->n_more_handles >= TD_BACKWARD_MAX_ROOTS || m->n_inputs > TD_BACKWARD_MAX_INPUTS) {
        return td_err_set(err, TD_EINVAL, "backward takes 1 to %d outputs and at most %d inputs",
                          TD_BACKWARD_MAX_ROOTS, TD_BACKWARD_MAX_INPUTS);
    }
    if (m->n_more_gradients != 0 && m->n_more_gradients != m->n_more_handles) {
        return td_err_set(err, TD_EINVAL, "grad_tensors has %zu elements, outputs has %zu",
                          m->n_more_gradients + 1, m->n_more_handles + 1);
    }
    if (m->results_only && (m->n_inputs == 0 || m->n_outs != m->n_inputs)) {
        return td_err_set(err, TD_EINVAL, "grad: one out handle per input is needed");
    }
    int nroots = 1 + (int)m->n_more_handles;
    for (int k = 0; k < nroots; k++) {
        uint64_t h = k == 0 ? m->handle : m->more_handles[k - 1];
        uint64_t gh = k == 0 ? m->gradient
                             : (m->n_more_gradients != 0 ? m->more_gradients[k - 1] : 0);
        grads[k] = NULL;
        if ((rc = td_session_lookup(s, h, &roots[k], err)) != 0 ||
            (gh != 0 && (rc = td_session_lookup(s, gh, &grads[k], err)) != 0)) {
            return rc;
        }
    }
    for (size_t i = 0; i < m->n_inputs; i++) {
        if ((rc = td_session_lookup(s, m->inputs[i], &inputs[i], err)) != 0) {
            return rc;
        }
    }
    struct td_walk w = {.conn_id = j->peer->conn_id, .results_only = m->results_only};
    if (m->results_only) {
        for (size_t i = 0; i < m->n_outs; i++) {
            for (size_t k = 0; k < i; k++) {
                if (m->outs[k] == m->outs[i]) {
                    return td_err_set(err, TD_EINVAL, "grad: out handles must differ");
                }
            }
            if ((rc = td_session_check_out(s, m->outs[i], err)) != 0) {
                return rc;
            }
            w.outs[i] = m->outs[i];
        }
        w.nouts = (int)m->n_outs;
    }
    if (m->custom &&
        (m->grad_output == 0 || (rc = td_session_check_out(s, m->grad_output, err)) != 0)) {
        return m->grad_output == 0 ? td_err_set(err, TD_EINVAL,
                                                "Backward.custom needs a "
                                                "grad_output handle")
                                   : rc;
    }
    drop_stale_walks(s, j->peer->conn_id);
    struct td_backward_req r = {.roots = roots,
                                .grads = grads,
                                .nroots = nroots,
                                .inputs = inputs,
                                .ninputs = (int)m->n_inputs,
                                .retain_graph = m->retain_graph,
                                .accumulate = !m->results_only,
                                .allow_unused = m->allow_unused};
    if ((rc = td_backward_begin(&r, &s->quota, &w.b, err)) != 0) {
        return rc;
    }
    rc = td_backward_step(w.b, &s->quota, err);
    return after_step(s, &w, rc, m->custom, m->grad_output, res, err);
}

int td_rpc_run_resume_backward(struct rpc_job *j, struct td_session *s, struct result *res,
                               struct td_err *err)
{
    const Tensord__ResumeBackward *m = j->req->resume_backward;
    if (s->nwalks == 0) {
        return td_err_set(err, TD_EINVAL,
                          "no backward is waiting for a custom Function's "
                          "gradients");
    }
    struct td_walk w = s->walks[s->nwalks - 1];
    if (w.conn_id != j->peer->conn_id) {
        drop_stale_walks(s, j->peer->conn_id);
        return td_err_set(err, TD_EINVAL,
                          "the backward waiting here was started on a "
                          "connection that has closed");
    }
    if (m->abort) {
        s->nwalks--;
        td_backward_free(w.b);
        tensord__backward_result__init(&res->backward_msg);
        res->backward = &res->backward_msg;
        return 0;
    }
    if (m->n_grads > MAX_GRADS) {
        return td_err_set(err, TD_EINVAL, "a Function takes at most %d tensor inputs", MAX_GRADS);
    }
    struct td_tensor *grads[MAX_GRADS] = {NULL};
    int rc;
    for (size_t i = 0; i < m->n_grads; i++) {
        if (m->grads[i] != 0 && (rc = td_session_lookup(s, m->grads[i], &grads[i], err)) != 0) {
            return rc;
        }
    }
    if (m->grad_output == 0 || (rc = td_session_check_out(s, m->grad_output, err)) != 0) {
        return m->grad_output == 0 ? td_err_set(err, TD_EINVAL,
                                                "ResumeBackward needs a "
                                                "grad_output handle")
                                   : rc;
    }
    s->nwalks--; /* the walk is this request's now: kept again if it suspends */
    if ((rc = td_backward_give(w.b, grads, (int)m->n_grads, &s->quota, err)) != 0) {
        td_backward_free(w.b);
        return rc;
    }
    rc = td_backward_step(w.b, &s->quota, err);
    return after_step(s, &w, rc, true, m->grad_output, res, err);
}
