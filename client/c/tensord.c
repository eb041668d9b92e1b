/* client/c/tensord.c — libtensord: framing, Hello, blocking calls and pipelining over a socket.
**
** This file owns the client side of the wire: it turns calls into Request frames, and reply
** frames back into results. It and wire.c (the direct codec for the hot requests and the common
** reply, which protobuf-c backs up) are the only client code that sees protobuf; the public
** header exposes none of it.
**
** The happy path. A call packs its Request into the send queue (header, protobuf section and,
** for Create, the data section: small data is copied, large data is queued by pointer so it is
** written straight from the caller's memory) and leaves a record in the pending FIFO: its id,
** what kind of result it expects, and for Gets the caller's buffer. tensord_flush writes the
** queue with sendmsg over an iovec, in as few system calls as the kernel allows. Replies come
** back in request order: header, protobuf section, then the data section read straight into
** the caller's buffer. tensord_recv hands them out in that order; a blocking call is queue +
** flush + receive of its one reply. RunOp (without OpArgs), Get and Free are written by wire.c;
** a reply expecting a status or a TensorInfo is decoded by wire.c in place in the read buffer,
** and what it hands over (and every other reply) by protobuf-c. tensord_recv_ready takes what
** has arrived without ever waiting, for event loops: a frame the socket has delivered only part
** of is left in c->part (where its reading stopped) and finished by the next read.
**
** Deadlock. A pipelining client that only writes while the server only writes replies would
** stall both once the socket buffers fill (the server stops reading while its replies queue
** up). So flush polls for reading too, and reads the replies that arrive into their pending
** records (marked done), where tensord_recv later finds them.
**
** Trust. Every reply is checked before it is believed: the header's lengths, the id against the
** FIFO, the result kind against the request, the tensor metadata (dims, dtype, nbytes equal to
** numel times element size) and the data length against the range asked for. Any violation,
** and any I/O failure, leaves the byte stream in an unknown state, so the connection is marked
** broken and every later call fails fast with the first failure's message.
*/
#include "tensord.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "proto/tensord.pb-c.h"
#include "tensord_frame.h"
#include "wire.h"

/* tensord.h repeats the wire's numbers (its users never see the generated code): each status
** code and dtype is tied here to tensord.proto's, so a renumbering on either side fails to
** compile. A code the proto gains without tensord.h is tests/build/test_mirrors.c's catch. */
#define SAME_NUMBER(pub, wire) _Static_assert((int)(pub) == (int)(wire), #pub " != " #wire)
SAME_NUMBER(TENSORD_OK, TENSORD__STATUS_CODE__OK);
SAME_NUMBER(TENSORD_INVALID_ARGUMENT, TENSORD__STATUS_CODE__INVALID_ARGUMENT);
SAME_NUMBER(TENSORD_SHAPE_MISMATCH, TENSORD__STATUS_CODE__SHAPE_MISMATCH);
SAME_NUMBER(TENSORD_DTYPE_ERROR, TENSORD__STATUS_CODE__DTYPE_ERROR);
SAME_NUMBER(TENSORD_UNKNOWN_HANDLE, TENSORD__STATUS_CODE__UNKNOWN_HANDLE);
SAME_NUMBER(TENSORD_HANDLE_IN_USE, TENSORD__STATUS_CODE__HANDLE_IN_USE);
SAME_NUMBER(TENSORD_INPUT_FAILED, TENSORD__STATUS_CODE__INPUT_FAILED);
SAME_NUMBER(TENSORD_OUT_OF_MEMORY, TENSORD__STATUS_CODE__OUT_OF_MEMORY);
SAME_NUMBER(TENSORD_QUOTA_EXCEEDED, TENSORD__STATUS_CODE__QUOTA_EXCEEDED);
SAME_NUMBER(TENSORD_LIMIT_EXCEEDED, TENSORD__STATUS_CODE__LIMIT_EXCEEDED);
SAME_NUMBER(TENSORD_PROTOCOL_ERROR, TENSORD__STATUS_CODE__PROTOCOL_ERROR);
SAME_NUMBER(TENSORD_VERSION_MISMATCH, TENSORD__STATUS_CODE__VERSION_MISMATCH);
SAME_NUMBER(TENSORD_UNAUTHENTICATED, TENSORD__STATUS_CODE__UNAUTHENTICATED);
SAME_NUMBER(TENSORD_UNKNOWN_SESSION, TENSORD__STATUS_CODE__UNKNOWN_SESSION);
SAME_NUMBER(TENSORD_UNIMPLEMENTED, TENSORD__STATUS_CODE__UNIMPLEMENTED);
SAME_NUMBER(TENSORD_IO_ERROR, TENSORD__STATUS_CODE__IO_ERROR);
SAME_NUMBER(TENSORD_INTERNAL, TENSORD__STATUS_CODE__INTERNAL);
SAME_NUMBER(TENSORD_NO_SESSION, TENSORD__STATUS_CODE__NO_SESSION);
SAME_NUMBER(TENSORD_UNKNOWN_OP, TENSORD__STATUS_CODE__UNKNOWN_OP);
SAME_NUMBER(TENSORD_CANCELLED, TENSORD__STATUS_CODE__CANCELLED);
SAME_NUMBER(TENSORD_MOVED, TENSORD__STATUS_CODE__MOVED);
SAME_NUMBER(TENSORD_NODE_FULL, TENSORD__STATUS_CODE__NODE_FULL);
SAME_NUMBER(TENSORD_UNKNOWN_NODE, TENSORD__STATUS_CODE__UNKNOWN_NODE);
SAME_NUMBER(TENSORD_DTYPE_INFER, TENSORD__DTYPE__DTYPE_UNSPECIFIED);
SAME_NUMBER(TENSORD_FLOAT32, TENSORD__DTYPE__FLOAT32);
SAME_NUMBER(TENSORD_FLOAT64, TENSORD__DTYPE__FLOAT64);
SAME_NUMBER(TENSORD_INT32, TENSORD__DTYPE__INT32);
SAME_NUMBER(TENSORD_INT64, TENSORD__DTYPE__INT64);
SAME_NUMBER(TENSORD_BOOL, TENSORD__DTYPE__BOOL);
SAME_NUMBER(TENSORD_MAX_DIMS, TDW_MAX_DIMS);
SAME_NUMBER(TDW_RUN_OP, TENSORD__REQUEST__BODY_RUN_OP);
SAME_NUMBER(TDW_GET, TENSORD__REQUEST__BODY_GET);
SAME_NUMBER(TDW_FREE, TENSORD__REQUEST__BODY_FREE);
SAME_NUMBER(TDW_WRITE, TENSORD__REQUEST__BODY_WRITE);
#undef SAME_NUMBER

#define READ_BUF (64 * 1024) /* buffered reads of headers and protobuf sections */
#define MAX_REPLY_META                                                                             \
    (32u << 20)                     /* the largest reply's protobuf section is ListNames' (65,536
                                    ** names of up to 255 bytes: 17 MB); more is garbage */
#define COPY_DATA_MAX (64 * 1024)   /* smaller data sections are copied into the queue */
#define AUTO_FLUSH_BYTES (1u << 20) /* a queue this large is written without waiting */
#define MAX_IOV 256
#define AGAIN (-1) /* internal: a read that must not wait would; the frame's state is kept */

/* What a request's successful reply must carry. */
enum want {
    WANT_NONE,         /* Free, Ping, ManualSeed, CloseSession: a status only */
    WANT_TENSOR,       /* creations, ops, Get */
    WANT_MAYBE_TENSOR, /* Grad: a tensor, or none when .grad is None */
    WANT_TEXT,         /* Format */
    WANT_STATS,        /* Stats */
    WANT_HELLO,        /* Hello */
    WANT_NAMES,        /* ListNames */
};

/* A reply frame that tensord_recv_ready began and the socket has not delivered whole: where its
** reading stopped, so that the next read of it (waiting or not) goes on from there. Only the
** oldest unanswered request's frame is ever in this state. */
enum part_stage {
    PART_NONE, /* between frames (or a frame read whole from the buffer) */
    PART_META, /* its protobuf section, too large for the read buffer, is read into heap */
    PART_DATA, /* its result is taken; its data section is read into `at` */
};
struct part {
    enum part_stage stage;
    uint32_t ml;   /* the frame's protobuf section's length */
    uint64_t dl;   /* ... and its data section's */
    uint8_t *heap; /* PART_META: the protobuf section (ml bytes, malloc'd) */
    uint8_t *at;   /* the next byte to fill: in heap, or in the Get's buffer (NULL: dropped) */
    size_t left;   /* bytes of this stage still to read */
};

/* One request whose reply tensord_recv has not returned yet. */
struct pending {
    uint64_t id;
    enum want want;
    bool get_data;       /* a Get with data: a data section is expected */
    uint64_t get_offset; /* ... from this byte */
    uint64_t get_length; /* ... this many (0: to the end) */
    void *buf;           /* Get: where the bytes go; Format: where the text goes */
    size_t cap;
    struct tensord_stats *stats; /* Stats: where the numbers go */
    tensord_name_fn *names_fn;   /* ListNames: called per name (may be NULL) */
    void *names_arg;
    size_t *names_count; /* ListNames: where their number goes (may be NULL) */
    bool done;           /* reply read (during a flush), waiting for tensord_recv */
    int local;           /* TENSORD_E_BUFFER: the bytes did not fit and were dropped */
    int status;          /* the server's verdict */
    char *message;       /* heap copy of a nonempty server message, else NULL */
    bool has_info;
    struct tensord_info info;
};

/* A run of queued bytes: inside `out` (ext NULL, at off) or in the caller's memory (ext). */
struct seg {
    const uint8_t *ext;
    size_t off;
    size_t len;
};

/* What a refused Hello's Status names (MOVED, NODE_FULL, UNKNOWN_NODE), checked when read: a
** field that is present but malformed sets `bad` and is not kept. */
struct redirect {
    char node[TENSORD_NODE_MAX];
    char addr[TENSORD_ADDR_MAX];
    bool bad;
};

struct tensord {
    int fd;
    char token[TENSORD_TOKEN_MAX]; /* text: "<node>.<32 hex>", or 32 hex for a 16-byte token */
    char node[TENSORD_NODE_MAX];   /* the owner, from HelloResult */
    char addr[TENSORD_ADDR_MAX];   /* where this connection went */
    struct redirect red;           /* a refused Hello's Status.node/address */
    bool resumed;
    char server_version[64];
    struct tensord_limits limits;
    uint64_t next_id;
    uint64_t next_handle;
    char op_name[32]; /* the last op name tensord_send_op looked up, and its code */
    int op_code;
    uint8_t *out; /* the send queue's copied bytes */
    size_t out_len, out_cap;
    struct seg *segs; /* everything to write, in order */
    size_t nseg, seg_cap;
    size_t queued;        /* bytes in segs */
    struct pending *pend; /* a ring: [head, head + ndone) are done, the rest wait */
    size_t pend_head, pend_len, pend_cap, pend_done;
    uint8_t *rbuf; /* buffered reader */
    size_t rpos, rlen;
    struct part part;  /* the reply frame being read, when a read stopped inside it */
    char message[512]; /* the last reply's message, for struct tensord_reply */
    bool broken;       /* the stream is out of step: refuse everything */
    char broken_msg[200];
};

static int set_err(struct tensord_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail_conn(struct tensord *c, struct tensord_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int set_err(struct tensord_error *err, int code, const char *fmt, ...)
{
    if (err != NULL) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* A failure that leaves the byte stream unusable: remember it, so later calls fail fast. */
static int fail_conn(struct tensord *c, struct tensord_error *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->broken_msg, sizeof c->broken_msg, fmt, ap);
    va_end(ap);
    c->broken = true;
    return set_err(err, code, "%s", c->broken_msg);
}

static void clear_err(struct tensord_error *err)
{
    if (err != NULL) {
        err->code = 0;
        err->message[0] = '\0';
    }
}

static int check_broken(const struct tensord *c, struct tensord_error *err)
{
    if (c->broken) {
        return set_err(err, TENSORD_E_IO, "connection is broken: %s", c->broken_msg);
    }
    return 0;
}

/* ---- small public helpers ---- */

struct tensord_operand tensord_h(uint64_t handle)
{
    struct tensord_operand o = {.kind = TENSORD_OPERAND_HANDLE, .handle = handle};
    return o;
}

struct tensord_operand tensord_f(double f)
{
    struct tensord_operand o = {.kind = TENSORD_OPERAND_FLOAT, .f = f};
    return o;
}

struct tensord_operand tensord_i(int64_t i)
{
    struct tensord_operand o = {.kind = TENSORD_OPERAND_INT, .i = i};
    return o;
}

struct tensord_operand tensord_b(bool b)
{
    struct tensord_operand o = {.kind = TENSORD_OPERAND_BOOL, .b = b};
    return o;
}

size_t tensord_dtype_size(enum tensord_dtype dt)
{
    switch (dt) {
    case TENSORD_FLOAT32:
    case TENSORD_INT32: return 4;
    case TENSORD_FLOAT64:
    case TENSORD_INT64: return 8;
    case TENSORD_BOOL: return 1;
    default: return 0;
    }
}

const char *tensord_dtype_name(enum tensord_dtype dt)
{
    switch (dt) {
    case TENSORD_FLOAT32: return "float32";
    case TENSORD_FLOAT64: return "float64";
    case TENSORD_INT32: return "int32";
    case TENSORD_INT64: return "int64";
    case TENSORD_BOOL: return "bool";
    default: return "?";
    }
}

/* "add" is OP_ADD in the protocol's Op enum, so the generated enum descriptor is the table and
** a new server op needs no client change beyond regenerating. */
int tensord_op_code(const char *name)
{
    char wire[64] = "OP_";
    size_t n = name != NULL ? strlen(name) : 0;
    if (n == 0 || n + 4 > sizeof wire) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_')) {
            return -1; /* "ADD" and "OP_ADD" are not PyTorch's names */
        }
        wire[3 + i] = (char)(ch >= 'a' && ch <= 'z' ? ch - 'a' + 'A' : ch);
    }
    wire[3 + n] = '\0';
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value_by_name(&tensord__op__descriptor, wire);
    if (v == NULL || v->value == TENSORD__OP__OP_UNSPECIFIED) {
        return -1;
    }
    return v->value;
}

