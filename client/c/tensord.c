/* client/c/tensord.c — libtensord: framing, Hello, blocking calls and pipelining over a socket.
**
** Requests are packed into `out`, one frame after another, and written by tensord_flush with as
** few writes as the kernel allows. Each queued request leaves a record in the pending FIFO (its
** id, what kind of reply it expects, and for Gets the caller's buffer), and tensord_recv reads
** the replies in that order: header, protobuf section, then the data section straight into the
** caller's buffer. Every reply is checked (lengths, id, data size) before it is believed.
*/
#include "tensord.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "proto/tensord.pb-c.h"

#define READ_BUF 65536
#define MAX_REPLY_META (16u << 20)

struct pending {
    uint64_t id;
    void *buf;        /* Get: where the bytes go */
    size_t cap;
    char *text;       /* Format: where the text goes */
    size_t text_cap;
};

struct tensord {
    int fd;
    uint8_t token[TENSORD_TOKEN_BYTES];
    bool resumed;
    char server_version[64];
    uint64_t next_id;
    uint64_t next_handle;
    /* queued request bytes */
    uint8_t *out;
    size_t out_len, out_cap;
    /* replies expected, in order */
    struct pending *pend;
    size_t pend_head, pend_len, pend_cap;
    /* buffered reader */
    uint8_t *rbuf;
    size_t rpos, rlen;
    char message[256];
};

static int set_err(struct tensord_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

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

static void clear_err(struct tensord_error *err)
{
    if (err != NULL) {
        err->code = 0;
        err->message[0] = '\0';
    }
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
    case TENSORD_FLOAT32: case TENSORD_INT32: return 4;
    case TENSORD_FLOAT64: case TENSORD_INT64: return 8;
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

const uint8_t *tensord_session_token(const struct tensord *c)
{
    return c->token;
}

void tensord_session_token_hex(const struct tensord *c, char out[33])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < TENSORD_TOKEN_BYTES; i++) {
        out[2 * i] = hex[c->token[i] >> 4];
        out[2 * i + 1] = hex[c->token[i] & 15];
    }
    out[32] = '\0';
}

int tensord_token_from_hex(const char *hex, uint8_t out[TENSORD_TOKEN_BYTES])
{
    if (hex == NULL || strlen(hex) != 2 * TENSORD_TOKEN_BYTES) {
        return TENSORD_E_USAGE;
    }
    for (int i = 0; i < 2 * TENSORD_TOKEN_BYTES; i++) {
        char ch = hex[i];
        int v = ch >= '0' && ch <= '9' ? ch - '0'
              : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
              : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
        if (v < 0) {
            return TENSORD_E_USAGE;
        }
        if (i % 2 == 0) {
            out[i / 2] = (uint8_t)(v << 4);
        } else {
            out[i / 2] |= (uint8_t)v;
        }
    }
    return 0;
}

bool tensord_resumed(const struct tensord *c)
{
    return c->resumed;
}

const char *tensord_server_version(const struct tensord *c)
{
    return c->server_version;
}

uint64_t tensord_new_handle(struct tensord *c)
{
    return c->next_handle++;
}

size_t tensord_pending(const struct tensord *c)
{
    return c->pend_len;
}

/* ---- queueing frames ---- */



