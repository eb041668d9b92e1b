/* tensord.h — libtensord, the C client of the tensord tensor server.
**
** A `struct tensord` is one connection to a daemon, bound to one session. Tensors live on the
** server under uint64 handles that the client chooses (nonzero, unique in the session;
** tensord_new_handle() hands out fresh ones). Every call returns 0 on success or an error code
** and, when `err` is not NULL, fills it with the code and a message: the server's status and
** message for refused requests (PyTorch's wording where PyTorch has one), or a local failure
** (TENSORD_E_*). After a local I/O or protocol failure the connection is *broken*: every later
** call on it fails at once with TENSORD_E_IO naming the first failure; disconnect, then reconnect
** with the session token. A refused request never breaks the connection. The library never
** aborts, exits, prints or raises SIGPIPE. Its only global state is for address lists: an
** atomic counter (where the next new session starts) and a small table of where each node was
** last reached (under a spin lock); otherwise it is thread-compatible, one connection per
** thread.
**
** Many daemons (docs/DESIGN.md, "Many daemons"). tensord_connect takes an address list: new
** sessions are placed round-robin over it (from a random entry per process), and a resume goes
** to the node its token names, following MOVED replies (at most TENSORD_MAX_REDIRECTS). Pointers passed in are borrowed for the call unless a call says
** otherwise; pointers returned are owned by the connection.
**
** Two ways to talk:
**  - blocking calls (tensord_create, tensord_op, tensord_get, ...): send one request, wait for its
**    reply;
**  - pipelining: tensord_send_* queue requests without waiting (each gives its request id),
**    tensord_flush writes them all at once, tensord_recv returns the replies in request order.
**    A server op on a handle whose producing op failed fails with TENSORD_INPUT_FAILED, naming
**    the original failure, so a chain `c = a*b; d = c@a` can be sent without waiting.
**    Blocking calls refuse to run (TENSORD_E_USAGE, nothing sent) while pipelined requests are
**    queued or their replies uncollected. While flushing, the library also reads the replies
**    that arrive and keeps them for tensord_recv (a Get's bytes go straight to its buffer), so a
**    batch of any size cannot deadlock against a server that stops reading until its replies
**    are read.
*/
#ifndef TENSORD_H
#define TENSORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TENSORD_MAX_DIMS 8
#define TENSORD_TOKEN_MAX 128   /* a session token as text, with its NUL, always fits */
#define TENSORD_NODE_MAX 64     /* a node id (1-63 of [a-z0-9-]) with its NUL */
#define TENSORD_ADDR_MAX 272    /* one address ("[v6]:port", "host:port") with its NUL */
#define TENSORD_MAX_ADDRS 64    /* entries in an address list, after dns: expansion */
#define TENSORD_MAX_REDIRECTS 5 /* MOVED replies followed per connect */

/* Element types (the wire's DType numbers). */
enum tensord_dtype {
    TENSORD_DTYPE_INFER = 0, /* where a call allows it: PyTorch's inference */
    TENSORD_FLOAT32 = 1,
    TENSORD_FLOAT64 = 2,
    TENSORD_INT32 = 3,
    TENSORD_INT64 = 4,
    TENSORD_BOOL = 5,
};