const char *tensord_session_token(const struct tensord *c)
{
    return c->token;
}

const char *tensord_node(const struct tensord *c)
{
    return c->node;
}

const char *tensord_address(const struct tensord *c)
{
    return c->addr;
}

/* ---- names, addresses and tokens from the wire or the user (all hostile until checked) ---- */

/* A node id: a DNS label of 1-63 [a-z0-9-], neither first nor last a '-' (the server's rule,
** server/base/node.c; libtensord links no server code, so the check is written here again). */
static bool is_node_id(const char *s, size_t n)
{
    if (n == 0 || n >= TENSORD_NODE_MAX || s[0] == '-' || s[n - 1] == '-') {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-')) {
            return false;
        }
    }
    return true;
}

static int hex_digit(char ch, bool lower_only)
{
    return ch >= '0' && ch <= '9'                  ? ch - '0'
           : ch >= 'a' && ch <= 'f'                ? ch - 'a' + 10
           : !lower_only && ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                                   : -1;
}

/* A token's text, checked: "<node id>.<32 lowercase hex>" goes on the wire as it is; 32 hex
** digits (a token from before scale-out) as its 16 bytes. Returns the wire length (0: malformed)
** and the node the token names in node ("" for the old form). */
static size_t token_to_wire(const char *text, uint8_t wire[TENSORD_TOKEN_MAX],
                            char node[TENSORD_NODE_MAX])
{
    size_t n = strnlen(text, TENSORD_TOKEN_MAX);
    node[0] = '\0';
    if (n == 32) {
        for (size_t i = 0; i < 32; i++) {
            int v = hex_digit(text[i], false);
            if (v < 0) {
                return 0;
            }
            wire[i / 2] = (uint8_t)((i % 2 == 0 ? 0 : wire[i / 2] << 4) | v);
        }
        return 16;
    }
    const char *dot = memchr(text, '.', n);
    if (n >= TENSORD_TOKEN_MAX || dot == NULL || !is_node_id(text, (size_t)(dot - text)) ||
        n - (size_t)(dot - text) - 1 != 32) {
        return 0;
    }
    for (const char *h = dot + 1; h < text + n; h++) {
        if (hex_digit(*h, true) < 0) {
            return 0;
        }
    }
    memcpy(node, text, (size_t)(dot - text));
    node[dot - text] = '\0';
    memcpy(wire, text, n);
    return n;
}

/* The token a server sent, as text (see token_to_wire); false if it is neither form. */
static bool token_from_wire(const uint8_t *b, size_t n, char text[TENSORD_TOKEN_MAX])
{
    static const char hex[] = "0123456789abcdef";
    if (n == 16) {
        for (size_t i = 0; i < 16; i++) {
            text[2 * i] = hex[b[i] >> 4];
            text[2 * i + 1] = hex[b[i] & 15];
        }
        text[32] = '\0';
        return true;
    }
    uint8_t wire[TENSORD_TOKEN_MAX];
    char node[TENSORD_NODE_MAX], tmp[TENSORD_TOKEN_MAX];
    if (n < 34 || n >= TENSORD_TOKEN_MAX || memchr(b, 0, n) != NULL) {
        return false;
    }
    memcpy(tmp, b, n);
    tmp[n] = '\0';
    if (token_to_wire(tmp, wire, node) != n) {
        return false;
    }
    memcpy(text, tmp, n + 1);
    return true;
}

/* "host:port" where host is a name ([A-Za-z0-9._-], labels as DNS has them), an IPv4 address,
** or "[IPv6]"; port 1-65535. What a MOVED or NODE_FULL may send the client to, and what an
** address list may hold besides unix: and dns: entries. */
static bool is_host_port(const char *s, size_t n)
{
    if (n == 0 || n >= TENSORD_ADDR_MAX) {
        return false;
    }
    const char *colon;
    if (s[0] == '[') {
        const char *end = memchr(s, ']', n);
        if (end == NULL || end == s + 1 || end + 1 >= s + n || end[1] != ':') {
            return false;
        }
        for (const char *p = s + 1; p < end; p++) {
            if (hex_digit(*p, false) < 0 && *p != ':' && *p != '.') {
                return false;
            }
        }
        colon = end + 1;
    } else {
        colon = NULL;
        for (const char *p = s; p < s + n; p++) {
            if (*p == ':') {
                if (colon != NULL) {
                    return false; /* a bare IPv6 address: it needs brackets */
                }
                colon = p;
            }
        }
        if (colon == NULL || colon == s || colon - s > 253) {
            return false;
        }
        for (const char *p = s; p < colon; p++) {
            char ch = *p;
            bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                      (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.';
            if (!ok || (ch == '.' && (p == s || p[-1] == '.'))) {
                return false;
            }
        }
    }
    size_t plen = (size_t)(s + n - colon - 1);
    if (plen == 0 || plen > 5) {
        return false;
    }
    unsigned port = 0;
    for (size_t i = 0; i < plen; i++) {
        char ch = colon[1 + i];
        if (ch < '0' || ch > '9') {
            return false;
        }
        port = port * 10 + (unsigned)(ch - '0');
    }
    return port >= 1 && port <= 65535;
}

bool tensord_resumed(const struct tensord *c)
{
    return c->resumed;
}

const char *tensord_server_version(const struct tensord *c)
{
    return c->server_version;
}

void tensord_limits(const struct tensord *c, struct tensord_limits *out)
{
    *out = c->limits;
}

uint64_t tensord_new_handle(struct tensord *c)
{
    if (c->next_handle == 0) {
        c->next_handle = 1; /* 0 is never a handle */
    }
    return c->next_handle++;
}

size_t tensord_pending(const struct tensord *c)
{
    return c->pend_len;
}

/* ---- the send queue ---- */

static int out_reserve(struct tensord *c, size_t more, struct tensord_error *err)
{
    if (more <= c->out_cap - c->out_len) {
        return 0;
    }
    size_t ncap = c->out_cap ? c->out_cap : 4096;
    while (ncap - c->out_len < more) {
        if (ncap > SIZE_MAX / 2) {
            return set_err(err, TENSORD_E_NOMEM, "out of memory queueing a request");
        }
        ncap *= 2;
    }
    uint8_t *p = realloc(c->out, ncap);
    if (p == NULL) {
        return set_err(err, TENSORD_E_NOMEM, "out of memory queueing a request");
    }
    c->out = p;
    c->out_cap = ncap;
    return 0;
}

/* Makes room for `more` segments. */
static int seg_reserve(struct tensord *c, size_t more, struct tensord_error *err)
{
    if (more <= c->seg_cap - c->nseg) {
        return 0;
    }
    size_t ncap = c->seg_cap ? c->seg_cap * 2 : 64;
    struct seg *s = realloc(c->segs, ncap * sizeof *s);
    if (s == NULL) {
        return set_err(err, TENSORD_E_NOMEM, "out of memory queueing a request");
    }
    c->segs = s;
    c->seg_cap = ncap;
    return 0;
}

/* Records that the last `n` bytes of `out` are to be written (room in segs is reserved). */
static void seg_add_copied(struct tensord *c, size_t n)
{
    size_t off = c->out_len - n;
    struct seg *last = c->nseg > 0 ? &c->segs[c->nseg - 1] : NULL;
    if (last != NULL && last->ext == NULL && last->off + last->len == off) {
        last->len += n;
    } else {
        c->segs[c->nseg++] = (struct seg){.ext = NULL, .off = off, .len = n};
    }
    c->queued += n;
}

static int pend_push(struct tensord *c, const struct pending *p, struct tensord_error *err)
{
    if (c->pend_len == c->pend_cap) {
        size_t ncap = c->pend_cap ? c->pend_cap * 2 : 64;
        struct pending *np = malloc(ncap * sizeof *np);
        if (np == NULL) {
            return set_err(err, TENSORD_E_NOMEM, "out of memory queueing a request");
        }
        for (size_t i = 0; i < c->pend_len; i++) {
            np[i] = c->pend[(c->pend_head + i) & (c->pend_cap - 1)];
        }
        free(c->pend);
        c->pend = np;
        c->pend_head = 0;
        c->pend_cap = ncap;
    }
    c->pend[(c->pend_head + c->pend_len) & (c->pend_cap - 1)] = *p; /* cap: a power of 2 */
    c->pend_len++;
    return 0;
}

/* The frame header's two big-endian lengths, by whole-word stores and loads. */
static inline uint32_t to_be32(uint32_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return __builtin_bswap32(v);
#else
    return v;
#endif
}

static inline uint64_t to_be64(uint64_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return __builtin_bswap64(v);
#else
    return v;
#endif
}

static void put_header(uint8_t *dst, uint32_t meta_len, uint64_t data_len)
{
    uint32_t m = to_be32(meta_len);
    uint64_t d = to_be64(data_len);
    memcpy(dst, &m, 4);
    memcpy(dst + 4, &d, 8);
}

/* Packs one request (its id assigned here) and `nbytes` of data into the queue and records the
** reply it expects in `p`. The request is protobuf-c's `req`, or when that is NULL wire.c's `w`
** (the same bytes, written directly). Nothing is queued when this fails. */
static int queue_req(struct tensord *c, Tensord__Request *req, struct tdw_request *w,
                     const void *data, size_t nbytes, struct pending *p, uint64_t *id,
                     struct tensord_error *err)
{
    int rc;
    if ((rc = check_broken(c, err)) != 0) {
        return rc;
    }
    size_t ml;
    if (req != NULL) {
        req->id = c->next_id;
        ml = tensord__request__get_packed_size(req);
    } else {
        w->id = c->next_id;
        ml = tdw_request_size(w); /* the callers give only bodies it writes */
    }
    uint64_t max = c->limits.max_frame_bytes;
    if (ml > UINT32_MAX || (max != 0 && (ml > max || nbytes > max - ml))) {
        /* The server would answer with an error and close the connection: refuse it here. */
        return set_err(err, TENSORD_LIMIT_EXCEEDED,
                       "request of %zu + %zu bytes exceeds the "
                       "server's max_frame_bytes %llu",
                       ml, nbytes, (unsigned long long)max);
    }
    bool copy = nbytes <= COPY_DATA_MAX;
    /* Reserve everything first, so that a failure leaves the queue as it was. */
    if ((rc = out_reserve(c, TD_FRAME_HEADER_BYTES + ml + (copy ? nbytes : 0), err)) != 0 ||
        (rc = seg_reserve(c, 2, err)) != 0) {
        return rc;
    }
    p->id = c->next_id;
    if ((rc = pend_push(c, p, err)) != 0) {
        return rc;
    }
    uint8_t *dst = c->out + c->out_len;
    put_header(dst, (uint32_t)ml, nbytes);
    if (req != NULL) {
        tensord__request__pack(req, dst + TD_FRAME_HEADER_BYTES);
    } else {
        tdw_request_pack(w, ml, dst + TD_FRAME_HEADER_BYTES);
    }
    c->out_len += TD_FRAME_HEADER_BYTES + ml;
    seg_add_copied(c, TD_FRAME_HEADER_BYTES + ml);
    if (copy && nbytes > 0) {
        memcpy(c->out + c->out_len, data, nbytes);
        c->out_len += nbytes;
        seg_add_copied(c, nbytes);
    } else if (!copy) {
        c->segs[c->nseg++] = (struct seg){.ext = data, .len = nbytes};
        c->queued += nbytes;
    }
    if (id != NULL) {
        *id = c->next_id;
    }
    c->next_id++;
    if (c->queued >= AUTO_FLUSH_BYTES) {
        return tensord_flush(c, err);
    }
    return 0;
}

static int queue(struct tensord *c, Tensord__Request *req, const void *data, size_t nbytes,
                 struct pending *p, uint64_t *id, struct tensord_error *err)
{
    return queue_req(c, req, NULL, data, nbytes, p, id, err);
}

/* ---- reading replies ---- */

/* Reads the *left bytes still due into *at (NULL: discard them), advancing both. Large reads
** bypass the buffer and go straight to the destination, so tensor bytes are not copied on the
** way. With `nonblock`, returns AGAIN when the socket has nothing more yet (what it had is taken,
** and *at and *left say where to go on); else it waits. */
static int read_some(struct tensord *c, uint8_t **at, size_t *left, bool nonblock,
                     struct tensord_error *err)
{
    uint8_t *d = *at;
    size_t n = *left;
    size_t have = c->rlen - c->rpos;
    size_t take = have < n ? have : n;
    int rc = 0;
    if (take > 0) {
        if (d != NULL) {
            memcpy(d, c->rbuf + c->rpos, take);
            d += take;
        }
        c->rpos += take;
        n -= take;
    }
    while (n > 0) {
        /* The buffer is empty here (all of it was taken above), so a read into it may start at
        ** its front; what it reads past this frame stays buffered for the next. */
        bool direct = d != NULL && n >= READ_BUF / 2;
        ssize_t r = direct ? recv(c->fd, d, n, nonblock ? MSG_DONTWAIT : 0)
                           : recv(c->fd, c->rbuf, READ_BUF, nonblock ? MSG_DONTWAIT : 0);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0 && nonblock && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            rc = AGAIN;
            break;
        }
        if (r == 0) {
            return fail_conn(c, err, TENSORD_E_IO, "the server closed the connection");
        }
        if (r < 0) {
            return fail_conn(c, err, TENSORD_E_IO, "read from server failed: %s", strerror(errno));
        }
        if (direct) {
            d += r;
            n -= (size_t)r;
            continue;
        }
        c->rlen = (size_t)r;
        take = (size_t)r < n ? (size_t)r : n;
        if (d != NULL) {
            memcpy(d, c->rbuf, take);
            d += take;
        }
        c->rpos = take;
        n -= take;
    }
    *at = d;
    *left = n;
    return rc;
}