static int out_reserve(struct tensord *c, size_t more, struct tensord_error *err)
{
    if (c->out_len + more <= c->out_cap) {
        return 0;
    }
    size_t ncap = c->out_cap ? c->out_cap : 4096;
    while (ncap < c->out_len + more) {
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

static int pend_push(struct tensord *c, const struct pending *p, struct tensord_error *err)
{
    if (c->pend_len == c->pend_cap) {
        size_t ncap = c->pend_cap ? c->pend_cap * 2 : 64;
        struct pending *np = malloc(ncap * sizeof *np);
        if (np == NULL) {
            return set_err(err, TENSORD_E_NOMEM, "out of memory queueing a request");
        }
        for (size_t i = 0; i < c->pend_len; i++) {
            np[i] = c->pend[(c->pend_head + i) % (c->pend_cap ? c->pend_cap : 1)];
        }
        free(c->pend);
        c->pend = np;
        c->pend_head = 0;
        c->pend_cap = ncap;
    }
    c->pend[(c->pend_head + c->pend_len) % c->pend_cap] = *p;
    c->pend_len++;
    return 0;
}

static void put_header(uint8_t *dst, uint32_t meta_len, uint64_t data_len)
{
    for (int i = 0; i < 4; i++) {
        dst[i] = (uint8_t)(meta_len >> (24 - 8 * i));
    }
    for (int i = 0; i < 8; i++) {
        dst[4 + i] = (uint8_t)(data_len >> (56 - 8 * i));
    }
}

static int write_all(struct tensord *c, const void *buf, size_t n, struct tensord_error *err)
{
    const uint8_t *b = buf;
    while (n > 0) {
        ssize_t w = send(c->fd, b, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return set_err(err, TENSORD_E_IO, "write to server failed: %s", strerror(errno));
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

#define DIRECT_DATA_MIN (64 * 1024)

/* Packs req (its id assigned here) plus data into the queue and records the expected reply.
** A large data section is not copied: the queue is written, then the caller's bytes. */
static int queue(struct tensord *c, Tensord__Request *req, const void *data, size_t nbytes,
                 struct pending *p, uint64_t *id, struct tensord_error *err)
{
    req->id = c->next_id++;
    size_t ml = tensord__request__get_packed_size(req);
    bool direct = nbytes >= DIRECT_DATA_MIN;
    int rc;
    if ((rc = out_reserve(c, 12 + ml + (direct ? 0 : nbytes), err)) != 0) {
        return rc;
    }
    p->id = req->id;
    if ((rc = pend_push(c, p, err)) != 0) {
        return rc;
    }
    put_header(c->out + c->out_len, (uint32_t)ml, nbytes);
    tensord__request__pack(req, c->out + c->out_len + 12);
    c->out_len += 12 + ml;
    if (direct) {
        if ((rc = tensord_flush(c, err)) != 0 || (rc = write_all(c, data, nbytes, err)) != 0) {
            return rc;
        }
    } else if (nbytes > 0) {
        memcpy(c->out + c->out_len, data, nbytes);
        c->out_len += nbytes;
    }
    if (id != NULL) {
        *id = req->id;
    }
    return 0;
}

int tensord_flush(struct tensord *c, struct tensord_error *err)
{
    int rc = write_all(c, c->out, c->out_len, err);
    c->out_len = 0;
    return rc;
}

/* ---- reading replies ---- */

static int read_exact(struct tensord *c, void *dst, size_t n, struct tensord_error *err)
{
    uint8_t *d = dst;
    size_t have = c->rlen - c->rpos;
    if (have > 0) {
        size_t take = have < n ? have : n;
        if (d != NULL) {
            memcpy(d, c->rbuf + c->rpos, take);
            d += take;
        }
        c->rpos += take;
        n -= take;
    }
    while (n > 0) {
        ssize_t r;
        if (d != NULL && n >= READ_BUF / 2) {
            r = recv(c->fd, d, n, 0);  /* big data goes straight to the caller's buffer */
            if (r > 0) {
                d += r;
                n -= (size_t)r;
                continue;
            }
        } else {
            r = recv(c->fd, c->rbuf, READ_BUF, 0);
            if (r > 0) {
                c->rpos = 0;
                c->rlen = (size_t)r;
                size_t take = (size_t)r < n ? (size_t)r : n;
                if (d != NULL) {
                    memcpy(d, c->rbuf, take);
                    d += take;
                }
                c->rpos = take;
                n -= take;
                continue;
            }
        }
        if (r < 0 && errno == EINTR) {
            continue;
        }
        return set_err(err, TENSORD_E_IO, r == 0 ? "the server closed the connection"
                                                 : "read from server failed: %s",
                       strerror(errno));
    }
    return 0;
}

static void fill_info(struct tensord_info *info, const Tensord__TensorInfo *t)
{
    memset(info, 0, sizeof *info);
    info->handle = t->handle;
    info->dtype = (enum tensord_dtype)t->dtype;
    info->ndim = (int)(t->n_shape <= TENSORD_MAX_DIMS ? t->n_shape : TENSORD_MAX_DIMS);
    for (int i = 0; i < info->ndim; i++) {
        info->shape[i] = t->shape[i];
    }
    info->nbytes = t->nbytes;
    info->offset = t->offset;
    info->length = t->length;
}

/* Reads one reply; `hello` (may be NULL) receives a Hello result's fields. */
static int recv_one(struct tensord *c, struct tensord_reply *reply, Tensord__Response **keep,
                    struct tensord_error *err)
{
    int rc;
    if (c->pend_len == 0) {
        return set_err(err, TENSORD_E_USAGE, "no reply is pending");
    }
    if (c->out_len > 0 && (rc = tensord_flush(c, err)) != 0) {
        return rc;
    }
    struct pending p = c->pend[c->pend_head];
    c->pend_head = (c->pend_head + 1) % c->pend_cap;
    c->pend_len--;
    uint8_t h[12];
    if ((rc = read_exact(c, h, 12, err)) != 0) {
        return rc;
    }
    uint32_t ml = (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
    uint64_t dl = 0;
    for (int i = 0; i < 8; i++) {
        dl = dl << 8 | h[4 + i];
    }
    if (ml > MAX_REPLY_META) {
        return set_err(err, TENSORD_E_PROTOCOL, "reply header announces %u bytes", ml);
    }
    uint8_t *meta = malloc(ml ? ml : 1);
    if (meta == NULL) {
        return set_err(err, TENSORD_E_NOMEM, "out of memory reading a reply");
    }
    if ((rc = read_exact(c, meta, ml, err)) != 0) {
        free(meta);
        return rc;
    }
    Tensord__Response *resp = tensord__response__unpack(NULL, ml, meta);
    free(meta);
    if (resp == NULL) {
        return set_err(err, TENSORD_E_PROTOCOL, "malformed reply");
    }
    memset(reply, 0, sizeof *reply);
    reply->id = resp->id;
    reply->status = resp->status != NULL ? (int)resp->status->code : 0;
    snprintf(c->message, sizeof c->message, "%s",
             resp->status != NULL && resp->status->message ? resp->status->message : "");
    reply->message = c->message;
    /* A reply with id 0 answers a frame the server could not read; it still takes its turn. */
    if (resp->id != p.id && resp->id != 0) {
        tensord__response__free_unpacked(resp, NULL);
        return set_err(err, TENSORD_E_PROTOCOL, "reply for request %llu arrived when %llu was "
                       "expected", (unsigned long long)reply->id, (unsigned long long)p.id);
    }
    if (resp->result_case == TENSORD__RESPONSE__RESULT_TENSOR) {
        reply->has_info = true;
        fill_info(&reply->info, resp->tensor);
    }
    if (resp->result_case == TENSORD__RESPONSE__RESULT_TEXT && p.text != NULL && p.text_cap > 0) {
        snprintf(p.text, p.text_cap, "%s", resp->text);
    }
    rc = 0;
    if (dl > 0) {
        if (!reply->has_info || dl != reply->info.length) {
            rc = set_err(err, TENSORD_E_PROTOCOL, "reply carries %llu data bytes unannounced",
                         (unsigned long long)dl);
        } else if (p.buf == NULL || dl > p.cap) {
            /* Drain the bytes so the stream stays in step, then report. */
            rc = read_exact(c, NULL, (size_t)dl, err);
            if (rc == 0) {
                rc = set_err(err, TENSORD_E_BUFFER, "the tensor has %llu bytes; the buffer holds "
                             "%zu", (unsigned long long)dl, p.cap);
            }
        } else {
            rc = read_exact(c, p.buf, (size_t)dl, err);
        }
    }
    if (keep != NULL && rc == 0) {
        *keep = resp;
    } else {
        tensord__response__free_unpacked(resp, NULL);
    }
    return rc;
}

int tensord_recv(struct tensord *c, struct tensord_reply *reply, struct tensord_error *err)
{
    clear_err(err);
    return recv_one(c, reply, NULL, err);
}

/* Blocking calls need the reply stream to themselves. */
static int busy(const struct tensord *c, struct tensord_error *err)
{
    if (c->pend_len > 0) {
        return set_err(err, TENSORD_E_USAGE, "%zu pipelined replies are outstanding; collect "
                       "them with tensord_recv first", c->pend_len);
    }
    return 0;
}

/* Waits for the one queued request's reply and turns a refusal into the return value. With
** `keep`, the decoded reply is handed to the caller (on success only). */
static int complete(struct tensord *c, struct tensord_info *info, Tensord__Response **keep,
                    struct tensord_error *err)
{
    struct tensord_reply r;
    int rc;
    if ((rc = tensord_flush(c, err)) != 0 || (rc = recv_one(c, &r, keep, err)) != 0) {
        return rc;
    }
    if (r.status != 0) {
        if (keep != NULL && *keep != NULL) {
            tensord__response__free_unpacked(*keep, NULL);
            *keep = NULL;
        }
        return set_err(err, r.status, "%s", r.message);
    }
    if (info != NULL && r.has_info) {
        *info = r.info;
    }
    return 0;
}

/* Sends one request and waits for its reply. */
static int roundtrip(struct tensord *c, Tensord__Request *req, const void *data, size_t n,
                     struct pending *p, struct tensord_info *info, Tensord__Response **keep,
                     struct tensord_error *err)
{
    clear_err(err);
    int rc;
    if ((rc = busy(c, err)) != 0 || (rc = queue(c, req, data, n, p, NULL, err)) != 0) {
        return rc;
    }
    return complete(c, info, keep, err);
}

/* ---- connecting ---- */

static int dial(const char *addr, struct tensord_error *err)
{
    if (strncmp(addr, "unix:", 5) == 0) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(addr + 5) >= sizeof sa.sun_path) {
            return -set_err(err, TENSORD_E_CONNECT, "unix socket path too long: %s", addr + 5);
        }
        strcpy(sa.sun_path, addr + 5);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
            int e = errno;
            if (fd >= 0) {
                close(fd);
            }
            return -set_err(err, TENSORD_E_CONNECT, "cannot connect to %s: %s", addr, strerror(e));
        }
        return fd;
    }
    char host[256], port[16];
    const char *colon;
    if (addr[0] == '[') {
        const char *end = strchr(addr, ']');
        if (end == NULL || end[1] != ':' || (size_t)(end - addr - 1) >= sizeof host) {
            return -set_err(err, TENSORD_E_CONNECT, "bad address '%s' (want [v6]:port)", addr);
        }
        memcpy(host, addr + 1, (size_t)(end - addr - 1));
        host[end - addr - 1] = '\0';
        colon = end + 1;
    } else {
        colon = strrchr(addr, ':');
        if (colon == NULL || (size_t)(colon - addr) >= sizeof host) {
            return -set_err(err, TENSORD_E_CONNECT, "bad address '%s' (want host:port)", addr);
        }
        memcpy(host, addr, (size_t)(colon - addr));
        host[colon - addr] = '\0';
    }
    snprintf(port, sizeof port, "%s", colon + 1);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    int g = getaddrinfo(host, port, &hints, &res);
    if (g != 0) {
        return -set_err(err, TENSORD_E_CONNECT, "cannot resolve %s: %s", addr, gai_strerror(g));
    }
    int fd = -1, e = 0;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
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
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

int tensord_connect(struct tensord **out, const char *addr, const struct tensord_options *opts,
                    struct tensord_error *err)
{
    clear_err(err);
    struct tensord *c = calloc(1, sizeof *c);
    if (c == NULL || (c->rbuf = malloc(READ_BUF)) == NULL) {
        free(c);
        return set_err(err, TENSORD_E_NOMEM, "out of memory");
    }
    c->next_id = 1;
    c->next_handle = 1;
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
    m.client_name = (char *)(opts != NULL && opts->client_name ? opts->client_name : "libtensord");
    if (opts != NULL && opts->session_token != NULL) {
        m.session_token.data = (uint8_t *)opts->session_token;
        m.session_token.len = TENSORD_TOKEN_BYTES;
    }
    req.body_case = TENSORD__REQUEST__BODY_HELLO;
    req.hello = &m;
    struct pending p = {0};
    Tensord__Response *resp = NULL;
    int rc = roundtrip(c, &req, NULL, 0, &p, NULL, &resp, err);
    if (rc == 0 && (resp->result_case != TENSORD__RESPONSE__RESULT_HELLO ||
                    resp->hello->session_token.len != TENSORD_TOKEN_BYTES)) {
        rc = set_err(err, TENSORD_E_PROTOCOL, "the server's Hello reply has no session token");
    }
    if (rc != 0) {
        if (resp != NULL) {
            tensord__response__free_unpacked(resp, NULL);
        }
        tensord_disconnect(c);
        return rc;
    }
    memcpy(c->token, resp->hello->session_token.data, TENSORD_TOKEN_BYTES);
    c->resumed = resp->hello->resumed;
    snprintf(c->server_version, sizeof c->server_version, "%s",
             resp->hello->server_version ? resp->hello->server_version : "");
    tensord__response__free_unpacked(resp, NULL);
    *out = c;
    return 0;
}

void tensord_disconnect(struct tensord *c)
{
    if (c == NULL) {
        return;
    }
    close(c->fd);
    free(c->out);
    free(c->pend);
    free(c->rbuf);
    free(c);
}

/* ---- building requests ---- */

static int check_shape(int ndim, struct tensord_error *err)
{
    if (ndim < 0 || ndim > TENSORD_MAX_DIMS) {
        return set_err(err, TENSORD_E_USAGE, "ndim %d is outside 0..%d", ndim, TENSORD_MAX_DIMS);
    }
    return 0;
}

static int to_scalar(struct tensord_operand o, Tensord__Scalar *s, struct tensord_error *err)
{
    tensord__scalar__init(s);
    switch (o.kind) {
    case TENSORD_OPERAND_FLOAT: s->value_case = TENSORD__SCALAR__VALUE_F; s->f = o.f; return 0;
    case TENSORD_OPERAND_INT: s->value_case = TENSORD__SCALAR__VALUE_I; s->i = o.i; return 0;
    case TENSORD_OPERAND_BOOL: s->value_case = TENSORD__SCALAR__VALUE_B; s->b = o.b; return 0;
    default: return set_err(err, TENSORD_E_USAGE, "a number is needed here, not a handle");
    }
}

/* The wire op code for a PyTorch op name: "add" is OP_ADD in the protocol's Op enum, so the
** generated enum descriptor is the table and a new server op needs no client change. */
static int op_code(const char *name, struct tensord_error *err)
{
    char wire[64] = "OP_";
    size_t n = strlen(name);
    if (n == 0 || n + 4 > sizeof wire) {
        return -set_err(err, TENSORD_E_USAGE, "unknown op '%s'", name);
    }
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        wire[3 + i] = (char)(ch >= 'a' && ch <= 'z' ? ch - 32 : ch);
    }
    wire[3 + n] = '\0';
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value_by_name(&tensord__op__descriptor, wire);
    if (v == NULL || v->value == TENSORD__OP__OP_UNSPECIFIED) {
        return -set_err(err, TENSORD_E_USAGE, "unknown op '%s'", name);
    }
    return v->value;
}

int tensord_send_create(struct tensord *c, uint64_t out, enum tensord_dtype dtype,
                        const int64_t *shape, int ndim, const void *data, size_t nbytes,
                        uint64_t *id, struct tensord_error *err)
{
    int rc;
    if ((rc = check_shape(ndim, err)) != 0) {
        return rc;
    }
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Create m = TENSORD__CREATE__INIT;
    m.out = out;
    m.dtype = (Tensord__DType)dtype;
    m.shape = (int64_t *)shape;
    m.n_shape = (size_t)ndim;
    req.body_case = TENSORD__REQUEST__BODY_CREATE;
    req.create = &m;
    struct pending p = {0};
    return queue(c, &req, data, nbytes, &p, id, err);
}

int tensord_create(struct tensord *c, uint64_t out, enum tensord_dtype dtype,
                   const int64_t *shape, int ndim, const void *data, size_t nbytes,
                   struct tensord_error *err)
{
    int rc;
    clear_err(err);
    if ((rc = busy(c, err)) != 0 ||
        (rc = tensord_send_create(c, out, dtype, shape, ndim, data, nbytes, NULL, err)) != 0) {
        return rc;
    }
    return complete(c, NULL, NULL, err);
}

static int build_full(Tensord__Request *req, Tensord__Full *m, Tensord__Scalar *s, uint64_t out,
                      enum tensord_dtype dtype, const int64_t *shape, int ndim,
                      struct tensord_operand value, struct tensord_error *err)
{
    int rc;
    if ((rc = check_shape(ndim, err)) != 0 || (rc = to_scalar(value, s, err)) != 0) {
        return rc;
    }
    m->out = out;
    m->dtype = (Tensord__DType)dtype;
    m->shape = (int64_t *)shape;
    m->n_shape = (size_t)ndim;
    m->value = s;
    req->body_case = TENSORD__REQUEST__BODY_FULL;
    req->full = m;
    return 0;
}

int tensord_send_full(struct tensord *c, uint64_t out, enum tensord_dtype dtype,
                      const int64_t *shape, int ndim, struct tensord_operand value, uint64_t *id,
                      struct tensord_error *err)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Full m = TENSORD__FULL__INIT;
    Tensord__Scalar s;
    struct pending p = {0};
    int rc = build_full(&req, &m, &s, out, dtype, shape, ndim, value, err);
    return rc != 0 ? rc : queue(c, &req, NULL, 0, &p, id, err);
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
    return complete(c, NULL, NULL, err);
}

int tensord_zeros(struct tensord *c, uint64_t out, enum tensord_dtype dtype,
                  const int64_t *shape, int ndim, struct tensord_error *err)
{
    return tensord_full(c, out, dtype ? dtype : TENSORD_FLOAT32, shape, ndim, tensord_f(0.0),
                        err);
}

int tensord_ones(struct tensord *c, uint64_t out, enum tensord_dtype dtype, const int64_t *shape,
                 int ndim, struct tensord_error *err)
{
    return tensord_full(c, out, dtype ? dtype : TENSORD_FLOAT32, shape, ndim, tensord_f(1.0),
                        err);
}

static int rand_common(struct tensord *c, uint64_t out, enum tensord_dtype dtype,
                       const int64_t *shape, int ndim, Tensord__Distribution dist,
                       struct tensord_error *err)
{
    int rc;
    if ((rc = check_shape(ndim, err)) != 0) {
        return rc;
    }
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Rand m = TENSORD__RAND__INIT;
    m.out = out;
    m.dtype = (Tensord__DType)dtype;
    m.shape = (int64_t *)shape;
    m.n_shape = (size_t)ndim;
    m.distribution = dist;
    req.body_case = TENSORD__REQUEST__BODY_RAND;
    req.rand = &m;
    struct pending p = {0};
    return roundtrip(c, &req, NULL, 0, &p, NULL, NULL, err);
}

int tensord_rand(struct tensord *c, uint64_t out, enum tensord_dtype dtype, const int64_t *shape,
                 int ndim, struct tensord_error *err)
{
    return rand_common(c, out, dtype, shape, ndim, TENSORD__DISTRIBUTION__UNIFORM, err);
}

int tensord_randn(struct tensord *c, uint64_t out, enum tensord_dtype dtype,
                  const int64_t *shape, int ndim, struct tensord_error *err)
{
    return rand_common(c, out, dtype, shape, ndim, TENSORD__DISTRIBUTION__NORMAL, err);
}

int tensord_arange(struct tensord *c, uint64_t out, enum tensord_dtype dtype,
                   struct tensord_operand start, struct tensord_operand end,
                   struct tensord_operand step, struct tensord_error *err)
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
    struct pending p = {0};
    return roundtrip(c, &req, NULL, 0, &p, NULL, NULL, err);
}

int tensord_manual_seed(struct tensord *c, uint64_t seed, struct tensord_error *err)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__ManualSeed m = TENSORD__MANUAL_SEED__INIT;
    m.seed = seed;
    req.body_case = TENSORD__REQUEST__BODY_MANUAL_SEED;
    req.manual_seed = &m;
    struct pending p = {0};
    return roundtrip(c, &req, NULL, 0, &p, NULL, NULL, err);
}

