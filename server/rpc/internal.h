/* server/rpc/internal.h — what the files of server/rpc share; nothing outside rpc includes it.
**
** rpc.c dispatches: it decodes a Request into a struct rpc_job, looks its kind up in the table
** that rpc/requests.def generates, and calls the row's handler, which fills a struct result.
** files.c (Save, Load), stats.c (counters, Stats) and auth.c (the Hello's token, the penalty
** table) hold the rest. Like all of rpc, it sees protobuf-c's generated types.
*/
#ifndef TD_RPC_INTERNAL_H
#define TD_RPC_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/ops.h"
#include "proto/tensord.pb-c.h"
#include "rpc/rpc.h"

/* A request is decoded into an arena inside its job: a tiny op's Request, its body, operands
** and arrays are five or six small allocations that live exactly as long as the job, so they
** come from a bump pointer and are freed with it. What does not fit (large repeated fields,
** long strings, many submessages) falls back to td_malloc, counted and fault-injectable as
** before, and summed in `overflow`: protobuf-c may turn 1 MiB of wire bytes into tens of MiB
** of small allocations, which td_rpc_handle charges to the session's quota. */
#define PB_ARENA_BYTES 768
#define PB_MALLOC_OVERHEAD 16 /* a heap chunk's header, counted per fallback */

struct pb_arena {
    ProtobufCAllocator allocator; /* allocator_data points back here */
    size_t used;
    int64_t overflow; /* bytes of td_malloc fallbacks (saturating), each
                                            ** rounded up to 16 with the chunk header */
    _Alignas(16) unsigned char bytes[PB_ARENA_BYTES];
};

#define PRE_N 4 /* operands cost_op keeps for td_rpc_run_op (more: resolved again) */

struct rpc_job {
    struct td_job job;
    struct td_rpc_peer *peer;         /* reference */
    Tensord__Request *req;            /* owned, decoded here */
    const struct td_rpc_request *row; /* td_rpc_request_of(req->body_case), looked up once */
    bool fast_decoded;                /* req came from td_fastunpack_request (one block) */
    void *data;                       /* owned until adopted */
    size_t data_len;
    struct td_session *data_session; /* reference: data_charge is charged to its quota
                                            ** (td_rpc_data_alloc), or NULL */
    int64_t data_charge;             /* bytes of data charged there, until the data is
                                            ** freed or a tensor takes the charge over */
    struct td_buffer *pin;           /* Get: the bytes the reply points into */
    int64_t reply_charge;            /* Format: text bytes charged to job.session's
                                            ** quota until the reply is written */
    struct td_rpc_reply reply;       /* built by run() */
    uint64_t t0_us;                  /* arrival, for the latency histograms */
    int64_t work;                    /* td_cost_work of the request (job_cost) */
    const char *cost_name;           /* what max_op_elements names ("sum"), or NULL
                                            ** when the kind is not limited by it */
    int64_t need_bytes;              /* RunOp: its result's and temporaries' bytes */
    bool costed;                     /* work, need_bytes and cost_name are set */
    bool pre_ok;                     /* RunOp: pre_op and pre_in hold what cost_op resolved,
                                            ** still true when it runs (see cost_op) */
    enum td_op_id pre_op;
    int status;                 /* the reply's status code */
    bool ran;                   /* dropped jobs are not counted in the stats */
    int64_t hello_token_len;    /* Hello, NodeInfo: auth_token's length on the wire,
                                            ** NUL bytes included (td_rpc_string_wire_len) */
    int64_t name_wire_len;      /* SetName, GetName, DelName: the name's length on
                                            ** the wire, NULs included (string_wire_len) */
    const char *status_address; /* ... Status.address (borrowed from srv's peer table
                                            ** or settings, which outlive the reply's encoding) */
    int64_t req_charge;         /* the decoded request's bytes, charged to
                                            ** job.session's quota until job_free */
    int64_t queued;             /* bytes counted in peer->queued_bytes until done:
                                            ** req_charge plus data_len */
    /* Not zeroed when a request starts (td_rpc_handle zeroes up to here): read only when
    ** pre_ok says so, and status_node's first byte is set there. */
    struct td_operand pre_in[PRE_N];      /* borrowed from the table */
    char status_node[TD_NODE_ID_MAX + 1]; /* MOVED, NODE_FULL, UNKNOWN_NODE: Status.node ("":
                                            ** none) */
    struct pb_arena arena;                /* req is decoded here (not zeroed) */
};