/* Makes the next n bytes (at most READ_BUF) readable in place at rbuf + rpos, moving what is
** buffered to the front first when they would not fit behind it. */
static int fill(struct tensord *c, size_t n, struct tensord_error *err)
{
    if (c->rlen - c->rpos >= n) {
        return 0;
    }
    if (c->rpos + n > READ_BUF) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
    while (c->rlen - c->rpos < n) {
        ssize_t r = recv(c->fd, c->rbuf + c->rlen, READ_BUF - c->rlen, 0);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r == 0) {
            return fail_conn(c, err, TENSORD_E_IO, "the server closed the connection");
        }
        if (r < 0) {
            return fail_conn(c, err, TENSORD_E_IO, "read from server failed: %s", strerror(errno));
        }
        c->rlen += (size_t)r;
    }
    return 0;
}

/* Copies and checks a TensorInfo: at most TENSORD_MAX_DIMS dims, none negative, a known
** dtype, nbytes equal to numel times the element size, and the range inside the tensor. */
static int take_info(struct tensord *c, struct tensord_info *info, const struct tdw_tensor *t,
                     struct tensord_error *err)
{
    size_t esize = tensord_dtype_size((enum tensord_dtype)t->dtype);
    if (esize == 0) {
        return fail_conn(c, err, TENSORD_E_PROTOCOL,
                         "reply describes a tensor with %d dims "
                         "of dtype %d",
                         t->ndim, (int)t->dtype);
    }
    uint64_t count = esize;
    for (int i = 0; i < t->ndim; i++) {
        int64_t d = t->shape[i];
        if (d < 0 || (d > 0 && count > UINT64_MAX / (uint64_t)d)) {
            return fail_conn(c, err, TENSORD_E_PROTOCOL, "reply has an impossible shape");
        }
        count *= (uint64_t)d;
        info->shape[i] = d;
    }
    if (count != t->nbytes || t->offset > t->nbytes || t->length > t->nbytes - t->offset) {
        return fail_conn(c, err, TENSORD_E_PROTOCOL,
                         "reply says nbytes %llu, offset %llu, "
                         "length %llu for a tensor of %llu bytes",
                         (unsigned long long)t->nbytes, (unsigned long long)t->offset,
                         (unsigned long long)t->length, (unsigned long long)count);
    }
    for (int i = t->ndim; i < TENSORD_MAX_DIMS; i++) {
        info->shape[i] = 0;
    }
    info->handle = t->handle;
    info->dtype = (enum tensord_dtype)t->dtype;
    info->requires_grad = t->requires_grad;
    info->is_leaf = t->is_leaf;
    size_t gl = t->grad_fn_len < sizeof info->grad_fn ? t->grad_fn_len : sizeof info->grad_fn - 1;
    memcpy(info->grad_fn, t->grad_fn, gl); /* cut as snprintf would */
    memset(info->grad_fn + gl, 0, sizeof info->grad_fn - gl);
    info->ndim = t->ndim;
    info->nbytes = t->nbytes;
    info->offset = t->offset;
    info->length = t->length;
    return 0;
}

static int take_hello(struct tensord *c, const Tensord__HelloResult *h, struct tensord_error *err)
{
    if (!token_from_wire(h->session_token.data, h->session_token.len, c->token)) {
        return fail_conn(c, err, TENSORD_E_PROTOCOL,
                         "the server's Hello reply has a malformed %zu-byte session token",
                         h->session_token.len);
    }
    const char *id = h->node_id != NULL ? h->node_id : "";
    size_t idlen = strnlen(id, TENSORD_NODE_MAX);
    if (idlen != 0 && !is_node_id(id, idlen)) {
        return fail_conn(c, err, TENSORD_E_PROTOCOL,
                         "the server's Hello reply has a malformed node id");
    }
    memcpy(c->node, id, idlen);
    c->node[idlen] = '\0';
    c->resumed = h->resumed;
    snprintf(c->server_version, sizeof c->server_version, "%s",
             h->server_version != NULL ? h->server_version : "");
    if (h->limits != NULL) {
        c->limits.max_frame_bytes = h->limits->max_frame_bytes;
        c->limits.max_tensor_bytes = h->limits->max_tensor_bytes;
        c->limits.session_max_bytes = h->limits->session_max_bytes;
        c->limits.max_dims = h->limits->max_dims;
    }
    return 0;
}

/* Checks a successful reply's result against what request `p` expects, and delivers the small
** results (text, stats, Hello) to where they go. `dl` is the frame's data length. */
static int take_result(struct tensord *c, struct pending *p, const struct tdw_reply *w,
                       const Tensord__Response *r, uint64_t dl, struct tensord_error *err)
{
    static const Tensord__Response__ResultCase expect[] = {
        [WANT_NONE] = TENSORD__RESPONSE__RESULT__NOT_SET,
        [WANT_TENSOR] = TENSORD__RESPONSE__RESULT_TENSOR,
        [WANT_MAYBE_TENSOR] = TENSORD__RESPONSE__RESULT_TENSOR,
        [WANT_TEXT] = TENSORD__RESPONSE__RESULT_TEXT,
        [WANT_STATS] = TENSORD__RESPONSE__RESULT_STATS,
        [WANT_HELLO] = TENSORD__RESPONSE__RESULT_HELLO,
        [WANT_NAMES] = TENSORD__RESPONSE__RESULT_NAMES,
    };
    int rc;
    /* r is NULL when wire.c decoded the reply: then there is a TensorInfo or no result. */
    Tensord__Response__ResultCase rcase = r != NULL ? r->result_case
                                                    : (w->has_tensor
                                                           ? TENSORD__RESPONSE__RESULT_TENSOR
                                                           : TENSORD__RESPONSE__RESULT__NOT_SET);
    bool optional = p->want == WANT_NONE ||
                    (p->want == WANT_MAYBE_TENSOR && rcase == TENSORD__RESPONSE__RESULT__NOT_SET);
    if (!optional && rcase != expect[p->want]) {
        return fail_conn(c, err, TENSORD_E_PROTOCOL, "reply to request %llu lacks its result",
                         (unsigned long long)p->id);
    }
    if (!p->get_data && dl != 0) {
        return fail_conn(c, err, TENSORD_E_PROTOCOL,
                         "reply to request %llu carries %llu "
                         "unexpected data bytes",
                         (unsigned long long)p->id, (unsigned long long)dl);
    }
    switch (p->want) {
    case WANT_MAYBE_TENSOR:
        if (rcase != TENSORD__RESPONSE__RESULT_TENSOR) {
            return 0; /* None */
        }
        /* fall through */
    case WANT_TENSOR:
        if ((rc = take_info(c, &p->info, &w->tensor, err)) != 0) {
            return rc;
        }
        p->has_info = true;
        if (p->get_data) {
            uint64_t len = p->info.nbytes >= p->get_offset ? p->info.nbytes - p->get_offset : 0;
            len = p->get_length != 0 ? p->get_length : len;
            if (p->info.offset != p->get_offset || p->info.length != len || dl != len) {
                return fail_conn(c, err, TENSORD_E_PROTOCOL,
                                 "Get reply carries bytes "
                                 "[%llu, +%llu) in %llu data bytes; [%llu, +%llu) was asked",
                                 (unsigned long long)p->info.offset,
                                 (unsigned long long)p->info.length, (unsigned long long)dl,
                                 (unsigned long long)p->get_offset, (unsigned long long)len);
            }
        }
        return 0;
    case WANT_TEXT:
        if (p->buf != NULL && p->cap > 0) {
            snprintf(p->buf, p->cap, "%s", r->text != NULL ? r->text : "");
        }
        return 0;
    case WANT_STATS:
        if (p->stats != NULL) {
            p->stats->session_bytes = r->stats->session_bytes;
            p->stats->session_tensors = r->stats->session_tensors;
            p->stats->sessions = r->stats->sessions;
            p->stats->server_bytes = r->stats->server_bytes;
            p->stats->server_tensors = r->stats->server_tensors;
            p->stats->connections = r->stats->connections;
            p->stats->uptime_ms = r->stats->uptime_ms;
            p->stats->allocated_bytes = r->stats->allocated_bytes;
            p->stats->cached_bytes = r->stats->cached_bytes;
        }
        return 0;
    case WANT_HELLO: return take_hello(c, r->hello, err);
    case WANT_NAMES:
        for (size_t i = 0; i < r->names->n_names && p->names_fn != NULL; i++) {
            p->names_fn(r->names->names[i], p->names_arg);
        }
        if (p->names_count != NULL) {
            *p->names_count = r->names->n_names;
        }
        return 0;
    case WANT_NONE: return 0;
    }
    return 0;
}

/* Keeps a refused Hello's Status.node/address if they are well formed (see struct redirect). */
static void take_redirect(struct redirect *red, const Tensord__Status *st)
{
    const char *node = st->node != NULL ? st->node : "";
    const char *addr = st->address != NULL ? st->address : "";
    size_t nl = strnlen(node, TENSORD_NODE_MAX), al = strnlen(addr, TENSORD_ADDR_MAX);
    memset(red, 0, sizeof *red);
    if ((nl != 0 && !is_node_id(node, nl)) || (al != 0 && !is_host_port(addr, al))) {
        red->bad = true;
        return;
    }
    memcpy(red->node, node, nl);
    memcpy(red->addr, addr, al);
}

/* The facts of a reply that protobuf-c unpacked, as wire.c's decoder gives them. */
static int from_protobuf_c(struct tensord *c, const Tensord__Response *r, struct tdw_reply *w,
                           struct tensord_error *err)
{
    w->id = r->id;
    w->code = r->status != NULL ? (int32_t)r->status->code : 0;
    w->message = r->status != NULL && r->status->message != NULL ? r->status->message : "";
    w->message_len = strlen(w->message);
    w->has_tensor = r->result_case == TENSORD__RESPONSE__RESULT_TENSOR;
    w->backward_empty = false; /* protobuf-c's replies are read from r itself */
    if (w->has_tensor) {
        const Tensord__TensorInfo *t = r->tensor;
        struct tdw_tensor *o = &w->tensor;
        if (t->n_shape > TDW_MAX_DIMS) {
            return fail_conn(c, err, TENSORD_E_PROTOCOL,
                             "reply describes a tensor with %zu dims of dtype %d", t->n_shape,
                             (int)t->dtype);
        }
        o->handle = t->handle;
        o->dtype = (int32_t)t->dtype;
        o->ndim = (int)t->n_shape;
        if (t->n_shape != 0) { /* shape is NULL then: memcpy may not be given it */
            memcpy(o->shape, t->shape, t->n_shape * sizeof *t->shape);
        }
        o->nbytes = t->nbytes;
        o->offset = t->offset;
        o->length = t->length;
        o->requires_grad = t->requires_grad;
        o->is_leaf = t->is_leaf;
        o->grad_fn = t->grad_fn != NULL ? t->grad_fn : "";
        o->grad_fn_len = strlen(o->grad_fn);
    }
    return 0;
}