/* Error codes: the server's status codes (same numbers as the wire's StatusCode), then local
** failures from 100 up. */
enum tensord_code {
    TENSORD_OK = 0,
    TENSORD_INVALID_ARGUMENT = 1,
    TENSORD_SHAPE_MISMATCH = 2,
    TENSORD_DTYPE_ERROR = 3,
    TENSORD_UNKNOWN_HANDLE = 4,
    TENSORD_HANDLE_IN_USE = 5,
    TENSORD_INPUT_FAILED = 6,
    TENSORD_OUT_OF_MEMORY = 7,
    TENSORD_QUOTA_EXCEEDED = 8,
    TENSORD_LIMIT_EXCEEDED = 9,
    TENSORD_PROTOCOL_ERROR = 10,
    TENSORD_VERSION_MISMATCH = 11,
    TENSORD_UNAUTHENTICATED = 12,
    TENSORD_UNKNOWN_SESSION = 13,
    TENSORD_UNIMPLEMENTED = 14,
    TENSORD_IO_ERROR = 15,
    TENSORD_INTERNAL = 16,
    TENSORD_NO_SESSION = 17,
    TENSORD_UNKNOWN_OP = 18,
    TENSORD_CANCELLED = 19,    /* session closed, connection lost or daemon shutting down */
    TENSORD_MOVED = 20,        /* the session is owned by another node (followed by connect) */
    TENSORD_NODE_FULL = 21,    /* retryable: the node opens no new session now */
    TENSORD_UNKNOWN_NODE = 22, /* the session token names a node the server does not know */
    TENSORD_E_CONNECT = 100,   /* could not resolve or connect */
    TENSORD_E_IO = 101,        /* the connection failed or was closed */
    TENSORD_E_PROTOCOL = 102,  /* the server sent something malformed or unexpected */
    TENSORD_E_NOMEM = 103,     /* local allocation failed */
    TENSORD_E_USAGE = 104,     /* a call made in the wrong state or with bad arguments */
    TENSORD_E_BUFFER = 105,    /* the caller's buffer is smaller than the data */
};

struct tensord_error {
    int code;          /* enum tensord_code */
    char message[512]; /* NUL-terminated */
};

struct tensord; /* opaque: one connection and its session */

struct tensord_options {
    const char *auth_token;    /* NULL: none (then $TENSORD_TOKEN is not consulted here) */
    const char *session_token; /* a token to resume (tensord_session_token's text), NULL: new */
    const char *client_name;   /* free text for the server's logs; NULL: "libtensord" */
};

/* Connects, says Hello and opens a new session or resumes `opts->session_token`. opts may be
** NULL. On success *out is a connection the caller ends with tensord_disconnect.
**
** `addr` is one address ("host:port", "[v6addr]:port" or "unix:/path"), a comma-separated list
** of them, or "dns:NAME:PORT" (every A/AAAA address of NAME; also allowed as a list entry); at
** most TENSORD_MAX_ADDRS addresses in all. A new session tries the list round-robin, starting
** one entry further for each new session of the process (from a random entry): a node that
** cannot be reached, or answers NODE_FULL, passes the turn to the next entry, after NODE_FULL's
** named peer has been tried once. A resume goes where the token's node was last reached (given
** a list), else asks a listed node, which answers MOVED when another node owns the session; the client follows at most TENSORD_MAX_REDIRECTS of them, checking each
** node id and address before dialling it. Errors: TENSORD_E_CONNECT (bad address; no entry
** could be reached, naming each one's failure; "node N at A is unreachable"), TENSORD_E_USAGE
** (a malformed session token), TENSORD_E_PROTOCOL (a MOVED with a malformed address or node
** id, refused without dialling), TENSORD_MOVED (too many redirects, naming the chain),
** TENSORD_NODE_FULL (every node full), TENSORD_E_IO, and the server's (TENSORD_UNAUTHENTICATED,
** TENSORD_UNKNOWN_SESSION, TENSORD_UNKNOWN_NODE, TENSORD_VERSION_MISMATCH). */
int tensord_connect(struct tensord **out, const char *addr, const struct tensord_options *opts,
                    struct tensord_error *err);

/* Closes the connection and frees `c` (NULL is a no-op). The session stays on the server for its
** TTL and can be resumed with its token. */
void tensord_disconnect(struct tensord *c);

/* The session token as printable text (owned by c, shorter than TENSORD_TOKEN_MAX): pass it as
** tensord_options.session_token to resume the session. "<node id>.<32 hex digits>"; a session
** saved before scale-out has a 16-byte token, shown (and accepted) as its 32 hex digits. */
const char *tensord_session_token(const struct tensord *c);
/* The node that owns the session (HelloResult's node id; "" when the server names none). */
const char *tensord_node(const struct tensord *c);
/* The address this connection reached (an entry of the list, or one a redirect named). */
const char *tensord_address(const struct tensord *c);
bool tensord_resumed(const struct tensord *c);               /* Hello resumed an existing session */
const char *tensord_server_version(const struct tensord *c); /* e.g. "tensord 0.1.0" */

