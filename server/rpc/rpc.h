/* server/rpc/rpc.h — requests in, responses out.
**
** rpc decodes one Request (the frame's protobuf section), validates every field, runs it against
** the peer's session through the session's job queue, and encodes the Response frame. It is the
** only server code that includes protobuf-c headers. It knows nothing of sockets: a peer is an
** abstract connection that receives finished reply frames through a callback, in request order.
**
** Threading: everything is called on the loop thread; a heavy request's work may run on a
** worker through the session's executor, and its reply is delivered on the loop thread.
*/
#ifndef TD_RPC_RPC_H
#define TD_RPC_RPC_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/map.h"
#include "base/node.h"
#include "core/ops.h"
#include "session/persist.h"
#include "session/session.h"
#include "tensord_frame.h" /* TD_FRAME_HEADER_BYTES */

#define TD_PROTOCOL_MIN 1
#define TD_PROTOCOL_MAX 2 /* 2: Request.free_first */

/* Request.free_first may list at most this many handles: one over is refused (LIMIT_EXCEEDED)
** before anything runs. Free.handles has no such cap; both count in the request's work
** (TD_RPC_FREE_WORK each), so a large Free runs on the pool, not on the loop. */
#define TD_RPC_MAX_FREE_FIRST 4096
#define TD_RPC_FREE_WORK 64 /* work units of one handle freed (a map delete, a tensor) */

/* Latency histogram bucket upper bounds, in microseconds; the last bucket is everything above. */
#define TD_RPC_LAT_BUCKETS 8
extern const uint64_t td_rpc_lat_bounds_us[TD_RPC_LAT_BUCKETS - 1];

/* Request kinds, one per row of rpc/requests.def, in its order (the proto's field order):
** TD_RPC_HELLO, TD_RPC_CREATE, ...; TD_RPC_KINDS counts them. */
enum td_rpc_kind {
#define REQ(id, name, inline, idempotent, auth, data, handler, cost, out) TD_RPC_##id,
#include "rpc/requests.def"
#undef REQ
    TD_RPC_KINDS
};

/* Counts for one request kind or one op: requests, error replies, and how long each took from
** arrival to its reply being ready (queueing included), as a histogram. */
struct td_rpc_counter {
    uint64_t count, errors, sum_us;
    uint64_t lat[TD_RPC_LAT_BUCKETS];
};

/* Server-wide counters, kept on the loop thread. */
/* A loop turn is slow past these busy times (ms): StatsResult.loop_slow_turns counts each. */
#define TD_RPC_LOOP_BUCKETS 4
extern const uint64_t td_rpc_loop_slow_ms[TD_RPC_LOOP_BUCKETS];

struct td_rpc_stats {
    uint64_t moved;           /* Hellos answered MOVED: the token's session is another node's */
    uint64_t refused_full;    /* new-session Hellos answered NODE_FULL */
    uint64_t redirected_full; /* ... of those, naming a peer with room */
    uint64_t unknown_node;    /* Hellos answered UNKNOWN_NODE (malformed or unknown owner) */
    uint64_t connections;     /* open now */
    uint64_t connections_total;
    uint64_t auth_failures;
    uint64_t loop_turns;                     /* event-loop turns (td_rpc_stats_turn) */
    uint64_t loop_slow[TD_RPC_LOOP_BUCKETS]; /* turns busy > td_rpc_loop_slow_ms[i] */
    uint64_t loop_busy_max_us, loop_busy_sum_us;
    struct td_rpc_counter kinds[TD_RPC_KINDS]; /* by enum td_rpc_kind */
};

/* The protocol's name of request kind k ("run_op": its Request member), or NULL when k is not
** an enum td_rpc_kind. */
const char *td_rpc_kind_name(int k);

/* ---- peers (scale-out: docs/DESIGN.md, "Many daemons") ---- */

#define TD_PEERS_MAX 64 /* peers a node polls, lists and reports (NodeInfo, Stats) */