/* Takes a reply frame's protobuf section (ml bytes at meta; the frame's data section is dl bytes
** and not read yet), which answers `p`: checks it, stores the verdict in p and sets c->part to
** read the data section (into p's buffer, or dropped when the bytes do not fit there: p->local
** says so). Any failure here breaks the connection. The section is decoded by wire.c when the
** request expects a status or a TensorInfo; what that decoder hands over, and the other
** replies, protobuf-c unpacks. */
static int take_frame(struct tensord *c, struct pending *p, const uint8_t *meta, uint32_t ml,
                      uint64_t dl, struct tensord_error *err)
{
    int rc = 0;
    struct tdw_reply w;
    Tensord__Response *r = NULL;
    bool fast = (p->want == WANT_NONE || p->want == WANT_TENSOR || p->want == WANT_MAYBE_TENSOR) &&
                tdw_reply_decode(meta, ml, &w) == 0 && !w.backward_empty;
    if (!fast) {
        r = tensord__response__unpack(NULL, ml, meta);
        if (r == NULL) {
            return fail_conn(c, err, TENSORD_E_PROTOCOL, "malformed reply (%u protobuf bytes)", ml);
        }
        if ((rc = from_protobuf_c(c, r, &w, err)) != 0) {
            goto out;
        }
    }
    int status = (int)w.code;
    /* A reply with id 0 is an error about a frame the server could not read; it takes the
    ** turn of the request it could not read. */
    if (w.id != p->id && !(w.id == 0 && status != 0)) {
        rc = fail_conn(c, err, TENSORD_E_PROTOCOL,
                       "reply for request %llu arrived when %llu "
                       "was expected",
                       (unsigned long long)w.id, (unsigned long long)p->id);
        goto out;
    }
    p->status = status;
    if (status != 0) {
        if (dl != 0) {
            rc = fail_conn(c, err, TENSORD_E_PROTOCOL, "error reply carries data");
            goto out;
        }
        if (w.message_len != 0 && (p->message = strndup(w.message, w.message_len)) == NULL) {
            rc = fail_conn(c, err, TENSORD_E_NOMEM, "out of memory reading a reply");
            goto out;
        }
        if (p->want == WANT_HELLO) {
            take_redirect(&c->red, r->status); /* Hello replies are always protobuf-c's */
        }
    } else if ((rc = take_result(c, p, &w, r, dl, err)) != 0) {
        goto out;
    }
    c->part.stage = PART_DATA;
    c->part.left = (size_t)dl;
    if (dl > 0 && (p->buf == NULL || dl > p->cap)) {
        /* Drain the bytes so that the stream stays in step; tensord_recv reports. */
        p->local = TENSORD_E_BUFFER;
        c->part.at = NULL;
    } else {
        c->part.at = p->buf;
    }
out:
    if (r != NULL) {
        tensord__response__free_unpacked(r, NULL);
    }
    return rc;
}

/* Reads the next reply frame, which answers `p` (the oldest request not yet answered), or the
** rest of it when a read stopped inside it (c->part), and marks p done. The protobuf section is
** read in place from the read buffer when it fits there with the header, else into a heap
** block; the data section goes straight into the Get's buffer. With `nonblock` (from
** tensord_recv_ready, which calls it only once the frame's header, and a protobuf section that
** fits the buffer, are buffered) it never waits: AGAIN when the socket runs dry first, with
** c->part saying where it stopped. Any failure but AGAIN breaks the connection. */
static int read_reply(struct tensord *c, struct pending *p, bool nonblock,
                      struct tensord_error *err)
{
    struct part *q = &c->part;
    int rc;
    if (q->stage == PART_NONE) {
        if ((rc = fill(c, TD_FRAME_HEADER_BYTES, err)) != 0) {
            return rc;
        }
        const uint8_t *h = c->rbuf + c->rpos;
        uint32_t ml;
        uint64_t dl;
        memcpy(&ml, h, 4);
        memcpy(&dl, h + 4, 8);
        ml = to_be32(ml); /* the same swap both ways */
        dl = to_be64(dl);
        c->rpos += TD_FRAME_HEADER_BYTES;
        if (ml > MAX_REPLY_META || dl > SIZE_MAX) {
            return fail_conn(c, err, TENSORD_E_PROTOCOL, "reply header announces %u + %llu bytes",
                             ml, (unsigned long long)dl);
        }
        q->ml = ml;
        q->dl = dl;
        if (ml <= READ_BUF - TD_FRAME_HEADER_BYTES) {
            if ((rc = fill(c, ml, err)) != 0) {
                return rc;
            }
            const uint8_t *meta = c->rbuf + c->rpos; /* used before the data is read */
            c->rpos += ml;
            if ((rc = take_frame(c, p, meta, ml, dl, err)) != 0) {
                return rc;
            }
        } else {
            if ((q->heap = malloc(ml)) == NULL) {
                return fail_conn(c, err, TENSORD_E_NOMEM, "out of memory reading a reply");
            }
            q->stage = PART_META;
            q->at = q->heap;
            q->left = ml;
        }
    }
    if (q->stage == PART_META) {
        if ((rc = read_some(c, &q->at, &q->left, nonblock, err)) != 0) {
            return rc; /* AGAIN keeps the section read so far */
        }
        rc = take_frame(c, p, q->heap, q->ml, q->dl, err);
        free(q->heap);
        q->heap = NULL;
        if (rc != 0) {
            return rc;
        }
    }
    if ((rc = read_some(c, &q->at, &q->left, nonblock, err)) != 0) {
        return rc;
    }
    q->stage = PART_NONE;
    p->done = true;
    return 0;
}

/* ---- writing ---- */

/* Writes first: a sendmsg that takes everything (the common case) costs one system call. Only
** when the socket is full does it poll, and then it reads replies that have arrived before
** writing more (see Deadlock at the top). */
int tensord_flush(struct tensord *c, struct tensord_error *err)
{
    int rc = check_broken(c, err);
    size_t si = 0, soff = 0; /* the first unwritten byte: segment si, offset soff */
    bool writable = true;
    while (rc == 0 && si < c->nseg) {
        if (!writable) {
            bool await = c->pend_done < c->pend_len;
            struct pollfd pfd = {.fd = c->fd, .events = POLLOUT | (await ? POLLIN : 0)};
            if (await && c->rpos < c->rlen) {
                pfd.revents = POLLIN; /* part of a reply is buffered already */
            } else if (poll(&pfd, 1, -1) < 0) {
                if (errno != EINTR) {
                    rc = fail_conn(c, err, TENSORD_E_IO, "poll failed: %s", strerror(errno));
                }
                continue;
            }
            if (await && (pfd.revents & POLLIN)) {
                /* Take a reply off the wire before writing more, so the server can go on. */
                struct pending *p = &c->pend[(c->pend_head + c->pend_done) & (c->pend_cap - 1)];
                if ((rc = read_reply(c, p, false, err)) == 0) {
                    c->pend_done++;
                }
                continue;
            }
            writable = true; /* POLLOUT, or an error that sendmsg will name */
        }
        struct iovec iov[MAX_IOV];
        size_t n = 0;
        for (size_t i = si; i < c->nseg && n < MAX_IOV; i++, n++) {
            const struct seg *s = &c->segs[i];
            const uint8_t *base = s->ext != NULL ? s->ext : c->out + s->off;
            size_t skip = i == si ? soff : 0;
            iov[n].iov_base = (void *)(base + skip);
            iov[n].iov_len = s->len - skip;
        }
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = n};
        ssize_t w = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                writable = false;
            } else if (errno != EINTR) {
                rc = fail_conn(c, err, TENSORD_E_IO, "write to server failed: %s", strerror(errno));
            }
            continue;
        }
        size_t left = (size_t)w, asked = 0;
        for (size_t i = 0; i < n; i++) {
            asked += iov[i].iov_len;
        }
        writable = left == asked; /* short: the socket is full (poll before trying again) */
        while (left > 0) {
            size_t room = c->segs[si].len - soff;
            if (left < room) {
                soff += left;
                break;
            }
            left -= room;
            si++;
            soff = 0;
        }
    }
    c->nseg = 0;
    c->out_len = 0;
    c->queued = 0;
    return rc;
}

/* Returns the oldest pending reply into `reply`, reading it first if a flush did not. */
static int recv_one(struct tensord *c, struct tensord_reply *reply, struct tensord_error *err)
{
    int rc;
    if ((rc = check_broken(c, err)) != 0) {
        return rc;
    }
    if (c->pend_len == 0) {
        return set_err(err, TENSORD_E_USAGE, "no reply is pending");
    }
    if (c->nseg > 0 && (rc = tensord_flush(c, err)) != 0) {
        return rc;
    }
    struct pending *p = &c->pend[c->pend_head];
    if (!p->done) {
        if ((rc = read_reply(c, p, false, err)) != 0) {
            return rc;
        }
        c->pend_done++;
    }
    memset(reply, 0, sizeof *reply);
    reply->id = p->id;
    reply->status = p->status;
    if (p->message != NULL) {
        snprintf(c->message, sizeof c->message, "%s", p->message);
    } else {
        c->message[0] = '\0';
    }
    reply->message = c->message;
    reply->has_info = p->has_info;
    reply->info = p->info;
    rc = 0;
    if (p->local == TENSORD_E_BUFFER) {
        rc = set_err(err, TENSORD_E_BUFFER, "the reply has %llu data bytes; the buffer holds %zu",
                     (unsigned long long)p->info.length, p->buf != NULL ? p->cap : 0);
    }
    free(p->message);
    c->pend_head = (c->pend_head + 1) & (c->pend_cap - 1);
    c->pend_len--;
    c->pend_done--;
    return rc;
}

int tensord_recv(struct tensord *c, struct tensord_reply *reply, struct tensord_error *err)
{
    clear_err(err);
    return recv_one(c, reply, err);
}

int tensord_fd(const struct tensord *c)
{
    return c->fd;
}

size_t tensord_ready(const struct tensord *c)
{
    return c->pend_done;
}

/* Whether read_reply can start the next reply's frame without waiting: its header is buffered,
** and so is its protobuf section when that fits the buffer with the header (a larger one is
** read into heap, a data section straight into its destination, both as far as the socket
** allows). A header announcing nonsense counts: read_reply names it. */
static bool frame_startable(const struct tensord *c)
{
    size_t have = c->rlen - c->rpos;
    if (have < TD_FRAME_HEADER_BYTES) {
        return false;
    }
    const uint8_t *h = c->rbuf + c->rpos;
    uint64_t ml = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
    if (ml > READ_BUF - TD_FRAME_HEADER_BYTES) {
        return true;
    }
    return have >= TD_FRAME_HEADER_BYTES + ml;
}

int tensord_recv_ready(struct tensord *c, size_t *ready, struct tensord_error *err)
{
    int rc;
    clear_err(err);
    *ready = 0;
    if ((rc = check_broken(c, err)) != 0 || (c->nseg > 0 && (rc = tensord_flush(c, err)) != 0)) {
        return rc;
    }
    bool drained = false;
    for (;;) {
        while (c->pend_done < c->pend_len && (c->part.stage != PART_NONE || frame_startable(c))) {
            struct pending *p = &c->pend[(c->pend_head + c->pend_done) & (c->pend_cap - 1)];
            if ((rc = read_reply(c, p, true, err)) == AGAIN) {
                *ready = c->pend_done; /* the socket is dry inside a frame: later */
                return 0;
            }
            if (rc != 0) {
                return rc;
            }
            c->pend_done++;
        }
        if (c->pend_done == c->pend_len || drained) {
            break;
        }
        /* Room behind the partial header and protobuf section: together they fit the buffer
        ** (frame_startable). */
        if (c->rpos > 0) {
            memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
            c->rlen -= c->rpos;
            c->rpos = 0;
        }
        size_t room = READ_BUF - c->rlen;
        ssize_t r = recv(c->fd, c->rbuf + c->rlen, room, MSG_DONTWAIT);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        }
        if (r == 0) {
            return fail_conn(c, err, TENSORD_E_IO, "the server closed the connection");
        }
        if (r < 0) {
            return fail_conn(c, err, TENSORD_E_IO, "read from server failed: %s", strerror(errno));
        }
        c->rlen += (size_t)r;
        drained = (size_t)r < room; /* the socket had no more: finish what is buffered, stop */
    }
    *ready = c->pend_done;
    return 0;
}

/* Blocking calls need the reply stream to themselves. */
static int busy(const struct tensord *c, struct tensord_error *err)
{
    int rc = check_broken(c, err);
    if (rc == 0 && c->pend_len > 0) {
        rc = set_err(err, TENSORD_E_USAGE,
                     "%zu pipelined requests are outstanding; collect "
                     "their replies with tensord_recv first",
                     c->pend_len);
    }
    return rc;
}

/* Flushes the one queued request, waits for its reply and turns a refusal into the return
** value. `info` is filled for a Get whose bytes did not fit, too. */
static int complete(struct tensord *c, struct tensord_info *info, struct tensord_error *err)
{
    struct tensord_reply r = {0};
    int rc = tensord_flush(c, err);
    if (rc == 0) {
        rc = recv_one(c, &r, err);
    }
    if ((rc == 0 || rc == TENSORD_E_BUFFER) && info != NULL && r.has_info) {
        *info = r.info;
    }
    if (rc == 0 && r.status != 0) {
        rc = set_err(err, r.status, "%s", r.message);
    }
    return rc;
}

