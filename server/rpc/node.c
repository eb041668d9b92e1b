/* node.c — this node in a set of daemons: NodeInfo (identity and load, for peers and clients).
**
** Not built yet (issue 20): NodeInfo answers UNIMPLEMENTED.
*/
#include "internal.h"

int td_rpc_run_node_info(struct rpc_job *j, struct td_session *s, struct result *res,
                         struct td_err *err)
{
    return td_err_set(err, TD_EUNSUP, "NodeInfo is not implemented yet");
}