#define MAX_INPUTS 64

/* Fills an op request; operands, scalars and args live in the caller's storage. */
static int build_op(Tensord__Request *req, Tensord__RunOp *m, Tensord__Operand *ops,
                    Tensord__Operand **ptrs, Tensord__Scalar *sc, Tensord__OpArgs *wa,
                    Tensord__Scalar *lim, const char *name, uint64_t out,
                    const struct tensord_operand *inputs, int nin,
                    const struct tensord_op_args *args, bool inplace, struct tensord_error *err)
{
    int code = op_code(name, err);
    if (code < 0) {
        return -code;
    }
    if (nin < 0 || nin > MAX_INPUTS || (nin > 0 && inputs == NULL)) {
        return set_err(err, TENSORD_E_USAGE, "bad input count %d", nin);
    }
    for (int i = 0; i < nin; i++) {
        tensord__operand__init(&ops[i]);
        if (inputs[i].kind == TENSORD_OPERAND_HANDLE) {
            ops[i].value_case = TENSORD__OPERAND__VALUE_HANDLE;
            ops[i].handle = inputs[i].handle;
        } else {
            int rc = to_scalar(inputs[i], &sc[i], err);
            if (rc != 0) {
                return rc;
            }
            ops[i].value_case = TENSORD__OPERAND__VALUE_SCALAR;
            ops[i].scalar = &sc[i];
        }
        ptrs[i] = &ops[i];
    }
    m->out = out;
    m->op = (Tensord__Op)code;
    m->inputs = ptrs;
    m->n_inputs = (size_t)nin;
    m->inplace = inplace;
    if (args != NULL) {
        int rc;
        if (args->ndims < 0 || args->ndims > TENSORD_MAX_DIMS) {
            return set_err(err, TENSORD_E_USAGE, "ndims %d is outside 0..%d", args->ndims,
                           TENSORD_MAX_DIMS);
        }
        tensord__op_args__init(wa);
        wa->dims = (int64_t *)args->dims;
        wa->n_dims = (size_t)args->ndims;
        wa->has_dims = args->has_dims || args->ndims > 0;
        wa->keepdim = args->keepdim;
        wa->dim = args->dim;
        wa->dim2 = args->dim2;
        wa->has_dim = args->has_dim;
        wa->start = args->start;
        wa->end = args->end;
        wa->step = args->step;
        if (args->has_min) {
            if ((rc = to_scalar(args->min, &lim[0], err)) != 0) {
                return rc;
            }
            wa->min = &lim[0];
        }
        if (args->has_max) {
            if ((rc = to_scalar(args->max, &lim[1], err)) != 0) {
                return rc;
            }
            wa->max = &lim[1];
        }
        wa->dtype = (Tensord__DType)args->dtype;
        wa->has_correction = args->has_correction;
        wa->correction = args->correction;
        m->args = wa;
        m->out2 = args->out2;
    }
    req->body_case = TENSORD__REQUEST__BODY_RUN_OP;
    req->run_op = m;
    return 0;
}