/* Sends one request and waits for its reply. */
static int roundtrip(struct tensord *c, Tensord__Request *req, struct pending *p,
                     struct tensord_info *info, struct tensord_error *err)
{
    int rc;
    clear_err(err);
    if ((rc = busy(c, err)) != 0 || (rc = queue(c, req, NULL, 0, p, NULL, err)) != 0) {
        return rc;
    }
    return complete(c, info, err);
}

/* ---- connecting ---- */

static int dial_unix(const char *path, struct tensord_error *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof sa.sun_path) {
        return -set_err(err, TENSORD_E_CONNECT, "bad unix socket path '%s'", path);
    }
    memcpy(sa.sun_path, path, n + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        int e = errno;
        if (fd >= 0) {
            close(fd);
        }
        return -set_err(err, TENSORD_E_CONNECT, "cannot connect to unix:%s: %s", path, strerror(e));
    }
    return fd;
}

/* connect() that gives up after CONNECT_TIMEOUT_MS (ETIMEDOUT): a node whose packets vanish
** must not hold a placement over a list for the kernel's minutes of SYN retries. The socket
** is blocking again afterwards. */
#define CONNECT_TIMEOUT_MS 10000
static int connect_bounded(int fd, const struct sockaddr *sa, socklen_t len)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0) {
        return -1;
    }
    int rc = connect(fd, sa, len);
    if (rc != 0 && errno == EINPROGRESS) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int soerr = 0, n;
        socklen_t sl = sizeof soerr;
        while ((n = poll(&p, 1, CONNECT_TIMEOUT_MS)) < 0 && errno == EINTR) {
        }
        if (n == 0) {
            errno = ETIMEDOUT;
        } else if (n > 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0) {
            errno = soerr;
            rc = soerr == 0 ? 0 : -1;
        }
    }
    if (rc == 0 && fcntl(fd, F_SETFL, fl) != 0) {
        rc = -1;
    }
    return rc;
}

/* Returns a connected socket, or minus an error code. */
static int dial(const char *addr, struct tensord_error *err)
{
    if (addr == NULL) {
        return -set_err(err, TENSORD_E_CONNECT, "no address given");
    }
    if (strncmp(addr, "unix:", 5) == 0) {
        return dial_unix(addr + 5, err);
    }
    const char *hstart = addr, *colon;
    size_t hlen;
    if (addr[0] == '[') {
        const char *end = strchr(addr, ']');
        if (end == NULL || end[1] != ':') {
            return -set_err(err, TENSORD_E_CONNECT, "bad address '%s' (want [v6addr]:port)", addr);
        }
        hstart = addr + 1;
        hlen = (size_t)(end - hstart);
        colon = end + 1;
    } else {
        colon = strrchr(addr, ':');
        if (colon == NULL || memchr(addr, ':', (size_t)(colon - addr)) != NULL) {
            return -set_err(err, TENSORD_E_CONNECT,
                            "bad address '%s' (want host:port, "
                            "[v6addr]:port or unix:/path)",
                            addr);
        }
        hlen = (size_t)(colon - addr);
    }
    const char *port = colon + 1;
    char host[256];
    if (hlen == 0 || hlen >= sizeof host || port[0] == '\0' ||
        strspn(port, "0123456789") != strlen(port)) {
        return -set_err(err, TENSORD_E_CONNECT,
                        "bad address '%s' (want host:port, "
                        "[v6addr]:port or unix:/path)",
                        addr);
    }
    memcpy(host, hstart, hlen);
    host[hlen] = '\0';
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    int g = getaddrinfo(host, port, &hints, &res);
    if (g != 0) {
        return -set_err(err, TENSORD_E_CONNECT, "cannot resolve %s: %s", addr, gai_strerror(g));
    }
    int fd = -1, e = 0;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd >= 0 && connect_bounded(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            break;
        }
        e = errno;
        if (fd >= 0) {
            close(fd);
        }
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        return -set_err(err, TENSORD_E_CONNECT, "cannot connect to %s: %s", addr, strerror(e));
    }
    /* Small requests go out at once: batching is the send queue's job, not Nagle's. */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* Where the handle counter of a resumed session starts: random and above 2^32, far from the
** 1, 2, 3 ... of the connection that filled the session. From the OS when it can. */
static uint64_t resumed_handle_base(void)
{
    uint32_t r = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, &r, sizeof r) != (ssize_t)sizeof r) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        r = (uint32_t)ts.tv_nsec ^ (uint32_t)getpid() << 16;
    }
    if (fd >= 0) {
        close(fd);
    }
    return ((uint64_t)(r & 0x7fffffffu) + 1) << 32;
}

/* ---- address lists and routing ---- */

/* The node table (known_put) keeps what it learned under the address list as given, when it is
** shorter than this; a longer list keeps nothing there. */
#define KNOWN_SCOPE_MAX 256

struct addr_list {
    int n;
    char a[TENSORD_MAX_ADDRS][TENSORD_ADDR_MAX];
    char scope[KNOWN_SCOPE_MAX]; /* the list as given, or "" (too long: nothing remembered) */
};

/* Appends one address (unless it is there already); false when the list is full. */
static bool list_add(struct addr_list *l, const char *a, size_t n)
{
    for (int i = 0; i < l->n; i++) {
        if (strncmp(l->a[i], a, n) == 0 && l->a[i][n] == '\0') {
            return true;
        }
    }
    if (l->n == TENSORD_MAX_ADDRS) {
        return false;
    }
    memcpy(l->a[l->n], a, n);
    l->a[l->n++][n] = '\0';
    return true;
}

/* "dns:NAME:PORT": every address NAME resolves to (A and AAAA), as "ip:port" / "[ip]:port". */
static int expand_dns(struct addr_list *l, const char *e, size_t n, struct tensord_error *err)
{
    char spec[TENSORD_ADDR_MAX], ip[INET6_ADDRSTRLEN];
    const char *rest = e + 4;
    size_t rn = n - 4;
    if (!is_host_port(rest, rn) || rest[0] == '[') {
        return set_err(err, TENSORD_E_CONNECT, "bad address '%.*s' (want dns:NAME:PORT)",
                       (int)(n < 300 ? n : 300), e);
    }
    memcpy(spec, rest, rn);
    spec[rn] = '\0';
    char *colon = strrchr(spec, ':');
    *colon = '\0';
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    int g = getaddrinfo(spec, colon + 1, &hints, &res);
    if (g != 0) {
        return set_err(err, TENSORD_E_CONNECT, "cannot resolve dns:%s:%s: %s", spec, colon + 1,
                       gai_strerror(g));
    }
    int rc = 0;
    for (struct addrinfo *ai = res; ai != NULL && rc == 0; ai = ai->ai_next) {
        char one[TENSORD_ADDR_MAX];
        int len;
        if (ai->ai_family == AF_INET) {
            const struct sockaddr_in *sa = (const void *)ai->ai_addr;
            inet_ntop(AF_INET, &sa->sin_addr, ip, sizeof ip);
            len = snprintf(one, sizeof one, "%s:%u", ip, ntohs(sa->sin_port));
        } else if (ai->ai_family == AF_INET6) {
            const struct sockaddr_in6 *sa = (const void *)ai->ai_addr;
            inet_ntop(AF_INET6, &sa->sin6_addr, ip, sizeof ip);
            len = snprintf(one, sizeof one, "[%s]:%u", ip, ntohs(sa->sin6_port));
        } else {
            continue;
        }
        if (!list_add(l, one, (size_t)len)) {
            rc = set_err(err, TENSORD_E_CONNECT, "address list: more than %d addresses",
                         TENSORD_MAX_ADDRS);
        }
    }
    freeaddrinfo(res);
    return rc;
}

/* Splits and checks an address list (see tensord_connect). */
static int parse_addrs(struct addr_list *l, const char *addr, struct tensord_error *err)
{
    l->n = 0;
    if (addr == NULL || addr[0] == '\0') {
        return set_err(err, TENSORD_E_CONNECT, "no address given");
    }
    size_t total = strnlen(addr, TENSORD_MAX_ADDRS * TENSORD_ADDR_MAX + 1);
    if (total > TENSORD_MAX_ADDRS * TENSORD_ADDR_MAX) {
        return set_err(err, TENSORD_E_CONNECT, "address list is too long");
    }
    for (const char *e = addr;;) {
        const char *comma = strchr(e, ',');
        size_t n = comma != NULL ? (size_t)(comma - e) : strlen(e);
        int rc = 0;
        if (n >= 4 && strncmp(e, "dns:", 4) == 0) {
            rc = expand_dns(l, e, n, err);
        } else if ((n >= 5 && strncmp(e, "unix:", 5) == 0 && n < TENSORD_ADDR_MAX) ||
                   is_host_port(e, n)) {
            if (!list_add(l, e, n)) {
                rc = set_err(err, TENSORD_E_CONNECT, "address list: more than %d addresses",
                             TENSORD_MAX_ADDRS);
            }
        } else {
            rc = set_err(err, TENSORD_E_CONNECT,
                         "bad address '%.*s' (want host:port, [v6addr]:port, unix:/path or "
                         "dns:NAME:PORT, or a comma-separated list of them)",
                         (int)(n < 300 ? n : 300), e);
        }
        if (rc != 0) {
            return rc;
        }
        if (comma == NULL) {
            return 0;
        }
        e = comma + 1;
    }
}

/* Where the process's next new session starts in an address list: one further each time, from a
** random start (so that many processes spread over the list too). */
static _Atomic uint64_t rr_next;
static atomic_bool rr_seeded;

static uint64_t rr_take(bool advance)
{
    if (!atomic_load(&rr_seeded)) {
        uint32_t r = (uint32_t)(resumed_handle_base() >> 32);
        bool no = false;
        if (atomic_compare_exchange_strong(&rr_seeded, &no, true)) {
            atomic_fetch_add(&rr_next, r);
        }
    }
    return advance ? atomic_fetch_add(&rr_next, 1) : atomic_load(&rr_next);
}

/* Where each node was last reached (HelloResult, MOVED), for resumes given an address list: a
** small process-wide table under a spin lock (held for a copy only), the oldest entry replaced
** when full. An entry belongs to the address list it was learned through: a node id is only what
** a server claims (every StatefulSet has a tensord-0), so what one list's servers said must never
** send another list's session token and auth token anywhere. */
#define KNOWN_NODES 64
static struct {
    char scope[KNOWN_SCOPE_MAX];
    char node[TENSORD_NODE_MAX];
    char addr[TENSORD_ADDR_MAX];
    uint64_t used;
} known[KNOWN_NODES];
static atomic_flag known_lock = ATOMIC_FLAG_INIT;
static uint64_t known_clock;

static void known_acquire(void)
{
    while (atomic_flag_test_and_set_explicit(&known_lock, memory_order_acquire)) {
    }
}

static void known_release(void)
{
    atomic_flag_clear_explicit(&known_lock, memory_order_release);
}

static void known_put(const char *scope, const char *node, const char *addr)
{
    if (scope[0] == '\0' || node[0] == '\0' || strlen(addr) >= TENSORD_ADDR_MAX) {
        return;
    }
    known_acquire();
    int slot = 0;
    for (int i = 0; i < KNOWN_NODES; i++) {
        if (known[i].used != 0 && strcmp(known[i].scope, scope) == 0 &&
            strcmp(known[i].node, node) == 0) {
            slot = i;
            break;
        }
        if (known[i].used < known[slot].used) {
            slot = i;
        }
    }
    snprintf(known[slot].scope, sizeof known[slot].scope, "%s", scope);
    snprintf(known[slot].node, sizeof known[slot].node, "%s", node);
    snprintf(known[slot].addr, sizeof known[slot].addr, "%s", addr);
    known[slot].used = ++known_clock;
    known_release();
}

static bool known_get(const char *scope, const char *node, char addr[TENSORD_ADDR_MAX])
{
    bool found = false;
    if (scope[0] == '\0') {
        return false;
    }
    known_acquire();
    for (int i = 0; i < KNOWN_NODES && !found; i++) {
        if (known[i].used != 0 && strcmp(known[i].scope, scope) == 0 &&
            strcmp(known[i].node, node) == 0) {
            memcpy(addr, known[i].addr, TENSORD_ADDR_MAX);
            found = true;
        }
    }
    known_release();
    return found;
}