/* What a handler produced besides its status. The dispatcher zeroes its head (up to
** RESULT_HEAD, 88 bytes, not the 800-odd of message storage after it: each handler that uses
** a *_msg or flags initialises it first); on failure it is dropped (mem freed) and the reply
** carries only the status. */
struct result {
    struct td_tensor *tensor; /* borrowed: describe it in TensorInfo */
    uint64_t handle;
    Tensord__StatsResult *stats;        /* Stats: points at stats_msg, or NULL */
    Tensord__BackwardResult *backward;  /* Backward, ResumeBackward: at backward_msg, or NULL */
    Tensord__HelloResult *hello;        /* Hello: points at hello_msg, or NULL */
    Tensord__NameList *names;           /* ListNames: at names_msg, or NULL */
    Tensord__NodeInfoResult *node_info; /* NodeInfo: at node_info_msg, or NULL */
    char *text;                         /* Format, Load: owned, td_malloc'd */
    uint64_t offset, length;            /* Get's slice */
    void *mem; /* owned, td_malloc'd: what stats_msg, names_msg or node_info_msg point to */
    /* Storage for the handlers that fill them (not zeroed: see above). */
    Tensord__BackwardResult backward_msg;
    protobuf_c_boolean flags[TD_BACKWARD_MAX_INPUTS]; /* backward_msg's repeated bools */
    Tensord__NameList names_msg; /* its names point into the session's table; the array is
                                 ** `mem` */
    Tensord__StatsResult stats_msg;
    Tensord__HelloResult hello_msg;
    Tensord__NodeInfoResult node_info_msg;
};
#define RESULT_HEAD offsetof(struct result, backward_msg)
/* Zeroes what the dispatcher must see zeroed before a handler runs, and after a failure. */
#define RESULT_CLEAR(r) memset((r), 0, RESULT_HEAD)


/* A request kind's handler (requests.def's handler column): runs j's request against s (the
** session j was queued on; NULL only for a Hello answered before the connection had one) and
** returns 0 or a TD_E* code with err set. Every wire value is validated here, never asserted. */
typedef int td_rpc_handler_fn(struct rpc_job *j, struct td_session *s, struct result *res,
                              struct td_err *err);

#define REQ(id, name, inl, idempotent, auth, data, handler, cost, out) td_rpc_handler_fn handler;
#include "rpc/requests.def"
#undef REQ

/* requests.def's idempotent column: whether a client may re-send the request after a lost
** connection when it may have run. */
enum td_rpc_idem {
    TD_RPC_IDEM_NO,
    TD_RPC_IDEM_YES,
    TD_RPC_IDEM_OUT_OF_PLACE, /* yes unless its `inplace` field is set */
};

/* requests.def's auth column: what the connection must have for the request to run. */
enum td_rpc_auth {
    TD_RPC_AUTH_NONE, /* no session yet (Hello) */
    TD_RPC_AUTH_OPEN, /* an open session */
    TD_RPC_AUTH_ANY,  /* a session, open or closed (a no-op when closed) */
};

/* One row of requests.def. */
struct td_rpc_request {
    const char *name; /* the Request member ("run_op") */
    int wire_case;    /* TENSORD__REQUEST__BODY_<id> */
    td_rpc_handler_fn *run;
    void (*cost)(struct rpc_job *j, struct td_session *s); /* NULL: only its frees */
    uint64_t (*out)(const Tensord__Request *req);          /* NULL: no output handle */
    bool may_inline;
    enum td_rpc_idem idempotent;
    enum td_rpc_auth auth;
    bool data; /* may carry a data section */
};

/* The row of requests.def for a Request body case, or NULL (not set, or unknown). */
const struct td_rpc_request *td_rpc_request_of(int body_case);

/* ---- rpc.c ---- */

/* Wire op code -> core op id; -1 when the code names no op. */
int td_rpc_wire_op(int w, enum td_op_id *out);