int tensord_send_op_ex(struct tensord *c, const char *name, uint64_t out,
                       const struct tensord_operand *inputs, int nin,
                       const struct tensord_op_args *args, bool inplace, uint64_t *id,
                       struct tensord_error *err)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__RunOp m = TENSORD__RUN_OP__INIT;
    Tensord__Operand ops[MAX_INPUTS], *ptrs[MAX_INPUTS];
    Tensord__Scalar sc[MAX_INPUTS], lim[2];
    Tensord__OpArgs wa;
    struct pending p = {0};
    int rc = build_op(&req, &m, ops, ptrs, sc, &wa, lim, name, out, inputs, nin, args, inplace,
                      err);
    return rc != 0 ? rc : queue(c, &req, NULL, 0, &p, id, err);
}

int tensord_send_op(struct tensord *c, const char *name, uint64_t out,
                    const struct tensord_operand *inputs, int nin, bool inplace, uint64_t *id,
                    struct tensord_error *err)
{
    return tensord_send_op_ex(c, name, out, inputs, nin, NULL, inplace, id, err);
}

int tensord_op_ex(struct tensord *c, const char *name, uint64_t out,
                  const struct tensord_operand *inputs, int nin,
                  const struct tensord_op_args *args, bool inplace, struct tensord_info *info,
                  struct tensord_error *err)
{
    int rc;
    clear_err(err);
    if ((rc = busy(c, err)) != 0 ||
        (rc = tensord_send_op_ex(c, name, out, inputs, nin, args, inplace, NULL, err)) != 0) {
        return rc;
    }
    return complete(c, info, NULL, err);
}