/* Appends "; what" (or "what" first) to a bounded message. */
static void note(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void note(char *buf, size_t cap, const char *fmt, ...)
{
    size_t len = strlen(buf);
    if (len + 3 >= cap) {
        return;
    }
    if (len > 0) {
        memcpy(buf + len, "; ", 3);
        len += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + len, cap - len, fmt, ap);
    va_end(ap);
}

/* One Hello at one address: a new session (tok NULL) or a resume. On success *out is the
** connection. A refusal returns the server's code, and its Status's node/address in *red. */
static int hello_at(struct tensord **out, const char *scope, const char *addr,
                    const struct tensord_options *opts, const uint8_t *tok, size_t toklen,
                    struct redirect *red, struct tensord_error *err)
{
    *out = NULL;
    memset(red, 0, sizeof *red);
    clear_err(err);
    struct tensord *c = calloc(1, sizeof *c);
    if (c == NULL || (c->rbuf = malloc(READ_BUF)) == NULL) {
        free(c);
        return set_err(err, TENSORD_E_NOMEM, "out of memory");
    }
    c->next_id = 1;
    c->next_handle = 1;
    snprintf(c->addr, sizeof c->addr, "%s", addr);
    int fd = dial(addr, err);
    if (fd < 0) {
        free(c->rbuf);
        free(c);
        return -fd;
    }
    c->fd = fd;
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Hello m = TENSORD__HELLO__INIT;
    m.min_version = 1;
    m.max_version = 1;
    m.auth_token = (char *)(opts != NULL && opts->auth_token != NULL ? opts->auth_token : "");
    m.client_name = (char *)(opts != NULL && opts->client_name != NULL ? opts->client_name
                                                                       : "libtensord");
    if (tok != NULL) {
        m.session_token.data = (uint8_t *)tok;
        m.session_token.len = toklen;
    }
    req.body_case = TENSORD__REQUEST__BODY_HELLO;
    req.hello = &m;
    struct pending p = {.want = WANT_HELLO};
    int rc = roundtrip(c, &req, &p, NULL, err);
    if (rc != 0) {
        *red = c->red;
        tensord_disconnect(c);
        return rc;
    }
    if (c->resumed) {
        c->next_handle = resumed_handle_base();
    }
    known_put(scope, c->node, addr);
    *out = c;
    return 0;
}

static bool unreachable(int rc)
{
    return rc == TENSORD_E_CONNECT || rc == TENSORD_E_IO;
}

/* A new session: round-robin over the list, NODE_FULL's peer followed once per entry. */
static int connect_new(struct tensord **out, const struct addr_list *l,
                       const struct tensord_options *opts, struct tensord_error *err)
{
    char why[sizeof err->message] = "";
    struct tensord_error e;
    struct redirect red;
    bool all_full = true;
    uint64_t start = rr_take(true);
    for (int k = 0; k < l->n; k++) {
        const char *a = l->a[(start + (uint64_t)k) % (uint64_t)l->n];
        int rc = hello_at(out, l->scope, a, opts, NULL, 0, &red, &e);
        if (rc == 0) {
            return 0;
        }
        if (l->n == 1 && rc != TENSORD_NODE_FULL) {
            return set_err(err, rc, "%s", e.message); /* one address: its error as it is */
        }
        if (rc == TENSORD_NODE_FULL) {
            bool peer = !red.bad && red.addr[0] != '\0' && strcmp(red.addr, a) != 0;
            if (l->n == 1 && !peer) {
                return set_err(err, rc, "%s", e.message); /* one address: as it is */
            }
            note(why, sizeof why, "%s: %s", a, e.message);
            if (peer) {
                struct redirect to = red; /* hello_at overwrites red */
                rc = hello_at(out, l->scope, to.addr, opts, NULL, 0, &red, &e);
                if (rc == 0) {
                    return 0;
                }
                note(why, sizeof why, "its peer %s at %s: %s", to.node[0] ? to.node : "?", to.addr,
                     e.message);
                all_full = all_full && rc == TENSORD_NODE_FULL;
                if (rc != TENSORD_NODE_FULL && !unreachable(rc)) {
                    return set_err(err, rc, "%s", e.message);
                }
            }
        } else if (unreachable(rc)) {
            all_full = false;
            note(why, sizeof why, "%s", e.message);
        } else {
            return set_err(err, rc, "%s: %s", a, e.message); /* e.g. a wrong auth token */
        }
    }
    return set_err(err, all_full ? TENSORD_NODE_FULL : TENSORD_E_CONNECT,
                   "no node opened a new session: %s", why);
}

/* A resume: ask the listed nodes in turn until one leads to the owner; follow MOVED. */
static int connect_resume(struct tensord **out, const struct addr_list *l,
                          const struct tensord_options *opts, const uint8_t *tok, size_t toklen,
                          const char *owner, struct tensord_error *err)
{
    char why[sizeof err->message] = "";
    struct tensord_error e;
    struct redirect red;
    uint64_t start = rr_take(false);
    int last = TENSORD_E_CONNECT;
    /* Given a list, the address the owner was last reached at goes first (one address given
    ** is asked as told); if it fails, the list is asked. */
    char cached[TENSORD_ADDR_MAX];
    int extra = l->n > 1 && owner[0] != '\0' && known_get(l->scope, owner, cached) ? 1 : 0;
    for (int k = -extra; k < l->n; k++) {
        const char *first = k < 0 ? cached : l->a[(start + (uint64_t)k) % (uint64_t)l->n];
        if (k >= 0 && extra && strcmp(first, cached) == 0) {
            continue; /* asked already */
        }
        char target[TENSORD_ADDR_MAX], chain[sizeof err->message], named[TENSORD_NODE_MAX];
        snprintf(target, sizeof target, "%s", first);
        snprintf(chain, sizeof chain, "%s", first);
        for (int hops = 0;; hops++) {
            int rc = hello_at(out, l->scope, target, opts, tok, toklen, &red, &e);
            if (rc == 0) {
                return 0;
            }
            if (rc == TENSORD_MOVED) {
                if (red.bad || red.node[0] == '\0' || red.addr[0] == '\0') {
                    return set_err(err, TENSORD_E_PROTOCOL,
                                   "%s answered MOVED without a well-formed node id and address "
                                   "(not followed)",
                                   target);
                }
                size_t cl = strlen(chain);
                snprintf(chain + cl, sizeof chain - cl, " -> %s", red.node);
                if (hops + 1 > TENSORD_MAX_REDIRECTS) {
                    return set_err(err, TENSORD_MOVED,
                                   "gave up after %d redirects resuming the session: %s",
                                   TENSORD_MAX_REDIRECTS, chain);
                }
                snprintf(target, sizeof target, "%s", red.addr);
                snprintf(named, sizeof named, "%s", red.node);
                known_put(l->scope, red.node, red.addr);
                continue;
            }
            if (unreachable(rc) && hops > 0) {
                /* the owner itself, named by a MOVED: nobody else holds the session */
                return set_err(err, TENSORD_E_CONNECT, "node %s at %s is unreachable: %s", named,
                               target, e.message);
            }
            bool next = unreachable(rc) || rc == TENSORD_UNKNOWN_NODE ||
                        (rc == TENSORD_UNKNOWN_SESSION && owner[0] == '\0' && l->n > 1);
            if (!next || l->n == 1) {
                if (unreachable(rc) && owner[0] != '\0') {
                    return set_err(err, rc, "cannot resume the session of node %s: %s", owner,
                                   e.message);
                }
                return set_err(err, rc, "%s", e.message);
            }
            last = rc;
            note(why, sizeof why, "%s: %s", target, e.message);
            break;
        }
    }
    if (owner[0] != '\0') {
        return set_err(err, last, "cannot reach node %s, which owns the session: %s", owner, why);
    }
    return set_err(err, last, "no listed node resumed the session: %s", why);
}

int tensord_connect(struct tensord **out, const char *addr, const struct tensord_options *opts,
                    struct tensord_error *err)
{
    clear_err(err);
    *out = NULL;
    uint8_t tok[TENSORD_TOKEN_MAX];
    char owner[TENSORD_NODE_MAX] = "";
    size_t toklen = 0;
    if (opts != NULL && opts->session_token != NULL &&
        (toklen = token_to_wire(opts->session_token, tok, owner)) == 0) {
        return set_err(err, TENSORD_E_USAGE,
                       "malformed session token '%.100s' (want <node id>.<32 hex digits>, or "
                       "the 32 hex digits of a token from before scale-out)",
                       opts->session_token);
    }
    struct addr_list *l = malloc(sizeof *l);
    if (l == NULL) {
        return set_err(err, TENSORD_E_NOMEM, "out of memory");
    }
    int rc = parse_addrs(l, addr, err);
    if (rc == 0) {
        size_t sl = strlen(addr); /* parse_addrs bounded it */
        if (sl < sizeof l->scope) {
            memcpy(l->scope, addr, sl + 1);
        } else {
            l->scope[0] = '\0';
        }
        rc = toklen == 0 ? connect_new(out, l, opts, err)
                         : connect_resume(out, l, opts, tok, toklen, owner, err);
    }
    free(l);
    return rc;
}

void tensord_disconnect(struct tensord *c)
{
    if (c == NULL) {
        return;
    }
    close(c->fd);
    for (size_t i = 0; i < c->pend_len; i++) {
        free(c->pend[(c->pend_head + i) & (c->pend_cap - 1)].message);
    }
    free(c->pend);
    free(c->segs);
    free(c->out);
    free(c->rbuf);
    free(c->part.heap);
    free(c);
}

/* ---- building requests ---- */

static int check_shape(const int64_t *shape, int ndim, struct tensord_error *err)
{
    if (ndim < 0 || ndim > TENSORD_MAX_DIMS || (ndim > 0 && shape == NULL)) {
        return set_err(err, TENSORD_E_USAGE, "ndim %d is outside 0..%d, or shape is NULL", ndim,
                       TENSORD_MAX_DIMS);
    }
    return 0;
}

static int to_scalar(struct tensord_operand o, Tensord__Scalar *s, struct tensord_error *err)
{
    tensord__scalar__init(s);
    switch (o.kind) {
    case TENSORD_OPERAND_FLOAT:
        s->value_case = TENSORD__SCALAR__VALUE_F;
        s->f = o.f;
        return 0;
    case TENSORD_OPERAND_INT:
        s->value_case = TENSORD__SCALAR__VALUE_I;
        s->i = o.i;
        return 0;
    case TENSORD_OPERAND_BOOL:
        s->value_case = TENSORD__SCALAR__VALUE_B;
        s->b = o.b;
        return 0;
    case TENSORD_OPERAND_HANDLE: break;
    }
    return set_err(err, TENSORD_E_USAGE, "a number is needed here, not a handle");
}

int tensord_send_create(struct tensord *c, uint64_t out, enum tensord_dtype dtype,
                        const int64_t *shape, int ndim, const void *data, size_t nbytes,
                        uint64_t *id, struct tensord_error *err)
{
    int rc;
    if ((rc = check_shape(shape, ndim, err)) != 0) {
        return rc;
    }
    if (nbytes > 0 && data == NULL) {
        return set_err(err, TENSORD_E_USAGE, "%zu bytes of data at NULL", nbytes);
    }
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Create m = TENSORD__CREATE__INIT;
    m.out = out;
    m.dtype = (Tensord__DType)dtype;
    m.shape = (int64_t *)shape;
    m.n_shape = (size_t)ndim;
    req.body_case = TENSORD__REQUEST__BODY_CREATE;
    req.create = &m;
    struct pending p = {.want = WANT_TENSOR};
    return queue(c, &req, data, nbytes, &p, id, err);
}

int tensord_create(struct tensord *c, uint64_t out, enum tensord_dtype dtype, const int64_t *shape,
                   int ndim, const void *data, size_t nbytes, struct tensord_error *err)
{
    int rc;
    clear_err(err);
    if ((rc = busy(c, err)) != 0 ||
        (rc = tensord_send_create(c, out, dtype, shape, ndim, data, nbytes, NULL, err)) != 0) {
        return rc;
    }
    return complete(c, NULL, err);
}

int tensord_send_full(struct tensord *c, uint64_t out, enum tensord_dtype dtype,
                      const int64_t *shape, int ndim, struct tensord_operand value, uint64_t *id,
                      struct tensord_error *err)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Full m = TENSORD__FULL__INIT;
    Tensord__Scalar s;
    int rc;
    if ((rc = check_shape(shape, ndim, err)) != 0 || (rc = to_scalar(value, &s, err)) != 0) {
        return rc;
    }
    m.out = out;
    m.dtype = (Tensord__DType)dtype;
    m.shape = (int64_t *)shape;
    m.n_shape = (size_t)ndim;
    m.value = &s;
    req.body_case = TENSORD__REQUEST__BODY_FULL;
    req.full = &m;
    struct pending p = {.want = WANT_TENSOR};
    return queue(c, &req, NULL, 0, &p, id, err);
}

int tensord_full(struct tensord *c, uint64_t out, enum tensord_dtype dtype, const int64_t *shape,
                 int ndim, struct tensord_operand value, struct tensord_error *err)
{
    int rc;
    clear_err(err);
    if ((rc = busy(c, err)) != 0 ||
        (rc = tensord_send_full(c, out, dtype, shape, ndim, value, NULL, err)) != 0) {
        return rc;
    }
    return complete(c, NULL, err);
}

int tensord_zeros(struct tensord *c, uint64_t out, enum tensord_dtype dtype, const int64_t *shape,
                  int ndim, struct tensord_error *err)
{
    return tensord_full(c, out, dtype != TENSORD_DTYPE_INFER ? dtype : TENSORD_FLOAT32, shape, ndim,
                        tensord_f(0.0), err);
}

int tensord_ones(struct tensord *c, uint64_t out, enum tensord_dtype dtype, const int64_t *shape,
                 int ndim, struct tensord_error *err)
{
    return tensord_full(c, out, dtype != TENSORD_DTYPE_INFER ? dtype : TENSORD_FLOAT32, shape, ndim,
                        tensord_f(1.0), err);
}