/* The server's limits as Hello announced them (0: not announced). A request frame over
** max_frame_bytes is refused here with TENSORD_LIMIT_EXCEEDED, because the server would close
** the connection on it. */
struct tensord_limits {
    uint64_t max_frame_bytes; /* protobuf + data bytes of one request */
    uint64_t max_tensor_bytes;
    uint64_t session_max_bytes;
    uint32_t max_dims;
};
void tensord_limits(const struct tensord *c, struct tensord_limits *out);

/* A fresh handle, never 0: 1, 2, 3 ... on a new session. On a resumed session the counter starts
** at a random point above 2^32, away from the handles the session already holds. Don't mix it
** with hand-picked handles in the same range. */
uint64_t tensord_new_handle(struct tensord *c);

/* An op input: a tensor handle, or a Python-like number (float, int or bool: the kind matters
** for type promotion, as 1 and 1.0 do in PyTorch). */
enum tensord_operand_kind {
    TENSORD_OPERAND_HANDLE,
    TENSORD_OPERAND_FLOAT,
    TENSORD_OPERAND_INT,
    TENSORD_OPERAND_BOOL,
};
struct tensord_operand {
    enum tensord_operand_kind kind;
    uint64_t handle;
    double f;
    int64_t i;
    bool b;
};
struct tensord_operand tensord_h(uint64_t handle);
struct tensord_operand tensord_f(double f);
struct tensord_operand tensord_i(int64_t i);
struct tensord_operand tensord_b(bool b);

/* What the server says about a tensor. For a Get with data, `offset`/`length` give the byte
** range that was read. */
struct tensord_info {
    uint64_t handle;
    enum tensord_dtype dtype;
    int ndim;
    int64_t shape[TENSORD_MAX_DIMS];
    uint64_t nbytes; /* whole tensor */
    uint64_t offset;
    uint64_t length;
    bool requires_grad;
    bool is_leaf;
    char grad_fn[48]; /* torch's node name ("MulBackward0"); "" for a leaf */
};

struct tensord_stats {
    uint64_t session_bytes;
    uint64_t session_tensors;
    uint64_t sessions;
    uint64_t server_bytes;
    uint64_t server_tensors;
    uint64_t connections; /* open now */
    uint64_t uptime_ms;
    uint64_t allocated_bytes; /* all memory the daemon holds for its work (tensors, frames,
                              ** replies in flight) */
    uint64_t cached_bytes;    /* freed large buffers kept for reuse */
};

/* Element size of a dtype in bytes; 0 for an invalid one. */
size_t tensord_dtype_size(enum tensord_dtype dt);
const char *tensord_dtype_name(enum tensord_dtype dt); /* "float32" ... */

/* The wire code (the proto's Op enum) of op `name`, PyTorch's lower-case name ("add",
** "log_softmax"), or -1 if this library's protocol has no such op. */
int tensord_op_code(const char *name);

/* ---- blocking calls ---- */

/* Creates tensor `out` from `nbytes` bytes of little-endian, C-contiguous data (numel times the
** element size exactly). `data` is borrowed for the call. */
int tensord_create(struct tensord *c, uint64_t out, enum tensord_dtype dtype, const int64_t *shape,
                   int ndim, const void *data, size_t nbytes, struct tensord_error *err);

/* torch.full(shape, value, dtype=dtype); TENSORD_DTYPE_INFER infers from value like torch.
** `value` must be a number, not a handle. zeros/ones are full with 0.0/1.0 (default float32). */
int tensord_full(struct tensord *c, uint64_t out, enum tensord_dtype dtype, const int64_t *shape,
                 int ndim, struct tensord_operand value, struct tensord_error *err);
int tensord_zeros(struct tensord *c, uint64_t out, enum tensord_dtype dtype, const int64_t *shape,
                  int ndim, struct tensord_error *err);