int tensord_op(struct tensord *c, const char *name, uint64_t out,
               const struct tensord_operand *inputs, int nin, bool inplace,
               struct tensord_info *info, struct tensord_error *err)
{
    return tensord_op_ex(c, name, out, inputs, nin, NULL, inplace, info, err);
}

static void build_get(Tensord__Request *req, Tensord__Get *m, uint64_t handle, bool meta_only,
                      uint64_t offset, uint64_t length)
{
    m->handle = handle;
    m->meta_only = meta_only;
    m->offset = offset;
    m->length = length;
    req->body_case = TENSORD__REQUEST__BODY_GET;
    req->get = m;
}

int tensord_send_get(struct tensord *c, uint64_t handle, void *buf, size_t cap, uint64_t *id,
                     struct tensord_error *err)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Get m = TENSORD__GET__INIT;
    build_get(&req, &m, handle, buf == NULL, 0, 0);
    struct pending p = {.buf = buf, .cap = cap};
    return queue(c, &req, NULL, 0, &p, id, err);
}

int tensord_get(struct tensord *c, uint64_t handle, struct tensord_info *info, void *buf,
                size_t cap, struct tensord_error *err)
{
    int rc;
    clear_err(err);
    if ((rc = busy(c, err)) != 0 || (rc = tensord_send_get(c, handle, buf, cap, NULL, err)) != 0) {
        return rc;
    }
    return complete(c, info, NULL, err);
}