/* Frees the jobs srv keeps for reuse (rpc.c). */
void td_rpc_job_cache_empty(struct td_rpc_server *srv);

/* ---- stats.c ---- */

uint64_t td_rpc_now_us(void); /* monotonic, for the latency histograms */

/* Counts a request that has its reply: by kind (enum td_rpc_kind; -1: none), and for RunOp by
** op (-1: none); an UNAUTHENTICATED status counts an auth failure. Loop thread only. */
void td_rpc_stats_record(struct td_rpc_server *srv, int kind, int op, int status, uint64_t t0_us);

/* ---- auth.c ---- */

/* The length on the wire of string field str_field of the Request body member body_field (a
** oneof field number), NULs included; -1 when the request does not scan (see auth.c). */
int64_t td_rpc_string_wire_len(const uint8_t *meta, size_t n, uint64_t body_field,
                               uint64_t str_field);

/* Checks a Hello's token against srv->auth_token (NULL: no auth, always 0), slowing down
** addresses that keep failing: TD_EAUTH with the reason. `given` is the token as protobuf-c
** decoded it (NULL: none), `wire_len` its length as sent. */
int td_rpc_auth_check(struct td_rpc_server *srv, uint64_t addr_key, const char *given,
                      int64_t wire_len, struct td_err *err);

/* ---- files.c ---- */

/* Removes s's Save directory and its files (CloseSession, expiry); returns how many went. */
int td_rpc_remove_session_files(struct td_rpc_server *srv, const struct td_session *s);

/* requests.def's cost column for Backward: core's estimate for its roots
** (td_autograd_backward_work) plus the gradients given. Only for inline-or-pool: it names no
** limit (each step is held to --max-op-elements as it runs), since shared parts of a graph are
** counted once per path and the estimate may be far above the walk's real cost. */
void td_rpc_cost_backward(struct rpc_job *j, struct td_session *s);

/* ---- optim.c ---- */

/* requests.def's cost column for OptimStep: the parameters' elements times the passes the
** algorithm makes over them, plus a fixed amount per parameter. */
void td_rpc_cost_optim_step(struct rpc_job *j, struct td_session *s);

/* requests.def's out column for OptimStep: clip_grad_norm_'s total norm goes under `out`. */
uint64_t td_rpc_out_optim_step(const Tensord__Request *req);

/* ---- node.c ---- */

/* Hello's routing of a resume token (before the store is asked): 0 when the session would be
** this node's (its node part is our id, or it is a 16-byte token from before scale-out); else
** TD_EMOVED (j->status_node and status_address name the owner) or TD_ENODE (malformed, or a
** node this node does not know; status_node set when the id is well formed), counted. */
int td_rpc_route_resume(struct rpc_job *j, const uint8_t *token, size_t len, struct td_err *err);

/* Hello opening a new session: 0 when this node takes it; else TD_EFULL naming the reachable,
** accepting peer with the most room (or none when none is known), counted. */
int td_rpc_check_room(struct rpc_job *j, struct td_err *err);

/* Where td_rpc_peer_infos copies the peers' strings. */
struct td_peer_strings {
    char node_id[TD_PEERS_MAX][TD_NODE_ID_MAX + 1];
    char address[TD_PEERS_MAX][TD_HOSTPORT_MAX + 1];
};

/* Fills up to TD_PEERS_MAX PeerInfo messages (in `infos`, pointed to from `ptrs`) from srv's
** peer table; returns how many. The strings are copies in `strs`, never the table's own: a
** Stats whose free_first makes it heavy runs (and is encoded) on a worker while the loop's
** poller rewrites the table, and protobuf-c packs a string into the size it measured before. */
size_t td_rpc_peer_infos(const struct td_rpc_server *srv, Tensord__PeerInfo *infos,
                         Tensord__PeerInfo **ptrs, struct td_peer_strings *strs);

/* ---- names.c ---- */

/* requests.def's out column for GetName: the named tensor goes under `out`. */
uint64_t td_rpc_out_get_name(const Tensord__Request *req);

/* requests.def's cost column for ListNames: the bytes its reply copies. */
void td_rpc_cost_list_names(struct rpc_job *j, struct td_session *s);

#endif
