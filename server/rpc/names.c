/* names.c — named tensors (SetName, GetName, DelName, ListNames): RedisAI's keys, per session.
**
** Not built yet (issue 20): every request answers UNIMPLEMENTED.
*/
#include "internal.h"

uint64_t td_rpc_out_get_name(const Tensord__Request *req)
{
    return req->get_name != NULL ? req->get_name->out : 0;
}

int td_rpc_run_set_name(struct rpc_job *j, struct td_session *s, struct result *res,
                        struct td_err *err)
{
    return td_err_set(err, TD_EUNSUP, "named tensors are not implemented yet");
}

int td_rpc_run_get_name(struct rpc_job *j, struct td_session *s, struct result *res,
                        struct td_err *err)
{
    return td_err_set(err, TD_EUNSUP, "named tensors are not implemented yet");
}

int td_rpc_run_del_name(struct rpc_job *j, struct td_session *s, struct result *res,
                        struct td_err *err)
{
    return td_err_set(err, TD_EUNSUP, "named tensors are not implemented yet");
}

int td_rpc_run_list_names(struct rpc_job *j, struct td_session *s, struct result *res,
                          struct td_err *err)
{
    return td_err_set(err, TD_EUNSUP, "named tensors are not implemented yet");
}