int tensord_get_range(struct tensord *c, uint64_t handle, uint64_t offset, uint64_t length,
                      void *buf, struct tensord_info *info, struct tensord_error *err)
{
    if (length == 0) {
        return set_err(err, TENSORD_E_USAGE, "a range needs a length");
    }
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Get m = TENSORD__GET__INIT;
    build_get(&req, &m, handle, false, offset, length);
    struct pending p = {.buf = buf, .cap = (size_t)length};
    return roundtrip(c, &req, NULL, 0, &p, info, NULL, err);
}

int tensord_format(struct tensord *c, uint64_t handle, char *buf, size_t cap,
                   struct tensord_error *err)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Format m = TENSORD__FORMAT__INIT;
    m.handle = handle;
    req.body_case = TENSORD__REQUEST__BODY_FORMAT;
    req.format = &m;
    struct pending p = {.text = buf, .text_cap = cap};
    if (buf != NULL && cap > 0) {
        buf[0] = '\0';
    }
    return roundtrip(c, &req, NULL, 0, &p, NULL, NULL, err);
}

static void build_free(Tensord__Request *req, Tensord__Free *m, const uint64_t *handles, size_t n)
{
    m->handles = (uint64_t *)handles;
    m->n_handles = n;
    req->body_case = TENSORD__REQUEST__BODY_FREE;
    req->free = m;
}