int tensord_ones(struct tensord *c, uint64_t out, enum tensord_dtype dtype, const int64_t *shape,
                 int ndim, struct tensord_error *err);

/* torch.rand / torch.randn (TENSORD_DTYPE_INFER: float32), from the session's generator. */
int tensord_rand(struct tensord *c, uint64_t out, enum tensord_dtype dtype, const int64_t *shape,
                 int ndim, struct tensord_error *err);
int tensord_randn(struct tensord *c, uint64_t out, enum tensord_dtype dtype, const int64_t *shape,
                  int ndim, struct tensord_error *err);

/* tensord_send_rand / tensord_send_randn drawing from the generator whose state is handle
** `generator` (0: the session's). */
int tensord_send_rand_gen(struct tensord *c, uint64_t out, enum tensord_dtype dtype,
                          const int64_t *shape, int ndim, bool normal, uint64_t generator,
                          uint64_t *id, struct tensord_error *err);

/* torch.arange(start, end, step); numbers only. */
int tensord_arange(struct tensord *c, uint64_t out, enum tensord_dtype dtype,
                   struct tensord_operand start, struct tensord_operand end,
                   struct tensord_operand step, struct tensord_error *err);

/* torch.manual_seed(seed) for this session. */
int tensord_manual_seed(struct tensord *c, uint64_t seed, struct tensord_error *err);

/* Runs op `name` (PyTorch's name: "add", "matmul", "exp", "sum", "reshape" ... every op in the
** protocol's Op enum, OP_<NAME>) on `nin` inputs. Out of
** place the result becomes handle `out`; with `inplace` (add_, sub_, mul_, div_) inputs[0] must be
** a handle, which is updated, and `out` must be 0 or that handle. `info` (may be NULL) receives
** the result's dtype and shape. */
int tensord_op(struct tensord *c, const char *name, uint64_t out,
               const struct tensord_operand *inputs, int nin, bool inplace,
               struct tensord_info *info, struct tensord_error *err);

/* An op's keyword arguments (PyTorch's names), for tensord_op_ex. Zero-initialise, then set
** what the op takes: reductions `dims`/`ndims` (or `dim` with has_dim for max, argmax, all ...)
** and `keepdim`; views `dims` (reshape, permute, expand, repeat, flip), `dim`/`dim2` (transpose,
** squeeze, unsqueeze, select with `start` as the index, narrow with `start` and `end` as the
** length, slice with `start`, `end`, `step`, cat/stack/softmax); clamp/full_like/randint/uniform_
** `min`/`max`; `dtype` for to() and creation ops; `correction` for std/var. */
struct tensord_op_args {
    int64_t dims[TENSORD_MAX_DIMS];
    int ndims;
    bool has_dims;
    bool keepdim;
    int64_t dim, dim2;
    bool has_dim;
    int64_t start, end, step;
    bool has_min, has_max;
    struct tensord_operand min, max; /* numbers */
    enum tensord_dtype dtype;        /* TENSORD_DTYPE_INFER: none */
    bool has_correction;
    double correction;
    uint64_t out2; /* max / min with a dim: a handle for the indices; an op with more outputs
                   ** (sort, topk, unique ...): a handle for output 1 (0: not wanted) */
    /* sorting and selection */
    int64_t k;       /* topk, kthvalue */
    bool descending; /* sort, argsort; topk's largest */
    bool sorted;     /* topk, unique */
    bool stable;     /* sort, argsort */
    uint64_t out3;   /* a handle for output 2 (unique's counts; 0: not wanted) */
    bool has_alpha, has_value, has_beta;       /* numbers: add/sub alpha, addcmul/addcdiv */
    struct tensord_operand alpha, value, beta; /* value, addmm beta and alpha (absent: 1) */
    double rtol, atol;                         /* isclose (sent as given) */
    bool equal_nan;
    const char *rounding_mode;        /* div: NULL (None), "trunc" or "floor" */
    int64_t decimals;                 /* round */
    int64_t shifts[TENSORD_MAX_DIMS]; /* roll */
    int nshifts;
    const char *equation; /* einsum: NULL or the equation */
    uint64_t index_mask;  /* index / index_put: bit d set when dim d has an index tensor */
    bool accumulate;      /* index_put: add the values instead of writing them */
    uint64_t generator;   /* a torch.Generator's state handle (int64 [seed, offset]); 0: the
                          ** session's generator */
    int64_t num_samples;  /* multinomial's num_samples, randperm's n */
    bool replacement;     /* multinomial */
    /* nn convolution and pooling: lists of 0 (the op's default), 1 (every spatial dim) or one
    ** value per spatial dim */
    int64_t stride[TENSORD_MAX_DIMS], padding[TENSORD_MAX_DIMS], dilation[TENSORD_MAX_DIMS];
    int64_t kernel_size[TENSORD_MAX_DIMS], output_size[TENSORD_MAX_DIMS]; /* -1: None */
    int nstride, npadding, ndilation, nkernel_size, noutput_size;
    int64_t groups;           /* conv (0: 1) */
    const char *padding_mode; /* conv: NULL (the padding list), "valid" or "same" */
    bool ceil_mode, count_include_pad;
    int64_t divisor_override; /* avg_pool2d (0: None) */
};