/* One other node as this node last saw it. The top layer's poller (peers.c) owns the entries:
** it sets `address` and `in_use`, and records each probe through td_rpc_peer_answer and
** td_rpc_peer_failed; rpc reads them on the loop thread (Hello's redirects, NodeInfo, Stats). */
struct td_peer_state {
    bool in_use;                         /* a configured or resolved target */
    bool self;                           /* it answered with this node's own id: not a peer */
    char address[TD_HOSTPORT_MAX + 1];   /* as dialled: host:port */
    char node_id[TD_NODE_ID_MAX + 1];    /* "" until it answered once */
    char advertise[TD_HOSTPORT_MAX + 1]; /* what it asks clients to use; "" none */
    bool reachable;                      /* its last probe was answered */
    bool accepting;                      /* ... and it had room for a new session */
    bool draining;
    uint64_t last_seen_ms; /* now_ms() of its last answer; 0 never */
    uint64_t sessions, max_sessions, bytes, max_bytes;
    uint64_t failures; /* probes failed since its last answer */
};

struct td_peer_table {
    /* Held by the writers (the poller's slot changes, td_rpc_peer_answer, td_rpc_peer_failed:
    ** all on the loop thread) and by td_rpc_peer_infos, which a Stats run on a worker calls.
    ** Readers on the loop thread need not take it. All-zero bytes are an unlocked mutex. */
    pthread_mutex_t lock;
    struct td_peer_state p[TD_PEERS_MAX];
};

/* Server-wide settings and state rpc needs. */
struct td_rpc_server {
    const char *node_id;            /* borrowed: this node's id (the store's cfg.node_id);
                                        ** NULL: tokens and Hello as before scale-out */
    const char *advertise;          /* borrowed: --advertise, or NULL */
    bool draining;                  /* shutting down: no new session (NODE_FULL) */
    struct td_peer_table *peers;    /* borrowed, or NULL: no peers */
    struct td_store *store;         /* borrowed */
    uint8_t instance_id[16];        /* random per daemon start */
    const char *auth_token;         /* borrowed; NULL means no auth ("" refuses all) */
    uint64_t max_frame_bytes;       /* advertised in HelloResult */
    int64_t heavy_work;             /* td_cost_work above this goes to the executor; the
                                        ** loop never runs a request that costs more */
    int64_t max_op_elements;        /* --max-op-elements: a request whose td_cost_work is
                                        ** above this fails (LIMIT_EXCEEDED); <= 0 unlimited */
    uint64_t max_request_ms;        /* --max-request-seconds, in ms; 0 unlimited */
    int64_t session_max_disk_bytes; /* --session-max-disk-bytes: Save files and snapshot
                                        ** of one session; <= 0 unlimited */
    int64_t max_disk_bytes;         /* --max-disk-bytes: everything under --data-dir */
    bool shared_files;              /* --shared-files: one Save/Load namespace for all
                                        ** sessions (an operator's choice); else per session */
    int64_t peer_max_unsent_bytes;  /* a session whose connection has more reply bytes
                                        ** than this unwritten runs no further job until they
                                        ** drain to half of it (backpressure); <= 0 unlimited */
    uint64_t (*now_ms)(void);       /* monotonic clock, for session TTL bookkeeping */
    uint64_t started_ms;            /* now_ms() at start, for uptime */
    const char *files_dir;          /* Save/Load directory; NULL: persistence is off */
    const char *data_dir;           /* borrowed: --data-dir, whose files count against
                                        ** max_disk_bytes; NULL: files_dir's count */
    struct td_disk disk;            /* bytes tensord keeps under data_dir, shared with
                                        ** the workers; zeroed: counted on first use */
    struct td_rpc_stats stats;
    struct td_rpc_counter op_counters[TD_OP_COUNT]; /* RunOp, by op */
    struct td_map auth_penalty;                     /* peer address hash -> failures; see auth.c */
    /* Freed request jobs kept for reuse (rpc.c): at most 32, loop thread only; emptied when
    ** the last peer goes (peers_alive: peers not yet freed) and at close. */
    void *job_cache;
    int job_cache_n;
    int peers_alive;
};

/* Records one event-loop turn that held the loop for busy_us (its wall time less its wait in
** poll, capped by the loop thread's CPU time). Called by the daemon's loop on the loop thread, once per turn. */
void td_rpc_stats_turn(struct td_rpc_server *srv, uint64_t busy_us);

/* Frees what the server accumulated (the auth penalty table, the job cache). */
void td_rpc_server_close(struct td_rpc_server *srv);