int tensord_send_free(struct tensord *c, const uint64_t *handles, size_t n, uint64_t *id,
                      struct tensord_error *err)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Free m = TENSORD__FREE__INIT;
    build_free(&req, &m, handles, n);
    struct pending p = {0};
    return queue(c, &req, NULL, 0, &p, id, err);
}

int tensord_free(struct tensord *c, const uint64_t *handles, size_t n, struct tensord_error *err)
{
    int rc;
    clear_err(err);
    if ((rc = busy(c, err)) != 0 || (rc = tensord_send_free(c, handles, n, NULL, err)) != 0) {
        return rc;
    }
    return complete(c, NULL, NULL, err);
}

int tensord_send_ping(struct tensord *c, uint64_t *id, struct tensord_error *err)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Ping m = TENSORD__PING__INIT;
    req.body_case = TENSORD__REQUEST__BODY_PING;
    req.ping = &m;
    struct pending p = {0};
    return queue(c, &req, NULL, 0, &p, id, err);
}

int tensord_ping(struct tensord *c, struct tensord_error *err)
{
    int rc;
    clear_err(err);
    if ((rc = busy(c, err)) != 0 || (rc = tensord_send_ping(c, NULL, err)) != 0) {
        return rc;
    }
    return complete(c, NULL, NULL, err);
}