/* tensord_op with keyword arguments (args may be NULL). */
int tensord_op_ex(struct tensord *c, const char *name, uint64_t out,
                  const struct tensord_operand *inputs, int nin, const struct tensord_op_args *args,
                  bool inplace, struct tensord_info *info, struct tensord_error *err);
int tensord_send_op_ex(struct tensord *c, const char *name, uint64_t out,
                       const struct tensord_operand *inputs, int nin,
                       const struct tensord_op_args *args, bool inplace, uint64_t *id,
                       struct tensord_error *err);

/* Reads tensor `handle`: dtype and shape into `info` (may be NULL), and its bytes into `buf` when
** buf is not NULL (cap must be at least the tensor's nbytes: else TENSORD_E_BUFFER, `info` still
** filled, nothing written to buf, and the connection stays usable). buf NULL reads metadata only.
*/
int tensord_get(struct tensord *c, uint64_t handle, struct tensord_info *info, void *buf,
                size_t cap, struct tensord_error *err);

/* Reads `length` bytes from byte `offset` of the tensor's contents (chunked download). */
int tensord_get_range(struct tensord *c, uint64_t handle, uint64_t offset, uint64_t length,
                      void *buf, struct tensord_info *info, struct tensord_error *err);

/* Dtype, shape and nbytes of `handle` without its contents (Get with meta_only). */
int tensord_get_meta(struct tensord *c, uint64_t handle, struct tensord_info *info,
                     struct tensord_error *err);

/* The tensor's text as PyTorch prints it, into buf (truncated to cap-1 bytes, NUL-terminated). */
int tensord_format(struct tensord *c, uint64_t handle, char *buf, size_t cap,
                   struct tensord_error *err);

/* Frees handles; unknown ones are ignored, so freeing twice is harmless. */
int tensord_free(struct tensord *c, const uint64_t *handles, size_t n, struct tensord_error *err);

int tensord_ping(struct tensord *c, struct tensord_error *err);
int tensord_stats(struct tensord *c, struct tensord_stats *st, struct tensord_error *err);

/* Ends the session on the server: every tensor is freed, the token no longer resumes. The
** connection stays open but has no session. */
int tensord_close_session(struct tensord *c, struct tensord_error *err);

/* ---- named tensors ----
** A session also binds names to tensors (Python's s["w1"] = t; RedisAI's keys): a name keeps its
** tensor alive after every handle of it is freed, outlives this connection (resume the session
** and look the name up), and with --data-dir a daemon restart. A name is 1-255 bytes of
** [A-Za-z0-9_.:/-] (else TENSORD_INVALID_ARGUMENT); a session holds at most 65,536
** (TENSORD_LIMIT_EXCEEDED), each charged to its memory quota. Names are kept in the order they
** were first set; binding a name again keeps its place. */

