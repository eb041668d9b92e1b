/* names.c — named tensors (SetName, GetName, DelName, ListNames): RedisAI's keys, per session.
**
** The table itself is session's (td_session_set_name ...): name -> tensor reference, in the
** order the names were first set. Here the wire's values are checked (a name as protobuf-c
** decoded it must be as long as it was on the wire: a NUL would cut it short), handles are
** resolved as ops resolve them (an unknown one is UNKNOWN_HANDLE, one whose op failed
** INPUT_FAILED), and ListNames' reply is sized and charged.
**
** Costs. SetName, GetName and DelName are a hash of at most 255 bytes and a map operation:
** inline, no cost function. ListNames copies every name into its reply: at most
** TD_SESSION_MAX_NAMES * (TD_NAME_MAX_BYTES + 3) bytes (about 17 MB, far below the 4 GiB a
** frame's protobuf section can hold), its work is those bytes (td_rpc_cost_list_names: a long
** list goes to the executor), and the reply's bytes are charged to the session's quota from
** before they are allocated until the reply is written, as Format's text is.
*/
#include <string.h>

#include "base/checked.h"
#include "internal.h"
#include "session/session.h"

uint64_t td_rpc_out_get_name(const Tensord__Request *req)
{
    return req->get_name != NULL ? req->get_name->out : 0;
}

/* The request's name, checked: its characters and length, and that protobuf-c's copy is the
** whole of it. */
static int wire_name(const struct rpc_job *j, const char *name, size_t *len, struct td_err *err)
{
    size_t n = name != NULL ? strlen(name) : 0;
    if (j->name_wire_len < 0) {
        return td_err_set(err, TD_EINVAL, "the request's name does not scan");
    }
    if ((uint64_t)j->name_wire_len != n) {
        return td_err_set(err, TD_EINVAL,
                          "a tensor name may hold only A-Z a-z 0-9 _ . : / -, not byte 0x00 at "
                          "offset %zu",
                          n);
    }
    int rc = td_session_name_check(name != NULL ? name : "", n, err);
    if (rc == 0) {
        *len = n;
    }
    return rc;
}

int td_rpc_run_set_name(struct rpc_job *j, struct td_session *s, struct result *res,
                        struct td_err *err)
{
    const Tensord__SetName *m = j->req->set_name;
    size_t len;
    struct td_tensor *t;
    int rc;
    if ((rc = wire_name(j, m->name, &len, err)) != 0 ||
        (rc = td_session_lookup(s, m->handle, &t, err)) != 0) {
        return rc;
    }
    return td_session_set_name(s, m->name, len, t, err);
}

/* The named tensor under a new handle: the same tensor object (its requires_grad, .grad and
** grad_fn are the tensor's), as a dict hands back what it holds. */
int td_rpc_run_get_name(struct rpc_job *j, struct td_session *s, struct result *res,
                        struct td_err *err)
{
    const Tensord__GetName *m = j->req->get_name;
    size_t len;
    struct td_tensor *t;
    int rc;
    if ((rc = wire_name(j, m->name, &len, err)) != 0 ||
        (rc = td_session_check_out(s, m->out, err)) != 0 ||
        (rc = td_session_get_name(s, m->name, len, &t, err)) != 0 ||
        (rc = td_session_put(s, m->out, td_tensor_ref(t), err)) != 0) {
        return rc;
    }
    res->tensor = t;
    res->handle = m->out;
    return 0;
}

int td_rpc_run_del_name(struct rpc_job *j, struct td_session *s, struct result *res,
                        struct td_err *err)
{
    size_t len;
    int rc = wire_name(j, j->req->del_name->name, &len, err);
    if (rc != 0) {
        return rc;
    }
    return td_session_del_name(s, j->req->del_name->name, len, err);
}

/* The reply's bytes, over-estimated: each name's bytes, its tag and length (at most 1 + 2),
** and the pointer array the message holds while it is encoded. */
static int64_t list_bytes(const struct td_session *s)
{
    int64_t n = (int64_t)td_session_name_count(s);
    return td_sat_add(s->names_len, td_sat_mul(n, 3 + (int64_t)sizeof(char *)));
}

void td_rpc_cost_list_names(struct rpc_job *j, struct td_session *s)
{
    j->work = s != NULL ? list_bytes(s) : 0;
}

int td_rpc_run_list_names(struct rpc_job *j, struct td_session *s, struct result *res,
                          struct td_err *err)
{
    if (s->closed) {
        return td_err_set(err, TD_ESESSION, "session is closed");
    }
    size_t n = td_session_name_count(s);
    tensord__name_list__init(&res->names_msg);
    res->names = &res->names_msg;
    if (n == 0) {
        return 0;
    }
    /* Charged before anything is allocated, released once the reply is written (job_done). */
    int64_t charge = list_bytes(s);
    int rc = td_quota_charge_bytes(&s->quota, charge, err);
    if (rc != 0) {
        res->names = NULL;
        return rc;
    }
    char **v = td_malloc(n * sizeof *v);
    if (v == NULL) {
        td_quota_release(&s->quota, charge);
        res->names = NULL;
        return td_err_code(err, TD_ENOMEM);
    }
    size_t i = 0;
    for (const struct td_name *nm = td_session_names(s); nm != NULL && i < n; nm = nm->next) {
        v[i++] = (char *)nm->name; /* borrowed: the reply is encoded before the table changes */
    }
    res->mem = v;
    res->names_msg.names = v;
    res->names_msg.n_names = i;
    j->reply_charge = charge;
    return 0;
}