static int send_rand(struct tensord *c, uint64_t out, enum tensord_dtype dtype,
                     const int64_t *shape, int ndim, Tensord__Distribution dist, uint64_t gen,
                     uint64_t *id, struct tensord_error *err)
{
    int rc;
    if ((rc = check_shape(shape, ndim, err)) != 0) {
        return rc;
    }
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Rand m = TENSORD__RAND__INIT;
    m.out = out;
    m.dtype = (Tensord__DType)dtype;
    m.shape = (int64_t *)shape;
    m.n_shape = (size_t)ndim;
    m.distribution = dist;
    m.generator = gen;
    req.body_case = TENSORD__REQUEST__BODY_RAND;
    req.rand = &m;
    struct pending p = {.want = WANT_TENSOR};
    return queue(c, &req, NULL, 0, &p, id, err);
}

int tensord_send_rand(struct tensord *c, uint64_t out, enum tensord_dtype dtype,
                      const int64_t *shape, int ndim, uint64_t *id, struct tensord_error *err)
{
    return send_rand(c, out, dtype, shape, ndim, TENSORD__DISTRIBUTION__UNIFORM, 0, id, err);
}

int tensord_send_randn(struct tensord *c, uint64_t out, enum tensord_dtype dtype,
                       const int64_t *shape, int ndim, uint64_t *id, struct tensord_error *err)
{
    return send_rand(c, out, dtype, shape, ndim, TENSORD__DISTRIBUTION__NORMAL, 0, id, err);
}

int tensord_send_rand_gen(struct tensord *c, uint64_t out, enum tensord_dtype dtype,
                          const int64_t *shape, int ndim, bool normal, uint64_t generator,
                          uint64_t *id, struct tensord_error *err)
{
    return send_rand(c, out, dtype, shape, ndim,
                     normal ? TENSORD__DISTRIBUTION__NORMAL : TENSORD__DISTRIBUTION__UNIFORM,
                     generator, id, err);
}

int tensord_rand(struct tensord *c, uint64_t out, enum tensord_dtype dtype, const int64_t *shape,
                 int ndim, struct tensord_error *err)
{
    int rc;
    clear_err(err);
    if ((rc = busy(c, err)) != 0 ||
        (rc = tensord_send_rand(c, out, dtype, shape, ndim, NULL, err)) != 0) {
        return rc;
    }
    return complete(c, NULL, err);
}

int tensord_randn(struct tensord *c, uint64_t out, enum tensord_dtype dtype, const int64_t *shape,
                  int ndim, struct tensord_error *err)
{
    int rc;
    clear_err(err);
    if ((rc = busy(c, err)) != 0 ||
        (rc = tensord_send_randn(c, out, dtype, shape, ndim, NULL, err)) != 0) {
        return rc;
    }
    return complete(c, NULL, err);
}

int tensord_send_arange(struct tensord *c, uint64_t out, enum tensord_dtype dtype,
                        struct tensord_operand start, struct tensord_operand end,
                        struct tensord_operand step, uint64_t *id, struct tensord_error *err)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Arange m = TENSORD__ARANGE__INIT;
    Tensord__Scalar s0, s1, s2;
    int rc;
    if ((rc = to_scalar(start, &s0, err)) != 0 || (rc = to_scalar(end, &s1, err)) != 0 ||
        (rc = to_scalar(step, &s2, err)) != 0) {
        return rc;
    }
    m.out = out;
    m.dtype = (Tensord__DType)dtype;
    m.start = &s0;
    m.end = &s1;
    m.step = &s2;
    req.body_case = TENSORD__REQUEST__BODY_ARANGE;
    req.arange = &m;
    struct pending p = {.want = WANT_TENSOR};
    return queue(c, &req, NULL, 0, &p, id, err);
}

int tensord_arange(struct tensord *c, uint64_t out, enum tensord_dtype dtype,
                   struct tensord_operand start, struct tensord_operand end,
                   struct tensord_operand step, struct tensord_error *err)
{
    int rc;
    clear_err(err);
    if ((rc = busy(c, err)) != 0 ||
        (rc = tensord_send_arange(c, out, dtype, start, end, step, NULL, err)) != 0) {
        return rc;
    }
    return complete(c, NULL, err);
}

int tensord_send_manual_seed(struct tensord *c, uint64_t seed, uint64_t *id,
                             struct tensord_error *err)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__ManualSeed m = TENSORD__MANUAL_SEED__INIT;
    m.seed = seed;
    req.body_case = TENSORD__REQUEST__BODY_MANUAL_SEED;
    req.manual_seed = &m;
    struct pending p = {.want = WANT_NONE};
    return queue(c, &req, NULL, 0, &p, id, err);
}

int tensord_manual_seed(struct tensord *c, uint64_t seed, struct tensord_error *err)
{
    int rc;
    clear_err(err);
    if ((rc = busy(c, err)) != 0 || (rc = tensord_send_manual_seed(c, seed, NULL, err)) != 0) {
        return rc;
    }
    return complete(c, NULL, err);
}

#define MAX_INPUTS 64

/* The protobuf side of one RunOp; everything it points to lives here, so it can sit on the
** stack of the call that packs it. */
struct op_msg {
    Tensord__Request req;
    Tensord__RunOp m;
    Tensord__OpArgs args;
    Tensord__Scalar lim[5]; /* min, max, alpha, value, beta */
    Tensord__Operand ops[MAX_INPUTS];
    Tensord__Operand *ptrs[MAX_INPUTS];
    Tensord__Scalar sc[MAX_INPUTS];
};

static int build_args(struct op_msg *o, const struct tensord_op_args *a, struct tensord_error *err)
{
    int rc;
    if (a->ndims < 0 || a->ndims > TENSORD_MAX_DIMS) {
        return set_err(err, TENSORD_E_USAGE, "ndims %d is outside 0..%d", a->ndims,
                       TENSORD_MAX_DIMS);
    }
    tensord__op_args__init(&o->args);
    o->args.dims = (int64_t *)a->dims;
    o->args.n_dims = (size_t)a->ndims;
    o->args.has_dims = a->has_dims || a->ndims > 0;
    o->args.keepdim = a->keepdim;
    o->args.dim = a->dim;
    o->args.dim2 = a->dim2;
    o->args.has_dim = a->has_dim;
    o->args.start = a->start;
    o->args.end = a->end;
    o->args.step = a->step;
    if (a->has_min) {
        if ((rc = to_scalar(a->min, &o->lim[0], err)) != 0) {
            return rc;
        }
        o->args.min = &o->lim[0];
    }
    if (a->has_max) {
        if ((rc = to_scalar(a->max, &o->lim[1], err)) != 0) {
            return rc;
        }
        o->args.max = &o->lim[1];
    }
    o->args.dtype = (Tensord__DType)a->dtype;
    o->args.has_correction = a->has_correction;
    o->args.correction = a->correction;
    const bool has[3] = {a->has_alpha, a->has_value, a->has_beta};
    const struct tensord_operand *v[3] = {&a->alpha, &a->value, &a->beta};
    Tensord__Scalar **dst[3] = {&o->args.alpha, &o->args.value, &o->args.beta};
    for (int k = 0; k < 3; k++) {
        if (has[k]) {
            if ((rc = to_scalar(*v[k], &o->lim[2 + k], err)) != 0) {
                return rc;
            }
            *dst[k] = &o->lim[2 + k];
        }
    }
    o->args.rtol = a->rtol;
    o->args.atol = a->atol;
    o->args.equal_nan = a->equal_nan;
    o->args.decimals = a->decimals;
    if (a->equation != NULL) {
        o->args.equation = (char *)a->equation;
    }
    if (a->nshifts < 0 || a->nshifts > TENSORD_MAX_DIMS) {
        return set_err(err, TENSORD_E_USAGE, "nshifts %d is outside 0..%d", a->nshifts,
                       TENSORD_MAX_DIMS);
    }
    o->args.shifts = (int64_t *)a->shifts;
    o->args.n_shifts = (size_t)a->nshifts;
    if (a->rounding_mode != NULL) {
        o->args.rounding_mode = (char *)a->rounding_mode;
    }
    /* nn convolution and pooling */
    const int nl[5] = {a->nstride, a->npadding, a->ndilation, a->nkernel_size, a->noutput_size};
    for (int k = 0; k < 5; k++) {
        if (nl[k] < 0 || nl[k] > TENSORD_MAX_DIMS) {
            return set_err(err, TENSORD_E_USAGE, "a size list of %d values is outside 0..%d", nl[k],
                           TENSORD_MAX_DIMS);
        }
    }
    o->args.stride = (int64_t *)a->stride;
    o->args.n_stride = (size_t)a->nstride;
    o->args.padding = (int64_t *)a->padding;
    o->args.n_padding = (size_t)a->npadding;
    o->args.dilation = (int64_t *)a->dilation;
    o->args.n_dilation = (size_t)a->ndilation;
    o->args.kernel_size = (int64_t *)a->kernel_size;
    o->args.n_kernel_size = (size_t)a->nkernel_size;
    o->args.output_size = (int64_t *)a->output_size;
    o->args.n_output_size = (size_t)a->noutput_size;
    o->args.groups = a->groups;
    if (a->padding_mode != NULL) {
        o->args.padding_mode = (char *)a->padding_mode;
    }
    o->args.ceil_mode = a->ceil_mode;
    o->args.count_include_pad = a->count_include_pad;
    o->args.divisor_override = a->divisor_override;
    o->m.args = &o->args;
    o->m.out2 = a->out2;
    o->args.k = a->k;
    o->args.descending = a->descending;
    o->args.sorted = a->sorted;
    o->args.stable = a->stable;
    o->m.out3 = a->out3;
    o->args.index_mask = a->index_mask;
    o->args.accumulate = a->accumulate;
    o->args.generator = a->generator;
    o->args.num_samples = a->num_samples;
    o->args.replacement = a->replacement;
    return 0;
}

static int build_op(struct op_msg *o, const char *name, uint64_t out,
                    const struct tensord_operand *inputs, int nin,
                    const struct tensord_op_args *args, bool inplace, struct tensord_error *err)
{
    int rc;
    int code = tensord_op_code(name);
    tensord__request__init(&o->req);
    tensord__run_op__init(&o->m);
    if (code < 0) {
        return set_err(err, TENSORD_E_USAGE, "unknown op '%s'", name != NULL ? name : "(null)");
    }
    if (nin < 0 || nin > MAX_INPUTS || (nin > 0 && inputs == NULL)) {
        return set_err(err, TENSORD_E_USAGE, "%d inputs; an op takes 0..%d", nin, MAX_INPUTS);
    }
    for (int i = 0; i < nin; i++) {
        tensord__operand__init(&o->ops[i]);
        if (inputs[i].kind == TENSORD_OPERAND_HANDLE) {
            o->ops[i].value_case = TENSORD__OPERAND__VALUE_HANDLE;
            o->ops[i].handle = inputs[i].handle;
        } else {
            if ((rc = to_scalar(inputs[i], &o->sc[i], err)) != 0) {
                return rc;
            }
            o->ops[i].value_case = TENSORD__OPERAND__VALUE_SCALAR;
            o->ops[i].scalar = &o->sc[i];
        }
        o->ptrs[i] = &o->ops[i];
    }
    if (args != NULL && (rc = build_args(o, args, err)) != 0) {
        return rc;
    }
    o->m.out = out;
    o->m.op = (Tensord__Op)code;
    o->m.inputs = o->ptrs;
    o->m.n_inputs = (size_t)nin;
    o->m.inplace = inplace;
    o->req.body_case = TENSORD__REQUEST__BODY_RUN_OP;
    o->req.run_op = &o->m;
    return 0;
}

/* tensord_op_code with a one-entry cache per connection: a pipelining client sends the same op
** over and over, and the generated table's lookup is a binary search of string compares. */
static int op_code_cached(struct tensord *c, const char *name)
{
    if (name == NULL) {
        return -1;
    }
    size_t n = strnlen(name, sizeof c->op_name);
    if (n < sizeof c->op_name && c->op_name[0] != '\0' && memcmp(c->op_name, name, n + 1) == 0) {
        return c->op_code;
    }
    int code = tensord_op_code(name);
    if (code >= 0 && n < sizeof c->op_name) {
        memcpy(c->op_name, name, n + 1);
        c->op_code = code;
    }
    return code;
}