/* Binds `name` to the tensor under `handle` (the same tensor: later in-place changes show through
** either). Errors: TENSORD_UNKNOWN_HANDLE, TENSORD_INPUT_FAILED (handle's op failed), and the
** name's. */
int tensord_set_name(struct tensord *c, const char *name, uint64_t handle,
                     struct tensord_error *err);

/* Puts the tensor named `name` under the fresh handle `out` and describes it in `info` (may be
** NULL). A name the session does not hold is TENSORD_UNKNOWN_HANDLE, "KeyError: 'name'" (then
** `out` records that failure, as a failed op's output does: free it to reuse it). */
int tensord_get_name(struct tensord *c, const char *name, uint64_t out, struct tensord_info *info,
                     struct tensord_error *err);

/* Unbinds `name`; its tensor lives on while handles hold it. A missing name is
** TENSORD_UNKNOWN_HANDLE as for tensord_get_name. */
int tensord_del_name(struct tensord *c, const char *name, struct tensord_error *err);

/* Calls fn(name, arg) for each of the session's names, in order (`name` is valid during the call
** only), and stores their number in *count (may be NULL). fn may be NULL to count only. */
typedef void tensord_name_fn(const char *name, void *arg);
int tensord_list_names(struct tensord *c, tensord_name_fn *fn, void *arg, size_t *count,
                       struct tensord_error *err);

/* ---- pipelining ---- */

/* Each queues one request and stores its id in *id (may be NULL). Requests are written by
** tensord_flush, or earlier once a megabyte is queued. A request refused here (bad arguments,
** over the frame limit, broken connection) is not queued and gets no reply.
** tensord_send_create's `data` is borrowed until the next tensord_flush returns (up to 64 KiB is
** copied at once; more is written straight from the caller's memory). tensord_send_get's `buf`
** (cap bytes; NULL: metadata only) and tensord_send_get_range's `buf` (length bytes) must stay
** valid until tensord_recv has returned their reply. */
int tensord_send_create(struct tensord *c, uint64_t out, enum tensord_dtype dtype,
                        const int64_t *shape, int ndim, const void *data, size_t nbytes,
                        uint64_t *id, struct tensord_error *err);
int tensord_send_full(struct tensord *c, uint64_t out, enum tensord_dtype dtype,
                      const int64_t *shape, int ndim, struct tensord_operand value, uint64_t *id,
                      struct tensord_error *err);
int tensord_send_op(struct tensord *c, const char *name, uint64_t out,
                    const struct tensord_operand *inputs, int nin, bool inplace, uint64_t *id,
                    struct tensord_error *err);
int tensord_send_get(struct tensord *c, uint64_t handle, void *buf, size_t cap, uint64_t *id,
                     struct tensord_error *err);
int tensord_send_free(struct tensord *c, const uint64_t *handles, size_t n, uint64_t *id,
                      struct tensord_error *err);
int tensord_send_ping(struct tensord *c, uint64_t *id, struct tensord_error *err);
int tensord_send_rand(struct tensord *c, uint64_t out, enum tensord_dtype dtype,
                      const int64_t *shape, int ndim, uint64_t *id, struct tensord_error *err);
int tensord_send_randn(struct tensord *c, uint64_t out, enum tensord_dtype dtype,
                       const int64_t *shape, int ndim, uint64_t *id, struct tensord_error *err);
int tensord_send_arange(struct tensord *c, uint64_t out, enum tensord_dtype dtype,
                        struct tensord_operand start, struct tensord_operand end,
                        struct tensord_operand step, uint64_t *id, struct tensord_error *err);
int tensord_send_manual_seed(struct tensord *c, uint64_t seed, uint64_t *id,
                             struct tensord_error *err);
int tensord_send_get_range(struct tensord *c, uint64_t handle, uint64_t offset, uint64_t length,
                           void *buf, uint64_t *id, struct tensord_error *err);