int tensord_stats(struct tensord *c, struct tensord_stats *st, struct tensord_error *err)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__Stats m = TENSORD__STATS__INIT;
    req.body_case = TENSORD__REQUEST__BODY_STATS;
    req.stats = &m;
    struct pending p = {0};
    Tensord__Response *resp = NULL;
    int rc = roundtrip(c, &req, NULL, 0, &p, NULL, &resp, err);
    if (rc != 0) {
        return rc;
    }
    if (resp->result_case != TENSORD__RESPONSE__RESULT_STATS) {
        tensord__response__free_unpacked(resp, NULL);
        return set_err(err, TENSORD_E_PROTOCOL, "Stats reply without stats");
    }
    st->session_bytes = resp->stats->session_bytes;
    st->session_tensors = resp->stats->session_tensors;
    st->sessions = resp->stats->sessions;
    st->server_bytes = resp->stats->server_bytes;
    tensord__response__free_unpacked(resp, NULL);
    return 0;
}

int tensord_close_session(struct tensord *c, struct tensord_error *err)
{
    Tensord__Request req = TENSORD__REQUEST__INIT;
    Tensord__CloseSession m = TENSORD__CLOSE_SESSION__INIT;
    req.body_case = TENSORD__REQUEST__BODY_CLOSE_SESSION;
    req.close_session = &m;
    struct pending p = {0};
    return roundtrip(c, &req, NULL, 0, &p, NULL, NULL, err);
}