/* The common RunOp (no OpArgs, handle and scalar inputs) written by wire.c; 1 when this is not
** one (then build_op's protobuf-c path judges it, with its errors). */
static int send_op_fast(struct tensord *c, const char *name, uint64_t out,
                        const struct tensord_operand *inputs, int nin, bool inplace, uint64_t *id,
                        struct tensord_error *err)
{
    struct tdw_operand in[MAX_INPUTS];
    int code = op_code_cached(c, name);
    if (code < 0 || nin < 0 || nin > MAX_INPUTS || (nin > 0 && inputs == NULL)) {
        return 1;
    }
    for (int i = 0; i < nin; i++) {
        switch (inputs[i].kind) {
        case TENSORD_OPERAND_HANDLE:
            in[i].kind = TDW_HANDLE;
            in[i].v.handle = inputs[i].handle;
            break;
        case TENSORD_OPERAND_FLOAT:
            in[i].kind = TDW_FLOAT;
            in[i].v.f = inputs[i].f;
            break;
        case TENSORD_OPERAND_INT:
            in[i].kind = TDW_INT;
            in[i].v.i = inputs[i].i;
            break;
        case TENSORD_OPERAND_BOOL:
            in[i].kind = TDW_BOOL;
            in[i].v.b = inputs[i].b;
            break;
        default: return 1;
        }
    }
    struct tdw_request w = {.body = TDW_RUN_OP};
    w.u.run_op.out = out;
    w.u.run_op.op = code;
    w.u.run_op.inputs = in;
    w.u.run_op.n_inputs = (size_t)nin;
    w.u.run_op.inplace = inplace;
    struct pending p = {.want = WANT_TENSOR};
    return queue_req(c, NULL, &w, NULL, 0, &p, id, err);
}

int tensord_send_op_ex(struct tensord *c, const char *name, uint64_t out,
                       const struct tensord_operand *inputs, int nin,
                       const struct tensord_op_args *args, bool inplace, uint64_t *id,
                       struct tensord_error *err)
{
    if (args == NULL) {
        int rc = send_op_fast(c, name, out, inputs, nin, inplace, id, err);
        if (rc != 1) {
            return rc;
        }
    }
    struct op_msg o;
    int rc = build_op(&o, name, out, inputs, nin, args, inplace, err);
    struct pending p = {.want = WANT_TENSOR};
    return rc != 0 ? rc : queue(c, &o.req, NULL, 0, &p, id, err);
}

int tensord_send_op(struct tensord *c, const char *name, uint64_t out,
                    const struct tensord_operand *inputs, int nin, bool inplace, uint64_t *id,
                    struct tensord_error *err)
{
    return tensord_send_op_ex(c, name, out, inputs, nin, NULL, inplace, id, err);
}

int tensord_op_ex(struct tensord *c, const char *name, uint64_t out,
                  const struct tensord_operand *inputs, int nin, const struct tensord_op_args *args,
                  bool inplace, struct tensord_info *info, struct tensord_error *err)
{
    int rc;
    clear_err(err);
    if ((rc = busy(c, err)) != 0 ||
        (rc = tensord_send_op_ex(c, name, out, inputs, nin, args, inplace, NULL, err)) != 0) {
        return rc;
    }
    return complete(c, info, err);
}

int tensord_op(struct tensord *c, const char *name, uint64_t out,
               const struct tensord_operand *inputs, int nin, bool inplace,
               struct tensord_info *info, struct tensord_error *err)
{
    return tensord_op_ex(c, name, out, inputs, nin, NULL, inplace, info, err);
}

static int send_get(struct tensord *c, uint64_t handle, bool meta_only, uint64_t offset,
                    uint64_t length, void *buf, size_t cap, uint64_t *id, struct tensord_error *err)
{
    struct tdw_request w = {.body = TDW_GET};
    w.u.get.handle = handle;
    w.u.get.meta_only = meta_only;
    w.u.get.offset = offset;
    w.u.get.length = length;
    struct pending p = {.want = WANT_TENSOR,
                        .get_data = !meta_only,
                        .get_offset = offset,
                        .get_length = length,
                        .buf = buf,
                        .cap = cap};
    return queue_req(c, NULL, &w, NULL, 0, &p, id, err);
}

int tensord_send_get(struct tensord *c, uint64_t handle, void *buf, size_t cap, uint64_t *id,
                     struct tensord_error *err)
{
    return send_get(c, handle, buf == NULL, 0, 0, buf, cap, id, err);
}

int tensord_send_get_range(struct tensord *c, uint64_t handle, uint64_t offset, uint64_t length,
                           void *buf, uint64_t *id, struct tensord_error *err)
{
    if (length == 0 || length > SIZE_MAX || buf == NULL) {
        return set_err(err, TENSORD_E_USAGE, "a range needs a length and a buffer");
    }
    return send_get(c, handle, false, offset, length, buf, (size_t)length, id, err);
}

int tensord_get(struct tensord *c, uint64_t handle, struct tensord_info *info, void *buf,
                size_t cap, struct tensord_error *err)
{
    int rc;
    clear_err(err);
    if ((rc = busy(c, err)) != 0 || (rc = tensord_send_get(c, handle, buf, cap, NULL, err)) != 0) {
        return rc;
    }
    return complete(c, info, err);
}

int tensord_get_meta(struct tensord *c, uint64_t handle, struct tensord_info *info,
                     struct tensord_error *err)
{
    return tensord_get(c, handle, info, NULL, 0, err);
}

int tensord_get_range(struct tensord *c, uint64_t handle, uint64_t offset, uint64_t length,
                      void *buf, struct tensord_info *info, struct tensord_error *err)
{
    int rc;
    clear_err(err);
    if ((rc = busy(c, err)) != 0 ||
        (rc = tensord_send_get_range(c, handle, offset, length, buf, NULL, err)) != 0) {
        return rc;
    }
    return complete(c, info, err);
}

int tensord_format(struct tensord *c, uint64_t handle, char *buf, size_t cap,
                   struct tensord_error *err)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Format m = TENSORD__FORMAT__INIT;
    m.handle = handle;
    req.body_case = TENSORD__REQUEST__BODY_FORMAT;
    req.format = &m;
    struct pending p = {.want = WANT_TEXT, .buf = buf, .cap = cap};
    if (buf != NULL && cap > 0) {
        buf[0] = '\0';
    }
    return roundtrip(c, &req, &p, NULL, err);
}

int tensord_send_free(struct tensord *c, const uint64_t *handles, size_t n, uint64_t *id,
                      struct tensord_error *err)
{
    if (n > 0 && handles == NULL) {
        return set_err(err, TENSORD_E_USAGE, "%zu handles at NULL", n);
    }
    struct tdw_request w = {.body = TDW_FREE};
    w.u.free.handles = handles;
    w.u.free.n_handles = n;
    struct pending p = {.want = WANT_NONE};
    return queue_req(c, NULL, &w, NULL, 0, &p, id, err);
}

int tensord_free(struct tensord *c, const uint64_t *handles, size_t n, struct tensord_error *err)
{
    int rc;
    clear_err(err);
    if ((rc = busy(c, err)) != 0 || (rc = tensord_send_free(c, handles, n, NULL, err)) != 0) {
        return rc;
    }
    return complete(c, NULL, err);
}

int tensord_send_ping(struct tensord *c, uint64_t *id, struct tensord_error *err)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Ping m = TENSORD__PING__INIT;
    req.body_case = TENSORD__REQUEST__BODY_PING;
    req.ping = &m;
    struct pending p = {.want = WANT_NONE};
    return queue(c, &req, NULL, 0, &p, id, err);
}

int tensord_ping(struct tensord *c, struct tensord_error *err)
{
    int rc;
    clear_err(err);
    if ((rc = busy(c, err)) != 0 || (rc = tensord_send_ping(c, NULL, err)) != 0) {
        return rc;
    }
    return complete(c, NULL, err);
}

int tensord_stats(struct tensord *c, struct tensord_stats *st, struct tensord_error *err)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Stats m = TENSORD__STATS__INIT;
    req.body_case = TENSORD__REQUEST__BODY_STATS;
    req.stats = &m;
    struct pending p = {.want = WANT_STATS, .stats = st};
    return roundtrip(c, &req, &p, NULL, err);
}

int tensord_close_session(struct tensord *c, struct tensord_error *err)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__CloseSession m = TENSORD__CLOSE_SESSION__INIT;
    req.body_case = TENSORD__REQUEST__BODY_CLOSE_SESSION;
    req.close_session = &m;
    struct pending p = {.want = WANT_NONE};
    return roundtrip(c, &req, &p, NULL, err);
}

/* ---- named tensors ---- */

int tensord_send_set_name(struct tensord *c, const char *name, uint64_t handle, uint64_t *id,
                          struct tensord_error *err)
{
    if (name == NULL) {
        return set_err(err, TENSORD_E_USAGE, "the name is NULL");
    }
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__SetName m = TENSORD__SET_NAME__INIT;
    m.name = (char *)name;
    m.handle = handle;
    req.body_case = TENSORD__REQUEST__BODY_SET_NAME;
    req.set_name = &m;
    struct pending p = {.want = WANT_NONE};
    return queue(c, &req, NULL, 0, &p, id, err);
}

int tensord_set_name(struct tensord *c, const char *name, uint64_t handle,
                     struct tensord_error *err)
{
    int rc;
    clear_err(err);
    if ((rc = busy(c, err)) != 0 || (rc = tensord_send_set_name(c, name, handle, NULL, err)) != 0) {
        return rc;
    }
    return complete(c, NULL, err);
}

int tensord_send_get_name(struct tensord *c, const char *name, uint64_t out, uint64_t *id,
                          struct tensord_error *err)
{
    if (name == NULL) {
        return set_err(err, TENSORD_E_USAGE, "the name is NULL");
    }
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__GetName m = TENSORD__GET_NAME__INIT;
    m.name = (char *)name;
    m.out = out;
    req.body_case = TENSORD__REQUEST__BODY_GET_NAME;
    req.get_name = &m;
    struct pending p = {.want = WANT_TENSOR};
    return queue(c, &req, NULL, 0, &p, id, err);
}

int tensord_get_name(struct tensord *c, const char *name, uint64_t out, struct tensord_info *info,
                     struct tensord_error *err)
{
    int rc;
    clear_err(err);
    if ((rc = busy(c, err)) != 0 || (rc = tensord_send_get_name(c, name, out, NULL, err)) != 0) {
        return rc;
    }
    return complete(c, info, err);
}

int tensord_send_del_name(struct tensord *c, const char *name, uint64_t *id,
                          struct tensord_error *err)
{
    if (name == NULL) {
        return set_err(err, TENSORD_E_USAGE, "the name is NULL");
    }
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__DelName m = TENSORD__DEL_NAME__INIT;
    m.name = (char *)name;
    req.body_case = TENSORD__REQUEST__BODY_DEL_NAME;
    req.del_name = &m;
    struct pending p = {.want = WANT_NONE};
    return queue(c, &req, NULL, 0, &p, id, err);
}

int tensord_del_name(struct tensord *c, const char *name, struct tensord_error *err)
{
    int rc;
    clear_err(err);
    if ((rc = busy(c, err)) != 0 || (rc = tensord_send_del_name(c, name, NULL, err)) != 0) {
        return rc;
    }
    return complete(c, NULL, err);
}

int tensord_list_names(struct tensord *c, tensord_name_fn *fn, void *arg, size_t *count,
                       struct tensord_error *err)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__ListNames m = TENSORD__LIST_NAMES__INIT;
    req.body_case = TENSORD__REQUEST__BODY_LIST_NAMES;
    req.list_names = &m;
    if (count != NULL) {
        *count = 0;
    }
    struct pending p = {.want = WANT_NAMES, .names_fn = fn, .names_arg = arg, .names_count = count};
    return roundtrip(c, &req, &p, NULL, err);
}

/* ---- autograd ---- */

int tensord_send_backward(struct tensord *c, uint64_t handle, uint64_t gradient, bool retain_graph,
                          uint64_t *id, struct tensord_error *err)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Backward m = TENSORD__BACKWARD__INIT;
    m.handle = handle;
    m.gradient = gradient;
    m.retain_graph = retain_graph;
    req.body_case = TENSORD__REQUEST__BODY_BACKWARD;
    req.backward = &m;
    struct pending p = {.want = WANT_NONE};
    return queue(c, &req, NULL, 0, &p, id, err);
}

int tensord_send_grad(struct tensord *c, uint64_t handle, uint64_t out, uint64_t *id,
                      struct tensord_error *err)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Grad m = TENSORD__GRAD__INIT;
    m.handle = handle;
    m.out = out;
    req.body_case = TENSORD__REQUEST__BODY_GRAD;
    req.grad = &m;
    struct pending p = {.want = WANT_MAYBE_TENSOR};
    return queue(c, &req, NULL, 0, &p, id, err);
}

int tensord_send_set_grad(struct tensord *c, uint64_t handle, bool requires_grad, bool clear_grad,
                          bool retain_grad, uint64_t *id, struct tensord_error *err)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__SetGrad m = TENSORD__SET_GRAD__INIT;
    m.handle = handle;
    m.requires_grad = requires_grad;
    m.clear_grad = clear_grad;
    m.retain_grad = retain_grad;
    req.body_case = TENSORD__REQUEST__BODY_SET_GRAD;
    req.set_grad = &m;
    struct pending p = {.want = WANT_NONE};
    return queue(c, &req, NULL, 0, &p, id, err);
}

int tensord_send_set_grad_enabled(struct tensord *c, bool enabled, uint64_t *id,
                                  struct tensord_error *err)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__SetGradEnabled m = TENSORD__SET_GRAD_ENABLED__INIT;
    m.enabled = enabled;
    req.body_case = TENSORD__REQUEST__BODY_SET_GRAD_ENABLED;
    req.set_grad_enabled = &m;
    struct pending p = {.want = WANT_NONE};
    return queue(c, &req, NULL, 0, &p, id, err);
}