/* A finished reply frame. `frame` (header + Response) and the optional data section
** (`data_len` bytes at `data`) stay alive until `release(release_arg)` is called (once, on the
** loop thread, after the frame and the data are written or dropped), which frees the frame too:
** the receiver never frees it itself. rpc sets a release on every reply frame it delivers, data
** or not: it counts the peer's unsent bytes (and their quota charges) until then, in a block
** allocated with the frame (one allocation per reply). */
struct td_rpc_reply {
    uint8_t *frame;
    size_t frame_len;
    const void *data;
    size_t data_len;
    void (*release)(void *arg); /* NULL only when frame is NULL */
    void *release_arg;
    bool close_after; /* close the connection once this is written */
};

struct td_rpc_peer;
typedef void td_rpc_reply_fn(struct td_rpc_peer *p, struct td_rpc_reply *r, void *user);

/* A connection as rpc sees it. */
struct td_rpc_peer {
    struct td_rpc_server *srv;  /* borrowed */
    struct td_session *session; /* reference once Hello succeeded; kept (closed)
                                        ** after CloseSession: a connection has one session */
    td_rpc_reply_fn *reply;
    void *user;
    int refs;                        /* the connection's + one per queued request + one per
                                        ** delivered reply not yet released */
    int pending;                     /* requests queued or running in the session */
    int64_t queued_bytes;            /* bytes those requests hold: decoded (the charge of
                                        ** td_rpc_handle) plus data sections; net's glue stops
                                        ** reading the connection while it is large */
    bool closed;                     /* the connection went away: replies are dropped */
    int64_t unsent_bytes;            /* delivered reply bytes (frame + data section) whose
                                        ** release has not run yet: not yet written */
    struct td_session *held;         /* reference: the session this peer holds
                                        ** (td_session_hold) while unsent_bytes is above
                                        ** srv->peer_max_unsent_bytes, until it falls to half */
    void *data_buf;                  /* the data section td_rpc_data_alloc charged last,
                                        ** until td_rpc_handle takes it (borrowed: net owns it) */
    int64_t data_charge;             /* bytes of data_buf charged to data_session's quota */
    struct td_session *data_session; /* reference while data_buf is set */
    struct td_err data_err;          /* why the last data section was refused */
    bool node_info_ok;               /* a NodeInfo was answered (authenticated, when the
                                        ** daemon has a token): a peer node polling, whose
                                        ** connection net may keep like one past its Hello */
    uint64_t addr_key;               /* hash of the peer's address without port, 0 unknown */
    uint64_t conn_id;                /* the connection's number, for log lines */
    uint64_t read_seq;               /* td_rpc_peer_read's last number (0: never called) */
    uint64_t arrival_seq;            /* the read whose arrival time arrival_us is */
    uint64_t arrival_us;
    char addr[64]; /* the peer's address, for log lines */
};

/* New peer for a connection; *out is owned by the caller until td_rpc_peer_close. */
int td_rpc_peer_new(struct td_rpc_peer **out, struct td_rpc_server *srv, td_rpc_reply_fn *reply,
                    void *user);

/* The connection is gone: its requests are cancelled (queued ones are dropped with no effect;
** a running one has TD_CANCEL_CONN_LOST raised), its hold on the session ends, later replies
** are dropped, and the peer is freed once its requests are done and its replies released. */
void td_rpc_peer_close(struct td_rpc_peer *p);

/* Records the peer's address ("1.2.3.4:5678", "[::1]:5678", "unix"): repeated authentication
** failures from one address (any port) are slowed down. */
void td_rpc_peer_set_addr(struct td_rpc_peer *p, const char *addr, uint64_t conn_id);

/* The frames handled next came in the connection's read number `seq` (non-zero; net's
** td_conn_read_seq): the frames of one read share one arrival time, the latency histograms'
** start, read once per read rather than once per frame (a clock read costs 35-75 ns on a VM).
** Without it (tests) each frame reads the clock. */
void td_rpc_peer_read(struct td_rpc_peer *p, uint64_t seq);