/* tensord_set_name, tensord_get_name (the reply's info describes `out`) and tensord_del_name,
** pipelined. */
int tensord_send_set_name(struct tensord *c, const char *name, uint64_t handle, uint64_t *id,
                          struct tensord_error *err);
int tensord_send_get_name(struct tensord *c, const char *name, uint64_t out, uint64_t *id,
                          struct tensord_error *err);
int tensord_send_del_name(struct tensord *c, const char *name, uint64_t *id,
                          struct tensord_error *err);

/* Autograd, pipelined like every other request; replies come back through tensord_recv. */

/* backward(gradient, retain_graph) on `handle`; gradient 0: an implicit 1 for one element. */
int tensord_send_backward(struct tensord *c, uint64_t handle, uint64_t gradient, bool retain_graph,
                          uint64_t *id, struct tensord_error *err);

/* Binds handle `out` to handle's .grad (the same tensor). When .grad is None the reply carries
** no tensor (reply.has_info is false) and `out` stays unbound. */
int tensord_send_grad(struct tensord *c, uint64_t handle, uint64_t out, uint64_t *id,
                      struct tensord_error *err);

/* requires_grad_(value); or .grad = None (clear_grad); or retain_grad(). */
int tensord_send_set_grad(struct tensord *c, uint64_t handle, bool requires_grad, bool clear_grad,
                          bool retain_grad, uint64_t *id, struct tensord_error *err);

/* The session's grad mode: no_grad() is enabled = false. */
int tensord_send_set_grad_enabled(struct tensord *c, bool enabled, uint64_t *id,
                                  struct tensord_error *err);

/* Writes every queued request, reading and keeping the replies that arrive meanwhile. */
int tensord_flush(struct tensord *c, struct tensord_error *err);

/* Requests queued or sent whose replies tensord_recv has not returned yet. */
size_t tensord_pending(const struct tensord *c);

/* One reply. `status`/`message` are the server's verdict on that request (TENSORD_OK and "" on
** success); `info` is filled for ops, creations and gets; a Get's bytes went to its buffer.
** `message` is owned by the connection and valid until the next call. */
struct tensord_reply {
    uint64_t id;
    int status;
    const char *message;
    bool has_info;
    struct tensord_info info;
};

/* Waits for the next reply in request order (flushing first if needed). The return value is a
** local failure only (connection, protocol, TENSORD_E_BUFFER, or TENSORD_E_USAGE when nothing is
** pending); the server's verdict is in reply->status. */
int tensord_recv(struct tensord *c, struct tensord_reply *reply, struct tensord_error *err);

/* Event loops: many connections in one thread (poll, epoll). tensord_fd is the connection's
** socket, to wait on for POLLIN (reading or writing it directly would put the connection out of
** step with the server). tensord_recv_ready then takes what has arrived without waiting: it
** reads what the socket holds, completes the replies whose frames are all there, and sets *ready
** to the number tensord_recv can now return without waiting (in order: the oldest first; 0 when
** none, or nothing is pending). Requests still queued are flushed first, as tensord_flush does
** (which waits only while the socket's send buffer is full). A reply larger than the
** connection's 64 KiB read buffer (a Get of a large tensor, a long ListNames) is read as far as
** the socket has it, its data straight into the Get's buffer, and finished by later calls (or
** by tensord_recv, which waits for the rest): no call waits for the network. Errors are
** tensord_recv's (the connection then is broken).
** The socket signals only what is not read yet. Calls that read from it may leave whole replies
** in the connection's buffer: tensord_flush (and a send that flushed) when it had to wait for
** room to write, and tensord_recv of a reply that was not ready. After those, call
** tensord_recv_ready before waiting on the socket again; after a flush, tensord_ready (the number
** of replies tensord_recv can return without waiting; no system call) says whether it read any:
** 0, and the socket is still the signal. */
int tensord_fd(const struct tensord *c);
int tensord_recv_ready(struct tensord *c, size_t *ready, struct tensord_error *err);
size_t tensord_ready(const struct tensord *c);

#ifdef __cplusplus
}
#endif

#endif