/* Handles one frame: `meta` (borrowed) holds the Request; `data` (taken, td_malloc'd, or NULL
** when data_len is 0) the data section. data NULL with data_len > 0 means td_rpc_data_alloc
** refused the section (net discarded it): the request is answered with that error, in order.
** Exactly one reply follows, now or later, unless the peer closes first.
** The decoded request is charged to the session's quota (and --max-bytes) until its job is
** freed: what protobuf-c allocated past the job's own arena, plus meta_len (requests that fit
** the arena are not charged: their number is bounded by the caller's pause on `pending`);
** when that charge fails the request is answered QUOTA_EXCEEDED, in order, and dropped.
** A connection has one session: a Hello once it has had one (closed or not) is refused
** (PROTOCOL_ERROR). Every request runs against, and is costed on, the session it was queued
** on; once that session is closed, requests still queued or arriving fail with
** UNKNOWN_SESSION and do no work (a Ping and a CloseSession succeed, doing nothing).
** A CloseSession cancels, on arrival, its session's running job and every job queued before it
** (TD_CANCEL_SESSION_CLOSED; each answered CANCELLED), then closes the session in its turn.
** A request cancelled while it runs is answered CANCELLED, or LIMIT_EXCEEDED past
** max_request_ms; it leaves no failure record under its output handle (a client that resumes
** may send it again), but an in-place op or a backward cancelled mid-way may leave its tensors
** partly written: its client never got an acknowledgement, so it cannot rely on them. */
void td_rpc_handle(struct td_rpc_peer *p, const uint8_t *meta, size_t meta_len, void *data,
                   size_t data_len);

/* The data section of a frame is about to be read: allocates `len` bytes for it and charges
** them to the peer's session (quota and --max-bytes) until the request is done with them (a
** Create's tensor takes the charge over with the bytes; a Write releases it once copied).
** Returns 0 with *out set; TD_RPC_DATA_LATER ("not now": the quota is full and this peer has
** requests queued or running, whose replies may free it; net pauses the connection and asks
** again once a reply has been delivered); or an error code (nothing allocated: net reads and
** discards the data, and td_rpc_handle is then called with data NULL and data_len the
** announced length, so rpc replies with the error in request order). Before Hello there is no
** session and every data section is refused (TD_ENOSESSION). */
#define TD_RPC_DATA_LATER (-1) /* not a TD_E* code (those are positive); err is cleared */
int td_rpc_data_alloc(struct td_rpc_peer *p, size_t len, void **out, struct td_err *err);

/* The store's on_expire hook (arg: the td_rpc_server): an expired session's Save directory and
** its files are removed and their bytes given back to the disk quota. Returns how many files
** went. Loop thread. */
int td_rpc_session_expired(struct td_session *s, void *srv);

/* Sends an error reply not tied to a decoded request (a framing error): id 0, status from code. */
void td_rpc_reply_error(struct td_rpc_peer *p, uint64_t id, int code, const char *msg,
                        bool close_after);

/* ---- the peer poller's codec (node.c): the top layer moves the bytes ---- */

/* Encodes a NodeInfo request (id, srv's auth token) as a whole frame into buf[cap]; returns
** its length, or 0 when it does not fit. */
size_t td_rpc_node_info_frame(const struct td_rpc_server *srv, uint64_t id, uint8_t *buf,
                              size_t cap);

/* Records a peer's answer: `meta` (borrowed) is the protobuf section of its reply frame. A
** reply that does not decode, is not an OK NodeInfoResult, names no valid node id, or names
** this node's own id is not believed: returns -1 (the caller drops the connection) and counts
** as a failure, except that our own id marks the entry `self`. Returns 0 once recorded. */
int td_rpc_peer_answer(struct td_rpc_server *srv, struct td_peer_state *ps, const uint8_t *meta,
                       size_t len);

/* A probe went unanswered (refused, timed out, dropped): the peer is unreachable. */
void td_rpc_peer_failed(struct td_rpc_server *srv, struct td_peer_state *ps);

/* Whether a new-session Hello would be served now (not draining, under --max-sessions and the
** memory cap). */
bool td_rpc_accepting(const struct td_rpc_server *srv);

/* Writes the 12-byte frame header. */
void td_frame_header_put(uint8_t *dst, uint32_t meta_len, uint64_t data_len);

/* Reads one (the peer poller's replies; net reads its own incoming headers). */
void td_frame_header_get(const uint8_t *src, uint32_t *meta_len, uint64_t *data_len);

#endif
